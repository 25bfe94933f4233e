//! Sabotage of the chat server: a `LOGIN` with a non-ASCII username panics its connection's
//! task (run in-process, and as the `reference` binary to check the flag). The connection is
//! dropped unanswered; the server and its other clients go on, and the name is not
//! registered.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use reference_impl::chat::server::{self, Sabotage, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

mod common;
use common::PATIENCE;
use common::chat::{Conn, LOGIN_OK};

/// How long "nothing arrives" is watched.
const QUIET: Duration = Duration::from_millis(200);

const INVALID_NAME: &str = r#"LOGIN_RESP {"status":"ERROR","code":5001}"#;

/// Spec behaviour, no `PING` within a test, and `sabotage`.
fn config(sabotage: Sabotage) -> ServerConfig {
    ServerConfig {
        ping_interval: Duration::from_secs(60),
        sabotage,
        ..ServerConfig::default()
    }
}

const PANIC_ON_NON_ASCII_NAME: Sabotage = Sabotage {
    panic_on_non_ascii_name: true,
};

/// `expect_silence` with this file's quiet time.
impl Conn {
    /// Nothing arrives for a while, and the connection stays open.
    async fn expect_silence(&mut self) {
        self.expect_silence_for(QUIET).await;
    }
}

/// With `bob` logged in, a client sending a non-ASCII name is dropped unanswered; `bob`
/// hears nothing of it, the name is not listed, and others still log in.
async fn check_non_ascii_name_is_dropped(addr: SocketAddr) {
    let mut bob = Conn::login(addr, "bob").await;
    for login in [
        r#"LOGIN {"username":"émile"}"#,
        r#"LOGIN {"username":"\u00e9mile"}"#,
        r#"LOGIN {"username":"名前"}"#,
    ] {
        let mut eve = Conn::connect_as(addr, "eve").await;
        eve.send(login).await;
        eve.expect_close().await;
    }
    bob.expect_silence().await;
    bob.send("LIST_USERS_REQ").await;
    bob.expect(r#"LIST_USERS_RESP {"status":"OK","users":["bob"]}"#)
        .await;

    let _alice = Conn::login(addr, "alice").await;
    bob.expect(r#"JOINED {"username":"alice"}"#).await;
    // ASCII names are checked as usual.
    let mut carol = Conn::connect_as(addr, "carol").await;
    carol.send(r#"LOGIN {"username":"a b"}"#).await;
    carol.expect(INVALID_NAME).await;
    bob.send("LIST_USERS_REQ").await;
    bob.expect(r#"LIST_USERS_RESP {"status":"OK","users":["bob","alice"]}"#)
        .await;
}

#[tokio::test]
async fn panic_on_non_ascii_name_in_process() {
    let server = server::spawn(config(PANIC_ON_NON_ASCII_NAME))
        .await
        .unwrap();
    check_non_ascii_name_is_dropped(server.addr()).await;
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("the server did not shut down");
}

#[tokio::test]
async fn a_logged_in_client_panics_too() {
    let server = server::spawn(config(PANIC_ON_NON_ASCII_NAME))
        .await
        .unwrap();
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut alice = Conn::login(server.addr(), "alice").await;
    bob.expect(r#"JOINED {"username":"alice"}"#).await;
    // A second LOGIN would be 5002; the panic comes first. Alice's user leaves.
    alice.send(r#"LOGIN {"username":"alicé"}"#).await;
    alice.expect_close().await;
    bob.expect(r#"LEFT {"username":"alice"}"#).await;
    bob.send("LIST_USERS_REQ").await;
    bob.expect(r#"LIST_USERS_RESP {"status":"OK","users":["bob"]}"#)
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_sabotage_a_non_ascii_name_is_refused() {
    let server = server::spawn(config(Sabotage::NONE)).await.unwrap();
    let mut eve = Conn::connect_as(server.addr(), "eve").await;
    eve.send(r#"LOGIN {"username":"émile"}"#).await;
    eve.expect(INVALID_NAME).await;
    eve.send(r#"LOGIN {"username":"emile"}"#).await;
    eve.expect(LOGIN_OK).await;
    server.shutdown().await;
}

/// The next line the child wrote to stderr.
async fn next_stderr_line(lines: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, lines.recv())
        .await
        .expect("chat-server wrote nothing more to stderr")
        .expect("chat-server closed its stderr")
}

#[tokio::test]
async fn panic_on_non_ascii_name_flag() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reference"))
        .args(["chat-server", "--listen", "127.0.0.1:0"])
        .args(["--data-listen", "127.0.0.1:0", "--ping-interval", "60s"])
        .arg("--panic-on-non-ascii-name")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Standard error, line by line, read to the end in the background.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut warned = false;
    // `chat server listening on 127.0.0.1:PORT, data channel on ...`
    let addr: SocketAddr = loop {
        let line = next_stderr_line(&mut lines).await;
        warned |= line.contains("deliberate sabotage enabled");
        if let Some(rest) = line.strip_prefix("chat server listening on ") {
            break rest
                .split(',')
                .next()
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line from chat-server: {line:?}"));
        }
    };
    assert!(warned, "no warning about the sabotage");
    check_non_ascii_name_is_dropped(addr).await;
    // The panic message, once per dropped connection, in the process that goes on.
    loop {
        if next_stderr_line(&mut lines)
            .await
            .contains("panic-on-non-ascii-name")
        {
            break;
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "chat-server exited");
    // Dropping `child` kills it.
}

#[test]
fn sabotage_flag_is_hidden() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reference"))
        .args(["chat-server", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--listen"), "{help}");
    assert!(!help.contains("non-ascii"), "{help}");
}
