//! Runs a case against the reference server and records what came back after each action:
//! the differential oracle's expectations.
//!
//! The reference server runs in this process, so its replies arrive within microseconds;
//! after each action the recorder waits a short while for the first message and a shorter
//! while for each next one. A reply that comes later still lands on the right connection,
//! only one action later in the scenario, where the runner will still wait for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::case::{Action, Conn, Op, template_text};
use crate::run::connection::{Connection, Incoming, RecvError};
use crate::run::framing::Framing;
use crate::scenario::model::Span;
use crate::scenario::template::{self, Env};
use crate::transport::{self, Transport};

/// How long the recorder waits for each message after the first of an action (the first:
/// the grammar's `reply_wait`).
const MORE: Duration = Duration::from_millis(2);
/// How long a close waits for the server's side to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Bound on connecting to the reference server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest message the recorder takes.
const RECV_LIMIT: usize = 1024 * 1024;

/// What arrived on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Vec<u8>),
    /// The server closed the connection (or reset it).
    Closed,
}

/// What one action did on the reference server.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// False when the action could not run: its connection had already been closed.
    pub ran: bool,
    /// Messages and closes, connection by connection in arrival order.
    pub events: Vec<(Conn, Event)>,
}

/// Where the reference server is.
#[derive(Debug, Clone)]
pub struct Reference {
    pub addr: String,
    pub transport: Transport,
    pub framing: Framing,
    /// Variables templates need (`password`, the protocol's).
    pub vars: BTreeMap<String, String>,
    /// Whether the server speaks first on a new connection (chat's WELCOME): if not, a
    /// connect is not followed by a wait.
    pub greets: bool,
    /// How long to wait for the first message after an action.
    pub first_wait: Duration,
    /// How long a message without a line end waits for more (the suite's `quiet`).
    pub quiet: Duration,
}

/// The reference server could not be talked to: a harness problem, not a finding.
#[derive(Debug, thiserror::Error)]
#[error("the reference server: {0}")]
pub struct ObserveError(pub String);

/// What a case did on the reference server.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Per action.
    pub seen: Vec<Seen>,
    /// Where each connection came from (servers that answer with a UUID of it).
    pub locals: BTreeMap<Conn, String>,
}

/// Runs `actions` against the reference with `uniq` and records each one's effect.
pub async fn observe(
    reference: &Reference,
    actions: &[Action],
    uniq: &str,
) -> Result<Observation, ObserveError> {
    let mut env = Env::default();
    for (k, v) in &reference.vars {
        env.set(k.clone(), v.clone().into_bytes());
    }
    env.set("uniq", uniq.as_bytes().to_vec());
    let mut conns: BTreeMap<Conn, Connection> = BTreeMap::new();
    // Connections that were open once and are closed now (by either side).
    let mut gone: Vec<Conn> = Vec::new();
    let mut seen = Vec::with_capacity(actions.len());
    let mut locals = BTreeMap::new();
    for action in actions {
        let mut s = Seen::default();
        if gone.contains(&action.conn) {
            seen.push(s);
            continue;
        }
        if !conns.contains_key(action.conn) && action.op != Op::Close {
            let (conn, local) = connect(reference).await?;
            conns.insert(action.conn, conn);
            if let Some(local) = local {
                locals.insert(action.conn, local.to_string());
            }
        }
        s.ran = true;
        match &action.op {
            Op::Connect => {}
            Op::Send(parts) => {
                let text = template_text(parts);
                let t = template::parse(&text, Span::default())
                    .map_err(|e| ObserveError(format!("a case's message `{text}`: {e}")))?;
                let bytes = template::eval(&t, &env)
                    .map_err(|e| ObserveError(format!("a case's message: {e}")))?;
                if let Some(conn) = conns.get_mut(action.conn) {
                    // A write the server refuses shows as the close that follows.
                    let _ = conn.write(&bytes).await;
                }
            }
            Op::Close => {
                if let Some(mut conn) = conns.remove(action.conn) {
                    conn.shutdown(CLOSE_WAIT).await;
                    let deadline = Instant::now() + CLOSE_WAIT;
                    while let Ok(Incoming::Message(..)) = conn.recv(deadline).await {}
                    gone.push(action.conn);
                }
            }
        }
        if action.op != Op::Connect || reference.greets {
            // Messages cut by quiet arrive only once the quiet has passed.
            let quiet = match reference.framing {
                Framing::Chunks => reference.quiet,
                _ => Duration::ZERO,
            };
            let waits = (reference.first_wait + quiet, MORE + quiet);
            collect(&mut conns, action.conn, waits, &mut s.events, &mut gone).await;
        }
        seen.push(s);
    }
    Ok(Observation { seen, locals })
}

async fn connect(
    reference: &Reference,
) -> Result<(Connection, Option<std::net::SocketAddr>), ObserveError> {
    let connected = transport::connect(&reference.addr, &reference.transport, CONNECT_TIMEOUT)
        .await
        .map_err(|e| ObserveError(e.to_string()))?;
    let conn = Connection::start(
        connected.stream,
        connected.cipher,
        reference.framing,
        reference.quiet,
        RECV_LIMIT,
        Arc::from(Vec::new()),
    );
    Ok((conn, connected.local))
}

/// Takes what arrives after an action: on the acting connection first (it waits longest
/// for the reply), then on the others (broadcasts).
async fn collect(
    conns: &mut BTreeMap<Conn, Connection>,
    acting: Conn,
    (first, more): (Duration, Duration),
    events: &mut Vec<(Conn, Event)>,
    gone: &mut Vec<Conn>,
) {
    let order: Vec<Conn> = std::iter::once(acting)
        .filter(|c| conns.contains_key(c))
        .chain(conns.keys().copied().filter(|&c| c != acting))
        .collect();
    for name in order {
        let Some(conn) = conns.get_mut(name) else {
            continue;
        };
        let mut wait = if name == acting { first } else { more };
        loop {
            match conn.recv(Instant::now() + wait).await {
                Ok(Incoming::Message(frame, _)) => {
                    // Heartbeats are the background's business, not the case's.
                    if frame.data != b"PING" {
                        events.push((name, Event::Message(frame.data)));
                    }
                    wait = more;
                }
                Ok(Incoming::Closed(..) | Incoming::TooLong(..))
                | Err(RecvError::AlreadyClosed(_)) => {
                    events.push((name, Event::Closed));
                    conns.remove(name);
                    gone.push(name);
                    break;
                }
                Err(RecvError::Timeout) => break,
            }
        }
    }
}
