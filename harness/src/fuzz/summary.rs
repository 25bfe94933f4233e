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
        FuzzEvent::Failed {
            case,
            verdict,
            shrinking,
        } => Some(format!(
            "case {case} failed ({}, at {}){}",
            verdict.oracle,
            verdict.label,
            if *shrinking { ": shrinking" } else { "" }
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::fuzz::{Finding, Oracle, Verdict};

    fn finding(shrunk: bool) -> Finding {
        Finding {
            verdict: Verdict {
                oracle: Oracle::Differs,
                label: "GET".into(),
                message: "unexpected reply: expected \"3916222277\", got \"3916222278\"".into(),
            },
            case: 49,
            seed: 1,
            actions_found: 9,
            actions_shrunk: 4,
            steps: 20,
            path: PathBuf::from("fuzz-findings/differs-get.yaml"),
            yaml: String::new(),
            duplicates: 3,
            shrunk,
        }
    }

    #[test]
    fn what_a_run_prints() {
        let f = finding(true);
        let not_shrunk = finding(false);
        let verdict = f.verdict.clone();
        let mut text = String::new();
        for event in [
            FuzzEvent::Started {
                protocol: "kv",
                target: "127.0.0.1:4000",
                seed: 1,
            },
            FuzzEvent::Failed {
                case: 49,
                verdict: &verdict,
                shrinking: true,
            },
            FuzzEvent::Failed {
                case: 50,
                verdict: &verdict,
                shrinking: false,
            },
            FuzzEvent::Found(&f),
            FuzzEvent::Found(&not_shrunk),
            FuzzEvent::Progress { cases: 120 },
        ] {
            text.push_str(&event_line(&event).unwrap_or_default());
            text.push('\n');
        }
        let report = FuzzReport {
            cases: 200,
            elapsed: Duration::from_millis(8_000),
            findings: vec![f],
            unconfirmed: 1,
            stopped: Some("the target at 127.0.0.1:4000 stopped accepting connections".into()),
            starts: 3,
        };
        text.push_str(&summary(
            &report,
            Path::new("fuzz-findings"),
            "--target 127.0.0.1:4000 --insecure",
        ));
        let quiet = FuzzReport {
            cases: 1,
            elapsed: Duration::from_millis(40),
            ..FuzzReport::default()
        };
        text.push_str(&summary(&quiet, Path::new("fuzz-findings"), ""));
        crate::snapshot_settings().bind(|| insta::assert_snapshot!("fuzz_output", text));
    }
}
