//! The reads both backends answer with the same SQL, written once.
//!
//! Both sqlx drivers take `$N` placeholders (SQLite reads `$1` as a parameter named by
//! its number), so a statement here runs on either as written; a backend only says how
//! it binds an [`Arg`] ([`BindArg`]) and decodes a column ([`Columns`]). Reads whose
//! SQL differs (the outbox's due rows and counts; PostgreSQL leases what it hands out)
//! are the backends' own.

use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::{Database, Executor, IntoArguments, Pool};
use uuid::Uuid;

use super::error::db_error;
use super::rows::{
    self, AUDIT_COLUMNS, CHECKPOINT_COLUMNS, Columns, OUTBOX_COLUMNS, TRIGGER_COLUMNS,
};
use super::{
    EndpointState, FinalOutcome, OutboxMessage, OutboxStatus, StoreError, TriggerRow, convert,
};
use crate::audit_chain::{AuditRecord, Checkpoint};

/// A statement's parameter, bound as each backend stores its kind of value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(i64),
    Time(Option<DateTime<Utc>>),
    Uuid(Uuid),
}

/// A backend's way of binding an [`Arg`]: the kinds both store alike as they are, the
/// others as that backend keeps them.
pub(crate) trait BindArg: Database {
    fn bind_arg<'q>(
        query: Query<'q, Self, Self::Arguments<'q>>,
        arg: Arg<'q>,
    ) -> Query<'q, Self, Self::Arguments<'q>>;
}

/// A backend's pool of read connections, and the store its errors name. Its methods are
/// the shared reads.
pub(crate) struct Reads<DB: Database> {
    pool: Pool<DB>,
    location: String,
}

impl<DB> Reads<DB>
where
    DB: BindArg,
    DB::Row: Columns,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    pub(crate) fn new(pool: Pool<DB>, location: &str) -> Self {
        Reads {
            pool,
            location: location.to_string(),
        }
    }

    pub(crate) fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Every row `sql` returns with `args` bound to `$1`, `$2`, ... in order.
    pub(crate) async fn rows(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<DB::Row>, StoreError> {
        let mut query = sqlx::query(sql);
        for arg in args {
            query = DB::bind_arg(query, *arg);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error(&self.location, e))
    }

    pub(crate) async fn trigger(&self, id: Uuid) -> Result<Option<TriggerRow>, StoreError> {
        let sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE correlation_id = $1");
        let rows = self.rows(&sql, &[Arg::Uuid(id)]).await?;
        rows.first()
            .map(|r| rows::trigger(r, &self.location))
            .transpose()
    }

    /// See [`super::Store::unfinished_triggers`].
    pub(crate) async fn unfinished_triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
        let rows = self.rows(&unfinished_triggers_sql(), &[]).await?;
        rows::triggers(&rows, &self.location)
    }

    /// The pending messages of `endpoint` due at `now` that head their key, oldest first, at
    /// most `limit`, leasing nothing.
    pub(crate) async fn due_outbox(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o \
             WHERE o.endpoint = $1 AND o.status = 'pending' AND o.next_attempt_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
               AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
             ORDER BY o.id LIMIT $3"
        );
        let args = [
            Arg::Text(Some(endpoint)),
            Arg::Time(Some(now)),
            row_limit(limit),
        ];
        let rows = self.rows(&sql, &args).await?;
        rows.iter()
            .map(|r| rows::outbox(r, &self.location))
            .collect()
    }

    pub(crate) async fn outbox_list(
        &self,
        status: Option<OutboxStatus>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE ($1 IS NULL OR o.status = $1) \
             ORDER BY o.id LIMIT $2"
        );
        let args = [
            Arg::Text(status.map(OutboxStatus::as_str)),
            row_limit(limit),
        ];
        let rows = self.rows(&sql, &args).await?;
        rows.iter()
            .map(|r| rows::outbox(r, &self.location))
            .collect()
    }

    pub(crate) async fn outbox_message(
        &self,
        message_id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.message_id = $1");
        let rows = self.rows(&sql, &[Arg::Text(Some(message_id))]).await?;
        rows.first()
            .map(|r| rows::outbox(r, &self.location))
            .transpose()
    }

    pub(crate) async fn endpoint_state(&self, endpoint: &str) -> Result<EndpointState, StoreError> {
        let sql = "SELECT disabled, reason FROM endpoints WHERE name = $1";
        let rows = self.rows(sql, &[Arg::Text(Some(endpoint))]).await?;
        match rows.first() {
            None => Ok(EndpointState::default()),
            Some(row) => rows::endpoint(row, &self.location),
        }
    }

    pub(crate) async fn audit_records(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2"
        );
        let args = [Arg::Int(convert::i64_of(from_seq)), row_limit(limit)];
        let rows = self.rows(&sql, &args).await?;
        rows.iter()
            .map(|r| rows::audit_record(r, &self.location))
            .collect()
    }

    pub(crate) async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq");
        let rows = self.rows(&sql, &[]).await?;
        rows.iter()
            .map(|r| rows::checkpoint(r, &self.location))
            .collect()
    }

    /// See [`super::Store::audit_final_outcomes`].
    pub(crate) async fn audit_final_outcomes(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<FinalOutcome>, StoreError> {
        let sql = "SELECT action_type, status, latency_ms FROM audit_records \
                   WHERE status IN ('completed', 'failed', 'rejected') \
                   AND ($1 IS NULL OR ended_at >= $1) AND ($2 IS NULL OR ended_at < $2) \
                   ORDER BY seq";
        let rows = self
            .rows(sql, &[Arg::Time(since), Arg::Time(until)])
            .await?;
        rows.iter()
            .map(|r| rows::final_outcome(r, &self.location))
            .collect()
    }
}

/// `n` as a statement's `LIMIT`.
fn row_limit(n: usize) -> Arg<'static> {
    Arg::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Every unfinished trigger, `sent` first, then by acceptance: what a restart (or a
/// cluster's new leader) resumes, in the order it resumes them.
pub(crate) fn unfinished_triggers_sql() -> String {
    format!(
        "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE state IN ('accepted', 'sent') \
         ORDER BY CASE state WHEN 'sent' THEN 0 ELSE 1 END, accepted_at, correlation_id"
    )
}
