//! File transfers (level 3): the requests waiting for an answer, the accepted transfers, and
//! the data channel that carries the bytes.
//!
//! ```text
//! data channel (its own port, default control port + 1)
//!
//!   client -> server   UPLOAD <transferId>\n        or   DOWNLOAD <transferId>\n
//!   server -> client   ERROR <reason>\n, close      bad first line, unknown or expired id,
//!                                                   a side attached twice, time-out
//!   server -> both     READY\n                      once both sides are attached
//!   uploader -> server <the file's bytes>, then EOF (shutdown of its write side)
//!   server -> downloader  the same bytes, then EOF
//!   control, to both   FILE_TRANSFER_COMPLETE {"transferId":...,"status":"OK","size":N,
//!                      "checksum":"<sha256 of what passed>"}
//!                      or "status":"ERROR","code":10003 (declared size or checksum differ),
//!                      10004 (a side did not attach within transfer_timeout, a connection
//!                      broke or stalled for transfer_timeout, the server stopped), 10000
//!                      (more than max_file_size bytes came)
//! ```
//!
//! The transfer id is the capability: whoever names it may attach. A data connection naming
//! an id the server does not know yet waits up to `attach_grace` for it (a downloader may
//! connect before the server has read its `FILE_TRANSFER_RESPONSE`). The uploader may send
//! right after its `UPLOAD` line; nothing is relayed before `READY`. The relay copies through
//! a fixed buffer and waits for the downloader, so memory stays bounded whatever the size.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::codec::{Code, DataHello, DataReply, MAX_DATA_HELLO, code};
use super::fault::Fault;
use super::server::Shared;

/// Requests one uploader may have waiting for one receiver; an older one is dropped.
pub const MAX_PENDING_PER_PAIR: usize = 8;
/// Bytes the relay moves at a time.
const RELAY_BUFFER: usize = 16 * 1024;
/// How often a data connection naming an unknown transfer looks again.
const ATTACH_POLL: Duration = Duration::from_millis(10);
/// Time to write `ERROR` or `READY`.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `id` is a UUID in its 36-character hyphenated form (any version, either case).
pub fn is_valid_transfer_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

/// What an uploader declared about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) size: Option<u64>,
    pub(crate) checksum: Option<String>,
}

/// Which side of a transfer a data connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Upload,
    Download,
}

/// A data connection handed to its transfer.
#[derive(Debug)]
pub(crate) struct Attach {
    side: Side,
    stream: TcpStream,
    /// Bytes read after the hello line (the start of an upload).
    early: Vec<u8>,
}

/// An accepted transfer whose task is to be started.
#[derive(Debug)]
pub(crate) struct NewTransfer {
    id: String,
    uploader: String,
    downloader: String,
    request: Request,
    attach: mpsc::Receiver<Attach>,
}

/// How a transfer ended.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) transfer_id: String,
    pub(crate) uploader: String,
    pub(crate) downloader: String,
    pub(crate) result: Result<(), Code>,
    pub(crate) size: u64,
    pub(crate) checksum: String,
}

/// Requests waiting for an answer, and accepted transfers until they end.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    /// (uploader, receiver) -> requests, oldest first.
    pending: HashMap<(String, String), VecDeque<Request>>,
    /// transfer id -> where its data connections go (`None` once both are there).
    active: HashMap<String, Option<mpsc::Sender<Attach>>>,
}

/// What a data connection finds under its transfer id.
enum Lookup {
    Unknown,
    InProgress,
    Open(mpsc::Sender<Attach>),
}

impl Transfers {
    pub(crate) fn request(&mut self, uploader: &str, receiver: &str, request: Request) {
        let queue = self
            .pending
            .entry((uploader.to_owned(), receiver.to_owned()))
            .or_default();
        if queue.len() >= MAX_PENDING_PER_PAIR {
            queue.pop_front();
        }
        queue.push_back(request);
    }

    pub(crate) fn has_pending(&self, uploader: &str, receiver: &str) -> bool {
        self.pending
            .contains_key(&(uploader.to_owned(), receiver.to_owned()))
    }

    /// The oldest request of `uploader` to `receiver`.
    pub(crate) fn take_pending(&mut self, uploader: &str, receiver: &str) -> Option<Request> {
        let key = (uploader.to_owned(), receiver.to_owned());
        let queue = self.pending.get_mut(&key)?;
        let request = queue.pop_front();
        if queue.is_empty() {
            self.pending.remove(&key);
        }
        request
    }

    /// Drops the requests from and to a user who left. Accepted transfers go on: their id is
    /// their capability.
    pub(crate) fn forget_user(&mut self, name: &str) {
        self.pending.retain(|(u, r), _| u != name && r != name);
    }

    pub(crate) fn is_known(&self, id: &str) -> bool {
        self.active.contains_key(id)
    }

    pub(crate) fn active_count(&self) -> usize {
        self.active.len()
    }

    pub(crate) fn register(
        &mut self,
        id: String,
        uploader: String,
        downloader: String,
        request: Request,
    ) -> NewTransfer {
        // Room for both sides and a stray third, which is refused.
        let (tx, rx) = mpsc::channel(4);
        self.active.insert(id.clone(), Some(tx));
        NewTransfer {
            id,
            uploader,
            downloader,
            request,
            attach: rx,
        }
    }

    fn lookup(&self, id: &str) -> Lookup {
        match self.active.get(id) {
            None => Lookup::Unknown,
            Some(None) => Lookup::InProgress,
            Some(Some(tx)) => Lookup::Open(tx.clone()),
        }
    }

    fn started(&mut self, id: &str) {
        if let Some(slot) = self.active.get_mut(id) {
            *slot = None;
        }
    }

    pub(crate) fn finish(&mut self, id: &str) {
        self.active.remove(id);
    }
}

/// Accepts data connections until the server stops; then cuts the ones still open.
pub(crate) async fn serve_data(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    let permits = Arc::new(Semaphore::new(shared.settings.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("data channel: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(%peer, "data channel: refusing connection: too many open");
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    data_connection(shared, tcp).await;
                    drop(permit);
                });
            }
        }
    }
    connections.shutdown().await;
}

/// Writes `ERROR <reason>` and closes.
async fn refuse(mut stream: TcpStream, reason: &str) {
    debug!("data channel: {reason}");
    let mut line = Vec::new();
    DataReply::Error(reason.to_owned()).encode(&mut line);
    let _ = tokio::time::timeout(REPLY_TIMEOUT, async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads the hello line: the line (without `\n`) and what came after it.
async fn read_hello(stream: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; MAX_DATA_HELLO];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let early = buf.split_off(i + 1);
            buf.pop();
            return Ok(Some((buf, early)));
        }
        if buf.len() >= MAX_DATA_HELLO {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// Reads a data connection's hello and hands the connection to its transfer.
async fn data_connection(shared: Arc<Shared>, mut stream: TcpStream) {
    let settings = shared.settings.clone();
    let expected = "expected UPLOAD <transferId> or DOWNLOAD <transferId>";
    let (line, early) =
        match tokio::time::timeout(settings.transfer_timeout, read_hello(&mut stream)).await {
            Ok(Ok(Some(hello))) => hello,
            Ok(Ok(None)) => return,
            Ok(Err(_)) => return refuse(stream, expected).await,
            Err(_) => return refuse(stream, "no UPLOAD or DOWNLOAD line in time").await,
        };
    let hello = match DataHello::parse(&line) {
        Ok(hello) => hello,
        Err(_) => return refuse(stream, expected).await,
    };
    let give_up = Instant::now() + settings.attach_grace;
    let tx = loop {
        let found = shared.hub().transfers.lookup(hello.transfer_id());
        match found {
            Lookup::Open(tx) => break tx,
            Lookup::InProgress => {
                return refuse(stream, "the transfer is in progress already").await;
            }
            Lookup::Unknown if Instant::now() < give_up => {
                tokio::time::sleep(ATTACH_POLL).await;
            }
            Lookup::Unknown => return refuse(stream, "unknown transfer").await,
        }
    };
    let side = match hello {
        DataHello::Upload(_) => Side::Upload,
        DataHello::Download(_) => Side::Download,
    };
    if let Err(mpsc::error::SendError(attach)) = tx
        .send(Attach {
            side,
            stream,
            early,
        })
        .await
    {
        refuse(attach.stream, "unknown transfer").await;
    }
}

/// Waits for both sides of an accepted transfer, relays the file, and reports to both
/// parties.
pub(crate) async fn run_transfer(shared: Arc<Shared>, new: NewTransfer) {
    let NewTransfer {
        id,
        uploader,
        downloader,
        request,
        mut attach,
    } = new;
    let settings = shared.settings.clone();
    let mut stop = shared.stop.clone();
    let deadline = Instant::now() + settings.transfer_timeout;
    let mut up: Option<Attach> = None;
    let mut down: Option<Attach> = None;
    let failure = loop {
        if up.is_some() && down.is_some() {
            break None;
        }
        tokio::select! {
            _ = stop.changed() => break Some("the server is shutting down"),
            () = tokio::time::sleep_until(deadline) => {
                break Some("the other side did not attach in time");
            }
            next = attach.recv() => {
                let Some(next) = next else {
                    break Some("the transfer was dropped");
                };
                let slot = match next.side {
                    Side::Upload => &mut up,
                    Side::Download => &mut down,
                };
                if slot.is_some() {
                    refuse(next.stream, "this side of the transfer is attached already").await;
                } else {
                    *slot = Some(next);
                }
            }
        }
    };
    let mut progress = Progress::default();
    let result = match (failure, up, down) {
        (None, Some(up), Some(down)) => {
            shared.hub().transfers.started(&id);
            while let Ok(stray) = attach.try_recv() {
                refuse(stray.stream, "the transfer is in progress already").await;
            }
            drop(attach);
            let relay = relay(
                up,
                down,
                settings.transfer_timeout,
                settings.max_file_size,
                settings.faults.has(Fault::TransferCorruptsByte),
                &mut progress,
            );
            tokio::select! {
                _ = stop.changed() => Err(code::TRANSFER_FAILED),
                result = relay => result.and_then(|()| progress.check(&request)),
            }
        }
        (failure, up, down) => {
            let reason = failure.unwrap_or("the transfer was dropped");
            for side in [up, down].into_iter().flatten() {
                refuse(side.stream, reason).await;
            }
            Err(code::TRANSFER_FAILED)
        }
    };
    debug!(id, ?result, size = progress.size, "transfer ends");
    let checksum = hex::encode(progress.hasher.finalize());
    shared.hub().transfer_done(Done {
        transfer_id: id,
        uploader,
        downloader,
        result,
        size: progress.size,
        checksum,
    });
}

/// What passed through the relay so far.
#[derive(Default)]
struct Progress {
    size: u64,
    hasher: Sha256,
}

impl Progress {
    /// Whether what passed is what the uploader declared.
    fn check(&self, request: &Request) -> Result<(), Code> {
        if request.size.is_some_and(|s| s != self.size) {
            return Err(code::TRANSFER_MISMATCH);
        }
        if let Some(declared) = &request.checksum {
            let passed = hex::encode(self.hasher.clone().finalize());
            if !declared.eq_ignore_ascii_case(&passed) {
                return Err(code::TRANSFER_MISMATCH);
            }
        }
        Ok(())
    }
}

async fn with_timeout<T>(
    limit: Duration,
    io: impl Future<Output = std::io::Result<T>>,
) -> Result<T, Code> {
    match tokio::time::timeout(limit, io).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            debug!("relay: {e}");
            Err(code::TRANSFER_FAILED)
        }
        Err(_) => {
            debug!("relay: stalled for {limit:?}");
            Err(code::TRANSFER_FAILED)
        }
    }
}

/// `READY` to both, then the uploader's bytes to the downloader until the uploader's EOF.
async fn relay(
    mut up: Attach,
    mut down: Attach,
    idle: Duration,
    max_size: u64,
    corrupt: bool,
    progress: &mut Progress,
) -> Result<(), Code> {
    let mut ready = Vec::new();
    DataReply::Ready.encode(&mut ready);
    with_timeout(REPLY_TIMEOUT, down.stream.write_all(&ready)).await?;
    with_timeout(REPLY_TIMEOUT, up.stream.write_all(&ready)).await?;
    let mut buf = vec![0u8; RELAY_BUFFER];
    let mut early = std::mem::take(&mut up.early);
    loop {
        let chunk: &mut [u8] = if early.is_empty() {
            let n = with_timeout(idle, up.stream.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            &mut buf[..n]
        } else {
            &mut early
        };
        progress.hasher.update(&*chunk);
        if corrupt && progress.size == 0 {
            chunk[0] ^= 0x01;
        }
        progress.size += chunk.len() as u64;
        if progress.size > max_size {
            return Err(code::FILE_TOO_LARGE);
        }
        with_timeout(idle, down.stream.write_all(chunk)).await?;
        early.clear();
    }
    with_timeout(idle, down.stream.shutdown()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_ids_are_hyphenated_uuids() {
        assert!(is_valid_transfer_id("67e55044-10b1-426f-9247-bb680e5fe0c8"));
        assert!(is_valid_transfer_id("67E55044-10B1-426F-9247-BB680E5FE0C8"));
        assert!(!is_valid_transfer_id("67e5504410b1426f9247bb680e5fe0c8"));
        assert!(!is_valid_transfer_id(
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}"
        ));
        assert!(!is_valid_transfer_id("not-a-uuid"));
        assert!(!is_valid_transfer_id(""));
    }

    #[test]
    fn pending_requests_are_first_in_first_out_and_bounded() {
        let mut t = Transfers::default();
        for size in 0..10 {
            t.request(
                "a",
                "b",
                Request {
                    size: Some(size),
                    checksum: None,
                },
            );
        }
        assert!(t.has_pending("a", "b"));
        assert!(!t.has_pending("b", "a"));
        let sizes: Vec<_> = std::iter::from_fn(|| t.take_pending("a", "b"))
            .map(|r| r.size)
            .collect();
        assert_eq!(sizes.len(), MAX_PENDING_PER_PAIR);
        assert_eq!(sizes[0], Some(2));
        assert!(!t.has_pending("a", "b"));
        t.request(
            "a",
            "b",
            Request {
                size: None,
                checksum: None,
            },
        );
        t.forget_user("b");
        assert!(!t.has_pending("a", "b"));
    }
}
