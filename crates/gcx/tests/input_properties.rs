//! Property tests of gcx's readers of untrusted bytes that no other property test reaches
//! directly: trigger intake, the assist client's frame reader, the configuration file and
//! the gc CLI profile, and the request bodies of `gcx serve` (the fuzz targets in `fuzz/`
//! run the same entry points).

use std::collections::BTreeMap;
use std::time::Instant;

use gcx::assist::frame::{Incoming, MAX_RECONNECT_WITHIN, read_frame};
use gcx::assist::intake::{InputFormat, IntakeOptions, parse_triggers};
use gcx::config::{Overrides, load_from, profile, show};
use gcx::server::routes::outbox::read_replay;
use gcx::server::routes::triggers::{read_body, validate_item};
use gcx_protocol::Catalogue;
use proptest::prelude::*;
use serde_json::{Value, json};

const AGENT: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";

fn trigger(n: u32) -> String {
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": format!("q{n}")},
        "executionContext": {"agentId": AGENT, "sessionId": "s", "interactionType": "voice"},
        "correlationId": format!("00000000-0000-4000-8000-{n:012}"),
    })
    .to_string()
}

/// A line of a trigger file: a valid trigger, a broken one, or noise.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u32..1000).prop_map(trigger),
        1 => (0u32..1000).prop_map(|n| trigger(n).replace("knowledge", "know")),
        1 => "[ -~]{0,30}",
        1 => Just(String::new()),
    ]
}

proptest! {
    /// JSON Lines and arrays of triggers: every item numbered in order, on a line of the
    /// input, refused with violations or valid; the valid lines come out valid.
    #[test]
    fn intake_keeps_every_item(lines in prop::collection::vec(line(), 0..12), array in any::<bool>()) {
        let text = if array {
            format!("[\n{}\n]", lines.join(",\n"))
        } else {
            lines.join("\n")
        };
        let (format, items) = parse_triggers(text.as_bytes(), &Catalogue::builtin(), IntakeOptions::default());
        let total_lines = 1 + text.matches('\n').count();
        for (i, item) in items.iter().enumerate() {
            prop_assert_eq!(item.index, i);
            prop_assert!((1..=total_lines).contains(&item.line));
            if let Err(v) = &item.outcome {
                prop_assert!(!v.is_empty());
            }
        }
        let valid = lines.iter().filter(|l| l.contains("knowledge_search")).count();
        if format == InputFormat::JsonLines && !array {
            prop_assert_eq!(items.iter().filter(|i| i.outcome.is_ok()).count(), valid);
        }
    }

    /// Arbitrary bytes never panic intake, and only blank input is `Empty`.
    #[test]
    fn intake_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let (format, items) = parse_triggers(&bytes, &Catalogue::builtin(), IntakeOptions { assign_ids: true });
        prop_assert_eq!(format == InputFormat::Empty, bytes.iter().all(u8::is_ascii_whitespace));
        for item in &items {
            if let Err(v) = &item.outcome {
                prop_assert!(!v.is_empty());
            }
        }
    }

    /// Frames from the engine: a `closing` wait always fits the clock; arbitrary text
    /// never panics the reader.
    #[test]
    fn client_frames_are_read(
        kind in "(ack|result|error|capacity|closing|heartbeat|connected|nope)",
        payload in prop_oneof![
            any::<u64>().prop_map(|n| json!({"reason": "m", "reconnectWithinMs": n})),
            any::<u64>().prop_map(|n| json!({"maxConcurrentActions": n})),
            Just(json!({"correlationId": "00000000-0000-4000-8000-000000000001", "status": "accepted", "duplicate": false})),
            "[ -~]{0,20}".prop_map(Value::from),
        ],
        noise in ".{0,40}",
    ) {
        let text = json!({"type": kind, "payload": payload}).to_string();
        if let Ok(Incoming::Closing { within }) = read_frame(&text) {
            prop_assert!(within <= MAX_RECONNECT_WITHIN);
            prop_assert!(Instant::now().checked_add(within).is_some());
        }
        let _ = read_frame(&noise);
    }

    /// A configuration file: read or refused with a message, secrets redacted in the rows.
    #[test]
    fn config_files_are_read_or_refused(
        section in "(genesys|crm|serve|store|delivery|nope)",
        key in "(client_secret|secret|api_keys|max_batch|request_timeout|url|region|x)",
        value in prop_oneof![
            "\"[ -!#-~]{0,16}\"",
            any::<i64>().prop_map(|n| n.to_string()),
            Just("[\"k-0123456789\"]".to_owned()),
            "[ -~]{0,12}",
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gcx.toml");
        std::fs::write(&path, format!("[{section}]\n{key} = {value}\n")).unwrap();
        let args = Overrides { config_path: Some(path), ..Overrides::default() };
        match load_from(&args, &BTreeMap::new(), None) {
            Ok(loaded) => {
                for entry in show::entries(&loaded) {
                    if ["genesys.client_secret", "crm.secret", "serve.api_keys"].contains(&entry.key.as_str()) {
                        let text = entry.value_text();
                        prop_assert!(
                            text == "(not set)" || text == "(none)" || text.split(", ").all(|t| t == "<redacted>"),
                            "{} shows {}", entry.key, text
                        );
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// A gc CLI profile file: read or refused with a message; values trimmed.
    #[test]
    fn profiles_are_read_or_refused(text in "(\\[(DEFAULT|prod)\\]\n)?((environment|client_credentials|client_secret|x) = (\"[ -!#-~]{0,12}\"|[0-9]{1,3}|\\[\\])\n){0,4}") {
        let dir = tempfile::tempdir().unwrap();
        let path = profile::profiles_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        for named in [None, Some("prod")] {
            match profile::read(&path, named) {
                Ok(Some(p)) => {
                    for v in [&p.environment, &p.client_id].into_iter().flatten() {
                        prop_assert!(!v.is_empty() && v.trim() == v);
                    }
                }
                Ok(None) => prop_assert!(named.is_none()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    /// `POST /v1/triggers` bodies: 1 to max_batch items or a 400/413; each item valid or
    /// refused with violations.
    #[test]
    fn trigger_bodies_are_read_or_refused(
        lines in prop::collection::vec(line(), 0..6),
        shape in 0u8..3,
    ) {
        let body = match shape {
            0 => format!("[{}]", lines.join(",")),
            1 => lines.first().cloned().unwrap_or_default(),
            _ => lines.concat(),
        };
        match read_body(body.as_bytes(), 4) {
            Ok((items, single)) => {
                prop_assert!((1..=4).contains(&items.len()));
                prop_assert!(!single || items.len() == 1);
                for item in &items {
                    if let Err(v) = validate_item(item, &Catalogue::builtin()) {
                        prop_assert!(!v.is_empty());
                    }
                }
            }
            Err(e) => prop_assert!(matches!(e.status.as_u16(), 400 | 413)),
        }
    }

    /// `POST /v1/outbox/replay` bodies: read or a 400.
    #[test]
    fn replay_bodies_are_read_or_refused(body in prop_oneof![
        "[ -~]{0,30}",
        any::<i64>().prop_map(|n| format!("{{\"id\":{n}}}")),
        "\\{\"since\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,10})?(Z|\\+00:00|\\+01:00)\"\\}",
    ]) {
        if let Err(e) = read_replay(body.as_bytes()) {
            prop_assert_eq!(e.status.as_u16(), 400);
        }
    }
}
