//! The run loop: at the end of each time slice with work (events due, answers to batch
//! and publish, the run's end) it asks the fleet for the events now due, forms batches
//! (see [`super::batcher`]), and keeps up to `max_in_flight` requests out; a slice with
//! nothing to do costs no wake-up. Each
//! answer is timed twice into the histograms and each event is accounted for, directly
//! from a sync answer or through query-back ([`super::correlate`]). One task owns all the
//! state (fleet, batcher, tally, histograms), so nothing here takes a lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gcx_protocol::events::{EventResult, EventStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::agents::{Fleet, FleetCounts};
use super::batcher::{Batch, Batcher};
use super::correlate::{self, Found, QueryEndpoint};
use super::genesys::{self, Change, Fate, GenesysEndpoints, GenesysTally, Mapped, Mapper};
use super::latency::{Latency, SecondPoint, Series};
use super::live::LiveStats;
use super::report::audit_file::{AuditRecord, AuditWriter};
use super::rng::SimRng;
use super::scenario::InjectorSettings;
use super::sender::{BatchResult, EventsEndpoint, Processed, Sent, send_batch};
use super::tally::{Outcome, Tally};
use super::wire::{Identities, SentEvent, encode_batch};
use crate::notify::{
    KeyReader, ObsKey, ObservationReport, Observed, Observer, WatchStats, Watcher,
};

/// Where the loop sends its batches.
pub enum Route {
    /// The interactions events endpoint, outcomes by answer or query-back.
    Interactions {
        events: Arc<EventsEndpoint>,
        query: QueryEndpoint,
    },
    /// The Genesys Cloud Events API: each transition mapped to its events at generation.
    Genesys {
        endpoints: Arc<GenesysEndpoints>,
        mapper: Mapper,
        /// The agents' topics, watched (`--observe`).
        observe: Option<Observing>,
    },
}

/// The agents watched over the Notifications API while they are injected.
pub struct Observing {
    pub watcher: Watcher,
    pub notifications: mpsc::Receiver<Observed>,
    /// How long after the last injection answer notifications are still waited for.
    pub grace: Duration,
}

/// What the watch saw (`--observe`).
#[derive(Debug)]
pub struct Watched {
    pub report: ObservationReport,
    pub stats: WatchStats,
    /// Notifications whose body could not be read.
    pub unreadable: u64,
}

/// The observing half of the loop: notifications read into keys, matched against what
/// accepted events should cause.
struct Correlation {
    watch: Observing,
    reader: KeyReader,
    observer: Observer,
}

impl Correlation {
    fn observed(&mut self, o: &Observed) {
        for key in self.reader.keys(o) {
            self.observer.observe(key, o.received_at);
        }
    }
}

/// The notification key a change of `user` shows.
fn key_of(user: Uuid, change: Change) -> ObsKey {
    match change {
        Change::Routing(status) => ObsKey::Routing { user, status },
        Change::Presence(definition) => ObsKey::Presence { user, definition },
        Change::Call {
            communication,
            state,
            held,
        } => ObsKey::Call {
            user,
            communication,
            state,
            held,
        },
    }
}

/// The next notification, or never without a watch.
async fn next_notification(c: &mut Option<Correlation>) -> Option<Observed> {
    match c {
        Some(c) => c.watch.notifications.recv().await,
        None => std::future::pending().await,
    }
}

/// Everything one run of the loop needs.
pub struct Injection {
    pub fleet: Fleet,
    pub ids: Identities,
    pub route: Route,
    pub settings: InjectorSettings,
    pub live: Arc<LiveStats>,
    /// Stops generating (Ctrl-C); what was generated is still sent and accounted for.
    pub cancel: CancellationToken,
    /// Wall-clock time of the run's start: event timestamps are this plus their offset.
    pub wall_start: DateTime<Utc>,
}

/// What the loop measured.
#[derive(Debug)]
pub struct Injected {
    pub tally: Tally,
    pub latency: Latency,
    pub series: Vec<SecondPoint>,
    pub fleet: FleetCounts,
    /// Requests sent again.
    pub retries: u64,
    /// Every POST to the events endpoint, retries included.
    pub requests: u64,
    /// From the start to the last answer of the events endpoint.
    pub send_phase: Duration,
    /// From the start to the last outcome (query-back included).
    pub elapsed: Duration,
    pub interrupted: bool,
    /// The Events API's own accounting (`genesys-events` target).
    pub genesys: Option<GenesysTally>,
    /// Why the run stopped before its end (a 403: the client lacks a permission).
    pub stopped: Option<String>,
    /// The watch's correlation (`--observe`).
    pub watched: Option<Watched>,
}

/// A request's answer, back in the loop.
struct Answered {
    batch: Batch,
    sent: Sent,
}

/// The loop's own state.
struct Books<'a> {
    start: Instant,
    wall_start: DateTime<Utc>,
    ids: Identities,
    tally: Tally,
    latency: Latency,
    series: Series,
    retries: u64,
    requests: u64,
    live: &'a LiveStats,
    audit: &'a AuditWriter,
    /// Final records not yet handed to the audit writer: handed over once per time slice
    /// (and at the end), not once per answer, so small batches do not wake its thread
    /// for every event.
    unwritten: Vec<AuditRecord>,
    genesys: Option<GenesysTally>,
    /// The first 403 of the Events API.
    stopped: Option<String>,
    correlation: Option<Correlation>,
}

fn outcome_of(r: &EventResult) -> Option<Outcome> {
    let duplicate = r.duplicate.unwrap_or(false);
    match r.status {
        EventStatus::Accepted => Some(Outcome::Accepted { duplicate }),
        EventStatus::Rejected => Some(Outcome::Rejected {
            code: r.code.clone(),
            duplicate,
        }),
        EventStatus::Pending => None,
    }
}

impl Books<'_> {
    /// Times an answered batch; returns the events whose outcome must be looked up.
    fn on_answered(&mut self, a: &mut Answered) -> Vec<SentEvent> {
        let t = a.sent.answered.saturating_duration_since(self.start);
        let sec = t.as_secs();
        let (retries, requests) = match &a.sent.result {
            BatchResult::Genesys(g) => (u64::from(g.retries), u64::from(g.requests)),
            _ => (
                u64::from(a.sent.attempts.saturating_sub(1)),
                u64::from(a.sent.attempts),
            ),
        };
        self.retries += retries;
        self.requests += requests;
        self.series.at(sec).retries += retries;
        let service = a.sent.answered.saturating_duration_since(a.sent.first_sent);
        for e in &mut a.batch.events {
            e.answered_at = t;
            e.latency = t.saturating_sub(e.intended);
            self.latency.record(e.latency, service);
            self.series.record_response(sec, e.latency);
        }
        let events = std::mem::take(&mut a.batch.events);
        let mut lookup = Vec::new();
        let mut done = Vec::with_capacity(events.len());
        match &a.sent.result {
            BatchResult::Sync(resp) => {
                let in_order = resp.results.len() == events.len()
                    && resp
                        .results
                        .iter()
                        .zip(&events)
                        .all(|(r, e)| r.sequence_id == e.sequence_id);
                if in_order {
                    for (e, r) in events.into_iter().zip(&resp.results) {
                        match outcome_of(r) {
                            Some(o) => done.push((e, o, None)),
                            None => lookup.push(e),
                        }
                    }
                } else {
                    let by_id: HashMap<Uuid, &EventResult> =
                        resp.results.iter().map(|r| (r.sequence_id, r)).collect();
                    for e in events {
                        match by_id.get(&e.sequence_id).and_then(|r| outcome_of(r)) {
                            Some(o) => done.push((e, o, None)),
                            None => lookup.push(e),
                        }
                    }
                }
            }
            BatchResult::Async(_) => lookup = events,
            BatchResult::Refused {
                reason,
                processed: Processed::No,
            } => {
                for e in events {
                    done.push((
                        e,
                        Outcome::Failed {
                            reason: reason.clone(),
                        },
                        None,
                    ));
                }
            }
            BatchResult::Refused {
                processed: Processed::Unknown,
                ..
            } => lookup = events,
            BatchResult::Genesys(answer) => {
                let tally = self.genesys.get_or_insert_with(GenesysTally::default);
                let mut rest = answer.fates.as_slice();
                let mut observer = self.correlation.as_mut().map(|c| &mut c.observer);
                for e in events {
                    let mapped = e.genesys.as_deref().unwrap_or(&[]);
                    let (fates, after) = rest.split_at(mapped.len().min(rest.len()));
                    rest = after;
                    if let Some(observer) = observer.as_mut() {
                        for (m, fate) in mapped.iter().zip(fates) {
                            if let (Some(change), Some(Fate::Accepted { sent_at })) =
                                (m.change, fate)
                            {
                                observer.expect(key_of(m.user, change), *sent_at);
                            }
                        }
                    }
                    let outcome = tally.settle(mapped, fates.iter());
                    done.push((e, outcome, None));
                }
                if let Some(why) = &answer.stop {
                    self.stopped.get_or_insert_with(|| why.clone());
                }
            }
        }
        self.finalize(done);
        lookup
    }

    /// Accounts a batch that will not be sent: the run stopped.
    fn not_sent(&mut self, batch: Batch) {
        let why = self.stopped.clone().unwrap_or_default();
        let reason = format!("not sent: the run stopped ({why})");
        let tally = self.genesys.get_or_insert_with(GenesysTally::default);
        let done = batch
            .events
            .into_iter()
            .map(|e| {
                let mapped = e.genesys.as_deref().unwrap_or(&[]);
                tally.unsent(mapped);
                let outcome = Outcome::Failed {
                    reason: reason.clone(),
                };
                (e, outcome, None)
            })
            .collect();
        self.finalize(done);
    }

    /// Counts final outcomes and writes their audit records.
    fn finalize(&mut self, done: Vec<(SentEvent, Outcome, Option<DateTime<Utc>>)>) {
        if done.is_empty() {
            return;
        }
        let logged_at = gcx_protocol::time::now();
        for (e, outcome, processed_at) in done {
            let p = &e.planned;
            self.tally.record(p.from, p.state, p.invalid, &outcome);
            let point = self.series.at(e.answered_at.as_secs());
            let (status, code, duplicate, validated) = match &outcome {
                Outcome::Accepted { duplicate } => {
                    point.accepted += 1;
                    ("accepted", None, *duplicate, !p.invalid)
                }
                Outcome::Rejected { code, duplicate } => {
                    point.rejected += 1;
                    ("rejected", code.clone(), *duplicate, p.invalid)
                }
                Outcome::Failed { reason } => {
                    point.failed += 1;
                    ("failed", Some(reason.clone()), false, false)
                }
                Outcome::Missing => {
                    point.failed += 1;
                    ("missing", None, false, false)
                }
            };
            if let Some(at) = processed_at {
                let intended =
                    self.wall_start + chrono::Duration::from_std(e.intended).unwrap_or_default();
                if let Ok(d) = (at - intended).to_std() {
                    self.latency.record_e2e(d);
                }
            }
            self.unwritten.push(AuditRecord {
                agent_id: self.ids.agent_id(p.agent),
                sequence_id: e.sequence_id,
                state: p.state,
                latency_ms: e.latency.as_secs_f64() * 1000.0,
                validated,
                logged_at: logged_at.clone(),
                n: p.n,
                agent: p.agent,
                from: p.from,
                invalid: p.invalid,
                status,
                code,
                duplicate,
                at_ms: p.at.as_secs_f64() * 1000.0,
            });
        }
    }

    /// Hands the final records gathered so far to the audit writer.
    fn flush_audit(&mut self) {
        if !self.unwritten.is_empty() {
            self.audit.write(std::mem::take(&mut self.unwritten));
        }
    }

    fn publish(&self, now: Duration, fleet: &FleetCounts, sent: u64, in_flight: usize) {
        let l = self.live;
        l.generated.store(fleet.events, Relaxed);
        l.sent.store(sent, Relaxed);
        l.accepted.store(self.tally.accepted, Relaxed);
        l.rejected.store(self.tally.rejected, Relaxed);
        l.errors
            .store(self.tally.failed + self.tally.missing, Relaxed);
        l.retries.store(self.retries, Relaxed);
        l.dropped
            .store(fleet.dropped_no_agent + fleet.dropped_behind, Relaxed);
        l.in_flight.store(in_flight as u64, Relaxed);
        if let Some(p95) = self.series.current_p95_ms() {
            l.p95_us.store((p95 * 1000.0) as u64, Relaxed);
        }
        l.elapsed_ms.store(now.as_millis() as u64, Relaxed);
    }
}

/// The end of the time slice `at` falls in: when the schedule means to send it.
fn slice_end(at: Duration, slice: Duration) -> Duration {
    let s = slice.as_nanos().max(1);
    let k = at.as_nanos().div_ceil(s);
    Duration::from_nanos(u64::try_from(k * s).unwrap_or(u64::MAX))
}

/// The time-slice grid the loop ticks on: slice `k` ends at `start + k * slice`.
struct Ticks {
    start: Instant,
    slice: Duration,
    /// The slice of the last tick; the next tick ends a later one.
    last: u64,
}

impl Ticks {
    /// The slice `at` (from the start) falls in: the first whose end is at or after it.
    fn slice_of(&self, at: Duration) -> u64 {
        let k = at.as_nanos().div_ceil(self.slice.as_nanos().max(1));
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// When to tick for the earliest of the `wanted` slices (none: no tick).
    fn next(&self, wanted: impl IntoIterator<Item = u64>) -> Option<Instant> {
        let k = wanted
            .into_iter()
            .map(|k| k.max(self.last.saturating_add(1)))
            .min()?;
        let nanos = self.slice.as_nanos().saturating_mul(u128::from(k));
        let after = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Some(
            self.start
                .checked_add(after)
                .unwrap_or_else(|| self.start + Duration::from_secs(100 * 365 * 24 * 3600)),
        )
    }

    /// A tick ran `now` after the start: slices that ended while it was late are skipped.
    fn ticked(&mut self, now: Duration) {
        let k = now.as_nanos() / self.slice.as_nanos().max(1);
        self.last = self.last.max(u64::try_from(k).unwrap_or(u64::MAX));
    }
}

/// Sleeps until `due`; never resolves for `None`.
async fn sleep_until_some(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the simulation's sending and accounting to the end.
pub async fn inject(inj: Injection, audit: &AuditWriter) -> Injected {
    let Injection {
        mut fleet,
        ids,
        route,
        settings,
        live,
        cancel,
        wall_start,
    } = inj;
    let start = Instant::now();
    let slice = settings.time_slice;
    if let Some(end) = fleet.end_at() {
        live.planned_ms.store(end.as_millis() as u64, Relaxed);
    }
    let mut books = Books {
        start,
        wall_start,
        ids: ids.clone(),
        tally: Tally::default(),
        latency: Latency::default(),
        series: Series::default(),
        retries: 0,
        requests: 0,
        live: &live,
        audit,
        unwritten: Vec::new(),
        genesys: None,
        stopped: None,
        correlation: None,
    };
    let (ans_tx, mut ans_rx) = mpsc::unbounded_channel::<Answered>();
    let (found_tx, mut found_rx) = mpsc::unbounded_channel::<Vec<Found>>();
    let awaiting_gauge = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (send_to, mut mapper, correlator, mut q_tx) = match route {
        Route::Interactions { events, query } => {
            let (q_tx, q_rx) = mpsc::unbounded_channel::<Vec<SentEvent>>();
            let pace = query.pace();
            let correlator = tokio::spawn(correlate::run(
                query,
                pace,
                q_rx,
                found_tx,
                awaiting_gauge.clone(),
            ));
            (
                SendTo::Interactions(events),
                None,
                Some(correlator),
                Some(q_tx),
            )
        }
        Route::Genesys {
            endpoints,
            mapper,
            observe,
        } => {
            drop(found_tx);
            books.correlation = observe.map(|watch| Correlation {
                watch,
                reader: KeyReader::new(),
                // A notification read before the request that caused it was sent is not
                // its effect.
                observer: Observer::with_early_window(Duration::ZERO),
            });
            (SendTo::Genesys(endpoints), Some(mapper), None, None)
        }
    };

    let mut batcher = Batcher::new(fleet.len(), settings.batch_size);
    let mut ready: VecDeque<Batch> = VecDeque::new();
    let mut id_rng = SimRng::from_entropy();
    let mut ticks = Ticks {
        start,
        slice,
        last: 0,
    };
    // Answers or query-back results arrived since the last tick: the next slice's end
    // batches what they freed and publishes them.
    let mut changed = false;
    let (mut generating, mut interrupted) = (true, false);
    let (mut in_flight, mut sent_events, mut awaiting) = (0usize, 0u64, 0u64);
    let mut dropped_seen = 0u64;
    let mut send_phase = None;

    loop {
        let due = ticks.next(
            changed
                .then_some(ticks.last.saturating_add(1))
                .into_iter()
                .chain(
                    [fleet.next_due(), fleet.end_at()]
                        .into_iter()
                        .flatten()
                        .filter(|_| generating)
                        .map(|t| ticks.slice_of(t)),
                ),
        );
        tokio::select! {
            Some(mut a) = ans_rx.recv() => {
                changed = true;
                in_flight -= 1;
                let t = a.sent.answered.saturating_duration_since(start);
                batcher.release(a.batch.serial, &a.batch.events, |agent| fleet.answered(agent, t));
                let lookup = books.on_answered(&mut a);
                if !lookup.is_empty() {
                    awaiting += lookup.len() as u64;
                    if let Some(tx) = &q_tx {
                        let _ = tx.send(lookup);
                    }
                }
            }
            Some(o) = next_notification(&mut books.correlation) => {
                if let Some(c) = books.correlation.as_mut() {
                    c.observed(&o);
                }
                continue;
            }
            Some(found) = found_rx.recv() => {
                changed = true;
                awaiting = awaiting.saturating_sub(found.len() as u64);
                books.finalize(found.into_iter().map(|f| (f.event, f.outcome, f.processed_at)).collect());
            }
            _ = cancel.cancelled(), if generating => {
                generating = false;
                interrupted = true;
            }
            () = sleep_until_some(due) => {
                let now = start.elapsed();
                ticks.ticked(now);
                changed = false;
                if generating {
                    let oldest = batcher
                        .oldest_intended()
                        .into_iter()
                        .chain(ready.front().and_then(|b| b.events.first()).map(|e| e.intended))
                        .min();
                    let behind = oldest.is_some_and(|t| now > t + settings.max_lag);
                    fleet.advance(now, behind, &mut |p| {
                        let sequence_id = id_rng.uuid();
                        let genesys = mapper
                            .as_mut()
                            .map(|m| m.map(&p, sequence_id, &ids, wall_start));
                        batcher.push(SentEvent {
                            sequence_id,
                            intended: slice_end(p.at, slice),
                            latency: Duration::ZERO,
                            answered_at: Duration::ZERO,
                            planned: p,
                            genesys,
                        });
                    });
                    if fleet.is_finished(now) {
                        generating = false;
                    }
                    let counts = fleet.counts();
                    let dropped = counts.dropped_no_agent + counts.dropped_behind;
                    books.series.at(now.as_secs()).dropped += dropped - dropped_seen;
                    dropped_seen = dropped;
                }
                batcher.take_batches(&mut ready);
                books.flush_audit();
                books.publish(now, &fleet.counts(), sent_events, in_flight);
                live.awaiting_query.store(awaiting_gauge.load(Relaxed), Relaxed);
            }
        }
        live.loop_wakes.fetch_add(1, Relaxed);
        if books.stopped.is_some() {
            // A 403: nothing more is sent; what was generated is accounted as not sent.
            generating = false;
            while let Some(batch) = ready.pop_front() {
                changed = true;
                let t = start.elapsed();
                batcher.release(batch.serial, &batch.events, |agent| {
                    fleet.answered(agent, t)
                });
                books.not_sent(batch);
            }
        }
        while in_flight < settings.max_in_flight {
            let Some(batch) = ready.pop_front() else {
                break;
            };
            in_flight += 1;
            sent_events += batch.events.len() as u64;
            books.series.at(start.elapsed().as_secs()).sent += batch.events.len() as u64;
            let tx = ans_tx.clone();
            match &send_to {
                SendTo::Interactions(endpoint) => {
                    let (ep, ids) = (endpoint.clone(), ids.clone());
                    let async_mode = settings.async_mode;
                    tokio::spawn(async move {
                        let mut buf = Vec::with_capacity(batch.events.len() * 280 + 2);
                        encode_batch(&batch.events, &ids, wall_start, &mut buf);
                        let sent = send_batch(&ep, Bytes::from(buf), async_mode).await;
                        let _ = tx.send(Answered { batch, sent });
                    });
                }
                SendTo::Genesys(endpoints) => {
                    let ep = endpoints.clone();
                    tokio::spawn(async move {
                        let first_sent = Instant::now();
                        let answer = {
                            let flat: Vec<&Mapped> = batch
                                .events
                                .iter()
                                .flat_map(|e| e.genesys.iter().flat_map(|m| m.iter()))
                                .collect();
                            genesys::send::send(&ep, &flat).await
                        };
                        let sent = Sent {
                            first_sent,
                            answered: Instant::now(),
                            attempts: answer.retries + 1,
                            result: BatchResult::Genesys(answer),
                        };
                        let _ = tx.send(Answered { batch, sent });
                    });
                }
            }
        }
        if !generating && batcher.pending_len() == 0 && ready.is_empty() && in_flight == 0 {
            if send_phase.is_none() {
                send_phase = Some(start.elapsed());
                q_tx = None; // the correlator finishes what it holds, then stops
            }
            if awaiting == 0 {
                break;
            }
        }
    }
    if let Some(correlator) = correlator {
        let _ = correlator.await;
    }
    let watched = match books.correlation.take() {
        Some(c) => Some(finish_watch(c).await),
        None => None,
    };
    books.flush_audit();
    let elapsed = start.elapsed();
    books.publish(elapsed, &fleet.counts(), sent_events, 0);
    live.awaiting_query.store(0, Relaxed);
    Injected {
        tally: books.tally,
        latency: books.latency,
        series: books.series.finish(),
        fleet: fleet.counts(),
        retries: books.retries,
        requests: books.requests,
        send_phase: send_phase.unwrap_or(elapsed),
        elapsed,
        interrupted,
        genesys: books.genesys,
        stopped: books.stopped,
        watched,
    }
}

/// Waits up to `grace` for the notifications still expected (less once none is), then
/// stops the watch.
async fn finish_watch(mut c: Correlation) -> Watched {
    let grace = c.watch.grace;
    let deadline = Instant::now() + grace;
    while c.observer.waiting() > 0 {
        match tokio::time::timeout_at(deadline, c.watch.notifications.recv()).await {
            Ok(Some(o)) => c.observed(&o),
            Ok(None) | Err(_) => break,
        }
    }
    // What arrived meanwhile is read too, so a late duplicate shows as unexpected.
    while let Ok(o) = c.watch.notifications.try_recv() {
        c.observed(&o);
    }
    let report = c.observer.finish(Instant::now(), grace);
    let stats = c.watch.watcher.stop().await;
    Watched {
        report,
        stats,
        unreadable: c.reader.unreadable_bodies(),
    }
}

/// The sending half of a [`Route`], shared by the request tasks.
enum SendTo {
    Interactions(Arc<EventsEndpoint>),
    Genesys(Arc<GenesysEndpoints>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_end_slices_after_the_last_and_skip_missed_ones() {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut t = Ticks {
            start,
            slice: ms(20),
            last: 0,
        };
        assert_eq!(t.slice_of(ms(0)), 0);
        assert_eq!(t.slice_of(ms(21)), 2);
        assert_eq!(t.next([]), None, "nothing wanted: no tick");
        assert_eq!(t.next([0]), Some(start + ms(20)), "never the start itself");
        assert_eq!(t.next([7, 3]), Some(start + ms(60)));
        t.ticked(ms(95));
        assert_eq!(t.last, 4);
        assert_eq!(t.next([2]), Some(start + ms(100)), "missed slices skipped");
        let far = Ticks {
            start,
            slice: Duration::MAX,
            last: 0,
        };
        assert!(far.next([u64::MAX]).is_some(), "no overflow");
    }

    #[test]
    fn events_are_due_at_the_end_of_their_slice() {
        let ms = Duration::from_millis;
        assert_eq!(slice_end(ms(0), ms(50)), ms(0));
        assert_eq!(slice_end(ms(1), ms(50)), ms(50));
        assert_eq!(slice_end(ms(50), ms(50)), ms(50));
        assert_eq!(slice_end(ms(51), ms(50)), ms(100));
    }
}
