//! The packet server: the course's grading server. The flow, the scoring and every status
//! word are in [`super`] and [`super::score`].
//!
//! ```text
//! accept -> over max_connections? close at once
//! read the first packet (timeout)           a bad one: error packet (0 points), close
//! pick key and text; at the same time:
//!   send the encrypted stream               read and grade the reply as it comes
//! record the score (keyword sbmt)
//! send the result packet, FIN, then read and drop what the client still sends for up to
//! `linger` (so that closing with unread bytes does not reset the connection and destroy the
//! result before the client has read it)
//! ```
//!
//! Every connection holds at most one packet of input (10,000 bytes) and the text it was
//! sent (`MAX_TEXT` at most): the reply is compared with the text as it arrives, never
//! stored. A client that stops reading is dropped after `write_timeout`; one that stops
//! writing gets `TIME` after `timeout` of silence (the server's own sending counts as
//! activity, so a slow reader of a long stream is not cut off); no session lasts longer
//! than `session_timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::{
    ChecksumMode, DecodeError, HEADER_LEN, MAX_DATA, MAX_PACKET, Packet, PacketDecoder, Pairing,
};
use super::score::{self, Grader, Hello, Leniency, Registration, Verdict};
use super::session::{self, Rng};
use super::store::ScoreStore;

#[doc(hidden)]
pub use super::fault::{Fault, Faults};

/// Default range of text lengths: every session's text is between 10,000 and 30,000 bytes,
/// so the stream always takes more than one packet.
pub const DEFAULT_TEXT_LEN: RangeInclusive<usize> = 10_000..=30_000;
/// The longest text a server sends.
pub const MAX_TEXT: usize = 1 << 20;
/// Default silence allowed: before the first packet, and between reads of the reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest session.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time one write may take before the client is given up.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time the server reads and drops what the client still sends after the result.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(2);
/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a shut-down server waits for its connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A pause after a failed `accept` (for instance, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes one read takes from a socket.
const READ_CHUNK: usize = 16 * 1024;

/// Configuration of a packet server. `Default` follows the spec: big-endian checksums, a
/// random key and text for every session, scores in memory.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Checksums accepted from clients.
    pub checksum: ChecksumMode,
    /// Pairing of the checksums the server sends; `None`: little-endian if `checksum` is
    /// `Little`, else big-endian.
    pub send_pairing: Option<Pairing>,
    /// Lengths of the random text, picked per session.
    pub text_len: RangeInclusive<usize>,
    /// A fixed text instead of a random one (at most [`MAX_TEXT`] bytes).
    pub text: Option<Vec<u8>>,
    /// A fixed key (4 lowercase letters) instead of a random one.
    pub key: Option<[u8; 4]>,
    /// Seed of the random key, text and packet sizes: every session gets the same ones.
    /// `None`: fresh randomness per session.
    pub seed: Option<u64>,
    /// Most data bytes in one packet of the stream, 1 to 9,984.
    pub max_packet_data: usize,
    /// Silence allowed before the first packet and between reads of the reply.
    pub timeout: Duration,
    /// Longest session, from accept to result.
    pub session_timeout: Duration,
    pub write_timeout: Duration,
    /// How long, after the result, what the client still sends is read and dropped.
    pub linger: Duration,
    /// Simultaneous connections; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// File of the best scores of submissions; `None` keeps them in memory.
    pub scores: Option<PathBuf>,
    #[doc(hidden)]
    pub faults: Faults,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            checksum: ChecksumMode::Big,
            send_pairing: None,
            text_len: DEFAULT_TEXT_LEN,
            text: None,
            key: None,
            seed: None,
            max_packet_data: MAX_DATA,
            timeout: DEFAULT_TIMEOUT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            linger: DEFAULT_LINGER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            scores: None,
            faults: Faults::NONE,
        }
    }
}

/// A configuration the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("the text length range {low}..={high} is empty")]
    EmptyTextRange { low: usize, high: usize },
    #[error("a text of {0} bytes is over the maximum of {MAX_TEXT}")]
    TextTooLong(usize),
    #[error("the key {0:?} is not 4 lowercase letters")]
    BadKey(String),
    #[error("{0} data bytes per packet: give 1 to {MAX_DATA}")]
    MaxPacketData(usize),
    #[error("{0} must be more than zero")]
    Zero(&'static str),
}

impl ServerConfig {
    /// Checks the limits: a non-empty text range up to [`MAX_TEXT`], a key of lowercase
    /// letters, 1 to 9,984 data bytes per packet, non-zero timers and connection cap.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (low, high) = (*self.text_len.start(), *self.text_len.end());
        if low > high {
            return Err(ConfigError::EmptyTextRange { low, high });
        }
        let longest = self.text.as_ref().map_or(high, Vec::len);
        if longest > MAX_TEXT {
            return Err(ConfigError::TextTooLong(longest));
        }
        if let Some(key) = &self.key
            && !score::is_lowercase_word(key)
        {
            return Err(ConfigError::BadKey(key.escape_ascii().to_string()));
        }
        if !(1..=MAX_DATA).contains(&self.max_packet_data) {
            return Err(ConfigError::MaxPacketData(self.max_packet_data));
        }
        for (value, name) in [
            (self.timeout, "the timeout"),
            (self.session_timeout, "the session timeout"),
            (self.write_timeout, "the write timeout"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("the connection limit"));
        }
        Ok(())
    }

    /// The pairing of the checksums the server sends.
    pub fn send_pairing(&self) -> Pairing {
        self.send_pairing
            .unwrap_or_else(|| self.checksum.send_pairing())
    }
}

fn invalid_input(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

/// What the running server needs from the configuration, faults applied.
#[derive(Debug)]
struct Settings {
    config: ServerConfig,
    /// Checksums accepted; `None` accepts any (a fault).
    verify: Option<ChecksumMode>,
    pairing: Pairing,
    leniency: Leniency,
    faults: Faults,
}

impl Settings {
    fn new(config: ServerConfig) -> Self {
        let faults = config.faults;
        Self {
            verify: (!faults.has(Fault::AcceptsBadChecksum)).then_some(config.checksum),
            pairing: config.send_pairing(),
            leniency: Leniency {
                any_keyword: faults.has(Fault::AcceptsWrongKeyword),
                any_length: faults.has(Fault::ScoreIgnoresLength),
            },
            faults,
            config,
        }
    }

    /// Appends a packet as the server sends it.
    fn encode(&self, packet: &Packet, out: &mut Vec<u8>) {
        let start = out.len();
        packet.encode(self.pairing, out);
        if self.faults.has(Fault::WrongChecksumOut) {
            let wrong = packet.compute_checksum(self.pairing).wrapping_add(1);
            out[start + 2..start + 4].copy_from_slice(&wrong.to_be_bytes());
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    scores: Arc<ScoreStore>,
    stop: watch::Receiver<bool>,
}

/// Serves clients on `listener` until `shutdown` completes, with the scores in
/// `config.scores` (or in memory).
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    config.validate().map_err(invalid_input)?;
    let scores = open_scores(&config)?;
    run_with_scores(listener, config, scores, shutdown).await
}

fn open_scores(config: &ServerConfig) -> std::io::Result<Arc<ScoreStore>> {
    Ok(Arc::new(match &config.scores {
        Some(path) => ScoreStore::open(path).map_err(invalid_input)?,
        None => ScoreStore::in_memory(),
    }))
}

/// As [`run`], recording scores in `scores` (`config.scores` is not read).
pub async fn run_with_scores(
    listener: TcpListener,
    config: ServerConfig,
    scores: Arc<ScoreStore>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    config.validate().map_err(invalid_input)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        settings: Settings::new(config),
        scores,
        stop: stop_rx,
    });
    let permits = Arc::new(Semaphore::new(
        shared
            .settings
            .config
            .max_connections
            .min(Semaphore::MAX_PERMITS),
    ));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    warn!("a packet connection handler failed: {e}");
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
                        shared.settings.config.max_connections
                    );
                    drop(tcp);
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    handle(&shared, tcp, peer).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
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
    scores: Arc<ScoreStore>,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server on a free port of `127.0.0.1`. Dropping the returned handle stops the
/// server too.
pub async fn spawn(config: ServerConfig) -> std::io::Result<RunningServer> {
    config.validate().map_err(invalid_input)?;
    let scores = open_scores(&config)?;
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run_with_scores(
        listener,
        config,
        scores.clone(),
        async move {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        },
    ));
    Ok(RunningServer {
        addr,
        scores,
        stop: Some(stop),
        handle,
    })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The scores of submissions, as recorded so far.
    pub fn scores(&self) -> &Arc<ScoreStore> {
        &self.scores
    }

    /// Stops accepting, ends every session (without a result), and waits until the server
    /// has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("packet server stopped with an error: {e}"),
            Err(e) => warn!("packet server stopped abnormally: {e}"),
        }
    }
}

/// When the connection last moved data either way.
#[derive(Debug)]
struct Activity(Mutex<Instant>);

impl Activity {
    fn touch(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the next read brought.
enum Read {
    Packet(Result<Packet, DecodeError>),
    /// Silence for the given time (the idle timeout or the session's).
    Timeout(Duration),
    /// EOF or a read error: `Err` if the stream ended inside a packet.
    Closed(Result<(), DecodeError>),
    /// The server is shutting down.
    Stopped,
}

struct Reader {
    read: OwnedReadHalf,
    decoder: PacketDecoder,
    buf: Vec<u8>,
    stop: watch::Receiver<bool>,
}

impl Reader {
    /// The next packet or decode error, or why none comes.
    async fn next(&mut self, activity: &Activity, idle: Duration, session: &Deadline) -> Read {
        loop {
            match self.decoder.next_packet() {
                Ok(Some(packet)) => return Read::Packet(Ok(packet)),
                Err(e) => return Read::Packet(Err(e)),
                Ok(None) => {}
            }
            if *self.stop.borrow() {
                return Read::Stopped;
            }
            let idle_deadline = activity.last() + idle;
            let (deadline, limit) = if session.at < idle_deadline {
                (session.at, session.length)
            } else {
                (idle_deadline, idle)
            };
            tokio::select! {
                _ = self.stop.changed() => return Read::Stopped,
                () = tokio::time::sleep_until(deadline) => {
                    // The writer may have moved the idle deadline on meanwhile.
                    if limit == idle && activity.last() + idle > Instant::now() {
                        continue;
                    }
                    return Read::Timeout(limit);
                }
                read = self.read.read(&mut self.buf) => match read {
                    Ok(0) => return Read::Closed(self.decoder.finish()),
                    Ok(n) => {
                        self.decoder.feed(&self.buf[..n]);
                        activity.touch();
                    }
                    Err(e) => {
                        debug!("read failed: {e}");
                        return Read::Closed(self.decoder.finish());
                    }
                },
            }
        }
    }
}

impl Reader {
    /// Reads and drops everything until EOF or a read error.
    async fn discard(&mut self) {
        loop {
            match self.read.read(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// The end of a session.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    length: Duration,
}

/// Serves one connection: hello, stream and reply, result.
async fn handle(shared: &Shared, tcp: TcpStream, peer: SocketAddr) {
    let settings = &shared.settings;
    let config = &settings.config;
    let now = Instant::now();
    let session = Deadline {
        at: now + config.session_timeout,
        length: config.session_timeout,
    };
    let activity = Activity(Mutex::new(now));
    let (read, mut write) = tcp.into_split();
    let mut reader = Reader {
        read,
        decoder: PacketDecoder::with_max_packet(settings.verify, MAX_PACKET),
        buf: vec![0; READ_CHUNK],
        stop: shared.stop.clone(),
    };

    let hello = match reader.next(&activity, config.timeout, &session).await {
        Read::Stopped | Read::Closed(Ok(())) => return,
        Read::Closed(Err(e)) => score::check_hello(Err(e)),
        Read::Timeout(after) => Err(score::hello_timed_out(after)),
        Read::Packet(packet) => score::check_hello(packet),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(verdict) => {
            debug!(%peer, status = ?verdict.status, "first packet refused: {}", verdict.message);
            finish(settings, write, reader, &verdict, Registration::TestRun).await;
            return;
        }
    };

    let mut rng = config.seed.map_or_else(Rng::from_entropy, Rng::seeded);
    let key = config.key.unwrap_or_else(|| session::random_key(&mut rng));
    let text = match &config.text {
        Some(text) => text.clone(),
        None => {
            let len = rng.between(*config.text_len.start(), *config.text_len.end());
            session::random_text(&mut rng, len)
        }
    };
    let over_limit = settings
        .faults
        .has(Fault::PacketOverLimit)
        .then_some(MAX_DATA + 1);
    let sizes = session::packet_sizes(
        &mut rng,
        text.len(),
        config.max_packet_data,
        key.len(),
        over_limit,
    );
    let packets = session::encrypt(
        key,
        &text,
        &sizes,
        hello.sid,
        settings.faults.has(Fault::XorOffsetResetsPerPacket),
        settings.faults.has(Fault::LastPacketFlagMissing),
    );
    debug!(
        %peer,
        sid = hello.sid,
        keyword = %hello.keyword.escape_ascii(),
        text = text.len(),
        packets = packets.len(),
        "session starts"
    );
    let mut grader = Grader::new(hello, key, text, settings.leniency);
    // The stream goes out while the reply comes in (a client may answer packet by packet).
    let (sent, verdict) = {
        let writer = send_stream(settings, &mut write, &packets, &activity);
        tokio::pin!(writer);
        let mut sent = None;
        let verdict = {
            let reply = read_reply(
                &mut reader,
                &mut grader,
                config.timeout,
                &session,
                &activity,
            );
            tokio::pin!(reply);
            loop {
                tokio::select! {
                    result = &mut writer, if sent.is_none() => sent = Some(result),
                    verdict = &mut reply => break verdict,
                }
            }
        };
        if verdict.is_none() {
            // Shutting down: no result, no waiting for the client.
            return;
        }
        let sent = match sent {
            Some(sent) => sent,
            // Graded early: what else the client sends is dropped until the stream is out,
            // so that a client blocked in a write does not keep the server blocked in one.
            None => {
                tokio::select! {
                    sent = &mut writer => sent,
                    () = reader.discard() => writer.await,
                }
            }
        };
        (sent, verdict)
    };
    let Some(verdict) = verdict else {
        return;
    };
    let registration = register(&shared.scores, hello, verdict.score).await;
    info!(
        %peer,
        sid = hello.sid,
        keyword = %hello.keyword.escape_ascii(),
        score = verdict.score,
        status = %verdict.status.word().escape_ascii(),
        "{}",
        verdict.message
    );
    if let Err(e) = sent {
        debug!(%peer, "the stream could not be sent: {e}");
        return;
    }
    finish(settings, write, reader, &verdict, registration).await;
}

/// Writes the encrypted stream, one packet per write.
async fn send_stream(
    settings: &Settings,
    write: &mut OwnedWriteHalf,
    packets: &[Packet],
    activity: &Activity,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(MAX_PACKET + 1);
    for packet in packets {
        buf.clear();
        settings.encode(packet, &mut buf);
        write_within(settings.config.write_timeout, write, &buf).await?;
        activity.touch();
    }
    Ok(())
}

async fn write_within(
    limit: Duration,
    write: &mut OwnedWriteHalf,
    bytes: &[u8],
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, write.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("a write stalled for {limit:?}"),
        )),
    }
}

/// Grades the reply as it arrives; `None` if the server is shutting down.
async fn read_reply(
    reader: &mut Reader,
    grader: &mut Grader,
    idle: Duration,
    session: &Deadline,
    activity: &Activity,
) -> Option<Verdict> {
    loop {
        let read = reader.next(activity, idle, session).await;
        // The first packet was exactly a header: what follows is the reply.
        grader.reply_bytes(reader.decoder.fed().saturating_sub(HEADER_LEN as u64));
        match read {
            Read::Stopped => return None,
            Read::Timeout(after) => return Some(grader.timed_out(after)),
            Read::Closed(_) => return Some(grader.closed()),
            Read::Packet(packet) => {
                if let Some(verdict) = grader.packet(packet) {
                    return Some(verdict);
                }
            }
        }
    }
}

/// Records a submission's score.
async fn register(scores: &Arc<ScoreStore>, hello: Hello, score: i32) -> Registration {
    if !hello.is_submission() {
        return Registration::TestRun;
    }
    let scores = scores.clone();
    match tokio::task::spawn_blocking(move || scores.record(hello.sid, score)).await {
        Ok(Ok(_)) => Registration::Registered,
        Ok(Err(e)) => {
            warn!("{e}: {}", e.source_text());
            Registration::Failed
        }
        Err(e) => {
            warn!("recording a score failed: {e}");
            Registration::Failed
        }
    }
}

/// Sends the result packet, closes the write side, and drains the read side for a while.
async fn finish(
    settings: &Settings,
    mut write: OwnedWriteHalf,
    mut reader: Reader,
    verdict: &Verdict,
    registration: Registration,
) {
    let limit = settings.config.write_timeout;
    if !settings.faults.has(Fault::NoResultPacket) {
        let mut out = Vec::new();
        settings.encode(&verdict.packet(registration), &mut out);
        if let Err(e) = write_within(limit, &mut write, &out).await {
            debug!("the result could not be sent: {e}");
            return;
        }
    }
    let _ = tokio::time::timeout(limit, write.shutdown()).await;
    let mut stop = reader.stop.clone();
    tokio::select! {
        _ = tokio::time::timeout(settings.config.linger, reader.discard()) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}

trait SourceText {
    fn source_text(&self) -> String;
}

impl<E: std::error::Error> SourceText for E {
    /// The causes of an error, joined by `: `.
    fn source_text(&self) -> String {
        let mut causes = Vec::new();
        let mut source = self.source();
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        causes.join(": ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn config_validation() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let bad = |config: ServerConfig| config.validate().unwrap_err().to_string();
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5..=4;
        assert_eq!(
            bad(ServerConfig {
                text_len: empty,
                ..ServerConfig::default()
            }),
            "the text length range 5..=4 is empty"
        );
        assert_eq!(
            bad(ServerConfig {
                key: Some(*b"ABCD"),
                ..ServerConfig::default()
            }),
            "the key \"ABCD\" is not 4 lowercase letters"
        );
        assert_eq!(
            bad(ServerConfig {
                max_packet_data: MAX_DATA + 1,
                ..ServerConfig::default()
            }),
            "9985 data bytes per packet: give 1 to 9984"
        );
        assert_eq!(
            bad(ServerConfig {
                text: Some(vec![b'a'; MAX_TEXT + 1]),
                ..ServerConfig::default()
            }),
            format!(
                "a text of {} bytes is over the maximum of {MAX_TEXT}",
                MAX_TEXT + 1
            )
        );
        assert!(
            ServerConfig {
                timeout: Duration::ZERO,
                ..ServerConfig::default()
            }
            .validate()
            .is_err()
        );
        let little = ServerConfig {
            checksum: ChecksumMode::Little,
            ..ServerConfig::default()
        };
        assert_eq!(little.send_pairing(), Pairing::LittleEndian);
        assert_eq!(ServerConfig::default().send_pairing(), Pairing::BigEndian);
    }
}
