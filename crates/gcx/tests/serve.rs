//! `gcx serve` end to end: the HTTP API contract (every route, every error), auth,
//! limits, readiness, OpenAPI, and the lifecycle (graceful shutdown with actions in
//! flight, resume on start). A real sandbox, a real dispatcher, real SQLite. What
//! `/metrics` counts is checked in `serve_metrics.rs`, alone in its process.

mod serve_support;

use std::time::Duration;

use gcx::config::Config;
use gcx::server::service::Service;
use gcx::store::{Store, TriggerState};
use gcx_sandbox::{Faults, LatencySpec, Sandbox};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use serve_support::*;

/// One service in front of one sandbox, and a client for it.
struct Harness {
    sandbox: Sandbox,
    service: Option<Service>,
    config: Config,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn harness(faults: Faults, tune: impl FnOnce(&mut Config)) -> Harness {
    let sandbox = sandbox(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sandbox, dir.path());
    tune(&mut config);
    let service = start_service(&sandbox, &config).await;
    let url = service.url();
    let h = Harness {
        sandbox,
        service: Some(service),
        config,
        url,
        http: client(),
        _dir: dir,
    };
    // Ready means the stream is connected: the tests below expect triggers to flow.
    h.ready().await;
    h
}

impl Harness {
    async fn ready(&self) {
        let (http, url) = (self.http.clone(), self.url.clone());
        eventually("readyz", Duration::from_secs(10), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(format!("{url}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            }
        })
        .await;
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(
            self.http
                .get(format!("{}{path}", self.url))
                .bearer_auth(KEY),
        )
        .await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .bearer_auth(KEY)
                .json(body),
        )
        .await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .bearer_auth(KEY)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    async fn trigger_state(&self, id: &str) -> Option<String> {
        let a = self.get(&format!("/v1/triggers/{id}")).await;
        a.body["state"].as_str().map(str::to_owned)
    }

    async fn wait_completed(&self, id: &str) {
        let id = id.to_owned();
        eventually(
            &format!("trigger {id} completed"),
            Duration::from_secs(10),
            || {
                let id = id.clone();
                async move { self.trigger_state(&id).await.as_deref() == Some("completed") }
            },
        )
        .await;
    }
}

// ---------------------------------------------------------------- intake

#[tokio::test]
async fn one_trigger_is_accepted_then_completes() {
    let h = harness(Faults::default(), |_| {}).await;
    let t = trigger();
    let a = h.post("/v1/triggers", &t).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"correlationId": id_of(&t), "status": "accepted"})
    );
    h.wait_completed(&id_of(&t)).await;

    let view = h.get(&format!("/v1/triggers/{}", id_of(&t))).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["actionType"], "knowledge_search");
    assert_eq!(view.body["attempts"], 1);
    assert!(view.body["output"]["articles"].is_array(), "{}", view.body);
    for field in ["acceptedAt", "updatedAt"] {
        assert!(
            gcx_protocol::time::parse(view.body[field].as_str().unwrap()).is_some(),
            "{field}: {}",
            view.body
        );
    }
    // An upper-case id finds the same trigger.
    let upper = h
        .get(&format!("/v1/triggers/{}", id_of(&t).to_uppercase()))
        .await;
    assert_eq!(upper.status, StatusCode::OK);
}

#[tokio::test]
async fn wait_result_holds_the_answer_until_the_result() {
    let h = harness(Faults::default(), |_| {}).await;
    let t = trigger();
    let a = h.post("/v1/triggers?wait=result&timeout=5s", &t).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "accepted");
    assert_eq!(a.body["state"], "completed");
    assert!(a.body["output"]["articles"].is_array(), "{}", a.body);

    // A batch with wait: one array, each with its state.
    let batch = json!([trigger(), trigger()]);
    let a = h.post("/v1/triggers?wait=result", &batch).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let items = a.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["state"], "completed");
    }
}

#[tokio::test]
async fn wait_result_answers_202_at_its_timeout() {
    let slow = Faults {
        engine_latency_ms: LatencySpec {
            median: 1500,
            p99: 1500,
        },
        ..Faults::default()
    };
    let h = harness(slow, |_| {}).await;
    let a = h
        .post("/v1/triggers?wait=result&timeout=100ms", &trigger())
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "accepted");
    let state = a.body["state"].as_str().unwrap();
    assert!(state == "accepted" || state == "sent", "{}", a.body);
}

#[tokio::test]
async fn a_bad_item_does_not_refuse_its_valid_neighbours() {
    let h = harness(Faults::default(), |_| {}).await;
    // Fixed ids (each harness has its own store), so the answer can be read whole.
    let good1 = trigger_with_id("00000000-0000-4000-8000-000000000001");
    let good2 = trigger_with_id("00000000-0000-4000-8000-000000000002");
    let mut bad = trigger_with_id("00000000-0000-4000-8000-000000000003");
    bad["actionType"] = json!("no_such_action");
    bad["maxRetries"] = json!(9);
    let batch = json!([good1, bad, good2, 42]);
    let a = h.post("/v1/triggers", &batch).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.code(), "invalid_triggers");
    // The error body a client reads: `cargo insta review` (or `INSTA_UPDATE=always`)
    // takes a change.
    insta::assert_json_snapshot!("batch_with_invalid_items", a.body);
    let details = &a.body["error"]["details"];
    assert_eq!(details["accepted"], 2);
    assert_eq!(details["invalid"], 2);
    let items = details["items"].as_array().unwrap();
    let statuses: Vec<&str> = items
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["accepted", "invalid", "accepted", "invalid"]);
    // Every violation of the bad item, each with its path and code.
    let violations = items[1]["violations"].as_array().unwrap();
    let paths: Vec<&str> = violations
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/actionType"), "{violations:?}");
    assert!(paths.contains(&"/maxRetries"), "{violations:?}");
    assert_eq!(items[1]["correlationId"], id_of(&bad));
    assert_eq!(items[3]["violations"][0]["code"], "type");
    // The valid ones were durably accepted and run; the invalid one was never stored.
    h.wait_completed(&id_of(&good1)).await;
    h.wait_completed(&id_of(&good2)).await;
    let missing = h.get(&format!("/v1/triggers/{}", id_of(&bad))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");

    // One invalid object: `invalid_trigger` with its violations.
    let mut one = trigger();
    one.as_object_mut().unwrap().remove("executionContext");
    one["correlationId"] = json!("00000000-0000-4000-8000-000000000004");
    let a = h.post("/v1/triggers", &one).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "invalid_trigger");
    insta::assert_json_snapshot!("one_invalid_trigger", a.body);
    assert_eq!(
        a.body["error"]["details"]["violations"][0]["path"],
        "/executionContext"
    );
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("executionContext"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn duplicates_are_named_and_not_run_twice() {
    let h = harness(Faults::default(), |_| {}).await;
    let t = trigger();
    let first = h.post("/v1/triggers?wait=result", &t).await;
    assert_eq!(first.body["state"], "completed", "{}", first.body);
    // The same correlationId again, upper-case: a duplicate of the finished trigger.
    let mut again = t.clone();
    again["correlationId"] = json!(id_of(&t).to_uppercase());
    let a = h.post("/v1/triggers", &again).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "duplicate");
    assert_eq!(a.body["state"], "completed");
    // Twice in one request: the second is a duplicate of the first.
    let fresh = trigger();
    let a = h.post("/v1/triggers", &json!([fresh, fresh])).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body[0]["status"], "accepted");
    assert_eq!(a.body[1]["status"], "duplicate");
    h.wait_completed(&id_of(&fresh)).await;
    let s = stats(&h.sandbox).await;
    assert_eq!(s["assist"]["executed_unique"], 2, "{s}");
}

#[tokio::test]
async fn bodies_and_queries_that_are_refused() {
    let h = harness(Faults::default(), |c| {
        c.serve.max_batch = 5;
        c.serve.max_body_bytes = 100_000;
        c.serve.request_timeout = Duration::from_secs(10);
    })
    .await;
    let json_type = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/v1/triggers",
            json_type,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/triggers",
            json_type,
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/triggers",
            json_type,
            b"42".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/triggers",
            json_type,
            b"null".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/triggers",
            json_type,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "empty_batch",
        ),
        (
            "/v1/triggers",
            "text/plain",
            serde_json::to_vec(&trigger()).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/triggers",
            json_type,
            serde_json::to_vec(&json!(vec![trigger(); 6])).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
        (
            "/v1/triggers",
            json_type,
            vec![b' '; 200_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "/v1/triggers?wait=forever",
            json_type,
            serde_json::to_vec(&trigger()).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/triggers?timeout=5s",
            json_type,
            serde_json::to_vec(&trigger()).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/triggers?wait=result&timeout=soon",
            json_type,
            serde_json::to_vec(&trigger()).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/triggers?wait=result&timeout=10s",
            json_type,
            serde_json::to_vec(&trigger()).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/triggers?color=blue",
            json_type,
            serde_json::to_vec(&trigger()).unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/outbox/replay",
            json_type,
            b"{\"bogus\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_replay",
        ),
        (
            "/v1/outbox/replay",
            json_type,
            b"{\"since\":\"yesterday\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_replay",
        ),
        (
            "/v1/outbox/replay",
            "text/csv",
            b"id\n1".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (path, content_type, body, status, code) in cases {
        let a = h.post_raw(path, content_type, body).await;
        assert_eq!(a.status, status, "{path} {content_type}: {}", a.body);
        assert_eq!(a.code(), code, "{path}: {}", a.body);
        assert!(
            !a.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{path}: every error says what is wrong"
        );
    }
    // The batch limit is named in the answer.
    let a = h.post("/v1/triggers", &json!(vec![trigger(); 6])).await;
    assert_eq!(a.body["error"]["details"]["maxBatch"], 5);
    // Nothing above was stored or sent.
    let s = stats(&h.sandbox).await;
    assert_eq!(s["assist"]["sends"], 0, "{s}");
}

#[tokio::test]
async fn reads_that_are_refused_and_unknown_routes() {
    let h = harness(Faults::default(), |_| {}).await;
    let cases = [
        (
            "/v1/triggers/not-a-uuid",
            StatusCode::BAD_REQUEST,
            "invalid_correlation_id",
        ),
        (
            "/v1/triggers/9f1c3f0e-2b7a-4d55-8f1e-3c2b1a0d9e8f",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/outbox?status=lost",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/outbox?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/outbox?limit=100000",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/outbox?limit=ten",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/metrics/audit?since=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/metrics/audit?window=1h",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        ("/v1/nothing-here", StatusCode::NOT_FOUND, "not_found"),
        ("/nothing", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, status, code) in cases {
        let a = h.get(path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert_eq!(a.code(), code, "{path}: {}", a.body);
    }
    let a = h
        .send(
            h.http
                .delete(format!("{}/v1/triggers", h.url))
                .bearer_auth(KEY),
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.code(), "method_not_allowed");
}

// ---------------------------------------------------------------- auth and limits

#[tokio::test]
async fn every_v1_route_needs_a_valid_bearer_key() {
    let h = harness(Faults::default(), |_| {}).await;
    let routes: [(&str, &str); 5] = [
        ("POST", "/v1/triggers"),
        ("GET", "/v1/triggers/9f1c3f0e-2b7a-4d55-8f1e-3c2b1a0d9e8f"),
        ("GET", "/v1/metrics/audit"),
        ("GET", "/v1/outbox"),
        ("POST", "/v1/outbox/replay"),
    ];
    let request = |method: &str, path: &str| {
        let url = format!("{}{path}", h.url);
        match method {
            "POST" => h.http.post(url).json(&trigger()),
            _ => h.http.get(url),
        }
    };
    for (method, path) in routes {
        let none = h.send(request(method, path)).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(none.code(), "missing_api_key", "{method} {path}");
        assert_eq!(
            none.headers.get("www-authenticate").unwrap(),
            "Bearer realm=\"gcx\""
        );
        let wrong = h
            .send(request(method, path).bearer_auth("wrong-key-0123456789abcdef"))
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(wrong.code(), "invalid_api_key");
        let basic = h
            .send(request(method, path).basic_auth("user", Some(KEY)))
            .await;
        assert_eq!(basic.code(), "invalid_authorization", "{method} {path}");
        let empty = h
            .send(request(method, path).header("authorization", "Bearer   "))
            .await;
        assert_eq!(empty.code(), "missing_api_key", "{method} {path}");
        // The key hashed in the configuration works as well as the plain one.
        let other = h.send(request(method, path).bearer_auth(OTHER_KEY)).await;
        assert_ne!(other.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Only the POST with the second key's header was accepted and sent.
    let h2 = &h;
    eventually(
        "the one keyed trigger sent",
        Duration::from_secs(5),
        || async move { stats(&h2.sandbox).await["assist"]["sends"] == 1 },
    )
    .await;
}

#[tokio::test]
async fn a_key_in_the_query_string_is_refused_even_with_a_good_header() {
    let h = harness(Faults::default(), |_| {}).await;
    for query in [
        format!("api_key={KEY}"),
        format!("API_KEY={KEY}"),
        format!("api%5Fkey={KEY}"),
        format!("token={KEY}"),
        "access_token=anything".to_owned(),
        format!("innocent={KEY}"),
    ] {
        for path in ["/v1/outbox", "/healthz", "/metrics"] {
            let a = h.get(&format!("{path}?{query}")).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}?{query}");
            assert_eq!(a.code(), "api_key_in_query", "{path}?{query}");
            let message = a.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("Authorization: Bearer"), "{message}");
            assert!(!message.contains(KEY), "the key is never echoed");
        }
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi_are_open() {
    let h = harness(Faults::default(), |_| {}).await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = h.http.get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let health = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn metrics_can_require_a_key() {
    let h = harness(Faults::default(), |c| c.serve.metrics_require_key = true).await;
    let open = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::UNAUTHORIZED);
    let keyed = h.get("/metrics").await;
    assert_eq!(keyed.status, StatusCode::OK);
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit() {
    let h = harness(Faults::default(), |c| c.serve.rate_limit_per_key = 3).await;
    for _ in 0..3 {
        assert_eq!(h.get("/v1/outbox").await.status, StatusCode::OK);
    }
    let limited = h.get("/v1/outbox").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A token comes back within a third of a second; the header rounds up to whole seconds.
    assert_eq!(retry_after, 1);
    // The other key is not held back by the first one's use.
    let other = h
        .send(
            h.http
                .get(format!("{}/v1/outbox", h.url))
                .bearer_auth(OTHER_KEY),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    // Unknown keys never drain a bucket: they are refused before the limit.
    let wrong = h
        .send(
            h.http
                .get(format!("{}/v1/outbox", h.url))
                .bearer_auth("wrong-key-0123456789abcdef"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_service_without_keys_refuses_to_start() {
    let sandbox = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sandbox, dir.path());
    config.serve.api_keys.clear();
    let credentials = gcx::auth::Credentials::new(
        sandbox.base_url(),
        "gcx-demo",
        gcx::config::Secret::new("gcx-demo-secret"),
    );
    let tokens = gcx::auth::TokenProvider::new(
        credentials,
        gcx::http_client::build(Duration::from_secs(5)).unwrap(),
    )
    .unwrap();
    let upstream = gcx::pipeline::Upstream {
        tokens,
        stream_url: sandbox.info().stream_url,
        catalogue: gcx_protocol::Catalogue::builtin(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Service::start(&config, upstream, listener, false)
        .await
        .err()
        .expect("no keys, no service");
    assert!(err.to_string().contains("serve.api_keys"), "{err}");
}

// ---------------------------------------------------------------- audit, outbox, metrics

#[tokio::test]
async fn audit_metrics_report_the_seed_map_and_percentiles() {
    let h = harness(Faults::default(), |_| {}).await;
    let a = h
        .post(
            "/v1/triggers?wait=result",
            &json!([trigger(), trigger(), trigger()]),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let m = h.get("/v1/metrics/audit").await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    assert_eq!(m.body["total_triggers"], 3);
    assert_eq!(m.body["successful"], 3);
    assert_eq!(m.body["failed"], 0);
    assert_eq!(m.body["completion_rate"], 1.0);
    for key in [
        "average_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
    ] {
        assert!(m.body[key].as_f64().unwrap() > 0.0, "{key}: {}", m.body);
    }
    assert_eq!(
        m.body["by_action_type"]["knowledge_search"]["total_triggers"],
        3
    );
    let future = h.get("/v1/metrics/audit?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["total_triggers"], 0);
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    // The CRM refuses the first webhook for good (400): it and its successor for the same
    // trigger become dead letters.
    let faults = Faults {
        crm_statuses: vec![400],
        ..Faults::default()
    };
    let h = harness(faults, |_| {}).await;
    let t = trigger();
    let a = h.post("/v1/triggers?wait=result", &t).await;
    assert_eq!(a.body["state"], "completed", "{}", a.body);
    eventually("two dead letters", Duration::from_secs(10), || async {
        h.get("/v1/outbox?status=dead").await.body["counts"]["dead"] == 2
    })
    .await;
    let dead = h.get("/v1/outbox?status=dead&limit=10").await;
    let messages = dead.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{}", dead.body);
    assert_eq!(messages[0]["status"], "dead");
    // Both rows under the trigger's key: its acceptance time, then its correlationId.
    let key = messages[0]["orderingKey"].as_str().unwrap();
    assert!(key.ends_with(&format!("Z/{}", id_of(&t))), "{key}");
    assert_eq!(messages[1]["orderingKey"], key);
    assert_eq!(messages[0]["lastStatus"], 400);
    assert_eq!(messages[0]["body"]["executionState"], "initiated");

    let replay = h.post("/v1/outbox/replay", &json!({})).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.body);
    assert_eq!(replay.body, json!({"replayed": 2}));
    eventually(
        "replayed webhooks delivered",
        Duration::from_secs(10),
        || async { h.get("/v1/outbox").await.body["counts"]["delivered"] == 2 },
    )
    .await;
    let s = stats(&h.sandbox).await;
    assert_eq!(s["crm"]["by_state"]["initiated"], 1, "{s}");
    assert_eq!(s["crm"]["by_state"]["completed"], 1, "{s}");
    assert_eq!(s["crm"]["order_violations"], 0, "{s}");
    // Nothing left to replay; an empty body means "all".
    let again = h
        .post_raw("/v1/outbox/replay", "application/json", Vec::new())
        .await;
    assert_eq!(again.body, json!({"replayed": 0}));
}

#[tokio::test]
async fn the_served_openapi_document_is_the_checked_in_one() {
    let h = harness(Faults::default(), |_| {}).await;
    let served: Value = h
        .http
        .get(format!("{}/openapi.json", h.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        served == checked_in,
        "docs/openapi.json is stale: run `gcx serve --print-openapi > docs/openapi.json`"
    );
}

/// The served document is the running configuration's: its batch bound and its
/// request timeout (which bounds `wait=result`'s `timeout`).
#[tokio::test]
async fn the_served_openapi_document_follows_the_configuration() {
    let h = harness(Faults::default(), |c| {
        c.serve.max_batch = 7;
        c.serve.request_timeout = Duration::from_millis(2500);
    })
    .await;
    let doc = h.get("/openapi.json").await.body;
    assert_eq!(
        doc["components"]["schemas"]["TriggerRequest"]["oneOf"][1]["maxItems"],
        7
    );
    let timeout = &doc["paths"]["/v1/triggers"]["post"]["parameters"][0]["schema"]["properties"]["timeout"]
        ["pattern"];
    assert_eq!(
        timeout,
        "^((0|[1-9][0-9]{0,2}|1[0-9]{3}|2[0-3][0-9]{2}|24[0-8][0-9]|249[0-8]|2499)ms|(0|1|2)s)$"
    );
    // What the pattern admits at its edges, the service takes; one past it, it refuses.
    for (query, taken) in [
        ("wait=result&timeout=2499ms", true),
        ("wait=result&timeout=2s", true),
        ("wait=result&timeout=2500ms", false),
        ("wait=result&timeout=3s", false),
        ("timeout=1s", false),
    ] {
        let a = h.post(&format!("/v1/triggers?{query}"), &trigger()).await;
        if taken {
            assert!(a.status.is_success(), "{query}: {} {}", a.status, a.body);
        } else {
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}: {}", a.body);
            assert_eq!(a.code(), "invalid_query", "{query}: {}", a.body);
        }
    }
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn readyz_goes_unready_and_intake_closes_on_drain() {
    let h = harness(Faults::default(), |_| {}).await;
    h.service.as_ref().unwrap().begin_drain();
    let ready = h.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.code(), "not_ready");
    assert_eq!(
        ready.body["error"]["details"]["checks"]["intake"],
        "draining"
    );
    assert_eq!(
        ready.body["error"]["details"]["checks"]["stream"],
        "connected"
    );
    let post = h.post("/v1/triggers", &trigger()).await;
    assert_eq!(post.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(post.code(), "shutting_down");
    assert!(post.headers.contains_key("retry-after"));
    // Reads still work while draining.
    assert_eq!(h.get("/v1/outbox").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_acceptance_write_answers_503_naming_the_store() {
    let h = harness(Faults::default(), |_| {}).await;
    // The dispatcher writes through this same store; closed, its next write fails.
    h.service
        .as_ref()
        .unwrap()
        .state()
        .store
        .close()
        .await
        .unwrap();
    let post = h.post("/v1/triggers", &trigger()).await;
    assert_eq!(
        post.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        post.body
    );
    assert_eq!(post.code(), "intake_unavailable");
    let message = post.body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("store write failed"), "{message}");
    assert!(
        message.contains("sending the same request again is safe"),
        "{message}"
    );
    assert!(post.headers.contains_key("retry-after"));
    // The dispatcher halted on it; later requests are told the same reason.
    let again = h.post("/v1/triggers", &trigger()).await;
    assert_eq!(again.status, StatusCode::SERVICE_UNAVAILABLE);
    let message = again.body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("store write failed"), "{message}");
}

#[tokio::test]
async fn readyz_is_unready_while_the_stream_is_down() {
    let h = harness(Faults::default(), |_| {}).await;
    let Harness {
        sandbox,
        service,
        url,
        http,
        ..
    } = h;
    sandbox.shutdown().await.unwrap();
    eventually("readyz unready", Duration::from_secs(10), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(format!("{url}/readyz")).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            status == StatusCode::SERVICE_UNAVAILABLE
                && body["error"]["details"]["checks"]["stream"] == "disconnected"
        }
    })
    .await;
    // healthz says only that the process answers.
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report = service.unwrap().shutdown().await;
    assert!(report.store_closed);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_actions_finish() {
    // Long enough that the drain is still going when the requests below arrive, however
    // late this task runs on a loaded machine (at 200 ms it finished first about 1 run in
    // 60 beside other test loops, and the late request met a closed listener).
    let slow = Faults {
        engine_latency_ms: LatencySpec {
            median: 1_500,
            p99: 1_500,
        },
        ..Faults::default()
    };
    let h = harness(slow, |c| c.serve.drain_timeout = Duration::from_secs(10)).await;
    let batch: Vec<Value> = (0..30).map(|_| trigger()).collect();
    let a = h.post("/v1/triggers", &json!(batch)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    // Wait until the engine has them in flight, then stop.
    eventually("actions in flight", Duration::from_secs(5), || async {
        stats(&h.sandbox).await["assist"]["in_flight"]
            .as_u64()
            .unwrap()
            > 0
    })
    .await;
    let (url, http) = (h.url.clone(), h.http.clone());
    let Harness {
        sandbox,
        service,
        config,
        _dir,
        ..
    } = h;
    let stopping = tokio::spawn(service.unwrap().shutdown());
    // During the drain: unready, and new triggers are refused.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let late = http
        .post(format!("{url}/v1/triggers"))
        .bearer_auth(KEY)
        .json(&trigger())
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
    let report = stopping.await.unwrap();
    assert_eq!(report.unfinished_triggers, 0, "{report:?}");
    assert_eq!(report.pending_webhooks, 0, "{report:?}");
    assert!(report.store_closed);

    let s = stats(&sandbox).await;
    assert_eq!(s["assist"]["executed_unique"], 30, "{s}");
    assert_eq!(s["crm"]["by_state"]["initiated"], 30, "{s}");
    assert_eq!(s["crm"]["by_state"]["completed"], 30, "{s}");
    assert_eq!(s["crm"]["order_violations"], 0, "{s}");
    let store = Store::open_read_only(&config.store).await.unwrap();
    for t in &batch {
        let row = store
            .trigger(id_of(t).parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, TriggerState::Completed);
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn unfinished_triggers_resume_on_the_next_start() {
    let slow = Faults {
        engine_latency_ms: LatencySpec {
            median: 400,
            p99: 400,
        },
        ..Faults::default()
    };
    let h = harness(slow, |c| c.serve.drain_timeout = Duration::from_millis(50)).await;
    let batch: Vec<Value> = (0..20).map(|_| trigger()).collect();
    let a = h.post("/v1/triggers", &json!(batch)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let Harness {
        sandbox,
        service,
        config,
        _dir,
        ..
    } = h;
    let report = service.unwrap().shutdown().await;
    assert!(report.store_closed);
    // The report counts what the store holds unfinished, and there is some to resume.
    let store = Store::open_read_only(&config.store).await.unwrap();
    let unfinished = store.unfinished_triggers().await.unwrap().len();
    store.close().await.unwrap();
    assert!(unfinished > 0, "everything finished within the drain");
    assert_eq!(report.unfinished_triggers, unfinished, "{report:?}");

    // Same data folder: the next start resumes them; the engine runs each once.
    let service = start_service(&sandbox, &config).await;
    let store_config = config.store.clone();
    let http = client();
    let url = service.url();
    for t in &batch {
        let id = id_of(t);
        let (http, url) = (http.clone(), url.clone());
        eventually(
            &format!("{id} completed after resume"),
            Duration::from_secs(15),
            || {
                let (http, url, id) = (http.clone(), url.clone(), id.clone());
                async move {
                    let r = http
                        .get(format!("{url}/v1/triggers/{id}"))
                        .bearer_auth(KEY)
                        .send()
                        .await
                        .unwrap();
                    r.json::<Value>().await.unwrap()["state"] == "completed"
                }
            },
        )
        .await;
    }
    let report = service.shutdown().await;
    assert_eq!(report.unfinished_triggers, 0);
    let s = stats(&sandbox).await;
    assert_eq!(s["assist"]["executed_unique"], 20, "{s}");
    assert_eq!(s["crm"]["by_state"]["initiated"], 20, "{s}");
    assert_eq!(s["crm"]["by_state"]["completed"], 20, "{s}");
    assert_eq!(s["crm"]["order_violations"], 0, "{s}");
    let store = Store::open_read_only(&store_config).await.unwrap();
    let public_key = gcx::audit::keys::read_public_key(
        &store_config
            .data_dir
            .join(gcx::audit::keys::PUBLIC_KEY_FILE),
    )
    .unwrap();
    let options = gcx::audit::VerifyOptions {
        public_keys: vec![public_key],
        ..Default::default()
    };
    let report = gcx::audit::verify(&store, &options).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    // The shutdown flushed a checkpoint covering everything.
    assert_eq!(report.unsigned_tail, 0, "{report:?}");
}

// ---------------------------------------------------------------- TLS

#[tokio::test]
async fn the_rustls_listener_serves_the_same_api() {
    let sandbox = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sandbox, dir.path());
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let cert = std::path::Path::new(fixtures).join("tls-test.crt");
    let key = std::path::Path::new(fixtures).join("tls-test.key");
    let tls = gcx::server::tls::load_server_config(&cert, &key).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = gcx::server::tls::TlsListener::new(tcp, tls).unwrap();
    let credentials = gcx::auth::Credentials::new(
        sandbox.base_url(),
        "gcx-demo",
        gcx::config::Secret::new("gcx-demo-secret"),
    );
    let tokens = gcx::auth::TokenProvider::new(
        credentials,
        gcx::http_client::build(Duration::from_secs(5)).unwrap(),
    )
    .unwrap();
    let upstream = gcx::pipeline::Upstream {
        tokens,
        stream_url: sandbox.info().stream_url,
        catalogue: gcx_protocol::Catalogue::builtin(),
    };
    let service = Service::start(&config, upstream, listener, true)
        .await
        .unwrap();
    let url = service.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    gcx::http_client::install_crypto_provider();
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let health = https.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let t = trigger();
    let answer = https
        .post(format!("{url}/v1/triggers?wait=result"))
        .bearer_auth(KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["state"], "completed");
    // Plain HTTP on the TLS port gets no answer.
    let plain = client()
        .get(format!("http://{}/healthz", service.local_addr()))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
    let report = service.shutdown().await;
    assert!(report.store_closed);

    // A key file that is not a key is refused with its name.
    let err = gcx::server::tls::load_server_config(&cert, &cert).unwrap_err();
    assert!(err.to_string().contains("--tls-key"), "{err}");
}
