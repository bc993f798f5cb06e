//! Retention end to end: `gcx prune` (the binary) and `gcx serve` with
//! `store.keep_finished` delete finished triggers that ended longer ago than that, keep
//! the rest, and refuse a retention shorter than the engine's deduplication window.

mod serve_support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Duration as Age, Utc};
use gcx::config::StoreConfig;
use gcx::store::{Store, TriggerState, TriggerWrite, WriteBatch, json_text};
use serde_json::{Value, json};
use serve_support::{KEY, client, config, eventually, sandbox, start_service};
use uuid::Uuid;

/// A store in `data_dir` holding a trigger that completed two days ago and one that
/// completed now; returns (old, young).
async fn seed(data_dir: &Path) -> (Uuid, Uuid) {
    let store = Store::open(&StoreConfig {
        data_dir: data_dir.to_owned(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let (old, young) = (Uuid::new_v4(), Uuid::new_v4());
    let two_days_ago = Utc::now() - Age::days(2);
    for (id, at) in [(old, two_days_ago), (young, Utc::now())] {
        for write in [accept(id, at), complete(id, at + Age::seconds(1))] {
            store
                .commit(WriteBatch {
                    triggers: vec![write],
                    ..WriteBatch::default()
                })
                .await
                .unwrap();
        }
    }
    store.close().await.unwrap();
    (old, young)
}

fn accept(id: Uuid, at: DateTime<Utc>) -> TriggerWrite {
    TriggerWrite::Accept {
        correlation_id: id,
        action_type: "knowledge_search".into(),
        payload: json_text(&json!({"correlationId": id, "parameterMatrix": {"query": "x"}})),
        at,
    }
}

fn complete(id: Uuid, at: DateTime<Utc>) -> TriggerWrite {
    TriggerWrite::Transition {
        correlation_id: id,
        state: TriggerState::Completed,
        attempts: 1,
        at,
        output: Some(json_text(&json!({"answer": 42}))),
        error: None,
    }
}

/// The stored states of `ids`, read as `gcx audit` would (read-only).
async fn states(data_dir: &Path, ids: &[Uuid]) -> Vec<Option<TriggerState>> {
    let store = Store::open_read_only(&StoreConfig {
        data_dir: data_dir.to_owned(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let mut states = Vec::new();
    for id in ids {
        states.push(store.trigger(*id).await.unwrap().map(|row| row.state));
    }
    store.close().await.unwrap();
    states
}

fn gcx(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gcx"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn gcx_prune_deletes_what_ended_before_keep_and_refuses_a_short_keep() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (old, young) = seed(&data).await;

    // The default keeps 30 days: both stay.
    let default = gcx(&data, &["prune", "--output", "json"]);
    assert_eq!(default.status.code(), Some(0), "{default:?}");
    let counts: Value = serde_json::from_slice(&default.stdout).unwrap();
    assert_eq!(
        (&counts["triggers"], &counts["webhooks"]),
        (&json!(0), &json!(0))
    );

    // Nothing to prune by, and a retention under a day: refused, naming why; nothing goes.
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_gcx"))
        .env("GCX_STORE_KEEP_FINISHED", "0")
        .arg("--data-dir")
        .arg(&data)
        .arg("prune")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(stderr.contains("store.keep_finished is 0"), "{stderr}");
    let short = gcx(&data, &["prune", "--keep", "12h"]);
    assert_eq!(short.status.code(), Some(2), "{short:?}");
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(
        stderr.contains("12h") && stderr.contains("at least 24h"),
        "{stderr}"
    );
    assert_eq!(
        states(&data, &[old, young]).await,
        vec![Some(TriggerState::Completed); 2]
    );

    let pruned = gcx(&data, &["prune", "--keep", "24h", "--output", "json"]);
    assert_eq!(pruned.status.code(), Some(0), "{pruned:?}");
    let counts: Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(counts["triggers"], 1, "{counts}");
    assert_eq!(counts["webhooks"], 0, "{counts}");
    assert_eq!(
        states(&data, &[old, young]).await,
        vec![None, Some(TriggerState::Completed)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcx_serve_prunes_when_keep_finished_is_set() {
    let sandbox = sandbox(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (old, young) = seed(&data).await;
    let mut config = config(&sandbox, &data);
    config.store.keep_finished = Duration::from_secs(24 * 60 * 60);
    let service = start_service(&sandbox, &config).await;
    let url = service.url();
    let status = |id: Uuid| {
        let url = format!("{url}/v1/triggers/{id}");
        async move {
            client()
                .get(url)
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    eventually(
        "the old trigger pruned",
        Duration::from_secs(10),
        || async { status(old).await == 404 },
    )
    .await;
    assert_eq!(status(young).await, 200);
    let metrics = format!("{url}/metrics");
    eventually(
        "the prune counted in /metrics",
        Duration::from_secs(10),
        || async {
            let text = client()
                .get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains(r#"gcx_store_pruned_total{kind="triggers"} 1"#)
        },
    )
    .await;
    service.shutdown().await;
}
