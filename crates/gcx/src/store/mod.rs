//! Durable state: triggers, the outbox, dead letters, endpoint state and the audit log,
//! in SQLite (embedded default, WAL) or PostgreSQL (scale-out), behind one [`Store`].
//!
//! Every write goes through [`Store::commit`], which groups the batches of many callers
//! into one transaction (group commit) and answers each caller only once its batch is
//! durable. A [`WriteBatch`] is atomic: a trigger's state change, its outbox row and its
//! audit records commit together or not at all (the transactional outbox).
//!
//! **Invariant:** the store assigns audit sequence numbers and hashes inside the
//! committing transaction, so the chain order is the commit order.
//!
//! # Layout
//! - `model`: the types of writes and reads, the same for both backends.
//! - [`error`]: [`StoreError`] and how database errors map to it.
//! - `committer`: the group-commit task (gathers batches, one transaction, answers each).
//! - `plan`: what one group changes, computed in memory (trigger state machine, receipts).
//! - `rows`: the column lists and one decoder per stored type, over a row of either
//!   backend; `reads`: the reads whose SQL both backends share, written once.
//! - `convert`: stored values to the store's types.
//! - `migrations`: the embedded migration scripts of `crates/gcx/migrations/` and the
//!   checks of a store's schema before they run.
//! - `sqlite/`, `postgres/`: one backend each, a file per job (opening, the group
//!   transaction, triggers, outbox, audit, prune).

mod committer;
mod convert;
pub mod error;
mod migrations;
mod model;
mod plan;
mod postgres;
mod reads;
mod rows;
mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit_chain::{AuditRecord, Checkpoint};
use crate::config::StoreConfig;

pub use committer::CommitStats;
pub use error::StoreError;
pub(crate) use model::PruneCursor;
pub use model::{
    BackendKind, CommitReceipt, EndpointState, FinalOutcome, NewOutboxMessage, OutboxCounts,
    OutboxMessage, OutboxStatus, Pruned, ReplayFilter, TriggerRow, TriggerState, TriggerWrite,
    WriteBatch, json_text,
};
pub use postgres::cluster::{
    CHANNEL_DISPATCH, CHANNEL_FINISHED, CHANNEL_LEADER, ClusterDb, LeaseRow, MemberBeat, MemberRow,
};

/// The most rows of each kind one store write deletes when pruning, so that the writes of
/// running triggers go in between.
const PRUNE_CHUNK: u32 = 2_000;

/// The backend behind a [`Store`]: one enum, two pools (no `sqlx::Any`).
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(Arc<sqlite::SqliteBackend>),
    Postgres(Arc<postgres::PgBackend>),
}

/// Calls the same method on whichever backend is in use.
macro_rules! on_backend {
    ($backend:expr, $b:ident => $call:expr) => {
        match $backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

impl Backend {
    pub(crate) async fn write_group(
        &self,
        items: &[&committer::Work],
        context: &committer::GroupContext,
    ) -> Result<Vec<Result<committer::Done, StoreError>>, StoreError> {
        on_backend!(self, b => b.write_group(items, context).await)
    }

    pub(crate) async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }

    pub(crate) fn location(&self) -> &str {
        on_backend!(self, b => b.location())
    }
}

/// The durable store. Cheap to clone (shares one pool and one committer).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// `None` when opened with [`Store::open_read_only`].
    committer: Option<committer::Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location())
            .finish()
    }
}

impl Store {
    /// Opens (creating and migrating) the store the configuration names: PostgreSQL when
    /// `database_url` is set, else `<data_dir>/gcx.db`. Loads (or generates, on first use)
    /// the audit signing key in `data_dir`.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        // Made private (0700) before anything lands in it, whichever backend.
        crate::private_files::create_dir(&config.data_dir).map_err(|source| {
            StoreError::CreateDir {
                path: config.data_dir.display().to_string(),
                source,
            }
        })?;
        let backend = match &config.database_url {
            Some(url) => Backend::Postgres(Arc::new(
                postgres::PgBackend::open(
                    url.expose(),
                    false,
                    postgres::Claimant::for_folder(&config.data_dir),
                )
                .await?,
            )),
            None => Backend::Sqlite(Arc::new(
                sqlite::SqliteBackend::open(&config.data_dir, false).await?,
            )),
        };
        let keys = crate::audit_chain::AuditKeys::load_or_generate(&config.data_dir)?;
        let context = committer::GroupContext {
            keys,
            checkpoint_every: config.audit_checkpoint_every,
            store_parameters: config.audit_store_parameters,
        };
        let handle = committer::Handle::start(
            backend.clone(),
            context,
            config.group_commit_max_rows,
            config.group_commit_interval,
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                committer: Some(handle),
            }),
        })
    }

    /// Opens an existing store for reading only (verify, report, export, listing): no
    /// migration, no key generation, every write fails with
    /// [`StoreError::OpenedReadOnly`].
    pub async fn open_read_only(config: &StoreConfig) -> Result<Store, StoreError> {
        let backend = match &config.database_url {
            Some(url) => Backend::Postgres(Arc::new(
                postgres::PgBackend::open(
                    url.expose(),
                    true,
                    postgres::Claimant::of_this_process(),
                )
                .await?,
            )),
            None => Backend::Sqlite(Arc::new(
                sqlite::SqliteBackend::open(&config.data_dir, true).await?,
            )),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                committer: None,
            }),
        })
    }

    /// Where the data lives: the SQLite file path or the PostgreSQL URL without password.
    pub fn location(&self) -> &str {
        self.inner.backend.location()
    }

    /// The statements the instances of one service share (membership, the dispatch
    /// lease, the dispatch queue): `None` on SQLite, which one process owns.
    pub fn cluster(&self) -> Option<ClusterDb> {
        match &self.inner.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(b) => Some(b.cluster()),
        }
    }

    pub fn backend_kind(&self) -> BackendKind {
        match self.inner.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Group-commit counters since open.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner
            .committer
            .as_ref()
            .map(committer::Handle::stats)
            .unwrap_or_default()
    }

    async fn submit(&self, work: committer::Work) -> Result<committer::Done, StoreError> {
        match &self.inner.committer {
            Some(c) => c.submit(work).await,
            None => Err(StoreError::OpenedReadOnly {
                location: self.location().to_string(),
            }),
        }
    }

    /// Commits a batch (grouped with others); returns once it is durable.
    pub async fn commit(&self, batch: WriteBatch) -> Result<CommitReceipt, StoreError> {
        match self.submit(committer::Work::Batch(batch)).await? {
            committer::Done::Receipt(receipt) => Ok(receipt),
            _ => Ok(CommitReceipt::default()),
        }
    }

    /// Flushes pending writes, writes an audit checkpoint and closes. Every clone of this
    /// store is closed with it; later calls fail with [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.inner.committer {
            Some(c) => c.close().await,
            None => {
                self.inner.backend.close().await;
                Ok(())
            }
        }
    }

    /// Signs the current audit chain head now unless a checkpoint already covers it.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.submit(committer::Work::Checkpoint).await.map(|_| ())
    }

    pub async fn trigger(&self, correlation_id: Uuid) -> Result<Option<TriggerRow>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.trigger(correlation_id).await)
    }

    /// Every trigger left `accepted` or `sent`: the `sent` ones first (the engine may
    /// still be running them, PROTOCOL.md 3.6, and their re-sends must hold slots before
    /// anything new takes one), each group oldest first.
    pub async fn unfinished_triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.unfinished_triggers().await)
    }

    /// Pending messages for `endpoint` due at `now`, oldest first, at most `limit`; only
    /// a key's oldest pending message is ever returned (per-key order).
    ///
    /// On PostgreSQL the returned rows are also leased to this store instance for
    /// [`OUTBOX_LEASE`] (`FOR UPDATE SKIP LOCKED`), so another instance sharing the
    /// database does not deliver them at the same time; this instance sees them again on
    /// its next call (track in-flight ids yourself), and so does the next store opened on
    /// the same data folder once this one is gone. Delivered/retry/dead end the lease.
    pub async fn due_outbox(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.read.due_outbox(endpoint, now, limit).await,
            Backend::Postgres(b) => b.due_outbox(endpoint, now, limit).await,
        }
    }

    /// A number that changes whenever anything was committed to the store since it was
    /// last asked, by any process: a loop that found nothing due may keep waiting while it
    /// stays the same. `None` when the backend cannot tell cheaply (PostgreSQL): look
    /// again.
    pub fn change_counter(&self) -> Result<Option<i64>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.data_version().map(Some),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// The earliest `next_attempt_at` of a pending message for `endpoint`.
    pub async fn next_outbox_due(
        &self,
        endpoint: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_backend!(&self.inner.backend, b => b.next_outbox_due(endpoint).await)
    }

    /// Marks a pending message delivered (grouped like [`Store::commit`]).
    pub async fn outbox_delivered(
        &self,
        id: i64,
        attempts: u32,
        status: u16,
    ) -> Result<(), StoreError> {
        self.submit(committer::Work::Delivered {
            id,
            attempts,
            status,
        })
        .await
        .map(|_| ())
    }

    /// Schedules another attempt of a pending message (grouped like [`Store::commit`]).
    pub async fn outbox_retry(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        self.submit(committer::Work::Retry(committer::Retry {
            id,
            attempts,
            next_attempt_at,
            error: error.to_string(),
            status,
        }))
        .await
        .map(|_| ())
    }

    /// Dead-letters a message and, in the same transaction, every later pending message
    /// with the same ordering key (reason "predecessor dead-lettered"), so order holds.
    /// Messages committed later for a key with a dead letter are dead on arrival for the
    /// same reason; [`Store::outbox_replay`] brings them back together.
    pub async fn outbox_dead(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        self.submit(committer::Work::Dead(committer::Dead {
            id,
            attempts,
            reason: reason.to_string(),
            status,
        }))
        .await
        .map(|_| ())
    }

    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        on_backend!(&self.inner.backend, b => b.outbox_counts().await)
    }

    /// Messages with `status` (all when `None`), oldest first, at most `limit`.
    pub async fn outbox_list(
        &self,
        status: Option<OutboxStatus>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.outbox_list(status, limit).await)
    }

    /// The message with this `webhook-id`, if stored.
    pub async fn outbox_message(
        &self,
        message_id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.outbox_message(message_id).await)
    }

    /// Puts matching dead letters back to pending (attempts 0, due now); returns how many.
    /// To keep per-key order, every dead letter sharing endpoint and ordering key with a
    /// match comes back with it.
    pub async fn outbox_replay(&self, filter: &ReplayFilter) -> Result<u64, StoreError> {
        match self.submit(committer::Work::Replay(filter.clone())).await? {
            committer::Done::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }

    /// Deletes what retention lets go (`store.keep_finished`): finished triggers
    /// (completed, failed, rejected) last updated before `before`, and delivered webhooks
    /// created before it. Unfinished triggers, pending webhooks and dead letters stay, and
    /// so does every audit record (the log is append-only). A correlationId whose row is
    /// gone is new to gcx again. Deletes in chunks, each a store write of its own.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        let mut after = PruneCursor::START;
        loop {
            let work = committer::Work::Prune(committer::PruneChunk {
                before,
                limit: PRUNE_CHUNK,
                after,
            });
            let (chunk, next) = match self.submit(work).await? {
                committer::Done::Pruned(chunk, next) => (chunk, next),
                _ => (Pruned::default(), after),
            };
            total.triggers += chunk.triggers;
            total.webhooks += chunk.webhooks;
            let limit = u64::from(PRUNE_CHUNK);
            if chunk.triggers < limit && chunk.webhooks < limit {
                return Ok(total);
            }
            after = next;
        }
    }

    /// [`Store::prune`] of what ended more than `keep` ago (nothing when `keep` reaches
    /// back before the calendar does).
    pub async fn prune_older_than(&self, keep: std::time::Duration) -> Result<Pruned, StoreError> {
        let before = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| Utc::now().checked_sub_signed(keep));
        match before {
            Some(before) => self.prune(before).await,
            None => Ok(Pruned::default()),
        }
    }

    pub async fn endpoint_state(&self, endpoint: &str) -> Result<EndpointState, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.endpoint_state(endpoint).await)
    }

    pub async fn set_endpoint_disabled(
        &self,
        endpoint: &str,
        disabled: bool,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.submit(committer::Work::Endpoint(committer::EndpointChange {
            name: endpoint.to_string(),
            disabled,
            reason: reason.map(str::to_string),
        }))
        .await
        .map(|_| ())
    }

    /// Audit records with `seq` in `from..` (all when `None`), at most `limit`.
    pub async fn audit_records(
        &self,
        from_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.audit_records(from_seq.unwrap_or(0), limit).await)
    }

    /// Every stored audit checkpoint, by seq.
    pub async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.audit_checkpoints().await)
    }

    /// Final audit steps (`completed`, `failed`, `rejected`) whose `ended_at` lies in
    /// `[since, until)`.
    pub async fn audit_final_outcomes(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<FinalOutcome>, StoreError> {
        on_backend!(&self.inner.backend, b => b.read.audit_final_outcomes(since, until).await)
    }
}

/// How long a PostgreSQL instance holds the outbox rows [`Store::due_outbox`] gave it
/// before another instance may take them over (when it died mid-delivery). A gcx
/// restarted on the dead one's data folder takes them back at once (`postgres/claimant.rs`).
pub const OUTBOX_LEASE: std::time::Duration = std::time::Duration::from_secs(60);
