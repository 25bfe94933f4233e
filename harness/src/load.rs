//! Finding suites on disk: the one place of the scenario layer that reads files.
//!
//! ```text
//! scenarios/                 a folder of suites (searched recursively)
//!   kv/                      a suite: it holds suite.yaml or scenario files
//!     suite.yaml             defaults (optional)
//!     course.profile.yaml    a profile, chosen with --profile course
//!     put-get.yaml           one scenario
//! ```
//!
//! A folder with a `suite.yaml` also takes in the scenarios of its subfolders that have no
//! `suite.yaml` of their own, so one suite can keep its scenarios in folders:
//!
//! ```text
//!   chat/                    one suite: suite.yaml and every level's scenarios
//!     suite.yaml
//!     strict.profile.yaml
//!     level1/login-ok.yaml
//!     level2/list-users.yaml
//! ```
//!
//! A path given to [`load`] can be a scenario file (its suite runs with only that scenario),
//! a suite folder, a folder inside a suite (the suite, with only the scenarios there), or a
//! folder of suites. Every file is read and parsed even when
//! an earlier one failed, so one run of `harness check` shows every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::scenario::diagnostic::did_you_mean;
use crate::scenario::model::{Profile, Scenario, Suite, SuiteConfig};
use crate::scenario::{
    Diagnostic, FileKind, Related, parse_profile, parse_scenario, parse_suite_config, profile_name,
};

/// Scenario, suite and profile files larger than this are refused.
pub const MAX_FILE_SIZE: u64 = 1 << 20;
/// How deep folders of suites are searched.
const MAX_DEPTH: usize = 16;

/// Something that stopped a suite from loading.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} does not exist", .path.display())]
    NotFound {
        path: PathBuf,
        /// A sibling with a close name.
        suggestion: Option<PathBuf>,
    },
    #[error("cannot read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is larger than 1 MiB ({size} bytes)", .path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{} is not UTF-8 text (invalid byte at offset {offset})", .path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{} is not a scenario file", .path.display())]
    NotScenario { path: PathBuf },
    #[error("{} is a profile, not a scenario", .path.display())]
    IsProfile { path: PathBuf },
    #[error("no scenario files in {}", .path.display())]
    NoScenarios { path: PathBuf },
    #[error("no profile `{name}` in the loaded suites")]
    ProfileNotFound {
        name: String,
        /// The profiles that do exist, by name.
        available: Vec<String>,
    },
    #[error("profile `{name}` exists in several suites")]
    ProfileAmbiguous { name: String, paths: Vec<PathBuf> },
    /// A scenario, suite or profile file with a mistake in it.
    #[error("{0}")]
    Invalid(Diagnostic),
    /// Two scenarios with one id: `diagnostic` points at the second, `first` at the first.
    #[error("{diagnostic}")]
    DuplicateId {
        diagnostic: Diagnostic,
        first: Box<Related>,
    },
}

impl LoadError {
    /// Compiler-style text: the source line for file errors, a fix where there is one.
    pub fn render(&self) -> String {
        let help = match self {
            LoadError::Invalid(d) => return d.render(),
            LoadError::DuplicateId { diagnostic, first } => {
                return diagnostic.render_with(std::slice::from_ref(&**first));
            }
            LoadError::Io { source, .. } => return format!("error: {self}: {source}\n"),
            LoadError::NotFound {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean {}?", s.display())),
            LoadError::NotFound { .. } => None,
            LoadError::TooLarge { .. } => {
                Some("split it into several scenarios, or generate large messages with `{{repeat(...)}}`".to_owned())
            }
            LoadError::NotUtf8 { .. } => Some("save the file as UTF-8".to_owned()),
            LoadError::NotScenario { .. } => {
                Some("scenario files end in `.yaml` or `.yml`".to_owned())
            }
            LoadError::IsProfile { path } => Some(format!(
                "choose a profile with `--profile {}`",
                profile_name(path)
            )),
            LoadError::NoScenarios { .. } => Some(
                "a suite is a folder of `*.yaml` scenario files, with an optional `suite.yaml`"
                    .to_owned(),
            ),
            LoadError::ProfileNotFound { name, available } => Some(
                match did_you_mean(name, available.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if available.is_empty() => format!(
                        "a profile is a file `{name}.profile.yaml` in a suite folder, or give its path"
                    ),
                    None => format!("the profiles are: {}", available.join(", ")),
                },
            ),
            LoadError::ProfileAmbiguous { paths, .. } => Some(format!(
                "give the path of the one to use: {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        match help {
            Some(help) => format!("error: {self}\n  = help: {help}\n"),
            None => format!("error: {self}\n"),
        }
    }
}

/// Every problem found while loading (at least one).
#[derive(Debug, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    /// Every error rendered, separated by blank lines, then how many there were.
    pub fn render(&self) -> String {
        let mut out = self
            .0
            .iter()
            .map(LoadError::render)
            .collect::<Vec<_>>()
            .join("\n");
        if self.0.len() > 1 {
            out += &format!("\nerror: {} problems found\n", self.0.len());
        }
        out
    }
}

/// One line per error.
impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Which scenarios of a suite folder to load.
struct Wanted {
    /// The folder as the user named it (or as found under a folder they named).
    dir: PathBuf,
    /// `None`: every scenario file in the folder.
    files: Option<BTreeSet<PathBuf>>,
}

/// Loads the suites at `paths`, sorted by folder, each with its scenarios sorted by file name.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Suite>, LoadErrors> {
    let mut errors = Vec::new();
    // Keyed by the canonical folder, so a suite named twice (or by a file and by its folder)
    // is loaded once.
    let mut wanted: BTreeMap<PathBuf, Wanted> = BTreeMap::new();
    let mut want = |dir: &Path, file: Option<&Path>| {
        let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let entry = wanted.entry(key).or_insert_with(|| Wanted {
            dir: dir.to_owned(),
            files: Some(BTreeSet::new()),
        });
        match (file, &mut entry.files) {
            (Some(f), Some(files)) => {
                files.insert(f.to_owned());
            }
            (None, files) => *files = None,
            (Some(_), None) => {}
        }
    };
    for path in paths {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                errors.push(LoadError::NotFound {
                    path: path.clone(),
                    suggestion: sibling_like(path),
                });
                continue;
            }
            Err(source) => {
                errors.push(LoadError::Io {
                    path: path.clone(),
                    source,
                });
                continue;
            }
        };
        if meta.is_dir() {
            if let Some(owner) = owning_suite(path) {
                // A folder inside a suite: that suite, with only the scenarios under it.
                match scenario_files_under(path, 0) {
                    Ok(files) if files.is_empty() => {
                        errors.push(LoadError::NoScenarios { path: path.clone() });
                    }
                    Ok(files) => files.iter().for_each(|f| want(&owner, Some(f))),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            let mut found = Vec::new();
            if let Err(e) = discover(path, 0, &mut found) {
                errors.push(e);
            } else if found.is_empty() {
                errors.push(LoadError::NoScenarios { path: path.clone() });
            }
            for dir in found {
                want(&dir, None);
            }
            continue;
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        match FileKind::of(path) {
            FileKind::Scenario => want(&owning_suite(&dir).unwrap_or(dir), Some(path)),
            FileKind::Suite => want(&dir, None),
            FileKind::Profile => errors.push(LoadError::IsProfile { path: path.clone() }),
            FileKind::Other => errors.push(LoadError::NotScenario { path: path.clone() }),
        }
    }

    let mut wanted: Vec<Wanted> = wanted.into_values().collect();
    wanted.sort_by(|a, b| a.dir.cmp(&b.dir));
    // Suites with errors are kept until the end, so that their ids are checked too.
    let mut suites = Vec::new();
    for w in wanted {
        suites.push(load_suite(w, &mut errors));
    }
    errors.extend(duplicate_ids(&suites));
    if errors.is_empty() {
        Ok(suites)
    } else {
        Err(LoadErrors(errors))
    }
}

/// The folders at or under `dir` that hold a suite, in name order.
fn discover(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io_error = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    entries.sort();
    let has_config = find_file(dir, "suite").is_some();
    let is_suite = has_config
        || entries
            .iter()
            .any(|p| FileKind::of(p) == FileKind::Scenario && p.is_file());
    if is_suite {
        found.push(dir.to_owned());
    }
    if depth < MAX_DEPTH {
        for sub in entries.iter().filter(|p| p.is_dir() && !is_hidden(p)) {
            if has_config && find_file(sub, "suite").is_none() {
                // Part of this suite; only suites with their own suite.yaml further down.
                discover_nested(sub, depth + 1, found)?;
            } else {
                discover(sub, depth + 1, found)?;
            }
        }
    }
    Ok(())
}

/// Inside a suite's subfolders: the folders further down that have their own suite.yaml.
fn discover_nested(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    if find_file(dir, "suite").is_some() {
        return discover(dir, depth, found);
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let io_error = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut subs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    subs.retain(|p| p.is_dir() && !is_hidden(p));
    subs.sort();
    for sub in subs {
        discover_nested(&sub, depth + 1, found)?;
    }
    Ok(())
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The suite a folder without its own suite.yaml belongs to: the nearest ancestor with a
/// suite.yaml (every folder between them has none). `None` for a folder with a suite.yaml
/// or with no such ancestor.
fn owning_suite(dir: &Path) -> Option<PathBuf> {
    if find_file(dir, "suite").is_some() {
        return None;
    }
    let absolute = fs::canonicalize(dir).ok()?;
    let mut current = absolute.as_path();
    for _ in 0..MAX_DEPTH {
        current = current.parent()?;
        if find_file(current, "suite").is_some() {
            // Keep the path as the user wrote it when it names the ancestor plainly.
            let plain = dir.ancestors().find(|a| {
                fs::canonicalize(a).is_ok_and(|c| c == current) && !a.as_os_str().is_empty()
            });
            return Some(plain.map_or_else(|| current.to_owned(), Path::to_owned));
        }
    }
    None
}

/// The suite of `w`, with the scenarios that parsed; problems go to `errors`.
fn load_suite(w: Wanted, errors: &mut Vec<LoadError>) -> Suite {
    let config = match find_file(&w.dir, "suite") {
        None => SuiteConfig::default(),
        Some(path) => match read_text(&path) {
            Ok(text) => match parse_suite_config(&path, &text) {
                Ok(config) => config,
                Err(diags) => {
                    errors.extend(diags.0.into_iter().map(LoadError::Invalid));
                    SuiteConfig::default()
                }
            },
            Err(e) => {
                errors.push(e);
                SuiteConfig::default()
            }
        },
    };
    let files = match w.files {
        Some(files) => files.into_iter().collect(),
        None => match scenario_files(&w.dir) {
            Ok(files) => files,
            Err(e) => {
                errors.push(e);
                Vec::new()
            }
        },
    };
    let mut scenarios: Vec<Scenario> = Vec::new();
    for path in files {
        match read_text(&path) {
            Ok(text) => match parse_scenario(&path, &text, &config) {
                Ok(s) => scenarios.push(s),
                Err(diags) => errors.extend(diags.0.into_iter().map(LoadError::Invalid)),
            },
            Err(e) => errors.push(e),
        }
    }
    // By path inside the suite: `level1/b.yaml` before `level2/a.yaml`.
    scenarios.sort_by(|a, b| {
        let key = |s: &Scenario| {
            s.source
                .path
                .strip_prefix(&w.dir)
                .map(Path::to_owned)
                .unwrap_or_else(|_| {
                    s.source
                        .path
                        .file_name()
                        .map(PathBuf::from)
                        .unwrap_or_default()
                })
        };
        key(a).cmp(&key(b))
    });
    Suite {
        dir: w.dir,
        config,
        scenarios,
    }
}

/// `dir/NAME.yaml`, or `dir/NAME.yml`, if it exists.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// The scenario files of a suite folder; with a suite.yaml, those of its subfolders without
/// one too.
fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if find_file(dir, "suite").is_some() {
        return scenario_files_under(dir, 0);
    }
    let io_error = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if FileKind::of(&path) == FileKind::Scenario && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The scenario files of a folder and of its subfolders without a suite.yaml.
fn scenario_files_under(dir: &Path, depth: usize) -> Result<Vec<PathBuf>, LoadError> {
    let io_error = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    let mut subs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if FileKind::of(&path) == FileKind::Scenario && path.is_file() {
            files.push(path);
        } else if path.is_dir() && !is_hidden(&path) && find_file(&path, "suite").is_none() {
            subs.push(path);
        }
    }
    if depth < MAX_DEPTH {
        for sub in subs {
            files.extend(scenario_files_under(&sub, depth + 1)?);
        }
    }
    files.sort();
    Ok(files)
}

/// A file's text, refusing files over [`MAX_FILE_SIZE`] and text that is not UTF-8.
fn read_text(path: &Path) -> Result<String, LoadError> {
    let io_error = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit rather than trusting the size the metadata reports.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        let size = fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    String::from_utf8(bytes).map_err(|e| LoadError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// A file or folder next to a missing `path` whose name is close to it.
fn sibling_like(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let names: Vec<String> = fs::read_dir(parent)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let best = did_you_mean(name, names.iter().map(String::as_str))?;
    Some(path.with_file_name(best))
}

/// An error for each scenario whose id an earlier one (in load order) already has.
fn duplicate_ids(suites: &[Suite]) -> Vec<LoadError> {
    let mut seen: BTreeMap<&str, &Scenario> = BTreeMap::new();
    let mut errors = Vec::new();
    for s in suites.iter().flat_map(|suite| &suite.scenarios) {
        match seen.get(s.id.as_str()) {
            Some(first) => errors.push(LoadError::DuplicateId {
                diagnostic: Diagnostic::error(
                    &s.source,
                    s.span,
                    format!("duplicate scenario id `{}`", s.id),
                )
                .with_label("used again here")
                .with_help("scenario ids must be unique across the suites of a run"),
                first: Box::new(Related {
                    file: Arc::clone(&first.source),
                    span: first.span,
                    label: "first used here".to_owned(),
                }),
            }),
            None => {
                seen.insert(&s.id, s);
            }
        }
    }
    errors
}

/// Loads a profile: `NAME` is `NAME.profile.yaml` in the folder of one of `suites`;
/// anything that looks like a path (has a `/` or ends in `.yaml`) is read as one.
pub fn load_profile(name_or_path: &str, suites: &[Suite]) -> Result<Profile, LoadErrors> {
    let looks_like_path = name_or_path.contains(['/', '\\'])
        || name_or_path.ends_with(".yaml")
        || name_or_path.ends_with(".yml");
    let path = if looks_like_path {
        PathBuf::from(name_or_path)
    } else {
        let mut found: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for suite in suites {
            if let Some(p) = find_file(&suite.dir, &format!("{name_or_path}.profile")) {
                found.insert(fs::canonicalize(&p).unwrap_or_else(|_| p.clone()), p);
            }
        }
        let mut found: Vec<PathBuf> = found.into_values().collect();
        match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(LoadErrors(vec![LoadError::ProfileNotFound {
                    name: name_or_path.to_owned(),
                    available: available_profiles(suites),
                }]));
            }
            _ => {
                found.sort();
                return Err(LoadErrors(vec![LoadError::ProfileAmbiguous {
                    name: name_or_path.to_owned(),
                    paths: found,
                }]));
            }
        }
    };
    if !path.exists() {
        return Err(LoadErrors(vec![LoadError::NotFound {
            suggestion: sibling_like(&path),
            path,
        }]));
    }
    let text = read_text(&path).map_err(|e| LoadErrors(vec![e]))?;
    parse_profile(&path, &text)
        .map_err(|d| LoadErrors(d.0.into_iter().map(LoadError::Invalid).collect()))
}

/// Names of the profiles in the folders of `suites`.
fn available_profiles(suites: &[Suite]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for suite in suites {
        let Ok(entries) = fs::read_dir(&suite.dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if FileKind::of(&path) == FileKind::Profile {
                names.insert(profile_name(&path));
            }
        }
    }
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A folder under the system temp folder, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("harness-load-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }

        /// Rendered errors with the temp folder replaced by `<tmp>`.
        fn render(&self, errors: &LoadErrors) -> String {
            errors
                .render()
                .replace(&self.0.display().to_string(), "<tmp>")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scenario(id: &str) -> String {
        format!("id: {id}\nsteps:\n  - C -> S: PING\n  - S -> C: PONG\n")
    }

    fn ids(suites: &[Suite]) -> Vec<Vec<&str>> {
        suites
            .iter()
            .map(|s| s.scenarios.iter().map(|s| s.id.as_str()).collect())
            .collect()
    }

    #[test]
    fn loads_a_folder_of_suites_in_order() {
        let t = TempDir::new("tree");
        t.write("scenarios/kv/suite.yaml", "protocol: kv\npoints: 2\n");
        t.write("scenarios/kv/b.yaml", scenario("kv/b"));
        t.write("scenarios/kv/a.yml", scenario("kv/a"));
        t.write("scenarios/kv/course.profile.yaml", "vars: { x: 1 }\n");
        t.write("scenarios/kv/notes.md", "not a scenario");
        t.write("scenarios/chat/login.yaml", scenario("chat/login"));
        t.write("scenarios/chat/more/extra.yaml", scenario("chat/extra"));
        t.write("scenarios/.hidden/x.yaml", "not even yaml: [");
        fs::create_dir_all(t.path("scenarios/empty")).unwrap();

        let suites = load(&[t.path("scenarios")]).unwrap();
        let dirs: Vec<PathBuf> = suites.iter().map(|s| s.dir.clone()).collect();
        assert_eq!(
            dirs,
            [
                t.path("scenarios/chat"),
                t.path("scenarios/chat/more"),
                t.path("scenarios/kv")
            ]
        );
        assert_eq!(
            ids(&suites),
            [vec!["chat/login"], vec!["chat/extra"], vec!["kv/a", "kv/b"]]
        );
        let kv = &suites[2];
        assert_eq!(kv.config.protocol.as_deref(), Some("kv"));
        assert_eq!(kv.scenarios[0].points, 2);
        assert_eq!(kv.scenarios[0].source.path, t.path("scenarios/kv/a.yml"));
        assert_eq!(suites[0].config.points, 1);
    }

    #[test]
    fn a_suite_takes_in_subfolders_without_their_own_suite_yaml() {
        let t = TempDir::new("nested");
        t.write("scenarios/chat/suite.yaml", "protocol: kv\npoints: 3\n");
        t.write("scenarios/chat/level2/b.yaml", scenario("chat/b"));
        t.write("scenarios/chat/level1/z.yaml", scenario("chat/z"));
        t.write("scenarios/chat/top.yaml", scenario("chat/top"));
        t.write("scenarios/chat/level1/deep/d.yaml", scenario("chat/d"));
        t.write("scenarios/chat/own/suite.yaml", "points: 7\n");
        t.write("scenarios/chat/own/o.yaml", scenario("chat/o"));

        let suites = load(&[t.path("scenarios")]).unwrap();
        let dirs: Vec<PathBuf> = suites.iter().map(|s| s.dir.clone()).collect();
        assert_eq!(
            dirs,
            [t.path("scenarios/chat"), t.path("scenarios/chat/own")]
        );
        assert_eq!(
            ids(&suites),
            [
                vec!["chat/d", "chat/z", "chat/b", "chat/top"],
                vec!["chat/o"]
            ]
        );
        assert_eq!(suites[0].scenarios[0].points, 3);
        assert_eq!(suites[1].scenarios[0].points, 7);

        // A folder inside the suite, or a file in it: the suite with only those scenarios.
        let level1 = load(&[t.path("scenarios/chat/level1")]).unwrap();
        assert_eq!(level1[0].dir, t.path("scenarios/chat"));
        assert_eq!(ids(&level1), [vec!["chat/d", "chat/z"]]);
        assert_eq!(level1[0].config.points, 3);
        let one = load(&[t.path("scenarios/chat/level2/b.yaml")]).unwrap();
        assert_eq!(one[0].dir, t.path("scenarios/chat"));
        assert_eq!(ids(&one), [vec!["chat/b"]]);
    }

    #[test]
    fn a_file_is_its_folder_with_only_that_scenario() {
        let t = TempDir::new("file");
        t.write("kv/suite.yaml", "points: 5\n");
        let a = t.write("kv/a.yaml", scenario("kv/a"));
        t.write("kv/b.yaml", scenario("kv/b"));
        let suites = load(std::slice::from_ref(&a)).unwrap();
        assert_eq!(ids(&suites), [vec!["kv/a"]]);
        assert_eq!(suites[0].dir, t.path("kv"));
        assert_eq!(suites[0].scenarios[0].points, 5);

        // A file and its folder (or a file named twice) load the suite once.
        let suites = load(&[a.clone(), t.path("kv"), a.clone()]).unwrap();
        assert_eq!(ids(&suites), [vec!["kv/a", "kv/b"]]);
        let suites = load(&[a.clone(), a]).unwrap();
        assert_eq!(ids(&suites), [vec!["kv/a"]]);
    }

    #[test]
    fn reports_every_problem_of_every_file() {
        let t = TempDir::new("errors");
        t.write("s/one/suite.yaml", "timeout: soon\n");
        t.write("s/one/a.yaml", scenario("dup"));
        t.write("s/one/b.yaml", "id: b\nsteps:\n  - S -> C: CONNECT: OK\n");
        t.write("s/two/c.yaml", scenario("dup"));
        t.write("s/two/d.yaml", "id: d\nstpes: []\n");
        let errors = load(&[t.path("s")]).unwrap_err();
        crate::snapshot_settings().bind(|| {
            insta::assert_snapshot!("load_errors", t.render(&errors));
        });
    }

    #[test]
    fn duplicate_ids_point_at_both_files() {
        let t = TempDir::new("dup");
        t.write("s/one/a.yaml", scenario("kv/same"));
        t.write("s/two/b.yaml", format!("# b\n{}", scenario("kv/same")));
        let errors = load(&[t.path("s")]).unwrap_err();
        crate::snapshot_settings().bind(|| {
            insta::assert_snapshot!("load_duplicate_ids", t.render(&errors));
        });
    }

    #[test]
    fn paths_that_are_not_suites() {
        let t = TempDir::new("paths");
        t.write("kv/put-get.yaml", scenario("kv/a"));
        t.write("kv/course.profile.yaml", "");
        t.write("kv/notes.txt", "");
        fs::create_dir_all(t.path("empty/sub")).unwrap();
        let errors = load(&[
            t.path("kv/put-gte.yaml"),
            t.path("kv/course.profile.yaml"),
            t.path("kv/notes.txt"),
            t.path("empty"),
        ])
        .unwrap_err();
        crate::snapshot_settings().bind(|| {
            insta::assert_snapshot!("load_bad_paths", t.render(&errors));
        });
    }

    #[test]
    fn refuses_large_and_binary_files() {
        let t = TempDir::new("large");
        let big = format!("{}\n{}", scenario("big"), "# padding\n".repeat(110_000));
        t.write("s/big.yaml", big);
        t.write("s/bin.yaml", b"id: x\xff\n");
        let errors = load(&[t.path("s")]).unwrap_err();
        let out = t.render(&errors);
        assert!(out.contains("big.yaml is larger than 1 MiB (1100"), "{out}");
        assert!(
            out.contains("bin.yaml is not UTF-8 text (invalid byte at offset 5)"),
            "{out}"
        );
    }

    #[test]
    fn profiles_by_name_or_path() {
        let t = TempDir::new("profiles");
        t.write("kv/a.yaml", scenario("kv/a"));
        t.write(
            "kv/course.profile.yaml",
            "vars: { fib: 0 }\nreference: { dialect: course }\n",
        );
        t.write("kv/other.profile.yml", "vars: { fib: 1 }\n");
        t.write("chat/b.yaml", scenario("chat/b"));
        t.write("chat/other.profile.yaml", "");
        t.write("elsewhere/mine.profile.yaml", "vars: { x: y }\n");
        let suites = load(&[t.path("kv"), t.path("chat")]).unwrap();

        let p = load_profile("course", &suites).unwrap();
        assert_eq!((p.name.as_str(), p.vars["fib"].as_str()), ("course", "0"));
        assert_eq!(p.reference["dialect"], "course");
        let path = t.path("elsewhere/mine.profile.yaml");
        let p = load_profile(path.to_str().unwrap(), &suites).unwrap();
        assert_eq!((p.name.as_str(), p.vars["x"].as_str()), ("mine", "y"));

        let e = load_profile("corse", &suites).unwrap_err();
        assert_eq!(
            t.render(&e),
            "error: no profile `corse` in the loaded suites\n  = help: did you mean `course`?\n"
        );
        let e = load_profile("other", &suites).unwrap_err();
        assert_eq!(
            t.render(&e),
            "error: profile `other` exists in several suites\n  = help: give the path of the \
             one to use: <tmp>/chat/other.profile.yaml, <tmp>/kv/other.profile.yml\n"
        );
        t.write("kv/bad.profile.yaml", "vars: { x: 1 }\nrefrence: {}\n");
        let e = load_profile("bad", &suites).unwrap_err();
        assert!(t.render(&e).contains("did you mean `reference`?"));
    }
}
