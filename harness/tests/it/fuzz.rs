//! `harness fuzz` against servers with one deliberate bug the suites do not cover: each is
//! found within a bounded number of cases, shrunk to a handful of actions, and the written
//! reproducer fails when `harness run` replays it (and passes against the reference).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::fuzz::{self, FuzzOptions, FuzzReport, Oracle, TargetChoice};
use harness::protocol::{self, ReferenceServer};
use harness::report::Tee;
use harness::run::{self, RunOptions};
use reference_impl::chat::sabotage::Sabotage as ChatSabotage;
use reference_impl::kv::server::{Sabotage, ServerConfig};

/// Most cases a test may need to find its bug.
const CASES: u64 = 300;
/// Actions a shrunk reproducer may keep (the happy flow comes on top).
const HANDFUL: usize = 5;

fn options(protocol: &str, target: TargetChoice, out: &Path) -> FuzzOptions {
    FuzzOptions {
        protocol: protocol.into(),
        target,
        seed: 1,
        cases: Some(CASES),
        out: out.to_owned(),
        max_findings: 1,
        ..FuzzOptions::default()
    }
}

fn at(server: &ReferenceServer) -> TargetChoice {
    TargetChoice::Address {
        addr: server.addr.to_string(),
        ca: None,
        insecure: true,
        server_name: None,
    }
}

async fn fuzz_quietly(opts: &FuzzOptions) -> FuzzReport {
    fuzz::fuzz(opts, &mut |_| {})
        .await
        .expect("the fuzzer runs")
}

/// The run's one finding, checked: found within the budget, shrunk to a handful of
/// actions, its file a scenario with the seed in its `meta:`.
fn the_finding(report: &FuzzReport, oracles: &[Oracle]) -> fuzz::Finding {
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    let f = report.findings[0].clone();
    assert!(oracles.contains(&f.verdict.oracle), "{f:#?}");
    assert!(f.case < CASES);
    assert!(f.shrunk, "{f:#?}");
    assert!(f.actions_shrunk <= HANDFUL, "{}", f.yaml);
    assert!(f.yaml.contains("seed: \"1\""), "{}", f.yaml);
    assert!(
        f.yaml.contains(&format!("case: \"{}\"", f.case)),
        "{}",
        f.yaml
    );
    f
}

/// Replays the findings folder with `harness run` against `target` (`None`: the built-in
/// reference server); returns how many scenarios passed and how many ran.
async fn replay(out: &Path, target: Option<String>) -> (usize, usize) {
    let suites = harness::load::load(&[out.to_owned()]).expect("the findings load");
    let opts = RunOptions {
        target,
        insecure: true,
        ..RunOptions::default()
    };
    let report = run::run(&suites, &opts, &mut Tee(Vec::new()))
        .await
        .expect("the replay runs");
    let passed = report
        .results
        .iter()
        .filter(|r| r.outcome == run::Outcome::Passed)
        .count();
    (passed, report.results.len())
}

#[tokio::test]
async fn the_reference_server_gives_no_findings() {
    for (name, cases) in [("kv", 60), ("chat", 60), ("packet", 60), ("mathsvc", 30)] {
        let out = tempfile::tempdir().unwrap();
        let mut opts = options(name, TargetChoice::Reference, out.path());
        opts.cases = Some(cases);
        let report = fuzz_quietly(&opts).await;
        assert_eq!(report.cases, cases);
        assert!(
            report.findings.is_empty() && report.unconfirmed == 0,
            "{name}: {report:#?}"
        );
    }
}

/// A KV server with one sabotage, in this process.
async fn kv_server_with(sabotage: Sabotage) -> ReferenceServer {
    let config = ServerConfig {
        sabotage,
        ..ServerConfig::default()
    };
    protocol::kv::start_with(config, "sabotaged").await.unwrap()
}

/// Fuzzes `server` (which has one bug) and returns its one finding, checked as
/// [`the_finding`] does, once the written folder replays: failing against `server`, passing
/// against the reference server.
async fn found_and_replayed(
    protocol: &str,
    server: ReferenceServer,
    oracles: &[Oracle],
) -> fuzz::Finding {
    let out = tempfile::tempdir().unwrap();
    let report = fuzz_quietly(&options(protocol, at(&server), out.path())).await;
    let f = the_finding(&report, oracles);
    let target = Some(server.addr.to_string());
    assert_eq!(replay(out.path(), target).await, (0, 1), "{}", f.yaml);
    assert_eq!(replay(out.path(), None).await, (1, 1), "{}", f.yaml);
    server.stop().await;
    f
}

#[tokio::test]
async fn a_wrong_crc_for_values_with_spaces_is_found() {
    let server = kv_server_with(Sabotage {
        wrong_crc_with_spaces: true,
        ..Sabotage::NONE
    })
    .await;
    let f = found_and_replayed("kv", server, &[Oracle::Differs, Oracle::Alive]).await;
    assert!(f.verdict.label.starts_with("GET"), "{f:#?}");
    assert!(f.verdict.message.contains("expected \""), "{f:#?}");
}

#[tokio::test]
async fn a_session_leaked_after_junk_is_found() {
    let server = kv_server_with(Sabotage {
        leak_session_after_junk: true,
        ..Sabotage::NONE
    })
    .await;
    let f = found_and_replayed("kv", server, &[Oracle::Alive, Oracle::Differs]).await;
    // The new login of the junk sender's id is refused.
    assert!(
        f.verdict.label.starts_with("hash") || f.verdict.label.starts_with("CONNECT"),
        "{f:#?}"
    );
    assert!(
        f.yaml.contains("junk") || f.yaml.contains("expect_close"),
        "{}",
        f.yaml
    );
}

/// Also the snapshot of a written reproducer.
#[tokio::test]
async fn a_chat_server_that_panics_on_a_non_ascii_name_is_found() {
    let config = reference_impl::chat::server::ServerConfig {
        sabotage: ChatSabotage {
            panic_on_non_ascii_name: true,
        },
        game_time_limit: Duration::from_secs(5),
        ..Default::default()
    };
    let server = protocol::chat::start_with(config, "panics on non-ASCII names")
        .await
        .unwrap();
    let f = found_and_replayed("chat", server, &[Oracle::Differs]).await;
    assert!(f.verdict.label.starts_with("LOGIN"), "{f:#?}");
    snapshots().bind(|| insta::assert_snapshot!("fuzz_chat_finding", f.yaml));
}

#[tokio::test]
async fn a_packet_server_that_takes_a_bad_checksum_is_found() {
    use reference_impl::packet::fault::Fault;
    let server = crate::support::packet_server(&[Fault::AcceptsBadChecksum]).await;
    let f = found_and_replayed("packet", server, &[Oracle::Spec, Oracle::Differs]).await;
    // Instead of a CKSM error packet, the stream.
    assert!(f.yaml.contains("keyword: \"CKSM\""), "{}", f.yaml);
}

#[tokio::test]
async fn a_math_service_whose_factorials_overflow_is_found() {
    use reference_impl::mathsvc::fault::Fault;
    let server = crate::support::mathsvc_server(&[Fault::FactorialOverflowsU64]).await;
    let f = found_and_replayed("mathsvc", server, &[Oracle::Differs]).await;
    assert!(f.verdict.label.starts_with("FACTORIAL"), "{f:#?}");
    // The answers carry the UUID of the connection's address, as an expression.
    assert!(f.yaml.contains("{{uuid3(local_addr_C1)}}"), "{}", f.yaml);
}

/// The server dies on a line over 1,000 bytes: the harness starts it (`--exec`), restarts
/// it for every shrinking trial, and the reproducer crashes it again under `harness run
/// --exec`.
#[test]
fn a_server_that_dies_on_a_long_line_is_found_through_the_command_line() {
    let reference = crate::grade::reference_bin();
    let command = format!(
        "{} kv-server --listen 127.0.0.1:{{port}} --die-on-long-line",
        reference.display()
    );
    let out = tempfile::tempdir().unwrap();
    let findings = out.path().join("found");
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "fuzz",
            "--protocol",
            "kv",
            "--seed",
            "1",
            "--max-findings",
            "1",
        ])
        .args(["--cases", &CASES.to_string(), "--exec", &command, "--out"])
        .arg(&findings)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("finding: crash at "), "{stdout}");
    assert!(stdout.contains("exit code 101"), "{stdout}");
    let files: BTreeMap<String, String> = std::fs::read_dir(&findings)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:#?}");
    let (_, reproducer) = files.iter().find(|(n, _)| n.starts_with("crash-")).unwrap();
    let sends = reproducer.matches("send:").count();
    assert!(sends <= HANDFUL + 5, "{reproducer}");

    let replay = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("run")
        .arg(&findings)
        .args(["--exec", &command])
        .output()
        .unwrap();
    let replayed = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(1), "{replayed}");
    assert!(replayed.contains("crashed"), "{replayed}");
    let clean = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("run")
        .arg(&findings)
        .output()
        .unwrap();
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(crate::support::root())
        .env("COLUMNS", "100")
        .output()
        .unwrap()
}

fn snapshots() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(crate::support::root().join("snapshots/harness"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.add_filter(r"127\.0\.0\.1:\d+", "[addr]");
    s.add_filter(r"in \d+\.\ds \(\d+\.\d cases/s\)", "in [t] ([rate])");
    s.add_filter(r"/tmp/\.tmp\w+", "[tmp]");
    s
}

#[test]
fn fuzz_help_teaches() {
    let o = cli(&["fuzz", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    snapshots()
        .bind(|| insta::assert_snapshot!("cli_fuzz_help", String::from_utf8_lossy(&o.stdout)));
}

#[test]
fn fuzz_setup_errors_are_clear() {
    let out = tempfile::tempdir().unwrap();
    let chat_out = out.path().join("chat");
    std::fs::create_dir_all(&chat_out).unwrap();
    std::fs::write(chat_out.join("suite.yaml"), "protocol: chat\n").unwrap();
    let chat_out = chat_out.to_string_lossy().into_owned();
    let cases: &[&[&str]] = &[
        &["fuzz", "--protocol", "ftp"],
        &["fuzz", "--protocol", "kv-rsa"],
        &["fuzz", "--protocol", "kv", "--target", "127.0.0.1:9"],
        &["fuzz", "--protocol", "chat", "--target", "127.0.0.1:9"],
        &["fuzz", "--protocol", "kv", "--exec", "./server"],
        &["fuzz", "--protocol", "kv", "--cases", "0"],
        &[
            "fuzz",
            "--protocol",
            "kv",
            "--cases",
            "3",
            "--out",
            &chat_out,
        ],
        &[
            "fuzz",
            "--protocol",
            "kv",
            "--target",
            "127.0.0.1:9",
            "--exec",
            "x {port}",
        ],
    ];
    let mut text = String::new();
    for args in cases {
        let o = cli(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let shown: Vec<&str> = args
            .iter()
            .map(|a| if *a == chat_out { "[chat findings]" } else { a })
            .collect();
        let err = String::from_utf8_lossy(&o.stderr).replace(&chat_out, "[chat findings]");
        text.push_str(&format!("$ harness {}\n{err}\n", shown.join(" ")));
    }
    snapshots().bind(|| insta::assert_snapshot!("cli_fuzz_setup_errors", text));
}

#[test]
fn fuzzing_the_reference_from_the_command_line_finds_nothing() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("found").to_string_lossy().into_owned();
    let o = cli(&[
        "fuzz",
        "--protocol",
        "chat",
        "--cases",
        "10",
        "--seed",
        "3",
        "--out",
        &dir,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    snapshots().bind(|| {
        insta::assert_snapshot!("cli_fuzz_reference", String::from_utf8_lossy(&o.stdout));
    });
}

/// A server the harness did not start dies: its finding is written unshrunk (it cannot be
/// restarted for trials) and the run stops, saying how to let the harness restart it.
#[test]
fn a_target_that_dies_at_an_address_ends_the_run() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(crate::grade::reference_bin())
        .args(["kv-server", "--listen", &addr, "--die-on-long-line"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("found").to_string_lossy().into_owned();
    let o = cli(&[
        "fuzz",
        "--protocol",
        "kv",
        "--seed",
        "1",
        "--cases",
        "300",
        "--insecure",
        "--target",
        &addr,
        "--out",
        &dir,
    ]);
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("finding: down at "), "{stdout}");
    assert!(
        stdout.contains("not shrunk (the target cannot be restarted)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopped early: the target at 127.0.0.1:")
            && stdout.contains("give its command with --exec"),
        "{stdout}"
    );
}
