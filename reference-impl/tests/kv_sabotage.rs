//! Process-level sabotage of the key-value server: a freeze after the first login (run
//! in-process) and an exit on the first `PUT` (run as the `reference` binary, since it ends
//! the process).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reference_impl::kv::auth::HASH_LEN;
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
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
    assert!(!help.contains("crash-on-put"), "{help}");
    assert!(!help.contains("freeze-after-login"), "{help}");
}
