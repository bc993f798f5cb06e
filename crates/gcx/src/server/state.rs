//! What every handler of one `gcx serve` shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gcx_protocol::Catalogue;
use metrics_exporter_prometheus::PrometheusHandle;

use super::api_keys::ApiKeys;
use super::auth_failures::AuthFailures;
use super::pipeline::TriggerPipeline;
use super::rate_limit::RateLimiter;
use crate::cluster::ClusterHandle;
use crate::config::ServeConfig;
use crate::pipeline::DeliveryCell;
use crate::store::Store;
use chrono::{DateTime, Utc};

/// Where this instance's triggers go, and which instance it is (`/v1/cluster`).
pub struct ThisInstance {
    /// Where accepted triggers go.
    pub pipeline: Arc<dyn TriggerPipeline>,
    /// Its cluster (PostgreSQL); `None` alone on SQLite.
    pub cluster: Option<ClusterHandle>,
    /// Where its API answers.
    pub address: String,
}

/// State shared by every handler.
pub struct AppState {
    /// Limits, timeouts and switches of `[serve]`.
    pub config: ServeConfig,
    /// Digests of `serve.api_keys`: the only form in which keys are kept.
    pub keys: ApiKeys,
    /// One token bucket per key.
    pub limiter: RateLimiter,
    /// Failed authentications per client address: the throttle and the log summary.
    pub auth_failures: Arc<AuthFailures>,
    /// The action catalogue triggers are validated against (the dispatcher's own).
    pub catalogue: Arc<Catalogue>,
    /// Where accepted triggers go.
    pub pipeline: Arc<dyn TriggerPipeline>,
    /// For reads (trigger status, outbox, audit) and the readiness probe.
    pub store: Store,
    /// Set on the first shutdown signal: intake answers 503 and `/readyz` goes unready,
    /// while the rest of the API keeps answering during the drain.
    draining: AtomicBool,
    /// The Prometheus recorder's handle; `None` when another recorder owns the process.
    pub metrics: Option<PrometheusHandle>,
    /// Woken after a replay so replayed dead letters go out at once.
    pub delivery: DeliveryCell,
    /// The cluster this instance is a member of (PostgreSQL); `None` alone on SQLite.
    pub cluster: Option<ClusterHandle>,
    /// Where this instance's API answers, as `/v1/cluster` shows it.
    pub address: String,
    pub started_at: DateTime<Utc>,
}

impl AppState {
    pub fn new(
        config: ServeConfig,
        keys: ApiKeys,
        catalogue: Arc<Catalogue>,
        store: Store,
        metrics: Option<PrometheusHandle>,
        delivery: DeliveryCell,
        this: ThisInstance,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            limiter: RateLimiter::new(keys.len(), config.rate_limit_per_key),
            auth_failures: Arc::new(AuthFailures::new(config.auth_failures_per_minute)),
            config,
            keys,
            catalogue,
            store,
            draining: AtomicBool::new(false),
            metrics,
            delivery,
            pipeline: this.pipeline,
            cluster: this.cluster,
            address: this.address,
            started_at: Utc::now(),
        })
    }

    /// Stops intake: from now on new triggers get 503 and `/readyz` is unready.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        metrics::gauge!("gcx_serve_draining").set(1.0);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
