//! Scale-out: several `gcx serve` instances on one PostgreSQL database act as one service.
//!
//! One instance at a time dispatches: the one holding the dispatch lease (the
//! `cluster_leader` row, [`crate::store::ClusterDb`]). Every instance takes triggers: it
//! stores them `accepted` and, in the same transaction, puts them in the dispatch queue,
//! which notifies the leader. The leader runs the one dispatcher of the cluster, so the
//! engine's limit is held in one place, exactly as by a single instance; an instance that
//! does not lead holds no capacity at all.
//!
//! - `lead`: the membership heartbeat and the election loop. Each second every instance
//!   refreshes its member row; the leader renews its lease ([`LEASE`]), the others try to
//!   take it once it ran out. A new leader empties the queue and reads every unfinished
//!   trigger in one snapshot, starts a dispatcher fenced to its term (every write it makes
//!   fails once another term began), and feeds it from the queue. A leader whose renewal
//!   has not succeeded for [`FENCE_AFTER`] stops sending before anyone can take over
//!   ([`LEASE`] by the database's clock); a clean stop lets the actions in flight finish,
//!   then releases the lease and notifies the others, which take over at once.
//! - `intake`: [`ClusterHandle::submit`] (store + queue in one transaction) and the wait
//!   for a trigger to finish, whichever instance runs it (`finish`).
//! - `wakes`: one listening connection per instance turning notifications into wake-ups.
//!
//! *Invariants:* at most one dispatcher sends at any moment (the old leader's fence
//! deadline falls before its lease's end); a trigger accepted by any instance is either in
//! the dispatch queue or among the unfinished triggers a new leader reads, never lost
//! between them; a deposed leader's late store write is refused, never applied beside
//! its successor's.

mod finish;
mod intake;
mod lead;
mod wakes;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::assist::dispatch::{DispatcherConfig, DispatcherHandle};
use crate::auth::TokenProvider;
use crate::store::{ClusterDb, LeaseRow, MemberRow, Store, StoreError};

pub use intake::Taken;
pub use lead::{FENCED, LEADER, MEMBER_IN_FLIGHT, MEMBERS, TERM, TERMS_LED};

/// Registers a description of each cluster metric.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(LEADER, "1 while this instance holds the dispatch lease");
    describe_gauge!(
        TERM,
        "The dispatch lease's term, as last read (grows at each takeover)"
    );
    describe_gauge!(MEMBERS, "Instances heard from within the lease time");
    describe_gauge!(
        MEMBER_IN_FLIGHT,
        "Each live instance's actions between send and result"
    );
    describe_counter!(
        TERMS_LED,
        "Terms this instance began as the cluster's dispatcher"
    );
    describe_counter!(
        FENCED,
        "Terms this instance ended because its lease was not renewed in time"
    );
}

/// How often each instance heartbeats, and the leader renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a lease lasts past its last renewal, by the database's clock; also how long
/// a member may be silent before it counts as gone.
pub const LEASE: Duration = Duration::from_secs(5);
/// How long after the start of its last successful renewal a leader stops sending. Two
/// seconds before its lease can run out: the margin covers a clock running fast on the
/// leader's host and the time its halt takes.
pub const FENCE_AFTER: Duration = Duration::from_secs(3);
/// Longest wait for one coordination statement before the round counts it as failed.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Member rows silent this long are removed by the leader.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Why the cluster could not be joined.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(
        "the store is SQLite, which one process owns; a cluster needs PostgreSQL (store.database_url)"
    )]
    NotShared,
    #[error("joining the cluster failed: {0}")]
    Store(#[from] StoreError),
}

/// What this instance is to the cluster.
#[derive(Debug, Clone)]
pub struct Member {
    /// `hostname:pid`, as in audit records.
    pub instance: String,
    /// Where its API answers, shown to the others.
    pub address: String,
}

/// The running membership of this instance. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
}

/// What the election loop, the intake and the finish watch share.
struct Shared {
    db: ClusterDb,
    store: Store,
    tokens: TokenProvider,
    dispatch: DispatcherConfig,
    member: Member,
    started_at: DateTime<Utc>,
    wakes: wakes::Wakes,
    finish: finish::FinishWatch,
    /// The term this instance leads, while it does.
    leading: Mutex<Option<lead::Term>>,
    /// When the lease was last read and what was left of it then.
    lease_seen: Mutex<Option<(tokio::time::Instant, Option<Duration>)>>,
    /// Whether a live lease holder's stream is connected, as last seen.
    dispatching: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ClusterHandle {
    /// Joins the cluster of `store`'s database: registers this instance, listens for
    /// the others, and starts the election loop; returns at once (the first round runs
    /// in the background). `dispatch` is the dispatcher each term of this instance's
    /// leadership starts with.
    pub async fn join(
        store: Store,
        tokens: TokenProvider,
        dispatch: DispatcherConfig,
        member: Member,
    ) -> Result<ClusterHandle, ClusterError> {
        let db = store.cluster().ok_or(ClusterError::NotShared)?;
        let listener = db.listener().await?;
        let shared = Arc::new(Shared {
            db,
            store,
            tokens,
            dispatch,
            member,
            started_at: Utc::now(),
            wakes: wakes::Wakes::default(),
            finish: finish::FinishWatch::default(),
            leading: Mutex::new(None),
            lease_seen: Mutex::new(None),
            dispatching: std::sync::atomic::AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(wakes::listen(shared.clone(), listener)),
            tokio::spawn(finish::watch(shared.clone())),
            tokio::spawn(lead::elect(shared.clone())),
        ];
        *shared.tasks.lock() = tasks;
        Ok(ClusterHandle { shared })
    }

    /// This instance.
    pub fn member(&self) -> &Member {
        &self.shared.member
    }

    /// The dispatcher of the term this instance leads, if it leads.
    pub fn dispatcher(&self) -> Option<DispatcherHandle> {
        self.shared
            .leading
            .lock()
            .as_ref()
            .map(|t| t.dispatcher.clone())
    }

    /// Whether the cluster dispatches now: a leader holds a live lease and its stream is
    /// connected (one condition of `/readyz`).
    pub fn dispatching(&self) -> bool {
        self.shared
            .dispatching
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The members, the lease and the length of the dispatch queue, read now.
    pub async fn view(&self) -> Result<(Vec<MemberRow>, LeaseRow, u64), StoreError> {
        let (members, lease) = self.shared.db.view().await?;
        let queued = self.shared.db.queued().await?;
        Ok((members, lease, queued))
    }

    /// Leaves the cluster: stops the election loop; if leading, lets the actions in
    /// flight finish (up to `drain`), stops the dispatcher and releases the lease so
    /// another instance takes over at once; then removes this member. Returns how many
    /// triggers this instance's dispatcher held unfinished (they resume under the next
    /// leader).
    pub async fn leave(&self, drain: Duration) -> usize {
        let shared = &self.shared;
        shared.stop.cancel();
        let tasks = std::mem::take(&mut *shared.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        let unfinished = lead::hand_over(shared, drain).await;
        if let Err(e) = shared.db.leave(&shared.member.instance).await {
            tracing::warn!(error = %e, "could not remove this instance's member row; it ages out");
        }
        unfinished
    }
}
