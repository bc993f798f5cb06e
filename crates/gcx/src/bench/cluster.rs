//! Scale-out: 1, 2 and 3 `gcx serve` children on one PostgreSQL schema and one
//! in-process sandbox (limit 50), triggers posted round-robin in batches of 100 by 16
//! clients. Figures: completed triggers per second at engine latency 0 for each count,
//! slot utilisation of the cluster at 20 ms, CPU per trigger (the gcx children and the
//! PostgreSQL server together) for 3 instances against 1, the time from a `kill -9` of
//! the leader to the first action the engine gets from its successor, and what a leader
//! and a follower cost while they wait.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use gcx_sandbox::{Faults, LatencySpec, Sandbox, SandboxOptions};
use serde_json::Value;

use super::payload::trigger;
use super::proc::{cpu_seconds, cpu_seconds_named};
use super::serve::config_text;
use super::{BenchError, TempDir, child, dispatch};

/// The API key the children accept.
const KEY: &str = "bench-key-0123456789abcdef";
/// Concurrent HTTP clients, spread over the instances.
const CLIENTS: usize = 16;
/// Triggers per request.
const BATCH: usize = 100;
/// The engine's limit.
pub const LIMIT: u32 = 50;
/// How long the waiting instances are watched.
pub const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// Triggers queued before the leader is killed.
const TAKEOVER_TRIGGERS: usize = 10_000;

/// One run of the cluster at one size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Triggers the engine finished per second, between the 10th and 90th percent of
    /// results (the steady state).
    pub per_second: f64,
    /// CPU milliseconds per trigger: the gcx children and every `postgres` process.
    pub cpu_ms_per_trigger: f64,
}

/// A fresh schema in `url`'s database, dropped by [`Schema::drop_now`].
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn create(url: &str) -> Result<Schema, BenchError> {
        use sqlx::Connection as _;
        let name = format!("gcx_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Schema {
            url: url.to_owned(),
            name,
        })
    }

    fn url(&self) -> String {
        super::audit::with_search_path(&self.url, &self.name)
    }

    async fn drop_now(self) -> Result<(), BenchError> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        sqlx::raw_sql(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// `instances` running `gcx serve` children, their folders kept until dropped.
struct Cluster {
    children: Vec<Option<child::Ready>>,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    async fn start(
        binary: &Path,
        sandbox: &Sandbox,
        database_url: &str,
        instances: usize,
    ) -> Result<Cluster, BenchError> {
        let mut children = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..instances {
            let dir = TempDir::new()?;
            let config = config_text(
                &sandbox.base_url(),
                &dir.path().join("data"),
                Some(database_url),
                KEY,
            );
            let path = dir.path().join("gcx.toml");
            std::fs::write(&path, config).map_err(BenchError::TempDir)?;
            let args = [OsStr::new("--config"), path.as_os_str()];
            let ready = child::start(binary, "serve", &args, dir.path(), "url")
                .await?
                .map_err(BenchError::Child)?;
            children.push(Some(ready));
            dirs.push(dir);
        }
        let cluster = Cluster {
            children,
            _dirs: dirs,
        };
        cluster.leader(None, Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn urls(&self) -> Vec<String> {
        self.children
            .iter()
            .flatten()
            .map(|c| c.url.clone())
            .collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .flatten()
            .filter_map(|c| c.child.id())
            .collect()
    }

    /// Waits until a live leader other than `not` has its stream connected; its name.
    async fn leader(&self, not: Option<&str>, within: Duration) -> Result<String, BenchError> {
        let http = crate::http_client::build(Duration::from_secs(5))?;
        let deadline = Instant::now() + within;
        loop {
            for url in self.urls() {
                let Ok(answer) = http
                    .get(format!("{url}/v1/cluster"))
                    .bearer_auth(KEY)
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(c) = answer.json::<Value>().await else {
                    continue;
                };
                if let Some(leader) = c["leader"].as_str()
                    && Some(leader) != not
                    && c["members"].as_array().is_some_and(|ms| {
                        ms.iter()
                            .any(|m| m["instance"] == leader && m["streamConnected"] == true)
                    })
                {
                    return Ok(leader.to_owned());
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Incomplete(format!(
                    "no leader with a connected stream within {within:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the child whose process is `instance` (`hostname:pid`) with SIGKILL.
    async fn kill_9(&mut self, instance: &str) -> Result<(), BenchError> {
        let pid: Option<u32> = instance.rsplit(':').next().and_then(|p| p.parse().ok());
        let slot = self
            .children
            .iter_mut()
            .find(|c| c.as_ref().and_then(|c| c.child.id()) == pid && pid.is_some())
            .ok_or_else(|| BenchError::Child(format!("{instance} is not a child of this run")))?;
        if let Some(mut ready) = slot.take() {
            let _ = ready.child.start_kill();
            let _ = ready.child.wait().await;
        }
        Ok(())
    }

    async fn stop(self) {
        for mut ready in self.children.into_iter().flatten() {
            let _ = ready.child.start_kill();
            let _ = ready.child.wait().await;
        }
    }
}

/// Posts `total` triggers round-robin over `urls` in batches of [`BATCH`] by [`CLIENTS`]
/// clients; fails on any answer but 202.
async fn post_all(urls: Vec<String>, total: usize) -> Result<(), BenchError> {
    let http = crate::http_client::builder(Duration::from_secs(60))
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let bodies: Arc<Vec<Value>> = Arc::new(
        (0..total.div_ceil(BATCH))
            .map(|b| {
                Value::Array(
                    (0..BATCH)
                        .map(|i| trigger("cluster", b * BATCH + i, uuid::Uuid::new_v4(), 3))
                        .collect(),
                )
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let urls = Arc::new(urls);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, bodies, next, urls) =
                (http.clone(), bodies.clone(), next.clone(), urls.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok(());
                    };
                    let url = &urls[i % urls.len()];
                    let response = http
                        .post(format!("{url}/v1/triggers"))
                        .bearer_auth(KEY)
                        .json(body)
                        .send()
                        .await?;
                    let status = response.status().as_u16();
                    if status != 202 {
                        let text = response.text().await.unwrap_or_default();
                        return Err(BenchError::Incomplete(format!(
                            "POST /v1/triggers answered {status}: {text}"
                        )));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await
            .map_err(|e| BenchError::Incomplete(e.to_string()))??;
    }
    Ok(())
}

fn results(sandbox: &Sandbox) -> u64 {
    let a = &sandbox.state.stats.assist;
    a.results_completed.get() + a.results_failed.get()
}

fn sandbox_options(latency_ms: u64) -> SandboxOptions {
    SandboxOptions {
        faults: Faults {
            max_concurrent_actions: LIMIT,
            engine_latency_ms: LatencySpec::fixed(latency_ms),
            ..Faults::default()
        },
        ..SandboxOptions::default()
    }
}

/// `total` triggers through `instances` instances at engine latency `latency_ms`.
pub async fn throughput(
    binary: &Path,
    database_url: &str,
    instances: usize,
    latency_ms: u64,
    total: usize,
) -> Result<Throughput, BenchError> {
    let sandbox = Sandbox::start(sandbox_options(latency_ms))
        .await
        .map_err(BenchError::Sandbox)?;
    let schema = Schema::create(database_url).await?;
    let cluster = Cluster::start(binary, &sandbox, &schema.url(), instances).await?;
    let pids = cluster.pids();
    let cpu = |pids: &[u32]| -> f64 {
        pids.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>() + cpu_seconds_named("postgres")
    };
    let cpu_before = cpu(&pids);
    let mut posting = {
        let urls = cluster.urls();
        tokio::spawn(async move { post_all(urls, total).await })
    };
    let mut posted: Option<Result<(), BenchError>> = None;
    // The rate is taken between the 10th and the 90th percent of results: the cluster's
    // steady state, without the first request's way in and the last one's way out.
    let (low, high) = (total as u64 / 10, total as u64 * 9 / 10);
    let mut marks: (Option<Instant>, Option<Instant>) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut outcome = Ok(());
    loop {
        let done = results(&sandbox);
        let now = Instant::now();
        if done >= low && marks.0.is_none() {
            marks.0 = Some(now);
        }
        if done >= high && marks.1.is_none() {
            marks.1 = Some(now);
        }
        if done >= total as u64 {
            break;
        }
        if posted.is_none()
            && let Some(joined) = (&mut posting).now_or_never()
        {
            let answer = joined
                .map_err(|e| BenchError::Incomplete(e.to_string()))
                .and_then(|r| r);
            // A failed request ends the run: its triggers never come.
            let failed = answer.is_err();
            posted = Some(answer);
            if failed {
                break;
            }
        }
        if Instant::now() > deadline {
            outcome = Err(BenchError::Incomplete(format!(
                "the engine finished {done} of {total} triggers within 300 s"
            )));
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let posted = match posted {
        Some(answer) => answer,
        None => posting
            .await
            .map_err(|e| BenchError::Incomplete(e.to_string()))
            .and_then(|r| r),
    };
    let cpu_after = cpu(&pids);
    cluster.stop().await;
    let _ = sandbox.shutdown().await;
    schema.drop_now().await?;
    posted?;
    outcome?;
    let steady = match marks {
        (Some(a), Some(b)) if b > a => b - a,
        _ => return Err(BenchError::Incomplete("too few triggers to time".into())),
    };
    Ok(Throughput {
        per_second: (high - low) as f64 / steady.as_secs_f64(),
        cpu_ms_per_trigger: 1000.0 * (cpu_after - cpu_before) / total as f64,
    })
}

/// Three instances under load at 20 ms; the leader is killed with -9: seconds until the
/// engine gets its first action from the next leader.
pub async fn takeover(binary: &Path, database_url: &str) -> Result<f64, BenchError> {
    let sandbox = Sandbox::start(sandbox_options(20))
        .await
        .map_err(BenchError::Sandbox)?;
    let schema = Schema::create(database_url).await?;
    let mut cluster = Cluster::start(binary, &sandbox, &schema.url(), 3).await?;
    let first = cluster.leader(None, Duration::from_secs(30)).await?;
    let outcome = async {
        // Work queued deep enough (4 s of it at 20 ms and limit 50) that the successor
        // has some at once.
        post_all(cluster.urls(), TAKEOVER_TRIGGERS).await?;
        if results(&sandbox) >= TAKEOVER_TRIGGERS as u64 / 2 {
            return Err(BenchError::Incomplete(
                "half the work was done before the kill; the takeover would find too little".into(),
            ));
        }
        cluster.kill_9(&first).await?;
        let killed = Instant::now();
        // The dead leader's answers may still arrive for a moment; wait for the new one
        // first, then for the engine to see its send.
        cluster
            .leader(Some(&first), Duration::from_secs(60))
            .await?;
        let sends = sandbox.state.stats.assist.sends.get();
        loop {
            if sandbox.state.stats.assist.sends.get() > sends {
                return Ok(killed.elapsed().as_secs_f64());
            }
            if killed.elapsed() > Duration::from_secs(60) {
                return Err(BenchError::Incomplete(
                    "no action from a new leader within 60 s of the kill".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    .await;
    cluster.stop().await;
    let _ = sandbox.shutdown().await;
    schema.drop_now().await?;
    outcome
}

/// CPU seconds per minute of a leader and a follower waiting with nothing to do (their
/// heartbeats, renewals and the feeder's poll), over `window` after a warm-up.
pub async fn idle(
    binary: &Path,
    database_url: &str,
    window: Duration,
) -> Result<(f64, f64), BenchError> {
    let sandbox = Sandbox::start(sandbox_options(0))
        .await
        .map_err(BenchError::Sandbox)?;
    let schema = Schema::create(database_url).await?;
    let cluster = Cluster::start(binary, &sandbox, &schema.url(), 2).await?;
    let leader = cluster.leader(None, Duration::from_secs(30)).await?;
    let leader_pid: Option<u32> = leader.rsplit(':').next().and_then(|p| p.parse().ok());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pids = cluster.pids();
    let before: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p).unwrap_or(0.0))
        .collect();
    tokio::time::sleep(window).await;
    let per_minute =
        |i: usize| (cpu_seconds(pids[i]).unwrap_or(0.0) - before[i]) * 60.0 / window.as_secs_f64();
    let (mut led, mut followed) = (0.0, 0.0);
    for (i, pid) in pids.iter().enumerate() {
        if Some(*pid) == leader_pid {
            led = per_minute(i);
        } else {
            followed = per_minute(i);
        }
    }
    cluster.stop().await;
    let _ = sandbox.shutdown().await;
    schema.drop_now().await?;
    Ok((led, followed))
}

/// The cluster's slot utilisation at `latency_ms` from its throughput.
pub fn utilisation(t: &Throughput, latency_ms: u64) -> f64 {
    100.0 * dispatch::utilisation(t.per_second, latency_ms, LIMIT)
}
