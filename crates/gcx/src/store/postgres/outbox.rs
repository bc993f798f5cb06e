//! The outbox on PostgreSQL: the due rows handed out under a lease, and the writes of new
//! rows, attempts, dead letters, replays and endpoint states. Every write that settles a
//! row or puts it back ends its lease.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;

use super::{PgBackend, column};
use crate::audit_chain::hash::truncate_to_micros;
use crate::store::committer::{Dead, Done, EndpointChange, Retry};
use crate::store::plan::DeliveredRow;
use crate::store::rows::{CommonColumns, OUTBOX_COLUMNS, outbox};
use crate::store::{
    NewOutboxMessage, OUTBOX_LEASE, OutboxCounts, OutboxMessage, OutboxStatus, ReplayFilter,
    StoreError, convert,
};

/// One item's own answer (the outer `Result` of a write is the group's).
type Answer = Result<Done, StoreError>;

impl PgBackend {
    /// The due rows (see [`crate::store::Store::due_outbox`]), leased to this instance
    /// unless the store was opened read-only; see the module header of `postgres`.
    pub(crate) async fn due_outbox(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        if self.read_only {
            return self.read.due_outbox(endpoint, now, limit).await;
        }
        let lease = chrono::Duration::from_std(OUTBOX_LEASE).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        // A lost lease after a crash only delays a row until the lease ends.
        sqlx::query("SET LOCAL synchronous_commit TO OFF")
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        // One fetch per endpoint at a time across instances: a fetch walks past the rows
        // the others hold, so concurrent ones cost the database more than they find.
        // Another instance fetching now answers this one with nothing; its worker sleeps
        // until its next wake or poll, and the rows are being delivered meanwhile.
        let first: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind(format!("gcx outbox fetch {endpoint}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db())?;
        if !first {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "WITH due AS (SELECT o.id FROM outbox o \
               WHERE o.endpoint = $1 AND o.status = 'pending' AND o.next_attempt_at <= $2 \
               AND (o.claimed_by IS NULL OR o.claimed_by = $4 OR o.claimed_until <= $2) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                 AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
               ORDER BY o.id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox AS o SET claimed_by = $4, claimed_until = $5 FROM due \
             WHERE o.id = due.id RETURNING {OUTBOX_COLUMNS}"
        ))
        .bind(endpoint)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.claimant.name())
        .bind(now + lease)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        let mut messages = rows
            .iter()
            .map(|r| outbox(r, &self.location))
            .collect::<Result<Vec<_>, _>>()?;
        messages.sort_by_key(|m| m.id);
        Ok(messages)
    }

    /// See [`crate::store::Store::next_outbox_due`].
    pub(crate) async fn next_outbox_due(
        &self,
        endpoint: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Only a key's oldest pending message can become due; a row leased by another
        // instance is due for us only when its lease ends. Rows free for us: walk the
        // `outbox_due` index in time order and stop at the first key head (a MIN with the
        // correlated NOT EXISTS would probe every pending row). Rows leased by others
        // (their instances' batches) are looked at apart, the probe only for them; the
        // earlier time wins (LEAST ignores a NULL).
        sqlx::query_scalar(
            "SELECT LEAST( \
               (SELECT o.next_attempt_at FROM outbox o \
                WHERE o.endpoint = $1 AND o.status = 'pending' \
                AND (o.claimed_by IS NULL OR o.claimed_by = $2) \
                AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                  AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
                ORDER BY o.next_attempt_at LIMIT 1), \
               (SELECT MIN(GREATEST(o.next_attempt_at, o.claimed_until)) FROM outbox o \
                WHERE o.endpoint = $1 AND o.status = 'pending' \
                AND o.claimed_by IS NOT NULL AND o.claimed_by <> $2 \
                AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                  AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id)))",
        )
        .bind(endpoint)
        .bind(self.claimant.name())
        .fetch_one(&self.pool)
        .await
        .map_err(self.db())
    }

    /// See [`crate::store::Store::outbox_counts`].
    pub(crate) async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = self
            .read
            .rows("SELECT status, COUNT(*) FROM outbox GROUP BY status", &[])
            .await?;
        let l = &self.location;
        let mut counts = OutboxCounts::default();
        for row in rows {
            let n = convert::u64_of(l, "count", row.int(1, l)?)?;
            match convert::outbox_status(l, &row.text(0, l)?)? {
                OutboxStatus::Pending => counts.pending = n,
                OutboxStatus::Delivered => counts.delivered = n,
                OutboxStatus::Dead => counts.dead = n,
            }
        }
        Ok(counts)
    }

    /// Inserts outbox rows in order; a row whose key already has a dead letter is dead on
    /// arrival, so it cannot overtake its predecessor.
    pub(super) async fn insert_outbox(
        &self,
        conn: &mut PgConnection,
        messages: &[&NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO outbox (message_id, endpoint, ordering_key, body, created_at, attempts, \
             next_attempt_at, status, last_error) \
             SELECT v.message_id, v.endpoint, v.ordering_key, v.body, $5, 0, $5, \
             CASE WHEN d.dead THEN 'dead' ELSE 'pending' END, \
             CASE WHEN d.dead THEN 'predecessor dead-lettered' END \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
               AS v(message_id, endpoint, ordering_key, body, ord) \
             CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM outbox o \
               WHERE o.endpoint = v.endpoint AND o.ordering_key = v.ordering_key \
               AND o.status = 'dead') AS dead) AS d \
             ORDER BY v.ord",
        )
        .bind(column(messages, |m| m.message_id.as_str()))
        .bind(column(messages, |m| m.endpoint.as_str()))
        .bind(column(messages, |m| m.ordering_key.as_str()))
        .bind(column(messages, |m| m.body.get()))
        .bind(now)
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    pub(super) async fn retry(
        &self,
        conn: &mut PgConnection,
        retry: &Retry,
    ) -> Result<Answer, StoreError> {
        let n = sqlx::query(
            "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
             last_status = $4, claimed_by = NULL, claimed_until = NULL \
             WHERE id = $5 AND status = 'pending'",
        )
        .bind(i64::from(retry.attempts))
        .bind(truncate_to_micros(retry.next_attempt_at))
        .bind(&retry.error)
        .bind(retry.status.map(i32::from))
        .bind(retry.id)
        .execute(&mut *conn)
        .await
        .map_err(self.db())?
        .rows_affected();
        self.updated_or_missing(conn, retry.id, n).await
    }

    /// Dead-letters the message and the later pending messages of its key.
    pub(super) async fn dead(
        &self,
        conn: &mut PgConnection,
        dead: &Dead,
    ) -> Result<Answer, StoreError> {
        let key = sqlx::query(
            "UPDATE outbox SET status = 'dead', attempts = $1, last_error = $2, \
             last_status = $3, claimed_by = NULL, claimed_until = NULL \
             WHERE id = $4 AND status = 'pending' RETURNING endpoint, ordering_key",
        )
        .bind(i64::from(dead.attempts))
        .bind(&dead.reason)
        .bind(dead.status.map(i32::from))
        .bind(dead.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(self.db())?;
        let Some(row) = key else {
            return self.updated_or_missing(conn, dead.id, 0).await;
        };
        sqlx::query(
            "UPDATE outbox SET status = 'dead', last_error = 'predecessor dead-lettered', \
             claimed_by = NULL, claimed_until = NULL \
             WHERE endpoint = $1 AND ordering_key = $2 AND status = 'pending' AND id > $3",
        )
        .bind(row.text(0, &self.location)?)
        .bind(row.text(1, &self.location)?)
        .bind(dead.id)
        .execute(&mut *conn)
        .await
        .map_err(self.db())?;
        Ok(Ok(Done::Unit))
    }

    /// Puts the matching dead letters, and every dead letter of their keys, back to
    /// pending.
    pub(super) async fn replay(
        &self,
        conn: &mut PgConnection,
        filter: &ReplayFilter,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        let n = sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             claimed_by = NULL, claimed_until = NULL \
             WHERE status = 'dead' AND (endpoint, ordering_key) IN ( \
               SELECT endpoint, ordering_key FROM outbox WHERE status = 'dead' \
               AND ($2::bigint IS NULL OR id = $2) \
               AND ($3::timestamptz IS NULL OR created_at >= $3))",
        )
        .bind(now)
        .bind(filter.id)
        .bind(filter.since)
        .execute(conn)
        .await
        .map_err(self.db())?
        .rows_affected();
        Ok(Ok(Done::Count(n)))
    }

    pub(super) async fn set_endpoint(
        &self,
        conn: &mut PgConnection,
        change: &EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        sqlx::query(
            "INSERT INTO endpoints (name, disabled, reason, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
             disabled = EXCLUDED.disabled, reason = EXCLUDED.reason, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(&change.name)
        .bind(change.disabled)
        .bind(&change.reason)
        .bind(now)
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(Ok(Done::Unit))
    }

    /// Marks a run of pending rows delivered in one statement; answers each row (by its
    /// item index): a row no longer pending is left alone, a missing one is an error.
    pub(super) async fn mark_delivered(
        &self,
        conn: &mut PgConnection,
        rows: &[DeliveredRow],
    ) -> Result<Vec<(usize, Answer)>, StoreError> {
        let updated: HashSet<i64> = sqlx::query_scalar(
            "UPDATE outbox o SET status = 'delivered', attempts = v.attempts, \
             last_status = v.status, claimed_by = NULL, claimed_until = NULL \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::int[]) AS v(id, attempts, status) \
             WHERE o.id = v.id AND o.status = 'pending' RETURNING o.id",
        )
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| i64::from(r.attempts)))
        .bind(column(rows, |r| i32::from(r.status)))
        .fetch_all(&mut *conn)
        .await
        .map_err(self.db())?
        .into_iter()
        .collect();
        let mut answers = Vec::with_capacity(rows.len());
        for row in rows {
            let n = u64::from(updated.contains(&row.id));
            answers.push((row.index, self.updated_or_missing(conn, row.id, n).await?));
        }
        Ok(answers)
    }

    async fn updated_or_missing(
        &self,
        conn: &mut PgConnection,
        id: i64,
        rows_affected: u64,
    ) -> Result<Answer, StoreError> {
        if rows_affected > 0 {
            return Ok(Ok(Done::Unit));
        }
        let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(self.db())?
            .is_some();
        if exists {
            // Not pending any more (delivered or dead meanwhile): nothing to change.
            Ok(Ok(Done::Unit))
        } else {
            Ok(Err(StoreError::UnknownOutboxMessage(id)))
        }
    }
}
