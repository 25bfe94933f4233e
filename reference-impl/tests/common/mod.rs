//! Helpers shared by several integration test files, each of which includes this module with
//! `mod common;`. Every test file is its own crate and uses only some of these, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reference_impl::kv::server::{self as kv_server, RunningServer, ServerConfig};
use reference_impl::tls::{self, ClientTrust};
use tokio::net::TcpStream;

/// How long any expected event may take.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A TCP connection to `addr`, made within `PATIENCE`, with Nagle's algorithm off.
pub async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A key-value server over TLS with a fresh self-signed certificate, running in this
/// process, and a client configuration that trusts it.
pub async fn spawn_tls_kv(config: ServerConfig) -> (RunningServer, Arc<rustls::ClientConfig>) {
    let cert = tls::self_signed(&[]).unwrap();
    let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der).unwrap();
    let running = kv_server::spawn(config, server_tls).await.unwrap();
    let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der])).unwrap();
    (running, client_tls)
}

/// A raw chat connection: lines in, lines out.
pub mod chat {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::{PATIENCE, tcp_connect};

    pub const WELCOME: &str = r#"WELCOME {"msg":"Welcome to the server 1.5"}"#;
    pub const LOGIN_OK: &str = r#"LOGIN_RESP {"status":"OK"}"#;

    /// A raw chat connection: bytes in, lines out.
    pub struct Conn {
        stream: TcpStream,
        /// Received and not yet read as a line.
        pending: Vec<u8>,
        /// Who this is, in failure messages.
        pub name: String,
    }

    impl Conn {
        /// Connects, and reads nothing yet.
        pub async fn open(addr: SocketAddr) -> Conn {
            Conn {
                stream: tcp_connect(addr).await,
                pending: Vec::new(),
                name: String::new(),
            }
        }

        /// Connects and reads the `WELCOME`.
        pub async fn connect(addr: SocketAddr) -> Conn {
            Conn::connect_as(addr, "").await
        }

        /// Connects as `name` (for failure messages) and reads the `WELCOME`.
        pub async fn connect_as(addr: SocketAddr, name: &str) -> Conn {
            let mut conn = Conn::open(addr).await;
            conn.name = name.to_owned();
            conn.expect(WELCOME).await;
            conn
        }

        /// Connects and logs in as `name`.
        pub async fn login(addr: SocketAddr, name: &str) -> Conn {
            let mut conn = Conn::connect_as(addr, name).await;
            conn.send(&format!(r#"LOGIN {{"username":"{name}"}}"#))
                .await;
            conn.expect(LOGIN_OK).await;
            conn
        }

        pub async fn send_raw(&mut self, bytes: &[u8]) {
            tokio::time::timeout(PATIENCE, self.stream.write_all(bytes))
                .await
                .expect("write timed out")
                .unwrap();
        }

        /// Sends a line ending in `\n`.
        pub async fn send(&mut self, line: &str) {
            self.send_raw(format!("{line}\n").as_bytes()).await;
        }

        /// The next line, without its `\n`; `None` at EOF (or a reset). Panics after
        /// `within`.
        pub async fn next_line_within(&mut self, within: Duration) -> Option<String> {
            let deadline = Instant::now() + within;
            loop {
                if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=i).collect();
                    return Some(String::from_utf8_lossy(&line[..i]).into_owned());
                }
                let mut buf = [0u8; 65536];
                let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await;
                match read {
                    Err(_) => panic!(
                        "{}: no line within {within:?}; received so far {:?}",
                        self.name,
                        String::from_utf8_lossy(&self.pending)
                    ),
                    Ok(Ok(0) | Err(_)) => {
                        assert!(
                            self.pending.is_empty(),
                            "{}: connection closed after an unterminated {:?}",
                            self.name,
                            String::from_utf8_lossy(&self.pending)
                        );
                        return None;
                    }
                    Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
                }
            }
        }

        /// The next line, without its `\n`; `None` at EOF (or a reset). Panics after
        /// `PATIENCE`.
        pub async fn next_line(&mut self) -> Option<String> {
            self.next_line_within(PATIENCE).await
        }

        /// The next line; panics if the server closes instead.
        pub async fn line(&mut self) -> String {
            match self.next_line().await {
                Some(line) => line,
                None => panic!("{}: the server closed the connection", self.name),
            }
        }

        /// The next line is exactly `expected`.
        pub async fn expect(&mut self, expected: &str) {
            let line = self.line().await;
            assert_eq!(line, expected, "{}: unexpected line", self.name);
        }

        /// Nothing arrives for `quiet`, and the connection stays open.
        pub async fn expect_silence_for(&mut self, quiet: Duration) {
            assert!(
                self.pending.is_empty(),
                "{}: {:?} is waiting",
                self.name,
                String::from_utf8_lossy(&self.pending)
            );
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(quiet, self.stream.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(0)) => panic!("{}: closed instead of staying silent", self.name),
                Ok(Ok(n)) => panic!(
                    "{}: expected silence, received {:?}",
                    self.name,
                    String::from_utf8_lossy(&buf[..n])
                ),
                Ok(Err(e)) => panic!("{}: {e}", self.name),
            }
        }

        /// The server closes the connection without sending anything more.
        pub async fn expect_close(&mut self) {
            if let Some(line) = self.next_line().await {
                panic!("{}: expected the close, received {line:?}", self.name);
            }
        }
    }
}
