//! What opening the SQLite file checks and prepares before it is used: the file made
//! private before SQLite writes a byte, a file that is no SQLite database refused by its
//! header, and the gcx schema version read on a read-only connection, refusing foreign
//! and newer databases. Nothing here changes a file that is not a gcx store.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use super::BUSY_TIMEOUT;
use crate::store::StoreError;
use crate::store::error::db_error;
use crate::store::migrations::{Scripts, check_meta, foreign};

/// Creates the data folder and makes the database file and its `-wal` and `-shm` private
/// (mode 0600), creating the database file empty when it is missing.
pub(super) fn make_private(data_dir: &Path, path: &Path) -> Result<(), StoreError> {
    crate::private_files::create_dir(data_dir).map_err(|source| StoreError::CreateDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let private = |file: &Path, result: std::io::Result<()>| {
        result.map_err(|source| StoreError::Private {
            path: file.display().to_string(),
            source,
        })
    };
    private(path, crate::private_files::ensure_file(path))?;
    for suffix in ["-wal", "-shm"] {
        let side = sidecar(path, suffix);
        private(&side, crate::private_files::tighten(&side))?;
    }
    Ok(())
}

/// `gcx.db-wal` and the like beside `path`.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Refuses a file that exists but is not an SQLite database, before SQLite touches it.
pub(super) fn sniff_header(path: &Path, location: &str) -> Result<(), StoreError> {
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
pub(super) async fn inspect(path: &Path, location: &str) -> Result<Option<i64>, StoreError> {
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

/// Errors while opening: a file that is not a database reads as "not a gcx store".
pub(super) fn open_error(location: &str, err: sqlx::Error) -> StoreError {
    match db_error(location, err) {
        StoreError::Corrupt { location, detail } if detail.contains("not a database") => {
            StoreError::NotAStore { location, detail }
        }
        other => other,
    }
}
