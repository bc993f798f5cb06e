//! The outbox worker end to end: a real store (SQLite in a temporary folder, and
//! PostgreSQL in a random schema when reachable), the sandbox's real CRM and QA receivers
//! on real sockets, and the real `gcx outbox` binary for listing, replay and re-enabling.
//! Schedules are in milliseconds; the receivers' counters prove order and no loss.

mod store_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use gcx::config::{Config, Secret};
use gcx::delivery::{self, DeliveryHandle, DeliveryWorker};
use gcx::store::{OutboxMessage, OutboxStatus, Store, WriteBatch};
use gcx_sandbox::{Faults, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use store_support::TestStore;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const DRAIN: Duration = Duration::from_secs(20);

/// A configuration with millisecond retries and a quick breaker.
fn config(crm_url: Option<String>, qa_url: Option<String>, secret: Option<&str>) -> Config {
    let mut c = Config::default();
    c.crm.url = crm_url;
    c.crm.secret = secret.map(Secret::new);
    c.qa.url = qa_url;
    c.qa.secret = secret.map(Secret::new);
    let ms = Duration::from_millis;
    c.delivery.schedule = [0, 5, 10, 20, 40, 80]
        .into_iter()
        .chain(std::iter::repeat_n(100, 40))
        .map(ms)
        .collect();
    c.delivery.request_timeout = Duration::from_secs(5);
    c.delivery.breaker_failures = 3;
    c.delivery.breaker_cooldown = ms(50);
    c.delivery.max_parallel_per_endpoint = 8;
    c
}

async fn sandbox(faults: Faults, secret: Option<&str>) -> Sandbox {
    Sandbox::start(SandboxOptions {
        faults,
        crm_secret: secret.map(String::from),
        qa_secret: secret.map(String::from),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn crm_body(correlation_id: &str, state: &str) -> Value {
    json!({
        "correlationId": correlation_id, "actionType": "knowledge_search", "agentId": "agent-1",
        "sessionId": "session-1", "timestamp": "2024-05-01T12:00:00.000Z", "executionState": state,
    })
}

/// Commits, for each of `keys` correlationIds, an `initiated` and then (in a later
/// commit) a `completed` row for the CRM; returns the number of rows.
async fn commit_pairs(store: &Store, keys: usize) -> u64 {
    let ids: Vec<String> = (0..keys)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    for state in ["initiated", "completed"] {
        let outbox = ids
            .iter()
            .map(|id| delivery::message(delivery::CRM, id, &crm_body(id, state)))
            .collect();
        store
            .commit(WriteBatch {
                outbox,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    2 * keys as u64
}

fn crm_stats(sandbox: &Sandbox) -> Value {
    sandbox.state.stats.to_json()["crm"].clone()
}

/// Every row delivered once, in order, none lost.
fn assert_all_delivered(sandbox: &Sandbox, rows: u64) {
    let crm = crm_stats(sandbox);
    assert_eq!(crm["unique_messages"], rows, "{crm}");
    assert_eq!(crm["order_violations"], 0, "{crm}");
    assert_eq!(crm["bad_signatures"], 0, "{crm}");
    assert_eq!(crm["by_state"]["initiated"], rows / 2, "{crm}");
    assert_eq!(crm["by_state"]["completed"], rows / 2, "{crm}");
}

async fn drain_all(handle: &DeliveryHandle) {
    let report = handle.drain(DRAIN).await.unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
}

/// Runs the real `gcx` binary on the test's store; returns stdout (and asserts success).
fn gcx(t: &TestStore, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gcx"));
    match &t.config.database_url {
        Some(url) => cmd.args(["--database-url", url.expose()]),
        None => cmd.arg("--data-dir").arg(&t.config.data_dir),
    };
    let out = cmd.args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gcx {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A local address with nothing listening (bound, read, released).
/// A port held by a socket that is bound but not listening: a connection to it is
/// refused (the endpoint is down) and no other socket can take the port while this one
/// lives; `listen` on it brings the endpoint up.
fn down_endpoint() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Polls `check` every 10 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().await
}

async fn signed_messages_are_delivered_in_order(t: TestStore) {
    let store = t.open().await;
    let sb = sandbox(Faults::default(), Some(SECRET)).await;
    let rows = commit_pairs(&store, 40).await;
    let handle = DeliveryWorker::spawn(
        store.clone(),
        &config(Some(sb.info().crm_url), None, Some(SECRET)),
    )
    .unwrap();
    drain_all(&handle).await;
    assert_all_delivered(&sb, rows);
    assert_eq!(crm_stats(&sb)["deliveries"], rows);
    let counters = handle.counters();
    assert_eq!((counters.delivered, counters.retried), (rows, 0));
    handle.shutdown().await;
    assert_eq!(store.outbox_counts().await.unwrap().delivered, rows);
}

async fn a_wrong_secret_is_refused_and_dead_lettered(t: TestStore) {
    let store = t.open().await;
    let sb = sandbox(Faults::default(), Some(SECRET)).await;
    commit_pairs(&store, 1).await;
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let handle = DeliveryWorker::spawn(
        store.clone(),
        &config(Some(sb.info().crm_url), None, Some(wrong)),
    )
    .unwrap();
    // 401 is a final 4xx: the first message and its successor become dead letters.
    let report = handle.drain(DRAIN).await.unwrap();
    assert_eq!((report.pending, report.dead), (0, 2), "{report:?}");
    assert_eq!(crm_stats(&sb)["bad_signatures"], 1);
    assert_eq!(crm_stats(&sb)["unique_messages"], 0);
    handle.shutdown().await;
}

async fn failing_first_requests_are_retried(t: TestStore) {
    let store = t.open().await;
    let faults = Faults {
        crm_statuses: vec![503, 500, 502, 408, 425, 504],
        ..Faults::default()
    };
    let sb = sandbox(faults, Some(SECRET)).await;
    let rows = commit_pairs(&store, 10).await;
    let handle = DeliveryWorker::spawn(
        store.clone(),
        &config(Some(sb.info().crm_url), None, Some(SECRET)),
    )
    .unwrap();
    drain_all(&handle).await;
    assert_all_delivered(&sb, rows);
    assert_eq!(crm_stats(&sb)["deliveries"], rows + 6);
    assert_eq!(handle.counters().retried, 6);
    handle.shutdown().await;
}

async fn retry_after_is_honoured(t: TestStore) {
    let store = t.open().await;
    let faults = Faults {
        crm_statuses: vec![429],
        ..Faults::default()
    };
    let sb = sandbox(faults, None).await;
    let rows = commit_pairs(&store, 1).await;
    let started = Instant::now();
    let handle =
        DeliveryWorker::spawn(store.clone(), &config(Some(sb.info().crm_url), None, None)).unwrap();
    drain_all(&handle).await;
    // The schedule says 5 ms; the receiver said `Retry-After: 1`.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_all_delivered(&sb, rows);
    let first = store
        .outbox_list(Some(OutboxStatus::Delivered), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.body["executionState"] == "initiated")
        .unwrap();
    assert_eq!(first.attempts, 2);
    handle.shutdown().await;
}

async fn gone_disables_the_endpoint_until_re_enabled(t: TestStore) {
    let store = t.open().await;
    let faults = Faults {
        crm_statuses: vec![410],
        ..Faults::default()
    };
    let sb = sandbox(faults, Some(SECRET)).await;
    let rows = commit_pairs(&store, 1).await;
    let handle = DeliveryWorker::spawn(
        store.clone(),
        &config(Some(sb.info().crm_url), None, Some(SECRET)),
    )
    .unwrap();
    // Nothing more is sent to a disabled endpoint; drain does not wait for it.
    let report = handle.drain(DRAIN).await.unwrap();
    assert_eq!((report.pending, report.dead), (rows, 0), "{report:?}");
    let state = store.endpoint_state(delivery::CRM).await.unwrap();
    assert!(state.disabled && state.reason.unwrap().contains("410"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(crm_stats(&sb)["deliveries"], 1);
    let status: Value =
        serde_json::from_str(&gcx(&t, &["outbox", "status", "--output", "json"])).unwrap();
    assert_eq!(status["endpoints"]["crm"]["disabled"], true, "{status}");
    assert_eq!(status["counts"]["pending"], rows, "{status}");

    gcx(&t, &["outbox", "enable-endpoint", "crm"]);
    handle.notify();
    drain_all(&handle).await;
    assert_all_delivered(&sb, rows);
    // The 410 attempt was not counted against the schedule.
    for m in store.outbox_list(None, 10).await.unwrap() {
        assert_eq!(m.attempts, 1, "{m:?}");
    }
    handle.shutdown().await;
}

async fn an_endpoint_down_for_a_while_gets_everything_in_order(t: TestStore) {
    let store = t.open().await;
    let (socket, addr) = down_endpoint();
    let rows = commit_pairs(&store, 10).await;
    let url = format!("http://{addr}/crm/webhook");
    let handle = DeliveryWorker::spawn(store.clone(), &config(Some(url), None, None)).unwrap();
    let down = handle.drain(Duration::from_millis(400)).await.unwrap();
    assert_eq!(down.pending, rows, "{down:?}");
    assert!(handle.counters().retried > 0);
    let sb = Sandbox::start_on(socket.listen(1024).unwrap(), SandboxOptions::default()).unwrap();
    drain_all(&handle).await;
    assert_all_delivered(&sb, rows);
    assert_eq!(handle.counters().dead_lettered, 0);
    handle.shutdown().await;
}

async fn a_dead_endpoint_does_not_stall_the_other(t: TestStore) {
    let store = t.open().await;
    let sb = sandbox(Faults::default(), None).await;
    let (_held, addr) = down_endpoint();
    let dead = format!("http://{addr}/crm/webhook");
    commit_pairs(&store, 5).await;
    let exports: Vec<_> = (0..5)
        .map(|i| delivery::message(delivery::QA, &format!("run-{i}"), &json!({"run_id": i})))
        .collect();
    store
        .commit(WriteBatch {
            outbox: exports,
            ..Default::default()
        })
        .await
        .unwrap();
    let handle = DeliveryWorker::spawn(
        store.clone(),
        &config(Some(dead), Some(sb.info().qa_url), None),
    )
    .unwrap();
    let qa_done = eventually(Duration::from_secs(10), async || {
        sb.state.stats.to_json()["qa"]["exports"] == 5
    })
    .await;
    assert!(qa_done, "{}", sb.state.stats.to_json());
    // The receiver counts an export before the worker has recorded its answer.
    eventually(Duration::from_secs(10), async || {
        store.outbox_counts().await.unwrap().delivered >= 5
    })
    .await;
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!((counts.delivered, counts.pending), (5, 10), "{counts:?}");
    handle.shutdown().await;
}

async fn dead_letters_are_listed_and_replayed(t: TestStore) {
    let store = t.open().await;
    // Key 1: a final 400 on its `initiated` (its `completed` follows it into dead letters).
    // Key 2: 503 until a two-attempt schedule is exhausted.
    let faults = Faults {
        crm_statuses: vec![400],
        ..Faults::default()
    };
    let sb = sandbox(faults, None).await;
    let mut cfg = config(Some(sb.info().crm_url), None, None);
    cfg.delivery.max_parallel_per_endpoint = 1;
    let rows = commit_pairs(&store, 1).await;
    let handle = DeliveryWorker::spawn(store.clone(), &cfg).unwrap();
    let report = handle.drain(DRAIN).await.unwrap();
    assert_eq!((report.pending, report.dead), (0, 2), "{report:?}");
    handle.shutdown().await;

    cfg.delivery.schedule = vec![Duration::ZERO, Duration::from_millis(5)];
    sb.state.faults.write().crm_statuses = vec![503, 503];
    let more = commit_pairs(&store, 1).await;
    let handle = DeliveryWorker::spawn(store.clone(), &cfg).unwrap();
    let report = handle.drain(DRAIN).await.unwrap();
    assert_eq!((report.pending, report.dead), (0, 4), "{report:?}");
    handle.shutdown().await;

    let dead: Vec<OutboxMessage> =
        serde_json::from_str(&gcx(&t, &["outbox", "dead", "--output", "json"])).unwrap();
    assert_eq!(dead.len(), 4);
    let reasons: Vec<String> = dead.iter().filter_map(|m| m.last_error.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("400")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("exhausted")),
        "{reasons:?}"
    );
    let table = gcx(&t, &["outbox", "dead"]);
    assert!(
        table.starts_with("ID") && table.lines().count() == 5,
        "{table}"
    );
    assert_eq!(crm_stats(&sb)["unique_messages"], 0);

    // Replay one by id (its whole key comes back), then the rest by time.
    let first = dead.iter().min_by_key(|m| m.id).unwrap();
    let out: Value = serde_json::from_str(&gcx(
        &t,
        &[
            "outbox",
            "replay",
            "--id",
            &first.id.to_string(),
            "--output",
            "json",
        ],
    ))
    .unwrap();
    // Its key holds exactly its pair (initiated, completed).
    assert_eq!(out["replayed"], 2, "{out}");
    let out: Value = serde_json::from_str(&gcx(
        &t,
        &["outbox", "replay", "--since", "1h", "--output", "json"],
    ))
    .unwrap();
    assert_eq!(out["replayed"], 2, "the other key's pair: {out}");
    let handle = DeliveryWorker::spawn(store.clone(), &cfg).unwrap();
    drain_all(&handle).await;
    handle.shutdown().await;
    assert_all_delivered(&sb, rows + more);
    assert_eq!(store.outbox_counts().await.unwrap().dead, 0);
}

async fn a_worker_killed_mid_delivery_loses_nothing(t: TestStore) {
    let store = t.open().await;
    // Slow answers keep the first worker's attempts in flight when it dies.
    let faults = Faults {
        crm_latency_ms: 2_000,
        ..Faults::default()
    };
    let sb = sandbox(faults, Some(SECRET)).await;
    let cfg = config(Some(sb.info().crm_url), None, Some(SECRET));
    let rows = commit_pairs(&store, 10).await;
    let first = DeliveryWorker::spawn(store.clone(), &cfg).unwrap();
    let in_flight = eventually(Duration::from_secs(5), async || {
        crm_stats(&sb)["deliveries"].as_u64() >= Some(1)
    })
    .await;
    assert!(in_flight);
    drop(first);
    assert_eq!(store.outbox_counts().await.unwrap().pending, rows);

    sb.state.faults.write().crm_latency_ms = 0;
    let second = DeliveryWorker::spawn(store.clone(), &cfg).unwrap();
    drain_all(&second).await;
    assert_all_delivered(&sb, rows);
    second.shutdown().await;
}

async fn rows_committed_before_any_worker_are_delivered_after_restart(t: TestStore) {
    let sb = sandbox(Faults::default(), None).await;
    let rows = {
        let store = t.open().await;
        let rows = commit_pairs(&store, 5).await;
        store.close().await.unwrap();
        rows
    };
    let store = t.open().await;
    let handle =
        DeliveryWorker::spawn(store.clone(), &config(Some(sb.info().crm_url), None, None)).unwrap();
    drain_all(&handle).await;
    assert_all_delivered(&sb, rows);
    handle.shutdown().await;
}

/// Store queries the worker makes over `span` once it has looked at the store once.
async fn looks_while_waiting(handle: &DeliveryHandle, span: Duration) -> u64 {
    assert!(
        eventually(DRAIN, async || handle.counters().looks >= 2).await,
        "the worker never looked at the store"
    );
    // The first look's fetch and next-due read may still be finishing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = handle.counters().looks;
    tokio::time::sleep(span).await;
    handle.counters().looks - before
}

/// The most looks a waiting worker may make over `span`: none on SQLite, whose change
/// counter tells it nothing changed; on PostgreSQL a fetch and a next-due read per idle
/// poll (1 s), plus one.
fn waiting_bound(t: &TestStore, span: Duration) -> u64 {
    if t.is_postgres() {
        2 * span.as_secs() + 2
    } else {
        0
    }
}

async fn a_worker_with_nothing_due_waits_without_queries(t: TestStore) {
    let store = t.open().await;
    let sb = sandbox(Faults::default(), None).await;
    let handle =
        DeliveryWorker::spawn(store.clone(), &config(Some(sb.info().crm_url), None, None)).unwrap();
    let span = Duration::from_secs(2);
    let looks = looks_while_waiting(&handle, span).await;
    assert!(
        looks <= waiting_bound(&t, span),
        "{looks} looks in {span:?}"
    );
    // It still sees new rows at once when told.
    let rows = commit_pairs(&store, 3).await;
    handle.notify();
    drain_all(&handle).await;
    assert_all_delivered(&sb, rows);
    handle.shutdown().await;
}

async fn a_backlog_in_back_off_waits_without_queries(t: TestStore) {
    let store = t.open().await;
    let sb = sandbox(Faults::default(), None).await;
    commit_pairs(&store, 200).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let heads = store
        .due_outbox(delivery::CRM, chrono::Utc::now(), 1000)
        .await
        .unwrap();
    assert_eq!(heads.len(), 200);
    for head in &heads {
        store
            .outbox_retry(head.id, 1, later, "HTTP 503", Some(503))
            .await
            .unwrap();
    }
    let handle =
        DeliveryWorker::spawn(store.clone(), &config(Some(sb.info().crm_url), None, None)).unwrap();
    let span = Duration::from_secs(2);
    let looks = looks_while_waiting(&handle, span).await;
    assert!(
        looks <= waiting_bound(&t, span),
        "{looks} looks in {span:?}"
    );
    assert_eq!(crm_stats(&sb)["deliveries"], 0);
    // A row falling due is taken at its time: bring one key's head forward.
    store
        .outbox_retry(heads[0].id, 1, chrono::Utc::now(), "HTTP 503", Some(503))
        .await
        .unwrap();
    assert!(
        eventually(DRAIN, async || crm_stats(&sb)["unique_messages"] == 2).await,
        "{}",
        crm_stats(&sb)
    );
    handle.shutdown().await;
}

both_backends!(
    a_worker_with_nothing_due_waits_without_queries,
    a_backlog_in_back_off_waits_without_queries,
    signed_messages_are_delivered_in_order,
    a_wrong_secret_is_refused_and_dead_lettered,
    failing_first_requests_are_retried,
    retry_after_is_honoured,
    gone_disables_the_endpoint_until_re_enabled,
    an_endpoint_down_for_a_while_gets_everything_in_order,
    a_dead_endpoint_does_not_stall_the_other,
    dead_letters_are_listed_and_replayed,
    a_worker_killed_mid_delivery_loses_nothing,
    rows_committed_before_any_worker_are_delivered_after_restart,
);

#[tokio::test]
async fn a_malformed_setting_is_named() {
    let t = store_support::sqlite().await;
    let store = t.open().await;
    let spawn_error = |cfg: &Config| match DeliveryWorker::spawn(store.clone(), cfg) {
        Ok(_) => panic!("spawned with a malformed setting"),
        Err(e) => e.to_string(),
    };
    let mut cfg = config(Some("crm.example.com/hook".into()), None, None);
    let err = spawn_error(&cfg);
    assert!(err.starts_with("crm.url"), "{err}");
    cfg.crm.url = Some("https://crm.example.com/hook".into());
    cfg.crm.secret = Some(Secret::new("whsec_s3cr3t!"));
    let err = spawn_error(&cfg);
    assert!(
        err.starts_with("crm.secret") && !err.contains("s3cr3t"),
        "{err}"
    );
    cfg.crm.secret = None;
    cfg.delivery.max_parallel_per_endpoint = 0;
    let err = spawn_error(&cfg);
    assert!(err.contains("delivery.max_parallel_per_endpoint"), "{err}");
}
