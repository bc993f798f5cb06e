//! `store.keep_finished` in `gcx serve`: the store is pruned when the service starts and
//! every hour after (`gcx prune` does the same once, on demand).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::Store;

/// How often a running service prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// Prunes what ended more than `keep` ago, now and every [`PRUNE_EVERY`]; abort the task
/// to stop it (a chunk already handed to the store still commits whole).
pub fn spawn(store: Store, keep: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
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
    })
}
