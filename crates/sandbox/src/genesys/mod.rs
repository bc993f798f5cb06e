//! The Genesys Cloud Events API (injection, PROTOCOL.md 9.1), the state it feeds, and
//! the Notifications API (observation, 9.2) that reports that state's changes.
//!
//! # Layout
//! - [`inject`]: the three `POST /api/v2/events/...` endpoints, checks in order.
//! - [`ledger`]: each tenant's eventIds and outcomes (idempotency, retryable re-sends).
//! - [`permissions`]: which injection permissions a client holds.
//! - [`presence`]: `GET /api/v2/presence/definitions` and the system presence ids.
//! - [`user_state`]: per-user routing status, presence and communications, applied after
//!   the processing lag, with a broadcast of changes.
//! - [`notifications`]: channels, subscriptions and sockets of the Notifications API,
//!   publishing the broadcast's changes to subscribed channels.

mod inject;
pub(crate) mod ledger;
pub mod notifications;
mod permissions;
pub mod presence;
pub mod user_state;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use gcx_protocol::genesys_events::{
    CONVERSATIONS_PATH, PRESENCE_DEFINITIONS_PATH, PRESENCE_PATH, ROUTING_STATUS_PATH,
};
use parking_lot::{Mutex, RwLock};

use crate::AppState;
use crate::events::rate::RateWindow;
use crate::http_error::method_not_allowed;
use crate::options::SandboxOptions;
use ledger::Ledger;
use user_state::UserStates;

/// The three injection endpoints, for per-endpoint windows and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    RoutingStatus,
    Presence,
    Conversations,
}

impl Endpoint {
    fn index(self) -> usize {
        self as usize
    }
}

/// One tenant's injection state.
pub(crate) struct Tenant {
    ledger: Mutex<Ledger>,
    /// One per-minute window per endpoint (`genesys_requests_per_minute`).
    windows: [Mutex<RateWindow>; 3],
    states: Arc<UserStates>,
}

/// Every tenant's injected events and user state.
pub struct GenesysEvents {
    /// One per tenant (OAuth client id): eventIds and users are the tenant's own.
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Most eventIds remembered per tenant.
    event_cap: usize,
    /// Most users and communications kept per tenant.
    state_cap: usize,
}

impl GenesysEvents {
    pub fn new(options: &SandboxOptions) -> GenesysEvents {
        GenesysEvents {
            tenants: RwLock::new(HashMap::new()),
            event_cap: options.genesys_event_cap.max(1),
            state_cap: options.genesys_state_cap.max(1),
        }
    }

    /// The tenant's state, created on first use (inside a tokio runtime this starts its
    /// lag worker).
    pub(crate) fn tenant(&self, tenant: &str) -> Arc<Tenant> {
        if let Some(t) = self.tenants.read().get(tenant) {
            return t.clone();
        }
        self.tenants
            .write()
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(Tenant {
                    ledger: Mutex::new(Ledger::new(self.event_cap)),
                    windows: Default::default(),
                    states: UserStates::new(self.state_cap),
                })
            })
            .clone()
    }

    /// The user state of `tenant` (the OAuth client id); created empty if the tenant has
    /// sent nothing yet.
    pub fn user_states(&self, tenant: &str) -> Arc<UserStates> {
        self.tenant(tenant).states.clone()
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            ROUTING_STATUS_PATH,
            post(inject::post_routing_status).fallback(method_not_allowed),
        )
        .route(
            PRESENCE_PATH,
            post(inject::post_presence).fallback(method_not_allowed),
        )
        .route(
            CONVERSATIONS_PATH,
            post(inject::post_conversations).fallback(method_not_allowed),
        )
        .route(PRESENCE_DEFINITIONS_PATH, get(presence::get_definitions))
        .merge(notifications::routes())
}
