//! Several `gcx serve` processes on one PostgreSQL database and one sandbox act as one
//! service: one engine limit for all of them, the work of an instance killed with -9
//! taken over by the others, a clean stop handing over at once, and an instance that
//! loses its database stopping its sends until it is back. Every trigger is executed
//! once, the CRM gets both states of each once and in order, and the audit log verifies
//! with each instance's key.

mod serve_support;
mod store_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gcx_sandbox::{Faults, LatencySpec};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::Value;
use serve_support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// One instance's `[delivery]` table: more attempts in flight per refill for the backlog.
const DELIVERY: &str = "max_parallel_per_endpoint = 64";

/// A running `gcx serve` child.
struct Instance {
    child: Option<Child>,
    url: String,
    dir: PathBuf,
    config: PathBuf,
}

impl Instance {
    async fn start(dir: &Path, base_url: &str, database_url: &str) -> Instance {
        std::fs::create_dir_all(dir).unwrap();
        let config = write_config(dir, base_url, 100, DELIVERY, Some(database_url));
        let (child, url) = spawn_serve(&config, dir).await;
        Instance {
            child: Some(child),
            url,
            dir: dir.to_owned(),
            config,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).unwrap()
    }

    /// SIGKILL, and the process is gone.
    async fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    /// SIGTERM, and a clean exit (code 0).
    async fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().unwrap();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }

    /// What the instance logged (warnings, and the cluster's terms).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn public_key(&self) -> PathBuf {
        self.dir.join("data").join("audit-signing.pub")
    }
}

/// `GET /v1/cluster` from `url`.
async fn cluster(url: &str) -> Value {
    client()
        .get(format!("{url}/v1/cluster"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `url` names a live leader other than `not`; returns it and the wait.
async fn leader_other_than(url: &str, not: Option<&str>, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    loop {
        let c = cluster(url).await;
        if let Some(leader) = c["leader"].as_str()
            && Some(leader) != not
        {
            let stream_up = c["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["instance"] == leader && m["streamConnected"] == true);
            if stream_up {
                return (leader.to_owned(), started.elapsed());
            }
        }
        assert!(
            started.elapsed() < limit,
            "no new leader within {limit:?}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instance of `instances` whose process is `leader` (`hostname:pid`).
fn index_of(instances: &[Instance], leader: &str) -> usize {
    let pid: u32 = leader.rsplit(':').next().unwrap().parse().unwrap();
    instances
        .iter()
        .position(|i| i.child.is_some() && i.pid() == pid)
        .unwrap_or_else(|| panic!("{leader} is none of the live instances"))
}

/// Posts batches `todo` with 6 clients, each batch to the next of `urls` that takes it:
/// an instance that is gone or stopping is skipped. Every batch must end acknowledged.
async fn post(urls: &Arc<Mutex<Vec<String>>>, batches: &Arc<Vec<Value>>, todo: Vec<usize>) {
    let http = client();
    let queue = Arc::new(Mutex::new(todo));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (http, queue, batches, urls) =
            (http.clone(), queue.clone(), batches.clone(), urls.clone());
        workers.push(tokio::spawn(async move {
            let mut turn = w;
            loop {
                let Some(i) = queue.lock().pop() else { return };
                let mut tries = 0;
                loop {
                    let url = {
                        let urls = urls.lock();
                        urls[turn % urls.len()].clone()
                    };
                    turn += 1;
                    let answer = http
                        .post(format!("{url}/v1/triggers"))
                        .bearer_auth(KEY)
                        .json(&batches[i])
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => break,
                        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {}
                        Ok(r) => panic!("batch {i}: {} {}", r.status(), r.text().await.unwrap()),
                        Err(_) => {}
                    }
                    tries += 1;
                    assert!(tries < 600, "batch {i} was never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

/// Waits until the engine ran `total` actions and the CRM has both states of each.
async fn all_done(sandbox: &gcx_sandbox::Sandbox, total: u64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = stats(sandbox).await;
        let crm = &s["crm"]["by_state"];
        let ends = crm["completed"].as_u64().unwrap() + crm["failed"].as_u64().unwrap();
        if s["assist"]["executed_unique"] == total && ends == total && crm["initiated"] == total {
            // A straggler (a duplicate execution, a late webhook) gets the chance to show.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return stats(sandbox).await;
        }
        assert!(Instant::now() < deadline, "the cluster did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `gcx audit verify` with every instance's public key passes.
async fn audit_verifies(config: &Path, keys: &[PathBuf]) {
    let mut verify = Command::new(gcx());
    verify.arg("--config").arg(config).args(["audit", "verify"]);
    for key in keys {
        verify.arg("--public-key").arg(key);
    }
    let out = verify.output().await.unwrap();
    assert!(
        out.status.success(),
        "gcx audit verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The account of `batches` against the store and the sandbox: every trigger stored and
/// ended once as the engine ended it, both CRM states of each delivered in order.
async fn account_passes(database_url: &str, dir: &Path, batches: &[Value], s: &Value) {
    let account = account_of(Some(database_url), &dir.join("data"), batches, s).await;
    assert!(account.passed(), "{account}{s}");
    assert!(account.pending.is_empty(), "{:?}", account.pending);
    assert_eq!(account.ended.rejected, 0, "no trigger rejected: {account}");
}

const LIMIT: u32 = 50;
const BATCH: usize = 100;
const TOTAL: usize = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_hold_one_limit_take_over_a_killed_one_and_hand_over_on_stop() {
    let Some(pg) = store_support::postgres().await else {
        return;
    };
    let database_url = pg.database_url().unwrap();
    let sandbox = sandbox(Faults {
        max_concurrent_actions: LIMIT,
        engine_latency_ms: LatencySpec {
            median: 20,
            p99: 120,
        },
        ..Faults::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(
            Instance::start(
                &root.path().join(format!("i{n}")),
                &sandbox.base_url(),
                &database_url,
            )
            .await,
        );
    }
    let batches: Arc<Vec<Value>> = Arc::new(
        (0..TOTAL / BATCH)
            .map(|_| Value::Array((0..BATCH).map(|_| trigger()).collect()))
            .collect(),
    );
    let urls = Arc::new(Mutex::new(
        instances.iter().map(|i| i.url.clone()).collect::<Vec<_>>(),
    ));
    let (first, _) = leader_other_than(&instances[0].url, None, Duration::from_secs(15)).await;
    let c = cluster(&instances[1].url).await;
    assert_eq!(c["mode"], "cluster", "{c}");
    assert_eq!(c["members"].as_array().unwrap().len(), 3, "{c}");

    // Every answer from any instance: a follower holds `?wait=result` until the leader
    // ran the trigger, and the third instance reads it.
    let leading = index_of(&instances, &first);
    let (follower, other) = match leading {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let t = trigger();
    let answer = client()
        .post(format!(
            "{}/v1/triggers?wait=result&timeout=10s",
            instances[follower].url
        ))
        .bearer_auth(KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["state"], "completed", "{body}");
    assert!(body["output"].is_object(), "{body}");
    let read: Value = client()
        .get(format!(
            "{}/v1/triggers/{}",
            instances[other].url,
            id_of(&t)
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["state"], "completed", "{read}");
    let c = cluster(&instances[other].url).await;
    let leader_row = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "leader")
        .cloned()
        .unwrap();
    assert_eq!(leader_row["instance"], first.as_str(), "{c}");
    assert_eq!(leader_row["limit"], LIMIT, "{c}");

    // A third of the work round-robin, then the leader is killed with -9 while its
    // actions run; the rest of the second third goes to the other two meanwhile.
    let third = batches.len() / 3;
    post(&urls, &batches, (0..third).rev().collect()).await;
    let killed = index_of(&instances, &first);
    let killed_url = instances[killed].url.clone();
    instances[killed].kill_9().await;
    urls.lock().retain(|u| *u != killed_url);
    let live = urls.lock()[0].clone();
    let poster = {
        let (urls, batches) = (urls.clone(), batches.clone());
        tokio::spawn(async move { post(&urls, &batches, (third..2 * third).rev().collect()).await })
    };
    let (second, takeover) = leader_other_than(&live, Some(&first), Duration::from_secs(15)).await;
    eprintln!("takeover after kill -9: {takeover:?}");
    poster.await.unwrap();

    // Everything so far finishes; then the last third is posted while the new leader is
    // stopped cleanly: it hands over at once, and nothing is sent twice across it.
    let s = all_done(
        &sandbox,
        (2 * third * BATCH + 1) as u64,
        Duration::from_secs(180),
    )
    .await;
    let duplicates_before = s["assist"]["duplicates"].as_u64().unwrap();
    let poster = {
        let (urls, batches) = (urls.clone(), batches.clone());
        tokio::spawn(async move {
            post(&urls, &batches, (2 * third..batches.len()).rev().collect()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = index_of(&instances, &second);
    let stopping_url = instances[stopping].url.clone();
    urls.lock().retain(|u| *u != stopping_url);
    let last = urls.lock()[0].clone();
    instances[stopping].stop().await;
    let (third_leader, handover) =
        leader_other_than(&last, Some(&second), Duration::from_secs(15)).await;
    eprintln!("handover after a clean stop: {handover:?}");
    assert!(
        handover < Duration::from_secs(5),
        "a clean stop hands over at once, before its lease could run out: {handover:?}"
    );
    poster.await.unwrap();

    let s = all_done(&sandbox, TOTAL as u64 + 1, Duration::from_secs(180)).await;
    let assist = &s["assist"];
    assert!(
        assist["max_in_flight_observed"].as_u64().unwrap() <= u64::from(LIMIT),
        "one limit for the cluster: {s}"
    );
    assert_eq!(
        assist["rejected_429"], 0,
        "no instance competed for capacity: {s}"
    );
    // A clean stop re-sends nothing; only a stop so starved that its lease's fence fell
    // first (the safety net, which it logs) leaves the engine's idempotency to catch the
    // re-sends, and then nothing still runs twice (`executed_unique` above).
    let stopped_log = instances[stopping].log();
    if !stopped_log.contains("fenced") {
        assert_eq!(
            assist["duplicates"].as_u64().unwrap(),
            duplicates_before,
            "the clean handover re-sent nothing: {s}\n{stopped_log}"
        );
    }
    assert_eq!(s["crm"]["order_violations"], 0, "{s}");
    let c = cluster(&last).await;
    assert_eq!(c["leader"], third_leader.as_str(), "{c}");

    // gcx trigger beside a live cluster would hold a second limit: it is refused.
    let survivor = instances.iter().position(|i| i.child.is_some()).unwrap();
    let file = root.path().join("one.json");
    std::fs::write(&file, trigger().to_string()).unwrap();
    let beside = Command::new(gcx())
        .arg("--config")
        .arg(&instances[survivor].config)
        .arg("trigger")
        .arg(&file)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&beside.stderr);
    assert_eq!(beside.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1 gcx serve instance(s) share") && stderr.contains("POST /v1/triggers"),
        "{stderr}"
    );

    let keys: Vec<PathBuf> = instances.iter().map(Instance::public_key).collect();
    instances[survivor].stop().await;
    audit_verifies(&instances[survivor].config, &keys).await;
    let mut all = batches.to_vec();
    all.push(Value::Array(vec![t]));
    account_passes(&database_url, &instances[survivor].dir, &all, &s).await;
}

/// A TCP relay to PostgreSQL that can cut every connection and refuse new ones: the
/// database lost, as a network cut or a crash looks from the instance.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                l.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Relay { port, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_that_loses_its_database_for_20_s_stops_dispatching_and_recovers() {
    let Some(pg) = store_support::postgres().await else {
        return;
    };
    let direct_url = pg.database_url().unwrap();
    let relay = Relay::start().await;
    let relayed_url = direct_url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port));
    let sandbox = sandbox(Faults {
        max_concurrent_actions: 10,
        engine_latency_ms: LatencySpec {
            median: 200,
            p99: 400,
        },
        ..Faults::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let mut instance = Instance::start(root.path(), &sandbox.base_url(), &relayed_url).await;
    let batches: Arc<Vec<Value>> = Arc::new(
        (0..8)
            .map(|_| Value::Array((0..BATCH).map(|_| trigger()).collect()))
            .collect(),
    );
    let urls = Arc::new(Mutex::new(vec![instance.url.clone()]));
    leader_other_than(&instance.url, None, Duration::from_secs(15)).await;
    post(&urls, &batches, (0..batches.len()).rev().collect()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The database goes away for 20 s, mid-way through the work.
    let before = stats(&sandbox).await;
    assert!(
        before["assist"]["executed_unique"].as_u64().unwrap() < 800,
        "the cut must come mid-way: {before}"
    );
    relay.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fenced = stats(&sandbox).await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(cut_at.elapsed())).await;
    let still = stats(&sandbox).await;
    assert_eq!(
        fenced["assist"]["sends"], still["assist"]["sends"],
        "no send while the database is gone: {fenced} then {still}"
    );
    assert_eq!(still["assist"]["in_flight"], 0, "{still}");
    relay.restore();

    let s = all_done(&sandbox, 800, Duration::from_secs(180)).await;
    assert!(
        s["assist"]["max_in_flight_observed"].as_u64().unwrap() <= 10,
        "{s}"
    );
    instance.stop().await;
    audit_verifies(&instance.config, &[instance.public_key()]).await;
    account_passes(&direct_url, root.path(), &batches, &s).await;
}
