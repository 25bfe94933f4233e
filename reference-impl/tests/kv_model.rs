//! A state-machine property test of the key-value server: random sequences of logins, data
//! requests, disconnects, dropped connections and junk on three connections for three client
//! ids, run against a real server in this process (over TLS, through the client library),
//! every answer compared with what a small model of `specs/kv-tls.md` expects.
//!
//! ```text
//! model     passwords  id -> the password of its first successful CONNECT (kept forever)
//!           data       id -> key -> value (a session's data; survives a closed connection)
//!           slots      3 connections, each closed, open (not logged in) or logged in as id
//!
//! CONNECT id pw   slot logged in           -> dropped, no answer; its session's data gone
//!                 another password         -> CONNECT: ERROR (connection stays, logged out)
//!                 id logged in elsewhere   -> CONNECT: ERROR
//!                 else                     -> CONNECT: OK (the first password is remembered)
//! PUT/GET/DELETE  not logged in            -> dropped, no answer
//!                 logged in                -> PUT: OK / GET value | GET: ERROR / DELETE: OK
//! DISCONNECT      logged in                -> DISCONNECT: OK, closed, the session's data gone
//!                                            (a request after it finds the connection closed)
//!                 not logged in            -> dropped, no answer
//! close           (no DISCONNECT)          -> the session keeps its data for the next login
//! junk            (malformed request)      -> dropped, no answer, the session's data gone
//! ```
//!
//! On a closed slot, `CONNECT` and junk open a new connection first; the other operations do
//! nothing (a client without a connection sends nothing). The model draws each operation for
//! the state the ones before it leave (requests mostly on logged-in connections, logins on
//! the others), and shrinking leaves operations out until none can go (see
//! `state_machine/mod.rs`), so a failure is reported as a short sequence.
//! `a_server_that_keeps_deleted_keys_is_caught` runs the same property against a server with
//! a deliberate fault and checks that it fails, with a short sequence.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRng, TestRunner};
use reference_impl::kv::auth::HASH_LEN;
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::{ClientMessage, Dialect, Reply};
use reference_impl::kv::server::{self, Fault, RunningServer, ServerConfig};
use reference_impl::tls::{self, ClientTrust};
use rustls_pki_types::ServerName;
use state_machine::{Generator, pick_slot, sequences};

mod state_machine;

/// How long any expected event (a connection, a reply, a close) may take.
const PATIENCE: Duration = Duration::from_secs(3);

/// Connections the sequences use.
const SLOTS: usize = 3;
const IDS: [&str; 3] = ["alice", "bob", "carol"];
/// Keys and values: a few, so that sequences hit the same key again; spaces are allowed.
const KEYS: [&str; 2] = ["colour", "a key"];
const VALUES: [&str; 3] = ["blue", "", "x y z"];
/// Two passwords per id: the right one and a wrong one.
const PASSWORDS: u8 = 2;

/// Requests that are not the protocol's: each makes the server drop the connection. Sent
/// through the client library, which encodes without validating.
fn junk(kind: usize) -> ClientMessage {
    match kind {
        // "GET \n": a command without its key.
        0 => ClientMessage::Get { key: String::new() },
        // A non-ASCII key.
        1 => ClientMessage::Delete {
            key: "caf\u{e9}".into(),
        },
        // A non-ASCII value after a valid PUT line.
        _ => ClientMessage::Put {
            key: "colour".into(),
            value: "\u{2603}".into(),
        },
    }
}
const JUNK_KINDS: usize = 3;

/// A request sent after `DISCONNECT: OK` to check that the connection is closed.
fn probe() -> ClientMessage {
    ClientMessage::Connect {
        id: "probe".into(),
        hash: [0; HASH_LEN],
    }
}

/// The 32 bytes a password stands for. The server uses first-use accounts, which compare the
/// hash the first CONNECT presented: no PBKDF2 needed.
fn hash(password: u8) -> [u8; HASH_LEN] {
    [password + 1; HASH_LEN]
}

/// One step of a sequence, on connection `slot`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Login {
        slot: usize,
        id: usize,
        password: u8,
    },
    Put {
        slot: usize,
        key: usize,
        value: usize,
    },
    Get {
        slot: usize,
        key: usize,
    },
    Delete {
        slot: usize,
        key: usize,
    },
    Disconnect {
        slot: usize,
    },
    /// Close the connection without `DISCONNECT`.
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
            Op::Login { slot, id, password } => {
                write!(f, "c{slot}: CONNECT {} (password {password})", IDS[id])
            }
            Op::Put { slot, key, value } => {
                write!(f, "c{slot}: PUT {:?} = {:?}", KEYS[key], VALUES[value])
            }
            Op::Get { slot, key } => write!(f, "c{slot}: GET {:?}", KEYS[key]),
            Op::Delete { slot, key } => write!(f, "c{slot}: DELETE {:?}", KEYS[key]),
            Op::Disconnect { slot } => write!(f, "c{slot}: DISCONNECT"),
            Op::Close { slot } => write!(f, "c{slot}: close without DISCONNECT"),
            Op::Junk { slot, kind } => {
                let mut bytes = Vec::new();
                junk(kind).encode(Dialect::Spec, &mut bytes);
                write!(f, "c{slot}: junk \"{}\"", bytes.escape_ascii())
            }
        }
    }
}

impl Op {
    fn slot(self) -> usize {
        match self {
            Op::Login { slot, .. }
            | Op::Put { slot, .. }
            | Op::Get { slot, .. }
            | Op::Delete { slot, .. }
            | Op::Disconnect { slot }
            | Op::Close { slot }
            | Op::Junk { slot, .. } => slot,
        }
    }

    /// Whether the op opens a connection on a closed slot (a client with no connection
    /// sends nothing else).
    fn opens(self) -> bool {
        matches!(self, Op::Login { .. } | Op::Junk { .. })
    }
}

/// What one step produced, as the server answered it (or as the model expects it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Nothing to do: a request, `DISCONNECT` or a close on a slot without a connection.
    Nothing,
    ConnectOk,
    ConnectError,
    PutOk,
    PutError,
    /// `GET <value>` (CRC verified by the client) or `GET: ERROR` (`None`).
    Value(Option<String>),
    DeleteOk,
    DeleteError,
    /// `DISCONNECT: OK`, then the connection closed.
    DisconnectOk,
    /// The server closed the connection without an answer.
    Dropped,
    /// The connection was closed by the client.
    Closed,
    /// Anything else: a wrong reply, a timeout, a bad CRC.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Closed,
    Open,
    LoggedIn(usize),
}

/// What the protocol says the server's state is.
#[derive(Debug, Clone)]
struct Model {
    passwords: HashMap<usize, u8>,
    data: HashMap<usize, BTreeMap<usize, usize>>,
    slots: [Slot; SLOTS],
}

impl Model {
    fn new() -> Self {
        Self {
            passwords: HashMap::new(),
            data: HashMap::new(),
            slots: [Slot::Closed; SLOTS],
        }
    }

    fn logged_in_anywhere(&self, id: usize) -> bool {
        self.slots.contains(&Slot::LoggedIn(id))
    }

    /// Draws an operation: mostly requests (on a logged-in connection, nine times in ten,
    /// if there is one) and logins (on a connection that is not logged in, likewise; mostly
    /// a login while nobody is logged in), now and then a disconnect, a close or junk.
    fn draw(&self, rng: &mut TestRng) -> Op {
        let logged_in: Vec<usize> = (0..SLOTS)
            .filter(|&i| matches!(self.slots[i], Slot::LoggedIn(_)))
            .collect();
        let not_logged_in: Vec<usize> = (0..SLOTS).filter(|i| !logged_in.contains(i)).collect();
        // With nobody logged in, mostly a login: requests would find no connection.
        let kind = if logged_in.is_empty() && rng.random_bool(0.8) {
            0
        } else {
            rng.random_range(0..16)
        };
        match kind {
            0..3 => {
                // Half the time an id whose session is waiting with data, to come back to it.
                let waiting: Vec<usize> = (0..IDS.len())
                    .filter(|&id| self.data.contains_key(&id) && !self.logged_in_anywhere(id))
                    .collect();
                let id = if !waiting.is_empty() && rng.random_bool(0.5) {
                    waiting[rng.random_range(0..waiting.len())]
                } else {
                    rng.random_range(0..IDS.len())
                };
                // Mostly the right password, once there is one.
                let password = match self.passwords.get(&id) {
                    Some(&password) if rng.random_bool(0.75) => password,
                    _ => rng.random_range(0..PASSWORDS),
                };
                Op::Login {
                    slot: pick_slot(rng, &not_logged_in, SLOTS),
                    id,
                    password,
                }
            }
            3..7 => Op::Put {
                slot: pick_slot(rng, &logged_in, SLOTS),
                key: rng.random_range(0..KEYS.len()),
                value: rng.random_range(0..VALUES.len()),
            },
            7..11 => {
                let slot = pick_slot(rng, &logged_in, SLOTS);
                let key = self.pick_key(rng, slot);
                Op::Get { slot, key }
            }
            11..13 => {
                let slot = pick_slot(rng, &logged_in, SLOTS);
                let key = self.pick_key(rng, slot);
                Op::Delete { slot, key }
            }
            13 => Op::Disconnect {
                slot: pick_slot(rng, &logged_in, SLOTS),
            },
            14 => Op::Close {
                slot: pick_slot(rng, &logged_in, SLOTS),
            },
            _ => Op::Junk {
                slot: pick_slot(rng, &logged_in, SLOTS),
                kind: rng.random_range(0..JUNK_KINDS),
            },
        }
    }

    /// A key for a request on `slot`: half the time one that its session holds, if any.
    fn pick_key(&self, rng: &mut TestRng, slot: usize) -> usize {
        let held: Vec<usize> = match self.slots[slot] {
            Slot::LoggedIn(id) => self
                .data
                .get(&id)
                .map(|data| data.keys().copied().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if !held.is_empty() && rng.random_bool(0.5) {
            held[rng.random_range(0..held.len())]
        } else {
            rng.random_range(0..KEYS.len())
        }
    }

    /// A protocol violation on `slot`: dropped, and a logged-in session loses its data.
    fn violation(&mut self, slot: usize) -> Outcome {
        if let Slot::LoggedIn(id) = self.slots[slot] {
            self.data.remove(&id);
        }
        self.slots[slot] = Slot::Closed;
        Outcome::Dropped
    }

    /// Applies `op` and returns what the server must answer.
    fn step(&mut self, op: Op) -> Outcome {
        let slot = op.slot();
        if self.slots[slot] == Slot::Closed {
            if !op.opens() {
                return Outcome::Nothing;
            }
            self.slots[slot] = Slot::Open;
        }
        if let Op::Close { .. } = op {
            // The session (if any) becomes inactive and keeps its data.
            self.slots[slot] = Slot::Closed;
            return Outcome::Closed;
        }
        let state = self.slots[slot];
        match (op, state) {
            (Op::Junk { .. }, _) => self.violation(slot),
            (Op::Login { .. }, Slot::LoggedIn(_)) => self.violation(slot),
            (Op::Login { id, password, .. }, _) => {
                if self.passwords.get(&id).is_some_and(|&p| p != password)
                    || self.logged_in_anywhere(id)
                {
                    return Outcome::ConnectError;
                }
                self.passwords.entry(id).or_insert(password);
                self.slots[slot] = Slot::LoggedIn(id);
                Outcome::ConnectOk
            }
            (_, Slot::Open | Slot::Closed) => self.violation(slot),
            (Op::Put { key, value, .. }, Slot::LoggedIn(id)) => {
                self.data.entry(id).or_default().insert(key, value);
                Outcome::PutOk
            }
            (Op::Get { key, .. }, Slot::LoggedIn(id)) => Outcome::Value(
                self.data
                    .get(&id)
                    .and_then(|data| data.get(&key))
                    .map(|&value| VALUES[value].to_owned()),
            ),
            (Op::Delete { key, .. }, Slot::LoggedIn(id)) => {
                if let Some(data) = self.data.get_mut(&id) {
                    data.remove(&key);
                }
                Outcome::DeleteOk
            }
            (Op::Disconnect { .. }, Slot::LoggedIn(id)) => {
                self.data.remove(&id);
                self.slots[slot] = Slot::Closed;
                Outcome::DisconnectOk
            }
            (Op::Close { .. }, _) => unreachable!("handled above"),
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

/// A certificate and the TLS configurations of both sides, made once.
struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl Tls {
    fn new() -> Self {
        let cert = tls::self_signed(&[]).unwrap();
        Self {
            server: tls::server_config(vec![cert.cert_der.clone()], cert.key_der).unwrap(),
            client: tls::client_config(ClientTrust::Roots(vec![cert.cert_der])).unwrap(),
        }
    }
}

/// The real server and the connections of a sequence.
struct Real<'a> {
    server: &'a RunningServer,
    tls: &'a Tls,
    slots: [Option<Client>; SLOTS],
}

/// A request's failure as an outcome: a closed connection is the server dropping it.
fn failure(e: ClientError) -> Outcome {
    match e {
        ClientError::Closed { .. } | ClientError::Io { .. } => Outcome::Dropped,
        other => Outcome::Failed(other.to_string()),
    }
}

impl Real<'_> {
    /// The connection of `slot`, opened if it is closed.
    async fn connection(&mut self, slot: usize) -> Result<&mut Client, Outcome> {
        if self.slots[slot].is_none() {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let connect = Client::connect(
                self.server.addr(),
                self.tls.client.clone(),
                name,
                Dialect::Spec,
            );
            let mut client = match tokio::time::timeout(PATIENCE, connect).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(Outcome::Failed(format!("cannot connect: {e}"))),
                Err(_) => return Err(Outcome::Failed("connecting timed out".into())),
            };
            client.set_timeout(PATIENCE);
            self.slots[slot] = Some(client);
        }
        Ok(self.slots[slot].as_mut().unwrap())
    }

    /// Waits (boundedly) until the server has noticed that the connection of `id` closed, so
    /// that the next login of `id` does not race with it.
    async fn wait_released(&self, id: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.server.store().is_active(IDS[id]) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Runs `op`. `logged_in` is the id the model had logged in on the op's slot before it:
    /// after a close the test waits for the server to release that session.
    async fn step(&mut self, op: Op, logged_in: Option<usize>) -> Outcome {
        let slot = op.slot();
        if self.slots[slot].is_none() && !op.opens() {
            return Outcome::Nothing;
        }
        if let Op::Close { .. } = op {
            self.slots[slot] = None;
            if let Some(id) = logged_in {
                self.wait_released(id).await;
            }
            return Outcome::Closed;
        }
        let client = match self.connection(slot).await {
            Ok(client) => client,
            Err(outcome) => return outcome,
        };
        let outcome = match op {
            Op::Login { id, password, .. } => match client.login(IDS[id], &hash(password)).await {
                Ok(()) => Outcome::ConnectOk,
                Err(ClientError::LoginRefused { .. }) => Outcome::ConnectError,
                Err(e) => failure(e),
            },
            Op::Put { key, value, .. } => match client.put(KEYS[key], VALUES[value]).await {
                Ok(()) => Outcome::PutOk,
                Err(ClientError::Refused { .. }) => Outcome::PutError,
                Err(e) => failure(e),
            },
            Op::Get { key, .. } => match client.get(KEYS[key]).await {
                Ok(value) => Outcome::Value(value),
                Err(e) => failure(e),
            },
            Op::Delete { key, .. } => match client.delete(KEYS[key]).await {
                Ok(()) => Outcome::DeleteOk,
                Err(ClientError::Refused { .. }) => Outcome::DeleteError,
                Err(e) => failure(e),
            },
            Op::Disconnect { .. } => match client.request(&ClientMessage::Disconnect).await {
                // The server must close the connection: a request after it finds it closed.
                // (A CONNECT: on a connection left open, anything else would be dropped.)
                Ok(Reply::DisconnectOk) => match client.request(&probe()).await {
                    Ok(reply) => Outcome::Failed(format!(
                        "DISCONNECT: OK, and the connection stayed open (it answered `{reply}`)"
                    )),
                    Err(ClientError::Closed { .. } | ClientError::Io { .. }) => {
                        self.slots[slot] = None;
                        Outcome::DisconnectOk
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                Ok(reply) => Outcome::Failed(format!("the server answered `{reply}`")),
                Err(e) => failure(e),
            },
            Op::Junk { kind, .. } => match client.request(&junk(kind)).await {
                Ok(reply) => Outcome::Failed(format!("the server answered `{reply}`")),
                Err(e) => failure(e),
            },
            Op::Close { .. } => unreachable!("handled above"),
        };
        if matches!(outcome, Outcome::Dropped | Outcome::Failed(_)) {
            self.slots[slot] = None;
        }
        outcome
    }
}

/// Runs `ops` against a fresh server with `config` and the model side by side; fails at the
/// first answer the model does not expect.
async fn check_sequence(tls: &Tls, config: ServerConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let server = server::spawn(config, tls.server.clone()).await.unwrap();
    let mut real = Real {
        server: &server,
        tls,
        slots: Default::default(),
    };
    let mut model = Model::new();
    let mut result = Ok(());
    for (i, &op) in ops.iter().enumerate() {
        let logged_in = match model.slots[op.slot()] {
            Slot::LoggedIn(id) => Some(id),
            _ => None,
        };
        let expected = model.step(op);
        let actual = real.step(op, logged_in).await;
        if actual != expected {
            result = Err(TestCaseError::fail(format!(
                "step {} of {}, {op:?}: the server gave {actual:?}, the model expects \
                 {expected:?}",
                i + 1,
                ops.len()
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

/// The runtime every case runs on, and the TLS configurations.
struct Harness {
    runtime: tokio::runtime::Runtime,
    tls: Tls,
}

impl Harness {
    fn new() -> Self {
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            tls: Tls::new(),
        }
    }

    /// The property, for servers made with `config`: the answers to every sequence are the
    /// model's.
    fn run(
        &self,
        mut runner: TestRunner,
        config: impl Fn() -> ServerConfig,
    ) -> Result<(), TestError<Vec<Op>>> {
        runner.run(&sequences::<Model>(1..=20), |ops| {
            self.runtime
                .block_on(check_sequence(&self.tls, config(), &ops))
        })
    }
}

#[test]
fn the_server_follows_the_model() {
    let harness = Harness::new();
    state_machine::expect_pass(
        harness.run(state_machine::runner(64, false), ServerConfig::default),
    );
}

/// The property must be able to fail: against a server whose `DELETE` answers `DELETE: OK`
/// but keeps the key, it fails, and shrinking leaves a short sequence (log in, put, delete,
/// get).
#[test]
fn a_server_that_keeps_deleted_keys_is_caught() {
    let harness = Harness::new();
    // A fixed seed: the same sequences every run, so the test cannot flake.
    let result = harness.run(state_machine::runner(64, true), || ServerConfig {
        faults: Fault::DeleteKeepsKey.into(),
        ..ServerConfig::default()
    });
    let ops = state_machine::expect_failure("delete-keeps-key", result);
    assert!(ops.len() <= 6, "shrinking left {} operations", ops.len());
    assert!(ops.iter().any(|op| matches!(op, Op::Delete { .. })));
    assert!(matches!(ops.last(), Some(Op::Get { .. })), "{ops:?}");
}
