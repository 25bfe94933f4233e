//! One named connection of a scenario: a writer the runner drives, and a reader task that
//! frames what the target sends into a bounded queue of [`Incoming`] events.
//!
//! The queue is bounded in messages and in bytes, so a target that floods without end fills
//! it and then waits on TCP flow control: the harness's memory stays bounded whatever the
//! peer does, even when no step reads the connection for a while.
//!
//! A connection with a [`Cipher`] (`rsa` after its key exchange) reads 64-byte blocks,
//! decrypts each and frames the plaintext as the protocol does; every message it writes
//! through [`Connection::seal`] or a responder is one block. A stream that ends inside a
//! block, or a block that does not decrypt, ends the connection with a
//! [`CloseKind::Error`] that says so.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::framing::{Frame, Framing, LineFramer, TooLong};
use super::transcript;
use crate::transport::BoxStream;
use crate::transport::rsa::{BlockReader, Cipher, SealError};

/// Events waiting in a connection's queue. A connection no step reads for a while (in a
/// chat suite, a client that hears every other scenario's broadcasts) must not fill it, or
/// its reader stops and its PINGs go unanswered.
const QUEUE: usize = 4096;
/// Bytes of messages waiting in a connection's queue. Far above what a normal suite leaves
/// unread, far below [`QUEUE`] messages at the receive limit (4 GiB at the default 1 MiB).
const QUEUE_BYTES: usize = 4 << 20;
/// Size of one read from the socket.
const READ_BUF: usize = 16 * 1024;
/// How many bytes of an unfinished message a report shows.
const PARTIAL_HEAD: usize = 64;

/// The start of a message still arriving, for reports of a deadline that passed meanwhile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Partial {
    /// Its first bytes, at most [`PARTIAL_HEAD`].
    pub head: Vec<u8>,
    /// How many bytes have arrived.
    pub len: usize,
}

type SharedPartial = Arc<Mutex<Partial>>;

fn set_partial(shared: &SharedPartial, bytes: &[u8]) {
    let mut p = shared.lock().unwrap_or_else(PoisonError::into_inner);
    if p.len == bytes.len() {
        return;
    }
    p.len = bytes.len();
    p.head.clear();
    p.head
        .extend_from_slice(&bytes[..bytes.len().min(PARTIAL_HEAD)]);
}

/// How the target ended a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseKind {
    /// An orderly close (TCP FIN; with TLS, close_notify too).
    Clean,
    /// TLS: the peer closed the socket without sending close_notify first.
    NoCloseNotify,
    /// The connection was reset.
    Reset,
    /// TLS failed on a record the target sent (one that does not decrypt, a fatal alert,
    /// ...): the connection cannot be read on. Not a close by the target.
    Tls(String),
    /// Any other read error.
    Error(String),
}

impl std::fmt::Display for CloseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseKind::Clean => f.write_str("clean close"),
            CloseKind::NoCloseNotify => f.write_str("closed without TLS close_notify"),
            CloseKind::Reset => f.write_str("connection reset"),
            CloseKind::Tls(e) => write!(f, "TLS error: {e}"),
            CloseKind::Error(e) => write!(f, "read error: {e}"),
        }
    }
}

/// What the reader task reports, with the time it happened.
#[derive(Debug, Clone)]
pub enum Incoming {
    Message(Frame, Instant),
    TooLong(TooLong, Instant),
    Closed(CloseKind, Instant),
}

/// A message a responder answered at once, and how the reply went (`Err`: why it could not
/// be written). Steps never see these; the transcript does.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The message; past the transcript's byte budget only its head (see [`Answered::len`]).
    pub frame: Frame,
    /// Length of the message on the wire.
    pub len: usize,
    pub at: Instant,
    pub reply: Vec<u8>,
    pub written: Result<(), String>,
}

/// What the reader task queues.
#[derive(Debug)]
enum Queued {
    Event(Incoming),
    Answered(Answered),
}

/// A queued item and the share of [`QUEUE_BYTES`] it holds until it leaves the queue.
type Budgeted = (Queued, Option<OwnedSemaphorePermit>);

/// A background rule with a reply, ready for the reader task: every message it matches is
/// answered the moment it arrives, whatever the steps are doing.
#[derive(Debug, Clone)]
pub struct Responder {
    pub on: ResponderMatch,
    /// The reply, line end included (the plaintext, on an encrypted connection).
    pub reply: Vec<u8>,
}

/// How a responder recognises its message.
#[derive(Debug, Clone)]
pub enum ResponderMatch {
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// `HEADER <json>` compared as JSON.
    Json(String),
    /// A whole-message regular expression.
    Regex(regex::bytes::Regex),
}

impl ResponderMatch {
    fn matches(&self, data: &[u8]) -> bool {
        match self {
            ResponderMatch::Bytes(b) => b == data,
            ResponderMatch::Json(expected) => std::str::from_utf8(data)
                .is_ok_and(|a| super::json_match::match_message(expected, a, false).is_ok()),
            ResponderMatch::Regex(re) => re.is_match(data),
        }
    }
}

type SharedWriter = Arc<tokio::sync::Mutex<WriteHalf<BoxStream>>>;

/// Longest a responder waits to write its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// An open connection.
pub struct Connection {
    writer: SharedWriter,
    /// The keys of an encrypted (`rsa`) connection.
    cipher: Option<Arc<Cipher>>,
    rx: mpsc::Receiver<Budgeted>,
    partial: SharedPartial,
    reader: JoinHandle<()>,
    /// Set once the reader has reported the end of the stream.
    pub(crate) closed: Option<CloseKind>,
    /// When the last message a step expected arrived (when the connection opened, before
    /// any): what `at:` timings count from. Messages background rules handle do not count.
    pub(crate) last_message_at: Instant,
    /// Messages responders answered, not yet put in the transcript (at most
    /// [`transcript::MAX_ENTRIES`]; more are only counted).
    answered: Vec<Answered>,
    answered_dropped: usize,
    /// Bytes of answered messages set aside so far (see [`transcript::MAX_KEPT`]).
    answered_bytes: usize,
}

/// Why `recv` returned without an event.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The deadline passed.
    Timeout,
    /// The stream ended earlier and that end was already consumed.
    AlreadyClosed(CloseKind),
}

impl Connection {
    /// Starts the reader task. `cipher`: the connection is encrypted (`rsa`); `quiet` is how
    /// long an unterminated line may wait before it counts as a message; `recv_limit` bounds
    /// a single message.
    pub fn start(
        stream: BoxStream,
        cipher: Option<Cipher>,
        framing: Framing,
        quiet: Duration,
        recv_limit: usize,
        responders: Arc<[Responder]>,
    ) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        let writer: SharedWriter = Arc::new(tokio::sync::Mutex::new(writer));
        let (tx, rx) = mpsc::channel(QUEUE);
        let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
        let partial = SharedPartial::default();
        let blocks = cipher.map(|mut c| {
            let leftover = std::mem::take(&mut c.leftover);
            (Arc::new(c), leftover)
        });
        let cipher = blocks.as_ref().map(|(c, _)| c.clone());
        let reader = tokio::spawn(read_loop(
            reader,
            Delivery {
                tx,
                budget,
                writer: writer.clone(),
                responders,
                cipher: cipher.clone(),
            },
            Reading {
                framing,
                quiet,
                recv_limit,
                blocks,
            },
            partial.clone(),
        ));
        Self {
            writer,
            cipher,
            rx,
            partial,
            reader,
            closed: None,
            last_message_at: Instant::now(),
            answered: Vec::new(),
            answered_dropped: 0,
            answered_bytes: 0,
        }
    }

    /// Whether messages on this connection travel as RSA blocks.
    pub fn encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The bytes that carry one message: its RSA block on an encrypted connection, the
    /// message itself otherwise.
    pub fn seal(&self, message: &[u8]) -> Result<Vec<u8>, SealError> {
        match &self.cipher {
            Some(c) => c.seal(message),
            None => Ok(message.to_vec()),
        }
    }

    /// Writes the bytes as one write and flushes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.write_all(bytes).await?;
        writer.flush().await
    }

    /// Takes the answered messages still waiting in the queue, and those `recv` set aside;
    /// anything else queued is dropped. For the end of a scenario.
    pub fn drain_answered(&mut self) -> (Vec<Answered>, usize) {
        while let Ok((queued, _)) = self.rx.try_recv() {
            if let Queued::Answered(a) = queued {
                self.set_aside(a);
            }
        }
        self.take_answered()
    }

    /// The answered messages `recv` set aside, and how many more were left out.
    pub fn take_answered(&mut self) -> (Vec<Answered>, usize) {
        (
            std::mem::take(&mut self.answered),
            std::mem::take(&mut self.answered_dropped),
        )
    }

    /// Keeps an answered message for the transcript within the transcript's own bounds, so
    /// that a flood the background rules answer does not pile up while a step waits.
    fn set_aside(&mut self, mut a: Answered) {
        if self.answered.len() >= transcript::MAX_ENTRIES {
            self.answered_dropped += 1;
            return;
        }
        let keep = if self.answered_bytes >= transcript::MAX_KEPT {
            transcript::SHORT_DATA
        } else {
            transcript::MAX_DATA
        };
        a.frame.data.truncate(keep);
        a.frame.data.shrink_to_fit();
        self.answered_bytes += a.frame.data.len() + a.reply.len();
        self.answered.push(a);
    }

    /// The next event, waiting until `deadline`.
    pub async fn recv(&mut self, deadline: Instant) -> Result<Incoming, RecvError> {
        if let Some(kind) = &self.closed {
            return Err(RecvError::AlreadyClosed(kind.clone()));
        }
        let next = async {
            loop {
                match self.rx.recv().await {
                    Some((Queued::Answered(a), _)) => self.set_aside(a),
                    Some((Queued::Event(event), _)) => return Some(event),
                    None => return None,
                }
            }
        };
        match tokio::time::timeout_at(deadline, next).await {
            Err(_) => Err(RecvError::Timeout),
            Ok(Some(event)) => {
                self.note(&event);
                Ok(event)
            }
            // The reader always reports how the stream ended before it stops.
            Ok(None) => Err(RecvError::AlreadyClosed(
                self.closed.clone().unwrap_or(CloseKind::Clean),
            )),
        }
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        if self.closed.is_some() {
            return None;
        }
        loop {
            match self.rx.try_recv().ok()?.0 {
                Queued::Answered(a) => self.set_aside(a),
                Queued::Event(event) => {
                    self.note(&event);
                    return Some(event);
                }
            }
        }
    }

    /// Notes an event taken from the queue: the end of the stream, if it is one.
    fn note(&mut self, event: &Incoming) {
        match event {
            Incoming::Closed(kind, _) => self.closed = Some(kind.clone()),
            Incoming::TooLong(..) => {
                self.closed = Some(CloseKind::Error(
                    "stopped reading after a message over the receive limit".into(),
                ));
            }
            Incoming::Message(..) => {}
        }
    }

    /// The message that has started to arrive and is not complete yet, if any (only once
    /// every complete message has been received).
    pub fn partial(&self) -> Option<Partial> {
        if !self.rx.is_empty() {
            return None;
        }
        let p = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        (p.len > 0).then(|| p.clone())
    }

    /// Closes our side: TLS close_notify (for TLS), then FIN. Bounded by `timeout`.
    pub async fn shutdown(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async { self.writer.lock().await.shutdown().await })
            .await;
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Where the reader task puts what it reads.
struct Delivery {
    tx: mpsc::Sender<Budgeted>,
    /// [`QUEUE_BYTES`], less the bytes of the messages in the queue.
    budget: Arc<Semaphore>,
    writer: SharedWriter,
    responders: Arc<[Responder]>,
    /// Replies are sealed into a block on an encrypted connection.
    cipher: Option<Arc<Cipher>>,
}

impl Delivery {
    /// Queues a message, answering it first if a responder wants it. `false` once the
    /// connection is gone from the runner's side.
    async fn message(&self, frame: Frame) -> bool {
        let at = Instant::now();
        let Some(responder) = self.responders.iter().find(|r| r.on.matches(&frame.data)) else {
            // What the message holds in memory, its unused capacity too.
            let bytes = frame.data.capacity();
            return self
                .queue(Queued::Event(Incoming::Message(frame, at)), bytes)
                .await;
        };
        let reply = responder.reply.clone();
        let sealed = match &self.cipher {
            Some(c) => c.seal(&reply),
            None => Ok(reply.clone()),
        };
        let written = match sealed {
            Err(e) => Err(e.to_string()),
            Ok(wire) => {
                let write = async {
                    let mut writer = self.writer.lock().await;
                    writer.write_all(&wire).await?;
                    writer.flush().await
                };
                match tokio::time::timeout(REPLY_TIMEOUT, write).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the target is not reading".to_owned()),
                }
            }
        };
        let bytes = frame.data.capacity() + reply.capacity();
        self.queue(
            Queued::Answered(Answered {
                len: frame.data.len(),
                frame,
                at,
                reply,
                written,
            }),
            bytes,
        )
        .await
    }

    /// Queues an event that holds no message (an end, a message cut to its head).
    async fn send(&self, event: Incoming) -> bool {
        self.tx.send((Queued::Event(event), None)).await.is_ok()
    }

    /// Queues an item of `bytes` bytes once the queue has room for them: meanwhile the reader
    /// stops reading and the target waits on flow control. A message over the whole budget
    /// waits for an empty queue.
    async fn queue(&self, queued: Queued, bytes: usize) -> bool {
        let share = u32::try_from(bytes.min(QUEUE_BYTES)).unwrap_or(u32::MAX);
        let Ok(permit) = self.budget.clone().acquire_many_owned(share).await else {
            return false;
        };
        self.tx.send((queued, Some(permit))).await.is_ok()
    }
}

/// How the reader task turns bytes into messages.
struct Reading {
    framing: Framing,
    quiet: Duration,
    recv_limit: usize,
    /// An encrypted connection: its keys, and the bytes the server sent right after its key.
    blocks: Option<(Arc<Cipher>, Vec<u8>)>,
}

/// The blocks of an encrypted connection, on their way to the framer.
struct Decrypt {
    cipher: Arc<Cipher>,
    blocks: BlockReader,
}

/// What the reader does after some bytes.
enum Flow {
    /// Read on.
    Go,
    /// Stop at once: the runner is gone, or the end was reported already.
    Stop,
    /// The stream cannot be read on: report its end.
    End(CloseKind),
}

async fn read_loop(
    mut reader: ReadHalf<BoxStream>,
    tx: Delivery,
    reading: Reading,
    partial: SharedPartial,
) {
    let Reading {
        framing,
        quiet,
        recv_limit,
        blocks,
    } = reading;
    let mut framer = LineFramer::with_framing(recv_limit, framing);
    let mut buf = vec![0u8; READ_BUF];
    let mut frames = Vec::new();
    let mut leftover = Vec::new();
    let mut decrypt = blocks.map(|(cipher, rest)| {
        leftover = rest;
        Decrypt {
            cipher,
            blocks: BlockReader::default(),
        }
    });
    // What the key exchange read past the server's key comes first.
    let mut flow = if leftover.is_empty() {
        Flow::Go
    } else {
        absorb(
            &tx,
            &mut framer,
            decrypt.as_mut(),
            &leftover,
            &mut frames,
            &partial,
        )
        .await
    };
    let end = loop {
        match flow {
            Flow::Go => {}
            Flow::Stop => return,
            Flow::End(end) => break end,
        }
        let read = if framer.has_partial() {
            match tokio::time::timeout(quiet, reader.read(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    // The peer went quiet in the middle of a line: that is a message too.
                    set_partial(&partial, &[]);
                    if let Some(frame) = framer.take_partial()
                        && !tx.message(frame).await
                    {
                        return;
                    }
                    continue;
                }
            }
        } else {
            reader.read(&mut buf).await
        };
        flow = match read {
            Ok(0) => Flow::End(match &decrypt {
                Some(d) => d
                    .blocks
                    .finish()
                    .map_or_else(|e| CloseKind::Error(e.to_string()), |()| CloseKind::Clean),
                None => CloseKind::Clean,
            }),
            Ok(n) => {
                absorb(
                    &tx,
                    &mut framer,
                    decrypt.as_mut(),
                    &buf[..n],
                    &mut frames,
                    &partial,
                )
                .await
            }
            Err(e) => Flow::End(classify(&e)),
        };
    };
    set_partial(&partial, &[]);
    if let Some(frame) = framer.take_partial()
        && !tx.message(frame).await
    {
        return;
    }
    tx.send(Incoming::Closed(end, Instant::now())).await;
}

/// Takes bytes read from the target: decrypts them when the connection is encrypted, frames
/// them, and queues every complete message.
async fn absorb(
    tx: &Delivery,
    framer: &mut LineFramer,
    decrypt: Option<&mut Decrypt>,
    bytes: &[u8],
    frames: &mut Vec<Frame>,
    partial: &SharedPartial,
) -> Flow {
    let Some(d) = decrypt else {
        return deliver(tx, framer, bytes, frames, partial).await;
    };
    let mut plain = Vec::new();
    let pushed = d.blocks.push(&d.cipher, bytes, &mut plain);
    // The blocks before a bad one still count.
    for text in &plain {
        if let flow @ (Flow::Stop | Flow::End(_)) = deliver(tx, framer, text, frames, partial).await
        {
            return flow;
        }
    }
    match pushed {
        Ok(()) => Flow::Go,
        Err(e) => Flow::End(CloseKind::Error(e.to_string())),
    }
}

/// Frames `bytes` and queues every complete message; a message past the receive limit is
/// reported and stops the reader.
async fn deliver(
    tx: &Delivery,
    framer: &mut LineFramer,
    bytes: &[u8],
    frames: &mut Vec<Frame>,
    partial: &SharedPartial,
) -> Flow {
    let pushed = framer.push(bytes, frames);
    set_partial(partial, framer.partial());
    for frame in frames.drain(..) {
        if !tx.message(frame).await {
            return Flow::Stop;
        }
    }
    if let Err(too_long) = pushed {
        tx.send(Incoming::TooLong(too_long, Instant::now())).await;
        return Flow::Stop;
    }
    Flow::Go
}

fn classify(e: &io::Error) -> CloseKind {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return CloseKind::Tls(match tls {
            rustls::Error::DecryptError => "the target sent a record that does not decrypt".into(),
            other => other.to_string(),
        });
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => CloseKind::NoCloseNotify,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => CloseKind::Reset,
        _ => CloseKind::Error(e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A peer floods messages a background rule answers while a step waits for something
    /// else: the connection sets aside only what a transcript keeps, and counts the rest.
    #[tokio::test]
    async fn answered_messages_are_kept_within_the_transcript_bounds() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let responders: Arc<[Responder]> = vec![Responder {
            on: ResponderMatch::Bytes(b"PING".to_vec()),
            reply: b"PONG\n".to_vec(),
        }]
        .into();
        let mut conn = Connection::start(
            Box::new(ours),
            None,
            Framing::Lines,
            Duration::from_millis(200),
            1 << 20,
            responders,
        );
        let total = transcript::MAX_ENTRIES + 500;
        let flood = tokio::spawn(async move {
            let pings = b"PING\n".repeat(total);
            let (mut read, mut write) = tokio::io::split(&mut theirs);
            let drain = async {
                let mut buf = vec![0; 64 * 1024];
                while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
            };
            let send = async {
                write.write_all(&pings).await.unwrap();
                write.write_all(b"DONE\n").await.unwrap();
            };
            tokio::select! {
                () = drain => {}
                () = send => {}
            }
            theirs
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let Ok(Incoming::Message(frame, _)) = conn.recv(deadline).await else {
            panic!("DONE did not arrive");
        };
        assert_eq!(frame.data, b"DONE");
        let (answered, dropped) = conn.take_answered();
        assert_eq!(answered.len(), transcript::MAX_ENTRIES);
        assert_eq!(dropped, 500);
        drop(flood.await.unwrap());
    }
}
