//! The math server: plain TCP, one task per connection, answers written as soon as a
//! request is complete. The protocol decisions are listed in [`super`].
//!
//! ```text
//! accept -> over max_connections? close at once
//!        -> loop { read; cut tokens; answer each message; a pending token without "\n"
//!                  is complete once nothing has arrived for `quiet` }
//!
//! NAME              -> <uuid>                 36 characters, no line end
//! FIBONACCI n       -> <fib(n)>_<uuid>
//! FACTORIAL n       -> <n!>_<uuid>
//! FILE LEN TEXT     -> <words>_<uuid>
//! COMPLETE          -> close
//! a refusal         -> ERROR <reason>; the connection stays, except for the two that close
//! EOF               the pending token is served, then close
//! idle_timeout      without a byte: close
//! shutdown          stop accepting; each connection finishes the message it is serving
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::codec::{
    Decoder, FibConvention, Limits, Message, answer, client_uuid, factorial, fibonacci, uuid3,
};
#[doc(hidden)]
pub use super::fault::{Fault, Faults};

/// Default time without bytes after which an unterminated token is complete.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(50);
/// Default time a connection may stay silent before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an answer may take to be written before the connection is given up.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a shut-down server waits for its connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A pause after a failed `accept` (for instance, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes one read takes from a socket.
const READ_CHUNK: usize = 4096;
/// Above these `n`, a number is computed on a blocking thread (over 0.1 ms of work in a
/// release build; fib(100,000) takes about 1 ms, 10,000! about 2 ms).
const INLINE_FIBONACCI_N: u64 = 20_000;
const INLINE_FACTORIAL_N: u64 = 2_000;
/// Bytes of a text counted under [`Fault::WordCountFirst1024Bytes`].
const FAULTY_PREFIX: u64 = 1024;

/// Configuration of a math server. `Default` follows the spec and what the course's
/// client needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Which Fibonacci number `n` names.
    pub fib: FibConvention,
    /// Time without bytes after which a token with no `\n` is complete. It must be
    /// shorter than the client's pause between writes.
    pub quiet: Duration,
    /// Time a connection may stay silent (no byte at all) before it is closed.
    pub idle_timeout: Duration,
    /// Time an answer may take to be written.
    pub write_timeout: Duration,
    /// Simultaneous connections; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// Largest `n` and text a client may ask for.
    pub limits: Limits,
    #[doc(hidden)]
    pub faults: Faults,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            fib: FibConvention::ZeroBased,
            quiet: DEFAULT_QUIET,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            limits: Limits::default(),
            faults: Faults::NONE,
        }
    }
}

/// A configuration the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0} must be more than zero")]
    Zero(&'static str),
    #[error("the idle timeout ({idle:?}) must be longer than the quiet time ({quiet:?})")]
    IdleNotOverQuiet { idle: Duration, quiet: Duration },
}

impl ServerConfig {
    /// Checks that the timers and the connection cap are non-zero and that the idle
    /// timeout is longer than the quiet time.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (value, name) in [
            (self.quiet, "the quiet time"),
            (self.idle_timeout, "the idle timeout"),
            (self.write_timeout, "the write timeout"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("the connection limit"));
        }
        if self.idle_timeout <= self.quiet {
            return Err(ConfigError::IdleNotOverQuiet {
                idle: self.idle_timeout,
                quiet: self.quiet,
            });
        }
        Ok(())
    }
}

/// Serves math clients on `listener` until `shutdown` completes, then stops accepting, lets
/// every connection finish the message it is serving, and returns.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    config.validate().map_err(invalid_input)?;
    serve(listener, Arc::new(config), shutdown).await
}

fn invalid_input(e: ConfigError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    warn!("a connection handler failed: {e}");
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(
                        %peer,
                        "refusing connection: {} connections are open (the limit)",
                        config.max_connections
                    );
                    drop(stream);
                    continue;
                };
                let handler = handle(stream, peer, config.clone(), stop_rx.clone());
                if config.faults.has(Fault::SerialClients) {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = handler => {}
                    }
                    drop(permit);
                } else {
                    connections.spawn(async move {
                        handler.await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!("shutting down: waiting for {open} connection(s) to finish");
    }
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
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server on `127.0.0.1` on a free port. Dropping the returned handle stops the
/// server too, without waiting for it.
pub async fn spawn(config: ServerConfig) -> std::io::Result<RunningServer> {
    config.validate().map_err(invalid_input)?;
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(serve(listener, Arc::new(config), async move {
        // A dropped sender stops the server as well.
        let _ = stopped.await;
    }));
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        handle,
    })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open connections finish the message they serve, and waits
    /// until the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("math server stopped with an error: {e}"),
            Err(e) => warn!("math server stopped abnormally: {e}"),
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// EOF, a reset or a failed write.
    Closed,
    /// `COMPLETE`.
    Complete,
    /// A refusal that closes (logged when sent).
    Refused,
    /// Nothing arrived for `idle_timeout`.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// The UUID a connection from `peer` gets.
fn uuid_of(peer: SocketAddr, faults: Faults) -> Uuid {
    if faults.has(Fault::UuidWrongName) {
        uuid3(&peer.ip().to_canonical().to_string())
    } else {
        client_uuid(peer)
    }
}

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::new(config.limits);
    if config.faults.has(Fault::WordCountFirst1024Bytes) {
        decoder.count_only_prefix(FAULTY_PREFIX);
    }
    let mut connection = Connection {
        uuid: uuid_of(peer, config.faults),
        stream,
        peer: peer.ip(),
        decoder,
        config,
    };
    debug!(%peer, uuid = %connection.uuid, "connected");
    let end = connection.serve(stop).await;
    debug!(%peer, "connection ends: {end:?}");
    // FIN. A peer that does not read may hold this up: bound it.
    let _ = tokio::time::timeout(
        connection.config.write_timeout,
        connection.stream.shutdown(),
    )
    .await;
}

/// One client's connection.
struct Connection {
    stream: TcpStream,
    peer: IpAddr,
    uuid: Uuid,
    decoder: Decoder,
    config: Arc<ServerConfig>,
}

impl Connection {
    fn faults(&self) -> Faults {
        self.config.faults
    }

    async fn serve(&mut self, mut stop: watch::Receiver<bool>) -> End {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if let Some(end) = self.answer_all(false, &stop).await {
                return end;
            }
            let pending =
                self.decoder.has_partial_token() && !self.faults().has(Fault::NeedsNewlines);
            let wait = if pending {
                self.config.quiet
            } else {
                self.config.idle_timeout
            };
            let read = tokio::select! {
                biased;
                _ = stop.changed() => return End::Shutdown,
                read = tokio::time::timeout(wait, self.stream.read(&mut chunk)) => read,
            };
            match read {
                Err(_) if pending => {
                    if let Some(end) = self.answer_all(true, &stop).await {
                        return end;
                    }
                }
                Err(_) => return End::Idle,
                Ok(Ok(0)) => {
                    // The peer may close right after its last token: serve it.
                    return self.answer_all(true, &stop).await.unwrap_or(End::Closed);
                }
                Ok(Ok(n)) => self.decoder.feed(&chunk[..n]),
                Ok(Err(e)) => {
                    debug!("read failed: {e}");
                    return End::Closed;
                }
            }
        }
    }

    /// Answers every complete message; `Some` when the connection is to end.
    async fn answer_all(&mut self, quiet: bool, stop: &watch::Receiver<bool>) -> Option<End> {
        while let Some(decoded) = self.decoder.next(quiet) {
            let (reply, closing) = match decoded {
                Ok(Message::Complete) if self.faults().has(Fault::NoCompleteClose) => continue,
                Ok(Message::Complete) => return Some(End::Complete),
                Ok(message) => (self.reply(message).await, None),
                Err(refusal) => {
                    debug!(peer = %self.peer, "refused: {refusal}");
                    (refusal.to_string(), refusal.closes().then_some(refusal))
                }
            };
            if let Err(e) = self.send(reply).await {
                debug!("write failed: {e}");
                return Some(End::Closed);
            }
            if let Some(refusal) = closing {
                debug!(peer = %self.peer, "closing after: {refusal}");
                return Some(End::Refused);
            }
            if *stop.borrow() {
                return Some(End::Shutdown);
            }
        }
        None
    }

    /// The answer to a message other than `COMPLETE`.
    async fn reply(&self, message: Message) -> String {
        let faults = self.faults();
        let fib = self.config.fib;
        let value = match message {
            Message::Name(name) => {
                debug!(peer = %self.peer, name = %name.escape_debug(), "named");
                return self.uuid.to_string();
            }
            Message::Fibonacci(n) => {
                let n = if faults.has(Fault::FibOffByOne) {
                    n.saturating_add(1)
                } else {
                    n
                };
                compute(n > INLINE_FIBONACCI_N, move || {
                    fibonacci(n, fib).to_string()
                })
                .await
            }
            Message::Factorial(n) if faults.has(Fault::FactorialOverflowsU64) => {
                (1..=n).fold(1u64, u64::wrapping_mul).to_string()
            }
            Message::Factorial(n) => {
                compute(n > INLINE_FACTORIAL_N, move || factorial(n).to_string()).await
            }
            Message::WordCount(counter) => {
                let words = if faults.has(Fault::WordCountSplitsOnSpaceOnly) {
                    counter.spaces() + 1
                } else if faults.has(Fault::WordCountCountsSpaces) {
                    counter.spaces()
                } else {
                    counter.words()
                };
                words.to_string()
            }
            // Handled by the caller.
            Message::Complete => String::new(),
        };
        answer(value, &self.uuid)
    }

    /// Writes one answer as one write.
    async fn send(&mut self, mut text: String) -> std::io::Result<()> {
        if self.faults().has(Fault::AnswersWithNewline) {
            text.push('\n');
        }
        tokio::time::timeout(
            self.config.write_timeout,
            self.stream.write_all(text.as_bytes()),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

/// Runs `work` here, or on a blocking thread when it is long.
async fn compute(long: bool, work: impl FnOnce() -> String + Send + 'static) -> String {
    if !long {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(text) => text,
        Err(e) => {
            warn!("a computation failed: {e}");
            "ERROR internal error".to_owned()
        }
    }
}
