//! The embedded backend: one SQLite file `<data_dir>/gcx.db` in WAL mode with
//! `synchronous = FULL` (a commit reported is on disk). One write connection, used only by
//! the committer (so this process never contends with itself), and a small sqlx pool of
//! read-only connections (WAL readers never block the writer). This module opens the
//! file and runs reads on the pool.
//!
//! Opening never changes a file that is not a gcx store: the header and the tables are
//! inspected on a read-only connection before WAL mode or migrations touch anything.
//!
//! # Layout
//! - `open`: the checks and preparation of the file before it is used.
//! - `writer`: the committer's own `rusqlite` connection and its group transaction;
//!   the statements it runs are in `triggers`, `outbox` (with the outbox reads that
//!   differ from PostgreSQL's), `audit` and `prune`.
//! - `known_states`: unfinished triggers' states as the writer left them.
//! - `wal`: the thread that checkpoints the WAL beside the writer.

mod audit;
mod known_states;
mod open;
mod outbox;
mod prune;
mod triggers;
mod wal;
mod writer;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::committer::{Done, GroupContext, Work};
use crate::store::convert::{self, decode_error, from_micros, micros};
use crate::store::error::{db_error, sqlite_error};
use crate::store::migrations::Scripts;
use crate::store::reads::{Arg, BindArg, Reads};
use crate::store::rows::{Columns, CommonColumns};
use open::open_error;
use writer::Writer;

/// File name of the database inside the data folder.
pub const DATABASE_FILE: &str = "gcx.db";

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SqliteBackend {
    /// The committer's connection; `None` when opened read-only, `Some(None)` once closed.
    write: Option<parking_lot::Mutex<Option<Writer>>>,
    /// Read-only connections for every query.
    pub(super) read: Reads<Sqlite>,
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
            // Private before SQLite writes a byte; its -wal and -shm take the same mode.
            open::make_private(data_dir, &path)?;
        }
        open::sniff_header(&path, &location)?;
        let version = open::inspect(&path, &location).await?;
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(256);
        let write = if read_only {
            Scripts::Sqlite.check_readable(&location, version)?;
            None
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
            Scripts::Sqlite.run(&location, &pool).await?;
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
            read: Reads::new(read, &location),
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
        self.read.pool().close().await;
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
}

/// SQLite keeps a time as microseconds since the Unix epoch and a UUID as its text.
impl BindArg for Sqlite {
    fn bind_arg<'q>(
        query: Query<'q, Sqlite, SqliteArguments<'q>>,
        arg: Arg<'q>,
    ) -> Query<'q, Sqlite, SqliteArguments<'q>> {
        match arg {
            Arg::Text(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
            Arg::Time(v) => query.bind(v.map(micros)),
            Arg::Uuid(v) => query.bind(v.to_string()),
        }
    }
}

/// SQLite keeps UUIDs as text, timestamps as microseconds since the Unix epoch and every
/// integer in 64 bits.
impl Columns for SqliteRow {
    fn time(&self, i: usize, location: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
        from_micros(location, what, self.int(i, location)?)
    }

    fn uuid(&self, i: usize, location: &str, what: &str) -> Result<Uuid, StoreError> {
        Uuid::parse_str(&self.text(i, location)?).map_err(|e| decode_error(location, what, e))
    }

    fn status_code(&self, i: usize, location: &str, what: &str) -> Result<Option<u16>, StoreError> {
        let code: Option<i64> = self.try_get(i).map_err(|e| db_error(location, e))?;
        convert::u16_of(location, what, code)
    }
}
