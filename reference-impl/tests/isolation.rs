//! Isolation between clients, over real connections on 127.0.0.1: one client's malformed
//! input or abrupt disconnect affects its own data and session only.
//!
//! - Key-value over TLS and over RSA: among 32 concurrent clients, one sends junk; it is
//!   dropped with its data, every other client's data stays exactly as it was.
//! - Key-value: a connection cut in the middle of a message leaves no active session, and
//!   the data committed before it stays.
//! - Chat: among 20 users, one sends an invalid line and then an over-long one; it is
//!   dropped, the others still chat, and its name is free again.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reference_impl::kv::auth::HASH_LEN;
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::rsa::BLOCK_LEN;
use reference_impl::kv::rsa_stream::RsaStream;
use reference_impl::kv::server::{self, RsaOptions, RunningServer, ServerConfig};
use reference_impl::kv::store::Store;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

mod common;
use common::PATIENCE;

/// A first-use password hash: any 32 bytes will do.
const HASH: [u8; HASH_LEN] = [7; HASH_LEN];

/// Key-value clients in the isolation test, the misbehaving one included.
const CLIENTS: usize = 32;
/// Keys each of them stores.
const KEYS: usize = 5;

/// How often a login refused because the old connection is still being closed is retried.
const LOGIN_TRIES: usize = 100;
/// The pause between two such tries.
const LOGIN_RETRY: Duration = Duration::from_millis(20);

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ------------------------------------------------------------------------------------------
// Key-value: a server on either transport, its clients

/// How the key-value server is reached.
enum Transport {
    Tls(Arc<rustls::ClientConfig>),
    Rsa,
}

/// A key-value server running in this process, and how to reach it.
struct Kv {
    running: RunningServer,
    transport: Transport,
}

impl Kv {
    async fn tls(config: ServerConfig) -> Self {
        let (running, client_tls) = common::spawn_tls_kv(config).await;
        Self {
            running,
            transport: Transport::Tls(client_tls),
        }
    }

    async fn rsa(config: ServerConfig) -> Self {
        let running = server::spawn_rsa(config, RsaOptions::default())
            .await
            .unwrap();
        Self {
            running,
            transport: Transport::Rsa,
        }
    }

    fn store(&self) -> &Store {
        self.running.store()
    }

    /// A client library connection, not logged in.
    async fn client(&self) -> Client {
        let addr = self.running.addr();
        let client = match &self.transport {
            Transport::Tls(config) => {
                let name = ServerName::try_from("127.0.0.1").unwrap();
                Client::connect(addr, config.clone(), name, Dialect::Spec).await
            }
            Transport::Rsa => Client::connect_rsa(addr, Dialect::Spec, RsaOptions::default()).await,
        };
        let mut client = client.unwrap();
        client.set_timeout(PATIENCE);
        client
    }

    /// A raw connection after its TLS handshake or RSA key exchange, not logged in.
    async fn raw(&self) -> Raw {
        let tcp = tokio::time::timeout(PATIENCE, TcpStream::connect(self.running.addr()))
            .await
            .expect("connect timed out")
            .unwrap();
        match &self.transport {
            Transport::Tls(config) => {
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let stream = tokio::time::timeout(
                    PATIENCE,
                    TlsConnector::from(config.clone()).connect(name, tcp),
                )
                .await
                .expect("TLS handshake timed out")
                .unwrap();
                Raw::Tls {
                    stream: Box::new(stream),
                    pending: Vec::new(),
                }
            }
            Transport::Rsa => Raw::Rsa(Box::new(RsaStream::connect(tcp, PATIENCE).await.unwrap())),
        }
    }

    /// A raw connection logged in as `id`, from a new connection each try while the server
    /// has not yet noticed that the id's previous connection is gone.
    async fn raw_login_retrying(&self, id: &str, hash: &[u8; HASH_LEN]) -> Raw {
        for _ in 0..LOGIN_TRIES {
            let mut raw = self.raw().await;
            match raw.try_login(id, hash).await.as_str() {
                "CONNECT: OK\n" => return raw,
                "CONNECT: ERROR\n" => tokio::time::sleep(LOGIN_RETRY).await,
                other => panic!(
                    "CONNECT {id}: unexpected reply `{}`",
                    show(other.as_bytes())
                ),
            }
        }
        panic!("{id} could not log in again: its session stayed active");
    }

    /// [`Kv::raw_login_retrying`] with the client library.
    async fn client_login_retrying(&self, id: &str, hash: &[u8; HASH_LEN]) -> Client {
        for _ in 0..LOGIN_TRIES {
            let mut client = self.client().await;
            match client.login(id, hash).await {
                Ok(()) => return client,
                Err(ClientError::LoginRefused { .. }) => tokio::time::sleep(LOGIN_RETRY).await,
                Err(e) => panic!("CONNECT {id}: {e}"),
            }
        }
        panic!("{id} could not log in again: its session stayed active");
    }
}

/// A raw key-value connection: messages as the transport frames them (TLS: bytes; RSA: one
/// block each), bytes sent as they are (RSA: in the clear), replies read one by one.
enum Raw {
    Tls {
        stream: Box<TlsStream<TcpStream>>,
        /// Received and not yet read as a reply.
        pending: Vec<u8>,
    },
    Rsa(Box<RsaStream>),
}

impl Raw {
    /// Sends one message: over TLS as one write, over RSA as one block.
    async fn send_message(&mut self, text: &str) {
        match self {
            Raw::Tls { stream, .. } => {
                stream.write_all(text.as_bytes()).await.unwrap();
                stream.flush().await.unwrap();
            }
            Raw::Rsa(stream) => stream.send(text.as_bytes()).await.unwrap(),
        }
    }

    /// Sends `bytes` as they are: over TLS as application data, over RSA unencrypted.
    async fn send_bytes(&mut self, bytes: &[u8]) {
        match self {
            Raw::Tls { stream, .. } => {
                stream.write_all(bytes).await.unwrap();
                stream.flush().await.unwrap();
            }
            Raw::Rsa(stream) => stream.send_clear(bytes).await.unwrap(),
        }
    }

    /// The next one-line reply, its line end included.
    async fn reply(&mut self) -> String {
        match self {
            Raw::Tls { stream, pending } => {
                let mut buf = [0u8; 4096];
                while !pending.contains(&b'\n') {
                    match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        other => panic!(
                            "expected a reply, received `{}` and then {other:?}",
                            show(pending)
                        ),
                    }
                }
                let end = pending.iter().position(|&b| b == b'\n').unwrap();
                let line: Vec<u8> = pending.drain(..=end).collect();
                String::from_utf8(line).unwrap()
            }
            Raw::Rsa(stream) => {
                let block = tokio::time::timeout(PATIENCE, stream.read_block())
                    .await
                    .expect("no reply in time")
                    .expect("a whole block that decrypts")
                    .expect("a reply, not the close");
                String::from_utf8(block).unwrap()
            }
        }
    }

    async fn expect(&mut self, expected: &str) {
        let reply = self.reply().await;
        assert_eq!(show(reply.as_bytes()), show(expected.as_bytes()));
    }

    /// `CONNECT <id>` and the hash (over RSA in the clear, as real clients send it): the
    /// reply.
    async fn try_login(&mut self, id: &str, hash: &[u8; HASH_LEN]) -> String {
        self.send_message(&format!("CONNECT {id}\n")).await;
        self.send_bytes(hash).await;
        self.reply().await
    }

    async fn login(&mut self, id: &str, hash: &[u8; HASH_LEN]) {
        let reply = self.try_login(id, hash).await;
        assert_eq!(show(reply.as_bytes()), "CONNECT: OK\\n", "CONNECT {id}");
    }

    async fn put(&mut self, key: &str, value: &str) {
        self.send_message(&format!("PUT {key}\n{value}\n")).await;
        self.expect("PUT: OK\n").await;
    }

    /// The server closes the connection without sending anything more.
    async fn expect_close(&mut self) {
        match self {
            Raw::Tls { stream, pending } => {
                assert!(pending.is_empty(), "unexpected `{}`", show(pending));
                let mut buf = [0u8; 4096];
                match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {}
                    Ok(Ok(n)) => panic!("expected a close, received `{}`", show(&buf[..n])),
                    Err(_) => panic!("expected a close, the connection stayed open"),
                }
            }
            Raw::Rsa(stream) => {
                let read = tokio::time::timeout(PATIENCE, stream.read_block())
                    .await
                    .expect("expected a close, the connection stayed open");
                assert!(matches!(read, Ok(None)), "expected a close, got {read:?}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Key-value: one misbehaving client among many

fn id(client: usize) -> String {
    format!("client{client:02}")
}

/// Every client uses the same key names: isolation must keep them apart.
fn key(key: usize) -> String {
    format!("k{key}")
}

/// What `client` stores under `key` in its `round`.
fn value(client: usize, key: usize, round: usize) -> String {
    format!("c{client}-k{key}-r{round}")
}

/// One well-behaved client: logs in, stores its keys, reports ready, then PUTs and GETs its
/// keys round after round until `done`, finishing with a whole round begun after `done`.
/// Returns its connection and the last round, whose values its keys hold.
async fn well_behaved(
    kv: Arc<Kv>,
    client: usize,
    ready: mpsc::Sender<()>,
    done: Arc<AtomicBool>,
) -> (Client, usize) {
    let mut c = kv.client().await;
    c.login(&id(client), &HASH).await.unwrap();
    for k in 0..KEYS {
        c.put(&key(k), &value(client, k, 0)).await.unwrap();
    }
    ready.send(()).await.unwrap();
    drop(ready);
    let mut round = 0;
    loop {
        let last = done.load(Ordering::SeqCst);
        round += 1;
        for k in 0..KEYS {
            c.put(&key(k), &value(client, k, round)).await.unwrap();
            assert_eq!(
                c.get(&key(k)).await.unwrap(),
                Some(value(client, k, round)),
                "{} {}",
                id(client),
                key(k)
            );
        }
        if last {
            return (c, round);
        }
    }
}

/// Ends the well-behaved clients and collects them; a client's panic is re-raised here.
async fn collect(
    done: &AtomicBool,
    tasks: Vec<JoinHandle<(Client, usize)>>,
) -> Vec<(usize, Client, usize)> {
    done.store(true, Ordering::SeqCst);
    let mut clients = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let joined = tokio::time::timeout(PATIENCE, task)
            .await
            .unwrap_or_else(|_| panic!("{} did not finish", id(i + 1)));
        match joined {
            Ok((client, round)) => clients.push((i + 1, client, round)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{}: {e}", id(i + 1)),
        }
    }
    clients
}

/// 32 clients log in concurrently and store 5 keys each; while 31 of them go on with PUTs
/// and GETs, client 0 sends `junk`. Client 0 is dropped and its data removed; every other
/// client's keys hold exactly their last values, and only their sessions are active.
async fn one_client_sends_junk(kv: Kv, junk: &[u8]) {
    let kv = Arc::new(kv);
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, mut ready_rx) = mpsc::channel(CLIENTS);
    let tasks: Vec<_> = (1..CLIENTS)
        .map(|client| {
            tokio::spawn(well_behaved(
                kv.clone(),
                client,
                ready_tx.clone(),
                done.clone(),
            ))
        })
        .collect();
    drop(ready_tx);

    // Client 0 logs in and stores its keys alongside the others.
    let zero = id(0);
    let mut raw = kv.raw().await;
    raw.login(&zero, &HASH).await;
    for k in 0..KEYS {
        raw.put(&key(k), &value(0, k, 0)).await;
    }
    for k in 0..KEYS {
        assert_eq!(kv.store().peek(&zero, &key(k)), Some(value(0, k, 0)));
    }
    let mut ready = 0;
    while ready < CLIENTS - 1 {
        match tokio::time::timeout(PATIENCE * 2, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            // A client failed (or hung) before it was ready: show why.
            _ => {
                collect(&done, tasks).await;
                panic!("only {ready} of {} clients got ready", CLIENTS - 1);
            }
        }
    }

    // The others are busy now.
    raw.send_bytes(junk).await;
    raw.expect_close().await;
    // The session is removed before the connection is closed.
    assert!(!kv.store().is_active(&zero));
    for k in 0..KEYS {
        assert_eq!(kv.store().peek(&zero, &key(k)), None, "{zero} {}", key(k));
    }
    // The account stays (same hash), the data does not.
    let mut again = kv.client().await;
    again.login(&zero, &HASH).await.unwrap();
    for k in 0..KEYS {
        assert_eq!(again.get(&key(k)).await.unwrap(), None, "{zero} {}", key(k));
    }
    again.disconnect().await.unwrap();
    assert!(!kv.store().is_active(&zero));

    let mut clients = collect(&done, tasks).await;
    assert_eq!(clients.len(), CLIENTS - 1);
    // Still connected, and kept connected until the end: their sessions are live.
    for (client, c, round) in &mut clients {
        let (client, round) = (*client, *round);
        let name = id(client);
        assert!(round >= 1, "{name} did no round");
        assert!(kv.store().is_active(&name), "{name} is no longer logged in");
        for k in 0..KEYS {
            let expected = Some(value(client, k, round));
            assert_eq!(
                kv.store().peek(&name, &key(k)),
                expected,
                "{name} {}",
                key(k)
            );
            assert_eq!(c.get(&key(k)).await.unwrap(), expected, "{name} {}", key(k));
        }
    }
    // The 31 live sessions, and nothing else.
    assert_eq!(kv.store().session_count(), CLIENTS - 1);
    for (client, _, _) in &clients {
        assert!(kv.store().is_active(&id(*client)), "{}", id(*client));
    }
    assert!(!kv.store().is_active(&zero));
    for k in 0..KEYS {
        assert_eq!(kv.store().peek(&zero, &key(k)), None);
    }
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_junk_from_one_client_leaves_the_others_data_alone() {
    let kv = Kv::tls(ServerConfig::default()).await;
    one_client_sends_junk(kv, b"FOO bar\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsa_undecryptable_block_from_one_client_leaves_the_others_data_alone() {
    let kv = Kv::rsa(ServerConfig::default()).await;
    // Above any 512-bit modulus: no key decrypts it.
    one_client_sends_junk(kv, &[0xff; BLOCK_LEN]).await;
}

// ------------------------------------------------------------------------------------------
// Key-value: connections cut in the middle of a message

/// What a connection sends before it is cut.
enum Part {
    /// One message (over RSA one block).
    Message(&'static str),
    /// Bytes as they are (over RSA in the clear).
    Bytes(Vec<u8>),
}

impl Part {
    async fn send(&self, raw: &mut Raw) {
        match self {
            Part::Message(text) => raw.send_message(text).await,
            Part::Bytes(bytes) => raw.send_bytes(bytes).await,
        }
    }
}

/// `alice` stores two keys and her connection is dropped. Then, again and again, a
/// connection logs in as her (retrying while the server notices that the previous one is
/// gone), sends the start of a message (`logged_in`), and is dropped; and connections
/// that have sent only part of a `CONNECT` are dropped (`before_login`). `bob` starts a
/// `CONNECT` with half a hash and is cut: nothing of it stays, so he logs in later with
/// another hash. At the end `alice` logs in once more and finds exactly her two values.
async fn cut_connections_leave_no_session(
    kv: Kv,
    logged_in: Vec<Vec<Part>>,
    before_login: Vec<Vec<Part>>,
) {
    let store = kv.store();
    let mut first = kv.client().await;
    first.login("alice", &HASH).await.unwrap();
    first.put("colour", "blue").await.unwrap();
    first.put("shape", "round").await.unwrap();
    // Without DISCONNECT: the data stays.
    drop(first);

    let committed = |store: &Store| {
        assert_eq!(store.peek("alice", "colour").as_deref(), Some("blue"));
        assert_eq!(store.peek("alice", "shape").as_deref(), Some("round"));
    };

    for parts in &logged_in {
        let mut raw = kv.raw_login_retrying("alice", &HASH).await;
        assert!(store.is_active("alice"));
        committed(store);
        for part in parts {
            part.send(&mut raw).await;
        }
        drop(raw);
    }

    for parts in &before_login {
        let mut raw = kv.raw().await;
        for part in parts {
            part.send(&mut raw).await;
        }
        drop(raw);
    }

    let mut bob = kv.raw().await;
    bob.send_message("CONNECT bob\n").await;
    bob.send_bytes(&[2; HASH_LEN / 2]).await;
    drop(bob);

    let mut alice = kv.client_login_retrying("alice", &HASH).await;
    assert_eq!(alice.get("colour").await.unwrap().as_deref(), Some("blue"));
    assert_eq!(alice.get("shape").await.unwrap().as_deref(), Some("round"));
    assert_eq!(alice.get("half").await.unwrap(), None);
    committed(store);
    // Nothing of bob's half login was kept: not a session, not a hash.
    assert!(!store.is_active("bob"));
    let mut bob = kv.client().await;
    bob.login("bob", &[3; HASH_LEN]).await.unwrap();
    assert_eq!(bob.get("colour").await.unwrap(), None);
    assert_eq!(store.session_count(), 2);
    assert!(store.is_active("alice"));
    assert!(store.is_active("bob"));
}

#[tokio::test]
async fn tls_connections_cut_mid_message_leave_no_session() {
    let kv = Kv::tls(ServerConfig::default()).await;
    let logged_in = vec![
        // A PUT without its value.
        vec![Part::Message("PUT colour\n")],
        // A PUT with half its value.
        vec![Part::Message("PUT colour\nre")],
        // Half a PUT line.
        vec![Part::Message("PUT col")],
        // A PUT of a new key without its value.
        vec![Part::Message("PUT half\n")],
        // Nothing at all.
        vec![],
    ];
    let before_login = vec![
        // The CONNECT line, no hash.
        vec![Part::Message("CONNECT alice\n")],
        // The CONNECT line, half the hash.
        vec![
            Part::Message("CONNECT alice\n"),
            Part::Bytes(HASH[..HASH_LEN / 2].to_vec()),
        ],
        // Half the CONNECT line.
        vec![Part::Message("CONNECT ali")],
    ];
    cut_connections_leave_no_session(kv, logged_in, before_login).await;
}

#[tokio::test]
async fn rsa_connections_cut_mid_message_leave_no_session() {
    let kv = Kv::rsa(ServerConfig::default()).await;
    let logged_in = vec![
        // A PUT block without the value block.
        vec![Part::Message("PUT colour\n")],
        vec![Part::Message("PUT half\n")],
        // Half a block.
        vec![Part::Bytes(vec![0x42; BLOCK_LEN / 2])],
        vec![],
    ];
    let before_login = vec![
        // The CONNECT block, no hash.
        vec![Part::Message("CONNECT alice\n")],
        // The CONNECT block, half the hash.
        vec![
            Part::Message("CONNECT alice\n"),
            Part::Bytes(HASH[..HASH_LEN / 2].to_vec()),
        ],
    ];
    cut_connections_leave_no_session(kv, logged_in, before_login).await;
}

// ------------------------------------------------------------------------------------------
// Chat: one misbehaving user among many

mod chat {
    use reference_impl::chat::codec::MAX_LINE;
    use reference_impl::chat::server::{self, RunningServer, ServerConfig};
    use tokio::task::JoinSet;

    use super::PATIENCE;
    use super::common::chat::Conn;

    /// Users in the chat test, the misbehaving one included.
    const USERS: usize = 20;

    fn name(user: usize) -> String {
        format!("user{user:02}")
    }

    /// `LIST_USERS_RESP` naming `names` in that order.
    fn user_list(names: &[String]) -> String {
        let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        format!(
            r#"LIST_USERS_RESP {{"status":"OK","users":[{}]}}"#,
            names.join(",")
        )
    }

    /// 20 users log in concurrently; one sends an invalid line, which is answered, then a
    /// line over the limit, which gets it dropped. The 19 others learn it left, still
    /// receive a broadcast from one of them, and its name is free again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_dropped_chat_user_leaves_the_others_chatting() {
        let config = ServerConfig {
            joined: false,
            // No PING within the test.
            ping_interval: std::time::Duration::from_secs(60),
            ..ServerConfig::default()
        };
        assert_eq!(config.max_line, MAX_LINE);
        let server: RunningServer = server::spawn(config).await.unwrap();
        let addr = server.addr();

        let mut logins = JoinSet::new();
        for user in 0..USERS {
            logins.spawn(async move { Conn::login(addr, &name(user)).await });
        }
        let mut users = Vec::new();
        while let Some(joined) = tokio::time::timeout(PATIENCE, logins.join_next())
            .await
            .expect("the logins did not finish")
        {
            users.push(joined.unwrap());
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<String> = (0..USERS).map(name).collect();
        assert_eq!(
            users.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            names
        );

        let mut bad = users.remove(0);
        // An invalid line is answered; the connection stays.
        bad.send("MSG This is an invalid message").await;
        bad.expect("UNKNOWN_COMMAND").await;
        // One byte over the limit, without a line end: dropped at once.
        bad.send_raw(&vec![b'x'; MAX_LINE + 1]).await;
        bad.expect(r#"DSCN {"reason":7001}"#).await;
        bad.expect_close().await;

        // Every other user is told, and nothing else.
        for user in &mut users {
            user.expect(r#"LEFT {"username":"user00"}"#).await;
        }
        let (sender, others) = users.split_first_mut().unwrap();
        sender
            .send(r#"BROADCAST_REQ {"message":"still here"}"#)
            .await;
        sender.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
        for user in others.iter_mut() {
            user.expect(r#"BROADCAST {"username":"user01","message":"still here"}"#)
                .await;
        }
        // Logins were concurrent: the list is in login order, which is any order here.
        sender.send("LIST_USERS_REQ").await;
        let list = sender.next_line().await.unwrap();
        let body = list
            .strip_prefix("LIST_USERS_RESP ")
            .unwrap_or_else(|| panic!("unexpected {list:?}"));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["status"], "OK");
        let mut listed: Vec<String> = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, names[1..]);

        // Its name is free again, and new logins go to the end of the list.
        let mut back = Conn::login(addr, "user00").await;
        back.send("LIST_USERS_REQ").await;
        let mut expected = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        expected.push(name(0));
        back.expect(&user_list(&expected)).await;
        back.send(r#"BROADCAST_REQ {"message":"back"}"#).await;
        back.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
        for user in &mut users {
            user.expect(r#"BROADCAST {"username":"user00","message":"back"}"#)
                .await;
        }
        server.shutdown().await;
    }
}
