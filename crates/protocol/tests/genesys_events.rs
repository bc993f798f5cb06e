//! Property tests of the Events API validators (PROTOCOL.md 9.1): generated valid bodies
//! pass and round-trip, and every single mutation of a valid body (a required field
//! removed, nulled, of the wrong type or value; a present optional one of the wrong type or
//! value) is caught, alone, at its JSON Pointer path.

use gcx_protocol::ViolationCode;
use gcx_protocol::genesys_events::{
    DisconnectType, MAX_EVENTS_PER_REQUEST, Refusal, RefusalCode, RoutingStatus,
    validate_conversations, validate_presence, validate_routing_status,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// Which validator a body goes to.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Routing,
    Presence,
    Conversations,
}

fn validate(endpoint: Endpoint, body: &Value) -> Result<(), Refusal> {
    match endpoint {
        Endpoint::Routing => validate_routing_status(body).map(|_| ()),
        Endpoint::Presence => validate_presence(body).map(|_| ()),
        Endpoint::Conversations => validate_conversations(body).map(|_| ()),
    }
}

/// What a mutated field holds.
#[derive(Debug, Clone, Copy)]
enum FieldKind {
    Uuid,
    DateTime,
    Text,
    Bool,
    RoutingStatus,
    DisconnectType,
}

/// The required fields of each array's events (nested ones as pointer tails).
fn required(array: &str) -> Vec<(&'static str, FieldKind)> {
    use FieldKind::*;
    let common = [
        ("eventId", Uuid),
        ("eventDateTime", DateTime),
        ("conversationId", Uuid),
        ("communicationId", Uuid),
    ];
    match array {
        "userRoutingStatusEvents" => vec![
            ("eventId", Uuid),
            ("eventDateTime", DateTime),
            ("agentId", Uuid),
            ("status", RoutingStatus),
            ("sourceId", Text),
        ],
        "userPresenceEvents" => vec![
            ("eventId", Uuid),
            ("eventDateTime", DateTime),
            ("userId", Uuid),
            ("sourceId", Uuid),
        ],
        "communicationAnsweredEvents" => common.to_vec(),
        "holdUpdatedEvents" => [common.as_slice(), &[("held", Bool)]].concat(),
        "communicationEndedEvents" => {
            [common.as_slice(), &[("disconnectType", DisconnectType)]].concat()
        }
        _ => [
            common.as_slice(),
            &[
                ("userId", Uuid),
                ("sourceConfiguration/sourceId", Text),
                ("sourceConfiguration/interactionId", Text),
            ],
        ]
        .concat(),
    }
}

/// The optional fields of each array's events that a generated body may hold; a wrong
/// value in one must be caught like a required field's.
fn optional(array: &str) -> Vec<(&'static str, FieldKind)> {
    use FieldKind::*;
    match array {
        "userPresenceEvents" => vec![("presenceDefinitionId", Uuid)],
        "communicationEndedEvents" => vec![("destinationConversationId", Uuid)],
        "userEstablishedEvents" => vec![
            ("initialConfiguration/audioState/canHear", Bool),
            ("initialConfiguration/audioState/canSpeak", Bool),
            ("initialConfiguration/inbound", Bool),
            ("initialConfiguration/alerting", Bool),
        ],
        _ => Vec::new(),
    }
}

fn uuid() -> impl Strategy<Value = String> {
    (any::<u128>(), any::<bool>()).prop_map(|(n, upper)| {
        let s = Uuid::from_u128(n).hyphenated().to_string();
        if upper { s.to_uppercase() } else { s }
    })
}

fn date_time() -> impl Strategy<Value = String> {
    (
        1970i32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        prop::option::of(0u32..1000),
    )
        .prop_map(|(y, mo, d, h, mi, s, ms)| match ms {
            Some(ms) => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"),
            None => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        })
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,20}"
}

fn base() -> impl Strategy<Value = (String, String, String, String)> {
    (uuid(), date_time(), uuid(), uuid())
}

fn routing_event() -> impl Strategy<Value = Value> {
    (uuid(), date_time(), uuid(), 0..5usize, text()).prop_map(|(e, t, a, s, src)| {
        json!({"eventId":e,"eventDateTime":t,"agentId":a,"status":RoutingStatus::WIRE[s],"sourceId":src})
    })
}

fn presence_event() -> impl Strategy<Value = Value> {
    (
        uuid(),
        date_time(),
        uuid(),
        uuid(),
        prop::option::of(uuid()),
        prop::option::of(".{0,20}"),
    )
        .prop_map(|(e, t, u, src, def, msg)| {
            let mut v = json!({"eventId":e,"eventDateTime":t,"userId":u,"sourceId":src});
            if let Some(def) = def {
                v["presenceDefinitionId"] = json!(def);
            }
            if let Some(msg) = msg {
                v["message"] = json!(msg);
            }
            v
        })
}

fn answered_event() -> impl Strategy<Value = Value> {
    base().prop_map(|(e, t, c, m)| {
        json!({"eventId":e,"eventDateTime":t,"conversationId":c,"communicationId":m})
    })
}

fn hold_event() -> impl Strategy<Value = Value> {
    (base(), any::<bool>()).prop_map(|((e, t, c, m), held)| {
        json!({"eventId":e,"eventDateTime":t,"conversationId":c,"communicationId":m,"held":held})
    })
}

fn ended_event() -> impl Strategy<Value = Value> {
    (base(), 0..9usize, prop::option::of(uuid())).prop_map(|((e, t, c, m), d, dest)| {
        let mut v = json!({"eventId":e,"eventDateTime":t,"conversationId":c,"communicationId":m,
            "disconnectType":DisconnectType::WIRE[d]});
        if let Some(dest) = dest {
            v["destinationConversationId"] = json!(dest);
        }
        v
    })
}

fn established_event() -> impl Strategy<Value = Value> {
    (
        base(),
        uuid(),
        prop::option::of((any::<bool>(), any::<bool>())),
        prop::option::of(any::<bool>()),
        text(),
        text(),
        prop::option::of(text()),
    )
        .prop_map(|((e, t, c, m), u, audio, inbound, src, inter, tag)| {
            let mut initial = json!({});
            if let Some((hear, speak)) = audio {
                initial["audioState"] = json!({"canHear":hear,"canSpeak":speak});
            }
            if let Some(inbound) = inbound {
                initial["inbound"] = json!(inbound);
                initial["alerting"] = json!(!inbound);
            }
            let mut source = json!({"sourceId":src,"interactionId":inter});
            if let Some(tag) = tag {
                source["tagId"] = json!(tag);
            }
            json!({"eventId":e,"eventDateTime":t,"conversationId":c,"communicationId":m,
                "userId":u,"initialConfiguration":initial,"sourceConfiguration":source})
        })
}

/// A valid body of any endpoint, 1 to 100 events.
fn valid_body() -> impl Strategy<Value = (Endpoint, Value)> {
    prop_oneof![
        prop::collection::vec(routing_event(), 1..=MAX_EVENTS_PER_REQUEST)
            .prop_map(|v| (Endpoint::Routing, json!({"userRoutingStatusEvents": v}))),
        prop::collection::vec(presence_event(), 1..=MAX_EVENTS_PER_REQUEST)
            .prop_map(|v| (Endpoint::Presence, json!({"userPresenceEvents": v}))),
        (
            prop::collection::vec(answered_event(), 0..8),
            prop::collection::vec(hold_event(), 0..8),
            prop::collection::vec(established_event(), 0..8),
            prop::collection::vec(ended_event(), 1..8),
        )
            .prop_map(|(a, h, u, e)| {
                let mut body = serde_json::Map::new();
                for (name, events) in [
                    ("communicationAnsweredEvents", a),
                    ("holdUpdatedEvents", h),
                    ("userEstablishedEvents", u),
                    ("communicationEndedEvents", e),
                ] {
                    if !events.is_empty() {
                        body.insert(name.into(), Value::Array(events));
                    }
                }
                (Endpoint::Conversations, Value::Object(body))
            }),
    ]
}

/// How one field is broken.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    Remove,
    Null,
    WrongType,
    BadValue,
}

fn bad_value(kind: FieldKind) -> Value {
    match kind {
        FieldKind::Uuid => json!("550e8400-e29b-41d4-a716-44665544000"),
        FieldKind::DateTime => json!("2026-11-21 10:00:00"),
        FieldKind::Text => json!("  "),
        FieldKind::Bool => json!("true"),
        FieldKind::RoutingStatus => json!("OFF_QUEUE"),
        FieldKind::DisconnectType => json!("self"),
    }
}

/// Applies `mutation` to the `pick`-th (event, required field) pair of `body`; the
/// pointer of the mutated field and the code the validator must report.
fn mutate(body: &mut Value, pick: usize, mutation: Mutation) -> Option<(String, ViolationCode)> {
    let mut targets = Vec::new();
    let breaks_optional = matches!(mutation, Mutation::WrongType | Mutation::BadValue);
    for (array, events) in body.as_object()? {
        for (i, event) in events.as_array()?.iter().enumerate() {
            for (field, kind) in required(array) {
                targets.push((array.clone(), i, field, kind));
            }
            for (field, kind) in optional(array) {
                if breaks_optional && event.pointer(&format!("/{field}")).is_some() {
                    targets.push((array.clone(), i, field, kind));
                }
            }
        }
    }
    let (array, i, field, kind) = targets[pick % targets.len()].clone();
    let pointer = format!("/{array}/{i}/{field}");
    let (parent, leaf) = pointer.rsplit_once('/')?;
    let parent = body.pointer_mut(parent)?.as_object_mut()?;
    let code = match mutation {
        Mutation::Remove => {
            parent.remove(leaf);
            ViolationCode::Required
        }
        Mutation::Null => {
            parent.insert(leaf.into(), Value::Null);
            ViolationCode::Null
        }
        Mutation::WrongType => {
            parent.insert(leaf.into(), json!(12));
            ViolationCode::Type
        }
        Mutation::BadValue => {
            parent.insert(leaf.into(), bad_value(kind));
            match kind {
                FieldKind::Bool => ViolationCode::Type,
                FieldKind::RoutingStatus | FieldKind::DisconnectType => ViolationCode::Enum,
                _ => ViolationCode::Format,
            }
        }
    };
    Some((pointer, code))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_bodies_pass_and_round_trip((endpoint, body) in valid_body()) {
        let result = validate(endpoint, &body);
        prop_assert!(result.is_ok(), "{:?}", result);
        if let Endpoint::Routing = endpoint {
            let typed = validate_routing_status(&body).unwrap();
            let again = serde_json::to_value(&typed).unwrap();
            prop_assert_eq!(validate_routing_status(&again).unwrap(), typed);
        }
    }

    #[test]
    fn every_single_mutation_is_caught_at_its_path(
        (endpoint, mut body) in valid_body(),
        pick in any::<usize>(),
        mutation in prop_oneof![
            Just(Mutation::Remove), Just(Mutation::Null),
            Just(Mutation::WrongType), Just(Mutation::BadValue),
        ],
    ) {
        let (path, code) = mutate(&mut body, pick, mutation).unwrap();
        let refusal = validate(endpoint, &body).unwrap_err();
        prop_assert_eq!(refusal.code, RefusalCode::BadRequest);
        prop_assert_eq!(refusal.violations.len(), 1, "{:?}", refusal.violations);
        prop_assert_eq!(&refusal.violations[0].path, &path);
        prop_assert_eq!(refusal.violations[0].code, code);
    }

    #[test]
    fn more_than_100_events_over_all_arrays_is_max_batch_size(
        a in prop::collection::vec(answered_event(), 0..=101),
        e in prop::collection::vec(ended_event(), 0..=101),
    ) {
        let total = a.len() + e.len();
        let body = json!({"communicationAnsweredEvents": a, "communicationEndedEvents": e});
        match validate_conversations(&body) {
            Ok(typed) => prop_assert!((1..=MAX_EVENTS_PER_REQUEST).contains(&typed.len())),
            Err(r) if total == 0 => prop_assert_eq!(r.code, RefusalCode::ZeroEventsSubmitted),
            Err(r) => {
                prop_assert!(total > MAX_EVENTS_PER_REQUEST);
                prop_assert_eq!(r.code, RefusalCode::MaxBatchSizeSurpassed);
                prop_assert_eq!(r.violations.len(), 1);
            }
        }
    }
}
