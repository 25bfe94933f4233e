//! Executes suites: picks the target of each suite (the given address, or the protocol's
//! reference server started in-process), runs its scenarios in parallel up to `jobs`, and
//! streams the results to a reporter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub mod connection;
pub mod execute;
pub mod framing;
pub mod json_match;
pub mod managed;
pub mod outcome;
pub mod transcript;

pub use execute::{ClientPeer, ExecSettings, Peer, run_scenario, run_scenario_with};
pub use outcome::{Failure, Outcome, ScenarioResult, Summary};

use crate::protocol::{self, Protocol, ReferenceServer, TransportKind};
use crate::report::{Event, Reporter};
use crate::scenario::model::{Profile, Role, Scenario, Suite};
use crate::target::client::{ClientSpec, RunningClient};
use crate::transport::Transport;
use reference_impl::tls::{ClientTrust, client_config};

/// Scenarios run at once by default. Scenarios mostly wait on the network and on timers, so
/// this is not tied to the number of cores.
pub const DEFAULT_JOBS: usize = 16;

/// Everything `harness run` takes from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `host:port`; `None` runs every suite against its protocol's reference server.
    pub target: Option<String>,
    /// Trust this CA (PEM) for TLS targets.
    pub ca: Option<PathBuf>,
    /// Accept any certificate.
    pub insecure: bool,
    /// TLS server name to verify (default: the target's host).
    pub server_name: Option<String>,
    /// `--var k=v`, highest precedence.
    pub vars: BTreeMap<String, String>,
    pub profile: Option<Profile>,
    pub jobs: usize,
    /// Replaces every scenario's default deadline.
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// `should` scenarios fail the run too.
    pub strict: bool,
    /// Largest message accepted from a target.
    pub recv_limit: usize,
    /// `harness serve`: how to play the server for suites with `role: server`. Without it,
    /// such suites run against their protocol's reference client (or are skipped when a
    /// `target` is given, which only servers can be).
    pub serve: Option<ServeOptions>,
    /// Every deadline is multiplied by this (`--time-scale`): slow machines, slow targets.
    pub time_scale: f64,
    /// `--exec`: the harness starts the target itself (instead of `target`).
    pub exec: Option<managed::TargetExec>,
    /// `--repeat`: each scenario runs this many times; one that both passes and fails is
    /// marked flaky and reported by a run that did not pass.
    pub repeat: u32,
}

/// How `harness serve` meets the client under test.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Listen here (`host:port`) for every scenario, one scenario at a time. Without it,
    /// each scenario listens on its own free loopback port (and they run in parallel).
    pub listen: Option<String>,
    /// How the client is started for each scenario: a command, the protocol's reference
    /// client (`None`), or a person.
    pub client: Option<ClientSpec>,
    /// How long a scenario waits for the client's connection when a step needs one.
    pub accept_timeout: Duration,
}

/// How long a scenario waits for a client the harness started to connect.
pub const DEFAULT_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scenario waits for a client a person starts.
pub const DEFAULT_PERSON_ACCEPT_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            target: None,
            ca: None,
            insecure: false,
            server_name: None,
            vars: BTreeMap::new(),
            profile: None,
            jobs: DEFAULT_JOBS,
            timeout: None,
            connect_timeout: Duration::from_secs(5),
            strict: false,
            recv_limit: 1024 * 1024,
            serve: None,
            time_scale: 1.0,
            exec: None,
            repeat: 1,
        }
    }
}

/// Problems that stop a run before any scenario starts (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "suite {dir} names no protocol: add `protocol: NAME` to its suite.yaml (known: {known})"
    )]
    NoProtocol { dir: String, known: String },
    #[error("suite {dir} uses protocol `{name}`, which the harness does not know (known: {known})")]
    UnknownProtocol {
        dir: String,
        name: String,
        known: String,
    },
    #[error(transparent)]
    Reference(#[from] protocol::ReferenceError),
    #[error("cannot use --ca {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error(
        "suite {dir} speaks TLS: pass --ca FILE with the target's certificate (PEM) to verify it, or --insecure to accept any certificate"
    )]
    NoTrust { dir: String },
    #[error("`{name}` is not a valid TLS server name: pass --server-name NAME")]
    ServerName { name: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
    #[error(
        "no suite here plays the server ({dir}): those test servers, with `harness run`; `harness serve` runs suites with `role: server` in their suite.yaml"
    )]
    NotServerRole { dir: String },
    #[error(
        "the {protocol} protocol has no built-in reference client: give the client's command with --exec"
    )]
    NoReferenceClient { protocol: String },
    #[error(
        "the harness cannot play a TLS server yet (suite {dir}): serve suites of plain-TCP protocols"
    )]
    ServeTls { dir: String },
    #[error(
        "the harness cannot play the server of an RSA key exchange yet (suite {dir}): serve suites of plain-TCP protocols"
    )]
    ServeRsa { dir: String },
    #[error("{0}")]
    ClientCommand(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The results of a whole run, in suite and file order.
#[derive(Debug)]
pub struct RunReport {
    pub results: Vec<ScenarioResult>,
    pub summary: Summary,
}

impl RunReport {
    /// Exit code 0 (all passed) or 1 (some scenario did not).
    pub fn exit_code(&self, strict: bool) -> i32 {
        i32::from(self.results.iter().any(|r| r.fails_run(strict)))
    }
}

/// Runs a scenario `times` times (at least once). If some runs pass and some do not, the
/// scenario is flaky: the first run that did not pass is the result, marked flaky, so the
/// report shows what went wrong; if none passed, the first run is the result.
pub async fn repeated<F, Fut>(times: u32, mut run: F) -> ScenarioResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ScenarioResult>,
{
    let ran = try_repeated(times, || {
        let once = run();
        async move { Ok::<_, std::convert::Infallible>(once.await) }
    });
    match ran.await {
        Ok(result) => result,
    }
}

/// As [`repeated`], for runs that can fail to start: the first such error ends the runs.
async fn try_repeated<F, Fut, E>(times: u32, mut run: F) -> Result<ScenarioResult, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ScenarioResult, E>>,
{
    let mut results = Vec::new();
    for _ in 0..times.max(1) {
        let result = run().await?;
        let skipped = result.outcome == Outcome::Skipped;
        results.push(result);
        if skipped {
            break;
        }
    }
    Ok(combine(results))
}

/// The result of several runs of one scenario (at least one): see [`repeated`].
fn combine(mut results: Vec<ScenarioResult>) -> ScenarioResult {
    let passed = results.iter().any(|r| !r.outcome.is_problem());
    let failing = results.iter().position(|r| r.outcome.is_problem());
    match failing {
        Some(i) => {
            let mut chosen = results.swap_remove(i);
            chosen.flaky = passed;
            chosen
        }
        None => results.swap_remove(0),
    }
}

/// Reports each scenario of `set` as it finishes and puts its result in its slot.
async fn collect(
    set: &mut JoinSet<(usize, ScenarioResult)>,
    slots: &mut [Option<ScenarioResult>],
    reporter: &mut dyn Reporter,
) -> Result<(), SetupError> {
    while let Some(joined) = set.join_next().await {
        let (index, result) =
            joined.map_err(|e| SetupError::Internal(format!("a scenario task stopped: {e}")))?;
        reporter.report(&Event::ScenarioFinished(&result))?;
        slots[index] = Some(result);
    }
    Ok(())
}

/// A fresh `{{uniq}}` value: unique within the process and unlikely to repeat across runs.
pub fn next_uniq() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        u64::from(std::process::id()) ^ u64::from(nanos)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The `z` keeps the value from ever matching inside a hex dump when reports redact it;
    // the fixed width keeps message lengths the same from run to run.
    format!("{:04x}z{n:06}", base & 0xffff)
}

/// Static checks that need more than one file: every variable a scenario uses is defined by
/// its protocol, its suite, the profile, `--var`, or an earlier capture; split offsets fall
/// inside what goes on the wire (a message, or its RSA block); and options that only some
/// transports have (`connect: { key }`) are used only there. Run by `harness
/// check` and before `harness run` starts anything.
pub fn check_suites(
    suites: &[Suite],
    profile: Option<&Profile>,
    vars: &BTreeMap<String, String>,
) -> Vec<crate::scenario::Diagnostic> {
    let mut diagnostics = Vec::new();
    for suite in suites {
        let mut known: std::collections::BTreeSet<String> =
            suite.config.vars.keys().cloned().collect();
        let protocol = suite_protocol(suite).ok();
        if let Some(protocol) = protocol {
            known.extend(protocol.vars.iter().map(|(k, _)| (*k).to_owned()));
        }
        if let Some(p) = profile {
            known.extend(p.vars.keys().cloned());
        }
        known.extend(vars.keys().cloned());
        // On an encrypted connection a split cuts the message's RSA block.
        let block = protocol
            .filter(|p| p.transport == TransportKind::Rsa)
            .map(|_| reference_impl::kv::rsa::BLOCK_LEN);
        for scenario in &suite.scenarios {
            diagnostics.extend(crate::scenario::check_vars(scenario, &known));
            diagnostics.extend(crate::scenario::check_splits(scenario, block));
            if let Some(protocol) = protocol {
                diagnostics.extend(check_transport_options(scenario, protocol));
            }
        }
    }
    diagnostics
}

/// `connect: { key: ... }` is for protocols with an RSA key exchange only.
fn check_transport_options(
    scenario: &Scenario,
    protocol: &Protocol,
) -> Vec<crate::scenario::Diagnostic> {
    use crate::scenario::model::StepKind;
    if protocol.transport == TransportKind::Rsa {
        return Vec::new();
    }
    let rsa: Vec<&str> = protocol::PROTOCOLS
        .iter()
        .filter(|p| p.transport == TransportKind::Rsa)
        .map(|p| p.name)
        .collect();
    scenario
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            StepKind::Connect { key: Some(key), .. } => Some(key.span),
            _ => None,
        })
        .map(|span| {
            crate::scenario::Diagnostic::error(
                &scenario.source,
                span,
                format!(
                    "`key` sets the public key of an RSA key exchange; the {} protocol has none ({} connections)",
                    protocol.name,
                    protocol.transport.name()
                ),
            )
            .with_label("not for this protocol")
            .with_help(format!(
                "remove `key:`, or put the scenario in a suite of {}",
                rsa.join(", ")
            ))
        })
        .collect()
}

/// Runs every suite in order; scenarios of a suite run in parallel.
pub async fn run(
    suites: &[Suite],
    opts: &RunOptions,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, SetupError> {
    let started = Instant::now();
    // `harness serve` plays the server of the suites that ask for it and leaves the others.
    let served: Vec<&Suite>;
    let suites: Vec<&Suite> = if opts.serve.is_some() {
        served = suites
            .iter()
            .filter(|s| s.config.role == Role::Server)
            .collect();
        if served.is_empty() {
            return Err(SetupError::NotServerRole {
                dir: suites
                    .iter()
                    .map(|s| s.dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        served
    } else {
        suites.iter().collect()
    };
    if let Some(ServeOptions {
        client: Some(ClientSpec::Command(command)),
        ..
    }) = &opts.serve
    {
        crate::target::client::check_command(command).map_err(SetupError::ClientCommand)?;
    }
    if let Some(exec) = &opts.exec {
        // The command starts servers, unless every suite plays the server to a client.
        let check = if suites.iter().all(|s| s.config.role == Role::Server) {
            crate::target::client::check_command
        } else {
            crate::target::client::check_server_command
        };
        check(&exec.command).map_err(SetupError::ClientCommand)?;
    }
    for &suite in &suites {
        let protocol = suite_protocol(suite)?;
        let dir = suite.dir.display().to_string();
        if suite.config.role == Role::Server {
            match protocol.transport {
                TransportKind::Tls => return Err(SetupError::ServeTls { dir }),
                TransportKind::Rsa => return Err(SetupError::ServeRsa { dir }),
                TransportKind::Tcp => {}
            }
            continue;
        }
        if protocol.transport == TransportKind::Tls
            && opts.target.is_some()
            && opts.ca.is_none()
            && !opts.insecure
        {
            return Err(SetupError::NoTrust { dir });
        }
    }
    let total = suites.iter().map(|s| s.scenarios.len()).sum();
    reporter.report(&Event::RunStarted {
        total,
        jobs: opts.jobs,
    })?;
    // Suites against built-in servers (one each) share one pool of jobs and run at once, so
    // the run takes about as long as its longest scenario, not the sum of its suites'. Against
    // one --target they run one after another: a `serial` scenario must be alone on its
    // server. One job at a time keeps file order, for a reproducible report.
    let together = opts.jobs > 1 && opts.target.is_none();
    let pool = Arc::new(Semaphore::new(opts.jobs.max(1)));
    let mut per_suite: Vec<Vec<ScenarioResult>> = vec![Vec::new(); suites.len()];
    let mut batch = Batch::new(pool.clone(), opts);
    for (index, &suite) in suites.iter().enumerate() {
        let protocol = suite_protocol(suite)?;
        if suite.config.role == Role::Server {
            per_suite[index] = serve_suite(suite, protocol, opts, reporter).await?;
            continue;
        }
        let (settings, reference) = prepare(suite, protocol, opts).await?;
        if let Some(exec) = &opts.exec {
            let scenarios = profiled(suite, opts.profile.as_ref());
            per_suite[index] =
                managed::run_suite(suite, &scenarios, settings, protocol, exec, opts, reporter)
                    .await?;
            continue;
        }
        reporter.report(&Event::SuiteStarted {
            suite,
            target: &match &reference {
                Some(r) => format!("{} at {}", r.description, r.addr),
                None => settings.addr.clone(),
            },
        })?;
        let job = SuiteJob {
            index,
            scenarios: profiled(suite, opts.profile.as_ref()),
            serial: suite.config.serial,
            settings,
            own_servers: reference.is_some().then(|| OwnServers {
                suite: Arc::new(suite.clone()),
                protocol,
                opts: Arc::new(opts.clone()),
            }),
        };
        batch.start(job, reference);
        if !together {
            let done = std::mem::replace(&mut batch, Batch::new(pool.clone(), opts));
            done.finish(&mut per_suite, reporter).await?;
        }
    }
    // Suites that play the server ran above while these ran on.
    batch.finish(&mut per_suite, reporter).await?;
    let results: Vec<ScenarioResult> = per_suite.into_iter().flatten().collect();
    let summary = Summary::of(&results, started.elapsed());
    reporter.report(&Event::RunFinished {
        results: &results,
        summary: &summary,
        strict: opts.strict,
    })?;
    Ok(RunReport { results, summary })
}

fn suite_protocol(suite: &Suite) -> Result<&'static Protocol, SetupError> {
    let known = protocol::names().join(", ");
    let dir = suite.dir.display().to_string();
    match &suite.config.protocol {
        Some(name) => protocol::find(name).ok_or_else(|| SetupError::UnknownProtocol {
            dir,
            name: name.clone(),
            known,
        }),
        None => suite
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(protocol::find)
            .ok_or(SetupError::NoProtocol { dir, known }),
    }
}

/// Variables below a scenario's own (protocol, suite) and above them (profile, `--var`).
fn layered_vars(
    suite: &Suite,
    protocol: &Protocol,
    opts: &RunOptions,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut base_vars: BTreeMap<String, String> = protocol
        .vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    base_vars.extend(suite.config.vars.clone());
    let mut override_vars = opts
        .profile
        .as_ref()
        .map(|p| p.vars.clone())
        .unwrap_or_default();
    override_vars.extend(opts.vars.clone());
    (base_vars, override_vars)
}

/// The scenarios of a suite as the profile runs them (skipped or expected to fail).
fn profiled(suite: &Suite, profile: Option<&Profile>) -> Vec<Scenario> {
    match profile {
        Some(p) => suite.scenarios.iter().map(|s| p.apply(s)).collect(),
        None => suite.scenarios.clone(),
    }
}

/// Runs a suite whose scenarios play the server (`role: server`): each scenario listens, the
/// client under test connects, the steps run, the client is stopped.
async fn serve_suite(
    suite: &Suite,
    protocol: &Protocol,
    opts: &RunOptions,
    reporter: &mut dyn Reporter,
) -> Result<Vec<ScenarioResult>, SetupError> {
    let (mut base_vars, override_vars) = layered_vars(suite, protocol, opts);
    if let Some(exec) = &opts.exec {
        base_vars.extend(exec.vars.clone());
    }
    let settings = ExecSettings {
        addr: String::new(),
        transport: Transport::Tcp,
        base_vars,
        override_vars,
        timeout: opts.timeout,
        connect_timeout: opts.connect_timeout,
        recv_limit: opts.recv_limit,
        json_bodies: protocol.json_bodies,
        framing: protocol.framing,
        packet: protocol.packet,
        time_scale: opts.time_scale,
    };
    let scenarios = profiled(suite, opts.profile.as_ref());
    let Some(serve) = opts.serve.clone().or_else(|| {
        opts.target.is_none().then(|| ServeOptions {
            listen: None,
            client: None,
            accept_timeout: DEFAULT_ACCEPT_TIMEOUT,
        })
    }) else {
        // A target is a server: this suite has nothing to run against it.
        reporter.report(&Event::SuiteStarted {
            suite,
            target: "not run: it tests clients (role: server)",
        })?;
        let mut results = Vec::with_capacity(scenarios.len());
        for mut scenario in scenarios {
            scenario.skip = Some(
                "the suite tests clients (role: server): run it with `harness serve`, not against --target"
                    .into(),
            );
            let result = run_scenario(&scenario, &settings, next_uniq()).await;
            reporter.report(&Event::ScenarioFinished(&result))?;
            results.push(result);
        }
        return Ok(results);
    };
    let client = match (serve.client, &opts.exec) {
        (Some(c), _) => c,
        // `run --exec` / `grade --exec` on a suite that plays the server: the command is
        // the client under test ({dir} and the other placeholders as for a server).
        (None, Some(exec)) => ClientSpec::Command(exec.command.clone()),
        (None, None) => {
            protocol::reference_client(protocol).ok_or_else(|| SetupError::NoReferenceClient {
                protocol: protocol.name.to_owned(),
            })?
        }
    };
    let shared = match &serve.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| SetupError::Listen {
                    addr: addr.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let listening = match &shared {
        Some(l) => l
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string()),
        None => "a free port per scenario".to_owned(),
    };
    reporter.report(&Event::SuiteStarted {
        suite,
        target: &format!("serving {} at {listening}", client.describe()),
    })?;
    let settings = Arc::new(settings);
    let serve = Arc::new(ServeOptions {
        client: Some(client),
        ..serve
    });
    let mut slots: Vec<Option<ScenarioResult>> = vec![None; scenarios.len()];
    if let Some(listener) = &shared {
        // One address: one scenario at a time, each taking the connections that arrive.
        let addr = listener
            .local_addr()
            .map_or_else(|_| listening.clone(), |a| a.to_string());
        for (index, scenario) in scenarios.iter().enumerate() {
            if scenario.skip.is_none()
                && !serve
                    .client
                    .as_ref()
                    .is_some_and(ClientSpec::is_started_by_harness)
            {
                reporter.report(&Event::WaitingForClient {
                    id: &scenario.id,
                    addr: &addr,
                })?;
            }
            let result = serve_scenario(scenario, &settings, &serve, listener).await;
            reporter.report(&Event::ScenarioFinished(&result))?;
            slots[index] = Some(result);
        }
        return Ok(slots.into_iter().flatten().collect());
    }
    let jobs = if suite.config.serial {
        1
    } else {
        opts.jobs.max(1)
    };
    let semaphore = Arc::new(Semaphore::new(jobs));
    let mut set = JoinSet::new();
    for (index, scenario) in scenarios.into_iter().enumerate() {
        let settings = settings.clone();
        let serve = serve.clone();
        let semaphore = semaphore.clone();
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let result = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(listener) => serve_scenario(&scenario, &settings, &serve, &listener).await,
                Err(e) => {
                    let message = format!("cannot listen on a loopback port: {e}");
                    not_run(&scenario, &settings, next_uniq(), message).await
                }
            };
            (index, result)
        });
    }
    collect(&mut set, &mut slots, reporter).await?;
    Ok(slots.into_iter().flatten().collect())
}

/// How long a client may take to end by itself once its scenario is over, before it is
/// stopped.
const CLIENT_LINGER: Duration = Duration::from_millis(500);

/// The result of a scenario that could not start: an error, no step run.
async fn not_run(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
    message: String,
) -> ScenarioResult {
    not_run_as(scenario, settings, uniq, Outcome::Error, message, None).await
}

/// The result of a scenario that could not start, as `outcome`, with `help`.
async fn not_run_as(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
    outcome: Outcome,
    message: String,
    help: Option<String>,
) -> ScenarioResult {
    let mut skipped = scenario.clone();
    skipped.skip = Some(String::new());
    let mut r = run_scenario(&skipped, settings, uniq).await;
    r.outcome = outcome;
    r.reason = None;
    r.failure = Some(Failure {
        message,
        span: Some(scenario.span),
        help,
        ..Failure::default()
    });
    r
}

/// One scenario played as the server on `listener`: starts the client, runs the steps,
/// stops the client and adds what it printed to the transcript.
async fn serve_scenario(
    scenario: &Scenario,
    settings: &ExecSettings,
    serve: &ServeOptions,
    listener: &tokio::net::TcpListener,
) -> ScenarioResult {
    let uniq = next_uniq();
    if scenario.skip.is_some() {
        return run_scenario(scenario, settings, uniq).await;
    }
    let spec = serve.client.clone().unwrap_or(ClientSpec::Person);
    let mut vars = settings.base_vars.clone();
    vars.extend(scenario.vars.clone());
    vars.extend(settings.override_vars.clone());
    vars.insert("uniq".into(), uniq.clone());
    let started = Instant::now();
    let client = match listener.local_addr() {
        Ok(addr) => RunningClient::start(&spec, addr, &vars).map_err(|e| e.to_string()),
        Err(e) => Err(format!("the listening socket has no address: {e}")),
    };
    let client = match client {
        Ok(c) => c,
        Err(message) => return not_run(scenario, settings, uniq, message).await,
    };
    let peer = ClientPeer {
        listener,
        output: client.as_ref().map(RunningClient::watch),
        accept_timeout: serve.accept_timeout,
    };
    let mut result = run_scenario_with(scenario, settings, uniq, Peer::Client(&peer)).await;
    if let Some(client) = client {
        let mut watch = client.watch();
        // A client whose connections just closed usually ends by itself: what it prints
        // then belongs in the transcript.
        watch.exit_by(Instant::now() + CLIENT_LINGER).await;
        client.stop().await;
        result
            .transcript
            .add_output(execute::CLIENT, &watch.snapshot(), started);
    }
    result
}

/// The target and settings of one suite; starts the reference server when there is no target.
async fn prepare(
    suite: &Suite,
    protocol: &Protocol,
    opts: &RunOptions,
) -> Result<(ExecSettings, Option<ReferenceServer>), SetupError> {
    let (mut base_vars, override_vars) = layered_vars(suite, protocol, opts);

    let (addr, reference) = match &opts.target {
        // A target the harness starts: its address is known once it runs.
        _ if opts.exec.is_some() => ("127.0.0.1:0".to_owned(), None),
        Some(t) => (t.clone(), None),
        None => {
            let settings = opts
                .profile
                .as_ref()
                .map(|p| p.reference.clone())
                .unwrap_or_default();
            let server = protocol::start_reference(protocol, &settings).await?;
            // What only the running server knows (a second port, say) wins over the
            // suite's defaults.
            base_vars.extend(server.vars.clone());
            (server.addr.to_string(), Some(server))
        }
    };
    let transport = match protocol.transport {
        TransportKind::Tls => {
            let trust = match (&reference, &opts.ca, opts.insecure) {
                (Some(r), _, _) => ClientTrust::Roots(r.certificate.clone().into_iter().collect()),
                // A server the harness started has whatever certificate its author made.
                (None, None, _) if opts.exec.is_some() => ClientTrust::InsecureAcceptAny,
                (None, _, true) => ClientTrust::InsecureAcceptAny,
                (None, Some(path), false) => ClientTrust::Roots(load_ca(path)?),
                (None, None, false) => ClientTrust::Roots(Vec::new()),
            };
            tls_transport(&addr, trust, opts.server_name.as_deref())?
        }
        TransportKind::Rsa => Transport::Rsa,
        TransportKind::Tcp => Transport::Tcp,
    };
    let settings = ExecSettings {
        addr,
        transport,
        base_vars,
        override_vars,
        timeout: opts.timeout,
        connect_timeout: opts.connect_timeout,
        recv_limit: opts.recv_limit,
        json_bodies: protocol.json_bodies,
        framing: protocol.framing,
        packet: protocol.packet,
        time_scale: opts.time_scale,
    };
    Ok((settings, reference))
}

/// A TLS transport to `addr` trusting `trust`, verifying `server_name` (default: the host
/// of `addr`).
pub(crate) fn tls_transport(
    addr: &str,
    trust: ClientTrust,
    server_name: Option<&str>,
) -> Result<Transport, SetupError> {
    let config = client_config(trust).map_err(|e| SetupError::Tls(e.to_string()))?;
    let name = server_name.unwrap_or_else(|| host_of(addr)).to_owned();
    let server_name =
        ServerName::try_from(name.clone()).map_err(|_| SetupError::ServerName { name })?;
    Ok(Transport::Tls {
        config,
        server_name,
    })
}

pub(crate) fn load_ca(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs = reference_impl::tls::load_certs(path).map_err(|e| SetupError::Ca {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(SetupError::Ca {
            path: path.display().to_string(),
            reason: "the file holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// The host part of `host:port` (IPv6 brackets removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// One suite ready to run: its target is up and its settings are final.
struct SuiteJob {
    /// Where its results go in the report.
    index: usize,
    scenarios: Vec<Scenario>,
    /// `serial: true` in `suite.yaml`: one scenario at a time.
    serial: bool,
    settings: ExecSettings,
    /// With a built-in server: how to start another one.
    own_servers: Option<OwnServers>,
}

/// What it takes to start a built-in server of a suite's own. A scenario that needs its
/// server to itself (`serial`, or a `lock` such as the chat server's one game) gets a fresh
/// one and runs beside the others instead of waiting for them; against a target it waits.
#[derive(Clone)]
struct OwnServers {
    suite: Arc<Suite>,
    protocol: &'static Protocol,
    opts: Arc<RunOptions>,
}

impl OwnServers {
    /// Runs `scenario` `repeat` times, each time on a fresh server: a repetition must not
    /// meet what the one before left behind (a user still leaving, say).
    async fn run(&self, scenario: &Scenario, repeat: u32) -> Result<ScenarioResult, SetupError> {
        try_repeated(repeat, || async {
            let (settings, server) = prepare(&self.suite, self.protocol, &self.opts).await?;
            let result = run_scenario(scenario, &settings, next_uniq()).await;
            if let Some(server) = server {
                server.stop().await;
            }
            Ok(result)
        })
        .await
    }
}

/// Suites running at once over one pool of jobs. Each starts as soon as it is ready; their
/// results wait in a channel until `finish` reports them.
struct Batch {
    pool: Arc<Semaphore>,
    jobs: usize,
    repeat: u32,
    finished: tokio::sync::mpsc::UnboundedSender<ScenarioResult>,
    reports: tokio::sync::mpsc::UnboundedReceiver<ScenarioResult>,
    suites: JoinSet<(usize, Result<Vec<ScenarioResult>, SetupError>)>,
}

impl Batch {
    fn new(pool: Arc<Semaphore>, opts: &RunOptions) -> Self {
        let (finished, reports) = tokio::sync::mpsc::unbounded_channel();
        Self {
            pool,
            jobs: opts.jobs,
            repeat: opts.repeat,
            finished,
            reports,
            suites: JoinSet::new(),
        }
    }

    /// Starts `job`; `reference`, its built-in server, is stopped when the suite is done.
    fn start(&mut self, job: SuiteJob, reference: Option<ReferenceServer>) {
        let (pool, jobs, repeat) = (self.pool.clone(), self.jobs, self.repeat);
        let finished = self.finished.clone();
        self.suites.spawn(async move {
            let index = job.index;
            let results = run_suite(job, &pool, jobs, repeat, &finished).await;
            if let Some(r) = reference {
                r.stop().await;
            }
            (index, results)
        });
    }

    /// Reports each scenario as it finishes and puts each suite's results, in file order, at
    /// its index.
    async fn finish(
        mut self,
        per_suite: &mut [Vec<ScenarioResult>],
        reporter: &mut dyn Reporter,
    ) -> Result<(), SetupError> {
        // The suites hold the only senders left: the channel closes when the last is done.
        drop(self.finished);
        while let Some(result) = self.reports.recv().await {
            if let Err(e) = reporter.report(&Event::ScenarioFinished(&result)) {
                self.suites.shutdown().await;
                return Err(e.into());
            }
        }
        while let Some(joined) = self.suites.join_next().await {
            let (index, results) =
                joined.map_err(|e| SetupError::Internal(format!("a suite task stopped: {e}")))?;
            per_suite[index] = results?;
        }
        Ok(())
    }
}

/// Runs one suite's scenarios: the parallel ones as jobs of the pool come free, then the
/// serial ones, one at a time. Each result is sent to `finished` as it comes.
async fn run_suite(
    job: SuiteJob,
    pool: &Arc<Semaphore>,
    jobs: usize,
    repeat: u32,
    finished: &tokio::sync::mpsc::UnboundedSender<ScenarioResult>,
) -> Result<Vec<ScenarioResult>, SetupError> {
    let SuiteJob {
        scenarios,
        serial: serial_suite,
        settings,
        own_servers,
        ..
    } = job;
    let scenarios = &scenarios[..];
    let settings = Arc::new(settings);
    let one_job = jobs <= 1;
    // Needs its server to itself: a server of its own, or to run alone.
    let alone = |s: &Scenario| serial_suite || s.serial;
    let (parallel, serial): (Vec<_>, Vec<_>) = scenarios
        .iter()
        .enumerate()
        .partition(|(_, s)| !one_job && (own_servers.is_some() || !alone(s)));
    let mut slots: Vec<Option<ScenarioResult>> = vec![None; scenarios.len()];

    let mut locks: BTreeMap<&str, Arc<tokio::sync::Mutex<()>>> = BTreeMap::new();
    let mut set = JoinSet::new();
    for (index, scenario) in parallel {
        let own = own_servers
            .clone()
            .filter(|_| alone(scenario) || scenario.lock.is_some());
        let lock = match own {
            Some(_) => None,
            None => scenario
                .lock
                .as_deref()
                .map(|name| locks.entry(name).or_default().clone()),
        };
        let scenario = scenario.clone();
        let settings = settings.clone();
        let pool = pool.clone();
        set.spawn(async move {
            // The lock first: a scenario waiting for its lock does not hold a job.
            let _lock = match &lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            let _job = pool.acquire_owned().await;
            let result = match own {
                Some(own) => own.run(&scenario, repeat).await?,
                None => repeated(repeat, || run_scenario(&scenario, &settings, next_uniq())).await,
            };
            Ok::<_, SetupError>((index, result))
        });
    }
    while let Some(joined) = set.join_next().await {
        let (index, result) =
            joined.map_err(|e| SetupError::Internal(format!("a scenario task stopped: {e}")))??;
        // A closed channel means the run is being abandoned: nothing left to report to.
        let _ = finished.send(result.clone());
        slots[index] = Some(result);
    }
    for (index, scenario) in serial {
        let _job = pool.acquire().await;
        let result = repeated(repeat, || run_scenario(scenario, &settings, next_uniq())).await;
        let _ = finished.send(result.clone());
        slots[index] = Some(result);
    }
    Ok(slots.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Outcome) -> ScenarioResult {
        ScenarioResult {
            id: "t".into(),
            title: None,
            spec: None,
            tags: Vec::new(),
            level: crate::scenario::model::Level::Must,
            file: PathBuf::from("t.yaml"),
            line: 1,
            outcome,
            duration: Duration::ZERO,
            points: u32::from(outcome == Outcome::Passed),
            max_points: 1,
            reason: None,
            failure: None,
            transcript: Default::default(),
            uniq: String::new(),
            source: Arc::new(crate::scenario::model::SourceFile {
                path: PathBuf::from("t.yaml"),
                text: String::new(),
            }),
            hidden: false,
            flaky: false,
        }
    }

    #[tokio::test]
    async fn repeated_runs_mark_a_scenario_that_both_passes_and_fails_as_flaky() {
        let runs = |outcomes: Vec<Outcome>| {
            let mut outcomes = outcomes.into_iter();
            move || {
                let o = outcomes.next().unwrap_or(Outcome::Passed);
                async move { result(o) }
            }
        };
        let r = repeated(
            3,
            runs(vec![Outcome::Passed, Outcome::TimedOut, Outcome::Passed]),
        )
        .await;
        assert_eq!((r.outcome, r.flaky, r.points), (Outcome::TimedOut, true, 0));
        let r = repeated(3, runs(vec![Outcome::Passed; 3])).await;
        assert_eq!((r.outcome, r.flaky), (Outcome::Passed, false));
        let r = repeated(2, runs(vec![Outcome::Failed, Outcome::Failed])).await;
        assert_eq!((r.outcome, r.flaky), (Outcome::Failed, false));
        let r = repeated(1, runs(vec![Outcome::Failed])).await;
        assert_eq!((r.outcome, r.flaky), (Outcome::Failed, false));
    }
}
