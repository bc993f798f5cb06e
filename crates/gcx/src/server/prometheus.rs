//! `/metrics`: the process-wide `metrics` recorder, rendered as Prometheus text.
//!
//! The dispatcher, the stream, the token provider and the delivery worker record with the
//! `metrics` macros wherever they run; this module installs the recorder they record into
//! (once per process), gives histograms real buckets (without them the exporter writes
//! summaries, which cannot be aggregated across instances), runs the exporter's upkeep,
//! and sets the gauges that are read from the store at scrape time.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::error::ApiError;
use super::state::AppState;

/// Bucket bounds (seconds) for every histogram: 0.5 ms to 60 s, roughly x2.5 apart, which
/// covers slot waits, send->ack and send->result from an idle engine to a timeout.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How often the exporter's upkeep runs (drains histogram buffers; see the crate docs).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs gcx's Prometheus recorder as the process's `metrics` recorder, the first
/// time it is called; later calls return the same handle. `None` when another recorder
/// was installed first (then `/metrics` answers 503 naming why).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS_SECONDS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "prometheus buckets refused");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    crate::assist::metrics::describe();
                    crate::auth::describe_metrics();
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics is off");
                    None
                }
            }
        })
        .clone()
}

/// Runs `run_upkeep` every [`UPKEEP_INTERVAL`] until the returned task is aborted.
pub fn spawn_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "gcx_outbox_messages",
        "Webhook outbox messages by status (pending = backlog, delivered, dead), read from the store at scrape time"
    );
    describe_gauge!(
        "gcx_serve_draining",
        "1 while gcx serve is shutting down (intake closed)"
    );
    describe_gauge!(
        "gcx_serve_stream_connected",
        "1 when the assist stream is connected (in a cluster: the leader's)"
    );
    crate::cluster::describe_metrics();
    describe_counter!(
        "gcx_serve_triggers_received_total",
        "Triggers received over HTTP, by outcome (accepted, duplicate, invalid)"
    );
    describe_counter!(
        "gcx_serve_rate_limited_total",
        "Requests refused by the per-key rate limit"
    );
    describe_counter!(
        "gcx_store_pruned_total",
        "Rows deleted by store.keep_finished, by kind (triggers, webhooks)"
    );
}

/// Prometheus metrics.
///
/// Triggers by state, in-flight, slot wait, send->result, reconnects, token refreshes,
/// outbox backlog and outcomes.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "No or a wrong API key (only when serve.metrics_require_key is set)", body = super::error::ErrorBody),
        (status = 503, description = "Another metrics recorder owns this process", body = super::error::ErrorBody),
    )
)]
pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "another metrics recorder was installed in this process before gcx serve started, so /metrics has nothing to render",
        )
        .into_response();
    };
    match state.store.outbox_counts().await {
        Ok(counts) => {
            for (status, n) in [
                ("pending", counts.pending),
                ("delivered", counts.delivered),
                ("dead", counts.dead),
            ] {
                metrics::gauge!("gcx_outbox_messages", "status" => status).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "outbox counts unavailable for /metrics"),
    }
    metrics::gauge!("gcx_serve_stream_connected").set(if state.pipeline.stream_connected() {
        1.0
    } else {
        0.0
    });
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
