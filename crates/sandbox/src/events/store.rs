//! One tenant's events: the receipt log kept for query-back (capped, oldest evicted
//! first), its indexes by sequenceId, agent and batch, every agent's current state, and
//! the queue of batches waiting to be processed.
//!
//! Everything sits behind one short-held lock per tenant. A batch is *received* when it
//! takes that lock and is registered; batches are processed in that order, so the events of
//! one agent are checked in receipt order whether they came sync or async. A batch is
//! processed at once when nothing waits before it; otherwise it joins the queue, which a
//! drain task empties (after `events_async_delay_ms` for async batches).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use gcx_protocol::AgentState;
use gcx_protocol::events::{CODE_INVALID_TRANSITION, EventResult, EventStatus};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::batch::EventIn;
use super::rate::RateWindow;
use crate::AppState;
use crate::stats::EventsStats;

/// A fast hasher for UUID keys (random already; a multiply-mix with a SplitMix64 finish
/// is plenty and much cheaper than SipHash). The sandbox is a local test peer, so hash
/// flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub(crate) struct UuidHasher(u64);

impl Hasher for UuidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

type UuidMap<V> = HashMap<Uuid, V, BuildHasherDefault<UuidHasher>>;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pending,
    Accepted,
    /// Refused by the transition table; `from` is the state the agent stayed in.
    Rejected {
        from: AgentState,
    },
}

impl Outcome {
    pub fn status(self) -> EventStatus {
        match self {
            Outcome::Pending => EventStatus::Pending,
            Outcome::Accepted => EventStatus::Accepted,
            Outcome::Rejected { .. } => EventStatus::Rejected,
        }
    }
}

/// One received event as query-back shows it. Plain data (no heap), so the log is one
/// allocation and a page is copied out under the lock cheaply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub sequence_id: Uuid,
    pub batch_id: Uuid,
    pub agent_id: Uuid,
    pub interaction_id: Uuid,
    pub state: AgentState,
    pub outcome: Outcome,
    /// Unix nanoseconds when its batch was received.
    pub received_at: i64,
    /// Unix nanoseconds when it was processed (meaningless while pending).
    pub processed_at: i64,
}

impl Record {
    /// The sync answer's entry for this event.
    pub fn result(&self, duplicate: bool) -> EventResult {
        NewEvent {
            position: 0,
            sequence_id: self.sequence_id,
            agent_id: self.agent_id,
            state: self.state,
        }
        .result(self.outcome, duplicate)
    }
}

/// A first-seen event of a batch, with what processing and the sync answer need even if
/// the log has evicted its record meanwhile.
#[derive(Debug, Clone, Copy)]
struct NewEvent {
    position: u64,
    sequence_id: Uuid,
    agent_id: Uuid,
    state: AgentState,
}

impl NewEvent {
    fn result(&self, outcome: Outcome, duplicate: bool) -> EventResult {
        let (code, message) = match outcome {
            Outcome::Rejected { from } => (
                Some(CODE_INVALID_TRANSITION.to_owned()),
                Some(transition_message(self.agent_id, from, self.state)),
            ),
            _ => (None, None),
        };
        EventResult {
            sequence_id: self.sequence_id,
            status: outcome.status(),
            code,
            message,
            duplicate: duplicate.then_some(true),
        }
    }
}

/// Why `from -> to` was refused, with what would have been accepted.
pub(crate) fn transition_message(agent: Uuid, from: AgentState, to: AgentState) -> String {
    let allowed: Vec<&str> = from.next_states().iter().map(|s| s.as_wire()).collect();
    format!(
        "agent {agent} is in {from}; {to} is not an allowed next state (allowed: {})",
        allowed.join(", ")
    )
}

/// An agent: its current state and the positions of its events still in the log.
#[derive(Debug, Default)]
struct Agent {
    /// `None` until its first processed event: the first event may be any state.
    state: Option<AgentState>,
    /// Log positions of its kept events, ascending (query by agentIds).
    positions: VecDeque<u64>,
}

/// The log positions `[start, end)` first received in one batch.
#[derive(Debug, Clone, Copy)]
struct BatchSpan {
    start: u64,
    end: u64,
}

/// One event of a batch on its way to processing.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// First time this sequenceId is seen: the n-th of the batch's new events.
    New(usize),
    /// Seen before at `original`; `seen` is that record as it was at receipt, used if it
    /// has been evicted by the time this batch is processed.
    Duplicate { original: u64, seen: Record },
}

/// A received batch waiting to be processed.
struct PendingBatch {
    /// Not processed before this instant (receipt + async delay).
    due: Instant,
    items: Vec<Item>,
    new_events: Vec<NewEvent>,
    /// Where a sync request waits for its results.
    reply: Option<oneshot::Sender<Vec<EventResult>>>,
}

/// How a batch asks to be answered.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    Sync,
    /// Answer 202 at once; process no earlier than `delay` after receipt.
    Async {
        delay: std::time::Duration,
    },
}

/// What `submit` did with a batch.
pub(crate) enum Submitted {
    /// Processed at once; the results in request order (empty for async).
    Done(Vec<EventResult>),
    /// Queued behind earlier batches; the results arrive here (sync only).
    Waiting(oneshot::Receiver<Vec<EventResult>>),
}

/// What a query-back asks for.
pub(crate) enum QueryKey<'a> {
    SequenceIds(&'a [Uuid]),
    Batch(Uuid),
    Agents(&'a [Uuid]),
}

/// One answer's worth of records.
pub(crate) struct Page {
    pub records: Vec<Record>,
    pub not_found: Vec<Uuid>,
    /// Position to resume from, when more records follow.
    pub next: Option<u64>,
}

/// The batchId is not (or no longer) known.
pub(crate) struct UnknownBatch;

/// Everything one tenant has sent.
pub(crate) struct TenantEvents {
    inner: Mutex<Inner>,
    /// Requests that passed authentication, numbered for the seeded fault draws.
    requests: std::sync::atomic::AtomicU64,
    /// The `events_requests_per_minute` window.
    pub window: Mutex<RateWindow>,
    /// Passes of the drain task, so a test sees it sleeps until a batch is due.
    #[cfg(test)]
    drain_wakes: std::sync::atomic::AtomicU64,
}

struct Inner {
    /// Received events in receipt order; `log[0]` is at position `base`.
    log: VecDeque<Record>,
    base: u64,
    /// Most records kept (at least 1).
    cap: usize,
    by_sequence: UuidMap<u64>,
    agents: UuidMap<Agent>,
    batches: UuidMap<BatchSpan>,
    /// batchIds in receipt order, to evict them oldest first.
    batch_order: VecDeque<Uuid>,
    /// Received batches not processed yet, in receipt order.
    pending: VecDeque<PendingBatch>,
    /// Whether a drain task is emptying `pending`.
    draining: bool,
}

impl TenantEvents {
    pub fn new(cap: usize) -> TenantEvents {
        TenantEvents {
            inner: Mutex::new(Inner {
                log: VecDeque::new(),
                base: 0,
                cap: cap.max(1),
                by_sequence: UuidMap::default(),
                agents: UuidMap::default(),
                batches: UuidMap::default(),
                batch_order: VecDeque::new(),
                pending: VecDeque::new(),
                draining: false,
            }),
            requests: std::sync::atomic::AtomicU64::new(0),
            window: Mutex::new(RateWindow::default()),
            #[cfg(test)]
            drain_wakes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The number of this request (1, 2, ...), the id of its fault draws.
    pub fn next_request_number(&self) -> u64 {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Receives a batch that passed the schema check: registers every event (a repeated
    /// sequenceId is not registered again), then processes it now or queues it.
    pub fn submit(
        self: &Arc<Self>,
        app: &Arc<AppState>,
        batch_id: Uuid,
        events: &[EventIn],
        mode: Mode,
    ) -> Submitted {
        let stats = &app.stats.events;
        let received_at = wall_nanos();
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let (items, new_events) = inner.register(batch_id, events, received_at);
        stats.events_received.add(events.len() as u64);
        stats
            .duplicates
            .add((items.len() - new_events.len()) as u64);
        let (due, sync) = match mode {
            Mode::Sync => (now, true),
            Mode::Async { delay } => (now + delay, false),
        };
        if inner.pending.is_empty() && due <= now {
            let results = inner.process(&items, &new_events, wall_nanos(), stats, sync);
            return Submitted::Done(results);
        }
        let (reply, waiting) = if sync {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        inner.pending.push_back(PendingBatch {
            due,
            items,
            new_events,
            reply,
        });
        if !inner.draining {
            inner.draining = true;
            tokio::spawn(drain(self.clone(), app.clone()));
        }
        match waiting {
            Some(rx) => Submitted::Waiting(rx),
            None => Submitted::Done(Vec::new()),
        }
    }

    /// The records a query asks for, from position `from` on, at most `limit`.
    pub fn query(&self, key: &QueryKey<'_>, from: u64, limit: usize) -> Result<Page, UnknownBatch> {
        self.inner.lock().query(key, from, limit)
    }
}

/// Processes queued batches in order, each no earlier than its due time; ends when the
/// queue is empty (the next queued batch starts a new one).
async fn drain(tenant: Arc<TenantEvents>, app: Arc<AppState>) {
    loop {
        #[cfg(test)]
        tenant
            .drain_wakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait_until = {
            let mut inner = tenant.inner.lock();
            let now = Instant::now();
            match inner.pending.front().map(|b| b.due) {
                None => {
                    inner.draining = false;
                    return;
                }
                Some(due) if due > now => due,
                Some(_) => {
                    let Some(batch) = inner.pending.pop_front() else {
                        continue;
                    };
                    let want = batch.reply.is_some();
                    let results = inner.process(
                        &batch.items,
                        &batch.new_events,
                        wall_nanos(),
                        &app.stats.events,
                        want,
                    );
                    drop(inner);
                    if let Some(reply) = batch.reply {
                        // The requester may have gone away; nothing to do then.
                        let _ = reply.send(results);
                    }
                    continue;
                }
            }
        };
        tokio::time::sleep_until(wait_until).await;
    }
}

/// Now, as Unix nanoseconds.
pub(crate) fn wall_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Inner {
    fn next_position(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn record(&self, position: u64) -> Option<&Record> {
        let index = position.checked_sub(self.base)?;
        self.log.get(usize::try_from(index).ok()?)
    }

    fn record_mut(&mut self, position: u64) -> Option<&mut Record> {
        let index = position.checked_sub(self.base)?;
        self.log.get_mut(usize::try_from(index).ok()?)
    }

    /// Registers a batch's events; returns one item per event (request order) and the
    /// new events with what processing needs.
    fn register(
        &mut self,
        batch_id: Uuid,
        events: &[EventIn],
        received_at: i64,
    ) -> (Vec<Item>, Vec<NewEvent>) {
        let start = self.next_position();
        let mut items = Vec::with_capacity(events.len());
        let mut new_events = Vec::with_capacity(events.len());
        for e in events {
            if let Some(&original) = self.by_sequence.get(&e.sequence_id)
                && let Some(seen) = self.record(original)
            {
                items.push(Item::Duplicate {
                    original,
                    seen: *seen,
                });
                continue;
            }
            let position = self.next_position();
            self.log.push_back(Record {
                sequence_id: e.sequence_id,
                batch_id,
                agent_id: e.agent_id,
                interaction_id: e.interaction_id,
                state: e.state,
                outcome: Outcome::Pending,
                received_at,
                processed_at: 0,
            });
            self.by_sequence.insert(e.sequence_id, position);
            self.agents
                .entry(e.agent_id)
                .or_default()
                .positions
                .push_back(position);
            items.push(Item::New(new_events.len()));
            new_events.push(NewEvent {
                position,
                sequence_id: e.sequence_id,
                agent_id: e.agent_id,
                state: e.state,
            });
        }
        self.batches.insert(
            batch_id,
            BatchSpan {
                start,
                end: self.next_position(),
            },
        );
        self.batch_order.push_back(batch_id);
        self.evict();
        (items, new_events)
    }

    /// Drops the oldest records (and batches) beyond the cap, with their index entries.
    /// An agent with no kept events is forgotten, state included: memory stays bounded by
    /// the cap whatever the number of distinct agents.
    fn evict(&mut self) {
        while self.log.len() > self.cap {
            let Some(old) = self.log.pop_front() else {
                break;
            };
            let position = self.base;
            self.base += 1;
            if self.by_sequence.get(&old.sequence_id) == Some(&position) {
                self.by_sequence.remove(&old.sequence_id);
            }
            if let Some(agent) = self.agents.get_mut(&old.agent_id) {
                if agent.positions.front() == Some(&position) {
                    agent.positions.pop_front();
                }
                if agent.positions.is_empty() {
                    self.agents.remove(&old.agent_id);
                }
            }
        }
        while let Some(id) = self.batch_order.front().copied() {
            let gone = match self.batches.get(&id) {
                None => true,
                Some(span) => {
                    let emptied = span.end <= self.base && span.end > span.start;
                    let passed = span.start < self.base;
                    emptied || (span.start == span.end && passed)
                }
            };
            if !(gone || self.batch_order.len() > self.cap) {
                break;
            }
            self.batch_order.pop_front();
            self.batches.remove(&id);
        }
    }

    /// Checks each new event against its agent's state, in order, and records the
    /// outcome. Returns the sync answer (request order) when asked.
    fn process(
        &mut self,
        items: &[Item],
        new_events: &[NewEvent],
        processed_at: i64,
        stats: &EventsStats,
        want_results: bool,
    ) -> Vec<EventResult> {
        let (mut accepted, mut rejected) = (0u64, 0u64);
        let mut outcomes = Vec::with_capacity(if want_results { new_events.len() } else { 0 });
        for e in new_events {
            let agent = self.agents.entry(e.agent_id).or_default();
            let outcome = match agent.state {
                Some(from) if !from.can_move_to(e.state) => {
                    rejected += 1;
                    Outcome::Rejected { from }
                }
                _ => {
                    agent.state = Some(e.state);
                    accepted += 1;
                    Outcome::Accepted
                }
            };
            if let Some(record) = self.record_mut(e.position) {
                record.outcome = outcome;
                record.processed_at = processed_at;
            }
            if want_results {
                outcomes.push(outcome);
            }
        }
        stats.events_accepted.add(accepted);
        stats.events_rejected_transition.add(rejected);
        if !want_results {
            return Vec::new();
        }
        items
            .iter()
            .map(|item| match *item {
                Item::New(n) => new_events[n].result(outcomes[n], false),
                Item::Duplicate { original, seen } => {
                    let now = self
                        .record(original)
                        .filter(|r| r.sequence_id == seen.sequence_id)
                        .unwrap_or(&seen);
                    now.result(true)
                }
            })
            .collect()
    }

    fn query(&self, key: &QueryKey<'_>, from: u64, limit: usize) -> Result<Page, UnknownBatch> {
        let from = from.max(self.base);
        let mut not_found = Vec::new();
        // Positions to answer, ascending; one more than the limit says whether more follow.
        let positions: Vec<u64> = match key {
            QueryKey::Batch(id) => {
                let span = self.batches.get(id).ok_or(UnknownBatch)?;
                let start = span.start.max(from);
                (start..span.end.max(start))
                    .take(limit.saturating_add(1))
                    .collect()
            }
            QueryKey::SequenceIds(ids) => {
                let mut found = Vec::with_capacity(ids.len());
                for id in ids.iter() {
                    match self.by_sequence.get(id) {
                        Some(&p) => found.push(p),
                        None => not_found.push(*id),
                    }
                }
                not_found.sort_unstable();
                not_found.dedup();
                found.sort_unstable();
                found.dedup();
                found.retain(|&p| p >= from);
                found.truncate(limit.saturating_add(1));
                found
            }
            QueryKey::Agents(ids) => {
                let mut found = Vec::new();
                for id in ids.iter() {
                    if let Some(agent) = self.agents.get(id) {
                        let first = agent.positions.partition_point(|&p| p < from);
                        found.extend(
                            agent
                                .positions
                                .range(first..)
                                .take(limit.saturating_add(1))
                                .copied(),
                        );
                    }
                }
                found.sort_unstable();
                found.dedup();
                found.truncate(limit.saturating_add(1));
                found
            }
        };
        let next = positions.get(limit).copied();
        let records = positions
            .iter()
            .take(limit)
            .filter_map(|&p| self.record(p).copied())
            .collect();
        Ok(Page {
            records,
            not_found,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u128, agent: u128, state: AgentState) -> EventIn {
        EventIn {
            sequence_id: Uuid::from_u128(seq),
            interaction_id: Uuid::from_u128(9),
            agent_id: Uuid::from_u128(agent),
            state,
        }
    }

    fn run(inner: &mut Inner, batch: u128, events: &[EventIn]) -> Vec<EventResult> {
        let stats = EventsStats::default();
        let (items, new) = inner.register(Uuid::from_u128(batch), events, 1);
        inner.process(&items, &new, 2, &stats, true)
    }

    fn inner(cap: usize) -> Inner {
        match Arc::try_unwrap(Arc::new(TenantEvents::new(cap))) {
            Ok(t) => t.inner.into_inner(),
            Err(_) => unreachable!(),
        }
    }

    /// An async batch waits out its delay with the drain task asleep: one pass finds it
    /// not due, then, at its due time, one processes it and one finds the queue empty and
    /// ends the task.
    #[tokio::test(start_paused = true)]
    async fn the_drain_sleeps_until_a_batch_is_due() {
        let app = AppState::new(crate::SandboxOptions::default());
        let tenant = Arc::new(TenantEvents::new(100));
        let delay = std::time::Duration::from_secs(60);
        let submitted = tenant.submit(
            &app,
            Uuid::from_u128(1),
            &[event(1, 1, AgentState::Busy)],
            Mode::Async { delay },
        );
        assert!(matches!(submitted, Submitted::Done(r) if r.is_empty()));
        let wakes = || {
            tenant
                .drain_wakes
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        for _ in 0..59 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        assert_eq!(wakes(), 1, "passes before the batch was due");
        assert_eq!(
            tenant
                .query(&QueryKey::SequenceIds(&[Uuid::from_u128(1)]), 0, 10)
                .ok()
                .unwrap()
                .records[0]
                .outcome,
            Outcome::Pending
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(wakes(), 3);
        assert!(!tenant.inner.lock().draining, "the drain task ended");
        assert_eq!(app.stats.events.events_accepted.get(), 1);
    }

    #[test]
    fn transitions_are_checked_per_agent_in_order() {
        use AgentState::*;
        let mut s = inner(100);
        let r = run(
            &mut s,
            1,
            &[
                event(1, 1, Busy),
                event(2, 2, Wrapping),
                event(3, 1, Wrapping),
                event(4, 1, Connected),
                event(5, 2, Available),
            ],
        );
        let statuses: Vec<_> = r.iter().map(|r| r.status).collect();
        use EventStatus::{Accepted as A, Rejected as R};
        assert_eq!(statuses, [A, A, R, A, A]);
        assert_eq!(r[2].code.as_deref(), Some(CODE_INVALID_TRANSITION));
        // The rejected event left agent 1 in busy, so connected was accepted after it.
        assert!(
            r[2].message
                .as_deref()
                .unwrap()
                .contains("allowed: interaction/media/connected, routing/agent/available")
        );
    }

    #[test]
    fn duplicates_show_their_first_outcome() {
        use AgentState::*;
        let mut s = inner(100);
        run(&mut s, 1, &[event(1, 1, Busy), event(2, 1, Wrapping)]);
        let r = run(&mut s, 2, &[event(2, 1, Wrapping), event(3, 1, Available)]);
        assert_eq!(r[0].status, EventStatus::Rejected);
        assert_eq!(r[0].duplicate, Some(true));
        assert_eq!(r[1].status, EventStatus::Accepted);
        assert_eq!(r[1].duplicate, None);
    }

    #[test]
    fn the_log_evicts_oldest_first_with_its_indexes() {
        use AgentState::*;
        let mut s = inner(3);
        run(&mut s, 1, &[event(1, 1, Busy), event(2, 2, Busy)]);
        run(&mut s, 2, &[event(3, 1, Available), event(4, 3, Busy)]);
        assert_eq!(s.log.len(), 3);
        assert!(!s.by_sequence.contains_key(&Uuid::from_u128(1)));
        let page = s
            .query(
                &QueryKey::SequenceIds(&[Uuid::from_u128(1), Uuid::from_u128(2)]),
                0,
                10,
            )
            .ok()
            .unwrap();
        assert_eq!(page.not_found, [Uuid::from_u128(1)]);
        assert_eq!(page.records.len(), 1);
        // Batch 1 still has event 2; once that goes, the batch is unknown.
        assert!(s.query(&QueryKey::Batch(Uuid::from_u128(1)), 0, 10).is_ok());
        run(&mut s, 3, &[event(5, 4, Busy)]);
        assert!(
            s.query(&QueryKey::Batch(Uuid::from_u128(1)), 0, 10)
                .is_err()
        );
        // Agent 2 has no kept events: forgotten.
        assert!(!s.agents.contains_key(&Uuid::from_u128(2)));
    }

    #[test]
    fn pages_resume_where_the_last_one_stopped() {
        use AgentState::*;
        let mut s = inner(100);
        let events: Vec<_> = (0..25)
            .map(|i| {
                event(
                    100 + i,
                    1 + (i % 2),
                    if i % 4 < 2 { Busy } else { Available },
                )
            })
            .collect();
        run(&mut s, 1, &events);
        for key in [
            QueryKey::Batch(Uuid::from_u128(1)),
            QueryKey::Agents(&[Uuid::from_u128(1), Uuid::from_u128(2)]),
        ] {
            let mut from = 0;
            let mut seen = Vec::new();
            loop {
                let page = s.query(&key, from, 10).ok().unwrap();
                assert!(page.records.len() <= 10);
                seen.extend(page.records.iter().map(|r| r.sequence_id.as_u128()));
                match page.next {
                    Some(n) => from = n,
                    None => break,
                }
            }
            assert_eq!(seen, (100..125).collect::<Vec<_>>());
        }
    }

    #[test]
    fn uuid_hasher_spreads_sequential_ids() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<UuidHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..1000u128)
            .map(|i| b.hash_one(Uuid::from_u128(i)) & 1023)
            .collect();
        assert!(buckets.len() > 550, "{}", buckets.len());
    }
}
