//! Deliberate misbehaviour of the whole server process, for testing the tools that run
//! servers (a grader must survive a server that dies or hangs).
//!
//! Unlike a [`super::fault::Fault`], which makes the protocol wrong in one way and is safe to
//! run in-process, a sabotage breaks the server as a whole. None is ever on by default, and
//! none is in [`super::fault::Fault::ALL`]: [`Sabotage::exit_on_put`] ends the whole process,
//! test runner included, so only the `reference kv-server` binary (`--crash-on-put`) or code
//! that sets the field explicitly turns it on.

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
}

/// The line [`Sabotage::exit_on_put`] writes to stderr before the process exits.
#[doc(hidden)]
pub const CRASH_ON_PUT_MESSAGE: &str = "panic: crash-on-put: the server dies on PUT (deliberate)";

/// The exit code of [`Sabotage::exit_on_put`]: the code of a Rust panic.
#[doc(hidden)]
pub const CRASH_EXIT_CODE: i32 = 101;

impl Sabotage {
    /// No sabotage: a server that keeps running.
    pub const NONE: Sabotage = Sabotage {
        exit_on_put: false,
        freeze_after_login: false,
    };

    /// Whether nothing is sabotaged.
    pub const fn is_empty(self) -> bool {
        !self.exit_on_put && !self.freeze_after_login
    }
}
