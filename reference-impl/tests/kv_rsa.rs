//! The RSA variant of the key-value server and client over real connections on 127.0.0.1:
//! plaintext in blocks, exact plaintext out.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reference_impl::kv::auth::{HASH_LEN, crc32};
use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::rsa::{self, BLOCK_LEN, KeyPair, PemReader};
use reference_impl::kv::rsa_stream::RsaStream;
use reference_impl::kv::server::{self, Fault, RsaOptions, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any expected event may take.
const PATIENCE: Duration = Duration::from_secs(5);

/// A first-use password hash: any 32 bytes will do.
const ALICE: [u8; HASH_LEN] = [1; HASH_LEN];

async fn start(config: ServerConfig, options: RsaOptions) -> RunningServer {
    server::spawn_rsa(config, options).await.unwrap()
}

async fn spec_server() -> RunningServer {
    start(ServerConfig::default(), RsaOptions::default()).await
}

/// A connection after a correct key exchange.
async fn open(server: &RunningServer) -> RsaStream {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    RsaStream::connect(tcp, PATIENCE).await.unwrap()
}

/// The next reply's plaintext, as text; `None` when the server closed.
async fn reply(conn: &mut RsaStream) -> Option<String> {
    let block = tokio::time::timeout(PATIENCE, conn.read_block())
        .await
        .expect("a reply in time")
        .expect("a whole block that decrypts");
    block.map(|b| String::from_utf8(b).unwrap())
}

async fn login(conn: &mut RsaStream, id: &str) {
    conn.send(format!("CONNECT {id}\n").as_bytes())
        .await
        .unwrap();
    conn.send_clear(&ALICE).await.unwrap();
    assert_eq!(reply(conn).await.as_deref(), Some("CONNECT: OK\n"));
}

/// Reads until the server closes; true if it closed (rather than sent more) in time.
async fn closes(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_session_over_rsa_blocks() {
    let server = spec_server().await;
    let mut conn = open(&server).await;
    login(&mut conn, "alice").await;
    conn.send(b"PUT colour\nblue\n").await.unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("PUT: OK\n"));
    conn.send(b"GET colour\n").await.unwrap();
    assert_eq!(
        reply(&mut conn).await.as_deref(),
        Some("GET blue\n2654390964\n")
    );
    conn.send(b"DISCONNECT\n").await.unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("DISCONNECT: OK\n"));
    assert_eq!(reply(&mut conn).await, None);
    assert_eq!(server.store().session_count(), 0);
}

#[tokio::test]
async fn every_connection_gets_a_fresh_server_key() {
    let server = spec_server().await;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        let mine = KeyPair::generate().unwrap();
        tcp.write_all(mine.public_pem().as_bytes()).await.unwrap();
        let mut reader = PemReader::default();
        let mut buf = [0u8; 512];
        let key = loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed before its key");
            if let Some((key, _)) = reader.push(&buf[..n]).unwrap() {
                break key;
            }
        };
        keys.push(key);
    }
    assert_ne!(keys[0], keys[1]);
}

#[tokio::test]
async fn the_course_dialect_and_an_encrypted_hash() {
    let config = ServerConfig {
        dialect: Dialect::Course,
        ..ServerConfig::default()
    };
    let server = start(
        config,
        RsaOptions {
            hash_in_clear: false,
        },
    )
    .await;
    let mut conn = open(&server).await;
    conn.send(b"CONNECT bob").await.unwrap();
    conn.send(&ALICE).await.unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("CONNECT: OK"));
    conn.send(b"PUT k\nv").await.unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("PUT: OK"));
    conn.send(b"GET k").await.unwrap();
    let expected = format!("GET v\n{}", crc32(b"v"));
    assert_eq!(reply(&mut conn).await, Some(expected));
}

#[tokio::test]
async fn a_value_its_get_reply_cannot_carry_is_refused() {
    let server = spec_server().await;
    let mut conn = open(&server).await;
    login(&mut conn, "carol").await;
    // "GET " + 38 bytes + "\n" + CRC + "\n" needs more than 53 bytes for this value.
    let long = "x".repeat(38);
    conn.send(format!("PUT k\n{long}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("PUT: ERROR\n"));
    assert_eq!(server.store().peek("carol", "k"), None);
    let fits = "x".repeat(30);
    conn.send(format!("PUT k\n{fits}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("PUT: OK\n"));
}

#[tokio::test]
async fn an_undecryptable_block_drops_the_client_and_its_data() {
    let server = spec_server().await;
    let mut conn = open(&server).await;
    login(&mut conn, "dave").await;
    conn.send(b"PUT k\nv\n").await.unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("PUT: OK\n"));
    // Above any 512-bit modulus: no key decrypts it.
    conn.send_clear(&[0xff; BLOCK_LEN]).await.unwrap();
    assert_eq!(reply(&mut conn).await, None);
    assert_eq!(server.store().peek("dave", "k"), None);
    assert!(!server.store().is_active("dave"));
}

#[tokio::test]
async fn a_block_made_for_another_key_is_dropped_at_once() {
    let server = spec_server().await;
    let mut conn = open(&server).await;
    login(&mut conn, "hana").await;
    // Well-formed, but for another key: it decrypts to junk, which holds no line feed to
    // wait for.
    let other = KeyPair::generate().unwrap();
    let block = rsa::encrypt(&other.public_key(), b"GET colour\n").unwrap();
    conn.send_clear(&block).await.unwrap();
    assert_eq!(reply(&mut conn).await, None);
    assert!(!server.store().is_active("hana"));
}

#[tokio::test]
async fn a_skipping_server_keeps_the_connection() {
    let config = ServerConfig {
        faults: Fault::RsaSkipUndecryptable.into(),
        ..ServerConfig::default()
    };
    let server = start(config, RsaOptions::default()).await;
    let mut conn = open(&server).await;
    login(&mut conn, "erin").await;
    conn.send_clear(&[0xff; BLOCK_LEN]).await.unwrap();
    conn.send(b"GET nothing\n").await.unwrap();
    assert_eq!(reply(&mut conn).await.as_deref(), Some("GET: ERROR\n"));
}

#[tokio::test]
async fn bad_keys_and_early_messages_are_dropped_without_a_reply() {
    let server = spec_server().await;
    // A well-formed key of the wrong size.
    let big = ::rsa::PrivateKey::new_unchecked(&mut getrandom::SysRng, 1024).unwrap();
    let big = rsa::public_pem(&big.to_public_key()).unwrap();
    for first in [
        b"CONNECT alice\n".to_vec(),
        b"-----BEGIN RSA PUBLIC KEY-----\nnot base64!\n-----END RSA PUBLIC KEY-----\n".to_vec(),
        big.into_bytes(),
    ] {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(&first).await.unwrap();
        assert!(
            closes(&mut tcp).await,
            "not dropped after {:?}",
            String::from_utf8_lossy(&first)
        );
    }
}

#[tokio::test]
async fn the_client_library_speaks_rsa() {
    let server = spec_server().await;
    for dialect in [Dialect::Spec, Dialect::Course] {
        let config = ServerConfig {
            dialect,
            ..ServerConfig::default()
        };
        let server = start(config, RsaOptions::default()).await;
        let mut client = Client::connect_rsa(server.addr(), dialect, RsaOptions::default())
            .await
            .unwrap();
        client.login("frank", &ALICE).await.unwrap();
        client.put("colour", "blue").await.unwrap();
        assert_eq!(client.get("colour").await.unwrap().as_deref(), Some("blue"));
        let err = client.put("k", &"x".repeat(60)).await.unwrap_err();
        // "PUT k\n" and the value, and in the spec dialect a line end.
        let len = if dialect == Dialect::Spec { 67 } else { 66 };
        assert_eq!(
            err.to_string(),
            format!(
                "PUT cannot be sent: the message is {len} bytes, and one 512-bit RSA block \
                 holds at most 53"
            )
        );
        // Nothing was sent: the connection still works.
        client.delete("colour").await.unwrap();
        client.disconnect().await.unwrap();
    }
    // Data survives a lost connection; the next one exchanges keys again and logs in.
    let mut first = Client::connect_rsa(server.addr(), Dialect::Spec, RsaOptions::default())
        .await
        .unwrap();
    first.login("gina", &ALICE).await.unwrap();
    first.put("kept", "yes").await.unwrap();
    drop(first);
    let mut second = Client::connect_rsa(server.addr(), Dialect::Spec, RsaOptions::default())
        .await
        .unwrap();
    let mut tries = 0;
    let login = loop {
        // The server notices the lost connection shortly after the drop.
        tries += 1;
        match second.login("gina", &ALICE).await {
            Err(ClientError::LoginRefused { .. }) if tries < 100 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                second = Client::connect_rsa(server.addr(), Dialect::Spec, RsaOptions::default())
                    .await
                    .unwrap();
            }
            other => break other,
        }
    };
    login.unwrap();
    assert_eq!(second.get("kept").await.unwrap().as_deref(), Some("yes"));
}

/// Runs `reference` with `args`: its exit code, then stdout and stderr.
async fn reference(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_reference"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("reference did not finish")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// `reference kv-rsa-server` and `reference kv-rsa-client` as a person runs them: what the
/// client prints for each command, for a message too long for a block, and for a target
/// that is not an RSA server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_and_server() {
    use tokio::io::AsyncBufReadExt;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_reference"))
        .args(["kv-rsa-server", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(server.stdout.take().unwrap());
    let mut banner = String::new();
    tokio::time::timeout(PATIENCE, stdout.read_line(&mut banner))
        .await
        .expect("the server printed its address")
        .unwrap();
    let addr = banner
        .strip_prefix("kv-rsa-server listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .to_owned();
    let long = "x".repeat(60);
    let mut runs = vec![banner.trim_end().replace(&addr, "[addr]")];
    for args in [
        vec![
            "--id",
            "alice",
            "--password",
            "secret",
            "put",
            "colour",
            "blue",
            "get",
            "colour",
            "put",
            "big",
            &long,
            "put",
            "near",
            "0123456789012345678901234567890123456789",
            "get",
            "near",
            "delete",
            "colour",
            "get",
            "colour",
        ],
        // The hash as a block where the server reads it in the clear: the blocks after it
        // are out of step, and the server drops the connection.
        vec![
            "--id",
            "bob",
            "--password",
            "pw",
            "--encrypt-hash",
            "put",
            "k",
            "v",
        ],
    ] {
        let mut full = vec!["kv-rsa-client", "--target", &addr];
        full.extend(args);
        let (code, text) = reference(&full).await;
        runs.push(format!(
            "$ reference {}\n{text}(exit {code:?})",
            full.join(" ")
                .replace(&addr, "[addr]")
                .replace(&long, "x*60")
        ));
    }
    // A TLS server where an RSA one was expected.
    let tls = {
        let cert = reference_impl::tls::self_signed(&[]).unwrap();
        let config = reference_impl::tls::server_config(vec![cert.cert_der], cert.key_der).unwrap();
        server::spawn(ServerConfig::default(), config)
            .await
            .unwrap()
    };
    let tls_addr = tls.addr().to_string();
    let (code, text) = reference(&[
        "kv-rsa-client",
        "--target",
        &tls_addr,
        "--id",
        "carol",
        "--password",
        "pw",
        "get",
        "k",
    ])
    .await;
    runs.push(format!(
        "$ reference kv-rsa-client --target [a TLS server] --id carol --password pw get k\n\
         {text}(exit {code:?})"
    ));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../snapshots/reference"
    ));
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"127\.0\.0\.1:\d+", "[addr]");
    settings.bind(|| insta::assert_snapshot!("kv_rsa_cli", runs.join("\n\n")));
    let mut help = Vec::new();
    for command in ["kv-rsa-server", "kv-rsa-client"] {
        let (code, text) = reference(&[command, "--help"]).await;
        help.push(format!(
            "$ reference {command} --help\n{text}(exit {code:?})"
        ));
    }
    settings.bind(|| insta::assert_snapshot!("kv_rsa_cli_help", help.join("\n\n")));
    let _ = server.kill().await;
}
