//! What `harness fuzz` prints: a line per event worth a person's attention, and the summary
//! at the end.

use std::fmt::Write as _;

use super::{FuzzEvent, FuzzReport};

/// The line an event prints, if any.
pub fn event_line(event: &FuzzEvent<'_>) -> Option<String> {
    match event {
        FuzzEvent::Started {
            protocol,
            target,
            seed,
        } => Some(format!("fuzzing {protocol} at {target} (seed {seed})")),
        FuzzEvent::Failed { case, verdict } => Some(format!(
            "case {case} failed ({}, at {}): shrinking",
            verdict.oracle, verdict.label
        )),
        FuzzEvent::Found(f) => {
            let mut line = format!(
                "finding: {} at {} (case {})\n  {}\n  ",
                f.verdict.oracle, f.verdict.label, f.case, f.verdict.message
            );
            if f.shrunk {
                let _ = write!(
                    line,
                    "shrunk from {} to {} action{} ({} steps): {}",
                    f.actions_found,
                    f.actions_shrunk,
                    if f.actions_shrunk == 1 { "" } else { "s" },
                    f.steps,
                    f.path.display()
                );
            } else {
                let _ = write!(
                    line,
                    "not shrunk (the target cannot be restarted), {} steps: {}",
                    f.steps,
                    f.path.display()
                );
            }
            Some(line)
        }
        FuzzEvent::Duplicate { case, of } => Some(format!(
            "case {case} failed like {} (merged)",
            of.path.display()
        )),
        FuzzEvent::Progress { cases } => Some(format!("{cases} cases...")),
    }
}

/// The summary at the end of a run, and how to replay what it found.
pub fn summary(report: &FuzzReport, out: &std::path::Path, replay_target: &str) -> String {
    let mut s = String::new();
    let findings = report.findings.len();
    let merged: u32 = report.findings.iter().map(|f| f.duplicates).sum();
    let _ = write!(
        s,
        "{} case{} in {:.1}s ({:.1} cases/s): {findings} finding{}",
        report.cases,
        if report.cases == 1 { "" } else { "s" },
        report.elapsed.as_secs_f64(),
        report.cases_per_second(),
        if findings == 1 { "" } else { "s" },
    );
    if merged > 0 {
        let _ = write!(s, ", {merged} more case{} merged into them", plural(merged));
    }
    if report.unconfirmed > 0 {
        let _ = write!(
            s,
            ", {} failure{} that did not fail again (left out)",
            report.unconfirmed,
            plural(report.unconfirmed)
        );
    }
    s.push('\n');
    if report.starts > 1 {
        let _ = writeln!(s, "the target was started {} times", report.starts);
    }
    if let Some(why) = &report.stopped {
        let _ = writeln!(s, "stopped early: {why}");
    }
    if findings > 0 {
        let _ = writeln!(s, "replay: harness run {} {replay_target}", out.display());
    }
    s
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}
