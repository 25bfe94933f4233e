//! The grading client: what the course's test client did, with every answer checked.
//!
//! ```text
//! every client (4 by default, all at once, one task each)
//!   connect; send its name "Client<k>"; read the UUID, which must be
//!     uuid3(URL, "<ip>:<port>") of the client's own address
//!   wait until every client has its UUID (or has given up)
//!   its requests (6 by default: a third of each kind, in random order):
//!     FIBONACCI, pause, n             expect <fib(n)>_<uuid>
//!     FACTORIAL, pause, n             expect <n!>_<uuid>
//!     FILE, pause, LEN, pause, TEXT   expect <words>_<uuid>
//!   COMPLETE, and expect the server to close
//! ```
//!
//! Messages carry no line end and are separated by pauses (`pause`, 100 ms), as the
//! course's client sent them; `newlines` ends every message but the text with `\n`
//! instead (and pauses only if asked). An answer is complete when it has as many bytes as
//! the expected one (anything already behind it is taken too, so a stray `\n` shows), or
//! when nothing more has come for `quiet` after its first byte. An answer that does not
//! come within `timeout`, or a closed connection, ends that client: its other requests
//! are not sent. The expected UUID comes from the client's own address, which is what
//! the server sees unless a NAT or a proxy sits between them.
//!
//! The requests are drawn from `seed`: of each kind, a client's first request is small
//! (fib n in 3..=30, n! in 0..=20, a text of 3 to 30 words) and the others large (fib n in
//! 31..=1000, n! in 21..=200, a text of 1,500 to 4,000 bytes, so that it spans several
//! `recv(1024)`s). Texts are single-spaced words on one line ([`TextStyle::Plain`], on which
//! Python's `split()` and `split(' ')` agree) or mix runs of spaces, tabs and line ends
//! ([`TextStyle::Mixed`]).
//!
//! Scoring, out of 40, per kind (Fibonacci 10, factorial 10, word count 20): the full
//! points if every client got every request of that kind right, half if at least one
//! client did ("single client" / "multiple clients" handling), else none. The summary
//! counts the right answers per kind, as the course's client printed it:
//!
//! ```text
//! Fib 8, Fact 8, Word 8
//! -----
//! Total points 40/40
//! -----
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::codec::{FibConvention, client_uuid, factorial, fibonacci, uuid_name, word_count};
#[doc(hidden)]
pub use super::fault::{ClientFault, ClientFaults};

/// Default number of concurrent clients.
pub const DEFAULT_CLIENTS: usize = 4;
/// Default requests per client (two of each kind).
pub const DEFAULT_REQUESTS: usize = 6;
/// Most concurrent clients.
pub const MAX_CLIENTS: usize = 4096;
/// Most requests per client.
pub const MAX_REQUESTS: usize = 3000;
/// Default pause between the messages of a request.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(100);
/// Default time the server has to connect and to start each answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default silence that ends an answer shorter than, or different from, the expected one.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(50);
/// Default time the server has to close the connection after `COMPLETE`.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Points of the whole run.
pub const MAX_POINTS: u32 = 40;
/// Bytes one read takes.
const READ_CHUNK: usize = 64 * 1024;
/// Longest received text quoted in a line of output.
const QUOTE_MAX: usize = 100;

/// The three kinds of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Fibonacci,
    Factorial,
    WordCount,
}

impl Kind {
    /// In the order the summary lists them.
    pub const ALL: [Kind; 3] = [Kind::Fibonacci, Kind::Factorial, Kind::WordCount];

    /// The name in the client's output: `FIBONACCI`, `FACTORIAL`, `WORD_COUNT`.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Fibonacci => "FIBONACCI",
            Kind::Factorial => "FACTORIAL",
            Kind::WordCount => "WORD_COUNT",
        }
    }

    /// The name in the summary: `Fib`, `Fact`, `Word`.
    pub const fn short(self) -> &'static str {
        match self {
            Kind::Fibonacci => "Fib",
            Kind::Factorial => "Fact",
            Kind::WordCount => "Word",
        }
    }

    /// The points of this kind: 10, 10, 20 (the course's weights).
    pub const fn max_points(self) -> u32 {
        match self {
            Kind::Fibonacci | Kind::Factorial => 10,
            Kind::WordCount => 20,
        }
    }
}

/// What the texts of word counts look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextStyle {
    /// Words of letters separated by single spaces, on one line (as the course's
    /// `A B C D E F G H I J`): every sensible way of counting agrees.
    #[default]
    Plain,
    /// Runs of spaces, tabs and line ends between words, and blanks at the ends, so that
    /// counting spaces or splitting on single spaces gives another number.
    Mixed,
}

/// One request of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Fibonacci(u64),
    Factorial(u64),
    /// The text whose words are counted.
    WordCount(Vec<u8>),
}

impl Request {
    pub fn kind(&self) -> Kind {
        match self {
            Request::Fibonacci(_) => Kind::Fibonacci,
            Request::Factorial(_) => Kind::Factorial,
            Request::WordCount(_) => Kind::WordCount,
        }
    }

    /// The right answer's value (without the UUID).
    pub fn value(&self, fib: FibConvention) -> String {
        match self {
            Request::Fibonacci(n) => fibonacci(*n, fib).to_string(),
            Request::Factorial(n) => factorial(*n).to_string(),
            Request::WordCount(text) => word_count(text).to_string(),
        }
    }

    /// A short description: `fib(7)`, `6!`, `the words of 19 bytes`.
    pub fn describe(&self) -> String {
        match self {
            Request::Fibonacci(n) => format!("fib({n})"),
            Request::Factorial(n) => format!("{n}!"),
            Request::WordCount(text) => format!("the words of a text of {} bytes", text.len()),
        }
    }
}

/// Configuration of a grading run. [`ClientConfig::new`] gives the course's defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Concurrent clients, 1..=[`MAX_CLIENTS`].
    pub clients: usize,
    /// Requests per client: a positive multiple of 3, at most [`MAX_REQUESTS`].
    pub requests: usize,
    /// Which Fibonacci number `n` names.
    pub fib: FibConvention,
    /// Seed of the requests: the same seed, the same requests.
    pub seed: u64,
    /// Pause between the messages of a request.
    pub pause: Duration,
    /// End every message (but a text) with `\n`.
    pub newlines: bool,
    /// What the texts look like.
    pub texts: TextStyle,
    /// Time the server has to accept a connection and to start each answer.
    pub timeout: Duration,
    /// Silence that ends an answer shorter than, or different from, the expected one.
    pub quiet: Duration,
    /// Time the server has to close the connection after `COMPLETE`.
    pub close_timeout: Duration,
    #[doc(hidden)]
    pub faults: ClientFaults,
}

impl ClientConfig {
    /// The course's run against `addr`: 4 clients, 6 requests each, pauses of 100 ms, no
    /// line ends, zero-based Fibonacci numbers, seed 0.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            clients: DEFAULT_CLIENTS,
            requests: DEFAULT_REQUESTS,
            fib: FibConvention::ZeroBased,
            seed: 0,
            pause: DEFAULT_PAUSE,
            newlines: false,
            texts: TextStyle::Plain,
            timeout: DEFAULT_TIMEOUT,
            quiet: DEFAULT_QUIET,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            faults: ClientFaults::NONE,
        }
    }

    /// Checks the counts and timers.
    pub fn validate(&self) -> Result<(), GradeError> {
        let invalid = |text: String| Err(GradeError::Config(text));
        if !(1..=MAX_CLIENTS).contains(&self.clients) {
            return invalid(format!("{} clients: give 1 to {MAX_CLIENTS}", self.clients));
        }
        if self.requests == 0 || !self.requests.is_multiple_of(3) || self.requests > MAX_REQUESTS {
            return invalid(format!(
                "{} requests per client: give a multiple of 3 (as many of each kind), from 3 \
                 to {MAX_REQUESTS}",
                self.requests
            ));
        }
        for (value, name) in [
            (self.timeout, "the timeout"),
            (self.quiet, "the quiet time"),
            (self.close_timeout, "the close timeout"),
        ] {
            if value.is_zero() {
                return invalid(format!("{name} must be more than zero"));
            }
        }
        Ok(())
    }
}

/// A grading run that could not take place.
#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// Not one client could connect.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the lines the client prints as it goes are sent.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// How one request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The expected answer, exactly.
    Okay,
    /// Another answer.
    Wrong,
    /// Nothing within the timeout.
    TimedOut,
    /// The connection closed (or failed) before the answer.
    Closed,
    /// Not sent: the client had stopped.
    NotSent,
}

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct RequestResult {
    pub request: Request,
    /// The expected answer, `<value>_<uuid>`.
    pub expected: String,
    /// What arrived, if anything.
    pub received: Vec<u8>,
    pub verdict: Verdict,
    /// From the first byte sent to the answer's last byte (pauses included).
    pub latency: Option<Duration>,
}

/// How one client went.
#[derive(Debug, Clone)]
pub struct ClientResult {
    /// `Client1`, `Client2`, ...
    pub name: String,
    /// The client's own address, if it connected.
    pub local: Option<SocketAddr>,
    /// The UUID the server should have sent, if the client connected.
    pub expected_uuid: Option<String>,
    /// What the server sent as the UUID.
    pub received_uuid: Vec<u8>,
    pub requests: Vec<RequestResult>,
    /// Complaints that cost no points (the close after `COMPLETE`).
    pub warnings: Vec<String>,
}

impl ClientResult {
    /// Whether the UUID the server sent is the expected one.
    pub fn uuid_ok(&self) -> bool {
        self.expected_uuid
            .as_ref()
            .is_some_and(|uuid| uuid.as_bytes() == self.received_uuid)
    }
}

/// The score of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindScore {
    pub kind: Kind,
    /// Right answers.
    pub correct: usize,
    /// Requests of this kind over all clients.
    pub total: usize,
    /// Clients that got every request of this kind right.
    pub clients_correct: usize,
    pub points: u32,
}

/// The outcome of a grading run.
#[derive(Debug, Clone)]
pub struct Report {
    pub clients: Vec<ClientResult>,
}

impl Report {
    /// The score of `kind`.
    pub fn score(&self, kind: Kind) -> KindScore {
        let mut score = KindScore {
            kind,
            correct: 0,
            total: 0,
            clients_correct: 0,
            points: 0,
        };
        for client in &self.clients {
            let mine: Vec<_> = client
                .requests
                .iter()
                .filter(|r| r.request.kind() == kind)
                .collect();
            let right = mine.iter().filter(|r| r.verdict == Verdict::Okay).count();
            score.total += mine.len();
            score.correct += right;
            if !mine.is_empty() && right == mine.len() {
                score.clients_correct += 1;
            }
        }
        score.points = if score.clients_correct == 0 {
            0
        } else if score.clients_correct == self.clients.len() {
            kind.max_points()
        } else {
            kind.max_points() / 2
        };
        score
    }

    /// The points, out of [`MAX_POINTS`].
    pub fn points(&self) -> u32 {
        Kind::ALL.into_iter().map(|k| self.score(k).points).sum()
    }

    /// The summary the course's client printed:
    /// `Fib 8, Fact 8, Word 8\n-----\nTotal points 40/40\n-----\n`.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = Kind::ALL
            .into_iter()
            .map(|k| format!("{} {}", k.short(), self.score(k).correct))
            .collect();
        format!(
            "{}\n-----\nTotal points {}/{MAX_POINTS}\n-----\n",
            counts.join(", "),
            self.points()
        )
    }

    /// Every answer's latency.
    pub fn latencies(&self) -> Vec<Duration> {
        self.clients
            .iter()
            .flat_map(|c| c.requests.iter().filter_map(|r| r.latency))
            .collect()
    }
}

/// A small, seedable, portable random number generator (SplitMix64): the same seed gives
/// the same requests on every machine and in every version.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        let span = u128::from(high - low) + 1;
        low + ((u128::from(self.next_u64()) * span) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64 - 1) as usize
    }
}

/// The requests of every client, drawn from `seed` (see the module documentation).
pub fn plan(seed: u64, clients: usize, requests: usize, texts: TextStyle) -> Vec<Vec<Request>> {
    let mut master = Rng(seed);
    (0..clients)
        .map(|_| {
            let mut rng = Rng(master.next_u64());
            let mut kinds: Vec<Kind> = Kind::ALL
                .into_iter()
                .flat_map(|k| std::iter::repeat_n(k, requests / 3))
                .collect();
            for i in (1..kinds.len()).rev() {
                let j = rng.index(i + 1);
                kinds.swap(i, j);
            }
            let mut seen = Vec::new();
            kinds
                .into_iter()
                .map(|kind| {
                    let small = !seen.contains(&kind);
                    seen.push(kind);
                    draw(kind, small, texts, &mut rng)
                })
                .collect()
        })
        .collect()
}

fn draw(kind: Kind, small: bool, texts: TextStyle, rng: &mut Rng) -> Request {
    match (kind, small) {
        (Kind::Fibonacci, true) => Request::Fibonacci(rng.range(3, 30)),
        (Kind::Fibonacci, false) => Request::Fibonacci(rng.range(31, 1000)),
        (Kind::Factorial, true) => Request::Factorial(rng.range(0, 20)),
        (Kind::Factorial, false) => Request::Factorial(rng.range(21, 200)),
        (Kind::WordCount, small) => Request::WordCount(text(small, texts, rng)),
    }
}

/// A text of words of letters: 3 to 30 words, or 1,500 to 4,000 bytes.
fn text(small: bool, style: TextStyle, rng: &mut Rng) -> Vec<u8> {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const SEPARATORS: [&[u8]; 8] = [b" ", b" ", b" ", b"  ", b"\n", b"\t", b" \n", b"   "];
    let (words, bytes) = if small {
        (rng.range(3, 30), 0)
    } else {
        (u64::MAX, rng.range(1500, 4000) as usize)
    };
    let mut text = Vec::new();
    if style == TextStyle::Mixed && rng.range(0, 1) == 1 {
        text.extend_from_slice(b"  ");
    }
    let mut count = 0;
    while count < words && (small || text.len() < bytes) {
        if count > 0 {
            let separator = match style {
                TextStyle::Plain => b" ",
                // The first separator is a double space, so split(' ') never agrees.
                TextStyle::Mixed if count == 1 => &b"  "[..],
                TextStyle::Mixed => SEPARATORS[rng.index(SEPARATORS.len())],
            };
            text.extend_from_slice(separator);
        }
        for _ in 0..rng.range(1, 8) {
            text.push(LETTERS[rng.index(LETTERS.len())]);
        }
        count += 1;
    }
    if style == TextStyle::Mixed {
        text.extend_from_slice(b"\n");
        // Counting spaces, or splitting on them, must not happen to give the right number.
        let mut counter = super::codec::WordCounter::default();
        counter.feed(&text);
        if counter.spaces() == counter.words() || counter.spaces() + 1 == counter.words() {
            text.extend_from_slice(b"Z\nZ\n");
        }
    }
    text
}

/// Runs the grading: every client at once, each line of progress sent to `log` as it
/// happens. Fails only if the configuration is unusable or no client could connect.
pub async fn grade(config: &ClientConfig, log: Log) -> Result<Report, GradeError> {
    config.validate()?;
    let plans = plan(config.seed, config.clients, config.requests, config.texts);
    let barrier = Arc::new(Barrier::new(config.clients));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, requests) in plans.into_iter().enumerate() {
        let client = Client {
            name: format!("Client{}", index + 1),
            config: config.clone(),
            log: log.clone(),
        };
        let barrier = barrier.clone();
        tasks.spawn(async move { (index, client.run(requests, barrier).await) });
    }
    let mut results: Vec<Option<(ClientResult, Option<std::io::Error>)>> =
        (0..config.clients).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            Err(e) => return Err(GradeError::Config(format!("a client task failed: {e}"))),
        }
    }
    let mut clients = Vec::with_capacity(config.clients);
    let mut connect_error = None;
    for (result, error) in results.into_iter().flatten() {
        connect_error = connect_error.or(error);
        clients.push(result);
    }
    if clients.iter().all(|c| c.local.is_none()) {
        return Err(GradeError::Connect {
            addr: config.addr,
            source: connect_error.unwrap_or_else(|| std::io::ErrorKind::NotConnected.into()),
        });
    }
    Ok(Report { clients })
}

/// One client of a run.
struct Client {
    name: String,
    config: ClientConfig,
    log: Log,
}

/// One message of a request.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    /// A command, number or length: `\n` follows in newline mode.
    Token(&'a [u8]),
    /// A text, sent as it is.
    Text(&'a [u8]),
}

/// How a read for an answer ended.
enum Received {
    /// Bytes arrived (maybe the wrong ones).
    Answer(Vec<u8>),
    TimedOut,
    Closed,
}

impl Client {
    fn say(&self, text: impl fmt::Display) {
        (self.log)(format!("[{}] {text}", self.name));
    }

    /// Connects, gets the UUID, waits for the others at `barrier`, sends `requests`, then
    /// `COMPLETE`. Returns the connection error if it could not connect.
    async fn run(
        self,
        requests: Vec<Request>,
        barrier: Arc<Barrier>,
    ) -> (ClientResult, Option<std::io::Error>) {
        let mut result = ClientResult {
            name: self.name.clone(),
            local: None,
            expected_uuid: None,
            received_uuid: Vec::new(),
            requests: Vec::with_capacity(requests.len()),
            warnings: Vec::new(),
        };
        let (stream, error) = match self.handshake(&mut result).await {
            Ok(stream) => (stream, None),
            Err(error) => (None, error),
        };
        // Every client has its UUID before any request, as in the course's client.
        barrier.wait().await;
        let Some(mut stream) = stream else {
            self.not_sent(&mut result, requests);
            return (result, error);
        };
        let uuid = result.expected_uuid.clone().unwrap_or_default();
        let mut requests = requests.into_iter();
        for request in requests.by_ref() {
            let outcome = self.request(&mut stream, request, &uuid).await;
            let alive = matches!(outcome.verdict, Verdict::Okay | Verdict::Wrong);
            result.requests.push(outcome);
            if !alive {
                // No answer: the connection is out of step or gone.
                self.not_sent(&mut result, requests);
                return (result, None);
            }
        }
        self.complete(&mut stream, &mut result).await;
        (result, None)
    }

    /// Connects, sends the name and reads the UUID. `Ok(None)`: connected, but the
    /// connection is of no more use.
    async fn handshake(
        &self,
        result: &mut ClientResult,
    ) -> Result<Option<TcpStream>, Option<std::io::Error>> {
        let addr = self.config.addr;
        let connected = tokio::time::timeout(self.config.timeout, TcpStream::connect(addr)).await;
        let mut stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.say(format_args!("Cannot connect to {addr}: {e}"));
                return Err(Some(e));
            }
            Err(_) => {
                self.say(format_args!(
                    "Cannot connect to {addr}: timed out after {:?}",
                    self.config.timeout
                ));
                return Err(Some(std::io::ErrorKind::TimedOut.into()));
            }
        };
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => return Err(Some(e)),
        };
        result.local = Some(local);
        self.say(format_args!("Socket connected to {addr}"));
        let expected = client_uuid(local).to_string();
        result.expected_uuid = Some(expected.clone());
        if let Err(e) = self
            .send(&mut stream, &[Part::Token(self.name.as_bytes())])
            .await
        {
            self.say(format_args!("Cannot send the name: {e}"));
            return Ok(None);
        }
        match self.receive(&mut stream, expected.as_bytes()).await {
            Received::Answer(got) => {
                result.received_uuid = got;
                if result.uuid_ok() {
                    self.say(format_args!("UUID: {expected}"));
                } else {
                    self.say(format_args!(
                        "UUID: {} (wrong: expected {expected}, uuid3 of the URL \"{}\")",
                        quote(&result.received_uuid),
                        uuid_name(local)
                    ));
                }
                Ok(Some(stream))
            }
            Received::TimedOut => {
                self.say(format_args!(
                    "No UUID: nothing came within {:?}",
                    self.config.timeout
                ));
                Ok(None)
            }
            Received::Closed => {
                self.say("No UUID: the server closed the connection");
                Ok(None)
            }
        }
    }

    /// Records `requests` as not sent, in one line of output.
    fn not_sent(&self, result: &mut ClientResult, requests: impl IntoIterator<Item = Request>) {
        let mut labels = Vec::new();
        for request in requests {
            labels.push(request.kind().label());
            result.requests.push(RequestResult {
                expected: String::new(),
                request,
                received: Vec::new(),
                verdict: Verdict::NotSent,
                latency: None,
            });
        }
        if !labels.is_empty() {
            self.say(format_args!("Not sent: {}", labels.join(", ")));
        }
    }

    /// Sends one request and checks its answer.
    async fn request(&self, stream: &mut TcpStream, request: Request, uuid: &str) -> RequestResult {
        let mut value = request.value(self.config.fib);
        if self.config.faults.has(ClientFault::WrongExpectedFib)
            && let Request::Fibonacci(n) = request
        {
            value = fibonacci(n + 1, self.config.fib).to_string();
        }
        let expected = format!("{value}_{uuid}");
        let start = Instant::now();
        let sent = match &request {
            Request::Fibonacci(n) => {
                let n = n.to_string();
                self.send(
                    stream,
                    &[Part::Token(b"FIBONACCI"), Part::Token(n.as_bytes())],
                )
                .await
            }
            Request::Factorial(n) => {
                let n = n.to_string();
                self.send(
                    stream,
                    &[Part::Token(b"FACTORIAL"), Part::Token(n.as_bytes())],
                )
                .await
            }
            Request::WordCount(text) => {
                let len = text.len().to_string();
                let parts = [
                    Part::Token(b"FILE"),
                    Part::Token(len.as_bytes()),
                    Part::Text(text),
                ];
                self.send(stream, &parts).await
            }
        };
        let label = request.kind().label();
        let mut outcome = RequestResult {
            expected,
            request,
            received: Vec::new(),
            verdict: Verdict::Closed,
            latency: None,
        };
        if let Err(e) = sent {
            self.say(format_args!("{label} Not answered: cannot send ({e})"));
            return outcome;
        }
        match self.receive(stream, outcome.expected.as_bytes()).await {
            Received::Answer(got) => {
                outcome.latency = Some(start.elapsed());
                if got == outcome.expected.as_bytes() {
                    outcome.verdict = Verdict::Okay;
                    self.say(format_args!("{label} Okay"));
                } else {
                    outcome.verdict = Verdict::Wrong;
                    let (expected, received) = quote_difference(outcome.expected.as_bytes(), &got);
                    self.say(format_args!(
                        "{label} Wrong: {} should be {expected}, got {received}",
                        outcome.request.describe(),
                    ));
                }
                outcome.received = got;
            }
            Received::TimedOut => {
                outcome.verdict = Verdict::TimedOut;
                self.say(format_args!(
                    "{label} Not answered: nothing came within {:?} ({})",
                    self.config.timeout,
                    outcome.request.describe()
                ));
            }
            Received::Closed => {
                self.say(format_args!(
                    "{label} Not answered: the server closed the connection"
                ));
            }
        }
        outcome
    }

    /// Sends `COMPLETE` and checks that the server closes.
    async fn complete(&self, stream: &mut TcpStream, result: &mut ClientResult) {
        if self.config.faults.has(ClientFault::SkipsComplete) {
            return;
        }
        if self
            .send(stream, &[Part::Token(b"COMPLETE")])
            .await
            .is_err()
        {
            return;
        }
        let mut extra = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let deadline = Instant::now() + self.config.close_timeout;
        let warning = loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) if extra.is_empty() => break None,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    break Some(format!("the server sent {} after COMPLETE", quote(&extra)));
                }
                Ok(Ok(n)) if extra.len() < READ_CHUNK => extra.extend_from_slice(&chunk[..n]),
                Ok(Ok(_)) => {}
                Err(_) if extra.is_empty() => {
                    break Some(format!(
                        "the server did not close the connection within {:?} after COMPLETE",
                        self.config.close_timeout
                    ));
                }
                Err(_) => {
                    break Some(format!(
                        "the server sent {} after COMPLETE and did not close the connection",
                        quote(&extra)
                    ));
                }
            }
        };
        if let Some(warning) = warning {
            self.say(format_args!("COMPLETE: {warning}"));
            result.warnings.push(warning);
        }
    }

    /// Writes the messages of a request, pausing between them (unless a fault says not
    /// to); in newline mode every token ends with `\n`.
    async fn send(&self, stream: &mut TcpStream, parts: &[Part<'_>]) -> std::io::Result<()> {
        let without_pause = self.config.faults.has(ClientFault::SendsWithoutPause);
        let mut joined = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let message = match *part {
                Part::Token(token) if self.config.newlines => [token, b"\n"].concat(),
                Part::Token(bytes) | Part::Text(bytes) => bytes.to_vec(),
            };
            if without_pause {
                joined.extend_from_slice(&message);
                continue;
            }
            if i > 0 && !self.config.pause.is_zero() {
                tokio::time::sleep(self.config.pause).await;
            }
            stream.write_all(&message).await?;
        }
        if !joined.is_empty() {
            stream.write_all(&joined).await?;
        }
        Ok(())
    }

    /// Reads one answer: see the module documentation.
    async fn receive(&self, stream: &mut TcpStream, expected: &[u8]) -> Received {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let deadline = Instant::now() + self.config.timeout;
        loop {
            if buf.len() >= expected.len() {
                // Whatever has already arrived behind it belongs to this answer too.
                while buf.len() < expected.len() + READ_CHUNK {
                    match stream.try_read(&mut chunk) {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                return Received::Answer(buf);
            }
            let read = if buf.is_empty() {
                tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await
            } else {
                tokio::time::timeout(self.config.quiet, stream.read(&mut chunk)).await
            };
            match read {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) if buf.is_empty() => return Received::Closed,
                Err(_) if buf.is_empty() => return Received::TimedOut,
                Ok(_) | Err(_) => return Received::Answer(buf),
            }
        }
    }
}

/// Bytes as a quoted, escaped string, cut after [`QUOTE_MAX`] bytes.
fn quote(bytes: &[u8]) -> String {
    quote_window(bytes, 0)
}

/// `bytes[start..]`, at most [`QUOTE_MAX`] of them, quoted and escaped, with `...` where
/// something is left out and the length when anything is.
fn quote_window(bytes: &[u8], start: usize) -> String {
    let start = start.min(bytes.len());
    let end = bytes.len().min(start + QUOTE_MAX);
    let window = String::from_utf8_lossy(&bytes[start..end]);
    let mut quoted = String::new();
    if start > 0 {
        quoted.push_str("...");
    }
    quoted.push_str(&format!("\"{}\"", window.escape_debug()));
    if end < bytes.len() {
        quoted.push_str("...");
    }
    if start > 0 || end < bytes.len() {
        quoted.push_str(&format!(" ({} bytes)", bytes.len()));
    }
    quoted
}

/// Both sides quoted from a little before the first byte where they differ, so that a
/// long answer shows where it goes wrong.
fn quote_difference(expected: &[u8], got: &[u8]) -> (String, String) {
    let same = expected.iter().zip(got).take_while(|(a, b)| a == b).count();
    let longer = expected.len().max(got.len());
    let start = same
        .saturating_sub(20)
        .min(longer.saturating_sub(QUOTE_MAX));
    (quote_window(expected, start), quote_window(got, start))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn plans_repeat_and_hold_two_of_each_kind() {
        let a = plan(7, 4, 6, TextStyle::Plain);
        assert_eq!(a, plan(7, 4, 6, TextStyle::Plain));
        assert_ne!(a, plan(8, 4, 6, TextStyle::Plain));
        for requests in &a {
            for kind in Kind::ALL {
                let mine: Vec<_> = requests.iter().filter(|r| r.kind() == kind).collect();
                assert_eq!(mine.len(), 2);
                // The first of each kind is small, the second large.
                match (mine[0], mine[1]) {
                    (Request::Fibonacci(a), Request::Fibonacci(b)) => {
                        assert!((3..=30).contains(a) && (31..=1000).contains(b));
                    }
                    (Request::Factorial(a), Request::Factorial(b)) => {
                        assert!(*a <= 20 && (21..=200).contains(b));
                    }
                    (Request::WordCount(a), Request::WordCount(b)) => {
                        assert!(a.len() < 1024 && b.len() > 1024, "{} {}", a.len(), b.len());
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn plain_texts_are_single_spaced_words() {
        for seed in 0..50 {
            for request in plan(seed, 2, 6, TextStyle::Plain).concat() {
                if let Request::WordCount(text) = request {
                    let words = word_count(&text);
                    let spaces = text.iter().filter(|&&b| b == b' ').count() as u64;
                    assert_eq!(spaces + 1, words);
                    assert!(text.iter().all(|b| b.is_ascii_alphabetic() || *b == b' '));
                }
            }
        }
    }

    #[test]
    fn mixed_texts_tell_the_miscounts_apart() {
        for seed in 0..200 {
            for request in plan(seed, 2, 6, TextStyle::Mixed).concat() {
                if let Request::WordCount(text) = request {
                    let words = word_count(&text);
                    let spaces = text.iter().filter(|&&b| b == b' ').count() as u64;
                    assert!(spaces != words && spaces + 1 != words, "{text:?}");
                    if text.len() > 1024 {
                        assert!(word_count(&text[..1024]) < words);
                    }
                }
            }
        }
    }

    fn result(verdicts: &[(Kind, bool)]) -> ClientResult {
        ClientResult {
            name: "Client1".into(),
            local: None,
            expected_uuid: None,
            received_uuid: Vec::new(),
            requests: verdicts
                .iter()
                .map(|&(kind, ok)| RequestResult {
                    request: match kind {
                        Kind::Fibonacci => Request::Fibonacci(3),
                        Kind::Factorial => Request::Factorial(3),
                        Kind::WordCount => Request::WordCount(b"a".to_vec()),
                    },
                    expected: String::new(),
                    received: Vec::new(),
                    verdict: if ok { Verdict::Okay } else { Verdict::Wrong },
                    latency: None,
                })
                .collect(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn scoring_full_half_none() {
        use Kind::*;
        let all = [
            (Fibonacci, true),
            (Fibonacci, true),
            (Factorial, true),
            (Factorial, true),
            (WordCount, true),
            (WordCount, true),
        ];
        let report = Report {
            clients: vec![result(&all); 4],
        };
        assert_eq!(report.points(), 40);
        assert_eq!(
            report.summary(),
            "Fib 8, Fact 8, Word 8\n-----\nTotal points 40/40\n-----\n"
        );
        // One client gets one factorial wrong: factorials drop to half.
        let mut clients = vec![result(&all); 4];
        clients[2] = result(&[
            (Fibonacci, true),
            (Fibonacci, true),
            (Factorial, false),
            (Factorial, true),
            (WordCount, true),
            (WordCount, true),
        ]);
        let report = Report { clients };
        assert_eq!(report.score(Factorial).points, 5);
        assert_eq!(report.score(Factorial).correct, 7);
        assert_eq!(report.points(), 35);
        // Every client gets one word count wrong: none.
        let some = [
            (Fibonacci, true),
            (Fibonacci, true),
            (Factorial, true),
            (Factorial, true),
            (WordCount, true),
            (WordCount, false),
        ];
        let report = Report {
            clients: vec![result(&some); 4],
        };
        assert_eq!(report.score(WordCount).points, 0);
        assert_eq!(
            report.summary(),
            "Fib 8, Fact 8, Word 4\n-----\nTotal points 20/40\n-----\n"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(b"13_x\n"), "\"13_x\\n\"");
        let long = vec![b'7'; 150];
        assert_eq!(
            quote(&long),
            format!("\"{}\"... (150 bytes)", "7".repeat(100))
        );
        let expected = [vec![b'1'; 200], b"_abc".to_vec()].concat();
        let got = [vec![b'1'; 200], b"_abd\n".to_vec()].concat();
        let (e, g) = quote_difference(&expected, &got);
        assert!(
            e.starts_with("...\"11") && e.ends_with("1_abc\" (204 bytes)"),
            "{e}"
        );
        assert!(g.ends_with("1_abd\\n\" (205 bytes)"), "{g}");
        assert_eq!(
            quote_difference(b"13_u", b"8_u"),
            ("\"13_u\"".to_owned(), "\"8_u\"".to_owned())
        );
    }

    #[test]
    fn validation() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(ClientConfig::new(addr).validate().is_ok());
        for (clients, requests) in [(0, 6), (4, 0), (4, 5), (MAX_CLIENTS + 1, 6)] {
            let config = ClientConfig {
                clients,
                requests,
                ..ClientConfig::new(addr)
            };
            assert!(config.validate().is_err(), "{clients} {requests}");
        }
    }
}
