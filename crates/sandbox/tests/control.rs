//! End-to-end tests of the control API (PROTOCOL.md section 7): `/sandbox/faults` and
//! `/sandbox/stats`.

mod rest_support;

use gcx_sandbox::{Faults, SandboxOptions};
use rest_support::*;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn faults_show_every_setting_with_the_spec_defaults() {
    let s = start_default().await;
    let a = s.get("/sandbox/faults").await;
    assert_eq!(a.status, 200);
    let want = json!({"token_lifetime_secs":86400,          "max_concurrent_actions":50,
       "engine_latency_ms":{"median":0,"p99":0},   "action_timeout_ms":30000,
       "result_failure_rate":0.0,            "send_429_rate":0.0,  "send_503_rate":0.0,
       "sends_per_second":null,              "drop_connection_every":null,
       "closing_every_secs":null,            "heartbeat_interval_ms":30000,
       "handshake_timeout_ms":10000,
       "events_requests_per_minute":null,    "events_429_rate":0.0, "events_5xx_rate":0.0,
       "events_async_delay_ms":0,
       "crm_statuses":[],  "crm_latency_ms":0,  "qa_statuses":[],  "qa_latency_ms":0,
       "genesys_requests_per_minute":null,   "genesys_event_error_rate":0.0,
       "genesys_event_retryable_share":0.0,  "genesys_processing_lag_ms":0,
       "genesys_withheld_permissions":{},
       "genesys_heartbeat_ms":30000,         "genesys_socket_closing_every_ms":0,
       "genesys_socket_closing_grace_ms":2000,
       "seed":0});
    assert_eq!(a.body, want);
}

#[tokio::test]
async fn put_merges_a_subset_and_applies_it_at_once() {
    let s = start_default().await;
    let a = s
        .put_faults(json!({"events_429_rate": 1.0, "seed": 9, "crm_statuses": [503, 429]}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["events_429_rate"], 1.0);
    assert_eq!(a.body["crm_statuses"], json!([503, 429]));
    assert_eq!(a.body["token_lifetime_secs"], 86_400);
    let shown = s.get("/sandbox/faults").await.body;
    assert_eq!(shown, a.body);
    assert_eq!(s.sandbox.state.faults.read().seed, 9);

    // Applied: every events request is now refused with 429.
    let token = s.token().await;
    let r = s
        .post_events(&token, false, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    assert_eq!(r.status, 429);

    // A second subset keeps the first.
    let a = s.put_faults(json!({"events_429_rate": 0.0})).await;
    assert_eq!(a.body["seed"], 9);
    let r = s
        .post_events(&token, false, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn bad_settings_are_refused_with_every_reason_and_nothing_changes() {
    let s = start_default().await;
    let before = s.get("/sandbox/faults").await.body;
    let a = s
        .put_faults(json!({
            "send_429_rate": 2.0,
            "heartbeat_interval_ms": 0,
            "no_such_fault": true,
            "seed": "seven",
            "events_5xx_rate": 0.5,
        }))
        .await;
    assert_eq!(a.status, 400);
    let errors: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    for name in [
        "no_such_fault",
        "seed",
        "send_429_rate",
        "heartbeat_interval_ms",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(name)),
            "{name}: {errors:?}"
        );
    }
    assert_eq!(s.get("/sandbox/faults").await.body, before);

    for body in [&b"not json"[..], b"[1,2]", b"\"x\""] {
        let r = s
            .http
            .put(format!("{}/sandbox/faults", s.base))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    }
    assert_eq!(s.get("/sandbox/faults").await.body, before);
}

#[tokio::test]
async fn faults_given_at_start_are_shown() {
    let s = start(SandboxOptions {
        faults: Faults {
            events_async_delay_ms: 25,
            seed: 3,
            ..Faults::default()
        },
        ..SandboxOptions::default()
    })
    .await;
    let f = s.get("/sandbox/faults").await.body;
    assert_eq!(f["events_async_delay_ms"], 25);
    assert_eq!(f["seed"], 3);
}

#[tokio::test]
async fn stats_count_and_reset() {
    let s = start_default().await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let first = ev(agent, BUSY);
    s.post_events(&token, false, &json!([first.clone(), ev(agent, WRAPPING)]))
        .await;
    s.post_events(&token, true, &json!([first])).await;
    s.post_raw(
        EVENTS,
        Some(&token),
        Some("application/json"),
        b"[{}]".to_vec(),
    )
    .await;
    s.post_raw(EVENTS, None, None, Vec::new()).await;

    let stats = s.stats().await;
    for section in ["oauth", "assist", "events", "crm", "qa"] {
        assert!(stats[section].is_object(), "{section} missing: {stats}");
    }
    assert_eq!(
        stats["events"],
        json!({"requests":4,"events_received":3,"events_accepted":1,
               "events_rejected_transition":1,"events_rejected_schema":1,
               "duplicates":1,"rate_limited":0})
    );
    assert_eq!(stats["oauth"]["tokens_issued"], 1);

    let r = s
        .http
        .post(format!("{}/sandbox/stats/reset", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats = s.stats().await;
    for (k, v) in stats["events"].as_object().unwrap() {
        assert_eq!(v, 0, "{k}");
    }
    assert_eq!(stats["oauth"]["tokens_issued"], 0);
    // Counting goes on after a reset.
    s.post_events(&token, false, &json!([ev(agent, AVAILABLE)]))
        .await;
    assert_eq!(s.events_stats().await["events_accepted"], 1);
}
