//! Property tests of abrupt disconnects: connections cut at a random byte of a random
//! message, by a FIN or a reset, and the server's state compared with a model afterwards.
//!
//! ```text
//! key-value (TLS)  rounds of sessions, the sessions of a round concurrent, one per client id;
//!                  each sends CONNECT, PUT/GET/DELETE and maybe DISCONNECT, one message at a
//!                  time, each answered before the next goes; it is cut after any number of
//!                  whole messages plus any proper prefix of the next one (a FIN without
//!                  TLS close_notify, or a reset), or sends junk after a whole message
//!   model          id -> key -> value; a message counts once its reply has been read, a
//!                  partial one never; DISCONNECT and junk clear the id's data, a cut keeps it
//!   checked        every reply on the way; nothing answers a cut message; after each round
//!                  no session is active; at the end the store holds exactly the model's
//!                  data, and every id logs in again at once and GETs exactly it
//! chat             users log in, broadcast, send private messages, start and join the game,
//!                  ask for guesses, lists and BYE; connections are cut inside a line (a
//!                  LOGIN on a new connection included) by a FIN or a reset
//!   model          the logged-in users in login order, the game's participants (its join
//!                  window outlasts the test), and every line each connection must receive
//!   checked        every line every connection receives, LEFT for each cut user included;
//!                  at the end a new user finds the game state the model predicts (a new
//!                  game starts if none should be running), every name not logged in logs in
//!                  again (and joins the running game, if any), and every connection's user
//!                  list is the model's
//! packet           sessions, each with its own student id, cut at any byte of the hello or
//!                  of the reply (FIN or reset), or completed
//!   model          the result each session must get, and the scores recorded: none for a
//!                  hello cut short, 10 or 20 for a reply cut short (a submission), 50 for a
//!                  completed one
//! ```
//!
//! Each case starts its own server in this process. Every property is also run against a
//! server with one deliberate fault (or sabotage) in the matching behaviour, on a fixed case,
//! and must fail there. The number of cases follows `PROPTEST_CASES` (default below).
#![allow(clippy::unwrap_used)]

use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tokio::time::Instant;

mod common;
use common::PATIENCE;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 64;

/// How a cut connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// FIN: the write side is shut down, then the test reads until the server closes too.
    Fin,
    /// A reset (zero linger), without reading anything more.
    Reset,
}

fn close_strategy() -> impl Strategy<Value = Close> {
    prop_oneof![Just(Close::Fin), Just(Close::Reset)]
}

/// A runner for the configured number of cases that saves no failures to files.
fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `test` on values of `strategy`; panics with the reason and the minimal failing value.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), String>)
where
    S::Value: fmt::Debug,
{
    let result = runner().run(&strategy, |value| test(value).map_err(TestCaseError::fail));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => panic!("{reason}\nminimal case: {value:#?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

/// A runtime for the servers and clients of a test: two workers, so that the concurrent
/// sessions really overlap.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `what` within `PATIENCE`, or an error naming it.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(PATIENCE, future)
        .await
        .map_err(|_| format!("{what}: nothing within {PATIENCE:?}"))
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Makes the next close of `tcp` a reset.
fn zero_linger(tcp: &tokio::net::TcpStream) {
    // Deprecated only because a non-zero linger blocks on drop; a zero one does not.
    #[allow(deprecated)]
    let _ = tcp.set_linger(Some(Duration::ZERO));
}

// ------------------------------------------------------------------------------------------
// Key-value over TLS

mod kv {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use reference_impl::kv::auth::HASH_LEN;
    use reference_impl::kv::codec::{ClientMessage, Dialect, Reply, ReplyDecoder};
    use reference_impl::kv::server::{Sabotage, ServerConfig};
    use reference_impl::kv::store::Store;
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinSet;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    use super::*;

    pub const IDS: [&str; 3] = ["ann", "ben", "cat"];
    const KEYS: [&str; 3] = ["colour", "shape", "a key"];
    /// Lines the protocol does not know: the server drops the connection and the data.
    const JUNK: [&[u8]; 2] = [b"FOO bar\n", b"GET \n"];

    /// Each id's password hash, the same in every session (first-use accounts: no PBKDF2).
    fn hash(id: usize) -> [u8; HASH_LEN] {
        [b'a' + u8::try_from(id).unwrap(); HASH_LEN]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Cmd {
        Put(usize),
        Get(usize),
        Delete(usize),
    }

    /// How a session ends.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum End {
        /// After `message` whole messages (modulo one more than there are: all of them at
        /// most) and the first `byte` bytes of the next one (modulo its length, so never all
        /// of it), the connection is closed.
        Cut {
            message: usize,
            byte: usize,
            close: Close,
        },
        /// After the login and `after` commands (all, if there are fewer; before any
        /// `DISCONNECT`), a line the protocol does not know.
        Junk { after: usize, kind: usize },
    }

    /// One session of one id.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Plan {
        pub cmds: Vec<Cmd>,
        pub disconnect: bool,
        pub end: End,
    }

    /// A round: at most one session per id (index), all at once.
    pub type Round = Vec<Option<Plan>>;

    fn cmd() -> impl Strategy<Value = Cmd> {
        let key = 0..KEYS.len();
        prop_oneof![
            3 => key.clone().prop_map(Cmd::Put),
            2 => key.clone().prop_map(Cmd::Get),
            1 => key.prop_map(Cmd::Delete),
        ]
    }

    fn end() -> impl Strategy<Value = End> {
        prop_oneof![
            5 => (0..8usize, 0..48usize, close_strategy())
                .prop_map(|(message, byte, close)| End::Cut { message, byte, close }),
            1 => (0..6usize, 0..JUNK.len()).prop_map(|(after, kind)| End::Junk { after, kind }),
        ]
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (
            prop::collection::vec(cmd(), 0..=5),
            prop::bool::weighted(0.25),
            end(),
        )
            .prop_map(|(cmds, disconnect, end)| Plan {
                cmds,
                disconnect,
                end,
            })
    }

    pub fn rounds() -> impl Strategy<Value = Vec<Round>> {
        let round = prop::collection::vec(prop::option::weighted(0.6, plan()), IDS.len());
        prop::collection::vec(round, 1..=4)
    }

    /// A message of a session, with what it asks.
    #[derive(Debug, Clone)]
    enum Msg {
        Connect,
        Put(usize, String),
        Get(usize),
        Delete(usize),
        Disconnect,
    }

    impl Msg {
        fn bytes(&self, id: usize) -> Vec<u8> {
            let message = match self {
                Msg::Connect => ClientMessage::Connect {
                    id: IDS[id].to_owned(),
                    hash: hash(id),
                },
                Msg::Put(key, value) => ClientMessage::Put {
                    key: KEYS[*key].to_owned(),
                    value: value.clone(),
                },
                Msg::Get(key) => ClientMessage::Get {
                    key: KEYS[*key].to_owned(),
                },
                Msg::Delete(key) => ClientMessage::Delete {
                    key: KEYS[*key].to_owned(),
                },
                Msg::Disconnect => ClientMessage::Disconnect,
            };
            let mut out = Vec::new();
            message.encode(Dialect::Spec, &mut out);
            out
        }
    }

    /// A raw TLS connection: bytes out, replies decoded.
    struct Conn {
        stream: Box<TlsStream<TcpStream>>,
        replies: ReplyDecoder,
    }

    impl Conn {
        async fn open(
            addr: std::net::SocketAddr,
            tls: Arc<rustls::ClientConfig>,
        ) -> Result<Self, String> {
            let tcp = common::tcp_connect(addr).await;
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let stream = within("TLS handshake", TlsConnector::from(tls).connect(name, tcp))
                .await?
                .map_err(|e| format!("TLS handshake: {e}"))?;
            Ok(Self {
                stream: Box::new(stream),
                replies: ReplyDecoder::new(Dialect::Spec),
            })
        }

        async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
            within("a write", async {
                self.stream.write_all(bytes).await?;
                self.stream.flush().await
            })
            .await?
            .map_err(|e| format!("sending `{}`: {e}", show(bytes)))
        }

        /// Reads once: `None` at the end of the stream (a close, a reset, a TLS error).
        async fn read(&mut self) -> Result<Option<()>, String> {
            let mut buf = [0u8; 4096];
            match within("a read", self.stream.read(&mut buf)).await? {
                Ok(0) | Err(_) => Ok(None),
                Ok(n) => {
                    self.replies.feed(&buf[..n]);
                    Ok(Some(()))
                }
            }
        }

        async fn reply(&mut self) -> Result<Reply, String> {
            loop {
                match self.replies.next_reply() {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(e) => return Err(format!("an undecodable reply: {e}")),
                }
                if self.read().await?.is_none() {
                    return Err("the server closed the connection instead of replying".into());
                }
            }
        }

        /// The server closes the connection and sends nothing more.
        async fn expect_close(&mut self) -> Result<(), String> {
            while self.read().await?.is_some() {
                if self.replies.buffered() > 0 {
                    break;
                }
            }
            match self.replies.buffered() {
                0 => Ok(()),
                _ => Err(format!(
                    "expected the close, received {:?}",
                    self.replies.next_reply()
                )),
            }
        }
    }

    /// The store of one id, as the model sees it.
    type Data = BTreeMap<usize, String>;

    /// What a session left behind.
    struct Finished {
        id: usize,
        data: Data,
        /// The session may still be active until the server notices the reset.
        unsettled: bool,
    }

    /// The messages a plan sends, the values named after the round.
    fn messages(round: usize, plan: &Plan) -> Vec<Msg> {
        let mut messages = vec![Msg::Connect];
        for (i, cmd) in plan.cmds.iter().enumerate() {
            messages.push(match *cmd {
                Cmd::Put(key) => Msg::Put(key, format!("v{round}.{i}")),
                Cmd::Get(key) => Msg::Get(key),
                Cmd::Delete(key) => Msg::Delete(key),
            });
        }
        if plan.disconnect {
            messages.push(Msg::Disconnect);
        }
        messages
    }

    /// Sends `msg`, reads its reply, checks it against `data` and applies it. `Ok(false)`
    /// once the server has closed the connection (after `DISCONNECT`).
    async fn request(
        conn: &mut Conn,
        id: usize,
        msg: &Msg,
        data: &mut Data,
    ) -> Result<bool, String> {
        conn.send(&msg.bytes(id)).await?;
        let reply = conn.reply().await?;
        let expected = match msg {
            Msg::Connect => Reply::ConnectOk,
            Msg::Put(key, value) => {
                data.insert(*key, value.clone());
                Reply::PutOk
            }
            Msg::Get(key) => match data.get(key) {
                Some(value) => Reply::get_ok(value.clone()),
                None => Reply::GetError,
            },
            Msg::Delete(key) => {
                data.remove(key);
                Reply::DeleteOk
            }
            Msg::Disconnect => {
                data.clear();
                Reply::DisconnectOk
            }
        };
        if reply != expected {
            return Err(format!(
                "{msg:?} was answered `{reply}`, the model expects `{expected}`"
            ));
        }
        if let Msg::Disconnect = msg {
            conn.expect_close()
                .await
                .map_err(|e| format!("after DISCONNECT: {e}"))?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Runs one session of `id` that starts with `data`.
    async fn session(
        server: Reach,
        round: usize,
        id: usize,
        plan: Plan,
        mut data: Data,
    ) -> Result<Finished, String> {
        let name = IDS[id];
        let messages = messages(round, &plan);
        let mut conn = Conn::open(server.addr, server.tls.clone()).await?;
        let (whole, tail): (usize, Option<Vec<u8>>) = match plan.end {
            End::Cut { message, byte, .. } => {
                let message = message % (messages.len() + 1);
                match messages.get(message) {
                    Some(next) => {
                        let bytes = next.bytes(id);
                        (message, Some(bytes[..byte % bytes.len()].to_vec()))
                    }
                    None => (message, None),
                }
            }
            End::Junk { after, kind } => {
                (1 + after.min(plan.cmds.len()), Some(JUNK[kind].to_vec()))
            }
        };
        let context = |e: String| format!("round {round}, {name}: {e}");
        let mut open = true;
        for msg in &messages[..whole] {
            open = request(&mut conn, id, msg, &mut data)
                .await
                .map_err(context)?;
        }
        if !open {
            return Ok(Finished {
                id,
                data,
                unsettled: false,
            });
        }
        let logged_in = whole > 0;
        if let Some(tail) = &tail
            && !tail.is_empty()
        {
            conn.send(tail).await.map_err(context)?;
        }
        let unsettled = match plan.end {
            End::Junk { .. } => {
                conn.expect_close()
                    .await
                    .map_err(|e| context(format!("after junk: {e}")))?;
                // The server settles the session before it closes the connection.
                if server.store.is_active(name) {
                    return Err(context("dropped for junk, and still logged in".into()));
                }
                data.clear();
                false
            }
            End::Cut {
                close: Close::Fin, ..
            } => {
                // The FIN reaches the server after the tail: what it does with the tail
                // (nothing: it is not a whole message) shows before it closes.
                within("shutdown", conn.stream.get_mut().0.shutdown())
                    .await
                    .map_err(context)?
                    .map_err(|e| context(format!("shutdown: {e}")))?;
                conn.expect_close().await.map_err(|e| {
                    context(format!(
                        "after a cut inside `{}`: {e}",
                        show(tail.as_deref().unwrap_or_default())
                    ))
                })?;
                if logged_in && server.store.is_active(name) {
                    return Err(context(
                        "the connection is closed, the session still active".into(),
                    ));
                }
                false
            }
            End::Cut {
                close: Close::Reset,
                ..
            } => {
                zero_linger(conn.stream.get_ref().0);
                logged_in
            }
        };
        drop(conn);
        Ok(Finished {
            id,
            data,
            unsettled,
        })
    }

    /// How a session reaches the server, and the server's store to look at.
    #[derive(Clone)]
    struct Reach {
        addr: std::net::SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        store: Arc<Store>,
    }

    /// Waits until the server no longer counts `id` as logged in (it has noticed a reset).
    async fn settled(store: &Store, id: usize) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        while store.is_active(IDS[id]) {
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: the connection was reset, the session is still active after {PATIENCE:?}",
                    IDS[id]
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// The server's store against the model, then every id logs in again and reads its
    /// data back.
    async fn audit(server: &Reach, model: &[Data]) -> Result<(), String> {
        let store = &server.store;
        for (id, data) in model.iter().enumerate() {
            if store.is_active(IDS[id]) {
                return Err(format!("{} is still logged in", IDS[id]));
            }
            for (key, key_name) in KEYS.iter().enumerate() {
                let held = store.peek(IDS[id], key_name);
                if held.as_ref() != data.get(&key) {
                    return Err(format!(
                        "the store holds {held:?} under {} {key_name:?}, the model {:?}",
                        IDS[id],
                        data.get(&key)
                    ));
                }
            }
        }
        let holding = model.iter().filter(|data| !data.is_empty()).count();
        if store.session_count() != holding {
            return Err(format!(
                "the store keeps {} sessions, the model {holding} (ids holding data)",
                store.session_count()
            ));
        }
        for (id, data) in model.iter().enumerate() {
            let mut conn = Conn::open(server.addr, server.tls.clone()).await?;
            let mut expected = data.clone();
            let again = |e: String| format!("{} logging in again: {e}", IDS[id]);
            request(&mut conn, id, &Msg::Connect, &mut expected)
                .await
                .map_err(again)?;
            for key in 0..KEYS.len() {
                request(&mut conn, id, &Msg::Get(key), &mut expected)
                    .await
                    .map_err(again)?;
            }
        }
        Ok(())
    }

    /// The property: runs `rounds` against a fresh server made with `config`.
    pub async fn run(config: ServerConfig, rounds: Vec<Round>) -> Result<(), String> {
        let (running, tls) = common::spawn_tls_kv(config).await;
        let reach = Reach {
            addr: running.addr(),
            tls,
            store: running.store().clone(),
        };
        let mut model: Vec<Data> = vec![Data::new(); IDS.len()];
        let mut result = Ok(());
        for (round, plans) in rounds.into_iter().enumerate() {
            let mut sessions = JoinSet::new();
            for (id, plan) in plans.into_iter().enumerate() {
                if let Some(plan) = plan {
                    let data = model[id].clone();
                    sessions.spawn(session(reach.clone(), round, id, plan, data));
                }
            }
            // Every session is joined, failed or not: each ends within its timeouts.
            let mut unsettled = Vec::new();
            while let Some(joined) = sessions.join_next().await {
                match joined {
                    Ok(Ok(finished)) => {
                        if finished.unsettled {
                            unsettled.push(finished.id);
                        }
                        model[finished.id] = finished.data;
                    }
                    Ok(Err(e)) => result = result.and(Err(e)),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            for id in unsettled {
                if result.is_ok() {
                    result = settled(&reach.store, id)
                        .await
                        .map_err(|e| format!("round {round}: {e}"));
                }
            }
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = audit(&reach, &model)
                .await
                .map_err(|e| format!("at the end: {e}"));
        }
        if within("shutdown", running.shutdown()).await.is_err() {
            return Err("the server did not shut down".into());
        }
        result
    }

    /// A session that stores `colour` and ends as `end`.
    pub fn put_then(end: End) -> Vec<Round> {
        let plan = Plan {
            cmds: vec![Cmd::Put(0)],
            disconnect: false,
            end,
        };
        vec![vec![Some(plan), None, None]]
    }

    pub fn with_sabotage(sabotage: Sabotage) -> ServerConfig {
        ServerConfig {
            sabotage,
            ..ServerConfig::default()
        }
    }
}

/// Sessions cut at random bytes, some concurrently, leave exactly the data their answered
/// messages made, and no active session.
#[test]
fn kv_cuts_leave_the_model_state() {
    use reference_impl::kv::server::ServerConfig;
    let runtime = runtime();
    check(kv::rounds(), |rounds| {
        runtime.block_on(kv::run(ServerConfig::default(), rounds))
    });
}

mod kv_faults {
    use reference_impl::kv::server::{Fault, Sabotage, ServerConfig};

    use super::kv::{self, Cmd, End, Plan};
    use super::*;

    fn fails(config: ServerConfig, rounds: Vec<kv::Round>, what: &str) {
        let result = runtime().block_on(kv::run(config, rounds));
        match result {
            Err(e) => {
                println!("{what}: {e}");
                assert!(e.contains(what), "{e}");
            }
            Ok(()) => panic!("the property holds against a faulty server"),
        }
    }

    fn faulty(fault: Fault) -> ServerConfig {
        ServerConfig {
            faults: fault.into(),
            ..ServerConfig::default()
        }
    }

    /// A cut after a whole `PUT` must keep its value.
    #[test]
    fn a_server_that_discards_data_on_a_cut_is_caught() {
        let end = End::Cut {
            message: 2,
            byte: 3,
            close: Close::Reset,
        };
        fails(
            faulty(Fault::DiscardSessionOnClose),
            kv::put_then(end),
            "the store holds None",
        );
    }

    /// `DISCONNECT` must clear the data, unlike a cut.
    #[test]
    fn a_server_that_keeps_data_after_disconnect_is_caught() {
        let plan = Plan {
            cmds: vec![Cmd::Put(1)],
            disconnect: true,
            end: End::Cut {
                message: 3,
                byte: 0,
                close: Close::Fin,
            },
        };
        fails(
            faulty(Fault::KeepSessionAfterDisconnect),
            vec![vec![None, Some(plan), None]],
            "the store holds Some",
        );
    }

    /// A drop for junk must clear the data, unlike a cut.
    #[test]
    fn a_server_that_keeps_data_after_junk_is_caught() {
        fails(
            faulty(Fault::KeepDataAfterDrop),
            kv::put_then(End::Junk { after: 1, kind: 0 }),
            "the store holds Some",
        );
    }

    /// A session dropped for junk must not stay logged in.
    #[test]
    fn a_server_that_leaks_the_session_of_a_dropped_connection_is_caught() {
        let sabotage = Sabotage {
            leak_session_after_junk: true,
            ..Sabotage::NONE
        };
        fails(
            kv::with_sabotage(sabotage),
            kv::put_then(End::Junk { after: 1, kind: 1 }),
            "still logged in",
        );
    }
}

// ------------------------------------------------------------------------------------------
// Chat

mod chat {
    use std::collections::{HashMap, VecDeque};

    use reference_impl::chat::codec::{ClientMessage, Guess, ServerMessage, code};
    use reference_impl::chat::server::{self, DEFAULT_VERSION, RunningServer, ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    pub const USERS: [&str; 3] = ["ann", "ben", "cat"];
    /// Logged in throughout: sees every JOINED and LEFT.
    const WATCHER: &str = "watcher";
    /// Logs in at the end to look at the game.
    const CHECKER: &str = "checker";
    /// How often the watcher asks for the user list while the server has not yet noticed a
    /// cut (2 ms apart).
    const POLLS: usize = 2_000;

    /// What a logged-in user sends.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Act {
        Broadcast,
        Private {
            to: usize,
        },
        StartGame,
        JoinGame,
        Guess,
        ListUsers,
        /// `LOGIN` again, as itself.
        Login,
        Bye,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        /// `user` sends `act`, logging in first if it is not logged in.
        Send { user: usize, act: Act },
        /// A new connection logs in as `user`.
        Login { user: usize },
        /// `user`'s connection sends the first `byte` bytes (modulo the line's length, so
        /// never the line end) of `act`'s line and is closed. A user not logged in logs in
        /// first, unless `act` is `LOGIN`: then a new connection sends part of it.
        Cut {
            user: usize,
            act: Act,
            byte: usize,
            close: Close,
        },
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            3 => Just(Act::Broadcast),
            2 => (0..USERS.len()).prop_map(|to| Act::Private { to }),
            3 => Just(Act::StartGame),
            4 => Just(Act::JoinGame),
            1 => Just(Act::Guess),
            1 => Just(Act::ListUsers),
            1 => Just(Act::Login),
            1 => Just(Act::Bye),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let user = 0..USERS.len();
        // Cut inside a LOGIN more often than it is sent whole.
        let cut_act = prop_oneof![3 => Just(Act::Login), 10 => act()];
        prop_oneof![
            6 => (user.clone(), act()).prop_map(|(user, act)| Op::Send { user, act }),
            1 => user.clone().prop_map(|user| Op::Login { user }),
            3 => (user, cut_act, 0..80usize, close_strategy())
                .prop_map(|(user, act, byte, close)| Op::Cut { user, act, byte, close }),
        ]
    }

    pub fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(op(), 1..=20)
    }

    /// The line `name` sends for `act` in step `step`, line end included.
    fn line(name: &str, act: Act, step: usize) -> Vec<u8> {
        let message = match act {
            Act::Broadcast => ClientMessage::BroadcastReq {
                message: format!("hello {step}"),
            },
            Act::Private { to } => ClientMessage::PrivateMessageReq {
                receiver: USERS[to].to_owned(),
                message: format!("psst {step}"),
            },
            Act::StartGame => ClientMessage::StartGameReq,
            Act::JoinGame => ClientMessage::JoinGameReq,
            Act::Guess => ClientMessage::GuessNumberReq {
                number: Guess::Number(25),
            },
            Act::ListUsers => ClientMessage::ListUsersReq,
            Act::Login => login_line(name),
            Act::Bye => ClientMessage::Bye,
        };
        encode_client(&message)
    }

    fn login_line(name: &str) -> ClientMessage {
        ClientMessage::Login {
            username: name.to_owned(),
        }
    }

    fn encode_client(message: &ClientMessage) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    /// A server message as its line, without the line end.
    fn text(message: &ServerMessage) -> String {
        let mut out = Vec::new();
        message.encode(&mut out);
        String::from_utf8_lossy(&out).trim_end().to_owned()
    }

    /// A raw connection: bytes out, lines in.
    struct Conn {
        stream: TcpStream,
        pending: Vec<u8>,
        name: String,
    }

    impl Conn {
        async fn open(server: &RunningServer, name: &str) -> Conn {
            Conn {
                stream: common::tcp_connect(server.addr()).await,
                pending: Vec::new(),
                name: name.to_owned(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
            within("a write", self.stream.write_all(bytes))
                .await?
                .map_err(|e| format!("{}: sending `{}`: {e}", self.name, show(bytes)))
        }

        /// The next line without its end; `None` at the end of the stream.
        async fn next(&mut self) -> Result<Option<String>, String> {
            loop {
                if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=i).collect();
                    return Ok(Some(String::from_utf8_lossy(&line[..i]).into_owned()));
                }
                let mut buf = [0u8; 4096];
                let what = format!("{}: a line", self.name);
                match within(&what, self.stream.read(&mut buf)).await? {
                    Ok(0) | Err(_) if self.pending.is_empty() => return Ok(None),
                    Ok(0) | Err(_) => {
                        return Err(format!(
                            "{}: closed after an unterminated `{}`",
                            self.name,
                            show(&self.pending)
                        ));
                    }
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                }
            }
        }

        async fn expect(&mut self, expected: &str) -> Result<(), String> {
            match self.next().await? {
                Some(line) if line == expected => Ok(()),
                Some(line) => Err(format!(
                    "{} received `{line}`, the model expects `{expected}`",
                    self.name
                )),
                None => Err(format!(
                    "{}: closed, the model expects `{expected}`",
                    self.name
                )),
            }
        }

        async fn expect_close(&mut self) -> Result<(), String> {
            match self.next().await? {
                None => Ok(()),
                Some(line) => Err(format!(
                    "{} received `{line}`, the model expects the close",
                    self.name
                )),
            }
        }
    }

    /// What the protocol says the server's state is, and what each connection has yet to
    /// receive.
    #[derive(Debug, Default)]
    struct Model {
        /// Logged-in users in login order: what `LIST_USERS_RESP` lists.
        order: Vec<String>,
        /// The game in its join window: its participants.
        game: Option<Vec<String>>,
        inbox: HashMap<String, VecDeque<String>>,
    }

    impl Model {
        fn tell(&mut self, name: &str, message: &ServerMessage) {
            self.inbox
                .entry(name.to_owned())
                .or_default()
                .push_back(text(message));
        }

        fn tell_others(&mut self, me: &str, message: &ServerMessage) {
            let others: Vec<String> = self.order.iter().filter(|n| *n != me).cloned().collect();
            for other in others {
                self.tell(&other, message);
            }
        }

        fn logged_in(&self, name: &str) -> bool {
            self.order.iter().any(|n| n == name)
        }

        fn list(&self) -> ServerMessage {
            ServerMessage::ListUsersResp(Ok(self.order.clone()))
        }

        fn login(&mut self, name: &str) {
            self.tell(name, &ServerMessage::LoginResp(Ok(())));
            self.order.push(name.to_owned());
            self.tell_others(
                name,
                &ServerMessage::Joined {
                    username: name.to_owned(),
                },
            );
        }

        /// `name` is gone: the others are told, the game loses it.
        fn leave(&mut self, name: &str) {
            self.order.retain(|n| n != name);
            self.inbox.remove(name);
            self.tell_others(
                name,
                &ServerMessage::Left {
                    username: name.to_owned(),
                },
            );
            if let Some(players) = &mut self.game {
                players.retain(|p| p != name);
                if players.is_empty() {
                    self.game = None;
                }
            }
        }

        /// What `me` (logged in) sending `act` makes everyone receive.
        fn act(&mut self, me: &str, act: Act, step: usize) {
            match act {
                Act::Broadcast => {
                    self.tell(me, &ServerMessage::BroadcastResp(Ok(())));
                    self.tell_others(
                        me,
                        &ServerMessage::Broadcast {
                            username: me.to_owned(),
                            message: format!("hello {step}"),
                        },
                    );
                }
                Act::Private { to } => {
                    let to = USERS[to];
                    let answer = if to == me {
                        Err(code::MESSAGE_TO_SELF)
                    } else if !self.logged_in(to) {
                        Err(code::USER_NOT_FOUND)
                    } else {
                        Ok(())
                    };
                    self.tell(me, &ServerMessage::PrivateMessageResp(answer));
                    if answer.is_ok() {
                        self.tell(
                            to,
                            &ServerMessage::PrivateMessage {
                                sender: me.to_owned(),
                                message: format!("psst {step}"),
                            },
                        );
                    }
                }
                Act::StartGame => {
                    if self.game.is_some() {
                        self.tell(
                            me,
                            &ServerMessage::StartGameResp(Err(code::GAME_ALREADY_STARTED)),
                        );
                    } else {
                        self.game = Some(vec![me.to_owned()]);
                        self.tell(me, &ServerMessage::StartGameResp(Ok(())));
                        self.tell_others(me, &ServerMessage::GameNotification(Ok(())));
                    }
                }
                Act::JoinGame => {
                    let answer = match &mut self.game {
                        None => Err(code::NO_GAME),
                        Some(players) if players.iter().any(|p| p == me) => {
                            Err(code::ALREADY_JOINED)
                        }
                        Some(players) => {
                            players.push(me.to_owned());
                            Ok(())
                        }
                    };
                    self.tell(me, &ServerMessage::JoinGameResp(answer));
                }
                Act::Guess => {
                    // The join window outlasts the test: a game is never running.
                    let answer = match self.game {
                        None => code::NO_GAME_TO_GUESS,
                        Some(_) => code::CANNOT_GUESS_NOW,
                    };
                    self.tell(me, &ServerMessage::GuessNumberResp(Err(answer)));
                }
                Act::ListUsers => {
                    let list = self.list();
                    self.tell(me, &list);
                }
                Act::Login => {
                    self.tell(me, &ServerMessage::LoginResp(Err(code::ALREADY_LOGGED_IN)))
                }
                Act::Bye => self.tell(me, &ServerMessage::ByeResp(Ok(()))),
            }
        }
    }

    /// The server, its connections, and the model beside them.
    struct Chat {
        server: RunningServer,
        conns: HashMap<String, Conn>,
        model: Model,
    }

    impl Chat {
        /// Reads everything the model says `name` has yet to receive.
        async fn catch_up(&mut self, name: &str) -> Result<(), String> {
            let conn = self.conns.get_mut(name).unwrap();
            let expected = self.model.inbox.remove(name).unwrap_or_default();
            for line in expected {
                conn.expect(&line).await?;
            }
            Ok(())
        }

        /// A new connection, its `WELCOME` read.
        async fn connect(&self, name: &str) -> Result<Conn, String> {
            let mut conn = Conn::open(&self.server, name).await;
            let welcome = ServerMessage::Welcome {
                msg: format!("Welcome to the server {DEFAULT_VERSION}"),
            };
            conn.expect(&text(&welcome)).await?;
            Ok(conn)
        }

        async fn login(&mut self, name: &str) -> Result<(), String> {
            let mut conn = self.connect(name).await?;
            conn.send(&encode_client(&login_line(name))).await?;
            self.conns.insert(name.to_owned(), conn);
            self.model.login(name);
            self.catch_up(name).await
        }

        /// `name` (logged in) sends `act` and reads what it receives.
        async fn act(&mut self, name: &str, act: Act, step: usize) -> Result<(), String> {
            let bytes = line(name, act, step);
            self.conns.get_mut(name).unwrap().send(&bytes).await?;
            self.model.act(name, act, step);
            self.catch_up(name).await?;
            if act == Act::Bye {
                let mut conn = self.conns.remove(name).unwrap();
                conn.expect_close().await?;
                // The server has let the user go before it closed the connection.
                self.model.leave(name);
            }
            Ok(())
        }

        /// A second connection tries to log in as `name`, who is logged in.
        async fn login_taken(&mut self, name: &str) -> Result<(), String> {
            let mut conn = self.connect(&format!("second {name}")).await?;
            conn.send(&encode_client(&login_line(name))).await?;
            conn.expect(&text(&ServerMessage::LoginResp(Err(code::NAME_IN_USE))))
                .await
        }

        /// Cuts `name`'s connection after `prefix`.
        async fn cut(
            &mut self,
            name: &str,
            mut conn: Conn,
            prefix: &[u8],
            close: Close,
        ) -> Result<(), String> {
            if !prefix.is_empty() {
                conn.send(prefix).await?;
            }
            match close {
                Close::Fin => {
                    within("shutdown", conn.stream.shutdown())
                        .await?
                        .map_err(|e| format!("{name}: shutdown: {e}"))?;
                }
                Close::Reset => zero_linger(&conn.stream),
            }
            drop(conn);
            Ok(())
        }

        /// The watcher asks for the user list until the server has noticed that `name`
        /// left: until then the list still names it; `LEFT` comes first, then lists without
        /// it.
        async fn await_left(&mut self, name: &str, before: Vec<String>) -> Result<(), String> {
            let left = text(&ServerMessage::Left {
                username: name.to_owned(),
            });
            let mut inbox = self.model.inbox.remove(WATCHER).unwrap_or_default();
            if inbox.back() != Some(&left) {
                return Err(format!("the model sends no LEFT for {name}"));
            }
            inbox.pop_back();
            let watcher = self.conns.get_mut(WATCHER).unwrap();
            for line in inbox {
                watcher.expect(&line).await?;
            }
            let with = text(&ServerMessage::ListUsersResp(Ok(before)));
            let without = text(&self.model.list());
            let request = encode_client(&ClientMessage::ListUsersReq);
            for _ in 0..POLLS {
                watcher.send(&request).await?;
                let mut line = watcher.next().await?.unwrap_or_default();
                let gone = line == left;
                if gone {
                    line = watcher.next().await?.unwrap_or_default();
                }
                let expected = if gone { &without } else { &with };
                if line != *expected {
                    return Err(format!(
                        "after {name}'s cut the watcher received `{line}`, the model expects \
                         `{expected}`"
                    ));
                }
                if gone {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(format!("{name} is still listed after {POLLS} lists"))
        }

        async fn step(&mut self, step: usize, op: Op) -> Result<(), String> {
            match op {
                Op::Send { user, act } => {
                    let name = USERS[user];
                    if !self.model.logged_in(name) {
                        self.login(name).await?;
                    }
                    self.act(name, act, step).await
                }
                Op::Login { user } => {
                    let name = USERS[user];
                    if self.model.logged_in(name) {
                        self.login_taken(name).await
                    } else {
                        self.login(name).await
                    }
                }
                Op::Cut {
                    user,
                    act,
                    byte,
                    close,
                } => {
                    let name = USERS[user];
                    if !self.model.logged_in(name) {
                        if act == Act::Login {
                            // A LOGIN cut short: nothing happens.
                            let line = encode_client(&login_line(name));
                            let conn = Conn::open(&self.server, name).await;
                            return self
                                .cut(name, conn, &line[..byte % line.len()], close)
                                .await;
                        }
                        self.login(name).await?;
                    }
                    self.catch_up(name).await?;
                    let line = line(name, act, step);
                    let conn = self.conns.remove(name).unwrap();
                    self.cut(name, conn, &line[..byte % line.len()], close)
                        .await?;
                    let before = self.model.order.clone();
                    self.model.leave(name);
                    self.await_left(name, before).await
                }
            }
        }

        /// A new user finds the game state the model predicts and starts a game if none is
        /// running; every name not logged in logs in again and joins the game; every
        /// connection reads what it has yet to receive, and then the model's user list.
        async fn audit(&mut self, step: usize) -> Result<(), String> {
            self.login(CHECKER).await?;
            self.act(CHECKER, Act::Guess, step).await?;
            if self.model.game.is_none() {
                self.act(CHECKER, Act::StartGame, step).await?;
            }
            for name in USERS {
                if !self.model.logged_in(name) {
                    self.login(name).await?;
                    self.act(name, Act::JoinGame, step).await?;
                }
            }
            let names = self.model.order.clone();
            for name in names {
                self.act(&name, Act::ListUsers, step).await?;
            }
            Ok(())
        }
    }

    /// The property: runs `ops` against a fresh server made with `config`.
    pub async fn run(config: ServerConfig, ops: Vec<Op>) -> Result<(), String> {
        let server = server::spawn(config).await.unwrap();
        let mut chat = Chat {
            server,
            conns: HashMap::new(),
            model: Model::default(),
        };
        let mut result = chat.login(WATCHER).await;
        for (step, op) in ops.iter().enumerate() {
            if result.is_err() {
                break;
            }
            result = chat
                .step(step, *op)
                .await
                .map_err(|e| format!("step {step}, {op:?}: {e}"));
        }
        if result.is_ok() {
            result = chat
                .audit(ops.len())
                .await
                .map_err(|e| format!("at the end: {e}"));
        }
        chat.conns.clear();
        if within("shutdown", chat.server.shutdown()).await.is_err() {
            return Err("the server did not shut down".into());
        }
        result
    }

    /// No pings, and a join window that outlasts the test: no timer fires within a case.
    pub fn quiet() -> ServerConfig {
        ServerConfig {
            ping_interval: Duration::from_secs(3600),
            join_window: Duration::from_secs(3600),
            ..ServerConfig::default()
        }
    }

    /// A game whose only other participant is cut before its join window ends is
    /// cancelled with 6002 for the one left, and a new one can start. `Ok(false)` if the
    /// window ended before the cut was noticed (a slow machine): try a longer one.
    pub async fn cut_participant(config: ServerConfig) -> Result<bool, String> {
        let window = config.join_window;
        let server = server::spawn(config).await.unwrap();
        let mut chat = Chat {
            server,
            conns: HashMap::new(),
            model: Model::default(),
        };
        chat.login(WATCHER).await?;
        chat.login("ann").await?;
        chat.login("ben").await?;
        // Taken before the request: the window cannot have ended before `window` from here.
        let started = Instant::now();
        chat.act("ann", Act::StartGame, 0).await?;
        chat.catch_up("ben").await?;
        let join = line("ben", Act::JoinGame, 0);
        let ben = chat.conns.get_mut("ben").unwrap();
        ben.send(&join).await?;
        let answer = ben.next().await?.unwrap_or_default();
        if answer != text(&ServerMessage::JoinGameResp(Ok(()))) {
            let late = text(&ServerMessage::JoinGameResp(Err(
                code::GAME_ALREADY_STARTED,
            )));
            if answer == late && started.elapsed() >= window {
                return Ok(false);
            }
            return Err(format!("ben's JOIN_GAME_REQ was answered `{answer}`"));
        }
        chat.model.game = Some(vec!["ann".into(), "ben".into()]);
        let guess = line("ben", Act::Guess, 0);
        let conn = chat.conns.remove("ben").unwrap();
        chat.cut("ben", conn, &guess[..guess.len() / 2], Close::Reset)
            .await?;
        let before = chat.model.order.clone();
        chat.model.leave("ben");
        chat.await_left("ben", before).await?;
        // ann learns that ben left, then that the window ended: cancelled, ann is alone.
        let ann = chat.conns.get_mut("ann").unwrap();
        let left = chat.model.inbox.remove("ann").unwrap_or_default();
        let first = ann.next().await?.unwrap_or_default();
        let started_game = text(&ServerMessage::StartGameResp(Ok(())));
        if first == started_game && started.elapsed() >= window {
            // The window ended before the server noticed the cut.
            return Ok(false);
        }
        if Some(&first) != left.front() || left.len() != 1 {
            return Err(format!(
                "ann received `{first}`, the model expects {left:?}"
            ));
        }
        let end = ann.next().await?.unwrap_or_default();
        let cancelled = text(&ServerMessage::StartGameResp(Err(
            code::INSUFFICIENT_PLAYERS,
        )));
        if end != cancelled {
            return Err(format!(
                "the join window ended after ben left with `{end}` to ann, the model \
                 expects `{cancelled}`"
            ));
        }
        chat.model.game = None;
        chat.act("ann", Act::StartGame, 1).await?;
        chat.conns.clear();
        let _ = within("shutdown", chat.server.shutdown()).await;
        Ok(true)
    }
}

/// Chat connections cut inside any line leave exactly the model's users, and no game
/// state: the users listed, the LEFT sent, the game's participants and names free again
/// are all the model's.
#[test]
fn chat_cuts_leave_the_model_state() {
    let runtime = runtime();
    check(chat::ops(), |ops| {
        runtime.block_on(chat::run(chat::quiet(), ops))
    });
}

/// Joins of a game, a cut participant, then the end of the join window, tried with a
/// longer window if the machine was too slow for the first.
fn chat_window_end(faults: reference_impl::chat::server::Faults) -> Result<(), String> {
    use reference_impl::chat::server::ServerConfig;
    let runtime = runtime();
    let mut window = Duration::from_millis(500);
    for _ in 0..3 {
        let config = ServerConfig {
            join_window: window,
            faults,
            ..chat::quiet()
        };
        if runtime.block_on(chat::cut_participant(config))? {
            return Ok(());
        }
        window *= 4;
    }
    panic!("the join window ended before the steps in it, even at {window:?}");
}

#[test]
fn a_cut_participant_does_not_count_at_the_end_of_the_join_window() {
    chat_window_end(Default::default()).unwrap();
}

mod chat_faults {
    use reference_impl::chat::server::{Fault, ServerConfig};

    use super::chat::{self, Act, Op};
    use super::*;

    /// Without LEFT, the watcher's list loses a user nobody said had left.
    #[test]
    fn a_server_that_sends_no_left_is_caught() {
        let ops = vec![
            Op::Send {
                user: 0,
                act: Act::StartGame,
            },
            Op::Cut {
                user: 0,
                act: Act::Broadcast,
                byte: 7,
                close: Close::Fin,
            },
        ];
        let config = ServerConfig {
            faults: Fault::NoLeft.into(),
            ..chat::quiet()
        };
        let e = runtime().block_on(chat::run(config, ops)).unwrap_err();
        println!("no-left: {e}");
        assert!(e.contains("the watcher received"), "{e}");
    }

    /// A game left with one participant must be cancelled, not started.
    #[test]
    fn a_server_that_starts_a_game_for_one_is_caught() {
        let e = chat_window_end(Fault::GameNo6002.into()).unwrap_err();
        println!("game-no-6002: {e}");
        assert!(e.contains("the join window ended after ben left"), "{e}");
    }
}

// ------------------------------------------------------------------------------------------
// Packet

mod packet {
    use reference_impl::packet::codec::{
        ChecksumMode, HEADER_LEN, MAX_PACKET, Packet, PacketDecoder, Pairing, xor,
    };
    use reference_impl::packet::server::{self, RunningServer, ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const FIRST_SID: i32 = 20_200_000;
    const REGISTERED: &str = " & YOUR POINTS ARE REGISTERED ON DATABASE";

    /// Where a session is cut.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Cut {
        /// After this many bytes of the 16-byte hello (modulo 16).
        Hello(usize),
        /// After the hello and this many bytes of the reply (modulo its length, so never
        /// all of it), the encrypted stream read.
        Reply(usize),
    }

    /// One session.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Session {
        /// Keyword `sbmt` (the score is recorded) or a test word.
        pub submit: bool,
        /// Data bytes per reply packet.
        pub chunk: usize,
        /// Where the session is cut and how; `None`: it is completed.
        pub cut: Option<(Cut, Close)>,
    }

    pub fn sessions() -> impl Strategy<Value = (u64, Vec<Session>)> {
        let cut = prop_oneof![
            1 => (0..HEADER_LEN).prop_map(Cut::Hello),
            3 => (0..4_000usize).prop_map(Cut::Reply),
        ];
        let session = (
            any::<bool>(),
            40..400usize,
            prop::option::weighted(0.8, (cut, close_strategy())),
        )
            .prop_map(|(submit, chunk, cut)| Session { submit, chunk, cut });
        (any::<u64>(), prop::collection::vec(session, 1..=6))
    }

    /// A raw connection: bytes out, packets in.
    struct Conn {
        tcp: TcpStream,
        decoder: PacketDecoder,
    }

    impl Conn {
        async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
            within("a write", self.tcp.write_all(bytes))
                .await?
                .map_err(|e| format!("sending: {e}"))
        }

        /// The next packet; `None` at the end of the stream.
        async fn packet(&mut self) -> Result<Option<Packet>, String> {
            let mut buf = [0u8; 4096];
            loop {
                match self.decoder.next_packet() {
                    Ok(Some(packet)) => return Ok(Some(packet)),
                    Ok(None) => {}
                    Err(e) => return Err(format!("an undecodable packet: {e}")),
                }
                match within("a packet", self.tcp.read(&mut buf)).await? {
                    Ok(0) | Err(_) if self.decoder.buffered() == 0 => return Ok(None),
                    Ok(0) | Err(_) => return Err("closed inside a packet".into()),
                    Ok(n) => self.decoder.feed(&buf[..n]),
                }
            }
        }
    }

    /// The result packet the server sends, as it must look on the wire.
    fn result(status: &[u8; 4], score: i32, message: &str) -> Packet {
        Packet::new(1, *status, score, message.as_bytes().to_vec())
            .with_checksum(Pairing::BigEndian)
    }

    /// Runs one session as student `sid`; the score the model records, if any.
    async fn session(
        server: &RunningServer,
        sid: i32,
        plan: Session,
    ) -> Result<Option<i32>, String> {
        let keyword = if plan.submit { *b"sbmt" } else { *b"test" };
        let mut conn = Conn {
            tcp: common::tcp_connect(server.addr()).await,
            decoder: PacketDecoder::with_max_packet(Some(ChecksumMode::Big), MAX_PACKET),
        };
        let hello = Packet::new(1, keyword, sid, Vec::new()).to_bytes(Pairing::BigEndian);
        let suffix = if plan.submit { REGISTERED } else { "" };
        let (sent, expected, score) = if let Some((Cut::Hello(byte), _)) = plan.cut {
            let sent = byte % HEADER_LEN;
            conn.send(&hello[..sent]).await?;
            // Nothing sent, nothing answered; part of a hello: CLSD, and nothing recorded.
            let expected = (sent > 0).then(|| {
                result(
                    b"CLSD",
                    0,
                    &format!("HEADER: CONNECTION CLOSED AFTER {sent} OF 16 BYTES"),
                )
            });
            (sent, expected, None)
        } else {
            conn.send(&hello).await?;
            let mut stream = Vec::new();
            loop {
                let packet = conn
                    .packet()
                    .await?
                    .ok_or("closed before the end of the stream")?;
                let last = packet.is_last();
                stream.push(packet);
                if last {
                    break;
                }
            }
            let key = stream[0].keyword;
            let data: Vec<u8> = stream.iter().flat_map(|p| p.data.clone()).collect();
            let text = xor(&data, &key);
            let chunks: Vec<&[u8]> = text.chunks(plan.chunk).collect();
            let mut reply = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let flag = u16::from(i + 1 == chunks.len());
                Packet::new(flag, key, sid, chunk.to_vec()).encode(Pairing::BigEndian, &mut reply);
            }
            if let Some((Cut::Reply(byte), _)) = plan.cut {
                let sent = byte % reply.len();
                conn.send(&reply[..sent]).await?;
                // 10 points for the hello, 10 more once a reply header's worth has come.
                let points = if sent >= HEADER_LEN { 20 } else { 10 };
                let message =
                    format!("REPLY: CONNECTION CLOSED BEFORE THE LAST PACKET (FLAG 1){suffix}");
                let score = plan.submit.then_some(points);
                (
                    HEADER_LEN + sent,
                    Some(result(b"CLSD", points, &message)),
                    score,
                )
            } else {
                conn.send(&reply).await?;
                let message = format!("DECRYPTED DATA MATCH{suffix}");
                let score = plan.submit.then_some(50);
                (
                    HEADER_LEN + reply.len(),
                    Some(result(b"GOOD", 50, &message)),
                    score,
                )
            }
        };
        let context = |e: String| format!("sid {sid}, after {sent} bytes: {e}");
        match plan.cut {
            None => {}
            Some((_, Close::Fin)) => {
                within("shutdown", conn.tcp.shutdown())
                    .await
                    .map_err(context)?
                    .map_err(|e| context(format!("shutdown: {e}")))?;
            }
            Some((_, Close::Reset)) => {
                zero_linger(&conn.tcp);
                return Ok(score);
            }
        }
        let got = conn.packet().await.map_err(context)?;
        if got != expected {
            return Err(context(format!(
                "the result is {got:?}, the model expects {expected:?}"
            )));
        }
        if got.is_some() && conn.packet().await.map_err(context)?.is_some() {
            return Err(context("more after the result".into()));
        }
        Ok(score)
    }

    /// The property: runs `sessions`, each as its own student, against a fresh server
    /// made with `config`, then compares the recorded scores with the model's.
    pub async fn run(config: ServerConfig, sessions: Vec<Session>) -> Result<(), String> {
        let server = server::spawn(config).await.unwrap();
        let mut model = std::collections::BTreeMap::new();
        let mut result = Ok(());
        for (i, plan) in sessions.into_iter().enumerate() {
            let sid = FIRST_SID + i32::try_from(i).unwrap();
            match session(&server, sid, plan).await {
                Ok(Some(score)) => {
                    model.insert(sid, score);
                }
                Ok(None) => {}
                Err(e) => {
                    result = Err(format!("session {i}, {plan:?}: {e}"));
                    break;
                }
            }
        }
        if result.is_ok() {
            // A reset session's score is recorded once the server has noticed the reset.
            let deadline = Instant::now() + PATIENCE;
            while server.scores().snapshot() != model && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let recorded = server.scores().snapshot();
            if recorded != model {
                result = Err(format!(
                    "the scores recorded are {recorded:?}, the model's {model:?}"
                ));
            }
        }
        if within("shutdown", server.shutdown()).await.is_err() {
            return Err("the server did not shut down".into());
        }
        result
    }

    /// Short texts in several packets, the seed of the case.
    pub fn config(seed: u64) -> ServerConfig {
        ServerConfig {
            text_len: 100..=1_500,
            max_packet_data: 300,
            seed: Some(seed),
            timeout: PATIENCE,
            linger: Duration::from_millis(100),
            ..ServerConfig::default()
        }
    }
}

/// Packet sessions cut at any byte each get the result of a cut at that byte, record
/// exactly the model's scores, and leave nothing for the next session, which scores 50.
#[test]
fn packet_cuts_leave_the_model_state() {
    let runtime = runtime();
    check(packet::sessions(), |(seed, sessions)| {
        runtime.block_on(packet::run(packet::config(seed), sessions))
    });
}

/// A session cut in its reply must get its result packet before the close.
#[test]
fn a_packet_server_that_sends_no_result_is_caught() {
    use reference_impl::packet::server::{Fault, ServerConfig};
    let sessions = vec![packet::Session {
        submit: true,
        chunk: 100,
        cut: Some((packet::Cut::Reply(40), Close::Fin)),
    }];
    let config = ServerConfig {
        faults: Fault::NoResultPacket.into(),
        ..packet::config(1)
    };
    let e = runtime()
        .block_on(packet::run(config, sessions))
        .unwrap_err();
    println!("no-result-packet: {e}");
    assert!(e.contains("the result is None"), "{e}");
}
