//! Deliberate mistakes the reference packet server and client can make. A grader scores
//! students' clients with our server and students' servers with our client, so both sides
//! have them: a suite (or a client) that cannot tell a faulty server from a correct one does
//! not test that behaviour, and a server that scores a faulty client like a correct one does
//! not grade it.
//!
//! Each fault changes one behaviour. [`Fault`] and [`Faults`] are the server's,
//! [`ClientFault`] and [`ClientFaults`] the client's.

use std::fmt;
use std::str::FromStr;

/// A fault name that is not one of the known ones.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?}")]
pub struct UnknownFault(pub String);

macro_rules! faults {
    (
        $(#[doc = $enum_doc:literal])+
        enum $fault:ident;
        $(#[doc = $set_doc:literal])+
        set $set:ident;
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

            /// The kebab-case name, e.g. `wrong-checksum-out`.
            pub const fn name(self) -> &'static str {
                match self {
                    $($fault::$variant => $name,)+
                }
            }

            const fn bit(self) -> u64 {
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

        $(#[doc = $set_doc])+
        #[doc(hidden)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $set(u64);

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
    enum Fault;
    /// A set of server faults; empty by default (a correct server).
    set Faults;
    /// Every packet the server sends carries its checksum plus one.
    WrongChecksumOut = "wrong-checksum-out",
    /// The XOR key starts again at its first byte in every packet, instead of running on
    /// over the concatenated data. (Visible because the server's packets never end at a
    /// multiple of the key's length, except the last.)
    XorOffsetResetsPerPacket = "xor-offset-resets-per-packet",
    /// The last packet of the encrypted stream has flag 0, like the others.
    LastPacketFlagMissing = "last-packet-flag-missing",
    /// A reply of the wrong length still gets the 15 length points.
    ScoreIgnoresLength = "score-ignores-length",
    /// Checksums of the client's packets are not checked.
    AcceptsBadChecksum = "accepts-bad-checksum",
    /// The reply's keyword is not checked against the key.
    AcceptsWrongKeyword = "accepts-wrong-keyword",
    /// The first packet of the encrypted stream carries 9,985 data bytes: 10,001 in all,
    /// one over the limit (the rest follows in packets within it).
    PacketOverLimit = "packet-over-limit",
    /// No result packet: the server closes the connection instead.
    NoResultPacket = "no-result-packet",
}

faults! {
    /// One deliberate deviation of the client from the protocol.
    enum ClientFault;
    /// A set of client faults; empty by default (a correct client).
    set ClientFaults;
    /// Every packet the client sends has a little-endian checksum, whatever `--checksum`
    /// says (wrong for a big-endian server).
    LittleEndianOnly = "little-endian-only",
    /// The last packet of the reply has flag 0, like the others.
    NoFinalFlag = "no-final-flag",
    /// The reply goes in packets of 9,985 data bytes, 10,001 in all: one over the limit.
    ChunkTooLarge = "chunk-too-large",
    /// Decryption starts again at the key's first byte in every packet.
    DecryptsWithoutCarryingKeyPosition = "decrypts-without-carrying-key-position",
    /// The reply's packets carry the first packet's keyword (`sbmt` or the test word), not
    /// the key.
    WrongKeyword = "wrong-keyword",
    /// The reply leaves out the last byte of the decrypted data.
    DropsLastByte = "drops-last-byte",
    /// The reply's packets carry the student id plus one.
    WrongSidInReply = "wrong-sid-in-reply",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        assert!(Fault::ALL.len() <= 64 && ClientFault::ALL.len() <= 64);
        let all: Faults = Fault::ALL.iter().copied().collect();
        assert_eq!(all.iter().count(), Fault::ALL.len());
        for &fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
            assert_eq!(Faults::only(fault).iter().collect::<Vec<_>>(), vec![fault]);
        }
        let all: ClientFaults = ClientFault::ALL.iter().copied().collect();
        assert_eq!(all.iter().count(), ClientFault::ALL.len());
        for &fault in ClientFault::ALL {
            assert_eq!(fault.name().parse::<ClientFault>(), Ok(fault));
            assert!(ClientFaults::from(fault).has(fault));
        }
        assert!(Faults::default().is_empty() && ClientFaults::default().is_empty());
        assert!("nope".parse::<Fault>().is_err());
        assert_eq!(
            format!("{:?}", Faults::only(Fault::NoResultPacket)),
            "{NoResultPacket}"
        );
    }
}
