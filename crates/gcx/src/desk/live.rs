//! Live counters of a running simulation, for the progress bar (read from another task).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Updated by the injector at the end of each time slice in which something happened.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub generated: AtomicU64,
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Failed plus missing: the progress line's "errors".
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
    pub in_flight: AtomicU64,
    /// p95 response time of the current second, in microseconds.
    pub p95_us: AtomicU64,
    /// Milliseconds since the run started.
    pub elapsed_ms: AtomicU64,
    /// The run's planned length in milliseconds (0: unknown, iterations).
    pub planned_ms: AtomicU64,
    /// Events still waiting for query-back.
    pub awaiting_query: AtomicU64,
    /// Times the injector's loop woke (an answer, query-back results, a slice with work):
    /// it shows that a run waiting for its next event or for query-back costs nothing.
    pub loop_wakes: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    pub generated: u64,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: u64,
    pub retries: u64,
    pub dropped: u64,
    pub in_flight: u64,
    pub p95_us: u64,
    pub elapsed_ms: u64,
    pub planned_ms: u64,
    pub awaiting_query: u64,
}

impl LiveStats {
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            generated: self.generated.load(Relaxed),
            sent: self.sent.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            errors: self.errors.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            p95_us: self.p95_us.load(Relaxed),
            elapsed_ms: self.elapsed_ms.load(Relaxed),
            planned_ms: self.planned_ms.load(Relaxed),
            awaiting_query: self.awaiting_query.load(Relaxed),
        }
    }
}
