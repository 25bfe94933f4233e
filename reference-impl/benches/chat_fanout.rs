//! Broadcast fan-out of the reference chat server, in this process over loopback TCP.
//!
//! 1. Throughput (criterion): one sender broadcasts to N logged-in receivers (N = 10, 100,
//!    1000); an iteration is one broadcast delivered to all N. The sender keeps at most
//!    `WINDOW` broadcasts in flight, so no receiver's queue overflows. Criterion reports the
//!    time per broadcast and the deliveries per second.
//! 2. Latency: 2,000 broadcasts, each carrying the time it was sent; every receiver notes
//!    when it arrived. Printed: broadcasts/s, deliveries/s and the p50/p99/max delivery
//!    latency over all deliveries, one broadcast at a time and with `WINDOW` in flight.
//! 3. Memory (measured first): VmRSS of this process before and after opening 1,000 and
//!    5,000 idle logged-in connections (the clients are plain blocking sockets, so the growth
//!    is the server's), as bytes per connection.
//!
//! ```text
//! cargo bench -p reference-impl --bench chat_fanout
//! cargo bench -p reference-impl --bench chat_fanout -- --skip-criterion   # 2 and 3 only
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use reference_impl::chat::server::{self, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const RECEIVER_COUNTS: [usize; 3] = [10, 100, 1000];
/// Broadcasts in flight at most.
const WINDOW: u64 = 32;
const LATENCY_BROADCASTS: u64 = 2000;
const IDLE_COUNTS: [usize; 2] = [1000, 5000];

type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        joined: false,
        // Pings would interleave with the broadcasts; the bench is about fan-out.
        ping_interval: Duration::from_secs(3600),
        max_connections: 20_000,
        max_queue: 4096,
        ..ServerConfig::default()
    }
}

fn run() -> Result<(), BenchError> {
    let skip_criterion = std::env::args().any(|a| a == "--skip-criterion");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "chat server fan-out, loopback, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    // Memory first, while the allocator has no freed memory to hand out again.
    memory(&runtime)?;
    if !skip_criterion {
        let mut criterion = Criterion::default()
            .configure_from_args()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        throughput(&mut criterion, &runtime)?;
        criterion.final_summary();
    }
    latency(&runtime, 1)?;
    latency(&runtime, WINDOW)?;
    Ok(())
}

/// A logged-in sender and N logged-in receivers counting what they get.
struct Room {
    server: RunningServer,
    sender: tokio::net::tcp::OwnedWriteHalf,
    /// Broadcasts sent.
    sent: u64,
    receivers: usize,
    delivered: Arc<AtomicU64>,
    /// Woken whenever a receiver counted deliveries.
    progress: Arc<Notify>,
    /// Latency samples (ns), filled when `record` is on.
    samples: Arc<std::sync::Mutex<Vec<u64>>>,
    base: Instant,
}

async fn login(addr: SocketAddr, name: &str) -> Result<TcpStream, BenchError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(format!("LOGIN {{\"username\":\"{name}\"}}\n").as_bytes())
        .await?;
    // WELCOME and LOGIN_RESP: read until two line ends.
    let mut seen = 0;
    let mut byte = [0u8; 1];
    while seen < 2 {
        if stream.read(&mut byte).await? == 0 {
            return Err(format!("{name}: closed during login").into());
        }
        if byte[0] == b'\n' {
            seen += 1;
        }
    }
    Ok(stream)
}

impl Room {
    async fn open(receivers: usize) -> Result<Room, BenchError> {
        let server = server::spawn(config()).await?;
        let addr = server.addr();
        let delivered = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let base = Instant::now();
        for i in 0..receivers {
            let mut stream = login(addr, &format!("rcv{i}")).await?;
            let delivered = delivered.clone();
            let progress = progress.clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut partial = Vec::new();
                let mut local = Vec::new();
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let now = base.elapsed().as_nanos() as u64;
                    partial.extend_from_slice(&buf[..n]);
                    let mut lines = 0;
                    while let Some(i) = partial.iter().position(|&b| b == b'\n') {
                        // BROADCAST {"username":"sender","message":"<sent at, ns>"}
                        let line = &partial[..i];
                        if let Some(sent) = line
                            .strip_suffix(b"\"}")
                            .and_then(|l| l.rsplit(|&b| b == b'"').next())
                            .and_then(|t| std::str::from_utf8(t).ok())
                            .and_then(|t| t.parse::<u64>().ok())
                        {
                            local.push(now.saturating_sub(sent));
                        }
                        partial.drain(..=i);
                        lines += 1;
                    }
                    if !local.is_empty() {
                        samples
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .append(&mut local);
                    }
                    delivered.fetch_add(lines, Ordering::Relaxed);
                    progress.notify_one();
                }
            });
        }
        let sender = login(addr, "sender").await?;
        let (mut read, write) = sender.into_split();
        // The sender's own BROADCAST_RESPs: read and dropped.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        Ok(Room {
            server,
            sender: write,
            sent: 0,
            receivers,
            delivered,
            progress,
            samples,
            base,
        })
    }

    /// Sends `count` broadcasts, at most `window` in flight, and waits until all are
    /// delivered.
    async fn broadcast(&mut self, count: u64, window: u64) -> Result<(), BenchError> {
        let n = self.receivers as u64;
        let target = (self.sent + count) * n;
        for _ in 0..count {
            while self.sent * n - self.delivered.load(Ordering::Relaxed) >= window * n {
                self.wait_progress().await?;
            }
            let stamp = self.base.elapsed().as_nanos();
            self.sender
                .write_all(format!("BROADCAST_REQ {{\"message\":\"{stamp}\"}}\n").as_bytes())
                .await?;
            self.sent += 1;
        }
        while self.delivered.load(Ordering::Relaxed) < target {
            self.wait_progress().await?;
        }
        Ok(())
    }

    async fn wait_progress(&self) -> Result<(), BenchError> {
        tokio::time::timeout(Duration::from_secs(30), self.progress.notified())
            .await
            .map_err(|_| "no delivery for 30 s: a receiver was dropped?".into())
    }
}

fn throughput(criterion: &mut Criterion, runtime: &Runtime) -> Result<(), BenchError> {
    let mut group = criterion.benchmark_group("broadcast_fanout");
    for n in RECEIVER_COUNTS {
        let room = runtime.block_on(Room::open(n))?;
        let room = std::sync::Mutex::new(room);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut room = room
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let start = Instant::now();
                if let Err(e) = runtime.block_on(room.broadcast(iters, WINDOW)) {
                    panic!("{e}");
                }
                start.elapsed()
            });
        });
        let room = room
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runtime.block_on(room.server.shutdown());
    }
    group.finish();
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn latency(runtime: &Runtime, window: u64) -> Result<(), BenchError> {
    println!();
    println!(
        "latency: {LATENCY_BROADCASTS} broadcasts, at most {window} in flight, from the sender's \
         write to each receiver's read"
    );
    println!(
        "{:>9} {:>12} {:>14} {:>10} {:>10} {:>10}",
        "receivers", "broadcast/s", "deliveries/s", "p50 us", "p99 us", "max us"
    );
    for n in RECEIVER_COUNTS {
        runtime.block_on(async {
            let mut room = Room::open(n).await?;
            room.broadcast(100, window).await?;
            room.samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            let start = Instant::now();
            room.broadcast(LATENCY_BROADCASTS, window).await?;
            let elapsed = start.elapsed().as_secs_f64();
            let mut samples = std::mem::take(
                &mut *room
                    .samples
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            samples.sort_unstable();
            println!(
                "{n:>9} {:>12.0} {:>14.0} {:>10.0} {:>10.0} {:>10.0}",
                LATENCY_BROADCASTS as f64 / elapsed,
                (LATENCY_BROADCASTS * n as u64) as f64 / elapsed,
                percentile(&samples, 0.50),
                percentile(&samples, 0.99),
                percentile(&samples, 1.0),
            );
            room.server.shutdown().await;
            Ok::<_, BenchError>(())
        })?;
    }
    Ok(())
}

/// VmRSS of this process in bytes.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft limit on open files.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Logs in with a plain blocking socket and keeps it open.
fn idle_login(addr: SocketAddr, name: &str) -> Result<std::net::TcpStream, BenchError> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&stream).write_all(format!("LOGIN {{\"username\":\"{name}\"}}\n").as_bytes())?;
    let mut reader = BufReader::with_capacity(256, &stream);
    let mut line = String::new();
    for _ in 0..2 {
        line.clear();
        reader.read_line(&mut line)?;
    }
    if !line.starts_with("LOGIN_RESP {\"status\":\"OK\"") {
        return Err(format!("{name}: {line:?}").into());
    }
    Ok(stream)
}

fn memory(runtime: &Runtime) -> Result<(), BenchError> {
    println!();
    println!("memory per idle logged-in connection (VmRSS growth of the whole process)");
    let fd_room = open_file_limit().map_or(usize::MAX, |l| l.saturating_sub(256) / 2);
    for wanted in IDLE_COUNTS {
        let n = wanted.min(fd_room);
        if n < wanted {
            println!("  (open-file limit: {n} connections instead of {wanted})");
        }
        let server = runtime.block_on(server::spawn(config()))?;
        let addr = server.addr();
        // A few connections first, so one-off allocations are not counted.
        let mut clients = (0..16)
            .map(|i| idle_login(addr, &format!("warm{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        std::thread::sleep(Duration::from_millis(200));
        let before = rss().ok_or("cannot read VmRSS from /proc/self/status")?;
        let start = Instant::now();
        for i in 0..n {
            clients.push(idle_login(addr, &format!("idle{i}"))?);
        }
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let after = rss().ok_or("cannot read VmRSS")?;
        println!(
            "{n:>9} connections: VmRSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per connection \
             (logins took {:.2} s)",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            after.saturating_sub(before) as f64 / n as f64,
            took.as_secs_f64()
        );
        drop(clients);
        runtime.block_on(server.shutdown());
    }
    Ok(())
}
