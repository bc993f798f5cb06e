//! `gcx sandbox` as a child process: the ready line, the ready file, a working server,
//! graceful exit on SIGTERM, and every reason for invalid flags.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn gcx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gcx"))
}

/// Waits for the child to exit, killing it after `limit`.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("gcx sandbox did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sandbox_starts_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let mut child = gcx()
        .args(["sandbox", "--port", "0", "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim_end()
        .strip_prefix("sandbox ready: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let port: u16 = base
        .strip_prefix("http://127.0.0.1:")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 0);

    let info: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    assert_eq!(info["base_url"], base);
    assert_eq!(
        info["stream_url"],
        format!("ws://127.0.0.1:{port}/api/v2/agentassist/stream")
    );
    assert_eq!(info["crm_url"], format!("{base}/crm/webhook"));
    assert_eq!(info["qa_url"], format!("{base}/qa/results"));
    // Only the ready file in the folder: the temporary one was renamed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // It serves: a token, then an events batch.
    let http = gcx::http_client::build(Duration::from_secs(10)).unwrap();
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth("gcx-demo", Some("gcx-demo-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let event = serde_json::json!([{
        "sequenceId": uuid::Uuid::new_v4(),
        "timestamp": "2026-11-21T10:00:00.123456789Z",
        "interactionId": uuid::Uuid::new_v4(),
        "agentId": uuid::Uuid::new_v4(),
        "state": "routing/agent/available",
        "eventType": "routing/agent/state",
    }]);
    let r = http
        .post(format!("{base}/api/v2/interactions/events"))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["status"], "accepted");

    // SIGTERM: a graceful stop, exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(
        http.get(format!("{base}/")).send().await.is_err(),
        "still serving after exit"
    );
}

#[test]
fn invalid_flags_are_refused_with_every_reason() {
    let out = gcx()
        .args([
            "sandbox",
            "--events-429-rate",
            "1.5",
            "--send-503-rate=-0.1",
            "--query-cap",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["events_429_rate", "send_503_rate", "--query-cap"] {
        assert!(err.contains(name), "{name} not named in {err}");
    }
}

#[test]
fn every_flag_has_help() {
    let out = gcx().args(["sandbox", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bind",
        "--port",
        "--ready-file",
        "--client",
        "--crm-secret",
        "--query-cap",
        "--token-lifetime-secs",
        "--engine-latency-ms",
        "--events-requests-per-minute",
        "--events-async-delay-ms",
        "--crm-statuses",
        "--seed",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
    // Every flag line is followed by a description (no bare flags).
    let bare: Vec<&str> = help
        .lines()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].trim_start().starts_with("--") && w[1].trim().is_empty())
        .map(|w| w[0])
        .collect();
    assert!(bare.is_empty(), "flags without help: {bare:?}");
    assert!(
        !help.contains("--query-page-size"),
        "hidden testing aid shown"
    );
}
