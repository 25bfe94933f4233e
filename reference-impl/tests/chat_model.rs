//! A state-machine property test of the chat server's connections, logins and user list:
//! random sequences of connects, `LOGIN`s (valid, taken and invalid names), `LIST_USERS_REQ`,
//! `BYE`, closes without `BYE` and unknown or unparsable lines on three connections, run
//! against a real server in this process (plain TCP, raw lines), every line every
//! connection receives compared with what a small model of `specs/chat.md` expects.
//!
//! ```text
//! model     slots   3 connections, each closed, or open and logged in as a name or not
//!           order   the logged-in connections, in login order (what LIST_USERS_RESP lists)
//!
//! connect         closed slot             -> WELCOME
//! LOGIN name      logged in               -> LOGIN_RESP 5002
//!                 invalid name            -> LOGIN_RESP 5001   (3 to 14 of A-Z a-z 0-9 _)
//!                 name taken              -> LOGIN_RESP 5000   (names are case-sensitive)
//!                 else                    -> LOGIN_RESP OK; every other logged-in user: JOINED
//! LIST_USERS_REQ  not logged in           -> LIST_USERS_RESP 6000
//!                 logged in               -> LIST_USERS_RESP OK, the names in login order
//! BYE                                     -> BYE_RESP OK, closed; a logged-in user's name is
//!                                            free again, every other logged-in user: LEFT
//! close           (no BYE)                -> the same, without BYE_RESP
//! junk            unknown header          -> UNKNOWN_COMMAND, stays connected
//!                 body not JSON           -> PARSE_ERROR, stays connected
//! ```
//!
//! Every operation but a close on a closed slot connects first (and gets the `WELCOME`). After
//! the last operation every open connection asks for the user list, so that a line the model
//! does not expect cannot hide at the end. Each case runs on a fresh server; pings are off
//! (an hour apart). `a_server_that_allows_duplicate_names_is_caught` runs the same property
//! against a server with a deliberate fault and checks that it fails, with a short sequence.
#![allow(clippy::unwrap_used)]

use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRng, TestRunner};
use reference_impl::chat::codec::{ClientMessage, ServerMessage, code};
use reference_impl::chat::server::{self, DEFAULT_VERSION, Fault, RunningServer, ServerConfig};
use state_machine::{Generator, pick_slot, sequences};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

mod state_machine;

/// How long any expected line or close may take.
const PATIENCE: Duration = Duration::from_secs(3);

const SLOTS: usize = 3;
/// Valid names (two differing only in case) and invalid ones: too short, a space, too long,
/// empty.
const NAMES: [&str; 7] = [
    "alice",
    "bob_2",
    "Alice",
    "al",
    "bad name",
    "abcdefghijklmno",
    "",
];
const VALID_NAMES: usize = 3;
/// Lines the server answers with `UNKNOWN_COMMAND` (an unknown header; headers are
/// case-sensitive) or `PARSE_ERROR` (a known header, a body that is not JSON).
const JUNK: [(&str, ServerMessage); 3] = [
    (
        "MSG This is an invalid message",
        ServerMessage::UnknownCommand,
    ),
    (
        "login {\"username\":\"alice\"}",
        ServerMessage::UnknownCommand,
    ),
    ("LOGIN {\"username\":", ServerMessage::ParseError),
];

/// The spec's rule for names, written out here rather than taken from the codec: 3 to 14
/// letters, digits and underscores.
fn valid_name(name: &str) -> bool {
    (3..=14).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One step of a sequence, on connection `slot`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Connect {
        slot: usize,
    },
    Login {
        slot: usize,
        name: usize,
    },
    ListUsers {
        slot: usize,
    },
    Bye {
        slot: usize,
    },
    /// Close the connection without `BYE` (a half-close: the test then reads to the end).
    Close {
        slot: usize,
    },
    Junk {
        slot: usize,
        kind: usize,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Connect { slot } => write!(f, "c{slot}: connect"),
            Op::Close { slot } => write!(f, "c{slot}: close without BYE"),
            _ => write!(f, "c{}: {}", self.slot(), self.line().unwrap_or_default()),
        }
    }
}

impl Op {
    fn slot(self) -> usize {
        match self {
            Op::Connect { slot }
            | Op::Login { slot, .. }
            | Op::ListUsers { slot }
            | Op::Bye { slot }
            | Op::Close { slot }
            | Op::Junk { slot, .. } => slot,
        }
    }

    /// The line the op sends, if it sends one.
    fn line(self) -> Option<String> {
        let message = match self {
            Op::Connect { .. } | Op::Close { .. } => return None,
            Op::Junk { kind, .. } => return Some(JUNK[kind].0.to_owned()),
            Op::Login { name, .. } => ClientMessage::Login {
                username: NAMES[name].to_owned(),
            },
            Op::ListUsers { .. } => ClientMessage::ListUsersReq,
            Op::Bye { .. } => ClientMessage::Bye,
        };
        let mut out = Vec::new();
        message.encode(&mut out);
        let line = String::from_utf8(out).unwrap();
        Some(line.trim_end().to_owned())
    }
}

/// What a connection receives: a line (as sent, without its line end), or the end of the
/// stream. Lines are compared byte for byte with the model's messages as the codec encodes
/// them: the spec's compact JSON.
#[derive(Clone, PartialEq, Eq)]
enum Event {
    Line(String),
    Closed,
    /// Only from the server: nothing in time.
    Nothing,
    /// Only from the server: the connection failed, or ended inside a line.
    Error(String),
}

impl Event {
    fn message(message: ServerMessage) -> Event {
        let mut out = Vec::new();
        message.encode(&mut out);
        Event::Line(String::from_utf8_lossy(&out).trim_end().to_owned())
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Line(line) => write!(f, "`{line}`"),
            Event::Closed => f.write_str("<closed>"),
            Event::Nothing => f.write_str("<nothing>"),
            Event::Error(e) => write!(f, "<{e}>"),
        }
    }
}

/// What one step makes every connection receive: the one that acted, and each other one
/// that receives anything (in slot order).
#[derive(Clone, PartialEq, Eq, Default)]
struct Received {
    own: Vec<Event>,
    others: Vec<(usize, Vec<Event>)>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.own)?;
        for (slot, events) in &self.others {
            write!(f, ", to c{slot} {events:?}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Closed,
    Open { name: Option<usize> },
}

/// What the protocol says the server's state is.
#[derive(Debug, Clone)]
struct Model {
    slots: [Slot; SLOTS],
    /// Logged-in slots in login order.
    order: Vec<usize>,
}

fn welcome() -> Event {
    Event::message(ServerMessage::Welcome {
        msg: format!("Welcome to the server {DEFAULT_VERSION}"),
    })
}

impl Model {
    fn new() -> Self {
        Self {
            slots: [Slot::Closed; SLOTS],
            order: Vec::new(),
        }
    }

    fn name_of(&self, slot: usize) -> Option<usize> {
        match self.slots[slot] {
            Slot::Open { name } => name,
            Slot::Closed => None,
        }
    }

    /// `message` to every logged-in slot but `except`.
    fn to_others(&self, except: usize, message: &ServerMessage) -> Vec<(usize, Vec<Event>)> {
        let mut to: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&s| s != except)
            .collect();
        to.sort_unstable();
        to.into_iter()
            .map(|slot| (slot, vec![Event::message(message.clone())]))
            .collect()
    }

    /// The slot's user goes (after `BYE` or a close): its name is free, the others are told.
    fn leave(&mut self, slot: usize) -> Vec<(usize, Vec<Event>)> {
        let others = match self.name_of(slot) {
            Some(name) => self.to_others(
                slot,
                &ServerMessage::Left {
                    username: NAMES[name].to_owned(),
                },
            ),
            None => Vec::new(),
        };
        self.order.retain(|&s| s != slot);
        self.slots[slot] = Slot::Closed;
        others
    }

    /// Applies `op` and returns what every connection must receive.
    fn step(&mut self, op: Op) -> Received {
        let slot = op.slot();
        let mut received = Received::default();
        if self.slots[slot] == Slot::Closed {
            if let Op::Close { .. } = op {
                return received;
            }
            self.slots[slot] = Slot::Open { name: None };
            received.own.push(welcome());
        }
        let me = self.name_of(slot);
        match op {
            Op::Connect { .. } => {}
            Op::Login { name, .. } => {
                let taken = self.order.iter().any(|&s| self.name_of(s) == Some(name));
                let answer = if me.is_some() {
                    Err(code::ALREADY_LOGGED_IN)
                } else if !valid_name(NAMES[name]) {
                    Err(code::INVALID_USERNAME)
                } else if taken {
                    Err(code::NAME_IN_USE)
                } else {
                    Ok(())
                };
                received
                    .own
                    .push(Event::message(ServerMessage::LoginResp(answer)));
                if answer.is_ok() {
                    received.others = self.to_others(
                        slot,
                        &ServerMessage::Joined {
                            username: NAMES[name].to_owned(),
                        },
                    );
                    self.slots[slot] = Slot::Open { name: Some(name) };
                    self.order.push(slot);
                }
            }
            Op::ListUsers { .. } => {
                let answer = match me {
                    None => Err(code::NOT_LOGGED_IN),
                    Some(_) => Ok(self
                        .order
                        .iter()
                        .filter_map(|&s| self.name_of(s))
                        .map(|name| NAMES[name].to_owned())
                        .collect()),
                };
                received
                    .own
                    .push(Event::message(ServerMessage::ListUsersResp(answer)));
            }
            Op::Bye { .. } => {
                received.own.extend([
                    Event::message(ServerMessage::ByeResp(Ok(()))),
                    Event::Closed,
                ]);
                received.others = self.leave(slot);
            }
            Op::Close { .. } => {
                received.own.push(Event::Closed);
                received.others = self.leave(slot);
            }
            Op::Junk { kind, .. } => received.own.push(Event::message(JUNK[kind].1.clone())),
        }
        received
    }

    /// Draws an operation: mostly logins (on a connection that is not logged in, nine times
    /// in ten, if there is one; now and then a name in use) and user lists, now and then a
    /// connect, `BYE`, a close or junk.
    fn draw(&self, rng: &mut TestRng) -> Op {
        let all: Vec<usize> = (0..SLOTS).collect();
        let open: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&s| self.slots[s] != Slot::Closed)
            .collect();
        let closed: Vec<usize> = all.iter().copied().filter(|s| !open.contains(s)).collect();
        let not_logged_in: Vec<usize> = all
            .iter()
            .copied()
            .filter(|s| !self.order.contains(s))
            .collect();
        match rng.random_range(0..12) {
            0..5 => {
                let taken: Vec<usize> =
                    self.order.iter().filter_map(|&s| self.name_of(s)).collect();
                let name = if !taken.is_empty() && rng.random_bool(0.3) {
                    taken[rng.random_range(0..taken.len())]
                } else if rng.random_bool(0.75) {
                    rng.random_range(0..VALID_NAMES)
                } else {
                    rng.random_range(VALID_NAMES..NAMES.len())
                };
                Op::Login {
                    slot: pick_slot(rng, &not_logged_in, SLOTS),
                    name,
                }
            }
            5..8 => Op::ListUsers {
                slot: pick_slot(rng, &open, SLOTS),
            },
            8 => Op::Connect {
                slot: pick_slot(rng, &closed, SLOTS),
            },
            9 => Op::Bye {
                slot: pick_slot(rng, &open, SLOTS),
            },
            10 => Op::Close {
                slot: pick_slot(rng, &open, SLOTS),
            },
            _ => Op::Junk {
                slot: pick_slot(rng, &open, SLOTS),
                kind: rng.random_range(0..JUNK.len()),
            },
        }
    }
}

impl Generator for Model {
    type Op = Op;

    fn start() -> Self {
        Model::new()
    }

    fn next_op(&mut self, rng: &mut TestRng) -> Op {
        let op = self.draw(rng);
        self.step(op);
        op
    }
}

/// A raw connection: lines out, lines and the close in.
struct Conn {
    stream: TcpStream,
    /// Received and not yet read as a line.
    pending: Vec<u8>,
}

impl Conn {
    async fn open(server: &RunningServer) -> Result<Conn, Event> {
        match tokio::time::timeout(PATIENCE, TcpStream::connect(server.addr())).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Conn {
                    stream,
                    pending: Vec::new(),
                })
            }
            Ok(Err(e)) => Err(Event::Error(format!("cannot connect: {e}"))),
            Err(_) => Err(Event::Error("connecting timed out".into())),
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), Event> {
        let bytes = format!("{line}\n");
        match tokio::time::timeout(PATIENCE, self.stream.write_all(bytes.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Event::Error(format!("cannot send: {e}"))),
            Err(_) => Err(Event::Error("sending timed out".into())),
        }
    }

    /// The next line or the close; [`Event::Nothing`] if neither comes in time.
    async fn next(&mut self) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Event::Line(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) if self.pending.is_empty() => return Event::Closed,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    let rest = std::mem::take(&mut self.pending);
                    return Event::Error(format!(
                        "closed after an unterminated {:?}",
                        String::from_utf8_lossy(&rest)
                    ));
                }
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
                Err(_) => return Event::Nothing,
            }
        }
    }

    /// As many events as `expected` holds, fewer if the connection ends or goes quiet.
    async fn receive(&mut self, expected: &[Event]) -> Vec<Event> {
        let mut received = Vec::new();
        while received.len() < expected.len() {
            let event = self.next().await;
            let last = matches!(event, Event::Closed | Event::Nothing);
            received.push(event);
            if last {
                break;
            }
        }
        received
    }
}

/// The real server and the connections of a sequence.
struct Real<'a> {
    server: &'a RunningServer,
    slots: [Option<Conn>; SLOTS],
}

impl Real<'_> {
    /// Runs `op` and reads what every connection receives: as many events as the model
    /// expects (a missing one shows as [`Event::Nothing`], an extra one in a later read).
    async fn step(&mut self, op: Op, expected: &Received) -> Received {
        let slot = op.slot();
        let mut received = Received::default();
        if self.slots[slot].is_none() {
            if let Op::Close { .. } = op {
                return received;
            }
            match Conn::open(self.server).await {
                Ok(conn) => self.slots[slot] = Some(conn),
                Err(event) => {
                    received.own.push(event);
                    return received;
                }
            }
        }
        let conn = self.slots[slot].as_mut().unwrap();
        let sent = match op.line() {
            Some(line) => conn.send(&line).await,
            None if matches!(op, Op::Close { .. }) => {
                // EOF for the server; the test reads on until the server closes too, which
                // it does once it has dealt with the close (the user has left).
                let _ = conn.stream.shutdown().await;
                Ok(())
            }
            None => Ok(()),
        };
        received.own = conn.receive(&expected.own).await;
        if let Err(event) = sent {
            received.own.push(event);
        }
        if matches!(received.own.last(), Some(Event::Closed)) {
            self.slots[slot] = None;
        }
        if received.own != expected.own {
            return received;
        }
        for (other, events) in &expected.others {
            let events = match self.slots[*other].as_mut() {
                Some(conn) => conn.receive(events).await,
                None => vec![Event::Error("no connection".into())],
            };
            received.others.push((*other, events));
        }
        received
    }
}

/// Runs `ops` against a fresh server with `config` and the model side by side, then asks
/// every open connection for the user list; fails at the first difference.
async fn check_sequence(config: ServerConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let server = server::spawn(config).await.unwrap();
    let mut real = Real {
        server: &server,
        slots: Default::default(),
    };
    // After the sequence, every connection still open asks for the user list.
    let mut end = Model::new();
    for &op in ops {
        end.step(op);
    }
    let audit: Vec<Op> = (0..SLOTS)
        .filter(|&slot| end.slots[slot] != Slot::Closed)
        .map(|slot| Op::ListUsers { slot })
        .collect();
    let mut model = Model::new();
    let mut result = Ok(());
    for (i, &op) in ops.iter().chain(&audit).enumerate() {
        let expected = model.step(op);
        let actual = real.step(op, &expected).await;
        if actual != expected {
            let step = if i < ops.len() {
                format!("step {} of {}", i + 1, ops.len())
            } else {
                "the final user lists".to_owned()
            };
            result = Err(TestCaseError::fail(format!(
                "{step}, {op:?}: the server sent {actual:?}, the model expects {expected:?}"
            )));
            break;
        }
    }
    drop(real);
    if tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .is_err()
    {
        return Err(TestCaseError::fail("the server did not shut down"));
    }
    result
}

/// A server as the spec says, without pings.
fn spec_server() -> ServerConfig {
    ServerConfig {
        ping_interval: Duration::from_secs(3600),
        ..ServerConfig::default()
    }
}

/// The property, for servers made with `config`: what every connection receives in every
/// sequence is the model's.
fn run(
    mut runner: TestRunner,
    config: impl Fn() -> ServerConfig,
) -> Result<(), TestError<Vec<Op>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runner.run(&sequences::<Model>(1..=20), |ops| {
        runtime.block_on(check_sequence(config(), &ops))
    })
}

#[test]
fn the_server_follows_the_model() {
    state_machine::expect_pass(run(state_machine::runner(64, false), spec_server));
}

/// The property must be able to fail: against a server that lets two clients log in with
/// the same name, it fails, and shrinking leaves a short sequence (two logins as one name).
#[test]
fn a_server_that_allows_duplicate_names_is_caught() {
    // A fixed seed: the same sequences every run, so the test cannot flake.
    let result = run(state_machine::runner(64, true), || ServerConfig {
        faults: Fault::AllowDuplicateName.into(),
        ..spec_server()
    });
    let ops = state_machine::expect_failure("allow-duplicate-name", result);
    assert!(ops.len() <= 6, "shrinking left {} operations", ops.len());
    assert!(
        ops.iter()
            .filter(|op| matches!(op, Op::Login { .. }))
            .count()
            >= 2,
        "{ops:?}"
    );
}
