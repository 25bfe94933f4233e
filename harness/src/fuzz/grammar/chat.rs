//! The chat protocol (`specs/chat.md`), levels 1 and 2: logins, broadcasts, private
//! messages, the user list, pongs without a ping, `BYE`, closes, and the malformed lines
//! the spec answers in every state (`UNKNOWN_COMMAND`, `PARSE_ERROR`). The game and file
//! transfers are left out: their timers and random numbers make replies differ between
//! correct servers.

use super::{Expectation, Grammar};
use crate::fuzz::case::{Action, Case, Conn, HAPPY, Part, SpecRule};
use crate::fuzz::rng::Rng;

pub struct Chat;

const SUITE: &str = "\
# Findings of `harness fuzz --protocol chat`. Replay: harness run <this folder> --target ...
protocol: chat
title: chat findings of harness fuzz
timeout: 2s
background:
  - on: PING
    reply: PONG
";

/// The username of a connection: `a{{uniq}}` for C1, `b{{uniq}}` for C2.
fn user(conn: Conn) -> &'static str {
    if conn == "C2" {
        "b{{uniq}}"
    } else {
        "a{{uniq}}"
    }
}

fn login(conn: Conn, rng: &mut Rng) -> Action {
    let (label, name): (&str, Vec<Part>) = match rng.below(14) {
        0 => ("LOGIN:too-short", vec![Part::text("ab")]),
        1 => ("LOGIN:too-long", vec![Part::text("abcdefghijklmno")]),
        2 => (
            "LOGIN:bad-character",
            vec![Part::text("a-"), Part::Tpl("{{uniq}}")],
        ),
        3 => (
            "LOGIN:non-ascii",
            vec![Part::text("\u{e9}"), Part::Tpl("{{uniq}}")],
        ),
        4 => ("LOGIN:empty", vec![]),
        _ => ("LOGIN", vec![Part::Tpl(user(conn))]),
    };
    let mut parts = vec![Part::text("LOGIN {\"username\":\"")];
    parts.extend(name);
    parts.push(Part::text("\"}\n"));
    Action::send(conn, label, parts)
}

fn message(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "hello".into(),
        1 => String::new(),
        2 => "with \\\"quotes\\\" and \\\\ backslash".into(),
        3 => "caf\u{e9} \u{1f600}".into(),
        4 => "m".repeat(*rng.pick(&[900, 1_000, 1_100])),
        _ => "two words".into(),
    }
}

fn malformed(conn: Conn, rng: &mut Rng) -> Action {
    match rng.below(4) {
        0 => Action::send(
            conn,
            "malformed:unknown-header",
            vec![Part::text("MSG hello there\n")],
        )
        .with_spec(SpecRule::Header("UNKNOWN_COMMAND")),
        1 => Action::send(
            conn,
            "malformed:lowercase-header",
            vec![Part::text("bye\n")],
        )
        .with_spec(SpecRule::Header("UNKNOWN_COMMAND")),
        2 => Action::send(
            conn,
            "malformed:body-not-json",
            vec![Part::text("BROADCAST_REQ {\"aaaa\"}\n")],
        )
        .with_spec(SpecRule::Header("PARSE_ERROR")),
        _ => Action::send(
            conn,
            "malformed:body-cut",
            vec![Part::text("LOGIN {\"username\":\n")],
        )
        .with_spec(SpecRule::Header("PARSE_ERROR")),
    }
}

fn request(conn: Conn, other: Conn, rng: &mut Rng) -> Action {
    match rng.below(11) {
        0..=2 => {
            let m = message(rng);
            Action::send(
                conn,
                "BROADCAST_REQ",
                vec![Part::text(&format!(
                    "BROADCAST_REQ {{\"message\":\"{m}\"}}\n"
                ))],
            )
        }
        3 | 4 => {
            let to = if rng.chance(70) {
                Part::Tpl(user(other))
            } else {
                Part::text("nobody_here")
            };
            let m = message(rng);
            Action::send(
                conn,
                "PRIVATE_MESSAGE_REQ",
                vec![
                    Part::text("PRIVATE_MESSAGE_REQ {\"receiver\":\""),
                    to,
                    Part::text(&format!("\",\"message\":\"{m}\"}}\n")),
                ],
            )
        }
        5 => Action::send(conn, "LIST_USERS_REQ", vec![Part::text("LIST_USERS_REQ\n")]),
        6 => Action::send(conn, "PONG", vec![Part::text("PONG\n")]),
        7 => Action::send(conn, "BYE", vec![Part::text("BYE\n")]),
        8 => Action::close(conn),
        9 => login(conn, rng),
        _ => malformed(conn, rng),
    }
}

impl Grammar for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn suite_yaml(&self) -> &'static str {
        SUITE
    }

    fn session(&self, rng: &mut Rng) -> Case {
        let mut actions = vec![Action::connect("C1")];
        let two = rng.chance(40);
        if !rng.chance(5) {
            actions.push(login("C1", rng));
        }
        if two {
            actions.push(Action::connect("C2"));
            actions.push(login("C2", rng));
        }
        for _ in 0..rng.range(1, 5) {
            let (conn, other) = if two && rng.chance(40) {
                ("C2", "C1")
            } else {
                ("C1", "C2")
            };
            actions.push(request(conn, other, rng));
        }
        Case { actions }
    }

    /// A fresh client logs in, broadcasts, and says goodbye.
    fn happy_flow(&self) -> Vec<Action> {
        vec![
            Action::connect(HAPPY),
            Action::send(
                HAPPY,
                "LOGIN",
                vec![
                    Part::text("LOGIN {\"username\":\"h"),
                    Part::Tpl("{{uniq}}"),
                    Part::text("\"}\n"),
                ],
            ),
            Action::send(
                HAPPY,
                "BROADCAST_REQ",
                vec![Part::text("BROADCAST_REQ {\"message\":\"still there?\"}\n")],
            ),
            Action::send(HAPPY, "BYE", vec![Part::text("BYE\n")]),
        ]
    }

    /// The welcome text is the server's to choose.
    fn expectation(&self, received: &str) -> Option<Expectation> {
        received
            .starts_with("WELCOME ")
            .then(|| Expectation::Text("WELCOME {\"msg\":\"<string>\"}".to_owned()))
    }
}
