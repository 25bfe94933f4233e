//! What a program under test printed and how it ended, as it happens: lines of stdout and
//! stderr with the time each arrived, kept within fixed bounds, and a signal for whoever
//! waits on either.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time::Instant;

/// Lines of each stream kept; later lines are counted, not kept.
pub const MAX_LINES: usize = 2_000;
/// Characters of one line kept.
pub const MAX_LINE: usize = 4_096;

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Ended by a signal (Unix).
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

impl Exit {
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }
}

/// One line the program printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: Instant,
    pub stderr: bool,
    pub text: String,
    /// The line was longer than [`MAX_LINE`] and was cut.
    pub cut: bool,
}

/// Everything known so far.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub lines: Vec<Line>,
    /// Lines not kept, per stream (stdout, stderr).
    pub dropped: [usize; 2],
    /// Bytes printed, per stream (stdout, stderr).
    pub bytes: [u64; 2],
    pub exit: Option<(Instant, Exit)>,
    /// Both streams have ended (no more lines will come).
    pub streams_closed: bool,
}

impl Output {
    /// Whether nothing more can arrive: the program exited and its streams have ended.
    pub fn finished(&self) -> bool {
        self.exit.is_some() && self.streams_closed
    }

    /// The last `n` lines of one stream, as text.
    pub fn tail(&self, stderr: bool, n: usize) -> Vec<&str> {
        let lines: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.stderr == stderr)
            .map(|l| l.text.as_str())
            .collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

/// The writing side: feeds bytes and the exit in, wakes watchers.
#[derive(Debug, Clone)]
pub struct OutputSink {
    state: Arc<Mutex<SinkState>>,
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct SinkState {
    output: Output,
    /// A line begun but not ended, per stream.
    partial: [Vec<u8>; 2],
    partial_cut: [bool; 2],
    open_streams: u8,
}

/// The reading side.
#[derive(Debug, Clone)]
pub struct OutputWatch {
    state: Arc<Mutex<SinkState>>,
    changed: watch::Receiver<u64>,
}

/// A new sink expecting `streams` streams to end before the output is complete.
pub fn channel(streams: u8) -> (OutputSink, OutputWatch) {
    let state = Arc::new(Mutex::new(SinkState {
        open_streams: streams,
        output: Output {
            streams_closed: streams == 0,
            ..Output::default()
        },
        ..SinkState::default()
    }));
    let (tx, rx) = watch::channel(0);
    (
        OutputSink {
            state: state.clone(),
            changed: Arc::new(tx),
        },
        OutputWatch { state, changed: rx },
    )
}

fn lock(state: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    // A panic while holding the lock cannot leave the state half-written in a way that
    // matters for reading lines; go on with it.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OutputSink {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Bytes printed on one stream.
    pub fn feed(&self, stderr: bool, bytes: &[u8]) {
        let now = Instant::now();
        let i = usize::from(stderr);
        {
            let mut s = lock(&self.state);
            s.output.bytes[i] += bytes.len() as u64;
            for &b in bytes {
                if b == b'\n' {
                    let text = std::mem::take(&mut s.partial[i]);
                    let cut = std::mem::take(&mut s.partial_cut[i]);
                    push_line(&mut s.output, now, stderr, &text, cut);
                } else if s.partial[i].len() < MAX_LINE {
                    s.partial[i].push(b);
                } else {
                    s.partial_cut[i] = true;
                }
            }
        }
        self.notify();
    }

    /// One stream has ended; a last line without a line end counts as a line.
    pub fn close(&self, stderr: bool) {
        let i = usize::from(stderr);
        {
            let mut s = lock(&self.state);
            if !s.partial[i].is_empty() {
                let text = std::mem::take(&mut s.partial[i]);
                let cut = std::mem::take(&mut s.partial_cut[i]);
                push_line(&mut s.output, Instant::now(), stderr, &text, cut);
            }
            s.open_streams = s.open_streams.saturating_sub(1);
            s.output.streams_closed = s.open_streams == 0;
        }
        self.notify();
    }

    /// The program ended.
    pub fn exited(&self, exit: Exit) {
        lock(&self.state).output.exit = Some((Instant::now(), exit));
        self.notify();
    }

    /// Gives up on streams still open (a child of the program may hold them).
    pub fn abandon_streams(&self) {
        {
            let mut s = lock(&self.state);
            for i in 0..2 {
                if !s.partial[i].is_empty() {
                    let text = std::mem::take(&mut s.partial[i]);
                    let cut = std::mem::take(&mut s.partial_cut[i]);
                    push_line(&mut s.output, Instant::now(), i == 1, &text, cut);
                }
            }
            s.open_streams = 0;
            s.output.streams_closed = true;
        }
        self.notify();
    }
}

fn push_line(output: &mut Output, at: Instant, stderr: bool, bytes: &[u8], cut: bool) {
    let i = usize::from(stderr);
    let kept = output.lines.iter().filter(|l| l.stderr == stderr).count();
    if kept >= MAX_LINES {
        output.dropped[i] += 1;
        return;
    }
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    output.lines.push(Line {
        at,
        stderr,
        text: strip_ansi(&String::from_utf8_lossy(bytes)),
        cut,
    });
}

/// The text without terminal escape sequences (colours of logging libraries): reports are
/// read in files and browsers, not terminals.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: ESC [ parameters, then one final byte in @..~.
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // Any other escape: ESC and the one character after it.
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    out
}

impl OutputWatch {
    /// A copy of what is known now.
    pub fn snapshot(&self) -> Output {
        lock(&self.state).output.clone()
    }

    /// Runs `f` on what is known now.
    pub fn with<T>(&self, f: impl FnOnce(&Output) -> T) -> T {
        f(&lock(&self.state).output)
    }

    /// Waits until the program has ended or `deadline` passes; how it ended, if it has.
    pub async fn exit_by(&mut self, deadline: Instant) -> Option<Exit> {
        while self.with(|o| o.exit.is_none()) && self.changed(deadline).await {}
        self.with(|o| o.exit.map(|(_, e)| e))
    }

    /// Waits until something changes or `deadline` passes; `false` at the deadline.
    pub async fn changed(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.changed.changed()).await {
            Ok(Ok(())) => true,
            // The sink is gone: nothing will change any more; wait out the deadline.
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_left_out() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m done"),
            "2026  WARN done"
        );
        assert_eq!(strip_ansi("plain [text]"), "plain [text]");
        assert_eq!(strip_ansi("cut \u{1b}"), "cut ");
    }

    #[test]
    fn lines_are_split_cut_and_bounded() {
        let (sink, watch) = channel(2);
        sink.feed(false, b"KEY: GOOD\r\nScore: ");
        sink.feed(false, b"50\n");
        sink.feed(true, &vec![b'x'; MAX_LINE + 10]);
        sink.close(true);
        sink.close(false);
        let out = watch.snapshot();
        assert!(out.streams_closed);
        assert_eq!(out.tail(false, 5), vec!["KEY: GOOD", "Score: 50"]);
        let err: Vec<&Line> = out.lines.iter().filter(|l| l.stderr).collect();
        assert_eq!(err.len(), 1);
        assert!(err[0].cut);
        assert_eq!(err[0].text.len(), MAX_LINE);
        assert_eq!(out.bytes, [21, (MAX_LINE + 10) as u64]);

        let (sink, watch) = channel(1);
        sink.feed(false, "a\n".repeat(MAX_LINES + 7).as_bytes());
        let out = watch.snapshot();
        assert_eq!(out.lines.len(), MAX_LINES);
        assert_eq!(out.dropped, [7, 0]);
        assert!(!out.finished());
        sink.exited(Exit::Code(3));
        sink.close(false);
        assert!(watch.snapshot().finished());
    }
}
