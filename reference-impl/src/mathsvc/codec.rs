//! The math service's framing, requests and arithmetic. Pure: no I/O, no async, no clock;
//! the server says when the peer has been quiet.
//!
//! ```text
//! token    the bytes before a "\n"; or, with no "\n" in sight, every byte received once
//!          the peer has been quiet for the server's `quiet` time, or has closed.
//!          Blanks around a token are dropped ("\r" included); empty tokens are skipped.
//!          At most MAX_TOKEN (1024) bytes before its "\n": a longer one is refused and the
//!          connection closes.
//! text     after the length token of a word count: exactly LEN bytes, "\n"s, pauses and
//!          read boundaries included; a "\n" right after it is an empty token, skipped
//! ```
//!
//! [`Decoder`] turns tokens into [`Message`]s: the first token is the client's name, then
//! `FIBONACCI n`, `FACTORIAL n`, `FILE LEN TEXT` (or `WORD_COUNT LEN TEXT`) and `COMPLETE`,
//! each part its own token. Command words are matched without regard to case (the slide
//! writes `Factorial`).

use std::fmt;
use std::net::SocketAddr;

use num_bigint::BigUint;
use uuid::Uuid;

/// Longest token in bytes, blanks included, its `\n` not counted (the course's servers
/// read with `recv(1024)`).
pub const MAX_TOKEN: usize = 1024;
/// Default largest `n` of `FIBONACCI` (fib(100,000) has 20,899 digits).
pub const MAX_FIBONACCI_N: u64 = 100_000;
/// Default largest `n` of `FACTORIAL` (10,000! has 35,660 digits).
pub const MAX_FACTORIAL_N: u64 = 10_000;
/// Default largest text of a word count, in bytes (16 MiB). Texts are counted as they
/// arrive, never held whole.
pub const MAX_TEXT_LEN: u64 = 16 * 1024 * 1024;

/// Which Fibonacci number `n` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FibConvention {
    /// fib(0) = 0, fib(1) = 1, fib(7) = 13: what a full-marks server answered.
    #[default]
    ZeroBased,
    /// The n-th term of 0, 1, 1, 2, 3, 5, 8, ... counted from one, so fib(7) = 8 as the
    /// slide's example says; fib(1) = 0, and fib(0) = 0 too (as a loop of `n - 1` steps
    /// gives).
    Slide,
}

impl FibConvention {
    /// The name of the `--fib` flag's value: `zero-based` or `slide`.
    pub const fn name(self) -> &'static str {
        match self {
            FibConvention::ZeroBased => "zero-based",
            FibConvention::Slide => "slide",
        }
    }
}

impl fmt::Display for FibConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `n`-th Fibonacci number in `convention`, by fast doubling (O(log n) big-number
/// multiplications).
pub fn fibonacci(n: u64, convention: FibConvention) -> BigUint {
    match convention {
        FibConvention::ZeroBased => fib_pair(n).0,
        FibConvention::Slide => fib_pair(n.saturating_sub(1)).0,
    }
}

/// (F(n), F(n + 1)) with F(0) = 0, F(1) = 1.
fn fib_pair(n: u64) -> (BigUint, BigUint) {
    let mut a = BigUint::ZERO;
    let mut b = BigUint::from(1u8);
    for bit in (0..u64::BITS - n.leading_zeros()).rev() {
        // F(2k) = F(k) (2 F(k+1) - F(k)); F(2k+1) = F(k)^2 + F(k+1)^2.
        let doubled = &a * ((&b << 1u8) - &a);
        let next = &a * &a + &b * &b;
        if n >> bit & 1 == 1 {
            b = &doubled + &next;
            a = next;
        } else {
            a = doubled;
            b = next;
        }
    }
    (a, b)
}

/// `n!`, with 0! = 1, multiplied as a balanced product tree.
pub fn factorial(n: u64) -> BigUint {
    if n < 2 {
        return BigUint::from(1u8);
    }
    product(2, n)
}

/// The product of `low..=high` (`low <= high`).
fn product(low: u64, high: u64) -> BigUint {
    if high - low < 16 {
        return (low..=high).fold(BigUint::from(1u8), |acc, k| acc * k);
    }
    let mid = low + (high - low) / 2;
    product(low, mid) * product(mid + 1, high)
}

/// Counts the words of a text fed in pieces: words are runs of bytes other than ASCII
/// whitespace (space, `\t`, `\n`, `\v`, `\f`, `\r`), as Python's `bytes.split()` cuts them.
/// Multiple blanks separate like one; an empty or all-blank text has no words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WordCounter {
    words: u64,
    spaces: u64,
    bytes: u64,
    in_word: bool,
}

impl WordCounter {
    /// Counts `bytes`, which follow whatever was fed before.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let blank = is_blank(byte);
            if !blank && !self.in_word {
                self.words += 1;
            }
            self.in_word = !blank;
            self.spaces += u64::from(byte == b' ');
        }
        self.bytes += bytes.len() as u64;
    }

    /// Words so far.
    pub fn words(&self) -> u64 {
        self.words
    }

    /// Space bytes (0x20) so far. Python's `len(text.split(' '))` is this plus one.
    pub fn spaces(&self) -> u64 {
        self.spaces
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A text that counts as this counter: the same words, spaces and length, ending inside
    /// a word or not as the counted text did. Spaces beyond the word separators lead; words
    /// are `a`, the first one padded with `x`s up to the length, separated by spaces and then
    /// tabs when the spaces run out (or, without words, all blanks: spaces, then tabs);
    /// a last blank when the text ended outside a word.
    ///
    /// `FILE`, its length and this text is the canonical encoding of a word count.
    pub fn canonical_text(&self) -> Vec<u8> {
        let Self {
            words,
            spaces,
            bytes,
            in_word,
        } = *self;
        let len = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        // The blanks words need: between them, and one after the last if the text did not
        // end in a word. Any text of these counts has at least these bytes.
        let blanks = words.saturating_sub(1) + u64::from(words > 0 && !in_word);
        let padding = bytes.saturating_sub(words + blanks.max(spaces));
        let mut text = Vec::with_capacity(len(bytes));
        text.resize(len(spaces.saturating_sub(blanks)), b' ');
        let mut spaces_left = spaces.min(blanks);
        let mut blank = || {
            if spaces_left > 0 {
                spaces_left -= 1;
                b' '
            } else {
                b'\t'
            }
        };
        if words == 0 {
            text.resize(text.len() + len(padding), b'\t');
        }
        for word in 0..words {
            if word > 0 {
                text.push(blank());
            }
            text.push(b'a');
            if word == 0 {
                text.resize(text.len() + len(padding), b'x');
            }
        }
        if words > 0 && !in_word {
            text.push(blank());
        }
        text
    }
}

/// Python's `bytes.isspace` bytes.
const fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The words of `text`: see [`WordCounter`].
pub fn word_count(text: &[u8]) -> u64 {
    let mut counter = WordCounter::default();
    counter.feed(text);
    counter.words()
}

/// The name a client's UUID is made from: `ip:port` of the client as the server sees it.
/// An IPv4 address mapped into IPv6 (a dual-stack listener) is written as IPv4; IPv6 has
/// no brackets (`::1:5000`), as Python's `f"{ip}:{port}"` writes it.
pub fn uuid_name(addr: SocketAddr) -> String {
    format!("{}:{}", addr.ip().to_canonical(), addr.port())
}

/// The UUID of the client at `addr`: uuid3 (MD5) in the URL namespace of [`uuid_name`],
/// as Python's `uuid.uuid3(uuid.NAMESPACE_URL, "127.0.0.1:37808")`.
pub fn client_uuid(addr: SocketAddr) -> Uuid {
    uuid3(&uuid_name(addr))
}

/// uuid3 in the URL namespace of `name`.
pub fn uuid3(name: &str) -> Uuid {
    Uuid::new_v3(&Uuid::NAMESPACE_URL, name.as_bytes())
}

/// An answer as the server sends it: `<value>_<uuid>` (the UUID hyphenated, lowercase),
/// no line end.
pub fn answer(value: impl fmt::Display, uuid: &Uuid) -> String {
    format!("{value}_{uuid}")
}

/// A request's command word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `FIBONACCI`.
    Fibonacci,
    /// `FACTORIAL`.
    Factorial,
    /// `FILE` (what the course's client sends) or `WORD_COUNT` (the slide's name).
    WordCount,
    /// `COMPLETE`.
    Complete,
}

impl Command {
    /// The command a token names, if any (case is ignored).
    pub fn parse(token: &[u8]) -> Option<Command> {
        const NAMES: [(&[u8], Command); 5] = [
            (b"FIBONACCI", Command::Fibonacci),
            (b"FACTORIAL", Command::Factorial),
            (b"FILE", Command::WordCount),
            (b"WORD_COUNT", Command::WordCount),
            (b"COMPLETE", Command::Complete),
        ];
        NAMES
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|(_, command)| command)
    }
}

/// Which number a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `FIBONACCI`.
    Fibonacci,
    /// `FACTORIAL`.
    Factorial,
}

/// Limits on what a client may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `n` of `FIBONACCI`.
    pub max_fibonacci_n: u64,
    /// Largest `n` of `FACTORIAL`.
    pub max_factorial_n: u64,
    /// Largest text of a word count, in bytes.
    pub max_text_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_fibonacci_n: MAX_FIBONACCI_N,
            max_factorial_n: MAX_FACTORIAL_N,
            max_text_len: MAX_TEXT_LEN,
        }
    }
}

/// A complete message from a client.
///
/// With the `arbitrary` feature, `Arbitrary` makes the requests that may follow the name,
/// within the default [`Limits`] (never a `Name`, which comes first and only first).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Message {
    /// The first token: the client's name (not UTF-8 checked: lossily decoded).
    #[cfg_attr(feature = "arbitrary", arbitrary(skip))]
    Name(String),
    /// `FIBONACCI`, `n`.
    Fibonacci(#[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::fibonacci_n))] u64),
    /// `FACTORIAL`, `n`.
    Factorial(#[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arb::factorial_n))] u64),
    /// `FILE`, the length, the text: its words counted.
    WordCount(WordCounter),
    /// `COMPLETE`.
    Complete,
}

impl Message {
    /// Appends the message as a client that ends its tokens with `\n` writes it (the
    /// canonical encoding): `<name>\n`, `FIBONACCI\n<n>\n`, `FACTORIAL\n<n>\n`,
    /// `FILE\n<len>\n<text>` with the [canonical text](WordCounter::canonical_text) of the
    /// count, `COMPLETE\n`.
    ///
    /// Encoding does not validate: a name with a `\n` or blanks at its ends, or over
    /// [`MAX_TOKEN`] bytes, does not decode back, nor an `n` over the decoder's limit.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Name(name) => {
                out.extend_from_slice(name.as_bytes());
                out.push(b'\n');
            }
            Message::Fibonacci(n) => out.extend_from_slice(format!("FIBONACCI\n{n}\n").as_bytes()),
            Message::Factorial(n) => out.extend_from_slice(format!("FACTORIAL\n{n}\n").as_bytes()),
            Message::WordCount(counter) => {
                let text = counter.canonical_text();
                out.extend_from_slice(format!("FILE\n{}\n", text.len()).as_bytes());
                out.extend_from_slice(&text);
            }
            Message::Complete => out.extend_from_slice(b"COMPLETE\n"),
        }
    }
}

/// A request the server refuses, with the text it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A token that is no command where a command is expected.
    #[error("ERROR unknown request")]
    UnknownRequest,
    /// `n` is not a decimal number (digits only).
    #[error("ERROR invalid number")]
    InvalidNumber,
    /// `n` is over the limit of its operation.
    #[error("ERROR n too large (max {max})")]
    NumberTooLarge {
        /// The limit.
        max: u64,
    },
    /// The length of a word count is not a decimal number.
    #[error("ERROR invalid length")]
    InvalidLength,
    /// The length of a word count is over the limit; the connection closes.
    #[error("ERROR length too large (max {max})")]
    LengthTooLarge {
        /// The limit.
        max: u64,
    },
    /// More than [`MAX_TOKEN`] bytes without a line end; the connection closes.
    #[error("ERROR message too long (max {MAX_TOKEN} bytes)")]
    TokenTooLong,
}

impl Refusal {
    /// Whether the server closes the connection after this answer: when what comes next
    /// cannot be told apart from new requests.
    pub fn closes(self) -> bool {
        matches!(self, Refusal::LengthTooLarge { .. } | Refusal::TokenTooLong)
    }
}

/// What the decoder waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Name,
    Command,
    Number(Operation),
    Length,
    Text {
        remaining: u64,
        counter: WordCounter,
    },
    /// After a refusal that closes: nothing more is decoded.
    Failed,
}

/// Cuts a client's bytes into messages. Feed it what arrives; take messages with
/// [`Decoder::next`] until it gives `None`; when the peer has been quiet (or has closed)
/// and [`Decoder::has_partial_token`] says a token is pending, call `next(true)`.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    state: State,
    limits: Limits,
    /// Bytes of each text that are counted (the rest is read and ignored); only lowered by
    /// a deliberate fault.
    counted_prefix: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Decoder {
    /// A decoder for a new connection: the first token is the name.
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            state: State::Name,
            limits,
            counted_prefix: u64::MAX,
        }
    }

    /// Counts only the first `bytes` of each text (a deliberate fault).
    #[doc(hidden)]
    pub fn count_only_prefix(&mut self, bytes: u64) {
        self.counted_prefix = bytes;
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state != State::Failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Whether bytes of an unterminated token are waiting: the server then waits `quiet`
    /// for more before calling `next(true)`. Never true inside a text.
    pub fn has_partial_token(&self) -> bool {
        !self.buf.is_empty() && !matches!(self.state, State::Text { .. } | State::Failed)
    }

    /// Whether the name has been received.
    pub fn named(&self) -> bool {
        self.state != State::Name
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next message, a refusal, or `None` when more bytes are needed. `quiet`: the peer
    /// has been quiet (or closed), so the bytes after the last line end are a whole token.
    pub fn next(&mut self, quiet: bool) -> Option<Result<Message, Refusal>> {
        loop {
            if let State::Text {
                remaining,
                mut counter,
            } = self.state
            {
                let take = self
                    .buf
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let counted = self.counted_prefix.saturating_sub(counter.bytes());
                let counted = take.min(usize::try_from(counted).unwrap_or(usize::MAX));
                counter.feed(&self.buf[..counted]);
                self.buf.drain(..take);
                let remaining = remaining - take as u64;
                if remaining > 0 {
                    self.state = State::Text { remaining, counter };
                    return None;
                }
                self.state = State::Command;
                return Some(Ok(Message::WordCount(counter)));
            }
            if self.state == State::Failed {
                return None;
            }
            let token = match self.take_token(quiet)? {
                Ok(token) => token,
                Err(refusal) => return Some(Err(self.fail(refusal))),
            };
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            let result = match self.state {
                State::Name => {
                    self.state = State::Command;
                    Ok(Message::Name(String::from_utf8_lossy(token).into_owned()))
                }
                State::Command => match Command::parse(token) {
                    Some(Command::Fibonacci) => {
                        self.state = State::Number(Operation::Fibonacci);
                        continue;
                    }
                    Some(Command::Factorial) => {
                        self.state = State::Number(Operation::Factorial);
                        continue;
                    }
                    Some(Command::WordCount) => {
                        self.state = State::Length;
                        continue;
                    }
                    Some(Command::Complete) => Ok(Message::Complete),
                    None => Err(Refusal::UnknownRequest),
                },
                State::Number(operation) => {
                    self.state = State::Command;
                    let max = match operation {
                        Operation::Fibonacci => self.limits.max_fibonacci_n,
                        Operation::Factorial => self.limits.max_factorial_n,
                    };
                    match parse_decimal(token) {
                        Some(Ok(n)) if n <= max => Ok(match operation {
                            Operation::Fibonacci => Message::Fibonacci(n),
                            Operation::Factorial => Message::Factorial(n),
                        }),
                        Some(_) => Err(Refusal::NumberTooLarge { max }),
                        None => Err(Refusal::InvalidNumber),
                    }
                }
                State::Length => {
                    let max = self.limits.max_text_len;
                    match parse_decimal(token) {
                        Some(Ok(len)) if len <= max => {
                            self.state = State::Text {
                                remaining: len,
                                counter: WordCounter::default(),
                            };
                            continue;
                        }
                        Some(_) => Err(self.fail(Refusal::LengthTooLarge { max })),
                        None => {
                            self.state = State::Command;
                            Err(Refusal::InvalidLength)
                        }
                    }
                }
                State::Text { .. } | State::Failed => continue,
            };
            return Some(result);
        }
    }

    /// Stops decoding after a refusal that closes the connection.
    fn fail(&mut self, refusal: Refusal) -> Refusal {
        self.state = State::Failed;
        self.buf = Vec::new();
        refusal
    }

    /// The next token, line end and all removed; `None` if it is not complete yet.
    fn take_token(&mut self, quiet: bool) -> Option<Result<Vec<u8>, Refusal>> {
        let end = match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) if i > MAX_TOKEN => return Some(Err(Refusal::TokenTooLong)),
            Some(i) => i + 1,
            None if self.buf.len() > MAX_TOKEN => return Some(Err(Refusal::TokenTooLong)),
            None if quiet && !self.buf.is_empty() => self.buf.len(),
            None => return None,
        };
        let mut token: Vec<u8> = self.buf.drain(..end).collect();
        if token.last() == Some(&b'\n') {
            token.pop();
        }
        Some(Ok(token))
    }
}

/// A run of ASCII digits as a number: `None` if it is not one, `Some(Err(()))` if it does
/// not fit in a `u64`.
pub fn parse_decimal(token: &[u8]) -> Option<Result<u64, ()>> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(token.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(())
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn decode_all(decoder: &mut Decoder, quiet: bool) -> Vec<Result<Message, Refusal>> {
        std::iter::from_fn(|| decoder.next(quiet)).collect()
    }

    fn named() -> Decoder {
        let mut decoder = Decoder::default();
        decoder.feed(b"Client1\n");
        assert_eq!(
            decoder.next(false),
            Some(Ok(Message::Name("Client1".into())))
        );
        decoder
    }

    #[test]
    fn fibonacci_conventions() {
        let zero: Vec<u64> = (0..10)
            .map(|n| fibonacci(n, FibConvention::ZeroBased).try_into().unwrap())
            .collect();
        assert_eq!(zero, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
        let slide: Vec<u64> = (0..10)
            .map(|n| fibonacci(n, FibConvention::Slide).try_into().unwrap())
            .collect();
        assert_eq!(slide, [0, 0, 1, 1, 2, 3, 5, 8, 13, 21]);
        assert_eq!(fibonacci(7, FibConvention::Slide), BigUint::from(8u8));
        assert_eq!(fibonacci(7, FibConvention::ZeroBased), BigUint::from(13u8));
        assert_eq!(
            fibonacci(100, FibConvention::ZeroBased).to_string(),
            "354224848179261915075"
        );
    }

    #[test]
    fn fast_doubling_agrees_with_addition() {
        let (mut a, mut b) = (BigUint::ZERO, BigUint::from(1u8));
        for n in 0..300 {
            assert_eq!(fibonacci(n, FibConvention::ZeroBased), a, "fib({n})");
            let next = &a + &b;
            a = std::mem::replace(&mut b, next);
        }
    }

    #[test]
    fn factorials() {
        assert_eq!(factorial(0), BigUint::from(1u8));
        assert_eq!(factorial(1), BigUint::from(1u8));
        assert_eq!(factorial(6), BigUint::from(720u16));
        assert_eq!(factorial(20), BigUint::from(2_432_902_008_176_640_000u64));
        assert_eq!(factorial(25).to_string(), "15511210043330985984000000");
        let mut slow = BigUint::from(1u8);
        for k in 1..=200u32 {
            slow *= k;
            assert_eq!(factorial(u64::from(k)), slow, "{k}!");
        }
        assert_eq!(factorial(MAX_FACTORIAL_N).to_string().len(), 35_660);
    }

    #[test]
    fn word_counts_follow_python_bytes_split() {
        assert_eq!(word_count(b"A B C D E F G H I J"), 10);
        assert_eq!(word_count(b""), 0);
        assert_eq!(word_count(b"   "), 0);
        assert_eq!(word_count(b"  two\t\twords \r\n"), 2);
        assert_eq!(word_count(b"one\ntwo\x0bthree\x0cfour"), 4);
        // Not blanks to Python's bytes.split(): non-breaking space, NUL.
        assert_eq!(word_count("a\u{a0}b\0c".as_bytes()), 1);
        let mut counter = WordCounter::default();
        counter.feed(b"hel");
        counter.feed(b"lo wor");
        counter.feed(b"ld  ");
        assert_eq!(
            (counter.words(), counter.spaces(), counter.bytes()),
            (2, 3, 13)
        );
    }

    #[test]
    fn uuid_matches_python() {
        // uuid.uuid3(uuid.NAMESPACE_URL, "127.0.0.1:37808")
        let addr: SocketAddr = "127.0.0.1:37808".parse().unwrap();
        assert_eq!(uuid_name(addr), "127.0.0.1:37808");
        assert_eq!(
            client_uuid(addr).to_string(),
            "e0098317-ee2c-313e-9211-20b0921fb9e9"
        );
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(uuid_name(v6), "::1:5000");
        assert_eq!(
            client_uuid(v6).to_string(),
            "0c866eaa-b25c-39c0-9677-7f88564fd224"
        );
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:37808".parse().unwrap();
        assert_eq!(client_uuid(mapped), client_uuid(addr));
        assert_eq!(
            answer(13, &client_uuid(addr)),
            "13_e0098317-ee2c-313e-9211-20b0921fb9e9"
        );
    }

    #[test]
    fn commands_ignore_case() {
        assert_eq!(Command::parse(b"FIBONACCI"), Some(Command::Fibonacci));
        assert_eq!(Command::parse(b"Factorial"), Some(Command::Factorial));
        assert_eq!(Command::parse(b"file"), Some(Command::WordCount));
        assert_eq!(Command::parse(b"WORD_COUNT"), Some(Command::WordCount));
        assert_eq!(Command::parse(b"COMPLETE"), Some(Command::Complete));
        assert_eq!(Command::parse(b"FIB"), None);
        assert_eq!(Command::parse(b"FILES"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0"), Some(Ok(0)));
        assert_eq!(parse_decimal(b"007"), Some(Ok(7)));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(Ok(u64::MAX)));
        assert_eq!(parse_decimal(b"18446744073709551616"), Some(Err(())));
        for bad in [&b""[..], b"-1", b"+1", b"1.5", b"1e3", b"seven", b"1 2"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn newline_framing() {
        let mut decoder = Decoder::default();
        decoder
            .feed(b"Client1\nFIBONACCI\n7\r\nfactorial\n  6 \nFILE\n11\nhello\nworld\nCOMPLETE\n");
        assert_eq!(
            decode_all(&mut decoder, false),
            vec![
                Ok(Message::Name("Client1".into())),
                Ok(Message::Fibonacci(7)),
                Ok(Message::Factorial(6)),
                Ok(Message::WordCount(WordCounter {
                    words: 2,
                    spaces: 0,
                    bytes: 11,
                    in_word: true
                })),
                Ok(Message::Complete),
            ]
        );
        assert!(!decoder.has_partial_token());
    }

    #[test]
    fn pause_framing_needs_quiet() {
        let mut decoder = named();
        decoder.feed(b"FIBONACCI");
        assert_eq!(decoder.next(false), None);
        assert!(decoder.has_partial_token());
        assert_eq!(decoder.next(true), None, "a command alone is no message");
        decoder.feed(b"1");
        assert_eq!(decoder.next(false), None);
        decoder.feed(b"2");
        assert_eq!(decoder.next(true), Some(Ok(Message::Fibonacci(12))));
        assert!(!decoder.has_partial_token());
    }

    #[test]
    fn pause_framing_merges_what_comes_too_fast() {
        let mut decoder = named();
        decoder.feed(b"FIBONACCI");
        decoder.feed(b"7");
        assert_eq!(decoder.next(true), Some(Err(Refusal::UnknownRequest)));
    }

    #[test]
    fn text_spans_reads_pauses_and_line_ends() {
        let mut decoder = named();
        decoder.feed(b"FILE");
        assert_eq!(decoder.next(true), None);
        decoder.feed(b"2000");
        assert_eq!(decoder.next(true), None);
        assert!(!decoder.has_partial_token(), "inside a text");
        let text: Vec<u8> = b"word ".repeat(399).into_iter().chain(*b"last\n").collect();
        assert_eq!(text.len(), 2000);
        for chunk in text.chunks(1024) {
            assert_eq!(decoder.next(true), None);
            decoder.feed(chunk);
        }
        assert_eq!(
            decoder.next(false).unwrap().unwrap(),
            words_like(400, 399, 2000)
        );
        // Bytes after the text are tokens again.
        decoder.feed(b"COMPLETE");
        assert_eq!(decoder.next(true), Some(Ok(Message::Complete)));
    }

    fn words_like(words: u64, spaces: u64, bytes: u64) -> Message {
        Message::WordCount(WordCounter {
            words,
            spaces,
            bytes,
            in_word: false,
        })
    }

    #[test]
    fn empty_text_and_following_line_end() {
        let mut decoder = named();
        decoder.feed(b"WORD_COUNT\n0\nFILE\n3\nabc\n");
        assert_eq!(
            decode_all(&mut decoder, false),
            vec![
                Ok(Message::WordCount(WordCounter::default())),
                Ok(Message::WordCount(WordCounter {
                    words: 1,
                    spaces: 0,
                    bytes: 3,
                    in_word: true
                })),
            ]
        );
        assert_eq!(
            decoder.buffered(),
            0,
            "the line end after the text is skipped"
        );
    }

    #[test]
    fn refusals_keep_the_connection_usable() {
        let mut decoder = named();
        decoder.feed(b"HELLO\nFIBONACCI\nseven\nFACTORIAL\n10001\nFIBONACCI\n100001\n");
        decoder.feed(b"FILE\nabc\nFIBONACCI\n99999999999999999999999\nFIBONACCI\n1\n");
        assert_eq!(
            decode_all(&mut decoder, false),
            vec![
                Err(Refusal::UnknownRequest),
                Err(Refusal::InvalidNumber),
                Err(Refusal::NumberTooLarge { max: 10_000 }),
                Err(Refusal::NumberTooLarge { max: 100_000 }),
                Err(Refusal::InvalidLength),
                Err(Refusal::NumberTooLarge { max: 100_000 }),
                Ok(Message::Fibonacci(1)),
            ]
        );
    }

    #[test]
    fn refusals_that_close() {
        let mut decoder = named();
        decoder.feed(b"FILE\n16777217\nmore\n");
        assert_eq!(
            decoder.next(false),
            Some(Err(Refusal::LengthTooLarge { max: MAX_TEXT_LEN }))
        );
        assert!(Refusal::LengthTooLarge { max: 1 }.closes());
        assert_eq!(decoder.next(true), None);
        decoder.feed(b"COMPLETE\n");
        assert_eq!(decoder.next(true), None);

        let mut decoder = Decoder::default();
        decoder.feed(&[b'x'; MAX_TOKEN]);
        assert_eq!(decoder.next(false), None, "exactly the limit may still end");
        decoder.feed(b"x");
        assert_eq!(decoder.next(false), Some(Err(Refusal::TokenTooLong)));
        assert!(!decoder.has_partial_token());

        let mut decoder = Decoder::default();
        let mut line = vec![b'y'; MAX_TOKEN];
        line.push(b'\n');
        decoder.feed(&line);
        assert!(matches!(decoder.next(false), Some(Ok(Message::Name(_)))));
    }

    #[test]
    fn refusal_texts() {
        assert_eq!(Refusal::UnknownRequest.to_string(), "ERROR unknown request");
        assert_eq!(
            Refusal::NumberTooLarge { max: 10_000 }.to_string(),
            "ERROR n too large (max 10000)"
        );
        assert_eq!(
            Refusal::TokenTooLong.to_string(),
            "ERROR message too long (max 1024 bytes)"
        );
    }

    #[test]
    fn counted_prefix_fault() {
        let mut decoder = named();
        decoder.count_only_prefix(4);
        decoder.feed(b"FILE\n11\nab cd ef gh\n");
        let Some(Ok(Message::WordCount(counter))) = decoder.next(false) else {
            panic!("no count");
        };
        assert_eq!((counter.words(), counter.bytes()), (2, 4));
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// `bytes` cut at the given positions (taken modulo the length).
    fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|c| c % (bytes.len() + 1))
            .chain([0, bytes.len()])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
    }

    /// A request as newline-framed bytes and the message it decodes to.
    fn request() -> impl Strategy<Value = (Vec<u8>, Message)> {
        prop_oneof![
            (0..=MAX_FIBONACCI_N).prop_map(|n| (
                format!("FIBONACCI\n{n}\n").into_bytes(),
                Message::Fibonacci(n)
            )),
            (0..=MAX_FACTORIAL_N).prop_map(|n| (
                format!("factorial\r\n{n}\r\n").into_bytes(),
                Message::Factorial(n)
            )),
            prop::collection::vec(any::<u8>(), 0..3000).prop_map(|text| {
                let mut counter = WordCounter::default();
                counter.feed(&text);
                let mut bytes = format!("FILE\n{}\n", text.len()).into_bytes();
                bytes.extend_from_slice(&text);
                (bytes, Message::WordCount(counter))
            }),
        ]
    }

    proptest! {
        #[test]
        fn newline_requests_decode_the_same_in_any_chunking(
            requests in prop::collection::vec(request(), 0..8),
            cuts in prop::collection::vec(any::<usize>(), 0..30),
        ) {
            let mut bytes = b"Client1\n".to_vec();
            let mut expected = vec![Ok(Message::Name("Client1".into()))];
            for (wire, message) in requests {
                bytes.extend_from_slice(&wire);
                expected.push(Ok(message));
            }
            bytes.extend_from_slice(b"COMPLETE\n");
            expected.push(Ok(Message::Complete));
            let mut decoder = Decoder::default();
            let mut decoded = Vec::new();
            for chunk in split(&bytes, &cuts) {
                decoder.feed(chunk);
                decoded.extend(std::iter::from_fn(|| decoder.next(false)));
            }
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn any_bytes_decode_without_panic_in_bounded_memory(
            chunks in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..600), any::<bool>()),
                0..20,
            ),
        ) {
            let mut decoder = Decoder::default();
            for (chunk, quiet) in chunks {
                decoder.feed(&chunk);
                while decoder.next(quiet).is_some() {}
                prop_assert!(decoder.buffered() <= MAX_TOKEN);
            }
        }

        #[test]
        fn word_counts_match_a_split_in_any_chunking(
            text in prop::collection::vec(
                prop_oneof![Just(b' '), Just(b'\n'), Just(b'\t'), Just(b'a'), any::<u8>()],
                0..200,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let words = text
                .split(|b| b" \t\n\r\x0b\x0c".contains(b))
                .filter(|w| !w.is_empty())
                .count() as u64;
            prop_assert_eq!(word_count(&text), words);
            let mut counter = WordCounter::default();
            for chunk in split(&text, &cuts) {
                counter.feed(chunk);
            }
            prop_assert_eq!(counter.words(), words);
            let spaces = text.iter().filter(|&&b| b == b' ').count() as u64;
            prop_assert_eq!(counter.spaces(), spaces);
        }
    }
}
