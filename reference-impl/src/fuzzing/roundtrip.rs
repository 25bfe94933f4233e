//! Structure-aware round trips (the `arbitrary` feature): the entry points of the
//! `roundtrip` fuzz target and of `tests/arbitrary_roundtrip.rs`.
//!
//! The byte-input targets above mostly meet malformed input; here the fuzzer builds messages
//! (`arbitrary::Arbitrary`, derived on the codecs' types; see the crate's `arb` module for
//! the values each field may take) and every one of them must survive its codec:
//!
//! - `decode(encode(m)) == m`, for a stream of messages decoded in one piece, in the dialects
//!   and modes the codec has;
//! - re-encoding is canonical: `encode(decode(encode(m))) == encode(m)`, byte for byte.
//!
//! The messages generated are valid by construction, so any decoding error fails too.

use arbitrary::{Arbitrary, Unstructured};

use crate::chat::codec as chat;
use crate::kv::codec as kv;
use crate::mathsvc::codec as mathsvc;
use crate::packet::codec as packet;

/// A message of any protocol: the input of the `roundtrip` fuzz target.
#[derive(Debug, Clone, Arbitrary)]
pub enum AnyMessage {
    Kv(KvMessages),
    Chat(ChatLines),
    Packet(PacketMessages),
    Mathsvc(MathsvcSession),
}

/// Checks the round trips of `m`: see the module documentation.
pub fn roundtrip(m: &AnyMessage) {
    match m {
        AnyMessage::Kv(m) => kv_roundtrip(m),
        AnyMessage::Chat(m) => chat_roundtrip(m),
        AnyMessage::Packet(m) => packet_roundtrip(m),
        AnyMessage::Mathsvc(m) => mathsvc_roundtrip(m),
    }
}

/// The `roundtrip` target on bytes, as libfuzzer-sys turns them into its input
/// (`arbitrary_take_rest`): for replaying saved inputs. Bytes that make no message pass.
pub fn roundtrip_bytes(data: &[u8]) {
    if let Ok(m) = AnyMessage::arbitrary_take_rest(Unstructured::new(data)) {
        roundtrip(&m);
    }
}

// ---------------------------------------------------------------------------------------
// kv

/// A stream of requests, or one of replies.
#[derive(Debug, Clone, Arbitrary)]
pub enum KvMessages {
    Requests(Vec<kv::ClientMessage>),
    Replies(Vec<kv::Reply>),
}

/// In both dialects: the stream (spec: one read; course: one read per write) decodes to the
/// messages, which encode to the very same bytes (and writes). Every message also passes
/// the checks of what the byte-input targets decode (well-formed, its own round trip).
pub fn kv_roundtrip(m: &KvMessages) {
    use kv::Dialect::{Course, Spec};

    match m {
        KvMessages::Requests(requests) => {
            for request in requests {
                super::check_request(Spec, request);
            }
            let spec = |requests: &[kv::ClientMessage]| {
                let mut out = Vec::new();
                for request in requests {
                    request.encode(Spec, &mut out);
                }
                out
            };
            let course = |requests: &[kv::ClientMessage]| {
                requests
                    .iter()
                    .flat_map(|r| r.writes(Course))
                    .collect::<Vec<_>>()
            };
            let bytes = spec(requests);
            let decoded = super::decode_requests(Spec, std::slice::from_ref(&bytes));
            assert_eq!(
                &decoded, requests,
                "spec: {bytes:?} decodes to other requests"
            );
            assert_eq!(spec(&decoded), bytes, "spec: re-encoding is not canonical");
            let writes = course(requests);
            let decoded = super::decode_requests(Course, &writes);
            assert_eq!(
                &decoded, requests,
                "course: {writes:?} decode to other requests"
            );
            assert_eq!(
                course(&decoded),
                writes,
                "course: re-encoding is not canonical"
            );
        }
        KvMessages::Replies(replies) => {
            for reply in replies {
                super::check_reply(reply);
            }
            // The spec dialect in one write, the course dialect one write per reply.
            let writes = |dialect, replies: &[kv::Reply]| {
                let writes = replies.iter().map(|reply| {
                    let mut out = Vec::new();
                    reply.encode(dialect, &mut out);
                    out
                });
                match dialect {
                    Spec => vec![writes.flatten().collect()],
                    Course => writes.collect(),
                }
            };
            for dialect in [Spec, Course] {
                let sent = writes(dialect, replies);
                let decoded = super::decode_replies(dialect, &sent);
                assert_eq!(
                    &decoded, replies,
                    "{dialect}: {sent:?} decode to other replies"
                );
                assert_eq!(
                    writes(dialect, &decoded),
                    sent,
                    "{dialect}: re-encoding is not canonical"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// chat

/// Lines of the chat protocol in a dialect: the headers renamed as `renames` says (in
/// order; a rename to a name another header has is skipped), and a check order.
#[derive(Debug, Clone, Arbitrary)]
pub struct ChatLines {
    pub renames: Vec<HeaderRename>,
    pub check_order: chat::CheckOrder,
    pub lines: Vec<ChatLine>,
}

/// `header` goes by `name` on the wire.
#[derive(Debug, Clone, Arbitrary)]
pub struct HeaderRename {
    pub header: chat::Header,
    #[arbitrary(with = crate::arb::header_name)]
    pub name: String,
}

/// One line of a chat connection.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum ChatLine {
    Client(chat::ClientMessage),
    Server(chat::ServerMessage),
    DataHello(chat::DataHello),
    DataReply(chat::DataReply),
}

/// Every line encodes to one line (one line end, at its end); the stream cuts into those
/// lines, and each decodes (as what it is) to its message, which encodes to the same bytes.
/// With the spec's header names, each line also passes the checks of the `parser` target
/// (both check orders agree).
pub fn chat_roundtrip(m: &ChatLines) {
    let mut headers = chat::HeaderMap::default();
    for rename in &m.renames {
        match headers.rename(rename.header, &rename.name) {
            Ok(()) | Err(chat::RenameError::Taken { .. }) => {}
            Err(e) => panic!("{rename:?}: {e}"),
        }
    }
    let dialect = chat::Dialect {
        headers,
        check_order: m.check_order,
    };
    let encode = |line: &ChatLine, out: &mut Vec<u8>| match line {
        ChatLine::Client(message) => dialect.encode_client(message, out),
        ChatLine::Server(message) => dialect.encode_server(message, out),
        ChatLine::DataHello(hello) => hello.encode(out),
        ChatLine::DataReply(reply) => reply.encode(out),
    };
    let mut stream = Vec::new();
    let mut longest = 1;
    for line in &m.lines {
        let start = stream.len();
        encode(line, &mut stream);
        let bytes = &stream[start..];
        let Some((b'\n', text)) = bytes.split_last() else {
            panic!("{line:?} encodes to {bytes:?}, which does not end in a line feed");
        };
        assert!(
            !text.contains(&b'\n') && !text.contains(&b'\r'),
            "{line:?} encodes to {bytes:?}, more than one line"
        );
        longest = longest.max(text.len());
    }

    let mut decoder = chat::LineDecoder::with_max_line(longest);
    decoder.feed(&stream);
    let mut decoded = Vec::new();
    for line in &m.lines {
        let text = match decoder.next_line() {
            Ok(Some(text)) => text,
            other => panic!("{line:?}: the line decoder gives {other:?}"),
        };
        let back = match line {
            ChatLine::Client(_) => dialect.decode_client(&text).map(ChatLine::Client),
            ChatLine::Server(_) => dialect.decode_server(&text).map(ChatLine::Server),
            ChatLine::DataHello(_) => Ok(ChatLine::DataHello(
                chat::DataHello::parse(&text).unwrap_or_else(|e| panic!("{line:?}: {e}")),
            )),
            ChatLine::DataReply(_) => Ok(ChatLine::DataReply(
                chat::DataReply::parse(&text)
                    .unwrap_or_else(|| panic!("{line:?}: {text:?} does not parse")),
            )),
        };
        let back = back.unwrap_or_else(|e| panic!("{line:?}: {text:?} does not decode: {e}"));
        assert_eq!(&back, line, "{text:?} decodes to another message");
        if dialect.headers.is_default() {
            super::check_chat_line(&text);
        }
        decoded.push(back);
    }
    assert_eq!(decoder.next_line(), Ok(None), "more lines than messages");
    assert_eq!(decoder.buffered(), 0, "bytes left after the lines");

    let mut again = Vec::new();
    for line in &decoded {
        encode(line, &mut again);
    }
    assert_eq!(again, stream, "re-encoding is not canonical");
}

// ---------------------------------------------------------------------------------------
// packet

/// A stream of packets, or a header alone.
#[derive(Debug, Clone, Arbitrary)]
pub enum PacketMessages {
    /// Packets with their checksums computed in `pairing`, or (`None`) sent with every field
    /// as given ([`Packet::encode_raw`](packet::Packet::encode_raw)).
    Packets {
        pairing: Option<packet::Pairing>,
        packets: Vec<packet::Packet>,
    },
    Header(packet::Header),
}

/// Packets: the stream decodes, in one piece, to the packets (their checksums as computed)
/// in every checksum mode that accepts them (any checksum when sent raw; with a pairing also
/// its mode and `Either`), with nothing left over, and they re-encode to the same bytes.
/// Each packet also decodes alone, and its first 16 bytes are its header. A header: its 16
/// bytes parse back to it.
pub fn packet_roundtrip(m: &PacketMessages) {
    use packet::{ChecksumMode, HEADER_LEN, Header, MAX_PACKET, Packet, PacketDecoder};

    let (pairing, packets) = match m {
        PacketMessages::Header(header) => {
            let bytes = header.to_bytes();
            assert_eq!(Header::parse(&bytes), Some(*header), "{bytes:?}");
            return;
        }
        PacketMessages::Packets { pairing, packets } => (*pairing, packets),
    };
    let encode = |packet: &Packet, out: &mut Vec<u8>| match pairing {
        Some(pairing) => packet.encode(pairing, out),
        None => packet.encode_raw(packet.length_field(), out),
    };
    let expected: Vec<Packet> = match pairing {
        Some(pairing) => packets
            .iter()
            .map(|p| p.clone().with_checksum(pairing))
            .collect(),
        None => packets.clone(),
    };
    let mut stream = Vec::new();
    for packet in packets {
        encode(packet, &mut stream);
    }
    let modes = match pairing {
        Some(pairing) => vec![
            None,
            Some(ChecksumMode::from(pairing)),
            Some(ChecksumMode::Either),
        ],
        None => vec![None],
    };
    for mode in modes {
        let mut decoder = PacketDecoder::with_max_packet(mode, MAX_PACKET);
        decoder.feed(&stream);
        let mut decoded = Vec::new();
        while let Some(packet) = decoder
            .next_packet()
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"))
        {
            decoded.push(packet);
        }
        assert_eq!(decoder.finish(), Ok(()), "{mode:?}: bytes left over");
        assert_eq!(
            decoded, expected,
            "{mode:?}: the stream decodes to other packets"
        );
        let mut again = Vec::new();
        for packet in &decoded {
            encode(packet, &mut again);
        }
        assert_eq!(again, stream, "{mode:?}: re-encoding is not canonical");
    }

    let mut rest = &stream[..];
    for packet in &expected {
        let header = Header::parse(rest).unwrap_or_else(|| panic!("{packet:?}: no header"));
        assert_eq!(
            header,
            Header {
                flag: packet.flag,
                checksum: packet.checksum,
                keyword: packet.keyword,
                sid: packet.sid,
                length: packet.length_field(),
            },
            "{packet:?}: another header"
        );
        let (alone, used) = Packet::decode(rest, pairing.map(ChecksumMode::from), MAX_PACKET)
            .unwrap_or_else(|e| panic!("{packet:?}: {e}"))
            .unwrap_or_else(|| panic!("{packet:?}: incomplete"));
        assert_eq!(&alone, packet, "decoded alone, another packet");
        assert_eq!(used, HEADER_LEN + packet.data.len());
        if let Some(pairing) = pairing {
            assert_eq!(alone.verify(ChecksumMode::from(pairing)), Ok(pairing));
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------------------------------
// mathsvc

/// What a math service client sends: its name, then requests.
#[derive(Debug, Clone, Arbitrary)]
pub struct MathsvcSession {
    #[arbitrary(with = crate::arb::mathsvc_name)]
    pub name: String,
    /// Never a `Name`.
    pub requests: Vec<mathsvc::Message>,
}

/// The canonical encoding ([`Message::encode`](mathsvc::Message::encode)) of the name and
/// the requests decodes, in one piece and then closed, to the name and the requests, and
/// they encode to the same bytes. The decoding passes the checks of the `mathsvc` target
/// (the name first, limits, word counts).
pub fn mathsvc_roundtrip(m: &MathsvcSession) {
    let messages: Vec<mathsvc::Message> = std::iter::once(mathsvc::Message::Name(m.name.clone()))
        .chain(m.requests.iter().cloned())
        .collect();
    let encode = |messages: &[mathsvc::Message]| {
        let mut out = Vec::new();
        for message in messages {
            message.encode(&mut out);
        }
        out
    };
    let bytes = encode(&messages);
    let run = super::run_mathsvc(&[&bytes], 0, &bytes);
    let decoded = run
        .results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|refusal| panic!("{bytes:?}: refused: {refusal}"));
    assert_eq!(decoded, messages, "{bytes:?} decodes to other messages");
    assert!(
        run.pause_ends.is_empty(),
        "{bytes:?}: the close ended a token"
    );
    assert_eq!(encode(&decoded), bytes, "re-encoding is not canonical");
}
