//! The demo's small dose of realistic faults, sized to the batch: a few engine 429s, one
//! dropped assist connection, a CRM receiver that fails its first requests, a few events
//! 429s, and engine latency with a tail. Each one exercises a recovery path (re-send after
//! `retryAfterMs`, resume after a reconnect with the engine deduplicating, webhook retry
//! with Retry-After, events retry with the same sequenceIds) that the checks then prove
//! lost nothing and did nothing twice.

use gcx_sandbox::{Faults, LatencySpec};
use serde::Serialize;

/// The engine's concurrency limit in the demo (the protocol's default).
pub const ENGINE_LIMIT: u32 = 50;

/// What the CRM receiver answers its first requests with, before it recovers.
pub const CRM_STATUSES: [u16; 3] = [503, 503, 429];

/// The faults as the summary describes them.
#[derive(Debug, Clone, Serialize)]
pub struct FaultPlan {
    /// Share of assist sends refused with 429 (each re-send draws again).
    pub send_429_rate: f64,
    /// The assist connection is dropped at this client message (once: the reconnected
    /// socket carries fewer messages than this).
    pub drop_connection_at: Option<u64>,
    pub crm_statuses: Vec<u16>,
    /// Share of events requests refused with 429 (Retry-After: 1 s).
    pub events_429_rate: f64,
    pub engine_latency_ms: LatencySpec,
    pub engine_limit: u32,
}

impl FaultPlan {
    /// The plan for a batch of `valid` triggers.
    pub fn for_batch(valid: usize) -> FaultPlan {
        FaultPlan {
            send_429_rate: 0.01,
            drop_connection_at: drop_once_at(valid as u64, u64::from(ENGINE_LIMIT)),
            crm_statuses: CRM_STATUSES.to_vec(),
            events_429_rate: 0.01,
            engine_latency_ms: LatencySpec {
                median: 20,
                p99: 120,
            },
            engine_limit: ENGINE_LIMIT,
        }
    }

    /// The sandbox settings, with the seed every draw of the sandbox is made from.
    pub fn faults(&self, seed: u64) -> Faults {
        Faults {
            max_concurrent_actions: self.engine_limit,
            engine_latency_ms: self.engine_latency_ms,
            send_429_rate: self.send_429_rate,
            drop_connection_every: self.drop_connection_at,
            crm_statuses: self.crm_statuses.clone(),
            events_429_rate: self.events_429_rate,
            seed,
            ..Faults::default()
        }
    }

    /// One line for the summary's header.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!(
                "engine latency {}/{} ms (median/p99), limit {}",
                self.engine_latency_ms.median, self.engine_latency_ms.p99, self.engine_limit
            ),
            format!("{:.0} % engine 429s", self.send_429_rate * 100.0),
        ];
        if self.drop_connection_at.is_some() {
            parts.push("1 dropped connection".into());
        }
        parts.push(format!(
            "CRM answers {} first",
            self.crm_statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
        parts.push(format!("{:.0} % events 429s", self.events_429_rate * 100.0));
        parts.join(", ")
    }
}

/// `drop_connection_every` counts client messages per connection, so to drop exactly
/// once the first socket must reach N and the second must not. The first carries about
/// N messages, the second the rest plus a re-send of what was in flight (at most `limit`)
/// plus a few retries; N = (valid + limit) / 2 + valid / 10 + 10 leaves both margins.
/// `None` when the batch is too small for that.
fn drop_once_at(valid: u64, limit: u64) -> Option<u64> {
    let n = (valid + limit) / 2 + valid / 10 + 10;
    (n + 10 <= valid).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_drops_once_for_any_demo_size() {
        for valid in [120u64, 300, 1000, 5000, 50_000] {
            let n = drop_once_at(valid, 50).unwrap();
            assert!(n < valid, "{valid}: the first socket reaches {n}");
            // The second socket: what the first did not carry, everything in flight
            // re-sent, and 2 % retries.
            let second = valid - (n - 1) + 50 + valid / 50;
            assert!(
                second < n,
                "{valid}: the second socket reaches {second} >= {n}"
            );
        }
        assert_eq!(drop_once_at(50, 50), None);
    }
}
