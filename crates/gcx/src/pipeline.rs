//! The dispatch side of gcx, built in one place from a [`Config`]: endpoints ->
//! credentials -> [`TokenProvider`] -> login -> data folder -> [`Store::open`] ->
//! [`DispatcherConfig`] -> delivery worker -> [`Dispatcher::start`]. `gcx trigger`,
//! `gcx serve`, `gcx demo` and the dispatch benchmarks all build theirs here; what differs
//! between them is in [`PipelineOptions`].
//!
//! [`Pipeline::from_config`] runs every step. `gcx serve` splits it in two: it resolves
//! and logs in to its [`Upstream`] before it binds its listener, and [`Pipeline::start`]
//! does the rest inside `Service::start` (tests hand the service an upstream of their
//! own).
//!
//! Stopping is the caller's: each stops the dispatcher, the delivery worker
//! ([`DeliveryCell`]) and the store in the order its lifecycle needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gcx_protocol::Catalogue;
use parking_lot::Mutex;
use thiserror::Error;

use crate::assist::dispatch::{DispatchError, Dispatcher, DispatcherConfig, DispatcherHandle};
use crate::auth::{AuthError, Credentials, TokenProvider};
use crate::config::{Config, ConfigError};
use crate::delivery::{
    DeliveryCounters, DeliveryError, DeliveryHandle, DeliveryWorker, DrainReport,
};
use crate::store::{Store, StoreError};

/// How long a token request may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why [`Upstream::from_config`] failed. The texts are each step's own.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// The `genesys` endpoints do not resolve.
    #[error(transparent)]
    Endpoints(#[from] ConfigError),
    /// No usable OAuth client, or a token URL that does not parse.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    #[error(transparent)]
    HttpClient(#[from] reqwest::Error),
}

/// Why [`Pipeline::start`] failed.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start CRM webhook delivery (crm.webhook_url, CRM_WEBHOOK_URL)")]
    Delivery(#[source] DeliveryError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(
        "{live} gcx serve instance(s) share {location} and dispatch its triggers within the \
         engine's limit; post to them (POST /v1/triggers) instead of dispatching beside them"
    )]
    ClusterServes { live: usize, location: String },
}

/// Why [`Pipeline::from_config`] failed: one variant per step.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The token endpoint refused or could not be reached.
    #[error(transparent)]
    Login(AuthError),
    #[error("cannot create the data directory {} (--data-dir, store.data_dir)", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
}

/// What differs between the builders of a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Runs a delivery worker for the outbox, woken after each commit that wrote outbox
    /// rows (endpoints without a URL are skipped; their rows stay pending). Without one
    /// the rows wait in the store for the next process that delivers.
    pub delivery: bool,
}

/// What the dispatch side runs against: the engine (a login and a stream URL) and the
/// action catalogue.
pub struct Upstream {
    /// Logs in to Genesys Cloud (or a sandbox).
    pub tokens: TokenProvider,
    /// The assist stream's `ws(s)://` URL.
    pub stream_url: String,
    /// The action catalogue triggers are validated against (recorded in the audit log).
    pub catalogue: Catalogue,
}

impl Upstream {
    /// The endpoints of `config`, its OAuth client (or, on loopback, a sandbox's demo
    /// client) asking for the assist scopes, and a token provider for it. Sends nothing.
    pub fn from_config(config: &Config, catalogue: Catalogue) -> Result<Upstream, UpstreamError> {
        let endpoints = crate::config::endpoints(&config.genesys)?;
        let http = crate::http_client::build(LOGIN_TIMEOUT)?;
        let credentials = Credentials::from_config(&config.genesys, &endpoints)?
            .with_scopes(gcx_protocol::oauth::ASSIST_SCOPES);
        let tokens = TokenProvider::new(credentials, http)?;
        Ok(Upstream {
            tokens,
            stream_url: endpoints.assist_stream_url,
            catalogue,
        })
    }

    /// Fetches the first token: a refused login (a wrong secret, a missing scope) is the
    /// one error shown, before anything is opened.
    pub async fn login(&self) -> Result<(), AuthError> {
        self.tokens.token().await.map(drop)
    }
}

/// Creates the store's data folder (and its parents) if missing, private to its owner
/// ([`crate::private_files::create_dir`]).
pub fn create_data_dir(config: &Config) -> Result<(), PipelineError> {
    let path = &config.store.data_dir;
    crate::private_files::create_dir(path).map_err(|source| PipelineError::DataDir {
        path: path.clone(),
        source,
    })
}

/// The running dispatch side: a store, a dispatcher that writes through it (resuming the
/// triggers it holds unfinished) and, when asked, the delivery worker draining its outbox.
pub struct Pipeline {
    pub store: Store,
    pub dispatcher: DispatcherHandle,
    /// The delivery worker; empty without [`PipelineOptions::delivery`].
    pub delivery: DeliveryCell,
}

impl Pipeline {
    /// Every step from `config`: the upstream and its login, the data folder, then
    /// [`Pipeline::start`].
    pub async fn from_config(
        config: &Config,
        catalogue: Catalogue,
        options: PipelineOptions,
    ) -> Result<Pipeline, PipelineError> {
        let upstream = Upstream::from_config(config, catalogue)?;
        upstream.login().await.map_err(PipelineError::Login)?;
        create_data_dir(config)?;
        Ok(Pipeline::start(config, &upstream, options).await?)
    }

    /// Opens the store, starts the delivery worker (if asked) and the dispatcher against
    /// `upstream`. Returns once the dispatcher has reloaded the unfinished triggers; the
    /// stream connects in the background. Refused on a database that a cluster of
    /// `gcx serve` dispatches from (`cluster/`): a second dispatcher there would hold its
    /// own limit beside the cluster's, and resume the cluster's triggers.
    pub async fn start(
        config: &Config,
        upstream: &Upstream,
        options: PipelineOptions,
    ) -> Result<Pipeline, StartError> {
        let Parts {
            store,
            delivery,
            dispatch,
        } = Parts::open(config, upstream, options).await?;
        if let Some(cluster) = store.cluster() {
            let (members, _) = cluster.view().await?;
            let live = members
                .iter()
                .filter(|m| m.heartbeat_age < crate::cluster::LEASE)
                .count();
            if live > 0 {
                delivery.finish(Duration::ZERO).await.ok();
                store.close().await.ok();
                return Err(StartError::ClusterServes {
                    live,
                    location: store.location().to_owned(),
                });
            }
        }
        let dispatcher =
            Dispatcher::start(dispatch, store.clone(), upstream.tokens.clone()).await?;
        Ok(Pipeline {
            store,
            dispatcher,
            delivery,
        })
    }
}

/// The dispatch side before its dispatcher: the store, the delivery worker (if asked)
/// and the dispatcher's settings, woken delivery included. A cluster member
/// (`cluster/`) starts a dispatcher from them each time it is elected.
pub struct Parts {
    pub store: Store,
    pub delivery: DeliveryCell,
    pub dispatch: DispatcherConfig,
}

impl Parts {
    /// Opens the store and starts the delivery worker (if asked).
    pub async fn open(
        config: &Config,
        upstream: &Upstream,
        options: PipelineOptions,
    ) -> Result<Parts, StartError> {
        let store = Store::open(&config.store).await?;
        let mut dispatch = DispatcherConfig::from_config(
            config,
            upstream.stream_url.clone(),
            upstream.catalogue.version(),
        );
        let delivery = if options.delivery {
            let worker =
                DeliveryWorker::spawn(store.clone(), config).map_err(StartError::Delivery)?;
            let delivery = DeliveryCell::new(Some(worker));
            let nudge = delivery.clone();
            dispatch.outbox_notify = Some(Arc::new(move || nudge.notify()));
            delivery
        } else {
            DeliveryCell::default()
        };
        Ok(Parts {
            store,
            delivery,
            dispatch,
        })
    }
}

/// The running webhook delivery worker, shared by whoever must wake it (the dispatcher
/// after each commit with outbox rows, the replay route) and taken out at shutdown, after
/// which waking it does nothing.
#[derive(Clone, Default)]
pub struct DeliveryCell(Arc<Mutex<Option<DeliveryHandle>>>);

impl DeliveryCell {
    pub fn new(handle: Option<DeliveryHandle>) -> DeliveryCell {
        DeliveryCell(Arc::new(Mutex::new(handle)))
    }

    /// Wakes the worker (new rows, replayed dead letters); a no-op once it is taken.
    pub fn notify(&self) {
        if let Some(d) = self.0.lock().as_ref() {
            d.notify();
        }
    }

    /// Takes the worker out for its shutdown.
    pub fn take(&self) -> Option<DeliveryHandle> {
        self.0.lock().take()
    }

    /// Takes the worker out, waits up to `timeout` for the outbox to drain, and stops
    /// it; what is left stays in the store for the next process that delivers. `None`
    /// when there was no worker.
    pub async fn finish(
        &self,
        timeout: Duration,
    ) -> Result<Option<(DrainReport, DeliveryCounters)>, DeliveryError> {
        let Some(worker) = self.take() else {
            return Ok(None);
        };
        let report = worker.drain(timeout).await?;
        let counters = worker.counters();
        worker.shutdown().await;
        Ok(Some((report, counters)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(base_url: &str) -> Config {
        let mut config = Config::default();
        config.genesys.base_url = Some(base_url.into());
        config
    }

    #[test]
    fn a_sandbox_on_loopback_is_logged_in_to_with_its_demo_client() {
        let addr: std::net::SocketAddr = "127.0.0.1:4123".parse().unwrap();
        let sandbox = gcx_sandbox::ReadyInfo::for_addr(addr);
        let upstream = Upstream::from_config(&on(&sandbox.base_url), Catalogue::builtin()).unwrap();
        // The stream URL the sandbox announces, derived from its base URL alone.
        assert_eq!(upstream.stream_url, sandbox.stream_url);
        let tokens = format!("{:?}", upstream.tokens);
        assert!(
            tokens.contains("http://127.0.0.1:4123/oauth/token")
                && tokens.contains(gcx_protocol::oauth::DEMO_CLIENT_ID)
                && tokens.contains(gcx_protocol::oauth::SCOPE_ASSIST_TRIGGER),
            "{tokens}"
        );
    }

    #[test]
    fn beyond_loopback_a_client_must_be_configured() {
        let err = Upstream::from_config(&on("https://api.example.com"), Catalogue::builtin())
            .err()
            .unwrap();
        assert!(
            matches!(err, UpstreamError::Credentials(AuthError::NoClient)),
            "{err:?}"
        );
        // The text is the step's own.
        assert_eq!(err.to_string(), AuthError::NoClient.to_string());
    }

    #[test]
    fn a_data_folder_that_cannot_be_made_names_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let mut config = Config::default();
        config.store.data_dir = file.join("data");
        let err = create_data_dir(&config).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot create the data directory {} (--data-dir, store.data_dir)",
                config.store.data_dir.display()
            )
        );
        assert!(std::error::Error::source(&err).is_some());
        config.store.data_dir = dir.path().join("new").join("data");
        create_data_dir(&config).unwrap();
        assert!(config.store.data_dir.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config.store.data_dir)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
    }

    #[tokio::test]
    async fn an_empty_delivery_cell_finishes_with_nothing() {
        let cell = DeliveryCell::default();
        cell.notify();
        assert!(cell.take().is_none());
        assert_eq!(cell.finish(Duration::from_millis(1)).await.unwrap(), None);
    }
}
