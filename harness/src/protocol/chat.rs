//! The chat protocol (`specs/chat.md`): plain TCP, `HEADER <json>` lines compared by their
//! JSON bodies, and the reference server of `reference_impl::chat`.
//!
//! The built-in reference server keeps the spec's timers (the suites check them), except the
//! game's time limit, which the spec leaves open: 5 s here, so that a game nobody solves
//! ends soon. Its game always hides the same number (37, unless the `secret` setting says
//! otherwise), so that transcripts come out the same from run to run.

use std::collections::BTreeMap;
use std::time::Duration;

use reference_impl::chat::codec::{CheckOrder, Header};
use reference_impl::chat::server::{self, ServerConfig};

use super::{Protocol, ReferenceError, ReferenceServer, Stopper};

pub const PROTOCOL: Protocol = Protocol {
    name: "chat",
    description: "chat server with JSON bodies, heartbeats, a guessing game and file transfers",
    transport: super::TransportKind::Tcp,
    json_bodies: true,
    framing: crate::run::framing::Framing::Lines,
    packet: None,
    vars: &[("line_end", "\n"), ("require_line_end", "true")],
    reference_settings: &[
        ("joined", "true | false: send JOINED to the others on login"),
        (
            "check_order",
            "header-first | json-first: which check of a line comes first",
        ),
        ("version", "the version WELCOME names, default 1.5"),
        ("rename", "FROM=TO,...: header names on the wire"),
        ("game_time_limit", "how long a game may run, default 5s"),
        ("secret", "the number every game hides, 1-50, default 37"),
    ],
    probe: crate::target::server::Probe::Greeting,
    // The data channel of file transfers is the port after the chat port.
    ports: 2,
};

/// The number the built-in server's games hide.
const SECRET: u8 = 37;

/// The game's time limit of the built-in server (the spec sets none).
const GAME_TIME_LIMIT: Duration = Duration::from_secs(5);

pub(super) async fn start(
    settings: &BTreeMap<String, String>,
) -> Result<ReferenceServer, ReferenceError> {
    let bad = |key: &str, value: &str, reason: String| ReferenceError::BadSetting {
        protocol: "chat".into(),
        key: key.into(),
        value: value.into(),
        reason,
    };
    let mut config = ServerConfig {
        game_time_limit: GAME_TIME_LIMIT,
        secret: Some(SECRET),
        ..ServerConfig::default()
    };
    if let Some(v) = settings.get("secret") {
        config.secret = match v.parse::<u8>() {
            Ok(n) if (1..=50).contains(&n) => Some(n),
            _ => return Err(bad("secret", v, "expected a number from 1 to 50".into())),
        };
    }
    if let Some(v) = settings.get("joined") {
        config.joined = match v.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(bad("joined", v, "expected `true` or `false`".into())),
        };
    }
    if let Some(v) = settings.get("check_order") {
        config.dialect.check_order = match v.as_str() {
            "header-first" => CheckOrder::HeaderFirst,
            "json-first" => CheckOrder::JsonFirst,
            _ => {
                return Err(bad(
                    "check_order",
                    v,
                    "expected `header-first` or `json-first`".into(),
                ));
            }
        };
    }
    if let Some(v) = settings.get("version") {
        config.version.clone_from(v);
    }
    if let Some(v) = settings.get("game_time_limit") {
        config.game_time_limit = humantime::parse_duration(v)
            .map_err(|e| bad("game_time_limit", v, format!("{e} (write e.g. 5s)")))?;
    }
    if let Some(v) = settings.get("rename") {
        for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (from, to) = pair
                .split_once('=')
                .ok_or_else(|| bad("rename", v, format!("`{pair}` is not FROM=TO")))?;
            let header: Header = from
                .trim()
                .parse()
                .map_err(|_| bad("rename", v, format!("`{from}` is not a header of the spec")))?;
            config
                .dialect
                .headers
                .rename(header, to.trim())
                .map_err(|e| bad("rename", v, e.to_string()))?;
        }
    }
    let dialect = match config.dialect.check_order {
        CheckOrder::HeaderFirst => "header first",
        CheckOrder::JsonFirst => "JSON first",
    };
    start_with(config, dialect).await
}

/// Starts a chat reference server with the given configuration (tests use this to start
/// servers with one behaviour broken). `label` describes it in reports.
pub async fn start_with(
    config: ServerConfig,
    label: &str,
) -> Result<ReferenceServer, ReferenceError> {
    let joined = if config.joined { "" } else { ", no JOINED" };
    let running = server::spawn(config)
        .await
        .map_err(|e| ReferenceError::Start {
            protocol: "chat".into(),
            reason: e.to_string(),
        })?;
    let vars = BTreeMap::from([(
        "data_port".to_owned(),
        running.data_addr().port().to_string(),
    )]);
    Ok(ReferenceServer {
        addr: running.addr(),
        certificate: None,
        description: format!("built-in chat reference server ({label}{joined})"),
        vars,
        stop: Stopper::Chat(running),
    })
}
