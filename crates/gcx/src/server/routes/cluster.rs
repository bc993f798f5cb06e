//! `GET /v1/cluster`: the instances serving this API, which one dispatches under which
//! term, and each one's actions in flight. On PostgreSQL it is read from the database,
//! so every member answers the same; alone on SQLite, the one instance is the whole
//! cluster.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cluster::LEASE;
use crate::server::error::{ApiError, ErrorBody, store_error};
use crate::server::state::AppState;

/// How the instances serving this API share the work.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `cluster` (instances sharing a PostgreSQL database) or `single` (SQLite).
    pub mode: String,
    /// The instance that answered.
    pub instance: String,
    /// The instance holding the dispatch lease, if one holds a live one.
    pub leader: Option<String>,
    /// The lease's term: it grows by one each time an instance takes over.
    pub term: i64,
    /// What is left of the leader's lease.
    pub lease_remaining_ms: Option<u64>,
    /// Triggers accepted and not yet taken by the leader.
    pub queued: u64,
    pub members: Vec<MemberView>,
}

/// One instance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// `hostname:pid`, as in audit records.
    pub instance: String,
    /// Where its API answers.
    pub address: String,
    pub started_at: DateTime<Utc>,
    /// Since its last heartbeat (every second).
    pub heartbeat_age_ms: u64,
    /// Heard from within the lease time.
    pub alive: bool,
    /// `leader` (dispatches) or `follower` (takes triggers, dispatches none).
    pub role: String,
    /// Actions between send and result (0 unless leader).
    pub in_flight: u32,
    /// Admitted, unfinished triggers in its dispatcher.
    pub pending: u64,
    /// The engine's concurrency limit its dispatcher holds.
    pub limit: u32,
    pub stream_connected: bool,
}

/// The cluster as the database holds it.
#[utoipa::path(
    get,
    operation_id = "cluster",
    path = "/v1/cluster",
    tag = "operations",
    responses(
        (status = 200, description = "The members, the leader and each one's actions in flight", body = ClusterView),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 429, description = "Over this key's rate limit", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(State(state): State<Arc<AppState>>) -> Result<Json<ClusterView>, ApiError> {
    let Some(cluster) = &state.cluster else {
        return Ok(Json(single(&state)));
    };
    let (members, lease, queued) = cluster.view().await.map_err(store_error)?;
    let leader = lease
        .remaining
        .is_some()
        .then(|| lease.instance.clone())
        .flatten();
    Ok(Json(ClusterView {
        mode: "cluster".into(),
        instance: cluster.member().instance.clone(),
        term: lease.term,
        lease_remaining_ms: lease.remaining.map(|d| millis(d.as_millis())),
        queued,
        members: members
            .into_iter()
            .map(|m| MemberView {
                role: if Some(&m.instance) == leader.as_ref() {
                    "leader".into()
                } else {
                    "follower".into()
                },
                alive: m.heartbeat_age < LEASE,
                heartbeat_age_ms: millis(m.heartbeat_age.as_millis()),
                instance: m.instance,
                address: m.address,
                started_at: m.started_at,
                in_flight: m.in_flight,
                pending: m.pending,
                limit: m.limit,
                stream_connected: m.stream_connected,
            })
            .collect(),
        leader,
    }))
}

/// One instance alone on its store.
fn single(state: &AppState) -> ClusterView {
    let instance = crate::instance::id();
    let stats = state.pipeline.dispatch_stats().unwrap_or_default();
    ClusterView {
        mode: "single".into(),
        leader: Some(instance.clone()),
        term: 0,
        lease_remaining_ms: None,
        queued: 0,
        members: vec![MemberView {
            instance: instance.clone(),
            address: state.address.clone(),
            started_at: state.started_at,
            heartbeat_age_ms: 0,
            alive: true,
            role: "leader".into(),
            in_flight: stats.in_flight,
            pending: stats.pending,
            limit: stats.limit,
            stream_connected: state.pipeline.stream_connected(),
        }],
        instance,
    }
}

fn millis(ms: u128) -> u64 {
    u64::try_from(ms).unwrap_or(u64::MAX)
}
