//! Scenario files: YAML -> the typed model of [`model`], with a `file:line:col` span on
//! every step. This layer does no I/O: [`crate::load`] reads the files and hands their
//! text to the `parse_*` functions here.
//!
//! ```text
//! yaml.rs        YAML text -> nodes with positions; YAML syntax errors with fixes
//! parse.rs       nodes -> Scenario, SuiteConfig, Profile (unknown keys, types, durations)
//! step.rs        the `steps:` list: arrows, send, expect, ...
//! template.rs    `{{ expr }}`: parsing, expansion against an Env, static variable checks
//! diagnostic.rs  errors that point into a file, rendered like a compiler's
//! ```

pub mod diagnostic;
pub mod model;
mod parse;
pub(crate) mod step;
pub mod template;
mod yaml;

pub use diagnostic::{Diagnostic, Related, Severity};
pub use parse::{
    Diagnostics, FileKind, parse_profile, parse_scenario, parse_suite_config, profile_name,
    source_text,
};
pub use step::check_splits;
pub use template::{Env, TemplateError, check_vars};
pub use yaml::yaml_quote;

#[cfg(test)]
mod tests;
