//! kill -9 under load: 10,000 triggers posted in batches of 100 to a `gcx serve` child
//! process, which is killed with SIGKILL mid-way and restarted on the same data folder.
//! Every trigger a 202 acknowledged must complete exactly once at the engine, the CRM
//! must receive each state in order, and `gcx audit verify` must pass.

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gcx_sandbox::Faults;
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::Value;
use serve_support::*;
use tokio::process::{Child, Command};

const TOTAL: usize = 10_000;
const BATCH: usize = 100;
const KILL_AFTER: usize = TOTAL / 2;

fn gcx() -> &'static str {
    env!("CARGO_BIN_EXE_gcx")
}

fn write_config(dir: &Path, base_url: &str) -> PathBuf {
    let text = format!(
        r#"[genesys]
base_url = "{base_url}"
client_id = "gcx-demo"
client_secret = "gcx-demo-secret"
[crm]
url = "{base_url}/crm/webhook"
[store]
data_dir = "{data}"
[serve]
bind = "127.0.0.1:0"
api_keys = ["{KEY}"]
rate_limit_per_key = 0
max_batch = {BATCH}
drain_timeout = "20s"
[delivery]
# A deep backlog drains faster with more attempts in flight per refill.
max_parallel_per_endpoint = 64
[log]
level = "warn"
"#,
        data = dir.join("data").display()
    );
    let path = dir.join("gcx.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `gcx serve` and waits for its ready file; returns the child and its URL.
async fn spawn_serve(config: &Path, dir: &Path) -> (Child, String) {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(gcx())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("gcx serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let v: Value = serde_json::from_str(&text).unwrap();
            return (child, v["url"].as_str().unwrap().to_owned());
        }
        assert!(Instant::now() < deadline, "gcx serve did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts batches `todo` with 4 clients until done or the process goes away; returns the
/// indexes of the batches a 202 acknowledged.
async fn post_batches(
    url: &str,
    batches: &Arc<Vec<Value>>,
    todo: Vec<usize>,
    stop_after: Option<usize>,
) -> Vec<usize> {
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
                if stop_after.is_some_and(|n| done.lock().len() * BATCH >= n) {
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
    let config = write_config(dir.path(), &sandbox.base_url());
    let batches: Arc<Vec<Value>> = Arc::new(
        (0..TOTAL / BATCH)
            .map(|_| Value::Array((0..BATCH).map(|_| trigger()).collect()))
            .collect(),
    );

    // First run: post until half is acknowledged, then SIGKILL.
    let (mut child, url) = spawn_serve(&config, dir.path()).await;
    let all: Vec<usize> = (0..batches.len()).rev().collect();
    let mut acknowledged = post_batches(&url, &batches, all, Some(KILL_AFTER)).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let before = stats(&sandbox).await;
    let executed_before = before["assist"]["executed_unique"].as_u64().unwrap();
    assert!(
        acknowledged.len() * BATCH >= KILL_AFTER && executed_before < TOTAL as u64,
        "the kill must come mid-way: {} acknowledged, {executed_before} executed",
        acknowledged.len() * BATCH
    );

    // Second run, same data: resume, and post every batch not acknowledged (again).
    let (mut child, url) = spawn_serve(&config, dir.path()).await;
    let rest: Vec<usize> = (0..batches.len())
        .rev()
        .filter(|i| !acknowledged.contains(i))
        .collect();
    let expected_rest = rest.len();
    let posted = post_batches(&url, &batches, rest, None).await;
    assert_eq!(
        posted.len(),
        expected_rest,
        "every remaining batch acknowledged"
    );
    acknowledged.extend(posted);
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

    // SIGTERM: a clean exit, with the audit checkpoint flushed.
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

    let verify = Command::new(gcx())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
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
