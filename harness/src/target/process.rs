//! A program under test started by the harness: a shell command in its own process group,
//! stdin closed, stdout and stderr captured line by line, stopped as a whole group (TERM,
//! then KILL after a grace period) so that nothing it started outlives the run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::output::{self, Exit, OutputSink, OutputWatch};

/// How long a stopped program gets between TERM and KILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a scenario that failed because the target closed, reset or refused a connection
/// waits to see whether the target's process is exiting (a dying server closes its
/// connections a moment before its exit can be seen). Other failures look only once.
pub const EXIT_GRACE: Duration = Duration::from_millis(500);
/// How long the streams may stay open after the program exited (a child of it may hold
/// them) before they are given up.
const STREAM_LINGER: Duration = Duration::from_millis(500);
/// How long the exit of a program waits for its streams to be drained before it is recorded.
const EXIT_DRAIN: Duration = Duration::from_millis(50);

/// A command could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start `{command}`: {source}")]
pub struct SpawnError {
    pub command: String,
    #[source]
    pub source: std::io::Error,
}

/// A running (or finished) program.
#[derive(Debug)]
pub struct Process {
    pid: Option<u32>,
    watch: OutputWatch,
    waiter: tokio::task::JoinHandle<()>,
    command: String,
}

impl Process {
    /// Starts `command` with `sh -c` in `dir` (the current directory if `None`).
    pub fn spawn(command: &str, dir: Option<&Path>) -> Result<Self, SpawnError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|source| SpawnError {
            command: command.to_owned(),
            source,
        })?;
        let (sink, watch) = output::channel(2);
        let readers = [
            child
                .stdout
                .take()
                .map(|s| read_into(s, sink.clone(), false)),
            child
                .stderr
                .take()
                .map(|s| read_into(s, sink.clone(), true)),
        ];
        let pid = child.id();
        let waiter = tokio::spawn(wait(child, sink, readers));
        Ok(Self {
            pid,
            watch,
            waiter,
            command: command.to_owned(),
        })
    }

    /// What it printed and whether it ended.
    pub fn watch(&self) -> OutputWatch {
        self.watch.clone()
    }

    /// The command line, for reports.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Stops the whole process group: TERM, then KILL if anything is left after
    /// [`STOP_GRACE`]. Returns once the program has been reaped.
    pub async fn stop(mut self) {
        if self.watch.with(|o| o.exit.is_none()) {
            self.signal(Signal::Term);
            self.watch
                .exit_by(tokio::time::Instant::now() + STOP_GRACE)
                .await;
        }
        // Children of the program may outlive it in the group: KILL reaches them too.
        self.signal(Signal::Kill);
        let _ = (&mut self.waiter).await;
    }

    fn signal(&self, signal: Signal) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            use nix::sys::signal::{Signal as S, killpg};
            let s = match signal {
                Signal::Term => S::SIGTERM,
                Signal::Kill => S::SIGKILL,
            };
            // The group may be gone already; nothing to do then.
            let _ = killpg(nix::unistd::Pid::from_raw(pid), s);
        }
        #[cfg(not(unix))]
        let _ = signal;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.waiter.is_finished() {
            self.signal(Signal::Kill);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

fn read_into(
    mut stream: impl AsyncRead + Unpin + Send + 'static,
    sink: OutputSink,
    stderr: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.feed(stderr, &buf[..n]),
            }
        }
        sink.close(stderr);
    })
}

async fn wait(
    mut child: Child,
    sink: OutputSink,
    readers: [Option<tokio::task::JoinHandle<()>>; 2],
) {
    let exit = match child.wait().await {
        Ok(status) => exit_of(status),
        Err(_) => Exit::Code(-1),
    };
    // What the program printed before it ended comes before its end in the output: the
    // exit is recorded once its streams are drained, or after a short while when a child
    // of it holds them (so that an exit is still seen promptly).
    let mut readers = std::pin::pin!(async {
        for r in readers.into_iter().flatten() {
            let _ = r.await;
        }
    });
    let drained = tokio::time::timeout(EXIT_DRAIN, &mut readers).await.is_ok();
    sink.exited(exit);
    if !drained && tokio::time::timeout(STREAM_LINGER, readers).await.is_err() {
        sink.abandon_streams();
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return Exit::Signal(signal);
        }
    }
    Exit::Code(status.code().unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    async fn finished(p: &Process) -> output::Output {
        let mut watch = p.watch();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watch.with(output::Output::finished) {
            assert!(watch.changed(deadline).await, "the program did not finish");
        }
        watch.snapshot()
    }

    #[tokio::test]
    async fn captures_lines_and_the_exit_code() {
        let p = Process::spawn("echo one; echo two >&2; printf three; exit 3", None)
            .expect("sh starts");
        let out = finished(&p).await;
        assert_eq!(out.exit.map(|e| e.1), Some(Exit::Code(3)));
        assert_eq!(out.tail(false, 9), vec!["one", "three"]);
        assert_eq!(out.tail(true, 9), vec!["two"]);
        p.stop().await;
    }

    #[tokio::test]
    async fn stop_ends_the_whole_group() {
        // The shell starts a child that ignores nothing: TERM to the group ends both.
        let p = Process::spawn("sleep 30 & sleep 30; echo never", None).expect("sh starts");
        let watch = p.watch();
        let started = Instant::now();
        p.stop().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let out = watch.snapshot();
        assert!(matches!(out.exit, Some((_, Exit::Signal(_)))), "{out:?}");
        assert!(out.tail(false, 9).is_empty());
    }

    #[tokio::test]
    async fn a_program_that_ignores_term_is_killed() {
        let p = Process::spawn("trap '' TERM; echo ready; sleep 30", None).expect("sh starts");
        let mut watch = p.watch();
        let deadline = Instant::now() + Duration::from_secs(10);
        while watch.with(|o| o.lines.is_empty()) {
            assert!(watch.changed(deadline).await);
        }
        p.stop().await;
        assert!(watch.snapshot().exit.is_some());
    }
}
