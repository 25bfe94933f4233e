//! The harness against targets that misbehave (`hostile_servers`): silent, flooding,
//! resetting, dripping, not speaking TLS or garbling it, answering on the wrong connection,
//! or not there at all. Each case runs one small scenario and checks that the run ends
//! (within a generous bound: a hang guard, not a speed test), without a panic, with the
//! expected outcome and a message that says what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::run::{Outcome, RunOptions, ScenarioResult};

use crate::hostile_servers::{self as servers, Target};
use crate::support;

/// Longest a run may take before the test calls it a hang.
const HANG_GUARD: Duration = Duration::from_secs(20);
/// The suites of the cases: KV, with a short deadline; ids `hostile/<case>`.
const CASES: support::OneScenario<'static> = support::OneScenario {
    tag: "hostile",
    protocol: "kv",
    timeout: "1s",
    hang_guard: HANG_GUARD,
    static_checks: None,
};

/// Options aimed at `target`, trusting any certificate.
fn options(target: &Target) -> RunOptions {
    RunOptions {
        target: Some(target.addr.to_string()),
        insecure: true,
        jobs: 1,
        connect_timeout: Duration::from_secs(2),
        ..RunOptions::default()
    }
}

/// A request, and an expectation of the reply that a correct server would send.
const GET: &str = r#"
  - C -> S: GET colour
  - S -> C: GET blue
"#;

/// How a case ended.
struct Ran {
    result: ScenarioResult,
    /// The human report, as `harness run` prints it.
    human: String,
}

impl Ran {
    /// The outcome is `outcome`, and the failure message contains `says`, in the result and
    /// in the printed report.
    fn assert(&self, outcome: Outcome, says: &str) -> &Self {
        let r = &self.result;
        assert_eq!(r.outcome, outcome, "{}", self.human);
        let message = &r.failure.as_ref().unwrap().message;
        assert!(
            message.contains(says),
            "message {message:?} should contain {says:?}\n{}",
            self.human
        );
        assert!(self.human.contains(says), "{}", self.human);
        self
    }

    /// Whether the failure says the target closed, reset or refused a connection (what makes
    /// `harness fuzz` and `--exec` look for a process that ended).
    fn gone(&self, expected: bool) -> &Self {
        let failure = self.result.failure.as_ref().unwrap();
        assert_eq!(failure.gone, expected, "{}", self.human);
        self
    }

    /// Snapshots the human report, with addresses, times and the case's folder filtered out.
    /// Only for cases whose report does not depend on timing.
    fn snapshot(&self, name: &str) -> &Self {
        let settings = CASES.snapshots(&[(r"\d+ ms", "[ms]")]);
        settings.bind(|| insta::assert_snapshot!(format!("hostile_{name}"), self.human));
        self
    }

    /// The actual message shown for a mismatch.
    fn actual(&self) -> &str {
        self.result
            .failure
            .as_ref()
            .and_then(|f| f.actual.as_deref())
            .unwrap_or_default()
    }
}

/// Writes a one-scenario KV suite (`suite` adds suite settings, `steps` is the YAML list)
/// into a fresh temporary folder, runs it with `opts`, and returns the result and the human
/// report. Fails the test if the run does not end within [`HANG_GUARD`].
async fn run_case(name: &str, suite: &str, steps: &str, opts: RunOptions) -> Ran {
    let (result, human) = CASES.run(name, suite, steps, opts).await;
    Ran { result, human }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_but_never_completes_the_handshake() {
    let target = servers::silent().await;
    let opts = RunOptions {
        connect_timeout: Duration::from_millis(300),
        ..options(&target)
    };
    let ran = run_case("silent-handshake", "", GET, opts).await;
    ran.assert(Outcome::Error, "did not finish within 300ms")
        .gone(false);
    ran.snapshot("silent_handshake");
    assert!(
        ran.human
            .contains("the target accepted the connection but did not answer")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_tls_but_never_replies() {
    let target = servers::never_replies().await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 300ms }
"#;
    let ran = run_case("never-replies", "", steps, options(&target)).await;
    ran.assert(Outcome::TimedOut, "no message on `C` within 300ms")
        .gone(false);
    ran.snapshot("never_replies");
    let failure = ran.result.failure.as_ref().unwrap();
    assert_eq!(failure.span.unwrap().line, 4);
    assert_eq!(failure.label.as_deref(), Some("expected \"GET blue\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_lines_without_end() {
    let target = servers::floods().await;
    let ran = run_case("flood", "", GET, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply").gone(false);
    ran.snapshot("flood");
    assert_eq!(ran.actual(), "\"junk\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_long_lines_while_no_step_reads() {
    let written = Arc::new(AtomicUsize::new(0));
    let target = servers::floods_long_lines(written.clone()).await;
    let steps = r#"
  - C -> S: GET colour
  - sleep: 2s
  - S -> C: GET blue
"#;
    let ran = run_case("flood-unread", "", steps, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    // The harness stops reading once its queue is full, so the target is held back by TCP
    // flow control: what it wrote is the queue plus the kernel's buffers, not all it could
    // send in the two seconds nobody read.
    let written = written.load(Ordering::Relaxed);
    assert!(
        written < FLOOD_WRITTEN_MAX,
        "the target wrote {written} bytes while no step read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_lines_a_background_rule_answers() {
    let target = servers::floods().await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 2s }
"#;
    let suite = "background:\n  - { on: junk, reply: ok }\n";
    let ran = run_case("flood-answered", suite, steps, options(&target)).await;
    ran.assert(Outcome::TimedOut, "no message on `C` within 2s");
    // Every message answered while the step waited is set aside for the transcript: only as
    // many as a transcript keeps, the rest counted.
    let transcript = &ran.result.transcript;
    assert_eq!(
        transcript.entries.len(),
        harness::run::transcript::MAX_ENTRIES,
        "{} entries",
        transcript.entries.len()
    );
    assert!(transcript.dropped > 0, "nothing was left out");
}

/// Most a flooding target can write while a step sleeps: the harness's queue (4 MiB), a
/// message being framed (the 1 MiB receive limit), and the socket buffers of both ends.
const FLOOD_WRITTEN_MAX: usize = 48 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_huge_line_past_a_small_receive_limit() {
    let target = servers::endless_line(10 << 20).await;
    let opts = RunOptions {
        recv_limit: 64 * 1024,
        ..options(&target)
    };
    let ran = run_case("huge-line-small-limit", "", GET, opts).await;
    ran.assert(
        Outcome::Failed,
        "the target sent more than 65536 bytes without a line end on `C`",
    );
    ran.snapshot("huge_line_small_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_huge_line_past_the_default_receive_limit() {
    let target = servers::endless_line(10 << 20).await;
    let ran = run_case("huge-line-default-limit", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "the target sent more than 1048576 bytes without a line end on `C`",
    );
    ran.snapshot("huge_line_default_limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_before_replying() {
    let target = servers::resets_after(b"").await;
    let ran = run_case("reset", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "the target closed `C` (connection reset) before the expected message",
    )
    .gone(true);
    ran.snapshot("reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_in_the_middle_of_a_message() {
    let target = servers::resets_after(b"GET bl").await;
    let ran = run_case("reset-mid-message", "", GET, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    assert_eq!(ran.actual(), "\"GET bl\"");
    assert!(
        ran.human.contains("\"GET bl\"  (no line end)"),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_right_after_accepting() {
    let target = servers::closes_at_accept().await;
    let ran = run_case("close-at-once", "", GET, options(&target)).await;
    let message = &ran.result.failure.as_ref().unwrap().message;
    assert_eq!(ran.result.outcome, Outcome::Error, "{}", ran.human);
    assert!(
        message.starts_with("TLS handshake with 127.0.0.1:"),
        "{message}"
    );
    assert!(
        message.contains("closed the connection during the handshake") || message.contains("reset"),
        "{message}"
    );
    ran.gone(true);
    if message.contains("closed the connection during the handshake") {
        assert!(
            ran.human
                .contains("a server at its connection limit also closes new connections at once"),
            "{}",
            ran.human
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_during_the_handshake() {
    let target = servers::resets_in_handshake().await;
    let ran = run_case("reset-in-handshake", "", GET, options(&target)).await;
    ran.assert(Outcome::Error, "TLS handshake with 127.0.0.1:")
        .gone(true);
    assert!(ran.human.contains("reset"), "{}", ran.human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_right_after_the_handshake() {
    let target = servers::closes_after_handshake().await;
    let ran = run_case("close-after-handshake", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "the target closed `C` (clean close) before the expected message",
    )
    .gone(true);
    ran.snapshot("close_after_handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drips_slower_than_the_deadline() {
    let target = servers::drips(b"GET blue\n").await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 500ms }
"#;
    let ran = run_case("drip-deadline", "", steps, options(&target)).await;
    ran.assert(Outcome::TimedOut, "no message on `C` within 500ms");
    // What had arrived by the deadline is shown (how much depends on timing).
    let help = ran.result.failure.as_ref().unwrap().help.clone();
    assert!(
        help.as_deref()
            .unwrap_or_default()
            .contains("of a message arrived, with no line end yet: \"G"),
        "{help:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drips_slower_than_the_quiet_period() {
    let target = servers::drips(b"GET blue\n").await;
    let ran = run_case("drip-quiet", "quiet: 50ms\n", GET, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    // The first byte or so, cut off by the quiet period.
    let actual = ran.actual();
    assert!(
        actual.starts_with("\"G") && actual.len() < "\"GET blue\"".len(),
        "{actual}"
    );
    assert!(ran.human.contains("(no line end)"), "{}", ran.human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drips_within_the_deadline_and_the_quiet_period() {
    let target = servers::drips(b"GET blue\n").await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 5s }
"#;
    // A quiet period well above the 100 ms between bytes, even on a busy machine.
    let ran = run_case("drip-ok", "quiet: 1s\n", steps, options(&target)).await;
    assert_eq!(ran.result.outcome, Outcome::Passed, "{}", ran.human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_plain_tcp_where_tls_is_expected() {
    let target = servers::plain_tcp().await;
    let ran = run_case("plain-tcp", "", GET, options(&target)).await;
    ran.assert(Outcome::Error, "does not speak TLS").gone(false);
    ran.snapshot("plain_tcp");
    assert!(
        ran.human.contains("serves TLS on this port"),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_bytes_that_are_not_text() {
    let target = servers::replies_once(b"GET \xff\x00\xfe blue\n").await;
    let ran = run_case("binary", "", GET, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    ran.snapshot("binary");
    assert_eq!(ran.actual(), "12 bytes  47455420 ff00fe20 626c7565");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listens() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let opts = RunOptions {
        target: Some(format!("127.0.0.1:{port}")),
        insecure: true,
        jobs: 1,
        ..RunOptions::default()
    };
    let ran = run_case("nothing-listens", "", GET, opts).await;
    ran.assert(Outcome::Error, "refused").gone(true);
    ran.snapshot("nothing_listens");
    assert!(ran.human.contains("is the server running"), "{}", ran.human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presents_a_certificate_the_harness_does_not_trust() {
    let target = servers::never_replies().await;
    // Trust some other certificate than the one the target presents.
    let other = reference_impl::tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
    let ca = std::env::temp_dir().join(format!("harness-hostile-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, &other.cert_pem).unwrap();
    let opts = RunOptions {
        insecure: false,
        ca: Some(ca.clone()),
        ..options(&target)
    };
    let ran = run_case("untrusted-cert", "", GET, opts).await;
    let _ = std::fs::remove_file(&ca);
    ran.assert(
        Outcome::Error,
        "the server's certificate was rejected: its signature does not verify",
    )
    .gone(false);
    ran.snapshot("untrusted_cert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_in_the_middle_of_a_message() {
    let target = servers::stops_mid_message().await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 300ms }
"#;
    // The quiet period is longer than the deadline: the half message is still a half.
    let ran = run_case("half-message", "quiet: 5s\n", steps, options(&target)).await;
    ran.assert(Outcome::TimedOut, "no message on `C` within 300ms");
    ran.snapshot("half_message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_client_hello_with_a_garbage_record() {
    let target = servers::tls_garbage_handshake().await;
    let ran = run_case("tls-garbage-handshake", "", GET, options(&target)).await;
    ran.assert(Outcome::Error, "TLS handshake with 127.0.0.1:")
        .gone(false);
    ran.snapshot("tls_garbage_handshake");
    assert!(
        ran.human.contains("failed: the target does not speak TLS"),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_client_hello_with_less_than_it_announces() {
    let target = servers::tls_short_handshake().await;
    let opts = RunOptions {
        connect_timeout: Duration::from_secs(1),
        ..options(&target)
    };
    let ran = run_case("tls-short-handshake", "", GET, opts).await;
    ran.assert(
        Outcome::Error,
        "did not finish within 1s: the target sent 69 bytes, then stopped before the handshake was complete",
    );
    ran.snapshot("tls_short_handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_corrupt_tls_record_after_the_handshake() {
    let target = servers::tls_corrupt_record().await;
    let ran = run_case("tls-corrupt-record", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "TLS error on `C` before the expected message: the target sent a record that does not decrypt",
    ).gone(false);
    ran.snapshot("tls_corrupt_record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_on_the_wrong_connection() {
    let target = servers::answers_the_latest_connection().await;
    let ran = run_case(
        "wrong-connection",
        "",
        servers::TWO_SESSIONS,
        options(&target),
    )
    .await;
    ran.assert(Outcome::TimedOut, "no message on `A` within 1s");
    ran.snapshot("wrong_connection");
    let failure = ran.result.failure.as_ref().unwrap();
    assert_eq!(failure.span.unwrap().line, 8);
    // What went to `B` instead is in the help and in the transcript.
    let help = failure.help.as_deref().unwrap_or_default();
    assert_eq!(
        help,
        "meanwhile `B` received a message no step has read yet: \"GET blue\""
    );
    assert!(
        ran.human.contains("S -> B  \"GET blue\\n\""),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_a_nul_inside_a_reply() {
    let target = servers::replies_once(b"PUT: O\0K\n").await;
    let steps = r#"
  - C -> S: "PUT colour\nblue"
  - S -> C: "PUT: OK"
"#;
    let ran = run_case("nul", "", steps, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    ran.snapshot("nul");
    // Every byte, the NUL too, and the line end after it: not cut at the NUL.
    assert_eq!(ran.actual(), "8 bytes  5055543a 204f004b");
    assert!(
        ran.human.contains("S -> C  9 bytes  5055543a 204f004b 0a"),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_bytes_that_are_not_utf8_inside_a_reply() {
    let target = servers::replies_once(b"CONNECT: \xff\xfeOK\n").await;
    let steps = r#"
  - C -> S: CONNECT alice
  - S -> C: "CONNECT: OK"
"#;
    let ran = run_case("not-utf8", "", steps, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    ran.snapshot("not_utf8");
    // The bytes themselves, not replacement characters.
    assert_eq!(ran.actual(), "13 bytes  434f4e4e 4543543a 20fffe4f 4b");
    assert!(!ran.human.contains('\u{fffd}'), "{}", ran.human);
}
