#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn lines(decoder: &mut LineDecoder) -> Vec<Result<Vec<u8>, LineError>> {
    let mut out = Vec::new();
    loop {
        match decoder.next_line() {
            Ok(None) => return out,
            Ok(Some(line)) => out.push(Ok(line)),
            Err(e) => out.push(Err(e)),
        }
    }
}

fn ok_lines(decoder: &mut LineDecoder) -> Vec<String> {
    lines(decoder)
        .into_iter()
        .map(|l| String::from_utf8(l.unwrap()).unwrap())
        .collect()
}

#[test]
fn line_ends_lf_crlf_and_lone_cr() {
    let mut d = LineDecoder::new();
    d.feed(b"a\nb\r\nc\rd\r\re");
    assert_eq!(ok_lines(&mut d), ["a", "b", "c", "d", ""]);
    assert_eq!(d.buffered(), 1);
    d.feed(b"\n");
    assert_eq!(ok_lines(&mut d), ["e"]);
}

#[test]
fn cr_at_the_end_of_a_read_then_lf_is_one_line_end() {
    let mut d = LineDecoder::new();
    d.feed(b"LOGIN {}\r");
    assert_eq!(ok_lines(&mut d), ["LOGIN {}"]);
    d.feed(b"\nPONG\r");
    assert_eq!(ok_lines(&mut d), ["PONG"]);
    d.feed(b"\n");
    assert_eq!(ok_lines(&mut d), Vec::<String>::new());
    d.feed(b"\n");
    assert_eq!(ok_lines(&mut d), [""]);
}

#[test]
fn a_line_split_over_reads() {
    let mut d = LineDecoder::new();
    for chunk in [
        &b"LOG"[..],
        b"IN {\"user",
        b"name\":\"a\"}\nBROAD",
        b"CAST_REQ\n",
    ] {
        d.feed(chunk);
    }
    assert_eq!(
        ok_lines(&mut d),
        ["LOGIN {\"username\":\"a\"}", "BROADCAST_REQ"]
    );
}

#[test]
fn line_of_exactly_the_limit_passes_one_more_fails() {
    let mut d = LineDecoder::with_max_line(8);
    d.feed(b"12345678");
    assert_eq!(ok_lines(&mut d), Vec::<String>::new());
    d.feed(b"\r\n");
    assert_eq!(ok_lines(&mut d), ["12345678"]);
    d.feed(b"123456789");
    assert_eq!(
        lines(&mut d),
        [Err(LineError::TooLong {
            limit: 8,
            offset: 10
        })]
    );
    // The rest of the long line is dropped, up to its line end.
    d.feed(b"more and more");
    assert_eq!(lines(&mut d), []);
    assert_eq!(d.buffered(), 0);
    d.feed(b"tail\nnext\n");
    assert_eq!(ok_lines(&mut d), ["next"]);
}

#[test]
fn a_long_line_with_its_line_end_in_one_read_is_one_error() {
    let mut d = LineDecoder::with_max_line(4);
    d.feed(b"abcdefgh\nok\n");
    let got = lines(&mut d);
    assert_eq!(got.len(), 2);
    assert!(got[0].is_err());
    assert_eq!(got[1], Ok(b"ok".to_vec()));
}

#[test]
fn default_limit_is_1024() {
    let mut d = LineDecoder::new();
    d.feed(&[b'a'; 1024]);
    assert_eq!(lines(&mut d), []);
    d.feed(b"a");
    assert!(matches!(
        lines(&mut d)[..],
        [Err(LineError::TooLong { limit: 1024, .. })]
    ));
}

fn client(line: &str) -> Result<ClientMessage, DecodeError> {
    ClientMessage::decode(line.as_bytes())
}

fn server(line: &str) -> Result<ServerMessage, DecodeError> {
    ServerMessage::decode(line.as_bytes())
}

fn enc_server(m: &ServerMessage) -> String {
    let mut out = Vec::new();
    m.encode(&mut out);
    String::from_utf8(out).unwrap()
}

fn enc_client(m: &ClientMessage) -> String {
    let mut out = Vec::new();
    m.encode(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn decodes_client_messages() {
    assert_eq!(
        client(r#"LOGIN {"username": "alice"}"#),
        Ok(ClientMessage::Login {
            username: "alice".into()
        })
    );
    assert_eq!(
        client("LOGIN "),
        Ok(ClientMessage::Login {
            username: String::new()
        })
    );
    assert_eq!(
        client("LOGIN"),
        Ok(ClientMessage::Login {
            username: String::new()
        })
    );
    assert_eq!(
        client("BROADCAST_REQ"),
        Ok(ClientMessage::BroadcastReq {
            message: String::new()
        })
    );
    assert_eq!(client("PONG"), Ok(ClientMessage::Pong));
    assert_eq!(client("PONG {}"), Ok(ClientMessage::Pong));
    assert_eq!(client("BYE"), Ok(ClientMessage::Bye));
    assert_eq!(
        client(r#"GUESS_NUMBER_REQ {"number":"42"}"#),
        Ok(ClientMessage::GuessNumberReq {
            number: Guess::Number(42)
        })
    );
    assert_eq!(
        client(r#"GUESS_NUMBER_REQ {"number":-3}"#),
        Ok(ClientMessage::GuessNumberReq {
            number: Guess::Number(-3)
        })
    );
    assert_eq!(
        client(r#"GUESS_NUMBER_REQ {"number":"4a"}"#),
        Ok(ClientMessage::GuessNumberReq {
            number: Guess::Invalid(Value::String("4a".into()))
        })
    );
    assert_eq!(
        client("GUESS_NUMBER_REQ"),
        Ok(ClientMessage::GuessNumberReq {
            number: Guess::Invalid(Value::Null)
        })
    );
    assert_eq!(
        client(r#"FILE_TRANSFER_RESPONSE {"sender":"a","status":"REJECTED"}"#),
        Ok(ClientMessage::FileTransferResponse {
            sender: "a".into(),
            decision: TransferDecision::Reject,
            transfer_id: String::new()
        })
    );
    assert_eq!(
        client(r#"SECURE_MESSAGE {"sender":"bob","sessionKey":"k","message":"m"}"#),
        Ok(ClientMessage::SecureMessage {
            receiver: None,
            sender: Some("bob".into()),
            session_key: "k".into(),
            message: "m".into()
        })
    );
}

#[test]
fn unknown_header_and_bad_json_are_told_apart() {
    let unknown = |r: Result<ClientMessage, DecodeError>| r.unwrap_err().is_unknown_command();
    // The spec: the header is looked up first.
    assert!(unknown(client("MSG This is an invalid message")));
    assert!(unknown(client("FOO")));
    assert!(unknown(client("FOO {}")));
    assert!(unknown(client("")));
    assert!(unknown(client("login {}")));
    // A server-to-client header from a client is unknown.
    assert!(unknown(client("PING")));
    assert!(unknown(client("WELCOME {}")));
    assert!(!unknown(client(r#"BROADCAST_REQ {"aaaa"}"#)));
    assert!(!unknown(client(r#"LOGIN {"}"#)));
    assert!(!unknown(client("LOGIN []")));
    assert!(!unknown(client(r#"LOGIN {"username":5}"#)));
    assert!(!unknown(client(r#"LOGIN {"username":"a"} x"#)));
    assert!(!unknown(client("PONG junk")));

    // The teachers' server parses the JSON first.
    let teachers = Dialect::json_first();
    let t = |line: &str| teachers.decode_client(line.as_bytes()).unwrap_err();
    assert_eq!(
        t("MSG This is an invalid message").reply(),
        ServerMessage::ParseError
    );
    assert_eq!(t("FOO").reply(), ServerMessage::UnknownCommand);
    assert_eq!(t("FOO {}").reply(), ServerMessage::UnknownCommand);
    assert_eq!(t("FOO 5").reply(), ServerMessage::UnknownCommand);
    assert_eq!(t(r#"LOGIN {"}"#).reply(), ServerMessage::ParseError);
    assert_eq!(t("LOGIN 5").reply(), ServerMessage::ParseError);
}

#[test]
fn encodes_server_messages_compactly_in_key_order() {
    let cases: Vec<(ServerMessage, &str)> = vec![
        (
            ServerMessage::Welcome {
                msg: "Welcome to the server 1.5".into(),
            },
            r#"WELCOME {"msg":"Welcome to the server 1.5"}"#,
        ),
        (
            ServerMessage::LoginResp(Ok(())),
            r#"LOGIN_RESP {"status":"OK"}"#,
        ),
        (
            ServerMessage::LoginResp(Err(5001)),
            r#"LOGIN_RESP {"status":"ERROR","code":5001}"#,
        ),
        (ServerMessage::Ping, "PING"),
        (ServerMessage::UnknownCommand, "UNKNOWN_COMMAND"),
        (ServerMessage::ParseError, "PARSE_ERROR"),
        (
            ServerMessage::Dscn { reason: Some(7001) },
            r#"DSCN {"reason":7001}"#,
        ),
        (
            ServerMessage::PongError { code: 8000 },
            r#"PONG_ERROR {"code":8000}"#,
        ),
        (
            ServerMessage::Broadcast {
                username: "a".into(),
                message: "say \"hi\"\n".into(),
            },
            r#"BROADCAST {"username":"a","message":"say \"hi\"\n"}"#,
        ),
        (
            ServerMessage::ListUsersResp(Ok(vec!["a".into(), "b".into()])),
            r#"LIST_USERS_RESP {"status":"OK","users":["a","b"]}"#,
        ),
        (
            ServerMessage::ListUsersResp(Ok(vec![])),
            r#"LIST_USERS_RESP {"status":"OK","users":[]}"#,
        ),
        (
            ServerMessage::GuessNumberResp(Ok("Correct".into())),
            r#"GUESS_NUMBER_RESP {"status":"OK","result":"Correct"}"#,
        ),
        (
            ServerMessage::GameResults(Ok(vec![GameResult {
                username: "a".into(),
                time_ms: 12,
            }])),
            r#"GAME_RESULTS {"status":"OK","results":[{"username":"a","time_ms":12}]}"#,
        ),
        (
            ServerMessage::FileTransferRequest {
                sender: "a".into(),
                filename: "f.txt".into(),
                size: Some(3),
                checksum: None,
            },
            r#"FILE_TRANSFER_REQUEST {"sender":"a","filename":"f.txt","size":3}"#,
        ),
        (
            ServerMessage::FileTransferResponse(Ok(TransferAccepted {
                receiver: "b".into(),
                transfer_id: "x".into(),
            })),
            r#"FILE_TRANSFER_RESPONSE {"receiver":"b","status":"OK","transferId":"x"}"#,
        ),
        (
            ServerMessage::FileTransferComplete {
                transfer_id: "x".into(),
                result: Err(10003),
                size: 2,
                checksum: "ab".into(),
            },
            r#"FILE_TRANSFER_COMPLETE {"transferId":"x","status":"ERROR","code":10003,"size":2,"checksum":"ab"}"#,
        ),
        (
            ServerMessage::SecureMessageRes(Ok(PublicKey {
                receiver: "b".into(),
                public_key: "K".into(),
            })),
            r#"SECURE_MESSAGE_RES {"receiver":"b","publicKey":"K"}"#,
        ),
        (
            ServerMessage::SecureMessage(Err(6001)),
            r#"SECURE_MESSAGE {"status":"ERROR","code":6001}"#,
        ),
    ];
    for (message, line) in cases {
        assert_eq!(enc_server(&message), format!("{line}\n"));
        assert_eq!(server(line), Ok(message));
    }
}

#[test]
fn encodes_client_messages() {
    assert_eq!(enc_client(&ClientMessage::Pong), "PONG\n");
    assert_eq!(
        enc_client(&ClientMessage::Login {
            username: "bob".into()
        }),
        "LOGIN {\"username\":\"bob\"}\n"
    );
    assert_eq!(
        enc_client(&ClientMessage::GuessNumberReq {
            number: Guess::Number(7)
        }),
        "GUESS_NUMBER_REQ {\"number\":7}\n"
    );
    assert_eq!(
        enc_client(&ClientMessage::FileTransferResponse {
            sender: "a".into(),
            decision: TransferDecision::Accept,
            transfer_id: "id".into()
        }),
        "FILE_TRANSFER_RESPONSE {\"sender\":\"a\",\"status\":\"OK\",\"transferId\":\"id\"}\n"
    );
}

#[test]
fn server_decoding_is_lenient() {
    assert_eq!(
        server(r#"LOGIN_RESP {"status":"ERROR","code":"5001"}"#),
        Ok(ServerMessage::LoginResp(Err(5001)))
    );
    assert_eq!(
        server(r#"START_GAME_RESP {"status": "Ok" }"#),
        Ok(ServerMessage::StartGameResp(Ok(())))
    );
    assert_eq!(server("DSCN"), Ok(ServerMessage::Dscn { reason: None }));
    assert_eq!(
        server("WELCOME"),
        Ok(ServerMessage::Welcome { msg: String::new() })
    );
    assert_eq!(
        server(r#"GUESS_NUMBER_RESP {"status":"OK","result":-1}"#),
        Ok(ServerMessage::GuessNumberResp(Ok("-1".into())))
    );
    assert!(server(r#"LOGIN_RESP {"status":"MAYBE"}"#).is_err());
    assert!(server("LOGIN {}").unwrap_err().is_unknown_command());
}

#[test]
fn renamed_headers_in_both_directions() {
    let mut dialect = Dialect::default();
    dialect
        .headers
        .apply("LIST_USERS_REQ=USER_LIST_REQ")
        .unwrap();
    dialect
        .headers
        .apply("LIST_USERS_RESP=USER_LIST_RESP")
        .unwrap();
    dialect.headers.apply("LOGIN=LOGIN REQ").unwrap();
    assert_eq!(
        dialect.decode_client(b"USER_LIST_REQ"),
        Ok(ClientMessage::ListUsersReq)
    );
    assert!(dialect.decode_client(b"LIST_USERS_REQ").is_err());
    assert_eq!(
        dialect.decode_client(br#"LOGIN REQ {"username":"abc"}"#),
        Ok(ClientMessage::Login {
            username: "abc".into()
        })
    );
    assert_eq!(
        dialect.decode_client(b"LOGIN REQ"),
        Ok(ClientMessage::Login {
            username: String::new()
        })
    );
    assert!(
        dialect
            .decode_client(b"LOGIN {}")
            .unwrap_err()
            .is_unknown_command()
    );
    let mut out = Vec::new();
    dialect.encode_server(&ServerMessage::ListUsersResp(Ok(vec![])), &mut out);
    assert_eq!(out, b"USER_LIST_RESP {\"status\":\"OK\",\"users\":[]}\n");
    out.clear();
    dialect.encode_client(
        &ClientMessage::Login {
            username: "x".into(),
        },
        &mut out,
    );
    assert_eq!(out, b"LOGIN REQ {\"username\":\"x\"}\n");

    dialect.headers.alias("LOGIN", Header::Login).unwrap();
    assert!(dialect.decode_client(b"LOGIN {}").is_ok());

    let mut headers = HeaderMap::default();
    assert!(matches!(
        headers.apply("LOGIN=BYE"),
        Err(RenameError::Taken {
            taken_by: Header::Bye,
            ..
        })
    ));
    assert!(matches!(
        headers.apply("NOPE=X"),
        Err(RenameError::UnknownHeader(_))
    ));
    assert!(matches!(
        headers.apply("LOGIN"),
        Err(RenameError::Syntax(_))
    ));
    assert!(matches!(
        headers.apply("LOGIN=A{"),
        Err(RenameError::InvalidName { .. })
    ));
    assert!(matches!(
        headers.apply("LOGIN="),
        Err(RenameError::InvalidName { .. })
    ));
    assert!(headers.is_default());
}

#[test]
fn data_channel_lines() {
    assert_eq!(
        DataHello::parse(b"UPLOAD abc"),
        Ok(DataHello::Upload("abc".into()))
    );
    assert_eq!(
        DataHello::parse(b"DOWNLOAD abc\r"),
        Ok(DataHello::Download("abc".into()))
    );
    assert!(DataHello::parse(b"UPLOAD").is_err());
    assert!(DataHello::parse(b"UPLOAD ").is_err());
    assert!(DataHello::parse(b"PUT abc").is_err());
    assert_eq!(DataReply::parse(b"READY"), Some(DataReply::Ready));
    assert_eq!(
        DataReply::parse(b"ERROR unknown transfer"),
        Some(DataReply::Error("unknown transfer".into()))
    );
    let mut out = Vec::new();
    DataReply::Error("a\nb".into()).encode(&mut out);
    assert_eq!(out, b"ERROR a b\n");
}

#[test]
fn usernames_and_checksums() {
    assert!(is_valid_username("mym"));
    assert!(is_valid_username("abcdefghijklmn"));
    assert!(!is_valid_username("abcdefghijklmno"));
    assert!(!is_valid_username("my"));
    assert!(!is_valid_username("*a*"));
    assert!(!is_valid_username(""));
    assert!(!is_valid_username("ééé"));
    assert!(is_valid_checksum(&"a".repeat(64)));
    assert!(!is_valid_checksum(&"g".repeat(64)));
    assert!(!is_valid_checksum(&"a".repeat(63)));
}

// ---- property tests

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_ ]{0,12}",
        any::<String>(),
        "[\"\\\\\\n\\r\\t\u{0}-\u{1f}é€😀]{0,8}",
    ]
}

fn code() -> impl Strategy<Value = Code> {
    prop_oneof![Just(5000), Just(6001), Just(10003), any::<u32>()]
}

fn unit_result() -> impl Strategy<Value = Result<(), Code>> {
    prop_oneof![Just(Ok(())), code().prop_map(Err)]
}

fn guess() -> impl Strategy<Value = Guess> {
    prop_oneof![
        any::<i64>().prop_map(Guess::Number),
        Just(Guess::Invalid(Value::Null)),
        "[a-z]{1,4}".prop_map(|s| Guess::Invalid(Value::String(s))),
        Just(Guess::Invalid(serde_json::json!(4.5))),
        Just(Guess::Invalid(serde_json::json!([1, {"a": true}]))),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        text().prop_map(|username| ClientMessage::Login { username }),
        text().prop_map(|message| ClientMessage::BroadcastReq { message }),
        Just(ClientMessage::Pong),
        Just(ClientMessage::Bye),
        Just(ClientMessage::ListUsersReq),
        (text(), text())
            .prop_map(|(receiver, message)| ClientMessage::PrivateMessageReq { receiver, message }),
        Just(ClientMessage::StartGameReq),
        Just(ClientMessage::JoinGameReq),
        guess().prop_map(|number| ClientMessage::GuessNumberReq { number }),
        (
            text(),
            text(),
            any::<Option<u64>>(),
            proptest::option::of(text())
        )
            .prop_map(|(receiver, filename, size, checksum)| {
                ClientMessage::FileTransferRequest {
                    receiver,
                    filename,
                    size,
                    checksum,
                }
            }),
        (text(), any::<bool>(), text()).prop_map(|(sender, ok, transfer_id)| {
            ClientMessage::FileTransferResponse {
                sender,
                decision: if ok {
                    TransferDecision::Accept
                } else {
                    TransferDecision::Reject
                },
                transfer_id,
            }
        }),
        text().prop_map(|receiver| ClientMessage::SecureMessageReq { receiver }),
        (text(), text()).prop_map(|(sender, public_key)| ClientMessage::SecureMessageRes {
            sender,
            public_key
        }),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            text(),
            text()
        )
            .prop_map(|(receiver, sender, session_key, message)| {
                ClientMessage::SecureMessage {
                    receiver,
                    sender,
                    session_key,
                    message,
                }
            }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let users = proptest::collection::vec(text(), 0..4);
    let results = proptest::collection::vec(
        (text(), any::<u64>()).prop_map(|(username, time_ms)| GameResult { username, time_ms }),
        0..4,
    );
    prop_oneof![
        text().prop_map(|msg| ServerMessage::Welcome { msg }),
        unit_result().prop_map(ServerMessage::LoginResp),
        unit_result().prop_map(ServerMessage::BroadcastResp),
        (text(), text())
            .prop_map(|(username, message)| ServerMessage::Broadcast { username, message }),
        text().prop_map(|username| ServerMessage::Joined { username }),
        text().prop_map(|username| ServerMessage::Left { username }),
        Just(ServerMessage::Ping),
        code().prop_map(|code| ServerMessage::PongError { code }),
        proptest::option::of(code()).prop_map(|reason| ServerMessage::Dscn { reason }),
        unit_result().prop_map(ServerMessage::ByeResp),
        Just(ServerMessage::UnknownCommand),
        Just(ServerMessage::ParseError),
        prop_oneof![users.prop_map(Ok), code().prop_map(Err)]
            .prop_map(ServerMessage::ListUsersResp),
        unit_result().prop_map(ServerMessage::PrivateMessageResp),
        (text(), text())
            .prop_map(|(sender, message)| ServerMessage::PrivateMessage { sender, message }),
        unit_result().prop_map(ServerMessage::StartGameResp),
        unit_result().prop_map(ServerMessage::GameNotification),
        unit_result().prop_map(ServerMessage::JoinGameResp),
        prop_oneof![text().prop_map(Ok), code().prop_map(Err)]
            .prop_map(ServerMessage::GuessNumberResp),
        prop_oneof![results.prop_map(Ok), code().prop_map(Err)]
            .prop_map(ServerMessage::GameResults),
        (
            text(),
            text(),
            any::<Option<u64>>(),
            proptest::option::of(text())
        )
            .prop_map(|(sender, filename, size, checksum)| {
                ServerMessage::FileTransferRequest {
                    sender,
                    filename,
                    size,
                    checksum,
                }
            }),
        prop_oneof![
            (text(), text()).prop_map(|(receiver, transfer_id)| Ok(TransferAccepted {
                receiver,
                transfer_id
            })),
            code().prop_map(Err)
        ]
        .prop_map(ServerMessage::FileTransferResponse),
        (text(), unit_result(), any::<u64>(), text()).prop_map(
            |(transfer_id, result, size, checksum)| ServerMessage::FileTransferComplete {
                transfer_id,
                result,
                size,
                checksum
            }
        ),
        prop_oneof![text().prop_map(Ok), code().prop_map(Err)]
            .prop_map(ServerMessage::SecureMessageReq),
        prop_oneof![
            (text(), text()).prop_map(|(receiver, public_key)| Ok(PublicKey {
                receiver,
                public_key
            })),
            code().prop_map(Err)
        ]
        .prop_map(ServerMessage::SecureMessageRes),
        prop_oneof![
            (text(), text(), text()).prop_map(|(sender, session_key, message)| Ok(
                SecureEnvelope {
                    sender,
                    session_key,
                    message
                }
            )),
            code().prop_map(Err)
        ]
        .prop_map(ServerMessage::SecureMessage),
    ]
}

/// One line through a fresh line decoder with a limit that fits it.
fn one_line(bytes: &[u8]) -> Vec<u8> {
    let mut decoder = LineDecoder::with_max_line(bytes.len());
    decoder.feed(bytes);
    let line = decoder.next_line().unwrap().expect("a whole line");
    assert_eq!(decoder.buffered(), 0);
    line
}

proptest! {
    #[test]
    fn client_messages_round_trip(message in client_message(), json_first in any::<bool>()) {
        let dialect = if json_first { Dialect::json_first() } else { Dialect::default() };
        let mut out = Vec::new();
        dialect.encode_client(&message, &mut out);
        prop_assert!(!out.contains(&b' ') || out.iter().position(|&b| b == b' ')
            == Some(dialect.headers.wire_name(message.header()).len()));
        let line = one_line(&out);
        prop_assert_eq!(dialect.decode_client(&line), Ok(message));
    }

    #[test]
    fn server_messages_round_trip(message in server_message(), json_first in any::<bool>()) {
        let dialect = if json_first { Dialect::json_first() } else { Dialect::default() };
        let mut out = Vec::new();
        dialect.encode_server(&message, &mut out);
        let line = one_line(&out);
        prop_assert_eq!(dialect.decode_server(&line), Ok(message));
    }

    #[test]
    fn renamed_round_trip(message in server_message(), request in client_message()) {
        let mut dialect = Dialect::default();
        dialect.headers.rename(message.header(), "RENAMED X").unwrap();
        let mut out = Vec::new();
        dialect.encode_server(&message, &mut out);
        prop_assert!(out.starts_with(b"RENAMED X"));
        prop_assert_eq!(dialect.decode_server(&one_line(&out)), Ok(message));
        let mut dialect = Dialect::default();
        dialect.headers.rename(request.header(), "NEW_NAME").unwrap();
        let mut out = Vec::new();
        dialect.encode_client(&request, &mut out);
        prop_assert_eq!(dialect.decode_client(&one_line(&out)), Ok(request));
    }

    #[test]
    fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300),
                             cut in 1usize..40, limit in 1usize..64) {
        let mut decoder = LineDecoder::with_max_line(limit);
        for chunk in data.chunks(cut) {
            decoder.feed(chunk);
            loop {
                match decoder.next_line() {
                    Ok(None) => break,
                    Ok(Some(line)) => {
                        prop_assert!(line.len() <= limit && line_check(&line));
                    }
                    Err(LineError::TooLong { .. }) => {}
                }
            }
            prop_assert!(decoder.buffered() <= limit + 1 + cut);
        }
        let _ = ClientMessage::decode(&data);
        let _ = ServerMessage::decode(&data);
        let _ = Dialect::json_first().decode_client(&data);
        let _ = DataHello::parse(&data);
        let _ = DataReply::parse(&data);
    }

    #[test]
    fn lines_survive_any_cutting(lines in proptest::collection::vec("[ -~]{0,20}", 0..6),
                                 ends in proptest::collection::vec(0u8..3, 6),
                                 cut in 1usize..10) {
        // A lone "\r" then an empty line ended by "\n" reads as one "\r\n": the protocol
        // cannot tell them apart.
        for i in 1..lines.len() {
            prop_assume!(!(ends[i - 1] == 2 && lines[i].is_empty() && ends[i] == 0));
        }
        let mut stream = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(match ends[i] { 0 => &b"\n"[..], 1 => b"\r\n", _ => b"\r" });
        }
        let mut decoder = LineDecoder::with_max_line(20);
        let mut got = Vec::new();
        for chunk in stream.chunks(cut) {
            decoder.feed(chunk);
            while let Some(line) = decoder.next_line().unwrap() {
                got.push(String::from_utf8(line).unwrap());
            }
        }
        prop_assert_eq!(got, lines);
    }
}

fn line_check(line: &[u8]) -> bool {
    !line.contains(&b'\n') && !line.contains(&b'\r')
}
