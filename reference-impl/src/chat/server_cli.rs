//! `reference chat-server`: flags -> [`ServerConfig`], then [`server::run`] until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use super::codec::{CheckOrder, Dialect, HeaderMap, MAX_LINE, MIN_MAX_LINE};
use super::fault::Fault;
use super::sabotage::Sabotage;
use super::server::{self, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FILE_SIZE, ServerConfig};

/// Exit code of a usage or setup error.
const SETUP: u8 = 2;

/// Order of a line's two checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOrderArg {
    /// Look the header up first: `MSG This is an invalid message` -> UNKNOWN_COMMAND (the
    /// spec).
    HeaderFirst,
    /// Parse the JSON body first: `MSG This is an invalid message` -> PARSE_ERROR (the
    /// teachers' server).
    JsonFirst,
}

impl From<CheckOrderArg> for CheckOrder {
    fn from(arg: CheckOrderArg) -> Self {
        match arg {
            CheckOrderArg::HeaderFirst => CheckOrder::HeaderFirst,
            CheckOrderArg::JsonFirst => CheckOrder::JsonFirst,
        }
    }
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?}: write e.g. 250ms, 10s or 2m"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 250ms, 10s or 2m"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_rename(text: &str) -> Result<String, String> {
    HeaderMap::default()
        .apply(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_max_line(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if n < MIN_MAX_LINE {
        return Err(format!(
            "the spec asks servers to parse lines of at least {MIN_MAX_LINE} bytes"
        ));
    }
    Ok(n)
}

/// Run the reference chat server (plain TCP).
#[derive(Debug, Args)]
#[command(
    long_about = "Run the reference chat server (specs/chat.md, levels 1 to 4) over plain TCP.\n\n\
        Clients get WELCOME, log in with LOGIN {\"username\":...}, broadcast, list users, send \
        private messages, play the guessing game, transfer files and relay encrypted messages. \
        File contents go over a second port, the data channel (UPLOAD/DOWNLOAD <transferId>). \
        The defaults follow the spec; the switches below give the dialects real servers speak.",
    after_help = "Examples:\n  \
        reference chat-server\n  \
        reference chat-server --listen 0.0.0.0:1337 --check-order json-first --no-joined\n  \
        reference chat-server --rename LIST_USERS_REQ=USER_LIST_REQ \\\n      \
        --rename LIST_USERS_RESP=USER_LIST_RESP --rename 'LOGIN=LOGIN REQ'\n  \
        reference chat-server --ping-interval 2s --pong-timeout 500ms --join-window 3s\n\n\
        Durations: 250ms, 10s, 1.5s, 2m. Logs go to stderr; set RUST_LOG=debug to see every \
        connection. Ctrl-C closes every connection and stops."
)]
pub struct ChatServerArgs {
    /// Address and port of the chat (control) connection.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1337")]
    pub listen: SocketAddr,

    /// Address and port of the file transfers' data channel. Default: the --listen port + 1.
    #[arg(long, value_name = "ADDR")]
    pub data_listen: Option<SocketAddr>,

    /// Time between PINGs; the first comes this long after LOGIN_RESP.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Time a client has to answer a PING before DSCN {"reason":7000}.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub pong_timeout: Duration,

    /// Time players have to join a game.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub join_window: Duration,

    /// Time a game runs before GAME_RESULTS.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub game_time_limit: Duration,

    /// Fix the number to guess (1..=50) instead of picking one per game.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=50))]
    pub secret: Option<u8>,

    /// Time both sides of an accepted file transfer have to attach to the data channel.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub transfer_timeout: Duration,

    /// Largest file size a transfer may declare (error 10000 above it).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,

    /// Do not send JOINED to the others when a user logs in (as the teachers' server).
    #[arg(long)]
    pub no_joined: bool,

    /// Which check of a line comes first, and so which error a line failing both gets.
    #[arg(long, value_enum, default_value_t = CheckOrderArg::HeaderFirst)]
    pub check_order: CheckOrderArg,

    /// Give a header another name on the wire, in both directions: HEADER=NEW_NAME, e.g.
    /// LIST_USERS_REQ=USER_LIST_REQ or 'LOGIN=LOGIN REQ'. Repeatable.
    #[arg(long, value_name = "FROM=TO", value_parser = parse_rename)]
    pub rename: Vec<String>,

    /// Longest line in bytes, line end not counted; longer ones get DSCN {"reason":7001}.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_LINE, value_parser = parse_max_line)]
    pub max_line: usize,

    /// The version WELCOME names after "Welcome to the server".
    #[arg(long, value_name = "VERSION", default_value = server::DEFAULT_VERSION)]
    pub version_text: String,

    /// Simultaneous connections on each port; more are closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Make the server wrong on purpose (for testing test suites); repeatable.
    #[arg(long = "fault", value_name = "NAME", hide = true)]
    pub faults: Vec<Fault>,

    /// Make a connection's task panic on a LOGIN with a non-ASCII username, before any
    /// reply (for testing the fuzzer).
    #[arg(long, hide = true)]
    pub panic_on_non_ascii_name: bool,
}

impl ChatServerArgs {
    /// The server configuration the flags describe.
    pub fn config(&self) -> Result<ServerConfig, String> {
        let mut headers = HeaderMap::default();
        for rule in &self.rename {
            headers.apply(rule).map_err(|e| e.to_string())?;
        }
        let config = ServerConfig {
            version: self.version_text.clone(),
            joined: !self.no_joined,
            dialect: Dialect {
                headers,
                check_order: self.check_order.into(),
            },
            max_line: self.max_line,
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            join_window: self.join_window,
            game_time_limit: self.game_time_limit,
            secret: self.secret,
            max_file_size: self.max_file_size,
            transfer_timeout: self.transfer_timeout,
            data_listen: self.data_listen,
            max_connections: self.max_connections,
            faults: self.faults.iter().copied().collect(),
            sabotage: Sabotage {
                panic_on_non_ascii_name: self.panic_on_non_ascii_name,
            },
            ..ServerConfig::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Runs the server until Ctrl-C. The exit code: 0 after a clean stop, 2 for a setup error
/// (flags, an address in use), which is printed to stderr.
pub async fn run(args: ChatServerArgs) -> u8 {
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return SETUP;
        }
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
    let data_addr = config
        .data_listen
        .unwrap_or_else(|| SocketAddr::new(addr.ip(), addr.port().wrapping_add(1)));
    let data_listener = match TcpListener::bind(data_addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {data_addr} for the data channel: {e} (pick another \
                 with --data-listen)"
            );
            return SETUP;
        }
    };
    let data_addr = data_listener.local_addr().unwrap_or(data_addr);
    if !config.faults.is_empty() {
        eprintln!(
            "warning: faults on purpose: {:?}",
            config.faults.iter().map(Fault::name).collect::<Vec<_>>()
        );
    }
    if !config.sabotage.is_empty() {
        eprintln!(
            "warning: deliberate sabotage enabled: {:?}",
            config.sabotage
        );
    }
    eprintln!("chat server listening on {addr}, data channel on {data_addr}; Ctrl-C stops it");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping");
    };
    match server::run_with_data(listener, data_listener, config, shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            SETUP
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
