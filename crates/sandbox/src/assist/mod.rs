//! The assist engine (PROTOCOL.md section 3): the WebSocket upgrade on
//! `/api/v2/agentassist/stream`, handshake and close codes, sends with idempotency and a
//! per-tenant concurrency limit across connections, results, heartbeats, reauth,
//! `closing` notices, `capacity` pushes, and the assist faults of section 7.
//!
//! # Layout
//! - [`connection`]: one socket: handshake, reader loop, per-connection timers.
//! - [`outbox`]: a connection's outgoing frame queue and its single writer task.
//! - [`frame`]: a client's text frame read into what it asks for (pure).
//! - [`admission`]: one `send` from validation to `ack` or refusal.
//! - [`execution`]: running an acked action and delivering its `result`.
//! - [`clock`]: the engine's clock, ending actions when their latency is up (sub-ms).
//! - [`tenant`]: per-tenant state shared by the tenant's connections.
//! - [`idempotency`]: the capped, windowed store of acked ids and their results.
//! - [`send_rate`]: the per-tenant token bucket behind `sends_per_second`.
//! - [`latency`]: seeded lognormal engine latency.
//! - [`outputs`]: deterministic outputs per action type.
//!
//! **Invariant:** a slot is taken when an `ack` is queued and released only when the
//! action's `result` is produced, under the tenant's lock, whatever happens to sockets.

mod admission;
mod clock;
mod connection;
mod execution;
pub(crate) mod frame;
mod idempotency;
mod latency;
mod outbox;
mod outputs;
mod send_rate;
mod tenant;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use gcx_protocol::Catalogue;
use gcx_protocol::assist::{MAX_FRAME_BYTES, STREAM_PATH};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::options::SandboxOptions;
use idempotency::ConnId;
use tenant::Tenant;

/// Engine state shared by every connection.
pub struct Engine {
    /// What every `send` is validated against.
    catalogue: Catalogue,
    /// Per-tenant state, made on a tenant's first connection. Tenants are OAuth clients,
    /// a handful, so the map never needs eviction.
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// How many acked correlationIds each tenant remembers (`--idempotency-cap`).
    idempotency_cap: usize,
    /// Cancelled by [`Engine::shutdown`]: sockets close with 1001, pending actions stop.
    stopping: CancellationToken,
    /// Source of connection ids (keys of a tenant's open connections).
    next_connection: AtomicU64,
    /// Wakes actions at their due time; `None` if its thread could not start, and then
    /// tokio's millisecond timer does it.
    clock: Option<clock::Clock>,
    /// Wake-ups of every connection's reader loop (a frame, a timer, a fault change): an
    /// idle socket wakes for its heartbeats only, and tests check that it does.
    connection_wakes: AtomicU64,
}

impl Engine {
    pub fn new(options: &SandboxOptions) -> Engine {
        Engine {
            catalogue: Catalogue::builtin(),
            tenants: RwLock::new(HashMap::new()),
            idempotency_cap: options.idempotency_cap,
            stopping: CancellationToken::new(),
            next_connection: AtomicU64::new(1),
            connection_wakes: AtomicU64::new(0),
            clock: clock::Clock::start()
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no engine clock thread; action latencies are rounded up to tokio's 1 ms tick");
                })
                .ok(),
        }
    }

    /// Nothing runs in the background but the engine clock's thread: every other timer
    /// lives with its connection (heartbeat, token expiry, `closing`).
    pub fn start_background(&self, state: Arc<AppState>) {
        let _ = state;
    }

    /// Closes every socket with 1001 and stops pending actions (graceful shutdown).
    pub fn shutdown(&self) {
        self.stopping.cancel();
    }

    pub(crate) fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub(crate) fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Runs `job` at `due`: on the clock's thread, or, without one, in a task woken by
    /// tokio's timer. Dropped without running when the engine stops first.
    pub(crate) fn run_at(&self, due: std::time::Instant, job: clock::Job) {
        if let Some(clock) = &self.clock {
            clock.run_at(due, job);
            return;
        }
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => job(),
                () = stopping.cancelled() => {}
            }
        });
    }

    /// How often connections' reader loops have woken, all connections together.
    pub fn connection_wakes(&self) -> u64 {
        self.connection_wakes.load(Ordering::Relaxed)
    }

    pub(crate) fn count_connection_wake(&self) {
        self.connection_wakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn next_connection_id(&self) -> ConnId {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// The tenant's shared state, made on first use.
    pub(crate) fn tenant(&self, name: &str) -> Arc<Tenant> {
        if let Some(t) = self.tenants.read().get(name) {
            return t.clone();
        }
        self.tenants
            .write()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Tenant::new(self.idempotency_cap)))
            .clone()
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(STREAM_PATH, get(upgrade))
}

/// `GET /api/v2/agentassist/stream`: the upgrade. Frames and messages over 1 MiB fail the
/// read, and the connection closes with 1009.
async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    ws.max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| connection::run(state, socket))
}
