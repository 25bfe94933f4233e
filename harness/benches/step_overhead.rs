//! What the runner adds to a request/response exchange, over TCP and over TLS.
//!
//! An echo server on loopback answers every `PING\n` with `PONG\n`. The same exchange is
//! timed two ways, on the same runtime and against the same server:
//!
//! - **bare**: a tokio client on one connection writes `PING\n` and reads the `PONG\n` line,
//!   in a loop;
//! - **harness**: [`harness::run::run_scenario`] runs a parsed scenario of alternating
//!   `C -> S: PING` / `S -> C: PONG` steps.
//!
//! Method. The unit is one exchange, measured as the interval between the ends of two
//! successive `PING` writes: that interval holds one full cycle (write, server, read, match,
//! and whatever the client does before its next write). The runner stamps every write in the
//! scenario's transcript (`Sent`, taken when the write has completed), so the differences of
//! successive `Sent` stamps give one sample per exchange without touching the runner; the
//! bare loop takes the same stamps itself. Percentiles are then over individual exchanges on
//! both sides, not over per-scenario means (which would hide the tail). Rounds of bare
//! exchanges and scenarios alternate, so a change in the machine's load hits both alike. As a
//! cross-check, the transcript's mean is printed next to the scenario's duration divided by
//! its exchanges (which also pays for the connect and the close).
//!
//! Each measurement runs twice: on a current-thread runtime, where nothing waits for another
//! thread to wake up and the difference is the CPU the runner spends per step; and on the
//! multi-thread runtime `harness run` uses, where the scheduler's wake-up latency (large and
//! erratic on small virtual machines) is part of every exchange.
//!
//! Figures are printed, never asserted. Run with
//! `cargo bench -p harness --bench step_overhead`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::run::transcript::EntryKind;
use harness::run::{ExecSettings, Outcome, run_scenario};
use harness::scenario::model::SuiteConfig;
use harness::scenario::parse_scenario;
use harness::transport::{BoxStream, Transport};
use reference_impl::tls::{ClientTrust, client_config, self_signed, server_config, server_name};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Exchanges per scenario (twice as many steps).
const EXCHANGES: usize = 1000;
/// Rounds per transport and runtime: each is `EXCHANGES` bare exchanges, then a scenario.
const ROUNDS: usize = 25;
/// Exchanges before measuring, on each side.
const WARM_UP: usize = 500;

fn main() {
    let started = Instant::now();
    let mut figures = Vec::new();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let runtime = match flavor.runtime() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cannot start the runtime: {e}");
                std::process::exit(2);
            }
        };
        runtime.block_on(async {
            figures.push(measure(flavor, "tcp", None).await);
            figures.push(measure(flavor, "tls", Some(tls_setup())).await);
        });
    }
    print_table(&figures);
    println!("\ntotal time {:.1}s", started.elapsed().as_secs_f64());
}

/// The runtime everything of one measurement runs on: client, runner and echo server.
#[derive(Debug, Clone, Copy)]
enum Flavor {
    /// One thread: no cross-thread wake-ups, so the difference between bare and harness is
    /// the CPU the runner spends per step.
    CurrentThread,
    /// The multi-thread runtime `harness run` uses: adds the scheduler's wake-up latency,
    /// which depends on how busy the workers are.
    MultiThread,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current",
            Flavor::MultiThread => "multi",
        }
    }

    fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavor::MultiThread => tokio::runtime::Runtime::new(),
        }
    }
}

/// The server's acceptor and what a client needs to trust it.
struct Tls {
    acceptor: TlsAcceptor,
    client: Arc<rustls::ClientConfig>,
}

fn tls_setup() -> Tls {
    let cert = self_signed(&[]).expect("a self-signed certificate");
    let server = server_config(vec![cert.cert_der.clone()], cert.key_der.clone_key())
        .expect("a server configuration");
    let client =
        client_config(ClientTrust::Roots(vec![cert.cert_der])).expect("a client configuration");
    Tls {
        acceptor: TlsAcceptor::from(server),
        client,
    }
}

/// The figures of one transport.
struct Figures {
    flavor: Flavor,
    transport: &'static str,
    bare: Vec<Duration>,
    harness: Vec<Duration>,
    /// Sum of the scenarios' durations divided by their exchanges.
    harness_scenario_mean: Duration,
}

async fn measure(flavor: Flavor, transport: &'static str, tls: Option<Tls>) -> Figures {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
    let server = tokio::spawn(echo_server(listener, acceptor));

    let tcp = connect(addr).await;
    let stream: BoxStream = match &tls {
        None => Box::new(tcp),
        Some(t) => Box::new(
            TlsConnector::from(t.client.clone())
                .connect(server_name("127.0.0.1").expect("a server name"), tcp)
                .await
                .expect("a TLS handshake"),
        ),
    };
    let mut stream = BufReader::new(stream);
    let settings = ExecSettings {
        addr: addr.to_string(),
        transport: match &tls {
            None => Transport::Tcp,
            Some(t) => Transport::Tls {
                config: t.client.clone(),
                server_name: server_name("127.0.0.1").expect("a server name"),
            },
        },
        base_vars: Default::default(),
        override_vars: Default::default(),
        timeout: None,
        connect_timeout: Duration::from_secs(5),
        recv_limit: 1024 * 1024,
        json_bodies: false,
        framing: harness::run::framing::Framing::Lines,
        packet: None,
        time_scale: 1.0,
    };
    let warm_up = ping_pong_scenario(WARM_UP);
    let scenario = ping_pong_scenario(EXCHANGES);
    bare_exchanges(&mut stream, WARM_UP).await;
    run_checked(&warm_up, &settings).await;

    // Rounds alternate between the two, so that a change in the machine's load while the
    // benchmark runs affects both alike.
    let mut bare = Vec::with_capacity(ROUNDS * EXCHANGES);
    let mut harness = Vec::with_capacity(ROUNDS * EXCHANGES);
    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        bare.extend(bare_exchanges(&mut stream, EXCHANGES).await);
        let (samples, duration) = run_checked(&scenario, &settings).await;
        harness.extend(samples);
        total += duration;
    }
    server.abort();
    Figures {
        flavor,
        transport,
        bare,
        harness,
        harness_scenario_mean: total / (ROUNDS * EXCHANGES) as u32,
    }
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("a connection to the echo server");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    tcp
}

/// Answers every line `PING` with `PONG\n`, on every connection.
async fn echo_server(listener: TcpListener, tls: Option<TlsAcceptor>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => echo(tcp).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        echo(stream).await;
                    }
                }
            }
        });
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let mut stream = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match stream.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line == b"PING\n" {
            let written = stream.write_all(b"PONG\n").await;
            if written.is_err() || stream.flush().await.is_err() {
                break;
            }
        }
    }
    // Answer the runner's close (TLS close_notify, then FIN) in kind.
    let _ = stream.shutdown().await;
}

/// `n` exchanges; returns the `n - 1` intervals between the ends of successive writes.
async fn bare_exchanges(stream: &mut BufReader<BoxStream>, n: usize) -> Vec<Duration> {
    let mut line = Vec::new();
    let mut stamps = Vec::with_capacity(n);
    for _ in 0..n {
        stream.write_all(b"PING\n").await.expect("a write");
        stream.flush().await.expect("a flush");
        stamps.push(Instant::now());
        line.clear();
        stream.read_until(b'\n', &mut line).await.expect("a read");
        assert_eq!(line, b"PONG\n", "the echo server answered something else");
    }
    stamps.windows(2).map(|w| w[1] - w[0]).collect()
}

fn ping_pong_scenario(exchanges: usize) -> harness::scenario::model::Scenario {
    let mut text = String::from("id: bench/ping-pong\nsteps:\n");
    for _ in 0..exchanges {
        text.push_str("  - C -> S: PING\n  - S -> C: PONG\n");
    }
    parse_scenario(
        Path::new("bench/ping-pong.yaml"),
        &text,
        &SuiteConfig::default(),
    )
    .unwrap_or_else(|d| panic!("the benchmark scenario does not parse:\n{}", d.render()))
}

/// Runs the scenario; returns the intervals between successive writes and its duration.
async fn run_checked(
    scenario: &harness::scenario::model::Scenario,
    settings: &ExecSettings,
) -> (Vec<Duration>, Duration) {
    let result = run_scenario(scenario, settings, "bench".to_owned()).await;
    assert_eq!(
        result.outcome,
        Outcome::Passed,
        "the benchmark scenario did not pass: {:?}",
        result.failure
    );
    let sent: Vec<Duration> = result
        .transcript
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Sent { .. }))
        .map(|e| e.at)
        .collect();
    assert_eq!(
        sent.len(),
        scenario.steps.len() / 2,
        "one write per exchange"
    );
    let intervals = sent.windows(2).map(|w| w[1] - w[0]).collect();
    (intervals, result.duration)
}

/// The `p`-th percentile (0 < p <= 100) of sorted samples, nearest rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len().max(1) as u32
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn print_table(figures: &[Figures]) {
    println!(
        "\none PING/PONG exchange on loopback, microseconds; about {} exchanges per row \
         (harness: {ROUNDS} scenarios of {} steps)\n",
        ROUNDS * EXCHANGES,
        2 * EXCHANGES
    );
    println!(
        "{:<8} {:<4} {:<8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "runtime", "", "", "p50", "p90", "p99", "mean", "scen.mean"
    );
    for f in figures {
        for (name, samples) in [("bare", &f.bare), ("harness", &f.harness)] {
            let sorted = sorted(samples);
            let scenario_mean = match name {
                "harness" => micros(f.harness_scenario_mean),
                _ => String::new(),
            };
            println!(
                "{:<8} {:<4} {:<8} {:>8} {:>8} {:>8} {:>8} {:>9}",
                f.flavor.name(),
                f.transport,
                name,
                micros(percentile(&sorted, 50.0)),
                micros(percentile(&sorted, 90.0)),
                micros(percentile(&sorted, 99.0)),
                micros(mean(&sorted)),
                scenario_mean,
            );
        }
    }
    println!("\nharness / bare");
    for f in figures {
        let (bare, harness) = (sorted(&f.bare), sorted(&f.harness));
        let ratio =
            |p: f64| percentile(&harness, p).as_secs_f64() / percentile(&bare, p).as_secs_f64();
        println!(
            "{:<8} {:<4} p50 {:.2}x  p99 {:.2}x",
            f.flavor.name(),
            f.transport,
            ratio(50.0),
            ratio(99.0)
        );
    }
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted
}
