//! A TCP connection speaking the RSA variant's transport (see [`super::rsa`]): the PEM key
//! exchange, then one 64-byte block per message, and the clear bytes of the password hash.
//! Used by the RSA server and client; the command layer above sees plaintext messages.
//!
//! ```text
//! client: RsaStream::connect(tcp)   sends its key, reads the server's
//! server: RsaStream::accept(tcp)    reads the client's key, sends its own
//! then:   send(plaintext) / send_clear(bytes)   read_block() / read_clear(n)
//! ```
//!
//! Memory: at most one read (4 KiB) beyond the current block is held.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::rsa::{self, BLOCK_LEN, KeyPair, PemReader, RsaError};

/// How long a peer that has sent its key's END line may pause before the key counts as
/// complete without a line end.
const PEM_QUIET: Duration = Duration::from_millis(100);
/// Size of one read from the socket.
const READ_BUF: usize = 4096;

/// What can end an RSA exchange.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The connection failed or the peer closed it.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The peer broke the RSA layer: a bad key, a block that does not decrypt.
    #[error(transparent)]
    Rsa(#[from] RsaError),
    /// The peer's key did not arrive in time.
    #[error("no public key within {after:?} ({received} bytes received)")]
    KeyTimeout { after: Duration, received: usize },
    /// The connection ended before the peer's key was complete.
    #[error(
        "the connection ended before the peer's public key was complete ({received} bytes \
         received)"
    )]
    KeyCut { received: usize },
    /// The connection ended in the middle of a block.
    #[error("the connection ended {len} bytes into a {BLOCK_LEN}-byte RSA block")]
    BlockCut { len: usize },
}

/// A connection after its key exchange.
#[derive(Debug)]
pub struct RsaStream {
    tcp: TcpStream,
    keys: KeyPair,
    peer: rsa::PublicKey,
    /// Bytes read and not used yet.
    input: Vec<u8>,
}

/// A fresh key pair, made off the async workers (it takes milliseconds).
async fn fresh_keys() -> Result<KeyPair, StreamError> {
    tokio::task::spawn_blocking(KeyPair::generate)
        .await
        .map_err(|e| StreamError::Io(io::Error::other(e)))?
        .map_err(StreamError::from)
}

impl RsaStream {
    /// The client's side: sends a fresh public key, then reads the server's within
    /// `timeout`.
    pub async fn connect(mut tcp: TcpStream, timeout: Duration) -> Result<Self, StreamError> {
        let keys = fresh_keys().await?;
        tcp.write_all(keys.public_pem().as_bytes()).await?;
        let (peer, input) = read_peer_key(&mut tcp, timeout, PemReader::default()).await?;
        Ok(Self {
            tcp,
            keys,
            peer,
            input,
        })
    }

    /// The server's side: reads the client's public key within `timeout`, then sends a fresh
    /// one of its own.
    pub async fn accept(tcp: TcpStream, timeout: Duration) -> Result<Self, StreamError> {
        Self::accept_with(tcp, timeout, PemReader::default()).await
    }

    /// [`RsaStream::accept`] taking a key of any size: wrong on purpose, for a server that
    /// must fail the key-size scenarios.
    #[doc(hidden)]
    pub async fn accept_any_size(tcp: TcpStream, timeout: Duration) -> Result<Self, StreamError> {
        Self::accept_with(tcp, timeout, PemReader::any_size()).await
    }

    async fn accept_with(
        mut tcp: TcpStream,
        timeout: Duration,
        reader: PemReader,
    ) -> Result<Self, StreamError> {
        let (peer, input) = read_peer_key(&mut tcp, timeout, reader).await?;
        let keys = fresh_keys().await?;
        tcp.write_all(keys.public_pem().as_bytes()).await?;
        Ok(Self {
            tcp,
            keys,
            peer,
            input,
        })
    }

    /// Encrypts `plaintext` with the peer's key and writes the block. Over
    /// [`rsa::MAX_PLAINTEXT`] bytes is [`RsaError::PlaintextTooLong`], and nothing is sent.
    pub async fn send(&mut self, plaintext: &[u8]) -> Result<(), StreamError> {
        let block = rsa::encrypt(&self.peer, plaintext)?;
        self.tcp.write_all(&block).await?;
        Ok(())
    }

    /// Writes `bytes` unencrypted (the password hash, as real clients send it).
    pub async fn send_clear(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// The plaintext of the next block; `None` if the peer closed between blocks.
    pub async fn read_block(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        while self.input.len() < BLOCK_LEN {
            if !self.fill().await? {
                return match self.input.len() {
                    0 => Ok(None),
                    len => Err(StreamError::BlockCut { len }),
                };
            }
        }
        let rest = self.input.split_off(BLOCK_LEN);
        let block = std::mem::replace(&mut self.input, rest);
        Ok(Some(self.keys.decrypt(&block)?))
    }

    /// Up to `max` unencrypted bytes (at least one); `None` if the peer closed.
    pub async fn read_clear(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        if self.input.is_empty() && !self.fill().await? {
            return Ok(None);
        }
        let n = max.min(self.input.len());
        let rest = self.input.split_off(n);
        Ok(Some(std::mem::replace(&mut self.input, rest)))
    }

    /// Half of a block, or clear bytes, that have arrived and not been used.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Closes the sending side (FIN).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.tcp.shutdown().await
    }

    /// Reads once more; `false` at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; READ_BUF];
        let n = self.tcp.read(&mut buf).await?;
        self.input.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }
}

/// Reads the peer's PEM key from the start of `tcp` within `timeout`: the key and the bytes
/// that came after it. A peer that goes quiet for 100 ms after its END line has sent a key
/// without a line end. The client and the server here, and the harness, read keys this way.
pub async fn read_peer_key(
    tcp: &mut TcpStream,
    timeout: Duration,
    mut reader: PemReader,
) -> Result<(rsa::PublicKey, Vec<u8>), StreamError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; READ_BUF];
    let mut received = 0;
    loop {
        // Once the END line is in, a pause means the key came without a line end.
        let until = if reader.ended() {
            deadline.min(Instant::now() + PEM_QUIET)
        } else {
            deadline
        };
        let n = match tokio::time::timeout_at(until, tcp.read(&mut buf)).await {
            Ok(read) => read?,
            Err(_) if reader.ended() => 0,
            Err(_) => {
                return Err(StreamError::KeyTimeout {
                    after: timeout,
                    received,
                });
            }
        };
        if n == 0 {
            // The end of the stream, or a quiet peer after its END line.
            return reader.finish()?.ok_or(StreamError::KeyCut { received });
        }
        received += n;
        if let Some(done) = reader.push(&buf[..n])? {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), server.expect("accept").0)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn both_sides_exchange_keys_and_blocks() {
        let (c, s) = pair().await;
        let (client, server) =
            tokio::join!(RsaStream::connect(c, WAIT), RsaStream::accept(s, WAIT));
        let (mut client, mut server) = (client.expect("client"), server.expect("server"));
        client.send(b"CONNECT alice").await.expect("send");
        client.send_clear(&[7; 32]).await.expect("send hash");
        assert_eq!(
            server.read_block().await.expect("block").as_deref(),
            Some(&b"CONNECT alice"[..])
        );
        assert_eq!(
            server.read_clear(32).await.expect("hash"),
            Some(vec![7; 32])
        );
        server.send(b"CONNECT: OK").await.expect("reply");
        assert_eq!(
            client.read_block().await.expect("reply").as_deref(),
            Some(&b"CONNECT: OK"[..])
        );
        assert!(matches!(
            client.send(&[b'x'; 54]).await,
            Err(StreamError::Rsa(RsaError::PlaintextTooLong { len: 54 }))
        ));
        drop(client);
        assert!(server.read_block().await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn a_block_cut_short_or_out_of_range_is_an_error() {
        let (mut c, s) = pair().await;
        let client_keys = KeyPair::generate().expect("keys");
        c.write_all(client_keys.public_pem().as_bytes())
            .await
            .expect("key");
        let mut server = RsaStream::accept(s, WAIT).await.expect("server");
        // A number above any 512-bit modulus cannot be a ciphertext.
        c.write_all(&[0xff; BLOCK_LEN]).await.expect("junk");
        assert!(matches!(
            server.read_block().await,
            Err(StreamError::Rsa(RsaError::Undecryptable))
        ));
        c.write_all(&[0; 10]).await.expect("part");
        // FIN, not a reset: the server's key is still unread on this side.
        c.shutdown().await.expect("FIN");
        let err = server.read_block().await.expect_err("truncated");
        assert_eq!(
            err.to_string(),
            "the connection ended 10 bytes into a 64-byte RSA block"
        );
    }

    #[tokio::test]
    async fn a_key_without_a_line_end_is_taken_after_a_pause() {
        let (mut c, s) = pair().await;
        let keys = KeyPair::generate().expect("keys");
        c.write_all(keys.public_pem().trim_end().as_bytes())
            .await
            .expect("key");
        let server = RsaStream::accept(s, WAIT).await.expect("server");
        assert_eq!(server.peer, keys.public_key());
    }

    #[tokio::test]
    async fn a_message_before_the_key_is_refused_without_waiting() {
        let (mut c, s) = pair().await;
        c.write_all(b"CONNECT alice").await.expect("write");
        // Refused on its first bytes: waiting for more would end in a timeout instead.
        let err = RsaStream::accept(s, WAIT).await.expect_err("refused");
        assert!(
            matches!(err, StreamError::Rsa(RsaError::BadPem(_))),
            "{err}"
        );
    }
}
