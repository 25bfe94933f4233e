//! Integration tests of the harness: the suites against the reference servers (with
//! transcript snapshots), against servers with one behaviour broken, against hostile
//! targets, the kv-rsa transport, and the command line.
#![allow(clippy::unwrap_used)]

mod broken;
mod broken_binary;
mod broken_chat;
mod broken_rsa;
mod cli;
mod corpus;
mod fuzz;
mod grade;
mod hostile;
mod hostile_servers;
mod rsa_transport;
mod suites;
mod support;
