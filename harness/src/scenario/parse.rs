//! Scenario, suite and profile files: YAML nodes -> the model, with every problem of a file
//! reported (not just the first).
//!
//! ```text
//! suite.yaml           protocol, title, vars, timeout, quiet, gap, serial, points, tags,
//!                      background, role, visibility
//! NAME.profile.yaml    vars, reference, skip, xfail   (skip/xfail: id glob -> reason)
//! any other *.yaml     id, title, spec, tags, points, level, serial, timeout, quiet, gap, vars,
//!                      xfail, skip, background, lock, visibility, steps
//! ```
//!
//! Scalars are read as written: `points: 2` is an integer and `serial: true` a boolean
//! only when unquoted; a message is its source text (`S -> C: 0123` is `0123`).
//!
//! A scenario takes `points`, `serial`, `timeout` and `quiet` from its suite when it does
//! not set them, and its tags are the suite's followed by its own. Its `vars` are only its
//! own: the runner layers them over the suite's and a profile's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::diagnostic::{Diagnostic, did_you_mean, suggestion_help};
use super::model::{Level, Profile, Role, Scenario, SourceFile, Span, SuiteConfig, Template};
use super::step;
use super::template;
use super::yaml::{self, Kind, Node};

const SCENARIO_KEYS: &[&str] = &[
    "id",
    "meta",
    "title",
    "spec",
    "tags",
    "points",
    "level",
    "serial",
    "timeout",
    "quiet",
    "gap",
    "vars",
    "xfail",
    "skip",
    "background",
    "lock",
    "visibility",
    "steps",
];
const SUITE_KEYS: &[&str] = &[
    "protocol",
    "title",
    "vars",
    "timeout",
    "quiet",
    "gap",
    "serial",
    "points",
    "tags",
    "background",
    "role",
    "visibility",
];
const PROFILE_KEYS: &[&str] = &["vars", "reference", "skip", "xfail"];

/// Every problem found in one file (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Every diagnostic rendered with its source line, separated by blank lines.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(Diagnostic::render)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One `path:line:col: error: message` line per diagnostic.
impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// What a file in a suite folder is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `suite.yaml` (or `suite.yml`).
    Suite,
    /// `NAME.profile.yaml` (or `.yml`).
    Profile,
    /// Any other `*.yaml` or `*.yml`.
    Scenario,
    /// Not YAML.
    Other,
}

impl FileKind {
    pub fn of(path: &Path) -> Self {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return FileKind::Other;
        };
        let Some(stem) = name
            .strip_suffix(".yaml")
            .or_else(|| name.strip_suffix(".yml"))
        else {
            return FileKind::Other;
        };
        if stem == "suite" {
            FileKind::Suite
        } else if stem.ends_with(".profile") {
            FileKind::Profile
        } else {
            FileKind::Scenario
        }
    }
}

/// The name of a profile file: `course.profile.yaml` -> `course`.
pub fn profile_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(&name);
    stem.strip_suffix(".profile").unwrap_or(stem).to_owned()
}

/// Parses one scenario file. `suite` supplies the defaults (points, timeouts, tags).
pub fn parse_scenario(
    path: &Path,
    text: &str,
    suite: &SuiteConfig,
) -> Result<Scenario, Diagnostics> {
    let mut ctx = Ctx::new(path, text);
    ctx.role = suite.role;
    let scenario = ctx.scenario(suite);
    ctx.finish(scenario)
}

/// Parses a `suite.yaml`. An empty file gives the defaults.
pub fn parse_suite_config(path: &Path, text: &str) -> Result<SuiteConfig, Diagnostics> {
    let mut ctx = Ctx::new(path, text);
    let config = ctx.suite_config();
    ctx.finish(config)
}

/// Parses a profile file; its name is the file name without `.profile.yaml`.
pub fn parse_profile(path: &Path, text: &str) -> Result<Profile, Diagnostics> {
    let mut ctx = Ctx::new(path, text);
    let profile = ctx.profile();
    ctx.finish(profile)
}

/// A file's text as the loaders keep it: without a byte order mark (columns on the first
/// line count from its text), and with YAML's line breaks (`\r\n`, a lone `\r`) as `\n`,
/// so that lines count as the YAML parser counts them.
pub fn source_text(text: &str) -> String {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .replace("\r\n", "\n")
        .replace('\r', "\n")
}

/// The file being parsed and what is wrong with it so far.
pub(crate) struct Ctx {
    pub file: Arc<SourceFile>,
    pub diags: Vec<Diagnostic>,
    /// The side the harness plays in the suite being read (arrows depend on it).
    pub role: Role,
}

/// The known keys of a mapping, each with its key and value node.
pub(crate) struct Fields<'n> {
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    /// Known keys that an unknown key (already reported) looked like: a missing key may
    /// just be misspelt.
    misspelt: Vec<String>,
    /// Where the mapping is (for "missing key" errors).
    pub span: Span,
}

impl<'n> Fields<'n> {
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entry(name).map(|(_, v)| v)
    }

    pub fn entry(&self, name: &str) -> Option<(&'n Node, &'n Node)> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == name)
            .map(|&(_, k, v)| (k, v))
    }

    /// Whether an unknown key looked like `name` (so "missing `name`" would be noise).
    pub fn misspelt(&self, name: &str) -> bool {
        self.misspelt.iter().any(|m| m == name)
    }

    /// The keys present among `names`, in file order.
    pub fn present(&self, names: &[&str]) -> Vec<(&'n str, &'n Node, &'n Node)> {
        self.entries
            .iter()
            .filter(|(k, ..)| names.contains(k))
            .copied()
            .collect()
    }
}

impl Ctx {
    fn new(path: &Path, text: &str) -> Self {
        Self {
            file: Arc::new(SourceFile {
                path: path.to_owned(),
                text: source_text(text),
            }),
            diags: Vec::new(),
            role: Role::Client,
        }
    }

    fn finish<T>(mut self, value: Option<T>) -> Result<T, Diagnostics> {
        self.diags.sort_by_key(|d| (d.span.line, d.span.col));
        match value {
            Some(v) if !self.diags.iter().any(Diagnostic::is_error) => Ok(v),
            _ => Err(Diagnostics(self.diags)),
        }
    }

    pub fn error(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.file, span, message)
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// The document's root, or an error for a file with no YAML in it.
    fn root(&mut self, what: &str, example: &str) -> Option<Node> {
        match yaml::parse(&self.file) {
            Ok(Some(root)) if !root.is_null() => Some(root),
            Ok(_) => {
                let d = self
                    .error(
                        Span {
                            line: 1,
                            col: 1,
                            len: 0,
                        },
                        format!("empty {what}"),
                    )
                    .with_help(example.to_owned());
                self.push(d);
                None
            }
            Err(d) => {
                self.push(d);
                None
            }
        }
    }

    fn scenario(&mut self, suite: &SuiteConfig) -> Option<Scenario> {
        let root = self.root(
            "scenario file",
            "a scenario needs an `id:` and a list of `steps:`, e.g.\n\
             id: kv/get/after-put\n\
             steps:\n  - C -> S: GET colour",
        )?;
        let f = self.fields(&root, SCENARIO_KEYS, "a scenario")?;

        let id_node = f.get("id");
        let id = match id_node {
            Some(n) => self.id(n),
            None if f.misspelt("id") => None,
            None => {
                let d = self.error(f.span, "missing `id`").with_help(format!(
                    "add a unique id, e.g. `id: {}`",
                    self.suggested_id()
                ));
                self.push(d);
                None
            }
        };
        let title = f.get("title").and_then(|n| self.string(n, "title"));
        let spec = f.get("spec").and_then(|n| self.string(n, "spec"));
        let mut tags = suite.tags.clone();
        for tag in f.get("tags").map(|n| self.tags(n)).unwrap_or_default() {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let points = f.get("points").and_then(|n| self.int(n, "points"));
        let level = f.get("level").and_then(|n| self.level(n));
        let serial = f.get("serial").and_then(|n| self.boolean(n, "serial"));
        let timeout = f.get("timeout").and_then(|n| self.duration(n, "timeout"));
        let quiet = f.get("quiet").and_then(|n| self.duration(n, "quiet"));
        let gap = f.get("gap").and_then(|n| self.duration(n, "gap"));
        let vars = f.get("vars").map(|n| self.vars(n)).unwrap_or_default();
        let meta = f
            .get("meta")
            .map(|n| self.scalar_map(n, "meta", |name| !name.is_empty()))
            .unwrap_or_default();
        let xfail = f.get("xfail").and_then(|n| self.string(n, "xfail"));
        let skip = f.get("skip").and_then(|n| self.string(n, "skip"));
        let lock = f.get("lock").and_then(|n| self.string(n, "lock"));
        let hidden = match f.get("visibility") {
            Some(n) => self.visibility(n),
            None => Some(suite.hidden),
        };
        let background = match f.get("background") {
            Some(n) => step::background(self, n),
            None => Some(suite.background.clone()),
        };
        let steps = match f.entry("steps") {
            Some((key, value)) => step::steps(self, key, value),
            None if f.misspelt("steps") => Vec::new(),
            None => {
                let d = self.error(f.span, "missing `steps`").with_help(
                    "list what the scenario does under `steps:`, e.g.\n\
                     steps:\n  - C -> S: GET colour\n  - S -> C: GET blue",
                );
                self.push(d);
                Vec::new()
            }
        };
        // Checkpoint steps (`- points: 2`) make the scenario's total.
        let checkpoints: Option<u32> = steps
            .iter()
            .filter_map(|s| match s.kind {
                crate::scenario::model::StepKind::Points(n) => Some(n),
                _ => None,
            })
            .reduce(|a, b| a.saturating_add(b));
        if let (Some(_), Some((key, _))) = (checkpoints, f.entry("points")) {
            let d = self
                .error(
                    key.span,
                    "a scenario with `points` steps takes its total from them",
                )
                .with_help("remove the scenario's `points:`, or the `- points: N` steps");
            self.push(d);
        }
        Some(Scenario {
            id: id?,
            title,
            spec,
            tags,
            points: checkpoints.or(points).unwrap_or(suite.points),
            level: level.unwrap_or_default(),
            serial: serial.unwrap_or(suite.serial),
            timeout: timeout.unwrap_or(suite.timeout),
            quiet: quiet.unwrap_or(suite.quiet),
            gap: gap.unwrap_or(suite.gap),
            vars,
            meta,
            xfail,
            skip,
            background: background?,
            lock,
            role: suite.role,
            hidden: hidden?,
            steps,
            source: Arc::clone(&self.file),
            span: id_node.map_or(
                Span {
                    line: 1,
                    col: 1,
                    len: 0,
                },
                |n| n.span,
            ),
        })
    }

    fn suggested_id(&self) -> String {
        let path = &self.file.path;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "name".to_owned());
        match path.parent().and_then(Path::file_name) {
            Some(dir) => format!("{}/{stem}", dir.to_string_lossy()),
            None => stem,
        }
    }

    fn id(&mut self, node: &Node) -> Option<String> {
        let id = self.string(node, "id")?;
        if id.is_empty() || id.contains(char::is_whitespace) {
            let d = self
                .error(node.span, "a scenario id cannot be empty or contain spaces")
                .with_help("ids look like `kv/get/after-put`");
            self.push(d);
            return None;
        }
        Some(id)
    }

    fn level(&mut self, node: &Node) -> Option<Level> {
        match node.scalar() {
            Some("must") => Some(Level::Must),
            Some("should") => Some(Level::Should),
            _ => {
                let d = self
                    .error(
                        node.span,
                        format!(
                            "`level` must be `must` or `should`, found {}",
                            node.describe()
                        ),
                    )
                    .with_help_opt(
                        node.scalar()
                            .and_then(|s| did_you_mean(s, ["must", "should"]))
                            .map(|s| format!("did you mean `{s}`?")),
                    );
                self.push(d);
                None
            }
        }
    }

    /// `visibility: visible | hidden`: whether the scenario is hidden.
    fn visibility(&mut self, node: &Node) -> Option<bool> {
        match node.scalar() {
            Some("visible") => Some(false),
            Some("hidden") => Some(true),
            _ => {
                let d = self
                    .error(
                        node.span,
                        format!(
                            "`visibility` must be `visible` or `hidden`, found {}",
                            node.describe()
                        ),
                    )
                    .with_help(
                        "hidden scenarios count in a grade but are left out of the student's report",
                    );
                self.push(d);
                None
            }
        }
    }

    fn role(&mut self, node: &Node) -> Option<Role> {
        match node.scalar() {
            Some("client") => Some(Role::Client),
            Some("server") => Some(Role::Server),
            _ => {
                let d = self
                    .error(
                        node.span,
                        format!(
                            "`role` must be `client` or `server`, found {}",
                            node.describe()
                        ),
                    )
                    .with_help(
                        "`role: server` makes the harness play the server, to test a client \
                         (`harness serve`); the default `client` tests a server",
                    );
                self.push(d);
                None
            }
        }
    }

    fn suite_config(&mut self) -> Option<SuiteConfig> {
        let mut config = SuiteConfig {
            source: Some(Arc::clone(&self.file)),
            ..SuiteConfig::default()
        };
        let root = match yaml::parse(&self.file) {
            Ok(Some(root)) if !root.is_null() => root,
            Ok(_) => return Some(config),
            Err(d) => {
                self.push(d);
                return None;
            }
        };
        let f = self.fields(&root, SUITE_KEYS, "`suite.yaml`")?;
        if let Some(n) = f.get("protocol") {
            config.protocol = self.string(n, "protocol");
        }
        if let Some(n) = f.get("title") {
            config.title = self.string(n, "title");
        }
        if let Some(n) = f.get("vars") {
            config.vars = self.vars(n);
        }
        if let Some(d) = f.get("timeout").and_then(|n| self.duration(n, "timeout")) {
            config.timeout = d;
        }
        if let Some(d) = f.get("quiet").and_then(|n| self.duration(n, "quiet")) {
            config.quiet = d;
        }
        if let Some(d) = f.get("gap").and_then(|n| self.duration(n, "gap")) {
            config.gap = d;
        }
        if let Some(b) = f.get("serial").and_then(|n| self.boolean(n, "serial")) {
            config.serial = b;
        }
        if let Some(p) = f.get("points").and_then(|n| self.int(n, "points")) {
            config.points = p;
        }
        if let Some(n) = f.get("tags") {
            config.tags = self.tags(n);
        }
        if let Some(n) = f.get("role") {
            config.role = self.role(n)?;
        }
        if let Some(n) = f.get("visibility") {
            config.hidden = self.visibility(n)?;
        }
        if let Some(n) = f.get("background") {
            config.background = step::background(self, n)?;
        }
        Some(config)
    }

    fn profile(&mut self) -> Option<Profile> {
        let mut profile = Profile {
            name: profile_name(&self.file.path),
            ..Profile::default()
        };
        let root = match yaml::parse(&self.file) {
            Ok(Some(root)) if !root.is_null() => root,
            Ok(_) => return Some(profile),
            Err(d) => {
                self.push(d);
                return None;
            }
        };
        let f = self.fields(&root, PROFILE_KEYS, "a profile")?;
        if let Some(n) = f.get("vars") {
            profile.vars = self.vars(n);
        }
        if let Some(n) = f.get("reference") {
            profile.reference = self.scalar_map(n, "reference", |_| true);
        }
        if let Some(n) = f.get("skip") {
            profile.skip = self.scalar_map(n, "skip", |_| true);
        }
        if let Some(n) = f.get("xfail") {
            profile.xfail = self.scalar_map(n, "xfail", |_| true);
        }
        Some(profile)
    }

    /// The entries of a mapping whose keys must be among `valid`; unknown and repeated keys
    /// are reported (with a did-you-mean) and left out.
    pub fn fields<'n>(&mut self, node: &'n Node, valid: &[&str], what: &str) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            let d = self.error(
                node.span,
                format!("{what} must be a mapping, found {}", node.describe()),
            );
            self.push(d);
            return None;
        };
        let mut fields = Fields {
            entries: Vec::new(),
            misspelt: Vec::new(),
            span: node.span,
        };
        for (key, value) in entries {
            let Some(name) = key.scalar() else {
                let d = self.error(
                    key.span,
                    format!("keys must be text, found {}", key.describe()),
                );
                self.push(d);
                continue;
            };
            if !valid.contains(&name) {
                let d = self
                    .error(key.span, format!("unknown key `{name}` in {what}"))
                    .with_label("unknown key")
                    .with_help(suggestion_help(name, "keys", valid));
                self.push(d);
                if let Some(like) = did_you_mean(name, valid.iter().copied()) {
                    fields.misspelt.push(like.to_owned());
                }
            } else if let Some((first, _)) = fields.entry(name) {
                let d = self
                    .error(key.span, format!("`{name}` is given twice"))
                    .with_label(format!(
                        "given again here (first on line {})",
                        first.span.line
                    ));
                self.push(d);
            } else {
                fields.entries.push((name, key, value));
            }
        }
        Some(fields)
    }

    pub(crate) fn type_error(
        &mut self,
        node: &Node,
        key: &str,
        expected: &str,
        help: Option<&str>,
    ) {
        let d = self
            .error(
                node.span,
                format!("`{key}` must be {expected}, found {}", node.describe()),
            )
            .with_help_opt(help.map(str::to_owned));
        self.push(d);
    }

    /// Any scalar, as written.
    pub fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match node.scalar() {
            Some(s) if !node.is_null() => Some(s.to_owned()),
            _ => {
                self.type_error(node, key, "text", None);
                None
            }
        }
    }

    pub fn int(&mut self, node: &Node, key: &str) -> Option<u32> {
        let parsed = node
            .scalar()
            .filter(|s| node.is_plain() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok());
        if parsed.is_none() {
            self.type_error(node, key, "a non-negative integer", None);
        }
        parsed
    }

    pub fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.scalar().filter(|_| node.is_plain()) {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => {
                self.type_error(node, key, "`true` or `false`", None);
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        const HELP: &str = "write a number and a unit, e.g. `500ms`, `2s` or `1m`";
        let Some(text) = node.scalar().filter(|_| !node.is_null()) else {
            self.type_error(node, key, "a duration", Some(HELP));
            return None;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let d = self
                    .error(node.span, format!("invalid duration `{text}` for `{key}`"))
                    .with_label(duration_problem(&e))
                    .with_help(HELP);
                self.push(d);
                None
            }
        }
    }

    fn tags(&mut self, node: &Node) -> Vec<String> {
        let Kind::Seq(items) = &node.kind else {
            self.type_error(
                node,
                "tags",
                "a list",
                Some("write `tags: [level1, error]`"),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|n| self.string(n, "tags"))
            .collect()
    }

    /// `vars:`: names that templates can use, each to a scalar.
    pub fn vars(&mut self, node: &Node) -> BTreeMap<String, String> {
        self.scalar_map(node, "vars", |name| {
            // `rename.HEADER` renames a message header; it is not used in templates.
            let name = name.strip_prefix("rename.").unwrap_or(name);
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }

    /// A mapping of names to scalars (an empty value is the empty string).
    fn scalar_map(
        &mut self,
        node: &Node,
        key: &str,
        valid_name: impl Fn(&str) -> bool,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if node.is_null() {
            return out;
        }
        let Kind::Map(entries) = &node.kind else {
            self.type_error(
                node,
                key,
                "a mapping",
                Some("write one `name: value` per line"),
            );
            return out;
        };
        for (k, v) in entries {
            let Some(name) = k.scalar().filter(|n| !n.is_empty()) else {
                let d = self.error(k.span, format!("`{key}` names must be text"));
                self.push(d);
                continue;
            };
            if !valid_name(name) {
                let d = self
                    .error(k.span, format!("`{name}` is not a valid variable name"))
                    .with_help(
                        "variable names are letters, digits and `_`, not starting with a \
                         digit, so that templates can use them as `{{name}}`",
                    );
                self.push(d);
                continue;
            }
            if out.contains_key(name) {
                let d = self.error(k.span, format!("`{name}` is given twice"));
                self.push(d);
                continue;
            }
            let value = match &v.kind {
                _ if v.is_null() => String::new(),
                Kind::Scalar { value, .. } => value.clone(),
                _ => {
                    self.type_error(
                        v,
                        name,
                        "text",
                        Some("quote a value that starts with `{` or `[`"),
                    );
                    continue;
                }
            };
            out.insert(name.to_owned(), value);
        }
        out
    }

    /// A scalar as a template; `skip` bytes of its value (a `re:` prefix) are left out.
    pub fn template(&mut self, node: &Node, skip: usize) -> Option<Template> {
        let text = node
            .scalar()
            .filter(|_| !node.is_null())
            .unwrap_or_default();
        let text = text.get(skip..).unwrap_or_default();
        let cols = node.value_columns(&self.file);
        let cols = cols.as_deref().and_then(|c| c.get(skip..));
        match template::parse_mapped(text, node.span, cols) {
            Ok(t) => Some(t),
            Err(e) => {
                let d = e.to_diagnostic(&self.file);
                self.push(d);
                None
            }
        }
    }
}

/// A short label for a duration that did not parse.
fn duration_problem(e: &humantime::DurationError) -> String {
    match e {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            "no unit".to_owned()
        }
        humantime::DurationError::UnknownUnit { unit, .. } => format!("unknown unit `{unit}`"),
        humantime::DurationError::NumberOverflow => "too large, or finer than 1ns".to_owned(),
        humantime::DurationError::Empty => "empty".to_owned(),
        _ => "not a number followed by a unit".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;

    #[test]
    fn file_kinds() {
        let kind = |p: &str| FileKind::of(&PathBuf::from(p));
        assert_eq!(kind("kv/suite.yaml"), FileKind::Suite);
        assert_eq!(kind("kv/suite.yml"), FileKind::Suite);
        assert_eq!(kind("kv/course.profile.yaml"), FileKind::Profile);
        assert_eq!(kind("kv/put-get.yml"), FileKind::Scenario);
        assert_eq!(kind("kv/README.md"), FileKind::Other);
        assert_eq!(
            profile_name(&PathBuf::from("kv/course.profile.yaml")),
            "course"
        );
    }
}
