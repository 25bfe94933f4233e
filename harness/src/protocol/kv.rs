//! The TLS key-value protocol (`specs/kv-tls.md`): TLS transport, line framing, and the
//! reference server of `reference_impl::kv`.

use std::collections::BTreeMap;

use reference_impl::kv::server::{self, Dialect, ServerConfig};

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
    let bad = |key: &str, value: &str, reason: &str| ReferenceError::BadSetting {
        protocol: "kv".into(),
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let mut config = ServerConfig::default();
    if let Some(d) = settings.get("dialect") {
        config.dialect = match d.as_str() {
            "spec" => Dialect::Spec,
            "course" => Dialect::Course,
            _ => return Err(bad("dialect", d, "expected `spec` or `course`")),
        };
    }
    if let Some(m) = settings.get("max_message") {
        config.max_message = m
            .parse()
            .map_err(|_| bad("max_message", m, "expected a number of bytes"))?;
    }
    let dialect = match config.dialect {
        Dialect::Spec => "spec",
        Dialect::Course => "course",
    };
    start_with(config, dialect).await
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
