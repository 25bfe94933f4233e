//! The packet server and client over real TCP connections on 127.0.0.1: the reference client
//! against the reference server, each broken client against the correct server (it loses
//! exactly the points it should), each broken server against the client (it is caught), and
//! raw bytes in, exact bytes out. Every read has a deadline, so no test can hang.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reference_impl::packet::cli::{self, PacketClientArgs, PairingArg};
use reference_impl::packet::client::{self, ClientConfig, ClientError, ClientFault, Outcome};
use reference_impl::packet::codec::{
    ChecksumMode, DecodeError, MAX_DATA, MAX_PACKET, Packet, PacketDecoder, Pairing, xor,
};
use reference_impl::packet::server::{self, Fault, RunningServer, ServerConfig};
use reference_impl::packet::session::{self, Rng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any expected event may take.
const PATIENCE: Duration = Duration::from_secs(5);
/// The server's silence allowance in tests that wait for it.
const SHORT: Duration = Duration::from_millis(400);

const SID: i32 = 20_200_000;
const REGISTERED: &str = " & YOUR POINTS ARE REGISTERED ON DATABASE";

/// Texts long enough that the stream takes two packets and a reply chunk of 9,985 bytes
/// is possible; a fixed seed, so failures repeat.
fn fast() -> ServerConfig {
    ServerConfig {
        text_len: 12_000..=15_000,
        seed: Some(7),
        timeout: PATIENCE,
        linger: Duration::from_millis(500),
        ..ServerConfig::default()
    }
}

macro_rules! server {
    () => {
        server::spawn(fast()).await.unwrap()
    };
    ($($field:ident: $value:expr),+ $(,)?) => {
        server::spawn(ServerConfig {
            $($field: $value,)+
            ..fast()
        })
        .await
        .unwrap()
    };
}

fn client(keyword: &[u8; 4]) -> ClientConfig {
    ClientConfig {
        keyword: *keyword,
        timeout: PATIENCE,
        ..ClientConfig::default()
    }
}

fn faulty_client(fault: ClientFault) -> ClientConfig {
    ClientConfig {
        faults: fault.into(),
        ..client(b"test")
    }
}

async fn session(server: &RunningServer, config: &ClientConfig) -> Result<Outcome, ClientError> {
    tokio::time::timeout(2 * PATIENCE, client::run(server.addr(), config))
        .await
        .expect("the session ends in time")
}

/// The status word, score and message of a session's result.
fn result(outcome: &Outcome) -> (String, i32, String) {
    (outcome.status(), outcome.score(), outcome.message())
}

fn expect(status: &str, score: i32, message: &str) -> (String, i32, String) {
    (status.to_owned(), score, message.to_owned())
}

/// A connection speaking raw bytes.
struct Raw {
    tcp: TcpStream,
    decoder: PacketDecoder,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        Self::with_mode(addr, ChecksumMode::Big).await
    }

    async fn with_mode(addr: SocketAddr, mode: ChecksumMode) -> Self {
        Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            decoder: PacketDecoder::with_max_packet(Some(mode), MAX_PACKET + 1),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// The next packet, checksum verified.
    async fn packet(&mut self) -> Packet {
        tokio::time::timeout(PATIENCE, async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(packet) = self.decoder.next_packet().unwrap() {
                    return packet;
                }
                let n = self.tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "the server closed the connection");
                self.decoder.feed(&buf[..n]);
            }
        })
        .await
        .expect("a packet in time")
    }

    /// Packets up to and including the one with flag 1.
    async fn stream(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        loop {
            let packet = self.packet().await;
            let last = packet.is_last();
            packets.push(packet);
            if last {
                return packets;
            }
        }
    }

    /// The server closes the connection with nothing more to say.
    async fn expect_close(&mut self) {
        assert_eq!(self.decoder.buffered(), 0, "bytes left before the close");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(PATIENCE, self.tcp.read(&mut buf))
            .await
            .expect("a close in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "more bytes instead of a close: {:?}", &buf[..n]);
    }
}

fn hello(keyword: &[u8; 4], sid: i32) -> Vec<u8> {
    Packet::new(1, *keyword, sid, Vec::new()).to_bytes(Pairing::BigEndian)
}

/// The error packet the server sends, as it must look on the wire.
fn error_packet(status: &[u8; 4], score: i32, message: &str) -> Packet {
    Packet::new(1, *status, score, message.as_bytes().to_vec()).with_checksum(Pairing::BigEndian)
}

/// The decrypted text of a stream.
fn decrypt(packets: &[Packet]) -> Vec<u8> {
    let joined: Vec<u8> = packets.iter().flat_map(|p| p.data.clone()).collect();
    xor(&joined, &packets[0].keyword)
}

/// The reply to a stream: the text in packets of at most 9,984 data bytes, the last flag 1.
fn reply(key: [u8; 4], text: &[u8], pairing: Pairing) -> Vec<u8> {
    let chunks: Vec<&[u8]> = text.chunks(MAX_DATA).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let flag = u16::from(i + 1 == chunks.len());
        Packet::new(flag, key, SID, chunk.to_vec()).encode(pairing, &mut out);
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "packet-test-{}-{name}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("scores.txt")
}

#[tokio::test]
async fn the_reference_client_scores_50() {
    let server = server!();
    let outcome = session(&server, &client(b"sbmt")).await.unwrap();
    assert_eq!(
        result(&outcome),
        expect(
            "GOOD",
            50,
            "DECRYPTED DATA MATCH & YOUR POINTS ARE REGISTERED ON DATABASE"
        )
    );
    assert!(outcome.is_full_score());
    assert!(outcome.packets >= 2, "{} packets", outcome.packets);
    assert!((12_000..=15_000).contains(&outcome.text.len()));
    assert_eq!(server.scores().best(SID), Some(50));
    // A test run: same score, no suffix, nothing recorded.
    let outcome = session(&server, &client(b"test")).await.unwrap();
    assert_eq!(result(&outcome), expect("GOOD", 50, "DECRYPTED DATA MATCH"));
    assert_eq!(server.scores().snapshot().len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn little_endian_and_either_servers() {
    let little = server!(checksum: ChecksumMode::Little);
    let config = ClientConfig {
        pairing: Pairing::LittleEndian,
        verify: ChecksumMode::Little,
        ..client(b"test")
    };
    assert_eq!(session(&little, &config).await.unwrap().score(), 50);
    // A big-endian client cannot even read the little-endian server's error packet.
    let e = session(&little, &client(b"test")).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Decode {
                index: 1,
                error: DecodeError::BadChecksum { .. }
            }
        ),
        "{e:?}"
    );
    let either = server!(checksum: ChecksumMode::Either);
    let little_only = faulty_client(ClientFault::LittleEndianOnly);
    assert_eq!(session(&either, &little_only).await.unwrap().score(), 50);
    assert_eq!(
        session(&either, &client(b"test")).await.unwrap().score(),
        50
    );
    little.shutdown().await;
    either.shutdown().await;
}

#[tokio::test]
async fn each_broken_client_loses_exactly_its_points() {
    let server = server!(timeout: SHORT);
    let table: [(ClientFault, &str, i32, &str); 7] = [
        (
            ClientFault::LittleEndianOnly,
            "CKSM",
            0,
            "HEADER: CHECKSUM 0xa0dc, EXPECTED 0xdca0 (BIG-ENDIAN PAIRING)",
        ),
        (
            ClientFault::NoFinalFlag,
            "TIME",
            20,
            "REPLY: NO LAST PACKET (FLAG 1) WITHIN 400MS AFTER PACKET 2",
        ),
        (
            ClientFault::ChunkTooLarge,
            "LENG",
            20,
            "REPLY PACKET 1: LENGTH FIELD 10001 IS OVER THE MAXIMUM 10000",
        ),
        (
            ClientFault::DecryptsWithoutCarryingKeyPosition,
            "DIFF",
            35,
            "<any>",
        ),
        (ClientFault::WrongKeyword, "KEYW", 20, "<any>"),
        (ClientFault::DropsLastByte, "SIZE", 20, "<any>"),
        (
            ClientFault::WrongSidInReply,
            "SIDN",
            20,
            "REPLY PACKET 1: STUDENT ID 20200001, EXPECTED 20200000",
        ),
    ];
    assert_eq!(
        table.len(),
        ClientFault::ALL.len(),
        "every client fault is in the table"
    );
    for (fault, status, score, message) in table {
        let outcome = session(&server, &faulty_client(fault)).await.unwrap();
        let (got_status, got_score, got_message) = result(&outcome);
        assert_eq!(
            (got_status.as_str(), got_score),
            (status, score),
            "{fault}: {got_message}"
        );
        if message != "<any>" {
            assert_eq!(got_message, message, "{fault}");
        }
    }
    // The messages that depend on the session: the key and the text's length.
    let outcome = session(&server, &faulty_client(ClientFault::WrongKeyword))
        .await
        .unwrap();
    let key = outcome.key.unwrap();
    assert_eq!(
        outcome.message(),
        format!(
            "REPLY PACKET 1: KEYWORD \"test\", EXPECTED THE KEY \"{}\"",
            key.escape_ascii()
        )
    );
    let outcome = session(&server, &faulty_client(ClientFault::DropsLastByte))
        .await
        .unwrap();
    let n = outcome.text.len();
    assert_eq!(
        outcome.message(),
        format!("DECRYPTED DATA LENGTH {}, EXPECTED {n}", n - 1)
    );
    let outcome = session(
        &server,
        &faulty_client(ClientFault::DecryptsWithoutCarryingKeyPosition),
    )
    .await
    .unwrap();
    assert!(
        outcome
            .message()
            .starts_with("DECRYPTED DATA MISMATCH: FIRST DIFFERENCE AT BYTE "),
        "{}",
        outcome.message()
    );
    server.shutdown().await;
}

/// How a client (correct or broken) fares against a server.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Result(&'static str, i32),
    BadChecksum,
    TooLarge,
    NoResult,
}

async fn seen(server: &RunningServer, config: &ClientConfig) -> Seen {
    match session(server, config).await {
        Ok(outcome) => {
            let status = match outcome.status().as_str() {
                "GOOD" => "GOOD",
                "DIFF" => "DIFF",
                "SIZE" => "SIZE",
                "CKSM" => "CKSM",
                "KEYW" => "KEYW",
                "TIME" => "TIME",
                other => panic!("unexpected status {other}"),
            };
            Seen::Result(status, outcome.score())
        }
        Err(ClientError::Decode {
            error: DecodeError::BadChecksum { .. },
            ..
        }) => Seen::BadChecksum,
        Err(ClientError::Decode {
            error: DecodeError::LengthTooLarge { length: 10_001, .. },
            ..
        }) => Seen::TooLarge,
        Err(ClientError::Closed {
            waiting: "the result packet",
            ..
        }) => Seen::NoResult,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[tokio::test]
async fn each_broken_server_is_caught_by_a_client() {
    let correct = server!(timeout: SHORT);
    // (server fault, the client that catches it, what it sees from a correct server, what it
    // sees from the broken one)
    let table: [(Fault, Option<ClientFault>, Seen, Seen); 8] = [
        (
            Fault::WrongChecksumOut,
            None,
            Seen::Result("GOOD", 50),
            Seen::BadChecksum,
        ),
        (
            Fault::XorOffsetResetsPerPacket,
            None,
            Seen::Result("GOOD", 50),
            Seen::Result("DIFF", 35),
        ),
        // The client waits for a flag 1 that never comes; the server gives up first.
        (
            Fault::LastPacketFlagMissing,
            None,
            Seen::Result("GOOD", 50),
            Seen::Result("TIME", 10),
        ),
        (
            Fault::ScoreIgnoresLength,
            Some(ClientFault::DropsLastByte),
            Seen::Result("SIZE", 20),
            Seen::Result("DIFF", 35),
        ),
        (
            Fault::AcceptsBadChecksum,
            Some(ClientFault::LittleEndianOnly),
            Seen::Result("CKSM", 0),
            Seen::Result("GOOD", 50),
        ),
        (
            Fault::AcceptsWrongKeyword,
            Some(ClientFault::WrongKeyword),
            Seen::Result("KEYW", 20),
            Seen::Result("GOOD", 50),
        ),
        (
            Fault::PacketOverLimit,
            None,
            Seen::Result("GOOD", 50),
            Seen::TooLarge,
        ),
        (
            Fault::NoResultPacket,
            None,
            Seen::Result("GOOD", 50),
            Seen::NoResult,
        ),
    ];
    assert_eq!(
        table.len(),
        Fault::ALL.len(),
        "every server fault is in the table"
    );
    for (fault, client_fault, from_correct, from_broken) in table {
        let config = match client_fault {
            Some(f) => faulty_client(f),
            None => client(b"test"),
        };
        assert_eq!(
            seen(&correct, &config).await,
            from_correct,
            "{fault} (correct server)"
        );
        let broken = server!(timeout: SHORT, faults: fault.into());
        assert_eq!(seen(&broken, &config).await, from_broken, "{fault}");
        broken.shutdown().await;
    }
    correct.shutdown().await;
}

#[tokio::test]
async fn the_stream_is_the_text_encrypted_with_the_key() {
    let text = b"the quick brown fox jumps over the lazy dog".to_vec();
    let server = server!(key: Some(*b"wxyz"), text: Some(text.clone()), max_packet_data: 10);
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"test", SID)).await;
    let packets = raw.stream().await;
    // The same seed gives the same packet sizes.
    let sizes = session::packet_sizes(&mut Rng::seeded(7), text.len(), 10, 4, None);
    let expected = session::encrypt(*b"wxyz", &text, &sizes, SID, false, false);
    let expected: Vec<_> = expected
        .into_iter()
        .map(|p| p.with_checksum(Pairing::BigEndian))
        .collect();
    assert_eq!(packets, expected);
    assert!(packets.len() >= 5);
    assert!(
        packets
            .iter()
            .all(|p| p.keyword == *b"wxyz" && p.sid == SID)
    );
    assert_eq!(decrypt(&packets), text);
    // The reply, one byte per write.
    for byte in reply(*b"wxyz", &text, Pairing::BigEndian) {
        raw.send(&[byte]).await;
    }
    assert_eq!(
        raw.packet().await,
        error_packet(b"GOOD", 50, "DECRYPTED DATA MATCH")
    );
    raw.expect_close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_first_packet_gets_its_error_and_nothing_else() {
    let server = server!();
    let mut bad_checksum = hello(b"sbmt", SID);
    bad_checksum[3] ^= 0xff;
    let mut too_long = hello(b"sbmt", SID);
    too_long[12..16].copy_from_slice(&10_001i32.to_be_bytes());
    let mut too_short = hello(b"sbmt", SID);
    too_short[12..16].copy_from_slice(&15i32.to_be_bytes());
    let cases: Vec<(Vec<u8>, &[u8; 4], &str)> = vec![
        (
            bad_checksum,
            b"CKSM",
            "HEADER: CHECKSUM 0xe35c, EXPECTED 0xe3a3 (BIG-ENDIAN PAIRING)",
        ),
        (
            too_long,
            b"LENG",
            "HEADER: LENGTH FIELD 10001 IS OVER THE MAXIMUM 10000",
        ),
        (
            too_short,
            b"LENG",
            "HEADER: LENGTH FIELD 15 IS BELOW THE HEADER SIZE 16",
        ),
        (
            Packet::new(1, *b"sbmt", SID, b"hi".to_vec()).to_bytes(Pairing::BigEndian),
            b"LENG",
            "HEADER: LENGTH FIELD 18, EXPECTED 16 (A HEADER WITHOUT DATA)",
        ),
        (
            Packet::new(0, *b"sbmt", SID, vec![]).to_bytes(Pairing::BigEndian),
            b"FLAG",
            "HEADER: FLAG 0, EXPECTED 1 (A SINGLE PACKET)",
        ),
        (
            hello(b"Sbmt", SID),
            b"KEYW",
            "HEADER: KEYWORD \"Sbmt\" IS NOT 4 LOWERCASE LETTERS",
        ),
        (
            hello(b"sbmt", 2020),
            b"SIDN",
            "HEADER: STUDENT ID 2020 IS NOT 8 DIGITS",
        ),
    ];
    for (bytes, status, message) in cases {
        let mut raw = Raw::connect(server.addr()).await;
        raw.send(&bytes).await;
        assert_eq!(
            raw.packet().await,
            error_packet(status, 0, message),
            "{message}"
        );
        raw.expect_close().await;
    }
    // Nothing recorded for any of them.
    assert!(server.scores().snapshot().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn silence_and_early_closes() {
    let server = server!(timeout: SHORT);
    // Silence before the first packet.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"sbmt", SID)[..5]).await;
    assert_eq!(
        raw.packet().await,
        error_packet(b"TIME", 0, "HEADER: NOTHING WITHIN 400MS")
    );
    raw.expect_close().await;
    // Closing inside the first packet.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"sbmt", SID)[..5]).await;
    raw.tcp.shutdown().await.unwrap();
    assert_eq!(
        raw.packet().await,
        error_packet(b"CLSD", 0, "HEADER: CONNECTION CLOSED AFTER 5 OF 16 BYTES")
    );
    raw.expect_close().await;
    // Closing without a word: no answer.
    let mut raw = Raw::connect(server.addr()).await;
    raw.tcp.shutdown().await.unwrap();
    raw.expect_close().await;
    // No reply at all: the header's 10 points, recorded.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"sbmt", SID)).await;
    raw.stream().await;
    assert_eq!(
        raw.packet().await,
        error_packet(
            b"TIME",
            10,
            &format!("REPLY: NOTHING WITHIN 400MS{REGISTERED}")
        )
    );
    raw.expect_close().await;
    assert_eq!(server.scores().best(SID), Some(10));
    // Half a reply, then the client closes its side.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"sbmt", SID)).await;
    let packets = raw.stream().await;
    let text = decrypt(&packets);
    let key = packets[0].keyword;
    raw.send(&Packet::new(0, key, SID, text[..100].to_vec()).to_bytes(Pairing::BigEndian))
        .await;
    raw.tcp.shutdown().await.unwrap();
    assert_eq!(
        raw.packet().await,
        error_packet(
            b"CLSD",
            20,
            &format!("REPLY: CONNECTION CLOSED BEFORE THE LAST PACKET (FLAG 1){REGISTERED}")
        )
    );
    raw.expect_close().await;
    assert_eq!(server.scores().best(SID), Some(20));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_reply_packets() {
    let server = server!();
    let start = |keyword: &'static [u8; 4]| {
        let addr = server.addr();
        async move {
            let mut raw = Raw::connect(addr).await;
            raw.send(&hello(keyword, SID)).await;
            let packets = raw.stream().await;
            (raw, packets[0].keyword, decrypt(&packets))
        }
    };
    // A bad checksum in the second reply packet.
    let (mut raw, key, text) = start(b"test").await;
    raw.send(&Packet::new(0, key, SID, text[..10].to_vec()).to_bytes(Pairing::BigEndian))
        .await;
    let mut second = Packet::new(0, key, SID, text[10..1000].to_vec());
    second.checksum = 0x1234;
    let mut bytes = Vec::new();
    second.encode_raw(second.length_field(), &mut bytes);
    raw.send(&bytes).await;
    let result = raw.packet().await;
    assert_eq!((result.keyword, result.sid), (*b"CKSM", 20));
    let expected = second.compute_checksum(Pairing::BigEndian);
    assert_eq!(
        String::from_utf8(result.data).unwrap(),
        format!("REPLY PACKET 2: CHECKSUM 0x1234, EXPECTED {expected:#06x} (BIG-ENDIAN PAIRING)")
    );
    raw.expect_close().await;
    // A flag that is neither 0 nor 1.
    let (mut raw, key, text) = start(b"test").await;
    raw.send(&Packet::new(2, key, SID, text[..100].to_vec()).to_bytes(Pairing::BigEndian))
        .await;
    assert_eq!(
        raw.packet().await,
        error_packet(b"FLAG", 20, "REPLY PACKET 1: FLAG 2, EXPECTED 0 OR 1")
    );
    // A length field below the header, and junk after it: the framing is lost, the error
    // comes at once, the junk is drained.
    let (mut raw, key, _) = start(b"sbmt").await;
    let mut bad = Packet::new(1, key, SID, vec![]).to_bytes(Pairing::BigEndian);
    bad[12..16].copy_from_slice(&3i32.to_be_bytes());
    bad.extend_from_slice(&[0xaa; 50_000]);
    raw.send(&bad).await;
    assert_eq!(
        raw.packet().await,
        error_packet(
            b"LENG",
            20,
            &format!("REPLY PACKET 1: LENGTH FIELD 3 IS BELOW THE HEADER SIZE 16{REGISTERED}")
        )
    );
    raw.expect_close().await;
    // A correct reply followed by more bytes: the result still arrives whole.
    let (mut raw, key, text) = start(b"test").await;
    let mut bytes = reply(key, &text, Pairing::BigEndian);
    bytes.extend_from_slice(&[0x55; 30_000]);
    raw.send(&bytes).await;
    assert_eq!(
        raw.packet().await,
        error_packet(b"GOOD", 50, "DECRYPTED DATA MATCH")
    );
    raw.expect_close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_echo_client_that_replies_packet_by_packet_scores_50() {
    // The server reads the reply while it sends the stream.
    let server = server!(max_packet_data: 1000, text_len: 200_000..=200_000);
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"test", SID)).await;
    let mut cipher = None::<reference_impl::packet::codec::Xor>;
    loop {
        let packet = raw.packet().await;
        let cipher =
            cipher.get_or_insert_with(|| reference_impl::packet::codec::Xor::new(&packet.keyword));
        let mut data = packet.data.clone();
        cipher.apply(&mut data);
        raw.send(&Packet::new(packet.flag, packet.keyword, SID, data).to_bytes(Pairing::BigEndian))
            .await;
        if packet.is_last() {
            break;
        }
    }
    assert_eq!(
        raw.packet().await,
        error_packet(b"GOOD", 50, "DECRYPTED DATA MATCH")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_echo_client_graded_early_still_gets_the_whole_stream_and_its_result() {
    // The server refuses the first reply packet while it still has a megabyte to send; the
    // client goes on echoing, and neither side blocks the other.
    let server = server!(max_packet_data: 1000, text_len: server::MAX_TEXT..=server::MAX_TEXT);
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"test", SID)).await;
    let mut packets = 0;
    loop {
        let packet = raw.packet().await;
        packets += 1;
        raw.send(
            &Packet::new(packet.flag, *b"zzzz", SID, packet.data.clone())
                .to_bytes(Pairing::BigEndian),
        )
        .await;
        if packet.is_last() {
            break;
        }
    }
    assert!(packets > 1000);
    let result = raw.packet().await;
    assert_eq!((result.keyword, result.sid), (*b"KEYW", 20));
    raw.expect_close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn scores_survive_a_restart_and_only_the_best_is_kept() {
    let path = scratch("restart");
    let config = || ServerConfig {
        scores: Some(path.clone()),
        ..fast()
    };
    let server = server::spawn(config()).await.unwrap();
    let outcome = session(
        &server,
        &ClientConfig {
            faults: ClientFault::DropsLastByte.into(),
            ..client(b"sbmt")
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome.score(), 20);
    assert!(outcome.message().ends_with(REGISTERED));
    assert_eq!(
        session(&server, &client(b"sbmt")).await.unwrap().score(),
        50
    );
    server.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("# best scores of the packet server: student id, points\n{SID} 50\n")
    );

    let server = server::spawn(config()).await.unwrap();
    assert_eq!(server.scores().best(SID), Some(50));
    // A worse score later: registered, the best one kept.
    let outcome = session(
        &server,
        &ClientConfig {
            faults: ClientFault::WrongKeyword.into(),
            ..client(b"sbmt")
        },
    )
    .await
    .unwrap();
    assert_eq!(result(&outcome).1, 20);
    assert!(outcome.message().ends_with(REGISTERED));
    assert_eq!(server.scores().best(SID), Some(50));
    server.shutdown().await;
}

#[tokio::test]
async fn a_scores_file_that_cannot_be_written() {
    let path = scratch("unwritable")
        .with_file_name("no-such-dir")
        .join("scores.txt");
    let server = server!(scores: Some(path));
    let outcome = session(&server, &client(b"sbmt")).await.unwrap();
    assert_eq!(
        result(&outcome),
        expect("GOOD", 50, "DECRYPTED DATA MATCH & REGISTRATION FAILED")
    );
    assert_eq!(server.scores().best(SID), None);
    server.shutdown().await;
}

#[tokio::test]
async fn many_clients_at_once_and_a_bad_one_beside_them() {
    let server = server!();
    let mut junk = Raw::connect(server.addr()).await;
    junk.send(&[0xff; 3]).await;
    let mut sessions = tokio::task::JoinSet::new();
    for i in 0..20 {
        let addr = server.addr();
        sessions.spawn(async move {
            let config = ClientConfig {
                student_id: SID + i,
                ..client(b"sbmt")
            };
            client::run(addr, &config).await.unwrap().score()
        });
    }
    junk.send(&[0xff; 13]).await;
    let result = junk.packet().await;
    assert_eq!((result.keyword, result.sid), (*b"LENG", 0));
    while let Some(score) = sessions.join_next().await {
        assert_eq!(score.unwrap(), 50);
    }
    assert_eq!(server.scores().snapshot().len(), 20);
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let server = server!(max_connections: 1);
    let mut first = Raw::connect(server.addr()).await;
    first.send(&hello(b"test", SID)).await;
    let packets = first.stream().await;
    let mut second = Raw::connect(server.addr()).await;
    second.expect_close().await;
    first
        .send(&reply(
            packets[0].keyword,
            &decrypt(&packets),
            Pairing::BigEndian,
        ))
        .await;
    assert_eq!(first.packet().await.sid, 50);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_sessions() {
    let server = server!();
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"sbmt", SID)).await;
    raw.stream().await;
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("a prompt shutdown");
    raw.expect_close().await;
}

fn args(port: u16, extra: &[&str]) -> PacketClientArgs {
    use clap::{FromArgMatches, Parser};
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: PacketClientArgs,
    }
    let port = port.to_string();
    let mut argv = vec!["packet-client", "--port", &port, "--studentID=20200000"];
    argv.extend_from_slice(extra);
    let matches = <Cli as clap::CommandFactory>::command().get_matches_from(argv);
    Cli::from_arg_matches(&matches).unwrap().args
}

#[tokio::test]
async fn the_command_prints_key_score_and_message() {
    let server = server!(timeout: SHORT);
    let port = server.addr().port();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_client_with(&args(port, &[]), &mut out, &mut err).await;
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "KEY: GOOD\nScore: 50\nMessage: DECRYPTED DATA MATCH & YOUR POINTS ARE REGISTERED ON DATABASE\n"
    );
    assert_eq!((code, err.len()), (0, 0));

    let mut out = Vec::new();
    let mut err = Vec::new();
    let a = args(
        port,
        &[
            "--keyword",
            "test",
            "--fault",
            "drops-last-byte",
            "--timeout",
            "3s",
        ],
    );
    let code = cli::run_client_with(&a, &mut out, &mut err).await;
    assert_eq!(code, 1);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("KEY: SIZE\nScore: 20\n")
    );

    // A big-endian client against a little-endian server: it names the checksum.
    let little = server!(checksum: ChecksumMode::Little);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_client_with(&args(little.addr().port(), &[]), &mut out, &mut err).await;
    assert_eq!(code, 1);
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.starts_with("error: server packet 1 is malformed: packet at byte 0: checksum "),
        "{err}"
    );
    assert!(
        err.ends_with(
            "(big-endian pairing) (the server pairs bytes little-endian: --checksum little)\n"
        ),
        "{err}"
    );
    let mut out = Vec::new();
    let mut err = Vec::new();
    let a = args(little.addr().port(), &["--checksum", "little"]);
    assert!(matches!(a.checksum, PairingArg::Little));
    assert_eq!(cli::run_client_with(&a, &mut out, &mut err).await, 0);

    // Nobody listening: a setup error.
    let addr = little.addr();
    little.shutdown().await;
    server.shutdown().await;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_client_with(&args(addr.port(), &[]), &mut out, &mut err).await;
    assert_eq!(code, 2);
    assert!(
        String::from_utf8(err)
            .unwrap()
            .starts_with("error: cannot connect to")
    );
}

/// A one-connection server that reads the first packet and answers with `bytes`.
async fn fake_server(bytes: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 16];
        tcp.read_exact(&mut hello).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        tokio::time::sleep(PATIENCE).await;
    });
    addr
}

#[tokio::test]
async fn the_client_names_a_server_that_breaks_the_protocol() {
    let config = ClientConfig {
        timeout: SHORT,
        ..client(b"test")
    };
    let flag_2 = Packet::new(2, *b"abcd", SID, b"x".to_vec()).to_bytes(Pairing::BigEndian);
    let e = client::run(fake_server(flag_2).await, &config)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::BadFlag { index: 1, flag: 2 }),
        "{e:?}"
    );

    let stream = Packet::new(0, *b"abcd", SID, b"xyz".to_vec()).to_bytes(Pairing::BigEndian);
    let e = client::run(fake_server(stream).await, &config)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "nothing from the server for 400ms while waiting for the rest of the stream (no packet \
         with flag 1 yet)"
    );

    // The first packet in full, then the server goes away inside the second.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 16];
        tcp.read_exact(&mut hello).await.unwrap();
        let mut bytes = Packet::new(0, *b"abcd", SID, b"xyz".to_vec()).to_bytes(Pairing::BigEndian);
        bytes.extend_from_slice(
            &Packet::new(1, *b"abcd", SID, b"more".to_vec()).to_bytes(Pairing::BigEndian)[..18],
        );
        tcp.write_all(&bytes).await.unwrap();
    });
    let e = client::run(addr, &config).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Closed {
                truncated: Some(DecodeError::Truncated {
                    offset: 19,
                    expected: 20,
                    got: 18
                }),
                ..
            }
        ),
        "{e:?}"
    );

    // A result in place of the stream: the first packet refused.
    let refused = Packet::new(
        1,
        *b"SIDN",
        0,
        b"HEADER: STUDENT ID 1 IS NOT 8 DIGITS".to_vec(),
    )
    .to_bytes(Pairing::BigEndian);
    let outcome = client::run(fake_server(refused).await, &config)
        .await
        .unwrap();
    assert_eq!((outcome.key, outcome.packets), (None, 0));
    assert_eq!(
        result(&outcome),
        expect("SIDN", 0, "HEADER: STUDENT ID 1 IS NOT 8 DIGITS")
    );
}

#[tokio::test]
async fn a_reply_in_the_largest_chunks_passes() {
    // Exactly 9,984 data bytes per reply packet: 10,000 bytes, the limit.
    let server = server!(text_len: 2 * MAX_DATA..=2 * MAX_DATA);
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&hello(b"test", SID)).await;
    let packets = raw.stream().await;
    let text = decrypt(&packets);
    let key = packets[0].keyword;
    let mut bytes =
        Packet::new(0, key, SID, text[..MAX_DATA].to_vec()).to_bytes(Pairing::BigEndian);
    assert_eq!(bytes.len(), MAX_PACKET);
    Packet::new(1, key, SID, text[MAX_DATA..].to_vec()).encode(Pairing::BigEndian, &mut bytes);
    raw.send(&bytes).await;
    assert_eq!(raw.packet().await.sid, 50);
    server.shutdown().await;
}
