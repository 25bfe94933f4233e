//! The client under test, when the harness plays the server (`harness serve`): a command the
//! harness starts for each scenario, the protocol's reference client run in this process, or
//! a person who starts their client by hand.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::output::{self, Exit, OutputWatch};
use super::process::{Process, SpawnError};

/// What a client run in this process printed and its exit code.
#[derive(Debug, Clone, Default)]
pub struct ClientResult {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A client run in this process: given the address to connect to and the scenario's
/// variables, it runs one session.
pub type InProcessClient = Arc<
    dyn Fn(
            SocketAddr,
            &BTreeMap<String, String>,
        ) -> Pin<Box<dyn Future<Output = ClientResult> + Send>>
        + Send
        + Sync,
>;

/// How the client under test is started for each scenario.
#[derive(Clone)]
pub enum ClientSpec {
    /// A person starts it; the harness only listens.
    Person,
    /// A shell command with `{host}`, `{port}`, `{addr}` and `{VAR}` (any variable of the
    /// scenario) replaced.
    Command(String),
    /// A client in this process (the protocol's reference client, or a test's).
    InProcess {
        client: InProcessClient,
        description: String,
    },
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSpec::Person => f.write_str("Person"),
            ClientSpec::Command(c) => f.debug_tuple("Command").field(c).finish(),
            ClientSpec::InProcess { description, .. } => {
                f.debug_tuple("InProcess").field(description).finish()
            }
        }
    }
}

impl ClientSpec {
    /// One line describing the client, for reports.
    pub fn describe(&self) -> String {
        match self {
            ClientSpec::Person => "a client started by hand".to_owned(),
            ClientSpec::Command(c) => format!("`{c}`"),
            ClientSpec::InProcess { description, .. } => description.clone(),
        }
    }

    /// Whether the harness starts the client (and so can see its output and exit).
    pub fn is_started_by_harness(&self) -> bool {
        !matches!(self, ClientSpec::Person)
    }
}

/// Why the client could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("{0}")]
    Placeholder(String),
}

/// A client started for one scenario.
#[derive(Debug)]
pub struct RunningClient {
    watch: OutputWatch,
    stop: Stop,
    pub description: String,
}

#[derive(Debug)]
enum Stop {
    Process(Process),
    Task(tokio::task::JoinHandle<()>),
}

impl RunningClient {
    /// Starts the client of `spec` to connect to `addr`. `None` for a person.
    pub fn start(
        spec: &ClientSpec,
        addr: SocketAddr,
        vars: &BTreeMap<String, String>,
    ) -> Result<Option<RunningClient>, StartError> {
        match spec {
            ClientSpec::Person => Ok(None),
            ClientSpec::Command(template) => {
                let command =
                    expand_command(template, addr, vars).map_err(StartError::Placeholder)?;
                let process = Process::spawn(&command, None)?;
                Ok(Some(RunningClient {
                    watch: process.watch(),
                    description: format!("`{command}`"),
                    stop: Stop::Process(process),
                }))
            }
            ClientSpec::InProcess {
                client,
                description,
            } => {
                let (sink, watch) = output::channel(0);
                let session = client(addr, vars);
                let task = tokio::spawn(async move {
                    let result = session.await;
                    sink.feed(false, &result.stdout);
                    sink.feed(true, &result.stderr);
                    sink.abandon_streams();
                    sink.exited(Exit::Code(result.code));
                });
                Ok(Some(RunningClient {
                    watch,
                    description: description.clone(),
                    stop: Stop::Task(task),
                }))
            }
        }
    }

    /// What it printed and whether it ended.
    pub fn watch(&self) -> OutputWatch {
        self.watch.clone()
    }

    /// Stops it (if it still runs) and waits for it to be gone.
    pub async fn stop(self) {
        match self.stop {
            Stop::Process(p) => p.stop().await,
            Stop::Task(t) => {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

/// Replaces `{host}`, `{port}`, `{addr}` and `{VAR}` for every variable in `vars`. Braces
/// around any other name are left alone (they may be the shell's, as in `${HOME}`). Values
/// that the shell would split or interpret are single-quoted.
pub fn expand_command(
    template: &str,
    addr: SocketAddr,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut fixed = BTreeMap::new();
    fixed.insert("host", addr.ip().to_string());
    fixed.insert("port", addr.port().to_string());
    fixed.insert("addr", addr.to_string());
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let closed = after[name_len..].starts_with('}');
        let value = if closed && !name.is_empty() {
            fixed.get(name).cloned().or_else(|| vars.get(name).cloned())
        } else {
            None
        };
        match value {
            Some(v) => {
                out.push_str(&shell_quote(&v));
                rest = &after[name_len + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    check_command(template)?;
    Ok(out)
}

/// Whether a client command says where to connect (`{port}` or `{addr}`).
pub fn check_command(template: &str) -> Result<(), String> {
    check_where(
        template,
        "client command",
        "connect",
        "'python3 client.py --host={host} --port={port}'",
    )
}

/// Checks that a server's command line says where to listen.
pub fn check_server_command(template: &str) -> Result<(), String> {
    check_where(
        template,
        "server command",
        "listen",
        "'./server --port {port}'",
    )
}

/// `template` has `{port}` or `{addr}`; else an error naming the command (`what`), what it
/// must say where to do (`does`), and an example `--exec` value.
fn check_where(template: &str, what: &str, does: &str, example: &str) -> Result<(), String> {
    if template.contains("{port}") || template.contains("{addr}") {
        return Ok(());
    }
    Err(format!(
        "the {what} `{template}` does not say where to {does}: put {{port}} (or {{addr}}) in \
         it, e.g. --exec {example}"
    ))
}

/// `v` as one shell word: as it is when nothing in it is special to `sh`, else in single
/// quotes.
pub fn shell_quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@%+=,-".contains(&b));
    if plain {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_quoted() {
        let addr: SocketAddr = "127.0.0.1:4123".parse().expect("addr");
        let mut vars = BTreeMap::new();
        vars.insert("sid".to_owned(), "20201234".to_owned());
        vars.insert("name".to_owned(), "it's me".to_owned());
        let got = expand_command(
            "python3 client.py --host={host} --port={port} --studentID={sid} -n {name} ${HOME} {nope}",
            addr,
            &vars,
        );
        assert_eq!(
            got.as_deref(),
            Ok(
                "python3 client.py --host=127.0.0.1 --port=4123 --studentID=20201234 -n 'it'\\''s me' ${HOME} {nope}"
            )
        );
        let err = expand_command("python3 client.py", addr, &vars).expect_err("no port");
        assert!(err.contains("{port}"), "{err}");
    }
}
