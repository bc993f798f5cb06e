//! Part (a) of the demo: every valid trigger through the real dispatcher (store, assist
//! stream, CRM outbox rows, audit records), outcomes collected into figures.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use gcx_protocol::ActionTriggerPayload;
use serde::Serialize;
use tokio::time::Instant;

use crate::assist::batch::dispatch_batch;
use crate::assist::dispatch::{DispatcherHandle, Outcome};
use crate::desk::latency::{Percentiles, new_histogram};
use crate::store::TriggerState;

/// What dispatching the batch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TriggerFigures {
    /// Valid triggers submitted.
    pub submitted: u64,
    pub completed: u64,
    /// Ended `failed` by the engine or refused for good.
    pub failed: u64,
    /// Not finished when dispatching stopped (they would resume on the next run).
    pub unfinished: u64,
    /// Why triggers did not complete, with how many each.
    pub failure_reasons: BTreeMap<String, u64>,
    /// First send to result, over every trigger that has one.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Time spent waiting for a concurrency slot, p99.
    pub queue_wait_p99_ms: f64,
    /// Re-sends after a retryable refusal (429, 503, connection lost before the ack).
    pub retries: u64,
    pub triggers_retried: u64,
    pub reconnects: u64,
    pub elapsed_s: f64,
    pub per_second: f64,
    /// Why the dispatcher stopped on its own, if it did.
    pub halted: Option<String>,
}

/// Submits every trigger and waits for every outcome (or the dispatcher halting), counting
/// outcomes in `done` as they come (for a progress display). `gcx bench dispatch` measures
/// with this too.
pub async fn dispatch(
    dispatcher: &DispatcherHandle,
    triggers: Vec<ActionTriggerPayload>,
    done: &AtomicU64,
) -> TriggerFigures {
    let submitted = triggers.len() as u64;
    let started = Instant::now();
    let batch = dispatch_batch(dispatcher, triggers, |_| {
        done.fetch_add(1, Relaxed);
    })
    .await;
    let elapsed = started.elapsed();
    let stats = dispatcher.stats();
    let mut figures = figures(&batch.outcomes, submitted, elapsed);
    figures.retries = stats.retries;
    figures.triggers_retried = stats.triggers_retried;
    figures.reconnects = stats.reconnects;
    figures.halted = batch.halted;
    figures
}

fn figures(outcomes: &[Outcome], submitted: u64, elapsed: Duration) -> TriggerFigures {
    let mut latency = new_histogram(3);
    let mut queue = new_histogram(3);
    let mut f = TriggerFigures {
        submitted,
        elapsed_s: elapsed.as_secs_f64(),
        ..TriggerFigures::default()
    };
    for o in outcomes {
        match o.state {
            TriggerState::Completed => f.completed += 1,
            TriggerState::Failed | TriggerState::Rejected => {
                f.failed += 1;
                let reason = o.error.clone().unwrap_or_else(|| o.state.to_string());
                *f.failure_reasons.entry(reason).or_default() += 1;
            }
            TriggerState::Accepted | TriggerState::Sent => {}
        }
        record(&mut latency, o.send_to_result);
        record(&mut queue, o.queue_wait);
    }
    f.unfinished = submitted.saturating_sub(f.completed + f.failed);
    let l = Percentiles::of(&latency);
    (f.p50_ms, f.p95_ms, f.p99_ms, f.max_ms) = (l.p50, l.p95, l.p99, l.max);
    f.queue_wait_p99_ms = Percentiles::of(&queue).p99;
    f.per_second = f.completed as f64 / elapsed.as_secs_f64().max(1e-9);
    f
}

fn record(h: &mut hdrhistogram::Histogram<u64>, d: Option<Duration>) {
    if let Some(d) = d {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        h.saturating_record(micros.clamp(1, 3_600_000_000));
    }
}
