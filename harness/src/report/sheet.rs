//! The class sheet: one CSV row of totals per submission, for a spreadsheet.
//!
//! Fields are quoted as RFC 4180 says (a field with a comma, a quote or a line end goes in
//! double quotes, its quotes doubled); lines end with `\n`. A text field that starts with
//! `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a spreadsheet shows
//! a submission folder named like a formula instead of evaluating it.

use super::Submission;
use crate::run::{Outcome, Summary};

/// The header line's columns.
pub const COLUMNS: &[&str] = &[
    "submission",
    "points",
    "max_points",
    "passed",
    "failed",
    "timed_out",
    "errors",
    "crashed",
    "hung",
    "did_not_start",
    "skipped",
    "expected_failures",
    "unexpected_passes",
    "flaky",
    "note",
];

/// One submission's line of the class sheet.
#[derive(Debug, Clone)]
pub struct SheetRow {
    pub submission: String,
    pub summary: Summary,
    /// `did not start`, `crashed`, `hung`, or empty.
    pub note: String,
}

impl From<&Submission> for SheetRow {
    /// The note is "did not start" if no scenario got the target started (every one is
    /// `DidNotStart`), else "crashed" if the target crashed in any scenario, else "hung" if
    /// it hung in any, else empty.
    fn from(sub: &Submission) -> Self {
        let all =
            |o: Outcome| !sub.results.is_empty() && sub.results.iter().all(|r| r.outcome == o);
        let any = |o: Outcome| sub.results.iter().any(|r| r.outcome == o);
        let note = if all(Outcome::DidNotStart) {
            "did not start"
        } else if any(Outcome::Crashed) {
            "crashed"
        } else if any(Outcome::Hung) {
            "hung"
        } else {
            ""
        };
        Self {
            submission: sub.name.clone(),
            summary: sub.summary.clone(),
            note: note.to_owned(),
        }
    }
}

/// The class sheet: the header line, then one line per row, in the order given.
pub fn sheet(subs: &[SheetRow]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in subs {
        let s = &row.summary;
        let numbers = [
            s.points as usize,
            s.max_points as usize,
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
        ];
        let mut fields = vec![text_field(&row.submission)];
        fields.extend(numbers.iter().map(usize::to_string));
        fields.push(text_field(&row.note));
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A text field, defused against formulas and quoted when needed.
fn text_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::fixtures;
    use crate::run::{ScenarioResult, Summary};

    fn submission(name: &str, outcomes: &[Outcome]) -> Submission {
        let results: Vec<ScenarioResult> = fixtures::results()
            .into_iter()
            .zip(outcomes)
            .map(|(mut r, o)| {
                r.outcome = *o;
                r.points = if *o == Outcome::Passed {
                    r.max_points
                } else {
                    0
                };
                r.flaky = false;
                r
            })
            .collect();
        let summary = Summary::of(&results, Duration::ZERO);
        Submission {
            name: name.to_owned(),
            results,
            summary,
        }
    }

    #[test]
    fn class_sheet() {
        use Outcome::*;
        let rows: Vec<SheetRow> = vec![
            SheetRow::from(&fixtures::submission()),
            SheetRow::from(&submission("bob", &[Passed, Passed, Passed, Skipped])),
            SheetRow::from(&submission(
                "carol",
                &[DidNotStart, DidNotStart, DidNotStart],
            )),
            SheetRow::from(&submission("dave\nsmith", &[Passed, Hung, DidNotStart])),
            SheetRow::from(&submission(
                "=cmd|' /C calc'!A0",
                &[Failed, TimedOut, Error],
            )),
            SheetRow::from(&submission(" eve ", &[])),
        ];
        let text = sheet(&rows);
        assert_eq!(rows[0].note, "crashed");
        assert_eq!(rows[1].note, "");
        assert_eq!(rows[2].note, "did not start");
        assert_eq!(rows[3].note, "hung");
        assert_eq!(rows[5].note, "");
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("report_sheet", text));
    }

    #[test]
    fn quoting() {
        assert_eq!(text_field("plain"), "plain");
        assert_eq!(text_field("a,b"), "\"a,b\"");
        assert_eq!(text_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(text_field("-1"), "'-1");
        assert_eq!(text_field("=1,2"), "\"'=1,2\"");
    }
}
