//! Table-driven tests of the interactions batch schema check (PROTOCOL.md section 4).

use gcx_protocol::AgentState;
use gcx_protocol::events::{MAX_BATCH_EVENTS, validate_batch};
use serde_json::{Value, json};

const SEQ: &str = "550e8400-e29b-41d4-a716-446655440000";
const INTERACTION: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const AGENT: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";

fn event() -> Value {
    json!({
        "sequenceId": SEQ,
        "timestamp": "2026-11-21T10:00:00.123456789Z",
        "interactionId": INTERACTION,
        "agentId": AGENT,
        "state": "routing/agent/available",
        "eventType": "routing/agent/state"
    })
}

fn event_with(field: &str, value: Option<Value>) -> Value {
    let mut e = event();
    match value {
        Some(v) => {
            e[field] = v;
        }
        None => {
            e.as_object_mut().unwrap().remove(field);
        }
    }
    e
}

/// A distinct sequenceId per index.
fn seq(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// Validates `body` and compares the (index, field) of every violation, in order.
#[track_caller]
fn check(body: Value, expected: &[(Option<usize>, &str)]) {
    match validate_batch(&body) {
        Ok(events) => {
            assert!(expected.is_empty(), "valid, but expected {expected:?}");
            assert_eq!(events.len(), body.as_array().unwrap().len());
        }
        Err(vs) => {
            let got: Vec<(Option<usize>, &str)> =
                vs.iter().map(|v| (v.index, v.field.as_str())).collect();
            assert_eq!(got, expected, "violations: {vs:#?}");
            for v in &vs {
                assert!(!v.message.is_empty());
            }
        }
    }
}

/// The words a user reads: every violation's index, field and message, for one bad
/// batch per kind of rule. `cargo insta review` (or `INSTA_UPDATE=always`) takes a change.
#[test]
fn every_violation_message_reads_as_written() {
    let mut twice = event();
    twice["state"] = json!("routing/agent/busy");
    let cases: Vec<(&str, Value)> = vec![
        ("not an array", json!({"events": []})),
        ("empty array", json!([])),
        (
            "too many events",
            (0..=MAX_BATCH_EVENTS)
                .map(|i| event_with("sequenceId", Some(json!(seq(i)))))
                .collect(),
        ),
        ("element not an object", json!([5])),
        ("every field missing", json!([{}])),
        (
            "uppercase sequenceId",
            json!([event_with("sequenceId", Some(json!(SEQ.to_uppercase())))]),
        ),
        (
            "agentId not a string",
            json!([event_with("agentId", Some(json!(7)))]),
        ),
        (
            "timestamp not UTC",
            json!([event_with(
                "timestamp",
                Some(json!("2026-11-21T10:00:00+01:00"))
            )]),
        ),
        (
            "unknown state",
            json!([event_with("state", Some(json!("routing/agent/asleep")))]),
        ),
        (
            "wrong eventType",
            json!([event_with("eventType", Some(json!("routing/agent/mood")))]),
        ),
        (
            "unknown key",
            json!([event_with("mood", Some(json!("calm")))]),
        ),
        ("a sequenceId twice", json!([event(), twice])),
    ];
    let mut text = String::new();
    for (name, body) in cases {
        text.push_str(&format!("{name}:\n"));
        match validate_batch(&body) {
            Ok(_) => panic!("{name}: valid"),
            Err(vs) => {
                for v in vs {
                    text.push_str(&format!("  {:?} {:?}: {}\n", v.index, v.field, v.message));
                }
            }
        }
    }
    insta::assert_snapshot!(text);
}

#[test]
fn one_valid_event() {
    check(json!([event()]), &[]);
    let events = validate_batch(&json!([event()])).unwrap();
    assert_eq!(events[0].state, AgentState::Available);
    assert_eq!(events[0].timestamp, "2026-11-21T10:00:00.123456789Z");
    assert_eq!(events[0].agent_id.to_string(), AGENT);
}

#[test]
fn every_state_is_accepted() {
    for s in AgentState::ALL {
        check(json!([event_with("state", Some(json!(s.as_wire())))]), &[]);
    }
}

#[test]
fn timestamps_per_the_header() {
    for ok in [
        "2026-11-21T10:00:00Z",
        "2026-11-21T10:00:00.1Z",
        "2026-11-21T10:00:00.000+00:00",
    ] {
        check(json!([event_with("timestamp", Some(json!(ok)))]), &[]);
    }
    for bad in [
        "2026-11-21T10:00:00",
        "2026-11-21T11:00:00+01:00",
        "2026-11-21T10:00:00.1234567890Z",
        "yesterday",
    ] {
        check(
            json!([event_with("timestamp", Some(json!(bad)))]),
            &[(Some(0), "timestamp")],
        );
    }
}

#[test]
fn body_shape() {
    check(json!({"events": []}), &[(None, "")]);
    check(json!(null), &[(None, "")]);
    check(json!([]), &[(None, "")]);
}

#[test]
fn too_many_events() {
    let ok: Vec<Value> = (0..MAX_BATCH_EVENTS)
        .map(|i| event_with("sequenceId", Some(json!(seq(i)))))
        .collect();
    check(Value::Array(ok.clone()), &[]);
    let mut too_many = ok;
    too_many.push(event_with("sequenceId", Some(json!(seq(MAX_BATCH_EVENTS)))));
    check(Value::Array(too_many), &[(None, "")]);
}

#[test]
fn element_not_an_object() {
    check(json!([event(), 5]), &[(Some(1), "")]);
}

#[test]
fn missing_fields_each_reported() {
    check(
        json!([{}]),
        &[
            (Some(0), "sequenceId"),
            (Some(0), "timestamp"),
            (Some(0), "interactionId"),
            (Some(0), "agentId"),
            (Some(0), "state"),
            (Some(0), "eventType"),
        ],
    );
}

#[test]
fn uuid_fields_must_be_lowercase_hyphenated() {
    for field in ["sequenceId", "interactionId", "agentId"] {
        for bad in [
            json!(SEQ.to_uppercase()),
            json!("sim-1-abc"),
            json!("550e8400e29b41d4a716446655440000"),
            json!(12),
            Value::Null,
        ] {
            check(json!([event_with(field, Some(bad))]), &[(Some(0), field)]);
        }
    }
    // Any version: a v1 id is fine.
    check(
        json!([event_with(
            "agentId",
            Some(json!("550e8400-e29b-11d4-a716-446655440000"))
        )]),
        &[],
    );
}

#[test]
fn state_and_event_type() {
    check(
        json!([event_with("state", Some(json!("available")))]),
        &[(Some(0), "state")],
    );
    check(
        json!([event_with("eventType", Some(json!("routing/agent/status")))]),
        &[(Some(0), "eventType")],
    );
}

#[test]
fn unknown_keys_refused() {
    check(
        json!([event_with("priority", Some(json!(1)))]),
        &[(Some(0), "priority")],
    );
}

#[test]
fn a_sequence_id_twice_is_a_violation() {
    check(
        json!([
            event(),
            event_with("state", Some(json!("routing/agent/busy")))
        ]),
        &[(Some(1), "sequenceId")],
    );
    let e = validate_batch(&json!([event(), event()])).unwrap_err();
    assert!(e[0].message.contains("index 0"), "{}", e[0].message);
}

#[test]
fn duplicate_found_even_in_a_broken_event() {
    check(
        json!([event(), event_with("state", Some(json!("x")))]),
        &[(Some(1), "state"), (Some(1), "sequenceId")],
    );
}

#[test]
fn every_bad_event_is_listed() {
    check(
        json!([
            event_with("agentId", Some(json!("x"))),
            event_with("sequenceId", Some(json!(seq(1)))),
            {"sequenceId": seq(2), "timestamp": 5, "interactionId": INTERACTION, "agentId": AGENT,
             "state": "routing/agent/busy", "eventType": "routing/agent/state", "extra": true}
        ]),
        &[
            (Some(0), "agentId"),
            (Some(2), "timestamp"),
            (Some(2), "extra"),
        ],
    );
}

#[test]
fn violations_serialize_as_the_wire_shape() {
    let e = validate_batch(&json!([5])).unwrap_err();
    let wire = serde_json::to_value(&e[0]).unwrap();
    assert_eq!(wire["index"], 0);
    assert_eq!(wire["field"], "");
    assert!(wire["message"].as_str().unwrap().contains("number 5"));
}
