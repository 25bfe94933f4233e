//! The `reference mathsvc-server` and `reference mathsvc-client` commands: flags ->
//! [`ServerConfig`] / [`ClientConfig`], then [`server::run`] / [`client::grade`].

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::client::{
    self, ClientConfig, ClientFault, DEFAULT_CLIENTS, DEFAULT_REQUESTS, Log, MAX_POINTS, TextStyle,
};
use super::codec::{FibConvention, Limits, MAX_FACTORIAL_N, MAX_FIBONACCI_N, MAX_TEXT_LEN};
use super::server::{self, DEFAULT_MAX_CONNECTIONS, Fault, ServerConfig};
use crate::chat::server_cli::parse_duration;

/// Exit code of a run below full marks.
const FAILED: u8 = 1;
/// Exit code of a usage or setup error.
const SETUP: u8 = 2;

/// Which Fibonacci number `n` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FibArg {
    /// fib(0) = 0, fib(1) = 1, fib(7) = 13 (what a full-marks server answered).
    #[default]
    ZeroBased,
    /// fib(7) = 8, as the slide's example: the n-th term of 0, 1, 1, 2, ... counted from 1.
    Slide,
}

impl From<FibArg> for FibConvention {
    fn from(arg: FibArg) -> Self {
        match arg {
            FibArg::ZeroBased => FibConvention::ZeroBased,
            FibArg::Slide => FibConvention::Slide,
        }
    }
}

/// What the texts of word counts look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TextsArg {
    /// Single-spaced words on one line, as the course's client sent.
    #[default]
    Plain,
    /// Runs of spaces, tabs and line ends too (words are what Python's split() cuts).
    Mixed,
}

impl From<TextsArg> for TextStyle {
    fn from(arg: TextsArg) -> Self {
        match arg {
            TextsArg::Plain => TextStyle::Plain,
            TextsArg::Mixed => TextStyle::Mixed,
        }
    }
}

/// Run the reference math server (Fibonacci numbers, factorials, word counts).
#[derive(Debug, Args)]
#[command(
    long_about = "Run the reference math server of specs/packet-and-mathsvc.md, Task 2.\n\n\
        A client sends its name and gets its UUID (uuid3 of \"ip:port\" in the URL \
        namespace); then FIBONACCI n, FACTORIAL n and FILE LEN TEXT (or WORD_COUNT) are \
        answered <result>_<uuid>, with no line end, and COMPLETE closes the connection. \
        Messages end at a line feed, or when the client pauses for --quiet: the course's \
        client sends no line ends and pauses between writes.",
    after_help = "Examples:\n  \
        reference mathsvc-server --port 1234\n  \
        reference mathsvc-server --port 1234 --fib slide\n  \
        reference mathsvc-client --port 1234 --studentID 20200000\n\n\
        Durations: 50ms, 10s, 1.5s, 2m. Logs go to stderr; set RUST_LOG=debug to see every \
        connection. Ctrl-C stops the server after the requests in progress."
)]
pub struct ServerArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 1234)]
    pub port: u16,

    /// Address (or name) to listen on; 0.0.0.0 or :: for every interface.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Which Fibonacci number n names.
    #[arg(long, value_enum, default_value_t = FibArg::ZeroBased)]
    pub fib: FibArg,

    /// A message with no line end is complete once the client has sent nothing for this
    /// long; keep it below the client's pause between writes.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
    pub quiet: Duration,

    /// Close a connection that sends nothing for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Simultaneous connections; more are closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest n of FIBONACCI; above it: ERROR n too large (max N).
    #[arg(long, value_name = "N", default_value_t = MAX_FIBONACCI_N)]
    pub max_fibonacci: u64,

    /// Largest n of FACTORIAL; above it: ERROR n too large (max N).
    #[arg(long, value_name = "N", default_value_t = MAX_FACTORIAL_N)]
    pub max_factorial: u64,

    /// Largest text of a word count in bytes; above it: ERROR length too large, and close.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_TEXT_LEN)]
    pub max_text: u64,

    /// Make the server wrong on purpose (for testing graders and suites); repeatable.
    #[arg(long = "fault", value_name = "NAME", hide = true)]
    pub faults: Vec<Fault>,
}

impl ServerArgs {
    /// The server configuration the flags describe.
    pub fn config(&self) -> Result<ServerConfig, String> {
        let config = ServerConfig {
            fib: self.fib.into(),
            quiet: self.quiet,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            limits: Limits {
                max_fibonacci_n: self.max_fibonacci,
                max_factorial_n: self.max_factorial,
                max_text_len: self.max_text,
            },
            faults: self.faults.iter().copied().collect(),
            ..ServerConfig::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Runs the server until Ctrl-C. The exit code: 0 after a clean stop, 2 for a setup error
/// (flags, an address in use), which is printed to stderr.
pub async fn run_server(args: ServerArgs) -> u8 {
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return SETUP;
        }
    };
    let listener = match TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}:{}: {e} (is another server using the port? pick \
                 another with --port)",
                args.host, args.port
            );
            return SETUP;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(_) => format!("{}:{}", args.host, args.port),
    };
    if !config.faults.is_empty() {
        eprintln!(
            "warning: faults on purpose: {:?}",
            config.faults.iter().map(Fault::name).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "math server listening on {addr} (fib {}, quiet {:?}); Ctrl-C stops it",
        config.fib, config.quiet
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping");
    };
    match server::run(listener, config, shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            SETUP
        }
    }
}

/// Grade a math server the way the course's test client did.
#[derive(Debug, Args)]
#[command(
    long_about = "Grade a math server the way the course's test client did: several clients \
        at once, each sending its name, checking its UUID, then asking for Fibonacci \
        numbers, factorials and word counts in random order, every answer checked, and \
        COMPLETE. Prints a line per step and the score out of 40.\n\n\
        Scoring per kind (Fib 10, Fact 10, Word 20): full points if every client got every \
        request of that kind right, half if at least one client did, else none.",
    after_help = "Examples:\n  \
        reference mathsvc-client --port 1234 --studentID 20200000\n  \
        reference mathsvc-client --port 1234 --studentID 20200000 --fib slide --seed 42\n  \
        reference mathsvc-client --port 1234 --studentID 1 --newlines --pause 0ms --clients 64\n\n\
        The last lines read:\n  \
        Fib 8, Fact 8, Word 8\n  -----\n  Total points 40/40\n  -----\n\n\
        Exit codes: 0 full marks; 1 fewer points; 2 usage error, or no client could connect."
)]
pub struct ClientArgs {
    /// Port of the server.
    #[arg(long, default_value_t = 1234)]
    pub port: u16,

    /// Address or name of the server.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Student id (digits), shown in the run's header.
    #[arg(long = "studentID", value_name = "ID")]
    pub student_id: String,

    /// Clients connected at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CLIENTS)]
    pub clients: usize,

    /// Requests per client: a multiple of 3, as many of each kind.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REQUESTS)]
    pub requests: usize,

    /// Which Fibonacci number n names.
    #[arg(long, value_enum, default_value_t = FibArg::ZeroBased)]
    pub fib: FibArg,

    /// Seed of the requests; the run's header shows the one picked when not given.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Pause between the messages of a request. Default: 100ms, or none with --newlines.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub pause: Option<Duration>,

    /// End every message (but a text) with a line feed.
    #[arg(long)]
    pub newlines: bool,

    /// What the texts of word counts look like.
    #[arg(long, value_enum, default_value_t = TextsArg::Plain)]
    pub texts: TextsArg,

    /// Time the server has to accept and to start each answer.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Silence that ends an answer shorter than, or different from, the expected one.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
    pub quiet: Duration,

    /// Time the server has to close the connection after COMPLETE.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// Accepted for the course's command line (--submit=False); nothing is submitted.
    #[arg(long, value_name = "BOOL")]
    pub submit: Option<String>,

    /// Make the client wrong on purpose (for testing); repeatable.
    #[arg(long = "fault", value_name = "NAME", hide = true)]
    pub faults: Vec<ClientFault>,
}

impl ClientArgs {
    /// The grading configuration the flags describe (resolving --host).
    pub async fn config(&self) -> Result<ClientConfig, String> {
        if self.student_id.is_empty() || !self.student_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "--studentID {:?} is not a student id: give its digits, e.g. 20200000",
                self.student_id
            ));
        }
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve --host {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("--host {} resolves to no address", self.host))?;
        let config = ClientConfig {
            clients: self.clients,
            requests: self.requests,
            fib: self.fib.into(),
            seed: self.seed.unwrap_or_else(fresh_seed),
            pause: self.pause.unwrap_or(if self.newlines {
                Duration::ZERO
            } else {
                client::DEFAULT_PAUSE
            }),
            newlines: self.newlines,
            texts: self.texts.into(),
            timeout: self.timeout,
            quiet: self.quiet,
            close_timeout: self.close_timeout,
            faults: self.faults.iter().copied().collect(),
            ..ClientConfig::new(addr)
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// A seed from the clock.
fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64 ^ u64::from(std::process::id()))
}

/// Runs `reference mathsvc-client`, printing to stdout and stderr; returns the exit code.
pub async fn run_client(args: ClientArgs) -> u8 {
    run_client_with(&args, &mut std::io::stdout(), &mut std::io::stderr()).await
}

/// [`run_client`] writing to `out` (the progress lines and the summary) and `err` (the
/// header and errors). Returns 0 for full marks, 1 for fewer points, 2 for a usage error
/// or when no client could connect.
pub async fn run_client_with(
    args: &ClientArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let config = match args.config().await {
        Ok(config) => config,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return SETUP;
        }
    };
    if args
        .submit
        .as_deref()
        .is_some_and(|s| s.trim_start_matches('=').eq_ignore_ascii_case("true"))
    {
        let _ = writeln!(
            err,
            "note: --submit: nothing is submitted, the score is printed"
        );
    }
    let _ = writeln!(
        err,
        "grading {} for student {}: {} clients x {} requests, fib {}, seed {}, {}",
        config.addr,
        args.student_id,
        config.clients,
        config.requests,
        config.fib,
        config.seed,
        if config.newlines {
            format!("line ends, pause {:?}", config.pause)
        } else {
            format!("no line ends, pause {:?}", config.pause)
        }
    );
    if !config.faults.is_empty() {
        let _ = writeln!(
            err,
            "warning: faults on purpose: {:?}",
            config
                .faults
                .iter()
                .map(ClientFault::name)
                .collect::<Vec<_>>()
        );
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let log: Log = Arc::new(move |line| {
        let _ = tx.send(line);
    });
    let grading = client::grade(&config, log);
    tokio::pin!(grading);
    let result = loop {
        tokio::select! {
            result = &mut grading => break result,
            Some(line) = rx.recv() => {
                let _ = writeln!(out, "{line}");
            }
        }
    };
    while let Ok(line) = rx.try_recv() {
        let _ = writeln!(out, "{line}");
    }
    match result {
        Ok(report) => {
            let _ = write!(out, "{}", report.summary());
            let _ = out.flush();
            if report.points() == MAX_POINTS {
                0
            } else {
                FAILED
            }
        }
        Err(e @ client::GradeError::Connect { .. }) => {
            let _ = writeln!(
                err,
                "error: {e} (is the server running? check --host and --port)"
            );
            SETUP
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            SETUP
        }
    }
}
