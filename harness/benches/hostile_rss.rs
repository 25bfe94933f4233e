//! Peak memory of the `harness` binary against the hostile targets of the test battery
//! (`tests/it/hostile_servers.rs`): silent, flooding (short lines, long ones while no step
//! reads, or lines a background rule answers while a step waits), a 10 MB line with no line end, resets, drips, plain TCP where TLS is expected, TLS
//! garbage, NUL and non-UTF-8 replies, replies on the wrong connection, nothing listening.
//!
//! The targets run in this process. `harness run` takes one target per run, so each case is
//! a run of its own: a one-scenario KV suite written to a temporary folder, run by the real
//! binary as a child process. A child's peak RSS comes from `getrusage(RUSAGE_CHILDREN)`,
//! which reports the largest child waited for, not each one; so every run goes through a
//! fresh copy of this bench (started with [`MEASURE_ENV`] set) whose only child is that run.
//!
//! Prints each case's peak RSS and outcome line, then the maximum against the 64 MB target.
//! Run with `cargo bench -p harness --bench hostile_rss`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

#[path = "../tests/it/hostile_servers.rs"]
#[allow(clippy::unwrap_used)]
mod hostile_servers;

use hostile_servers::Target;

/// Set in the environment of a copy of this bench that runs one command and reports its
/// peak RSS.
const MEASURE_ENV: &str = "HOSTILE_RSS_MEASURE";
/// The line that copy prints on stderr: this prefix, then the peak RSS in KiB.
const MEASURE_LINE: &str = "hostile-rss: max_rss_kib=";
/// Longest one run may take before it is killed as a hang.
const HANG_GUARD: Duration = Duration::from_secs(60);
/// Peak RSS the whole battery must stay within, in MB (MiB, as the kernel counts KiB).
const TARGET_MB: f64 = 64.0;

/// A request, and an expectation of the reply that a correct server would send.
const GET: &str = r#"
  - C -> S: GET colour
  - S -> C: GET blue
"#;

/// Starts a hostile target.
type Start = fn() -> Pin<Box<dyn Future<Output = Target>>>;

/// What the harness is told to trust.
#[derive(Debug, Clone, Copy)]
enum Trust {
    /// `--insecure`: any certificate.
    Any,
    /// `--ca` with a certificate other than the one the target presents.
    Other,
}

/// One hostile case, as the test battery runs it.
struct Case {
    name: &'static str,
    /// `None`: nothing listens on the port.
    start: Option<Start>,
    /// Suite settings added to `protocol: kv` and `timeout: 1s`.
    suite: &'static str,
    steps: &'static str,
    /// `--connect-timeout`.
    connect_timeout: &'static str,
    /// `--recv-limit`, if not the default.
    recv_limit: Option<&'static str>,
    trust: Trust,
}

impl Case {
    const fn new(name: &'static str, start: Start) -> Self {
        Case {
            name,
            start: Some(start),
            suite: "",
            steps: GET,
            connect_timeout: "2s",
            recv_limit: None,
            trust: Trust::Any,
        }
    }

    const fn steps(self, steps: &'static str) -> Self {
        Case { steps, ..self }
    }

    const fn suite(self, suite: &'static str) -> Self {
        Case { suite, ..self }
    }

    const fn connect_timeout(self, connect_timeout: &'static str) -> Self {
        Case {
            connect_timeout,
            ..self
        }
    }

    const fn recv_limit(self, recv_limit: &'static str) -> Self {
        Case {
            recv_limit: Some(recv_limit),
            ..self
        }
    }
}

/// The battery of `tests/it/hostile.rs`, case by case.
fn cases() -> Vec<Case> {
    const WITHIN_300MS: &str = r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 300ms }
"#;
    vec![
        Case::new("silent-handshake", || Box::pin(hostile_servers::silent()))
            .connect_timeout("300ms"),
        Case::new("never-replies", || {
            Box::pin(hostile_servers::never_replies())
        })
        .steps(WITHIN_300MS),
        Case::new("flood", || Box::pin(hostile_servers::floods())),
        Case::new("flood-long-lines-unread", || {
            Box::pin(hostile_servers::floods_long_lines(Arc::default()))
        })
        .steps(
            r#"
  - C -> S: GET colour
  - sleep: 2s
  - S -> C: GET blue
"#,
        ),
        Case::new("flood-answered", || Box::pin(hostile_servers::floods()))
            .suite("background:\n  - { on: junk, reply: ok }\n")
            .steps(
                r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 2s }
"#,
            ),
        Case::new("huge-line-small-limit", || {
            Box::pin(hostile_servers::endless_line(10 << 20))
        })
        .recv_limit("65536"),
        Case::new("huge-line-default-limit", || {
            Box::pin(hostile_servers::endless_line(10 << 20))
        }),
        Case::new("reset", || Box::pin(hostile_servers::resets_after(b""))),
        Case::new("reset-mid-message", || {
            Box::pin(hostile_servers::resets_after(b"GET bl"))
        }),
        Case::new("close-at-once", || {
            Box::pin(hostile_servers::closes_at_accept())
        }),
        Case::new("reset-in-handshake", || {
            Box::pin(hostile_servers::resets_in_handshake())
        }),
        Case::new("close-after-handshake", || {
            Box::pin(hostile_servers::closes_after_handshake())
        }),
        Case::new("drip-deadline", || {
            Box::pin(hostile_servers::drips(b"GET blue\n"))
        })
        .steps(
            r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 500ms }
"#,
        ),
        Case::new("drip-quiet", || {
            Box::pin(hostile_servers::drips(b"GET blue\n"))
        })
        .suite("quiet: 50ms\n"),
        Case::new("drip-ok", || {
            Box::pin(hostile_servers::drips(b"GET blue\n"))
        })
        .suite("quiet: 1s\n")
        .steps(
            r#"
  - C -> S: GET colour
  - expect: { text: GET blue, within: 5s }
"#,
        ),
        Case::new("plain-tcp", || Box::pin(hostile_servers::plain_tcp())),
        Case::new("binary", || {
            Box::pin(hostile_servers::replies_once(b"GET \xff\x00\xfe blue\n"))
        }),
        Case {
            start: None,
            ..Case::new("nothing-listens", || {
                Box::pin(hostile_servers::never_replies())
            })
        },
        Case {
            trust: Trust::Other,
            ..Case::new("untrusted-cert", || {
                Box::pin(hostile_servers::never_replies())
            })
        },
        Case::new("half-message", || {
            Box::pin(hostile_servers::stops_mid_message())
        })
        .suite("quiet: 5s\n")
        .steps(WITHIN_300MS),
        Case::new("tls-garbage-handshake", || {
            Box::pin(hostile_servers::tls_garbage_handshake())
        }),
        Case::new("tls-short-handshake", || {
            Box::pin(hostile_servers::tls_short_handshake())
        })
        .connect_timeout("1s"),
        Case::new("tls-corrupt-record", || {
            Box::pin(hostile_servers::tls_corrupt_record())
        }),
        Case::new("wrong-connection", || {
            Box::pin(hostile_servers::answers_the_latest_connection())
        })
        .steps(hostile_servers::TWO_SESSIONS),
        Case::new("nul", || {
            Box::pin(hostile_servers::replies_once(b"PUT: O\0K\n"))
        })
        .steps(
            r#"
  - C -> S: "PUT colour\nblue"
  - S -> C: "PUT: OK"
"#,
        ),
        Case::new("not-utf8", || {
            Box::pin(hostile_servers::replies_once(b"CONNECT: \xff\xfeOK\n"))
        })
        .steps(
            r#"
  - C -> S: CONNECT alice
  - S -> C: "CONNECT: OK"
"#,
        ),
    ]
}

fn main() -> ExitCode {
    if std::env::var_os(MEASURE_ENV).is_some() {
        return measure();
    }
    // `cargo bench` passes `--bench`; listing the benchmarks runs nothing.
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    match battery() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile_rss: {e}");
            ExitCode::from(2)
        }
    }
}

/// The peak RSS of one case's run, and what the harness printed about it.
struct Measured {
    name: &'static str,
    max_rss_kib: u64,
    exit: String,
    outcome: String,
    wall: Duration,
}

fn battery() -> Result<(), String> {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_harness"));
    if !harness.exists() {
        return Err(format!(
            "{} is missing: cargo build --release -p harness",
            harness.display()
        ));
    }
    // The targets run on the worker threads while the main thread waits for each child.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let started = Instant::now();
    let mut measured = Vec::new();
    for case in cases() {
        let (addr, target) = runtime.block_on(start(&case));
        let m = run_case(&harness, dir.path(), &case, addr)?;
        drop(target);
        println!(
            "{:<24} peak RSS {:>6.1} MB  exit {:<3} {:>6} ms  {}",
            m.name,
            mb(m.max_rss_kib),
            m.exit,
            m.wall.as_millis(),
            m.outcome
        );
        measured.push(m);
    }
    let Some(max) = measured.iter().max_by_key(|m| m.max_rss_kib) else {
        return Err(String::from("no case ran"));
    };
    let peak = mb(max.max_rss_kib);
    let verdict = if peak <= TARGET_MB { "within" } else { "over" };
    println!(
        "\n{} cases in {:.1}s; largest: {}",
        measured.len(),
        started.elapsed().as_secs_f64(),
        max.name
    );
    println!("peak RSS max {peak:.1} MB (target {TARGET_MB:.0} MB): {verdict}");
    Ok(())
}

/// Starts the case's target; with nothing to start, an address nothing listens on. The
/// target, if any, lives as long as the returned value.
async fn start(case: &Case) -> (SocketAddr, Option<Target>) {
    match case.start {
        Some(start) => {
            let target = start().await;
            (target.addr, Some(target))
        }
        None => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            let addr = listener.local_addr().expect("the port's address");
            (addr, None)
        }
    }
}

/// Writes the case's suite, runs `harness run` on it through a measuring copy of this bench,
/// and returns the child's peak RSS and the outcome line of its report.
fn run_case(harness: &Path, dir: &Path, case: &Case, addr: SocketAddr) -> Result<Measured, String> {
    let suite = dir.join(case.name);
    let io = |e: std::io::Error| format!("{}: {e}", suite.display());
    std::fs::create_dir_all(&suite).map_err(io)?;
    std::fs::write(
        suite.join("suite.yaml"),
        format!("protocol: kv\ntimeout: 1s\n{}", case.suite),
    )
    .map_err(io)?;
    std::fs::write(
        suite.join(format!("{}.yaml", case.name)),
        format!("id: hostile/{}\nsteps:{}", case.name, case.steps),
    )
    .map_err(io)?;

    let mut args: Vec<String> = vec![
        harness.display().to_string(),
        "run".into(),
        suite.display().to_string(),
        "--target".into(),
        addr.to_string(),
        "--jobs".into(),
        "1".into(),
        "--connect-timeout".into(),
        case.connect_timeout.into(),
    ];
    if let Some(limit) = case.recv_limit {
        args.extend(["--recv-limit".into(), limit.into()]);
    }
    match case.trust {
        Trust::Any => args.push("--insecure".into()),
        Trust::Other => {
            let other = reference_impl::tls::self_signed(&["127.0.0.1".to_owned()])
                .map_err(|e| format!("cannot make a certificate: {e}"))?;
            let ca = suite.join("other-ca.pem");
            std::fs::write(&ca, &other.cert_pem).map_err(io)?;
            args.extend(["--ca".into(), ca.display().to_string()]);
        }
    }

    let me = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let began = Instant::now();
    let output = Command::new(me)
        .args(&args)
        .env(MEASURE_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the measuring child: {e}"))?;
    let wall = began.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = stderr
        .lines()
        .find_map(|l| l.strip_prefix(MEASURE_LINE))
        .ok_or_else(|| format!("`{}` reported no RSS:\n{stderr}", case.name))?;
    let (kib, exit) = report.split_once(" exit=").unwrap_or((report, "?"));
    let max_rss_kib = kib
        .parse()
        .map_err(|e| format!("`{}`: bad RSS {kib:?}: {e}", case.name))?;
    Ok(Measured {
        name: case.name,
        max_rss_kib,
        exit: exit.to_owned(),
        outcome: outcome(&stdout, &stderr),
        wall,
    })
}

/// The scenario's status line and the first error of the human report, on one line; without
/// a status line, the first line of the harness's stderr.
fn outcome(report: &str, stderr: &str) -> String {
    let Some(status) = report
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" hostile/"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    else {
        let first = stderr.lines().next().unwrap_or_default();
        return format!("(no status line) {first}");
    };
    match report.lines().find_map(|l| l.strip_prefix("error: ")) {
        Some(error) => format!("{status}: {error}"),
        None => status,
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// In the measuring copy: runs the command in the arguments, killed after [`HANG_GUARD`],
/// and prints its peak RSS. Its output goes where this copy's goes.
fn measure() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("{MEASURE_ENV} set, but no command to run");
        return ExitCode::from(2);
    };
    let mut child = match Command::new(program)
        .args(rest)
        .env_remove(MEASURE_ENV)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start {program}: {e}");
            return ExitCode::from(2);
        }
    };
    let poll = Duration::from_millis(20);
    let mut status = None;
    for _ in 0..HANG_GUARD.as_millis() / poll.as_millis() {
        match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                break;
            }
            Ok(None) => std::thread::sleep(poll),
            Err(e) => {
                eprintln!("waiting for {program}: {e}");
                break;
            }
        }
    }
    let exit = match status {
        Some(s) => s.code().map_or_else(|| s.to_string(), |c| c.to_string()),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            format!("killed after {HANG_GUARD:?}")
        }
    };
    // Only the child was waited for, so this is its peak.
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => {
            eprintln!("{MEASURE_LINE}{} exit={exit}", usage.max_rss());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("getrusage: {e}");
            ExitCode::from(2)
        }
    }
}
