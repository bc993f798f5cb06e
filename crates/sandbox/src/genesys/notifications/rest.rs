//! The REST side of the Notifications API (PROTOCOL.md 9.2), for the bearer token's tenant:
//!
//! - `POST /api/v2/notifications/channels` (no body) -> 200 `Channel {id, connectUri,
//!   expires}`; a 21st channel removes one first (see [`super::channels`]).
//! - `GET /api/v2/notifications/channels` -> the tenant's channels, oldest first.
//! - `HEAD /api/v2/notifications/channels/{id}` -> 200 while the channel exists, else 404.
//! - `GET/POST/PUT/DELETE .../channels/{id}/subscriptions`: the channel's topics; add;
//!   replace; remove all (204). POST and PUT answer the channel's topics, `Permitted`, then
//!   the request's `Rejected` ones.
//!
//! Checks in order: 401 (bearer token), 404 (no such channel for this tenant), 413 (body
//! over 1 MiB), 415 (not JSON), 400 (every violation in `details`), 400
//! `CODE_TOO_MANY_TOPICS` (past 1,000 topics; nothing changed). A subscription change
//! renews the channel's 24 h expiry.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gcx_protocol::genesys_notifications::{
    CODE_TOO_MANY_TOPICS, ChannelEntityListing, ChannelTopicEntityListing,
};
use tokio::time::Instant;

use super::channels::{Change, ChangeError};
use super::subscriptions::{self, BadBody};
use super::{Hub, SOCKET_PATH};
use crate::AppState;
use crate::events::body::{BodyError, read_limited, require_json};
use crate::http_error::{ApiError, new_uuid};
use crate::oauth::TokenInfo;

/// Most bytes in a subscription body (1,000 topics take about 60 KiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The bearer token's owner, or the 401.
fn authorized(state: &AppState, headers: &HeaderMap) -> Result<TokenInfo, ApiError> {
    state.tokens.check_bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required: Authorization: Bearer <token from POST /oauth/token>",
        )
    })
}

fn no_channel(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no channel {id} for this client: it never existed, expired, or was removed for a newer one; create one with POST {}",
            gcx_protocol::genesys_notifications::CHANNELS_PATH
        ),
    )
}

/// The caller's token and the hub holding its channel `id`: the 401, then the 404.
fn client_channel(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(TokenInfo, Arc<Hub>), ApiError> {
    let token = authorized(state, headers)?;
    let hub = channel_hub(state, &token.tenant, id)?;
    Ok((token, hub))
}

/// The tenant's hub if it holds channel `id`, or the 404.
fn channel_hub(state: &AppState, tenant: &str, id: &str) -> Result<Arc<Hub>, ApiError> {
    let stats = &state.stats.genesys_notifications;
    state
        .notifications
        .hub(tenant)
        .filter(|hub| hub.lock(stats).contains(id))
        .ok_or_else(|| no_channel(id))
}

/// `ws://<Host>/channels/<id>`: the socket on the sandbox's own port, as the client
/// reached it.
fn connect_uri(headers: &HeaderMap, id: &str) -> Result<String, ApiError> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .filter(|a| !a.as_str().contains('@'))
        .map(|host| format!("ws://{host}{SOCKET_PATH}/{id}"))
        .ok_or_else(|| {
            ApiError::bad_request(
                "the request has no usable Host header; a channel's connectUri is built from it",
            )
        })
}

pub(crate) async fn create_channel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = authorized(&state, &headers)?;
    let id = new_uuid().to_string();
    let uri = connect_uri(&headers, &id)?;
    let stats = &state.stats.genesys_notifications;
    let hub = state.notifications.hub_or_start(&state, &token.tenant);
    let (channel, evicted) = hub.lock(stats).create(id, uri, Instant::now(), Utc::now());
    stats.channels_created.inc();
    if evicted.is_some() {
        stats.channels_evicted.inc();
    }
    Ok((StatusCode::OK, axum::Json(channel)).into_response())
}

pub(crate) async fn list_channels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = authorized(&state, &headers)?;
    let stats = &state.stats.genesys_notifications;
    let entities = state
        .notifications
        .hub(&token.tenant)
        .map(|hub| hub.lock(stats).list())
        .unwrap_or_default();
    Ok(axum::Json(ChannelEntityListing { entities }).into_response())
}

pub(crate) async fn verify_channel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    client_channel(&state, &headers, &id)?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn get_subscriptions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, hub) = client_channel(&state, &headers, &id)?;
    let topics = hub.lock(&state.stats.genesys_notifications).topics(&id);
    let topics = topics.ok_or_else(|| no_channel(&id))?;
    Ok(axum::Json(ChannelTopicEntityListing {
        entities: topics.iter().map(subscriptions::permitted).collect(),
    })
    .into_response())
}

pub(crate) async fn delete_subscriptions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, hub) = client_channel(&state, &headers, &id)?;
    let changed = hub.lock(&state.stats.genesys_notifications).change(
        &id,
        Change::Clear,
        Instant::now(),
        Utc::now(),
    );
    changed.map_err(|_| no_channel(&id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn post_subscriptions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    change_subscriptions(&state, &id, &headers, body, Change::Add).await
}

pub(crate) async fn put_subscriptions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    change_subscriptions(&state, &id, &headers, body, Change::Replace).await
}

async fn change_subscriptions(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    change: fn(Vec<gcx_protocol::genesys_notifications::UserTopic>) -> Change,
) -> Result<Response, ApiError> {
    // Read first: a client whose body is left unread may see a reset instead of the answer.
    let bytes = read_limited(headers, body, MAX_BODY_BYTES).await;
    let (token, hub) = client_channel(state, headers, id)?;
    let requested = checked(headers, bytes)?;
    let withheld = state
        .faults
        .read()
        .genesys_withheld_permissions
        .get(&token.tenant)
        .cloned()
        .unwrap_or_default();
    let decided = subscriptions::decide(requested, &withheld);
    let permitted = decided.permitted.len();
    let stats = &state.stats.genesys_notifications;
    let changed = hub
        .lock(stats)
        .change(id, change(decided.permitted), Instant::now(), Utc::now());
    let topics = changed.map_err(|e| match e {
        ChangeError::NotFound => no_channel(id),
        e @ ChangeError::TooManyTopics { .. } => {
            ApiError::bad_request(e.to_string()).with_code(CODE_TOO_MANY_TOPICS)
        }
    })?;
    stats.topics_permitted.add(permitted as u64);
    stats.topics_rejected.add(decided.rejected.len() as u64);
    let entities = topics
        .iter()
        .map(subscriptions::permitted)
        .chain(decided.rejected)
        .collect();
    Ok(axum::Json(ChannelTopicEntityListing { entities }).into_response())
}

/// The 413, 415 and 400 checks, in that order.
fn checked(
    headers: &HeaderMap,
    bytes: Result<bytes::Bytes, BodyError>,
) -> Result<Vec<String>, ApiError> {
    let bytes = match bytes {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        Err(e @ BodyError::Read(_)) => return Err(ApiError::bad_request(e.to_string())),
    };
    require_json(headers)?;
    subscriptions::read(&bytes).map_err(|bad| match bad {
        BadBody::NotJson(e) => ApiError::bad_request(format!(
            "the body is not JSON ({e}); expected an array of {{\"id\": \"<topic>\"}}"
        )),
        BadBody::Violations(violations) => {
            let details = violations
                .iter()
                .filter_map(|v| serde_json::to_value(v).ok())
                .collect();
            ApiError::bad_request(format!(
                "{} violation(s) of the request schema; no subscription was changed",
                violations.len()
            ))
            .with_details(details)
        }
    })
}
