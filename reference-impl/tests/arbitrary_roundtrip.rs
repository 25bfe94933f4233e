//! The structure-aware round trips of the `roundtrip` fuzz target on stable Rust: a few
//! thousand pseudo-random byte buffers, each turned into messages by `arbitrary` (as
//! libfuzzer-sys does) and checked by the entry points of `reference_impl::fuzzing`.
//!
//! Needs the `arbitrary` feature, which the crate's dev-dependency on itself turns on for
//! every `cargo test`. The generators are also checked for reaching every kind of message,
//! so that a round trip that passes is not a vacuous one.
#![cfg(feature = "arbitrary")]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use reference_impl::chat::codec as chat;
use reference_impl::fuzzing::{
    AnyMessage, ChatLine, ChatLines, KvMessages, MathsvcSession, PacketMessages, chat_roundtrip,
    kv_roundtrip, mathsvc_roundtrip, packet_roundtrip, roundtrip, roundtrip_bytes,
};
use reference_impl::kv::codec as kv;
use reference_impl::mathsvc::codec as mathsvc;

/// Buffers per test.
const BUFFERS: u64 = 3_000;

/// SplitMix64: deterministic, so that a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A buffer of 0 to 64 bytes most of the time, up to 4 KiB (libFuzzer's default
    /// `-max_len`) now and then.
    fn buffer(&mut self) -> Vec<u8> {
        let max = if self.next().is_multiple_of(8) {
            4096
        } else {
            64
        };
        let len = usize::try_from(self.next() % (max + 1)).unwrap_or_default();
        let mut buffer = Vec::with_capacity(len + 8);
        while buffer.len() < len {
            buffer.extend_from_slice(&self.next().to_le_bytes());
        }
        buffer.truncate(len);
        buffer
    }
}

/// Every value of `T` that `BUFFERS` buffers make (from `seed`), checked with `check`, and
/// the kinds of message seen (by `kind`).
fn run<T>(seed: u64, check: fn(&T), kind: fn(&T) -> Vec<String>) -> BTreeSet<String>
where
    T: for<'a> Arbitrary<'a> + std::fmt::Debug,
{
    let mut rng = Rng(seed);
    let mut made = 0;
    let mut kinds = BTreeSet::new();
    for _ in 0..BUFFERS {
        let buffer = rng.buffer();
        let Ok(value) = T::arbitrary_take_rest(Unstructured::new(&buffer)) else {
            continue;
        };
        made += 1;
        kinds.extend(kind(&value));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&value)));
        assert!(result.is_ok(), "{value:?} (from {buffer:02x?}) fails");
    }
    assert!(
        made > BUFFERS / 2,
        "only {made} values from {BUFFERS} buffers"
    );
    kinds
}

/// A variant's name, from its `Debug` form.
fn variant(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let end = text.find([' ', '(', '{']).unwrap_or(text.len());
    text[..end].to_owned()
}

fn assert_reaches(kinds: &BTreeSet<String>, expected: &[&str]) {
    let missing: Vec<_> = expected.iter().filter(|k| !kinds.contains(**k)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

#[test]
fn kv_messages_round_trip() {
    let kinds = run::<KvMessages>(1, kv_roundtrip, |m| match m {
        KvMessages::Requests(requests) => requests.iter().map(variant).collect(),
        KvMessages::Replies(replies) => replies.iter().map(variant).collect(),
    });
    assert_reaches(
        &kinds,
        &[
            "Connect",
            "Put",
            "Get",
            "Delete",
            "Disconnect",
            "ConnectOk",
            "GetOk",
            "DisconnectOk",
        ],
    );
}

#[test]
fn chat_lines_round_trip() {
    let kinds = run::<ChatLines>(2, chat_roundtrip, |m| {
        let mut kinds: Vec<String> = m
            .lines
            .iter()
            .map(|line| match line {
                ChatLine::Client(message) => format!("client {}", message.header()),
                ChatLine::Server(message) => format!("server {}", message.header()),
                ChatLine::DataHello(hello) => variant(hello),
                ChatLine::DataReply(reply) => variant(reply),
            })
            .collect();
        if !m.renames.is_empty() && !m.lines.is_empty() {
            kinds.push("renamed".into());
        }
        kinds
    });
    assert_reaches(
        &kinds,
        &[
            "client LOGIN",
            "client GUESS_NUMBER_REQ",
            "client SECURE_MESSAGE",
            "server LOGIN_RESP",
            "server GAME_RESULTS",
            "server FILE_TRANSFER_COMPLETE",
            "Upload",
            "Download",
            "Ready",
            "Error",
            "renamed",
        ],
    );
}

#[test]
fn packet_messages_round_trip() {
    let kinds = run::<PacketMessages>(3, packet_roundtrip, |m| match m {
        PacketMessages::Packets { pairing, packets } if !packets.is_empty() => {
            vec![format!("{pairing:?}")]
        }
        PacketMessages::Packets { .. } => Vec::new(),
        PacketMessages::Header(_) => vec!["header".into()],
    });
    assert_reaches(
        &kinds,
        &["None", "Some(BigEndian)", "Some(LittleEndian)", "header"],
    );
}

#[test]
fn mathsvc_sessions_round_trip() {
    let kinds = run::<MathsvcSession>(4, mathsvc_roundtrip, |m| {
        let mut kinds: Vec<String> = m.requests.iter().map(variant).collect();
        kinds.extend(
            m.requests
                .iter()
                .filter(|r| matches!(r, mathsvc::Message::WordCount(c) if c.words() > 1))
                .map(|_| "several words".to_owned()),
        );
        kinds
    });
    assert_reaches(
        &kinds,
        &[
            "Fibonacci",
            "Factorial",
            "WordCount",
            "Complete",
            "several words",
        ],
    );
}

#[test]
fn any_message_round_trips() {
    let kinds = run::<AnyMessage>(5, roundtrip, |m| vec![variant(m)]);
    assert_reaches(&kinds, &["Kv", "Chat", "Packet", "Mathsvc"]);
}

/// What the fuzz target does with its bytes: no input fails, whatever it makes.
#[test]
fn roundtrip_bytes_takes_any_bytes() {
    let mut rng = Rng(6);
    for _ in 0..BUFFERS {
        roundtrip_bytes(&rng.buffer());
    }
}

/// The generators' outputs are what the codecs call valid.
#[test]
fn generated_fields_are_valid() {
    let mut rng = Rng(7);
    for _ in 0..BUFFERS {
        let buffer = rng.buffer();
        let mut u = Unstructured::new(&buffer);
        if let Ok(kv::ClientMessage::Put { key, value }) = u.arbitrary() {
            assert!(kv::is_valid_key(&key), "{key:?}");
            assert!(kv::is_valid_value(&value), "{value:?}");
        }
        let mut u = Unstructured::new(&buffer);
        if let Ok(chat::Guess::Invalid(value)) = u.arbitrary() {
            let number = matches!(&value, serde_json::Value::Number(n) if !n.is_f64());
            let digits = matches!(&value, serde_json::Value::String(s)
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
            assert!(!number && !digits, "{value:?} is a valid guess");
        }
    }
}
