//! `store.keep_finished` in `gcx serve`: the store is pruned when the service starts and
//! every hour after (`gcx prune` does the same once, on demand). Between two prunes the
//! task sleeps.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::Store;

/// How often a running service prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// Prunes what ended more than `keep` ago, now and every [`PRUNE_EVERY`]; abort the task
/// to stop it (a chunk already handed to the store still commits whole).
pub fn spawn(store: Store, keep: Duration) -> JoinHandle<()> {
    tokio::spawn(now_and_every(PRUNE_EVERY, move || {
        let store = store.clone();
        async move { prune(&store, keep).await }
    }))
}

/// Runs `job` at once and then every `period`, sleeping in between; a run that overruns
/// its period delays the next instead of bunching them.
async fn now_and_every<F, R>(period: Duration, mut job: F)
where
    F: FnMut() -> R,
    R: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        job().await;
    }
}

async fn prune(store: &Store, keep: Duration) {
    match store.prune_older_than(keep).await {
        Ok(pruned) => {
            metrics::counter!("gcx_store_pruned_total", "kind" => "triggers")
                .increment(pruned.triggers);
            metrics::counter!("gcx_store_pruned_total", "kind" => "webhooks")
                .increment(pruned.webhooks);
            tracing::info!(
                triggers = pruned.triggers,
                webhooks = pruned.webhooks,
                keep = %humantime::format_duration(keep),
                "pruned finished triggers and delivered webhooks (store.keep_finished)"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            "pruning the store failed; the next try is in an hour"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn prunes_at_start_then_once_an_hour_and_sleeps_in_between() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let task = tokio::spawn(now_and_every(PRUNE_EVERY, move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async {}
        }));
        let after = |d: Duration| {
            let runs = runs.clone();
            async move {
                tokio::time::sleep(d).await;
                runs.load(Ordering::Relaxed)
            }
        };
        // Each look is a millisecond after the instant it checks, so the task has run.
        let ms = Duration::from_millis(1);
        assert_eq!(after(ms).await, 1, "at start");
        assert_eq!(
            after(PRUNE_EVERY - 2 * ms).await,
            1,
            "nothing before the hour"
        );
        assert_eq!(after(2 * ms).await, 2, "on the hour");
        assert_eq!(after(3 * PRUNE_EVERY).await, 5, "once an hour");
        task.abort();
    }
}
