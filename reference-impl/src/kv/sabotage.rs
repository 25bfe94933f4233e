//! Deliberate misbehaviour of the server, for testing the tools that run servers (a grader
//! must survive a server that dies or hangs) and the live fuzzer (`harness fuzz`), which
//! must find what the scenario suites do not look for.
//!
//! Unlike a [`super::fault::Fault`], which makes the protocol wrong in one way that a
//! scenario suite checks, and is safe to run in-process, a sabotage breaks the server as a
//! whole or where no scenario looks. None is ever on by default, and none is in
//! [`super::fault::Fault::ALL`]: [`Sabotage::exit_on_put`] and
//! [`Sabotage::exit_on_long_line`] end the whole process, test runner included, so only the
//! `reference kv-server` binary (`--crash-on-put`, `--die-on-long-line`) or code that sets
//! the field explicitly turns them on.

use super::codec::Dialect;

/// Process-level misbehaviour of a key-value server; everything off by default.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sabotage {
    /// The first `PUT` of a logged-in connection writes
    /// [`CRASH_ON_PUT_MESSAGE`] to stderr and ends the process with exit code
    /// [`CRASH_EXIT_CODE`] (as a panic would), without a reply. **Ends the calling process:**
    /// never set it in a test that runs the server in-process.
    pub exit_on_put: bool,
    /// After the first successful login (once its `CONNECT: OK` is sent) the server stops
    /// making progress, though the process stays alive: it accepts no more connections,
    /// completes no more TLS handshakes, answers nothing and closes nothing. Only a shutdown
    /// still ends it (its connections are then dropped, unanswered). Safe in-process.
    pub freeze_after_login: bool,
    /// As soon as a read brings one line past [`LONG_LINE`] bytes, the server writes
    /// [`LONG_LINE_MESSAGE`] to stderr and ends the process with exit code
    /// [`CRASH_EXIT_CODE`], without a reply, before any other check of the read (whether the
    /// line is a valid message, or too long for `max_message`) and before serving anything
    /// else in it. A line is a run of bytes without a line feed, its `\n` not counted, as
    /// the reads bring it (a `PUT`'s value is a line of its own); in the course dialect the
    /// end of a read (a message) ends a line too. The 32 hash bytes after a `CONNECT` are not
    /// told apart: they count towards the line that follows them. **Ends the calling
    /// process:** never set it in a test that runs the server in-process.
    pub exit_on_long_line: bool,
    /// The CRC-32 of a `GET` reply is one more (wrapping) than the right one when the value
    /// contains a space (0x20); right otherwise. Safe in-process.
    pub wrong_crc_with_spaces: bool,
    /// When the server drops a connection for a message it cannot decode (malformed, an
    /// unknown command, over `max_message`), it closes the connection but never releases the
    /// session: the id stays marked as logged in for good, so every later `CONNECT` of it
    /// answers `CONNECT: ERROR` (a duplicate session). The session's data is not removed
    /// either, though nobody can reach it any more. Other drops (a `CONNECT` while logged
    /// in) are not affected. Safe in-process.
    pub leak_session_after_junk: bool,
}

/// The line [`Sabotage::exit_on_put`] writes to stderr before the process exits.
#[doc(hidden)]
pub const CRASH_ON_PUT_MESSAGE: &str = "panic: crash-on-put: the server dies on PUT (deliberate)";

/// The line [`Sabotage::exit_on_long_line`] writes to stderr before the process exits.
#[doc(hidden)]
pub const LONG_LINE_MESSAGE: &str =
    "panic: die-on-long-line: the server dies on a line over 1000 bytes (deliberate)";

/// The longest line [`Sabotage::exit_on_long_line`] survives, in bytes, line end excluded.
#[doc(hidden)]
pub const LONG_LINE: usize = 1_000;

/// The exit code of [`Sabotage::exit_on_put`] and [`Sabotage::exit_on_long_line`]: the code
/// of a Rust panic.
#[doc(hidden)]
pub const CRASH_EXIT_CODE: i32 = 101;

impl Sabotage {
    /// No sabotage: a server that behaves.
    pub const NONE: Sabotage = Sabotage {
        exit_on_put: false,
        freeze_after_login: false,
        exit_on_long_line: false,
        wrong_crc_with_spaces: false,
        leak_session_after_junk: false,
    };

    /// Whether nothing is sabotaged.
    pub const fn is_empty(self) -> bool {
        !self.exit_on_put
            && !self.freeze_after_login
            && !self.exit_on_long_line
            && !self.wrong_crc_with_spaces
            && !self.leak_session_after_junk
    }
}

/// Measures the lines of one connection as its reads bring them, for
/// [`Sabotage::exit_on_long_line`]: see there what a line is.
#[derive(Debug)]
pub(super) struct LineMeter {
    dialect: Dialect,
    /// Bytes of the line not ended yet.
    current: usize,
}

impl LineMeter {
    pub(super) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            current: 0,
        }
    }

    /// Takes the bytes of one read: the length of the longest line they end or extend,
    /// counting what earlier reads brought of it.
    pub(super) fn longest(&mut self, bytes: &[u8]) -> usize {
        if self.dialect == Dialect::Course {
            // One read is one message: no line goes on from the previous one.
            self.current = 0;
        }
        let mut longest = 0;
        for (i, piece) in bytes.split(|&b| b == b'\n').enumerate() {
            self.current = if i == 0 {
                self.current.saturating_add(piece.len())
            } else {
                piece.len()
            };
            longest = longest.max(self.current);
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_empty_and_default() {
        assert!(Sabotage::NONE.is_empty());
        assert_eq!(Sabotage::default(), Sabotage::NONE);
        let one = Sabotage {
            leak_session_after_junk: true,
            ..Sabotage::NONE
        };
        assert!(!one.is_empty());
    }

    #[test]
    fn spec_lines_go_on_across_reads() {
        let mut meter = LineMeter::new(Dialect::Spec);
        assert_eq!(meter.longest(b"PUT k\n"), 5);
        assert_eq!(meter.longest(&[b'x'; 600]), 600);
        assert_eq!(meter.longest(&[b'x'; 400]), 1000);
        assert_eq!(meter.longest(b"x\nGET k\nDEL"), 1001);
        assert_eq!(meter.longest(b"ETE k\n"), 8);
        assert_eq!(meter.longest(b""), 0);
        assert_eq!(meter.longest(b"\n\n"), 0);
    }

    #[test]
    fn course_lines_end_with_the_read() {
        let mut meter = LineMeter::new(Dialect::Course);
        let mut put = b"PUT k\n".to_vec();
        put.extend_from_slice(&[b'v'; 900]);
        assert_eq!(meter.longest(&put), 900);
        assert_eq!(meter.longest(&[b'v'; 900]), 900);
        assert_eq!(meter.longest(b"GET k"), 5);
    }
}
