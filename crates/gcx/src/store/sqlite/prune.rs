//! One chunk of [`crate::store::Store::prune`] on the SQLite committer's connection.
//!
//! SQLite needs no index for this: triggers and outbox rows go in by time, so each
//! table's key order (rowid, outbox id) is nearly its time order. A chunk finds by
//! bisection over the key (each probe one B-tree seek) where the rows too young by their
//! start begin, and deletes the next eligible rows below that, after the cursor where the
//! previous chunk of the same prune stopped: a prune reads each table's old part once,
//! whatever it must skip (unfinished triggers, pending webhooks, dead letters), and never
//! the young part. The explicit time and state conditions decide what goes; the key
//! order only bounds the search, so a row out of order is at worst left for the next
//! prune, never deleted early.

use rusqlite::{Connection, params};

use crate::store::{PruneCursor, Pruned};

/// A table's statements: the key range, the first row at or after a key, and the delete
/// of eligible rows after `?1` and below `?2`, older than `?3`, at most `?4`.
struct Table {
    range: &'static str,
    probe: &'static str,
    delete: &'static str,
}

const TRIGGERS: Table = Table {
    range: "SELECT MIN(rowid), MAX(rowid) FROM triggers",
    probe: "SELECT rowid, accepted_at FROM triggers WHERE rowid >= ?1 ORDER BY rowid LIMIT 1",
    delete: "DELETE FROM triggers WHERE rowid IN ( \
               SELECT rowid FROM triggers WHERE rowid > ?1 AND rowid < ?2 \
                 AND state IN ('completed', 'failed', 'rejected') AND updated_at < ?3 \
               ORDER BY rowid LIMIT ?4) \
             RETURNING rowid",
};

const WEBHOOKS: Table = Table {
    range: "SELECT MIN(id), MAX(id) FROM outbox",
    probe: "SELECT id, created_at FROM outbox WHERE id >= ?1 ORDER BY id LIMIT 1",
    delete: "DELETE FROM outbox WHERE id IN ( \
               SELECT id FROM outbox WHERE id > ?1 AND id < ?2 \
                 AND status = 'delivered' AND created_at < ?3 \
               ORDER BY id LIMIT ?4) \
             RETURNING id",
};

/// Deletes at most `limit` finished triggers and `limit` delivered webhooks older than
/// `cutoff` (µs) after `after`; returns how many of each, and where the next chunk
/// starts.
pub(crate) fn chunk(
    conn: &Connection,
    cutoff: i64,
    limit: u32,
    after: PruneCursor,
) -> rusqlite::Result<(Pruned, PruneCursor)> {
    let (triggers, triggers_next) = table_chunk(conn, &TRIGGERS, cutoff, limit, after.triggers)?;
    let (webhooks, webhooks_next) = table_chunk(conn, &WEBHOOKS, cutoff, limit, after.webhooks)?;
    Ok((
        Pruned { triggers, webhooks },
        PruneCursor {
            triggers: triggers_next,
            webhooks: webhooks_next,
        },
    ))
}

/// One table's part of a chunk: (rows deleted, the next cursor).
fn table_chunk(
    conn: &Connection,
    table: &Table,
    cutoff: i64,
    limit: u32,
    after: i64,
) -> rusqlite::Result<(u64, i64)> {
    let young = young_from(conn, table, cutoff)?;
    let mut deleted = 0u64;
    let mut last = after;
    let mut delete = conn.prepare_cached(table.delete)?;
    let mut rows = delete.query(params![after, young, cutoff, limit])?;
    while let Some(row) = rows.next()? {
        deleted += 1;
        last = last.max(row.get(0)?);
    }
    // A short chunk looked at every key below `young`: the next one starts there.
    let next = if deleted < u64::from(limit) {
        after.max(young.saturating_sub(1))
    } else {
        last
    };
    Ok((deleted, next))
}

/// The first key from which the rows are at or after `cutoff` by their start, found by
/// bisection (past the last key when every row is older; the smallest key when the table
/// is empty, so nothing is below it).
fn young_from(conn: &Connection, table: &Table, cutoff: i64) -> rusqlite::Result<i64> {
    let (min, max): (Option<i64>, Option<i64>) = conn
        .prepare_cached(table.range)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(max)) = (min, max) else {
        return Ok(i64::MIN);
    };
    let mut hi = max.saturating_add(1);
    let mut probe = conn.prepare_cached(table.probe)?;
    // Every key below `lo` is old; the first row at or after `hi` is young (or absent).
    while lo < hi {
        // The midpoint in i128, as keys may span all of i64.
        let mid = ((i128::from(lo) + i128::from(hi)) / 2) as i64;
        // `mid < hi <= max + 1`, so the row `max` is at or after `mid`.
        let (key, started): (i64, i64) = probe.query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if started >= cutoff {
            hi = mid;
        } else {
            lo = key.saturating_add(1);
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(times: &[i64]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, created_at INTEGER, status TEXT);",
        )
        .unwrap();
        for (i, t) in times.iter().enumerate() {
            conn.execute(
                "INSERT INTO outbox (id, created_at, status) VALUES (?1, ?2, 'delivered')",
                params![i as i64 + 1, t],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn bisection_finds_where_the_young_rows_begin() {
        let conn = table(&[10, 20, 30, 40, 50]);
        assert_eq!(young_from(&conn, &WEBHOOKS, 35).unwrap(), 4);
        assert_eq!(young_from(&conn, &WEBHOOKS, 5).unwrap(), 1);
        assert_eq!(young_from(&conn, &WEBHOOKS, 99).unwrap(), 6);
        assert_eq!(young_from(&table(&[]), &WEBHOOKS, 35).unwrap(), i64::MIN);
    }

    #[test]
    fn chunks_walk_the_old_rows_once_and_leave_the_young() {
        let conn = table(&[1, 2, 3, 4, 5, 6, 7, 100, 101]);
        conn.execute("UPDATE outbox SET status = 'pending' WHERE id = 2", [])
            .unwrap();
        let (n, next) = table_chunk(&conn, &WEBHOOKS, 50, 3, i64::MIN).unwrap();
        assert_eq!((n, next), (3, 4));
        let (n, next) = table_chunk(&conn, &WEBHOOKS, 50, 3, next).unwrap();
        assert_eq!((n, next), (3, 7));
        let (n, next) = table_chunk(&conn, &WEBHOOKS, 50, 3, next).unwrap();
        assert_eq!((n, next), (0, 7));
        let left: Vec<i64> = conn
            .prepare("SELECT id FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, vec![2, 8, 9]);
    }
}
