//! The packet client: one session against a server, as the course's client does it, with
//! every packet from the server checked on the way (checksum, length, flag), so that the same
//! client that scores 50 against a correct server tells what is wrong with a faulty one.
//!
//! ```text
//! send      flag 1, keyword (sbmt or a test word), sid, no data
//! receive   packets until flag 1; the first one's keyword is the key (4 lowercase
//!           letters); the data XORed with the key, the key's position running on across
//!           packets, is the text
//! send      the text in packets of at most 9,984 data bytes, keyword = key, same sid, the
//!           last one flag 1 (an empty text: one packet without data)
//! receive   the result: keyword = status word, sid = score, data = message
//! ```
//!
//! A packet whose keyword is not the key, where a packet of the stream is expected, is the
//! result (the server gave up early, or refused the first packet): the session ends there.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::codec::{
    ChecksumMode, DecodeError, FLAG_LAST, FLAG_MORE, MAX_DATA, Packet, PacketDecoder, Pairing, Xor,
};
use super::score::{SUBMIT, is_lowercase_word, points};

#[doc(hidden)]
pub use super::fault::{ClientFault, ClientFaults};

/// Default time the client waits for the server (connecting, and each read).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most text the client takes from a server before it gives up.
pub const MAX_STREAM: usize = 16 << 20;
/// Bytes one read takes from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// What the client sends and accepts.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The sid of every packet sent: an 8-digit student id (not checked here, so that a
    /// server's check can be tested).
    pub student_id: i32,
    /// The first packet's keyword: `sbmt` to submit, any 4 lowercase letters to test.
    pub keyword: [u8; 4],
    /// Pairing of the checksums sent.
    pub pairing: Pairing,
    /// Checksums accepted from the server.
    pub verify: ChecksumMode,
    /// Time allowed to connect, and for each read.
    pub timeout: Duration,
    #[doc(hidden)]
    pub faults: ClientFaults,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            student_id: 20_200_000,
            keyword: SUBMIT,
            pairing: Pairing::BigEndian,
            verify: ChecksumMode::Big,
            timeout: DEFAULT_TIMEOUT,
            faults: ClientFaults::NONE,
        }
    }
}

/// How a session ended: the result packet, and what came before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The key, or `None` if the first packet from the server was already the result.
    pub key: Option<[u8; 4]>,
    /// Packets of the encrypted stream received.
    pub packets: usize,
    /// The decrypted text (as far as it came).
    pub text: Vec<u8>,
    /// The server's last packet: keyword = status word, sid = score, data = message.
    pub result: Packet,
}

impl Outcome {
    /// The status word (`GOOD`, ...), as text.
    pub fn status(&self) -> String {
        String::from_utf8_lossy(&self.result.keyword).into_owned()
    }

    /// The score: the result's sid field.
    pub fn score(&self) -> i32 {
        self.result.sid
    }

    /// The message, as text.
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.result.data).into_owned()
    }

    /// Whether the server gave every point.
    pub fn is_full_score(&self) -> bool {
        self.score() == points::FULL
    }
}

/// Why a session did not reach a result packet.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send {what}")]
    Write {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading from the server failed while waiting for {waiting}")]
    Read {
        waiting: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("server packet {index} is malformed")]
    Decode {
        /// Which packet from the server, counting from 1.
        index: usize,
        #[source]
        error: DecodeError,
    },
    #[error("server packet {index}: flag {flag}, expected 0 or 1")]
    BadFlag { index: usize, flag: u16 },
    #[error("nothing from the server for {after:?} while waiting for {waiting}")]
    Timeout {
        waiting: &'static str,
        after: Duration,
    },
    #[error("the server closed the connection while the client waited for {waiting}")]
    Closed {
        waiting: &'static str,
        /// Set if it closed inside a packet.
        #[source]
        truncated: Option<DecodeError>,
    },
    #[error("the server's stream is longer than {MAX_STREAM} bytes")]
    StreamTooLong,
}

impl ClientError {
    /// Whether the session never started (no connection): a setup problem rather than a
    /// misbehaving server.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

/// The connection and what has been read from it.
struct Conn {
    tcp: TcpStream,
    decoder: PacketDecoder,
    buf: Vec<u8>,
    timeout: Duration,
    /// Packets received so far.
    received: usize,
}

impl Conn {
    async fn write(&mut self, bytes: &[u8], what: &'static str) -> Result<(), ClientError> {
        let write = tokio::time::timeout(self.timeout, self.tcp.write_all(bytes)).await;
        let result = match write {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the server read nothing for {:?}", self.timeout),
            )),
        };
        result.map_err(|source| ClientError::Write { what, source })
    }

    /// The next packet from the server.
    async fn next(&mut self, waiting: &'static str) -> Result<Packet, ClientError> {
        loop {
            match self.decoder.next_packet() {
                Ok(Some(packet)) => {
                    self.received += 1;
                    return Ok(packet);
                }
                Err(error) => {
                    return Err(ClientError::Decode {
                        index: self.received + 1,
                        error,
                    });
                }
                Ok(None) => {}
            }
            let read = tokio::time::timeout(self.timeout, self.tcp.read(&mut self.buf)).await;
            match read {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        waiting,
                        after: self.timeout,
                    });
                }
                Ok(Ok(0)) => {
                    return Err(ClientError::Closed {
                        waiting,
                        truncated: self.decoder.finish().err(),
                    });
                }
                Ok(Ok(n)) => self.decoder.feed(&self.buf[..n]),
                Ok(Err(source)) => return Err(ClientError::Read { waiting, source }),
            }
        }
    }
}

/// Runs one session against the server at `addr`.
pub async fn run(addr: SocketAddr, config: &ClientConfig) -> Result<Outcome, ClientError> {
    let connect = tokio::time::timeout(config.timeout, TcpStream::connect(addr)).await;
    let tcp = match connect {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
        Err(_) => {
            return Err(ClientError::Connect {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", config.timeout),
                ),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    run_on(tcp, config).await
}

/// Runs one session on a connection already open.
pub async fn run_on(tcp: TcpStream, config: &ClientConfig) -> Result<Outcome, ClientError> {
    let faults = config.faults;
    let pairing = if faults.has(ClientFault::LittleEndianOnly) {
        Pairing::LittleEndian
    } else {
        config.pairing
    };
    let mut conn = Conn {
        tcp,
        decoder: PacketDecoder::new(config.verify),
        buf: vec![0; READ_CHUNK],
        timeout: config.timeout,
        received: 0,
    };
    let hello = Packet::new(FLAG_LAST, config.keyword, config.student_id, Vec::new());
    conn.write(&hello.to_bytes(pairing), "the first packet")
        .await?;

    let mut packet = conn.next("the first packet of the stream").await?;
    if !is_lowercase_word(&packet.keyword) {
        return Ok(Outcome {
            key: None,
            packets: 0,
            text: Vec::new(),
            result: packet,
        });
    }
    let key = packet.keyword;
    debug!(key = %key.escape_ascii(), "the stream starts");
    let mut cipher = Xor::new(&key);
    let mut text = Vec::new();
    let mut packets = 0;
    loop {
        packets += 1;
        if packet.flag != FLAG_MORE && packet.flag != FLAG_LAST {
            return Err(ClientError::BadFlag {
                index: conn.received,
                flag: packet.flag,
            });
        }
        if text.len() + packet.data.len() > MAX_STREAM {
            return Err(ClientError::StreamTooLong);
        }
        if faults.has(ClientFault::DecryptsWithoutCarryingKeyPosition) {
            cipher.reset();
        }
        let last = packet.is_last();
        let mut data = packet.data;
        cipher.apply(&mut data);
        text.extend_from_slice(&data);
        if last {
            break;
        }
        packet = conn
            .next("the rest of the stream (no packet with flag 1 yet)")
            .await?;
        if packet.keyword != key {
            // The server gave up: this is its result.
            return Ok(Outcome {
                key: Some(key),
                packets,
                text,
                result: packet,
            });
        }
    }
    debug!(packets, bytes = text.len(), "the stream is in");

    let reply = build_reply(config, pairing, key, &text);
    if let Err(e) = conn.write(&reply, "the reply").await {
        // The server may have answered already (it reads as the reply comes).
        debug!("{e}");
    }
    let result = conn.next("the result packet").await?;
    Ok(Outcome {
        key: Some(key),
        packets,
        text,
        result,
    })
}

/// The reply's bytes: the text in packets of at most 9,984 data bytes, the last flag 1.
fn build_reply(config: &ClientConfig, pairing: Pairing, key: [u8; 4], text: &[u8]) -> Vec<u8> {
    let faults = config.faults;
    let mut data = text;
    if faults.has(ClientFault::DropsLastByte) {
        data = &data[..data.len().saturating_sub(1)];
    }
    let chunk = if faults.has(ClientFault::ChunkTooLarge) {
        MAX_DATA + 1
    } else {
        MAX_DATA
    };
    let keyword = if faults.has(ClientFault::WrongKeyword) {
        config.keyword
    } else {
        key
    };
    let sid = if faults.has(ClientFault::WrongSidInReply) {
        config.student_id.wrapping_add(1)
    } else {
        config.student_id
    };
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(chunk).collect()
    };
    let mut out = Vec::with_capacity(data.len() + 16 * chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len() && !faults.has(ClientFault::NoFinalFlag);
        let flag = if last { FLAG_LAST } else { FLAG_MORE };
        Packet::new(flag, keyword, sid, chunk.to_vec()).encode(pairing, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::packet::codec::{HEADER_LEN, MAX_PACKET};

    fn packets(bytes: &[u8]) -> Vec<Packet> {
        let mut decoder = PacketDecoder::with_max_packet(None, MAX_PACKET + 1);
        decoder.feed(bytes);
        std::iter::from_fn(|| decoder.next_packet().unwrap()).collect()
    }

    #[test]
    fn reply_chunks() {
        let config = ClientConfig::default();
        let text = vec![b'x'; 2 * MAX_DATA + 1];
        let reply = packets(&build_reply(&config, Pairing::BigEndian, *b"abcd", &text));
        assert_eq!(
            reply
                .iter()
                .map(|p| (p.flag, p.data.len()))
                .collect::<Vec<_>>(),
            vec![(0, MAX_DATA), (0, MAX_DATA), (1, 1)]
        );
        assert!(
            reply
                .iter()
                .all(|p| p.keyword == *b"abcd" && p.sid == 20_200_000)
        );
        assert!(reply.iter().all(|p| p.verify(ChecksumMode::Big).is_ok()));
        let empty = packets(&build_reply(&config, Pairing::BigEndian, *b"abcd", b""));
        assert_eq!(
            empty,
            vec![Packet::new(1, *b"abcd", 20_200_000, vec![]).with_checksum(Pairing::BigEndian)]
        );
    }

    #[test]
    fn faulty_replies() {
        let faulty = |fault: ClientFault| ClientConfig {
            faults: fault.into(),
            ..ClientConfig::default()
        };
        let text = vec![b'x'; MAX_DATA + 10];
        let reply = |fault| {
            packets(&build_reply(
                &faulty(fault),
                Pairing::BigEndian,
                *b"abcd",
                &text,
            ))
        };
        assert!(reply(ClientFault::NoFinalFlag).iter().all(|p| p.flag == 0));
        assert_eq!(reply(ClientFault::ChunkTooLarge)[0].len(), MAX_PACKET + 1);
        assert!(
            reply(ClientFault::WrongKeyword)
                .iter()
                .all(|p| p.keyword == *b"sbmt")
        );
        assert!(
            reply(ClientFault::WrongSidInReply)
                .iter()
                .all(|p| p.sid == 20_200_001)
        );
        let short: usize = reply(ClientFault::DropsLastByte)
            .iter()
            .map(|p| p.len() - HEADER_LEN)
            .sum();
        assert_eq!(short, text.len() - 1);
    }
}
