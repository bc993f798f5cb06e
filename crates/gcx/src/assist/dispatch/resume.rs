//! Resume: at start, the triggers the store holds unfinished (`accepted` or `sent`,
//! `sent` first) are admitted before any new one, each re-sent with its correlationId
//! (the engine's idempotency makes that safe) and writing its CRM rows under the key it
//! began with.
//!
//! The engine may still be running the previous process's actions: an action keeps its
//! place after its socket closed. Until each resumed trigger has had an answer, and for
//! at most [`ORPHAN_GRACE`], a 429 does not spend a trigger's `maxRetries`
//! (docs/protocol-notes.md); [`Unanswered`] counts the resumed triggers still waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use gcx_protocol::ActionTriggerPayload;
use tokio::time::Instant;

use super::admission::{Registered, Stored, texts};
use super::life::{Job, Start, drive};
use super::{Admission, Core, DispatchError, DispatcherHandle, Ticket};
use crate::assist::record::crm_ordering_key;
use crate::store::{TriggerRow, TriggerState};

/// How long after a start with resumed triggers a 429 may be the engine still running
/// actions of the previous gcx process: an action keeps its place after its socket
/// closed, for at most the engine's 30 s action timeout (PROTOCOL.md 3.6), and this
/// client cannot know of those actions until it has re-sent each resumed trigger. Within
/// it, and while some resumed trigger has had no answer yet, a 429 does not spend a
/// trigger's `maxRetries` (docs/protocol-notes.md).
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// A stored unfinished trigger, as its resumption needs it.
pub(super) struct Resume {
    pub(super) state: TriggerState,
    /// Sends so far.
    pub(super) attempts: u32,
    /// The ordering key its CRM rows use ([`crm_ordering_key`] of its acceptance time).
    pub(super) crm_key: String,
    /// When it was accepted, for a trigger another instance accepted (its latency counts
    /// from there); `None` for one resumed at start (counted from now).
    pub(super) accepted_at: Option<chrono::DateTime<Utc>>,
}

impl Resume {
    /// The trigger as the store holds it, for its task.
    pub(super) fn into_stored(self) -> Stored {
        Stored {
            admission: Admission::Resumed(self.state),
            acked: self.state == TriggerState::Sent,
            attempts: self.attempts,
            crm_key: self.crm_key,
            accepted_at: self.accepted_at.unwrap_or_else(Utc::now),
        }
    }
}

/// Admits the store's unfinished triggers in the store's order, then lets new triggers
/// in (`Core::resumed`).
pub(super) fn spawn_feeder(feeder: DispatcherHandle, unfinished: Vec<TriggerRow>) {
    tokio::spawn(async move {
        for row in unfinished {
            let crm_key = crm_ordering_key(row.accepted_at, row.correlation_id);
            let payload: ActionTriggerPayload = match serde_json::from_value(row.payload) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(correlation_id = %row.correlation_id, error = %e,
                        "stored trigger payload does not parse; left as it is");
                    feeder.core.count_off_unrunnable_resumed();
                    continue;
                }
            };
            let resume = Resume {
                state: row.state,
                attempts: row.attempts,
                crm_key,
                accepted_at: None,
            };
            let unanswered = Unanswered::of(&feeder.core);
            if feeder
                .admit_stored(payload, resume, unanswered)
                .await
                .is_err()
            {
                break;
            }
        }
        feeder.core.resumed.send_replace(true);
    });
}

impl DispatcherHandle {
    /// Admits triggers that other instances of a cluster accepted and its dispatch queue
    /// handed to this dispatcher (`cluster/`), in the queue's order, after the resumed
    /// ones: each as the store holds it, new to the engine. Waits for room in the window
    /// for each ([`DispatcherHandle::room`] says how many fit without waiting).
    pub async fn admit_claimed(&self, rows: Vec<TriggerRow>) -> Result<(), DispatchError> {
        self.wait_resumed().await?;
        for row in rows {
            let crm_key = crm_ordering_key(row.accepted_at, row.correlation_id);
            let payload: ActionTriggerPayload = match serde_json::from_value(row.payload) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(correlation_id = %row.correlation_id, error = %e,
                        "stored trigger payload does not parse; left as it is");
                    continue;
                }
            };
            let resume = Resume {
                state: row.state,
                attempts: row.attempts,
                crm_key,
                accepted_at: Some(row.accepted_at),
            };
            self.admit_stored(payload, resume, Unanswered::none())
                .await?;
        }
        Ok(())
    }

    /// Admits a trigger the store holds unfinished.
    async fn admit_stored(
        &self,
        payload: ActionTriggerPayload,
        resume: Resume,
        unanswered: Unanswered,
    ) -> Result<Ticket, DispatchError> {
        let permit = self.place().await?;
        match self.register(payload.correlation_id) {
            Registered::Existing(ticket) => Ok(ticket),
            Registered::New(entry, receiver, ticket) => {
                let (_, frame) = texts(&payload);
                let job = Job {
                    payload,
                    frame,
                    start: Start::Resume(resume),
                    admitted_at: Instant::now(),
                    // Its place in the slot queue is taken here, in the store's order
                    // (sent ones first), not when its task first runs.
                    slot: self.core.slots.request(),
                    unanswered,
                };
                tokio::spawn(drive(self.core.clone(), entry, receiver, job, permit));
                Ok(ticket)
            }
        }
    }
}

impl Core {
    /// Whether the engine may still be running actions of a previous process that this
    /// one has not re-sent yet ([`ORPHAN_GRACE`]).
    pub(super) fn orphans_possible(&self) -> bool {
        self.unanswered_resumed.load(Ordering::Relaxed) > 0 && self.started.elapsed() < ORPHAN_GRACE
    }

    /// Counts off a resumed trigger that this process will not run (its stored payload
    /// does not parse): no answer will come to do it.
    fn count_off_unrunnable_resumed(&self) {
        self.unanswered_resumed.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a resumed trigger in `Core::unanswered_resumed` until its first answer from
/// the engine or its end, whichever comes first.
pub(super) struct Unanswered(Option<Arc<AtomicU64>>);

impl Unanswered {
    /// The mark of one of the resumed triggers counted when `core` was made.
    fn of(core: &Core) -> Unanswered {
        Unanswered(Some(core.unanswered_resumed.clone()))
    }

    /// The mark of a new trigger: counts nothing.
    pub(super) fn none() -> Unanswered {
        Unanswered(None)
    }

    /// The engine answered (or the trigger ended): counted off, once.
    pub(super) fn answered(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.answered();
    }
}
