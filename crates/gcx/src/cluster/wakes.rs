//! One listening connection per instance: notifications on the cluster's channels become
//! wake-ups of the task that acts on them. A lost connection wakes every one of them
//! (whatever was notified meanwhile is lost), and they look for themselves.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use super::Shared;
use crate::store::{CHANNEL_DISPATCH, CHANNEL_FINISHED, CHANNEL_LEADER};

/// The wake-ups; each has one waiter, so a notification that comes while it is busy is
/// kept for its next wait (`Notify::notify_one`).
#[derive(Default)]
pub(super) struct Wakes {
    /// Triggers joined the dispatch queue (the leader's feeder).
    pub(super) dispatch: Notify,
    /// Triggers finished (the finish watch).
    pub(super) finished: Notify,
    /// A leader released its lease (the election loop).
    pub(super) leader: Notify,
}

impl Wakes {
    fn all(&self) {
        self.dispatch.notify_one();
        self.finished.notify_one();
        self.leader.notify_one();
    }
}

/// Reads notifications until the cluster is left.
pub(super) async fn listen(shared: Arc<Shared>, mut listener: PgListener) {
    let wakes = &shared.wakes;
    loop {
        let next = tokio::select! {
            n = listener.try_recv() => n,
            _ = shared.stop.cancelled() => return,
        };
        match next {
            Ok(Some(n)) => match n.channel() {
                CHANNEL_DISPATCH => wakes.dispatch.notify_one(),
                CHANNEL_FINISHED => wakes.finished.notify_one(),
                CHANNEL_LEADER => wakes.leader.notify_one(),
                _ => {}
            },
            // The connection closed; the next call reconnects and listens again.
            Ok(None) => wakes.all(),
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's notification connection failed; retrying");
                wakes.all();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shared.stop.cancelled() => return,
                }
            }
        }
    }
}
