//! The math server over real TCP connections on 127.0.0.1 (raw bytes in, exact bytes out),
//! and the grading client against it and against servers wrong in one way each.
//! The server's quiet time is 30 ms and the client's pause 100 ms; every read has a
//! deadline, so no test can hang.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use reference_impl::mathsvc::cli::{self, ClientArgs, ServerArgs};
use reference_impl::mathsvc::client::{
    self, ClientConfig, ClientFault, GradeError, Kind, Report, TextStyle, Verdict,
};
use reference_impl::mathsvc::codec::{
    FibConvention, Limits, client_uuid, factorial, fibonacci, uuid3,
};
use reference_impl::mathsvc::server::{self, Fault, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

mod common;
use common::PATIENCE;

/// The server's quiet time in these tests.
const QUIET: Duration = Duration::from_millis(30);
/// A pause well over the quiet time, as the course's client makes between writes.
const PAUSE: Duration = Duration::from_millis(100);
/// How long "nothing more arrives" is watched.
const SILENCE: Duration = Duration::from_millis(150);

fn fast() -> ServerConfig {
    ServerConfig {
        quiet: QUIET,
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

/// A raw connection: bytes in, bytes out.
struct Conn {
    stream: TcpStream,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: common::tcp_connect(addr).await,
        }
    }

    /// Opens a connection, sends the name `Client1` and checks the UUID.
    async fn named(server: &RunningServer) -> Conn {
        let mut conn = Conn::open(server.addr()).await;
        conn.send(b"Client1\n").await;
        let uuid = conn.uuid();
        conn.expect(uuid.as_bytes()).await;
        conn
    }

    /// The UUID the server must give this connection.
    fn uuid(&self) -> String {
        client_uuid(self.stream.local_addr().unwrap()).to_string()
    }

    /// `<value>_<uuid>`.
    fn answer(&self, value: impl std::fmt::Display) -> String {
        format!("{value}_{}", self.uuid())
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(PATIENCE, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .unwrap();
    }

    /// Sends each message as its own write, pausing between them.
    async fn send_paused(&mut self, messages: &[&[u8]]) {
        for (i, message) in messages.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(PAUSE).await;
            }
            self.send(message).await;
        }
    }

    /// Exactly `expected` arrives next.
    async fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing like {:?} within {PATIENCE:?}",
                    String::from_utf8_lossy(expected)
                )
            })
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
        // Nothing more right behind it (a close may follow).
        let mut more = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), self.stream.read(&mut more)).await
        {
            assert_eq!(n, 0, "unexpected {:?}", String::from_utf8_lossy(&more[..n]));
        }
    }

    async fn expect_text(&mut self, expected: &str) {
        self.expect(expected.as_bytes()).await;
    }

    /// Nothing arrives for `duration`, and the connection stays open.
    async fn expect_silence(&mut self, duration: Duration) {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(duration, self.stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) => panic!("the connection closed"),
            Ok(Ok(n)) => panic!("unexpected {:?}", String::from_utf8_lossy(&buf[..n])),
            Ok(Err(e)) => panic!("read failed: {e}"),
        }
    }

    /// The server closes without sending anything more.
    async fn expect_close(&mut self) {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(PATIENCE, self.stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {PATIENCE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!(
                "unexpected {:?} instead of a close",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }
}

// ---------------------------------------------------------------- the wire

#[tokio::test]
async fn name_gets_uuid3_of_ip_and_port() {
    let server = server!();
    let mut conn = Conn::open(server.addr()).await;
    conn.send(b"Client1").await;
    let local = conn.stream.local_addr().unwrap();
    let uuid = uuid3(&format!("127.0.0.1:{}", local.port())).to_string();
    assert_eq!(uuid.len(), 36);
    conn.expect_text(&uuid).await;
    conn.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn every_client_gets_its_own_uuid() {
    let server = server!();
    let mut uuids = std::collections::HashSet::new();
    for _ in 0..5 {
        let conn = Conn::named(&server).await;
        assert!(uuids.insert(conn.uuid()));
    }
}

#[tokio::test]
async fn pause_framing_as_the_course_client_sends() {
    let server = server!();
    let mut conn = Conn::open(server.addr()).await;
    conn.send(b"Client3").await;
    let uuid = conn.uuid();
    conn.expect_text(&uuid).await;
    conn.send_paused(&[b"FIBONACCI", b"7"]).await;
    conn.expect_text(&conn.answer(13)).await;
    conn.send_paused(&[b"FACTORIAL", b"6"]).await;
    conn.expect_text(&conn.answer(720)).await;
    conn.send_paused(&[b"FILE", b"19", b"A B C D E F G H I J"])
        .await;
    conn.expect_text(&conn.answer(10)).await;
    conn.send(b"COMPLETE").await;
    conn.expect_close().await;
}

#[tokio::test]
async fn newline_framing_all_in_one_write() {
    let server = server!();
    let mut conn = Conn::open(server.addr()).await;
    conn.send(
        b"Client1\nFIBONACCI\n7\nFACTORIAL\n6\nFILE\n19\nA B C D E F G H I J\nWORD_COUNT\n5\n a  b\n\
          COMPLETE\n",
    )
    .await;
    let expected = format!(
        "{}{}{}{}{}",
        conn.uuid(),
        conn.answer(13),
        conn.answer(720),
        conn.answer(10),
        conn.answer(2)
    );
    conn.expect_text(&expected).await;
    conn.expect_close().await;
}

#[tokio::test]
async fn crlf_blanks_and_case() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(b"\r\n  Fibonacci \r\n 10\r\nfactorial\r\n0\r\n")
        .await;
    let expected = format!("{}{}", conn.answer(55), conn.answer(1));
    conn.expect_text(&expected).await;
}

#[tokio::test]
async fn slide_convention() {
    let server = server!(fib: FibConvention::Slide);
    let mut conn = Conn::named(&server).await;
    conn.send(b"FIBONACCI\n7\nFIBONACCI\n1\nFIBONACCI\n2\n")
        .await;
    let expected = format!("{}{}{}", conn.answer(8), conn.answer(0), conn.answer(1));
    conn.expect_text(&expected).await;
}

#[tokio::test]
async fn a_message_split_across_reads_is_joined() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    for part in [&b"FIBO"[..], b"NAC", b"CI"] {
        conn.send(part).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(PAUSE).await;
    conn.send(b"2").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    conn.send(b"0").await;
    conn.expect_text(&conn.answer(6765)).await;
}

#[tokio::test]
async fn a_text_spans_reads_pauses_and_line_ends() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    let text: Vec<u8> = b"one two\nthree  four\tfive ".repeat(200);
    conn.send_paused(&[b"FILE", text.len().to_string().as_bytes()])
        .await;
    tokio::time::sleep(PAUSE).await;
    for chunk in text.chunks(1000) {
        conn.send(chunk).await;
        // Longer than the quiet time: inside a text, pauses mean nothing.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    conn.expect_text(&conn.answer(1000)).await;
}

#[tokio::test]
async fn empty_and_blank_texts_have_no_words() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(b"FILE\n0\nFILE\n3\n \n\t\n").await;
    let expected = format!("{}{}", conn.answer(0), conn.answer(0));
    conn.expect_text(&expected).await;
}

#[tokio::test]
async fn big_numbers_are_exact() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(b"FACTORIAL\n10000\nFIBONACCI\n100000\nFACTORIAL\n25\n")
        .await;
    let expected = format!(
        "{}{}{}",
        conn.answer(factorial(10_000)),
        conn.answer(fibonacci(100_000, FibConvention::ZeroBased)),
        conn.answer("15511210043330985984000000")
    );
    conn.expect_text(&expected).await;
}

#[tokio::test]
async fn errors_keep_the_connection_usable() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(b"HELLO\n").await;
    conn.expect_text("ERROR unknown request").await;
    conn.send(b"FIBONACCI\nseven\n").await;
    conn.expect_text("ERROR invalid number").await;
    conn.send(b"FIBONACCI\n-1\n").await;
    conn.expect_text("ERROR invalid number").await;
    conn.send(b"FIBONACCI\n100001\n").await;
    conn.expect_text("ERROR n too large (max 100000)").await;
    conn.send(b"FACTORIAL\n10001\n").await;
    conn.expect_text("ERROR n too large (max 10000)").await;
    conn.send(b"FILE\nten\n").await;
    conn.expect_text("ERROR invalid length").await;
    conn.send_paused(&[b"FIBONACCI", b"3"]).await;
    conn.expect_text(&conn.answer(2)).await;
}

#[tokio::test]
async fn limits_are_configurable() {
    let server = server!(limits: Limits {
        max_fibonacci_n: 10,
        max_factorial_n: 5,
        max_text_len: 4,
    });
    let mut conn = Conn::named(&server).await;
    conn.send(b"FIBONACCI\n10\nFIBONACCI\n11\nFACTORIAL\n6\n")
        .await;
    let expected = format!(
        "{}ERROR n too large (max 10)ERROR n too large (max 5)",
        conn.answer(55)
    );
    conn.expect_text(&expected).await;
    conn.send(b"FILE\n5\n").await;
    conn.expect_text("ERROR length too large (max 4)").await;
    conn.expect_close().await;
}

#[tokio::test]
async fn a_token_over_1024_bytes_closes() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(&[b'7'; 1025]).await;
    conn.expect_text("ERROR message too long (max 1024 bytes)")
        .await;
    conn.expect_close().await;

    // Exactly 1024 bytes is still a token.
    let mut conn = Conn::named(&server).await;
    let mut token = vec![b' '; 1023];
    token.push(b'x');
    conn.send(&token).await;
    conn.expect_text("ERROR unknown request").await;
}

#[tokio::test]
async fn a_pending_token_is_served_at_eof() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(b"FIBONACCI\n12").await;
    conn.stream.shutdown().await.unwrap();
    conn.expect_text(&conn.answer(144)).await;
    conn.expect_close().await;
}

#[tokio::test]
async fn complete_closes_without_an_answer() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    conn.send(b"COMPLETE").await;
    conn.expect_close().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = server!(idle_timeout: Duration::from_millis(300));
    let mut conn = Conn::named(&server).await;
    conn.expect_silence(Duration::from_millis(100)).await;
    conn.expect_close().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let server = server!(max_connections: 1);
    let _first = Conn::named(&server).await;
    let mut second = Conn::open(server.addr()).await;
    second.send(b"Client2\n").await;
    second.expect_close().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let server = server!();
    let mut conn = Conn::named(&server).await;
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown hangs");
    conn.expect_close().await;
}

#[tokio::test]
async fn many_clients_at_once() {
    let server = server!();
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await;
            let request = format!(
                "Client{i}\nFACTORIAL\n{}\nFIBONACCI\n{i}\nCOMPLETE\n",
                i % 30
            );
            conn.send(request.as_bytes()).await;
            let expected = format!(
                "{}{}{}",
                conn.uuid(),
                conn.answer(factorial(i % 30)),
                conn.answer(fibonacci(i, FibConvention::ZeroBased))
            );
            conn.expect_text(&expected).await;
            conn.expect_close().await;
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
}

#[tokio::test]
async fn invalid_configurations_are_refused() {
    let zero_quiet = ServerConfig {
        quiet: Duration::ZERO,
        ..ServerConfig::default()
    };
    assert!(server::spawn(zero_quiet).await.is_err());
    let idle_under_quiet = ServerConfig {
        idle_timeout: Duration::from_millis(10),
        ..fast()
    };
    assert!(server::spawn(idle_under_quiet).await.is_err());
}

// ---------------------------------------------------------------- faults on the wire

#[tokio::test]
async fn fault_answers_with_newline() {
    let server = server!(faults: Fault::AnswersWithNewline.into());
    let mut conn = Conn::open(server.addr()).await;
    conn.send(b"Client1\nFIBONACCI\n7\n").await;
    let expected = format!("{}\n{}\n", conn.uuid(), conn.answer(13));
    conn.expect_text(&expected).await;
}

#[tokio::test]
async fn fault_uuid_wrong_name() {
    let server = server!(faults: Fault::UuidWrongName.into());
    let mut conn = Conn::open(server.addr()).await;
    conn.send(b"Client1\n").await;
    conn.expect_text(&uuid3("127.0.0.1").to_string()).await;
}

#[tokio::test]
async fn fault_needs_newlines() {
    let server = server!(faults: Fault::NeedsNewlines.into());
    let mut conn = Conn::open(server.addr()).await;
    conn.send(b"Client1").await;
    conn.expect_silence(SILENCE).await;
    conn.send(b"\n").await;
    let uuid = conn.uuid();
    conn.expect_text(&uuid).await;
}

// ---------------------------------------------------------------- the grading client

/// The client configuration of these tests against `server`.
fn grading(server: &RunningServer) -> ClientConfig {
    ClientConfig {
        seed: 1,
        pause: PAUSE,
        timeout: Duration::from_secs(2),
        close_timeout: Duration::from_millis(500),
        ..ClientConfig::new(server.addr())
    }
}

/// Grades `server` with `config`, the lines it printed collected.
async fn grade(config: ClientConfig) -> (Report, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let log: client::Log = Arc::new(move |line| sink.lock().unwrap().push(line));
    let report = client::grade(&config, log).await.unwrap();
    let lines = lines.lock().unwrap().clone();
    (report, lines)
}

fn counts(report: &Report) -> [usize; 3] {
    Kind::ALL.map(|k| report.score(k).correct)
}

#[tokio::test]
async fn the_grading_client_gives_the_reference_server_full_marks() {
    let server = server!();
    let (report, lines) = grade(grading(&server)).await;
    assert_eq!(report.points(), 40, "{lines:#?}");
    assert_eq!(
        report.summary(),
        "Fib 8, Fact 8, Word 8\n-----\nTotal points 40/40\n-----\n"
    );
    for k in 1..=4 {
        let mine = |suffix: &str| {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("[Client{k}] {suffix}")))
                .count()
        };
        assert_eq!(mine("Socket connected to "), 1, "{lines:#?}");
        assert_eq!(mine("UUID: "), 1);
        assert_eq!(mine("FIBONACCI Okay"), 2);
        assert_eq!(mine("FACTORIAL Okay"), 2);
        assert_eq!(mine("WORD_COUNT Okay"), 2);
    }
    for client in &report.clients {
        assert!(client.uuid_ok());
        assert!(client.warnings.is_empty(), "{:?}", client.warnings);
    }
}

#[tokio::test]
async fn full_marks_with_line_ends_and_no_pauses() {
    let server = server!();
    let config = ClientConfig {
        newlines: true,
        pause: Duration::ZERO,
        clients: 16,
        requests: 30,
        texts: TextStyle::Mixed,
        ..grading(&server)
    };
    let (report, lines) = grade(config).await;
    assert_eq!(report.points(), 40, "{lines:#?}");
    assert_eq!(counts(&report), [160, 160, 160]);
}

#[tokio::test]
async fn full_marks_in_the_slide_convention_on_both_sides() {
    let server = server!(fib: FibConvention::Slide);
    let config = ClientConfig {
        fib: FibConvention::Slide,
        ..grading(&server)
    };
    assert_eq!(grade(config).await.0.points(), 40);
}

#[tokio::test]
async fn conventions_that_differ_cost_the_fibonacci_points() {
    let server = server!(fib: FibConvention::Slide);
    let (report, _) = grade(grading(&server)).await;
    assert_eq!(counts(&report), [0, 8, 8]);
    assert_eq!(report.points(), 30);
}

/// What a server wrong in one way scores: the fault, the client's texts and line ends, the
/// right answers per kind, the points.
const FAULT_TABLE: &[(Fault, TextStyle, bool, [usize; 3], u32)] = &[
    (Fault::FibOffByOne, TextStyle::Plain, false, [0, 8, 8], 30),
    // The small factorial of each client (n <= 20) fits in 64 bits; the large one wraps.
    (
        Fault::FactorialOverflowsU64,
        TextStyle::Plain,
        false,
        [8, 4, 8],
        30,
    ),
    // Single-spaced texts cannot tell split(' ') from split(); mixed blanks can.
    (
        Fault::WordCountSplitsOnSpaceOnly,
        TextStyle::Plain,
        false,
        [8, 8, 8],
        40,
    ),
    (
        Fault::WordCountSplitsOnSpaceOnly,
        TextStyle::Mixed,
        false,
        [8, 8, 0],
        20,
    ),
    (
        Fault::WordCountCountsSpaces,
        TextStyle::Plain,
        false,
        [8, 8, 0],
        20,
    ),
    (
        Fault::WordCountCountsSpaces,
        TextStyle::Mixed,
        false,
        [8, 8, 0],
        20,
    ),
    // The small text of each client is under 1024 bytes; the large one is not.
    (
        Fault::WordCountFirst1024Bytes,
        TextStyle::Plain,
        false,
        [8, 8, 4],
        20,
    ),
    (Fault::UuidWrongName, TextStyle::Plain, false, [0, 0, 0], 0),
    (
        Fault::AnswersWithNewline,
        TextStyle::Plain,
        false,
        [0, 0, 0],
        0,
    ),
    // No points for the close; every client says it did not happen.
    (
        Fault::NoCompleteClose,
        TextStyle::Plain,
        false,
        [8, 8, 8],
        40,
    ),
    (Fault::NeedsNewlines, TextStyle::Plain, false, [0, 0, 0], 0),
    (Fault::NeedsNewlines, TextStyle::Plain, true, [8, 8, 8], 40),
    // Client1 is served; the others get no UUID within the timeout: single-client points.
    (Fault::SerialClients, TextStyle::Plain, false, [2, 2, 2], 20),
];

#[tokio::test]
async fn each_broken_server_loses_exactly_its_points() {
    for fault in Fault::ALL {
        assert!(
            FAULT_TABLE.iter().any(|row| row.0 == *fault),
            "{fault} is not in the table"
        );
    }
    let mut runs = tokio::task::JoinSet::new();
    for (i, &(fault, texts, newlines, expected_counts, expected_points)) in
        FAULT_TABLE.iter().enumerate()
    {
        runs.spawn(async move {
            let server = server!(faults: fault.into());
            let config = ClientConfig {
                texts,
                newlines,
                seed: i as u64,
                ..grading(&server)
            };
            let (report, lines) = grade(config).await;
            let what = format!("{fault} ({texts:?}, newlines {newlines})");
            assert_eq!(counts(&report), expected_counts, "{what}: {lines:#?}");
            assert_eq!(report.points(), expected_points, "{what}: {lines:#?}");
            (fault, report, lines)
        });
    }
    while let Some(joined) = runs.join_next().await {
        let (fault, report, lines) = joined.unwrap();
        match fault {
            Fault::NoCompleteClose => {
                for client in &report.clients {
                    assert_eq!(client.warnings.len(), 1, "{lines:#?}");
                    assert!(client.warnings[0].contains("did not close"));
                }
            }
            Fault::UuidWrongName | Fault::AnswersWithNewline => {
                assert!(report.clients.iter().all(|c| !c.uuid_ok()));
                assert!(
                    lines
                        .iter()
                        .any(|l| l.contains("UUID: ") && l.contains("wrong"))
                );
            }
            Fault::SerialClients => {
                assert!(lines.iter().any(|l| l.starts_with("[Client2] No UUID")));
                assert!(
                    report.clients[1]
                        .requests
                        .iter()
                        .all(|r| r.verdict == Verdict::NotSent)
                );
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn client_faults_cost_points_against_a_correct_server() {
    let server = server!();
    let wrong_fib = ClientConfig {
        faults: ClientFault::WrongExpectedFib.into(),
        ..grading(&server)
    };
    let (report, _) = grade(wrong_fib).await;
    assert_eq!((counts(&report), report.points()), ([0, 8, 8], 30));

    let no_pause = ClientConfig {
        faults: ClientFault::SendsWithoutPause.into(),
        ..grading(&server)
    };
    let (report, lines) = grade(no_pause).await;
    assert_eq!(report.points(), 0, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("got \"ERROR unknown request\"")),
        "{lines:#?}"
    );

    // Without line ends a client needs its pauses; with them it does not.
    let no_pause_newlines = ClientConfig {
        faults: ClientFault::SendsWithoutPause.into(),
        newlines: true,
        ..grading(&server)
    };
    assert_eq!(grade(no_pause_newlines).await.0.points(), 40);

    let skips_complete = ClientConfig {
        faults: ClientFault::SkipsComplete.into(),
        ..grading(&server)
    };
    assert_eq!(grade(skips_complete).await.0.points(), 40);
}

#[tokio::test]
async fn no_server_is_a_setup_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let log: client::Log = Arc::new(|_| {});
    let result = client::grade(&ClientConfig::new(addr), log).await;
    assert!(
        matches!(result, Err(GradeError::Connect { .. })),
        "{result:?}"
    );
}

// ---------------------------------------------------------------- the commands

#[derive(Debug, Parser)]
struct ClientCli {
    #[command(flatten)]
    args: ClientArgs,
}

#[derive(Debug, Parser)]
struct ServerCli {
    #[command(flatten)]
    args: ServerArgs,
}

async fn run_client(args: &[&str]) -> (u8, String, String) {
    let cli =
        ClientCli::try_parse_from(std::iter::once("mathsvc-client").chain(args.iter().copied()))
            .unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_client_with(&cli.args, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn mathsvc_client_scores_40_of_40_and_exits_0() {
    let server = server!();
    let port = server.addr().port().to_string();
    let (code, out, err) = run_client(&[
        "--port",
        &port,
        "--studentID=20200000",
        "--submit=False",
        "--seed",
        "5",
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.ends_with("Fib 8, Fact 8, Word 8\n-----\nTotal points 40/40\n-----\n"),
        "{out}"
    );
    assert!(out.starts_with("[Client"), "{out}");
    assert!(
        err.contains("student 20200000") && err.contains("seed 5"),
        "{err}"
    );
}

#[tokio::test]
async fn mathsvc_client_exits_1_below_full_marks() {
    let server = server!(fib: FibConvention::Slide);
    let port = server.addr().port().to_string();
    let (code, out, _) = run_client(&[
        "--port",
        &port,
        "--studentID",
        "1",
        "--newlines",
        "--seed",
        "3",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(out.contains("FIBONACCI Wrong: fib("), "{out}");
    assert!(
        out.ends_with("Fib 0, Fact 8, Word 8\n-----\nTotal points 30/40\n-----\n"),
        "{out}"
    );
}

#[tokio::test]
async fn mathsvc_client_exits_2_on_setup_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let (code, _, err) = run_client(&["--port", &port, "--studentID", "1"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _, err) = run_client(&["--studentID", "1", "--requests", "5"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("multiple of 3"), "{err}");
    let (code, _, err) = run_client(&["--studentID", "abc"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("student id"), "{err}");
}

#[test]
fn mathsvc_server_flags() {
    let cli = ServerCli::try_parse_from([
        "mathsvc-server",
        "--port=1234",
        "--fib",
        "slide",
        "--quiet",
        "20ms",
        "--max-factorial",
        "500",
        "--fault",
        "fib-off-by-one",
    ])
    .unwrap();
    let config = cli.args.config().unwrap();
    assert_eq!(config.fib, FibConvention::Slide);
    assert_eq!(config.quiet, Duration::from_millis(20));
    assert_eq!(config.limits.max_factorial_n, 500);
    assert!(config.faults.has(Fault::FibOffByOne));
    assert!(ServerCli::try_parse_from(["mathsvc-server", "--fault", "nope"]).is_err());
    let cli = ServerCli::try_parse_from(["mathsvc-server", "--quiet", "0ms"]).unwrap();
    assert!(cli.args.config().is_err());
}

#[tokio::test]
async fn reference_binary_grades_reference_binary() {
    let bin = env!("CARGO_BIN_EXE_reference");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let mut server = tokio::process::Command::new(bin)
        .args(["mathsvc-server", "--port", &port, "--quiet", "30ms"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until it listens.
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = tokio::process::Command::new(bin)
        .args(["mathsvc-client", "--port", &port, "--studentID", "20200000"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.ends_with("Total points 40/40\n-----\n"), "{stdout}");
    server.kill().await.unwrap();
}
