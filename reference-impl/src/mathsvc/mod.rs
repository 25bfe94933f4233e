//! The math service (`specs/packet-and-mathsvc.md`, Task 2): Fibonacci numbers, factorials
//! and word counts for many clients at once, every answer tagged with the client's UUID.
//!
//! - [`codec`]: framing, requests, the arithmetic and the UUID (pure);
//! - [`server`]: the tokio server, its configuration and [`server::spawn`] for tests;
//! - [`client`]: the grading client (4 clients x 6 requests, the score out of 40);
//! - [`cli`]: the `reference mathsvc-server` and `reference mathsvc-client` commands.
//!
//! # Wire format
//!
//! ```text
//! C -> S   <name>                          e.g. Client1
//! S -> C   <uuid>                          uuid3(URL namespace, "<ip>:<port>" of the client
//!                                          as the server sees it), 36 characters, lowercase
//! C -> S   FIBONACCI, then <n>             S -> C   <fib(n)>_<uuid>
//! C -> S   FACTORIAL, then <n>             S -> C   <n!>_<uuid>
//! C -> S   FILE, then <len>, then <len> bytes of text
//!                                          S -> C   <words>_<uuid>
//! C -> S   COMPLETE                        S closes the connection
//! ```
//!
//! The server sends no line ends: each answer is one write of exactly these bytes. Each
//! client message is a *token*: the bytes before a `\n`, or, when the client sends no line
//! ends (the course's client does not), everything received once it has paused for the
//! server's `quiet` time (50 ms by default). So both `FIBONACCI` + pause + `7` and
//! `FIBONACCI\n7\n` work, and a message split over several reads is joined as long as its
//! parts come less than `quiet` apart. The text of a word count is not a token: it is
//! exactly `<len>` bytes, whatever they contain and however they are cut.
//!
//! Answers and errors, exactly as sent:
//!
//! ```text
//! 5d6dc07b-61f9-3ad9-b00e-829ee52e6b92        the UUID
//! 13_5d6dc07b-61f9-3ad9-b00e-829ee52e6b92     an answer
//! ERROR unknown request                       not a command where one is expected
//! ERROR invalid number                        n is not digits
//! ERROR n too large (max 100000)              FIBONACCI over --max-fibonacci
//! ERROR n too large (max 10000)               FACTORIAL over --max-factorial
//! ERROR invalid length                        the length is not digits
//! ERROR length too large (max 16777216)       then the server closes
//! ERROR message too long (max 1024 bytes)     1,025 bytes without a line end; then it closes
//! ```
//!
//! # Decisions where the spec is silent or ambiguous
//!
//! - The word-count header is `FILE`, as the course's client sends it; the slide's
//!   `WORD_COUNT` is accepted too. Both are followed by the decimal length and the text.
//! - Command words are matched without regard to case (the slide writes `Factorial`).
//!   Blanks around a token, and a `\r` before its `\n`, are dropped; empty tokens (blank
//!   lines, or the `\n` a newline client sends after a text) are skipped.
//! - Fibonacci numbers are zero-based by default (fib(0) = 0, fib(1) = 1, fib(7) = 13), as a
//!   full-marks server answered; `--fib slide` gives the slide's fib(7) = 8 (the n-th term
//!   of 0, 1, 1, 2, ... counted from 1; fib(0) = 0 as well).
//! - Factorials are exact: 0! = 1, n up to 10,000 (35,660 digits); Fibonacci n up to
//!   100,000 (20,899 digits). Above the limit: `ERROR n too large (max N)`.
//! - Words are what Python's `bytes.split()` gives: runs of bytes other than ASCII
//!   whitespace (space, tab, line feed, vertical tab, form feed, carriage return). Several
//!   blanks in a row separate like one, leading and trailing blanks count for nothing, an
//!   empty or all-blank text has 0 words. (`split(' ')` would count empty words and ignore
//!   line ends; on the course's single-spaced one-line texts the two agree.)
//! - The UUID's name is `ip:port` as Python's `f"{ip}:{port}"` writes it: IPv6 without
//!   brackets (`::1:5000`), an IPv4 client of a dual-stack listener as IPv4.
//! - The name is the first token, whatever it says; it only shows in the logs.
//! - Errors are `ERROR <reason>` with no UUID. After an error the connection goes on (the
//!   next token is read as a command), except after the two that close it: a length over
//!   the limit and a token over 1,024 bytes, where what follows cannot be told apart from
//!   new requests.
//! - `COMPLETE` gets no answer: the server closes. At EOF, a pending token is served first.
//!   A connection silent for `idle_timeout` (60 s) is closed.
//! - Connections over `max_connections` (1,024) are closed at once. Long computations run
//!   on blocking threads, so they do not hold up other clients.
//! - On shutdown the server stops accepting and each connection finishes the message it
//!   is serving, then closes.

pub mod cli;
pub mod client;
pub mod codec;
#[doc(hidden)]
pub mod fault;
pub mod server;
