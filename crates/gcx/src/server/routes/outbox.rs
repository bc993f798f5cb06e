//! `GET /v1/outbox` and `POST /v1/outbox/replay`: the webhook outbox as `gcx outbox`
//! shows it (counts, messages by status) and the replay of dead letters.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::server::body::check_content_type;
use crate::server::error::{ApiError, ErrorBody, body_error, store_error};
use crate::server::openapi::UtcTime;
use crate::server::state::AppState;
use crate::store::{OutboxMessage, OutboxStatus, ReplayFilter};

/// Default and largest `limit` of `GET /v1/outbox`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;

/// Query of `GET /v1/outbox`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only messages in this status (all when absent).
    pub status: Option<OutboxStatusParam>,
    /// At most this many messages, oldest first (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Delivery state of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatusParam {
    Pending,
    Delivered,
    /// Dead letters: a final 4xx, the schedule exhausted, or a dead predecessor.
    Dead,
}

impl From<OutboxStatusParam> for OutboxStatus {
    fn from(s: OutboxStatusParam) -> OutboxStatus {
        match s {
            OutboxStatusParam::Pending => OutboxStatus::Pending,
            OutboxStatusParam::Delivered => OutboxStatus::Delivered,
            OutboxStatusParam::Dead => OutboxStatus::Dead,
        }
    }
}

impl From<OutboxStatus> for OutboxStatusParam {
    fn from(s: OutboxStatus) -> OutboxStatusParam {
        match s {
            OutboxStatus::Pending => OutboxStatusParam::Pending,
            OutboxStatus::Delivered => OutboxStatusParam::Delivered,
            OutboxStatus::Dead => OutboxStatusParam::Dead,
        }
    }
}

/// Messages per status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxCountsView {
    /// The backlog still to deliver.
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// One outbox message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessageView {
    /// Store id (what `replay` takes).
    pub id: i64,
    /// The `webhook-id` header, the same on every attempt.
    pub message_id: String,
    /// `crm` or `qa`.
    pub endpoint: String,
    /// Messages with one key are delivered in order (a trigger's CRM rows:
    /// `<accepted at>/<correlationId>`).
    pub ordering_key: String,
    /// The JSON body as delivered.
    pub body: Value,
    pub status: OutboxStatusParam,
    pub attempts: u32,
    pub created_at: String,
    pub next_attempt_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
}

impl From<OutboxMessage> for OutboxMessageView {
    fn from(m: OutboxMessage) -> OutboxMessageView {
        OutboxMessageView {
            id: m.id,
            message_id: m.message_id,
            endpoint: m.endpoint,
            ordering_key: m.ordering_key,
            body: m.body,
            status: m.status.into(),
            attempts: m.attempts,
            created_at: gcx_protocol::time::format(m.created_at),
            next_attempt_at: gcx_protocol::time::format(m.next_attempt_at),
            last_error: m.last_error,
            last_status: m.last_status,
        }
    }
}

/// `GET /v1/outbox` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxList {
    pub counts: OutboxCountsView,
    pub messages: Vec<OutboxMessageView>,
}

/// Outbox counts per status and the oldest messages (as `gcx outbox list`).
#[utoipa::path(
    get,
    operation_id = "listOutbox",
    path = "/v1/outbox",
    tag = "outbox",
    params(ListParams),
    responses(
        (status = 200, description = "Counts per status and the oldest messages", body = OutboxList),
        (status = 400, description = "A bad status or limit", body = ErrorBody),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 429, description = "Over this key's rate limit", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<OutboxList>, ApiError> {
    let Query(params) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; accepted: status=pending|delivered|dead and limit=1..{MAX_LIST_LIMIT}",
                e.body_text()
            ),
        )
    })?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit {limit} is out of range; give 1 to {MAX_LIST_LIMIT}"),
        ));
    }
    let counts = state.store.outbox_counts().await.map_err(store_error)?;
    let messages = state
        .store
        .outbox_list(params.status.map(Into::into), limit)
        .await
        .map_err(store_error)?;
    Ok(Json(OutboxList {
        counts: OutboxCountsView {
            pending: counts.pending,
            delivered: counts.delivered,
            dead: counts.dead,
        },
        messages: messages.into_iter().map(Into::into).collect(),
    }))
}

/// `POST /v1/outbox/replay` body: which dead letters to put back (all when empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this message (its store id).
    pub id: Option<i64>,
    /// Only dead letters created at or after this time (RFC 3339, UTC).
    #[schema(value_type = Option<UtcTime>)]
    pub since: Option<String>,
}

/// `POST /v1/outbox/replay` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplayResult {
    /// Dead letters put back to pending, due now.
    pub replayed: u64,
}

/// Put dead letters back for delivery (as `gcx outbox replay`).
#[utoipa::path(
    post,
    operation_id = "replayOutbox",
    path = "/v1/outbox/replay",
    tag = "outbox",
    // Optional: `openapi::document` says so (utoipa marks it required unless the body is
    // an `Option`, which would also admit a JSON `null` that this handler refuses).
    request_body(content = ReplayRequest, content_type = "application/json",
        description = "Which dead letters to replay; no body, an empty one or `{}` replays all"),
    responses(
        (status = 200, description = "How many dead letters were put back", body = ReplayResult),
        (status = 400, description = "Body not JSON, an unknown key, or a bad `since`", body = ErrorBody),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 408, description = "The body did not arrive within serve.body_read_timeout", body = ErrorBody),
        (status = 413, description = "Body over serve.max_body_bytes (once inflated)", body = ErrorBody),
        (status = 415, description = "A body without Content-Type or one that is not JSON, or a Content-Encoding other than gzip or identity", body = ErrorBody),
        (status = 429, description = "Over this key's rate limit, or this address over serve.auth_failures_per_minute", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReplayResult>, ApiError> {
    let body = body.map_err(|e| body_error(e, state.config.max_body_bytes))?;
    check_content_type(&headers, &body)?;
    let filter = read_replay(&body)?;
    let replayed = state
        .store
        .outbox_replay(&filter)
        .await
        .map_err(store_error)?;
    if replayed > 0 {
        state.delivery.notify();
    }
    tracing::info!(replayed, "outbox dead letters replayed over HTTP");
    Ok(Json(ReplayResult { replayed }))
}

/// The body as a replay filter (pure): empty or `{}` for every dead letter, else `id`
/// and/or `since` (RFC 3339 UTC).
pub fn read_replay(body: &[u8]) -> Result<ReplayFilter, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let request: ReplayRequest = if first.is_none() {
        ReplayRequest::default()
    } else if first != Some(&b'{') {
        // serde would also read the struct from an array (`[1, null]`).
        return Err(ApiError::bad_request(
            "invalid_replay",
            "the replay request is not a JSON object; send {} for every dead letter, or {\"id\": <id>} and/or {\"since\": \"<RFC 3339 time>\"}",
        ));
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_replay",
                format!(
                    "the replay request is not valid: {e}; send {{}} for every dead letter, or {{\"id\": <id>}} and/or {{\"since\": \"<RFC 3339 time>\"}}"
                ),
            )
        })?
    };
    let since: Option<DateTime<Utc>> = match &request.since {
        None => None,
        Some(text) => Some(gcx_protocol::time::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_replay",
                format!("since `{text}` is not an RFC 3339 UTC time such as 2026-01-31T12:00:00Z"),
            )
        })?),
    };
    Ok(ReplayFilter {
        id: request.id,
        since,
    })
}
