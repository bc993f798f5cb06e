//! Outbound payloads: the CRM webhook (PROTOCOL.md section 5) and the QA export (section 6).

use serde::{Deserialize, Serialize};

use crate::assist::ResultError;

/// `executionState` of a CRM webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionState {
    Initiated,
    Completed,
    Failed,
}

impl ExecutionState {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Initiated => "initiated",
            ExecutionState::Completed => "completed",
            ExecutionState::Failed => "failed",
        }
    }
}

/// The seed's `CRMWebhookPayload`, with the error of a failed trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmWebhookPayload {
    pub correlation_id: String,
    pub action_type: String,
    pub agent_id: String,
    pub session_id: String,
    pub timestamp: String,
    pub execution_state: ExecutionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResultError>,
}

/// One threshold's outcome in the QA export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOutcome {
    pub name: String,
    pub expression: String,
    pub value: f64,
    pub passed: bool,
}

/// The seed's `SimulationMetrics`, extended (section 6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimulationMetrics {
    pub total_events: u64,
    pub successful_injections: u64,
    pub state_mismatches: u64,
    pub avg_latency_ms: f64,
    pub timestamp: String,
    pub run_id: String,
    pub scenario: String,
    pub rejected: u64,
    pub expected_rejections: u64,
    pub unexpected_acceptances: u64,
    pub missing: u64,
    pub retries: u64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub max_latency_ms: f64,
    pub service_p50_ms: f64,
    pub service_p99_ms: f64,
    pub dropped: u64,
    pub thresholds: Vec<ThresholdOutcome>,
    pub passed: bool,
}
