//! The chat suite against servers that are wrong in exactly one way. Each fault runs the
//! scenarios of its family (the whole suite takes as long as its slowest game, so every
//! fault runs at once, each against its own server), and the test checks exactly which of
//! them fail, how, and at which line.

use std::collections::BTreeSet;
use std::path::PathBuf;

use harness::run::Outcome;
use reference_impl::chat::fault::Fault;

use crate::support;

use Outcome::{Failed, TimedOut};

use support::Caught;

/// One fault: the scenario files it runs (under scenarios/chat) and what must fail.
struct Case {
    fault: Fault,
    files: &'static [&'static str],
    caught: &'static [Caught],
}

const CASES: &[Case] = &[
    Case {
        fault: Fault::WelcomeWithoutVersion,
        files: &["level1/welcome.yaml", "level1/login-ok.yaml"],
        caught: &[("chat/level1/welcome", Failed, 7)],
    },
    Case {
        fault: Fault::LoginOrderWrong,
        files: &[
            "level1/login-checks-in-order.yaml",
            "level1/login-twice.yaml",
        ],
        caught: &[("chat/level1/login-checks-in-order", Failed, 10)],
    },
    Case {
        fault: Fault::AcceptBadUsername,
        files: &[
            "level1/login-name-2-chars.yaml",
            "level1/login-name-15-chars.yaml",
            "level1/login-name-bad-characters.yaml",
            "level1/login-name-14-chars.yaml",
            "level1/login-empty-body.yaml",
        ],
        caught: &[
            ("chat/level1/login-name-2-chars", Failed, 9),
            ("chat/level1/login-name-15-chars", Failed, 9),
            ("chat/level1/login-name-bad-characters", Failed, 9),
        ],
    },
    Case {
        fault: Fault::AllowDuplicateName,
        files: &["level1/login-duplicate-name.yaml", "level1/login-ok.yaml"],
        caught: &[("chat/level1/login-duplicate-name", Failed, 12)],
    },
    Case {
        fault: Fault::AllowLoginTwice,
        files: &[
            "level1/login-twice.yaml",
            "level1/login-checks-in-order.yaml",
        ],
        caught: &[
            ("chat/level1/login-twice", Failed, 11),
            ("chat/level1/login-checks-in-order", Failed, 10),
        ],
    },
    Case {
        fault: Fault::BroadcastEchoesSender,
        files: &[
            "level1/broadcast-not-to-sender.yaml",
            "level1/broadcast.yaml",
        ],
        caught: &[("chat/level1/broadcast-not-to-sender", Failed, 23)],
    },
    Case {
        fault: Fault::BroadcastWithoutResp,
        files: &["level1/broadcast.yaml", "level1/one-write-lf.yaml"],
        caught: &[
            ("chat/level1/broadcast", TimedOut, 14),
            ("chat/level1/one-write-lf", TimedOut, 10),
        ],
    },
    Case {
        fault: Fault::NoLeft,
        files: &["level1/bye.yaml", "level1/left-on-close.yaml"],
        caught: &[
            ("chat/level1/bye", TimedOut, 15),
            ("chat/level1/left-on-close", TimedOut, 14),
        ],
    },
    Case {
        fault: Fault::PingFromConnect,
        files: &["level1/ping-after-login.yaml"],
        caught: &[("chat/level1/ping-after-login", Failed, 18)],
    },
    Case {
        fault: Fault::WrongPingInterval,
        files: &["level1/ping-after-login.yaml"],
        caught: &[("chat/level1/ping-after-login", Failed, 18)],
    },
    Case {
        fault: Fault::NoPongTimeout,
        files: &["level1/pong-timeout.yaml"],
        caught: &[("chat/level1/pong-timeout", TimedOut, 15)],
    },
    Case {
        fault: Fault::NoPongError,
        files: &["level1/pong-without-ping.yaml"],
        caught: &[("chat/level1/pong-without-ping", TimedOut, 11)],
    },
    Case {
        fault: Fault::NoDscnOnLongLine,
        files: &["level1/line-too-long.yaml", "level1/line-at-limit.yaml"],
        caught: &[("chat/level1/line-too-long", TimedOut, 10)],
    },
    Case {
        fault: Fault::UnknownAsParseError,
        files: &[
            "level1/unknown-command.yaml",
            "level1/invalid-header-with-text.yaml",
        ],
        caught: &[
            ("chat/level1/unknown-command", Failed, 8),
            ("chat/level1/invalid-header-with-text", Failed, 8),
        ],
    },
    Case {
        fault: Fault::ParseAsUnknown,
        files: &["level1/parse-error.yaml"],
        caught: &[("chat/level1/parse-error", Failed, 9)],
    },
    Case {
        fault: Fault::StayOpenAfterBye,
        files: &["level1/bye.yaml"],
        caught: &[("chat/level1/bye", Failed, 14)],
    },
    Case {
        fault: Fault::ListUsersWithoutSelf,
        files: &["level2/list-users.yaml", "level2/list-users-exact.yaml"],
        caught: &[
            ("chat/level2/list-users", Failed, 14),
            ("chat/level2/list-users-exact", Failed, 17),
        ],
    },
    Case {
        fault: Fault::PmToSelfAllowed,
        files: &["level2/private-message-to-self.yaml"],
        caught: &[("chat/level2/private-message-to-self", Failed, 10)],
    },
    Case {
        fault: Fault::PmEmptyAllowed,
        files: &["level2/private-message-empty.yaml"],
        caught: &[("chat/level2/private-message-empty", Failed, 13)],
    },
    Case {
        fault: Fault::PmToEveryone,
        files: &["level2/private-message.yaml"],
        caught: &[("chat/level2/private-message", Failed, 18)],
    },
    Case {
        fault: Fault::PmNotDelivered,
        files: &["level2/private-message.yaml"],
        caught: &[("chat/level2/private-message", TimedOut, 17)],
    },
    Case {
        fault: Fault::JoinAfterWindowAllowed,
        files: &["level2/game-late-and-unsolved.yaml"],
        caught: &[("chat/level2/game-late-and-unsolved", Failed, 25)],
    },
    Case {
        fault: Fault::NoGameNotification,
        files: &["level2/game-alone.yaml"],
        caught: &[("chat/level2/game-alone", TimedOut, 15)],
    },
    Case {
        fault: Fault::ResultsUnsorted,
        files: &["level2/game-full.yaml"],
        caught: &[("chat/level2/game-full", Failed, 57)],
    },
    Case {
        fault: Fault::GameNo6002,
        files: &["level2/game-alone.yaml"],
        caught: &[("chat/level2/game-alone", Failed, 21)],
    },
    Case {
        fault: Fault::GuessRangeUnchecked,
        files: &["level2/game-full.yaml"],
        caught: &[("chat/level2/game-full", Failed, 27)],
    },
    Case {
        fault: Fault::TransferIdNotRelayed,
        files: &["level3/transfer.yaml", "level3/transfer-minimal.yaml"],
        caught: &[
            ("chat/level3/transfer", Failed, 16),
            ("chat/level3/transfer-minimal", Failed, 15),
        ],
    },
    Case {
        fault: Fault::TransferCorruptsByte,
        files: &["level3/transfer.yaml"],
        caught: &[("chat/level3/transfer", Failed, 25)],
    },
    Case {
        fault: Fault::SecureMessageAltered,
        files: &["level4/secure-message.yaml"],
        caught: &[("chat/level4/secure-message", Failed, 17)],
    },
    Case {
        fault: Fault::CodesAsStrings,
        files: &["level1/login-name-2-chars.yaml"],
        caught: &[("chat/level1/login-name-2-chars", Failed, 9)],
    },
];

/// How one fault's run went, as lines to compare.
async fn run_case(case: &Case) -> Result<(), String> {
    let paths: Vec<String> = case
        .files
        .iter()
        .map(|f| format!("scenarios/chat/{f}"))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let suites = support::load(&paths);
    let server = support::chat_server(&[case.fault]).await;
    // Every fault runs at once: replies get more time than the teachers' 100 ms, which is a
    // check of its own in the main suite run.
    let opts = harness::run::RunOptions {
        timeout: Some(std::time::Duration::from_secs(2)),
        ..support::against_chat(&server)
    };
    let report = support::run(&suites, &opts).await;
    server.stop().await;
    support::compare_caught(case.fault.name(), &report, case.caught)
}

#[test]
fn every_chat_fault_has_a_case() {
    let tested: BTreeSet<&str> = CASES.iter().map(|c| c.fault.name()).collect();
    let all: BTreeSet<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(tested, all, "add a case for each new fault");
    for case in CASES {
        for file in case.files {
            let path = support::root().join("scenarios/chat").join(file);
            assert!(path.exists(), "{}", PathBuf::from(file).display());
        }
    }
}

/// Every fault at once, each against its own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_chat_fault_fails_its_scenarios() {
    let results = support::join_all(CASES.iter().map(run_case).collect()).await;
    let problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
