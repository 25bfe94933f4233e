//! The JUnit XML report, for CI systems (GitLab, Jenkins, GitHub test reporters).
//!
//! One `<testsuite>` per suite (named by the suite's folder), one `<testcase>` per scenario:
//! `name` is the scenario id, `classname` the suite folder, `time` the duration, and the
//! non-standard but widely read `file` and `line` attributes point at the scenario file.
//!
//! | outcome                                             | JUnit                                   |
//! |-----------------------------------------------------|-----------------------------------------|
//! | `Passed`                                            | success (flaky: a `<flakyFailure>`)     |
//! | `Failed`, `TimedOut`, `UnexpectedPass`, `Crashed`, `Hung`, `DidNotStart` | `<failure>`  |
//! | `Error`                                             | `<error>`                               |
//! | `Skipped`, `ExpectedFailure`                        | `<skipped>` with the reason             |
//!
//! A `<failure>` is something the target did wrong; an `<error>` is the harness not being
//! able to run the scenario (connect refused, TLS set-up, a template that does not expand),
//! which is JUnit's "the test could not complete". A timeout is a failure: the target did not
//! send what the specification requires within the deadline.
//!
//! A failure's or error's `message` is the failure's one-line message, `type` the outcome
//! label (`FAIL`, `TIMEOUT`, `CRASH`, ...), and its text the problem as the human report
//! renders it (without times). `<system-out>` holds the scenario's transcript (with times).
//! Every test case carries the properties `points` and `max_points`, plus `hidden`, `flaky`
//! and `level` when they apply.

use std::collections::HashMap;
use std::io::{self, Write};

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use super::human::{HumanOptions, render_problem};
use super::{Event, Reporter};
use crate::run::{Outcome, ScenarioResult, Summary};
use crate::scenario::model::Level;

/// The `name` of the `<testsuites>` element.
const REPORT_NAME: &str = "harness";

/// Writes one JUnit XML document when the run finishes.
pub struct JunitReporter<'w> {
    out: &'w mut dyn Write,
    /// Suite folder of each scenario id, from [`Event::SuiteStarted`].
    suite_of: HashMap<String, String>,
}

impl std::fmt::Debug for JunitReporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JunitReporter")
            .field("scenarios", &self.suite_of.len())
            .finish()
    }
}

impl<'w> JunitReporter<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        Self {
            out,
            suite_of: HashMap::new(),
        }
    }

    /// The suite folder of a result: the one its suite announced, else the folder of its file.
    fn suite_name(&self, r: &ScenarioResult) -> String {
        self.suite_of.get(&r.id).cloned().unwrap_or_else(|| {
            r.file
                .parent()
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| ".".to_owned())
        })
    }

    /// The whole report: suites in the order their first result appears.
    pub fn build(&self, results: &[ScenarioResult], summary: &Summary) -> Report {
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<&ScenarioResult>> = HashMap::new();
        for r in results {
            let name = self.suite_name(r);
            if !groups.contains_key(&name) {
                order.push(name.clone());
            }
            groups.entry(name).or_default().push(r);
        }
        let mut report = Report::new(REPORT_NAME);
        report.set_time(summary.duration);
        for name in order {
            let members = groups.remove(&name).unwrap_or_default();
            report.add_test_suite(test_suite(&name, &members));
        }
        report
    }
}

fn test_suite(name: &str, results: &[&ScenarioResult]) -> TestSuite {
    let mut suite = TestSuite::new(name);
    suite.set_time(results.iter().map(|r| r.duration).sum());
    let points: u32 = results.iter().map(|r| r.points).sum();
    let max_points: u32 = results.iter().map(|r| r.max_points).sum();
    suite.add_property(Property::new("points", points.to_string()));
    suite.add_property(Property::new("max_points", max_points.to_string()));
    for r in results {
        suite.add_test_case(test_case(name, r));
    }
    // `disabled` is what quick-junit counts skipped cases in; many readers look for `skipped`.
    let skipped = suite.disabled.to_string();
    suite.extra.insert("skipped".into(), skipped.into());
    suite
}

fn test_case(suite: &str, r: &ScenarioResult) -> TestCase {
    let opts = HumanOptions {
        times: false,
        redact_uniq: false,
        verbose: true,
    };
    let message = r.failure.as_ref().map(|f| f.message.as_str());
    let status = match r.outcome {
        Outcome::Passed => {
            let mut status = TestCaseStatus::success();
            if r.flaky {
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                rerun.set_message("flaky: passed in some repetitions (--repeat) and not in others");
                status.add_rerun(rerun);
            }
            status
        }
        Outcome::Skipped | Outcome::ExpectedFailure => {
            let mut status = TestCaseStatus::skipped();
            let reason = r.reason.as_deref().unwrap_or("no reason given");
            if r.outcome == Outcome::ExpectedFailure {
                status.set_message(format!("expected failure: {reason}"));
                if let Some(m) = message {
                    status.set_description(m);
                }
            } else {
                status.set_message(reason);
            }
            status.set_type(r.outcome.label());
            status
        }
        Outcome::Error
        | Outcome::Failed
        | Outcome::TimedOut
        | Outcome::UnexpectedPass
        | Outcome::Crashed
        | Outcome::Hung
        | Outcome::DidNotStart => {
            let kind = if r.outcome == Outcome::Error {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut status = TestCaseStatus::non_success(kind);
            status.set_message(message.unwrap_or(r.outcome.label()));
            status.set_type(r.outcome.label());
            let text = render_problem(r, &opts);
            status.set_description(format!("{}\n", text.trim_end_matches('\n')));
            status
        }
    };
    let mut case = TestCase::new(r.id.as_str(), status);
    case.set_classname(suite);
    case.set_time(r.duration);
    case.extra
        .insert("file".into(), r.file.display().to_string().into());
    case.extra.insert("line".into(), r.line.to_string().into());
    case.add_property(Property::new("points", r.points.to_string()));
    case.add_property(Property::new("max_points", r.max_points.to_string()));
    if r.hidden {
        case.add_property(Property::new("hidden", "true"));
    }
    if r.flaky {
        case.add_property(Property::new("flaky", "true"));
    }
    if r.level == Level::Should {
        case.add_property(Property::new("level", "should"));
    }
    if !r.transcript.entries.is_empty() {
        case.set_system_out(r.transcript.render(true, &[]));
    }
    case
}

impl Reporter for JunitReporter<'_> {
    fn report(&mut self, event: &Event<'_>) -> io::Result<()> {
        match event {
            Event::SuiteStarted { suite, .. } => {
                let dir = suite.dir.display().to_string();
                for s in &suite.scenarios {
                    self.suite_of.insert(s.id.clone(), dir.clone());
                }
                Ok(())
            }
            Event::RunFinished {
                results, summary, ..
            } => {
                let report = self.build(results, summary);
                report.serialize(&mut *self.out).map_err(io::Error::other)?;
                self.out.flush()
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::fixtures;

    fn run(announce: bool) -> String {
        let suites = fixtures::suites();
        let results = fixtures::results();
        let summary = Summary::of(&results, Duration::from_millis(1234));
        let mut out = Vec::new();
        let mut reporter = JunitReporter::new(&mut out);
        if announce {
            for suite in &suites {
                reporter
                    .report(&Event::SuiteStarted {
                        suite,
                        target: "reference server",
                    })
                    .unwrap();
            }
        }
        reporter
            .report(&Event::RunFinished {
                results: &results,
                summary: &summary,
                strict: false,
            })
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn junit_report() {
        let text = run(true);
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("report_junit", text));
    }

    #[test]
    fn junit_groups_by_file_folder_without_suite_events() {
        let text = run(false);
        // Without SuiteStarted the chat scenarios group by their file's folder.
        assert!(
            text.contains(r#"<testsuite name="scenarios/chat/level1""#),
            "{text}"
        );
        assert!(text.contains(r#"<testsuite name="scenarios/kv""#), "{text}");
    }

    #[test]
    fn junit_counts() {
        let text = run(true);
        assert!(
            text.contains(r#"<testsuites name="harness" tests="7" failures="3" errors="0""#),
            "{text}"
        );
        // quick-junit's output parses back.
        let report = quick_junit::Report::deserialize_from_str(&text).unwrap();
        assert_eq!(report.test_suites.len(), 2);
    }
}
