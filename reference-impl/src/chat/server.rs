//! The chat server: plain TCP, one task per connection reading and one writing, a shared
//! hub of users, the game and file transfers, and a second port for the file transfers'
//! data channel ([`super::transfer`]). The protocol decisions are listed in [`super`].
//!
//! ```text
//! accept -> over max_connections? close at once
//!        -> WELCOME; then loop { read; cut lines; answer each; timers: PING, PONG deadline }
//!
//! every message to a client goes through its bounded queue (max_queue lines), written by
//! the connection's writer task; a client whose queue is full, or whose writes stall for
//! write_timeout, is disconnected (it does not read), so nobody's memory grows for it;
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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
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
/// Bytes the writer joins into one write when lines queue up.
const MAX_WRITE: usize = 64 * 1024;

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
    pub(crate) fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
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
    let (tx, rx) = mpsc::channel::<Line>(settings.max_queue);
    let kill = Arc::new(Notify::new());
    let id = shared.hub().connect(tx.clone(), kill.clone());
    let registration = Registration {
        shared: shared.clone(),
        id,
    };
    let writer = tokio::spawn(write_loop(write, rx, kill.clone(), settings.write_timeout));
    debug!(%peer, id, "connected");
    let now = Instant::now();
    let mut connection = Connection {
        id,
        shared: shared.clone(),
        decoder: LineDecoder::with_max_line(settings.max_line),
        tx,
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
    let end = connection.serve(&read, &kill).await;
    debug!(%peer, id, "connection ends: {end:?}");
    drop(registration);
    drop(connection);
    drop(read);
    if end == End::Dropped {
        writer.abort();
    } else {
        // The writer ends once the queue is drained: every sender is gone now.
        let _ = tokio::time::timeout(settings.write_timeout, writer).await;
    }
}

/// A connection's entry in the hub, forgotten when dropped: however the connection's task
/// ends, by a panic too, its user leaves and the hub lets go of its queue's sender (so the
/// writer finishes and the socket closes).
struct Registration {
    shared: Arc<Shared>,
    id: ConnId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.hub().disconnect(self.id);
    }
}

/// Writes queued lines, joining those that wait into one write, until every sender is gone;
/// then sends FIN. A failed or stalled write wakes the reader with `kill`.
async fn write_loop(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Line>,
    kill: Arc<Notify>,
    write_timeout: Duration,
) {
    let mut buf = Vec::new();
    while let Some(line) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&line);
        while buf.len() < MAX_WRITE {
            match rx.try_recv() {
                Ok(line) => buf.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(write_timeout, write.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!("write failed: {e}");
                kill.notify_one();
                return;
            }
            Err(_) => {
                debug!("write stalled for {write_timeout:?}: dropping the client");
                kill.notify_one();
                return;
            }
        }
        if buf.capacity() > MAX_WRITE * 2 {
            buf = Vec::new();
        }
    }
    let _ = tokio::time::timeout(write_timeout, write.shutdown()).await;
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
    /// Own sender: replies go through the same queue as everything else for this client.
    tx: mpsc::Sender<Line>,
    /// Lines read and not served yet (at most one read's worth).
    lines: VecDeque<Result<Vec<u8>, LineError>>,
    next_ping: Option<Instant>,
    ping_pending: bool,
    pong_deadline: Option<Instant>,
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
        let line = self.settings().encode(message);
        !matches!(
            self.tx.try_send(line),
            Err(mpsc::error::TrySendError::Full(_))
        )
    }

    async fn serve(&mut self, read: &OwnedReadHalf, kill: &Notify) -> End {
        let mut stop = self.shared.stop.clone();
        // Lines are served one at a time, each once the client's queue has room for the
        // replies one line can cause: a client that sends and does not read is slowed down
        // (its writes stall, then it is dropped), never buffered for.
        let room = OWN_REPLY_ROOM.min(self.settings().max_queue);
        loop {
            if *stop.borrow_and_update() {
                return End::Shutdown;
            }
            let tx = self.tx.clone();
            let has_lines = !self.lines.is_empty();
            tokio::select! {
                biased;
                _ = stop.changed() => return End::Shutdown,
                () = kill.notified() => return End::Dropped,
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
                permit = tx.reserve_many(room), if has_lines => {
                    drop(permit);
                    if let Next::End(end) = self.next_line() {
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
        let effect = self.shared.hub().handle(self.id, message, now);
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
