//! What waiting costs: CPU seconds per minute of a `gcx serve` child process (this same
//! binary, with a CRM endpoint configured) that has nothing to do but wait, in three
//! states:
//! - `idle`: an empty store;
//! - `backoff`: [`KEYS`] webhooks in back-off (their next attempt an hour away), each with
//!   a second message of its key queued behind it;
//! - `crm_down`: the same backlog all due, the CRM answering 503 to every request (the
//!   circuit breaker's trials are the only work).
//!
//! The store is filled through the library before the child starts, so the child's CPU is
//! only its waiting. CPU is the child's `utime + stime` from `/proc/<pid>/stat` (all its
//! threads, living and ended), read after a warm-up and again after the window.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use gcx_sandbox::{Sandbox, SandboxOptions};

use super::{BenchError, Measurement, Outcome, TempDir, outbox, proc, serve};
use crate::config::Config;
use crate::delivery;
use crate::store::Store;

/// Ordering keys in the `backoff` and `crm_down` stores: two messages each, so twice this
/// many rows, of which this many are due heads (or in back-off) and as many wait behind.
pub const KEYS: usize = 10_000;
/// Time after the child is ready before the window opens (start-up work: migrations,
/// resume, the first store reads, the engine handshake).
const WARM_UP: Duration = Duration::from_secs(3);

/// The three states' CPU seconds per minute, measured over `window` each.
pub async fn cost(binary: &Path, window: Duration) -> Result<Outcome, BenchError> {
    let mut m = Measurement::default();
    for (id, state) in [
        ("idle", Waiting::Idle),
        ("backoff", Waiting::Backoff),
        ("crm_down", Waiting::CrmDown),
    ] {
        match per_minute(binary, state, window).await? {
            Ok(v) => m = m.with(id, v),
            Err(why) => return Ok(Outcome::Skipped(why)),
        }
    }
    Ok(Outcome::Measured(m))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Idle,
    Backoff,
    CrmDown,
}

/// One state: its child's CPU seconds per minute over `window`; the inner `Err` says why
/// the child is not available.
async fn per_minute(
    binary: &Path,
    state: Waiting,
    window: Duration,
) -> Result<Result<f64, String>, BenchError> {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .map_err(BenchError::Sandbox)?;
    if state == Waiting::CrmDown {
        // Far more 503s than the window can use up: every CRM request fails.
        sandbox.state.faults.write().crm_statuses = vec![503; 1_000_000];
    }
    let dir = TempDir::new()?;
    let data = dir.path().join("data");
    if state != Waiting::Idle {
        fill(&data, state == Waiting::Backoff).await?;
    }
    let mut child = match serve::start_serve(binary, &sandbox, dir.path()).await? {
        Ok(child) => child,
        Err(why) => return Ok(Err(why)),
    };
    let pid = child.child.id().unwrap_or(0);
    tokio::time::sleep(WARM_UP).await;
    let before = proc::cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let after = proc::cpu_seconds(pid);
    let _ = child.child.start_kill();
    let _ = child.child.wait().await;
    let _ = sandbox.shutdown().await;
    let (Some(before), Some(after)) = (before, after) else {
        return Err(BenchError::Child(format!(
            "cannot read /proc/{pid}/stat of gcx serve"
        )));
    };
    Ok(Ok(
        (after - before).max(0.0) * 60.0 / window.as_secs_f64().max(1e-9)
    ))
}

/// Writes [`KEYS`] keys of two CRM messages each into a new store at `data`; with
/// `backoff`, each key's first message has failed once and waits an hour.
async fn fill(data: &Path, backoff: bool) -> Result<(), BenchError> {
    let mut config = Config::default();
    config.store.data_dir = data.to_owned();
    let store = Store::open(&config.store).await?;
    let ids: Vec<String> = (0..KEYS)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    outbox::commit_crm_pairs(&store, &ids).await?;
    if backoff {
        let later = Utc::now() + chrono::Duration::hours(1);
        let heads = store.due_outbox(delivery::CRM, Utc::now(), KEYS).await?;
        for head in heads {
            store
                .outbox_retry(head.id, 1, later, "HTTP 503", Some(503))
                .await?;
        }
    }
    store.close().await?;
    Ok(())
}
