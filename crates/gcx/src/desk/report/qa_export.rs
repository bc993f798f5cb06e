//! The QA platform export (PROTOCOL.md section 6): the run's `SimulationMetrics` as one
//! outbox message (endpoint `qa`, ordering key the run id), committed to the store at the
//! end of the run and delivered by [`crate::delivery`] like every webhook: Standard
//! Webhooks headers signed with `qa.secret`, the retry schedule, dead letters.
//!
//! [`export`] waits for the delivery up to [`QaExport`]'s bound. A message still pending
//! then stays in the outbox: `gcx outbox deliver` or the next `gcx serve` sends it.

use std::time::Duration;

use gcx_protocol::webhook::SimulationMetrics;

use crate::config::Config;
use crate::delivery::{self, DeliveryError, DeliveryWorker, QA};
use crate::store::{OutboxMessage, Store, StoreError, WriteBatch};

/// Where the export is stored and how long to wait for its delivery.
#[derive(Debug, Clone)]
pub struct QaExport {
    store: Store,
    /// `qa.url`, `qa.secret` and the `delivery` settings.
    config: Config,
    wait: Duration,
}

/// Why the export could not be stored or followed.
#[derive(Debug, thiserror::Error)]
pub enum QaExportError {
    #[error("no QA endpoint is configured (qa.url, QA_PLATFORM_ENDPOINT, --qa-endpoint)")]
    NoEndpoint,
    #[error("the QA export's delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("the QA export's store: {0}")]
    Store(#[from] StoreError),
    #[error("the QA export {0} is not in the store after its commit")]
    Missing(String),
}

impl QaExport {
    /// Checks the `qa` endpoint's settings (`qa.url` set and usable, `qa.secret` a
    /// Standard Webhooks secret when set), so that a bad one stops the run before it
    /// starts. `wait` bounds how long [`export`] waits for the delivery.
    pub fn new(store: Store, config: &Config, wait: Duration) -> Result<QaExport, QaExportError> {
        if delivery::target::named(config, &[QA])?.is_empty() {
            return Err(QaExportError::NoEndpoint);
        }
        Ok(QaExport {
            store,
            config: config.clone(),
            wait,
        })
    }
}

/// Commits the export as an outbox message, delivers it with a worker of the `qa`
/// endpoint alone (other pending QA exports go with it; the CRM's rows are left to their
/// own worker) for at most the export's wait, and returns the message as stored then:
/// `delivered`, `dead`, or still `pending` (it stays in the outbox).
pub async fn export(
    qa: &QaExport,
    metrics: &SimulationMetrics,
) -> Result<OutboxMessage, QaExportError> {
    let message = delivery::message(QA, &metrics.run_id, metrics);
    let message_id = message.message_id.clone();
    qa.store
        .commit(WriteBatch {
            outbox: vec![message],
            ..WriteBatch::default()
        })
        .await?;
    let worker = DeliveryWorker::spawn_for(qa.store.clone(), &qa.config, &[QA])?;
    let waited = worker.wait_for(&message_id, qa.wait).await;
    // An attempt still in flight is answered and recorded before this returns.
    worker.shutdown().await;
    waited?;
    qa.store
        .outbox_message(&message_id)
        .await?
        .ok_or(QaExportError::Missing(message_id))
}
