//! Benchmark of `gcx serve`: accepted triggers per second through `POST /v1/triggers`
//! (batches of 1 and of 100) with the full pipeline behind it (SQLite store, dispatcher,
//! assist stream to an in-process sandbox, CRM delivery), and the service's resident
//! memory when idle and under that load. `gcx serve` runs as a child process so its RSS
//! is its own.
//!
//!   cargo build --release -p gcx --bin gcx --example serve_bench
//!   target/release/examples/serve_bench [--triggers 20000] [--concurrency 16] [--runs 3]
//!
//! (`benches/serve_bench.sh` does both.) Prints one Markdown table of medians.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gcx_sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};

const KEY: &str = "bench-key-0123456789abcdef";

struct Options {
    triggers: usize,
    concurrency: usize,
    runs: usize,
    gcx: PathBuf,
}

fn parse_options() -> Options {
    let mut o = Options {
        triggers: 20_000,
        concurrency: 16,
        runs: 3,
        gcx: std::env::var_os("GCX_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/release/gcx")),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--triggers" => o.triggers = value.parse().expect("--triggers N"),
            "--concurrency" => o.concurrency = value.parse().expect("--concurrency N"),
            "--runs" => o.runs = value.parse().expect("--runs N"),
            "--gcx" => o.gcx = PathBuf::from(value),
            other => panic!("unknown argument {other}; see the file header"),
        }
        i += 2;
    }
    o
}

fn trigger(n: usize, run: usize, batch: usize) -> Value {
    let id = uuid::Uuid::new_v4();
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": format!("bench query {run}-{batch}-{n}"), "languageCode": "en-US"},
        "executionContext": {
            "agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "sessionId": format!("bench-{run}"),
            "interactionType": "voice"
        },
        "correlationId": id.to_string(),
        "maxRetries": 2
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Serve {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start_serve(gcx: &Path, sandbox: &Sandbox) -> Serve {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = sandbox.base_url();
    let config = format!(
        r#"[genesys]
base_url = "{base}"
client_id = "gcx-demo"
client_secret = "gcx-demo-secret"
[crm]
url = "{base}/crm/webhook"
[store]
data_dir = "{data}"
[serve]
bind = "127.0.0.1:0"
api_keys = ["{KEY}"]
rate_limit_per_key = 0
max_batch = 100
[log]
level = "warn"
"#,
        data = dir.path().join("data").display()
    );
    let config_path = dir.path().join("gcx.toml");
    std::fs::write(&config_path, config).expect("write config");
    let ready = dir.path().join("ready.json");
    let child = tokio::process::Command::new(gcx)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", gcx.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Some(v) = std::fs::read_to_string(&ready)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        {
            break v["url"].as_str().expect("url in ready file").to_owned();
        }
        assert!(Instant::now() < deadline, "gcx serve did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Serve {
        child,
        url,
        _dir: dir,
    }
}

async fn executed(client: &reqwest::Client, sandbox: &Sandbox) -> u64 {
    let stats: Value = client
        .get(format!("{}/sandbox/stats", sandbox.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    stats["assist"]["executed_unique"].as_u64().unwrap_or(0)
}

struct RunResult {
    idle_rss_mib: f64,
    accepted_per_sec: f64,
    peak_rss_mib: f64,
    completed_per_sec: f64,
}

async fn one_run(o: &Options, run: usize, batch: usize) -> RunResult {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let mut serve = start_serve(&o.gcx, &sandbox).await;
    let pid = serve.child.id().expect("child pid");
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(o.concurrency)
        .build()
        .expect("client");
    // Idle: connected, nothing to do.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid).unwrap_or(0);

    let batches: Vec<Value> = (0..o.triggers / batch)
        .map(|b| {
            if batch == 1 {
                trigger(b, run, batch)
            } else {
                Value::Array(
                    (0..batch)
                        .map(|i| trigger(b * batch + i, run, batch))
                        .collect(),
                )
            }
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..o.concurrency {
        let (client, batches, next, accepted) = (
            client.clone(),
            batches.clone(),
            next.clone(),
            accepted.clone(),
        );
        let url = format!("{}/v1/triggers", serve.url);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = batches.get(i) else { break };
                let response = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(body)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(
                    response.status().as_u16(),
                    202,
                    "{:?}",
                    response.text().await
                );
                accepted.fetch_add(batch as u64, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let intake = started.elapsed();
    let total = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(300);
    while executed(&client, &sandbox).await < total {
        assert!(Instant::now() < deadline, "pipeline did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed();
    sampling.abort();
    let _ = serve.child.start_kill();
    let _ = serve.child.wait().await;
    let _ = sandbox.shutdown().await;
    RunResult {
        idle_rss_mib: idle as f64 / 1024.0,
        accepted_per_sec: total as f64 / intake.as_secs_f64(),
        peak_rss_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        completed_per_sec: total as f64 / done.as_secs_f64(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let o = parse_options();
    println!(
        "gcx serve benchmark: {} triggers per run, {} concurrent clients, median of {} runs\n",
        o.triggers, o.concurrency, o.runs
    );
    println!(
        "| batch | accepted/s | completed/s (end to end) | RSS idle (MiB) | RSS peak under load (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for batch in [1usize, 100] {
        let mut results = Vec::new();
        for run in 0..o.runs {
            let r = one_run(&o, run, batch).await;
            eprintln!(
                "batch {batch} run {run}: {:.0} accepted/s, {:.0} completed/s, idle {:.1} MiB, peak {:.1} MiB",
                r.accepted_per_sec, r.completed_per_sec, r.idle_rss_mib, r.peak_rss_mib
            );
            results.push(r);
        }
        println!(
            "| {batch} | {:.0} | {:.0} | {:.1} | {:.1} |",
            median(results.iter().map(|r| r.accepted_per_sec).collect()),
            median(results.iter().map(|r| r.completed_per_sec).collect()),
            median(results.iter().map(|r| r.idle_rss_mib).collect()),
            median(results.iter().map(|r| r.peak_rss_mib).collect()),
        );
    }
}
