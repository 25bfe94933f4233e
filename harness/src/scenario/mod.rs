//! Scenario files: YAML -> the typed model of [`model`], with a `file:line:col` span on
//! every step. This layer does no I/O.

pub mod model;
