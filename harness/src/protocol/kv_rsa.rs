//! The key-value protocol's RSA variant (`specs/kv-rsa.md`): a PEM key exchange then one
//! 512-bit RSA block per message (the `rsa` transport), line framing inside the blocks, and
//! the RSA reference server of `reference_impl::kv`.
//!
//! Suites speak plaintext: the transport encrypts every send and decrypts every block. The
//! password hash goes in the clear after the encrypted `CONNECT` (`hash_in_clear`, as real
//! clients send it); a dialect that encrypts it too sets `hash_in_clear: "false"` and the
//! reference setting `encrypt_hash: true`.

use std::collections::BTreeMap;

use reference_impl::kv::server::{self, RsaOptions, ServerConfig};

use super::{Protocol, ReferenceError, ReferenceServer, Stopper, TransportKind};

pub const PROTOCOL: Protocol = Protocol {
    name: "kv-rsa",
    description: "key-value store with a 512-bit RSA key exchange and RSA-encrypted messages",
    transport: TransportKind::Rsa,
    json_bodies: false,
    framing: crate::run::framing::Framing::Lines,
    packet: None,
    vars: &[
        // Appended to every text message the harness sends (inside its block).
        ("line_end", "\n"),
        // Received messages must end with a line feed.
        ("require_line_end", "true"),
        // The password hash goes unencrypted after the CONNECT block: suites write
        // `send: { bytes: "{{pbkdf2('...')}}", clear: "{{hash_in_clear}}" }`.
        ("hash_in_clear", "true"),
    ],
    reference_settings: &[
        ("dialect", "spec | course"),
        ("max_message", "bytes, default 4096"),
        (
            "encrypt_hash",
            "true | false, default false: the hash comes in a block",
        ),
    ],
    probe: crate::target::server::Probe::Request(probe_key),
    ports: 1,
};

/// A fresh public key, for the liveness probe: a server answers it with its own.
fn probe_key() -> Vec<u8> {
    reference_impl::kv::rsa::KeyPair::generate()
        .map(|pair| pair.public_pem().as_bytes().to_vec())
        .unwrap_or_default()
}

pub(super) async fn start(
    settings: &BTreeMap<String, String>,
) -> Result<ReferenceServer, ReferenceError> {
    let config = super::kv::server_config(PROTOCOL.name, settings)?;
    let mut rsa = RsaOptions::default();
    if let Some(e) = settings.get("encrypt_hash") {
        rsa.hash_in_clear = match e.as_str() {
            "true" => false,
            "false" => true,
            _ => {
                return Err(super::kv::bad_setting(
                    PROTOCOL.name,
                    "encrypt_hash",
                    e,
                    "expected `true` or `false`",
                ));
            }
        };
    }
    start_with(config, rsa).await
}

/// Starts an RSA KV reference server with the given configuration (tests use this to start
/// servers with one behaviour broken).
pub async fn start_with(
    config: ServerConfig,
    rsa: RsaOptions,
) -> Result<ReferenceServer, ReferenceError> {
    let dialect = config.dialect;
    let hash = if rsa.hash_in_clear {
        "hash in the clear"
    } else {
        "hash encrypted"
    };
    let running = server::spawn_rsa(config, rsa)
        .await
        .map_err(|e| ReferenceError::Start {
            protocol: PROTOCOL.name.into(),
            reason: e.to_string(),
        })?;
    Ok(ReferenceServer {
        addr: running.addr(),
        certificate: None,
        description: format!("built-in kv-rsa reference server (dialect {dialect}, {hash})"),
        vars: BTreeMap::new(),
        stop: Stopper::Kv(running),
    })
}
