//! Metrics over the audit log: the seed's `GetAuditMetrics` keys (`total_triggers`,
//! `successful`, `failed`, `completion_rate`, `average_latency_ms`) plus latency
//! percentiles, overall and by action type, over an optional time range.
//!
//! Definitions (over *final* records only: status `completed`, `failed` or `rejected`,
//! one per finished trigger, whose `ended_at` lies in `[since, until)`):
//! - `total_triggers`: final records; `successful`: `completed`; `failed`: `failed` +
//!   `rejected`; `completion_rate`: successful / total (a fraction, 0 when empty).
//! - latency (`average_latency_ms`, `p50/p95/p99/max_latency_ms`): the records'
//!   `latency_ms` (send -> result) over *successful* triggers, as the seed averages only
//!   those; percentiles by nearest rank; 0 when there are none.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AuditError;
use crate::store::{FinalOutcome, Store};

/// An optional time window `[since, until)` over `ended_at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Metrics of one action type, or of all together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionMetrics {
    pub total_triggers: u64,
    pub successful: u64,
    pub failed: u64,
    pub completion_rate: f64,
    pub average_latency_ms: f64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub max_latency_ms: f64,
}

/// What `gcx audit report` prints: the overall metrics at the top level (the seed's key
/// names), then the same by action type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditMetrics {
    #[serde(flatten)]
    pub overall: ActionMetrics,
    pub by_action_type: BTreeMap<String, ActionMetrics>,
    pub range: TimeRange,
}

/// Computes the metrics of the final records in `range`.
pub async fn report(store: &Store, range: TimeRange) -> Result<AuditMetrics, AuditError> {
    let outcomes = store.audit_final_outcomes(range.since, range.until).await?;
    Ok(metrics(&outcomes, range))
}

/// The metrics of `outcomes` (pure; see the module header for the definitions).
pub fn metrics(outcomes: &[FinalOutcome], range: TimeRange) -> AuditMetrics {
    let mut groups: BTreeMap<&str, Vec<&FinalOutcome>> = BTreeMap::new();
    for o in outcomes {
        groups.entry(o.action_type.as_str()).or_default().push(o);
    }
    AuditMetrics {
        overall: action_metrics(outcomes.iter()),
        by_action_type: groups
            .into_iter()
            .map(|(action, list)| (action.to_string(), action_metrics(list.into_iter())))
            .collect(),
        range,
    }
}

fn action_metrics<'a>(outcomes: impl Iterator<Item = &'a FinalOutcome>) -> ActionMetrics {
    let mut total = 0u64;
    let mut latencies = Vec::new();
    for o in outcomes {
        total += 1;
        if o.status == "completed" {
            latencies.push(o.latency_ms);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let successful = latencies.len() as u64;
    let average = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().sum::<f64>() / latencies.len() as f64
    };
    ActionMetrics {
        total_triggers: total,
        successful,
        failed: total - successful,
        completion_rate: if total == 0 {
            0.0
        } else {
            successful as f64 / total as f64
        },
        average_latency_ms: average,
        p50_latency_ms: percentile(&latencies, 50.0),
        p95_latency_ms: percentile(&latencies, 95.0),
        p99_latency_ms: percentile(&latencies, 99.0),
        max_latency_ms: latencies.last().copied().unwrap_or(0.0),
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(action: &str, status: &str, latency: f64) -> FinalOutcome {
        FinalOutcome {
            action_type: action.into(),
            status: status.into(),
            latency_ms: latency,
        }
    }

    #[test]
    fn seed_metrics_and_percentiles() {
        let mut outcomes: Vec<FinalOutcome> = (1..=100)
            .map(|i| outcome("search", "completed", f64::from(i)))
            .collect();
        outcomes.push(outcome("search", "failed", 5000.0));
        outcomes.push(outcome("summarize", "rejected", 0.0));
        outcomes.push(outcome("summarize", "completed", 10.0));
        let m = metrics(&outcomes, TimeRange::default());
        assert_eq!(m.overall.total_triggers, 103);
        assert_eq!(m.overall.successful, 101);
        assert_eq!(m.overall.failed, 2);
        assert!((m.overall.completion_rate - 101.0 / 103.0).abs() < 1e-12);
        let search = &m.by_action_type["search"];
        assert_eq!(search.total_triggers, 101);
        assert_eq!(search.p50_latency_ms, 50.0);
        assert_eq!(search.p95_latency_ms, 95.0);
        assert_eq!(search.p99_latency_ms, 99.0);
        assert_eq!(search.max_latency_ms, 100.0);
        assert_eq!(search.average_latency_ms, 50.5);
        let summarize = &m.by_action_type["summarize"];
        assert_eq!((summarize.successful, summarize.failed), (1, 1));
        assert_eq!(summarize.completion_rate, 0.5);
        let json = serde_json::to_value(&m).unwrap();
        for key in [
            "total_triggers",
            "successful",
            "failed",
            "completion_rate",
            "average_latency_ms",
            "p50_latency_ms",
            "p95_latency_ms",
            "p99_latency_ms",
            "max_latency_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
    }

    #[test]
    fn empty_log_gives_zeros() {
        let m = metrics(&[], TimeRange::default());
        assert_eq!(m.overall, ActionMetrics::default());
        assert!(m.by_action_type.is_empty());
    }
}
