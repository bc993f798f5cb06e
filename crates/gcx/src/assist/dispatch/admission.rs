//! Admission: how a trigger gets into the dispatcher. The window (a semaphore of
//! `max_pending` places) bounds the triggers admitted and unfinished; the registry finds
//! each one by correlationId (a second submit of an id in flight gets the first one's
//! ticket); [`DispatcherHandle::submit_chunk`] admits as many as there is room for and
//! writes their `accepted` rows as one store item before their tasks start; and
//! [`stored_admission`] reads what that write answered for each trigger (new, stored
//! unfinished by another gcx on this store, or already finished).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::Utc;
use gcx_protocol::ActionTriggerPayload;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use uuid::Uuid;

use super::life::{Job, Start, drive};
use super::resume::Unanswered;
use super::routing::TriggerEvent;
use super::{Admission, Core, DispatchError, DispatcherHandle, Outcome, Phase, Ticket};
use crate::assist::record::crm_ordering_key;
use crate::assist::slots::Slot;
use crate::store::{TriggerState, TriggerWrite, WriteBatch};

/// One admitted trigger, as the router reaches it.
pub(super) struct Entry {
    /// To the trigger's task.
    pub(super) events: mpsc::UnboundedSender<TriggerEvent>,
    /// The trigger's slot while it holds one; the router frees it on the `result`.
    pub(super) slot: Mutex<Option<Slot>>,
    /// What the trigger's tickets see.
    pub(super) phase: watch::Sender<Phase>,
    /// The router handed it a `result` (counted once in `Core::results_unrecorded` until
    /// its task ends, having written it).
    pub(super) result_heard: std::sync::atomic::AtomicBool,
}

/// What [`DispatcherHandle::register`] found.
pub(super) enum Registered {
    /// The trigger in flight with that id.
    Existing(Ticket),
    New(Arc<Entry>, mpsc::UnboundedReceiver<TriggerEvent>, Ticket),
}

/// A trigger of a chunk, admitted and waiting for the chunk's `accepted` write.
struct Admitted {
    entry: Arc<Entry>,
    events: mpsc::UnboundedReceiver<TriggerEvent>,
    payload: ActionTriggerPayload,
    frame: Utf8Bytes,
    accepted_at: chrono::DateTime<Utc>,
    admitted_at: Instant,
    permit: OwnedSemaphorePermit,
}

impl DispatcherHandle {
    /// Admits a trigger: waits for room in the window (and, at start, until every
    /// unfinished trigger from the store was admitted first), then returns its ticket.
    /// A chunk of one ([`submit_chunk`](Self::submit_chunk)): the store write happens in
    /// the background, `ticket.accepted()` awaits it, and a correlationId already in
    /// flight gets that trigger's ticket.
    pub async fn submit(&self, payload: ActionTriggerPayload) -> Result<Ticket, DispatchError> {
        let mut one = VecDeque::from([payload]);
        self.submit_chunk(&mut one, 1)
            .await?
            .pop()
            .ok_or_else(|| self.core.stopped())
    }

    /// Admits up to `max` triggers from the front of `payloads`, in order: waits for room
    /// in the window for the first, then takes as many more as there is room for now.
    /// Their `accepted` rows are written in one batch in the background (each ticket's
    /// `accepted()` awaits it), and no trigger is sent before that write is durable. A
    /// correlationId already in flight gets that trigger's ticket. For triggers held
    /// together (a file, a request): one store item and one wake-up for the lot instead
    /// of one each.
    pub async fn submit_chunk(
        &self,
        payloads: &mut VecDeque<ActionTriggerPayload>,
        max: usize,
    ) -> Result<Vec<Ticket>, DispatchError> {
        self.wait_resumed().await?;
        let mut tickets = Vec::new();
        let mut writes = Vec::new();
        let mut started = Vec::new();
        while tickets.len() < max.max(1) && !payloads.is_empty() {
            let permit = if tickets.is_empty() {
                self.place().await?
            } else {
                match self.core.window.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            };
            let Some(payload) = payloads.pop_front() else {
                break;
            };
            match self.register(payload.correlation_id) {
                Registered::Existing(ticket) => tickets.push(ticket),
                Registered::New(entry, receiver, ticket) => {
                    tickets.push(ticket);
                    let (text, frame) = texts(&payload);
                    let accepted_at = Utc::now();
                    writes.push(accept_write(&payload, text, accepted_at));
                    started.push(Admitted {
                        entry,
                        events: receiver,
                        payload,
                        frame,
                        accepted_at,
                        admitted_at: Instant::now(),
                        permit,
                    });
                }
            }
        }
        if !started.is_empty() {
            tokio::spawn(write_and_start(self.core.clone(), writes, started));
        }
        Ok(tickets)
    }

    /// Waits until every unfinished trigger from the store was admitted.
    pub(super) async fn wait_resumed(&self) -> Result<(), DispatchError> {
        let mut resumed = self.core.resumed.subscribe();
        loop {
            if *resumed.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                r = resumed.changed() => if r.is_err() { return Err(self.core.stopped()) },
                _ = self.core.halt.cancelled() => return Err(self.core.stopped()),
            }
        }
    }

    /// Waits until the window has room, and says for how many triggers (a cluster's
    /// leader takes that many from the dispatch queue).
    pub async fn room(&self) -> Result<usize, DispatchError> {
        let permit = self.place().await?;
        let free = self.core.window.available_permits() + 1;
        drop(permit);
        Ok(free)
    }

    /// Waits for room in the window.
    pub(super) async fn place(&self) -> Result<OwnedSemaphorePermit, DispatchError> {
        let core = &self.core;
        if core.halt.is_cancelled() {
            return Err(core.stopped());
        }
        tokio::select! {
            p = core.window.clone().acquire_owned() => p.map_err(|_| core.stopped()),
            _ = core.halt.cancelled() => Err(core.stopped()),
        }
    }

    /// Enters a trigger in the registry, or finds the one in flight with its id.
    pub(super) fn register(&self, correlation_id: Uuid) -> Registered {
        let mut registry = self.core.registry.lock();
        if let Some(existing) = registry.get(&correlation_id) {
            return Registered::Existing(Ticket {
                correlation_id,
                phase: existing.phase.subscribe(),
            });
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let (phase, _) = watch::channel(Phase::Queued);
        let entry = Arc::new(Entry {
            events,
            slot: Mutex::new(None),
            phase,
            result_heard: std::sync::atomic::AtomicBool::new(false),
        });
        registry.insert(correlation_id, entry.clone());
        let ticket = Ticket {
            correlation_id,
            phase: entry.phase.subscribe(),
        };
        Registered::New(entry, receiver, ticket)
    }
}

/// Writes a chunk's `accepted` rows as one batch, then starts each trigger's task with
/// what the store answered for it (or why the write failed).
async fn write_and_start(core: Arc<Core>, writes: Vec<TriggerWrite>, started: Vec<Admitted>) {
    let batch = WriteBatch {
        triggers: writes,
        ..WriteBatch::default()
    };
    let stored = core
        .commit(batch)
        .await
        .map_err(|e| format!("store write failed: {e}"));
    for (i, a) in started.into_iter().enumerate() {
        let stored = match &stored {
            Ok(existing) => Ok(existing.get(i).copied().flatten()),
            Err(reason) => Err(reason.clone()),
        };
        let job = Job {
            payload: a.payload,
            frame: a.frame,
            start: Start::Stored {
                accepted_at: a.accepted_at,
                stored,
            },
            admitted_at: a.admitted_at,
            slot: core.slots.request(),
            unanswered: Unanswered::none(),
        };
        tokio::spawn(drive(core.clone(), a.entry, a.events, job, a.permit));
    }
}

/// A trigger as the store holds it once its `accepted` write answered.
pub(super) struct Stored {
    pub(super) admission: Admission,
    /// Stored `sent`: acknowledged before.
    pub(super) acked: bool,
    /// Sends so far.
    pub(super) attempts: u32,
    /// The ordering key its CRM rows use.
    pub(super) crm_key: String,
    pub(super) accepted_at: chrono::DateTime<Utc>,
}

/// What an `accepted` write's answer (`Ok(state it already had)`, or why it failed)
/// means for the trigger: go on, or end now with this outcome.
pub(super) async fn stored_admission(
    core: &Core,
    id: Uuid,
    accepted_at: chrono::DateTime<Utc>,
    answer: Result<Option<TriggerState>, String>,
) -> Result<Stored, (Option<Admission>, Outcome)> {
    let failed = |reason: String| {
        core.halt_with(reason.clone());
        let mut o = Outcome::bare(id, TriggerState::Accepted);
        o.error = Some(reason);
        (None, o)
    };
    let stored = |admission, acked, crm_key| Stored {
        admission,
        acked,
        attempts: 0,
        crm_key,
        accepted_at,
    };
    match answer {
        Err(reason) => Err(failed(reason)),
        Ok(None) => Ok(stored(
            Admission::New,
            false,
            crm_ordering_key(accepted_at, id),
        )),
        Ok(Some(state)) if state.is_unfinished() => {
            // Stored unfinished by another gcx on this store: its rows' key is the
            // stored one.
            let key = match core.store.trigger(id).await {
                Ok(Some(row)) => Ok(crm_ordering_key(row.accepted_at, row.correlation_id)),
                Ok(None) => Ok(crm_ordering_key(accepted_at, id)),
                Err(e) => Err(e),
            };
            match key {
                Ok(key) => Ok(stored(
                    Admission::Resumed(state),
                    state == TriggerState::Sent,
                    key,
                )),
                Err(e) => Err(failed(format!("store read failed: {e}"))),
            }
        }
        Ok(Some(state)) => {
            let mut o = Outcome::bare(id, state);
            o.already_final = true;
            Err((Some(Admission::AlreadyFinal(state)), o))
        }
    }
}

/// A new trigger's `accepted` row.
fn accept_write(
    payload: &ActionTriggerPayload,
    text: Box<RawValue>,
    at: chrono::DateTime<Utc>,
) -> TriggerWrite {
    TriggerWrite::Accept {
        correlation_id: payload.correlation_id,
        action_type: payload.action_type.clone(),
        payload: text,
        at,
    }
}

/// The payload's JSON text (stored) and the `send` frame around it, serialized once.
pub(super) fn texts(payload: &ActionTriggerPayload) -> (Box<RawValue>, Utf8Bytes) {
    let text = crate::store::json_text(payload);
    let frame = Utf8Bytes::from(send_frame(&text));
    (text, frame)
}

/// `{"type":"send","payload":…}` around the payload's JSON text (the same text
/// `WsMessage::send(p).to_json()` gives, without building a JSON tree first).
fn send_frame(payload: &RawValue) -> String {
    #[derive(serde::Serialize)]
    struct Send<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        payload: &'a serde_json::value::RawValue,
    }
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_string(&Send {
        kind: "send",
        payload,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_frame_is_the_protocol_message() {
        let payload: ActionTriggerPayload = serde_json::from_value(serde_json::json!({
            "actionType": "knowledge_search",
            "parameterMatrix": {"query": "q \"quoted\"", "maxResults": 3},
            "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                                 "sessionId": "s", "interactionType": "chat"},
            "correlationId": "550e8400-e29b-41d4-a716-446655440000",
            "maxRetries": 1
        }))
        .unwrap();
        assert_eq!(
            send_frame(&crate::store::json_text(&payload)),
            gcx_protocol::assist::WsMessage::send(&payload).to_json()
        );
    }
}
