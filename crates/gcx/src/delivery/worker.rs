//! The outbox worker: one loop per endpoint takes due rows from the store, runs each
//! through the stages (sign and send in [`attempt`](super::attempt), judge in
//! [`schedule`](super::schedule), record in the store), and keeps its endpoint's circuit
//! breaker and parallelism.
//!
//! Invariants:
//! - A row is in flight at most once per worker: the loop remembers what it started and
//!   skips it when the store returns it again before its outcome is recorded.
//! - Due rows are fetched in the background while attempts go on (a fetch scans the
//!   backlog and takes milliseconds). A fetch's snapshot may predate outcomes recorded
//!   while it ran, so the rows settled meanwhile are dropped from its answer.
//! - Per-key order comes from the store: `due_outbox` only ever returns a key's oldest
//!   pending row, and a row leaves `pending` only once its outcome is recorded.
//! - At least once: a row leaves `pending` only after a 2xx (or a dead letter). A crash
//!   between the answer and the record re-sends it, with the same `webhook-id`.
//!
//! One room, although long: the loop, its fetch in the background and its attempts in
//! flight share one endpoint's state (breaker, exhausted flag, in-flight set), and the
//! invariants above are about how those three interleave. The pure decisions live in
//! `schedule.rs` and `breaker.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::breaker::{Admission, CircuitBreaker};
use super::schedule::{RetrySchedule, Verdict};
use super::target::{self, Target};
use super::{DeliveryError, attempt};
use crate::config::Config;
use crate::store::{OutboxMessage, OutboxStatus, Store, StoreError};

/// The longest a loop sleeps without looking at the store: rows committed or endpoints
/// re-enabled by another process are seen within this.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The first wait when rows are pending and due yet none can go (they wait behind a
/// predecessor of their key); it doubles up to [`IDLE_POLL`] while that lasts.
const BLOCKED_POLL: Duration = Duration::from_millis(5);
/// How long a loop waits after the store failed (a query, or a due-row fetch) before
/// trying it again.
const STORE_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How often the backlog gauge is refreshed.
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);
/// Most due rows fetched ahead of the free slots. Asking the store for due rows costs
/// about the same for 1 row as for hundreds (it must skip keys blocked behind a pending
/// predecessor), so rows are fetched in batches and started from a local queue, and the
/// next batch is fetched while the queue still holds half of this.
const PREFETCH_MIN: usize = 256;
/// How often `drain` looks at the store when no attempt finished meanwhile.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What the worker has done since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounters {
    /// Messages answered 2xx.
    pub delivered: u64,
    /// Failed attempts scheduled for another try.
    pub retried: u64,
    /// Messages this worker moved to dead letters.
    pub dead_lettered: u64,
    /// Pending rows in the store at the last refresh (every second, and at `drain`).
    pub backlog: u64,
    /// Store queries made to find work (due-row fetches, next-due-time reads): while
    /// nothing is due and the store does not change, this stays still.
    pub looks: u64,
}

/// The store's outbox after a [`DeliveryHandle::drain`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Rows delivered, ever.
    pub delivered: u64,
    /// Rows still pending: not yet due, behind a disabled endpoint or one without a URL,
    /// or not delivered before the timeout.
    pub pending: u64,
    /// Dead letters, ever (until replayed).
    pub dead: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    backlog: AtomicU64,
    looks: AtomicU64,
}

/// What every loop and attempt shares.
struct Shared {
    store: Store,
    client: reqwest::Client,
    schedule: RetrySchedule,
    max_parallel: usize,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    counters: Counters,
    /// Attempts started and not yet recorded, across endpoints: `drain` waits for them so
    /// that the counters it leaves behind are final.
    in_flight: AtomicUsize,
    /// Signalled after each recorded outcome, so `drain` re-checks at once.
    progress: Notify,
    /// Cancelled by `shutdown` (or dropping the handle): loops stop starting attempts.
    cancel: CancellationToken,
}

/// Namespace of [`DeliveryWorker::spawn`].
pub struct DeliveryWorker;

impl DeliveryWorker {
    /// Starts one delivery loop per configured endpoint (`crm` from `config.crm`, `qa` from
    /// `config.qa`; an endpoint without a URL is skipped and its rows stay pending).
    /// Must be called inside a tokio runtime.
    pub fn spawn(store: Store, config: &Config) -> Result<DeliveryHandle, DeliveryError> {
        Self::spawn_for(store, config, &[target::CRM, target::QA])
    }

    /// [`spawn`](Self::spawn) for the endpoints in `names` only: the rows of the others
    /// are left to a worker that serves them (the simulator delivers its QA export and
    /// leaves the CRM's rows alone).
    pub fn spawn_for(
        store: Store,
        config: &Config,
        names: &[&str],
    ) -> Result<DeliveryHandle, DeliveryError> {
        let targets = target::named(config, names)?;
        let d = &config.delivery;
        if d.max_parallel_per_endpoint == 0 {
            return Err(DeliveryError::InvalidSetting {
                setting: "delivery.max_parallel_per_endpoint",
                reason: "is 0; accepted: at least 1".into(),
            });
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DeliveryError::NoRuntime)?;
        // Redirects are not followed: a 3xx is a final answer (a dead letter), since a
        // redirected POST may turn into a GET that looks delivered.
        let client = crate::http_client::builder(d.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(DeliveryError::HttpClient)?;
        let shared = Arc::new(Shared {
            store,
            client,
            schedule: RetrySchedule::new(d.schedule.clone()),
            max_parallel: d.max_parallel_per_endpoint,
            breaker_failures: d.breaker_failures,
            breaker_cooldown: d.breaker_cooldown,
            counters: Counters::default(),
            in_flight: AtomicUsize::new(0),
            progress: Notify::new(),
            cancel: CancellationToken::new(),
        });
        let mut wakers = Vec::new();
        let mut tasks = Vec::new();
        let mut names = Vec::new();
        for target in targets {
            let wake = Arc::new(Notify::new());
            names.push(target.name);
            let endpoint = EndpointLoop {
                breaker: CircuitBreaker::new(shared.breaker_failures, shared.breaker_cooldown),
                shared: shared.clone(),
                target: Arc::new(target),
                wake: wake.clone(),
                disabled: true,
                blocked_wait: BLOCKED_POLL,
                in_flight: HashMap::new(),
                queued: VecDeque::new(),
                claimed: HashSet::new(),
                attempts: JoinSet::new(),
                fetch: None,
                settled_during_fetch: HashSet::new(),
                fetch_paused_until: None,
                fetch_limit: 0,
                exhausted: false,
                fetch_counter: None,
                quiet: None,
            };
            wakers.push(wake);
            tasks.push(runtime.spawn(endpoint.run()));
        }
        tasks.push(runtime.spawn(refresh_backlog(shared.clone())));
        tracing::info!(endpoints = ?names, "delivery worker started");
        Ok(DeliveryHandle {
            shared,
            wakers,
            endpoints: names,
            tasks,
        })
    }
}

/// Controls a running worker. [`shutdown`](Self::shutdown) stops it gracefully; dropping
/// it stops it at once (see its `Drop`).
pub struct DeliveryHandle {
    shared: Arc<Shared>,
    /// One per endpoint loop: `notify` wakes them all.
    wakers: Vec<Arc<Notify>>,
    /// The configured endpoints, which `drain` waits for.
    endpoints: Vec<&'static str>,
    tasks: Vec<JoinHandle<()>>,
}

impl DeliveryHandle {
    /// New rows were committed (or an endpoint re-enabled, or dead letters replayed):
    /// look at the store now instead of at the next poll.
    pub fn notify(&self) {
        for wake in &self.wakers {
            wake.notify_one();
        }
    }

    /// The configured endpoints (`crm`, `qa`), in the order they were configured.
    pub fn endpoints(&self) -> &[&'static str] {
        &self.endpoints
    }

    /// Waits until no configured, enabled endpoint has a pending row, or `timeout`;
    /// then reports the store's outbox counts (`pending` > 0 means something is still
    /// undelivered: not due yet, on a disabled or unconfigured endpoint, or too slow).
    pub async fn drain(&self, timeout: Duration) -> Result<DrainReport, DeliveryError> {
        let deadline = Instant::now() + timeout;
        self.notify();
        loop {
            let progressed = self.shared.progress.notified();
            if self.settled().await? || Instant::now() >= deadline {
                break;
            }
            let nap = DRAIN_POLL.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = progressed => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
        let counts = self.shared.store.outbox_counts().await?;
        set_backlog(&self.shared, counts.pending);
        Ok(DrainReport {
            delivered: counts.delivered,
            pending: counts.pending,
            dead: counts.dead,
        })
    }

    /// Waits until the message `message_id` has left `pending` (delivered or dead), or
    /// `timeout`; returns it as stored then (`None`: no message has that id).
    pub async fn wait_for(
        &self,
        message_id: &str,
        timeout: Duration,
    ) -> Result<Option<OutboxMessage>, DeliveryError> {
        let deadline = Instant::now() + timeout;
        self.notify();
        loop {
            let progressed = self.shared.progress.notified();
            let row = self.shared.store.outbox_message(message_id).await?;
            let settled = row
                .as_ref()
                .is_none_or(|r| r.status != OutboxStatus::Pending);
            if settled || Instant::now() >= deadline {
                return Ok(row);
            }
            let nap = DRAIN_POLL.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = progressed => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Whether every configured, enabled endpoint has nothing pending and no attempt
    /// is still being recorded.
    async fn settled(&self) -> Result<bool, StoreError> {
        if self.shared.in_flight.load(Relaxed) > 0 {
            return Ok(false);
        }
        let store = &self.shared.store;
        for name in &self.endpoints {
            if store.endpoint_state(name).await?.disabled {
                continue;
            }
            if store.next_outbox_due(name).await?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What the worker has done since it was spawned.
    pub fn counters(&self) -> DeliveryCounters {
        let c = &self.shared.counters;
        DeliveryCounters {
            delivered: c.delivered.load(Relaxed),
            retried: c.retried.load(Relaxed),
            dead_lettered: c.dead_lettered.load(Relaxed),
            backlog: c.backlog.load(Relaxed),
            looks: c.looks.load(Relaxed),
        }
    }

    /// Stops starting attempts, waits for those in flight to be answered (at most the
    /// request timeout) and recorded, then returns.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a delivery loop ended abnormally");
            }
        }
        tracing::info!(counters = ?self.counters(), "delivery worker stopped");
    }
}

impl Drop for DeliveryHandle {
    /// Stops at once, as a killed process would: attempts in flight are abandoned
    /// unrecorded, so their rows stay pending and the next worker sends them again (with
    /// the same `webhook-id`). [`shutdown`](DeliveryHandle::shutdown) is the graceful way.
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Refreshes the backlog gauge every [`BACKLOG_REFRESH`], but only when the store changed
/// since the last count (counting a large outbox is not free; a waiting one does not
/// change).
async fn refresh_backlog(shared: Arc<Shared>) {
    let mut counted_at = None;
    loop {
        let counter = shared.store.change_counter().unwrap_or(None);
        if counter.is_none() || counter != counted_at {
            match shared.store.outbox_counts().await {
                Ok(counts) => {
                    set_backlog(&shared, counts.pending);
                    counted_at = counter;
                }
                Err(e) => tracing::debug!(error = %e, "cannot refresh the outbox backlog"),
            }
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(BACKLOG_REFRESH) => {}
        }
    }
}

fn set_backlog(shared: &Shared, pending: u64) {
    shared.counters.backlog.store(pending, Relaxed);
    metrics::gauge!("gcx_outbox_backlog").set(pending as f64);
}

/// What an attempt task reports back to its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The endpoint answered in a way that proves it is up (2xx, or a final 4xx).
    Healthy,
    /// No answer or a retryable status: counts towards opening the breaker.
    Failing,
    /// 410: the endpoint is now disabled.
    Gone,
    /// The outcome could not be recorded; the row stays as it was and is tried again.
    Unrecorded,
}

/// The delivery loop of one endpoint.
struct EndpointLoop {
    shared: Arc<Shared>,
    target: Arc<Target>,
    /// Woken by `DeliveryHandle::notify`.
    wake: Arc<Notify>,
    breaker: CircuitBreaker,
    /// Disabled after a 410; starts `true` so the first round reads the stored state.
    disabled: bool,
    /// The current wait while due rows are blocked behind their key's predecessor.
    blocked_wait: Duration,
    /// Attempt task -> outbox row id, for the rows started and not yet recorded.
    in_flight: HashMap<tokio::task::Id, i64>,
    /// Due rows fetched and not started yet, oldest first. Each is its key's oldest pending
    /// row, and stays so until its own outcome is recorded, so starting it later is safe.
    queued: VecDeque<OutboxMessage>,
    /// Ids queued or in flight: the store returns them again until they are recorded.
    claimed: HashSet<i64>,
    attempts: JoinSet<Settled>,
    /// The due-row fetch running in the background, if any.
    fetch: Option<JoinHandle<Result<Vec<OutboxMessage>, StoreError>>>,
    /// Ids whose outcome was recorded while `fetch` ran: its snapshot may show them still
    /// pending, so they are dropped from its answer.
    settled_during_fetch: HashSet<i64>,
    /// After a failed fetch, no new one starts before this.
    fetch_paused_until: Option<Instant>,
    /// How many rows the running fetch asked for: an answer with fewer is every due row.
    fetch_limit: usize,
    /// The last fetch returned every row that was due: no new fetch starts until something
    /// may have made more rows due (a wake, a recorded outcome, a due time reached, the
    /// idle poll). Without it an empty answer would start the next fetch at once, a
    /// store query after another while nothing is due.
    exhausted: bool,
    /// The store's change counter read just before the running (or last) fetch started.
    fetch_counter: Option<i64>,
    /// What the last look found when nothing could start: while the store's change
    /// counter stays the same and the next due time has not come, nothing new can be due,
    /// so the loop waits without querying (a backlog in back-off costs nothing to watch).
    quiet: Option<Quiet>,
}

/// The store as the last full look left it, with nothing startable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quiet {
    /// The change counter before that look's fetch.
    counter: i64,
    /// The earliest due time of a key's oldest pending row; `None`: nothing pending.
    next_due: Option<chrono::DateTime<Utc>>,
}

impl EndpointLoop {
    async fn run(mut self) {
        let name = self.target.name;
        loop {
            while let Some(done) = self.attempts.try_join_next_with_id() {
                self.absorb(done);
            }
            if self.shared.cancel.is_cancelled() {
                break;
            }
            let wait = match self.fill().await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(endpoint = name, error = %e, "outbox store unavailable");
                    STORE_ERROR_PAUSE
                }
            };
            tokio::select! {
                biased;
                _ = self.shared.cancel.cancelled() => break,
                Some(done) = self.attempts.join_next_with_id(), if !self.attempts.is_empty() => {
                    self.absorb(done);
                }
                fetched = fetched(&mut self.fetch), if self.fetch.is_some() => {
                    self.fetch = None;
                    self.take_fetched(fetched);
                }
                _ = self.wake.notified() => self.look_again(),
                // Without a quiet store to check, the wait's end is the cue to look again.
                _ = tokio::time::sleep(wait) => if self.quiet.is_none() {
                    self.exhausted = false;
                },
            }
        }
        if let Some(fetch) = self.fetch.take() {
            fetch.abort();
        }
        // Let attempts in flight finish so their outcome is recorded, not re-sent.
        while let Some(done) = self.attempts.join_next_with_id().await {
            self.absorb(done);
        }
    }

    /// Starts as many due rows as the breaker and parallelism allow; returns how long
    /// to wait before looking again (a finished attempt or `notify` wakes it sooner).
    async fn fill(&mut self) -> Result<Duration, StoreError> {
        let shared = self.shared.clone();
        let store = &shared.store;
        let name = self.target.name;
        if self.disabled {
            if store.endpoint_state(name).await?.disabled {
                return Ok(IDLE_POLL);
            }
            self.disabled = false;
            self.breaker.reset();
        }
        let now = Instant::now();
        let room = match self
            .breaker
            .admit(now, self.in_flight.len(), self.shared.max_parallel)
        {
            Admission::WaitUntil(at) => return Ok(at.saturating_duration_since(now)),
            Admission::Send(0) => return Ok(IDLE_POLL),
            Admission::Send(n) => n,
        };
        if let Some(wait) = self.still_quiet()? {
            return Ok(wait);
        }
        // Refill in batches, in the background: asking the store after every single
        // answer would re-read the rows in flight each time (they stay pending until
        // recorded), and waiting for the answer would leave slots idle meanwhile.
        let batch = PREFETCH_MIN.max(4 * self.shared.max_parallel);
        let paused = self.fetch_paused_until.filter(|until| now < *until);
        if paused.is_none()
            && !self.exhausted
            && self.fetch.is_none()
            && self.queued.len() < room.max(batch / 2)
        {
            self.fetch_counter = store.change_counter()?;
            self.shared.counters.looks.fetch_add(1, Relaxed);
            let store = store.clone();
            let limit = self.claimed.len() + batch;
            self.fetch_limit = limit;
            self.settled_during_fetch.clear();
            self.fetch = Some(tokio::spawn(async move {
                store.due_outbox(name, Utc::now(), limit).await
            }));
        }
        let low_water = (self.shared.max_parallel / 4).max(1);
        if room < low_water && !self.in_flight.is_empty() {
            return Ok(IDLE_POLL);
        }
        let mut started = 0;
        while started < room {
            let Some(row) = self.queued.pop_front() else {
                break;
            };
            let counted = InFlight::start(self.shared.clone());
            let id = row.id;
            let handle = self
                .attempts
                .spawn(deliver(counted, self.target.clone(), row));
            self.in_flight.insert(handle.id(), id);
            started += 1;
        }
        self.breaker.started(started);
        if started > 0 {
            self.blocked_wait = BLOCKED_POLL;
        }
        if started == room || self.fetch.is_some() {
            // Full, or rows on their way: a finishing attempt or the fetch wakes the loop.
            return Ok(IDLE_POLL);
        }
        if let Some(until) = paused {
            return Ok(until.saturating_duration_since(now));
        }
        self.shared.counters.looks.fetch_add(1, Relaxed);
        let next = store.next_outbox_due(name).await?;
        if self.exhausted
            && let Some(counter) = self.fetch_counter
        {
            self.quiet = Some(Quiet {
                counter,
                next_due: next,
            });
        }
        let Some(next) = next else {
            return Ok(IDLE_POLL);
        };
        match (next - Utc::now()).to_std() {
            Ok(wait) if !wait.is_zero() => Ok(wait.min(IDLE_POLL)),
            // Due, yet not startable: in flight, or behind its key's predecessor (which
            // may be in back-off and fall due any moment). Look again soon, then less
            // often while that lasts.
            _ => {
                let wait = self.blocked_wait;
                self.blocked_wait = (wait * 2).min(IDLE_POLL);
                Ok(wait)
            }
        }
    }

    /// While the store is as the last look left it and its next due time has not come,
    /// how long to wait; `None`: look at the store.
    fn still_quiet(&mut self) -> Result<Option<Duration>, StoreError> {
        let Some(quiet) = self.quiet else {
            return Ok(None);
        };
        let wait = match quiet.next_due {
            None => IDLE_POLL,
            Some(at) => match (at - Utc::now()).to_std() {
                Ok(wait) if !wait.is_zero() => wait.min(IDLE_POLL),
                _ => {
                    self.look_again();
                    return Ok(None);
                }
            },
        };
        if self.shared.store.change_counter()? != Some(quiet.counter) {
            self.look_again();
            return Ok(None);
        }
        Ok(Some(wait))
    }

    /// Something may have made rows due: the next round fetches again.
    fn look_again(&mut self) {
        self.exhausted = false;
        self.quiet = None;
    }

    fn absorb(&mut self, done: Result<(tokio::task::Id, Settled), tokio::task::JoinError>) {
        let (task, settled) = match done {
            Ok((task, settled)) => (task, settled),
            Err(e) => {
                tracing::error!(endpoint = self.target.name, error = %e, "a delivery attempt died");
                (e.id(), Settled::Unrecorded)
            }
        };
        // A recorded outcome may make the next row of its key due.
        self.look_again();
        if let Some(id) = self.in_flight.remove(&task) {
            self.claimed.remove(&id);
            if self.fetch.is_some() {
                self.settled_during_fetch.insert(id);
            }
        }
        match settled {
            Settled::Healthy => self.breaker.on_success(),
            Settled::Failing => self.breaker.on_failure(Instant::now()),
            Settled::Gone => {
                // Nothing more goes out; the queued rows are fetched again once enabled.
                self.disabled = true;
                for row in self.queued.drain(..) {
                    self.claimed.remove(&row.id);
                }
                if let Some(fetch) = self.fetch.take() {
                    fetch.abort();
                }
            }
            Settled::Unrecorded => {}
        }
        self.shared.progress.notify_waiters();
    }
}

impl EndpointLoop {
    /// Queues what a background fetch found, but for rows already queued or in flight and
    /// rows settled while it ran.
    fn take_fetched(&mut self, fetched: Fetched) {
        let rows = match fetched {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(endpoint = self.target.name, error = %e, "outbox store unavailable");
                self.fetch_paused_until = Some(Instant::now() + STORE_ERROR_PAUSE);
                return;
            }
            Err(e) => {
                tracing::error!(endpoint = self.target.name, error = %e, "a due-row fetch died");
                self.fetch_paused_until = Some(Instant::now() + STORE_ERROR_PAUSE);
                return;
            }
        };
        self.exhausted = rows.len() < self.fetch_limit;
        for row in rows {
            if !self.settled_during_fetch.contains(&row.id) && self.claimed.insert(row.id) {
                self.queued.push_back(row);
            }
        }
        self.settled_during_fetch.clear();
    }
}

/// A background fetch's answer: the task's end, then the store's.
type Fetched = Result<Result<Vec<OutboxMessage>, StoreError>, tokio::task::JoinError>;

/// Awaits the background fetch (only polled while there is one).
async fn fetched(
    fetch: &mut Option<JoinHandle<Result<Vec<OutboxMessage>, StoreError>>>,
) -> Fetched {
    match fetch.as_mut() {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// One row through the stages: send, judge, record.
async fn deliver(counted: InFlight, target: Arc<Target>, row: OutboxMessage) -> Settled {
    let shared = &counted.0;
    let name = target.name;
    // A `Value` always serializes (its map keys are strings), so this is never `Err`.
    let body = serde_json::to_vec(&row.body).unwrap_or_default();
    let outcome = attempt::send(&shared.client, &target, &row.message_id, body).await;
    let attempts = row.attempts.saturating_add(1);
    let verdict = shared
        .schedule
        .judge(&outcome, attempts, rand::random::<f64>());
    let status = outcome.status();
    let store = &shared.store;
    let settled = if outcome.endpoint_healthy() {
        Settled::Healthy
    } else {
        Settled::Failing
    };
    let recorded = match &verdict {
        Verdict::Delivered => store
            .outbox_delivered(row.id, attempts, status.unwrap_or(200))
            .await
            .map(|()| {
                shared.counters.delivered.fetch_add(1, Relaxed);
                metrics::counter!("gcx_outbox_delivered_total", "endpoint" => name).increment(1);
            }),
        Verdict::Retry { after } => {
            let at = chrono::Duration::from_std(*after)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d))
                .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
            tracing::debug!(endpoint = name, message_id = %row.message_id, attempts,
                outcome = %outcome.describe(), retry_in = ?after, "delivery attempt failed");
            store
                .outbox_retry(row.id, attempts, at, &outcome.describe(), status)
                .await
                .map(|()| {
                    shared.counters.retried.fetch_add(1, Relaxed);
                    metrics::counter!("gcx_outbox_retried_total", "endpoint" => name).increment(1);
                })
        }
        Verdict::Dead { reason } => {
            tracing::warn!(endpoint = name, message_id = %row.message_id, attempts, %reason,
                "message moved to dead letters");
            store
                .outbox_dead(row.id, attempts, reason, status)
                .await
                .map(|()| {
                    shared.counters.dead_lettered.fetch_add(1, Relaxed);
                    metrics::counter!("gcx_outbox_dead_total", "endpoint" => name).increment(1);
                })
        }
        Verdict::EndpointGone => {
            tracing::warn!(
                endpoint = name,
                "endpoint answered 410 Gone: disabled until `gcx outbox enable-endpoint {name}`"
            );
            let reason = format!("HTTP 410 Gone at {}", Utc::now().to_rfc3339());
            match store.set_endpoint_disabled(name, true, Some(&reason)).await {
                // The message stays pending and its attempt is not counted.
                Ok(()) => {
                    store
                        .outbox_retry(
                            row.id,
                            row.attempts,
                            Utc::now(),
                            "HTTP 410 Gone: endpoint disabled",
                            Some(410),
                        )
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
    match recorded {
        Ok(()) if verdict == Verdict::EndpointGone => Settled::Gone,
        Ok(()) => settled,
        Err(e) => {
            tracing::warn!(endpoint = name, message_id = %row.message_id, error = %e,
                "cannot record a delivery outcome; the message will be sent again");
            Settled::Unrecorded
        }
    }
}

/// One attempt counted in `Shared::in_flight` from before it is spawned until it ends,
/// however it ends (an aborted task drops it unpolled).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn start(shared: Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Relaxed);
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.progress.notify_waiters();
    }
}
