//! The life of one trigger, as a task: made durable (or found in the store), given a
//! slot, then sent and sent again as [`decide::next`] says, until its result or a final
//! refusal. Each step the task carries out is one function here (take a slot, send, hear
//! the next event, write the ack, finish, back off, reject); the decisions between them
//! are all in `decide.rs`. Whatever happens, [`drive`] publishes the outcome, gives the
//! slot back and leaves the registry.
//!
//! One room for all the steps, though it runs to a few hundred lines: each step is a
//! short method on the one [`Life`] they all read and write, and splitting them would
//! only spread that state's fields across files.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use gcx_protocol::ActionTriggerPayload;
use gcx_protocol::assist::ResultPayload;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::admission::{Entry, Stored, stored_admission};
use super::decide::{self, AckState, LifeEvent, LifeState, Step};
use super::resume::{Resume, Unanswered};
use super::routing::TriggerEvent;
use super::{Admission, Core, Outcome, Phase};
use crate::assist::metrics as m;
use crate::assist::record::{Refusal, TriggerFacts};
use crate::assist::slots::SlotRequest;
use crate::audit::parameters_sha256;
use crate::store::{TriggerState, WriteBatch};

/// What one trigger task works on.
pub(super) struct Job {
    pub(super) payload: ActionTriggerPayload,
    /// The `send` frame around the payload's JSON text.
    pub(super) frame: Utf8Bytes,
    pub(super) start: Start,
    /// When it was admitted (its queue wait runs from here).
    pub(super) admitted_at: Instant,
    /// Its place in the slot queue, taken in admission order when the job is made: tasks
    /// run in whatever order the runtime picks, and slots must go to triggers in the
    /// order they were admitted (after a restart, the engine may still be running the
    /// first ones, and their re-sends must hold slots before new triggers take them).
    pub(super) slot: SlotRequest,
    /// A resumed trigger's mark in `Core::unanswered_resumed`.
    pub(super) unanswered: Unanswered,
}

/// Where a trigger task starts.
pub(super) enum Start {
    /// New, its `accepted` row written with its chunk's in one batch
    /// (`DispatcherHandle::submit_chunk`), at `accepted_at`: what the store answered
    /// (the state the correlationId already had, if any), or why the write failed.
    Stored {
        accepted_at: chrono::DateTime<Utc>,
        stored: Result<Option<TriggerState>, String>,
    },
    /// A stored unfinished trigger.
    Resume(Resume),
}

/// One trigger's life. Always ends by publishing an outcome and leaving the registry.
pub(super) async fn drive(
    core: Arc<Core>,
    entry: Arc<Entry>,
    events: mpsc::UnboundedReceiver<TriggerEvent>,
    job: Job,
    permit: OwnedSemaphorePermit,
) {
    let id = job.payload.correlation_id;
    let (admission, outcome) = run(&core, &entry, events, job).await;
    // Whatever happened, the slot goes back (normally the router freed it already).
    drop(entry.slot.lock().take());
    if entry.result_heard.load(Ordering::SeqCst) {
        core.results_unrecorded.fetch_sub(1, Ordering::SeqCst);
    }
    metrics::counter!(m::TRIGGERS, "state" => state_label(outcome.state)).increment(1);
    entry
        .phase
        .send_replace(Phase::Done(admission, Box::new(outcome)));
    let now_empty = {
        let mut registry = core.registry.lock();
        if registry.get(&id).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            registry.remove(&id);
        }
        registry.is_empty()
    };
    drop(permit);
    if now_empty {
        core.idle.notify_waiters();
    }
}

/// Makes the trigger durable (or finds it in the store), then lives it to its outcome.
async fn run(
    core: &Core,
    entry: &Entry,
    events: mpsc::UnboundedReceiver<TriggerEvent>,
    job: Job,
) -> (Option<Admission>, Outcome) {
    let id = job.payload.correlation_id;
    let stored = match job.start {
        Start::Resume(r) => Ok(r.into_stored()),
        Start::Stored {
            accepted_at,
            stored,
        } => stored_admission(core, id, accepted_at, stored).await,
    };
    let stored = match stored {
        Ok(s) => s,
        Err(done) => return done,
    };
    let admission = stored.admission;
    entry.phase.send_replace(Phase::Accepted(admission));
    let mut life = Life::new(
        core,
        entry,
        events,
        job.payload,
        job.frame,
        stored,
        job.unanswered,
    );
    let outcome = life.until_done(job.slot, job.admitted_at).await;
    metrics::gauge!(m::IN_FLIGHT).set(f64::from(core.slots.in_use()));
    (Some(admission), outcome)
}

/// Where a trigger's life goes after a step.
enum Flow {
    /// Send (again).
    Send,
    /// Wait for the next event.
    Listen,
    Done(Outcome),
}

/// What a trigger's task heard.
enum Heard {
    Event(TriggerEvent),
    /// No answer within `result_timeout` of the last send.
    NoAnswer,
    /// No slot within `slot_timeout`.
    NoSlot,
}

/// A trigger between its admission and its outcome.
struct Life<'a> {
    core: &'a Core,
    entry: &'a Entry,
    payload: ActionTriggerPayload,
    /// The `send` frame around the payload's JSON text.
    frame: Utf8Bytes,
    events: mpsc::UnboundedReceiver<TriggerEvent>,
    /// Events taken off the channel ahead of their turn (while looking for a result
    /// behind an ack); heard before the channel's.
    early: VecDeque<TriggerEvent>,
    parameters_sha256: String,
    ack: AckState,
    /// The epoch of the connection the last send went out on.
    sent_on: Option<u64>,
    /// When the last send went out: the result timeout and the ack's latency run from it.
    last_sent: Instant,
    attempts: u32,
    /// Re-sends on the payload's `maxRetries`.
    retries: u32,
    /// Re-sent at least once after a refusal.
    retried: bool,
    accepted_at: chrono::DateTime<Utc>,
    crm_key: String,
    first_sent: Option<(Instant, chrono::DateTime<Utc>)>,
    queue_wait: Option<Duration>,
    send_to_ack: Option<Duration>,
    send_to_result: Option<Duration>,
    unanswered: Unanswered,
}

impl<'a> Life<'a> {
    fn new(
        core: &'a Core,
        entry: &'a Entry,
        events: mpsc::UnboundedReceiver<TriggerEvent>,
        payload: ActionTriggerPayload,
        frame: Utf8Bytes,
        stored: Stored,
        unanswered: Unanswered,
    ) -> Life<'a> {
        Life {
            core,
            entry,
            parameters_sha256: parameters_sha256(&payload.parameter_matrix),
            payload,
            frame,
            events,
            early: VecDeque::new(),
            ack: if stored.acked {
                AckState::Stored
            } else {
                AckState::Awaited
            },
            sent_on: None,
            last_sent: Instant::now(),
            attempts: stored.attempts,
            retries: 0,
            retried: false,
            accepted_at: stored.accepted_at,
            crm_key: stored.crm_key,
            first_sent: None,
            queue_wait: None,
            send_to_ack: None,
            send_to_result: None,
            unanswered,
        }
    }

    /// Takes a slot, then sends, hears and carries out steps until the outcome.
    async fn until_done(&mut self, slot: SlotRequest, admitted_at: Instant) -> Outcome {
        let mut flow = self.take_slot(slot, admitted_at).await;
        loop {
            flow = match flow {
                Flow::Send => self.send().await,
                Flow::Listen => match self.hear().await {
                    Some(heard) => self.step(heard).await,
                    None => Flow::Done(self.halted()),
                },
                Flow::Done(outcome) => return outcome,
            };
        }
    }

    /// Waits for a connection (the engine's limit comes with it), then for the slot
    /// queue to reach this trigger, up to `slot_timeout`.
    async fn take_slot(&mut self, request: SlotRequest, admitted_at: Instant) -> Flow {
        let core = self.core;
        if core.wait_connected().await.is_none() {
            return Flow::Done(self.halted());
        }
        let slot_wait = Instant::now();
        let slot = tokio::select! {
            s = tokio::time::timeout(core.config.slot_timeout, request.granted()) => s,
            _ = core.halt.cancelled() => return Flow::Done(self.halted()),
        };
        let Ok(slot) = slot else {
            return self.step(Heard::NoSlot).await;
        };
        metrics::histogram!(m::SLOT_WAIT).record(slot_wait.elapsed().as_secs_f64());
        self.queue_wait = Some(admitted_at.elapsed());
        *self.entry.slot.lock() = Some(slot);
        metrics::gauge!(m::IN_FLIGHT).set(f64::from(core.slots.in_use()));
        Flow::Send
    }

    /// Sends the frame on the live connection, waiting for one if needed.
    async fn send(&mut self) -> Flow {
        let Some(epoch) = self.core.send(&self.frame).await else {
            return Flow::Done(self.halted());
        };
        let sent = Instant::now();
        self.sent_on = Some(epoch);
        self.last_sent = sent;
        self.attempts += 1;
        if self.first_sent.is_none() {
            self.first_sent = Some((sent, Utc::now()));
        }
        Flow::Listen
    }

    /// The next event: one taken early, else the channel's, else no answer by the
    /// result timeout; `None` when the dispatcher halts.
    async fn hear(&mut self) -> Option<Heard> {
        if let Some(e) = self.early.pop_front() {
            return Some(Heard::Event(e));
        }
        let core = self.core;
        tokio::select! {
            e = self.events.recv() => e.map(Heard::Event),
            _ = tokio::time::sleep_until(self.last_sent + core.config.result_timeout) => {
                Some(Heard::NoAnswer)
            }
            _ = core.halt.cancelled() => None,
        }
    }

    /// Decides what `heard` calls for, and carries it out.
    async fn step(&mut self, heard: Heard) -> Flow {
        if matches!(heard, Heard::Event(TriggerEvent::Ack { .. })) {
            // The engine has answered this trigger (see `resume::ORPHAN_GRACE`).
            self.unanswered.answered();
        }
        let step = {
            let event = self.event(&heard);
            decide::next(&self.state(), &event)
        };
        self.carry_out(step, heard).await
    }

    /// Where the trigger stands, for [`decide::next`].
    fn state(&self) -> LifeState {
        LifeState {
            ack: self.ack,
            sent_on: self.sent_on,
            retries: self.retries,
            max_retries: u32::from(self.payload.max_retries),
            orphans_possible: self.core.orphans_possible(),
        }
    }

    /// `heard` as [`decide::next`] takes it. At the first ack, looks whether the result
    /// already arrived behind it.
    fn event<'h>(&mut self, heard: &'h Heard) -> LifeEvent<'h> {
        match heard {
            Heard::Event(TriggerEvent::Ack { .. }) => LifeEvent::Ack {
                result_waiting: self.ack == AckState::Awaited && self.result_next(),
            },
            Heard::Event(TriggerEvent::Result(..)) => LifeEvent::Result,
            Heard::Event(TriggerEvent::Refused {
                code,
                message,
                payload,
            }) => LifeEvent::Refused {
                code: *code,
                message,
                payload,
            },
            Heard::Event(TriggerEvent::Lost { epoch }) => LifeEvent::Lost { epoch: *epoch },
            Heard::NoAnswer => LifeEvent::NoAnswer,
            Heard::NoSlot => LifeEvent::NoSlot {
                waited: self.core.config.slot_timeout,
                limit: self.core.slots.limit(),
            },
        }
    }

    /// Whether a result is already waiting on the channel (a fast action); if so, it is
    /// the next event heard.
    fn result_next(&mut self) -> bool {
        while let Ok(e) = self.events.try_recv() {
            self.early.push_back(e);
        }
        let Some(i) = self
            .early
            .iter()
            .position(|e| matches!(e, TriggerEvent::Result(..)))
        else {
            return false;
        };
        if let Some(result) = self.early.remove(i) {
            self.early.push_front(result);
        }
        true
    }

    /// Carries out `step`, taken on `heard`.
    async fn carry_out(&mut self, step: Step, heard: Heard) -> Flow {
        match step {
            Step::Wait => Flow::Listen,
            Step::NoteAck => {
                self.note_ack(&heard, AckState::Noted);
                Flow::Listen
            }
            Step::CommitAck => {
                self.note_ack(&heard, AckState::Stored);
                self.commit_ack().await
            }
            Step::Finish { with_ack } => match heard {
                Heard::Event(TriggerEvent::Result(result, at)) => {
                    self.finish(with_ack, &result, at).await
                }
                // `decide::next` finishes on a result only.
                _ => Flow::Listen,
            },
            Step::BackOff {
                on_budget,
                retry_after,
            } => {
                self.count_retry(on_budget);
                self.back_off(retry_after).await
            }
            Step::Resend { counted } => {
                if matches!(heard, Heard::NoAnswer) {
                    tracing::warn!(correlation_id = %self.payload.correlation_id,
                        "no answer within {:?}; sending again", self.core.config.result_timeout);
                }
                if counted {
                    self.count_retry(true);
                }
                Flow::Send
            }
            Step::Reject { code, text } => Flow::Done(self.reject(code, text).await),
        }
    }

    /// Records the ack `heard` (its latency) and where the ack now stands.
    fn note_ack(&mut self, heard: &Heard, ack: AckState) {
        self.ack = ack;
        if let Heard::Event(TriggerEvent::Ack { duplicate, at }) = heard {
            self.send_to_ack = Some(at.saturating_duration_since(self.last_sent));
            tracing::trace!(correlation_id = %self.payload.correlation_id, duplicate, "acked");
        }
    }

    /// Writes the `Sent` step: `Sent` + CRM `initiated` + audit, one batch.
    async fn commit_ack(&mut self) -> Flow {
        let batch = self.core.config.recorder.acked(&self.facts(), Utc::now());
        match self.commit(batch).await {
            Ok(()) => Flow::Listen,
            Err(o) => Flow::Done(o),
        }
    }

    /// Writes the result (after the `Sent` step, in one batch, when `with_ack`) and ends
    /// with its outcome.
    async fn finish(&mut self, with_ack: bool, result: &ResultPayload, received: Instant) -> Flow {
        let recorder = &self.core.config.recorder;
        let first = self.first_sent.map_or(received, |(at, _)| at);
        let latency = received.saturating_duration_since(first);
        self.send_to_result = Some(latency);
        metrics::histogram!(m::SEND_TO_RESULT).record(latency.as_secs_f64());
        self.ack = AckState::Stored;
        let mut batch = if with_ack {
            recorder.acked(&self.facts(), Utc::now())
        } else {
            WriteBatch::default()
        };
        let done = recorder.finished(&self.facts(), result, Utc::now());
        batch.triggers.extend(done.triggers);
        batch.outbox.extend(done.outbox);
        batch.audit.extend(done.audit);
        if let Err(o) = self.commit(batch).await {
            return Flow::Done(o);
        }
        let (state, error) = decide::ended(result);
        Flow::Done(self.outcome(state, error))
    }

    /// Counts a re-send after a refusal or a lost connection: in the totals, and in the
    /// trigger's `retries` when `on_budget` (see `resume::ORPHAN_GRACE`).
    fn count_retry(&mut self, on_budget: bool) {
        if !self.retried {
            self.retried = true;
            self.core.triggers_retried.fetch_add(1, Ordering::Relaxed);
        }
        if on_budget {
            self.retries += 1;
        }
        self.core.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::RETRIES).increment(1);
    }

    /// The engine did not take the send: gives the slot back while waiting, then queues
    /// first for one (a 429 can mean the limit was lowered; holding slots through it
    /// would keep the engine full of retries).
    async fn back_off(&mut self, retry_after: Option<Duration>) -> Flow {
        let core = self.core;
        drop(self.entry.slot.lock().take());
        let wait = core
            .config
            .refusal_retry
            .next_delay(self.retries.saturating_sub(1), retry_after, Duration::ZERO)
            .unwrap_or_default();
        let slot = tokio::select! {
            s = async {
                tokio::time::sleep(wait).await;
                core.slots.acquire_first().await
            } => s,
            _ = core.halt.cancelled() => return Flow::Done(self.halted()),
        };
        *self.entry.slot.lock() = Some(slot);
        Flow::Send
    }

    /// Final refusal without a result: `Rejected` (+ CRM `initiated`/`failed`).
    async fn reject(&self, code: &str, message: String) -> Outcome {
        let refusal = Refusal {
            code: code.to_owned(),
            message,
        };
        let batch = self
            .core
            .config
            .recorder
            .rejected(&self.facts(), &refusal, Utc::now());
        if let Err(o) = self.commit(batch).await {
            return o;
        }
        self.outcome(TriggerState::Rejected, Some(refusal.message))
    }

    /// Commits one of the trigger's batches; a failed write halts the dispatcher and
    /// ends the trigger where the store holds it.
    async fn commit(&self, batch: WriteBatch) -> Result<(), Outcome> {
        match self.core.commit(batch).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let reason = format!("store write failed: {e}");
                tracing::error!(correlation_id = %self.payload.correlation_id, %reason);
                self.core.halt_with(reason.clone());
                Err(self.outcome(self.stored_state(), Some(reason)))
            }
        }
    }

    fn facts(&self) -> TriggerFacts<'_> {
        TriggerFacts {
            payload: &self.payload,
            parameters_sha256: &self.parameters_sha256,
            attempts: self.attempts,
            retries: self.retries,
            started_at: self.first_sent.map_or(self.accepted_at, |(_, at)| at),
            crm_key: &self.crm_key,
            queue_wait: self.queue_wait,
            send_to_ack: self.send_to_ack,
            send_to_result: self.send_to_result,
        }
    }

    fn outcome(&self, state: TriggerState, error: Option<String>) -> Outcome {
        Outcome {
            correlation_id: self.payload.correlation_id,
            state,
            error,
            retries: self.retries,
            queue_wait: self.queue_wait,
            send_to_ack: self.send_to_ack,
            send_to_result: self.send_to_result,
            already_final: false,
        }
    }

    /// Where it stands in the store now (for an outcome when halted).
    fn stored_state(&self) -> TriggerState {
        match self.ack {
            AckState::Awaited => TriggerState::Accepted,
            AckState::Noted | AckState::Stored => TriggerState::Sent,
        }
    }

    /// The outcome of a trigger the dispatcher stopped before it finished.
    fn halted(&self) -> Outcome {
        let reason = self
            .core
            .halt_reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the dispatcher stopped".into());
        self.outcome(self.stored_state(), Some(format!("not finished: {reason}")))
    }
}

impl Core {
    /// Waits for a connection that takes sends; `None` when halted.
    async fn wait_connected(&self) -> Option<u64> {
        let mut connection = self.connection.subscribe();
        loop {
            if let Some(epoch) = *connection.borrow_and_update() {
                return Some(epoch);
            }
            tokio::select! {
                r = connection.changed() => r.ok()?,
                _ = self.halt.cancelled() => return None,
            }
        }
    }

    /// Sends one frame on the live connection, waiting for one if needed; returns the
    /// connection's epoch, or `None` when halted.
    async fn send(&self, frame: &Utf8Bytes) -> Option<u64> {
        let mut connection = self.connection.subscribe();
        loop {
            if connection.borrow_and_update().is_some()
                && let Some(stream) = self.stream.get()
                && let Ok(epoch) = stream.send_text(frame.clone()).await
            {
                return Some(epoch);
            }
            tokio::select! {
                r = connection.changed() => r.ok()?,
                _ = self.halt.cancelled() => return None,
            }
        }
    }
}

fn state_label(state: TriggerState) -> &'static str {
    match state {
        TriggerState::Accepted => "accepted",
        TriggerState::Sent => "sent",
        TriggerState::Completed => "completed",
        TriggerState::Failed => "failed",
        TriggerState::Rejected => "rejected",
    }
}
