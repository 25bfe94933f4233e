//! Entry point of the `scenario` fuzz target in `fuzz/`, and of the test that replays its
//! saved inputs under a plain `cargo test` (`tests/it/corpus.rs`). Not part of the crate's
//! API.
//!
//! The input is the text of one file of a suite folder (bytes that are not UTF-8 replaced,
//! no header: the seeds in `fuzz/corpus/scenario/` are the suite files as they are). It
//! goes through every loader of [`crate::scenario`], as `harness check` would:
//!
//! ```text
//! parse_suite_config   as a suite.yaml
//! parse_profile        as a NAME.profile.yaml
//! parse_scenario       as a scenario of a suite that plays the client (the default
//!                      suite.yaml) and of one that plays the server (`role: server`)
//! then, for a scenario that loads:
//!   check_vars         against the variables of a fixed Env, and against every name used
//!   check_splits       for a protocol without encryption and for one with RSA blocks
//!   expansion          every template of the steps and background rules against that Env:
//!                      eval, eval_regex + compile_regex for `re:`, decode_hex for `hex:`
//! ```
//!
//! Errors are expected; the entry point checks more than "no panic":
//!
//! - loading is deterministic: the same text twice gives equal diagnostics, or models with
//!   the same `Debug`;
//! - a load that fails says why: at least one diagnostic, and at least one of them an error;
//! - every diagnostic (of the loaders, of `check_vars`, of a template that does not expand)
//!   renders, with and without its source line, and its one-line form is one line; it is
//!   about the text given (the path and the text without a byte order mark) and points into
//!   it: line at most the number of lines plus one (lines end at line feeds, as
//!   `SourceFile::line` cuts them), column at most one past the end of that line (in bytes:
//!   saphyr counts bytes in some scan errors);
//! - a scenario that loads is well-formed: the suite's role, an id, no tag twice, every span
//!   (scenario, steps, templates, expressions, packets, background rules, split offsets)
//!   inside the text, split offsets positive and strictly increasing (whether they fall
//!   inside the message is `check_splits`' business: it needs the protocol), hex without
//!   templates decodable;
//! - `check_vars` is deterministic, and knowing more variables never adds a diagnostic: with
//!   every name a template reads known, no variable is reported unknown;
//! - a template without `{{...}}` expands to its text (as bytes and as a pattern); its
//!   written form (`Display`) parses back to a template that expands to the same bytes, or
//!   fails the same way; an expansion is at most [`MAX_EXPANSION`] bytes; what fails to
//!   expand as bytes fails as a pattern too (values are escaped, never shortened).
//!
//! Expansion is bounded to keep the fuzzer fast. PBKDF2 costs 100,000 rounds: a template is
//! expanded only when each of its `pbkdf2` calls hashes variables of the fixed Env (a handful
//! of values the hash cache keeps). A template that calls `rsa_key` is never expanded: making
//! a key of up to 4096 bits costs up to seconds. A template whose calls may produce more than 1 MiB on the
//! way (by an upper bound worked out from the expressions) is expanded only once per input,
//! and never when the bound passes four times [`MAX_EXPANSION`]: `hex` nested many times
//! doubles at every level, and the limit is checked on the template's value, not on each
//! call.

use std::collections::BTreeSet;
use std::path::Path;

use crate::scenario::model::{
    Clear, ConnectKey, Expr, KeySpec, Matcher, PacketSpec, Part, Payload, Role, Scenario, Span,
    Step, StepKind, SuiteConfig, Template,
};
use crate::scenario::template::{self, MAX_EXPANSION, TemplateError};
use crate::scenario::{
    Diagnostic, Diagnostics, Env, check_splits, check_vars, parse_profile, parse_scenario,
    parse_suite_config,
};

/// The variables every template is expanded against. `salt`, `sid` and `uniq` are hex, so
/// `pbkdf2(a, b)` of two of these hashes at most a few dozen pairs.
const FIXED_VARS: &[(&str, &str)] = &[
    ("uniq", "1a2b3c"),
    ("password", "secret"),
    ("salt", "00112233"),
    ("sid", "12345678"),
    ("key", "wxyz"),
    ("text", "hello world"),
    ("n", "5"),
    ("line_end", "\n"),
    ("local_addr_C", "127.0.0.1:40000"),
];

/// The value of a `bisect:` variable while its templates are expanded.
const BISECT_GUESS: &str = "50";

/// Longest expanded pattern compiled (the regex crate bounds its own work; this bounds ours).
const MAX_PATTERN: usize = 4096;

/// One input as every file kind the loaders know: the `scenario` fuzz target.
pub fn scenario(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let source = Source::new(&text);

    let suite_path = Path::new("fuzz/suite.yaml");
    let suite = parse_suite_config(suite_path, &text);
    source.check_load(suite_path, &suite, &parse_suite_config(suite_path, &text));

    let profile_path = Path::new("fuzz/input.profile.yaml");
    let profile = parse_profile(profile_path, &text);
    source.check_load(profile_path, &profile, &parse_profile(profile_path, &text));

    let path = Path::new("fuzz/input.yaml");
    let mut budget = Budget {
        large: 1,
        input_len: data.len() as u64,
    };
    for role in [Role::Client, Role::Server] {
        let config = SuiteConfig {
            role,
            ..SuiteConfig::default()
        };
        let loaded = parse_scenario(path, &text, &config);
        source.check_load(path, &loaded, &parse_scenario(path, &text, &config));
        if let Ok(scenario) = loaded {
            assert_eq!(scenario.role, role, "the scenario plays another role");
            source.check_scenario(&scenario);
            source.check_vars(&scenario);
            source.check_splits(&scenario);
            source.expand_all(&scenario, &mut budget);
        }
    }
}

/// The text as the loaders keep it, cut into lines as diagnostics count them.
struct Source {
    text: String,
    lines: Vec<String>,
}

impl Source {
    fn new(text: &str) -> Self {
        // The loaders drop a byte order mark and make every YAML line break a line feed;
        // `SourceFile::line` cuts at line feeds.
        let text = crate::scenario::source_text(text);
        let lines = text.lines().map(str::to_owned).collect();
        Self { text, lines }
    }

    /// Whether `span` points into the text: a line up to one past the last (an error at the
    /// end of the file), a column up to one past the end of its line. Line 0 is "somewhere
    /// in the file". Columns count characters, but saphyr reports some scan errors (in a
    /// `%` directive) at a column that counts bytes, so the bound is the line's bytes.
    fn contains(&self, span: Span) -> bool {
        if span.line == 0 {
            return true;
        }
        let Ok(index) = usize::try_from(span.line - 1) else {
            return false;
        };
        if index > self.lines.len() {
            return false;
        }
        let len = self.lines.get(index).map_or(0, |l| l.len());
        usize::try_from(span.col).is_ok_and(|col| col <= len + 1)
    }

    fn assert_contains(&self, span: Span, what: &dyn std::fmt::Debug) {
        assert!(
            self.contains(span),
            "{what:?} at {}:{} is outside the text ({} lines)",
            span.line,
            span.col,
            self.lines.len()
        );
    }

    /// Checks a load and a second load of the same text.
    fn check_load<T: std::fmt::Debug>(
        &self,
        path: &Path,
        first: &Result<T, Diagnostics>,
        second: &Result<T, Diagnostics>,
    ) {
        match (first, second) {
            (Ok(a), Ok(b)) => assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "{}: the same text loads differently",
                path.display()
            ),
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "{}: the same text fails differently", path.display());
                assert!(
                    a.0.iter().any(Diagnostic::is_error),
                    "{}: the load fails without an error: {a:?}",
                    path.display()
                );
                for d in &a.0 {
                    self.check_diagnostic(path, d);
                }
                let rendered = a.render();
                assert_eq!(
                    a.to_string().lines().count(),
                    a.0.len(),
                    "not one line per diagnostic: {a}"
                );
                assert!(!rendered.is_empty());
            }
            _ => panic!(
                "{}: the same text loads once and fails once",
                path.display()
            ),
        }
    }

    /// A diagnostic about this text renders and points into it.
    fn check_diagnostic(&self, path: &Path, d: &Diagnostic) {
        assert_eq!(d.file.path, path, "{d}: about another file");
        assert_eq!(d.file.text, self.text, "{d}: about another text");
        self.assert_contains(d.span, d);
        let line = d.to_string();
        assert_eq!(line.lines().count(), 1, "not one line: {line:?}");
        let location = d.location();
        for rendered in [d.render(), d.render_plain()] {
            let severity = if d.is_error() { "error: " } else { "warning: " };
            assert!(
                rendered.starts_with(severity) && rendered.contains(&d.message),
                "{rendered} does not start with its severity and message"
            );
            assert!(
                rendered.contains(&location),
                "{rendered} does not name {location}"
            );
        }
    }

    /// Every position the model holds is in the text, and the model keeps its promises.
    fn check_scenario(&self, s: &Scenario) {
        assert!(!s.id.is_empty(), "a scenario without an id");
        self.assert_contains(s.span, &s.id);
        let mut tags = BTreeSet::new();
        for tag in &s.tags {
            assert!(tags.insert(tag), "tag {tag} twice in {:?}", s.tags);
        }
        for step in &s.steps {
            self.check_step(step);
        }
        for rule in &s.background {
            self.assert_contains(rule.span, rule);
            self.check_matcher(&rule.on);
            if let Some(t) = &rule.reply {
                self.check_template(t);
            }
        }
    }

    fn check_step(&self, step: &Step) {
        self.assert_contains(step.span, step);
        match &step.kind {
            StepKind::Connect { conn, port, key } => {
                assert!(!conn.is_empty(), "{step:?}: no connection");
                if let Some(t) = port {
                    self.check_template(t);
                }
                if let Some(ConnectKey { offer, span }) = key {
                    self.assert_contains(*span, step);
                    if let KeySpec::Bytes(t) = offer {
                        self.check_template(t);
                    }
                }
            }
            StepKind::Bisect(b) => {
                self.check_send(&b.send);
                for e in [&b.found, &b.higher, &b.lower] {
                    self.check_matcher(&e.matcher);
                }
            }
            StepKind::Send(send) => self.check_send(send),
            StepKind::Expect(e) => {
                assert!(!e.conn.is_empty(), "{step:?}: no connection");
                self.check_matcher(&e.matcher);
                for spec in [&e.until, &e.joined].into_iter().flatten() {
                    self.check_packet(spec);
                }
            }
            StepKind::ExpectOutput { matcher, .. } => self.check_matcher(matcher),
            StepKind::AnyOrder(steps) => {
                for inner in steps {
                    assert!(
                        matches!(inner.kind, StepKind::Expect(_)),
                        "{inner:?} in any_order"
                    );
                    self.check_step(inner);
                }
            }
            StepKind::ExpectClose { conn, .. }
            | StepKind::Shutdown { conn }
            | StepKind::Accept { conn, .. }
            | StepKind::Close { conn } => assert!(!conn.is_empty(), "{step:?}: no connection"),
            StepKind::ExpectSilence { .. }
            | StepKind::Sleep(_)
            | StepKind::ExpectExit { .. }
            | StepKind::Points(_) => {}
        }
    }

    fn check_send(&self, send: &crate::scenario::model::Send) {
        assert!(!send.conn.is_empty(), "{send:?}: no connection");
        if let Clear::Template(t) = &send.clear {
            self.check_template(t);
            assert!(
                t.literal().is_none(),
                "{send:?}: a literal `clear` kept as a template"
            );
        }
        match &send.payload {
            Payload::Line(t) | Payload::Bytes(t) => self.check_template(t),
            Payload::Hex(t) => {
                self.check_template(t);
                if let Some(s) = t.literal()
                    && let Err(e) = template::decode_hex(s.as_bytes())
                {
                    panic!("{send:?}: literal hex that does not decode: {e}");
                }
            }
            Payload::Packet(spec) => self.check_packet(spec),
        }
        let mut last = 0;
        for &offset in &send.split {
            assert!(
                offset > last,
                "{send:?}: split offsets not positive and increasing"
            );
            last = offset;
        }
        assert_eq!(
            send.split.len(),
            send.split_spans.len(),
            "{send:?}: a split offset without its place"
        );
        for span in &send.split_spans {
            self.assert_contains(*span, send);
        }
        // Whether the offsets fall inside the message needs the protocol: `check_splits`.
    }

    fn check_matcher(&self, m: &Matcher) {
        match m {
            Matcher::Exact(t) | Matcher::Regex(t) | Matcher::Bytes(t) => self.check_template(t),
            Matcher::Hex(t) => {
                self.check_template(t);
                if let Some(s) = t.literal() {
                    assert!(
                        template::decode_hex(s.as_bytes()).is_ok(),
                        "expected literal hex {s:?} that does not decode"
                    );
                }
            }
            Matcher::Packet(spec) => self.check_packet(spec),
        }
    }

    fn check_packet(&self, spec: &PacketSpec) {
        self.assert_contains(spec.span, spec);
        for (_, t) in &spec.fields {
            self.check_template(t);
        }
    }

    fn check_template(&self, t: &Template) {
        self.assert_contains(t.span, t);
        for part in &t.parts {
            if let Part::Expr { span, .. } = part {
                self.assert_contains(*span, part);
            }
        }
    }

    /// `check_vars` as `harness check` runs it, and again knowing every name used.
    /// `check_splits` as `harness check` runs it for a protocol without encryption and for
    /// one with 64-byte RSA blocks: deterministic, every diagnostic well-formed.
    fn check_splits(&self, s: &Scenario) {
        let path = s.source.path.clone();
        for block in [None, Some(64)] {
            let diags = check_splits(s, block);
            assert_eq!(
                diags,
                check_splits(s, block),
                "check_splits gives different results"
            );
            for d in &diags {
                self.check_diagnostic(&path, d);
            }
        }
    }

    fn check_vars(&self, s: &Scenario) {
        let path = s.source.path.clone();
        let fixed: BTreeSet<String> = FIXED_VARS.iter().map(|(k, _)| (*k).to_owned()).collect();
        let diags = check_vars(s, &fixed);
        assert_eq!(
            diags,
            check_vars(s, &fixed),
            "check_vars gives different results"
        );
        for d in &diags {
            self.check_diagnostic(&path, d);
        }
        let mut every = fixed;
        for (t, _) in templates(s) {
            every.extend(t.variables().into_iter().map(|(name, _)| name.to_owned()));
        }
        let fewer = check_vars(s, &every);
        for d in &fewer {
            assert!(
                !d.message.starts_with("unknown variable"),
                "{d}: reported with every name known"
            );
            assert!(
                diags.contains(d),
                "{d}: reported only when more variables are known"
            );
        }
    }

    /// Expands every template of the scenario against the fixed variables.
    fn expand_all(&self, s: &Scenario, budget: &mut Budget) {
        let mut env = Env::new();
        env.set_all(&s.vars);
        for step in &s.steps {
            if let StepKind::Bisect(b) = &step.kind {
                env.set(b.var.clone(), BISECT_GUESS);
            }
        }
        for (name, value) in FIXED_VARS {
            env.set(*name, *value);
        }
        for (t, usage) in templates(s) {
            if budget.affords(t) {
                self.expand(s, t, usage, &env);
            }
        }
    }

    fn expand(&self, s: &Scenario, t: &Template, usage: Usage, env: &Env) {
        let bytes = template::eval(t, env);
        match &bytes {
            Ok(b) => assert!(b.len() <= MAX_EXPANSION, "{t}: {} bytes", b.len()),
            Err(e) => self.check_template_error(s, e),
        }
        if let Some(literal) = t.literal() {
            assert_eq!(
                bytes.as_deref().ok(),
                Some(literal.as_bytes()),
                "{t:?}: a literal expands to something else"
            );
        }
        // The written form reads back as the same template.
        let written = t.to_string();
        match template::parse(&written, t.span) {
            Ok(again) => assert_eq!(
                template::eval(&again, env).map_err(|e| e.kind),
                bytes.clone().map_err(|e| e.kind),
                "{t:?} written as {written:?} expands differently"
            ),
            Err(e) => panic!("{t:?} written as {written:?} does not parse: {e}"),
        }
        match usage {
            Usage::Bytes => {}
            Usage::Hex => {
                if let Ok(b) = &bytes {
                    let _ = template::decode_hex(b);
                }
            }
            Usage::Regex => {
                let pattern = template::eval_regex(t, env);
                match &pattern {
                    Ok(p) => {
                        if let Some(literal) = t.literal() {
                            assert_eq!(p, &literal, "{t:?}: a literal pattern changes");
                        }
                        if p.len() <= MAX_PATTERN {
                            let _ = template::compile_regex(p);
                        }
                    }
                    Err(e) => self.check_template_error(s, e),
                }
                // Values are escaped into a pattern, never shortened: what fails as bytes
                // fails as a pattern too.
                assert!(
                    bytes.is_ok() || pattern.is_err(),
                    "{t:?}: fails as bytes ({bytes:?}) but not as a pattern"
                );
            }
        }
    }

    fn check_template_error(&self, s: &Scenario, e: &TemplateError) {
        if let Some(span) = e.span() {
            self.assert_contains(span, e);
        }
        let _ = e.help();
        self.check_diagnostic(&s.source.path, &e.to_diagnostic(&s.source));
    }
}

/// What a template's expansion is used as.
#[derive(Debug, Clone, Copy)]
enum Usage {
    Bytes,
    Hex,
    Regex,
}

/// Every template of a scenario, with what it is used as.
fn templates(s: &Scenario) -> Vec<(&Template, Usage)> {
    fn matcher<'s>(m: &'s Matcher, out: &mut Vec<(&'s Template, Usage)>) {
        match m {
            Matcher::Exact(t) | Matcher::Bytes(t) => out.push((t, Usage::Bytes)),
            Matcher::Regex(t) => out.push((t, Usage::Regex)),
            Matcher::Hex(t) => out.push((t, Usage::Hex)),
            Matcher::Packet(p) => packet(p, out),
        }
    }
    fn packet<'s>(p: &'s PacketSpec, out: &mut Vec<(&'s Template, Usage)>) {
        out.extend(p.fields.iter().map(|(_, t)| (t, Usage::Bytes)));
    }
    fn payload<'s>(p: &'s Payload, out: &mut Vec<(&'s Template, Usage)>) {
        match p {
            Payload::Line(t) | Payload::Bytes(t) => out.push((t, Usage::Bytes)),
            Payload::Hex(t) => out.push((t, Usage::Hex)),
            Payload::Packet(p) => packet(p, out),
        }
    }
    fn step<'s>(s: &'s Step, out: &mut Vec<(&'s Template, Usage)>) {
        match &s.kind {
            StepKind::Connect { port, key, .. } => {
                out.extend(port.iter().map(|t| (t, Usage::Bytes)));
                if let Some(ConnectKey {
                    offer: KeySpec::Bytes(t),
                    ..
                }) = key
                {
                    out.push((t, Usage::Bytes));
                }
            }
            StepKind::Bisect(b) => {
                payload(&b.send.payload, out);
                for e in [&b.found, &b.higher, &b.lower] {
                    matcher(&e.matcher, out);
                }
            }
            StepKind::Send(send) => {
                payload(&send.payload, out);
                if let Clear::Template(t) = &send.clear {
                    out.push((t, Usage::Bytes));
                }
            }
            StepKind::Expect(e) => {
                matcher(&e.matcher, out);
                for p in [&e.until, &e.joined].into_iter().flatten() {
                    packet(p, out);
                }
            }
            StepKind::ExpectOutput { matcher: m, .. } => matcher(m, out),
            StepKind::AnyOrder(steps) => steps.iter().for_each(|inner| step(inner, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for s in &s.steps {
        step(s, &mut out);
    }
    for rule in &s.background {
        matcher(&rule.on, &mut out);
        if let Some(t) = &rule.reply {
            out.push((t, Usage::Bytes));
        }
    }
    out
}

/// The expensive expansions left for this input.
struct Budget {
    /// Templates that may cost megabytes still to expand.
    large: usize,
    /// The input's length: a bound on the value of any variable it defines.
    input_len: u64,
}

/// Work (bytes produced by calls) up to which a template is expanded without counting.
const SMALL_WORK: u64 = 1 << 20;
/// Work over which a template is never expanded: `hex` nested many times gets there (each
/// doubles, and the limit is checked on the template's value, not on each call).
const MAX_WORK: u64 = 4 * MAX_EXPANSION as u64;

impl Budget {
    /// Whether to expand `t`: never when it hashes anything but fixed variables, makes an
    /// RSA key, or would produce more than [`MAX_WORK`] bytes on the way, and only while the budget lasts when
    /// it may produce megabytes.
    fn affords(&mut self, t: &Template) -> bool {
        let mut work = 0u64;
        for part in &t.parts {
            if let Part::Expr { expr, .. } = part {
                match self.work(expr) {
                    Some((_, w)) => work = work.saturating_add(w),
                    None => return false,
                }
            }
        }
        if work <= SMALL_WORK {
            true
        } else if work <= MAX_WORK && self.large > 0 {
            self.large -= 1;
            true
        } else {
            false
        }
    }

    /// An upper bound on the length of the value of `expr` and on the bytes its calls
    /// produce; `None` for a PBKDF2 of anything but fixed variables, and for `rsa_key`.
    fn work(&self, expr: &Expr) -> Option<(u64, u64)> {
        let (name, args) = match expr {
            Expr::Var(v) => {
                let len = FIXED_VARS
                    .iter()
                    .find(|(fixed, _)| fixed == v)
                    .map_or(self.input_len, |(_, value)| value.len() as u64);
                return Some((len, 0));
            }
            Expr::Str(s) => return Some((s.len() as u64, 0)),
            Expr::Int(_) => return Some((20, 0)),
            Expr::Call { name, args } => (name.as_str(), args),
        };
        if name == "rsa_key" {
            return None;
        }
        if name == "pbkdf2"
            && !args
                .iter()
                .all(|a| matches!(a, Expr::Var(v) if is_fixed(v)))
        {
            return None;
        }
        let mut lens = Vec::with_capacity(args.len());
        let mut work = 0u64;
        for a in args {
            let (len, w) = self.work(a)?;
            lens.push(len);
            work = work.saturating_add(w);
        }
        let first = lens.first().copied().unwrap_or(0);
        let len = match name {
            "hex" => first.saturating_mul(2),
            "unhex" => first.div_ceil(2),
            "lower" | "upper" | "xor" => first,
            "repeat" => {
                let count = match args.get(1) {
                    Some(Expr::Int(n)) => u64::try_from(*n).unwrap_or(0),
                    Some(Expr::Str(s)) => s.trim().parse().unwrap_or(0),
                    _ => u64::MAX,
                };
                // `repeat` refuses a result over the limit before making it.
                first.saturating_mul(count).min(MAX_EXPANSION as u64)
            }
            "pbkdf2" => 32,
            "sha256" => 64,
            "uuid" | "uuid3" => 36,
            _ => 20,
        };
        Some((len, work.saturating_add(len)))
    }
}

fn is_fixed(name: &str) -> bool {
    FIXED_VARS.iter().any(|(fixed, _)| *fixed == name)
}
