//! The server under fuzz: at an address (left alone), started by the harness (restarted
//! when it dies, so findings can still be shrunk), or the built-in reference server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reference_impl::tls::ClientTrust;

use crate::protocol::{self, Protocol, ReferenceServer, TransportKind};
use crate::run::SetupError;
use crate::target::output::Exit;
use crate::target::server::{LOG_SHOWN, ManagedServer, ServerSpec, StartError};
use crate::transport::Transport;

/// Which server `harness fuzz` tests.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// A running server (`--target`).
    Address {
        addr: String,
        ca: Option<PathBuf>,
        insecure: bool,
        server_name: Option<String>,
    },
    /// A command the harness runs (`--exec`), with `{port}` and friends.
    Exec {
        command: String,
        startup_timeout: Duration,
    },
    /// The protocol's built-in reference server (neither given).
    Reference,
}

/// The server under fuzz while it runs.
pub(super) struct Target {
    kind: Kind,
    pub transport: Transport,
    pub description: String,
    /// Variables only the running server knows (a chat server's data port).
    pub vars: BTreeMap<String, String>,
}

enum Kind {
    Address(String),
    Exec {
        spec: ServerSpec,
        server: Option<ManagedServer>,
        /// How often the harness started it.
        starts: u32,
    },
    Reference(Option<ReferenceServer>),
}

/// Why the target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(
        "the {protocol} protocol speaks TLS: pass --ca FILE with the target's certificate (PEM) to verify it, or --insecure to accept any certificate"
    )]
    NoTrust { protocol: &'static str },
    #[error("cannot reach the target at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the target could not be started: {error}{}", log_of(.log))]
    Start { error: String, log: Vec<String> },
}

fn log_of(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("\n  its output:\n    {}", log.join("\n    "))
    }
}

impl From<StartError> for TargetError {
    fn from(e: StartError) -> Self {
        TargetError::Start {
            log: e.log().to_vec(),
            error: e.to_string(),
        }
    }
}

impl Target {
    pub async fn start(
        choice: &TargetChoice,
        protocol: &'static Protocol,
        reference_settings: &BTreeMap<String, String>,
        time_scale: f64,
    ) -> Result<Self, TargetError> {
        match choice {
            TargetChoice::Address {
                addr,
                ca,
                insecure,
                server_name,
            } => {
                let transport = match protocol.transport {
                    TransportKind::Tls => {
                        let trust = match (ca, insecure) {
                            (_, true) => ClientTrust::InsecureAcceptAny,
                            (Some(path), false) => ClientTrust::Roots(crate::run::load_ca(path)?),
                            (None, false) => {
                                return Err(TargetError::NoTrust {
                                    protocol: protocol.name,
                                });
                            }
                        };
                        crate::run::tls_transport(addr, trust, server_name.as_deref())?
                    }
                    TransportKind::Rsa => Transport::Rsa,
                    TransportKind::Tcp => Transport::Tcp,
                };
                if let Err(e) = reachable(addr, Duration::from_secs(5)).await {
                    return Err(TargetError::Unreachable {
                        addr: addr.clone(),
                        reason: e,
                    });
                }
                Ok(Self {
                    kind: Kind::Address(addr.clone()),
                    transport,
                    description: addr.clone(),
                    vars: BTreeMap::new(),
                })
            }
            TargetChoice::Exec {
                command,
                startup_timeout,
            } => {
                crate::target::client::check_server_command(command)
                    .map_err(SetupError::ClientCommand)?;
                let spec = ServerSpec {
                    command: command.clone(),
                    vars: BTreeMap::new(),
                    startup_timeout: startup_timeout.mul_f64(time_scale),
                    ports: protocol.ports,
                };
                let server = ManagedServer::start(&spec).await?;
                let transport = match protocol.transport {
                    // A server the harness started has whatever certificate its author made.
                    TransportKind::Tls => crate::run::tls_transport(
                        "127.0.0.1:0",
                        ClientTrust::InsecureAcceptAny,
                        None,
                    )?,
                    TransportKind::Rsa => Transport::Rsa,
                    TransportKind::Tcp => Transport::Tcp,
                };
                Ok(Self {
                    description: format!("`{}`", server.command),
                    kind: Kind::Exec {
                        spec,
                        server: Some(server),
                        starts: 1,
                    },
                    transport,
                    vars: BTreeMap::new(),
                })
            }
            TargetChoice::Reference => {
                let server = protocol::start_reference(protocol, reference_settings)
                    .await
                    .map_err(SetupError::from)?;
                let transport = reference_transport(protocol, &server)?;
                Ok(Self {
                    description: format!("{} at {}", server.description, server.addr),
                    vars: server.vars.clone(),
                    kind: Kind::Reference(Some(server)),
                    transport,
                })
            }
        }
    }

    /// Where the target listens now.
    pub fn addr(&self) -> String {
        match &self.kind {
            Kind::Address(a) => a.clone(),
            Kind::Exec { server, .. } => server
                .as_ref()
                .map_or_else(|| "127.0.0.1:0".to_owned(), |s| s.addr.to_string()),
            Kind::Reference(r) => r.as_ref().map(|r| r.addr.to_string()).unwrap_or_default(),
        }
    }

    /// Whether the harness can start the target again after it dies.
    pub fn restartable(&self) -> bool {
        matches!(self.kind, Kind::Exec { .. })
    }

    /// How the target ended, if the harness started it and it ends within `grace`: a
    /// server that just closed every connection may be exiting.
    pub async fn exited_within(&self, grace: Duration) -> Option<Exit> {
        let Kind::Exec {
            server: Some(s), ..
        } = &self.kind
        else {
            return None;
        };
        s.watch().exit_by(tokio::time::Instant::now() + grace).await
    }

    /// What the target printed last (a started target only).
    pub fn log_tail(&self) -> Vec<String> {
        match &self.kind {
            Kind::Exec {
                server: Some(s), ..
            } => s.log_tail(LOG_SHOWN),
            _ => Vec::new(),
        }
    }

    /// How often the harness started the target.
    pub fn starts(&self) -> u32 {
        match &self.kind {
            Kind::Exec { starts, .. } => *starts,
            _ => 0,
        }
    }

    /// Starts a fresh process when the harness's one has ended (or when `fresh` asks for
    /// one: a hung server gets replaced).
    pub async fn ensure_up(&mut self, fresh: bool) -> Result<(), TargetError> {
        if let Kind::Exec {
            spec,
            server,
            starts,
        } = &mut self.kind
        {
            let dead = server.as_ref().is_none_or(|s| s.exit().is_some());
            if dead || fresh {
                if let Some(old) = server.take() {
                    old.stop().await;
                }
                *server = Some(ManagedServer::start(spec).await?);
                *starts += 1;
            }
        }
        Ok(())
    }

    pub async fn stop(self) {
        match self.kind {
            Kind::Exec {
                server: Some(s), ..
            } => s.stop().await,
            Kind::Reference(Some(r)) => r.stop().await,
            _ => {}
        }
    }
}

/// Whether `addr` accepts a TCP connection within `within`; if not, why.
pub(super) async fn reachable(addr: &str, within: Duration) -> Result<(), String> {
    match tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connection refused: is the server running and listening there?".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(within)
        )),
    }
}

/// The transport to a reference server running in this process (its certificate trusted).
pub(super) fn reference_transport(
    protocol: &Protocol,
    server: &ReferenceServer,
) -> Result<Transport, SetupError> {
    match protocol.transport {
        TransportKind::Tls => {
            let trust = ClientTrust::Roots(server.certificate.clone().into_iter().collect());
            crate::run::tls_transport(&server.addr.to_string(), trust, None)
        }
        TransportKind::Rsa => Ok(Transport::Rsa),
        TransportKind::Tcp => Ok(Transport::Tcp),
    }
}
