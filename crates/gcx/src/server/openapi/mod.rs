//! The OpenAPI document of `gcx serve`: the handlers' annotations (utoipa), completed by
//! what depends on the serving configuration. `trigger_schema.rs` writes the trigger
//! schemas from the action catalogue (a `oneOf` on `actionType`), `submit_query.rs` the
//! query of `POST /v1/triggers` (its `timeout` bounded by `serve.request_timeout`). Served
//! at `/openapi.json` for the running configuration; `gcx serve --print-openapi` prints it
//! for the loaded one, and for the defaults it is the checked-in `docs/openapi.json`
//! (a test keeps the two equal).
//!
//! Types from other modules that carry no schema of their own (the protocol's
//! violations, the store's states) are mirrored here for documentation only.

mod submit_query;
mod trigger_schema;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use gcx_protocol::Catalogue;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::health::HealthBody;
use super::routes::{cluster, metrics_audit, outbox, triggers};
use super::state::AppState;
use crate::config::ServeConfig;

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
        cluster::get,
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
        TriggerRequestSchema,
        ViolationSchema,
        UtcTime,
        HyphenatedUuid,
        TriggerStateSchema,
        AuditMetricsSchema,
        ActionMetricsSchema,
        metrics_audit_schemas::TimeRangeSchema,
        cluster::ClusterView,
        cluster::MemberView,
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

/// What the document depends on beyond the handlers: the catalogue triggers are
/// validated with, and the limits of `serve`.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub catalogue: &'a Catalogue,
    pub max_batch: usize,
    pub request_timeout: Duration,
}

impl<'a> Settings<'a> {
    /// The document of a service with this catalogue and `serve` section.
    pub fn new(catalogue: &'a Catalogue, serve: &ServeConfig) -> Settings<'a> {
        Settings {
            catalogue,
            max_batch: serve.max_batch,
            request_timeout: serve.request_timeout,
        }
    }
}

/// The document for `settings`.
pub fn document(settings: &Settings<'_>) -> Value {
    // Serializing the in-memory document (strings, maps) cannot fail.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in trigger_schema::components(settings.catalogue, settings.max_batch) {
            schemas.insert(name, schema);
        }
        schemas.sort_keys();
    }
    if let Some(post) = doc.pointer_mut("/paths/~1v1~1triggers/post") {
        post["parameters"] = Value::Array(vec![submit_query::parameter(settings.request_timeout)]);
    }
    // No body replays every dead letter, as `{}` does.
    if let Some(body) = doc.pointer_mut("/paths/~1v1~1outbox~1replay/post/requestBody") {
        body["required"] = Value::Bool(false);
    }
    doc
}

/// The document for `settings` as pretty JSON with a trailing newline (the checked-in
/// form).
pub fn document_json(settings: &Settings<'_>) -> String {
    // Pretty-printing a `Value` cannot fail.
    let mut text = serde_json::to_string_pretty(&document(settings)).unwrap_or_default();
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
pub async fn openapi_json(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(document(&Settings::new(&state.catalogue, &state.config)))
}

/// A trigger request: one trigger or an array; its schema is the catalogue's
/// ([`trigger_schema`]), which [`document`] puts in its place.
pub struct TriggerRequestSchema;

impl PartialSchema for TriggerRequestSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().into()
    }
}

impl ToSchema for TriggerRequestSchema {
    fn name() -> Cow<'static, str> {
        "TriggerRequest".into()
    }
}

/// A UUID as 8-4-4-4-12 hex digits, either case, any version.
pub struct HyphenatedUuid;

impl PartialSchema for HyphenatedUuid {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Uuid,
            )))
            .pattern(Some(trigger_schema::UUID_PATTERN))
            .description(Some("A UUID as 8-4-4-4-12 hex digits, either case"))
            .into()
    }
}

impl ToSchema for HyphenatedUuid {
    fn name() -> Cow<'static, str> {
        "HyphenatedUuid".into()
    }
}

/// A time as the protocol takes it: RFC 3339 in UTC (`Z` or `+00:00`), 0 to 9 fraction
/// digits, a leap second only at 23:59:60 ([`gcx_protocol::time::parse`]).
pub struct UtcTime;

/// [`UtcTime`]'s shape; `format: date-time` adds the calendar (no 31 February).
pub const UTC_TIME_PATTERN: &str = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]|23:59:60)(\\.[0-9]{1,9})?(Z|\\+00:00)$";

impl PartialSchema for UtcTime {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .pattern(Some(UTC_TIME_PATTERN))
            .description(Some(
                "RFC 3339 in UTC (`Z` or `+00:00`), 0 to 9 fraction digits, e.g. 2026-01-31T12:00:00Z",
            ))
            .examples(["2026-01-31T12:00:00Z"])
            .into()
    }
}

impl ToSchema for UtcTime {
    fn name() -> Cow<'static, str> {
        "UtcTime".into()
    }
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

    /// Every time the parser takes matches the pattern, and the pattern refuses only what
    /// the parser refuses, apart from calendar faults `format: date-time` refuses.
    #[test]
    fn the_time_pattern_takes_what_the_parser_takes() {
        let pattern = regex::Regex::new(UTC_TIME_PATTERN).unwrap();
        for text in [
            "2026-01-31T12:00:00Z",
            "2026-01-31T12:00:00.5+00:00",
            "2026-01-31T12:00:00.123456789Z",
            "2026-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "",
            "2026-01-31T12:00:60Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31T12:00:00.1234567890Z",
            "2026-01-31T12:00:00",
            "2026-01-31T12:00:00+01:00",
            "2026-01-31t12:00:00z",
            " 026-01-31T12:00:00Z",
            "-026-01-31T12:00:00Z",
            "2026-13-01T12:00:00Z",
            "2026-00-01T12:00:00Z",
            "2026-01-32T12:00:00Z",
            "2026-01-31T12:00:00.Z",
        ] {
            assert_eq!(
                pattern.is_match(text),
                gcx_protocol::time::parse(text).is_some(),
                "{text:?}"
            );
        }
        assert!(pattern.is_match("2026-02-31T12:00:00Z"));
        assert!(gcx_protocol::time::parse("2026-02-31T12:00:00Z").is_none());
    }

    #[test]
    fn the_replay_body_is_optional_and_a_trigger_request_is_the_catalogues() {
        let doc = document(&Settings::new(
            &Catalogue::builtin(),
            &ServeConfig::default(),
        ));
        assert_eq!(
            doc["paths"]["/v1/outbox/replay"]["post"]["requestBody"]["required"],
            false
        );
        assert_eq!(
            doc["paths"]["/v1/triggers"]["post"]["requestBody"]["content"]["application/json"]["schema"],
            serde_json::json!({"$ref": "#/components/schemas/TriggerRequest"})
        );
        let since = &doc["paths"]["/v1/metrics/audit"]["get"]["parameters"][0];
        assert_eq!(since["schema"]["$ref"], "#/components/schemas/UtcTime");
        assert_eq!(
            doc["components"]["schemas"]["UtcTime"]["format"],
            "date-time"
        );
    }

    #[test]
    fn checked_in_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in
                == document_json(&Settings::new(
                    &Catalogue::builtin(),
                    &ServeConfig::default()
                )),
            "docs/openapi.json is stale: run `gcx serve --print-openapi > docs/openapi.json`"
        );
    }
}
