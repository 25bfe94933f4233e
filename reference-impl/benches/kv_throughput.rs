//! Request throughput of the reference key-value server over TLS, side by side with Redis
//! over TLS when it is installed.
//!
//! Ours: the server runs in this process on its own multi-threaded runtime (one worker per
//! core, as `reference kv-server` runs it). N clients (N = 1, 16, 256) run on one other
//! thread, as `redis-benchmark` runs its clients; each logs in (before the clock starts),
//! then does PUT/GET pairs on its own key with a 16-byte value for a fixed time (3 s per N;
//! `KV_BENCH_SECS` changes it). One op is one request and its reply, PUT and GET alike;
//! each op is timed for the mean and the 99th percentile.
//!
//! Redis: if `redis-server` and `redis-benchmark` are on `PATH` (Debian: `apt-get install
//! redis-server`), a Redis server is started over TLS on a free loopback port, without
//! persistence, with the same certificate, and for each N
//! `redis-benchmark --tls -c N -n <about KV_BENCH_SECS worth> -t set,get -d 16 --csv` runs
//! (a short run first sizes `-n`). The table compares our ops/s with Redis's rate for
//! alternating SET and GET, `2 / (1/SET + 1/GET)`. Every process started is killed at the
//! end, error or not.
//!
//! ```text
//! cargo bench -p reference-impl --bench kv_throughput
//! KV_BENCH_SECS=10 cargo bench -p reference-impl --bench kv_throughput
//! KV_BENCH_CLIENTS=256 cargo bench -p reference-impl --bench kv_throughput   # some N only
//! KV_BENCH_SERVER_THREADS=1 cargo bench -p reference-impl --bench kv_throughput  # workers
//! ```

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::server::{self, ServerConfig};
use reference_impl::tls::{self, ClientTrust, SelfSigned};
use rustls_pki_types::ServerName;

const CLIENT_COUNTS: [usize; 3] = [1, 16, 256];
const DEFAULT_SECS: f64 = 3.0;
/// 16 bytes, as `redis-benchmark -d 16` writes.
const VALUE: &str = "sixteen byte val";
/// How long Redis may take to accept TLS connections after it starts.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at starting Redis when the free port found is taken before Redis binds it.
const REDIS_START_ATTEMPTS: usize = 3;
/// Time allowed to a `redis-benchmark` run beyond its expected length.
const BENCHMARK_GRACE: Duration = Duration::from_secs(60);
/// How much of a process's output an error message quotes.
const OUTPUT_TAIL: usize = 2000;

type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Our figures at one client count.
#[derive(Debug, Clone, Copy)]
struct Ours {
    clients: usize,
    ops_per_sec: f64,
}

/// Redis's figures at one client count.
#[derive(Debug, Clone, Copy)]
struct RedisRow {
    set_per_sec: f64,
    get_per_sec: f64,
}

impl RedisRow {
    /// The rate of a client stream alternating SET and GET.
    fn mixed_per_sec(self) -> f64 {
        2.0 / (1.0 / self.set_per_sec + 1.0 / self.get_per_sec)
    }
}

fn run() -> Result<(), BenchError> {
    let secs = env_secs()?;
    let counts = env_counts()?;
    let cert = tls::self_signed(&[])?;
    println!(
        "kv server over TLS: PUT/GET pairs, {secs} s per row, {} cores; server on its own \
         runtime, the clients on one other thread",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "clients", "PUT/s", "GET/s", "op/s", "mean", "p99"
    );
    let mut ours = Vec::with_capacity(counts.len());
    for &n in &counts {
        let row = measure_ours(&cert, n, Duration::from_secs_f64(secs))?;
        ours.push(row);
    }
    println!();
    match redis(&cert, &counts, secs)? {
        RedisOutcome::Skipped(reason) => println!("redis: {reason}; showing ours only"),
        RedisOutcome::Rows(rows) => print_comparison(&ours, &rows),
    }
    Ok(())
}

fn env_secs() -> Result<f64, BenchError> {
    match std::env::var("KV_BENCH_SECS") {
        Ok(text) => Ok(text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
            .ok_or_else(|| {
                format!("KV_BENCH_SECS={text:?} is not a number of seconds in (0, 3600]")
            })?),
        Err(_) => Ok(DEFAULT_SECS),
    }
}

/// The server's runtime: one worker per core, as `reference kv-server` runs it, unless
/// `KV_BENCH_SERVER_THREADS` says how many.
fn server_runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Ok(text) = std::env::var("KV_BENCH_SERVER_THREADS") {
        let threads = text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| format!("KV_BENCH_SERVER_THREADS={text:?} is not in 1..=256"))?;
        builder.worker_threads(threads);
    }
    Ok(builder.thread_name("kv-server").enable_all().build()?)
}

fn env_counts() -> Result<Vec<usize>, BenchError> {
    let Ok(text) = std::env::var("KV_BENCH_CLIENTS") else {
        return Ok(CLIENT_COUNTS.to_vec());
    };
    text.split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    format!(
                        "KV_BENCH_CLIENTS={text:?}: expected client counts in 1..=1000 \
                         separated by commas"
                    )
                    .into()
                })
        })
        .collect()
}

fn print_comparison(ours: &[Ours], redis: &[RedisRow]) {
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12}",
        "clients", "ours op/s", "redis SET/s", "redis GET/s", "ours/redis"
    );
    for (ours, redis) in ours.iter().zip(redis) {
        println!(
            "{:>8} {:>12.0} {:>12.0} {:>12.0} {:>12.2}",
            ours.clients,
            ours.ops_per_sec,
            redis.set_per_sec,
            redis.get_per_sec,
            ours.ops_per_sec / redis.mixed_per_sec()
        );
    }
    println!(
        "ours/redis: our op/s over Redis's rate for alternating SET and GET, \
         2 / (1/SET + 1/GET)"
    );
}

// ---------------------------------------------------------------------------------------
// Ours
// ---------------------------------------------------------------------------------------

/// What one client did in the measured time.
#[derive(Debug, Default)]
struct Tally {
    puts: u64,
    gets: u64,
    /// Duration of every op, in nanoseconds.
    latencies: Vec<u64>,
}

fn measure_ours(cert: &SelfSigned, n: usize, duration: Duration) -> Result<Ours, BenchError> {
    let server_runtime = server_runtime()?;
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der.clone_key())?;
    let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der.clone()]))?;
    // First-use accounts: logins cost no PBKDF2 on the server, so the figures are about
    // requests, not password hashing.
    let server = server_runtime.block_on(server::spawn(ServerConfig::default(), server_tls))?;
    let result = client_runtime.block_on(clients(server.addr(), &client_tls, n, duration));
    server_runtime.block_on(server.shutdown());
    let (tally, elapsed) = result?;
    let ops = tally.puts + tally.gets;
    let rate = |count: u64| count as f64 / elapsed.as_secs_f64();
    let mut latencies = tally.latencies;
    let mean = Duration::from_nanos(latencies.iter().sum::<u64>() / ops.max(1));
    let p99 = Duration::from_nanos(percentile(&mut latencies, 0.99));
    let row = Ours {
        clients: n,
        ops_per_sec: rate(ops),
    };
    println!(
        "{n:>8} {:>12.0} {:>12.0} {:>12.0} {:>10} {:>10}",
        rate(tally.puts),
        rate(tally.gets),
        row.ops_per_sec,
        micros(mean),
        micros(p99),
    );
    Ok(row)
}

fn micros(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

/// The `q` quantile (nearest rank) of `samples`, reordering them; 0 if there are none.
fn percentile(samples: &mut [u64], q: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    *samples.select_nth_unstable(rank - 1).1
}

/// Logs in `n` clients, lets them do PUT/GET pairs for `duration`, and returns what they
/// did together and the time it took.
async fn clients(
    addr: SocketAddr,
    client_tls: &Arc<rustls::ClientConfig>,
    n: usize,
    duration: Duration,
) -> Result<(Tally, Duration), BenchError> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let name = ServerName::try_from("127.0.0.1")?;
        let mut client = Client::connect(addr, client_tls.clone(), name, Dialect::Spec).await?;
        client
            .login(&format!("bench-{n}-{i}"), &[i as u8; 32])
            .await?;
        clients.push(client);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        workers.spawn(async move {
            let key = format!("key{i}");
            let mut tally = Tally::default();
            let mut before = Instant::now();
            while before < deadline {
                client.put(&key, VALUE).await?;
                let between = Instant::now();
                tally.puts += 1;
                tally.latencies.push(nanos(between - before));
                client.get(&key).await?;
                before = Instant::now();
                tally.gets += 1;
                tally.latencies.push(nanos(before - between));
            }
            Ok::<_, ClientError>((tally, client))
        });
    }
    let mut total = Tally::default();
    let mut done = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        let (tally, client) = joined??;
        total.puts += tally.puts;
        total.gets += tally.gets;
        total.latencies.extend(tally.latencies);
        done.push(client);
    }
    let elapsed = start.elapsed();
    for client in done {
        client.disconnect().await?;
    }
    Ok((total, elapsed))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

enum RedisOutcome {
    /// Why there is nothing to compare with (not installed, built without TLS).
    Skipped(String),
    /// One row per client count.
    Rows(Vec<RedisRow>),
}

/// A child process, killed and reaped when dropped. Its stdout and stderr go to files, so
/// that a chatty process never blocks on a full pipe.
struct Process {
    /// The command line, for messages.
    command: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    fn spawn(program: &Path, args: &[String], dir: &Path, name: &str) -> Result<Self, String> {
        let command = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| shell_word(a)))
            .collect::<Vec<_>>()
            .join(" ");
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let file = |path: &Path| {
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file(&stdout)?)
            .stderr(file(&stderr)?)
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        Ok(Self {
            command,
            child,
            stdout,
            stderr,
        })
    }

    /// Its exit status if it has exited.
    fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child
            .try_wait()
            .map_err(|e| format!("cannot check on `{}`: {e}", self.command))
    }

    /// Waits for it to exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{}` did not finish within {timeout:?}; killed it{}",
                    self.command,
                    self.output_note()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Both outputs.
    fn output(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("{}{stderr}", self.stdout())
    }

    /// The end of its output, for an error message.
    fn output_note(&self) -> String {
        let output = self.output();
        let output = output.trim();
        if output.is_empty() {
            return String::from(" (it printed nothing)");
        }
        let start = output
            .char_indices()
            .rev()
            .nth(OUTPUT_TAIL)
            .map_or(0, |(i, _)| i);
        format!("; its output ends:\n{}", &output[start..])
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `word`, quoted if a shell would need it, for messages.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// An executable called `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Redis's figures at each client count, or why there are none.
fn redis(cert: &SelfSigned, counts: &[usize], secs: f64) -> Result<RedisOutcome, BenchError> {
    let (Some(server), Some(benchmark)) = (on_path("redis-server"), on_path("redis-benchmark"))
    else {
        return Ok(RedisOutcome::Skipped(String::from(
            "redis-server or redis-benchmark is not on PATH (Debian: apt-get install -y \
             redis-server)",
        )));
    };
    let dir = tempfile::Builder::new()
        .prefix("kv-bench-redis")
        .tempdir()?;
    let help = Command::new(&benchmark)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{} --help`: {e}", benchmark.display()))?;
    let help = String::from_utf8_lossy(&[help.stdout, help.stderr].concat()).into_owned();
    if !help.contains("--tls") {
        return Ok(RedisOutcome::Skipped(format!(
            "{} is built without TLS (its --help offers no --tls)",
            benchmark.display()
        )));
    }
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, &cert.cert_pem)?;
    std::fs::write(&key_file, &cert.key_pem)?;
    let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der.clone()]))?;
    let (redis, port) = match start_redis(&server, dir.path(), &cert_file, &key_file, &client_tls)?
    {
        Started::Running(redis, port) => (redis, port),
        Started::NoTls(reason) => return Ok(RedisOutcome::Skipped(reason)),
    };
    println!(
        "redis: {} over TLS on 127.0.0.1:{port}",
        redis_version(&server).unwrap_or_else(|| String::from("redis-server"))
    );
    let mut rows = Vec::with_capacity(counts.len());
    for &n in counts {
        let common = |requests: usize, tests: &str| {
            [
                "--tls",
                "--cacert",
                &cert_file.display().to_string(),
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-c",
                &n.to_string(),
                "-n",
                &requests.to_string(),
                "-t",
                tests,
                "-d",
                "16",
                "--csv",
            ]
            .map(str::to_owned)
        };
        // A short run sizes the real one to about `secs` per test.
        let probe = (n * 100).clamp(5_000, 50_000);
        let probed = run_benchmark(&benchmark, &common(probe, "get"), dir.path(), secs)?;
        let requests = ((probed.get_per_sec * secs) as usize).clamp(n * 10, 100_000_000);
        let row = run_benchmark(&benchmark, &common(requests, "set,get"), dir.path(), secs)?;
        println!(
            "redis: {n:>3} clients, -n {requests}: {:.0} SET/s, {:.0} GET/s",
            row.set_per_sec, row.get_per_sec
        );
        rows.push(row);
    }
    drop(redis);
    Ok(RedisOutcome::Rows(rows))
}

fn redis_version(server: &Path) -> Option<String> {
    let output = Command::new(server).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "Redis server v=7.0.15 sha=..."
    let version = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    Some(format!("Redis {version}"))
}

enum Started {
    Running(Process, u16),
    /// This redis-server cannot serve TLS, and why we think so.
    NoTls(String),
}

/// Starts Redis on a free loopback port, TLS only, no persistence, and waits until it
/// answers a PING over TLS.
fn start_redis(
    server: &Path,
    dir: &Path,
    cert_file: &Path,
    key_file: &Path,
    client_tls: &Arc<rustls::ClientConfig>,
) -> Result<Started, BenchError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            &cert_file.display().to_string(),
            "--tls-key-file",
            &key_file.display().to_string(),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .map(str::to_owned);
        let mut redis = Process::spawn(server, &args, dir, "redis-server")?;
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if let Some(status) = redis.exited()? {
                let output = redis.output();
                if output.contains("tls-port") {
                    let said = output.lines().rev().find(|l| !l.trim().is_empty());
                    return Ok(Started::NoTls(format!(
                        "{} is built without TLS (it refused --tls-port: {})",
                        server.display(),
                        said.unwrap_or_default().trim()
                    )));
                }
                if output.contains("already in use") && attempt < REDIS_START_ATTEMPTS {
                    break;
                }
                return Err(format!(
                    "`{}` exited with {status} before accepting connections{}",
                    redis.command,
                    redis.output_note()
                )
                .into());
            }
            if let Ok(tcp) = TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_millis(200),
            ) {
                return match tls_ping(tcp, client_tls) {
                    Ok(()) => Ok(Started::Running(redis, port)),
                    Err(e) => Err(format!(
                        "`{}` accepts connections on port {port}, but a PING over TLS \
                         failed: {e}{}",
                        redis.command,
                        redis.output_note()
                    )
                    .into()),
                };
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{}` did not accept connections on port {port} within \
                     {REDIS_START_TIMEOUT:?}{}",
                    redis.command,
                    redis.output_note()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A loopback port nothing listens on at the moment.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Sends `PING` over TLS on `tcp` and expects `+PONG`.
fn tls_ping(tcp: TcpStream, client_tls: &Arc<rustls::ClientConfig>) -> Result<(), BenchError> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("127.0.0.1")?;
    let connection = rustls::ClientConnection::new(client_tls.clone(), name)?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(b"PING\r\n")?;
    stream.flush()?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply)?;
    if &reply != b"+PONG\r\n" {
        return Err(format!("expected +PONG, got {:?}", String::from_utf8_lossy(&reply)).into());
    }
    Ok(())
}

/// Runs `redis-benchmark` with `args` (expected to take about `secs` per test) and reads
/// its CSV.
fn run_benchmark(
    benchmark: &Path,
    args: &[String],
    dir: &Path,
    secs: f64,
) -> Result<RedisRow, BenchError> {
    let mut process = Process::spawn(benchmark, args, dir, "redis-benchmark")?;
    let status = process.wait(Duration::from_secs_f64(secs * 4.0) + BENCHMARK_GRACE)?;
    if !status.success() {
        return Err(format!(
            "`{}` failed ({status}){}",
            process.command,
            process.output_note()
        )
        .into());
    }
    let rates = parse_csv(&process.stdout());
    let rate = |test: &str| {
        rates
            .iter()
            .find(|(name, _)| name == test)
            .map(|&(_, rate)| rate)
    };
    let tests = args
        .iter()
        .skip_while(|a| *a != "-t")
        .nth(1)
        .map_or("", String::as_str);
    let want = |test: &str| -> Result<f64, BenchError> {
        if !tests.split(',').any(|t| t.eq_ignore_ascii_case(test)) {
            return Ok(f64::NAN);
        }
        rate(test).filter(|r| *r > 0.0).ok_or_else(|| {
            let mut message = format!("`{}` printed no requests/s for {test}", process.command);
            let _ = write!(message, "{}", process.output_note());
            message.into()
        })
    };
    Ok(RedisRow {
        set_per_sec: want("SET")?,
        get_per_sec: want("GET")?,
    })
}

/// `(test, requests/s)` of each row of `redis-benchmark --csv`:
/// `"SET","26766.60","0.415",...` after a header row.
fn parse_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
            let test = fields.next()?;
            let rate = fields.next()?.parse::<f64>().ok()?;
            Some((test.to_owned(), rate))
        })
        .collect()
}
