//! A conformance test harness and fuzzer for small TCP protocols.
//!
//! Data flows one way through the layers:
//!
//! ```text
//! scenario/  YAML -> typed model with source spans (no I/O)
//! load       finds suites and scenario files on disk, hands their text to scenario/
//! protocol/  per-protocol adapters: transport, framing, reference server, vars
//! transport/ tcp, tls, rsa (the kv-rsa key exchange and per-message RSA blocks)
//! target/    programs under test the harness starts: processes, their output, the client
//!            under test when the harness plays the server
//! run/       executes scenarios: connections, steps, deadlines, matching, captures
//! report/    one stream of events -> human and JSON reporters
//! fuzz/      harness fuzz: generated cases, run on the reference then as scenarios on the
//!            target, shrunk to scenario files
//! ```
#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod fuzz;
pub mod fuzzing;
pub mod grade;
pub mod load;
pub mod protocol;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;
pub mod transport;

/// insta settings shared by every snapshot test of this crate: snapshots live in the
/// repository's top-level `snapshots/harness/`.
#[cfg(test)]
pub(crate) fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/harness"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}
