//! The sandbox's events batch parser (`events::batch`): body -> events, through the
//! allocation-free fast path or the protocol validator.
//! Asserts: whatever the fast path accepts, the validator accepts with the same events;
//! an accepted batch has 1 to 500 events with distinct sequenceIds; a refusal lists
//! violations; `NotJson` exactly when serde_json refuses the body.
#![no_main]

use std::collections::HashSet;

use gcx_protocol::events::{MAX_BATCH_EVENTS, validate_batch};
use gcx_sandbox::fuzzing::{BatchError, EventIn, events_batch_fast, parse_batch};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_batch(data);
    if let Some(fast) = events_batch_fast(data) {
        let value: Value = serde_json::from_slice(data).expect("the fast path read JSON");
        let checked = validate_batch(&value).expect("the fast path accepted an invalid batch");
        let checked: Vec<EventIn> = checked.iter().map(EventIn::from).collect();
        assert_eq!(fast, checked);
        assert_eq!(parsed.as_ref().ok(), Some(&fast));
    }
    match parsed {
        Ok(events) => {
            assert!((1..=MAX_BATCH_EVENTS).contains(&events.len()));
            let distinct: HashSet<_> = events.iter().map(|e| e.sequence_id).collect();
            assert_eq!(distinct.len(), events.len());
        }
        Err(BatchError::NotJson(_)) => {
            assert!(serde_json::from_slice::<Value>(data).is_err());
        }
        Err(BatchError::Invalid { violations, .. }) => {
            assert!(!violations.is_empty(), "a refused batch with no violation");
        }
    }
});
