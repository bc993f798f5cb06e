//! `GET /v1/metrics/audit`: the seed's audit metric map (`total_triggers`, `successful`,
//! `failed`, `completion_rate`, `average_latency_ms`) plus latency percentiles, overall
//! and by action type, computed from the durable audit log (as `gcx audit report`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::audit::report::{AuditMetrics, TimeRange, report};
use crate::server::error::{ApiError, ErrorBody, store_error};
use crate::server::openapi::{AuditMetricsSchema, UtcTime};
use crate::server::state::AppState;

/// Query of `GET /v1/metrics/audit`: an optional window over when triggers finished.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only triggers that finished at or after this time (RFC 3339, UTC).
    #[param(value_type = Option<UtcTime>)]
    pub since: Option<String>,
    /// Only triggers that finished before this time (RFC 3339, UTC).
    #[param(value_type = Option<UtcTime>)]
    pub until: Option<String>,
}

/// The seed's audit metrics plus latency percentiles, from the durable audit log.
#[utoipa::path(
    get,
    operation_id = "auditMetrics",
    path = "/v1/metrics/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "The seed's metric map plus percentiles, overall and by action type", body = AuditMetricsSchema),
        (status = 400, description = "A bad `since` or `until`", body = ErrorBody),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 429, description = "Over this key's rate limit", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditMetrics>, ApiError> {
    let Query(params) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; accepted: since and until as RFC 3339 UTC times",
                e.body_text()
            ),
        )
    })?;
    let range = TimeRange {
        since: parse_time("since", params.since.as_deref())?,
        until: parse_time("until", params.until.as_deref())?,
    };
    let metrics = report(&state.store, range).await.map_err(|e| {
        tracing::error!(error = %e, "audit report failed");
        match e {
            crate::audit::AuditError::Store(e) => store_error(e),
            other => ApiError::internal("audit_report_failed", other.to_string()),
        }
    })?;
    Ok(Json(metrics))
}

fn parse_time(name: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match text {
        None => Ok(None),
        Some(t) => gcx_protocol::time::parse(t).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} `{t}` is not an RFC 3339 UTC time such as 2026-01-31T12:00:00Z"),
            )
        }),
    }
}
