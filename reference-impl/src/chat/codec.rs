//! Bytes <-> messages of the chat protocol. Pure: no I/O, no async, never panics.
//!
//! ```text
//! stream   line*            a line ends in "\n", "\r\n" or a lone "\r"
//! line     HEADER           no body: counts as {}
//!          HEADER " " BODY  split at the first space; an empty or blank BODY counts as {}
//! BODY     one JSON object, UTF-8, nothing after it
//! limit    a line holds at most `max_line` bytes before its line end (MAX_LINE = 1024)
//!
//! out      HEADER "\n"                         PING, UNKNOWN_COMMAND, PARSE_ERROR, PONG, BYE, ...
//!          HEADER " " COMPACT_JSON "\n"        no spaces, keys in the fixed order of the docs
//! ```
//!
//! [`LineDecoder`] cuts a byte stream into lines and [`Dialect`] turns a line into a typed
//! [`ClientMessage`] or [`ServerMessage`] and back. A dialect holds what real implementations
//! differ in: the header names ([`HeaderMap`], e.g. `USER_LIST_REQ` for `LIST_USERS_REQ`)
//! and the order of the two checks of a line ([`CheckOrder`]).
//!
//! Decoding a line fails in one of two ways the protocol tells apart: an unknown header
//! ([`DecodeError::UnknownCommand`], answered `UNKNOWN_COMMAND`) and a body that is not
//! valid JSON, not a JSON object, or has a field of the wrong type (the other
//! [`DecodeError`]s, answered `PARSE_ERROR`).
//!
//! Decoding is lenient where it costs nothing: unknown fields are ignored; a missing or
//! `null` string field reads as `""`; in server messages a `status` matches in any case
//! (`"Ok"`), an error code may be a string of digits (`"code":"5001"`) and `DSCN` may come
//! without a body. Encoding is strict and canonical, so decoding what was encoded gives back
//! the same message.
//!
//! The data channel of file transfers has its own two lines, [`DataHello`] and
//! [`DataReply`]; see `chat::transfer`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// The default limit of a line, line end not counted. The spec asks servers to parse lines
/// of at least 1024 bytes.
pub const MAX_LINE: usize = 1024;

/// The smallest line limit a server may be configured with (the spec's minimum).
pub const MIN_MAX_LINE: usize = 1024;

/// How much of an unknown header an error quotes.
const MAX_QUOTE: usize = 40;

/// Longest wire name a header may be renamed to.
pub const MAX_HEADER_NAME: usize = 64;

/// An error or reason code, as in `{"status":"ERROR","code":5001}`.
pub type Code = u32;

/// The protocol's codes, and this implementation's additions (marked "ours").
pub mod code {
    use super::Code;

    /// `LOGIN`: the name is in use by another client ("User has already logged in").
    pub const NAME_IN_USE: Code = 5000;
    /// `LOGIN`: the name is not 3 to 14 of `[A-Za-z0-9_]`.
    pub const INVALID_USERNAME: Code = 5001;
    /// `LOGIN`: this connection is logged in already.
    pub const ALREADY_LOGGED_IN: Code = 5002;
    /// The request needs a login.
    pub const NOT_LOGGED_IN: Code = 6000;
    /// No logged-in user of that name (also: a file transfer to yourself).
    pub const USER_NOT_FOUND: Code = 6001;
    /// The join window closed with fewer than two participants.
    pub const INSUFFICIENT_PLAYERS: Code = 6002;
    /// A game exists already: joining after its window, or starting a second one.
    pub const GAME_ALREADY_STARTED: Code = 6003;
    /// Joining a game one is a participant of.
    pub const ALREADY_JOINED: Code = 6004;
    /// Joining when there is no game.
    pub const NO_GAME: Code = 6005;
    /// A private or secure message to oneself.
    pub const MESSAGE_TO_SELF: Code = 6007;
    /// A private message with an empty or missing message.
    pub const EMPTY_MESSAGE: Code = 6008;
    /// `DSCN`: no `PONG` in time.
    pub const PONG_TIMEOUT: Code = 7000;
    /// `DSCN`: a line over the limit.
    pub const LINE_TOO_LONG: Code = 7001;
    /// A guess when there is no game at all.
    pub const NO_GAME_TO_GUESS: Code = 7002;
    /// A guess during the join window, or after one's correct guess.
    pub const CANNOT_GUESS_NOW: Code = 7003;
    /// A guess that is neither a JSON integer nor a string of digits.
    pub const INVALID_GUESS: Code = 7004;
    /// The guess is below the secret.
    pub const GUESS_TOO_LOW: Code = 7005;
    /// The guess is above the secret.
    pub const GUESS_TOO_HIGH: Code = 7006;
    /// The guess is outside 1..=50.
    pub const GUESS_OUT_OF_RANGE: Code = 7007;
    /// `PONG_ERROR`: a `PONG` with no `PING` pending.
    pub const PONG_WITHOUT_PING: Code = 8000;
    /// A guess from a logged-in user who is not a participant of the running game.
    pub const NOT_PARTICIPATING: Code = 8001;
    /// `GAME_RESULTS`: nobody guessed the number.
    pub const NO_RESULTS: Code = 9002;
    /// A file transfer whose declared size is over the server's limit.
    pub const FILE_TOO_LARGE: Code = 10000;
    /// A file transfer whose checksum is not 64 hex digits.
    pub const INVALID_CHECKSUM: Code = 10001;
    /// The receiver rejected the file.
    pub const FILE_REJECTED: Code = 10002;
    /// Ours: the bytes relayed do not match the declared size or checksum.
    pub const TRANSFER_MISMATCH: Code = 10003;
    /// Ours: the transfer did not complete (a side did not attach in time, a data connection
    /// broke, too many transfers, or the server shut down).
    pub const TRANSFER_FAILED: Code = 10004;
    /// Ours: a `transferId` that is not a UUID, or one in use already.
    pub const INVALID_TRANSFER_ID: Code = 10005;
    /// Ours: answering a file transfer that the named sender did not request.
    pub const NO_PENDING_TRANSFER: Code = 10006;
}

// ---------------------------------------------------------------------------------------
// Lines

/// A line longer than the decoder's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line starting at byte `offset` of the stream holds more than `limit` bytes before
    /// its line end (or has none within `limit + 1` bytes).
    #[error("the line at byte {offset} is longer than the limit of {limit} bytes")]
    TooLong { limit: usize, offset: u64 },
}

impl LineError {
    /// Where the offending line starts, in bytes from the start of the stream.
    pub fn offset(&self) -> u64 {
        match self {
            LineError::TooLong { offset, .. } => *offset,
        }
    }
}

/// Cuts a byte stream into lines. Feed it whatever a read returned; [`LineDecoder::next_line`]
/// answers `Ok(None)` until a whole line is there.
///
/// A line ends in `\n`, `\r\n` or a lone `\r`. A `\r` at the very end of what was fed ends
/// its line at once; a `\n` that starts the next feed is then the rest of that line end, not
/// an empty line.
///
/// A line over the limit is an error, reported once, as soon as `limit + 1` bytes without a
/// line end are buffered; the decoder then drops the rest of that line up to its line end
/// and goes on after it. So a decoder never holds more than `limit + 1` bytes plus the
/// last feed.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    max_line: usize,
    /// The last line ended in `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    /// Inside a line over the limit: drop bytes up to its line end.
    skipping: bool,
    /// Stream offset of `buf[start]`.
    offset: u64,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDecoder {
    /// A decoder with the default limit, [`MAX_LINE`].
    pub fn new() -> Self {
        Self::with_max_line(MAX_LINE)
    }

    /// A decoder for lines of at most `max_line` bytes (at least 1).
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_line: max_line.max(1),
            after_cr: false,
            skipping: false,
            offset: 0,
        }
    }

    /// The limit of a line, line end not counted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed and not consumed yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the unconsumed bytes out of the decoder (for a stream that stops being lines).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.offset += rest.len() as u64;
        self.buf.clear();
        self.start = 0;
        rest
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The next complete line without its line end, `Ok(None)` if more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        loop {
            let pending = &self.buf[self.start..];
            let Some(&first) = pending.first() else {
                return Ok(None);
            };
            if self.after_cr {
                self.after_cr = false;
                if first == b'\n' {
                    self.consume(1);
                    continue;
                }
            }
            if self.skipping {
                match pending.iter().position(|&b| b == b'\n' || b == b'\r') {
                    Some(i) => {
                        self.after_cr = pending[i] == b'\r';
                        self.skipping = false;
                        self.consume(i + 1);
                        continue;
                    }
                    None => {
                        let n = pending.len();
                        self.consume(n);
                        return Ok(None);
                    }
                }
            }
            let window = &pending[..pending.len().min(self.max_line + 1)];
            return match window.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    let line = window[..i].to_vec();
                    self.after_cr = window[i] == b'\r';
                    self.consume(i + 1);
                    Ok(Some(line))
                }
                None if window.len() > self.max_line => {
                    let offset = self.offset;
                    self.skipping = true;
                    let n = window.len();
                    self.consume(n);
                    Err(LineError::TooLong {
                        limit: self.max_line,
                        offset,
                    })
                }
                None => Ok(None),
            };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Headers

macro_rules! headers {
    ($($variant:ident = $name:literal, $dir:ident;)+) => {
        /// Every header of the protocol, by its canonical (spec) name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub enum Header {
            $($variant,)+
        }

        impl Header {
            /// Every header, in the order of the spec.
            pub const ALL: &'static [Header] = &[$(Header::$variant,)+];

            /// The canonical name, e.g. `LIST_USERS_REQ`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Header::$variant => $name,)+
                }
            }

            /// Who sends it.
            pub const fn direction(self) -> Direction {
                match self {
                    $(Header::$variant => Direction::$dir,)+
                }
            }
        }
    };
}

headers! {
    Welcome = "WELCOME", ToClient;
    Login = "LOGIN", ToServer;
    LoginResp = "LOGIN_RESP", ToClient;
    BroadcastReq = "BROADCAST_REQ", ToServer;
    BroadcastResp = "BROADCAST_RESP", ToClient;
    Broadcast = "BROADCAST", ToClient;
    Joined = "JOINED", ToClient;
    Left = "LEFT", ToClient;
    Ping = "PING", ToClient;
    Pong = "PONG", ToServer;
    PongError = "PONG_ERROR", ToClient;
    Dscn = "DSCN", ToClient;
    Bye = "BYE", ToServer;
    ByeResp = "BYE_RESP", ToClient;
    UnknownCommand = "UNKNOWN_COMMAND", ToClient;
    ParseError = "PARSE_ERROR", ToClient;
    ListUsersReq = "LIST_USERS_REQ", ToServer;
    ListUsersResp = "LIST_USERS_RESP", ToClient;
    PrivateMessageReq = "PRIVATE_MESSAGE_REQ", ToServer;
    PrivateMessageResp = "PRIVATE_MESSAGE_RESP", ToClient;
    PrivateMessage = "PRIVATE_MESSAGE", ToClient;
    StartGameReq = "START_GAME_REQ", ToServer;
    StartGameResp = "START_GAME_RESP", ToClient;
    GameNotification = "GAME_NOTIFICATION", ToClient;
    JoinGameReq = "JOIN_GAME_REQ", ToServer;
    JoinGameResp = "JOIN_GAME_RESP", ToClient;
    GuessNumberReq = "GUESS_NUMBER_REQ", ToServer;
    GuessNumberResp = "GUESS_NUMBER_RESP", ToClient;
    GameResults = "GAME_RESULTS", ToClient;
    FileTransferRequest = "FILE_TRANSFER_REQUEST", Both;
    FileTransferResponse = "FILE_TRANSFER_RESPONSE", Both;
    FileTransferComplete = "FILE_TRANSFER_COMPLETE", ToClient;
    SecureMessageReq = "SECURE_MESSAGE_REQ", Both;
    SecureMessageRes = "SECURE_MESSAGE_RES", Both;
    SecureMessage = "SECURE_MESSAGE", Both;
}

/// Who sends a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer,
    ToClient,
    /// Both, with different bodies (the `FILE_TRANSFER_*` and `SECURE_MESSAGE*` relays).
    Both,
}

impl Direction {
    fn to_server(self) -> bool {
        matches!(self, Direction::ToServer | Direction::Both)
    }

    fn to_client(self) -> bool {
        matches!(self, Direction::ToClient | Direction::Both)
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no header of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown header {0:?}")]
pub struct UnknownHeader(pub String);

impl FromStr for Header {
    type Err = UnknownHeader;

    /// Parses a canonical name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Header::ALL
            .iter()
            .copied()
            .find(|h| h.name() == s)
            .ok_or_else(|| UnknownHeader(s.to_owned()))
    }
}

/// A header rename that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenameError {
    /// Not of the form `FROM=TO`.
    #[error("{0:?} is not a rename: write HEADER=NEW_NAME, e.g. LIST_USERS_REQ=USER_LIST_REQ")]
    Syntax(String),
    /// `FROM` is no canonical header name.
    #[error("{0:?} is not a header of the protocol")]
    UnknownHeader(String),
    /// `TO` cannot be a header on the wire.
    #[error(
        "{name:?} cannot be a header: use 1 to {MAX_HEADER_NAME} printable ASCII characters, \
         no '{{', single spaces only inside"
    )]
    InvalidName { name: String },
    /// `TO` names another header already.
    #[error("{name:?} is already the name of {taken_by}")]
    Taken { name: String, taken_by: Header },
}

/// The names headers have on the wire. The default is the spec's names.
///
/// [`HeaderMap::rename`] gives a header another name, in both directions, and the old name
/// stops being known. [`HeaderMap::alias`] only adds a name that input may use.
/// A name may contain single spaces (`LOGIN REQ`): a line is split after the longest
/// known name followed by a space, before falling back to its first space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMap {
    /// Output name of each header, indexed like `Header::ALL`.
    wire: Vec<String>,
    /// Every name input may use.
    inbound: HashMap<String, Header>,
    /// The inbound names that contain a space, longest first.
    spaced: Vec<String>,
}

impl Default for HeaderMap {
    fn default() -> Self {
        Self {
            wire: Header::ALL.iter().map(|h| h.name().to_owned()).collect(),
            inbound: Header::ALL
                .iter()
                .map(|h| (h.name().to_owned(), *h))
                .collect(),
            spaced: Vec::new(),
        }
    }
}

fn valid_wire_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'{')
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.contains("  ")
}

impl HeaderMap {
    fn index(header: Header) -> usize {
        Header::ALL
            .iter()
            .position(|h| *h == header)
            .unwrap_or_default()
    }

    /// The name `header` is sent with.
    pub fn wire_name(&self, header: Header) -> &str {
        self.wire
            .get(Self::index(header))
            .map_or(header.name(), String::as_str)
    }

    /// The header a name on the wire stands for.
    pub fn lookup(&self, name: &str) -> Option<Header> {
        self.inbound.get(name).copied()
    }

    /// Whether every header has its spec name and no alias exists.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn check_free(&self, name: &str, header: Header) -> Result<(), RenameError> {
        if !valid_wire_name(name) {
            return Err(RenameError::InvalidName {
                name: name.to_owned(),
            });
        }
        match self.lookup(name) {
            Some(other) if other != header => Err(RenameError::Taken {
                name: name.to_owned(),
                taken_by: other,
            }),
            _ => Ok(()),
        }
    }

    fn index_spaced(&mut self) {
        self.spaced = self
            .inbound
            .keys()
            .filter(|k| k.contains(' '))
            .cloned()
            .collect();
        self.spaced
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Sends and accepts `header` as `name` from now on; its previous name is forgotten
    /// (aliases stay).
    pub fn rename(&mut self, header: Header, name: &str) -> Result<(), RenameError> {
        self.check_free(name, header)?;
        let i = Self::index(header);
        let old = std::mem::replace(&mut self.wire[i], name.to_owned());
        if old != name {
            self.inbound.remove(&old);
        }
        self.inbound.insert(name.to_owned(), header);
        self.index_spaced();
        Ok(())
    }

    /// Accepts `name` on input as `header` as well.
    pub fn alias(&mut self, name: &str, header: Header) -> Result<(), RenameError> {
        self.check_free(name, header)?;
        self.inbound.insert(name.to_owned(), header);
        self.index_spaced();
        Ok(())
    }

    /// Applies a rename written `HEADER=NEW_NAME`, `HEADER` being a canonical name:
    /// `LIST_USERS_REQ=USER_LIST_REQ`, `LOGIN=LOGIN REQ`.
    pub fn apply(&mut self, rule: &str) -> Result<(), RenameError> {
        let (from, to) = rule
            .split_once('=')
            .ok_or_else(|| RenameError::Syntax(rule.to_owned()))?;
        let header = from
            .trim()
            .parse::<Header>()
            .map_err(|e| RenameError::UnknownHeader(e.0))?;
        self.rename(header, to.trim())
    }

    /// Splits a line into its header and body (what follows the space after the header).
    fn split<'a>(&self, line: &'a [u8]) -> (&'a [u8], Option<&'a [u8]>) {
        for name in &self.spaced {
            let n = name.len();
            if line.starts_with(name.as_bytes()) {
                match line.get(n) {
                    None => return (line, None),
                    Some(b' ') => return (&line[..n], Some(&line[n + 1..])),
                    Some(_) => {}
                }
            }
        }
        match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        }
    }
}

/// Which check of a line comes first, and so which error a line that fails both gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum CheckOrder {
    /// The header is looked up first (the spec: `MSG This is an invalid message` answers
    /// `UNKNOWN_COMMAND`).
    #[default]
    HeaderFirst,
    /// The body is parsed as JSON first (the teachers' server: `MSG This is an invalid
    /// message` answers `PARSE_ERROR`; `FOO` and `FOO {}` answer `UNKNOWN_COMMAND`).
    JsonFirst,
}

impl CheckOrder {
    /// `header-first` or `json-first`.
    pub const fn name(self) -> &'static str {
        match self {
            CheckOrder::HeaderFirst => "header-first",
            CheckOrder::JsonFirst => "json-first",
        }
    }
}

impl fmt::Display for CheckOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A check order other than `header-first` or `json-first`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown check order {0:?}: expected `header-first` or `json-first`")]
pub struct UnknownCheckOrder(pub String);

impl FromStr for CheckOrder {
    type Err = UnknownCheckOrder;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "header-first" => Ok(CheckOrder::HeaderFirst),
            "json-first" => Ok(CheckOrder::JsonFirst),
            other => Err(UnknownCheckOrder(other.to_owned())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Messages

/// A guess, as `GUESS_NUMBER_REQ` carries it.
///
/// With the `arbitrary` feature, `Arbitrary` (written by hand: `serde_json::Value` has none)
/// keeps `Invalid` invalid, and its floats exact through JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Guess {
    /// A JSON integer, or a string of ASCII digits (`"42"`). Integers beyond `i64` are
    /// clamped to `i64::MAX` (out of range either way).
    Number(i64),
    /// Anything else (`"abc"`, `4.5`, `null`, a missing field), kept as it came. Never holds
    /// an integer or a digit string.
    Invalid(Value),
}

/// How the receiver answers a file transfer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TransferDecision {
    /// `"status":"OK"`.
    Accept,
    /// `"status":"REJECTED"`.
    Reject,
}

impl TransferDecision {
    /// The wire value of `status`.
    pub const fn name(self) -> &'static str {
        match self {
            TransferDecision::Accept => "OK",
            TransferDecision::Reject => "REJECTED",
        }
    }
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ClientMessage {
    /// `LOGIN {"username":...}`
    Login { username: String },
    /// `BROADCAST_REQ {"message":...}`
    BroadcastReq { message: String },
    /// `PONG`
    Pong,
    /// `BYE`
    Bye,
    /// `LIST_USERS_REQ`
    ListUsersReq,
    /// `PRIVATE_MESSAGE_REQ {"receiver":...,"message":...}`
    PrivateMessageReq { receiver: String, message: String },
    /// `START_GAME_REQ`
    StartGameReq,
    /// `JOIN_GAME_REQ`
    JoinGameReq,
    /// `GUESS_NUMBER_REQ {"number":...}`
    GuessNumberReq { number: Guess },
    /// `FILE_TRANSFER_REQUEST {"receiver":...,"filename":...[,"size":N][,"checksum":...]}`
    FileTransferRequest {
        receiver: String,
        filename: String,
        size: Option<u64>,
        checksum: Option<String>,
    },
    /// `FILE_TRANSFER_RESPONSE {"sender":...,"status":"OK"|"REJECTED","transferId":...}`
    FileTransferResponse {
        sender: String,
        decision: TransferDecision,
        transfer_id: String,
    },
    /// `SECURE_MESSAGE_REQ {"receiver":...}`
    SecureMessageReq { receiver: String },
    /// `SECURE_MESSAGE_RES {"sender":...,"publicKey":...}`: `sender` names the requester.
    SecureMessageRes { sender: String, public_key: String },
    /// `SECURE_MESSAGE {["receiver":...,]["sender":...,]"sessionKey":...,"message":...}`.
    /// The spec names only `sender`; the server takes `receiver` if present (see the
    /// module docs of `chat`).
    SecureMessage {
        receiver: Option<String>,
        sender: Option<String>,
        session_key: String,
        message: String,
    },
}

/// One line of `GAME_RESULTS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GameResult {
    pub username: String,
    /// From the start of the game to the correct guess.
    pub time_ms: u64,
}

/// The uploader's news that the receiver accepted a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TransferAccepted {
    /// Who will download it.
    pub receiver: String,
    pub transfer_id: String,
}

/// A public key relayed to the requester of a secure session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PublicKey {
    /// Who answered the request (and will receive the secure message).
    pub receiver: String,
    pub public_key: String,
}

/// A secure message as its receiver gets it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SecureEnvelope {
    pub sender: String,
    pub session_key: String,
    pub message: String,
}

/// A message from the server. A `Result` is a `{"status":"OK",...}` body or a
/// `{"status":"ERROR","code":N}` one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ServerMessage {
    /// `WELCOME {"msg":...}`
    Welcome { msg: String },
    /// `LOGIN_RESP`
    LoginResp(Result<(), Code>),
    /// `BROADCAST_RESP`
    BroadcastResp(Result<(), Code>),
    /// `BROADCAST {"username":...,"message":...}`
    Broadcast { username: String, message: String },
    /// `JOINED {"username":...}`
    Joined { username: String },
    /// `LEFT {"username":...}`
    Left { username: String },
    /// `PING`
    Ping,
    /// `PONG_ERROR {"code":N}`
    PongError { code: Code },
    /// `DSCN {"reason":N}`; `None` is a bare `DSCN` (some servers send one).
    Dscn { reason: Option<Code> },
    /// `BYE_RESP`
    ByeResp(Result<(), Code>),
    /// `UNKNOWN_COMMAND`
    UnknownCommand,
    /// `PARSE_ERROR`
    ParseError,
    /// `LIST_USERS_RESP {"status":"OK","users":[...]}`
    ListUsersResp(Result<Vec<String>, Code>),
    /// `PRIVATE_MESSAGE_RESP`
    PrivateMessageResp(Result<(), Code>),
    /// `PRIVATE_MESSAGE {"sender":...,"message":...}`
    PrivateMessage { sender: String, message: String },
    /// `START_GAME_RESP`
    StartGameResp(Result<(), Code>),
    /// `GAME_NOTIFICATION {"status":"OK"}`
    GameNotification(Result<(), Code>),
    /// `JOIN_GAME_RESP`
    JoinGameResp(Result<(), Code>),
    /// `GUESS_NUMBER_RESP {"status":"OK","result":...}`
    GuessNumberResp(Result<String, Code>),
    /// `GAME_RESULTS {"status":"OK","results":[{"username":...,"time_ms":N},...]}`
    GameResults(Result<Vec<GameResult>, Code>),
    /// `FILE_TRANSFER_REQUEST {"sender":...,"filename":...[,"size":N][,"checksum":...]}`
    FileTransferRequest {
        sender: String,
        filename: String,
        size: Option<u64>,
        checksum: Option<String>,
    },
    /// `FILE_TRANSFER_RESPONSE {"receiver":...,"status":"OK","transferId":...}`
    FileTransferResponse(Result<TransferAccepted, Code>),
    /// `FILE_TRANSFER_COMPLETE {"transferId":...,"status":...[,"code":N],"size":N,
    /// "checksum":...}`: the size and SHA-256 of what passed.
    FileTransferComplete {
        transfer_id: String,
        result: Result<(), Code>,
        size: u64,
        checksum: String,
    },
    /// `SECURE_MESSAGE_REQ {"sender":...}`
    SecureMessageReq(Result<String, Code>),
    /// `SECURE_MESSAGE_RES {"receiver":...,"publicKey":...}`
    SecureMessageRes(Result<PublicKey, Code>),
    /// `SECURE_MESSAGE {"sender":...,"sessionKey":...,"message":...}`
    SecureMessage(Result<SecureEnvelope, Code>),
}

impl ClientMessage {
    /// The message's header.
    pub fn header(&self) -> Header {
        match self {
            ClientMessage::Login { .. } => Header::Login,
            ClientMessage::BroadcastReq { .. } => Header::BroadcastReq,
            ClientMessage::Pong => Header::Pong,
            ClientMessage::Bye => Header::Bye,
            ClientMessage::ListUsersReq => Header::ListUsersReq,
            ClientMessage::PrivateMessageReq { .. } => Header::PrivateMessageReq,
            ClientMessage::StartGameReq => Header::StartGameReq,
            ClientMessage::JoinGameReq => Header::JoinGameReq,
            ClientMessage::GuessNumberReq { .. } => Header::GuessNumberReq,
            ClientMessage::FileTransferRequest { .. } => Header::FileTransferRequest,
            ClientMessage::FileTransferResponse { .. } => Header::FileTransferResponse,
            ClientMessage::SecureMessageReq { .. } => Header::SecureMessageReq,
            ClientMessage::SecureMessageRes { .. } => Header::SecureMessageRes,
            ClientMessage::SecureMessage { .. } => Header::SecureMessage,
        }
    }

    /// Appends the line, `\n` included, with the spec's header names.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(&HeaderMap::default(), out);
    }

    /// Appends the line, `\n` included, with the header names of `headers`.
    pub fn encode_with(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        out.extend_from_slice(headers.wire_name(self.header()).as_bytes());
        let mut body = Body::new(out);
        match self {
            ClientMessage::Login { username } => body.str("username", username),
            ClientMessage::BroadcastReq { message } => body.str("message", message),
            ClientMessage::Pong
            | ClientMessage::Bye
            | ClientMessage::ListUsersReq
            | ClientMessage::StartGameReq
            | ClientMessage::JoinGameReq => {}
            ClientMessage::PrivateMessageReq { receiver, message } => {
                body.str("receiver", receiver);
                body.str("message", message);
            }
            ClientMessage::GuessNumberReq { number } => match number {
                Guess::Number(n) => body.raw("number", &n.to_string()),
                Guess::Invalid(value) => body.raw(
                    "number",
                    &serde_json::to_string(value).unwrap_or_else(|_| "null".into()),
                ),
            },
            ClientMessage::FileTransferRequest {
                receiver,
                filename,
                size,
                checksum,
            } => {
                body.str("receiver", receiver);
                body.str("filename", filename);
                if let Some(size) = size {
                    body.num("size", *size);
                }
                if let Some(checksum) = checksum {
                    body.str("checksum", checksum);
                }
            }
            ClientMessage::FileTransferResponse {
                sender,
                decision,
                transfer_id,
            } => {
                body.str("sender", sender);
                body.str("status", decision.name());
                body.str("transferId", transfer_id);
            }
            ClientMessage::SecureMessageReq { receiver } => body.str("receiver", receiver),
            ClientMessage::SecureMessageRes { sender, public_key } => {
                body.str("sender", sender);
                body.str("publicKey", public_key);
            }
            ClientMessage::SecureMessage {
                receiver,
                sender,
                session_key,
                message,
            } => {
                if let Some(receiver) = receiver {
                    body.str("receiver", receiver);
                }
                if let Some(sender) = sender {
                    body.str("sender", sender);
                }
                body.str("sessionKey", session_key);
                body.str("message", message);
            }
        }
        body.finish();
    }

    /// Decodes a line (without its line end) with the spec's dialect.
    pub fn decode(line: &[u8]) -> Result<Self, DecodeError> {
        Dialect::default().decode_client(line)
    }

    fn from_body(header: Header, fields: &Fields<'_>) -> Result<Self, DecodeError> {
        Ok(match header {
            Header::Login => ClientMessage::Login {
                username: fields.str("username")?,
            },
            Header::BroadcastReq => ClientMessage::BroadcastReq {
                message: fields.str("message")?,
            },
            Header::Pong => ClientMessage::Pong,
            Header::Bye => ClientMessage::Bye,
            Header::ListUsersReq => ClientMessage::ListUsersReq,
            Header::PrivateMessageReq => ClientMessage::PrivateMessageReq {
                receiver: fields.str("receiver")?,
                message: fields.str("message")?,
            },
            Header::StartGameReq => ClientMessage::StartGameReq,
            Header::JoinGameReq => ClientMessage::JoinGameReq,
            Header::GuessNumberReq => ClientMessage::GuessNumberReq {
                number: fields.guess("number"),
            },
            Header::FileTransferRequest => ClientMessage::FileTransferRequest {
                receiver: fields.str("receiver")?,
                filename: fields.str("filename")?,
                size: fields.opt_u64("size")?,
                checksum: fields.opt_str("checksum")?,
            },
            Header::FileTransferResponse => ClientMessage::FileTransferResponse {
                sender: fields.str("sender")?,
                decision: fields.decision("status")?,
                transfer_id: fields.str("transferId")?,
            },
            Header::SecureMessageReq => ClientMessage::SecureMessageReq {
                receiver: fields.str("receiver")?,
            },
            Header::SecureMessageRes => ClientMessage::SecureMessageRes {
                sender: fields.str("sender")?,
                public_key: fields.str("publicKey")?,
            },
            Header::SecureMessage => ClientMessage::SecureMessage {
                receiver: fields.opt_str("receiver")?,
                sender: fields.opt_str("sender")?,
                session_key: fields.str("sessionKey")?,
                message: fields.str("message")?,
            },
            other => {
                return Err(DecodeError::UnknownCommand {
                    header: other.name().to_owned(),
                });
            }
        })
    }
}

impl ServerMessage {
    /// The message's header.
    pub fn header(&self) -> Header {
        match self {
            ServerMessage::Welcome { .. } => Header::Welcome,
            ServerMessage::LoginResp(_) => Header::LoginResp,
            ServerMessage::BroadcastResp(_) => Header::BroadcastResp,
            ServerMessage::Broadcast { .. } => Header::Broadcast,
            ServerMessage::Joined { .. } => Header::Joined,
            ServerMessage::Left { .. } => Header::Left,
            ServerMessage::Ping => Header::Ping,
            ServerMessage::PongError { .. } => Header::PongError,
            ServerMessage::Dscn { .. } => Header::Dscn,
            ServerMessage::ByeResp(_) => Header::ByeResp,
            ServerMessage::UnknownCommand => Header::UnknownCommand,
            ServerMessage::ParseError => Header::ParseError,
            ServerMessage::ListUsersResp(_) => Header::ListUsersResp,
            ServerMessage::PrivateMessageResp(_) => Header::PrivateMessageResp,
            ServerMessage::PrivateMessage { .. } => Header::PrivateMessage,
            ServerMessage::StartGameResp(_) => Header::StartGameResp,
            ServerMessage::GameNotification(_) => Header::GameNotification,
            ServerMessage::JoinGameResp(_) => Header::JoinGameResp,
            ServerMessage::GuessNumberResp(_) => Header::GuessNumberResp,
            ServerMessage::GameResults(_) => Header::GameResults,
            ServerMessage::FileTransferRequest { .. } => Header::FileTransferRequest,
            ServerMessage::FileTransferResponse(_) => Header::FileTransferResponse,
            ServerMessage::FileTransferComplete { .. } => Header::FileTransferComplete,
            ServerMessage::SecureMessageReq(_) => Header::SecureMessageReq,
            ServerMessage::SecureMessageRes(_) => Header::SecureMessageRes,
            ServerMessage::SecureMessage(_) => Header::SecureMessage,
        }
    }

    /// The error code of a `{"status":"ERROR","code":N}` message, `PONG_ERROR`'s code or
    /// `DSCN`'s reason.
    pub fn error_code(&self) -> Option<Code> {
        match self {
            ServerMessage::LoginResp(Err(c))
            | ServerMessage::BroadcastResp(Err(c))
            | ServerMessage::ByeResp(Err(c))
            | ServerMessage::PrivateMessageResp(Err(c))
            | ServerMessage::StartGameResp(Err(c))
            | ServerMessage::GameNotification(Err(c))
            | ServerMessage::JoinGameResp(Err(c))
            | ServerMessage::ListUsersResp(Err(c))
            | ServerMessage::GuessNumberResp(Err(c))
            | ServerMessage::GameResults(Err(c))
            | ServerMessage::FileTransferResponse(Err(c))
            | ServerMessage::FileTransferComplete { result: Err(c), .. }
            | ServerMessage::SecureMessageReq(Err(c))
            | ServerMessage::SecureMessageRes(Err(c))
            | ServerMessage::SecureMessage(Err(c))
            | ServerMessage::PongError { code: c }
            | ServerMessage::Dscn { reason: Some(c) } => Some(*c),
            _ => None,
        }
    }

    /// Appends the line, `\n` included, with the spec's header names.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(&HeaderMap::default(), out);
    }

    /// Appends the line, `\n` included, with the header names of `headers`.
    pub fn encode_with(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        out.extend_from_slice(headers.wire_name(self.header()).as_bytes());
        let mut body = Body::new(out);
        match self {
            ServerMessage::Welcome { msg } => body.str("msg", msg),
            ServerMessage::LoginResp(r)
            | ServerMessage::BroadcastResp(r)
            | ServerMessage::ByeResp(r)
            | ServerMessage::PrivateMessageResp(r)
            | ServerMessage::StartGameResp(r)
            | ServerMessage::GameNotification(r)
            | ServerMessage::JoinGameResp(r) => body.status(r, |_, ()| {}),
            ServerMessage::Broadcast { username, message } => {
                body.str("username", username);
                body.str("message", message);
            }
            ServerMessage::Joined { username } | ServerMessage::Left { username } => {
                body.str("username", username);
            }
            ServerMessage::Ping | ServerMessage::UnknownCommand | ServerMessage::ParseError => {}
            ServerMessage::PongError { code } => body.num("code", u64::from(*code)),
            ServerMessage::Dscn { reason } => {
                if let Some(reason) = reason {
                    body.num("reason", u64::from(*reason));
                }
            }
            ServerMessage::ListUsersResp(r) => body.status(r, |body, users| {
                body.key("users");
                body.out.push(b'[');
                for (i, user) in users.iter().enumerate() {
                    if i > 0 {
                        body.out.push(b',');
                    }
                    push_json_str(body.out, user);
                }
                body.out.push(b']');
            }),
            ServerMessage::PrivateMessage { sender, message } => {
                body.str("sender", sender);
                body.str("message", message);
            }
            ServerMessage::GuessNumberResp(r) => {
                body.status(r, |body, result| body.str("result", result));
            }
            ServerMessage::GameResults(r) => body.status(r, |body, results| {
                body.key("results");
                body.out.push(b'[');
                for (i, result) in results.iter().enumerate() {
                    if i > 0 {
                        body.out.push(b',');
                    }
                    let mut item = Body::nested(body.out);
                    item.str("username", &result.username);
                    item.num("time_ms", result.time_ms);
                    item.close();
                }
                body.out.push(b']');
            }),
            ServerMessage::FileTransferRequest {
                sender,
                filename,
                size,
                checksum,
            } => {
                body.str("sender", sender);
                body.str("filename", filename);
                if let Some(size) = size {
                    body.num("size", *size);
                }
                if let Some(checksum) = checksum {
                    body.str("checksum", checksum);
                }
            }
            ServerMessage::FileTransferResponse(r) => match r {
                Ok(accepted) => {
                    body.str("receiver", &accepted.receiver);
                    body.str("status", "OK");
                    body.str("transferId", &accepted.transfer_id);
                }
                Err(code) => body.status::<()>(&Err(*code), |_, ()| {}),
            },
            ServerMessage::FileTransferComplete {
                transfer_id,
                result,
                size,
                checksum,
            } => {
                body.str("transferId", transfer_id);
                body.status(result, |_, ()| {});
                body.num("size", *size);
                body.str("checksum", checksum);
            }
            ServerMessage::SecureMessageReq(r) => body.status_or(r, |body, sender| {
                body.str("sender", sender);
            }),
            ServerMessage::SecureMessageRes(r) => body.status_or(r, |body, key| {
                body.str("receiver", &key.receiver);
                body.str("publicKey", &key.public_key);
            }),
            ServerMessage::SecureMessage(r) => body.status_or(r, |body, envelope| {
                body.str("sender", &envelope.sender);
                body.str("sessionKey", &envelope.session_key);
                body.str("message", &envelope.message);
            }),
        }
        body.finish();
    }

    /// Decodes a line (without its line end) with the spec's dialect.
    pub fn decode(line: &[u8]) -> Result<Self, DecodeError> {
        Dialect::default().decode_server(line)
    }

    fn from_body(header: Header, f: &Fields<'_>) -> Result<Self, DecodeError> {
        Ok(match header {
            Header::Welcome => ServerMessage::Welcome { msg: f.str("msg")? },
            Header::LoginResp => ServerMessage::LoginResp(f.status(|_| Ok(()))?),
            Header::BroadcastResp => ServerMessage::BroadcastResp(f.status(|_| Ok(()))?),
            Header::Broadcast => ServerMessage::Broadcast {
                username: f.str("username")?,
                message: f.str("message")?,
            },
            Header::Joined => ServerMessage::Joined {
                username: f.str("username")?,
            },
            Header::Left => ServerMessage::Left {
                username: f.str("username")?,
            },
            Header::Ping => ServerMessage::Ping,
            Header::PongError => ServerMessage::PongError {
                code: f.code("code")?,
            },
            Header::Dscn => ServerMessage::Dscn {
                reason: match f.get("reason") {
                    None => None,
                    Some(_) => Some(f.code("reason")?),
                },
            },
            Header::ByeResp => ServerMessage::ByeResp(f.status(|_| Ok(()))?),
            Header::UnknownCommand => ServerMessage::UnknownCommand,
            Header::ParseError => ServerMessage::ParseError,
            Header::ListUsersResp => {
                ServerMessage::ListUsersResp(f.status(|f| f.strings("users"))?)
            }
            Header::PrivateMessageResp => ServerMessage::PrivateMessageResp(f.status(|_| Ok(()))?),
            Header::PrivateMessage => ServerMessage::PrivateMessage {
                sender: f.str("sender")?,
                message: f.str("message")?,
            },
            Header::StartGameResp => ServerMessage::StartGameResp(f.status(|_| Ok(()))?),
            Header::GameNotification => ServerMessage::GameNotification(f.status(|_| Ok(()))?),
            Header::JoinGameResp => ServerMessage::JoinGameResp(f.status(|_| Ok(()))?),
            Header::GuessNumberResp => {
                ServerMessage::GuessNumberResp(f.status(|f| f.str_or_number("result"))?)
            }
            Header::GameResults => ServerMessage::GameResults(f.status(|f| f.results("results"))?),
            Header::FileTransferRequest => ServerMessage::FileTransferRequest {
                sender: f.str("sender")?,
                filename: f.str("filename")?,
                size: f.opt_u64("size")?,
                checksum: f.opt_str("checksum")?,
            },
            Header::FileTransferResponse => ServerMessage::FileTransferResponse(f.status(|f| {
                Ok(TransferAccepted {
                    receiver: f.str("receiver")?,
                    transfer_id: f.str("transferId")?,
                })
            })?),
            Header::FileTransferComplete => ServerMessage::FileTransferComplete {
                transfer_id: f.str("transferId")?,
                result: f.status(|_| Ok(()))?,
                size: f.opt_u64("size")?.unwrap_or_default(),
                checksum: f.str("checksum")?,
            },
            Header::SecureMessageReq => {
                ServerMessage::SecureMessageReq(f.status_or_ok(|f| f.str("sender"))?)
            }
            Header::SecureMessageRes => ServerMessage::SecureMessageRes(f.status_or_ok(|f| {
                Ok(PublicKey {
                    receiver: f.str("receiver")?,
                    public_key: f.str("publicKey")?,
                })
            })?),
            Header::SecureMessage => ServerMessage::SecureMessage(f.status_or_ok(|f| {
                Ok(SecureEnvelope {
                    sender: f.str("sender")?,
                    session_key: f.str("sessionKey")?,
                    message: f.str("message")?,
                })
            })?),
            other => {
                return Err(DecodeError::UnknownCommand {
                    header: other.name().to_owned(),
                });
            }
        })
    }
}

impl fmt::Display for ClientMessage {
    /// The line with the spec's header names, without its line end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.encode(&mut out);
        out.pop();
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl fmt::Display for ServerMessage {
    /// The line with the spec's header names, without its line end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.encode(&mut out);
        out.pop();
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

// ---------------------------------------------------------------------------------------
// Dialects and decoding

/// A line that is no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The header is none of the protocol's for this direction (answered `UNKNOWN_COMMAND`).
    #[error("unknown header {header:?}")]
    UnknownCommand {
        /// The header, lossily decoded and cut to 40 characters.
        header: String,
    },
    /// The body is not JSON (answered `PARSE_ERROR`).
    #[error("the body after {header:?} is not valid JSON: {reason}")]
    InvalidJson { header: String, reason: String },
    /// The body is JSON but not an object (answered `PARSE_ERROR`).
    #[error("the body of {header} is not a JSON object")]
    NotAnObject { header: Header },
    /// A field has the wrong type (answered `PARSE_ERROR`).
    #[error("field {field:?} of {header} must be {expected}")]
    BadField {
        header: Header,
        field: &'static str,
        expected: &'static str,
    },
}

impl DecodeError {
    /// Whether the protocol answers this with `UNKNOWN_COMMAND` (else `PARSE_ERROR`).
    pub fn is_unknown_command(&self) -> bool {
        matches!(self, DecodeError::UnknownCommand { .. })
    }

    /// What a server answers: `UNKNOWN_COMMAND` or `PARSE_ERROR`.
    pub fn reply(&self) -> ServerMessage {
        if self.is_unknown_command() {
            ServerMessage::UnknownCommand
        } else {
            ServerMessage::ParseError
        }
    }
}

/// How a peer spells messages: header names and the order of a line's checks. The default is
/// the spec's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dialect {
    pub headers: HeaderMap,
    pub check_order: CheckOrder,
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(MAX_QUOTE).collect()
}

/// Parses a body; a missing, empty or blank one is `{}`.
fn parse_body(body: Option<&[u8]>) -> Result<Value, String> {
    match body {
        Some(body) if !body.iter().all(u8::is_ascii_whitespace) => {
            serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
        }
        _ => Ok(Value::Object(Map::new())),
    }
}

impl Dialect {
    /// The teachers' server: spec header names, the body parsed before the header is looked
    /// up.
    pub fn json_first() -> Self {
        Self {
            headers: HeaderMap::default(),
            check_order: CheckOrder::JsonFirst,
        }
    }

    /// Splits and checks a line; `accept` says which headers this direction knows.
    fn parse(
        &self,
        line: &[u8],
        accept: fn(Direction) -> bool,
    ) -> Result<(Header, Value), DecodeError> {
        let (name, body) = self.headers.split(line);
        let lookup = || {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| self.headers.lookup(n))
                .filter(|h| accept(h.direction()))
                .ok_or_else(|| DecodeError::UnknownCommand {
                    header: quote(name),
                })
        };
        let json = || {
            parse_body(body).map_err(|reason| DecodeError::InvalidJson {
                header: quote(name),
                reason,
            })
        };
        match self.check_order {
            CheckOrder::HeaderFirst => {
                let header = lookup()?;
                Ok((header, json()?))
            }
            CheckOrder::JsonFirst => {
                let value = json()?;
                Ok((lookup()?, value))
            }
        }
    }

    /// Decodes a line from a client (without its line end).
    pub fn decode_client(&self, line: &[u8]) -> Result<ClientMessage, DecodeError> {
        let (header, value) = self.parse(line, Direction::to_server)?;
        let Value::Object(map) = &value else {
            return Err(DecodeError::NotAnObject { header });
        };
        ClientMessage::from_body(header, &Fields { header, map })
    }

    /// Decodes a line from a server (without its line end).
    pub fn decode_server(&self, line: &[u8]) -> Result<ServerMessage, DecodeError> {
        let (header, value) = self.parse(line, Direction::to_client)?;
        let Value::Object(map) = &value else {
            return Err(DecodeError::NotAnObject { header });
        };
        ServerMessage::from_body(header, &Fields { header, map })
    }

    /// Appends a client message's line, `\n` included.
    pub fn encode_client(&self, message: &ClientMessage, out: &mut Vec<u8>) {
        message.encode_with(&self.headers, out);
    }

    /// Appends a server message's line, `\n` included.
    pub fn encode_server(&self, message: &ServerMessage, out: &mut Vec<u8>) {
        message.encode_with(&self.headers, out);
    }
}

/// The fields of a body, read with the type each message wants.
struct Fields<'a> {
    header: Header,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn bad(&self, field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::BadField {
            header: self.header,
            field,
            expected,
        }
    }

    /// A field that is present and not `null`.
    fn get(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A string; missing or `null` reads as `""`.
    fn str(&self, field: &'static str) -> Result<String, DecodeError> {
        Ok(self.opt_str(field)?.unwrap_or_default())
    }

    fn opt_str(&self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(field, "a string")),
        }
    }

    fn str_or_number(&self, field: &'static str) -> Result<String, DecodeError> {
        match self.get(field) {
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => self
                .str(field)
                .map_err(|_| self.bad(field, "a string or a number")),
        }
    }

    fn opt_u64(&self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(field, "a non-negative integer")),
            Some(_) => Err(self.bad(field, "a non-negative integer")),
        }
    }

    /// An error code: a number, or a string of digits.
    fn code(&self, field: &'static str) -> Result<Code, DecodeError> {
        let expected = "an error code (a non-negative integer)";
        match self.get(field) {
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| Code::try_from(n).ok())
                .ok_or_else(|| self.bad(field, expected)),
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map_err(|_| self.bad(field, expected))
            }
            _ => Err(self.bad(field, expected)),
        }
    }

    fn strings(&self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        let expected = "an array of strings";
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.bad(field, expected)),
                })
                .collect(),
            Some(_) => Err(self.bad(field, expected)),
        }
    }

    fn results(&self, field: &'static str) -> Result<Vec<GameResult>, DecodeError> {
        let expected = "an array of {\"username\":string,\"time_ms\":integer}";
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let Value::Object(map) = item else {
                        return Err(self.bad(field, expected));
                    };
                    let inner = Fields {
                        header: self.header,
                        map,
                    };
                    Ok(GameResult {
                        username: inner
                            .str("username")
                            .map_err(|_| self.bad(field, expected))?,
                        time_ms: inner
                            .opt_u64("time_ms")
                            .ok()
                            .flatten()
                            .ok_or_else(|| self.bad(field, expected))?,
                    })
                })
                .collect(),
            Some(_) => Err(self.bad(field, expected)),
        }
    }

    fn guess(&self, field: &'static str) -> Guess {
        match self.map.get(field) {
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                Guess::Number(n.as_i64().unwrap_or(i64::MAX))
            }
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                Guess::Number(s.parse().unwrap_or(i64::MAX))
            }
            Some(other) => Guess::Invalid(other.clone()),
            None => Guess::Invalid(Value::Null),
        }
    }

    fn decision(&self, field: &'static str) -> Result<TransferDecision, DecodeError> {
        match self.get(field) {
            Some(Value::String(s)) if s.eq_ignore_ascii_case("OK") => Ok(TransferDecision::Accept),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("REJECTED") => {
                Ok(TransferDecision::Reject)
            }
            _ => Err(self.bad(field, "\"OK\" or \"REJECTED\"")),
        }
    }

    /// `{"status":"OK",...}` (then `ok` reads the rest) or `{"status":"ERROR","code":N}`.
    fn status<T>(
        &self,
        ok: impl FnOnce(&Self) -> Result<T, DecodeError>,
    ) -> Result<Result<T, Code>, DecodeError> {
        match self.get("status") {
            Some(Value::String(s)) if s.eq_ignore_ascii_case("OK") => Ok(Ok(ok(self)?)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("ERROR") => {
                Ok(Err(self.code("code")?))
            }
            _ => Err(self.bad("status", "\"OK\" or \"ERROR\"")),
        }
    }

    /// A relayed message with no status, or `{"status":"ERROR","code":N}`.
    fn status_or_ok<T>(
        &self,
        ok: impl FnOnce(&Self) -> Result<T, DecodeError>,
    ) -> Result<Result<T, Code>, DecodeError> {
        if self.get("status").is_some() {
            self.status(ok)
        } else {
            Ok(Ok(ok(self)?))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Writes a compact JSON object after a header: ` {` on the first key, `}` at the end,
/// nothing for an empty body.
struct Body<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
    /// What opens the object: ` {` after a header, `{` inside a value.
    open: &'static [u8],
}

impl<'a> Body<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            empty: true,
            open: b" {",
        }
    }

    fn nested(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            empty: true,
            open: b"{",
        }
    }

    fn key(&mut self, key: &str) {
        if self.empty {
            self.out.extend_from_slice(self.open);
            self.empty = false;
        } else {
            self.out.push(b',');
        }
        push_json_str(self.out, key);
        self.out.push(b':');
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_str(self.out, value);
    }

    fn num(&mut self, key: &str, value: u64) {
        self.raw(key, &value.to_string());
    }

    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    fn status<T>(&mut self, result: &Result<T, Code>, ok: impl FnOnce(&mut Self, &T)) {
        match result {
            Ok(value) => {
                self.str("status", "OK");
                ok(self, value);
            }
            Err(code) => {
                self.str("status", "ERROR");
                self.num("code", u64::from(*code));
            }
        }
    }

    /// A relayed message without a status, or an error.
    fn status_or<T>(&mut self, result: &Result<T, Code>, ok: impl FnOnce(&mut Self, &T)) {
        match result {
            Ok(value) => ok(self, value),
            Err(code) => {
                self.str("status", "ERROR");
                self.num("code", u64::from(*code));
            }
        }
    }

    /// Ends an object nested in a value: `{}` when empty.
    fn close(self) {
        if self.empty {
            self.out.extend_from_slice(b"{}");
        } else {
            self.out.push(b'}');
        }
    }

    /// Ends the body and the line.
    fn finish(self) {
        if !self.empty {
            self.out.push(b'}');
        }
        self.out.push(b'\n');
    }
}

/// Appends `s` as a JSON string, escaped as serde_json does: `"`, `\` and control characters.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

// ---------------------------------------------------------------------------------------
// Data channel

/// The most bytes a data-channel hello line may take, line end included.
pub const MAX_DATA_HELLO: usize = 128;

/// The first line a client sends on the data channel.
///
/// With the `arbitrary` feature, `Arbitrary` makes ids that parse back: non-empty, without
/// spaces or line ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum DataHello {
    /// `UPLOAD <transferId>`: this connection sends the file.
    Upload(#[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::transfer_id))] String),
    /// `DOWNLOAD <transferId>`: this connection receives it.
    Download(#[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::transfer_id))] String),
}

/// A data-channel hello that is not `UPLOAD <id>` or `DOWNLOAD <id>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `UPLOAD <transferId>` or `DOWNLOAD <transferId>`, got {0:?}")]
pub struct BadHello(pub String);

impl DataHello {
    /// The transfer it names.
    pub fn transfer_id(&self) -> &str {
        match self {
            DataHello::Upload(id) | DataHello::Download(id) => id,
        }
    }

    /// Parses the line without its line end (a trailing `\r` is ignored).
    pub fn parse(line: &[u8]) -> Result<Self, BadHello> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let bad = || BadHello(quote(line));
        let text = std::str::from_utf8(line).map_err(|_| bad())?;
        let (verb, id) = text.split_once(' ').ok_or_else(bad)?;
        if id.is_empty() || id.contains(' ') {
            return Err(bad());
        }
        match verb {
            "UPLOAD" => Ok(DataHello::Upload(id.to_owned())),
            "DOWNLOAD" => Ok(DataHello::Download(id.to_owned())),
            _ => Err(bad()),
        }
    }

    /// Appends the line, `\n` included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (verb, id) = match self {
            DataHello::Upload(id) => ("UPLOAD", id),
            DataHello::Download(id) => ("DOWNLOAD", id),
        };
        out.extend_from_slice(format!("{verb} {id}\n").as_bytes());
    }
}

/// The server's one line on the data channel before the file's bytes.
///
/// With the `arbitrary` feature, `Arbitrary` makes reasons without line ends (which the
/// encoder would turn into spaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum DataReply {
    /// `READY`: both sides are attached; the bytes follow (downloader) or may be sent
    /// (uploader).
    Ready,
    /// `ERROR <reason>`: the server closes the connection.
    Error(#[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::data_reason))] String),
}

impl DataReply {
    /// Parses the line without its line end.
    pub fn parse(line: &[u8]) -> Option<Self> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"READY" {
            return Some(DataReply::Ready);
        }
        let reason = line.strip_prefix(b"ERROR")?;
        let reason = reason.strip_prefix(b" ").unwrap_or(reason);
        Some(DataReply::Error(
            String::from_utf8_lossy(reason).into_owned(),
        ))
    }

    /// Appends the line, `\n` included (a reason's line ends become spaces).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DataReply::Ready => out.extend_from_slice(b"READY\n"),
            DataReply::Error(reason) => {
                out.extend_from_slice(b"ERROR ");
                out.extend(
                    reason
                        .bytes()
                        .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                );
                out.push(b'\n');
            }
        }
    }
}

/// Whether `username` is valid: 3 to 14 characters of `[A-Za-z0-9_]`.
pub fn is_valid_username(username: &str) -> bool {
    (3..=14).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `checksum` is a SHA-256 in hex: 64 hex digits (either case).
pub fn is_valid_checksum(checksum: &str) -> bool {
    checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;
