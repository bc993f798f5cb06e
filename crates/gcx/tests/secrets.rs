//! No secret reaches a log line (at trace level), `/metrics`, the store's files or the
//! audit log: a `gcx serve` child process with a distinctive OAuth client secret, API
//! key and CRM webhook secret runs triggers end to end (webhooks signed and verified),
//! refuses wrong keys, is scraped and stopped; then its stderr, the scrape, every file of
//! its data folder and `gcx audit export` are searched for each secret.

mod serve_support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use gcx_sandbox::{ClientSpec, Sandbox, SandboxOptions};
use serde_json::Value;
use serve_support::{client, eventually, trigger};
use tokio::process::Command;

const CLIENT_ID: &str = "leak-test";
const CLIENT_SECRET: &str = "client-secret-Zq9xK2vLw8";
const API_KEY: &str = "api-key-Hj4mN7pQr2sT5uV8";
/// `whsec_` + base64 of the signing key: both forms are searched for.
const CRM_KEY: &[u8] = b"crm-webhook-key-Bc3dF6gJ9k";

fn gcx() -> &'static str {
    env!("CARGO_BIN_EXE_gcx")
}

fn crm_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(CRM_KEY)
    )
}

/// Every form a secret could leak in.
fn secrets() -> Vec<String> {
    let whsec = crm_secret();
    vec![
        CLIENT_SECRET.to_owned(),
        API_KEY.to_owned(),
        whsec.clone(),
        whsec.trim_start_matches("whsec_").to_owned(),
        String::from_utf8_lossy(CRM_KEY).into_owned(),
        // HTTP Basic credentials of the token request.
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")),
    ]
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in secrets() {
        assert!(
            !text.contains(&secret),
            "{what} holds the secret {secret:?}"
        );
    }
}

async fn sandbox() -> Sandbox {
    let mut options = SandboxOptions {
        crm_secret: Some(crm_secret()),
        ..SandboxOptions::default()
    };
    let spec: ClientSpec =
        format!("{CLIENT_ID}:{CLIENT_SECRET}:agentassist:read,agentassist:trigger")
            .parse()
            .unwrap();
    options.clients.push(spec);
    Sandbox::start(options).await.unwrap()
}

fn write_config(dir: &Path, sandbox: &Sandbox) -> std::path::PathBuf {
    let base = sandbox.base_url();
    let text = format!(
        r#"[genesys]
base_url = "{base}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
[crm]
url = "{base}/crm/webhook"
secret = "{crm}"
[store]
data_dir = "{data}"
audit_store_parameters = true
[serve]
bind = "127.0.0.1:0"
api_keys = ["{API_KEY}"]
metrics_require_key = true
[log]
level = "trace"
"#,
        crm = crm_secret(),
        data = dir.join("data").display()
    );
    let path = dir.join("gcx.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_metrics_store_or_audit_log() {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sandbox);
    let ready = dir.path().join("ready.json");
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(gcx())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let v: Value = serde_json::from_str(&text).unwrap();
            break v["url"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "gcx serve did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let http = client();

    // Triggers end to end, each CRM webhook signed and verified by the sandbox.
    let batch: Vec<Value> = (0..5).map(|_| trigger()).collect();
    let r = http
        .post(format!("{url}/v1/triggers?wait=result"))
        .bearer_auth(API_KEY)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // Wrong keys, and a key in the query string.
    for wrong in ["wrong-key", &API_KEY[..API_KEY.len() - 1]] {
        let r = http
            .get(format!("{url}/v1/outbox"))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http
        .get(format!("{url}/healthz?api_key={API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let sb = sandbox.base_url();
    eventually("webhooks delivered", Duration::from_secs(20), || {
        let http = http.clone();
        let sb = sb.clone();
        async move {
            let stats: Value = http
                .get(format!("{sb}/sandbox/stats"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            stats["crm"]["by_state"]["completed"].as_u64() == Some(5)
        }
    })
    .await;
    let stats: Value = http
        .get(format!("{sb}/sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["crm"]["bad_signatures"], 0, "{stats}");

    let metrics = http
        .get(format!("{url}/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gcx_"), "{metrics}");
    assert_clean("/metrics", metrics.as_bytes());

    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");

    let log = std::fs::read(dir.path().join("stderr.log")).unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("TRACE"),
        "the log is at trace level"
    );
    assert_clean("the trace-level log", &log);
    // The search reads what was stored: the triggers are there, the secrets are not.
    let first_id = batch[0]["correlationId"].as_str().unwrap().to_owned();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert_clean(&path.display().to_string(), &bytes);
            stored.extend(bytes);
        }
    }
    assert!(String::from_utf8_lossy(&stored).contains(&first_id));
    let export = Command::new(gcx())
        .arg("--config")
        .arg(&config)
        .args(["audit", "export"])
        .output()
        .await
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(String::from_utf8_lossy(&export.stdout).contains(&first_id));
    assert_clean("gcx audit export", &export.stdout);
}
