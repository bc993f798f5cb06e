//! Property tests of both validators: arbitrary JSON and arbitrary bytes never panic them,
//! every violation points into the input, generated valid triggers validate and round-trip,
//! and generated valid batches validate.

use gcx_protocol::ViolationCode;
use gcx_protocol::catalogue::{ActionSpec, ParamKind, StringFormat, StringRule};
use gcx_protocol::events::validate_batch;
use gcx_protocol::validate::{validate_trigger, validate_trigger_bytes};
use gcx_protocol::{AgentState, Catalogue};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---- arbitrary JSON ----------------------------------------------------------------

/// Keys a trigger or an event might have, plus a few strangers, so random objects reach
/// the deep rules instead of stopping at `unknown`.
const KEYS: [&str; 28] = [
    "actionType",
    "parameterMatrix",
    "executionContext",
    "correlationId",
    "maxRetries",
    "query",
    "languageCode",
    "maxResults",
    "documentId",
    "fields",
    "text",
    "transcriptId",
    "agentId",
    "sessionId",
    "interactionType",
    "sequenceId",
    "timestamp",
    "interactionId",
    "state",
    "eventType",
    "knowledge_search",
    "sentiment_analysis",
    "a/b",
    "~",
    "",
    "ключ",
    "x~1y",
    "document_extraction",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(&KEYS[..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-4i64..60).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        proptest::sample::select(&KEYS[..]).prop_map(Value::from),
        Just(json!("550e8400-e29b-41d4-a716-446655440000")),
        Just(json!("A1B2C3D4-E5F6-7890-ABCD-EF1234567890")),
        Just(json!("en-US")),
        Just(json!("voice")),
        Just(json!("routing/agent/available")),
        Just(json!("routing/agent/state")),
        Just(json!("2026-11-21T10:00:00.123456789Z")),
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid trigger with one place replaced by arbitrary JSON: close to valid, so every
/// rule gets exercised.
fn mutated_trigger() -> impl Strategy<Value = Value> {
    (valid_trigger(), arbitrary_json(), 0usize..16, any::<bool>()).prop_map(
        |(mut t, replacement, which, remove)| {
            let targets = [
                "/actionType",
                "/parameterMatrix",
                "/executionContext",
                "/correlationId",
                "/maxRetries",
                "/parameterMatrix/query",
                "/parameterMatrix/text",
                "/parameterMatrix/fields",
                "/parameterMatrix/languageCode",
                "/parameterMatrix/maxResults",
                "/executionContext/agentId",
                "/executionContext/sessionId",
                "/executionContext/interactionType",
                "/executionContext/extra",
                "/parameterMatrix/transcriptId",
                "/parameterMatrix/documentId",
            ];
            let target = targets[which];
            let (parent, k) = target.rsplit_once('/').unwrap_or(("", target));
            if let Some(obj) = t.pointer_mut(parent).and_then(Value::as_object_mut) {
                if remove {
                    obj.remove(k);
                } else {
                    obj.insert(k.to_owned(), replacement);
                }
            }
            t
        },
    )
}

/// Checks what must hold of any answer: no violation without a path into the input.
fn assert_violations_point_into(
    input: &Value,
    result: &Result<gcx_protocol::ActionTriggerPayload, Vec<gcx_protocol::Violation>>,
) {
    let catalogue = Catalogue::builtin();
    match result {
        Ok(p) => {
            // Whatever validated round-trips.
            let again = validate_trigger(&serde_json::to_value(p).unwrap(), &catalogue);
            assert_eq!(again.as_ref(), Ok(p));
        }
        Err(vs) => {
            assert!(
                !vs.is_empty(),
                "an invalid trigger with no violation: {input}"
            );
            for v in vs {
                assert!(!v.message.is_empty());
                let points_to = if v.code == ViolationCode::Required {
                    // A missing key: its parent is there, the key is not.
                    let (parent, _) = v.path.rsplit_once('/').unwrap();
                    assert!(input.pointer(&v.path).is_none(), "{v:?}");
                    parent.to_owned()
                } else {
                    v.path.clone()
                };
                assert!(
                    input.pointer(&points_to).is_some(),
                    "{v:?} does not point into {input}"
                );
            }
        }
    }
}

// ---- valid triggers ----------------------------------------------------------------

fn string_with(rule: &StringRule) -> BoxedStrategy<String> {
    if rule.format == Some(StringFormat::Bcp47) {
        return "[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}".boxed();
    }
    let lo = rule.min_length.unwrap_or(0);
    let hi = rule.max_length.unwrap_or(lo + 64);
    // Mostly short strings, sometimes exactly at either bound.
    let len = prop_oneof![4 => lo..=hi.min(lo + 40), 1 => Just(lo), 1 => Just(hi)];
    len.prop_flat_map(|n| proptest::collection::vec(any::<char>(), n))
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

fn param_value(kind: &ParamKind) -> BoxedStrategy<Value> {
    match kind {
        ParamKind::String(rule) => string_with(rule).prop_map(Value::String).boxed(),
        ParamKind::Integer { min, max } => (min.unwrap_or(i64::MIN)..=max.unwrap_or(i64::MAX))
            .prop_map(Value::from)
            .boxed(),
        ParamKind::StringArray {
            min_items,
            max_items,
            item,
        } => {
            let lo = min_items.unwrap_or(0);
            let hi = max_items.unwrap_or(lo + 8);
            proptest::collection::vec(string_with(item), lo..=hi)
                .prop_map(|v| Value::Array(v.into_iter().map(Value::String).collect()))
                .boxed()
        }
    }
}

/// A valid `parameterMatrix` for `action`: every required parameter, each optional one
/// half of the time, exactly one member of each `one_of` group.
fn matrix_for(action: &ActionSpec) -> BoxedStrategy<Map<String, Value>> {
    let in_group = |name: &str| action.one_of.iter().any(|g| g.iter().any(|n| n == name));
    let mut parts: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for p in &action.parameters {
        if in_group(&p.name) {
            continue;
        }
        let name = p.name.clone();
        let value = param_value(&p.kind);
        if p.required {
            parts.push(value.prop_map(move |v| Some((name.clone(), v))).boxed());
        } else {
            parts.push(
                proptest::option::of(value)
                    .prop_map(move |v| v.map(|v| (name.clone(), v)))
                    .boxed(),
            );
        }
    }
    for group in &action.one_of {
        let members: Vec<BoxedStrategy<Option<(String, Value)>>> = group
            .iter()
            .map(|n| {
                let name = n.clone();
                let kind = &action.parameter(n).unwrap().kind;
                param_value(kind)
                    .prop_map(move |v| Some((name.clone(), v)))
                    .boxed()
            })
            .collect();
        parts.push(proptest::strategy::Union::new(members).boxed());
    }
    parts
        .prop_map(|kvs| kvs.into_iter().flatten().collect::<Map<_, _>>())
        .prop_shuffle_keys()
}

/// Shuffling the key order shows the rules do not depend on it.
trait ShuffleKeys {
    fn prop_shuffle_keys(self) -> BoxedStrategy<Map<String, Value>>;
}

impl<S: Strategy<Value = Map<String, Value>> + 'static> ShuffleKeys for S {
    fn prop_shuffle_keys(self) -> BoxedStrategy<Map<String, Value>> {
        self.prop_flat_map(|m| {
            let entries: Vec<(String, Value)> = m.into_iter().collect();
            Just(entries).prop_shuffle()
        })
        .prop_map(|entries| entries.into_iter().collect())
        .boxed()
    }
}

fn uuid_text(v4: bool) -> impl Strategy<Value = String> {
    (any::<u128>(), any::<bool>()).prop_map(move |(bits, upper)| {
        let id = if v4 {
            uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid()
        } else {
            uuid::Uuid::from_u128(bits)
        };
        let s = id.hyphenated().to_string();
        if upper { s.to_uppercase() } else { s }
    })
}

fn execution_context() -> impl Strategy<Value = Map<String, Value>> {
    (
        uuid_text(false),
        string_with(&StringRule {
            min_length: Some(1),
            max_length: Some(128),
            format: None,
        }),
        proptest::sample::select(&["voice", "chat", "email", "message", "callback", "video"][..]),
        proptest::collection::btree_map("[a-z][a-zA-Z]{0,10}", any::<String>(), 0..3),
    )
        .prop_map(|(agent, session, kind, extra)| {
            let mut m: Map<String, Value> = extra
                .into_iter()
                .filter(|(k, _)| !["agentId", "sessionId", "interactionType"].contains(&k.as_str()))
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            m.insert("agentId".into(), agent.into());
            m.insert("sessionId".into(), session.into());
            m.insert("interactionType".into(), kind.into());
            m
        })
        .prop_shuffle_keys()
}

fn valid_trigger() -> impl Strategy<Value = Value> {
    let catalogue = Catalogue::builtin();
    let per_action: Vec<BoxedStrategy<(String, Map<String, Value>)>> = catalogue
        .actions()
        .iter()
        .map(|a| {
            let name = a.name.clone();
            matrix_for(a).prop_map(move |m| (name.clone(), m)).boxed()
        })
        .collect();
    (
        proptest::strategy::Union::new(per_action),
        execution_context(),
        uuid_text(true),
        proptest::option::of(0u8..=3),
    )
        .prop_map(|((action, matrix), context, correlation, retries)| {
            let mut t = json!({
                "actionType": action,
                "parameterMatrix": matrix,
                "executionContext": context,
                "correlationId": correlation,
            });
            if let Some(r) = retries {
                t["maxRetries"] = json!(r);
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics_the_trigger_validator(v in arbitrary_json()) {
        let result = validate_trigger(&v, &Catalogue::builtin());
        assert_violations_point_into(&v, &result);
    }

    #[test]
    fn near_valid_triggers_get_precise_violations(v in mutated_trigger()) {
        let result = validate_trigger(&v, &Catalogue::builtin());
        assert_violations_point_into(&v, &result);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_trigger_validator(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = validate_trigger_bytes(&bytes, &Catalogue::builtin());
    }

    #[test]
    fn corrupted_trigger_bytes_never_panic(t in valid_trigger(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = serde_json::to_vec(&t).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = validate_trigger_bytes(&bytes, &Catalogue::builtin());
    }

    #[test]
    fn valid_triggers_validate_and_round_trip(t in valid_trigger()) {
        let catalogue = Catalogue::builtin();
        let p = match validate_trigger(&t, &catalogue) {
            Ok(p) => p,
            Err(vs) => panic!("{t}\n{vs:#?}"),
        };
        prop_assert_eq!(&p.action_type, t["actionType"].as_str().unwrap());
        prop_assert_eq!(&Value::Object(p.parameter_matrix.clone()), &t["parameterMatrix"]);
        prop_assert_eq!(
            p.correlation_id.to_string(),
            t["correlationId"].as_str().unwrap().to_lowercase()
        );
        prop_assert_eq!(u64::from(p.max_retries), t.get("maxRetries").and_then(Value::as_u64).unwrap_or(0));
        let wire = serde_json::to_value(&p).unwrap();
        let again = validate_trigger(&wire, &catalogue);
        prop_assert_eq!(again.as_ref(), Ok(&p));
        // And through bytes, when the text fits in one message.
        let text = serde_json::to_vec(&p).unwrap();
        if text.len() <= 64 * 1024 {
            prop_assert_eq!(validate_trigger_bytes(&text, &catalogue), Ok(p));
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_batch_validator(v in arbitrary_json()) {
        match validate_batch(&v) {
            Ok(events) => prop_assert_eq!(events.len(), v.as_array().unwrap().len()),
            Err(vs) => {
                prop_assert!(!vs.is_empty());
                let len = v.as_array().map(Vec::len).unwrap_or(0);
                for e in vs {
                    prop_assert!(e.index.is_none_or(|i| i < len));
                }
            }
        }
    }

    #[test]
    fn valid_batches_validate(batch in valid_batch()) {
        let events = match validate_batch(&batch) {
            Ok(e) => e,
            Err(vs) => panic!("{batch}\n{vs:#?}"),
        };
        prop_assert_eq!(events.len(), batch.as_array().unwrap().len());
        for (e, raw) in events.iter().zip(batch.as_array().unwrap()) {
            prop_assert_eq!(e.sequence_id.to_string(), raw["sequenceId"].as_str().unwrap());
            prop_assert_eq!(&e.timestamp, raw["timestamp"].as_str().unwrap());
            prop_assert_eq!(e.state.as_wire(), raw["state"].as_str().unwrap());
        }
        // The typed events serialize back into a batch that is valid too.
        let again = serde_json::to_value(&events).unwrap();
        prop_assert_eq!(validate_batch(&again), Ok(events));
    }

    #[test]
    fn a_repeated_sequence_id_is_always_caught(batch in valid_batch(), from in any::<prop::sample::Index>(), to in any::<prop::sample::Index>()) {
        let mut items = batch.as_array().unwrap().clone();
        prop_assume!(items.len() >= 2);
        let (a, b) = (from.index(items.len()), to.index(items.len()));
        prop_assume!(a != b);
        items[b]["sequenceId"] = items[a]["sequenceId"].clone();
        let vs = validate_batch(&Value::Array(items)).unwrap_err();
        prop_assert_eq!(vs.len(), 1);
        prop_assert_eq!(vs[0].index, Some(a.max(b)));
        prop_assert_eq!(vs[0].field.as_str(), "sequenceId");
    }
}

// ---- valid batches -----------------------------------------------------------------

fn timestamp() -> impl Strategy<Value = String> {
    (
        1970u32..=9999,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        proptest::option::of("[0-9]{1,9}"),
        any::<bool>(),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, z)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            let zone = if z { "Z" } else { "+00:00" };
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
}

fn valid_batch() -> impl Strategy<Value = Value> {
    let event = (
        uuid_text(false),
        uuid_text(false),
        timestamp(),
        proptest::sample::select(&AgentState::ALL[..]),
    );
    (proptest::collection::vec(event, 1..60), any::<u64>()).prop_map(|(events, salt)| {
        let items: Vec<Value> = events
            .into_iter()
            .enumerate()
            .map(|(i, (interaction, agent, ts, state))| {
                // Distinct by construction: the index sits in the low bits.
                let seq = uuid::Uuid::from_u128((u128::from(salt) << 64) | i as u128);
                json!({
                    "sequenceId": seq.to_string(),
                    "timestamp": ts,
                    "interactionId": interaction.to_lowercase(),
                    "agentId": agent.to_lowercase(),
                    "state": state.as_wire(),
                    "eventType": "routing/agent/state",
                })
            })
            .collect();
        Value::Array(items)
    })
}
