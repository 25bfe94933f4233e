//! The typed model of a scenario suite, as the parser produces it and the runner consumes it.
//!
//! Every step and every template carries the [`Span`] it was read from, so a failure at run
//! time can point back to `file:line:col` and underline the offending text.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A 1-based position in a scenario file, with the length (in characters) to underline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

/// A scenario or suite file: its path as the user named it (for display) and its text.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// The text of the 1-based line `line`, without its line end.
    pub fn line(&self, line: u32) -> Option<&str> {
        self.text
            .lines()
            .nth((line as usize).checked_sub(1)?)
            .map(|l| l.trim_end_matches('\r'))
    }
}

/// `must` scenarios fail the run; `should` scenarios are reported but do not fail it unless
/// the run is `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    #[default]
    Must,
    Should,
}

/// Which side of the protocol the harness plays in a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The harness is the client: it connects to the server under test (`harness run`).
    #[default]
    Client,
    /// The harness is the server: it accepts the connections of the client under test
    /// (`harness serve`); in arrows `S -> C` sends and `C -> S` expects.
    Server,
}

/// A folder of scenarios and its `suite.yaml` defaults.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The folder, as the user named it (or as found under a folder they named).
    pub dir: PathBuf,
    pub config: SuiteConfig,
    /// Sorted by file name.
    pub scenarios: Vec<Scenario>,
}

/// The contents of `suite.yaml`; every field has a default so the file is optional.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Protocol adapter name (`kv`, ...). Defaults to the folder name when it names a protocol.
    pub protocol: Option<String>,
    pub title: Option<String>,
    /// Suite variables; overridden by a profile, then by `--var`.
    pub vars: BTreeMap<String, String>,
    /// Default deadline of every expectation (`timeout:`, default 2s).
    pub timeout: Duration,
    /// A message without a line end is complete after this much quiet (`quiet:`, default 200ms).
    pub quiet: Duration,
    /// `gap:` a pause before a send that follows another send on the same connection with
    /// nothing received between them, for protocols framed by pauses (default none).
    pub gap: Duration,
    /// Run this suite's scenarios one at a time.
    pub serial: bool,
    /// Points of a scenario that does not declare its own (default 1).
    pub points: u32,
    /// Tags added to every scenario of the suite.
    pub tags: Vec<String>,
    /// `visibility: hidden` hides every scenario of the suite from students' reports.
    pub hidden: bool,
    /// Messages answered or ignored whenever no step expects them (`background:`).
    pub background: Vec<BackgroundRule>,
    /// `role: server` makes the harness play the server side (default `client`).
    pub role: Role,
    pub source: Option<Arc<SourceFile>>,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            protocol: None,
            title: None,
            vars: BTreeMap::new(),
            timeout: Duration::from_secs(2),
            quiet: Duration::from_millis(200),
            gap: Duration::ZERO,
            serial: false,
            points: 1,
            tags: Vec::new(),
            hidden: false,
            background: Vec::new(),
            role: Role::Client,
            source: None,
        }
    }
}

/// A profile file (`NAME.profile.yaml` in a suite folder, or any path given to `--profile`):
/// variable overrides for a dialect, and the settings of the built-in reference server that
/// match it.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: String,
    pub vars: BTreeMap<String, String>,
    /// `reference:` settings passed to the protocol adapter when it starts the built-in
    /// reference server (e.g. `dialect: course`).
    pub reference: BTreeMap<String, String>,
    /// `skip:` scenario id globs (`*` matches anything) that do not apply to the dialect,
    /// with the reason.
    pub skip: BTreeMap<String, String>,
    /// `xfail:` scenario id globs the dialect is known to fail, with the reason.
    pub xfail: BTreeMap<String, String>,
}

impl Profile {
    /// The scenario as this profile runs it: skipped or expected to fail where it says so.
    pub fn apply(&self, scenario: &Scenario) -> Scenario {
        let mut s = scenario.clone();
        let find = |map: &BTreeMap<String, String>| {
            map.iter()
                .find(|(glob, _)| glob_match(glob, &scenario.id))
                .map(|(_, reason)| format!("{reason} (profile {})", self.name))
        };
        if let Some(reason) = find(&self.skip) {
            s.skip = Some(reason);
        }
        if let Some(reason) = find(&self.xfail) {
            s.xfail = Some(reason);
        }
        s
    }
}

/// Whether `text` matches `glob`, where `*` stands for any run of characters.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// One scenario file.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: String,
    pub title: Option<String>,
    pub spec: Option<String>,
    pub tags: Vec<String>,
    pub points: u32,
    pub level: Level,
    pub serial: bool,
    /// Default deadline of this scenario's expectations (suite default if absent).
    pub timeout: Duration,
    pub quiet: Duration,
    pub gap: Duration,
    /// Scenario variables (override suite vars, are overridden by `--var`).
    pub vars: BTreeMap<String, String>,
    /// `meta:` facts about the scenario that tools keep and the runner ignores (how it was
    /// found: `harness fuzz` writes its seed and case there).
    pub meta: BTreeMap<String, String>,
    /// `xfail: reason`: the scenario is expected to fail (a known bug of the reference).
    pub xfail: Option<String>,
    /// `skip: reason`.
    pub skip: Option<String>,
    /// The background rules in force: the scenario's own `background:`, else the suite's.
    pub background: Vec<BackgroundRule>,
    /// `lock: name`: scenarios holding the same lock never run at the same time (they share
    /// state on the target, such as the one game a chat server runs), though each may run
    /// alongside every other scenario.
    pub lock: Option<String>,
    /// The side the harness plays (the suite's `role:`).
    pub role: Role,
    /// `visibility: hidden`: the scenario counts in the score but students do not see it.
    pub hidden: bool,
    pub steps: Vec<Step>,
    pub source: Arc<SourceFile>,
    /// Where the scenario's id is written (the value of `id:`), or line 1, col 1.
    pub span: Span,
}

/// One step and where it was written: for an arrow step (`S -> C: GET blue`) the span of
/// its message (`GET blue`, or the arrow when the message is empty), so that a failure
/// underlines what was expected; for any other step its key (`send`, `expect_close`, ...).
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: StepKind,
    pub span: Span,
}

/// What a step does. `conn` is always resolved by the parser: a step that names no
/// connection uses the connection of the nearest earlier step that named one, or `C`.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Open a connection explicitly (sends and expects open it implicitly too).
    Connect {
        conn: String,
        /// `port:` another port of the target host: a number, or `+N` for the target's port
        /// plus N (e.g. a data channel beside the control port).
        port: Option<Template>,
        /// `key:` what an `rsa` connection offers instead of a fresh key (`kv-rsa` only).
        key: Option<ConnectKey>,
    },
    /// Binary search for a number the target hides: send with `var` set to the middle of the
    /// range, narrow the range by the reply, until a reply matches `found`.
    Bisect(Box<Bisect>),
    Send(Send),
    Expect(Expect),
    /// The peer must close the connection within the deadline, sending nothing more.
    ExpectClose {
        conn: String,
        within: Option<Duration>,
    },
    /// Nothing may arrive on `conn` (or on any open connection when `None`) for `duration`.
    ExpectSilence {
        conn: Option<String>,
        duration: Duration,
    },
    Sleep(Duration),
    /// Close our writing side only (TLS close_notify, then FIN) and keep reading: the
    /// target sees the end of the stream and may still answer.
    Shutdown {
        conn: String,
    },
    /// Server role: wait for the client under test to open its next connection.
    Accept {
        conn: String,
        within: Option<Duration>,
    },
    /// Server role: the client under test exits within the deadline, with `code` if given.
    ExpectExit {
        code: Option<i32>,
        within: Option<Duration>,
    },
    /// Server role: a line the client under test printed (to stdout, or stderr) matches
    /// (`Exact` or `Regex`); waits for it until the deadline or the client's exit.
    ExpectOutput {
        matcher: Matcher,
        stderr: bool,
        within: Option<Duration>,
    },
    /// `points: N` as a step: a checkpoint. Reaching it earns N points, so a scenario made
    /// of checkpoints gives partial credit; its total is the sum of its checkpoints.
    Points(u32),
    /// Expectations met in whatever order their messages arrive (each an `Expect` step).
    AnyOrder(Vec<Step>),
    /// Close our side of the connection (TLS close_notify, then FIN), then wait briefly for
    /// the target to close its side, so later steps see a target that handled the close.
    Close {
        conn: String,
    },
}

/// `connect: { key: ... }`: the client's public key on an `rsa` connection, other than the
/// fresh one the transport makes. Either way there is no key exchange: no key of the
/// server's is awaited and every send goes out as it is, unencrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectKey {
    pub offer: KeySpec,
    /// The `key` key, for errors about the option itself.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// `key: none`: no key at all (a message before the key).
    None,
    /// `key: "<template>"`: its expansion is sent as the key, in one write (a malformed
    /// key, a key of the wrong size with `{{rsa_key(1024)}}`).
    Bytes(Template),
}

/// `send: { ..., clear: ... }`: whether the bytes skip the encryption of an `rsa`
/// connection. Other transports send every message as it is, so it has no effect there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Clear {
    /// Encrypted (on an `rsa` connection): the default.
    #[default]
    No,
    /// `clear: true`: the bytes go out as they are.
    Yes,
    /// `clear: "{{var}}"`: a template that must expand to `true` or `false` when the step
    /// runs (a dialect variable such as `hash_in_clear`).
    Template(Template),
}

#[derive(Debug, Clone)]
pub struct Send {
    pub conn: String,
    pub payload: Payload,
    /// Split the bytes into several writes at these offsets (strictly increasing; each
    /// inside what goes on the wire: the message, or its RSA block on an encrypted
    /// connection).
    pub split: Vec<usize>,
    /// Where each offset of `split` is written.
    pub split_spans: Vec<Span>,
    /// Pause between the writes of a split send.
    pub pause: Duration,
    /// Packets only: cut `data` into packets of at most this many bytes, each its own
    /// write, `flag` 0 on all but the last, which gets 1.
    pub chunk: Option<usize>,
    /// Send the bytes unencrypted on an `rsa` connection.
    pub clear: Clear,
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// A text message: the template, then the suite's `line_end` var (default `\n`).
    Line(Template),
    /// Exactly the bytes the template expands to.
    Bytes(Template),
    /// The template expands to hex digits (whitespace ignored), sent as the bytes they encode.
    Hex(Template),
    /// A binary packet given field by field; the protocol encodes it (computing the length
    /// and checksum unless the fields give them).
    Packet(PacketSpec),
}

/// `packet: { flag: 1, keyword: sbmt, ... }`: fields of a binary packet, in the order written.
/// In an expectation a field may be `<any>` or `<any:name>` (bound to a variable).
#[derive(Debug, Clone)]
pub struct PacketSpec {
    pub fields: Vec<(String, Template)>,
    pub span: Span,
}

impl PacketSpec {
    pub fn get(&self, name: &str) -> Option<&Template> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

#[derive(Debug, Clone)]
pub struct Expect {
    /// The connection, or `others`: every open connection but the one that sent last.
    pub conn: String,
    pub matcher: Matcher,
    /// Deadline for this message; the scenario's `timeout` when absent.
    pub within: Option<Duration>,
    /// JSON bodies may hold keys the expectation does not name.
    pub subset: bool,
    /// The message must arrive this long after the previous message on its connection.
    pub at: Option<At>,
    /// Packets only: expect packets like `matcher` over and over, until one whose fields
    /// match these (a stream that ends with a flagged packet). `<any+:name>` fields gather
    /// the packets' values into one variable.
    pub until: Option<PacketSpec>,
    /// With `until`: fields whose values, joined over every packet of the stream, must
    /// equal these (e.g. the whole text, however the peer cut it into packets).
    pub joined: Option<PacketSpec>,
}

/// `bisect:` a number guessed by halving a range.
#[derive(Debug, Clone)]
pub struct Bisect {
    pub conn: String,
    /// The variable holding the current guess in `send`.
    pub var: String,
    pub low: i64,
    pub high: i64,
    pub send: Send,
    /// The guess is right: stop.
    pub found: Expect,
    /// The guess is below the number: search above it.
    pub higher: Expect,
    /// The guess is above the number: search below it.
    pub lower: Expect,
}

/// `at: 10s, tolerance: 100ms`: a message due at a set time after the previous message
/// received on the same connection (or after the connection opened, if none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub after: Duration,
    pub tolerance: Duration,
}

/// A background rule: a message matching `on` that no step is waiting for is answered with
/// `reply` (when given) and otherwise ignored, on whichever connection it arrives.
#[derive(Debug, Clone)]
pub struct BackgroundRule {
    pub on: Matcher,
    pub reply: Option<Template>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Matcher {
    /// The next message equals the expansion exactly.
    Exact(Template),
    /// The next message matches the regular expression (anchored at both ends) that the
    /// template expands to; named groups `(?P<name>...)` become variables.
    Regex(Template),
    /// The next message's bytes equal the expansion (no line framing assumed).
    Bytes(Template),
    /// As `Bytes`, given as hex digits.
    Hex(Template),
    /// A binary packet whose fields match, and whose checksum is right unless the spec names
    /// a `checksum`.
    Packet(PacketSpec),
}

/// A string with `{{ ... }}` expressions, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
    /// Where the template text starts in the file (for carets).
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Expr { expr: Expr, span: Span },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A variable: suite/profile/`--var`/capture, or the built-in `uniq`.
    Var(String),
    /// `'text'` or `"text"`.
    Str(String),
    Int(i64),
    /// `name(arg, ...)`: `pbkdf2`, `crc32`, `hex`, `unhex`, `len`, `repeat`.
    Call {
        name: String,
        args: Vec<Expr>,
    },
}

/// Which scenarios a command takes (`--filter`, `--tag`, `--level`); empty selects all.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Id globs (`*` matches anything); a scenario matching any of them is taken.
    pub ids: Vec<String>,
    /// Tags; a scenario with any of them is taken.
    pub tags: Vec<String>,
    pub level: Option<Level>,
    /// `(k, n)`: of the scenarios selected otherwise, in suite and file order, every n-th
    /// from the k-th (1-based), so that n machines share a long suite.
    pub shard: Option<(usize, usize)>,
}

impl Selection {
    /// Whether `scenario` is selected.
    pub fn takes(&self, scenario: &Scenario) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|g| glob_match(g, &scenario.id)))
            && (self.tags.is_empty() || self.tags.iter().any(|t| scenario.tags.contains(t)))
            && self.level.is_none_or(|l| l == scenario.level)
    }

    /// The suites with only the selected scenarios; suites left empty are dropped.
    pub fn apply(&self, suites: Vec<Suite>) -> Vec<Suite> {
        let mut index = 0usize;
        suites
            .into_iter()
            .filter_map(|mut suite| {
                suite.scenarios.retain(|s| {
                    if !self.takes(s) {
                        return false;
                    }
                    let i = index;
                    index += 1;
                    self.shard.is_none_or(|(k, n)| i % n == k - 1)
                });
                (!suite.scenarios.is_empty()).then_some(suite)
            })
            .collect()
    }
}
