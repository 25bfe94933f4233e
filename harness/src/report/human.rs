//! The report a person reads: a line per scenario as it finishes, then each problem in
//! detail (the step as a compiler-style diagnostic, expected against actual, the transcript
//! tail), then the totals.

use std::io::{self, Write};

use super::{Event, Reporter};
use crate::run::transcript::Transcript;
use crate::run::{Outcome, ScenarioResult, Summary};
use crate::scenario::diagnostic::{Diagnostic, Severity};
use crate::scenario::model::Level;

/// Entries of the transcript shown under a failure.
const TRANSCRIPT_TAIL: usize = 16;

/// Options of the human report.
#[derive(Debug, Clone, Copy)]
pub struct HumanOptions {
    /// Show durations (snapshots turn them off).
    pub times: bool,
    /// Replace each scenario's `{{uniq}}` value with `{{uniq}}` in transcripts.
    pub redact_uniq: bool,
    /// Print a line for every scenario, not only for problems.
    pub verbose: bool,
}

impl Default for HumanOptions {
    fn default() -> Self {
        Self {
            times: true,
            redact_uniq: false,
            verbose: true,
        }
    }
}

/// Writes the human report.
pub struct HumanReporter<'w> {
    out: &'w mut dyn Write,
    opts: HumanOptions,
}

impl std::fmt::Debug for HumanReporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HumanReporter")
            .field("opts", &self.opts)
            .finish()
    }
}

impl<'w> HumanReporter<'w> {
    pub fn new(out: &'w mut dyn Write, opts: HumanOptions) -> Self {
        Self { out, opts }
    }

    fn line(&mut self, r: &ScenarioResult) -> io::Result<()> {
        if !self.opts.verbose && !r.outcome.is_problem() {
            return Ok(());
        }
        let mut line = format!("  {:<7} {}", r.outcome.label(), r.id);
        if r.outcome.is_problem() && r.level == Level::Should {
            line.push_str("  (should)");
        }
        if let Some(reason) = &r.reason
            && matches!(r.outcome, Outcome::Skipped | Outcome::ExpectedFailure)
        {
            line.push_str(&format!("  ({reason})"));
        }
        if self.opts.times {
            let pad = 60usize.saturating_sub(line.chars().count());
            line.push_str(&format!("{:pad$} {:>6} ms", "", r.duration.as_millis()));
        }
        writeln!(self.out, "{line}")
    }

    fn problem(&mut self, r: &ScenarioResult) -> io::Result<()> {
        let text = render_problem(r, &self.opts);
        self.out.write_all(text.as_bytes())
    }

    fn summary(&mut self, s: &Summary, results: &[ScenarioResult], strict: bool) -> io::Result<()> {
        let mut line = format!(
            "{} {}: {} passed, {} failed, {} timed out, {} errors, {} skipped",
            s.total,
            plural(s.total, "scenario", "scenarios"),
            s.passed,
            s.failed,
            s.timed_out,
            s.errors,
            s.skipped
        );
        if s.expected_failures > 0 {
            line.push_str(&format!(", {} expected failures", s.expected_failures));
        }
        if s.unexpected_passes > 0 {
            line.push_str(&format!(", {} unexpected passes", s.unexpected_passes));
        }
        for (n, word) in [
            (s.crashed, "crashed"),
            (s.hung, "hung"),
            (s.did_not_start, "did not start"),
            (s.flaky, "flaky"),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {word}"));
            }
        }
        line.push_str(&format!("; points {}/{}", s.points, s.max_points));
        if self.opts.times {
            line.push_str(&format!(
                "; {}",
                humantime::format_duration(std::time::Duration::from_millis(
                    s.duration.as_millis() as u64
                ))
            ));
        }
        writeln!(self.out, "{line}")?;
        let tolerated = results
            .iter()
            .filter(|r| r.outcome.is_problem() && !r.fails_run(strict))
            .count();
        if tolerated > 0 {
            writeln!(
                self.out,
                "{tolerated} should-level problem(s) reported without failing the run (use --strict to fail on them)"
            )?;
        }
        Ok(())
    }
}

/// One scenario's problem as the human report shows it: heading, spec, the failure with its
/// source line and caret, expected and actual, and the tail of the transcript; ends with a
/// blank line. JUnit, Markdown and HTML reports reuse it.
pub fn render_problem(r: &ScenarioResult, opts: &HumanOptions) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let me = Redactor { opts, r };
    let mut head = format!("{} {}", r.outcome.label(), r.id);
    if let Some(title) = &r.title {
        head.push_str(&format!(": {title}"));
    }
    let _ = writeln!(out, "{head}");
    if let Some(spec) = &r.spec {
        let _ = writeln!(out, "spec: {spec}");
    }
    if r.level == Level::Should {
        let _ = writeln!(
            out,
            "level: should (reported; fails the run only with --strict)"
        );
    }
    if let Some(f) = &r.failure {
        let d = Diagnostic {
            severity: Severity::Error,
            message: f.message.clone(),
            file: r.source.clone(),
            span: f.span.unwrap_or_default(),
            label: f.label.clone(),
            help: f.help.clone(),
        };
        let rendered = if f.span.is_some() {
            d.render()
        } else {
            d.render_plain()
        };
        let _ = write!(out, "{}", me.redact(&rendered));
        if !rendered.ends_with('\n') {
            let _ = writeln!(out);
        }
        if let (Some(expected), Some(actual)) = (&f.expected, &f.actual) {
            let expected = me.redact(expected);
            let actual = me.redact(actual);
            let _ = writeln!(out, "expected: {expected}");
            let _ = writeln!(out, "  actual: {actual}");
            if let Some(col) = first_difference(&expected, &actual) {
                let _ = writeln!(out, "          {:col$}^ differs from here", "");
            }
        }
    }
    if !r.transcript.entries.is_empty() {
        let _ = writeln!(out, "transcript:");
        let redact = me.redactions();
        let text = if opts.times {
            r.transcript.render_tail(TRANSCRIPT_TAIL, &redact)
        } else {
            tail_without_times(&r.transcript, &redact)
        };
        for line in text.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out);
    out
}

struct Redactor<'a> {
    opts: &'a HumanOptions,
    r: &'a ScenarioResult,
}

impl Redactor<'_> {
    fn redactions(&self) -> Vec<(String, String)> {
        if self.opts.redact_uniq {
            vec![(self.r.uniq.clone(), "{{uniq}}".to_owned())]
        } else {
            Vec::new()
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (needle, replacement) in self.redactions() {
            text = text.replace(&needle, &replacement);
        }
        text
    }
}

/// The transcript tail without its time column.
fn tail_without_times(t: &Transcript, redact: &[(String, String)]) -> String {
    let start = t.entries.len().saturating_sub(TRANSCRIPT_TAIL);
    let tail = Transcript {
        entries: t.entries[start..].to_vec(),
        dropped: t.dropped,
        binary: t.binary,
        serving: t.serving,
        ..Transcript::default()
    };
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("... {start} earlier entries\n"));
    }
    out.push_str(&tail.render(false, redact));
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Column of the first character where two renderings differ.
/// The column where two renderings first differ, when both are quoted text (a caret under
/// a hex dump compared with text would point at nothing useful).
fn first_difference(a: &str, b: &str) -> Option<usize> {
    if !(a.starts_with('"') && b.starts_with('"')) {
        return None;
    }
    let mut ai = a.chars();
    let mut bi = b.chars();
    let mut col = 0;
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return None,
            (x, y) if x == y => col += 1,
            _ => return Some(col),
        }
    }
}

impl Reporter for HumanReporter<'_> {
    fn report(&mut self, event: &Event<'_>) -> io::Result<()> {
        match event {
            Event::RunStarted { total, jobs } => {
                let jobs = if self.opts.times {
                    format!(" ({jobs} at a time)")
                } else {
                    String::new()
                };
                let noun = plural(*total, "scenario", "scenarios");
                writeln!(self.out, "running {total} {noun}{jobs}")
            }
            Event::SuiteStarted { suite, target } => {
                let target = if self.opts.times {
                    (*target).to_owned()
                } else {
                    // Snapshots: the port changes from run to run.
                    target
                        .rsplit_once(" at ")
                        .map_or(*target, |(d, _)| d)
                        .to_owned()
                };
                writeln!(self.out, "\n{}: {target}", suite.dir.display())
            }
            Event::WaitingForClient { id, addr } => {
                writeln!(self.out, "  waiting for the client on {addr} ({id})")?;
                self.out.flush()
            }
            Event::ScenarioFinished(r) => self.line(r),
            Event::RunFinished {
                results,
                summary,
                strict,
            } => {
                let problems: Vec<&ScenarioResult> =
                    results.iter().filter(|r| r.outcome.is_problem()).collect();
                writeln!(self.out)?;
                if !problems.is_empty() {
                    writeln!(self.out, "problems:\n")?;
                    for r in problems {
                        self.problem(r)?;
                    }
                }
                self.summary(summary, results, *strict)
            }
        }
    }
}
