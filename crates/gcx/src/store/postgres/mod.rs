//! The scale-out backend: PostgreSQL at `store.database_url`, in the connection's current
//! schema (set `search_path` through the URL's `options` to share a database).
//!
//! Several gcx instances may share one database:
//! - the audit chain stays linear because every appending transaction locks the one row of
//!   `audit_head` (`SELECT … FOR UPDATE`) before it reads the head;
//! - the rows `due_outbox` returns are leased to the calling instance with
//!   `FOR UPDATE SKIP LOCKED` plus `claimed_by`/`claimed_until`, so two instances never
//!   deliver the same row at once, and a dead instance's rows come back after the lease,
//!   or at once to a gcx restarted on the dead one's data folder (`claimant.rs`);
//! - accepting the same correlationId twice at once fails the second transaction on the
//!   primary key; the committer retries that write alone and it then sees the first.
//!
//! Bulk writes bind one array per column and `UNNEST` them: one statement, whatever the
//! number of rows.

mod claimant;

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::audit_chain::hash::{self, ChainHead};
use crate::audit_chain::{AuditEvent, AuditRecord, Checkpoint};
use crate::store::committer::{Done, GroupContext, Work};
use crate::store::convert;
use crate::store::error::{db_error, redact_url, url_password};
use crate::store::migrations::{self, Scripts, check_meta, foreign, migrate_error};
use crate::store::plan::{self, Change, DeliveredRow, NewTrigger, UpdateStep, now_micros};
use crate::store::{
    EndpointState, FinalOutcome, NewOutboxMessage, OUTBOX_LEASE, OutboxCounts, OutboxMessage,
    OutboxStatus, Pruned, StoreError, TriggerRow, TriggerState,
};

pub(crate) use claimant::Claimant;

/// A prune chunk's deletes, finished triggers then delivered webhooks: older than `$1`,
/// at most `$2` of each.
const PRUNE_DELETES: [&str; 2] = [
    "DELETE FROM triggers WHERE correlation_id IN ( \
       SELECT correlation_id FROM triggers \
       WHERE state IN ('completed', 'failed', 'rejected') AND updated_at < $1 \
       ORDER BY updated_at LIMIT $2)",
    "DELETE FROM outbox WHERE id IN ( \
       SELECT id FROM outbox WHERE status = 'delivered' AND created_at < $1 \
       ORDER BY created_at LIMIT $2)",
];

pub(crate) struct PgBackend {
    pool: PgPool,
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
        let version = inspect(&pool, &location).await?;
        let known = migrations::known_version(Scripts::Postgres);
        if read_only {
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
                Some(_) => {}
            }
        } else {
            let migrator = Scripts::Postgres
                .migrator()
                .await
                .map_err(|e| migrate_error(&location, e))?;
            migrator
                .run(&pool)
                .await
                .map_err(|e| migrate_error(&location, e))?;
        }
        Ok(PgBackend {
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
        let ids = plan::trigger_ids(items);
        let stored = self.load_states(&mut tx, &ids).await?;
        let mut plan = plan::plan(items, stored);
        let now = now_micros();
        self.insert_triggers(&mut tx, &plan.new_triggers).await?;
        self.update_triggers(&mut tx, &plan.changed_triggers)
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

    /// The stored state of each of `ids` that exists, locked for this transaction.
    async fn load_states(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, TriggerState)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT correlation_id, state FROM triggers WHERE correlation_id = ANY($1) FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await
        .map_err(self.db())?;
        let l = &self.location;
        rows.iter()
            .map(|row| {
                Ok((
                    get(row, 0, l)?,
                    convert::state(l, &get::<String>(row, 1, l)?)?,
                ))
            })
            .collect()
    }

    async fn insert_triggers(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        rows: &[NewTrigger<'_>],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO triggers ({TRIGGER_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], \
             $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], \
             $7::timestamptz[], $8::text[], $9::text[])"
        ))
        .bind(rows.iter().map(|t| t.correlation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|t| t.action_type).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|t| t.payload.get().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|t| t.now.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|t| i64::from(t.now.attempts))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|t| t.accepted_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|t| t.now.updated_at).collect::<Vec<_>>())
        .bind(opt_texts(rows.iter().map(|t| t.now.output)))
        .bind(opt_texts(rows.iter().map(|t| t.now.error)))
        .execute(&mut **tx)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn update_triggers(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        rows: &[(Uuid, Change<'_>)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE triggers t SET state = v.state, attempts = v.attempts, \
             updated_at = v.updated_at, output = v.output, error = v.error \
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], \
             $6::text[]) AS v(id, state, attempts, updated_at, output, error) \
             WHERE t.correlation_id = v.id",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(_, t)| t.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, t)| i64::from(t.attempts))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(_, t)| t.updated_at).collect::<Vec<_>>())
        .bind(opt_texts(rows.iter().map(|(_, t)| t.output)))
        .bind(opt_texts(rows.iter().map(|(_, t)| t.error)))
        .execute(&mut **tx)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn insert_outbox(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        messages: &[&NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO outbox (message_id, endpoint, ordering_key, body, created_at, attempts, \
             next_attempt_at, status, last_error) \
             SELECT v.message_id, v.endpoint, v.ordering_key, v.body, $5, 0, $5, \
             CASE WHEN d.dead THEN 'dead' ELSE 'pending' END, \
             CASE WHEN d.dead THEN 'predecessor dead-lettered' END \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
               AS v(message_id, endpoint, ordering_key, body, ord) \
             CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM outbox o \
               WHERE o.endpoint = v.endpoint AND o.ordering_key = v.ordering_key \
               AND o.status = 'dead') AS dead) AS d \
             ORDER BY v.ord",
        )
        .bind(
            messages
                .iter()
                .map(|m| m.message_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            messages
                .iter()
                .map(|m| m.endpoint.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            messages
                .iter()
                .map(|m| m.ordering_key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            messages
                .iter()
                .map(|m| m.body.get().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    /// Locks the chain head row, appends, moves the head, writes due checkpoints.
    async fn append_audit(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        events: Vec<&AuditEvent>,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut head = self.lock_chain_head(tx).await?;
        let records = hash::link(&mut head, now, events, context.store_parameters);
        let r = &records;
        // The head moves in the same statement (one round trip fewer per group): a
        // data-modifying WITH runs to completion whatever the outer statement reads.
        sqlx::query(&format!(
            "WITH appended AS (INSERT INTO audit_records ({AUDIT_COLUMNS}) \
             SELECT * FROM UNNEST($1::bigint[], \
             $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
             $7::timestamptz[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
             $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
             $18::text[], $19::text[], $20::bigint[], $21::text[], $22::text[], $23::text[])) \
             UPDATE audit_head SET seq = $24, hash = $25"
        ))
        .bind(r.iter().map(|r| convert::i64_of(r.seq)).collect::<Vec<_>>())
        .bind(r.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
        .bind(
            r.iter()
                .map(|r| r.event.correlation_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.action_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(r.iter().map(|r| r.started_at()).collect::<Vec<_>>())
        .bind(r.iter().map(|r| r.ended_at()).collect::<Vec<_>>())
        .bind(r.iter().map(|r| r.event.latency_ms).collect::<Vec<_>>())
        .bind(r.iter().map(|r| r.event.queue_wait_ms).collect::<Vec<_>>())
        .bind(r.iter().map(|r| r.event.send_to_ack_ms).collect::<Vec<_>>())
        .bind(
            r.iter()
                .map(|r| r.event.send_to_result_ms)
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.agent_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.session_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.interaction_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.catalogue_version.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.parameters_sha256.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.parameters().map(convert::to_text))
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.outcome.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| i64::from(r.event.retries))
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|r| r.event.instance.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(r.iter().map(|r| r.prev_hash.as_str()).collect::<Vec<_>>())
        .bind(r.iter().map(|r| r.hash.as_str()).collect::<Vec<_>>())
        .bind(convert::i64_of(head.seq))
        .bind(&head.hash)
        .execute(&mut **tx)
        .await
        .map_err(self.db())?;
        if context.checkpoint_every > 0 {
            for r in records
                .iter()
                .filter(|r| r.seq % context.checkpoint_every == 0)
            {
                let cp = Checkpoint::sign(&context.keys, r.seq, &r.hash, now);
                self.insert_checkpoint(tx, &cp).await?;
            }
        }
        Ok(())
    }

    async fn lock_chain_head(&self, conn: &mut PgConnection) -> Result<ChainHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.db())?;
        match row {
            None => Err(StoreError::Corrupt {
                location: self.location.clone(),
                detail: "the audit_head row is missing".to_string(),
            }),
            Some(row) => Ok(ChainHead {
                seq: convert::u64_of(
                    &self.location,
                    "audit_head.seq",
                    get(&row, 0, &self.location)?,
                )?,
                hash: get(&row, 1, &self.location)?,
            }),
        }
    }

    async fn insert_checkpoint(
        &self,
        conn: &mut PgConnection,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, signature, key_id, signed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(convert::i64_of(cp.seq))
        .bind(&cp.hash)
        .bind(&cp.signature)
        .bind(&cp.key_id)
        .bind(cp.signed_at)
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    async fn apply_update(
        &self,
        conn: &mut PgConnection,
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
                    "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
                     last_status = $4, claimed_by = NULL, claimed_until = NULL \
                     WHERE id = $5 AND status = 'pending'",
                )
                .bind(i64::from(*attempts))
                .bind(hash::truncate_to_micros(*next_attempt_at))
                .bind(error)
                .bind(status.map(i32::from))
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
                    "UPDATE outbox SET status = 'dead', attempts = $1, last_error = $2, \
                     last_status = $3, claimed_by = NULL, claimed_until = NULL \
                     WHERE id = $4 AND status = 'pending' RETURNING endpoint, ordering_key",
                )
                .bind(i64::from(*attempts))
                .bind(reason)
                .bind(status.map(i32::from))
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
                             last_error = 'predecessor dead-lettered', \
                             claimed_by = NULL, claimed_until = NULL \
                             WHERE endpoint = $1 AND ordering_key = $2 AND status = 'pending' \
                             AND id > $3",
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
                    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                     claimed_by = NULL, claimed_until = NULL \
                     WHERE status = 'dead' AND (endpoint, ordering_key) IN ( \
                       SELECT endpoint, ordering_key FROM outbox WHERE status = 'dead' \
                       AND ($2::bigint IS NULL OR id = $2) \
                       AND ($3::timestamptz IS NULL OR created_at >= $3))",
                )
                .bind(now)
                .bind(filter.id)
                .bind(filter.since)
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
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                     disabled = EXCLUDED.disabled, reason = EXCLUDED.reason, \
                     updated_at = EXCLUDED.updated_at",
                )
                .bind(name)
                .bind(*disabled)
                .bind(reason)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(self.db())?;
                Ok(Ok(Done::Unit))
            }
            Work::Prune {
                before,
                limit,
                after,
            } => {
                // Both through schema 2's partial indexes; no cursor needed.
                let mut deleted = [0u64; 2];
                for (n, sql) in deleted.iter_mut().zip(PRUNE_DELETES) {
                    *n = sqlx::query(sql)
                        .bind(before)
                        .bind(i64::from(*limit))
                        .execute(&mut *conn)
                        .await
                        .map_err(self.db())?
                        .rows_affected();
                }
                let [triggers, webhooks] = deleted;
                Ok(Ok(Done::Pruned(Pruned { triggers, webhooks }, *after)))
            }
            Work::Checkpoint => {
                let head = self.lock_chain_head(conn).await?;
                let signed: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(self.db())?;
                if head.seq > 0 && signed.is_none_or(|s| s < convert::i64_of(head.seq)) {
                    let cp = Checkpoint::sign(&context.keys, head.seq, &head.hash, now);
                    self.insert_checkpoint(conn, &cp).await?;
                }
                Ok(Ok(Done::Unit))
            }
            // Never here: the plan answers batches, and `plan::update_steps` hands every
            // delivered outcome to `mark_delivered`.
            Work::Batch(_) | Work::Delivered { .. } => Ok(Ok(Done::Unit)),
        }
    }

    /// Marks a run of pending rows delivered in one statement; answers each row (by its
    /// item index): a row no longer pending is left alone, a missing one is an error.
    async fn mark_delivered(
        &self,
        conn: &mut PgConnection,
        rows: &[DeliveredRow],
    ) -> Result<Vec<(usize, Result<Done, StoreError>)>, StoreError> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let attempts: Vec<i64> = rows.iter().map(|r| i64::from(r.attempts)).collect();
        let statuses: Vec<i32> = rows.iter().map(|r| i32::from(r.status)).collect();
        let updated: HashSet<i64> = sqlx::query_scalar(
            "UPDATE outbox o SET status = 'delivered', attempts = v.attempts, \
             last_status = v.status, claimed_by = NULL, claimed_until = NULL \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::int[]) AS v(id, attempts, status) \
             WHERE o.id = v.id AND o.status = 'pending' RETURNING o.id",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&statuses)
        .fetch_all(&mut *conn)
        .await
        .map_err(self.db())?
        .into_iter()
        .collect();
        let mut answers = Vec::with_capacity(rows.len());
        for row in rows {
            let n = u64::from(updated.contains(&row.id));
            answers.push((row.index, self.updated_or_missing(conn, row.id, n).await?));
        }
        Ok(answers)
    }

    async fn updated_or_missing(
        &self,
        conn: &mut PgConnection,
        id: i64,
        rows_affected: u64,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        if rows_affected > 0 {
            return Ok(Ok(Done::Unit));
        }
        let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(self.db())?
            .is_some();
        if exists {
            Ok(Ok(Done::Unit))
        } else {
            Ok(Err(StoreError::UnknownOutboxMessage(id)))
        }
    }

    pub(crate) async fn trigger(&self, id: Uuid) -> Result<Option<TriggerRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE correlation_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db())?;
        row.map(|r| self.trigger_row(&r)).transpose()
    }

    pub(crate) async fn unfinished_triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE state IN ('accepted', 'sent') \
             ORDER BY CASE state WHEN 'sent' THEN 0 ELSE 1 END, accepted_at, correlation_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.trigger_row(r)).collect()
    }

    /// Claims (leases) the due rows for this instance; see the module header.
    pub(crate) async fn due_outbox(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let lease = chrono::Duration::from_std(OUTBOX_LEASE).unwrap_or(chrono::Duration::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let select = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o \
             WHERE o.endpoint = $1 AND o.status = 'pending' AND o.next_attempt_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
               AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
             ORDER BY o.id LIMIT $3"
        );
        if self.read_only {
            let rows = sqlx::query(&select)
                .bind(endpoint)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(self.db())?;
            return rows.iter().map(|r| self.outbox_row(r)).collect();
        }
        let mut tx = self.pool.begin().await.map_err(self.db())?;
        // A lost lease after a crash only delays a row until the lease ends.
        sqlx::query("SET LOCAL synchronous_commit TO OFF")
            .execute(&mut *tx)
            .await
            .map_err(self.db())?;
        let rows = sqlx::query(&format!(
            "WITH due AS (SELECT o.id FROM outbox o \
               WHERE o.endpoint = $1 AND o.status = 'pending' AND o.next_attempt_at <= $2 \
               AND (o.claimed_by IS NULL OR o.claimed_by = $4 OR o.claimed_until <= $2) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                 AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
               ORDER BY o.id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox AS o SET claimed_by = $4, claimed_until = $5 FROM due \
             WHERE o.id = due.id RETURNING {OUTBOX_COLUMNS}"
        ))
        .bind(endpoint)
        .bind(now)
        .bind(limit)
        .bind(self.claimant.name())
        .bind(now + lease)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db())?;
        tx.commit().await.map_err(self.db())?;
        let mut messages = rows
            .iter()
            .map(|r| self.outbox_row(r))
            .collect::<Result<Vec<_>, _>>()?;
        messages.sort_by_key(|m| m.id);
        Ok(messages)
    }

    pub(crate) async fn next_outbox_due(
        &self,
        endpoint: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Only a key's oldest pending message can become due; a row leased by another
        // instance is due for us only when its lease ends. Rows free for us: walk the
        // `outbox_due` index in time order and stop at the first key head (a MIN with the
        // correlated NOT EXISTS would probe every pending row: 85-105 ms against 13 ms
        // with 100,000 pending). Rows leased by others (their instances' batches) are
        // looked at apart, the probe only for them; the earlier time wins (LEAST ignores
        // a NULL).
        sqlx::query_scalar(
            "SELECT LEAST( \
               (SELECT o.next_attempt_at FROM outbox o \
                WHERE o.endpoint = $1 AND o.status = 'pending' \
                AND (o.claimed_by IS NULL OR o.claimed_by = $2) \
                AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                  AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id) \
                ORDER BY o.next_attempt_at LIMIT 1), \
               (SELECT MIN(GREATEST(o.next_attempt_at, o.claimed_until)) FROM outbox o \
                WHERE o.endpoint = $1 AND o.status = 'pending' \
                AND o.claimed_by IS NOT NULL AND o.claimed_by <> $2 \
                AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint = o.endpoint \
                  AND p.ordering_key = o.ordering_key AND p.status = 'pending' AND p.id < o.id)))",
        )
        .bind(endpoint)
        .bind(self.claimant.name())
        .fetch_one(&self.pool)
        .await
        .map_err(self.db())
    }

    pub(crate) async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM outbox GROUP BY status")
            .fetch_all(&self.pool)
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
            "SELECT {OUTBOX_COLUMNS} FROM outbox o \
             WHERE ($1::text IS NULL OR o.status = $1) ORDER BY o.id LIMIT $2"
        ))
        .bind(status.map(OutboxStatus::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.outbox_row(r)).collect()
    }

    pub(crate) async fn endpoint_state(&self, endpoint: &str) -> Result<EndpointState, StoreError> {
        let row = sqlx::query("SELECT disabled, reason FROM endpoints WHERE name = $1")
            .bind(endpoint)
            .fetch_optional(&self.pool)
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
            "SELECT {AUDIT_COLUMNS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2"
        ))
        .bind(convert::i64_of(from_seq))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db())?;
        rows.iter().map(|r| self.audit_row(r)).collect()
    }

    pub(crate) async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, signature, key_id, signed_at FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
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
                    signed_at: get(row, 4, l)?,
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
             AND ($1::timestamptz IS NULL OR ended_at >= $1) \
             AND ($2::timestamptz IS NULL OR ended_at < $2) ORDER BY seq",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
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

    fn trigger_row(&self, row: &PgRow) -> Result<TriggerRow, StoreError> {
        let l = &self.location;
        Ok(TriggerRow {
            correlation_id: get(row, 0, l)?,
            action_type: get(row, 1, l)?,
            payload: convert::json(l, "triggers.payload", &get::<String>(row, 2, l)?)?,
            state: convert::state(l, &get::<String>(row, 3, l)?)?,
            attempts: convert::u32_of(l, "triggers.attempts", get(row, 4, l)?)?,
            accepted_at: get(row, 5, l)?,
            updated_at: get(row, 6, l)?,
            output: convert::opt_json(l, "triggers.output", get(row, 7, l)?)?,
            error: convert::opt_json(l, "triggers.error", get(row, 8, l)?)?,
        })
    }

    fn outbox_row(&self, row: &PgRow) -> Result<OutboxMessage, StoreError> {
        let l = &self.location;
        Ok(OutboxMessage {
            id: get(row, 0, l)?,
            message_id: get(row, 1, l)?,
            endpoint: get(row, 2, l)?,
            ordering_key: get(row, 3, l)?,
            body: convert::json(l, "outbox.body", &get::<String>(row, 4, l)?)?,
            created_at: get(row, 5, l)?,
            attempts: convert::u32_of(l, "outbox.attempts", get(row, 6, l)?)?,
            next_attempt_at: get(row, 7, l)?,
            status: convert::outbox_status(l, &get::<String>(row, 8, l)?)?,
            last_error: get(row, 9, l)?,
            last_status: convert::u16_of(
                l,
                "outbox.last_status",
                get::<Option<i32>>(row, 10, l)?.map(i64::from),
            )?,
        })
    }

    fn audit_row(&self, row: &PgRow) -> Result<AuditRecord, StoreError> {
        let l = &self.location;
        Ok(AuditRecord {
            seq: convert::u64_of(l, "audit_records.seq", get(row, 0, l)?)?,
            recorded_at: get(row, 1, l)?,
            event: AuditEvent {
                correlation_id: get(row, 2, l)?,
                action_type: get(row, 3, l)?,
                status: get(row, 4, l)?,
                started_at: get(row, 5, l)?,
                ended_at: get(row, 6, l)?,
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

const TRIGGER_COLUMNS: &str = "correlation_id, action_type, payload, state, attempts, \
    accepted_at, updated_at, output, error";

const OUTBOX_COLUMNS: &str = "o.id, o.message_id, o.endpoint, o.ordering_key, o.body, \
    o.created_at, o.attempts, o.next_attempt_at, o.status, o.last_error, o.last_status";

const AUDIT_COLUMNS: &str = "seq, recorded_at, correlation_id, action_type, status, \
    started_at, ended_at, latency_ms, queue_wait_ms, send_to_ack_ms, send_to_result_ms, \
    agent_id, session_id, interaction_type, catalogue_version, parameters_sha256, parameters, \
    outcome, error, retries, instance, prev_hash, hash";

fn opt_texts<'a>(
    values: impl Iterator<Item = Option<&'a serde_json::value::RawValue>>,
) -> Vec<Option<String>> {
    values.map(|v| v.map(|v| v.get().to_owned())).collect()
}

fn get<'r, T>(row: &'r PgRow, index: usize, location: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(index).map_err(|e| db_error(location, e))
}

/// The gcx schema version in the current schema (`None`: no tables yet); refuses a schema
/// holding other tables or a newer gcx schema.
async fn inspect(pool: &PgPool, location: &str) -> Result<Option<i64>, StoreError> {
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await
        .map_err(|e| db_error(location, e))?;
    let Some(schema) = schema else {
        return Err(StoreError::Migrate {
            location: location.to_string(),
            detail: "no schema of the search_path exists; create it or fix the URL's \
                     `options=-c search_path=...`"
                .to_string(),
        });
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error(location, e))?;
    if tables.is_empty() {
        return Ok(None);
    }
    if !tables.iter().any(|t| t == "gcx_meta") {
        return Err(foreign(
            location,
            &format!("a PostgreSQL schema ({schema})"),
            &tables,
        ));
    }
    let meta: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM gcx_meta")
        .fetch_all(pool)
        .await
        .map_err(|e| db_error(location, e))?;
    check_meta(location, &meta, Scripts::Postgres).map(Some)
}
