//! `harness grade`: every submission folder gets its own run of the suites against its own
//! server (started with `{dir}` and `{port}` in the command), several submissions at once,
//! and the results become a class sheet, a report per student, Gradescope results and the
//! JSON report.
//!
//! ```text
//! OUTDIR/sheet.csv                  one row per submission
//! OUTDIR/grade.json                 every submission's totals (what `harness merge` reads)
//! OUTDIR/<submission>/report.md     the student's report (hidden scenarios left out)
//! OUTDIR/<submission>/report.html   the same as one self-contained page
//! OUTDIR/<submission>/results.json  Gradescope's format
//! OUTDIR/<submission>/report.json   the JSON report of `harness run --format json`
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::report::sheet::SheetRow;
use crate::report::{Event, Reporter, Submission};
use crate::run::managed::TargetExec;
use crate::run::{self, RunOptions, SetupError, Summary};
use crate::scenario::model::Suite;

/// The version of `grade.json`.
pub const GRADE_VERSION: u32 = 1;

/// Everything `harness grade` takes.
#[derive(Debug, Clone)]
pub struct GradeOptions {
    /// The folder whose subfolders are the submissions.
    pub submissions: PathBuf,
    /// How each submission's server starts: `{dir}` and `{port}` are filled in.
    pub exec: TargetExec,
    pub output: PathBuf,
    /// Submissions graded at once.
    pub jobs: usize,
    /// `(k, n)`: grade only the k-th of n shards (1-based), for spreading a class over
    /// machines.
    pub shard: Option<(usize, usize)>,
    /// How each submission's suites run (scenario jobs, profile, vars, time scale, ...).
    pub run: RunOptions,
}

/// Why grading could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    #[error("cannot read the submissions folder {path}: {source}")]
    Submissions {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no submission folders in {0}")]
    NoSubmissions(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// One line of `grade.json`: a submission's totals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradeEntry {
    pub submission: String,
    pub summary: Summary,
    pub note: String,
}

/// `grade.json`: the totals of every submission graded (one shard's, or a merge's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradeFile {
    pub version: u32,
    pub submissions: Vec<GradeEntry>,
}

impl GradeFile {
    /// The sheet rows, in submission order.
    pub fn rows(&self) -> Vec<SheetRow> {
        self.submissions
            .iter()
            .map(|e| SheetRow {
                submission: e.submission.clone(),
                summary: e.summary.clone(),
                note: e.note.clone(),
            })
            .collect()
    }
}

/// The submission folders, sorted by name, of shard `k` of `n` (every `n`-th from `k`).
pub fn submissions(dir: &Path, shard: Option<(usize, usize)>) -> Result<Vec<PathBuf>, GradeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| GradeError::Submissions {
        path: dir.display().to_string(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    dirs.sort();
    if let Some((k, n)) = shard {
        dirs = dirs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, d)| d)
            .collect();
    }
    Ok(dirs)
}

/// Takes no events: a submission's run reports nothing until it is whole.
struct Quiet;

impl Reporter for Quiet {
    fn report(&mut self, _: &Event<'_>) -> std::io::Result<()> {
        Ok(())
    }
}

/// Grades every submission; `done` hears of each as it finishes (for progress), with the
/// number finished and the total.
pub async fn grade(
    suites: &[Suite],
    opts: &GradeOptions,
    done: &mut dyn FnMut(&Submission, usize, usize),
) -> Result<Vec<Submission>, GradeError> {
    let dirs = submissions(&opts.submissions, opts.shard)?;
    if dirs.is_empty() && opts.shard.is_none() {
        return Err(GradeError::NoSubmissions(
            opts.submissions.display().to_string(),
        ));
    }
    let total = dirs.len();
    let suites: Rc<[Suite]> = suites.to_vec().into();
    let semaphore = Arc::new(Semaphore::new(opts.jobs.max(1)));
    let local = tokio::task::LocalSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (index, dir) in dirs.into_iter().enumerate() {
        let suites = suites.clone();
        let semaphore = semaphore.clone();
        let tx = tx.clone();
        let mut run_opts = opts.run.clone();
        let mut exec = opts.exec.clone();
        exec.vars
            .insert("dir".into(), crate::target::server::absolute(&dir));
        run_opts.exec = Some(exec);
        local.spawn_local(async move {
            let _permit = semaphore.acquire_owned().await;
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let outcome = run::run(&suites, &run_opts, &mut Quiet).await;
            let _ = tx.send((index, name, outcome));
        });
    }
    drop(tx);
    let mut graded: Vec<Option<Submission>> = (0..total).map(|_| None).collect();
    let mut finished = 0;
    let mut failure = None;
    local
        .run_until(async {
            while let Some((index, name, outcome)) = rx.recv().await {
                match outcome {
                    Ok(report) => {
                        let submission = Submission {
                            name,
                            results: report.results,
                            summary: report.summary,
                        };
                        finished += 1;
                        done(&submission, finished, total);
                        graded[index] = Some(submission);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        })
        .await;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(graded.into_iter().flatten().collect())
}

/// Writes the sheet, `grade.json` and every submission's reports under `out`.
pub fn write_outputs(out: &Path, graded: &[Submission]) -> Result<(), GradeError> {
    let rows: Vec<SheetRow> = graded.iter().map(SheetRow::from).collect();
    let file = GradeFile {
        version: GRADE_VERSION,
        submissions: rows
            .iter()
            .map(|r| GradeEntry {
                submission: r.submission.clone(),
                summary: r.summary.clone(),
                note: r.note.clone(),
            })
            .collect(),
    };
    write_sheet(out, &file)?;
    for s in graded {
        let dir = out.join(safe_name(&s.name));
        write(
            dir.join("report.md"),
            crate::report::markdown::markdown(s).as_bytes(),
        )?;
        write(
            dir.join("report.html"),
            crate::report::html::html(s).as_bytes(),
        )?;
        write(
            dir.join("results.json"),
            &json_bytes(&crate::report::gradescope::gradescope(s)),
        )?;
        let report = crate::report::json::Report::new(&s.results, &s.summary);
        write(dir.join("report.json"), &json_bytes(&report))?;
    }
    Ok(())
}

/// Writes `sheet.csv` and `grade.json` of `file` under `out` (what `harness merge` writes).
pub fn write_sheet(out: &Path, file: &GradeFile) -> Result<(), GradeError> {
    write(
        out.join("sheet.csv"),
        crate::report::sheet::sheet(&file.rows()).as_bytes(),
    )?;
    write(out.join("grade.json"), &json_bytes(file))
}

/// Writes a file, making its folder first.
fn write(path: PathBuf, text: &[u8]) -> Result<(), GradeError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| GradeError::Write {
            path: parent.display().to_string(),
            source,
        })?;
    }
    std::fs::write(&path, text).map_err(|source| GradeError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Combines the `grade.json` files of several shards into one (submissions sorted by name).
pub fn merge(files: &[GradeFile]) -> GradeFile {
    let mut by_name: BTreeMap<String, GradeEntry> = BTreeMap::new();
    for f in files {
        for e in &f.submissions {
            by_name.insert(e.submission.clone(), e.clone());
        }
    }
    GradeFile {
        version: GRADE_VERSION,
        submissions: by_name.into_values().collect(),
    }
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A submission name as a folder name: path separators and leading dots made harmless.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    cleaned.trim_start_matches('.').to_owned()
}

/// The default time a submission's server may take to start.
pub const DEFAULT_STARTUP: Duration = crate::target::server::DEFAULT_STARTUP_TIMEOUT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_sorted_submissions_evenly() {
        let dir = tempfile::tempdir().expect("a temp dir");
        for name in ["e", "a", "d", "b", "c", ".git"] {
            std::fs::create_dir(dir.path().join(name)).expect("a folder");
        }
        std::fs::write(dir.path().join("notes.txt"), "x").expect("a file");
        let names = |shard| -> Vec<String> {
            submissions(dir.path(), shard)
                .expect("listed")
                .iter()
                .map(|p| {
                    p.file_name()
                        .expect("a name")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(names(None), ["a", "b", "c", "d", "e"]);
        assert_eq!(names(Some((1, 2))), ["a", "c", "e"]);
        assert_eq!(names(Some((2, 2))), ["b", "d"]);
        assert_eq!(names(Some((3, 3))), ["c"]);
        assert_eq!(safe_name("../x/y"), "_x_y");
    }
}
