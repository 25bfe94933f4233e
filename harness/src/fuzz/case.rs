//! A fuzz case: what the fuzzer does to the target, one action at a time, and how each
//! action is written in a scenario file.
//!
//! Messages are kept as parts: literal bytes, which mutation and shrinking may change, and
//! template expressions (`{{uniq}}`, `{{pbkdf2(password)}}`) which they leave whole, so a
//! case stays meaningful on any run (each run has its own `uniq`) and reads well as YAML.

/// A connection of a case: `C1`, `C2`, ...; the happy flow after the case uses `H`.
pub type Conn = &'static str;

/// The connection of the happy flow that follows every case.
pub const HAPPY: Conn = "H";

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    Lit(Vec<u8>),
    /// A template expression, written as is (`{{uniq}}`).
    Tpl(&'static str),
}

impl Part {
    /// Literal text.
    pub fn text(s: &str) -> Self {
        Part::Lit(s.as_bytes().to_vec())
    }
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opens the connection.
    Connect,
    /// Writes the message in one write.
    Send(Vec<Part>),
    /// Closes our side and waits (bounded) for the target to close its side.
    Close,
}

/// What the spec requires in reply to a message, whatever the state: the spec oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecRule {
    /// The connection is dropped without a reply (KV junk).
    Drop,
    /// The reply's header is this (chat: `UNKNOWN_COMMAND`, `PARSE_ERROR`).
    Header(&'static str),
    /// The reply is an error packet (the packet protocol).
    ErrorPacket,
}

impl SpecRule {
    /// How a report names the requirement.
    pub fn describe(self) -> String {
        match self {
            SpecRule::Drop => "the connection is dropped without a reply".into(),
            SpecRule::Header(h) => format!("the reply is {h}"),
            SpecRule::ErrorPacket => "the reply is an error packet".into(),
        }
    }
}

/// One action of a case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Action {
    pub conn: Conn,
    pub op: Op,
    /// What the grammar made: `PUT`, `junk:lowercase`, `LOGIN+mutated`, ...
    pub label: String,
    pub spec: Option<SpecRule>,
}

impl Action {
    pub fn connect(conn: Conn) -> Self {
        Self {
            conn,
            op: Op::Connect,
            label: "connect".into(),
            spec: None,
        }
    }

    pub fn close(conn: Conn) -> Self {
        Self {
            conn,
            op: Op::Close,
            label: "close".into(),
            spec: None,
        }
    }

    pub fn send(conn: Conn, label: impl Into<String>, parts: Vec<Part>) -> Self {
        Self {
            conn,
            op: Op::Send(parts),
            label: label.into(),
            spec: None,
        }
    }

    pub fn with_spec(self, rule: SpecRule) -> Self {
        self.with_spec_if(Some(rule))
    }

    /// The action with what the spec requires of it, if anything.
    pub fn with_spec_if(mut self, rule: Option<SpecRule>) -> Self {
        self.spec = rule;
        self
    }

    /// The message's parts (empty for connect and close).
    pub fn parts(&self) -> &[Part] {
        match &self.op {
            Op::Send(parts) => parts,
            _ => &[],
        }
    }

    /// Bytes of literal text in the message.
    pub fn literal_len(&self) -> usize {
        self.parts()
            .iter()
            .map(|p| match p {
                Part::Lit(b) => b.len(),
                Part::Tpl(_) => 0,
            })
            .sum()
    }
}

/// A case: actions in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Case {
    pub actions: Vec<Action>,
}

/// A message as template text: what `send: { bytes: ... }` holds, before YAML quoting.
pub fn template_text(parts: &[Part]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Lit(bytes) => out.push_str(&literal_template(bytes)),
            Part::Tpl(t) => out.push_str(t),
        }
    }
    out
}

/// Runs of one byte at least this long are written `{{repeat(...)}}`.
const RUN: usize = 12;

/// Bytes as template text: printable ASCII as it is, `\n`, `\r`, `\t` as themselves (YAML
/// quoting escapes them), long runs of one byte as `repeat`, anything else through
/// `unhex`. A `{` that would run into a `{{` (another `{`, an expression, or the next part
/// of the message) is written `{{'{'}}`.
pub fn literal_template(bytes: &[u8]) -> String {
    enum Token {
        Raw(char),
        Expr(String),
    }
    let mut tokens = Vec::new();
    let mut odd = Vec::new();
    let flush = |odd: &mut Vec<u8>, tokens: &mut Vec<Token>| {
        if !odd.is_empty() {
            tokens.push(Token::Expr(format!(
                "{{{{unhex('{}')}}}}",
                hex::encode(&odd)
            )));
            odd.clear();
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        if run >= RUN {
            flush(&mut odd, &mut tokens);
            let unit = if plain(b) && b != b'\'' {
                format!("'{}'", b as char)
            } else {
                format!("unhex('{b:02x}')")
            };
            tokens.push(Token::Expr(format!("{{{{repeat({unit}, {run})}}}}")));
            i += run;
            continue;
        }
        if plain(b) || matches!(b, b'\n' | b'\r' | b'\t') {
            flush(&mut odd, &mut tokens);
            tokens.push(Token::Raw(b as char));
        } else {
            odd.push(b);
        }
        i += 1;
    }
    flush(&mut odd, &mut tokens);
    let mut out = String::new();
    for (at, token) in tokens.iter().enumerate() {
        match token {
            Token::Raw('{') => {
                let safe = matches!(tokens.get(at + 1), Some(Token::Raw(c)) if *c != '{');
                out.push_str(if safe { "{" } else { "{{'{'}}" });
            }
            Token::Raw(c) => out.push(*c),
            Token::Expr(e) => out.push_str(e),
        }
    }
    out
}

fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Text the target sent, as a template that expands to it, with run-specific values
/// written as the expressions that give them on any run (`uniq` as `{{uniq}}`, say).
pub fn received_template(bytes: &[u8], symbols: &[(Vec<u8>, String)]) -> String {
    let mut out = String::new();
    let mut rest = bytes;
    loop {
        let next = symbols
            .iter()
            .filter_map(|(value, expr)| find(rest, value).map(|at| (at, value, expr)))
            .min_by_key(|(at, value, _)| (*at, std::cmp::Reverse(value.len())));
        let Some((at, value, expr)) = next else {
            break;
        };
        out.push_str(&literal_template(&rest[..at]));
        out.push_str(expr);
        rest = &rest[at + value.len()..];
    }
    out.push_str(&literal_template(rest));
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::model::Span;
    use crate::scenario::template::{self, Env};

    fn uniq() -> Vec<(Vec<u8>, String)> {
        vec![(b"U1".to_vec(), "{{uniq}}".to_owned())]
    }

    fn expand(text: &str) -> Vec<u8> {
        let t = template::parse(text, Span::default()).expect("template");
        let mut env = Env::default();
        env.set("uniq", "U1");
        template::eval(&t, &env).expect("eval")
    }

    #[test]
    fn any_bytes_survive_the_template() {
        let samples: [&[u8]; 8] = [
            b"PUT a\nb c",
            b"{{uniq}} {x} {{{",
            b"ends with {",
            b"{\x00{{xxxxxxxxxxxxxxxx{",
            b"\x00\xff\xe9'quote'\"",
            &[b'x'; 40],
            &[0xff; 30],
            &[b'\''; 20],
        ];
        for bytes in samples {
            let text = literal_template(bytes);
            assert_eq!(expand(&text), bytes, "{text}");
        }
    }

    #[test]
    fn a_brace_before_a_template_part_stays_a_brace() {
        let text = template_text(&[Part::Lit(b"a{".to_vec()), Part::Tpl("{{uniq}}")]);
        assert_eq!(expand(&text), b"a{U1");
        assert_eq!(expand(&received_template(b"{U1{", &uniq())), b"{U1{");
    }

    #[test]
    fn received_text_keeps_uniq_symbolic() {
        let text = received_template(b"JOINED {\"username\":\"aU1\"}", &uniq());
        assert_eq!(text, "JOINED {\"username\":\"a{{uniq}}\"}");
        assert_eq!(expand(&text), b"JOINED {\"username\":\"aU1\"}");
    }

    proptest::proptest! {
        #[test]
        fn any_message_survives_templates_and_yaml(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            with_uniq in proptest::prelude::any::<bool>(),
        ) {
            let mut parts = vec![Part::Lit(bytes.clone())];
            let mut want = bytes.clone();
            if with_uniq {
                parts.push(Part::Tpl("{{uniq}}"));
                want.extend_from_slice(b"U1");
            }
            let text = template_text(&parts);
            proptest::prop_assert_eq!(expand(&text), want);
            proptest::prop_assert_eq!(expand(&received_template(&bytes, &uniq())), bytes);
        }
    }
}
