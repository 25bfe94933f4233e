//! What the fuzzer knows of each protocol: how to build valid sessions from the protocol's
//! messages, which messages the spec answers the same way in every state, the happy flow
//! that shows the target still serves a fresh client, and how to write what it received as
//! an expectation.
//!
//! Mutation is shared: one message of a case is changed at the byte level (bits flipped,
//! bytes the protocols treat specially put in, ranges cut or repeated, lines stretched past
//! the limits), leaving template parts (ids, password hashes) whole.

use super::case::{Action, Case, Conn, Op, Part, SpecRule};
use super::rng::Rng;

mod chat;
mod kv;
mod mathsvc;
mod packet;

/// A protocol as the fuzzer sees it.
pub trait Grammar: Sync {
    /// The protocol's name, as `--protocol` takes it.
    fn name(&self) -> &'static str;
    /// The `suite.yaml` of the folder findings are written to.
    fn suite_yaml(&self) -> &'static str;
    /// How long the reference may take to answer a message: a short wait for protocols
    /// where many messages get no answer, longer where every message gets one.
    fn reply_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(8)
    }
    /// A valid session (before mutation).
    fn session(&self, rng: &mut Rng) -> Case;
    /// What follows every case: close what is open, then a fresh client's happy flow.
    fn happy_flow(&self) -> Vec<Action>;
    /// How to expect a message the reference sent, where the spec leaves its text to the
    /// server (chat's welcome message, the math service's error texts); `None` expects it as
    /// received.
    fn expectation(&self, _received: &str) -> Option<Expectation> {
        None
    }
    /// The steps (YAML, without the list dash) expecting `frames`, what the reference sent
    /// on `conn` after one action; `None` expects each as received.
    fn expect_steps(&self, _conn: Conn, _frames: &[&[u8]]) -> Option<Vec<String>> {
        None
    }
    /// The step checking a rule the protocol itself defines (an error packet), when `first`
    /// (the reference's first message after the action) meets it.
    fn spec_step(&self, _conn: Conn, _rule: SpecRule, _first: &[u8]) -> Option<String> {
        None
    }
}

/// An expected message the spec leaves partly open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Template text (with `<string>` placeholders in JSON bodies).
    Text(String),
    /// A regular expression the message must match.
    Re(String),
}

/// The grammars `harness fuzz` knows.
pub const GRAMMARS: &[&dyn Grammar] = &[
    &kv::Kv,
    &chat::Chat,
    &packet::PacketServer,
    &mathsvc::MathService,
];

/// The grammar of a protocol, if the fuzzer speaks it.
pub fn find(name: &str) -> Option<&'static dyn Grammar> {
    GRAMMARS.iter().copied().find(|g| g.name() == name)
}

/// Names of the protocols the fuzzer speaks.
pub fn names() -> Vec<&'static str> {
    GRAMMARS.iter().map(|g| g.name()).collect()
}

/// How many in a hundred cases have one message mutated.
const MUTATED_PERCENT: usize = 50;

/// Case `index` of a run with `seed`: a session from the grammar, one message mutated in
/// about half of them. The same seed and index always give the same case.
pub fn generate(grammar: &dyn Grammar, seed: u64, index: u64) -> Case {
    let mut rng = Rng::for_case(seed, index);
    let mut case = grammar.session(&mut rng);
    if rng.chance(MUTATED_PERCENT) {
        mutate(&mut case, &mut rng);
    }
    case
}

/// Bytes the course protocols treat specially, or that careless parsers mishandle.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x80",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\t",
    "é".as_bytes(),
    "€".as_bytes(),
    b"\"",
    b"{",
    b"}",
    b"\\",
    b":",
];

/// Changes one message of `case` in one way and says how in its label.
pub fn mutate(case: &mut Case, rng: &mut Rng) {
    let sends: Vec<usize> = (0..case.actions.len())
        .filter(|&i| case.actions[i].literal_len() > 0)
        .collect();
    if sends.is_empty() {
        return;
    }
    let action = &mut case.actions[*rng.pick(&sends)];
    let Op::Send(parts) = &mut action.op else {
        return;
    };
    let lits: Vec<usize> = (0..parts.len())
        .filter(|&i| matches!(&parts[i], Part::Lit(b) if !b.is_empty()))
        .collect();
    let Part::Lit(bytes) = &mut parts[*rng.pick(&lits)] else {
        return;
    };
    let how = mutate_bytes(bytes, rng);
    action.label = format!("{}+{how}", action.label);
    // What the spec requires of the changed message is not known any more.
    action.spec = None;
}

/// Changes `bytes` (not empty) in one way; returns the way's name.
fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) -> &'static str {
    let at = rng.below(bytes.len());
    match rng.below(7) {
        0 => {
            bytes[at] ^= 1 << rng.below(8);
            "bit-flip"
        }
        1 => {
            let with = rng.pick(INTERESTING);
            bytes.splice(at..=at, with.iter().copied());
            "replaced-byte"
        }
        2 => {
            let with = rng.pick(INTERESTING);
            bytes.splice(at..at, with.iter().copied());
            "inserted-byte"
        }
        3 => {
            let end = rng.range(at + 1, bytes.len());
            bytes.drain(at..end);
            "cut"
        }
        4 => {
            let end = rng.range(at + 1, bytes.len());
            let copy = bytes[at..end].to_vec();
            bytes.splice(end..end, copy);
            "repeated"
        }
        5 => {
            // Past the usual limits (1,024 for chat, 4,096 for KV) or just under them.
            let n = *rng.pick(&[1_000, 1_023, 1_024, 1_500, 4_095, 4_096, 5_000]);
            let fill = if rng.chance(50) { b'A' } else { b' ' };
            bytes.splice(at..at, std::iter::repeat_n(fill, n));
            "stretched"
        }
        _ => {
            bytes.truncate(at.max(1));
            "truncated"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzzer speaks every protocol but those of the RSA key exchange (kv-rsa), which
    /// `harness fuzz` declines with a setup error.
    #[test]
    fn every_protocol_has_a_grammar_but_the_rsa_ones() {
        for protocol in crate::protocol::PROTOCOLS {
            let rsa = protocol.transport == crate::protocol::TransportKind::Rsa;
            assert_eq!(find(protocol.name).is_some(), !rsa, "{}", protocol.name);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_cases() {
        for grammar in GRAMMARS {
            for index in 0..50 {
                assert_eq!(
                    generate(*grammar, 9, index),
                    generate(*grammar, 9, index),
                    "{} case {index}",
                    grammar.name()
                );
            }
            let a: Vec<Case> = (0..20).map(|i| generate(*grammar, 1, i)).collect();
            let b: Vec<Case> = (0..20).map(|i| generate(*grammar, 2, i)).collect();
            assert_ne!(a, b, "{}: another seed, other cases", grammar.name());
        }
    }

    #[test]
    fn mutation_changes_one_message_and_says_how() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let original = kv::Kv.session(&mut rng);
            let mut case = original.clone();
            mutate(&mut case, &mut rng);
            let changed: Vec<usize> = (0..case.actions.len())
                .filter(|&i| case.actions[i] != original.actions[i])
                .collect();
            assert!(changed.len() <= 1, "seed {seed}: {changed:?}");
            for i in changed {
                assert!(case.actions[i].label.contains('+'));
                assert_eq!(case.actions[i].spec, None);
            }
        }
    }
}
