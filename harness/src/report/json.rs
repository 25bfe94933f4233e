//! The JSON report (schema version 1), for CI and grading tools.
//!
//! ```text
//! {"version": 1,
//!  "summary": {"total", "passed", "failed", "timed_out", "errors", "skipped",
//!              "expected_failures", "unexpected_passes", "crashed", "hung", "did_not_start",
//!              "flaky", "points", "max_points", "duration_ms"},
//!  "scenarios": [{"id", "title", "file", "line", "spec", "tags", "level", "outcome",
//!                 "duration_ms", "points", "max_points", "reason"?,
//!                 "failure"?: {"message", "file", "line", "col", "label", "expected",
//!                              "actual", "help"},
//!                 "transcript"?: [{"t_ms", "conn", "event", "text" | "hex", "len", ...}]}]}
//! ```
//! Fields are only ever added within a version; `transcript` is present for scenarios that
//! did not pass.

use std::io::{self, Write};

use serde::Serialize;

use super::{Event, Reporter};
use crate::run::transcript::Entry;
use crate::run::{Outcome, ScenarioResult, Summary};
use crate::scenario::model::Level;

/// The version of the schema this module writes.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub version: u32,
    pub summary: &'a Summary,
    pub scenarios: Vec<ScenarioJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioJson<'a> {
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    pub file: String,
    pub line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<&'a str>,
    pub tags: &'a [String],
    pub level: &'static str,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub points: u32,
    pub max_points: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<&'a [Entry]>,
}

#[derive(Debug, Serialize)]
pub struct FailureJson<'a> {
    pub message: &'a str,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
}

impl<'a> Report<'a> {
    pub fn new(results: &'a [ScenarioResult], summary: &'a Summary) -> Self {
        Self {
            version: VERSION,
            summary,
            scenarios: results.iter().map(scenario).collect(),
        }
    }
}

fn scenario(r: &ScenarioResult) -> ScenarioJson<'_> {
    let file = r.file.display().to_string();
    ScenarioJson {
        id: &r.id,
        title: r.title.as_deref(),
        file: file.clone(),
        line: r.line,
        spec: r.spec.as_deref(),
        tags: &r.tags,
        level: match r.level {
            Level::Must => "must",
            Level::Should => "should",
        },
        outcome: r.outcome,
        duration_ms: r.duration.as_millis() as u64,
        points: r.points,
        max_points: r.max_points,
        reason: r.reason.as_deref(),
        failure: r.failure.as_ref().map(|f| FailureJson {
            message: &f.message,
            file,
            line: f.span.map(|s| s.line),
            col: f.span.map(|s| s.col),
            label: f.label.as_deref(),
            expected: f.expected.as_deref(),
            actual: f.actual.as_deref(),
            help: f.help.as_deref(),
        }),
        transcript: (r.outcome != Outcome::Passed && !r.transcript.entries.is_empty())
            .then_some(r.transcript.entries.as_slice()),
    }
}

/// Writes the whole report when the run finishes.
pub struct JsonReporter<'w> {
    out: &'w mut dyn Write,
}

impl std::fmt::Debug for JsonReporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonReporter")
    }
}

impl<'w> JsonReporter<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        Self { out }
    }
}

impl Reporter for JsonReporter<'_> {
    fn report(&mut self, event: &Event<'_>) -> io::Result<()> {
        if let Event::RunFinished {
            results, summary, ..
        } = event
        {
            serde_json::to_writer_pretty(&mut *self.out, &Report::new(results, summary))
                .map_err(io::Error::other)?;
            writeln!(self.out)?;
            self.out.flush()?;
        }
        Ok(())
    }
}
