//! `arbitrary::Arbitrary` for the codecs' message types (the `arbitrary` feature), for the
//! structure-aware round-trip fuzzing of `fuzzing::roundtrip`.
//!
//! Most message types derive it (`#[cfg_attr(feature = "arbitrary", derive(...))]` next to
//! their definitions). A derive makes any value of a field's type, so fields whose type
//! allows more than the protocol does get a generator here (`#[arbitrary(with = ...)]`), and
//! two types get a hand-written impl. Everything generated encodes to bytes that decode back
//! to it, which is what the round trips check:
//!
//! ```text
//! kv      key                    non-empty ASCII without "\n"        (kv_key)
//!         id, value              ASCII without "\n", may be empty    (kv_value)
//! chat    Guess                  a number, or JSON that is neither an integer nor a
//!                                string of digits (hand-written: serde_json's Value has
//!                                no Arbitrary; floats that print and parse exactly)
//!         DataHello id           non-empty, no space, no line end    (transfer_id)
//!         DataReply reason       no line end                         (data_reason)
//!         a header's wire name   what HeaderMap::rename accepts      (header_name)
//! packet  data                   at most MAX_DATA bytes              (packet_data)
//! mathsvc FIBONACCI n            at most MAX_FIBONACCI_N             (fibonacci_n)
//!         FACTORIAL n            at most MAX_FACTORIAL_N             (factorial_n)
//!         WordCounter            the count of some text (hand-written: its counts must
//!                                agree with each other)
//!         the client's name      non-empty, no blanks at the ends, no "\n", at most
//!                                MAX_TOKEN bytes                     (mathsvc_name)
//! ```

use arbitrary::{Arbitrary, Result, Unstructured};
use serde_json::{Map, Value};

use crate::chat::codec::{Guess, MAX_HEADER_NAME};
use crate::mathsvc::codec::{MAX_FACTORIAL_N, MAX_FIBONACCI_N, MAX_TOKEN, WordCounter};
use crate::packet::codec::MAX_DATA;

// ---------------------------------------------------------------------------------------
// kv

/// A byte as an ASCII character other than `\n` (which becomes a space).
fn ascii_not_lf(byte: u8) -> char {
    match byte & 0x7f {
        b'\n' => ' ',
        b => char::from(b),
    }
}

/// ASCII without `\n`, possibly empty: a value, or a `CONNECT` id.
pub(crate) fn kv_value(u: &mut Unstructured<'_>) -> Result<String> {
    let bytes: &[u8] = u.arbitrary()?;
    Ok(bytes.iter().copied().map(ascii_not_lf).collect())
}

/// Non-empty ASCII without `\n`: a key.
pub(crate) fn kv_key(u: &mut Unstructured<'_>) -> Result<String> {
    let mut key = kv_value(u)?;
    if key.is_empty() {
        key.push(ascii_not_lf(u.arbitrary()?));
    }
    Ok(key)
}

// ---------------------------------------------------------------------------------------
// chat

/// Any string without the characters `not`, non-empty if `non_empty` (`_` if it came out
/// empty).
fn string_without(u: &mut Unstructured<'_>, not: &[char], non_empty: bool) -> Result<String> {
    let text: &str = u.arbitrary()?;
    let mut text: String = text.chars().filter(|c| !not.contains(c)).collect();
    if non_empty && text.is_empty() {
        text.push('_');
    }
    Ok(text)
}

/// The transfer id of a data-channel hello: non-empty, no space (the id ends at one), no
/// line end.
pub(crate) fn transfer_id(u: &mut Unstructured<'_>) -> Result<String> {
    string_without(u, &[' ', '\r', '\n'], true)
}

/// The reason of a data-channel `ERROR`: no line end (the encoder turns them into spaces).
pub(crate) fn data_reason(u: &mut Unstructured<'_>) -> Result<String> {
    string_without(u, &['\r', '\n'], false)
}

/// A name `HeaderMap::rename` accepts: 1 to `MAX_HEADER_NAME` printable ASCII characters,
/// no `{`, single spaces only inside. Mostly capitals, underscores and spaces, the way real
/// header names look, so that names that share a prefix or a word are frequent.
pub(crate) fn header_name(u: &mut Unstructured<'_>) -> Result<String> {
    const COMMON: &[u8] = b"AB_ LOGIN_REQ";
    let len = u.int_in_range(1..=MAX_HEADER_NAME)?;
    let mut name = String::with_capacity(len);
    for _ in 0..len {
        let byte: u8 = u.arbitrary()?;
        let c = if byte < 0xc0 {
            COMMON[usize::from(byte) % COMMON.len()]
        } else {
            // Any printable character but `{`.
            match b' ' + byte % 95 {
                b'{' => b'}',
                b => b,
            }
        };
        if !(c == b' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(char::from(c));
        }
    }
    let name = name.trim_end();
    Ok(if name.is_empty() { "X" } else { name }.to_owned())
}

impl<'a> Arbitrary<'a> for Guess {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        if u.arbitrary()? {
            return Ok(Guess::Number(u.arbitrary()?));
        }
        // `Invalid` never holds what decodes as a number: an integer, a digit string.
        Ok(Guess::Invalid(match json_value(u, 3)? {
            Value::Number(n) if !n.is_f64() => Value::Bool(n.as_u64().is_some()),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                Value::String(format!("+{s}"))
            }
            other => other,
        }))
    }
}

/// Any JSON value nested at most `depth` deep. Floats are eighths (`-4096.0` to
/// `4095.875`): serde_json parses them back exactly even without its `float_roundtrip`
/// feature, which the crate does not enable.
fn json_value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let kinds = if depth == 0 { 6 } else { 8 };
    Ok(match u.choose_index(kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => Value::from(f64::from(u.arbitrary::<i16>()?) / 8.0),
        5 => Value::String(u.arbitrary()?),
        6 => {
            let len = u.int_in_range(0..=4)?;
            Value::Array(
                (0..len)
                    .map(|_| json_value(u, depth - 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ => {
            let len = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..len {
                map.insert(u.arbitrary()?, json_value(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

// ---------------------------------------------------------------------------------------
// packet

/// A packet's data: at most `MAX_DATA` bytes, so that the packet is within the protocol's
/// limit.
pub(crate) fn packet_data(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let data: &[u8] = u.arbitrary()?;
    Ok(data[..data.len().min(MAX_DATA)].to_vec())
}

// ---------------------------------------------------------------------------------------
// mathsvc

/// A `FIBONACCI` `n` within the default limit.
pub(crate) fn fibonacci_n(u: &mut Unstructured<'_>) -> Result<u64> {
    u.int_in_range(0..=MAX_FIBONACCI_N)
}

/// A `FACTORIAL` `n` within the default limit.
pub(crate) fn factorial_n(u: &mut Unstructured<'_>) -> Result<u64> {
    u.int_in_range(0..=MAX_FACTORIAL_N)
}

/// A client's name as the decoder gives it: non-empty, no ASCII whitespace at the ends
/// (the decoder trims a token), no `\n`, at most `MAX_TOKEN` bytes.
pub(crate) fn mathsvc_name(u: &mut Unstructured<'_>) -> Result<String> {
    let text: &str = u.arbitrary()?;
    let mut name = String::new();
    for c in text.chars().filter(|&c| c != '\n') {
        if name.len() + c.len_utf8() > MAX_TOKEN {
            break;
        }
        name.push(c);
    }
    let name = name.trim_ascii();
    Ok(if name.is_empty() { "c" } else { name }.to_owned())
}

impl<'a> Arbitrary<'a> for WordCounter {
    /// The count of some text. Its fields must agree (the words and spaces of `bytes` bytes,
    /// ending inside a word or not), so it is made by counting a text, in which one byte in
    /// eight or so is a blank.
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        const BLANKS: [u8; 6] = [b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r'];
        let bytes: &[u8] = u.arbitrary()?;
        let text: Vec<u8> = bytes
            .iter()
            .map(|&b| match b {
                0..0x20 => BLANKS[usize::from(b) % BLANKS.len()],
                b => b,
            })
            .collect();
        let mut counter = WordCounter::default();
        counter.feed(&text);
        Ok(counter)
    }
}
