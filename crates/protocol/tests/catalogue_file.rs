//! The action catalogue as data: the default file, operator files, and every problem a
//! broken file can have, reported at once.

use gcx_protocol::Catalogue;
use gcx_protocol::catalogue::{CatalogueError, DEFAULT_TOML, ParamKind, StringFormat};
use gcx_protocol::validate::validate_trigger;
use serde_json::json;

/// Loads `text` and expects it refused with exactly these problems (each a substring of
/// one reported problem, in order).
#[track_caller]
fn check_invalid(text: &str, expected: &[&str]) {
    match Catalogue::from_toml_str(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(CatalogueError::Invalid(problems)) => {
            assert_eq!(
                problems.len(),
                expected.len(),
                "problems: {problems:#?}\nexpected: {expected:#?}"
            );
            for (p, e) in problems.iter().zip(expected) {
                assert!(p.contains(e), "{p:?} does not contain {e:?}");
            }
        }
        Err(other) => panic!("wrong error: {other}"),
    }
}

#[test]
fn default_matches_the_protocol_table() {
    let c = Catalogue::builtin();
    assert_eq!(c.version(), "2026-11-01");
    let ks = c.action("knowledge_search").unwrap();
    let q = ks.parameter("query").unwrap();
    assert!(q.required);
    match &q.kind {
        ParamKind::String(r) => {
            assert_eq!((r.min_length, r.max_length), (Some(1), Some(1024)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ks.parameter("maxResults").unwrap().kind,
        ParamKind::Integer {
            min: Some(1),
            max: Some(50)
        }
    );
    let de = c.action("document_extraction").unwrap();
    match &de.parameter("fields").unwrap().kind {
        ParamKind::StringArray {
            min_items,
            max_items,
            item,
        } => {
            assert_eq!((*min_items, *max_items), (Some(1), Some(50)));
            assert_eq!((item.min_length, item.max_length), (Some(1), Some(128)));
        }
        other => panic!("{other:?}"),
    }
    let sa = c.action("sentiment_analysis").unwrap();
    assert_eq!(
        sa.one_of,
        vec![vec!["text".to_owned(), "transcriptId".to_owned()]]
    );
    for a in c.actions() {
        match &a.parameter("languageCode").unwrap().kind {
            ParamKind::String(r) => assert_eq!(r.format, Some(StringFormat::Bcp47)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        c.action_list(),
        "knowledge_search, document_extraction, sentiment_analysis"
    );
}

#[test]
fn an_operator_adds_an_action() {
    let text = format!(
        "{}\n{}",
        DEFAULT_TOML.replace("2026-11-01", "2026-12-01-ops"),
        r#"
[[actions]]
name = "translate"
[[actions.parameters]]
name = "text"
type = "string"
required = true
max_length = 5
[[actions.parameters]]
name = "targets"
type = "array_of_strings"
item_format = "bcp47"
"#
    );
    let c = Catalogue::from_toml_str(&text).unwrap();
    assert_eq!(c.version(), "2026-12-01-ops");
    assert_eq!(c.action_types().last(), Some(&"translate"));
    let trigger = json!({
        "actionType": "translate",
        "parameterMatrix": {"text": "hello!", "targets": ["de", "x"]},
        "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "sessionId": "s", "interactionType": "chat"},
        "correlationId": "550e8400-e29b-41d4-a716-446655440000"
    });
    let e = validate_trigger(&trigger, &c).unwrap_err();
    let got: Vec<(&str, String)> = e
        .iter()
        .map(|v| (v.path.as_str(), v.code.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("/parameterMatrix/text", "range".to_owned()),
            ("/parameterMatrix/targets/1", "format".to_owned())
        ]
    );
    // The built-in catalogue does not know it.
    let e = validate_trigger(&trigger, &Catalogue::builtin()).unwrap_err();
    assert_eq!(e[0].code.to_string(), "enum");
}

#[test]
fn not_toml_names_the_line() {
    match Catalogue::from_toml_str("version = \"1\"\n[[actions]\n") {
        Err(CatalogueError::Toml(m)) => assert!(m.contains("line 2"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_file() {
    check_invalid("", &["`version` is required", "`actions` is required"]);
}

#[test]
fn every_problem_is_reported() {
    check_invalid(
        r#"
version = ""
colour = "blue"

[[actions]]
name = "a"
one_of = [["p", "nope"], ["q"]]

[[actions.parameters]]
name = "p"
type = "text"

[[actions.parameters]]
name = "q"
type = "integer"
min = 5
max = 1
min_length = 3
required = true

[[actions.parameters]]
name = "r"
type = "string"
min_length = -1
max_length = "ten"
format = "email"

[[actions.parameters]]
name = "s"
type = "array_of_strings"
min_items = 9
max_items = 2
item_min_length = 4
item_max_length = 3

[[actions.parameters]]
name = "s"
type = "string"

[[actions]]
name = "a"
description = 5

[[actions]]
parameters = [{ type = "string" }]
"#,
        &[
            "(top level): unknown key `colour`",
            "(top level): `version` must not be empty",
            "actions[0].parameters[0] (p): unknown type \"text\"; accepted types: string, integer, array_of_strings",
            "actions[0].parameters[1] (q): unknown key `min_length`",
            "actions[0].parameters[1] (q): `min` 5 is greater than `max` 1",
            "actions[0].parameters[2] (r): `min_length` must be 0 or more, found -1",
            "actions[0].parameters[2] (r): `max_length` must be an integer, found string \"ten\"",
            "actions[0].parameters[2] (r): unknown `format` \"email\"; accepted formats: bcp47",
            "actions[0].parameters[3] (s): `min_items` 9 is greater than `max_items` 2",
            "actions[0].parameters[3] (s): `item_min_length` 4 is greater than `item_max_length` 3",
            "actions[0].parameters[4] (s): this parameter name is listed twice",
            "actions[0] (a): `one_of` group 0 names \"p\", which is not a parameter",
            "actions[0] (a): `one_of` group 0 names \"nope\", which is not a parameter",
            "actions[0] (a): `one_of` group 1 names \"q\", which is `required = true`",
            "actions[0] (a): `one_of` group 1 must name at least two parameters",
            "actions[1] (a): `description` must be a string, found integer 5",
            "actions[1] (a): this action name is listed twice",
            "actions[2]: `name` is required",
            "actions[2].parameters[0]: `name` is required",
        ],
    );
}

#[test]
fn actions_must_be_tables() {
    check_invalid(
        "version = \"1\"\nactions = [1]\n",
        &["actions[0]: must be a table, found integer 1"],
    );
    check_invalid(
        "version = \"1\"\nactions = []\n",
        &["`actions` must list at least one action"],
    );
    check_invalid(
        "version = 1\n[actions]\n",
        &[
            "`version` must be a string, found integer 1",
            "`actions` must be an array of tables",
        ],
    );
}

#[test]
fn the_error_display_lists_every_problem() {
    let e = Catalogue::from_toml_str("colour = 1").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("colour"), "{text}");
    assert!(text.contains("version"), "{text}");
    assert!(text.contains("actions"), "{text}");
}
