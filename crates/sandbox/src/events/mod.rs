//! The interactions events endpoint and query-back (PROTOCOL.md sections 4, 4.1, 4.2).
//!
//! # Layout
//! - [`ingest`]: `POST /api/v2/interactions/events`, its checks in the documented order.
//! - [`query`]: `POST /api/v2/analytics/interactions/events/query`, with paging.
//! - [`store`]: one tenant's events, agent states, processing queue and indexes.
//! - [`rate`]: the per-minute request window behind 429s and `inin-ratelimit-*`.
//! - [`batch`]: body -> events (a fast path for valid batches; the protocol validator
//!   for everything else).
//! - [`body`]: reading a body under a limit; content type; counting events cheaply.

pub(crate) mod batch;
pub(crate) mod body;
mod ingest;
pub(crate) mod query;
pub(crate) mod rate;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use gcx_protocol::events::{EVENTS_PATH, MAX_QUERY_EVENTS, QUERY_PATH};
use parking_lot::{Mutex, RwLock};

use crate::AppState;
use crate::http_error::method_not_allowed;
use crate::options::SandboxOptions;
use rate::RateWindow;
use store::TenantEvents;

/// Every tenant's events, and the request window other REST answers report.
pub struct EventStore {
    /// One store per tenant (OAuth client id): a tenant sees only its own events, and its
    /// sequenceIds, agents and cap are its own.
    tenants: RwLock<HashMap<String, Arc<TenantEvents>>>,
    /// Most events kept per tenant for query-back and sequenceId idempotency.
    cap: usize,
    /// Most events per query-back answer (10 000 unless a test asks for less).
    page_size: usize,
    /// The per-minute count `inin-ratelimit-count` shows on answers that have no window of
    /// their own (OAuth, query-back, errors).
    pub(crate) rest_window: Mutex<RateWindow>,
}

impl EventStore {
    pub fn new(options: &SandboxOptions) -> EventStore {
        EventStore {
            tenants: RwLock::new(HashMap::new()),
            cap: options.query_cap.max(1),
            page_size: options.query_page_size.clamp(1, MAX_QUERY_EVENTS),
            rest_window: Mutex::new(RateWindow::default()),
        }
    }

    /// The tenant's store, created on first use.
    fn tenant(&self, tenant: &str) -> Arc<TenantEvents> {
        if let Some(t) = self.tenants.read().get(tenant) {
            return t.clone();
        }
        self.tenants
            .write()
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(TenantEvents::new(self.cap)))
            .clone()
    }

    /// The tenant's store if it has sent anything.
    fn existing(&self, tenant: &str) -> Option<Arc<TenantEvents>> {
        self.tenants.read().get(tenant).cloned()
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            EVENTS_PATH,
            post(ingest::post_events).fallback(method_not_allowed),
        )
        .route(
            QUERY_PATH,
            post(query::post_query).fallback(method_not_allowed),
        )
}
