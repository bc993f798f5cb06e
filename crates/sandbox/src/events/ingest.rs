//! `POST /api/v2/interactions/events?async=true|false` (PROTOCOL.md section 4).
//!
//! Checks run in the documented order and the first failing one answers: 401/403, 429
//! (the per-minute window, then the `events_429_rate` draw), 503 (`events_5xx_rate`,
//! before any processing), 413 (bytes, then events counted without parsing), 415, 400
//! (the `async` parameter, JSON, empty array, schema, a sequenceId twice). Only then is the
//! batch received and processed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gcx_protocol::events::{
    AsyncBatchResponse, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, SyncBatchResponse,
};
use gcx_protocol::oauth::SCOPE_INTERACTIONS_READ;
use tokio::time::Instant;

use super::batch::{BatchError, EventIn, parse_batch};
use super::body::{BodyError, count_array_elements, read_limited, require_json};
use super::store::{Mode, Submitted};
use crate::AppState;
use crate::faults::draw;
use crate::http_error::{ApiError, RateInfo, new_uuid};

/// The fault settings one request needs, copied out so the lock is held for no time.
struct EventFaults {
    requests_per_minute: Option<u32>,
    rate_429: f64,
    rate_5xx: f64,
    async_delay: Duration,
    seed: u64,
}

pub(crate) async fn post_events(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let stats = &state.stats.events;
    stats.requests.inc();
    // Read first (the answer still follows the order of checks below): a client whose
    // body is left unread may see its connection reset instead of the answer.
    let bytes = read_limited(&headers, body, MAX_BATCH_BYTES).await;

    let Some(token) = state.tokens.check_bearer(&headers) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required: Authorization: Bearer <token from POST /oauth/token>",
        )
        .into_response();
    };
    if !token.has_scope(SCOPE_INTERACTIONS_READ) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the token lacks the scope {SCOPE_INTERACTIONS_READ}, which posting events needs"
            ),
        )
        .into_response();
    }
    let faults = {
        let f = state.faults.read();
        EventFaults {
            requests_per_minute: f.events_requests_per_minute,
            rate_429: f.events_429_rate,
            rate_5xx: f.events_5xx_rate,
            async_delay: Duration::from_millis(f.events_async_delay_ms),
            seed: f.seed,
        }
    };
    let tenant = state.events.tenant(&token.tenant);
    let number = tenant.next_request_number();

    // 429: the window first, then the seeded draw for this request number.
    let admitted = tenant
        .window
        .lock()
        .admit(Instant::now(), faults.requests_per_minute);
    let rate = match admitted {
        Ok(rate) => rate,
        Err(refused) => {
            stats.rate_limited.inc();
            return ApiError::too_many_requests(
                format!(
                    "client {} sent more than {} events requests this minute; retry after {} s",
                    token.tenant, refused.rate.allowed, refused.retry_after_secs
                ),
                refused.retry_after_secs,
            )
            .with_rate(refused.rate)
            .into_response();
        }
    };
    let number_id = number.to_string();
    if draw(faults.seed, "events_429", &number_id) < faults.rate_429 {
        stats.rate_limited.inc();
        return ApiError::too_many_requests(
            format!("request {number} refused by the events_429_rate fault; retry after 1 s"),
            1,
        )
        .with_rate(rate)
        .into_response();
    }
    if draw(faults.seed, "events_5xx", &number_id) < faults.rate_5xx {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("request {number} refused by the events_5xx_rate fault before any processing"),
        )
        .with_rate(rate)
        .into_response();
    }

    match checked_batch(&headers, query.as_deref(), bytes, &state) {
        Err(e) => e.with_rate(rate).into_response(),
        Ok((events, sync)) => {
            receive(&state, &tenant, events, sync, faults.async_delay, rate).await
        }
    }
}

/// The 413, 415 and 400 checks, in that order: the batch's events and whether the request
/// wants a sync answer.
fn checked_batch(
    headers: &HeaderMap,
    query: Option<&str>,
    bytes: Result<Bytes, BodyError>,
    state: &AppState,
) -> Result<(Vec<EventIn>, bool), ApiError> {
    let too_large = |what: String| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, what);
    let bytes = match bytes {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            return Err(too_large(format!(
                "the body is larger than {limit} bytes; send at most {MAX_BATCH_EVENTS} events and 1 MiB per request"
            )));
        }
        Err(e @ BodyError::Read(_)) => return Err(ApiError::bad_request(e.to_string())),
    };
    let counted = count_array_elements(&bytes, MAX_BATCH_EVENTS);
    if counted > MAX_BATCH_EVENTS {
        return Err(too_large(format!(
            "the batch has more than {MAX_BATCH_EVENTS} events; send at most {MAX_BATCH_EVENTS} per request"
        )));
    }
    require_json(headers)?;
    let sync = !async_parameter(query)?;
    let events = parse_batch(&bytes).map_err(|e| match e {
        BatchError::NotJson(e) => ApiError::bad_request(format!("the body is not JSON: {e}")),
        BatchError::Invalid { violations, events } => {
            state.stats.events.events_rejected_schema.add(events as u64);
            let whole: Vec<&str> = violations
                .iter()
                .filter(|v| v.index.is_none())
                .map(|v| v.message.as_str())
                .collect();
            let message = if whole.is_empty() {
                format!(
                    "{} violation(s) of the event schema; nothing was processed",
                    violations.len()
                )
            } else {
                whole.join("; ")
            };
            ApiError::bad_request(message).with_errors(violations)
        }
    })?;
    Ok((events, sync))
}

/// `async=true|false` (default false); anything else is refused.
fn async_parameter(query: Option<&str>) -> Result<bool, ApiError> {
    let mut wanted = false;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "async" {
            continue;
        }
        wanted = match value {
            "true" => true,
            "false" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "query parameter async must be true or false, got {other:?}"
                )));
            }
        };
    }
    Ok(wanted)
}

/// Receives a checked batch and answers: 200 with every result (sync) or 202 (async).
async fn receive(
    state: &Arc<AppState>,
    tenant: &Arc<super::store::TenantEvents>,
    events: Vec<EventIn>,
    sync: bool,
    async_delay: Duration,
    rate: RateInfo,
) -> Response {
    let batch_id = new_uuid();
    let mode = if sync {
        Mode::Sync
    } else {
        Mode::Async { delay: async_delay }
    };
    let submitted = tenant.submit(state, batch_id, &events, mode);
    let mut response = if sync {
        let results = match submitted {
            Submitted::Done(results) => results,
            Submitted::Waiting(rx) => match rx.await {
                Ok(results) => results,
                Err(_) => {
                    return ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the sandbox stopped before the batch was processed",
                    )
                    .with_rate(rate)
                    .into_response();
                }
            },
        };
        (
            StatusCode::OK,
            axum::Json(SyncBatchResponse { batch_id, results }),
        )
            .into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            axum::Json(AsyncBatchResponse {
                batch_id,
                received: events.len(),
            }),
        )
            .into_response()
    };
    rate.apply(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_parameter_values() {
        assert!(!async_parameter(None).unwrap());
        assert!(async_parameter(Some("async=true")).unwrap());
        assert!(!async_parameter(Some("x=1&async=false")).unwrap());
        assert!(async_parameter(Some("async=yes")).is_err());
        assert!(async_parameter(Some("async")).is_err());
    }
}
