//! The `harness` binary as a user runs it: exit codes, what it prints, `--help`.

use std::process::{Command, Output};

use crate::support;

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(support::root())
        .env("COLUMNS", "100")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(support::root().join("snapshots/harness"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.add_filter(r"127\.0\.0\.1:\d+", "[addr]");
    s.add_filter(r"\d+ ms", "[ms]");
    s.add_filter(r"\d+\.\d{3}s  ", "[t]  ");
    s.add_filter(r"(points \d+/\d+); .*", "$1; [duration]");
    s.add_filter(r"\(\d+ at a time\)", "([jobs] at a time)");
    s
}

/// A scratch folder under the system temp dir, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("harness-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn run_against_the_reference_server_exits_0() {
    let o = harness(&["run", "scenarios/kv", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(" passed, 0 failed, 0 timed out, 0 errors"));
}

#[test]
fn json_report_has_the_documented_shape() {
    let o = harness(&["run", "scenarios/kv/login-ok.yaml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["summary"]["total"], 1);
    assert_eq!(v["summary"]["passed"], 1);
    assert_eq!(v["scenarios"][0]["id"], "kv/login/ok");
    assert_eq!(v["scenarios"][0]["outcome"], "passed");
    assert_eq!(v["scenarios"][0]["file"], "scenarios/kv/login-ok.yaml");
}

#[test]
fn json_to_a_file_keeps_the_human_report_on_stdout() {
    let dir = Scratch::new("json-output");
    let out = dir.0.join("report.json");
    let o = harness(&[
        "run",
        "scenarios/kv/login-ok.yaml",
        "--format",
        "json",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 scenario: 1 passed"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["summary"]["passed"], 1);
}

#[test]
fn a_target_that_is_not_listening_is_an_error_outcome_and_exit_1() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let o = harness(&[
        "run",
        "scenarios/kv/login-ok.yaml",
        "--target",
        &target,
        "--insecure",
    ]);
    assert_eq!(o.status.code(), Some(1));
    settings().bind(|| insta::assert_snapshot!("cli_target_refused", stdout(&o)));
}

#[test]
fn scenario_file_errors_exit_2_with_file_line_col() {
    let dir = Scratch::new("check");
    dir.write("suite.yaml", "protocol: kv\n");
    dir.write(
        "bad.yaml",
        "id: kv/bad\nsteps:\n  - C -> S: CONNECT {{user}}\n  - S -> C: CONNECT: OK\n",
    );
    let o = harness(&["check", dir.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let text = stderr(&o).replace(&dir.0.display().to_string(), "[dir]");
    settings().bind(|| insta::assert_snapshot!("cli_check_errors", text));
}

/// The kv-rsa options check out in a kv-rsa suite; `key` in a suite of another protocol
/// is an error at its `file:line:col`, before anything runs.
#[test]
fn rsa_options_are_checked_against_the_protocol() {
    let rsa = Scratch::new("check-rsa");
    rsa.write("suite.yaml", "protocol: kv-rsa\n");
    rsa.write(
        "keys.yaml",
        r#"id: kv-rsa/keys
steps:
  - connect: { conn: N, key: none }
  - connect: { conn: W, key: "{{rsa_key(1024)}}" }
  - C -> S: CONNECT u{{uniq}}
  - send: { bytes: "{{pbkdf2('pw')}}", clear: "{{hash_in_clear}}" }
  - send: { bytes: "{{pbkdf2('pw')}}", clear: true }
"#,
    );
    let o = harness(&["check", rsa.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: 1 scenario in 1 suite\n");

    let kv = Scratch::new("check-rsa-on-kv");
    kv.write("suite.yaml", "protocol: kv\n");
    kv.write(
        "keys.yaml",
        "id: kv/keys\nsteps:\n  - connect: { conn: N, key: none }\n  - send: { text: x, clear: true }\n",
    );
    let o = harness(&["check", kv.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let text = stderr(&o).replace(&kv.0.display().to_string(), "[dir]");
    settings().bind(|| insta::assert_snapshot!("cli_check_rsa_key_on_kv", text));
    // `run` checks it before it starts anything.
    let o = harness(&["run", kv.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

#[test]
fn unknown_variables_are_caught_before_anything_runs() {
    let dir = Scratch::new("vars");
    dir.write("suite.yaml", "protocol: kv\nvars:\n  password: secret\n");
    dir.write(
        "typo.yaml",
        "id: kv/typo\nsteps:\n  - C -> S: CONNECT {{pasword}}\n",
    );
    let o = harness(&["run", dir.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let text = stderr(&o).replace(&dir.0.display().to_string(), "[dir]");
    settings().bind(|| insta::assert_snapshot!("cli_unknown_variable", text));
    // Given on the command line, the same variable is known.
    let o = harness(&["check", dir.0.to_str().unwrap(), "--var", "pasword=x"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 8] = [
        &["run", "scenarios/kv", "--var", "novalue"],
        &["run", "no/such/folder"],
        &["run", "scenarios/kv", "--jobs", "0"],
        &["run", "scenarios/kv", "--profile", "nosuch"],
        &["run", "scenarios/kv", "--timeout", "5 parsecs"],
        &["run", "scenarios/kv", "--recv-limit", "3x"],
        &["run", "scenarios/kv", "--recv-limit", "0"],
        &["run", "scenarios/mathsvc", "--exec", "./server"],
    ];
    let mut text = String::new();
    for args in cases {
        let o = harness(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        text.push_str(&format!("$ harness {}\n{}\n", args.join(" "), stderr(&o)));
    }
    settings().bind(|| insta::assert_snapshot!("cli_usage_errors", text));
}

#[test]
fn run_help_teaches() {
    let o = harness(&["run", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    settings().bind(|| insta::assert_snapshot!("cli_run_help", stdout(&o)));
}

#[test]
fn a_tls_target_needs_a_trust_decision() {
    let o = harness(&["run", "scenarios/kv", "--target", "127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(2));
    settings().bind(|| insta::assert_snapshot!("cli_tls_without_trust", stderr(&o)));
}

#[test]
fn a_missing_path_is_named() {
    let o = harness(&["run", "scenarios/kvv"]);
    assert_eq!(o.status.code(), Some(2));
    settings().bind(|| insta::assert_snapshot!("cli_missing_path", stderr(&o)));
}

#[test]
fn serve_help_teaches() {
    let o = harness(&["serve", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    settings().bind(|| insta::assert_snapshot!("cli_serve_help", stdout(&o)));
}

#[test]
fn serve_the_packet_client_suite_to_the_built_in_client_exits_0() {
    let o = harness(&["serve", "scenarios/packet-client", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("8 passed, 0 failed"), "{}", stdout(&o));
}

#[test]
fn serve_setup_errors_exit_2() {
    let mut text = String::new();
    for args in [
        &["serve", "scenarios/kv"][..],
        &[
            "serve",
            "scenarios/packet-client",
            "--exec",
            "python3 client.py --host=127.0.0.1",
        ],
    ] {
        let o = harness(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        text.push_str(&format!("$ harness {}\n{}\n", args.join(" "), stderr(&o)));
    }
    settings().bind(|| insta::assert_snapshot!("cli_serve_errors", text));
}

/// The harness cannot play the server side of the RSA key exchange: a kv-rsa suite with
/// `role: server` is a setup error.
#[test]
fn serve_refuses_a_suite_that_needs_an_rsa_server() {
    let dir = Scratch::new("serve-rsa");
    dir.write("suite.yaml", "protocol: kv-rsa\nrole: server\n");
    dir.write(
        "login.yaml",
        "id: kv-rsa/client/login\nsteps:\n  - C -> S: CONNECT alice\n",
    );
    let o = harness(&["serve", dir.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let text = stderr(&o).replace(&dir.0.display().to_string(), "[dir]");
    settings().bind(|| insta::assert_snapshot!("cli_serve_rsa", text));
}

/// Clients that never get as far as the protocol: one that gives up at once, one that
/// never connects. Each is told apart in the report, with what the client printed.
#[test]
fn serve_reports_a_client_that_does_not_connect() {
    let mut text = String::new();
    for exec in [
        "echo cannot reach port {port} >&2; exit 3",
        "echo started; sleep 30 # {port}",
    ] {
        let o = harness(&[
            "serve",
            "scenarios/packet-client/error-packet.yaml",
            "--exec",
            exec,
            "--accept-timeout",
            "300ms",
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        text.push_str(&format!(
            "$ harness serve ... --exec '{exec}'\n{}\n",
            stdout(&o)
        ));
    }
    let mut s = settings();
    s.add_filter(r"port \d+", "port [port]");
    s.bind(|| insta::assert_snapshot!("cli_serve_client_not_connecting", text));
}

/// A scenario made of checkpoints earns the points of those it reached.
#[test]
fn checkpoints_give_partial_credit() {
    let dir = Scratch::new("checkpoints");
    dir.write("suite.yaml", "protocol: kv\n");
    dir.write(
        "partial.yaml",
        r#"id: scratch/partial
steps:
  - C -> S: CONNECT u{{uniq}}
  - send: { bytes: "{{pbkdf2('secret')}}" }
  - S -> C: "CONNECT: OK"
  - points: 2
  - C -> S: GET nothing-here
  - S -> C: "GET: SOMETHING ELSE"
  - points: 3
"#,
    );
    let path = dir.0.display().to_string();
    let o = harness(&["run", &path, "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["scenarios"][0]["outcome"], "failed");
    assert_eq!(v["scenarios"][0]["points"], 2);
    assert_eq!(v["scenarios"][0]["max_points"], 5);
    assert_eq!(v["summary"]["points"], 2);
}

#[test]
fn junit_and_tap_reports_on_stdout() {
    let o = harness(&["run", "scenarios/kv/login-ok.yaml", "--format", "junit"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let xml = stdout(&o);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(r#"<testcase name="kv/login/ok""#), "{xml}");
    let o = harness(&["run", "scenarios/kv/login-ok.yaml", "--format", "tap"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("TAP version 14\n1..1\nok 1 - kv/login/ok\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn list_filters_by_id_tag_and_level() {
    let o = harness(&[
        "list",
        "scenarios/kv",
        "--filter",
        "kv/get/*",
        "--level",
        "must",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let ids: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| id.starts_with("kv/get/")),
        "{out}"
    );
    let o = harness(&["list", "scenarios/chat", "--tag", "level2"]);
    assert!(
        stdout(&o).lines().skip(1).all(|l| l.contains("level2")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn grade_help_teaches() {
    let o = harness(&["grade", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    settings().bind(|| insta::assert_snapshot!("cli_grade_help", stdout(&o)));
}
