//! A client of the chat protocol (`specs/chat.md`, levels 1 to 4) and the
//! `reference chat-client` command.
//!
//! [`ChatClient`] is one control connection. Sending never waits: a writer task owns the
//! write half of the socket, so every request method is a plain `fn`. Reading is
//! [`ChatClient::next_event`], which does what the protocol asks of a client by itself before
//! it hands a message on as an [`Event`]:
//!
//! - `PING` is answered `PONG` ([`Event::Pinged`]);
//! - `SECURE_MESSAGE_REQ` is answered with this client's public key; the public key that comes
//!   back for a [`ChatClient::secure`] message seals the message and sends it; a
//!   `SECURE_MESSAGE` is decrypted (see [`super::e2e`]);
//! - a file the receiver accepted is uploaded, and an accepted offer downloaded and verified,
//!   over the data channel, in background tasks that report progress as events.
//!
//! So a client must be polled to do its part: a client nobody reads from answers no `PING`
//! (and is dropped by the server), seals no secure message and sends no file request (the
//! request goes once the file is hashed, which the client learns when polled). Tests that
//! drive two clients poll both, e.g. with `tokio::join!` over two [`ChatClient::wait_for`]s.
//!
//! ```text
//! let mut client = ChatClient::connect(addr, ClientConfig::default()).await?;
//! client.login("alice").await?;
//! client.broadcast("hello")?;
//! let reply = client.wait_for(timeout, |e| matches!(e, Event::Message(ServerMessage::BroadcastResp(_)))).await?;
//! client.bye().await?;
//! ```
//!
//! The data channel of a file transfer is the server's second port (by default the control
//! port + 1). After the negotiation on the control connection:
//!
//! ```text
//! uploader   -> data: UPLOAD <transferId>\n       downloader -> data: DOWNLOAD <transferId>\n
//! data -> each:       READY\n                     (or ERROR <reason>\n, then close)
//! uploader   -> data: the file's bytes, then shutdown(write)
//! data -> downloader: the file's bytes, then close
//! S -> both:          FILE_TRANSFER_COMPLETE {"transferId":...,"status":"OK","size":N,"checksum":...}
//! ```
//!
//! The downloader checks the size and SHA-256 the offer declared itself, whatever the
//! server says.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::codec::{
    ClientMessage, Code, DataHello, DataReply, Dialect, GameResult, Guess, Header, LineDecoder,
    MAX_LINE, SecureEnvelope, ServerMessage, TransferDecision, code,
};
use super::e2e::{self, E2eError, KeyPair};
use super::server_cli::parse_duration;

/// Default time to wait for a connection, a reply, or the next bytes of a transfer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest line accepted from the server (a long user list may pass the 1024 bytes the
/// server accepts from clients).
pub const MAX_REPLY: usize = 64 * 1024;

/// Longest line of the data channel's reply (`READY` or `ERROR <reason>`).
const MAX_DATA_REPLY: usize = 1024;

/// Read and write size of file transfers.
const CHUNK: usize = 64 * 1024;

/// Length of the `sessionKey` field for a 2048-bit receiver key, to check a secure message's
/// length before asking for the key.
const SESSION_KEY_B64_LEN: usize = (e2e::RSA_BITS / 8).div_ceil(3) * 4;

// ---------------------------------------------------------------------------------------
// Configuration, errors, events

/// How a [`ChatClient`] connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Port of the server's data channel; `None`: the control port + 1.
    pub data_port: Option<u16>,
    /// Where accepted files are saved (never overwriting: a name in use gets ` (1)`, ...).
    pub download_dir: PathBuf,
    /// Accept every file offered, without [`ChatClient::accept_file`].
    pub auto_accept: bool,
    /// Time to wait for a connection, a reply, the data channel's `READY` and each read of a
    /// transfer.
    pub timeout: Duration,
    /// This client's RSA key pair; `None`: a fresh one is made at connect (tests inject one
    /// to save the key generation).
    pub keys: Option<Arc<KeyPair>>,
    /// Header names of the server's dialect.
    pub dialect: Dialect,
    /// Longest line this client sends, line end not counted: the server's limit. Longer
    /// messages are refused with [`ChatError::TooLong`] instead of getting the client
    /// disconnected.
    pub max_line: usize,
    /// Longest line accepted from the server.
    pub max_reply: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            data_port: None,
            download_dir: PathBuf::from("."),
            auto_accept: false,
            timeout: DEFAULT_TIMEOUT,
            keys: None,
            dialect: Dialect::default(),
            max_line: MAX_LINE,
            max_reply: MAX_REPLY,
        }
    }
}

/// Errors of a chat client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} timed out after {}", show_duration(*timeout))]
    Timeout { what: String, timeout: Duration },
    #[error("the connection to the server failed")]
    Io(#[source] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server's first message is {line:?}, not WELCOME")]
    NoWelcome { line: String },
    #[error("login refused: {} ({code})", code_text(*code))]
    LoginRefused { code: Code },
    #[error("the server answered `{reply}` to {request}")]
    UnexpectedReply {
        request: &'static str,
        reply: String,
    },
    #[error("disconnected by the server: {}", dscn_text(*reason))]
    Disconnected { reason: Option<Code> },
    #[error("cannot make this client's RSA key pair")]
    Keys(#[source] E2eError),
    #[error(
        "{what} would be a line of {len} bytes, over the server's limit of {limit}; shorten it"
    )]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("cannot seal the secure message")]
    Seal(#[source] E2eError),
    #[error("no file offered by {sender} is waiting for an answer")]
    NoOffer { sender: String },
    #[error("file transfer failed")]
    Transfer(#[source] TransferError),
}

/// Errors of a file transfer's local side and data channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot create a file for {filename:?} in {}", dir.display())]
    Create {
        filename: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the data channel at {addr} (is --data-port right?)")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the data connection failed")]
    Io(#[source] std::io::Error),
    #[error("the server refused the data connection: {reason}")]
    Refused { reason: String },
    #[error("the server closed the data connection without READY")]
    NoReady,
    #[error("the server's data-channel reply is {line:?}, not READY")]
    BadReply { line: String },
    #[error("{what} timed out after {}", show_duration(*timeout))]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
}

/// A file offered to this client (`FILE_TRANSFER_REQUEST` from the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    pub sender: String,
    pub filename: String,
    /// Declared size in bytes, if the sender gave one.
    pub size: Option<u64>,
    /// Declared SHA-256, lowercase hex, if the sender gave one.
    pub checksum: Option<String>,
}

/// A file this client asked to send (`FILE_TRANSFER_REQUEST` to the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    pub receiver: String,
    pub path: PathBuf,
    pub filename: String,
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub checksum: String,
}

/// Which way a file moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferDirection {
    Upload,
    Download,
}

impl TransferDirection {
    fn noun(self) -> &'static str {
        match self {
            TransferDirection::Upload => "upload",
            TransferDirection::Download => "download",
        }
    }
}

/// An accepted file transfer, from this client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The `transferId` the downloader made (a UUID v4).
    pub id: String,
    pub direction: TransferDirection,
    /// The receiver of an upload, the sender of a download.
    pub peer: String,
    pub filename: String,
    /// Declared size.
    pub size: Option<u64>,
    /// Declared SHA-256, lowercase hex.
    pub checksum: Option<String>,
    /// The local file: the source of an upload, the destination of a download.
    pub path: PathBuf,
}

/// What the downloader's own check of a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Size and SHA-256 match the declared ones.
    Verified,
    /// The size matches; the offer declared no checksum.
    SizeOnly,
    /// The offer declared neither size nor checksum.
    Unverified,
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    ChecksumMismatch {
        expected: String,
        actual: String,
    },
}

/// Something that happened on the connection, after the client's own handling.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A server message the client only passes on: replies, broadcasts, game news, ...
    Message(ServerMessage),
    /// A `PING`, answered with `PONG`.
    Pinged,
    /// A line from the server that is no message of the protocol.
    Malformed { line: String, problem: String },
    /// `SECURE_MESSAGE_REQ`: `requester` wants to send this client a secure message; the
    /// public key was sent.
    KeyRequested { requester: String },
    /// A secure message sealed with the receiver's public key and sent.
    SecureSent { receiver: String },
    /// A secure message that could not be sealed or sent.
    SecureFailed { receiver: String, error: ChatError },
    /// The server refused a step of a secure message (`SECURE_MESSAGE_REQ`,
    /// `SECURE_MESSAGE_RES` or `SECURE_MESSAGE` with an error code). `receiver` is this
    /// client's oldest pending secure message, if any.
    SecureRefused {
        header: Header,
        receiver: Option<String>,
        code: Code,
    },
    /// A secure message and its plaintext, or why it did not decrypt.
    SecureMessage {
        envelope: SecureEnvelope,
        text: Result<String, E2eError>,
    },
    /// A file offered to this client; `accepted` if `auto_accept` started its download (or
    /// the error that stopped it).
    FileOffer {
        offer: FileOffer,
        accepted: Option<Result<Transfer, ChatError>>,
    },
    /// A file hashed and offered to its receiver.
    FileRequested { request: OutgoingFile },
    /// A file that could not be offered (unreadable, or the request too long).
    FileNotSent {
        receiver: String,
        path: PathBuf,
        error: ChatError,
    },
    /// The receiver accepted: the upload starts.
    FileAccepted { transfer: Transfer },
    /// The server or the receiver refused a file transfer. `request` is the oldest request
    /// waiting for an answer (an error reply does not name its receiver).
    FileRefused {
        request: Option<OutgoingFile>,
        code: Code,
    },
    /// Bytes moved on a data connection.
    Progress {
        transfer: Transfer,
        done: u64,
        total: Option<u64>,
    },
    /// This client's side of an upload is done: every byte was sent.
    Uploaded { transfer: Transfer, bytes: u64 },
    /// A download is done and checked.
    Downloaded {
        transfer: Transfer,
        size: u64,
        checksum: String,
        verdict: Verdict,
    },
    /// A data connection failed.
    TransferFailed {
        transfer: Transfer,
        error: TransferError,
    },
    /// `FILE_TRANSFER_COMPLETE`: the server's account of what passed.
    TransferComplete {
        /// The transfer, if this client knows the id.
        transfer: Option<Transfer>,
        transfer_id: String,
        result: Result<(), Code>,
        size: u64,
        checksum: String,
    },
    /// The server closed the connection. `reason` is that of a `DSCN` before it.
    Closed {
        reason: Option<Code>,
        error: Option<std::io::Error>,
    },
}

// ---------------------------------------------------------------------------------------
// The client

/// A transfer in progress; it ends when this side and the server are both done.
#[derive(Debug)]
struct Active {
    transfer: Transfer,
    local_done: bool,
    server_done: bool,
}

/// News from the writer and the background tasks.
#[derive(Debug)]
enum Internal {
    /// An event to pass on as it is (progress).
    Event(Event),
    /// A file to offer, hashed; or why it could not be read.
    Hashed {
        receiver: String,
        result: Result<OutgoingFile, TransferError>,
    },
    /// The end of a transfer's local side: `Uploaded`, `Downloaded` or `TransferFailed`.
    Finished(Event),
    /// The write half failed.
    WriteFailed(std::io::Error),
}

/// One line to write, and who to tell once it is written.
#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    written: Option<oneshot::Sender<()>>,
}

/// One connection to a chat server. See the module docs.
#[derive(Debug)]
pub struct ChatClient {
    reader: OwnedReadHalf,
    buf: Box<[u8]>,
    decoder: LineDecoder,
    out: mpsc::UnboundedSender<Outgoing>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Events made by the last message, not returned yet.
    fresh: VecDeque<Event>,
    /// Events [`ChatClient::wait_for`] passed over, for [`ChatClient::next_event`].
    held: VecDeque<Event>,
    config: ClientConfig,
    keys: Arc<KeyPair>,
    data_addr: SocketAddr,
    welcome: String,
    username: Option<String>,
    login_pending: Option<String>,
    /// Secure messages waiting for their receiver's public key, oldest first.
    pending_secure: VecDeque<(String, String)>,
    /// Files being hashed before their request.
    hashing: usize,
    /// File requests waiting for the receiver's answer, oldest first.
    outgoing: VecDeque<OutgoingFile>,
    /// Offers waiting for this client's answer, oldest first.
    offers: VecDeque<FileOffer>,
    transfers: HashMap<String, Active>,
    tasks: Vec<AbortHandle>,
    dscn: Option<Code>,
    read_error: Option<std::io::Error>,
    write_error: Option<std::io::Error>,
    eof: bool,
    closed: bool,
    pings: u64,
}

impl Drop for ChatClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ChatClient {
    /// Connects, waits for `WELCOME` and makes the key pair if the config has none.
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Self, ChatError> {
        let timeout = config.timeout;
        let key_task = match &config.keys {
            Some(_) => None,
            None => Some(tokio::task::spawn_blocking(KeyPair::generate)),
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ChatError::Timeout {
                what: format!("connecting to {addr}"),
                timeout,
            })?
            .map_err(|source| ChatError::Connect { addr, source })?;
        // Lines are small and interactive: do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        let keys = match (&config.keys, key_task) {
            (Some(keys), _) => keys.clone(),
            (None, Some(task)) => Arc::new(
                task.await
                    .map_err(|e| ChatError::Io(std::io::Error::other(e)))?
                    .map_err(ChatError::Keys)?,
            ),
            (None, None) => unreachable!("a key task is started when no keys are given"),
        };
        let (reader, writer) = stream.into_split();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        // Not aborted on drop: it writes what is queued, then shuts the write half down.
        tokio::spawn(write_loop(writer, out_rx, internal_tx.clone(), timeout));
        let data_addr = SocketAddr::new(
            addr.ip(),
            config
                .data_port
                .unwrap_or_else(|| addr.port().wrapping_add(1)),
        );
        let mut client = Self {
            reader,
            buf: vec![0; CHUNK].into_boxed_slice(),
            decoder: LineDecoder::with_max_line(config.max_reply),
            out,
            internal_tx,
            internal_rx,
            fresh: VecDeque::new(),
            held: VecDeque::new(),
            config,
            keys,
            data_addr,
            welcome: String::new(),
            username: None,
            login_pending: None,
            pending_secure: VecDeque::new(),
            hashing: 0,
            outgoing: VecDeque::new(),
            offers: VecDeque::new(),
            transfers: HashMap::new(),
            tasks: Vec::new(),
            dscn: None,
            read_error: None,
            write_error: None,
            eof: false,
            closed: false,
            pings: 0,
        };
        let first = client
            .wait_for(timeout, |_| true)
            .await
            .map_err(|e| match e {
                ChatError::Timeout { timeout, .. } => ChatError::Timeout {
                    what: "waiting for WELCOME".into(),
                    timeout,
                },
                e => e,
            })?;
        match first {
            Event::Message(ServerMessage::Welcome { msg }) => client.welcome = msg,
            Event::Closed { reason: None, .. } => return Err(ChatError::Closed),
            Event::Closed { reason, .. } | Event::Message(ServerMessage::Dscn { reason }) => {
                return Err(ChatError::Disconnected { reason });
            }
            Event::Message(other) => {
                return Err(ChatError::NoWelcome {
                    line: other.to_string(),
                });
            }
            Event::Malformed { line, .. } => return Err(ChatError::NoWelcome { line }),
            other => {
                return Err(ChatError::NoWelcome {
                    line: format!("{other:?}"),
                });
            }
        }
        Ok(client)
    }

    /// The text of the server's `WELCOME`.
    pub fn welcome(&self) -> &str {
        &self.welcome
    }

    /// The name this client logged in with.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// This client's key pair.
    pub fn keys(&self) -> &Arc<KeyPair> {
        &self.keys
    }

    /// Where file transfers connect to.
    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// How many `PING`s were answered.
    pub fn pings_answered(&self) -> u64 {
        self.pings
    }

    /// The `DSCN` reason, if the server sent one.
    pub fn disconnect_reason(&self) -> Option<Code> {
        self.dscn
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Offers waiting for [`ChatClient::accept_file`] or [`ChatClient::reject_file`].
    pub fn offers(&self) -> impl Iterator<Item = &FileOffer> {
        self.offers.iter()
    }

    /// File transfers not finished: files being hashed, requests waiting for an answer, and
    /// accepted transfers until both this side and the server's `FILE_TRANSFER_COMPLETE` are
    /// done.
    pub fn active_transfers(&self) -> usize {
        self.hashing + self.outgoing.len() + self.transfers.len()
    }

    /// `LOGIN`, and waits for `LOGIN_RESP`. A refusal is [`ChatError::LoginRefused`].
    pub async fn login(&mut self, username: &str) -> Result<(), ChatError> {
        self.login_pending = Some(username.to_owned());
        self.send(&ClientMessage::Login {
            username: username.to_owned(),
        })?;
        let reply = self.wait_reply(Header::LoginResp).await?;
        match reply {
            ServerMessage::LoginResp(Ok(())) => Ok(()),
            ServerMessage::LoginResp(Err(code)) => Err(ChatError::LoginRefused { code }),
            ServerMessage::Dscn { reason } => Err(ChatError::Disconnected { reason }),
            other => Err(ChatError::UnexpectedReply {
                request: "LOGIN",
                reply: other.to_string(),
            }),
        }
    }

    /// `BROADCAST_REQ`; the reply is an [`Event::Message`] `BROADCAST_RESP`.
    pub fn broadcast(&mut self, message: &str) -> Result<(), ChatError> {
        self.send_checked(
            "the broadcast",
            &ClientMessage::BroadcastReq {
                message: message.to_owned(),
            },
        )
    }

    /// `LIST_USERS_REQ`.
    pub fn list_users(&mut self) -> Result<(), ChatError> {
        self.send(&ClientMessage::ListUsersReq)
    }

    /// `PRIVATE_MESSAGE_REQ`.
    pub fn private_message(&mut self, receiver: &str, message: &str) -> Result<(), ChatError> {
        self.send_checked(
            "the private message",
            &ClientMessage::PrivateMessageReq {
                receiver: receiver.to_owned(),
                message: message.to_owned(),
            },
        )
    }

    /// `START_GAME_REQ`.
    pub fn start_game(&mut self) -> Result<(), ChatError> {
        self.send(&ClientMessage::StartGameReq)
    }

    /// `JOIN_GAME_REQ`.
    pub fn join_game(&mut self) -> Result<(), ChatError> {
        self.send(&ClientMessage::JoinGameReq)
    }

    /// `GUESS_NUMBER_REQ`.
    pub fn guess(&mut self, number: Guess) -> Result<(), ChatError> {
        self.send(&ClientMessage::GuessNumberReq { number })
    }

    /// Offers a file: hashes it in the background, then sends `FILE_TRANSFER_REQUEST` with
    /// its size and SHA-256 ([`Event::FileRequested`] or [`Event::FileNotSent`]). When the
    /// receiver accepts, the upload starts by itself ([`Event::FileAccepted`]).
    pub fn send_file(&mut self, receiver: &str, path: impl AsRef<Path>) -> Result<(), ChatError> {
        self.check_open()?;
        let path = path.as_ref().to_path_buf();
        let metadata = std::fs::metadata(&path).map_err(|source| {
            ChatError::Transfer(TransferError::Read {
                path: path.clone(),
                source,
            })
        })?;
        let filename = match path.file_name() {
            Some(name) if metadata.is_file() => name.to_string_lossy().into_owned(),
            _ => return Err(ChatError::Transfer(TransferError::NotAFile { path })),
        };
        self.hashing += 1;
        let tx = self.internal_tx.clone();
        let receiver = receiver.to_owned();
        tokio::task::spawn_blocking(move || {
            let result = hash_file(&path)
                .map(|(size, checksum)| OutgoingFile {
                    receiver: receiver.clone(),
                    path: path.clone(),
                    filename,
                    size,
                    checksum,
                })
                .map_err(|source| TransferError::Read { path, source });
            let _ = tx.send(Internal::Hashed { receiver, result });
        });
        Ok(())
    }

    /// Accepts the oldest offer of `sender`: a fresh file in the download directory, a
    /// `FILE_TRANSFER_RESPONSE` with status OK and a new transfer id, and the download in
    /// the background.
    pub fn accept_file(&mut self, sender: &str) -> Result<Transfer, ChatError> {
        let offer = self.take_offer(sender)?;
        self.start_download(offer)
    }

    /// Rejects the oldest offer of `sender` (`FILE_TRANSFER_RESPONSE` with status REJECTED).
    pub fn reject_file(&mut self, sender: &str) -> Result<FileOffer, ChatError> {
        let offer = self.take_offer(sender)?;
        self.send(&ClientMessage::FileTransferResponse {
            sender: offer.sender.clone(),
            decision: TransferDecision::Reject,
            transfer_id: uuid::Uuid::new_v4().to_string(),
        })?;
        Ok(offer)
    }

    /// Sends `text` end-to-end encrypted: `SECURE_MESSAGE_REQ` now, and the sealed
    /// `SECURE_MESSAGE` when the receiver's public key arrives ([`Event::SecureSent`]).
    pub fn secure(&mut self, receiver: &str, text: &str) -> Result<(), ChatError> {
        // The sealed message's length is known up to the receiver's key size: check it for
        // a 2048-bit key now rather than after the key exchange.
        let estimate = ClientMessage::SecureMessage {
            receiver: Some(receiver.to_owned()),
            sender: self.username.clone(),
            session_key: "A".repeat(SESSION_KEY_B64_LEN),
            message: "A".repeat((e2e::NONCE_LEN + text.len() + e2e::TAG_LEN).div_ceil(3) * 4),
        };
        self.check_length("the secure message", &estimate)?;
        self.send_checked(
            "the secure-message request",
            &ClientMessage::SecureMessageReq {
                receiver: receiver.to_owned(),
            },
        )?;
        self.pending_secure
            .push_back((receiver.to_owned(), text.to_owned()));
        Ok(())
    }

    /// Sends `BYE` and waits for `BYE_RESP` and the server's close.
    pub async fn bye(&mut self) -> Result<(), ChatError> {
        self.send(&ClientMessage::Bye)?;
        match self.wait_reply(Header::ByeResp).await? {
            ServerMessage::ByeResp(_) => {}
            ServerMessage::Dscn { reason } => return Err(ChatError::Disconnected { reason }),
            other => {
                return Err(ChatError::UnexpectedReply {
                    request: "BYE",
                    reply: other.to_string(),
                });
            }
        }
        let timeout = self.config.timeout;
        // The server closes after BYE_RESP; a server that does not is closed by dropping.
        let _ = self
            .wait_for(timeout, |e| matches!(e, Event::Closed { .. }))
            .await;
        Ok(())
    }

    /// Sends any message as it is, without the length check.
    pub fn send(&mut self, message: &ClientMessage) -> Result<(), ChatError> {
        let bytes = self.encode(message);
        self.send_bytes(bytes, None)
    }

    /// Sends `line` and a `\n` as they are (to test a server with what no message method
    /// makes).
    pub fn send_raw(&mut self, line: &str) -> Result<(), ChatError> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send_bytes(bytes, None)
    }

    /// The next event, from those [`ChatClient::wait_for`] passed over first. After
    /// [`Event::Closed`], [`ChatError::Closed`]. Cancel-safe: no event is lost if the future
    /// is dropped (as in `select!`).
    pub async fn next_event(&mut self) -> Result<Event, ChatError> {
        if let Some(event) = self.held.pop_front() {
            return Ok(event);
        }
        self.read_event().await
    }

    /// The first event `matches` accepts, within `timeout`; the others stay for
    /// [`ChatClient::next_event`] in their order.
    pub async fn wait_for<F>(
        &mut self,
        timeout: Duration,
        mut matches: F,
    ) -> Result<Event, ChatError>
    where
        F: FnMut(&Event) -> bool,
    {
        if let Some(i) = self.held.iter().position(&mut matches)
            && let Some(event) = self.held.remove(i)
        {
            return Ok(event);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.read_event()).await {
                Ok(event) => event?,
                Err(_) => {
                    return Err(ChatError::Timeout {
                        what: "waiting for the server".into(),
                        timeout,
                    });
                }
            };
            if matches(&event) {
                return Ok(event);
            }
            self.held.push_back(event);
        }
    }

    /// Waits for the message with `header`, or one that ends the wait as well: `DSCN`,
    /// `UNKNOWN_COMMAND`, `PARSE_ERROR` or the close.
    async fn wait_reply(&mut self, header: Header) -> Result<ServerMessage, ChatError> {
        let timeout = self.config.timeout;
        let event = self
            .wait_for(timeout, |e| match e {
                Event::Message(m) => {
                    m.header() == header
                        || matches!(
                            m,
                            ServerMessage::Dscn { .. }
                                | ServerMessage::UnknownCommand
                                | ServerMessage::ParseError
                        )
                }
                Event::Closed { .. } => true,
                _ => false,
            })
            .await
            .map_err(|e| match e {
                ChatError::Timeout { timeout, .. } => ChatError::Timeout {
                    what: format!("waiting for {}", header.name()),
                    timeout,
                },
                e => e,
            })?;
        match event {
            Event::Message(message) => Ok(message),
            Event::Closed {
                reason: Some(reason),
                ..
            } => Err(ChatError::Disconnected {
                reason: Some(reason),
            }),
            _ => Err(ChatError::Closed),
        }
    }

    // --- reading ---

    async fn read_event(&mut self) -> Result<Event, ChatError> {
        loop {
            if let Some(event) = self.fresh.pop_front() {
                return Ok(event);
            }
            if self.closed {
                return Err(ChatError::Closed);
            }
            match self.decoder.next_line() {
                Ok(Some(line)) => {
                    self.on_line(&line);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    self.fresh.push_back(Event::Malformed {
                        line: String::new(),
                        problem: e.to_string(),
                    });
                    continue;
                }
            }
            if self.eof {
                self.closed = true;
                self.fresh.push_back(Event::Closed {
                    reason: self.dscn,
                    error: self.read_error.take().or_else(|| self.write_error.take()),
                });
                continue;
            }
            // Both branches are cancel-safe: a dropped read reads nothing, a dropped recv
            // receives nothing.
            tokio::select! {
                read = self.reader.read(&mut self.buf) => match read {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.decoder.feed(&self.buf[..n]),
                    Err(e) => {
                        self.eof = true;
                        self.read_error = Some(e);
                    }
                },
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        match self.config.dialect.decode_server(line) {
            Ok(message) => self.on_message(message),
            Err(error) => self.fresh.push_back(Event::Malformed {
                line: String::from_utf8_lossy(line).into_owned(),
                problem: error.to_string(),
            }),
        }
    }

    fn on_message(&mut self, message: ServerMessage) {
        let event = match message {
            ServerMessage::Ping => {
                self.pings += 1;
                let _ = self.send(&ClientMessage::Pong);
                Event::Pinged
            }
            ServerMessage::LoginResp(Ok(())) => {
                if let Some(name) = self.login_pending.take() {
                    self.username = Some(name);
                }
                Event::Message(message)
            }
            ServerMessage::Dscn { reason } => {
                self.dscn = reason;
                Event::Message(message)
            }
            ServerMessage::SecureMessageReq(Ok(requester)) => {
                let _ = self.send(&ClientMessage::SecureMessageRes {
                    sender: requester.clone(),
                    public_key: self.keys.public_key_pem().to_owned(),
                });
                Event::KeyRequested { requester }
            }
            ServerMessage::SecureMessageRes(Ok(key)) => {
                let Some(i) = self
                    .pending_secure
                    .iter()
                    .position(|(receiver, _)| *receiver == key.receiver)
                else {
                    self.fresh
                        .push_back(Event::Message(ServerMessage::SecureMessageRes(Ok(key))));
                    return;
                };
                let Some((receiver, text)) = self.pending_secure.remove(i) else {
                    return;
                };
                match e2e::seal(&key.public_key, &text) {
                    Ok(sealed) => {
                        let message = ClientMessage::SecureMessage {
                            receiver: Some(receiver.clone()),
                            sender: self.username.clone(),
                            session_key: sealed.session_key,
                            message: sealed.message,
                        };
                        match self.send_checked("the secure message", &message) {
                            Ok(()) => Event::SecureSent { receiver },
                            Err(error) => Event::SecureFailed { receiver, error },
                        }
                    }
                    Err(e) => Event::SecureFailed {
                        receiver,
                        error: ChatError::Seal(e),
                    },
                }
            }
            ServerMessage::SecureMessageReq(Err(code))
            | ServerMessage::SecureMessageRes(Err(code))
            | ServerMessage::SecureMessage(Err(code)) => {
                let header = message.header();
                // Only a SECURE_MESSAGE_REQ error answers this client's own request (the
                // oldest: an error names nobody). A SECURE_MESSAGE_RES error answers the key
                // this client gave, a SECURE_MESSAGE error the sealed message it sent.
                let receiver = if header == Header::SecureMessageReq {
                    self.pending_secure
                        .pop_front()
                        .map(|(receiver, _)| receiver)
                } else {
                    None
                };
                Event::SecureRefused {
                    header,
                    receiver,
                    code,
                }
            }
            ServerMessage::SecureMessage(Ok(envelope)) => {
                let text = self.keys.open(&envelope.session_key, &envelope.message);
                Event::SecureMessage { envelope, text }
            }
            ServerMessage::FileTransferRequest {
                sender,
                filename,
                size,
                checksum,
            } => {
                let offer = FileOffer {
                    sender,
                    filename,
                    size,
                    checksum,
                };
                let accepted = if self.config.auto_accept {
                    Some(self.start_download(offer.clone()))
                } else {
                    self.offers.push_back(offer.clone());
                    None
                };
                Event::FileOffer { offer, accepted }
            }
            ServerMessage::FileTransferResponse(Ok(accepted)) => {
                let Some(i) = self
                    .outgoing
                    .iter()
                    .position(|o| o.receiver == accepted.receiver)
                else {
                    self.fresh
                        .push_back(Event::Message(ServerMessage::FileTransferResponse(Ok(
                            accepted,
                        ))));
                    return;
                };
                let Some(request) = self.outgoing.remove(i) else {
                    return;
                };
                let transfer = Transfer {
                    id: accepted.transfer_id,
                    direction: TransferDirection::Upload,
                    peer: request.receiver,
                    filename: request.filename,
                    size: Some(request.size),
                    checksum: Some(request.checksum),
                    path: request.path,
                };
                self.start_upload(transfer.clone());
                Event::FileAccepted { transfer }
            }
            ServerMessage::FileTransferResponse(Err(code)) => Event::FileRefused {
                request: self.outgoing.pop_front(),
                code,
            },
            ServerMessage::FileTransferComplete {
                transfer_id,
                result,
                size,
                checksum,
            } => {
                let transfer = match self.transfers.get_mut(&transfer_id) {
                    Some(active) => {
                        active.server_done = true;
                        let transfer = active.transfer.clone();
                        if active.local_done || result.is_err() {
                            self.transfers.remove(&transfer_id);
                        }
                        Some(transfer)
                    }
                    None => None,
                };
                Event::TransferComplete {
                    transfer,
                    transfer_id,
                    result,
                    size,
                    checksum,
                }
            }
            message => Event::Message(message),
        };
        self.fresh.push_back(event);
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Event(event) => self.fresh.push_back(event),
            Internal::Hashed { receiver, result } => {
                self.hashing = self.hashing.saturating_sub(1);
                let event = match result {
                    Ok(request) => {
                        let message = ClientMessage::FileTransferRequest {
                            receiver: request.receiver.clone(),
                            filename: request.filename.clone(),
                            size: Some(request.size),
                            checksum: Some(request.checksum.clone()),
                        };
                        match self.send_checked("the file transfer request", &message) {
                            Ok(()) => {
                                self.outgoing.push_back(request.clone());
                                Event::FileRequested { request }
                            }
                            Err(error) => Event::FileNotSent {
                                receiver,
                                path: request.path,
                                error,
                            },
                        }
                    }
                    Err(error) => {
                        let path = match &error {
                            TransferError::Read { path, .. } => path.clone(),
                            _ => PathBuf::new(),
                        };
                        Event::FileNotSent {
                            receiver,
                            path,
                            error: ChatError::Transfer(error),
                        }
                    }
                };
                self.fresh.push_back(event);
            }
            Internal::Finished(event) => {
                let (id, failed) = match &event {
                    Event::Uploaded { transfer, .. } | Event::Downloaded { transfer, .. } => {
                        (transfer.id.clone(), false)
                    }
                    Event::TransferFailed { transfer, .. } => (transfer.id.clone(), true),
                    _ => (String::new(), false),
                };
                if let Some(active) = self.transfers.get_mut(&id) {
                    active.local_done = true;
                    if active.server_done || failed {
                        self.transfers.remove(&id);
                    }
                }
                self.fresh.push_back(event);
            }
            Internal::WriteFailed(e) => self.write_error = Some(e),
        }
    }

    // --- sending ---

    fn encode(&self, message: &ClientMessage) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.config.dialect.encode_client(message, &mut bytes);
        bytes
    }

    fn check_open(&self) -> Result<(), ChatError> {
        if self.closed {
            Err(ChatError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_length(&self, what: &'static str, message: &ClientMessage) -> Result<(), ChatError> {
        // The encoding ends in "\n", which the limit does not count.
        let len = self.encode(message).len().saturating_sub(1);
        if len > self.config.max_line {
            return Err(ChatError::TooLong {
                what,
                len,
                limit: self.config.max_line,
            });
        }
        Ok(())
    }

    fn send_checked(
        &mut self,
        what: &'static str,
        message: &ClientMessage,
    ) -> Result<(), ChatError> {
        self.check_length(what, message)?;
        self.send(message)
    }

    fn send_bytes(
        &mut self,
        bytes: Vec<u8>,
        written: Option<oneshot::Sender<()>>,
    ) -> Result<(), ChatError> {
        self.check_open()?;
        self.out
            .send(Outgoing { bytes, written })
            .map_err(|_| ChatError::Closed)
    }

    // --- file transfers ---

    fn take_offer(&mut self, sender: &str) -> Result<FileOffer, ChatError> {
        let i = self
            .offers
            .iter()
            .position(|o| o.sender == sender)
            .ok_or_else(|| ChatError::NoOffer {
                sender: sender.to_owned(),
            })?;
        self.offers.remove(i).ok_or_else(|| ChatError::NoOffer {
            sender: sender.to_owned(),
        })
    }

    fn start_download(&mut self, offer: FileOffer) -> Result<Transfer, ChatError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (path, file) = match create_unique(&self.config.download_dir, &offer.filename) {
            Ok(created) => created,
            Err(source) => {
                // Tell the sender rather than leave it waiting.
                let _ = self.send(&ClientMessage::FileTransferResponse {
                    sender: offer.sender.clone(),
                    decision: TransferDecision::Reject,
                    transfer_id: id,
                });
                return Err(ChatError::Transfer(TransferError::Create {
                    filename: offer.filename,
                    dir: self.config.download_dir.clone(),
                    source,
                }));
            }
        };
        let transfer = Transfer {
            id: id.clone(),
            direction: TransferDirection::Download,
            peer: offer.sender.clone(),
            filename: offer.filename,
            size: offer.size,
            checksum: offer.checksum,
            path,
        };
        let (written_tx, written_rx) = oneshot::channel();
        let response = self.encode(&ClientMessage::FileTransferResponse {
            sender: offer.sender,
            decision: TransferDecision::Accept,
            transfer_id: id.clone(),
        });
        if let Err(e) = self.send_bytes(response, Some(written_tx)) {
            let _ = std::fs::remove_file(&transfer.path);
            return Err(e);
        }
        self.transfers.insert(
            id,
            Active {
                transfer: transfer.clone(),
                local_done: false,
                server_done: false,
            },
        );
        let task = tokio::spawn(download_task(
            self.data_addr,
            transfer.clone(),
            tokio::fs::File::from_std(file),
            written_rx,
            self.config.timeout,
            self.internal_tx.clone(),
        ));
        self.tasks.push(task.abort_handle());
        Ok(transfer)
    }

    fn start_upload(&mut self, transfer: Transfer) {
        self.transfers.insert(
            transfer.id.clone(),
            Active {
                transfer: transfer.clone(),
                local_done: false,
                server_done: false,
            },
        );
        let task = tokio::spawn(upload_task(
            self.data_addr,
            transfer,
            self.config.timeout,
            self.internal_tx.clone(),
        ));
        self.tasks.push(task.abort_handle());
    }
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut lines: mpsc::UnboundedReceiver<Outgoing>,
    internal: mpsc::UnboundedSender<Internal>,
    timeout: Duration,
) {
    while let Some(line) = lines.recv().await {
        // A server that stops reading must not keep this task forever.
        let written = match tokio::time::timeout(timeout, writer.write_all(&line.bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("a write took longer than {}", show_duration(timeout)),
            )),
        };
        if let Err(e) = written {
            let _ = internal.send(Internal::WriteFailed(e));
            return;
        }
        if let Some(written) = line.written {
            let _ = written.send(());
        }
    }
    let _ = tokio::time::timeout(timeout, writer.shutdown()).await;
}

/// SHA-256 (lowercase hex) and size of a file.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The name a peer's `filename` is saved under: its last path component, control characters
/// dropped; `download` if nothing is left.
pub fn safe_filename(filename: &str) -> String {
    let last = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    match last.trim() {
        "" | "." | ".." => "download".into(),
        _ => last,
    }
}

/// Creates a new file for `filename` in `dir`, never overwriting: `name.ext`, then
/// `name (1).ext`, `name (2).ext`, ...
fn create_unique(dir: &Path, filename: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = safe_filename(filename);
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name.as_str(), ""),
    };
    for n in 0..10_000 {
        let candidate = if n == 0 {
            dir.join(&name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "10,000 files of that name exist already",
    ))
}

/// Reports progress every tenth of the size (every MiB if the size is unknown).
#[derive(Debug)]
struct Progress {
    total: Option<u64>,
    next: u64,
}

impl Progress {
    const UNKNOWN_STEP: u64 = 1024 * 1024;

    fn new(total: Option<u64>) -> Self {
        let mut progress = Self { total, next: 0 };
        progress.next = progress.step();
        progress
    }

    fn step(&self) -> u64 {
        match self.total {
            Some(total) => (total / 10).max(1),
            None => Self::UNKNOWN_STEP,
        }
    }

    /// Whether `done` bytes is worth a report.
    fn update(&mut self, done: u64) -> bool {
        if done < self.next {
            return false;
        }
        let step = self.step();
        while self.next <= done {
            self.next += step;
        }
        true
    }
}

/// Connects to the data channel, says hello and waits for `READY`. Returns the stream and
/// any bytes read after `READY` (the file's first bytes).
async fn open_data(
    addr: SocketAddr,
    hello: DataHello,
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), TransferError> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| TransferError::Timeout {
            what: "connecting to the data channel",
            timeout,
        })?
        .map_err(|source| TransferError::Connect { addr, source })?;
    let mut line = Vec::new();
    hello.encode(&mut line);
    stream.write_all(&line).await.map_err(TransferError::Io)?;
    let mut decoder = LineDecoder::with_max_line(MAX_DATA_REPLY);
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + timeout;
    loop {
        match decoder.next_line() {
            Ok(Some(line)) => {
                return match DataReply::parse(&line) {
                    Some(DataReply::Ready) => Ok((stream, decoder.take_buffered())),
                    Some(DataReply::Error(reason)) => Err(TransferError::Refused { reason }),
                    None => Err(TransferError::BadReply {
                        line: String::from_utf8_lossy(&line).into_owned(),
                    }),
                };
            }
            Ok(None) => {}
            Err(_) => {
                return Err(TransferError::BadReply {
                    line: format!("a line over {MAX_DATA_REPLY} bytes"),
                });
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .map_err(|_| TransferError::Timeout {
                what: "waiting for READY on the data channel",
                timeout,
            })?
            .map_err(TransferError::Io)?;
        if n == 0 {
            return Err(TransferError::NoReady);
        }
        decoder.feed(&buf[..n]);
    }
}

async fn upload_task(
    addr: SocketAddr,
    transfer: Transfer,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Internal>,
) {
    let event = match upload(addr, &transfer, timeout, &tx).await {
        Ok(bytes) => Event::Uploaded { transfer, bytes },
        Err(error) => Event::TransferFailed { transfer, error },
    };
    let _ = tx.send(Internal::Finished(event));
}

async fn upload(
    addr: SocketAddr,
    transfer: &Transfer,
    timeout: Duration,
    tx: &mpsc::UnboundedSender<Internal>,
) -> Result<u64, TransferError> {
    let read_error = |source| TransferError::Read {
        path: transfer.path.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&transfer.path)
        .await
        .map_err(read_error)?;
    let (mut stream, _) = open_data(addr, DataHello::Upload(transfer.id.clone()), timeout).await?;
    let mut progress = Progress::new(transfer.size);
    let mut buf = vec![0; CHUNK];
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(read_error)?;
        if n == 0 {
            break;
        }
        tokio::time::timeout(timeout, stream.write_all(&buf[..n]))
            .await
            .map_err(|_| TransferError::Timeout {
                what: "sending the file",
                timeout,
            })?
            .map_err(TransferError::Io)?;
        sent += n as u64;
        if progress.update(sent) {
            let _ = tx.send(Internal::Event(Event::Progress {
                transfer: transfer.clone(),
                done: sent,
                total: transfer.size,
            }));
        }
    }
    stream.shutdown().await.map_err(TransferError::Io)?;
    // Wait for the server to close its side, so that the bytes are not cut off by a reset.
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(timeout, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    Ok(sent)
}

async fn download_task(
    addr: SocketAddr,
    transfer: Transfer,
    file: tokio::fs::File,
    response_written: oneshot::Receiver<()>,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Internal>,
) {
    // The server learns the transfer id from the response: say hello on the data channel
    // only after it is on the wire.
    let _ = tokio::time::timeout(timeout, response_written).await;
    let event = match download(addr, &transfer, file, timeout, &tx).await {
        Ok((size, checksum)) => {
            let verdict = verdict(&transfer, size, &checksum);
            Event::Downloaded {
                transfer,
                size,
                checksum,
                verdict,
            }
        }
        Err((received, error)) => {
            if received == 0 {
                let _ = tokio::fs::remove_file(&transfer.path).await;
            }
            Event::TransferFailed { transfer, error }
        }
    };
    let _ = tx.send(Internal::Finished(event));
}

/// Receives the file to EOF; its size and SHA-256, or the bytes received and the error.
async fn download(
    addr: SocketAddr,
    transfer: &Transfer,
    file: tokio::fs::File,
    timeout: Duration,
    tx: &mpsc::UnboundedSender<Internal>,
) -> Result<(u64, String), (u64, TransferError)> {
    let (mut stream, first) = open_data(addr, DataHello::Download(transfer.id.clone()), timeout)
        .await
        .map_err(|e| (0, e))?;
    let mut sink = Sink {
        transfer,
        file,
        hasher: Sha256::new(),
        received: 0,
        progress: Progress::new(transfer.size),
        tx,
    };
    let mut more = sink.take(&first).await?;
    let mut buf = vec![0; CHUNK];
    while more {
        let n = tokio::time::timeout(timeout, stream.read(&mut buf))
            .await
            .map_err(|_| {
                (
                    sink.received,
                    TransferError::Timeout {
                        what: "waiting for the file's next bytes",
                        timeout,
                    },
                )
            })?
            .map_err(|e| (sink.received, TransferError::Io(e)))?;
        if n == 0 {
            break;
        }
        more = sink.take(&buf[..n]).await?;
    }
    let received = sink.received;
    sink.file.flush().await.map_err(|source| {
        (
            received,
            TransferError::Write {
                path: transfer.path.clone(),
                source,
            },
        )
    })?;
    Ok((received, hex::encode(sink.hasher.finalize())))
}

/// Where a download's bytes go: the file, the hash, the progress reports.
struct Sink<'a> {
    transfer: &'a Transfer,
    file: tokio::fs::File,
    hasher: Sha256,
    received: u64,
    progress: Progress,
    tx: &'a mpsc::UnboundedSender<Internal>,
}

impl Sink<'_> {
    /// Takes a chunk; `Ok(false)` once more than the declared size came (stop there rather
    /// than fill the disk).
    async fn take(&mut self, chunk: &[u8]) -> Result<bool, (u64, TransferError)> {
        if chunk.is_empty() {
            return Ok(true);
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await.map_err(|source| {
            (
                self.received,
                TransferError::Write {
                    path: self.transfer.path.clone(),
                    source,
                },
            )
        })?;
        self.received += chunk.len() as u64;
        if self.progress.update(self.received) {
            let _ = self.tx.send(Internal::Event(Event::Progress {
                transfer: self.transfer.clone(),
                done: self.received,
                total: self.transfer.size,
            }));
        }
        Ok(self.transfer.size.is_none_or(|size| self.received <= size))
    }
}

fn verdict(transfer: &Transfer, size: u64, checksum: &str) -> Verdict {
    if let Some(expected) = transfer.size
        && expected != size
    {
        return Verdict::SizeMismatch {
            expected,
            actual: size,
        };
    }
    match &transfer.checksum {
        Some(expected) if !expected.eq_ignore_ascii_case(checksum) => Verdict::ChecksumMismatch {
            expected: expected.clone(),
            actual: checksum.to_owned(),
        },
        Some(_) => Verdict::Verified,
        None if transfer.size.is_some() => Verdict::SizeOnly,
        None => Verdict::Unverified,
    }
}

// ---------------------------------------------------------------------------------------
// Human-readable text

/// What an error or reason code means, in words.
pub fn code_text(code: Code) -> &'static str {
    match code {
        code::NAME_IN_USE => "username already in use",
        code::INVALID_USERNAME => "invalid username (3 to 14 letters, digits or underscores)",
        code::ALREADY_LOGGED_IN => "already logged in on this connection",
        code::NOT_LOGGED_IN => "not logged in",
        code::USER_NOT_FOUND => "recipient not found",
        code::INSUFFICIENT_PLAYERS => "not enough players to start the game",
        code::GAME_ALREADY_STARTED => "the game has already started",
        code::ALREADY_JOINED => "already joined the game",
        code::NO_GAME => "no game is running",
        code::MESSAGE_TO_SELF => "cannot send messages to yourself",
        code::EMPTY_MESSAGE => "empty message",
        code::PONG_TIMEOUT => "pong timeout",
        code::LINE_TOO_LONG => "message too long or unterminated",
        code::NO_GAME_TO_GUESS => "no game to guess in",
        code::CANNOT_GUESS_NOW => {
            "cannot guess now (the game has not started, or you guessed right already)"
        }
        code::INVALID_GUESS => "invalid guess (not a whole number)",
        code::GUESS_TOO_LOW => "your guess is too low",
        code::GUESS_TOO_HIGH => "your guess is too high",
        code::GUESS_OUT_OF_RANGE => "number out of the allowed range (1 to 50)",
        code::PONG_WITHOUT_PING => "pong without ping",
        code::NOT_PARTICIPATING => "you are not participating in the game",
        code::NO_RESULTS => "no game results (nobody guessed the number)",
        code::FILE_TOO_LARGE => "the file is too large",
        code::INVALID_CHECKSUM => "invalid checksum format",
        code::FILE_REJECTED => "the receiver rejected the file",
        code::TRANSFER_MISMATCH => "the bytes sent do not match the declared size or checksum",
        code::TRANSFER_FAILED => "the transfer did not complete",
        code::INVALID_TRANSFER_ID => "invalid or duplicate transfer id",
        code::NO_PENDING_TRANSFER => "no file transfer from that sender is waiting",
        _ => "unknown error code",
    }
}

/// The reason of a `DSCN` in words, code included.
pub fn dscn_text(reason: Option<Code>) -> String {
    match reason {
        Some(code) => format!("{} ({code})", code_text(code)),
        None => "no reason given".into(),
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Text from a peer, safe to print: control characters escaped (no terminal escapes).
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn refused(what: &str, code: Code) -> String {
    format!("{what}: {} ({code})", code_text(code))
}

fn size_text(size: Option<u64>) -> String {
    size.map_or_else(|| "size not given".into(), |s| format!("{s} bytes"))
}

fn results_text(results: &[GameResult]) -> String {
    let mut text = String::from("game results:");
    for (i, result) in results.iter().enumerate() {
        let winner = if i == 0 { "winner, " } else { "" };
        text.push_str(&format!(
            "\n  {}. {} ({winner}{} ms)",
            i + 1,
            clean(&result.username),
            result.time_ms
        ));
    }
    if results.is_empty() {
        text.push_str(" none");
    }
    text
}

/// How an event reads to a person; `None` for what is not worth a line (a `PING`, unless
/// `verbose`).
pub fn describe(event: &Event, verbose: bool) -> Option<String> {
    Some(match event {
        Event::Message(message) => describe_message(message),
        Event::Pinged => {
            if !verbose {
                return None;
            }
            "PING answered with PONG".into()
        }
        Event::Malformed { line, problem } => {
            format!(
                "the server sent a line that is no message ({problem}): {:?}",
                clean(line)
            )
        }
        Event::KeyRequested { requester } => format!(
            "{} wants to send you an encrypted message: public key sent",
            clean(requester)
        ),
        Event::SecureSent { receiver } => format!("encrypted message sent to {}", clean(receiver)),
        Event::SecureFailed { receiver, error } => format!(
            "encrypted message to {} not sent: {}",
            clean(receiver),
            chain(error)
        ),
        Event::SecureRefused { receiver, code, .. } => {
            let to = receiver
                .as_deref()
                .map(|r| format!(" to {}", clean(r)))
                .unwrap_or_default();
            refused(&format!("encrypted message{to} refused"), *code)
        }
        Event::SecureMessage { envelope, text } => match text {
            Ok(text) => format!("[encrypted] <{}> {}", clean(&envelope.sender), clean(text)),
            Err(e) => format!(
                "an encrypted message from {} does not decrypt: {}",
                clean(&envelope.sender),
                chain(e)
            ),
        },
        Event::FileOffer { offer, accepted } => {
            let what = format!(
                "{} offers {:?} ({}, sha256 {})",
                clean(&offer.sender),
                clean(&offer.filename),
                size_text(offer.size),
                offer.checksum.as_deref().map_or("not given".into(), clean),
            );
            match accepted {
                None => format!("{what}: /accept {0} or /reject {0}", clean(&offer.sender)),
                Some(Ok(transfer)) => {
                    format!("{what}: accepted, saving to {}", transfer.path.display())
                }
                Some(Err(e)) => format!("{what}: cannot accept it: {}", chain(e)),
            }
        }
        Event::FileRequested { request } => format!(
            "asked {} to accept {:?} ({} bytes, sha256 {})",
            clean(&request.receiver),
            clean(&request.filename),
            request.size,
            request.checksum
        ),
        Event::FileNotSent {
            receiver,
            path,
            error,
        } => format!(
            "cannot send {} to {}: {}",
            path.display(),
            clean(receiver),
            chain(error)
        ),
        Event::FileAccepted { transfer } => format!(
            "{} accepted {:?}: uploading",
            clean(&transfer.peer),
            clean(&transfer.filename)
        ),
        Event::FileRefused { request, code } => {
            let what = match request {
                Some(r) => format!(
                    "file transfer of {:?} to {} refused",
                    clean(&r.filename),
                    clean(&r.receiver)
                ),
                None => "file transfer refused".into(),
            };
            refused(&what, *code)
        }
        Event::Progress {
            transfer,
            done,
            total,
        } => {
            let share = match total {
                Some(total) if *total > 0 => format!("/{total} bytes ({}%)", done * 100 / total),
                _ => " bytes".into(),
            };
            format!(
                "{} {:?}: {done}{share}",
                transfer.direction.noun(),
                clean(&transfer.filename)
            )
        }
        Event::Uploaded { transfer, bytes } => format!(
            "uploaded {:?} to {}: {bytes} bytes",
            clean(&transfer.filename),
            clean(&transfer.peer)
        ),
        Event::Downloaded {
            transfer,
            size,
            checksum,
            verdict,
        } => {
            let what = format!(
                "downloaded {:?} from {} to {}: {size} bytes",
                clean(&transfer.filename),
                clean(&transfer.peer),
                transfer.path.display()
            );
            match verdict {
                Verdict::Verified => format!("{what}, verified (size and SHA-256 match)"),
                Verdict::SizeOnly => {
                    format!("{what}, size verified (no checksum declared; sha256 {checksum})")
                }
                Verdict::Unverified => {
                    format!(
                        "{what}, not verified (no size or checksum declared; sha256 {checksum})"
                    )
                }
                Verdict::SizeMismatch { expected, actual } => {
                    format!("{what}: MISMATCH: {expected} bytes declared, {actual} received")
                }
                Verdict::ChecksumMismatch { expected, actual } => format!(
                    "{what}: MISMATCH: SHA-256 {actual}, but {} declared",
                    clean(expected)
                ),
            }
        }
        Event::TransferFailed { transfer, error } => format!(
            "{} of {:?} failed: {}",
            transfer.direction.noun(),
            clean(&transfer.filename),
            chain(error)
        ),
        Event::TransferComplete {
            transfer,
            transfer_id,
            result,
            size,
            checksum,
        } => {
            let what = match transfer {
                Some(t) => format!("{:?}", clean(&t.filename)),
                None => format!("transfer {}", clean(transfer_id)),
            };
            match result {
                Ok(()) => format!(
                    "server: {what} transferred, {size} bytes, sha256 {}",
                    clean(checksum)
                ),
                Err(code) => refused(&format!("server: {what} failed"), *code),
            }
        }
        Event::Closed { error, .. } => match error {
            Some(e) => format!("the connection to the server failed: {e}"),
            None => "the server closed the connection".into(),
        },
    })
}

fn describe_message(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Welcome { msg } => format!("server: {}", clean(msg)),
        ServerMessage::LoginResp(Ok(())) => "logged in".into(),
        ServerMessage::LoginResp(Err(code)) => refused("login refused", *code),
        ServerMessage::BroadcastResp(Ok(())) => "message sent".into(),
        ServerMessage::BroadcastResp(Err(code)) => refused("broadcast refused", *code),
        ServerMessage::Broadcast { username, message } => {
            format!("<{}> {}", clean(username), clean(message))
        }
        ServerMessage::Joined { username } => format!("* {} joined", clean(username)),
        ServerMessage::Left { username } => format!("* {} left", clean(username)),
        ServerMessage::Ping => "PING".into(),
        ServerMessage::PongError { code } => refused("PONG refused", *code),
        ServerMessage::Dscn { reason } => {
            format!("disconnected by the server: {}", dscn_text(*reason))
        }
        ServerMessage::ByeResp(Ok(())) => "bye".into(),
        ServerMessage::ByeResp(Err(code)) => refused("BYE refused", *code),
        ServerMessage::UnknownCommand => {
            "the server does not know that command (UNKNOWN_COMMAND)".into()
        }
        ServerMessage::ParseError => "the server could not parse that message (PARSE_ERROR)".into(),
        ServerMessage::ListUsersResp(Ok(users)) => {
            let names: Vec<String> = users.iter().map(|u| clean(u)).collect();
            format!("users online ({}): {}", names.len(), names.join(", "))
        }
        ServerMessage::ListUsersResp(Err(code)) => refused("cannot list the users", *code),
        ServerMessage::PrivateMessageResp(Ok(())) => "private message sent".into(),
        ServerMessage::PrivateMessageResp(Err(code)) => refused("private message refused", *code),
        ServerMessage::PrivateMessage { sender, message } => {
            format!("[private] <{}> {}", clean(sender), clean(message))
        }
        ServerMessage::StartGameResp(Ok(())) => {
            "game: OK (a new game waits for players to /game join; a started game takes \
             /guess N, 1 to 50)"
                .into()
        }
        ServerMessage::StartGameResp(Err(code)) => refused("game not started", *code),
        ServerMessage::GameNotification(Ok(())) => {
            "a guessing game is starting: /game join to take part".into()
        }
        ServerMessage::GameNotification(Err(code)) => refused("game notification", *code),
        ServerMessage::JoinGameResp(Ok(())) => "you joined the game".into(),
        ServerMessage::JoinGameResp(Err(code)) => refused("cannot join the game", *code),
        ServerMessage::GuessNumberResp(Ok(result)) => format!("guess: {}", clean(result)),
        ServerMessage::GuessNumberResp(Err(
            code @ (code::GUESS_TOO_LOW | code::GUESS_TOO_HIGH | code::GUESS_OUT_OF_RANGE),
        )) => format!("guess: {} ({code})", code_text(*code)),
        ServerMessage::GuessNumberResp(Err(code)) => refused("guess refused", *code),
        ServerMessage::GameResults(Ok(results)) => results_text(results),
        ServerMessage::GameResults(Err(code)) => refused("game over", *code),
        other => format!("server: {}", clean(&other.to_string())),
    }
}

// ---------------------------------------------------------------------------------------
// The command line

/// The commands of the interactive client, for `/help` and `--help`.
pub const COMMANDS: &str = "\
Commands:
  TEXT                 broadcast TEXT to everyone (//TEXT sends a TEXT that starts with /)
  /users               list the users online
  /msg NAME TEXT       private message
  /secure NAME TEXT    end-to-end encrypted message (RSA-OAEP key wrap, AES-256-GCM)
  /game start          start a guessing game; /game join joins one
  /guess N             guess the number
  /send NAME PATH      offer a file; it is uploaded when NAME accepts
  /accept NAME         accept NAME's oldest file offer (saved in --download-dir)
  /reject NAME         reject it
  /wait DURATION       only show what arrives, e.g. /wait 2s (for scripts)
  /raw LINE            send LINE as it is
  /help                this list
  /quit                say BYE and leave";

/// Chat with a chat server: an interactive line client.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Chat with a chat server (specs/chat.md): connect, show the WELCOME, log in, \
        then read commands from standard input while printing what arrives. PINGs are \
        answered by themselves.\n\n\
        When standard input is not a terminal the client runs it as a script: one command a \
        line, each waiting for its reply (or --timeout) before the next; at the end of the \
        input it waits for file transfers in progress, says BYE and leaves.",
    after_help = "\
Commands:
  TEXT                 broadcast TEXT (//TEXT sends a TEXT that starts with /)
  /users               list the users online
  /msg NAME TEXT       private message
  /secure NAME TEXT    end-to-end encrypted message: RSA-2048 OAEP-SHA-256 key wrap,
                       AES-256-GCM; the server only relays ciphertext
  /game start          start a guessing game; /game join joins one
  /guess N             guess the number
  /send NAME PATH      offer a file (size and SHA-256 declared); uploaded over the
                       data channel when NAME accepts
  /accept NAME         accept NAME's oldest file offer; it is saved in --download-dir
                       (never overwriting) and its size and SHA-256 verified
  /reject NAME         reject it
  /wait DURATION       only show what arrives for a while, e.g. /wait 2s
  /raw LINE            send LINE as it is
  /help                this list
  /quit                say BYE and leave

Examples:
  reference chat-client --username alice
  printf 'hello\\n/users\\n/msg bob hi\\n' | reference chat-client --username alice
  reference chat-client --target 10.0.0.5:1337 --username bob --auto-accept --download-dir inbox

Exit codes: 0 left with BYE; 1 the login was refused, or the server dropped the connection
(DSCN 7000 pong timeout, 7001 message too long); 2 usage or connection error."
)]
pub struct ChatClientArgs {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1337")]
    pub target: String,

    /// Name to log in with: 3 to 14 letters, digits or underscores.
    #[arg(long)]
    pub username: String,

    /// Port of the server's data channel for file transfers. Default: the port of --target
    /// plus one.
    #[arg(long, value_name = "PORT")]
    pub data_port: Option<u16>,

    /// Where accepted files are saved. A file of the same name is never overwritten: the
    /// new one gets a suffix, ` (1)`, ` (2)`, ...
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub download_dir: PathBuf,

    /// Accept every file offered.
    #[arg(long)]
    pub auto_accept: bool,

    /// Also show PINGs and the PONGs answered.
    #[arg(long, short)]
    pub verbose: bool,

    /// How long to wait for a connection, a reply, or a transfer's next bytes: 10s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// This client's RSA private key (PEM PKCS#8) instead of a fresh 2048-bit one.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Give a header another name on the wire, for a server that spells it differently:
    /// HEADER=NEW_NAME, e.g. LIST_USERS_REQ=USER_LIST_REQ or 'LOGIN=LOGIN REQ'. Repeatable.
    #[arg(long, value_name = "FROM=TO")]
    pub rename: Vec<String>,
}

/// A line of input.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Broadcast(String),
    Users,
    Msg { to: String, text: String },
    Secure { to: String, text: String },
    GameStart,
    GameJoin,
    Guess(Guess),
    Send { to: String, path: PathBuf },
    Accept(String),
    Reject(String),
    Wait(Duration),
    Raw(String),
    Help,
    Quit,
}

/// Parses one line of input; `None` for an empty line.
fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(text) = line.strip_prefix("//") {
        return Ok(Some(Command::Broadcast(format!("/{text}"))));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Some(Command::Broadcast(line.to_owned())));
    };
    let (word, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim_start();
    let name_and_text = |usage: &str| -> Result<(String, String), String> {
        match rest.split_once(' ') {
            Some((name, text)) if !name.is_empty() => Ok((name.to_owned(), text.to_owned())),
            _ => Err(format!("usage: {usage}")),
        }
    };
    let name = |usage: &str| -> Result<String, String> {
        let name = rest.trim();
        if name.is_empty() || name.contains(' ') {
            Err(format!("usage: {usage}"))
        } else {
            Ok(name.to_owned())
        }
    };
    Ok(Some(match word.to_ascii_lowercase().as_str() {
        "users" => Command::Users,
        "msg" => {
            let (to, text) = name_and_text("/msg NAME TEXT")?;
            Command::Msg { to, text }
        }
        "secure" => {
            let (to, text) = name_and_text("/secure NAME TEXT")?;
            Command::Secure { to, text }
        }
        "game" => match rest.trim().to_ascii_lowercase().as_str() {
            "start" => Command::GameStart,
            "join" => Command::GameJoin,
            _ => return Err("usage: /game start or /game join".into()),
        },
        "guess" => {
            let n = rest.trim();
            if n.is_empty() {
                return Err("usage: /guess N".into());
            }
            // Anything not a number is sent as a string: the server's answer is the test.
            Command::Guess(match n.parse::<i64>() {
                Ok(n) => Guess::Number(n),
                Err(_) => Guess::Invalid(serde_json::Value::String(n.to_owned())),
            })
        }
        "send" => {
            let (to, path) = name_and_text("/send NAME PATH")?;
            if path.trim().is_empty() {
                return Err("usage: /send NAME PATH".into());
            }
            Command::Send {
                to,
                path: PathBuf::from(path.trim()),
            }
        }
        "accept" => Command::Accept(name("/accept NAME")?),
        "reject" => Command::Reject(name("/reject NAME")?),
        "wait" => Command::Wait(parse_duration(rest).map_err(|e| format!("/wait: {e}"))?),
        "raw" => Command::Raw(rest.to_owned()),
        "help" | "?" => Command::Help,
        "quit" | "exit" | "bye" => Command::Quit,
        _ => return Err(format!("unknown command /{word}; /help lists the commands")),
    }))
}

/// What a script waits for before its next command.
#[derive(Debug)]
enum Until {
    /// A message with this header (or one that ends any wait).
    Reply(Header),
    /// The end of a secure message's exchange.
    Secure,
    /// No file transfer in progress.
    Transfers,
    /// Only the deadline (`/wait`).
    Deadline,
    /// `BYE_RESP`.
    Bye,
}

impl Until {
    fn done(&self, event: &Event, client: &ChatClient) -> bool {
        if let Event::Message(
            ServerMessage::UnknownCommand | ServerMessage::ParseError | ServerMessage::Dscn { .. },
        ) = event
        {
            return !matches!(self, Until::Deadline);
        }
        match self {
            Until::Reply(header) => matches!(event, Event::Message(m) if m.header() == *header),
            Until::Secure => matches!(
                event,
                Event::SecureSent { .. } | Event::SecureFailed { .. } | Event::SecureRefused { .. }
            ),
            Until::Transfers => client.active_transfers() == 0,
            Until::Deadline => false,
            Until::Bye => matches!(event, Event::Message(ServerMessage::ByeResp(_))),
        }
    }
}

/// A failure before the session starts: the message and the exit code.
#[derive(Debug)]
struct Fatal {
    message: String,
    code: u8,
}

/// Exit code of a refused login or a dropped connection.
const FAILED: u8 = 1;
/// Exit code of a usage or connection error.
const SETUP: u8 = 2;

impl ChatClientArgs {
    /// The client settings these flags ask for.
    fn config(&self) -> Result<ClientConfig, String> {
        let mut dialect = Dialect::default();
        for rule in &self.rename {
            dialect
                .headers
                .apply(rule)
                .map_err(|e| format!("--rename {rule}: {e}"))?;
        }
        let keys = match &self.key {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --key {}: {e}", path.display()))?;
                let keys = KeyPair::from_pkcs8_pem(&pem)
                    .map_err(|e| format!("--key {}: {}", path.display(), chain(&e)))?;
                Some(Arc::new(keys))
            }
            None => None,
        };
        if !self.download_dir.is_dir() {
            return Err(format!(
                "--download-dir {} is not a directory",
                self.download_dir.display()
            ));
        }
        Ok(ClientConfig {
            data_port: self.data_port,
            download_dir: self.download_dir.clone(),
            auto_accept: self.auto_accept,
            timeout: self.timeout,
            keys,
            dialect,
            ..ClientConfig::default()
        })
    }
}

/// Runs `reference chat-client`; returns the exit code: 0 left with BYE, 1 the login was
/// refused or the connection dropped, 2 usage or connection error.
pub async fn run(args: ChatClientArgs) -> u8 {
    let interactive = std::io::stdin().is_terminal();
    let input = stdin_lines();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    run_with(&args, input, interactive, &mut out, &mut err).await
}

/// Reads standard input on a thread of its own, so that a pending read never keeps the
/// program from exiting.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// [`run`] with its input and output given: `input` yields lines and ends at end of input;
/// `interactive` sends every command at once instead of waiting for its reply.
pub async fn run_with(
    args: &ChatClientArgs,
    input: mpsc::Receiver<String>,
    interactive: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    match start(args).await {
        Ok(client) => {
            let mut session = Session {
                client,
                out,
                err,
                verbose: args.verbose,
                interactive,
                timeout: args.timeout,
                bye_sent: false,
                bye_ok: false,
                game_requested: false,
            };
            session.run(input).await
        }
        Err(fatal) => {
            let _ = writeln!(err, "error: {}", fatal.message);
            fatal.code
        }
    }
}

async fn start(args: &ChatClientArgs) -> Result<ChatClient, Fatal> {
    let setup = |message: String| Fatal {
        message,
        code: SETUP,
    };
    let config = args.config().map_err(setup)?;
    let addr = tokio::net::lookup_host(&args.target)
        .await
        .map_err(|e| setup(format!("cannot resolve --target {}: {e}", args.target)))?
        .next()
        .ok_or_else(|| setup(format!("--target {} resolves to no address", args.target)))?;
    let mut client = ChatClient::connect(addr, config)
        .await
        .map_err(|e| match e {
            ChatError::Connect { .. } => setup(format!(
                "{} (is the chat server running there? --target sets the address)",
                chain(&e)
            )),
            ChatError::Disconnected { .. } | ChatError::Closed => Fatal {
                message: chain(&e),
                code: FAILED,
            },
            e => setup(chain(&e)),
        })?;
    client.login(&args.username).await.map_err(|e| Fatal {
        message: chain(&e),
        code: if matches!(e, ChatError::Keys(_)) {
            SETUP
        } else {
            FAILED
        },
    })?;
    Ok(client)
}

struct Session<'a> {
    client: ChatClient,
    out: &'a mut (dyn Write + Send),
    err: &'a mut (dyn Write + Send),
    verbose: bool,
    interactive: bool,
    timeout: Duration,
    bye_sent: bool,
    bye_ok: bool,
    /// A `START_GAME_REQ` waits for its first `START_GAME_RESP`.
    game_requested: bool,
}

impl Session<'_> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn warn(&mut self, text: &str) {
        let _ = writeln!(self.err, "error: {text}");
    }

    async fn run(&mut self, mut input: mpsc::Receiver<String>) -> u8 {
        let welcome = format!("server: {}", clean(self.client.welcome()));
        self.say(&welcome);
        let name = self.client.username().unwrap_or_default().to_owned();
        if self.interactive {
            self.say(&format!(
                "logged in as {}; /help lists the commands",
                clean(&name)
            ));
        } else {
            self.say(&format!("logged in as {}", clean(&name)));
        }
        let mut input_open = true;
        // Script mode: leave once the transfers are done.
        let mut leaving = false;
        let mut wait: Option<(Until, Instant)> = None;
        loop {
            if wait.is_none() && leaving && !self.bye_sent {
                if !self.interactive && self.client.active_transfers() > 0 {
                    wait = Some((Until::Transfers, Instant::now() + self.timeout));
                } else {
                    match self.client.send(&ClientMessage::Bye) {
                        Ok(()) => {
                            self.bye_sent = true;
                            wait = Some((Until::Bye, Instant::now() + self.timeout));
                        }
                        Err(_) => return FAILED,
                    }
                }
            }
            let take_input = input_open && !leaving && (self.interactive || wait.is_none());
            let deadline = wait.as_ref().map(|(_, deadline)| *deadline);
            tokio::select! {
                line = input.recv(), if take_input => match line {
                    Some(line) => match parse_command(&line) {
                        Ok(Some(Command::Quit)) => leaving = true,
                        Ok(Some(Command::Wait(duration))) => {
                            if !self.interactive {
                                wait = Some((Until::Deadline, Instant::now() + duration));
                            }
                        }
                        Ok(Some(command)) => {
                            if let Some(until) = self.command(command)
                                && !self.interactive
                            {
                                wait = Some((until, Instant::now() + self.timeout));
                            }
                            if let Some((Until::Transfers, _)) = &wait
                                && self.client.active_transfers() == 0
                            {
                                wait = None;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => self.warn(&e),
                    },
                    None => {
                        input_open = false;
                        leaving = true;
                    }
                },
                event = self.client.next_event() => {
                    let event = match event {
                        Ok(event) => event,
                        Err(_) => return self.closed(),
                    };
                    let text = match &event {
                        Event::Message(ServerMessage::StartGameResp(result)) => {
                            // The initiator's first START_GAME_RESP opens the join window;
                            // the next (everyone's) starts the game.
                            let requested = std::mem::take(&mut self.game_requested);
                            match result {
                                Ok(()) if requested => {
                                    Some("game created: waiting for players to /game join".into())
                                }
                                Ok(()) => Some(
                                    "the game has started: guess a number from 1 to 50 with \
                                     /guess N"
                                        .into(),
                                ),
                                Err(_) => describe(&event, self.verbose),
                            }
                        }
                        Event::Closed { error: None, .. } if self.bye_ok => None,
                        _ => describe(&event, self.verbose),
                    };
                    if let Some(text) = text {
                        self.say(&text);
                    }
                    if let Event::Message(ServerMessage::ByeResp(_)) = event {
                        self.bye_ok = true;
                    }
                    if let Event::Closed { .. } = event {
                        return self.closed();
                    }
                    if let Some((until, deadline)) = &mut wait {
                        if until.done(&event, &self.client) {
                            wait = None;
                        } else if matches!(event, Event::Progress { .. })
                            && !matches!(until, Until::Deadline)
                        {
                            *deadline = Instant::now() + self.timeout;
                        }
                    }
                    if self.bye_ok && wait.is_none() {
                        // The server closes after BYE_RESP; give it the timeout to do so.
                        wait = Some((Until::Deadline, Instant::now() + self.timeout));
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    let Some((until, _)) = wait.take() else { continue };
                    match until {
                        Until::Deadline if self.bye_ok => return 0,
                        Until::Deadline => {}
                        Until::Bye => {
                            self.warn(&format!(
                                "no BYE_RESP within {}",
                                show_duration(self.timeout)
                            ));
                            return FAILED;
                        }
                        Until::Transfers => self.warn(&format!(
                            "file transfers still in progress after {}",
                            show_duration(self.timeout)
                        )),
                        until => self.warn(&format!(
                            "no reply within {} ({until:?})",
                            show_duration(self.timeout)
                        )),
                    }
                    if leaving && !self.bye_sent && !self.interactive {
                        // Do not wait for the transfers again.
                        match self.client.send(&ClientMessage::Bye) {
                            Ok(()) => {
                                self.bye_sent = true;
                                wait = Some((Until::Bye, Instant::now() + self.timeout));
                            }
                            Err(_) => return FAILED,
                        }
                    }
                }
            }
        }
    }

    /// The exit code once the connection is closed.
    fn closed(&mut self) -> u8 {
        if self.bye_ok {
            return 0;
        }
        match self.client.disconnect_reason() {
            Some(reason) => self.warn(&format!(
                "disconnected by the server: {}",
                dscn_text(Some(reason))
            )),
            None => self.warn("the server closed the connection"),
        }
        FAILED
    }

    /// Runs a command; what a script waits for before the next one.
    fn command(&mut self, command: Command) -> Option<Until> {
        let result = match command {
            Command::Help => {
                self.say(COMMANDS);
                Ok(None)
            }
            // Handled by the loop: they change how it waits.
            Command::Wait(_) | Command::Quit => Ok(None),
            Command::Broadcast(text) => self
                .client
                .broadcast(&text)
                .map(|()| Some(Until::Reply(Header::BroadcastResp))),
            Command::Users => self
                .client
                .list_users()
                .map(|()| Some(Until::Reply(Header::ListUsersResp))),
            Command::Msg { to, text } => self
                .client
                .private_message(&to, &text)
                .map(|()| Some(Until::Reply(Header::PrivateMessageResp))),
            Command::Secure { to, text } => {
                self.client.secure(&to, &text).map(|()| Some(Until::Secure))
            }
            Command::GameStart => self.client.start_game().map(|()| {
                self.game_requested = true;
                Some(Until::Reply(Header::StartGameResp))
            }),
            Command::GameJoin => self
                .client
                .join_game()
                .map(|()| Some(Until::Reply(Header::JoinGameResp))),
            Command::Guess(n) => self
                .client
                .guess(n)
                .map(|()| Some(Until::Reply(Header::GuessNumberResp))),
            Command::Send { to, path } => self
                .client
                .send_file(&to, &path)
                .map(|()| Some(Until::Transfers)),
            Command::Accept(sender) => self.client.accept_file(&sender).map(|transfer| {
                self.say(&format!(
                    "accepted {:?} from {}: saving to {}",
                    clean(&transfer.filename),
                    clean(&transfer.peer),
                    transfer.path.display()
                ));
                Some(Until::Transfers)
            }),
            Command::Reject(sender) => self.client.reject_file(&sender).map(|offer| {
                self.say(&format!(
                    "rejected {:?} from {}",
                    clean(&offer.filename),
                    clean(&offer.sender)
                ));
                None
            }),
            // No reply to wait for: what comes, comes.
            Command::Raw(line) => self.client.send_raw(&line).map(|()| None),
        };
        result.unwrap_or_else(|e| {
            self.warn(&chain(&e));
            None
        })
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse_command("hello world").unwrap(),
            Some(Command::Broadcast("hello world".into()))
        );
        assert_eq!(
            parse_command("//etc").unwrap(),
            Some(Command::Broadcast("/etc".into()))
        );
        assert_eq!(parse_command("  ").unwrap(), None);
        assert_eq!(
            parse_command("/msg bob hi there").unwrap(),
            Some(Command::Msg {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(
            parse_command("/secure bob s3cret").unwrap(),
            Some(Command::Secure {
                to: "bob".into(),
                text: "s3cret".into()
            })
        );
        assert_eq!(
            parse_command("/game start").unwrap(),
            Some(Command::GameStart)
        );
        assert_eq!(
            parse_command("/GAME JOIN").unwrap(),
            Some(Command::GameJoin)
        );
        assert_eq!(
            parse_command("/guess 42").unwrap(),
            Some(Command::Guess(Guess::Number(42)))
        );
        assert_eq!(
            parse_command("/guess abc").unwrap(),
            Some(Command::Guess(Guess::Invalid("abc".into())))
        );
        assert_eq!(
            parse_command("/send bob my file.txt").unwrap(),
            Some(Command::Send {
                to: "bob".into(),
                path: "my file.txt".into()
            })
        );
        assert_eq!(
            parse_command("/accept alice").unwrap(),
            Some(Command::Accept("alice".into()))
        );
        assert_eq!(
            parse_command("/wait 250ms").unwrap(),
            Some(Command::Wait(Duration::from_millis(250)))
        );
        assert_eq!(parse_command("/quit\r").unwrap(), Some(Command::Quit));
        assert_eq!(
            parse_command("/msg bob").unwrap_err(),
            "usage: /msg NAME TEXT"
        );
        assert_eq!(parse_command("/accept").unwrap_err(), "usage: /accept NAME");
        assert!(parse_command("/frobnicate").unwrap_err().contains("/help"));
    }

    #[test]
    fn safe_filenames() {
        assert_eq!(safe_filename("report.pdf"), "report.pdf");
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("C:\\x\\evil.exe"), "evil.exe");
        assert_eq!(safe_filename("a\u{1b}[31mb"), "a[31mb");
        assert_eq!(safe_filename(".."), "download");
        assert_eq!(safe_filename("dir/"), "download");
    }

    #[test]
    fn never_overwrites() {
        let dir = std::env::temp_dir().join(format!("chat-client-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let (a, _) = create_unique(&dir, "notes.txt").unwrap();
        let (b, _) = create_unique(&dir, "notes.txt").unwrap();
        let (c, _) = create_unique(&dir, "../notes.txt").unwrap();
        let (d, _) = create_unique(&dir, "README").unwrap();
        let (e, _) = create_unique(&dir, "README").unwrap();
        assert_eq!(a, dir.join("notes.txt"));
        assert_eq!(b, dir.join("notes (1).txt"));
        assert_eq!(c, dir.join("notes (2).txt"));
        assert_eq!(d, dir.join("README"));
        assert_eq!(e, dir.join("README (1)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn verdicts() {
        let mut t = Transfer {
            id: "x".into(),
            direction: TransferDirection::Download,
            peer: "alice".into(),
            filename: "f".into(),
            size: Some(3),
            checksum: Some("ABC".into()),
            path: "f".into(),
        };
        assert_eq!(verdict(&t, 3, "abc"), Verdict::Verified);
        assert_eq!(
            verdict(&t, 4, "abc"),
            Verdict::SizeMismatch {
                expected: 3,
                actual: 4
            }
        );
        assert!(matches!(
            verdict(&t, 3, "abd"),
            Verdict::ChecksumMismatch { .. }
        ));
        t.checksum = None;
        assert_eq!(verdict(&t, 3, "abc"), Verdict::SizeOnly);
        t.size = None;
        assert_eq!(verdict(&t, 3, "abc"), Verdict::Unverified);
    }

    #[test]
    fn progress_every_tenth() {
        let mut p = Progress::new(Some(100));
        let reported: Vec<u64> = (1..=100).filter(|&done| p.update(done)).collect();
        assert_eq!(reported, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        let mut p = Progress::new(Some(100));
        assert!(p.update(100));
        assert!(!p.update(100));
    }

    #[test]
    fn human_readable_codes() {
        let e = ChatError::LoginRefused { code: 5000 };
        assert_eq!(
            e.to_string(),
            "login refused: username already in use (5000)"
        );
        assert_eq!(
            describe(
                &Event::Message(ServerMessage::Dscn { reason: Some(7000) }),
                false
            )
            .unwrap(),
            "disconnected by the server: pong timeout (7000)"
        );
        assert_eq!(
            describe(
                &Event::Message(ServerMessage::Dscn { reason: Some(7001) }),
                false
            )
            .unwrap(),
            "disconnected by the server: message too long or unterminated (7001)"
        );
        assert_eq!(describe(&Event::Pinged, false), None);
        assert!(describe(&Event::Pinged, true).is_some());
        assert_eq!(
            describe(
                &Event::Message(ServerMessage::Broadcast {
                    username: "eve".into(),
                    message: "\u{1b}[2Jgotcha".into()
                }),
                false
            )
            .unwrap(),
            "<eve> \\u{1b}[2Jgotcha"
        );
        // Every code the spec and the server use has words.
        for code in [
            5000, 5001, 5002, 6000, 6001, 6002, 6003, 6004, 6005, 6007, 6008, 7000, 7001, 7002,
            7003, 7004, 7005, 7006, 7007, 8000, 8001, 9002, 10000, 10001, 10002, 10003, 10004,
            10005, 10006,
        ] {
            assert_ne!(code_text(code), "unknown error code", "{code}");
        }
    }

    #[test]
    fn session_key_estimate_matches_a_real_key() {
        assert_eq!(SESSION_KEY_B64_LEN, 344);
    }
}
