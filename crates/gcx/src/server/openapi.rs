//! The OpenAPI document of `gcx serve`, generated from the handlers' annotations
//! (utoipa), served at `/openapi.json` and checked in as `docs/openapi.json`
//! (`gcx serve --print-openapi` regenerates it; a test keeps the two equal).
//!
//! Types from other modules that carry no schema of their own (the protocol's payload and
//! violations, the store's states) are mirrored here for documentation only.

use std::collections::BTreeMap;

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::health::HealthBody;
use super::routes::{metrics_audit, outbox, triggers};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gcx serve",
        description = "The Agent Assist trigger service over HTTP: durable intake of ActionTriggerPayloads (PROTOCOL.md 3.4), their state and results, the audit metrics and the CRM webhook outbox. Every /v1 route needs `Authorization: Bearer <api key>`.",
        license(name = "Apache-2.0")
    ),
    paths(
        triggers::post,
        triggers::get,
        metrics_audit::get,
        outbox::list,
        outbox::replay,
        super::health::healthz,
        super::health::readyz,
        super::prometheus::render,
        openapi_json,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        HealthBody,
        triggers::TriggerAck,
        triggers::AckStatus,
        triggers::TriggerView,
        triggers::WaitMode,
        TriggerPayloadSchema,
        ExecutionContextSchema,
        ViolationSchema,
        TriggerStateSchema,
        AuditMetricsSchema,
        ActionMetricsSchema,
        metrics_audit_schemas::TimeRangeSchema,
        outbox::OutboxList,
        outbox::OutboxMessageView,
        outbox::OutboxCountsView,
        outbox::OutboxStatusParam,
        outbox::ReplayRequest,
        outbox::ReplayResult,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "triggers", description = "Intake and status of Agent Assist triggers"),
        (name = "audit", description = "Metrics over the audit log"),
        (name = "outbox", description = "The CRM/QA webhook outbox, as `gcx outbox` shows it"),
        (name = "operations", description = "Health, readiness, Prometheus metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `api_key` bearer scheme the /v1 routes name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("An API key from serve.api_keys".into());
        components.add_security_scheme("api_key", SecurityScheme::Http(http));
    }
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        // Serializing the in-memory document (strings, maps) cannot fail.
        .unwrap_or_default();
    text.push('\n');
    text
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    operation_id = "openapi",
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Json<Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
}

/// An ActionTriggerPayload (PROTOCOL.md 3.4); validated per 3.5.
#[derive(ToSchema)]
#[schema(as = TriggerPayload)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only
pub struct TriggerPayloadSchema {
    /// One of the action catalogue's actions.
    #[schema(example = "knowledge_search")]
    action_type: ActionTypeSchema,
    /// The action's parameters, per the catalogue (no nulls, no unknown keys).
    #[schema(value_type = Object, example = json!({"query": "refund policy", "languageCode": "en-US"}))]
    parameter_matrix: BTreeMap<String, Value>,
    execution_context: ExecutionContextSchema,
    /// UUID version 4, either case.
    #[schema(format = Uuid, example = "550e8400-e29b-41d4-a716-446655440000")]
    correlation_id: String,
    /// Re-sends after a retryable refusal (0-3; absent means 0).
    #[schema(minimum = 0, maximum = 3, nullable = false)]
    max_retries: Option<u8>,
}

/// The default catalogue's action types.
#[derive(ToSchema)]
#[schema(as = ActionType)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only
pub enum ActionTypeSchema {
    KnowledgeSearch,
    DocumentExtraction,
    SentimentAnalysis,
}

/// Who triggered the action and in which interaction; other string keys pass through.
#[derive(ToSchema)]
#[schema(as = ExecutionContext)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only
pub struct ExecutionContextSchema {
    /// UUID of any version.
    #[schema(format = Uuid)]
    agent_id: String,
    /// 1-128 characters.
    #[schema(min_length = 1, max_length = 128)]
    session_id: String,
    interaction_type: InteractionTypeSchema,
}

#[derive(ToSchema)]
#[schema(as = InteractionType)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation only
pub enum InteractionTypeSchema {
    Voice,
    Chat,
    Email,
    Message,
    Callback,
    Video,
}

/// One broken rule (PROTOCOL.md 3.5).
#[derive(ToSchema)]
#[schema(as = Violation)]
#[allow(dead_code)] // documentation only
pub struct ViolationSchema {
    /// JSON Pointer into the item (`""` is the whole item).
    path: String,
    /// `required`, `null`, `type`, `enum`, `format`, `range`, `unknown`, `one_of`, `size`.
    code: String,
    message: String,
}

/// Lifecycle of a trigger.
#[derive(ToSchema)]
#[schema(as = TriggerState)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation only
pub enum TriggerStateSchema {
    /// Durably stored, not yet acked by the engine.
    Accepted,
    /// Acked by the engine, no result yet.
    Sent,
    Completed,
    Failed,
    /// Refused for good without ever being acked.
    Rejected,
}

/// `GET /v1/metrics/audit`: the overall metrics at the top level (the seed's key names),
/// then the same by action type.
#[derive(ToSchema)]
#[schema(as = AuditMetrics)]
#[allow(dead_code)] // documentation only
pub struct AuditMetricsSchema {
    total_triggers: u64,
    successful: u64,
    /// Failed plus rejected.
    failed: u64,
    /// successful / total_triggers (0 when there are none).
    completion_rate: f64,
    /// Send -> result over successful triggers, like the seed.
    average_latency_ms: f64,
    p50_latency_ms: f64,
    p95_latency_ms: f64,
    p99_latency_ms: f64,
    max_latency_ms: f64,
    by_action_type: BTreeMap<String, ActionMetricsSchema>,
    range: metrics_audit_schemas::TimeRangeSchema,
}

/// The metrics of one action type.
#[derive(ToSchema)]
#[schema(as = ActionMetrics)]
#[allow(dead_code)] // documentation only
pub struct ActionMetricsSchema {
    total_triggers: u64,
    successful: u64,
    failed: u64,
    completion_rate: f64,
    average_latency_ms: f64,
    p50_latency_ms: f64,
    p95_latency_ms: f64,
    p99_latency_ms: f64,
    max_latency_ms: f64,
}

mod metrics_audit_schemas {
    use utoipa::ToSchema;

    /// The window the metrics cover (`null`: unbounded).
    #[derive(ToSchema)]
    #[schema(as = TimeRange)]
    #[allow(dead_code)] // documentation only
    pub struct TimeRangeSchema {
        since: Option<String>,
        until: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_route() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/v1/triggers",
            "/v1/triggers/{correlationId}",
            "/v1/metrics/audit",
            "/v1/outbox",
            "/v1/outbox/replay",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn checked_in_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == document_json(),
            "docs/openapi.json is stale: run `gcx serve --print-openapi > docs/openapi.json`"
        );
    }
}
