//! What the `gcx serve` tests share: a real sandbox on port 0, a real `gcx serve`
//! (in-process [`Service`], or the binary as a child process) over a SQLite store in a
//! temporary folder, an HTTP client, and trigger payloads.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gcx::auth::{Credentials, TokenProvider};
use gcx::config::{Config, Secret};
use gcx::pipeline::Upstream;
use gcx::server::service::Service;
use gcx_protocol::Catalogue;
use gcx_sandbox::{Faults, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

pub const KEY: &str = "test-key-0123456789abcdef";
pub const OTHER_KEY: &str = "other-key-0123456789abcdef";

pub async fn sandbox(faults: Faults) -> Sandbox {
    Sandbox::start(SandboxOptions {
        faults,
        ..Default::default()
    })
    .await
    .expect("sandbox starts")
}

/// A configuration for a `gcx serve` in front of `sandbox`, storing in `data_dir`.
pub fn config(sandbox: &Sandbox, data_dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.genesys.base_url = Some(sandbox.base_url());
    c.genesys.client_id = Some("gcx-demo".into());
    c.genesys.client_secret = Some(Secret::new("gcx-demo-secret"));
    c.crm.url = Some(sandbox.info().crm_url);
    c.store.data_dir = data_dir.to_owned();
    c.serve.bind = "127.0.0.1:0".into();
    c.serve.api_keys = vec![
        Secret::new(KEY),
        Secret::new(gcx::server::api_keys::hash_key(OTHER_KEY)),
    ];
    // Webhook retries in milliseconds, so a test sees them.
    c.delivery.schedule = vec![Duration::ZERO, Duration::from_millis(50)];
    c
}

/// Starts a `gcx serve` in this process.
pub async fn start_service(sandbox: &Sandbox, config: &Config) -> Service {
    let credentials = Credentials::new(
        sandbox.base_url(),
        "gcx-demo",
        Secret::new("gcx-demo-secret"),
    )
    .with_scopes([
        gcx_protocol::oauth::SCOPE_ASSIST_READ,
        gcx_protocol::oauth::SCOPE_ASSIST_TRIGGER,
    ]);
    let http = gcx::http_client::build(Duration::from_secs(10)).expect("http client");
    let tokens = TokenProvider::new(credentials, http).expect("token provider");
    let upstream = Upstream {
        tokens,
        stream_url: sandbox.info().stream_url,
        catalogue: Catalogue::builtin(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Service::start(config, upstream, listener, false)
        .await
        .expect("service starts")
}

pub fn client() -> reqwest::Client {
    gcx::http_client::build(Duration::from_secs(30)).expect("http client")
}

/// A valid knowledge_search trigger with a fresh correlationId.
pub fn trigger() -> Value {
    trigger_with_id(&uuid::Uuid::new_v4().to_string())
}

pub fn trigger_with_id(id: &str) -> Value {
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": "refund policy for enterprise accounts", "languageCode": "en-US"},
        "executionContext": {
            "agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "sessionId": "session-987654321",
            "interactionType": "voice"
        },
        "correlationId": id,
        "maxRetries": 2
    })
}

pub fn id_of(trigger: &Value) -> String {
    trigger["correlationId"]
        .as_str()
        .expect("correlationId")
        .to_owned()
}

/// The sandbox's `/sandbox/stats`.
pub async fn stats(sandbox: &Sandbox) -> Value {
    client()
        .get(format!("{}/sandbox/stats", sandbox.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON")
}

/// Polls `probe` every 20 ms until it returns true; panics naming `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `gcx` binary of this build.
pub fn gcx() -> &'static str {
    env!("CARGO_BIN_EXE_gcx")
}

/// The service's configuration file: SQLite in `dir`, or PostgreSQL at `database_url`.
pub fn write_config(
    dir: &Path,
    base_url: &str,
    batch: usize,
    delivery: &str,
    database_url: Option<&str>,
) -> PathBuf {
    let database_url = database_url
        .map(|url| format!("database_url = \"{url}\""))
        .unwrap_or_default();
    let text = format!(
        r#"[genesys]
base_url = "{base_url}"
client_id = "gcx-demo"
client_secret = "gcx-demo-secret"
[crm]
url = "{base_url}/crm/webhook"
[store]
data_dir = "{data}"
{database_url}
[serve]
bind = "127.0.0.1:0"
api_keys = ["{KEY}"]
rate_limit_per_key = 0
max_batch = {batch}
drain_timeout = "20s"
[delivery]
{delivery}
[log]
level = "warn,gcx::cluster=info"
"#,
        data = dir.join("data").display()
    );
    let path = dir.join("gcx.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `gcx serve` (its log to `dir/stderr.log`) and waits for its ready file; returns
/// the child and its URL.
pub async fn spawn_serve(config: &Path, dir: &Path) -> (Child, String) {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(gcx())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
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

/// The account of the triggers in `batches` (arrays of trigger JSON) against the store
/// in `data_dir` (or PostgreSQL at `database_url`) and the sandbox's `stats`: how each
/// ended, against what the engine and the CRM saw.
pub async fn account_of(
    database_url: Option<&str>,
    data_dir: &Path,
    batches: &[Value],
    stats: &Value,
) -> gcx::bench::soak::account::Account {
    let store = gcx::store::Store::open_read_only(&gcx::config::StoreConfig {
        data_dir: data_dir.to_owned(),
        database_url: database_url.map(Secret::new),
        ..gcx::config::StoreConfig::default()
    })
    .await
    .unwrap();
    let ids: Vec<uuid::Uuid> = batches
        .iter()
        .flat_map(|b| b.as_array().unwrap())
        .map(|t| uuid::Uuid::parse_str(&id_of(t)).unwrap())
        .collect();
    let account = gcx::bench::soak::account::take(&store, &ids, stats, chrono::Utc::now())
        .await
        .unwrap();
    store.close().await.unwrap();
    account
}
