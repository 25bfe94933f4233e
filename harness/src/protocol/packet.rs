//! The binary packet protocol (`specs/packet-and-mathsvc.md`, Task 1): plain TCP, packets cut
//! by their length field, `packet:` steps, and the course's grading server from
//! `reference_impl::packet`.
//!
//! The built-in server sends a 12,000-byte text (two packets) from a fixed seed, so that
//! transcripts repeat; `reference` settings change that.

use std::collections::BTreeMap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reference_impl::packet::cli::{PacketClientArgs, PairingArg, run_client_with};
use reference_impl::packet::client::ClientFault;
use reference_impl::packet::codec::{ChecksumMode, MAX_PACKET};
use reference_impl::packet::server::{self, ServerConfig};

use crate::target::client::{ClientResult, ClientSpec};

use super::packet_format::Packets;
use super::{Protocol, ReferenceError, ReferenceServer, Stopper};
use crate::run::framing::Framing;

pub const PROTOCOL: Protocol = Protocol {
    name: "packet",
    description: "binary packets with a checksum and an XOR cipher (the grading server)",
    transport: super::TransportKind::Tcp,
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
        ("sid", "20200000"),
        ("client_keyword", "test"),
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
    probe: crate::target::server::Probe::Request(header_packet),
    ports: 1,
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

/// How long the reference client waits for each read when it is the client under test.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The reference packet client as the client under test (`reference packet-client`, run in
/// this process, printing what the command prints). It takes its student id from the
/// scenario's `sid`, its first keyword from `client_keyword` and the pairing of its
/// checksums from `checksum_pairing`. `faults` make it wrong on purpose (tests).
pub fn reference_client(faults: &[ClientFault]) -> ClientSpec {
    let faults = faults.to_vec();
    let description = if faults.is_empty() {
        "built-in packet client".to_owned()
    } else {
        let names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
        format!("built-in packet client with faults {}", names.join(", "))
    };
    let client = move |addr: SocketAddr, vars: &BTreeMap<String, String>| {
        let var = |k: &str| vars.get(k).map(String::as_str).unwrap_or_default();
        let keyword = var("client_keyword").as_bytes();
        let args = PacketClientArgs {
            host: addr.ip().to_string(),
            port: addr.port(),
            student_id: var("sid").parse().unwrap_or(0),
            keyword: keyword.try_into().unwrap_or(*b"test"),
            checksum: if var("checksum_pairing") == "little" {
                PairingArg::Little
            } else {
                PairingArg::Big
            },
            timeout: CLIENT_TIMEOUT,
            verbose: false,
            faults: faults.clone(),
        };
        Box::pin(async move {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let code = run_client_with(&args, &mut stdout, &mut stderr).await;
            ClientResult {
                code: i32::from(code),
                stdout,
                stderr,
            }
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ClientResult> + Send>>
    };
    ClientSpec::InProcess {
        client: Arc::new(client),
        description,
    }
}

/// A client's first packet (a test run), for the liveness probe: the server answers it.
fn header_packet() -> Vec<u8> {
    reference_impl::packet::codec::Packet::new(
        reference_impl::packet::codec::FLAG_LAST,
        *b"test",
        12_345_678,
        Vec::new(),
    )
    .to_bytes(reference_impl::packet::codec::Pairing::BigEndian)
}
