//! The key-value server and client over real TLS connections on 127.0.0.1: raw bytes in,
//! exact bytes out.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reference_impl::kv::auth::{HASH_LEN, TEST_SALT, hash_password};
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::server::{self, Fault, RunningServer, ServerConfig};
use reference_impl::kv::store::Accounts;
use reference_impl::tls::{self, ClientTrust};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

mod common;
use common::PATIENCE;

/// Password hashes for first-use accounts: any 32 bytes will do, no PBKDF2 needed.
const ALICE: [u8; HASH_LEN] = [1; HASH_LEN];
const OTHER: [u8; HASH_LEN] = [2; HASH_LEN];

/// PBKDF2 of a password with the test salt, computed once per password (it is slow in debug
/// builds).
fn pbkdf2(password: &str) -> [u8; HASH_LEN] {
    static CACHE: OnceLock<Mutex<HashMap<String, [u8; HASH_LEN]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hash) = cache.lock().unwrap().get(password) {
        return *hash;
    }
    let hash = hash_password(password.as_bytes(), &TEST_SALT);
    cache.lock().unwrap().insert(password.to_owned(), hash);
    hash
}

/// A server running in this process, and a client configuration that trusts it.
struct TestServer {
    running: RunningServer,
    client_tls: Arc<rustls::ClientConfig>,
}

impl TestServer {
    async fn start(config: ServerConfig) -> Self {
        let (running, client_tls) = common::spawn_tls_kv(config).await;
        Self {
            running,
            client_tls,
        }
    }

    async fn open(&self) -> Conn {
        let tcp = TcpStream::connect(self.running.addr()).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let stream = TlsConnector::from(self.client_tls.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        Conn {
            stream,
            pending: Vec::new(),
        }
    }

    async fn client(&self, dialect: Dialect) -> Client {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        Client::connect(self.running.addr(), self.client_tls.clone(), name, dialect)
            .await
            .unwrap()
    }

    /// Waits until the server has noticed that `id`'s connection ended.
    async fn wait_inactive(&self, id: &str) {
        let store = self.running.store();
        tokio::time::timeout(PATIENCE, async {
            while store.is_active(id) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the server did not notice the closed connection");
    }
}

/// A server with the default (spec) configuration, or with the changes given.
macro_rules! server {
    () => {
        TestServer::start(ServerConfig::default()).await
    };
    ($($field:ident: $value:expr),+ $(,)?) => {
        TestServer::start(ServerConfig {
            $($field: $value,)+
            ..ServerConfig::default()
        })
        .await
    };
}

/// A spec-dialect server wrong in exactly one way.
macro_rules! faulty_server {
    ($fault:expr) => {
        server!(faults: $fault.into())
    };
}

/// A raw TLS connection: bytes in, bytes out.
struct Conn {
    stream: TlsStream<TcpStream>,
    /// Received and not yet expected.
    pending: Vec<u8>,
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl Conn {
    /// Sends `bytes` as one write (one TLS record).
    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Receives exactly `expected`, whatever the record boundaries.
    async fn expect(&mut self, expected: impl AsRef<[u8]>) {
        let expected = expected.as_ref();
        let mut buf = [0u8; 4096];
        while self.pending.len() < expected.len() {
            let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
                other => panic!(
                    "expected `{}`, received `{}` and then {other:?}",
                    show(expected),
                    show(&self.pending)
                ),
            }
        }
        let received: Vec<u8> = self.pending.drain(..expected.len()).collect();
        assert_eq!(show(&received), show(expected));
    }

    /// Receives exactly one read (one TLS record) holding exactly `expected`.
    async fn expect_write(&mut self, expected: impl AsRef<[u8]>) {
        assert!(
            self.pending.is_empty(),
            "unexpected `{}`",
            show(&self.pending)
        );
        let chunk = tokio::time::timeout(PATIENCE, self.stream.fill_buf())
            .await
            .expect("no reply")
            .unwrap()
            .to_vec();
        self.stream.consume(chunk.len());
        assert_eq!(show(&chunk), show(expected.as_ref()));
    }

    /// Expects the server to close the connection without sending anything more.
    async fn expect_close(&mut self) {
        assert!(
            self.pending.is_empty(),
            "unexpected `{}`",
            show(&self.pending)
        );
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(PATIENCE, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("expected a close, received `{}`", show(&buf[..n])),
            Err(_) => panic!("expected a close, the connection stayed open"),
        }
    }

    /// Expects nothing to arrive for a while, and the connection to stay open.
    async fn expect_silence(&mut self) {
        assert!(
            self.pending.is_empty(),
            "unexpected `{}`",
            show(&self.pending)
        );
        let mut buf = [0u8; 4096];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(300), self.stream.read(&mut buf)).await
        {
            panic!("expected silence, got {:?}", read.map(|n| show(&buf[..n])));
        }
    }

    /// Spec dialect: `CONNECT <id>` with `hash`, answered `CONNECT: OK`.
    async fn login(&mut self, id: &str, hash: &[u8; HASH_LEN]) {
        self.send_connect(id, hash).await;
        self.expect("CONNECT: OK\n").await;
    }

    async fn send_connect(&mut self, id: &str, hash: &[u8; HASH_LEN]) {
        let mut bytes = format!("CONNECT {id}\n").into_bytes();
        bytes.extend_from_slice(hash);
        self.send(bytes).await;
    }

    async fn put(&mut self, key: &str, value: &str) {
        self.send(format!("PUT {key}\n{value}\n")).await;
        self.expect("PUT: OK\n").await;
    }
}

#[tokio::test]
async fn login_put_get_with_crc() {
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send("PUT colour\nblue\n").await;
    c.expect("PUT: OK\n").await;
    c.send("GET colour\n").await;
    c.expect("GET blue\n2654390964\n").await;
    c.send("PUT colour\n\n").await;
    c.expect("PUT: OK\n").await;
    c.send("GET colour\n").await;
    c.expect("GET \n0\n").await;
}

#[tokio::test]
async fn hash_and_messages_may_arrive_in_any_pieces() {
    let server = server!();
    let mut c = server.open().await;
    c.send("CONN").await;
    c.send("ECT alice\n").await;
    c.send(&ALICE[..10]).await;
    c.send(&ALICE[10..]).await;
    c.expect("CONNECT: OK\n").await;
    // Pipelined: three requests in one write are answered in order.
    c.send("PUT a\n1\nPUT b\n2\nGET a\n").await;
    c.expect("PUT: OK\nPUT: OK\nGET 1\n2212294583\n").await;
}

#[tokio::test]
async fn wrong_password_answers_error_and_stays_open() {
    let server = server!();
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    drop(first);
    server.wait_inactive("alice").await;

    let mut c = server.open().await;
    c.send_connect("alice", &OTHER).await;
    c.expect("CONNECT: ERROR\n").await;
    c.login("alice", &ALICE).await;
}

#[tokio::test]
async fn refused_login_leaves_the_connection_logged_out() {
    let server = server!();
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    drop(first);
    server.wait_inactive("alice").await;

    let mut c = server.open().await;
    c.send_connect("alice", &OTHER).await;
    c.expect("CONNECT: ERROR\n").await;
    c.send("GET colour\n").await;
    c.expect_close().await;
}

#[tokio::test]
async fn verified_accounts_need_the_pbkdf2_of_their_password() {
    let users = Accounts::parse_users("alice:secret\n", "users.txt".as_ref()).unwrap();
    let server = server!(accounts: users);
    let mut c = server.open().await;
    c.send_connect("alice", &ALICE).await;
    c.expect("CONNECT: ERROR\n").await;
    c.send_connect("mallory", &pbkdf2("secret")).await;
    c.expect("CONNECT: ERROR\n").await;
    c.login("alice", &pbkdf2("secret")).await;
}

#[tokio::test]
async fn one_active_session_per_id() {
    let server = server!();
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    let mut second = server.open().await;
    second.send_connect("alice", &ALICE).await;
    second.expect("CONNECT: ERROR\n").await;
    // Other ids are not affected.
    second.login("bob", &OTHER).await;
    let mut third = server.open().await;
    drop(first);
    server.wait_inactive("alice").await;
    third.login("alice", &ALICE).await;
}

#[tokio::test]
async fn invalid_id_answers_error() {
    let server = server!();
    let mut c = server.open().await;
    c.send_connect("", &ALICE).await;
    c.expect("CONNECT: ERROR\n").await;
}

#[tokio::test]
async fn get_missing_and_delete() {
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send("GET nothing\n").await;
    c.expect("GET: ERROR\n").await;
    c.put("k", "v").await;
    c.send("DELETE k\n").await;
    c.expect("DELETE: OK\n").await;
    c.send("GET k\n").await;
    c.expect("GET: ERROR\n").await;
    // Nothing remains, so deleting a missing key is OK too.
    c.send("DELETE k\n").await;
    c.expect("DELETE: OK\n").await;
}

#[tokio::test]
async fn sessions_do_not_share_data() {
    let server = server!();
    let mut alice = server.open().await;
    alice.login("alice", &ALICE).await;
    alice.put("k", "from alice").await;
    let mut bob = server.open().await;
    bob.login("bob", &OTHER).await;
    bob.send("GET k\n").await;
    bob.expect("GET: ERROR\n").await;
}

#[tokio::test]
async fn disconnect_closes_and_removes_the_data() {
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "v").await;
    c.send("DISCONNECT\n").await;
    c.expect("DISCONNECT: OK\n").await;
    c.expect_close().await;

    let mut again = server.open().await;
    again.login("alice", &ALICE).await;
    again.send("GET k\n").await;
    again.expect("GET: ERROR\n").await;
}

#[tokio::test]
async fn reconnect_after_eof_finds_the_data() {
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "kept").await;
    // Close without DISCONNECT (not even a TLS close_notify).
    drop(c);
    server.wait_inactive("alice").await;

    let mut again = server.open().await;
    again.login("alice", &ALICE).await;
    again.send("GET k\n").await;
    again.expect("GET kept\n4213729798\n").await;
}

#[tokio::test]
async fn junk_drops_the_connection_and_the_data() {
    let server = server!();
    let junk: [&[u8]; 8] = [
        b"FOO bar\n",
        b"get k\n",
        b"GET\n",
        b"GET \n",
        b"\n",
        b"DISCONNECT now\n",
        "GET caf\u{e9}\n".as_bytes(),
        b"PUT k\nv\xff\n",
    ];
    for (i, junk) in junk.iter().enumerate() {
        let id = format!("user{i}");
        let mut c = server.open().await;
        c.login(&id, &ALICE).await;
        c.put("k", "v").await;
        c.send(junk).await;
        c.expect_close().await;

        server.wait_inactive(&id).await;
        let mut again = server.open().await;
        again.login(&id, &ALICE).await;
        again.send("GET k\n").await;
        again.expect("GET: ERROR\n").await;
    }
}

#[tokio::test]
async fn commands_before_connect_drop_the_connection() {
    let server = server!();
    for request in ["GET k\n", "DELETE k\n", "DISCONNECT\n", "PUT k\n"] {
        let mut c = server.open().await;
        // A PUT is refused at its first line: the server does not wait for the value.
        c.send(request).await;
        c.expect_close().await;
    }
}

#[tokio::test]
async fn connect_while_logged_in_drops_the_connection_and_the_data() {
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "v").await;
    // Refused at the CONNECT line, before any hash arrives.
    c.send("CONNECT bob\n").await;
    c.expect_close().await;
    assert_eq!(server.running.store().session_count(), 0);
}

#[tokio::test]
async fn messages_up_to_the_limit_pass_longer_ones_drop() {
    let server = server!(max_message: 64);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    // "GET " + 59 bytes + "\n" = 64 bytes.
    c.send(format!("GET {}\n", "k".repeat(59))).await;
    c.expect("GET: ERROR\n").await;
    c.send(format!("GET {}\n", "k".repeat(60))).await;
    c.expect_close().await;
}

#[tokio::test]
async fn a_ten_megabyte_line_is_cut_off_early() {
    const TOTAL: usize = 10 * 1024 * 1024;
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    let (mut reader, mut writer) = tokio::io::split(c.stream);
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let sender = tokio::spawn(async move {
        let block = vec![b'a'; 16 * 1024];
        while counter.load(Ordering::Relaxed) < TOTAL {
            if writer.write_all(&block).await.is_err() {
                return;
            }
            counter.fetch_add(block.len(), Ordering::Relaxed);
        }
    });
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, reader.read(&mut buf))
        .await
        .expect("the server kept reading the line");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let at_close = written.load(Ordering::Relaxed);
    assert!(
        at_close < TOTAL,
        "the whole line was sent before the server closed"
    );
    let _ = sender.await;
}

#[tokio::test]
async fn course_dialect_frames_by_write() {
    let server = server!(dialect: Dialect::Course);
    let mut c = server.open().await;
    c.send("CONNECT alice").await;
    c.send(ALICE).await;
    c.expect_write("CONNECT: OK").await;
    c.send("PUT colour\nblue").await;
    c.expect_write("PUT: OK").await;
    c.send("GET colour").await;
    c.expect_write("GET blue\n2654390964").await;
    c.send("GET nothing").await;
    c.expect_write("GET: ERROR").await;
    // Key and value in two writes, and a trailing line feed: both accepted.
    c.send("PUT shape").await;
    c.send("round\n").await;
    c.expect_write("PUT: OK").await;
    c.send("DELETE colour").await;
    c.expect_write("DELETE: OK").await;
    c.send("DISCONNECT").await;
    c.expect_write("DISCONNECT: OK").await;
    c.expect_close().await;
}

#[tokio::test]
async fn course_dialect_takes_a_line_feed_after_connect_into_the_id() {
    let server = server!(dialect: Dialect::Course);
    let mut c = server.open().await;
    c.send("CONNECT abc\n").await;
    c.send(ALICE).await;
    c.expect_write("CONNECT: ERROR").await;
}

#[tokio::test]
async fn course_dialect_drops_unknown_commands() {
    let server = server!(dialect: Dialect::Course);
    let mut c = server.open().await;
    c.send("CONNECT alice").await;
    c.send(ALICE).await;
    c.expect_write("CONNECT: OK").await;
    c.send("GET").await;
    c.expect_close().await;
}

#[tokio::test]
async fn session_limit_refuses_new_ids() {
    let server = server!(max_sessions: 1);
    let mut alice = server.open().await;
    alice.login("alice", &ALICE).await;
    let mut bob = server.open().await;
    bob.send_connect("bob", &OTHER).await;
    bob.expect("CONNECT: ERROR\n").await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let server = server!(max_connections: 1);
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let refused = Client::connect(
        server.running.addr(),
        server.client_tls.clone(),
        name,
        Dialect::Spec,
    )
    .await;
    assert!(
        matches!(refused, Err(ClientError::Handshake { .. })),
        "{refused:?}"
    );
    // The first connection is unaffected.
    first.put("k", "v").await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let server = server!(handshake_timeout: Duration::from_millis(100));
    let mut tcp = TcpStream::connect(server.running.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
        .await
        .expect("the server waited for the handshake");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let server = server!();
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    tokio::time::timeout(PATIENCE, server.running.shutdown())
        .await
        .expect("shutdown hung");
    c.expect_close().await;
}

#[tokio::test]
async fn client_library_round_trip() {
    let server = server!();
    let mut client = server.client(Dialect::Spec).await;
    client.login("alice", &ALICE).await.unwrap();
    client.put("colour", "blue").await.unwrap();
    assert_eq!(client.get("colour").await.unwrap().as_deref(), Some("blue"));
    assert_eq!(client.get("missing").await.unwrap(), None);
    client.delete("colour").await.unwrap();
    assert_eq!(client.get("colour").await.unwrap(), None);
    assert!(matches!(
        client.put("bad\nkey", "v").await,
        Err(ClientError::InvalidArgument { .. })
    ));
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn client_library_speaks_the_course_dialect() {
    let server = server!(dialect: Dialect::Course);
    let mut client = server.client(Dialect::Course).await;
    client.login("alice", &ALICE).await.unwrap();
    client.put("colour", "").await.unwrap();
    assert_eq!(client.get("colour").await.unwrap().as_deref(), Some(""));
    client.put("colour", "blue").await.unwrap();
    assert_eq!(client.get("colour").await.unwrap().as_deref(), Some("blue"));
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn client_library_reports_refused_login() {
    let server = server!();
    let mut first = server.client(Dialect::Spec).await;
    first.login("alice", &ALICE).await.unwrap();
    let mut second = server.client(Dialect::Spec).await;
    let refused = second.login("alice", &ALICE).await;
    assert!(
        matches!(refused, Err(ClientError::LoginRefused { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn insecure_trust_accepts_an_expired_certificate_and_roots_do_not() {
    let cert = tls::self_signed_expired(&[]).unwrap();
    let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der).unwrap();
    let running = server::spawn(ServerConfig::default(), server_tls)
        .await
        .unwrap();
    let name = || ServerName::try_from("127.0.0.1").unwrap();

    let strict = tls::client_config(ClientTrust::Roots(vec![cert.cert_der])).unwrap();
    let refused = Client::connect(running.addr(), strict, name(), Dialect::Spec).await;
    assert!(
        matches!(refused, Err(ClientError::Handshake { .. })),
        "{refused:?}"
    );

    let insecure = tls::client_config(ClientTrust::InsecureAcceptAny).unwrap();
    let mut client = Client::connect(running.addr(), insecure, name(), Dialect::Spec)
        .await
        .unwrap();
    client.login("alice", &ALICE).await.unwrap();
}

// Each fault changes the behaviour it names, and only that.

#[tokio::test]
async fn fault_wrong_crc() {
    let server = faulty_server!(Fault::WrongCrc);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("colour", "blue").await;
    c.send("GET colour\n").await;
    c.expect("GET blue\n2654390965\n").await;

    let mut client = server.client(Dialect::Spec).await;
    client.login("bob", &OTHER).await.unwrap();
    client.put("colour", "blue").await.unwrap();
    match client.get("colour").await {
        Err(ClientError::CrcMismatch {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (2_654_390_964, 2_654_390_965)),
        other => panic!("expected a CRC mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn fault_get_without_crc() {
    let server = faulty_server!(Fault::GetWithoutCrc);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("colour", "blue").await;
    c.send("GET colour\n").await;
    c.expect("GET blue\n").await;
    c.expect_silence().await;
}

#[tokio::test]
async fn fault_usable_after_connect_error() {
    let server = faulty_server!(Fault::UsableAfterConnectError);
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    drop(first);
    server.wait_inactive("alice").await;
    let mut c = server.open().await;
    c.send_connect("alice", &OTHER).await;
    c.expect("CONNECT: ERROR\n").await;
    c.put("k", "v").await;
}

#[tokio::test]
async fn fault_no_close_after_disconnect() {
    let server = faulty_server!(Fault::NoCloseAfterDisconnect);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send("DISCONNECT\n").await;
    c.expect("DISCONNECT: OK\n").await;
    c.expect_silence().await;
    c.login("alice", &ALICE).await;
}

#[tokio::test]
async fn fault_no_drop_on_junk() {
    let server = faulty_server!(Fault::NoDropOnJunk);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send("FOO\n").await;
    c.expect_silence().await;
    c.put("k", "v").await;
}

#[tokio::test]
async fn fault_reply_without_line_end() {
    let server = faulty_server!(Fault::ReplyWithoutLineEnd);
    let mut c = server.open().await;
    c.send_connect("alice", &ALICE).await;
    c.expect("CONNECT: OK").await;
    c.send("PUT k\nv\n").await;
    c.expect("PUT: OK").await;
}

#[tokio::test]
async fn fault_shared_store() {
    let server = faulty_server!(Fault::SharedStore);
    let mut alice = server.open().await;
    alice.login("alice", &ALICE).await;
    alice.put("k", "v").await;
    let mut bob = server.open().await;
    bob.login("bob", &OTHER).await;
    bob.send("GET k\n").await;
    bob.expect("GET v\n1801730948\n").await;
}

#[tokio::test]
async fn fault_allow_duplicate_session() {
    let server = faulty_server!(Fault::AllowDuplicateSession);
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    let mut second = server.open().await;
    second.login("alice", &ALICE).await;
}

#[tokio::test]
async fn fault_keep_data_after_drop() {
    let server = faulty_server!(Fault::KeepDataAfterDrop);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "v").await;
    c.send("FOO\n").await;
    c.expect_close().await;
    server.wait_inactive("alice").await;
    let mut again = server.open().await;
    again.login("alice", &ALICE).await;
    again.send("GET k\n").await;
    again.expect("GET v\n1801730948\n").await;
}

#[tokio::test]
async fn fault_no_size_limit() {
    let server = faulty_server!(Fault::NoSizeLimit);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send(format!("GET {}\n", "k".repeat(10_000))).await;
    c.expect("GET: ERROR\n").await;
}

#[tokio::test]
async fn fault_allow_commands_before_connect() {
    let server = faulty_server!(Fault::AllowCommandsBeforeConnect);
    let mut c = server.open().await;
    c.send("PUT k\nv\n").await;
    c.expect("PUT: OK\n").await;
}

#[tokio::test]
async fn fault_get_missing_returns_empty_and_delete_faults() {
    let server = faulty_server!(Fault::GetMissingReturnsEmpty);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send("GET nothing\n").await;
    c.expect("GET \n0\n").await;

    let server = faulty_server!(Fault::DeleteMissingErrors);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.send("DELETE nothing\n").await;
    c.expect("DELETE: ERROR\n").await;

    let server = faulty_server!(Fault::DeleteKeepsKey);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "v").await;
    c.send("DELETE k\nGET k\n").await;
    c.expect("DELETE: OK\nGET v\n1801730948\n").await;
}

#[tokio::test]
async fn fault_put_keeps_old_value_and_session_faults() {
    let server = faulty_server!(Fault::PutKeepsOldValue);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "v").await;
    c.put("k", "w").await;
    c.send("GET k\n").await;
    c.expect("GET v\n1801730948\n").await;

    let server = faulty_server!(Fault::KeepSessionAfterDisconnect);
    let mut c = server.open().await;
    c.login("alice", &ALICE).await;
    c.put("k", "v").await;
    c.send("DISCONNECT\n").await;
    c.expect("DISCONNECT: OK\n").await;
    c.expect_close().await;
    server.wait_inactive("alice").await;
    let mut again = server.open().await;
    again.login("alice", &ALICE).await;
    again.send("GET k\n").await;
    again.expect("GET v\n1801730948\n").await;

    let server = faulty_server!(Fault::AcceptAnyPassword);
    let mut first = server.open().await;
    first.login("alice", &ALICE).await;
    drop(first);
    server.wait_inactive("alice").await;
    let mut c = server.open().await;
    c.login("alice", &OTHER).await;
}
