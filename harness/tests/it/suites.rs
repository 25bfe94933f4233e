//! The suites against the built-in reference servers, as `harness run scenarios/` runs them,
//! with each scenario's transcript kept as a snapshot under `snapshots/`.

use harness::report::human::{HumanOptions, HumanReporter};
use harness::report::json::JsonReporter;
use harness::run::{self, Outcome, RunOptions};

use crate::support;

fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(support::root().join("snapshots/transcripts"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    // The reference server's port changes from run to run.
    s.add_filter(r"127\.0\.0\.1:\d+", "[target]");
    // Whether a write is cut short by a target that closes while reading it is a race on
    // the wire; the transcript reports it, the snapshots leave it out.
    s.add_filter(r"(?m)^\S+ -> S  could not send: .*\n", "");
    s
}

/// `kv/get/with-crc` -> `kv__get__with-crc`.
fn snapshot_name(id: &str) -> String {
    id.replace('/', "__")
}

/// Runs the suite at `path` against its built-in reference server: every scenario passes,
/// there are at least `min` of them, and each transcript matches its snapshot.
async fn passes_and_transcripts_hold(path: &str, min: usize) {
    let suites = support::load(&[path]);
    let report = support::run(&suites, &RunOptions::default()).await;
    let problems: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| format!("{} {:?}: {:?}", r.id, r.outcome, r.failure))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        report.results.len() >= min,
        "{path} has at least {min} scenarios"
    );
    for r in &report.results {
        let redact = [(r.uniq.clone(), "{{uniq}}".to_owned())];
        let transcript = r.transcript.render(false, &redact);
        snapshot_settings().bind(|| {
            insta::assert_snapshot!(snapshot_name(&r.id), transcript);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_suite_passes_against_the_reference_server_and_its_transcripts_hold() {
    passes_and_transcripts_hold("scenarios/kv", 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_rsa_suite_passes_against_the_reference_server_and_its_transcripts_hold() {
    passes_and_transcripts_hold("scenarios/kv-rsa", 35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_suite_passes_in_the_course_dialect_with_its_profile() {
    let suites = support::load(&["scenarios/kv"]);
    let opts = RunOptions {
        profile: Some(support::profile("course", &suites)),
        jobs: 8,
        ..RunOptions::default()
    };
    let report = support::run(&suites, &opts).await;
    let problems: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| format!("{} {:?}: {:?}", r.id, r.outcome, r.failure))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Options for the chat suite in tests: replies get 2 s instead of the teachers' 100 ms,
/// because these tests share two cores with the rest of the test binary; `harness run
/// scenarios/` in CI checks the 100 ms as written.
fn chat_options() -> RunOptions {
    RunOptions {
        timeout: Some(std::time::Duration::from_secs(2)),
        ..RunOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_suite_passes_against_the_reference_server_and_its_transcripts_hold() {
    let suites = support::load(&["scenarios/chat"]);
    let report = support::run(&suites, &chat_options()).await;
    let problems: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| format!("{} {:?}: {:?}", r.id, r.outcome, r.failure))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(report.results.len() >= 50, "{}", report.results.len());
    let mut settings = snapshot_settings();
    // Transfer ids are derived from the run's unique value.
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uuid]",
    );
    // Game times are milliseconds of the run.
    settings.add_filter(r#"(\\"time_ms\\":)\d+"#, "$1[ms]");
    for r in &report.results {
        let redact = [(r.uniq.clone(), "{{uniq}}".to_owned())];
        // Without what background rules handled: other scenarios' broadcasts and the
        // heartbeat depend on timing.
        let transcript = r.transcript.render_steps(&redact);
        let mut settings = settings.clone();
        if r.id == "chat/level2/list-users" {
            // The list holds whoever else is logged in at the moment.
            settings.add_filter(r#"(?m)(\\"users\\":).*$"#, "$1[...]");
        }
        settings.bind(|| insta::assert_snapshot!(snapshot_name(&r.id), transcript));
    }
}

/// The teachers' dialect: everything passes but the JOINED scenario, which that server is
/// known to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_suite_in_the_teachers_dialect() {
    let suites = support::load(&["scenarios/chat/level1"]);
    let opts = RunOptions {
        profile: Some(support::profile("teachers-1.5", &suites)),
        ..chat_options()
    };
    let report = support::run(&suites, &opts).await;
    let not_passed: Vec<(String, Outcome)> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| (r.id.clone(), r.outcome))
        .collect();
    assert_eq!(
        not_passed,
        [("chat/level1/joined".to_owned(), Outcome::ExpectedFailure)],
        "{:#?}",
        report
            .results
            .iter()
            .filter(|r| r.outcome.is_problem())
            .map(|r| &r.failure)
            .collect::<Vec<_>>()
    );
    assert_eq!(report.exit_code(true), 0);
}

/// The human and JSON reports of a run with one failing scenario, as a person and a
/// grading tool see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_a_failing_run() {
    use reference_impl::kv::server::{Dialect, Fault};
    let server = support::kv_server(&[Fault::GetWithoutCrc], Dialect::Spec).await;
    let suites = support::load(&[
        "scenarios/kv/get-with-crc.yaml",
        "scenarios/kv/put-new.yaml",
    ]);
    let opts = RunOptions {
        jobs: 1,
        timeout: Some(std::time::Duration::from_millis(300)),
        ..support::against(&server)
    };
    let mut human = Vec::new();
    let mut json = Vec::new();
    let report = {
        let opts_h = HumanOptions {
            times: false,
            redact_uniq: true,
            verbose: true,
        };
        let mut h = HumanReporter::new(&mut human, opts_h);
        let mut j = JsonReporter::new(&mut json);
        let mut tee = harness::report::Tee(vec![&mut h, &mut j]);
        run::run(&suites, &opts, &mut tee).await.unwrap()
    };
    assert_eq!(report.exit_code(false), 1);
    let human = String::from_utf8(human)
        .unwrap()
        .replace(&server.addr.to_string(), "[target]");
    let mut json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let uniqs: Vec<String> = report.results.iter().map(|r| r.uniq.clone()).collect();
    redact_json(&mut json, &uniqs);
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(support::root().join("snapshots/harness"));
    s.set_prepend_module_to_snapshot(false);
    s.add_redaction(".summary.duration_ms", "[ms]");
    s.add_redaction(".scenarios[].duration_ms", "[ms]");
    s.add_redaction(".scenarios[].transcript[].t_ms", "[ms]");
    s.add_redaction(".scenarios[].transcript[].addr", "[target]");
    s.set_omit_expression(true);
    s.bind(|| {
        insta::assert_snapshot!("report_human_failing_run", human);
        insta::assert_json_snapshot!("report_json_failing_run", json);
    });
}

/// Replaces run-specific ids inside every string of a JSON value.
fn redact_json(v: &mut serde_json::Value, uniqs: &[String]) {
    match v {
        serde_json::Value::String(s) => {
            for u in uniqs {
                *s = s.replace(u.as_str(), "{{uniq}}");
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact_json(x, uniqs)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| redact_json(x, uniqs)),
        _ => {}
    }
}

/// The human report of chat scenarios failing on a JSON field of the wrong type, on a file
/// that arrives with one byte changed, and on a message to the wrong user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_a_failing_chat_run() {
    use reference_impl::chat::fault::Fault;
    let server = support::chat_server(&[
        Fault::CodesAsStrings,
        Fault::TransferCorruptsByte,
        Fault::PmToEveryone,
    ])
    .await;
    let suites = support::load(&[
        "scenarios/chat/level1/login-name-2-chars.yaml",
        "scenarios/chat/level2/private-message.yaml",
        "scenarios/chat/level3/transfer.yaml",
    ]);
    let opts = RunOptions {
        jobs: 1,
        timeout: Some(std::time::Duration::from_secs(2)),
        ..support::against_chat(&server)
    };
    let mut human = Vec::new();
    let report = {
        let mut h = HumanReporter::new(
            &mut human,
            HumanOptions {
                times: false,
                redact_uniq: true,
                verbose: false,
            },
        );
        run::run(&suites, &opts, &mut h).await.unwrap()
    };
    server.stop().await;
    assert_eq!(report.exit_code(false), 1);
    let human = String::from_utf8(human).unwrap();
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(support::root().join("snapshots/harness"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.add_filter(r"127\.0\.0\.1:\d+", "[target]");
    s.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uuid]",
    );
    s.add_filter(r"(points \d+/\d+); .*", "$1; [duration]");
    // The server closes the upload connection once it has the whole file, which may be
    // before or after the harness closes its side: a race the snapshot leaves out.
    s.add_filter(
        r"(?m)^  UP  closed by the target \(clean close\)  \(background\)\n",
        "",
    );
    s.bind(|| insta::assert_snapshot!("report_human_failing_chat_run", human));
}

/// A server whose group renamed headers passes once the same renames are given as vars,
/// and fails without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_headers_are_mapped_by_vars() {
    use reference_impl::chat::codec::Header;
    let mut config = reference_impl::chat::server::ServerConfig::default();
    config
        .dialect
        .headers
        .rename(Header::ListUsersReq, "USER_LIST_REQ")
        .unwrap();
    config
        .dialect
        .headers
        .rename(Header::ListUsersResp, "USER_LIST_RESP")
        .unwrap();
    let server = harness::protocol::chat::start_with(config, "renamed")
        .await
        .unwrap();
    let suites = support::load(&["scenarios/chat/level2/list-users-before-login.yaml"]);
    let plain = support::run(&suites, &support::against_chat(&server)).await;
    assert_eq!(plain.results[0].outcome, Outcome::Failed);
    let mut opts = support::against_chat(&server);
    opts.vars
        .insert("rename.LIST_USERS_REQ".into(), "USER_LIST_REQ".into());
    opts.vars
        .insert("rename.LIST_USERS_RESP".into(), "USER_LIST_RESP".into());
    let renamed = support::run(&suites, &opts).await;
    server.stop().await;
    assert_eq!(
        renamed.results[0].outcome,
        Outcome::Passed,
        "{:?}",
        renamed.results[0].failure
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_and_math_suites_pass_against_the_reference_servers_and_their_transcripts_hold() {
    // packet-client plays the server against the built-in packet client.
    let suites = support::load(&[
        "scenarios/packet",
        "scenarios/packet-client",
        "scenarios/mathsvc",
    ]);
    let report = support::run(&suites, &RunOptions::default()).await;
    let problems: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| format!("{} {:?}: {:?}", r.id, r.outcome, r.failure))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let mut settings = snapshot_settings();
    // Client UUIDs depend on the port the client connected from.
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uuid]",
    );
    for r in &report.results {
        let redact = [(r.uniq.clone(), "{{uniq}}".to_owned())];
        let transcript = r.transcript.render_steps(&redact);
        settings.bind(|| insta::assert_snapshot!(snapshot_name(&r.id), transcript));
    }
}
