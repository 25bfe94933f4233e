//! Load of the reference math server under the grading client.
//!
//! Starts the server in this process and grades it with N concurrent clients (N = 4, 64,
//! 512), each sending 30 requests (10 of each kind: small and large Fibonacci numbers and
//! factorials, texts of up to 4,000 bytes), over and over for a fixed time (3 s per row;
//! set `MATHSVC_BENCH_SECS` to change it). Every answer is checked: the `wrong` column
//! counts the requests not answered right (with line ends, any is an error).
//!
//! Two framings:
//! - `newlines`: every message ends in `\n` and the client does not pause, so the figures
//!   are the server's own cost;
//! - `pauses`: the course's framing, no line ends, with the defaults: the server's quiet
//!   time is 50 ms and the client pauses 100 ms between the messages of a request, so a
//!   request waits at least 150 ms (Fibonacci, factorial) or 250 ms (word count) by design.
//!   When the server is so busy that it reads a client later than the client's pause, two
//!   messages arrive as one and the request fails: that is the limit of pause framing.
//!
//! A request's latency runs from its first byte sent to its answer's last byte received,
//! pauses included. Requests per second count right answers over the whole run,
//! connecting, handshakes and `COMPLETE` included. Client and server share the machine.
//!
//! ```text
//! cargo bench -p reference-impl --bench mathsvc_load
//! MATHSVC_BENCH_SECS=10 cargo bench -p reference-impl --bench mathsvc_load
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use reference_impl::mathsvc::client::{self, ClientConfig, DEFAULT_PAUSE, Verdict};
use reference_impl::mathsvc::server::{self, ServerConfig};

const CLIENT_COUNTS: [usize; 3] = [4, 64, 512];
const REQUESTS_PER_CLIENT: usize = 30;
const DEFAULT_SECS: f64 = 3.0;

type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BenchError> {
    // `cargo bench` passes `--bench`; a filter argument is not supported, so ignore it.
    let secs = match std::env::var("MATHSVC_BENCH_SECS") {
        Ok(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                format!("MATHSVC_BENCH_SECS={text:?} is not a positive number of seconds")
            })?,
        Err(_) => DEFAULT_SECS,
    };
    let duration = Duration::from_secs_f64(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = server::spawn(ServerConfig::default()).await?;
        println!(
            "math server under the grading client: {REQUESTS_PER_CLIENT} requests per client, \
             {secs} s per row, {} worker threads",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        println!(
            "{:>9} {:>8} {:>5} {:>9} {:>6} {:>8} {:>9} {:>9}",
            "framing", "clients", "runs", "requests", "wrong", "req/s", "p50", "p99"
        );
        for newlines in [true, false] {
            for clients in CLIENT_COUNTS {
                let config = ClientConfig {
                    clients,
                    requests: REQUESTS_PER_CLIENT,
                    newlines,
                    pause: if newlines {
                        Duration::ZERO
                    } else {
                        DEFAULT_PAUSE
                    },
                    timeout: Duration::from_secs(30),
                    ..ClientConfig::new(server.addr())
                };
                let row = measure(config, duration).await?;
                if newlines && row.wrong > 0 {
                    return Err(format!(
                        "{clients} clients with line ends: {} requests not answered right",
                        row.wrong
                    )
                    .into());
                }
                println!(
                    "{:>9} {clients:>8} {:>5} {:>9} {:>6} {:>8.0} {:>9} {:>9}",
                    if newlines { "newlines" } else { "pauses" },
                    row.runs,
                    row.requests,
                    row.wrong,
                    (row.requests - row.wrong) as f64 / row.elapsed.as_secs_f64(),
                    show(percentile(&row.latencies, 0.50)),
                    show(percentile(&row.latencies, 0.99)),
                );
            }
        }
        server.shutdown().await;
        Ok(())
    })
}

/// The grading runs of one row.
struct Row {
    runs: usize,
    requests: usize,
    /// Requests not answered right.
    wrong: usize,
    /// Of the answers that came.
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Grades again and again, with a new seed each time, until `duration` has passed.
async fn measure(mut config: ClientConfig, duration: Duration) -> Result<Row, BenchError> {
    let start = Instant::now();
    let mut row = Row {
        runs: 0,
        requests: 0,
        wrong: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while row.runs == 0 || start.elapsed() < duration {
        config.seed = row.runs as u64;
        let log: client::Log = Arc::new(|_| {});
        let report = client::grade(&config, log).await?;
        for client in &report.clients {
            row.requests += client.requests.len();
            row.wrong += client
                .requests
                .iter()
                .filter(|r| r.verdict != Verdict::Okay)
                .count();
        }
        row.latencies.extend(report.latencies());
        row.runs += 1;
    }
    row.elapsed = start.elapsed();
    row.latencies.sort_unstable();
    Ok(row)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn show(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} us", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
