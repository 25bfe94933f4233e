//! The TLS key-value protocol (`specs/kv-tls.md`): TLS transport, line framing, and the
//! reference server of `reference_impl::kv`.

use std::collections::BTreeMap;

use reference_impl::kv::server::{self, ServerConfig};

use super::{Protocol, ReferenceError, ReferenceServer, Stopper};

pub const PROTOCOL: Protocol = Protocol {
    name: "kv",
    description: "key-value store over TLS with a PBKDF2 login and CRC-32 checks",
    transport: super::TransportKind::Tls,
    json_bodies: false,
    framing: crate::run::framing::Framing::Lines,
    packet: None,
    vars: &[
        // Appended to every text message the harness sends.
        ("line_end", "\n"),
        // Received messages must end with a line feed.
        ("require_line_end", "true"),
    ],
    reference_settings: &[
        ("dialect", "spec | course"),
        ("max_message", "bytes, default 4096"),
    ],
    probe: crate::target::server::Probe::Tls,
    ports: 1,
};

pub(super) async fn start(
    settings: &BTreeMap<String, String>,
) -> Result<ReferenceServer, ReferenceError> {
    let config = server_config(PROTOCOL.name, settings)?;
    let dialect = config.dialect.name();
    start_with(config, dialect).await
}

/// A reference setting of `protocol` that cannot be used, and why.
pub(super) fn bad_setting(protocol: &str, key: &str, value: &str, reason: &str) -> ReferenceError {
    ReferenceError::BadSetting {
        protocol: protocol.into(),
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// The server configuration of the settings every KV variant takes (`dialect`,
/// `max_message`); `protocol` names the variant in errors.
pub(super) fn server_config(
    protocol: &str,
    settings: &BTreeMap<String, String>,
) -> Result<ServerConfig, ReferenceError> {
    let mut config = ServerConfig::default();
    if let Some(d) = settings.get("dialect") {
        config.dialect = d
            .parse()
            .map_err(|_| bad_setting(protocol, "dialect", d, "expected `spec` or `course`"))?;
    }
    if let Some(m) = settings.get("max_message") {
        config.max_message = m
            .parse()
            .map_err(|_| bad_setting(protocol, "max_message", m, "expected a number of bytes"))?;
    }
    Ok(config)
}

/// Starts a KV reference server with the given configuration (tests use this to start
/// servers with one behaviour broken).
pub async fn start_with(
    config: ServerConfig,
    dialect: &str,
) -> Result<ReferenceServer, ReferenceError> {
    let fail = |reason: String| ReferenceError::Start {
        protocol: "kv".into(),
        reason,
    };
    let cert = reference_impl::tls::self_signed(&["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(|e| fail(e.to_string()))?;
    let tls =
        reference_impl::tls::server_config(vec![cert.cert_der.clone()], cert.key_der.clone_key())
            .map_err(|e| fail(e.to_string()))?;
    let running = server::spawn(config, tls)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(ReferenceServer {
        addr: running.addr(),
        certificate: Some(cert.cert_der),
        description: format!("built-in kv reference server (dialect {dialect})"),
        vars: BTreeMap::new(),
        stop: Stopper::Kv(running),
    })
}
