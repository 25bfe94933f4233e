//! Deliberate mistakes the reference chat server can make, so that the scenario suites can
//! be checked against a server that is wrong in exactly one way: a suite that passes against
//! such a server does not test that behaviour.
//!
//! Each [`Fault`] changes one behaviour.

use std::fmt;
use std::str::FromStr;

macro_rules! faults {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+) => {
        /// One deliberate deviation from the protocol.
        #[doc(hidden)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Fault {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Fault {
            /// Every fault, in declaration order.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)+];

            /// The kebab-case name, e.g. `login-order-wrong`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Fault::$variant => $name,)+
                }
            }
        }
    };
}

faults! {
    /// `WELCOME {"msg":"Welcome to the server"}`: no version.
    WelcomeWithoutVersion = "welcome-without-version",
    /// The login checks run in the order 5000, 5001, 5002, so a logged-in client sending an
    /// invalid or taken name gets 5001 or 5000 instead of 5002. (5000 before 5001 alone
    /// could not be seen: a name in use is always valid.)
    LoginOrderWrong = "login-order-wrong",
    /// Any non-empty username is accepted.
    AcceptBadUsername = "accept-bad-username",
    /// Two clients may log in with the same name.
    AllowDuplicateName = "allow-duplicate-name",
    /// A logged-in connection may log in again (under a new name; the old one stays).
    AllowLoginTwice = "allow-login-twice",
    /// The sender of a broadcast receives its own `BROADCAST` too.
    BroadcastEchoesSender = "broadcast-echoes-sender",
    /// A broadcast is delivered but the sender gets no `BROADCAST_RESP`.
    BroadcastWithoutResp = "broadcast-without-resp",
    /// Nobody is told with `LEFT` when a user leaves.
    NoLeft = "no-left",
    /// Pings are timed from the connection, not from the login.
    PingFromConnect = "ping-from-connect",
    /// Pings come every 0.8 ping intervals.
    WrongPingInterval = "wrong-ping-interval",
    /// A client that does not answer a `PING` is never disconnected.
    NoPongTimeout = "no-pong-timeout",
    /// A `PONG` without a `PING` is ignored instead of answered with `PONG_ERROR`.
    NoPongError = "no-pong-error",
    /// A line over the limit is dropped silently; no `DSCN`, the connection stays.
    NoDscnOnLongLine = "no-dscn-on-long-line",
    /// An unknown header is answered `PARSE_ERROR`.
    UnknownAsParseError = "unknown-as-parse-error",
    /// A body that is not valid JSON is answered `UNKNOWN_COMMAND`.
    ParseAsUnknown = "parse-as-unknown",
    /// The connection stays open (and logged in) after `BYE_RESP`.
    StayOpenAfterBye = "stay-open-after-bye",
    /// `LIST_USERS_RESP` leaves out the user who asked.
    ListUsersWithoutSelf = "list-users-without-self",
    /// A private message to oneself is delivered instead of refused with 6007.
    PmToSelfAllowed = "pm-to-self-allowed",
    /// An empty private message is delivered instead of refused with 6008.
    PmEmptyAllowed = "pm-empty-allowed",
    /// A private message reaches every other user, not just the receiver.
    PmToEveryone = "pm-to-everyone",
    /// `PRIVATE_MESSAGE_RESP OK`, but the receiver gets nothing.
    PmNotDelivered = "pm-not-delivered",
    /// A user may join a game after its join window.
    JoinAfterWindowAllowed = "join-after-window-allowed",
    /// `GAME_NOTIFICATION` is not sent to the other users.
    NoGameNotification = "no-game-notification",
    /// `GAME_RESULTS` lists the slowest first.
    ResultsUnsorted = "results-unsorted",
    /// A game starts with a single participant instead of failing with 6002.
    GameNo6002 = "game-no-6002",
    /// Guesses outside 1..=50 are answered too low / too high instead of 7007.
    GuessRangeUnchecked = "guess-range-unchecked",
    /// The uploader is told a transfer id other than the downloader's.
    TransferIdNotRelayed = "transfer-id-not-relayed",
    /// The relay flips one bit of the first byte of a file.
    TransferCorruptsByte = "transfer-corrupts-byte",
    /// A secure message arrives with its `message` field changed.
    SecureMessageAltered = "secure-message-altered",
    /// Error codes are sent as JSON strings (`"code":"5001"`), as some servers do.
    CodesAsStrings = "codes-as-strings",
}

impl Fault {
    const fn bit(self) -> u64 {
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
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_owned()))
    }
}

/// A set of faults; empty by default (a correct server).
#[doc(hidden)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Faults(u64);

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
        Fault::ALL.iter().copied().filter(move |f| self.has(*f))
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
        assert!(Fault::ALL.len() <= 64);
        let all: Faults = Fault::ALL.iter().copied().collect();
        assert_eq!(all.iter().count(), Fault::ALL.len());
        for &fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
            assert!(Faults::only(fault).has(fault));
            assert_eq!(Faults::only(fault).iter().collect::<Vec<_>>(), vec![fault]);
        }
        assert!(Faults::default().is_empty());
        assert!("nope".parse::<Fault>().is_err());
    }
}
