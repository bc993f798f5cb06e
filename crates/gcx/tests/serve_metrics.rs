//! `/metrics` of `gcx serve` after a known run: every series with its exact value. The
//! `metrics` recorder is process-wide, so this is the only test in its binary: another
//! test's triggers would count here too.

mod serve_support;

use std::collections::BTreeMap;
use std::time::Duration;

use gcx_sandbox::Faults;
use serde_json::{Value, json};
use serve_support::*;

/// The page's samples by series (`name{labels}`), comments and blank lines left out.
fn samples(text: &str) -> BTreeMap<&str, f64> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (series, value.parse().unwrap_or_else(|_| panic!("{l}")))
        })
        .collect()
}

#[tokio::test]
async fn prometheus_counts_one_known_run_exactly() {
    let sandbox = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sandbox, dir.path());
    let service = start_service(&sandbox, &config).await;
    let (url, http) = (service.url(), client());
    eventually("readyz", Duration::from_secs(10), || async {
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let answer = http
        .post(format!("{url}/v1/triggers?wait=result"))
        .bearer_auth(KEY)
        .json(&json!([trigger(), trigger()]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    eventually("webhooks delivered", Duration::from_secs(10), || async {
        let outbox: Value = http
            .get(format!("{url}/v1/outbox"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        outbox["counts"]["delivered"] == 4
    })
    .await;

    let r = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let got = samples(&text);
    // Two triggers, two CRM rows each (initiated, completed), one login, the sandbox's
    // default concurrency limit.
    let want = [
        ("gcx_triggers_total{state=\"completed\"}", 2.0),
        ("gcx_triggers_in_flight", 0.0),
        (
            "gcx_serve_triggers_received_total{outcome=\"accepted\"}",
            2.0,
        ),
        (
            "gcx_serve_triggers_received_total{outcome=\"duplicate\"}",
            0.0,
        ),
        (
            "gcx_serve_triggers_received_total{outcome=\"invalid\"}",
            0.0,
        ),
        ("gcx_outbox_delivered_total{endpoint=\"crm\"}", 4.0),
        ("gcx_outbox_messages{status=\"pending\"}", 0.0),
        ("gcx_outbox_messages{status=\"delivered\"}", 4.0),
        ("gcx_outbox_messages{status=\"dead\"}", 0.0),
        ("gcx_outbox_backlog", 0.0),
        ("gcx_token_refreshes_total", 1.0),
        ("gcx_concurrency_limit", 50.0),
        ("gcx_serve_stream_connected", 1.0),
        ("gcx_store_pruned_total{kind=\"triggers\"}", 0.0),
        ("gcx_store_pruned_total{kind=\"webhooks\"}", 0.0),
        ("gcx_slot_wait_seconds_count", 2.0),
        ("gcx_slot_wait_seconds_bucket{le=\"+Inf\"}", 2.0),
        ("gcx_send_to_result_seconds_count", 2.0),
        ("gcx_send_to_result_seconds_bucket{le=\"+Inf\"}", 2.0),
    ];
    for (series, value) in want {
        assert_eq!(got.get(series), Some(&value), "{series} in:\n{text}");
    }
    // Histograms with gcx's buckets, not summaries: 16 bounds and +Inf each.
    for histogram in ["gcx_slot_wait_seconds", "gcx_send_to_result_seconds"] {
        let buckets: Vec<&&str> = got
            .keys()
            .filter(|k| k.starts_with(&format!("{histogram}_bucket{{")))
            .collect();
        assert_eq!(
            buckets.len(),
            gcx::server::prometheus::LATENCY_BUCKETS_SECONDS.len() + 1,
            "{buckets:?}"
        );
    }
    assert!(!text.contains("quantile"), "{text}");
    service.shutdown().await;
}
