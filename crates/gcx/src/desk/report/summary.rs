//! `summary.json`: the seed's `SimulationMetrics` extended as PROTOCOL.md section 6, plus
//! what the report and `gcx report merge` need (per-transition counts, the per-second
//! series, the HDR histograms). Everything derived (percentiles, rates, thresholds) is
//! computed by one function from the raw counts and histograms, so a merged summary is
//! computed exactly like a single one.

use std::collections::BTreeMap;

use gcx_protocol::webhook::SimulationMetrics;
use serde::{Deserialize, Serialize};

use crate::desk::genesys::GenesysTally;
use crate::desk::latency::{self, HistogramDecodeError, Percentiles, SecondPoint};
use crate::desk::tally::TransitionRow;
use crate::desk::thresholds::Threshold;

/// Metrics beyond section 6 (flattened into the same JSON object, so threshold names and
/// JSON keys are the same).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Extended {
    pub p90_latency_ms: f64,
    pub p999_latency_ms: f64,
    pub service_p90_ms: f64,
    pub service_p95_ms: f64,
    pub service_p999_ms: f64,
    pub service_max_ms: f64,
    pub async_e2e_p50_ms: f64,
    pub async_e2e_p95_ms: f64,
    pub async_e2e_p99_ms: f64,
    /// Events in requests refused for good (never processed).
    pub failed: u64,
    /// Events the server answered as already seen (retries of processed requests).
    pub duplicates: u64,
    /// POSTs to the events endpoint, retries included.
    pub requests: u64,
    pub events_per_second: f64,
    pub error_rate: f64,
    /// `dropped`, split: arrivals with no idle agent, and arrivals while behind schedule.
    pub dropped_no_agent: u64,
    pub dropped_behind: u64,
    pub interactions_started: u64,
    pub interactions_completed: u64,
    /// Deliberately invalid events generated.
    pub invalid_generated: u64,
}

/// How the run was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// `interactions-events` or `genesys-events`.
    pub target: String,
    pub started_at: String,
    pub finished_at: String,
    /// From start to the last outcome.
    pub duration_s: f64,
    /// From start to the last answer of the events endpoint (the rate's denominator).
    pub send_phase_s: f64,
    pub seed: u64,
    /// `i/n` of each shard in this summary (one entry unless merged).
    pub shards: Vec<String>,
    pub agents: u64,
    pub model: String,
    pub async_mode: bool,
    pub batch_size: usize,
    pub time_slice_ms: f64,
    pub scenario_file: Option<String>,
    pub base_url: String,
    pub interrupted: bool,
    pub gcx_version: String,
}

/// The three histograms, base64 of HdrHistogram V2 + deflate (microseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histograms {
    pub response_us: String,
    pub service_us: String,
    pub async_e2e_us: String,
}

/// Percentiles of the three histograms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyReport {
    pub response: Percentiles,
    pub service: Percentiles,
    pub async_e2e: Percentiles,
}

/// `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub metrics: SimulationMetrics,
    #[serde(flatten)]
    pub extended: Extended,
    #[serde(default)]
    pub run: RunInfo,
    #[serde(default)]
    pub latency: LatencyReport,
    #[serde(default)]
    pub transitions: Vec<TransitionRow>,
    #[serde(default)]
    pub rejection_codes: BTreeMap<String, u64>,
    #[serde(default)]
    pub failure_reasons: BTreeMap<String, u64>,
    #[serde(default)]
    pub series: Vec<SecondPoint>,
    #[serde(default)]
    pub histograms: Histograms,
    /// The `genesys-events` target's own figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesys: Option<GenesysReport>,
}

/// What the Events API did with each event, by kind (`genesys-events` target).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenesysReport {
    pub events: GenesysTally,
    /// `--observe`: each accepted change correlated with its notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<ObservationSummary>,
}

/// What the Notifications API showed of the injected changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObservationSummary {
    /// Accepted events that change what a topic shows.
    pub expected: u64,
    /// Of those, matched by their notification.
    pub observed: u64,
    /// Never notified within the grace.
    pub unobserved: u64,
    /// Notifications no injected event explains.
    pub unexpected: u64,
    /// Injection (the accepting request's send) to notification, in ms.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The latency histogram (µs, encoded), to merge shards exactly.
    pub latency_us: String,
    /// The first unobserved and unexpected keys.
    pub unobserved_sample: Vec<serde_json::Value>,
    pub unexpected_sample: Vec<serde_json::Value>,
    /// Notifications whose body could not be read.
    pub unreadable: u64,
    /// The watch's own counters: channels, reconnects, `socket_closing`, gaps.
    pub watch: serde_json::Value,
}

impl ObservationSummary {
    /// The percentiles, from the histogram.
    fn derive(&mut self) -> Result<(), HistogramDecodeError> {
        let p = Percentiles::of(&latency::decode(&self.latency_us, 3)?);
        let seen = p.count > 0;
        self.p50_ms = seen.then_some(p.p50);
        self.p95_ms = seen.then_some(p.p95);
        self.p99_ms = seen.then_some(p.p99);
        self.max_ms = seen.then_some(p.max);
        Ok(())
    }
}

impl GenesysReport {
    /// Adds another shard's figures (latencies merged from the histograms).
    pub fn add(&mut self, other: &GenesysReport) -> Result<(), HistogramDecodeError> {
        self.events.add(&other.events);
        match (&mut self.observation, &other.observation) {
            (Some(a), Some(b)) => {
                a.expected += b.expected;
                a.observed += b.observed;
                a.unobserved += b.unobserved;
                a.unexpected += b.unexpected;
                a.unreadable += b.unreadable;
                latency::add_encoded(&mut a.latency_us, &b.latency_us)?;
                a.derive()?;
            }
            (None, Some(b)) => self.observation = Some(b.clone()),
            _ => {}
        }
        Ok(())
    }
}

impl Summary {
    /// A metric by its threshold name ([`crate::desk::thresholds::METRICS`]).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let m = &self.metrics;
        let x = &self.extended;
        Some(match name {
            "total_events" => m.total_events as f64,
            "successful_injections" => m.successful_injections as f64,
            "state_mismatches" => m.state_mismatches as f64,
            "avg_latency_ms" => m.avg_latency_ms,
            "rejected" => m.rejected as f64,
            "expected_rejections" => m.expected_rejections as f64,
            "unexpected_acceptances" => m.unexpected_acceptances as f64,
            "missing" => m.missing as f64,
            "retries" => m.retries as f64,
            "p50_latency_ms" => m.p50_latency_ms,
            "p90_latency_ms" => x.p90_latency_ms,
            "p95_latency_ms" => m.p95_latency_ms,
            "p99_latency_ms" => m.p99_latency_ms,
            "p999_latency_ms" => x.p999_latency_ms,
            "max_latency_ms" => m.max_latency_ms,
            "service_p50_ms" => m.service_p50_ms,
            "service_p90_ms" => x.service_p90_ms,
            "service_p95_ms" => x.service_p95_ms,
            "service_p99_ms" => m.service_p99_ms,
            "service_p999_ms" => x.service_p999_ms,
            "service_max_ms" => x.service_max_ms,
            "dropped" => m.dropped as f64,
            "failed" => x.failed as f64,
            "duplicates" => x.duplicates as f64,
            "events_per_second" => x.events_per_second,
            "error_rate" => x.error_rate,
            "async_e2e_p50_ms" => x.async_e2e_p50_ms,
            "async_e2e_p95_ms" => x.async_e2e_p95_ms,
            "async_e2e_p99_ms" => x.async_e2e_p99_ms,
            _ => return None,
        })
    }

    /// Computes every derived field from the counts and histograms, then the thresholds.
    pub fn derive(&mut self, thresholds: &[Threshold]) -> Result<(), HistogramDecodeError> {
        let response = Percentiles::of(&latency::decode(&self.histograms.response_us, 3)?);
        let service = Percentiles::of(&latency::decode(&self.histograms.service_us, 3)?);
        let e2e = Percentiles::of(&latency::decode(&self.histograms.async_e2e_us, 3)?);
        let m = &mut self.metrics;
        m.avg_latency_ms = response.mean;
        m.p50_latency_ms = response.p50;
        m.p95_latency_ms = response.p95;
        m.p99_latency_ms = response.p99;
        m.max_latency_ms = response.max;
        m.service_p50_ms = service.p50;
        m.service_p99_ms = service.p99;
        m.dropped = self.extended.dropped_no_agent + self.extended.dropped_behind;
        let x = &mut self.extended;
        x.p90_latency_ms = response.p90;
        x.p999_latency_ms = response.p999;
        x.service_p90_ms = service.p90;
        x.service_p95_ms = service.p95;
        x.service_p999_ms = service.p999;
        x.service_max_ms = service.max;
        x.async_e2e_p50_ms = e2e.p50;
        x.async_e2e_p95_ms = e2e.p95;
        x.async_e2e_p99_ms = e2e.p99;
        x.events_per_second = if self.run.send_phase_s > 0.0 {
            m.successful_injections as f64 / self.run.send_phase_s
        } else {
            0.0
        };
        let wrong = m.state_mismatches + m.unexpected_acceptances + m.missing + x.failed;
        x.error_rate = if m.total_events > 0 {
            wrong as f64 / m.total_events as f64
        } else {
            0.0
        };
        self.latency = LatencyReport {
            response,
            service,
            async_e2e: e2e,
        };
        let outcomes: Vec<_> = thresholds
            .iter()
            .map(|t| t.evaluate(|n| self.metric(n)))
            .collect();
        self.metrics.passed = outcomes.iter().all(|o| o.passed);
        self.metrics.thresholds = outcomes;
        Ok(())
    }

    /// The thresholds this summary was judged by (re-parsed from their expressions).
    pub fn threshold_specs(&self) -> Vec<Threshold> {
        self.metrics
            .thresholds
            .iter()
            .filter_map(|t| t.expression.parse().ok())
            .collect()
    }

    /// Only the section 6 shape: what the QA export sends.
    pub fn qa_payload(&self) -> &SimulationMetrics {
        &self.metrics
    }
}
