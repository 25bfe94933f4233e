//! Errors and warnings that point into a scenario file, rendered like a compiler's.
//!
//! ```text
//! error: unexpected reply
//!   --> scenarios/kv/put-get.yaml:12:13
//!    |
//! 12 |   - S -> C: GET blue
//!    |             ^^^^^^^^ received `GET: ERROR`
//!    = help: ...
//! ```
//!
//! The parser reports every problem it finds in a file as a [`Diagnostic`]; the runner builds
//! them too, for failures at run time, so construction is a plain constructor and a few
//! `with_*` methods.

use std::fmt;
use std::sync::Arc;

use super::model::{SourceFile, Span};

/// How many columns a tab in a quoted source line takes.
const TAB_WIDTH: usize = 4;

/// Whether a diagnostic stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// One line, lower case, without a trailing period: `unexpected reply`.
    pub message: String,
    pub file: Arc<SourceFile>,
    /// The text to underline. A span with `line == 0` means "somewhere in the file".
    pub span: Span,
    /// Printed after the carets: `received `GET: ERROR``.
    pub label: Option<String>,
    /// How to fix it: printed as `= help: ...`.
    pub help: Option<String>,
}

/// Another place that explains a diagnostic (the first use of a duplicate id, ...), shown
/// by [`Diagnostic::render_with`] and underlined with `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub file: Arc<SourceFile>,
    pub span: Span,
    pub label: String,
}

impl Diagnostic {
    /// A diagnostic without label or help.
    pub fn new(
        severity: Severity,
        file: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            message: message.into(),
            file: Arc::clone(file),
            span,
            label: None,
            help: None,
        }
    }

    /// An error at `span` of `file`.
    pub fn error(file: &Arc<SourceFile>, span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, span, message)
    }

    /// A warning at `span` of `file`.
    pub fn warning(file: &Arc<SourceFile>, span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, span, message)
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the help only when there is one (a did-you-mean that found nothing, ...).
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `path:line:col`, or just the path when the position is unknown.
    pub fn location(&self) -> String {
        location(&self.file, self.span)
    }

    /// The diagnostic with the quoted source line and carets under the span. Falls back to
    /// [`render_plain`](Self::render_plain) when the line is not in the file's text.
    pub fn render(&self) -> String {
        self.render_with(&[])
    }

    /// As [`render`](Self::render), then each related place with its own source line.
    pub fn render_with(&self, related: &[Related]) -> String {
        let Some(main) = Snippet::new(&self.file, self.span) else {
            return self.render_plain_with(related);
        };
        let related: Vec<(Option<Snippet<'_>>, &Related)> = related
            .iter()
            .map(|r| (Snippet::new(&r.file, r.span), r))
            .collect();
        let width = related
            .iter()
            .filter_map(|(s, _)| s.as_ref().map(|s| s.line_no))
            .chain([main.line_no])
            .map(digits)
            .max()
            .unwrap_or(1);
        let pad = " ".repeat(width);

        let mut out = format!("{}: {}\n", self.severity.as_str(), self.message);
        out += &format!("{pad}--> {}\n", self.location());
        out += &format!("{pad} |\n");
        main.write(&mut out, width, '^', self.label.as_deref());
        for (snippet, r) in related {
            match snippet {
                Some(s) => {
                    out += &format!("{pad} |\n");
                    out += &format!("{pad}::: {}\n", location(&r.file, r.span));
                    out += &format!("{pad} |\n");
                    s.write(&mut out, width, '-', Some(&r.label));
                }
                None => {
                    out += &format!("{pad} = note: {}: {}\n", location(&r.file, r.span), r.label);
                }
            }
        }
        if let Some(help) = &self.help {
            push_indented(&mut out, &format!("{pad} = help: "), help);
        }
        out
    }

    /// The diagnostic without source text: message, location, label and help.
    pub fn render_plain(&self) -> String {
        self.render_plain_with(&[])
    }

    /// As [`render_plain`](Self::render_plain), with a note for each related place.
    pub fn render_plain_with(&self, related: &[Related]) -> String {
        let width = digits(self.span.line);
        let pad = " ".repeat(width);
        let mut out = format!("{}: {}\n", self.severity.as_str(), self.message);
        out += &format!("{pad}--> {}\n", self.location());
        if let Some(label) = &self.label {
            push_indented(&mut out, &format!("{pad} = note: "), label);
        }
        for r in related {
            out += &format!("{pad} = note: {}: {}\n", location(&r.file, r.span), r.label);
        }
        if let Some(help) = &self.help {
            push_indented(&mut out, &format!("{pad} = help: "), help);
        }
        out
    }
}

/// One line: `path:line:col: error: message`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.location(),
            self.severity.as_str(),
            self.message
        )
    }
}

impl std::error::Error for Diagnostic {}

fn location(file: &SourceFile, span: Span) -> String {
    if span.line == 0 {
        file.path.display().to_string()
    } else {
        format!("{}:{}:{}", file.path.display(), span.line, span.col.max(1))
    }
}

fn digits(n: u32) -> usize {
    n.max(1).to_string().len()
}

/// Appends `prefix` + `text`, indenting continuation lines under the first.
fn push_indented(out: &mut String, prefix: &str, text: &str) {
    let indent = " ".repeat(prefix.chars().count());
    for (i, line) in text.lines().enumerate() {
        out.push_str(if i == 0 { prefix } else { &indent });
        out.push_str(line);
        out.push('\n');
    }
    if text.is_empty() {
        out.push_str(prefix.trim_end());
        out.push('\n');
    }
}

/// A source line with the display columns of an underlined range.
struct Snippet<'a> {
    line_no: u32,
    text: &'a str,
    /// Display column (0-based, tabs expanded) where the underline starts.
    start: usize,
    /// Display width of the underline, at least 1.
    width: usize,
}

impl<'a> Snippet<'a> {
    fn new(file: &'a SourceFile, span: Span) -> Option<Self> {
        if span.line == 0 {
            return None;
        }
        let text = file.line(span.line)?;
        let first = (span.col.max(1) - 1) as usize;
        let mut start = 0;
        let mut width = 0;
        for (i, c) in text.chars().enumerate() {
            let w = if c == '\t' { TAB_WIDTH } else { 1 };
            if i < first {
                start += w;
            } else if i < first.saturating_add(span.len as usize) {
                width += w;
            } else {
                break;
            }
        }
        // A column past the end of the line (an error at the line end) underlines the end.
        let line_chars = text.chars().count();
        if first > line_chars {
            start += first - line_chars;
        }
        Some(Self {
            line_no: span.line,
            text,
            start,
            width: width.max(1),
        })
    }

    fn write(&self, out: &mut String, gutter: usize, mark: char, label: Option<&str>) {
        let shown = self.text.replace('\t', &" ".repeat(TAB_WIDTH));
        if shown.is_empty() {
            out.push_str(&format!("{:>gutter$} |\n", self.line_no));
        } else {
            out.push_str(&format!("{:>gutter$} | {shown}\n", self.line_no));
        }
        let underline = format!(
            "{:gutter$} | {}{}",
            "",
            " ".repeat(self.start),
            mark.to_string().repeat(self.width)
        );
        match label {
            Some(label) if !label.is_empty() => {
                push_indented(out, &format!("{underline} "), label);
            }
            _ => {
                out.push_str(&underline);
                out.push('\n');
            }
        }
    }
}

/// The candidate closest to `word`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| {
            let jw = strsim::jaro_winkler(&lower, &c.to_lowercase());
            let lev = strsim::levenshtein(&lower, &c.to_lowercase());
            (c, jw, lev)
        })
        .filter(|&(c, jw, lev)| jw >= 0.8 || (lev <= 2 && lev < c.chars().count()))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(c, ..)| c)
}

/// `did you mean `x`?`, or `valid ...: a, b, c` when nothing is close.
pub(crate) fn suggestion_help(word: &str, what: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!(
            "valid {what}: {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file(text: &str) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            path: PathBuf::from("scenarios/kv/put-get.yaml"),
            text: text.to_owned(),
        })
    }

    fn span(line: u32, col: u32, len: u32) -> Span {
        Span { line, col, len }
    }

    #[test]
    fn renders_like_a_compiler() {
        let mut text = "id: kv/get/after-put\n".repeat(11);
        text.push_str("  - S -> C: GET blue\n");
        let d = Diagnostic::error(&file(&text), span(12, 13, 8), "unexpected reply")
            .with_label("received `GET: ERROR`")
            .with_help("the server answered the GET with an error");
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("diagnostic_basic", d.render()));
    }

    #[test]
    fn clamps_carets_to_the_line_and_expands_tabs() {
        let f = file("a:\n\tb: x\ty\n");
        let d = Diagnostic::warning(&f, span(2, 5, 100), "long span");
        let out = d.render();
        assert!(out.contains("2 |     b: x    y\n"), "{out}");
        assert!(out.contains("  |        ^^^^^^\n"), "{out}");
        let d = Diagnostic::error(&f, span(2, 8, 0), "empty span at the end");
        assert!(
            d.render().contains(&format!("  | {}^\n", " ".repeat(13))),
            "{}",
            d.render()
        );
        let d = Diagnostic::error(&f, span(2, 10, 3), "past the end");
        assert!(
            d.render().contains(&format!("  | {}^\n", " ".repeat(15))),
            "{}",
            d.render()
        );
    }

    #[test]
    fn related_places_and_plain_rendering() {
        let a = file("id: kv/a\nsteps: []\n");
        let b = Arc::new(SourceFile {
            path: PathBuf::from("scenarios/kv2/b.yaml"),
            text: "# b\n".repeat(9) + "id: kv/a\n",
        });
        let d = Diagnostic::error(&b, span(10, 5, 4), "duplicate scenario id `kv/a`")
            .with_label("used again here")
            .with_help("scenario ids must be unique across the suites of a run");
        let first = [Related {
            file: a,
            span: span(1, 5, 4),
            label: "first used here".to_owned(),
        }];
        crate::snapshot_settings().bind(|| {
            insta::assert_snapshot!("diagnostic_related", d.render_with(&first));
            insta::assert_snapshot!("diagnostic_plain", d.render_plain_with(&first));
        });
        assert_eq!(
            d.to_string(),
            "scenarios/kv2/b.yaml:10:5: error: duplicate scenario id `kv/a`"
        );
    }

    #[test]
    fn falls_back_to_plain_without_the_line() {
        let d = Diagnostic::error(&file(""), span(3, 1, 1), "gone").with_label("here");
        assert_eq!(d.render(), d.render_plain());
        assert_eq!(
            d.render(),
            "error: gone\n --> scenarios/kv/put-get.yaml:3:1\n  = note: here\n"
        );
    }

    #[test]
    fn suggests_close_words_only() {
        let keys = ["id", "title", "steps", "timeout"];
        assert_eq!(did_you_mean("stpes", keys), Some("steps"));
        assert_eq!(did_you_mean("timout", keys), Some("timeout"));
        assert_eq!(did_you_mean("Title", keys), Some("title"));
        assert_eq!(did_you_mean("zzzzzz", keys), None);
        assert_eq!(
            suggestion_help("zzz", "keys", &["a", "b"]),
            "valid keys: `a`, `b`"
        );
    }
}
