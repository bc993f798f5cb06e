//! `gcx trigger` end to end: the real binary against a sandbox started in this process,
//! with its store in a temporary directory and the sandbox's CRM receiver as the CRM.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gcx_sandbox::{Faults, LatencySpec, Sandbox, SandboxOptions};
use serde_json::{Value, json};

async fn sandbox(faults: Faults) -> Sandbox {
    Sandbox::start(SandboxOptions {
        faults,
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

fn valid(i: usize) -> Value {
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": format!("refund policy {i}"), "languageCode": "en-US"},
        "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                             "sessionId": format!("session-{i}"), "interactionType": "voice"},
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "maxRetries": 3
    })
}

/// The kinds of bad line the issue names, in turn.
fn invalid(i: usize) -> String {
    let mut v = valid(i);
    match i % 6 {
        0 => return "{not json".into(),
        1 => v["parameterMatrix"]["query"] = json!(42),
        2 => v["parameterMatrix"]["languageCode"] = Value::Null,
        3 => v["actionType"] = json!("teleport"),
        4 => v["correlationId"] = json!("not-a-uuid"),
        _ => v["parameterMatrix"]["query"] = json!("x".repeat(70_000)),
    }
    v.to_string()
}

/// Writes `n` triggers, every `every_invalid`-th one invalid; returns the file and the
/// 1-based line numbers of the invalid ones.
fn write_file(dir: &Path, n: usize, every_invalid: usize) -> (PathBuf, Vec<usize>) {
    let mut text = String::new();
    let mut bad = Vec::new();
    for i in 0..n {
        if every_invalid > 0 && i % every_invalid == every_invalid - 1 {
            text.push_str(&invalid(bad.len()));
            bad.push(i + 1);
        } else {
            text.push_str(&valid(i).to_string());
        }
        text.push('\n');
    }
    let path = dir.join("triggers.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, bad)
}

fn gcx(sb: &Sandbox, data_dir: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcx"));
    c.arg("--base-url")
        .arg(sb.base_url())
        .arg("--data-dir")
        .arg(data_dir)
        .env("CRM_WEBHOOK_URL", sb.info().crm_url)
        .env_remove("GCX_CRM_WEBHOOK_SECRET")
        .env_remove("GENESYSCLOUD_OAUTHCLIENT_ID")
        .env_remove("GENESYSCLOUD_OAUTHCLIENT_SECRET")
        .env_remove("GENESYS_CLIENT_ID")
        .env_remove("GENESYS_CLIENT_SECRET")
        .kill_on_drop(true);
    c
}

async fn run(mut c: tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(90), c.output())
        .await
        .expect("gcx finished in time")
        .unwrap()
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stats(sb: &Sandbox) -> Value {
    sb.state.stats.to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_triggers_with_invalid_ones_mixed_in() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, bad) = write_file(dir.path(), 10_000, 20);
    let mut c = gcx(&sb, &dir.path().join("data"));
    // No CRM here (the kill -9 test checks it): 19,000 webhooks would dominate the run.
    c.env_remove("CRM_WEBHOOK_URL");
    c.arg("trigger").arg(&file).args(["--output", "json"]);
    let out = run(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let s = summary(&out);
    let valid = 10_000 - bad.len() as u64;
    assert_eq!(s["total_triggers"], valid);
    assert_eq!(s["successful"], valid);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["invalid"], bad.len() as u64);
    assert_eq!(s["completion_rate"], 1.0);
    assert!(s["p99_latency_ms"].as_f64().unwrap() >= s["p50_latency_ms"].as_f64().unwrap());
    assert!(s.get("crm").is_none(), "{s}");
    // The first 100 invalid lines are named, with their violations, the rest counted;
    // nothing invalid was sent.
    for line in &bad[..100] {
        assert!(
            stderr.contains(&format!("invalid trigger at line {line} ")),
            "line {line}: {stderr}"
        );
    }
    assert!(!stderr.contains(&format!("invalid trigger at line {} ", bad[100])));
    assert!(
        stderr.contains(&format!("{} more invalid triggers in", bad.len() - 100)),
        "{stderr}"
    );
    assert!(stderr.contains("/parameterMatrix/query"));
    assert!(stderr.contains("/correlationId"));
    assert!(stderr.contains("/actionType"));
    let st = stats(&sb);
    assert_eq!(st["assist"]["executed_unique"], valid);
    assert_eq!(st["assist"]["rejected_invalid"], 0);
    assert_eq!(st["crm"]["deliveries"], 0);
}

/// What a user reads from `gcx trigger` on the mixed example: the summary table on
/// stdout, each invalid trigger with its line and violations on stderr (log lines
/// left out). Timings vary and are masked. `cargo insta review` (or
/// `INSTA_UPDATE=always`) takes a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_reads_as_written() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/triggers.jsonl");
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.env("HOME", dir.path()).arg("trigger").arg(&file);
    let out = run(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = regex::escape(file.to_str().unwrap());
    insta::with_settings!({filters => vec![
        (path.as_str(), "[FILE]"),
        (r"(?m)^(average_latency_ms|p50_latency_ms|p95_latency_ms|p99_latency_ms|elapsed_ms) +\S+$", "$1 [ms]"),
    ]}, {
        insta::assert_snapshot!(format!(
            "exit {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            out.status.code()
        ));
    });
}

/// How many of `file`'s triggers the store in `data` holds, and how many of them in a
/// final state.
async fn in_store(data: &Path, file: &Path) -> (u64, u64) {
    let config = gcx::config::StoreConfig {
        data_dir: data.to_owned(),
        ..Default::default()
    };
    let store = gcx::store::Store::open_read_only(&config).await.unwrap();
    let (mut stored, mut finished) = (0, 0);
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let trigger: Value = serde_json::from_str(line).unwrap();
        let id = trigger["correlationId"].as_str().unwrap().parse().unwrap();
        if let Some(row) = store.trigger(id).await.unwrap() {
            stored += 1;
            finished += u64::from(!row.state.is_unfinished());
        }
    }
    store.close().await.unwrap();
    (stored, finished)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_a_rerun_completes_the_rest_once() {
    let sb = sandbox(Faults {
        max_concurrent_actions: 20,
        engine_latency_ms: LatencySpec {
            median: 20,
            p99: 20,
        },
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (file, _) = write_file(dir.path(), 3_000, 0);

    let mut c = gcx(&sb, &data);
    c.arg("trigger").arg(&file).args(["--output", "json"]);
    let mut child = c.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sb.state.stats.assist.results_completed.get() < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first run made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    let first = sb.state.stats.assist.executed_unique.get();
    assert!(first < 3_000, "the first run finished before the kill");
    let (stored_before, finished_before) = in_store(&data, &file).await;

    let mut c = gcx(&sb, &data);
    c.arg("trigger").arg(&file).args(["--output", "json"]);
    let out = run(c).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["successful"], 3000);
    // Every trigger the first run had finished is counted done and not sent again; so
    // may be one it left unfinished that the rerun resumed and finished before reaching
    // it in the file; one it never stored is not.
    assert!(
        finished_before > 0,
        "the kill came before anything finished"
    );
    let already_done = s["already_done"].as_u64().unwrap();
    assert!(
        (finished_before..=stored_before).contains(&already_done),
        "{already_done} not within {finished_before}..={stored_before}: {s}"
    );
    let st = stats(&sb);
    assert_eq!(st["assist"]["executed_unique"], 3000, "{st}");
    assert!(st["assist"]["max_in_flight_observed"].as_u64().unwrap() <= 20);
    // The CRM saw both states of every trigger, in order (re-deliveries after the kill
    // share their webhook-id, so they count once).
    assert_eq!(st["crm"]["by_state"]["initiated"], 3000, "{st}");
    assert_eq!(st["crm"]["by_state"]["completed"], 3000, "{st}");
    assert_eq!(st["crm"]["order_violations"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_validates_and_sends_nothing() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, bad) = write_file(dir.path(), 12, 4);
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg(&file).arg("--dry-run");
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} valid, {} invalid", 12 - bad.len(), bad.len())),
        "{stderr}"
    );
    assert_eq!(stats(&sb)["assist"]["sends"], 0);
    assert_eq!(stats(&sb)["oauth"]["tokens_issued"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_ids_fills_in_missing_correlation_ids() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut v = valid(1);
    v.as_object_mut().unwrap().remove("correlationId");
    let file = dir.path().join("t.json");
    // A JSON array this time.
    std::fs::write(&file, json!([v.clone(), v]).to_string()).unwrap();

    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg(&file).arg("--dry-run");
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/correlationId") && stderr.contains("required"),
        "{stderr}"
    );

    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger")
        .arg(&file)
        .args(["--assign-ids", "--output", "json"]);
    let out = run(c).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)["successful"], 2);
    assert_eq!(stats(&sb)["assist"]["executed_unique"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_works_and_failed_results_make_the_exit_code_non_zero() {
    let sb = sandbox(Faults {
        result_failure_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        let lines = format!("{}\n{}\n", valid(1), valid(2));
        stdin.write_all(lines.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("total_triggers") && table.contains("completion_rate"),
        "{table}"
    );
    let st = stats(&sb);
    assert_eq!(st["crm"]["by_state"]["failed"], 2);
    assert_eq!(st["crm"]["order_violations"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_and_settings_are_named() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();

    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg(dir.path().join("nope.jsonl"));
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.jsonl"));

    let (file, _) = write_file(dir.path(), 2, 0);
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.env("GENESYSCLOUD_OAUTHCLIENT_ID", "gcx-demo")
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "wrong-secret-abc")
        .arg("trigger")
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("genesys.client_id") && stderr.contains("\"gcx-demo\""),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-secret-abc"));

    // A stream URL that refuses: the sandbox's port with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcx"));
    c.args(["--base-url", &dead, "--data-dir"])
        .arg(dir.path().join("data2"))
        .arg("trigger")
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&dead));
}

/// An endless input stops at its first line with a clear error: nothing is sent, no
/// login is tried, and the command returns having read 256 KiB of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_zero_stops_at_line_1() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg("/dev/zero");
    let out = run(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/dev/zero:1: a trigger's text runs past 262144 bytes (256 KiB) without ending; reading stopped there and nothing was sent"),
        "{stderr}"
    );
    assert_eq!(stats(&sb)["oauth"]["tokens_issued"], 0);
}

/// No valid trigger at all is a failure (exit 1), and a million invalid ones print the
/// first hundred's violations and a count, not half a gigabyte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_without_a_valid_trigger_exits_1_with_bounded_output() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("million.jsonl");
    std::fs::write(&file, "{}\n".repeat(1_000_000)).unwrap();
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg(&file);
    let out = run(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    assert!(
        out.stderr.len() < 64 * 1024,
        "{} bytes printed",
        out.stderr.len()
    );
    assert!(stderr.contains("invalid trigger at line 100 "), "{stderr}");
    assert!(!stderr.contains("invalid trigger at line 101 "), "{stderr}");
    assert!(
        stderr.contains("999900 more invalid triggers in"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no valid trigger in")
            && stderr.contains("(1000000 invalid); nothing sent"),
        "{stderr}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("total_triggers") && table.contains("1000000"),
        "{table}"
    );

    // A small all-invalid file, and an empty one, exit 1 too.
    let (bad, _) = write_file(dir.path(), 3, 1);
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg(&bad);
    let out = run(c).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let mut c = gcx(&sb, &dir.path().join("data"));
    c.arg("trigger").arg(&empty);
    let out = run(c).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stats(&sb)["oauth"]["tokens_issued"], 0);
}
