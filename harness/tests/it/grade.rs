//! `harness grade` on a class of fake submissions built from the reference KV server: two
//! correct ones, one with a single injected bug each, one that crashes on its first PUT, one
//! that hangs after a login, one that never opens its port, one that floods stderr. The sheet
//! must give each exactly the points it deserves, and every outcome must be the right kind.
//!
//! The submissions run `reference kv-server`, which `cargo test --workspace` builds beside
//! the `harness` binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;

/// The `reference` binary next to the `harness` binary under test.
pub(crate) fn reference_bin() -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_harness"));
    let dir = harness.parent().expect("the binary's folder");
    let bin = dir.join(format!("reference{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p reference-impl` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A submission: its folder name and the line that starts its server (`$1` is the port,
/// `$REF` the reference binary).
const CLASS: &[(&str, &str)] = &[
    (
        "alice-correct",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1"#,
    ),
    (
        "bob-correct",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1"#,
    ),
    (
        "carol-put-keeps-old-value",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault put-keeps-old-value"#,
    ),
    (
        "dave-wrong-crc",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault wrong-crc"#,
    ),
    (
        "erin-delete-keeps-key",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault delete-keeps-key"#,
    ),
    (
        "frank-accept-any-password",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault accept-any-password"#,
    ),
    (
        "grace-duplicate-session",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault allow-duplicate-session"#,
    ),
    (
        "heidi-no-close-after-disconnect",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault no-close-after-disconnect"#,
    ),
    (
        "ivan-crash-on-put",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --crash-on-put"#,
    ),
    (
        "judy-hang-after-login",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --freeze-after-login"#,
    ),
    ("mallory-never-listens", "echo starting up; sleep 60"),
    (
        "niaj-noisy-stderr",
        r#"i=0; while [ $i -lt 5000 ]; do echo "debug: line $i of noise" >&2; i=$((i+1)); done
exec "$REF" kv-server --listen 127.0.0.1:$1"#,
    ),
    (
        "olivia-signed-crc",
        r#"exec "$REF" kv-server --listen 127.0.0.1:$1 --fault signed-crc"#,
    ),
];

fn make_class(root: &Path) -> PathBuf {
    let subs = root.join("subs");
    for (name, line) in CLASS {
        let dir = subs.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("run.sh"), format!("#!/bin/sh\n{line}\n")).unwrap();
    }
    subs
}

#[test]
fn a_class_is_graded_exactly() {
    let root = tempfile::tempdir().unwrap();
    let subs = make_class(root.path());
    let out = root.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(support::root())
        .env("REF", reference_bin())
        .args(["grade", "scenarios/kv", "--submissions"])
        .arg(&subs)
        .args([
            "--exec",
            "sh {dir}/run.sh {port}",
            "--restart",
            "per-scenario",
            "--jobs",
            "2",
            "--scenario-jobs",
            "8",
            "--startup-timeout",
            "2s",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");

    let grade: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("grade.json")).unwrap()).unwrap();
    let mut table = BTreeMap::new();
    for s in grade["submissions"].as_array().unwrap() {
        let sum = &s["summary"];
        let n = |k: &str| sum[k].as_u64().unwrap();
        table.insert(
            s["submission"].as_str().unwrap().to_owned(),
            (
                n("points"),
                n("max_points"),
                n("failed") + n("timed_out") + n("errors"),
                n("crashed"),
                n("hung"),
                n("did_not_start"),
            ),
        );
    }
    // (points, max, failed + timed out + errors, crashed, hung, did not start)
    let expected: BTreeMap<String, (u64, u64, u64, u64, u64, u64)> = [
        ("alice-correct", (33, 33, 0, 0, 0, 0)),
        ("bob-correct", (33, 33, 0, 0, 0, 0)),
        ("carol-put-keeps-old-value", (32, 33, 1, 0, 0, 0)),
        ("dave-wrong-crc", (21, 33, 12, 0, 0, 0)),
        ("erin-delete-keeps-key", (32, 33, 1, 0, 0, 0)),
        ("frank-accept-any-password", (31, 33, 2, 0, 0, 0)),
        ("grace-duplicate-session", (32, 33, 1, 0, 0, 0)),
        ("heidi-no-close-after-disconnect", (32, 33, 1, 0, 0, 0)),
        ("ivan-crash-on-put", (12, 33, 0, 21, 0, 0)),
        ("judy-hang-after-login", (5, 33, 0, 0, 28, 0)),
        ("mallory-never-listens", (0, 33, 0, 0, 0, 33)),
        ("niaj-noisy-stderr", (33, 33, 0, 0, 0, 0)),
        ("olivia-signed-crc", (23, 33, 10, 0, 0, 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(table, expected, "{stdout}");

    // The sheet and a student's reports are there and say the same.
    let sheet = std::fs::read_to_string(out.join("sheet.csv")).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(support::root().join("snapshots/harness"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("grade_class_sheet", sheet));
    assert!(
        sheet.starts_with("submission,points,max_points,"),
        "{sheet}"
    );
    assert!(sheet.contains("\ndave-wrong-crc,21,33,"), "{sheet}");
    for name in [
        "dave-wrong-crc",
        "ivan-crash-on-put",
        "mallory-never-listens",
    ] {
        for file in ["report.md", "report.html", "results.json", "report.json"] {
            let path = out.join(name).join(file);
            assert!(path.exists(), "{} missing", path.display());
        }
    }
}

fn harness_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.current_dir(support::root()).env("REF", reference_bin());
    c
}

/// `harness run --exec` starts the server itself, per suite and per scenario.
#[test]
fn run_exec_starts_and_stops_the_target() {
    for restart in ["per-suite", "per-scenario"] {
        let o = harness_cmd()
            .args([
                "run",
                "scenarios/mathsvc",
                "-q",
                "--restart",
                restart,
                "--exec",
            ])
            .arg(r#""$REF" mathsvc-server --port {port}"#)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{restart}: {stdout}");
        assert!(stdout.contains("15 passed"), "{stdout}");
        assert!(stdout.contains("started by the harness"), "{stdout}");
    }
    // A server that is wrong fails as it does against --target; one that crashes is told.
    let o = harness_cmd()
        .args(["run", "scenarios/mathsvc/fibonacci.yaml", "--exec"])
        .arg(r#"echo "fatal: cannot bind" >&2; exit 7 # {port}"#)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NOSTART mathsvc/fibonacci"), "{stdout}");
    assert!(
        stdout.contains("the target ended (exit code 7) before it accepted a connection"),
        "{stdout}"
    );
    assert!(stdout.contains("stderr | fatal: cannot bind"), "{stdout}");
}

/// Shards grade disjoint parts of a class; `harness merge` makes the sheet of the whole.
#[test]
fn shards_merge_into_the_whole_sheet() {
    let root = tempfile::tempdir().unwrap();
    let subs = root.path().join("subs");
    for (name, flags) in [
        ("a", ""),
        ("b", "--fault fib-off-by-one"),
        ("c", "--fault uuid-wrong-name"),
        ("d", ""),
        ("e", "--fault answers-with-newline"),
    ] {
        std::fs::create_dir_all(subs.join(name)).unwrap();
        std::fs::write(
            subs.join(name).join("run.sh"),
            format!("exec \"$REF\" mathsvc-server --port $1 {flags}\n"),
        )
        .unwrap();
    }
    let grade = |out: &Path, shard: Option<&str>| {
        let mut c = harness_cmd();
        c.args(["grade", "scenarios/mathsvc", "-q", "--submissions"])
            .arg(&subs)
            .args([
                "--exec",
                "sh {dir}/run.sh {port}",
                "--jobs",
                "3",
                "--output",
            ])
            .arg(out);
        if let Some(s) = shard {
            c.args(["--shard", s]);
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let whole = root.path().join("whole");
    grade(&whole, None);
    let (one, two) = (root.path().join("one"), root.path().join("two"));
    grade(&one, Some("1/2"));
    grade(&two, Some("2/2"));
    let merged = root.path().join("merged");
    let o = harness_cmd()
        .arg("merge")
        .arg(one.join("grade.json"))
        .arg(two.join("grade.json"))
        .arg("--output")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let sheet = read(whole.join("sheet.csv"));
    assert_eq!(read(merged.join("sheet.csv")), sheet);
    assert_eq!(sheet.lines().count(), 6, "{sheet}");
    let one_sheet = read(one.join("sheet.csv"));
    assert!(one_sheet.contains("\na,") && one_sheet.contains("\nc,") && one_sheet.contains("\ne,"));
    assert!(!one_sheet.contains("\nb,"), "{one_sheet}");
    assert!(sheet.contains("\na,15,15,"), "{sheet}");
    assert!(!sheet.contains("\nb,15,15,"), "{sheet}");
}

/// For a suite that plays the server, `--exec` starts each student's *client*.
#[test]
fn clients_are_graded_with_a_server_suite() {
    let root = tempfile::tempdir().unwrap();
    let subs = root.path().join("subs");
    for (name, extra) in [("good", ""), ("bad", " --fault drops-last-byte")] {
        std::fs::create_dir_all(subs.join(name)).unwrap();
        std::fs::write(
            subs.join(name).join("client.sh"),
            format!(
                "exec \"$REF\" packet-client --host $1 --port $2 --studentID $3 --keyword test{extra}\n"
            ),
        )
        .unwrap();
    }
    let out = root.path().join("out");
    let o = harness_cmd()
        .args(["grade", "scenarios/packet-client", "-q", "--submissions"])
        .arg(&subs)
        .args([
            "--exec",
            "sh {dir}/client.sh {host} {port} {sid}",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sheet = std::fs::read_to_string(out.join("sheet.csv")).unwrap();
    assert!(sheet.contains("\ngood,8,8,8,0,"), "{sheet}");
    assert!(sheet.contains("\nbad,2,8,2,6,"), "{sheet}");
}
