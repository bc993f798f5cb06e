//! The statements of scale-out: what the instances of one `gcx serve` service share
//! beyond the store (schema version 3, `migrations/postgres/0003_cluster.sql`).
//!
//! - Membership: each instance upserts its `cluster_members` row with its figures every
//!   heartbeat; a clean stop deletes it.
//! - The dispatch lease: one `cluster_leader` row. [`ClusterDb::acquire`] takes it once
//!   its lease ran out (the database's clock decides), raising the term, which it also
//!   writes to `cluster_term`; [`ClusterDb::renew`] extends it only under the same term
//!   and instance; [`ClusterDb::release`] gives it up at once and notifies `gcx_leader`.
//! - Fencing: the leader's writes, its claims and its takeover read `cluster_term`
//!   `FOR SHARE` in their transaction, and go on only under their own term. Renewals
//!   never touch that row, so a busy leader's writes never hold up its renewal.
//! - The dispatch queue: a group writing accepted triggers with [`WriteBatch::queue`]
//!   inserts them in `dispatch_queue` and notifies `gcx_dispatch` in its transaction; the
//!   leader takes them in order with [`ClusterDb::claim`], under its term.
//! - A group moving triggers to a final state notifies `gcx_finished`, which wakes the
//!   instances holding `?wait=result` requests.
//!
//! [`WriteBatch::queue`]: crate::store::WriteBatch::queue

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgListener, PgPool};
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::PgBackend;
use crate::store::error::db_error;
use crate::store::plan::{Change, NewTrigger};
use crate::store::reads::unfinished_triggers_sql;
use crate::store::rows::{self, TRIGGER_COLUMNS};
use crate::store::{StoreError, TriggerRow};

/// Woken when triggers join the dispatch queue.
pub const CHANNEL_DISPATCH: &str = "gcx_dispatch";
/// Woken when triggers reach a final state.
pub const CHANNEL_FINISHED: &str = "gcx_finished";
/// Woken when a leader gives up its lease.
pub const CHANNEL_LEADER: &str = "gcx_leader";

impl PgBackend {
    /// The current term, share-locked until the transaction ends: a takeover (an UPDATE
    /// of `cluster_term`) waits for this transaction, and this one for it.
    pub(super) async fn lead_term_shared(
        &self,
        conn: &mut PgConnection,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT term FROM cluster_term FOR SHARE")
            .fetch_one(conn)
            .await
            .map_err(self.db())
    }

    /// Puts the group's newly accepted triggers that asked for it in the dispatch queue,
    /// in acceptance order, and wakes the leader.
    pub(super) async fn queue_for_dispatch(
        &self,
        conn: &mut PgConnection,
        rows: &[NewTrigger<'_>],
    ) -> Result<(), StoreError> {
        let mut queued: Vec<(DateTime<Utc>, Uuid)> = rows
            .iter()
            .filter(|t| t.queued)
            .map(|t| (t.accepted_at, t.correlation_id))
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        queued.sort_unstable();
        let ids: Vec<Uuid> = queued.into_iter().map(|(_, id)| id).collect();
        sqlx::query(
            "INSERT INTO dispatch_queue (correlation_id) \
             SELECT id FROM UNNEST($1::uuid[]) WITH ORDINALITY AS q(id, n) ORDER BY n",
        )
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .map_err(self.db())?;
        notify(conn, CHANNEL_DISPATCH).await.map_err(self.db())
    }

    /// Notifies `gcx_finished` when the group finished a trigger.
    pub(super) async fn announce_finished(
        &self,
        conn: &mut PgConnection,
        rows: &[(Uuid, Change<'_>)],
    ) -> Result<(), StoreError> {
        if rows.iter().all(|(_, c)| c.state.is_unfinished()) {
            return Ok(());
        }
        notify(conn, CHANNEL_FINISHED).await.map_err(self.db())
    }

    /// The cluster's statements on this store's pool.
    pub(crate) fn cluster(&self) -> ClusterDb {
        ClusterDb {
            pool: self.pool.clone(),
            location: self.location.clone(),
        }
    }
}

/// Sends `channel` a notification, delivered when the transaction commits.
async fn notify(conn: &mut PgConnection, channel: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(conn)
        .await
        .map(drop)
}

/// A member's row written or refreshed from `$1..$7` ([`MemberBeat`]'s fields in order).
const UPSERT_MEMBER: &str = "INSERT INTO cluster_members (instance, address, started_at, \
    heartbeat_at, in_flight, pending, engine_limit, stream_connected) \
    VALUES ($1, $2, $3, now(), $4, $5, $6, $7) \
    ON CONFLICT (instance) DO UPDATE SET address = EXCLUDED.address, \
    heartbeat_at = now(), in_flight = EXCLUDED.in_flight, pending = EXCLUDED.pending, \
    engine_limit = EXCLUDED.engine_limit, stream_connected = EXCLUDED.stream_connected";

/// [`UPSERT_MEMBER`] and the renewal of the lease held under `$8` for `$9` seconds, in one
/// statement answering how many leases it renewed (built once).
static BEAT_AND_RENEW_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH beat AS ({UPSERT_MEMBER}), \
         renewed AS (UPDATE cluster_leader SET lease_until = now() + make_interval(secs => $9) \
         WHERE instance = $1 AND term = $8 AND lease_until > now() RETURNING 1) \
         SELECT count(*) FROM renewed"
    )
});

/// What one instance tells the others each heartbeat.
#[derive(Debug, Clone)]
pub struct MemberBeat {
    pub instance: String,
    /// Where its API answers (`http://host:port`).
    pub address: String,
    pub started_at: DateTime<Utc>,
    /// Its dispatcher's actions between send and result (0 unless it leads).
    pub in_flight: u32,
    /// Its dispatcher's admitted, unfinished triggers.
    pub pending: u64,
    /// The engine limit its dispatcher holds (0 unless it leads).
    pub limit: u32,
    pub stream_connected: bool,
}

/// A member as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub instance: String,
    pub address: String,
    pub started_at: DateTime<Utc>,
    /// Since its last heartbeat, by the database's clock.
    pub heartbeat_age: Duration,
    pub in_flight: u32,
    pub pending: u64,
    pub limit: u32,
    pub stream_connected: bool,
}

/// The dispatch lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Who holds or last held it (`None` after a clean release).
    pub instance: Option<String>,
    pub term: i64,
    /// Left of it by the database's clock; `None` once it ran out.
    pub remaining: Option<Duration>,
}

/// The cluster's statements (membership, lease, dispatch queue, notifications) on the
/// store's pool. Cheap to clone.
#[derive(Clone)]
pub struct ClusterDb {
    pool: PgPool,
    location: String,
}

impl std::fmt::Debug for ClusterDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDb")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl ClusterDb {
    fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| db_error(&self.location, e)
    }

    /// Registers or refreshes `beat.instance`'s row.
    pub async fn heartbeat(&self, beat: &MemberBeat) -> Result<(), StoreError> {
        sqlx::query(UPSERT_MEMBER)
            .bind(&beat.instance)
            .bind(&beat.address)
            .bind(beat.started_at)
            .bind(i32::try_from(beat.in_flight).unwrap_or(i32::MAX))
            .bind(i32::try_from(beat.pending).unwrap_or(i32::MAX))
            .bind(i32::try_from(beat.limit).unwrap_or(i32::MAX))
            .bind(beat.stream_connected)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }

    /// Removes `instance`'s row (a clean stop).
    pub async fn leave(&self, instance: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cluster_members WHERE instance = $1")
            .bind(instance)
            .execute(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(())
    }

    /// Removes the rows of members silent for longer than `silent`.
    pub async fn forget_silent(&self, silent: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM cluster_members WHERE heartbeat_at < now() - make_interval(secs => $1)",
        )
        .bind(silent.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(done.rows_affected())
    }

    /// Every member row, oldest first, and the lease, in one statement.
    pub async fn view(&self) -> Result<(Vec<MemberRow>, LeaseRow), StoreError> {
        let rows = sqlx::query(
            "SELECT l.instance, l.term, CASE WHEN l.lease_until > now() \
             THEN EXTRACT(EPOCH FROM (l.lease_until - now()))::float8 END, \
             m.instance, m.address, m.started_at, \
             EXTRACT(EPOCH FROM (now() - m.heartbeat_at))::float8, m.in_flight, m.pending, \
             m.engine_limit, m.stream_connected \
             FROM cluster_leader l LEFT JOIN cluster_members m ON TRUE \
             ORDER BY m.started_at, m.instance",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        let mut lease = None;
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            let get_i32 =
                |i: usize| -> Result<i32, StoreError> { row.try_get(i).map_err(self.db()) };
            if lease.is_none() {
                let remaining: Option<f64> = row.try_get(2).map_err(self.db())?;
                lease = Some(LeaseRow {
                    instance: row.try_get(0).map_err(self.db())?,
                    term: row.try_get(1).map_err(self.db())?,
                    remaining: remaining.map(|s| Duration::from_secs_f64(s.max(0.0))),
                });
            }
            let Some(instance) = row.try_get::<Option<String>, _>(3).map_err(self.db())? else {
                continue;
            };
            let age: f64 = row.try_get(6).map_err(self.db())?;
            members.push(MemberRow {
                instance,
                address: row.try_get(4).map_err(self.db())?,
                started_at: row.try_get(5).map_err(self.db())?,
                heartbeat_age: Duration::from_secs_f64(age.max(0.0)),
                in_flight: u32::try_from(get_i32(7)?).unwrap_or(0),
                pending: u64::try_from(get_i32(8)?).unwrap_or(0),
                limit: u32::try_from(get_i32(9)?).unwrap_or(0),
                stream_connected: row.try_get(10).map_err(self.db())?,
            });
        }
        match lease {
            Some(lease) => Ok((members, lease)),
            None => self.lease().await.map(|lease| (members, lease)),
        }
    }

    /// The lease as it stands.
    pub async fn lease(&self) -> Result<LeaseRow, StoreError> {
        let row = sqlx::query(
            "SELECT instance, term, \
             CASE WHEN lease_until > now() \
             THEN EXTRACT(EPOCH FROM (lease_until - now()))::float8 END FROM cluster_leader",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(self.db())?;
        let remaining: Option<f64> = row.try_get(2).map_err(self.db())?;
        Ok(LeaseRow {
            instance: row.try_get(0).map_err(self.db())?,
            term: row.try_get(1).map_err(self.db())?,
            remaining: remaining.map(|s| Duration::from_secs_f64(s.max(0.0))),
        })
    }

    /// Takes the lease for `instance` for `lease` if it ran out: `Some(new term)`, or
    /// `None` while another holds it. The new term is written to `cluster_term` in the
    /// same transaction, once every write fenced to the old one has committed.
    pub async fn acquire(
        &self,
        instance: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let term: Option<i64> = sqlx::query_scalar(
            "UPDATE cluster_leader SET instance = $1, term = term + 1, \
             lease_until = now() + make_interval(secs => $2) \
             WHERE lease_until <= now() RETURNING term",
        )
        .bind(instance)
        .bind(lease.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.db())?;
        let Some(term) = term else {
            return Ok(None);
        };
        sqlx::query("UPDATE cluster_term SET term = $1")
            .bind(term)
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        Ok(Some(term))
    }

    /// [`ClusterDb::heartbeat`] and [`ClusterDb::renew`] of the leader in one statement.
    pub async fn heartbeat_and_renew(
        &self,
        beat: &MemberBeat,
        term: i64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let renewed: i64 = sqlx::query_scalar(&BEAT_AND_RENEW_SQL)
            .bind(&beat.instance)
            .bind(&beat.address)
            .bind(beat.started_at)
            .bind(i32::try_from(beat.in_flight).unwrap_or(i32::MAX))
            .bind(i32::try_from(beat.pending).unwrap_or(i32::MAX))
            .bind(i32::try_from(beat.limit).unwrap_or(i32::MAX))
            .bind(beat.stream_connected)
            .bind(term)
            .bind(lease.as_secs_f64())
            .fetch_one(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(renewed == 1)
    }

    /// Extends the lease `instance` holds under `term`; `false` when it no longer does.
    pub async fn renew(
        &self,
        instance: &str,
        term: i64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE cluster_leader SET lease_until = now() + make_interval(secs => $3) \
             WHERE instance = $1 AND term = $2 AND lease_until > now()",
        )
        .bind(instance)
        .bind(term)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(self.db())?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up the lease `instance` holds under `term` at once, and tells the others.
    pub async fn release(&self, instance: &str, term: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        sqlx::query(
            "UPDATE cluster_leader SET instance = NULL, lease_until = '-infinity' \
             WHERE instance = $1 AND term = $2",
        )
        .bind(instance)
        .bind(term)
        .execute(&mut *tx)
        .await
        .map_err(self.db())?;
        notify(&mut tx, CHANNEL_LEADER).await.map_err(self.db())?;
        tx.commit().await.map_err(self.db())
    }

    /// What a new leader under `term` resumes: every unfinished trigger (`sent` first,
    /// then by acceptance), with the dispatch queue emptied in the same snapshot, so
    /// each trigger is either in the answer or still queued, never both and never
    /// neither. Refused with [`StoreError::Fenced`] if `term` no longer leads.
    pub async fn take_over(&self, term: i64) -> Result<Vec<TriggerRow>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(self.db())?;
        let mut tx = conn.begin().await.map_err(self.db())?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        self.check_term(&mut tx, term).await?;
        sqlx::query("DELETE FROM dispatch_queue")
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        let rows = sqlx::query(&unfinished_triggers_sql())
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
        let triggers = rows::triggers(&rows, &self.location)?;
        tx.commit().await.map_err(self.db())?;
        Ok(triggers)
    }

    /// Takes up to `max` triggers from the front of the dispatch queue for the leader
    /// under `term`, in queue order (those no longer unfinished are dropped). Refused
    /// with [`StoreError::Fenced`] if `term` no longer leads, taking nothing.
    pub async fn claim(&self, term: i64, max: usize) -> Result<Vec<TriggerRow>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        self.check_term(&mut tx, term).await?;
        let rows = sqlx::query(&CLAIM_SQL)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db())?;
        let triggers = rows::triggers(&rows, &self.location)?;
        tx.commit().await.map_err(self.db())?;
        Ok(triggers)
    }

    /// Triggers waiting in the dispatch queue.
    pub async fn queued(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dispatch_queue")
            .fetch_one(&self.pool)
            .await
            .map_err(self.db())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Which of `ids` are stored in a final state.
    pub async fn finished_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT correlation_id FROM triggers WHERE correlation_id = ANY($1) \
             AND state IN ('completed', 'failed', 'rejected')",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())
    }

    /// A connection listening on the three channels (its own, outside the pool's
    /// accounting once taken; it reconnects by itself).
    pub async fn listener(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(self.db())?;
        listener
            .listen_all([CHANNEL_DISPATCH, CHANNEL_FINISHED, CHANNEL_LEADER])
            .await
            .map_err(self.db())?;
        Ok(listener)
    }

    /// Refuses unless `term` is the current one; the row stays share-locked until the
    /// transaction ends.
    async fn check_term(&self, conn: &mut PgConnection, term: i64) -> Result<(), StoreError> {
        let current: i64 = sqlx::query_scalar("SELECT term FROM cluster_term FOR SHARE")
            .fetch_one(conn)
            .await
            .map_err(self.db())?;
        if current == term {
            Ok(())
        } else {
            Err(StoreError::Fenced { term, current })
        }
    }
}

/// Takes the queue's first `$1` rows, answering the triggers still unfinished, in queue
/// order (built once: the leader claims many times a second under load).
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH taken AS (DELETE FROM dispatch_queue WHERE seq IN \
         (SELECT seq FROM dispatch_queue ORDER BY seq LIMIT $1) \
         RETURNING seq, correlation_id) \
         SELECT {} FROM taken JOIN triggers t USING (correlation_id) \
         WHERE t.state IN ('accepted', 'sent') ORDER BY taken.seq",
        qualified_trigger_columns()
    )
});

/// [`TRIGGER_COLUMNS`] qualified with the `t.` alias (the queue shares `correlation_id`).
fn qualified_trigger_columns() -> String {
    TRIGGER_COLUMNS
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claimed_columns_are_the_trigger_columns_of_the_alias() {
        let q = qualified_trigger_columns();
        assert!(
            q.starts_with("t.correlation_id, t.action_type, t.payload"),
            "{q}"
        );
        assert_eq!(q.matches("t.").count(), TRIGGER_COLUMNS.split(',').count());
    }
}
