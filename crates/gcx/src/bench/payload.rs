//! The trigger the HTTP benchmarks post: a valid `knowledge_search`, ten to a session.

use serde_json::{Value, json};
use uuid::Uuid;

/// Trigger `n` of a run labelled `label` (its query and session name say which).
pub(crate) fn trigger(label: &str, n: usize, id: Uuid, max_retries: u32) -> Value {
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": format!("{label} query {n}"), "languageCode": "en-US"},
        "executionContext": {
            "agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "sessionId": format!("{label}-{}", n / 10),
            "interactionType": "voice"
        },
        "correlationId": id.to_string(),
        "maxRetries": max_retries
    })
}
