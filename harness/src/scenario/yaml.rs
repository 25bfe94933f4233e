//! YAML text -> a small tree of [`Node`]s that remember where they were written.
//!
//! The scenario language uses plain YAML: mappings, lists and scalars. Anchors, aliases, tags
//! and several documents in one file are refused, because in a scenario they are almost
//! always a message that was meant to be quoted (`S -> C: *ERROR*`, `S -> C: !bang`).
//! Scalars are kept as the text that was written (no YAML 1.1 type guessing), so
//! `S -> C: 0123` expects `0123`, not `123`.
//!
//! A YAML syntax error becomes one [`Diagnostic`], with a fix for the two mistakes people
//! make most: an unquoted `: ` inside a message, and tabs used for indentation.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError};

use super::diagnostic::Diagnostic;
use super::model::{SourceFile, Span};

/// A YAML double-quoted scalar holding `text` exactly.
pub fn yaml_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Lists and mappings nested deeper than this are refused (scenarios need about five).
const MAX_DEPTH: usize = 64;

/// A YAML node and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    /// The first line of the node: for quoted scalars the opening quote, for block scalars
    /// (`|`, `>`) their first content line.
    pub span: Span,
    start: Marker,
    end: Marker,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar { value: String, style: ScalarStyle },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// An empty value, `~` or `null` written without quotes.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, style: ScalarStyle::Plain }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// Whether the scalar was written without quotes (numbers and booleans must be).
    pub fn is_plain(&self) -> bool {
        matches!(
            &self.kind,
            Kind::Scalar {
                style: ScalarStyle::Plain,
                ..
            }
        )
    }

    /// What this node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> Cow<'static, str> {
        match &self.kind {
            _ if self.is_null() => "nothing".into(),
            Kind::Scalar { value, .. } => {
                let short: String = value.chars().take(40).collect();
                let dots = if short.len() < value.len() { "..." } else { "" };
                // Control characters (a line feed in a block scalar) would break the line.
                let shown: String = short
                    .chars()
                    .map(|c| {
                        if c.is_control() {
                            c.escape_default().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                format!("`{shown}{dots}`").into()
            }
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// For each byte offset of the scalar's value that starts a character, the 1-based
    /// column in the file where that character was written; the last entry (at
    /// `value.len()`) is the column just after the value. `None` when the value does not
    /// map to one line of source text (multi-line and block scalars).
    pub fn value_columns(&self, file: &SourceFile) -> Option<Vec<u32>> {
        let Kind::Scalar { value, style } = &self.kind else {
            return None;
        };
        let line = file.line(u32::try_from(self.start.line()).ok()?)?;
        let source: Vec<char> = line.chars().skip(self.start.col()).collect();
        let first = u32::try_from(self.start.col()).ok()? + 1;
        // Source index (0-based, in `source`) of each value character, then of the end.
        let at = match style {
            ScalarStyle::Plain => {
                if self.start.line() != self.end.line() {
                    return None;
                }
                let len = self.end.col().saturating_sub(self.start.col());
                if source.iter().take(len).collect::<String>() != *value {
                    return None;
                }
                (0..=len).collect()
            }
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => quoted(&source, *style)?.0,
            ScalarStyle::Literal | ScalarStyle::Folded => return None,
        };
        if at.len() != value.chars().count() + 1 {
            return None;
        }
        let mut cols = vec![0; value.len() + 1];
        let offsets = value.char_indices().map(|(b, _)| b).chain([value.len()]);
        for (b, i) in offsets.zip(at) {
            cols[b] = first + u32::try_from(i).ok()?;
        }
        Some(cols)
    }
}

/// Walks a quoted scalar that starts at `source[0]` (its opening quote): the source index of
/// each character of its value and of the closing quote, and the length of the scalar with
/// its quotes. `None` when the closing quote is not on this line.
fn quoted(source: &[char], style: ScalarStyle) -> Option<(Vec<usize>, usize)> {
    let quote = *source.first()?;
    let mut at = Vec::new();
    let mut i = 1;
    loop {
        let c = *source.get(i)?;
        let next = source.get(i + 1).copied();
        let step = match (style, c, next) {
            (ScalarStyle::SingleQuoted, '\'', Some('\'')) => 2,
            (ScalarStyle::DoubleQuoted, '\\', Some('x')) => 4,
            (ScalarStyle::DoubleQuoted, '\\', Some('u')) => 6,
            (ScalarStyle::DoubleQuoted, '\\', Some('U')) => 10,
            (ScalarStyle::DoubleQuoted, '\\', Some(_)) => 2,
            (_, c, _) if c == quote => break,
            _ => 1,
        };
        at.push(i);
        i += step;
    }
    at.push(i);
    Some((at, i + 1))
}

/// Parses one YAML document. `Ok(None)` for a file with no document (empty, or only
/// comments).
pub(crate) fn parse(file: &Arc<SourceFile>) -> Result<Option<Node>, Diagnostic> {
    let text = file.text.strip_prefix('\u{feff}').unwrap_or(&file.text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    while let Some(event) = parser.next_event() {
        let (event, ys) = event.map_err(|e| scan_error(file, &e))?;
        let here = to_span(file, ys.start, ys.end);
        let node = match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        file,
                        here,
                        "a scenario file holds one YAML document",
                    )
                    .with_label("a second document starts here")
                    .with_help("put each scenario in its own file"));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(indicator_error(file, here, "aliases (`*name`)", '*'));
            }
            Event::Scalar(value, style, anchor, tag) => {
                refuse_anchor_or_tag(file, here, anchor, tag.is_some())?;
                let mut here = here;
                if matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) {
                    // The parser's end of a quoted scalar can include the blanks and the
                    // comment after it: measure up to the closing quote instead.
                    let line = file.line(here.line).unwrap_or_default();
                    let source: Vec<char> = line.chars().skip(ys.start.col()).collect();
                    if let Some((_, len)) = quoted(&source, style) {
                        here.len = u32::try_from(len).unwrap_or(u32::MAX);
                    }
                }
                Node {
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        style,
                    },
                    span: here,
                    start: ys.start,
                    end: ys.end,
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_anchor_or_tag(file, here, anchor, tag.is_some())?;
                if stack.len() >= MAX_DEPTH {
                    return Err(
                        Diagnostic::error(file, here, "lists and mappings nest too deep")
                            .with_help(format!(
                                "a scenario needs far fewer than {MAX_DEPTH} levels"
                            )),
                    );
                }
                let is_seq = matches!(event, Event::SequenceStart(..));
                stack.push(Open {
                    kind: if is_seq {
                        Kind::Seq(Vec::new())
                    } else {
                        Kind::Map(Vec::new())
                    },
                    key: None,
                    span: here,
                    start: ys.start,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = stack.pop() else {
                    continue;
                };
                let mut kind = open.kind;
                if let (Kind::Map(entries), Some(key)) = (&mut kind, open.key) {
                    // Cannot happen with a well-formed event stream; keep the key anyway.
                    let null = null_after(&key);
                    entries.push((key, null));
                }
                Node {
                    kind,
                    span: open.span,
                    start: open.start,
                    end: ys.end,
                }
            }
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(open) => open.add(node),
        }
    }
    Ok(root)
}

/// A list or mapping whose end event has not come yet.
struct Open {
    kind: Kind,
    /// A mapping's key waiting for its value.
    key: Option<Node>,
    span: Span,
    start: Marker,
}

impl Open {
    fn add(&mut self, node: Node) {
        match &mut self.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => match self.key.take() {
                None => self.key = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Kind::Scalar { .. } => {}
        }
    }
}

fn null_after(key: &Node) -> Node {
    Node {
        kind: Kind::Scalar {
            value: String::new(),
            style: ScalarStyle::Plain,
        },
        span: Span {
            len: 0,
            col: key.span.col.saturating_add(key.span.len),
            ..key.span
        },
        start: key.end,
        end: key.end,
    }
}

fn refuse_anchor_or_tag(
    file: &Arc<SourceFile>,
    span: Span,
    anchor: usize,
    tagged: bool,
) -> Result<(), Diagnostic> {
    if anchor != 0 {
        return Err(indicator_error(file, span, "anchors (`&name`)", '&'));
    }
    if tagged {
        return Err(indicator_error(file, span, "tags (`!name`)", '!'));
    }
    Ok(())
}

fn indicator_error(file: &Arc<SourceFile>, span: Span, what: &str, c: char) -> Diagnostic {
    Diagnostic::error(
        file,
        span,
        format!("YAML {what} are not supported in scenarios"),
    )
    .with_help(format!(
        "a message that starts with `{c}` must be quoted: `S -> C: \"{c}...\"`"
    ))
}

/// Converts a saphyr position range (0-based columns) to a [`Span`] on its first line.
fn to_span(file: &SourceFile, start: Marker, end: Marker) -> Span {
    let line = u32::try_from(start.line()).unwrap_or(u32::MAX);
    let col = u32::try_from(start.col() + 1).unwrap_or(u32::MAX);
    let len = if start.line() == end.line() {
        end.col().saturating_sub(start.col())
    } else {
        file.line(line)
            .map(|l| {
                l.chars()
                    .skip(start.col())
                    .collect::<String>()
                    .trim_end()
                    .chars()
                    .count()
            })
            .unwrap_or(0)
    };
    Span {
        line,
        col,
        len: u32::try_from(len).unwrap_or(u32::MAX),
    }
}

/// A YAML syntax error, with a fix when the mistake is a common one.
fn scan_error(file: &Arc<SourceFile>, e: &ScanError) -> Diagnostic {
    let mark = e.marker();
    let line_no = u32::try_from(mark.line()).unwrap_or(u32::MAX);
    let span = Span {
        line: line_no,
        col: u32::try_from(mark.col() + 1).unwrap_or(u32::MAX),
        len: 1,
    };
    if e.info().contains("tab") {
        // The scanner reports a tab where it stopped, which can be the end of the line before.
        for n in [line_no, line_no.saturating_add(1)] {
            let Some(line) = file.line(n) else { continue };
            let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            if let Some(pos) = indent.chars().position(|c| c == '\t') {
                return Diagnostic::error(
                    file,
                    Span {
                        line: n,
                        col: u32::try_from(pos + 1).unwrap_or(u32::MAX),
                        len: 1,
                    },
                    "tab used for indentation",
                )
                .with_label("tab")
                .with_help("YAML indentation must be spaces: replace the tabs with spaces");
            }
        }
    }
    let d = Diagnostic::error(file, span, format!("invalid YAML: {}", e.info()));
    match file.line(line_no).and_then(quote_fix) {
        Some(help) => d.with_label("`: ` here starts a mapping").with_help(help),
        None => d,
    }
}

/// For a line such as `- S -> C: CONNECT: OK`, whose value holds another `: `, the line
/// with the value quoted.
fn quote_fix(line: &str) -> Option<String> {
    let line = line.trim();
    let key_end = line.find(": ")?;
    let (head, rest) = line.split_at(key_end + 2);
    let rest = rest.trim_start();
    if rest.starts_with(['"', '\'', '{', '[', '|', '>']) {
        return None;
    }
    let value = match rest.find(" #") {
        Some(i) => rest[..i].trim_end(),
        None => rest.trim_end(),
    };
    let comment = &rest[value.len()..];
    if !(value.contains(": ") || value.ends_with(':')) {
        return None;
    }
    let quoted = if value.contains(['"', '\\']) {
        format!("'{}'", value.replace('\'', "''"))
    } else {
        format!("\"{value}\"")
    };
    if head.starts_with("- ") {
        if let Some(re) = value.strip_prefix("re: ") {
            return Some(format!(
                "write `re:` without a space: {head}re:{re}{comment}\n\
                 or quote the message: {head}{quoted}{comment}"
            ));
        }
        Some(format!("quote the message: {head}{quoted}{comment}"))
    } else {
        Some(format!("quote the value: {head}{quoted}{comment}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;

    #[test]
    fn yaml_quoting_is_exact() {
        assert_eq!(yaml_quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(yaml_quote("bell\u{7}"), r#""bell\u0007""#);
    }

    fn file(text: &str) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            path: PathBuf::from("t.yaml"),
            text: text.to_owned(),
        })
    }

    fn first_value(text: &str) -> (Arc<SourceFile>, Node) {
        let f = file(text);
        let root = parse(&f).unwrap().unwrap();
        let Kind::Map(mut entries) = root.kind else {
            panic!("not a map")
        };
        (f, entries.remove(0).1)
    }

    #[test]
    fn columns_of_plain_and_quoted_scalars() {
        let (f, n) = first_value("k: ab{{x}}\n");
        let cols = n.value_columns(&f).unwrap();
        assert_eq!(cols[2], 6);
        assert_eq!(cols[7], 11);

        let (f, n) = first_value("k: 'it''s {{x}}'\n");
        assert_eq!(n.scalar(), Some("it's {{x}}"));
        let cols = n.value_columns(&f).unwrap();
        assert_eq!(cols[5], 11); // the `{` after `it''s `
        assert_eq!(cols[10], 16); // the closing quote

        let (f, n) = first_value("k: \"\\x41\\n{{x}}\"\n");
        assert_eq!(n.scalar(), Some("A\n{{x}}"));
        let cols = n.value_columns(&f).unwrap();
        assert_eq!(cols[2], 11);

        let (f, n) = first_value("k: |\n  a{{x}}\n");
        assert!(n.value_columns(&f).is_none());
    }

    #[test]
    fn quote_fix_quotes_the_value_after_the_first_colon() {
        assert_eq!(
            quote_fix("  - S -> C: CONNECT: OK").unwrap(),
            "quote the message: - S -> C: \"CONNECT: OK\""
        );
        assert_eq!(
            quote_fix("title: a: \"b\"  # note").unwrap(),
            "quote the value: title: 'a: \"b\"'  # note"
        );
        assert_eq!(quote_fix("  - S -> C: CONNECT OK"), None);
        assert_eq!(quote_fix("  - S -> C: \"A: B\": c"), None);
    }

    #[test]
    fn refuses_aliases_tags_and_second_documents() {
        for text in ["a: &x 1\nb: *x\n", "a: !t 1\n", "a: 1\n---\nb: 2\n"] {
            assert!(parse(&file(text)).is_err(), "{text}");
        }
        assert!(parse(&file("# only a comment\n")).unwrap().is_none());
    }
}
