//! Parsing scenario, suite and profile files: every step form, and the rendered errors.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::model::*;
use super::*;

const PATH: &str = "scenarios/kv/put-get.yaml";

fn parse(text: &str) -> Scenario {
    match parse_scenario(Path::new(PATH), text, &SuiteConfig::default()) {
        Ok(s) => s,
        Err(d) => panic!("{}", d.render()),
    }
}

fn errors(text: &str) -> String {
    match parse_scenario(Path::new(PATH), text, &SuiteConfig::default()) {
        Ok(_) => panic!("parsed without errors:\n{text}"),
        Err(d) => d.render(),
    }
}

fn steps(steps: &str) -> Vec<Step> {
    parse(&format!("id: t\nsteps:\n{steps}")).steps
}

fn snapshot(name: &str, text: &str) {
    crate::snapshot_settings().bind(|| insta::assert_snapshot!(name, text));
}

fn lit(t: &Template) -> String {
    t.literal().unwrap()
}

fn span(line: u32, col: u32, len: u32) -> Span {
    Span { line, col, len }
}

#[test]
fn meta_keeps_facts_for_tools() {
    let s = parse("id: t\nmeta: { found_by: harness fuzz, seed: 7 }\nsteps:\n  - C -> S: x\n");
    assert_eq!(
        s.meta.get("found_by").map(String::as_str),
        Some("harness fuzz")
    );
    assert_eq!(s.meta.get("seed").map(String::as_str), Some("7"));
    assert!(parse("id: t\nsteps:\n  - C -> S: x\n").meta.is_empty());
    snapshot(
        "meta_not_a_map",
        &errors("id: t\nmeta: [seed, 7]\nsteps:\n  - C -> S: x\n"),
    );
}

#[test]
fn scenario_metadata_and_defaults() {
    let suite = SuiteConfig {
        points: 3,
        tags: vec!["kv".into()],
        timeout: Duration::from_secs(5),
        serial: true,
        ..SuiteConfig::default()
    };
    let text = "\
id: kv/get/after-put
title: a value can be read back
spec: kv.md §2
tags: [level1, kv]
level: should
timeout: 500ms
vars: { key: colour, n: 3, empty: }
xfail: the reference has a bug
skip: not yet
steps:
  - C -> S: GET {{key}}
";
    let s = parse_scenario(Path::new(PATH), text, &suite).unwrap();
    assert_eq!(s.id, "kv/get/after-put");
    assert_eq!(s.span, span(1, 5, 16));
    assert_eq!(s.title.as_deref(), Some("a value can be read back"));
    assert_eq!(s.spec.as_deref(), Some("kv.md §2"));
    assert_eq!(s.tags, ["kv", "level1"]);
    assert_eq!(s.points, 3);
    assert_eq!(s.level, Level::Should);
    assert!(s.serial);
    assert_eq!(s.timeout, Duration::from_millis(500));
    assert_eq!(s.quiet, Duration::from_millis(200));
    assert_eq!(s.vars["key"], "colour");
    assert_eq!(s.vars["n"], "3");
    assert_eq!(s.vars["empty"], "");
    assert_eq!(s.xfail.as_deref(), Some("the reference has a bug"));
    assert_eq!(s.skip.as_deref(), Some("not yet"));
    assert_eq!(s.source.path, Path::new(PATH));

    let s = parse("id: x\npoints: 7\nserial: false\nsteps: [{sleep: 1s}]\n");
    assert_eq!((s.points, s.serial, s.level), (7, false, Level::Must));
}

#[test]
fn arrow_steps() {
    let s = steps(
        "  - C -> S: CONNECT alice{{uniq}}
  - S->C: 222957957
  - S -> C: 're: \\d+ (?P<n>\\w+)'
  - S -> C: re:x
  - C2 -> S:
  - S -> C2: \"CONNECT: OK\"
  - alice_1-b -> S: 'it''s'
",
    );
    let StepKind::Send(send) = &s[0].kind else {
        panic!()
    };
    assert_eq!(send.conn, "C");
    let Payload::Line(t) = &send.payload else {
        panic!()
    };
    assert_eq!(t.to_string(), "CONNECT alice{{uniq}}");
    assert_eq!(t.span, span(3, 13, 21));
    assert_eq!(
        t.parts[1],
        Part::Expr {
            expr: Expr::Var("uniq".into()),
            span: span(3, 26, 8)
        }
    );
    assert_eq!(s[0].span, span(3, 13, 21));

    let StepKind::Expect(e) = &s[1].kind else {
        panic!()
    };
    assert_eq!(e.conn, "C");
    assert!(matches!(&e.matcher, Matcher::Exact(t) if lit(t) == "222957957"));

    let StepKind::Expect(e) = &s[2].kind else {
        panic!()
    };
    assert!(matches!(&e.matcher, Matcher::Regex(t) if lit(t) == r"\d+ (?P<n>\w+)"));
    let StepKind::Expect(e) = &s[3].kind else {
        panic!()
    };
    assert!(matches!(&e.matcher, Matcher::Regex(t) if lit(t) == "x"));

    // An empty message is the empty line; the step then points at its arrow.
    let StepKind::Send(send) = &s[4].kind else {
        panic!()
    };
    assert_eq!(send.conn, "C2");
    assert!(matches!(&send.payload, Payload::Line(t) if t.parts.is_empty()));
    assert_eq!(s[4].span, span(7, 5, 7));

    let StepKind::Expect(e) = &s[5].kind else {
        panic!()
    };
    assert_eq!(e.conn, "C2");
    assert!(matches!(&e.matcher, Matcher::Exact(t) if lit(t) == "CONNECT: OK"));
    assert_eq!(s[5].span, span(8, 14, 13));

    let StepKind::Send(send) = &s[6].kind else {
        panic!()
    };
    assert_eq!(send.conn, "alice_1-b");
    assert!(matches!(&send.payload, Payload::Line(t) if lit(t) == "it's"));
}

#[test]
fn send_forms() {
    let s = steps(
        "  - send: hello
  - send: { conn: C2, bytes: \"{{pbkdf2('secret')}}\" }
  - send:
      hex: 0a ff
      split: [1]
      pause: 10ms
  - send: { text: x }
",
    );
    let kinds: Vec<&Send> = s
        .iter()
        .map(|s| match &s.kind {
            StepKind::Send(send) => send,
            _ => panic!(),
        })
        .collect();
    assert_eq!(kinds[0].conn, "C");
    assert!(matches!(&kinds[0].payload, Payload::Line(t) if lit(t) == "hello"));
    assert_eq!(s[0].span, span(3, 5, 4));
    assert_eq!(kinds[1].conn, "C2");
    let Payload::Bytes(t) = &kinds[1].payload else {
        panic!()
    };
    assert_eq!(t.span, span(4, 30, 22));
    assert!(matches!(&t.parts[0], Part::Expr { span: s, .. } if *s == span(4, 31, 20)));
    assert_eq!(kinds[2].conn, "C2");
    assert!(matches!(&kinds[2].payload, Payload::Hex(t) if lit(t) == "0a ff"));
    assert_eq!(kinds[2].split, [1]);
    assert_eq!(kinds[2].pause, Duration::from_millis(10));
    assert_eq!(kinds[3].conn, "C2");
    assert!(matches!(&kinds[3].payload, Payload::Line(t) if lit(t) == "x"));
    assert_eq!(kinds[3].pause, Duration::ZERO);
}

#[test]
fn expect_forms() {
    let s = steps(
        "  - expect: hi
  - expect: { conn: B, re: 'a.*', within: 2s }
  - expect: { bytes: \"\\x01\" }
  - expect: { hex: '{{hex(x)}}' }
  - expect: { text: 're: literally' }
",
    );
    let e: Vec<&Expect> = s
        .iter()
        .map(|s| match &s.kind {
            StepKind::Expect(e) => e,
            _ => panic!(),
        })
        .collect();
    assert!(matches!(&e[0].matcher, Matcher::Exact(t) if lit(t) == "hi"));
    assert_eq!((e[0].conn.as_str(), e[0].within), ("C", None));
    assert!(matches!(&e[1].matcher, Matcher::Regex(t) if lit(t) == "a.*"));
    assert_eq!(e[1].conn, "B");
    assert_eq!(e[1].within, Some(Duration::from_secs(2)));
    assert!(matches!(&e[2].matcher, Matcher::Bytes(t) if lit(t) == "\u{1}"));
    assert_eq!(e[2].conn, "B");
    assert!(matches!(&e[3].matcher, Matcher::Hex(t) if t.literal().is_none()));
    assert!(matches!(&e[4].matcher, Matcher::Exact(t) if lit(t) == "re: literally"));
}

#[test]
fn other_step_forms_and_the_current_connection() {
    let s = steps(
        "  - connect: A
  - expect_close:
  - expect_close: {}
  - expect_close: B
  - expect_close: { conn: D, within: 1s }
  - expect_silence: 500ms
  - expect_silence: { conn: E, for: 1s }
  - sleep: 1m
  - close:
  - close: F
  - connect:
  - C -> S: x
  - close:
",
    );
    let kinds: Vec<String> = s.iter().map(|s| format!("{:?}", s.kind)).collect();
    let expected = [
        r#"Connect { conn: "A", port: None, key: None }"#,
        r#"ExpectClose { conn: "A", within: None }"#,
        r#"ExpectClose { conn: "A", within: None }"#,
        r#"ExpectClose { conn: "B", within: None }"#,
        r#"ExpectClose { conn: "D", within: Some(1s) }"#,
        "ExpectSilence { conn: None, duration: 500ms }",
        r#"ExpectSilence { conn: Some("E"), duration: 1s }"#,
        "Sleep(60s)",
        r#"Close { conn: "E" }"#,
        r#"Close { conn: "F" }"#,
        r#"Connect { conn: "F", port: None, key: None }"#,
    ];
    assert_eq!(kinds[..11], expected);
    assert!(matches!(&s[12].kind, StepKind::Close { conn } if conn == "C"));
    // Steps other than arrows point at their key.
    assert_eq!(s[4].span, span(7, 5, 12));
}

#[test]
fn suite_config_and_profiles() {
    let c = parse_suite_config(
        Path::new("scenarios/kv/suite.yaml"),
        "protocol: kv\ntitle: KV\nvars: { line_end: \"\\r\\n\" }\ntimeout: 3s\nquiet: 50ms\n\
         serial: true\npoints: 2\ntags: [kv]\n",
    )
    .unwrap();
    assert_eq!(c.protocol.as_deref(), Some("kv"));
    assert_eq!(c.title.as_deref(), Some("KV"));
    assert_eq!(c.vars["line_end"], "\r\n");
    assert_eq!(c.timeout, Duration::from_secs(3));
    assert_eq!(c.quiet, Duration::from_millis(50));
    assert!(c.serial);
    assert_eq!(c.points, 2);
    assert_eq!(c.tags, ["kv"]);
    assert!(c.source.is_some());

    let empty = parse_suite_config(Path::new("suite.yaml"), "# nothing yet\n").unwrap();
    assert_eq!(empty.points, 1);

    let p = parse_profile(
        Path::new("scenarios/kv/course.profile.yaml"),
        "vars: { fib: 0 }\nreference: { dialect: course, strict: true }\n",
    )
    .unwrap();
    assert_eq!(p.name, "course");
    assert_eq!(p.vars["fib"], "0");
    assert_eq!(p.reference["dialect"], "course");
    assert_eq!(p.reference["strict"], "true");
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let out = errors(
        "id: kv/a\nstpes:\n  - C -> S: x\nlevle: must\nsteps:\n  - send: { txt: a }\n  - sned: x\n  - expect: { text: a, whithin: 1s }\n",
    );
    snapshot("unknown_keys", &out);
    // A misspelt required key is reported once, not also as missing.
    let out = errors("id: kv/a\nstep:\n  - sleep: 1s\n");
    assert_eq!(out.matches("error:").count(), 1, "{out}");
    let out = parse_suite_config(
        Path::new("kv/suite.yaml"),
        "protocl: kv\nvars: { a-b: 1 }\nfoo: 1\n",
    )
    .unwrap_err()
    .render();
    snapshot("unknown_keys_suite", &out);
    let out = parse_profile(Path::new("kv/x.profile.yaml"), "var: {}\n")
        .unwrap_err()
        .render();
    assert!(out.contains("did you mean `vars`?"), "{out}");
}

#[test]
fn colon_trap() {
    let out = errors("id: kv/a\nsteps:\n  - C -> S: CONNECT alice\n  - S -> C: CONNECT: OK\n");
    snapshot("colon_trap", &out);
    let out = errors("id: kv/a\nsteps:\n  - S -> C: re: \\d+ OK\n");
    snapshot("colon_trap_regex", &out);
}

#[test]
fn tabs_for_indentation() {
    snapshot(
        "tab_indentation",
        &errors("id: kv/a\nsteps:\n  - C -> S: hi\n\t- S -> C: ho\n"),
    );
}

#[test]
fn bad_types_and_durations() {
    let out = errors(
        "id: kv/a\npoints: two\nserial: yes\nlevel: mustt\ntimeout: 2\ntags: kv\nsteps:\n  - sleep: 5 parsecs\n  - expect: { text: a, within: }\n",
    );
    snapshot("bad_types", &out);
}

#[test]
fn missing_and_empty_steps() {
    snapshot("missing_steps", &errors("title: no steps here\n"));
    snapshot("empty_steps", &errors("id: kv/a\nsteps: []\n"));
    snapshot("empty_file", &errors("# nothing\n"));
    assert!(errors("- a\n- b\n").contains("a scenario must be a mapping, found a list"));
}

#[test]
fn arrow_errors() {
    let out = errors(
        "id: kv/a
steps:
  - C -> C2: hi
  - S -> S: hi
  - s -> C: hi
  - C -> S hello
  - 1x -> S: hi
  - others -> S: hi
  - S -> C: { status: OK }
  - S -> C: a
    within: 1s
",
    );
    snapshot("arrow_errors", &out);
}

#[test]
fn send_and_expect_errors() {
    let out = errors(
        "id: kv/a
steps:
  - send: { text: a, hex: '00' }
  - send: { conn: C2 }
  - send: { hex: 0g }
  - send: { bytes: abc, split: [0, 2, 2, 5] }
  - send:
  - expect: { re: 'a(b' }
  - expect_silence: { conn: C }
  - S -> C: re:(?P<x
",
    );
    snapshot("send_and_expect_errors", &out);
}

#[test]
fn bad_templates() {
    let out = errors(
        "id: kv/a
steps:
  - C -> S: PUT {{ key
  - C -> S: 'x {{crc33(a)}}'
  - C -> S: \"{{ repeat('a') }}\"
  - send: { bytes: \"{{ hex(1 2) }}\" }
",
    );
    snapshot("bad_templates", &out);
}

#[test]
fn duplicate_keys() {
    let out = errors("id: kv/a\nid: kv/b\nsteps:\n  - sleep: 1s\n");
    snapshot("duplicate_keys", &out);
}

#[test]
fn unknown_variables_are_found_before_the_run() {
    let s = parse(
        "id: kv/a
vars: { mine: 1 }
steps:
  - C -> S: PUT {{key}} {{uniq}} {{mine}}
  - S -> C: re:(?P<token>\\w+) {{ colour }}
  - C -> S: TOKEN {{token}} {{upper(tokn)}}
  - S -> C: '{{later}}'
  - S -> C: re:(?<later>.*)
",
    );
    let known: BTreeSet<String> = ["key", "colour"].map(String::from).into();
    let names: Vec<String> = check_vars(&s, &known)
        .iter()
        .map(|d| d.message.clone())
        .collect();
    assert_eq!(
        names,
        ["unknown variable `tokn`", "unknown variable `later`"]
    );
    let diags = check_vars(&s, &BTreeSet::from(["key".to_owned()]));
    let out: Vec<String> = diags.iter().map(Diagnostic::render).collect();
    snapshot("unknown_vars", &out.join("\n"));
}

#[test]
fn check_vars_validates_regexes_without_templates() {
    let mut s = parse("id: kv/a\nsteps:\n  - S -> C: re:ok\n");
    let StepKind::Expect(e) = &mut s.steps[0].kind else {
        panic!()
    };
    e.matcher = Matcher::Regex(template::parse("(", span(3, 15, 1)).unwrap());
    let diags = check_vars(&s, &BTreeSet::new());
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].message, "invalid regular expression");
}

#[test]
fn spans_of_quoted_and_escaped_templates() {
    let s = steps(
        "  - S -> C: \"a\\tb {{x}}\"
  - S -> C: >-
      folded {{x}}
  - S -> C: 're: a {{x}}'
",
    );
    let matcher_template = |i: usize| match &s[i].kind {
        StepKind::Expect(Expect {
            matcher: Matcher::Exact(t) | Matcher::Regex(t),
            ..
        }) => t.clone(),
        _ => panic!(),
    };
    let expr_span = |t: &Template| {
        t.parts
            .iter()
            .find_map(|p| match p {
                Part::Expr { span, .. } => Some(*span),
                Part::Lit(_) => None,
            })
            .unwrap()
    };
    // `\t` is two characters in the file, one in the value.
    assert_eq!(expr_span(&matcher_template(0)), span(3, 19, 5));
    // A block scalar's expressions point at the scalar.
    let t = matcher_template(1);
    assert_eq!(expr_span(&t), t.span);
    assert_eq!(t.span, span(5, 7, 12));
    assert_eq!(expr_span(&matcher_template(2)), span(6, 20, 5));
}

#[test]
fn line_ends_byte_order_marks_and_comments() {
    let text =
        "\u{feff}id: t\r\nsteps:\r\n  - S -> C: GET {{k}}  # the reply\r\n  - C -> S: 'x' # c\r\n";
    let s = parse(text);
    assert_eq!(s.span, span(1, 5, 1));
    let StepKind::Expect(e) = &s.steps[0].kind else {
        panic!()
    };
    let Matcher::Exact(t) = &e.matcher else {
        panic!()
    };
    assert_eq!(t.to_string(), "GET {{k}}");
    assert_eq!(t.span, span(3, 13, 9));
    assert!(matches!(&t.parts[1], Part::Expr { span: s, .. } if *s == span(3, 17, 5)));
    assert_eq!(s.steps[1].span, span(4, 13, 3));
}

mod never_panic {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = parse_scenario(Path::new("x.yaml"), &text, &SuiteConfig::default())
                .map_err(|d| d.render());
        }

        #[test]
        fn on_yaml_like_text(text in "[-a-zA-Z:{}\\[\\]'\"#|>&*!%@ \\t\\n\\\\]{0,120}") {
            let text = format!("id: x\nsteps:\n  - {text}");
            let _ = parse_scenario(Path::new("x.yaml"), &text, &SuiteConfig::default())
                .map_err(|d| d.render());
            let _ = parse_suite_config(Path::new("suite.yaml"), &text);
            let _ = parse_profile(Path::new("p.profile.yaml"), &text);
        }

        #[test]
        fn on_templates(text in "[a-z{}()',\" 0-9-]{0,60}") {
            let step = format!("id: x\nsteps:\n  - C -> S: '{}'\n", text.replace('\'', "''"));
            if let Ok(s) = parse_scenario(Path::new("x.yaml"), &step, &SuiteConfig::default()) {
                let mut env = Env::new();
                env.set("a", "1");
                for step in &s.steps {
                    if let StepKind::Send(Send { payload: Payload::Line(t), .. }) = &step.kind {
                        let _ = template::eval(t, &env);
                        let _ = template::eval_regex(t, &env);
                    }
                }
            }
        }
    }
}

#[test]
fn fan_out_order_timing_and_background() {
    let text = r#"id: chat/t
background:
  - on: PING
    reply: PONG
  - on: 're:^JOINED '
steps:
  - C1 -> S: BROADCAST_REQ {"message":"hi"}
  - S -> others: BROADCAST {"username":"<any>","message":"hi"}
  - any_order:
      - S -> C1: BROADCAST_RESP {"status":"OK"}
      - expect: { conn: others, text: 'X {}', subset: true }
  - expect: { text: PING, at: 10s }
  - expect: { conn: C2, text: PING, at: 10s, tolerance: 50ms }
"#;
    let s = parse(text);
    assert_eq!(s.background.len(), 2);
    assert!(matches!(&s.background[0].on, Matcher::Exact(t) if lit(t) == "PING"));
    assert_eq!(lit(s.background[0].reply.as_ref().unwrap()), "PONG");
    assert!(matches!(&s.background[1].on, Matcher::Regex(t) if lit(t) == "^JOINED "));
    assert!(s.background[1].reply.is_none());

    let StepKind::Expect(e) = &s.steps[1].kind else {
        panic!()
    };
    assert_eq!(e.conn, "others");
    let StepKind::AnyOrder(inner) = &s.steps[2].kind else {
        panic!()
    };
    assert_eq!(inner.len(), 2);
    let StepKind::Expect(e) = &inner[1].kind else {
        panic!()
    };
    assert_eq!(e.conn, "others");
    assert!(e.subset);
    // `others` does not become the current connection: C1 still is.
    let StepKind::Expect(e) = &s.steps[3].kind else {
        panic!()
    };
    assert_eq!(e.conn, "C1");
    assert_eq!(
        e.at,
        Some(At {
            after: Duration::from_secs(10),
            tolerance: Duration::from_millis(100)
        })
    );
    let StepKind::Expect(e) = &s.steps[4].kind else {
        panic!()
    };
    assert_eq!(e.at.unwrap().tolerance, Duration::from_millis(50));

    // A scenario without `background:` takes the suite's; `off` turns it off.
    let suite = parse_suite_config(
        Path::new("scenarios/chat/suite.yaml"),
        "background:\n  - { on: PING, reply: PONG }\n",
    )
    .unwrap();
    let inherit =
        parse_scenario(Path::new(PATH), "id: a\nsteps:\n  - sleep: 1ms\n", &suite).unwrap();
    assert_eq!(inherit.background.len(), 1);
    let off = parse_scenario(
        Path::new(PATH),
        "id: a\nbackground: off\nsteps:\n  - sleep: 1ms\n",
        &suite,
    )
    .unwrap();
    assert!(off.background.is_empty());
}

#[test]
fn fan_out_order_timing_and_background_errors() {
    let out = errors(
        "id: chat/a
background:
  - reply: PONG
  - { on: PING, answer: PONG }
steps:
  - others -> S: hello
  - any_order:
      - C -> S: hello
  - any_order: nope
  - expect: { text: PING, tolerance: 1s }
  - expect: { text: PING, at: 10s, within: 1s }
  - expect: { text: PING, subset: maybe }
",
    );
    snapshot("fan_out_order_timing_and_background_errors", &out);
}

#[test]
fn json_captures_count_as_defined_variables() {
    let s = parse(
        r#"id: a
steps:
  - S -> C: FILE_TRANSFER_RESPONSE {"transferId":"<uuid:tid>"}
  - C -> S: 'DONE {"transferId":"{{tid}}","other":"{{nope}}"}'
"#,
    );
    let diags = template::check_vars(&s, &BTreeSet::new());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].message.contains("nope"), "{}", diags[0].message);
}

#[test]
fn profiles_skip_and_xfail_scenarios_by_id_glob() {
    assert!(glob_match("chat/*", "chat/login/ok"));
    assert!(glob_match("*/joined", "chat/login/joined"));
    assert!(glob_match("chat/*/ok", "chat/login/ok"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exact2"));
    assert!(!glob_match("chat/*/ok", "chat/login/okay"));
    assert!(glob_match("a*b*c", "abc"));
    assert!(!glob_match("a*b*c", "acb"));

    let p = parse_profile(
        Path::new("scenarios/chat/teachers-1.5.profile.yaml"),
        "skip: { 'chat/level3/*': no files }\nxfail: { chat/level1/joined: never sends JOINED }\n",
    )
    .unwrap();
    let s = parse("id: chat/level1/joined\nsteps:\n  - sleep: 1ms\n");
    let applied = p.apply(&s);
    assert_eq!(
        applied.xfail.as_deref(),
        Some("never sends JOINED (profile teachers-1.5)")
    );
    assert!(applied.skip.is_none());
    let s = parse("id: chat/level3/transfer\nsteps:\n  - sleep: 1ms\n");
    assert_eq!(
        p.apply(&s).skip.as_deref(),
        Some("no files (profile teachers-1.5)")
    );
}

#[test]
fn connect_and_bisect_forms_and_errors() {
    let s = steps(
        r#"  - connect: { conn: D1, port: "+1" }
  - bisect:
      conn: C1
      var: n
      low: 1
      high: 50
      send: 'GUESS {"number":{{n}}}'
      found: 'RESP {"result":"Correct"}'
      higher: 'RESP {"code":7005}'
      lower: 'RESP {"code":7006}'
"#,
    );
    assert!(
        matches!(&s[0].kind, StepKind::Connect { conn, port: Some(t), key: None } if conn == "D1" && lit(t) == "+1")
    );
    let StepKind::Bisect(b) = &s[1].kind else {
        panic!()
    };
    assert_eq!(
        (b.conn.as_str(), b.var.as_str(), b.low, b.high),
        ("C1", "n", 1, 50)
    );
    assert!(
        matches!(&b.found.matcher, Matcher::Exact(t) if lit(t) == r#"RESP {"result":"Correct"}"#)
    );

    let out = errors(
        "id: chat/a
steps:
  - bisect: { var: n, low: 9, high: 1, send: x, found: a, higher: b, lower: c }
  - bisect: { var: n, send: x }
  - bisect: nope
  - connect: { conn: D, prot: 1 }
  - expect: { text: PING, until: { flag: 1 } }
  - send: { text: hello, chunk: 10 }
  - send: { packet: { data: x }, chunk: 0 }
",
    );
    snapshot("connect_and_bisect_errors", &out);
}

#[test]
fn rsa_options_of_connect_and_send() {
    let s = steps(
        r#"  - connect: { conn: P, key: none }
  - connect: { conn: Q, key: "none" }
  - connect: { conn: R, key: "{{rsa_key(1024)}}" }
  - connect: { conn: T, key: "-----BEGIN RSA PUBLIC KEY-----\nnot base64\n" }
  - send: { bytes: "{{pbkdf2('pw')}}", clear: true }
  - send: { text: x, clear: false }
  - send: { text: x, clear: "true" }
  - send: { text: x, clear: "{{hash_in_clear}}" }
  - send: { text: x, split: [10, 20] }
  - connect: { conn: U, port: "+1" }
"#,
    );
    let key = |i: usize| match &s[i].kind {
        StepKind::Connect { key: Some(k), .. } => k.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(key(0).offer, KeySpec::None);
    // The word `none`, quoted or not, means no key; `{{'none'}}` would send it.
    assert_eq!(key(1).offer, KeySpec::None);
    assert!(matches!(&key(2).offer, KeySpec::Bytes(t) if t.to_string() == "{{rsa_key(1024)}}"));
    assert!(matches!(&key(3).offer, KeySpec::Bytes(t) if lit(t).ends_with("not base64\n")));
    // The span is the `key` key, for errors about the option.
    assert_eq!(key(0).span, span(3, 25, 3));
    let clear = |i: usize| match &s[i].kind {
        StepKind::Send(send) => send.clear.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(clear(4), Clear::Yes);
    assert_eq!(clear(5), Clear::No);
    assert_eq!(clear(6), Clear::Yes);
    assert!(matches!(clear(7), Clear::Template(t) if t.to_string() == "{{hash_in_clear}}"));
    assert_eq!(clear(8), Clear::No);
    assert!(matches!(&s[9].kind, StepKind::Connect { key: None, .. }));

    // `clear` templates and keys are checked for variables like every other template.
    let with_vars = parse(
        "id: t\nsteps:\n  - connect: { key: \"{{kee}}\" }\n  - send: { text: x, clear: \"{{hash_in_klear}}\" }\n",
    );
    let known = BTreeSet::from(["hash_in_clear".to_owned(), "key".to_owned()]);
    let unknown: Vec<String> = check_vars(&with_vars, &known)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        unknown,
        [
            "scenarios/kv/put-get.yaml:3:22: error: unknown variable `kee`",
            "scenarios/kv/put-get.yaml:4:30: error: unknown variable `hash_in_klear`",
        ]
    );

    let out = errors(
        r#"id: kv-rsa/a
steps:
  - connect: { conn: A, key: ~ }
  - connect: { conn: B, key: [a, b] }
  - send: { text: x, clear: maybe }
  - send: { text: x, clear: "yes" }
  - send: { text: x, clear: 1 }
  - send: { text: x, clear: }
  - connect: { conn: D, key: "{{rsa_key(1001)}}" }
  - connect: { conn: E, key: "{{rsa_key(8192)}}" }
  - connect: { conn: F, kee: none }
  - send: { text: x, clera: true }
"#,
    );
    snapshot("rsa_options_errors", &out);
}

/// Split offsets against what goes on the wire: the message, or on a protocol with RSA
/// blocks (64 bytes) the block of an encrypted send.
#[test]
fn split_offsets_are_checked_against_the_wire() {
    let s = parse(
        r#"id: t
steps:
  - send: { bytes: abc, split: [1, 5] }
  - send: { bytes: abc, split: [10, 63] }
  - send: { bytes: abc, split: [64] }
  - send: { hex: "00 01 02", split: [2, 3], clear: true }
  - send: { bytes: "{{x}}", split: [100] }
  - send: { bytes: abc, split: [9], clear: "{{hash_in_clear}}" }
  - connect: { conn: R, key: none }
  - send: { conn: R, bytes: abc, split: [4] }
  - close: R
  - send: { conn: R, bytes: abc, split: [4] }
"#,
    );
    let lines = |block| -> Vec<String> {
        check_splits(&s, block)
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    // Without encryption the literal messages count, whatever `clear` says.
    assert_eq!(
        lines(None),
        [
            "scenarios/kv/put-get.yaml:3:36: error: split offset 5 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:4:33: error: split offset 10 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:4:37: error: split offset 63 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:5:33: error: split offset 64 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:6:41: error: split offset 3 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:8:33: error: split offset 9 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:10:42: error: split offset 4 is not inside the 3-byte message",
            "scenarios/kv/put-get.yaml:12:42: error: split offset 4 is not inside the 3-byte message",
        ]
    );
    // Encrypted sends cut their block; clear ones and those on a connection opened without
    // a key exchange cut the message; a `clear` template is left to the run.
    let rendered: Vec<String> = check_splits(&s, Some(64))
        .iter()
        .map(Diagnostic::render)
        .collect();
    snapshot("split_offsets_with_rsa_blocks", &rendered.join("\n"));
}

fn serving() -> SuiteConfig {
    SuiteConfig {
        role: crate::scenario::model::Role::Server,
        ..SuiteConfig::default()
    }
}

#[test]
fn server_role_flips_arrows_and_has_its_own_steps() {
    let s = match parse_scenario(
        Path::new(PATH),
        "id: t
steps:
  - C -> S: HELLO
  - S -> C: WELCOME
  - accept: { conn: C2, within: 3s }
  - expect_output: \"Score: 50\"
  - expect_output: { re: '^KEY: \\w+$', stream: stderr, within: 1s }
  - expect_exit: 0
  - expect_exit: { within: 2s }
  - expect_exit: ~
  - expect: { packet: { data: \"<any>\" }, until: { flag: 1 }, joined: { data: abc } }
",
        &serving(),
    ) {
        Ok(s) => s.steps,
        Err(d) => panic!("{}", d.render()),
    };
    assert!(matches!(&s[0].kind, StepKind::Expect(e) if e.conn == "C"));
    assert!(matches!(&s[1].kind, StepKind::Send(send) if send.conn == "C"));
    assert!(
        matches!(&s[2].kind, StepKind::Accept { conn, within: Some(d) } if conn == "C2" && *d == Duration::from_secs(3))
    );
    assert!(
        matches!(&s[3].kind, StepKind::ExpectOutput { matcher: Matcher::Exact(t), stderr: false, within: None } if lit(t) == "Score: 50")
    );
    assert!(matches!(
        &s[4].kind,
        StepKind::ExpectOutput {
            matcher: Matcher::Regex(_),
            stderr: true,
            within: Some(_)
        }
    ));
    assert!(matches!(
        &s[5].kind,
        StepKind::ExpectExit {
            code: Some(0),
            within: None
        }
    ));
    assert!(matches!(
        &s[6].kind,
        StepKind::ExpectExit {
            code: None,
            within: Some(_)
        }
    ));
    assert!(matches!(
        &s[7].kind,
        StepKind::ExpectExit {
            code: None,
            within: None
        }
    ));
    assert!(
        matches!(&s[8].kind, StepKind::Expect(e) if e.joined.as_ref().is_some_and(|j| j.fields.len() == 1))
    );

    let server_errors = match parse_scenario(
        Path::new(PATH),
        "id: t
steps:
  - connect: C
  - S -> others: hi
  - expect_exit: zero
  - expect_output: { text: a, re: b }
  - expect_output: { text: a, stream: stdin }
  - expect: { text: a, joined: { data: x } }
",
        &serving(),
    ) {
        Ok(_) => panic!("parsed without errors"),
        Err(d) => d.render(),
    };
    let client_errors = errors(
        "id: t
steps:
  - accept: C
  - expect_exit: 0
  - expect_output: hello
",
    );
    snapshot(
        "server_role_errors",
        &format!("role: server\n{server_errors}\nrole: client\n{client_errors}"),
    );
}

#[test]
fn selection_filters_and_shards() {
    let scenario = |id: &str, tags: &str, level: &str| {
        parse(&format!(
            "id: {id}\ntags: [{tags}]\nlevel: {level}\nsteps:\n  - sleep: 1ms\n"
        ))
    };
    let suite = |dir: &str, scenarios: Vec<Scenario>| Suite {
        dir: dir.into(),
        config: SuiteConfig::default(),
        scenarios,
    };
    let suites = || {
        vec![
            suite(
                "a",
                vec![
                    scenario("a/one", "x", "must"),
                    scenario("a/two", "y", "should"),
                ],
            ),
            suite(
                "b",
                vec![
                    scenario("b/one", "x", "must"),
                    scenario("b/two", "x, y", "must"),
                    scenario("b/three", "z", "must"),
                ],
            ),
        ]
    };
    let ids = |sel: Selection| -> Vec<String> {
        sel.apply(suites())
            .iter()
            .flat_map(|s| s.scenarios.iter().map(|sc| sc.id.clone()))
            .collect()
    };
    assert_eq!(ids(Selection::default()).len(), 5);
    assert_eq!(
        ids(Selection {
            ids: vec!["*/one".into()],
            ..Selection::default()
        }),
        ["a/one", "b/one"]
    );
    assert_eq!(
        ids(Selection {
            tags: vec!["y".into()],
            level: Some(Level::Must),
            ..Selection::default()
        }),
        ["b/two"]
    );
    let shard = |k| {
        ids(Selection {
            shard: Some((k, 2)),
            ..Selection::default()
        })
    };
    assert_eq!(shard(1), ["a/one", "b/one", "b/three"]);
    assert_eq!(shard(2), ["a/two", "b/two"]);
    // A suite left with nothing is dropped.
    let only_b = Selection {
        ids: vec!["b/*".into()],
        ..Selection::default()
    }
    .apply(suites());
    assert_eq!(only_b.len(), 1);
}

#[test]
fn nested_calls_stop_at_the_expansion_limit() {
    use super::template::{Env, TemplateErrorKind, eval, parse};
    let text = format!(
        "{{{{{}repeat('ab', 1000){}}}}}",
        "hex(".repeat(20),
        ")".repeat(20)
    );
    let t = parse(&text, Span::default()).unwrap();
    let started = std::time::Instant::now();
    let err = eval(&t, &Env::default()).expect_err("over the limit");
    assert!(matches!(err.kind, TemplateErrorKind::TooLarge), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
