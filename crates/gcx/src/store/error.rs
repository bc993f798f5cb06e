//! [`StoreError`] and the mapping of database errors to it, so that every message names
//! the file or setting concerned and never shows a password.

use thiserror::Error;
use uuid::Uuid;

use super::TriggerState;

/// Why a store operation failed. Every message names the file or setting concerned.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the store folder {path} (store.data_dir / --data-dir): {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make {path} readable by its owner only (mode 600): {source}")]
    Private {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no gcx store at {location}: nothing has been recorded there yet \
         (check store.data_dir / --data-dir or store.database_url / --database-url)"
    )]
    Missing { location: String },
    #[error(
        "{location} is not a gcx store: {detail}; nothing was changed. \
         Point store.data_dir (--data-dir) at another folder, or move the file away"
    )]
    NotAStore { location: String, detail: String },
    #[error(
        "{location} was written by a newer gcx (schema version {found}, this gcx knows up to \
         {known}); nothing was changed. Upgrade gcx to open it"
    )]
    NewerSchema {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("{location} is damaged ({detail}); restore it from a backup")]
    Corrupt { location: String, detail: String },
    #[error("{location} is read-only ({detail}); make it writable or choose another store")]
    ReadOnly { location: String, detail: String },
    #[error("{location} is full ({detail}); free space, then retry")]
    Full { location: String, detail: String },
    #[error(
        "store.database_url (--database-url) is not a usable PostgreSQL URL: {reason}; \
         expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )]
    BadDatabaseUrl { reason: String },
    #[error(
        "cannot connect to PostgreSQL at {target} (store.database_url / --database-url): {detail}"
    )]
    Connect { target: String, detail: String },
    #[error("preparing the schema of {location} failed: {detail}")]
    Migrate { location: String, detail: String },
    #[error("trigger {0} is not stored; accept it before moving it to another state")]
    UnknownTrigger(Uuid),
    #[error(
        "trigger {id} cannot move from `{from}` to `{to}` (only `accepted` and `sent` \
         triggers move on)"
    )]
    InvalidTransition {
        id: Uuid,
        from: TriggerState,
        to: TriggerState,
    },
    #[error(
        "this instance no longer dispatches (its term {term} ended; term {current} holds \
         the lease): the write was refused and the new leader resumes the trigger"
    )]
    Fenced { term: i64, current: i64 },
    #[error("outbox message {0} does not exist")]
    UnknownOutboxMessage(i64),
    #[error("rejected write to {location}: {detail}")]
    Constraint { location: String, detail: String },
    #[error("invalid {field}: {detail}")]
    InvalidInput { field: String, detail: String },
    #[error("stored data in {location} is unreadable: {detail}")]
    Decode { location: String, detail: String },
    #[error(transparent)]
    Key(#[from] crate::audit_chain::KeyError),
    #[error("{location} was opened read-only (for verify, report or export); it cannot be written")]
    OpenedReadOnly { location: String },
    #[error("the store is closed")]
    Closed,
    #[error("{location} is busy ({detail}); another writer held it too long, retry")]
    Busy { location: String, detail: String },
    #[error("{location}: {detail}")]
    Database { location: String, detail: String },
}

impl StoreError {
    /// Whether retrying the same transaction may succeed (lock conflicts, deadlocks).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }
}

/// Maps a database error to a [`StoreError`] naming `location`.
pub(crate) fn db_error(location: &str, err: sqlx::Error) -> StoreError {
    let location = location.to_string();
    match &err {
        sqlx::Error::Database(db) => {
            let detail = db.message().to_string();
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation
                || db.kind() == sqlx::error::ErrorKind::CheckViolation
                || db.kind() == sqlx::error::ErrorKind::NotNullViolation
            {
                return StoreError::Constraint { location, detail };
            }
            if let Ok(n) = code.parse::<i32>() {
                return by_sqlite_code(location, n, detail);
            }
            match code.as_str() {
                "53100" | "53200" => StoreError::Full { location, detail },
                "25006" | "42501" => StoreError::ReadOnly { location, detail },
                "XX001" | "XX002" => StoreError::Corrupt { location, detail },
                "40001" | "40P01" | "55P03" => StoreError::Busy { location, detail },
                _ => StoreError::Database { location, detail },
            }
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Decode {
            location,
            detail: err.to_string(),
        },
        sqlx::Error::PoolClosed => StoreError::Closed,
        _ => StoreError::Database {
            location,
            detail: err.to_string(),
        },
    }
}

/// Maps an error of the SQLite committer's own connection (`rusqlite`) as [`db_error`]
/// maps sqlx's.
pub(crate) fn sqlite_error(location: &str, err: rusqlite::Error) -> StoreError {
    let location = location.to_string();
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let detail = message.unwrap_or_else(|| failure.to_string());
            match failure.extended_code {
                // UNIQUE, PRIMARY KEY, CHECK, NOT NULL (as sqlx classifies them).
                2067 | 1555 | 275 | 1299 => StoreError::Constraint { location, detail },
                n => by_sqlite_code(location, n, detail),
            }
        }
        e @ (rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)) => StoreError::Decode {
            location,
            detail: e.to_string(),
        },
        e => StoreError::Database {
            location,
            detail: e.to_string(),
        },
    }
}

/// SQLite's extended result code `code` (the low byte is the primary code) as a
/// [`StoreError`].
fn by_sqlite_code(location: String, code: i32, detail: String) -> StoreError {
    match code & 0xff {
        5 | 6 => StoreError::Busy { location, detail },
        8 => StoreError::ReadOnly { location, detail },
        11 | 26 => StoreError::Corrupt { location, detail },
        13 => StoreError::Full { location, detail },
        14 => StoreError::ReadOnly {
            location,
            detail: format!("{detail}: cannot open the file or its -wal/-shm files"),
        },
        _ => StoreError::Database { location, detail },
    }
}

/// `postgres://user:***@host:port/db?...` with the password (if any) hidden.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<database url>".to_string();
    };
    let (authority_and_path, _query) = rest.split_once('?').unwrap_or((rest, ""));
    match authority_and_path.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => format!("{scheme}://{authority_and_path}"),
    }
}

/// The password in `url`, to scrub it from messages that might echo it.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/gcx?sslmode=require"),
            "postgres://app:***@db.example:5432/gcx"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("nonsense"), "<database url>");
        assert_eq!(
            url_password("postgres://app:s3cret@db/gcx").as_deref(),
            Some("s3cret")
        );
        assert_eq!(url_password("postgres://app@db/gcx"), None);
    }
}
