//! `gcx serve`: the trigger service as a long-running, secured HTTP service.
//!
//! # Layout
//! - [`service`]: builds and stops the whole service (store, dispatcher, delivery worker,
//!   HTTP) in the order the lifecycle needs: resume on start, drain on stop.
//! - [`state`]: what every handler shares ([`AppState`]).
//! - [`pipeline`]: the seam to the trigger pipeline ([`TriggerPipeline`]).
//! - [`routes`]: the `/v1` routes, one file per resource.
//! - [`health`]: `/healthz`, `/readyz`.
//! - [`prometheus`]: `/metrics` and the process-wide recorder.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`, `docs/openapi.json`).
//! - [`auth`] and [`api_keys`]: bearer API keys (hashed, constant-time), keys in query
//!   strings refused; [`auth_failures`]: failed authentications throttled per client
//!   address and summarized in the log; [`rate_limit`]: one token bucket per key.
//! - [`body`]: request bodies: content coding (gzip), size after inflating, read timeout,
//!   content type.
//! - [`connections`]: the accept loop: connection cap, header-read and idle timeouts.
//! - [`error`]: the one JSON error shape.
//! - [`tls`]: the optional rustls listener.
//!
//! [`run`] takes its listener and its stop signal from outside (as mini-redis does), so
//! tests bind `127.0.0.1:0` and drive the real thing.

pub mod api_keys;
pub mod auth;
pub mod auth_failures;
pub mod body;
pub mod connections;
pub mod error;
pub mod health;
pub mod openapi;
pub mod pipeline;
pub mod prometheus;
pub mod rate_limit;
pub mod retention;
pub mod routes;
pub mod service;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::Listener;
use tower_http::decompression::RequestDecompressionLayer;

use connections::ConnectionLimits;

pub use error::ApiError;
pub use pipeline::{PipelineError, Submitted, TriggerPipeline};
pub use state::AppState;

/// The router of one `gcx serve`.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/triggers", post(routes::triggers::post))
        .route("/v1/triggers/{correlation_id}", get(routes::triggers::get))
        .route("/v1/metrics/audit", get(routes::metrics_audit::get))
        .route("/v1/cluster", get(routes::cluster::get))
        .route("/v1/outbox", get(routes::outbox::list))
        .route("/v1/outbox/replay", post(routes::outbox::replay))
        // Outermost last: the key check, then the content coding, inflating, reading.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            body::read_whole,
        ))
        .route_layer(RequestDecompressionLayer::new().gzip(true))
        .route_layer(middleware::from_fn(body::check_encoding))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let mut metrics = Router::new().route("/metrics", get(prometheus::render));
    if state.config.metrics_require_key {
        metrics = metrics.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    }
    Router::new()
        .merge(v1)
        .merge(metrics)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::refuse_key_in_query,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes open requests.
pub async fn run<L>(
    listener: L,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let limits = ConnectionLimits {
        max_connections: state.config.max_connections,
        header_read_timeout: state.config.header_read_timeout,
    };
    connections::serve(listener, router(state), limits, shutdown).await
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; see /openapi.json for the routes this service has",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {}; see /openapi.json",
            request.uri().path(),
            request.method()
        ),
    )
}

/// Bounds every request by `serve.request_timeout`; a request over it gets 503 (its
/// triggers may or may not have been accepted, and re-sending them is safe).
async fn request_timeout(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request took longer than serve.request_timeout ({}); re-sending the same triggers is safe",
                humantime::format_duration(limit)
            ),
        )
        .with_retry_after(Duration::from_secs(1))
        .into_response(),
    }
}

/// One debug line per request: method, path (never the query: it could hold a secret
/// someone put there), status, duration.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}
