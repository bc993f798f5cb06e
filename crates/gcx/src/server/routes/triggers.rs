//! `POST /v1/triggers` (intake: validate every item, accept the valid ones durably, say
//! which) and `GET /v1/triggers/{correlationId}` (where a trigger stands).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, join_all};
use gcx_protocol::assist::MAX_MESSAGE_BYTES;
use gcx_protocol::validate::validate_trigger;
use gcx_protocol::{ActionTriggerPayload, Violation, ViolationCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::trigger_body::{self, TriggerDocument};
use crate::server::body::check_content_type;
use crate::server::error::{ApiError, ErrorBody, body_error, store_error};
use crate::server::openapi::{
    HyphenatedUuid, TriggerRequestSchema, TriggerStateSchema, ViolationSchema,
};
use crate::server::pipeline::Submitted;
use crate::server::state::AppState;
use crate::store::{TriggerRow, TriggerState};

/// Default wait of `?wait=result` without `timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Query of `POST /v1/triggers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostParams {
    /// `result`: hold the answer until every accepted trigger has its result (or the
    /// timeout passes; then 202 with what is known).
    pub wait: Option<WaitMode>,
    /// How long `wait=result` may hold the answer, e.g. `5s` or `500ms` (default 5s; less
    /// than serve.request_timeout).
    pub timeout: Option<String>,
}

/// What `wait` may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    Result,
}

/// How the service took one item of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Newly and durably accepted; it will be sent to the engine.
    Accepted,
    /// Its correlationId was already accepted (earlier, or earlier in this request);
    /// nothing new was done. `state` says where the first one stands.
    Duplicate,
    /// Refused by validation (`violations` says why); not stored, not sent.
    Invalid,
}

/// The answer for one item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAck {
    /// Position of the item in the request array (absent for a single-object request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The item's correlationId (lowercase), when it had a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub status: AckStatus,
    /// Where the trigger stands (duplicates, and every item with `wait=result`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TriggerStateSchema>)]
    pub state: Option<TriggerState>,
    /// The engine result's `output` (completed triggers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The engine's or the pipeline's `error` (failed or rejected triggers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Every violation of an invalid item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ViolationSchema>>)]
    pub violations: Option<Vec<Violation>>,
}

/// A 2xx answer mirrors the request: one object for one object, an array for an array.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documentation only
pub enum TriggerResponse {
    One(TriggerAck),
    Many(Vec<TriggerAck>),
}

/// Submit one trigger or a batch.
///
/// Every item is validated (PROTOCOL.md 3.5); the valid ones are durably accepted before the
/// answer, whatever their neighbours. With `wait=result` the answer waits for the results.
#[utoipa::path(
    post,
    operation_id = "submitTriggers",
    path = "/v1/triggers",
    tag = "triggers",
    // The query (`wait`, `timeout`) is one object parameter that `openapi::document`
    // writes, bounded by serve.request_timeout.
    request_body(content = TriggerRequestSchema, content_type = "application/json",
        description = "One ActionTriggerPayload (PROTOCOL.md 3.4) or an array of up to serve.max_batch"),
    responses(
        (status = 200, description = "wait=result: every accepted trigger has reached a final state", body = TriggerResponse),
        (status = 202, description = "Every item durably accepted (or a duplicate of an accepted one)", body = TriggerResponse),
        (status = 400, description = "Bad query, body not JSON, or at least one invalid item; `details.items` lists every item, the valid ones were accepted", body = ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key, or a key in the query string", body = ErrorBody),
        (status = 408, description = "The body did not arrive within serve.body_read_timeout", body = ErrorBody),
        (status = 413, description = "Body over serve.max_body_bytes (once inflated) or more items than serve.max_batch", body = ErrorBody),
        (status = 415, description = "A body without Content-Type or one that is not JSON, or a Content-Encoding other than gzip or identity", body = ErrorBody),
        (status = 429, description = "Over this key's rate limit, or this address over serve.auth_failures_per_minute; see Retry-After", body = ErrorBody),
        (status = 503, description = "Shutting down, or the store did not confirm; retrying with the same correlationIds is safe", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn post(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PostParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::shutting_down());
    }
    let Query(params) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; accepted: wait=result and timeout=<duration such as 5s>",
                e.body_text()
            ),
        )
    })?;
    let wait = wait_timeout(&params, state.config.request_timeout)?;
    let body = body.map_err(|e| body_error(e, state.config.max_body_bytes))?;
    check_content_type(&headers, &body)?;
    let (items, single) = read_body(&body, state.config.max_batch)?;

    let outcome = accept(&state, &items).await?;
    let counts = outcome.counts();
    metrics::counter!("gcx_serve_triggers_received_total", "outcome" => "accepted")
        .increment(counts.accepted as u64);
    metrics::counter!("gcx_serve_triggers_received_total", "outcome" => "duplicate")
        .increment(counts.duplicate as u64);
    metrics::counter!("gcx_serve_triggers_received_total", "outcome" => "invalid")
        .increment(counts.invalid as u64);

    let mut acks = outcome.acks;
    let mut all_final = false;
    if let Some(timeout) = wait {
        all_final = wait_for_results(&state, &mut acks, outcome.finished, timeout).await?;
    }
    if single {
        acks[0].index = None;
    }

    if counts.invalid > 0 {
        let message = if single {
            let violations = acks[0].violations.as_deref().unwrap_or(&[]);
            format!(
                "the trigger is invalid and was not accepted: {}",
                summarize(violations)
            )
        } else {
            format!(
                "{} of {} triggers are invalid and were not accepted (see details.items[].violations); the other {} were accepted",
                counts.invalid,
                acks.len(),
                acks.len() - counts.invalid
            )
        };
        let code = if single {
            "invalid_trigger"
        } else {
            "invalid_triggers"
        };
        let details = if single {
            json!({
                "correlationId": acks[0].correlation_id,
                "violations": acks[0].violations,
            })
        } else {
            json!({
                "accepted": counts.accepted + counts.duplicate,
                "invalid": counts.invalid,
                "items": acks,
            })
        };
        return Err(ApiError::bad_request(code, message).with_details(details));
    }

    let status = if wait.is_some() && all_final {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = if single {
        Json(serde_json::to_value(&acks[0]).unwrap_or(Value::Null))
    } else {
        Json(serde_json::to_value(&acks).unwrap_or(Value::Null))
    };
    Ok((status, body).into_response())
}

/// The outcome of validating and submitting every item.
struct Received {
    acks: Vec<TriggerAck>,
    /// For each stored item (by index into `acks`), a future resolving once it finished.
    finished: Vec<(usize, BoxFuture<'static, ()>)>,
}

#[derive(Default)]
struct Counts {
    accepted: usize,
    duplicate: usize,
    invalid: usize,
}

impl Received {
    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for a in &self.acks {
            match a.status {
                AckStatus::Accepted => c.accepted += 1,
                AckStatus::Duplicate => c.duplicate += 1,
                AckStatus::Invalid => c.invalid += 1,
            }
        }
        c
    }
}

/// Validates every item, then submits the valid ones (first of each correlationId) in
/// one call, so a bad item never costs its neighbours their place.
async fn accept(state: &AppState, items: &[Value]) -> Result<Received, ApiError> {
    let mut acks = Vec::with_capacity(items.len());
    let mut to_submit: Vec<ActionTriggerPayload> = Vec::new();
    // Index in `acks` of each submitted payload, and of the first item per id.
    let mut submitted_at: Vec<usize> = Vec::new();
    let mut first_of: HashMap<Uuid, usize> = HashMap::new();
    let mut finished = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let mut ack = TriggerAck {
            index: Some(index),
            correlation_id: readable_id(item),
            status: AckStatus::Invalid,
            state: None,
            output: None,
            error: None,
            violations: None,
        };
        match validate_item(item, &state.catalogue) {
            Err(violations) => ack.violations = Some(violations),
            Ok(payload) => {
                let id = payload.correlation_id;
                ack.correlation_id = Some(id.to_string());
                match first_of.entry(id) {
                    Entry::Occupied(_) => ack.status = AckStatus::Duplicate,
                    Entry::Vacant(slot) => {
                        slot.insert(index);
                        ack.status = AckStatus::Accepted;
                        submitted_at.push(index);
                        to_submit.push(payload);
                    }
                }
            }
        }
        acks.push(ack);
    }
    if !to_submit.is_empty() {
        let outcomes = state.pipeline.submit(to_submit).await.map_err(|e| {
            tracing::error!(error = %e, "trigger intake failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "intake_unavailable",
                format!(
                    "{e}; no trigger of this request may be assumed accepted, and sending the same request again is safe (acceptance is idempotent per correlationId)"
                ),
            )
            .with_retry_after(Duration::from_secs(1))
        })?;
        for (at, intake) in submitted_at.iter().zip(outcomes) {
            if let Submitted::Existing(existing) = intake.submitted {
                acks[*at].status = AckStatus::Duplicate;
                acks[*at].state = Some(existing);
            }
            finished.push((*at, intake.finished));
        }
    }
    // In-request duplicates share the state of their first occurrence.
    for i in 0..acks.len() {
        if acks[i].status == AckStatus::Duplicate && acks[i].state.is_none() {
            let first = acks[i]
                .correlation_id
                .as_deref()
                .and_then(|s| Uuid::parse_str(s).ok())
                .and_then(|id| first_of.get(&id).copied());
            acks[i].state = Some(
                first
                    .and_then(|f| acks[f].state)
                    .unwrap_or(TriggerState::Accepted),
            );
        }
    }
    Ok(Received { acks, finished })
}

/// The body as trigger items (pure): one object (`single`) or a non-empty array of at most
/// `max_batch`; each item is validated afterwards, alone ([`validate_item`]).
pub fn read_body(body: &[u8], max_batch: usize) -> Result<(Vec<Value>, bool), ApiError> {
    let document = trigger_body::parse(body, max_batch).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "the request body is not JSON: {e} (line {}, column {}); send one trigger object or an array of them",
                e.line(),
                e.column()
            ),
        )
    })?;
    let (items, single) = match document {
        TriggerDocument::Many(items) => (items, false),
        TriggerDocument::One(item) => (vec![item], true),
        TriggerDocument::TooMany { items } => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!(
                    "the request holds {items} triggers; at most {max_batch} per request (serve.max_batch): split it"
                ),
            )
            .with_details(json!({"items": items, "maxBatch": max_batch})));
        }
        TriggerDocument::Other(kind) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "the request body is a JSON {kind}; send one trigger object or an array of them"
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "the request body is an empty array; send at least one trigger",
        ));
    }
    Ok((items, single))
}

/// Size check (PROTOCOL.md 3.5: over 64 KiB is one `size` violation), then validation.
pub fn validate_item(
    item: &Value,
    catalogue: &gcx_protocol::Catalogue,
) -> Result<ActionTriggerPayload, Vec<Violation>> {
    let size = serde_json::to_vec(item).map(|v| v.len()).unwrap_or(0);
    if size > MAX_MESSAGE_BYTES {
        return Err(vec![Violation {
            path: String::new(),
            code: ViolationCode::Size,
            message: format!(
                "the trigger is {size} bytes as compact JSON; at most {MAX_MESSAGE_BYTES} bytes"
            ),
        }]);
    }
    validate_trigger(item, catalogue)
}

/// The item's correlationId when it is a UUID string, lowercased, so an invalid item can
/// still be matched to what the caller sent.
pub fn readable_id(item: &Value) -> Option<String> {
    let text = item.get("correlationId")?.as_str()?;
    Uuid::parse_str(text).ok().map(|u| u.to_string())
}

/// Holds the answer until every stored item is finished or `timeout` passes, then fills
/// in each item's state and result from the store. Returns whether all were final.
async fn wait_for_results(
    state: &AppState,
    acks: &mut [TriggerAck],
    finished: Vec<(usize, BoxFuture<'static, ()>)>,
    timeout: Duration,
) -> Result<bool, ApiError> {
    let waits = finished.into_iter().map(|(_, f)| f);
    let _ = tokio::time::timeout(timeout, join_all(waits)).await;
    let mut all_final = true;
    for ack in acks.iter_mut().filter(|a| a.status != AckStatus::Invalid) {
        let Some(id) = ack
            .correlation_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            continue;
        };
        match state.store.trigger(id).await.map_err(store_error)? {
            Some(row) => {
                all_final &= !row.state.is_unfinished();
                ack.state = Some(row.state);
                ack.output = row.output;
                ack.error = row.error;
            }
            None => all_final = false,
        }
    }
    Ok(all_final)
}

fn wait_timeout(
    params: &PostParams,
    request_timeout: Duration,
) -> Result<Option<Duration>, ApiError> {
    let limit = request_timeout;
    match (params.wait, &params.timeout) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::bad_request(
            "invalid_query",
            "`timeout` only applies with `wait=result`; add wait=result or drop timeout",
        )),
        (Some(WaitMode::Result), None) => Ok(Some(DEFAULT_WAIT.min(limit / 2))),
        (Some(WaitMode::Result), Some(text)) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("timeout `{text}` is not a duration ({e}); write e.g. 5s or 500ms"),
                )
            })?;
            if d >= limit {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "timeout `{text}` is not below serve.request_timeout ({}); ask for less",
                        humantime::format_duration(limit)
                    ),
                ));
            }
            Ok(Some(d))
        }
    }
}

fn summarize(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A stored trigger as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerView {
    pub correlation_id: String,
    pub action_type: String,
    #[schema(value_type = TriggerStateSchema)]
    pub state: TriggerState,
    /// Sends to the engine so far (first send = 1).
    pub attempts: u32,
    /// When the trigger was durably accepted (RFC 3339, UTC).
    pub accepted_at: String,
    /// When its state last changed.
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl From<TriggerRow> for TriggerView {
    fn from(row: TriggerRow) -> TriggerView {
        TriggerView {
            correlation_id: row.correlation_id.to_string(),
            action_type: row.action_type,
            state: row.state,
            attempts: row.attempts,
            accepted_at: gcx_protocol::time::format(row.accepted_at),
            updated_at: gcx_protocol::time::format(row.updated_at),
            output: row.output,
            error: row.error,
        }
    }
}

/// A trigger's state, attempts, timestamps and result.
#[utoipa::path(
    get,
    operation_id = "getTrigger",
    path = "/v1/triggers/{correlationId}",
    tag = "triggers",
    params(("correlationId" = HyphenatedUuid, Path, description = "The trigger's correlationId (stored triggers have version 4)")),
    responses(
        (status = 200, description = "The trigger's state, attempts, timestamps and result", body = TriggerView),
        (status = 400, description = "The path segment is not a UUID", body = ErrorBody),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 404, description = "No trigger with this correlationId is stored (never accepted, or pruned)", body = ErrorBody),
        (status = 429, description = "Over this key's rate limit", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TriggerView>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let id = Uuid::parse_str(&raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_correlation_id",
            format!(
                "`{raw}` is not a correlationId ({e}); give the UUID the trigger was posted with"
            ),
        )
    })?;
    match state.store.trigger(id).await.map_err(store_error)? {
        Some(row) => Ok(Json(row.into())),
        None => Err(ApiError::not_found(format!(
            "no trigger with correlationId {id} is stored here: it was never accepted, or it \
             finished longer ago than store.keep_finished and was pruned"
        ))),
    }
}
