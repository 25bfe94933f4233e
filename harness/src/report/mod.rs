//! Reporters: each consumes the same stream of [`Event`]s and writes one format to a
//! `&mut dyn Write`, so every format can be snapshot-tested with an in-memory buffer.

use std::io;

use crate::run::{ScenarioResult, Summary};
use crate::scenario::model::Suite;

#[cfg(test)]
pub(crate) mod fixtures;
pub mod gradescope;
pub mod html;
pub mod human;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod sheet;
pub mod tap;

/// One graded submission: its name (the folder), every scenario result (hidden ones
/// included; what the target printed is in the transcripts of those that did not pass), and
/// the totals.
#[derive(Debug, Clone)]
pub struct Submission {
    pub name: String,
    pub results: Vec<crate::run::ScenarioResult>,
    pub summary: crate::run::Summary,
}

/// What happens during a run, in order.
#[derive(Debug)]
pub enum Event<'a> {
    RunStarted {
        total: usize,
        jobs: usize,
    },
    SuiteStarted {
        suite: &'a Suite,
        /// Where the suite runs, e.g. `127.0.0.1:4000`.
        target: &'a str,
    },
    /// `harness serve --listen` without a command: the harness waits for a person to start
    /// the client for the next scenario.
    WaitingForClient {
        id: &'a str,
        addr: &'a str,
    },
    /// A scenario ended (in completion order, which varies with parallelism).
    ScenarioFinished(&'a ScenarioResult),
    /// Every scenario, in suite and file order.
    RunFinished {
        results: &'a [ScenarioResult],
        summary: &'a Summary,
        strict: bool,
    },
}

/// Consumes events.
pub trait Reporter {
    fn report(&mut self, event: &Event<'_>) -> io::Result<()>;
}

/// Sends every event to several reporters (a human report on the terminal and a JSON file).
pub struct Tee<'a>(pub Vec<&'a mut dyn Reporter>);

impl std::fmt::Debug for Tee<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tee({} reporters)", self.0.len())
    }
}

impl Reporter for Tee<'_> {
    fn report(&mut self, event: &Event<'_>) -> io::Result<()> {
        for r in &mut self.0 {
            r.report(event)?;
        }
        Ok(())
    }
}
