//! What happened on the wire during one scenario, in order, for reports and snapshots.
//!
//! ```text
//!   0.002s  C  connected to 127.0.0.1:4000 (tls)
//!   0.002s  C -> S  "CONNECT u1f3a\n"
//!   0.003s  C -> S  32 bytes  0834af32 8d106def d94b3074 232208e2 9e7fef1a 371c9b0e bbf23902 105dd763
//!   0.049s  S -> C  "CONNECT: OK\n"
//!   0.300s  S -> C  "2930711296"  (no line end)
//!   0.301s  C  closed by the target (clean close)
//! ```
//!
//! On an `rsa` connection messages are shown as plaintext (what the steps wrote and what
//! the blocks decrypted to), the key exchange as one line, and the private keys nowhere:
//!
//! ```text
//!   0.004s  C  connected to 127.0.0.1:4000 (rsa)
//!   0.004s  C  keys exchanged (512-bit RSA)
//!   0.004s  C -> S  "CONNECT u1f3a\n"
//!   0.005s  C -> S  32 bytes  0834af32 8d106def ...  (in the clear)
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The transcript keeps at most this many entries; later ones are counted, not kept.
pub const MAX_ENTRIES: usize = 10_000;
/// Bytes of one message kept in the transcript.
pub const MAX_DATA: usize = 64 * 1024;
/// Bytes of messages a transcript keeps in all; past them, each message keeps only its first
/// [`SHORT_DATA`] bytes, so a flood costs at most [`MAX_ENTRIES`] short entries.
pub const MAX_KEPT: usize = 4 << 20;
/// Bytes of each message kept once [`MAX_KEPT`] is reached.
pub const SHORT_DATA: usize = 256;

/// One event on one connection.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Time since the scenario started.
    #[serde(rename = "t_ms", serialize_with = "millis")]
    pub at: Duration,
    pub conn: String,
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Handled by a background rule (answered or ignored), not by a step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EntryKind {
    Connected {
        addr: String,
        transport: String,
    },
    ConnectFailed {
        reason: String,
    },
    /// Bytes we sent, in `writes` separate writes. On an `rsa` connection the plaintext of
    /// the block that carried them, or (`clear`) bytes sent unencrypted.
    Sent {
        #[serde(flatten)]
        data: Data,
        writes: usize,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        clear: bool,
    },
    /// The RSA key exchange of an `rsa` connection completed: every message from now on is
    /// one block of this many bits.
    KeysExchanged {
        bits: usize,
    },
    /// `connect: { key: "..." }`: these bytes went out as the client's public key (`bits`
    /// when they are a PKCS#1 public key); no exchange, nothing encrypted.
    KeyOffered {
        #[serde(flatten)]
        data: Data,
        #[serde(skip_serializing_if = "Option::is_none")]
        bits: Option<usize>,
    },
    /// `connect: { key: none }`: an `rsa` connection without any key exchange.
    NoKeyExchange,
    /// A write failed: the target had closed the connection.
    SendFailed {
        reason: String,
    },
    Received {
        #[serde(flatten)]
        data: Data,
        terminated: bool,
    },
    /// The target sent more than the receive limit without a line end.
    TooLong {
        limit: usize,
        #[serde(flatten)]
        head: Data,
    },
    ClosedByTarget {
        how: String,
    },
    /// TLS failed on what the target sent: the connection cannot be read on.
    TlsError {
        reason: String,
    },
    ClosedByUs,
    /// We closed our writing side and went on reading.
    ShutDownByUs,
    /// The client under test opened this connection (the harness plays the server).
    Accepted {
        from: String,
    },
    /// A line the client under test printed.
    Output {
        stream: &'static str,
        text: String,
    },
    /// The client under test ended.
    Exited {
        how: String,
    },
    /// A step about the client's process could not be checked: a person started it.
    NotChecked {
        what: String,
    },
}

impl EntryKind {
    /// A message received from the target.
    pub fn received(frame: &super::framing::Frame) -> Self {
        EntryKind::Received {
            data: Data::new(&frame.data),
            terminated: frame.terminated,
        }
    }

    /// The message bytes the entry holds, if any.
    fn data_mut(&mut self) -> Option<&mut Data> {
        match self {
            EntryKind::Sent { data, .. }
            | EntryKind::KeyOffered { data, .. }
            | EntryKind::Received { data, .. }
            | EntryKind::TooLong { head: data, .. } => Some(data),
            _ => None,
        }
    }
}

/// Message bytes, shown as text when they are printable and as hex otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Data {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// Length on the wire (the kept bytes may be fewer).
    pub len: usize,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

impl Data {
    pub fn new(bytes: &[u8]) -> Self {
        let kept = &bytes[..bytes.len().min(MAX_DATA)];
        let (text, hex) = if is_text(kept) {
            (Some(String::from_utf8_lossy(kept).into_owned()), None)
        } else {
            (None, Some(hex::encode(kept)))
        };
        Self {
            text,
            hex,
            len: bytes.len(),
            bytes: kept.to_vec(),
        }
    }

    /// Keeps only the first `max` bytes (the length on the wire stays).
    pub fn shorten(&mut self, max: usize) {
        if self.bytes.len() > max {
            let len = self.len;
            let head = self.bytes[..max].to_vec();
            *self = Data::new(&head);
            self.len = len;
        }
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Printable ASCII plus the whitespace a text protocol uses.
pub fn is_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || matches!(b, b'\n' | b'\r' | b'\t'))
}

/// `"text"` with escapes for line ends, or `N bytes  hex groups` for binary data.
pub fn show_bytes(bytes: &[u8]) -> String {
    if is_text(bytes) {
        let mut out = String::with_capacity(bytes.len() + 2);
        out.push('"');
        for &b in bytes {
            match b {
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                _ => out.push(b as char),
            }
        }
        out.push('"');
        out
    } else {
        let mut out = format!("{} bytes ", bytes.len());
        for chunk in bytes.chunks(4) {
            out.push(' ');
            out.push_str(&hex::encode(chunk));
        }
        out
    }
}

/// Characters of one message a transcript line shows.
const LINE_CHARS: usize = 300;

/// A message of a transcript line: `bytes` (the kept bytes, perhaps with the line end put
/// back) rendered, and cut to [`LINE_CHARS`] saying how long the message was on the wire.
fn show_data(data: &Data, bytes: &[u8]) -> String {
    let shown = show_bytes(bytes);
    if shown.chars().count() <= LINE_CHARS && data.len == data.bytes.len() {
        return shown;
    }
    let kept: String = shown.chars().take(LINE_CHARS).collect();
    format!("{kept}... ({} bytes in all)", data.len)
}

/// Shortens a long rendering to `max` characters, saying how much was left out.
pub fn abbreviate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}... ({} characters in all)", s.chars().count())
}

/// All entries of one scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transcript {
    pub entries: Vec<Entry>,
    /// Entries left out past [`MAX_ENTRIES`].
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: usize,
    /// The protocol has no line ends (chunks or packets): do not point out their absence.
    #[serde(skip)]
    pub binary: bool,
    /// The harness played the server: what it sent goes `S -> C`, what it received `C -> S`.
    #[serde(skip)]
    pub serving: bool,
    /// Message bytes kept so far (see [`MAX_KEPT`]).
    #[serde(skip)]
    pub kept: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Transcript {
    pub fn push(&mut self, at: Duration, conn: &str, kind: EntryKind) {
        let Some(kind) = self.admit(kind) else {
            return;
        };
        self.entries.push(Entry {
            at,
            conn: conn.to_owned(),
            kind,
            background: false,
        });
    }

    /// Holds an entry to the transcript's bounds: counted instead of kept past
    /// [`MAX_ENTRIES`], its message shortened past [`MAX_KEPT`].
    fn admit(&mut self, mut kind: EntryKind) -> Option<EntryKind> {
        if self.entries.len() >= MAX_ENTRIES {
            self.dropped += 1;
            return None;
        }
        if let Some(data) = kind.data_mut() {
            if self.kept >= MAX_KEPT {
                data.shorten(SHORT_DATA);
            }
            self.kept += data.bytes.len();
        }
        Some(kind)
    }

    /// Counts entries left out before they reached the transcript.
    pub fn count_dropped(&mut self, entries: usize) {
        self.dropped += entries;
    }

    /// `C -> S` or `S -> C` for a message on connection `c` that the harness sent (or
    /// received), depending on the side it plays.
    fn arrow(&self, c: &str, sent: bool) -> String {
        if sent != self.serving {
            format!("{c} -> S")
        } else {
            format!("S -> {c}")
        }
    }

    /// Adds what the client under test printed and how it ended (as entries of the
    /// connection-like name `conn`), each at its time. `started` is when the scenario began.
    pub fn add_output(
        &mut self,
        conn: &str,
        output: &crate::target::output::Output,
        started: tokio::time::Instant,
    ) {
        for l in &output.lines {
            let at = l.at.saturating_duration_since(started);
            let stream = if l.stderr { "stderr" } else { "stdout" };
            let mut text = l.text.clone();
            if l.cut {
                text.push_str("... (line cut)");
            }
            self.insert_at(at, conn, EntryKind::Output { stream, text });
        }
        for (i, n) in output.dropped.iter().enumerate() {
            if *n > 0 {
                let stream = if i == 1 { "stderr" } else { "stdout" };
                let at = output.exit.map_or_else(
                    || started.elapsed(),
                    |(t, _)| t.saturating_duration_since(started),
                );
                self.insert_at(
                    at,
                    conn,
                    EntryKind::Output {
                        stream,
                        text: format!("... {n} more lines not kept"),
                    },
                );
            }
        }
        if let Some((t, exit)) = output.exit {
            let at = t.saturating_duration_since(started);
            self.insert_at(
                at,
                conn,
                EntryKind::Exited {
                    how: exit.to_string(),
                },
            );
        }
    }

    /// Adds a line a program under test printed, at its time.
    pub fn insert_output(&mut self, at: Duration, conn: &str, stream: &'static str, text: &str) {
        self.insert_at(
            at,
            conn,
            EntryKind::Output {
                stream,
                text: text.to_owned(),
            },
        );
    }

    /// Adds the end of a program under test, at its time.
    pub fn insert_exit(&mut self, at: Duration, conn: &str, exit: crate::target::output::Exit) {
        self.insert_at(
            at,
            conn,
            EntryKind::Exited {
                how: exit.to_string(),
            },
        );
    }

    /// Inserts a step's entry at its time (see [`Self::insert`]).
    fn insert_at(&mut self, at: Duration, conn: &str, kind: EntryKind) {
        self.insert(at, conn, kind, false);
    }

    /// Inserts an entry at its time, after the entries that are not later than it.
    fn insert(&mut self, at: Duration, conn: &str, kind: EntryKind, background: bool) {
        let Some(kind) = self.admit(kind) else {
            return;
        };
        let position = self
            .entries
            .iter()
            .rposition(|e| e.at <= at)
            .map_or(0, |i| i + 1);
        self.entries.insert(
            position,
            Entry {
                at,
                conn: conn.to_owned(),
                kind,
                background,
            },
        );
    }

    /// Records an entry that a background rule handled. Such entries are learned of late,
    /// so each goes in at its time, after the entries that are not later than it; the other
    /// entries keep their order.
    pub fn push_background(&mut self, at: Duration, conn: &str, kind: EntryKind) {
        self.insert(at, conn, kind, true);
    }

    /// Marks the last message received on `conn` as handled by a background rule.
    pub fn mark_background(&mut self, conn: &str) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.conn == conn && matches!(e.kind, EntryKind::Received { .. }))
        {
            e.background = true;
        }
    }

    /// Renders the transcript without the entries background rules handled: what the steps
    /// did, the same from run to run whatever else the target sent meanwhile.
    /// What the client under test printed comes last: when it arrives relative to the
    /// messages is up to the scheduler.
    pub fn render_steps(&self, redact: &[(String, String)]) -> String {
        let is_output =
            |e: &&Entry| matches!(e.kind, EntryKind::Output { .. } | EntryKind::Exited { .. });
        let steps = self.entries.iter().filter(|e| !e.background);
        let entries: Vec<Entry> = steps
            .clone()
            .filter(|e| !is_output(e))
            .chain(steps.filter(is_output))
            .cloned()
            .collect();
        self.render_entries(&entries, false, redact)
    }

    /// Renders the transcript, one line per entry. `with_times` adds the time column
    /// (snapshots leave it out). `redact` replaces each (needle, replacement) pair in the text.
    pub fn render(&self, with_times: bool, redact: &[(String, String)]) -> String {
        self.render_entries(&self.entries, with_times, redact)
    }

    /// The last `n` entries, rendered.
    pub fn render_tail(&self, n: usize, redact: &[(String, String)]) -> String {
        let start = self.entries.len().saturating_sub(n);
        let mut out = String::new();
        if start > 0 {
            let _ = writeln!(out, "  ... {start} earlier entries");
        }
        out.push_str(&self.render_entries(&self.entries[start..], true, redact));
        out
    }

    fn render_entries(
        &self,
        entries: &[Entry],
        with_times: bool,
        redact: &[(String, String)],
    ) -> String {
        let mut out = String::new();
        for e in entries {
            let mut line = String::new();
            if with_times {
                let _ = write!(line, "{:>8.3}s  ", e.at.as_secs_f64());
            }
            let c = &e.conn;
            match &e.kind {
                EntryKind::Connected { addr, transport } => {
                    let _ = write!(line, "{c}  connected to {addr} ({transport})");
                }
                EntryKind::ConnectFailed { reason } => {
                    let _ = write!(line, "{c}  could not connect: {reason}");
                }
                EntryKind::Sent {
                    data,
                    writes,
                    clear,
                } => {
                    let arrow = self.arrow(c, true);
                    let _ = write!(line, "{arrow}  {}", show_data(data, &data.bytes));
                    if *writes > 1 {
                        let _ = write!(line, "  (in {writes} writes)");
                    }
                    if *clear {
                        line.push_str("  (in the clear)");
                    }
                }
                EntryKind::KeysExchanged { bits } => {
                    let _ = write!(line, "{c}  keys exchanged ({bits}-bit RSA)");
                }
                EntryKind::KeyOffered { data, bits } => {
                    let arrow = self.arrow(c, true);
                    let key = match bits {
                        Some(bits) => format!(
                            "a {bits}-bit RSA public key (PKCS#1 PEM, {} bytes)",
                            data.len
                        ),
                        None => show_data(data, &data.bytes),
                    };
                    let _ = write!(
                        line,
                        "{arrow}  {key} as the client's public key; no key exchange, messages go out unencrypted"
                    );
                }
                EntryKind::NoKeyExchange => {
                    let _ = write!(
                        line,
                        "{c}  no key exchange (key: none): messages go out unencrypted"
                    );
                }
                EntryKind::SendFailed { reason } => {
                    let arrow = self.arrow(c, true);
                    let _ = write!(line, "{arrow}  could not send: {reason}");
                }
                EntryKind::Received { data, terminated } => {
                    let mut bytes = data.bytes.clone();
                    if *terminated {
                        bytes.push(b'\n');
                    }
                    let arrow = self.arrow(c, false);
                    let _ = write!(line, "{arrow}  {}", show_data(data, &bytes));
                    if !terminated && !self.binary {
                        line.push_str("  (no line end)");
                    }
                }
                EntryKind::TooLong { limit, head } => {
                    let arrow = self.arrow(c, false);
                    let _ = write!(
                        line,
                        "{arrow}  more than {limit} bytes without a line end, starting {}",
                        show_bytes(&head.bytes)
                    );
                }
                EntryKind::ClosedByTarget { how } => {
                    let who = if self.serving { "client" } else { "target" };
                    let _ = write!(line, "{c}  closed by the {who} ({how})");
                }
                EntryKind::TlsError { reason } => {
                    let _ = write!(line, "{c}  TLS error: {reason}");
                }
                EntryKind::ClosedByUs => {
                    let _ = write!(line, "{c}  closed by the harness");
                }
                EntryKind::ShutDownByUs => {
                    let _ = write!(
                        line,
                        "{c}  the harness stopped writing (FIN), still reading"
                    );
                }
                EntryKind::Accepted { from } => {
                    let _ = write!(line, "{c}  accepted a connection from {from}");
                }
                EntryKind::Output { stream, text } => {
                    let _ = write!(line, "{c}  {stream} | {}", abbreviate(text, LINE_CHARS));
                }
                EntryKind::Exited { how } => {
                    let _ = write!(line, "{c}  ended ({how})");
                }
                EntryKind::NotChecked { what } => {
                    let _ = write!(
                        line,
                        "{c}  {what} not checked: the client was not started by the harness"
                    );
                }
            }
            if e.background {
                line.push_str("  (background)");
            }
            for (needle, replacement) in redact {
                if !needle.is_empty() {
                    line = line.replace(needle.as_str(), replacement);
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        if self.dropped > 0
            && entries
                .last()
                .is_some_and(|e| std::ptr::eq(e, self.entries.last().expect("non-empty")))
        {
            let _ = writeln!(out, "  ... {} more entries not kept", self.dropped);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(len: usize) -> EntryKind {
        EntryKind::Received {
            data: Data::new(&vec![b'x'; len]),
            terminated: true,
        }
    }

    fn kept(entry: &Entry) -> (usize, usize) {
        match &entry.kind {
            EntryKind::Received { data, .. } => (data.bytes.len(), data.len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_past_the_byte_budget_keep_their_head_and_length() {
        let mut t = Transcript::default();
        let whole = MAX_KEPT / MAX_DATA;
        for i in 0..whole + 3 {
            t.push(Duration::from_millis(i as u64), "C", received(MAX_DATA));
        }
        t.push_background(Duration::from_secs(60), "C", received(SHORT_DATA + 10));
        assert_eq!(t.entries.len(), whole + 4);
        let lengths: Vec<(usize, usize)> = t.entries.iter().map(kept).collect();
        assert!(lengths[..whole].iter().all(|&l| l == (MAX_DATA, MAX_DATA)));
        assert!(
            lengths[whole..whole + 3]
                .iter()
                .all(|&l| l == (SHORT_DATA, MAX_DATA))
        );
        // Background entries are held to the same budget.
        assert_eq!(lengths[whole + 3], (SHORT_DATA, SHORT_DATA + 10));
        let shown = t.entries[whole].kind.clone();
        let EntryKind::Received { data, .. } = shown else {
            unreachable!()
        };
        assert_eq!(
            show_data(&data, &data.bytes),
            format!(
                "\"{}\"... ({MAX_DATA} bytes in all)",
                "x".repeat(SHORT_DATA)
            )
        );
    }

    #[test]
    fn entries_past_the_limit_are_counted() {
        let mut t = Transcript::default();
        for _ in 0..MAX_ENTRIES + 5 {
            t.push(Duration::ZERO, "C", EntryKind::ClosedByUs);
        }
        t.count_dropped(2);
        assert_eq!(t.entries.len(), MAX_ENTRIES);
        assert_eq!(t.dropped, 7);
    }
}
