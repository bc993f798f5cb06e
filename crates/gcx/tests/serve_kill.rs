//! kill -9 under load: triggers posted in batches to a `gcx serve` child process, which
//! is killed with SIGKILL and restarted on the same data folder: once mid-way on a
//! healthy engine, and again and again under every fault the sandbox has at once. Every
//! trigger a 202 acknowledged must end exactly once, as the engine ended it, the CRM must
//! receive each state in order, and `gcx audit verify` must pass.

mod serve_support;
mod store_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gcx_sandbox::{Faults, LatencySpec};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::Value;
use serve_support::*;
use tokio::process::{Child, Command};

const TOTAL: usize = 10_000;
const BATCH: usize = 100;
const KILL_AFTER: usize = TOTAL / 2;

/// The `[delivery]` table of the first test: the default retry schedule.
const DELIVERY: &str = "# A deep backlog drains faster with more attempts in flight per refill.
max_parallel_per_endpoint = 64";

/// SIGKILL, and the process is gone.
async fn kill_9(mut child: Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// The indexes of `batches` not in `acknowledged`, last first (`post_batches` pops).
fn remaining(batches: &[Value], acknowledged: &[usize]) -> Vec<usize> {
    (0..batches.len())
        .rev()
        .filter(|i| !acknowledged.contains(i))
        .collect()
}

/// Posts every batch not yet acknowledged; each must be.
async fn post_the_rest(url: &str, batches: &Arc<Vec<Value>>, acknowledged: &mut Vec<usize>) {
    let rest = remaining(batches, acknowledged);
    let expected = rest.len();
    let posted = post_batches(url, batches, rest, None).await;
    assert_eq!(posted.len(), expected, "every remaining batch acknowledged");
    acknowledged.extend(posted);
}

/// Posts batches `todo` with 4 clients until done or the process goes away; returns the
/// indexes of the batches a 202 acknowledged.
async fn post_batches(
    url: &str,
    batches: &Arc<Vec<Value>>,
    todo: Vec<usize>,
    stop_after: Option<usize>,
) -> Vec<usize> {
    let batch_len = batches[0].as_array().map_or(0, Vec::len);
    let http = client();
    let queue = Arc::new(Mutex::new(todo));
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (http, queue, done, batches) =
            (http.clone(), queue.clone(), done.clone(), batches.clone());
        let url = format!("{url}/v1/triggers");
        workers.push(tokio::spawn(async move {
            loop {
                if stop_after.is_some_and(|n| done.lock().len() * batch_len >= n) {
                    return;
                }
                let Some(i) = queue.lock().pop() else { return };
                let answer = http
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&batches[i])
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => done.lock().push(i),
                    Ok(r) => panic!("batch {i}: {} {}", r.status(), r.text().await.unwrap()),
                    // The process was killed under us: this batch is unconfirmed.
                    Err(_) => return,
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(done).unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_way_loses_nothing_and_runs_nothing_twice() {
    let sandbox = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sandbox.base_url(), BATCH, DELIVERY, None);
    let batches: Arc<Vec<Value>> = Arc::new(
        (0..TOTAL / BATCH)
            .map(|_| Value::Array((0..BATCH).map(|_| trigger()).collect()))
            .collect(),
    );

    // First run: post until half is acknowledged, then SIGKILL.
    let (child, url) = spawn_serve(&config, dir.path()).await;
    let all = remaining(&batches, &[]);
    let mut acknowledged = post_batches(&url, &batches, all, Some(KILL_AFTER)).await;
    kill_9(child).await;
    let before = stats(&sandbox).await;
    let executed_before = before["assist"]["executed_unique"].as_u64().unwrap();
    assert!(
        acknowledged.len() * BATCH >= KILL_AFTER && executed_before < TOTAL as u64,
        "the kill must come mid-way: {} acknowledged, {executed_before} executed",
        acknowledged.len() * BATCH
    );

    // Second run, same data: resume, and post every batch not acknowledged (again).
    let (child, url) = spawn_serve(&config, dir.path()).await;
    post_the_rest(&url, &batches, &mut acknowledged).await;
    assert_eq!(acknowledged.len() * BATCH, TOTAL);

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = stats(&sandbox).await;
        let crm = &s["crm"]["by_state"];
        let finals = crm["completed"].as_u64().unwrap() + crm["failed"].as_u64().unwrap();
        if s["assist"]["executed_unique"] == TOTAL && finals == TOTAL as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "pipeline did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a straggler (a duplicate execution, a late webhook) the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = stats(&sandbox).await;
    assert_eq!(s["assist"]["executed_unique"], TOTAL, "exactly once: {s}");
    assert_eq!(s["crm"]["by_state"]["initiated"], TOTAL, "{s}");
    assert_eq!(s["crm"]["by_state"]["completed"], TOTAL, "{s}");
    assert_eq!(s["crm"]["order_violations"], 0, "{s}");
    assert!(
        s["assist"]["max_in_flight_observed"].as_u64().unwrap() <= 50,
        "engine limit held: {s}"
    );

    // The service's own view agrees.
    let metrics: Value = client()
        .get(format!("{url}/v1/metrics/audit"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["total_triggers"], TOTAL, "{metrics}");
    assert_eq!(metrics["successful"], TOTAL, "{metrics}");

    stop_cleanly(child).await;
    audit_verifies(&config).await;
}

/// SIGTERM: a clean exit (code 0), with the audit checkpoint flushed.
async fn stop_cleanly(mut child: Child) {
    let pid = child.id().unwrap();
    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// `gcx audit verify` on the service's store passes.
async fn audit_verifies(config: &Path) {
    let verify = Command::new(gcx())
        .arg("--config")
        .arg(config)
        .args(["audit", "verify"])
        .output()
        .await
        .unwrap();
    assert!(
        verify.status.success(),
        "gcx audit verify: {}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// The chaos run's triggers, batch size and engine limit.
const CHAOS_TOTAL: usize = 3_000;
const CHAOS_BATCH: usize = 50;
const CHAOS_LIMIT: u32 = 10;

/// Webhooks retried quickly and long, so that a CRM outage delays rows and dead-letters
/// none.
const CHAOS_DELIVERY: &str = r#"max_parallel_per_endpoint = 32
schedule = ["0s", "20ms", "50ms", "100ms", "200ms", "300ms", "300ms", "300ms", "300ms",
  "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms",
  "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms"]
breaker_failures = 5
breaker_cooldown = "100ms""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_again_and_again_under_every_fault_ends_each_trigger_once_as_the_engine_did() {
    chaos(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_on_postgresql() {
    let Some(pg) = store_support::postgres().await else {
        return;
    };
    chaos(pg.database_url().as_deref()).await;
}

/// Kills `gcx serve` (on SQLite, or on PostgreSQL at `database_url`) five times under
/// every fault, then checks every trigger against the engine's and the CRM's counts.
async fn chaos(database_url: Option<&str>) {
    let sandbox = sandbox(Faults {
        token_lifetime_secs: 2,
        max_concurrent_actions: CHAOS_LIMIT,
        engine_latency_ms: LatencySpec {
            median: 10,
            p99: 80,
        },
        result_failure_rate: 0.05,
        send_429_rate: 0.1,
        send_503_rate: 0.02,
        drop_connection_every: Some(700),
        closing_every_secs: Some(1),
        crm_statuses: vec![503, 500, 502, 503, 500, 502],
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &sandbox.base_url(),
        CHAOS_BATCH,
        CHAOS_DELIVERY,
        database_url,
    );
    let batches: Arc<Vec<Value>> = Arc::new(
        (0..CHAOS_TOTAL / CHAOS_BATCH)
            .map(|_| Value::Array((0..CHAOS_BATCH).map(|_| trigger()).collect()))
            .collect(),
    );
    let mut acknowledged: Vec<usize> = Vec::new();

    // Three runs, killed as a quarter, a half and three quarters are acknowledged; each
    // new run resumes the last one's triggers while more are posted.
    for quarter in 1..=3 {
        let (child, url) = spawn_serve(&config, dir.path()).await;
        let todo = remaining(&batches, &acknowledged);
        let more = (quarter * CHAOS_TOTAL / 4).saturating_sub(acknowledged.len() * CHAOS_BATCH);
        acknowledged.extend(post_batches(&url, &batches, todo, Some(more)).await);
        kill_9(child).await;
    }
    let s = stats(&sandbox).await;
    assert!(
        s["assist"]["executed_unique"].as_u64().unwrap() < CHAOS_TOTAL as u64,
        "the kills must come before the end: {s}"
    );

    // Fourth run: the rest is posted, the CRM goes down, and the process is killed while
    // actions and webhooks are still under way.
    let (child, url) = spawn_serve(&config, dir.path()).await;
    post_the_rest(&url, &batches, &mut acknowledged).await;
    sandbox.state.faults.write().crm_statuses = vec![503; 40];
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill_9(child).await;
    let s = stats(&sandbox).await;
    let crm_ends = |s: &Value| {
        let by_state = &s["crm"]["by_state"];
        by_state["completed"].as_u64().unwrap() + by_state["failed"].as_u64().unwrap()
    };
    assert!(
        crm_ends(&s) < CHAOS_TOTAL as u64,
        "the last kill must come before the CRM had every trigger's end: {s}"
    );

    // Fifth run: resumes what is left, and delivers every webhook once the CRM is back
    // (in seconds here; the limit allows for a slow, busy machine).
    let (child, url) = spawn_serve(&config, dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = stats(&sandbox).await;
        if crm_ends(&s) == CHAOS_TOTAL as u64 && s["crm"]["by_state"]["initiated"] == CHAOS_TOTAL {
            break;
        }
        assert!(Instant::now() < deadline, "pipeline did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a straggler (an execution, a late webhook) the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics: Value = client()
        .get(format!("{url}/v1/metrics/audit"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stop_cleanly(child).await;
    audit_verifies(&config).await;

    // The account: every acknowledged trigger stored and ended as the engine ended it
    // (one outcome per action it ran, none for one it never ran: an action run twice, or
    // one whose result was lost, would break it), the CRM has both states of every
    // trigger, in order, each signed; nothing pending, nothing dead-lettered.
    let s = stats(&sandbox).await;
    let account = account_of(database_url, &dir.path().join("data"), &batches, &s).await;
    assert!(account.passed(), "{account}{s}");
    assert!(account.pending.is_empty(), "{:?}", account.pending);
    let ended = &account.ended;
    assert_eq!(metrics["total_triggers"], CHAOS_TOTAL, "{metrics}");
    assert_eq!(metrics["successful"], ended.completed, "{metrics}");
    let assist = &s["assist"];

    // The faults were met, not dodged: re-sends the engine knew (resumed triggers),
    // tokens refreshed within a run, 429s and 503s, engine failures, lost connections,
    // the CRM's outage.
    assert!(assist["duplicates"].as_u64().unwrap() > 0, "{s}");
    assert!(s["oauth"]["tokens_issued"].as_u64().unwrap() > 5, "{s}");
    assert!(assist["rejected_429"].as_u64().unwrap() > 0, "{s}");
    assert!(assist["rejected_503"].as_u64().unwrap() > 0, "{s}");
    assert!(ended.failed > 0, "{ended:?}");
    assert!(assist["connections_total"].as_u64().unwrap() > 5, "{s}");
    assert!(
        sandbox.state.faults.read().crm_statuses.is_empty(),
        "the CRM outage was met"
    );
}
