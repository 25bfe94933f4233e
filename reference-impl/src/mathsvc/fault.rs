//! Deliberate mistakes of the reference math server ([`Fault`]) and of the grading client
//! ([`ClientFault`]), so that a grader or a scenario suite can be shown to catch a program
//! that is wrong in exactly one way.

use std::fmt;
use std::str::FromStr;

/// A fault name that is not one of the known faults.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?}")]
pub struct UnknownFault(pub String);

macro_rules! faults {
    (
        $(#[doc = $enum_doc:literal])+ $fault:ident, $set:ident;
        $($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+
    ) => {
        $(#[doc = $enum_doc])+
        #[doc(hidden)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $fault {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl $fault {
            /// Every fault, in declaration order.
            pub const ALL: &'static [$fault] = &[$($fault::$variant,)+];

            /// The kebab-case name.
            pub const fn name(self) -> &'static str {
                match self {
                    $($fault::$variant => $name,)+
                }
            }

            const fn bit(self) -> u32 {
                1 << self as u8
            }
        }

        impl fmt::Display for $fault {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $fault {
            type Err = UnknownFault;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $fault::ALL
                    .iter()
                    .copied()
                    .find(|f| f.name() == s)
                    .ok_or_else(|| UnknownFault(s.to_owned()))
            }
        }

        /// A set of faults; empty by default (a correct program).
        #[doc(hidden)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $set(u32);

        impl $set {
            /// No fault.
            pub const NONE: $set = $set(0);

            /// Just `fault`.
            pub const fn only(fault: $fault) -> Self {
                $set(fault.bit())
            }

            /// This set and `fault`.
            #[must_use]
            pub const fn with(self, fault: $fault) -> Self {
                $set(self.0 | fault.bit())
            }

            /// Whether `fault` is in the set.
            pub const fn has(self, fault: $fault) -> bool {
                self.0 & fault.bit() != 0
            }

            /// Whether the set is empty.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The faults in the set.
            pub fn iter(self) -> impl Iterator<Item = $fault> {
                $fault::ALL.iter().copied().filter(move |f| self.has(*f))
            }
        }

        impl FromIterator<$fault> for $set {
            fn from_iter<I: IntoIterator<Item = $fault>>(iter: I) -> Self {
                iter.into_iter().fold($set::NONE, $set::with)
            }
        }

        impl From<$fault> for $set {
            fn from(fault: $fault) -> Self {
                $set::only(fault)
            }
        }

        impl fmt::Debug for $set {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_set().entries(self.iter()).finish()
            }
        }
    };
}

faults! {
    /// One deliberate deviation of the server from the protocol.
    Fault, Faults;
    /// `FIBONACCI n` answers fib(n + 1) (a loop that runs once too often).
    FibOffByOne = "fib-off-by-one",
    /// `FACTORIAL n` is computed in 64 bits and wraps: right up to 20!, wrong from 21! on.
    FactorialOverflowsU64 = "factorial-overflows-u64",
    /// Words are counted as Python's `len(text.split(' '))`: a double space makes an empty
    /// word, line ends and tabs separate nothing, an empty text has one word.
    WordCountSplitsOnSpaceOnly = "word-count-splits-on-space-only",
    /// The count is the number of spaces ("count whitespaces" taken literally): one short
    /// for a text of single-spaced words.
    WordCountCountsSpaces = "word-count-counts-spaces",
    /// Only the first 1024 bytes of a text are counted (the rest is read and ignored), as a
    /// server that takes the text from one `recv(1024)`.
    WordCountFirst1024Bytes = "word-count-first-1024-bytes",
    /// The UUID is made from the client's IP alone, so every client on a host gets the same.
    UuidWrongName = "uuid-wrong-name",
    /// Every answer (the UUID and error texts too) ends in `\n`.
    AnswersWithNewline = "answers-with-newline",
    /// `COMPLETE` is ignored: the connection stays open.
    NoCompleteClose = "no-complete-close",
    /// A token ends only at `\n`; a pause means nothing, so the course's client (which
    /// sends no line ends) never gets an answer.
    NeedsNewlines = "needs-newlines",
    /// One connection is served at a time; the next waits until it has closed.
    SerialClients = "serial-clients",
}

faults! {
    /// One deliberate mistake of the grading client.
    ClientFault, ClientFaults;
    /// Expects fib(n + 1) for `FIBONACCI n`.
    WrongExpectedFib = "wrong-expected-fib",
    /// Sends the parts of a request back to back, without the pauses the framing needs.
    SendsWithoutPause = "sends-without-pause",
    /// Closes the connection without sending `COMPLETE`.
    SkipsComplete = "skips-complete",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        let all: Faults = Fault::ALL.iter().copied().collect();
        assert_eq!(all.iter().count(), Fault::ALL.len());
        for &fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
            assert!(Faults::only(fault).has(fault));
            assert_eq!(Faults::only(fault).iter().collect::<Vec<_>>(), vec![fault]);
        }
        let all: ClientFaults = ClientFault::ALL.iter().copied().collect();
        assert_eq!(all.iter().count(), ClientFault::ALL.len());
        for &fault in ClientFault::ALL {
            assert_eq!(fault.name().parse::<ClientFault>(), Ok(fault));
        }
        assert!(Faults::default().is_empty());
        assert!("nope".parse::<Fault>().is_err());
        assert!("fib-off-by-one".parse::<ClientFault>().is_err());
    }
}
