//! The fuzz targets' seeds generated from the scenario suites (`fuzz/corpus/`), and a replay
//! of the `scenario` target's saved inputs on stable Rust.
//!
//! Generated seeds:
//!
//! ```text
//! fuzz/corpus/scenario/<suite>__<path>   every scenarios/**/*.yaml as it is (`/` -> `__`)
//! fuzz/corpus/parser/suite-<suite>-<n>   each message a kv or chat scenario sends without
//!                                        templates, with its line end
//! fuzz/corpus/mathsvc/suite-<n>          the same for the math service
//! ```
//!
//! The line-codec seeds start with the two control bytes of `reference_impl::fuzzing`:
//! `ff 00`, reads of 255 bytes (one read for a message that fits) and the default limit (for
//! the math service: no pause but the close). Identical seeds are written once.
//!
//! The test fails when a seed is missing, differs, or is left over from a scenario that
//! changed; `UPDATE_FUZZ_CORPUS=1` rewrites them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use harness::scenario::model::{Payload, Scenario, Step, StepKind, Suite};

use crate::support::root;

const UPDATE_VAR: &str = "UPDATE_FUZZ_CORPUS";

/// Control bytes of a line-codec seed: reads of 255 bytes, the default limit (no pauses).
const CONTROL: [u8; 2] = [0xff, 0x00];

/// Whether a file name is one this test writes (hand-written seeds beside them are left
/// alone).
type IsGenerated = fn(&str) -> bool;

/// Which generated files live where: a directory of `fuzz/corpus/` and its generated names.
const GENERATED: &[(&str, IsGenerated)] = &[
    ("scenario", |name| name.contains("__")),
    ("parser", |name| name.starts_with("suite-")),
    ("mathsvc", |name| name.starts_with("suite-")),
];

#[test]
fn fuzz_corpus_is_generated_from_the_suites() {
    let corpus = root().join("fuzz/corpus");
    let expected = expected_seeds();
    let update = std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1");

    let mut problems = Vec::new();
    for (dir, generated) in GENERATED {
        let dir_path = corpus.join(dir);
        if update {
            fs::create_dir_all(&dir_path).unwrap();
        }
        for name in file_names(&dir_path) {
            let rel = format!("{dir}/{name}");
            if generated(&name) && !expected.contains_key(&rel) {
                if update {
                    fs::remove_file(dir_path.join(&name)).unwrap();
                } else {
                    problems.push(format!("fuzz/corpus/{rel}: left over"));
                }
            }
        }
    }
    for (rel, bytes) in &expected {
        let path = corpus.join(rel);
        match fs::read(&path) {
            Ok(found) if found == *bytes => {}
            found => {
                if update {
                    fs::write(&path, bytes).unwrap();
                } else if found.is_ok() {
                    problems.push(format!("fuzz/corpus/{rel}: differs"));
                } else {
                    problems.push(format!("fuzz/corpus/{rel}: missing"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the fuzz seeds generated from scenarios/ are out of date:\n  {}\n\
         regenerate them with `{UPDATE_VAR}=1 cargo test -p harness --test it corpus` \
         and commit fuzz/corpus/",
        problems.join("\n  ")
    );
}

/// Every saved input of the `scenario` fuzz target through its checks.
#[test]
fn scenario_fuzz_inputs_replay() {
    let mut failed = Vec::new();
    let mut count = 0;
    for dir in ["fuzz/corpus/scenario", "fuzz/regressions/scenario"] {
        let dir = root().join(dir);
        for name in file_names(&dir) {
            let data = fs::read(dir.join(&name)).unwrap();
            count += 1;
            let run = std::panic::catch_unwind(|| harness::fuzzing::scenario(&data));
            if run.is_err() {
                failed.push(dir.join(&name).display().to_string());
            }
        }
    }
    assert!(count > 0, "no saved inputs of the scenario target");
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
}

/// The seeds, by path under `fuzz/corpus/`.
fn expected_seeds() -> BTreeMap<String, Vec<u8>> {
    let scenarios = root().join("scenarios");
    let mut seeds = BTreeMap::new();
    for path in yaml_files(&scenarios) {
        let rel = path.strip_prefix(&scenarios).unwrap();
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_str().unwrap())
            .collect::<Vec<_>>()
            .join("__");
        seeds.insert(format!("scenario/{name}"), fs::read(&path).unwrap());
    }

    let suites = match harness::load::load(std::slice::from_ref(&scenarios)) {
        Ok(suites) => suites,
        Err(e) => panic!("{}", e.render()),
    };
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut counters: BTreeMap<String, usize> = BTreeMap::new();
    for suite in &suites {
        let suite_name = suite_name(&scenarios, suite);
        let protocol = suite
            .config
            .protocol
            .clone()
            .unwrap_or_else(|| suite_name.clone());
        let prefix = match protocol.as_str() {
            "kv" | "chat" => format!("parser/suite-{suite_name}-"),
            "mathsvc" => "mathsvc/suite-".to_owned(),
            _ => continue,
        };
        for scenario in &suite.scenarios {
            let line_end = line_end(suite, scenario, &protocol);
            for message in literal_messages(&scenario.steps, &line_end) {
                let mut seed = CONTROL.to_vec();
                seed.extend_from_slice(&message);
                if written.contains(&seed) {
                    continue;
                }
                written.push(seed.clone());
                let n = counters.entry(prefix.clone()).or_default();
                *n += 1;
                seeds.insert(format!("{prefix}{n:03}"), seed);
            }
        }
    }
    seeds
}

/// The top folder of a suite under `scenarios/`: `kv`, `chat`, ...
fn suite_name(scenarios: &Path, suite: &Suite) -> String {
    let dir = fs::canonicalize(&suite.dir).unwrap();
    let scenarios = fs::canonicalize(scenarios).unwrap();
    let rel = dir.strip_prefix(&scenarios).unwrap();
    rel.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap()
}

/// The `line_end` a scenario runs with: its own vars, the suite's, the protocol's default.
fn line_end(suite: &Suite, scenario: &Scenario, protocol: &str) -> Vec<u8> {
    let default = harness::protocol::find(protocol)
        .and_then(|p| p.vars.iter().find(|(k, _)| *k == "line_end"))
        .map(|(_, v)| (*v).to_owned());
    scenario
        .vars
        .get("line_end")
        .or_else(|| suite.config.vars.get("line_end"))
        .cloned()
        .or(default)
        .unwrap_or_else(|| "\n".to_owned())
        .into_bytes()
}

/// The messages the steps send that have no `{{...}}` in them, as bytes on the wire.
fn literal_messages(steps: &[Step], line_end: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for step in steps {
        let StepKind::Send(send) = &step.kind else {
            continue;
        };
        let message = match &send.payload {
            Payload::Line(t) => t.literal().map(|text| {
                let mut bytes = text.into_bytes();
                bytes.extend_from_slice(line_end);
                bytes
            }),
            Payload::Bytes(t) => t.literal().map(String::into_bytes),
            Payload::Hex(t) => t.literal().map(|text| {
                let digits: String = text.split_whitespace().collect();
                hex::decode(digits).unwrap()
            }),
            Payload::Packet(_) => None,
        };
        out.extend(message.filter(|m| !m.is_empty()));
    }
    out
}

/// Every `*.yaml` under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out
}

/// The names of the files in `dir`, sorted, hidden ones (libFuzzer's scratch files) left
/// out; none if it does not exist.
fn file_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}
