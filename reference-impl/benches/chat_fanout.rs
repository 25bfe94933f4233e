//! Broadcast fan-out of the reference chat server, in this process over loopback TCP.
//!
//! The server runs on its own multi-threaded runtime (one worker per core, as `reference`
//! runs it). The clients, one sender and N logged-in receivers, run on a second,
//! single-threaded runtime driven by the main thread: their tasks never sit in the server's
//! run queues, though all threads still share the machine's cores.
//!
//! 1. Throughput (criterion): one sender broadcasts to N receivers (N = 10, 100, 1000); an
//!    iteration is one broadcast delivered to all N. The sender keeps at most `WINDOW`
//!    broadcasts in flight, so no receiver's queue overflows. Criterion reports the time per
//!    broadcast and the deliveries per second.
//! 2. Latency: for each N, 100 broadcasts to warm up, then 2,000 measured ones, first one
//!    at a time (the next is sent once every receiver has the last), then with up to
//!    `WINDOW` in flight. Each `BROADCAST_REQ` carries the time just before the sender's
//!    write; a receiver notes the time its read returned, once per read, for every broadcast
//!    in that read. A sample is the difference, one per delivery (N per broadcast). It spans
//!    the sender's write, the server (read, hub, queueing, write), loopback TCP and the
//!    receiver's read, including the wait for its turn on the client thread: that thread
//!    reads the N sockets one after another, so for the last receivers of 1,000 the figure
//!    also holds the reads of those before them. Printed: broadcasts/s, deliveries/s, the
//!    p50/p99/max of the samples, and the CPU time per delivery of the server's threads
//!    and of the clients' thread (from `/proc/self/task/*/schedstat`): where the time goes,
//!    whatever else the machine runs meanwhile.
//!
//! ```text
//! cargo bench -p reference-impl --bench chat_fanout
//! cargo bench -p reference-impl --bench chat_fanout -- --skip-criterion   # 2 only
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use reference_impl::chat::server::{self, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinSet;

const RECEIVER_COUNTS: [usize; 3] = [10, 100, 1000];
/// Broadcasts in flight at most.
const WINDOW: u64 = 32;
const WARM_UP_BROADCASTS: u64 = 100;
const LATENCY_BROADCASTS: u64 = 2000;
/// How long the sender waits for any delivery before it gives up.
const PATIENCE: Duration = Duration::from_secs(30);
/// The name of the server runtime's threads.
const SERVER_THREAD: &str = "chat-server";

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

/// The server's runtime and the clients'.
struct Runtimes {
    server: Runtime,
    clients: Runtime,
}

impl Runtimes {
    fn new() -> Result<Self, BenchError> {
        Ok(Self {
            server: tokio::runtime::Builder::new_multi_thread()
                .thread_name(SERVER_THREAD)
                .enable_all()
                .build()?,
            clients: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// A server on the server's runtime and `receivers` clients on the clients'.
    fn open(&self, receivers: usize) -> Result<Room, BenchError> {
        let server = self.server.block_on(server::spawn(config()))?;
        self.clients.block_on(Room::open(server, receivers))
    }

    /// Stops the server, lets the clients see their connections close, and returns the
    /// latency samples they recorded.
    fn close(&self, room: Room) -> Vec<u64> {
        let Room {
            server,
            sender,
            clients,
            ..
        } = room;
        drop(sender);
        self.server.block_on(server.shutdown());
        self.clients.block_on(async {
            tokio::time::timeout(PATIENCE, clients.join_all())
                .await
                .map(|samples| samples.concat())
                .unwrap_or_default()
        })
    }
}

fn run() -> Result<(), BenchError> {
    let skip_criterion = std::env::args().any(|a| a == "--skip-criterion");
    let runtimes = Runtimes::new()?;
    println!(
        "chat server fan-out, loopback, {} cores; server on its own runtime, the clients on \
         one other thread",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    if !skip_criterion {
        let mut criterion = Criterion::default()
            .configure_from_args()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        throughput(&mut criterion, &runtimes)?;
        criterion.final_summary();
    }
    latency(&runtimes, 1)?;
    latency(&runtimes, WINDOW)?;
    Ok(())
}

/// What the receivers of a room share with its sender.
struct Deliveries {
    /// Lines received, all receivers together.
    count: AtomicU64,
    /// The count the sender waits for: the receiver reaching it wakes the sender (and no
    /// other read does, so the sender's wake-ups do not add to the receivers' latency).
    wanted: AtomicU64,
    progress: Notify,
    /// Broadcasts sent before this time (warm-up) are not recorded.
    record_from: AtomicU64,
    /// The clock the stamps count from.
    base: Instant,
}

impl Deliveries {
    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A logged-in sender and N logged-in receivers noting what they get.
struct Room {
    server: RunningServer,
    sender: tokio::net::tcp::OwnedWriteHalf,
    /// Broadcasts sent.
    sent: u64,
    receivers: u64,
    deliveries: Arc<Deliveries>,
    /// The receivers' tasks, which end with their latency samples, and the one reading the
    /// sender's replies.
    clients: JoinSet<Vec<u64>>,
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

/// The send stamp of `BROADCAST {"username":"sender","message":"<ns>"}`.
fn stamp(line: &[u8]) -> Option<u64> {
    line.strip_suffix(b"\"}")
        .and_then(|l| l.rsplit(|&b| b == b'"').next())
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse().ok())
}

/// Reads broadcasts until the connection closes; returns the latency of each one recorded
/// (ns).
async fn receive(mut stream: TcpStream, deliveries: Arc<Deliveries>) -> Vec<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut partial = Vec::new();
    let mut samples = Vec::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return samples,
            Ok(n) => n,
        };
        let now = deliveries.nanos();
        partial.extend_from_slice(&buf[..n]);
        let record_from = deliveries.record_from.load(Ordering::Relaxed);
        let mut lines = 0;
        let mut start = 0;
        while let Some(end) = partial[start..].iter().position(|&b| b == b'\n') {
            if let Some(sent) = stamp(&partial[start..start + end])
                && sent >= record_from
            {
                samples.push(now.saturating_sub(sent));
            }
            start += end + 1;
            lines += 1;
        }
        partial.drain(..start);
        let count = deliveries.count.fetch_add(lines, Ordering::Relaxed) + lines;
        if count >= deliveries.wanted.load(Ordering::Relaxed) {
            deliveries.progress.notify_one();
        }
    }
}

impl Room {
    /// Logs the receivers and the sender in; run on the clients' runtime.
    async fn open(server: RunningServer, receivers: usize) -> Result<Room, BenchError> {
        let addr = server.addr();
        let deliveries = Arc::new(Deliveries {
            count: AtomicU64::new(0),
            wanted: AtomicU64::new(u64::MAX),
            progress: Notify::new(),
            record_from: AtomicU64::new(u64::MAX),
            base: Instant::now(),
        });
        let mut clients = JoinSet::new();
        for i in 0..receivers {
            let stream = login(addr, &format!("rcv{i}")).await?;
            clients.spawn(receive(stream, deliveries.clone()));
        }
        let sender = login(addr, "sender").await?;
        let (mut read, write) = sender.into_split();
        // The sender's own BROADCAST_RESPs: read and dropped.
        clients.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
            Vec::new()
        });
        Ok(Room {
            server,
            sender: write,
            sent: 0,
            receivers: receivers as u64,
            deliveries,
            clients,
        })
    }

    /// Sends `count` broadcasts, at most `window` in flight, and waits until all are
    /// delivered; run on the clients' runtime.
    async fn broadcast(&mut self, count: u64, window: u64) -> Result<(), BenchError> {
        let n = self.receivers;
        for _ in 0..count {
            // Room for one more: fewer than `window` broadcasts not delivered to everyone.
            let delivered = (self.sent + 1).saturating_sub(window) * n;
            self.wait_for(delivered).await?;
            let stamp = self.deliveries.nanos();
            self.sender
                .write_all(format!("BROADCAST_REQ {{\"message\":\"{stamp}\"}}\n").as_bytes())
                .await?;
            self.sent += 1;
        }
        self.wait_for(self.sent * n).await
    }

    /// Waits until `count` lines are delivered, all receivers together.
    async fn wait_for(&self, count: u64) -> Result<(), BenchError> {
        let deliveries = &self.deliveries;
        deliveries.wanted.store(count, Ordering::Relaxed);
        // A wake-up may be left from an earlier wait: the count is checked again.
        while deliveries.count.load(Ordering::Relaxed) < count {
            tokio::time::timeout(PATIENCE, deliveries.progress.notified())
                .await
                .map_err(|_| format!("no delivery for {PATIENCE:?}: a receiver was dropped?"))?;
        }
        Ok(())
    }
}

fn throughput(criterion: &mut Criterion, runtimes: &Runtimes) -> Result<(), BenchError> {
    let mut group = criterion.benchmark_group("broadcast_fanout");
    for n in RECEIVER_COUNTS {
        let room = Mutex::new(runtimes.open(n)?);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut room = room.lock().unwrap_or_else(PoisonError::into_inner);
                let start = Instant::now();
                if let Err(e) = runtimes.clients.block_on(room.broadcast(iters, WINDOW)) {
                    panic!("{e}");
                }
                start.elapsed()
            });
        });
        runtimes.close(room.into_inner().unwrap_or_else(PoisonError::into_inner));
    }
    group.finish();
    Ok(())
}

/// CPU time of this process's threads so far, in nanoseconds: the server runtime's, and
/// the others' (the clients'). `None` where the kernel does not tell.
fn cpu_times() -> Option<(u64, u64)> {
    let mut server = 0;
    let mut others = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        // A thread may end between the listing and the reads: it is skipped.
        let (Ok(comm), Ok(schedstat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let ns: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
        if comm.trim_end() == SERVER_THREAD {
            server += ns;
        } else {
            others += ns;
        }
    }
    Some((server, others))
}

/// The `p` quantile of sorted nanoseconds, in microseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn latency(runtimes: &Runtimes, window: u64) -> Result<(), BenchError> {
    println!();
    println!(
        "latency: {LATENCY_BROADCASTS} broadcasts, at most {window} in flight, from just \
         before the sender's write to the return of each receiver's read"
    );
    println!(
        "{:>9} {:>12} {:>14} {:>10} {:>10} {:>10} {:>14} {:>14}",
        "receivers",
        "broadcast/s",
        "deliveries/s",
        "p50 us",
        "p99 us",
        "max us",
        "server CPU us",
        "client CPU us"
    );
    for n in RECEIVER_COUNTS {
        let mut room = runtimes.open(n)?;
        let measured = runtimes.clients.block_on(async {
            room.broadcast(WARM_UP_BROADCASTS, window).await?;
            let deliveries = &room.deliveries;
            deliveries
                .record_from
                .store(deliveries.nanos(), Ordering::Relaxed);
            let cpu_before = cpu_times();
            let start = Instant::now();
            room.broadcast(LATENCY_BROADCASTS, window).await?;
            let elapsed = start.elapsed().as_secs_f64();
            Ok::<_, BenchError>((elapsed, cpu_before.zip(cpu_times())))
        });
        let mut samples = runtimes.close(room);
        let (elapsed, cpu) = measured?;
        let deliveries = LATENCY_BROADCASTS * n as u64;
        if samples.len() as u64 != deliveries {
            return Err(format!(
                "{n} receivers recorded {} deliveries of {deliveries}",
                samples.len()
            )
            .into());
        }
        samples.sort_unstable();
        // CPU microseconds per delivery.
        let per_delivery = |before: u64, after: u64| {
            after.saturating_sub(before) as f64 / deliveries as f64 / 1000.0
        };
        let (server_cpu, client_cpu) = cpu.map_or((f64::NAN, f64::NAN), |(before, after)| {
            (
                per_delivery(before.0, after.0),
                per_delivery(before.1, after.1),
            )
        });
        println!(
            "{n:>9} {:>12.0} {:>14.0} {:>10.0} {:>10.0} {:>10.0} {server_cpu:>14.2} \
             {client_cpu:>14.2}",
            LATENCY_BROADCASTS as f64 / elapsed,
            deliveries as f64 / elapsed,
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            percentile(&samples, 1.0),
        );
    }
    Ok(())
}
