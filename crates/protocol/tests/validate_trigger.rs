//! Table-driven tests of trigger validation (PROTOCOL.md section 3.5): one `check` helper,
//! many tiny cases, every code and every field.

use gcx_protocol::Catalogue;
use gcx_protocol::validate::{validate_trigger, validate_trigger_bytes};
use serde_json::{Value, json};

const AGENT: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";
const CORR: &str = "550e8400-e29b-41d4-a716-446655440000";

/// A valid knowledge_search trigger; each case changes one thing.
fn base() -> Value {
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": "refund policy for enterprise accounts", "languageCode": "en-US"},
        "executionContext": {"agentId": AGENT, "sessionId": "session-987654321", "interactionType": "voice"},
        "correlationId": CORR,
        "maxRetries": 2
    })
}

/// `base()` with `pointer` set to `value` (or removed when `value` is `None`).
fn with(pointer: &str, value: Option<Value>) -> Value {
    let mut v = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        Some(x) => {
            obj.insert(key.to_owned(), x);
        }
        None => {
            obj.remove(key);
        }
    }
    v
}

/// `base()` with the key `key` (taken literally, `/` and `~` included) of the object at
/// `parent` set to `value`.
fn with_key(parent: &str, key: &str, value: Value) -> Value {
    let mut v = base();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    v
}

/// Validates `input` and compares the (path, code) of every violation, in order.
/// An empty `expected` means the input must be valid.
#[track_caller]
fn check(input: Value, expected: &[(&str, &str)]) {
    let got = validate_trigger(&input, &Catalogue::builtin());
    match got {
        Ok(_) => assert!(
            expected.is_empty(),
            "valid, but expected {expected:?} for {input}"
        ),
        Err(vs) => {
            let got: Vec<(String, String)> = vs
                .iter()
                .map(|v| (v.path.clone(), v.code.to_string()))
                .collect();
            let want: Vec<(String, String)> = expected
                .iter()
                .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
                .collect();
            assert_eq!(got, want, "for {input}\nviolations: {vs:#?}");
            for v in &vs {
                assert!(!v.message.is_empty(), "{v:?}");
            }
        }
    }
}

/// The words a user reads: every violation's path, code and message, for one bad input
/// per kind of rule. `cargo insta review` (or `INSTA_UPDATE=always`) takes a change.
#[test]
fn every_violation_message_reads_as_written() {
    let sentiment = |matrix: Value| {
        let mut v = base();
        v["actionType"] = json!("sentiment_analysis");
        v["parameterMatrix"] = matrix;
        v
    };
    let cases: Vec<(&str, Value)> = vec![
        ("not an object", json!([1])),
        ("empty object", json!({})),
        ("unknown top-level key", with_key("", "extra", json!(1))),
        (
            "action type not a string",
            with("/actionType", Some(json!(7))),
        ),
        (
            "unknown action type",
            with("/actionType", Some(json!("teleport"))),
        ),
        (
            "parameter matrix not an object",
            with("/parameterMatrix", Some(json!([]))),
        ),
        (
            "required parameter missing",
            with("/parameterMatrix/query", None),
        ),
        (
            "null parameter",
            with("/parameterMatrix/languageCode", Some(Value::Null)),
        ),
        (
            "query too long",
            with("/parameterMatrix/query", Some(json!("q".repeat(1025)))),
        ),
        (
            "language tag",
            with("/parameterMatrix/languageCode", Some(json!("en_US"))),
        ),
        (
            "integer out of range",
            with("/parameterMatrix/maxResults", Some(json!(51))),
        ),
        (
            "integer with a fraction",
            with("/parameterMatrix/maxResults", Some(json!(2.0))),
        ),
        (
            "unknown parameter",
            with("/parameterMatrix/limit", Some(json!(3))),
        ),
        ("one-of: none", sentiment(json!({}))),
        (
            "one-of: both",
            sentiment(json!({"text": "great", "transcriptId": "t-1"})),
        ),
        (
            "context not an object",
            with("/executionContext", Some(json!("ctx"))),
        ),
        (
            "agent id",
            with("/executionContext/agentId", Some(json!("agent-7"))),
        ),
        (
            "session id empty",
            with("/executionContext/sessionId", Some(json!(""))),
        ),
        (
            "interaction type",
            with("/executionContext/interactionType", Some(json!("fax"))),
        ),
        (
            "context value not a string",
            with("/executionContext/extra", Some(json!(1))),
        ),
        (
            "context key missing",
            with("/executionContext/sessionId", None),
        ),
        (
            "correlation id not a UUID",
            with("/correlationId", Some(json!("abc"))),
        ),
        (
            "correlation id not v4",
            with(
                "/correlationId",
                Some(json!("550e8400-e29b-11d4-a716-446655440000")),
            ),
        ),
        ("max retries", with("/maxRetries", Some(json!(4)))),
    ];
    let mut text = String::new();
    for (name, input) in cases {
        text.push_str(&format!("{name}:\n"));
        match validate_trigger(&input, &Catalogue::builtin()) {
            Ok(_) => panic!("{name}: valid"),
            Err(vs) => {
                for v in vs {
                    text.push_str(&format!("  {:?} {}: {}\n", v.path, v.code, v.message));
                }
            }
        }
    }
    let too_big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000));
    for v in validate_trigger_bytes(too_big.as_bytes(), &Catalogue::builtin()).unwrap_err() {
        text.push_str(&format!(
            "over 64 KiB:\n  {:?} {}: {}\n",
            v.path, v.code, v.message
        ));
    }
    for v in validate_trigger_bytes(b"{not json", &Catalogue::builtin()).unwrap_err() {
        text.push_str(&format!(
            "not JSON:\n  {:?} {}: {}\n",
            v.path, v.code, v.message
        ));
    }
    insta::assert_snapshot!(text);
}

#[track_caller]
fn check_str(input: &str, expected: &[(&str, &str)]) {
    check(serde_json::from_str(input).unwrap(), expected)
}

// ---- valid payloads ----------------------------------------------------------------

#[test]
fn the_spec_example_is_valid() {
    check(base(), &[]);
}

#[test]
fn max_retries_may_be_absent() {
    check(with("/maxRetries", None), &[]);
    let p = validate_trigger(&with("/maxRetries", None), &Catalogue::builtin()).unwrap();
    assert_eq!(p.max_retries, 0);
}

#[test]
fn max_retries_bounds_are_inclusive() {
    check(with("/maxRetries", Some(json!(0))), &[]);
    check(with("/maxRetries", Some(json!(3))), &[]);
}

#[test]
fn correlation_id_either_case_is_lowercased() {
    let v = with("/correlationId", Some(json!(CORR.to_uppercase())));
    let p = validate_trigger(&v, &Catalogue::builtin()).unwrap();
    assert_eq!(p.correlation_id.to_string(), CORR);
    let back = serde_json::to_value(&p).unwrap();
    assert_eq!(back["correlationId"], json!(CORR));
}

#[test]
fn agent_id_of_any_version_and_case() {
    check(
        with(
            "/executionContext/agentId",
            Some(json!("A1B2C3D4-E5F6-1890-ABCD-EF1234567890")),
        ),
        &[],
    );
    check(
        with(
            "/executionContext/agentId",
            Some(json!("00000000-0000-0000-0000-000000000000")),
        ),
        &[],
    );
}

#[test]
fn extra_context_keys_are_kept() {
    let v = with("/executionContext/queue", Some(json!("billing")));
    let p = validate_trigger(&v, &Catalogue::builtin()).unwrap();
    assert_eq!(p.execution_context["queue"], "billing");
}

#[test]
fn every_interaction_type() {
    for t in ["voice", "chat", "email", "message", "callback", "video"] {
        check(
            with("/executionContext/interactionType", Some(json!(t))),
            &[],
        );
    }
}

#[test]
fn other_actions_valid() {
    check_str(
        &format!(
            r#"{{"actionType":"document_extraction","parameterMatrix":{{"documentId":"doc-1","fields":["a","b"],"languageCode":"de"}},
            "executionContext":{{"agentId":"{AGENT}","sessionId":"s","interactionType":"email"}},"correlationId":"{CORR}"}}"#
        ),
        &[],
    );
    check_str(
        &format!(
            r#"{{"actionType":"sentiment_analysis","parameterMatrix":{{"transcriptId":"t-1"}},
            "executionContext":{{"agentId":"{AGENT}","sessionId":"s","interactionType":"chat"}},"correlationId":"{CORR}"}}"#
        ),
        &[],
    );
}

#[test]
fn lengths_count_unicode_scalar_values() {
    // 128 scalar values, 512 bytes: at the bound.
    check(
        with("/executionContext/sessionId", Some(json!("😀".repeat(128)))),
        &[],
    );
    check(
        with("/executionContext/sessionId", Some(json!("é".repeat(129)))),
        &[("/executionContext/sessionId", "range")],
    );
    check(
        with("/parameterMatrix/query", Some(json!("ü".repeat(1024)))),
        &[],
    );
    check(
        with("/parameterMatrix/query", Some(json!("ü".repeat(1025)))),
        &[("/parameterMatrix/query", "range")],
    );
}

// ---- top level ---------------------------------------------------------------------

#[test]
fn not_an_object() {
    check_str("[]", &[("", "type")]);
    check_str("null", &[("", "type")]);
    check_str("\"x\"", &[("", "type")]);
    check_str("42", &[("", "type")]);
}

#[test]
fn empty_object_lists_every_required_key() {
    check_str(
        "{}",
        &[
            ("/actionType", "required"),
            ("/parameterMatrix", "required"),
            ("/executionContext", "required"),
            ("/correlationId", "required"),
        ],
    );
}

#[test]
fn unknown_top_level_key() {
    check(
        with("/priority", Some(json!(1))),
        &[("/priority", "unknown")],
    );
}

#[test]
fn unknown_key_is_pointer_escaped() {
    check(with_key("", "a~b", json!(1)), &[("/a~0b", "unknown")]);
    check(with_key("", "x/y", json!(true)), &[("/x~1y", "unknown")]);
    check(with_key("", "~1/", json!(true)), &[("/~01~1", "unknown")]);
}

#[test]
fn every_violation_is_reported_in_document_order() {
    check_str(
        r#"{"actionType":5,"parameterMatrix":null,"executionContext":[],"correlationId":"nope","maxRetries":7,"extra":1}"#,
        &[
            ("/actionType", "type"),
            ("/parameterMatrix", "null"),
            ("/executionContext", "type"),
            ("/correlationId", "format"),
            ("/maxRetries", "range"),
            ("/extra", "unknown"),
        ],
    );
}

// ---- actionType --------------------------------------------------------------------

#[test]
fn action_type_rules() {
    check(with("/actionType", None), &[("/actionType", "required")]);
    check(
        with("/actionType", Some(Value::Null)),
        &[("/actionType", "null")],
    );
    check(
        with("/actionType", Some(json!(1))),
        &[("/actionType", "type")],
    );
    check(
        with("/actionType", Some(json!("translate"))),
        &[("/actionType", "enum")],
    );
    check(
        with("/actionType", Some(json!("Knowledge_Search"))),
        &[("/actionType", "enum")],
    );
}

#[test]
fn unknown_action_message_lists_the_catalogue() {
    let e = validate_trigger(
        &with("/actionType", Some(json!("translate"))),
        &Catalogue::builtin(),
    )
    .unwrap_err();
    assert!(e[0].message.contains("\"translate\""), "{}", e[0].message);
    assert!(
        e[0].message
            .contains("knowledge_search, document_extraction, sentiment_analysis"),
        "{}",
        e[0].message
    );
}

#[test]
fn unknown_action_still_checks_nulls_in_parameters() {
    let mut v = with("/actionType", Some(json!("translate")));
    v["parameterMatrix"]["query"] = Value::Null;
    check(
        v,
        &[("/actionType", "enum"), ("/parameterMatrix/query", "null")],
    );
}

// ---- parameterMatrix ---------------------------------------------------------------

#[test]
fn parameter_matrix_shape() {
    check(
        with("/parameterMatrix", None),
        &[("/parameterMatrix", "required")],
    );
    check(
        with("/parameterMatrix", Some(Value::Null)),
        &[("/parameterMatrix", "null")],
    );
    check(
        with("/parameterMatrix", Some(json!(["query"]))),
        &[("/parameterMatrix", "type")],
    );
}

#[test]
fn knowledge_search_query() {
    check(
        with("/parameterMatrix/query", None),
        &[("/parameterMatrix/query", "required")],
    );
    check(
        with("/parameterMatrix/query", Some(Value::Null)),
        &[("/parameterMatrix/query", "null")],
    );
    check(
        with("/parameterMatrix/query", Some(json!(42))),
        &[("/parameterMatrix/query", "type")],
    );
    check(
        with("/parameterMatrix/query", Some(json!(""))),
        &[("/parameterMatrix/query", "range")],
    );
}

#[test]
fn knowledge_search_language_code() {
    for ok in ["en", "en-US", "zh-Hant-TW", "es-419", "FIL"] {
        check(with("/parameterMatrix/languageCode", Some(json!(ok))), &[]);
    }
    for bad in ["english", "en_US", "e", "en-", "en-toolongpart", ""] {
        check(
            with("/parameterMatrix/languageCode", Some(json!(bad))),
            &[("/parameterMatrix/languageCode", "format")],
        );
    }
    check(
        with("/parameterMatrix/languageCode", Some(json!(["en"]))),
        &[("/parameterMatrix/languageCode", "type")],
    );
}

#[test]
fn knowledge_search_max_results() {
    check(with("/parameterMatrix/maxResults", Some(json!(1))), &[]);
    check(with("/parameterMatrix/maxResults", Some(json!(50))), &[]);
    for bad in [
        json!(0),
        json!(51),
        json!(-1),
        json!(18446744073709551615u64),
    ] {
        check(
            with("/parameterMatrix/maxResults", Some(bad)),
            &[("/parameterMatrix/maxResults", "range")],
        );
    }
    check_str(
        &base()
            .to_string()
            .replace(r#""maxRetries":2"#, r#""maxRetries":2.0"#),
        &[("/maxRetries", "type")],
    );
    for bad in ["5.0", "5e0", "5.5", "\"5\"", "true"] {
        let text = base().to_string().replace(
            r#""languageCode":"en-US""#,
            &format!(r#""maxResults":{bad}"#),
        );
        check_str(&text, &[("/parameterMatrix/maxResults", "type")]);
    }
}

#[test]
fn unknown_parameter() {
    check(
        with("/parameterMatrix/limit", Some(json!(5))),
        &[("/parameterMatrix/limit", "unknown")],
    );
    check(
        with("/parameterMatrix/limit", Some(Value::Null)),
        &[("/parameterMatrix/limit", "unknown")],
    );
    check(
        with_key("/parameterMatrix", "a~b/c", json!(5)),
        &[("/parameterMatrix/a~0b~1c", "unknown")],
    );
}

fn doc(matrix: Value) -> Value {
    let mut v = base();
    v["actionType"] = json!("document_extraction");
    v["parameterMatrix"] = matrix;
    v
}

#[test]
fn document_extraction_rules() {
    check(doc(json!({"documentId": "d"})), &[]);
    check(
        doc(json!({})),
        &[("/parameterMatrix/documentId", "required")],
    );
    check(
        doc(json!({"documentId": "x".repeat(257)})),
        &[("/parameterMatrix/documentId", "range")],
    );
    check(doc(json!({"documentId": "x".repeat(256)})), &[]);
    check(
        doc(json!({"documentId": "d", "fields": "name"})),
        &[("/parameterMatrix/fields", "type")],
    );
    check(
        doc(json!({"documentId": "d", "fields": []})),
        &[("/parameterMatrix/fields", "range")],
    );
    let fifty_one: Vec<String> = (0..51).map(|i| format!("f{i}")).collect();
    check(
        doc(json!({"documentId": "d", "fields": fifty_one})),
        &[("/parameterMatrix/fields", "range")],
    );
    check(
        doc(json!({"documentId": "d", "fields": ["ok", null, 3, "", "y".repeat(129)]})),
        &[
            ("/parameterMatrix/fields/1", "null"),
            ("/parameterMatrix/fields/2", "type"),
            ("/parameterMatrix/fields/3", "range"),
            ("/parameterMatrix/fields/4", "range"),
        ],
    );
    check(
        doc(json!({"documentId": "d", "languageCode": "xx-"})),
        &[("/parameterMatrix/languageCode", "format")],
    );
    check(
        doc(json!({"documentId": "d", "query": "q"})),
        &[("/parameterMatrix/query", "unknown")],
    );
}

fn sentiment(matrix: Value) -> Value {
    let mut v = base();
    v["actionType"] = json!("sentiment_analysis");
    v["parameterMatrix"] = matrix;
    v
}

#[test]
fn sentiment_one_of() {
    check(sentiment(json!({"text": "great service"})), &[]);
    check(sentiment(json!({"transcriptId": "t"})), &[]);
    check(sentiment(json!({})), &[("/parameterMatrix", "one_of")]);
    check(
        sentiment(json!({"languageCode": "en"})),
        &[("/parameterMatrix", "one_of")],
    );
    check(
        sentiment(json!({"text": "a", "transcriptId": "t"})),
        &[("/parameterMatrix", "one_of")],
    );
    // A null member is reported as null and does not count as given.
    check(
        sentiment(json!({"text": null, "transcriptId": "t"})),
        &[("/parameterMatrix/text", "null")],
    );
    check(
        sentiment(json!({"text": null})),
        &[
            ("/parameterMatrix/text", "null"),
            ("/parameterMatrix", "one_of"),
        ],
    );
    check(
        sentiment(json!({"text": "x".repeat(10001)})),
        &[("/parameterMatrix/text", "range")],
    );
    check(sentiment(json!({"text": "x".repeat(10000)})), &[]);
    check(
        sentiment(json!({"transcriptId": ""})),
        &[("/parameterMatrix/transcriptId", "range")],
    );
}

#[test]
fn one_of_message_names_the_group() {
    let e = validate_trigger(
        &sentiment(json!({"text": "a", "transcriptId": "t"})),
        &Catalogue::builtin(),
    )
    .unwrap_err();
    assert!(
        e[0].message.contains("text, transcriptId"),
        "{}",
        e[0].message
    );
}

// ---- executionContext --------------------------------------------------------------

#[test]
fn execution_context_shape() {
    check(
        with("/executionContext", None),
        &[("/executionContext", "required")],
    );
    check(
        with("/executionContext", Some(Value::Null)),
        &[("/executionContext", "null")],
    );
    check(
        with("/executionContext", Some(json!("ctx"))),
        &[("/executionContext", "type")],
    );
    check(
        with("/executionContext", Some(json!({}))),
        &[
            ("/executionContext/agentId", "required"),
            ("/executionContext/sessionId", "required"),
            ("/executionContext/interactionType", "required"),
        ],
    );
}

#[test]
fn execution_context_holds_strings_only() {
    check(
        with("/executionContext/queue", Some(json!(5))),
        &[("/executionContext/queue", "type")],
    );
    check(
        with("/executionContext/queue", Some(Value::Null)),
        &[("/executionContext/queue", "null")],
    );
    check(
        with_key("/executionContext", "a/b", json!({})),
        &[("/executionContext/a~1b", "type")],
    );
}

#[test]
fn agent_id_rules() {
    check(
        with("/executionContext/agentId", Some(json!("agent-1"))),
        &[("/executionContext/agentId", "format")],
    );
    check(
        with(
            "/executionContext/agentId",
            Some(json!("a1b2c3d4e5f67890abcdef1234567890")),
        ),
        &[("/executionContext/agentId", "format")],
    );
    check(
        with("/executionContext/agentId", Some(json!(7))),
        &[("/executionContext/agentId", "type")],
    );
    check(
        with("/executionContext/agentId", Some(Value::Null)),
        &[("/executionContext/agentId", "null")],
    );
    check(
        with("/executionContext/agentId", None),
        &[("/executionContext/agentId", "required")],
    );
}

#[test]
fn session_id_rules() {
    check(
        with("/executionContext/sessionId", Some(json!(""))),
        &[("/executionContext/sessionId", "range")],
    );
    check(
        with("/executionContext/sessionId", Some(json!("s".repeat(128)))),
        &[],
    );
    check(
        with("/executionContext/sessionId", Some(json!("s".repeat(129)))),
        &[("/executionContext/sessionId", "range")],
    );
    check(
        with("/executionContext/sessionId", Some(json!(123))),
        &[("/executionContext/sessionId", "type")],
    );
}

#[test]
fn interaction_type_rules() {
    check(
        with("/executionContext/interactionType", Some(json!("fax"))),
        &[("/executionContext/interactionType", "enum")],
    );
    check(
        with("/executionContext/interactionType", Some(json!("Voice"))),
        &[("/executionContext/interactionType", "enum")],
    );
    check(
        with("/executionContext/interactionType", Some(json!(false))),
        &[("/executionContext/interactionType", "type")],
    );
}

// ---- correlationId and maxRetries --------------------------------------------------

#[test]
fn correlation_id_rules() {
    check(
        with("/correlationId", None),
        &[("/correlationId", "required")],
    );
    check(
        with("/correlationId", Some(Value::Null)),
        &[("/correlationId", "null")],
    );
    check(
        with("/correlationId", Some(json!(12))),
        &[("/correlationId", "type")],
    );
    for bad in [
        "corr-1",
        "550e8400-e29b-11d4-a716-446655440000", // version 1
        "550e8400-e29b-41d4-c716-446655440000", // wrong variant
        "550e8400e29b41d4a716446655440000",     // not hyphenated
        "{550e8400-e29b-41d4-a716-446655440000}",
        "",
    ] {
        check(
            with("/correlationId", Some(json!(bad))),
            &[("/correlationId", "format")],
        );
    }
}

#[test]
fn max_retries_rules() {
    check(
        with("/maxRetries", Some(Value::Null)),
        &[("/maxRetries", "null")],
    );
    check(
        with("/maxRetries", Some(json!("2"))),
        &[("/maxRetries", "type")],
    );
    check(
        with("/maxRetries", Some(json!(4))),
        &[("/maxRetries", "range")],
    );
    check(
        with("/maxRetries", Some(json!(-1))),
        &[("/maxRetries", "range")],
    );
    check(
        with("/maxRetries", Some(json!(256))),
        &[("/maxRetries", "range")],
    );
    check(
        with("/maxRetries", Some(json!(u64::MAX))),
        &[("/maxRetries", "range")],
    );
    check(
        with("/maxRetries", Some(json!(1.5))),
        &[("/maxRetries", "type")],
    );
}

// ---- bytes and size ----------------------------------------------------------------

#[test]
fn oversized_message_is_one_size_violation() {
    let mut v = base();
    v["parameterMatrix"]["query"] = json!("q".repeat(70_000));
    let bytes = serde_json::to_vec(&v).unwrap();
    let e = validate_trigger_bytes(&bytes, &Catalogue::builtin()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "");
    assert_eq!(e[0].code.to_string(), "size");
    assert!(e[0].message.contains("65536"), "{}", e[0].message);
}

#[test]
fn exactly_64_kib_is_not_too_large() {
    let mut v = base();
    v["executionContext"]["padding"] = json!("");
    let len = serde_json::to_vec(&v).unwrap().len();
    v["executionContext"]["padding"] = json!("p".repeat(64 * 1024 - len));
    let bytes = serde_json::to_vec(&v).unwrap();
    assert_eq!(bytes.len(), 64 * 1024);
    assert!(validate_trigger_bytes(&bytes, &Catalogue::builtin()).is_ok());
}

#[test]
fn bytes_that_are_not_json() {
    for bad in [
        &b"{"[..],
        b"not json",
        b"",
        b"\xff\xfe",
        b"{\"a\":1} trailing",
    ] {
        let e = validate_trigger_bytes(bad, &Catalogue::builtin()).unwrap_err();
        assert_eq!(e.len(), 1, "{bad:?}");
        assert_eq!(e[0].path, "");
        assert_eq!(e[0].code.to_string(), "type");
    }
}

#[test]
fn bytes_that_are_json_go_through_the_rules() {
    let bytes = serde_json::to_vec(&base()).unwrap();
    assert!(validate_trigger_bytes(&bytes, &Catalogue::builtin()).is_ok());
}

// ---- messages ----------------------------------------------------------------------

#[test]
fn messages_say_what_was_found_and_what_is_accepted() {
    let cases = [
        (with("/maxRetries", Some(json!(9))), ["9", "0 to 3"]),
        (
            with("/parameterMatrix/query", Some(json!(42))),
            ["number 42", "string"],
        ),
        (
            with("/executionContext/interactionType", Some(json!("fax"))),
            ["\"fax\"", "voice, chat, email, message, callback, video"],
        ),
        (
            with("/correlationId", Some(json!("corr-1"))),
            ["\"corr-1\"", "version 4"],
        ),
        (
            with("/parameterMatrix/languageCode", Some(json!("english"))),
            ["\"english\"", "BCP 47"],
        ),
    ];
    for (input, needles) in cases {
        let e = validate_trigger(&input, &Catalogue::builtin()).unwrap_err();
        for n in needles {
            assert!(e[0].message.contains(n), "{:?} lacks {n:?}", e[0].message);
        }
    }
}

#[test]
fn long_values_are_cut_in_messages() {
    let e = validate_trigger(
        &with("/correlationId", Some(json!("z".repeat(5000)))),
        &Catalogue::builtin(),
    )
    .unwrap_err();
    assert!(e[0].message.len() < 300, "{}", e[0].message);
}

#[test]
fn violations_serialize_as_the_wire_shape() {
    let e =
        validate_trigger(&with("/maxRetries", Some(json!(9))), &Catalogue::builtin()).unwrap_err();
    let wire = serde_json::to_value(&e[0]).unwrap();
    assert_eq!(wire["path"], "/maxRetries");
    assert_eq!(wire["code"], "range");
    let e = validate_trigger(&sentiment(json!({})), &Catalogue::builtin()).unwrap_err();
    assert_eq!(serde_json::to_value(&e[0]).unwrap()["code"], "one_of");
}
