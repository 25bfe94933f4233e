//! Setup shared by the integration tests.

use std::path::{Path, PathBuf};

use harness::protocol::{self, ReferenceServer};
use harness::report::{Event, Reporter};
use harness::run::{self, RunOptions, RunReport};
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

/// `Ok` when exactly the `caught` scenarios did not pass, each ending as listed at the listed
/// line; else a message naming `fault` with both lists and every failure.
pub fn compare_caught(fault: &str, report: &RunReport, caught: &[Caught]) -> Result<(), String> {
    let mut actual: Vec<(String, harness::run::Outcome, u32)> = report
        .results
        .iter()
        .filter(|r| r.outcome.is_problem())
        .map(|r| {
            let line = r
                .failure
                .as_ref()
                .and_then(|f| f.span)
                .map_or(0, |s| s.line);
            (r.id.clone(), r.outcome, line)
        })
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
