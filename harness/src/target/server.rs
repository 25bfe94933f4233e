//! A server under test that the harness starts itself (`harness run --exec`, `harness grade`):
//! a free port, a fresh working directory, the command in its own process group, a bounded
//! wait until the port answers, and the checks that tell a crashed or hung server from one
//! that merely answers wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::expand_command;
use super::output::{Exit, Output, OutputWatch};
use super::process::{Process, SpawnError};
use crate::transport::Transport;

/// How long a started server may take to accept a connection.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the liveness probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Lines of the server's output a failure shows.
pub const LOG_SHOWN: usize = 12;
/// How often the harness tries the port while the server starts.
const POLL: Duration = Duration::from_millis(20);

/// How to tell that a server still answers, per protocol.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// A TLS handshake completes.
    Tls,
    /// The server speaks first: some bytes arrive.
    Greeting,
    /// Bytes sent (built by the function) get some bytes back.
    Request(fn() -> Vec<u8>),
}

/// What to start, and how.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Shell command with `{port}`, `{host}`, `{addr}` and `{NAME}` for each of `vars`
    /// (`{dir}`, the submission's folder, in `harness grade`).
    pub command: String,
    pub vars: BTreeMap<String, String>,
    pub startup_timeout: Duration,
    /// Consecutive ports the server may use from `{port}` on (the chat server's data
    /// channel is the port after its own).
    pub ports: u16,
}

/// Why a server is not running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("{0}")]
    Command(String),
    #[error("cannot make a working directory: {0}")]
    WorkDir(std::io::Error),
    #[error("cannot find a free port: {0}")]
    Port(std::io::Error),
    #[error("the target ended ({exit}) before it accepted a connection on port {port}")]
    Exited {
        exit: Exit,
        port: u16,
        log: Vec<String>,
    },
    #[error("the target did not accept a connection on port {port} within {}", humantime::format_duration(*.after))]
    NoPort {
        port: u16,
        after: Duration,
        log: Vec<String>,
    },
}

impl StartError {
    /// What the server printed before it failed to start.
    pub fn log(&self) -> &[String] {
        match self {
            StartError::Exited { log, .. } | StartError::NoPort { log, .. } => log,
            _ => &[],
        }
    }
}

/// A server started by the harness, stopped (with its whole process group) by [`stop`].
///
/// [`stop`]: ManagedServer::stop
#[derive(Debug)]
pub struct ManagedServer {
    process: Process,
    pub addr: SocketAddr,
    /// The command as run, for reports.
    pub command: String,
    ports: u16,
    started: Instant,
    _workdir: tempfile::TempDir,
}

impl ManagedServer {
    /// Starts the server on a free loopback port and waits until the port accepts a
    /// connection, the server exits, or the startup timeout passes. A server that exits at
    /// once gets a second try on another port: another program may have taken the first
    /// between the harness's check and the server's bind.
    pub async fn start(spec: &ServerSpec) -> Result<Self, StartError> {
        match Self::start_once(spec).await {
            Err(StartError::Exited { .. }) => Self::start_once(spec).await,
            other => other,
        }
    }

    async fn start_once(spec: &ServerSpec) -> Result<Self, StartError> {
        let port = free_ports(spec.ports).map_err(StartError::Port)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let command =
            expand_command(&spec.command, addr, &spec.vars).map_err(StartError::Command)?;
        let workdir = tempfile::Builder::new()
            .prefix("harness-target-")
            .tempdir()
            .map_err(StartError::WorkDir)?;
        let process = Process::spawn(&command, Some(workdir.path()))?;
        let server = ManagedServer {
            process,
            addr,
            command,
            ports: spec.ports,
            started: Instant::now(),
            _workdir: workdir,
        };
        let deadline = Instant::now() + spec.startup_timeout;
        loop {
            if let Some(exit) = server.exit() {
                let log = server.log_tail(LOG_SHOWN);
                server.stop().await;
                return Err(StartError::Exited { exit, port, log });
            }
            if let Ok(Ok(_)) = tokio::time::timeout(POLL * 5, TcpStream::connect(addr)).await {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                let log = server.log_tail(LOG_SHOWN);
                server.stop().await;
                return Err(StartError::NoPort {
                    port,
                    after: spec.startup_timeout,
                    log,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// How the server ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        self.process.watch().with(|o| o.exit.map(|(_, e)| e))
    }

    /// What it printed and whether it ended.
    pub fn watch(&self) -> OutputWatch {
        self.process.watch()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The last `n` lines it printed, each `stdout | ...` or `stderr | ...`.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        self.watch().with(|o| log_lines(o, None, n))
    }

    /// Stops the whole process group (TERM, then KILL) and removes the working directory.
    pub async fn stop(self) {
        let port = self.addr.port();
        self.process.stop().await;
        release_ports(port, self.ports);
    }
}

/// Lines of `output`, each with its stream, at or after `since` if given: the last `n`.
pub fn log_lines(output: &Output, since: Option<Instant>, n: usize) -> Vec<String> {
    let lines: Vec<String> = output
        .lines
        .iter()
        .filter(|l| since.is_none_or(|t| l.at >= t))
        .map(|l| {
            let stream = if l.stderr { "stderr" } else { "stdout" };
            format!("{stream} | {}", l.text)
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Ports handed to servers this process started and not yet stopped.
static PORTS: std::sync::Mutex<Ports> = std::sync::Mutex::new(Ports {
    next: None,
    taken: Vec::new(),
});

struct Ports {
    /// Where the search for the next block starts, as an offset into the range.
    next: Option<u32>,
    taken: Vec<u16>,
}

/// `count` consecutive ports for a server to listen on (a protocol may use the port after
/// its main one): free now, not handed to another server of this process still running,
/// and below the kernel's ephemeral range, so that no outgoing connection (the harness makes
/// many) takes one between the check and the server's bind.
fn free_ports(count: u16) -> std::io::Result<u16> {
    let count = count.max(1);
    let (low, high) = port_range();
    let mut ports = PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let span = u32::from(high - low) + 1 - u32::from(count - 1);
    // Each search starts at a fresh pseudo-random place (the clock and the process), so that
    // harness processes running side by side (shards, tests) seldom check the same port in
    // the moment between one's check and its server's bind.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut next = (nanos ^ std::process::id().wrapping_mul(2_654_435_761))
        .wrapping_add(ports.next.unwrap_or(0).wrapping_mul(40_503))
        % span;
    for _ in 0..span {
        let first = low + u16::try_from(next % span).unwrap_or(0);
        next = (next + 1) % span;
        let block: Vec<u16> = (first..first + count).collect();
        if block.iter().any(|p| ports.taken.contains(p)) {
            continue;
        }
        if block
            .iter()
            .all(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            ports.taken.extend(&block);
            ports.next = Some(next + count as u32 - 1);
            return Ok(first);
        }
    }
    ports.next = Some(next);
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {count} free consecutive ports between {low} and {high}"),
    ))
}

/// Gives a server's ports back once it is stopped.
fn release_ports(first: u16, count: u16) {
    let mut ports = PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ports
        .taken
        .retain(|&p| p < first || p >= first.saturating_add(count.max(1)));
}

/// The ports servers get: from 20000 up to the start of the ephemeral range (Linux's
/// `ip_local_port_range`; 32768 where it cannot be read).
fn port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 21_000 {
        (20_000, ephemeral_low - 1)
    } else {
        (
            ephemeral_low.saturating_sub(1000).max(1024),
            ephemeral_low.max(1025) - 1,
        )
    }
}

/// Whether the server at `addr` still answers as the protocol's probe says, within
/// [`PROBE_TIMEOUT`]. A connection the kernel completes but the program never serves does
/// not count: the probe waits for the program itself.
pub async fn answers(addr: SocketAddr, probe: Probe, transport: &Transport) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        match probe {
            Probe::Tls => {
                let Transport::Tls {
                    config,
                    server_name,
                } = transport
                else {
                    return Some(());
                };
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                connector.connect(server_name.clone(), tcp).await.ok()?;
                Some(())
            }
            Probe::Greeting => {
                let mut buf = [0u8; 256];
                (tcp.read(&mut buf).await.ok()? > 0).then_some(())
            }
            Probe::Request(bytes) => {
                tcp.write_all(&bytes()).await.ok()?;
                let mut buf = [0u8; 256];
                (tcp.read(&mut buf).await.ok()? > 0).then_some(())
            }
        }
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
        Ok(Some(()))
    )
}

/// `dir` as an absolute path, for `{dir}`.
pub fn absolute(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, startup: Duration) -> ServerSpec {
        ServerSpec {
            command: command.to_owned(),
            vars: BTreeMap::new(),
            startup_timeout: startup,
            ports: 1,
        }
    }

    #[tokio::test]
    async fn a_command_that_exits_did_not_start() {
        let err = ManagedServer::start(&spec(
            "echo no such file >&2; exit 2 # {port}",
            Duration::from_secs(5),
        ))
        .await
        .expect_err("it exits");
        assert!(
            matches!(
                err,
                StartError::Exited {
                    exit: Exit::Code(2),
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.log(), ["stderr | no such file"]);
    }

    #[tokio::test]
    async fn a_command_that_never_listens_did_not_start() {
        let started = Instant::now();
        let err = ManagedServer::start(&spec("sleep 30 # {port}", Duration::from_millis(300)))
            .await
            .expect_err("it never listens");
        assert!(matches!(err, StartError::NoPort { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
