//! A case and what the reference did with it, written as a scenario file: the case's
//! actions as `send`/`connect`/`close` steps, each followed by what the reference sent
//! back as expectations (or, for messages the spec answers the same way in every state,
//! the spec's requirement). The file is what the fuzzer runs against the target, and what
//! it keeps as a finding, so a finding replays with `harness run` exactly as it was found.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::case::{Action, Conn, Op, Part, SpecRule, received_template, template_text};
use super::grammar::{Expectation, Grammar};
use super::observe::{Event, Observation};
use crate::scenario::yaml_quote;

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

/// Writes the scenario `id` for `actions` and what the reference did with them
/// (`observed`, recorded with `uniq`).
pub fn build(
    grammar: &dyn Grammar,
    id: &str,
    title: &str,
    meta: &Meta,
    actions: &[Action],
    observed: &Observation,
    uniq: &str,
) -> Built {
    let symbols = symbols(observed, uniq);
    let seen = &observed.seen;
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
            Op::Send(parts) => step(&mut yaml, send_step(conn, parts), origin),
            Op::Close => step(&mut yaml, format!("close: {conn}"), origin),
        }
        let mut events: Vec<&(Conn, Event)> = seen.events.iter().collect();
        if let Some(rule) = action.spec
            && let Some(text) = spec_expectation(grammar, rule, conn, &events)
        {
            let spec = Origin {
                spec: true,
                ..origin
            };
            step(&mut yaml, text, spec);
            // The rule stands for the acting connection's first event.
            if let Some(at) = events.iter().position(|(c, _)| *c == conn) {
                events.remove(at);
            }
        }
        let mut conns: Vec<Conn> = Vec::new();
        for (c, _) in &events {
            if !conns.contains(c) {
                conns.push(c);
            }
        }
        for c in conns {
            let frames: Vec<&[u8]> = events
                .iter()
                .filter_map(|(ec, e)| match e {
                    Event::Message(m) if *ec == c => Some(m.as_slice()),
                    _ => None,
                })
                .collect();
            let texts = grammar.expect_steps(c, &frames).unwrap_or_else(|| {
                frames
                    .iter()
                    .map(|bytes| {
                        let received = String::from_utf8_lossy(bytes);
                        match grammar.expectation(&received) {
                            Some(Expectation::Re(re)) => {
                                format!("expect: {{ conn: {c}, re: {} }}", yaml_quote(&re))
                            }
                            Some(Expectation::Text(text)) => {
                                format!("expect: {{ conn: {c}, text: {} }}", yaml_quote(&text))
                            }
                            None => format!(
                                "expect: {{ conn: {c}, text: {} }}",
                                yaml_quote(&received_template(bytes, &symbols))
                            ),
                        }
                    })
                    .collect()
            });
            for text in texts {
                step(&mut yaml, text, origin);
            }
            if events.iter().any(|(ec, e)| *ec == c && *e == Event::Closed) {
                step(&mut yaml, format!("expect_close: {c}"), origin);
            }
        }
    }
    Built { yaml, origins }
}

/// The step checking `rule` for the action on `conn`, if the reference's first event there
/// meets the rule: where it does not, the case put the server in a state the rule does not
/// cover (a junk line that arrives as a `PUT`'s value is a value), and the reference's
/// answer is expected instead.
fn spec_expectation(
    grammar: &dyn Grammar,
    rule: SpecRule,
    conn: Conn,
    events: &[&(Conn, Event)],
) -> Option<String> {
    let first = events.iter().find(|(c, _)| *c == conn).map(|(_, e)| e)?;
    match (rule, first) {
        (SpecRule::Drop, Event::Closed) => Some(format!("expect_close: {conn}")),
        (SpecRule::Header(h), Event::Message(m))
            if m.strip_prefix(h.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(b" ")) =>
        {
            let re = format!("^{h}( .*)?$");
            Some(format!(
                "expect: {{ conn: {conn}, re: {} }}",
                yaml_quote(&re)
            ))
        }
        (SpecRule::ErrorPacket, Event::Message(m)) => grammar.spec_step(conn, rule, m),
        _ => None,
    }
}

/// Run-specific values in what the reference sent, and the expressions that give them on
/// any run: `uniq`, and the UUID of each connection's address (the math service's).
fn symbols(observed: &Observation, uniq: &str) -> Vec<(Vec<u8>, String)> {
    let mut symbols = vec![(uniq.as_bytes().to_vec(), "{{uniq}}".to_owned())];
    for (conn, local) in &observed.locals {
        let uuid = uuid::Uuid::new_v3(&uuid::Uuid::NAMESPACE_URL, local.as_bytes());
        symbols.push((
            uuid.to_string().into_bytes(),
            format!("{{{{uuid3(local_addr_{conn})}}}}"),
        ));
    }
    symbols
}

/// Longest binary message written as `hex:` (longer ones compress runs with `repeat`).
const MAX_HEX: usize = 512;

/// A send step: `hex:` for a short binary message, else `bytes:` as a template.
fn send_step(conn: Conn, parts: &[Part]) -> String {
    if let [Part::Lit(b)] = parts
        && b.len() <= MAX_HEX
        && b.iter()
            .filter(|&&c| !(c.is_ascii_graphic() || matches!(c, b' ' | b'\n' | b'\r' | b'\t')))
            .count()
            * 4
            > b.len()
    {
        let hex: Vec<String> = b.chunks(2).map(hex::encode).collect();
        return format!(
            "send: {{ conn: {conn}, hex: {} }}",
            yaml_quote(&hex.join(" "))
        );
    }
    format!(
        "send: {{ conn: {conn}, bytes: {} }}",
        yaml_quote(&template_text(parts))
    )
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
