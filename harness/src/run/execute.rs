//! Runs one scenario against one target: opens the named connections, performs the steps in
//! order, and turns the first step that does not hold into a [`Failure`] pointing at it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::{CloseKind, Connection, Incoming, Partial, RecvError};
use super::framing::Frame;
use super::outcome::{Failure, Outcome, ScenarioResult};
use super::transcript::{Data, EntryKind, Transcript, show_bytes};
use crate::scenario::model::{
    Expect, Matcher, Payload, Scenario, Send, Span, Step, StepKind, Template,
};
use crate::scenario::template::{self, Env};
use crate::transport::{self, Transport};

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
}

/// Runs `scenario` to its end. Never panics on anything the target does.
pub async fn run_scenario(
    scenario: &Scenario,
    settings: &ExecSettings,
    uniq: String,
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
    };
    if scenario.skip.is_some() {
        result.outcome = Outcome::Skipped;
        return result;
    }

    let mut exec = Exec::new(scenario, settings, uniq, started);
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
    if result.outcome == Outcome::Passed {
        result.points = scenario.points;
    }
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
}

impl<'a> Exec<'a> {
    fn new(
        scenario: &'a Scenario,
        settings: &'a ExecSettings,
        uniq: String,
        started: Instant,
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
            transcript: Transcript::default(),
            started,
            line_end,
            require_line_end,
            timeout: settings.timeout.unwrap_or(scenario.timeout),
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn at(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.started)
    }

    async fn step(&mut self, step: &Step) -> Result<(), StepError> {
        match &step.kind {
            StepKind::Connect { conn } => {
                if self.conns.contains_key(conn) {
                    return Err(StepError::new(
                        Outcome::Error,
                        format!("connection `{conn}` is already open"),
                    ));
                }
                self.open(conn).await
            }
            StepKind::Send(send) => self.send(send).await,
            StepKind::Expect(expect) => self.expect(expect).await,
            StepKind::ExpectClose { conn, within } => {
                self.expect_close(conn, within.unwrap_or(self.timeout))
                    .await
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
        }
    }

    async fn open(&mut self, name: &str) -> Result<(), StepError> {
        let s = self.settings;
        match transport::connect(&s.addr, &s.transport, s.connect_timeout).await {
            Ok(stream) => {
                let at = self.elapsed();
                self.transcript.push(
                    at,
                    name,
                    EntryKind::Connected {
                        addr: s.addr.clone(),
                        transport: s.transport.name().to_owned(),
                    },
                );
                let conn = Connection::start(stream, self.scenario.quiet, s.recv_limit);
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

    async fn send(&mut self, send: &Send) -> Result<(), StepError> {
        let mut bytes = match &send.payload {
            Payload::Line(t) => {
                let mut b = self.expand(t)?;
                b.extend_from_slice(&self.line_end);
                b
            }
            Payload::Bytes(t) => self.expand(t)?,
            Payload::Hex(t) => decode_hex(&self.expand(t)?, t)?,
        };
        let pieces =
            split_at(&mut bytes, &send.split).map_err(|m| StepError::new(Outcome::Error, m))?;
        let timeout = self.timeout;
        let conn = self.conn(&send.conn).await?;
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
            let sent: Vec<u8> = pieces[..attempted].concat();
            self.transcript.push(
                at,
                &send.conn,
                EntryKind::Sent {
                    data: Data::new(&sent),
                    writes: attempted,
                },
            );
        }
        if let Some(reason) = failed_write {
            self.transcript
                .push(at, &send.conn, EntryKind::SendFailed { reason });
        }
        result
    }

    async fn expect(&mut self, expect: &Expect) -> Result<(), StepError> {
        let within = expect.within.unwrap_or(self.timeout);
        let wanted = self.describe(&expect.matcher)?;
        let deadline = Instant::now() + within;
        let frame = self
            .next_message(&expect.conn, deadline, within, &wanted)
            .await?;
        self.check(&expect.matcher, &frame, &wanted)
    }

    /// Receives the next message on `conn`, recording it; anything else is a failure that
    /// says what was expected.
    async fn next_message(
        &mut self,
        name: &str,
        deadline: Instant,
        within: Duration,
        wanted: &str,
    ) -> Result<Frame, StepError> {
        let event = self.conn(name).await?.recv(deadline).await;
        match event {
            Ok(Incoming::Message(frame, at)) => {
                let at = self.at(at);
                self.transcript.push(
                    at,
                    name,
                    EntryKind::Received {
                        data: Data::new(&frame.data),
                        terminated: frame.terminated,
                    },
                );
                Ok(frame)
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
                self.transcript.push(
                    at,
                    name,
                    EntryKind::ClosedByTarget {
                        how: how.to_string(),
                    },
                );
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
                if let Some(p) = self.conns.get(name).and_then(Connection::partial) {
                    e = e.help(partial_help(&p));
                }
                Err(e)
            }
        }
    }

    /// A short description of what a matcher wants, for labels.
    fn describe(&self, m: &Matcher) -> Result<String, StepError> {
        Ok(match m {
            Matcher::Exact(t) => show_bytes(&self.expand(t)?),
            Matcher::Regex(t) => format!(
                "a message matching `{}`",
                template::eval_regex(t, &self.env).map_err(|e| template_error(t, &e))?
            ),
            Matcher::Bytes(t) => show_bytes(&self.expand(t)?),
            Matcher::Hex(t) => show_bytes(&decode_hex(&self.expand(t)?, t)?),
        })
    }

    fn check(&mut self, m: &Matcher, frame: &Frame, wanted: &str) -> Result<(), StepError> {
        let actual = show_bytes(&frame.data);
        let mismatch = |label: String| {
            let mut e = StepError::failed("unexpected reply").label(label);
            e.failure.expected = Some(wanted.to_owned());
            e.failure.actual = Some(actual.clone());
            e
        };
        match m {
            Matcher::Exact(t) | Matcher::Bytes(t) | Matcher::Hex(t) => {
                let expected = match m {
                    Matcher::Hex(_) => decode_hex(&self.expand(t)?, t)?,
                    _ => self.expand(t)?,
                };
                if frame.data != expected {
                    return Err(mismatch(format!("received {actual}")));
                }
            }
            Matcher::Regex(t) => {
                let pattern =
                    template::eval_regex(t, &self.env).map_err(|e| template_error(t, &e))?;
                // Compiled alone first, so that a stray `)` cannot escape the anchoring group.
                let re = regex::bytes::Regex::new(&pattern)
                    .and_then(|_| regex::bytes::Regex::new(&format!(r"\A(?:{pattern})\z")))
                    .map_err(|e| {
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
        let Some(conn) = self.conns.get_mut(name) else {
            return Err(StepError::new(
                Outcome::Error,
                format!("connection `{name}` is not open"),
            ));
        };
        let event = conn.recv(deadline).await;
        match event {
            Ok(Incoming::Closed(how, at)) => {
                let at = self.at(at);
                self.transcript.push(
                    at,
                    name,
                    EntryKind::ClosedByTarget {
                        how: how.to_string(),
                    },
                );
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
                self.transcript.push(
                    at,
                    name,
                    EntryKind::Received {
                        data: Data::new(&frame.data),
                        terminated: frame.terminated,
                    },
                );
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
            match conn.recv(deadline).await {
                Err(_) => {}
                Ok(Incoming::Message(frame, at)) => {
                    let at = self.at(at);
                    let actual = show_bytes(&frame.data);
                    self.transcript.push(
                        at,
                        &name,
                        EntryKind::Received {
                            data: Data::new(&frame.data),
                            terminated: frame.terminated,
                        },
                    );
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
                    self.transcript.push(
                        at,
                        &name,
                        EntryKind::ClosedByTarget {
                            how: how.to_string(),
                        },
                    );
                    return Err(StepError::failed(format!(
                        "expected silence on `{name}`, but the target closed the connection ({how})"
                    ))
                    .label("connection closed"));
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
        conn.shutdown(self.timeout).await;
        let at = self.elapsed();
        self.transcript.push(at, name, EntryKind::ClosedByUs);
        let deadline = Instant::now() + CLOSE_LINGER.min(self.timeout);
        loop {
            match conn.recv(deadline).await {
                Ok(Incoming::Message(frame, at)) => {
                    let at = self.at(at);
                    self.transcript.push(
                        at,
                        name,
                        EntryKind::Received {
                            data: Data::new(&frame.data),
                            terminated: frame.terminated,
                        },
                    );
                }
                Ok(Incoming::Closed(how, at)) => {
                    let at = self.at(at);
                    self.transcript.push(
                        at,
                        name,
                        EntryKind::ClosedByTarget {
                            how: how.to_string(),
                        },
                    );
                    return;
                }
                Ok(Incoming::TooLong(..)) | Err(_) => return,
            }
        }
    }

    /// Closes every connection still open, politely and within a bound.
    async fn finish(&mut self) {
        let conns = std::mem::take(&mut self.conns);
        for (_, mut conn) in conns {
            if conn.closed.is_none() {
                conn.shutdown(Duration::from_millis(200)).await;
            }
        }
    }
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
    StepError::failed(format!(
        "the target closed `{name}` ({how}) before the expected message"
    ))
    .label(format!("expected {wanted}"))
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
