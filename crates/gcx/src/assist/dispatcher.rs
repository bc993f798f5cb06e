//! The dispatcher: takes validated triggers, makes each durable, sends it on the assist
//! stream within the engine's concurrency limit, retries what may be retried, and writes
//! every step through the store (DESIGN.md, "data flow of one trigger").
//!
//! Shape: one task per admitted trigger ([`drive`]), and a router ([`route_event`]) that
//! the stream's reader calls with each event as it reads it, which hands the event to the
//! trigger it concerns (by correlationId), or to all of them (a lost connection), and
//! frees a finished action's slot there and then. A bounded window of
//! admitted-but-unfinished triggers keeps memory and slot waits bounded:
//! [`DispatcherHandle::submit`] waits for room in it.
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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use gcx_protocol::ActionTriggerPayload;
use gcx_protocol::assist::{ErrorPayload, ResultPayload, ResultState};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::metrics as m;
use super::record::{CRM_ENDPOINT, Recorder, Refusal, TriggerFacts, crm_ordering_key};
use super::slots::{Slot, SlotRequest, Slots};
use super::stream::{AssistStream, StreamConfig, StreamEvent};
use crate::audit::parameters_sha256;
use crate::auth::TokenProvider;
use crate::config::Config;
use crate::retry::RetryPolicy;
use crate::store::{Store, StoreError, TriggerRow, TriggerState, TriggerWrite, WriteBatch};

/// The most triggers [`DispatcherHandle::submit_chunk`] is usually asked to admit
/// together: their `accepted` rows go to the store as one item.
pub const MAX_CHUNK: usize = 256;

/// How long after a start with resumed triggers a 429 may be the engine still running
/// actions of the previous gcx process: an action keeps its place after its socket
/// closed, for at most the engine's 30 s action timeout (PROTOCOL.md 3.6), and this
/// client cannot know of those actions until it has re-sent each resumed trigger. Within
/// it, and while some resumed trigger has had no answer yet, a 429 does not spend a
/// trigger's `maxRetries` (docs/protocol-notes.md).
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

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
                instance: super::record::default_instance(),
            },
            outbox_notify: None,
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
        });
        // The reader calls the router directly: one task hop fewer per answer, and the
        // freed slot reaches the next trigger sooner. Weak: the stream lives in `core`.
        let router = Arc::downgrade(&core);
        let stream = AssistStream::connect_with(
            stream_config,
            tokens,
            Box::new(move |event| {
                if let Some(core) = router.upgrade() {
                    route_event(&core, event);
                }
            }),
        );
        // Set once, before anything can send: sends wait for `Connected`, which only
        // this stream's events announce.
        let _ = core.stream.set(stream);
        let handle = DispatcherHandle { core: core.clone() };
        let feeder = handle.clone();
        tokio::spawn(async move {
            for row in unfinished {
                let crm_key = crm_ordering_key(row.accepted_at, row.correlation_id);
                let payload: ActionTriggerPayload = match serde_json::from_value(row.payload) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(correlation_id = %row.correlation_id, error = %e,
                            "stored trigger payload does not parse; left as it is");
                        feeder.core.count_off_unrunnable_resumed();
                        continue;
                    }
                };
                let resume = Resume {
                    state: row.state,
                    attempts: row.attempts,
                    crm_key,
                };
                if feeder.admit_resumed(payload, resume).await.is_err() {
                    break;
                }
            }
            feeder.core.resumed.send_replace(true);
        });
        Ok(handle)
    }
}

/// The dispatcher, as its users hold it. Cheap to clone.
#[derive(Clone)]
pub struct DispatcherHandle {
    core: Arc<Core>,
}

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
    /// [`ORPHAN_GRACE`]); counted down by each one's [`Unanswered`].
    unanswered_resumed: Arc<AtomicU64>,
    started: Instant,
}

/// One admitted trigger, as the router reaches it.
struct Entry {
    events: mpsc::UnboundedSender<TriggerEvent>,
    /// The trigger's slot while it holds one; the router frees it on the `result`.
    slot: Mutex<Option<Slot>>,
    phase: watch::Sender<Phase>,
}

/// What the router tells one trigger.
#[derive(Debug)]
enum TriggerEvent {
    /// `at`: when the router saw it (latencies do not include our own store writes).
    Ack {
        duplicate: bool,
        at: Instant,
    },
    Result(ResultPayload, Instant),
    Refused {
        code: u16,
        message: String,
        payload: ErrorPayload,
    },
    Lost {
        epoch: u64,
    },
}

impl DispatcherHandle {
    /// Admits a trigger: waits for room in the window (and, at start, until every
    /// unfinished trigger from the store was admitted first), then returns its ticket.
    /// A chunk of one ([`submit_chunk`](Self::submit_chunk)): the store write happens in
    /// the background, `ticket.accepted()` awaits it, and a correlationId already in
    /// flight gets that trigger's ticket.
    pub async fn submit(&self, payload: ActionTriggerPayload) -> Result<Ticket, DispatchError> {
        let mut one = VecDeque::from([payload]);
        self.submit_chunk(&mut one, 1)
            .await?
            .pop()
            .ok_or_else(|| self.core.stopped())
    }

    /// Admits a stored unfinished trigger (at start, before any new one).
    async fn admit_resumed(
        &self,
        payload: ActionTriggerPayload,
        resume: Resume,
    ) -> Result<Ticket, DispatchError> {
        let unanswered = Unanswered::of(&self.core);
        let permit = self.place().await?;
        match self.register(payload.correlation_id) {
            Registered::Existing(ticket) => Ok(ticket),
            Registered::New(entry, receiver, ticket) => {
                let (_, frame) = texts(&payload);
                let job = Job {
                    payload,
                    frame,
                    start: Start::Resume(resume),
                    admitted_at: Instant::now(),
                    // Its place in the slot queue is taken here, in the store's order
                    // (sent ones first), not when its task first runs.
                    slot: self.core.slots.request(),
                    unanswered,
                };
                tokio::spawn(drive(self.core.clone(), entry, receiver, job, permit));
                Ok(ticket)
            }
        }
    }

    /// Admits up to `max` triggers from the front of `payloads`, in order: waits for room
    /// in the window for the first, then takes as many more as there is room for now.
    /// Their `accepted` rows are written in one batch in the background (each ticket's
    /// `accepted()` awaits it), and no trigger is sent before that write is durable. A
    /// correlationId already in flight gets that trigger's ticket. For triggers held together (a file, a request): one store item and
    /// one wake-up for the lot instead of one each.
    pub async fn submit_chunk(
        &self,
        payloads: &mut VecDeque<ActionTriggerPayload>,
        max: usize,
    ) -> Result<Vec<Ticket>, DispatchError> {
        self.wait_resumed().await?;
        let mut tickets = Vec::new();
        let mut writes = Vec::new();
        let mut started = Vec::new();
        while tickets.len() < max.max(1) && !payloads.is_empty() {
            let permit = if tickets.is_empty() {
                self.place().await?
            } else {
                match self.core.window.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            };
            let Some(payload) = payloads.pop_front() else {
                break;
            };
            match self.register(payload.correlation_id) {
                Registered::Existing(ticket) => tickets.push(ticket),
                Registered::New(entry, receiver, ticket) => {
                    tickets.push(ticket);
                    let (text, frame) = texts(&payload);
                    let accepted_at = Utc::now();
                    writes.push(accept_write(&payload, text, accepted_at));
                    started.push(Admitted {
                        entry,
                        events: receiver,
                        payload,
                        frame,
                        accepted_at,
                        admitted_at: Instant::now(),
                        permit,
                    });
                }
            }
        }
        if !started.is_empty() {
            let core = self.core.clone();
            tokio::spawn(async move {
                let batch = WriteBatch {
                    triggers: writes,
                    ..WriteBatch::default()
                };
                let stored = core
                    .commit(batch)
                    .await
                    .map_err(|e| format!("store write failed: {e}"));
                for (i, a) in started.into_iter().enumerate() {
                    let stored = match &stored {
                        Ok(existing) => Ok(existing.get(i).copied().flatten()),
                        Err(reason) => Err(reason.clone()),
                    };
                    let job = Job {
                        payload: a.payload,
                        frame: a.frame,
                        start: Start::Stored {
                            accepted_at: a.accepted_at,
                            stored,
                        },
                        admitted_at: a.admitted_at,
                        slot: core.slots.request(),
                        unanswered: Unanswered(None),
                    };
                    tokio::spawn(drive(core.clone(), a.entry, a.events, job, a.permit));
                }
            });
        }
        Ok(tickets)
    }

    /// Waits until every unfinished trigger from the store was admitted.
    async fn wait_resumed(&self) -> Result<(), DispatchError> {
        let mut resumed = self.core.resumed.subscribe();
        loop {
            if *resumed.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                r = resumed.changed() => if r.is_err() { return Err(self.core.stopped()) },
                _ = self.core.halt.cancelled() => return Err(self.core.stopped()),
            }
        }
    }

    /// Waits for room in the window.
    async fn place(&self) -> Result<OwnedSemaphorePermit, DispatchError> {
        let core = &self.core;
        if core.halt.is_cancelled() {
            return Err(core.stopped());
        }
        tokio::select! {
            p = core.window.clone().acquire_owned() => p.map_err(|_| core.stopped()),
            _ = core.halt.cancelled() => Err(core.stopped()),
        }
    }

    /// Enters a trigger in the registry, or finds the one in flight with its id.
    fn register(&self, correlation_id: Uuid) -> Registered {
        let mut registry = self.core.registry.lock();
        if let Some(existing) = registry.get(&correlation_id) {
            return Registered::Existing(Ticket {
                correlation_id,
                phase: existing.phase.subscribe(),
            });
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let (phase, _) = watch::channel(Phase::Queued);
        let entry = Arc::new(Entry {
            events,
            slot: Mutex::new(None),
            phase,
        });
        registry.insert(correlation_id, entry.clone());
        let ticket = Ticket {
            correlation_id,
            phase: entry.phase.subscribe(),
        };
        Registered::New(entry, receiver, ticket)
    }

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

    fn effective_limit(&self, engine: u32) -> u32 {
        self.config.concurrency.map_or(engine, |c| c.min(engine))
    }

    async fn commit(&self, batch: WriteBatch) -> Result<Vec<Option<TriggerState>>, StoreError> {
        let wrote_outbox = !batch.outbox.is_empty();
        let receipt = self.store.commit(batch).await?;
        if wrote_outbox && let Some(notify) = &self.config.outbox_notify {
            notify();
        }
        Ok(receipt.existing)
    }

    /// Whether the engine may still be running actions of a previous process that this
    /// one has not re-sent yet ([`ORPHAN_GRACE`]).
    fn orphans_possible(&self) -> bool {
        self.unanswered_resumed.load(Ordering::Relaxed) > 0 && self.started.elapsed() < ORPHAN_GRACE
    }

    /// Counts off a resumed trigger that this process will not run (its stored payload
    /// does not parse): no answer will come to do it.
    fn count_off_unrunnable_resumed(&self) {
        self.unanswered_resumed.fetch_sub(1, Ordering::Relaxed);
    }

    /// Waits for a connection that takes sends; `None` when halted.
    async fn wait_connected(&self) -> Option<u64> {
        let mut connection = self.connection.subscribe();
        loop {
            if let Some(epoch) = *connection.borrow_and_update() {
                return Some(epoch);
            }
            tokio::select! {
                r = connection.changed() => r.ok()?,
                _ = self.halt.cancelled() => return None,
            }
        }
    }

    /// Sends one frame on the live connection, waiting for one if needed; returns the
    /// connection's epoch, or `None` when halted.
    async fn send(&self, frame: &Utf8Bytes) -> Option<u64> {
        let mut connection = self.connection.subscribe();
        loop {
            if connection.borrow_and_update().is_some()
                && let Some(stream) = self.stream.get()
                && let Ok(epoch) = stream.send_text(frame.clone()).await
            {
                return Some(epoch);
            }
            tokio::select! {
                r = connection.changed() => r.ok()?,
                _ = self.halt.cancelled() => return None,
            }
        }
    }

    fn set_limit_from_engine(&self, engine: u32) {
        self.engine_limit.store(engine, Ordering::Relaxed);
        let limit = self.effective_limit(engine);
        self.slots.set_limit(limit);
        metrics::gauge!(m::CONCURRENCY_LIMIT).set(f64::from(limit));
    }
}

/// Hands one stream event to the trigger(s) it concerns. Called by the stream's reader
/// for each event in order; nothing here waits.
fn route_event(core: &Core, event: StreamEvent) {
    match event {
        StreamEvent::Connected {
            epoch,
            max_concurrent_actions,
            ..
        } => {
            if epoch > 1 {
                core.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            core.set_limit_from_engine(max_concurrent_actions);
            core.connection.send_replace(Some(epoch));
        }
        StreamEvent::Capacity {
            max_concurrent_actions,
        } => {
            tracing::info!(max_concurrent_actions, "engine capacity changed");
            core.set_limit_from_engine(max_concurrent_actions);
        }
        StreamEvent::Draining { epoch, .. } => {
            core.connection
                .send_if_modified(|c| c.take_if(|e| *e == epoch).is_some());
        }
        StreamEvent::Disconnected { epoch, .. } => {
            core.connection
                .send_if_modified(|c| c.take_if(|e| *e == epoch).is_some());
            let entries: Vec<Arc<Entry>> = core.registry.lock().values().cloned().collect();
            for entry in entries {
                let _ = entry.events.send(TriggerEvent::Lost { epoch });
            }
        }
        StreamEvent::Ack { ack, .. } => {
            route(
                core,
                ack.correlation_id,
                TriggerEvent::Ack {
                    duplicate: ack.duplicate,
                    at: Instant::now(),
                },
            );
        }
        StreamEvent::Result { result, .. } => {
            let entry = core.registry.lock().get(&result.correlation_id).cloned();
            if let Some(entry) = entry {
                // The engine freed its place; free ours before the store write.
                drop(entry.slot.lock().take());
                let _ = entry
                    .events
                    .send(TriggerEvent::Result(result, Instant::now()));
            }
        }
        StreamEvent::Refused {
            code,
            message,
            payload,
            ..
        } => match payload.correlation_id {
            Some(id) => route(
                core,
                id,
                TriggerEvent::Refused {
                    code,
                    message,
                    payload,
                },
            ),
            None => tracing::warn!(code, %message, "assist stream refused a message"),
        },
        StreamEvent::Fatal { error } => {
            core.connection.send_replace(None);
            core.halt_with(error.to_string());
        }
    }
}

fn route(core: &Core, id: Uuid, event: TriggerEvent) {
    let entry = core.registry.lock().get(&id).cloned();
    if let Some(entry) = entry {
        let _ = entry.events.send(event);
    }
}

/// What one trigger task works on.
struct Job {
    payload: ActionTriggerPayload,
    /// The `send` frame around the payload's JSON text.
    frame: Utf8Bytes,
    start: Start,
    /// When it was admitted (its queue wait runs from here).
    admitted_at: Instant,
    /// Its place in the slot queue, taken in admission order when the job is made: tasks
    /// run in whatever order the runtime picks, and slots must go to triggers in the
    /// order they were admitted (after a restart, the engine may still be running the
    /// first ones, and their re-sends must hold slots before new triggers take them).
    slot: SlotRequest,
    /// A resumed trigger's mark in [`Core::unanswered_resumed`].
    unanswered: Unanswered,
}

/// Counts a resumed trigger in [`Core::unanswered_resumed`] until its first answer from
/// the engine or its end, whichever comes first.
struct Unanswered(Option<Arc<AtomicU64>>);

impl Unanswered {
    /// The mark of one of the resumed triggers counted when `core` was made.
    fn of(core: &Core) -> Unanswered {
        Unanswered(Some(core.unanswered_resumed.clone()))
    }

    fn answered(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.answered();
    }
}

/// Where a trigger task starts.
enum Start {
    /// New, its `accepted` row written with its chunk's in one batch
    /// ([`DispatcherHandle::submit_chunk`]), at `accepted_at`: what the store answered
    /// (the state the correlationId already had, if any), or why the write failed.
    Stored {
        accepted_at: chrono::DateTime<Utc>,
        stored: Result<Option<TriggerState>, String>,
    },
    /// A stored unfinished trigger.
    Resume(Resume),
}

/// A stored unfinished trigger, as its resumption needs it.
struct Resume {
    state: TriggerState,
    /// Sends so far.
    attempts: u32,
    /// The ordering key its CRM rows use ([`crm_ordering_key`] of its acceptance time).
    crm_key: String,
}

/// One trigger's life. Always ends by publishing an outcome and leaving the registry.
async fn drive(
    core: Arc<Core>,
    entry: Arc<Entry>,
    events: mpsc::UnboundedReceiver<TriggerEvent>,
    job: Job,
    permit: OwnedSemaphorePermit,
) {
    let id = job.payload.correlation_id;
    let (admission, outcome) = run(&core, &entry, events, job).await;
    // Whatever happened, the slot goes back (normally the router freed it already).
    drop(entry.slot.lock().take());
    metrics::counter!(m::TRIGGERS, "state" => state_label(outcome.state)).increment(1);
    entry
        .phase
        .send_replace(Phase::Done(admission, Box::new(outcome)));
    let now_empty = {
        let mut registry = core.registry.lock();
        if registry.get(&id).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            registry.remove(&id);
        }
        registry.is_empty()
    };
    drop(permit);
    if now_empty {
        core.idle.notify_waiters();
    }
}

/// Where a running trigger stands.
struct Run<'a> {
    core: &'a Core,
    payload: &'a ActionTriggerPayload,
    parameters_sha256: String,
    acked: bool,
    attempts: u32,
    /// Re-sends on the payload's `maxRetries`.
    retries: u32,
    /// Re-sent at least once after a refusal.
    retried: bool,
    accepted_at: chrono::DateTime<Utc>,
    crm_key: String,
    first_sent: Option<(Instant, chrono::DateTime<Utc>)>,
    queue_wait: Option<Duration>,
    send_to_ack: Option<Duration>,
    send_to_result: Option<Duration>,
    unanswered: Unanswered,
}

impl Run<'_> {
    fn facts(&self) -> TriggerFacts<'_> {
        TriggerFacts {
            payload: self.payload,
            parameters_sha256: &self.parameters_sha256,
            attempts: self.attempts,
            retries: self.retries,
            started_at: self.first_sent.map_or(self.accepted_at, |(_, at)| at),
            crm_key: &self.crm_key,
            queue_wait: self.queue_wait,
            send_to_ack: self.send_to_ack,
            send_to_result: self.send_to_result,
        }
    }

    fn outcome(&self, state: TriggerState, error: Option<String>) -> Outcome {
        Outcome {
            correlation_id: self.payload.correlation_id,
            state,
            error,
            retries: self.retries,
            queue_wait: self.queue_wait,
            send_to_ack: self.send_to_ack,
            send_to_result: self.send_to_result,
            already_final: false,
        }
    }

    /// Where it stands in the store now (for an outcome when halted).
    fn stored_state(&self) -> TriggerState {
        if self.acked {
            TriggerState::Sent
        } else {
            TriggerState::Accepted
        }
    }

    fn halted(&self) -> Outcome {
        let reason = self
            .core
            .halt_reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the dispatcher stopped".into());
        self.outcome(self.stored_state(), Some(format!("not finished: {reason}")))
    }

    /// Counts a re-send after a refusal; false when `on_budget` and the payload's
    /// `maxRetries` are spent. One off the budget (see [`ORPHAN_GRACE`]) is counted in the
    /// totals but not in the trigger's `retries`.
    fn take_retry(&mut self, on_budget: bool) -> bool {
        if on_budget && self.retries >= u32::from(self.payload.max_retries) {
            return false;
        }
        if !self.retried {
            self.retried = true;
            self.core.triggers_retried.fetch_add(1, Ordering::Relaxed);
        }
        if on_budget {
            self.retries += 1;
        }
        self.core.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::RETRIES).increment(1);
        true
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), Outcome> {
        match self.core.commit(batch).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let reason = format!("store write failed: {e}");
                tracing::error!(correlation_id = %self.payload.correlation_id, %reason);
                self.core.halt_with(reason.clone());
                Err(self.outcome(self.stored_state(), Some(reason)))
            }
        }
    }

    /// Final refusal without a result: `Rejected` (+ CRM `initiated`/`failed`).
    async fn reject(&self, code: &str, message: String) -> Outcome {
        let refusal = Refusal {
            code: code.to_owned(),
            message,
        };
        let batch = self
            .core
            .config
            .recorder
            .rejected(&self.facts(), &refusal, Utc::now());
        if let Err(o) = self.commit(batch).await {
            return o;
        }
        self.outcome(TriggerState::Rejected, Some(refusal.message))
    }
}

/// A trigger as the store holds it once its `accepted` write answered.
struct Stored {
    admission: Admission,
    /// Stored `sent`: acknowledged before.
    acked: bool,
    attempts: u32,
    crm_key: String,
    accepted_at: chrono::DateTime<Utc>,
}

/// What an `accepted` write's answer (`Ok(state it already had)`, or why it failed)
/// means for the trigger: go on, or end now with this outcome.
async fn stored_admission(
    core: &Core,
    id: Uuid,
    accepted_at: chrono::DateTime<Utc>,
    answer: Result<Option<TriggerState>, String>,
) -> Result<Stored, (Option<Admission>, Outcome)> {
    let failed = |reason: String| {
        core.halt_with(reason.clone());
        let mut o = Outcome::bare(id, TriggerState::Accepted);
        o.error = Some(reason);
        (None, o)
    };
    let stored = |admission, acked, crm_key| Stored {
        admission,
        acked,
        attempts: 0,
        crm_key,
        accepted_at,
    };
    match answer {
        Err(reason) => Err(failed(reason)),
        Ok(None) => Ok(stored(
            Admission::New,
            false,
            crm_ordering_key(accepted_at, id),
        )),
        Ok(Some(state)) if state.is_unfinished() => {
            // Stored unfinished by another gcx on this store: its rows' key is the
            // stored one.
            let key = match core.store.trigger(id).await {
                Ok(Some(row)) => Ok(crm_ordering_key(row.accepted_at, row.correlation_id)),
                Ok(None) => Ok(crm_ordering_key(accepted_at, id)),
                Err(e) => Err(e),
            };
            match key {
                Ok(key) => Ok(stored(
                    Admission::Resumed(state),
                    state == TriggerState::Sent,
                    key,
                )),
                Err(e) => Err(failed(format!("store read failed: {e}"))),
            }
        }
        Ok(Some(state)) => {
            let mut o = Outcome::bare(id, state);
            o.already_final = true;
            Err((Some(Admission::AlreadyFinal(state)), o))
        }
    }
}

/// A new trigger's `accepted` row.
fn accept_write(
    payload: &ActionTriggerPayload,
    text: Box<RawValue>,
    at: chrono::DateTime<Utc>,
) -> TriggerWrite {
    TriggerWrite::Accept {
        correlation_id: payload.correlation_id,
        action_type: payload.action_type.clone(),
        payload: text,
        at,
    }
}

/// The payload's JSON text (stored) and the `send` frame around it, serialized once.
fn texts(payload: &ActionTriggerPayload) -> (Box<RawValue>, Utf8Bytes) {
    let text = crate::store::json_text(payload);
    let frame = Utf8Bytes::from(send_frame(&text));
    (text, frame)
}

/// A trigger of a chunk, admitted and waiting for the chunk's `accepted` write.
struct Admitted {
    entry: Arc<Entry>,
    events: mpsc::UnboundedReceiver<TriggerEvent>,
    payload: ActionTriggerPayload,
    frame: Utf8Bytes,
    accepted_at: chrono::DateTime<Utc>,
    admitted_at: Instant,
    permit: OwnedSemaphorePermit,
}

/// What [`DispatcherHandle::register`] found.
enum Registered {
    /// The trigger in flight with that id.
    Existing(Ticket),
    New(Arc<Entry>, mpsc::UnboundedReceiver<TriggerEvent>, Ticket),
}

async fn run(
    core: &Core,
    entry: &Entry,
    mut events: mpsc::UnboundedReceiver<TriggerEvent>,
    job: Job,
) -> (Option<Admission>, Outcome) {
    let payload = &job.payload;
    let id = payload.correlation_id;
    let admitted_at = job.admitted_at;
    let frame = job.frame;

    // 1. Durable first.
    let stored = match job.start {
        Start::Resume(r) => Ok(Stored {
            admission: Admission::Resumed(r.state),
            acked: r.state == TriggerState::Sent,
            attempts: r.attempts,
            crm_key: r.crm_key,
            accepted_at: Utc::now(),
        }),
        Start::Stored {
            accepted_at,
            stored,
        } => stored_admission(core, id, accepted_at, stored).await,
    };
    let Stored {
        admission,
        acked,
        attempts,
        crm_key,
        accepted_at,
    } = match stored {
        Ok(s) => s,
        Err(done) => return done,
    };
    entry.phase.send_replace(Phase::Accepted(admission));

    let mut run = Run {
        core,
        payload,
        parameters_sha256: parameters_sha256(&payload.parameter_matrix),
        acked,
        attempts,
        retries: 0,
        retried: false,
        accepted_at,
        crm_key,
        first_sent: None,
        queue_wait: None,
        send_to_ack: None,
        send_to_result: None,
        unanswered: job.unanswered,
    };

    // 2. A slot, once the engine has told us its limit.
    if core.wait_connected().await.is_none() {
        return (Some(admission), run.halted());
    }
    let slot_wait = Instant::now();
    let slot = tokio::select! {
        s = tokio::time::timeout(core.config.slot_timeout, job.slot.granted()) => s,
        _ = core.halt.cancelled() => return (Some(admission), run.halted()),
    };
    let Ok(slot) = slot else {
        let message = format!(
            "concurrency slot timeout: no slot free within {:?} (limit {}, dispatch.slot_timeout)",
            core.config.slot_timeout,
            core.slots.limit()
        );
        return (Some(admission), run.reject("slot_timeout", message).await);
    };
    metrics::histogram!(m::SLOT_WAIT).record(slot_wait.elapsed().as_secs_f64());
    run.queue_wait = Some(admitted_at.elapsed());
    *entry.slot.lock() = Some(slot);
    metrics::gauge!(m::IN_FLIGHT).set(f64::from(core.slots.in_use()));
    let outcome = send_until_done(&mut run, entry, &mut events, &frame).await;
    metrics::gauge!(m::IN_FLIGHT).set(f64::from(core.slots.in_use()));
    (Some(admission), outcome)
}

/// Sends, and re-sends as the answers require, until a result or a final refusal.
async fn send_until_done(
    run: &mut Run<'_>,
    entry: &Entry,
    events: &mut mpsc::UnboundedReceiver<TriggerEvent>,
    frame: &Utf8Bytes,
) -> Outcome {
    let core = run.core;
    // Events taken off the channel early (while looking for a result behind an ack).
    let mut early: VecDeque<TriggerEvent> = VecDeque::new();
    'send: loop {
        let Some(epoch) = core.send(frame).await else {
            return run.halted();
        };
        let sent = Instant::now();
        run.attempts += 1;
        if run.first_sent.is_none() {
            run.first_sent = Some((sent, Utc::now()));
        }
        loop {
            let event = if let Some(e) = early.pop_front() {
                Some(e)
            } else {
                tokio::select! {
                e = events.recv() => e,
                _ = tokio::time::sleep_until(sent + core.config.result_timeout) => {
                    tracing::warn!(correlation_id = %run.payload.correlation_id,
                        "no answer within {:?}; sending again", core.config.result_timeout);
                    continue 'send;
                }
                _ = core.halt.cancelled() => return run.halted(),
                }
            };
            let Some(event) = event else {
                return run.halted();
            };
            match event {
                TriggerEvent::Ack { duplicate, at } => {
                    run.unanswered.answered();
                    if run.acked {
                        continue;
                    }
                    run.acked = true;
                    run.send_to_ack = Some(at.saturating_duration_since(sent));
                    tracing::trace!(correlation_id = %run.payload.correlation_id, duplicate, "acked");
                    // A result already waiting (fast actions) goes into the same batch.
                    while let Ok(e) = events.try_recv() {
                        early.push_back(e);
                    }
                    if let Some(i) = early
                        .iter()
                        .position(|e| matches!(e, TriggerEvent::Result(..)))
                        && let Some(TriggerEvent::Result(result, at)) = early.remove(i)
                    {
                        return finish(run, Some(Utc::now()), &result, at).await;
                    }
                    let batch = core.config.recorder.acked(&run.facts(), Utc::now());
                    if let Err(o) = run.commit(batch).await {
                        return o;
                    }
                }
                TriggerEvent::Result(result, at) => {
                    // Never unacked in practice (the ack comes first on the wire); if it
                    // were, its `Sent` step is written with the result.
                    let acked_now = (!run.acked).then(Utc::now);
                    run.acked = true;
                    return finish(run, acked_now, &result, at).await;
                }
                TriggerEvent::Refused {
                    code,
                    message,
                    payload,
                } => match code {
                    429 | 500..=599 => {
                        // The 429 may be for capacity held by a previous process's
                        // actions: retried, but not on the trigger's budget.
                        let on_budget = code != 429 || !core.orphans_possible();
                        if !run.take_retry(on_budget) {
                            let what = if code == 429 {
                                "rate_limited"
                            } else {
                                "unavailable"
                            };
                            let text = format!(
                                "the engine refused it with {code} ({message}) and its maxRetries ({}) are spent",
                                run.payload.max_retries
                            );
                            return run.reject(what, text).await;
                        }
                        // The engine did not take it: give the slot back while waiting,
                        // then queue first for one (a 429 can mean the limit was lowered;
                        // holding slots through it would keep the engine full of retries).
                        drop(entry.slot.lock().take());
                        let asked = payload.retry_after_ms.map(Duration::from_millis);
                        let wait = core
                            .config
                            .refusal_retry
                            .next_delay(run.retries.saturating_sub(1), asked, Duration::ZERO)
                            .unwrap_or_default();
                        let slot = tokio::select! {
                            s = async {
                                tokio::time::sleep(wait).await;
                                core.slots.acquire_first().await
                            } => s,
                            _ = core.halt.cancelled() => return run.halted(),
                        };
                        *entry.slot.lock() = Some(slot);
                        continue 'send;
                    }
                    403 => {
                        let scopes = payload.missing_scopes.unwrap_or_default().join(", ");
                        let text = format!(
                            "the engine refused it (403 {message}); the OAuth client lacks the scope(s) {scopes}"
                        );
                        return run.reject("forbidden", text).await;
                    }
                    _ => {
                        let details = payload
                            .details
                            .unwrap_or_default()
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ");
                        let text = if details.is_empty() {
                            format!("the engine rejected it ({code} {message})")
                        } else {
                            format!("the engine rejected it ({code} {message}): {details}")
                        };
                        return run.reject("rejected", text).await;
                    }
                },
                TriggerEvent::Lost { epoch: lost } => {
                    if lost != epoch {
                        continue;
                    }
                    if !run.acked && !run.take_retry(true) {
                        let text = format!(
                            "the connection was lost before the engine acknowledged it and its maxRetries ({}) are spent",
                            run.payload.max_retries
                        );
                        return run.reject("connection_lost", text).await;
                    }
                    continue 'send;
                }
            }
        }
    }
}

/// Writes the result (with the `Sent` step first when `acked_at` is set, in one batch)
/// and returns the outcome.
async fn finish(
    run: &mut Run<'_>,
    acked_at: Option<chrono::DateTime<Utc>>,
    result: &ResultPayload,
    received: Instant,
) -> Outcome {
    let core = run.core;
    let first = run.first_sent.map_or(received, |(at, _)| at);
    let latency = received.saturating_duration_since(first);
    run.send_to_result = Some(latency);
    metrics::histogram!(m::SEND_TO_RESULT).record(latency.as_secs_f64());
    let mut batch = match acked_at {
        Some(at) => core.config.recorder.acked(&run.facts(), at),
        None => WriteBatch::default(),
    };
    let done = core
        .config
        .recorder
        .finished(&run.facts(), result, Utc::now());
    batch.triggers.extend(done.triggers);
    batch.outbox.extend(done.outbox);
    batch.audit.extend(done.audit);
    if let Err(o) = run.commit(batch).await {
        return o;
    }
    let (state, error) = match result.state {
        ResultState::Completed => (TriggerState::Completed, None),
        ResultState::Failed => (
            TriggerState::Failed,
            Some(result.error.as_ref().map_or_else(
                || "the engine reported failure".to_owned(),
                |e| format!("{}: {}", e.code, e.message),
            )),
        ),
    };
    run.outcome(state, error)
}

/// `{"type":"send","payload":…}` around the payload's JSON text (the same text
/// `WsMessage::send(p).to_json()` gives, without building a JSON tree first).
fn send_frame(payload: &RawValue) -> String {
    #[derive(serde::Serialize)]
    struct Send<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        payload: &'a serde_json::value::RawValue,
    }
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_string(&Send {
        kind: "send",
        payload,
    })
    .unwrap_or_default()
}

fn state_label(state: TriggerState) -> &'static str {
    match state {
        TriggerState::Accepted => "accepted",
        TriggerState::Sent => "sent",
        TriggerState::Completed => "completed",
        TriggerState::Failed => "failed",
        TriggerState::Rejected => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_frame_is_the_protocol_message() {
        let payload: ActionTriggerPayload = serde_json::from_value(serde_json::json!({
            "actionType": "knowledge_search",
            "parameterMatrix": {"query": "q \"quoted\"", "maxResults": 3},
            "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                                 "sessionId": "s", "interactionType": "chat"},
            "correlationId": "550e8400-e29b-41d4-a716-446655440000",
            "maxRetries": 1
        }))
        .unwrap();
        assert_eq!(
            send_frame(&crate::store::json_text(&payload)),
            gcx_protocol::assist::WsMessage::send(&payload).to_json()
        );
    }
}
