//! A known set of triggers through one dispatcher: each submitted in order (waiting for
//! room in the dispatcher's window), every outcome collected as it comes, whatever order
//! the triggers finish in. `gcx trigger`, the demo and the dispatch benchmark run their
//! triggers this way.

use std::collections::VecDeque;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use gcx_protocol::ActionTriggerPayload;

use super::dispatch::{DispatcherHandle, MAX_CHUNK, Outcome, Ticket};

/// What dispatching a set of triggers gave.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcomes {
    /// One per trigger that was admitted, in the order they finished.
    pub outcomes: Vec<Outcome>,
    /// Why the dispatcher stopped on its own (a fatal stream error), if it did; the
    /// triggers not admitted by then have no outcome.
    pub halted: Option<String>,
}

/// Submits every trigger of `triggers` and waits for each outcome, or for the dispatcher
/// to halt; calls `on_outcome` with each as it comes (a progress display).
///
/// Run it on a worker thread (`tokio::spawn`), not on a `block_on` thread: every outcome
/// wakes the task that runs it.
pub async fn dispatch_batch(
    dispatcher: &DispatcherHandle,
    triggers: Vec<ActionTriggerPayload>,
    mut on_outcome: impl FnMut(&Outcome),
) -> BatchOutcomes {
    let mut outcomes = Vec::with_capacity(triggers.len());
    let (tickets_tx, mut tickets_rx) = tokio::sync::mpsc::channel::<Ticket>(1024);
    let submitter = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            let mut queue = VecDeque::from(triggers);
            while !queue.is_empty() {
                let Ok(tickets) = dispatcher.submit_chunk(&mut queue, MAX_CHUNK).await else {
                    return;
                };
                for ticket in tickets {
                    if tickets_tx.send(ticket).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    let mut waiting = FuturesUnordered::new();
    let mut submitting = true;
    let halted = dispatcher.halted_wait();
    tokio::pin!(halted);
    let mut halt_reason = None;
    while submitting || !waiting.is_empty() {
        tokio::select! {
            ticket = tickets_rx.recv(), if submitting => match ticket {
                Some(mut ticket) => waiting.push(async move { ticket.outcome().await }),
                None => submitting = false,
            },
            Some(outcome) = waiting.next() => {
                on_outcome(&outcome);
                outcomes.push(outcome);
            }
            reason = &mut halted, if halt_reason.is_none() => {
                halt_reason = Some(reason);
                submitting = false;
            }
        }
    }
    submitter.abort();
    BatchOutcomes {
        outcomes,
        halted: halt_reason,
    }
}
