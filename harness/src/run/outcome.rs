//! How a scenario ended, and everything a report needs to explain it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::transcript::Transcript;
use crate::scenario::model::{Level, SourceFile, Span};

/// The end state of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    /// An expectation did not hold.
    Failed,
    /// An expected message did not arrive before its deadline.
    TimedOut,
    /// The harness could not run the scenario (connect refused, TLS failed, bad template).
    Error,
    Skipped,
    /// Marked `xfail` and failed as expected.
    ExpectedFailure,
    /// Marked `xfail` but passed: the mark is stale.
    UnexpectedPass,
    /// The target the harness started exited during the scenario.
    Crashed,
    /// The target the harness started stopped answering (it took no new connection, or
    /// did not answer on one) and did not exit.
    Hung,
    /// The target the harness was to start never accepted a connection.
    DidNotStart,
}

impl Outcome {
    /// The word reports print.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::TimedOut => "TIMEOUT",
            Outcome::Error => "ERROR",
            Outcome::Skipped => "SKIP",
            Outcome::ExpectedFailure => "XFAIL",
            Outcome::UnexpectedPass => "XPASS",
            Outcome::Crashed => "CRASH",
            Outcome::Hung => "HUNG",
            Outcome::DidNotStart => "NOSTART",
        }
    }

    /// Whether this outcome counts against the run.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Outcome::Failed
                | Outcome::TimedOut
                | Outcome::Error
                | Outcome::UnexpectedPass
                | Outcome::Crashed
                | Outcome::Hung
                | Outcome::DidNotStart
        )
    }
}

/// Why a scenario did not pass, pointing at the step that decided it.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// One line: what went wrong.
    pub message: String,
    /// The step (or scenario) the failure belongs to.
    pub span: Option<Span>,
    /// Index of the step in `steps`.
    pub step: Option<usize>,
    /// Text under the caret, e.g. "received `GET: ERROR`".
    pub label: Option<String>,
    /// The expected message, rendered.
    pub expected: Option<String>,
    /// The message that arrived instead, rendered.
    pub actual: Option<String>,
    pub help: Option<String>,
    /// The target closed, reset or refused a connection: what a server that died looks like
    /// from outside (`harness fuzz` then checks whether its process ended).
    pub gone: bool,
}

/// Everything about one finished scenario.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub id: String,
    pub title: Option<String>,
    pub spec: Option<String>,
    pub tags: Vec<String>,
    pub level: Level,
    pub file: PathBuf,
    pub line: u32,
    pub outcome: Outcome,
    pub duration: Duration,
    pub points: u32,
    pub max_points: u32,
    /// `skip` or `xfail` reason.
    pub reason: Option<String>,
    pub failure: Option<Failure>,
    pub transcript: Transcript,
    /// The value `{{uniq}}` had, so reports and snapshots can redact it.
    pub uniq: String,
    /// Values of secrets or other run-specific text to redact in snapshots.
    pub source: Arc<SourceFile>,
    /// `visibility: hidden`: counted in the score, left out of the student's report.
    pub hidden: bool,
    /// Run several times (`--repeat`), it both passed and did not.
    pub flaky: bool,
}

impl ScenarioResult {
    /// A `should` scenario's problem is reported but does not fail the run unless strict.
    pub fn fails_run(&self, strict: bool) -> bool {
        self.outcome.is_problem() && (strict || self.level == Level::Must)
    }
}

/// Totals over a run.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub errors: usize,
    pub skipped: usize,
    pub expected_failures: usize,
    pub unexpected_passes: usize,
    pub crashed: usize,
    pub hung: usize,
    pub did_not_start: usize,
    pub flaky: usize,
    pub points: u32,
    pub max_points: u32,
    #[serde(
        serialize_with = "millis",
        deserialize_with = "from_millis",
        rename = "duration_ms"
    )]
    pub duration: Duration,
}

fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Summary {
    pub fn of(results: &[ScenarioResult], duration: Duration) -> Self {
        let mut s = Summary {
            total: results.len(),
            duration,
            ..Summary::default()
        };
        for r in results {
            match r.outcome {
                Outcome::Passed => s.passed += 1,
                Outcome::Failed => s.failed += 1,
                Outcome::TimedOut => s.timed_out += 1,
                Outcome::Error => s.errors += 1,
                Outcome::Skipped => s.skipped += 1,
                Outcome::ExpectedFailure => s.expected_failures += 1,
                Outcome::UnexpectedPass => s.unexpected_passes += 1,
                Outcome::Crashed => s.crashed += 1,
                Outcome::Hung => s.hung += 1,
                Outcome::DidNotStart => s.did_not_start += 1,
            }
            s.flaky += usize::from(r.flaky);
            s.points += r.points;
            s.max_points += r.max_points;
        }
        s
    }
}
