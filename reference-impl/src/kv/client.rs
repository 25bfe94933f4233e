//! A client of the key-value protocol: one TLS connection, one request at a time.
//!
//! ```text
//! let mut client = Client::connect(addr, tls, server_name, Dialect::Spec).await?;
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

/// A connection to a key-value server.
#[derive(Debug)]
pub struct Client {
    stream: TlsStream<TcpStream>,
    dialect: Dialect,
    decoder: ReplyDecoder,
    timeout: Duration,
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
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connecting to"))?
            .map_err(|source| ClientError::Connect { addr, source })?;
        // Requests are small and answered one at a time: do not let Nagle delay them.
        let _ = tcp.set_nodelay(true);
        let stream =
            tokio::time::timeout(timeout, TlsConnector::from(tls).connect(server_name, tcp))
                .await
                .map_err(|_| timed_out("TLS handshake with"))?
                .map_err(|source| ClientError::Handshake { addr, source })?;
        Ok(Self {
            stream,
            dialect,
            decoder: ReplyDecoder::new(dialect),
            timeout,
        })
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
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
        Ok(())
    }

    /// Sends `message` as its dialect writes it and waits for one reply, whatever it is.
    pub async fn request(&mut self, message: &ClientMessage) -> Result<Reply, ClientError> {
        let request = message.command();
        let timeout = self.timeout;
        let exchange = async {
            for write in message.writes(self.dialect) {
                // One write per message part: the course dialect frames by TLS record.
                self.stream.write_all(&write).await?;
                self.stream.flush().await?;
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

    /// Reads until one reply is complete. The outer `Result` is I/O, the inner the protocol.
    async fn read_reply(
        &mut self,
        request: Command,
    ) -> std::io::Result<Result<Reply, ClientError>> {
        loop {
            match self.decoder.next_reply() {
                Ok(Some(reply)) => return Ok(Ok(reply)),
                Ok(None) => {}
                Err(source) => return Ok(Err(ClientError::Malformed { request, source })),
            }
            // One TLS record per read: the course dialect frames replies by record.
            let read = match self.stream.fill_buf().await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => &[],
                Err(e) => return Err(e),
            };
            if read.is_empty() {
                return Ok(Err(ClientError::Closed { request }));
            }
            self.decoder.feed(read);
            let n = read.len();
            self.stream.consume(n);
        }
    }
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
