//! The outbox worker: delivers stored webhooks (CRM and QA) with Standard Webhooks
//! signatures, the retry schedule of PROTOCOL.md section 5, per-key order, dead letters,
//! an endpoint circuit breaker and bounded parallelism per endpoint.
//!
//! Producers never send webhooks themselves: they add a [`message`] to the
//! [`WriteBatch`](crate::store::WriteBatch) that records the change it reports (the
//! transactional outbox), commit, and call [`DeliveryHandle::notify`]. The worker does the
//! rest, and a restarted worker picks up whatever was committed and not yet delivered.
//!
//! # Layout (one stage per module)
//! - [`target`]: the endpoints (`crm`, `qa`): URL and secret from configuration, checked.
//! - [`signer`]: the Standard Webhooks headers of one attempt.
//! - `attempt`: one POST, reduced to an [`AttemptOutcome`].
//! - [`schedule`]: what an outcome means (delivered, retry when, dead, endpoint gone).
//! - [`breaker`]: the circuit breaker of one endpoint.
//! - [`worker`]: the loops that tie the stages to the store.

mod attempt;
pub mod breaker;
pub mod schedule;
pub mod signer;
pub mod target;
pub mod worker;

use uuid::Uuid;

use crate::store::{NewOutboxMessage, StoreError};

pub use schedule::{AttemptOutcome, RetrySchedule, Verdict};
pub use signer::Signer;
pub use target::{CRM, QA};
pub use worker::{DeliveryCounters, DeliveryHandle, DeliveryWorker, DrainReport};

/// Why the worker cannot start or report.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A configuration setting is unusable; `reason` says why and what is accepted.
    #[error("{setting} {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot build the HTTP client for webhook delivery: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("the delivery worker must be spawned inside a tokio runtime")]
    NoRuntime,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh `webhook-id`: `msg_` + a UUID v7 in simple form. Unique like a v4, and
/// time-ordered, so the store's unique index on it grows at its right edge instead of
/// rewriting a random page of it for every row.
pub fn new_message_id() -> String {
    format!("msg_{}", Uuid::now_v7().simple())
}

/// An outbox row for `endpoint` (`crm` or `qa`) with a fresh `webhook-id`
/// ([`new_message_id`]). Rows sharing `ordering_key` (for a trigger's CRM rows,
/// `assist::record::crm_ordering_key`) are delivered in the order they were committed.
pub fn message<T: serde::Serialize + ?Sized>(
    endpoint: &str,
    ordering_key: &str,
    body: &T,
) -> NewOutboxMessage {
    NewOutboxMessage {
        message_id: new_message_id(),
        endpoint: endpoint.to_owned(),
        ordering_key: ordering_key.to_owned(),
        body: crate::store::json_text(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_get_unique_standard_ids() {
        let a = message(CRM, "c1", &serde_json::json!({"x": 1}));
        let b = message(CRM, "c1", &serde_json::json!({"x": 1}));
        assert_ne!(a.message_id, b.message_id);
        assert!(a.message_id.starts_with("msg_"));
        assert_eq!(a.message_id.len(), 4 + 32);
        assert!(a.message_id[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            (a.endpoint.as_str(), a.ordering_key.as_str()),
            ("crm", "c1")
        );
    }
}
