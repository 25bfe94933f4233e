//! Slow clients do not starve normal ones. Each reference server runs in this process with
//! 1,000 connections that drip the first bytes of a valid message, a byte every 100 to 200
//! ms: a TLS ClientHello (KV), a `LOGIN` line (chat), a first packet's header (packet), a
//! name and a word count request (mathsvc). While they drip, a few normal clients connect,
//! a connection over the cap is refused at once, and the normal clients run a whole flow.
//! Then every dripping connection must still be open: the servers' per-connection timeouts
//! are set far beyond the test's span, so nothing may have closed them.
//!
//! The cap is the drippers plus the normal clients, so that the normal clients fit and a
//! connection opened while all of them hold their slots is one too many. Every wait has a
//! deadline that only guards against a hang.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reference_impl::kv::auth::HASH_LEN;
use reference_impl::kv::client::Client;
use reference_impl::kv::codec::Dialect;
use reference_impl::mathsvc::codec::client_uuid;
use reference_impl::packet::codec::{
    ChecksumMode, MAX_DATA, MAX_PACKET, Packet, PacketDecoder, Pairing, xor,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod common;
use common::PATIENCE;
use common::chat::Conn;

/// Connections that drip.
const DRIPPERS: usize = 1000;
/// Normal clients of each server, connected at the same time.
const NORMAL: usize = 3;
/// The servers' connection cap: room for every dripper and every normal client, no more.
const CAP: usize = DRIPPERS + NORMAL;
/// Most bytes one connection drips; it then holds the connection open without sending.
const MAX_DRIP: usize = 64;
/// Bytes every connection has dripped before the normal clients start (0.5 to 1 s).
const WARM: usize = 5;
/// The servers' per-connection timeouts (handshake, idle, session): far beyond
/// [`HANG_GUARD`], so that no dripper is closed by one while the test runs.
const HOLD: Duration = Duration::from_secs(120);
/// Longest a whole test may take before it counts as hung.
const HANG_GUARD: Duration = Duration::from_secs(60);
/// Most events (writes and reads) a dripping connection handles.
const MAX_EVENTS: usize = MAX_DRIP + 1000;

/// The pause between two bytes of dripper `i`: 100 to 200 ms, spread over the drippers.
fn interval(i: usize) -> Duration {
    Duration::from_millis(100 + (i * 37 % 101) as u64)
}

/// How a dripping connection ended.
#[derive(Debug)]
struct Dripped {
    /// Bytes it sent.
    sent: usize,
    /// `Some(why)`: the connection was closed or failed while the test ran.
    closed: Option<String>,
}

/// One dripping connection: sends the first byte after `first`, then one byte every
/// `interval` up to [`MAX_DRIP`] bytes (never the whole message), reads and drops whatever
/// the server sends, and watches for a close, until `stop`. Reports on `warm` once it has
/// sent [`WARM`] bytes, or when it ends before that.
async fn drip(
    mut tcp: TcpStream,
    message: Arc<[u8]>,
    interval: Duration,
    first: Duration,
    warm: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
    dripped: Arc<AtomicUsize>,
) -> Dripped {
    let len = MAX_DRIP.min(message.len() - 1);
    let mut warm = Some(warm);
    let mut sent = 0;
    let mut next = Instant::now() + first;
    let mut buf = [0u8; 1024];
    let mut closed = Some(format!("more than {MAX_EVENTS} events"));
    for _ in 0..MAX_EVENTS {
        tokio::select! {
            biased;
            read = tcp.read(&mut buf) => match read {
                Ok(0) => {
                    closed = Some("closed by the server".into());
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    closed = Some(format!("read failed: {e}"));
                    break;
                }
            },
            _ = stop.changed() => {
                closed = None;
                break;
            }
            () = tokio::time::sleep_until(next), if sent < len => {
                if let Err(e) = tcp.write_all(&message[sent..=sent]).await {
                    closed = Some(format!("write failed: {e}"));
                    break;
                }
                dripped.fetch_add(1, Ordering::Relaxed);
                sent += 1;
                next += interval;
                if sent == WARM
                    && let Some(warm) = warm.take()
                {
                    let _ = warm.send(()).await;
                }
            }
        }
    }
    // Exactly one report per dripper, whatever happened.
    if let Some(warm) = warm.take() {
        let _ = warm.send(()).await;
    }
    Dripped { sent, closed }
}

/// [`DRIPPERS`] connections dripping the start of one message.
struct Drippers {
    tasks: JoinSet<Dripped>,
    stop: watch::Sender<bool>,
    /// Bytes dripped so far, all connections together.
    dripped: Arc<AtomicUsize>,
}

impl Drippers {
    /// Opens every connection, one after the other, then lets them drip; returns once each
    /// has sent [`WARM`] bytes.
    async fn start(addr: SocketAddr, message: &[u8]) -> Self {
        let message: Arc<[u8]> = message.into();
        let mut conns = Vec::with_capacity(DRIPPERS);
        for _ in 0..DRIPPERS {
            conns.push(common::tcp_connect(addr).await);
        }
        let (stop, stopped) = watch::channel(false);
        let (warm, mut warmed) = mpsc::channel(DRIPPERS);
        let dripped = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for (i, tcp) in conns.into_iter().enumerate() {
            let interval = interval(i);
            // Spread over one interval, so the drippers do not write all at once.
            let first = interval.mul_f64((i % 10) as f64 / 10.0);
            tasks.spawn(drip(
                tcp,
                message.clone(),
                interval,
                first,
                warm.clone(),
                stopped.clone(),
                dripped.clone(),
            ));
        }
        drop(warm);
        for _ in 0..DRIPPERS {
            warmed.recv().await.unwrap();
        }
        Drippers {
            tasks,
            stop,
            dripped,
        }
    }

    fn dripped(&self) -> usize {
        self.dripped.load(Ordering::Relaxed)
    }

    /// Stops the drippers and checks that the server closed none of them.
    async fn finish(mut self, server: &str) {
        let _ = self.stop.send(true);
        let mut ended = Vec::with_capacity(DRIPPERS);
        while let Some(joined) = self.tasks.join_next().await {
            ended.push(joined.unwrap());
        }
        let closed: Vec<&Dripped> = ended.iter().filter(|d| d.closed.is_some()).collect();
        let sent = ended.iter().map(|d| d.sent);
        println!(
            "{server}: {} connections dripped {} bytes ({} to {} each); {} closed",
            ended.len(),
            self.dripped(),
            sent.clone().min().unwrap_or(0),
            sent.max().unwrap_or(0),
            closed.len()
        );
        assert_eq!(ended.len(), DRIPPERS);
        assert!(
            closed.is_empty(),
            "{server}: {} of {DRIPPERS} dripping connections did not stay open, e.g. {:?}",
            closed.len(),
            closed[0]
        );
    }
}

/// A connection opened while every slot is taken is closed at once: end of stream (or a
/// reset) with nothing sent, rather than held open.
async fn assert_refused(server: &str, addr: SocketAddr) {
    let mut tcp = common::tcp_connect(addr).await;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
        Err(_) => panic!(
            "{server}: a connection over the cap of {CAP} was still open after {PATIENCE:?}: \
             held instead of refused"
        ),
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{server}: a connection over the cap of {CAP} was answered: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

/// Runs a test's body, failing it if it does not end within [`HANG_GUARD`].
async fn guarded(server: &str, body: impl Future<Output = ()>) {
    let began = Instant::now();
    if tokio::time::timeout(HANG_GUARD, body).await.is_err() {
        panic!("{server}: the test did not end within {HANG_GUARD:?}");
    }
    println!("{server}: done in {:.1}s", began.elapsed().as_secs_f64());
}

/// Prints how much the drippers sent while the normal clients ran.
fn report_overlap(server: &str, before: usize, drippers: &Drippers) {
    println!(
        "{server}: the drippers sent {} bytes while the normal clients ran",
        drippers.dripped() - before
    );
}

// ------------------------------------------------------------------------------------------
// KV over TLS

/// The first TLS record a client sends: its ClientHello.
fn client_hello(client_tls: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(client_tls, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Login, PUT, GET, DELETE, GET again, DISCONNECT.
async fn kv_flow(mut client: Client, id: String) {
    let hash = [id.len() as u8; HASH_LEN];
    client.login(&id, &hash).await.unwrap();
    let value = format!("blue for {id}");
    client.put("colour", &value).await.unwrap();
    assert_eq!(client.get("colour").await.unwrap(), Some(value));
    client.delete("colour").await.unwrap();
    assert_eq!(client.get("colour").await.unwrap(), None);
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_serves_normal_clients_while_1000_drip_a_client_hello() {
    guarded("kv", async {
        let config = reference_impl::kv::server::ServerConfig {
            max_connections: CAP,
            handshake_timeout: HOLD,
            ..Default::default()
        };
        let (server, client_tls) = common::spawn_tls_kv(config).await;
        let addr = server.addr();
        let hello = client_hello(client_tls.clone());
        assert!(
            hello.len() > MAX_DRIP,
            "a ClientHello of {} bytes",
            hello.len()
        );
        let drippers = Drippers::start(addr, &hello).await;
        let before = drippers.dripped();

        // A completed handshake: the server has accepted the connection.
        let mut clients = Vec::new();
        for _ in 0..NORMAL {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let client = Client::connect(addr, client_tls.clone(), name, Dialect::Spec).await;
            clients.push(client.unwrap());
        }
        assert_refused("kv", addr).await;
        let mut flows = JoinSet::new();
        for (i, client) in clients.into_iter().enumerate() {
            flows.spawn(kv_flow(client, format!("normal{i}")));
        }
        while let Some(flow) = flows.join_next().await {
            flow.unwrap();
        }
        report_overlap("kv", before, &drippers);
        drippers.finish("kv").await;
    })
    .await;
}

// ------------------------------------------------------------------------------------------
// Chat

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_serves_normal_clients_while_1000_drip_a_login() {
    guarded("chat", async {
        let server =
            reference_impl::chat::server::spawn(reference_impl::chat::server::ServerConfig {
                max_connections: CAP,
                // No PING to answer during the flow; no JOINED lines between the expected ones.
                ping_interval: HOLD,
                joined: false,
                ..Default::default()
            })
            .await
            .unwrap();
        let addr = server.addr();
        // Blanks inside the JSON keep the line valid however long it grows.
        let login = format!(r#"LOGIN {{"username":"slow"{}}}"#, " ".repeat(2 * MAX_DRIP));
        let drippers = Drippers::start(addr, login.as_bytes()).await;
        let before = drippers.dripped();

        // The WELCOME: the server has accepted the connection.
        let mut alice = Conn::connect_as(addr, "alice").await;
        let mut bob = Conn::connect_as(addr, "bob").await;
        let mut carol = Conn::connect_as(addr, "carol").await;
        assert_refused("chat", addr).await;
        for (conn, name) in [
            (&mut alice, "alice"),
            (&mut bob, "bob"),
            (&mut carol, "carol"),
        ] {
            conn.send(&format!(r#"LOGIN {{"username":"{name}"}}"#))
                .await;
            conn.expect(common::chat::LOGIN_OK).await;
        }
        alice.send(r#"BROADCAST_REQ {"message":"hello all"}"#).await;
        alice.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
        for other in [&mut bob, &mut carol] {
            other
                .expect(r#"BROADCAST {"username":"alice","message":"hello all"}"#)
                .await;
        }
        bob.send(r#"PRIVATE_MESSAGE_REQ {"receiver":"alice","message":"psst"}"#)
            .await;
        bob.expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#).await;
        alice
            .expect(r#"PRIVATE_MESSAGE {"sender":"bob","message":"psst"}"#)
            .await;
        report_overlap("chat", before, &drippers);
        drippers.finish("chat").await;
    })
    .await;
}

// ------------------------------------------------------------------------------------------
// Packet

/// A packet client speaking raw bytes.
struct PacketConn {
    tcp: TcpStream,
    decoder: PacketDecoder,
}

impl PacketConn {
    /// The next packet, checksum verified.
    async fn packet(&mut self) -> Packet {
        let mut buf = [0u8; 4096];
        for _ in 0..MAX_PACKET {
            if let Some(packet) = self.decoder.next_packet().unwrap() {
                return packet;
            }
            let read = tokio::time::timeout(PATIENCE, self.tcp.read(&mut buf)).await;
            let n = read.expect("a packet in time").unwrap();
            assert!(n > 0, "the server closed the connection");
            self.decoder.feed(&buf[..n]);
        }
        panic!("no packet in {MAX_PACKET} reads");
    }
}

/// A first packet: a header with flag 1, the keyword and the student id.
fn packet_hello(sid: i32) -> Vec<u8> {
    Packet::new(1, *b"test", sid, Vec::new()).to_bytes(Pairing::BigEndian)
}

/// Sends the first packet and reads the whole encrypted stream.
async fn packet_start(addr: SocketAddr, sid: i32) -> (PacketConn, Vec<Packet>) {
    let mut conn = PacketConn {
        tcp: common::tcp_connect(addr).await,
        decoder: PacketDecoder::with_max_packet(Some(ChecksumMode::Big), MAX_PACKET),
    };
    conn.tcp.write_all(&packet_hello(sid)).await.unwrap();
    let mut stream = Vec::new();
    // At most the longest text in the smallest packets.
    for _ in 0..=reference_impl::packet::server::MAX_TEXT {
        let packet = conn.packet().await;
        let last = packet.is_last();
        stream.push(packet);
        if last {
            return (conn, stream);
        }
    }
    panic!("the stream did not end");
}

/// Sends the decrypted text back and reads the result: full marks.
async fn packet_finish(mut conn: PacketConn, sid: i32, stream: Vec<Packet>) {
    let key = stream[0].keyword;
    let joined: Vec<u8> = stream.iter().flat_map(|p| p.data.clone()).collect();
    let text = xor(&joined, &key);
    let chunks: Vec<&[u8]> = text.chunks(MAX_DATA).collect();
    let mut reply = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let flag = u16::from(i + 1 == chunks.len());
        Packet::new(flag, key, sid, chunk.to_vec()).encode(Pairing::BigEndian, &mut reply);
    }
    conn.tcp.write_all(&reply).await.unwrap();
    let result = conn.packet().await;
    assert_eq!(
        (&result.keyword, result.sid),
        (b"GOOD", 50),
        "{}",
        String::from_utf8_lossy(&result.data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_serves_normal_clients_while_1000_drip_a_header() {
    guarded("packet", async {
        let server =
            reference_impl::packet::server::spawn(reference_impl::packet::server::ServerConfig {
                max_connections: CAP,
                text_len: 12_000..=15_000,
                timeout: HOLD,
                session_timeout: HOLD,
                linger: Duration::from_millis(200),
                ..Default::default()
            })
            .await
            .unwrap();
        let addr = server.addr();
        let drippers = Drippers::start(addr, &packet_hello(20_200_000)).await;
        let before = drippers.dripped();

        // The stream: the server has accepted the connection.
        let mut sessions = Vec::new();
        for i in 0..NORMAL {
            let sid = 20_200_001 + i as i32;
            let (conn, stream) = packet_start(addr, sid).await;
            sessions.push((conn, sid, stream));
        }
        assert_refused("packet", addr).await;
        let mut flows = JoinSet::new();
        for (conn, sid, stream) in sessions {
            flows.spawn(packet_finish(conn, sid, stream));
        }
        while let Some(flow) = flows.join_next().await {
            flow.unwrap();
        }
        report_overlap("packet", before, &drippers);
        drippers.finish("packet").await;
    })
    .await;
}

// ------------------------------------------------------------------------------------------
// Math service

/// A math client speaking raw bytes, every message ending with a line end.
struct MathConn {
    tcp: TcpStream,
    uuid: String,
}

impl MathConn {
    /// Connects and sends a name: the UUID answers (the server has accepted the connection).
    async fn named(addr: SocketAddr, name: &str) -> Self {
        let tcp = common::tcp_connect(addr).await;
        let uuid = client_uuid(tcp.local_addr().unwrap()).to_string();
        let mut conn = MathConn { tcp, uuid };
        let uuid = conn.uuid.clone();
        conn.ask(&format!("{name}\n"), &uuid).await;
        conn
    }

    /// Sends `request`; exactly `expected` answers.
    async fn ask(&mut self, request: &str, expected: &str) {
        self.tcp.write_all(request.as_bytes()).await.unwrap();
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(PATIENCE, self.tcp.read_exact(&mut got))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), expected, "to {request:?}");
    }

    /// A few requests, then `COMPLETE`: the server closes.
    async fn flow(mut self) {
        let uuid = self.uuid.clone();
        self.ask("FIBONACCI\n7\n", &format!("13_{uuid}")).await;
        self.ask("FACTORIAL\n6\n", &format!("720_{uuid}")).await;
        self.ask("FILE\n11\nhello world\n", &format!("2_{uuid}"))
            .await;
        self.tcp.write_all(b"COMPLETE\n").await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(PATIENCE, self.tcp.read(&mut buf)).await;
        assert_eq!(read.expect("a close in time").unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mathsvc_serves_normal_clients_while_1000_drip_a_request() {
    guarded("mathsvc", async {
        let server =
            reference_impl::mathsvc::server::spawn(reference_impl::mathsvc::server::ServerConfig {
                max_connections: CAP,
                // Longer than the pause between two dripped bytes, so that the bytes join into
                // one token instead of each being a token of its own.
                quiet: Duration::from_secs(1),
                idle_timeout: HOLD,
                ..Default::default()
            })
            .await
            .unwrap();
        let addr = server.addr();
        // A name, then a word count whose 1,000 bytes of text never all arrive.
        let request = format!("Slow\nFILE\n1000\n{}", "word ".repeat(200));
        let drippers = Drippers::start(addr, request.as_bytes()).await;
        let before = drippers.dripped();

        let mut clients = Vec::new();
        for i in 0..NORMAL {
            clients.push(MathConn::named(addr, &format!("Client{i}")).await);
        }
        assert_refused("mathsvc", addr).await;
        let mut flows = JoinSet::new();
        for client in clients {
            flows.spawn(client.flow());
        }
        while let Some(flow) = flows.join_next().await {
            flow.unwrap();
        }
        report_overlap("mathsvc", before, &drippers);
        drippers.finish("mathsvc").await;
    })
    .await;
}
