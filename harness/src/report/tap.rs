//! The TAP (Test Anything Protocol) version 14 report, written when the run finishes, one
//! test point per scenario in suite and file order.
//!
//! ```text
//! TAP version 14
//! 1..3
//! ok 1 - kv/put/new
//! not ok 2 - kv/get/missing
//!   ---
//!   message: unexpected reply
//!   outcome: FAIL
//!   at: scenarios/kv/get-missing.yaml:10:13
//!   expected: '"GET: ERROR\n"'
//!   actual: '"GET hello\n"'
//!   points: 0
//!   max_points: 3
//!   ...
//! ok 3 - kv/put/twice # SKIP not in this year's spec
//! # 3 scenarios: 1 passed, 1 failed, ...
//! # points 2/6
//! ```
//!
//! | outcome                                          | TAP                                    |
//! |--------------------------------------------------|----------------------------------------|
//! | `Passed`                                         | `ok` (flaky: with a YAML block saying so) |
//! | `Skipped`                                        | `ok N - id # SKIP reason`              |
//! | `ExpectedFailure`                                | `not ok N - id # TODO reason`          |
//! | every problem (`Failed`, `TimedOut`, `Error`, `UnexpectedPass`, `Crashed`, `Hung`, `DidNotStart`) | `not ok` and a YAML diagnostic block |
//!
//! The diagnostic block holds `message`, `outcome` (the label: `FAIL`, `TIMEOUT`, ...), `at`
//! (`file:line:col` of the failing step, or of the scenario), and when known `expected`,
//! `actual`, `label`, `help`, `points` and `max_points`, `hidden`, `flaky`, and the tail of
//! the transcript (without times).

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{Event, Reporter};
use crate::run::transcript::Transcript;
use crate::run::{Outcome, ScenarioResult, Summary};

/// Entries of the transcript a diagnostic block shows.
const TRANSCRIPT_TAIL: usize = 16;

/// Writes the TAP report when the run finishes.
pub struct TapReporter<'w> {
    out: &'w mut dyn Write,
}

impl std::fmt::Debug for TapReporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TapReporter")
    }
}

impl<'w> TapReporter<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        Self { out }
    }
}

/// The whole TAP document for `results` (in the order given).
pub fn tap(results: &[ScenarioResult], summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "TAP version 14");
    let _ = writeln!(out, "1..{}", results.len());
    for (i, r) in results.iter().enumerate() {
        test_point(&mut out, i + 1, r);
    }
    let s = summary;
    let _ = writeln!(
        out,
        "# {} scenarios: {} passed, {} failed, {} timed out, {} errors, {} crashed, {} hung, \
         {} did not start, {} skipped, {} expected failures, {} unexpected passes, {} flaky",
        s.total,
        s.passed,
        s.failed,
        s.timed_out,
        s.errors,
        s.crashed,
        s.hung,
        s.did_not_start,
        s.skipped,
        s.expected_failures,
        s.unexpected_passes,
        s.flaky,
    );
    let _ = writeln!(out, "# points {}/{}", s.points, s.max_points);
    out
}

fn test_point(out: &mut String, n: usize, r: &ScenarioResult) {
    let ok = !r.outcome.is_problem() && r.outcome != Outcome::ExpectedFailure;
    let mut line = format!(
        "{} {n} - {}",
        if ok { "ok" } else { "not ok" },
        escape_description(&r.id)
    );
    let reason = || one_line(r.reason.as_deref().unwrap_or(""));
    match r.outcome {
        Outcome::Skipped => line.push_str(&format!(" # SKIP {}", reason())),
        Outcome::ExpectedFailure => line.push_str(&format!(" # TODO {}", reason())),
        _ => {}
    }
    let _ = writeln!(out, "{}", line.trim_end());

    // Text values (quoted as YAML needs) and values written as they are (numbers, booleans).
    let mut fields: Vec<(&str, String)> = Vec::new();
    let mut raw: Vec<(&str, String)> = Vec::new();
    if r.outcome.is_problem() {
        let f = r.failure.as_ref();
        let message = f.map_or_else(|| r.outcome.label().to_owned(), |f| f.message.clone());
        fields.push(("message", message));
        fields.push(("outcome", r.outcome.label().to_owned()));
        let (line, col) = f
            .and_then(|f| f.span)
            .map_or((r.line, 1), |s| (s.line, s.col));
        fields.push(("at", format!("{}:{line}:{col}", r.file.display())));
        if let Some(f) = f {
            let optional = [
                ("expected", &f.expected),
                ("actual", &f.actual),
                ("label", &f.label),
                ("help", &f.help),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    fields.push((key, v.clone()));
                }
            }
        }
        raw.push(("points", r.points.to_string()));
        raw.push(("max_points", r.max_points.to_string()));
    } else if r.flaky {
        fields.push((
            "message",
            "flaky: passed in some repetitions (--repeat) and not in others".to_owned(),
        ));
    }
    if fields.is_empty() {
        return;
    }
    if r.hidden {
        raw.push(("hidden", "true".to_owned()));
    }
    if r.flaky && r.outcome.is_problem() {
        raw.push(("flaky", "true".to_owned()));
    }
    let transcript = (r.outcome.is_problem() && !r.transcript.entries.is_empty())
        .then(|| transcript_tail(&r.transcript));
    let _ = writeln!(out, "  ---");
    for (key, value) in fields {
        yaml_field(out, key, &value);
    }
    for (key, value) in raw {
        let _ = writeln!(out, "  {key}: {value}");
    }
    if let Some(t) = transcript {
        yaml_field(out, "transcript", &t);
    }
    let _ = writeln!(out, "  ...");
}

/// The last entries of a transcript, without times.
fn transcript_tail(t: &Transcript) -> String {
    let start = t.entries.len().saturating_sub(TRANSCRIPT_TAIL);
    let tail = Transcript {
        entries: t.entries[start..].to_vec(),
        ..t.clone()
    };
    let mut text = String::new();
    if start > 0 {
        text.push_str(&format!("... {start} earlier entries\n"));
    }
    text.push_str(&tail.render(false, &[]));
    text
}

/// A test point description: TAP 14 gives `#` and `\` a meaning there.
fn escape_description(s: &str) -> String {
    one_line(s).replace('\\', "\\\\").replace('#', "\\#")
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `key: value` indented two spaces, quoting the value as YAML needs.
fn yaml_field(out: &mut String, key: &str, value: &str) {
    if value.chars().any(|c| c.is_control() && c != '\n') {
        let _ = writeln!(out, "  {key}: {}", crate::scenario::yaml_quote(value));
    } else if value.contains('\n') {
        // A literal block; an indentation indicator when the first line starts with a space.
        let indicator = if value.starts_with(' ') { "2" } else { "" };
        let chomp = if value.ends_with('\n') { "" } else { "-" };
        let _ = writeln!(out, "  {key}: |{indicator}{chomp}");
        for l in value.trim_end_matches('\n').split('\n') {
            if l.is_empty() {
                let _ = writeln!(out);
            } else {
                let _ = writeln!(out, "    {l}");
            }
        }
    } else if is_plain(value) {
        let _ = writeln!(out, "  {key}: {value}");
    } else {
        let _ = writeln!(out, "  {key}: '{}'", value.replace('\'', "''"));
    }
}

/// Whether a one-line string reads back as the same string without quotes.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let reserved_start = "-?:,[]{}#&*!|>'\"%@`~ ".contains(first);
    let ambiguous = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
    ) || s.parse::<f64>().is_ok();
    !reserved_start
        && !ambiguous
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.chars().all(|c| !c.is_control())
}

impl Reporter for TapReporter<'_> {
    fn report(&mut self, event: &Event<'_>) -> io::Result<()> {
        if let Event::RunFinished {
            results, summary, ..
        } = event
        {
            self.out.write_all(tap(results, summary).as_bytes())?;
            self.out.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::fixtures;

    #[test]
    fn tap_report() {
        let results = fixtures::results();
        let summary = Summary::of(&results, Duration::from_millis(1234));
        let mut out = Vec::new();
        TapReporter::new(&mut out)
            .report(&Event::RunFinished {
                results: &results,
                summary: &summary,
                strict: false,
            })
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("report_tap", text));
    }

    #[test]
    fn yaml_values_are_quoted_when_needed() {
        let mut out = String::new();
        yaml_field(&mut out, "a", "plain text");
        yaml_field(&mut out, "b", r#""GET: ERROR\n""#);
        yaml_field(&mut out, "c", "it's: here");
        yaml_field(&mut out, "d", "true");
        yaml_field(&mut out, "e", "bell\u{7}");
        yaml_field(&mut out, "f", "  two\nlines");
        assert_eq!(
            out,
            "  a: plain text\n  b: '\"GET: ERROR\\n\"'\n  c: 'it''s: here'\n  d: 'true'\n  \
             e: \"bell\\u0007\"\n  f: |2-\n      two\n    lines\n"
        );
        assert_eq!(escape_description("a#b\\c"), "a\\#b\\\\c");
    }
}
