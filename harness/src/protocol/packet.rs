//! The binary packet protocol (`specs/packet-and-mathsvc.md`, Task 1): plain TCP, packets cut
//! by their length field, `packet:` steps, and the course's grading server from
//! `reference_impl::packet`.
//!
//! The built-in server sends a 12,000-byte text (two packets) from a fixed seed, so that
//! transcripts repeat; `reference` settings change that.

use std::collections::BTreeMap;

use reference_impl::packet::codec::{ChecksumMode, MAX_PACKET};
use reference_impl::packet::server::{self, ServerConfig};

use super::packet_format::Packets;
use super::{Protocol, ReferenceError, ReferenceServer, Stopper};
use crate::run::framing::Framing;

pub const PROTOCOL: Protocol = Protocol {
    name: "packet",
    description: "binary packets with a checksum and an XOR cipher (the grading server)",
    tls: false,
    json_bodies: false,
    framing: Framing::LengthPrefixed {
        offset: 12,
        width: 4,
        min: 16,
        max: MAX_PACKET,
    },
    packet: Some(&Packets),
    vars: &[
        ("line_end", ""),
        ("require_line_end", "false"),
        ("checksum_pairing", "big"),
    ],
    reference_settings: &[
        (
            "checksum",
            "big | little | either: the checksums the server accepts",
        ),
        (
            "text_len",
            "bytes of text the server sends, default 12000 (two packets)",
        ),
        ("seed", "seed of the key and text, default 1"),
    ],
};

pub(super) async fn start(
    settings: &BTreeMap<String, String>,
) -> Result<ReferenceServer, ReferenceError> {
    let bad = |key: &str, value: &str, reason: &str| ReferenceError::BadSetting {
        protocol: "packet".into(),
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let mut config = ServerConfig {
        text_len: 12_000..=12_000,
        seed: Some(1),
        ..ServerConfig::default()
    };
    if let Some(v) = settings.get("checksum") {
        config.checksum = match v.as_str() {
            "big" => ChecksumMode::Big,
            "little" => ChecksumMode::Little,
            "either" => ChecksumMode::Either,
            _ => return Err(bad("checksum", v, "expected big, little or either")),
        };
    }
    if let Some(v) = settings.get("text_len") {
        let n: usize = v
            .parse()
            .map_err(|_| bad("text_len", v, "expected a number of bytes"))?;
        config.text_len = n..=n;
    }
    if let Some(v) = settings.get("seed") {
        config.seed = Some(v.parse().map_err(|_| bad("seed", v, "expected a number"))?);
    }
    start_with(config).await
}

/// Starts a packet reference server with the given configuration (tests use this to start
/// servers with one behaviour broken).
pub async fn start_with(config: ServerConfig) -> Result<ReferenceServer, ReferenceError> {
    let mode = config.checksum;
    let running = server::spawn(config)
        .await
        .map_err(|e| ReferenceError::Start {
            protocol: "packet".into(),
            reason: e.to_string(),
        })?;
    Ok(ReferenceServer {
        addr: running.addr(),
        certificate: None,
        description: format!("built-in packet grading server (checksums {})", mode.name()),
        vars: BTreeMap::new(),
        stop: Stopper::Packet(running),
    })
}
