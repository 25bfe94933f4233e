//! A case and what the reference did with it, written as a scenario file: the case's
//! actions as `send`/`connect`/`close` steps, each followed by what the reference sent
//! back as expectations (or, for messages the spec answers the same way in every state,
//! the spec's requirement). The file is what the fuzzer runs against the target, and what
//! it keeps as a finding, so a finding replays with `harness run` exactly as it was found.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::case::{Action, Conn, Op, SpecRule, received_template, template_text, yaml_quote};
use super::grammar::Grammar;
use super::observe::{Event, Seen};

/// Which part of a case a scenario step comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the action in the case and happy flow together.
    pub action: usize,
    /// The step checks the spec's requirement for the action's message.
    pub spec: bool,
}

/// A scenario's text, and the origin of each of its steps.
#[derive(Debug, Clone)]
pub struct Built {
    pub yaml: String,
    pub origins: Vec<Origin>,
}

/// Facts about a case kept in the scenario's `meta:`.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub entries: Vec<(&'static str, String)>,
}

/// Writes the scenario `id` for `actions` and what the reference did with them (`seen`,
/// recorded with `uniq`).
pub fn build(
    grammar: &dyn Grammar,
    id: &str,
    title: &str,
    meta: &Meta,
    actions: &[Action],
    seen: &[Seen],
    uniq: &str,
) -> Built {
    let mut yaml = String::new();
    let _ = writeln!(yaml, "id: {id}");
    let _ = writeln!(yaml, "title: {}", yaml_quote(title));
    let _ = writeln!(yaml, "tags: [fuzz]");
    if !meta.entries.is_empty() {
        let _ = writeln!(yaml, "meta:");
        for (k, v) in &meta.entries {
            let _ = writeln!(yaml, "  {k}: {}", yaml_quote(v));
        }
    }
    let _ = writeln!(yaml, "steps:");
    let mut origins = Vec::new();
    let mut step = |yaml: &mut String, text: String, origin: Origin| {
        let _ = writeln!(yaml, "  - {text}");
        origins.push(origin);
    };
    for (index, (action, seen)) in actions.iter().zip(seen).enumerate() {
        if !seen.ran {
            continue;
        }
        let origin = Origin {
            action: index,
            spec: false,
        };
        let conn = action.conn;
        match &action.op {
            Op::Connect => step(&mut yaml, format!("connect: {conn}"), origin),
            Op::Send(parts) => step(
                &mut yaml,
                format!(
                    "send: {{ conn: {conn}, bytes: {} }}",
                    yaml_quote(&template_text(parts))
                ),
                origin,
            ),
            Op::Close => step(&mut yaml, format!("close: {conn}"), origin),
        }
        let mut events: Vec<&(Conn, Event)> = seen.events.iter().collect();
        if let Some(rule) = action.spec.filter(|r| agrees(*r, conn, &events)) {
            let spec = Origin {
                spec: true,
                ..origin
            };
            match rule {
                SpecRule::Drop => {
                    step(&mut yaml, format!("expect_close: {conn}"), spec);
                }
                SpecRule::Header(h) => {
                    let re = format!("^{h}( .*)?$");
                    step(
                        &mut yaml,
                        format!("expect: {{ conn: {conn}, re: {} }}", yaml_quote(&re)),
                        spec,
                    );
                }
            }
            // The rule stands for the acting connection's first event.
            if let Some(at) = events.iter().position(|(c, _)| *c == conn) {
                events.remove(at);
            }
        }
        for (c, event) in events {
            let text = match event {
                Event::Message(bytes) => {
                    let received = String::from_utf8_lossy(bytes);
                    let expected = grammar
                        .expectation(&received)
                        .unwrap_or_else(|| received_template(bytes, uniq));
                    format!("expect: {{ conn: {c}, text: {} }}", yaml_quote(&expected))
                }
                Event::Closed => format!("expect_close: {c}"),
            };
            step(&mut yaml, text, origin);
        }
    }
    Built { yaml, origins }
}

/// Whether the reference's first event on `conn` is what the rule requires: where it is
/// not, the case put the server in a state the rule does not cover (a junk line that
/// arrives as a `PUT`'s value is a value), and the reference's answer is expected instead.
fn agrees(rule: SpecRule, conn: Conn, events: &[&(Conn, Event)]) -> bool {
    let first = events.iter().find(|(c, _)| *c == conn).map(|(_, e)| e);
    match (rule, first) {
        (SpecRule::Drop, Some(Event::Closed)) => true,
        (SpecRule::Header(h), Some(Event::Message(m))) => m
            .strip_prefix(h.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b" ")),
        _ => false,
    }
}

/// Closes every connection the case opened that is still open, so the happy flow starts
/// with the case's sessions ended the way a client's end would end them.
pub fn closing(actions: &[Action]) -> Vec<Action> {
    let mut opened: BTreeMap<Conn, bool> = BTreeMap::new();
    for a in actions {
        match a.op {
            Op::Close => {
                opened.insert(a.conn, false);
            }
            _ => {
                opened.entry(a.conn).or_insert(true);
            }
        }
    }
    opened
        .into_iter()
        .filter(|(_, open)| *open)
        .map(|(c, _)| Action::close(c))
        .collect()
}
