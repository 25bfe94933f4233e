//! The chat server over real TCP connections on 127.0.0.1: raw bytes in, exact bytes out.
//! Timers are short (ping 400 ms, pong 200 ms, join window 200 ms) and every read has a
//! deadline, so no test can hang.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reference_impl::chat::codec::{CheckOrder, Dialect, HeaderMap};
use reference_impl::chat::server::{self, Fault, RunningServer, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

mod common;
use common::PATIENCE;
use common::chat::Conn;

/// How long "nothing arrives" is watched.
const QUIET: Duration = Duration::from_millis(150);

const PING: Duration = Duration::from_millis(400);
const PONG: Duration = Duration::from_millis(200);
const WINDOW: Duration = Duration::from_millis(200);

/// The configuration most tests use: spec behaviour, fast timers, no PING within a test
/// unless it asks for one, a fixed secret.
fn fast() -> ServerConfig {
    ServerConfig {
        ping_interval: Duration::from_secs(60),
        pong_timeout: PONG,
        join_window: WINDOW,
        game_time_limit: Duration::from_secs(3),
        secret: Some(25),
        transfer_timeout: Duration::from_secs(2),
        attach_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    }
}

/// A server with the `fast()` configuration, or with the changes given.
macro_rules! server {
    () => {
        server::spawn(fast()).await.unwrap()
    };
    ($($field:ident: $value:expr),+ $(,)?) => {
        server::spawn(ServerConfig {
            $($field: $value,)+
            ..fast()
        })
        .await
        .unwrap()
    };
}

/// A server wrong in exactly one way.
macro_rules! faulty_server {
    ($fault:expr) => {
        server!(faults: $fault.into())
    };
    ($fault:expr, $($field:ident: $value:expr),+ $(,)?) => {
        server!(faults: $fault.into(), $($field: $value),+)
    };
}

/// `expect_silence` with this file's quiet time.
impl Conn {
    /// Nothing arrives for a while.
    async fn expect_silence(&mut self) {
        self.expect_silence_for(QUIET).await;
    }
}

// ------------------------------------------------------------------------------------------
// Level 1: connection and login

#[tokio::test]
async fn welcome_names_the_version() {
    let server = server!();
    Conn::connect(server.addr()).await;
    let server = server!(version: "2.0".into());
    let mut c = Conn::open(server.addr()).await;
    c.expect(r#"WELCOME {"msg":"Welcome to the server 2.0"}"#)
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn teachers_usernames() {
    let server = server!();
    let mut c = Conn::connect(server.addr()).await;
    for (name, reply) in [
        ("my", r#"LOGIN_RESP {"status":"ERROR","code":5001}"#),
        (
            "abcdefghijklmno",
            r#"LOGIN_RESP {"status":"ERROR","code":5001}"#,
        ),
        ("*a*", r#"LOGIN_RESP {"status":"ERROR","code":5001}"#),
        ("a b", r#"LOGIN_RESP {"status":"ERROR","code":5001}"#),
        ("émile", r#"LOGIN_RESP {"status":"ERROR","code":5001}"#),
        ("mym", r#"LOGIN_RESP {"status":"OK"}"#),
    ] {
        c.send(&format!(r#"LOGIN {{"username":"{name}"}}"#)).await;
        c.expect(reply).await;
    }
    let mut c = Conn::connect(server.addr()).await;
    c.send(r#"LOGIN {"username":"abcdefghijklmn"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
}

#[tokio::test]
async fn empty_or_missing_username_is_5001_and_a_bad_type_a_parse_error() {
    let server = server!();
    let mut c = Conn::connect(server.addr()).await;
    for line in ["LOGIN ", "LOGIN", "LOGIN {}", r#"LOGIN {"username":""}"#] {
        c.send(line).await;
        c.expect(r#"LOGIN_RESP {"status":"ERROR","code":5001}"#)
            .await;
    }
    c.send(r#"LOGIN {"username":42}"#).await;
    c.expect("PARSE_ERROR").await;
    c.send(r#"LOGIN {"}"#).await;
    c.expect("PARSE_ERROR").await;
    c.send(r#"LOGIN ["alice"]"#).await;
    c.expect("PARSE_ERROR").await;
}

#[tokio::test]
async fn duplicate_name_is_5000_and_login_twice_5002() {
    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let mut other = Conn::connect(server.addr()).await;
    other.send(r#"LOGIN {"username":"alice"}"#).await;
    other
        .expect(r#"LOGIN_RESP {"status":"ERROR","code":5000}"#)
        .await;
    // Names are case-sensitive.
    other.send(r#"LOGIN {"username":"Alice"}"#).await;
    other.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    // 5002 comes first, whatever the name.
    for name in ["bob", "alice", "x", "Alice"] {
        alice
            .send(&format!(r#"LOGIN {{"username":"{name}"}}"#))
            .await;
        alice
            .expect(r#"LOGIN_RESP {"status":"ERROR","code":5002}"#)
            .await;
    }
}

#[tokio::test]
async fn a_name_is_free_again_once_its_user_left() {
    let server = server!();
    let mut alice = Conn::login(server.addr(), "alice").await;
    alice.send("BYE").await;
    alice.expect(r#"BYE_RESP {"status":"OK"}"#).await;
    alice.expect_close().await;
    Conn::login(server.addr(), "alice").await;
}

#[tokio::test]
async fn joined_reaches_the_others_unless_switched_off() {
    let server = server!();
    let mut alice = Conn::login(server.addr(), "alice").await;
    let _bob = Conn::login(server.addr(), "bob").await;
    alice.expect(r#"JOINED {"username":"bob"}"#).await;
    let mut anonymous = Conn::connect(server.addr()).await;
    let _carol = Conn::login(server.addr(), "carol").await;
    alice.expect(r#"JOINED {"username":"carol"}"#).await;
    // Only logged-in users are told.
    anonymous.expect_silence().await;

    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let _bob = Conn::login(server.addr(), "bob").await;
    alice.expect_silence().await;
}

#[tokio::test]
async fn login_and_broadcast_in_one_write_with_either_line_end() {
    let server = server!(joined: false);
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut keep = Vec::new();
    for (name, end) in [("crlf", "\r\n"), ("lfonly", "\n"), ("cronly", "\r")] {
        let mut c = Conn::connect(server.addr()).await;
        c.send_raw(
            format!(r#"LOGIN {{"username":"{name}"}}{end}BROADCAST_REQ {{"message":"hi"}}{end}"#)
                .as_bytes(),
        )
        .await;
        c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
        c.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
        bob.expect(&format!(
            r#"BROADCAST {{"username":"{name}","message":"hi"}}"#
        ))
        .await;
        keep.push(c);
    }
}

#[tokio::test]
async fn one_login_and_broadcast_split_over_three_writes() {
    let server = server!(joined: false);
    let mut bob = Conn::login(server.addr(), "bob").await;
    let stream = b"LOGIN {\"username\":\"alice\"}\r\nBROADCAST_REQ {\"message\":\"split\"}\r\n";
    for cuts in [(1, 2), (5, 30), (26, 27), (27, 28), (40, stream.len() - 1)] {
        let mut c = Conn::connect(server.addr()).await;
        for part in [
            &stream[..cuts.0],
            &stream[cuts.0..cuts.1],
            &stream[cuts.1..],
        ] {
            c.send_raw(part).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
        c.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
        bob.expect(r#"BROADCAST {"username":"alice","message":"split"}"#)
            .await;
        c.send("BYE").await;
        c.expect(r#"BYE_RESP {"status":"OK"}"#).await;
        c.expect_close().await;
        bob.expect(r#"LEFT {"username":"alice"}"#).await;
    }
}

#[tokio::test]
async fn a_cr_at_the_end_of_a_write_and_its_lf_in_the_next_are_one_line_end() {
    let server = server!();
    let mut c = Conn::connect(server.addr()).await;
    c.send_raw(b"LOGIN {\"username\":\"alice\"}\r").await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.send_raw(b"\nLIST_USERS_REQ\r").await;
    c.expect(r#"LIST_USERS_RESP {"status":"OK","users":["alice"]}"#)
        .await;
    c.send_raw(b"\n").await;
    c.expect_silence().await;
}

// ------------------------------------------------------------------------------------------
// Level 1: broadcast

#[tokio::test]
async fn broadcast_reaches_every_other_user_both_ways() {
    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut carol = Conn::login(server.addr(), "carol").await;
    alice.send(r#"BROADCAST_REQ {"message":"hello all"}"#).await;
    alice.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
    bob.expect(r#"BROADCAST {"username":"alice","message":"hello all"}"#)
        .await;
    carol
        .expect(r#"BROADCAST {"username":"alice","message":"hello all"}"#)
        .await;
    bob.send(r#"BROADCAST_REQ {"message": "back \"at\" you \u00e9"}"#)
        .await;
    bob.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
    alice
        .expect(r#"BROADCAST {"username":"bob","message":"back \"at\" you é"}"#)
        .await;
    carol
        .expect(r#"BROADCAST {"username":"bob","message":"back \"at\" you é"}"#)
        .await;
    alice.expect_silence().await;
    bob.expect_silence().await;
}

#[tokio::test]
async fn broadcast_before_login_is_6000_and_without_body_an_empty_message() {
    let server = server!(joined: false);
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut c = Conn::connect(server.addr()).await;
    c.send(r#"BROADCAST_REQ {"message":"x"}"#).await;
    c.expect(r#"BROADCAST_RESP {"status":"ERROR","code":6000}"#)
        .await;
    bob.expect_silence().await;
    let mut alice = Conn::login(server.addr(), "alice").await;
    alice.send("BROADCAST_REQ").await;
    alice.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
    bob.expect(r#"BROADCAST {"username":"alice","message":""}"#)
        .await;
}

// ------------------------------------------------------------------------------------------
// Level 1: heartbeat

#[tokio::test]
async fn ping_comes_one_interval_after_login_and_then_every_interval() {
    let server = server!(ping_interval: PING);
    let mut c = Conn::connect(server.addr()).await;
    // No PING before the login, however long it takes.
    c.expect_silence_for(PING + Duration::from_millis(100))
        .await;
    c.send(r#"LOGIN {"username":"alice"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    let login = Instant::now();
    c.expect("PING").await;
    let first = login.elapsed();
    assert!(
        first >= PING - Duration::from_millis(20) && first <= PING + Duration::from_millis(100),
        "first PING after {first:?}, expected {PING:?} +-100 ms"
    );
    c.send("PONG").await;
    c.expect("PING").await;
    let second = login.elapsed();
    assert!(
        second >= 2 * PING - Duration::from_millis(20)
            && second <= 2 * PING + Duration::from_millis(150),
        "second PING after {second:?}"
    );
    c.send("PONG").await;
    // Answered in time: still connected.
    c.send("LIST_USERS_REQ").await;
    c.expect(r#"LIST_USERS_RESP {"status":"OK","users":["alice"]}"#)
        .await;
}

#[tokio::test]
async fn no_pong_in_time_is_dscn_7000_then_close_and_left() {
    let server = server!(ping_interval: PING);
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut alice = Conn::login(server.addr(), "alice").await;
    bob.expect(r#"JOINED {"username":"alice"}"#).await;
    // bob answers his pings; alice does not.
    bob.expect("PING").await;
    bob.send("PONG").await;
    alice.expect("PING").await;
    let ping = Instant::now();
    alice.expect(r#"DSCN {"reason":7000}"#).await;
    let waited = ping.elapsed();
    assert!(
        waited >= PONG - Duration::from_millis(20) && waited <= PONG + Duration::from_millis(150),
        "DSCN after {waited:?}, expected {PONG:?}"
    );
    alice.expect_close().await;
    bob.expect(r#"LEFT {"username":"alice"}"#).await;
}

#[tokio::test]
async fn pong_without_ping_is_8000() {
    let server = server!();
    let mut c = Conn::connect(server.addr()).await;
    c.send("PONG").await;
    c.expect(r#"PONG_ERROR {"code":8000}"#).await;
    let mut c = Conn::login(server.addr(), "alice").await;
    c.send("PONG").await;
    c.expect(r#"PONG_ERROR {"code":8000}"#).await;
    // One PONG answers one PING: a second one is unexpected.
    let server = server!(ping_interval: PING);
    let mut c = Conn::login(server.addr(), "alice").await;
    c.expect("PING").await;
    c.send("PONG").await;
    c.send("PONG").await;
    c.expect(r#"PONG_ERROR {"code":8000}"#).await;
}

// ------------------------------------------------------------------------------------------
// Level 1: termination, invalid messages

#[tokio::test]
async fn bye_is_answered_then_closed_and_the_others_get_left() {
    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let mut bob = Conn::login(server.addr(), "bob").await;
    bob.send("BYE").await;
    bob.expect(r#"BYE_RESP {"status":"OK"}"#).await;
    bob.expect_close().await;
    alice.expect(r#"LEFT {"username":"bob"}"#).await;
    // Before a login: answered and closed, nobody is told.
    let mut c = Conn::connect(server.addr()).await;
    c.send("BYE").await;
    c.expect(r#"BYE_RESP {"status":"OK"}"#).await;
    c.expect_close().await;
    alice.expect_silence().await;
}

#[tokio::test]
async fn a_dropped_connection_is_announced_with_left() {
    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let bob = Conn::login(server.addr(), "bob").await;
    drop(bob);
    alice.expect(r#"LEFT {"username":"bob"}"#).await;
    let c = Conn::connect(server.addr()).await;
    drop(c);
    alice.expect_silence().await;
}

#[tokio::test]
async fn unknown_header_and_invalid_body_keep_the_client_connected() {
    let server = server!();
    let mut c = Conn::connect(server.addr()).await;
    for (line, reply) in [
        ("MSG This is an invalid message", "UNKNOWN_COMMAND"),
        ("FOO", "UNKNOWN_COMMAND"),
        ("FOO {}", "UNKNOWN_COMMAND"),
        ("login {}", "UNKNOWN_COMMAND"),
        ("PING", "UNKNOWN_COMMAND"),
        ("", "UNKNOWN_COMMAND"),
        (r#"BROADCAST_REQ {"aaaa"}"#, "PARSE_ERROR"),
        (r#"LOGIN {"}"#, "PARSE_ERROR"),
        ("LOGIN 42", "PARSE_ERROR"),
        (r#"LOGIN {"username":"a"} trailing"#, "PARSE_ERROR"),
        ("PONG junk", "PARSE_ERROR"),
    ] {
        c.send(line).await;
        c.expect(reply).await;
    }
    c.send_raw(b"\xff\xfe {}\nLOGIN \xff\n").await;
    c.expect("UNKNOWN_COMMAND").await;
    c.expect("PARSE_ERROR").await;
    c.send(r#"LOGIN {"username":"alice"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
}

#[tokio::test]
async fn json_first_dialect_answers_as_the_teachers_server() {
    let server = server!(dialect: Dialect::json_first(), joined: false);
    let mut c = Conn::connect(server.addr()).await;
    for (line, reply) in [
        ("MSG This is an invalid message", "PARSE_ERROR"),
        ("FOO", "UNKNOWN_COMMAND"),
        ("FOO {}", "UNKNOWN_COMMAND"),
        (r#"LOGIN {"}"#, "PARSE_ERROR"),
        ("LOGIN ", r#"LOGIN_RESP {"status":"ERROR","code":5001}"#),
    ] {
        c.send(line).await;
        c.expect(reply).await;
    }
}

#[tokio::test]
async fn lines_up_to_the_limit_pass_longer_ones_get_dscn_7001() {
    let server = server!(joined: false);
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut alice = Conn::login(server.addr(), "alice").await;
    // BROADCAST_REQ {"message":"..."} of exactly 1024 bytes.
    let overhead = r#"BROADCAST_REQ {"message":""}"#.len();
    let text = "x".repeat(1024 - overhead);
    alice
        .send(&format!(r#"BROADCAST_REQ {{"message":"{text}"}}"#))
        .await;
    alice.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
    bob.expect(&format!(
        r#"BROADCAST {{"username":"alice","message":"{text}"}}"#
    ))
    .await;
    // One byte more, and no line end yet: the server does not wait for it.
    let text = "x".repeat(1025 - overhead);
    alice
        .send_raw(format!(r#"BROADCAST_REQ {{"message":"{text}"}}"#).as_bytes())
        .await;
    alice.expect(r#"DSCN {"reason":7001}"#).await;
    alice.expect_close().await;
    bob.expect(r#"LEFT {"username":"alice"}"#).await;
    bob.expect_silence().await;
}

#[tokio::test]
async fn a_larger_line_limit_is_honoured() {
    let server = server!(max_line: 4096);
    let mut c = Conn::connect(server.addr()).await;
    let name = "x".repeat(4000);
    c.send(&format!(r#"LOGIN {{"username":"{name}"}}"#)).await;
    c.expect(r#"LOGIN_RESP {"status":"ERROR","code":5001}"#)
        .await;
    c.send_raw("y".repeat(4097).as_bytes()).await;
    c.expect(r#"DSCN {"reason":7001}"#).await;
    c.expect_close().await;
    assert!(
        server::spawn(ServerConfig {
            max_line: 1023,
            ..fast()
        })
        .await
        .is_err()
    );
}

#[tokio::test]
async fn renamed_headers_are_spoken_both_ways() {
    let mut headers = HeaderMap::default();
    for rule in [
        "LIST_USERS_REQ=USER_LIST_REQ",
        "LIST_USERS_RESP=USER_LIST_RESP",
        "PRIVATE_MESSAGE_REQ=PRIVATE_MSG_REQ",
        "LOGIN=LOGIN REQ",
    ] {
        headers.apply(rule).unwrap();
    }
    let server = server!(
        dialect: Dialect {
            headers,
            check_order: CheckOrder::HeaderFirst
        },
        joined: false
    );
    let mut c = Conn::connect(server.addr()).await;
    c.send("LOGIN {\"username\":\"alice\"}").await;
    c.expect("UNKNOWN_COMMAND").await;
    c.send("LOGIN REQ {\"username\":\"alice\"}").await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    c.send("LIST_USERS_REQ").await;
    c.expect("UNKNOWN_COMMAND").await;
    c.send("USER_LIST_REQ").await;
    c.expect(r#"USER_LIST_RESP {"status":"OK","users":["alice"]}"#)
        .await;
    c.send(r#"PRIVATE_MSG_REQ {"receiver":"nobody","message":"x"}"#)
        .await;
    c.expect(r#"PRIVATE_MESSAGE_RESP {"status":"ERROR","code":6001}"#)
        .await;
}

// ------------------------------------------------------------------------------------------
// Level 2: users and private messages

#[tokio::test]
async fn list_users_in_login_order_with_the_requester() {
    let server = server!(joined: false);
    let mut c = Conn::connect(server.addr()).await;
    c.send("LIST_USERS_REQ").await;
    c.expect(r#"LIST_USERS_RESP {"status":"ERROR","code":6000}"#)
        .await;
    let _zed = Conn::login(server.addr(), "zed").await;
    let mut amy = Conn::login(server.addr(), "amy").await;
    let mid = Conn::login(server.addr(), "mid").await;
    amy.send("LIST_USERS_REQ").await;
    amy.expect(r#"LIST_USERS_RESP {"status":"OK","users":["zed","amy","mid"]}"#)
        .await;
    drop(mid);
    amy.expect(r#"LEFT {"username":"mid"}"#).await;
    c.send(r#"LOGIN {"username":"bob"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    c.send("LIST_USERS_REQ").await;
    c.expect(r#"LIST_USERS_RESP {"status":"OK","users":["zed","amy","bob"]}"#)
        .await;
}

#[tokio::test]
async fn private_message_reaches_the_receiver_only() {
    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let mut bob = Conn::login(server.addr(), "bob").await;
    let mut carol = Conn::login(server.addr(), "carol").await;
    alice
        .send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":"psst"}"#)
        .await;
    alice
        .expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#)
        .await;
    bob.expect(r#"PRIVATE_MESSAGE {"sender":"alice","message":"psst"}"#)
        .await;
    carol.expect_silence().await;
    alice.expect_silence().await;
}

#[tokio::test]
async fn private_message_errors() {
    let server = server!(joined: false);
    let mut anonymous = Conn::connect(server.addr()).await;
    anonymous
        .send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":"x"}"#)
        .await;
    anonymous
        .expect(r#"PRIVATE_MESSAGE_RESP {"status":"ERROR","code":6000}"#)
        .await;
    let mut alice = Conn::login(server.addr(), "alice").await;
    let mut bob = Conn::login(server.addr(), "bob").await;
    for (line, code) in [
        (r#"{"receiver":"nobody","message":"x"}"#, 6001),
        (r#"{"message":"x"}"#, 6001),
        (r#"{"receiver":"alice","message":"x"}"#, 6007),
        (r#"{"receiver":"alice","message":""}"#, 6007),
        (r#"{"receiver":"bob","message":""}"#, 6008),
        (r#"{"receiver":"bob"}"#, 6008),
    ] {
        alice.send(&format!("PRIVATE_MESSAGE_REQ {line}")).await;
        alice
            .expect(&format!(
                r#"PRIVATE_MESSAGE_RESP {{"status":"ERROR","code":{code}}}"#
            ))
            .await;
    }
    alice
        .send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":5}"#)
        .await;
    alice.expect("PARSE_ERROR").await;
    bob.expect_silence().await;
}

// ------------------------------------------------------------------------------------------
// Level 2: the guessing game

/// Logs in `names`, no JOINED (the server must have `joined: false`).
async fn users(server: &RunningServer, names: &[&str]) -> Vec<Conn> {
    let mut conns = Vec::new();
    for name in names {
        conns.push(Conn::login(server.addr(), name).await);
    }
    conns
}

const START_OK: &str = r#"START_GAME_RESP {"status":"OK"}"#;
const JOIN_OK: &str = r#"JOIN_GAME_RESP {"status":"OK"}"#;
const CORRECT: &str = r#"GUESS_NUMBER_RESP {"status":"OK","result":"Correct"}"#;

fn guess_error(code: u32) -> String {
    format!(r#"GUESS_NUMBER_RESP {{"status":"ERROR","code":{code}}}"#)
}

#[tokio::test]
async fn a_whole_game() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob", "carol"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[2].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(JOIN_OK).await;
    // During the window nobody may guess.
    u[0].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[0].expect(&guess_error(7003)).await;
    u[2].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[2].expect(&guess_error(7003)).await;
    // The window ends: both participants are told the game starts.
    u[0].expect(START_OK).await;
    u[1].expect(START_OK).await;
    u[2].expect_silence().await;
    // carol did not join.
    u[2].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[2].expect(&guess_error(8001)).await;
    u[2].send("JOIN_GAME_REQ").await;
    u[2].expect(r#"JOIN_GAME_RESP {"status":"ERROR","code":6003}"#)
        .await;
    for (guess, reply) in [
        ("0", guess_error(7007)),
        ("51", guess_error(7007)),
        ("-5", guess_error(7007)),
        ("10", guess_error(7005)),
        ("\"30\"", guess_error(7006)),
        ("\"abc\"", guess_error(7004)),
        ("2.5", guess_error(7004)),
        ("null", guess_error(7004)),
        ("\"\"", guess_error(7004)),
    ] {
        u[1].send(&format!(r#"GUESS_NUMBER_REQ {{"number":{guess}}}"#))
            .await;
        u[1].expect(&reply).await;
    }
    u[1].send("GUESS_NUMBER_REQ {}").await;
    u[1].expect(&guess_error(7004)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    u[1].send(r#"GUESS_NUMBER_REQ {"number":"25"}"#).await;
    u[1].expect(CORRECT).await;
    // Right once is enough.
    u[1].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[1].expect(&guess_error(7003)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    u[0].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[0].expect(CORRECT).await;
    // Everyone guessed: results, fastest first.
    for i in [0, 1] {
        let line = u[i].line().await;
        let body = line.strip_prefix("GAME_RESULTS ").unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["status"], "OK", "{line}");
        let results = value["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{line}");
        assert_eq!(results[0]["username"], "bob", "{line}");
        assert_eq!(results[1]["username"], "alice", "{line}");
        let (t0, t1) = (
            results[0]["time_ms"].as_u64().unwrap(),
            results[1]["time_ms"].as_u64().unwrap(),
        );
        assert!(t0 >= 50 && t0 < t1, "{line}");
        assert!(
            line.starts_with(
                r#"GAME_RESULTS {"status":"OK","results":[{"username":"bob","time_ms":"#
            ),
            "{line}"
        );
    }
    u[2].expect_silence().await;
    // The game is over: a guess finds none, a new one can start.
    u[0].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[0].expect(&guess_error(7002)).await;
    u[2].send("START_GAME_REQ").await;
    u[2].expect(START_OK).await;
}

#[tokio::test]
async fn game_errors_before_login_and_without_a_game() {
    let server = server!(joined: false);
    let mut c = Conn::connect(server.addr()).await;
    c.send("START_GAME_REQ").await;
    c.expect(r#"START_GAME_RESP {"status":"ERROR","code":6000}"#)
        .await;
    c.send("JOIN_GAME_REQ").await;
    c.expect(r#"JOIN_GAME_RESP {"status":"ERROR","code":6000}"#)
        .await;
    c.send(r#"GUESS_NUMBER_REQ {"number":1}"#).await;
    c.expect(&guess_error(6000)).await;
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send("JOIN_GAME_REQ").await;
    u[0].expect(r#"JOIN_GAME_RESP {"status":"ERROR","code":6005}"#)
        .await;
    u[0].send(r#"GUESS_NUMBER_REQ {"number":1}"#).await;
    u[0].expect(&guess_error(7002)).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    // The initiator is a participant already; a second game cannot start.
    u[0].send("JOIN_GAME_REQ").await;
    u[0].expect(r#"JOIN_GAME_RESP {"status":"ERROR","code":6004}"#)
        .await;
    u[1].send("START_GAME_REQ").await;
    u[1].expect(r#"START_GAME_RESP {"status":"ERROR","code":6003}"#)
        .await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(JOIN_OK).await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(r#"JOIN_GAME_RESP {"status":"ERROR","code":6004}"#)
        .await;
}

#[tokio::test]
async fn a_game_alone_is_cancelled_with_6002() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[0].expect(r#"START_GAME_RESP {"status":"ERROR","code":6002}"#)
        .await;
    u[1].expect_silence().await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(r#"JOIN_GAME_RESP {"status":"ERROR","code":6005}"#)
        .await;
}

#[tokio::test]
async fn nobody_right_by_the_time_limit_is_9002() {
    let server = server!(joined: false, game_time_limit: Duration::from_millis(300));
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(JOIN_OK).await;
    u[0].expect(START_OK).await;
    u[1].expect(START_OK).await;
    u[0].send(r#"GUESS_NUMBER_REQ {"number":1}"#).await;
    u[0].expect(&guess_error(7005)).await;
    for c in &mut u {
        c.expect(r#"GAME_RESULTS {"status":"ERROR","code":9002}"#)
            .await;
    }
}

#[tokio::test]
async fn the_time_limit_reports_those_who_got_it() {
    let server = server!(joined: false, game_time_limit: Duration::from_millis(300));
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(JOIN_OK).await;
    u[0].expect(START_OK).await;
    u[1].expect(START_OK).await;
    u[1].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[1].expect(CORRECT).await;
    for c in &mut u {
        let line = c.line().await;
        assert!(
            line.starts_with(
                r#"GAME_RESULTS {"status":"OK","results":[{"username":"bob","time_ms":"#
            ) && line.ends_with("}]}")
                && !line.contains("alice"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_participant_who_leaves_is_out_of_the_game() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob", "carol"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    for i in [1, 2] {
        u[i].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
        u[i].send("JOIN_GAME_REQ").await;
        u[i].expect(JOIN_OK).await;
    }
    for c in &mut u {
        c.expect(START_OK).await;
    }
    u[0].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[0].expect(CORRECT).await;
    u[1].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[1].expect(CORRECT).await;
    // carol leaves without guessing: the others are done.
    let carol = u.pop().unwrap();
    drop(carol);
    for c in &mut u {
        c.expect(r#"LEFT {"username":"carol"}"#).await;
        let line = c.line().await;
        assert!(
            line.starts_with(r#"GAME_RESULTS {"status":"OK","results":[{"username":"alice""#),
            "{line}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Level 3: file transfer

const SHA_OF_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn file_transfer_request_errors() {
    let server = server!(joined: false, max_file_size: 1000);
    let mut anonymous = Conn::connect(server.addr()).await;
    anonymous
        .send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"a.txt"}"#)
        .await;
    anonymous
        .expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":6000}"#)
        .await;
    let mut u = users(&server, &["alice", "bob"]).await;
    for (body, code) in [
        (r#"{"receiver":"nobody","filename":"a"}"#, 6001),
        (r#"{"receiver":"alice","filename":"a"}"#, 6001),
        (r#"{"receiver":"bob","filename":"a","size":1001}"#, 10000),
        (
            r#"{"receiver":"bob","filename":"a","checksum":"abc"}"#,
            10001,
        ),
        (
            r#"{"receiver":"bob","filename":"a","checksum":"zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#,
            10001,
        ),
    ] {
        u[0].send(&format!("FILE_TRANSFER_REQUEST {body}")).await;
        u[0].expect(&format!(
            r#"FILE_TRANSFER_RESPONSE {{"status":"ERROR","code":{code}}}"#
        ))
        .await;
    }
    u[0].send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"a","size":-1}"#)
        .await;
    u[0].expect("PARSE_ERROR").await;
    u[1].expect_silence().await;
}

#[tokio::test]
async fn file_transfer_request_is_relayed_and_rejection_is_10002() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(&format!(
        r#"FILE_TRANSFER_REQUEST {{"receiver":"bob","filename":"a.txt","size":3,"checksum":"{SHA_OF_ABC}"}}"#
    ))
    .await;
    u[1].expect(&format!(
        r#"FILE_TRANSFER_REQUEST {{"sender":"alice","filename":"a.txt","size":3,"checksum":"{SHA_OF_ABC}"}}"#
    ))
    .await;
    u[0].expect_silence().await;
    u[1].send(r#"FILE_TRANSFER_RESPONSE {"sender":"alice","status":"REJECTED","transferId":"x"}"#)
        .await;
    u[0].expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":10002}"#)
        .await;
    u[1].expect_silence().await;
    // Without size and checksum, none are relayed.
    u[0].send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"b.bin"}"#)
        .await;
    u[1].expect(r#"FILE_TRANSFER_REQUEST {"sender":"alice","filename":"b.bin"}"#)
        .await;
}

#[tokio::test]
async fn file_transfer_response_errors() {
    let server = server!(joined: false);
    let mut anonymous = Conn::connect(server.addr()).await;
    let id = uuid::Uuid::new_v4().to_string();
    anonymous
        .send(&format!(
            r#"FILE_TRANSFER_RESPONSE {{"sender":"alice","status":"OK","transferId":"{id}"}}"#
        ))
        .await;
    anonymous
        .expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":6000}"#)
        .await;
    let mut u = users(&server, &["alice", "bob"]).await;
    let respond = |sender: &str, status: &str, id: &str| {
        format!(
            r#"FILE_TRANSFER_RESPONSE {{"sender":"{sender}","status":"{status}","transferId":"{id}"}}"#
        )
    };
    u[1].send(&respond("nobody", "OK", &id)).await;
    u[1].expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":6001}"#)
        .await;
    // Nothing was requested.
    u[1].send(&respond("alice", "OK", &id)).await;
    u[1].expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":10006}"#)
        .await;
    u[0].send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"a"}"#)
        .await;
    u[1].expect(r#"FILE_TRANSFER_REQUEST {"sender":"alice","filename":"a"}"#)
        .await;
    u[1].send(&respond("alice", "OK", "not-a-uuid")).await;
    u[1].expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":10005}"#)
        .await;
    u[1].send(&respond("alice", "MAYBE", &id)).await;
    u[1].expect("PARSE_ERROR").await;
    // The request is still pending: a good answer goes through.
    u[1].send(&respond("alice", "OK", &id)).await;
    u[0].expect(&format!(
        r#"FILE_TRANSFER_RESPONSE {{"receiver":"bob","status":"OK","transferId":"{id}"}}"#
    ))
    .await;
    // The same id twice is refused.
    u[0].send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"b"}"#)
        .await;
    u[1].expect(r#"FILE_TRANSFER_REQUEST {"sender":"alice","filename":"b"}"#)
        .await;
    u[1].send(&respond("alice", "OK", &id)).await;
    u[1].expect(r#"FILE_TRANSFER_RESPONSE {"status":"ERROR","code":10005}"#)
        .await;
}

/// alice offers `bob` a file; bob accepts with a fresh id. Returns the id.
async fn accepted_transfer(u: &mut [Conn], declared: &str) -> String {
    let [alice, bob, ..] = u else {
        panic!("two users needed");
    };
    alice
        .send(&format!(
            r#"FILE_TRANSFER_REQUEST {{"receiver":"bob","filename":"f.bin"{declared}}}"#
        ))
        .await;
    let request = bob.line().await;
    assert!(
        request.starts_with(r#"FILE_TRANSFER_REQUEST {"sender":"alice","filename":"f.bin""#),
        "{request}"
    );
    let id = uuid::Uuid::new_v4().to_string();
    bob.send(&format!(
        r#"FILE_TRANSFER_RESPONSE {{"sender":"alice","status":"OK","transferId":"{id}"}}"#
    ))
    .await;
    alice
        .expect(&format!(
            r#"FILE_TRANSFER_RESPONSE {{"receiver":"bob","status":"OK","transferId":"{id}"}}"#
        ))
        .await;
    id
}

async fn data_conn(server: &RunningServer, hello: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.data_addr()).await.unwrap();
    stream.write_all(hello.as_bytes()).await.unwrap();
    stream
}

async fn read_exact_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("no line on the data channel")
            .unwrap();
        if n == 0 || byte[0] == b'\n' {
            return String::from_utf8_lossy(&line).into_owned();
        }
        line.push(byte[0]);
    }
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut data))
        .await
        .expect("the download did not end")
        .unwrap();
    data
}

/// Uploads `file` over the data channel of transfer `id` and returns what the downloader got.
async fn relay(server: &RunningServer, id: &str, file: &[u8]) -> Vec<u8> {
    let mut down = data_conn(server, &format!("DOWNLOAD {id}\n")).await;
    let mut up = data_conn(server, &format!("UPLOAD {id}\r\n")).await;
    assert_eq!(read_exact_line(&mut up).await, "READY");
    assert_eq!(read_exact_line(&mut down).await, "READY");
    let (_, got) = tokio::join!(
        async {
            up.write_all(file).await.unwrap();
            up.shutdown().await.unwrap();
        },
        read_to_end(&mut down)
    );
    got
}

fn file_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn a_file_passes_the_data_channel_with_its_checksum() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    let file = file_of(300_000);
    let sha = sha256_hex(&file);
    let id = accepted_transfer(
        &mut u,
        &format!(r#","size":{},"checksum":"{sha}""#, file.len()),
    )
    .await;
    let got = relay(&server, &id, &file).await;
    assert_eq!(got.len(), file.len());
    assert!(got == file, "the file changed on the way");
    let complete = format!(
        r#"FILE_TRANSFER_COMPLETE {{"transferId":"{id}","status":"OK","size":300000,"checksum":"{sha}"}}"#
    );
    u[0].expect(&complete).await;
    u[1].expect(&complete).await;
}

#[tokio::test]
async fn a_transfer_without_declarations_and_an_early_upload() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    let id = accepted_transfer(&mut u, "").await;
    // The uploader attaches first and sends at once, before READY.
    let mut up = data_conn(&server, &format!("UPLOAD {id}\nabc")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut down = data_conn(&server, &format!("DOWNLOAD {id}\n")).await;
    assert_eq!(read_exact_line(&mut up).await, "READY");
    assert_eq!(read_exact_line(&mut down).await, "READY");
    up.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut down).await, b"abc");
    let complete = format!(
        r#"FILE_TRANSFER_COMPLETE {{"transferId":"{id}","status":"OK","size":3,"checksum":"{SHA_OF_ABC}"}}"#
    );
    u[0].expect(&complete).await;
    u[1].expect(&complete).await;
}

#[tokio::test]
async fn a_transfer_that_differs_from_its_declaration_is_10003() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    let id = accepted_transfer(&mut u, &format!(r#","size":4,"checksum":"{SHA_OF_ABC}""#)).await;
    assert_eq!(relay(&server, &id, b"abc").await, b"abc");
    let complete = format!(
        r#"FILE_TRANSFER_COMPLETE {{"transferId":"{id}","status":"ERROR","code":10003,"size":3,"checksum":"{SHA_OF_ABC}"}}"#
    );
    u[0].expect(&complete).await;
    u[1].expect(&complete).await;
}

#[tokio::test]
async fn data_channel_refuses_bad_hellos_and_unknown_ids() {
    let server = server!(joined: false);
    for hello in ["HELLO\n", "UPLOAD\n", "DOWNLOAD a b\n"] {
        let mut c = data_conn(&server, hello).await;
        assert_eq!(
            read_exact_line(&mut c).await,
            "ERROR expected UPLOAD <transferId> or DOWNLOAD <transferId>"
        );
        assert!(read_to_end(&mut c).await.is_empty());
    }
    let mut c = data_conn(&server, &"x".repeat(200)).await;
    assert!(read_exact_line(&mut c).await.starts_with("ERROR "));
    let mut c = data_conn(&server, &format!("DOWNLOAD {}\n", uuid::Uuid::new_v4())).await;
    assert_eq!(read_exact_line(&mut c).await, "ERROR unknown transfer");
    // A side attached twice.
    let mut u = users(&server, &["alice", "bob"]).await;
    let id = accepted_transfer(&mut u, "").await;
    let _first = data_conn(&server, &format!("UPLOAD {id}\n")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = data_conn(&server, &format!("UPLOAD {id}\n")).await;
    assert_eq!(
        read_exact_line(&mut second).await,
        "ERROR this side of the transfer is attached already"
    );
}

#[tokio::test]
async fn a_side_that_never_attaches_ends_the_transfer_with_10004() {
    let server = server!(joined: false, transfer_timeout: Duration::from_millis(300));
    let mut u = users(&server, &["alice", "bob"]).await;
    let id = accepted_transfer(&mut u, "").await;
    let mut up = data_conn(&server, &format!("UPLOAD {id}\n")).await;
    assert_eq!(
        read_exact_line(&mut up).await,
        "ERROR the other side did not attach in time"
    );
    let empty = sha256_hex(b"");
    let complete = format!(
        r#"FILE_TRANSFER_COMPLETE {{"transferId":"{id}","status":"ERROR","code":10004,"size":0,"checksum":"{empty}"}}"#
    );
    u[0].expect(&complete).await;
    u[1].expect(&complete).await;
    // The id is gone.
    let mut late = data_conn(&server, &format!("DOWNLOAD {id}\n")).await;
    assert_eq!(read_exact_line(&mut late).await, "ERROR unknown transfer");
}

#[tokio::test]
async fn a_downloader_may_attach_before_its_answer_is_read() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"f"}"#)
        .await;
    u[1].expect(r#"FILE_TRANSFER_REQUEST {"sender":"alice","filename":"f"}"#)
        .await;
    let id = uuid::Uuid::new_v4().to_string();
    // The data connection comes first; the answer 50 ms later.
    let mut down = data_conn(&server, &format!("DOWNLOAD {id}\n")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    u[1].send(&format!(
        r#"FILE_TRANSFER_RESPONSE {{"sender":"alice","status":"OK","transferId":"{id}"}}"#
    ))
    .await;
    u[0].line().await;
    let mut up = data_conn(&server, &format!("UPLOAD {id}\n")).await;
    assert_eq!(read_exact_line(&mut down).await, "READY");
    assert_eq!(read_exact_line(&mut up).await, "READY");
    up.write_all(b"abc").await.unwrap();
    up.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut down).await, b"abc");
}

// ------------------------------------------------------------------------------------------
// Level 4: secure messages

#[tokio::test]
async fn secure_handshake_and_message_are_relayed_untouched() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob", "carol"]).await;
    u[0].send(r#"SECURE_MESSAGE_REQ {"receiver":"bob"}"#).await;
    u[1].expect(r#"SECURE_MESSAGE_REQ {"sender":"alice"}"#)
        .await;
    u[1].send(r#"SECURE_MESSAGE_RES {"sender":"alice","publicKey":"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"}"#)
        .await;
    u[0].expect(r#"SECURE_MESSAGE_RES {"receiver":"bob","publicKey":"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"}"#)
        .await;
    u[0].send(
        r#"SECURE_MESSAGE {"receiver":"bob","sessionKey":"c2Vzc2lvbg==","message":"Y2lwaGVy"}"#,
    )
    .await;
    u[1].expect(
        r#"SECURE_MESSAGE {"sender":"alice","sessionKey":"c2Vzc2lvbg==","message":"Y2lwaGVy"}"#,
    )
    .await;
    // The spec's form: "sender" names the receiver.
    u[0].send(r#"SECURE_MESSAGE {"sender":"bob","sessionKey":"k","message":"m"}"#)
        .await;
    u[1].expect(r#"SECURE_MESSAGE {"sender":"alice","sessionKey":"k","message":"m"}"#)
        .await;
    // "sender" naming oneself, or nothing: the partner of the last handshake.
    u[0].send(r#"SECURE_MESSAGE {"sender":"alice","sessionKey":"k2","message":"m2"}"#)
        .await;
    u[1].expect(r#"SECURE_MESSAGE {"sender":"alice","sessionKey":"k2","message":"m2"}"#)
        .await;
    u[0].expect_silence().await;
    u[2].expect_silence().await;
}

#[tokio::test]
async fn secure_message_errors_come_under_the_failed_header() {
    let server = server!(joined: false);
    let mut anonymous = Conn::connect(server.addr()).await;
    for header in ["SECURE_MESSAGE_REQ", "SECURE_MESSAGE_RES", "SECURE_MESSAGE"] {
        anonymous
            .send(&format!(r#"{header} {{"receiver":"bob"}}"#))
            .await;
        anonymous
            .expect(&format!(r#"{header} {{"status":"ERROR","code":6000}}"#))
            .await;
    }
    let mut u = users(&server, &["alice"]).await;
    for (line, reply) in [
        (
            r#"SECURE_MESSAGE_REQ {"receiver":"nobody"}"#,
            r#"SECURE_MESSAGE_REQ {"status":"ERROR","code":6001}"#,
        ),
        (
            r#"SECURE_MESSAGE_REQ {"receiver":"alice"}"#,
            r#"SECURE_MESSAGE_REQ {"status":"ERROR","code":6007}"#,
        ),
        (
            r#"SECURE_MESSAGE_RES {"sender":"nobody","publicKey":"k"}"#,
            r#"SECURE_MESSAGE_RES {"status":"ERROR","code":6001}"#,
        ),
        (
            r#"SECURE_MESSAGE {"receiver":"nobody","sessionKey":"k","message":"m"}"#,
            r#"SECURE_MESSAGE {"status":"ERROR","code":6001}"#,
        ),
        (
            r#"SECURE_MESSAGE {"sessionKey":"k","message":"m"}"#,
            r#"SECURE_MESSAGE {"status":"ERROR","code":6001}"#,
        ),
        (
            r#"SECURE_MESSAGE {"receiver":"alice","sessionKey":"k","message":"m"}"#,
            r#"SECURE_MESSAGE {"status":"ERROR","code":6007}"#,
        ),
    ] {
        u[0].send(line).await;
        u[0].expect(reply).await;
    }
}

// ------------------------------------------------------------------------------------------
// General: isolation, limits, shutdown

#[tokio::test]
async fn a_misbehaving_client_leaves_the_others_alone() {
    let server = server!(joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    let mut junk = Conn::login(server.addr(), "junk").await;
    junk.send_raw(b"\x00\x01\x02\xff garbage {{{\n").await;
    junk.expect("UNKNOWN_COMMAND").await;
    junk.send(r#"LOGIN {"username":"alice"}"#).await;
    junk.expect(r#"LOGIN_RESP {"status":"ERROR","code":5002}"#)
        .await;
    junk.send(r#"BROADCAST_REQ {"message":"#).await;
    junk.expect("PARSE_ERROR").await;
    junk.send_raw(&[b'z'; 5000]).await;
    junk.expect(r#"DSCN {"reason":7001}"#).await;
    junk.expect_close().await;
    for c in &mut u {
        c.expect(r#"LEFT {"username":"junk"}"#).await;
    }
    u[0].send("LIST_USERS_REQ").await;
    u[0].expect(r#"LIST_USERS_RESP {"status":"OK","users":["alice","bob"]}"#)
        .await;
    u[0].send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":"still here"}"#)
        .await;
    u[0].expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#).await;
    u[1].expect(r#"PRIVATE_MESSAGE {"sender":"alice","message":"still here"}"#)
        .await;
    // Its name is free again.
    Conn::login(server.addr(), "junk").await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_not_buffered() {
    let server = server!(joined: false, max_queue: 16, write_timeout: Duration::from_secs(1));
    let mut alice = Conn::login(server.addr(), "alice").await;
    let _sleeper = Conn::login(server.addr(), "sleeper").await;
    let text = "y".repeat(900);
    let line = format!("BROADCAST_REQ {{\"message\":\"{text}\"}}\n");
    // Far more than the socket buffers hold; alice reads her answers as she goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        assert!(Instant::now() < deadline, "the sleeper was never dropped");
        alice.send_raw(line.repeat(50).as_bytes()).await;
        sent += 50;
        let mut left = false;
        for _ in 0..50 {
            let got = alice.line().await;
            if got == r#"LEFT {"username":"sleeper"}"# {
                left = true;
                alice.expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
            } else {
                assert_eq!(got, r#"BROADCAST_RESP {"status":"OK"}"#);
            }
        }
        if left {
            break;
        }
    }
    assert!(sent > 16);
    alice.send("LIST_USERS_REQ").await;
    alice
        .expect(r#"LIST_USERS_RESP {"status":"OK","users":["alice"]}"#)
        .await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let server = server!(max_connections: 2);
    let _a = Conn::connect(server.addr()).await;
    let _b = Conn::connect(server.addr()).await;
    let mut c = Conn::open(server.addr()).await;
    c.expect_close().await;
}

#[tokio::test]
async fn shutdown_closes_every_connection() {
    let server = server!(joined: false);
    let mut alice = Conn::login(server.addr(), "alice").await;
    let mut anonymous = Conn::connect(server.addr()).await;
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown hangs");
    alice.expect_close().await;
    anonymous.expect_close().await;
}

// ------------------------------------------------------------------------------------------
// Faults: each breaks exactly the behaviour it names

#[tokio::test]
async fn fault_login_and_welcome() {
    let server = faulty_server!(Fault::WelcomeWithoutVersion);
    let mut c = Conn::open(server.addr()).await;
    c.expect(r#"WELCOME {"msg":"Welcome to the server"}"#).await;

    let server = faulty_server!(Fault::LoginOrderWrong);
    let mut c = Conn::login(server.addr(), "alice").await;
    c.send(r#"LOGIN {"username":"*"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"ERROR","code":5001}"#)
        .await;

    let server = faulty_server!(Fault::AcceptBadUsername);
    let mut c = Conn::connect(server.addr()).await;
    c.send(r#"LOGIN {"username":"*a*"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;

    let server = faulty_server!(Fault::AllowDuplicateName, joined: false);
    let _a = Conn::login(server.addr(), "alice").await;
    let mut b = Conn::login(server.addr(), "alice").await;
    b.send("LIST_USERS_REQ").await;
    b.expect(r#"LIST_USERS_RESP {"status":"OK","users":["alice","alice"]}"#)
        .await;

    let server = faulty_server!(Fault::AllowLoginTwice);
    let mut c = Conn::login(server.addr(), "alice").await;
    c.send(r#"LOGIN {"username":"bob"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    c.send("LIST_USERS_REQ").await;
    c.expect(r#"LIST_USERS_RESP {"status":"OK","users":["bob"]}"#)
        .await;

    let server = faulty_server!(Fault::CodesAsStrings);
    let mut c = Conn::connect(server.addr()).await;
    c.send("LOGIN {}").await;
    c.expect(r#"LOGIN_RESP {"status":"ERROR","code":"5001"}"#)
        .await;
}

#[tokio::test]
async fn fault_broadcast_and_left() {
    let server = faulty_server!(Fault::BroadcastEchoesSender, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"BROADCAST_REQ {"message":"m"}"#).await;
    u[0].expect(r#"BROADCAST_RESP {"status":"OK"}"#).await;
    u[0].expect(r#"BROADCAST {"username":"alice","message":"m"}"#)
        .await;

    let server = faulty_server!(Fault::BroadcastWithoutResp, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"BROADCAST_REQ {"message":"m"}"#).await;
    u[1].expect(r#"BROADCAST {"username":"alice","message":"m"}"#)
        .await;
    u[0].expect_silence().await;

    let server = faulty_server!(Fault::NoLeft, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u.pop();
    u[0].expect_silence().await;
}

#[tokio::test]
async fn fault_heartbeat() {
    let server = faulty_server!(Fault::PingFromConnect, ping_interval: PING);
    let mut c = Conn::connect(server.addr()).await;
    let connected = Instant::now();
    tokio::time::sleep(PING / 2).await;
    c.send(r#"LOGIN {"username":"alice"}"#).await;
    c.expect(r#"LOGIN_RESP {"status":"OK"}"#).await;
    c.expect("PING").await;
    assert!(connected.elapsed() < PING + PING / 4);

    let server = faulty_server!(Fault::WrongPingInterval, ping_interval: PING);
    let mut c = Conn::login(server.addr(), "alice").await;
    let login = Instant::now();
    c.expect("PING").await;
    assert!(login.elapsed() < PING - Duration::from_millis(50));

    let server = faulty_server!(Fault::NoPongTimeout, ping_interval: PING);
    let mut c = Conn::login(server.addr(), "alice").await;
    c.expect("PING").await;
    c.expect_silence_for(PONG * 2).await;

    let server = faulty_server!(Fault::NoPongError);
    let mut c = Conn::connect(server.addr()).await;
    c.send("PONG").await;
    c.expect_silence().await;
}

#[tokio::test]
async fn fault_invalid_messages_and_bye() {
    let server = faulty_server!(Fault::NoDscnOnLongLine);
    let mut c = Conn::connect(server.addr()).await;
    c.send_raw(&[b'z'; 2000]).await;
    c.expect_silence().await;
    c.send("\nFOO").await;
    c.expect("UNKNOWN_COMMAND").await;

    let server = faulty_server!(Fault::UnknownAsParseError);
    let mut c = Conn::connect(server.addr()).await;
    c.send("FOO").await;
    c.expect("PARSE_ERROR").await;

    let server = faulty_server!(Fault::ParseAsUnknown);
    let mut c = Conn::connect(server.addr()).await;
    c.send(r#"LOGIN {"}"#).await;
    c.expect("UNKNOWN_COMMAND").await;

    let server = faulty_server!(Fault::StayOpenAfterBye);
    let mut c = Conn::login(server.addr(), "alice").await;
    c.send("BYE").await;
    c.expect(r#"BYE_RESP {"status":"OK"}"#).await;
    c.expect_silence().await;
}

#[tokio::test]
async fn fault_users_and_private_messages() {
    let server = faulty_server!(Fault::ListUsersWithoutSelf, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send("LIST_USERS_REQ").await;
    u[0].expect(r#"LIST_USERS_RESP {"status":"OK","users":["bob"]}"#)
        .await;

    let server = faulty_server!(Fault::PmToSelfAllowed, joined: false);
    let mut u = users(&server, &["alice"]).await;
    u[0].send(r#"PRIVATE_MESSAGE_REQ {"receiver":"alice","message":"me"}"#)
        .await;
    u[0].expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#).await;
    u[0].expect(r#"PRIVATE_MESSAGE {"sender":"alice","message":"me"}"#)
        .await;

    let server = faulty_server!(Fault::PmEmptyAllowed, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":""}"#)
        .await;
    u[0].expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#).await;

    let server = faulty_server!(Fault::PmToEveryone, joined: false);
    let mut u = users(&server, &["alice", "bob", "carol"]).await;
    u[0].send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":"m"}"#)
        .await;
    u[0].expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#).await;
    u[2].expect(r#"PRIVATE_MESSAGE {"sender":"alice","message":"m"}"#)
        .await;

    let server = faulty_server!(Fault::PmNotDelivered, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"PRIVATE_MESSAGE_REQ {"receiver":"bob","message":"m"}"#)
        .await;
    u[0].expect(r#"PRIVATE_MESSAGE_RESP {"status":"OK"}"#).await;
    u[1].expect_silence().await;
}

/// alice starts, bob joins (and `notify` says whether bob sees the notification first), the
/// window ends.
async fn started_game(u: &mut [Conn], notify: bool) {
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    if notify {
        u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    }
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(JOIN_OK).await;
    u[0].expect(START_OK).await;
    u[1].expect(START_OK).await;
}

#[tokio::test]
async fn fault_game() {
    let server = faulty_server!(Fault::NoGameNotification, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect_silence().await;

    let server = faulty_server!(Fault::JoinAfterWindowAllowed, joined: false);
    let mut u = users(&server, &["alice", "bob", "carol"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[1].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[2].expect(r#"GAME_NOTIFICATION {"status":"OK"}"#).await;
    u[1].send("JOIN_GAME_REQ").await;
    u[1].expect(JOIN_OK).await;
    u[0].expect(START_OK).await;
    u[2].send("JOIN_GAME_REQ").await;
    u[2].expect(JOIN_OK).await;

    let server = faulty_server!(Fault::GameNo6002, joined: false);
    let mut u = users(&server, &["alice"]).await;
    u[0].send("START_GAME_REQ").await;
    u[0].expect(START_OK).await;
    u[0].expect(START_OK).await;

    let server = faulty_server!(Fault::GuessRangeUnchecked, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    started_game(&mut u, true).await;
    u[0].send(r#"GUESS_NUMBER_REQ {"number":99}"#).await;
    u[0].expect(&guess_error(7006)).await;

    let server = faulty_server!(Fault::ResultsUnsorted, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    started_game(&mut u, true).await;
    u[0].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[0].expect(CORRECT).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    u[1].send(r#"GUESS_NUMBER_REQ {"number":25}"#).await;
    u[1].expect(CORRECT).await;
    let line = u[0].line().await;
    assert!(
        line.starts_with(r#"GAME_RESULTS {"status":"OK","results":[{"username":"bob""#),
        "{line}"
    );
}

#[tokio::test]
async fn fault_transfer_id_not_relayed() {
    let server = faulty_server!(Fault::TransferIdNotRelayed, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"FILE_TRANSFER_REQUEST {"receiver":"bob","filename":"f"}"#)
        .await;
    u[1].line().await;
    let id = uuid::Uuid::new_v4().to_string();
    u[1].send(&format!(
        r#"FILE_TRANSFER_RESPONSE {{"sender":"alice","status":"OK","transferId":"{id}"}}"#
    ))
    .await;
    let line = u[0].line().await;
    assert!(
        line.starts_with(
            r#"FILE_TRANSFER_RESPONSE {"receiver":"bob","status":"OK","transferId":""#
        ) && !line.contains(&id),
        "{line}"
    );
}

#[tokio::test]
async fn fault_transfer_corrupts_one_byte() {
    let server = faulty_server!(Fault::TransferCorruptsByte, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    let file = file_of(200_000);
    let sha = sha256_hex(&file);
    let id = accepted_transfer(
        &mut u,
        &format!(r#","size":{},"checksum":"{sha}""#, file.len()),
    )
    .await;
    let got = relay(&server, &id, &file).await;
    assert_eq!(got.len(), file.len());
    let differing: Vec<usize> = (0..file.len()).filter(|&i| got[i] != file[i]).collect();
    assert_eq!(differing, [0]);
    assert_ne!(sha256_hex(&got), sha);
    // The server reports what it was sent: only a downloader that checks sees the damage.
    let complete = format!(
        r#"FILE_TRANSFER_COMPLETE {{"transferId":"{id}","status":"OK","size":200000,"checksum":"{sha}"}}"#
    );
    u[1].expect(&complete).await;
}

#[tokio::test]
async fn fault_secure_message_altered() {
    let server = faulty_server!(Fault::SecureMessageAltered, joined: false);
    let mut u = users(&server, &["alice", "bob"]).await;
    u[0].send(r#"SECURE_MESSAGE {"receiver":"bob","sessionKey":"k","message":"m"}"#)
        .await;
    u[1].expect(r#"SECURE_MESSAGE {"sender":"alice","sessionKey":"k","message":"Xm"}"#)
        .await;
}
