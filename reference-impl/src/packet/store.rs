//! The scores of submissions (`sbmt` sessions): the best score per student id, kept in memory
//! and, if given a file, on disk, so that they survive a restart.
//!
//! ```text
//! # best scores of the packet server: student id, points
//! 20200000 50
//! 20201234 35
//! ```
//!
//! One `sid score` pair per line, sorted by student id; blank lines and lines starting with
//! `#` are ignored when the file is read. The file is rewritten whenever a best score
//! changes: the new contents go to a temporary file beside it (`.<name>.tmp`), which is
//! flushed to disk and then renamed over the old one, so a crash leaves the old file or the
//! new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Why the scores cannot be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the scores file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}:{line}: expected `STUDENT_ID SCORE` (two integers), found {text:?}",
        path.display()
    )]
    Parse {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("cannot save the scores to {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Best scores per student id; see the module documentation.
#[derive(Debug)]
pub struct ScoreStore {
    path: Option<PathBuf>,
    best: Mutex<BTreeMap<i32, i32>>,
}

impl ScoreStore {
    /// A store that keeps scores in memory only.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            best: Mutex::new(BTreeMap::new()),
        }
    }

    /// The store saved in `path`; a file that does not exist yet is an empty store (it is
    /// created with the first score).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let best = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        Ok(Self {
            path: Some(path),
            best: Mutex::new(best),
        })
    }

    /// The file the scores are saved in, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records a score: `Ok(true)` if it is the student's best so far (and saved), `Ok(false)`
    /// if an equal or better one is already recorded. A failed save leaves the store as it
    /// was. Blocking file I/O: call it off the async runtime's worker threads.
    pub fn record(&self, sid: i32, score: i32) -> Result<bool, StoreError> {
        let mut best = self.best.lock().unwrap_or_else(PoisonError::into_inner);
        if best.get(&sid).is_some_and(|&old| old >= score) {
            return Ok(false);
        }
        let old = best.insert(sid, score);
        if let Some(path) = &self.path
            && let Err(source) = save(path, &best)
        {
            match old {
                Some(old) => best.insert(sid, old),
                None => best.remove(&sid),
            };
            return Err(StoreError::Write {
                path: path.clone(),
                source,
            });
        }
        Ok(true)
    }

    /// The best score of `sid`.
    pub fn best(&self, sid: i32) -> Option<i32> {
        self.best
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sid)
            .copied()
    }

    /// Every student id and its best score.
    pub fn snapshot(&self) -> BTreeMap<i32, i32> {
        self.best
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn parse(text: &str, path: &Path) -> Result<BTreeMap<i32, i32>, StoreError> {
    let mut best = BTreeMap::<i32, i32>::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let pair = match (words.next(), words.next(), words.next()) {
            (Some(sid), Some(score), None) => sid.parse::<i32>().ok().zip(score.parse().ok()),
            _ => None,
        };
        let Some((sid, score)) = pair else {
            return Err(StoreError::Parse {
                path: path.to_owned(),
                line: number + 1,
                text: line.to_owned(),
            });
        };
        let entry = best.entry(sid).or_insert(score);
        *entry = (*entry).max(score);
    }
    Ok(best)
}

/// Writes `best` to a temporary file beside `path`, flushes it, renames it over `path`.
fn save(path: &Path, best: &BTreeMap<i32, i32>) -> std::io::Result<()> {
    let mut text = String::from("# best scores of the packet server: student id, points\n");
    for (sid, score) in best {
        text.push_str(&format!("{sid} {score}\n"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scores".to_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "packet-store-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("scores.txt")
    }

    #[test]
    fn keeps_the_best_score_and_survives_a_reopen() {
        let path = scratch("best");
        let store = ScoreStore::open(&path).unwrap();
        assert_eq!(store.best(20200000), None);
        assert!(store.record(20200000, 35).unwrap());
        assert!(!store.record(20200000, 20).unwrap());
        assert!(!store.record(20200000, 35).unwrap());
        assert!(store.record(20200000, 50).unwrap());
        assert!(store.record(20191234, 0).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# best scores of the packet server: student id, points\n20191234 0\n20200000 50\n"
        );
        let again = ScoreStore::open(&path).unwrap();
        assert_eq!(again.snapshot(), store.snapshot());
        assert_eq!(again.best(20200000), Some(50));
        // No temporary file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("scores.txt")]);
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let path = scratch("fail")
            .with_file_name("missing-dir")
            .join("scores.txt");
        let store = ScoreStore::open(&path).unwrap();
        assert!(matches!(
            store.record(20200000, 50),
            Err(StoreError::Write { .. })
        ));
        assert_eq!(store.best(20200000), None);
    }

    #[test]
    fn reads_comments_and_rejects_junk() {
        let path = Path::new("s.txt");
        let best = parse("# c\n\n 20200000  35 \n20200000 50\n", path).unwrap();
        assert_eq!(best.get(&20200000), Some(&50));
        let e = parse("20200000 50\n20200000 fifty\n", path).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.txt:2: expected `STUDENT_ID SCORE` (two integers), found \"20200000 fifty\""
        );
        assert!(parse("1 2 3\n", path).is_err());
        let memory = ScoreStore::in_memory();
        assert!(memory.record(1, 2).unwrap());
        assert_eq!(memory.path(), None);
    }
}
