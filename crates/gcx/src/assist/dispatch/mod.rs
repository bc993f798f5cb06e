//! The dispatcher: takes validated triggers, makes each durable, sends it on the assist
//! stream within the engine's concurrency limit, retries what may be retried, and writes
//! every step through the store (DESIGN.md, "data flow of one trigger").
//!
//! Shape: one task per admitted trigger, and a router that the stream's reader calls
//! with each event as it reads it, which hands the event to the trigger it concerns (by
//! correlationId), or to all of them (a lost connection), and frees a finished action's
//! slot there and then. A bounded window of admitted-but-unfinished triggers keeps memory
//! and slot waits bounded: [`DispatcherHandle::submit`] waits for room in it.
//!
//! Per trigger: `Accept` (durable) -> wait for a connection -> take a slot (deadline
//! `slot_timeout`) -> send -> `ack`: `Sent` + outbox `initiated` + audit in one batch ->
//! `result`: slot freed, `Completed`/`Failed` + outbox + audit in one batch. A 429 or 503
//! gives the slot back, waits `retryAfterMs` (with jitter), takes a slot again ahead of
//! new triggers and re-sends, up to the payload's `maxRetries`; a connection lost before
//! the `ack` also costs a retry; one lost after the `ack` re-sends for free (the engine
//! deduplicates). A 400 or 403 is final.
//!
//! **Invariants:**
//! - A trigger holds a slot from before each send until its `result` (or a final
//!   refusal), across reconnects; it lets go only while waiting to retry a 429/503, when
//!   the engine holds nothing for it. So at most `limit` actions are between send and
//!   result, which is what the engine counts (PROTOCOL.md 3.6).
//! - A trigger's writes are committed in order (`Accept`, then `Sent`, then the final
//!   state) by its own task, so its outbox rows are inserted `initiated` first.
//! - A trigger the store already holds as finished is never sent again.
//! - When the dispatcher halts (shutdown, or a fatal stream error such as a missing scope)
//!   unfinished triggers keep their stored state (`accepted`/`sent`) and are resumed by
//!   the next start; nothing is marked failed for a reason that is not the trigger's.
//!
//! # Layout
//! - this file: the public API ([`Dispatcher`], [`DispatcherHandle`], [`Ticket`],
//!   [`Outcome`]...) and the state every room shares (`Core`).
//! - `admission`: the window, the registry by correlationId, `submit`/`submit_chunk`
//!   and what a chunk's `accepted` write answered for each trigger.
//! - `routing`: each engine event to the trigger it concerns (the stream's sink).
//! - `life`: the task of one trigger, carrying out what `decide` says.
//! - `decide`: the decisions of a trigger's life (ack, result, refusals, lost
//!   connections, timeouts, retries left) as a pure function, tested case by case.
//! - `resume`: the feeder that admits the store's unfinished triggers before any new one,
//!   and the rule for the previous process's actions still running in the engine.

mod admission;
mod decide;
mod life;
mod resume;
mod routing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::record::Recorder;
use super::slots::Slots;
use super::stream::{AssistStream, StreamConfig};
use crate::auth::TokenProvider;
use crate::config::Config;
use crate::retry::RetryPolicy;
use crate::store::{Store, StoreError, TriggerState, WriteBatch};
use admission::Entry;

/// The most triggers [`DispatcherHandle::submit_chunk`] is usually asked to admit
/// together: their `accepted` rows go to the store as one item.
pub const MAX_CHUNK: usize = 256;

/// How the dispatcher works. [`DispatcherConfig::from_config`] fills it from a [`Config`].
#[derive(Clone)]
pub struct DispatcherConfig {
    pub stream: StreamConfig,
    /// Lowers the engine's limit (never raises it).
    pub concurrency: Option<u32>,
    /// Longest wait for a concurrency slot before the trigger is refused with
    /// "concurrency slot timeout".
    pub slot_timeout: Duration,
    /// A trigger with no answer for this long after a send is sent again (the engine
    /// fails actions after 30 s and a duplicate send is safe).
    pub result_timeout: Duration,
    /// Triggers admitted but unfinished at once; `submit` waits for room beyond it.
    pub max_pending: usize,
    /// Back-off for a 429/503 that carries no `retryAfterMs`.
    pub refusal_retry: RetryPolicy,
    /// What the records share (CRM on/off, catalogue version, instance, parameters).
    pub recorder: Recorder,
    /// Called after each commit that wrote outbox rows (the delivery worker's `notify`).
    pub outbox_notify: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The cluster term this dispatcher leads under: every write it makes is fenced to
    /// it ([`WriteBatch::fence`]), so once another instance took over, its writes fail
    /// and it halts. `None` alone on its store.
    pub fence: Option<i64>,
}

impl std::fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherConfig")
            .field("stream", &self.stream)
            .field("concurrency", &self.concurrency)
            .field("slot_timeout", &self.slot_timeout)
            .field("result_timeout", &self.result_timeout)
            .field("max_pending", &self.max_pending)
            .field("recorder", &self.recorder)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl DispatcherConfig {
    /// The settings of `config` for a stream at `stream_url`, recording
    /// `catalogue_version` in the audit log.
    pub fn from_config(
        config: &Config,
        stream_url: impl Into<String>,
        catalogue_version: impl Into<String>,
    ) -> DispatcherConfig {
        DispatcherConfig {
            stream: StreamConfig::new(stream_url),
            concurrency: config.dispatch.concurrency,
            slot_timeout: config.dispatch.slot_timeout,
            result_timeout: Duration::from_secs(35),
            max_pending: 4096,
            refusal_retry: RetryPolicy::new(Duration::from_millis(50), Duration::from_secs(5)),
            recorder: Recorder {
                crm: config.crm.url.is_some(),
                catalogue_version: catalogue_version.into(),
                store_parameters: config.store.audit_store_parameters,
                instance: crate::instance::id(),
            },
            outbox_notify: None,
            fence: None,
        }
    }
}

/// Why the dispatcher could not do what was asked.
#[derive(Debug, Error)]
pub enum DispatchError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The dispatcher halted (shutdown, or a fatal error it names).
    #[error("dispatcher stopped: {0}")]
    Stopped(String),
}

/// How a submitted trigger entered the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newly accepted.
    New,
    /// Already stored unfinished (a previous run): resumed.
    Resumed(TriggerState),
    /// Already stored finished: not sent again.
    AlreadyFinal(TriggerState),
}

/// How a trigger ended (or where it stood when the dispatcher stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub correlation_id: Uuid,
    /// `Completed`, `Failed`, `Rejected`; `Accepted`/`Sent` when the dispatcher stopped
    /// before the trigger finished (it stays in the store and resumes next time).
    pub state: TriggerState,
    /// Why it failed, was rejected or is unfinished.
    pub error: Option<String>,
    /// Re-sends after a retryable refusal (429, 503, connection lost before the ack).
    pub retries: u32,
    pub queue_wait: Option<Duration>,
    pub send_to_ack: Option<Duration>,
    /// First send to result: the trigger's latency.
    pub send_to_result: Option<Duration>,
    /// The store already had it finished, so it was not sent again.
    pub already_final: bool,
}

impl Outcome {
    fn bare(correlation_id: Uuid, state: TriggerState) -> Outcome {
        Outcome {
            correlation_id,
            state,
            error: None,
            retries: 0,
            queue_wait: None,
            send_to_ack: None,
            send_to_result: None,
            already_final: false,
        }
    }
}

/// Where a trigger is, as its [`Ticket`] sees it.
#[derive(Debug, Clone)]
enum Phase {
    Queued,
    Accepted(Admission),
    /// `None`: it ended before it was stored (its `accepted` write failed).
    Done(Option<Admission>, Box<Outcome>),
}

/// A submitted trigger: await its admission, then its outcome.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub correlation_id: Uuid,
    phase: watch::Receiver<Phase>,
}

impl Ticket {
    /// Resolves once the trigger is durable in the store (or found there); an error when
    /// its write failed (the dispatcher then halts).
    pub async fn accepted(&mut self) -> Result<Admission, DispatchError> {
        loop {
            match &*self.phase.borrow_and_update() {
                Phase::Queued => {}
                Phase::Accepted(a) | Phase::Done(Some(a), _) => return Ok(*a),
                Phase::Done(None, outcome) => {
                    return Err(DispatchError::Stopped(
                        outcome
                            .error
                            .clone()
                            .unwrap_or_else(|| "the trigger was not stored".to_owned()),
                    ));
                }
            }
            if self.phase.changed().await.is_err() {
                return Err(DispatchError::Stopped(
                    "the trigger's task ended before it was stored".into(),
                ));
            }
        }
    }

    /// Resolves when the trigger finished, or the dispatcher stopped.
    pub async fn outcome(&mut self) -> Outcome {
        loop {
            if let Phase::Done(_, outcome) = &*self.phase.borrow_and_update() {
                return (**outcome).clone();
            }
            if self.phase.changed().await.is_err() {
                let mut o = Outcome::bare(self.correlation_id, TriggerState::Accepted);
                o.error = Some("the trigger's task ended without an outcome".into());
                return o;
            }
        }
    }
}

/// Counters for summaries and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Connections after the first.
    pub reconnects: u64,
    /// Re-sends after a retryable refusal, over all triggers.
    pub retries: u64,
    /// Triggers that needed at least one such re-send.
    pub triggers_retried: u64,
    /// Unfinished triggers found in the store at start.
    pub resumed: u64,
    /// Triggers admitted and not finished.
    pub pending: u64,
    /// Slots in use.
    pub in_flight: u32,
    /// The limit in force (engine's, lowered by `concurrency`).
    pub limit: u32,
}

/// Starts dispatchers.
pub struct Dispatcher;

impl Dispatcher {
    /// Opens the stream, reloads unfinished triggers (re-sent before any new one) and
    /// returns at once; connecting happens in the background.
    pub async fn start(
        config: DispatcherConfig,
        store: Store,
        tokens: TokenProvider,
    ) -> Result<DispatcherHandle, DispatchError> {
        let unfinished = store.unfinished_triggers().await?;
        Ok(Dispatcher::start_with(config, store, tokens, unfinished))
    }

    /// [`Dispatcher::start`] resuming `unfinished` (what the store held unfinished, `sent`
    /// first), read by the caller: a cluster's new leader reads them in the same snapshot
    /// as it empties the dispatch queue.
    pub fn start_with(
        config: DispatcherConfig,
        store: Store,
        tokens: TokenProvider,
        unfinished: Vec<crate::store::TriggerRow>,
    ) -> DispatcherHandle {
        let stream_config = config.stream.clone();
        let (connection, _) = watch::channel(None);
        let (resumed_tx, _) = watch::channel(false);
        let core = Arc::new(Core {
            window: Arc::new(Semaphore::new(config.max_pending.max(1))),
            slots: Slots::new(0),
            config,
            store,
            stream: OnceLock::new(),
            registry: Mutex::new(HashMap::new()),
            connection,
            halt: CancellationToken::new(),
            halt_reason: OnceLock::new(),
            resumed: resumed_tx,
            idle: tokio::sync::Notify::new(),
            engine_limit: AtomicU32::new(0),
            reconnects: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            triggers_retried: AtomicU64::new(0),
            resumed_count: AtomicU64::new(unfinished.len() as u64),
            unanswered_resumed: Arc::new(AtomicU64::new(unfinished.len() as u64)),
            started: Instant::now(),
            quiesced: AtomicBool::new(false),
            results_unrecorded: AtomicU64::new(0),
        });
        // The reader calls the router directly: one task hop fewer per answer, and the
        // freed slot reaches the next trigger sooner. Weak: the stream lives in `core`.
        let router = Arc::downgrade(&core);
        let stream = AssistStream::connect_with(
            stream_config,
            tokens,
            Box::new(move |event| {
                if let Some(core) = router.upgrade() {
                    routing::route_event(&core, event);
                }
            }),
        );
        // Set once, before anything can send: sends wait for `Connected`, which only
        // this stream's events announce.
        let _ = core.stream.set(stream);
        let handle = DispatcherHandle { core };
        resume::spawn_feeder(handle.clone(), unfinished);
        handle
    }
}

/// The dispatcher, as its users hold it. Cheap to clone.
#[derive(Clone)]
pub struct DispatcherHandle {
    core: Arc<Core>,
}

/// What every room of the dispatcher shares: the handle, the router and each trigger's
/// task hold it.
struct Core {
    config: DispatcherConfig,
    store: Store,
    /// Set right after `core` is made (the stream's router holds it weakly).
    stream: OnceLock<AssistStream>,
    slots: Slots,
    /// Room for admitted-but-unfinished triggers.
    window: Arc<Semaphore>,
    /// Every admitted, unfinished trigger by correlationId (lowercase UUIDs compare equal).
    registry: Mutex<HashMap<Uuid, Arc<Entry>>>,
    /// The epoch of the connection that takes sends, if any.
    connection: watch::Sender<Option<u64>>,
    /// Cancelled on shutdown or a fatal error; every waiting task watches it.
    halt: CancellationToken,
    halt_reason: OnceLock<String>,
    /// Becomes true once every unfinished trigger from the store was admitted.
    resumed: watch::Sender<bool>,
    /// Woken whenever the registry becomes empty.
    idle: tokio::sync::Notify,
    engine_limit: AtomicU32,
    reconnects: AtomicU64,
    retries: AtomicU64,
    triggers_retried: AtomicU64,
    resumed_count: AtomicU64,
    /// Resumed triggers not yet acked, refused or finished in this run (see
    /// `resume::ORPHAN_GRACE`); counted down by each one's `resume::Unanswered`.
    unanswered_resumed: Arc<AtomicU64>,
    started: Instant,
    /// Set by [`DispatcherHandle::quiesce`]: the limit stays 0, whatever the engine says.
    quiesced: AtomicBool,
    /// Triggers whose `result` the router handed over (freeing their slot) and whose task
    /// has not ended yet, having written it.
    results_unrecorded: AtomicU64,
}

impl DispatcherHandle {
    /// Waits until every admitted trigger finished, or `timeout`; returns how many are
    /// still unfinished.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut resumed = self.core.resumed.subscribe();
        loop {
            let idle = self.core.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let pending = self.core.registry.lock().len();
            let all_resumed = *resumed.borrow_and_update();
            if (pending == 0 && all_resumed) || self.core.halt.is_cancelled() {
                return pending;
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep_until(deadline) => return self.core.registry.lock().len(),
                _ = self.core.halt.cancelled() => {}
                // The resume feeder finishing is also progress (an error: it is gone).
                r = resumed.changed(), if !all_resumed => if r.is_err() {
                    return self.core.registry.lock().len();
                },
            }
        }
    }

    /// Starts no more sends (the limit held at 0, whatever the engine announces) and
    /// waits until no action is between send and result and every result heard is
    /// written, or `timeout`; returns how many actions still run. What waits for a slot stays where the store holds it: a cluster's
    /// leader does this before it hands its lease over, so that its successor never
    /// re-sends an action this one still runs.
    pub async fn quiesce(&self, timeout: Duration) -> u32 {
        self.core.quiesced.store(true, Ordering::SeqCst);
        self.core.slots.set_limit(0);
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.core.slots.in_use();
            // A result frees its slot before its task writes it: wait for the writes too,
            // or a successor would re-send what the engine already finished.
            let unrecorded = self.core.results_unrecorded.load(Ordering::SeqCst);
            if (running == 0 && unrecorded == 0) || Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops: closes the stream, lets every task record where it stands (unfinished
    /// triggers stay `accepted`/`sent` in the store), and waits for them.
    pub async fn shutdown(&self) {
        self.core.halt_with("the dispatcher was shut down".into());
        if let Some(stream) = self.core.stream.get() {
            stream.shutdown().await;
        }
        // Every task watches `halt` and leaves the registry when it ends.
        loop {
            let idle = self.core.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.core.registry.lock().is_empty() {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
        }
    }

    /// Why the dispatcher halted, if it did (a fatal stream error names the fix).
    pub fn halted(&self) -> Option<String> {
        self.core
            .halt
            .is_cancelled()
            .then(|| self.core.halt_reason.get().cloned().unwrap_or_default())
    }

    /// Waits until the dispatcher halts on its own (fatal error) and returns why.
    pub async fn halted_wait(&self) -> String {
        self.core.halt.cancelled().await;
        self.core.halt_reason.get().cloned().unwrap_or_default()
    }

    pub fn stats(&self) -> DispatchStats {
        let core = &self.core;
        DispatchStats {
            reconnects: core.reconnects.load(Ordering::Relaxed),
            retries: core.retries.load(Ordering::Relaxed),
            triggers_retried: core.triggers_retried.load(Ordering::Relaxed),
            resumed: core.resumed_count.load(Ordering::Relaxed),
            pending: core.registry.lock().len() as u64,
            in_flight: core.slots.in_use(),
            limit: core.slots.limit(),
        }
    }

    /// The epoch of the live connection, if connected (health checks).
    pub fn connected_epoch(&self) -> Option<u64> {
        *self.core.connection.borrow()
    }
}

impl Core {
    fn stopped(&self) -> DispatchError {
        DispatchError::Stopped(
            self.halt_reason
                .get()
                .cloned()
                .unwrap_or_else(|| "the dispatcher is stopping".into()),
        )
    }

    fn halt_with(&self, reason: String) {
        let _ = self.halt_reason.set(reason);
        self.halt.cancel();
    }

    async fn commit(&self, mut batch: WriteBatch) -> Result<Vec<Option<TriggerState>>, StoreError> {
        batch.fence = self.config.fence;
        let wrote_outbox = !batch.outbox.is_empty();
        let receipt = self.store.commit(batch).await?;
        if wrote_outbox && let Some(notify) = &self.config.outbox_notify {
            notify();
        }
        Ok(receipt.existing)
    }
}
