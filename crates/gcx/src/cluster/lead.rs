//! The election loop of one instance, and the life of a term while it leads.
//!
//! Each round ([`HEARTBEAT`]): refresh the member row; if leading, renew the lease, else
//! try to take it; then read the cluster (readiness, metrics). A released lease wakes the
//! loop at once. A term: take over (empty the queue and read every unfinished trigger in
//! one snapshot), renew once, start a dispatcher fenced to the term and its feeder from
//! the queue, and a fence timer that halts the dispatcher [`FENCE_AFTER`] after the start
//! of the last successful renewal unless another succeeds first. A term ends when its
//! dispatcher halts (fenced, a failed store write, a stop): the lease is released if the
//! database answers, else it runs out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use super::{FENCE_AFTER, FORGET_AFTER, HEARTBEAT, LEASE, STATEMENT_TIMEOUT, Shared};
use crate::assist::dispatch::{Dispatcher, DispatcherHandle, MAX_CHUNK};
use crate::store::{MemberBeat, StoreError};

/// Gauge: 1 while this instance holds the dispatch lease.
pub const LEADER: &str = "gcx_cluster_leader";
/// Gauge: the current term, as last read.
pub const TERM: &str = "gcx_cluster_term";
/// Gauge: members heard from within the lease time.
pub const MEMBERS: &str = "gcx_cluster_members";
/// Gauge, label `member`: each live member's actions in flight.
pub const MEMBER_IN_FLIGHT: &str = "gcx_cluster_member_in_flight";
/// Counter: terms this instance began.
pub const TERMS_LED: &str = "gcx_cluster_terms_led_total";
/// Counter: terms this instance ended because its lease could not be renewed in time.
pub const FENCED: &str = "gcx_cluster_fenced_total";

/// How long the feeder sleeps with an empty queue when no notification comes.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// A term this instance leads.
pub(super) struct Term {
    pub(super) number: i64,
    pub(super) dispatcher: DispatcherHandle,
    /// When the dispatcher must stop unless a renewal moves it on.
    fence_at: watch::Sender<Instant>,
    feeder: JoinHandle<()>,
    fence: JoinHandle<()>,
}

/// Runs rounds until the cluster is left.
pub(super) async fn elect(shared: Arc<Shared>) {
    let mut next = Instant::now();
    let mut rounds: u64 = 0;
    loop {
        let current = shared.leading.lock().as_ref().map(|t| t.dispatcher.clone());
        let leading = current.is_some();
        let halted = async move {
            match current {
                Some(d) => d.halted_wait().await,
                None => std::future::pending().await,
            }
        };
        let mut woken = false;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.wakes.leader.notified(), if !leading => woken = true,
            reason = halted => {
                end_term(&shared, &reason).await;
                next = Instant::now() + HEARTBEAT;
                continue;
            }
            _ = shared.stop.cancelled() => return,
        }
        next = Instant::now() + HEARTBEAT;
        rounds += 1;
        round(&shared, rounds, woken).await;
    }
}

/// One round: heartbeat and renew (one statement) if leading, else heartbeat and, when
/// the lease may be free (`woken` by a release, or its end seen within a round), try to
/// take it; then read the cluster.
async fn round(shared: &Arc<Shared>, rounds: u64, woken: bool) {
    let db = &shared.db;
    let me = &shared.member.instance;
    let term = shared.leading.lock().as_ref().map(|t| t.number);
    match term {
        Some(number) => {
            let started = Instant::now();
            // A renewal may take until the fence would fall anyway.
            match within(
                FENCE_AFTER,
                db.heartbeat_and_renew(&beat(shared), number, LEASE),
            )
            .await
            {
                Ok(true) => renewed(shared, number, started),
                Ok(false) => fence(shared, number, "another instance holds the dispatch lease"),
                Err(e) => tracing::warn!(error = %e, term = number,
                    "renewing the dispatch lease failed; dispatching stops if it keeps failing"),
            }
        }
        None => {
            if let Err(e) = bounded(db.heartbeat(&beat(shared))).await {
                tracing::debug!(error = %e, "cluster heartbeat failed");
            }
            if woken || lease_may_be_free(shared) {
                let started = Instant::now();
                match bounded(db.acquire(me, LEASE)).await {
                    Ok(Some(number)) => begin_term(shared, number, started).await,
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "trying the dispatch lease failed"),
                }
            }
        }
    }
    look(shared, rounds).await;
}

/// Whether the lease, as last read, may have run out by the next round (or was never read).
fn lease_may_be_free(shared: &Shared) -> bool {
    match *shared.lease_seen.lock() {
        Some((at, Some(remaining))) => at + remaining <= Instant::now() + HEARTBEAT,
        _ => true,
    }
}

/// Reads the cluster: whether it dispatches (readiness) and the gauges.
async fn look(shared: &Arc<Shared>, rounds: u64) {
    let read_at = Instant::now();
    let Ok((members, lease)) = bounded(shared.db.view()).await else {
        shared.dispatching.store(false, Ordering::Relaxed);
        *shared.lease_seen.lock() = None;
        return;
    };
    *shared.lease_seen.lock() = Some((read_at, lease.remaining));
    let mine = shared.leading.lock().as_ref().map(|t| t.dispatcher.clone());
    let dispatching = match &mine {
        Some(d) => d.connected_epoch().is_some() && d.halted().is_none(),
        None => {
            lease.remaining.is_some()
                && members.iter().any(|m| {
                    Some(&m.instance) == lease.instance.as_ref()
                        && m.stream_connected
                        && m.heartbeat_age < LEASE
                })
        }
    };
    shared.dispatching.store(dispatching, Ordering::Relaxed);
    metrics::gauge!(LEADER).set(if mine.is_some() { 1.0 } else { 0.0 });
    metrics::gauge!(TERM).set(lease.term as f64);
    let live: Vec<_> = members.iter().filter(|m| m.heartbeat_age < LEASE).collect();
    metrics::gauge!(MEMBERS).set(live.len() as f64);
    for m in &live {
        metrics::gauge!(MEMBER_IN_FLIGHT, "member" => m.instance.clone())
            .set(f64::from(m.in_flight));
    }
    // The leader tidies the rows of members long gone, once a minute.
    if mine.is_some()
        && rounds.is_multiple_of(60)
        && let Err(e) = bounded(shared.db.forget_silent(FORGET_AFTER)).await
    {
        tracing::debug!(error = %e, "removing silent members failed");
    }
}

/// What this instance reports of itself.
fn beat(shared: &Shared) -> MemberBeat {
    let stats = shared.leading.lock().as_ref().map(|t| {
        (
            t.dispatcher.stats(),
            t.dispatcher.connected_epoch().is_some(),
        )
    });
    MemberBeat {
        instance: shared.member.instance.clone(),
        address: shared.member.address.clone(),
        started_at: shared.started_at,
        in_flight: stats.map_or(0, |(s, _)| s.in_flight),
        pending: stats.map_or(0, |(s, _)| s.pending),
        limit: stats.map_or(0, |(s, _)| s.limit),
        stream_connected: stats.is_some_and(|(_, c)| c),
    }
}

/// Begins term `number`, taken at `started`: resumes what the cluster left unfinished and
/// starts dispatching. Gives the lease back if the takeover fails.
async fn begin_term(shared: &Arc<Shared>, number: i64, started: Instant) {
    let me = &shared.member.instance;
    let unfinished = match shared.db.take_over(number).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, term = number, "taking over failed; giving the lease back");
            let _ = bounded(shared.db.release(me, number)).await;
            return;
        }
    };
    // The takeover may have taken a while: the fence counts from a renewal after it, or
    // from the acquisition if that renewal did not succeed.
    let renewing = Instant::now();
    let fence_from = match bounded(shared.db.renew(me, number, LEASE)).await {
        Ok(true) => renewing,
        _ => started,
    };
    if fence_from + FENCE_AFTER <= Instant::now() {
        tracing::warn!(
            term = number,
            "the dispatch lease could not be renewed after the takeover; not leading"
        );
        return;
    }
    let resumed = unfinished.len();
    let mut config = shared.dispatch.clone();
    config.fence = Some(number);
    let dispatcher = Dispatcher::start_with(
        config,
        shared.store.clone(),
        shared.tokens.clone(),
        unfinished,
    );
    let (fence_at, deadline) = watch::channel(fence_from + FENCE_AFTER);
    let fence = tokio::spawn(fence_timer(dispatcher.clone(), deadline, number));
    let feeder = tokio::spawn(feed(shared.clone(), dispatcher.clone(), number));
    *shared.leading.lock() = Some(Term {
        number,
        dispatcher,
        fence_at,
        feeder,
        fence,
    });
    metrics::counter!(TERMS_LED).increment(1);
    tracing::info!(
        term = number,
        resumed,
        "this instance dispatches for the cluster"
    );
}

/// A renewal of `number` that began at `started` succeeded: the fence moves on.
fn renewed(shared: &Shared, number: i64, started: Instant) {
    if let Some(t) = shared
        .leading
        .lock()
        .as_ref()
        .filter(|t| t.number == number)
    {
        t.fence_at.send_replace(started + FENCE_AFTER);
    }
}

/// Stops term `number`'s sends now: another instance leads, or may soon.
fn fence(shared: &Shared, number: i64, why: &str) {
    if let Some(t) = shared
        .leading
        .lock()
        .as_ref()
        .filter(|t| t.number == number)
    {
        tracing::warn!(
            term = number,
            why,
            "fenced: this instance stops dispatching"
        );
        metrics::counter!(FENCED).increment(1);
        halt(t.dispatcher.clone());
    }
}

/// Halts `dispatcher` in the background: sends stop at once, the stream closes, and its
/// tasks end where the store holds them.
fn halt(dispatcher: DispatcherHandle) {
    tokio::spawn(async move { dispatcher.shutdown().await });
}

/// Halts the dispatcher at the deadline unless a renewal moved it.
async fn fence_timer(
    dispatcher: DispatcherHandle,
    mut deadline: watch::Receiver<Instant>,
    term: i64,
) {
    loop {
        let at = *deadline.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                if *deadline.borrow() <= Instant::now() {
                    tracing::warn!(term, after = ?FENCE_AFTER,
                        "fenced: the dispatch lease was not renewed in time; this instance stops dispatching");
                    metrics::counter!(FENCED).increment(1);
                    dispatcher.shutdown().await;
                    return;
                }
            }
            changed = deadline.changed() => if changed.is_err() { return },
        }
    }
}

/// The term's dispatcher halted: the term ends and the lease goes back (or runs out).
async fn end_term(shared: &Arc<Shared>, reason: &str) {
    let Some(term) = shared.leading.lock().take() else {
        return;
    };
    term.feeder.abort();
    term.fence.abort();
    halt(term.dispatcher.clone());
    tracing::warn!(term = term.number, %reason, "this instance's term ended; the lease goes back");
    if let Err(e) = bounded(shared.db.release(&shared.member.instance, term.number)).await {
        tracing::debug!(error = %e, "releasing the lease failed; it runs out by itself");
    }
    metrics::gauge!(LEADER).set(0.0);
}

/// On leaving: if leading, lets the actions in flight finish (up to `drain`), stops the
/// dispatcher and releases the lease. Returns the triggers the dispatcher held unfinished.
pub(super) async fn hand_over(shared: &Arc<Shared>, drain: std::time::Duration) -> usize {
    let Some(term) = shared.leading.lock().take() else {
        return 0;
    };
    term.feeder.abort();
    let running = term.dispatcher.quiesce(drain).await;
    let unfinished = usize::try_from(term.dispatcher.stats().pending).unwrap_or(usize::MAX);
    term.dispatcher.shutdown().await;
    term.fence.abort();
    match bounded(shared.db.release(&shared.member.instance, term.number)).await {
        Ok(()) => tracing::info!(
            term = term.number,
            running,
            unfinished,
            "handed the dispatch lease over; the next leader resumes the unfinished triggers"
        ),
        Err(e) => tracing::warn!(error = %e, term = term.number,
            "could not release the dispatch lease; another instance takes over when it runs out"),
    }
    metrics::gauge!(LEADER).set(0.0);
    unfinished
}

/// Takes triggers from the dispatch queue into the term's dispatcher as room allows.
async fn feed(shared: Arc<Shared>, dispatcher: DispatcherHandle, term: i64) {
    loop {
        let Ok(room) = dispatcher.room().await else {
            return;
        };
        // Not cut short by a timeout: a claim whose commit went through but whose answer
        // was given up would leave its triggers out of the queue until the next term.
        // A claim that hangs holds only this feeder; the fence stops the sends.
        match shared.db.claim(term, room.min(MAX_CHUNK)).await {
            Ok(rows) if rows.is_empty() => {
                tokio::select! {
                    _ = shared.wakes.dispatch.notified() => {}
                    _ = tokio::time::sleep(QUEUE_POLL) => {}
                    _ = dispatcher.halted_wait() => return,
                }
            }
            Ok(rows) => {
                if dispatcher.admit_claimed(rows).await.is_err() {
                    return;
                }
            }
            Err(StoreError::Fenced { .. }) => return,
            Err(e) => {
                tracing::warn!(error = %e, "taking triggers from the dispatch queue failed; retrying");
                tokio::time::sleep(HEARTBEAT).await;
            }
        }
    }
}

/// Runs one coordination statement within [`STATEMENT_TIMEOUT`].
async fn bounded<T>(
    statement: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within(STATEMENT_TIMEOUT, statement).await
}

/// Runs one coordination statement within `limit`.
async fn within<T>(
    limit: std::time::Duration,
    statement: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match timeout(limit, statement).await {
        Ok(answer) => answer,
        Err(_) => Err(StoreError::Database {
            location: "the cluster's database".into(),
            detail: format!("no answer within {}", humantime::format_duration(limit)),
        }),
    }
}
