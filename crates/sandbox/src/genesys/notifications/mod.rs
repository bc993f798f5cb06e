//! The Genesys Cloud Notifications API (observation, PROTOCOL.md 9.2), per tenant (the
//! OAuth client id of the bearer token): channels, their subscriptions to user topics, the
//! socket of each channel, and the notifications the injected user state causes.
//!
//! # Layout
//! - [`rest`]: `POST/GET /api/v2/notifications/channels`, `HEAD .../channels/{id}`,
//!   `GET/POST/PUT/DELETE .../channels/{id}/subscriptions`.
//! - [`subscriptions`]: a subscription body read and each topic decided (pure), and the
//!   view permission each user topic needs.
//! - [`channels`]: one tenant's channel table: the 20-channel and 1,000-topic caps,
//!   eviction, expiry, which socket takes a channel's notifications.
//! - [`socket`]: the WebSocket at a channel's `connectUri` (`/channels/{id}`): heartbeats,
//!   ping/pong, `v2.system.socket_closing`, one socket per channel.
//! - [`outbox`]: a socket's bounded outgoing queue and its writer task.
//! - [`publish`]: one task per tenant that has created a channel, turning user-state
//!   changes into notifications on the subscribed channels' sockets.
//! - [`bodies`]: a change as a notification, and the metadata frames (pure).
//!
//! **Invariant:** the channel table is changed and published to under one lock per
//! tenant, so a socket that takes over a channel receives every notification published
//! after it did, and the one it replaced every notification before.

mod bodies;
mod channels;
mod outbox;
mod publish;
mod rest;
mod socket;
mod subscriptions;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head};
use gcx_protocol::genesys_notifications::CHANNELS_PATH;
use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::time::Instant;

use crate::AppState;
use crate::http_error::ApiError;
use crate::stats::GenesysNotificationStats;
use channels::Channels;
pub use subscriptions::{
    PERMISSION_VIEW_CONVERSATIONS, PERMISSION_VIEW_PRESENCE, PERMISSION_VIEW_ROUTING_STATUS,
    VIEW_PERMISSIONS,
};

/// Path of a channel's socket, followed by `/<channel id>`: `connectUri` is
/// `ws://<the request's Host><SOCKET_PATH>/<id>`.
pub const SOCKET_PATH: &str = "/channels";

/// One tenant's channels.
pub(crate) struct Hub {
    /// The OAuth client id whose channels these are.
    tenant: String,
    channels: Mutex<Channels>,
}

impl Hub {
    /// The channel table, after removing (and counting) the channels expired by now.
    fn lock(&self, stats: &GenesysNotificationStats) -> MutexGuard<'_, Channels> {
        let mut channels = self.channels.lock();
        let expired = channels.expire(Instant::now());
        stats.channels_expired.add(expired as u64);
        channels
    }
}

/// Every tenant's channels.
#[derive(Default)]
pub struct Notifications {
    /// One hub per tenant that has created a channel; tenants are OAuth clients, a
    /// handful, so the map is never pruned.
    hubs: RwLock<HashMap<String, Arc<Hub>>>,
    /// Source of socket ids (which socket of a channel is the current one).
    next_socket: AtomicU64,
}

impl Notifications {
    pub fn new() -> Notifications {
        Notifications::default()
    }

    /// The tenant's hub, if it has created a channel.
    fn hub(&self, tenant: &str) -> Option<Arc<Hub>> {
        self.hubs.read().get(tenant).cloned()
    }

    /// The tenant's hub, created with its publisher on the tenant's first channel.
    fn hub_or_start(&self, state: &Arc<AppState>, tenant: &str) -> Arc<Hub> {
        if let Some(hub) = self.hub(tenant) {
            return hub;
        }
        let (hub, created) = {
            let mut hubs = self.hubs.write();
            match hubs.get(tenant) {
                Some(hub) => (hub.clone(), false),
                None => {
                    let hub = Arc::new(Hub {
                        tenant: tenant.to_owned(),
                        channels: Mutex::new(Channels::default()),
                    });
                    hubs.insert(tenant.to_owned(), hub.clone());
                    (hub, true)
                }
            }
        };
        if created {
            publish::start(state, hub.clone());
        }
        hub
    }

    /// The hub holding channel `id`, whichever tenant's it is (a socket carries no token:
    /// its channel id is what it has).
    fn hub_of_channel(&self, id: &str, stats: &GenesysNotificationStats) -> Option<Arc<Hub>> {
        let hubs: Vec<Arc<Hub>> = self.hubs.read().values().cloned().collect();
        hubs.into_iter().find(|hub| hub.lock(stats).contains(id))
    }

    fn next_socket_id(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }
}

/// A 405 naming the methods the path takes.
fn not_allowed(uri: &Uri, methods: &str) -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{} takes {methods} only", uri.path()),
    )
    .into_response()
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            CHANNELS_PATH,
            get(rest::list_channels)
                .post(rest::create_channel)
                .fallback(|uri: Uri| async move { not_allowed(&uri, "GET and POST") }),
        )
        .route(
            &format!("{CHANNELS_PATH}/{{id}}"),
            head(rest::verify_channel)
                .fallback(|uri: Uri| async move { not_allowed(&uri, "HEAD") }),
        )
        .route(
            &format!("{CHANNELS_PATH}/{{id}}/subscriptions"),
            get(rest::get_subscriptions)
                .post(rest::post_subscriptions)
                .put(rest::put_subscriptions)
                .delete(rest::delete_subscriptions)
                .fallback(|uri: Uri| async move { not_allowed(&uri, "GET, POST, PUT and DELETE") }),
        )
        .route(
            &format!("{SOCKET_PATH}/{{id}}"),
            get(socket::upgrade)
                .fallback(|uri: Uri| async move { not_allowed(&uri, "GET (a WebSocket upgrade)") }),
        )
}
