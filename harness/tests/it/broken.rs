//! exploratory
use std::time::Duration;
use harness::run::RunOptions;
use reference_impl::kv::server::{Dialect, Fault};
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore() {
    let suites = support::load(&["scenarios/kv"]);
    for fault in Fault::ALL { let jobs = if fault == Fault::SharedStore { 1 } else { 4 };
        let server = support::kv_server(&[fault], Dialect::Spec).await;
        let opts = RunOptions { timeout: Some(Duration::from_millis(500)), jobs, ..support::against(&server) };
        let t = std::time::Instant::now();
        let report = support::run(&suites, &opts).await;
        println!("== {fault:?} ({:?})", t.elapsed());
        for r in report.results.iter().filter(|r| r.outcome.is_problem()) {
            let f = r.failure.as_ref().unwrap();
            println!("  {} {:?} step={:?} line={:?} msg={} exp={:?} act={:?}", r.id, r.outcome, f.step, f.span.map(|s| s.line), f.message, f.expected, f.actual);
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_course() {
    let suites = support::load(&["scenarios/kv"]);
    let server = support::kv_server(&[], Dialect::Course).await;
    for profile in [true, false] {
        let opts = RunOptions { timeout: Some(Duration::from_millis(500)), jobs: 4, profile: profile.then(|| support::profile("course", &suites)), ..support::against(&server) };
        let t = std::time::Instant::now();
        let report = support::run(&suites, &opts).await;
        println!("== profile {profile} ({:?})", t.elapsed());
        for r in report.results.iter().filter(|r| r.outcome.is_problem()) {
            let f = r.failure.as_ref().unwrap();
            println!("  {} {:?} step={:?} line={:?} msg={} label={:?} help={:?}", r.id, r.outcome, f.step, f.span.map(|s| s.line), f.message, f.label, f.help);
        }
    }
}
