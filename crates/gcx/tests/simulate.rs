//! `gcx simulate` against a real sandbox in this process (PROTOCOL.md sections 4, 4.1,
//! 4.2, 6): every event accounted for, negative tests, 429/5xx storms, async query-back,
//! thresholds and exit codes, same seed same sequence, located scenario errors, exact
//! shard merging, the QA export through the outbox (delivered, or kept pending for a later
//! `gcx outbox deliver`), and the HTML report drawn by headless Chromium.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use gcx::config::{Config, Secret};
use gcx::desk::merge::merge;
use gcx::desk::report::qa_export::QaExport;
use gcx::desk::{RunOptions, RunReport, Scenario, Shard, simulate};
use gcx::store::{OutboxStatus, Store};
use gcx_protocol::AgentState;
use gcx_sandbox::{Faults, Sandbox, SandboxOptions};
use serde_json::Value;

mod sim_support;
use sim_support::{sandbox, small, target};

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

async fn run(sb: &Sandbox, s: &Scenario, dir: &Path) -> RunReport {
    run_with(sb, s, dir, RunOptions::default()).await
}

async fn run_with(sb: &Sandbox, s: &Scenario, dir: &Path, mut opts: RunOptions) -> RunReport {
    opts.out_dir = Some(dir.to_owned());
    simulate(s, &target(sb), opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn events_stats(sb: &Sandbox) -> Value {
    sb.state.stats.to_json()["events"].clone()
}

fn jsonl(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn audit_json(dir: &Path) -> Vec<Value> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("workspace_sim_audit_")
        })
        .expect("the seed's audit file");
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

/// Every event appears once in both audit files, and per agent the accepted events form a
/// valid chain of the protocol's transition table, in generation order.
fn check_audit(dir: &Path, report: &RunReport) {
    let lines = jsonl(dir);
    let arr = audit_json(dir);
    let m = &report.summary.metrics;
    assert_eq!(lines.len() as u64, m.total_events);
    assert_eq!(arr.len() as u64, m.total_events);
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["sequence_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len(), "a sequenceId twice");
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l["n"].as_u64().unwrap());
    let mut state: HashMap<String, AgentState> = HashMap::new();
    for l in &sorted {
        if l["status"] != "accepted" {
            continue;
        }
        let agent = l["agent_id"].as_str().unwrap().to_owned();
        let next: AgentState = serde_json::from_value(l["state"].clone()).unwrap();
        let prev = state.get(&agent).copied();
        assert!(
            gcx_protocol::desktop::is_allowed(prev, next),
            "{prev:?} -> {next:?} accepted"
        );
        state.insert(agent, next);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_every_event_is_accepted_and_accounted_for() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(&small(
        60,
        40.0,
        2.0,
        r#"batch_size = 40
thresholds = ["missing == 0", "state_mismatches == 0", "failed == 0", "successful_injections > 50"]"#,
    ));
    let r = run(&sb, &s, dir.path()).await;
    let m = &r.summary.metrics;
    assert!(m.passed, "{:#?}", m.thresholds);
    assert!(m.total_events > 100, "{}", m.total_events);
    // The summary a user reads, its numbers masked (they follow the machine's timing):
    // `cargo insta review` (or `INSTA_UPDATE=always`) takes a change.
    insta::with_settings!({filters => vec![
        (r"run [0-9a-f-]{36}", "run [run id]"),
        (r"\b[0-9]+(\.[0-9]+)?\b", "N"),
    ]}, {
        insta::assert_snapshot!(gcx::desk::report::table::render(&r.summary));
    });
    assert_eq!(m.successful_injections, m.total_events);
    assert_eq!(
        (m.rejected, m.missing, r.summary.extended.failed),
        (0, 0, 0)
    );
    assert!(m.p50_latency_ms > 0.0 && m.p50_latency_ms <= m.p95_latency_ms);
    let st = events_stats(&sb);
    assert_eq!(st["events_accepted"], m.total_events);
    assert_eq!(st["events_received"], m.total_events);
    assert_eq!(st["duplicates"], 0);
    check_audit(dir.path(), &r);
    // Every output is there and readable.
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["total_events"], m.total_events);
    assert!(summary["histograms"]["response_us"].as_str().unwrap().len() > 10);
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"4\"") && junit.contains("failures=\"0\""),
        "{junit}"
    );
    assert!(dir.path().join("report.html").exists());
    let transitions: u64 = r.summary.transitions.iter().map(|t| t.counts.sent).sum();
    assert_eq!(transitions, m.total_events);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_exactly_the_injected_invalid_transitions_are_rejected() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = small(40, 1.0, 2.0, "invalid_transitions = 0.2\nbatch_size = 25");
    text = text.replace("[load]\nrate = 1", "[load]\nmodel = \"closed\"");
    let r = run(&sb, &scenario(&text), dir.path()).await;
    let (m, x) = (&r.summary.metrics, &r.summary.extended);
    assert!(x.invalid_generated > 20, "{}", x.invalid_generated);
    assert_eq!(m.expected_rejections, x.invalid_generated);
    assert_eq!(m.rejected, x.invalid_generated);
    assert_eq!(m.state_mismatches, 0);
    assert_eq!(m.unexpected_acceptances, 0);
    assert_eq!(m.missing, 0);
    let st = events_stats(&sb);
    assert_eq!(st["events_rejected_transition"], x.invalid_generated);
    assert_eq!(st["events_accepted"], m.successful_injections);
    assert_eq!(
        r.summary.rejection_codes["invalid.transition"],
        x.invalid_generated
    );
    assert!(
        r.summary
            .transitions
            .iter()
            .any(|t| t.invalid && t.counts.rejected > 0)
    );
    check_audit(dir.path(), &r);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_and_5xx_storm_loses_and_duplicates_nothing() {
    let sb = sandbox(Faults {
        events_429_rate: 0.25,
        events_5xx_rate: 0.25,
        seed: 7,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(&small(30, 20.0, 1.5, "batch_size = 20\nmax_lag = \"30s\""));
    let r = run(&sb, &s, dir.path()).await;
    let (m, x) = (&r.summary.metrics, &r.summary.extended);
    assert!(m.retries > 0, "the storm caused retries");
    assert!(
        x.requests > m.retries,
        "every retry is a request of its own"
    );
    assert_eq!(
        m.successful_injections, m.total_events,
        "{:?}",
        r.summary.failure_reasons
    );
    assert_eq!((m.missing, x.failed, m.rejected), (0, 0, 0));
    let st = events_stats(&sb);
    assert_eq!(
        st["events_accepted"], m.total_events,
        "each event processed exactly once"
    );
    assert_eq!(st["events_received"], m.total_events);
    assert!(st["rate_limited"].as_u64().unwrap() > 0);
    check_audit(dir.path(), &r);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_query_back_finds_every_event() {
    let sb = sandbox(Faults {
        events_async_delay_ms: 150,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(&small(40, 30.0, 1.5, "async = true\nbatch_size = 100"));
    let r = run(&sb, &s, dir.path()).await;
    let m = &r.summary.metrics;
    assert!(m.total_events > 50);
    assert_eq!(m.successful_injections, m.total_events);
    assert_eq!(m.missing, 0);
    let e2e = &r.summary.latency.async_e2e;
    assert_eq!(
        e2e.count, m.total_events,
        "every event's processedAt was found"
    );
    assert!(
        e2e.p50 >= 150.0,
        "the async delay shows end to end: {}",
        e2e.p50
    );
    assert!(r.summary.run.async_mode);
    check_audit(dir.path(), &r);
    sb.shutdown().await.unwrap();
}

/// A run that waits (for its next event, then 2 s for async processing and query-back)
/// wakes for its events and answers only: a tick every 20 ms time slice would be over
/// 100 wake-ups while the sandbox holds the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_wakes_only_for_its_work() {
    let sb = sandbox(Faults {
        events_async_delay_ms: 2000,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(&small(2, 4.0, 1.0, "async = true\nseed = 7"));
    let live = std::sync::Arc::new(gcx::desk::live::LiveStats::default());
    let opts = RunOptions {
        live: live.clone(),
        ..RunOptions::default()
    };
    let r = run_with(&sb, &s, dir.path(), opts).await;
    let m = &r.summary.metrics;
    assert!(m.total_events > 0);
    assert_eq!(m.successful_injections, m.total_events);
    assert!(r.summary.run.duration_s >= 2.0, "it waited for processing");
    let wakes = live.loop_wakes.load(std::sync::atomic::Ordering::Relaxed);
    let requests = r.summary.extended.requests;
    eprintln!(
        "{wakes} wake-ups for {} events in {requests} requests",
        m.total_events
    );
    assert!(
        wakes <= 4 * (m.total_events + requests) + 4,
        "{wakes} wake-ups for {} events in {requests} requests",
        m.total_events
    );
    sb.shutdown().await.unwrap();
}

fn gcx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gcx"));
    // Keep the developer's configuration out of the test.
    c.env("HOME", std::env::temp_dir())
        .env_remove("GCX_CONFIG")
        .env_remove("QA_PLATFORM_ENDPOINT");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_threshold_exits_1_with_a_failing_junit_case() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fail.toml");
    std::fs::write(
        &file,
        small(
            10,
            10.0,
            0.5,
            r#"thresholds = ["p95_latency_ms < 0.001", "missing == 0"]"#,
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let base = sb.base_url();
    let run = tokio::task::spawn_blocking(move || {
        gcx()
            .args([
                "simulate",
                file.to_str().unwrap(),
                "--base-url",
                &base,
                "--no-progress",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("FAIL  p95_latency_ms < 0.001"), "{stdout}");
    assert!(stdout.contains("PASS  missing == 0"), "{stdout}");
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"2\"") && junit.contains("failures=\"1\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure") && junit.contains("p95_latency_ms &lt; 0.001"),
        "{junit}"
    );
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_generates_the_same_event_sequence() {
    let sb = sandbox(Faults::default()).await;
    let sequence = |dir: &Path| -> Vec<(u64, u64, String, bool, u64)> {
        let mut l = jsonl(dir);
        l.sort_by_key(|v| v["n"].as_u64().unwrap());
        l.iter()
            .map(|v| {
                (
                    v["n"].as_u64().unwrap(),
                    v["agent"].as_u64().unwrap(),
                    v["state"].as_str().unwrap().to_owned(),
                    v["invalid"].as_bool().unwrap(),
                    // Microseconds: the generated time, not the wall clock.
                    (v["at_ms"].as_f64().unwrap() * 1000.0).round() as u64,
                )
            })
            .collect()
    };
    let mut seqs = Vec::new();
    for seed in [42, 42, 43] {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(&small(
            15,
            15.0,
            1.0,
            &format!("seed = {seed}\ninvalid_transitions = 0.1"),
        ));
        let r = run(&sb, &s, dir.path()).await;
        assert_eq!(r.summary.run.seed, seed);
        seqs.push(sequence(dir.path()));
    }
    assert!(seqs[0].len() > 20);
    assert_eq!(seqs[0], seqs[1], "same seed, same sequence");
    assert_ne!(seqs[0], seqs[2], "another seed, another sequence");
    sb.shutdown().await.unwrap();
}

/// Rates too small (a first arrival past any `Duration`) or too large (arrivals without
/// end) are refused before the run, from the file and from `--rate`, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_out_of_range_are_refused_before_the_run() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.toml");
    let with_rate =
        |rate: &str| small(2, 1.0, 1.0, "").replace("\nrate = 1\n", &format!("\nrate = {rate}\n"));
    std::fs::write(&tiny, with_rate("1e-20")).unwrap();
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, with_rate("1e308")).unwrap();
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![tiny.display().to_string()],
            "tiny.toml:12:8: `load.rate`: arrivals per second must be 0, or 0.001 to 100000, got 1e-20",
        ),
        (
            vec![huge.display().to_string()],
            "huge.toml:12:8: `load.rate`: arrivals per second must be 0, or 0.001 to 100000, got 1e308",
        ),
        (
            vec!["--rate".into(), "1e-300".into()],
            "command line: `--rate`: arrivals per second must be 0.001 to 100000, got 1e-300",
        ),
        (
            vec![
                "--rate".into(),
                "1e308".into(),
                "--agents".into(),
                "0".into(),
            ],
            "command line: `--agents`: must be 1 to 1000000, got 0\ncommand line: `--rate`: arrivals per second must be 0.001 to 100000, got 1e308",
        ),
    ];
    for (args, want) in cases {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcx"));
        c.env("HOME", std::env::temp_dir())
            .env_remove("GCX_CONFIG")
            .env_remove("QA_PLATFORM_ENDPOINT")
            .arg("simulate")
            .args(&args)
            .args([
                "--duration",
                "1s",
                "--base-url",
                &sb.base_url(),
                "--no-progress",
                "--out",
            ])
            .arg(dir.path().join("out"))
            .kill_on_drop(true);
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), c.output())
            .await
            .unwrap_or_else(|_| panic!("{args:?} ran on"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    assert_eq!(sb.state.stats.to_json()["events"]["requests"], 0);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_errors_name_file_line_and_field_before_anything_is_sent() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "rate.toml",
            "name = \"x\"\n[load]\nrate = -5\n",
            "rate.toml:3:8: `load.rate`",
        ),
        (
            "state.toml",
            "[workflow]\nstart = \"lunch\"\n",
            "state.toml:2:9: `workflow.start`: unknown state \"lunch\"",
        ),
        (
            "stuck.toml",
            "\n[workflow.next]\nbusy = { connected = 0, available = 0 }\n",
            "stuck.toml:3:8: `workflow.next.busy`",
        ),
        (
            "metric.toml",
            "thresholds = [\"p97_latency_ms < 3\"]\n",
            "metric.toml:1:15: `thresholds`: unknown metric `p97_latency_ms`",
        ),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let base = sb.base_url();
        let out = tokio::task::spawn_blocking(move || {
            gcx()
                .args([
                    "simulate",
                    file.to_str().unwrap(),
                    "--base-url",
                    &base,
                    "--no-progress",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
    }
    // An unreachable endpoint: named, with the flag that set it, before any event.
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, small(2, 1.0, 0.2, "")).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        gcx()
            .args([
                "simulate",
                file.to_str().unwrap(),
                "--base-url",
                "http://127.0.0.1:1",
                "--no-progress",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--base-url: cannot reach http://127.0.0.1:1/oauth/token"),
        "{stderr}"
    );
    assert_eq!(events_stats(&sb)["requests"], 0, "nothing was sent");
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merge_exactly() {
    let sb = sandbox(Faults::default()).await;
    let s = scenario(&small(30, 30.0, 1.0, "seed = 5"));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = RunOptions {
        shard: Shard { index: 1, count: 2 },
        ..RunOptions::default()
    };
    let two = RunOptions {
        shard: Shard { index: 2, count: 2 },
        ..RunOptions::default()
    };
    let (a, b) = tokio::join!(
        run_with(&sb, &s, d1.path(), one),
        run_with(&sb, &s, d2.path(), two)
    );
    assert_eq!(a.summary.run.agents + b.summary.run.agents, 30);
    let merged = merge(&[a.summary.clone(), b.summary.clone()]).unwrap();
    let m = &merged.metrics;
    assert_eq!(
        m.total_events,
        a.summary.metrics.total_events + b.summary.metrics.total_events
    );
    assert_eq!(
        events_stats(&sb)["events_accepted"],
        m.successful_injections
    );
    assert_eq!(merged.run.shards, vec!["1/2".to_owned(), "2/2".to_owned()]);
    // The merged histogram is the sum of both: its count and maximum say so exactly.
    let r = &merged.latency.response;
    assert_eq!(
        r.count,
        a.summary.latency.response.count + b.summary.latency.response.count
    );
    assert_eq!(
        r.max,
        a.summary
            .latency
            .response
            .max
            .max(b.summary.latency.response.max)
    );
    let p = |x: &gcx::desk::report::summary::Summary| x.series.iter().map(|s| s.sent).sum::<u64>();
    assert_eq!(p(&merged), p(&a.summary) + p(&b.summary));
    // And through the command line.
    let out = tempfile::tempdir().unwrap();
    let (p1, p2, po) = (
        d1.path().to_owned(),
        d2.path().to_owned(),
        out.path().join("merged"),
    );
    let status = tokio::task::spawn_blocking(move || {
        gcx()
            .arg("report")
            .arg("merge")
            .arg(&p1)
            .arg(&p2)
            .arg("--out")
            .arg(&po)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let written: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("merged/summary.json")).unwrap())
            .unwrap();
    assert_eq!(written["total_events"], m.total_events);
    assert_eq!(written["p99_latency_ms"], m.p99_latency_ms);
    sb.shutdown().await.unwrap();
}

/// A Standard Webhooks secret shared by the sandbox's QA receiver and gcx.
const QA_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn qa_sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions {
        qa_secret: Some(QA_SECRET.into()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

/// The configuration of a QA export to `sb`'s receiver, signed, stored in `data`.
fn qa_config(sb: &Sandbox, data: &Path) -> Config {
    let mut config = Config::default();
    config.store.data_dir = data.to_owned();
    config.qa.url = Some(sb.info().qa_url);
    config.qa.secret = Some(Secret::new(QA_SECRET));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qa_export_reaches_the_qa_platform() {
    let sb = qa_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = qa_config(&sb, data.path());
    let store = Store::open(&config.store).await.unwrap();
    let s = scenario(&small(5, 5.0, 0.5, ""));
    let opts = RunOptions {
        qa: Some(
            QaExport::new(store.clone(), &config, std::time::Duration::from_secs(30)).unwrap(),
        ),
        ..RunOptions::default()
    };
    let r = run_with(&sb, &s, dir.path(), opts).await;
    let message = r.qa_export.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(message.status, OutboxStatus::Delivered, "{message:?}");
    assert_eq!(message.attempts, 1);
    assert_eq!(message.endpoint, "qa");
    assert_eq!(message.ordering_key, r.summary.metrics.run_id);
    // Compared through the same text: serde_json's default float parsing may land one
    // unit in the last place away from the `f64` that was serialized.
    let sent: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&r.summary.metrics).unwrap()).unwrap();
    assert_eq!(message.body, sent);
    // The receiver checked the signature (it answers 401 to a bad one) and kept the body.
    let qa = sb.state.stats.to_json()["qa"].clone();
    assert_eq!(qa["exports"], 1);
    assert_eq!(qa["last"]["total_events"], r.summary.metrics.total_events);
    assert_eq!(qa["last"]["run_id"], r.summary.metrics.run_id);
    assert!(
        qa["last"].get("histograms").is_none(),
        "the section 6 shape only"
    );
    store.close().await.unwrap();
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qa_export_the_receiver_refuses_stays_pending_and_goes_out_later() {
    let sb = qa_sandbox().await;
    // The receiver answers 503 at the end of the run, for as long as gcx simulate waits.
    sb.state.faults.write().qa_statuses = vec![503; 20];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.toml");
    std::fs::write(&file, small(5, 5.0, 0.5, "")).unwrap();
    let (out, data) = (dir.path().join("out"), dir.path().join("data"));
    let gcx_with_qa = {
        let (data, url) = (data.clone(), sb.info().qa_url);
        move || {
            let mut c = gcx();
            c.env("QA_PLATFORM_ENDPOINT", &url)
                .env("GCX_QA_WEBHOOK_SECRET", QA_SECRET)
                .arg("--data-dir")
                .arg(&data);
            c
        }
    };
    let simulate = {
        let (gcx, file, out, base) = (
            gcx_with_qa.clone(),
            file.clone(),
            out.clone(),
            sb.base_url(),
        );
        tokio::task::spawn_blocking(move || {
            gcx()
                .arg("simulate")
                .arg(&file)
                .args([
                    "--base-url",
                    &base,
                    "--no-progress",
                    "--drain-timeout",
                    "1s",
                    "--out",
                ])
                .arg(&out)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let stderr = String::from_utf8_lossy(&simulate.stderr);
    assert_eq!(simulate.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "QA export: not delivered after --drain-timeout 1s (1 attempt, last: HTTP 503"
        ) && stderr.contains("`gcx outbox deliver`"),
        "{stderr}"
    );
    assert_eq!(sb.state.stats.to_json()["qa"]["exports"], 0);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let run_id = summary["run_id"].as_str().unwrap().to_owned();

    // The receiver is back: `gcx outbox deliver` sends what the run left pending.
    sb.state.faults.write().qa_statuses.clear();
    let deliver = tokio::task::spawn_blocking(move || {
        gcx_with_qa()
            .args(["outbox", "deliver", "--timeout", "60s"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        deliver.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&deliver.stderr)
    );
    let qa = sb.state.stats.to_json()["qa"].clone();
    assert_eq!(qa["exports"], 1);
    assert_eq!(qa["last"]["run_id"], run_id.as_str());
    assert_eq!(qa["last"]["total_events"], summary["total_events"]);
    let store = Store::open(&qa_config(&sb, &data).store).await.unwrap();
    let rows = store.outbox_list(None, 10).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, OutboxStatus::Delivered);
    assert_eq!(rows[0].ordering_key, run_id);
    assert_eq!(rows[0].attempts, 2);
    store.close().await.unwrap();
    sb.shutdown().await.unwrap();
}

/// Chromium's binary, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs chromium (apt-get install chromium)"
        );
        eprintln!("note: chromium not installed; skipping the HTML rendering test");
        return;
    };
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(&small(
        20,
        20.0,
        1.5,
        "invalid_transitions = 0.1\nthresholds = [\"missing == 0\"]",
    ));
    let r = run(&sb, &s, dir.path()).await;
    let page = r.files.html.clone();
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the script ran to the end:\n{log}"
    );
    assert!(!dom.contains("data-error="), "a script error:\n{dom}");
    for chart in [
        "throughput",
        "latency",
        "percentiles",
        "outcomes",
        "transitions",
    ] {
        let tag = format!("data-chart=\"{chart}\" role=\"img\" data-drawn=\"true\"");
        assert!(dom.contains(&tag), "chart {chart} drawn");
    }
    // Throughput (4) and latency (4) lines and areas, and at least two outcome slices.
    assert!(dom.matches("<path").count() >= 10, "paths drawn");
    for line in log.lines() {
        assert!(
            !(line.contains("CONSOLE") && (line.contains("Error") || line.contains("Uncaught"))),
            "{line}"
        );
    }
    sb.shutdown().await.unwrap();
}
