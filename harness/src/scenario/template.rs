//! Templates: `{{ expr }}` inside the text of a message, expanded to bytes when a step runs.
//!
//! ```text
//! template := (text | "{{" ws expr ws "}}")*
//! expr     := ident | 'str' | "str" | integer | ident ws "(" [expr ("," expr)*] ")"
//! ident    := [A-Za-z_][A-Za-z0-9_]*
//! integer  := -?[0-9]+
//! ```
//!
//! Strings have no escapes: write `"it's"` or `'say "hi"'`, and `{{'{{'}}` for a literal `{{`.
//! Values are bytes. A variable comes from the suite, a profile, `--var`, a named group of an
//! earlier `re:` expectation, or is the built-in `uniq`. The functions are the few the
//! protocols need:
//!
//! ```text
//! pbkdf2(password)         32 raw bytes, PBKDF2-HMAC-SHA256 with the hex var `salt`
//!                          (or the spec's test salt when `salt` is not set)
//! pbkdf2(password, salt)   the same with an explicit salt given in hex
//! crc32(s)                 CRC-32 of s as unsigned decimal
//! hex(b) / unhex(s)        lower-case hex of b / the bytes hex digits s stand for
//! len(b)                   length of b in bytes, decimal
//! repeat(s, n)             s n times (at most 16 MiB in all)
//! lower(s) / upper(s)      ASCII case conversion
//! rsa_key(bits)            a fresh RSA public key of `bits` bits (256 to 4096, a multiple
//!                          of 8) as a PKCS#1 PEM block with its line feed: the key of the
//!                          wrong size a kv-rsa scenario offers (`key: "{{rsa_key(1024)}}"`)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use reference_impl::kv::auth::{TEST_SALT, crc32, hash_password};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::{
    Clear, ConnectKey, Expr, KeySpec, Matcher, Part, Payload, Scenario, SourceFile, Span, StepKind,
    Template,
};

/// Largest expansion of a template (and of any one function call in it).
pub const MAX_EXPANSION: usize = 16 * 1024 * 1024;

/// Variables the runner always sets.
pub const BUILTIN_VARS: &[&str] = &["uniq"];

/// The functions, with the smallest and largest number of arguments each takes.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("pbkdf2", 1, 2),
    ("crc32", 1, 1),
    ("hex", 1, 1),
    ("unhex", 1, 1),
    ("len", 1, 1),
    ("repeat", 2, 2),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("uuid", 1, 2),
    ("sha256", 1, 1),
    ("xor", 2, 2),
    ("uuid3", 1, 1),
    ("rsa_key", 1, 1),
];

/// Key sizes `rsa_key(bits)` makes.
pub const RSA_KEY_BITS: std::ops::RangeInclusive<usize> = 256..=4096;

/// Variables as bytes: what templates are expanded against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, Vec<u8>>,
}

impl Env {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) a variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.vars.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars.get(name).map(Vec::as_slice)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Sets every variable of a string map (suite, profile or scenario `vars:`).
    pub fn set_all<'a>(&mut self, vars: impl IntoIterator<Item = (&'a String, &'a String)>) {
        for (k, v) in vars {
            self.set(k.clone(), v.clone().into_bytes());
        }
    }

    /// Variable names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }
}

/// A template that could not be parsed or expanded, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct TemplateError {
    pub kind: TemplateErrorKind,
    /// The `{{ ... }}` (or the character) at fault.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateErrorKind {
    #[error("`{{{{` is not closed by `}}}}`")]
    Unclosed,
    #[error("invalid template: {0}")]
    Syntax(String),
    #[error("unknown variable `{name}`")]
    UnknownVariable {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown function `{name}`")]
    UnknownFunction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("`{name}` takes {expected}, found {found}")]
    Arity {
        name: String,
        expected: String,
        found: usize,
    },
    #[error("`{function}`: {message}")]
    BadArgument { function: String, message: String },
    #[error("the template expands to more than {} MiB", MAX_EXPANSION >> 20)]
    TooLarge,
    #[error("`{{{{...}}}}` in a regular expression expanded to bytes that are not UTF-8")]
    NotUtf8,
}

impl TemplateError {
    fn new(kind: TemplateErrorKind, span: Span) -> Self {
        Self { kind, span }
    }

    /// Where the error is, when known (templates built by hand have no position).
    pub fn span(&self) -> Option<Span> {
        (self.span.line != 0).then_some(self.span)
    }

    /// How to fix it.
    pub fn help(&self) -> Option<String> {
        match &self.kind {
            TemplateErrorKind::Unclosed => {
                Some("close it with `}}`; write `{{'{{'}}` for a literal `{{`".to_owned())
            }
            TemplateErrorKind::UnknownVariable { suggestion, .. } => Some(match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => "variables come from suite or scenario `vars:`, a profile, `--var`, \
                         or a named group `(?P<name>...)` of an earlier `re:` expectation"
                    .to_owned(),
            }),
            TemplateErrorKind::UnknownFunction { suggestion, .. } => Some(match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "the functions are {}",
                    FUNCTIONS
                        .iter()
                        .map(|(n, ..)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            _ => None,
        }
    }

    /// The error as a diagnostic in `file`.
    pub fn to_diagnostic(&self, file: &Arc<SourceFile>) -> Diagnostic {
        let d = Diagnostic::error(file, self.span, self.to_string()).with_help_opt(self.help());
        match self.kind {
            TemplateErrorKind::Unclosed => d.with_label("opened here"),
            _ => d,
        }
    }
}

/// Parses `text`, taken to be written at `span` on one line (so `{{` at byte `i` of a
/// one-line ASCII text is at column `span.col + i`).
pub fn parse(text: &str, span: Span) -> Result<Template, TemplateError> {
    let mut cols = vec![0; text.len() + 1];
    let offsets = text.char_indices().map(|(b, _)| b).chain([text.len()]);
    for (i, b) in offsets.enumerate() {
        cols[b] = span
            .col
            .saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
    }
    parse_mapped(text, span, Some(&cols))
}

/// Parses `text` whose characters were written at the columns `cols` (see
/// `yaml::Node::value_columns`); without `cols`, every expression points at `span`.
pub(crate) fn parse_mapped(
    text: &str,
    span: Span,
    cols: Option<&[u32]>,
) -> Result<Template, TemplateError> {
    let mut p = ExprParser {
        text,
        pos: 0,
        span,
        cols,
    };
    let mut parts = Vec::new();
    let mut lit = String::new();
    while let Some(i) = text[p.pos..].find("{{") {
        let open = p.pos + i;
        lit.push_str(&text[p.pos..open]);
        p.pos = open + 2;
        p.skip_ws();
        if p.pos >= text.len() || !text[p.pos..].contains("}}") {
            return Err(TemplateError::new(
                TemplateErrorKind::Unclosed,
                p.span_of(open, open + 2),
            ));
        }
        let expr = p.expr()?;
        p.skip_ws();
        if !p.eat("}}") {
            return Err(p.error_here(format!("expected `}}}}`, found {}", p.found())));
        }
        let expr_span = p.span_of(open, p.pos);
        validate(&expr, expr_span)?;
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(Part::Expr {
            expr,
            span: expr_span,
        });
    }
    lit.push_str(&text[p.pos..]);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(Template { parts, span })
}

struct ExprParser<'a> {
    text: &'a str,
    pos: usize,
    span: Span,
    cols: Option<&'a [u32]>,
}

impl ExprParser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, s: &str) -> bool {
        let ok = self.rest().starts_with(s);
        if ok {
            self.pos += s.len();
        }
        ok
    }

    fn found(&self) -> String {
        match self.rest().chars().next() {
            Some(c) => format!("`{c}`"),
            None => "the end of the text".to_owned(),
        }
    }

    /// The source span of `text[start..end]`.
    fn span_of(&self, start: usize, end: usize) -> Span {
        let col = |b: usize| {
            self.cols
                .and_then(|c| c.get(b).copied())
                .filter(|&c| c != 0)
        };
        match (col(start), col(end)) {
            (Some(a), Some(b)) if b >= a => Span {
                line: self.span.line,
                col: a,
                len: (b - a).max(1),
            },
            _ => self.span,
        }
    }

    fn error_here(&self, message: String) -> TemplateError {
        let end = self.pos + self.rest().chars().next().map_or(0, char::len_utf8);
        TemplateError::new(
            TemplateErrorKind::Syntax(message),
            self.span_of(self.pos, end),
        )
    }

    fn expr(&mut self) -> Result<Expr, TemplateError> {
        self.expr_at(0)
    }

    fn expr_at(&mut self, depth: usize) -> Result<Expr, TemplateError> {
        if depth > 32 {
            return Err(self.error_here("calls nest too deep".to_owned()));
        }
        let rest = self.rest();
        let Some(c) = rest.chars().next() else {
            return Err(self.error_here("expected an expression".to_owned()));
        };
        match c {
            '\'' | '"' => {
                let Some(len) = rest[1..].find(c) else {
                    return Err(self.error_here(format!("string is not closed by {c}")));
                };
                let s = rest[1..1 + len].to_owned();
                self.pos += len + 2;
                Ok(Expr::Str(s))
            }
            '-' | '0'..='9' => {
                let len = 1 + rest[1..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len() - 1);
                let digits = &rest[..len];
                let n = digits
                    .parse()
                    .map_err(|_| self.error_here(format!("`{digits}` is not an integer")))?;
                self.pos += len;
                Ok(Expr::Int(n))
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let name = rest[..len].to_owned();
                self.pos += len;
                let before_ws = self.pos;
                self.skip_ws();
                if !self.eat("(") {
                    self.pos = before_ws;
                    return Ok(Expr::Var(name));
                }
                let mut args = Vec::new();
                self.skip_ws();
                if !self.eat(")") {
                    loop {
                        self.skip_ws();
                        args.push(self.expr_at(depth + 1)?);
                        self.skip_ws();
                        if self.eat(")") {
                            break;
                        }
                        if !self.eat(",") {
                            return Err(self.error_here(format!(
                                "expected `,` or `)`, found {}",
                                self.found()
                            )));
                        }
                    }
                }
                Ok(Expr::Call { name, args })
            }
            _ => Err(self.error_here(format!("expected an expression, found {}", self.found()))),
        }
    }
}

/// Function names and argument counts are known before anything runs, and so are literal
/// key sizes.
fn validate(expr: &Expr, span: Span) -> Result<(), TemplateError> {
    if let Expr::Call { name, args } = expr {
        check_call(name, args.len()).map_err(|k| TemplateError::new(k, span))?;
        if name == "rsa_key"
            && let [arg @ (Expr::Int(_) | Expr::Str(_))] = args.as_slice()
        {
            let text = match arg {
                Expr::Int(n) => n.to_string(),
                Expr::Str(s) => s.clone(),
                _ => String::new(),
            };
            key_bits(text.as_bytes()).map_err(|message| {
                TemplateError::new(
                    TemplateErrorKind::BadArgument {
                        function: name.clone(),
                        message,
                    },
                    span,
                )
            })?;
        }
        for a in args {
            validate(a, span)?;
        }
    }
    Ok(())
}

fn check_call(name: &str, found: usize) -> Result<(), TemplateErrorKind> {
    let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(n, ..)| *n == name) else {
        return Err(TemplateErrorKind::UnknownFunction {
            name: name.to_owned(),
            suggestion: did_you_mean(name, FUNCTIONS.iter().map(|(n, ..)| *n)).map(str::to_owned),
        });
    };
    if (min..=max).contains(&found) {
        return Ok(());
    }
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    let expected = if min == max {
        format!("{min} {}", plural(min))
    } else {
        format!("{min} or {max} arguments")
    };
    Err(TemplateErrorKind::Arity {
        name: name.to_owned(),
        expected,
        found,
    })
}

/// Expands the template to bytes.
pub fn eval(t: &Template, env: &Env) -> Result<Vec<u8>, TemplateError> {
    let mut out = Vec::new();
    for part in &t.parts {
        match part {
            Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
            Part::Expr { expr, span } => {
                let v = eval_expr(expr, env).map_err(|k| TemplateError::new(k, *span))?;
                out.extend_from_slice(&v);
            }
        }
        if out.len() > MAX_EXPANSION {
            return Err(TemplateError::new(TemplateErrorKind::TooLarge, t.span));
        }
    }
    Ok(out)
}

/// Expands a regular-expression template: the text is regex syntax, the values of
/// `{{ ... }}` are matched literally (escaped).
pub fn eval_regex(t: &Template, env: &Env) -> Result<String, TemplateError> {
    let mut out = String::new();
    for part in &t.parts {
        match part {
            Part::Lit(s) => out.push_str(s),
            Part::Expr { expr, span } => {
                let v = eval_expr(expr, env).map_err(|k| TemplateError::new(k, *span))?;
                let s = String::from_utf8(v)
                    .map_err(|_| TemplateError::new(TemplateErrorKind::NotUtf8, *span))?;
                out.push_str(&regex::escape(&s));
            }
        }
        if out.len() > MAX_EXPANSION {
            return Err(TemplateError::new(TemplateErrorKind::TooLarge, t.span));
        }
    }
    Ok(out)
}

/// Compiles an expectation's pattern so that it must match the whole message.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    // Compiled alone first, so that a stray `)` cannot close the anchoring group.
    regex::Regex::new(pattern)?;
    regex::Regex::new(&format!(r"\A(?:{pattern})\z"))
}

fn eval_expr(expr: &Expr, env: &Env) -> Result<Vec<u8>, TemplateErrorKind> {
    match expr {
        Expr::Var(name) => {
            env.get(name)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| TemplateErrorKind::UnknownVariable {
                    name: name.clone(),
                    suggestion: did_you_mean(name, env.names()).map(str::to_owned),
                })
        }
        Expr::Str(s) => Ok(s.as_bytes().to_vec()),
        Expr::Int(n) => Ok(n.to_string().into_bytes()),
        Expr::Call { name, args } => {
            check_call(name, args.len())?;
            let values = args
                .iter()
                .map(|a| eval_expr(a, env))
                .collect::<Result<Vec<_>, _>>()?;
            call(name, &values, env)
        }
    }
}

/// PBKDF2 with 100,000 rounds costs milliseconds, and every scenario of a suite logs in with
/// the same few passwords: remember the last results.
fn cached_hash(password: &[u8], salt: &[u8]) -> [u8; 32] {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<(Vec<u8>, Vec<u8>), [u8; 32]>>;
    const MAX_CACHED: usize = 64;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = (password.to_vec(), salt.to_vec());
    if let Some(hash) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return hash;
    }
    let hash = hash_password(password, salt);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(key, hash);
    }
    hash
}

fn call(name: &str, args: &[Vec<u8>], env: &Env) -> Result<Vec<u8>, TemplateErrorKind> {
    let bad = |message: String| TemplateErrorKind::BadArgument {
        function: name.to_owned(),
        message,
    };
    let a = args.first().map(Vec::as_slice).unwrap_or_default();
    Ok(match name {
        "pbkdf2" => {
            let salt = match (args.get(1), env.get("salt")) {
                (Some(salt), _) => decode_hex(salt).map_err(|e| bad(format!("salt: {e}")))?,
                (None, Some(salt)) => {
                    decode_hex(salt).map_err(|e| bad(format!("variable `salt`: {e}")))?
                }
                (None, None) => TEST_SALT.to_vec(),
            };
            cached_hash(a, &salt).to_vec()
        }
        "crc32" => crc32(a).to_string().into_bytes(),
        "hex" => {
            // Each call doubles its input: nested calls must not grow past the limit
            // before the template's final value is checked.
            if a.len().saturating_mul(2) > MAX_EXPANSION {
                return Err(TemplateErrorKind::TooLarge);
            }
            hex::encode(a).into_bytes()
        }
        "unhex" => decode_hex(a).map_err(bad)?,
        "len" => a.len().to_string().into_bytes(),
        "repeat" => {
            let n = args.get(1).map(Vec::as_slice).unwrap_or_default();
            let n: usize = std::str::from_utf8(n)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "the count must be a non-negative integer, found `{}`",
                        String::from_utf8_lossy(n)
                    ))
                })?;
            if a.len()
                .checked_mul(n)
                .is_none_or(|total| total > MAX_EXPANSION)
            {
                return Err(TemplateErrorKind::TooLarge);
            }
            a.repeat(n)
        }
        "lower" => a.to_ascii_lowercase(),
        "upper" => a.to_ascii_uppercase(),
        "uuid" => uuid_from(args).into_bytes(),
        "uuid3" => uuid::Uuid::new_v3(&uuid::Uuid::NAMESPACE_URL, a)
            .to_string()
            .into_bytes(),
        "xor" => {
            let key = args.get(1).map(Vec::as_slice).unwrap_or_default();
            if key.is_empty() {
                return Err(bad("the key is empty".to_owned()));
            }
            a.iter()
                .zip(key.iter().cycle())
                .map(|(b, k)| b ^ k)
                .collect()
        }
        "sha256" => {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(a)).into_bytes()
        }
        "rsa_key" => rsa_public_key(key_bits(a).map_err(bad)?).map_err(bad)?,
        _ => {
            return Err(TemplateErrorKind::UnknownFunction {
                name: name.to_owned(),
                suggestion: None,
            });
        }
    })
}

/// The key size `rsa_key` was given, if it is one it makes.
fn key_bits(arg: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(arg);
    match text.trim().parse::<usize>() {
        Ok(bits) if RSA_KEY_BITS.contains(&bits) && bits % 8 == 0 => Ok(bits),
        _ => Err(format!(
            "the key size must be a multiple of 8 from {} to {} bits, found `{text}`",
            RSA_KEY_BITS.start(),
            RSA_KEY_BITS.end()
        )),
    }
}

/// A fresh RSA public key of `bits` bits as a PKCS#1 PEM block (its private half is
/// dropped at once: nothing can decrypt for it).
fn rsa_public_key(bits: usize) -> Result<Vec<u8>, String> {
    let private = rsa::PrivateKey::new_unchecked(&mut getrandom::SysRng, bits)
        .map_err(|e| format!("cannot make a {bits}-bit key: {e}"))?;
    reference_impl::kv::rsa::public_pem(&private.to_public_key())
        .map(String::into_bytes)
        .map_err(|e| e.to_string())
}

/// A version-4-shaped UUID derived from the arguments (SHA-256 of them), so that
/// `uuid(uniq)` is fresh for every run of a scenario yet the same within it.
fn uuid_from(args: &[Vec<u8>]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in args {
        h.update(a);
        h.update([0]);
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// Hex digits to bytes; whitespace between digits is ignored.
pub(crate) fn decode_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(&digits).map_err(|e| match e {
        hex::FromHexError::OddLength => format!("odd number of hex digits ({})", digits.len()),
        hex::FromHexError::InvalidHexCharacter { c, .. } => {
            format!("`{}` is not a hex digit", c.escape_default())
        }
        e => e.to_string(),
    })
}

impl Template {
    /// The text, when the template has no `{{ ... }}`.
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Expr { .. } => return None,
            }
        }
        Some(out)
    }

    /// Every variable the template reads, with the span of its `{{ ... }}`.
    pub fn variables(&self) -> Vec<(&str, Span)> {
        fn walk<'a>(e: &'a Expr, span: Span, out: &mut Vec<(&'a str, Span)>) {
            match e {
                Expr::Var(v) => out.push((v, span)),
                Expr::Call { args, .. } => args.iter().for_each(|a| walk(a, span, out)),
                Expr::Str(_) | Expr::Int(_) => {}
            }
        }
        let mut out = Vec::new();
        for part in &self.parts {
            if let Part::Expr { expr, span } = part {
                walk(expr, *span, &mut out);
            }
        }
        out
    }
}

/// The template as it would be written in a scenario file.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Lit(s) => {
                    let mut pieces = s.split("{{");
                    f.write_str(pieces.next().unwrap_or_default())?;
                    for piece in pieces {
                        write!(f, "{{{{'{{{{'}}}}{piece}")?;
                    }
                }
                Part::Expr { expr, .. } => write!(f, "{{{{{expr}}}}}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Var(v) => f.write_str(v),
            Expr::Str(s) if s.contains('\'') => write!(f, "\"{s}\""),
            Expr::Str(s) => write!(f, "'{s}'"),
            Expr::Int(n) => write!(f, "{n}"),
            Expr::Call { name, args } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Named groups (`(?P<name>...)`, `(?<name>...)`) of a regular-expression template: the
/// variables a match of it sets.
pub fn capture_names(t: &Template) -> Vec<String> {
    if let Some(pattern) = t.literal()
        && let Ok(re) = regex::Regex::new(&pattern)
    {
        return re.capture_names().flatten().map(str::to_owned).collect();
    }
    // With templates in it the pattern is only known at run time; read the literal text.
    let mut names = Vec::new();
    for part in &t.parts {
        if let Part::Lit(s) = part {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("(?") {
                rest = &rest[i + 2..];
                let after = rest.strip_prefix("P<").or_else(|| rest.strip_prefix('<'));
                if let Some(after) = after
                    && let Some(end) = after.find('>')
                    && is_ident(&after[..end])
                {
                    names.push(after[..end].to_owned());
                }
            }
        }
    }
    names
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a scenario's templates before it runs: every variable must be `known` (suite,
/// profile and `--var` variables), a scenario variable, built in (`uniq`), or captured by a
/// named group of an earlier `re:` expectation; and every regular expression without
/// templates must compile.
pub fn check_vars(scenario: &Scenario, known: &BTreeSet<String>) -> Vec<Diagnostic> {
    let mut defined: BTreeSet<String> = known.clone();
    defined.extend(scenario.vars.keys().cloned());
    defined.extend(BUILTIN_VARS.iter().map(|v| (*v).to_owned()));
    let mut diags = Vec::new();
    let matcher = |m: &'_ Matcher| match m {
        Matcher::Regex(t) => vec![(t.clone(), true)],
        Matcher::Exact(t) | Matcher::Bytes(t) | Matcher::Hex(t) => vec![(t.clone(), false)],
        Matcher::Packet(p) => p.fields.iter().map(|(_, t)| (t.clone(), false)).collect(),
    };
    let payload = |p: &'_ Payload| match p {
        Payload::Line(t) | Payload::Bytes(t) | Payload::Hex(t) => vec![(t.clone(), false)],
        Payload::Packet(p) => p.fields.iter().map(|(_, t)| (t.clone(), false)).collect(),
    };
    let mut templates = Vec::new();
    for step in &scenario.steps {
        match &step.kind {
            StepKind::Send(s) => {
                templates.extend(payload(&s.payload));
                if let Clear::Template(t) = &s.clear {
                    templates.push((t.clone(), false));
                }
            }
            StepKind::Expect(e) => templates.extend(matcher(&e.matcher)),
            StepKind::AnyOrder(inner) => {
                for s in inner {
                    if let StepKind::Expect(e) = &s.kind {
                        templates.extend(matcher(&e.matcher));
                    }
                }
            }
            StepKind::Connect { port, key, .. } => {
                templates.extend(port.iter().map(|t| (t.clone(), false)));
                if let Some(ConnectKey {
                    offer: KeySpec::Bytes(t),
                    ..
                }) = key
                {
                    templates.push((t.clone(), false));
                }
            }
            StepKind::ExpectOutput { matcher: m, .. } => templates.extend(matcher(m)),
            StepKind::Bisect(b) => {
                defined.insert(b.var.clone());
                templates.extend(payload(&b.send.payload));
                for e in [&b.found, &b.higher, &b.lower] {
                    templates.extend(matcher(&e.matcher));
                }
            }
            _ => {}
        }
    }
    for (template, is_regex) in &templates {
        let (template, is_regex) = (template, *is_regex);
        for (name, span) in template.variables() {
            // `local_addr_C` is set when connection `C` opens.
            if !defined.contains(name) && !name.starts_with("local_addr_") {
                let err = TemplateError::new(
                    TemplateErrorKind::UnknownVariable {
                        name: name.to_owned(),
                        suggestion: did_you_mean(name, defined.iter().map(String::as_str))
                            .map(str::to_owned),
                    },
                    span,
                );
                diags.push(err.to_diagnostic(&scenario.source));
            }
        }
        if is_regex {
            if let Some(d) = check_regex(template, &scenario.source) {
                diags.push(d);
            }
            defined.extend(capture_names(template));
        } else {
            defined.extend(json_capture_names(template));
        }
    }
    diags
}

/// Variables that `"<any:name>"`-style JSON placeholders in the literal parts of `t` bind.
fn json_capture_names(t: &Template) -> Vec<String> {
    let mut names = Vec::new();
    // A packet field that is only a placeholder: `<any:name>`.
    if let Some(lit) = t.literal()
        && let Some((kind, name)) = lit
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix('>'))
            .and_then(|l| l.split_once(':'))
        && matches!(kind, "any" | "any+" | "string" | "number" | "uuid")
        && is_ident(name)
    {
        names.push(name.to_owned());
    }
    for part in &t.parts {
        let Part::Lit(s) = part else { continue };
        let mut rest = s.as_str();
        while let Some(i) = rest.find("\"<") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(">\"") else { break };
            if let Some((kind, name)) = rest[..end].split_once(':')
                && matches!(kind, "any" | "string" | "number" | "uuid")
                && is_ident(name)
            {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// An error if the template has no `{{ ... }}` and is not a valid regular expression.
pub(crate) fn check_regex(t: &Template, file: &Arc<SourceFile>) -> Option<Diagnostic> {
    let pattern = t.literal()?;
    let e = compile_regex(&pattern).err()?;
    let label = match &e {
        // The message of a syntax error ends with a line `error: what went wrong`.
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .map(|l| l.trim_start_matches("error: ").to_owned())
            .unwrap_or_default(),
        e => e.to_string(),
    };
    Some(
        Diagnostic::error(file, t.span, "invalid regular expression")
            .with_label(label)
            .with_help("`re:` takes Rust regex syntax; escape a literal `(`, `.` or `*` with `\\`"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn span() -> Span {
        Span {
            line: 3,
            col: 5,
            len: 10,
        }
    }

    fn t(text: &str) -> Template {
        parse(text, span()).unwrap()
    }

    fn ev(text: &str) -> Vec<u8> {
        let mut env = Env::new();
        env.set("name", "Alice");
        env.set("n", "3");
        eval(&t(text), &env).unwrap()
    }

    fn err(text: &str) -> TemplateError {
        parse(text, span()).unwrap_err()
    }

    #[test]
    fn parses_every_expression_form() {
        let tpl = t("a {{ x }}b{{'s'}}{{\"d\"}}{{-12}}{{ repeat ( 1 , hex(x) ) }}");
        assert_eq!(
            tpl.parts,
            vec![
                Part::Lit("a ".into()),
                Part::Expr {
                    expr: Expr::Var("x".into()),
                    span: Span {
                        line: 3,
                        col: 7,
                        len: 7
                    }
                },
                Part::Lit("b".into()),
                Part::Expr {
                    expr: Expr::Str("s".into()),
                    span: Span {
                        line: 3,
                        col: 15,
                        len: 7
                    }
                },
                Part::Expr {
                    expr: Expr::Str("d".into()),
                    span: Span {
                        line: 3,
                        col: 22,
                        len: 7
                    }
                },
                Part::Expr {
                    expr: Expr::Int(-12),
                    span: Span {
                        line: 3,
                        col: 29,
                        len: 7
                    }
                },
                Part::Expr {
                    expr: Expr::Call {
                        name: "repeat".into(),
                        args: vec![
                            Expr::Int(1),
                            Expr::Call {
                                name: "hex".into(),
                                args: vec![Expr::Var("x".into())]
                            }
                        ]
                    },
                    span: Span {
                        line: 3,
                        col: 36,
                        len: 27
                    }
                },
            ]
        );
    }

    #[test]
    fn text_without_templates_is_one_literal() {
        assert_eq!(
            t("plain }} text").parts,
            vec![Part::Lit("plain }} text".into())]
        );
        assert!(t("").parts.is_empty());
        assert_eq!(t("{{'{{'}}").literal(), None);
        assert_eq!(ev("{{'{{'}}x"), b"{{x");
    }

    #[test]
    fn syntax_errors_point_into_the_text() {
        let e = err("abc {{ x");
        assert_eq!(e.kind, TemplateErrorKind::Unclosed);
        assert_eq!(
            e.span,
            Span {
                line: 3,
                col: 9,
                len: 2
            }
        );
        let e = err("{{ x y }}");
        assert_eq!(e.to_string(), "invalid template: expected `}}`, found `y`");
        assert_eq!(e.span.col, 10);
        assert!(err("{{ 'abc }}").to_string().contains("not closed"));
        assert!(err("{{ }}").to_string().contains("expected an expression"));
        assert!(
            err("{{ hex(1 2) }}")
                .to_string()
                .contains("expected `,` or `)`")
        );
        assert!(
            err("{{ 99999999999999999999 }}")
                .to_string()
                .contains("not an integer")
        );
    }

    #[test]
    fn unknown_functions_and_arity_are_parse_errors() {
        let e = err("{{ crc33('x') }}");
        assert_eq!(e.to_string(), "unknown function `crc33`");
        assert_eq!(e.help().unwrap(), "did you mean `crc32`?");
        let e = err("{{ repeat('x') }}");
        assert_eq!(e.to_string(), "`repeat` takes 2 arguments, found 1");
        let e = err("{{ pbkdf2() }}");
        assert_eq!(e.to_string(), "`pbkdf2` takes 1 or 2 arguments, found 0");
        let e = err("{{ hex(zzz(1)) }}");
        assert!(e.help().unwrap().contains("`pbkdf2`"));
    }

    #[test]
    fn pbkdf2_uses_the_test_salt_by_default() {
        let expected = "0834af328d106defd94b3074232208e29e7fef1a371c9b0ebbf23902105dd763";
        assert_eq!(hex::encode(ev("{{pbkdf2('secret')}}")), expected);
        let salt = hex::encode(TEST_SALT);
        assert_eq!(
            hex::encode(ev(&format!("{{{{ pbkdf2('secret', '{salt}') }}}}"))),
            expected
        );
        let mut env = Env::new();
        env.set("salt", salt);
        env.set("pw", "secret");
        assert_eq!(
            hex::encode(eval(&t("{{pbkdf2(pw)}}"), &env).unwrap()),
            expected
        );
        env.set("salt", "zz");
        let e = eval(&t("{{pbkdf2(pw)}}"), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`pbkdf2`: variable `salt`: `z` is not a hex digit"
        );
    }

    #[test]
    fn functions() {
        assert_eq!(ev("{{crc32('hello world')}}"), b"222957957");
        assert_eq!(ev("{{ hex('AB') }}"), b"4142");
        assert_eq!(ev("{{ unhex('41 42') }}"), b"AB");
        assert_eq!(ev("{{ len(unhex('00ff')) }}"), b"2");
        assert_eq!(ev("{{ repeat('ab', 3) }}"), b"ababab");
        assert_eq!(ev("{{ repeat('ab', n) }}"), b"ababab");
        assert_eq!(ev("{{ upper(name) }}-{{lower(name)}}"), b"ALICE-alice");
        assert_eq!(ev("x{{ 42 }}y"), b"x42y");
        assert_eq!(ev("{{ hex(unhex('ff')) }}"), b"ff");
        // The key repeats over the data; applied twice it gives the data back.
        assert_eq!(ev("{{ hex(xor('abcde', 'key')) }}"), b"0a071a0f00");
        assert_eq!(ev("{{ xor(xor('hello', 'k3y'), 'k3y') }}"), b"hello");
        assert_eq!(
            ev("{{ sha256('') }}"),
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let u = ev("{{ uuid('seed') }}");
        assert_eq!(u.len(), 36);
        assert_eq!(u[14], b'4');
        assert_eq!(ev("{{ uuid('seed') }}"), u);
        assert_ne!(ev("{{ uuid('seed', 'two') }}"), u);
        // Python: uuid.uuid3(uuid.NAMESPACE_URL, "127.0.0.1:5000")
        assert_eq!(
            ev("{{ uuid3('127.0.0.1:5000') }}"),
            b"cd11d970-819d-39e8-89ef-6798d9ef376f"
        );
    }

    #[test]
    fn function_errors() {
        let env = Env::new();
        let run = |s: &str| eval(&t(s), &env).unwrap_err().to_string();
        assert_eq!(
            run("{{unhex('abc')}}"),
            "`unhex`: odd number of hex digits (3)"
        );
        assert_eq!(
            run("{{repeat('a', -1)}}"),
            "`repeat`: the count must be a non-negative integer, found `-1`"
        );
        assert_eq!(
            run("{{repeat('ab', 9000000)}}"),
            "the template expands to more than 16 MiB"
        );
        assert_eq!(
            run("{{repeat(repeat('a', 1000), 100000000)}}"),
            "the template expands to more than 16 MiB"
        );
    }

    /// Bits of a PEM public key, whatever its size.
    fn bits_of(pem: &[u8]) -> usize {
        use reference_impl::kv::rsa::{KEY_BITS, RsaError, parse_public_key};
        match parse_public_key(pem) {
            Ok(_) => KEY_BITS,
            Err(RsaError::KeySize { bits }) => bits,
            Err(e) => panic!("{e}: {}", String::from_utf8_lossy(pem)),
        }
    }

    #[test]
    fn rsa_key_makes_a_fresh_public_key_of_the_size_asked() {
        let pem = ev("{{ rsa_key(1024) }}");
        assert!(pem.starts_with(b"-----BEGIN RSA PUBLIC KEY-----\n"));
        assert!(pem.ends_with(b"-----END RSA PUBLIC KEY-----\n"));
        assert_eq!(bits_of(&pem), 1024);
        assert_ne!(ev("{{ rsa_key(1024) }}"), pem, "the same key twice");
        assert_eq!(bits_of(&ev("{{ rsa_key('256') }}")), 256);
        assert_eq!(bits_of(&ev("{{ rsa_key(512) }}")), 512);
        // Sizes outside 256..=4096 or not whole bytes: at load time when written as they
        // are, when the step runs when they come from a variable.
        assert_eq!(
            err("{{ rsa_key(1001) }}").to_string(),
            "`rsa_key`: the key size must be a multiple of 8 from 256 to 4096 bits, found `1001`"
        );
        assert!(
            err("{{ rsa_key(8192) }}")
                .to_string()
                .contains("found `8192`")
        );
        assert!(
            err("{{ rsa_key('128') }}")
                .to_string()
                .contains("found `128`")
        );
        let mut env = Env::new();
        env.set("bits", "big");
        assert_eq!(
            eval(&t("{{ rsa_key(bits) }}"), &env)
                .unwrap_err()
                .to_string(),
            "`rsa_key`: the key size must be a multiple of 8 from 256 to 4096 bits, found `big`"
        );
    }

    #[test]
    fn unknown_variables_suggest_close_names() {
        let mut env = Env::new();
        env.set("username", "bob");
        let e = eval(&t("hi {{ usrname }}"), &env).unwrap_err();
        assert_eq!(e.to_string(), "unknown variable `usrname`");
        assert_eq!(e.help().unwrap(), "did you mean `username`?");
        assert_eq!(
            e.span(),
            Some(Span {
                line: 3,
                col: 8,
                len: 13
            })
        );
    }

    #[test]
    fn regex_templates_escape_values_only() {
        let mut env = Env::new();
        env.set("v", "a.b(c)");
        assert_eq!(
            eval_regex(&t(r"x\d+ {{v}}.*"), &env).unwrap(),
            r"x\d+ a\.b\(c\).*"
        );
        env.set("bin", vec![0xff]);
        let e = eval_regex(&t("{{bin}}"), &env).unwrap_err();
        assert_eq!(e.kind, TemplateErrorKind::NotUtf8);
        assert!(eval_regex(&t("{{hex(bin)}}"), &env).is_ok());
    }

    #[test]
    fn anchored_regexes_match_whole_messages() {
        let re = compile_regex("a|b").unwrap();
        assert!(re.is_match("a") && re.is_match("b") && !re.is_match("ab"));
        assert!(compile_regex("a)(b").is_err());
    }

    #[test]
    fn capture_names_with_and_without_templates() {
        assert_eq!(
            capture_names(&t(r"(?P<id>\d+) (?<name>\w+)")),
            ["id", "name"]
        );
        assert_eq!(capture_names(&t(r"{{x}} (?P<id>\d+)")), ["id"]);
    }

    #[test]
    fn display_writes_template_syntax() {
        let tpl = Template {
            parts: vec![
                Part::Lit("a{{b ".into()),
                Part::Expr {
                    expr: Expr::Call {
                        name: "repeat".into(),
                        args: vec![Expr::Str("it's".into()), Expr::Var("n".into())],
                    },
                    span: Span::default(),
                },
                Part::Expr {
                    expr: Expr::Str("x".into()),
                    span: Span::default(),
                },
            ],
            span: Span::default(),
        };
        let text = tpl.to_string();
        assert_eq!(text, "a{{'{{'}}b {{repeat(\"it's\", n)}}{{'x'}}");
        assert_eq!(ev(&text), b"a{{b it'sit'sit'sx");
    }
}
