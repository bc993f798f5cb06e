//! # `gcx demo`: the whole product against an embedded sandbox, in under a minute
//!
//! One call, [`run`], starts a sandbox in this process with a small dose of realistic
//! faults, then:
//! (a) dispatches a generated batch of triggers through the real dispatcher, store and
//!     CRM delivery (invalid ones are reported with their violations, never sent);
//! (b) runs a short desktop simulation with a few deliberately invalid transitions, and
//!     delivers its QA export through the outbox;
//! (c) waits for the CRM outbox to drain and verifies the audit log;
//! (d) returns one [`DemoSummary`] with the figures and a list of checks.
//!
//! # Layout
//! - [`faults`]: the dose of faults, sized to the batch.
//! - [`triggers`]: the seeded batch (all three actions, a few invalid).
//! - [`dispatch`]: the batch through the dispatcher, outcomes into figures.
//! - [`simulation`]: the scenario and its figures.
//! - [`summary`]: the figures, the checks, and the text a person reads.

pub mod dispatch;
pub mod faults;
pub mod simulation;
pub mod summary;
pub mod triggers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use base64::Engine as _;
use gcx_protocol::Catalogue;
use gcx_sandbox::{ReadyInfo, Sandbox, SandboxOptions};

use crate::assist::dispatch::DispatchError;
use crate::audit::keys::{KeyError, PUBLIC_KEY_FILE, read_public_key};
use crate::audit::{AuditError, VerifyOptions};
use crate::auth::AuthError;
use crate::config::{Config, Secret};
use crate::delivery::DeliveryError;
use crate::desk::live::LiveStats;
use crate::desk::report::qa_export::{QaExport, QaExportError};
use crate::desk::{ScenarioError, SimulateError};
use crate::pipeline::{Pipeline, PipelineError, PipelineOptions, StartError, UpstreamError};
use crate::store::StoreError;

pub use summary::{Check, DemoSummary};

/// What to run. [`DemoOptions::full`] and [`DemoOptions::quick`] are the two sizes.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Triggers generated, a few of them invalid.
    pub triggers: usize,
    /// Simulated agents.
    pub agents: u64,
    /// How long interactions arrive in the simulation.
    pub duration: Duration,
    /// Seeds the batch, the simulation and the sandbox's fault draws: same seed, same run.
    pub seed: u64,
    /// The SQLite store, the audit key and (by default) the simulation's outputs. Must be
    /// empty or absent: the demo's correlationIds repeat with the seed, and a store that
    /// already finished them would (rightly) not send them again.
    pub data_dir: PathBuf,
    /// The simulation's outputs (report.html, summary.json, ...).
    pub out_dir: PathBuf,
    /// The longest wait for the CRM outbox to drain at the end.
    pub drain_timeout: Duration,
}

impl DemoOptions {
    /// The README's run: 5,000 triggers, 300 agents for 20 seconds.
    pub fn full(data_dir: PathBuf) -> DemoOptions {
        DemoOptions {
            triggers: 5_000,
            agents: 300,
            duration: Duration::from_secs(20),
            seed: 20_261_121,
            out_dir: data_dir.join("simulation"),
            data_dir,
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// A smoke-test size that also finishes quickly in a debug build.
    pub fn quick(data_dir: PathBuf) -> DemoOptions {
        DemoOptions {
            triggers: 300,
            agents: 40,
            duration: Duration::from_secs(3),
            ..DemoOptions::full(data_dir)
        }
    }
}

/// Where the demo is, for a progress display running beside it.
#[derive(Debug, Default)]
pub struct DemoProgress {
    phase: AtomicU8,
    /// Valid triggers submitted in part (a).
    pub triggers_total: AtomicU64,
    /// Of those, how many have an outcome.
    pub triggers_done: AtomicU64,
    /// The simulation's live counters in part (b).
    pub simulation: Arc<LiveStats>,
}

/// The demo's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Dispatching,
    Simulating,
    Draining,
    Verifying,
    Done,
}

impl DemoProgress {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Dispatching,
            2 => Phase::Simulating,
            3 => Phase::Draining,
            4 => Phase::Verifying,
            _ => Phase::Done,
        }
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }
}

/// Why the demo could not run to its summary (a failed check is not an error: it is in
/// the summary).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "--data-dir {0}: the folder is not empty; the demo needs an empty or new folder (or no --data-dir, for a temporary one)"
    )]
    DataDirNotEmpty(PathBuf),
    #[error("--data-dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the embedded sandbox: {0}")]
    Sandbox(#[source] std::io::Error),
    #[error("the demo's store: {0}")]
    Store(#[from] StoreError),
    #[error("the demo's CRM delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("logging in to the embedded sandbox: {0}")]
    Auth(#[from] AuthError),
    #[error("the dispatcher: {0}")]
    Dispatch(#[from] DispatchError),
    #[error("the embedded sandbox's endpoints: {0}")]
    Endpoints(#[source] crate::config::ConfigError),
    #[error("{0}")]
    Scenario(ScenarioError),
    #[error("the simulation: {0}")]
    Simulate(Box<SimulateError>),
    #[error("the simulation's QA export: {0}")]
    QaExport(#[from] QaExportError),
    #[error("verifying the audit log: {0}")]
    Audit(#[from] AuditError),
    #[error("the audit public key: {0}")]
    Key(#[from] KeyError),
}

impl From<PipelineError> for DemoError {
    fn from(e: PipelineError) -> DemoError {
        match e {
            PipelineError::Upstream(UpstreamError::Endpoints(e)) => DemoError::Endpoints(e),
            PipelineError::Upstream(UpstreamError::Credentials(e)) | PipelineError::Login(e) => {
                DemoError::Auth(e)
            }
            PipelineError::Upstream(UpstreamError::HttpClient(e)) => DemoError::HttpClient(e),
            PipelineError::DataDir { path, source } => DemoError::DataDir { path, source },
            PipelineError::Start(StartError::Store(e)) => DemoError::Store(e),
            PipelineError::Start(StartError::Delivery(e)) => DemoError::Delivery(e),
            PipelineError::Start(StartError::Dispatch(e)) => DemoError::Dispatch(e),
            // The demo's store is its own SQLite file, which no cluster serves.
            PipelineError::Start(e @ StartError::ClusterServes { .. }) => DemoError::Dispatch(
                crate::assist::dispatch::DispatchError::Stopped(e.to_string()),
            ),
        }
    }
}

/// Runs the demo to its summary. Progress is published in `progress` as it goes.
pub async fn run(opts: &DemoOptions, progress: &DemoProgress) -> Result<DemoSummary, DemoError> {
    let started = std::time::Instant::now();
    prepare_data_dir(&opts.data_dir)?;
    let catalogue = Catalogue::builtin();
    let batch = triggers::generate(opts.triggers, opts.seed, &catalogue);
    let plan = faults::FaultPlan::for_batch(batch.valid.len());
    let (crm_secret, qa_secret) = (webhook_secret(), webhook_secret());
    let sandbox = Sandbox::start(SandboxOptions {
        faults: plan.faults(opts.seed),
        crm_secret: Some(crm_secret.clone()),
        qa_secret: Some(qa_secret.clone()),
        ..SandboxOptions::default()
    })
    .await
    .map_err(DemoError::Sandbox)?;
    let info = sandbox.info();
    let config = demo_config(opts, &info, crm_secret);
    let Pipeline {
        store,
        dispatcher,
        delivery,
    } = Pipeline::from_config(&config, catalogue, PipelineOptions { delivery: true }).await?;

    // (a) the batch.
    progress
        .triggers_total
        .store(batch.valid.len() as u64, Relaxed);
    progress.enter(Phase::Dispatching);
    let trigger_figures =
        dispatch::dispatch(&dispatcher, batch.valid.clone(), &progress.triggers_done).await;
    dispatcher.shutdown().await;
    drop(dispatcher);

    // (b) the simulation.
    progress.enter(Phase::Simulating);
    let sim_plan = simulation::SimulationPlan::new(opts.agents, opts.duration, opts.seed);
    // Its own configuration: the worker above delivers the CRM's rows, the simulation's
    // delivers the QA export.
    let mut qa_config = config.clone();
    qa_config.qa.url = Some(info.qa_url.clone());
    qa_config.qa.secret = Some(Secret::new(qa_secret));
    let qa = QaExport::new(store.clone(), &qa_config, opts.drain_timeout)?;
    let sim = simulation::run(
        &sim_plan,
        &info.base_url,
        opts.out_dir.clone(),
        progress.simulation.clone(),
        qa,
    )
    .await;

    // (c) the outbox, then the audit log.
    progress.enter(Phase::Draining);
    let (drained, delivery_counters) = delivery
        .finish(opts.drain_timeout)
        .await?
        .unwrap_or_default();
    progress.enter(Phase::Verifying);
    let key = read_public_key(&config.store.data_dir.join(PUBLIC_KEY_FILE))?;
    let verified = crate::audit::verify(
        &store,
        &VerifyOptions {
            public_keys: vec![key],
            ..VerifyOptions::default()
        },
    )
    .await?;
    let sandbox_figures = summary::SandboxFigures::of(&sandbox.state.stats);
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the demo's store failed");
    }
    if let Err(e) = sandbox.shutdown().await {
        tracing::warn!(error = %e, "stopping the demo's sandbox failed");
    }
    let sim = sim?;
    progress.enter(Phase::Done);

    let mut summary = DemoSummary::new(summary::Parts {
        options: opts,
        sandbox_url: info.base_url,
        faults: plan,
        batch: &batch,
        triggers: trigger_figures,
        sandbox: sandbox_figures,
        crm: summary::CrmFigures::of(drained, delivery_counters, &sim.qa_export),
        simulation: sim,
        audit: verified,
    });
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The demo's own configuration: the embedded sandbox (logged in to with its demo
/// client), SQLite in the data folder, the sandbox's CRM receiver with a signing secret,
/// and a compressed webhook retry schedule (the default waits 5 s, then 5 min: right for
/// a CRM that is down, too slow for a demo's first failures).
fn demo_config(opts: &DemoOptions, sandbox: &ReadyInfo, crm_secret: String) -> Config {
    let mut config = Config::default();
    config.genesys.base_url = Some(sandbox.base_url.clone());
    config.store.data_dir = opts.data_dir.clone();
    config.crm.url = Some(sandbox.crm_url.clone());
    config.crm.secret = Some(Secret::new(crm_secret));
    config.delivery.schedule = [0, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    config
}

/// A fresh Standard Webhooks secret.
fn webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>())
    )
}

/// Creates the data folder, or checks that the one given is empty.
fn prepare_data_dir(dir: &Path) -> Result<(), DemoError> {
    let io = |source| DemoError::DataDir {
        path: dir.to_owned(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DemoError::DataDirNotEmpty(dir.to_owned()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::private_files::create_dir(dir).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}
