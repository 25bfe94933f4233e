//! Runs one scenario against one target: opens the named connections, performs the steps in
//! order, and turns the first step that does not hold into a [`Failure`] pointing at it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::{
    Answered, CloseKind, Connection, Incoming, Partial, RecvError, Responder, ResponderMatch,
};
use super::framing::{Frame, Framing};
use super::json_match;
use super::outcome::{Failure, Outcome, ScenarioResult};
use super::transcript::{Data, EntryKind, Transcript, abbreviate, show_bytes};
use crate::protocol::PacketFormat;
use crate::scenario::model::{
    Bisect, Clear, ConnectKey, Expect, KeySpec, Matcher, PacketSpec, Payload, Scenario, Send, Span,
    Step, StepKind, Template,
};
use crate::scenario::step::OTHERS;
use crate::scenario::template::{self, Env};
use crate::target::output::OutputWatch;
use crate::transport::{self, KeyOffer, Transport};

/// The name transcripts give the client under test's process.
pub const CLIENT: &str = "client";

/// Compiled regular expressions a scenario keeps (patterns with templates can vary).
const MAX_CACHED_REGEXES: usize = 256;

/// Events of another connection a timeout puts in the transcript, at most.
const UNREAD_KEPT: usize = 100;

/// How long `close:` waits for the target to close its side after we closed ours.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Where and how to reach the target, and the settings every scenario of a run shares.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// `host:port` of the target.
    pub addr: String,
    pub transport: Transport,
    /// Variables below the scenario's own (protocol defaults, then suite vars).
    pub base_vars: BTreeMap<String, String>,
    /// Variables above the scenario's own (profile, then `--var`).
    pub override_vars: BTreeMap<String, String>,
    /// Replaces every scenario's default expectation deadline (`--timeout`).
    pub timeout: Option<Duration>,
    /// Bound on connecting and on the TLS handshake.
    pub connect_timeout: Duration,
    /// Largest message the harness accepts from the target.
    pub recv_limit: usize,
    /// Compare `HEADER <json>` messages by their JSON bodies (the protocol's choice).
    pub json_bodies: bool,
    /// How the protocol delimits messages.
    pub framing: Framing,
    /// The protocol's packets, for `packet:` steps.
    pub packet: Option<&'static dyn PacketFormat>,
    /// Every deadline is multiplied by this (`--time-scale`, for slow machines).
    pub time_scale: f64,
}

/// A step that did not hold.
struct StepError {
    outcome: Outcome,
    /// Boxed: a step's `Result` stays small on the happy path.
    failure: Box<Failure>,
}

impl StepError {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            failure: Box::new(Failure {
                message: message.into(),
                ..Failure::default()
            }),
        }
    }
    fn failed(message: impl Into<String>) -> Self {
        Self::new(Outcome::Failed, message)
    }
    fn label(mut self, label: impl Into<String>) -> Self {
        self.failure.label = Some(label.into());
        self
    }
    fn help(mut self, help: impl Into<String>) -> Self {
        self.failure.help = Some(help.into());
        self
    }
    fn span(mut self, span: Span) -> Self {
        self.failure.span = Some(span);
        self
    }
    /// The target closed, reset or refused the connection.
    fn gone(mut self) -> Self {
        self.failure.gone = true;
        self
    }
}

/// Where a scenario's connections come from.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    /// The harness connects to the target at the settings' address.
    Server,
    /// The harness plays the server: it accepts the connections of the client under test.
    Client(&'a ClientPeer<'a>),
}

/// The client under test, for a scenario the harness plays as the server.
#[derive(Debug)]
pub struct ClientPeer<'a> {
    pub listener: &'a tokio::net::TcpListener,
    /// The client's output and exit, when the harness started it (`None` when a person did).
    pub output: Option<OutputWatch>,
    /// How long a connection may take to arrive when a step waits for one.
    pub accept_timeout: Duration,
}

/// Lines of the client's output a failure shows.
const OUTPUT_SHOWN: usize = 8;

/// Runs `scenario` to its end. Never panics on anything the target does.
pub async fn run_scenario(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
) -> ScenarioResult {
    run_scenario_with(scenario, settings, uniq, Peer::Server).await
}

/// Runs `scenario` with the harness on either side of the protocol.
pub async fn run_scenario_with(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
    peer: Peer<'_>,
) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        id: scenario.id.clone(),
        title: scenario.title.clone(),
        spec: scenario.spec.clone(),
        tags: scenario.tags.clone(),
        level: scenario.level,
        file: scenario.source.path.clone(),
        line: scenario.span.line,
        outcome: Outcome::Passed,
        duration: Duration::ZERO,
        points: 0,
        max_points: scenario.points,
        reason: scenario.skip.clone().or_else(|| scenario.xfail.clone()),
        failure: None,
        transcript: Transcript::default(),
        uniq: uniq.clone(),
        source: scenario.source.clone(),
        hidden: scenario.hidden,
        flaky: false,
    };
    if scenario.skip.is_some() {
        result.outcome = Outcome::Skipped;
        return result;
    }

    let mut exec = Exec::new(scenario, settings, uniq, started, peer);
    let mut outcome = Outcome::Passed;
    for (index, step) in scenario.steps.iter().enumerate() {
        if let Err(mut e) = exec.step(step).await {
            e.failure.step = Some(index);
            e.failure.span.get_or_insert(step.span);
            outcome = e.outcome;
            result.failure = Some(*e.failure);
            break;
        }
    }
    exec.finish().await;
    let exec_earned = exec.earned;
    result.transcript = exec.transcript;
    result.duration = started.elapsed();
    result.outcome = match (outcome, scenario.xfail.is_some()) {
        (Outcome::Passed, true) => Outcome::UnexpectedPass,
        (Outcome::Passed, false) => Outcome::Passed,
        (_, true) => Outcome::ExpectedFailure,
        (other, false) => other,
    };
    if result.outcome == Outcome::UnexpectedPass {
        result.failure = Some(Failure {
            message: "the scenario is marked xfail but passed".into(),
            span: Some(scenario.span),
            help: Some("remove `xfail:` if the behaviour is now correct".into()),
            ..Failure::default()
        });
    }
    result.points = match result.outcome {
        Outcome::Passed => scenario.points,
        // Checkpoints reached before the failure earn their points.
        Outcome::Failed | Outcome::TimedOut | Outcome::Error => exec_earned,
        _ => 0,
    };
    result
}

/// Settings derived from variables.
struct Exec<'a> {
    scenario: &'a Scenario,
    settings: &'a ExecSettings,
    env: Env,
    conns: BTreeMap<String, Connection>,
    transcript: Transcript,
    started: Instant,
    line_end: Vec<u8>,
    require_line_end: bool,
    timeout: Duration,
    /// The connection of the latest send: who `others` leaves out.
    last_sender: Option<String>,
    /// Connections whose last step was a send, nothing received since (for `gap:`).
    sent_last: std::collections::BTreeSet<String>,
    /// The background rules with replies, once expanded.
    responders: Option<Arc<[Responder]>>,
    /// Compiled regular expressions by pattern.
    regexes: std::cell::RefCell<std::collections::HashMap<String, regex::bytes::Regex>>,
    peer: Peer<'a>,
    /// Points of the checkpoints reached so far.
    earned: u32,
}

impl<'a> Exec<'a> {
    fn new(
        scenario: &'a Scenario,
        settings: &'a ExecSettings,
        uniq: String,
        started: Instant,
        peer: Peer<'a>,
    ) -> Self {
        let mut env = Env::default();
        let layers = [&settings.base_vars, &scenario.vars, &settings.override_vars];
        for layer in layers {
            for (k, v) in layer {
                env.set(k.clone(), v.clone().into_bytes());
            }
        }
        env.set("uniq".to_owned(), uniq.into_bytes());
        let line_end = env
            .get("line_end")
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| b"\n".to_vec());
        let require_line_end = env
            .get("require_line_end")
            .map(|v| !matches!(v, b"false" | b"no" | b"0"))
            .unwrap_or(!line_end.is_empty());
        Self {
            scenario,
            settings,
            env,
            conns: BTreeMap::new(),
            transcript: Transcript {
                binary: settings.framing != Framing::Lines,
                serving: matches!(peer, Peer::Client(_)),
                ..Transcript::default()
            },
            started,
            line_end,
            require_line_end,
            timeout: settings
                .timeout
                .unwrap_or(scenario.timeout)
                .mul_f64(settings.time_scale),
            last_sender: None,
            sent_last: Default::default(),
            responders: None,
            regexes: Default::default(),
            peer,
            earned: 0,
        }
    }

    /// A step's deadline: its own `within` or the scenario's, stretched by `--time-scale`.
    fn within(&self, within: Option<Duration>) -> Duration {
        within.map_or(self.timeout, |d| d.mul_f64(self.settings.time_scale))
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn at(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.started)
    }

    async fn step(&mut self, step: &Step) -> Result<(), StepError> {
        match &step.kind {
            StepKind::Connect { conn, port, key } => {
                if self.conns.contains_key(conn) {
                    return Err(StepError::new(
                        Outcome::Error,
                        format!("connection `{conn}` is already open"),
                    ));
                }
                let addr = match port {
                    Some(t) => self.addr_with_port(t)?,
                    None => self.settings.addr.clone(),
                };
                let offer = match key {
                    Some(key) => self.key_offer(key).await?,
                    None => KeyOffer::Fresh,
                };
                self.open_at(conn, &addr, &offer).await
            }
            StepKind::Bisect(b) => self.bisect(b).await,
            StepKind::Send(send) => self.send(send).await,
            StepKind::Expect(expect) => self.expect(expect).await,
            StepKind::AnyOrder(steps) => self.any_order(steps).await,
            StepKind::ExpectClose { conn, within } => {
                self.expect_close(conn, self.within(*within)).await
            }
            StepKind::ExpectSilence { conn, duration } => {
                self.expect_silence(conn.as_deref(), *duration).await
            }
            StepKind::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            StepKind::Close { conn } => {
                self.close(conn).await;
                Ok(())
            }
            StepKind::Points(n) => {
                self.earned = self.earned.saturating_add(*n);
                Ok(())
            }
            StepKind::Accept { conn, within } => {
                if self.conns.contains_key(conn) {
                    return Err(StepError::new(
                        Outcome::Error,
                        format!("connection `{conn}` is already open"),
                    ));
                }
                self.accept(conn, *within).await
            }
            StepKind::ExpectExit { code, within } => {
                self.expect_exit(*code, self.within(*within)).await
            }
            StepKind::ExpectOutput {
                matcher,
                stderr,
                within,
            } => {
                self.expect_output(matcher, *stderr, self.within(*within))
                    .await
            }
            StepKind::Shutdown { conn } => {
                let timeout = self.timeout;
                self.conn(conn).await?.shutdown(timeout).await;
                let at = self.elapsed();
                self.transcript.push(at, conn, EntryKind::ShutDownByUs);
                Ok(())
            }
        }
    }

    async fn open(&mut self, name: &str) -> Result<(), StepError> {
        if let Peer::Client(_) = self.peer {
            return self.accept(name, None).await;
        }
        let addr = self.settings.addr.clone();
        self.open_at(name, &addr, &KeyOffer::Fresh).await
    }

    /// What `connect: { key: ... }` offers as the client's key.
    /// (`&mut self`: the future stays `Send` while it waits for the key.)
    async fn key_offer(&mut self, key: &ConnectKey) -> Result<KeyOffer, StepError> {
        if !matches!(self.settings.transport, Transport::Rsa) {
            return Err(StepError::new(
                Outcome::Error,
                format!(
                    "`key` applies to connections with an RSA key exchange (kv-rsa), not to {} connections",
                    self.settings.transport.name()
                ),
            )
            .span(key.span));
        }
        match &key.offer {
            KeySpec::None => Ok(KeyOffer::None),
            KeySpec::Bytes(t) => {
                // `rsa_key(4096)` takes a while: off the runtime's threads.
                let (t, env) = (t.clone(), self.env.clone());
                let expanded = tokio::task::spawn_blocking(move || {
                    template::eval(&t, &env).map_err(|e| (t, e))
                })
                .await
                .map_err(|e| StepError::new(Outcome::Error, e.to_string()))?;
                match expanded {
                    Ok(bytes) => Ok(KeyOffer::Raw(bytes)),
                    Err((t, e)) => Err(template_error(&t, &e)),
                }
            }
        }
    }

    /// Waits for the client under test to open a connection, which becomes `name`.
    async fn accept(&mut self, name: &str, within: Option<Duration>) -> Result<(), StepError> {
        let Peer::Client(client) = self.peer else {
            return Err(StepError::new(
                Outcome::Error,
                "`accept` needs the harness to play the server (`role: server`)",
            ));
        };
        let wait = within
            .unwrap_or(client.accept_timeout)
            .mul_f64(self.settings.time_scale);
        let deadline = Instant::now() + wait;
        let mut output = client.output.clone();
        let exited = async {
            match output.as_mut() {
                Some(watch) => loop {
                    if let Some((_, exit)) = watch.with(|o| o.exit) {
                        return exit;
                    }
                    if !watch.changed(deadline + Duration::from_secs(1)).await {
                        std::future::pending::<()>().await;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            accepted = client.listener.accept() => accepted,
            exit = exited => {
                let mut e = StepError::failed(format!(
                    "the client ended ({exit}) before it opened connection `{name}`"
                ))
                .label("no connection came");
                e.failure.help = self.output_help(true);
                return Err(e);
            }
            () = tokio::time::sleep_until(deadline) => {
                let label = format!("no connection within {}", humantime::format_duration(wait));
                let mut e = StepError::new(
                    Outcome::TimedOut,
                    format!("the client did not open connection `{name}`"),
                )
                .label(label);
                let listening = client
                    .listener
                    .local_addr()
                    .map_or_else(|_| "the listening address".to_owned(), |a| a.to_string());
                e.failure.help = self.output_help(true).or_else(|| {
                    Some(if client.output.is_some() {
                        format!(
                            "the client printed nothing; does it connect where it is told ({listening}, given as {{host}} and {{port}})?"
                        )
                    } else {
                        format!("start the client against {listening}, or give its command with --exec")
                    })
                });
                return Err(e);
            }
        };
        match accepted {
            Ok((tcp, from)) => {
                let _ = tcp.set_nodelay(true);
                self.env
                    .set(format!("peer_addr_{name}"), from.to_string().into_bytes());
                let at = self.elapsed();
                self.transcript.push(
                    at,
                    name,
                    EntryKind::Accepted {
                        from: from.to_string(),
                    },
                );
                let responders = self.responders()?;
                let s = self.settings;
                let conn = Connection::start(
                    Box::new(tcp),
                    None,
                    s.framing,
                    self.scenario.quiet,
                    s.recv_limit,
                    responders,
                );
                self.conns.insert(name.to_owned(), conn);
                Ok(())
            }
            Err(e) => Err(StepError::new(
                Outcome::Error,
                format!("accepting connection `{name}` failed: {e}"),
            )),
        }
    }

    /// The client's output watch, or `None` when a person started it.
    fn client_output(&self) -> Option<OutputWatch> {
        match self.peer {
            Peer::Client(c) => c.output.clone(),
            Peer::Server => None,
        }
    }

    /// The last lines of the client's stderr (or stdout when `stderr` is false and stderr is
    /// empty), as help text for a failure.
    fn output_help(&self, stderr: bool) -> Option<String> {
        let watch = self.client_output()?;
        watch.with(|o| {
            let mut lines = o.tail(stderr, OUTPUT_SHOWN);
            let mut which = if stderr { "stderr" } else { "stdout" };
            if lines.is_empty() {
                lines = o.tail(!stderr, OUTPUT_SHOWN);
                which = if stderr { "stdout" } else { "stderr" };
            }
            (!lines.is_empty()).then(|| {
                format!(
                    "the client's last lines of {which}:\n{}",
                    lines
                        .iter()
                        .map(|l| format!("  | {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
        })
    }

    /// Records that a step about the client process was not checked (a person started it).
    fn not_checked(&mut self, what: &str) {
        let at = self.elapsed();
        self.transcript.push(
            at,
            CLIENT,
            EntryKind::NotChecked {
                what: what.to_owned(),
            },
        );
    }

    async fn expect_exit(&mut self, code: Option<i32>, within: Duration) -> Result<(), StepError> {
        let Some(mut watch) = self.client_output() else {
            self.not_checked("its exit");
            return Ok(());
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some((_, exit)) = watch.with(|o| o.exit) {
                return match code {
                    Some(c) if exit.code() != Some(c) => {
                        let mut e = StepError::failed(format!(
                            "the client ended with {exit}, expected exit code {c}"
                        ))
                        .label(format!("{exit}"));
                        e.failure.expected = Some(format!("exit code {c}"));
                        e.failure.actual = Some(exit.to_string());
                        e.failure.help = self.output_help(true);
                        Err(e)
                    }
                    _ => Ok(()),
                };
            }
            if !watch.changed(deadline).await {
                let mut e = StepError::new(
                    Outcome::TimedOut,
                    format!(
                        "the client was still running after {}",
                        humantime::format_duration(within)
                    ),
                )
                .label("it did not exit");
                e.failure.help = self.output_help(true);
                return Err(e);
            }
        }
    }

    async fn expect_output(
        &mut self,
        m: &Matcher,
        stderr: bool,
        within: Duration,
    ) -> Result<(), StepError> {
        let Some(mut watch) = self.client_output() else {
            self.not_checked("its output");
            return Ok(());
        };
        let stream = if stderr { "stderr" } else { "stdout" };
        let wanted = self.describe(m)?.replacen("a message", "a line", 1);
        // "a line matching `...`", or "the line \"...\"".
        let what = if wanted.starts_with("a line") {
            wanted.clone()
        } else {
            format!("the line {wanted}")
        };
        let deadline = Instant::now() + within;
        let mut seen = 0;
        loop {
            let (lines, finished, exit) = watch.with(|o| {
                let lines: Vec<String> = o
                    .lines
                    .iter()
                    .filter(|l| l.stderr == stderr)
                    .skip(seen)
                    .map(|l| l.text.clone())
                    .collect();
                (lines, o.finished(), o.exit.map(|e| e.1))
            });
            for line in lines {
                seen += 1;
                let frame = Frame {
                    data: line.into_bytes(),
                    terminated: true,
                };
                if self.check(m, &frame, &wanted, false).is_ok() {
                    return Ok(());
                }
            }
            let last = watch.with(|o| {
                let lines = o.tail(stderr, OUTPUT_SHOWN);
                if lines.is_empty() {
                    format!("nothing on {stream}")
                } else {
                    lines.join("\n")
                }
            });
            if finished {
                let exit = exit.map_or_else(|| "ended".to_owned(), |e| e.to_string());
                let mut e = StepError::failed(format!(
                    "the client ended ({exit}) without printing {what} on {stream}"
                ))
                .label(format!("no such line on {stream}"));
                e.failure.expected = Some(wanted.clone());
                e.failure.actual = Some(last);
                return Err(e);
            }
            if !watch.changed(deadline).await {
                let mut e = StepError::new(
                    Outcome::TimedOut,
                    format!(
                        "the client did not print {what} on {stream} within {}",
                        humantime::format_duration(within)
                    ),
                )
                .label(format!("no such line on {stream}"));
                e.failure.expected = Some(wanted.clone());
                e.failure.actual = Some(last);
                return Err(e);
            }
        }
    }

    /// The target's host with the port a `connect: { port: ... }` names: a number, or `+N`
    /// (`-N`) from the target's own port.
    fn addr_with_port(&self, t: &Template) -> Result<String, StepError> {
        let text = String::from_utf8_lossy(&self.expand(t)?).trim().to_owned();
        let addr = &self.settings.addr;
        let (host, base) = addr.rsplit_once(':').unwrap_or((addr.as_str(), ""));
        let base: i64 = base.parse().unwrap_or(0);
        let port = match text.strip_prefix('+') {
            Some(n) => n.parse::<i64>().map(|n| base + n),
            None => match text.strip_prefix('-') {
                Some(n) => n.parse::<i64>().map(|n| base - n),
                None => text.parse::<i64>(),
            },
        };
        match port {
            Ok(p) if (1..=65535).contains(&p) => Ok(format!("{host}:{p}")),
            _ => Err(StepError::new(
                Outcome::Error,
                format!("`port: {text}` is not a port (1-65535) or an offset such as +1"),
            )
            .span(t.span)),
        }
    }

    async fn open_at(&mut self, name: &str, addr: &str, offer: &KeyOffer) -> Result<(), StepError> {
        let s = self.settings;
        match transport::connect_with(addr, &s.transport, s.connect_timeout, offer).await {
            Ok(transport::Connected {
                stream,
                local,
                cipher,
            }) => {
                // `{{local_addr_C}}`: where the target sees connection `C` come from.
                if let Some(local) = local {
                    self.env
                        .set(format!("local_addr_{name}"), local.to_string().into_bytes());
                }
                let at = self.elapsed();
                self.transcript.push(
                    at,
                    name,
                    EntryKind::Connected {
                        addr: addr.to_owned(),
                        transport: s.transport.name().to_owned(),
                    },
                );
                if matches!(s.transport, Transport::Rsa) {
                    let keys = match (&cipher, offer) {
                        (Some(c), _) => EntryKind::KeysExchanged { bits: c.bits() },
                        (None, KeyOffer::Raw(bytes)) => EntryKind::KeyOffered {
                            data: Data::new(bytes),
                            bits: transport::rsa::key_bits(bytes),
                        },
                        (None, _) => EntryKind::NoKeyExchange,
                    };
                    self.transcript.push(at, name, keys);
                }
                let responders = self.responders()?;
                let conn = Connection::start(
                    stream,
                    cipher,
                    s.framing,
                    self.scenario.quiet,
                    s.recv_limit,
                    responders,
                );
                self.conns.insert(name.to_owned(), conn);
                Ok(())
            }
            Err(e) => {
                let at = self.elapsed();
                self.transcript.push(
                    at,
                    name,
                    EntryKind::ConnectFailed {
                        reason: e.to_string(),
                    },
                );
                let mut err = StepError::new(Outcome::Error, e.to_string())
                    .label(format!("connection `{name}` could not be opened"));
                if e.target_gone() {
                    err = err.gone();
                }
                if let Some(help) = e.help() {
                    err = err.help(help);
                }
                Err(err)
            }
        }
    }

    async fn conn(&mut self, name: &str) -> Result<&mut Connection, StepError> {
        if !self.conns.contains_key(name) {
            self.open(name).await?;
        }
        self.conns.get_mut(name).ok_or_else(|| {
            StepError::new(Outcome::Error, format!("connection `{name}` is not open"))
        })
    }

    fn expand(&self, t: &Template) -> Result<Vec<u8>, StepError> {
        template::eval(t, &self.env).map_err(|e| template_error(t, &e))
    }

    /// Whether a send goes out unencrypted, as its `clear:` says.
    fn clear(&self, clear: &Clear) -> Result<bool, StepError> {
        match clear {
            Clear::No => Ok(false),
            Clear::Yes => Ok(true),
            Clear::Template(t) => match self.expand(t)?.as_slice() {
                b"true" => Ok(true),
                b"false" => Ok(false),
                other => Err(StepError::new(
                    Outcome::Error,
                    format!(
                        "`clear` must expand to `true` or `false`, found {}",
                        abbreviate(&show_bytes(other), 80)
                    ),
                )
                .span(t.span)
                .help("set the variable to true or false (in the suite's vars, a profile, or --var NAME=true)")),
            },
        }
    }

    async fn send(&mut self, send: &Send) -> Result<(), StepError> {
        let bytes = match &send.payload {
            Payload::Line(t) => {
                let mut b = self.renamed(self.expand(t)?);
                b.extend_from_slice(&self.line_end);
                b
            }
            Payload::Bytes(t) => self.expand(t)?,
            Payload::Hex(t) => decode_hex(&self.expand(t)?, t)?,
            Payload::Packet(p) => match send.chunk {
                None => self.encode_packet(p)?,
                Some(size) => {
                    let (bytes, offsets) = self.encode_packets(p, size)?;
                    return self.write_pieces(send, bytes, &offsets).await;
                }
            },
        };
        let split = send.split.clone();
        self.write_pieces(send, bytes, &split).await
    }

    /// Writes `bytes` cut at `offsets`, one write each, and records it. On an encrypted
    /// connection `bytes` go out as one RSA block (unless the send is `clear`), and the
    /// offsets cut the block.
    async fn write_pieces(
        &mut self,
        send: &Send,
        bytes: Vec<u8>,
        offsets: &[usize],
    ) -> Result<(), StepError> {
        let clear = self.clear(&send.clear)?;
        let timeout = self.timeout;
        // Pause-framed protocols: two sends in a row need a pause between them.
        if !self.scenario.gap.is_zero() && !self.sent_last.insert(send.conn.clone()) {
            tokio::time::sleep(self.scenario.gap).await;
        }
        self.last_sender = Some(send.conn.clone());
        let conn = self.conn(&send.conn).await?;
        let encrypted = conn.encrypted();
        // The plaintext of an encrypted send, for the transcript.
        let (mut wire, plaintext) = if encrypted && !clear {
            let block = conn.seal(&bytes).map_err(|e| {
                StepError::new(Outcome::Error, e.to_string()).help(
                    "send it as several messages, or unencrypted with `clear: true` if that is what the test needs",
                )
            })?;
            (block, Some(bytes))
        } else {
            (bytes, None)
        };
        let pieces = split_at(&mut wire, offsets).map_err(|m| StepError::new(Outcome::Error, m))?;
        let mut writes = 0;
        let mut result = Ok(());
        let mut failed_write = None;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 && !send.pause.is_zero() {
                tokio::time::sleep(send.pause).await;
            }
            match tokio::time::timeout(timeout, conn.write(piece)).await {
                Ok(Ok(())) => writes += 1,
                Ok(Err(e)) => {
                    // The target closed the connection under us. That is not a verdict by
                    // itself: the next step (expect_close, or an expected reply) decides.
                    failed_write = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    result = Err(StepError::new(
                        Outcome::TimedOut,
                        format!(
                            "could not send on `{}` within {}: the target is not reading",
                            send.conn,
                            humantime::format_duration(timeout)
                        ),
                    ));
                    break;
                }
            }
        }
        let at = self.elapsed();
        // A write the target cut short still shows what was sent, with the failure after it.
        let attempted = if failed_write.is_some() {
            writes + 1
        } else {
            writes
        };
        if attempted > 0 {
            // An encrypted send shows its plaintext; a plain one what went out.
            let sent: Vec<u8> = plaintext.unwrap_or_else(|| pieces[..attempted].concat());
            self.transcript.push(
                at,
                &send.conn,
                EntryKind::Sent {
                    data: Data::new(&sent),
                    writes: attempted,
                    clear: encrypted && clear,
                },
            );
        }
        if let Some(reason) = failed_write {
            self.transcript
                .push(at, &send.conn, EntryKind::SendFailed { reason });
        }
        result
    }

    /// The connections an expectation is for: its own, or for `others` every open
    /// connection but the one that sent last.
    fn targets(&self, expect: &Expect) -> Result<Vec<String>, StepError> {
        if expect.conn != OTHERS {
            return Ok(vec![expect.conn.clone()]);
        }
        let others: Vec<String> = self
            .conns
            .iter()
            .filter(|(name, c)| c.closed.is_none() && Some(*name) != self.last_sender.as_ref())
            .map(|(name, _)| name.clone())
            .collect();
        if others.is_empty() {
            let sender = self.last_sender.as_deref().unwrap_or("(none yet)");
            return Err(StepError::new(
                Outcome::Error,
                format!("`others` names no connection: every open connection is the last sender `{sender}`"),
            )
            .help("open the other connections (a step on them) before expecting on `others`"));
        }
        Ok(others)
    }

    async fn expect(&mut self, expect: &Expect) -> Result<(), StepError> {
        let wanted = self.describe(&expect.matcher)?;
        let start = Instant::now();
        for name in self.targets(expect)? {
            self.expect_on(&name, expect, &wanted, start).await?;
        }
        Ok(())
    }

    /// Waits for `expect` on `name`. Messages that do not match but that a background rule
    /// handles are answered (or ignored) and the wait goes on.
    async fn expect_on(
        &mut self,
        name: &str,
        expect: &Expect,
        wanted: &str,
        start: Instant,
    ) -> Result<(), StepError> {
        let (deadline, within, earliest) = match expect.at {
            Some(mut at) => {
                at.tolerance = at.tolerance.mul_f64(self.settings.time_scale);
                let since = self.conn(name).await?.last_message_at;
                (
                    since + at.after + at.tolerance,
                    at.after + at.tolerance,
                    Some((since, at)),
                )
            }
            None => {
                let within = self.within(expect.within);
                (start + within, within, None)
            }
        };
        // A repeated packet expectation gathers `<any+:name>` fields afresh.
        if expect.until.is_some()
            && let Matcher::Packet(p) = &expect.matcher
        {
            for (_, t) in &p.fields {
                if let Some(var) = t
                    .literal()
                    .as_deref()
                    .and_then(|l| l.strip_prefix("<any+:"))
                    .and_then(|l| l.strip_suffix('>'))
                {
                    self.env.set(var.to_owned(), Vec::new());
                }
            }
        }
        let mut deadline = deadline;
        let mut packets = 0usize;
        // `joined:` fields and their values so far.
        let mut joined: Vec<(String, Vec<u8>)> = expect
            .joined
            .iter()
            .flat_map(|j| j.fields.iter().map(|(n, _)| (n.clone(), Vec::new())))
            .collect();
        loop {
            let (frame, arrived) = match self.next_message(name, deadline, within, wanted).await {
                Err(mut e) if e.outcome == Outcome::TimedOut => {
                    if let Some((_, at)) = earliest {
                        e.failure.message = format!(
                            "no message on `{name}` by {} after the previous one (due {} ± {})",
                            humantime::format_duration(within),
                            humantime::format_duration(at.after),
                            humantime::format_duration(at.tolerance),
                        );
                    }
                    return Err(e);
                }
                other => other?,
            };
            match self.check(&expect.matcher, &frame, wanted, expect.subset) {
                Ok(()) => {
                    if let Some(conn) = self.conns.get_mut(name) {
                        conn.last_message_at = arrived;
                    }
                    if !joined.is_empty() {
                        self.join_fields(&mut joined, &frame)?;
                    }
                    if let Some(until) = &expect.until
                        && !self.packet_ends_stream(until, &frame)?
                    {
                        packets += 1;
                        if packets >= MAX_STREAM_PACKETS {
                            return Err(StepError::failed(format!(
                                "{packets} packets on `{name}` and none ends the stream"
                            ))
                            .label("expected a packet the `until` fields match"));
                        }
                        // Each packet of the stream gets the step's whole deadline.
                        deadline = Instant::now() + within;
                        continue;
                    }
                    if let Some(spec) = &expect.joined {
                        self.check_joined(spec, &joined, packets + 1)?;
                    }
                    if let Some((since, at)) = earliest {
                        let after = arrived.saturating_duration_since(since);
                        if after + at.tolerance < at.after {
                            return Err(StepError::failed(format!(
                                "the message on `{name}` came too early: {} after the previous one, due {} ± {}",
                                show_millis(after),
                                humantime::format_duration(at.after),
                                humantime::format_duration(at.tolerance),
                            ))
                            .label(format!("received {}", show_bytes(&frame.data))));
                        }
                    }
                    return Ok(());
                }
                Err(e) if e.outcome == Outcome::Failed => {
                    if !self.background(name, &frame).await? {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends the `joined` fields of a packet of a stream.
    fn join_fields(
        &self,
        joined: &mut [(String, Vec<u8>)],
        frame: &Frame,
    ) -> Result<(), StepError> {
        let format = self.packet_format()?;
        // A packet that does not decode was reported by the matcher already.
        let Ok(decoded) = format.decode(&frame.data, &self.var_lookup()) else {
            return Ok(());
        };
        for (name, value) in joined.iter_mut() {
            match decoded.fields.iter().find(|(n, _)| n == name) {
                Some((_, got)) => value.extend_from_slice(got),
                None => {
                    return Err(StepError::new(
                        Outcome::Error,
                        format!("`joined`: the packets have no field `{name}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Compares the joined fields of a stream of `packets` packets with what `spec` wants.
    fn check_joined(
        &self,
        spec: &PacketSpec,
        joined: &[(String, Vec<u8>)],
        packets: usize,
    ) -> Result<(), StepError> {
        for ((name, t), (_, got)) in spec.fields.iter().zip(joined) {
            let want = self.expand(t)?;
            if &want == got {
                continue;
            }
            let noun = if packets == 1 { "packet" } else { "packets" };
            let mut e = StepError::failed(format!(
                "the `{name}` of the {packets} {noun} together is not what was expected"
            ))
            .span(t.span);
            match first_difference(&want, got) {
                Some(window) => {
                    e.failure.label = Some(window.label);
                    e.failure.expected = Some(window.expected);
                    e.failure.actual = Some(window.actual);
                }
                None => {
                    e.failure.label = Some(format!(
                        "{} bytes expected, {} received",
                        want.len(),
                        got.len()
                    ));
                    e.failure.expected = Some(abbreviate(&show_bytes(&want), SHOWN));
                    e.failure.actual = Some(abbreviate(&show_bytes(got), SHOWN));
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Finds the number the target hides by halving `[low, high]`: each reply says found,
    /// higher or lower. The search ends in at most log2(high - low + 1) + 1 guesses; replies
    /// that contradict each other end it with a failure that lists the guesses.
    async fn bisect(&mut self, b: &Bisect) -> Result<(), StepError> {
        let (mut low, mut high) = (b.low, b.high);
        let mut tried: Vec<String> = Vec::new();
        while low <= high {
            let n = low + (high - low) / 2;
            self.env.set(b.var.clone(), n.to_string().into_bytes());
            self.send(&b.send).await?;
            let options = [&b.found, &b.higher, &b.lower];
            let mut wanted = Vec::with_capacity(3);
            for e in options {
                wanted.push(self.describe(&e.matcher)?);
            }
            let within = self.timeout;
            let deadline = Instant::now() + within;
            let all = format!("one of {}", wanted.join(", "));
            let which = loop {
                let (frame, _) = self.next_message(&b.conn, deadline, within, &all).await?;
                let mut first_error = None;
                let mut which = None;
                for (i, e) in options.iter().enumerate() {
                    match self.check(&e.matcher, &frame, &wanted[i], false) {
                        Ok(()) => {
                            which = Some(i);
                            break;
                        }
                        Err(err) if err.outcome == Outcome::Failed => {
                            first_error.get_or_insert(err);
                        }
                        Err(err) => return Err(err),
                    }
                }
                if let Some(i) = which {
                    break i;
                }
                if !self.background(&b.conn, &frame).await? {
                    let mut e =
                        first_error.unwrap_or_else(|| StepError::failed("unexpected reply"));
                    e.failure.message = format!("unexpected reply to the guess {n}");
                    e.failure.expected = Some(all);
                    return Err(e);
                }
            };
            tried.push(format!("{n} {}", ["found", "higher", "lower"][which]));
            match which {
                0 => return Ok(()),
                1 => low = n + 1,
                _ => high = n - 1,
            }
        }
        Err(StepError::failed(format!(
            "no number in {}..={} fits the replies: they contradict each other",
            b.low, b.high
        ))
        .label(format!("guesses: {}", tried.join(", "))))
    }

    /// Expectations met in any order: each message on a connection may satisfy any of that
    /// connection's expectations still open.
    async fn any_order(&mut self, steps: &[Step]) -> Result<(), StepError> {
        let start = Instant::now();
        // (connection, expectation, step span, description), in the order written.
        let mut open: Vec<(String, &Expect, Span, String)> = Vec::new();
        for step in steps {
            let StepKind::Expect(expect) = &step.kind else {
                continue;
            };
            let wanted = self
                .describe(&expect.matcher)
                .map_err(|e| e.span(step.span))?;
            for name in self.targets(expect).map_err(|e| e.span(step.span))? {
                open.push((name, expect, step.span, wanted.clone()));
            }
        }
        while let Some((name, _, first_span, _)) = open.first().cloned() {
            let mine: Vec<usize> = (0..open.len()).filter(|&i| open[i].0 == name).collect();
            let within = mine
                .iter()
                .map(|&i| self.within(open[i].1.within))
                .max()
                .unwrap_or(self.timeout);
            let wanted = if mine.len() == 1 {
                open[mine[0]].3.clone()
            } else {
                format!(
                    "one of {}",
                    mine.iter()
                        .map(|&i| open[i].3.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let (frame, arrived) = self
                .next_message(&name, start + within, within, &wanted)
                .await
                .map_err(|e| e.span(first_span))?;
            let mut matched = None;
            let mut first_error = None;
            for &i in &mine {
                let (_, expect, span, one) = &open[i];
                match self.check(&expect.matcher, &frame, one, expect.subset) {
                    Ok(()) => {
                        matched = Some(i);
                        break;
                    }
                    Err(e) if e.outcome == Outcome::Failed => {
                        first_error.get_or_insert(e.span(*span));
                    }
                    Err(e) => return Err(e.span(*span)),
                }
            }
            match matched {
                Some(i) => {
                    open.remove(i);
                    if let Some(conn) = self.conns.get_mut(&name) {
                        conn.last_message_at = arrived;
                    }
                }
                None if self.background(&name, &frame).await? => {}
                None => {
                    let mut e =
                        first_error.unwrap_or_else(|| StepError::failed("unexpected reply"));
                    if mine.len() > 1 {
                        e.failure.message = format!(
                            "unexpected reply: it matches none of the {} messages expected on `{name}` in any order",
                            mine.len()
                        );
                        e.failure.expected = Some(wanted);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The background rules with a reply, for the connections' reader tasks: expanded once
    /// per scenario.
    fn responders(&mut self) -> Result<Arc<[Responder]>, StepError> {
        if let Some(r) = &self.responders {
            return Ok(r.clone());
        }
        let mut out = Vec::new();
        for rule in &self.scenario.background {
            let Some(reply) = &rule.reply else { continue };
            let fail = |e: StepError| {
                let mut e = e;
                e.failure.message = format!("in a background rule: {}", e.failure.message);
                e.failure.span = None;
                e
            };
            let on = match &rule.on {
                Matcher::Exact(t) => {
                    let expected = self.renamed(self.expand(t).map_err(fail)?);
                    match String::from_utf8(expected) {
                        Ok(text)
                            if self.settings.json_bodies && json_match::has_json_body(&text) =>
                        {
                            ResponderMatch::Json(text)
                        }
                        Ok(text) => ResponderMatch::Bytes(text.into_bytes()),
                        Err(e) => ResponderMatch::Bytes(e.into_bytes()),
                    }
                }
                Matcher::Regex(t) => {
                    let pattern = template::eval_regex(t, &self.env)
                        .map_err(|e| fail(template_error(t, &e)))?;
                    ResponderMatch::Regex(self.regex(&pattern).map_err(|e| {
                        fail(StepError::new(
                            Outcome::Error,
                            format!("invalid regular expression: {e}"),
                        ))
                    })?)
                }
                Matcher::Packet(_) => {
                    return Err(fail(StepError::new(
                        Outcome::Error,
                        "a background rule cannot match a packet",
                    )));
                }
                Matcher::Bytes(t) => ResponderMatch::Bytes(self.expand(t).map_err(fail)?),
                Matcher::Hex(t) => ResponderMatch::Bytes(
                    decode_hex(&self.expand(t).map_err(fail)?, t).map_err(fail)?,
                ),
            };
            let mut reply = self.renamed(self.expand(reply).map_err(fail)?);
            reply.extend_from_slice(&self.line_end);
            out.push(Responder { on, reply });
        }
        let responders: Arc<[Responder]> = out.into();
        self.responders = Some(responders.clone());
        Ok(responders)
    }

    /// Puts the messages responders answered on `name` into the transcript.
    fn record_answered(&mut self, name: &str) {
        let Some(conn) = self.conns.get_mut(name) else {
            return;
        };
        let answered = conn.take_answered();
        self.record(name, answered);
    }

    /// Puts answered messages into the transcript (and counts those left out: a message and
    /// its reply each).
    fn record(&mut self, name: &str, (answered, dropped): (Vec<Answered>, usize)) {
        self.transcript.count_dropped(2 * dropped);
        for a in answered {
            let at = self.at(a.at);
            let mut data = Data::new(&a.frame.data);
            data.len = a.len;
            let received = EntryKind::Received {
                data,
                terminated: a.frame.terminated,
            };
            self.transcript.push_background(at, name, received);
            let kind = match a.written {
                Ok(()) => EntryKind::Sent {
                    data: Data::new(&a.reply),
                    writes: 1,
                    clear: false,
                },
                Err(reason) => EntryKind::SendFailed { reason },
            };
            self.transcript.push_background(at, name, kind);
        }
    }

    /// If a background rule handles `frame` (received on `name`), sends its reply and says
    /// so; the message is then no one's concern.
    async fn background(&mut self, name: &str, frame: &Frame) -> Result<bool, StepError> {
        let rules = &self.scenario.background;
        let Some(rule) = rules.iter().find(|r| self.matches_quietly(&r.on, frame)) else {
            return Ok(false);
        };
        self.transcript.mark_background(name);
        if let Some(reply) = &rule.reply {
            let mut bytes = self.renamed(self.expand(reply).map_err(|e| e.span(rule.span))?);
            bytes.extend_from_slice(&self.line_end);
            let timeout = self.timeout;
            if let Some(conn) = self.conns.get_mut(name) {
                // A reply too long for one RSA block fails as a write does: in the transcript.
                let written = match conn.seal(&bytes) {
                    Ok(wire) => tokio::time::timeout(timeout, conn.write(&wire)).await,
                    Err(e) => Ok(Err(std::io::Error::other(e.to_string()))),
                };
                let at = self.elapsed();
                match written {
                    Ok(Ok(())) => self.transcript.push(
                        at,
                        name,
                        EntryKind::Sent {
                            data: Data::new(&bytes),
                            writes: 1,
                            clear: false,
                        },
                    ),
                    Ok(Err(e)) => self.transcript.push(
                        at,
                        name,
                        EntryKind::SendFailed {
                            reason: e.to_string(),
                        },
                    ),
                    Err(_) => {}
                }
            }
        }
        Ok(true)
    }

    /// The pattern compiled to match whole messages, from a cache: background rules test
    /// every message that passes, and compiling is far slower than matching.
    fn regex(&self, pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
        let mut cache = self.regexes.borrow_mut();
        if let Some(re) = cache.get(pattern) {
            return Ok(re.clone());
        }
        // Compiled alone first, so that a stray `)` cannot escape the anchoring group.
        regex::bytes::Regex::new(pattern)?;
        let re = regex::bytes::Regex::new(&format!(r"\A(?:{pattern})\z"))?;
        if cache.len() >= MAX_CACHED_REGEXES {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), re.clone());
        Ok(re)
    }

    /// Whether `m` matches `frame`, without binding variables or reporting anything.
    fn matches_quietly(&self, m: &Matcher, frame: &Frame) -> bool {
        match m {
            Matcher::Exact(t) => match self.expand(t) {
                Ok(expected) => {
                    let expected = self.renamed(expected);
                    if self.settings.json_bodies
                        && let (Ok(e), Ok(a)) = (
                            std::str::from_utf8(&expected),
                            std::str::from_utf8(&frame.data),
                        )
                        && json_match::has_json_body(e)
                    {
                        return json_match::match_message(e, a, false).is_ok();
                    }
                    frame.data == expected
                }
                Err(_) => false,
            },
            Matcher::Regex(t) => template::eval_regex(t, &self.env)
                .ok()
                .and_then(|p| self.regex(&p).ok())
                .is_some_and(|re| re.is_match(&frame.data)),
            Matcher::Packet(_) => false,
            Matcher::Bytes(t) => self.expand(t).is_ok_and(|b| b == frame.data),
            Matcher::Hex(t) => self
                .expand(t)
                .ok()
                .and_then(|h| decode_hex(&h, t).ok())
                .is_some_and(|b| b == frame.data),
        }
    }

    /// A text message with its first word renamed by a `rename.WORD` variable, if any (for
    /// protocols whose groups rename message headers).
    fn renamed(&self, mut text: Vec<u8>) -> Vec<u8> {
        let end = text
            .iter()
            .position(|&b| b == b' ' || b == b'\n' || b == b'\r')
            .unwrap_or(text.len());
        let Ok(word) = std::str::from_utf8(&text[..end]) else {
            return text;
        };
        if let Some(to) = self.env.get(&format!("rename.{word}")) {
            let to = to.to_vec();
            text.splice(..end, to);
        }
        text
    }

    /// Receives the next message on `conn`, recording it; anything else is a failure that
    /// says what was expected.
    async fn next_message(
        &mut self,
        name: &str,
        deadline: Instant,
        within: Duration,
        wanted: &str,
    ) -> Result<(Frame, Instant), StepError> {
        let event = self.conn(name).await?.recv(deadline).await;
        self.sent_last.remove(name);
        self.record_answered(name);
        match event {
            Ok(Incoming::Message(frame, arrived)) => {
                let at = self.at(arrived);
                self.transcript.push(at, name, EntryKind::received(&frame));
                Ok((frame, arrived))
            }
            Ok(Incoming::TooLong(too_long, at)) => {
                let at = self.at(at);
                let limit = too_long.limit;
                self.transcript.push(
                    at,
                    name,
                    EntryKind::TooLong {
                        limit,
                        head: Data::new(&too_long.head),
                    },
                );
                Err(StepError::failed(format!(
                    "the target sent more than {limit} bytes without a line end on `{name}`"
                ))
                .label(format!("expected {wanted}"))
                .help("the harness stops reading a message at the receive limit (raise it with `--recv-limit BYTES`)"))
            }
            Ok(Incoming::Closed(how, at)) => {
                let at = self.at(at);
                self.transcript.push(at, name, end_entry(&how));
                Err(closed_error(name, &how, wanted))
            }
            Err(RecvError::AlreadyClosed(how)) => Err(closed_error(name, &how, wanted)),
            Err(RecvError::Timeout) => {
                let mut e = StepError::new(
                    Outcome::TimedOut,
                    format!(
                        "no message on `{name}` within {}",
                        humantime::format_duration(within)
                    ),
                )
                .label(format!("expected {wanted}"));
                let mut help: Vec<String> = self
                    .conns
                    .get(name)
                    .and_then(Connection::partial)
                    .map(|p| partial_help(&p))
                    .into_iter()
                    .collect();
                help.extend(self.unread_elsewhere(name));
                if !help.is_empty() {
                    e = e.help(help.join("\n"));
                }
                Err(e)
            }
        }
    }

    /// After a deadline on `name` passed (which ends the scenario): takes what has arrived
    /// on the other connections that no step has read (up to [`UNREAD_KEPT`] events each),
    /// adds it to the end of the transcript, and says what it was, one line per connection.
    /// A reply sent on the wrong connection shows up here.
    fn unread_elsewhere(&mut self, name: &str) -> Vec<String> {
        let others: Vec<String> = self
            .conns
            .keys()
            .filter(|other| *other != name)
            .cloned()
            .collect();
        let mut said = Vec::new();
        for other in others {
            let mut unread = 0usize;
            let mut first = None;
            let mut more = false;
            for taken in 0.. {
                let Some(event) = self.conns.get_mut(&other).and_then(Connection::try_recv) else {
                    break;
                };
                // Bounded: a target that floods `other` keeps its queue full.
                if taken == UNREAD_KEPT {
                    more = true;
                    break;
                }
                let (at, kind) = match event {
                    Incoming::Message(frame, at) => {
                        let kind = EntryKind::received(&frame);
                        // Traffic the background rules cover is no one's concern here.
                        if self
                            .scenario
                            .background
                            .iter()
                            .any(|r| self.matches_quietly(&r.on, &frame))
                        {
                            let at = self.at(at);
                            self.transcript.push_background(at, &other, kind);
                            continue;
                        }
                        unread += 1;
                        first.get_or_insert(frame.data);
                        (at, kind)
                    }
                    Incoming::TooLong(too_long, at) => (
                        at,
                        EntryKind::TooLong {
                            limit: too_long.limit,
                            head: Data::new(&too_long.head),
                        },
                    ),
                    Incoming::Closed(how, at) => (at, end_entry(&how)),
                };
                // Last, though it may have come earlier (the time says when): a reply can
                // arrive before the send it answers is recorded, and must not come first.
                let at = self.at(at);
                self.transcript.push(at, &other, kind);
            }
            self.record_answered(&other);
            if let Some(first) = first {
                let first = abbreviate(&show_bytes(&first), SHOWN);
                let more = if more { " (and more not shown)" } else { "" };
                said.push(match unread {
                    1 => format!(
                        "meanwhile `{other}` received a message no step has read yet{more}: {first}"
                    ),
                    n => format!(
                        "meanwhile `{other}` received {n} messages no step has read yet{more}, the first: {first}"
                    ),
                });
            }
        }
        said
    }

    /// A short description of what a matcher wants, for labels.
    fn describe(&self, m: &Matcher) -> Result<String, StepError> {
        Ok(abbreviate(&self.describe_whole(m)?, SHOWN))
    }

    fn describe_whole(&self, m: &Matcher) -> Result<String, StepError> {
        Ok(match m {
            Matcher::Exact(t) => show_bytes(&self.renamed(self.expand(t)?)),
            Matcher::Regex(t) => format!(
                "a message matching `{}`",
                template::eval_regex(t, &self.env).map_err(|e| template_error(t, &e))?
            ),
            Matcher::Bytes(t) => show_bytes(&self.expand(t)?),
            Matcher::Hex(t) => show_bytes(&decode_hex(&self.expand(t)?, t)?),
            Matcher::Packet(p) => {
                let mut parts = Vec::with_capacity(p.fields.len());
                for (name, t) in &p.fields {
                    let value = self.expand(t)?;
                    parts.push(format!("{name}: {}", show_bytes(&value)));
                }
                format!("a packet {{{}}}", parts.join(", "))
            }
        })
    }

    fn packet_format(&self) -> Result<&'static dyn PacketFormat, StepError> {
        self.settings.packet.ok_or_else(|| {
            StepError::new(
                Outcome::Error,
                "this protocol has no packets: `packet:` steps do not apply",
            )
        })
    }

    fn var_lookup(&self) -> impl Fn(&str) -> Option<Vec<u8>> + '_ {
        |name| self.env.get(name).map(<[u8]>::to_vec)
    }

    /// The bytes of a packet given by its fields.
    fn encode_packet(&self, p: &PacketSpec) -> Result<Vec<u8>, StepError> {
        self.encode_packet_with(p, &[])
    }

    /// As `encode_packet`, with some fields given as bytes.
    fn encode_packet_with(
        &self,
        p: &PacketSpec,
        extra: &[(&str, &[u8])],
    ) -> Result<Vec<u8>, StepError> {
        let format = self.packet_format()?;
        let mut fields = Vec::with_capacity(p.fields.len() + extra.len());
        for (name, t) in &p.fields {
            if !format.fields().contains(&name.as_str()) {
                return Err(unknown_field(name, format, t.span));
            }
            fields.push((name.clone(), self.expand(t)?));
        }
        for (name, value) in extra {
            fields.push(((*name).to_owned(), value.to_vec()));
        }
        format
            .encode(&fields, &self.var_lookup())
            .map_err(|e| StepError::new(Outcome::Error, e).span(p.span))
    }

    /// The packets of `p` with its data cut into pieces of at most `size` bytes (flag 0,
    /// the last 1), and where each packet starts after the first.
    fn encode_packets(
        &self,
        p: &PacketSpec,
        size: usize,
    ) -> Result<(Vec<u8>, Vec<usize>), StepError> {
        let data = match p.get("data") {
            Some(t) => self.expand(t)?,
            None => Vec::new(),
        };
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(size).collect()
        };
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let flag = if i + 1 == pieces.len() { "1" } else { "0" };
            let mut spec = p.clone();
            spec.fields.retain(|(n, _)| n != "flag" && n != "data");
            let bytes =
                self.encode_packet_with(&spec, &[("flag", flag.as_bytes()), ("data", piece)])?;
            if i > 0 {
                offsets.push(out.len());
            }
            out.extend_from_slice(&bytes);
        }
        Ok((out, offsets))
    }

    /// Checks a received packet field by field; `<any>` takes anything and `<any:name>`
    /// binds it. The checksum must be right unless the expectation names one.
    fn check_packet(
        &mut self,
        p: &PacketSpec,
        frame: &Frame,
        wanted: &str,
    ) -> Result<(), StepError> {
        let format = self.packet_format()?;
        let decoded = format.decode(&frame.data, &self.var_lookup());
        // A packet is shown by its fields; what is not a packet, as bytes.
        let actual = match &decoded {
            Ok(d) => format!(
                "a packet {{{}}}",
                d.fields
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", abbreviate(&show_bytes(v), 80)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(_) => show_bytes(&frame.data),
        };
        let fail = |label: String| {
            let mut e = StepError::failed("unexpected packet").label(label);
            e.failure.expected = Some(wanted.to_owned());
            e.failure.actual = Some(abbreviate(&actual, SHOWN));
            e
        };
        let decoded = decoded.map_err(&fail)?;
        let mut bindings = Vec::new();
        for (name, t) in &p.fields {
            let Some((_, got)) = decoded.fields.iter().find(|(n, _)| n == name) else {
                return Err(unknown_field(name, format, t.span));
            };
            if let Some(pattern) = t.literal().as_deref().and_then(|l| {
                l.strip_prefix("<re:")
                    .and_then(|r| r.strip_suffix('>'))
                    .map(str::to_owned)
            }) {
                let re = self.regex(&pattern).map_err(|e| {
                    StepError::new(Outcome::Error, format!("invalid regular expression: {e}"))
                        .span(t.span)
                })?;
                if !re.is_match(got) {
                    return Err(fail(format!(
                        "`{name}`: expected a value matching `{pattern}`, got {}",
                        abbreviate(&show_bytes(got), 80)
                    )));
                }
                continue;
            }
            if let Some(placeholder) = t.literal().as_deref().and_then(|l| {
                l.strip_prefix("<any")
                    .and_then(|r| r.strip_suffix('>'))
                    .map(str::to_owned)
            }) {
                if let Some(var) = placeholder.strip_prefix(':') {
                    bindings.push((var.to_owned(), got.clone(), false));
                } else if let Some(var) = placeholder.strip_prefix("+:") {
                    bindings.push((var.to_owned(), got.clone(), true));
                }
                continue;
            }
            let want = self.expand(t)?;
            if &want != got {
                return Err(fail(format!(
                    "`{name}`: expected {}, got {}",
                    abbreviate(&show_bytes(&want), 80),
                    abbreviate(&show_bytes(got), 80)
                )));
            }
        }
        if p.get("checksum").is_none()
            && let Some(problem) = decoded.checksum_problem
        {
            return Err(fail(problem));
        }
        for (name, value, append) in bindings {
            let value = match (append, self.env.get(&name)) {
                (true, Some(before)) => [before, value.as_slice()].concat(),
                _ => value,
            };
            self.env.set(name, value);
        }
        Ok(())
    }

    /// Whether a received packet's fields are those `until` names (the last packet of a
    /// stream).
    fn packet_ends_stream(&self, until: &PacketSpec, frame: &Frame) -> Result<bool, StepError> {
        let format = self.packet_format()?;
        let Ok(decoded) = format.decode(&frame.data, &self.var_lookup()) else {
            return Ok(false);
        };
        for (name, t) in &until.fields {
            let Some((_, got)) = decoded.fields.iter().find(|(n, _)| n == name) else {
                return Err(unknown_field(name, format, t.span));
            };
            if &self.expand(t)? != got {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn check(
        &mut self,
        m: &Matcher,
        frame: &Frame,
        wanted: &str,
        subset: bool,
    ) -> Result<(), StepError> {
        let actual = abbreviate(&show_bytes(&frame.data), SHOWN);
        let mismatch = |label: String| {
            let mut e = StepError::failed("unexpected reply").label(label);
            e.failure.expected = Some(wanted.to_owned());
            e.failure.actual = Some(actual.clone());
            e
        };
        // Long messages are shown around their first difference, not whole.
        let bytes_mismatch = |expected: &[u8]| match first_difference(expected, &frame.data) {
            Some(window) => {
                let mut e = StepError::failed("unexpected reply").label(window.label);
                e.failure.expected = Some(window.expected);
                e.failure.actual = Some(window.actual);
                e
            }
            None => mismatch(format!("received {actual}")),
        };
        match m {
            Matcher::Packet(p) => return self.check_packet(p, frame, wanted),
            Matcher::Exact(t) => {
                let expected = self.renamed(self.expand(t)?);
                let json = self
                    .settings
                    .json_bodies
                    .then(|| std::str::from_utf8(&expected).ok())
                    .flatten()
                    .filter(|e| json_match::has_json_body(e));
                if let Some(expected) = json {
                    let received = String::from_utf8_lossy(&frame.data);
                    match json_match::match_message(expected, &received, subset) {
                        Ok(bindings) => {
                            for (name, value) in bindings {
                                self.env.set(name, value.into_bytes());
                            }
                        }
                        Err(json_match::Mismatch(why)) => return Err(mismatch(why)),
                    }
                } else if frame.data != expected {
                    return Err(bytes_mismatch(&expected));
                }
            }
            Matcher::Bytes(t) | Matcher::Hex(t) => {
                let expected = match m {
                    Matcher::Hex(_) => decode_hex(&self.expand(t)?, t)?,
                    _ => self.expand(t)?,
                };
                if frame.data != expected {
                    return Err(bytes_mismatch(&expected));
                }
            }
            Matcher::Regex(t) => {
                let pattern =
                    template::eval_regex(t, &self.env).map_err(|e| template_error(t, &e))?;
                let re = self.regex(&pattern).map_err(|e| {
                    StepError::new(Outcome::Error, format!("invalid regular expression: {e}"))
                        .span(t.span)
                })?;
                let Some(caps) = re.captures(&frame.data) else {
                    return Err(mismatch(format!("received {actual}")));
                };
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        self.env.set(name.to_owned(), m.as_bytes().to_vec());
                    }
                }
            }
        }
        if self.require_line_end
            && !frame.terminated
            && matches!(m, Matcher::Exact(_) | Matcher::Regex(_))
        {
            return Err(StepError::failed("the message has no line end")
                .label(format!("received {actual} and then nothing for {}", humantime::format_duration(self.scenario.quiet)))
                .help("the spec ends every message with \\n; run with a dialect profile (or --var require_line_end=false) to accept unterminated messages"));
        }
        Ok(())
    }

    async fn expect_close(&mut self, name: &str, within: Duration) -> Result<(), StepError> {
        let deadline = Instant::now() + within;
        loop {
            let Some(conn) = self.conns.get_mut(name) else {
                return Err(StepError::new(
                    Outcome::Error,
                    format!("connection `{name}` is not open"),
                ));
            };
            let event = conn.recv(deadline).await;
            self.record_answered(name);
            return match event {
                Ok(Incoming::Closed(how, at)) => {
                    let at = self.at(at);
                    self.transcript.push(at, name, end_entry(&how));
                    self.conns.remove(name);
                    Ok(())
                }
                Err(RecvError::AlreadyClosed(_)) => {
                    self.conns.remove(name);
                    Ok(())
                }
                Ok(Incoming::Message(frame, at)) => {
                    let at = self.at(at);
                    let actual = show_bytes(&frame.data);
                    self.transcript.push(at, name, EntryKind::received(&frame));
                    if self.background(name, &frame).await? {
                        continue;
                    }
                    Err(StepError::failed(format!(
                        "expected the target to close `{name}`, but it sent a message"
                    ))
                    .label(format!("received {actual}")))
                }
                Ok(Incoming::TooLong(t, _)) => Err(StepError::failed(format!(
                    "expected the target to close `{name}`, but it sent more than {} bytes",
                    t.limit
                ))),
                Err(RecvError::Timeout) => Err(StepError::failed(format!(
                    "the target did not close `{name}` within {}",
                    humantime::format_duration(within)
                ))
                .label("the connection is still open")),
            };
        }
    }

    async fn expect_silence(
        &mut self,
        only: Option<&str>,
        duration: Duration,
    ) -> Result<(), StepError> {
        let deadline = Instant::now() + duration;
        let names: Vec<String> = match only {
            Some(name) => {
                self.conn(name).await?;
                vec![name.to_owned()]
            }
            None => self.conns.keys().cloned().collect(),
        };
        if names.is_empty() {
            tokio::time::sleep(duration).await;
            return Ok(());
        }
        for name in names {
            let Some(conn) = self.conns.get_mut(&name) else {
                continue;
            };
            if conn.closed.is_some() {
                continue;
            }
            while let Some(conn) = self.conns.get_mut(&name) {
                let event = conn.recv(deadline).await;
                self.record_answered(&name);
                match event {
                    Err(_) => break,
                    Ok(Incoming::Message(frame, at)) => {
                        let at = self.at(at);
                        let actual = show_bytes(&frame.data);
                        self.transcript.push(at, &name, EntryKind::received(&frame));
                        if self.background(&name, &frame).await? {
                            continue;
                        }
                        return Err(StepError::failed(format!(
                            "expected silence on `{name}` for {}",
                            humantime::format_duration(duration)
                        ))
                        .label(format!("received {actual}")));
                    }
                    Ok(Incoming::TooLong(t, _)) => {
                        return Err(StepError::failed(format!(
                            "expected silence on `{name}`, but the target sent more than {} bytes",
                            t.limit
                        )));
                    }
                    Ok(Incoming::Closed(how, at)) => {
                        let at = self.at(at);
                        self.transcript.push(at, &name, end_entry(&how));
                        return Err(StepError::failed(format!(
                        "expected silence on `{name}`, but the target closed the connection ({how})"
                    ))
                    .label("connection closed")
                    .gone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes our side of `name`, then lingers until the target closes its side too (bounded
    /// by `CLOSE_LINGER` and the step timeout), so that the next step meets a target that has
    /// already handled the close. A target that keeps its side open is not a failure: the
    /// step only waits less than a second for it. Whatever arrives meanwhile is recorded.
    async fn close(&mut self, name: &str) {
        let Some(mut conn) = self.conns.remove(name) else {
            return;
        };
        // The time the close began: a target that closes in answer to it does so later.
        let at = self.elapsed();
        conn.shutdown(self.timeout).await;
        self.transcript.push(at, name, EntryKind::ClosedByUs);
        let deadline = Instant::now() + CLOSE_LINGER.min(self.timeout);
        loop {
            let event = conn.recv(deadline).await;
            let answered = conn.drain_answered();
            self.record(name, answered);
            match event {
                Ok(Incoming::Message(frame, at)) => {
                    let at = self.at(at);
                    self.transcript.push(at, name, EntryKind::received(&frame));
                    // Traffic the background rules cover is no one's concern here either.
                    if self
                        .scenario
                        .background
                        .iter()
                        .any(|r| self.matches_quietly(&r.on, &frame))
                    {
                        self.transcript.mark_background(name);
                    }
                }
                Ok(Incoming::Closed(how, at)) => {
                    let at = self.at(at);
                    // Not a step's expectation: whether it comes within the linger is up to
                    // the target's timing.
                    self.transcript.push_background(at, name, end_entry(&how));
                    return;
                }
                Ok(Incoming::TooLong(..)) | Err(_) => return,
            }
        }
    }

    /// Closes every connection still open, politely and within a bound.
    async fn finish(&mut self) {
        let conns = std::mem::take(&mut self.conns);
        for (name, mut conn) in conns {
            let answered = conn.drain_answered();
            self.record(&name, answered);
            if conn.closed.is_none() {
                conn.shutdown(Duration::from_millis(200)).await;
            }
        }
    }
}

fn unknown_field(name: &str, format: &dyn PacketFormat, span: Span) -> StepError {
    let known = format.fields();
    let mut e = StepError::new(Outcome::Error, format!("a packet has no field `{name}`"))
        .span(span)
        .help(format!("the fields are: {}", known.join(", ")));
    if let Some(s) = crate::scenario::diagnostic::did_you_mean(name, known.iter().copied()) {
        e = e.label(format!("did you mean `{s}`?"));
    }
    e
}

/// Most packets one `until` expectation reads.
const MAX_STREAM_PACKETS: usize = 100_000;

/// Characters of a message a failure shows.
const SHOWN: usize = 300;
/// Messages longer than this (in bytes) are shown around their first difference.
const LONG: usize = 200;

/// Where two long messages part, shown as windows around that byte.
struct Window {
    label: String,
    expected: String,
    actual: String,
}

fn first_difference(expected: &[u8], actual: &[u8]) -> Option<Window> {
    if expected.len() <= LONG && actual.len() <= LONG {
        return None;
    }
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let start = at.saturating_sub(16);
    let window = |bytes: &[u8]| {
        let end = (at + 48).min(bytes.len());
        let part = &bytes[start.min(bytes.len())..end];
        format!(
            "bytes {start}..{end} of {}: {}",
            bytes.len(),
            show_bytes(part)
        )
    };
    Some(Window {
        label: format!(
            "received {} bytes, expected {}; they differ from byte {at} on",
            actual.len(),
            expected.len()
        ),
        expected: window(expected),
        actual: window(actual),
    })
}

/// A duration as seconds with milliseconds, e.g. `9.512s`.
fn show_millis(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// Says what has arrived of a message that never completed.
fn partial_help(p: &Partial) -> String {
    let more = if p.len > p.head.len() { "..." } else { "" };
    let bytes = if p.len == 1 { "byte" } else { "bytes" };
    format!(
        "{} {bytes} of a message arrived, with no line end yet: {}{more}",
        p.len,
        show_bytes(&p.head),
    )
}

fn closed_error(name: &str, how: &CloseKind, wanted: &str) -> StepError {
    let error = match how {
        CloseKind::Tls(reason) => StepError::failed(format!(
            "TLS error on `{name}` before the expected message: {reason}"
        )),
        how => StepError::failed(format!(
            "the target closed `{name}` ({how}) before the expected message"
        ))
        .gone(),
    };
    error.label(format!("expected {wanted}"))
}

/// The transcript entry for the end of what can be read on a connection.
fn end_entry(how: &CloseKind) -> EntryKind {
    match how {
        CloseKind::Tls(reason) => EntryKind::TlsError {
            reason: reason.clone(),
        },
        how => EntryKind::ClosedByTarget {
            how: how.to_string(),
        },
    }
}

fn template_error(t: &Template, e: &template::TemplateError) -> StepError {
    StepError::new(Outcome::Error, e.to_string()).span(e.span().unwrap_or(t.span))
}

fn decode_hex(text: &[u8], t: &Template) -> Result<Vec<u8>, StepError> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(&digits)
        .map_err(|e| StepError::new(Outcome::Error, format!("invalid hex: {e}")).span(t.span))
}

/// Cuts `bytes` at the offsets of a split send.
fn split_at(bytes: &mut [u8], offsets: &[usize]) -> Result<Vec<Vec<u8>>, String> {
    let mut pieces = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for &cut in offsets {
        if cut <= start || cut >= bytes.len() {
            return Err(format!(
                "split offset {cut} is outside the message ({} bytes) or not increasing",
                bytes.len()
            ));
        }
        pieces.push(bytes[start..cut].to_vec());
        start = cut;
    }
    pieces.push(bytes[start..].to_vec());
    Ok(pieces)
}
