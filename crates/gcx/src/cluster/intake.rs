//! Intake on every instance: a request's triggers are stored `accepted` and queued for the
//! leader in one transaction per chunk ([`crate::store::WriteBatch::queue`]); each comes
//! back with what the store already held under its correlationId and a future that
//! resolves once it is finished, whichever instance runs it.

use chrono::Utc;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use gcx_protocol::ActionTriggerPayload;
use uuid::Uuid;

use super::ClusterHandle;
use crate::assist::dispatch::MAX_CHUNK;
use crate::store::{StoreError, TriggerState, TriggerWrite, WriteBatch, json_text};

/// One trigger as the cluster took it.
pub struct Taken {
    pub correlation_id: Uuid,
    /// `None`: newly accepted; else the state its correlationId was already stored in
    /// (unfinished ones are already queued or with the leader, finished ones stay so).
    pub existing: Option<TriggerState>,
    /// Resolves once the trigger is stored in a final state.
    pub finished: BoxFuture<'static, ()>,
}

impl ClusterHandle {
    /// Durably accepts `triggers` (already validated), in order, for the cluster's
    /// leader to dispatch. Resolves once every one is committed.
    pub async fn submit(
        &self,
        triggers: Vec<ActionTriggerPayload>,
    ) -> Result<Vec<Taken>, StoreError> {
        let mut taken = Vec::with_capacity(triggers.len());
        for chunk in triggers.chunks(MAX_CHUNK) {
            let at = Utc::now();
            let writes = chunk
                .iter()
                .map(|p| TriggerWrite::Accept {
                    correlation_id: p.correlation_id,
                    action_type: p.action_type.clone(),
                    payload: json_text(p),
                    at,
                })
                .collect();
            let receipt = self
                .shared
                .store
                .commit(WriteBatch {
                    triggers: writes,
                    queue: true,
                    ..WriteBatch::default()
                })
                .await?;
            for (p, existing) in chunk.iter().zip(receipt.existing) {
                let finished = match existing {
                    Some(state) if !state.is_unfinished() => async {}.boxed(),
                    _ => self.shared.finish.wait(p.correlation_id).map(drop).boxed(),
                };
                taken.push(Taken {
                    correlation_id: p.correlation_id,
                    existing,
                    finished,
                });
            }
        }
        Ok(taken)
    }
}
