//! # The soak: `gcx serve` for a long time under steady load and every fault at once
//!
//! `gcx bench --only soak` starts a sandbox in this process and `gcx serve` as a child
//! process (this same binary) on SQLite, or on a fresh schema of a PostgreSQL server. For
//! the set time it posts triggers at a steady rate while the sandbox drops assist
//! connections, lets tokens live seconds, refuses some sends with 429, fails some
//! actions, sends `closing` every few minutes and takes the CRM down for a while every
//! minute; on PostgreSQL the database is restarted midway. Every few seconds it samples
//! the service (memory, descriptors, CPU, store size, outbox backlog, triggers). Then it
//! lets the pipeline drain, stops the service with SIGTERM and takes the account: every
//! acknowledged trigger ended exactly once as the engine ended it, every webhook
//! delivered once in order or pending with a reason, no dead letter, `gcx audit verify`
//! passes, and memory and descriptors stayed flat after warm-up. The samples go to
//! `samples.csv`, everything to `soak.html` (and `soak.json`), in the output folder.
//!
//! # Layout
//! - [`fault_mix`]: the faults, their schedule, the PostgreSQL restart.
//! - [`load`]: the steady posting of triggers.
//! - [`sample`]: one sample of the service; the CSV.
//! - [`account`]: the account at the end (the kill -9 tests take it too).
//! - [`flatness`]: the verdict on memory and descriptors after warm-up.
//! - [`chart`], [`page`]: the HTML page.

pub mod account;
pub mod chart;
pub mod fault_mix;
pub mod flatness;
pub mod load;
pub mod page;
pub mod sample;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gcx_sandbox::{Sandbox, SandboxOptions};
use serde::Serialize;
use sqlx::Connection as _;
use tokio::time::Instant;

use super::{BenchError, TempDir, child};
use crate::config::{Secret, StoreConfig};
use crate::store::Store;
use account::{Account, Check};
use fault_mix::{Action, Event, FaultMix};
use flatness::{Flatness, Tolerance};
use sample::{Phase, Sample, Sampler, StoreSize};

/// The API key the service accepts.
const KEY: &str = "soak-key-0123456789abcdef";
/// How long a SIGTERM'd service may take to drain and exit.
const STOP_WITHIN: Duration = Duration::from_secs(60);
/// How long after the load unacknowledged batches are still posted again.
const REPOST_WITHIN: Duration = Duration::from_secs(120);
/// How long a due webhook may wait for the delivery worker before the account calls it
/// stuck.
const DUE_GRACE: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// How long triggers are posted under faults.
    pub duration: Duration,
    /// Triggers posted per second ...
    pub rate: f64,
    /// ... in batches of this many.
    pub batch: usize,
    pub sample_every: Duration,
    /// After the load, how long the pipeline may take to finish (every trigger ended,
    /// every webhook delivered) before the account is taken anyway.
    pub drain_within: Duration,
    /// Where `samples.csv`, `soak.html`, `soak.json` and `serve.stderr` go.
    pub out_dir: PathBuf,
    /// A PostgreSQL server URL: the service stores in a fresh schema there (dropped at
    /// the end); `None` for SQLite.
    #[serde(skip)]
    pub postgres: Option<String>,
    /// On PostgreSQL, restart the local cluster midway.
    pub restart_postgres: bool,
    pub faults: FaultMix,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            duration: Duration::from_secs(30 * 60),
            rate: 50.0,
            batch: 10,
            sample_every: Duration::from_secs(5),
            drain_within: Duration::from_secs(6 * 60),
            out_dir: PathBuf::from("target/soak"),
            postgres: None,
            restart_postgres: true,
            faults: FaultMix::default(),
        }
    }
}

/// Everything a soak found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: DateTime<Utc>,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub settings: Settings,
    pub samples: Vec<Sample>,
    /// The timed faults as they happened.
    pub events: Vec<Event>,
    pub load: load::Tally,
    /// Seconds the load lasted, and the drain after it.
    pub load_s: f64,
    pub drain_s: f64,
    /// `None` when the store could not be read (the reason is a failed check).
    pub account: Option<Account>,
    pub flatness: Vec<Flatness>,
    /// Every check, the account's included, in the order shown.
    pub checks: Vec<Check>,
    /// `/sandbox/stats` at the end: the faults as the sandbox met them.
    pub sandbox_stats: serde_json::Value,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// CPU seconds the service used per minute of load after warm-up.
    pub fn cpu_per_minute_under_load(&self) -> Option<f64> {
        let load: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.phase == Phase::Load)
            .collect();
        let skip = (load.len() as f64 * flatness::WARM_UP_SHARE).ceil() as usize;
        let (first, last) = (load.get(skip)?, load.last()?);
        let minutes = (last.elapsed_s - first.elapsed_s) / 60.0;
        let used = last.cpu_seconds? - first.cpu_seconds?;
        (minutes > 0.0).then_some(used / minutes)
    }

    /// The account as text, for the terminal.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            text.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        }
        text
    }
}

/// The files a soak wrote.
#[derive(Debug, Clone)]
pub struct Files {
    pub csv: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
}

/// Runs a soak with `binary` (a `gcx` with `serve`) and writes its files.
pub async fn run(binary: &Path, settings: &Settings) -> Result<(Report, Files), BenchError> {
    std::fs::create_dir_all(&settings.out_dir).map_err(|e| {
        BenchError::Child(format!(
            "cannot create the output folder {}: {e}",
            settings.out_dir.display()
        ))
    })?;
    let started_at = Utc::now();
    let sandbox = Sandbox::start(SandboxOptions {
        faults: settings.faults.sandbox_faults(),
        ..SandboxOptions::default()
    })
    .await
    .map_err(BenchError::Sandbox)?;
    let dir = TempDir::new()?;
    let schema = match &settings.postgres {
        Some(url) => Some(PgSchema::create(url).await?),
        None => None,
    };
    let result = soak(
        binary,
        settings,
        &sandbox,
        dir.path(),
        schema.as_ref(),
        started_at,
    )
    .await;
    if let Some(schema) = schema {
        schema.drop_it().await;
    }
    let _ = sandbox.shutdown().await;
    let report = result?;
    let files = write(&settings.out_dir, &report)?;
    Ok((report, files))
}

/// A fresh schema on a PostgreSQL server.
struct PgSchema {
    server: String,
    name: String,
}

impl PgSchema {
    async fn create(server: &str) -> Result<PgSchema, BenchError> {
        let name = format!("gcx_soak_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(server).await?;
        sqlx::raw_sql(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(PgSchema {
            server: server.to_owned(),
            name,
        })
    }

    fn url(&self) -> String {
        super::audit::with_search_path(&self.server, &self.name)
    }

    async fn drop_it(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.server).await {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}

async fn soak(
    binary: &Path,
    settings: &Settings,
    sandbox: &Sandbox,
    dir: &Path,
    schema: Option<&PgSchema>,
    started_at: DateTime<Utc>,
) -> Result<Report, BenchError> {
    let base = sandbox.base_url();
    let data = dir.join("data");
    let database_url = schema.map(PgSchema::url);
    let config_path = dir.join("gcx.toml");
    std::fs::write(
        &config_path,
        super::serve::config_text(&base, &data, database_url.as_deref(), KEY),
    )
    .map_err(BenchError::TempDir)?;
    let args = [OsStr::new("--config"), config_path.as_os_str()];
    let mut serve = child::start(binary, "serve", &args, dir, "url")
        .await?
        .map_err(BenchError::Child)?;
    let pid = serve
        .child
        .id()
        .ok_or_else(|| BenchError::Child("gcx serve exited at once".into()))?;
    let http = crate::http_client::builder(Duration::from_secs(30))
        .pool_max_idle_per_host(16)
        .build()?;
    let store_size = match schema {
        Some(s) => StoreSize::Postgres {
            url: s.server.clone(),
            schema: s.name.clone(),
        },
        None => StoreSize::Sqlite(data.join("gcx.db")),
    };
    let mut sampler = Sampler::new(pid, &serve.url, http.clone(), store_size);
    eprintln!(
        "  gcx serve (pid {pid}) on {}, {} triggers/s for {}; files to {}",
        match schema {
            Some(s) if settings.restart_postgres =>
                format!("PostgreSQL schema {}, restarted midway", s.name),
            Some(s) => format!("PostgreSQL schema {}", s.name),
            None => "SQLite".to_owned(),
        },
        settings.rate,
        chart::clock(settings.duration.as_secs_f64()),
        settings.out_dir.display()
    );

    // The load, the timed faults and the samples, side by side.
    let start = Instant::now();
    let load_end = start + settings.duration;
    let load = tokio::spawn(load::run(
        load::Target {
            http: http.clone(),
            url: format!("{}/v1/triggers", serve.url),
            api_key: KEY.into(),
        },
        settings.rate,
        settings.batch,
        load_end,
        load_end + REPOST_WITHIN,
    ));
    let plan = settings.faults.schedule(
        settings.duration,
        schema.is_some() && settings.restart_postgres,
    );
    let faults = tokio::spawn(drive_faults(http.clone(), base.clone(), start, plan));
    let mut samples = Vec::new();
    let mut next_sample = start;
    while Instant::now() < load_end {
        let at = start.elapsed();
        let crm_down = settings.faults.crm_down_at(at);
        samples.push(
            sampler
                .sample(at.as_secs_f64(), Phase::Load, crm_down)
                .await,
        );
        progress(samples.last(), settings.duration, settings.sample_every);
        next_sample += settings.sample_every;
        tokio::time::sleep_until(next_sample.min(load_end)).await;
    }
    let events = faults.await.unwrap_or_default();
    // Whatever the schedule did last, the CRM is up and closing off for the drain.
    for action in [Action::CrmUp, Action::ClosingOff] {
        put_faults(&http, &base, action).await.ok();
    }
    let load = load
        .await
        .map_err(|e| BenchError::Incomplete(format!("the load task failed: {e}")))?;
    let load_s = start.elapsed().as_secs_f64();

    // The drain: until every accepted trigger ended and no webhook waits, or time is up.
    let drain_end = Instant::now() + settings.drain_within;
    loop {
        let s = sampler
            .sample(start.elapsed().as_secs_f64(), Phase::Drain, false)
            .await;
        let settled = s.outbox_pending == Some(0)
            && s.triggers_accepted.is_some()
            && s.triggers_ended == s.triggers_accepted;
        samples.push(s);
        progress(samples.last(), settings.duration, settings.sample_every);
        if settled || Instant::now() >= drain_end {
            break;
        }
        next_sample += settings.sample_every;
        tokio::time::sleep_until(next_sample.max(Instant::now()).min(drain_end)).await;
    }
    let drain_s = start.elapsed().as_secs_f64() - load_s;

    // Stop, then account.
    let stopped = stop(&mut serve.child).await;
    let stopped_at = Utc::now();
    let _ = std::fs::copy(
        dir.join("serve.stderr"),
        settings.out_dir.join("serve.stderr"),
    );
    let sandbox_stats = sandbox.state.stats.to_json();
    let verify = audit_verify(binary, &config_path).await;
    let store_config = StoreConfig {
        data_dir: data,
        database_url: database_url.map(Secret::new),
        ..StoreConfig::default()
    };
    let due_before = stopped_at
        - chrono::Duration::from_std(DUE_GRACE).unwrap_or_else(|_| chrono::Duration::zero());
    let account = take_account(
        &store_config,
        &load.acknowledged,
        &sandbox_stats,
        due_before,
    )
    .await;

    let mut checks = vec![Check {
        name: "every posted trigger acknowledged",
        passed: load.unacknowledged == 0,
        detail: format!(
            "{} acknowledged, {} left unacknowledged; refusals on the way: {}",
            load.acknowledged.len(),
            load.unacknowledged,
            if load.refused.is_empty() {
                "none".to_owned()
            } else {
                load.refused
                    .iter()
                    .map(|(k, v)| format!("{k} x{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    }];
    let account = match account {
        Ok(a) => {
            checks.extend(a.checks.iter().cloned());
            Some(a)
        }
        Err(e) => {
            checks.push(Check {
                name: "the store can be read back",
                passed: false,
                detail: e.to_string(),
            });
            None
        }
    };
    checks.push(verify);
    checks.push(stopped);
    for e in events
        .iter()
        .filter(|e| e.action == Action::RestartPostgres)
    {
        checks.push(Check {
            name: "PostgreSQL restarted midway",
            passed: e.error.is_none(),
            detail: e
                .error
                .clone()
                .unwrap_or_else(|| format!("at {:.0} s", e.at_s)),
        });
    }
    let flatness = judge_flatness(&samples);
    checks.extend(flatness_checks(&flatness));
    Ok(Report {
        started_at,
        backend: if schema.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        settings: settings.clone(),
        samples,
        events,
        load,
        load_s,
        drain_s,
        account,
        flatness,
        checks,
        sandbox_stats,
    })
}

/// A progress line on stderr for the first sample of each minute.
fn progress(sample: Option<&Sample>, length: Duration, every: Duration) {
    let Some(s) = sample else { return };
    if s.elapsed_s % 60.0 >= every.as_secs_f64() {
        return;
    }
    let opt = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    eprintln!(
        "  soak {} of {} ({}): rss {} KiB, {} fds, cpu {} s, accepted {}, ended {}, outbox pending {}",
        chart::clock(s.elapsed_s),
        chart::clock(length.as_secs_f64()),
        s.phase.as_str(),
        opt(s.rss_kib),
        opt(s.open_fds),
        s.cpu_seconds.map_or("?".to_owned(), |c| format!("{c:.1}")),
        opt(s.triggers_accepted),
        opt(s.triggers_ended),
        opt(s.outbox_pending),
    );
}

/// Runs the timed faults at their times; returns what happened.
async fn drive_faults(
    http: reqwest::Client,
    base: String,
    start: Instant,
    plan: Vec<(Duration, Action)>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (at, action) in plan {
        tokio::time::sleep_until(start + at).await;
        // When it began: a restart takes seconds, and the mark belongs at its start.
        let at_s = start.elapsed().as_secs_f64();
        let result = match action {
            Action::RestartPostgres => fault_mix::restart_postgres().await,
            other => put_faults(&http, &base, other).await,
        };
        events.push(Event {
            at_s,
            action,
            error: result.err(),
        });
    }
    events
}

/// `PUT /sandbox/faults` with the action's settings.
async fn put_faults(http: &reqwest::Client, base: &str, action: Action) -> Result<(), String> {
    let Some(patch) = action.faults_patch() else {
        return Ok(());
    };
    let answer = http
        .put(format!("{base}/sandbox/faults"))
        .json(&patch)
        .send()
        .await
        .map_err(|e| format!("PUT /sandbox/faults: {e}"))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "PUT /sandbox/faults answered {}: {}",
            answer.status(),
            answer.text().await.unwrap_or_default()
        ))
    }
}

/// SIGTERM, and the exit within [`STOP_WITHIN`].
async fn stop(child: &mut tokio::process::Child) -> Check {
    let name = "gcx serve stopped cleanly on SIGTERM";
    let Some(pid) = child.id() else {
        return Check {
            name,
            passed: false,
            detail: "the service had already exited".into(),
        };
    };
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if !sent.is_ok_and(|s| s.success()) {
        let _ = child.start_kill();
        return Check {
            name,
            passed: false,
            detail: "cannot send SIGTERM (kill -TERM failed)".into(),
        };
    }
    match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
        Ok(Ok(status)) => Check {
            name,
            passed: status.success(),
            detail: format!("exited with {status}"),
        },
        Ok(Err(e)) => Check {
            name,
            passed: false,
            detail: format!("cannot wait for it: {e}"),
        },
        Err(_) => {
            let _ = child.start_kill();
            Check {
                name,
                passed: false,
                detail: format!("still running {} s after SIGTERM", STOP_WITHIN.as_secs()),
            }
        }
    }
}

/// `gcx --config CONFIG audit verify`.
async fn audit_verify(binary: &Path, config: &Path) -> Check {
    let name = "gcx audit verify passes";
    let output = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(["audit", "verify"])
        .output()
        .await;
    match output {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            Check {
                name,
                passed: o.status.success(),
                detail: text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        }
        Err(e) => Check {
            name,
            passed: false,
            detail: format!("cannot run {}: {e}", binary.display()),
        },
    }
}

async fn take_account(
    config: &StoreConfig,
    acknowledged: &[uuid::Uuid],
    stats: &serde_json::Value,
    due_before: DateTime<Utc>,
) -> Result<Account, crate::store::StoreError> {
    let store = Store::open_read_only(config).await?;
    let account = account::take(&store, acknowledged, stats, due_before).await;
    let _ = store.close().await;
    account
}

/// Memory and descriptors over the load phase.
fn judge_flatness(samples: &[Sample]) -> Vec<Flatness> {
    let load = || samples.iter().filter(|s| s.phase == Phase::Load);
    let rss: Vec<f64> = load().filter_map(|s| s.rss_kib).map(|v| v as f64).collect();
    let fds: Vec<f64> = load()
        .filter_map(|s| s.open_fds)
        .map(|v| v as f64)
        .collect();
    [
        flatness::judge("resident memory", "KiB", &rss, Tolerance::RSS_KIB),
        flatness::judge("open file descriptors", "", &fds, Tolerance::FDS),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn flatness_checks(flatness: &[Flatness]) -> Vec<Check> {
    if flatness.len() < 2 {
        return vec![Check {
            name: "memory and descriptors flat after warm-up",
            passed: false,
            detail: "too few samples after warm-up to judge".into(),
        }];
    }
    flatness
        .iter()
        .map(|f| Check {
            name: if f.unit == "KiB" {
                "resident memory flat after warm-up"
            } else {
                "open file descriptors flat after warm-up"
            },
            passed: f.flat,
            detail: format!(
                "median of the first tenth {:.0}{u}, of the last {:.0}{u} ({:+.1} %), limit {:.0}{u} (+{:.0} % or +{:.0}{u})",
                f.first,
                f.last,
                f.growth_percent(),
                f.limit,
                f.tolerance.share * 100.0,
                f.tolerance.slack,
                u = if f.unit.is_empty() { String::new() } else { format!(" {}", f.unit) },
            ),
        })
        .collect()
}

/// Writes `samples.csv`, `soak.json` and `soak.html` into `dir`.
fn write(dir: &Path, report: &Report) -> Result<Files, BenchError> {
    let files = Files {
        csv: dir.join("samples.csv"),
        html: dir.join("soak.html"),
        json: dir.join("soak.json"),
    };
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| BenchError::Incomplete(format!("cannot write soak.json: {e}")))?;
    for (path, text) in [
        (&files.csv, sample::csv(&report.samples)),
        (&files.json, json + "\n"),
        (&files.html, page::render(report)),
    ] {
        std::fs::write(path, text)
            .map_err(|e| BenchError::Child(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(files)
}
