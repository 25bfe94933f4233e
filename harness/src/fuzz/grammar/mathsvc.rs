//! The math service (`specs/packet-and-mathsvc.md`, Task 2): a name, then `FIBONACCI`,
//! `FACTORIAL`, `FILE`/`WORD_COUNT` (with the text's length) and `COMPLETE`, each line
//! ended by a line feed (the spec's other framing, a pause, costs a quarter second per
//! message). Answers carry the UUID of the client's address, written as `{{uuid3(...)}}`;
//! the wording of errors is the server's, so an error is expected as any `ERROR` line.

use std::time::Duration;

use super::{Expectation, Grammar};
use crate::fuzz::case::{Action, Case, Conn, HAPPY, Part};
use crate::fuzz::rng::Rng;

pub struct MathService;

const SUITE: &str = "\
# Findings of `harness fuzz --protocol mathsvc`. Replay: harness run <this folder> --target ...
protocol: mathsvc
title: math service findings of harness fuzz
timeout: 3s
# Answers have no line end: one ends when the server goes quiet.
quiet: 30ms
";

fn name(conn: Conn, rng: &mut Rng) -> Action {
    match rng.below(8) {
        0 => Action::send(conn, "name:empty", vec![Part::text("\n")]),
        1 => Action::send(
            conn,
            "name:long",
            vec![Part::text(&"n".repeat(1_100)), Part::text("\n")],
        ),
        2 => Action::send(
            conn,
            "name:non-ascii",
            vec![
                Part::text("\u{e9}l\u{e8}ve"),
                Part::Tpl("{{uniq}}"),
                Part::text("\n"),
            ],
        ),
        _ => Action::send(
            conn,
            "name",
            vec![
                Part::text("student"),
                Part::Tpl("{{uniq}}"),
                Part::text("\n"),
            ],
        ),
    }
}

fn number(rng: &mut Rng, big: u64) -> String {
    match rng.below(8) {
        0 => "-1".into(),
        1 => "seven".into(),
        2 => (big + 1).to_string(),
        3 => " 7".into(),
        4 => "18446744073709551616".into(),
        _ => rng
            .pick(&["0", "1", "2", "7", "20", "93", "94"])
            .to_string(),
    }
}

fn text(rng: &mut Rng) -> String {
    rng.pick(&[
        "hello world",
        "",
        "  leading and trailing  ",
        "one\ttab",
        "caf\u{e9} cr\u{e8}me",
        "a b c d e f g h",
    ])
    .to_string()
}

fn request(conn: Conn, rng: &mut Rng) -> Action {
    match rng.below(10) {
        0 | 1 => {
            let n = number(rng, 100_000);
            Action::send(
                conn,
                "FIBONACCI",
                vec![Part::text(&format!("FIBONACCI\n{n}\n"))],
            )
        }
        2 | 3 => {
            // Within the default limit and cheap: the limit itself costs a server seconds.
            let n = match rng.below(4) {
                0 => number(rng, 10_000),
                _ => rng
                    .pick(&["0", "1", "4", "20", "21", "170", "500"])
                    .to_string(),
            };
            Action::send(
                conn,
                "FACTORIAL",
                vec![Part::text(&format!("FACTORIAL\n{n}\n"))],
            )
        }
        4..=6 => {
            let header = *rng.pick(&["FILE", "WORD_COUNT"]);
            let t = text(rng);
            // The length the spec asks for, or one that is off.
            let len = match rng.below(5) {
                0 => t.len() + 1,
                1 => t.len().saturating_sub(1),
                _ => t.len(),
            };
            Action::send(
                conn,
                header,
                vec![Part::text(&format!("{header}\n{len}\n{t}\n"))],
            )
        }
        7 => Action::send(conn, "unknown", vec![Part::text("SQUARE_ROOT\n")]),
        8 => Action::send(conn, "COMPLETE", vec![Part::text("COMPLETE\n")]),
        _ => Action::close(conn),
    }
}

impl Grammar for MathService {
    fn name(&self) -> &'static str {
        "mathsvc"
    }

    fn suite_yaml(&self) -> &'static str {
        SUITE
    }

    /// Every message is answered (a token cut short by a line end or a pause, too).
    fn reply_wait(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn session(&self, rng: &mut Rng) -> Case {
        let mut actions = vec![Action::connect("C1"), name("C1", rng)];
        for _ in 0..rng.range(1, 4) {
            actions.push(request("C1", rng));
        }
        Case { actions }
    }

    /// A fresh client gives its name and asks for 4!.
    fn happy_flow(&self) -> Vec<Action> {
        vec![
            Action::connect(HAPPY),
            Action::send(
                HAPPY,
                "name",
                vec![Part::text("happy"), Part::Tpl("{{uniq}}"), Part::text("\n")],
            ),
            Action::send(HAPPY, "FACTORIAL", vec![Part::text("FACTORIAL\n4\n")]),
        ]
    }

    fn expectation(&self, received: &str) -> Option<Expectation> {
        (received == "ERROR" || received.starts_with("ERROR "))
            .then(|| Expectation::Re("^ERROR( .*)?$".to_owned()))
    }
}
