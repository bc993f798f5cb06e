//! # gcx-sandbox: a local emulator of everything gcx talks to
//!
//! One HTTP port serves OAuth (PROTOCOL.md section 2), the Agent Assist stream (section 3,
//! the WebSocket upgrade on `/api/v2/agentassist/stream`), the interactions events API and
//! query-back (sections 4, 4.1, 4.2), CRM and QA receivers, and the control API
//! (section 7). It depends on `gcx-protocol` only, never on `gcx`, so it stays an
//! independent peer of the client it tests.
//!
//! # Layout
//! - [`options`]: what a sandbox is started with (also the `gcx sandbox` flags).
//! - [`faults`]: fault settings and the seeded draws that make faulty runs repeatable.
//! - [`stats`]: the counters of `/sandbox/stats`.
//! - `connections`: the accept loop: connection cap, header, idle and body timeouts.
//! - [`oauth`]: the token endpoint and the live tokens.
//! - `assist`: the assist engine (handshake, sends, idempotency, concurrency, results).
//! - `events`: the events endpoint, per-agent transition checking, query-back.
//! - [`genesys`]: the Genesys Cloud Events API (injection, section 9.1), presence
//!   definitions, the per-user state injected events build, and the Notifications API
//!   (section 9.2: channels, subscriptions, the socket at `/channels/{id}`).
//! - `receivers`: the CRM and QA webhook receivers.
//! - `control`: `/sandbox/stats` and `/sandbox/faults`.
//! - `http_error`: Genesys-style error bodies and the headers every REST answer carries.
//!
//! Start one in-process with [`Sandbox::start`] (tests, the demo, benchmarks), or run
//! [`serve`] with your own listener and shutdown signal.

pub mod faults;
pub mod genesys;
pub mod oauth;
pub mod options;
pub mod stats;

mod assist;
mod connections;
mod control;
mod events;
mod http_error;
mod receivers;
mod ws_burst;

#[doc(hidden)]
pub mod fuzzing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

pub use faults::{Faults, LatencySpec};
pub use oauth::ClientSpec;
pub use options::{SandboxArgs, SandboxOptions};

/// State shared by every handler of one sandbox.
pub struct AppState {
    /// What the sandbox was started with (clients, secrets, caps).
    pub options: SandboxOptions,
    /// Current fault settings; `PUT /sandbox/faults` replaces them.
    pub faults: RwLock<Faults>,
    /// Tells live connections that the fault settings changed (capacity pushes, closing).
    pub faults_changed: watch::Sender<Faults>,
    pub stats: stats::Stats,
    pub tokens: oauth::Tokens,
    pub engine: assist::Engine,
    pub events: events::EventStore,
    /// Events API injection: eventId ledgers and per-user state, per tenant.
    pub genesys: genesys::GenesysEvents,
    /// Notifications API channels and their sockets, per tenant.
    pub notifications: genesys::notifications::Notifications,
    pub receivers: receivers::Receivers,
}

impl AppState {
    pub fn new(options: SandboxOptions) -> Arc<AppState> {
        let faults = options.faults.clone();
        let (faults_changed, _) = watch::channel(faults.clone());
        Arc::new(AppState {
            engine: assist::Engine::new(&options),
            events: events::EventStore::new(&options),
            genesys: genesys::GenesysEvents::new(&options),
            notifications: genesys::notifications::Notifications::new(),
            receivers: receivers::Receivers::default(),
            faults: RwLock::new(faults),
            faults_changed,
            stats: stats::Stats::default(),
            tokens: oauth::Tokens::default(),
            options,
        })
    }

    /// Replaces the fault settings and tells every live connection.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.write() = faults.clone();
        self.faults_changed.send_replace(faults);
    }
}

/// The router of one sandbox.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .merge(assist::routes())
        .merge(events::routes())
        .merge(genesys::routes())
        .merge(receivers::routes())
        .merge(control::routes())
        .route(
            "/",
            get(|| async { "gcx sandbox: see PROTOCOL.md section 7\n" }),
        )
        .fallback(http_error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http_error::rest_headers,
        ))
        .with_state(state)
}

/// The URLs a client needs, as written to `--ready-file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub base_url: String,
    pub stream_url: String,
    pub crm_url: String,
    pub qa_url: String,
}

impl ReadyInfo {
    pub fn for_addr(addr: SocketAddr) -> ReadyInfo {
        let base_url = format!("http://{addr}");
        ReadyInfo {
            stream_url: format!("ws://{addr}{}", gcx_protocol::assist::STREAM_PATH),
            crm_url: format!("{base_url}/crm/webhook"),
            qa_url: format!("{base_url}/qa/results"),
            base_url,
        }
    }
}

/// Serves a sandbox on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    state.engine.start_background(state.clone());
    let limits = state.options.connection_limits();
    let stopping = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Upgraded sockets outlive the HTTP server's graceful shutdown: close them too.
        stopping.engine.shutdown();
    };
    connections::serve(listener, app, limits, shutdown).await
}

/// A sandbox running in this process.
pub struct Sandbox {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Sandbox {
    /// Binds (port 0 picks a free port) and starts serving in a background task.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind((options.bind, options.port)).await?;
        Sandbox::start_on(listener, options)
    }

    /// Starts serving on `listener` in a background task (`options.bind` and `.port` are
    /// the listener's business then), so a caller can hold its port before the sandbox
    /// answers on it.
    pub fn start_on(listener: TcpListener, options: SandboxOptions) -> std::io::Result<Sandbox> {
        let addr = listener.local_addr()?;
        let state = AppState::new(options);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Sandbox {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    pub fn info(&self) -> ReadyInfo {
        ReadyInfo::for_addr(self.addr)
    }

    pub fn base_url(&self) -> String {
        self.info().base_url
    }

    /// Stops accepting, closes connections, waits for the server task.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.state.engine.shutdown();
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}
