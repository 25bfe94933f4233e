//! The chat server: plain TCP, one task per connection reading and one writing, a shared
//! hub of users, the game and file transfers, and a second port for the file transfers'
//! data channel ([`super::transfer`]). The protocol decisions are listed in [`super`].
//!
//! ```text
//! accept -> over max_connections? close at once
//!        -> WELCOME; then loop { read; cut lines; answer each; timers: PING, PONG deadline }
//!
//! every message to a client goes through its bounded queue (max_queue lines): whoever
//! queues into an empty queue writes it out at once without blocking (after the hub's lock
//! is released), and only what the socket does not take is left to the connection's writer
//! task; a client whose queue is full, or whose writes stall for write_timeout, is
//! disconnected (it does not read), so nobody's memory grows for it;
//! a client's own next line is served only once its queue has room for the replies
//!
//! a line over max_line       DSCN {"reason":7001}, close
//! no PONG in pong_timeout    DSCN {"reason":7000}, close
//! BYE                        BYE_RESP {"status":"OK"}, close
//! EOF, reset, overflow       close
//! shutdown                   stop accepting; each connection writes what is queued, closes
//! (a logged-in client that goes, any way, is announced to the others with LEFT)
//! ```
//!
//! Under [`Sabotage`] (hidden, off by default) a `LOGIN` with a non-ASCII username makes its
//! connection's task panic; the hub forgets the connection however its task ends.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::{
    ClientMessage, Dialect, LineDecoder, LineError, MAX_LINE, MIN_MAX_LINE, ServerMessage, code,
};
use super::hub::{ConnId, Effect, Hub};
use super::sabotage::NON_ASCII_NAME_PANIC;
use super::transfer;

#[doc(hidden)]
pub use super::fault::{Fault, Faults};
#[doc(hidden)]
pub use super::sabotage::Sabotage;

/// The version the default `WELCOME` names.
pub const DEFAULT_VERSION: &str = "1.5";
/// Default time between two `PING`s, and from the login to the first.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Default time a client has to answer a `PING`.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(3);
/// Default length of a game's join window.
pub const DEFAULT_JOIN_WINDOW: Duration = Duration::from_secs(10);
/// Default time a game runs before the results are sent.
pub const DEFAULT_GAME_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Default largest file size a transfer may declare.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;
/// Default time both sides of an accepted transfer have to attach to the data channel (and
/// the longest pause of a relay).
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a data connection naming an unknown transfer waits for it to appear (the
/// downloader may connect before the server has read its `FILE_TRANSFER_RESPONSE`).
pub const DEFAULT_ATTACH_GRACE: Duration = Duration::from_secs(1);
/// Default cap on simultaneous connections (control and data, each).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default number of lines that may wait for a slow client.
pub const DEFAULT_MAX_QUEUE: usize = 256;
/// Default cap on transfers accepted and not finished.
pub const DEFAULT_MAX_TRANSFERS: usize = 64;
/// Default time a write may take before the connection is given up.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shut-down server waits for its connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A pause after a failed `accept` (for instance, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes one read takes from a socket.
const READ_CHUNK: usize = 4096;
/// Queue slots a line waits for before it is served: the most replies one line causes to
/// its own client.
const OWN_REPLY_ROOM: usize = 4;
/// Bytes joined into one write when lines queue up.
const MAX_WRITE: usize = 64 * 1024;
/// Lines joined into one write when lines queue up.
const MAX_WRITE_LINES: usize = 64;
/// Lines of one client served before what they queued is written out. A line queues at
/// most one line for each other client, so a quarter of `max_queue` at most (see
/// [`Connection::next_lines`]) never fills the queue of a client that reads.
const MAX_LINES_PER_FLUSH: usize = 32;

/// Configuration of a chat server. `Default` follows the spec.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The version `WELCOME` names: `Welcome to the server <version>`.
    pub version: String,
    /// Send `JOINED` to the others when a user logs in (the teachers' server does not).
    pub joined: bool,
    /// Header names and the order of a line's checks.
    pub dialect: Dialect,
    /// Longest line, line end not counted; at least [`MIN_MAX_LINE`].
    pub max_line: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub join_window: Duration,
    pub game_time_limit: Duration,
    /// The number to guess; `None` picks one in 1..=50 per game.
    pub secret: Option<u8>,
    /// Largest `size` a file transfer may declare (10000 above it).
    pub max_file_size: u64,
    pub transfer_timeout: Duration,
    pub attach_grace: Duration,
    /// Address of the data channel for [`run`]; `None`: the control port + 1, same IP.
    pub data_listen: Option<SocketAddr>,
    /// Simultaneous connections on each port; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// Lines that may wait for one client before it is disconnected.
    pub max_queue: usize,
    /// Transfers accepted and not finished.
    pub max_transfers: usize,
    pub write_timeout: Duration,
    #[doc(hidden)]
    pub faults: Faults,
    /// Deliberate misbehaviour no scenario looks for (a panic on a non-ASCII username); off
    /// by default, safe in-process.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            version: DEFAULT_VERSION.to_owned(),
            joined: true,
            dialect: Dialect::default(),
            max_line: MAX_LINE,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            join_window: DEFAULT_JOIN_WINDOW,
            game_time_limit: DEFAULT_GAME_TIME_LIMIT,
            secret: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            transfer_timeout: DEFAULT_TRANSFER_TIMEOUT,
            attach_grace: DEFAULT_ATTACH_GRACE,
            data_listen: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_queue: DEFAULT_MAX_QUEUE,
            max_transfers: DEFAULT_MAX_TRANSFERS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            faults: Faults::NONE,
            sabotage: Sabotage::NONE,
        }
    }
}

/// A configuration the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("the line limit {0} is below the spec's minimum of {MIN_MAX_LINE} bytes")]
    MaxLineTooSmall(usize),
    #[error("the secret {0} is outside 1..=50")]
    SecretOutOfRange(u8),
    #[error("{0} must be more than zero")]
    Zero(&'static str),
}

impl ServerConfig {
    /// Checks the limits: `max_line` at least 1024, a fixed secret in 1..=50, non-zero
    /// timers, queue and connection caps.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_line < MIN_MAX_LINE {
            return Err(ConfigError::MaxLineTooSmall(self.max_line));
        }
        if let Some(secret) = self.secret
            && !(1..=50).contains(&secret)
        {
            return Err(ConfigError::SecretOutOfRange(secret));
        }
        for (value, name) in [
            (self.ping_interval, "the ping interval"),
            (self.pong_timeout, "the pong timeout"),
            (self.transfer_timeout, "the transfer timeout"),
            (self.write_timeout, "the write timeout"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.max_queue == 0 {
            return Err(ConfigError::Zero("the queue limit"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("the connection limit"));
        }
        Ok(())
    }
}

/// What the running server needs from the configuration, faults applied.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) welcome: String,
    pub(crate) joined: bool,
    pub(crate) dialect: Dialect,
    pub(crate) max_line: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) join_window: Duration,
    pub(crate) game_time_limit: Duration,
    pub(crate) secret: Option<u8>,
    pub(crate) max_file_size: u64,
    pub(crate) transfer_timeout: Duration,
    pub(crate) attach_grace: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_queue: usize,
    pub(crate) max_transfers: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) faults: Faults,
    pub(crate) sabotage: Sabotage,
}

impl Settings {
    fn new(config: ServerConfig) -> Self {
        let faults = config.faults;
        let welcome = if faults.has(Fault::WelcomeWithoutVersion) {
            "Welcome to the server".to_owned()
        } else {
            format!("Welcome to the server {}", config.version)
        };
        let ping_interval = if faults.has(Fault::WrongPingInterval) {
            config.ping_interval.mul_f64(0.8)
        } else {
            config.ping_interval
        };
        Self {
            welcome,
            joined: config.joined,
            dialect: config.dialect,
            max_line: config.max_line,
            ping_interval,
            pong_timeout: config.pong_timeout,
            join_window: config.join_window,
            game_time_limit: config.game_time_limit,
            secret: config.secret,
            max_file_size: config.max_file_size,
            transfer_timeout: config.transfer_timeout,
            attach_grace: config.attach_grace,
            max_connections: config.max_connections.min(Semaphore::MAX_PERMITS),
            max_queue: config.max_queue,
            max_transfers: config.max_transfers,
            write_timeout: config.write_timeout,
            faults,
            sabotage: config.sabotage,
        }
    }

    /// A message's line, ready to queue.
    pub(crate) fn encode(&self, message: &ServerMessage) -> Line {
        let mut out = Vec::new();
        self.dialect.encode_server(message, &mut out);
        if self.faults.has(Fault::CodesAsStrings)
            && let Some(code) = message.error_code()
        {
            let text = String::from_utf8_lossy(&out)
                .replace(&format!("\"code\":{code}"), &format!("\"code\":\"{code}\""))
                .replace(
                    &format!("\"reason\":{code}"),
                    &format!("\"reason\":\"{code}\""),
                );
            out = text.into_bytes();
        }
        out.into()
    }
}

/// One encoded line, shared by every queue it goes to.
pub(crate) type Line = Arc<[u8]>;

/// What every task of a server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    hub: Mutex<Hub>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Shared {
    /// The hub, locked. The lines it queues into empty queues are written out when the
    /// guard is dropped, after the lock is released.
    pub(crate) fn hub(&self) -> HubGuard<'_> {
        HubGuard {
            hub: Some(self.hub.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }
}

/// The locked hub; see [`Shared::hub`].
pub(crate) struct HubGuard<'a> {
    /// `None` only while dropping.
    hub: Option<MutexGuard<'a, Hub>>,
}

impl Deref for HubGuard<'_> {
    type Target = Hub;

    fn deref(&self) -> &Hub {
        self.hub
            .as_deref()
            .unwrap_or_else(|| unreachable!("the hub is only taken on drop"))
    }
}

impl DerefMut for HubGuard<'_> {
    fn deref_mut(&mut self) -> &mut Hub {
        self.hub
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("the hub is only taken on drop"))
    }
}

impl HubGuard<'_> {
    /// Leaves the queues made non-empty so far to the caller, who flushes them later; they
    /// wait for that (others queueing behind take it that someone writes).
    pub(crate) fn defer_flush(&mut self, into: &mut Vec<Arc<Outbox>>) {
        into.append(&mut self.take_flush());
    }
}

impl Drop for HubGuard<'_> {
    fn drop(&mut self) {
        let Some(mut hub) = self.hub.take() else {
            return;
        };
        let flush = hub.take_flush();
        // The writes are system calls: nobody waits for the hub while they run. Every line
        // is already in its queue, in the hub's order, so the order holds whoever writes.
        drop(hub);
        for outbox in flush {
            outbox.flush();
        }
    }
}

/// What [`Outbox::push`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The queue was empty: the caller has to [`Outbox::flush`] it.
    First,
    /// Queued behind others, which someone is already writing.
    Queued,
    /// Not queued: the queue is full (the client is told to go), or the client is going.
    Refused,
}

/// The lines waiting for one client, and the socket they go to.
///
/// A line is pushed under the hub's lock (or by the connection itself); the one who pushed
/// into an empty queue then writes the queue out with non-blocking writes, so a client that
/// reads costs one system call per line and no task wake-up. What the socket does not take
/// at once is left to the connection's writer task, which waits until the socket is
/// writable. Every write happens under the queue's lock from the front of the queue, so a
/// client gets its lines in the order they were queued, whoever writes them.
#[derive(Debug)]
pub(crate) struct Outbox {
    write: OwnedWriteHalf,
    queue: Mutex<Queue>,
    max_queue: usize,
    /// Wakes the writer task: a write would block, or the connection ended.
    writer: Notify,
    /// Wakes the connection waiting for room in the queue.
    room: Notify,
    /// Wakes the connection to end it: its queue overflowed or a write failed.
    kill: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    /// Lines not completely written, oldest first.
    lines: VecDeque<Line>,
    /// Bytes of the first line already written.
    written: usize,
    /// A write would block: the writer task writes the rest once the socket takes more.
    blocked: bool,
    /// No more lines come: the writer writes what is left, then finishes.
    closed: bool,
    /// The queue overflowed or a write failed: nothing more is queued or written.
    dead: bool,
    /// The connection waits for room.
    wants_room: bool,
}

/// What the writer task does next.
enum WriterStep {
    /// Nothing to write: wait to be woken.
    Sleep,
    /// Wait until the socket is writable, then write.
    AwaitWritable,
    /// Write what is queued (the connection ended; anyone else may have stopped writing).
    Write,
    /// Finish.
    Done,
}

impl Outbox {
    fn new(write: OwnedWriteHalf, max_queue: usize) -> Self {
        Self {
            write,
            queue: Mutex::new(Queue::default()),
            max_queue,
            writer: Notify::new(),
            room: Notify::new(),
            kill: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a line. A full queue refuses it and tells the connection to end.
    pub(crate) fn push(&self, line: Line) -> Pushed {
        let mut queue = self.queue();
        if queue.dead || queue.closed {
            return Pushed::Refused;
        }
        if queue.lines.len() >= self.max_queue {
            queue.dead = true;
            drop(queue);
            debug!("a client's queue is full: disconnecting it");
            self.kill.notify_one();
            return Pushed::Refused;
        }
        // Lines already queued are being written by whoever queued the first of them, or
        // by the writer task: they take this one along.
        let first = queue.lines.is_empty() && !queue.blocked;
        queue.lines.push_back(line);
        if first { Pushed::First } else { Pushed::Queued }
    }

    /// Writes what the socket takes without waiting; the rest is left to the writer task.
    pub(crate) fn flush(&self) {
        let mut queue = self.queue();
        if !queue.blocked {
            self.write_queued(&mut queue);
        }
    }

    /// Queues a line and writes it out if it is first; `false` if it was refused.
    fn send(&self, line: Line) -> bool {
        match self.push(line) {
            Pushed::First => {
                self.flush();
                true
            }
            Pushed::Queued => true,
            Pushed::Refused => false,
        }
    }

    /// Writes queued lines until none is left or the socket would block; returns whether
    /// any byte was written. Joins waiting lines into one write.
    fn write_queued(&self, queue: &mut Queue) -> bool {
        let mut progress = false;
        while !queue.lines.is_empty() && !queue.dead {
            let (written, bytes) = self.try_write(queue);
            match written {
                Ok(n) if n > 0 || bytes == 0 => {
                    progress |= n > 0;
                    queue.consume(n);
                }
                Ok(_) => {
                    self.fail(queue, "write failed: the socket takes no more bytes");
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    queue.blocked = true;
                    self.writer.notify_one();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.fail(queue, &format!("write failed: {e}")),
            }
        }
        if progress && queue.wants_room {
            queue.wants_room = false;
            self.room.notify_one();
        }
        progress
    }

    /// One non-blocking write of the queued bytes (as many lines as one write takes); the
    /// result and the bytes offered.
    fn try_write(&self, queue: &Queue) -> (std::io::Result<usize>, usize) {
        let mut lines = queue.lines.iter();
        let first = lines
            .next()
            .and_then(|line| line.get(queue.written..))
            .unwrap_or_default();
        if queue.lines.len() == 1 {
            // The usual case: `send` is cheaper than `writev`.
            return (self.write.try_write(first), first.len());
        }
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_LINES];
        slices[0] = IoSlice::new(first);
        let mut count = 1;
        let mut bytes = first.len();
        for line in lines {
            if count == MAX_WRITE_LINES || bytes >= MAX_WRITE {
                break;
            }
            slices[count] = IoSlice::new(line);
            count += 1;
            bytes += line.len();
        }
        (self.write.try_write_vectored(&slices[..count]), bytes)
    }

    fn fail(&self, queue: &mut Queue, why: &str) {
        debug!("{why}");
        queue.dead = true;
        self.kill.notify_one();
    }

    /// Waits until `wanted` more lines fit in the queue (or the client is going anyway).
    async fn room(&self, wanted: usize) {
        loop {
            let notified = self.room.notified();
            {
                let mut queue = self.queue();
                if queue.dead || self.max_queue.saturating_sub(queue.lines.len()) >= wanted {
                    return;
                }
                queue.wants_room = true;
            }
            notified.await;
        }
    }

    /// Whether `wanted` more lines fit in the queue now.
    fn has_room(&self, wanted: usize) -> bool {
        self.max_queue.saturating_sub(self.queue().lines.len()) >= wanted
    }

    /// No more lines come: the writer task writes what is left and finishes.
    fn close(&self) {
        self.queue().closed = true;
        self.writer.notify_one();
    }

    /// Nothing more is written.
    fn abandon(&self) {
        self.queue().dead = true;
    }

    fn writer_step(&self) -> WriterStep {
        let queue = self.queue();
        if queue.dead || (queue.closed && queue.lines.is_empty()) {
            WriterStep::Done
        } else if queue.blocked {
            WriterStep::AwaitWritable
        } else if queue.closed {
            WriterStep::Write
        } else {
            WriterStep::Sleep
        }
    }
}

impl Queue {
    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        while let Some(front) = self.lines.front() {
            let rest = front.len().saturating_sub(self.written);
            if n < rest {
                self.written += n;
                return;
            }
            n -= rest;
            self.lines.pop_front();
            self.written = 0;
        }
    }
}

/// Serves chat clients on `listener` and the file transfers' data channel on
/// `config.data_listen` (default: the control port + 1) until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    config.validate().map_err(invalid_input)?;
    let data_addr = match config.data_listen {
        Some(addr) => addr,
        None => {
            let addr = listener.local_addr()?;
            SocketAddr::new(addr.ip(), addr.port().checked_add(1).unwrap_or(0))
        }
    };
    let data_listener = TcpListener::bind(data_addr).await?;
    run_with_data(listener, data_listener, config, shutdown).await
}

fn invalid_input(e: ConfigError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

/// As [`run`], with the data channel on `data_listener`.
pub async fn run_with_data(
    listener: TcpListener,
    data_listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    config.validate().map_err(invalid_input)?;
    let settings = Arc::new(Settings::new(config));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        hub: Mutex::new(Hub::new(settings.clone())),
        settings,
        stop: stop_rx,
    });
    let data = tokio::spawn(transfer::serve_data(data_listener, shared.clone()));
    let result = serve(listener, shared, shutdown, stop_tx).await;
    let _ = data.await;
    result
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
    stop_tx: watch::Sender<bool>,
) -> std::io::Result<()> {
    let settings = shared.settings.clone();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    warn!("a chat connection handler failed: {e}");
                }
            }
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
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
                let shared = shared.clone();
                connections.spawn(async move {
                    handle(shared, tcp, peer).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!("shutting down: closing {open} chat connection(s)");
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
    data_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server on `127.0.0.1`, both ports free ones (or the data channel on
/// `config.data_listen` if given). Dropping the returned handle stops the server too.
pub async fn spawn(config: ServerConfig) -> std::io::Result<RunningServer> {
    config.validate().map_err(invalid_input)?;
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let data_listener = match config.data_listen {
        Some(addr) => TcpListener::bind(addr).await?,
        None => TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?,
    };
    let addr = listener.local_addr()?;
    let data_addr = data_listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run_with_data(listener, data_listener, config, async move {
        // A dropped sender stops the server as well.
        let _ = stopped.await;
    }));
    Ok(RunningServer {
        addr,
        data_addr,
        stop: Some(stop),
        handle,
    })
}

impl RunningServer {
    /// The address of the chat (control) port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the file transfers' data channel.
    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    /// Stops accepting, closes every connection after what is queued for it, and waits
    /// until the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("chat server stopped with an error: {e}"),
            Err(e) => warn!("chat server stopped abnormally: {e}"),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// EOF or a read error.
    Closed,
    /// `BYE`.
    Bye,
    /// `DSCN` sent (pong timeout, long line).
    Disconnected,
    /// Its queue overflowed or a write failed: it is not reading.
    Dropped,
    /// The server is shutting down.
    Shutdown,
}

/// Serves one connection until it ends, then settles its state.
async fn handle(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let settings = shared.settings.clone();
    let (read, write) = tcp.into_split();
    let outbox = Arc::new(Outbox::new(write, settings.max_queue));
    let id = shared.hub().connect(outbox.clone());
    let registration = Registration {
        shared: shared.clone(),
        id,
    };
    let writer = tokio::spawn(write_loop(outbox.clone(), settings.write_timeout));
    debug!(%peer, id, "connected");
    let now = Instant::now();
    let mut connection = Connection {
        id,
        shared: shared.clone(),
        decoder: LineDecoder::with_max_line(settings.max_line),
        outbox: outbox.clone(),
        unflushed: Vec::new(),
        lines: VecDeque::new(),
        next_ping: settings
            .faults
            .has(Fault::PingFromConnect)
            .then(|| now + settings.ping_interval),
        ping_pending: false,
        pong_deadline: None,
    };
    connection.send(&ServerMessage::Welcome {
        msg: settings.welcome.clone(),
    });
    let end = connection.serve(&read).await;
    debug!(%peer, id, "connection ends: {end:?}");
    if end == End::Dropped {
        outbox.abandon();
    }
    drop(registration);
    // Closes the outbox: the writer writes what is left and finishes.
    drop(connection);
    drop(read);
    if end == End::Dropped {
        writer.abort();
    } else {
        let _ = tokio::time::timeout(settings.write_timeout, writer).await;
    }
    // The last holder of the outbox drops the write half, which sends FIN; that is this
    // task, unless a hub user is still flushing its lines.
    drop(outbox);
}

/// A connection's entry in the hub, forgotten when dropped: however the connection's task
/// ends, by a panic too, its user leaves and the hub lets go of its outbox (so the writer
/// finishes and the socket closes).
struct Registration {
    shared: Arc<Shared>,
    id: ConnId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.hub().disconnect(self.id);
    }
}

/// Writes what the socket did not take at once, whenever it takes more, until the
/// connection ended and its queue is empty. A stall of `write_timeout` (lines wait and not
/// a byte goes out) or a failed write wakes the connection to end it.
async fn write_loop(outbox: Arc<Outbox>, write_timeout: Duration) {
    // When the lines waiting now started to wait for the socket.
    let mut stalled_since: Option<Instant> = None;
    loop {
        match outbox.writer_step() {
            WriterStep::Done => return,
            WriterStep::Sleep => {
                stalled_since = None;
                outbox.writer.notified().await;
            }
            WriterStep::AwaitWritable => {
                let deadline = *stalled_since.get_or_insert_with(Instant::now) + write_timeout;
                match tokio::time::timeout_at(deadline, outbox.write.writable()).await {
                    Ok(Ok(())) => {
                        let mut queue = outbox.queue();
                        queue.blocked = false;
                        if outbox.write_queued(&mut queue) {
                            stalled_since = None;
                        }
                    }
                    Ok(Err(e)) => {
                        outbox.fail(&mut outbox.queue(), &format!("write failed: {e}"));
                        return;
                    }
                    Err(_) => {
                        let why =
                            format!("write stalled for {write_timeout:?}: dropping the client");
                        outbox.fail(&mut outbox.queue(), &why);
                        return;
                    }
                }
            }
            WriterStep::Write => {
                let mut queue = outbox.queue();
                outbox.write_queued(&mut queue);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a line leaves the connection to do.
enum Next {
    Continue,
    End(End),
}

struct Connection {
    id: ConnId,
    shared: Arc<Shared>,
    decoder: LineDecoder,
    /// Replies go through the same queue as everything else for this client.
    outbox: Arc<Outbox>,
    /// Queues the hub made non-empty for the lines being served, written out after them.
    unflushed: Vec<Arc<Outbox>>,
    /// Lines read and not served yet (at most one read's worth).
    lines: VecDeque<Result<Vec<u8>, LineError>>,
    next_ping: Option<Instant>,
    ping_pending: bool,
    pong_deadline: Option<Instant>,
}

impl Drop for Connection {
    /// However the connection ends, by a panic too, nothing more is queued for its client
    /// (the hub let go of it first): the writer writes what is left and finishes.
    fn drop(&mut self) {
        self.flush();
        self.outbox.close();
    }
}

impl Connection {
    fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    fn faults(&self) -> Faults {
        self.shared.settings.faults
    }

    /// Queues a message for this client; `false` if its queue is full (it does not read).
    fn send(&self, message: &ServerMessage) -> bool {
        self.outbox.send(self.settings().encode(message))
    }

    async fn serve(&mut self, read: &OwnedReadHalf) -> End {
        let mut stop = self.shared.stop.clone();
        // Lines are served one at a time, each once the client's queue has room for the
        // replies one line can cause: a client that sends and does not read is slowed down
        // (its writes stall, then it is dropped), never buffered for.
        let room = OWN_REPLY_ROOM.min(self.settings().max_queue);
        loop {
            if *stop.borrow_and_update() {
                return End::Shutdown;
            }
            let outbox = self.outbox.clone();
            let has_lines = !self.lines.is_empty();
            tokio::select! {
                biased;
                _ = stop.changed() => return End::Shutdown,
                () = outbox.kill.notified() => return End::Dropped,
                () = sleep_until(self.pong_deadline) => {
                    debug!(id = self.id, "no PONG in time");
                    self.send(&ServerMessage::Dscn { reason: Some(code::PONG_TIMEOUT) });
                    return End::Disconnected;
                }
                () = sleep_until(self.next_ping) => {
                    if let Next::End(end) = self.ping() {
                        return end;
                    }
                }
                () = outbox.room(room), if has_lines => {
                    let next = self.next_lines(room);
                    self.flush();
                    if let Next::End(end) = next {
                        return end;
                    }
                }
                readable = read.readable(), if !has_lines => {
                    if readable.is_err() {
                        return End::Closed;
                    }
                    if let Next::End(end) = self.read(read) {
                        return end;
                    }
                }
            }
        }
    }

    fn ping(&mut self) -> Next {
        let interval = self.settings().ping_interval;
        let now = Instant::now();
        // A fixed rate from the login: timer lateness does not add up.
        let next = self.next_ping.unwrap_or(now) + interval;
        self.next_ping = Some(if next > now { next } else { now + interval });
        if self.ping_pending {
            return Next::Continue;
        }
        if !self.send(&ServerMessage::Ping) {
            return Next::End(End::Dropped);
        }
        self.ping_pending = true;
        if !self.faults().has(Fault::NoPongTimeout) {
            self.pong_deadline = Some(now + self.settings().pong_timeout);
        }
        Next::Continue
    }

    /// Reads what is there (without waiting) and cuts it into lines.
    fn read(&mut self, read: &OwnedReadHalf) -> Next {
        let mut chunk = [0u8; READ_CHUNK];
        match read.try_read(&mut chunk) {
            Ok(0) => return Next::End(End::Closed),
            Ok(n) => self.decoder.feed(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Continue,
            Err(e) => {
                debug!(id = self.id, "read failed: {e}");
                return Next::End(End::Closed);
            }
        }
        loop {
            match self.decoder.next_line() {
                Ok(None) => return Next::Continue,
                Err(LineError::TooLong { .. }) if self.faults().has(Fault::NoDscnOnLongLine) => {}
                line => self.lines.push_back(line.map(Option::unwrap_or_default)),
            }
        }
    }

    /// Serves the lines read, oldest first, while this client's queue has `room` for the
    /// replies, a few at most. What they queue for others is written out afterwards
    /// ([`Self::flush`]), so lines that came together leave together: one write per client
    /// for all of them.
    fn next_lines(&mut self, room: usize) -> Next {
        let most = MAX_LINES_PER_FLUSH
            .min(self.settings().max_queue / 4)
            .max(1);
        for _ in 0..most {
            if let Next::End(end) = self.next_line() {
                return Next::End(end);
            }
            if self.lines.is_empty() || !self.outbox.has_room(room) {
                break;
            }
        }
        Next::Continue
    }

    /// Writes out the queues the lines served made non-empty.
    fn flush(&mut self) {
        for outbox in self.unflushed.drain(..) {
            outbox.flush();
        }
    }

    /// Serves the oldest line read.
    fn next_line(&mut self) -> Next {
        match self.lines.pop_front() {
            None => Next::Continue,
            Some(Ok(line)) => self.line(&line),
            Some(Err(e)) => {
                debug!(id = self.id, "{e}");
                self.send(&ServerMessage::Dscn {
                    reason: Some(code::LINE_TOO_LONG),
                });
                Next::End(End::Disconnected)
            }
        }
    }

    fn line(&mut self, line: &[u8]) -> Next {
        let message = match self.settings().dialect.decode_client(line) {
            Ok(message) => message,
            Err(e) => {
                debug!(id = self.id, "{e}");
                let reply = match e.reply() {
                    ServerMessage::UnknownCommand
                        if self.faults().has(Fault::UnknownAsParseError) =>
                    {
                        ServerMessage::ParseError
                    }
                    ServerMessage::ParseError if self.faults().has(Fault::ParseAsUnknown) => {
                        ServerMessage::UnknownCommand
                    }
                    reply => reply,
                };
                return self.reply(&reply);
            }
        };
        if let ClientMessage::Login { username } = &message
            && self.settings().sabotage.panic_on_non_ascii_name
            && !username.is_ascii()
        {
            // Before the hub sees the name: nothing is registered, nothing answered.
            panic!("{NON_ASCII_NAME_PANIC}");
        }
        if message == ClientMessage::Pong {
            return self.pong();
        }
        let now = Instant::now();
        let mut hub = self.shared.hub();
        let effect = hub.handle(self.id, message, now);
        hub.defer_flush(&mut self.unflushed);
        drop(hub);
        match effect {
            Effect::None => {}
            Effect::LoggedIn => {
                if !self.faults().has(Fault::PingFromConnect) {
                    self.next_ping = Some(now + self.settings().ping_interval);
                }
            }
            Effect::Bye => {
                if !self.faults().has(Fault::StayOpenAfterBye) {
                    return Next::End(End::Bye);
                }
            }
            Effect::GameStarted(game) => {
                tokio::spawn(super::hub::game_timers(self.shared.clone(), game));
            }
            Effect::TransferAccepted(transfer) => {
                tokio::spawn(transfer::run_transfer(self.shared.clone(), transfer));
            }
        }
        Next::Continue
    }

    fn pong(&mut self) -> Next {
        if self.ping_pending {
            self.ping_pending = false;
            self.pong_deadline = None;
            return Next::Continue;
        }
        if self.faults().has(Fault::NoPongError) {
            return Next::Continue;
        }
        self.reply(&ServerMessage::PongError {
            code: code::PONG_WITHOUT_PING,
        })
    }

    fn reply(&self, message: &ServerMessage) -> Next {
        if self.send(message) {
            Next::Continue
        } else {
            Next::End(End::Dropped)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;

    /// A deadline against hanging, far above what any step takes.
    const PATIENCE: Duration = Duration::from_secs(20);

    fn line(text: &str) -> Line {
        text.as_bytes().into()
    }

    #[test]
    fn consume_drops_written_lines_and_remembers_a_partial_one() {
        let mut queue = Queue::default();
        for text in ["abc\n", "de\n", "fghi\n"] {
            queue.lines.push_back(line(text));
        }
        queue.consume(2);
        assert_eq!((queue.lines.len(), queue.written), (3, 2));
        queue.consume(4);
        assert_eq!((queue.lines.len(), queue.written), (2, 2));
        queue.consume(6);
        assert!(queue.lines.is_empty());
        assert_eq!(queue.written, 0);
    }

    /// Logs in; returns the connection past `LOGIN_RESP`.
    async fn login(addr: SocketAddr, name: &str) -> BufReader<TcpStream> {
        let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
        let request = format!("LOGIN {{\"username\":\"{name}\"}}\n");
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        for _ in 0..2 {
            text.clear();
            stream.read_line(&mut text).await.unwrap();
        }
        assert_eq!(text, "LOGIN_RESP {\"status\":\"OK\"}\n");
        stream
    }

    /// Far more than the socket buffers hold goes to a client that reads nothing meanwhile:
    /// the lines wait in its queue, partly written lines are finished by the writer task,
    /// and every line arrives whole and in order once the client reads.
    #[tokio::test]
    async fn lines_keep_their_order_when_the_socket_is_full() {
        const COUNT: usize = 10_000;
        let server = spawn(ServerConfig {
            joined: false,
            ping_interval: Duration::from_secs(3600),
            max_queue: COUNT + 16,
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let mut bob = login(server.addr(), "bob").await;
        let alice = login(server.addr(), "alice").await;
        let (alice_read, mut alice_write) = alice.into_inner().into_split();
        // Lines of 950 bytes or so, under the 1024-byte limit.
        let padding = "x".repeat(900);
        let sending = tokio::spawn(async move {
            for i in 0..COUNT {
                let request = format!("BROADCAST_REQ {{\"message\":\"{i} {padding}\"}}\n");
                alice_write.write_all(request.as_bytes()).await.unwrap();
            }
            alice_write
        });
        // Every BROADCAST_RESP: the server has queued every broadcast for bob.
        let mut alice_read = BufReader::new(alice_read);
        let mut text = String::new();
        tokio::time::timeout(PATIENCE, async {
            for _ in 0..COUNT {
                text.clear();
                alice_read.read_line(&mut text).await.unwrap();
                assert_eq!(text, "BROADCAST_RESP {\"status\":\"OK\"}\n");
            }
        })
        .await
        .expect("alice's answers");
        let _alice_write = sending.await.unwrap();
        tokio::time::timeout(PATIENCE, async {
            for i in 0..COUNT {
                text.clear();
                bob.read_line(&mut text).await.unwrap();
                let expected = format!(
                    "BROADCAST {{\"username\":\"alice\",\"message\":\"{i} {}\"}}\n",
                    "x".repeat(900)
                );
                assert_eq!(text, expected, "line {i}");
            }
        })
        .await
        .expect("bob's broadcasts");
        server.shutdown().await;
    }
}
