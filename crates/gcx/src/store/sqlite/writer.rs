//! The SQLite committer's own connection and the transaction of each group; the
//! statements it runs are in `triggers`, `outbox`, `audit` and `prune`.
//!
//! It is a plain `rusqlite` connection, driven synchronously on the committer's thread
//! (see `committer::spawn`), not an sqlx one: sqlx runs each SQLite statement on a worker
//! thread of its own and hands rows back through channels, a hop per statement on the one
//! path that every write takes. Here each row is one step of a cached prepared statement,
//! with no multi-row statement to build and parse and no statement journal for it.
//!
//! One `BEGIN IMMEDIATE` transaction per group. Dropping the writer closes the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use super::known_states::KnownStates;
use super::prune;
use super::wal::{self, Checkpointer};
use crate::store::committer::{Done, GroupContext, Work};
use crate::store::convert::micros;
use crate::store::error::sqlite_error;
use crate::store::plan::{self, UpdateStep, now_micros};
use crate::store::rows::{AUDIT_COLUMNS, TRIGGER_COLUMNS};
use crate::store::{StoreError, TriggerState};

/// One item's own answer.
pub(super) type Answer = Result<Done, StoreError>;

/// A written group: each item's answer, and where it leaves the triggers it touched.
type GroupWritten = (Vec<Answer>, Vec<(Uuid, TriggerState)>);

/// The write connection's page cache, in KiB (SQLite's default is 2 MiB). A group
/// touches pages all over the trigger and outbox indexes; with the default a transaction
/// spills dirty pages to the WAL before its commit and reads them back.
const CACHE_KIB: i64 = 32 * 1024;

/// Prepared statements kept per connection (every statement below, with room).
const STATEMENT_CACHE: usize = 64;

pub(crate) struct Writer {
    pub(super) conn: Connection,
    /// Unfinished triggers' states as this writer left them.
    known: KnownStates,
    /// Checkpoints the WAL beside the writer (closed with it).
    checkpointer: Checkpointer,
    pub(super) location: String,
    /// Where and how to connect again when a transaction cannot be ended.
    path: PathBuf,
    busy_timeout: Duration,
    /// One-row INSERTs over the column lists that the readers select.
    pub(super) insert_trigger: String,
    pub(super) insert_audit: String,
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

    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
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

    /// Applies one outbox/endpoint/checkpoint/prune write. The outer `Err` is a database
    /// failure (the group fails); the inner one is this item's own answer.
    fn apply_update(
        &self,
        work: &Work,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        match work {
            Work::Retry(retry) => self.retry(retry),
            Work::Dead(dead) => self.dead(dead),
            Work::Replay(filter) => self.replay(filter, now),
            Work::Endpoint(change) => self.set_endpoint(change, now),
            Work::Prune(chunk) => {
                let (pruned, next) =
                    prune::chunk(&self.conn, micros(chunk.before), chunk.limit, chunk.after)
                        .map_err(self.err())?;
                Ok(Ok(Done::Pruned(pruned, next)))
            }
            Work::Checkpoint => self.checkpoint(context, now),
            // Never here: the plan answers batches, and `plan::update_steps` hands every
            // delivered outcome to `mark_delivered`.
            Work::Batch(_) | Work::Delivered { .. } => Ok(Ok(Done::Unit)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_chain::AuditKeys;
    use crate::store::committer::EndpointChange;
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
        let endpoint = |name: &str| {
            Work::Endpoint(EndpointChange {
                name: name.into(),
                disabled: true,
                reason: None,
            })
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
