//! Deliberate mistakes the reference server can make, so that the scenario suites can be
//! checked against a server that is wrong in exactly one way: a suite that passes against
//! such a server does not test that behaviour.
//!
//! Each [`Fault`] changes one behaviour and is checked in exactly one place.

use std::fmt;
use std::str::FromStr;

/// One deliberate deviation from the protocol.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Fault {
    /// Any password logs in.
    AcceptAnyPassword,
    /// A second connection may log in to a session that is active on another one.
    AllowDuplicateSession,
    /// `PUT` of an existing key answers `PUT: OK` but keeps the old value.
    PutKeepsOldValue,
    /// `GET` sends the value line and no CRC line.
    GetWithoutCrc,
    /// `GET` sends a CRC that is off by one.
    WrongCrc,
    /// `GET` of a missing key answers with an empty value instead of `GET: ERROR`.
    GetMissingReturnsEmpty,
    /// `DELETE` answers `DELETE: OK` but keeps the key.
    DeleteKeepsKey,
    /// `DELETE` of a missing key answers `DELETE: ERROR`.
    DeleteMissingErrors,
    /// `DISCONNECT` keeps the session's data, as if the connection had just closed.
    KeepSessionAfterDisconnect,
    /// The connection stays open after `DISCONNECT: OK`.
    NoCloseAfterDisconnect,
    /// All sessions share one store.
    SharedStore,
    /// Malformed or unknown messages are ignored instead of dropping the connection.
    NoDropOnJunk,
    /// Dropping a connection for a protocol error keeps the client's data.
    KeepDataAfterDrop,
    /// Commands before a successful `CONNECT` are served, in a session with an empty id.
    AllowCommandsBeforeConnect,
    /// Messages of any length are accepted.
    NoSizeLimit,
    /// After `CONNECT: ERROR` for a wrong password the connection is logged in anyway (the
    /// course server's bug).
    UsableAfterConnectError,
    /// Spec dialect, but replies carry no final line end.
    ReplyWithoutLineEnd,
    /// A connection that ends without `DISCONNECT` loses its session's data.
    DiscardSessionOnClose,
    /// `GET` prints the CRC-32 as a signed 32-bit number (as Java's `int` would).
    SignedCrc,
    /// The hash must arrive in one read: a read that ends inside it is answered
    /// `CONNECT: ERROR` and the connection is dropped.
    PartialHashRefused,
    /// The message size limit is one byte short: a message of exactly the limit is refused.
    SizeLimitOffByOne,
    /// RSA: a public key of any size is accepted, not only a 512-bit one.
    RsaAnyKeySize,
    /// RSA: a block that does not decrypt, or not to one message of ASCII text, is skipped
    /// instead of dropping the connection.
    RsaSkipUndecryptable,
    /// RSA: a stream that does not start with a public key is refused only when the
    /// handshake timeout ends, not on its first bytes.
    RsaSlowKeyRefusal,
    /// RSA: replies are not held to one block's 53 bytes: a `PUT` of a value its `GET` reply
    /// cannot carry is accepted, and that reply then fails and closes the connection.
    RsaNoReplyCap,
}

impl Fault {
    /// Every fault, in declaration order.
    pub const ALL: [Fault; 25] = [
        Fault::AcceptAnyPassword,
        Fault::AllowDuplicateSession,
        Fault::PutKeepsOldValue,
        Fault::GetWithoutCrc,
        Fault::WrongCrc,
        Fault::GetMissingReturnsEmpty,
        Fault::DeleteKeepsKey,
        Fault::DeleteMissingErrors,
        Fault::KeepSessionAfterDisconnect,
        Fault::NoCloseAfterDisconnect,
        Fault::SharedStore,
        Fault::NoDropOnJunk,
        Fault::KeepDataAfterDrop,
        Fault::AllowCommandsBeforeConnect,
        Fault::NoSizeLimit,
        Fault::UsableAfterConnectError,
        Fault::ReplyWithoutLineEnd,
        Fault::DiscardSessionOnClose,
        Fault::SignedCrc,
        Fault::PartialHashRefused,
        Fault::SizeLimitOffByOne,
        Fault::RsaAnyKeySize,
        Fault::RsaSkipUndecryptable,
        Fault::RsaSlowKeyRefusal,
        Fault::RsaNoReplyCap,
    ];

    /// The kebab-case name, e.g. `accept-any-password`.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::AcceptAnyPassword => "accept-any-password",
            Fault::AllowDuplicateSession => "allow-duplicate-session",
            Fault::PutKeepsOldValue => "put-keeps-old-value",
            Fault::GetWithoutCrc => "get-without-crc",
            Fault::WrongCrc => "wrong-crc",
            Fault::GetMissingReturnsEmpty => "get-missing-returns-empty",
            Fault::DeleteKeepsKey => "delete-keeps-key",
            Fault::DeleteMissingErrors => "delete-missing-errors",
            Fault::KeepSessionAfterDisconnect => "keep-session-after-disconnect",
            Fault::NoCloseAfterDisconnect => "no-close-after-disconnect",
            Fault::SharedStore => "shared-store",
            Fault::NoDropOnJunk => "no-drop-on-junk",
            Fault::KeepDataAfterDrop => "keep-data-after-drop",
            Fault::AllowCommandsBeforeConnect => "allow-commands-before-connect",
            Fault::NoSizeLimit => "no-size-limit",
            Fault::UsableAfterConnectError => "usable-after-connect-error",
            Fault::ReplyWithoutLineEnd => "reply-without-line-end",
            Fault::DiscardSessionOnClose => "discard-session-on-close",
            Fault::SignedCrc => "signed-crc",
            Fault::PartialHashRefused => "partial-hash-refused",
            Fault::SizeLimitOffByOne => "size-limit-off-by-one",
            Fault::RsaAnyKeySize => "rsa-any-key-size",
            Fault::RsaSkipUndecryptable => "rsa-skip-undecryptable",
            Fault::RsaSlowKeyRefusal => "rsa-slow-key-refusal",
            Fault::RsaNoReplyCap => "rsa-no-reply-cap",
        }
    }

    const fn bit(self) -> u32 {
        1 << self as u8
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault name that is not one of [`Fault::ALL`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?}")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_owned()))
    }
}

/// A set of faults; empty by default (a correct server).
#[doc(hidden)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Faults(u32);

impl Faults {
    /// No fault.
    pub const NONE: Faults = Faults(0);

    /// Just `fault`.
    pub const fn only(fault: Fault) -> Self {
        Faults(fault.bit())
    }

    /// This set and `fault`.
    #[must_use]
    pub const fn with(self, fault: Fault) -> Self {
        Faults(self.0 | fault.bit())
    }

    /// Whether `fault` is in the set.
    pub const fn has(self, fault: Fault) -> bool {
        self.0 & fault.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The faults in the set.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |f| self.has(*f))
    }
}

impl FromIterator<Fault> for Faults {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> Self {
        iter.into_iter().fold(Faults::NONE, Faults::with)
    }
}

impl From<Fault> for Faults {
    fn from(fault: Fault) -> Self {
        Faults::only(fault)
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        let all: Faults = Fault::ALL.into_iter().collect();
        assert_eq!(all.iter().count(), Fault::ALL.len());
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
            assert!(Faults::only(fault).has(fault));
            assert_eq!(Faults::only(fault).iter().collect::<Vec<_>>(), vec![fault]);
        }
        assert!(Faults::default().is_empty());
        assert!("nope".parse::<Fault>().is_err());
    }
}
