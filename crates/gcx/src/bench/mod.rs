//! # `gcx bench`: every benchmark of the project, behind one entry point
//!
//! Each benchmark is a library function in its own module that takes a size and returns
//! a measurement; [`BENCHES`] lists them with the figures each produces, their units and
//! aims; [`measure`] runs one by name. The CLI (`cli/bench.rs`) repeats each `--runs`
//! times and prints one table of medians.
//!
//! Every benchmark starts what it needs (a sandbox on port 0, in this process or, for the
//! events benchmarks, as a `gcx sandbox` child process; a store in a temporary folder), so
//! the figures include the sandbox's own work on the same cores.
//!
//! # Layout
//! - [`dispatch`]: triggers through the full durable pipeline (throughput, slot use), on
//!   a fresh store and on one grown to a million triggers.
//! - [`audit`]: durable audit appends through group commit (SQLite, PostgreSQL).
//! - [`outbox`]: webhook deliveries to the sandbox's CRM receiver.
//! - [`events`]: the simulator's events/s and requests/s, and `wrk` as the external peer,
//!   both against one `gcx sandbox` child process.
//! - [`genesys`]: 10,000 agents through the Events API, watched over the Notifications
//!   API, against one `gcx sandbox` child process: events/s and notification latency.
//! - [`stream`]: a bare load client on the sandbox's assist stream.
//! - [`serve`]: HTTP intake through `gcx serve` (a child process).
//! - [`cluster`]: 1, 2 and 3 `gcx serve` children on one PostgreSQL: throughput, slot
//!   utilisation, CPU per trigger, and the takeover after a `kill -9` of the leader.
//! - [`waiting`]: CPU per minute of a `gcx serve` with nothing due (idle, webhooks in
//!   back-off, a CRM that answers 503).
//! - [`soak`]: `gcx serve` for half an hour under load and every fault, sampled, drawn
//!   and accounted for; run only by name, and once.
//! - `child`: starting a `gcx` child process and waiting for its ready file.
//! - `proc`: a child process's memory, descriptors and CPU time from `/proc`.
//! - [`table`]: medians and the one table.

pub mod audit;
mod child;
pub mod cluster;
pub mod dispatch;
pub mod events;
pub mod genesys;
pub mod outbox;
mod payload;
pub mod proc;
pub mod serve;
pub mod soak;
pub mod stream;
pub mod table;
pub mod waiting;

use std::path::PathBuf;

use serde::Serialize;

/// What a figure should reach on a 2-core machine (BENCHMARKS.md states each aim).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Aim {
    AtLeast(f64),
    AtMost(f64),
}

impl Aim {
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Aim::AtLeast(a) => value >= a,
            Aim::AtMost(a) => value <= a,
        }
    }
}

/// One number a benchmark reports.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Key in a [`Measurement`].
    pub id: &'static str,
    /// What it is, for the table.
    pub label: &'static str,
    pub unit: &'static str,
    pub aim: Option<Aim>,
}

const fn figure(id: &'static str, label: &'static str, unit: &'static str) -> Figure {
    Figure {
        id,
        label,
        unit,
        aim: None,
    }
}

const fn at_least(id: &'static str, label: &'static str, unit: &'static str, aim: f64) -> Figure {
    Figure {
        id,
        label,
        unit,
        aim: Some(Aim::AtLeast(aim)),
    }
}

const fn at_most(id: &'static str, label: &'static str, unit: &'static str, aim: f64) -> Figure {
    Figure {
        id,
        label,
        unit,
        aim: Some(Aim::AtMost(aim)),
    }
}

/// One benchmark: a name for `--only`, its size in full and in `--quick`, its figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bench {
    pub name: &'static str,
    pub about: &'static str,
    pub full_size: u64,
    pub quick_size: u64,
    /// What the size counts (`triggers`, `records`, `seconds`...).
    pub size_unit: &'static str,
    pub figures: &'static [Figure],
    /// Runs only when named with `--only`, and once whatever `--runs` says: a run is
    /// long and ends in its own account, not in one figure to take a median of.
    pub on_demand: bool,
}

/// Every benchmark, in the table's order.
pub const BENCHES: &[Bench] = &[
    Bench {
        name: "dispatch",
        about: "triggers through the durable pipeline, engine latency 0, limit 50",
        full_size: 50_000,
        quick_size: 300,
        size_unit: "triggers",
        figures: &[
            at_least(
                "throughput",
                "completed triggers, engine latency 0",
                "triggers/s",
                20_000.0,
            ),
            figure("p50", "send->result p50, engine latency 0", "ms"),
            figure("p99", "send->result p99, engine latency 0", "ms"),
        ],
        on_demand: false,
    },
    Bench {
        name: "dispatch-grown",
        about: "dispatch's figure for 50,000 more triggers once this many are stored, with their outbox rows and audit records",
        full_size: 1_000_000,
        quick_size: 600,
        size_unit: "triggers",
        figures: &[
            figure(
                "throughput",
                "completed triggers, engine latency 0, grown store",
                "triggers/s",
            ),
            figure("p99", "send->result p99, grown store", "ms"),
            figure(
                "filling",
                "completed triggers while the store grew",
                "triggers/s",
            ),
        ],
        on_demand: false,
    },
    Bench {
        name: "prune",
        about: "retention's first run: Store::prune of this many finished triggers and one set more (50,000 at full size), while another set is dispatched",
        full_size: 200_000,
        quick_size: 600,
        size_unit: "triggers",
        figures: &[
            figure("rate", "finished triggers pruned", "triggers/s"),
            figure(
                "during",
                "completed triggers while the prune runs",
                "triggers/s",
            ),
            figure(
                "alone",
                "completed triggers on that store just before",
                "triggers/s",
            ),
        ],
        on_demand: false,
    },
    Bench {
        name: "slots",
        about: "slot utilisation at engine latency 20 ms, limit 50",
        full_size: 10_000,
        quick_size: 200,
        size_unit: "triggers",
        figures: &[
            at_least(
                "utilisation",
                "slot utilisation, 20 ms / limit 50 (of 2,500/s)",
                "%",
                95.0,
            ),
            figure("p50", "send->result p50, engine latency 20 ms", "ms"),
        ],
        on_demand: false,
    },
    Bench {
        name: "audit-sqlite",
        about: "durable audit appends, 1000 writers, group commit, SQLite",
        full_size: 200_000,
        quick_size: 2_000,
        size_unit: "records",
        figures: &[at_least(
            "appends",
            "audit appends, SQLite",
            "records/s",
            50_000.0,
        )],
        on_demand: false,
    },
    Bench {
        name: "audit-postgres",
        about: "durable audit appends, 1000 writers, group commit, PostgreSQL",
        full_size: 200_000,
        quick_size: 2_000,
        size_unit: "records",
        figures: &[at_least(
            "appends",
            "audit appends, PostgreSQL",
            "records/s",
            50_000.0,
        )],
        on_demand: false,
    },
    Bench {
        name: "outbox",
        about: "signed CRM webhooks delivered to the sandbox receiver, SQLite",
        full_size: 20_000,
        quick_size: 200,
        size_unit: "messages",
        figures: &[at_least(
            "deliveries",
            "outbox deliveries",
            "deliveries/s",
            5_000.0,
        )],
        on_demand: false,
    },
    Bench {
        name: "events-500",
        about: "gcx simulate at batch 500 async, 10,000 agents; wrk at batch 500 as the peer",
        full_size: 10,
        quick_size: 1,
        size_unit: "seconds",
        figures: &[
            at_least(
                "accepted",
                "events accepted, batch 500 async (simulate)",
                "events/s",
                100_000.0,
            ),
            figure("wrk", "events posted, batch 500 async (wrk)", "events/s"),
        ],
        on_demand: false,
    },
    Bench {
        name: "events-1",
        about: "requests/s at batch 1 (sync): gcx simulate next to wrk on the same sandbox",
        full_size: 10,
        quick_size: 1,
        size_unit: "seconds",
        figures: &[
            figure("simulate", "requests, batch 1 (simulate)", "requests/s"),
            figure("wrk", "requests, batch 1 (wrk)", "requests/s"),
            at_least("ratio", "simulate / wrk at batch 1", "%", 80.0),
        ],
        on_demand: false,
    },
    Bench {
        name: "stream",
        about: "sandbox assist stream, send->ack->result, engine latency 0, 4 sockets",
        full_size: 200_000,
        quick_size: 2_000,
        size_unit: "messages",
        figures: &[
            figure("messages", "assist stream messages (sandbox)", "messages/s"),
            figure("p99", "assist stream send->result p99", "ms"),
        ],
        on_demand: false,
    },
    Bench {
        name: "serve-1",
        about: "POST /v1/triggers, batches of 1, full pipeline behind gcx serve",
        full_size: 5_000,
        quick_size: 100,
        size_unit: "triggers",
        figures: &[
            figure("accepted", "HTTP intake, batch 1 (gcx serve)", "triggers/s"),
            figure("rss", "gcx serve resident memory under load", "MiB"),
            Figure {
                id: "idle_rss",
                label: "gcx serve resident memory, idle",
                unit: "MiB",
                aim: Some(Aim::AtMost(30.0)),
            },
        ],
        on_demand: false,
    },
    Bench {
        name: "serve-100",
        about: "POST /v1/triggers, batches of 100, full pipeline behind gcx serve",
        full_size: 20_000,
        quick_size: 200,
        size_unit: "triggers",
        figures: &[
            figure(
                "accepted",
                "HTTP intake, batch 100 (gcx serve)",
                "triggers/s",
            ),
            figure("rss", "gcx serve resident memory under load", "MiB"),
        ],
        on_demand: false,
    },
    Bench {
        name: "genesys",
        about: "agents through the Events API, watched over the Notifications API (gcx sandbox child process)",
        full_size: 10_000,
        quick_size: 200,
        size_unit: "agents",
        figures: &[
            figure(
                "events",
                "Events API events accepted, open load",
                "events/s",
            ),
            figure(
                "transitions",
                "desktop transitions accepted, open load",
                "transitions/s",
            ),
            figure("p50", "injection -> notification p50, open load", "ms"),
            figure("p95", "injection -> notification p95, open load", "ms"),
            figure("p99", "injection -> notification p99, open load", "ms"),
            at_most(
                "unobserved",
                "accepted changes never notified, open load",
                "changes",
                0.0,
            ),
            figure(
                "dropped",
                "arrivals dropped (no idle agent or behind)",
                "interactions",
            ),
            figure(
                "max_events",
                "Events API events accepted, closed loop, no think time, not observed",
                "events/s",
            ),
            figure(
                "max_transitions",
                "desktop transitions accepted, closed loop",
                "transitions/s",
            ),
        ],
        on_demand: false,
    },
    Bench {
        name: "cluster",
        about: "1, 2 and 3 gcx serve on one PostgreSQL, limit 50, batches of 100 round-robin; kill -9 of the leader (needs PostgreSQL)",
        full_size: 20_000,
        quick_size: 600,
        size_unit: "triggers",
        figures: &[
            figure("n1", "completed, 1 instance, latency 0", "triggers/s"),
            figure("n2", "completed, 2 instances, latency 0", "triggers/s"),
            figure("n3", "completed, 3 instances, latency 0", "triggers/s"),
            figure("util1", "slot utilisation, 1 instance, 20 ms", "%"),
            at_least("util3", "slot utilisation, 3 instances, 20 ms", "%", 95.0),
            figure(
                "cpu1",
                "CPU per trigger, 1 instance (gcx + PostgreSQL)",
                "ms",
            ),
            figure(
                "cpu3",
                "CPU per trigger, 3 instances (gcx + PostgreSQL)",
                "ms",
            ),
            at_most(
                "takeover",
                "kill -9 of the leader to its successor's first send",
                "s",
                15.0,
            ),
            at_most(
                "idle_leader",
                "a waiting leader (PostgreSQL)",
                "CPU s/min",
                0.1,
            ),
            at_most(
                "idle_follower",
                "a waiting follower (PostgreSQL)",
                "CPU s/min",
                0.1,
            ),
        ],
        on_demand: false,
    },
    Bench {
        name: "soak",
        about: "gcx serve under steady load and every fault, sampled and accounted for; writes samples.csv and soak.html (--soak-* flags)",
        full_size: 1_800,
        quick_size: 40,
        size_unit: "seconds",
        figures: &[
            figure("acknowledged", "soak: triggers acknowledged", "triggers"),
            figure("rss", "soak: resident memory, last tenth", "MiB"),
            figure(
                "rss_growth",
                "soak: resident memory growth after warm-up",
                "%",
            ),
            figure("fds", "soak: open file descriptors, last tenth", "fds"),
            figure("cpu", "soak: CPU under load after warm-up", "s/min"),
        ],
        on_demand: true,
    },
    Bench {
        name: "waiting",
        about: "CPU of gcx serve over this many seconds of waiting: idle, 10,000 webhooks in back-off, CRM answering 503",
        full_size: 60,
        quick_size: 5,
        size_unit: "seconds",
        figures: &[
            at_most("idle", "gcx serve idle, CRM configured", "CPU s/min", 0.1),
            at_most(
                "backoff",
                "gcx serve, 10,000 webhooks in back-off",
                "CPU s/min",
                0.1,
            ),
            at_most(
                "crm_down",
                "gcx serve, 10,000 due webhooks, CRM answering 503",
                "CPU s/min",
                0.1,
            ),
        ],
        on_demand: false,
    },
];

/// Looks a benchmark up by name.
pub fn find(name: &str) -> Option<&'static Bench> {
    BENCHES.iter().find(|b| b.name == name)
}

/// The values of one run, by figure id. A figure absent from it was not measured this
/// time (the note says why, e.g. wrk is not installed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measurement {
    pub values: Vec<(&'static str, f64)>,
    pub note: Option<String>,
}

impl Measurement {
    pub fn with(mut self, id: &'static str, value: f64) -> Measurement {
        self.values.push((id, value));
        self
    }

    pub fn get(&self, id: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| *k == id).map(|(_, v)| *v)
    }
}

/// How one run of a benchmark went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Measurement),
    /// It could not run here (PostgreSQL unreachable, ...): why.
    Skipped(String),
}

/// What the benchmarks need from outside.
#[derive(Debug, Clone)]
pub struct BenchContext {
    /// PostgreSQL for `audit-postgres` (a fresh schema is made and dropped).
    pub database_url: String,
    /// The `gcx` binary `serve-*` and `events-*` start as child processes.
    pub gcx_binary: Option<PathBuf>,
    /// The soak's settings (its duration is the run's size).
    pub soak: soak::Settings,
}

impl Default for BenchContext {
    fn default() -> Self {
        BenchContext {
            database_url: "postgres://postgres@127.0.0.1:5432/test".into(),
            gcx_binary: std::env::current_exe().ok(),
            soak: soak::Settings::default(),
        }
    }
}

/// Why a benchmark run failed (not the same as being skipped).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start the sandbox: {0}")]
    Sandbox(#[source] std::io::Error),
    #[error("temporary folder: {0}")]
    TempDir(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Key(#[from] crate::audit::KeyError),
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("the simulation: {0}")]
    Simulate(String),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("{0}")]
    Child(String),
    /// The run finished but did not do all its work, so its rate would flatter.
    #[error("incomplete run: {0}")]
    Incomplete(String),
}

/// Runs one benchmark once at `size`.
pub async fn measure(bench: &Bench, size: u64, ctx: &BenchContext) -> Result<Outcome, BenchError> {
    let m = match bench.name {
        "dispatch" => {
            let d = dispatch::dispatch(count(size), 0, dispatch::LIMIT).await?;
            Measurement::default()
                .with("throughput", d.per_second)
                .with("p50", d.p50_ms)
                .with("p99", d.p99_ms)
        }
        "dispatch-grown" => {
            let stored = count(size);
            let g = dispatch::dispatch_grown(stored, stored.min(dispatch::GROWN_SET)).await?;
            Measurement::default()
                .with("throughput", g.last.per_second)
                .with("p99", g.last.p99_ms)
                .with("filling", g.filling_per_second)
        }
        "prune" => {
            let stored = count(size);
            let p = dispatch::prune(stored, stored.min(dispatch::GROWN_SET)).await?;
            Measurement::default()
                .with("rate", p.pruned_per_second)
                .with("during", p.during.per_second)
                .with("alone", p.alone.per_second)
        }
        "slots" => {
            let latency_ms = 20;
            let d = dispatch::dispatch(count(size), latency_ms, dispatch::LIMIT).await?;
            Measurement::default()
                .with(
                    "utilisation",
                    100.0 * dispatch::utilisation(d.per_second, latency_ms, dispatch::LIMIT),
                )
                .with("p50", d.p50_ms)
        }
        "audit-sqlite" => {
            let a = audit::appends(audit::Backend::Sqlite, count(size), audit::WRITERS).await?;
            Measurement::default().with("appends", a.per_second)
        }
        "audit-postgres" => {
            let backend = audit::Backend::Postgres(ctx.database_url.clone());
            if let Err(why) = audit::reachable(&ctx.database_url).await {
                return Ok(Outcome::Skipped(why));
            }
            let a = audit::appends(backend, count(size), audit::WRITERS).await?;
            Measurement::default().with("appends", a.per_second)
        }
        "outbox" => {
            let o = outbox::deliveries(count(size), outbox::PARALLEL).await?;
            Measurement::default().with("deliveries", o.per_second)
        }
        "events-500" | "events-1" => {
            let Some(binary) = &ctx.gcx_binary else {
                return Ok(Outcome::Skipped("the gcx binary was not found".into()));
            };
            if bench.name == "events-500" {
                events::batch_500(binary, seconds(size)).await?
            } else {
                events::batch_1(binary, seconds(size)).await?
            }
        }
        "stream" => {
            let s = stream::load(size, stream::CONNECTIONS, stream::IN_FLIGHT).await?;
            Measurement::default()
                .with("messages", s.per_second)
                .with("p99", s.result_p99_ms)
        }
        "serve-1" | "serve-100" => {
            let Some(binary) = &ctx.gcx_binary else {
                return Ok(Outcome::Skipped("the gcx binary was not found".into()));
            };
            let batch = if bench.name == "serve-1" { 1 } else { 100 };
            return serve::intake(binary, count(size), batch).await;
        }
        "genesys" => {
            let Some(binary) = &ctx.gcx_binary else {
                return Ok(Outcome::Skipped("the gcx binary was not found".into()));
            };
            let duration = if size >= 1_000 { 30 } else { 5 };
            genesys::observed(binary, size, std::time::Duration::from_secs(duration)).await?
        }
        "cluster" => {
            let Some(binary) = &ctx.gcx_binary else {
                return Ok(Outcome::Skipped("the gcx binary was not found".into()));
            };
            if let Err(why) = audit::reachable(&ctx.database_url).await {
                return Ok(Outcome::Skipped(why));
            }
            let (url, total) = (&ctx.database_url, count(size));
            let mut m = Measurement::default();
            for (n, id, cpu) in [
                (1, "n1", Some("cpu1")),
                (2, "n2", None),
                (3, "n3", Some("cpu3")),
            ] {
                let t = cluster::throughput(binary, url, n, 0, total).await?;
                m = m.with(id, t.per_second);
                if let Some(cpu) = cpu {
                    m = m.with(cpu, t.cpu_ms_per_trigger);
                }
            }
            // 20 ms: 2,500 actions/s at most; half the size keeps the run's length.
            for (n, id) in [(1, "util1"), (3, "util3")] {
                let t = cluster::throughput(binary, url, n, 20, total / 2).await?;
                m = m.with(id, cluster::utilisation(&t, 20));
            }
            let (leader, follower) = cluster::idle(binary, url, cluster::IDLE_WINDOW).await?;
            m.with("takeover", cluster::takeover(binary, url).await?)
                .with("idle_leader", leader)
                .with("idle_follower", follower)
        }
        "soak" => {
            let Some(binary) = &ctx.gcx_binary else {
                return Ok(Outcome::Skipped("the gcx binary was not found".into()));
            };
            let settings = soak::Settings {
                duration: seconds(size),
                ..ctx.soak.clone()
            };
            return soak_outcome(binary, &settings).await;
        }
        "waiting" => {
            let Some(binary) = &ctx.gcx_binary else {
                return Ok(Outcome::Skipped("the gcx binary was not found".into()));
            };
            return waiting::cost(binary, seconds(size)).await;
        }
        other => return Ok(Outcome::Skipped(format!("no benchmark named {other}"))),
    };
    Ok(Outcome::Measured(m))
}

/// Runs the soak, prints its account and where its page is; fails when a check failed.
async fn soak_outcome(
    binary: &std::path::Path,
    settings: &soak::Settings,
) -> Result<Outcome, BenchError> {
    let (report, files) = soak::run(binary, settings).await?;
    eprintln!("\n{}", report.summary());
    eprintln!(
        "soak page: {}\nsamples:   {}",
        files.html.display(),
        files.csv.display()
    );
    if !report.passed() {
        let failed = report.checks.iter().filter(|c| !c.passed).count();
        return Err(BenchError::Incomplete(format!(
            "the soak failed {failed} of {} checks; see {}",
            report.checks.len(),
            files.html.display()
        )));
    }
    let mut m = Measurement::default().with("acknowledged", report.load.acknowledged.len() as f64);
    if let Some(f) = report.flatness.iter().find(|f| f.unit == "KiB") {
        m = m
            .with("rss", f.last / 1024.0)
            .with("rss_growth", f.growth_percent());
    }
    if let Some(f) = report.flatness.iter().find(|f| f.unit.is_empty()) {
        m = m.with("fds", f.last);
    }
    if let Some(cpu) = report.cpu_per_minute_under_load() {
        m = m.with("cpu", cpu);
    }
    Ok(Outcome::Measured(m))
}

fn count(size: u64) -> usize {
    usize::try_from(size).unwrap_or(usize::MAX)
}

fn seconds(size: u64) -> std::time::Duration {
    std::time::Duration::from_secs(size.max(1))
}

/// A fresh folder (mode 0700) under the system's temporary folder, deleted (best effort)
/// when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, BenchError> {
        let path =
            std::env::temp_dir().join(format!("gcx-bench-{}", uuid::Uuid::new_v4().simple()));
        // Private like any data folder: several benchmarks keep their store in it.
        crate::private_files::create_dir(&path).map_err(BenchError::TempDir)?;
        Ok(TempDir(path))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_figures_named_once_per_bench() {
        let mut names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BENCHES.len());
        for b in BENCHES {
            let mut ids: Vec<&str> = b.figures.iter().map(|f| f.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), b.figures.len(), "{}", b.name);
            assert!(b.quick_size <= b.full_size, "{}", b.name);
        }
    }

    #[test]
    fn aims_compare_as_written() {
        assert!(Aim::AtLeast(95.0).met_by(95.0));
        assert!(!Aim::AtLeast(95.0).met_by(94.9));
        assert!(Aim::AtMost(30.0).met_by(12.0));
    }
}
