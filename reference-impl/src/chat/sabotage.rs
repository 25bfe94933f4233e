//! Deliberate misbehaviour of the chat server where no scenario looks, for testing the live
//! fuzzer (`harness fuzz`), which must find it.
//!
//! Unlike a [`super::fault::Fault`], which makes the protocol wrong in one way that a
//! scenario suite checks, a sabotage is nothing the suites look for. None is ever on by
//! default, and none is in [`super::fault::Fault::ALL`]: only the `reference chat-server`
//! binary (`--panic-on-non-ascii-name`) or code that sets the field explicitly turns one on.

/// Deliberate misbehaviour of a chat server; everything off by default.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sabotage {
    /// A `LOGIN` whose username contains a non-ASCII character (sent raw or as a JSON
    /// `\u` escape) makes the connection's task panic with [`NON_ASCII_NAME_PANIC`], before
    /// the name is checked or registered and before any reply: the connection is closed
    /// with the `LOGIN` unanswered (what was queued before it, `WELCOME` included, is still
    /// written), nobody learns of it, and the server and its other clients go on. Safe
    /// in-process: the panic stays in the connection's task.
    pub panic_on_non_ascii_name: bool,
}

/// The message of the panic of [`Sabotage::panic_on_non_ascii_name`].
#[doc(hidden)]
pub const NON_ASCII_NAME_PANIC: &str =
    "panic-on-non-ascii-name: the connection dies on a non-ASCII username (deliberate)";

impl Sabotage {
    /// No sabotage: a server that behaves.
    pub const NONE: Sabotage = Sabotage {
        panic_on_non_ascii_name: false,
    };

    /// Whether nothing is sabotaged.
    pub const fn is_empty(self) -> bool {
        !self.panic_on_non_ascii_name
    }
}
