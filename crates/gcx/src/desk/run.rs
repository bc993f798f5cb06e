//! One simulation from scenario to report: check the target is reachable (before any event
//! is sent), run the injector, then write the audit files, summary, JUnit and HTML report
//! and hand the QA export to the outbox.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gcx_protocol::events::{EVENTS_PATH, QUERY_PATH};
use gcx_protocol::oauth::{SCOPE_ANALYTICS_QUERY, SCOPE_INTERACTIONS_READ};
use gcx_protocol::webhook::SimulationMetrics;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::agents::{Fleet, FleetSpec, LoadModel};
use super::correlate::QueryEndpoint;
use super::genesys::{self, Mapper};
use super::injector::{Injection, Observing, Route, Watched, inject};
use super::latency;
use super::live::LiveStats;
use super::report::audit_file::{AuditFiles, AuditWriter};
use super::report::qa_export::{self, QaExport, QaExportError};
use super::report::summary::{
    Extended, GenesysReport, Histograms, ObservationSummary, RunInfo, Summary,
};
use super::report::{self, ReportFiles};
use super::rng::SimRng;
use super::scenario::{Agents, InjectorSettings, Scenario, WireTarget};
use super::sender::EventsEndpoint;
use super::transport::{SetupError, Transport};
use super::wire::Identities;
use crate::auth::{AuthError, Credentials, TokenProvider};
use crate::config::Secret;
use crate::notify::{NotificationsApi, WatchOptions, Watcher};
use crate::retry::RetryPolicy;
use crate::store::OutboxMessage;
use gcx_protocol::genesys_notifications::{UserTopic, UserTopicKind};

/// Where events go and who sends them.
#[derive(Debug, Clone)]
pub struct Target {
    pub api_base: String,
    pub login_base: String,
    /// Where the URLs came from (`--base-url`, `smoke.toml:3 base_url`, the config), so an
    /// unreachable endpoint error can say which input to fix.
    pub origin: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// `--shard i/n`: this process runs agents `i-1, i-1+n, ...` (1-based, like Playwright).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 1, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected i/n with 1 <= i <= n (e.g. 2/4), got {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// How to run, besides the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output folder (default `gcx-sim-<YYYYMMDD_HHMMSS>` in the working directory).
    pub out_dir: Option<PathBuf>,
    pub shard: Shard,
    pub live: Arc<LiveStats>,
    pub cancel: CancellationToken,
    /// The QA export's store and wait; `None`: no export.
    pub qa: Option<QaExport>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    pub out_dir: PathBuf,
    pub files: ReportFiles,
    pub audit: AuditFiles,
    /// The QA export's outbox message as stored when the run returned (`delivered`,
    /// `dead`, or `pending`: it stays in the outbox); `None` when no export was asked for.
    pub qa_export: Option<Result<OutboxMessage, QaExportError>>,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{origin}: cannot reach {url}: {detail}")]
    Unreachable {
        origin: String,
        url: String,
        detail: String,
    },
    #[error("{origin}: {detail}")]
    Refused { origin: String, detail: String },
    #[error("{origin}: {url} is not a usable URL: {detail}")]
    BadUrl {
        origin: String,
        url: String,
        detail: String,
    },
    #[error("shard {shard} has no agents (the scenario has {agents}); use fewer shards")]
    EmptyShard { shard: Shard, agents: u64 },
    #[error("cannot create the output folder {path}: {source}")]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot build the HTTP client of the events endpoint: {0}")]
    Transport(#[from] super::transport::SetupError),
    #[error(transparent)]
    Write(#[from] report::WriteError),
    #[error("writing the audit files failed: {0}")]
    Audit(std::io::Error),
    #[error("the simulation stopped: {0}")]
    Stopped(String),
}

fn token_error(origin: &str, e: AuthError) -> SimulateError {
    match e {
        AuthError::Unavailable { url, last, .. } => SimulateError::Unreachable {
            origin: origin.to_owned(),
            url,
            detail: last,
        },
        other => SimulateError::Refused {
            origin: origin.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// The interactions events endpoint and its query-back, each checked before the run.
async fn interactions_route(
    api: &str,
    target: &Target,
    inj: &InjectorSettings,
    scenario: &Scenario,
    http: reqwest::Client,
    tokens: Arc<TokenProvider>,
) -> Result<Route, SimulateError> {
    // Parsed once here, before anything is written or sent, not on every request.
    let events_url = format!("{api}{EVENTS_PATH}?async={}", inj.async_mode);
    let transport =
        Transport::new(&events_url, http.clone(), inj.request_timeout).map_err(|e| match e {
            SetupError::Url(detail) => SimulateError::BadUrl {
                origin: target.origin.clone(),
                url: events_url.clone(),
                detail,
            },
            other => SimulateError::Transport(other),
        })?;
    let query = QueryEndpoint {
        http: http.clone(),
        url: format!("{api}{QUERY_PATH}"),
        tokens: tokens.clone(),
        interval: scenario.query.interval,
        timeout: scenario.query.timeout,
    };
    query.query(vec![Uuid::new_v4()]).await.map_err(|e| match e {
        super::correlate::QueryError::Transport(t) => SimulateError::Unreachable {
            origin: target.origin.clone(),
            url: query.url.clone(),
            detail: t.to_string(),
        },
        other => SimulateError::Refused {
            origin: target.origin.clone(),
            detail: format!("the query-back endpoint (needed to account for every event) is not usable: {other}"),
        },
    })?;

    Ok(Route::Interactions {
        events: Arc::new(EventsEndpoint {
            transport,
            tokens,
            request_timeout: inj.request_timeout,
            retry_deadline: inj.retry_deadline,
        }),
        query,
    })
}

/// Watches every agent's routing status and conversations (and presence, when it is
/// sent) before the first event, so no notification of the run is missed.
async fn observe(
    api: &str,
    tokens: &TokenProvider,
    agents: &[Uuid],
    scenario: &Scenario,
    target: &Target,
) -> Result<Observing, SimulateError> {
    let refused = |detail: String| SimulateError::Refused {
        origin: target.origin.clone(),
        detail: format!("cannot watch the agents over the Notifications API: {detail}"),
    };
    let mut kinds = vec![UserTopicKind::RoutingStatus, UserTopicKind::Conversations];
    if scenario.genesys.map.presence {
        kinds.push(UserTopicKind::Presence);
    }
    let topics = agents
        .iter()
        .flat_map(|&user_id| kinds.iter().map(move |&kind| UserTopic { user_id, kind }))
        .collect();
    let notifications =
        NotificationsApi::new(api, tokens.clone()).map_err(|e| refused(e.to_string()))?;
    let (watcher, rx) = Watcher::start(notifications, topics, WatchOptions::default())
        .await
        .map_err(|e| refused(e.to_string()))?;
    for r in watcher.rejected().iter().take(5) {
        tracing::warn!(topic = %r.topic, reason = ?r.reason, missing = ?r.missing_permissions, "topic rejected: its changes will show as unobserved");
    }
    Ok(Observing {
        watcher,
        notifications: rx,
        grace: scenario.genesys.observe_grace,
    })
}

/// The watch's report as the summary keeps it.
fn observation_summary(w: &Watched) -> ObservationSummary {
    let r = &w.report;
    let sample = |keys: &[crate::notify::ObsKey]| {
        keys.iter()
            .filter_map(|k| serde_json::to_value(k).ok())
            .collect()
    };
    ObservationSummary {
        expected: r.expected,
        observed: r.observed_matched,
        unobserved: r.unobserved.count,
        unexpected: r.unexpected.count,
        p50_ms: r.p50_ms,
        p95_ms: r.p95_ms,
        p99_ms: r.p99_ms,
        max_ms: r.max_ms,
        latency_us: if r.histogram.is_empty() {
            String::new()
        } else {
            latency::encode(&r.histogram)
        },
        unobserved_sample: sample(&r.unobserved.sample),
        unexpected_sample: sample(&r.unexpected.sample),
        unreadable: w.unreadable,
        watch: serde_json::to_value(&w.stats).unwrap_or_default(),
    }
}

/// Runs one simulation (or one shard of it) to the end.
pub async fn simulate(
    scenario: &Scenario,
    target: &Target,
    opts: RunOptions,
) -> Result<RunReport, SimulateError> {
    let seed = scenario.seed.unwrap_or_else(rand::random);
    let shard = opts.shard;
    let total = scenario.agents.len();
    let global: Vec<u64> = (0..total)
        .filter(|g| g % u64::from(shard.count) == u64::from(shard.index - 1))
        .collect();
    if global.is_empty() {
        return Err(SimulateError::EmptyShard {
            shard,
            agents: total,
        });
    }
    let mut id_rng = SimRng::from_entropy();
    let agent_ids: Vec<Uuid> = match &scenario.agents {
        Agents::Count(_) => global.iter().map(|_| id_rng.uuid()).collect(),
        Agents::Ids(ids) => global.iter().map(|g| ids[*g as usize]).collect(),
    };

    // Reachability and credentials, before any event is sent.
    let inj = &scenario.injector;
    let http = crate::http_client::build(inj.request_timeout)?;
    let credentials = Credentials::new(
        &target.login_base,
        &target.client_id,
        target.client_secret.clone(),
    );
    // The Events API asks for permissions (roles), not scopes.
    let credentials = match scenario.target {
        WireTarget::InteractionsEvents => {
            credentials.with_scopes([SCOPE_INTERACTIONS_READ, SCOPE_ANALYTICS_QUERY])
        }
        WireTarget::GenesysEvents => credentials,
    };
    // Token requests give up after 10 s, so an unreachable login fails the run quickly.
    let token_retry = RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(2))
        .with_deadline(Duration::from_secs(10));
    let tokens = Arc::new(
        TokenProvider::with_retry(credentials, http.clone(), token_retry)
            .map_err(|e| token_error(&target.origin, e))?,
    );
    tokens
        .token()
        .await
        .map_err(|e| token_error(&target.origin, e))?;
    let api = target.api_base.trim_end_matches('/');
    let route = match scenario.target {
        WireTarget::InteractionsEvents => {
            interactions_route(api, target, inj, scenario, http.clone(), tokens.clone()).await?
        }
        WireTarget::GenesysEvents => {
            let (endpoints, on_queue) = genesys::connect::connect(
                api,
                http.clone(),
                tokens.clone(),
                inj.request_timeout,
                inj.retry_deadline,
            )
            .await
            .map_err(|e| SimulateError::Refused {
                origin: target.origin.clone(),
                detail: format!("the Genesys Cloud Events API is not usable: {e}"),
            })?;
            let map = &scenario.genesys.map;
            if map.presence && on_queue.is_none() {
                return Err(SimulateError::Refused {
                    origin: target.origin.clone(),
                    detail: "genesys.presence is on but the org lists no `On Queue` presence definition (GET /api/v2/presence/definitions)".into(),
                });
            }
            let observe = if scenario.genesys.observe {
                Some(observe(api, &tokens, &agent_ids, scenario, target).await?)
            } else {
                None
            };
            Route::Genesys {
                endpoints: Arc::new(endpoints),
                mapper: Mapper::new(global.len(), map.clone(), on_queue),
                observe,
            }
        }
    };

    // Outputs.
    let started = chrono::Local::now();
    let stamp = started.format("%Y%m%d_%H%M%S").to_string();
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("gcx-sim-{stamp}")));
    std::fs::create_dir_all(&out_dir).map_err(|source| SimulateError::OutDir {
        path: out_dir.clone(),
        source,
    })?;
    let run_id = Uuid::new_v4().to_string();
    let audit =
        AuditWriter::create(&out_dir, &run_id, &stamp).map_err(|source| SimulateError::OutDir {
            path: out_dir.clone(),
            source,
        })?;

    let load = match &scenario.load {
        LoadModel::Open { profile, pattern } => LoadModel::Open {
            profile: profile.scaled(1.0 / f64::from(shard.count)),
            pattern: *pattern,
        },
        LoadModel::Closed => LoadModel::Closed,
    };
    let fleet = Fleet::new(FleetSpec {
        seed,
        global_index: global.clone(),
        total_agents: total,
        arrival_stream: u64::MAX - u64::from(shard.index),
        workflow: scenario.workflow.clone(),
        dwell: scenario.dwell.clone(),
        invalid_share: scenario.invalid_share,
        model: load,
        login_over: scenario.login_over,
        end: scenario.end,
    });
    let wall_start = chrono::Utc::now();
    let injection = Injection {
        fleet,
        ids: Identities::new(agent_ids, id_rng.next_u64()),
        route,
        settings: inj.clone(),
        live: opts.live.clone(),
        cancel: opts.cancel.clone(),
        wall_start,
    };
    // The loop runs as its own task on the worker threads: awaited inline it might be
    // polled by a `block_on` caller's thread, which then needs a futex wake for every
    // answer (measured: about a tenth fewer requests/s at batch 1).
    let (injected, audit) = match tokio::spawn(async move {
        let injected = inject(injection, &audit).await;
        (injected, audit)
    })
    .await
    {
        Ok(done) => done,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => return Err(SimulateError::Stopped(e.to_string())),
        },
    };
    let audit = audit.finish().map_err(SimulateError::Audit)?;
    if let Some(why) = &injected.stopped {
        return Err(SimulateError::Refused {
            origin: target.origin.clone(),
            detail: format!(
                "the Events API refused this client, so the run stopped at its first answer: {why}. Give the OAuth client a role with that permission (README, \"Running against a real org\")"
            ),
        });
    }

    let t = &injected.tally;
    let mut summary = Summary {
        metrics: SimulationMetrics {
            total_events: t.total_events,
            successful_injections: t.accepted,
            state_mismatches: t.state_mismatches,
            timestamp: gcx_protocol::time::now(),
            run_id: run_id.clone(),
            scenario: scenario.name.clone(),
            rejected: t.rejected,
            expected_rejections: t.expected_rejections,
            unexpected_acceptances: t.unexpected_acceptances,
            missing: t.missing,
            retries: injected.retries,
            ..SimulationMetrics::default()
        },
        extended: Extended {
            failed: t.failed,
            duplicates: t.duplicates,
            requests: injected.requests,
            dropped_no_agent: injected.fleet.dropped_no_agent,
            dropped_behind: injected.fleet.dropped_behind,
            interactions_started: injected.fleet.interactions_started,
            interactions_completed: injected.fleet.interactions_completed,
            invalid_generated: injected.fleet.invalid,
            ..Extended::default()
        },
        run: RunInfo {
            target: scenario.target.name().to_owned(),
            started_at: gcx_protocol::time::format(wall_start),
            finished_at: gcx_protocol::time::now(),
            duration_s: injected.elapsed.as_secs_f64(),
            send_phase_s: injected.send_phase.as_secs_f64(),
            seed,
            shards: vec![shard.to_string()],
            agents: global.len() as u64,
            model: match scenario.load {
                LoadModel::Open { .. } => "open".into(),
                LoadModel::Closed => "closed".into(),
            },
            async_mode: inj.async_mode,
            batch_size: inj.batch_size,
            time_slice_ms: inj.time_slice.as_secs_f64() * 1000.0,
            scenario_file: scenario.source.as_ref().map(|p| p.display().to_string()),
            base_url: api.to_owned(),
            interrupted: injected.interrupted,
            gcx_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        transitions: t.transition_rows(),
        rejection_codes: t.rejection_codes.clone(),
        failure_reasons: t.failure_reasons.clone(),
        series: injected.series,
        histograms: Histograms {
            response_us: latency::encode(&injected.latency.response),
            service_us: latency::encode(&injected.latency.service),
            async_e2e_us: latency::encode(&injected.latency.e2e),
        },
        genesys: injected.genesys.clone().map(|events| GenesysReport {
            events,
            observation: injected.watched.as_ref().map(observation_summary),
        }),
        ..Summary::default()
    };
    // The histograms were just encoded from valid ones, so decoding them cannot fail.
    let _ = summary.derive(&scenario.thresholds);
    let files = report::write_all(&out_dir, &summary)?;

    let qa_export = match &opts.qa {
        None => None,
        Some(qa) => Some(qa_export::export(qa, summary.qa_payload()).await),
    };
    Ok(RunReport {
        summary,
        out_dir,
        files,
        audit,
        qa_export,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_one_based() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
