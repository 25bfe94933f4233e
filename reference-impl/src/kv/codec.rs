//! Bytes <-> messages of the key-value protocol. Pure: no I/O, no async, never panics.
//!
//! Two dialects share the commands and replies and differ in framing.
//!
//! ```text
//! Dialect::Spec (the letter of specs/kv-tls.md): every message is ASCII ending in "\n".
//!
//!   client -> server                        server -> client
//!   CONNECT <id>\n <32 raw hash bytes>      CONNECT: OK\n | CONNECT: ERROR\n
//!   PUT <key>\n <value>\n                   PUT: OK\n     | PUT: ERROR\n
//!   GET <key>\n                             GET <value>\n <crc>\n | GET: ERROR\n
//!   DELETE <key>\n                          DELETE: OK\n  | DELETE: ERROR\n
//!   DISCONNECT\n                            DISCONNECT: OK\n
//!
//!   <hash>  PBKDF2-HMAC-SHA256(password, salt, 100_000) (see `auth`), no line end
//!   <crc>   CRC-32 (zlib) of <value>, unsigned decimal
//!   <id>, <key>   non-empty ASCII without "\n" (may contain spaces)
//!   <value>       ASCII without "\n", may be empty
//!   limit   a message, its "\n" included, is at most `max_message` bytes (default 4096)
//!
//! Dialect::Course (the course author's implementation): one message per write, hence per
//! TLS record, and no line ends. The server reads one message per read.
//!
//!   "CONNECT <id>"  then the 32 hash bytes   "CONNECT: OK"
//!   "PUT <key>\n<value>"   (one write)       "PUT: OK"
//!   "GET <key>"                              "GET <value>\n<crc>"   (one write)
//!   "DELETE <key>"                           "DELETE: OK"
//!   "DISCONNECT"                             "DISCONNECT: OK"
//!
//!   - the id is everything after "CONNECT ", so "CONNECT abc\n" names the id "abc\n",
//!     which is not a valid id (the server answers CONNECT: ERROR);
//!   - the hash is the next 32 bytes, however the writes split them;
//!   - "PUT <key>" alone means the value is the next message;
//!   - every other message (and PUT's value) may end in one "\n", which is ignored;
//!   - a message is at most `max_message` bytes.
//! ```
//!
//! Anything else is malformed: an unknown or lowercase command, a command without its key
//! (`GET`, `GET `), an argument to `DISCONNECT`, an empty line, a non-ASCII byte, a message
//! over the limit. The decoders report it as a [`DecodeError`] saying what and at which byte
//! of the stream; the protocol's answer to all of them is to drop the connection.
//!
//! [`ServerDecoder`] turns the client's bytes into complete requests (a `CONNECT` together
//! with its hash, a `PUT` together with its value); [`ReplyDecoder`] does the same for the
//! server's replies, pairing `GET <value>` with its CRC line. Both are fed whatever a read
//! returned and answer "need more bytes" with `Ok(None)`.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

pub use super::auth::HASH_LEN;

/// The spec's `RECEIVE_BUFFER_SIZE`: the largest message, line end included. The spec says
/// 4096 bits; every implementation uses 4096 bytes.
pub const MAX_MESSAGE: usize = 4096;

/// How much longer than a request a reply may be: `GET <value>\n<crc>\n` carries a value of
/// up to `MAX_MESSAGE` bytes plus the `GET ` prefix and a ten-digit CRC line.
pub const REPLY_OVERHEAD: usize = 16;

/// Longest reply [`ReplyDecoder::new`] accepts.
pub const MAX_REPLY: usize = MAX_MESSAGE + REPLY_OVERHEAD;

/// How much of an unknown command or reply an error message quotes.
const MAX_QUOTE: usize = 40;

/// Framing of messages: the spec's line-based one, or the course implementation's
/// one-message-per-write one. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// Every message ends in `\n`.
    #[default]
    Spec,
    /// One message per write, no line ends.
    Course,
}

impl Dialect {
    /// The name used on command lines and in settings: `spec` or `course`.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Spec => "spec",
            Dialect::Course => "course",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dialect name other than `spec` or `course`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect {0:?}: expected `spec` or `course`")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spec" => Ok(Dialect::Spec),
            "course" => Ok(Dialect::Course),
            other => Err(UnknownDialect(other.to_owned())),
        }
    }
}

/// The five requests of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Put,
    Get,
    Delete,
    Disconnect,
}

impl Command {
    /// The keyword on the wire.
    pub const fn keyword(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Put => "PUT",
            Command::Get => "GET",
            Command::Delete => "DELETE",
            Command::Disconnect => "DISCONNECT",
        }
    }

    /// What the argument of the command is called, for error messages.
    const fn argument(self) -> &'static str {
        match self {
            Command::Connect => "client id",
            Command::Disconnect => "argument",
            Command::Put | Command::Get | Command::Delete => "key",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A complete request from a client.
///
/// With the `arbitrary` feature, `Arbitrary` makes only requests that encode in both
/// dialects: ids and values ASCII without `\n`, keys non-empty too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ClientMessage {
    /// `CONNECT <id>` and the 32-byte password hash. The decoder accepts any ASCII id here
    /// (even an empty one, or one ending in `\n` in the course dialect); whether it is a
    /// valid id is the server's decision ([`is_valid_id`]), answered with `CONNECT: ERROR`.
    Connect {
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::kv_value))]
        id: String,
        hash: [u8; HASH_LEN],
    },
    /// `PUT <key>` and its value.
    Put {
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::kv_key))]
        key: String,
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::kv_value))]
        value: String,
    },
    /// `GET <key>`.
    Get {
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::kv_key))]
        key: String,
    },
    /// `DELETE <key>`.
    Delete {
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::kv_key))]
        key: String,
    },
    /// `DISCONNECT`.
    Disconnect,
}

impl ClientMessage {
    /// Which request this is.
    pub fn command(&self) -> Command {
        match self {
            ClientMessage::Connect { .. } => Command::Connect,
            ClientMessage::Put { .. } => Command::Put,
            ClientMessage::Get { .. } => Command::Get,
            ClientMessage::Delete { .. } => Command::Delete,
            ClientMessage::Disconnect => Command::Disconnect,
        }
    }

    /// Appends the message's bytes to `out`. In the course dialect, where write boundaries
    /// matter, use [`ClientMessage::writes`] or [`ClientMessage::encode_writes`] instead.
    ///
    /// Encoding does not validate: a key with a `\n` or a non-ASCII character is written as
    /// given and will not decode back. Check with [`is_valid_key`] and [`is_valid_value`].
    pub fn encode(&self, dialect: Dialect, out: &mut Vec<u8>) {
        self.encode_writes(dialect, out);
    }

    /// Appends the message's bytes to `out`, as [`ClientMessage::encode`] does, and returns
    /// where in `out` a second write starts: in the course dialect a `CONNECT`'s hash is a
    /// write of its own; every other message is one write (`None`).
    pub fn encode_writes(&self, dialect: Dialect, out: &mut Vec<u8>) -> Option<usize> {
        let lf: &[u8] = match dialect {
            Dialect::Spec => b"\n",
            Dialect::Course => b"",
        };
        let mut line = |command: Command, argument: &str| {
            out.extend_from_slice(command.keyword().as_bytes());
            out.push(b' ');
            out.extend_from_slice(argument.as_bytes());
            out.extend_from_slice(lf);
        };
        match self {
            ClientMessage::Connect { id, hash } => {
                line(Command::Connect, id);
                let hash_at = out.len();
                out.extend_from_slice(hash);
                (dialect == Dialect::Course).then_some(hash_at)
            }
            // The course client sends key and value in one write, separated by "\n".
            ClientMessage::Put { key, value } => {
                out.extend_from_slice(b"PUT ");
                out.extend_from_slice(key.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(lf);
                None
            }
            ClientMessage::Get { key } => {
                line(Command::Get, key);
                None
            }
            ClientMessage::Delete { key } => {
                line(Command::Delete, key);
                None
            }
            ClientMessage::Disconnect => {
                out.extend_from_slice(b"DISCONNECT");
                out.extend_from_slice(lf);
                None
            }
        }
    }

    /// The message as the separate writes its dialect sends: one write in the spec dialect;
    /// in the course dialect `CONNECT <id>` and the hash are two writes, everything else one.
    pub fn writes(&self, dialect: Dialect) -> Vec<Vec<u8>> {
        let mut first = Vec::new();
        match self.encode_writes(dialect, &mut first) {
            Some(at) => {
                let second = first.split_off(at.min(first.len()));
                vec![first, second]
            }
            None => vec![first],
        }
    }
}

/// A reply from the server.
///
/// With the `arbitrary` feature, `Arbitrary` makes only replies that encode: a `GET` value
/// is ASCII without `\n` (its CRC is any number).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Reply {
    ConnectOk,
    ConnectError,
    PutOk,
    PutError,
    /// `GET <value>` and the CRC line. `crc` is what the server sent: a decoder does not
    /// check it against the value (see [`Reply::crc_matches`]).
    GetOk {
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::kv_value))]
        value: String,
        crc: u32,
    },
    GetError,
    DeleteOk,
    DeleteError,
    DisconnectOk,
}

impl Reply {
    /// `GET <value>` with the value's correct CRC-32.
    pub fn get_ok(value: impl Into<String>) -> Self {
        let value = value.into();
        let crc = super::auth::crc32(value.as_bytes());
        Reply::GetOk { value, crc }
    }

    /// The request this reply answers.
    pub fn command(&self) -> Command {
        match self {
            Reply::ConnectOk | Reply::ConnectError => Command::Connect,
            Reply::PutOk | Reply::PutError => Command::Put,
            Reply::GetOk { .. } | Reply::GetError => Command::Get,
            Reply::DeleteOk | Reply::DeleteError => Command::Delete,
            Reply::DisconnectOk => Command::Disconnect,
        }
    }

    /// Whether a `GET` reply's CRC is the CRC-32 of its value (`true` for other replies).
    pub fn crc_matches(&self) -> bool {
        match self {
            Reply::GetOk { value, crc } => super::auth::crc32(value.as_bytes()) == *crc,
            _ => true,
        }
    }

    /// The fixed text of every reply but `GET <value>`.
    const fn fixed(&self) -> Option<&'static str> {
        Some(match self {
            Reply::ConnectOk => "CONNECT: OK",
            Reply::ConnectError => "CONNECT: ERROR",
            Reply::PutOk => "PUT: OK",
            Reply::PutError => "PUT: ERROR",
            Reply::GetOk { .. } => return None,
            Reply::GetError => "GET: ERROR",
            Reply::DeleteOk => "DELETE: OK",
            Reply::DeleteError => "DELETE: ERROR",
            Reply::DisconnectOk => "DISCONNECT: OK",
        })
    }

    fn from_fixed(text: &str) -> Option<Self> {
        Some(match text {
            "CONNECT: OK" => Reply::ConnectOk,
            "CONNECT: ERROR" => Reply::ConnectError,
            "PUT: OK" => Reply::PutOk,
            "PUT: ERROR" => Reply::PutError,
            "GET: ERROR" => Reply::GetError,
            "DELETE: OK" => Reply::DeleteOk,
            "DELETE: ERROR" => Reply::DeleteError,
            "DISCONNECT: OK" => Reply::DisconnectOk,
            _ => return None,
        })
    }

    /// Appends the reply's bytes to `out`: in the course dialect this is exactly one write.
    pub fn encode(&self, dialect: Dialect, out: &mut Vec<u8>) {
        let lf = match dialect {
            Dialect::Spec => "\n",
            Dialect::Course => "",
        };
        match self {
            Reply::GetOk { value, crc } => {
                out.extend_from_slice(b"GET ");
                out.extend_from_slice(value.as_bytes());
                out.push(b'\n');
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{crc}");
                out.extend_from_slice(lf.as_bytes());
            }
            other => {
                if let Some(text) = other.fixed() {
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(lf.as_bytes());
                }
            }
        }
    }
}

impl fmt::Display for Reply {
    /// The reply as on the wire without line ends; `GET <value>` shows its CRC in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::GetOk { value, crc } => write!(f, "GET {value} (crc {crc})"),
            other => f.write_str(other.fixed().unwrap_or_default()),
        }
    }
}

/// Whether `id` can name a session: non-empty ASCII without `\n`.
pub fn is_valid_id(id: &str) -> bool {
    is_valid_key(id)
}

/// Whether `key` can be sent: non-empty ASCII without `\n`.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && is_valid_value(key)
}

/// Whether `value` can be sent: ASCII without `\n`, possibly empty.
pub fn is_valid_value(value: &str) -> bool {
    value.is_ascii() && !value.contains('\n')
}

/// Malformed input. Each variant says where in the stream (`offset`, counted in bytes from
/// the first byte fed to the decoder) decoding stopped.
///
/// Errors do not poison a decoder: the offending message has been skipped (an over-long line
/// is skipped up to its `\n`), and decoding may go on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A message did not end within `limit` bytes.
    #[error("the message at byte {offset} is longer than the limit of {limit} bytes")]
    TooLong { limit: usize, offset: u64 },
    /// A byte above 0x7f where only ASCII is allowed.
    #[error("byte {byte:#04x} at offset {offset} is not ASCII")]
    NotAscii { byte: u8, offset: u64 },
    /// An empty line where a command or reply was expected.
    #[error("empty line at byte {offset}")]
    EmptyLine { offset: u64 },
    /// A line that starts with no known command (commands are uppercase).
    #[error("unknown command {command:?} at byte {offset}")]
    UnknownCommand { command: String, offset: u64 },
    /// `GET`, `GET `, `PUT`, `DELETE`... without their key, or `CONNECT` without an id.
    #[error("{command} at byte {offset} has no {}", .command.argument())]
    MissingArgument { command: Command, offset: u64 },
    /// `DISCONNECT` followed by something.
    #[error("{command} at byte {offset} takes no argument")]
    UnexpectedArgument { command: Command, offset: u64 },
    /// Course dialect: a line feed inside a message that has none there.
    #[error("unexpected line feed at byte {offset}")]
    UnexpectedLineFeed { offset: u64 },
    /// A reply that is none of the protocol's.
    #[error("unknown reply {reply:?} at byte {offset}")]
    UnknownReply { reply: String, offset: u64 },
    /// The line after `GET <value>` is not an unsigned 32-bit decimal number.
    #[error("the CRC line {line:?} at byte {offset} is not an unsigned 32-bit decimal number")]
    BadCrc { line: String, offset: u64 },
}

impl DecodeError {
    /// Where decoding stopped, in bytes from the start of the stream.
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::TooLong { offset, .. }
            | DecodeError::NotAscii { offset, .. }
            | DecodeError::EmptyLine { offset }
            | DecodeError::UnknownCommand { offset, .. }
            | DecodeError::MissingArgument { offset, .. }
            | DecodeError::UnexpectedArgument { offset, .. }
            | DecodeError::UnexpectedLineFeed { offset }
            | DecodeError::UnknownReply { offset, .. }
            | DecodeError::BadCrc { offset, .. } => *offset,
        }
    }
}

/// Bytes fed to a decoder and not consumed yet, with the boundaries of the reads they came
/// from (the course dialect's framing).
#[derive(Debug, Default)]
struct Input {
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// End (index into `buf`) of each read that is not wholly consumed, oldest first.
    ends: VecDeque<usize>,
    /// Stream offset of `buf[start]`.
    offset: u64,
}

/// What [`Input::find_line`] found.
enum Line {
    /// A line of this many bytes, not counting its `\n`.
    Complete(usize),
    /// No `\n` yet, and fewer bytes than the limit.
    Incomplete,
    /// At least `limit` bytes and no `\n` among them.
    TooLong,
}

impl Input {
    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 {
            // Compact before growing, so the buffer holds only what is unconsumed.
            self.buf.drain(..self.start);
            for end in &mut self.ends {
                *end -= self.start;
            }
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.ends.push_back(self.buf.len());
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        self.start += n;
        self.offset += n as u64;
        while self.ends.front().is_some_and(|&end| end <= self.start) {
            self.ends.pop_front();
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.ends.clear();
        }
    }

    /// The unconsumed rest of the oldest read.
    fn chunk(&self) -> Option<&[u8]> {
        let end = *self.ends.front()?;
        self.buf.get(self.start..end)
    }

    /// Looks for a line whose length, `\n` included, is at most `limit`.
    fn find_line(&self, limit: usize) -> Line {
        let available = self.available();
        let window = &available[..available.len().min(limit)];
        match window.iter().position(|&b| b == b'\n') {
            Some(len) => Line::Complete(len),
            None if available.len() >= limit => Line::TooLong,
            None => Line::Incomplete,
        }
    }

    /// Takes the next `HASH_LEN` bytes, whatever reads they came from.
    fn take_hash(&mut self) -> Option<[u8; HASH_LEN]> {
        let hash: [u8; HASH_LEN] = self.available().get(..HASH_LEN)?.try_into().ok()?;
        self.consume(HASH_LEN);
        Some(hash)
    }
}

/// `bytes` as text, or where its first non-ASCII byte is.
fn ascii(bytes: &[u8], offset: u64) -> Result<&str, DecodeError> {
    match bytes.iter().position(|b| !b.is_ascii()) {
        Some(i) => Err(DecodeError::NotAscii {
            byte: bytes[i],
            offset: offset + i as u64,
        }),
        // ASCII is valid UTF-8.
        None => Ok(std::str::from_utf8(bytes).unwrap_or_default()),
    }
}

fn quote(text: &str) -> String {
    text.chars().take(MAX_QUOTE).collect()
}

/// Removes one trailing `\n`, which the course dialect tolerates.
fn strip_one_lf(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// The error for a `\n` inside `text`, which starts at stream offset `offset`.
fn reject_line_feed(text: &str, offset: u64) -> Result<(), DecodeError> {
    match text.find('\n') {
        Some(i) => Err(DecodeError::UnexpectedLineFeed {
            offset: offset + i as u64,
        }),
        None => Ok(()),
    }
}

/// A command line, parsed.
enum Parsed {
    Connect(String),
    Put(String),
    Get(String),
    Delete(String),
    Disconnect,
}

/// A complete line of the spec dialect: a PUT's value, or a command.
enum SpecLine {
    Value(ClientMessage),
    Command(Parsed),
}

/// Parses one command line (no line end) starting at stream offset `offset`.
fn parse_command(line: &str, offset: u64) -> Result<Parsed, DecodeError> {
    if line.is_empty() {
        return Err(DecodeError::EmptyLine { offset });
    }
    let (verb, argument) = match line.split_once(' ') {
        Some((verb, argument)) => (verb, Some(argument)),
        None => (line, None),
    };
    let command = match verb {
        "CONNECT" => Command::Connect,
        "PUT" => Command::Put,
        "GET" => Command::Get,
        "DELETE" => Command::Delete,
        "DISCONNECT" => Command::Disconnect,
        _ => {
            return Err(DecodeError::UnknownCommand {
                command: quote(verb),
                offset,
            });
        }
    };
    let missing = DecodeError::MissingArgument { command, offset };
    let key = || match argument {
        Some(key) if !key.is_empty() => Ok(key.to_owned()),
        _ => Err(missing.clone()),
    };
    Ok(match command {
        // Whether the id is acceptable is the server's call (CONNECT: ERROR), not malformed.
        Command::Connect => Parsed::Connect(argument.ok_or(missing.clone())?.to_owned()),
        Command::Put => Parsed::Put(key()?),
        Command::Get => Parsed::Get(key()?),
        Command::Delete => Parsed::Delete(key()?),
        Command::Disconnect => match argument {
            None => Parsed::Disconnect,
            Some(_) => {
                return Err(DecodeError::UnexpectedArgument {
                    command,
                    offset: offset + verb.len() as u64,
                });
            }
        },
    })
}

/// Where a [`ServerDecoder`] is in the request.
#[derive(Debug)]
enum RequestState {
    /// Expecting a command.
    Command,
    /// After `CONNECT <id>`: expecting the 32 hash bytes.
    Hash { id: String },
    /// After `PUT <key>`: expecting the value.
    Value { key: String },
    /// Spec dialect, after an over-long line: discarding up to its `\n`.
    SkipLine,
}

/// Incremental decoder of what a client sends: feed it each read, then call
/// [`ServerDecoder::next_message`] until it answers `Ok(None)`.
///
/// In the course dialect every [`feed`](ServerDecoder::feed) is one message (the server
/// must pass each TLS record separately), except that the hash after `CONNECT` is the next 32
/// bytes however they were split.
///
/// Memory: the decoder holds the unconsumed bytes. A caller that drains it after each read
/// keeps that below `max_message` plus one read, because a line that has not ended within
/// `max_message` bytes is rejected at once.
#[derive(Debug)]
pub struct ServerDecoder {
    dialect: Dialect,
    max_message: usize,
    input: Input,
    state: RequestState,
}

impl ServerDecoder {
    /// A decoder with the default limit [`MAX_MESSAGE`].
    pub fn new(dialect: Dialect) -> Self {
        Self::with_max_message(dialect, MAX_MESSAGE)
    }

    /// A decoder accepting messages of up to `max_message` bytes, line end included.
    pub fn with_max_message(dialect: Dialect, max_message: usize) -> Self {
        Self {
            dialect,
            max_message,
            input: Input::default(),
            state: RequestState::Command,
        }
    }

    /// The dialect this decoder frames.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The message size limit in bytes, line end included.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Adds the bytes of one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.push(bytes);
    }

    /// Bytes fed and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// The request whose first part has arrived and whose second part is awaited: `CONNECT`
    /// waiting for its hash, `PUT` waiting for its value. A server can refuse such a request
    /// before it is complete (a `PUT` before login, a second `CONNECT`).
    pub fn pending(&self) -> Option<Command> {
        match self.state {
            RequestState::Hash { .. } => Some(Command::Connect),
            RequestState::Value { .. } => Some(Command::Put),
            RequestState::Command | RequestState::SkipLine => None,
        }
    }

    /// How many bytes of a `CONNECT`'s hash are still to come: 0 unless a `CONNECT` waits
    /// for its hash. The RSA transport reads that many bytes in the clear.
    pub fn hash_wanted(&self) -> usize {
        match self.state {
            RequestState::Hash { .. } => HASH_LEN.saturating_sub(self.input.len()),
            _ => 0,
        }
    }

    /// The next complete request, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<ClientMessage>, DecodeError> {
        match self.dialect {
            Dialect::Spec => self.next_spec(),
            Dialect::Course => self.next_course(),
        }
    }

    fn take_hash(&mut self, id: String) -> Option<ClientMessage> {
        match self.input.take_hash() {
            Some(hash) => {
                self.state = RequestState::Command;
                Some(ClientMessage::Connect { id, hash })
            }
            None => {
                self.state = RequestState::Hash { id };
                None
            }
        }
    }

    fn next_spec(&mut self) -> Result<Option<ClientMessage>, DecodeError> {
        loop {
            match std::mem::replace(&mut self.state, RequestState::Command) {
                RequestState::Hash { id } => return Ok(self.take_hash(id)),
                RequestState::SkipLine => {
                    match self.input.available().iter().position(|&b| b == b'\n') {
                        Some(len) => self.input.consume(len + 1),
                        None => {
                            self.input.consume(self.input.len());
                            self.state = RequestState::SkipLine;
                            return Ok(None);
                        }
                    }
                }
                state @ (RequestState::Command | RequestState::Value { .. }) => {
                    let offset = self.input.offset;
                    let len = match self.input.find_line(self.max_message) {
                        Line::Complete(len) => len,
                        Line::Incomplete => {
                            self.state = state;
                            return Ok(None);
                        }
                        Line::TooLong => {
                            self.state = RequestState::SkipLine;
                            return Err(DecodeError::TooLong {
                                limit: self.max_message,
                                offset,
                            });
                        }
                    };
                    // Parsed in place: only the key, id or value is copied out.
                    let parsed = match ascii(&self.input.available()[..len], offset) {
                        Ok(line) => match state {
                            RequestState::Value { key } => {
                                Ok(SpecLine::Value(ClientMessage::Put {
                                    key,
                                    value: line.to_owned(),
                                }))
                            }
                            _ => parse_command(line, offset).map(SpecLine::Command),
                        },
                        Err(e) => Err(e),
                    };
                    self.input.consume(len + 1);
                    match parsed? {
                        SpecLine::Value(message) => return Ok(Some(message)),
                        SpecLine::Command(Parsed::Connect(id)) => {
                            self.state = RequestState::Hash { id };
                        }
                        SpecLine::Command(Parsed::Put(key)) => {
                            self.state = RequestState::Value { key };
                        }
                        SpecLine::Command(Parsed::Get(key)) => {
                            return Ok(Some(ClientMessage::Get { key }));
                        }
                        SpecLine::Command(Parsed::Delete(key)) => {
                            return Ok(Some(ClientMessage::Delete { key }));
                        }
                        SpecLine::Command(Parsed::Disconnect) => {
                            return Ok(Some(ClientMessage::Disconnect));
                        }
                    }
                }
            }
        }
    }

    /// Takes the oldest read as one message, checking its size and its bytes.
    fn take_chunk(&mut self) -> Option<Result<(String, u64), DecodeError>> {
        let offset = self.input.offset;
        let chunk = self.input.chunk()?;
        let len = chunk.len();
        let result = if len > self.max_message {
            Err(DecodeError::TooLong {
                limit: self.max_message,
                offset,
            })
        } else {
            ascii(chunk, offset).map(|text| (text.to_owned(), offset))
        };
        self.input.consume(len);
        Some(result)
    }

    fn next_course(&mut self) -> Result<Option<ClientMessage>, DecodeError> {
        loop {
            match std::mem::replace(&mut self.state, RequestState::Command) {
                RequestState::Hash { id } => return Ok(self.take_hash(id)),
                RequestState::Value { key } => {
                    let Some(chunk) = self.take_chunk() else {
                        self.state = RequestState::Value { key };
                        return Ok(None);
                    };
                    let (text, offset) = chunk?;
                    let value = strip_one_lf(&text);
                    reject_line_feed(value, offset)?;
                    return Ok(Some(ClientMessage::Put {
                        key,
                        value: value.to_owned(),
                    }));
                }
                RequestState::Command | RequestState::SkipLine => {
                    let Some(chunk) = self.take_chunk() else {
                        return Ok(None);
                    };
                    let (text, offset) = chunk?;
                    let (first, rest) = match text.split_once('\n') {
                        Some((first, rest)) => (first, Some(rest)),
                        None => (text.as_str(), None),
                    };
                    // Offset of the text after the first line feed.
                    let rest_offset = offset + first.len() as u64 + 1;
                    let single_line = |message: ClientMessage| match rest {
                        None | Some("") => Ok(Some(message)),
                        Some(_) => Err(DecodeError::UnexpectedLineFeed {
                            offset: rest_offset - 1,
                        }),
                    };
                    match parse_command(first, offset)? {
                        Parsed::Connect(_) => {
                            // The id is everything after "CONNECT ", line feeds included.
                            let id = text.get("CONNECT ".len()..).unwrap_or_default();
                            self.state = RequestState::Hash { id: id.to_owned() };
                        }
                        Parsed::Put(key) => match rest {
                            Some(value) => {
                                let value = strip_one_lf(value);
                                reject_line_feed(value, rest_offset)?;
                                return Ok(Some(ClientMessage::Put {
                                    key,
                                    value: value.to_owned(),
                                }));
                            }
                            None => self.state = RequestState::Value { key },
                        },
                        Parsed::Get(key) => return single_line(ClientMessage::Get { key }),
                        Parsed::Delete(key) => return single_line(ClientMessage::Delete { key }),
                        Parsed::Disconnect => return single_line(ClientMessage::Disconnect),
                    }
                }
            }
        }
    }
}

/// Where a [`ReplyDecoder`] is.
#[derive(Debug)]
enum ReplyState {
    Reply,
    /// After `GET <value>`: expecting the CRC line.
    Crc {
        value: String,
    },
    SkipLine,
}

/// Incremental decoder of what a server sends, for clients and the harness: feed it each
/// read, then call [`ReplyDecoder::next_reply`] until it answers `Ok(None)`. A `GET <value>`
/// is returned together with the CRC that follows it.
///
/// In the course dialect every [`feed`](ReplyDecoder::feed) is one reply; a `GET` reply is
/// `GET <value>\n<crc>` in one write, though a CRC arriving in the next write is accepted
/// too, as is one trailing `\n` on any reply.
#[derive(Debug)]
pub struct ReplyDecoder {
    dialect: Dialect,
    max_reply: usize,
    input: Input,
    state: ReplyState,
}

impl ReplyDecoder {
    /// A decoder with the default limit [`MAX_REPLY`].
    pub fn new(dialect: Dialect) -> Self {
        Self::with_max_reply(dialect, MAX_REPLY)
    }

    /// A decoder accepting replies of up to `max_reply` bytes per line (per write in the
    /// course dialect).
    pub fn with_max_reply(dialect: Dialect, max_reply: usize) -> Self {
        Self {
            dialect,
            max_reply,
            input: Input::default(),
            state: ReplyState::Reply,
        }
    }

    /// The dialect this decoder frames.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Adds the bytes of one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.push(bytes);
    }

    /// Bytes fed and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Whether a `GET <value>` has arrived and its CRC has not.
    pub fn awaiting_crc(&self) -> bool {
        matches!(self.state, ReplyState::Crc { .. })
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, DecodeError> {
        loop {
            let (text, offset) = match self.dialect {
                Dialect::Spec => match self.next_line()? {
                    Some(line) => line,
                    None => return Ok(None),
                },
                Dialect::Course => {
                    let offset = self.input.offset;
                    let Some(chunk) = self.input.chunk() else {
                        return Ok(None);
                    };
                    let len = chunk.len();
                    let text = if len > self.max_reply {
                        Err(DecodeError::TooLong {
                            limit: self.max_reply,
                            offset,
                        })
                    } else {
                        ascii(chunk, offset).map(str::to_owned)
                    };
                    self.input.consume(len);
                    match text {
                        Ok(text) => (strip_one_lf(&text).to_owned(), offset),
                        Err(e) => {
                            // The offending write is skipped, with any GET it completed.
                            self.state = ReplyState::Reply;
                            return Err(e);
                        }
                    }
                }
            };
            match std::mem::replace(&mut self.state, ReplyState::Reply) {
                ReplyState::Crc { value } => {
                    reject_line_feed(&text, offset)?;
                    return parse_crc(&text, offset).map(|crc| Some(Reply::GetOk { value, crc }));
                }
                ReplyState::Reply | ReplyState::SkipLine => {
                    let (first, rest) = match text.split_once('\n') {
                        Some((first, rest)) => (first, Some(rest)),
                        None => (text.as_str(), None),
                    };
                    if let Some(reply) = Reply::from_fixed(first) {
                        if rest.is_some() {
                            return Err(DecodeError::UnexpectedLineFeed {
                                offset: offset + first.len() as u64,
                            });
                        }
                        return Ok(Some(reply));
                    }
                    let Some(value) = first.strip_prefix("GET ") else {
                        return Err(if first.is_empty() {
                            DecodeError::EmptyLine { offset }
                        } else {
                            DecodeError::UnknownReply {
                                reply: quote(first),
                                offset,
                            }
                        });
                    };
                    match rest {
                        // Course dialect: the CRC came in the same write.
                        Some(crc) if !crc.is_empty() => {
                            let crc_offset = offset + first.len() as u64 + 1;
                            reject_line_feed(crc, crc_offset)?;
                            let crc = parse_crc(crc, crc_offset)?;
                            return Ok(Some(Reply::GetOk {
                                value: value.to_owned(),
                                crc,
                            }));
                        }
                        _ => {
                            self.state = ReplyState::Crc {
                                value: value.to_owned(),
                            };
                        }
                    }
                }
            }
        }
    }

    /// Spec dialect: the next line and its offset.
    fn next_line(&mut self) -> Result<Option<(String, u64)>, DecodeError> {
        if let ReplyState::SkipLine = self.state {
            match self.input.available().iter().position(|&b| b == b'\n') {
                Some(len) => {
                    self.input.consume(len + 1);
                    self.state = ReplyState::Reply;
                }
                None => {
                    self.input.consume(self.input.len());
                    return Ok(None);
                }
            }
        }
        let offset = self.input.offset;
        match self.input.find_line(self.max_reply) {
            Line::Incomplete => Ok(None),
            Line::TooLong => {
                self.state = ReplyState::SkipLine;
                Err(DecodeError::TooLong {
                    limit: self.max_reply,
                    offset,
                })
            }
            Line::Complete(len) => {
                let line = ascii(&self.input.available()[..len], offset).map(str::to_owned);
                self.input.consume(len + 1);
                if line.is_err() {
                    // The offending line is skipped, with any GET it completed.
                    self.state = ReplyState::Reply;
                }
                Ok(Some((line?, offset)))
            }
        }
    }
}

fn parse_crc(text: &str, offset: u64) -> Result<u32, DecodeError> {
    let bad = || DecodeError::BadCrc {
        line: quote(text),
        offset,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const HASH: [u8; HASH_LEN] = [0xab; HASH_LEN];

    /// Feeds `bytes` as one read and drains the decoder.
    fn decode(
        decoder: &mut ServerDecoder,
        bytes: &[u8],
    ) -> Vec<Result<ClientMessage, DecodeError>> {
        decoder.feed(bytes);
        let mut out = Vec::new();
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => out.push(Ok(message)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e)),
            }
        }
    }

    fn spec(bytes: &[u8]) -> Vec<Result<ClientMessage, DecodeError>> {
        decode(&mut ServerDecoder::new(Dialect::Spec), bytes)
    }

    fn first_error(bytes: &[u8]) -> DecodeError {
        spec(bytes)
            .into_iter()
            .find_map(Result::err)
            .expect("expected a decode error")
    }

    fn course(writes: &[&[u8]]) -> Vec<Result<ClientMessage, DecodeError>> {
        let mut decoder = ServerDecoder::new(Dialect::Course);
        writes
            .iter()
            .flat_map(|w| decode(&mut decoder, w))
            .collect()
    }

    fn get(key: &str) -> ClientMessage {
        ClientMessage::Get { key: key.into() }
    }

    fn put(key: &str, value: &str) -> ClientMessage {
        ClientMessage::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn spec_session_decodes() {
        let mut bytes = b"CONNECT alice\n".to_vec();
        bytes.extend_from_slice(&HASH);
        bytes.extend_from_slice(b"PUT colour\nblue\nGET colour\nDELETE colour\nDISCONNECT\n");
        assert_eq!(
            spec(&bytes),
            vec![
                Ok(ClientMessage::Connect {
                    id: "alice".into(),
                    hash: HASH
                }),
                Ok(put("colour", "blue")),
                Ok(get("colour")),
                Ok(ClientMessage::Delete {
                    key: "colour".into()
                }),
                Ok(ClientMessage::Disconnect),
            ]
        );
    }

    #[test]
    fn hash_may_contain_line_feeds() {
        let mut bytes = b"CONNECT a\n".to_vec();
        bytes.extend_from_slice(&[b'\n'; HASH_LEN]);
        bytes.extend_from_slice(b"GET k\n");
        assert_eq!(
            spec(&bytes),
            vec![
                Ok(ClientMessage::Connect {
                    id: "a".into(),
                    hash: [b'\n'; HASH_LEN]
                }),
                Ok(get("k")),
            ]
        );
    }

    #[test]
    fn empty_value_and_keys_with_spaces() {
        assert_eq!(
            spec(b"PUT my key\n\nGET my key\n"),
            vec![Ok(put("my key", "")), Ok(get("my key"))]
        );
    }

    #[test]
    fn empty_id_is_left_to_the_server() {
        let mut bytes = b"CONNECT \n".to_vec();
        bytes.extend_from_slice(&HASH);
        assert_eq!(
            spec(&bytes),
            vec![Ok(ClientMessage::Connect {
                id: String::new(),
                hash: HASH
            })]
        );
    }

    #[test]
    fn need_more_bytes_is_not_an_error() {
        let mut decoder = ServerDecoder::new(Dialect::Spec);
        assert_eq!(decode(&mut decoder, b"PUT k"), vec![]);
        assert_eq!(decode(&mut decoder, b"ey\nval"), vec![]);
        assert_eq!(decoder.pending(), Some(Command::Put));
        assert_eq!(decode(&mut decoder, b"ue\n"), vec![Ok(put("key", "value"))]);
        assert_eq!(decoder.pending(), None);
        assert_eq!(decode(&mut decoder, b"CONNECT x\n"), vec![]);
        assert_eq!(decoder.pending(), Some(Command::Connect));
        assert_eq!(decode(&mut decoder, &HASH[..31]), vec![]);
        assert_eq!(
            decode(&mut decoder, &HASH[31..]),
            vec![Ok(ClientMessage::Connect {
                id: "x".into(),
                hash: HASH
            })]
        );
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn unknown_and_lowercase_commands() {
        assert_eq!(
            first_error(b"FOO bar\n"),
            DecodeError::UnknownCommand {
                command: "FOO".into(),
                offset: 0
            }
        );
        assert_eq!(
            first_error(b"GET a\nget b\n"),
            DecodeError::UnknownCommand {
                command: "get".into(),
                offset: 6
            }
        );
        // A Windows line end leaves "\r" in the command word.
        assert!(matches!(
            first_error(b"DISCONNECT\r\n"),
            DecodeError::UnknownCommand { .. }
        ));
    }

    #[test]
    fn commands_without_their_key() {
        for (input, command) in [
            (&b"GET\n"[..], Command::Get),
            (b"GET \n", Command::Get),
            (b"DELETE\n", Command::Delete),
            (b"PUT \n", Command::Put),
            (b"CONNECT\n", Command::Connect),
        ] {
            assert_eq!(
                first_error(input),
                DecodeError::MissingArgument { command, offset: 0 },
                "{input:?}"
            );
        }
        assert_eq!(
            first_error(b"GET\n").to_string(),
            "GET at byte 0 has no key"
        );
    }

    #[test]
    fn disconnect_takes_no_argument() {
        assert_eq!(
            first_error(b"DISCONNECT now\n"),
            DecodeError::UnexpectedArgument {
                command: Command::Disconnect,
                offset: 10
            }
        );
    }

    #[test]
    fn stray_empty_line() {
        assert_eq!(
            first_error(b"GET a\n\n"),
            DecodeError::EmptyLine { offset: 6 }
        );
    }

    #[test]
    fn non_ascii_anywhere() {
        assert_eq!(
            first_error("GET caf\u{e9}\n".as_bytes()),
            DecodeError::NotAscii {
                byte: 0xc3,
                offset: 7
            }
        );
        assert_eq!(
            first_error(b"PUT k\nv\xff\n"),
            DecodeError::NotAscii {
                byte: 0xff,
                offset: 7
            }
        );
    }

    #[test]
    fn limit_counts_the_line_feed() {
        let mut decoder = ServerDecoder::with_max_message(Dialect::Spec, 8);
        // "GET abc\n" is exactly 8 bytes.
        assert_eq!(decode(&mut decoder, b"GET abc\n"), vec![Ok(get("abc"))]);
        assert_eq!(
            decode(&mut decoder, b"GET abcd\n"),
            vec![Err(DecodeError::TooLong {
                limit: 8,
                offset: 8
            }),]
        );
        // The rest of the over-long line is skipped; decoding may go on after it.
        assert_eq!(decode(&mut decoder, b"GET x\n"), vec![Ok(get("x"))]);
    }

    #[test]
    fn over_long_line_is_rejected_before_it_ends() {
        let mut decoder = ServerDecoder::new(Dialect::Spec);
        let block = [b'a'; 1000];
        let mut errors = Vec::new();
        for _ in 0..10_000 {
            errors.extend(decode(&mut decoder, &block));
            // Never more than the limit plus one read.
            assert!(decoder.buffered() <= MAX_MESSAGE + block.len());
            if !errors.is_empty() {
                break;
            }
        }
        assert_eq!(
            errors,
            vec![Err(DecodeError::TooLong {
                limit: MAX_MESSAGE,
                offset: 0
            })]
        );
    }

    #[test]
    fn over_long_value_is_rejected() {
        let mut bytes = b"PUT k\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'v', MAX_MESSAGE));
        bytes.extend_from_slice(b"\nGET k\n");
        assert_eq!(
            spec(&bytes),
            vec![
                Err(DecodeError::TooLong {
                    limit: MAX_MESSAGE,
                    offset: 6
                }),
                Ok(get("k"))
            ]
        );
    }

    #[test]
    fn course_session_decodes() {
        assert_eq!(
            course(&[
                b"CONNECT alice",
                &HASH,
                b"PUT colour\nblue",
                b"GET colour",
                b"DELETE colour",
                b"DISCONNECT"
            ]),
            vec![
                Ok(ClientMessage::Connect {
                    id: "alice".into(),
                    hash: HASH
                }),
                Ok(put("colour", "blue")),
                Ok(get("colour")),
                Ok(ClientMessage::Delete {
                    key: "colour".into()
                }),
                Ok(ClientMessage::Disconnect),
            ]
        );
    }

    #[test]
    fn course_connect_with_line_feed_keeps_it_in_the_id() {
        assert_eq!(
            course(&[b"CONNECT abc\n", &HASH]),
            vec![Ok(ClientMessage::Connect {
                id: "abc\n".into(),
                hash: HASH
            })]
        );
    }

    #[test]
    fn course_hash_ignores_write_boundaries() {
        let mut tail = HASH[20..].to_vec();
        tail.extend_from_slice(b"GET k");
        assert_eq!(
            course(&[b"CONNECT a", &HASH[..20], &tail]),
            vec![
                Ok(ClientMessage::Connect {
                    id: "a".into(),
                    hash: HASH
                }),
                Ok(get("k"))
            ]
        );
    }

    #[test]
    fn course_put_forms() {
        assert_eq!(course(&[b"PUT k\nv\n"]), vec![Ok(put("k", "v"))]);
        assert_eq!(course(&[b"PUT k\n"]), vec![Ok(put("k", ""))]);
        assert_eq!(course(&[b"PUT k", b"v"]), vec![Ok(put("k", "v"))]);
        assert_eq!(course(&[b"PUT k", b"v\n"]), vec![Ok(put("k", "v"))]);
        assert_eq!(
            course(&[b"PUT k\nv\nw"]),
            vec![Err(DecodeError::UnexpectedLineFeed { offset: 7 })]
        );
    }

    #[test]
    fn course_tolerates_one_trailing_line_feed() {
        assert_eq!(
            course(&[b"GET k\n", b"DISCONNECT\n"]),
            vec![Ok(get("k")), Ok(ClientMessage::Disconnect)]
        );
        assert_eq!(
            course(&[b"GET k\n\n"]),
            vec![Err(DecodeError::UnexpectedLineFeed { offset: 5 })]
        );
    }

    #[test]
    fn course_one_message_per_read() {
        // Two commands in one write are one message: "GET a" followed by junk.
        assert_eq!(
            course(&[b"GET a\nGET b"]),
            vec![Err(DecodeError::UnexpectedLineFeed { offset: 5 })]
        );
        assert!(matches!(
            course(&[b"GET"])[..],
            [Err(DecodeError::MissingArgument { .. })]
        ));
    }

    #[test]
    fn course_limit_is_per_write() {
        let mut decoder = ServerDecoder::with_max_message(Dialect::Course, 5);
        assert_eq!(decode(&mut decoder, b"GET a"), vec![Ok(get("a"))]);
        assert_eq!(
            decode(&mut decoder, b"GET ab"),
            vec![Err(DecodeError::TooLong {
                limit: 5,
                offset: 5
            })]
        );
        assert_eq!(decode(&mut decoder, b"GET b"), vec![Ok(get("b"))]);
    }

    #[test]
    fn replies_encode_as_the_spec_shows() {
        let mut out = Vec::new();
        Reply::ConnectOk.encode(Dialect::Spec, &mut out);
        Reply::get_ok("hello world").encode(Dialect::Spec, &mut out);
        Reply::GetError.encode(Dialect::Spec, &mut out);
        assert_eq!(
            out,
            b"CONNECT: OK\nGET hello world\n222957957\nGET: ERROR\n"
        );
        let mut out = Vec::new();
        Reply::get_ok("hello world").encode(Dialect::Course, &mut out);
        assert_eq!(out, b"GET hello world\n222957957");
    }

    #[test]
    fn course_writes() {
        let connect = ClientMessage::Connect {
            id: "a".into(),
            hash: HASH,
        };
        assert_eq!(
            connect.writes(Dialect::Course),
            vec![b"CONNECT a".to_vec(), HASH.to_vec()]
        );
        assert_eq!(
            put("k", "v").writes(Dialect::Course),
            vec![b"PUT k\nv".to_vec()]
        );
        assert_eq!(
            put("k", "v").writes(Dialect::Spec),
            vec![b"PUT k\nv\n".to_vec()]
        );
    }

    fn replies(dialect: Dialect, reads: &[&[u8]]) -> Vec<Result<Reply, DecodeError>> {
        let mut decoder = ReplyDecoder::new(dialect);
        let mut out = Vec::new();
        for read in reads {
            decoder.feed(read);
            loop {
                match decoder.next_reply() {
                    Ok(Some(reply)) => out.push(Ok(reply)),
                    Ok(None) => break,
                    Err(e) => out.push(Err(e)),
                }
            }
        }
        out
    }

    #[test]
    fn reply_decoder_pairs_get_with_crc() {
        assert_eq!(
            replies(Dialect::Spec, &[b"GET blue\n", b"1234", b"\nPUT: OK\n"]),
            vec![
                Ok(Reply::GetOk {
                    value: "blue".into(),
                    crc: 1234
                }),
                Ok(Reply::PutOk)
            ]
        );
        assert_eq!(
            replies(
                Dialect::Course,
                &[b"GET blue\n1234", b"GET: ERROR", b"GET x", b"7\n"]
            ),
            vec![
                Ok(Reply::GetOk {
                    value: "blue".into(),
                    crc: 1234
                }),
                Ok(Reply::GetError),
                Ok(Reply::GetOk {
                    value: "x".into(),
                    crc: 7
                }),
            ]
        );
    }

    #[test]
    fn value_that_looks_like_a_reply() {
        assert_eq!(
            replies(Dialect::Spec, &[b"GET : ERROR\n0\n"]),
            vec![Ok(Reply::GetOk {
                value: ": ERROR".into(),
                crc: 0
            })]
        );
    }

    #[test]
    fn reply_errors() {
        assert_eq!(
            replies(Dialect::Spec, &[b"PUT: OK!\n"]),
            vec![Err(DecodeError::UnknownReply {
                reply: "PUT: OK!".into(),
                offset: 0
            })]
        );
        assert_eq!(
            replies(Dialect::Spec, &[b"GET v\n-1\n"]),
            vec![Err(DecodeError::BadCrc {
                line: "-1".into(),
                offset: 6
            })]
        );
        assert_eq!(
            replies(Dialect::Spec, &[b"GET v\n4294967296\n"]),
            vec![Err(DecodeError::BadCrc {
                line: "4294967296".into(),
                offset: 6
            })]
        );
        assert_eq!(
            replies(Dialect::Spec, &[b"\n"]),
            vec![Err(DecodeError::EmptyLine { offset: 0 })]
        );
        assert_eq!(
            replies(Dialect::Course, &[b"PUT: OK\nPUT: OK"]),
            vec![Err(DecodeError::UnexpectedLineFeed { offset: 7 })]
        );
    }

    #[test]
    fn crc_check() {
        assert!(Reply::get_ok("x").crc_matches());
        assert!(
            !Reply::GetOk {
                value: "x".into(),
                crc: 1
            }
            .crc_matches()
        );
    }

    #[test]
    fn dialect_names_round_trip() {
        for dialect in [Dialect::Spec, Dialect::Course] {
            assert_eq!(dialect.name().parse::<Dialect>(), Ok(dialect));
        }
        assert!("SPEC".parse::<Dialect>().is_err());
    }

    // Keys and ids: non-empty ASCII without "\n"; values may be empty.
    fn key() -> impl Strategy<Value = String> {
        "[\\x00-\\x09\\x0b-\\x7f]{1,40}"
    }

    fn value() -> impl Strategy<Value = String> {
        "[\\x00-\\x09\\x0b-\\x7f]{0,60}"
    }

    fn message() -> impl Strategy<Value = ClientMessage> {
        prop_oneof![
            (key(), any::<[u8; HASH_LEN]>())
                .prop_map(|(id, hash)| ClientMessage::Connect { id, hash }),
            (key(), value()).prop_map(|(key, value)| ClientMessage::Put { key, value }),
            key().prop_map(|key| ClientMessage::Get { key }),
            key().prop_map(|key| ClientMessage::Delete { key }),
            Just(ClientMessage::Disconnect),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            Just(Reply::ConnectOk),
            Just(Reply::ConnectError),
            Just(Reply::PutOk),
            Just(Reply::PutError),
            (value(), any::<u32>()).prop_map(|(value, crc)| Reply::GetOk { value, crc }),
            Just(Reply::GetError),
            Just(Reply::DeleteOk),
            Just(Reply::DeleteError),
            Just(Reply::DisconnectOk),
        ]
    }

    /// Splits `bytes` at the given cut points (taken modulo the length).
    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|c| c % (bytes.len() + 1))
            .chain([0, bytes.len()])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2)
            .map(|w| bytes[w[0]..w[1]].to_vec())
            .collect()
    }

    proptest! {
        #[test]
        fn spec_requests_round_trip_in_any_chunking(
            messages in prop::collection::vec(message(), 0..12),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut bytes = Vec::new();
            for m in &messages {
                m.encode(Dialect::Spec, &mut bytes);
            }
            let mut decoder = ServerDecoder::new(Dialect::Spec);
            let decoded: Vec<_> = split(&bytes, &cuts)
                .iter()
                .flat_map(|chunk| decode(&mut decoder, chunk))
                .collect();
            prop_assert_eq!(decoded, messages.into_iter().map(Ok).collect::<Vec<_>>());
            prop_assert_eq!(decoder.buffered(), 0);
        }

        #[test]
        fn course_requests_round_trip_with_the_hash_split_anywhere(
            messages in prop::collection::vec(message(), 0..12),
            cuts in prop::collection::vec(any::<usize>(), 0..4),
        ) {
            let mut decoder = ServerDecoder::new(Dialect::Course);
            let mut decoded = Vec::new();
            for m in &messages {
                for (i, write) in m.writes(Dialect::Course).into_iter().enumerate() {
                    // The second write of a CONNECT is the hash.
                    let reads = if i == 1 {
                        split(&write, &cuts)
                    } else {
                        vec![write]
                    };
                    for read in reads {
                        decoded.extend(decode(&mut decoder, &read));
                    }
                }
            }
            prop_assert_eq!(decoded, messages.into_iter().map(Ok).collect::<Vec<_>>());
        }

        #[test]
        fn replies_round_trip(
            sent in prop::collection::vec(reply(), 0..12),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut bytes = Vec::new();
            for r in &sent {
                r.encode(Dialect::Spec, &mut bytes);
            }
            let chunks = split(&bytes, &cuts);
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(replies(Dialect::Spec, &chunks), sent.iter().cloned().map(Ok).collect::<Vec<_>>());

            let writes: Vec<Vec<u8>> = sent.iter().map(|r| {
                let mut out = Vec::new();
                r.encode(Dialect::Course, &mut out);
                out
            }).collect();
            let writes: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(replies(Dialect::Course, &writes), sent.into_iter().map(Ok).collect::<Vec<_>>());
        }

        #[test]
        fn decoders_never_panic_on_junk(
            reads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
            limit in 1usize..80,
        ) {
            for dialect in [Dialect::Spec, Dialect::Course] {
                let mut requests = ServerDecoder::with_max_message(dialect, limit);
                let mut answers = ReplyDecoder::with_max_reply(dialect, limit);
                for read in &reads {
                    let _ = decode(&mut requests, read);
                    prop_assert!(requests.buffered() <= limit + read.len() + HASH_LEN);
                    answers.feed(read);
                    while !matches!(answers.next_reply(), Ok(None)) {}
                }
            }
        }
    }
}
