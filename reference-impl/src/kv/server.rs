//! The key-value server: TLS over TCP ([`run`], [`spawn`]) or the RSA variant's key exchange
//! and encrypted blocks ([`run_rsa`], [`spawn_rsa`]); one handler per connection, a shared
//! [`Store`]. Both transports serve the same commands and rules.
//!
//! ```text
//! accept -> over max_connections? close at once
//!        -> TLS handshake | RSA key exchange (handshake_timeout)
//!        -> loop { read one TLS record | one RSA block | the clear hash bytes;
//!                  decode; answer each complete request; flush }
//!
//! CONNECT (not logged in)   PBKDF2 on a blocking thread; CONNECT: OK | CONNECT: ERROR
//!                           (after CONNECT: ERROR the connection stays open, logged out)
//! PUT / GET / DELETE        answered from the session's data
//! DISCONNECT                DISCONNECT: OK, session and data removed, connection closed
//! EOF, reset, TLS error     connection closed, the session keeps its data
//! anything not allowed      connection dropped without a reply, the session's data removed:
//!                           malformed or unknown message, one over max_message, a command
//!                           before CONNECT, a CONNECT while logged in; over RSA also a bad
//!                           or wrong-size key, a message before the key, a block that does
//!                           not decrypt
//! shutdown                  stop accepting; each connection finishes the request it is
//!                           serving, then closes (TLS close_notify)
//! ```
//!
//! Under [`Sabotage`] (hidden, off by default) the server misbehaves: it exits on the first
//! `PUT` or on a line over 1,000 bytes, freezes for good after the first login, sends a wrong
//! CRC for values with a space, or keeps the session of a connection dropped for junk
//! logged in for good.
//!
//! The course dialect ([`Dialect::Course`]) reads one message per TLS record and writes each
//! reply, `GET <value>\n<crc>` included, as one record without a line end.
//!
//! Over RSA a message is one block and a reply must fit in one (53 bytes): a `PUT` whose
//! value its `GET` reply could not carry answers `PUT: ERROR` (the spec's "cannot be
//! completed for any reason"), and a `GET` reply that does not fit answers `GET: ERROR`.
//! The password hash is read in the clear after the `CONNECT` block, as real clients send
//! it, unless [`RsaOptions::hash_in_clear`] is off.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use super::auth::{HASH_LEN, TEST_SALT};
use super::codec::{ClientMessage, Command, DecodeError, MAX_MESSAGE, Reply, ServerDecoder};
use super::rsa::{MAX_PLAINTEXT, RsaError, is_message};
use super::rsa_stream::{RsaStream, StreamError};
use super::store::{
    Accounts, ConnId, DEFAULT_MAX_ACCOUNTS, DEFAULT_MAX_KEYS, DEFAULT_MAX_SESSIONS, LoginError,
    SessionRef, Store, StoreConfig,
};

pub use super::codec::Dialect;
#[doc(hidden)]
pub use super::fault::{Fault, Faults};
#[doc(hidden)]
pub use super::sabotage::Sabotage;
use super::sabotage::{
    CRASH_EXIT_CODE, CRASH_ON_PUT_MESSAGE, LONG_LINE, LONG_LINE_MESSAGE, LineMeter,
};

/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time a client has to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a reply may take to be written before the connection is given up.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shut-down server waits for its connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A pause after a failed `accept` (for instance, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Configuration of a key-value server. `Default` follows the spec.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Framing: the spec's lines or the course implementation's one message per write.
    pub dialect: Dialect,
    /// Largest message in bytes, line end included.
    pub max_message: usize,
    /// PBKDF2 salt of verified accounts.
    pub salt: Vec<u8>,
    /// Who may log in.
    pub accounts: Accounts,
    /// Simultaneous connections; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Stored sessions; beyond it a `CONNECT` of a new id answers `CONNECT: ERROR`.
    pub max_sessions: usize,
    /// Keys per session; beyond it a `PUT` of a new key answers `PUT: ERROR`.
    pub max_keys: usize,
    /// Password hashes remembered for first-use accounts.
    pub max_accounts: usize,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a reply may take to be written.
    pub write_timeout: Duration,
    #[doc(hidden)]
    pub faults: Faults,
    /// Deliberate misbehaviour (exit on `PUT` or on a long line, freeze after login, wrong
    /// CRCs, leaked sessions); off by default. `exit_on_put` and `exit_on_long_line` end the
    /// calling process: never set them in-process.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            dialect: Dialect::Spec,
            max_message: MAX_MESSAGE,
            salt: TEST_SALT.to_vec(),
            accounts: Accounts::FirstUse,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_keys: DEFAULT_MAX_KEYS,
            max_accounts: DEFAULT_MAX_ACCOUNTS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            faults: Faults::NONE,
            sabotage: Sabotage::NONE,
        }
    }
}

impl ServerConfig {
    fn split(self) -> (Settings, Store) {
        let store = Store::new(StoreConfig {
            accounts: self.accounts,
            salt: self.salt,
            max_sessions: self.max_sessions,
            max_keys: self.max_keys,
            max_accounts: self.max_accounts,
            faults: self.faults,
        });
        let settings = Settings {
            dialect: self.dialect,
            reply_dialect: if self.faults.has(Fault::ReplyWithoutLineEnd) {
                Dialect::Course
            } else {
                self.dialect
            },
            max_message: if self.faults.has(Fault::NoSizeLimit) {
                usize::MAX
            } else if self.faults.has(Fault::SizeLimitOffByOne) {
                self.max_message.saturating_sub(1)
            } else {
                self.max_message
            },
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            write_timeout: self.write_timeout,
            faults: self.faults,
            sabotage: self.sabotage,
            freeze: watch::channel(false).0,
        };
        (settings, store)
    }
}

/// How the RSA server reads what follows a `CONNECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsaOptions {
    /// The 32-byte password hash arrives unencrypted after the `CONNECT` block, as real
    /// clients send it (the default); off: it arrives as a block of its own.
    pub hash_in_clear: bool,
}

impl Default for RsaOptions {
    fn default() -> Self {
        Self {
            hash_in_clear: true,
        }
    }
}

/// How connections are secured.
#[derive(Clone)]
enum Security {
    Tls(TlsAcceptor),
    Rsa(RsaOptions),
}

/// What each connection needs from the configuration.
#[derive(Debug)]
struct Settings {
    dialect: Dialect,
    /// Framing of replies: `dialect`, unless a fault strips the line ends.
    reply_dialect: Dialect,
    max_message: usize,
    max_connections: usize,
    handshake_timeout: Duration,
    write_timeout: Duration,
    faults: Faults,
    sabotage: Sabotage,
    /// Whether the server is frozen (only ever under `sabotage.freeze_after_login`).
    freeze: watch::Sender<bool>,
}

impl Settings {
    /// Whether the server has frozen: nothing may make progress any more.
    fn frozen(&self) -> bool {
        *self.freeze.borrow()
    }

    /// Freezes the server for good (`sabotage.freeze_after_login`).
    fn freeze(&self) {
        if !self.freeze.send_replace(true) {
            warn!("freeze-after-login: the server freezes now (deliberate)");
        }
    }

    /// Completes once the server has frozen; never without `sabotage.freeze_after_login`.
    async fn until_frozen(&self) {
        if !self.sabotage.freeze_after_login {
            return std::future::pending().await;
        }
        let mut frozen = self.freeze.subscribe();
        if frozen.wait_for(|frozen| *frozen).await.is_err() {
            // Unreachable: `self` holds the sender.
            std::future::pending::<()>().await;
        }
    }
}

/// Completes when the server shuts down (or is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves key-value clients on `listener` until `shutdown` completes, then stops accepting,
/// lets every connection finish the request it is serving, and returns.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(
        listener,
        Security::Tls(TlsAcceptor::from(tls)),
        config,
        shutdown,
    )
    .await
}

/// [`run`] for the RSA variant: a key exchange instead of the TLS handshake, then every
/// message an RSA block.
pub async fn run_rsa(
    listener: TcpListener,
    rsa: RsaOptions,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(listener, Security::Rsa(rsa), config, shutdown).await
}

async fn run_with(
    listener: TcpListener,
    security: Security,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (settings, store) = config.split();
    let (settings, store) = (Arc::new(settings), Arc::new(store));
    serve(listener, security, settings, store, shutdown).await
}

async fn serve(
    listener: TcpListener,
    security: Security,
    settings: Arc<Settings>,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(
        settings.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let freezer = settings.clone();
    let until_frozen = freezer.until_frozen();
    tokio::pin!(until_frozen);
    // A frozen server accepts nothing more; the listener stays open, so connections pile up
    // in the backlog, their handshakes never answered.
    let mut frozen = false;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = &mut until_frozen, if !frozen => frozen = true,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    warn!("a connection handler failed: {e}");
                }
            }
            accepted = listener.accept(), if !frozen => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Replies are small and awaited one by one: do not let Nagle hold them.
                let _ = tcp.set_nodelay(true);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(
                        %peer,
                        "refusing connection: {} connections are open (the limit)",
                        settings.max_connections
                    );
                    drop(tcp);
                    continue;
                };
                let incoming = Incoming {
                    security: security.clone(),
                    settings: settings.clone(),
                    store: store.clone(),
                    peer,
                };
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    incoming.handle(tcp, stop).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!("shutting down: waiting for {open} connection(s) to finish");
    }
    // Receivers see the change, or the closed channel if every one is gone already.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            "{} connection(s) did not finish within {DRAIN_TIMEOUT:?}; closing them",
            connections.len()
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// A server running in the background on the current runtime, as tests and the harness use
/// it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server on `127.0.0.1` on a free port. Dropping the returned handle stops the
/// server too, without waiting for it.
pub async fn spawn(
    config: ServerConfig,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<RunningServer> {
    spawn_with(config, Security::Tls(TlsAcceptor::from(tls))).await
}

/// [`spawn`] for the RSA variant.
pub async fn spawn_rsa(config: ServerConfig, rsa: RsaOptions) -> std::io::Result<RunningServer> {
    spawn_with(config, Security::Rsa(rsa)).await
}

async fn spawn_with(config: ServerConfig, security: Security) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (settings, store) = config.split();
    let store = Arc::new(store);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(serve(
        listener,
        security,
        Arc::new(settings),
        store.clone(),
        async move {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        },
    ));
    Ok(RunningServer {
        addr,
        store,
        stop: Some(stop),
        handle,
    })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's sessions and accounts, for inspection.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops accepting, lets open connections finish their current request, and waits
    /// until the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("kv server stopped with an error: {e}"),
            Err(e) => warn!("kv server stopped abnormally: {e}"),
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed, reset, or broke TLS: the session keeps its data.
    Closed,
    /// The client sent `DISCONNECT`.
    Disconnected,
    /// The client broke the protocol: dropped, its data removed.
    Violation(Violation),
    /// The server is shutting down.
    Shutdown,
    /// The server froze (`Sabotage::freeze_after_login`): no reply, no close until shutdown.
    Frozen,
}

/// A message the protocol does not allow.
#[derive(Debug, thiserror::Error)]
enum Violation {
    #[error("malformed message")]
    Malformed(#[source] DecodeError),
    #[error("{0} before a successful CONNECT")]
    NotLoggedIn(Command),
    #[error("CONNECT while logged in")]
    ConnectWhileLoggedIn,
    /// Only under `Fault::PartialHashRefused`.
    #[error("the hash did not arrive in one read")]
    PartialHash,
    #[error("{0}")]
    Rsa(#[source] RsaError),
}

/// What a request leaves the connection to do.
enum Next {
    Continue,
    /// Continue; the request was a successful login.
    LoggedIn,
    Close,
}

/// Everything a connection handler needs before the handshake.
struct Incoming {
    security: Security,
    settings: Arc<Settings>,
    store: Arc<Store>,
    peer: SocketAddr,
}

impl Incoming {
    async fn handle(self, tcp: TcpStream, mut stop: watch::Receiver<bool>) {
        let peer = self.peer;
        let settings = self.settings.clone();
        let handshake = tokio::time::timeout(
            settings.handshake_timeout,
            secure(&self.security, &settings, tcp),
        );
        tokio::pin!(handshake);
        // A shutdown does not wait for handshakes: no request is in progress yet.
        let handshake = tokio::select! {
            biased;
            _ = stop.changed() => return,
            // Frozen: hold the connection, never poll the handshake again, until shutdown.
            () = self.settings.until_frozen() => {
                until_stopped(&mut stop).await;
                return;
            }
            handshake = &mut handshake => handshake,
        };
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(%peer, "{} failed: {e}", self.security.handshake());
                return;
            }
            Err(_) => {
                debug!(%peer, "{} timed out", self.security.handshake());
                return;
            }
        };
        debug!(%peer, "connected");
        let mut connection = Connection {
            conn: self.store.connection(),
            decoder: ServerDecoder::with_max_message(
                self.settings.dialect,
                self.settings.max_message,
            ),
            line_meter: self
                .settings
                .sabotage
                .exit_on_long_line
                .then(|| LineMeter::new(self.settings.dialect)),
            login: None,
            out: Vec::new(),
            settings: self.settings,
            store: self.store,
            stream,
        };
        let end = connection.serve(&mut stop).await;
        if let End::Frozen = end {
            // Nothing is answered or closed until the server shuts down.
            until_stopped(&mut stop).await;
        }
        debug!(%peer, "connection ends: {end:?}");
        connection.finish(end).await;
    }
}

impl Security {
    /// The handshake's name, for logs.
    fn handshake(&self) -> &'static str {
        match self {
            Security::Tls(_) => "TLS handshake",
            Security::Rsa(_) => "RSA key exchange",
        }
    }
}

/// The TLS handshake or the RSA key exchange.
async fn secure(
    security: &Security,
    settings: &Settings,
    tcp: TcpStream,
) -> Result<Stream, Box<dyn std::error::Error + Send + Sync>> {
    match security {
        Security::Tls(acceptor) => Ok(Stream::Tls(Box::new(acceptor.accept(tcp).await?))),
        Security::Rsa(options) => {
            // `Fault::RsaSlowKeyRefusal` holds a second handle of the socket, so that a
            // refused key does not close the connection before the handshake time is up.
            let held = if settings.faults.has(Fault::RsaSlowKeyRefusal) {
                let std = tcp.into_std()?;
                let held = std.try_clone()?;
                (TcpStream::from_std(std)?, Some(held))
            } else {
                (tcp, None)
            };
            let (tcp, held) = held;
            let accepted = if settings.faults.has(Fault::RsaAnyKeySize) {
                RsaStream::accept_any_size(tcp, settings.handshake_timeout).await
            } else {
                RsaStream::accept(tcp, settings.handshake_timeout).await
            };
            match accepted {
                Ok(stream) => Ok(Stream::Rsa {
                    stream: Box::new(stream),
                    options: *options,
                }),
                Err(StreamError::Rsa(RsaError::BadPem(_))) if held.is_some() => {
                    // Refused only when the handshake time is up (the caller's timeout).
                    std::future::pending::<()>().await;
                    unreachable!("a pending future never completes")
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// A connection's secured stream.
enum Stream {
    Tls(Box<TlsStream<TcpStream>>),
    Rsa {
        stream: Box<RsaStream>,
        options: RsaOptions,
    },
}

/// Why a read brought nothing.
enum ReadError {
    /// The connection failed or ended: the session keeps its data.
    Closed(String),
    /// The peer broke the RSA layer: a violation.
    Rsa(RsaError),
}

impl Stream {
    /// Reads one unit (a TLS record, an RSA block's plaintext, or clear hash bytes) into
    /// `decoder`, measured by `meter` if there is one; `Ok(false)` at the end of the stream.
    /// Cancel-safe: bytes read stay buffered.
    async fn read(
        &mut self,
        decoder: &mut ServerDecoder,
        meter: &mut Option<LineMeter>,
    ) -> Result<bool, ReadError> {
        let wanted = decoder.hash_wanted();
        let line_end = decoder.dialect() == Dialect::Spec;
        let mut feed = |bytes: &[u8]| {
            if let Some(meter) = meter
                && meter.longest(bytes) > LONG_LINE
            {
                die(LONG_LINE_MESSAGE);
            }
            decoder.feed(bytes);
        };
        let closed = |e: &dyn std::fmt::Display| ReadError::Closed(e.to_string());
        match self {
            Stream::Tls(stream) => {
                // One TLS record per read: the course dialect frames messages by record.
                let bytes = stream.fill_buf().await.map_err(|e| closed(&e))?;
                if bytes.is_empty() {
                    return Ok(false);
                }
                let n = bytes.len();
                feed(bytes);
                stream.consume(n);
                Ok(true)
            }
            Stream::Rsa { stream, options } => {
                let plaintext = if wanted > 0 && options.hash_in_clear {
                    stream.read_clear(wanted).await.map_err(|e| closed(&e))?
                } else {
                    match stream.read_block().await {
                        // One block, one message (the awaited hash aside). Refused at
                        // once: junk without a line feed would otherwise wait for one.
                        Ok(Some(text)) if wanted == 0 && !is_message(&text, line_end) => {
                            return Err(ReadError::Rsa(RsaError::NotAMessage { line_end }));
                        }
                        Ok(block) => block,
                        Err(StreamError::Rsa(e)) => return Err(ReadError::Rsa(e)),
                        Err(e) => return Err(closed(&e)),
                    }
                };
                let Some(plaintext) = plaintext else {
                    return Ok(false);
                };
                feed(&plaintext);
                Ok(true)
            }
        }
    }

    /// The most one reply may hold, if the transport limits it.
    fn max_reply(&self) -> Option<usize> {
        match self {
            Stream::Tls(_) => None,
            Stream::Rsa { .. } => Some(MAX_PLAINTEXT),
        }
    }

    /// Writes one reply as one TLS record, or one RSA block.
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Stream::Rsa { stream, .. } => stream.send(bytes).await.map_err(|e| match e {
                StreamError::Io(e) => e,
                other => std::io::Error::other(other),
            }),
        }
    }

    /// TLS close_notify then FIN; FIN over RSA.
    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tls(stream) => stream.shutdown().await,
            Stream::Rsa { stream, .. } => stream.shutdown().await,
        }
    }
}

/// A connection after its handshake.
struct Connection {
    stream: Stream,
    settings: Arc<Settings>,
    store: Arc<Store>,
    conn: ConnId,
    decoder: ServerDecoder,
    /// Measures incoming lines; only under `Sabotage::exit_on_long_line`.
    line_meter: Option<LineMeter>,
    /// The session this connection is logged in to.
    login: Option<SessionRef>,
    /// Reply bytes being assembled.
    out: Vec<u8>,
}

impl Connection {
    fn faults(&self) -> Faults {
        self.settings.faults
    }

    async fn serve(&mut self, stop: &mut watch::Receiver<bool>) -> End {
        let settings = self.settings.clone();
        loop {
            if *stop.borrow_and_update() {
                return End::Shutdown;
            }
            if settings.frozen() {
                return End::Frozen;
            }
            let read = tokio::select! {
                biased;
                _ = stop.changed() => return End::Shutdown,
                () = settings.until_frozen() => return End::Frozen,
                read = self.stream.read(&mut self.decoder, &mut self.line_meter) => read,
            };
            match read {
                Ok(true) => {}
                Ok(false) => return End::Closed,
                Err(ReadError::Closed(e)) => {
                    debug!("read failed: {e}");
                    return End::Closed;
                }
                Err(ReadError::Rsa(e)) if self.faults().has(Fault::RsaSkipUndecryptable) => {
                    debug!("skipping a block: {e}");
                    continue;
                }
                Err(ReadError::Rsa(e)) => return End::Violation(Violation::Rsa(e)),
            }
            loop {
                let message = match self.decoder.next_message() {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(e) if self.faults().has(Fault::NoDropOnJunk) => {
                        debug!("ignoring malformed message: {e}");
                        continue;
                    }
                    Err(e) => return End::Violation(Violation::Malformed(e)),
                };
                if settings.frozen() {
                    return End::Frozen;
                }
                let next = self.request(message).await;
                // A frozen server sends nothing more: the reply is never flushed.
                if settings.frozen() {
                    return End::Frozen;
                }
                let logged_in = match next {
                    Ok(Next::Continue) => false,
                    Ok(Next::LoggedIn) => true,
                    Ok(Next::Close) => return End::Disconnected,
                    Err(violation) => return End::Violation(violation),
                };
                // Frozen before the login's reply goes out: once the client has read
                // `CONNECT: OK`, no other connection gets anything more.
                let freeze = logged_in && settings.sabotage.freeze_after_login;
                if freeze {
                    settings.freeze();
                }
                if let Err(e) = self.flush().await {
                    debug!("write failed: {e}");
                    return End::Closed;
                }
                if freeze {
                    return End::Frozen;
                }
            }
            // Refuse half a request that can never be allowed, rather than wait for the rest.
            if let Some(pending) = self.decoder.pending()
                && let Err(violation) = self.allowed(pending)
            {
                return End::Violation(violation);
            }
            if self.faults().has(Fault::PartialHashRefused)
                && self.decoder.pending() == Some(Command::Connect)
                && self.decoder.buffered() > 0
                && !settings.frozen()
            {
                self.reply(&Reply::ConnectError);
                let _ = self.flush().await;
                return End::Violation(Violation::PartialHash);
            }
        }
    }

    /// Whether `command` is allowed in the connection's login state.
    fn allowed(&self, command: Command) -> Result<(), Violation> {
        match (command, &self.login) {
            (Command::Connect, None) => Ok(()),
            (Command::Connect, Some(_)) => Err(Violation::ConnectWhileLoggedIn),
            (_, Some(_)) => Ok(()),
            (_, None) if self.faults().has(Fault::AllowCommandsBeforeConnect) => Ok(()),
            (command, None) => Err(Violation::NotLoggedIn(command)),
        }
    }

    /// Serves one request, leaving its reply in `self.out`.
    async fn request(&mut self, message: ClientMessage) -> Result<Next, Violation> {
        self.allowed(message.command())?;
        if self.settings.sabotage.exit_on_put
            && self.login.is_some()
            && matches!(message, ClientMessage::Put { .. })
        {
            die(CRASH_ON_PUT_MESSAGE);
        }
        if let ClientMessage::Connect { id, hash } = message {
            return Ok(self.connect(id, hash).await);
        }
        let login = match self.login.take() {
            Some(login) => login,
            // Only reachable under Fault::AllowCommandsBeforeConnect.
            None => self.store.open_unchecked("", self.conn),
        };
        let reply = match message {
            // Served above.
            ClientMessage::Connect { .. } => Reply::ConnectError,
            ClientMessage::Put { value, .. } if !self.fits_get_ok(&value) => {
                debug!("PUT refused: a GET reply could not carry its value in one RSA block");
                Reply::PutError
            }
            ClientMessage::Put { key, value } => match self.store.put(&login, key, value) {
                Ok(()) => Reply::PutOk,
                Err(e) => {
                    debug!("PUT refused: {e}");
                    Reply::PutError
                }
            },
            ClientMessage::Get { key } => match self.store.get(&login, &key) {
                Some(value) if !self.fits_get_ok(&value) => {
                    debug!("GET refused: the reply does not fit in one RSA block");
                    Reply::GetError
                }
                Some(value) => self.get_ok(value),
                None if self.faults().has(Fault::GetMissingReturnsEmpty) => Reply::get_ok(""),
                None => Reply::GetError,
            },
            ClientMessage::Delete { key } => match self.store.delete(&login, &key) {
                Ok(false) if self.faults().has(Fault::DeleteMissingErrors) => Reply::DeleteError,
                Ok(_) => Reply::DeleteOk,
                Err(e) => {
                    debug!("DELETE refused: {e}");
                    Reply::DeleteError
                }
            },
            ClientMessage::Disconnect => {
                self.store.disconnect(login);
                self.reply(&Reply::DisconnectOk);
                if self.faults().has(Fault::NoCloseAfterDisconnect) {
                    return Ok(Next::Continue);
                }
                return Ok(Next::Close);
            }
        };
        self.login = Some(login);
        self.reply(&reply);
        Ok(Next::Continue)
    }

    async fn connect(&mut self, id: String, hash: [u8; HASH_LEN]) -> Next {
        let store = self.store.clone();
        let conn = self.conn;
        let login_id = id.clone();
        // PBKDF2 takes tens of milliseconds: keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || store.login(&login_id, &hash, conn)).await;
        let reply = match result {
            Ok(Ok(login)) => {
                debug!(id = ?id, "logged in");
                self.login = Some(login);
                self.reply(&Reply::ConnectOk);
                return Next::LoggedIn;
            }
            Ok(Err(e)) => {
                debug!(id = ?id, "login refused: {e}");
                if self.faults().has(Fault::UsableAfterConnectError)
                    && matches!(e, LoginError::WrongPassword | LoginError::UnknownUser)
                {
                    self.login = Some(self.store.open_unchecked(&id, conn));
                }
                Reply::ConnectError
            }
            Err(e) => {
                warn!(id = ?id, "the password check could not run: {e}");
                Reply::ConnectError
            }
        };
        self.reply(&reply);
        Next::Continue
    }

    /// `GET <value>` with the value's CRC-32; one more under
    /// `Sabotage::wrong_crc_with_spaces` if the value contains a space.
    fn get_ok(&self, value: String) -> Reply {
        match Reply::get_ok(value) {
            Reply::GetOk { value, crc }
                if self.settings.sabotage.wrong_crc_with_spaces && value.contains(' ') =>
            {
                Reply::GetOk {
                    value,
                    crc: crc.wrapping_add(1),
                }
            }
            reply => reply,
        }
    }

    /// Whether the transport can carry the reply `GET <value>` (over RSA: one block).
    /// Always under `Fault::RsaNoReplyCap`, whose replies then fail to be written.
    fn fits_get_ok(&self, value: &str) -> bool {
        // Checked before the reply is built: over TLS, the common case, it costs nothing.
        let Some(max) = self.stream.max_reply() else {
            return true;
        };
        if self.faults().has(Fault::RsaNoReplyCap) {
            return true;
        }
        let mut bytes = Vec::new();
        Reply::get_ok(value).encode(self.settings.reply_dialect, &mut bytes);
        bytes.len() <= max
    }

    /// Appends a reply to the output, as the reply dialect frames it.
    fn reply(&mut self, reply: &Reply) {
        let dialect = self.settings.reply_dialect;
        match reply {
            Reply::GetOk { value, .. } if self.faults().has(Fault::GetWithoutCrc) => {
                let line_end = if dialect == Dialect::Spec { "\n" } else { "" };
                self.out
                    .extend_from_slice(format!("GET {value}{line_end}").as_bytes());
            }
            Reply::GetOk { value, crc } if self.faults().has(Fault::SignedCrc) => {
                let line_end = if dialect == Dialect::Spec { "\n" } else { "" };
                let signed = i32::from_ne_bytes(crc.to_ne_bytes());
                self.out
                    .extend_from_slice(format!("GET {value}\n{signed}{line_end}").as_bytes());
            }
            Reply::GetOk { value, crc } if self.faults().has(Fault::WrongCrc) => Reply::GetOk {
                value: value.clone(),
                crc: crc.wrapping_add(1),
            }
            .encode(dialect, &mut self.out),
            reply => reply.encode(dialect, &mut self.out),
        }
    }

    /// Writes the reply of one request as one write (one TLS record, one RSA block) and
    /// flushes.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = self.stream.write(&self.out);
        let result = tokio::time::timeout(self.settings.write_timeout, write)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        self.out.clear();
        result
    }

    /// Settles the session as `end` requires, then closes the connection.
    async fn finish(mut self, end: End) {
        let login = self.login.take();
        match (&end, login) {
            (_, None) => {}
            (End::Violation(Violation::Malformed(e)), Some(login))
                if self.settings.sabotage.leak_session_after_junk =>
            {
                // `Sabotage::leak_session_after_junk`: neither released nor discarded, the
                // session stays active for good.
                warn!(
                    id = ?login.id(),
                    "dropping the connection ({e}) and leaking its session (deliberate)"
                );
                drop(login);
            }
            (End::Violation(v), Some(login)) => {
                debug!(id = ?login.id(), "dropping the connection: {v}");
                if self.faults().has(Fault::KeepDataAfterDrop) {
                    self.store.release(login);
                } else {
                    self.store.discard(login);
                }
            }
            (End::Closed, Some(login)) if self.faults().has(Fault::DiscardSessionOnClose) => {
                self.store.discard(login);
            }
            // DISCONNECT has already removed the session.
            (End::Closed | End::Disconnected | End::Shutdown | End::Frozen, Some(login)) => {
                self.store.release(login);
            }
        }
        if let End::Frozen = end {
            // The server is shutting down: drop the connection, unanswered.
            return;
        }
        if let End::Disconnected | End::Shutdown = end {
            let _ = self.flush().await;
        }
        // close_notify, then FIN. A peer that does not read may hold this up: bound it.
        let _ = tokio::time::timeout(self.settings.write_timeout, self.stream.shutdown()).await;
    }
}

/// `Sabotage::exit_on_put` and `Sabotage::exit_on_long_line`: writes `message` to stderr and
/// ends the whole process, as a panic in a server without a panic handler would.
fn die(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(CRASH_EXIT_CODE);
}
