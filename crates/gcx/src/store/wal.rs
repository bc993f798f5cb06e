//! SQLite WAL checkpoints off the committer's path. Left to itself SQLite checkpoints
//! inside the COMMIT that grows the WAL past `wal_autocheckpoint` pages, so the one
//! writer copies pages into the database file and syncs it while every caller waits.
//! Here a task with its own connection (its own sqlx worker thread) runs a PASSIVE
//! checkpoint after commits, at most once per [`GAP`], while the writer goes on. PASSIVE
//! never waits for readers or the writer, and SQLite resets the WAL by itself once a
//! checkpoint has copied all of it.
//!
//! SQLite starts the WAL over only at a write that finds all of it copied. Under a steady
//! stream of commits this task's checkpoints rarely finish between two commits, so the
//! writer keeps its own auto-checkpoint at [`BACKSTOP_PAGES`]: when the WAL gets there,
//! the writer copies what this task has not (the last few frames) and the WAL starts
//! over. The WAL file therefore grows to about 64 MiB under load and is reused from then
//! on (seen in the `dispatch` benchmark: 57-73 MB); the backstop also bounds it if this
//! task falls behind or fails.
//!
//! Durability does not depend on checkpoints: a commit is on disk when it is in the WAL
//! (`synchronous = FULL`), and a checkpoint syncs the WAL before it copies it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The least time between two checkpoints: a busy writer appends a few MiB meanwhile,
/// about what SQLite's default auto-checkpoint (1000 pages) lets the WAL hold.
pub(crate) const GAP: Duration = Duration::from_millis(25);

/// The writer's own auto-checkpoint, in pages: 64 MiB at the 4 KiB page size. The WAL
/// file's size under load.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// The checkpoint task of one SQLite store.
pub(crate) struct Checkpointer {
    committed: Arc<Notify>,
    stop: CancellationToken,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the task's connection to `path` (a database already in WAL mode) and starts
    /// it on the current runtime.
    pub(crate) async fn start(
        path: &Path,
        options: SqliteConnectOptions,
    ) -> Result<Checkpointer, sqlx::Error> {
        let conn = SqliteConnection::connect_with(
            &options.filename(path).synchronous(SqliteSynchronous::Full),
        )
        .await?;
        let committed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(conn, committed.clone(), stop.clone()));
        Ok(Checkpointer {
            committed,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// A commit grew the WAL: checkpoint soon. Never waits.
    pub(crate) fn committed(&self) {
        self.committed.notify_one();
    }

    /// Stops the task after any checkpoint it is running and closes its connection.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

async fn run(mut conn: SqliteConnection, committed: Arc<Notify>, stop: CancellationToken) {
    let mut warned = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = committed.notified() => {}
        }
        // A failure (disk full, I/O error) is not the commits' failure: they are in the
        // WAL already. It is logged once; the writer's backstop checkpoint still applies.
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            Ok(_) => warned = false,
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "WAL checkpoint failed; the writer's own checkpoint takes over");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(GAP) => {}
        }
    }
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_checkpointed_by_the_task_not_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let mut writer = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x BLOB)")
            .execute(&mut writer)
            .await
            .unwrap();
        let checkpointer = Checkpointer::start(&path, SqliteConnectOptions::new())
            .await
            .unwrap();
        for _ in 0..20 {
            sqlx::query("INSERT INTO t VALUES (randomblob(4000))")
                .execute(&mut writer)
                .await
                .unwrap();
        }
        // The writer never checkpoints (auto-checkpoint off): the rows are in the WAL
        // only, and the database file holds the empty table.
        let size = || std::fs::metadata(&path).unwrap().len();
        assert!(
            size() < 20 * 4000,
            "nothing checkpointed yet: {} bytes",
            size()
        );
        checkpointer.committed();
        for _ in 0..500 {
            if size() >= 20 * 4000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            size() >= 20 * 4000,
            "the task copied the WAL: {} bytes",
            size()
        );
        checkpointer.stop().await;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut writer)
            .await
            .unwrap();
        assert_eq!(count, 20);
    }
}
