//! Dispatch throughput through the full durable pipeline: a sandbox in this process, a
//! real SQLite store in a temporary folder (trigger rows, CRM outbox rows and hash-chained
//! audit records, group-committed), the assist stream over a real socket, the dispatcher.
//! The CRM rows are written as a run with a CRM URL writes them, not delivered (the
//! `outbox` benchmark measures delivery). `dispatch-grown` does the same on a store that
//! the same pipeline has first filled with many triggers.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use gcx_protocol::Catalogue;
use gcx_sandbox::{Faults, LatencySpec, Sandbox, SandboxOptions};

use super::BenchError;
use crate::assist::dispatch::DispatcherHandle;
use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::store::Store;

/// The engine's concurrency limit in both dispatch benchmarks (the protocol's default).
pub const LIMIT: u32 = 50;

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchMeasurement {
    /// Completed triggers per second, first submit to last outcome.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The share of the engine's theoretical rate (`limit` actions every `latency_ms`) that
/// `per_second` reaches.
pub fn utilisation(per_second: f64, latency_ms: u64, limit: u32) -> f64 {
    if latency_ms == 0 {
        return 0.0;
    }
    per_second / (f64::from(limit) * 1000.0 / latency_ms as f64)
}

/// Triggers of one measured set on a grown store ([`dispatch_grown`]), and of each set
/// that grows it.
pub const GROWN_SET: usize = 50_000;

/// Pushes `triggers` valid triggers through the pipeline against an engine of fixed
/// latency `engine_latency_ms` and limit `limit`; fails unless every one completed.
pub async fn dispatch(
    triggers: usize,
    engine_latency_ms: u64,
    limit: u32,
) -> Result<DispatchMeasurement, BenchError> {
    let rig = Rig::start(engine_latency_ms, limit, SandboxOptions::default()).await?;
    let measured = rig.push(triggers, 1).await;
    rig.stop().await?;
    measured
}

/// What [`dispatch_grown`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrownMeasurement {
    /// The last set, on the grown store.
    pub last: DispatchMeasurement,
    /// Triggers per second over all the sets that grew the store.
    pub filling_per_second: f64,
}

/// As [`dispatch`] at engine latency 0, on a store that already holds `stored` triggers
/// (with their CRM outbox rows and audit records), put there through the same pipeline
/// in sets of [`GROWN_SET`]; then one more set of `triggers` is measured. A fresh
/// store flatters: its indexes are small, so a commit group dirties fewer pages.
pub async fn dispatch_grown(
    stored: usize,
    triggers: usize,
) -> Result<GrownMeasurement, BenchError> {
    let rig = Rig::start(0, LIMIT, grown_sandbox()).await?;
    let measured = async {
        let started = std::time::Instant::now();
        let seed = rig.fill(stored).await?;
        let filling_per_second = stored as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let last = rig.push(triggers, seed).await?;
        Ok(GrownMeasurement {
            last,
            filling_per_second,
        })
    }
    .await;
    rig.stop().await?;
    measured
}

/// The sandbox of a benchmark that grows the store: it remembers finished actions for
/// re-sends, a million by default (about a gigabyte of results here); two sets' worth
/// covers any re-send of these benchmarks and keeps the process's memory about gcx's own.
fn grown_sandbox() -> SandboxOptions {
    SandboxOptions {
        idempotency_cap: 2 * GROWN_SET,
        ..SandboxOptions::default()
    }
}

/// What [`prune`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneMeasurement {
    /// Finished triggers `Store::prune` deleted per second.
    pub pruned_per_second: f64,
    /// [`dispatch`]'s figure for a set on the grown store, before the prune...
    pub alone: DispatchMeasurement,
    /// ...and for the next set, pushed while the prune runs.
    pub during: DispatchMeasurement,
}

/// Retention's first run on a big store: fills a store with `stored` finished triggers
/// (as [`dispatch_grown`]), measures a set of `triggers` alone, then pushes another set
/// while `Store::prune` deletes every trigger that finished before that set began.
pub async fn prune(stored: usize, triggers: usize) -> Result<PruneMeasurement, BenchError> {
    let rig = Rig::start(0, LIMIT, grown_sandbox()).await?;
    let measured = async {
        let seed = rig.fill(stored).await?;
        let alone = rig.push(triggers, seed).await?;
        let cutoff = chrono::Utc::now();
        let store = rig.store.clone();
        let pruning = tokio::spawn(async move {
            let started = std::time::Instant::now();
            store.prune(cutoff).await.map(|p| (p, started.elapsed()))
        });
        let during = rig.push(triggers, seed + 1).await?;
        let (pruned, took) = pruning
            .await
            .map_err(|e| BenchError::Incomplete(format!("the prune task ended: {e}")))??;
        let expected = (stored + triggers) as u64;
        if pruned.triggers != expected {
            return Err(BenchError::Incomplete(format!(
                "{} of {expected} finished triggers pruned",
                pruned.triggers
            )));
        }
        tracing::info!(
            pruned = pruned.triggers,
            took_ms = took.as_millis(),
            "pruned while a set was pushed"
        );
        Ok(PruneMeasurement {
            pruned_per_second: pruned.triggers as f64 / took.as_secs_f64().max(1e-9),
            alone,
            during,
        })
    }
    .await;
    rig.stop().await?;
    measured
}

/// A sandbox, a store in a temporary folder and a connected dispatcher.
struct Rig {
    sandbox: Sandbox,
    store: Store,
    dispatcher: DispatcherHandle,
    catalogue: Catalogue,
    _dir: super::TempDir,
}

impl Rig {
    async fn start(
        engine_latency_ms: u64,
        limit: u32,
        sandbox: SandboxOptions,
    ) -> Result<Rig, BenchError> {
        let sandbox = Sandbox::start(SandboxOptions {
            faults: Faults {
                max_concurrent_actions: limit,
                engine_latency_ms: LatencySpec::fixed(engine_latency_ms),
                ..Faults::default()
            },
            ..sandbox
        })
        .await
        .map_err(BenchError::Sandbox)?;
        let dir = super::TempDir::new()?;
        let mut config = Config::default();
        config.genesys.base_url = Some(sandbox.base_url());
        config.store.data_dir = dir.path().to_owned();
        // The CRM rows are written, not delivered: no delivery worker.
        config.crm.url = Some(sandbox.info().crm_url);
        let catalogue = Catalogue::builtin();
        let Pipeline {
            store, dispatcher, ..
        } = Pipeline::from_config(&config, catalogue.clone(), PipelineOptions::default()).await?;
        // Connected before the clock starts.
        while dispatcher.connected_epoch().is_none() {
            if let Some(why) = dispatcher.halted() {
                return Err(BenchError::Incomplete(format!(
                    "the dispatcher stopped before connecting: {why}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Rig {
            sandbox,
            store,
            dispatcher,
            catalogue,
            _dir: dir,
        })
    }

    /// Grows the store by `stored` triggers in sets of [`GROWN_SET`], seeds 1, 2, ...;
    /// returns the next unused seed.
    async fn fill(&self, stored: usize) -> Result<u64, BenchError> {
        let mut seed = 1;
        let mut left = stored;
        while left > 0 {
            let set = left.min(GROWN_SET);
            let m = self.push(set, seed).await?;
            left -= set;
            seed += 1;
            tracing::info!(
                stored = stored - left,
                per_second = m.per_second.round(),
                p99_ms = m.p99_ms,
                "store grown by one set"
            );
        }
        Ok(seed)
    }

    /// Dispatches `triggers` new valid triggers (drawn from `seed`: each set its own
    /// correlationIds) and waits for every outcome; fails unless every one completed.
    async fn push(&self, triggers: usize, seed: u64) -> Result<DispatchMeasurement, BenchError> {
        let payloads = crate::demo::triggers::generate_valid(triggers, seed, &self.catalogue);
        // The loop awaiting outcomes runs on a worker thread, as `gcx trigger`'s does: on
        // the benchmark's `block_on` thread every outcome would unpark that thread.
        let collector = self.dispatcher.clone();
        let figures = tokio::spawn(async move {
            let done = AtomicU64::new(0);
            crate::demo::dispatch::dispatch(&collector, payloads, &done).await
        })
        .await
        .map_err(|e| BenchError::Incomplete(format!("the dispatch loop ended: {e}")))?;
        if figures.completed != triggers as u64 {
            return Err(BenchError::Incomplete(format!(
                "{} of {triggers} triggers completed ({} failed{})",
                figures.completed,
                figures.failed,
                figures
                    .halted
                    .map(|h| format!("; halted: {h}"))
                    .unwrap_or_default()
            )));
        }
        Ok(DispatchMeasurement {
            per_second: figures.per_second,
            p50_ms: figures.p50_ms,
            p99_ms: figures.p99_ms,
        })
    }

    async fn stop(self) -> Result<(), BenchError> {
        self.dispatcher.shutdown().await;
        self.store.close().await?;
        let _ = self.sandbox.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_is_a_share_of_limit_per_latency() {
        assert!((utilisation(2_500.0, 20, 50) - 1.0).abs() < 1e-9);
        assert!((utilisation(2_375.0, 20, 50) - 0.95).abs() < 1e-9);
        assert_eq!(utilisation(100.0, 0, 50), 0.0);
    }
}
