//! The outbox on SQLite: the reads the delivery worker makes of the due rows, and the
//! committer's writes of new rows, attempts, dead letters, replays and endpoint states.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteBackend;
use super::writer::{Answer, Writer};
use crate::store::committer::{Dead, Done, EndpointChange, Retry};
use crate::store::convert::{self, micros};
use crate::store::plan::DeliveredRow;
use crate::store::reads::Arg;
use crate::store::rows::{Columns, CommonColumns};
use crate::store::{NewOutboxMessage, OutboxCounts, ReplayFilter, StoreError};

impl SqliteBackend {
    /// See [`crate::store::Store::next_outbox_due`].
    pub(crate) async fn next_outbox_due(
        &self,
        endpoint: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Only a key's oldest pending message can become due: later ones wait for it.
        // Walking the `outbox_due` index in time order and stopping at the first key head
        // finds the same time as MIN() over the heads without probing every pending row:
        // MIN with the correlated NOT EXISTS cannot stop early, so it would probe each
        // pending row of a backlog on every call.
        let sql = "SELECT o.next_attempt_at FROM outbox o \
                   WHERE o.endpoint = $1 AND o.status = 'pending' \
                   AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                     AND p.ordering_key = o.ordering_key AND p.status = 'pending' \
                     AND p.id < o.id) \
                   ORDER BY o.next_attempt_at LIMIT 1";
        let rows = self.read.rows(sql, &[Arg::Text(Some(endpoint))]).await?;
        rows.first()
            .map(|r| r.time(0, &self.location, "outbox.next_attempt_at"))
            .transpose()
    }

    /// See [`crate::store::Store::outbox_counts`].
    pub(crate) async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        // Pending and dead rows are counted in their partial indexes; delivered ones are
        // the rest (no index holds them alone).
        let sql = "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'pending'), \
                          (SELECT COUNT(*) FROM outbox WHERE status = 'dead'), \
                          (SELECT COUNT(*) FROM outbox)";
        let rows = self.read.rows(sql, &[]).await?;
        let Some(row) = rows.first() else {
            return Ok(OutboxCounts::default());
        };
        let count =
            |i: usize| convert::u64_of(&self.location, "count", row.int(i, &self.location)?);
        let (pending, dead, all) = (count(0)?, count(1)?, count(2)?);
        Ok(OutboxCounts {
            pending,
            delivered: all.saturating_sub(pending + dead),
            dead,
        })
    }
}

impl Writer {
    /// Inserts outbox rows in order; a row whose key already has a dead letter is dead on
    /// arrival, so it cannot overtake its predecessor. When the outbox holds no dead letter
    /// at all (the usual case; one probe of the status index, inside the write
    /// transaction, so nothing can turn dead meanwhile) the per-row check is left out.
    pub(super) fn insert_outbox(
        &self,
        messages: &[&NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let any_dead: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'dead')")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(self.err())?;
        let mut dead_for_key = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE endpoint = ?1 \
                 AND ordering_key = ?2 AND status = 'dead')",
            )
            .map_err(self.err())?;
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO outbox (message_id, endpoint, ordering_key, body, created_at, \
                 attempts, next_attempt_at, status, last_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?5, ?6, ?7)",
            )
            .map_err(self.err())?;
        let created_at = micros(now);
        for m in messages {
            let dead = any_dead
                && dead_for_key
                    .query_row(params![m.endpoint, m.ordering_key], |r| r.get::<_, bool>(0))
                    .map_err(self.err())?;
            let (status, last_error) = if dead {
                ("dead", Some("predecessor dead-lettered"))
            } else {
                ("pending", None)
            };
            insert
                .execute(params![
                    m.message_id,
                    m.endpoint,
                    m.ordering_key,
                    m.body.get(),
                    created_at,
                    status,
                    last_error,
                ])
                .map_err(self.err())?;
        }
        Ok(())
    }

    pub(super) fn retry(&self, retry: &Retry) -> Result<Answer, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET attempts = ?1, next_attempt_at = ?2, \
                 last_error = ?3, last_status = ?4 WHERE id = ?5 AND status = 'pending'",
            )
            .and_then(|mut s| {
                s.execute(params![
                    i64::from(retry.attempts),
                    micros(retry.next_attempt_at),
                    retry.error,
                    retry.status.map(i64::from),
                    retry.id,
                ])
            })
            .map_err(self.err())?;
        self.updated_or_missing(retry.id, n > 0)
    }

    /// Dead-letters the message and the later pending messages of its key.
    pub(super) fn dead(&self, dead: &Dead) -> Result<Answer, StoreError> {
        let key: Option<(String, String)> = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET status = 'dead', attempts = ?1, last_error = ?2, \
                 last_status = ?3 WHERE id = ?4 AND status = 'pending' \
                 RETURNING endpoint, ordering_key",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        i64::from(dead.attempts),
                        dead.reason,
                        dead.status.map(i64::from),
                        dead.id
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .map_err(self.err())?;
        let Some((endpoint, ordering_key)) = key else {
            return self.updated_or_missing(dead.id, false);
        };
        self.conn
            .prepare_cached(
                "UPDATE outbox SET status = 'dead', last_error = 'predecessor dead-lettered' \
                 WHERE endpoint = ?1 AND ordering_key = ?2 AND status = 'pending' AND id > ?3",
            )
            .and_then(|mut s| s.execute(params![endpoint, ordering_key, dead.id]))
            .map_err(self.err())?;
        Ok(Ok(Done::Unit))
    }

    /// Puts the matching dead letters, and every dead letter of their keys, back to
    /// pending.
    pub(super) fn replay(
        &self,
        filter: &ReplayFilter,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?1 \
                 WHERE status = 'dead' AND (endpoint, ordering_key) IN ( \
                   SELECT endpoint, ordering_key FROM outbox WHERE status = 'dead' \
                   AND (?2 IS NULL OR id = ?2) AND (?3 IS NULL OR created_at >= ?3))",
            )
            .and_then(|mut s| s.execute(params![micros(now), filter.id, filter.since.map(micros)]))
            .map_err(self.err())?;
        Ok(Ok(Done::Count(n as u64)))
    }

    pub(super) fn set_endpoint(
        &self,
        change: &EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO endpoints (name, disabled, reason, updated_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET \
                 disabled = excluded.disabled, reason = excluded.reason, \
                 updated_at = excluded.updated_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    change.name,
                    change.disabled,
                    change.reason,
                    micros(now)
                ])
            })
            .map_err(self.err())?;
        Ok(Ok(Done::Unit))
    }

    /// Marks a run of pending rows delivered; answers each row (by its item index): a row
    /// no longer pending is left alone, a missing one is an error.
    pub(super) fn mark_delivered(
        &self,
        rows: &[DeliveredRow],
    ) -> Result<Vec<(usize, Answer)>, StoreError> {
        let mut updated = HashSet::with_capacity(rows.len());
        {
            let mut update = self
                .conn
                .prepare_cached(
                    "UPDATE outbox SET status = 'delivered', attempts = ?2, last_status = ?3 \
                     WHERE id = ?1 AND status = 'pending'",
                )
                .map_err(self.err())?;
            for r in rows {
                let n = update
                    .execute(params![r.id, i64::from(r.attempts), i64::from(r.status)])
                    .map_err(self.err())?;
                if n > 0 {
                    updated.insert(r.id);
                }
            }
        }
        let mut answers = Vec::with_capacity(rows.len());
        for row in rows {
            answers.push((
                row.index,
                self.updated_or_missing(row.id, updated.contains(&row.id))?,
            ));
        }
        Ok(answers)
    }

    fn updated_or_missing(&self, id: i64, updated: bool) -> Result<Answer, StoreError> {
        if updated {
            return Ok(Ok(Done::Unit));
        }
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM outbox WHERE id = ?1")
            .and_then(|mut s| s.exists([id]))
            .map_err(self.err())?;
        if exists {
            // Not pending any more (delivered or dead meanwhile): nothing to change.
            Ok(Ok(Done::Unit))
        } else {
            Ok(Err(StoreError::UnknownOutboxMessage(id)))
        }
    }
}
