//! Programs under test that the harness starts itself: their processes (own process group,
//! captured output, stopped as a group), and the client under test when the harness plays
//! the server.

pub mod client;
pub mod output;
pub mod process;
pub mod server;
