//! The `steps:` list of a scenario.
//!
//! ```text
//! - C -> S: text                      send a line on C       (step span: the text)
//! - S -> C: text | re:regex           expect on C            (step span: the text)
//! - send: text | {conn, text|bytes|hex|packet, split, pause, chunk, clear}
//!                                      (step span: `send`)
//! - S -> others: text                 expect on every open connection but the last sender
//! - expect: text | {conn, text|re|bytes|hex|packet, within, subset, at, tolerance, until,
//!                   joined}
//! - any_order: [expect steps]          the messages may arrive in any order
//! - expect_close: ~ | conn | {conn, within}
//! - expect_silence: duration | {conn, for}
//! - sleep: duration
//! - close: ~ | conn
//! - shutdown: ~ | conn                   half-close: FIN, then keep reading
//! - connect: ~ | conn | {conn, port, key}
//!                                      port: a number, or +N from the target's port
//! - bisect: {conn, var, low, high, send, found, higher, lower}
//!                                      find a hidden number by halving [low, high]
//!
//! - points: N                         a checkpoint: reaching it earns N points (partial
//!                                      credit; the scenario's total is the sum)
//!
//! In a suite with `role: server` (the harness plays the server, `harness serve`):
//! - S -> C: text                      send a line to the client on C
//! - C -> S: text | re:regex           expect from the client on C
//! - accept: ~ | conn | {conn, within} wait for the client's next connection
//! - expect_exit: ~ | code | {code, within}
//!                                      the client under test exits (with that code)
//! - expect_output: text | re:regex | {text|re, stream, within}
//!                                      a line the client printed (stdout, or stream: stderr)
//! ```
//!
//! On an `rsa` connection (`kv-rsa`) the transport exchanges keys when the connection opens
//! and encrypts every send (one send = one RSA block of at most 53 bytes; `split` offsets
//! then cut the 64-byte block), so steps are written in plaintext. Two options break that on
//! purpose:
//!
//! ```text
//! send: { ..., clear: true }          the bytes go out unencrypted (the password hash after
//!                                      CONNECT); also `clear: "{{hash_in_clear}}"`, a template
//!                                      that expands to `true` or `false` when the step runs.
//!                                      Other transports never encrypt: no effect there.
//! connect: { conn: C, key: none }     no key exchange at all: plain TCP, sends unencrypted
//! connect: { conn: C, key: "..." }    the expansion is sent (one write) as the client's
//!                                      public key, e.g. "{{rsa_key(1024)}}"; no exchange is
//!                                      awaited and sends go out unencrypted. `none` means no
//!                                      key; write "{{'none'}}" to send the word. `key` is for
//!                                      rsa protocols only (`harness check` says so).
//! ```
//!
//! `re:` may be followed by one space, but then YAML needs the message quoted
//! (`- S -> C: 're: \d+'`), since an unquoted `: ` starts a mapping; `re:\d+` needs no quotes.
//! A message that really starts with `re:` is written `- expect: { text: "re: ..." }`.
//!
//! A step that names a connection (by arrow, `conn:` or value) makes it the current one; a
//! step that names none uses the current one, which is `C` before any step names one.
//!
//! The span of an arrow step is its message, so that a runtime failure underlines what was
//! expected; other steps point at their key.

use std::time::Duration;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::{
    At, BackgroundRule, Bisect, Clear, ConnectKey, Expect, KeySpec, Matcher, PacketSpec, Payload,
    Role, Scenario, Send, Span, Step, StepKind, Template,
};
use super::parse::{Ctx, Fields};
use super::template;
use super::yaml::{Kind, Node};

/// The server's name in arrows.
const SERVER: &str = "S";
/// The connection of steps before any names one.
const DEFAULT_CONN: &str = "C";
/// Reserved for "every other open connection".
pub(crate) const OTHERS: &str = "others";
/// Tolerance of `at:` when the step gives none.
const DEFAULT_TOLERANCE: Duration = Duration::from_millis(100);

const STEP_KINDS: &[&str] = &[
    "send",
    "expect",
    "expect_close",
    "expect_silence",
    "sleep",
    "close",
    "shutdown",
    "connect",
    "any_order",
    "bisect",
    "accept",
    "expect_exit",
    "expect_output",
    "points",
];
const SEND_KEYS: &[&str] = &[
    "conn", "text", "bytes", "hex", "packet", "split", "pause", "chunk", "clear",
];
const SEND_PAYLOADS: &[&str] = &["text", "bytes", "hex", "packet"];
const EXPECT_KEYS: &[&str] = &[
    "conn",
    "text",
    "re",
    "bytes",
    "hex",
    "within",
    "subset",
    "at",
    "tolerance",
    "packet",
    "until",
    "joined",
];
const BACKGROUND_KEYS: &[&str] = &["on", "reply"];
const CONNECT_KEYS: &[&str] = &["conn", "port", "key"];
const BISECT_KEYS: &[&str] = &[
    "conn", "var", "low", "high", "send", "found", "higher", "lower",
];
const EXPECT_MATCHERS: &[&str] = &["text", "re", "bytes", "hex", "packet"];
const CLOSE_KEYS: &[&str] = &["conn", "within"];
const SILENCE_KEYS: &[&str] = &["conn", "for"];
const ACCEPT_KEYS: &[&str] = &["conn", "within"];
const EXIT_KEYS: &[&str] = &["code", "within"];
const OUTPUT_KEYS: &[&str] = &["text", "re", "stream", "within"];
/// Steps that only make sense when the harness plays the server.
const SERVER_STEPS: &[&str] = &["accept", "expect_exit", "expect_output"];

const STEP_HELP: &str = "a step is a mapping with one key: `C -> S: message`, \
                         `S -> C: message`, or one of `send`, `expect`, `expect_close`, \
                         `expect_silence`, `sleep`, `close`, `shutdown`, `connect`, `any_order`";

/// Parses the value of `steps:`; `key` is the `steps` key, for errors about the list.
pub(crate) fn steps(ctx: &mut Ctx, key: &Node, value: &Node) -> Vec<Step> {
    let Kind::Seq(items) = &value.kind else {
        let span = if value.is_null() {
            key.span
        } else {
            value.span
        };
        let d = ctx
            .error(
                span,
                format!("`steps` must be a list, found {}", value.describe()),
            )
            .with_help("write one step per line, each starting with `- `");
        ctx.push(d);
        return Vec::new();
    };
    if items.is_empty() {
        let d = ctx
            .error(key.span, "`steps` is empty")
            .with_help("a scenario needs at least one step");
        ctx.push(d);
    }
    let mut current = DEFAULT_CONN.to_owned();
    items
        .iter()
        .filter_map(|item| step(ctx, item, &mut current))
        .collect()
}

fn step(ctx: &mut Ctx, item: &Node, current: &mut String) -> Option<Step> {
    let entries = match &item.kind {
        Kind::Map(entries) if !entries.is_empty() => entries,
        _ => {
            let help = match item.scalar() {
                Some(s) if s.contains("->") && !s.contains(':') => {
                    "put `:` after the arrow: `- C -> S: message`".to_owned()
                }
                _ => STEP_HELP.to_owned(),
            };
            let d = ctx
                .error(
                    item.span,
                    format!("expected a step, found {}", item.describe()),
                )
                .with_help(help);
            ctx.push(d);
            return None;
        }
    };
    let (key, value) = &entries[0];
    let Some(name) = key.scalar() else {
        let d = ctx
            .error(
                key.span,
                format!("expected a step, found {}", key.describe()),
            )
            .with_help(STEP_HELP);
        ctx.push(d);
        return None;
    };
    if let Some((extra, _)) = entries.get(1) {
        extra_key(ctx, name, extra);
    }
    if name.contains("->") {
        return arrow(ctx, key, name, value, current);
    }
    if !role_allows(ctx, key, name) {
        return None;
    }
    let kind = match name {
        "send" => send(ctx, key, value, current),
        "expect" => expect(ctx, key, value, current),
        "expect_close" => expect_close(ctx, value, current),
        "expect_silence" => expect_silence(ctx, key, value, current),
        "sleep" => ctx.duration(value, "sleep").map(StepKind::Sleep),
        "close" => conn_or_current(ctx, value, current).map(|conn| StepKind::Close { conn }),
        "shutdown" => conn_or_current(ctx, value, current).map(|conn| StepKind::Shutdown { conn }),
        "connect" => connect(ctx, value, current),
        "bisect" => bisect(ctx, key, value, current),
        "any_order" => any_order(ctx, key, value, current),
        "points" => ctx.int(value, "points").map(StepKind::Points),
        "accept" => accept(ctx, value, current),
        "expect_exit" => expect_exit(ctx, value),
        "expect_output" => expect_output(ctx, key, value),
        _ => {
            let d = ctx
                .error(key.span, format!("unknown step `{name}`"))
                .with_help(match did_you_mean(name, STEP_KINDS.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => STEP_HELP.to_owned(),
                });
            ctx.push(d);
            None
        }
    }?;
    Some(Step {
        kind,
        span: key.span,
    })
}

/// A step mapping with a second key: usually an option written beside its step instead of
/// inside it.
fn extra_key(ctx: &mut Ctx, name: &str, extra: &Node) {
    let extra_name = extra.scalar().unwrap_or_default();
    let options: &[&str] = match name {
        "send" => SEND_KEYS,
        "expect" => EXPECT_KEYS,
        "expect_close" => CLOSE_KEYS,
        "expect_silence" => SILENCE_KEYS,
        _ => &[],
    };
    let help = if options.contains(&extra_name) {
        format!("options go inside the step: `- {name}: {{ ..., {extra_name}: ... }}`")
    } else if name.contains("->") && extra_name == "within" {
        "to give an expectation its own deadline, write `- expect: { text: ..., within: 1s }`"
            .to_owned()
    } else {
        "start each step with `- `".to_owned()
    };
    let d = ctx
        .error(extra.span, "a step has exactly one key")
        .with_label(format!("second key in the step `{name}`"))
        .with_help(help);
    ctx.push(d);
}

/// `C -> S: text` or `S -> C: text`.
fn arrow(
    ctx: &mut Ctx,
    key: &Node,
    name: &str,
    value: &Node,
    current: &mut String,
) -> Option<Step> {
    let (from, to) = name.split_once("->")?;
    let (from, to) = (from.trim(), to.trim());
    // `sending`: the harness writes. It is the client unless the suite says `role: server`.
    let serving = ctx.role == Role::Server;
    let (conn, sending) = match (from == SERVER, to == SERVER) {
        (false, true) => (from, !serving),
        (true, false) => (to, serving),
        _ => {
            let mut help =
                "write `C -> S: message` to send and `S -> C: message` to expect".to_owned();
            if from == "s" || to == "s" {
                help += " (the server is a capital `S`)";
            }
            let d = ctx
                .error(
                    key.span,
                    "an arrow goes between the server `S` and a connection",
                )
                .with_help(help);
            ctx.push(d);
            return None;
        }
    };
    if serving && conn == OTHERS {
        let d = ctx
            .error(
                key.span,
                "`others` is for suites where the harness is the client",
            )
            .with_help("with `role: server`, name each connection: `S -> C2: message`");
        ctx.push(d);
        return None;
    }
    let to_others = !sending && conn == OTHERS;
    let conn_ok = to_others || check_conn_name(ctx, conn, key.span);
    if conn_ok && !to_others {
        conn.clone_into(current);
    }
    let span = if value.is_null() || value.span.len == 0 {
        key.span
    } else {
        value.span
    };
    let text = match &value.kind {
        _ if value.is_null() => "",
        Kind::Scalar { value, .. } => value.as_str(),
        _ => {
            let d = ctx
                .error(
                    value.span,
                    format!(
                        "the message after `{name}:` must be text, found {}",
                        value.describe()
                    ),
                )
                .with_help(
                    "quote a message that starts with `{` or `[`: `S -> C: '{\"status\":\"OK\"}'`",
                );
            ctx.push(d);
            return None;
        }
    };
    let kind = if sending {
        let payload = Payload::Line(ctx.template(value, 0)?);
        StepKind::Send(Send {
            conn: conn.to_owned(),
            payload,
            split: Vec::new(),
            split_spans: Vec::new(),
            pause: Duration::ZERO,
            chunk: None,
            clear: Clear::No,
        })
    } else {
        let matcher = match text.strip_prefix("re:") {
            Some(rest) => {
                let skip = 3 + usize::from(rest.starts_with(' '));
                let t = ctx.template(value, skip)?;
                check_regex(ctx, &t)?;
                Matcher::Regex(t)
            }
            None => Matcher::Exact(ctx.template(value, 0)?),
        };
        StepKind::Expect(Expect {
            conn: conn.to_owned(),
            matcher,
            within: None,
            subset: false,
            at: None,
            until: None,
            joined: None,
        })
    };
    conn_ok.then_some(Step { kind, span })
}

/// Whether `name` can name a connection; reports why not.
fn check_conn_name(ctx: &mut Ctx, name: &str, span: Span) -> bool {
    let problem = if name == SERVER {
        Some((
            "`S` is the server, not a connection",
            "name connections `C`, `C1`, `alice`, ...",
        ))
    } else if name == OTHERS {
        Some((
            "`others` is reserved for messages to every other connection",
            "`others` only receives (`S -> others: message`); to send or close, name a connection such as `C2`",
        ))
    } else if name.is_empty() {
        Some((
            "missing connection name",
            "connections are named like `C`, `C1` or `alice`",
        ))
    } else {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        (!valid).then_some((
            "invalid connection name",
            "connection names start with a letter or `_` and hold letters, digits, `_` and `-`",
        ))
    };
    match problem {
        None => true,
        Some((message, help)) => {
            let message = if message == "invalid connection name" {
                format!("`{name}` is not a valid connection name")
            } else {
                message.to_owned()
            };
            let d = ctx.error(span, message).with_help(help);
            ctx.push(d);
            false
        }
    }
}

/// A connection given as a scalar (`close: C2`), or the current one for an empty value.
fn conn_or_current(ctx: &mut Ctx, node: &Node, current: &mut String) -> Option<String> {
    if node.is_null() {
        return Some(current.clone());
    }
    conn(ctx, node, current)
}

/// A connection named by `node`; it becomes the current connection.
fn conn(ctx: &mut Ctx, node: &Node, current: &mut String) -> Option<String> {
    let Some(name) = node.scalar().filter(|_| !node.is_null()) else {
        let d = ctx.error(
            node.span,
            format!("expected a connection name, found {}", node.describe()),
        );
        ctx.push(d);
        return None;
    };
    if !check_conn_name(ctx, name, node.span) {
        return None;
    }
    name.clone_into(current);
    Some(name.to_owned())
}

/// `conn:` of an options mapping, or the current connection.
fn conn_field(ctx: &mut Ctx, f: &Fields<'_>, current: &mut String) -> Option<String> {
    match f.get("conn") {
        Some(node) => conn(ctx, node, current),
        None => Some(current.clone()),
    }
}

/// Exactly one of `names` among the fields of `step`.
fn one_of<'n>(
    ctx: &mut Ctx,
    f: &Fields<'n>,
    names: &[&str],
    step: &str,
    key: &Node,
) -> Option<(&'n str, &'n Node)> {
    let present = f.present(names);
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match present.as_slice() {
        [(name, _, value)] => Some((name, value)),
        // A misspelt payload key has been reported already.
        [] if names.iter().any(|n| f.misspelt(n)) => None,
        [] => {
            let d = ctx
                .error(key.span, format!("`{step}` needs one of {list}"))
                .with_help(format!("e.g. `- {step}: {{ text: hello }}`"));
            ctx.push(d);
            None
        }
        [(first, first_key, _), (second, second_key, _), ..] => {
            let d = ctx
                .error(
                    second_key.span,
                    format!("`{step}` takes one of {list}, not both `{first}` and `{second}`"),
                )
                .with_label(if first_key.span.line == second_key.span.line {
                    "one too many".to_owned()
                } else {
                    format!(
                        "one too many (`{first}` is on line {})",
                        first_key.span.line
                    )
                });
            ctx.push(d);
            None
        }
    }
}

fn send(ctx: &mut Ctx, key: &Node, value: &Node, current: &mut String) -> Option<StepKind> {
    if value.scalar().is_some() && !value.is_null() {
        return Some(StepKind::Send(Send {
            conn: current.clone(),
            payload: Payload::Line(ctx.template(value, 0)?),
            split: Vec::new(),
            split_spans: Vec::new(),
            pause: Duration::ZERO,
            chunk: None,
            clear: Clear::No,
        }));
    }
    if !matches!(value.kind, Kind::Map(_)) {
        let d = ctx
            .error(
                if value.is_null() {
                    key.span
                } else {
                    value.span
                },
                format!(
                    "`send` needs a message or options, found {}",
                    value.describe()
                ),
            )
            .with_help("write `- send: hello` or `- send: { bytes: \"...\", conn: C2 }`");
        ctx.push(d);
        return None;
    }
    let f = ctx.fields(value, SEND_KEYS, "`send`")?;
    let conn = conn_field(ctx, &f, current);
    let payload = one_of(ctx, &f, SEND_PAYLOADS, "send", key).and_then(|(kind, node)| {
        if kind == "packet" {
            return packet(ctx, node).map(Payload::Packet);
        }
        let t = ctx.template(node, 0)?;
        check_literal_hex(ctx, kind, &t)?;
        Some(match kind {
            "bytes" => Payload::Bytes(t),
            "hex" => Payload::Hex(t),
            _ => Payload::Line(t),
        })
    });
    let split = match f.get("split") {
        Some(node) => split(ctx, node),
        None => Some((Vec::new(), Vec::new())),
    };
    let pause = match f.get("pause") {
        Some(node) => ctx.duration(node, "pause"),
        None => Some(Duration::ZERO),
    };
    let chunk = match f.get("chunk") {
        Some(node) => {
            let n = ctx.int(node, "chunk")?;
            if n == 0
                || payload
                    .as_ref()
                    .is_some_and(|p| !matches!(p, Payload::Packet(_)))
            {
                let d = ctx
                    .error(node.span, "`chunk` cuts a packet's data: a size above 0, with `packet`")
                    .with_help("e.g. `- send: { packet: { keyword: abcd, data: \"{{text}}\" }, chunk: 9984 }`");
                ctx.push(d);
                return None;
            }
            Some(n as usize)
        }
        None => None,
    };
    let clear = match f.get("clear") {
        Some(node) => clear(ctx, node),
        None => Some(Clear::No),
    };
    let split = split?;
    Some(StepKind::Send(Send {
        conn: conn?,
        payload: payload?,
        split: split.0,
        split_spans: split.1,
        pause: pause?,
        chunk,
        clear: clear?,
    }))
}

/// `clear: true | false | "{{var}}"`.
fn clear(ctx: &mut Ctx, node: &Node) -> Option<Clear> {
    const HELP: &str = "write `clear: true` to send the bytes unencrypted, or a variable \
                        that holds `true` or `false`: `clear: \"{{hash_in_clear}}\"`";
    if node.is_plain() {
        match node.scalar() {
            Some("true" | "True" | "TRUE") => return Some(Clear::Yes),
            Some("false" | "False" | "FALSE") => return Some(Clear::No),
            _ => {}
        }
    }
    if node.scalar().is_none() || node.is_null() {
        ctx.type_error(node, "clear", "`true`, `false` or a template", Some(HELP));
        return None;
    }
    let t = ctx.template(node, 0)?;
    match t.literal().as_deref() {
        None => Some(Clear::Template(t)),
        Some("true") => Some(Clear::Yes),
        Some("false") => Some(Clear::No),
        Some(_) => {
            ctx.type_error(node, "clear", "`true` or `false`", Some(HELP));
            None
        }
    }
}

/// `split: [1, 5]`: strictly increasing offsets, and where each is written. Whether they
/// fall inside the message is checked with the protocol known ([`check_splits`]): on an
/// encrypted connection they cut the message's RSA block, not the message.
fn split(ctx: &mut Ctx, node: &Node) -> Option<(Vec<usize>, Vec<Span>)> {
    let Kind::Seq(items) = &node.kind else {
        let d = ctx
            .error(
                node.span,
                format!(
                    "`split` must be a list of byte offsets, found {}",
                    node.describe()
                ),
            )
            .with_help("e.g. `split: [1, 5]` writes bytes 0..1, 1..5 and the rest separately");
        ctx.push(d);
        return None;
    };
    let mut offsets = Vec::with_capacity(items.len());
    let mut spans = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let Some(n) = ctx.int(item, "split") else {
            ok = false;
            continue;
        };
        let n = n as usize;
        let problem = if n == 0 {
            Some("a split offset must be greater than 0")
        } else if offsets.last().is_some_and(|&last| n <= last) {
            Some("split offsets must be strictly increasing")
        } else {
            None
        };
        if let Some(message) = problem {
            let d = ctx.error(item.span, message);
            ctx.push(d);
            ok = false;
        }
        offsets.push(n);
        spans.push(item.span);
    }
    ok.then_some((offsets, spans))
}

/// The split offsets of sends whose length is known before the run, against that length:
/// the bytes of a `bytes` or `hex` payload without templates, or `block` (the RSA block
/// size, for a protocol that encrypts) for a send that goes out encrypted. A connection
/// opened with `connect: { key: ... }` is not encrypted until it closes; a send whose
/// `clear` is a template is left to the run.
pub fn check_splits(scenario: &Scenario, block: Option<usize>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    // Connections opened without a key exchange (their sends go out as they are).
    let mut raw = std::collections::BTreeSet::new();
    for step in &scenario.steps {
        let send = match &step.kind {
            StepKind::Connect {
                conn, key: Some(_), ..
            } => {
                raw.insert(conn.clone());
                continue;
            }
            StepKind::Close { conn } | StepKind::ExpectClose { conn, .. } => {
                raw.remove(conn);
                continue;
            }
            StepKind::Send(send) if !send.split.is_empty() => send,
            _ => continue,
        };
        let literal = match &send.payload {
            Payload::Bytes(t) => t.literal().map(|s| s.len()),
            Payload::Hex(t) => t
                .literal()
                .and_then(|s| template::decode_hex(s.as_bytes()).ok())
                .map(|b| b.len()),
            _ => None,
        };
        let encrypted = block.is_some() && !raw.contains(&send.conn);
        let (len, what) = match (&send.clear, encrypted) {
            (Clear::Template(_), true) => continue,
            (Clear::No, true) => (block, "RSA block"),
            _ => (literal, "message"),
        };
        let Some(len) = len else { continue };
        for (&n, &span) in send.split.iter().zip(&send.split_spans) {
            if n >= len {
                diags.push(Diagnostic::error(
                    &scenario.source,
                    span,
                    format!("split offset {n} is not inside the {len}-byte {what}"),
                ));
            }
        }
    }
    diags
}

/// Hex without templates is checked now rather than when the step runs.
fn check_literal_hex(ctx: &mut Ctx, kind: &str, t: &Template) -> Option<()> {
    if kind != "hex" {
        return Some(());
    }
    let Some(text) = t.literal() else {
        return Some(());
    };
    match template::decode_hex(text.as_bytes()) {
        Ok(_) => Some(()),
        Err(e) => {
            let d = ctx.error(t.span, "invalid hex").with_label(e);
            ctx.push(d);
            None
        }
    }
}

fn check_regex(ctx: &mut Ctx, t: &Template) -> Option<()> {
    match template::check_regex(t, &ctx.file) {
        None => Some(()),
        Some(d) => {
            ctx.push(d);
            None
        }
    }
}

fn expect(ctx: &mut Ctx, key: &Node, value: &Node, current: &mut String) -> Option<StepKind> {
    if value.scalar().is_some() && !value.is_null() {
        return Some(StepKind::Expect(Expect {
            conn: current.clone(),
            matcher: Matcher::Exact(ctx.template(value, 0)?),
            within: None,
            subset: false,
            at: None,
            until: None,
            joined: None,
        }));
    }
    if !matches!(value.kind, Kind::Map(_)) {
        let d = ctx
            .error(
                if value.is_null() {
                    key.span
                } else {
                    value.span
                },
                format!(
                    "`expect` needs a message or options, found {}",
                    value.describe()
                ),
            )
            .with_help("write `- expect: hello` or `- expect: { re: \"\\\\d+\", within: 1s }`");
        ctx.push(d);
        return None;
    }
    let f = ctx.fields(value, EXPECT_KEYS, "`expect`")?;
    let conn = match f.get("conn") {
        Some(node) if node.scalar() == Some(OTHERS) => Some(OTHERS.to_owned()),
        _ => conn_field(ctx, &f, current),
    };
    let matcher = one_of(ctx, &f, EXPECT_MATCHERS, "expect", key).and_then(|(kind, node)| {
        if kind == "packet" {
            return packet(ctx, node).map(Matcher::Packet);
        }
        let t = ctx.template(node, 0)?;
        check_literal_hex(ctx, kind, &t)?;
        Some(match kind {
            "re" => {
                check_regex(ctx, &t)?;
                Matcher::Regex(t)
            }
            "bytes" => Matcher::Bytes(t),
            "hex" => Matcher::Hex(t),
            _ => Matcher::Exact(t),
        })
    });
    let within = match f.get("within") {
        Some(node) => Some(ctx.duration(node, "within")?),
        None => None,
    };
    let subset = match f.get("subset") {
        Some(node) => ctx.boolean(node, "subset")?,
        None => false,
    };
    let tolerance = match f.get("tolerance") {
        Some(node) => Some(ctx.duration(node, "tolerance")?),
        None => None,
    };
    let at = match (f.entry("at"), tolerance) {
        (Some((_, node)), tolerance) => Some(At {
            after: ctx.duration(node, "at")?,
            tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE),
        }),
        (None, Some(_)) => {
            let d = ctx
                .error(key.span, "`tolerance` needs `at`")
                .with_help("e.g. `- expect: { text: PING, at: 10s, tolerance: 100ms }`");
            ctx.push(d);
            return None;
        }
        (None, None) => None,
    };
    if at.is_some() && within.is_some() {
        let d = ctx
            .error(key.span, "`expect` takes `at` or `within`, not both")
            .with_help("`at: 10s, tolerance: 100ms` already sets the deadline (10.1s)");
        ctx.push(d);
        return None;
    }
    let until = match f.get("until") {
        Some(node) => {
            if !matches!(matcher, Some(Matcher::Packet(_))) {
                let d = ctx
                    .error(node.span, "`until` repeats a `packet` expectation")
                    .with_help("e.g. `- expect: { packet: { data: \"<any+:text>\" }, until: { flag: 1 } }`");
                ctx.push(d);
                return None;
            }
            Some(packet(ctx, node)?)
        }
        None => None,
    };
    let joined = match f.get("joined") {
        Some(node) => {
            if until.is_none() {
                let d = ctx
                    .error(node.span, "`joined` checks a stream of packets read with `until`")
                    .with_help("e.g. `- expect: { packet: { data: \"<any>\" }, until: { flag: 1 }, joined: { data: \"{{text}}\" } }`");
                ctx.push(d);
                return None;
            }
            Some(packet(ctx, node)?)
        }
        None => None,
    };
    Some(StepKind::Expect(Expect {
        conn: conn?,
        matcher: matcher?,
        within,
        subset,
        at,
        until,
        joined,
    }))
}

/// `packet: { field: value, ... }`: each value a template (numbers as written).
fn packet(ctx: &mut Ctx, node: &Node) -> Option<PacketSpec> {
    let Kind::Map(entries) = &node.kind else {
        let d = ctx
            .error(
                node.span,
                format!(
                    "`packet` must be a mapping of fields, found {}",
                    node.describe()
                ),
            )
            .with_help("e.g. `packet: { flag: 1, keyword: sbmt, sid: 12345678, data: \"\" }`");
        ctx.push(d);
        return None;
    };
    let mut fields = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = k.scalar().filter(|n| !n.is_empty()) else {
            let d = ctx.error(k.span, "packet field names must be text");
            ctx.push(d);
            ok = false;
            continue;
        };
        match ctx.template(v, 0) {
            Some(t) => fields.push((name.to_owned(), t)),
            None => ok = false,
        }
    }
    ok.then_some(PacketSpec {
        fields,
        span: node.span,
    })
}

/// `connect: C`, or `connect: { conn: D, port: "+1", key: none }`.
fn connect(ctx: &mut Ctx, value: &Node, current: &mut String) -> Option<StepKind> {
    if !matches!(value.kind, Kind::Map(_)) {
        let conn = conn_or_current(ctx, value, current)?;
        return Some(StepKind::Connect {
            conn,
            port: None,
            key: None,
        });
    }
    let f = ctx.fields(value, CONNECT_KEYS, "`connect`")?;
    let conn = conn_field(ctx, &f, current);
    let port = match f.get("port") {
        Some(node) => Some(ctx.template(node, 0)?),
        None => None,
    };
    let key = match f.entry("key") {
        Some((key, node)) => Some(connect_key(ctx, key, node)?),
        None => None,
    };
    Some(StepKind::Connect {
        conn: conn?,
        port,
        key,
    })
}

/// `key: none`, or `key: "<template>"` sent as the client's public key.
fn connect_key(ctx: &mut Ctx, key: &Node, node: &Node) -> Option<ConnectKey> {
    let span = key.span;
    if node.scalar() == Some("none") {
        return Some(ConnectKey {
            offer: KeySpec::None,
            span,
        });
    }
    if node.scalar().is_none() || node.is_null() {
        ctx.type_error(
            node,
            "key",
            "`none` or the text to send as the client's public key",
            Some(
                "`key: none` opens the connection without a key exchange; \
                 `key: \"{{rsa_key(1024)}}\"` sends a key of the wrong size instead of a fresh one",
            ),
        );
        return None;
    }
    Some(ConnectKey {
        offer: KeySpec::Bytes(ctx.template(node, 0)?),
        span,
    })
}

/// `bisect:` halving a range to find a number the target hides (a guessing game).
fn bisect(ctx: &mut Ctx, key: &Node, value: &Node, current: &mut String) -> Option<StepKind> {
    const EXAMPLE: &str = "e.g.\nbisect:\n  conn: C1\n  var: n\n  low: 1\n  high: 50\n  \
        send: 'GUESS {\"number\":{{n}}}'\n  found: 'GUESS_RESP {\"result\":\"Correct\"}'\n  \
        higher: 'GUESS_RESP {\"code\":7005}'\n  lower: 'GUESS_RESP {\"code\":7006}'";
    if !matches!(value.kind, Kind::Map(_)) {
        let d = ctx
            .error(
                key.span,
                format!("`bisect` needs options, found {}", value.describe()),
            )
            .with_help(EXAMPLE);
        ctx.push(d);
        return None;
    }
    let f = ctx.fields(value, BISECT_KEYS, "`bisect`")?;
    let conn = conn_field(ctx, &f, current)?;
    let mut missing = Vec::new();
    for k in ["var", "low", "high", "send", "found", "higher", "lower"] {
        if f.get(k).is_none() && !f.misspelt(k) {
            missing.push(format!("`{k}`"));
        }
    }
    if !missing.is_empty() {
        let d = ctx
            .error(key.span, format!("`bisect` needs {}", missing.join(", ")))
            .with_help(EXAMPLE);
        ctx.push(d);
        return None;
    }
    let var = ctx.string(f.get("var")?, "var")?;
    let low = ctx.int(f.get("low")?, "low");
    let high = ctx.int(f.get("high")?, "high");
    let (low, high) = (i64::from(low?), i64::from(high?));
    if low > high {
        let d = ctx.error(f.get("high")?.span, "`high` is below `low`");
        ctx.push(d);
        return None;
    }
    let text = |ctx: &mut Ctx, name: &str| ctx.template(f.get(name)?, 0);
    let expect = |ctx: &mut Ctx, name: &str| {
        Some(Expect {
            conn: conn.clone(),
            matcher: Matcher::Exact(text(ctx, name)?),
            within: None,
            subset: false,
            at: None,
            until: None,
            joined: None,
        })
    };
    let send = text(ctx, "send").map(|t| Send {
        conn: conn.clone(),
        payload: Payload::Line(t),
        split: Vec::new(),
        split_spans: Vec::new(),
        pause: Duration::ZERO,
        chunk: None,
        clear: Clear::No,
    });
    let (found, higher, lower) = (
        expect(ctx, "found"),
        expect(ctx, "higher"),
        expect(ctx, "lower"),
    );
    Some(StepKind::Bisect(Box::new(Bisect {
        conn: conn.clone(),
        var,
        low,
        high,
        send: send?,
        found: found?,
        higher: higher?,
        lower: lower?,
    })))
}

/// `any_order:` a list of expectations whose messages may arrive in any order.
fn any_order(ctx: &mut Ctx, key: &Node, value: &Node, current: &mut String) -> Option<StepKind> {
    let Kind::Seq(items) = &value.kind else {
        let d = ctx
            .error(
                if value.is_null() { key.span } else { value.span },
                format!("`any_order` must be a list of expectations, found {}", value.describe()),
            )
            .with_help("e.g.\nany_order:\n  - S -> C1: JOINED {\"username\":\"b\"}\n  - S -> C1: BROADCAST {\"username\":\"b\",\"message\":\"hi\"}");
        ctx.push(d);
        return None;
    };
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        match step(ctx, item, current) {
            Some(
                s @ Step {
                    kind: StepKind::Expect(_),
                    ..
                },
            ) => steps.push(s),
            Some(other) => {
                let d = ctx
                    .error(other.span, "`any_order` holds only expectations")
                    .with_help("put sends and other steps before or after the `any_order` list");
                ctx.push(d);
                ok = false;
            }
            None => ok = false,
        }
    }
    if steps.is_empty() && ok {
        let d = ctx.error(key.span, "`any_order` is empty");
        ctx.push(d);
        return None;
    }
    ok.then_some(StepKind::AnyOrder(steps))
}

/// `background:` of a suite or scenario: `off`, or a list of `{ on: message, reply: message }`.
pub(crate) fn background(ctx: &mut Ctx, node: &Node) -> Option<Vec<BackgroundRule>> {
    if node.scalar() == Some("off") || node.is_null() {
        return Some(Vec::new());
    }
    let Kind::Seq(items) = &node.kind else {
        let d = ctx
            .error(
                node.span,
                format!(
                    "`background` must be `off` or a list of rules, found {}",
                    node.describe()
                ),
            )
            .with_help("e.g.\nbackground:\n  - on: PING\n    reply: PONG\n  - on: 're:^JOINED '");
        ctx.push(d);
        return None;
    };
    let mut rules = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let Some(f) = ctx.fields(item, BACKGROUND_KEYS, "a background rule") else {
            ok = false;
            continue;
        };
        let Some((on_key, on)) = f.entry("on") else {
            if !f.misspelt("on") {
                let d = ctx
                    .error(
                        item.span,
                        "a background rule needs `on:`, the message it handles",
                    )
                    .with_help("e.g. `- { on: PING, reply: PONG }`");
                ctx.push(d);
            }
            ok = false;
            continue;
        };
        let text = on.scalar().unwrap_or_default();
        let matcher = match text.strip_prefix("re:") {
            Some(rest) => ctx
                .template(on, 3 + usize::from(rest.starts_with(' ')))
                .and_then(|t| {
                    check_regex(ctx, &t)?;
                    Some(Matcher::Regex(t))
                }),
            None => ctx.template(on, 0).map(Matcher::Exact),
        };
        let reply = match f.get("reply") {
            Some(node) => ctx.template(node, 0).map(Some),
            None => Some(None),
        };
        match (matcher, reply) {
            (Some(on), Some(reply)) => rules.push(BackgroundRule {
                on,
                reply,
                span: on_key.span,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(rules)
}

fn expect_close(ctx: &mut Ctx, value: &Node, current: &mut String) -> Option<StepKind> {
    if !matches!(value.kind, Kind::Map(_)) {
        let conn = conn_or_current(ctx, value, current)?;
        return Some(StepKind::ExpectClose { conn, within: None });
    }
    let f = ctx.fields(value, CLOSE_KEYS, "`expect_close`")?;
    let conn = conn_field(ctx, &f, current);
    let within = match f.get("within") {
        Some(node) => Some(ctx.duration(node, "within")?),
        None => None,
    };
    Some(StepKind::ExpectClose {
        conn: conn?,
        within,
    })
}

fn expect_silence(
    ctx: &mut Ctx,
    key: &Node,
    value: &Node,
    current: &mut String,
) -> Option<StepKind> {
    if !matches!(value.kind, Kind::Map(_)) {
        let duration = ctx.duration(value, "expect_silence")?;
        return Some(StepKind::ExpectSilence {
            conn: None,
            duration,
        });
    }
    let f = ctx.fields(value, SILENCE_KEYS, "`expect_silence`")?;
    let conn = match f.get("conn") {
        Some(node) => Some(conn(ctx, node, current)?),
        None => None,
    };
    let Some(node) = f.get("for") else {
        let d = ctx
            .error(key.span, "`expect_silence` needs `for:`")
            .with_help("e.g. `- expect_silence: { conn: C2, for: 500ms }`");
        ctx.push(d);
        return None;
    };
    let duration = ctx.duration(node, "for")?;
    Some(StepKind::ExpectSilence { conn, duration })
}

/// Whether the step `name` fits the side the harness plays; reports why not.
fn role_allows(ctx: &mut Ctx, key: &Node, name: &str) -> bool {
    let (message, help) = match ctx.role {
        Role::Client if SERVER_STEPS.contains(&name) => (
            format!("`{name}` is a step for suites where the harness plays the server"),
            "add `role: server` to the suite's suite.yaml and test a client with `harness serve`",
        ),
        Role::Server if name == "connect" => (
            "with `role: server` the client under test connects: the harness does not".to_owned(),
            "wait for its connection with `- accept: C` (a connection's first step accepts it too)",
        ),
        _ => return true,
    };
    let d = ctx.error(key.span, message).with_help(help);
    ctx.push(d);
    false
}

/// `accept: ~ | conn | {conn, within}`.
fn accept(ctx: &mut Ctx, value: &Node, current: &mut String) -> Option<StepKind> {
    if !matches!(value.kind, Kind::Map(_)) {
        let conn = conn_or_current(ctx, value, current)?;
        return Some(StepKind::Accept { conn, within: None });
    }
    let f = ctx.fields(value, ACCEPT_KEYS, "`accept`")?;
    let conn = conn_field(ctx, &f, current);
    let within = match f.get("within") {
        Some(node) => Some(ctx.duration(node, "within")?),
        None => None,
    };
    Some(StepKind::Accept {
        conn: conn?,
        within,
    })
}

/// `expect_exit: ~ | code | {code, within}`.
fn expect_exit(ctx: &mut Ctx, value: &Node) -> Option<StepKind> {
    if value.is_null() {
        return Some(StepKind::ExpectExit {
            code: None,
            within: None,
        });
    }
    if !matches!(value.kind, Kind::Map(_)) {
        let code = exit_code(ctx, value)?;
        return Some(StepKind::ExpectExit {
            code: Some(code),
            within: None,
        });
    }
    let f = ctx.fields(value, EXIT_KEYS, "`expect_exit`")?;
    let code = match f.get("code") {
        Some(node) => Some(exit_code(ctx, node)?),
        None => None,
    };
    let within = match f.get("within") {
        Some(node) => Some(ctx.duration(node, "within")?),
        None => None,
    };
    Some(StepKind::ExpectExit { code, within })
}

fn exit_code(ctx: &mut Ctx, node: &Node) -> Option<i32> {
    let code = node
        .scalar()
        .filter(|_| node.is_plain())
        .and_then(|s| s.parse::<i32>().ok());
    if code.is_none() {
        let d = ctx
            .error(
                node.span,
                format!("an exit code is a number, found {}", node.describe()),
            )
            .with_help("e.g. `- expect_exit: 0` or `- expect_exit: { code: 1, within: 5s }`");
        ctx.push(d);
    }
    code
}

/// `expect_output: text | re:regex | {text|re, stream, within}`.
fn expect_output(ctx: &mut Ctx, key: &Node, value: &Node) -> Option<StepKind> {
    if let Some(text) = value.scalar().filter(|_| !value.is_null()) {
        let matcher = match text.strip_prefix("re:") {
            Some(rest) => {
                let t = ctx.template(value, 3 + usize::from(rest.starts_with(' ')))?;
                check_regex(ctx, &t)?;
                Matcher::Regex(t)
            }
            None => Matcher::Exact(ctx.template(value, 0)?),
        };
        return Some(StepKind::ExpectOutput {
            matcher,
            stderr: false,
            within: None,
        });
    }
    if !matches!(value.kind, Kind::Map(_)) {
        let d = ctx
            .error(
                if value.is_null() { key.span } else { value.span },
                format!(
                    "`expect_output` needs a line or options, found {}",
                    value.describe()
                ),
            )
            .with_help("e.g. `- expect_output: \"Score: 50\"` or `- expect_output: { re: \"^KEY: \\\\w+$\" }`");
        ctx.push(d);
        return None;
    }
    let f = ctx.fields(value, OUTPUT_KEYS, "`expect_output`")?;
    let matcher =
        one_of(ctx, &f, &["text", "re"], "expect_output", key).and_then(|(kind, node)| {
            let t = ctx.template(node, 0)?;
            if kind == "re" {
                check_regex(ctx, &t)?;
                Some(Matcher::Regex(t))
            } else {
                Some(Matcher::Exact(t))
            }
        });
    let stderr = match f.get("stream") {
        None => Some(false),
        Some(node) => match node.scalar() {
            Some("stdout") => Some(false),
            Some("stderr") => Some(true),
            _ => {
                let d = ctx.error(
                    node.span,
                    format!(
                        "`stream` must be `stdout` or `stderr`, found {}",
                        node.describe()
                    ),
                );
                ctx.push(d);
                None
            }
        },
    };
    let within = match f.get("within") {
        Some(node) => Some(ctx.duration(node, "within")?),
        None => None,
    };
    Some(StepKind::ExpectOutput {
        matcher: matcher?,
        stderr: stderr?,
        within,
    })
}
