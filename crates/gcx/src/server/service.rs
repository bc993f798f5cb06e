//! The whole `gcx serve` service: store, CRM delivery worker, dispatcher (which resumes
//! every trigger left `accepted`/`sent`), and the HTTP API, started in that order (with
//! the hourly prune of `store.keep_finished` when it is set) and stopped in the order the
//! lifecycle needs:
//!
//! 1. intake closes (`POST /v1/triggers` answers 503, `/readyz` unready), the rest of the
//!    API keeps answering;
//! 2. in-flight actions finish, up to `serve.drain_timeout`;
//! 3. the HTTP server finishes its open requests and stops;
//! 4. the dispatcher stops (unfinished triggers stay `accepted`/`sent` in the store and
//!    resume on the next start); the delivery worker gets what is left of the drain time
//!    for due webhooks (the rest stays in the outbox for the next start);
//! 5. the store flushes and writes the audit checkpoint (`Store::close`).
//!
//! On PostgreSQL the instance is a member of the cluster of every `gcx serve` on that
//! database (`cluster/`): its triggers go to the dispatch queue and whichever instance
//! leads dispatches them. Its stop then skips step 2 and, in step 4, leaves the cluster:
//! if it leads, the actions in flight finish and the lease is handed over at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::api_keys::{ApiKeyError, ApiKeys};
use super::pipeline::TriggerPipeline;
use super::state::{AppState, ThisInstance};
use super::{auth_failures, prometheus, retention, run};
use crate::assist::dispatch::{DispatchError, Dispatcher, DispatcherHandle};
use crate::cluster::{ClusterError, ClusterHandle, Member};
use crate::config::Config;
use crate::delivery::DeliveryError;
use crate::pipeline::{DeliveryCell, Parts, PipelineOptions, StartError, Upstream};
use crate::store::{Store, StoreError};

/// How long open HTTP requests get to finish once the server stops accepting.
pub const HTTP_GRACE: Duration = Duration::from_secs(5);
/// The least the delivery worker gets at shutdown for webhooks already due.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(1);

/// Why the service could not start or stop cleanly. Each names the setting or part.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    ApiKeys(#[from] ApiKeyError),
    #[error("opening the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("starting the webhook delivery worker failed: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("starting the dispatcher failed: {0}")]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("the listener has no local address: {0}")]
    Listener(std::io::Error),
}

impl From<StartError> for ServeError {
    fn from(e: StartError) -> ServeError {
        match e {
            StartError::Store(e) => ServeError::Store(e),
            StartError::Delivery(e) => ServeError::Delivery(e),
            StartError::Dispatch(e) => ServeError::Dispatch(e),
            // Only `Pipeline::start` refuses so, and the service joins the cluster instead.
            e @ StartError::ClusterServes { .. } => {
                ServeError::Dispatch(DispatchError::Stopped(e.to_string()))
            }
        }
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Triggers still unfinished when the drain time ran out (they resume next start).
    pub unfinished_triggers: usize,
    /// Webhooks still pending in the outbox (they go out on the next start).
    pub pending_webhooks: u64,
    /// Whether the store closed cleanly (audit checkpoint written).
    pub store_closed: bool,
}

/// Who dispatches the triggers an instance takes.
#[derive(Clone)]
pub enum Engine {
    /// Its own dispatcher: alone on its store (SQLite).
    Alone(DispatcherHandle),
    /// The cluster's leader, which may be this instance (PostgreSQL).
    Cluster(ClusterHandle),
}

impl Engine {
    /// This instance's dispatcher, while it has one.
    pub fn dispatcher(&self) -> Option<DispatcherHandle> {
        match self {
            Engine::Alone(d) => Some(d.clone()),
            Engine::Cluster(c) => c.dispatcher(),
        }
    }

    /// The cluster membership, on PostgreSQL.
    pub fn cluster(&self) -> Option<&ClusterHandle> {
        match self {
            Engine::Alone(_) => None,
            Engine::Cluster(c) => Some(c),
        }
    }

    fn pipeline(&self) -> Arc<dyn TriggerPipeline> {
        match self {
            Engine::Alone(d) => Arc::new(d.clone()),
            Engine::Cluster(c) => Arc::new(c.clone()),
        }
    }
}

/// A running `gcx serve`.
pub struct Service {
    state: Arc<AppState>,
    local_addr: SocketAddr,
    scheme: &'static str,
    store: Store,
    engine: Engine,
    delivery: DeliveryCell,
    /// Tells the HTTP server to stop accepting and finish open requests.
    http_stop: Option<oneshot::Sender<()>>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    upkeep: Option<tokio::task::JoinHandle<()>>,
    /// Logs the periodic summary of failed authentications.
    auth_summary: tokio::task::JoinHandle<()>,
    /// Prunes the store when `store.keep_finished` is set.
    pruner: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Starts everything on `listener` (`tls` only says which scheme [`Service::url`]
    /// shows). Returns once the API answers; the stream connects in the background.
    pub async fn start<L>(
        config: &Config,
        upstream: Upstream,
        listener: L,
        tls: bool,
    ) -> Result<Service, ServeError>
    where
        L: Listener<Addr = SocketAddr>,
    {
        // Refuse a bad key list before touching anything durable.
        let keys = ApiKeys::load(&config.serve.api_keys)?;
        let metrics = prometheus::install();
        let local_addr = listener.local_addr().map_err(ServeError::Listener)?;

        let scheme = if tls { "https" } else { "http" };
        let Parts {
            store,
            delivery,
            dispatch,
        } = Parts::open(config, &upstream, PipelineOptions { delivery: true })
            .await
            .map_err(ServeError::from)?;
        let engine = if store.cluster().is_some() {
            let member = Member {
                instance: crate::instance::id(),
                address: advertised(scheme, local_addr),
            };
            let cluster =
                ClusterHandle::join(store.clone(), upstream.tokens.clone(), dispatch, member)
                    .await?;
            tracing::info!(
                instance = %cluster.member().instance,
                "joined the cluster on {}; the instance holding the dispatch lease dispatches",
                store.location()
            );
            Engine::Cluster(cluster)
        } else {
            let dispatcher =
                Dispatcher::start(dispatch, store.clone(), upstream.tokens.clone()).await?;
            tracing::info!(
                resumed = dispatcher.stats().resumed,
                "dispatcher started; unfinished triggers from earlier runs resume first"
            );
            Engine::Alone(dispatcher)
        };

        let state = AppState::new(
            config.serve.clone(),
            keys,
            Arc::new(upstream.catalogue),
            store.clone(),
            metrics.clone(),
            delivery.clone(),
            ThisInstance {
                pipeline: engine.pipeline(),
                cluster: engine.cluster().cloned(),
                address: advertised(scheme, local_addr),
            },
        );
        let upkeep = metrics.map(prometheus::spawn_upkeep);
        let auth_summary = auth_failures::spawn_summarizer(state.auth_failures.clone());
        let keep = config.store.keep_finished;
        let pruner = (!keep.is_zero()).then(|| retention::spawn(store.clone(), keep));
        let (http_stop, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Service {
            state,
            local_addr,
            scheme,
            store,
            engine,
            delivery,
            http_stop: Some(http_stop),
            http,
            upkeep,
            auth_summary,
            pruner,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://127.0.0.1:PORT` (or `https://…`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Who dispatches this instance's triggers.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Resolves with the reason when this instance's own dispatcher halts by itself (a
    /// fatal stream error, a store write that failed). A cluster member never resolves:
    /// a leader whose dispatcher halts ends its term and the cluster elects again.
    pub async fn halted_wait(&self) -> String {
        match &self.engine {
            Engine::Alone(d) => d.halted_wait().await,
            Engine::Cluster(_) => std::future::pending().await,
        }
    }

    /// Closes intake now (new triggers get 503, `/readyz` unready); [`Service::shutdown`]
    /// does this first anyway.
    pub fn begin_drain(&self) {
        self.state.begin_drain();
    }

    /// The graceful stop described in the module header.
    pub async fn shutdown(mut self) -> ShutdownReport {
        let drain_timeout = self.state.config.drain_timeout;
        let deadline = Instant::now() + drain_timeout;
        self.state.begin_drain();
        tracing::info!(
            drain_timeout = %humantime::format_duration(drain_timeout),
            "shutting down: intake closed, letting in-flight actions finish"
        );
        let mut unfinished = match &self.engine {
            Engine::Alone(d) => d.drain(drain_timeout).await,
            Engine::Cluster(_) => 0,
        };

        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(HTTP_GRACE, &mut self.http)
            .await
            .is_err()
        {
            tracing::warn!("open HTTP requests did not finish in time; closing them");
            self.http.abort();
        }
        match &self.engine {
            Engine::Alone(d) => d.shutdown().await,
            Engine::Cluster(c) => {
                let left = deadline.saturating_duration_since(Instant::now());
                unfinished = c.leave(left).await;
            }
        }
        if let Some(pruner) = self.pruner.take() {
            pruner.abort();
        }

        if let Some(delivery) = self.delivery.take() {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(DELIVERY_GRACE);
            if let Err(e) = delivery.drain(left).await {
                tracing::warn!(error = %e, "webhook delivery did not drain");
            }
            delivery.shutdown().await;
        }
        let pending_webhooks = self
            .store
            .outbox_counts()
            .await
            .map(|c| c.pending)
            .unwrap_or(0);
        let store_closed = match self.store.close().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "closing the store failed");
                false
            }
        };
        if let Some(upkeep) = self.upkeep.take() {
            upkeep.abort();
        }
        self.auth_summary.abort();
        let report = ShutdownReport {
            unfinished_triggers: unfinished,
            pending_webhooks,
            store_closed,
        };
        tracing::info!(
            unfinished = report.unfinished_triggers,
            pending_webhooks = report.pending_webhooks,
            "stopped; unfinished triggers and pending webhooks resume on the next start"
        );
        report
    }
}

/// The address other members show for this one: the bound address, with the host's name
/// in place of an unspecified IP (`0.0.0.0`, `::`).
fn advertised(scheme: &str, addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{scheme}://{}:{}", crate::instance::hostname(), addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}
