//! The math service (`specs/packet-and-mathsvc.md`, Task 2): plain TCP with no delimiters
//! (messages are framed by pauses), and the reference server of `reference_impl::mathsvc`.

use std::collections::BTreeMap;

use reference_impl::mathsvc::codec::FibConvention;
use reference_impl::mathsvc::server::{self, ServerConfig};

use super::{Protocol, ReferenceError, ReferenceServer, Stopper};
use crate::run::framing::Framing;

pub const PROTOCOL: Protocol = Protocol {
    name: "mathsvc",
    description: "math service framed by pauses: Fibonacci, factorial, word count",
    transport: super::TransportKind::Tcp,
    json_bodies: false,
    framing: Framing::Chunks,
    packet: None,
    vars: &[("line_end", ""), ("require_line_end", "false")],
    reference_settings: &[("fib", "zero-based | slide: which Fibonacci number n names")],
    probe: crate::target::server::Probe::Request(|| b"probe\n".to_vec()),
    ports: 1,
};

pub(super) async fn start(
    settings: &BTreeMap<String, String>,
) -> Result<ReferenceServer, ReferenceError> {
    let mut config = ServerConfig::default();
    if let Some(v) = settings.get("fib") {
        config.fib = match v.as_str() {
            "zero-based" => FibConvention::ZeroBased,
            "slide" => FibConvention::Slide,
            _ => {
                return Err(ReferenceError::BadSetting {
                    protocol: "mathsvc".into(),
                    key: "fib".into(),
                    value: v.clone(),
                    reason: "expected `zero-based` or `slide`".into(),
                });
            }
        };
    }
    start_with(config).await
}

/// Starts a math service reference server with the given configuration (tests use this to
/// start servers with one behaviour broken).
pub async fn start_with(config: ServerConfig) -> Result<ReferenceServer, ReferenceError> {
    let fib = config.fib;
    let running = server::spawn(config)
        .await
        .map_err(|e| ReferenceError::Start {
            protocol: "mathsvc".into(),
            reason: e.to_string(),
        })?;
    Ok(ReferenceServer {
        addr: running.addr(),
        certificate: None,
        description: format!("built-in math service reference server (fib {fib})"),
        vars: BTreeMap::new(),
        stop: Stopper::Mathsvc(running),
    })
}
