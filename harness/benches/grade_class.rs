//! Wall time to grade a class of 50 math-service submissions with `harness grade`'s engine,
//! with 2 and with 8 submissions at once (4 scenarios at once within each, a fresh server
//! per scenario, as `harness grade` does by default).
//!
//! The submissions run the reference math server, so build it first:
//!
//! ```sh
//! cargo build --release -p reference-impl --bin reference
//! cargo bench -p harness --bench grade_class
//! ```
//!
//! `SUBMISSIONS=N` changes the class size. Every fifth submission answers Fibonacci off by one.

use std::path::PathBuf;
use std::time::Instant;

use harness::grade::{GradeOptions, grade};
use harness::run::RunOptions;
use harness::run::managed::{Restart, TargetExec};

fn reference_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench's path");
    // target/release/deps/grade_class-... -> target/release/reference
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the target folder");
    let bin = dir.join("reference");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p reference-impl --bin reference",
        bin.display()
    );
    bin
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` of benches passes nothing useful.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("SUBMISSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let reference = reference_bin();
    let root = tempfile::tempdir().expect("a temp dir");
    let subs = root.path().join("subs");
    for i in 0..n {
        let dir = subs.join(format!("student{i:03}"));
        std::fs::create_dir_all(&dir).expect("a folder");
        let fault = if i % 5 == 4 {
            " --fault fib-off-by-one"
        } else {
            ""
        };
        std::fs::write(
            dir.join("run.sh"),
            format!(
                "exec '{}' mathsvc-server --port $1{fault}\n",
                reference.display()
            ),
        )
        .expect("run.sh");
    }
    let suites = harness::load::load(&[PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/mathsvc"
    ))])
    .expect("the math service suite");
    let scenarios: usize = suites.iter().map(|s| s.scenarios.len()).sum();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    println!("grading {n} submissions x {scenarios} scenarios (fresh server per scenario)");
    for jobs in [2, 8] {
        let opts = GradeOptions {
            submissions: subs.clone(),
            exec: TargetExec {
                command: "sh {dir}/run.sh {port}".into(),
                vars: Default::default(),
                restart: Restart::PerScenario,
                startup_timeout: std::time::Duration::from_secs(10),
            },
            output: root.path().join(format!("out{jobs}")),
            jobs,
            shard: None,
            run: RunOptions {
                jobs: 4,
                ..RunOptions::default()
            },
        };
        let started = Instant::now();
        let graded = runtime
            .block_on(grade(&suites, &opts, &mut |_, _, _| {}))
            .expect("graded");
        let wall = started.elapsed();
        let full = graded
            .iter()
            .filter(|s| s.summary.points == s.summary.max_points)
            .count();
        let problems: usize = graded
            .iter()
            .map(|s| {
                s.summary.crashed + s.summary.hung + s.summary.did_not_start + s.summary.errors
            })
            .sum();
        println!(
            "--jobs {jobs}: {:.1} s wall, {:.2} s per submission, {full}/{n} full marks, {problems} crashed/hung/not started/errors",
            wall.as_secs_f64(),
            wall.as_secs_f64() / n as f64
        );
    }
}
