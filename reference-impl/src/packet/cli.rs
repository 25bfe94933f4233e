//! `reference packet-server` and `reference packet-client`: flags -> configurations, then
//! [`server::run`] until Ctrl-C, or one [`client::run`] session.

use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use super::client::{self, ClientConfig, ClientFault};
use super::codec::{ChecksumMode, MAX_DATA, Pairing};
use super::server::{self, DEFAULT_MAX_CONNECTIONS, Fault, MAX_TEXT, ServerConfig};
use super::store::ScoreStore;
use crate::chat::server_cli::parse_duration;

/// Exit code of a session without full marks, or a server that broke the protocol.
const FAILED: u8 = 1;
/// Exit code of a usage or setup error.
const SETUP: u8 = 2;

/// Checksums a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumArg {
    /// Big-endian pairing of bytes (RFC 1071, the spec).
    Big,
    /// Little-endian pairing, as the clients that scored full marks on the course server.
    Little,
    /// Either pairing.
    Either,
}

impl From<ChecksumArg> for ChecksumMode {
    fn from(arg: ChecksumArg) -> Self {
        match arg {
            ChecksumArg::Big => ChecksumMode::Big,
            ChecksumArg::Little => ChecksumMode::Little,
            ChecksumArg::Either => ChecksumMode::Either,
        }
    }
}

/// A pairing of bytes for the checksums sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PairingArg {
    /// Big-endian (RFC 1071, the spec).
    Big,
    /// Little-endian.
    Little,
}

impl From<PairingArg> for Pairing {
    fn from(arg: PairingArg) -> Self {
        match arg {
            PairingArg::Big => Pairing::BigEndian,
            PairingArg::Little => Pairing::LittleEndian,
        }
    }
}

/// Parses `N` or `MIN-MAX`.
fn parse_text_length(text: &str) -> Result<RangeInclusive<usize>, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is not a number of bytes; write N or MIN-MAX"))
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (number(low)?, number(high)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if low > high {
        return Err(format!("{low}-{high} is an empty range"));
    }
    if high > MAX_TEXT {
        return Err(format!("texts are at most {MAX_TEXT} bytes"));
    }
    Ok(low..=high)
}

/// Parses a 4-byte word.
fn parse_word(text: &str) -> Result<[u8; 4], String> {
    <[u8; 4]>::try_from(text.as_bytes())
        .map_err(|_| format!("{text:?} is not 4 bytes long (e.g. sbmt, test)"))
}

fn parse_key(text: &str) -> Result<[u8; 4], String> {
    let word = parse_word(text)?;
    if word.iter().all(u8::is_ascii_lowercase) {
        Ok(word)
    } else {
        Err(format!("{text:?} is not 4 lowercase letters"))
    }
}

fn parse_max_packet_data(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_DATA).contains(&n) => Ok(n),
        _ => Err(format!("give a number of bytes from 1 to {MAX_DATA}")),
    }
}

/// Run the reference packet server: the course's grading server.
#[derive(Debug, Args)]
#[command(
    long_about = "Run the reference packet server (specs/packet-and-mathsvc.md, Task 1): the \
        course's grading server.\n\n\
        A client sends a header-only packet (flag 1, keyword sbmt or a 4-letter test word, its \
        8-digit student id); the server sends random text XOR-encrypted with a random 4-letter \
        key, in packets whose keyword is the key (the last one flag 1); the client sends the \
        decrypted text back (keyword = key, last packet flag 1) and gets a result packet: \
        keyword = status word (GOOD, DIFF, SIZE, or the error CKSM, LENG, FLAG, KEYW, SIDN, \
        TIME, CLSD), sid = score out of 50, data = message. Submissions (sbmt) have their best \
        score recorded.",
    after_help = "Examples:\n  \
        reference packet-server\n  \
        reference packet-server --listen 0.0.0.0:4000 --checksum little --scores scores.txt\n  \
        reference packet-server --key abcd --text-length 100 --seed 1\n  \
        reference packet-client --port 4000 --studentID 20200000\n\n\
        The scores file holds `STUDENT_ID SCORE` lines, the best score of each student; it is \
        rewritten (atomically) when a best score changes. Durations: 250ms, 10s, 2m. Logs go \
        to stderr; RUST_LOG=info shows every session's score. Ctrl-C stops the server."
)]
pub struct PacketServerArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,

    /// Checksums accepted from clients: how bytes pair into 16-bit words.
    #[arg(long, value_enum, default_value_t = ChecksumArg::Big)]
    pub checksum: ChecksumArg,

    /// Pairing of the checksums the server sends. Default: little for --checksum little,
    /// else big.
    #[arg(long, value_enum, value_name = "PAIRING")]
    pub send_checksum: Option<PairingArg>,

    /// File of the best scores of submissions (created if missing). Without it, scores are
    /// kept in memory only.
    #[arg(long, value_name = "FILE")]
    pub scores: Option<PathBuf>,

    /// Length of the random text in bytes: N, or MIN-MAX for a length picked per session.
    #[arg(
        long,
        value_name = "N|MIN-MAX",
        default_value = "10000-30000",
        value_parser = parse_text_length
    )]
    pub text_length: RangeInclusive<usize>,

    /// A fixed key (4 lowercase letters) instead of a random one per session.
    #[arg(long, value_name = "WORD", value_parser = parse_key)]
    pub key: Option<[u8; 4]>,

    /// Seed of the random key, text and packet sizes: every session gets the same ones.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Most data bytes in one packet of the encrypted stream (1 to 9984).
    #[arg(long, value_name = "BYTES", default_value_t = MAX_DATA, value_parser = parse_max_packet_data)]
    pub max_packet_data: usize,

    /// Silence allowed before the first packet and between reads of the reply.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Longest session, from connect to result.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub session_timeout: Duration,

    /// Simultaneous connections; more are closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Make the server wrong on purpose (for testing clients and suites); repeatable.
    #[arg(long = "fault", value_name = "NAME", hide = true)]
    pub faults: Vec<Fault>,
}

impl PacketServerArgs {
    /// The server configuration the flags describe.
    pub fn config(&self) -> Result<ServerConfig, String> {
        let config = ServerConfig {
            checksum: self.checksum.into(),
            send_pairing: self.send_checksum.map(Pairing::from),
            text_len: self.text_length.clone(),
            key: self.key,
            seed: self.seed,
            max_packet_data: self.max_packet_data,
            timeout: self.timeout,
            session_timeout: self.session_timeout,
            max_connections: self.max_connections,
            scores: self.scores.clone(),
            faults: self.faults.iter().copied().collect(),
            ..ServerConfig::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Runs the server until Ctrl-C. The exit code: 0 after a clean stop, 2 for a setup error
/// (flags, the scores file, an address in use), which is printed to stderr.
pub async fn run_server(args: PacketServerArgs) -> u8 {
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return SETUP;
        }
    };
    let scores = match &config.scores {
        Some(path) => match ScoreStore::open(path) {
            Ok(store) => store,
            Err(e) => {
                eprintln!("error: {}", chain(&e));
                return SETUP;
            }
        },
        None => ScoreStore::in_memory(),
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} (is another server using the port? pick \
                 another with --listen)",
                args.listen
            );
            return SETUP;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    if !config.faults.is_empty() {
        eprintln!(
            "warning: faults on purpose: {:?}",
            config.faults.iter().map(Fault::name).collect::<Vec<_>>()
        );
    }
    let stored = match scores.path() {
        Some(path) => format!("best scores in {}", path.display()),
        None => "scores in memory only".to_owned(),
    };
    eprintln!(
        "packet server listening on {addr} (checksums: accepts {}, sends {}; {stored}); \
         Ctrl-C stops it",
        config.checksum,
        config.send_pairing()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping");
    };
    match server::run_with_scores(listener, config, scores.into(), shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            SETUP
        }
    }
}

/// Run one session against a packet server and print its result.
#[derive(Debug, Args)]
#[command(
    long_about = "Run one session against a packet server (specs/packet-and-mathsvc.md, Task \
        1), as the course's client: send the header, receive and decrypt the stream, send the \
        text back, print the result packet. Every packet from the server is checked \
        (checksum, length, flag), so a faulty server is named.",
    after_help = "Examples:\n  \
        reference packet-client --host 127.0.0.1 --port 4000 --studentID 20200000\n  \
        reference packet-client --port 4000 --studentID 20200000 --keyword test --checksum little\n\n\
        Output (the result packet's keyword, sid and data):\n  \
        KEY: GOOD\n  \
        Score: 50\n  \
        Message: DECRYPTED DATA MATCH & YOUR POINTS ARE REGISTERED ON DATABASE\n\n\
        Exit codes: 0 full score (50); 1 a lower score or an error packet from the server, or \
        a server that broke the protocol (bad checksum, oversized packet, no last packet, no \
        result, timeout); 2 usage error or no connection."
)]
pub struct PacketClientArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Server port.
    #[arg(long, default_value_t = 4000)]
    pub port: u16,

    /// The 8-digit student id, sent as the sid of every packet.
    #[arg(
        long = "studentID",
        alias = "student-id",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub student_id: i32,

    /// The first packet's keyword: sbmt records the score, any other 4 letters is a test run.
    #[arg(long, value_name = "WORD", default_value = "sbmt", value_parser = parse_word)]
    pub keyword: [u8; 4],

    /// Pairing of bytes of the checksums sent, and accepted from the server.
    #[arg(long, value_enum, default_value_t = PairingArg::Big)]
    pub checksum: PairingArg,

    /// Time allowed to connect, and for each read.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Also print the key and the size of the stream (to stderr).
    #[arg(long, short)]
    pub verbose: bool,

    /// Make the client wrong on purpose (for testing servers); repeatable.
    #[arg(long = "fault", value_name = "NAME", hide = true)]
    pub faults: Vec<ClientFault>,
}

impl PacketClientArgs {
    /// The client configuration the flags describe.
    pub fn config(&self) -> ClientConfig {
        let pairing = Pairing::from(self.checksum);
        ClientConfig {
            student_id: self.student_id,
            keyword: self.keyword,
            pairing,
            verify: pairing.into(),
            timeout: self.timeout,
            faults: self.faults.iter().copied().collect(),
        }
    }
}

/// Runs `reference packet-client`, printing to stdout and stderr.
pub async fn run_client(args: PacketClientArgs) -> u8 {
    run_client_with(&args, &mut std::io::stdout(), &mut std::io::stderr()).await
}

/// [`run_client`] with its output given. The exit code: 0 full score, 1 a lower score, an
/// error packet or a server that broke the protocol, 2 usage error or no connection.
pub async fn run_client_with(
    args: &PacketClientArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let config = args.config();
    let target = format!("{}:{}", args.host, args.port);
    let addr = match tokio::net::lookup_host(&target).await {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => addr,
            None => {
                let _ = writeln!(err, "error: {target} resolves to no address");
                return SETUP;
            }
        },
        Err(e) => {
            let _ = writeln!(err, "error: cannot resolve {target}: {e}");
            return SETUP;
        }
    };
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
    match client::run(addr, &config).await {
        Ok(outcome) => {
            if args.verbose {
                match outcome.key {
                    Some(key) => {
                        let _ = writeln!(
                            err,
                            "key {}, {} packets, {} bytes of text",
                            key.escape_ascii(),
                            outcome.packets,
                            outcome.text.len()
                        );
                    }
                    None => {
                        let _ = writeln!(err, "the server answered the header with its result");
                    }
                }
            }
            let _ = writeln!(out, "KEY: {}", outcome.status());
            let _ = writeln!(out, "Score: {}", outcome.score());
            let _ = writeln!(out, "Message: {}", outcome.message());
            if outcome.is_full_score() { 0 } else { FAILED }
        }
        Err(e) => {
            let hint = if e.is_connect() {
                " (is the packet server running there? --host and --port set the address)"
            } else if other_pairing(&e) {
                match args.checksum {
                    PairingArg::Big => " (the server pairs bytes little-endian: --checksum little)",
                    PairingArg::Little => " (the server pairs bytes big-endian: --checksum big)",
                }
            } else {
                ""
            };
            let _ = writeln!(err, "error: {}{hint}", chain(&e));
            if e.is_connect() { SETUP } else { FAILED }
        }
    }
}

/// Whether the error is a server checksum that is right in the other pairing.
fn other_pairing(e: &client::ClientError) -> bool {
    match e {
        client::ClientError::Decode { error, .. } => error
            .checksum_mismatch()
            .is_some_and(|m| m.found != m.expected && m.found == m.expected.swap_bytes()),
        _ => false,
    }
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lengths() {
        assert_eq!(parse_text_length("100"), Ok(100..=100));
        assert_eq!(parse_text_length("10-20"), Ok(10..=20));
        assert!(parse_text_length("20-10").is_err());
        assert!(parse_text_length("ten").is_err());
        assert!(parse_text_length(&format!("{}", MAX_TEXT + 1)).is_err());
    }

    #[test]
    fn words_and_keys() {
        assert_eq!(parse_word("sbmt"), Ok(*b"sbmt"));
        assert_eq!(parse_word("SBMT"), Ok(*b"SBMT"));
        assert!(parse_word("sbm").is_err());
        assert_eq!(parse_key("abcd"), Ok(*b"abcd"));
        assert!(parse_key("ABCD").is_err());
        assert!(parse_max_packet_data("0").is_err());
        assert_eq!(parse_max_packet_data("9984"), Ok(9984));
    }
}
