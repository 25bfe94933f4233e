//! The `rsa` transport (kv-rsa) against small servers written here, each playing the server
//! side of the key exchange and the blocks one way: right, split, cut short, undecryptable,
//! with a bad key or none. Every run is bounded (a hang guard, not a speed test); reports
//! and transcripts are snapshots.

use std::net::SocketAddr;
use std::time::Duration;

use harness::run::{Outcome, RunOptions, ScenarioResult};
use reference_impl::kv::auth::{TEST_SALT, hash_password};
use reference_impl::kv::rsa::{self as kv_rsa, BLOCK_LEN, KeyPair, PemReader};
use rsa::PublicKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::support;

/// Longest a run may take before the test calls it a hang.
const HANG_GUARD: Duration = Duration::from_secs(20);
/// The suites of the cases: kv-rsa, whose static checks must pass; ids `rsa/<case>`.
const CASES: support::OneScenario<'static> = support::OneScenario {
    tag: "rsa",
    protocol: "kv-rsa",
    timeout: "2s",
    hang_guard: HANG_GUARD,
    static_checks: Some(true),
};
/// Longest any read of a test server waits.
const READ_WAIT: Duration = Duration::from_secs(10);

/// A server on a loopback port running `handler` on its first connection. Dropping it
/// stops the server.
struct Target {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<F, Fut>(handler: F) -> Target
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = tokio::time::timeout(Duration::from_secs(30), handler(tcp)).await;
        }
    });
    Target { addr, task }
}

/// The server's end of an exchanged connection.
struct Peer {
    tcp: TcpStream,
    own: KeyPair,
    client: PublicKey,
    /// Bytes read past the client's key.
    buffered: Vec<u8>,
}

impl Peer {
    /// Reads the client's key and answers with a fresh one of the server's.
    async fn accept(mut tcp: TcpStream) -> Self {
        let mut reader = PemReader::default();
        let mut buf = [0u8; 4096];
        let (client, buffered) = loop {
            let n = timeout(tcp.read(&mut buf)).await.unwrap();
            assert!(n > 0, "the client closed before its key");
            if let Some(done) = reader.push(&buf[..n]).unwrap() {
                break done;
            }
        };
        let own = KeyPair::generate().unwrap();
        tcp.write_all(own.public_pem().as_bytes()).await.unwrap();
        Self {
            tcp,
            own,
            client,
            buffered,
        }
    }

    /// Exactly `n` bytes from the client.
    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buffered.len() < n {
            let mut buf = [0u8; 4096];
            let read = timeout(self.tcp.read(&mut buf)).await.unwrap();
            assert!(read > 0, "the client closed early");
            self.buffered.extend_from_slice(&buf[..read]);
        }
        self.buffered.drain(..n).collect()
    }

    /// The plaintext of the client's next block.
    async fn read_block(&mut self) -> Vec<u8> {
        let block = self.read_exact(BLOCK_LEN).await;
        self.own.decrypt(&block).unwrap()
    }

    /// A block for the client.
    fn block(&self, text: &[u8]) -> Vec<u8> {
        kv_rsa::encrypt(&self.client, text).unwrap()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }
}

async fn timeout<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(READ_WAIT, f)
        .await
        .expect("the test server waited too long")
}

/// How a case ended.
struct Ran {
    result: ScenarioResult,
    /// The human report, as `harness run` prints it.
    human: String,
}

impl Ran {
    fn assert(&self, outcome: Outcome, says: &str) -> &Self {
        assert_eq!(self.result.outcome, outcome, "{}", self.human);
        let message = &self.result.failure.as_ref().unwrap().message;
        assert!(
            message.contains(says),
            "message {message:?} should contain {says:?}\n{}",
            self.human
        );
        self
    }

    fn passed(&self) -> &Self {
        assert_eq!(self.result.outcome, Outcome::Passed, "{}", self.human);
        self
    }

    /// The transcript without times, the address and the run's unique value.
    fn transcript(&self) -> String {
        let redact = [(self.result.uniq.clone(), "{{uniq}}".to_owned())];
        self.result.transcript.render(false, &redact)
    }
}

fn snapshots() -> insta::Settings {
    CASES.snapshots(&[])
}

/// Options aimed at `target`.
fn options(target: &Target) -> RunOptions {
    RunOptions {
        target: Some(target.addr.to_string()),
        jobs: 1,
        connect_timeout: Duration::from_secs(2),
        ..RunOptions::default()
    }
}

/// Writes a one-scenario kv-rsa suite (`suite` adds suite settings, `steps` is the YAML
/// list) into a fresh temporary folder, checks it as `harness run` does, and runs it with
/// `opts`.
async fn run_case(name: &str, suite: &str, steps: &str, opts: RunOptions) -> Ran {
    run_case_of("kv-rsa", name, suite, steps, opts).await
}

/// [`run_case`] for a suite of `protocol`. The static checks must pass for kv-rsa only: a
/// library caller may skip them, and the run must still say what is wrong.
async fn run_case_of(
    protocol: &str,
    name: &str,
    suite: &str,
    steps: &str,
    opts: RunOptions,
) -> Ran {
    let case = support::OneScenario {
        protocol,
        static_checks: Some(protocol == "kv-rsa"),
        ..CASES
    };
    let (result, human) = case.run(name, suite, steps, opts).await;
    Ran { result, human }
}

/// A login, a split request, a reply cut across reads, and a PING the background answers.
const SESSION: &str = r#"
  - C -> S: CONNECT alice
  - send: { bytes: "{{pbkdf2('pw')}}", clear: "{{hash_in_clear}}" }
  - S -> C: "CONNECT: OK"
  - send: { text: GET colour, split: [1, 40] }
  - S -> C: GET blue
  - S -> C: "{{crc32('blue')}}"
  - S -> C: BYE
"#;

/// A server for [`SESSION`]; `hash_in_clear`: how it reads the password hash. What it
/// received, in order, goes to `seen`.
async fn session_server(hash_in_clear: bool, seen: mpsc::UnboundedSender<Vec<u8>>) -> Target {
    serve(move |tcp| async move {
        let mut peer = Peer::accept(tcp).await;
        let _ = seen.send(peer.read_block().await);
        let hash = if hash_in_clear {
            peer.read_exact(32).await
        } else {
            peer.read_block().await
        };
        let _ = seen.send(hash);
        // One block in two writes, a pause between them.
        let ok = peer.block(b"CONNECT: OK\n");
        peer.send(&ok[..10]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.send(&ok[10..]).await;
        let _ = seen.send(peer.read_block().await);
        // Two blocks in one write.
        let mut two = peer.block(b"GET blue\n");
        two.extend(
            peer.block(format!("{}\n", reference_impl::kv::auth::crc32(b"blue")).as_bytes()),
        );
        peer.send(&two).await;
        // The background rule answers this one, sealed.
        let ping = peer.block(b"PING\n");
        peer.send(&ping).await;
        let _ = seen.send(peer.read_block().await);
        let bye = peer.block(b"BYE\n");
        peer.send(&bye).await;
        let _ = timeout(peer.tcp.read(&mut [0u8; 64])).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_speaks_plaintext_while_the_transport_encrypts() {
    let background = "background:\n  - on: PING\n    reply: PONG\n";
    for hash_in_clear in [true, false] {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let target = session_server(hash_in_clear, tx).await;
        let mut opts = options(&target);
        opts.vars
            .insert("hash_in_clear".into(), hash_in_clear.to_string());
        let ran = run_case("session", background, SESSION, opts).await;
        ran.passed();
        let mut seen = Vec::new();
        while let Ok(bytes) = rx.try_recv() {
            seen.push(bytes);
        }
        assert_eq!(
            seen,
            [
                b"CONNECT alice\n".to_vec(),
                hash_password(b"pw", &TEST_SALT).to_vec(),
                b"GET colour\n".to_vec(),
                b"PONG\n".to_vec(),
            ]
        );
        let transcript = ran.transcript();
        assert_eq!(
            transcript.contains("(in the clear)"),
            hash_in_clear,
            "{transcript}"
        );
        // The JSON report's events: the exchange, and which sends skipped the encryption.
        let json = serde_json::to_value(&ran.result.transcript).unwrap();
        let entries = json["entries"].as_array().unwrap();
        assert_eq!(entries[1]["event"], "keys_exchanged");
        assert_eq!(entries[1]["bits"], 512);
        assert_eq!(entries[3]["event"], "sent");
        assert_eq!(entries[3]["len"], 32);
        assert_eq!(
            entries[3]["clear"].as_bool().unwrap_or(false),
            hash_in_clear
        );
        assert!(entries[2].get("clear").is_none(), "{}", entries[2]);
        if hash_in_clear {
            snapshots().bind(|| insta::assert_snapshot!("rsa_session_transcript", transcript));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_53_bytes_is_an_error_of_the_scenario_not_of_the_target() {
    let target = serve(|tcp| async move {
        let mut peer = Peer::accept(tcp).await;
        let _ = timeout(peer.tcp.read(&mut [0u8; 64])).await;
    })
    .await;
    let steps = "\n  - C -> S: PUT {{repeat('k', 55)}}\n  - S -> C: \"PUT: OK\"\n";
    let ran = run_case("too-long", "", steps, options(&target)).await;
    ran.assert(
        Outcome::Error,
        "this message is 60 bytes; one 512-bit RSA block holds at most 53 (specs/kv-rsa.md)",
    );
    let span = ran.result.failure.as_ref().unwrap().span.unwrap();
    assert_eq!((span.line, span.col), (3, 13));
    snapshots().bind(|| insta::assert_snapshot!("rsa_message_too_long", ran.human));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_inside_a_block_or_a_block_that_does_not_decrypt_ends_the_connection() {
    let steps = "\n  - C -> S: CONNECT alice\n  - S -> C: \"CONNECT: OK\"\n  - S -> C: next\n";
    let mut reports = String::new();
    for (name, tail) in [
        ("cut-block", vec![7u8; 32]),
        // Above any 512-bit modulus: no ciphertext at all.
        ("undecryptable", vec![0xff; BLOCK_LEN]),
    ] {
        let target = serve(move |tcp| async move {
            let mut peer = Peer::accept(tcp).await;
            peer.read_block().await;
            let mut bytes = peer.block(b"CONNECT: OK\n");
            bytes.extend_from_slice(&tail);
            peer.send(&bytes).await;
            if tail.len() < BLOCK_LEN {
                let _ = peer.tcp.shutdown().await;
            }
            let _ = timeout(peer.tcp.read(&mut [0u8; 64])).await;
        })
        .await;
        let ran = run_case(name, "", steps, options(&target)).await;
        let says = match name {
            "cut-block" => "read error: the stream ended 32 bytes into a 64-byte RSA block",
            _ => {
                "read error: block 2 from the target does not decrypt with this connection's RSA key"
            }
        };
        ran.assert(Outcome::Failed, says);
        assert_eq!(ran.result.failure.as_ref().unwrap().span.unwrap().line, 5);
        reports.push_str(&ran.human);
        reports.push('\n');
    }
    snapshots().bind(|| insta::assert_snapshot!("rsa_broken_blocks", reports));
}

/// How a test server ends after its answer to the client's key.
#[derive(Clone, Copy)]
enum Then {
    Close,
    Reset,
    Stay,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_exchange_that_fails_says_how() {
    let big = {
        let private = rsa::PrivateKey::new_unchecked(&mut getrandom::SysRng, 1024).unwrap();
        kv_rsa::public_pem(&private.to_public_key()).unwrap()
    };
    let half = KeyPair::generate().unwrap().public_pem()[..40].to_owned();
    let mut endless = b"-----BEGIN RSA PUBLIC KEY-----\n".to_vec();
    endless.extend(std::iter::repeat_n(b'A', 3000));
    let cases: Vec<(&str, &[u8], Then, &str)> = vec![
        (
            "closes",
            b"",
            Then::Close,
            "the server closed the connection instead of sending its public key",
        ),
        (
            "resets",
            b"",
            Then::Reset,
            "the server reset the connection during the key exchange",
        ),
        (
            "not-pem",
            b"hello\n",
            Then::Stay,
            "the server's public key is not a PKCS#1 PEM block",
        ),
        (
            "key-size",
            big.as_bytes(),
            Then::Stay,
            "the server's public key has 1024 bits; the protocol uses 512-bit keys",
        ),
        (
            "endless-key",
            &endless,
            Then::Stay,
            "the server sent more than 2048 bytes without the END line of a PEM public key",
        ),
        (
            "half-key",
            half.as_bytes(),
            Then::Close,
            "the server closed the connection after 40 bytes of its public key",
        ),
        (
            "half-key-silent",
            half.as_bytes(),
            Then::Stay,
            "the server sent 40 bytes but no complete public key within 300ms",
        ),
        (
            "silent",
            b"",
            Then::Stay,
            "the server sent no public key within 300ms",
        ),
    ];
    let mut reports = String::new();
    for (name, answer, then, says) in cases {
        let answer = answer.to_vec();
        let target = serve(move |mut tcp| async move {
            let mut buf = [0u8; 4096];
            // The client's key, in one write.
            let n = timeout(tcp.read(&mut buf)).await.unwrap();
            assert!(buf[..n].starts_with(b"-----BEGIN RSA PUBLIC KEY-----\n"));
            tcp.write_all(&answer).await.unwrap();
            match then {
                Then::Close => {}
                Then::Reset => {
                    // A zero linger makes the close a reset.
                    #[allow(deprecated)]
                    tcp.set_linger(Some(Duration::ZERO)).unwrap();
                }
                Then::Stay => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        })
        .await;
        let opts = RunOptions {
            connect_timeout: Duration::from_millis(300),
            ..options(&target)
        };
        let ran = run_case(name, "", "\n  - C -> S: CONNECT alice\n", opts).await;
        ran.assert(Outcome::Error, says);
        reports.push_str(&ran.human);
        reports.push('\n');
    }
    snapshots().bind(|| insta::assert_snapshot!("rsa_key_exchange_errors", reports));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_can_skip_the_key_or_offer_one_of_their_own() {
    // `key: none`: the first bytes are the message itself.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let target = serve(move |mut tcp| async move {
        let mut buf = [0u8; 4096];
        let n = timeout(tcp.read(&mut buf)).await.unwrap();
        let _ = tx.send(buf[..n].to_vec());
        tcp.write_all(b"NO KEY\n").await.unwrap();
    })
    .await;
    let steps = "
  - connect: { conn: C, key: none }
  - C -> S: CONNECT alice
  - S -> C: NO KEY
  - expect_close: C
";
    let none = run_case("no-key", "", steps, options(&target)).await;
    none.passed();
    assert_eq!(rx.recv().await.unwrap(), b"CONNECT alice\n");

    // A 1024-bit key of the scenario's: sent as it is, then messages in the clear.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let target = serve(move |mut tcp| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"hi\n") {
            let n = timeout(tcp.read(&mut buf)).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(b"-----END RSA PUBLIC KEY-----\n") {
                tcp.write_all(b"WRONG SIZE\n").await.unwrap();
            }
        }
        let _ = tx.send(got);
    })
    .await;
    let steps = r#"
  - connect: { conn: C, key: "{{rsa_key(1024)}}" }
  - S -> C: WRONG SIZE
  - C -> S: hi
"#;
    let own = run_case("own-key", "", steps, options(&target)).await;
    own.passed();
    let got = rx.recv().await.unwrap();
    let pem = got.strip_suffix(b"hi\n").unwrap();
    assert_eq!(harness::transport::rsa::key_bits(pem), Some(1024));

    let transcripts = format!("{}\n{}", none.transcript(), own.transcript());
    snapshots().bind(|| insta::assert_snapshot!("rsa_own_keys_transcripts", transcripts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_template_that_is_not_a_boolean_is_an_error_of_the_scenario() {
    let target = serve(|tcp| async move {
        let mut peer = Peer::accept(tcp).await;
        let _ = timeout(peer.tcp.read(&mut [0u8; 64])).await;
    })
    .await;
    let mut opts = options(&target);
    opts.vars.insert("hash_in_clear".into(), "yes".into());
    let steps = "\n  - send: { bytes: \"{{pbkdf2('pw')}}\", clear: \"{{hash_in_clear}}\" }\n";
    let ran = run_case("clear-yes", "", steps, opts).await;
    ran.assert(
        Outcome::Error,
        "`clear` must expand to `true` or `false`, found \"yes\"",
    );
    snapshots().bind(|| insta::assert_snapshot!("rsa_clear_not_a_boolean", ran.human));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_reply_too_long_for_a_block_is_not_sent() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let target = serve(move |tcp| async move {
        let mut peer = Peer::accept(tcp).await;
        let ping = peer.block(b"PING\n");
        peer.send(&ping).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bye = peer.block(b"BYE\n");
        peer.send(&bye).await;
        // Nothing arrives but the end of the connection.
        let mut rest = Vec::new();
        let _ = timeout(peer.tcp.read_to_end(&mut rest)).await;
        let _ = tx.send(rest);
    })
    .await;
    let background = "background:\n  - on: PING\n    reply: \"PONG {{repeat('x', 55)}}\"\n";
    let steps = "\n  - connect: C\n  - S -> C: BYE\n  - close: C\n";
    let ran = run_case("long-reply", background, steps, options(&target)).await;
    ran.passed();
    assert_eq!(rx.recv().await.unwrap(), b"");
    let transcript = ran.transcript();
    snapshots().bind(|| insta::assert_snapshot!("rsa_background_reply_too_long", transcript));
}

/// A library caller that skips the static checks still learns that `key` is for kv-rsa.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_offer_on_another_protocol_is_an_error_of_the_scenario() {
    let target = serve(|mut tcp| async move {
        let _ = timeout(tcp.read(&mut [0u8; 64])).await;
    })
    .await;
    let steps = "\n  - connect: { conn: C, key: none }\n  - C -> S: hello\n";
    let ran = run_case_of("mathsvc", "key-on-tcp", "", steps, options(&target)).await;
    ran.assert(
        Outcome::Error,
        "`key` applies to connections with an RSA key exchange (kv-rsa), not to tcp connections",
    );
    assert_eq!(ran.result.failure.as_ref().unwrap().span.unwrap().line, 3);
    snapshots().bind(|| insta::assert_snapshot!("rsa_key_on_tcp", ran.human));
}

/// The suite syntax against the built-in kv-rsa reference server: a session, and the key
/// scenarios the server must refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_reference_server_speaks_the_same_transport() {
    let steps = r#"
  - C -> S: CONNECT u{{uniq}}
  - send: { bytes: "{{pbkdf2('pw')}}", clear: "{{hash_in_clear}}" }
  - S -> C: "CONNECT: OK"
  - C -> S: "PUT colour\nblue"
  - S -> C: "PUT: OK"
  - C -> S: GET colour
  - S -> C: GET blue
  - S -> C: "{{crc32('blue')}}"
  - connect: { conn: K, key: "{{rsa_key(1024)}}" }
  - expect_close: K
  - connect: { conn: N, key: none }
  - N -> S: CONNECT early
  - expect_close: N
  - C -> S: DISCONNECT
  - S -> C: "DISCONNECT: OK"
  - expect_close: C
"#;
    let opts = RunOptions {
        jobs: 1,
        ..RunOptions::default()
    };
    let ran = run_case("reference", "", steps, opts).await;
    ran.passed();
    snapshots().bind(|| insta::assert_snapshot!("rsa_reference_transcript", ran.transcript()));
}

/// How `--exec` tells that a kv-rsa server it started is up: it answers a fresh key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_liveness_probe_offers_a_key_and_wants_one_back() {
    use harness::protocol::{self, kv_rsa};
    use harness::target::server::answers;
    use harness::transport::Transport;
    let reference = protocol::start_reference(&kv_rsa::PROTOCOL, &Default::default())
        .await
        .unwrap();
    assert!(answers(reference.addr, kv_rsa::PROTOCOL.probe, &Transport::Rsa).await);
    reference.stop().await;
    // A server that takes the key and says nothing is not up.
    let silent = serve(|mut tcp| async move {
        let _ = timeout(tcp.read(&mut [0u8; 4096])).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    assert!(!answers(silent.addr, kv_rsa::PROTOCOL.probe, &Transport::Rsa).await);
}

/// The server's key read whatever follows it: a block in the same write (kept for the block
/// reader), or nothing, not even the key's line end (complete once the server is quiet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_key_is_read_with_a_block_behind_it_or_without_its_line_end() {
    for with_block in [true, false] {
        let target = serve(move |mut tcp| async move {
            let mut reader = PemReader::default();
            let mut buf = [0u8; 4096];
            let client = loop {
                let n = timeout(tcp.read(&mut buf)).await.unwrap();
                if let Some((key, _)) = reader.push(&buf[..n]).unwrap() {
                    break key;
                }
            };
            let own = KeyPair::generate().unwrap();
            let pem = own.public_pem().trim_end().as_bytes().to_vec();
            let mut peer = Peer {
                tcp,
                own,
                client,
                buffered: Vec::new(),
            };
            if with_block {
                let mut first = pem;
                first.push(b'\n');
                first.extend(peer.block(b"WELCOME\n"));
                peer.send(&first).await;
            } else {
                peer.send(&pem).await;
                let hello = peer.read_block().await;
                let reply = peer.block(&[b"WELCOME ".as_slice(), &hello].concat());
                peer.send(&reply).await;
            }
            let _ = timeout(peer.tcp.read(&mut [0u8; 64])).await;
        })
        .await;
        let steps = if with_block {
            "\n  - S -> C: WELCOME\n"
        } else {
            "\n  - C -> S: hello\n  - S -> C: WELCOME hello\n"
        };
        let ran = run_case("key-then", "", steps, options(&target)).await;
        ran.passed();
        assert!(
            ran.transcript()
                .contains("C  keys exchanged (512-bit RSA)\n"),
            "{}",
            ran.transcript()
        );
    }
}
