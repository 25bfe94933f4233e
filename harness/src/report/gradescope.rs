//! Gradescope autograder results (`/autograder/results/results.json`), as specified at
//! <https://gradescope-autograders.readthedocs.io/en/latest/specs/>.
//!
//! ```text
//! {"score": 4,                       the submission's points (hidden scenarios included)
//!  "execution_time": 1,              seconds, rounded up
//!  "output": "...",                  score line, counts, hidden note, the target's last lines
//!  "output_format": "text", "test_output_format": "text",
//!  "tests": [{"name": "kv/get/missing: GET of a key never stored answers GET ERROR",
//!             "score": 1, "max_score": 3,
//!             "status": "passed" | "failed",
//!             "output": "...",       the problem as the human report renders it
//!             "tags": ["get"],
//!             "visibility": "visible" | "hidden",
//!             "extra_data": {"id", "outcome", "flaky"?, "hidden"?, "level"?}}]}
//! ```
//!
//! Mapping of each scenario:
//! - `score`/`max_score` are the scenario's points (partial credit from checkpoints shows
//!   as a score between 0 and `max_score`).
//! - `status` is `"passed"` for `Passed` only, `"failed"` for every other outcome: problems
//!   (`Failed`, `TimedOut`, `Error`, `UnexpectedPass`, `Crashed`, `Hung`, `DidNotStart`), and
//!   also `Skipped` and `ExpectedFailure`, which earn no points either; their `output` says
//!   `skipped: reason` / `expected failure: reason`.
//! - `output` is the problem text (no times, `{{uniq}}` redacted), empty for a clean pass, a
//!   note for a flaky one.
//! - `visibility` is `"hidden"` for `visibility: hidden` scenarios (the student never sees
//!   the test, the instructor does; its points still count in `score`), else `"visible"`.
//! - `extra_data.outcome` is the outcome as the JSON report spells it (`failed`, `timed_out`,
//!   ...).

use serde_json::{Map, Value, json};

use super::Submission;
use super::human::render_problem;
use super::markdown::{FLAKY_NOTE, STUDENT_OPTIONS, counts_line, hidden_line};
use crate::run::{Outcome, ScenarioResult};
use crate::scenario::model::Level;

/// The Gradescope `results.json` of one submission.
pub fn gradescope(sub: &Submission) -> Value {
    let s = &sub.summary;
    let visible: Vec<&ScenarioResult> = sub.results.iter().filter(|r| !r.hidden).collect();
    let mut output = format!(
        "Score: {}/{} points\n{}\n",
        s.points,
        s.max_points,
        counts_line(&visible)
    );
    if let Some(line) = hidden_line(&sub.results) {
        output.push_str(&line);
        output.push('\n');
    }
    json!({
        "score": s.points,
        "execution_time": s.duration.as_secs() + u64::from(s.duration.subsec_nanos() > 0),
        "output": output,
        "output_format": "text",
        "test_output_format": "text",
        "tests": sub.results.iter().map(test).collect::<Vec<_>>(),
    })
}

fn test(r: &ScenarioResult) -> Value {
    let name = match &r.title {
        Some(title) => format!("{}: {title}", r.id),
        None => r.id.clone(),
    };
    let status = if r.outcome == Outcome::Passed {
        "passed"
    } else {
        "failed"
    };
    let reason = r.reason.as_deref().unwrap_or("no reason given");
    let output = match r.outcome {
        Outcome::Passed if r.flaky => format!("{FLAKY_NOTE}\n"),
        Outcome::Passed => String::new(),
        Outcome::Skipped => format!("skipped: {reason}\n"),
        Outcome::ExpectedFailure => format!("expected failure: {reason}\n"),
        _ => {
            let mut text = render_problem(r, &STUDENT_OPTIONS)
                .trim_end_matches('\n')
                .to_owned();
            text.push('\n');
            if r.flaky {
                text.push_str(FLAKY_NOTE);
                text.push('\n');
            }
            text
        }
    };
    let mut extra = Map::new();
    extra.insert("id".into(), json!(r.id));
    extra.insert("outcome".into(), json!(r.outcome));
    if r.flaky {
        extra.insert("flaky".into(), json!(true));
    }
    if r.hidden {
        extra.insert("hidden".into(), json!(true));
    }
    if r.level == Level::Should {
        extra.insert("level".into(), json!("should"));
    }
    json!({
        "name": name,
        "score": r.points,
        "max_score": r.max_points,
        "status": status,
        "output": output,
        "tags": r.tags,
        "visibility": if r.hidden { "hidden" } else { "visible" },
        "extra_data": extra,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn gradescope_results() {
        let sub = fixtures::submission();
        let value = gradescope(&sub);
        let tests = value["tests"].as_array().unwrap();
        assert_eq!(tests.len(), sub.results.len());
        let total: u64 = tests.iter().map(|t| t["score"].as_u64().unwrap()).sum();
        assert_eq!(value["score"].as_u64(), Some(total));
        let text = serde_json::to_string_pretty(&value).unwrap();
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("report_gradescope", text));
    }
}
