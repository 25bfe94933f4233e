//! The findings folder: a suite `harness run` replays, made when the first finding is
//! written, never mixing protocols; file names from the oracle and the kind of message.

use std::path::Path;

use super::FuzzError;
use super::grammar::Grammar;
use crate::scenario::parse_suite_config;

/// Refuses a findings folder that holds another protocol's findings (before anything runs).
pub(super) fn check_out(out: &Path, grammar: &dyn Grammar) -> Result<(), FuzzError> {
    let suite = out.join("suite.yaml");
    match std::fs::read_to_string(&suite) {
        Ok(text) => {
            let config =
                parse_suite_config(&suite, &text).map_err(|d| out_error(&suite, d.render()))?;
            if config.protocol.as_deref() == Some(grammar.name()) {
                Ok(())
            } else {
                Err(out_error(
                    &suite,
                    format!(
                        "the folder holds findings of protocol `{}`, not {}: choose another --out",
                        config.protocol.unwrap_or_default(),
                        grammar.name()
                    ),
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(out_error(&suite, format!("cannot read it: {e}"))),
    }
}

/// Makes the findings folder, with the protocol's `suite.yaml`, when the first finding is
/// written.
pub(super) fn make_out(out: &Path, grammar: &dyn Grammar) -> Result<(), FuzzError> {
    std::fs::create_dir_all(out).map_err(|e| out_error(out, format!("cannot create it: {e}")))?;
    let suite = out.join("suite.yaml");
    if suite.exists() {
        return Ok(());
    }
    std::fs::write(&suite, grammar.suite_yaml())
        .map_err(|e| out_error(&suite, format!("cannot write it: {e}")))
}

fn out_error(path: &Path, reason: String) -> FuzzError {
    FuzzError::Out {
        path: path.display().to_string(),
        reason,
    }
}

/// `text` on one line of at most 200 characters (a finding's first comment line).
pub(super) fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 200 {
        let cut: String = line.chars().take(200).collect();
        format!("{cut}...")
    } else {
        line
    }
}

/// A label as part of a file name: `junk:too-long` -> `junk-too-long`.
pub(super) fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "case".into() } else { s }
}

/// `stem`, or `stem-2`, ... : the first with no file in `dir`.
pub(super) fn unused_stem(dir: &Path, stem: &str) -> String {
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            stem.to_owned()
        } else {
            format!("{stem}-{n}")
        };
        if !dir.join(format!("{candidate}.yaml")).exists() {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_labels_and_never_clash() {
        assert_eq!(slug("junk:too-long"), "junk-too-long");
        assert_eq!(slug("LOGIN+bit-flip"), "login-bit-flip");
        assert_eq!(slug("::"), "case");
        let dir = tempfile::tempdir().expect("a temporary folder");
        assert_eq!(unused_stem(dir.path(), "differs-get"), "differs-get");
        std::fs::write(dir.path().join("differs-get.yaml"), "").expect("a file");
        assert_eq!(unused_stem(dir.path(), "differs-get"), "differs-get-2");
    }

    #[test]
    fn long_text_is_cut_on_one_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let cut = one_line(&"x".repeat(300));
        assert_eq!(cut.chars().count(), 203);
        assert!(cut.ends_with("..."));
    }
}
