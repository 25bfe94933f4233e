//! The chat client library and its command line against the reference chat server, both in
//! this process on 127.0.0.1, with short timers. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use reference_impl::chat::client::{
    self, ChatClient, ChatClientArgs, ChatError, ClientConfig, Event, TransferDirection, Verdict,
};
use reference_impl::chat::codec::{Guess, Header, ServerMessage};
use reference_impl::chat::e2e::KeyPair;
use reference_impl::chat::server::{self, RunningServer, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// How long any expected event may take.
const PATIENCE: Duration = Duration::from_secs(5);

/// Key pairs made once for the whole test binary (RSA key generation is slow).
fn keys(i: usize) -> Arc<KeyPair> {
    static KEYS: OnceLock<Vec<Arc<KeyPair>>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..3)
            .map(|_| Arc::new(KeyPair::generate().unwrap()))
            .collect()
    })[i % 3]
        .clone()
}

/// The spec's server with fast timers.
fn fast() -> ServerConfig {
    ServerConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(500),
        join_window: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("chat-client-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(server: &RunningServer, key: usize, download_dir: &Path) -> ClientConfig {
    ClientConfig {
        data_port: Some(server.data_addr().port()),
        download_dir: download_dir.to_path_buf(),
        timeout: PATIENCE,
        keys: Some(keys(key)),
        ..ClientConfig::default()
    }
}

/// A client logged in as `name`.
async fn login(server: &RunningServer, name: &str, key: usize, dir: &Path) -> ChatClient {
    let mut client = ChatClient::connect(server.addr(), config(server, key, dir))
        .await
        .unwrap();
    client.login(name).await.unwrap();
    client
}

/// The next server message with `header`, other events passed over.
async fn reply(client: &mut ChatClient, header: Header) -> ServerMessage {
    match client
        .wait_for(
            PATIENCE,
            |e| matches!(e, Event::Message(m) if m.header() == header),
        )
        .await
        .unwrap()
    {
        Event::Message(message) => message,
        other => panic!("expected {header:?}, got {other:?}"),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn login_shows_welcome_and_takes_the_name() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let alice = login(&server, "alice", 0, dir.path()).await;
    assert_eq!(alice.welcome(), "Welcome to the server 1.5");
    assert_eq!(alice.username(), Some("alice"));

    let mut again = ChatClient::connect(server.addr(), config(&server, 1, dir.path()))
        .await
        .unwrap();
    let err = again.login("alice").await.unwrap_err();
    assert!(
        matches!(err, ChatError::LoginRefused { code: 5000 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "login refused: username already in use (5000)"
    );
    let err = again.login("a*").await.unwrap_err();
    assert!(
        matches!(err, ChatError::LoginRefused { code: 5001 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn broadcast_reaches_the_others() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let mut bob = login(&server, "bob", 1, dir.path()).await;

    alice.broadcast("hello, world").unwrap();
    assert_eq!(
        reply(&mut alice, Header::BroadcastResp).await,
        ServerMessage::BroadcastResp(Ok(()))
    );
    assert_eq!(
        reply(&mut bob, Header::Broadcast).await,
        ServerMessage::Broadcast {
            username: "alice".into(),
            message: "hello, world".into()
        }
    );

    alice.list_users().unwrap();
    let ServerMessage::ListUsersResp(Ok(mut users)) =
        reply(&mut alice, Header::ListUsersResp).await
    else {
        panic!("no user list");
    };
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
}

#[tokio::test]
async fn private_message_and_its_errors() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let mut bob = login(&server, "bob", 1, dir.path()).await;

    alice.private_message("bob", "psst").unwrap();
    assert_eq!(
        reply(&mut alice, Header::PrivateMessageResp).await,
        ServerMessage::PrivateMessageResp(Ok(()))
    );
    assert_eq!(
        reply(&mut bob, Header::PrivateMessage).await,
        ServerMessage::PrivateMessage {
            sender: "alice".into(),
            message: "psst".into()
        }
    );

    alice.private_message("nobody", "hello?").unwrap();
    let refused = reply(&mut alice, Header::PrivateMessageResp).await;
    assert_eq!(refused, ServerMessage::PrivateMessageResp(Err(6001)));
    assert_eq!(
        client::describe(&Event::Message(refused), false).unwrap(),
        "private message refused: recipient not found (6001)"
    );
}

#[tokio::test]
async fn too_long_a_message_is_refused_before_it_is_sent() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let err = alice.broadcast(&"x".repeat(2000)).unwrap_err();
    assert!(
        matches!(err, ChatError::TooLong { limit: 1024, .. }),
        "{err:?}"
    );
    let err = alice.secure("bob", &"x".repeat(800)).unwrap_err();
    assert!(matches!(err, ChatError::TooLong { .. }), "{err:?}");
    // Still connected.
    alice.broadcast("short").unwrap();
    assert_eq!(
        reply(&mut alice, Header::BroadcastResp).await,
        ServerMessage::BroadcastResp(Ok(()))
    );
}

#[tokio::test]
async fn secure_message_is_decrypted_by_the_receiver_only() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let mut bob = login(&server, "bob", 1, dir.path()).await;
    let secret = "the eagle lands at midnight";

    alice.secure("bob", secret).unwrap();
    // Both clients must run: bob answers the key request, alice seals when the key comes.
    let (sent, received) = tokio::join!(
        alice.wait_for(PATIENCE, |e| matches!(
            e,
            Event::SecureSent { .. } | Event::SecureFailed { .. } | Event::SecureRefused { .. }
        )),
        bob.wait_for(PATIENCE, |e| matches!(e, Event::SecureMessage { .. })),
    );
    assert!(
        matches!(sent.unwrap(), Event::SecureSent { receiver } if receiver == "bob"),
        "alice did not send"
    );
    let Event::SecureMessage { envelope, text } = received.unwrap() else {
        unreachable!()
    };
    assert_eq!(envelope.sender, "alice");
    assert_eq!(text.unwrap(), secret);

    // What the server relayed is ciphertext: no trace of the plaintext, in text or bytes.
    assert!(!envelope.message.contains(secret));
    assert!(!envelope.session_key.contains(secret));
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&envelope.message)
        .unwrap();
    assert!(!sealed.windows(6).any(|w| w == &secret.as_bytes()[..6]));
    assert_eq!(sealed.len(), 12 + secret.len() + 16);
    // And only bob's key opens it.
    assert!(
        keys(2)
            .open(&envelope.session_key, &envelope.message)
            .is_err()
    );

    // To nobody: the server's refusal names the pending message.
    alice.secure("nobody", "x").unwrap();
    let refused = alice
        .wait_for(PATIENCE, |e| matches!(e, Event::SecureRefused { .. }))
        .await
        .unwrap();
    assert!(
        matches!(&refused, Event::SecureRefused { receiver: Some(r), code: 6001, .. } if r == "nobody"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn file_transfer_of_300_kb_is_verified() {
    let server = server::spawn(fast()).await.unwrap();
    let outbox = TempDir::new();
    let inbox = TempDir::new();
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let source = outbox.path().join("photo.raw");
    std::fs::write(&source, &content).unwrap();
    // A file of the same name is in the way: it must survive.
    std::fs::write(inbox.path().join("photo.raw"), b"keep me").unwrap();

    let mut alice = login(&server, "alice", 0, outbox.path()).await;
    let mut bob = login(&server, "bob", 1, inbox.path()).await;

    alice.send_file("bob", &source).unwrap();
    // alice hashes the file, then requests: she must be polled for that.
    let (requested, offer) = tokio::join!(
        alice.wait_for(PATIENCE, |e| matches!(e, Event::FileRequested { .. })),
        bob.wait_for(PATIENCE, |e| matches!(e, Event::FileOffer { .. })),
    );
    requested.unwrap();
    let offer = offer.unwrap();
    let Event::FileOffer { offer, accepted } = offer else {
        unreachable!()
    };
    assert!(accepted.is_none());
    assert_eq!(offer.sender, "alice");
    assert_eq!(offer.filename, "photo.raw");
    assert_eq!(offer.size, Some(300_000));
    assert_eq!(
        offer.checksum.as_deref(),
        Some(sha256_hex(&content).as_str())
    );

    let transfer = bob.accept_file("alice").unwrap();
    assert_eq!(transfer.direction, TransferDirection::Download);
    assert_eq!(transfer.path, inbox.path().join("photo (1).raw"));

    let (uploaded, downloaded) = tokio::join!(
        async {
            // The local end of the upload and the server's account come in either order.
            let mut progress = 0;
            let mut uploaded = None;
            let mut complete = None;
            while uploaded.is_none() || complete.is_none() {
                match alice.wait_for(PATIENCE, |_| true).await.unwrap() {
                    Event::Progress { .. } => progress += 1,
                    Event::Uploaded { bytes, .. } => uploaded = Some(bytes),
                    e @ Event::TransferComplete { .. } => complete = Some(e),
                    e @ Event::TransferFailed { .. } => panic!("{e:?}"),
                    _ => {}
                }
            }
            (complete.unwrap(), uploaded, progress)
        },
        async {
            let mut downloaded = None;
            let mut complete = None;
            while downloaded.is_none() || complete.is_none() {
                match bob.wait_for(PATIENCE, |_| true).await.unwrap() {
                    e @ Event::Downloaded { .. } => downloaded = Some(e),
                    e @ Event::TransferComplete { .. } => complete = Some(e),
                    e @ Event::TransferFailed { .. } => panic!("{e:?}"),
                    _ => {}
                }
            }
            (downloaded.unwrap(), complete.unwrap())
        },
    );
    let (complete, bytes, progress) = uploaded;
    assert_eq!(bytes, Some(300_000));
    assert!(progress >= 5, "{progress} progress events");
    let Event::TransferComplete { result, size, .. } = complete else {
        panic!("{complete:?}")
    };
    assert_eq!((result, size), (Ok(()), 300_000));

    let (downloaded, complete) = downloaded;
    let Event::Downloaded {
        size,
        checksum,
        verdict,
        ..
    } = downloaded
    else {
        unreachable!()
    };
    assert_eq!(size, 300_000);
    assert_eq!(checksum, sha256_hex(&content));
    assert_eq!(verdict, Verdict::Verified);
    assert!(matches!(
        complete,
        Event::TransferComplete { result: Ok(()), .. }
    ));
    assert_eq!(std::fs::read(&transfer.path).unwrap(), content);
    assert_eq!(
        std::fs::read(inbox.path().join("photo.raw")).unwrap(),
        b"keep me"
    );
    assert_eq!(alice.active_transfers(), 0);
    assert_eq!(bob.active_transfers(), 0);
}

#[tokio::test]
async fn rejected_file_is_reported_to_the_sender() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let source = dir.path().join("notes.txt");
    std::fs::write(&source, b"not for bob").unwrap();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let mut bob = login(&server, "bob", 1, dir.path()).await;

    alice.send_file("bob", &source).unwrap();
    let (requested, offered) = tokio::join!(
        alice.wait_for(PATIENCE, |e| matches!(e, Event::FileRequested { .. })),
        bob.wait_for(PATIENCE, |e| matches!(e, Event::FileOffer { .. })),
    );
    requested.unwrap();
    offered.unwrap();
    let offer = bob.reject_file("alice").unwrap();
    assert_eq!(offer.filename, "notes.txt");
    assert!(matches!(
        bob.reject_file("alice"),
        Err(ChatError::NoOffer { .. })
    ));
    let refused = alice
        .wait_for(PATIENCE, |e| matches!(e, Event::FileRefused { .. }))
        .await
        .unwrap();
    let Event::FileRefused { request, code } = &refused else {
        unreachable!()
    };
    assert_eq!(*code, 10002);
    assert_eq!(request.as_ref().unwrap().filename, "notes.txt");
    assert_eq!(
        client::describe(&refused, false).unwrap(),
        "file transfer of \"notes.txt\" to bob refused: the receiver rejected the file (10002)"
    );
    assert_eq!(alice.active_transfers(), 0);
}

#[tokio::test]
async fn pings_are_answered_by_themselves() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    // Six ping intervals of 200 ms; a client that did not answer would be gone after
    // 200 + 500 ms.
    let idle = alice
        .wait_for(Duration::from_millis(1200), |e| !matches!(e, Event::Pinged))
        .await;
    assert!(matches!(idle, Err(ChatError::Timeout { .. })), "{idle:?}");
    assert!(alice.pings_answered() >= 4, "{}", alice.pings_answered());
    assert!(!alice.is_closed());
    alice.broadcast("still here").unwrap();
    assert_eq!(
        reply(&mut alice, Header::BroadcastResp).await,
        ServerMessage::BroadcastResp(Ok(()))
    );
    alice.bye().await.unwrap();
    assert!(alice.is_closed());
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_with_the_reason() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    // Not reading means not answering PING: the server gives up after 200 + 500 ms.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, alice.next_event()).await {
            Ok(Ok(event)) => seen.push(event),
            Ok(Err(ChatError::Closed)) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::Message(ServerMessage::Dscn { reason: Some(7000) })
        )),
        "{seen:?}"
    );
    assert!(matches!(
        seen.last(),
        Some(Event::Closed {
            reason: Some(7000),
            ..
        })
    ));
    assert_eq!(alice.disconnect_reason(), Some(7000));
}

#[tokio::test]
async fn guessing_game() {
    let server = server::spawn(ServerConfig {
        secret: Some(25),
        ..fast()
    })
    .await
    .unwrap();
    let dir = TempDir::new();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let mut bob = login(&server, "bob", 1, dir.path()).await;

    alice.start_game().unwrap();
    assert_eq!(
        reply(&mut alice, Header::StartGameResp).await,
        ServerMessage::StartGameResp(Ok(()))
    );
    assert_eq!(
        reply(&mut bob, Header::GameNotification).await,
        ServerMessage::GameNotification(Ok(()))
    );
    bob.join_game().unwrap();
    assert_eq!(
        reply(&mut bob, Header::JoinGameResp).await,
        ServerMessage::JoinGameResp(Ok(()))
    );
    // The join window closes: both are told the game runs.
    assert_eq!(
        reply(&mut alice, Header::StartGameResp).await,
        ServerMessage::StartGameResp(Ok(()))
    );
    assert_eq!(
        reply(&mut bob, Header::StartGameResp).await,
        ServerMessage::StartGameResp(Ok(()))
    );
    bob.guess(Guess::Number(10)).unwrap();
    let low = reply(&mut bob, Header::GuessNumberResp).await;
    assert_eq!(
        client::describe(&Event::Message(low), false).unwrap(),
        "guess: your guess is too low (7005)"
    );
    for (client, name) in [(&mut bob, "bob"), (&mut alice, "alice")] {
        client.guess(Guess::Number(25)).unwrap();
        assert_eq!(
            reply(client, Header::GuessNumberResp).await,
            ServerMessage::GuessNumberResp(Ok("Correct".into())),
            "{name}"
        );
    }
    let results = reply(&mut alice, Header::GameResults).await;
    let text = client::describe(&Event::Message(results), false).unwrap();
    assert!(
        text.starts_with("game results:\n  1. bob (winner, "),
        "{text}"
    );
    assert!(text.contains("\n  2. alice ("), "{text}");
}

// --- the command line, in-process ---

fn args(server: &RunningServer, username: &str, key_file: &Path, dir: &Path) -> ChatClientArgs {
    ChatClientArgs {
        target: server.addr().to_string(),
        username: username.into(),
        data_port: Some(server.data_addr().port()),
        download_dir: dir.to_path_buf(),
        auto_accept: true,
        verbose: false,
        timeout: PATIENCE,
        key: Some(key_file.to_path_buf()),
        rename: Vec::new(),
    }
}

fn key_file(dir: &Path, i: usize) -> PathBuf {
    let path = dir.join(format!("key{i}.pem"));
    std::fs::write(&path, keys(i).to_pkcs8_pem().unwrap()).unwrap();
    path
}

/// Runs the command line on `lines` as a script; its exit code, stdout and stderr.
async fn script(args: &ChatClientArgs, lines: &[&str]) -> (u8, String, String) {
    let (tx, rx) = mpsc::channel(lines.len().max(1));
    for line in lines {
        tx.send((*line).to_owned()).await.unwrap();
    }
    drop(tx);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = tokio::time::timeout(
        PATIENCE * 4,
        client::run_with(args, rx, false, &mut out, &mut err),
    )
    .await
    .expect("the script finishes");
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn script_mode_runs_commands_in_order_and_leaves_with_bye() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let inbox = TempDir::new();
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, b"hello, file").unwrap();
    let mut bob = login(&server, "bob", 1, inbox.path()).await;
    let alice_args = args(&server, "alice", &key_file(dir.path(), 0), dir.path());

    let send = format!("/send bob {}", file.display());
    let lines = [
        "hello everyone",
        "/users",
        "/msg bob hi bob",
        "/msg nobody hi",
        "/bogus",
        "/secure bob for your eyes only",
        &send,
        "/wait 300ms",
    ];
    // bob runs as a library client with auto-accept off: answer by hand while alice runs.
    let bob_side = async {
        let mut secure = None;
        let mut offered = false;
        while secure.is_none() || !offered {
            match bob.wait_for(PATIENCE, |_| true).await.unwrap() {
                Event::SecureMessage { text, .. } => secure = Some(text.unwrap()),
                Event::FileOffer { .. } => {
                    offered = true;
                    bob.accept_file("alice").unwrap();
                }
                _ => {}
            }
        }
        // Keep reading until the download is checked.
        loop {
            if let Event::Downloaded { verdict, .. } =
                bob.wait_for(PATIENCE, |_| true).await.unwrap()
            {
                return (secure, verdict);
            }
        }
    };
    let ((code, out, err), (secure, verdict)) = tokio::join!(script(&alice_args, &lines), bob_side);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(secure.as_deref(), Some("for your eyes only"));
    assert_eq!(verdict, Verdict::Verified);
    let expected_in_order = [
        "server: Welcome to the server 1.5",
        "logged in as alice",
        "message sent",
        "users online (2): ",
        "private message sent",
        "private message refused: recipient not found (6001)",
    ];
    let mut at = 0;
    for line in expected_in_order {
        let found = out[at..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} missing after byte {at} of:\n{out}"));
        at += found + line.len();
    }
    assert!(out.contains("encrypted message sent to bob"), "{out}");
    assert!(
        out.contains("uploaded \"hello.txt\" to bob: 11 bytes"),
        "{out}"
    );
    assert!(
        out.contains("server: \"hello.txt\" transferred, 11 bytes"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("bye"), "{out}");
    assert!(err.contains("error: unknown command /bogus"), "{err}");
}

#[tokio::test]
async fn script_mode_downloads_with_auto_accept() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let inbox = TempDir::new();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, vec![7u8; 50_000]).unwrap();
    let mut alice = login(&server, "alice", 0, dir.path()).await;
    let bob_args = args(&server, "bob", &key_file(dir.path(), 1), inbox.path());

    let alice_side = async {
        // Wait for bob to be there, then offer.
        loop {
            alice.list_users().unwrap();
            if let ServerMessage::ListUsersResp(Ok(users)) =
                reply(&mut alice, Header::ListUsersResp).await
                && users.iter().any(|u| u == "bob")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        alice.send_file("bob", &file).unwrap();
        alice
            .wait_for(PATIENCE, |e| matches!(e, Event::TransferComplete { .. }))
            .await
            .unwrap()
    };
    // The script only waits; at its end it waits for the transfer before BYE.
    let ((code, out, err), complete) = tokio::join!(script(&bob_args, &["/wait 1s"]), alice_side);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(matches!(
        complete,
        Event::TransferComplete { result: Ok(()), .. }
    ));
    assert!(
        out.contains("alice offers \"data.bin\" (50000 bytes, sha256 "),
        "{out}"
    );
    assert!(
        out.contains("50000 bytes, verified (size and SHA-256 match)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(inbox.path().join("data.bin")).unwrap(),
        vec![7u8; 50_000]
    );
}

#[tokio::test]
async fn exit_codes() {
    let server = server::spawn(fast()).await.unwrap();
    let dir = TempDir::new();
    let key = key_file(dir.path(), 0);
    let _alice = login(&server, "alice", 1, dir.path()).await;

    // The name is taken: 1.
    let (code, _, err) = script(&args(&server, "alice", &key, dir.path()), &[]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: login refused: username already in use (5000)"
    );

    // Nothing listens there: 2.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut bad = args(&server, "carol", &key, dir.path());
    bad.target = closed.to_string();
    let (code, _, err) = script(&bad, &[]).await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!("error: cannot connect to {closed}")),
        "{err}"
    );

    // A download directory that is not one: 2.
    let mut bad = args(&server, "carol", &key, dir.path());
    bad.download_dir = dir.path().join("missing");
    let (code, _, err) = script(&bad, &[]).await;
    assert_eq!(code, 2);
    assert!(err.contains("is not a directory"), "{err}");

    // End of input: BYE, 0.
    let (code, out, _) = script(&args(&server, "carol", &key, dir.path()), &[]).await;
    assert_eq!(code, 0);
    assert!(out.trim_end().ends_with("bye"), "{out}");
}
