//! The packet and math service suites against servers wrong in exactly one way: each fault
//! runs the whole suite (about a second) on its own server, all at once, and the test checks
//! exactly which scenarios fail, how, and at which line.

use std::collections::BTreeSet;

use harness::protocol::ReferenceServer;
use harness::run::Outcome;
use reference_impl::mathsvc::fault::Fault as MathFault;
use reference_impl::packet::fault::{ClientFault, Fault as PacketFault};

use crate::support;

use Outcome::{Failed, TimedOut};

use support::Caught;

const PACKET_CASES: &[(PacketFault, &[Caught])] = &[
    (
        PacketFault::WrongChecksumOut,
        &[
            ("packet/bad-checksum-header", Failed, 7),
            ("packet/bad-checksum-reply", Failed, 7),
            ("packet/bad-length", Failed, 7),
            ("packet/bad-student-id", Failed, 7),
            ("packet/closed-mid-packet", Failed, 7),
            ("packet/happy", Failed, 8),
            ("packet/length-over-limit", Failed, 7),
            ("packet/reply-in-chunks", Failed, 7),
            ("packet/reply-wrong-keyword", Failed, 7),
            ("packet/short-reply", Failed, 7),
            ("packet/submission", Failed, 7),
            ("packet/truncated-header", Failed, 10),
            ("packet/wrong-decryption", Failed, 7),
            ("packet/wrong-keyword-case", Failed, 7),
        ],
    ),
    (
        PacketFault::XorOffsetResetsPerPacket,
        &[
            ("packet/happy", Failed, 10),
            ("packet/reply-in-chunks", Failed, 10),
            ("packet/submission", Failed, 9),
        ],
    ),
    (
        PacketFault::LastPacketFlagMissing,
        &[
            ("packet/bad-checksum-reply", TimedOut, 7),
            ("packet/closed-mid-packet", TimedOut, 7),
            ("packet/happy", TimedOut, 8),
            ("packet/reply-in-chunks", TimedOut, 7),
            ("packet/reply-wrong-keyword", TimedOut, 7),
            ("packet/short-reply", TimedOut, 7),
            ("packet/submission", TimedOut, 7),
            ("packet/truncated-header", TimedOut, 10),
            ("packet/wrong-decryption", TimedOut, 7),
        ],
    ),
    (
        PacketFault::ScoreIgnoresLength,
        &[("packet/short-reply", Failed, 9)],
    ),
    (
        PacketFault::AcceptsBadChecksum,
        &[
            ("packet/bad-checksum-header", Failed, 7),
            ("packet/bad-checksum-reply", Failed, 9),
        ],
    ),
    (
        PacketFault::AcceptsWrongKeyword,
        &[("packet/reply-wrong-keyword", Failed, 9)],
    ),
    (
        PacketFault::PacketOverLimit,
        &[
            ("packet/bad-checksum-reply", Failed, 7),
            ("packet/closed-mid-packet", Failed, 7),
            ("packet/happy", Failed, 8),
            ("packet/reply-in-chunks", Failed, 7),
            ("packet/reply-wrong-keyword", Failed, 7),
            ("packet/short-reply", Failed, 7),
            ("packet/submission", Failed, 7),
            ("packet/truncated-header", Failed, 10),
            ("packet/wrong-decryption", Failed, 7),
        ],
    ),
    (
        PacketFault::NoResultPacket,
        &[
            ("packet/bad-checksum-header", Failed, 7),
            ("packet/bad-checksum-reply", Failed, 9),
            ("packet/bad-length", Failed, 7),
            ("packet/bad-student-id", Failed, 7),
            ("packet/closed-mid-packet", Failed, 11),
            ("packet/happy", Failed, 10),
            ("packet/length-over-limit", Failed, 7),
            ("packet/reply-in-chunks", Failed, 10),
            ("packet/reply-wrong-keyword", Failed, 9),
            ("packet/short-reply", Failed, 9),
            ("packet/submission", Failed, 9),
            ("packet/wrong-decryption", Failed, 10),
            ("packet/wrong-keyword-case", Failed, 7),
        ],
    ),
];

const MATH_CASES: &[(MathFault, &[Caught])] = &[
    (
        MathFault::FibOffByOne,
        &[
            ("mathsvc/fibonacci", Failed, 10),
            ("mathsvc/fibonacci-big", Failed, 10),
            ("mathsvc/newline-framing", Failed, 11),
            ("mathsvc/several-clients", Failed, 20),
        ],
    ),
    (
        MathFault::FactorialOverflowsU64,
        &[("mathsvc/factorial-big", Failed, 10)],
    ),
    (
        MathFault::WordCountSplitsOnSpaceOnly,
        &[
            ("mathsvc/word-count-long", Failed, 11),
            ("mathsvc/word-count-spaces", Failed, 11),
        ],
    ),
    (
        MathFault::WordCountCountsSpaces,
        &[
            ("mathsvc/several-clients", Failed, 21),
            ("mathsvc/word-count", Failed, 11),
            ("mathsvc/word-count-alias", Failed, 12),
            ("mathsvc/word-count-spaces", Failed, 11),
        ],
    ),
    (
        MathFault::WordCountFirst1024Bytes,
        &[("mathsvc/word-count-long", Failed, 11)],
    ),
    (
        MathFault::UuidWrongName,
        &[
            ("mathsvc/bad-number", Failed, 7),
            ("mathsvc/complete", Failed, 7),
            ("mathsvc/factorial", Failed, 7),
            ("mathsvc/factorial-big", Failed, 7),
            ("mathsvc/fibonacci", Failed, 7),
            ("mathsvc/fibonacci-big", Failed, 7),
            ("mathsvc/handshake", Failed, 7),
            ("mathsvc/newline-framing", Failed, 8),
            ("mathsvc/several-clients", Failed, 9),
            ("mathsvc/split-writes", Failed, 7),
            ("mathsvc/unknown-request", Failed, 7),
            ("mathsvc/word-count", Failed, 7),
            ("mathsvc/word-count-alias", Failed, 8),
            ("mathsvc/word-count-long", Failed, 7),
            ("mathsvc/word-count-spaces", Failed, 7),
        ],
    ),
    (
        MathFault::AnswersWithNewline,
        &[
            ("mathsvc/bad-number", Failed, 7),
            ("mathsvc/complete", Failed, 7),
            ("mathsvc/factorial", Failed, 7),
            ("mathsvc/factorial-big", Failed, 7),
            ("mathsvc/fibonacci", Failed, 7),
            ("mathsvc/fibonacci-big", Failed, 7),
            ("mathsvc/handshake", Failed, 7),
            ("mathsvc/newline-framing", Failed, 8),
            ("mathsvc/several-clients", Failed, 9),
            ("mathsvc/split-writes", Failed, 7),
            ("mathsvc/unknown-request", Failed, 7),
            ("mathsvc/word-count", Failed, 7),
            ("mathsvc/word-count-alias", Failed, 8),
            ("mathsvc/word-count-long", Failed, 7),
            ("mathsvc/word-count-spaces", Failed, 7),
        ],
    ),
    (
        MathFault::NoCompleteClose,
        &[("mathsvc/complete", Failed, 12)],
    ),
    (
        MathFault::NeedsNewlines,
        &[
            ("mathsvc/bad-number", TimedOut, 7),
            ("mathsvc/complete", TimedOut, 7),
            ("mathsvc/factorial", TimedOut, 7),
            ("mathsvc/factorial-big", TimedOut, 7),
            ("mathsvc/fibonacci", TimedOut, 7),
            ("mathsvc/fibonacci-big", TimedOut, 7),
            ("mathsvc/handshake", TimedOut, 7),
            ("mathsvc/several-clients", TimedOut, 9),
            ("mathsvc/split-writes", TimedOut, 7),
            ("mathsvc/unknown-request", TimedOut, 7),
            ("mathsvc/word-count", TimedOut, 7),
            ("mathsvc/word-count-alias", TimedOut, 8),
            ("mathsvc/word-count-long", TimedOut, 7),
            ("mathsvc/word-count-spaces", TimedOut, 7),
        ],
    ),
    (
        MathFault::SerialClients,
        &[("mathsvc/several-clients", TimedOut, 10)],
    ),
];

/// The packet client suite (the harness plays the server) against the built-in client made
/// wrong in one way.
const CLIENT_CASES: &[(ClientFault, &[Caught])] = &[
    (
        ClientFault::LittleEndianOnly,
        &[
            ("packet-client/binary-text", Failed, 6),
            ("packet-client/error-packet", Failed, 6),
            ("packet-client/happy", Failed, 7),
            ("packet-client/key-runs-across-packets", Failed, 6),
            ("packet-client/long-text-in-chunks", Failed, 6),
            ("packet-client/lower-score", Failed, 6),
            ("packet-client/one-packet-stream", Failed, 6),
            ("packet-client/split-writes", Failed, 6),
        ],
    ),
    (
        ClientFault::NoFinalFlag,
        &[
            ("packet-client/binary-text", TimedOut, 9),
            ("packet-client/happy", TimedOut, 10),
            ("packet-client/key-runs-across-packets", TimedOut, 9),
            ("packet-client/long-text-in-chunks", TimedOut, 10),
            ("packet-client/lower-score", TimedOut, 8),
            ("packet-client/one-packet-stream", TimedOut, 8),
            ("packet-client/split-writes", TimedOut, 10),
        ],
    ),
    (
        ClientFault::ChunkTooLarge,
        &[
            ("packet-client/happy", Failed, 10),
            ("packet-client/key-runs-across-packets", Failed, 9),
            ("packet-client/long-text-in-chunks", Failed, 10),
        ],
    ),
    (
        ClientFault::DecryptsWithoutCarryingKeyPosition,
        &[("packet-client/key-runs-across-packets", Failed, 9)],
    ),
    (
        ClientFault::WrongKeyword,
        &[
            ("packet-client/binary-text", Failed, 9),
            ("packet-client/happy", Failed, 10),
            ("packet-client/key-runs-across-packets", Failed, 9),
            ("packet-client/long-text-in-chunks", Failed, 10),
            ("packet-client/lower-score", Failed, 8),
            ("packet-client/one-packet-stream", Failed, 8),
            ("packet-client/split-writes", Failed, 10),
        ],
    ),
    (
        ClientFault::DropsLastByte,
        &[
            ("packet-client/binary-text", Failed, 9),
            ("packet-client/happy", Failed, 10),
            ("packet-client/key-runs-across-packets", Failed, 9),
            ("packet-client/long-text-in-chunks", Failed, 10),
            ("packet-client/one-packet-stream", Failed, 8),
            ("packet-client/split-writes", Failed, 10),
        ],
    ),
    (
        ClientFault::WrongSidInReply,
        &[
            ("packet-client/binary-text", Failed, 9),
            ("packet-client/happy", Failed, 10),
            ("packet-client/key-runs-across-packets", Failed, 9),
            ("packet-client/long-text-in-chunks", Failed, 10),
            ("packet-client/lower-score", Failed, 8),
            ("packet-client/one-packet-stream", Failed, 8),
            ("packet-client/split-writes", Failed, 10),
        ],
    ),
];

/// Faults no scenario can see, and why.
const PACKET_UNSEEN: &[(PacketFault, &str)] = &[];

async fn check(
    suite: &str,
    fault: &str,
    server: ReferenceServer,
    caught: &[Caught],
) -> Result<(), String> {
    let suites = support::load(&[suite]);
    let opts = harness::run::RunOptions {
        jobs: 1,
        ..support::against_plain(&server)
    };
    let report = support::run(&suites, &opts).await;
    server.stop().await;
    support::compare_caught(fault, &report, caught)
}

#[test]
fn every_server_fault_has_a_case() {
    let packet: BTreeSet<&str> = PACKET_CASES
        .iter()
        .map(|(f, _)| f.name())
        .chain(PACKET_UNSEEN.iter().map(|(f, _)| f.name()))
        .collect();
    let all: BTreeSet<&str> = PacketFault::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(packet, all);
    let client: BTreeSet<&str> = CLIENT_CASES.iter().map(|(f, _)| f.name()).collect();
    let all: BTreeSet<&str> = ClientFault::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(client, all);
    let math: BTreeSet<&str> = MATH_CASES.iter().map(|(f, _)| f.name()).collect();
    let all: BTreeSet<&str> = MathFault::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(math, all);
}

/// Every fault at once, each against its own server; scenarios one at a time, so that a
/// server serving one client at a time fails the same scenarios on every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_packet_and_math_fault_fails_its_scenarios() {
    let packet = PACKET_CASES.iter().map(|(fault, caught)| async move {
        let server = support::packet_server(&[*fault]).await;
        check("scenarios/packet", fault.name(), server, caught).await
    });
    let math = MATH_CASES.iter().map(|(fault, caught)| async move {
        let server = support::mathsvc_server(&[*fault]).await;
        check("scenarios/mathsvc", fault.name(), server, caught).await
    });
    let mut results = support::join_all(packet.collect()).await;
    results.extend(support::join_all(math.collect()).await);
    let problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every client fault at once; the scenarios of each run in parallel, each on its own port
/// with its own client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_packet_client_fault_fails_its_scenarios() {
    let suites = support::load(&["scenarios/packet-client"]);
    let suites = &suites;
    let runs = CLIENT_CASES.iter().map(|(fault, caught)| async move {
        let opts = harness::run::RunOptions {
            serve: Some(harness::run::ServeOptions {
                listen: None,
                client: Some(harness::protocol::packet::reference_client(&[*fault])),
                accept_timeout: harness::run::DEFAULT_ACCEPT_TIMEOUT,
            }),
            ..harness::run::RunOptions::default()
        };
        let report = support::run(suites, &opts).await;
        support::compare_caught(fault.name(), &report, caught)
    });
    let problems: Vec<String> = support::join_all(runs.collect())
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
