//! What the HTTP API needs from the trigger pipeline behind it, as one small trait: hand
//! over validated triggers, learn once each is durable, and get a future that resolves
//! when it is finished; and whether the assist stream is up. [`DispatcherHandle`] (one
//! instance alone on its store) and [`ClusterHandle`] (one of several on PostgreSQL)
//! implement it; keeping the seam narrow keeps routes free of dispatcher internals.

use std::collections::VecDeque;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use gcx_protocol::ActionTriggerPayload;
use thiserror::Error;

use crate::assist::dispatch::{
    Admission, DispatchError, DispatchStats, DispatcherHandle, MAX_CHUNK,
};
use crate::cluster::ClusterHandle;
use crate::store::TriggerState;

/// What became of one submitted trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Newly stored as `accepted` (or already being dispatched by this process); the
    /// pipeline will send it.
    Accepted,
    /// The correlationId was already stored by an earlier run, in this state; nothing
    /// new was done beyond resuming it if it was unfinished.
    Existing(TriggerState),
}

/// One submitted trigger: how it was taken, and a future that resolves once it is
/// finished (or the pipeline stopped). Callers bound the wait themselves.
pub struct Intake {
    pub submitted: Submitted,
    pub finished: BoxFuture<'static, ()>,
}

/// Why the pipeline could not take a batch. Triggers of it may or may not have been
/// accepted; re-sending them is safe (acceptance is idempotent per correlationId).
#[derive(Debug, Error)]
pub enum PipelineError {
    /// Why: the dispatcher's halt reason (a store write that failed, say), or that it
    /// is shutting down.
    #[error("the trigger pipeline takes no new triggers: {0}")]
    Stopping(String),
    #[error("the trigger store did not confirm the write: {0}")]
    Store(String),
}

/// The trigger pipeline as `gcx serve` sees it.
pub trait TriggerPipeline: Send + Sync + 'static {
    /// Durably accepts `triggers` (already validated), in order; one [`Intake`] each.
    /// Resolves only once every one of them is durable.
    fn submit(
        &self,
        triggers: Vec<ActionTriggerPayload>,
    ) -> BoxFuture<'_, Result<Vec<Intake>, PipelineError>>;

    /// Whether the triggers taken now get dispatched now: this instance's assist stream
    /// is connected, or, in a cluster, the leader's (one condition of `/readyz`).
    fn stream_connected(&self) -> bool;

    /// This instance's dispatcher's figures, while it has one (a cluster member has one
    /// only while it leads).
    fn dispatch_stats(&self) -> Option<DispatchStats>;
}

impl From<DispatchError> for PipelineError {
    fn from(e: DispatchError) -> PipelineError {
        match e {
            DispatchError::Stopped(reason) => PipelineError::Stopping(reason),
            DispatchError::Store(e) => PipelineError::Store(e.to_string()),
        }
    }
}

impl TriggerPipeline for DispatcherHandle {
    fn submit(
        &self,
        triggers: Vec<ActionTriggerPayload>,
    ) -> BoxFuture<'_, Result<Vec<Intake>, PipelineError>> {
        async move {
            // Admit all first (in chunks that each wait only for room in the
            // dispatcher's window and share one store write), then await durability.
            let mut tickets = Vec::with_capacity(triggers.len());
            let mut queue = VecDeque::from(triggers);
            while !queue.is_empty() {
                tickets.extend(self.submit_chunk(&mut queue, MAX_CHUNK).await?);
            }
            let admissions = join_all(tickets.iter_mut().map(|t| t.accepted())).await;
            let mut out = Vec::with_capacity(tickets.len());
            for (admission, mut ticket) in admissions.into_iter().zip(tickets) {
                let submitted = match admission? {
                    Admission::New => Submitted::Accepted,
                    Admission::Resumed(state) | Admission::AlreadyFinal(state) => {
                        Submitted::Existing(state)
                    }
                };
                let finished = async move {
                    ticket.outcome().await;
                }
                .boxed();
                out.push(Intake {
                    submitted,
                    finished,
                });
            }
            Ok(out)
        }
        .boxed()
    }

    fn stream_connected(&self) -> bool {
        self.connected_epoch().is_some()
    }

    fn dispatch_stats(&self) -> Option<DispatchStats> {
        Some(self.stats())
    }
}

impl TriggerPipeline for ClusterHandle {
    fn submit(
        &self,
        triggers: Vec<ActionTriggerPayload>,
    ) -> BoxFuture<'_, Result<Vec<Intake>, PipelineError>> {
        async move {
            let taken = ClusterHandle::submit(self, triggers)
                .await
                .map_err(|e| PipelineError::Store(e.to_string()))?;
            Ok(taken
                .into_iter()
                .map(|t| Intake {
                    submitted: match t.existing {
                        None => Submitted::Accepted,
                        Some(state) => Submitted::Existing(state),
                    },
                    finished: t.finished,
                })
                .collect())
        }
        .boxed()
    }

    fn stream_connected(&self) -> bool {
        self.dispatching()
    }

    fn dispatch_stats(&self) -> Option<DispatchStats> {
        self.dispatcher().map(|d| d.stats())
    }
}
