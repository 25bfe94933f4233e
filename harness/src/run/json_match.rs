//! Matching a received `HEADER <json>` message against an expected one, comparing the bodies
//! as JSON: key order and spacing do not matter, numbers compare by value.
//!
//! ```text
//! "<any>"            any value (the key must be present)
//! "<any:name>"       any value, bound to the variable `name` (strings without quotes,
//!                    anything else as compact JSON)
//! "<string>"         any string          "<string:name>" binds it
//! "<number>"         any number          "<number:name>" binds it
//! "<uuid>"           a UUID string       "<uuid:name>" binds it
//! "<re:PATTERN>"     a string matching the regular expression (whole string)
//! ["<unordered>", a, b, ...]
//!                    an array holding a, b, ... in any order
//! ```
//!
//! Objects must have exactly the expected keys, unless the step says `subset: true`: then
//! the received object may hold more (at every depth).

use serde_json::Value;

/// Variables bound by a successful match, in the order they were bound.
pub type Bindings = Vec<(String, String)>;

/// Why a received message does not match, in words, naming the place in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

/// A message split at its first space into a header and an optional body.
pub fn split_message(text: &str) -> (&str, Option<&str>) {
    match text.split_once(' ') {
        Some((header, body)) => (header, Some(body)),
        None => (text, None),
    }
}

/// Whether `expected` is a message whose body should be compared as JSON.
pub fn has_json_body(expected: &str) -> bool {
    let (_, body) = split_message(expected);
    body.is_some_and(|b| {
        let b = b.trim_start();
        b.starts_with('{') || b.starts_with('[')
    })
}

/// Matches `actual` against `expected`, both `HEADER <json>`. `Err` says where they differ;
/// `Ok` returns the variables the patterns bound.
pub fn match_message(expected: &str, actual: &str, subset: bool) -> Result<Bindings, Mismatch> {
    let (want_header, want_body) = split_message(expected);
    let (got_header, got_body) = split_message(actual);
    if want_header != got_header {
        return Err(Mismatch(format!(
            "header `{got_header}`, expected `{want_header}`"
        )));
    }
    let want_body = want_body.unwrap_or("{}");
    let pattern: Value = serde_json::from_str(want_body).map_err(|e| {
        Mismatch(format!(
            "the expected body is not JSON ({e}); fix the scenario"
        ))
    })?;
    let Some(got_body) = got_body else {
        return Err(Mismatch("no body, expected a JSON body".into()));
    };
    let value: Value = serde_json::from_str(got_body)
        .map_err(|e| Mismatch(format!("the body is not JSON: {e}")))?;
    let mut bindings = Vec::new();
    match_value(&pattern, &value, subset, &mut String::new(), &mut bindings)?;
    Ok(bindings)
}

/// A `"<...>"` placeholder: its kind and the variable it binds.
fn placeholder(s: &str) -> Option<(&str, Option<&str>)> {
    let inner = s.strip_prefix('<')?.strip_suffix('>')?;
    let (kind, name) = match inner.split_once(':') {
        Some((k, n)) => (k, Some(n)),
        None => (inner, None),
    };
    matches!(kind, "any" | "string" | "number" | "uuid").then_some((kind, name))
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The value as a variable holds it: strings as they are, anything else as compact JSON.
fn bound_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the body".to_owned()
    } else {
        format!("`{path}`")
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn match_value(
    pattern: &Value,
    value: &Value,
    subset: bool,
    path: &mut String,
    bindings: &mut Bindings,
) -> Result<(), Mismatch> {
    if let Value::String(s) = pattern
        && let Some(re) = s.strip_prefix("<re:").and_then(|r| r.strip_suffix('>'))
    {
        let compiled = regex::Regex::new(&format!(r"\A(?:{re})\z")).map_err(|e| {
            Mismatch(format!(
                "{}: invalid regular expression in the scenario: {e}",
                at(path)
            ))
        })?;
        return match value.as_str() {
            Some(text) if compiled.is_match(text) => Ok(()),
            _ => Err(Mismatch(format!(
                "{}: expected a string matching `{re}`, got {value}",
                at(path)
            ))),
        };
    }
    if let Value::String(s) = pattern
        && let Some((kind, name)) = placeholder(s)
    {
        let ok = match kind {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "uuid" => value.as_str().is_some_and(is_uuid),
            _ => true,
        };
        if !ok {
            return Err(Mismatch(format!(
                "{}: expected {}, got {value}",
                at(path),
                match kind {
                    "string" => "a string",
                    "number" => "a number",
                    _ => "a UUID string",
                }
            )));
        }
        if let Some(name) = name {
            bindings.push((name.to_owned(), bound_text(value)));
        }
        return Ok(());
    }
    match (pattern, value) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, want_value) in want {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let result = match got.get(key) {
                    Some(got_value) => match_value(want_value, got_value, subset, path, bindings),
                    None => Err(Mismatch(format!("{} is missing", at(path)))),
                };
                path.truncate(len);
                result?;
            }
            if !subset && let Some(extra) = got.keys().find(|k| !want.contains_key(*k)) {
                let place = if path.is_empty() {
                    String::new()
                } else {
                    format!(" in `{path}`")
                };
                return Err(Mismatch(format!(
                    "unexpected key `{extra}`{place} (write `subset: true` to allow extra keys)"
                )));
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(got)) => {
            if let Some(Value::String(first)) = want.first()
                && first == "<unordered>"
            {
                return match_unordered(&want[1..], got, subset, path, bindings);
            }
            if want.len() != got.len() {
                return Err(Mismatch(format!(
                    "{}: expected {} elements, got {}",
                    at(path),
                    want.len(),
                    got.len()
                )));
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let result = match_value(w, g, subset, path, bindings);
                path.truncate(len);
                result?;
            }
            Ok(())
        }
        (Value::Number(w), Value::Number(g)) => {
            let same = match (w.as_i64(), g.as_i64()) {
                (Some(a), Some(b)) => a == b,
                _ => w.as_f64() == g.as_f64(),
            };
            if same {
                Ok(())
            } else {
                Err(Mismatch(format!("{}: expected {w}, got {g}", at(path))))
            }
        }
        (w, g) if w == g => Ok(()),
        (w, g) if std::mem::discriminant(w) == std::mem::discriminant(g) => {
            Err(Mismatch(format!("{}: expected {w}, got {g}", at(path))))
        }
        (w, g) => Err(Mismatch(format!(
            "{}: expected {} ({w}), got {} ({g})",
            at(path),
            kind_of(w),
            kind_of(g)
        ))),
    }
}

/// Every expected element matches a distinct received one, in any order, and (unless
/// `subset`) nothing is left over. Greedy: each pattern takes the first free element it
/// matches, which is exact for the literal values suites use.
fn match_unordered(
    want: &[Value],
    got: &[Value],
    subset: bool,
    path: &str,
    bindings: &mut Bindings,
) -> Result<(), Mismatch> {
    let mut taken = vec![false; got.len()];
    for w in want {
        let found = got.iter().enumerate().position(|(i, g)| {
            if taken[i] {
                return false;
            }
            let mut scratch = Vec::new();
            let mut p = path.to_owned();
            if match_value(w, g, subset, &mut p, &mut scratch).is_ok() {
                bindings.extend(scratch);
                true
            } else {
                false
            }
        });
        match found {
            Some(i) => taken[i] = true,
            None => {
                return Err(Mismatch(format!("{}: no element matches {w}", at(path))));
            }
        }
    }
    if !subset && let Some(i) = taken.iter().position(|t| !t) {
        return Err(Mismatch(format!(
            "{}: unexpected element {}",
            at(path),
            got[i]
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(expected: &str, actual: &str) -> Bindings {
        match match_message(expected, actual, false) {
            Ok(b) => b,
            Err(m) => panic!("{expected} vs {actual}: {}", m.0),
        }
    }

    fn err(expected: &str, actual: &str) -> String {
        match match_message(expected, actual, false) {
            Ok(_) => panic!("{expected} should not match {actual}"),
            Err(m) => m.0,
        }
    }

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        ok(
            r#"LOGIN_RESP {"status":"ERROR","code":5001}"#,
            r#"LOGIN_RESP { "code": 5001, "status": "ERROR" }"#,
        );
    }

    #[test]
    fn differences_name_the_place() {
        assert_eq!(
            err(
                r#"LOGIN_RESP {"status":"OK"}"#,
                r#"LOGIN_RESP {"status":"ERROR"}"#
            ),
            r#"`status`: expected "OK", got "ERROR""#
        );
        assert_eq!(
            err(
                r#"LOGIN_RESP {"status":"ERROR","code":5001}"#,
                r#"LOGIN_RESP {"status":"ERROR","code":"5001"}"#
            ),
            r#"`code`: expected a number (5001), got a string ("5001")"#
        );
        assert_eq!(
            err(r#"A {"a":{"b":1}}"#, r#"A {"a":{"b":2}}"#),
            "`a.b`: expected 1, got 2"
        );
        assert_eq!(err(r#"A {"a":1}"#, r#"A {}"#), "`a` is missing");
        assert_eq!(
            err(r#"A {"a":1}"#, r#"A {"a":1,"b":2}"#),
            "unexpected key `b` (write `subset: true` to allow extra keys)"
        );
        assert_eq!(
            err(r#"A {"a":1}"#, r#"B {"a":1}"#),
            "header `B`, expected `A`"
        );
        assert_eq!(err(r#"A {"a":1}"#, "A"), "no body, expected a JSON body");
        assert!(err(r#"A {"a":1}"#, "A {nope").starts_with("the body is not JSON"));
        assert_eq!(
            err(r#"A {"a":[1,2]}"#, r#"A {"a":[1]}"#),
            "`a`: expected 2 elements, got 1"
        );
    }

    #[test]
    fn subset_allows_extra_keys_at_every_depth() {
        match_message(r#"A {"a":{"b":1}}"#, r#"A {"a":{"b":1,"c":2},"d":3}"#, true).unwrap();
    }

    #[test]
    fn placeholders_match_and_bind() {
        let b = ok(
            r#"F {"id":"<uuid:tid>","n":"<number:n>","s":"<string>","x":"<any:x>"}"#,
            r#"F {"id":"123e4567-e89b-12d3-a456-426614174000","n":7,"s":"hi","x":{"k":[1]}}"#,
        );
        assert_eq!(
            b,
            vec![
                (
                    "tid".to_owned(),
                    "123e4567-e89b-12d3-a456-426614174000".to_owned()
                ),
                ("n".to_owned(), "7".to_owned()),
                ("x".to_owned(), r#"{"k":[1]}"#.to_owned()),
            ]
        );
        assert_eq!(
            err(r#"F {"id":"<uuid>"}"#, r#"F {"id":"nope"}"#),
            r#"`id`: expected a UUID string, got "nope""#
        );
        assert_eq!(
            err(r#"F {"n":"<number>"}"#, r#"F {"n":"7"}"#),
            r#"`n`: expected a number, got "7""#
        );
        ok(
            r#"W {"msg":"<re:.*[0-9].*>"}"#,
            r#"W {"msg":"Welcome to the server 1.5"}"#,
        );
        assert_eq!(
            err(r#"W {"msg":"<re:.*[0-9].*>"}"#, r#"W {"msg":"Welcome"}"#),
            r#"`msg`: expected a string matching `.*[0-9].*`, got "Welcome""#
        );
        // Not a placeholder: compared as text.
        ok(r#"F {"s":"<b>"}"#, r#"F {"s":"<b>"}"#);
    }

    #[test]
    fn unordered_arrays() {
        ok(
            r#"L {"users":["<unordered>","a","b"]}"#,
            r#"L {"users":["b","a"]}"#,
        );
        assert_eq!(
            err(
                r#"L {"users":["<unordered>","a"]}"#,
                r#"L {"users":["b","a"]}"#
            ),
            r#"`users`: unexpected element "b""#
        );
        assert_eq!(
            err(r#"L {"users":["<unordered>","c"]}"#, r#"L {"users":["b"]}"#),
            r#"`users`: no element matches "c""#
        );
        match_message(
            r#"L {"users":["<unordered>","a"]}"#,
            r#"L {"users":["b","a"]}"#,
            true,
        )
        .unwrap();
    }

    #[test]
    fn which_messages_have_json_bodies() {
        assert!(has_json_body(r#"LOGIN {"username":"a"}"#));
        assert!(has_json_body("X [1]"));
        assert!(!has_json_body("PING"));
        assert!(!has_json_body("MSG This is text"));
        assert!(!has_json_body("GET blue"));
    }
}
