//! Synthetic results shared by the tests of the report formats (JUnit, TAP, Markdown, HTML,
//! Gradescope, class sheet): two suites, scenarios parsed from small YAML texts so failures
//! point at real source lines, and one result of each interesting kind.

use std::path::Path;
use std::time::Duration;

use super::Submission;
use crate::run::transcript::{Data, EntryKind, Transcript};
use crate::run::{Failure, Outcome, ScenarioResult, Summary};
use crate::scenario::model::{Scenario, Suite, SuiteConfig};
use crate::scenario::parse_scenario;

/// The `{{uniq}}` value of every fixture scenario.
pub(crate) const UNIQ: &str = "q7x2k9";

/// (suite dir, file name, YAML text) of every fixture scenario, in suite and file order.
const FILES: &[(&str, &str, &str)] = &[
    (
        "scenarios/kv",
        "get-missing.yaml",
        r#"id: kv/get/missing
title: GET of a key never stored answers GET ERROR
spec: kv-tls.md §GET
tags: [get, error]
points: 3
steps:
  - C -> S: CONNECT u{{uniq}}
  - S -> C: "CONNECT: OK"
  - C -> S: GET nothing-here
  - S -> C: "GET: ERROR"
"#,
    ),
    (
        "scenarios/kv",
        "large-value.yaml",
        r#"id: kv/put/large-value
title: PUT accepts a 64 KiB value
visibility: hidden
points: 2
steps:
  - C -> S: CONNECT u{{uniq}}
  - S -> C: "CONNECT: OK"
"#,
    ),
    (
        "scenarios/kv",
        "put-new.yaml",
        r#"id: kv/put/new
title: PUT stores a new key
tags: [put]
points: 2
steps:
  - C -> S: CONNECT u{{uniq}}
  - S -> C: "CONNECT: OK"
"#,
    ),
    (
        "scenarios/kv",
        "put-twice.yaml",
        r#"id: kv/put/twice
title: A second PUT <replaces> the value & says so
skip: DELETE | PUT "twice" is not in this year's spec
steps:
  - C -> S: CONNECT u{{uniq}}
"#,
    ),
    (
        "scenarios/chat",
        "level1/login-bad-password.yaml",
        r#"id: chat/login/bad-password
title: A wrong password is refused, and the server keeps running
points: 2
steps:
  - C -> S: LOGIN alice wrong
  - S -> C: "LOGIN_FAIL"
"#,
    ),
    (
        "scenarios/chat",
        "level1/login-ok.yaml",
        r#"id: chat/login/ok
title: LOGIN with a fresh name is welcomed
steps:
  - C -> S: LOGIN a{{uniq}}
  - S -> C: "LOGIN_OK"
"#,
    ),
    (
        "scenarios/chat",
        "level1/ping-twice.yaml",
        r#"id: chat/ping/twice
title: Two PINGs get two PONGs
xfail: the reference server answers only the first PING
steps:
  - C -> S: PING
  - S -> C: PONG
"#,
    ),
];

/// The fixture suites, each with its scenarios.
pub(crate) fn suites() -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    for (dir, name, text) in FILES {
        let path = Path::new(dir).join(name);
        let scenario: Scenario = match parse_scenario(&path, text, &SuiteConfig::default()) {
            Ok(s) => s,
            Err(e) => panic!("fixture {} does not parse:\n{}", path.display(), e.render()),
        };
        match suites.last_mut() {
            Some(s) if s.dir == Path::new(dir) => s.scenarios.push(scenario),
            _ => suites.push(Suite {
                dir: dir.into(),
                config: SuiteConfig::default(),
                scenarios: vec![scenario],
            }),
        }
    }
    suites
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sent(t: &mut Transcript, at: u64, conn: &str, text: &str) {
    t.push(
        ms(at),
        conn,
        EntryKind::Sent {
            data: Data::new(text.as_bytes()),
            writes: 1,
            clear: false,
        },
    );
}

fn received(t: &mut Transcript, at: u64, conn: &str, text: &str) {
    t.push(
        ms(at),
        conn,
        EntryKind::Received {
            data: Data::new(text.as_bytes()),
            terminated: true,
        },
    );
}

fn connected(t: &mut Transcript, at: u64, conn: &str) {
    t.push(
        ms(at),
        conn,
        EntryKind::Connected {
            addr: "127.0.0.1:4000".into(),
            transport: "tcp".into(),
        },
    );
}

/// A result as the runner starts it for `s`: passed with every point.
fn result(s: &Scenario) -> ScenarioResult {
    ScenarioResult {
        id: s.id.clone(),
        title: s.title.clone(),
        spec: s.spec.clone(),
        tags: s.tags.clone(),
        level: s.level,
        file: s.source.path.clone(),
        line: s.span.line,
        outcome: Outcome::Passed,
        duration: ms(12),
        points: s.points,
        max_points: s.points,
        reason: s.skip.clone().or_else(|| s.xfail.clone()),
        failure: None,
        transcript: Transcript::default(),
        uniq: UNIQ.to_owned(),
        source: s.source.clone(),
        hidden: s.hidden,
        flaky: false,
    }
}

/// One result per fixture scenario, in suite and file order: a failed one with partial
/// credit, a hidden failed one, a passed one, a skipped one, a crashed one, a flaky pass and
/// an expected failure.
pub(crate) fn results() -> Vec<ScenarioResult> {
    let mut out = Vec::new();
    for suite in suites() {
        for s in &suite.scenarios {
            let mut r = result(s);
            let step = |i: usize| s.steps[i].span;
            match s.id.as_str() {
                "kv/get/missing" => {
                    r.outcome = Outcome::Failed;
                    r.points = 1;
                    r.duration = ms(48);
                    let t = &mut r.transcript;
                    connected(t, 1, "C");
                    sent(t, 2, "C", &format!("CONNECT u{UNIQ}\n"));
                    received(t, 40, "C", "CONNECT: OK");
                    sent(t, 41, "C", "GET nothing-here\n");
                    received(t, 47, "C", "GET hello <b>world</b>");
                    r.failure = Some(Failure {
                        message: "unexpected reply".into(),
                        span: Some(step(3)),
                        step: Some(3),
                        label: Some("received `GET hello <b>world</b>`".into()),
                        expected: Some(r#""GET: ERROR\n""#.into()),
                        actual: Some(r#""GET hello <b>world</b>\n""#.into()),
                        help: Some(
                            "a key that was never stored has no value: answer `GET: ERROR`".into(),
                        ),
                        gone: false,
                    });
                }
                "kv/put/large-value" => {
                    r.outcome = Outcome::Failed;
                    r.points = 0;
                    let t = &mut r.transcript;
                    connected(t, 1, "C");
                    sent(t, 2, "C", &format!("CONNECT u{UNIQ}\n"));
                    received(t, 9, "C", "CONNECT: ERROR");
                    r.failure = Some(Failure {
                        message: "unexpected reply".into(),
                        span: Some(step(1)),
                        step: Some(1),
                        label: Some("received `CONNECT: ERROR`".into()),
                        expected: Some(r#""CONNECT: OK\n""#.into()),
                        actual: Some(r#""CONNECT: ERROR\n""#.into()),
                        help: None,
                        gone: false,
                    });
                }
                "kv/put/new" => {
                    let t = &mut r.transcript;
                    connected(t, 1, "C");
                    sent(t, 2, "C", &format!("CONNECT u{UNIQ}\n"));
                    received(t, 30, "C", "CONNECT: OK");
                }
                "kv/put/twice" => {
                    r.outcome = Outcome::Skipped;
                    r.points = 0;
                    r.duration = Duration::ZERO;
                }
                "chat/login/bad-password" => {
                    r.outcome = Outcome::Crashed;
                    r.points = 0;
                    r.duration = ms(7);
                    let t = &mut r.transcript;
                    connected(t, 1, "C");
                    sent(t, 2, "C", "LOGIN alice wrong\n");
                    t.push(
                        ms(6),
                        "C",
                        EntryKind::ClosedByTarget {
                            how: "reset".into(),
                        },
                    );
                    r.failure = Some(Failure {
                        message: "the target exited during the scenario (exit status: 101)".into(),
                        help: Some("see what the target printed for the reason it exited".into()),
                        ..Failure::default()
                    });
                }
                "chat/login/ok" => {
                    r.flaky = true;
                    let t = &mut r.transcript;
                    connected(t, 1, "C");
                    sent(t, 2, "C", &format!("LOGIN a{UNIQ}\n"));
                    received(t, 5, "C", "LOGIN_OK");
                }
                "chat/ping/twice" => {
                    r.outcome = Outcome::ExpectedFailure;
                    r.points = 0;
                    r.failure = Some(Failure {
                        message: "no message on `C` within 1s".into(),
                        span: Some(step(1)),
                        step: Some(1),
                        label: Some("expected \"PONG\"".into()),
                        ..Failure::default()
                    });
                }
                other => panic!("no fixture result for {other}"),
            }
            out.push(r);
        }
    }
    out
}

/// The fixture results as one student's submission, with a few lines the target printed.
pub(crate) fn submission() -> Submission {
    let results = results();
    let summary = Summary::of(&results, ms(1234));
    Submission {
        name: "alice, \"the\" <fast> one".into(),
        results,
        summary,
    }
}
