//! The TLS key-value store (`specs/kv-tls.md`): logins (`CONNECT id`, then the raw
//! PBKDF2 hash), `PUT` with its value line, `GET`, `DELETE`, `DISCONNECT`, closes, and
//! junk, which the spec answers by dropping the connection.

use super::Grammar;
use crate::fuzz::case::{Action, Case, Conn, HAPPY, Part, SpecRule};
use crate::fuzz::rng::Rng;

pub struct Kv;

const KEYS: &[&str] = &["colour", "k", "key2"];

const SUITE: &str = "\
# Findings of `harness fuzz --protocol kv`. Replay: harness run <this folder> --target ...
protocol: kv
title: KV findings of harness fuzz
timeout: 2s
vars:
  password: secret
  wrong_password: not-the-secret
";

/// The client id of a connection: `u{{uniq}}` or `v{{uniq}}`.
fn id(second: bool) -> Part {
    Part::Tpl(if second { "v{{uniq}}" } else { "u{{uniq}}" })
}

fn login(conn: Conn, second_id: bool, rng: &mut Rng) -> Vec<Action> {
    let hash = if rng.chance(5) {
        Part::Tpl("{{pbkdf2(wrong_password)}}")
    } else {
        Part::Tpl("{{pbkdf2(password)}}")
    };
    let connect = vec![Part::text("CONNECT "), id(second_id), Part::text("\n")];
    if rng.chance(25) {
        // Both in one write: the server must cut the line from the hash itself.
        let mut parts = connect;
        parts.push(hash);
        vec![Action::send(conn, "CONNECT+hash", parts)]
    } else {
        vec![
            Action::send(conn, "CONNECT", connect),
            Action::send(conn, "hash", vec![hash]),
        ]
    }
}

fn value(rng: &mut Rng) -> String {
    match rng.below(9) {
        0 => "blue".into(),
        1 => "two words".into(),
        2 => " leading and trailing ".into(),
        3 => String::new(),
        4 => "a=b;c:d,e".into(),
        5 => {
            // Around the lengths careless servers cut at.
            let n = *rng.pick(&[999, 1_000, 1_001, 1_500, 4_000, 4_091, 4_092]);
            let mut v = "v".repeat(n);
            if rng.chance(50) {
                v.replace_range(n / 2..n / 2 + 1, " ");
            }
            v
        }
        6 => "GET colour".into(),
        7 => "0".into(),
        _ => format!("value {}", rng.below(1000)),
    }
}

/// A message the spec answers by dropping the connection, whatever the state.
fn junk(conn: Conn, rng: &mut Rng) -> Action {
    let (label, bytes): (&str, Vec<u8>) = match rng.below(5) {
        0 => ("junk:unknown-command", b"FOO bar\n".to_vec()),
        1 => ("junk:lowercase", b"get colour\n".to_vec()),
        2 => ("junk:non-ascii", "GET caf\u{e9}\n".as_bytes().to_vec()),
        3 => {
            let mut line = b"PUT ".to_vec();
            line.extend(std::iter::repeat_n(b'x', 4_200));
            line.push(b'\n');
            ("junk:too-long", line)
        }
        _ => ("junk:empty-command", b"PUTT k\n".to_vec()),
    };
    Action::send(conn, label, vec![Part::Lit(bytes)]).with_spec(SpecRule::Drop)
}

fn request(conn: Conn, rng: &mut Rng) -> Action {
    let key = *rng.pick(KEYS);
    match rng.below(12) {
        0..=3 => {
            let v = value(rng);
            Action::send(conn, "PUT", vec![Part::text(&format!("PUT {key}\n{v}\n"))])
        }
        4..=6 => Action::send(conn, "GET", vec![Part::text(&format!("GET {key}\n"))]),
        7 | 8 => Action::send(conn, "DELETE", vec![Part::text(&format!("DELETE {key}\n"))]),
        9 => Action::send(conn, "DISCONNECT", vec![Part::text("DISCONNECT\n")]),
        10 => Action::close(conn),
        _ => junk(conn, rng),
    }
}

impl Grammar for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn suite_yaml(&self) -> &'static str {
        SUITE
    }

    fn session(&self, rng: &mut Rng) -> Case {
        let mut actions = Vec::new();
        let two = rng.chance(35);
        // The second connection sometimes takes the first one's id (one session per id).
        let same_id = rng.chance(30);
        actions.push(Action::connect("C1"));
        if !rng.chance(5) {
            actions.extend(login("C1", false, rng));
        }
        if two {
            actions.push(Action::connect("C2"));
            actions.extend(login("C2", !same_id, rng));
        }
        for _ in 0..rng.range(1, 6) {
            let conn = if two && rng.chance(40) { "C2" } else { "C1" };
            actions.push(request(conn, rng));
        }
        Case { actions }
    }

    /// A client logs in with the first connection's id, stores and reads a value: the
    /// server still serves, and the id's session was kept or destroyed as the spec says.
    fn happy_flow(&self) -> Vec<Action> {
        vec![
            Action::connect(HAPPY),
            Action::send(
                HAPPY,
                "CONNECT",
                vec![Part::text("CONNECT "), id(false), Part::text("\n")],
            ),
            Action::send(HAPPY, "hash", vec![Part::Tpl("{{pbkdf2(password)}}")]),
            Action::send(HAPPY, "GET", vec![Part::text("GET colour\n")]),
            Action::send(HAPPY, "PUT", vec![Part::text("PUT happy\nflow\n")]),
            Action::send(HAPPY, "GET", vec![Part::text("GET happy\n")]),
        ]
    }
}
