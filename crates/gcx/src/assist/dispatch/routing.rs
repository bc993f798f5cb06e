//! The router: the stream's reader calls [`route_event`] with each engine event as it
//! reads it, in order, and it hands the event to the trigger it concerns (by
//! correlationId) or to every trigger (a lost connection). Nothing here waits, so the
//! reader is never held up.
//!
//! A `result` frees its trigger's slot here, before the trigger's task writes it: the
//! engine freed its place when it sent the result, and the next trigger gets ours
//! without waiting for a store commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gcx_protocol::assist::{ErrorPayload, ResultPayload};
use tokio::time::Instant;
use uuid::Uuid;

use super::Core;
use super::admission::Entry;
use crate::assist::metrics as m;
use crate::assist::stream::StreamEvent;

/// What the router tells one trigger.
#[derive(Debug)]
pub(super) enum TriggerEvent {
    /// `at`: when the router saw it (latencies do not include our own store writes).
    Ack {
        duplicate: bool,
        at: Instant,
    },
    Result(ResultPayload, Instant),
    Refused {
        code: u16,
        message: String,
        payload: ErrorPayload,
    },
    /// The connection of that epoch is gone.
    Lost {
        epoch: u64,
    },
}

/// Hands one stream event to the trigger(s) it concerns.
pub(super) fn route_event(core: &Core, event: StreamEvent) {
    match event {
        StreamEvent::Connected {
            epoch,
            max_concurrent_actions,
            ..
        } => {
            if epoch > 1 {
                core.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            core.set_limit_from_engine(max_concurrent_actions);
            core.connection.send_replace(Some(epoch));
        }
        StreamEvent::Capacity {
            max_concurrent_actions,
        } => {
            tracing::info!(max_concurrent_actions, "engine capacity changed");
            core.set_limit_from_engine(max_concurrent_actions);
        }
        StreamEvent::Draining { epoch, .. } => {
            core.connection
                .send_if_modified(|c| c.take_if(|e| *e == epoch).is_some());
        }
        StreamEvent::Disconnected { epoch, .. } => {
            core.connection
                .send_if_modified(|c| c.take_if(|e| *e == epoch).is_some());
            let entries: Vec<Arc<Entry>> = core.registry.lock().values().cloned().collect();
            for entry in entries {
                let _ = entry.events.send(TriggerEvent::Lost { epoch });
            }
        }
        StreamEvent::Ack { ack, .. } => {
            route(
                core,
                ack.correlation_id,
                TriggerEvent::Ack {
                    duplicate: ack.duplicate,
                    at: Instant::now(),
                },
            );
        }
        StreamEvent::Result { result, .. } => {
            let entry = core.registry.lock().get(&result.correlation_id).cloned();
            if let Some(entry) = entry {
                // The engine freed its place; free ours before the store write.
                drop(entry.slot.lock().take());
                if !entry.result_heard.swap(true, Ordering::SeqCst) {
                    core.results_unrecorded.fetch_add(1, Ordering::SeqCst);
                }
                let _ = entry
                    .events
                    .send(TriggerEvent::Result(result, Instant::now()));
            }
        }
        StreamEvent::Refused {
            code,
            message,
            payload,
            ..
        } => match payload.correlation_id {
            Some(id) => route(
                core,
                id,
                TriggerEvent::Refused {
                    code,
                    message,
                    payload,
                },
            ),
            None => tracing::warn!(code, %message, "assist stream refused a message"),
        },
        StreamEvent::Fatal { error } => {
            core.connection.send_replace(None);
            core.halt_with(error.to_string());
        }
    }
}

/// Hands `event` to the trigger with correlationId `id`, if it is in flight.
fn route(core: &Core, id: Uuid, event: TriggerEvent) {
    let entry = core.registry.lock().get(&id).cloned();
    if let Some(entry) = entry {
        let _ = entry.events.send(event);
    }
}

impl Core {
    /// The limit in force: the engine's, lowered by `concurrency`.
    fn effective_limit(&self, engine: u32) -> u32 {
        if self.quiesced.load(Ordering::SeqCst) {
            return 0;
        }
        self.config.concurrency.map_or(engine, |c| c.min(engine))
    }

    fn set_limit_from_engine(&self, engine: u32) {
        self.engine_limit.store(engine, Ordering::Relaxed);
        let limit = self.effective_limit(engine);
        self.slots.set_limit(limit);
        metrics::gauge!(m::CONCURRENCY_LIMIT).set(f64::from(limit));
    }
}
