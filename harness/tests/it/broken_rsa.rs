//! The RSA key-value suite against RSA servers that are wrong in exactly one way: each RSA
//! fault, and one fault of every command-layer family the suite shares with the TLS one
//! (the server's command layer is the same code over either transport). Each test names
//! the scenarios that must catch the fault, how each ends and the line of the step that
//! catches it; the list is exact.

use std::time::Duration;

use harness::run::{Outcome, RunOptions};
use reference_impl::kv::server::{Fault, RsaOptions, ServerConfig};

use crate::support::{self, Caught, broken_server};

use Outcome::Failed;

/// Deadline of every expectation without its own `within:`, as in the TLS tests.
const DEADLINE: Duration = Duration::from_millis(500);

/// Scenarios run at once against one server.
const JOBS: usize = 4;

/// The faults only an RSA server can have; `broken::every_fault_has_a_test` counts them.
pub const RSA_FAULTS: [Fault; 4] = [
    Fault::RsaAnyKeySize,
    Fault::RsaSkipUndecryptable,
    Fault::RsaSlowKeyRefusal,
    Fault::RsaNoReplyCap,
];

/// Runs the RSA suite against an RSA server with `fault`; exactly `caught` must not pass,
/// and the first of them must mention `says`.
async fn check_fault(fault: Fault, jobs: usize, says: &str, caught: &[Caught]) {
    let suites = support::load(&["scenarios/kv-rsa"]);
    let config = ServerConfig {
        faults: fault.into(),
        ..ServerConfig::default()
    };
    let server = harness::protocol::kv_rsa::start_with(config, RsaOptions::default())
        .await
        .unwrap();
    let opts = RunOptions {
        target: Some(server.addr.to_string()),
        timeout: Some(DEADLINE),
        jobs,
        ..RunOptions::default()
    };
    let report = support::run(&suites, &opts).await;
    server.stop().await;
    support::assert_caught(fault.name(), &report, says, caught);
}

// The key exchange and the blocks

broken_server!(check_fault,
    /// A 1024-bit key is taken: the server answers with its own key instead of closing.
    any_key_size: Fault::RsaAnyKeySize, "BEGIN RSA PUBLIC KEY", [
        "kv-rsa/keys/wrong-size" => Failed at 7,
    ]
);

broken_server!(check_fault,
    /// Anything but a PKCS#1 key is refused only when the handshake time is up.
    slow_key_refusal: Fault::RsaSlowKeyRefusal, "did not close `C` within 1s", [
        "kv-rsa/keys/message-before-key" => Failed at 8,
        "kv-rsa/keys/bad-pem" => Failed at 9,
        "kv-rsa/keys/x509" => Failed at 10,
    ]
);

broken_server!(check_fault,
    /// A block that does not decrypt, or not to one message of ASCII text (junk from a
    /// block for another key, a non-ASCII value), is skipped: the connection stays open.
    skip_undecryptable: Fault::RsaSkipUndecryptable, "did not close `C` within 1s", [
        "kv-rsa/block/undecryptable" => Failed at 13,
        "kv-rsa/block/wrong-key" => Failed at 13,
        "kv-rsa/malformed/non-ascii" => Failed at 13,
    ]
);

broken_server!(check_fault,
    /// A value too long for its GET reply is stored; the GET reply then cannot be sent, and
    /// the connection ends instead of answering `GET: ERROR`.
    no_reply_cap: Fault::RsaNoReplyCap, "closed `C`", [
        "kv-rsa/value/too-long-for-a-block" => Failed at 12,
    ]
);

// The command layer, one fault per family

broken_server!(check_fault,
    /// login: a wrong password opens the session.
    accept_any_password: Fault::AcceptAnyPassword, "received \"CONNECT: OK\"", [
        "kv-rsa/login/wrong-password" => Failed at 14,
        "kv-rsa/login/refused-session-unusable" => Failed at 14,
    ]
);

broken_server!(check_fault,
    /// before-connect: commands are served without a login (in one session of the empty id,
    /// so what the GET finds depends on the PUT running beside it).
    allow_commands_before_connect: Fault::AllowCommandsBeforeConnect, "but it sent a message", [
        "kv-rsa/before-connect/get" => Failed at 7,
        "kv-rsa/before-connect/put" => Failed at 7,
        "kv-rsa/login/refused-session-unusable" => Failed at 16,
    ]
);

broken_server!(check_fault,
    /// put: an overwrite keeps the old value.
    put_keeps_old_value: Fault::PutKeepsOldValue, "received \"GET blue\"", [
        "kv-rsa/put/overwrite" => Failed at 14,
    ]
);

broken_server!(check_fault,
    /// get: the CRC is off by one, which every GET of a value notices.
    wrong_crc: Fault::WrongCrc, "received \"222957958\"", [
        "kv-rsa/get/with-crc" => Failed at 13,
        "kv-rsa/delete/present" => Failed at 17,
        "kv-rsa/get/crc-unsigned" => Failed at 13,
        "kv-rsa/isolation/junk-spares-others" => Failed at 20,
        "kv-rsa/isolation/separate-stores" => Failed at 20,
        "kv-rsa/keys/again-after-reconnect" => Failed at 20,
        "kv-rsa/login/wrong-password" => Failed at 21,
        "kv-rsa/put/empty-value" => Failed at 13,
        "kv-rsa/put/new" => Failed at 13,
        "kv-rsa/put/overwrite" => Failed at 15,
        "kv-rsa/put/value-in-second-write" => Failed at 15,
        "kv-rsa/session/kept-after-eof" => Failed at 18,
        "kv-rsa/value/longest" => Failed at 13,
    ]
);

broken_server!(check_fault,
    /// delete: the key stays.
    delete_keeps_key: Fault::DeleteKeepsKey, "received \"GET blue\"", [
        "kv-rsa/get/after-delete" => Failed at 14,
    ]
);

broken_server!(check_fault,
    /// disconnect: the data outlives DISCONNECT.
    keep_session_after_disconnect: Fault::KeepSessionAfterDisconnect, "received \"GET blue\"", [
        "kv-rsa/disconnect/session-gone" => Failed at 18,
    ]
);

broken_server!(check_fault,
    /// session: a lost connection loses the data.
    discard_session_on_close: Fault::DiscardSessionOnClose, "received \"GET: ERROR\"", [
        "kv-rsa/session/kept-after-eof" => Failed at 17,
        "kv-rsa/login/wrong-password" => Failed at 20,
    ]
);

broken_server!(check_fault,
    /// isolation: every id shares one store, so data outlives the drops and DISCONNECTs that
    /// should remove it. One scenario at a time, so that what each finds in the shared
    /// store does not depend on the others' timing.
    shared_store: Fault::SharedStore, jobs 1, "received \"GET blue\"", [
        "kv-rsa/isolation/separate-stores" => Failed at 15,
        "kv-rsa/isolation/junk-spares-others" => Failed at 19,
        "kv-rsa/block/undecryptable" => Failed at 18,
        "kv-rsa/block/wrong-key" => Failed at 18,
        "kv-rsa/disconnect/session-gone" => Failed at 18,
        "kv-rsa/malformed/lowercase" => Failed at 17,
        "kv-rsa/malformed/non-ascii" => Failed at 18,
        "kv-rsa/malformed/unknown-command" => Failed at 17,
    ]
);

broken_server!(check_fault,
    /// malformed: junk is ignored instead of dropping the connection.
    no_drop_on_junk: Fault::NoDropOnJunk, "did not close `C` within 1s", [
        "kv-rsa/malformed/unknown-command" => Failed at 12,
        "kv-rsa/delete/without-key" => Failed at 10,
        "kv-rsa/get/without-key" => Failed at 10,
        "kv-rsa/isolation/junk-spares-others" => Failed at 17,
        "kv-rsa/malformed/lowercase" => Failed at 12,
    ]
);

/// The baseline: a correct RSA server passes the whole suite with the same options, in the
/// spec dialect, the course dialect and with an encrypted hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_servers_pass_every_dialect() {
    let suites = support::load(&["scenarios/kv-rsa"]);
    for (profile, dialect, rsa) in [
        (
            None,
            reference_impl::kv::codec::Dialect::Spec,
            RsaOptions::default(),
        ),
        (
            Some("course"),
            reference_impl::kv::codec::Dialect::Course,
            RsaOptions::default(),
        ),
        (
            Some("encrypted-hash"),
            reference_impl::kv::codec::Dialect::Spec,
            RsaOptions {
                hash_in_clear: false,
            },
        ),
    ] {
        let config = ServerConfig {
            dialect,
            ..ServerConfig::default()
        };
        let server = harness::protocol::kv_rsa::start_with(config, rsa)
            .await
            .unwrap();
        let opts = RunOptions {
            target: Some(server.addr.to_string()),
            timeout: Some(DEADLINE),
            jobs: JOBS,
            profile: profile.map(|p| support::profile(p, &suites)),
            ..RunOptions::default()
        };
        let report = support::run(&suites, &opts).await;
        server.stop().await;
        assert!(report.results.len() >= 35);
        support::compare_caught(&format!("none ({profile:?})"), &report, &[]).unwrap();
    }
}
