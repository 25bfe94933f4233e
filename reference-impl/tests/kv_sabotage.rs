//! Sabotage of the key-value server: a freeze after the first login, a wrong CRC for values
//! with a space and a session leaked after junk (run in-process), and an exit on the first
//! `PUT` or on a long line (run as the `reference` binary, since they end the process).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reference_impl::kv::auth::{HASH_LEN, crc32};
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::{ClientMessage, Dialect, Reply};
use reference_impl::kv::server::{self, Sabotage, ServerConfig};
use reference_impl::tls::{self, ClientTrust};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long any expected event may take.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long to wait for something that must not happen.
const SILENCE: Duration = Duration::from_millis(500);

/// Any 32 bytes log in to a first-use account; no PBKDF2 needed.
const ALICE: [u8; HASH_LEN] = [1; HASH_LEN];
const BOB: [u8; HASH_LEN] = [2; HASH_LEN];

fn insecure_tls() -> Arc<rustls::ClientConfig> {
    tls::client_config(ClientTrust::InsecureAcceptAny).unwrap()
}

async fn connect(addr: SocketAddr, client_tls: Arc<rustls::ClientConfig>) -> Client {
    tokio::time::timeout(PATIENCE, try_connect(addr, client_tls))
        .await
        .expect("connecting timed out")
        .unwrap()
}

async fn try_connect(
    addr: SocketAddr,
    client_tls: Arc<rustls::ClientConfig>,
) -> Result<Client, ClientError> {
    let name = tls::server_name("127.0.0.1").unwrap();
    Client::connect(addr, client_tls, name, Dialect::Spec).await
}

/// Logs in, then checks that the server is frozen: a second connection neither completes
/// its handshake nor logs in, and the first gets no reply (and is not closed either).
async fn check_frozen(addr: SocketAddr, client_tls: Arc<rustls::ClientConfig>) {
    let mut first = connect(addr, client_tls.clone()).await;
    first.login("alice", &ALICE).await.unwrap();

    let second = tokio::time::timeout(SILENCE, async {
        let mut second = try_connect(addr, client_tls).await?;
        second.login("bob", &BOB).await
    })
    .await;
    assert!(
        second.is_err(),
        "a second connection completed (handshake and login) on a frozen server: {second:?}"
    );

    first.set_timeout(SILENCE);
    match first.get("colour").await {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("a frozen server answered GET or closed the connection: {other:?}"),
    }
}

#[tokio::test]
async fn freeze_after_login_in_process() {
    let cert = tls::self_signed(&[]).unwrap();
    let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der).unwrap();
    let running = server::spawn(
        ServerConfig {
            sabotage: Sabotage {
                freeze_after_login: true,
                ..Sabotage::NONE
            },
            ..ServerConfig::default()
        },
        server_tls,
    )
    .await
    .unwrap();
    let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der])).unwrap();
    check_frozen(running.addr(), client_tls).await;
    // A frozen server still shuts down, without waiting for its frozen connections.
    tokio::time::timeout(Duration::from_secs(3), running.shutdown())
        .await
        .expect("a frozen server did not shut down");
}

#[tokio::test]
async fn without_sabotage_a_second_client_is_served() {
    let cert = tls::self_signed(&[]).unwrap();
    let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der).unwrap();
    let running = server::spawn(ServerConfig::default(), server_tls)
        .await
        .unwrap();
    let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der])).unwrap();
    let mut first = connect(running.addr(), client_tls.clone()).await;
    first.login("alice", &ALICE).await.unwrap();
    let mut second = connect(running.addr(), client_tls).await;
    second.login("bob", &BOB).await.unwrap();
    first.put("colour", "blue").await.unwrap();
    assert_eq!(first.get("colour").await.unwrap().as_deref(), Some("blue"));
    running.shutdown().await;
}

/// Starts an in-process server with `sabotage`; returns it and a client configuration that
/// trusts it.
async fn sabotaged(sabotage: Sabotage) -> (server::RunningServer, Arc<rustls::ClientConfig>) {
    let cert = tls::self_signed(&[]).unwrap();
    let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der).unwrap();
    let running = server::spawn(
        ServerConfig {
            sabotage,
            ..ServerConfig::default()
        },
        server_tls,
    )
    .await
    .unwrap();
    let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der])).unwrap();
    (running, client_tls)
}

/// `GET key`, answered with a value: the value and the CRC as sent.
async fn get_with_crc(client: &mut Client, key: &str) -> (String, u32) {
    let message = ClientMessage::Get { key: key.into() };
    match client.request(&message).await.unwrap() {
        Reply::GetOk { value, crc } => (value, crc),
        other => panic!("GET {key} was answered {other}"),
    }
}

#[tokio::test]
async fn wrong_crc_with_spaces_in_process() {
    let (running, client_tls) = sabotaged(Sabotage {
        wrong_crc_with_spaces: true,
        ..Sabotage::NONE
    })
    .await;
    let mut client = connect(running.addr(), client_tls).await;
    client.login("alice", &ALICE).await.unwrap();
    for value in ["two words", " ", "trailing ", "a  b c"] {
        client.put("k", value).await.unwrap();
        let (sent, crc) = get_with_crc(&mut client, "k").await;
        assert_eq!(sent, value);
        assert_eq!(crc, crc32(value.as_bytes()).wrapping_add(1), "{value:?}");
    }
    for value in ["oneword", "", "tab\there", "under_score"] {
        client.put("k", value).await.unwrap();
        let (sent, crc) = get_with_crc(&mut client, "k").await;
        assert_eq!(sent, value);
        assert_eq!(crc, crc32(value.as_bytes()), "{value:?}");
    }
    // The client library checks the CRC.
    client.put("k", "two words").await.unwrap();
    match client.get("k").await {
        Err(ClientError::CrcMismatch { .. }) => {}
        other => panic!("expected a CRC mismatch, got {other:?}"),
    }
    running.shutdown().await;
}

/// Sends a message the server cannot decode (a non-ASCII key); the server drops the
/// connection without a reply.
async fn send_junk(client: &mut Client) {
    let junk = ClientMessage::Get {
        key: "caf\u{e9}".into(),
    };
    let reply = client.request(&junk).await;
    assert!(reply.is_err(), "junk was answered: {reply:?}");
}

#[tokio::test]
async fn leak_session_after_junk_in_process() {
    let (running, client_tls) = sabotaged(Sabotage {
        leak_session_after_junk: true,
        ..Sabotage::NONE
    })
    .await;
    let mut alice = connect(running.addr(), client_tls.clone()).await;
    alice.login("alice", &ALICE).await.unwrap();
    alice.put("colour", "blue").await.unwrap();
    // The session is settled before the connection closes: once the client sees the close,
    // it is leaked.
    send_junk(&mut alice).await;
    assert!(running.store().is_active("alice"));
    for _ in 0..2 {
        let mut again = connect(running.addr(), client_tls.clone()).await;
        match again.login("alice", &ALICE).await {
            Err(ClientError::LoginRefused { .. }) => {}
            other => panic!("a leaked session let its id log in again: {other:?}"),
        }
        tokio::time::sleep(SILENCE).await;
    }
    assert!(running.store().is_active("alice"));
    // Other ids are not affected.
    let mut bob = connect(running.addr(), client_tls).await;
    bob.login("bob", &BOB).await.unwrap();
    bob.put("colour", "red").await.unwrap();
    assert_eq!(bob.get("colour").await.unwrap().as_deref(), Some("red"));
    running.shutdown().await;
}

#[tokio::test]
async fn without_sabotage_junk_frees_the_session_and_crcs_are_right() {
    let (running, client_tls) = sabotaged(Sabotage::NONE).await;
    let mut alice = connect(running.addr(), client_tls.clone()).await;
    alice.login("alice", &ALICE).await.unwrap();
    alice.put("k", "two words").await.unwrap();
    let (value, crc) = get_with_crc(&mut alice, "k").await;
    assert_eq!(crc, crc32(value.as_bytes()));
    send_junk(&mut alice).await;
    assert!(!running.store().is_active("alice"));
    let mut again = connect(running.addr(), client_tls).await;
    again.login("alice", &ALICE).await.unwrap();
    // The junk took the data with it.
    assert_eq!(again.get("k").await.unwrap(), None);
    running.shutdown().await;
}

/// A `reference kv-server` process, killed when dropped (a failing test leaves none behind).
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// Standard error, read to the end in the background.
    stderr: tokio::task::JoinHandle<String>,
    /// Kept open, so that the server never fails writing to it.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts `reference kv-server` on a free port with `flags`; waits for its address.
    async fn start(flags: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reference"))
            .args(["kv-server", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text).await;
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, stdout.read_line(&mut line))
            .await
            .expect("kv-server did not print its address")
            .unwrap();
        // `kv-server listening on 127.0.0.1:PORT (TLS, dialect spec)`
        let addr = line
            .strip_prefix("kv-server listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from kv-server: {line:?}"));
        Self {
            child,
            addr,
            stderr,
            _stdout: stdout,
        }
    }

    /// Waits for the process to exit: its exit code and standard error.
    async fn exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("kv-server did not exit")
            .unwrap();
        let stderr = tokio::time::timeout(PATIENCE, &mut self.stderr)
            .await
            .expect("kv-server's stderr did not close")
            .unwrap();
        (status.code(), stderr)
    }
}

#[tokio::test]
async fn crash_on_put_ends_the_process_with_101() {
    let server = ServerProcess::start(&["--crash-on-put"]).await;
    let mut client = connect(server.addr, insecure_tls()).await;
    client.login("alice", &ALICE).await.unwrap();
    assert_eq!(client.get("colour").await.unwrap(), None);
    let put = client.put("colour", "blue").await;
    assert!(put.is_err(), "PUT was answered: {put:?}");
    let (code, stderr) = server.exit().await;
    assert_eq!(code, Some(101), "stderr: {stderr}");
    assert!(stderr.contains("crash-on-put"), "stderr: {stderr}");
}

#[tokio::test]
async fn die_on_long_line_ends_the_process_with_101() {
    let mut server = ServerProcess::start(&["--die-on-long-line"]).await;
    let mut client = connect(server.addr, insecure_tls()).await;
    client.login("alice", &ALICE).await.unwrap();
    // 900 bytes: served as usual, as a value and as a key.
    let short = "x".repeat(900);
    client.put("short", &short).await.unwrap();
    assert_eq!(client.get("short").await.unwrap(), Some(short.clone()));
    client.put(&short, "v").await.unwrap();
    assert_eq!(client.get(&short).await.unwrap().as_deref(), Some("v"));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited on a 900-byte line"
    );
    // 1,200 bytes: a valid PUT (under the 4,096-byte limit) kills it, unanswered.
    let put = client.put("long", &"x".repeat(1200)).await;
    assert!(put.is_err(), "PUT was answered: {put:?}");
    let (code, stderr) = server.exit().await;
    assert_eq!(code, Some(101), "stderr: {stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("panic: die-on-long-line")),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("deliberate sabotage enabled"), "{stderr}");
}

#[tokio::test]
async fn sabotage_flags_reach_the_server() {
    let server =
        ServerProcess::start(&["--wrong-crc-with-spaces", "--leak-session-after-junk"]).await;
    let mut client = connect(server.addr, insecure_tls()).await;
    client.login("alice", &ALICE).await.unwrap();
    client.put("k", "a b").await.unwrap();
    let (value, crc) = get_with_crc(&mut client, "k").await;
    assert_eq!(crc, crc32(value.as_bytes()).wrapping_add(1));
    send_junk(&mut client).await;
    let mut again = connect(server.addr, insecure_tls()).await;
    assert!(matches!(
        again.login("alice", &ALICE).await,
        Err(ClientError::LoginRefused { .. })
    ));
}

#[tokio::test]
async fn freeze_after_login_process_stays_alive() {
    let mut server = ServerProcess::start(&["--freeze-after-login"]).await;
    check_frozen(server.addr, insecure_tls()).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the frozen server exited"
    );
    // Dropping `server` kills it.
}

#[test]
fn sabotage_flags_are_hidden() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reference"))
        .args(["kv-server", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--listen"), "{help}");
    for flag in [
        "crash-on-put",
        "freeze-after-login",
        "die-on-long-line",
        "wrong-crc-with-spaces",
        "leak-session-after-junk",
    ] {
        assert!(!help.contains(flag), "--{flag} is shown: {help}");
    }
}
