//! The scale-out backend: PostgreSQL at `store.database_url`, in the connection's current
//! schema (set `search_path` through the URL's `options` to share a database).
//!
//! Several gcx instances may share one database:
//! - the audit chain stays linear because every appending transaction locks the one row of
//!   `audit_head` (`SELECT … FOR UPDATE`) before it reads the head;
//! - the rows `due_outbox` returns are leased to the calling instance with
//!   `FOR UPDATE SKIP LOCKED` plus `claimed_by`/`claimed_until`, so two instances never
//!   deliver the same row at once, and a dead instance's rows come back after the lease,
//!   or at once to a gcx restarted on the dead one's data folder (`claimant`); one
//!   instance at a time fetches an endpoint's due rows (a transaction advisory lock),
//!   since each fetch walks past the rows the others hold;
//! - accepting the same correlationId twice at once fails the second transaction on the
//!   primary key; the committer retries that write alone and it then sees the first;
//! - a batch fenced to a term ([`crate::store::WriteBatch::fence`]) reads `cluster_term`
//!   `FOR SHARE` in its transaction and is refused unless that term is current, so a
//!   takeover and a deposed leader's write are serialized and the late write fails.
//!
//! Bulk writes bind one array per column ([`column`]) and `UNNEST` them: one statement,
//! whatever the number of rows.
//!
//! # Layout
//! - `open`: the schema checks before migrations or reads.
//! - this module: the pool, a group's transaction, and how reads bind and decode.
//! - `triggers`, `outbox` (with the outbox reads that lease), `audit`, `prune`: the
//!   statements of each table's writes.
//! - `claimant`: the name outbox leases are taken under.
//! - `cluster`: what the instances of one service share beyond the store: membership,
//!   the dispatch lease and its term, the dispatch queue, and the notifications that wake
//!   them (`ClusterDb`).

mod audit;
mod claimant;
pub(crate) mod cluster;
mod open;
mod outbox;
mod prune;
mod triggers;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::store::committer::{Done, GroupContext, Work};
use crate::store::error::{db_error, redact_url, url_password};
use crate::store::migrations::Scripts;
use crate::store::plan::{self, UpdateStep, now_micros};
use crate::store::reads::{Arg, BindArg, Reads};
use crate::store::rows::Columns;
use crate::store::{StoreError, convert};

pub(crate) use claimant::Claimant;

pub(crate) struct PgBackend {
    pool: PgPool,
    /// The shared reads, on the same pool.
    pub(super) read: Reads<Postgres>,
    /// The URL without password, as shown in messages.
    location: String,
    /// The name this store handle leases outbox rows under (see [`Claimant`]).
    claimant: Claimant,
    read_only: bool,
}

impl PgBackend {
    /// Opens the database; `claimant` names this handle's outbox leases.
    pub(crate) async fn open(
        url: &str,
        read_only: bool,
        claimant: Claimant,
    ) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let scrub = |text: String| match url_password(url) {
            Some(p) if p.len() >= 3 => text.replace(&p, "***"),
            _ => text,
        };
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(StoreError::BadDatabaseUrl {
                reason: match scheme {
                    Some(s) => format!("the scheme is {s:?}, not \"postgres\""),
                    None => "it has no scheme (\"postgres://\")".to_string(),
                },
            });
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadDatabaseUrl {
                reason: scrub(e.to_string()),
            })?
            .application_name("gcx");
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect {
                target: location.clone(),
                detail: scrub(e.to_string()),
            })?;
        let version = open::inspect(&pool, &location).await?;
        if read_only {
            Scripts::Postgres.check_readable(&location, version)?;
        } else {
            Scripts::Postgres.run(&location, &pool).await?;
        }
        Ok(PgBackend {
            read: Reads::new(pool.clone(), &location),
            pool,
            location,
            claimant,
            read_only,
        })
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
        self.claimant.release();
    }

    fn db(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| db_error(&self.location, e)
    }

    /// Writes one group in one transaction. `Err` means nothing was written; `Ok` holds
    /// each item's own answer.
    pub(crate) async fn write_group(
        &self,
        items: &[&Work],
        context: &GroupContext,
    ) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
        if self.read_only {
            return Err(StoreError::OpenedReadOnly {
                location: self.location.clone(),
            });
        }
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        let fenced = items
            .iter()
            .any(|w| matches!(w, Work::Batch(b) if b.fence.is_some()));
        let lead = if fenced {
            Some(self.lead_term_shared(&mut tx).await?)
        } else {
            None
        };
        let ids = plan::trigger_ids(items);
        let stored = self.load_states(&mut tx, &ids).await?;
        let mut plan = plan::plan_under(items, stored, lead);
        let now = now_micros();
        self.insert_triggers(&mut tx, &plan.new_triggers).await?;
        self.queue_for_dispatch(&mut tx, &plan.new_triggers).await?;
        self.update_triggers(&mut tx, &plan.changed_triggers)
            .await?;
        self.announce_finished(&mut tx, &plan.changed_triggers)
            .await?;
        self.insert_outbox(&mut tx, &plan.outbox, now).await?;
        self.append_audit(&mut tx, std::mem::take(&mut plan.audit), context, now)
            .await?;
        for step in plan::update_steps(items, &plan.updates) {
            match step {
                UpdateStep::One(index) => {
                    let result = self
                        .apply_update(&mut tx, items[index], context, now)
                        .await?;
                    plan.results[index] = Some(result);
                }
                UpdateStep::Delivered(rows) => {
                    for (index, result) in self.mark_delivered(&mut tx, &rows).await? {
                        plan.results[index] = Some(result);
                    }
                }
            }
        }
        tx.commit().await.map_err(self.db())?;
        Ok(plan
            .results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
            .collect())
    }

    /// Applies one outbox/endpoint/checkpoint/prune write. The outer `Err` is a database
    /// failure (the group fails); the inner one is this item's own answer.
    async fn apply_update(
        &self,
        conn: &mut PgConnection,
        work: &Work,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        match work {
            Work::Retry(retry) => self.retry(conn, retry).await,
            Work::Dead(dead) => self.dead(conn, dead).await,
            Work::Replay(filter) => self.replay(conn, filter, now).await,
            Work::Endpoint(change) => self.set_endpoint(conn, change, now).await,
            Work::Prune(chunk) => self.prune(conn, chunk).await,
            Work::Checkpoint => self.checkpoint(conn, context, now).await,
            // Never here: the plan answers batches, and `plan::update_steps` hands every
            // delivered outcome to `mark_delivered`.
            Work::Batch(_) | Work::Delivered { .. } => Ok(Ok(Done::Unit)),
        }
    }
}

/// PostgreSQL binds every kind as its own type.
impl BindArg for Postgres {
    fn bind_arg<'q>(
        query: Query<'q, Postgres, PgArguments>,
        arg: Arg<'q>,
    ) -> Query<'q, Postgres, PgArguments> {
        match arg {
            Arg::Text(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
            Arg::Time(v) => query.bind(v),
            Arg::Uuid(v) => query.bind(v),
        }
    }
}

/// PostgreSQL keeps UUIDs as `uuid`, timestamps as `timestamptz` and status codes as
/// `INTEGER`.
impl Columns for PgRow {
    fn time(&self, i: usize, location: &str, _what: &str) -> Result<DateTime<Utc>, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn uuid(&self, i: usize, location: &str, _what: &str) -> Result<Uuid, StoreError> {
        self.try_get(i).map_err(|e| db_error(location, e))
    }

    fn status_code(&self, i: usize, location: &str, what: &str) -> Result<Option<u16>, StoreError> {
        let code: Option<i32> = self.try_get(i).map_err(|e| db_error(location, e))?;
        convert::u16_of(location, what, code.map(i64::from))
    }
}

/// One field of every row, as the array an `UNNEST` column binds.
fn column<'a, T, U>(rows: &'a [T], field: impl FnMut(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}
