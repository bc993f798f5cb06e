//! The ranges a scenario's numbers must fall in. Each bound keeps the simulator's own
//! arithmetic (durations, arrival times, counts) far from overflow and a run finite,
//! while leaving every realistic setting open.

use std::time::Duration;

pub use super::super::dist::MAX_DWELL;
pub use super::super::schedule::{MAX_RATE, MIN_RATE};

/// Most agents one run (or shard) simulates.
pub const MAX_AGENTS: u64 = 1_000_000;

/// Longest duration any scenario key takes (run length, a stage, login spread, timeouts,
/// intervals): 30 days, longer than any soak, short enough that sums of them never overflow.
pub const MAX_SPAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Most interactions one run may be asked to complete (`iterations`).
pub const MAX_ITERATIONS: u64 = 1_000_000_000;

/// Largest workflow weight (weights are relative; this keeps their sum finite).
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// `MAX_SPAN` as people write it.
pub const MAX_SPAN_TEXT: &str = "30 days";

/// Why `rate` (arrivals per second) is out of range, if it is; `zero_ok` allows 0 (a
/// stage may ramp to or from nothing).
pub fn rate_problem(rate: f64, zero_ok: bool) -> Option<String> {
    let accepted = if zero_ok {
        format!("0, or {MIN_RATE} to {MAX_RATE}")
    } else {
        format!("{MIN_RATE} to {MAX_RATE}")
    };
    let ok =
        rate.is_finite() && ((zero_ok && rate == 0.0) || (MIN_RATE..=MAX_RATE).contains(&rate));
    (!ok).then(|| format!("arrivals per second must be {accepted}, got {rate:?}"))
}

/// Why duration `d` is out of range, if it is: above zero (unless `zero_ok`) and at most
/// `max` (`max_text` as people write it).
pub fn span_problem(d: Duration, zero_ok: bool, max: Duration, max_text: &str) -> Option<String> {
    if d.is_zero() && !zero_ok {
        return Some("must be longer than 0".into());
    }
    (d > max).then(|| {
        format!(
            "must be at most {max_text}, got {}",
            humantime::format_duration(d)
        )
    })
}
