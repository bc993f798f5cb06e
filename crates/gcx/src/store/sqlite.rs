//! The embedded backend: one SQLite file `<data_dir>/gcx.db` in WAL mode with
//! `synchronous = FULL` (a commit reported is on disk). One write connection, used only by
//! the committer (so this process never contends with itself), and a small pool of
//! read-only connections (WAL readers never block the writer).
//!
//! Opening never changes a file that is not a gcx store: the header and the tables are
//! inspected on a read-only connection before WAL mode or migrations touch anything.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::committer::{Done, GroupContext, Work};
use super::convert::{self, from_micros, micros};
use super::error::db_error;
use super::known_states::KnownStates;
use super::migrations::{self, Scripts};
use super::plan::{self, Change, DeliveredRow, NewTrigger, UpdateStep, now_micros};
use super::{
    EndpointState, FinalOutcome, NewOutboxMessage, OutboxCounts, OutboxMessage, OutboxStatus,
    StoreError, TriggerRow, TriggerState,
};
use crate::audit::chain::{self, ChainHead};
use crate::audit::{AuditEvent, AuditRecord, Checkpoint};

/// File name of the database inside the data folder.
pub const DATABASE_FILE: &str = "gcx.db";

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A written group: each item's answer, and where it leaves the triggers it touched.
type GroupWritten = (Vec<Result<Done, StoreError>>, Vec<(Uuid, TriggerState)>);

/// Bound values per multi-row statement (SQLite allows 32,766); rows per statement are
/// this divided by the columns.
const MAX_BINDS: usize = 30_000;

pub(crate) struct SqliteBackend {
    /// The committer's connection; `None` when opened read-only.
    write: Option<SqlitePool>,
    /// Unfinished triggers' states as the committer left them (used by it alone).
    known: parking_lot::Mutex<KnownStates>,
    /// Read-only connections for every query.
    read: SqlitePool,
    /// The database file, as shown in messages.
    location: String,
}

impl SqliteBackend {
    pub(crate) async fn open(data_dir: &Path, read_only: bool) -> Result<Self, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let location = path.display().to_string();
        if read_only {
            if !path.exists() {
                return Err(StoreError::Missing { location });
            }
        } else {
            std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
                path: data_dir.display().to_string(),
                source,
            })?;
        }
        sniff_header(&path, &location)?;
        let version = inspect(&path, &location).await?;
        let known = migrations::known_version(Scripts::Sqlite);
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(256);
        let write = if read_only {
            match version {
                None => return Err(StoreError::Missing { location }),
                Some(v) if v < known => {
                    return Err(StoreError::Migrate {
                        location,
                        detail: format!(
                            "it has schema version {v}, this gcx needs {known}; open it once \
                             for writing (e.g. `gcx serve`) to upgrade it"
                        ),
                    });
                }
                Some(_) => None,
            }
        } else {
            let options = base
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(|e| open_error(&location, e))?;
            migrate(&pool, &location).await?;
            probe_writable(&pool, &location).await?;
            Some(pool)
        };
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(base.read_only(true))
            .await
            .map_err(|e| open_error(&location, e))?;
        Ok(SqliteBackend {
            write,
            known: parking_lot::Mutex::new(KnownStates::default()),
            read,
            location,
        })
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) async fn close(&self) {
        if let Some(write) = &self.write {
            write.close().await;
        }
        self.read.close().await;
    }

    fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| db_error(&self.location, e)
    }

    /// Writes one group in one `BEGIN IMMEDIATE` transaction. `Err` means nothing was
    /// written; `Ok` holds each item's own answer.
    pub(crate) async fn write_group(
        &self,
        items: &[&Work],
        context: &GroupContext,
    ) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
        let Some(pool) = &self.write else {
            return Err(StoreError::OpenedReadOnly {
                location: self.location.clone(),
            });
        };
        // Transactions are begun and ended by hand, not with sqlx's `Transaction`: after
        // SQLITE_FULL or an I/O error SQLite may already have rolled back by itself, and
        // sqlx 0.8 then keeps counting an open transaction on the connection forever.
        let mut conn = pool.acquire().await.map_err(self.db())?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(self.db())?;
        let written = self.write_in_transaction(&mut conn, items, context).await;
        let outcome = match written {
            Ok((results, changes)) => match sqlx::query("COMMIT").execute(&mut *conn).await {
                Ok(_) => {
                    self.known.lock().committed(changes);
                    return Ok(results);
                }
                Err(e) => db_error(&self.location, e),
            },
            Err(e) => e,
        };
        self.known.lock().forget();
        match sqlx::query("ROLLBACK").execute(&mut *conn).await {
            Err(e) if !e.to_string().contains("no transaction is active") => {
                tracing::warn!(error = %e, "rollback failed; replacing the write connection");
                conn.close_on_drop();
            }
            _ => {}
        }
        Err(outcome)
    }

    /// Writes the group; returns each item's answer and the triggers' states after it.
    async fn write_in_transaction(
        &self,
        conn: &mut SqliteConnection,
        items: &[&Work],
        context: &GroupContext,
    ) -> Result<GroupWritten, StoreError> {
        let ids = plan::trigger_ids(items);
        let mut stored = Vec::new();
        if !ids.is_empty() {
            let version: i64 = sqlx::query_scalar("PRAGMA data_version")
                .fetch_one(&mut *conn)
                .await
                .map_err(self.db())?;
            let (known, unknown) = {
                let mut known = self.known.lock();
                known.begin(version);
                known.split(&ids)
            };
            stored = known;
            stored.extend(self.load_states(conn, &unknown).await?);
        }
        let mut plan = plan::plan(items, stored);
        let changes: Vec<(Uuid, TriggerState)> = plan
            .new_triggers
            .iter()
            .map(|t| (t.correlation_id, t.now.state))
            .chain(plan.changed_triggers.iter().map(|(id, c)| (*id, c.state)))
            .collect();
        let now = now_micros();
        self.insert_triggers(conn, &plan.new_triggers).await?;
        self.update_triggers(conn, &plan.changed_triggers).await?;
        self.insert_outbox(conn, &plan.outbox, now).await?;
        self.append_audit(conn, std::mem::take(&mut plan.audit), context, now)
            .await?;
        for step in plan::update_steps(items, &plan.updates) {
            match step {
                UpdateStep::One(index) => {
                    let result = self.apply_update(conn, items[index], context, now).await?;
                    plan.results[index] = Some(result);
                }
                UpdateStep::Delivered(rows) => {
                    for (index, result) in self.mark_delivered(conn, &rows).await? {
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
    async fn load_states(
        &self,
        conn: &mut SqliteConnection,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, TriggerState)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::Value::from(ids.iter().map(Uuid::to_string).collect::<Vec<_>>());
        let rows = sqlx::query(
            "SELECT correlation_id, state FROM triggers \
             WHERE correlation_id IN (SELECT value FROM json_each(?))",
        )
        .bind(list.to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(self.db())?;
        let l = &self.location;
        rows.iter()
            .map(|row| {
                let id: String = get(row, 0, l)?;
                let id = Uuid::parse_str(&id)
                    .map_err(|e| convert::decode_error(l, "triggers.correlation_id", e))?;
                Ok((id, convert::state(l, &get::<String>(row, 1, l)?)?))
            })
            .collect()
    }

    async fn insert_triggers(
        &self,
        conn: &mut SqliteConnection,
        rows: &[NewTrigger<'_>],
    ) -> Result<(), StoreError> {
        for chunk in fixed_chunks(rows, MAX_BINDS / 9) {
            let mut q =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO triggers ({TRIGGER_COLUMNS}) "));
            q.push_values(chunk, |mut b, t| {
                b.push_bind(t.correlation_id.to_string())
                    .push_bind(t.action_type)
                    .push_bind(convert::to_text(t.payload))
                    .push_bind(t.now.state.as_str())
                    .push_bind(i64::from(t.now.attempts))
                    .push_bind(micros(t.accepted_at))
                    .push_bind(micros(t.now.updated_at))
                    .push_bind(t.now.output.map(convert::to_text))
                    .push_bind(t.now.error.map(convert::to_text));
            });
            q.build().execute(&mut *conn).await.map_err(self.db())?;
        }
        Ok(())
    }

    async fn update_triggers(
        &self,
        conn: &mut SqliteConnection,
        rows: &[(Uuid, Change<'_>)],
    ) -> Result<(), StoreError> {
        for chunk in fixed_chunks(rows, MAX_BINDS / 6) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE triggers SET state = v.column2, attempts = v.column3, \
                 updated_at = v.column4, output = v.column5, error = v.column6 FROM (",
            );
            q.push_values(chunk, |mut b, (id, t)| {
                b.push_bind(id.to_string())
                    .push_bind(t.state.as_str())
                    .push_bind(i64::from(t.attempts))
                    .push_bind(micros(t.updated_at))
                    .push_bind(t.output.map(convert::to_text))
                    .push_bind(t.error.map(convert::to_text));
            });
            q.push(") AS v WHERE triggers.correlation_id = v.column1");
            q.build().execute(&mut *conn).await.map_err(self.db())?;
        }
        Ok(())
    }

    /// Inserts outbox rows in order; a row whose key already has a dead letter is dead on
    /// arrival, so it cannot overtake its predecessor. When the outbox holds no dead letter
    /// at all (the usual case; one probe of the status index, inside the write
    /// transaction, so nothing can turn dead meanwhile) the per-row check is left out.
    async fn insert_outbox(
        &self,
        conn: &mut SqliteConnection,
        messages: &[&NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let any_dead: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'dead')")
                .fetch_one(&mut *conn)
                .await
                .map_err(self.db())?;
        let dead_check = if any_dead {
            "EXISTS (SELECT 1 FROM outbox d WHERE d.endpoint = v.column2 \
             AND d.ordering_key = v.column3 AND d.status = 'dead')"
        } else {
            "0"
        };
        for chunk in fixed_chunks(messages, MAX_BINDS / 5) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO outbox (message_id, endpoint, ordering_key, body, created_at, \
                 attempts, next_attempt_at, status, last_error) \
                 SELECT message_id, endpoint, ordering_key, body, created_at, 0, created_at, \
                 CASE WHEN dead THEN 'dead' ELSE 'pending' END, \
                 CASE WHEN dead THEN 'predecessor dead-lettered' END \
                 FROM (SELECT v.column1 AS message_id, v.column2 AS endpoint, \
                 v.column3 AS ordering_key, v.column4 AS body, v.column5 AS created_at, \
                 {dead_check} AS dead FROM ("
            ));
            q.push_values(chunk, |mut b, m| {
                b.push_bind(m.message_id.as_str())
                    .push_bind(m.endpoint.as_str())
                    .push_bind(m.ordering_key.as_str())
                    .push_bind(convert::to_text(&m.body))
                    .push_bind(micros(now));
            });
            q.push(") AS v)");
            q.build().execute(&mut *conn).await.map_err(self.db())?;
        }
        Ok(())
    }

    /// Appends `events` after the current chain head and writes the checkpoints that fall
    /// due, all inside the open transaction (chain order = commit order).
    async fn append_audit(
        &self,
        conn: &mut SqliteConnection,
        events: Vec<&AuditEvent>,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut head = self.chain_head(conn).await?;
        let records = chain::link(&mut head, now, events, context.store_parameters);
        for chunk in fixed_chunks(&records, MAX_BINDS / 23) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO audit_records ({AUDIT_COLUMNS}) "
            ));
            q.push_values(chunk, |mut b, r| {
                let e = &r.event;
                b.push_bind(convert::i64_of(r.seq))
                    .push_bind(micros(r.recorded_at))
                    .push_bind(e.correlation_id.as_str())
                    .push_bind(e.action_type.as_str())
                    .push_bind(e.status.as_str())
                    .push_bind(micros(r.started_at()))
                    .push_bind(micros(r.ended_at()))
                    .push_bind(e.latency_ms)
                    .push_bind(e.queue_wait_ms)
                    .push_bind(e.send_to_ack_ms)
                    .push_bind(e.send_to_result_ms)
                    .push_bind(e.agent_id.as_str())
                    .push_bind(e.session_id.as_str())
                    .push_bind(e.interaction_type.as_str())
                    .push_bind(e.catalogue_version.as_str())
                    .push_bind(e.parameters_sha256.as_str())
                    .push_bind(r.parameters().map(convert::to_text))
                    .push_bind(e.outcome.as_str())
                    .push_bind(e.error.as_deref())
                    .push_bind(i64::from(e.retries))
                    .push_bind(e.instance.as_str())
                    .push_bind(r.prev_hash.as_str())
                    .push_bind(r.hash.as_str());
            });
            q.build().execute(&mut *conn).await.map_err(self.db())?;
        }
        if context.checkpoint_every > 0 {
            for r in records
                .iter()
                .filter(|r| r.seq % context.checkpoint_every == 0)
            {
                let cp = Checkpoint::sign(&context.keys, r.seq, &r.hash, now);
                self.insert_checkpoint(&mut *conn, &cp).await?;
            }
        }
        Ok(())
    }

    async fn chain_head(&self, conn: &mut SqliteConnection) -> Result<ChainHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.db())?;
        match row {
            None => Ok(ChainHead::genesis()),
            Some(row) => Ok(ChainHead {
                seq: convert::u64_of(
                    &self.location,
                    "audit_records.seq",
                    get(&row, 0, &self.location)?,
                )?,
                hash: get(&row, 1, &self.location)?,
            }),
        }
    }

    async fn insert_checkpoint(
        &self,
        conn: &mut SqliteConnection,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, signature, key_id, signed_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(convert::i64_of(cp.seq))
        .bind(&cp.hash)
        .bind(&cp.signature)
        .bind(&cp.key_id)
        .bind(micros(cp.signed_at))
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Applies one outbox/endpoint/checkpoint write. The outer `Err` is a database failure
    /// (the group fails); the inner one is this item's own answer.
    async fn apply_update(
        &self,
        conn: &mut SqliteConnection,
        work: &Work,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        match work {
            Work::Retry {
                id,
                attempts,
                next_attempt_at,
                error,
                status,
            } => {
                let n = sqlx::query(
                    "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, \
                     last_status = ? WHERE id = ? AND status = 'pending'",
                )
                .bind(i64::from(*attempts))
                .bind(micros(*next_attempt_at))
                .bind(error)
                .bind(status.map(i64::from))
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(self.db())?
                .rows_affected();
                self.updated_or_missing(conn, *id, n).await
            }
            Work::Dead {
                id,
                attempts,
                reason,
                status,
            } => {
                let key = sqlx::query(
                    "UPDATE outbox SET status = 'dead', attempts = ?, last_error = ?, \
                     last_status = ? WHERE id = ? AND status = 'pending' \
                     RETURNING endpoint, ordering_key",
                )
                .bind(i64::from(*attempts))
                .bind(reason)
                .bind(status.map(i64::from))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.db())?;
                match key {
                    Some(row) => {
                        let endpoint: String = get(&row, 0, &self.location)?;
                        let ordering_key: String = get(&row, 1, &self.location)?;
                        sqlx::query(
                            "UPDATE outbox SET status = 'dead', \
                             last_error = 'predecessor dead-lettered' \
                             WHERE endpoint = ? AND ordering_key = ? AND status = 'pending' \
                             AND id > ?",
                        )
                        .bind(endpoint)
                        .bind(ordering_key)
                        .bind(id)
                        .execute(&mut *conn)
                        .await
                        .map_err(self.db())?;
                        Ok(Ok(Done::Unit))
                    }
                    None => self.updated_or_missing(conn, *id, 0).await,
                }
            }
            Work::Replay(filter) => {
                let n = sqlx::query(
                    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?1 \
                     WHERE status = 'dead' AND (endpoint, ordering_key) IN ( \
                       SELECT endpoint, ordering_key FROM outbox WHERE status = 'dead' \
                       AND (?2 IS NULL OR id = ?2) AND (?3 IS NULL OR created_at >= ?3))",
                )
                .bind(micros(now))
                .bind(filter.id)
                .bind(filter.since.map(micros))
                .execute(&mut *conn)
                .await
                .map_err(self.db())?
                .rows_affected();
                Ok(Ok(Done::Count(n)))
            }
            Work::Endpoint {
                name,
                disabled,
                reason,
            } => {
                sqlx::query(
                    "INSERT INTO endpoints (name, disabled, reason, updated_at) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                     disabled = excluded.disabled, reason = excluded.reason, \
                     updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(*disabled)
                .bind(reason)
                .bind(micros(now))
                .execute(&mut *conn)
                .await
                .map_err(self.db())?;
                Ok(Ok(Done::Unit))
            }
            Work::Checkpoint => {
                let head = sqlx::query(
                    "SELECT r.seq, r.hash, (SELECT MAX(seq) FROM audit_checkpoints) \
                     FROM audit_records r ORDER BY r.seq DESC LIMIT 1",
                )
                .fetch_optional(&mut *conn)
                .await
                .map_err(self.db())?;
                if let Some(row) = head {
                    let seq: i64 = get(&row, 0, &self.location)?;
                    let hash: String = get(&row, 1, &self.location)?;
                    let signed: Option<i64> = get(&row, 2, &self.location)?;
                    if signed.is_none_or(|s| s < seq) {
                        let seq = convert::u64_of(&self.location, "audit_records.seq", seq)?;
                        let cp = Checkpoint::sign(&context.keys, seq, &hash, now);
                        self.insert_checkpoint(conn, &cp).await?;
                    }
                }
                Ok(Ok(Done::Unit))
            }
            // Never here: the plan answers batches, and `plan::update_steps` hands every
            // delivered outcome to `mark_delivered`.
            Work::Batch(_) | Work::Delivered { .. } => Ok(Ok(Done::Unit)),
        }
    }

    /// Marks a run of pending rows delivered, one statement per chunk; answers each row
    /// (by its item index): a row no longer pending is left alone, a missing one is an error.
    async fn mark_delivered(
        &self,
        conn: &mut SqliteConnection,
        rows: &[DeliveredRow],
    ) -> Result<Vec<(usize, Result<Done, StoreError>)>, StoreError> {
        let mut updated = HashSet::with_capacity(rows.len());
        for chunk in fixed_chunks(rows, MAX_BINDS / 3) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE outbox SET status = 'delivered', attempts = v.column2, \
                 last_status = v.column3 FROM (",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(i64::from(r.attempts))
                    .push_bind(i64::from(r.status));
            });
            q.push(
                ") AS v WHERE outbox.id = v.column1 AND outbox.status = 'pending' \
                 RETURNING outbox.id",
            );
            let ids: Vec<i64> = q
                .build_query_scalar()
                .fetch_all(&mut *conn)
                .await
                .map_err(self.db())?;
            updated.extend(ids);
        }
        let mut answers = Vec::with_capacity(rows.len());
        for row in rows {
            let n = u64::from(updated.contains(&row.id));
            answers.push((row.index, self.updated_or_missing(conn, row.id, n).await?));
        }
        Ok(answers)
    }

    async fn updated_or_missing(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
        rows_affected: u64,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        if rows_affected > 0 {
            return Ok(Ok(Done::Unit));
        }
        let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = ?")
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

    pub(crate) async fn trigger(&self, id: Uuid) -> Result<Option<TriggerRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE correlation_id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(self.db())?;
        row.map(|r| self.trigger_row(&r)).transpose()
    }

    pub(crate) async fn unfinished_triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE state IN ('accepted', 'sent') \
             ORDER BY accepted_at, correlation_id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.trigger_row(r)).collect()
    }

    pub(crate) async fn due_outbox(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o \
             WHERE o.endpoint = ?1 AND o.status = 'pending' AND o.next_attempt_at <= ?2 \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
               AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
             ORDER BY o.id LIMIT ?3"
        ))
        .bind(endpoint)
        .bind(micros(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.outbox_row(r)).collect()
    }

    pub(crate) async fn next_outbox_due(
        &self,
        endpoint: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Only a key's oldest pending message can become due: later ones wait for it.
        // Walking the `outbox_due` index in time order and stopping at the first key head
        // finds the same time as MIN() over the heads, without probing every pending row
        // (MIN with the correlated NOT EXISTS cannot stop early: with a large backlog it
        // cost a probe per pending row on every call).
        let row = sqlx::query(
            "SELECT o.next_attempt_at FROM outbox o \
             WHERE o.endpoint = ? AND o.status = 'pending' \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
               AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
             ORDER BY o.next_attempt_at LIMIT 1",
        )
        .bind(endpoint)
        .fetch_optional(&self.read)
        .await
        .map_err(self.db())?;
        let at: Option<i64> = row.map(|r| get(&r, 0, &self.location)).transpose()?;
        at.map(|v| from_micros(&self.location, "outbox.next_attempt_at", v))
            .transpose()
    }

    pub(crate) async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM outbox GROUP BY status")
            .fetch_all(&self.read)
            .await
            .map_err(self.db())?;
        let mut counts = OutboxCounts::default();
        for row in rows {
            let status: String = get(&row, 0, &self.location)?;
            let n = convert::u64_of(&self.location, "count", get(&row, 1, &self.location)?)?;
            match convert::outbox_status(&self.location, &status)? {
                OutboxStatus::Pending => counts.pending = n,
                OutboxStatus::Delivered => counts.delivered = n,
                OutboxStatus::Dead => counts.dead = n,
            }
        }
        Ok(counts)
    }

    pub(crate) async fn outbox_list(
        &self,
        status: Option<OutboxStatus>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE (?1 IS NULL OR o.status = ?1) \
             ORDER BY o.id LIMIT ?2"
        ))
        .bind(status.map(OutboxStatus::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.outbox_row(r)).collect()
    }

    pub(crate) async fn endpoint_state(&self, endpoint: &str) -> Result<EndpointState, StoreError> {
        let row = sqlx::query("SELECT disabled, reason FROM endpoints WHERE name = ?")
            .bind(endpoint)
            .fetch_optional(&self.read)
            .await
            .map_err(self.db())?;
        match row {
            None => Ok(EndpointState::default()),
            Some(row) => Ok(EndpointState {
                disabled: get(&row, 0, &self.location)?,
                reason: get(&row, 1, &self.location)?,
            }),
        }
    }

    pub(crate) async fn audit_records(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?"
        ))
        .bind(convert::i64_of(from_seq))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.audit_row(r)).collect()
    }

    pub(crate) async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, signature, key_id, signed_at FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.read)
        .await
        .map_err(self.db())?;
        let l = &self.location;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    seq: convert::u64_of(l, "audit_checkpoints.seq", get(row, 0, l)?)?,
                    hash: get(row, 1, l)?,
                    signature: get(row, 2, l)?,
                    key_id: get(row, 3, l)?,
                    signed_at: from_micros(l, "audit_checkpoints.signed_at", get(row, 4, l)?)?,
                })
            })
            .collect()
    }

    pub(crate) async fn audit_final_outcomes(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<FinalOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT action_type, status, latency_ms FROM audit_records \
             WHERE status IN ('completed', 'failed', 'rejected') \
             AND (?1 IS NULL OR ended_at >= ?1) AND (?2 IS NULL OR ended_at < ?2) ORDER BY seq",
        )
        .bind(since.map(micros))
        .bind(until.map(micros))
        .fetch_all(&self.read)
        .await
        .map_err(self.db())?;
        let l = &self.location;
        rows.iter()
            .map(|row| {
                Ok(FinalOutcome {
                    action_type: get(row, 0, l)?,
                    status: get(row, 1, l)?,
                    latency_ms: get(row, 2, l)?,
                })
            })
            .collect()
    }

    fn trigger_row(&self, row: &SqliteRow) -> Result<TriggerRow, StoreError> {
        let l = &self.location;
        let id: String = get(row, 0, l)?;
        Ok(TriggerRow {
            correlation_id: Uuid::parse_str(&id)
                .map_err(|e| convert::decode_error(l, "triggers.correlation_id", e))?,
            action_type: get(row, 1, l)?,
            payload: convert::json(l, "triggers.payload", &get::<String>(row, 2, l)?)?,
            state: convert::state(l, &get::<String>(row, 3, l)?)?,
            attempts: convert::u32_of(l, "triggers.attempts", get(row, 4, l)?)?,
            accepted_at: from_micros(l, "triggers.accepted_at", get(row, 5, l)?)?,
            updated_at: from_micros(l, "triggers.updated_at", get(row, 6, l)?)?,
            output: convert::opt_json(l, "triggers.output", get(row, 7, l)?)?,
            error: convert::opt_json(l, "triggers.error", get(row, 8, l)?)?,
        })
    }

    fn outbox_row(&self, row: &SqliteRow) -> Result<OutboxMessage, StoreError> {
        let l = &self.location;
        Ok(OutboxMessage {
            id: get(row, 0, l)?,
            message_id: get(row, 1, l)?,
            endpoint: get(row, 2, l)?,
            ordering_key: get(row, 3, l)?,
            body: convert::json(l, "outbox.body", &get::<String>(row, 4, l)?)?,
            created_at: from_micros(l, "outbox.created_at", get(row, 5, l)?)?,
            attempts: convert::u32_of(l, "outbox.attempts", get(row, 6, l)?)?,
            next_attempt_at: from_micros(l, "outbox.next_attempt_at", get(row, 7, l)?)?,
            status: convert::outbox_status(l, &get::<String>(row, 8, l)?)?,
            last_error: get(row, 9, l)?,
            last_status: convert::u16_of(l, "outbox.last_status", get(row, 10, l)?)?,
        })
    }

    fn audit_row(&self, row: &SqliteRow) -> Result<AuditRecord, StoreError> {
        let l = &self.location;
        Ok(AuditRecord {
            seq: convert::u64_of(l, "audit_records.seq", get(row, 0, l)?)?,
            recorded_at: from_micros(l, "audit_records.recorded_at", get(row, 1, l)?)?,
            event: AuditEvent {
                correlation_id: get(row, 2, l)?,
                action_type: get(row, 3, l)?,
                status: get(row, 4, l)?,
                started_at: from_micros(l, "audit_records.started_at", get(row, 5, l)?)?,
                ended_at: from_micros(l, "audit_records.ended_at", get(row, 6, l)?)?,
                latency_ms: get(row, 7, l)?,
                queue_wait_ms: get(row, 8, l)?,
                send_to_ack_ms: get(row, 9, l)?,
                send_to_result_ms: get(row, 10, l)?,
                agent_id: get(row, 11, l)?,
                session_id: get(row, 12, l)?,
                interaction_type: get(row, 13, l)?,
                catalogue_version: get(row, 14, l)?,
                parameters_sha256: get(row, 15, l)?,
                parameters: convert::opt_json(l, "audit_records.parameters", get(row, 16, l)?)?,
                outcome: get(row, 17, l)?,
                error: get(row, 18, l)?,
                retries: convert::u32_of(l, "audit_records.retries", get(row, 19, l)?)?,
                instance: get(row, 20, l)?,
            },
            prev_hash: get(row, 21, l)?,
            hash: get(row, 22, l)?,
        })
    }
}

/// Splits `items` into slices of a few fixed sizes (256, 64, 16, 4 or 1 rows, at most
/// `max_rows`), so multi-row statements come in a handful of shapes that stay prepared in
/// the statement cache instead of one new statement per group size.
fn fixed_chunks<T>(items: &[T], max_rows: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = [256, 64, 16, 4]
            .into_iter()
            .find(|&s| s <= rest.len() && s <= max_rows)
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

const TRIGGER_COLUMNS: &str = "correlation_id, action_type, payload, state, attempts, \
    accepted_at, updated_at, output, error";

const OUTBOX_COLUMNS: &str = "o.id, o.message_id, o.endpoint, o.ordering_key, o.body, \
    o.created_at, o.attempts, o.next_attempt_at, o.status, o.last_error, o.last_status";

const AUDIT_COLUMNS: &str = "seq, recorded_at, correlation_id, action_type, status, \
    started_at, ended_at, latency_ms, queue_wait_ms, send_to_ack_ms, send_to_result_ms, \
    agent_id, session_id, interaction_type, catalogue_version, parameters_sha256, parameters, \
    outcome, error, retries, instance, prev_hash, hash";

fn get<'r, T>(row: &'r SqliteRow, index: usize, location: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(index).map_err(|e| db_error(location, e))
}

/// Refuses a file that exists but is not an SQLite database, before SQLite touches it.
fn sniff_header(path: &Path, location: &str) -> Result<(), StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::ReadOnly {
                location: location.to_string(),
                detail: format!("cannot open it: {e}"),
            });
        }
    };
    let mut header = Vec::with_capacity(16);
    (&mut file)
        .take(16)
        .read_to_end(&mut header)
        .map_err(|e| StoreError::Corrupt {
            location: location.to_string(),
            detail: format!("cannot read its header: {e}"),
        })?;
    if header.is_empty() || header == b"SQLite format 3\0" {
        return Ok(());
    }
    let printable: String = header
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    Err(StoreError::NotAStore {
        location: location.to_string(),
        detail: format!(
            "it is not an SQLite database (it starts with {printable:?}, \
             an SQLite file starts with \"SQLite format 3\")"
        ),
    })
}

/// Reads which gcx schema version the file holds (`None`: new or empty), on a read-only
/// connection, refusing foreign and newer databases.
async fn inspect(path: &PathBuf, location: &str) -> Result<Option<i64>, StoreError> {
    let has_content = std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if !has_content {
        return Ok(None);
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| open_error(location, e))?;
    let result = inspect_tables(&mut conn, location).await;
    let _ = conn.close().await;
    result
}

async fn inspect_tables(
    conn: &mut SqliteConnection,
    location: &str,
) -> Result<Option<i64>, StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| open_error(location, e))?;
    if tables.is_empty() {
        return Ok(None);
    }
    if !tables.iter().any(|t| t == "gcx_meta") {
        return Err(foreign(location, "an SQLite database", &tables));
    }
    let meta: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM gcx_meta")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| open_error(location, e))?;
    check_meta(location, &meta, Scripts::Sqlite).map(Some)
}

/// Checks `gcx_meta` rows: the application is gcx and the schema is not newer than ours.
pub(crate) fn check_meta(
    location: &str,
    meta: &[(String, String)],
    scripts: Scripts,
) -> Result<i64, StoreError> {
    let value = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if value("application") != Some("gcx") {
        return Err(StoreError::NotAStore {
            location: location.to_string(),
            detail: "its gcx_meta table does not say application = gcx".to_string(),
        });
    }
    let found = value("schema_version")
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| StoreError::Corrupt {
            location: location.to_string(),
            detail: "gcx_meta.schema_version is missing or not a number".to_string(),
        })?;
    let known = migrations::known_version(scripts);
    if found > known {
        return Err(StoreError::NewerSchema {
            location: location.to_string(),
            found,
            known,
        });
    }
    Ok(found)
}

pub(crate) fn foreign(location: &str, what: &str, tables: &[String]) -> StoreError {
    let mut shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    if tables.len() > 5 {
        shown.push("...");
    }
    StoreError::NotAStore {
        location: location.to_string(),
        detail: format!("it is {what} holding other tables ({})", shown.join(", ")),
    }
}

/// SQLite silently opens a file it cannot write read-only; a write that is rolled back
/// finds out at open rather than at the first commit.
async fn probe_writable(pool: &SqlitePool, location: &str) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(|e| db_error(location, e))?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(location, e))?;
    let probe = sqlx::query("UPDATE gcx_meta SET value = value WHERE key = 'application'")
        .execute(&mut *conn)
        .await;
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    probe.map(|_| ()).map_err(|e| db_error(location, e))
}

async fn migrate(pool: &SqlitePool, location: &str) -> Result<(), StoreError> {
    let migrator = Scripts::Sqlite
        .migrator()
        .await
        .map_err(|e| migrate_error(location, e))?;
    migrator
        .run(pool)
        .await
        .map_err(|e| migrate_error(location, e))
}

pub(crate) fn migrate_error(location: &str, err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => db_error(location, e),
        other => StoreError::Migrate {
            location: location.to_string(),
            detail: other.to_string(),
        },
    }
}

/// Errors while opening: a file that is not a database reads as "not a gcx store".
fn open_error(location: &str, err: sqlx::Error) -> StoreError {
    match db_error(location, err) {
        StoreError::Corrupt { location, detail } if detail.contains("not a database") => {
            StoreError::NotAStore { location, detail }
        }
        other => other,
    }
}
