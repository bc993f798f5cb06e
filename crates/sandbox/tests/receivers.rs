//! The CRM and QA receivers against real HTTP requests, signed with the
//! `standardwebhooks` crate (an implementation that is not ours).

use std::time::{Duration, Instant};

use gcx_sandbox::{Faults, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use standardwebhooks::Webhook;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn start(options: SandboxOptions) -> Sandbox {
    Sandbox::start(options).await.unwrap()
}

/// POSTs `body` to `path`, signed with `secret` (if any) at `timestamp`.
async fn post(
    sandbox: &Sandbox,
    path: &str,
    id: &str,
    body: &Value,
    secret: Option<&str>,
    timestamp: i64,
) -> reqwest::Response {
    let body = serde_json::to_vec(body).unwrap();
    let mut request = client()
        .post(format!("{}{path}", sandbox.base_url()))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = secret {
        let signature = Webhook::new(secret)
            .unwrap()
            .sign(id, timestamp, &body)
            .unwrap();
        request = request.header("webhook-signature", signature);
    }
    request.body(body).send().await.unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn crm_body(correlation_id: &str, state: &str) -> Value {
    json!({
        "correlationId": correlation_id, "actionType": "CREATE_CASE", "agentId": "agent-1",
        "sessionId": "s-1", "timestamp": "2024-01-01T00:00:00.000Z", "executionState": state,
    })
}

async fn stats(sandbox: &Sandbox) -> Value {
    client()
        .get(format!("{}/sandbox/stats", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn signed_deliveries_are_accepted_and_bad_ones_refused() {
    let sandbox = start(SandboxOptions {
        crm_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let body = crm_body("c1", "initiated");

    let good = post(
        &sandbox,
        "/crm/webhook",
        "msg_1",
        &body,
        Some(SECRET),
        now(),
    )
    .await;
    assert_eq!(good.status(), 200);

    let wrong_key = post(
        &sandbox,
        "/crm/webhook",
        "msg_2",
        &body,
        Some(OTHER_SECRET),
        now(),
    )
    .await;
    assert_eq!(wrong_key.status(), 401);
    let stale = post(
        &sandbox,
        "/crm/webhook",
        "msg_3",
        &body,
        Some(SECRET),
        now() - 301,
    )
    .await;
    assert_eq!(stale.status(), 401);
    let future = post(
        &sandbox,
        "/crm/webhook",
        "msg_4",
        &body,
        Some(SECRET),
        now() + 301,
    )
    .await;
    assert_eq!(future.status(), 401);
    let unsigned = post(&sandbox, "/crm/webhook", "msg_5", &body, None, now()).await;
    assert_eq!(unsigned.status(), 401);

    // Several signatures: one from a rotated-out key and the current one.
    let raw = serde_json::to_vec(&body).unwrap();
    let ts = now();
    let old = Webhook::new(OTHER_SECRET)
        .unwrap()
        .sign("msg_6", ts, &raw)
        .unwrap();
    let new = Webhook::new(SECRET)
        .unwrap()
        .sign("msg_6", ts, &raw)
        .unwrap();
    let both = client()
        .post(format!("{}/crm/webhook", sandbox.base_url()))
        .header("webhook-id", "msg_6")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", format!("{old} {new}"))
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 200);

    let crm = stats(&sandbox).await["crm"].clone();
    assert_eq!(crm["deliveries"], 6);
    assert_eq!(crm["bad_signatures"], 4);
    assert_eq!(crm["unique_messages"], 2);
    assert_eq!(crm["by_state"]["initiated"], 2);
}

#[tokio::test]
async fn without_a_secret_anything_is_accepted() {
    let sandbox = start(SandboxOptions::default()).await;
    let response = post(
        &sandbox,
        "/crm/webhook",
        "msg_1",
        &crm_body("c1", "initiated"),
        None,
        0,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(stats(&sandbox).await["crm"]["unique_messages"], 1);
}

#[tokio::test]
async fn configured_statuses_are_answered_in_order_then_200() {
    let sandbox = start(SandboxOptions {
        faults: Faults {
            crm_statuses: vec![503, 429, 410],
            ..Faults::default()
        },
        ..Default::default()
    })
    .await;
    let body = crm_body("c1", "initiated");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = post(&sandbox, "/crm/webhook", "msg_1", &body, None, now()).await;
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        seen.push((r.status().as_u16(), retry_after));
    }
    assert_eq!(
        seen,
        vec![
            (503, None),
            (429, Some("1".into())),
            (410, None),
            (200, None)
        ]
    );
    let faults: Value = client()
        .get(format!("{}/sandbox/faults", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["crm_statuses"], json!([]));
    let crm = stats(&sandbox).await["crm"].clone();
    assert_eq!(crm["deliveries"], 4);
    assert_eq!(crm["unique_messages"], 1);
}

#[tokio::test]
async fn statuses_set_at_runtime_apply_to_the_next_requests() {
    let sandbox = start(SandboxOptions::default()).await;
    let put = client()
        .put(format!("{}/sandbox/faults", sandbox.base_url()))
        .json(&json!({"crm_statuses": [500]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let body = crm_body("c1", "initiated");
    let first = post(&sandbox, "/crm/webhook", "msg_1", &body, None, now()).await;
    let second = post(&sandbox, "/crm/webhook", "msg_1", &body, None, now()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (500, 200)
    );
}

#[tokio::test]
async fn counts_each_message_once_and_finds_order_violations() {
    let sandbox = start(SandboxOptions::default()).await;
    let send = |id: &'static str, cid: &'static str, state: &'static str| {
        let sandbox = &sandbox;
        async move {
            post(
                sandbox,
                "/crm/webhook",
                id,
                &crm_body(cid, state),
                None,
                now(),
            )
            .await
            .status()
        }
    };
    // In order, the completion delivered twice (a retry after a lost answer).
    assert_eq!(send("m1", "c1", "initiated").await, 200);
    assert_eq!(send("m2", "c1", "completed").await, 200);
    assert_eq!(send("m2", "c1", "completed").await, 200);
    // Out of order: failed before initiated.
    assert_eq!(send("m3", "c2", "failed").await, 200);
    assert_eq!(send("m4", "c2", "initiated").await, 200);
    // An initiated that was refused does not count as arrived.
    sandbox.state.faults.write().crm_statuses = vec![503];
    assert_eq!(send("m5", "c3", "initiated").await, 503);
    assert_eq!(send("m6", "c3", "completed").await, 200);

    let crm = stats(&sandbox).await["crm"].clone();
    assert_eq!(crm["deliveries"], 7);
    assert_eq!(crm["unique_messages"], 5);
    assert_eq!(
        crm["by_state"],
        json!({"initiated": 2, "completed": 2, "failed": 1})
    );
    assert_eq!(crm["order_violations"], 2);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let sandbox = start(SandboxOptions {
        faults: Faults {
            crm_latency_ms: 60,
            ..Faults::default()
        },
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let r = post(
        &sandbox,
        "/crm/webhook",
        "m1",
        &crm_body("c1", "initiated"),
        None,
        now(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn qa_exports_are_verified_counted_and_kept() {
    let sandbox = start(SandboxOptions {
        qa_secret: Some(SECRET.into()),
        faults: Faults {
            qa_statuses: vec![500],
            ..Faults::default()
        },
        ..Default::default()
    })
    .await;
    let export = json!({"run_id": "r1", "total_events": 10, "passed": true});
    let bad = post(
        &sandbox,
        "/qa/results",
        "m1",
        &export,
        Some(OTHER_SECRET),
        now(),
    )
    .await;
    assert_eq!(bad.status(), 401);
    let failed = post(&sandbox, "/qa/results", "m1", &export, Some(SECRET), now()).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(
        stats(&sandbox).await["qa"],
        json!({"exports": 0, "last": null})
    );
    let ok = post(&sandbox, "/qa/results", "m1", &export, Some(SECRET), now()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        stats(&sandbox).await["qa"],
        json!({"exports": 1, "last": export})
    );
    // The CRM receiver has no secret here and is not affected.
    assert_eq!(stats(&sandbox).await["crm"]["deliveries"], 0);
}
