//! `/healthz` (the process answers) and `/readyz` (it can take triggers: the store takes
//! writes, the assist stream is connected, and intake is open). Both are open: load
//! balancers and orchestrators call them without a key.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::store::{Store, WriteBatch};

/// How long the readiness probe waits for the store to confirm a write.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz` and a ready `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `ok` or `ready`.
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = HealthBody))
)]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

/// Readiness: the store takes writes, the assist stream is connected and intake is open.
#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: store writable, stream connected, intake open", body = HealthBody),
        (status = 503, description = "Not ready; `details.checks` says which condition fails", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let intake_open = !state.is_draining();
    let stream = state.pipeline.stream_connected();
    let store = store_writable(&state.store).await;
    if intake_open && stream && store.is_ok() {
        return Json(HealthBody {
            status: "ready".into(),
        })
        .into_response();
    }
    let mut reasons = Vec::new();
    if !intake_open {
        reasons.push("the service is shutting down".to_owned());
    }
    if !stream {
        reasons.push(match state.cluster {
            Some(_) => {
                "no instance of the cluster dispatches (no leader with a connected assist stream)"
                    .to_owned()
            }
            None => "the assist stream is not connected".to_owned(),
        });
    }
    if let Err(e) = &store {
        reasons.push(format!("the store does not take writes ({e})"));
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!("not ready: {}", reasons.join("; ")),
    )
    .with_details(json!({
        "checks": {
            "intake": if intake_open { "open" } else { "draining" },
            "stream": if stream { "connected" } else { "disconnected" },
            "store": if store.is_ok() { "writable" } else { "failing" },
        }
    }))
    .into_response()
}

/// Whether the store confirms a write (an empty batch through group commit) in time.
async fn store_writable(store: &Store) -> Result<(), String> {
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.commit(WriteBatch::default())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(STORE_PROBE_TIMEOUT)
        )),
    }
}
