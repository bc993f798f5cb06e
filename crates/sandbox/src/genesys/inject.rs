//! `POST /api/v2/events/users/routingstatus`, `/users/presence` and `/conversations`
//! (PROTOCOL.md 9.1).
//!
//! Checks run in this order and the first failing one answers: 401 (bearer token), 403
//! (the endpoint's permission, naming it), 429 (`genesys_requests_per_minute`, per client
//! and endpoint), 413 (over 1 MiB), 415 (not JSON), 400 (not JSON, zero events, more than
//! 100, schema: every violation in `details`). Then each event, in body order: an eventId
//! accepted before is answered as accepted and not applied again; one refused retryably
//! before is accepted now; one refused for good is refused again; a new one faces the
//! `genesys_event_error_rate` draw. Accepted events reach the user state after the
//! processing lag.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gcx_protocol::genesys_events::{
    BatchEventResponse, EventError, PERMISSION_CONVERSATION, PERMISSION_PRESENCE,
    PERMISSION_ROUTING_STATUS, Refusal, RefusalCode, validate_conversations, validate_presence,
    validate_routing_status,
};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::ledger::Outcome;
use super::permissions::{holds, missing_message};
use super::user_state::Accepted;
use super::{Endpoint, Tenant};
use crate::AppState;
use crate::events::body::{BodyError, read_limited, require_json};
use crate::faults::draw;
use crate::http_error::{ApiError, RateInfo};

/// Most bytes in one injection body (PROTOCOL.md is silent; 100 events fit easily).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A validator that also lists the events, in body order, with their eventIds.
type Typed = fn(&Value) -> Result<Vec<(Uuid, Accepted)>, Refusal>;

pub(crate) async fn post_routing_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let typed: Typed = |v| {
        validate_routing_status(v).map(|b| {
            b.user_routing_status_events
                .into_iter()
                .map(|e| (e.event_id, Accepted::RoutingStatus(e)))
                .collect()
        })
    };
    handle(&state, &headers, body, Endpoint::RoutingStatus, typed).await
}

pub(crate) async fn post_presence(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let typed: Typed = |v| {
        validate_presence(v).map(|b| {
            b.user_presence_events
                .into_iter()
                .map(|e| (e.event_id, Accepted::Presence(e)))
                .collect()
        })
    };
    handle(&state, &headers, body, Endpoint::Presence, typed).await
}

pub(crate) async fn post_conversations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let typed: Typed = |v| {
        validate_conversations(v).map(|b| {
            let mut out = Vec::with_capacity(b.len());
            // Array order of the SDK model; within an array, body order.
            out.extend(
                b.communication_answered_events
                    .into_iter()
                    .map(|e| (e.event_id, Accepted::Answered(e))),
            );
            out.extend(
                b.hold_updated_events
                    .into_iter()
                    .map(|e| (e.event_id, Accepted::Hold(e))),
            );
            out.extend(
                b.user_established_events
                    .into_iter()
                    .map(|e| (e.event_id, Accepted::Established(Box::new(e)))),
            );
            out.extend(
                b.communication_ended_events
                    .into_iter()
                    .map(|e| (e.event_id, Accepted::Ended(e))),
            );
            out
        })
    };
    handle(&state, &headers, body, Endpoint::Conversations, typed).await
}

fn permission(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::RoutingStatus => PERMISSION_ROUTING_STATUS,
        Endpoint::Presence => PERMISSION_PRESENCE,
        Endpoint::Conversations => PERMISSION_CONVERSATION,
    }
}

/// The fault settings one request needs, copied out so the lock is held for no time.
struct InjectFaults {
    permitted: bool,
    requests_per_minute: Option<u32>,
    error_rate: f64,
    retryable_share: f64,
    lag: Duration,
    seed: u64,
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
    typed: Typed,
) -> Response {
    let stats = &state.stats.genesys_events;
    stats.requests.inc();
    stats.by_endpoint[endpoint.index()].requests.inc();
    // Read first: a client whose body is left unread may see a reset instead of the answer.
    let bytes = read_limited(headers, body, MAX_BODY_BYTES).await;

    let Some(token) = state.tokens.check_bearer(headers) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required: Authorization: Bearer <token from POST /oauth/token>",
        )
        .into_response();
    };
    let faults = {
        let f = state.faults.read();
        InjectFaults {
            permitted: holds(&f, &token.tenant, permission(endpoint)),
            requests_per_minute: f.genesys_requests_per_minute,
            error_rate: f.genesys_event_error_rate,
            retryable_share: f.genesys_event_retryable_share,
            lag: Duration::from_millis(f.genesys_processing_lag_ms),
            seed: f.seed,
        }
    };
    if !faults.permitted {
        stats.forbidden.inc();
        return ApiError::new(StatusCode::FORBIDDEN, missing_message(permission(endpoint)))
            .into_response();
    }
    let tenant = state.genesys.tenant(&token.tenant);
    let admitted = tenant.windows[endpoint.index()]
        .lock()
        .admit(Instant::now(), faults.requests_per_minute);
    let rate = match admitted {
        Ok(rate) => rate,
        Err(refused) => {
            stats.rate_limited.inc();
            return ApiError::too_many_requests(
                format!(
                    "Rate limit exceeded the maximum. Retry the request in [{}] seconds",
                    refused.retry_after_secs
                ),
                refused.retry_after_secs,
            )
            .with_rate(refused.rate)
            .into_response();
        }
    };
    let events = match checked(headers, bytes, typed) {
        Ok(events) => events,
        Err(e) => {
            if e.status() == StatusCode::BAD_REQUEST {
                stats.invalid.inc();
            }
            return e.with_rate(rate).into_response();
        }
    };
    let answer = process(state, &tenant, endpoint, events, &faults);
    let mut response = (StatusCode::OK, axum::Json(answer)).into_response();
    RateInfo::apply(rate, response.headers_mut());
    response
}

/// The 413, 415 and 400 checks, in that order.
fn checked(
    headers: &HeaderMap,
    bytes: Result<bytes::Bytes, BodyError>,
    typed: Typed,
) -> Result<Vec<(Uuid, Accepted)>, ApiError> {
    let bytes = match bytes {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than {limit} bytes; send at most 100 events per request"
                ),
            ));
        }
        Err(e @ BodyError::Read(_)) => return Err(ApiError::bad_request(e.to_string())),
    };
    require_json(headers)?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    typed(&value).map_err(refusal_error)
}

/// A 400 with the refusal's code and every violation in `details`.
fn refusal_error(r: Refusal) -> ApiError {
    let message = match r.code {
        RefusalCode::BadRequest => format!(
            "{} violation(s) of the request schema; no event was processed",
            r.violations.len()
        ),
        _ => r
            .violations
            .first()
            .map_or_else(|| r.code.as_str().to_owned(), |v| v.message.clone()),
    };
    let details = r
        .violations
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    ApiError::bad_request(message)
        .with_code(r.code.as_str())
        .with_details(details)
}

/// Decides each event against the ledger and the fault draws, hands the accepted ones to
/// the user state, and builds the 200 answer.
fn process(
    state: &AppState,
    tenant: &Tenant,
    endpoint: Endpoint,
    events: Vec<(Uuid, Accepted)>,
    faults: &InjectFaults,
) -> BatchEventResponse {
    let stats = &state.stats.genesys_events;
    let by_endpoint = &stats.by_endpoint[endpoint.index()];
    let mut errors = Vec::new();
    let mut accepted = Vec::with_capacity(events.len());
    {
        let mut ledger = tenant.ledger.lock();
        for (id, event) in events {
            let key = id.to_string();
            let refusal = match ledger.get(&id) {
                Some(Outcome::Accepted) => {
                    stats.duplicates.inc();
                    continue;
                }
                Some(Outcome::Refused) => Some(false),
                Some(Outcome::RetryableRefused) => None,
                None => (draw(faults.seed, "genesys_event_error", &key) < faults.error_rate).then(
                    || draw(faults.seed, "genesys_event_retryable", &key) < faults.retryable_share,
                ),
            };
            match refusal {
                Some(retryable) => {
                    ledger.record(
                        id,
                        if retryable {
                            Outcome::RetryableRefused
                        } else {
                            Outcome::Refused
                        },
                    );
                    stats.events_refused.inc();
                    by_endpoint.events_refused.inc();
                    if retryable {
                        stats.events_refused_retryable.inc();
                    }
                    errors.push(EventError {
                        event_id: key,
                        message: if retryable {
                            "the event could not be processed now (genesys_event_error_rate fault); send it again with the same eventId".into()
                        } else {
                            "the event was refused (genesys_event_error_rate fault) and must not be sent again".into()
                        },
                        retryable,
                    });
                }
                None => {
                    ledger.record(id, Outcome::Accepted);
                    stats.events_accepted.inc();
                    by_endpoint.events_accepted.inc();
                    accepted.push(event);
                }
            }
        }
    }
    tenant.states.apply(accepted, faults.lag);
    BatchEventResponse { errors }
}
