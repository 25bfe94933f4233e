//! The TLS key-value store protocol (`specs/kv-tls.md`).

pub mod auth;
