//! Integration tests of the harness: the suites against the reference servers (with
//! transcript snapshots), against servers with one behaviour broken, against hostile
//! targets, and the command line.
#![allow(clippy::unwrap_used)]

mod broken;
mod broken_binary;
mod broken_chat;
mod cli;
mod corpus;
mod fuzz;
mod grade;
mod hostile;
mod suites;
mod support;
