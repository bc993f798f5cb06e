//! End-to-end tests of the events endpoint and query-back (PROTOCOL.md 4, 4.1, 4.2)
//! against a real sandbox on port 0.

mod rest_support;

use gcx_sandbox::SandboxOptions;
use gcx_sandbox::faults::draw;
use rest_support::*;
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Errors and the order of checks

#[tokio::test]
async fn auth_errors_are_401_then_403() {
    let s = start_default().await;
    let batch = json!([ev(Uuid::new_v4(), BUSY)]);
    let body = serde_json::to_vec(&batch).unwrap();

    let a = s
        .post_raw(EVENTS, None, Some("application/json"), body.clone())
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_code(), "authentication.required");
    a.assert_rest_headers();

    let a = s
        .post_raw(
            EVENTS,
            Some("sbx_nope"),
            Some("application/json"),
            body.clone(),
        )
        .await;
    assert_eq!(a.status, 401);

    let reader = s.token_for("reader", "reader-secret").await;
    let a = s.post_events(&reader, false, &batch).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_code(), "missing.permissions");
    a.assert_rest_headers();

    let poster = s.token_for("poster", "poster-secret").await;
    let a = s
        .query(&poster, &json!({"agentIds": [Uuid::new_v4()]}))
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_code(), "missing.permissions");
    let a = s
        .post_raw(QUERY, None, Some("application/json"), b"{}".to_vec())
        .await;
    assert_eq!(a.status, 401);

    let e = s.events_stats().await;
    assert_eq!(e["requests"], 3);
    assert_eq!(e["events_received"], 0);
}

#[tokio::test]
async fn each_check_answers_before_the_next() {
    let s = start_default().await;
    let token = s.token().await;
    let too_many: Vec<Value> = (0..501).map(|_| ev(Uuid::new_v4(), BUSY)).collect();
    let too_many = serde_json::to_vec(&too_many).unwrap();
    let mut too_big = b"[".to_vec();
    too_big.extend(std::iter::repeat_n(b' ', 1024 * 1024));
    too_big.extend(b"]");

    // 401 before everything, even a body that is too large and of the wrong type.
    let a = s
        .post_raw(EVENTS, None, Some("text/plain"), too_big.clone())
        .await;
    assert_eq!(a.status, 401);

    // 413 (bytes, then events) before 415.
    let a = s
        .post_raw(EVENTS, Some(&token), Some("text/plain"), too_big.clone())
        .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.error_code(), "request.entity.too.large");
    let a = s
        .post_raw(EVENTS, Some(&token), Some("text/plain"), too_many.clone())
        .await;
    assert_eq!(a.status, 413);
    // Exactly 500 is fine (and of the wrong type: 415).
    let five_hundred: Vec<Value> = (0..500).map(|_| ev(Uuid::new_v4(), BUSY)).collect();
    let a = s
        .post_raw(
            EVENTS,
            Some(&token),
            Some("text/plain"),
            serde_json::to_vec(&five_hundred).unwrap(),
        )
        .await;
    assert_eq!(a.status, 415);
    assert_eq!(a.error_code(), "unsupported.media.type");

    // 415 before 400: not JSON and not said to be.
    let a = s
        .post_raw(EVENTS, Some(&token), None, b"not json".to_vec())
        .await;
    assert_eq!(a.status, 415);

    // 400: not JSON, not an array, empty, schema, async parameter.
    for body in [&b"not json"[..], b"{}", b"[]", b"[1]"] {
        let a = s
            .post_raw(
                EVENTS,
                Some(&token),
                Some("application/json"),
                body.to_vec(),
            )
            .await;
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(a.error_code(), "bad.request");
    }
    let a = s
        .post_raw(
            &format!("{EVENTS}?async=maybe"),
            Some(&token),
            Some("application/json"),
            serde_json::to_vec(&json!([ev(Uuid::new_v4(), BUSY)])).unwrap(),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body["message"].as_str().unwrap().contains("async"));

    // With faults: 429 before 503 before 413.
    s.put_faults(json!({"events_5xx_rate": 1.0})).await;
    let a = s
        .post_raw(EVENTS, Some(&token), Some("text/plain"), too_big.clone())
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(a.error_code(), "service.unavailable");
    a.assert_rest_headers();
    s.put_faults(json!({"events_429_rate": 1.0})).await;
    let a = s
        .post_raw(EVENTS, Some(&token), Some("text/plain"), too_big.clone())
        .await;
    assert_eq!(a.status, 429);
    assert_eq!(a.error_code(), "too.many.requests.retry.after");
    a.assert_rest_headers();
    // 401 still first.
    let a = s
        .post_raw(EVENTS, None, Some("application/json"), b"[]".to_vec())
        .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn schema_errors_list_every_bad_event_and_process_nothing() {
    let s = start_default().await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let good = ev(agent, BUSY);
    let mut bad_state = ev(agent, BUSY);
    bad_state["state"] = json!("routing/agent/asleep");
    let mut bad_id = ev(agent, BUSY);
    bad_id["sequenceId"] = json!("sim-1-abc");
    let a = s
        .post_events(&token, false, &json!([good.clone(), bad_state, bad_id]))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "bad.request");
    let errors = a.body["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert!(indexes.contains(&1) && indexes.contains(&2), "{errors:?}");
    for e in errors {
        assert!(e["field"].is_string() && e["message"].is_string());
    }

    // A sequenceId twice: the whole batch refused, the other event not processed either.
    let other = ev(agent, BUSY);
    let a = s
        .post_events(
            &token,
            false,
            &json!([good.clone(), other.clone(), good.clone()]),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["errors"][0]["index"], 2);
    assert_eq!(a.body["errors"][0]["field"], "sequenceId");
    let (found, not_found, _) = s
        .query_all(
            &token,
            json!({"sequenceIds": [good["sequenceId"], other["sequenceId"]]}),
        )
        .await;
    assert!(found.is_empty());
    assert_eq!(not_found.len(), 2);

    let e = s.events_stats().await;
    assert_eq!(e["requests"], 2);
    assert_eq!(e["events_rejected_schema"], 6);
    assert_eq!(e["events_received"], 0);
}

// ---------------------------------------------------------------------------------------
// Headers

#[tokio::test]
async fn every_rest_answer_carries_correlation_and_rate_headers() {
    let s = start_default().await;
    let token = s.token().await;
    let with_id = |req: reqwest::RequestBuilder| req.header("ININ-Correlation-Id", "corr-123");

    let answers = [
        with_id(
            s.http
                .post(format!("{}/oauth/token", s.base))
                .basic_auth("gcx-demo", Some("gcx-demo-secret"))
                .form(&[("grant_type", "client_credentials")]),
        ),
        with_id(
            s.http
                .post(format!("{}/oauth/token", s.base))
                .form(&[("grant_type", "client_credentials")]),
        ),
        with_id(
            s.http
                .post(format!("{}{EVENTS}", s.base))
                .bearer_auth(&token)
                .json(&json!([ev(Uuid::new_v4(), BUSY)])),
        ),
        with_id(s.http.post(format!("{}{EVENTS}", s.base)).json(&json!([]))),
        with_id(
            s.http
                .post(format!("{}{QUERY}", s.base))
                .bearer_auth(&token)
                .json(&json!({"agentIds": [Uuid::new_v4()]})),
        ),
        with_id(s.http.get(format!("{}/api/v2/nothing/here", s.base))),
        with_id(s.http.get(format!("{}{EVENTS}", s.base))),
    ];
    let mut statuses = Vec::new();
    for req in answers {
        let r = req.send().await.unwrap();
        statuses.push(r.status().as_u16());
        assert_eq!(
            r.headers()["ININ-Correlation-Id"],
            "corr-123",
            "{:?}",
            r.url()
        );
        assert_eq!(r.headers()["inin-ratelimit-allowed"], "1000000");
        assert_eq!(r.headers()["inin-ratelimit-reset"], "60");
        assert!(r.headers().contains_key("inin-ratelimit-count"));
    }
    assert_eq!(statuses, [200, 401, 200, 401, 200, 404, 405]);

    // Without one, a fresh UUID each time.
    let a = s
        .post_events(&token, false, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    let b = s
        .post_events(&token, false, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    let (ca, cb) = (
        a.header("ININ-Correlation-Id").unwrap(),
        b.header("ININ-Correlation-Id").unwrap(),
    );
    assert!(Uuid::parse_str(ca).is_ok());
    assert_ne!(ca, cb);
    // The events window counts this tenant's requests.
    assert_eq!(b.header("inin-ratelimit-count"), Some("3"));

    // Unknown paths answer a Genesys 404.
    let a = s.get("/api/v2/nothing/here").await;
    assert_eq!(a.error_code(), "not.found");
}

#[tokio::test]
async fn requests_per_minute_window_refuses_with_retry_after() {
    let s = start_default().await;
    s.put_faults(json!({"events_requests_per_minute": 3})).await;
    let token = s.token().await;
    let other = s.token_for("other", "other-secret").await;
    for i in 1..=3 {
        let a = s
            .post_events(&token, true, &json!([ev(Uuid::new_v4(), BUSY)]))
            .await;
        assert_eq!(a.status, 202);
        assert_eq!(a.header("inin-ratelimit-allowed"), Some("3"));
        assert_eq!(
            a.header("inin-ratelimit-count"),
            Some(i.to_string().as_str())
        );
        let reset: u64 = a.header("inin-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset));
    }
    let a = s
        .post_events(&token, true, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    assert_eq!(a.status, 429);
    assert_eq!(a.error_code(), "too.many.requests.retry.after");
    a.assert_rest_headers();
    let retry: u64 = a.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The window is per tenant.
    let b = s
        .post_events(&other, true, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    assert_eq!(b.status, 202);
    // Lifting the limit applies at once.
    s.put_faults(json!({"events_requests_per_minute": null}))
        .await;
    let a = s
        .post_events(&token, true, &json!([ev(Uuid::new_v4(), BUSY)]))
        .await;
    assert_eq!(a.status, 202);

    let e = s.events_stats().await;
    assert_eq!(e["requests"], 6);
    assert_eq!(e["rate_limited"], 1);
    assert_eq!(e["events_received"], 5);
}

#[tokio::test]
async fn seeded_429_and_503_draws_repeat_per_request_number() {
    let seed = 42;
    let s = start(SandboxOptions {
        faults: gcx_sandbox::Faults {
            events_429_rate: 0.3,
            events_5xx_rate: 0.3,
            seed,
            ..Default::default()
        },
        ..SandboxOptions::default()
    })
    .await;
    let token = s.token().await;
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for n in 1..=40u64 {
        let id = n.to_string();
        expected.push(if draw(seed, "events_429", &id) < 0.3 {
            429
        } else if draw(seed, "events_5xx", &id) < 0.3 {
            503
        } else {
            200
        });
        let a = s
            .post_events(&token, false, &json!([ev(Uuid::new_v4(), BUSY)]))
            .await;
        if a.status != 200 {
            a.error_code();
            a.assert_rest_headers();
        }
        got.push(a.status.as_u16());
    }
    assert_eq!(got, expected);
    let count = |c| got.iter().filter(|&&s| s == c).count() as u64;
    assert!(
        count(429) > 0 && count(503) > 0 && count(200) > 0,
        "{got:?}"
    );
    let e = s.events_stats().await;
    assert_eq!(e["requests"], 40);
    assert_eq!(e["rate_limited"], count(429));
    assert_eq!(e["events_received"], count(200));
    assert_eq!(e["events_accepted"], count(200));
}

// ---------------------------------------------------------------------------------------
// Sync processing

#[tokio::test]
async fn sync_mode_applies_the_exact_transition_table() {
    let s = start_default().await;
    let token = s.token().await;
    // One agent per (from, to) pair, all in one batch: [from, to] for each.
    let mut batch = Vec::new();
    let mut pairs = Vec::new();
    for from in STATES {
        for to in STATES {
            let agent = Uuid::new_v4();
            batch.push(ev(agent, from));
            batch.push(ev(agent, to));
            pairs.push((agent, from, to));
        }
    }
    let a = s.post_events(&token, false, &json!(batch)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(Uuid::parse_str(a.body["batchId"].as_str().unwrap()).is_ok());
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    for (i, (_, from, to)) in pairs.iter().enumerate() {
        let first = &results[2 * i];
        let second = &results[2 * i + 1];
        assert_eq!(first["sequenceId"], batch[2 * i]["sequenceId"]);
        assert_eq!(first["status"], "accepted", "first event may be any state");
        assert_eq!(second["sequenceId"], batch[2 * i + 1]["sequenceId"]);
        if allowed(from, to) {
            assert_eq!(second["status"], "accepted", "{from} -> {to}");
            assert!(second.get("code").is_none());
        } else {
            assert_eq!(second["status"], "rejected", "{from} -> {to}");
            assert_eq!(second["code"], "invalid.transition");
            assert!(second["message"].as_str().unwrap().contains(from));
        }
        assert!(second.get("duplicate").is_none());
    }

    // A rejected event left its agent where it was: the allowed next state from `from`
    // is accepted now.
    let mut follow = Vec::new();
    for (agent, from, to) in &pairs {
        if !allowed(from, to) && from == &AVAILABLE {
            follow.push(ev(*agent, BUSY));
        }
    }
    let a = s.post_events(&token, false, &json!(follow)).await;
    assert!(statuses(&a).iter().all(|s| s == "accepted"), "{}", a.body);

    let e = s.events_stats().await;
    let rejected = pairs.iter().filter(|(_, f, t)| !allowed(f, t)).count() as u64;
    assert_eq!(e["events_received"], 50 + follow.len() as u64);
    assert_eq!(e["events_rejected_transition"], rejected);
    assert_eq!(e["events_accepted"], 50 + follow.len() as u64 - rejected);
}

#[tokio::test]
async fn one_agents_events_are_checked_in_array_order() {
    let s = start_default().await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let cycle = [
        AVAILABLE,
        BUSY,
        CONNECTED,
        DISCONNECTED,
        WRAPPING,
        AVAILABLE,
        BUSY,
        AVAILABLE,
    ];
    let batch: Vec<Value> = cycle.iter().map(|st| ev(agent, st)).collect();
    let a = s.post_events(&token, false, &json!(batch)).await;
    assert_eq!(statuses(&a), vec!["accepted"; 8]);
    // Out of order: wrapping after available is refused, then busy still allowed.
    let a = s
        .post_events(
            &token,
            false,
            &json!([ev(agent, WRAPPING), ev(agent, BUSY)]),
        )
        .await;
    assert_eq!(statuses(&a), ["rejected", "accepted"]);
}

#[tokio::test]
async fn repeated_sequence_ids_are_not_processed_again() {
    let s = start_default().await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let first = ev(agent, BUSY);
    let refused = ev(agent, WRAPPING);
    let a = s
        .post_events(&token, false, &json!([first.clone(), refused.clone()]))
        .await;
    assert_eq!(statuses(&a), ["accepted", "rejected"]);
    let first_batch = a.body["batchId"].clone();

    // Again, with a new event between: the repeats show their first status, marked.
    let next = ev(agent, CONNECTED);
    let a = s
        .post_events(
            &token,
            false,
            &json!([refused.clone(), next.clone(), first.clone()]),
        )
        .await;
    let r = a.body["results"].as_array().unwrap();
    assert_eq!(r[0]["status"], "rejected");
    assert_eq!(r[0]["code"], "invalid.transition");
    assert_eq!(r[0]["duplicate"], true);
    assert_eq!(r[1]["status"], "accepted");
    assert!(r[1].get("duplicate").is_none());
    assert_eq!(r[2]["status"], "accepted");
    assert_eq!(r[2]["duplicate"], true);
    // `first` (busy) was not applied again: the agent is connected, so disconnected is fine.
    let a = s
        .post_events(&token, false, &json!([ev(agent, DISCONNECTED)]))
        .await;
    assert_eq!(statuses(&a), ["accepted"]);

    // Query-back still shows the originals, in their first batch.
    let (found, _, _) = s
        .query_all(&token, json!({"sequenceIds": [first["sequenceId"]]}))
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["batchId"], first_batch);

    // Async repeats too.
    let a = s.post_events(&token, true, &json!([first.clone()])).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.body["received"], 1);

    let e = s.events_stats().await;
    assert_eq!(e["events_received"], 2 + 3 + 1 + 1);
    assert_eq!(e["duplicates"], 3);
    assert_eq!(e["events_accepted"], 3);
    assert_eq!(e["events_rejected_transition"], 1);
}

// ---------------------------------------------------------------------------------------
// Async and query-back

#[tokio::test]
async fn async_batches_are_all_found_by_query_back_page_by_page() {
    let s = start(SandboxOptions {
        query_page_size: 7,
        ..SandboxOptions::default()
    })
    .await;
    let token = s.token().await;
    let agents: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let cycle = [AVAILABLE, BUSY, CONNECTED, DISCONNECTED, WRAPPING];
    let mut sent: Vec<Value> = Vec::new();
    let mut batches = Vec::new();
    // 5 batches of 6 events: each agent walks the cycle, one step per event.
    let mut step = [0usize; 3];
    for b in 0..5 {
        let mut batch = Vec::new();
        for i in 0..6 {
            let k = i % 3;
            let mut state = cycle[step[k] % 5];
            step[k] += 1;
            if b == 2 && i == 0 {
                state = CONNECTED; // out of order for agent 0: rejected, state kept
                step[0] -= 1;
            }
            batch.push(ev(agents[k], state));
        }
        let a = s.post_events(&token, true, &json!(batch)).await;
        assert_eq!(a.status, 202);
        assert_eq!(a.body["received"], 6);
        a.assert_rest_headers();
        batches.push(a.body["batchId"].clone());
        sent.extend(batch);
    }

    // By agents, following cursors (7 per page): every event once, in receipt order.
    let (found, _, pages) = s.query_all(&token, json!({"agentIds": agents})).await;
    assert_eq!(pages, 5);
    let ids: Vec<&Value> = found.iter().map(|e| &e["sequenceId"]).collect();
    let want: Vec<&Value> = sent.iter().map(|e| &e["sequenceId"]).collect();
    assert_eq!(ids, want);
    for e in &found {
        assert!(e["receivedAt"].as_str().unwrap().ends_with('Z'));
        assert_ne!(e["status"], "pending");
        assert!(e["processedAt"].is_string(), "{e}");
        for key in ["batchId", "agentId", "interactionId", "state"] {
            assert!(e[key].is_string(), "{key} in {e}");
        }
    }
    let rejected: Vec<&Value> = found.iter().filter(|e| e["status"] == "rejected").collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["code"], "invalid.transition");
    assert_eq!(rejected[0]["batchId"], batches[2]);

    // By batchId: that batch's events only.
    let (found, _, pages) = s.query_all(&token, json!({"batchId": batches[3]})).await;
    assert_eq!(pages, 1);
    let ids: Vec<&Value> = found.iter().map(|e| &e["sequenceId"]).collect();
    let want: Vec<&Value> = sent[18..24].iter().map(|e| &e["sequenceId"]).collect();
    assert_eq!(ids, want);

    // By sequenceIds, in receipt order whatever the order asked, with the unknown ones.
    let unknown = Uuid::new_v4().to_string();
    let mut asked: Vec<Value> = sent.iter().map(|e| e["sequenceId"].clone()).collect();
    asked.reverse();
    asked.push(json!(unknown));
    let (found, not_found, pages) = s.query_all(&token, json!({"sequenceIds": asked})).await;
    assert_eq!(pages, 5);
    assert_eq!(found.len(), 30);
    assert_eq!(found[0]["sequenceId"], sent[0]["sequenceId"]);
    assert_eq!(not_found, [json!(unknown)]);

    // An unknown batchId is a 404.
    let a = s.query(&token, &json!({"batchId": Uuid::new_v4()})).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "not.found");
}

#[tokio::test]
async fn query_requests_need_exactly_one_key() {
    let s = start_default().await;
    let token = s.token().await;
    let id = Uuid::new_v4();
    for body in [
        json!({}),
        json!({"sequenceIds": [id], "batchId": id}),
        json!({"agentIds": [id], "sequenceIds": [id]}),
        json!({"sequenceIds": []}),
        json!({"sequenceIds": ["not-a-uuid"]}),
        json!({"agentIds": [id], "cursor": "abc"}),
        json!([1]),
    ] {
        let a = s.query(&token, &body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.error_code(), "bad.request");
        a.assert_rest_headers();
    }
    let a = s
        .post_raw(QUERY, Some(&token), Some("text/plain"), b"{}".to_vec())
        .await;
    assert_eq!(a.status, 415);
    let a = s.query(&token, &json!({"agentIds": [id]})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["events"], json!([]));
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_events() {
    let s = start_default().await;
    let mine = s.token().await;
    let theirs = s.token_for("other", "other-secret").await;
    let agent = Uuid::new_v4();
    let e = ev(agent, BUSY);
    let a = s.post_events(&mine, false, &json!([e.clone()])).await;
    let batch = a.body["batchId"].clone();

    let (found, not_found, _) = s
        .query_all(&theirs, json!({"sequenceIds": [e["sequenceId"]]}))
        .await;
    assert!(found.is_empty());
    assert_eq!(not_found, [e["sequenceId"].clone()]);
    let (found, _, _) = s.query_all(&theirs, json!({"agentIds": [agent]})).await;
    assert!(found.is_empty());
    assert_eq!(
        s.query(&theirs, &json!({"batchId": batch})).await.status,
        404
    );

    // The same sequenceId is new for the other tenant, and the agent's state is its own:
    // wrapping would be refused after busy, but for them it is the agent's first event.
    let mut same = e.clone();
    same["state"] = json!(WRAPPING);
    let a = s.post_events(&theirs, false, &json!([same])).await;
    assert_eq!(a.body["results"][0]["status"], "accepted");
    assert!(a.body["results"][0].get("duplicate").is_none());
    let (found, _, _) = s.query_all(&mine, json!({"agentIds": [agent]})).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["state"], BUSY);
}

/// An async batch is processed no earlier than its delay after receipt, and a tenant's
/// batches are processed in receipt order, async or sync. The sandbox's own timestamps
/// measure the delay, so how fast this machine runs the test changes nothing.
#[tokio::test]
async fn async_delay_defers_processing_and_keeps_receipt_order() {
    let s = start_default().await;
    // A batch held for a minute (the delay is fixed at receipt) is pending when queried,
    // however slow the machine. It belongs to another tenant, so it holds nothing up.
    s.put_faults(json!({"events_async_delay_ms": 60_000})).await;
    let theirs = s.token_for("other", "other-secret").await;
    let held = ev(Uuid::new_v4(), BUSY);
    let a = s.post_events(&theirs, true, &json!([held.clone()])).await;
    assert_eq!(a.status, 202);
    let (found, _, _) = s
        .query_all(&theirs, json!({"sequenceIds": [held["sequenceId"]]}))
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["status"], "pending");
    assert!(found[0].get("processedAt").is_none(), "{}", found[0]);

    s.put_faults(json!({"events_async_delay_ms": 300})).await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let first = ev(agent, BUSY);
    let second = ev(agent, CONNECTED);
    let third = ev(agent, DISCONNECTED);
    for e in [&first, &second] {
        let a = s.post_events(&token, true, &json!([e.clone()])).await;
        assert_eq!(a.status, 202);
    }
    // A sync batch for the same agent queues behind both async ones: its answer comes
    // once they are processed, and every transition holds because the order did.
    let a = s.post_events(&token, false, &json!([third.clone()])).await;
    assert_eq!(statuses(&a), ["accepted"]);
    let (found, _, _) = s.query_all(&token, json!({"agentIds": [agent]})).await;
    let got: Vec<(&Value, &Value)> = found
        .iter()
        .map(|e| (&e["sequenceId"], &e["status"]))
        .collect();
    let accepted = json!("accepted");
    assert_eq!(
        got,
        [
            (&first["sequenceId"], &accepted),
            (&second["sequenceId"], &accepted),
            (&third["sequenceId"], &accepted)
        ]
    );
    let at = |e: &Value, field: &str| {
        gcx_protocol::time::parse(e[field].as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("{field} of {e}"))
    };
    // Timestamps carry whole milliseconds, cut off: two of them may differ by up to 1 ms
    // less than the times they stamp.
    for e in &found[..2] {
        let waited = at(e, "processedAt") - at(e, "receivedAt");
        assert!(
            waited >= chrono::TimeDelta::milliseconds(299),
            "processed {waited} after receipt: {e}"
        );
    }
    let processed: Vec<_> = found.iter().map(|e| at(e, "processedAt")).collect();
    assert!(processed.is_sorted(), "{found:?}");
}

#[tokio::test]
async fn async_batches_in_a_row_keep_each_agents_order() {
    let s = start_default().await;
    let token = s.token().await;
    let agents: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let cycle = [AVAILABLE, BUSY, CONNECTED, DISCONNECTED, WRAPPING];
    for step in 0..25 {
        let batch: Vec<Value> = agents.iter().map(|a| ev(*a, cycle[step % 5])).collect();
        assert_eq!(s.post_events(&token, true, &json!(batch)).await.status, 202);
    }
    let (found, _, _) = s.query_all(&token, json!({"agentIds": agents})).await;
    assert_eq!(found.len(), 100);
    assert!(found.iter().all(|e| e["status"] == "accepted"));
    let e = s.events_stats().await;
    assert_eq!(e["events_accepted"], 100);
    assert_eq!(e["events_rejected_transition"], 0);
}

#[tokio::test]
async fn query_back_store_evicts_oldest_first() {
    let s = start(SandboxOptions {
        query_cap: 10,
        ..SandboxOptions::default()
    })
    .await;
    let token = s.token().await;
    let batch1: Vec<Value> = (0..6).map(|_| ev(Uuid::new_v4(), BUSY)).collect();
    let batch2: Vec<Value> = (0..6).map(|_| ev(Uuid::new_v4(), BUSY)).collect();
    let b1 = s.post_events(&token, false, &json!(batch1)).await.body["batchId"].clone();
    s.post_events(&token, false, &json!(batch2)).await;
    let ids: Vec<Value> = batch1
        .iter()
        .chain(&batch2)
        .map(|e| e["sequenceId"].clone())
        .collect();
    let (found, not_found, _) = s.query_all(&token, json!({"sequenceIds": ids})).await;
    assert_eq!(found.len(), 10);
    assert_eq!(not_found.len(), 2);
    // The two oldest went.
    let mut gone: Vec<Value> = ids[..2].to_vec();
    gone.sort_by_key(|v| v.as_str().unwrap().to_owned());
    let mut nf = not_found.clone();
    nf.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(nf, gone);
    let (found, _, _) = s.query_all(&token, json!({"batchId": b1})).await;
    assert_eq!(found.len(), 4);
}
