//! The audit log: append-only records of every trigger step, hash-chained, with signed
//! checkpoints (Ed25519), so any edit, deletion, reordering or truncation is detectable
//! offline by anyone holding the public key. Verify, report and export live here; the
//! store writes the records (it owns the transaction that orders them).
//!
//! # Layout
//! - [`chain`]: canonical JSON, the record hash and how a batch of events is appended.
//! - [`keys`]: the Ed25519 signing key in the data folder and its exported public key.
//! - [`checkpoint`]: signed checkpoints (seq, hash) and their files.
//! - [`verify`]: walks the chain and the checkpoints; names the first bad record.
//! - [`report`]: the seed's metrics plus latency percentiles, by action type.
//! - [`export`]: streams records as JSON lines.

pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod keys;
pub mod report;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use chain::{GENESIS_HASH, canonical_json, parameters_sha256};
pub use checkpoint::Checkpoint;
pub use export::{ExportOptions, export};
pub use keys::{AuditKeys, KeyError};
pub use report::{ActionMetrics, AuditMetrics, TimeRange, report};
pub use verify::{Problem, ProblemKind, VerifyOptions, VerifyReport, verify};

/// Why an audit operation (verify, report, export) could not run at all. A tampered log
/// is not an error: [`verify`] reports it in its [`VerifyReport`].
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("writing the export failed: {0}")]
    Write(#[source] std::io::Error),
}

/// One step of one trigger, as a caller describes it (EU AI Act art. 12 style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The trigger's correlationId (lowercase).
    pub correlation_id: String,
    pub action_type: String,
    /// The step: `accepted`, `sent`, `acked`, `retried`, `completed`, `failed`, `rejected`.
    pub status: String,
    /// Stored with microsecond precision (both backends keep exactly that much).
    #[serde(with = "chain::timestamp")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "chain::timestamp")]
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
    /// Which gcx instance did it (hostname:pid or the serve instance id).
    pub instance: String,
}

/// A stored record: the event plus its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(with = "chain::timestamp")]
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
        chain::record_hash(self)
    }
}

/// The statuses that end a trigger; [`report`] computes its metrics over these.
pub const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "rejected"];

/// This process as an audit `instance`: `hostname:pid`.
pub fn instance_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_kernel
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_is_host_and_pid() {
        let id = instance_id();
        let (host, pid) = id.rsplit_once(':').unwrap();
        assert!(!host.is_empty());
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
    }
}
