//! Setup shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::protocol::{self, ReferenceServer};
use harness::report::human::{HumanOptions, HumanReporter};
use harness::report::{Event, Reporter};
use harness::run::{self, RunOptions, RunReport, ScenarioResult};
use harness::scenario::model::{Profile, Suite};
use reference_impl::kv::server::{Dialect, Fault, Faults, ServerConfig};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Loads suites by path relative to the repository root. Paths in results and reports stay
/// relative (`scenarios/kv/...`), as a user would type them.
pub fn load(paths: &[&str]) -> Vec<Suite> {
    std::env::set_current_dir(root()).unwrap();
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    match harness::load::load(&paths) {
        Ok(suites) => suites,
        Err(e) => panic!("{}", e.render()),
    }
}

/// Loads a profile of the loaded suites by name.
pub fn profile(name: &str, suites: &[Suite]) -> Profile {
    match harness::load::load_profile(name, suites) {
        Ok(p) => p,
        Err(e) => panic!("{}", e.render()),
    }
}

/// A reporter that drops every event.
pub struct Silent;

impl Reporter for Silent {
    fn report(&mut self, _: &Event<'_>) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs suites with the given options, reporting nothing.
pub async fn run(suites: &[Suite], opts: &RunOptions) -> RunReport {
    run::run(suites, opts, &mut Silent).await.unwrap()
}

/// Runs suites with the given options, printing the human report as `harness run` does
/// (without times, the run's unique value redacted) into the returned text.
pub async fn run_human(suites: &[Suite], opts: &RunOptions) -> (RunReport, String) {
    let mut human = Vec::new();
    let report = {
        let mut reporter = HumanReporter::new(
            &mut human,
            HumanOptions {
                times: false,
                redact_uniq: true,
                verbose: false,
            },
        );
        run::run(suites, opts, &mut reporter).await.unwrap()
    };
    (report, String::from_utf8(human).unwrap())
}

/// Removes a case's suite folder when the case ends, passed or not.
struct TempSuite(PathBuf);

impl Drop for TempSuite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a test file writes one-scenario suites of its own and runs them, each against a
/// target it starts.
#[derive(Clone, Copy)]
pub struct OneScenario<'a> {
    /// Names the temporary folders (`harness-{tag}-...`) and prefixes the scenario ids
    /// (`{tag}/{name}`).
    pub tag: &'a str,
    /// The suite's protocol.
    pub protocol: &'a str,
    /// The suite's `timeout:`.
    pub timeout: &'a str,
    /// Longest a run may take before the test calls it a hang.
    pub hang_guard: Duration,
    /// `Some(pass)`: the static checks of `harness run` (`run::check_suites`) find nothing
    /// exactly when `pass`, before the run. `None`: not checked (as a library caller may
    /// skip them).
    pub static_checks: Option<bool>,
}

impl OneScenario<'_> {
    /// Writes a one-scenario suite (`suite` adds suite settings, `steps` is the YAML list)
    /// into a fresh temporary folder (removed at the end), runs it with `opts`, and returns
    /// the result and the human report (also printed). Fails the test if the run does not end
    /// within [`Self::hang_guard`].
    pub async fn run(
        &self,
        name: &str,
        suite: &str,
        steps: &str,
        opts: RunOptions,
    ) -> (ScenarioResult, String) {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let tag = self.tag;
        let dir = std::env::temp_dir().join(format!(
            "harness-{tag}-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _cleanup = TempSuite(dir.clone());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("suite.yaml"),
            format!(
                "protocol: {}\ntimeout: {}\n{suite}",
                self.protocol, self.timeout
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            format!("id: {tag}/{name}\nsteps:{steps}"),
        )
        .unwrap();
        let suites = match harness::load::load(std::slice::from_ref(&dir)) {
            Ok(s) => s,
            Err(e) => panic!("{}", e.render()),
        };
        if let Some(pass) = self.static_checks {
            let diagnostics = run::check_suites(&suites, opts.profile.as_ref(), &opts.vars);
            assert_eq!(diagnostics.is_empty(), pass, "{diagnostics:?}");
        }
        let (report, human) =
            match tokio::time::timeout(self.hang_guard, run_human(&suites, &opts)).await {
                Ok(ran) => ran,
                Err(_) => panic!(
                    "the run of `{tag}/{name}` did not end within {:?}",
                    self.hang_guard
                ),
            };
        println!("{human}");
        let result = report.results.into_iter().next().unwrap();
        (result, human)
    }

    /// Snapshot settings for the reports of these suites, kept under `snapshots/harness`: the
    /// address, the temporary folder, then each of `filters` (pattern, replacement) and the
    /// run's duration filtered out.
    pub fn snapshots(&self, filters: &[(&str, &str)]) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(root().join("snapshots/harness"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.add_filter(r"127\.0\.0\.1:\d+", "[addr]");
        settings.add_filter(&format!(r"\S*harness-{}-\d+-\d+-", self.tag), "[dir]/");
        for &(pattern, replacement) in filters {
            settings.add_filter(pattern, replacement);
        }
        settings.add_filter(r"(points \d+/\d+); .*", "$1; [duration]");
        settings
    }
}

/// Options aimed at a TLS target started by the test, trusting any certificate.
pub fn against(server: &ReferenceServer) -> RunOptions {
    RunOptions {
        target: Some(server.addr.to_string()),
        insecure: true,
        ..RunOptions::default()
    }
}

/// Starts a KV reference server with some behaviours broken.
pub async fn kv_server(faults: &[Fault], dialect: Dialect) -> ReferenceServer {
    let config = ServerConfig {
        dialect,
        faults: faults.iter().copied().collect::<Faults>(),
        ..ServerConfig::default()
    };
    protocol::kv::start_with(config, &dialect.to_string())
        .await
        .unwrap()
}

/// Starts a chat reference server with some behaviours broken and the spec's timers, except
/// a 5 s game time limit (as the built-in one).
pub async fn chat_server(faults: &[reference_impl::chat::fault::Fault]) -> ReferenceServer {
    let config = reference_impl::chat::server::ServerConfig {
        faults: faults.iter().copied().collect(),
        game_time_limit: std::time::Duration::from_secs(5),
        secret: Some(37),
        ..reference_impl::chat::server::ServerConfig::default()
    };
    protocol::chat::start_with(config, "test").await.unwrap()
}

/// Options aimed at a chat server started by the test, with the variables it needs (the
/// data port).
pub fn against_chat(server: &ReferenceServer) -> RunOptions {
    RunOptions {
        target: Some(server.addr.to_string()),
        vars: server.vars.clone(),
        ..RunOptions::default()
    }
}

/// Starts a packet grading server with some behaviours broken, as the built-in one runs
/// (a 12,000-byte text from a fixed seed).
pub async fn packet_server(faults: &[reference_impl::packet::fault::Fault]) -> ReferenceServer {
    let config = reference_impl::packet::server::ServerConfig {
        faults: faults.iter().copied().collect(),
        text_len: 12_000..=12_000,
        seed: Some(1),
        ..reference_impl::packet::server::ServerConfig::default()
    };
    protocol::packet::start_with(config).await.unwrap()
}

/// Starts a math service server with some behaviours broken.
pub async fn mathsvc_server(faults: &[reference_impl::mathsvc::fault::Fault]) -> ReferenceServer {
    let config = reference_impl::mathsvc::server::ServerConfig {
        faults: faults.iter().copied().collect(),
        ..reference_impl::mathsvc::server::ServerConfig::default()
    };
    protocol::mathsvc::start_with(config).await.unwrap()
}

/// Options aimed at a plain-TCP server started by the test.
pub fn against_plain(server: &ReferenceServer) -> RunOptions {
    RunOptions {
        target: Some(server.addr.to_string()),
        vars: server.vars.clone(),
        ..RunOptions::default()
    }
}

/// Polls every future until all are done (they need not be `Send`).
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A scenario that catches a fault: its id, how it ends, and the line of the failing step.
pub type Caught = (&'static str, harness::run::Outcome, u32);

/// The line of the step that decided a result (0 if none).
pub fn failing_line(r: &ScenarioResult) -> u32 {
    r.failure
        .as_ref()
        .and_then(|f| f.span)
        .map_or(0, |s| s.line)
}

/// The failure of a result as one line: message, caret label and the actual message.
pub fn summary(r: &ScenarioResult) -> String {
    let Some(f) = &r.failure else {
        return String::from("(no failure recorded)");
    };
    let mut s = f.message.clone();
    if let Some(label) = &f.label {
        s.push_str(&format!(" | {label}"));
    }
    if let Some(actual) = &f.actual {
        s.push_str(&format!(" | actual {actual}"));
    }
    s
}

/// `Ok` when exactly the `caught` scenarios did not pass, each ending as listed at the listed
/// line; else a message naming `fault` with both lists and every failure.
pub fn compare_caught(fault: &str, report: &RunReport, caught: &[Caught]) -> Result<(), String> {
    let mut actual: Vec<(String, harness::run::Outcome, u32)> = report
        .results
        .iter()
        .filter(|r| r.outcome.is_problem())
        .map(|r| (r.id.clone(), r.outcome, failing_line(r)))
        .collect();
    actual.sort();
    let mut expected: Vec<(String, harness::run::Outcome, u32)> = caught
        .iter()
        .map(|&(id, o, l)| (id.to_owned(), o, l))
        .collect();
    expected.sort();
    if actual == expected {
        return Ok(());
    }
    let failures: String = report
        .results
        .iter()
        .filter(|r| r.outcome.is_problem())
        .map(|r| {
            let f = r.failure.as_ref();
            format!(
                "    {} {:?}: {} | {}\n",
                r.id,
                r.outcome,
                f.map(|f| f.message.as_str()).unwrap_or_default(),
                f.and_then(|f| f.label.as_deref()).unwrap_or_default()
            )
        })
        .collect();
    Err(format!(
        "fault `{fault}`:\n  expected {expected:?}\n  actual   {actual:?}\n{failures}"
    ))
}

/// Checks a strict run of a suite against a server with one fault (`fault` names it):
/// exactly the `caught` scenarios did not pass, each ending as listed at the listed line
/// ([`compare_caught`]); the first of them, the family's main scenario, mentions `says` in
/// its failure ([`summary`]); and the run fails.
pub fn assert_caught(fault: &str, report: &RunReport, says: &str, caught: &[Caught]) {
    if let Err(e) = compare_caught(fault, report, caught) {
        panic!("{e}");
    }
    let (main, _, _) = caught[0];
    let result = report.results.iter().find(|r| r.id == main).unwrap();
    let said = summary(result);
    assert!(
        said.contains(says),
        "`{main}` against fault `{fault}` should mention {says:?}, but says: {said}"
    );
    assert_eq!(report.exit_code(true), 1, "a strict run must fail");
}

/// One test per fault: `broken_server!(check, /// docs name: Fault, [jobs N,] "what the main
/// scenario's failure mentions", [id => Outcome at line, ...])` runs `check(fault, jobs,
/// says, caught).await`, with the calling module's `JOBS` unless `jobs` is given. The first
/// caught scenario is the family's main one.
macro_rules! broken_server {
    ($check:ident, $(#[$doc:meta])* $name:ident: $fault:expr, jobs $jobs:expr, $says:literal,
     [$($id:literal => $outcome:ident at $line:literal),+ $(,)?]) => {
        $(#[$doc])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $check($fault, $jobs, $says, &[$(($id, $outcome, $line)),+]).await;
        }
    };
    ($check:ident, $(#[$doc:meta])* $name:ident: $fault:expr, $says:literal,
     [$($id:literal => $outcome:ident at $line:literal),+ $(,)?]) => {
        $crate::support::broken_server!(
            $check, $(#[$doc])* $name: $fault, jobs JOBS, $says, [$($id => $outcome at $line),+]
        );
    };
}

pub(crate) use broken_server;
