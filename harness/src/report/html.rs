//! The student's report as one self-contained HTML page (inline CSS, no script, nothing
//! fetched): the same content as the Markdown report, with a score bar, the scenario table
//! colored by outcome, and for each problem the failing step, a diff of the expected message
//! against the one that arrived, and the whole transcript in a collapsible block.

use std::fmt::Write as _;
use std::time::Duration;

use similar::{Algorithm, ChangeTag, TextDiff};

use super::Submission;
use super::human::render_problem;
use super::markdown::{FLAKY_NOTE, STUDENT_OPTIONS, counts_line, hidden_line, title_cell};
use crate::run::{Outcome, ScenarioResult};

/// Above this many characters a side, the diff compares words, not characters.
const CHAR_DIFF_MAX: usize = 2_000;

const STYLE: &str = r#"
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --code-bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 2rem 1rem 4rem; color: var(--fg); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; }
h1 { font-size: 1.6rem; margin: 0 0 .75rem; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 2.5rem 0 1rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 0 0 .75rem; display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
pre { background: var(--code-bg); border: 1px solid var(--line); border-radius: 6px; padding: .75rem 1rem;
  margin: .5rem 0; overflow-x: auto; white-space: pre; line-height: 1.45; }
.score { display: flex; align-items: baseline; gap: .75rem; margin: .25rem 0 .5rem; }
.score strong { font-size: 2rem; }
.score span { color: var(--muted); }
.bar { height: 14px; border-radius: 7px; background: #eef1f4; border: 1px solid var(--line); overflow: hidden; max-width: 640px; }
.bar > div { height: 100%; background: linear-gradient(90deg, #2da44e, #3fb950); }
.note { color: var(--muted); margin: .5rem 0; }
table { width: 100%; border-collapse: collapse; margin: 1.5rem 0 .5rem; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .85rem; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.id code { white-space: nowrap; }
td.outcome { white-space: nowrap; }
td a { color: inherit; }
.badge { display: inline-block; min-width: 4.6em; text-align: center; padding: .05rem .45rem; border-radius: 4px;
  font: 600 12px/1.6 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: #fff; background: var(--c); }
.flaky { display: inline-block; margin-left: .35rem; padding: 0 .4rem; border-radius: 4px; font-size: 12px;
  border: 1px dashed #9a6700; color: #7d4e00; background: #fff8c5; }
tr.o { background: var(--bg); }
.o-pass { --c: #1a7f37; --bg: #f0fbf2; }
.o-fail { --c: #cf222e; --bg: #fff0f0; }
.o-timeout { --c: #bc4c00; --bg: #fff4eb; }
.o-error { --c: #8250df; --bg: #f7f2ff; }
.o-skip { --c: #6e7781; --bg: #f6f8fa; }
.o-xfail { --c: #57606a; --bg: #f6f8fa; }
.o-xpass { --c: #9a6700; --bg: #fff8c5; }
.o-crash { --c: #a40e26; --bg: #ffebe9; }
.o-hung { --c: #953800; --bg: #fff1e5; }
.o-nostart { --c: #6e011a; --bg: #ffebe9; }
article.problem { border: 1px solid var(--line); border-left: 6px solid var(--c); border-radius: 6px;
  padding: 1rem 1.25rem; margin: 1.25rem 0; }
.diff { display: grid; grid-template-columns: max-content 1fr; gap: .25rem .75rem; align-items: baseline;
  background: var(--code-bg); border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; margin: .75rem 0; }
.diff .k { color: var(--muted); font-size: .85rem; }
.diff code { white-space: pre-wrap; overflow-wrap: anywhere; }
del { background: #ffcecb; color: #82071e; text-decoration: line-through; text-decoration-color: #cf222e80; border-radius: 2px; }
ins { background: #aceebb; color: #044f1e; text-decoration: none; border-radius: 2px; }
details { margin-top: .5rem; }
summary { cursor: pointer; color: var(--muted); }
h4 { font-size: .9rem; margin: .75rem 0 .25rem; color: var(--muted); font-weight: 600; }
"#;

/// The student's report of one submission, as a standalone HTML page.
pub fn html(sub: &Submission) -> String {
    let mut out = String::new();
    let name = escape(&sub.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Report: {name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    );

    let visible: Vec<&ScenarioResult> = sub.results.iter().filter(|r| !r.hidden).collect();
    let s = &sub.summary;
    let percent = if s.max_points == 0 {
        0.0
    } else {
        f64::from(s.points) * 100.0 / f64::from(s.max_points)
    };
    let _ = write!(
        out,
        "<header>\n<h1>Report: {name}</h1>\n\
         <div class=\"score\"><strong>{}/{}</strong><span>points ({percent:.0}%)</span></div>\n\
         <div class=\"bar\" role=\"img\" aria-label=\"{} of {} points\"><div style=\"width: {percent:.1}%\"></div></div>\n\
         <p class=\"note\">{}</p>\n",
        s.points,
        s.max_points,
        s.points,
        s.max_points,
        escape(&counts_line(&visible))
    );
    if let Some(line) = hidden_line(&sub.results) {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(&line));
    }
    let _ = writeln!(out, "</header>");

    // Problems are numbered in table order, so the table can link to them.
    let anchor = |i: usize| format!("problem-{}", i + 1);
    if !visible.is_empty() {
        let _ = writeln!(
            out,
            "<table>\n<thead><tr><th>Outcome</th><th>Scenario</th><th class=\"num\">Points</th><th>Title</th></tr></thead>\n<tbody>"
        );
        for (i, r) in visible.iter().enumerate() {
            let id = if r.outcome.is_problem() {
                format!(
                    "<a href=\"#{}\"><code>{}</code></a>",
                    anchor(i),
                    escape(&r.id)
                )
            } else {
                format!("<code>{}</code>", escape(&r.id))
            };
            let _ = writeln!(
                out,
                "<tr class=\"o {}\"><td class=\"outcome\">{}{}</td><td class=\"id\">{id}</td><td class=\"num\">{}/{}</td><td>{}</td></tr>",
                class(r.outcome),
                badge(r.outcome),
                flaky_mark(r),
                r.points,
                r.max_points,
                escape(&title_cell(r))
            );
        }
        let _ = writeln!(out, "</tbody>\n</table>");
        if visible.iter().any(|r| r.flaky) {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(FLAKY_NOTE));
        }
    }

    if visible.iter().any(|r| r.outcome.is_problem()) {
        let _ = writeln!(out, "<section>\n<h2>Problems</h2>");
        for (i, r) in visible.iter().enumerate() {
            if r.outcome.is_problem() {
                problem(&mut out, r, &anchor(i));
            }
        }
        let _ = writeln!(out, "</section>");
    }

    let _ = writeln!(out, "</main>\n</body>\n</html>");
    out
}

fn problem(out: &mut String, r: &ScenarioResult, anchor: &str) {
    let _ = writeln!(
        out,
        "<article class=\"problem {}\" id=\"{anchor}\">\n<h3>{}<code>{}</code>{}</h3>",
        class(r.outcome),
        badge(r.outcome),
        escape(&r.id),
        flaky_mark(r)
    );
    let text = render_problem(r, &STUDENT_OPTIONS);
    let _ = writeln!(out, "<pre>{}</pre>", escape(text.trim_end_matches('\n')));
    let redact = redactions(r);
    if let Some(f) = &r.failure
        && let (Some(expected), Some(actual)) = (&f.expected, &f.actual)
    {
        let (expected, actual) = (apply(expected, &redact), apply(actual, &redact));
        let (old, new) = diff(&expected, &actual);
        let _ = writeln!(
            out,
            "<h4>Expected against actual</h4>\n<div class=\"diff\">\
             <span class=\"k\">expected</span><code>{old}</code>\
             <span class=\"k\">actual</span><code>{new}</code></div>"
        );
    }
    if !r.transcript.entries.is_empty() {
        let n = r.transcript.entries.len();
        let _ = writeln!(
            out,
            "<details><summary>Full transcript ({n} {})</summary>\n<pre>{}</pre></details>",
            if n == 1 { "entry" } else { "entries" },
            escape(r.transcript.render(false, &redact).trim_end_matches('\n'))
        );
    }
    let _ = writeln!(out, "</article>");
}

/// `{{uniq}}` in place of the scenario's unique value, as in the problem text.
fn redactions(r: &ScenarioResult) -> Vec<(String, String)> {
    if STUDENT_OPTIONS.redact_uniq && !r.uniq.is_empty() {
        vec![(r.uniq.clone(), "{{uniq}}".to_owned())]
    } else {
        Vec::new()
    }
}

fn apply(text: &str, redact: &[(String, String)]) -> String {
    redact
        .iter()
        .fold(text.to_owned(), |t, (needle, with)| t.replace(needle, with))
}

/// The expected and actual texts as HTML, what only the expected text has in `<del>`, what
/// only the actual text has in `<ins>`. Nearly equal texts are compared character by
/// character (a typo shows as one letter); others word by word, punctuation apart, so that
/// `"GET: ERROR"` against `"GET hello"` keeps `"GET` in common.
pub(crate) fn diff(expected: &str, actual: &str) -> (String, String) {
    let short = expected.chars().count().max(actual.chars().count()) <= CHAR_DIFF_MAX;
    let mut config = TextDiff::configure();
    config
        .algorithm(Algorithm::Myers)
        .timeout(Duration::from_secs(1));
    let (old_tokens, new_tokens) = (tokens(expected), tokens(actual));
    let by_chars = short.then(|| config.diff_chars(expected, actual));
    let d = match by_chars {
        Some(d) if d.ratio() >= 0.8 => d,
        _ => config.diff_slices(&old_tokens, &new_tokens),
    };
    let changes: Vec<(ChangeTag, &str)> =
        d.iter_all_changes().map(|c| (c.tag(), c.value())).collect();
    // Each side as (changed, text) pieces. White space kept in common between two changes
    // joins them, so a changed phrase reads as one.
    let mut old: Vec<(bool, String)> = Vec::new();
    let mut new: Vec<(bool, String)> = Vec::new();
    let push = |side: &mut Vec<(bool, String)>, changed: bool, text: &str| match side.last_mut() {
        Some((c, t)) if *c == changed => t.push_str(text),
        _ => side.push((changed, text.to_owned())),
    };
    // Whether the white space at `i` lies between two `tag` changes (changes of the other
    // side left aside).
    let between = |i: usize, tag: ChangeTag| {
        let is_tag = |&&(t, _): &&(ChangeTag, &str)| t != ChangeTag::Equal && t == tag;
        let other = |&&(t, _): &&(ChangeTag, &str)| t != ChangeTag::Equal && t != tag;
        let before = changes[..i].iter().rev().find(|c| !other(c));
        let after = changes[i + 1..].iter().find(|c| !other(c));
        before.is_some_and(|c| is_tag(&c)) && after.is_some_and(|c| is_tag(&c))
    };
    for (i, &(tag, text)) in changes.iter().enumerate() {
        match tag {
            ChangeTag::Equal => {
                let blank = text.trim().is_empty();
                push(&mut old, blank && between(i, ChangeTag::Delete), text);
                push(&mut new, blank && between(i, ChangeTag::Insert), text);
            }
            ChangeTag::Delete => push(&mut old, true, text),
            ChangeTag::Insert => push(&mut new, true, text),
        }
    }
    let render = |side: Vec<(bool, String)>, tag: &str| {
        let mut out = String::new();
        for (changed, text) in side {
            if changed {
                let _ = write!(out, "<{tag}>{}</{tag}>", escape(&text));
            } else {
                out.push_str(&escape(&text));
            }
        }
        out
    };
    (render(old, "del"), render(new, "ins"))
}

/// Words, runs of white space, and every other character alone.
fn tokens(s: &str) -> Vec<&str> {
    let kind = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            0
        } else if c.is_whitespace() {
            1
        } else {
            2
        }
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut last: Option<u8> = None;
    for (i, c) in s.char_indices() {
        let k = kind(c);
        if i > start && (last != Some(k) || k == 2) {
            out.push(&s[start..i]);
            start = i;
        }
        last = Some(k);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn badge(o: Outcome) -> String {
    format!("<span class=\"badge\">{}</span>", o.label())
}

fn flaky_mark(r: &ScenarioResult) -> &'static str {
    if r.flaky {
        "<span class=\"flaky\" title=\"passed in some runs and not in others\">flaky</span>"
    } else {
        ""
    }
}

/// The CSS class that colors an outcome.
fn class(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "o-pass",
        Outcome::Failed => "o-fail",
        Outcome::TimedOut => "o-timeout",
        Outcome::Error => "o-error",
        Outcome::Skipped => "o-skip",
        Outcome::ExpectedFailure => "o-xfail",
        Outcome::UnexpectedPass => "o-xpass",
        Outcome::Crashed => "o-crash",
        Outcome::Hung => "o-hung",
        Outcome::DidNotStart => "o-nostart",
    }
}

/// Text as HTML, safe in element content and in quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than line ends and tabs are not allowed in HTML text.
            c if c.is_control() && !matches!(c, '\n' | '\t') => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn html_report() {
        let text = html(&fixtures::submission());
        assert!(!text.contains("large-value"), "a hidden scenario is listed");
        assert!(!text.contains(fixtures::UNIQ), "uniq is not redacted");
        assert!(!text.contains("<b>"), "text is not escaped");
        assert!(
            !text.contains("http"),
            "the page refers to something outside it"
        );
        if let Ok(path) = std::env::var("HARNESS_HTML_REPORT") {
            std::fs::write(path, &text).expect("HARNESS_HTML_REPORT is writable");
        }
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("report_html", text));
    }

    #[test]
    fn diff_marks_what_differs() {
        let (old, new) = diff("\"GET: ERROR\\n\"", "\"GET: ERRORS\\n\"");
        assert_eq!(old, "&quot;GET: ERROR\\n&quot;");
        assert_eq!(new, "&quot;GET: ERROR<ins>S</ins>\\n&quot;");
        let (old, new) = diff("\"GET: ERROR\\n\"", "\"GET hello\\n\"");
        assert_eq!(old, "&quot;GET<del>: ERROR</del>\\n&quot;");
        assert_eq!(new, "&quot;GET <ins>hello</ins>\\n&quot;");
        assert_eq!(tokens("a1 b:\\n"), ["a1", " ", "b", ":", "\\", "n"]);
        // A space between an insertion and a deletion stays in common.
        let (old, new) = diff("a b c d e f", "a x b c d e y");
        assert_eq!(old, "a b c d e <del>f</del>");
        assert_eq!(new, "a <ins>x </ins>b c d e <ins>y</ins>");
        let (old, new) = diff("<a>", "b&");
        assert_eq!(old, "<del>&lt;a&gt;</del>");
        assert_eq!(new, "<ins>b&amp;</ins>");
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{1b}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\\u{1b}"
        );
    }
}
