//! The key-value store protocol: over TLS (`specs/kv-tls.md`) and over RSA-encrypted
//! messages (`specs/kv-rsa.md`).
//!
//! - [`codec`]: bytes <-> requests and replies, in the spec's and the course's dialect;
//! - [`store`]: accounts, sessions and their data;
//! - [`server`]: the tokio server;
//! - [`client`]: a client library, used by the `reference kv-client` command;
//! - [`auth`]: the password hash and the value checksum;
//! - [`rsa`], [`rsa_stream`]: the transport of the RSA variant (`specs/kv-rsa.md`), which
//!   shares everything above it with the TLS one.

pub mod auth;
pub mod client;
pub mod codec;
#[doc(hidden)]
pub mod fault;
pub mod rsa;
pub mod rsa_stream;
#[doc(hidden)]
pub mod sabotage;
pub mod server;
pub mod store;
