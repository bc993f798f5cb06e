//! Dispatch throughput through the full durable pipeline: a sandbox in this process, a
//! real SQLite store in a temporary folder (trigger rows, CRM outbox rows and hash-chained
//! audit records, group-committed), the assist stream over a real socket, the dispatcher.
//! The CRM rows are written as a run with a CRM URL writes them, not delivered (the
//! `outbox` benchmark measures delivery).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use gcx_protocol::Catalogue;
use gcx_sandbox::{Faults, LatencySpec, Sandbox, SandboxOptions};

use super::BenchError;
use crate::assist::dispatcher::{Dispatcher, DispatcherConfig};
use crate::auth::{Credentials, TokenProvider};
use crate::config::Config;
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

/// Pushes `triggers` valid triggers through the pipeline against an engine of fixed
/// latency `engine_latency_ms` and limit `limit`; fails unless every one completed.
pub async fn dispatch(
    triggers: usize,
    engine_latency_ms: u64,
    limit: u32,
) -> Result<DispatchMeasurement, BenchError> {
    let sandbox = Sandbox::start(SandboxOptions {
        faults: Faults {
            max_concurrent_actions: limit,
            engine_latency_ms: LatencySpec::fixed(engine_latency_ms),
            ..Faults::default()
        },
        ..SandboxOptions::default()
    })
    .await
    .map_err(BenchError::Sandbox)?;
    let dir = super::TempDir::new()?;
    let mut config = Config::default();
    config.store.data_dir = dir.path().to_owned();
    config.crm.url = Some(sandbox.info().crm_url);
    let store = Store::open(&config.store).await?;
    let tokens = TokenProvider::new(
        Credentials::sandbox_demo(&sandbox.base_url())
            .with_scopes(gcx_protocol::oauth::ASSIST_SCOPES),
        crate::http_client::build(Duration::from_secs(10))?,
    )?;
    tokens.token().await?;
    let catalogue = Catalogue::builtin();
    let dispatch_config =
        DispatcherConfig::from_config(&config, sandbox.info().stream_url, catalogue.version());
    let dispatcher = Dispatcher::start(dispatch_config, store.clone(), tokens).await?;
    // Connected before the clock starts.
    while dispatcher.connected_epoch().is_none() {
        if let Some(why) = dispatcher.halted() {
            return Err(BenchError::Incomplete(format!(
                "the dispatcher stopped before connecting: {why}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let payloads = crate::demo::triggers::generate_valid(triggers, 1, &catalogue);
    // The loop awaiting outcomes runs on a worker thread, as `gcx trigger`'s does: on the
    // benchmark's `block_on` thread every outcome would unpark that thread.
    let collector = dispatcher.clone();
    let figures = tokio::spawn(async move {
        let done = AtomicU64::new(0);
        crate::demo::dispatch::dispatch(&collector, payloads, &done).await
    })
    .await
    .map_err(|e| BenchError::Incomplete(format!("the dispatch loop ended: {e}")))?;
    dispatcher.shutdown().await;
    store.close().await?;
    let _ = sandbox.shutdown().await;
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
