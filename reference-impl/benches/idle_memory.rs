//! Resident memory per idle connection of the reference chat server and of the reference
//! key-value server over TLS, at 1,000 and 10,000 connections.
//!
//! Both ends of 10,000 connections would not fit one process's open-file limit, so each
//! server runs in a child process: this bench starts itself again with
//! `IDLE_MEMORY_SERVER=chat|kv`, and the child starts the server on a multi-threaded
//! runtime (one worker per core, as `reference` runs it), prints `ADDR <address>` and serves
//! until its stdin closes. For each server and count, a fresh child:
//!
//! 1. the child's VmRSS (`/proc/<pid>/status`) once it listens, after a short settle;
//! 2. N connections opened from here, at most `IN_FLIGHT` at a time, each logged in:
//!    chat: `LOGIN` with a unique name, `LOGIN_RESP` OK read (server pings are set an hour
//!    apart, and JOINED is off, so nothing else is sent); kv: TLS handshake, then `CONNECT`
//!    of a first-use account (no PBKDF2) answered `CONNECT: OK`;
//! 3. the child's VmRSS again once every login is answered, after a settle of `SETTLE`.
//!
//! Printed: both readings and (after - before) / N. The soft open-file limit is raised to
//! the hard one; if that still does not fit N connections, fewer are measured, and a line
//! says so.
//!
//! ```text
//! cargo bench -p reference-impl --bench idle_memory
//! ```

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use reference_impl::chat::server as chat;
use reference_impl::kv::client::Client;
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::server as kv;
use reference_impl::tls::{self, ClientTrust, SelfSigned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const COUNTS: [usize; 2] = [1_000, 10_000];
/// Selects server mode, and which server.
const SERVER_ENV: &str = "IDLE_MEMORY_SERVER";
/// The KV server's certificate and key, PEM, from the parent.
const CERT_ENV: &str = "IDLE_MEMORY_CERT";
const KEY_ENV: &str = "IDLE_MEMORY_KEY";
/// Connections being opened at a time.
const IN_FLIGHT: usize = 64;
/// Open files kept free for everything but the measured connections.
const FD_MARGIN: usize = 100;
/// The most open files asked for: the kernel's default `nr_open`.
const MAX_FDS: u64 = 1 << 20;
/// Pause before each reading, for the server to finish what it was doing.
const SETTLE: Duration = Duration::from_secs(1);
/// Time for the child to print its address, and to exit once told to.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for one chat login to be answered.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A chat reply longer than this is not `WELCOME` and `LOGIN_RESP`.
const MAX_LOGIN_REPLY: usize = 4096;

type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The servers measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Chat,
    Kv,
}

impl Server {
    const ALL: [Server; 2] = [Server::Chat, Server::Kv];

    fn name(self) -> &'static str {
        match self {
            Server::Chat => "chat",
            Server::Kv => "kv",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

fn main() {
    let result = match std::env::var(SERVER_ENV) {
        Ok(name) => serve(&name),
        Err(_) => measure_all(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Raises the soft open-file limit to the hard one (at most `MAX_FDS`); returns the soft
/// limit now in force, the old one if it could not be raised.
fn raise_fd_limit() -> Result<u64, BenchError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    // An unlimited hard limit is still capped by the kernel's nr_open.
    let wanted = hard.min(MAX_FDS);
    if soft < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
        return Ok(wanted);
    }
    Ok(soft)
}

// ---------------------------------------------------------------------------------------
// Server mode (the child)
// ---------------------------------------------------------------------------------------

fn serve(name: &str) -> Result<(), BenchError> {
    let server = Server::parse(name).ok_or_else(|| {
        format!("{SERVER_ENV}={name:?}: expected one of chat, kv (server mode of this bench)")
    })?;
    raise_fd_limit()?;
    let limit = COUNTS.iter().max().copied().unwrap_or(0) * 2;
    let runtime = tokio::runtime::Runtime::new()?;
    // Held until stdin closes: dropping a handle stops its server.
    let (addr, running): (SocketAddr, Box<dyn std::any::Any>) = match server {
        Server::Chat => {
            let config = chat::ServerConfig {
                joined: false,
                // Idle means no traffic: no pings while the measurement runs.
                ping_interval: Duration::from_secs(3600),
                max_connections: limit,
                ..chat::ServerConfig::default()
            };
            let running = runtime.block_on(chat::spawn(config))?;
            (running.addr(), Box::new(running))
        }
        Server::Kv => {
            let cert = std::env::var(CERT_ENV).map_err(|_| format!("{CERT_ENV} is not set"))?;
            let key = std::env::var(KEY_ENV).map_err(|_| format!("{KEY_ENV} is not set"))?;
            let cert = CertificateDer::from_pem_slice(cert.as_bytes())
                .map_err(|e| format!("{CERT_ENV} holds no PEM certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("{KEY_ENV} holds no PEM private key: {e}"))?;
            let config = kv::ServerConfig {
                max_connections: limit,
                max_sessions: limit,
                ..kv::ServerConfig::default()
            };
            let server_tls = tls::server_config(vec![cert], key)?;
            let running = runtime.block_on(kv::spawn(config, server_tls))?;
            (running.addr(), Box::new(running))
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ADDR {addr}")?;
    stdout.flush()?;
    // Serve until the parent closes stdin (or goes away).
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())?;
    drop(running);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Measuring (the parent)
// ---------------------------------------------------------------------------------------

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Reading {
    connections: usize,
    before_kib: u64,
    after_kib: u64,
}

impl Reading {
    fn bytes_per_connection(self) -> f64 {
        (self.after_kib as f64 - self.before_kib as f64) * 1024.0 / self.connections as f64
    }
}

fn measure_all() -> Result<(), BenchError> {
    let fd_limit = raise_fd_limit()?;
    let fit = usize::try_from(fd_limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_MARGIN);
    let cert = tls::self_signed(&[])?;
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "idle memory per connection, server in a child process ({} cores), VmRSS before and \
         after N logged-in idle connections",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    if COUNTS.iter().any(|&n| n > fit) {
        println!(
            "the open-file limit is {fd_limit}: measuring at most {fit} connections per run \
             (raise `ulimit -Hn` for more)"
        );
    }
    // What fits, each count once.
    let mut counts: Vec<usize> = COUNTS.iter().map(|&n| n.min(fit)).collect();
    counts.dedup();
    if counts.contains(&0) {
        return Err(
            format!("the open-file limit {fd_limit} leaves no room for connections").into(),
        );
    }
    println!(
        "{:>6} {:>12} {:>12} {:>12} {:>16}",
        "server", "connections", "RSS before", "RSS after", "bytes/connection"
    );
    for server in Server::ALL {
        for &n in &counts {
            let reading = measure(&runtime, server, n, &cert)?;
            println!(
                "{:>6} {:>12} {:>8} KiB {:>8} KiB {:>16.0}",
                server.name(),
                reading.connections,
                reading.before_kib,
                reading.after_kib,
                reading.bytes_per_connection()
            );
        }
    }
    Ok(())
}

/// The server child, killed and reaped when dropped.
struct ServerProcess {
    child: Child,
    /// Closing it tells the child to exit.
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(server: Server, cert: &SelfSigned) -> Result<Self, BenchError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(&exe)
            .env(SERVER_ENV, server.name())
            .env(CERT_ENV, &cert.cert_pem)
            .env(KEY_ENV, &cert.key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {} in server mode: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // From here on, dropping `process` kills the child.
        let mut process = Self {
            child,
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let stdout = stdout.ok_or("the child's stdout is not piped")?;
        // Read on a thread of its own, so that a child that never answers cannot hang us.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(CHILD_TIMEOUT) {
            Ok(read) => read?,
            Err(_) => {
                return Err(format!(
                    "the {} server child printed no address within {CHILD_TIMEOUT:?}",
                    server.name()
                )
                .into());
            }
        };
        let addr = line
            .trim()
            .strip_prefix("ADDR ")
            .and_then(|addr| addr.parse().ok());
        let Some(addr) = addr else {
            return Err(format!(
                "the {} server child printed {line:?}, not `ADDR <address>`{}",
                server.name(),
                process.exit_note()
            )
            .into());
        };
        process.addr = addr;
        Ok(process)
    }

    /// The child's resident memory in KiB.
    fn rss_kib(&self) -> Result<u64, BenchError> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .ok_or_else(|| format!("{path} has no `VmRSS: <n> kB` line").into())
    }

    /// How the child exited, if it has.
    fn exit_note(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!(" (it exited: {status})"),
            _ => String::new(),
        }
    }

    /// Closes its stdin and waits for it to exit, at most `CHILD_TIMEOUT`.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + CHILD_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) | Err(_) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    server: Server,
    n: usize,
    cert: &SelfSigned,
) -> Result<Reading, BenchError> {
    let mut process = ServerProcess::start(server, cert)?;
    std::thread::sleep(SETTLE);
    let before_kib = process.rss_kib()?;
    let addr = process.addr;
    let opened = match server {
        Server::Chat => runtime
            .block_on(open_all(n, move |i| chat_login(addr, i)))
            .map(|open| Box::new(open) as Held),
        Server::Kv => {
            let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der.clone()]))?;
            runtime
                .block_on(open_all(n, move |i| kv_login(addr, client_tls.clone(), i)))
                .map(|open| Box::new(open) as Held)
        }
    };
    let connections = opened.map_err(|e| {
        format!(
            "{} server, {n} connections: {e}{}",
            server.name(),
            process.exit_note()
        )
    })?;
    std::thread::sleep(SETTLE);
    let after_kib = process.rss_kib()?;
    // Closed on the runtime that opened them.
    runtime.block_on(async move { drop(connections) });
    process.stop();
    Ok(Reading {
        connections: n,
        before_kib,
        after_kib,
    })
}

/// Open connections, kept open until the reading is taken.
type Held = Box<dyn std::any::Any + Send>;

/// Runs `open(0..n)`, at most `IN_FLIGHT` at a time; the first failure stops it all.
async fn open_all<T, F, Fut>(n: usize, open: F) -> Result<Vec<T>, BenchError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, BenchError>> + Send + 'static,
{
    let mut opened = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        while tasks.len() >= IN_FLIGHT {
            if let Some(joined) = tasks.join_next().await {
                opened.push(joined??);
            }
        }
        tasks.spawn(open(i));
    }
    while let Some(joined) = tasks.join_next().await {
        opened.push(joined??);
    }
    Ok(opened)
}

/// A chat connection logged in as a unique name, its `WELCOME` and `LOGIN_RESP` read.
async fn chat_login(addr: SocketAddr, i: usize) -> Result<TcpStream, BenchError> {
    let name = format!("idle_{i}");
    let login = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connection {i}: cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        stream
            .write_all(format!("LOGIN {{\"username\":\"{name}\"}}\n").as_bytes())
            .await?;
        // WELCOME, then LOGIN_RESP: read until two line ends.
        let mut replies = Vec::new();
        let mut buf = [0u8; 512];
        while replies.iter().filter(|&&b| b == b'\n').count() < 2 {
            if replies.len() > MAX_LOGIN_REPLY {
                return Err(format!("{name}: no LOGIN_RESP in {MAX_LOGIN_REPLY} bytes").into());
            }
            let read = stream.read(&mut buf).await?;
            if read == 0 {
                return Err(format!("{name}: the server closed during login").into());
            }
            replies.extend_from_slice(&buf[..read]);
        }
        let replies = String::from_utf8_lossy(&replies);
        let answer = replies.lines().find(|l| l.starts_with("LOGIN_RESP"));
        match answer {
            Some(answer) if answer.contains("\"OK\"") => Ok(stream),
            _ => Err(format!("{name}: login refused: {replies:?}").into()),
        }
    };
    tokio::time::timeout(LOGIN_TIMEOUT, login)
        .await
        .map_err(|_| format!("{name}: no LOGIN_RESP within {LOGIN_TIMEOUT:?}"))?
}

/// A KV connection over TLS, logged in to a first-use account.
async fn kv_login(
    addr: SocketAddr,
    client_tls: Arc<rustls::ClientConfig>,
    i: usize,
) -> Result<Client, BenchError> {
    let name = ServerName::try_from("127.0.0.1")?;
    let mut client = Client::connect(addr, client_tls, name, Dialect::Spec)
        .await
        .map_err(|e| format!("connection {i}: {e}"))?;
    // First-use accounts: the server stores the hash, no PBKDF2.
    client
        .login(&format!("idle-{i}"), &[7; 32])
        .await
        .map_err(|e| format!("connection {i}: {e}"))?;
    Ok(client)
}
