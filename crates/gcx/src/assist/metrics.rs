//! Names of the metrics the trigger pipeline records (through the `metrics` crate; `gcx
//! serve` installs the Prometheus recorder and calls [`describe`]).

/// Counter, label `state`: triggers that reached each final (or halted) state.
pub const TRIGGERS: &str = "gcx_triggers_total";
/// Gauge: triggers holding a concurrency slot.
pub const IN_FLIGHT: &str = "gcx_triggers_in_flight";
/// Gauge: the concurrency limit in force.
pub const CONCURRENCY_LIMIT: &str = "gcx_concurrency_limit";
/// Histogram (seconds): time waiting for a concurrency slot.
pub const SLOT_WAIT: &str = "gcx_slot_wait_seconds";
/// Histogram (seconds): first send to result.
pub const SEND_TO_RESULT: &str = "gcx_send_to_result_seconds";
/// Counter: re-sends after a retryable refusal.
pub const RETRIES: &str = "gcx_trigger_retries_total";
/// Counter: assist stream reconnects.
pub const RECONNECTS: &str = "gcx_stream_reconnects_total";

/// Registers a description and unit for each metric above.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(TRIGGERS, "Triggers by the state they ended in.");
    describe_gauge!(IN_FLIGHT, "Triggers holding a concurrency slot.");
    describe_gauge!(CONCURRENCY_LIMIT, "Concurrency limit in force.");
    describe_histogram!(
        SLOT_WAIT,
        Unit::Seconds,
        "Time waiting for a concurrency slot."
    );
    describe_histogram!(SEND_TO_RESULT, Unit::Seconds, "First send to result.");
    describe_counter!(RETRIES, "Re-sends after a retryable refusal.");
    describe_counter!(RECONNECTS, "Assist stream reconnects.");
}
