//! Interactions events (PROTOCOL.md section 4) and query-back (section 4.1).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::desktop::AgentState;

/// Path of the events endpoint on an API host.
pub const EVENTS_PATH: &str = "/api/v2/interactions/events";
/// Path of the query-back endpoint on an API host.
pub const QUERY_PATH: &str = "/api/v2/analytics/interactions/events/query";
/// The only `eventType`.
pub const EVENT_TYPE: &str = "routing/agent/state";
/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 500;
/// Most bytes in one batch body.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Most events in one query-back answer.
pub const MAX_QUERY_EVENTS: usize = 10_000;

/// One desktop event, the seed's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionEvent {
    pub sequence_id: Uuid,
    /// As sent (already checked by [`validate_batch`]); written by [`crate::time::format_event`].
    pub timestamp: String,
    pub interaction_id: Uuid,
    pub agent_id: Uuid,
    pub state: AgentState,
    pub event_type: String,
}

/// One bad event in a refused batch: `{"index","field","message"}` (section 4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventViolation {
    /// Index of the event in the array (`None` for a fault of the whole body).
    pub index: Option<usize>,
    pub field: String,
    pub message: String,
}

/// The keys of an event, in the order of section 4.
pub const EVENT_KEYS: [&str; 6] = [
    "sequenceId",
    "timestamp",
    "interactionId",
    "agentId",
    "state",
    "eventType",
];

/// Checks a parsed batch body (an array of 1-500 events, every field per section 4, no
/// sequenceId twice). Returns the typed events, or every violation: faults of the whole
/// body first (index `None`), then each event's in array order, fields in the order of
/// [`EVENT_KEYS`] and unknown keys after them.
pub fn validate_batch(body: &Value) -> Result<Vec<InteractionEvent>, Vec<EventViolation>> {
    let whole = |message: String| EventViolation {
        index: None,
        field: String::new(),
        message,
    };
    let Some(items) = body.as_array() else {
        return Err(vec![whole(format!(
            "expected a JSON array of 1 to {MAX_BATCH_EVENTS} events, found {}",
            describe(body)
        ))]);
    };
    let mut out = Vec::new();
    if items.is_empty() {
        out.push(whole(format!(
            "the batch is empty; expected 1 to {MAX_BATCH_EVENTS} events"
        )));
    } else if items.len() > MAX_BATCH_EVENTS {
        out.push(whole(format!(
            "the batch has {} events; expected 1 to {MAX_BATCH_EVENTS}",
            items.len()
        )));
    }
    let mut events = Vec::with_capacity(items.len());
    // First index of each sequenceId, to name it when the id comes again.
    let mut first_seen: HashMap<Uuid, usize> = HashMap::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let before = out.len();
        let event = check_event(index, item, &mut out);
        // Duplicates are checked on every well-formed sequenceId, even in an event that is
        // otherwise broken, so one answer lists every problem.
        let sequence_id = item
            .get("sequenceId")
            .and_then(Value::as_str)
            .and_then(parse_lower_uuid);
        if let Some(id) = sequence_id {
            match first_seen.entry(id) {
                Entry::Occupied(first) => out.push(EventViolation {
                    index: Some(index),
                    field: "sequenceId".into(),
                    message: format!(
                        "sequenceId {id} appears twice in the batch (first at index {}); each event needs its own",
                        first.get()
                    ),
                }),
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
        }
        if let (Some(event), true) = (event, out.len() == before) {
            events.push(event);
        }
    }
    if out.is_empty() { Ok(events) } else { Err(out) }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(o) => format!("an object of {} keys", o.len()),
    }
}

/// A lowercase hyphenated UUID (any version), as section 4 asks for event ids.
fn parse_lower_uuid(s: &str) -> Option<Uuid> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    crate::validate::parse_hyphenated_uuid(s)
}

fn check_event(
    index: usize,
    item: &Value,
    out: &mut Vec<EventViolation>,
) -> Option<InteractionEvent> {
    let mut bad = |field: &str, message: String| {
        out.push(EventViolation {
            index: Some(index),
            field: field.to_owned(),
            message,
        })
    };
    let Some(obj) = item.as_object() else {
        bad(
            "",
            format!(
                "expected an event object with {}, found {}",
                EVENT_KEYS.join(", "),
                describe(item)
            ),
        );
        return None;
    };
    let states: Vec<&str> = AgentState::ALL.iter().map(|s| s.as_wire()).collect();
    let mut sequence_id = None;
    let mut timestamp = None;
    let mut interaction_id = None;
    let mut agent_id = None;
    let mut state = None;
    let mut event_type = None;
    for field in EVENT_KEYS {
        let what = match field {
            "timestamp" => {
                "an RFC 3339 UTC timestamp (Z or +00:00, 0 to 9 fraction digits), e.g. 2026-11-21T10:00:00.123456789Z".to_owned()
            }
            "state" => format!("one of {}", states.join(", ")),
            "eventType" => format!("\"{EVENT_TYPE}\""),
            _ => "a lowercase hyphenated UUID, e.g. 550e8400-e29b-41d4-a716-446655440000".to_owned(),
        };
        let raw = match obj.get(field) {
            None => {
                bad(field, format!("{field} is missing; expected {what}"));
                continue;
            }
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                bad(field, format!("expected {what}, found {}", describe(other)));
                continue;
            }
        };
        let ok = match field {
            "sequenceId" => {
                sequence_id = parse_lower_uuid(raw);
                sequence_id.is_some()
            }
            "interactionId" => {
                interaction_id = parse_lower_uuid(raw);
                interaction_id.is_some()
            }
            "agentId" => {
                agent_id = parse_lower_uuid(raw);
                agent_id.is_some()
            }
            "timestamp" => {
                timestamp = crate::time::parse(raw).map(|_| raw.to_owned());
                timestamp.is_some()
            }
            "state" => {
                state = AgentState::ALL.into_iter().find(|a| a.as_wire() == raw);
                state.is_some()
            }
            _ => {
                event_type = (raw == EVENT_TYPE).then(|| raw.to_owned());
                event_type.is_some()
            }
        };
        if !ok {
            bad(
                field,
                format!(
                    "found {}; expected {what}",
                    describe(&Value::String(raw.to_owned()))
                ),
            );
        }
    }
    for key in obj.keys() {
        if !EVENT_KEYS.contains(&key.as_str()) {
            bad(
                key,
                format!(
                    "unknown key {key:?}; an event has exactly the keys {}",
                    EVENT_KEYS.join(", ")
                ),
            );
        }
    }
    Some(InteractionEvent {
        sequence_id: sequence_id?,
        timestamp: timestamp?,
        interaction_id: interaction_id?,
        agent_id: agent_id?,
        state: state?,
        event_type: event_type?,
    })
}

/// Per-event status after processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Accepted,
    Rejected,
    Pending,
}

/// The code of a rejected transition.
pub const CODE_INVALID_TRANSITION: &str = "invalid.transition";

/// 202 answer of `async=true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncBatchResponse {
    pub batch_id: Uuid,
    pub received: usize,
}

/// One event's outcome in a sync answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventResult {
    pub sequence_id: Uuid,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// 200 answer of `async=false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncBatchResponse {
    pub batch_id: Uuid,
    pub results: Vec<EventResult>,
}

/// A query-back request: exactly one of the three keys, plus an optional cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One event in a query-back answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueriedEvent {
    pub sequence_id: Uuid,
    pub batch_id: Uuid,
    pub agent_id: Uuid,
    pub interaction_id: Uuid,
    pub state: AgentState,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
}

/// A query-back answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResponse {
    pub events: Vec<QueriedEvent>,
    #[serde(default)]
    pub not_found: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
