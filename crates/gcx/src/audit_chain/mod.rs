//! The audit log's records and what makes them tamper-evident: the record types, the
//! hash chain, the signing key and signed checkpoints. The store appends records with
//! these (it owns the transaction that orders them); `audit` reads them back (verify,
//! report, export). Nothing here touches a database.
//!
//! # Layout
//! - [`hash`]: canonical JSON, the record hash and how a batch of events is linked
//!   after the chain head.
//! - [`keys`]: the Ed25519 signing key in the data folder and its exported public key.
//! - [`checkpoint`]: signed checkpoints (seq, hash) and their files.

pub mod checkpoint;
pub mod hash;
pub mod keys;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use checkpoint::Checkpoint;
pub use hash::{GENESIS_HASH, canonical_json, parameters_sha256};
pub use keys::{AuditKeys, KeyError};

/// One step of one trigger, as a caller describes it (EU AI Act art. 12 style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The trigger's correlationId (lowercase).
    pub correlation_id: String,
    pub action_type: String,
    /// The step: `accepted`, `sent`, `acked`, `retried`, `completed`, `failed`, `rejected`.
    pub status: String,
    /// Stored with microsecond precision (both backends keep exactly that much).
    #[serde(with = "hash::timestamp")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "hash::timestamp")]
    pub ended_at: DateTime<Utc>,
    /// The seed's `latencyMs`: send -> result for final steps, else the step's duration.
    pub latency_ms: f64,
    /// Time the trigger waited for a concurrency slot.
    pub queue_wait_ms: Option<f64>,
    pub send_to_ack_ms: Option<f64>,
    pub send_to_result_ms: Option<f64>,
    pub agent_id: String,
    pub session_id: String,
    pub interaction_type: String,
    /// The action catalogue version the trigger was validated against.
    pub catalogue_version: String,
    /// SHA-256 (hex) of the canonical JSON of `parameterMatrix`.
    pub parameters_sha256: String,
    /// The raw parameters, only when configured (they may hold personal data).
    pub parameters: Option<serde_json::Value>,
    /// `success`, `failure` or `pending`.
    pub outcome: String,
    pub error: Option<String>,
    /// Re-sends so far.
    pub retries: u32,
    /// Which gcx process did it: `hostname:pid` ([`crate::instance::id`]).
    pub instance: String,
}

/// A stored record: the event plus its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(with = "hash::timestamp")]
    pub recorded_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex SHA-256 of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this record's canonical JSON.
    pub hash: String,
}

impl AuditRecord {
    /// The hash this record's content implies (compare with [`AuditRecord::hash`]).
    pub fn compute_hash(&self) -> String {
        hash::record_hash(self)
    }
}
