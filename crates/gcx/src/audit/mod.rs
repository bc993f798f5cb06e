//! The audit log's readers. The log holds append-only records of every trigger step,
//! hash-chained, with signed checkpoints (Ed25519), so any edit, deletion, reordering or
//! truncation is detectable offline by anyone holding the public key. The records, the
//! chain and the keys are [`crate::audit_chain`] (re-exported here), which the store
//! writes with; this module reads the store back.
//!
//! # Layout
//! - [`verify`]: walks the chain and the checkpoints; names the first bad record.
//! - [`report`]: the seed's metrics plus latency percentiles, by action type.
//! - [`export`]: streams records as JSON lines.

pub mod export;
pub mod report;
pub mod verify;

pub use crate::audit_chain::{
    AuditEvent, AuditKeys, AuditRecord, Checkpoint, GENESIS_HASH, KeyError, canonical_json,
    checkpoint, keys, parameters_sha256,
};
pub use export::{ExportOptions, export};
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

/// The statuses that end a trigger; [`report`] computes its metrics over these.
pub const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "rejected"];
