//! The `harness` command line: parses flags and calls the library. Exit codes:
//! 0 every scenario passed, 1 some scenario did not, 2 usage, scenario-file or setup error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use harness::load;
use harness::report::Tee;
use harness::report::human::{HumanOptions, HumanReporter};
use harness::report::json::JsonReporter;
use harness::run::managed::{Restart, TargetExec};
use harness::run::{self, RunOptions, ServeOptions};
use harness::scenario::model::{Level, Selection};
use harness::target::client::ClientSpec;

const EXAMPLES: &str = "\
Examples:
  harness run scenarios/                         every suite, against the built-in reference servers
  harness run scenarios/kv --target 127.0.0.1:4000 --insecure
                                                 the KV suite against your own server
  harness run scenarios/kv --profile course      in the course's dialect (kv/course.profile.yaml)
  harness run scenarios/kv --format json --output report.json
  harness check scenarios/                       validate scenario files without running them";

/// Conformance test harness for small TCP protocols.
///
/// Replays YAML scenario suites against a server (yours, or the built-in reference server of
/// the suite's protocol) and reports, for every scenario that does not pass, the step that
/// failed (file:line:col), what was expected and what arrived, and the transcript.
#[derive(Debug, Parser)]
#[command(name = "harness", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario suites against a target.
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
    /// Play the server side of suites with `role: server`, to test a client.
    ///
    /// Each scenario listens, lets the client under test connect, and checks what it sends,
    /// how it answers, what it prints and how it exits.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Fuzz a live server: generated sessions, one message mutated at a time, checked
    /// against the spec and the reference server; findings shrunk and written as scenarios.
    ///
    /// Each case is a session built from the protocol's messages (logins, requests, closes,
    /// malformed lines), about half of them with one message changed at the byte level. The
    /// case runs on the built-in reference server, then, as a scenario expecting what the
    /// reference answered, on the target; a fresh client's happy flow follows. A case fails
    /// when the target dies (`crash`), stops accepting connections (`down`), answers a
    /// message the spec answers the same way in every state otherwise (`spec`), answers
    /// otherwise than the reference (`differs`), or fails the happy flow after it (`alive`).
    /// Failures are shrunk (fewer actions, then fewer bytes), replayed to confirm, and
    /// written to --out as scenario files that `harness run` replays.
    #[command(after_help = FUZZ_EXAMPLES)]
    Fuzz(FuzzArgs),
    /// Validate scenario files: every error as file:line:col with the source line.
    Check {
        /// Scenario files, suite folders, or folders of suites.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Variables that will be given with --var at run time (K=V; only K matters here).
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// A profile that will be used at run time.
        #[arg(long, value_name = "NAME|FILE")]
        profile: Option<String>,
    },
    /// List the scenarios of suites: id, points, level, tags, spec section.
    List {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Grade many submissions: start each one's server, run the suites, score and report.
    #[command(after_help = GRADE_EXAMPLES)]
    Grade(GradeArgs),
    /// Combine the grade.json files of several `harness grade --shard` runs into one sheet.
    Merge {
        /// grade.json files written by `harness grade`.
        #[arg(required = true, value_name = "GRADE_JSON")]
        files: Vec<PathBuf>,
        /// Folder for the merged sheet.csv and grade.json.
        #[arg(long, value_name = "DIR")]
        output: PathBuf,
    },
}

const FUZZ_EXAMPLES: &str = "\
Examples:
  harness fuzz --protocol chat --target 127.0.0.1:1337 --duration 2m
                                                 your chat server, for two minutes
  harness fuzz --protocol kv --exec './server --port {port}' --cases 500 --seed 7
                                                 the harness starts (and restarts) your server
  harness fuzz --protocol kv                     the built-in reference server (a self-check)
  harness run fuzz-findings --target 127.0.0.1:1337
                                                 replay what was found

Exit codes: 0 nothing found, 1 findings written, 2 usage or setup error.";

/// `harness fuzz`.
#[derive(Debug, Args)]
struct FuzzArgs {
    /// The protocol the target speaks (kv, chat, packet, mathsvc).
    #[arg(long, value_name = "NAME")]
    protocol: String,

    /// The server to fuzz, HOST:PORT. Without --target and --exec, the protocol's built-in
    /// reference server (a self-check of the fuzzer).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "exec")]
    target: Option<String>,

    /// The server's command line, with {port} (and {host}, {addr}): the harness starts it on
    /// a free loopback port and starts it again whenever it dies, so that crashes can be
    /// shrunk.
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,

    /// How long a server started with --exec may take to accept connections.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    startup_timeout: Duration,

    /// Seed of the cases: the same seed gives the same cases [default: from the clock,
    /// printed at the start].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Stop after N cases.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    cases: Option<u64>,

    /// Stop after this long [default: 1m unless --cases is given].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Folder the findings are written to, as a suite `harness run` replays.
    #[arg(long, value_name = "DIR", default_value = "fuzz-findings")]
    out: PathBuf,

    /// Stop after this many distinct findings.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_count)]
    max_findings: u64,

    /// Most trials shrinking one finding may take.
    #[arg(long, value_name = "N", default_value_t = 300)]
    shrink_trials: usize,

    /// Setting of the reference server the cases are checked against (K=V, as a profile's
    /// `reference:` map; e.g. dialect=course); repeatable.
    #[arg(long = "reference", value_name = "K=V", value_parser = parse_var)]
    reference: Vec<(String, String)>,

    #[command(flatten)]
    trust: TrustArgs,

    /// Multiply every deadline by F (slow machines, slow targets).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_scale)]
    time_scale: f64,
}

/// Which scenarios to take.
#[derive(Debug, Args)]
struct SelectArgs {
    /// Only scenarios whose id matches GLOB (`*` matches anything); repeatable.
    #[arg(long = "filter", value_name = "GLOB")]
    filters: Vec<String>,
    /// Only scenarios with tag T; repeatable (any of them).
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// Only `must` or only `should` scenarios.
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
}

/// `--shard` of the scenarios, for `run` and `serve`.
#[derive(Debug, Args)]
struct ShardArgs {
    /// Run only shard K of N of the selected scenarios (every N-th, in suite and file order,
    /// from the K-th), to spread a long suite over N machines or CI jobs.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LevelArg {
    Must,
    Should,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        Selection {
            ids: self.filters.clone(),
            tags: self.tags.clone(),
            level: self.level.map(|l| match l {
                LevelArg::Must => Level::Must,
                LevelArg::Should => Level::Should,
            }),
            shard: None,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RestartArg {
    /// One server for the whole suite (restarted after a crash or a hang).
    PerSuite,
    /// A fresh server for every scenario: no state shared; scenarios run in parallel.
    PerScenario,
}

impl From<RestartArg> for Restart {
    fn from(r: RestartArg) -> Self {
        match r {
            RestartArg::PerSuite => Restart::PerSuite,
            RestartArg::PerScenario => Restart::PerScenario,
        }
    }
}

const GRADE_EXAMPLES: &str = "\
Examples:
  harness grade scenarios/kv --submissions subs/ --output grades/ \\
      --exec 'python3 {dir}/server.py --port {port}'
  harness grade scenarios/mathsvc --submissions subs/ --output grades/ --shard 1/4 \\
      --exec '{dir}/server --port {port}'        one machine of four; then harness merge

Each submission's server runs from a fresh empty working folder: {dir} is the submission's
folder (absolute), {port} a free port. Outputs: OUTDIR/sheet.csv, OUTDIR/grade.json, and per
submission report.md, report.html, results.json (Gradescope) and report.json.";

#[derive(Debug, Args)]
struct GradeArgs {
    /// Suites to grade with (folders or files).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// The folder holding one folder per submission.
    #[arg(long, value_name = "DIR")]
    submissions: PathBuf,

    /// How to start a submission's server: {dir} is its folder, {port} the port to listen on.
    #[arg(long, value_name = "COMMAND")]
    exec: String,

    /// Folder for the sheet and the reports.
    #[arg(long, value_name = "OUTDIR")]
    output: PathBuf,

    /// Submissions graded at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 2)]
    jobs: usize,

    /// Scenarios of one submission run at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    scenario_jobs: usize,

    /// A fresh server per scenario (the default: a crash costs only the scenario that
    /// causes it, and no state leaks between scenarios), or one per suite (faster for slow
    /// starting servers; restarted after a crash or hang).
    #[arg(long, value_enum, default_value = "per-scenario")]
    restart: RestartArg,

    /// How long a server may take to accept connections.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    startup_timeout: Duration,

    /// A file of scenarios known to fail (`xfail:` map of id glob -> reason, as in a
    /// profile): they do not count against a submission, and a pass is reported.
    #[arg(long, value_name = "FILE")]
    known_failures: Option<PathBuf>,

    /// Grade only shard K of N (submissions sorted by name, every N-th from the K-th).
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,

    /// Multiply every deadline by F (slow machines).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_scale)]
    time_scale: f64,

    /// Run each scenario N times; one that both passes and fails is marked flaky (and
    /// scored by a run that did not pass).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,

    /// Set a suite variable; repeatable.
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    vars: Vec<(String, String)>,

    /// A dialect profile.
    #[arg(long, value_name = "NAME|FILE")]
    profile: Option<String>,

    /// Default deadline of every expected message.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    #[command(flatten)]
    select: SelectArgs,

    /// No progress output.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((k, n)) if n >= 1 && (1..=n).contains(&k) => Ok((k, n)),
        _ => Err(format!(
            "expected K/N with 1 <= K <= N, e.g. 2/4, got `{s}`"
        )),
    }
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1000.0 => Ok(f),
        _ => Err(format!(
            "expected a factor above 0 such as 2 or 1.5, got `{s}`"
        )),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Readable report: a line per scenario, then each problem in detail.
    Human,
    /// The JSON report (schema version 1, see README.md).
    Json,
    /// JUnit XML: a testcase per scenario, for CI test reporters.
    Junit,
    /// TAP version 14.
    Tap,
}

/// Flags `run` and `serve` share.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Scenario files, suite folders (e.g. scenarios/kv), or folders of suites (scenarios/).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Set a suite variable (overrides suite.yaml and the profile); repeatable.
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    vars: Vec<(String, String)>,

    /// A dialect profile: NAME for <suite>/NAME.profile.yaml, or a path to a profile file.
    #[arg(long, value_name = "NAME|FILE")]
    profile: Option<String>,

    /// Report format written to stdout (or to --output).
    #[arg(long, value_enum, default_value = "human")]
    format: Format,

    /// Write the report to FILE; a human summary still goes to stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Scenarios run at the same time [default: 16]. They mostly wait on the network and on
    /// timers, so more run at once than there are cores.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,

    /// Default deadline of every expected message, replacing the suites' own (e.g. 500ms, 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Largest message accepted from the peer, in bytes; a longer one ends the scenario
    /// with a failure instead of filling memory.
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_bytes)]
    recv_limit: usize,

    /// `level: should` scenarios fail the run too.
    #[arg(long)]
    strict: bool,

    /// Print lines only for scenarios that did not pass.
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Multiply every deadline by F (slow machines, slow targets).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_scale)]
    time_scale: f64,

    /// Run each scenario N times; one that both passes and fails is marked flaky.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,

    #[command(flatten)]
    select: SelectArgs,

    #[command(flatten)]
    shard: ShardArgs,
}

/// How to trust a TLS target (`run`, `fuzz`).
#[derive(Debug, Args)]
struct TrustArgs {
    /// Trust this certificate (PEM) when the target speaks TLS.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,

    /// Accept any TLS certificate (self-signed, expired, wrong name).
    #[arg(long)]
    insecure: bool,

    /// TLS server name to verify (default: the host of --target).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The server to test, as HOST:PORT. Without it, each suite runs against its protocol's
    /// built-in reference server, started in this process on a free port.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,

    /// Deadline for connecting and for the TLS handshake.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    connect_timeout: Duration,

    #[command(flatten)]
    trust: TrustArgs,

    /// Start the server under test with this command ({port}: where it must listen) in its
    /// own process group and working folder, instead of --target; it is stopped afterwards.
    #[arg(long, value_name = "COMMAND", conflicts_with = "target")]
    exec: Option<String>,

    /// With --exec: one server per suite (restarted after a crash or hang), or a fresh one
    /// per scenario.
    #[arg(long, value_enum, default_value = "per-suite", requires = "exec")]
    restart: RestartArg,

    /// With --exec: how long the server may take to accept connections.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    startup_timeout: Duration,

    #[command(flatten)]
    common: CommonArgs,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  harness serve scenarios/packet-client          the built-in packet client, for a quick check
  harness serve scenarios/packet-client \\
      --exec 'python3 client.py --host={host} --port={port} --studentID={sid}'
                                                 start your client for every scenario
  harness serve scenarios/packet-client --listen 127.0.0.1:4000
                                                 wait on port 4000; start the client by hand
                                                 once per scenario

In --exec, {host}, {port} and {addr} are where the harness listens, and {NAME} is any
variable of the scenario (e.g. {sid}, the student id the scenarios expect).";

#[derive(Debug, Args)]
struct ServeArgs {
    /// Listen on HOST:PORT for every scenario, one scenario at a time. Without it, each
    /// scenario listens on its own free loopback port, and scenarios run in parallel.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,

    /// The client's command line, started (with `sh -c`, in its own process group) for each
    /// scenario and stopped after it; its output and exit code are checked by the steps that
    /// ask. Without --exec and --listen, the protocol's built-in client plays the client;
    /// with --listen only, you start the client by hand.
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,

    /// How long a scenario waits for the client to connect [default: 10s, or 2m when the
    /// client is started by hand].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    accept_timeout: Option<Duration>,

    #[command(flatten)]
    common: CommonArgs,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected K=V, got `{s}`")),
    }
}

/// A byte count: `4096`, `64KiB`, `1MiB` (also `k`/`K`/`KB` and `m`/`M`/`MB`, all powers of 2).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: usize = match &s[digits.len()..] {
        "" | "B" => 1,
        "k" | "K" | "KB" | "KiB" => 1 << 10,
        "m" | "M" | "MB" | "MiB" => 1 << 20,
        other => {
            return Err(format!(
                "unknown unit `{other}` (write e.g. 4096, 64KiB, 1MiB)"
            ));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("expected a byte count such as 4096 or 1MiB, got `{s}`"))?;
    match n.checked_mul(unit) {
        Some(0) => Err("the receive limit must be at least 1 byte".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{s}` is too large")),
    }
}

/// A count of at least 1.
fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a whole number such as 100, got `{s}`")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 2s, 1m)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            paths,
            vars,
            profile,
        } => check(&paths, &vars.into_iter().collect(), profile.as_deref()),
        Command::List { paths, select } => list(&paths, &select.selection()),
        Command::Grade(args) => block_on(grade_command(args)),
        Command::Merge { files, output } => merge_command(&files, &output),
        Command::Run(args) => block_on(run_command(args)),
        Command::Serve(args) => block_on(serve_command(args)),
        Command::Fuzz(args) => block_on(fuzz_command(args)),
    }
}

fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => setup_error(&format!("cannot start the async runtime: {e}")),
    }
}

fn setup_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn load_or_report(paths: &[PathBuf]) -> Result<Vec<harness::scenario::model::Suite>, ExitCode> {
    load::load(paths).map_err(|errors| {
        eprint!("{}", errors.render());
        ExitCode::from(2)
    })
}

fn check(paths: &[PathBuf], vars: &BTreeMap<String, String>, profile: Option<&str>) -> ExitCode {
    let suites = match load_or_report(paths) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let profile = match load_profile(profile, &suites) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = static_checks(&suites, profile.as_ref(), vars) {
        return code;
    }
    let n: usize = suites.iter().map(|s| s.scenarios.len()).sum();
    println!(
        "ok: {n} scenario{} in {} suite{}",
        if n == 1 { "" } else { "s" },
        suites.len(),
        if suites.len() == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
}

fn load_profile(
    name: Option<&str>,
    suites: &[harness::scenario::model::Suite],
) -> Result<Option<harness::scenario::model::Profile>, ExitCode> {
    match name {
        None => Ok(None),
        Some(p) => load::load_profile(p, suites).map(Some).map_err(|e| {
            eprint!("{}", e.render());
            ExitCode::from(2)
        }),
    }
}

fn static_checks(
    suites: &[harness::scenario::model::Suite],
    profile: Option<&harness::scenario::model::Profile>,
    vars: &BTreeMap<String, String>,
) -> Result<(), ExitCode> {
    let diagnostics = run::check_suites(suites, profile, vars);
    if diagnostics.is_empty() {
        return Ok(());
    }
    for d in &diagnostics {
        eprint!("{}", d.render());
        eprintln!();
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    if errors == 0 {
        return Ok(());
    }
    eprintln!(
        "error: {errors} problem{} in scenario files",
        if errors == 1 { "" } else { "s" }
    );
    Err(ExitCode::from(2))
}

fn list(paths: &[PathBuf], selection: &Selection) -> ExitCode {
    let suites = match load_or_report(paths) {
        Ok(s) => selection.apply(s),
        Err(code) => return code,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for suite in &suites {
        let _ = writeln!(out, "{}", suite.dir.display());
        for s in &suite.scenarios {
            let level = match s.level {
                harness::scenario::model::Level::Must => "must",
                harness::scenario::model::Level::Should => "should",
            };
            let _ = writeln!(
                out,
                "  {:<40} {:>2} pt  {:<6}  {:<24}  {}",
                s.id,
                s.points,
                level,
                s.tags.join(","),
                s.spec.as_deref().unwrap_or("")
            );
        }
    }
    ExitCode::SUCCESS
}

async fn run_command(args: RunArgs) -> ExitCode {
    let opts = RunOptions {
        target: args.target.clone(),
        ca: args.trust.ca.clone(),
        insecure: args.trust.insecure,
        server_name: args.trust.server_name.clone(),
        connect_timeout: args.connect_timeout,
        exec: args.exec.clone().map(|command| TargetExec {
            command,
            vars: BTreeMap::new(),
            restart: args.restart.into(),
            startup_timeout: args.startup_timeout,
        }),
        ..RunOptions::default()
    };
    execute(&args.common, opts).await
}

async fn fuzz_command(args: FuzzArgs) -> ExitCode {
    use harness::fuzz::{self, FuzzOptions, TargetChoice, summary};
    let target = match (&args.target, &args.exec) {
        (Some(addr), _) => TargetChoice::Address {
            addr: addr.clone(),
            ca: args.trust.ca.clone(),
            insecure: args.trust.insecure,
            server_name: args.trust.server_name.clone(),
        },
        (None, Some(command)) => TargetChoice::Exec {
            command: command.clone(),
            startup_timeout: args.startup_timeout,
        },
        (None, None) => TargetChoice::Reference,
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 1_000_000)
    });
    let opts = FuzzOptions {
        protocol: args.protocol.clone(),
        target,
        seed,
        cases: args.cases,
        duration: args.duration,
        out: args.out.clone(),
        max_findings: usize::try_from(args.max_findings).unwrap_or(usize::MAX),
        shrink_trials: args.shrink_trials,
        reference_settings: args.reference.into_iter().collect(),
        time_scale: args.time_scale,
    };
    // A closed stdout (`| head`) stops the printing, not the fuzzing.
    let mut print = |event: fuzz::FuzzEvent<'_>| {
        if let Some(line) = summary::event_line(&event) {
            let _ = writeln!(io::stdout(), "{line}");
        }
    };
    match fuzz::fuzz(&opts, &mut print).await {
        Ok(report) => {
            let replay = match (&args.target, &args.exec) {
                (Some(addr), _) => format!(
                    "--target {addr}{}",
                    if args.trust.insecure {
                        " --insecure"
                    } else {
                        ""
                    }
                ),
                (None, Some(command)) => {
                    format!("--exec {}", harness::target::client::shell_quote(command))
                }
                (None, None) => String::new(),
            };
            let _ = write!(
                io::stdout(),
                "{}",
                summary::summary(&report, &args.out, replay.trim())
            );
            if report.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => setup_error(&e.to_string()),
    }
}

async fn serve_command(args: ServeArgs) -> ExitCode {
    let person = args.exec.is_none() && args.listen.is_some();
    let client = match (&args.exec, &args.listen) {
        (Some(command), _) => Some(ClientSpec::Command(command.clone())),
        (None, Some(_)) => Some(ClientSpec::Person),
        (None, None) => None,
    };
    let accept_timeout = args.accept_timeout.unwrap_or(if person {
        run::DEFAULT_PERSON_ACCEPT_TIMEOUT
    } else {
        run::DEFAULT_ACCEPT_TIMEOUT
    });
    let opts = RunOptions {
        serve: Some(ServeOptions {
            listen: args.listen.clone(),
            client,
            accept_timeout,
        }),
        ..RunOptions::default()
    };
    execute(&args.common, opts).await
}

/// Loads and checks the suites, runs them with `opts` completed by the shared flags, and
/// reports.
async fn execute(args: &CommonArgs, mut opts: RunOptions) -> ExitCode {
    let selection = Selection {
        shard: args.shard.shard,
        ..args.select.selection()
    };
    let suites = match load_or_report(&args.paths) {
        Ok(s) => selection.apply(s),
        Err(code) => return code,
    };
    opts.time_scale = args.time_scale;
    opts.repeat = args.repeat;
    let profile = match load_profile(args.profile.as_deref(), &suites) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let cli_vars: BTreeMap<String, String> = args.vars.iter().cloned().collect();
    if let Err(code) = static_checks(&suites, profile.as_ref(), &cli_vars) {
        return code;
    }
    opts.vars = cli_vars;
    opts.profile = profile;
    opts.timeout = args.timeout;
    opts.recv_limit = args.recv_limit;
    opts.strict = args.strict;
    if let Some(jobs) = args.jobs {
        if jobs == 0 {
            return setup_error("--jobs must be at least 1");
        }
        opts.jobs = jobs;
    }
    // One listening address: one scenario at a time.
    if opts.serve.as_ref().is_some_and(|s| s.listen.is_some()) {
        opts.jobs = 1;
    }

    let human_opts = HumanOptions {
        verbose: !args.quiet,
        ..HumanOptions::default()
    };
    let stdout = io::stdout();
    let mut stdout = stdout.lock();
    let mut file = match &args.output {
        Some(path) => match File::create(path) {
            Ok(f) => Some(BufWriter::new(f)),
            Err(e) => return setup_error(&format!("cannot create {}: {e}", path.display())),
        },
        None => None,
    };
    // A machine-readable format goes to --output (with the human report on stdout), or to
    // stdout alone.
    let result = match (args.format, file.as_mut()) {
        (Format::Human, Some(f)) => {
            run::run(&suites, &opts, &mut HumanReporter::new(f, human_opts)).await
        }
        (Format::Human, None) => {
            run::run(
                &suites,
                &opts,
                &mut HumanReporter::new(&mut stdout, human_opts),
            )
            .await
        }
        (format, Some(f)) => {
            let mut machine = machine_reporter(format, f);
            let mut human = HumanReporter::new(&mut stdout, human_opts);
            run::run(&suites, &opts, &mut Tee(vec![machine.as_mut(), &mut human])).await
        }
        (format, None) => {
            let mut machine = machine_reporter(format, &mut stdout);
            run::run(&suites, &opts, machine.as_mut()).await
        }
    };
    finish(result, file, opts.strict)
}

/// The reporter of a machine-readable format, writing to `out`.
fn machine_reporter<'w>(
    format: Format,
    out: &'w mut dyn Write,
) -> Box<dyn harness::report::Reporter + 'w> {
    match format {
        Format::Json => Box::new(JsonReporter::new(out)),
        Format::Junit => Box::new(harness::report::junit::JunitReporter::new(out)),
        Format::Tap => Box::new(harness::report::tap::TapReporter::new(out)),
        Format::Human => Box::new(HumanReporter::new(out, HumanOptions::default())),
    }
}

/// Flushes the report file and turns the run's result into the exit code.
fn finish(
    result: Result<run::RunReport, run::SetupError>,
    file: Option<BufWriter<File>>,
    strict: bool,
) -> ExitCode {
    if let Some(mut f) = file
        && let Err(e) = f.flush()
    {
        return setup_error(&format!("cannot write the report: {e}"));
    }
    match result {
        Ok(report) => ExitCode::from(report.exit_code(strict) as u8),
        Err(e) => setup_error(&e.to_string()),
    }
}

async fn grade_command(args: GradeArgs) -> ExitCode {
    if args.jobs == 0 || args.scenario_jobs == 0 {
        return setup_error("--jobs and --scenario-jobs must be at least 1");
    }
    let suites = match load_or_report(&args.paths) {
        Ok(s) => args.select.selection().apply(s),
        Err(code) => return code,
    };
    let mut profile = match load_profile(args.profile.as_deref(), &suites) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(path) = &args.known_failures {
        let known = match load::load_profile(&path.display().to_string(), &suites) {
            Ok(p) => p,
            Err(e) => {
                eprint!("{}", e.render());
                return ExitCode::from(2);
            }
        };
        let merged = profile.get_or_insert_with(Default::default);
        merged.xfail.extend(known.xfail);
    }
    let cli_vars: BTreeMap<String, String> = args.vars.iter().cloned().collect();
    if let Err(code) = static_checks(&suites, profile.as_ref(), &cli_vars) {
        return code;
    }
    let opts = harness::grade::GradeOptions {
        submissions: args.submissions.clone(),
        exec: TargetExec {
            command: args.exec.clone(),
            vars: BTreeMap::new(),
            restart: args.restart.into(),
            startup_timeout: args.startup_timeout,
        },
        output: args.output.clone(),
        jobs: args.jobs,
        shard: args.shard,
        run: RunOptions {
            vars: cli_vars,
            profile,
            jobs: args.scenario_jobs,
            timeout: args.timeout,
            time_scale: args.time_scale,
            repeat: args.repeat,
            ..RunOptions::default()
        },
    };
    let quiet = args.quiet;
    // On a terminal, a bar with the finished submissions printed above it; otherwise a
    // plain line per submission.
    let bar = (!quiet && io::stdout().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} submissions  {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |s: &harness::report::Submission, n: usize, total: usize| {
        if quiet {
            return;
        }
        let line = submission_line(s, n, total);
        match &bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(n as u64);
                bar.println(line);
            }
            None => println!("{line}"),
        }
    };
    let graded = match harness::grade::grade(&suites, &opts, &mut progress).await {
        Ok(g) => g,
        Err(e) => return setup_error(&e.to_string()),
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if let Err(e) = harness::grade::write_outputs(&args.output, &graded) {
        return setup_error(&e.to_string());
    }
    if !quiet {
        println!(
            "{} submission{} graded: {}",
            graded.len(),
            if graded.len() == 1 { "" } else { "s" },
            args.output.join("sheet.csv").display()
        );
    }
    ExitCode::SUCCESS
}

/// `[3/12] alice: 31/33 points (1 failed, 1 crashed)`.
fn submission_line(s: &harness::report::Submission, n: usize, total: usize) -> String {
    let sum = &s.summary;
    let mut problems = Vec::new();
    for (count, word) in [
        (sum.failed, "failed"),
        (sum.timed_out, "timed out"),
        (sum.errors, "errors"),
        (sum.crashed, "crashed"),
        (sum.hung, "hung"),
        (sum.did_not_start, "did not start"),
        (sum.flaky, "flaky"),
    ] {
        if count > 0 {
            problems.push(format!("{count} {word}"));
        }
    }
    let problems = if problems.is_empty() {
        String::new()
    } else {
        format!(" ({})", problems.join(", "))
    };
    format!(
        "[{n}/{total}] {}: {}/{} points{problems}",
        s.name, sum.points, sum.max_points
    )
}

fn merge_command(files: &[PathBuf], output: &std::path::Path) -> ExitCode {
    let mut parsed = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => return setup_error(&format!("cannot read {}: {e}", f.display())),
        };
        match serde_json::from_str::<harness::grade::GradeFile>(&text) {
            Ok(g) if g.version == harness::grade::GRADE_VERSION => parsed.push(g),
            Ok(g) => {
                return setup_error(&format!(
                    "{} is grade.json version {}; this harness reads version {}",
                    f.display(),
                    g.version,
                    harness::grade::GRADE_VERSION
                ));
            }
            Err(e) => {
                return setup_error(&format!(
                    "{} is not a grade.json written by harness grade: {e}",
                    f.display()
                ));
            }
        }
    }
    let merged = harness::grade::merge(&parsed);
    if let Err(e) = harness::grade::write_sheet(output, &merged) {
        return setup_error(&e.to_string());
    }
    println!(
        "{} submissions merged: {}",
        merged.submissions.len(),
        output.join("sheet.csv").display()
    );
    ExitCode::SUCCESS
}
