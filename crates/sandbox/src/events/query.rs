//! `POST /api/v2/analytics/interactions/events/query` (PROTOCOL.md section 4.1): exactly
//! one of `sequenceIds`, `batchId`, `agentIds`, answered in receipt order, a page at a
//! time, from the asking tenant's events only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::DateTime;
use gcx_protocol::events::{CODE_INVALID_TRANSITION, QueriedEvent, QueryRequest, QueryResponse};
use gcx_protocol::oauth::SCOPE_ANALYTICS_QUERY;

use super::body::{BodyError, read_limited, require_json};
use super::store::{Outcome, QueryKey, Record};
use crate::AppState;
use crate::http_error::ApiError;

/// Most bytes in a query body.
const MAX_QUERY_BYTES: usize = 1024 * 1024;

pub(crate) async fn post_query(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Read first, whatever the answer: see `ingest::post_events`.
    let bytes = read_limited(&headers, body, MAX_QUERY_BYTES).await;
    match answer(&state, &headers, bytes) {
        Ok(r) => (StatusCode::OK, axum::Json(r)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn answer(
    state: &AppState,
    headers: &HeaderMap,
    bytes: Result<Bytes, BodyError>,
) -> Result<QueryResponse, ApiError> {
    let token = state.tokens.check_bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required: Authorization: Bearer <token from POST /oauth/token>",
        )
    })?;
    if !token.has_scope(SCOPE_ANALYTICS_QUERY) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the token lacks the scope {SCOPE_ANALYTICS_QUERY}, which query-back needs"),
        ));
    }
    let bytes = bytes.map_err(|e| match e {
        BodyError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the query is larger than {limit} bytes; ask for fewer sequenceIds at a time"),
        ),
        e @ BodyError::Read(_) => ApiError::bad_request(e.to_string()),
    })?;
    require_json(headers)?;
    let request = read_request(&bytes)?;
    let key = key_of(&request)?;
    let from = cursor_of(&request)?;
    let not_found_batch = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "batchId {} is unknown to this client (never received, or evicted)",
                request.batch_id.unwrap_or_default()
            ),
        )
    };
    let Some(tenant) = state.events.existing(&token.tenant) else {
        return match key {
            QueryKey::Batch(_) => Err(not_found_batch()),
            QueryKey::SequenceIds(ids) => {
                let mut not_found = ids.to_vec();
                not_found.sort_unstable();
                not_found.dedup();
                Ok(QueryResponse {
                    not_found,
                    ..QueryResponse::default()
                })
            }
            QueryKey::Agents(_) => Ok(QueryResponse::default()),
        };
    };
    let page = tenant
        .query(&key, from, state.events.page_size)
        .map_err(|_| not_found_batch())?;
    Ok(QueryResponse {
        events: page.records.iter().map(queried).collect(),
        not_found: page.not_found,
        cursor: page.next.map(|p| p.to_string()),
    })
}

/// The body as a query request (pure; the checks that need no store).
pub(crate) fn read_request(bytes: &[u8]) -> Result<QueryRequest, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the query must be a JSON object with one of sequenceIds (array of UUIDs), batchId (UUID) or agentIds (array of UUIDs), and an optional cursor: {e}"
        ))
    })
}

/// The one key a request asks by: exactly one of the three, and a list names at least one.
pub(crate) fn key_of(request: &QueryRequest) -> Result<QueryKey<'_>, ApiError> {
    match (&request.sequence_ids, &request.batch_id, &request.agent_ids) {
        (Some(ids), None, None) if !ids.is_empty() => Ok(QueryKey::SequenceIds(ids)),
        (None, Some(id), None) => Ok(QueryKey::Batch(*id)),
        (None, None, Some(ids)) if !ids.is_empty() => Ok(QueryKey::Agents(ids)),
        (None, None, None) => Err(ApiError::bad_request(
            "the query needs exactly one of sequenceIds, batchId or agentIds; it has none",
        )),
        (Some(_), None, None) | (None, None, Some(_)) => Err(ApiError::bad_request(
            "sequenceIds or agentIds must list at least one UUID",
        )),
        _ => Err(ApiError::bad_request(
            "the query needs exactly one of sequenceIds, batchId or agentIds; it has more than one",
        )),
    }
}

/// Where the page starts: 0, or the position a previous answer's cursor names.
pub(crate) fn cursor_of(request: &QueryRequest) -> Result<u64, ApiError> {
    match request.cursor.as_deref() {
        None => Ok(0),
        Some(c) => c.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "cursor {c:?} is not one this server gave; pass the cursor of the previous answer unchanged"
            ))
        }),
    }
}

/// A record as query-back writes it.
fn queried(r: &Record) -> QueriedEvent {
    let pending = r.outcome == Outcome::Pending;
    QueriedEvent {
        sequence_id: r.sequence_id,
        batch_id: r.batch_id,
        agent_id: r.agent_id,
        interaction_id: r.interaction_id,
        state: r.state,
        status: r.outcome.status(),
        code: matches!(r.outcome, Outcome::Rejected { .. })
            .then(|| CODE_INVALID_TRANSITION.to_owned()),
        received_at: timestamp(r.received_at),
        processed_at: (!pending).then(|| timestamp(r.processed_at)),
    }
}

fn timestamp(nanos: i64) -> String {
    gcx_protocol::time::format(DateTime::from_timestamp_nanos(nanos))
}
