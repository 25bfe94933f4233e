//! Protocol adapters: what the runner needs to know about each course protocol (transport,
//! default variables) and how to start its built-in reference server in-process.
//!
//! The runner core knows nothing protocol-specific; everything of that kind lives here.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rustls_pki_types::CertificateDer;

pub mod chat;
pub mod kv;
pub mod kv_rsa;
pub mod mathsvc;
pub mod packet;
pub mod packet_format;

/// A protocol's binary packets, for `packet:` steps: built from fields, and taken apart into
/// fields. Values are bytes: numbers as decimal text, byte fields as they are.
pub trait PacketFormat: Sync + std::fmt::Debug {
    /// The field names, in wire order.
    fn fields(&self) -> &'static [&'static str];
    /// Builds a packet. Fields left out get defaults; the length and checksum are computed
    /// unless given. `var` reads a variable (e.g. the checksum convention).
    fn encode(
        &self,
        fields: &[(String, Vec<u8>)],
        var: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String>;
    /// Takes a received packet apart. `Err` when it is not a packet at all (too short).
    fn decode(
        &self,
        bytes: &[u8],
        var: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<DecodedPacket, String>;
}

/// A received packet's fields, and what is wrong with its checksum if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPacket {
    pub fields: Vec<(String, Vec<u8>)>,
    pub checksum_problem: Option<String>,
}

/// How a protocol's connections carry its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (rustls).
    Tls,
    /// TCP with an RSA public-key exchange first, then every message one RSA block
    /// (`kv-rsa`, see `transport::rsa`).
    Rsa,
}

impl TransportKind {
    /// `tcp`, `tls` or `rsa`, as transcripts name it.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Rsa => "rsa",
        }
    }
}

/// What the runner needs to know about a protocol.
#[derive(Debug)]
pub struct Protocol {
    /// The name suites use in `protocol:` (and the usual folder name).
    pub name: &'static str,
    pub description: &'static str,
    /// What carries the messages: plain TCP, TLS, or the RSA key exchange and blocks.
    pub transport: TransportKind,
    /// Whether messages are `HEADER <json>` whose bodies expectations compare as JSON.
    pub json_bodies: bool,
    /// How messages are delimited.
    pub framing: crate::run::framing::Framing,
    /// The protocol's packets, if `packet:` steps apply.
    pub packet: Option<&'static dyn PacketFormat>,
    /// Variables every scenario of the protocol sees unless the suite overrides them.
    pub vars: &'static [(&'static str, &'static str)],
    /// Settings the reference server accepts from a profile's `reference:` map.
    pub reference_settings: &'static [(&'static str, &'static str)],
    /// How to tell that a server the harness started still answers.
    pub probe: crate::target::server::Probe,
    /// Consecutive ports a server of the protocol listens on, from its main port.
    pub ports: u16,
}

/// Every protocol the harness speaks.
pub const PROTOCOLS: &[&Protocol] = &[
    &kv::PROTOCOL,
    &kv_rsa::PROTOCOL,
    &chat::PROTOCOL,
    &mathsvc::PROTOCOL,
    &packet::PROTOCOL,
];

/// Looks a protocol up by name.
pub fn find(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().copied().find(|p| p.name == name)
}

/// Names of every protocol, for error messages.
pub fn names() -> Vec<&'static str> {
    PROTOCOLS.iter().map(|p| p.name).collect()
}

/// The built-in reference server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("the built-in {protocol} reference server could not start: {reason}")]
    Start { protocol: String, reason: String },
    #[error("unknown reference setting `{key}` for {protocol} (known: {known})")]
    UnknownSetting {
        protocol: String,
        key: String,
        known: String,
    },
    #[error("invalid reference setting {key}={value} for {protocol}: {reason}")]
    BadSetting {
        protocol: String,
        key: String,
        value: String,
        reason: String,
    },
}

/// A reference server running in this process.
#[derive(Debug)]
pub struct ReferenceServer {
    pub addr: SocketAddr,
    /// The certificate to trust when the server speaks TLS.
    pub certificate: Option<CertificateDer<'static>>,
    /// One line describing the server, for reports.
    pub description: String,
    /// Variables the scenarios need to reach this server beyond its address (e.g. the port
    /// of a second channel); they take precedence over the suite's own.
    pub vars: BTreeMap<String, String>,
    stop: Stopper,
}

#[derive(Debug)]
enum Stopper {
    Kv(reference_impl::kv::server::RunningServer),
    Chat(reference_impl::chat::server::RunningServer),
    Mathsvc(reference_impl::mathsvc::server::RunningServer),
    Packet(reference_impl::packet::server::RunningServer),
}

impl ReferenceServer {
    /// Stops the server and waits for it to finish.
    pub async fn stop(self) {
        match self.stop {
            Stopper::Kv(server) => server.shutdown().await,
            Stopper::Chat(server) => server.shutdown().await,
            Stopper::Mathsvc(server) => server.shutdown().await,
            Stopper::Packet(server) => server.shutdown().await,
        }
    }
}

/// The protocol's reference client, run in this process, for suites that play the server;
/// `None` when the protocol has none.
pub fn reference_client(protocol: &Protocol) -> Option<crate::target::client::ClientSpec> {
    match protocol.name {
        "packet" => Some(packet::reference_client(&[])),
        _ => None,
    }
}

/// Starts the reference server of `protocol` on a free loopback port.
pub async fn start_reference(
    protocol: &Protocol,
    settings: &BTreeMap<String, String>,
) -> Result<ReferenceServer, ReferenceError> {
    for key in settings.keys() {
        if !protocol.reference_settings.iter().any(|(k, _)| k == key) {
            return Err(ReferenceError::UnknownSetting {
                protocol: protocol.name.to_owned(),
                key: key.clone(),
                known: protocol
                    .reference_settings
                    .iter()
                    .map(|(k, help)| format!("{k} ({help})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    match protocol.name {
        "kv" => kv::start(settings).await,
        "kv-rsa" => kv_rsa::start(settings).await,
        "chat" => chat::start(settings).await,
        "mathsvc" => mathsvc::start(settings).await,
        "packet" => packet::start(settings).await,
        other => Err(ReferenceError::Start {
            protocol: other.to_owned(),
            reason: "no reference server for this protocol".into(),
        }),
    }
}
