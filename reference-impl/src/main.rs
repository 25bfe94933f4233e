//! `reference`: runs the reference servers and clients of the course protocols.
//!
//! Exit codes: 0 success, 1 the protocol exchange failed (login refused, an error reply, a
//! CRC mismatch, a dropped connection), 2 usage or setup error (flags, files, address, TLS).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use reference_impl::kv::auth::{crc32, hash_password};
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::{Dialect, MAX_MESSAGE, is_valid_id};
use reference_impl::kv::server::{
    self, DEFAULT_MAX_CONNECTIONS, Fault, RsaOptions, Sabotage, ServerConfig,
};
use reference_impl::kv::store::{Accounts, DEFAULT_MAX_SESSIONS};
use reference_impl::tls::{self, ClientTrust};
use tokio::io::AsyncBufReadExt;

/// The spec's test salt as hex, the default of `--salt`.
const TEST_SALT_HEX: &str = "ed1292c686b48abf10b362641c2f6dca";

/// Exit code of a failed protocol exchange.
const FAILED: u8 = 1;
/// Exit code of a usage or setup error.
const SETUP: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "reference",
    version,
    about = "Reference servers and clients of the course protocols",
    after_help = "Exit codes: 0 success; 1 the exchange failed (login refused, an error reply, \
                  a CRC mismatch, a dropped connection); 2 usage or setup error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    KvServer(KvServerArgs),
    KvClient(KvClientArgs),
    KvRsaServer(KvRsaServerArgs),
    KvRsaClient(KvRsaClientArgs),
    ChatServer(reference_impl::chat::server_cli::ChatServerArgs),
    ChatClient(reference_impl::chat::client::ChatClientArgs),
    PacketServer(reference_impl::packet::cli::PacketServerArgs),
    PacketClient(reference_impl::packet::cli::PacketClientArgs),
    MathsvcServer(reference_impl::mathsvc::cli::ServerArgs),
    MathsvcClient(reference_impl::mathsvc::cli::ClientArgs),
}

/// Message framing.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DialectArg {
    /// Every message ends in a line feed, as specs/kv-tls.md says.
    Spec,
    /// One message per write and no line ends, as the course's own server and client do.
    Course,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Self {
        match d {
            DialectArg::Spec => Dialect::Spec,
            DialectArg::Course => Dialect::Course,
        }
    }
}

/// A PBKDF2 salt given as hex.
#[derive(Debug, Clone)]
struct Salt(Vec<u8>);

fn parse_salt(s: &str) -> Result<Salt, String> {
    match hex::decode(s) {
        Ok(bytes) if !bytes.is_empty() => Ok(Salt(bytes)),
        Ok(_) => Err("the salt is empty".into()),
        Err(e) => Err(format!("not hex ({e}); example: {TEST_SALT_HEX}")),
    }
}

/// The end of both key-value servers' help: the users file, logs, stopping.
macro_rules! kv_server_footer {
    () => {
        "A users file holds one `id:password` per line, split at the first `:`, nothing \
         trimmed; blank lines and lines starting with `#` are ignored.\n\
         Logs go to stderr; set RUST_LOG=debug to see every connection. Ctrl-C stops the \
         server after the requests in progress."
    };
}

/// The end of both key-value clients' help: what they print, and their exit codes.
macro_rules! kv_client_footer {
    () => {
        "Output: `PUT colour: OK`, `GET colour: blue (crc 2654390964 verified)`, \
         `GET missing: not found`, `DELETE colour: OK`.\n\
         Exit codes: 0 all commands succeeded; 1 login refused, an error reply, a CRC \
         mismatch or a dropped connection; 2 usage or setup error."
    };
}

/// Run the reference key-value server over TLS.
#[derive(Debug, Args)]
#[command(
    long_about = "Run the reference key-value server over TLS (specs/kv-tls.md).\n\n\
        Clients log in with CONNECT <id> and the PBKDF2 hash of their password, then PUT, \
        GET and DELETE keys in their own session. Without --cert and --key the server makes \
        a fresh self-signed certificate at every start; --write-cert saves it for clients.",
    after_help = concat!(
        "Examples:\n  \
        reference kv-server --write-cert kv-cert.pem\n  \
        reference kv-client --ca kv-cert.pem --id alice --password secret put colour blue get colour\n\n  \
        reference kv-server --listen 0.0.0.0:4000 --users users.txt --dialect course\n\n",
        kv_server_footer!()
    )
)]
struct KvServerArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,

    /// Certificate chain to present, PEM, leaf first. Needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key of the certificate, PEM (PKCS#8, PKCS#1 or SEC1). Needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// Write the self-signed certificate (PEM) here, for clients to trust with --ca.
    #[arg(long, value_name = "PATH", conflicts_with = "cert")]
    write_cert: Option<PathBuf>,

    /// A name (IP address or DNS name) the self-signed certificate covers; repeat for more.
    #[arg(
        long = "cert-name",
        value_name = "NAME",
        default_values = ["127.0.0.1", "localhost"],
        conflicts_with = "cert"
    )]
    cert_names: Vec<String>,

    #[command(flatten)]
    store: KvStoreArgs,
}

/// Run the reference key-value server of the RSA variant.
#[derive(Debug, Args)]
#[command(
    long_about = "Run the reference key-value server of the RSA variant (specs/kv-rsa.md).\n\n\
        Each client sends its public key (PKCS#1 PEM) first and the server answers with a \
        fresh one of its own; every message is then one 512-bit RSA PKCS#1 v1.5 block, \
        encrypted with the peer's key. The password hash after CONNECT travels in the \
        clear, as real clients send it, unless --encrypt-hash. Same commands, store and \
        rules as kv-server; a reply must fit in one block (53 bytes), so a PUT of a value \
        its GET reply could not carry answers PUT: ERROR.\n\n\
        512-bit RSA and PKCS#1 v1.5 encryption are insecure (the keys can be factored, the \
        padding is open to oracle attacks): use this only to test course implementations.",
    after_help = concat!(
        "Examples:\n  \
        reference kv-rsa-server\n  \
        reference kv-rsa-client --id alice --password secret put colour blue get colour\n\n  \
        reference kv-rsa-server --listen 0.0.0.0:4000 --users users.txt --dialect course\n\n",
        kv_server_footer!()
    )
)]
struct KvRsaServerArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,

    /// Read the password hash as an RSA block of its own instead of in the clear.
    #[arg(long)]
    encrypt_hash: bool,

    #[command(flatten)]
    store: KvStoreArgs,
}

/// What the key-value servers over TLS and over RSA share: accounts, limits, framing.
#[derive(Debug, Args)]
struct KvStoreArgs {
    /// Users file (`id:password` lines): only these ids may log in, with these passwords.
    /// Without it any id may log in, and its first CONNECT sets its password.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,

    /// PBKDF2 salt, hex. The default is the spec's test salt.
    #[arg(long, value_name = "HEX", default_value = TEST_SALT_HEX, value_parser = parse_salt)]
    salt: Salt,

    /// Message framing.
    #[arg(long, value_enum, default_value_t = DialectArg::Spec)]
    dialect: DialectArg,

    /// Largest message in bytes, line end included; longer ones drop the connection.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_MESSAGE)]
    max_message: usize,

    /// Simultaneous connections; more are closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Stored sessions; a CONNECT of a new id beyond it answers CONNECT: ERROR.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    max_sessions: usize,

    /// Make the server wrong on purpose (for testing test suites); repeatable.
    #[arg(long = "fault", value_name = "NAME", hide = true)]
    faults: Vec<Fault>,

    /// Die on the first PUT after a login: print a panic-like line to stderr and exit with
    /// code 101 (for testing tools that run servers).
    #[arg(long, hide = true)]
    crash_on_put: bool,

    /// Freeze after the first successful login: accept, handshake, answer and close nothing
    /// more, but stay alive (for testing tools that run servers). Ctrl-C still stops it.
    #[arg(long, hide = true)]
    freeze_after_login: bool,

    /// Die as soon as a line over 1,000 bytes arrives: print a panic-like line to stderr and
    /// exit with code 101 (for testing the fuzzer).
    #[arg(long, hide = true)]
    die_on_long_line: bool,

    /// Send a CRC one too high in the GET reply of a value that contains a space (for
    /// testing the fuzzer).
    #[arg(long, hide = true)]
    wrong_crc_with_spaces: bool,

    /// On dropping a connection for junk, keep its session logged in for good, so the id
    /// can never CONNECT again (for testing the fuzzer).
    #[arg(long, hide = true)]
    leak_session_after_junk: bool,
}

/// Talk to a key-value server: log in, run commands, disconnect.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("trust").required(true).args(["ca", "insecure"])),
    long_about = "Talk to a key-value server over TLS: log in, run commands, disconnect.\n\n\
        Commands come from the arguments after the flags (put KEY VALUE, get KEY, \
        delete KEY), or, if there are none, from standard input, one per line: \
        `put KEY VALUE` (the value is the rest of the line), `get KEY`, `delete KEY`, \
        `quit`. Every GET's CRC is verified.",
    after_help = concat!(
        "Examples:\n  \
        reference kv-client --ca kv-cert.pem --id alice --password secret \\\n      \
        put colour blue get colour delete colour\n  \
        printf 'put note hello world\\nget note\\n' | \\\n      \
        reference kv-client --insecure --target 10.0.0.5:4000 --id bob --password pw\n\n",
        kv_client_footer!()
    )
)]
struct KvClientArgs {
    #[command(flatten)]
    session: KvSessionArgs,

    /// Trust this certificate (PEM): the server's self-signed certificate or its CA.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Accept any server certificate (self-signed, expired, any name). The connection is
    /// encrypted but the server is not authenticated.
    #[arg(long)]
    insecure: bool,

    /// Name to verify the certificate against. Default: the host part of --target.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,

    #[command(flatten)]
    login: KvLoginArgs,
}

/// Talk to a key-value server of the RSA variant.
#[derive(Debug, Args)]
#[command(
    long_about = "Talk to a key-value server of the RSA variant (specs/kv-rsa.md): exchange \
        fresh 512-bit RSA keys, log in, run commands, disconnect.\n\n\
        Commands come from the arguments after the flags (put KEY VALUE, get KEY, \
        delete KEY), or, if there are none, from standard input, one per line: \
        `put KEY VALUE` (the value is the rest of the line), `get KEY`, `delete KEY`, \
        `quit`. Every GET's CRC is verified. A message must fit in one RSA block (53 \
        bytes): a longer one is refused here, before it is sent.\n\n\
        512-bit RSA and PKCS#1 v1.5 encryption are insecure: use this only to test course \
        implementations.",
    after_help = concat!(
        "Examples:\n  \
        reference kv-rsa-client --id alice --password secret put colour blue get colour\n  \
        printf 'put note hello world\\nget note\\n' | \\\n      \
        reference kv-rsa-client --target 10.0.0.5:4000 --id bob --password pw\n\n",
        kv_client_footer!()
    )
)]
struct KvRsaClientArgs {
    #[command(flatten)]
    session: KvSessionArgs,

    /// Send the password hash as an RSA block of its own instead of in the clear.
    #[arg(long)]
    encrypt_hash: bool,

    #[command(flatten)]
    login: KvLoginArgs,
}

/// Where the key-value clients connect and who they log in as.
#[derive(Debug, Args)]
struct KvSessionArgs {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4000")]
    target: String,

    /// Client id to log in as.
    #[arg(long)]
    id: String,

    /// Password; the client sends its PBKDF2 hash with --salt.
    #[arg(long)]
    password: String,
}

/// Framing, salt and the commands of the key-value clients.
#[derive(Debug, Args)]
struct KvLoginArgs {
    /// Message framing.
    #[arg(long, value_enum, default_value_t = DialectArg::Spec)]
    dialect: DialectArg,

    /// PBKDF2 salt, hex. The default is the spec's test salt.
    #[arg(long, value_name = "HEX", default_value = TEST_SALT_HEX, value_parser = parse_salt)]
    salt: Salt,

    /// Commands: put KEY VALUE | get KEY | delete KEY. None: read them from stdin.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    commands: Vec<String>,
}

/// A failure that ends the program: what to print and the exit code.
#[derive(Debug)]
struct Fatal {
    message: String,
    code: u8,
}

impl Fatal {
    fn setup(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: SETUP,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: FAILED,
        }
    }
}

/// An error and its causes on one line: `cannot read x.pem: No such file or directory`.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(SETUP);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::KvServer(args) => kv_server(args).await,
            Command::KvClient(args) => kv_client(args).await,
            Command::KvRsaServer(args) => kv_rsa_server(args).await,
            Command::KvRsaClient(args) => kv_rsa_client(args).await,
            Command::ChatServer(args) => Ok(reference_impl::chat::server_cli::run(args).await),
            Command::ChatClient(args) => Ok(reference_impl::chat::client::run(args).await),
            Command::PacketServer(args) => Ok(reference_impl::packet::cli::run_server(args).await),
            Command::PacketClient(args) => Ok(reference_impl::packet::cli::run_client(args).await),
            Command::MathsvcServer(args) => {
                Ok(reference_impl::mathsvc::cli::run_server(args).await)
            }
            Command::MathsvcClient(args) => {
                Ok(reference_impl::mathsvc::cli::run_client(args).await)
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(fatal) => {
            eprintln!("error: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}

async fn kv_server(args: KvServerArgs) -> Result<u8, Fatal> {
    let config = args.store.config()?;
    let tls_config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let certs = tls::load_certs(cert).map_err(|e| Fatal::setup(chain(&e)))?;
            let key = tls::load_key(key).map_err(|e| Fatal::setup(chain(&e)))?;
            tls::server_config(certs, key).map_err(|e| Fatal::setup(chain(&e)))?
        }
        _ => {
            let generated =
                tls::self_signed(&args.cert_names).map_err(|e| Fatal::setup(chain(&e)))?;
            if let Some(path) = &args.write_cert {
                std::fs::write(path, &generated.cert_pem).map_err(|e| {
                    Fatal::setup(format!(
                        "cannot write the certificate to {}: {e}",
                        path.display()
                    ))
                })?;
                eprintln!(
                    "self-signed certificate for {} written to {}",
                    args.cert_names.join(", "),
                    path.display()
                );
            }
            tls::server_config(vec![generated.cert_der], generated.key_der)
                .map_err(|e| Fatal::setup(chain(&e)))?
        }
    };
    let (listener, addr) = listen(args.listen).await?;
    println!(
        "kv-server listening on {addr} (TLS, dialect {})",
        config.dialect
    );
    server::run(listener, tls_config, config, shutdown_signal())
        .await
        .map_err(|e| Fatal::failed(format!("the server failed: {e}")))?;
    Ok(0)
}

async fn kv_rsa_server(args: KvRsaServerArgs) -> Result<u8, Fatal> {
    let config = args.store.config()?;
    let (listener, addr) = listen(args.listen).await?;
    let rsa = RsaOptions {
        hash_in_clear: !args.encrypt_hash,
    };
    println!(
        "kv-rsa-server listening on {addr} (512-bit RSA, dialect {}, hash {})",
        config.dialect,
        if rsa.hash_in_clear {
            "in the clear"
        } else {
            "encrypted"
        }
    );
    server::run_rsa(listener, rsa, config, shutdown_signal())
        .await
        .map_err(|e| Fatal::failed(format!("the server failed: {e}")))?;
    Ok(0)
}

/// Binds the server's address: the listener and the address it got.
async fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), Fatal> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Fatal::setup(format!(
            "cannot listen on {addr}: {e} (is another server using the port? pick another with --listen)"
        ))
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    Ok((listener, bound))
}

impl KvStoreArgs {
    /// The server configuration these flags ask for; warns of deliberate faults.
    fn config(&self) -> Result<ServerConfig, Fatal> {
        if self.max_message == 0 {
            return Err(Fatal::setup(
                "--max-message 0 would refuse every message; give a size in bytes (default 4096)",
            ));
        }
        let accounts = match &self.users {
            Some(path) => Accounts::from_users_file(path).map_err(|e| Fatal::setup(chain(&e)))?,
            None => Accounts::FirstUse,
        };
        let config = ServerConfig {
            dialect: Dialect::from(self.dialect),
            max_message: self.max_message,
            salt: self.salt.0.clone(),
            accounts,
            max_connections: self.max_connections,
            max_sessions: self.max_sessions,
            faults: self.faults.iter().copied().collect(),
            sabotage: Sabotage {
                exit_on_put: self.crash_on_put,
                freeze_after_login: self.freeze_after_login,
                exit_on_long_line: self.die_on_long_line,
                wrong_crc_with_spaces: self.wrong_crc_with_spaces,
                leak_session_after_junk: self.leak_session_after_junk,
            },
            ..ServerConfig::default()
        };
        if !config.faults.is_empty() {
            eprintln!("warning: deliberate faults enabled: {:?}", config.faults);
        }
        if !config.sabotage.is_empty() {
            eprintln!(
                "warning: deliberate sabotage enabled: {:?}",
                config.sabotage
            );
        }
        Ok(config)
    }
}

/// Completes on Ctrl-C, or on SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a Ctrl-C handler, only SIGTERM (or killing the process) stops it.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// A command of `reference kv-client`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientCommand {
    Put { key: String, value: String },
    Get { key: String },
    Delete { key: String },
    Quit,
}

const COMMAND_HELP: &str = "expected put KEY VALUE, get KEY, delete KEY or quit";

/// Parses commands given as arguments: `put k v get k delete k`.
fn parse_arguments(words: &[String]) -> Result<Vec<ClientCommand>, String> {
    let mut commands = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let mut operand = |what: &str| {
            words
                .next()
                .cloned()
                .ok_or_else(|| format!("`{word}` needs a {what}"))
        };
        commands.push(match word.to_ascii_lowercase().as_str() {
            "put" => ClientCommand::Put {
                key: operand("key")?,
                value: operand("value")?,
            },
            "get" => ClientCommand::Get {
                key: operand("key")?,
            },
            "delete" => ClientCommand::Delete {
                key: operand("key")?,
            },
            "quit" => ClientCommand::Quit,
            _ => return Err(format!("unknown command `{word}`: {COMMAND_HELP}")),
        });
    }
    Ok(commands)
}

/// Parses one line of standard input; `None` for a blank line or a `#` comment.
fn parse_line(line: &str) -> Result<Option<ClientCommand>, String> {
    let line = line.trim_start();
    if line.trim_end().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line.trim_end(), ""));
    let key = || {
        let key = rest.trim();
        if key.is_empty() {
            Err(format!("`{word}` needs a key"))
        } else {
            Ok(key.to_owned())
        }
    };
    Ok(Some(match word.to_ascii_lowercase().as_str() {
        "put" => {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if key.is_empty() {
                return Err("`put` needs a key".into());
            }
            ClientCommand::Put {
                key: key.to_owned(),
                value: value.to_owned(),
            }
        }
        "get" => ClientCommand::Get { key: key()? },
        "delete" => ClientCommand::Delete { key: key()? },
        "quit" => ClientCommand::Quit,
        _ => return Err(format!("unknown command `{word}`: {COMMAND_HELP}")),
    }))
}

/// The host part of `HOST:PORT` or `[v6]:PORT`.
fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

async fn kv_client(args: KvClientArgs) -> Result<u8, Fatal> {
    let commands = args.login.commands(&args.session)?;
    let trust = match &args.ca {
        Some(path) => {
            ClientTrust::Roots(tls::load_certs(path).map_err(|e| Fatal::setup(chain(&e)))?)
        }
        None => ClientTrust::InsecureAcceptAny,
    };
    let tls_config = tls::client_config(trust).map_err(|e| Fatal::setup(chain(&e)))?;
    let name = args
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(&args.session.target).to_owned());
    let server_name = tls::server_name(&name)
        .map_err(|e| Fatal::setup(format!("{} (set it with --server-name)", chain(&e))))?;
    let addr = resolve(&args.session.target).await?;
    let hash = args.login.hash(&args.session).await?;
    let client = Client::connect(addr, tls_config, server_name, args.login.dialect.into())
        .await
        .map_err(|e| {
            let hint = match e {
                ClientError::Handshake { .. } if args.ca.is_some() => {
                    " (is --ca the server's certificate, and --server-name a name it covers? \
                     --insecure accepts any certificate)"
                }
                _ => "",
            };
            Fatal::setup(format!("{}{hint}", chain(&e)))
        })?;
    run_session(client, &args.session.id, &hash, commands).await
}

async fn kv_rsa_client(args: KvRsaClientArgs) -> Result<u8, Fatal> {
    let commands = args.login.commands(&args.session)?;
    let addr = resolve(&args.session.target).await?;
    let hash = args.login.hash(&args.session).await?;
    let options = RsaOptions {
        hash_in_clear: !args.encrypt_hash,
    };
    let client = Client::connect_rsa(addr, args.login.dialect.into(), options)
        .await
        .map_err(|e| {
            let hint = match e {
                ClientError::KeyExchange { .. } => {
                    " (is --target a server of the RSA variant? kv-client talks to the TLS one)"
                }
                _ => "",
            };
            Fatal::setup(format!("{}{hint}", chain(&e)))
        })?;
    run_session(client, &args.session.id, &hash, commands).await
}

/// The first address `target` resolves to.
async fn resolve(target: &str) -> Result<SocketAddr, Fatal> {
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| Fatal::setup(format!("cannot resolve --target {target}: {e}")))?
        .next()
        .ok_or_else(|| Fatal::setup(format!("--target {target} resolves to no address")))
}

impl KvLoginArgs {
    /// The commands given as arguments (`None`: read them from stdin), once the id is
    /// checked.
    fn commands(&self, session: &KvSessionArgs) -> Result<Option<Vec<ClientCommand>>, Fatal> {
        if !is_valid_id(&session.id) {
            return Err(Fatal::setup(format!(
                "--id {:?} is not a valid client id: ids are non-empty ASCII without line feeds",
                session.id
            )));
        }
        if self.commands.is_empty() {
            return Ok(None);
        }
        parse_arguments(&self.commands)
            .map(Some)
            .map_err(Fatal::setup)
    }

    /// The PBKDF2 hash of the password (tens of milliseconds, off the async workers).
    async fn hash(&self, session: &KvSessionArgs) -> Result<[u8; 32], Fatal> {
        let password = session.password.clone();
        let salt = self.salt.0.clone();
        tokio::task::spawn_blocking(move || hash_password(password.as_bytes(), &salt))
            .await
            .map_err(|e| Fatal::setup(format!("cannot hash the password: {e}")))
    }
}

/// Logs in, runs the commands (from stdin if `None`), disconnects.
async fn run_session(
    mut client: Client,
    id: &str,
    hash: &[u8; 32],
    commands: Option<Vec<ClientCommand>>,
) -> Result<u8, Fatal> {
    client
        .login(id, hash)
        .await
        .map_err(|e| Fatal::failed(chain(&e)))?;

    let mut runner = Runner {
        client,
        failures: 0,
    };
    if let Some(commands) = commands {
        for command in commands {
            if !runner.run(command).await? {
                break;
            }
        }
    } else {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut number = 0;
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("error: cannot read standard input: {e}");
                    runner.failures += 1;
                    break;
                }
            };
            number += 1;
            match parse_line(&line) {
                Ok(None) => {}
                Ok(Some(command)) => {
                    if !runner.run(command).await? {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("error: line {number}: {e}");
                    runner.failures += 1;
                }
            }
        }
    }
    let failures = runner.failures;
    runner
        .client
        .disconnect()
        .await
        .map_err(|e| Fatal::failed(chain(&e)))?;
    Ok(if failures == 0 { 0 } else { FAILED })
}

/// Runs commands on a logged-in client, counting failures.
struct Runner {
    client: Client,
    failures: usize,
}

impl Runner {
    /// Runs one command; `Ok(false)` to stop (quit). Errors that leave the connection
    /// unusable end the program.
    async fn run(&mut self, command: ClientCommand) -> Result<bool, Fatal> {
        match command {
            ClientCommand::Quit => return Ok(false),
            ClientCommand::Put { key, value } => match self.client.put(&key, &value).await {
                Ok(()) => println!("PUT {key}: OK"),
                Err(e) => self.refused_or_fatal("PUT", &key, e)?,
            },
            ClientCommand::Get { key } => match self.client.get(&key).await {
                Ok(Some(value)) => {
                    println!(
                        "GET {key}: {value} (crc {} verified)",
                        crc32(value.as_bytes())
                    );
                }
                Ok(None) => println!("GET {key}: not found"),
                Err(e @ ClientError::CrcMismatch { .. }) => {
                    eprintln!("error: CRC MISMATCH: {e}");
                    self.failures += 1;
                }
                Err(e) => self.refused_or_fatal("GET", &key, e)?,
            },
            ClientCommand::Delete { key } => match self.client.delete(&key).await {
                Ok(()) => println!("DELETE {key}: OK"),
                Err(e) => self.refused_or_fatal("DELETE", &key, e)?,
            },
        }
        Ok(true)
    }

    fn refused_or_fatal(&mut self, command: &str, key: &str, e: ClientError) -> Result<(), Fatal> {
        self.failures += 1;
        match e {
            ClientError::Refused { .. } => {
                println!("{command} {key}: ERROR");
                Ok(())
            }
            ClientError::InvalidArgument { .. } | ClientError::TooLongForRsa { .. } => {
                eprintln!("error: {command} {key}: {}", chain(&e));
                Ok(())
            }
            e => Err(Fatal::failed(format!("{command} {key}: {}", chain(&e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::CommandFactory;
    use reference_impl::kv::auth::TEST_SALT;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_salt_is_the_spec_salt() {
        assert_eq!(TEST_SALT_HEX, hex::encode(TEST_SALT));
    }

    #[test]
    fn argument_commands() {
        assert_eq!(
            parse_arguments(&words("put colour blue GET colour delete colour")).unwrap(),
            vec![
                ClientCommand::Put {
                    key: "colour".into(),
                    value: "blue".into()
                },
                ClientCommand::Get {
                    key: "colour".into()
                },
                ClientCommand::Delete {
                    key: "colour".into()
                },
            ]
        );
        assert_eq!(
            parse_arguments(&words("put colour")).unwrap_err(),
            "`put` needs a value"
        );
        assert!(
            parse_arguments(&words("fetch x"))
                .unwrap_err()
                .starts_with("unknown command `fetch`")
        );
    }

    #[test]
    fn line_commands() {
        assert_eq!(
            parse_line("put note hello  world").unwrap(),
            Some(ClientCommand::Put {
                key: "note".into(),
                value: "hello  world".into()
            })
        );
        assert_eq!(
            parse_line("put empty").unwrap(),
            Some(ClientCommand::Put {
                key: "empty".into(),
                value: String::new()
            })
        );
        assert_eq!(parse_line("  # comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(parse_line("quit").unwrap(), Some(ClientCommand::Quit));
        assert_eq!(parse_line("get").unwrap_err(), "`get` needs a key");
    }

    #[test]
    fn host_of_target() {
        assert_eq!(host_of("127.0.0.1:4000"), "127.0.0.1");
        assert_eq!(host_of("localhost:4000"), "localhost");
        assert_eq!(host_of("[::1]:4000"), "::1");
    }
}
