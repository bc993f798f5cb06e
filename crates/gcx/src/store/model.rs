//! The store's types, the same for both backends: what a write carries
//! ([`WriteBatch`] and its parts), what a read returns ([`TriggerRow`],
//! [`OutboxMessage`], ...), and the states they move through.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::audit_chain::AuditEvent;

/// Lifecycle of a trigger (PROTOCOL.md section 5, DESIGN.md data flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerState {
    /// Validated and durably stored; not yet acked by the engine.
    Accepted,
    /// Acked by the engine; no result yet.
    Sent,
    Completed,
    Failed,
    /// Refused for good without ever being acked (e.g. 400 from the engine).
    Rejected,
}

impl TriggerState {
    /// Whether the trigger still needs work (resume reloads these).
    pub fn is_unfinished(self) -> bool {
        matches!(self, TriggerState::Accepted | TriggerState::Sent)
    }

    /// The state machine: an unfinished trigger may move to any state except back from
    /// `sent` to `accepted`; a finished one never moves again.
    pub fn can_move_to(self, next: TriggerState) -> bool {
        match self {
            TriggerState::Accepted => true,
            TriggerState::Sent => next != TriggerState::Accepted,
            TriggerState::Completed | TriggerState::Failed | TriggerState::Rejected => false,
        }
    }

    /// The stored (and serialized) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Accepted => "accepted",
            TriggerState::Sent => "sent",
            TriggerState::Completed => "completed",
            TriggerState::Failed => "failed",
            TriggerState::Rejected => "rejected",
        }
    }

    pub fn parse(name: &str) -> Option<TriggerState> {
        Some(match name {
            "accepted" => TriggerState::Accepted,
            "sent" => TriggerState::Sent,
            "completed" => TriggerState::Completed,
            "failed" => TriggerState::Failed,
            "rejected" => TriggerState::Rejected,
            _ => return None,
        })
    }
}

impl std::fmt::Display for TriggerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `value` as the JSON text a write stores. Writes carry JSON as text, serialized once
/// by whoever builds them: the committer only binds it, and a batch holds a few strings
/// rather than a tree of small allocations for the committer's thread to free.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    // Only a type whose `Serialize` fails (none of ours: plain data with string keys)
    // could end here; `null` then says so in the row instead of losing the write.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// One change to a trigger inside a [`WriteBatch`].
#[derive(Debug, Clone)]
pub enum TriggerWrite {
    /// Insert as `accepted`, unless the correlationId is already stored (then unchanged;
    /// the [`CommitReceipt`] says what state it had).
    Accept {
        correlation_id: Uuid,
        action_type: String,
        /// The validated payload as JSON (re-sent verbatim on resume).
        payload: Box<RawValue>,
        at: DateTime<Utc>,
    },
    /// Move a stored trigger to `state`.
    Transition {
        correlation_id: Uuid,
        state: TriggerState,
        /// Sends so far (first send = 1).
        attempts: u32,
        at: DateTime<Utc>,
        /// The result's `output` (completed) ...
        output: Option<Box<RawValue>>,
        /// ... or its `error` (failed / rejected).
        error: Option<Box<RawValue>>,
    },
}

/// A webhook to deliver, written in the same transaction as the change it reports.
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    /// `webhook-id`: unique per message, the same on every retry (`msg_` + UUID simple).
    pub message_id: String,
    /// Which target: `crm` or `qa` (the URL and secret come from configuration).
    pub endpoint: String,
    /// Messages with the same key are delivered in insertion order (the correlationId).
    pub ordering_key: String,
    /// The JSON body, sent byte for byte as serialized here.
    pub body: Box<RawValue>,
}

/// Delivery state of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    Pending,
    Delivered,
    /// Dead letter: a final 4xx, the schedule exhausted, or a dead predecessor.
    Dead,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
        }
    }

    pub fn parse(name: &str) -> Option<OutboxStatus> {
        Some(match name {
            "pending" => OutboxStatus::Pending,
            "delivered" => OutboxStatus::Delivered,
            "dead" => OutboxStatus::Dead,
            _ => return None,
        })
    }
}

/// A stored outbox message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Store-assigned, increasing in insertion order.
    pub id: i64,
    pub message_id: String,
    pub endpoint: String,
    pub ordering_key: String,
    pub body: Value,
    pub created_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub status: OutboxStatus,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
}

/// Counts for `gcx outbox status` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Finished triggers (completed, failed, rejected).
    pub triggers: u64,
    /// Delivered webhooks.
    pub webhooks: u64,
}

/// Where a prune has got to in each table's key order (SQLite's rowid and outbox id): the
/// next chunk looks only after these. PostgreSQL finds the rows through indexes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PruneCursor {
    pub triggers: i64,
    pub webhooks: i64,
}

impl PruneCursor {
    pub(crate) const START: PruneCursor = PruneCursor {
        triggers: i64::MIN,
        webhooks: i64::MIN,
    };
}

/// Which dead letters `replay` puts back.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
}

/// A stored trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerRow {
    pub correlation_id: Uuid,
    pub action_type: String,
    pub payload: Value,
    pub state: TriggerState,
    pub attempts: u32,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub output: Option<Value>,
    pub error: Option<Value>,
}

/// Everything one caller commits atomically.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub triggers: Vec<TriggerWrite>,
    pub outbox: Vec<NewOutboxMessage>,
    pub audit: Vec<AuditEvent>,
    /// The triggers this batch newly accepts also join the cluster's dispatch queue, in
    /// the same transaction (PostgreSQL; `cluster/`). SQLite keeps no queue.
    pub queue: bool,
    /// Written by the cluster's leader under this term: refused with
    /// [`StoreError::Fenced`](super::StoreError::Fenced) unless the term still holds the
    /// lease when the batch commits (PostgreSQL; `cluster/`).
    pub fence: Option<i64>,
}

/// What a commit reports back.
#[derive(Debug, Clone, Default)]
pub struct CommitReceipt {
    /// One entry per `TriggerWrite::Accept`, in order: `None` if newly accepted, else the
    /// state the correlationId already had.
    pub existing: Vec<Option<TriggerState>>,
}

/// Whether an endpoint is disabled (after a 410) and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointState {
    pub disabled: bool,
    pub reason: Option<String>,
}

/// Which database a [`Store`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

/// A final audit step as the metrics of `gcx audit report` and `/metrics` need it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalOutcome {
    pub action_type: String,
    /// `completed`, `failed` or `rejected`.
    pub status: String,
    pub latency_ms: f64,
}
