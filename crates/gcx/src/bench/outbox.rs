//! Outbox delivery throughput: commits N CRM rows (initiated/completed pairs) to a real
//! SQLite store, then delivers them, signed, to the sandbox's CRM receiver (which verifies
//! every signature) over real sockets. Commit time is excluded; the run fails unless the
//! receiver saw every message once, in order.

use std::time::{Duration, Instant};

use gcx_sandbox::{Sandbox, SandboxOptions};
use serde_json::json;

use super::{BenchError, TempDir};
use crate::config::{Config, Secret};
use crate::delivery::{self, DeliveryWorker};
use crate::store::{Store, WriteBatch};

/// Requests in flight to the receiver (`delivery.max_parallel_per_endpoint`).
pub const PARALLEL: usize = 64;

/// The Standard Webhooks test secret: the receiver verifies with it.
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxMeasurement {
    pub per_second: f64,
    pub delivered: u64,
}

/// Delivers `messages` (rounded up to an even number) with `parallel` requests in flight.
pub async fn deliveries(messages: usize, parallel: usize) -> Result<OutboxMeasurement, BenchError> {
    let pairs = messages.div_ceil(2).max(1);
    let rows = 2 * pairs as u64;
    let dir = TempDir::new()?;
    let sandbox = Sandbox::start(SandboxOptions {
        crm_secret: Some(SECRET.into()),
        ..SandboxOptions::default()
    })
    .await
    .map_err(BenchError::Sandbox)?;
    let mut config = Config::default();
    config.store.data_dir = dir.path().to_owned();
    let store = Store::open(&config.store).await?;

    let ids: Vec<String> = (0..pairs)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    commit_crm_pairs(&store, &ids).await?;

    config.crm.url = Some(sandbox.info().crm_url);
    config.crm.secret = Some(Secret::new(SECRET));
    config.delivery.max_parallel_per_endpoint = parallel.max(1);
    let delivering = Instant::now();
    let handle = DeliveryWorker::spawn(store.clone(), &config)?;
    let report = handle.drain(Duration::from_secs(600)).await?;
    let elapsed = delivering.elapsed();
    handle.shutdown().await;
    store.close().await?;
    let crm = &sandbox.state.stats.crm;
    let (unique, violations, bad) = (
        crm.unique_messages.get(),
        crm.order_violations.get(),
        crm.bad_signatures.get(),
    );
    let _ = sandbox.shutdown().await;
    if report.pending != 0 || unique != rows || violations != 0 || bad != 0 {
        return Err(BenchError::Incomplete(format!(
            "{unique} of {rows} messages delivered ({} pending), {violations} order violations, {bad} bad signatures",
            report.pending
        )));
    }
    Ok(OutboxMeasurement {
        per_second: rows as f64 / elapsed.as_secs_f64().max(1e-9),
        delivered: rows,
    })
}

/// Commits, for each correlationId in `ids`, an `initiated` and then a `completed` CRM
/// message under its key, 500 keys to a store write.
pub(super) async fn commit_crm_pairs(store: &Store, ids: &[String]) -> Result<(), BenchError> {
    for chunk in ids.chunks(500) {
        for state in ["initiated", "completed"] {
            let outbox = chunk
                .iter()
                .map(|id| {
                    let body = json!({
                        "correlationId": id, "actionType": "knowledge_search",
                        "agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "sessionId": "session-1",
                        "timestamp": "2026-11-21T10:00:00.000Z", "executionState": state,
                    });
                    delivery::message(delivery::CRM, id, &body)
                })
                .collect();
            store
                .commit(WriteBatch {
                    outbox,
                    ..WriteBatch::default()
                })
                .await?;
        }
    }
    Ok(())
}
