//! The SQLite committer's own connection and every statement that writes the file.
//!
//! It is a plain `rusqlite` connection, driven synchronously on the committer's thread
//! (see `committer::spawn`), not an sqlx one: sqlx runs each SQLite statement on a
//! worker thread of its own and hands rows back through channels, and a group of a few
//! hundred triggers paid those hops, a multi-row `VALUES` statement rebuilt and parsed per
//! chunk, and a statement journal for every such statement, on the one path that every
//! write takes. Here each row is one step of a cached prepared statement.
//!
//! One `BEGIN IMMEDIATE` transaction per group. Dropping the writer closes the file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::known_states::KnownStates;
use super::prune;
use super::wal::{self, Checkpointer};
use super::{AUDIT_COLUMNS, TRIGGER_COLUMNS};
use crate::audit_chain::Checkpoint;
use crate::audit_chain::hash::{self, ChainHead, Link};
use crate::store::committer::{Done, GroupContext, Work};
use crate::store::convert::{self, micros};
use crate::store::error::sqlite_error;
use crate::store::plan::{self, Change, DeliveredRow, NewTrigger, UpdateStep, now_micros};
use crate::store::{NewOutboxMessage, StoreError, TriggerState};

/// One item's own answer.
type Answer = Result<Done, StoreError>;

/// A written group: each item's answer, and where it leaves the triggers it touched.
type GroupWritten = (Vec<Answer>, Vec<(Uuid, TriggerState)>);

/// The write connection's page cache, in KiB (SQLite's default is 2 MiB). A group
/// touches pages all over the trigger and outbox indexes; with the default the
/// transaction spilled dirty pages to the WAL before its commit and read them back.
const CACHE_KIB: i64 = 32 * 1024;

/// Prepared statements kept per connection (every statement below, with room).
const STATEMENT_CACHE: usize = 64;

pub(crate) struct Writer {
    conn: Connection,
    /// Unfinished triggers' states as this writer left them.
    known: KnownStates,
    /// Checkpoints the WAL beside the writer (closed with it).
    checkpointer: Checkpointer,
    location: String,
    /// Where and how to connect again when a transaction cannot be ended.
    path: PathBuf,
    busy_timeout: Duration,
    /// One-row INSERTs over the column lists that the readers in `sqlite` select.
    insert_trigger: String,
    insert_audit: String,
}

impl Writer {
    /// Opens the (already migrated) database file for writing and proves that it can be
    /// written: SQLite silently opens a file it cannot write read-only, and a write that
    /// is rolled back finds out now rather than at the first commit.
    pub(crate) fn open(
        path: &Path,
        location: &str,
        busy_timeout: Duration,
    ) -> Result<Writer, StoreError> {
        let conn = connect(path, busy_timeout).map_err(|e| sqlite_error(location, e))?;
        conn.execute_batch(
            "BEGIN IMMEDIATE; UPDATE gcx_meta SET value = value WHERE key = 'application';",
        )
        .and_then(|()| conn.execute_batch("ROLLBACK"))
        .map_err(|e| sqlite_error(location, e))?;
        let checkpointer = Checkpointer::start(path).map_err(|e| StoreError::Database {
            location: location.to_string(),
            detail: format!("cannot start the WAL checkpointer: {e}"),
        })?;
        Ok(Writer {
            conn,
            known: KnownStates::default(),
            checkpointer,
            location: location.to_string(),
            path: path.to_path_buf(),
            busy_timeout,
            insert_trigger: insert_row("triggers", TRIGGER_COLUMNS),
            insert_audit: insert_row("audit_records", AUDIT_COLUMNS),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| sqlite_error(&self.location, e)
    }

    /// Writes one group in one `BEGIN IMMEDIATE` transaction. `Err` means nothing was
    /// written; `Ok` holds each item's own answer.
    pub(crate) fn write_group(
        &mut self,
        items: &[&Work],
        context: &GroupContext,
    ) -> Result<Vec<Answer>, StoreError> {
        // Begun and ended by hand: after SQLITE_FULL or an I/O error SQLite may already
        // have rolled back by itself, which `is_autocommit` tells.
        self.end_stray_transaction();
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err())?;
        let outcome = match self.write_in_transaction(items, context) {
            Ok((results, changes)) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => {
                    self.known.committed(changes);
                    self.checkpointer.committed();
                    return Ok(results);
                }
                Err(e) => sqlite_error(&self.location, e),
            },
            Err(e) => e,
        };
        self.known.forget();
        self.end_stray_transaction();
        Err(outcome)
    }

    /// Rolls back a transaction left open, or, when even that fails, replaces the
    /// connection (closing it rolls the transaction back): every later BEGIN would fail
    /// on it. If no new connection can be made yet, the next group tries again.
    fn end_stray_transaction(&mut self) {
        if self.conn.is_autocommit() {
            return;
        }
        if let Err(e) = self.conn.execute_batch("ROLLBACK")
            && !self.conn.is_autocommit()
        {
            tracing::warn!(error = %sqlite_error(&self.location, e), "rollback failed; replacing the write connection");
            match connect(&self.path, self.busy_timeout) {
                Ok(conn) => self.conn = conn,
                Err(e) => {
                    tracing::warn!(error = %sqlite_error(&self.location, e), "cannot reconnect yet");
                }
            }
        }
    }

    /// Writes the group; returns each item's answer and the triggers' states after it.
    fn write_in_transaction(
        &mut self,
        items: &[&Work],
        context: &GroupContext,
    ) -> Result<GroupWritten, StoreError> {
        let ids = plan::trigger_ids(items);
        let mut stored = Vec::new();
        if !ids.is_empty() {
            let version: i64 = self
                .conn
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(self.err())?;
            self.known.begin(version);
            let (known, unknown) = self.known.split(&ids);
            stored = known;
            stored.extend(self.load_states(&unknown)?);
        }
        let mut plan = plan::plan(items, stored);
        let changes: Vec<(Uuid, TriggerState)> = plan
            .new_triggers
            .iter()
            .map(|t| (t.correlation_id, t.now.state))
            .chain(plan.changed_triggers.iter().map(|(id, c)| (*id, c.state)))
            .collect();
        let now = now_micros();
        self.insert_triggers(&plan.new_triggers)?;
        self.update_triggers(&plan.changed_triggers)?;
        self.insert_outbox(&plan.outbox, now)?;
        self.append_audit(std::mem::take(&mut plan.audit), context, now)?;
        for step in plan::update_steps(items, &plan.updates) {
            match step {
                UpdateStep::One(index) => {
                    plan.results[index] = Some(self.apply_update(items[index], context, now)?);
                }
                UpdateStep::Delivered(rows) => {
                    for (index, result) in self.mark_delivered(&rows)? {
                        plan.results[index] = Some(result);
                    }
                }
            }
        }
        let results = plan
            .results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
            .collect();
        Ok((results, changes))
    }

    /// The stored state of each of `ids` that exists (all the plan needs of them).
    fn load_states(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, TriggerState)>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(found);
        }
        let mut select = self
            .conn
            .prepare_cached("SELECT state FROM triggers WHERE correlation_id = ?1")
            .map_err(self.err())?;
        for id in ids {
            let state: Option<String> = select
                .query_row([id.to_string()], |r| r.get(0))
                .optional()
                .map_err(self.err())?;
            if let Some(state) = state {
                found.push((*id, convert::state(&self.location, &state)?));
            }
        }
        Ok(found)
    }

    fn insert_triggers(&self, rows: &[NewTrigger<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .conn
            .prepare_cached(&self.insert_trigger)
            .map_err(self.err())?;
        for t in rows {
            insert
                .execute(params![
                    t.correlation_id.to_string(),
                    t.action_type,
                    t.payload.get(),
                    t.now.state.as_str(),
                    i64::from(t.now.attempts),
                    micros(t.accepted_at),
                    micros(t.now.updated_at),
                    t.now.output.map(RawValue::get),
                    t.now.error.map(RawValue::get),
                ])
                .map_err(self.err())?;
        }
        Ok(())
    }

    fn update_triggers(&self, rows: &[(Uuid, Change<'_>)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut update = self
            .conn
            .prepare_cached(
                "UPDATE triggers SET state = ?2, attempts = ?3, updated_at = ?4, output = ?5, \
                 error = ?6 WHERE correlation_id = ?1",
            )
            .map_err(self.err())?;
        for (id, t) in rows {
            update
                .execute(params![
                    id.to_string(),
                    t.state.as_str(),
                    i64::from(t.attempts),
                    micros(t.updated_at),
                    t.output.map(RawValue::get),
                    t.error.map(RawValue::get),
                ])
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// Inserts outbox rows in order; a row whose key already has a dead letter is dead on
    /// arrival, so it cannot overtake its predecessor. When the outbox holds no dead letter
    /// at all (the usual case; one probe of the status index, inside the write
    /// transaction, so nothing can turn dead meanwhile) the per-row check is left out.
    fn insert_outbox(
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

    /// Appends `events` after the current chain head and writes the checkpoints that fall
    /// due, all inside the open transaction (chain order = commit order).
    fn append_audit(
        &self,
        events: Vec<&crate::audit_chain::AuditEvent>,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut head = self.chain_head()?;
        let records = hash::link(&mut head, now, events, context.store_parameters);
        let mut insert = self
            .conn
            .prepare_cached(&self.insert_audit)
            .map_err(self.err())?;
        for r in &records {
            insert_link(&mut insert, r).map_err(self.err())?;
        }
        drop(insert);
        if context.checkpoint_every > 0 {
            for r in records
                .iter()
                .filter(|r| r.seq % context.checkpoint_every == 0)
            {
                self.insert_checkpoint(&Checkpoint::sign(&context.keys, r.seq, &r.hash, now))?;
            }
        }
        Ok(())
    }

    fn chain_head(&self) -> Result<ChainHead, StoreError> {
        let head: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(self.err())?;
        match head {
            None => Ok(ChainHead::genesis()),
            Some((seq, hash)) => Ok(ChainHead {
                seq: convert::u64_of(&self.location, "audit_records.seq", seq)?,
                hash,
            }),
        }
    }

    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_checkpoints (seq, hash, signature, key_id, signed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    convert::i64_of(cp.seq),
                    cp.hash,
                    cp.signature,
                    cp.key_id,
                    micros(cp.signed_at),
                ])
            })
            .map_err(self.err())?;
        Ok(())
    }

    /// Applies one outbox/endpoint/checkpoint write. The outer `Err` is a database failure
    /// (the group fails); the inner one is this item's own answer.
    fn apply_update(
        &self,
        work: &Work,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        let conn = &self.conn;
        match work {
            Work::Retry {
                id,
                attempts,
                next_attempt_at,
                error,
                status,
            } => {
                let n = conn
                    .prepare_cached(
                        "UPDATE outbox SET attempts = ?1, next_attempt_at = ?2, \
                         last_error = ?3, last_status = ?4 WHERE id = ?5 AND status = 'pending'",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            i64::from(*attempts),
                            micros(*next_attempt_at),
                            error,
                            status.map(i64::from),
                            id,
                        ])
                    })
                    .map_err(self.err())?;
                self.updated_or_missing(*id, n > 0)
            }
            Work::Dead {
                id,
                attempts,
                reason,
                status,
            } => {
                let key: Option<(String, String)> = conn
                    .prepare_cached(
                        "UPDATE outbox SET status = 'dead', attempts = ?1, last_error = ?2, \
                         last_status = ?3 WHERE id = ?4 AND status = 'pending' \
                         RETURNING endpoint, ordering_key",
                    )
                    .and_then(|mut s| {
                        s.query_row(
                            params![i64::from(*attempts), reason, status.map(i64::from), id],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                    })
                    .map_err(self.err())?;
                let Some((endpoint, ordering_key)) = key else {
                    return self.updated_or_missing(*id, false);
                };
                conn.prepare_cached(
                    "UPDATE outbox SET status = 'dead', last_error = 'predecessor dead-lettered' \
                     WHERE endpoint = ?1 AND ordering_key = ?2 AND status = 'pending' AND id > ?3",
                )
                .and_then(|mut s| s.execute(params![endpoint, ordering_key, id]))
                .map_err(self.err())?;
                Ok(Ok(Done::Unit))
            }
            Work::Replay(filter) => {
                let n = conn
                    .prepare_cached(
                        "UPDATE outbox SET status = 'pending', attempts = 0, \
                         next_attempt_at = ?1 \
                         WHERE status = 'dead' AND (endpoint, ordering_key) IN ( \
                           SELECT endpoint, ordering_key FROM outbox WHERE status = 'dead' \
                           AND (?2 IS NULL OR id = ?2) AND (?3 IS NULL OR created_at >= ?3))",
                    )
                    .and_then(|mut s| {
                        s.execute(params![micros(now), filter.id, filter.since.map(micros)])
                    })
                    .map_err(self.err())?;
                Ok(Ok(Done::Count(n as u64)))
            }
            Work::Endpoint {
                name,
                disabled,
                reason,
            } => {
                conn.prepare_cached(
                    "INSERT INTO endpoints (name, disabled, reason, updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET \
                     disabled = excluded.disabled, reason = excluded.reason, \
                     updated_at = excluded.updated_at",
                )
                .and_then(|mut s| s.execute(params![name, disabled, reason, micros(now)]))
                .map_err(self.err())?;
                Ok(Ok(Done::Unit))
            }
            Work::Prune {
                before,
                limit,
                after,
            } => {
                let (pruned, next) =
                    prune::chunk(conn, micros(*before), *limit, *after).map_err(self.err())?;
                Ok(Ok(Done::Pruned(pruned, next)))
            }
            Work::Checkpoint => {
                let head: Option<(i64, String, Option<i64>)> = conn
                    .prepare_cached(
                        "SELECT r.seq, r.hash, (SELECT MAX(seq) FROM audit_checkpoints) \
                         FROM audit_records r ORDER BY r.seq DESC LIMIT 1",
                    )
                    .and_then(|mut s| {
                        s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()
                    })
                    .map_err(self.err())?;
                if let Some((seq, hash, signed)) = head
                    && signed.is_none_or(|s| s < seq)
                {
                    let seq = convert::u64_of(&self.location, "audit_records.seq", seq)?;
                    self.insert_checkpoint(&Checkpoint::sign(&context.keys, seq, &hash, now))?;
                }
                Ok(Ok(Done::Unit))
            }
            // Never here: the plan answers batches, and `plan::update_steps` hands every
            // delivered outcome to `mark_delivered`.
            Work::Batch(_) | Work::Delivered { .. } => Ok(Ok(Done::Unit)),
        }
    }

    /// Marks a run of pending rows delivered; answers each row (by its item index): a row
    /// no longer pending is left alone, a missing one is an error.
    fn mark_delivered(&self, rows: &[DeliveredRow]) -> Result<Vec<(usize, Answer)>, StoreError> {
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

/// `INSERT INTO table (columns) VALUES (?1, ..., ?n)`, one placeholder per column.
fn insert_row(table: &str, columns: &str) -> String {
    let n = columns.split(',').count();
    let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        placeholders.join(", ")
    )
}

/// A write connection to `path`, set up as the writer needs it.
fn connect(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // `journal_mode` answers with a row; the others answer nothing.
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -{CACHE_KIB}; PRAGMA wal_autocheckpoint = {};",
        wal::BACKSTOP_PAGES
    ))?;
    Ok(conn)
}

fn insert_link(insert: &mut rusqlite::CachedStatement<'_>, r: &Link<'_>) -> rusqlite::Result<()> {
    let e = &r.event;
    insert.execute(params![
        convert::i64_of(r.seq),
        micros(r.recorded_at),
        e.correlation_id,
        e.action_type,
        e.status,
        micros(r.started_at()),
        micros(r.ended_at()),
        e.latency_ms,
        e.queue_wait_ms,
        e.send_to_ack_ms,
        e.send_to_result_ms,
        e.agent_id,
        e.session_id,
        e.interaction_type,
        e.catalogue_version,
        e.parameters_sha256,
        r.parameters().map(convert::to_text),
        e.outcome,
        e.error,
        i64::from(e.retries),
        e.instance,
        r.prev_hash,
        r.hash,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_chain::AuditKeys;
    use crate::store::migrations::Scripts;

    #[test]
    fn insert_row_has_one_placeholder_per_column() {
        assert_eq!(
            insert_row("t", "a, b,\n c"),
            "INSERT INTO t (a, b,\n c) VALUES (?1, ?2, ?3)"
        );
        assert_eq!(
            insert_row("audit_records", AUDIT_COLUMNS)
                .matches('?')
                .count(),
            23
        );
    }

    #[test]
    fn a_transaction_left_open_is_ended_before_the_next_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gcx.db");
        let setup = Connection::open(&path).unwrap();
        for (_, _, sql) in Scripts::Sqlite.list() {
            setup.execute_batch(sql).unwrap();
        }
        drop(setup);
        let mut writer = Writer::open(&path, "gcx.db", Duration::from_secs(1)).unwrap();
        let context = GroupContext {
            keys: AuditKeys::load_or_generate(dir.path()).unwrap(),
            checkpoint_every: 0,
            store_parameters: false,
        };
        let endpoint = |name: &str| Work::Endpoint {
            name: name.into(),
            disabled: true,
            reason: None,
        };
        // As SQLITE_FULL or an I/O error can leave it: inside a transaction, with a
        // change the group never meant to make.
        writer
            .conn
            .execute_batch("BEGIN; DELETE FROM gcx_meta;")
            .unwrap();
        let answers = writer.write_group(&[&endpoint("crm")], &context).unwrap();
        assert!(answers[0].is_ok());
        let check = Connection::open(&path).unwrap();
        let count = |sql: &str| check.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(
            count("SELECT COUNT(*) FROM endpoints"),
            1,
            "the group committed"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM gcx_meta"),
            2,
            "the stray change did not"
        );
    }
}
