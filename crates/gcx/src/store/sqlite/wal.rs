//! SQLite WAL checkpoints off the committer's path. Left to itself SQLite checkpoints
//! inside the COMMIT that grows the WAL past `wal_autocheckpoint` pages, so the one
//! writer copies pages into the database file and syncs it while every caller waits.
//! Here a thread with its own connection runs a PASSIVE checkpoint after commits, at most
//! once per [`GAP`], while the writer goes on. PASSIVE never waits for readers or the
//! writer, and SQLite starts the WAL over by itself once a checkpoint has copied all of it.
//!
//! The writer keeps a backstop: its own auto-checkpoint at [`BACKSTOP_PAGES`], far above
//! what this thread lets the WAL reach, so a WAL cannot grow without bound if this thread
//! falls behind or fails.
//!
//! Durability does not depend on checkpoints: a commit is on disk when it is in the WAL
//! (`synchronous = FULL`), and a checkpoint syncs the WAL before it copies it.
//!
//! Dropping the [`Checkpointer`] stops the thread and waits for it, so its connection is
//! closed when the drop returns (a store that says it is closed holds no file open).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// The least time between two checkpoints. A page written several times meanwhile (the
/// indexes' hot pages, the audit table's last page) is copied once, so a longer gap costs
/// less system time per commit; a busy writer appends up to a few tens of MiB in it,
/// below the backstop.
pub(crate) const GAP: Duration = Duration::from_millis(100);

/// The writer's own auto-checkpoint, in pages: 64 MiB at the 4 KiB page size.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// The checkpoint thread of one SQLite store.
pub(crate) struct Checkpointer {
    /// Wakes the thread; dropping it stops the thread.
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Checkpoints run: one per wake, at most one per [`GAP`], none while nothing commits
    /// (the tests read it).
    #[cfg_attr(not(test), allow(dead_code))]
    runs: Arc<AtomicU64>,
}

impl Checkpointer {
    /// Opens the thread's connection to `path` (a database already in WAL mode) and
    /// starts the thread.
    pub(crate) fn start(path: &Path) -> std::io::Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(std::io::Error::other)?;
        let (wake, woken) = mpsc::sync_channel(1);
        let runs = Arc::new(AtomicU64::new(0));
        let counted = runs.clone();
        let thread = std::thread::Builder::new()
            .name("gcx-checkpoint".into())
            .spawn(move || run(&conn, &woken, &counted))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            runs,
        })
    }

    /// Checkpoints run so far.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// A commit grew the WAL: checkpoint soon. Never waits.
    pub(crate) fn committed(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread after any checkpoint it is running; its connection is closed
    /// when this returns.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, runs: &AtomicU64) {
    let mut warned = false;
    // Until the sender is dropped.
    if woken.recv().is_err() {
        return;
    }
    loop {
        // A failure (disk full, I/O error) is not the commits' failure: they are in the
        // WAL already. It is logged once; the writer's backstop checkpoint still applies.
        let done: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        runs.fetch_add(1, Ordering::Relaxed);
        match done {
            Ok(_) => warned = false,
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "WAL checkpoint failed; the writer's own checkpoint takes over");
            }
            Err(_) => {}
        }
        // Wait out the gap; a commit meanwhile means another checkpoint right after it.
        let until = Instant::now() + GAP;
        let mut again = false;
        loop {
            match woken.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
                Ok(()) => again = true,
            }
        }
        if !again && woken.recv().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in WAL mode with one table `t`, and its writer after running `setup`.
    fn wal_db(setup: &str) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; {setup} CREATE TABLE t (x BLOB);"
            ))
            .unwrap();
        (dir, path, writer)
    }

    #[test]
    fn commits_are_checkpointed_by_the_thread_not_the_writer() {
        let (_dir, path, writer) = wal_db("PRAGMA wal_autocheckpoint = 0;");
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..20 {
            writer
                .execute("INSERT INTO t VALUES (randomblob(4000))", [])
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
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            size() >= 20 * 4000,
            "the thread copied the WAL: {} bytes",
            size()
        );
        drop(checkpointer);
    }

    #[test]
    fn the_thread_sleeps_until_a_commit_and_checkpoints_once_per_gap() {
        let (_dir, path, _writer) = wal_db("");
        let checkpointer = Checkpointer::start(&path).unwrap();
        std::thread::sleep(3 * GAP);
        assert_eq!(checkpointer.runs(), 0, "no commit, no checkpoint");
        checkpointer.committed();
        for _ in 0..500 {
            if checkpointer.runs() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(3 * GAP);
        assert_eq!(checkpointer.runs(), 1, "one commit, one checkpoint");
        // Commits within one gap: the first checkpoints, the rest make one more after it.
        for _ in 0..10 {
            checkpointer.committed();
        }
        std::thread::sleep(4 * GAP);
        assert!(
            (2..=3).contains(&checkpointer.runs()),
            "{} checkpoints",
            checkpointer.runs()
        );
    }

    /// Descriptors of this process open on `path` (Linux).
    fn open_on(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    #[test]
    fn dropping_it_closes_its_connection() {
        let (_dir, path, writer) = wal_db("");
        // SQLite keeps a closed connection's descriptor open while another connection
        // of the process holds the file (POSIX locks are per process), so the
        // checkpointer's own is seen alone.
        drop(writer);
        assert_eq!(open_on(&path), 0);
        let checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.committed();
        assert_eq!(open_on(&path), 1, "its connection has the file open");
        drop(checkpointer);
        assert_eq!(open_on(&path), 0, "closed when the drop returned");
    }
}
