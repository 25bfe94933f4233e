//! Targets that misbehave on purpose, each listening on a loopback port: silent, flooding,
//! resetting, dripping, not speaking TLS or garbling it, answering on the wrong connection.
//! Shared by the hostile test battery and the benchmark of the harness's memory against it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest a hostile connection lives; a target dropped earlier ends it earlier.
const LIFETIME: Duration = Duration::from_secs(30);

/// A hostile target listening on a loopback port. Dropping it stops the target and every
/// connection it holds.
pub struct Target {
    pub addr: SocketAddr,
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

/// Accepts, then neither reads nor writes: the TLS handshake never completes.
pub async fn silent() -> Target {
    serve(|tcp| async move {
        tokio::time::sleep(LIFETIME).await;
        drop(tcp);
    })
    .await
}

/// Completes the TLS handshake, then reads and never replies.
pub async fn never_replies() -> Target {
    serve(|tcp| async move {
        if let Some(mut tls) = tls(tcp).await {
            drain(&mut tls).await;
        }
    })
    .await
}

/// Answers the first request with `junk` lines without end (about 500 MB at most, or until
/// the harness goes away).
pub async fn floods() -> Target {
    serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let lines = "junk\n".repeat(1000);
        for _ in 0..100_000 {
            if tls.write_all(lines.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// Answers the first request with lines of half a megabyte without end (about 4 GB at most,
/// or until the harness goes away), counting the bytes it manages to write into `written`.
/// Each line is within the default receive limit: only a bound on what the harness queues
/// keeps it from holding them all while no step reads them.
pub async fn floods_long_lines(written: Arc<AtomicUsize>) -> Target {
    serve(move |tcp| {
        let written = written.clone();
        async move {
            let Some(mut tls) = tls(tcp).await else {
                return;
            };
            read_some(&mut tls).await;
            let mut line = vec![b'y'; 512 * 1024];
            line[512 * 1024 - 1] = b'\n';
            for _ in 0..8192 {
                if tls.write_all(&line).await.is_err() {
                    return;
                }
                written.fetch_add(line.len(), Ordering::Relaxed);
            }
        }
    })
    .await
}

/// Sends a line of `len` bytes with no line end, then keeps the connection open.
pub async fn endless_line(len: usize) -> Target {
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

/// Sends `reply` after the first request, then resets the connection (RST, not FIN).
pub async fn resets_after(reply: &'static [u8]) -> Target {
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

/// Closes every connection as soon as it is accepted.
pub async fn closes_at_accept() -> Target {
    serve(|tcp| async move { drop(tcp) }).await
}

/// Lets the client's hello arrive unread, then resets the connection.
pub async fn resets_in_handshake() -> Target {
    serve(|tcp| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        #[allow(deprecated)]
        let _ = tcp.set_linger(Some(Duration::ZERO));
        drop(tcp);
    })
    .await
}

/// Completes the TLS handshake, then closes cleanly.
pub async fn closes_after_handshake() -> Target {
    serve(|tcp| async move {
        if let Some(mut tls) = tls(tcp).await {
            let _ = tls.shutdown().await;
        }
    })
    .await
}

/// Answers the first request with `text` one byte at a time, 100 ms apart.
pub async fn drips(text: &'static [u8]) -> Target {
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

/// Speaks plain TCP: a line of text where a TLS handshake is expected.
pub async fn plain_tcp() -> Target {
    serve(|mut tcp| async move {
        let _ = tcp.write_all(b"hello\n").await;
        drain(&mut tcp).await;
    })
    .await
}

/// Answers the first request with `reply`, then keeps the connection open.
pub async fn replies_once(reply: &'static [u8]) -> Target {
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

/// Answers the first request with half a line, then keeps the connection open.
pub async fn stops_mid_message() -> Target {
    serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        let _ = tls.write_all(b"GET bl").await;
        let _ = tls.flush().await;
        drain(&mut tls).await;
    })
    .await
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

/// Answers the client hello with a handshake record (0x16) whose content is no handshake
/// message.
pub async fn tls_garbage_handshake() -> Target {
    serve(|mut tcp| async move {
        read_some(&mut tcp).await;
        let _ = tcp.write_all(&garbage_record(0x16)).await;
        drain(&mut tcp).await;
    })
    .await
}

/// Answers the client hello with a record that starts a 4096-byte ServerHello (0x02) and
/// holds 60 bytes of it.
pub async fn tls_short_handshake() -> Target {
    serve(|mut tcp| async move {
        read_some(&mut tcp).await;
        let mut record = garbage_record(0x16);
        record[5..9].copy_from_slice(&[0x02, 0x00, 0x10, 0x00]);
        let _ = tcp.write_all(&record).await;
        drain(&mut tcp).await;
    })
    .await
}

/// Completes the TLS handshake, then answers the first request with an application-data
/// record (0x17) that does not decrypt, written on the TCP stream under the TLS layer.
pub async fn tls_corrupt_record() -> Target {
    serve(|tcp| async move {
        let Some(mut tls) = tls(tcp).await else {
            return;
        };
        read_some(&mut tls).await;
        // Once the request is surely sent.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tls.get_mut().0.write_all(&garbage_record(0x17)).await;
        drain(&mut tls).await;
    })
    .await
}

/// The writing half of the connection a KV server answers on.
type Answering = Arc<tokio::sync::Mutex<Option<WriteHalf<TlsStream<TcpStream>>>>>;

/// Steps that catch [`answers_the_latest_connection`]: two sessions, and a request on the
/// first one whose reply goes to the second.
pub const TWO_SESSIONS: &str = r#"
  - A -> S: CONNECT alice
  - S -> A: "CONNECT: OK"
  - B -> S: CONNECT bob
  - S -> B: "CONNECT: OK"
  - A -> S: GET colour
  - S -> A: GET blue
"#;

/// A KV server that keeps its client in one global variable: each connection it accepts
/// replaces the one before, so every reply goes to the connection opened last, whichever
/// connection the request came on.
pub async fn answers_the_latest_connection() -> Target {
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
