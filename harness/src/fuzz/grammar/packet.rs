//! The binary packet protocol's grading server (`specs/packet-and-mathsvc.md`, Task 1),
//! where it meets arbitrary bytes: the client's header packet. Cases send it whole, in two
//! writes, with one field wrong (each an error the spec answers with an error packet), or
//! with its bytes mutated; the server's encrypted stream is checked by its shape (packets up
//! to one with flag 1, for the client's student id), since its key and text are the
//! server's own. The decrypted reply is not fuzzed.

use super::Grammar;
use crate::fuzz::case::{Action, Case, Conn, HAPPY, Part, SpecRule};
use crate::fuzz::rng::Rng;
use crate::scenario::yaml_quote;
use reference_impl::packet::codec::{FLAG_LAST, HEADER_LEN, Header, Packet, Pairing};

pub struct PacketServer;

/// The student id of every case (8 digits, as the spec asks).
const SID: i32 = 20_200_000;

const SUITE: &str = "\
# Findings of `harness fuzz --protocol packet`. Replay: harness run <this folder> --target ...
protocol: packet
title: packet findings of harness fuzz
timeout: 3s
";

/// A header packet with these fields, its checksum computed (big-endian pairing).
fn header(flag: u16, keyword: &[u8; 4], sid: i32, data: &[u8]) -> Vec<u8> {
    Packet::new(flag, *keyword, sid, data.to_vec())
        .with_checksum(Pairing::BigEndian)
        .to_bytes(Pairing::BigEndian)
}

/// The client's first packet, right or wrong in one field.
fn first_packet(rng: &mut Rng) -> (&'static str, Vec<u8>, Option<SpecRule>) {
    let error = Some(SpecRule::ErrorPacket);
    match rng.below(10) {
        0 => {
            let mut p = header(1, b"test", SID, b"");
            p[2] ^= 0x5a;
            ("header:bad-checksum", p, error)
        }
        1 => ("header:bad-length", header(1, b"test", SID, b"x"), error),
        2 => ("header:bad-sid", header(1, b"test", 1234, b""), error),
        3 => ("header:bad-keyword", header(1, b"TEST", SID, b""), error),
        4 => ("header:bad-flag", header(0, b"test", SID, b""), error),
        5 => {
            let p = Packet::new(1, *b"test", SID, Vec::new())
                .with_checksum(Pairing::LittleEndian)
                .to_bytes(Pairing::LittleEndian);
            ("header:little-endian-checksum", p, None)
        }
        _ => ("header", header(1, b"test", SID, b""), None),
    }
}

impl Grammar for PacketServer {
    fn name(&self) -> &'static str {
        "packet"
    }

    fn suite_yaml(&self) -> &'static str {
        SUITE
    }

    fn session(&self, rng: &mut Rng) -> Case {
        let (label, bytes, spec) = first_packet(rng);
        let mut actions = vec![Action::connect("C1")];
        if rng.chance(25) {
            // In two writes, cut anywhere (inside the header too).
            let at = rng.range(1, bytes.len() - 1);
            actions.push(Action::send(
                "C1",
                "header-part",
                vec![Part::Lit(bytes[..at].to_vec())],
            ));
            actions.push(
                Action::send("C1", label, vec![Part::Lit(bytes[at..].to_vec())]).with_spec_if(spec),
            );
        } else {
            actions.push(Action::send("C1", label, vec![Part::Lit(bytes)]).with_spec_if(spec));
        }
        if rng.chance(30) {
            // Something after the first packet: a second header, or a close.
            if rng.chance(50) {
                actions.push(Action::send(
                    "C1",
                    "second-header",
                    vec![Part::Lit(header(1, b"test", SID, b""))],
                ));
            } else {
                actions.push(Action::close("C1"));
            }
        }
        Case { actions }
    }

    /// A fresh client sends a right header packet and gets the stream.
    fn happy_flow(&self) -> Vec<Action> {
        vec![
            Action::connect(HAPPY),
            Action::send(
                HAPPY,
                "header",
                vec![Part::Lit(header(1, b"test", SID, b""))],
            ),
        ]
    }

    /// Error packets by their fields (their text is the server's); the stream by its
    /// shape, up to the packet with flag 1.
    fn expect_steps(&self, conn: Conn, frames: &[&[u8]]) -> Option<Vec<String>> {
        let mut steps = Vec::new();
        let mut streaming = false;
        for frame in frames {
            let Some(h) = Header::parse(frame).filter(|_| frame.len() >= HEADER_LEN) else {
                steps.push(format!(
                    "expect: {{ conn: {conn}, hex: {} }}",
                    yaml_quote(&hex::encode(frame))
                ));
                continue;
            };
            if is_error(&h) {
                steps.push(error_step(conn, &h));
                continue;
            }
            // Stream packets: one step takes them all, up to the last.
            if !streaming {
                steps.push(format!(
                    "expect: {{ conn: {conn}, packet: {{ flag: \"<any>\", keyword: \"<any>\", sid: \"{}\", data: \"<any>\" }}, until: {{ flag: {FLAG_LAST} }} }}",
                    h.sid
                ));
            }
            streaming = h.flag != FLAG_LAST;
        }
        Some(steps)
    }

    fn spec_step(&self, conn: Conn, rule: SpecRule, first: &[u8]) -> Option<String> {
        match (rule, Header::parse(first)) {
            (SpecRule::ErrorPacket, Some(h)) if is_error(&h) => Some(error_step(conn, &h)),
            _ => None,
        }
    }
}

/// An error packet: flag 1, an upper-case code as the keyword, student id 0.
fn is_error(h: &Header) -> bool {
    h.flag == FLAG_LAST && h.sid == 0 && h.keyword.iter().all(u8::is_ascii_uppercase)
}

fn error_step(conn: Conn, h: &Header) -> String {
    format!(
        "expect: {{ conn: {conn}, packet: {{ flag: {}, keyword: {}, sid: \"0\", data: \"<any>\" }} }}",
        h.flag,
        yaml_quote(&String::from_utf8_lossy(&h.keyword))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::packet::codec::checksum;

    #[test]
    fn headers_carry_a_right_checksum() {
        let p = header(1, b"test", SID, b"");
        let h = Header::parse(&p).expect("a whole header");
        let mut zeroed = p.clone();
        zeroed[2] = 0;
        zeroed[3] = 0;
        assert_eq!(h.checksum, checksum(&zeroed, Pairing::BigEndian));
        assert_eq!(h.length, 16);
    }
}
