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
//! - [`error`]: [`StoreError`] and how database errors map to it.
//! - `committer`: the group-commit task (gathers batches, one transaction, answers each).
//! - `plan`: what one group changes, computed in memory (trigger state machine, receipts).
//! - `sqlite`, `postgres`: one backend each: open, schema checks, migrations, SQL.
//! - `sqlite_writer`: the SQLite committer's own connection and every statement that
//!   writes the file; `wal`: the thread that checkpoints its WAL beside it.
//! - `migrations`: the embedded migration scripts of `crates/gcx/migrations/`.

mod claimant;
mod committer;
mod convert;
pub mod error;
mod known_states;
mod migrations;
mod plan;
mod postgres;
mod sqlite;
mod sqlite_prune;
mod sqlite_writer;
mod wal;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::audit_chain::{AuditEvent, AuditRecord, Checkpoint};
use crate::config::StoreConfig;

pub use committer::CommitStats;
pub use error::StoreError;

/// Lifecycle of a trigger (PROTOCOL.md section 5, DESIGN.md data flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerState {
    /// Validated and durably stored; not yet acked by the engine.
    Accepted,
    /// Acked by the engine; no result yet.
    Sent,
    Completed,
    Failed,
    /// Refused for good without ever being acked (e.g. 400 from the engine).
    Rejected,
}

impl TriggerState {
    /// Whether the trigger still needs work (resume reloads these).
    pub fn is_unfinished(self) -> bool {
        matches!(self, TriggerState::Accepted | TriggerState::Sent)
    }

    /// The state machine: an unfinished trigger may move to any state except back from
    /// `sent` to `accepted`; a finished one never moves again.
    pub fn can_move_to(self, next: TriggerState) -> bool {
        match self {
            TriggerState::Accepted => true,
            TriggerState::Sent => next != TriggerState::Accepted,
            TriggerState::Completed | TriggerState::Failed | TriggerState::Rejected => false,
        }
    }

    /// The stored (and serialized) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Accepted => "accepted",
            TriggerState::Sent => "sent",
            TriggerState::Completed => "completed",
            TriggerState::Failed => "failed",
            TriggerState::Rejected => "rejected",
        }
    }

    pub fn parse(name: &str) -> Option<TriggerState> {
        Some(match name {
            "accepted" => TriggerState::Accepted,
            "sent" => TriggerState::Sent,
            "completed" => TriggerState::Completed,
            "failed" => TriggerState::Failed,
            "rejected" => TriggerState::Rejected,
            _ => return None,
        })
    }
}

impl std::fmt::Display for TriggerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `value` as the JSON text a write stores. Writes carry JSON as text, serialized once
/// by whoever builds them: the committer only binds it, and a batch holds a few strings
/// rather than a tree of small allocations for the committer's thread to free.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    // Only a type whose `Serialize` fails (none of ours: plain data with string keys)
    // could end here; `null` then says so in the row instead of losing the write.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// One change to a trigger inside a [`WriteBatch`].
#[derive(Debug, Clone)]
pub enum TriggerWrite {
    /// Insert as `accepted`, unless the correlationId is already stored (then unchanged;
    /// the [`CommitReceipt`] says what state it had).
    Accept {
        correlation_id: Uuid,
        action_type: String,
        /// The validated payload as JSON (re-sent verbatim on resume).
        payload: Box<RawValue>,
        at: DateTime<Utc>,
    },
    /// Move a stored trigger to `state`.
    Transition {
        correlation_id: Uuid,
        state: TriggerState,
        /// Sends so far (first send = 1).
        attempts: u32,
        at: DateTime<Utc>,
        /// The result's `output` (completed) ...
        output: Option<Box<RawValue>>,
        /// ... or its `error` (failed / rejected).
        error: Option<Box<RawValue>>,
    },
}

/// A webhook to deliver, written in the same transaction as the change it reports.
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    /// `webhook-id`: unique per message, the same on every retry (`msg_` + UUID simple).
    pub message_id: String,
    /// Which target: `crm` or `qa` (the URL and secret come from configuration).
    pub endpoint: String,
    /// Messages with the same key are delivered in insertion order (the correlationId).
    pub ordering_key: String,
    /// The JSON body, sent byte for byte as serialized here.
    pub body: Box<RawValue>,
}

/// Delivery state of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    Pending,
    Delivered,
    /// Dead letter: a final 4xx, the schedule exhausted, or a dead predecessor.
    Dead,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
        }
    }

    pub fn parse(name: &str) -> Option<OutboxStatus> {
        Some(match name {
            "pending" => OutboxStatus::Pending,
            "delivered" => OutboxStatus::Delivered,
            "dead" => OutboxStatus::Dead,
            _ => return None,
        })
    }
}

/// A stored outbox message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Store-assigned, increasing in insertion order.
    pub id: i64,
    pub message_id: String,
    pub endpoint: String,
    pub ordering_key: String,
    pub body: Value,
    pub created_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub status: OutboxStatus,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
}

/// Counts for `gcx outbox status` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Finished triggers (completed, failed, rejected).
    pub triggers: u64,
    /// Delivered webhooks.
    pub webhooks: u64,
}

/// The most rows of each kind one store write deletes when pruning, so that the writes of
/// running triggers go in between.
const PRUNE_CHUNK: u32 = 2_000;

/// Where a prune has got to in each table's key order (SQLite's rowid and outbox id): the
/// next chunk looks only after these. PostgreSQL finds the rows through indexes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PruneCursor {
    pub triggers: i64,
    pub webhooks: i64,
}

impl PruneCursor {
    const START: PruneCursor = PruneCursor {
        triggers: i64::MIN,
        webhooks: i64::MIN,
    };
}

/// Which dead letters `replay` puts back.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
}

/// A stored trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerRow {
    pub correlation_id: Uuid,
    pub action_type: String,
    pub payload: Value,
    pub state: TriggerState,
    pub attempts: u32,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub output: Option<Value>,
    pub error: Option<Value>,
}

/// Everything one caller commits atomically.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub triggers: Vec<TriggerWrite>,
    pub outbox: Vec<NewOutboxMessage>,
    pub audit: Vec<AuditEvent>,
}

/// What a commit reports back.
#[derive(Debug, Clone, Default)]
pub struct CommitReceipt {
    /// One entry per `TriggerWrite::Accept`, in order: `None` if newly accepted, else the
    /// state the correlationId already had.
    pub existing: Vec<Option<TriggerState>>,
}

/// Whether an endpoint is disabled (after a 410) and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointState {
    pub disabled: bool,
    pub reason: Option<String>,
}

/// Which database a [`Store`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

/// A final audit step as the metrics of `gcx audit report` and `/metrics` need it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalOutcome {
    pub action_type: String,
    /// `completed`, `failed` or `rejected`.
    pub status: String,
    pub latency_ms: f64,
}

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
                    claimant::Claimant::for_folder(&config.data_dir),
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
                    claimant::Claimant::of_this_process(),
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
        on_backend!(&self.inner.backend, b => b.trigger(correlation_id).await)
    }

    /// Every trigger left `accepted` or `sent`: the `sent` ones first (the engine may
    /// still be running them, PROTOCOL.md 3.6, and their re-sends must hold slots before
    /// anything new takes one), each group oldest first.
    pub async fn unfinished_triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
        on_backend!(&self.inner.backend, b => b.unfinished_triggers().await)
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
        on_backend!(&self.inner.backend, b => b.due_outbox(endpoint, now, limit).await)
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
        self.submit(committer::Work::Retry {
            id,
            attempts,
            next_attempt_at,
            error: error.to_string(),
            status,
        })
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
        self.submit(committer::Work::Dead {
            id,
            attempts,
            reason: reason.to_string(),
            status,
        })
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
        on_backend!(&self.inner.backend, b => b.outbox_list(status, limit).await)
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
            let work = committer::Work::Prune {
                before,
                limit: PRUNE_CHUNK,
                after,
            };
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
        on_backend!(&self.inner.backend, b => b.endpoint_state(endpoint).await)
    }

    pub async fn set_endpoint_disabled(
        &self,
        endpoint: &str,
        disabled: bool,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.submit(committer::Work::Endpoint {
            name: endpoint.to_string(),
            disabled,
            reason: reason.map(str::to_string),
        })
        .await
        .map(|_| ())
    }

    /// Audit records with `seq` in `from..` (all when `None`), at most `limit`.
    pub async fn audit_records(
        &self,
        from_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_backend!(&self.inner.backend, b => b.audit_records(from_seq.unwrap_or(0), limit).await)
    }

    /// Every stored audit checkpoint, by seq.
    pub async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        on_backend!(&self.inner.backend, b => b.audit_checkpoints().await)
    }

    /// Final audit steps (`completed`, `failed`, `rejected`) whose `ended_at` lies in
    /// `[since, until)`.
    pub async fn audit_final_outcomes(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<FinalOutcome>, StoreError> {
        on_backend!(&self.inner.backend, b => b.audit_final_outcomes(since, until).await)
    }
}

/// How long a PostgreSQL instance holds the outbox rows [`Store::due_outbox`] gave it
/// before another instance may take them over (when it died mid-delivery). A gcx
/// restarted on the dead one's data folder takes them back at once (`claimant.rs`).
pub const OUTBOX_LEASE: std::time::Duration = std::time::Duration::from_secs(60);
