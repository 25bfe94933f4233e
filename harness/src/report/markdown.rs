//! The student's report as Markdown: the score, a table of the scenarios they may see, each
//! problem in detail, and the end of what their program printed.
//!
//! Hidden scenarios count in the score but are neither listed nor described: the report only
//! says how many there are and how many points they carry in all. The report has no times and
//! no run-specific values (`{{uniq}}` is redacted), so grading the same program twice gives
//! the same report.

use std::fmt::Write as _;
use std::time::Duration;

use super::Submission;
use super::human::{HumanOptions, render_problem};
use crate::run::{Outcome, ScenarioResult, Summary};

/// How the student's reports render problems: no times, no run-specific values.
pub(crate) const STUDENT_OPTIONS: HumanOptions = HumanOptions {
    times: false,
    redact_uniq: true,
    verbose: true,
};

/// What the flaky mark means, for the student.
pub(crate) const FLAKY_NOTE: &str = "flaky: run several times, this scenario passed in some \
     runs and not in others (often a race or a timing assumption in the program)";

/// The student's report of one submission, as Markdown.
pub fn markdown(sub: &Submission) -> String {
    let mut out = String::new();
    let visible: Vec<&ScenarioResult> = sub.results.iter().filter(|r| !r.hidden).collect();
    let _ = writeln!(out, "# Report: {}\n", inline_text(&sub.name));
    let s = &sub.summary;
    let _ = writeln!(out, "**Score: {}/{} points**\n", s.points, s.max_points);
    let _ = writeln!(out, "{}\n", counts_line(&visible));
    if let Some(line) = hidden_line(&sub.results) {
        let _ = writeln!(out, "{line}\n");
    }

    if !visible.is_empty() {
        let _ = writeln!(out, "| Outcome | Scenario | Points | Title |");
        let _ = writeln!(out, "|---|---|---:|---|");
        for r in &visible {
            let mut outcome = r.outcome.label().to_owned();
            if r.flaky {
                outcome.push_str(" (flaky)");
            }
            let _ = writeln!(
                out,
                "| {outcome} | {} | {}/{} | {} |",
                code_span(&r.id),
                r.points,
                r.max_points,
                inline_text(&title_cell(r))
            );
        }
        let _ = writeln!(out);
        if visible.iter().any(|r| r.flaky) {
            let _ = writeln!(out, "_{}_\n", inline_text(FLAKY_NOTE));
        }
    }

    let problems: Vec<&&ScenarioResult> =
        visible.iter().filter(|r| r.outcome.is_problem()).collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "## Problems\n");
        for r in problems {
            let mut head = format!("{} {}", r.outcome.label(), code_span(&r.id));
            if r.flaky {
                head.push_str(" (flaky)");
            }
            let _ = writeln!(out, "### {head}\n");
            let _ = writeln!(out, "{}", fenced(&render_problem(r, &STUDENT_OPTIONS)));
        }
    }

    out
}

/// Totals over the scenarios a student sees (hidden ones left out, so as not to tell their
/// outcomes).
pub(crate) fn counts_line(visible: &[&ScenarioResult]) -> String {
    let owned: Vec<ScenarioResult> = visible.iter().map(|r| (*r).clone()).collect();
    let s = Summary::of(&owned, Duration::ZERO);
    let mut parts = vec![format!("{} passed", s.passed)];
    let more = [
        (s.failed, "failed", "failed"),
        (s.timed_out, "timed out", "timed out"),
        (s.errors, "error", "errors"),
        (s.crashed, "crashed", "crashed"),
        (s.hung, "hung", "hung"),
        (s.did_not_start, "did not start", "did not start"),
        (s.skipped, "skipped", "skipped"),
        (s.expected_failures, "expected failure", "expected failures"),
        (s.unexpected_passes, "unexpected pass", "unexpected passes"),
        (s.flaky, "flaky", "flaky"),
    ];
    for (n, one, many) in more {
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    }
    let noun = if s.total == 1 {
        "scenario"
    } else {
        "scenarios"
    };
    format!("{} {noun} listed: {}.", s.total, parts.join(", "))
}

/// "N hidden scenarios (M points in all) count in the score but are not listed.", if any.
pub(crate) fn hidden_line(results: &[ScenarioResult]) -> Option<String> {
    let hidden: Vec<&ScenarioResult> = results.iter().filter(|r| r.hidden).collect();
    if hidden.is_empty() {
        return None;
    }
    let points: u32 = hidden.iter().map(|r| r.max_points).sum();
    let (noun, verb) = if hidden.len() == 1 {
        ("scenario", "counts")
    } else {
        ("scenarios", "count")
    };
    let pts = if points == 1 { "point" } else { "points" };
    Some(format!(
        "{} hidden {noun} ({points} {pts} in all) {verb} in the score but {} not listed.",
        hidden.len(),
        if hidden.len() == 1 { "is" } else { "are" }
    ))
}

/// The title, and the reason of a skipped scenario or an expected failure.
pub(crate) fn title_cell(r: &ScenarioResult) -> String {
    let mut cell = r.title.clone().unwrap_or_default();
    if let Some(reason) = &r.reason
        && matches!(r.outcome, Outcome::Skipped | Outcome::ExpectedFailure)
    {
        if !cell.is_empty() {
            cell.push(' ');
        }
        cell.push_str(&format!("({reason})"));
    }
    cell
}

/// Text on one line with Markdown's punctuation escaped (safe in a table cell too).
fn inline_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A code span that holds `s` whatever backticks it contains; `|` escaped for tables.
fn code_span(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    let ticks = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{s}{pad}{ticks}")
}

/// A fenced code block (no trailing blank line) with a fence longer than any backtick run
/// inside.
fn fenced(text: &str) -> String {
    let fence = "`".repeat((longest_run(text, '`') + 1).max(3));
    format!("{fence}text\n{}\n{fence}\n", text.trim_end_matches('\n'))
}

fn longest_run(s: &str, c: char) -> usize {
    let mut best = 0;
    let mut run = 0;
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn markdown_report() {
        let text = markdown(&fixtures::submission());
        assert!(!text.contains("large-value"), "a hidden scenario is listed");
        assert!(!text.contains(fixtures::UNIQ), "uniq is not redacted");
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("report_markdown", text));
    }

    #[test]
    fn fences_and_code_spans_outgrow_their_contents() {
        assert_eq!(fenced("a ```` b"), "`````text\na ```` b\n`````\n");
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`a"), "`` `a ``");
        assert_eq!(code_span("a|b"), "`a\\|b`");
    }
}
