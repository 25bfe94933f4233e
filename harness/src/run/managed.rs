//! Suites against a target the harness starts itself (`--exec`): once per suite (restarted
//! after it crashes or hangs, so that one bug does not cost every later scenario) or once
//! per scenario (each on its own instance, in parallel). A scenario that did not pass is
//! looked at again: if the target exited meanwhile it *crashed*; if it timed out and the
//! target no longer answers a fresh probe, it *hung*. What the target printed during a
//! scenario that did not pass goes into its transcript.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::execute::{ExecSettings, run_scenario};
use super::outcome::{Failure, Outcome, ScenarioResult};
use super::{SetupError, next_uniq, not_run_as};
use crate::protocol::Protocol;
use crate::report::{Event, Reporter};
use crate::scenario::model::{Scenario, Suite};
use crate::target::output::OutputWatch;
use crate::target::process::EXIT_GRACE;
use crate::target::server::{self, LOG_SHOWN, ManagedServer, Probe, ServerSpec};
use crate::transport::Transport;

/// The name transcripts give the target's output.
pub const TARGET: &str = "target";
/// Restarts of a per-suite target after crashes or hangs, before the rest of the suite is
/// given up as not started.
pub const MAX_RESTARTS: u32 = 20;
/// Lines of the target's output added to the transcript of a scenario that did not pass.
const LOG_IN_TRANSCRIPT: usize = 40;

/// How the target is started.
#[derive(Debug, Clone)]
pub struct TargetExec {
    /// Shell command with `{port}` (and `{host}`, `{addr}`, `{dir}`, ...).
    pub command: String,
    /// Values of other placeholders (`dir` in `harness grade`).
    pub vars: BTreeMap<String, String>,
    pub restart: Restart,
    pub startup_timeout: Duration,
}

/// When the harness starts a fresh target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// One target for the whole suite (restarted after a crash or hang).
    #[default]
    PerSuite,
    /// A target per scenario: state never leaks between scenarios, and they run in parallel.
    PerScenario,
}

impl TargetExec {
    fn spec(&self, time_scale: f64, ports: u16) -> ServerSpec {
        ServerSpec {
            command: self.command.clone(),
            vars: self.vars.clone(),
            startup_timeout: self.startup_timeout.mul_f64(time_scale),
            ports,
        }
    }
}

impl From<&server::StartError> for Gone {
    fn from(e: &server::StartError) -> Self {
        Gone {
            outcome: Outcome::DidNotStart,
            message: e.to_string(),
            log: e.log().to_vec(),
        }
    }
}

/// The per-suite target and how often it was replaced.
struct Instance {
    server: Option<ManagedServer>,
    /// Why there is no server, when there is none.
    gone: Option<Gone>,
    generation: u64,
    restarts: u32,
    /// Generations the harness stopped, and why: a scenario that was running on one when it
    /// was stopped takes that verdict, not "crashed" for the harness's own TERM.
    retired: BTreeMap<u64, (Outcome, String)>,
}

/// Why there is no target: what to report for the scenarios that find none.
#[derive(Debug, Clone)]
struct Gone {
    outcome: Outcome,
    message: String,
    log: Vec<String>,
}

/// What a scenario needs to know of the target it ran against.
struct Ran {
    addr: std::net::SocketAddr,
    watch: OutputWatch,
    /// Output from this time on belongs to the scenario.
    since: Instant,
    /// When the scenario began: transcript times count from here.
    scenario_start: Instant,
}

pub(super) async fn run_suite(
    suite: &Suite,
    scenarios: &[Scenario],
    settings: ExecSettings,
    protocol: &Protocol,
    exec: &TargetExec,
    opts: &super::RunOptions,
    reporter: &mut dyn Reporter,
) -> Result<Vec<ScenarioResult>, SetupError> {
    let (jobs, repeat) = (opts.jobs, opts.repeat);
    let mode = match exec.restart {
        Restart::PerSuite => "one instance for the suite",
        Restart::PerScenario => "one instance per scenario",
    };
    reporter.report(&Event::SuiteStarted {
        suite,
        target: &format!("`{}` started by the harness ({mode})", exec.command),
    })?;
    let settings = Arc::new(settings);
    let spec = Arc::new(exec.spec(settings.time_scale, protocol.ports));
    let probe = protocol.probe;
    let jobs = if suite.config.serial { 1 } else { jobs.max(1) };
    let instance = match exec.restart {
        Restart::PerScenario => None,
        Restart::PerSuite => Some(Arc::new(Mutex::new(start_instance(&spec, 0, 0).await))),
    };
    // As against any target: `serial` scenarios one at a time after the others, `lock`s
    // never held by two scenarios at once (they share the one target of the suite).
    let (parallel, serial): (Vec<_>, Vec<_>) = scenarios
        .iter()
        .cloned()
        .enumerate()
        .partition(|(_, s)| !s.serial && jobs > 1);
    let mut slots: Vec<Option<ScenarioResult>> = vec![None; scenarios.len()];
    let run_one = {
        let settings = settings.clone();
        let spec = spec.clone();
        let instance = instance.clone();
        move |scenario: Scenario| {
            let settings = settings.clone();
            let spec = spec.clone();
            let instance = instance.clone();
            async move {
                super::repeated(repeat, || async {
                    match &instance {
                        Some(instance) => {
                            on_shared(&scenario, &settings, &spec, instance, probe).await
                        }
                        None => on_own(&scenario, &settings, &spec, probe).await,
                    }
                })
                .await
            }
        }
    };
    let semaphore = Arc::new(Semaphore::new(jobs));
    let mut locks: BTreeMap<String, Arc<Mutex<()>>> = BTreeMap::new();
    let mut set = JoinSet::new();
    for (index, scenario) in parallel {
        let lock = scenario
            .lock
            .clone()
            .map(|name| locks.entry(name).or_default().clone());
        let semaphore = semaphore.clone();
        let run = run_one(scenario);
        set.spawn(async move {
            let _lock = match &lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            let _permit = semaphore.acquire_owned().await;
            (index, run.await)
        });
    }
    super::collect(&mut set, &mut slots, reporter).await?;
    for (index, scenario) in serial {
        let result = run_one(scenario).await;
        reporter.report(&Event::ScenarioFinished(&result))?;
        slots[index] = Some(result);
    }
    if let Some(instance) = instance
        && let Some(server) = instance.lock().await.server.take()
    {
        server.stop().await;
    }
    Ok(slots.into_iter().flatten().collect())
}

async fn start_instance(spec: &ServerSpec, generation: u64, restarts: u32) -> Instance {
    let (server, gone) = match ManagedServer::start(spec).await {
        Ok(server) => (Some(server), None),
        Err(e) => (None, Some(Gone::from(&e))),
    };
    Instance {
        server,
        gone,
        generation,
        restarts,
        retired: BTreeMap::new(),
    }
}

/// A scenario on the suite's shared target.
async fn on_shared(
    scenario: &Scenario,
    settings: &ExecSettings,
    spec: &ServerSpec,
    instance: &Mutex<Instance>,
    probe: Probe,
) -> ScenarioResult {
    let uniq = next_uniq();
    if scenario.skip.is_some() {
        return run_scenario(scenario, settings, uniq).await;
    }
    let (ran, generation) = {
        let i = instance.lock().await;
        match &i.server {
            Some(server) => (
                Ran {
                    addr: server.addr,
                    watch: server.watch(),
                    since: Instant::now(),
                    scenario_start: Instant::now(),
                },
                i.generation,
            ),
            None => {
                let gone = i.gone.clone().unwrap_or(Gone {
                    outcome: Outcome::DidNotStart,
                    message: "the target is not running".into(),
                    log: Vec::new(),
                });
                drop(i);
                return not_started(scenario, settings, uniq, gone).await;
            }
        }
    };
    let mut result = run_on(scenario, settings, uniq, &ran).await;
    let gone = look_again(&mut result, &ran, probe, &settings.transport).await;
    let mut i = instance.lock().await;
    if let Some((outcome, message)) = i.retired.get(&generation)
        && result.outcome.is_problem()
        && result.outcome != Outcome::UnexpectedPass
    {
        // The harness stopped this target because another scenario found it crashed or
        // hung: that is what happened here too.
        result.outcome = *outcome;
        if let Some(f) = &mut result.failure {
            f.message.clone_from(message);
        }
    } else if gone && i.generation == generation {
        // Replace the target for the scenarios still to come, once per failure of it.
        let verdict = (
            result.outcome,
            format!(
                "{} (seen by {}); the harness restarted it",
                result
                    .failure
                    .as_ref()
                    .map_or("the target failed", |f| f.message.as_str()),
                scenario.id
            ),
        );
        if let Some(old) = i.server.take() {
            old.stop().await;
        }
        let restarts = i.restarts + 1;
        let mut retired = std::mem::take(&mut i.retired);
        retired.insert(generation, verdict);
        *i = if restarts > MAX_RESTARTS {
            Instance {
                server: None,
                gone: Some(Gone {
                    outcome: result.outcome,
                    message: format!(
                        "the target crashed or hung {restarts} times; the harness does not start it again"
                    ),
                    log: Vec::new(),
                }),
                generation: generation + 1,
                restarts,
                retired: BTreeMap::new(),
            }
        } else {
            start_instance(spec, generation + 1, restarts).await
        };
        i.retired = retired;
    }
    result
}

/// A scenario on a target of its own.
async fn on_own(
    scenario: &Scenario,
    settings: &ExecSettings,
    spec: &ServerSpec,
    probe: Probe,
) -> ScenarioResult {
    let uniq = next_uniq();
    if scenario.skip.is_some() {
        return run_scenario(scenario, settings, uniq).await;
    }
    let server = match ManagedServer::start(spec).await {
        Ok(server) => server,
        Err(e) => {
            return not_started(scenario, settings, uniq, Gone::from(&e)).await;
        }
    };
    let ran = Ran {
        addr: server.addr,
        watch: server.watch(),
        since: server.started(),
        scenario_start: Instant::now(),
    };
    let mut result = run_on(scenario, settings, uniq, &ran).await;
    look_again(&mut result, &ran, probe, &settings.transport).await;
    server.stop().await;
    result
}

async fn run_on(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
    ran: &Ran,
) -> ScenarioResult {
    let settings = ExecSettings {
        addr: ran.addr.to_string(),
        ..settings.clone()
    };
    run_scenario(scenario, &settings, uniq).await
}

/// The result of a scenario that found no target to run against, with what the target
/// printed before it went.
async fn not_started(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
    gone: Gone,
) -> ScenarioResult {
    let help =
        (!gone.log.is_empty()).then(|| format!("the target printed:\n{}", indent(&gone.log)));
    not_run_as(scenario, settings, uniq, gone.outcome, gone.message, help).await
}

/// Looks at a scenario that did not pass again, knowing the target: crashed, hung, or just
/// wrong. Returns whether the target is gone (crashed or hung). Adds what the target
/// printed meanwhile to the transcript.
async fn look_again(
    result: &mut ScenarioResult,
    ran: &Ran,
    probe: Probe,
    transport: &Transport,
) -> bool {
    if !result.outcome.is_problem() || result.outcome == Outcome::UnexpectedPass {
        return false;
    }
    // A target that just closed a connection may be exiting: give the exit a moment to be
    // seen before calling it alive.
    let gone = result.failure.as_ref().is_some_and(|f| f.gone);
    let grace = if gone { EXIT_GRACE } else { Duration::ZERO };
    let exit = ran.watch.clone().exit_by(Instant::now() + grace).await;
    let verdict = if let Some(exit) = exit {
        Some((
            Outcome::Crashed,
            format!("the target ended ({exit}) during the scenario"),
        ))
    } else if !server::answers(ran.addr, probe, transport).await {
        Some((
            Outcome::Hung,
            format!(
                "the target stopped answering: it is running but did not answer a new connection within {}",
                humantime::format_duration(server::PROBE_TIMEOUT)
            ),
        ))
    } else {
        None
    };
    let log = ran
        .watch
        .with(|o| server::log_lines(o, Some(ran.since), LOG_IN_TRANSCRIPT));
    let output = ran.watch.snapshot();
    let started = ran.scenario_start;
    let lines: Vec<_> = output.lines.iter().filter(|l| l.at >= ran.since).collect();
    for line in &lines[lines.len().saturating_sub(LOG_IN_TRANSCRIPT)..] {
        let stream = if line.stderr { "stderr" } else { "stdout" };
        result.transcript.insert_output(
            line.at.saturating_duration_since(started),
            TARGET,
            stream,
            &line.text,
        );
    }
    if let Some((at, exit)) = output.exit.filter(|(t, _)| *t >= ran.since) {
        result
            .transcript
            .insert_exit(at.saturating_duration_since(started), TARGET, exit);
    }
    let Some((outcome, message)) = verdict else {
        return false;
    };
    let before = result.failure.take().unwrap_or_default();
    let tail: Vec<String> = log.iter().rev().take(LOG_SHOWN).rev().cloned().collect();
    let mut help = format!("what the scenario saw: {}", before.message);
    if !tail.is_empty() {
        help.push_str(&format!("\nthe target's last lines:\n{}", indent(&tail)));
    }
    result.outcome = outcome;
    result.failure = Some(Failure {
        message,
        help: Some(help),
        ..before
    });
    true
}

fn indent(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
