//! How the server scores a session, and every status word and message it answers with.
//! Pure: the server feeds it what its decoder returns.
//!
//! ```text
//! stage     points  awarded when                                      else
//! header        10  the first packet passes every check below          its error, 0 points
//! receive       10  the client sends at least 16 bytes of reply         TIME or CLSD, 10
//!                   (a reply header's worth) after its first packet
//! length        15  every reply packet is valid, the last has flag 1,  its error, 20;
//!                   and the reply's data is as long as the text          SIZE, 20
//! content       15  the reply's data is the text                        DIFF, 35
//!                                                                        GOOD, 50
//! ```
//!
//! Checks of the first packet, in this order (the word, then the message):
//!
//! ```text
//! LENG  HEADER: LENGTH FIELD <n> IS BELOW THE HEADER SIZE 16
//! LENG  HEADER: LENGTH FIELD <n> IS OVER THE MAXIMUM 10000
//! CKSM  HEADER: CHECKSUM 0x<found>, EXPECTED 0x<big> (BIG-ENDIAN PAIRING)
//!                               (or 0x<little> (LITTLE-ENDIAN PAIRING), or both for `either`)
//! LENG  HEADER: LENGTH FIELD <n>, EXPECTED 16 (A HEADER WITHOUT DATA)
//! FLAG  HEADER: FLAG <n>, EXPECTED 1 (A SINGLE PACKET)
//! KEYW  HEADER: KEYWORD "<k>" IS NOT 4 LOWERCASE LETTERS
//! SIDN  HEADER: STUDENT ID <n> IS NOT 8 DIGITS
//! TIME  HEADER: NOTHING WITHIN <t>            (bytes may have come, not 16 of them)
//! CLSD  HEADER: CONNECTION CLOSED AFTER <n> OF 16 BYTES
//! ```
//!
//! Checks of every reply packet (`<i>` counts from 1):
//!
//! ```text
//! LENG  REPLY PACKET <i>: LENGTH FIELD <n> IS BELOW THE HEADER SIZE 16 | IS OVER THE MAXIMUM 10000
//! CKSM  REPLY PACKET <i>: CHECKSUM 0x<found>, EXPECTED 0x<expected> (...)
//! FLAG  REPLY PACKET <i>: FLAG <n>, EXPECTED 0 OR 1
//! KEYW  REPLY PACKET <i>: KEYWORD "<k>", EXPECTED THE KEY "<key>"
//! SIDN  REPLY PACKET <i>: STUDENT ID <n>, EXPECTED <sid>
//! TIME  REPLY: NOTHING WITHIN <t>  |  REPLY: NO LAST PACKET (FLAG 1) WITHIN <t> AFTER PACKET <i>
//! CLSD  REPLY: CONNECTION CLOSED BEFORE THE LAST PACKET (FLAG 1)
//! ```
//!
//! After the last reply packet (flag 1):
//!
//! ```text
//! GOOD  50  DECRYPTED DATA MATCH
//! DIFF  35  DECRYPTED DATA MISMATCH: FIRST DIFFERENCE AT BYTE <i>
//! SIZE  20  DECRYPTED DATA LENGTH <n>, EXPECTED <m>
//! ```
//!
//! `<t>` is a duration as `10s` or `300ms`, in capitals. A submission (keyword `sbmt`) whose
//! first packet passed gets its score recorded, whatever the outcome, and its message ends in
//! [`REGISTERED`] (or [`REGISTRATION_FAILED`] if the scores file cannot be written); a test
//! run's message has no suffix.

use std::fmt::Write as _;
use std::time::Duration;

use super::codec::{
    ChecksumMismatch, ChecksumMode, DecodeError, FLAG_LAST, FLAG_MORE, HEADER_LEN, Packet,
};

/// Points of each stage.
pub mod points {
    /// The first packet is a valid header.
    pub const HEADER: i32 = 10;
    /// The client answers the encrypted stream.
    pub const RECEIVE: i32 = 10;
    /// The reply is valid and as long as the text.
    pub const LENGTH: i32 = 15;
    /// The reply is the text.
    pub const CONTENT: i32 = 15;
    /// Everything.
    pub const FULL: i32 = HEADER + RECEIVE + LENGTH + CONTENT;
}

/// The keyword of a first packet that asks for the score to be recorded.
pub const SUBMIT: [u8; 4] = *b"sbmt";
/// What a submission's message ends with once its score is recorded.
pub const REGISTERED: &str = " & YOUR POINTS ARE REGISTERED ON DATABASE";
/// What a submission's message ends with if its score could not be recorded.
pub const REGISTRATION_FAILED: &str = " & REGISTRATION FAILED";

/// The status word of a result packet: its keyword field. Upper case, so a client can tell
/// it from a key (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The decrypted data match: 50 points.
    Good,
    /// The reply is as long as the text but differs: 35 points.
    Diff,
    /// The reply's length differs from the text's: 20 points.
    Size,
    /// A packet's checksum is wrong.
    Cksm,
    /// A packet's length field is out of range, or the first packet carries data.
    Leng,
    /// A packet's flag is wrong.
    Flag,
    /// The first packet's keyword is not 4 lowercase letters, or a reply's is not the key.
    Keyw,
    /// The student id is not 8 digits, or a reply packet carries another one.
    Sidn,
    /// The client was silent too long.
    Time,
    /// The client closed the connection too early.
    Clsd,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 10] = [
        Status::Good,
        Status::Diff,
        Status::Size,
        Status::Cksm,
        Status::Leng,
        Status::Flag,
        Status::Keyw,
        Status::Sidn,
        Status::Time,
        Status::Clsd,
    ];

    /// The 4-byte word in the keyword field.
    pub const fn word(self) -> [u8; 4] {
        match self {
            Status::Good => *b"GOOD",
            Status::Diff => *b"DIFF",
            Status::Size => *b"SIZE",
            Status::Cksm => *b"CKSM",
            Status::Leng => *b"LENG",
            Status::Flag => *b"FLAG",
            Status::Keyw => *b"KEYW",
            Status::Sidn => *b"SIDN",
            Status::Time => *b"TIME",
            Status::Clsd => *b"CLSD",
        }
    }

    /// The status a word names.
    pub fn from_word(word: [u8; 4]) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.word() == word)
    }
}

/// The outcome of a session: what the result packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// Points, 0 to 50: the result packet's sid field.
    pub score: i32,
    /// The problem, or the result, without a registration suffix.
    pub message: String,
}

/// What became of a session's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Not a submission: nothing recorded, no suffix.
    TestRun,
    /// Recorded: [`REGISTERED`].
    Registered,
    /// The scores file could not be written: [`REGISTRATION_FAILED`].
    Failed,
}

impl Verdict {
    fn new(status: Status, score: i32, message: String) -> Self {
        Self {
            status,
            score,
            message,
        }
    }

    /// The message with its registration suffix.
    pub fn message_with(&self, registration: Registration) -> String {
        let suffix = match registration {
            Registration::TestRun => "",
            Registration::Registered => REGISTERED,
            Registration::Failed => REGISTRATION_FAILED,
        };
        format!("{}{suffix}", self.message)
    }

    /// The result packet (flag 1, keyword = status word, sid = score, data = message); its
    /// checksum is computed when it is encoded.
    pub fn packet(&self, registration: Registration) -> Packet {
        Packet::new(
            FLAG_LAST,
            self.status.word(),
            self.score,
            self.message_with(registration).into_bytes(),
        )
    }
}

/// Whether `sid` is an 8-digit student id: 10,000,000 to 99,999,999.
pub fn is_student_id(sid: i32) -> bool {
    (10_000_000..=99_999_999).contains(&sid)
}

/// Whether `keyword` is 4 lowercase ASCII letters.
pub fn is_lowercase_word(keyword: &[u8; 4]) -> bool {
    keyword.iter().all(u8::is_ascii_lowercase)
}

/// A first packet that passed: who it is and what they asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub keyword: [u8; 4],
    pub sid: i32,
}

impl Hello {
    /// Whether this session's score is recorded (keyword `sbmt`).
    pub fn is_submission(&self) -> bool {
        self.keyword == SUBMIT
    }
}

/// A duration in messages: `10S`, `300MS`.
fn duration(d: Duration) -> String {
    format!("{d:?}").to_uppercase()
}

fn checksum_text(m: &ChecksumMismatch) -> String {
    let mut text = format!("CHECKSUM {:#06x}, EXPECTED {:#06x}", m.found, m.expected);
    let _ = match m.mode {
        ChecksumMode::Big => write!(text, " (BIG-ENDIAN PAIRING)"),
        ChecksumMode::Little => write!(text, " (LITTLE-ENDIAN PAIRING)"),
        ChecksumMode::Either => write!(
            text,
            " (BIG-ENDIAN PAIRING) OR {:#06x} (LITTLE-ENDIAN PAIRING)",
            m.expected.swap_bytes()
        ),
    };
    text
}

/// The verdict for a decode error of the packet `what` names (`HEADER`, `REPLY PACKET 2`).
fn decode_error(what: &str, e: &DecodeError, score: i32) -> Verdict {
    match e {
        DecodeError::LengthTooSmall { length, .. } => Verdict::new(
            Status::Leng,
            score,
            format!("{what}: LENGTH FIELD {length} IS BELOW THE HEADER SIZE {HEADER_LEN}"),
        ),
        DecodeError::LengthTooLarge { length, max, .. } => Verdict::new(
            Status::Leng,
            score,
            format!("{what}: LENGTH FIELD {length} IS OVER THE MAXIMUM {max}"),
        ),
        DecodeError::BadChecksum { mismatch, .. } => Verdict::new(
            Status::Cksm,
            score,
            format!("{what}: {}", checksum_text(mismatch)),
        ),
        DecodeError::Truncated { got, expected, .. } => Verdict::new(
            Status::Clsd,
            score,
            format!("{what}: CONNECTION CLOSED AFTER {got} OF {expected} BYTES"),
        ),
    }
}

/// Checks the first packet: the hello, or the error verdict (0 points).
pub fn check_hello(packet: Result<Packet, DecodeError>) -> Result<Hello, Verdict> {
    let packet = packet.map_err(|e| decode_error("HEADER", &e, 0))?;
    let fail = |status, message: String| Err(Verdict::new(status, 0, format!("HEADER: {message}")));
    if !packet.data.is_empty() {
        return fail(
            Status::Leng,
            format!(
                "LENGTH FIELD {}, EXPECTED {HEADER_LEN} (A HEADER WITHOUT DATA)",
                packet.length_field()
            ),
        );
    }
    if packet.flag != FLAG_LAST {
        return fail(
            Status::Flag,
            format!("FLAG {}, EXPECTED 1 (A SINGLE PACKET)", packet.flag),
        );
    }
    if !is_lowercase_word(&packet.keyword) {
        return fail(
            Status::Keyw,
            format!(
                "KEYWORD \"{}\" IS NOT 4 LOWERCASE LETTERS",
                packet.keyword.escape_ascii()
            ),
        );
    }
    if !is_student_id(packet.sid) {
        return fail(
            Status::Sidn,
            format!("STUDENT ID {} IS NOT 8 DIGITS", packet.sid),
        );
    }
    Ok(Hello {
        keyword: packet.keyword,
        sid: packet.sid,
    })
}

/// The verdict when the first packet does not come within `after`.
pub fn hello_timed_out(after: Duration) -> Verdict {
    Verdict::new(
        Status::Time,
        0,
        format!("HEADER: NOTHING WITHIN {}", duration(after)),
    )
}

/// What a grader lets pass (the server's faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leniency {
    /// Reply keywords other than the key pass.
    pub any_keyword: bool,
    /// A reply of the wrong length still gets the length points.
    pub any_length: bool,
}

/// Scores the reply of a session whose hello passed, packet by packet, without keeping the
/// reply: each byte is compared with the text as it arrives.
#[derive(Debug, Clone)]
pub struct Grader {
    hello: Hello,
    key: [u8; 4],
    text: Vec<u8>,
    leniency: Leniency,
    /// Reply packets seen, bad ones included.
    packets: usize,
    /// Reply data bytes received.
    received: usize,
    /// The first byte where the reply and the text differ, within both.
    first_difference: Option<usize>,
    /// At least a header's worth of reply arrived.
    answered: bool,
}

impl Grader {
    /// A grader for the reply to `text`, encrypted with `key`, of the client `hello` names.
    pub fn new(hello: Hello, key: [u8; 4], text: Vec<u8>, leniency: Leniency) -> Self {
        Self {
            hello,
            key,
            text,
            leniency,
            packets: 0,
            received: 0,
            first_difference: None,
            answered: false,
        }
    }

    /// The text the reply should be.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Notes how many bytes of reply have arrived so far (header bytes included); from 16
    /// on, the receive points are earned.
    pub fn reply_bytes(&mut self, bytes: u64) {
        if bytes >= HEADER_LEN as u64 {
            self.answered = true;
        }
    }

    /// Points earned so far, before the reply is judged.
    pub fn score_so_far(&self) -> i32 {
        if self.answered {
            points::HEADER + points::RECEIVE
        } else {
            points::HEADER
        }
    }

    /// Takes the next reply packet (or the decoder's error about it): `Some(verdict)` once the
    /// session is decided, `None` to read on.
    pub fn packet(&mut self, packet: Result<Packet, DecodeError>) -> Option<Verdict> {
        self.packets += 1;
        self.answered = true;
        let what = format!("REPLY PACKET {}", self.packets);
        let packet = match packet {
            Ok(packet) => packet,
            Err(e) => return Some(decode_error(&what, &e, self.score_so_far())),
        };
        let score = self.score_so_far();
        let fail = |status, message: String| {
            Some(Verdict::new(status, score, format!("{what}: {message}")))
        };
        if packet.flag != FLAG_MORE && packet.flag != FLAG_LAST {
            return fail(
                Status::Flag,
                format!("FLAG {}, EXPECTED 0 OR 1", packet.flag),
            );
        }
        if packet.keyword != self.key && !self.leniency.any_keyword {
            return fail(
                Status::Keyw,
                format!(
                    "KEYWORD \"{}\", EXPECTED THE KEY \"{}\"",
                    packet.keyword.escape_ascii(),
                    self.key.escape_ascii()
                ),
            );
        }
        if packet.sid != self.hello.sid {
            return fail(
                Status::Sidn,
                format!("STUDENT ID {}, EXPECTED {}", packet.sid, self.hello.sid),
            );
        }
        self.compare(&packet.data);
        packet.is_last().then(|| self.judge())
    }

    fn compare(&mut self, data: &[u8]) {
        if self.first_difference.is_none() {
            let start = self.received.min(self.text.len());
            let expected = &self.text[start..];
            if let Some(i) = data.iter().zip(expected).position(|(a, b)| a != b) {
                self.first_difference = Some(self.received + i);
            }
        }
        self.received += data.len();
    }

    /// The verdict on a complete reply.
    fn judge(&self) -> Verdict {
        let score = self.score_so_far();
        let length_ok = self.received == self.text.len();
        if !length_ok && !self.leniency.any_length {
            return Verdict::new(
                Status::Size,
                score,
                format!(
                    "DECRYPTED DATA LENGTH {}, EXPECTED {}",
                    self.received,
                    self.text.len()
                ),
            );
        }
        let score = score + points::LENGTH;
        let difference = self
            .first_difference
            .or((!length_ok).then(|| self.received.min(self.text.len())));
        match difference {
            None => Verdict::new(
                Status::Good,
                score + points::CONTENT,
                "DECRYPTED DATA MATCH".to_owned(),
            ),
            Some(i) => Verdict::new(
                Status::Diff,
                score,
                format!("DECRYPTED DATA MISMATCH: FIRST DIFFERENCE AT BYTE {i}"),
            ),
        }
    }

    /// The verdict when the client is silent for `after` before its last reply packet.
    pub fn timed_out(&self, after: Duration) -> Verdict {
        let message = if self.packets == 0 {
            format!("REPLY: NOTHING WITHIN {}", duration(after))
        } else {
            format!(
                "REPLY: NO LAST PACKET (FLAG 1) WITHIN {} AFTER PACKET {}",
                duration(after),
                self.packets
            )
        };
        Verdict::new(Status::Time, self.score_so_far(), message)
    }

    /// The verdict when the client closes the connection before its last reply packet.
    pub fn closed(&self) -> Verdict {
        Verdict::new(
            Status::Clsd,
            self.score_so_far(),
            "REPLY: CONNECTION CLOSED BEFORE THE LAST PACKET (FLAG 1)".to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::packet::codec::{PacketDecoder, Pairing};

    const SID: i32 = 20200000;
    const KEY: [u8; 4] = *b"abcd";

    fn hello(flag: u16, keyword: &[u8; 4], sid: i32, data: &[u8]) -> Result<Hello, Verdict> {
        check_hello(Ok(Packet::new(flag, *keyword, sid, data.to_vec())))
    }

    fn grader(text: &[u8]) -> Grader {
        let hello = Hello {
            keyword: SUBMIT,
            sid: SID,
        };
        Grader::new(hello, KEY, text.to_vec(), Leniency::default())
    }

    fn reply(flag: u16, data: &[u8]) -> Result<Packet, DecodeError> {
        Ok(Packet::new(flag, KEY, SID, data.to_vec()))
    }

    #[test]
    fn hello_checks_in_order() {
        assert_eq!(
            hello(1, b"sbmt", SID, b""),
            Ok(Hello {
                keyword: SUBMIT,
                sid: SID
            })
        );
        assert!(hello(1, b"sbmt", SID, b"").unwrap().is_submission());
        assert!(!hello(1, b"test", SID, b"").unwrap().is_submission());
        let e = hello(0, b"SBMT", 7, b"x").unwrap_err();
        assert_eq!(
            (e.status, e.score, e.message.as_str()),
            (
                Status::Leng,
                0,
                "HEADER: LENGTH FIELD 17, EXPECTED 16 (A HEADER WITHOUT DATA)"
            )
        );
        let e = hello(0, b"SBMT", 7, b"").unwrap_err();
        assert_eq!(e.message, "HEADER: FLAG 0, EXPECTED 1 (A SINGLE PACKET)");
        let e = hello(1, b"SB\0T", 7, b"").unwrap_err();
        assert_eq!(e.status, Status::Keyw);
        assert_eq!(
            e.message,
            "HEADER: KEYWORD \"SB\\x00T\" IS NOT 4 LOWERCASE LETTERS"
        );
        let e = hello(1, b"sbmt", 9_999_999, b"").unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::Sidn, "HEADER: STUDENT ID 9999999 IS NOT 8 DIGITS")
        );
        assert!(hello(1, b"sbmt", 100_000_000, b"").is_err());
        assert!(hello(1, b"zzzz", 99_999_999, b"").is_ok());
        assert!(hello(1, b"aaaa", 10_000_000, b"").is_ok());
    }

    #[test]
    fn hello_decode_errors() {
        let mut decoder = PacketDecoder::new(ChecksumMode::Big);
        decoder.feed(&Packet::new(1, SUBMIT, SID, vec![]).to_bytes(Pairing::LittleEndian));
        let e = check_hello(decoder.next_packet().map(Option::unwrap)).unwrap_err();
        assert_eq!(e.status, Status::Cksm);
        assert_eq!(
            e.message,
            "HEADER: CHECKSUM 0xa3e3, EXPECTED 0xe3a3 (BIG-ENDIAN PAIRING)"
        );
        let e = check_hello(Err(DecodeError::LengthTooLarge {
            offset: 0,
            length: 10_001,
            max: 10_000,
        }))
        .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                Status::Leng,
                "HEADER: LENGTH FIELD 10001 IS OVER THE MAXIMUM 10000"
            )
        );
        let e = check_hello(Err(DecodeError::LengthTooSmall {
            offset: 0,
            length: -3,
        }))
        .unwrap_err();
        assert_eq!(
            e.message,
            "HEADER: LENGTH FIELD -3 IS BELOW THE HEADER SIZE 16"
        );
        assert_eq!(
            hello_timed_out(Duration::from_millis(300)).message,
            "HEADER: NOTHING WITHIN 300MS"
        );
        let e = check_hello(Err(DecodeError::Truncated {
            offset: 0,
            expected: 16,
            got: 5,
        }))
        .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                Status::Clsd,
                "HEADER: CONNECTION CLOSED AFTER 5 OF 16 BYTES"
            )
        );
    }

    #[test]
    fn a_correct_reply_in_pieces_scores_50() {
        let mut g = grader(b"hello world");
        assert_eq!(g.score_so_far(), 10);
        assert_eq!(g.packet(reply(0, b"hello")), None);
        assert_eq!(g.score_so_far(), 20);
        let v = g.packet(reply(1, b" world")).unwrap();
        assert_eq!(
            v,
            Verdict::new(Status::Good, 50, "DECRYPTED DATA MATCH".into())
        );
        assert_eq!(
            v.message_with(Registration::Registered),
            "DECRYPTED DATA MATCH & YOUR POINTS ARE REGISTERED ON DATABASE"
        );
        let p = v.packet(Registration::TestRun);
        assert_eq!((p.flag, p.keyword, p.sid), (1, *b"GOOD", 50));
    }

    #[test]
    fn wrong_content_and_length() {
        let mut g = grader(b"hello world");
        let v = g.packet(reply(1, b"hello worle")).unwrap();
        assert_eq!(
            (v.status, v.score, v.message.as_str()),
            (
                Status::Diff,
                35,
                "DECRYPTED DATA MISMATCH: FIRST DIFFERENCE AT BYTE 10"
            )
        );
        let mut g = grader(b"hello world");
        let v = g.packet(reply(1, b"hello worl")).unwrap();
        assert_eq!(
            (v.status, v.score, v.message.as_str()),
            (Status::Size, 20, "DECRYPTED DATA LENGTH 10, EXPECTED 11")
        );
        let mut g = grader(b"hi");
        assert_eq!(g.packet(reply(0, b"hi")), None);
        assert_eq!(g.packet(reply(1, b"!")).unwrap().status, Status::Size);
        // Leniency: a short reply gets the length points, and differs where it ends.
        let mut g = grader(b"hello world");
        g.leniency.any_length = true;
        let v = g.packet(reply(1, b"hello worl")).unwrap();
        assert_eq!((v.status, v.score), (Status::Diff, 35));
        assert_eq!(
            v.message,
            "DECRYPTED DATA MISMATCH: FIRST DIFFERENCE AT BYTE 10"
        );
        // An empty text and an empty reply.
        let mut g = grader(b"");
        assert_eq!(g.packet(reply(1, b"")).unwrap().score, 50);
    }

    #[test]
    fn bad_reply_packets() {
        let mut g = grader(b"text");
        let v = g
            .packet(Ok(Packet::new(1, *b"sbmt", SID, b"text".to_vec())))
            .unwrap();
        assert_eq!(
            (v.status, v.score, v.message.as_str()),
            (
                Status::Keyw,
                20,
                "REPLY PACKET 1: KEYWORD \"sbmt\", EXPECTED THE KEY \"abcd\""
            )
        );
        let mut g = grader(b"text");
        g.leniency.any_keyword = true;
        assert_eq!(
            g.packet(Ok(Packet::new(1, *b"sbmt", SID, b"text".to_vec())))
                .unwrap()
                .status,
            Status::Good
        );
        let mut g = grader(b"text");
        assert_eq!(g.packet(reply(0, b"te")), None);
        let v = g.packet(reply(2, b"xt")).unwrap();
        assert_eq!(v.message, "REPLY PACKET 2: FLAG 2, EXPECTED 0 OR 1");
        let mut g = grader(b"text");
        let v = g
            .packet(Ok(Packet::new(1, KEY, SID + 1, b"text".to_vec())))
            .unwrap();
        assert_eq!(
            (v.status, v.message.as_str()),
            (
                Status::Sidn,
                "REPLY PACKET 1: STUDENT ID 20200001, EXPECTED 20200000"
            )
        );
        let mut g = grader(b"text");
        let v = g
            .packet(Err(DecodeError::LengthTooLarge {
                offset: 16,
                length: 10_001,
                max: 10_000,
            }))
            .unwrap();
        assert_eq!(
            (v.status, v.score, v.message.as_str()),
            (
                Status::Leng,
                20,
                "REPLY PACKET 1: LENGTH FIELD 10001 IS OVER THE MAXIMUM 10000"
            )
        );
    }

    #[test]
    fn silence_and_closing() {
        let mut g = grader(b"text");
        let v = g.timed_out(Duration::from_secs(10));
        assert_eq!(
            (v.status, v.score, v.message.as_str()),
            (Status::Time, 10, "REPLY: NOTHING WITHIN 10S")
        );
        g.reply_bytes(15);
        assert_eq!(g.score_so_far(), 10);
        g.reply_bytes(16);
        assert_eq!(g.closed().score, 20);
        assert_eq!(g.packet(reply(0, b"te")), None);
        let v = g.timed_out(Duration::from_millis(250));
        assert_eq!(
            (v.status, v.score, v.message.as_str()),
            (
                Status::Time,
                20,
                "REPLY: NO LAST PACKET (FLAG 1) WITHIN 250MS AFTER PACKET 1"
            )
        );
    }

    #[test]
    fn status_words() {
        for status in Status::ALL {
            assert_eq!(Status::from_word(status.word()), Some(status));
            assert!(status.word().iter().all(u8::is_ascii_uppercase));
        }
        assert_eq!(Status::from_word(*b"abcd"), None);
        assert_eq!(points::FULL, 50);
    }
}
