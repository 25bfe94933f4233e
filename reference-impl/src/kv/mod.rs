//! The TLS key-value store protocol (`specs/kv-tls.md`).
//!
//! - [`codec`]: bytes <-> requests and replies, in the spec's and the course's dialect;
//! - [`store`]: accounts, sessions and their data;
//! - [`server`]: the tokio server;
//! - [`client`]: a client library, used by the `reference kv-client` command;
//! - [`auth`]: the password hash and the value checksum.

pub mod auth;
pub mod client;
pub mod codec;
#[doc(hidden)]
pub mod fault;
pub mod rsa;
#[doc(hidden)]
pub mod sabotage;
pub mod server;
pub mod store;
