//! A client of the key-value protocol: one TLS connection ([`Client::connect`]) or one
//! connection of the RSA variant ([`Client::connect_rsa`]), one request at a time.
//!
//! ```text
//! let mut client = Client::connect(addr, tls, server_name, Dialect::Spec).await?;
//! // or: Client::connect_rsa(addr, Dialect::Course, RsaOptions::default()).await?;
//! client.login("alice", &hash_password(b"secret", &TEST_SALT)).await?;
//! client.put("colour", "blue").await?;
//! assert_eq!(client.get("colour").await?, Some("blue".into()));   // CRC verified
//! client.delete("colour").await?;
//! client.disconnect().await?;
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::auth::{HASH_LEN, crc32};
use super::codec::{
    ClientMessage, Command, DecodeError, Dialect, Reply, ReplyDecoder, is_valid_id, is_valid_key,
    is_valid_value,
};
use super::rsa::{MAX_PLAINTEXT, RsaError, is_message};
use super::rsa_stream::{RsaStream, StreamError};
use super::server::RsaOptions;

/// Default time to wait for a connection, a handshake or a reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the RSA key exchange with {addr} failed")]
    KeyExchange {
        addr: SocketAddr,
        #[source]
        source: StreamError,
    },
    #[error(
        "{request} cannot be sent: the message is {len} bytes, and one 512-bit RSA block holds \
         at most {MAX_PLAINTEXT}"
    )]
    TooLongForRsa { request: Command, len: usize },
    #[error("the server's reply to {request} is not a valid RSA block")]
    BadBlock {
        request: Command,
        #[source]
        source: StreamError,
    },
    #[error("{what} timed out after {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("the connection failed while waiting for the reply to {request}")]
    Io {
        request: Command,
        #[source]
        source: std::io::Error,
    },
    #[error("the server closed the connection instead of answering {request}")]
    Closed { request: Command },
    #[error("the server's reply to {request} is malformed")]
    Malformed {
        request: Command,
        #[source]
        source: DecodeError,
    },
    #[error("the server answered `{reply}` to {request}")]
    UnexpectedReply { request: Command, reply: Reply },
    #[error(
        "the server refused to log in {id:?} (CONNECT: ERROR): wrong password, unknown id, or \
         the id is logged in on another connection"
    )]
    LoginRefused { id: String },
    #[error("the server answered `{reply}`")]
    Refused { reply: Reply },
    #[error(
        "GET {key}: the server sent CRC {actual}, but the value it sent, {value:?}, has CRC \
         {expected}"
    )]
    CrcMismatch {
        key: String,
        value: String,
        /// CRC-32 of the value received.
        expected: u32,
        /// The CRC the server sent.
        actual: u32,
    },
    #[error("{what} {text:?} cannot be sent: {rule}")]
    InvalidArgument {
        what: &'static str,
        text: String,
        rule: &'static str,
    },
}

/// A connection's stream.
#[derive(Debug)]
enum Stream {
    Tls(Box<TlsStream<TcpStream>>),
    Rsa {
        stream: Box<RsaStream>,
        options: RsaOptions,
    },
}

/// A connection to a key-value server.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    dialect: Dialect,
    decoder: ReplyDecoder,
    timeout: Duration,
    /// The request being sent, kept to be reused by the next one.
    out: Vec<u8>,
}

impl Client {
    /// Connects over TCP and completes the TLS handshake, verifying the server as `tls`
    /// says (see [`crate::tls::client_config`]) under the name `server_name`.
    pub async fn connect(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
        dialect: Dialect,
    ) -> Result<Self, ClientError> {
        let timeout = DEFAULT_TIMEOUT;
        let timed_out = |what: &str| ClientError::Timeout {
            what: format!("{what} {addr}"),
            timeout,
        };
        let tcp = open(addr, timeout).await?;
        let stream =
            tokio::time::timeout(timeout, TlsConnector::from(tls).connect(server_name, tcp))
                .await
                .map_err(|_| timed_out("TLS handshake with"))?
                .map_err(|source| ClientError::Handshake { addr, source })?;
        Ok(Self::new(Stream::Tls(Box::new(stream)), dialect, timeout))
    }

    /// Connects over TCP and exchanges fresh 512-bit RSA keys (`specs/kv-rsa.md`): every
    /// message is then one RSA block, the password hash sent as `options` say.
    pub async fn connect_rsa(
        addr: SocketAddr,
        dialect: Dialect,
        options: RsaOptions,
    ) -> Result<Self, ClientError> {
        let timeout = DEFAULT_TIMEOUT;
        let tcp = open(addr, timeout).await?;
        let stream = RsaStream::connect(tcp, timeout)
            .await
            .map_err(|source| ClientError::KeyExchange { addr, source })?;
        Ok(Self::new(
            Stream::Rsa {
                stream: Box::new(stream),
                options,
            },
            dialect,
            timeout,
        ))
    }

    fn new(stream: Stream, dialect: Dialect, timeout: Duration) -> Self {
        Self {
            stream,
            dialect,
            decoder: ReplyDecoder::new(dialect),
            timeout,
            out: Vec::new(),
        }
    }

    /// Sets how long to wait for each reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sets the longest reply accepted (default [`super::codec::MAX_REPLY`], enough for a
    /// server with the default message limit). Call it before the first request: bytes
    /// received and not yet decoded are discarded.
    pub fn set_max_reply(&mut self, max_reply: usize) {
        self.decoder = ReplyDecoder::with_max_reply(self.dialect, max_reply);
    }

    /// The dialect this client speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// `CONNECT <id>` with the password hash (see [`super::auth::hash_password`]).
    /// `CONNECT: ERROR` is [`ClientError::LoginRefused`]; the connection stays open.
    pub async fn login(&mut self, id: &str, hash: &[u8; HASH_LEN]) -> Result<(), ClientError> {
        check("client id", id, is_valid_id(id))?;
        let reply = self
            .request(&ClientMessage::Connect {
                id: id.to_owned(),
                hash: *hash,
            })
            .await?;
        match reply {
            Reply::ConnectOk => Ok(()),
            Reply::ConnectError => Err(ClientError::LoginRefused { id: id.to_owned() }),
            reply => Err(unexpected(Command::Connect, reply)),
        }
    }

    /// `PUT <key>` and `<value>`. `PUT: ERROR` is [`ClientError::Refused`].
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        check("key", key, is_valid_key(key))?;
        check("value", value, is_valid_value(value))?;
        let reply = self
            .request(&ClientMessage::Put {
                key: key.to_owned(),
                value: value.to_owned(),
            })
            .await?;
        match reply {
            Reply::PutOk => Ok(()),
            Reply::PutError => Err(ClientError::Refused { reply }),
            reply => Err(unexpected(Command::Put, reply)),
        }
    }

    /// `GET <key>`: the value, or `None` for `GET: ERROR` (no such key). The CRC is
    /// verified; a wrong one is [`ClientError::CrcMismatch`].
    pub async fn get(&mut self, key: &str) -> Result<Option<String>, ClientError> {
        check("key", key, is_valid_key(key))?;
        let reply = self
            .request(&ClientMessage::Get {
                key: key.to_owned(),
            })
            .await?;
        match reply {
            Reply::GetOk { value, crc } => {
                let expected = crc32(value.as_bytes());
                if expected != crc {
                    return Err(ClientError::CrcMismatch {
                        key: key.to_owned(),
                        value,
                        expected,
                        actual: crc,
                    });
                }
                Ok(Some(value))
            }
            Reply::GetError => Ok(None),
            reply => Err(unexpected(Command::Get, reply)),
        }
    }

    /// `DELETE <key>`. `DELETE: ERROR` is [`ClientError::Refused`].
    pub async fn delete(&mut self, key: &str) -> Result<(), ClientError> {
        check("key", key, is_valid_key(key))?;
        let reply = self
            .request(&ClientMessage::Delete {
                key: key.to_owned(),
            })
            .await?;
        match reply {
            Reply::DeleteOk => Ok(()),
            Reply::DeleteError => Err(ClientError::Refused { reply }),
            reply => Err(unexpected(Command::Delete, reply)),
        }
    }

    /// `DISCONNECT`: the server removes the session and its data, then the connection is
    /// closed.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        match self.request(&ClientMessage::Disconnect).await? {
            Reply::DisconnectOk => {}
            reply => return Err(unexpected(Command::Disconnect, reply)),
        }
        // The server closes too; a failing close_notify changes nothing for the caller.
        let shutdown = async {
            match &mut self.stream {
                Stream::Tls(stream) => stream.shutdown().await,
                Stream::Rsa { stream, .. } => stream.shutdown().await,
            }
        };
        let _ = tokio::time::timeout(self.timeout, shutdown).await;
        Ok(())
    }

    /// Sends `message` as its dialect writes it and waits for one reply, whatever it is.
    /// Over RSA, a message over one block's 53 bytes is [`ClientError::TooLongForRsa`],
    /// and nothing is sent.
    pub async fn request(&mut self, message: &ClientMessage) -> Result<Reply, ClientError> {
        let request = message.command();
        let timeout = self.timeout;
        // Over TLS the message is encoded into `self.out` below, with no allocation of its own.
        let rsa_writes = match self.stream {
            Stream::Tls(_) => Vec::new(),
            Stream::Rsa { .. } => self.writes(message),
        };
        if let Some((_, too_long)) = rsa_writes
            .iter()
            .find(|(clear, w)| !clear && w.len() > MAX_PLAINTEXT)
        {
            return Err(ClientError::TooLongForRsa {
                request,
                len: too_long.len(),
            });
        }
        let exchange = async {
            match &mut self.stream {
                Stream::Tls(stream) => {
                    self.out.clear();
                    let second = message.encode_writes(self.dialect, &mut self.out);
                    let at = second.unwrap_or(self.out.len()).min(self.out.len());
                    let (first, second) = self.out.split_at(at);
                    // One write per message part: the course dialect frames by TLS record.
                    for write in [first, second] {
                        if !write.is_empty() {
                            stream.write_all(write).await?;
                            stream.flush().await?;
                        }
                    }
                }
                Stream::Rsa { stream, .. } => {
                    for (clear, write) in &rsa_writes {
                        if *clear {
                            stream.send_clear(write).await?;
                            continue;
                        }
                        match stream.send(write).await {
                            Ok(()) => {}
                            Err(StreamError::Io(e)) => return Err(e),
                            Err(e) => return Err(std::io::Error::other(e)),
                        }
                    }
                }
            }
            self.read_reply(request).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(source)) => Err(ClientError::Io { request, source }),
            Err(_) => Err(ClientError::Timeout {
                what: format!("waiting for the reply to {request}"),
                timeout,
            }),
        }
    }

    /// The writes of `message`, each marked whether it goes unencrypted. Over RSA a
    /// `CONNECT` is its line, then the hash as its own write (in the clear unless the
    /// options say otherwise); every other write is one block.
    fn writes(&self, message: &ClientMessage) -> Vec<(bool, Vec<u8>)> {
        match (&self.stream, message) {
            (Stream::Rsa { options, .. }, ClientMessage::Connect { id, hash }) => {
                let lf = if self.dialect == Dialect::Spec {
                    "\n"
                } else {
                    ""
                };
                vec![
                    (false, format!("CONNECT {id}{lf}").into_bytes()),
                    (options.hash_in_clear, hash.to_vec()),
                ]
            }
            _ => message
                .writes(self.dialect)
                .into_iter()
                .map(|w| (false, w))
                .collect(),
        }
    }

    /// Reads until one reply is complete. The outer `Result` is I/O, the inner the protocol.
    async fn read_reply(
        &mut self,
        request: Command,
    ) -> std::io::Result<Result<Reply, ClientError>> {
        let line_end = self.dialect == Dialect::Spec;
        loop {
            match self.decoder.next_reply() {
                Ok(Some(reply)) => return Ok(Ok(reply)),
                Ok(None) => {}
                Err(source) => return Ok(Err(ClientError::Malformed { request, source })),
            }
            match &mut self.stream {
                Stream::Tls(stream) => {
                    // One TLS record per read: the course dialect frames replies by record.
                    let read = match stream.fill_buf().await {
                        Ok(bytes) => bytes,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => &[],
                        Err(e) => return Err(e),
                    };
                    if read.is_empty() {
                        return Ok(Err(ClientError::Closed { request }));
                    }
                    self.decoder.feed(read);
                    let n = read.len();
                    stream.consume(n);
                }
                // One block per reply.
                Stream::Rsa { stream, .. } => match stream.read_block().await {
                    // One block, one reply: junk (a block made with another key) is
                    // refused at once rather than waited on for a line feed.
                    Ok(Some(plaintext)) if !is_message(&plaintext, line_end) => {
                        return Ok(Err(ClientError::BadBlock {
                            request,
                            source: StreamError::Rsa(RsaError::NotAMessage { line_end }),
                        }));
                    }
                    Ok(Some(plaintext)) => self.decoder.feed(&plaintext),
                    Ok(None) => return Ok(Err(ClientError::Closed { request })),
                    Err(StreamError::Io(e)) => return Err(e),
                    Err(source) => {
                        return Ok(Err(ClientError::BadBlock { request, source }));
                    }
                },
            }
        }
    }
}

/// A TCP connection to `addr` within `timeout`, Nagle off.
async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout {
            what: format!("connecting to {addr}"),
            timeout,
        })?
        .map_err(|source| ClientError::Connect { addr, source })?;
    // Requests are small and answered one at a time: do not let Nagle delay them.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

fn check(what: &'static str, text: &str, valid: bool) -> Result<(), ClientError> {
    if valid {
        return Ok(());
    }
    Err(ClientError::InvalidArgument {
        what,
        text: text.to_owned(),
        rule: if what == "value" {
            "values are ASCII without line feeds"
        } else {
            "it must be non-empty ASCII without line feeds"
        },
    })
}

fn unexpected(request: Command, reply: Reply) -> ClientError {
    ClientError::UnexpectedReply { request, reply }
}
