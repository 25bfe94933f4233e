//! The `rsa` transport of the key-value protocol's RSA variant (`specs/kv-rsa.md`), on the
//! client side: the key exchange after the TCP connect, and the per-message crypto the
//! runner applies to a connection's bytes. The RSA itself is `reference_impl::kv::rsa`.
//!
//! ```text
//! C -> S  -----BEGIN RSA PUBLIC KEY----- ... -----END RSA PUBLIC KEY-----\n   (one write)
//! S -> C  its own PEM block (any reads; without a line end it is complete once quiet)
//! then    every message one 64-byte block, encrypted with the PEER's key, one write each
//! ```
//!
//! A scenario may offer no key or bytes of its own instead ([`KeyOffer`]): then there is no
//! exchange and no encryption, the connection carries what the steps write as it is.
//!
//! Secrets stay here: the connection's private key is never printed (`KeyPair`'s `Debug`
//! leaves it out, and so does [`Cipher`]'s).

use std::io;
use std::time::Duration;

use reference_impl::kv::rsa::{
    self as kv_rsa, BLOCK_LEN, KEY_BITS, KeyPair, MAX_PEM, MAX_PLAINTEXT, PemReader, RsaError,
};
use reference_impl::kv::rsa_stream::{StreamError, read_peer_key};
use rsa::PublicKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ConnectError;

/// What the client sends as its public key when an `rsa` connection opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyOffer {
    /// A fresh 512-bit key pair: its PEM block goes out, the server's key is read, and
    /// every message is encrypted from then on.
    #[default]
    Fresh,
    /// No key at all (`connect: { key: none }`): plain TCP, messages go out as they are.
    None,
    /// These bytes, sent as they are in one write as if they were the client's key
    /// (`connect: { key: "..." }`); no exchange is awaited and messages go out as they are.
    Raw(Vec<u8>),
}

/// The crypto of one `rsa` connection after its key exchange.
pub struct Cipher {
    /// The connection's own key pair: the server encrypts for its public key.
    own: KeyPair,
    /// The server's public key: what the client encrypts with.
    peer: PublicKey,
    /// What the server sent after its key in the same reads: the start of its first
    /// blocks, for the block reader.
    pub leftover: Vec<u8>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Cipher")
            .field("leftover", &self.leftover.len())
            .finish_non_exhaustive()
    }
}

/// Why a message cannot be sent as one block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "this message is {len} bytes; one {KEY_BITS}-bit RSA block holds at most {MAX_PLAINTEXT} (specs/kv-rsa.md)"
    )]
    TooLong { len: usize },
    #[error("cannot encrypt the message: {0}")]
    Encrypt(String),
}

impl Cipher {
    /// A cipher between a connection's own pair and the server's key (tests build the
    /// server's side this way too).
    pub fn new(own: KeyPair, peer: PublicKey) -> Self {
        Self {
            own,
            peer,
            leftover: Vec::new(),
        }
    }

    /// Modulus size of the keys, for reports.
    pub fn bits(&self) -> usize {
        KEY_BITS
    }

    /// One message as the block that carries it: encrypted with the server's key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        // `encrypt` refuses more than one block holds.
        kv_rsa::encrypt(&self.peer, plaintext).map_err(|e| match e {
            RsaError::PlaintextTooLong { len } => SealError::TooLong { len },
            other => SealError::Encrypt(other.to_string()),
        })
    }

    /// The plaintext of one block the server encrypted with this connection's key.
    pub fn open(&self, block: &[u8]) -> Result<Vec<u8>, RsaError> {
        self.own.decrypt(block)
    }
}

/// Why the server's stream of blocks cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error(
        "block {number} from the target does not decrypt with this connection's RSA key (is it made with the client's public key?)"
    )]
    Undecryptable { number: u64 },
    #[error("the stream ended {len} bytes into a {BLOCK_LEN}-byte RSA block")]
    Truncated { len: usize },
}

/// Cuts what the server sends into 64-byte blocks, whatever the reads, and decrypts each.
#[derive(Debug, Default)]
pub struct BlockReader {
    buf: Vec<u8>,
    /// Blocks read so far.
    blocks: u64,
}

impl BlockReader {
    /// Takes the next bytes and puts the plaintext of every block they complete in `out`,
    /// in order. At the first block that does not decrypt, the plaintexts before it are in
    /// `out` and the reader is done for.
    pub fn push(
        &mut self,
        cipher: &Cipher,
        bytes: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), BlockError> {
        self.buf.extend_from_slice(bytes);
        let whole = self.buf.len() - self.buf.len() % BLOCK_LEN;
        let mut result = Ok(());
        for block in self.buf[..whole].chunks_exact(BLOCK_LEN) {
            self.blocks += 1;
            match cipher.open(block) {
                Ok(plain) => out.push(plain),
                Err(_) => {
                    result = Err(BlockError::Undecryptable {
                        number: self.blocks,
                    });
                    break;
                }
            }
        }
        self.buf.drain(..whole);
        result
    }

    /// Bytes of a block still incomplete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The stream ended: an error when it ended inside a block.
    pub fn finish(&self) -> Result<(), BlockError> {
        match self.buf.len() {
            0 => Ok(()),
            len => Err(BlockError::Truncated { len }),
        }
    }
}

/// The bits of the key a PEM block holds, whatever its size; `None` when the bytes are not
/// a PKCS#1 public key (for transcripts of the keys scenarios offer).
pub fn key_bits(pem: &[u8]) -> Option<usize> {
    match kv_rsa::parse_public_key(pem) {
        Ok(_) => Some(KEY_BITS),
        Err(RsaError::KeySize { bits }) => Some(bits),
        Err(_) => None,
    }
}

/// What is wrong with the server's key, in words.
fn key_problem(e: &RsaError) -> String {
    match e {
        RsaError::BadPem(why) => {
            format!("the server's public key is not a PKCS#1 PEM block: {why}")
        }
        RsaError::KeySize { bits } => format!(
            "the server's public key has {bits} bits; the protocol uses {KEY_BITS}-bit keys"
        ),
        RsaError::PemTooLong => format!(
            "the server sent more than {MAX_PEM} bytes without the END line of a PEM public key"
        ),
        other => format!("the server's public key is not usable: {other}"),
    }
}

/// The default key exchange on a fresh TCP connection: a new key pair's PEM block in one
/// write, then the server's PEM block. Writing the key and reading the server's are bounded
/// by `timeout` together.
pub(super) async fn exchange(
    tcp: &mut TcpStream,
    addr: &str,
    timeout: Duration,
) -> Result<Cipher, ConnectError> {
    let generation = tokio::task::spawn_blocking(KeyPair::generate).await;
    let own = match generation {
        Ok(Ok(own)) => own,
        Ok(Err(e)) => return Err(ConnectError::KeyGeneration(e.to_string())),
        Err(e) => return Err(ConnectError::KeyGeneration(e.to_string())),
    };
    // The server's time starts once the harness's own work is done.
    let deadline = Instant::now() + timeout;
    let timed_out = |received| ConnectError::KeyTimeout {
        addr: addr.to_owned(),
        after: timeout,
        received,
    };
    let io_error = |source| ConnectError::KeyIo {
        addr: addr.to_owned(),
        source,
    };
    let bad_key = |e: RsaError| ConnectError::BadKey {
        addr: addr.to_owned(),
        problem: key_problem(&e),
    };
    match tokio::time::timeout_at(deadline, tcp.write_all(own.public_pem().as_bytes())).await {
        Err(_) => return Err(timed_out(0)),
        Ok(Err(source)) => return Err(io_error(source)),
        Ok(Ok(())) => {}
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let (peer, leftover) = match read_peer_key(tcp, left, PemReader::default()).await {
        Ok(key) => key,
        Err(StreamError::Io(source)) => return Err(io_error(source)),
        Err(StreamError::Rsa(e)) => return Err(bad_key(e)),
        Err(StreamError::KeyTimeout { received, .. }) => return Err(timed_out(received)),
        Err(StreamError::KeyCut { received: 0 }) => {
            return Err(ConnectError::KeyClosed {
                addr: addr.to_owned(),
            });
        }
        Err(StreamError::KeyCut { received } | StreamError::BlockCut { len: received }) => {
            return Err(ConnectError::KeyCut {
                addr: addr.to_owned(),
                received,
            });
        }
    };
    let mut cipher = Cipher::new(own, peer);
    cipher.leftover = leftover;
    Ok(cipher)
}

/// Sends a scenario's own bytes as the client's key, in one write bounded by `timeout`.
pub(super) async fn offer_raw(
    tcp: &mut TcpStream,
    addr: &str,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), ConnectError> {
    let write = async {
        tcp.write_all(bytes).await?;
        tcp.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Err(_) => Err(ConnectError::KeyTimeout {
            addr: addr.to_owned(),
            after: timeout,
            received: 0,
        }),
        Ok(Err(source)) => Err(ConnectError::KeyIo {
            addr: addr.to_owned(),
            source,
        }),
        Ok(Ok(())) => Ok(()),
    }
}

/// An I/O error of the exchange, for [`ConnectError::KeyIo`].
pub(super) fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            "the server reset the connection during the key exchange".to_owned()
        }
        io::ErrorKind::BrokenPipe => {
            "the server closed the connection before it took the client's public key".to_owned()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pair() -> KeyPair {
        KeyPair::generate().unwrap()
    }

    /// The client's cipher and the server's pair it talks to.
    fn linked() -> (Cipher, KeyPair) {
        let server = pair();
        (Cipher::new(pair(), server.public_key()), server)
    }

    /// A block from the server: made with the client's public key.
    fn from_server(client: &Cipher, text: &[u8]) -> Vec<u8> {
        kv_rsa::encrypt(&client.own.public_key(), text).unwrap()
    }

    #[test]
    fn whole_blocks_decrypt_in_order() {
        let (client, _) = linked();
        let mut stream = from_server(&client, b"CONNECT: OK\n");
        stream.extend(from_server(&client, b"PUT: OK\n"));
        let mut reader = BlockReader::default();
        let mut out = Vec::new();
        reader.push(&client, &stream, &mut out).unwrap();
        assert_eq!(out, [b"CONNECT: OK\n".to_vec(), b"PUT: OK\n".to_vec()]);
        assert_eq!(reader.pending(), 0);
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn blocks_split_across_reads_wait_for_their_last_byte() {
        let (client, _) = linked();
        let mut stream = from_server(&client, b"GET blue\n");
        stream.extend(from_server(&client, b"2181944553\n"));
        for cuts in [vec![1, 63, 64, 65, 127], vec![10, 100], vec![63, 64]] {
            let mut reader = BlockReader::default();
            let mut out = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                reader.push(&client, &stream[start..cut], &mut out).unwrap();
                assert_eq!(out.len(), cut / BLOCK_LEN, "after {cut} bytes");
                start = cut;
            }
            assert_eq!(out, [b"GET blue\n".to_vec(), b"2181944553\n".to_vec()]);
        }
    }

    #[test]
    fn a_stream_that_ends_inside_a_block_is_an_error() {
        let (client, _) = linked();
        let mut stream = from_server(&client, b"CONNECT: OK\n");
        stream.extend_from_slice(&[7; 23]);
        let mut reader = BlockReader::default();
        let mut out = Vec::new();
        reader.push(&client, &stream, &mut out).unwrap();
        assert_eq!(out, [b"CONNECT: OK\n".to_vec()]);
        assert_eq!(reader.pending(), 23);
        let e = reader.finish().unwrap_err();
        assert_eq!(e, BlockError::Truncated { len: 23 });
        assert_eq!(
            e.to_string(),
            "the stream ended 23 bytes into a 64-byte RSA block"
        );
    }

    #[test]
    fn a_block_that_does_not_decrypt_stops_the_reader_after_the_good_ones() {
        let (client, _) = linked();
        let mut stream = from_server(&client, b"CONNECT: OK\n");
        // Above any 512-bit modulus: no RSA ciphertext at all.
        stream.extend_from_slice(&[0xff; BLOCK_LEN]);
        stream.extend(from_server(&client, b"never read\n"));
        let mut reader = BlockReader::default();
        let mut out = Vec::new();
        let e = reader.push(&client, &stream, &mut out).unwrap_err();
        assert_eq!(out, [b"CONNECT: OK\n".to_vec()]);
        assert_eq!(e, BlockError::Undecryptable { number: 2 });
        assert_eq!(
            e.to_string(),
            "block 2 from the target does not decrypt with this connection's RSA key (is it made with the client's public key?)"
        );
    }

    #[test]
    fn seal_makes_one_block_for_the_server_and_refuses_more_than_53_bytes() {
        let (client, server) = linked();
        let block = client.seal(b"CONNECT alice\n").unwrap();
        assert_eq!(block.len(), BLOCK_LEN);
        assert_eq!(server.decrypt(&block).unwrap(), b"CONNECT alice\n");
        assert_eq!(client.seal(&[b'x'; 53]).map(|b| b.len()), Ok(BLOCK_LEN));
        let e = client.seal(&[b'x'; 60]).unwrap_err();
        assert_eq!(e, SealError::TooLong { len: 60 });
        assert_eq!(
            e.to_string(),
            "this message is 60 bytes; one 512-bit RSA block holds at most 53 (specs/kv-rsa.md)"
        );
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let (client, _) = linked();
        let shown = format!("{client:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.starts_with("Cipher"), "{shown}");
    }

    #[test]
    fn key_bits_reads_keys_of_any_size_and_nothing_else() {
        assert_eq!(key_bits(pair().public_pem().as_bytes()), Some(512));
        assert_eq!(key_bits(b"not a key\n"), None);
    }
}
