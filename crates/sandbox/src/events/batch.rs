//! Turning a batch body into events. The usual valid batch takes a fast path: a borrowed
//! parse with no allocation per event. Anything the fast path does not accept goes to the
//! protocol's validator, which is the authority on what is valid and lists every
//! violation; the fast path only ever accepts what the validator accepts (a property test
//! below holds it to that).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use gcx_protocol::AgentState;
use gcx_protocol::events::{
    EVENT_TYPE, EventViolation, InteractionEvent, MAX_BATCH_EVENTS, validate_batch,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::store::UuidHasher;

/// What the sandbox keeps of an event (the timestamp is checked, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventIn {
    pub sequence_id: Uuid,
    pub interaction_id: Uuid,
    pub agent_id: Uuid,
    pub state: AgentState,
}

impl From<&InteractionEvent> for EventIn {
    fn from(e: &InteractionEvent) -> EventIn {
        EventIn {
            sequence_id: e.sequence_id,
            interaction_id: e.interaction_id,
            agent_id: e.agent_id,
            state: e.state,
        }
    }
}

/// Why a body is not a batch.
#[derive(Debug)]
pub enum BatchError {
    NotJson(serde_json::Error),
    /// Every violation; `events` is the number of array elements (0 if not an array).
    Invalid {
        violations: Vec<EventViolation>,
        events: usize,
    },
}

/// The batch's events, or why it is refused.
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<EventIn>, BatchError> {
    if let Some(events) = fast(bytes) {
        return Ok(events);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(BatchError::NotJson)?;
    let events = value.as_array().map_or(0, Vec::len);
    let checked =
        validate_batch(&value).map_err(|violations| BatchError::Invalid { violations, events })?;
    let checked: Vec<EventIn> = checked.iter().map(EventIn::from).collect();
    // The validator refuses a repeated sequenceId; this keeps "nothing processed" true
    // even if it ever stopped doing so.
    let repeated = repeated_sequence_ids(&checked);
    if !repeated.is_empty() {
        return Err(BatchError::Invalid {
            violations: repeated,
            events,
        });
    }
    Ok(checked)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEvent<'a> {
    sequence_id: &'a str,
    timestamp: &'a str,
    interaction_id: &'a str,
    agent_id: &'a str,
    state: &'a str,
    event_type: &'a str,
}

/// The fast path: `None` whenever anything is unusual (the validator then decides).
pub fn fast(bytes: &[u8]) -> Option<Vec<EventIn>> {
    let raw: Vec<RawEvent<'_>> = serde_json::from_slice(bytes).ok()?;
    if raw.is_empty() || raw.len() > MAX_BATCH_EVENTS {
        return None;
    }
    let mut seen: HashSet<Uuid, BuildHasherDefault<UuidHasher>> =
        HashSet::with_capacity_and_hasher(raw.len(), Default::default());
    let mut events = Vec::with_capacity(raw.len());
    for r in &raw {
        let e = EventIn {
            sequence_id: lower_uuid(r.sequence_id)?,
            interaction_id: lower_uuid(r.interaction_id)?,
            agent_id: lower_uuid(r.agent_id)?,
            state: AgentState::from_wire(r.state)?,
        };
        if r.event_type != EVENT_TYPE || gcx_protocol::time::parse(r.timestamp).is_none() {
            return None;
        }
        if !seen.insert(e.sequence_id) {
            return None;
        }
        events.push(e);
    }
    Some(events)
}

/// A lowercase hyphenated UUID, as the validator wants event ids.
fn lower_uuid(s: &str) -> Option<Uuid> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    gcx_protocol::validate::parse_hyphenated_uuid(s)
}

fn repeated_sequence_ids(events: &[EventIn]) -> Vec<EventViolation> {
    let mut seen: HashSet<Uuid, BuildHasherDefault<UuidHasher>> =
        HashSet::with_capacity_and_hasher(events.len(), Default::default());
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| !seen.insert(e.sequence_id))
        .map(|(index, e)| EventViolation {
            index: Some(index),
            field: "sequenceId".into(),
            message: format!(
                "sequenceId {} appears earlier in the batch; a sequenceId may appear once per batch",
                e.sequence_id
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const KEYS: [&str; 6] = gcx_protocol::events::EVENT_KEYS;

    fn valid_event(n: u128, state: AgentState) -> Value {
        json!({
            "sequenceId": Uuid::from_u128(n).to_string(),
            "timestamp": "2026-11-21T10:00:00.123456789Z",
            "interactionId": Uuid::from_u128(n + 1_000).to_string(),
            "agentId": Uuid::from_u128(n % 7).to_string(),
            "state": state.as_wire(),
            "eventType": EVENT_TYPE,
        })
    }

    /// Small changes that may or may not break an event.
    fn mutation() -> impl Strategy<Value = (usize, u8, String)> {
        (
            0..KEYS.len(),
            0..8u8,
            prop_oneof![
                Just("2026-11-21T10:00:00Z".to_owned()),
                Just("2026-11-21T10:00:00+00:00".to_owned()),
                Just("2026-11-21T10:00:00+01:00".to_owned()),
                Just(Uuid::nil().to_string()),
                Just("routing/agent/busy".to_owned()),
                Just(EVENT_TYPE.to_owned()),
                ".{0,12}",
            ],
        )
    }

    fn mutate(e: &mut Value, (key, how, text): &(usize, u8, String)) {
        let key = KEYS[*key];
        match how {
            0 => {
                e.as_object_mut().unwrap().remove(key);
            }
            1 => e[key] = json!(text),
            2 => e[key] = json!(e[key].as_str().unwrap_or("").to_uppercase()),
            3 => e["extra"] = json!(text),
            4 => e[key] = json!(null),
            5 => e[key] = json!(7),
            _ => {} // unchanged
        }
    }

    fn batch() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec((0..5usize, prop::collection::vec(mutation(), 0..2)), 0..8),
            any::<bool>(),
        )
            .prop_map(|(events, repeat)| {
                let mut out: Vec<Value> = events
                    .iter()
                    .enumerate()
                    .map(|(i, (s, muts))| {
                        let mut e = valid_event(i as u128 + 1, AgentState::ALL[*s]);
                        for m in muts {
                            mutate(&mut e, m);
                        }
                        e
                    })
                    .collect();
                if repeat && !out.is_empty() {
                    out.push(out[0].clone());
                }
                Value::from(out)
            })
    }

    proptest! {
        /// The fast path accepts only what the validator accepts, with the same events.
        #[test]
        fn fast_path_agrees_with_the_validator(body in batch(), escaped in any::<bool>()) {
            let mut text = serde_json::to_string(&body).unwrap();
            if escaped {
                text = text.replace("routing", "\\u0072outing");
            }
            let by_validator = validate_batch(&body);
            match fast(text.as_bytes()) {
                Some(events) => {
                    let checked = by_validator.expect("fast path accepted an invalid batch");
                    let checked: Vec<EventIn> = checked.iter().map(EventIn::from).collect();
                    prop_assert_eq!(events, checked);
                }
                None => {
                    // Refused by the fast path: the full path gives the validator's answer.
                    let full = parse_batch(text.as_bytes());
                    prop_assert_eq!(full.is_ok(), by_validator.is_ok());
                }
            }
        }
    }

    #[test]
    fn valid_batches_take_the_fast_path() {
        let body = Value::from(
            (0..500)
                .map(|i| valid_event(i + 1, AgentState::ALL[i as usize % 5]))
                .collect::<Vec<_>>(),
        );
        let events = fast(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(events.len(), 500);
        assert_eq!(events[1].state, AgentState::Busy);
    }

    #[test]
    fn refusals_carry_the_validators_violations() {
        match parse_batch(br#"[{"sequenceId":"x"}]"#) {
            Err(BatchError::Invalid { violations, events }) => {
                assert_eq!(events, 1);
                assert!(violations.len() >= 5, "{violations:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_batch(b"nope"), Err(BatchError::NotJson(_))));
        let one = valid_event(1, AgentState::Busy);
        match parse_batch(&serde_json::to_vec(&json!([one, one])).unwrap()) {
            Err(BatchError::Invalid { violations, .. }) => {
                assert_eq!(violations[0].index, Some(1));
                assert_eq!(violations[0].field, "sequenceId");
            }
            other => panic!("{other:?}"),
        }
    }
}
