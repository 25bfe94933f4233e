//! `harness fuzz`: stateful fuzzing of a live server.
//!
//! ```text
//! grammar/   valid sessions of each protocol, one message mutated at a time
//! observe    the case against the reference server: what a correct server answers
//! build      case + the reference's answers -> a scenario file (spec rules where they apply)
//! target     the server under fuzz: an address, a command the harness restarts, or built in
//! shrink     delta debugging over actions, then over the bytes of each message
//! ```
//!
//! Each case runs as a scenario through the same runner as `harness run`, so a finding is
//! the scenario that failed, shrunk, and replays the same way. Oracles, in the order a
//! failure is put down to them: the target process died (`crash`) or stopped accepting
//! connections (`down`); a message the spec answers the same way in every state got
//! another answer (`spec`); a reply differs from the reference server's (`differs`); after
//! the case, a fresh client's happy flow failed (`alive`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

pub mod build;
pub mod case;
mod findings;
pub mod grammar;
pub mod observe;
pub mod rng;
mod shrink;
pub mod summary;
pub mod target;

use build::{Built, Meta, Origin};
use case::{Action, Case};
use findings::{check_out, make_out, one_line, slug, unused_stem};
use grammar::Grammar;
use observe::{Observation, Reference};
pub use target::{TargetChoice, TargetError};

use crate::protocol::{self, Protocol};
use crate::run::{ExecSettings, Outcome, ScenarioResult, next_uniq, run_scenario};
use crate::scenario::model::{Scenario, SuiteConfig};
use crate::scenario::{parse_scenario, parse_suite_config};
use crate::target::process::EXIT_GRACE;
use target::Target;

/// Everything `harness fuzz` takes from the command line.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub protocol: String,
    pub target: TargetChoice,
    pub seed: u64,
    /// Stop after this many cases.
    pub cases: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Where findings are written (a suite folder `harness run` replays).
    pub out: PathBuf,
    /// Stop after this many distinct findings.
    pub max_findings: usize,
    /// Most trials one finding's shrinking may take.
    pub shrink_trials: usize,
    /// Settings of the reference server (as a profile's `reference:` gives them).
    pub reference_settings: BTreeMap<String, String>,
    pub time_scale: f64,
}

/// How long a run lasts when neither `--cases` nor `--duration` says.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

impl Default for FuzzOptions {
    fn default() -> Self {
        Self {
            protocol: String::new(),
            target: TargetChoice::Reference,
            seed: 0,
            cases: None,
            duration: None,
            out: PathBuf::from("fuzz-findings"),
            max_findings: 10,
            shrink_trials: 300,
            reference_settings: BTreeMap::new(),
            time_scale: 1.0,
        }
    }
}

/// Which check a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Oracle {
    /// The server process the harness started ended.
    Crash,
    /// The server stopped accepting connections.
    Down,
    /// A message the spec answers the same way in every state got another answer.
    Spec,
    /// A reply differs from the reference server's.
    Differs,
    /// After the case, a fresh client's happy flow failed.
    Alive,
}

impl Oracle {
    pub fn name(self) -> &'static str {
        match self {
            Oracle::Crash => "crash",
            Oracle::Down => "down",
            Oracle::Spec => "spec",
            Oracle::Differs => "differs",
            Oracle::Alive => "alive",
        }
    }
}

impl std::fmt::Display for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A case that failed, and why.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub oracle: Oracle,
    /// What the grammar called the action the failing step belongs to.
    pub label: String,
    /// What went wrong, in one paragraph.
    pub message: String,
}

impl Verdict {
    /// What a finding is filed under: its oracle and the kind of message it failed at
    /// (without how that message was mutated).
    fn key(&self) -> (Oracle, &str) {
        (
            self.oracle,
            self.label.split('+').next().unwrap_or(&self.label),
        )
    }
}

impl Finding {
    /// Whether a failure is this finding's bug again: same oracle, same kind of message.
    fn same_bug(&self, other: &Verdict) -> bool {
        self.verdict.key() == other.key()
    }
}

/// A bug found, shrunk and written.
#[derive(Debug, Clone)]
pub struct Finding {
    pub verdict: Verdict,
    /// The case that found it.
    pub case: u64,
    pub seed: u64,
    /// Actions of the case as found and after shrinking.
    pub actions_found: usize,
    pub actions_shrunk: usize,
    /// Steps of the written scenario.
    pub steps: usize,
    pub path: PathBuf,
    pub yaml: String,
    /// Later cases that failed the same way.
    pub duplicates: u32,
    /// Whether shrinking ran (it cannot once a target the harness did not start is down).
    pub shrunk: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub cases: u64,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
    /// Failures that did not fail again on replay (or that the reference failed too).
    pub unconfirmed: u32,
    /// Why the run stopped before its budget, if it did.
    pub stopped: Option<String>,
    /// How often the harness started the target.
    pub starts: u32,
}

impl FuzzReport {
    pub fn cases_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.cases as f64 / secs
        } else {
            0.0
        }
    }
}

/// What a run tells whoever watches it.
#[derive(Debug)]
pub enum FuzzEvent<'a> {
    Started {
        protocol: &'a str,
        target: &'a str,
        seed: u64,
    },
    /// A case failed in a new way; shrinking starts unless the target cannot be restarted.
    Failed {
        case: u64,
        verdict: &'a Verdict,
        shrinking: bool,
    },
    Found(&'a Finding),
    Progress {
        cases: u64,
    },
}

/// Problems that stop a run before or during it (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("unknown protocol `{protocol}` (known: {known})")]
    UnknownProtocol { protocol: String, known: String },
    #[error(
        "`harness fuzz` does not support the {protocol} protocol yet (it fuzzes {fuzzable}); test it with `harness run` on a suite with `protocol: {protocol}`"
    )]
    Unsupported {
        protocol: &'static str,
        fuzzable: String,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot start the built-in reference server the cases are checked against: {0}")]
    Reference(String),
    #[error("{path}: {reason}")]
    Out { path: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// One run of a case.
struct Trial {
    built: Built,
    actions: Vec<Action>,
    observed: Observation,
    uniq: String,
    verdict: Option<Verdict>,
}

struct Fuzzer<'a> {
    grammar: &'static dyn Grammar,
    protocol: &'static Protocol,
    opts: &'a FuzzOptions,
    suite: SuiteConfig,
    reference: Reference,
    target: Target,
    base_vars: BTreeMap<String, String>,
    /// Whether the last trial left the target in doubt (hung): the next starts it afresh.
    fresh: bool,
}

/// Runs the fuzzer until its budget is spent, it has `max_findings` findings, or the
/// target is down for good.
pub async fn fuzz(
    opts: &FuzzOptions,
    on_event: &mut dyn FnMut(FuzzEvent<'_>),
) -> Result<FuzzReport, FuzzError> {
    // The protocols the fuzzer has a grammar for, in the harness's order.
    let fuzzable = || {
        protocol::names()
            .into_iter()
            .filter(|name| grammar::find(name).is_some())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(protocol) = protocol::find(&opts.protocol) else {
        return Err(FuzzError::UnknownProtocol {
            protocol: opts.protocol.clone(),
            known: fuzzable(),
        });
    };
    let Some(grammar) = grammar::find(protocol.name) else {
        return Err(FuzzError::Unsupported {
            protocol: protocol.name,
            fuzzable: fuzzable(),
        });
    };
    let suite_path = opts.out.join("suite.yaml");
    let suite = parse_suite_config(&suite_path, grammar.suite_yaml())
        .map_err(|d| FuzzError::Internal(d.render()))?;
    check_out(&opts.out, grammar)?;

    let reference_server = protocol::start_reference(protocol, &opts.reference_settings)
        .await
        .map_err(|e| FuzzError::Reference(e.to_string()))?;
    let mut base_vars: BTreeMap<String, String> = protocol
        .vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    base_vars.extend(suite.vars.clone());
    let mut reference_vars = base_vars.clone();
    reference_vars.extend(reference_server.vars.clone());
    let reference = Reference {
        addr: reference_server.addr.to_string(),
        transport: target::reference_transport(protocol, &reference_server)
            .map_err(|e| FuzzError::Reference(e.to_string()))?,
        framing: protocol.framing,
        vars: reference_vars,
        greets: matches!(protocol.probe, crate::target::server::Probe::Greeting),
        first_wait: grammar.reply_wait(),
        quiet: suite.quiet,
    };
    let target = match Target::start(
        &opts.target,
        protocol,
        &opts.reference_settings,
        opts.time_scale,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            reference_server.stop().await;
            return Err(e.into());
        }
    };
    let mut fuzzer = Fuzzer {
        grammar,
        protocol,
        opts,
        suite,
        reference,
        target,
        base_vars,
        fresh: false,
    };
    let result = fuzzer.run(on_event).await;
    fuzzer.target.stop().await;
    reference_server.stop().await;
    result
}

/// How often a run reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Replays of a shrunk finding that must fail again before it is reported.
const CONFIRMATIONS: usize = 2;

impl Fuzzer<'_> {
    async fn run(
        &mut self,
        on_event: &mut dyn FnMut(FuzzEvent<'_>),
    ) -> Result<FuzzReport, FuzzError> {
        let started = Instant::now();
        let duration = match (self.opts.cases, self.opts.duration) {
            (None, None) => Some(DEFAULT_DURATION),
            (_, d) => d,
        };
        on_event(FuzzEvent::Started {
            protocol: self.protocol.name,
            target: &self.target.description,
            seed: self.opts.seed,
        });
        let mut report = FuzzReport::default();
        let mut next_progress = started + PROGRESS_EVERY;
        for index in 0.. {
            if self.opts.cases.is_some_and(|n| index >= n)
                || duration.is_some_and(|d| started.elapsed() >= d)
                || report.findings.len() >= self.opts.max_findings
            {
                break;
            }
            let case = grammar::generate(self.grammar, self.opts.seed, index);
            let trial = self.trial(&case.actions, index).await?;
            report.cases += 1;
            if let Some(verdict) = trial.verdict.clone() {
                // A failure like a known finding is counted, not shrunk again.
                let known = report.findings.iter().position(|f| f.same_bug(&verdict));
                match known {
                    Some(at) => report.findings[at].duplicates += 1,
                    None => {
                        on_event(FuzzEvent::Failed {
                            case: index,
                            verdict: &verdict,
                            shrinking: self.can_shrink(&verdict),
                        });
                        match self.finding(index, case, trial).await? {
                            Some(finding) => {
                                match report
                                    .findings
                                    .iter()
                                    .position(|f| f.same_bug(&finding.verdict))
                                {
                                    // Shrinking led to a known bug after all.
                                    Some(at) => report.findings[at].duplicates += 1,
                                    None => {
                                        on_event(FuzzEvent::Found(&finding));
                                        report.findings.push(finding);
                                    }
                                }
                            }
                            None => report.unconfirmed += 1,
                        }
                    }
                }
                if let Some(why) = self.down_for_good().await {
                    report.stopped = Some(why);
                    break;
                }
            }
            if Instant::now() >= next_progress {
                on_event(FuzzEvent::Progress {
                    cases: report.cases,
                });
                next_progress = Instant::now() + PROGRESS_EVERY;
            }
        }
        report.elapsed = started.elapsed();
        report.starts = self.target.starts();
        Ok(report)
    }

    /// A target the harness cannot restart that no longer accepts connections ends the run.
    async fn down_for_good(&self) -> Option<String> {
        if self.target.restartable() || self.accepts().await {
            return None;
        }
        Some(format!(
            "the target at {} stopped accepting connections; start it again, or give its command with --exec so that the harness restarts it",
            self.target.addr()
        ))
    }

    async fn accepts(&self) -> bool {
        target::reachable(&self.target.addr(), Duration::from_secs(2))
            .await
            .is_ok()
    }

    fn settings(&self) -> ExecSettings {
        let mut base_vars = self.base_vars.clone();
        base_vars.extend(self.target.vars.clone());
        ExecSettings {
            addr: self.target.addr(),
            transport: self.target.transport.clone(),
            base_vars,
            override_vars: BTreeMap::new(),
            timeout: None,
            connect_timeout: Duration::from_secs(5),
            recv_limit: 1024 * 1024,
            json_bodies: self.protocol.json_bodies,
            framing: self.protocol.framing,
            packet: self.protocol.packet,
            time_scale: self.opts.time_scale,
        }
    }

    /// Runs `case` (then the closes and the happy flow) on the reference and the target.
    async fn trial(&mut self, case: &[Action], index: u64) -> Result<Trial, FuzzError> {
        let mut actions = case.to_vec();
        actions.extend(build::closing(case));
        actions.extend(self.grammar.happy_flow());
        let uniq = next_uniq();
        let observed = observe::observe(&self.reference, &actions, &uniq)
            .await
            .map_err(|e| FuzzError::Internal(e.to_string()))?;
        let id = format!("fuzz/{}/case-{index}", self.protocol.name);
        let built = build::build(
            self.grammar,
            &id,
            &format!("case {index}"),
            &Meta::default(),
            &actions,
            &observed,
            &uniq,
        );
        let scenario = self.parse(&built)?;
        self.target.ensure_up(self.fresh).await?;
        let result = run_scenario(&scenario, &self.settings(), next_uniq()).await;
        let verdict = self
            .verdict(case.len(), &actions, &built.origins, &result)
            .await;
        self.fresh = result.outcome == Outcome::TimedOut;
        Ok(Trial {
            built,
            actions,
            observed,
            uniq,
            verdict,
        })
    }

    fn parse(&self, built: &Built) -> Result<Scenario, FuzzError> {
        let path = self.opts.out.join("case.yaml");
        parse_scenario(&path, &built.yaml, &self.suite).map_err(|d| {
            FuzzError::Internal(format!(
                "a generated scenario does not parse:\n{}\n{}",
                d.render(),
                built.yaml
            ))
        })
    }

    /// Which oracle a trial failed, if any.
    async fn verdict(
        &self,
        case_len: usize,
        actions: &[Action],
        origins: &[Origin],
        result: &ScenarioResult,
    ) -> Option<Verdict> {
        if matches!(
            result.outcome,
            Outcome::Passed | Outcome::Skipped | Outcome::ExpectedFailure
        ) {
            return None;
        }
        let failure = result.failure.as_ref();
        let origin = failure
            .and_then(|f| f.step)
            .and_then(|s| origins.get(s).copied());
        let label = origin
            .and_then(|o| actions.get(o.action))
            .map_or_else(|| "?".to_owned(), |a| a.label.clone());
        let mut message = failure.map_or_else(String::new, describe);
        if !result.uniq.is_empty() {
            message = message.replace(&result.uniq, "{{uniq}}");
        }
        // A dying server shows as connections that close; only then is its exit awaited.
        let gone = failure.is_some_and(|f| f.gone);
        let grace = if gone {
            EXIT_GRACE.mul_f64(self.opts.time_scale)
        } else {
            Duration::ZERO
        };
        let oracle = if let Some(exit) = self.target.exited_within(grace).await {
            let log = self.target.log_tail();
            message = format!("the target ended ({exit}) during the case; {message}");
            if let Some(last) = log.last() {
                message.push_str(&format!(" (its last output: {last})"));
            }
            Oracle::Crash
        } else if !self.target.restartable() && !self.accepts().await {
            Oracle::Down
        } else {
            match origin {
                Some(o) if o.action >= case_len => Oracle::Alive,
                Some(o) if o.spec => Oracle::Spec,
                _ => Oracle::Differs,
            }
        };
        let message = match (oracle, origin.and_then(|o| actions.get(o.action))) {
            (Oracle::Spec, Some(a)) => match a.spec {
                Some(rule) => format!("the spec requires that {}: {message}", rule.describe()),
                None => message,
            },
            _ => message,
        };
        Some(Verdict {
            oracle,
            label,
            message,
        })
    }

    /// Shrinks a failed case, confirms it, and writes it; `None` when it does not fail
    /// again (or the reference fails it too).
    async fn finding(
        &mut self,
        index: u64,
        case: Case,
        trial: Trial,
    ) -> Result<Option<Finding>, FuzzError> {
        let Some(verdict) = trial.verdict.clone() else {
            return Ok(None);
        };
        let can_shrink = self.can_shrink(&verdict);
        let found_len = case.actions.len();
        let (actions, mut last) = if can_shrink {
            shrink::shrink(self, case.actions, trial, verdict.oracle, index).await?
        } else {
            (case.actions, trial)
        };
        let Some(verdict) = last.verdict.clone() else {
            return Ok(None);
        };
        if can_shrink {
            for _ in 0..CONFIRMATIONS {
                let again = self.trial(&actions, index).await?;
                match &again.verdict {
                    Some(v) if v.oracle == verdict.oracle => last = again,
                    _ => return Ok(None),
                }
            }
            if !self.passes_on_reference(&last).await? {
                return Ok(None);
            }
        }
        let verdict = last.verdict.clone().unwrap_or(verdict);
        let finding = self.write(index, found_len, &actions, &last, verdict, can_shrink)?;
        Ok(Some(finding))
    }

    /// Whether shrinking can run: a dead target must be restartable.
    fn can_shrink(&self, verdict: &Verdict) -> bool {
        self.target.restartable() || !matches!(verdict.oracle, Oracle::Crash | Oracle::Down)
    }

    /// The reproducer holds against the reference server itself: the finding is the
    /// target's, not a quirk of how the case was recorded.
    async fn passes_on_reference(&self, trial: &Trial) -> Result<bool, FuzzError> {
        let scenario = self.parse(&trial.built)?;
        let mut settings = self.settings();
        settings.addr = self.reference.addr.clone();
        settings.transport = self.reference.transport.clone();
        settings.base_vars = self.reference.vars.clone();
        let result = run_scenario(&scenario, &settings, next_uniq()).await;
        Ok(result.outcome == Outcome::Passed)
    }

    fn write(
        &self,
        index: u64,
        found_len: usize,
        case: &[Action],
        trial: &Trial,
        verdict: Verdict,
        shrunk: bool,
    ) -> Result<Finding, FuzzError> {
        let slug = slug(verdict.key().1);
        let stem = unused_stem(&self.opts.out, &format!("{}-{slug}", verdict.oracle));
        let id = format!("fuzz/{}/{stem}", self.protocol.name);
        let title = format!(
            "{} at {}: found by harness fuzz",
            verdict.oracle, verdict.label
        );
        let meta = Meta {
            entries: vec![
                ("found_by", "harness fuzz".to_owned()),
                ("protocol", self.protocol.name.to_owned()),
                ("seed", self.opts.seed.to_string()),
                ("case", index.to_string()),
                ("oracle", verdict.oracle.name().to_owned()),
                (
                    "actions",
                    format!("{} (the case had {found_len})", case.len()),
                ),
            ],
        };
        let built = build::build(
            self.grammar,
            &id,
            &title,
            &meta,
            &trial.actions,
            &trial.observed,
            &trial.uniq,
        );
        let mut yaml = format!(
            "# {}: {}\n# Found by `harness fuzz --protocol {} --seed {}` (case {index}).\n",
            verdict.oracle,
            one_line(&verdict.message),
            self.protocol.name,
            self.opts.seed,
        );
        yaml.push_str(&built.yaml);
        make_out(&self.opts.out, self.grammar)?;
        let path = self.opts.out.join(format!("{stem}.yaml"));
        std::fs::write(&path, &yaml).map_err(|e| FuzzError::Out {
            path: path.display().to_string(),
            reason: format!("cannot write the finding: {e}"),
        })?;
        Ok(Finding {
            verdict,
            case: index,
            seed: self.opts.seed,
            actions_found: found_len,
            actions_shrunk: case.len(),
            steps: built.origins.len(),
            path,
            yaml,
            duplicates: 0,
            shrunk,
        })
    }
}

/// A failure in one line: what went wrong, what was expected and what arrived.
fn describe(f: &crate::run::Failure) -> String {
    let mut text = f.message.clone();
    // The caret's label, where it says more than the expected and actual messages do.
    if let Some(label) = &f.label
        && (f.expected.is_some() || f.actual.is_some())
        && !f
            .actual
            .as_ref()
            .is_some_and(|a| label.contains(a.as_str()))
    {
        text.push_str(&format!(" ({label})"));
    }
    match (&f.expected, &f.actual) {
        (Some(e), Some(a)) => text.push_str(&format!(": expected {e}, got {a}")),
        (Some(e), None) => text.push_str(&format!(": expected {e}")),
        (None, Some(a)) => text.push_str(&format!(": got {a}")),
        (None, None) => {
            if let Some(label) = &f.label {
                text.push_str(&format!(" ({label})"));
            }
        }
    }
    one_line(&text)
}
