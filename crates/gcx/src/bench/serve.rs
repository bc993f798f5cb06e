//! HTTP intake through `gcx serve`: accepted triggers per second through
//! `POST /v1/triggers` (batches of 1 or 100) with the full pipeline behind it (SQLite
//! store, dispatcher, assist stream to an in-process sandbox, CRM delivery), and the
//! service's resident memory idle and under that load. `gcx serve` runs as a child
//! process (this same binary) so its memory is its own. The run waits until the sandbox
//! executed every accepted trigger, so intake cannot outrun a stalled pipeline unseen.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gcx_sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

use super::payload::trigger;
use super::proc::rss_kib;
use super::{BenchError, Measurement, Outcome, TempDir, child};

/// The API key the child accepts.
const KEY: &str = "bench-key-0123456789abcdef";
/// Concurrent HTTP clients.
const CLIENTS: usize = 16;

/// Posts `triggers` triggers in batches of `batch` to a `gcx serve` started from
/// `binary`. Skipped when that binary has no working `serve`.
pub async fn intake(binary: &Path, triggers: usize, batch: usize) -> Result<Outcome, BenchError> {
    let batch = batch.max(1);
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .map_err(BenchError::Sandbox)?;
    let dir = TempDir::new()?;
    let mut serve = match start_serve(binary, &sandbox, dir.path()).await? {
        Ok(serve) => serve,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let pid = serve.child.id().unwrap_or(0);
    let client = crate::http_client::builder(Duration::from_secs(30))
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    // Idle: connected to the engine, nothing to do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = rss_kib(pid).unwrap_or(0);

    let bodies: Arc<Vec<Value>> = Arc::new(
        (0..triggers.div_ceil(batch))
            .map(|b| {
                if batch == 1 {
                    trigger("bench", b, uuid::Uuid::new_v4(), 2)
                } else {
                    Value::Array(
                        (0..batch)
                            .map(|i| trigger("bench", b * batch + i, uuid::Uuid::new_v4(), 2))
                            .collect(),
                    )
                }
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let peak_kib = Arc::new(AtomicU64::new(idle_kib));
    let sampling = {
        let peak = peak_kib.clone();
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let url = format!("{}/v1/triggers", serve.url);
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, bodies, next, accepted, url) = (
                client.clone(),
                bodies.clone(),
                next.clone(),
                accepted.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok(());
                    };
                    let response = client.post(&url).bearer_auth(KEY).json(body).send().await?;
                    let status = response.status().as_u16();
                    if status != 202 {
                        let text = response.text().await.unwrap_or_default();
                        return Err(BenchError::Incomplete(format!(
                            "POST /v1/triggers answered {status}: {text}"
                        )));
                    }
                    let n = body.as_array().map_or(1, Vec::len) as u64;
                    accepted.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut failure = None;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(BenchError::Incomplete(e.to_string()))),
        }
    }
    let intake = started.elapsed();
    let total = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(300);
    while failure.is_none() && sandbox.state.stats.assist.executed_unique.get() < total {
        if Instant::now() > deadline {
            failure = Some(BenchError::Incomplete(format!(
                "the engine executed {} of {total} accepted triggers within 300 s",
                sandbox.state.stats.assist.executed_unique.get()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sampling.abort();
    let _ = serve.child.start_kill();
    let _ = serve.child.wait().await;
    let _ = sandbox.shutdown().await;
    if let Some(e) = failure {
        return Err(e);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut m = Measurement::default()
        .with("accepted", total as f64 / intake.as_secs_f64().max(1e-9))
        .with("rss", mib(peak_kib.load(Ordering::Relaxed)));
    if batch == 1 {
        m = m.with("idle_rss", mib(idle_kib));
    }
    Ok(Outcome::Measured(m))
}

/// Starts `gcx serve` on port 0 against the sandbox, its store in `dir/data`; the inner
/// `Err` says why it is not available (it exited before getting ready).
pub(super) async fn start_serve(
    binary: &Path,
    sandbox: &Sandbox,
    dir: &Path,
) -> Result<Result<child::Ready, String>, BenchError> {
    let config = config_text(&sandbox.base_url(), &dir.join("data"), None, KEY);
    let config_path = dir.join("gcx.toml");
    std::fs::write(&config_path, config).map_err(BenchError::TempDir)?;
    let args = [OsStr::new("--config"), config_path.as_os_str()];
    child::start(binary, "serve", &args, dir, "url").await
}

/// A `gcx serve` configuration for the benchmarks: the sandbox as Genesys Cloud and as the
/// CRM, the store in `data` (or PostgreSQL), one API key, no rate limit, warnings only.
pub(super) fn config_text(
    base: &str,
    data: &Path,
    database_url: Option<&str>,
    key: &str,
) -> String {
    let database_url = database_url
        .map(|u| format!("database_url = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[genesys]
base_url = "{base}"
client_id = "gcx-demo"
client_secret = "gcx-demo-secret"
[crm]
url = "{base}/crm/webhook"
[store]
data_dir = "{data}"
{database_url}[serve]
bind = "127.0.0.1:0"
api_keys = ["{key}"]
rate_limit_per_key = 0
max_batch = 100
[log]
level = "warn"
"#,
        data = data.display()
    )
}
