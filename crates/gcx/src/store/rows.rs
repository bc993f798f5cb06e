//! Stored rows read back into the store's types, the same for both backends: the column
//! lists every statement selects (and the writers insert), and one decoder per type over
//! a row of either backend.
//!
//! The backends store the same values, some in different SQL types (SQLite: UUIDs as
//! text, timestamps as microseconds since the Unix epoch, every integer in 64 bits;
//! PostgreSQL: `uuid`, `timestamptz`, an `INTEGER` status code). [`Columns`] is where
//! each backend says how it reads those; everything else reads alike
//! ([`CommonColumns`]).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::convert;
use super::error::db_error;
use super::{EndpointState, FinalOutcome, OutboxMessage, StoreError, TriggerRow};
use crate::audit_chain::{AuditEvent, AuditRecord, Checkpoint};

/// The columns of a [`TriggerRow`], in the order [`trigger`] reads them.
pub(crate) const TRIGGER_COLUMNS: &str = "correlation_id, action_type, payload, state, \
    attempts, accepted_at, updated_at, output, error";

/// The columns of an [`OutboxMessage`] (of `outbox o`), in the order [`outbox`] reads them.
pub(crate) const OUTBOX_COLUMNS: &str = "o.id, o.message_id, o.endpoint, o.ordering_key, \
    o.body, o.created_at, o.attempts, o.next_attempt_at, o.status, o.last_error, \
    o.last_status";

/// The columns of an [`AuditRecord`], in the order [`audit_record`] reads them.
pub(crate) const AUDIT_COLUMNS: &str = "seq, recorded_at, correlation_id, action_type, \
    status, started_at, ended_at, latency_ms, queue_wait_ms, send_to_ack_ms, \
    send_to_result_ms, agent_id, session_id, interaction_type, catalogue_version, \
    parameters_sha256, parameters, outcome, error, retries, instance, prev_hash, hash";

/// The columns of a [`Checkpoint`], in the order [`checkpoint`] reads them.
pub(crate) const CHECKPOINT_COLUMNS: &str = "seq, hash, signature, key_id, signed_at";

/// Reading column `i` of a row as a type both backends store alike; a database error
/// names `location`.
pub(crate) trait CommonColumns {
    fn text(&self, i: usize, location: &str) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize, location: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, i: usize, location: &str) -> Result<i64, StoreError>;
    fn real(&self, i: usize, location: &str) -> Result<f64, StoreError>;
    fn opt_real(&self, i: usize, location: &str) -> Result<Option<f64>, StoreError>;
    fn flag(&self, i: usize, location: &str) -> Result<bool, StoreError>;
}

impl<R> CommonColumns for R
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, i: usize, location: &str) -> Result<String, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn opt_text(&self, i: usize, location: &str) -> Result<Option<String>, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn int(&self, i: usize, location: &str) -> Result<i64, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn real(&self, i: usize, location: &str) -> Result<f64, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn opt_real(&self, i: usize, location: &str) -> Result<Option<f64>, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn flag(&self, i: usize, location: &str) -> Result<bool, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }
}

/// Reading the columns whose SQL type differs between the backends; `what` names the
/// column in a decoding error.
pub(crate) trait Columns: CommonColumns {
    fn time(&self, i: usize, location: &str, what: &str) -> Result<DateTime<Utc>, StoreError>;
    fn uuid(&self, i: usize, location: &str, what: &str) -> Result<Uuid, StoreError>;
    /// A nullable HTTP status code.
    fn status_code(&self, i: usize, location: &str, what: &str) -> Result<Option<u16>, StoreError>;
}

/// Rows of [`TRIGGER_COLUMNS`], in their order.
pub(crate) fn triggers<R: Columns>(rows: &[R], l: &str) -> Result<Vec<TriggerRow>, StoreError> {
    rows.iter().map(|r| trigger(r, l)).collect()
}

/// A row of [`TRIGGER_COLUMNS`].
pub(crate) fn trigger(row: &impl Columns, l: &str) -> Result<TriggerRow, StoreError> {
    Ok(TriggerRow {
        correlation_id: row.uuid(0, l, "triggers.correlation_id")?,
        action_type: row.text(1, l)?,
        payload: convert::json(l, "triggers.payload", &row.text(2, l)?)?,
        state: convert::state(l, &row.text(3, l)?)?,
        attempts: convert::u32_of(l, "triggers.attempts", row.int(4, l)?)?,
        accepted_at: row.time(5, l, "triggers.accepted_at")?,
        updated_at: row.time(6, l, "triggers.updated_at")?,
        output: convert::opt_json(l, "triggers.output", row.opt_text(7, l)?)?,
        error: convert::opt_json(l, "triggers.error", row.opt_text(8, l)?)?,
    })
}

/// A row of [`OUTBOX_COLUMNS`].
pub(crate) fn outbox(row: &impl Columns, l: &str) -> Result<OutboxMessage, StoreError> {
    Ok(OutboxMessage {
        id: row.int(0, l)?,
        message_id: row.text(1, l)?,
        endpoint: row.text(2, l)?,
        ordering_key: row.text(3, l)?,
        body: convert::json(l, "outbox.body", &row.text(4, l)?)?,
        created_at: row.time(5, l, "outbox.created_at")?,
        attempts: convert::u32_of(l, "outbox.attempts", row.int(6, l)?)?,
        next_attempt_at: row.time(7, l, "outbox.next_attempt_at")?,
        status: convert::outbox_status(l, &row.text(8, l)?)?,
        last_error: row.opt_text(9, l)?,
        last_status: row.status_code(10, l, "outbox.last_status")?,
    })
}

/// A row of [`AUDIT_COLUMNS`].
pub(crate) fn audit_record(row: &impl Columns, l: &str) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: convert::u64_of(l, "audit_records.seq", row.int(0, l)?)?,
        recorded_at: row.time(1, l, "audit_records.recorded_at")?,
        event: AuditEvent {
            correlation_id: row.text(2, l)?,
            action_type: row.text(3, l)?,
            status: row.text(4, l)?,
            started_at: row.time(5, l, "audit_records.started_at")?,
            ended_at: row.time(6, l, "audit_records.ended_at")?,
            latency_ms: row.real(7, l)?,
            queue_wait_ms: row.opt_real(8, l)?,
            send_to_ack_ms: row.opt_real(9, l)?,
            send_to_result_ms: row.opt_real(10, l)?,
            agent_id: row.text(11, l)?,
            session_id: row.text(12, l)?,
            interaction_type: row.text(13, l)?,
            catalogue_version: row.text(14, l)?,
            parameters_sha256: row.text(15, l)?,
            parameters: convert::opt_json(l, "audit_records.parameters", row.opt_text(16, l)?)?,
            outcome: row.text(17, l)?,
            error: row.opt_text(18, l)?,
            retries: convert::u32_of(l, "audit_records.retries", row.int(19, l)?)?,
            instance: row.text(20, l)?,
        },
        prev_hash: row.text(21, l)?,
        hash: row.text(22, l)?,
    })
}

/// A row of [`CHECKPOINT_COLUMNS`].
pub(crate) fn checkpoint(row: &impl Columns, l: &str) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        seq: convert::u64_of(l, "audit_checkpoints.seq", row.int(0, l)?)?,
        hash: row.text(1, l)?,
        signature: row.text(2, l)?,
        key_id: row.text(3, l)?,
        signed_at: row.time(4, l, "audit_checkpoints.signed_at")?,
    })
}

/// A row of `action_type, status, latency_ms` of `audit_records`.
pub(crate) fn final_outcome(row: &impl Columns, l: &str) -> Result<FinalOutcome, StoreError> {
    Ok(FinalOutcome {
        action_type: row.text(0, l)?,
        status: row.text(1, l)?,
        latency_ms: row.real(2, l)?,
    })
}

/// A row of `disabled, reason` of `endpoints`.
pub(crate) fn endpoint(row: &impl Columns, l: &str) -> Result<EndpointState, StoreError> {
    Ok(EndpointState {
        disabled: row.flag(0, l)?,
        reason: row.opt_text(1, l)?,
    })
}
