//! The KV suite against servers that are wrong in exactly one way. A suite that passes against
//! a broken server does not test that behaviour, so each test names the scenarios that must
//! catch the fault, how each one ends, and the line of the step that catches it. The list is
//! exact: a test also fails when an unrelated scenario starts failing.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::run::{Outcome, RunOptions, RunReport};
use reference_impl::kv::server::{Dialect, Fault};

use crate::support::{self, Caught, broken_server};

use Outcome::{Failed, TimedOut};

/// Deadline of every expectation without its own `within:`. Short, so that scenarios waiting
/// for a reply that never comes do not slow the tests down; still far above the time a
/// reference server takes to answer.
const DEADLINE: Duration = Duration::from_millis(500);

/// Scenarios run at once against one server.
const JOBS: usize = 4;

fn options(server: &harness::protocol::ReferenceServer, jobs: usize) -> RunOptions {
    RunOptions {
        timeout: Some(DEADLINE),
        jobs,
        ..support::against(server)
    }
}

/// One line per scenario that did not pass, to show when an assertion fails.
fn problems(report: &RunReport) -> Vec<String> {
    report
        .results
        .iter()
        .filter(|r| r.outcome.is_problem())
        .map(|r| {
            format!(
                "{} {:?} at line {}: {}",
                r.id,
                r.outcome,
                support::failing_line(r),
                support::summary(r)
            )
        })
        .collect()
}

/// Runs the whole KV suite against a server with `fault` and checks that exactly the `caught`
/// scenarios do not pass, each ending as listed at the listed line. The first entry is the
/// family's main scenario: its failure must also mention `says`.
async fn check_fault(fault: Fault, jobs: usize, says: &str, caught: &[Caught]) {
    let suites = support::load(&["scenarios/kv"]);
    let server = support::kv_server(&[fault], Dialect::Spec).await;
    let report = support::run(&suites, &options(&server, jobs)).await;
    server.stop().await;
    support::assert_caught(fault.name(), &report, says, caught);
}

/// Every fault a test below covers; `every_fault_has_a_test` compares it (with the RSA
/// faults) with `Fault::ALL`.
const TESTED: [Fault; 21] = [
    Fault::AcceptAnyPassword,
    Fault::AllowDuplicateSession,
    Fault::PutKeepsOldValue,
    Fault::GetWithoutCrc,
    Fault::WrongCrc,
    Fault::GetMissingReturnsEmpty,
    Fault::DeleteKeepsKey,
    Fault::DeleteMissingErrors,
    Fault::KeepSessionAfterDisconnect,
    Fault::NoCloseAfterDisconnect,
    Fault::SharedStore,
    Fault::NoDropOnJunk,
    Fault::KeepDataAfterDrop,
    Fault::AllowCommandsBeforeConnect,
    Fault::NoSizeLimit,
    Fault::UsableAfterConnectError,
    Fault::ReplyWithoutLineEnd,
    Fault::DiscardSessionOnClose,
    Fault::SignedCrc,
    Fault::PartialHashRefused,
    Fault::SizeLimitOffByOne,
];

#[test]
fn every_fault_has_a_test() {
    // The RSA transport's own faults are tested against the RSA suite (`broken_rsa`).
    let tested: BTreeSet<&str> = TESTED
        .iter()
        .chain(&crate::broken_rsa::RSA_FAULTS)
        .map(|f| f.name())
        .collect();
    let all: BTreeSet<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(tested, all, "add a broken_server! test for each new fault");
}

// login and auth

broken_server!(check_fault,
    /// A wrong password opens the session: the refused login answers `CONNECT: OK`.
    accept_any_password: Fault::AcceptAnyPassword, "received \"CONNECT: OK\"", [
        "kv/login/wrong-password" => Failed at 14,
        "kv/login/refused-session-unusable" => Failed at 14,
    ]
);

broken_server!(check_fault,
    /// A second connection may log in to an active session.
    allow_duplicate_session: Fault::AllowDuplicateSession, "received \"CONNECT: OK\"", [
        "kv/login/duplicate-session" => Failed at 11,
    ]
);

broken_server!(check_fault,
    /// After `CONNECT: ERROR` the connection is logged in anyway, so its GET is answered.
    usable_after_connect_error: Fault::UsableAfterConnectError, "but it sent a message", [
        "kv/login/refused-session-unusable" => Failed at 16,
    ]
);

broken_server!(check_fault,
    /// The hash must arrive in one read: a hash in pieces, or too short, is refused at once.
    partial_hash_refused: Fault::PartialHashRefused, "received \"CONNECT: ERROR\"", [
        "kv/login/hash-split" => Failed at 8,
        "kv/login/hash-too-short" => Failed at 8,
    ]
);

// put

broken_server!(check_fault,
    /// The size limit is one byte short: a message of exactly RECEIVE_BUFFER_SIZE is refused.
    size_limit_off_by_one: Fault::SizeLimitOffByOne, "closed `C`", [
        "kv/put/value-at-limit" => Failed at 11,
    ]
);

broken_server!(check_fault,
    /// Overwriting a key keeps the old value.
    put_keeps_old_value: Fault::PutKeepsOldValue, "received \"GET blue\"", [
        "kv/put/overwrite" => Failed at 14,
    ]
);

// get and crc

broken_server!(check_fault,
    /// No CRC line after the value: every scenario reading a value waits for its CRC.
    get_without_crc: Fault::GetWithoutCrc, "no message on `C`", [
        "kv/get/with-crc" => TimedOut at 13,
        "kv/get/crc-unsigned" => TimedOut at 13,
        "kv/get/large-value" => TimedOut at 14,
        "kv/delete/present" => TimedOut at 17,
        "kv/isolation/junk-spares-others" => TimedOut at 20,
        "kv/isolation/separate-stores" => TimedOut at 20,
        "kv/login/wrong-password" => TimedOut at 21,
        "kv/put/empty-value" => TimedOut at 13,
        "kv/put/new" => TimedOut at 13,
        "kv/put/overwrite" => TimedOut at 15,
        "kv/put/value-in-second-write" => TimedOut at 15,
        "kv/session/kept-after-eof" => TimedOut at 18,
    ]
);

broken_server!(check_fault,
    /// The CRC is off by one: every scenario reading a value fails on its CRC line.
    wrong_crc: Fault::WrongCrc, "actual \"222957958\"", [
        "kv/get/with-crc" => Failed at 13,
        "kv/get/crc-unsigned" => Failed at 13,
        "kv/get/large-value" => Failed at 14,
        "kv/delete/present" => Failed at 17,
        "kv/isolation/junk-spares-others" => Failed at 20,
        "kv/isolation/separate-stores" => Failed at 20,
        "kv/login/wrong-password" => Failed at 21,
        "kv/put/empty-value" => Failed at 13,
        "kv/put/new" => Failed at 13,
        "kv/put/overwrite" => Failed at 15,
        "kv/put/value-in-second-write" => Failed at 15,
        "kv/session/kept-after-eof" => Failed at 18,
    ]
);

broken_server!(check_fault,
    /// A missing key answers an empty value: every scenario expecting `GET: ERROR` fails.
    get_missing_returns_empty: Fault::GetMissingReturnsEmpty, "received \"GET \"", [
        "kv/get/missing" => Failed at 10,
        "kv/get/after-delete" => Failed at 14,
        "kv/disconnect/session-gone" => Failed at 18,
        "kv/isolation/separate-stores" => Failed at 15,
        "kv/malformed/lowercase" => Failed at 17,
        "kv/malformed/non-ascii" => Failed at 18,
        "kv/malformed/unknown-command" => Failed at 17,
        "kv/put/value-over-limit" => Failed at 18,
    ]
);

broken_server!(check_fault,
    /// The CRC is printed as a signed number: every CRC with the high bit set differs.
    signed_crc: Fault::SignedCrc, "actual \"-94281841\"", [
        "kv/get/crc-unsigned" => Failed at 13,
        "kv/delete/present" => Failed at 17,
        "kv/get/large-value" => Failed at 14,
        "kv/isolation/junk-spares-others" => Failed at 20,
        "kv/isolation/separate-stores" => Failed at 20,
        "kv/login/wrong-password" => Failed at 21,
        "kv/put/new" => Failed at 13,
        "kv/put/overwrite" => Failed at 15,
        "kv/put/value-in-second-write" => Failed at 15,
        "kv/session/kept-after-eof" => Failed at 18,
    ]
);

// delete

broken_server!(check_fault,
    /// `DELETE: OK`, but the key is still there.
    delete_keeps_key: Fault::DeleteKeepsKey, "received \"GET blue\"", [
        "kv/get/after-delete" => Failed at 14,
    ]
);

broken_server!(check_fault,
    /// Deleting a missing key answers `DELETE: ERROR`. Only a `should` scenario checks this,
    /// so it fails a strict run only.
    delete_missing_errors: Fault::DeleteMissingErrors, "received \"DELETE: ERROR\"", [
        "kv/delete/missing" => Failed at 11,
    ]
);

// disconnect and session

broken_server!(check_fault,
    /// The connection stays open after `DISCONNECT: OK`.
    no_close_after_disconnect: Fault::NoCloseAfterDisconnect, "did not close `C`", [
        "kv/disconnect/reply-and-close" => Failed at 11,
    ]
);

broken_server!(check_fault,
    /// `DISCONNECT` keeps the session's data for the next login.
    keep_session_after_disconnect: Fault::KeepSessionAfterDisconnect, "received \"GET blue\"", [
        "kv/disconnect/session-gone" => Failed at 18,
    ]
);

broken_server!(check_fault,
    /// A connection that ends without `DISCONNECT` loses its data.
    discard_session_on_close: Fault::DiscardSessionOnClose, "received \"GET: ERROR\"", [
        "kv/session/kept-after-eof" => Failed at 17,
        "kv/login/wrong-password" => Failed at 20,
    ]
);

// isolation

broken_server!(check_fault,
    /// One store for every client. The shared store carries data from one scenario to the
    /// next, so the scenarios run one at a time here: in parallel, which ones fail would
    /// depend on their timing.
    shared_store: Fault::SharedStore, jobs 1, "received \"GET blue\"", [
        "kv/isolation/separate-stores" => Failed at 15,
        "kv/isolation/junk-spares-others" => Failed at 19,
        "kv/disconnect/session-gone" => Failed at 18,
        "kv/malformed/lowercase" => Failed at 17,
        "kv/malformed/non-ascii" => Failed at 18,
        "kv/malformed/unknown-command" => Failed at 17,
        "kv/put/value-over-limit" => Failed at 18,
    ]
);

// malformed messages and drops

broken_server!(check_fault,
    /// Junk is ignored instead of dropping the connection.
    no_drop_on_junk: Fault::NoDropOnJunk, "did not close `C`", [
        "kv/malformed/unknown-command" => Failed at 12,
        "kv/malformed/lowercase" => Failed at 12,
        "kv/malformed/non-ascii" => Failed at 13,
        "kv/malformed/endless-line" => Failed at 10,
        "kv/delete/without-key" => Failed at 10,
        "kv/get/without-key" => Failed at 10,
        "kv/isolation/junk-spares-others" => Failed at 17,
        "kv/put/value-over-limit" => Failed at 13,
    ]
);

broken_server!(check_fault,
    /// A dropped client's data survives for its next login.
    keep_data_after_drop: Fault::KeepDataAfterDrop, "received \"GET blue\"", [
        "kv/malformed/unknown-command" => Failed at 17,
        "kv/malformed/lowercase" => Failed at 17,
        "kv/malformed/non-ascii" => Failed at 18,
        "kv/put/value-over-limit" => Failed at 18,
    ]
);

// before connect

broken_server!(check_fault,
    /// Commands before a successful `CONNECT` are served.
    allow_commands_before_connect: Fault::AllowCommandsBeforeConnect, "but it sent a message", [
        "kv/before-connect/get" => Failed at 7,
        "kv/before-connect/put" => Failed at 7,
        "kv/login/refused-session-unusable" => Failed at 16,
    ]
);

// message size limit

broken_server!(check_fault,
    /// Messages of any length are accepted.
    no_size_limit: Fault::NoSizeLimit, "received \"PUT: OK\"", [
        "kv/put/value-over-limit" => Failed at 13,
        "kv/malformed/endless-line" => Failed at 10,
    ]
);

// framing

broken_server!(check_fault,
    /// Replies carry no line end: the first reply of every scenario that expects one fails.
    reply_without_line_end: Fault::ReplyWithoutLineEnd, "the message has no line end", [
        "kv/login/ok" => Failed at 8,
        "kv/delete/missing" => Failed at 9,
        "kv/delete/present" => Failed at 8,
        "kv/delete/without-key" => Failed at 8,
        "kv/disconnect/reply-and-close" => Failed at 8,
        "kv/disconnect/session-gone" => Failed at 8,
        "kv/get/after-delete" => Failed at 8,
        "kv/get/crc-unsigned" => Failed at 8,
        "kv/get/large-value" => Failed at 8,
        "kv/get/missing" => Failed at 8,
        "kv/get/with-crc" => Failed at 8,
        "kv/get/without-key" => Failed at 8,
        "kv/isolation/junk-spares-others" => Failed at 8,
        "kv/isolation/separate-stores" => Failed at 8,
        "kv/login/duplicate-session" => Failed at 8,
        "kv/login/hash-split" => Failed at 8,
        "kv/login/hash-too-short" => Failed at 12,
        "kv/login/refused-session-unusable" => Failed at 8,
        "kv/login/without-hash" => Failed at 11,
        "kv/login/wrong-password" => Failed at 8,
        "kv/malformed/endless-line" => Failed at 8,
        "kv/malformed/lowercase" => Failed at 8,
        "kv/malformed/non-ascii" => Failed at 8,
        "kv/malformed/unknown-command" => Failed at 8,
        "kv/put/empty-value" => Failed at 8,
        "kv/put/new" => Failed at 8,
        "kv/put/overwrite" => Failed at 8,
        "kv/put/value-at-limit" => Failed at 8,
        "kv/put/value-in-second-write" => Failed at 8,
        "kv/put/value-over-limit" => Failed at 8,
        "kv/session/kept-after-eof" => Failed at 9,
    ]
);

/// The baseline of the tests above: with the same options, a correct server passes every
/// scenario, so each failure above is the fault's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_server_passes_everything() {
    let suites = support::load(&["scenarios/kv"]);
    let server = support::kv_server(&[], Dialect::Spec).await;
    let report = support::run(&suites, &options(&server, JOBS)).await;
    server.stop().await;
    assert!(report.results.len() >= 25);
    let not_passed: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .collect();
    assert!(not_passed.is_empty(), "{:#?}", problems(&report));
    assert_eq!(report.exit_code(true), 0);
}

/// A course-dialect server, given as a target, passes the suite under the `course` profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn course_server_passes_with_the_course_profile() {
    let suites = support::load(&["scenarios/kv"]);
    let server = support::kv_server(&[], Dialect::Course).await;
    let opts = RunOptions {
        profile: Some(support::profile("course", &suites)),
        ..options(&server, JOBS)
    };
    let report = support::run(&suites, &opts).await;
    server.stop().await;
    let not_passed: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .collect();
    assert!(not_passed.is_empty(), "{:#?}", problems(&report));
}

/// Without the profile, the strict suite fails against a course-dialect server: every
/// scenario that expects a reply fails at its first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn course_server_fails_the_strict_suite() {
    let suites = support::load(&["scenarios/kv"]);
    let server = support::kv_server(&[], Dialect::Course).await;

    // As is: the harness ends `CONNECT u...` with a line feed, which the course server takes
    // as part of the client id, so the login is refused; the reply has no line end either.
    let (report, human) = support::run_human(&suites, &options(&server, JOBS)).await;
    let failed: BTreeSet<&str> = report
        .results
        .iter()
        .filter(|r| r.outcome.is_problem())
        .map(|r| r.id.as_str())
        .collect();
    let expected: BTreeSet<&str> = report
        .results
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !id.starts_with("kv/before-connect/"))
        .collect();
    assert_eq!(failed, expected, "{:#?}", problems(&report));
    let login = report
        .results
        .iter()
        .find(|r| r.id == "kv/login/ok")
        .unwrap();
    let failure = login.failure.as_ref().unwrap();
    assert_eq!(login.outcome, Failed);
    assert_eq!(failure.span.unwrap().line, 8);
    assert_eq!(failure.actual.as_deref(), Some("\"CONNECT: ERROR\""));
    // The report shows the missing line end in the transcript.
    assert!(
        human.contains("\"CONNECT: ERROR\"  (no line end)"),
        "{human}"
    );

    // Sending as the course client does (no line ends) leaves the line-end requirement as
    // the only difference: every failure is about it.
    let mut opts = options(&server, JOBS);
    opts.vars.insert("line_end".into(), String::new());
    let report = support::run(&suites, &opts).await;
    server.stop().await;
    let failed: BTreeSet<&str> = report
        .results
        .iter()
        .filter(|r| r.outcome.is_problem())
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(failed, expected, "{:#?}", problems(&report));
    for r in report.results.iter().filter(|r| r.outcome.is_problem()) {
        let f = r.failure.as_ref().unwrap();
        assert_eq!(r.outcome, Failed, "{}: {}", r.id, support::summary(r));
        assert_eq!(f.message, "the message has no line end", "{}", r.id);
        assert!(
            f.help.as_deref().unwrap_or_default().contains("profile"),
            "{}: {:?}",
            r.id,
            f.help
        );
    }
    let login = report
        .results
        .iter()
        .find(|r| r.id == "kv/login/ok")
        .unwrap();
    assert_eq!(login.failure.as_ref().unwrap().span.unwrap().line, 8);
}
