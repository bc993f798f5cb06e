//! The embedded backend: one SQLite file `<data_dir>/gcx.db` in WAL mode with
//! `synchronous = FULL` (a commit reported is on disk). One write connection, used only by
//! the committer (so this process never contends with itself; it and every statement
//! that writes are in `writer`), and a small sqlx pool of read-only connections
//! (WAL readers never block the writer). This module opens, inspects, migrates and reads.
//!
//! Opening never changes a file that is not a gcx store: the header and the tables are
//! inspected on a read-only connection before WAL mode or migrations touch anything.

mod known_states;
mod prune;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::audit_chain::{AuditEvent, AuditRecord, Checkpoint};
use crate::store::committer::{Done, GroupContext, Work};
use crate::store::convert::{self, from_micros, micros};
use crate::store::error::{db_error, sqlite_error};
use crate::store::migrations::{self, Scripts, check_meta, foreign, migrate_error};
use crate::store::{
    EndpointState, FinalOutcome, OutboxCounts, OutboxMessage, OutboxStatus, StoreError, TriggerRow,
};
use writer::Writer;

/// File name of the database inside the data folder.
pub const DATABASE_FILE: &str = "gcx.db";

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SqliteBackend {
    /// The committer's connection; `None` when opened read-only, `Some(None)` once closed.
    write: Option<parking_lot::Mutex<Option<Writer>>>,
    /// Read-only connections for every query.
    read: SqlitePool,
    /// A read-only connection kept for `PRAGMA data_version` alone: its value changes
    /// exactly when another connection (this process's committer included) committed, so
    /// a loop waiting on the store tells "nothing changed" without a query; `None` once
    /// closed.
    changes: parking_lot::Mutex<Option<rusqlite::Connection>>,
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
            crate::private_files::create_dir(data_dir).map_err(|source| StoreError::CreateDir {
                path: data_dir.display().to_string(),
                source,
            })?;
            // Private before SQLite writes a byte; its -wal and -shm take the same mode.
            let private = |file: &Path, result: std::io::Result<()>| {
                result.map_err(|source| StoreError::Private {
                    path: file.display().to_string(),
                    source,
                })
            };
            private(&path, crate::private_files::ensure_file(&path))?;
            for suffix in ["-wal", "-shm"] {
                let side = sidecar(&path, suffix);
                private(&side, crate::private_files::tighten(&side))?;
            }
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
            // Migrated through sqlx; from here on the committer writes on its own
            // connection. Opened before the pool closes, so that closing is not the
            // last connection's (which would checkpoint the migrations into the file).
            let writer = Writer::open(&path, &location, BUSY_TIMEOUT);
            pool.close().await;
            let writer = writer?;
            Some(parking_lot::Mutex::new(Some(writer)))
        };
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(base.read_only(true))
            .await
            .map_err(|e| open_error(&location, e))?;
        let changes = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_error(&location, e))?;
        Ok(SqliteBackend {
            write,
            read,
            changes: parking_lot::Mutex::new(Some(changes)),
            location,
        })
    }

    /// A number that changes whenever anything was committed to the file since it was
    /// last read (by this process or another). A read of the WAL index, no query.
    pub(crate) fn data_version(&self) -> Result<i64, StoreError> {
        let guard = self.changes.lock();
        let conn = guard.as_ref().ok_or(StoreError::Closed)?;
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| sqlite_error(&self.location, e))
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) async fn close(&self) {
        if let Some(write) = &self.write {
            // Dropping the connection closes the file.
            drop(write.lock().take());
        }
        drop(self.changes.lock().take());
        self.read.close().await;
    }

    fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| db_error(&self.location, e)
    }

    /// Writes one group in one transaction on the committer's connection (see
    /// [`Writer::write_group`]). Called on the committer's own thread only, which it
    /// blocks for the length of the write.
    pub(crate) async fn write_group(
        &self,
        items: &[&Work],
        context: &GroupContext,
    ) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
        let Some(write) = &self.write else {
            return Err(StoreError::OpenedReadOnly {
                location: self.location.clone(),
            });
        };
        match write.lock().as_mut() {
            Some(writer) => writer.write_group(items, context),
            None => Err(StoreError::Closed),
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
             ORDER BY CASE state WHEN 'sent' THEN 0 ELSE 1 END, accepted_at, correlation_id"
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
        // Pending and dead rows are counted in their partial indexes; delivered ones are
        // the rest (no index holds them alone).
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'pending'), \
                    (SELECT COUNT(*) FROM outbox WHERE status = 'dead'), \
                    (SELECT COUNT(*) FROM outbox)",
        )
        .fetch_one(&self.read)
        .await
        .map_err(self.db())?;
        let count = |i: usize| -> Result<u64, StoreError> {
            convert::u64_of(&self.location, "count", get(&row, i, &self.location)?)
        };
        let (pending, dead, all) = (count(0)?, count(1)?, count(2)?);
        Ok(OutboxCounts {
            pending,
            delivered: all.saturating_sub(pending + dead),
            dead,
        })
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

pub(super) const TRIGGER_COLUMNS: &str = "correlation_id, action_type, payload, state, attempts, \
    accepted_at, updated_at, output, error";

const OUTBOX_COLUMNS: &str = "o.id, o.message_id, o.endpoint, o.ordering_key, o.body, \
    o.created_at, o.attempts, o.next_attempt_at, o.status, o.last_error, o.last_status";

pub(super) const AUDIT_COLUMNS: &str = "seq, recorded_at, correlation_id, action_type, status, \
    started_at, ended_at, latency_ms, queue_wait_ms, send_to_ack_ms, send_to_result_ms, \
    agent_id, session_id, interaction_type, catalogue_version, parameters_sha256, parameters, \
    outcome, error, retries, instance, prev_hash, hash";

fn get<'r, T>(row: &'r SqliteRow, index: usize, location: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(index).map_err(|e| db_error(location, e))
}

/// `gcx.db-wal` and the like beside `path`.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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

/// Errors while opening: a file that is not a database reads as "not a gcx store".
fn open_error(location: &str, err: sqlx::Error) -> StoreError {
    match db_error(location, err) {
        StoreError::Corrupt { location, detail } if detail.contains("not a database") => {
            StoreError::NotAStore { location, detail }
        }
        other => other,
    }
}
