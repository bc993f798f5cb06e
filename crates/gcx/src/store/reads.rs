//! The reads both backends answer with the same SQL, written once.
//!
//! Both sqlx drivers take `$N` placeholders (SQLite reads `$1` as a parameter named by
//! its number), so a statement here runs on either as written; a backend only says how
//! it binds an [`Arg`] and runs a statement on its read pool ([`ReadPool`]). Reads whose
//! SQL differs (the outbox's due rows and counts; PostgreSQL leases what it hands out)
//! are the backends' own.

use std::future::Future;

use chrono::{DateTime, Utc};
use uuid::Uuid;

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

/// How a backend binds an [`Arg`]: the kinds both store alike as they are, the others
/// as that backend keeps them.
pub(crate) type Bind<'q, DB> =
    fn(
        sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
        Arg<'q>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Every row `sql` returns on `pool` with `args` bound by `bind`: what
/// [`ReadPool::rows`] runs on either backend.
pub(crate) async fn fetch<'q, DB>(
    pool: &sqlx::Pool<DB>,
    location: &str,
    sql: &'q str,
    args: &'q [Arg<'q>],
    bind: Bind<'q, DB>,
) -> Result<Vec<DB::Row>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut query = sqlx::query(sql);
    for arg in args {
        query = bind(query, *arg);
    }
    query
        .fetch_all(pool)
        .await
        .map_err(|e| super::error::db_error(location, e))
}

/// A backend's pool of read connections.
pub(crate) trait ReadPool: Sync {
    type Row: Columns + Send;

    /// The store as messages name it.
    fn location(&self) -> &str;

    /// Every row `sql` returns with `args` bound to `$1`, `$2`, ... in order.
    fn rows<'a>(
        &'a self,
        sql: &'a str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, StoreError>> + Send + 'a;
}

/// `n` as a statement's `LIMIT`.
fn limit(n: usize) -> Arg<'static> {
    Arg::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(crate) async fn trigger(
    db: &impl ReadPool,
    id: Uuid,
) -> Result<Option<TriggerRow>, StoreError> {
    let sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE correlation_id = $1");
    let rows = db.rows(&sql, &[Arg::Uuid(id)]).await?;
    rows.first()
        .map(|r| rows::trigger(r, db.location()))
        .transpose()
}

/// See [`super::Store::unfinished_triggers`].
pub(crate) async fn unfinished_triggers(db: &impl ReadPool) -> Result<Vec<TriggerRow>, StoreError> {
    let sql = format!(
        "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE state IN ('accepted', 'sent') \
         ORDER BY CASE state WHEN 'sent' THEN 0 ELSE 1 END, accepted_at, correlation_id"
    );
    let rows = db.rows(&sql, &[]).await?;
    rows.iter()
        .map(|r| rows::trigger(r, db.location()))
        .collect()
}

/// The pending messages of `endpoint` due at `now` that head their key, oldest first, at
/// most `limit`, leasing nothing.
pub(crate) async fn due_outbox(
    db: &impl ReadPool,
    endpoint: &str,
    now: DateTime<Utc>,
    n: usize,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o \
         WHERE o.endpoint = $1 AND o.status = 'pending' AND o.next_attempt_at <= $2 \
         AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
           AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
         ORDER BY o.id LIMIT $3"
    );
    let args = [Arg::Text(Some(endpoint)), Arg::Time(Some(now)), limit(n)];
    let rows = db.rows(&sql, &args).await?;
    rows.iter()
        .map(|r| rows::outbox(r, db.location()))
        .collect()
}

pub(crate) async fn outbox_list(
    db: &impl ReadPool,
    status: Option<OutboxStatus>,
    n: usize,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE ($1 IS NULL OR o.status = $1) \
         ORDER BY o.id LIMIT $2"
    );
    let args = [Arg::Text(status.map(OutboxStatus::as_str)), limit(n)];
    let rows = db.rows(&sql, &args).await?;
    rows.iter()
        .map(|r| rows::outbox(r, db.location()))
        .collect()
}

pub(crate) async fn outbox_message(
    db: &impl ReadPool,
    message_id: &str,
) -> Result<Option<OutboxMessage>, StoreError> {
    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.message_id = $1");
    let rows = db.rows(&sql, &[Arg::Text(Some(message_id))]).await?;
    rows.first()
        .map(|r| rows::outbox(r, db.location()))
        .transpose()
}

pub(crate) async fn endpoint_state(
    db: &impl ReadPool,
    endpoint: &str,
) -> Result<EndpointState, StoreError> {
    let sql = "SELECT disabled, reason FROM endpoints WHERE name = $1";
    let rows = db.rows(sql, &[Arg::Text(Some(endpoint))]).await?;
    match rows.first() {
        None => Ok(EndpointState::default()),
        Some(row) => rows::endpoint(row, db.location()),
    }
}

pub(crate) async fn audit_records(
    db: &impl ReadPool,
    from_seq: u64,
    n: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let sql =
        format!("SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2");
    let args = [Arg::Int(convert::i64_of(from_seq)), limit(n)];
    let rows = db.rows(&sql, &args).await?;
    rows.iter()
        .map(|r| rows::audit_record(r, db.location()))
        .collect()
}

pub(crate) async fn audit_checkpoints(db: &impl ReadPool) -> Result<Vec<Checkpoint>, StoreError> {
    let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq");
    let rows = db.rows(&sql, &[]).await?;
    rows.iter()
        .map(|r| rows::checkpoint(r, db.location()))
        .collect()
}

/// See [`super::Store::audit_final_outcomes`].
pub(crate) async fn audit_final_outcomes(
    db: &impl ReadPool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<FinalOutcome>, StoreError> {
    let sql = "SELECT action_type, status, latency_ms FROM audit_records \
               WHERE status IN ('completed', 'failed', 'rejected') \
               AND ($1 IS NULL OR ended_at >= $1) AND ($2 IS NULL OR ended_at < $2) \
               ORDER BY seq";
    let rows = db.rows(sql, &[Arg::Time(since), Arg::Time(until)]).await?;
    rows.iter()
        .map(|r| rows::final_outcome(r, db.location()))
        .collect()
}
