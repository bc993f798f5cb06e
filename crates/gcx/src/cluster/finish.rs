//! Waiting for triggers to finish whichever instance runs them: the correlationIds this
//! instance's requests wait for, looked up in the store each time a commit somewhere
//! announces finished triggers (`gcx_finished`), when a wait is added, and every second
//! in case a notification was lost. Nothing is looked up while nothing waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use super::{STATEMENT_TIMEOUT, Shared};

/// The longest list of ids one lookup sends.
const LOOKUP_CHUNK: usize = 8192;

/// The waits of this instance.
#[derive(Default)]
pub(super) struct FinishWatch {
    waiting: Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>,
    added: Notify,
}

impl FinishWatch {
    /// Resolves once `id` is stored in a final state (or the cluster is left).
    pub(super) fn wait(&self, id: Uuid) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().entry(id).or_default().push(tx);
        self.added.notify_one();
        rx
    }

    /// The ids some request still waits for (waits whose request went away are dropped).
    fn ids(&self) -> Vec<Uuid> {
        let mut waiting = self.waiting.lock();
        waiting.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        waiting.keys().copied().collect()
    }

    fn finished(&self, ids: &[Uuid]) {
        let mut waiting = self.waiting.lock();
        for id in ids {
            for sender in waiting.remove(id).unwrap_or_default() {
                let _ = sender.send(());
            }
        }
    }
}

/// Resolves waits until the cluster is left.
pub(super) async fn watch(shared: Arc<Shared>) {
    let watch = &shared.finish;
    loop {
        let ids = watch.ids();
        if ids.is_empty() {
            tokio::select! {
                _ = watch.added.notified() => {}
                _ = shared.stop.cancelled() => return,
            }
            continue;
        }
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            match tokio::time::timeout(STATEMENT_TIMEOUT, shared.db.finished_among(chunk)).await {
                Ok(Ok(done)) => watch.finished(&done),
                Ok(Err(e)) => tracing::debug!(error = %e, "looking up finished triggers failed"),
                Err(_) => tracing::debug!("looking up finished triggers timed out"),
            }
        }
        tokio::select! {
            _ = shared.wakes.finished.notified() => {}
            _ = watch.added.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shared.stop.cancelled() => return,
        }
    }
}
