//! The harness against targets that misbehave: silent, flooding, resetting, dripping, not
//! speaking TLS or garbling it, answering on the wrong connection, or not there at all. Each case runs one small scenario and checks that the
//! run ends (within a generous bound: a hang guard, not a speed test), without a panic, with
//! the expected outcome and a message that says what happened.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use harness::run::{Outcome, RunOptions, ScenarioResult};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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
/// Longest a hostile connection lives; the test aborts it earlier when it ends.
const LIFETIME: Duration = Duration::from_secs(30);

/// A hostile target listening on a loopback port. Dropping it stops the target and every
/// connection it holds.
struct Target {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a target that runs `handler` on each accepted connection (a few at most).
async fn serve<F, Fut>(handler: F) -> Target
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Owned here, so aborting this task aborts every connection too.
        let mut conns = JoinSet::new();
        for _ in 0..8 {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            conns.spawn(tokio::time::timeout(LIFETIME, handler(tcp)));
        }
        while conns.join_next().await.is_some() {}
    });
    Target { addr, task }
}

/// The server half of a TLS handshake with a fresh self-signed certificate.
async fn tls(tcp: TcpStream) -> Option<TlsStream<TcpStream>> {
    static ACCEPTOR: OnceLock<TlsAcceptor> = OnceLock::new();
    let acceptor = ACCEPTOR.get_or_init(|| {
        let cert = reference_impl::tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
        let config = reference_impl::tls::server_config(vec![cert.cert_der], cert.key_der).unwrap();
        TlsAcceptor::from(config)
    });
    acceptor.accept(tcp).await.ok()
}

/// Reads and discards up to a bounded amount, until the peer stops or an error.
async fn drain<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    for _ in 0..1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads one chunk (the harness's first message), so that a reply follows a request.
async fn read_some<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
}

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
    let target = serve(|tcp| async move {
        tokio::time::sleep(LIFETIME).await;
        drop(tcp);
    })
    .await;
    let opts = RunOptions {
        connect_timeout: Duration::from_millis(300),
        ..options(&target)
    };
    let ran = run_case("silent-handshake", "", GET, opts).await;
    ran.assert(Outcome::Error, "did not finish within 300ms");
    ran.snapshot("silent_handshake");
    assert!(
        ran.human
            .contains("the target accepted the connection but did not answer")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_tls_but_never_replies() {
    let target = serve(|tcp| async move {
        if let Some(mut tls) = tls(tcp).await {
            drain(&mut tls).await;
        }
    })
    .await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 300ms }
"#;
    let ran = run_case("never-replies", "", steps, options(&target)).await;
    ran.assert(Outcome::TimedOut, "no message on `C` within 300ms");
    ran.snapshot("never_replies");
    let failure = ran.result.failure.as_ref().unwrap();
    assert_eq!(failure.span.unwrap().line, 4);
    assert_eq!(failure.label.as_deref(), Some("expected \"GET blue\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_lines_without_end() {
    let target = serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let lines = "junk\n".repeat(1000);
        // Up to about 500 MB, or until the harness goes away.
        for _ in 0..100_000 {
            if tls.write_all(lines.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let ran = run_case("flood", "", GET, options(&target)).await;
    ran.assert(Outcome::Failed, "unexpected reply");
    ran.snapshot("flood");
    assert_eq!(ran.actual(), "\"junk\"");
}

/// Sends a line of `len` bytes with no line end, then keeps the connection open.
async fn endless_line(len: usize) -> Target {
    serve(move |tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..len / chunk.len() {
            if tls.write_all(&chunk).await.is_err() {
                return;
            }
        }
        drain(&mut tls).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_huge_line_past_a_small_receive_limit() {
    let target = endless_line(10 << 20).await;
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
    let target = endless_line(10 << 20).await;
    let ran = run_case("huge-line-default-limit", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "the target sent more than 1048576 bytes without a line end on `C`",
    );
    ran.snapshot("huge_line_default_limit");
}

/// Sends `reply` after the first request, then resets the connection (RST, not FIN).
async fn resets_after(reply: &'static [u8]) -> Target {
    serve(move |tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        if !reply.is_empty() {
            let _ = tls.write_all(reply).await;
            let _ = tls.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A zero linger makes the close a reset; it does not block.
        #[allow(deprecated)]
        let _ = tls.get_ref().0.set_linger(Some(Duration::ZERO));
        drop(tls);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_before_replying() {
    let target = resets_after(b"").await;
    let ran = run_case("reset", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "the target closed `C` (connection reset) before the expected message",
    );
    ran.snapshot("reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_in_the_middle_of_a_message() {
    let target = resets_after(b"GET bl").await;
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
    let target = serve(|tcp| async move { drop(tcp) }).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_during_the_handshake() {
    let target = serve(|tcp| async move {
        // Let the client's hello arrive unread, then reset.
        tokio::time::sleep(Duration::from_millis(100)).await;
        #[allow(deprecated)]
        let _ = tcp.set_linger(Some(Duration::ZERO));
        drop(tcp);
    })
    .await;
    let ran = run_case("reset-in-handshake", "", GET, options(&target)).await;
    ran.assert(Outcome::Error, "TLS handshake with 127.0.0.1:");
    assert!(ran.human.contains("reset"), "{}", ran.human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_right_after_the_handshake() {
    let target = serve(|tcp| async move {
        if let Some(mut tls) = tls(tcp).await {
            let _ = tls.shutdown().await;
        }
    })
    .await;
    let ran = run_case("close-after-handshake", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "the target closed `C` (clean close) before the expected message",
    );
    ran.snapshot("close_after_handshake");
}

/// Sends `text` one byte at a time, 100 ms apart.
async fn drips(text: &'static [u8]) -> Target {
    serve(move |tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        for &b in text {
            if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drain(&mut tls).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drips_slower_than_the_deadline() {
    let target = drips(b"GET blue\n").await;
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
    let target = drips(b"GET blue\n").await;
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
    let target = drips(b"GET blue\n").await;
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
    let target = serve(|mut tcp| async move {
        let _ = tcp.write_all(b"hello\n").await;
        drain(&mut tcp).await;
    })
    .await;
    let ran = run_case("plain-tcp", "", GET, options(&target)).await;
    ran.assert(Outcome::Error, "does not speak TLS");
    ran.snapshot("plain_tcp");
    assert!(
        ran.human.contains("serves TLS on this port"),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_bytes_that_are_not_text() {
    let target = serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let _ = tls.write_all(b"GET \xff\x00\xfe blue\n").await;
        drain(&mut tls).await;
    })
    .await;
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
    ran.assert(Outcome::Error, "refused");
    ran.snapshot("nothing_listens");
    assert!(ran.human.contains("is the server running"), "{}", ran.human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presents_a_certificate_the_harness_does_not_trust() {
    let target = serve(|tcp| async move {
        if let Some(mut tls) = tls(tcp).await {
            drain(&mut tls).await;
        }
    })
    .await;
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
    );
    ran.snapshot("untrusted_cert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_in_the_middle_of_a_message() {
    let target = serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let _ = tls.write_all(b"GET bl").await;
        let _ = tls.flush().await;
        drain(&mut tls).await;
    })
    .await;
    let steps = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 300ms }
"#;
    // The quiet period is longer than the deadline: the half message is still a half.
    let ran = run_case("half-message", "quiet: 5s\n", steps, options(&target)).await;
    ran.assert(Outcome::TimedOut, "no message on `C` within 300ms");
    ran.snapshot("half_message");
}

/// 64 bytes that look random: no TLS message, no key decrypts them.
const GARBAGE: &str = "a54dca182530bb1d6d132cded6237b2ed91e3f721fcb1971174494d6493c9d5c\
                       3460be31201e69fedaa0eee8b9997f5c7c2999fdafe593253cd654af4dfad714";

/// A TLS record header (`kind`, TLS 1.2, 64 bytes long) followed by [`GARBAGE`].
fn garbage_record(kind: u8) -> Vec<u8> {
    let mut record = vec![kind, 0x03, 0x03, 0x00, 0x40];
    record.extend(hex::decode(GARBAGE).unwrap());
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_client_hello_with_a_garbage_record() {
    let target = serve(|mut tcp| async move {
        read_some(&mut tcp).await;
        // A handshake record (0x16) whose content is no handshake message.
        let _ = tcp.write_all(&garbage_record(0x16)).await;
        drain(&mut tcp).await;
    })
    .await;
    let ran = run_case("tls-garbage-handshake", "", GET, options(&target)).await;
    ran.assert(Outcome::Error, "TLS handshake with 127.0.0.1:");
    ran.snapshot("tls_garbage_handshake");
    assert!(
        ran.human.contains("failed: the target does not speak TLS"),
        "{}",
        ran.human
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_client_hello_with_less_than_it_announces() {
    let target = serve(|mut tcp| async move {
        read_some(&mut tcp).await;
        // A record that starts a 4096-byte ServerHello (0x02) and holds 60 bytes of it.
        let mut record = garbage_record(0x16);
        record[5..9].copy_from_slice(&[0x02, 0x00, 0x10, 0x00]);
        let _ = tcp.write_all(&record).await;
        drain(&mut tcp).await;
    })
    .await;
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
    let target = serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        // Once the request is surely sent: an application-data record (0x17) that does not
        // decrypt, written on the TCP stream under the TLS layer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tls.get_mut().0.write_all(&garbage_record(0x17)).await;
        drain(&mut tls).await;
    })
    .await;
    let ran = run_case("tls-corrupt-record", "", GET, options(&target)).await;
    ran.assert(
        Outcome::Failed,
        "TLS error on `C` before the expected message: the target sent a record that does not decrypt",
    );
    ran.snapshot("tls_corrupt_record");
}

/// The writing half of the connection a KV server answers on.
type Answering = Arc<tokio::sync::Mutex<Option<WriteHalf<TlsStream<TcpStream>>>>>;

/// A KV server that keeps its client in one global variable: each connection it accepts
/// replaces the one before, so every reply goes to the connection opened last, whichever
/// connection the request came on.
async fn answers_the_latest_connection() -> Target {
    let latest = Answering::default();
    serve(move |tcp| {
        let latest = latest.clone();
        async move {
            let Some(tls) = tls(tcp).await else {
                return;
            };
            let (reader, writer) = tokio::io::split(tls);
            *latest.lock().await = Some(writer);
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = match line.split(' ').next() {
                    Some("CONNECT") => b"CONNECT: OK\n",
                    Some("GET") => b"GET blue\n",
                    _ => b"ERROR\n",
                };
                if let Some(writer) = latest.lock().await.as_mut() {
                    let _ = writer.write_all(reply).await;
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_on_the_wrong_connection() {
    let target = answers_the_latest_connection().await;
    let steps = r#"
  - A -> S: CONNECT alice
  - S -> A: "CONNECT: OK"
  - B -> S: CONNECT bob
  - S -> B: "CONNECT: OK"
  - A -> S: GET colour
  - S -> A: GET blue
"#;
    let ran = run_case("wrong-connection", "", steps, options(&target)).await;
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

/// Answers the first request with `reply`, then keeps the connection open.
async fn replies_once(reply: &'static [u8]) -> Target {
    serve(move |tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let _ = tls.write_all(reply).await;
        drain(&mut tls).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_a_nul_inside_a_reply() {
    let target = replies_once(b"PUT: O\0K\n").await;
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
    let target = replies_once(b"CONNECT: \xff\xfeOK\n").await;
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
