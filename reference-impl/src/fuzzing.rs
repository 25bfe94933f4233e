//! Entry points of the fuzz targets in `fuzz/`, and of the test that replays their saved
//! inputs under a plain `cargo test`. Not part of the crate's API.
//!
//! Each entry point takes arbitrary bytes and checks more than "no panic": what a decoder
//! returns must be well-formed and must survive a round trip through the encoder, errors must
//! point into the stream, and the decoder's memory must stay bounded.
//!
//! The input is a two-byte header and a byte stream. The header lets the fuzzer choose how
//! the stream is cut into reads (the course dialect frames one message per read) and a small
//! message limit (so that over-long messages are reachable without kilobytes of input):
//!
//! ```text
//! byte 0   how the stream is cut into reads:
//!            0      every read is preceded by its length (one byte, 0..=255)
//!            n > 0  reads of n bytes, the last one shorter
//! byte 1   the message limit: 0 = the decoder's default, n > 0 = n bytes
//!          (the math service, whose limit is fixed: bit k % 8 set = a pause after read k)
//! rest     the stream
//!
//! 00 00 0d "CONNECT alice" 20 <32 hash bytes> 0a "GET colour"   course: three reads
//! 07 00 "CONNECT alice\n" <32 hash bytes> "GET colour\n"         reads of 7 bytes
//! 00 05 07 "Client1" 09 "FIBONACCI" 01 "7"       math service: a pause after reads 0 and 2
//! ```
//!
//! Every input runs through both dialects.
//!
//! With the `arbitrary` feature, the structure-aware round trips of the `roundtrip` target
//! (`roundtrip` and one entry point per protocol) take generated messages instead of bytes.

#[cfg(feature = "arbitrary")]
mod roundtrip;
#[cfg(feature = "arbitrary")]
pub use roundtrip::{
    AnyMessage, ChatLine, ChatLines, HeaderRename, KvMessages, MathsvcSession, PacketMessages,
    chat_roundtrip, kv_roundtrip, mathsvc_roundtrip, packet_roundtrip, roundtrip, roundtrip_bytes,
};

use crate::kv::codec::{
    ClientMessage, DecodeError, Dialect, HASH_LEN, MAX_MESSAGE, MAX_REPLY, Reply, ReplyDecoder,
    ServerDecoder, is_valid_key, is_valid_value,
};
use crate::mathsvc::codec::{
    Decoder, FibConvention, MAX_FACTORIAL_N, MAX_FIBONACCI_N, MAX_TEXT_LEN, MAX_TOKEN, Message,
    Refusal, WordCounter, answer, factorial, fibonacci, uuid3,
};
use num_bigint::BigUint;

/// Feeds the stream to a [`ServerDecoder`] of each dialect, draining it after every read.
///
/// Checks that every request decoded is well-formed (ASCII, keys non-empty, no line feed
/// anywhere but in a course `CONNECT` id), that it encodes to bytes that decode back to it in
/// the spec dialect and in the course dialect, that errors point at a byte already fed and
/// never before an earlier error, that each drain ends (every result consumes input), and
/// that a drained decoder holds at most the message limit plus a hash.
pub fn kv_server_decoder(data: &[u8]) {
    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    for dialect in [Dialect::Spec, Dialect::Course] {
        let limit = input.limit.unwrap_or(MAX_MESSAGE);
        let mut decoder = ServerDecoder::with_max_message(dialect, limit);
        let mut stream = Stream::default();
        for read in &input.reads {
            decoder.feed(read);
            stream.fed(read);
            let buffered = decoder.buffered();
            let mut results = 0;
            loop {
                match decoder.next_message() {
                    Ok(None) => break,
                    Ok(Some(message)) => check_request(dialect, &message),
                    Err(e) => stream.error(&e),
                }
                results += 1;
                assert!(
                    results <= 2 * buffered + 2,
                    "{dialect}: the decoder returns results without consuming input"
                );
            }
            assert!(
                decoder.buffered() <= limit + HASH_LEN,
                "{dialect}: a drained decoder holds {} bytes, over the limit {limit} plus a hash",
                decoder.buffered()
            );
        }
    }
}

/// Feeds the stream to a [`ReplyDecoder`] of each dialect, draining it after every read.
///
/// Checks that every reply decoded is well-formed (a `GET` value is ASCII without a line
/// feed), that it encodes to bytes that decode back to it in both dialects, that errors point
/// at a byte already fed and never before an earlier error, that each drain ends, and that a
/// drained decoder holds at most one reply's worth of bytes.
pub fn kv_reply_decoder(data: &[u8]) {
    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    for dialect in [Dialect::Spec, Dialect::Course] {
        let limit = input.limit.unwrap_or(MAX_REPLY);
        let mut decoder = ReplyDecoder::with_max_reply(dialect, limit);
        let mut stream = Stream::default();
        for read in &input.reads {
            decoder.feed(read);
            stream.fed(read);
            let buffered = decoder.buffered();
            let mut results = 0;
            loop {
                match decoder.next_reply() {
                    Ok(None) => break,
                    Ok(Some(reply)) => check_reply(&reply),
                    Err(e) => stream.error(&e),
                }
                results += 1;
                assert!(
                    results <= 2 * buffered + 2,
                    "{dialect}: the decoder returns results without consuming input"
                );
            }
            assert!(
                decoder.buffered() <= limit,
                "{dialect}: a drained decoder holds {} bytes, over the limit {limit}",
                decoder.buffered()
            );
        }
    }
}

/// Every line codec on the same input: the `parser` fuzz target.
pub fn line_parsers(data: &[u8]) {
    kv_server_decoder(data);
    chat_line_decoder(data);
    mathsvc_decoder(data);
    kv_rsa_pem_reader(data);
}

/// Feeds the stream to the KV-RSA variant's [`PemReader`](crate::kv::rsa::PemReader), read
/// by read, then tells it the peer went quiet.
///
/// Checks that the reader holds no more than [`MAX_PEM`](crate::kv::rsa::MAX_PEM) bytes (plus
/// the read that completes a key), that a key is the protocol's size, that the bytes handed
/// back after a key and the reads not yet fed are exactly the rest of the stream, and that
/// however the stream is cut the outcome is the one of the whole stream in one read.
pub fn kv_rsa_pem_reader(data: &[u8]) {
    use crate::kv::rsa::{BLOCK_LEN, PemReader};
    use rsa::traits::PublicKeyParts;

    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    let stream: Vec<u8> = input.reads.concat();
    let outcome = |reads: &[&[u8]]| {
        let mut reader = PemReader::default();
        let mut fed = 0;
        for (i, read) in reads.iter().enumerate() {
            fed += read.len();
            match reader.push(read) {
                Ok(None) => {}
                Ok(Some((key, rest))) => {
                    assert_eq!(key.size(), BLOCK_LEN, "a key of another size was taken");
                    let later: Vec<u8> = reads[i + 1..].concat();
                    let consumed = fed - rest.len();
                    assert_eq!(
                        [rest.as_slice(), &later].concat(),
                        stream[consumed..],
                        "the bytes after the key are not the rest of the stream"
                    );
                    return Some(Ok(consumed));
                }
                Err(e) => return Some(Err(e)),
            }
        }
        match reader.finish() {
            Ok(Some((key, rest))) => {
                assert_eq!(key.size(), BLOCK_LEN);
                Some(Ok(stream.len() - rest.len()))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    };
    assert_eq!(
        outcome(&input.reads),
        outcome(&[&stream]),
        "the reads changed the outcome"
    );
}

/// Feeds the stream to a chat [`LineDecoder`](crate::chat::codec::LineDecoder) (byte 1 is
/// the line limit, 0 for the default 1024), draining it after every read, and decodes every
/// line as a client and as a server message, in both check orders.
///
/// Checks that every line is within the limit and holds no line end, that errors point at a
/// byte already fed and never before an earlier error, that a drained decoder holds at most
/// the limit, that a line decodes in one check order if and only if it decodes in the other
/// (to the same message), and that every message decoded encodes to a single line that
/// decodes back to it. Data-channel hellos get the same round trip.
pub fn chat_line_decoder(data: &[u8]) {
    use crate::chat::codec::{DataHello, LineDecoder, MAX_LINE};

    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    let limit = input.limit.unwrap_or(MAX_LINE);
    let mut decoder = LineDecoder::with_max_line(limit);
    let mut fed = 0u64;
    let mut last_error = 0u64;
    for read in &input.reads {
        decoder.feed(read);
        fed += read.len() as u64;
        let buffered = decoder.buffered();
        let mut results = 0;
        loop {
            match decoder.next_line() {
                Ok(None) => break,
                Ok(Some(line)) => {
                    assert!(line.len() <= limit, "a line of {} bytes", line.len());
                    assert!(
                        !line.contains(&b'\n') && !line.contains(&b'\r'),
                        "a line end inside {line:?}"
                    );
                    check_chat_line(&line);
                    if let Ok(hello) = DataHello::parse(&line) {
                        let mut out = Vec::new();
                        hello.encode(&mut out);
                        assert_eq!(out.pop(), Some(b'\n'));
                        assert_eq!(DataHello::parse(&out), Ok(hello));
                    }
                }
                Err(e) => {
                    let offset = e.offset();
                    assert!(offset < fed, "{e}: past the {fed} bytes fed");
                    assert!(
                        offset >= last_error,
                        "{e}: before the error at {last_error}"
                    );
                    last_error = offset;
                }
            }
            results += 1;
            assert!(
                results <= 2 * buffered + 2,
                "the decoder returns results without consuming input"
            );
        }
        assert!(
            decoder.buffered() <= limit,
            "a drained decoder holds {} bytes, over the limit {limit}",
            decoder.buffered()
        );
    }
}

/// One line through both directions and both check orders, and every message decoded
/// through an encode-decode round trip.
fn check_chat_line(line: &[u8]) {
    use crate::chat::codec::{CheckOrder, Dialect, HeaderMap, LineDecoder};

    let dialects = [CheckOrder::HeaderFirst, CheckOrder::JsonFirst].map(|check_order| Dialect {
        headers: HeaderMap::default(),
        check_order,
    });
    // The line a message encodes to: exactly one line, ended by its only line end.
    let one_line = |mut bytes: Vec<u8>| {
        assert_eq!(
            bytes.pop(),
            Some(b'\n'),
            "{bytes:?} does not end in a line feed"
        );
        let mut decoder = LineDecoder::with_max_line(bytes.len().max(1));
        decoder.feed(&bytes);
        decoder.feed(b"\n");
        let decoded = decoder.next_line();
        assert_eq!(
            decoded,
            Ok(Some(bytes.clone())),
            "{bytes:?} is not one line"
        );
        bytes
    };
    let client = dialects.clone().map(|d| d.decode_client(line));
    assert_eq!(
        client[0].is_ok(),
        client[1].is_ok(),
        "{line:?}: the check order changes more than the error"
    );
    if let (Ok(a), Ok(b)) = (&client[0], &client[1]) {
        assert_eq!(a, b, "{line:?}: the check order changes the message");
    }
    let server = dialects.clone().map(|d| d.decode_server(line));
    assert_eq!(
        server[0].is_ok(),
        server[1].is_ok(),
        "{line:?}: the check order changes more than the error"
    );
    if let (Ok(a), Ok(b)) = (&server[0], &server[1]) {
        assert_eq!(a, b, "{line:?}: the check order changes the message");
    }
    for dialect in &dialects {
        if let Ok(message) = dialect.decode_client(line) {
            let mut out = Vec::new();
            dialect.encode_client(&message, &mut out);
            let again = one_line(out);
            assert_eq!(
                dialect.decode_client(&again).as_ref(),
                Ok(&message),
                "{line:?} -> {message:?} does not survive a round trip"
            );
        }
        if let Ok(message) = dialect.decode_server(line) {
            let mut out = Vec::new();
            dialect.encode_server(&message, &mut out);
            let again = one_line(out);
            assert_eq!(
                dialect.decode_server(&again).as_ref(),
                Ok(&message),
                "{line:?} -> {message:?} does not survive a round trip"
            );
        }
    }
}

/// Feeds the stream to a packet [`PacketDecoder`](crate::packet::codec::PacketDecoder) in
/// every checksum mode (none, big, little, either), draining it after every read. Byte 1 is
/// the packet limit: 0 for the protocol's 10,000 bytes, `n` for `16 + n`.
///
/// Checks that every packet decoded re-encodes to exactly the bytes it was decoded from, as
/// given (`encode_raw`) and, when a checksum mode passed it, with its length and checksum
/// computed in the pairing that matched; that every error is typed and points at the start
/// of the packet it is about (a bad checksum names the field found and the checksum
/// expected, a bad length the field, below 16 or over the limit), that a bad length is fatal
/// and sticky and frees the buffer; that all modes cut the stream at the same places; that
/// each drain ends; that a drained decoder holds less than the limit; and that `finish`
/// reports exactly the bytes left over.
pub fn packet_decoder(data: &[u8]) {
    use crate::packet::codec::{
        ChecksumMode, DecodeError, HEADER_LEN, Header, MAX_PACKET, Packet, PacketDecoder,
    };

    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    let limit = input.limit.map_or(MAX_PACKET, |n| HEADER_LEN + n);
    let stream = input.reads.concat();
    let mut framings = Vec::new();
    for mode in [
        None,
        Some(ChecksumMode::Big),
        Some(ChecksumMode::Little),
        Some(ChecksumMode::Either),
    ] {
        let mut decoder = PacketDecoder::with_max_packet(mode, limit);
        // Stream offsets where each packet (or error) starts.
        let mut frames = Vec::new();
        let mut consumed = 0usize;
        let mut fed = 0usize;
        let mut fatal = None;
        for read in &input.reads {
            decoder.feed(read);
            fed += read.len();
            if let Some(e) = fatal {
                assert_eq!(decoder.buffered(), 0, "{mode:?}: bytes kept after {e}");
                assert_eq!(
                    decoder.next_packet(),
                    Err(e),
                    "{mode:?}: a fatal error is sticky"
                );
                continue;
            }
            let buffered = decoder.buffered();
            let mut results = 0;
            loop {
                match decoder.next_packet() {
                    Ok(None) => break,
                    Ok(Some(packet)) => {
                        frames.push(consumed);
                        let end = consumed + packet.len();
                        assert!(end <= fed, "{mode:?}: {packet:?} runs past the bytes fed");
                        assert!(packet.len() <= limit, "{mode:?}: {packet:?} over the limit");
                        let bytes = &stream[consumed..end];
                        let mut raw = Vec::new();
                        packet.encode_raw(packet.length_field(), &mut raw);
                        assert_eq!(raw, bytes, "{mode:?}: {packet:?} re-encodes differently");
                        if let Some(mode) = mode {
                            let pairing = packet.verify(mode).unwrap_or_else(|e| {
                                panic!("{mode:?}: {packet:?} passed with a bad checksum: {e}")
                            });
                            assert_eq!(
                                packet.to_bytes(pairing),
                                bytes,
                                "{mode:?}: {packet:?} re-encodes differently"
                            );
                        }
                        consumed = end;
                    }
                    Err(e) => {
                        frames.push(consumed);
                        assert_eq!(
                            e.offset(),
                            consumed as u64,
                            "{mode:?}: {e} points elsewhere"
                        );
                        assert!(consumed < fed, "{mode:?}: {e} points past the bytes fed");
                        let header = Header::parse(&stream[consumed..fed])
                            .unwrap_or_else(|| panic!("{mode:?}: {e} before a whole header"));
                        match e {
                            DecodeError::BadChecksum { mismatch, .. } => {
                                assert_eq!(Some(mismatch.mode), mode, "{e}: in another mode");
                                assert_eq!(mismatch.found, header.checksum, "{e}: not the field");
                                let length = usize::try_from(header.length).unwrap_or(0);
                                let end = consumed + length;
                                assert!(end <= fed, "{e}: the packet is not all in");
                                let (packet, used) =
                                    Packet::decode(&stream[consumed..end], None, limit)
                                        .unwrap_or_else(|e| panic!("{e}: undecodable unverified"))
                                        .unwrap_or_else(|| panic!("{e}: incomplete unverified"));
                                assert_eq!(used, length);
                                assert_eq!(packet.verify(mismatch.mode), Err(mismatch));
                                consumed = end;
                            }
                            DecodeError::LengthTooSmall { length, .. } => {
                                assert_eq!(length, header.length, "{e}: not the field");
                                assert!(usize::try_from(length).map_or(true, |n| n < HEADER_LEN));
                            }
                            DecodeError::LengthTooLarge { length, max, .. } => {
                                assert_eq!(length, header.length, "{e}: not the field");
                                assert_eq!(max, limit, "{e}: not the limit");
                                assert!(usize::try_from(length).is_ok_and(|n| n > limit));
                            }
                            DecodeError::Truncated { .. } => {
                                panic!("{mode:?}: next_packet reports {e}")
                            }
                        }
                        if e.is_fatal() {
                            assert_eq!(decoder.buffered(), 0, "{mode:?}: bytes kept after {e}");
                            fatal = Some(e);
                            break;
                        }
                    }
                }
                results += 1;
                assert!(
                    results <= 2 * buffered + 2,
                    "{mode:?}: the decoder returns results without consuming input"
                );
            }
            assert!(
                decoder.buffered() < limit,
                "{mode:?}: a drained decoder holds {} bytes, the limit is {limit}",
                decoder.buffered()
            );
        }
        match decoder.finish() {
            Ok(()) => assert_eq!(consumed, fed, "{mode:?}: bytes lost at the end"),
            Err(DecodeError::Truncated { offset, got, .. }) => {
                assert_eq!(offset, consumed as u64, "{mode:?}: truncated elsewhere");
                assert_eq!(got, fed - consumed, "{mode:?}: not what is left");
            }
            Err(e) => assert_eq!(Some(e), fatal, "{mode:?}: finish reports {e}"),
        }
        framings.push(frames);
    }
    assert!(
        framings.windows(2).all(|w| w[0] == w[1]),
        "the checksum mode changes where packets start: {framings:?}"
    );
}

/// Feeds the stream to the math service's
/// [`Decoder`](crate::mathsvc::codec::Decoder) as its server does: draining it after every
/// read, then once more as "quiet" (`next(true)`) when the peer pauses, and a last time when
/// it closes. Byte 1 says where the peer pauses: after read `k` when bit `k % 8` is set (0:
/// never, only the close). The decoder's token limit is fixed; there is no message limit.
///
/// Checks that line ends frame alike however the stream is cut: the reads without pauses
/// give the very results (and leave the very bytes pending) that the stream in one piece
/// does; that a pause which ends a pending token does exactly what a line end at that point
/// would (the reads with the pauses give the results of the stream with a `\n` there, in one
/// piece), and that a pause with no token pending does nothing; that every result consumes
/// input; that the name comes first and only first, and every other message after it; that
/// every `n` and text length accepted is within the codec's `MAX_*` limits and every name
/// within `MAX_TOKEN`, blank-trimmed and without a line end; that a word count counted the
/// text's bytes just consumed exactly as one count of them does; that refusals name the
/// codec's limits and, when they close, end the decoding for good; that a drained decoder
/// holds at most `MAX_TOKEN` bytes, and none after a pause. Every answer is computed and
/// checked (see `MathAnswers`). The messages decoded from the stream in one piece re-encode
/// canonically (see `check_mathsvc_reencoding`).
pub fn mathsvc_decoder(data: &[u8]) {
    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    let pauses = input
        .limit
        .map_or(0, |n| u8::try_from(n).unwrap_or(u8::MAX));
    let stream = input.reads.concat();
    let mut answers = MathAnswers::default();
    let whole = run_mathsvc(&[&stream], 0, &stream);
    answers.check(&whole.results);
    check_mathsvc_reencoding(&whole.results);
    let cut = run_mathsvc(&input.reads, 0, &stream);
    assert_eq!(
        (&cut.results, cut.held, &cut.pause_ends),
        (&whole.results, whole.held, &whole.pause_ends),
        "line ends frame differently in reads than in one piece (results, bytes pending, \
         tokens the close ends)"
    );
    if pauses == 0 {
        return;
    }
    let paused = run_mathsvc(&input.reads, pauses, &stream);
    answers.check(&paused.results);
    let mut lined = stream.clone();
    for &at in paused.pause_ends.iter().rev() {
        lined.insert(at, b'\n');
    }
    let model = run_mathsvc(&[&lined], 0, &lined);
    assert_eq!(
        paused.results, model.results,
        "pauses at {:?} do not do what line ends there do",
        paused.pause_ends
    );
}

/// The messages of `results` (the refusals left out) in their canonical encoding
/// ([`Message::encode`]) decode to themselves, and encode to the same bytes again.
///
/// Skipped when the name is over [`MAX_TOKEN`] bytes: the decoder replaces a token's bytes
/// that are not UTF-8 with U+FFFD (three bytes each), so a name of up to `MAX_TOKEN` bytes
/// received can be longer than any token once decoded, and then has no encoding.
fn check_mathsvc_reencoding(results: &[Result<Message, Refusal>]) {
    let messages: Vec<Message> = results.iter().filter_map(|r| r.clone().ok()).collect();
    if messages
        .iter()
        .any(|m| matches!(m, Message::Name(name) if name.len() > MAX_TOKEN))
    {
        return;
    }
    let encode = |messages: &[Message]| {
        let mut out = Vec::new();
        for message in messages {
            message.encode(&mut out);
        }
        out
    };
    let bytes = encode(&messages);
    let again = run_mathsvc(&[&bytes], 0, &bytes);
    let again: Vec<Message> = again
        .results
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|refusal| panic!("{messages:?} re-encoded to {bytes:?}: {refusal}"));
    assert_eq!(
        again, messages,
        "{messages:?} re-encoded to {bytes:?}, which decodes to other messages"
    );
    assert_eq!(
        encode(&again),
        bytes,
        "{messages:?}: re-encoding is not canonical"
    );
}

/// What a math service decoder gave for one way of feeding the stream.
#[derive(Debug, Default)]
struct MathRun {
    /// Every result in order, those the close gave included.
    results: Vec<Result<Message, Refusal>>,
    /// The bytes pending when the stream ended, before the close.
    held: usize,
    /// Stream offsets where a pause (or the close) ended a pending token.
    pause_ends: Vec<usize>,
    /// Stream bytes consumed so far, by the decoder's account.
    consumed: usize,
    /// A refusal that closes the connection was given.
    closed: bool,
}

/// Feeds `reads` (which make up `stream`) to a new decoder, pausing after read `k` when bit
/// `k % 8` of `pauses` is set, and closes.
fn run_mathsvc(reads: &[&[u8]], pauses: u8, stream: &[u8]) -> MathRun {
    let mut decoder = Decoder::default();
    let mut run = MathRun::default();
    let mut fed = 0;
    for (k, read) in reads.iter().enumerate() {
        decoder.feed(read);
        fed += read.len();
        run.drain(&mut decoder, false, &stream[..fed]);
        assert!(
            decoder.buffered() <= MAX_TOKEN,
            "a drained decoder holds {} bytes, over {MAX_TOKEN}",
            decoder.buffered()
        );
        if pauses >> (k % 8) & 1 == 1 {
            run.pause(&mut decoder, &stream[..fed]);
        }
    }
    assert_eq!(fed, stream.len(), "the reads are not the stream");
    run.held = decoder.buffered();
    // The server serves a token pending at the close as after a pause.
    run.pause(&mut decoder, stream);
    run
}

impl MathRun {
    /// Takes every result `next(quiet)` gives; `fed` is the stream fed so far.
    fn drain(&mut self, decoder: &mut Decoder, quiet: bool, fed: &[u8]) {
        while let Some(result) = decoder.next(quiet) {
            let closing = matches!(result, Err(refusal) if refusal.closes());
            self.record(result, fed, decoder.buffered());
            if closing {
                assert_eq!(decoder.buffered(), 0, "bytes kept after {:?}", self.results);
                assert!(
                    !decoder.has_partial_token(),
                    "a token pending after {:?}",
                    self.results
                );
            }
        }
    }

    /// Checks a result the decoder gave when it held `buffered` bytes of `fed`, and keeps it.
    fn record(&mut self, result: Result<Message, Refusal>, fed: &[u8], buffered: usize) {
        assert!(!self.closed, "{result:?} after a refusal that closes");
        let consumed = fed.len() - buffered;
        assert!(
            consumed > self.consumed,
            "{result:?} consumes no input (at byte {consumed})"
        );
        match &result {
            Ok(Message::Name(name)) => {
                assert!(self.results.is_empty(), "a name after {:?}", self.results);
                assert!(!name.is_empty(), "an empty name");
                assert_eq!(name.trim_ascii(), name, "blanks around the name");
                assert!(!name.contains('\n'), "a line end in the name {name:?}");
                assert!(
                    name.chars().count() <= MAX_TOKEN,
                    "a name of {} characters",
                    name.chars().count()
                );
            }
            Ok(message) => {
                assert!(
                    matches!(self.results.first(), Some(Ok(Message::Name(_)))),
                    "{message:?} before the name: {:?}",
                    self.results
                );
                match message {
                    Message::Fibonacci(n) => assert!(*n <= MAX_FIBONACCI_N, "{message:?}"),
                    Message::Factorial(n) => assert!(*n <= MAX_FACTORIAL_N, "{message:?}"),
                    Message::WordCount(counter) => {
                        let len = usize::try_from(counter.bytes()).unwrap_or(usize::MAX);
                        assert!(
                            counter.bytes() <= MAX_TEXT_LEN,
                            "{message:?} over the limit"
                        );
                        assert!(len <= consumed, "{message:?}: more text than consumed");
                        let mut fresh = WordCounter::default();
                        fresh.feed(&fed[consumed - len..consumed]);
                        assert_eq!(
                            *counter, fresh,
                            "the text before byte {consumed} counts differently at once"
                        );
                    }
                    Message::Name(_) | Message::Complete => {}
                }
            }
            Err(refusal) => {
                assert!(refusal.to_string().starts_with("ERROR "), "{refusal:?}");
                match *refusal {
                    Refusal::NumberTooLarge { max } => assert!(
                        max == MAX_FIBONACCI_N || max == MAX_FACTORIAL_N,
                        "{refusal}: not a limit"
                    ),
                    Refusal::LengthTooLarge { max } => {
                        assert_eq!(max, MAX_TEXT_LEN, "{refusal}: not the limit");
                    }
                    Refusal::UnknownRequest
                    | Refusal::InvalidNumber
                    | Refusal::InvalidLength
                    | Refusal::TokenTooLong => {}
                }
                self.closed = refusal.closes();
            }
        }
        self.consumed = consumed;
        self.results.push(result);
    }

    /// The peer pauses (or closes) after `fed`.
    fn pause(&mut self, decoder: &mut Decoder, fed: &[u8]) {
        let pending = decoder.has_partial_token();
        let before = self.results.len();
        self.drain(decoder, true, fed);
        if pending {
            self.pause_ends.push(fed.len());
        } else {
            assert_eq!(
                self.results[before..],
                [],
                "a pause with no token pending decodes"
            );
        }
        assert_eq!(decoder.buffered(), 0, "bytes kept after a pause");
        assert!(
            !decoder.has_partial_token(),
            "a token pending after a pause"
        );
    }
}

/// The answers to decoded requests, as the server computes them, checked. Every word count,
/// and every `FIBONACCI` and `FACTORIAL` up to [`MathAnswers::SMALL_N`], is answered; of the
/// larger ones (up to tens of milliseconds each under a sanitizer, the same code for every
/// `n`) only the first [`MathAnswers::LARGE`] of an input, to keep the fuzzer fast.
#[derive(Debug)]
struct MathAnswers {
    uuid: uuid::Uuid,
    large_left: usize,
}

impl Default for MathAnswers {
    fn default() -> Self {
        Self {
            uuid: uuid3("127.0.0.1:37808"),
            large_left: Self::LARGE,
        }
    }
}

impl MathAnswers {
    const SMALL_N: u64 = 1_000;
    const LARGE: usize = 1;

    fn check(&mut self, results: &[Result<Message, Refusal>]) {
        for result in results {
            match *result {
                Ok(Message::Fibonacci(n)) if self.afford(n) => {
                    let value = fibonacci(n, FibConvention::ZeroBased);
                    // The slide counts from one: its term n + 1 is the zero-based term n.
                    assert_eq!(
                        fibonacci(n + 1, FibConvention::Slide),
                        value,
                        "the conventions disagree on fib({n})"
                    );
                    if n <= Self::SMALL_N {
                        assert_eq!(
                            fibonacci(n + 2, FibConvention::ZeroBased),
                            fibonacci(n + 1, FibConvention::ZeroBased) + &value,
                            "fib({n} + 2) is not the sum of the two before"
                        );
                    }
                    self.check_answer(&value);
                }
                Ok(Message::Factorial(n)) if self.afford(n) => {
                    let value = factorial(n);
                    if n > 0 {
                        assert_eq!(&value % n, BigUint::ZERO, "{n}! is not a multiple of {n}");
                    }
                    if (1..=Self::SMALL_N).contains(&n) {
                        assert_eq!(factorial(n - 1) * n, value, "{n}! is not n (n - 1)!");
                    }
                    self.check_answer(&value);
                }
                Ok(Message::WordCount(counter)) => {
                    let (words, bytes) = (counter.words(), counter.bytes());
                    assert!(
                        words <= bytes.div_ceil(2) && counter.spaces() <= bytes,
                        "{counter:?}: more words or spaces than the bytes allow"
                    );
                    self.check_answer(&words);
                }
                _ => {}
            }
        }
    }

    /// Whether `n` is small or a large computation is left in the budget.
    fn afford(&mut self, n: u64) -> bool {
        if n <= Self::SMALL_N {
            return true;
        }
        let left = self.large_left > 0;
        self.large_left = self.large_left.saturating_sub(1);
        left
    }

    /// `<value>_<uuid>`: decimal digits without a leading zero, then this client's UUID.
    fn check_answer(&self, value: &dyn std::fmt::Display) {
        let text = answer(value, &self.uuid);
        let (digits, uuid) = text
            .rsplit_once('_')
            .unwrap_or_else(|| panic!("{text}: no underscore"));
        assert_eq!(uuid, self.uuid.to_string(), "{text}: not the UUID");
        assert!(
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0')),
            "{text}: not a decimal number"
        );
    }
}

/// The header and the stream, cut into reads.
struct FuzzInput<'a> {
    limit: Option<usize>,
    reads: Vec<&'a [u8]>,
}

impl<'a> FuzzInput<'a> {
    /// `None` for an input shorter than its header.
    fn parse(data: &'a [u8]) -> Option<Self> {
        let [chunking, limit, rest @ ..] = data else {
            return None;
        };
        let limit = (*limit > 0).then_some(usize::from(*limit));
        let reads = match *chunking {
            0 => {
                let mut reads = Vec::new();
                let mut rest = rest;
                while let [len, tail @ ..] = rest {
                    let (read, tail) = tail.split_at(usize::from(*len).min(tail.len()));
                    reads.push(read);
                    rest = tail;
                }
                reads
            }
            n => rest.chunks(usize::from(n)).collect(),
        };
        Some(Self { limit, reads })
    }
}

/// How far the stream has been fed, and where the last error pointed.
#[derive(Default)]
struct Stream {
    fed: u64,
    last_error: u64,
}

impl Stream {
    fn fed(&mut self, read: &[u8]) {
        self.fed += read.len() as u64;
    }

    fn error(&mut self, e: &DecodeError) {
        let offset = e.offset();
        assert!(
            offset < self.fed,
            "{e}: the error points past the {} bytes fed",
            self.fed
        );
        assert!(
            offset >= self.last_error,
            "{e}: the error points before the previous one, at byte {}",
            self.last_error
        );
        self.last_error = offset;
    }
}

fn check_request(dialect: Dialect, message: &ClientMessage) {
    match message {
        ClientMessage::Connect { id, .. } => {
            assert!(id.is_ascii(), "{dialect}: non-ASCII id in {message:?}");
            // The course dialect takes everything after "CONNECT " as the id, line feeds too.
            assert!(
                dialect == Dialect::Course || !id.contains('\n'),
                "{dialect}: line feed in the id of {message:?}"
            );
        }
        ClientMessage::Put { key, value } => {
            assert!(is_valid_key(key), "{dialect}: invalid key in {message:?}");
            assert!(
                is_valid_value(value),
                "{dialect}: invalid value in {message:?}"
            );
        }
        ClientMessage::Get { key } | ClientMessage::Delete { key } => {
            assert!(is_valid_key(key), "{dialect}: invalid key in {message:?}");
        }
        ClientMessage::Disconnect => {}
    }
    let id_has_line_feed =
        matches!(message, ClientMessage::Connect { id, .. } if id.contains('\n'));
    // An id with a line feed has no spec encoding: the line would end inside it.
    if !id_has_line_feed {
        let mut bytes = Vec::new();
        message.encode(Dialect::Spec, &mut bytes);
        assert_eq!(
            decode_requests(Dialect::Spec, &[bytes]),
            std::slice::from_ref(message),
            "{dialect}: {message:?} does not survive a round trip in the spec dialect"
        );
    }
    assert_eq!(
        decode_requests(Dialect::Course, &message.writes(Dialect::Course)),
        std::slice::from_ref(message),
        "{dialect}: {message:?} does not survive a round trip in the course dialect"
    );
}

fn check_reply(reply: &Reply) {
    if let Reply::GetOk { value, .. } = reply {
        assert!(is_valid_value(value), "invalid value in {reply:?}");
    }
    for dialect in [Dialect::Spec, Dialect::Course] {
        let mut bytes = Vec::new();
        reply.encode(dialect, &mut bytes);
        assert_eq!(
            decode_replies(dialect, std::slice::from_ref(&bytes)),
            std::slice::from_ref(reply),
            "{reply:?} does not survive a round trip in the {dialect} dialect"
        );
    }
}

/// Decodes `writes`, one read each, with a limit that fits them: a message decoded under a
/// small limit may re-encode a little longer (the course dialect joins `PUT` and its value,
/// the spec dialect adds line ends). Any error fails the round trip.
fn decode_requests(dialect: Dialect, writes: &[Vec<u8>]) -> Vec<ClientMessage> {
    let limit = writes.iter().map(Vec::len).sum::<usize>().max(1);
    let mut decoder = ServerDecoder::with_max_message(dialect, limit);
    let mut out = Vec::new();
    for write in writes {
        decoder.feed(write);
        while let Some(message) = decoder
            .next_message()
            .unwrap_or_else(|e| panic!("{dialect}: re-encoded {write:?} does not decode: {e}"))
        {
            out.push(message);
        }
    }
    assert_eq!(
        decoder.buffered(),
        0,
        "{dialect}: bytes left after {writes:?}"
    );
    assert_eq!(
        decoder.pending(),
        None,
        "{dialect}: {writes:?} is incomplete"
    );
    out
}

/// Decodes `writes` of replies, one read each; see [`decode_requests`].
fn decode_replies(dialect: Dialect, writes: &[Vec<u8>]) -> Vec<Reply> {
    let limit = writes.iter().map(Vec::len).sum::<usize>().max(1);
    let mut decoder = ReplyDecoder::with_max_reply(dialect, limit);
    let mut out = Vec::new();
    for write in writes {
        decoder.feed(write);
        while let Some(reply) = decoder
            .next_reply()
            .unwrap_or_else(|e| panic!("{dialect}: re-encoded {write:?} does not decode: {e}"))
        {
            out.push(reply);
        }
    }
    assert_eq!(
        decoder.buffered(),
        0,
        "{dialect}: bytes left after {writes:?}"
    );
    assert!(
        !decoder.awaiting_crc(),
        "{dialect}: {writes:?} is incomplete"
    );
    out
}

#[cfg(test)]
mod tests {
    //! Every saved input of a fuzz target, replayed on stable Rust: the seed corpus under
    //! `fuzz/corpus/<target>/` and the inputs that once failed under `fuzz/regressions/<target>/`.

    use std::path::{Path, PathBuf};

    use super::*;

    /// The files saved for `target`, hidden ones (libFuzzer's scratch files) left out.
    fn saved_inputs(target: &str) -> Vec<PathBuf> {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a readable directory entry").path();
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if path.is_file() && !hidden {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    fn replay(target: &str, entry_point: fn(&[u8])) {
        let files = saved_inputs(target);
        assert!(
            !files.is_empty(),
            "no saved inputs under fuzz/corpus/{target}/ or fuzz/regressions/{target}/"
        );
        for path in files {
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            if std::panic::catch_unwind(|| entry_point(&data)).is_err() {
                panic!("{target} fails on {}", path.display());
            }
        }
    }

    #[test]
    fn parser_corpus_and_regressions() {
        replay("parser", line_parsers);
    }

    #[test]
    fn kv_reply_corpus_and_regressions() {
        replay("kv_reply", kv_reply_decoder);
    }

    #[test]
    fn packet_corpus_and_regressions() {
        replay("packet", packet_decoder);
    }

    #[test]
    fn mathsvc_corpus_and_regressions() {
        replay("mathsvc", mathsvc_decoder);
    }

    #[cfg(feature = "arbitrary")]
    #[test]
    fn roundtrip_corpus_and_regressions() {
        replay("roundtrip", roundtrip_bytes);
    }

    #[test]
    fn a_mathsvc_session_passes_in_any_cutting_and_pausing() {
        let session = concat!(
            "Client1\r\nFIBONACCI\n7\nfactorial\r\n  20 \nFILE\n11\nhello\nworld\n",
            "WORD_COUNT\n0\nHELLO\nFIBONACCI\nseven\nFACTORIAL\n10001\n\n  \n",
            "FILE\nabc\nFIBONACCI\n99999999999999999999999\nCOMPLETE\nFIBONACCI\n1",
        );
        for chunking in [1, 4, 7, 255] {
            for pauses in [0, 0x01, 0x55, 0xff] {
                let mut data = vec![chunking, pauses];
                data.extend_from_slice(session.as_bytes());
                mathsvc_decoder(&data);
            }
        }
        // A pause ends "FIBONACCI" and "7", not the text; the close ends "COMPLETE".
        mathsvc_decoder(
            b"\x00\x0f\x07Client1\x09FIBONACCI\x017\x04FILE\x01\x33\x03a b\x08COMPLETE",
        );
        // Closing refusals: a length over the limit, a token over 1,024 bytes.
        mathsvc_decoder(b"\xff\x00c\nFILE\n16777217\nmore\n");
        let mut long = b"\x07\x02c\n".to_vec();
        long.extend_from_slice(&[b'x'; MAX_TOKEN + 1]);
        mathsvc_decoder(&long);
    }

    proptest::proptest! {
        #[test]
        fn mathsvc_decoder_on_any_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            mathsvc_decoder(&data);
        }

        #[test]
        fn mathsvc_decoder_on_requests(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "FIBONACCI", "factorial", "FILE", "WORD_COUNT", "COMPLETE", "0", "3", "12",
                    "100000", "10001", "x y", "\n", "\r\n", " ", "\n\n",
                ]),
                0..40,
            ),
            chunking in proptest::prelude::any::<u8>(),
            pauses in proptest::prelude::any::<u8>(),
        ) {
            let mut data = vec![chunking, pauses];
            data.extend_from_slice(b"Client1\n");
            for part in parts {
                data.extend_from_slice(part.as_bytes());
            }
            mathsvc_decoder(&data);
        }
    }

    #[test]
    fn a_packet_session_passes_in_any_cutting() {
        use crate::packet::codec::{Packet, Pairing};

        let mut session =
            Packet::new(1, *b"sbmt", 20_200_000, Vec::new()).to_bytes(Pairing::BigEndian);
        Packet::new(0, *b"abcd", 20_200_000, b"odd".to_vec())
            .encode(Pairing::LittleEndian, &mut session);
        let mut bad = Packet::new(1, *b"abcd", 20_200_000, b"even".to_vec());
        bad.checksum = 0x1212;
        bad.encode_raw(bad.length_field(), &mut session);
        Packet::new(1, *b"GOOD", 50, b"DECRYPTED DATA MATCH".to_vec())
            .encode(Pairing::BigEndian, &mut session);
        let mut over = session.clone();
        over.extend_from_slice(&[
            0, 1, 0, 0, b'a', b'b', b'c', b'd', 0, 0, 0, 1, 0, 0, 0x27, 0x11,
        ]);
        for chunking in [1, 7, 16, 255] {
            for limit in [0, 8, 200] {
                for stream in [&session, &over] {
                    let mut data = vec![chunking, limit];
                    data.extend_from_slice(stream);
                    packet_decoder(&data);
                }
            }
        }
        packet_decoder(b"\x00\x00\x05\x00\x01\x00\x00a\x0bbcd\x00\x00\x00\x01\x00\x00\x00\x0f");
    }

    proptest::proptest! {
        #[test]
        fn packet_decoder_on_any_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            packet_decoder(&data);
        }
    }

    #[test]
    fn a_chat_session_passes_in_any_cutting() {
        let session = concat!(
            "LOGIN {\"username\":\"alice\"}\r\nBROADCAST_REQ {\"message\":\"h\\u00e9\\n\"}\r",
            "PONG\nMSG This is an invalid message\nFOO {}\nLOGIN {\"}\n",
            "GUESS_NUMBER_REQ {\"number\":\"42\"}\nGUESS_NUMBER_REQ {\"number\":[1.5]}\n",
            "LOGIN_RESP {\"status\":\"ERROR\",\"code\":\"5001\"}\nDSCN\nUPLOAD 1234\n",
            "GAME_RESULTS {\"status\":\"OK\",\"results\":[{\"username\":\"a\",\"time_ms\":5}]}\n",
        );
        for chunking in [1, 7, 255] {
            for limit in [0, 16] {
                let mut data = vec![chunking, limit];
                data.extend_from_slice(session.as_bytes());
                chat_line_decoder(&data);
            }
        }
        chat_line_decoder(b"\x00\x00\x05PING\r\x01\n\x03BYE");
    }

    mod chat_props {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::chat_line_decoder;
        use crate::chat::codec::Header;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e30f64..1e30).prop_map(Value::from),
                "[0-9]{0,22}".prop_map(Value::String),
                any::<String>().prop_map(Value::String),
                prop_oneof![Just("OK"), Just("ERROR"), Just("Ok"), Just("REJECTED")]
                    .prop_map(|s| Value::String(s.to_owned())),
            ];
            let key = prop_oneof![
                Just("username"),
                Just("message"),
                Just("receiver"),
                Just("sender"),
                Just("status"),
                Just("code"),
                Just("number"),
                Just("size"),
                Just("checksum"),
                Just("transferId"),
                Just("users"),
                Just("results"),
                Just("time_ms"),
                Just("reason"),
                Just("msg"),
                Just("result"),
                Just("publicKey"),
                Just("sessionKey"),
                Just("filename"),
            ];
            leaf.prop_recursive(3, 16, 4, move |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::vec((key.clone(), inner), 0..6).prop_map(|fields| {
                        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
                ]
            })
        }

        fn header() -> impl Strategy<Value = &'static str> {
            proptest::sample::select(
                Header::ALL
                    .iter()
                    .map(|h| h.name())
                    .chain(["FOO", "", "LOGIN REQ"])
                    .collect::<Vec<_>>(),
            )
        }

        fn body() -> impl Strategy<Value = String> {
            prop_oneof![
                json_value().prop_map(|v| format!(" {v}")),
                json_value().prop_map(|v| format!(" {v:#}")),
                Just(String::new()),
                "[ -~]{0,12}",
            ]
        }

        proptest! {
            // Lines built from the protocol's headers and field names, with any JSON or junk
            // as the body, in any cutting: what the fuzz target checks, on stable Rust.
            #[test]
            fn chat_lines_of_headers_and_json(
                lines in proptest::collection::vec(
                    (header(), body(), prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]),
                    1..8,
                ),
                chunking in 1u8..40,
                limit in prop_oneof![Just(0u8), 8u8..255],
            ) {
                let mut data = vec![chunking, limit];
                for (header, body, end) in &lines {
                    data.extend_from_slice(header.as_bytes());
                    data.extend_from_slice(body.replace(['\n', '\r'], " ").as_bytes());
                    data.extend_from_slice(end.as_bytes());
                }
                chat_line_decoder(&data);
            }

            #[test]
            fn chat_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
                chat_line_decoder(&data);
            }
        }
    }

    #[test]
    fn header_cuts_the_stream_into_reads() {
        let input = FuzzInput::parse(b"\x00\x05\x02ab\x00\x09xy").expect("a header");
        assert_eq!(input.limit, Some(5));
        // The last length runs past the end: the read is what is left.
        assert_eq!(input.reads, [&b"ab"[..], b"", b"xy"]);
        let input = FuzzInput::parse(b"\x03\x00abcdefg").expect("a header");
        assert_eq!(input.limit, None);
        assert_eq!(input.reads, [&b"abc"[..], b"def", b"g"]);
        assert!(FuzzInput::parse(b"\x03").is_none());
    }

    #[test]
    fn a_session_passes_in_both_framings() {
        let mut session = b"CONNECT alice\n".to_vec();
        session.extend_from_slice(&[0xab; HASH_LEN]);
        session.extend_from_slice(b"PUT colour\nblue\nGET colour\nDISCONNECT\n");
        for chunking in [1, 7, 255] {
            let mut data = vec![chunking, 0];
            data.extend_from_slice(&session);
            kv_server_decoder(&data);
        }
        kv_reply_decoder(b"\x00\x00\x0bCONNECT: OK\x0fGET blue\n12345\x05GET x\x017");
    }

    // The checks are not vacuous: what a correct decoder never returns fails them.
    #[test]
    fn checks_reject_what_a_decoder_must_not_return() {
        let fails =
            |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        let key_with_line_feed = ClientMessage::Get { key: "a\nb".into() };
        assert!(fails(&|| check_request(Dialect::Spec, &key_with_line_feed)));
        let id_with_line_feed = ClientMessage::Connect {
            id: "a\n".into(),
            hash: [0; HASH_LEN],
        };
        assert!(fails(&|| check_request(Dialect::Spec, &id_with_line_feed)));
        check_request(Dialect::Course, &id_with_line_feed);
        let value_with_line_feed = Reply::GetOk {
            value: "a\nb".into(),
            crc: 0,
        };
        assert!(fails(&|| check_reply(&value_with_line_feed)));
        let past_the_end = DecodeError::EmptyLine { offset: 3 };
        assert!(fails(&|| {
            let mut stream = Stream::default();
            stream.fed(b"abc");
            stream.error(&past_the_end);
        }));
        // The math service: a message before the name, a second name, an n over the limit,
        // a word count that is not the text's, a result that consumes nothing, a result
        // after a refusal that closes.
        let record = |results: &[Result<Message, Refusal>], fed: &[u8]| {
            let mut run = MathRun::default();
            for (k, result) in results.iter().enumerate() {
                run.record(result.clone(), &fed[..fed.len() - results.len() + k + 1], 0);
            }
        };
        let name = || Ok(Message::Name("c".into()));
        let mut text = WordCounter::default();
        text.feed(b"a b");
        record(&[name(), Ok(Message::WordCount(text))], b"c\nFILE\n3\na b");
        record(
            &[name(), Err(Refusal::LengthTooLarge { max: MAX_TEXT_LEN })],
            b"c\n..",
        );
        assert!(fails(&|| record(&[Ok(Message::Complete)], b"COMPLETE\n")));
        assert!(fails(&|| record(&[name(), name()], b"c\nc\n")));
        let too_large = Ok(Message::Fibonacci(MAX_FIBONACCI_N + 1));
        assert!(fails(&|| record(&[name(), too_large.clone()], b"c\n..")));
        assert!(fails(&|| {
            record(&[name(), Ok(Message::WordCount(text))], b"c\nFILE\n3\nabc");
        }));
        assert!(fails(&|| {
            let mut run = MathRun::default();
            run.record(name(), b"c\n", 0);
            run.record(Ok(Message::Complete), b"c\n", 0);
        }));
        assert!(fails(&|| {
            let closing = Err(Refusal::TokenTooLong);
            record(&[name(), closing, Ok(Message::Complete)], b"c\n...");
        }));
        assert!(fails(&|| MathAnswers::default().check_answer(&"007")));
    }
}
