//! Byte streams to a target: plain TCP, TLS (rustls), or TCP with the RSA key exchange of
//! `kv-rsa` ([`rsa`]), behind one boxed stream type so the runner never cares which.
//!
//! TCP and TLS are byte streams and nothing more. An `rsa` connection is a TCP stream plus a
//! [`rsa::Cipher`] the runner applies per message (one send = one block; blocks read are
//! decrypted before framing): the layers stay codec -> transport -> runner.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub mod rsa;

pub use self::rsa::{Cipher, KeyOffer};

/// Anything the runner can read and write.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncStream for T {}

/// A connected stream, TCP or TLS.
pub type BoxStream = Box<dyn AsyncStream>;

/// How to reach the target.
#[derive(Clone)]
pub enum Transport {
    Tcp,
    Tls {
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    },
    /// TCP, then the RSA key exchange (as each connection's [`KeyOffer`] says), then one
    /// RSA block per message (`kv-rsa`).
    Rsa,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tcp => f.write_str("Tcp"),
            Transport::Tls { server_name, .. } => {
                write!(f, "Tls({})", server_name.to_str())
            }
            Transport::Rsa => f.write_str("Rsa"),
        }
    }
}

impl Transport {
    /// `tcp`, `tls` or `rsa`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls { .. } => "tls",
            Transport::Rsa => "rsa",
        }
    }
}

/// Why a connection to the target could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve `{addr}`: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connection to {addr} refused: is the server running and listening there?")]
    Refused { addr: String },
    #[error("connecting to {addr} timed out after {}", humantime::format_duration(*.after))]
    ConnectTimeout { addr: String, after: Duration },
    #[error("cannot connect to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        addr: String,
        reason: String,
        help: Option<&'static str>,
        /// The target closed or reset the connection during the handshake.
        closed: bool,
    },
    #[error("TLS handshake with {addr} did not finish within {}: {}", humantime::format_duration(*.after), handshake_stalled(*.received))]
    HandshakeTimeout {
        addr: String,
        after: Duration,
        /// Bytes the target sent during the handshake.
        received: u64,
    },
    #[error(
        "RSA key exchange with {addr} failed: the server closed the connection instead of sending its public key"
    )]
    KeyClosed { addr: String },
    #[error(
        "RSA key exchange with {addr} failed: the server closed the connection after {received} bytes of its public key, before its END line"
    )]
    KeyCut { addr: String, received: usize },
    #[error("RSA key exchange with {addr} failed: {problem}")]
    BadKey { addr: String, problem: String },
    #[error("RSA key exchange with {addr} failed: {}", key_timeout(*.received, *.after))]
    KeyTimeout {
        addr: String,
        after: Duration,
        /// Bytes of the server's key that did arrive.
        received: usize,
    },
    #[error("RSA key exchange with {addr} failed: {}", rsa::describe_io(.source))]
    KeyIo {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the client's RSA key pair: {0}")]
    KeyGeneration(String),
}

fn handshake_stalled(received: u64) -> String {
    match received {
        0 => "the target accepted the connection but did not answer".to_owned(),
        n => format!("the target sent {n} bytes, then stopped before the handshake was complete"),
    }
}

fn key_timeout(received: usize, after: Duration) -> String {
    let after = humantime::format_duration(after);
    match received {
        0 => format!("the server sent no public key within {after}"),
        n => format!("the server sent {n} bytes but no complete public key within {after}"),
    }
}

/// Advice for every failed RSA key exchange.
const KEY_HELP: &str = "on connect the client sends its public key as a PKCS#1 PEM block \
     (-----BEGIN RSA PUBLIC KEY-----), and the server answers with its own 512-bit key \
     in the same form (specs/kv-rsa.md); check that the target speaks kv-rsa on this port";

impl ConnectError {
    /// The target refused, closed or reset the connection (rather than answering wrongly or
    /// not at all): what a server that died looks like.
    pub fn target_gone(&self) -> bool {
        match self {
            ConnectError::Refused { .. }
            | ConnectError::Io { .. }
            | ConnectError::KeyClosed { .. }
            | ConnectError::KeyCut { .. }
            | ConnectError::KeyIo { .. } => true,
            ConnectError::Handshake { closed, .. } => *closed,
            _ => false,
        }
    }

    /// Advice for the person reading the report, where there is some.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            ConnectError::Handshake { help, .. } => *help,
            ConnectError::HandshakeTimeout { received, .. } if *received > 0 => {
                Some("check that the target serves TLS on this port")
            }
            ConnectError::Refused { .. } => Some(
                "start the server first, or leave out --target to use the built-in reference server",
            ),
            ConnectError::KeyClosed { .. }
            | ConnectError::KeyCut { .. }
            | ConnectError::BadKey { .. }
            | ConnectError::KeyTimeout { .. }
            | ConnectError::KeyIo { .. } => Some(KEY_HELP),
            _ => None,
        }
    }
}

/// An open stream and the local address the target sees it come from.
pub struct Connected {
    pub stream: BoxStream,
    pub local: Option<SocketAddr>,
    /// An `rsa` connection after its key exchange: the keys, and what the server sent
    /// after its own key. `None` for TCP, TLS, and `rsa` connections that offered no key or
    /// one of the scenario's own.
    pub cipher: Option<Cipher>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("local", &self.local)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// Opens a stream to `addr` (a `host:port`), doing the TLS handshake or the RSA key
/// exchange (a fresh key) when the transport asks for it. Each phase is bounded by
/// `timeout`.
pub async fn connect(
    addr: &str,
    transport: &Transport,
    timeout: Duration,
) -> Result<Connected, ConnectError> {
    connect_with(addr, transport, timeout, &KeyOffer::Fresh).await
}

/// [`connect`] with the key an `rsa` connection offers; other transports ignore `offer`.
pub async fn connect_with(
    addr: &str,
    transport: &Transport,
    timeout: Duration,
    offer: &KeyOffer,
) -> Result<Connected, ConnectError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ConnectError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .collect();
    let Some(first) = resolved.first().copied() else {
        return Err(ConnectError::Resolve {
            addr: addr.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        });
    };
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(first)).await {
        Err(_) => {
            return Err(ConnectError::ConnectTimeout {
                addr: addr.to_owned(),
                after: timeout,
            });
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused {
                addr: addr.to_owned(),
            });
        }
        Ok(Err(source)) => {
            return Err(ConnectError::Io {
                addr: addr.to_owned(),
                source,
            });
        }
        Ok(Ok(tcp)) => tcp,
    };
    // Small request/response protocols: never wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok();
    let mut cipher = None;
    let stream: BoxStream = match transport {
        Transport::Tcp => Box::new(tcp),
        Transport::Rsa => {
            let mut tcp = tcp;
            match offer {
                KeyOffer::Fresh => cipher = Some(rsa::exchange(&mut tcp, addr, timeout).await?),
                KeyOffer::None => {}
                KeyOffer::Raw(bytes) => rsa::offer_raw(&mut tcp, addr, bytes, timeout).await?,
            }
            Box::new(tcp)
        }
        Transport::Tls {
            config,
            server_name,
        } => {
            let connector = TlsConnector::from(config.clone());
            let tcp = Counted::new(tcp);
            let received = tcp.received.clone();
            match tokio::time::timeout(timeout, connector.connect(server_name.clone(), tcp)).await {
                Err(_) => {
                    return Err(ConnectError::HandshakeTimeout {
                        addr: addr.to_owned(),
                        after: timeout,
                        received: received.load(Ordering::Relaxed),
                    });
                }
                Ok(Err(e)) => return Err(handshake_error(addr, &e)),
                Ok(Ok(tls)) => Box::new(tls),
            }
        }
    };
    Ok(Connected {
        stream,
        local,
        cipher,
    })
}

/// A TCP stream that counts the bytes it reads: a TLS handshake that stalls tells a
/// target that never answered from one whose answer the TLS library is still waiting to
/// complete.
struct Counted {
    tcp: TcpStream,
    received: Arc<AtomicU64>,
}

impl Counted {
    fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            received: Arc::default(),
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = (buf.filled().len() - before) as u64;
            self.received.fetch_add(read, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// What is wrong with a rejected certificate, in words.
fn certificate_problem(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match e {
        E::UnknownIssuer => "it is not signed by a trusted authority (self-signed?)".into(),
        E::BadSignature => {
            "its signature does not verify against the trusted certificates (is --ca the server's own certificate?)".into()
        }
        E::Expired => "it has expired".into(),
        E::NotValidYet => "it is not valid yet".into(),
        E::NotValidForName => "it is not valid for the server name".into(),
        E::Revoked => "it has been revoked".into(),
        E::BadEncoding => "it is not a well-formed certificate".into(),
        // rustls' own text names the times or the names involved.
        other => other.to_string(),
    }
}

/// Turns rustls' error into a sentence a grader can act on.
fn handshake_error(addr: &str, e: &io::Error) -> ConnectError {
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (reason, help) = match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => (
            format!(
                "the server's certificate was rejected: {}",
                certificate_problem(cert)
            ),
            Some(
                "pass --ca FILE with the server's certificate (PEM) to trust it, or --insecure to accept any certificate",
            ),
        ),
        Some(rustls::Error::InvalidMessage(_)) => (
            "the target does not speak TLS (its reply is not a TLS handshake message)".to_owned(),
            Some("check that the target serves TLS on this port"),
        ),
        Some(other) => (other.to_string(), None),
        None if e.kind() == io::ErrorKind::UnexpectedEof => (
            "the target closed the connection during the handshake".to_owned(),
            Some(
                "check that the target serves TLS on this port; a server at its connection limit also closes new connections at once",
            ),
        ),
        None => (e.to_string(), None),
    };
    ConnectError::Handshake {
        addr: addr.to_owned(),
        reason,
        help,
        closed: inner.is_none(),
    }
}
