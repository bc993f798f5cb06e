//! Part (b) of the demo: a short desktop simulation against the same sandbox, with a few
//! deliberately invalid transitions that the server must reject (and nothing else), and
//! its QA export through the demo's outbox to the sandbox's QA receiver.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Secret;
use crate::desk::live::LiveStats;
use crate::desk::report::qa_export::QaExport;
use crate::desk::{
    RunOptions, RunReport, Scenario, ScenarioError, SimulateError, Target, simulate,
};

/// Events one interaction makes on average (the seed's workflow: 5, or 2 when a reserved
/// contact never connects, one time in ten), plus the agent's first event.
const EVENTS_PER_INTERACTION: f64 = 4.8;

/// How many deliberately invalid events the demo aims at: "a few".
const INVALID_EVENTS: f64 = 8.0;

/// The thresholds the simulation must pass (PROTOCOL.md section 6 names).
pub const THRESHOLDS: [&str; 6] = [
    "p95_latency_ms < 500",
    "state_mismatches == 0",
    "unexpected_acceptances == 0",
    "expected_rejections > 0",
    "missing == 0",
    "failed == 0",
];

/// What the simulation is asked to do.
#[derive(Debug, Clone)]
pub struct SimulationPlan {
    pub agents: u64,
    pub duration: Duration,
    pub seed: u64,
    /// Interactions arriving per second: a fifth of the agents, which the workflow's
    /// handle times (about two seconds) leave comfortable room for.
    pub rate: f64,
    pub invalid_share: f64,
}

impl SimulationPlan {
    pub fn new(agents: u64, duration: Duration, seed: u64) -> SimulationPlan {
        let rate = (agents as f64 / 5.0).max(1.0);
        let expected_events = rate * duration.as_secs_f64() * EVENTS_PER_INTERACTION;
        SimulationPlan {
            agents,
            duration,
            seed,
            rate,
            invalid_share: (INVALID_EVENTS / expected_events.max(1.0)).clamp(0.001, 0.1),
        }
    }

    /// The scenario, written as a scenario file would be (so the same checks apply).
    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        let thresholds = THRESHOLDS
            .iter()
            .map(|t| format!("  \"{t}\","))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!(
            r#"name = "demo"
seed = {seed}
duration = "{duration}ms"
async = false
batch_size = 100
time_slice = "50ms"
max_in_flight = 16
invalid_transitions = {share}
request_timeout = "10s"
retry_deadline = "30s"
thresholds = [
{thresholds}
]

[agents]
count = {agents}
login_over = "1s"

[load]
model = "open"
rate = {rate}
arrival = "poisson"

[time_in_state]
available = {{ dist = "exponential", mean = "1s" }}
busy = {{ dist = "uniform", min = "100ms", max = "300ms" }}
connected = {{ dist = "lognormal", median = "800ms", p95 = "2s" }}
disconnected = "50ms"
wrapping = {{ dist = "exponential", mean = "300ms" }}

[query]
interval = "200ms"
timeout = "10s"
"#,
            seed = self.seed,
            duration = self.duration.as_millis(),
            share = self.invalid_share,
            agents = self.agents,
            rate = self.rate,
        );
        Scenario::from_toml(&text, "the demo's scenario")
    }
}

/// The simulation's figures for the demo's summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimulationFigures {
    pub agents: u64,
    pub duration_s: f64,
    pub events: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejected and deliberately invalid: what a negative test wants.
    pub expected_rejections: u64,
    /// Deliberately invalid events generated.
    pub invalid_generated: u64,
    /// Rejected but generated as valid.
    pub state_mismatches: u64,
    pub unexpected_acceptances: u64,
    pub missing: u64,
    pub failed: u64,
    pub retries: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub events_per_second: f64,
    /// Each threshold as `expression: value`, and whether it held.
    pub thresholds: Vec<(String, bool)>,
    pub passed: bool,
    pub report_html: PathBuf,
    pub out_dir: PathBuf,
    /// The QA export's outbox status when the simulation returned (`delivered`, `pending`,
    /// `dead`), or why it could not be stored.
    pub qa_export: String,
}

impl SimulationFigures {
    fn of(report: &RunReport) -> SimulationFigures {
        let (m, x) = (&report.summary.metrics, &report.summary.extended);
        SimulationFigures {
            agents: report.summary.run.agents,
            duration_s: report.summary.run.duration_s,
            events: m.total_events,
            accepted: m.successful_injections,
            rejected: m.rejected,
            expected_rejections: m.expected_rejections,
            invalid_generated: x.invalid_generated,
            state_mismatches: m.state_mismatches,
            unexpected_acceptances: m.unexpected_acceptances,
            missing: m.missing,
            failed: x.failed,
            retries: m.retries,
            requests: x.requests,
            p50_ms: m.p50_latency_ms,
            p95_ms: m.p95_latency_ms,
            p99_ms: m.p99_latency_ms,
            events_per_second: x.events_per_second,
            thresholds: m
                .thresholds
                .iter()
                .map(|t| (format!("{} (was {})", t.expression, t.value), t.passed))
                .collect(),
            passed: m.passed,
            report_html: report.files.html.clone(),
            out_dir: report.out_dir.clone(),
            qa_export: match &report.qa_export {
                Some(Ok(message)) => message.status.as_str().to_owned(),
                Some(Err(e)) => e.to_string(),
                None => "not asked for".to_owned(),
            },
        }
    }
}

/// Runs the plan against the sandbox at `base_url`, writing its outputs into `out_dir`
/// and its QA export into `qa`'s outbox.
pub async fn run(
    plan: &SimulationPlan,
    base_url: &str,
    out_dir: PathBuf,
    live: Arc<LiveStats>,
    qa: QaExport,
) -> Result<SimulationFigures, super::DemoError> {
    let scenario = plan.scenario().map_err(super::DemoError::Scenario)?;
    let client = gcx_sandbox::ClientSpec::demo();
    let target = Target {
        api_base: base_url.to_owned(),
        login_base: base_url.to_owned(),
        origin: "the demo's sandbox".into(),
        client_id: client.id,
        client_secret: Secret::new(client.secret),
    };
    let report = simulate(
        &scenario,
        &target,
        RunOptions {
            out_dir: Some(out_dir),
            live,
            qa: Some(qa),
            ..RunOptions::default()
        },
    )
    .await
    .map_err(|e: SimulateError| super::DemoError::Simulate(Box::new(e)))?;
    Ok(SimulationFigures::of(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_a_valid_scenario_with_a_few_invalid_events() {
        for (agents, secs) in [(300, 20), (40, 3)] {
            let plan = SimulationPlan::new(agents, Duration::from_secs(secs), 5);
            let s = plan.scenario().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.thresholds.len(), THRESHOLDS.len());
            let expected_invalid =
                plan.rate * secs as f64 * EVENTS_PER_INTERACTION * plan.invalid_share;
            assert!(
                (3.0..=20.0).contains(&expected_invalid),
                "{expected_invalid}"
            );
        }
    }
}
