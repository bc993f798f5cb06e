//! The assist stream end to end (PROTOCOL.md section 3 and the assist faults of section 7):
//! a real sandbox on port 0, real WebSocket clients.

mod stream_client;

use std::time::Duration;

use gcx_sandbox::{Faults, LatencySpec, SandboxOptions};
use serde_json::{Value, json};
use stream_client::*;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn cid(n: u128) -> Uuid {
    // A fixed, valid v4 UUID per n (version nibble 4, variant 8).
    Uuid::from_u128(0x1234_5678_9abc_4def_8000_0000_0000_0000 | n)
}

// ---- handshake (3.1) ----

#[tokio::test]
async fn connect_answers_connected_with_the_current_limits() {
    let sb = sandbox(Faults {
        max_concurrent_actions: 7,
        heartbeat_interval_ms: 12_345,
        ..Faults::default()
    })
    .await;
    let token = token(&sb, DEMO).await;
    let (mut c, connected) = Client::connect(&sb, &token).await;
    let p = &connected["payload"];
    assert_eq!(p["protocolVersion"], 1);
    assert!(Uuid::parse_str(p["connectionId"].as_str().unwrap()).is_ok());
    assert_eq!(p["maxConcurrentActions"], 7);
    assert_eq!(p["heartbeatIntervalMs"], 12_345);
    let expires = p["tokenExpiresIn"].as_u64().unwrap();
    assert!((86_390..=86_400).contains(&expires), "{expires}");
    c.ping_pong().await;
    assert_eq!(assist_stat(&sb, "connections_open").await, 1);
    assert_eq!(assist_stat(&sb, "connections_total").await, 1);
}

#[tokio::test]
async fn a_bad_or_missing_token_gets_401_then_close_4001() {
    let sb = sandbox(Faults::default()).await;
    for connect in [
        json!({"type": "connect", "token": "sbx_not_a_token"}),
        json!({"type": "connect"}),
    ] {
        let mut c = Client::open(&sb).await;
        c.send(&connect).await;
        let (code, seen) = c.closed().await;
        assert_eq!(code, 4001, "{connect}");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["type"], "error");
        assert_eq!(seen[0]["error"]["code"], 401);
    }
}

#[tokio::test]
async fn a_token_without_read_scope_gets_403_missing_scopes_then_4003() {
    let sb = sandbox(Faults::default()).await;
    let token = token(&sb, WRITER).await;
    let mut c = Client::open(&sb).await;
    c.send(&json!({"type": "connect", "token": token})).await;
    let (code, seen) = c.closed().await;
    assert_eq!(code, 4003);
    assert_eq!(seen[0]["error"]["code"], 403);
    assert_eq!(
        seen[0]["payload"]["missingScopes"],
        json!(["agentassist:read"])
    );
}

#[tokio::test]
async fn no_connect_within_the_handshake_timeout_closes_4008() {
    let sb = sandbox(Faults {
        handshake_timeout_ms: 150,
        ..Faults::default()
    })
    .await;
    let mut c = Client::open(&sb).await;
    let (code, seen) = c.closed().await;
    assert_eq!(code, 4008);
    assert!(seen.is_empty());
}

#[tokio::test]
async fn any_other_first_message_gets_400_then_close_4000() {
    let sb = sandbox(Faults::default()).await;
    let firsts = [
        Message::text(r#"{"type":"ping"}"#),
        Message::text("not json"),
        Message::text(r#"{"token":"x"}"#),
        Message::binary(vec![1u8, 2, 3]),
        Message::text(format!(
            r#"{{"type":"connect","token":"{}"}}"#,
            "x".repeat(70_000)
        )),
    ];
    for first in firsts {
        let mut c = Client::open(&sb).await;
        c.raw(first).await;
        let (code, seen) = c.closed().await;
        assert_eq!(code, 4000);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["error"]["code"], 400, "{seen:?}");
    }
}

// ---- client messages (3.2) and server messages (3.3) ----

#[tokio::test]
async fn ping_gets_pong_and_websocket_pings_are_answered() {
    let sb = sandbox(Faults::default()).await;
    let mut c = Client::demo(&sb).await;
    c.ping_pong().await;
    c.raw(Message::Ping(b"hello".to_vec().into())).await;
    use futures_util::StreamExt;
    let frame = tokio::time::timeout(WAIT, c.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame, Message::Pong(b"hello".to_vec().into()));
}

#[tokio::test]
async fn send_gets_ack_then_result_with_an_output_per_action_type() {
    let sb = sandbox(Faults::default()).await;
    let mut c = Client::demo(&sb).await;
    let context = json!({"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "sessionId": "s-1", "interactionType": "chat"});
    let cases = [
        (
            "knowledge_search",
            json!({"query": "reset my router", "maxResults": 4}),
        ),
        (
            "document_extraction",
            json!({"documentId": "doc-42", "fields": ["invoiceDate", "totalAmount"]}),
        ),
        (
            "sentiment_analysis",
            json!({"text": "thanks, this was great and helpful"}),
        ),
    ];
    for (i, (action, params)) in cases.iter().enumerate() {
        let id = cid(i as u128);
        c.send(&send_msg(&json!({
            "actionType": action, "parameterMatrix": params,
            "executionContext": context, "correlationId": id.to_string(),
        })))
        .await;
        let ack = c.expect("ack").await;
        assert_eq!(
            ack["payload"],
            json!({"correlationId": id.to_string(), "status": "accepted", "duplicate": false})
        );
        let result = c.expect("result").await;
        let p = &result["payload"];
        assert_eq!(p["correlationId"], id.to_string());
        assert_eq!(p["actionType"], *action);
        assert_eq!(p["state"], "completed");
        assert_eq!(p["engineLatencyMs"], 0);
        assert!(p.get("error").is_none());
        let out = &p["output"];
        match *action {
            "knowledge_search" => {
                let articles = out["articles"].as_array().unwrap();
                assert_eq!(articles.len(), 4);
                for a in articles {
                    assert!(a["id"].is_string() && a["title"].is_string());
                    assert!((0.0..=1.0).contains(&a["score"].as_f64().unwrap()));
                }
            }
            "document_extraction" => {
                let fields = out["fields"].as_object().unwrap();
                let names: Vec<&str> = fields.keys().map(String::as_str).collect();
                assert_eq!(names, ["invoiceDate", "totalAmount"]);
            }
            _ => {
                assert_eq!(out["sentiment"], "positive");
                assert!((-1.0..=1.0).contains(&out["score"].as_f64().unwrap()));
            }
        }
    }
    let s = stats(&sb).await["assist"].clone();
    assert_eq!(s["sends"], 3);
    assert_eq!(s["acks"], 3);
    assert_eq!(s["results_completed"], 3);
    assert_eq!(s["executed_unique"], 3);
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["max_in_flight_observed"], 1);
}

#[tokio::test]
async fn an_invalid_send_lists_every_violation_with_its_correlation_id() {
    let sb = sandbox(Faults::default()).await;
    let mut c = Client::demo(&sb).await;
    let id = cid(1);
    let mut payload = trigger(id);
    payload["parameterMatrix"]["query"] = json!(5);
    payload["executionContext"]["interactionType"] = json!("fax");
    payload["extra"] = json!(true);
    c.send(&send_msg(&payload)).await;
    let e = c.expect_error(400).await;
    assert_eq!(e["payload"]["correlationId"], id.to_string());
    let details = e["payload"]["details"].as_array().unwrap();
    let paths: Vec<&str> = details
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    for want in [
        "/parameterMatrix/query",
        "/executionContext/interactionType",
        "/extra",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    // No parseable correlationId: the error carries none.
    c.send(&send_msg(&json!({"correlationId": "nope"}))).await;
    let e = c.expect_error(400).await;
    assert!(e["payload"].get("correlationId").is_none(), "{e}");
    c.ping_pong().await;
    let s = stats(&sb).await["assist"].clone();
    assert_eq!(
        (s["sends"].as_u64(), s["rejected_invalid"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(s["acks"], 0);
}

#[tokio::test]
async fn a_send_without_trigger_scope_gets_403_and_the_socket_stays_open() {
    let sb = sandbox(Faults::default()).await;
    let token = token(&sb, READER).await;
    let (mut c, _) = Client::connect(&sb, &token).await;
    c.send_trigger(cid(1)).await;
    let e = c.expect_error(403).await;
    assert_eq!(
        e["payload"]["missingScopes"],
        json!(["agentassist:trigger"])
    );
    assert_eq!(e["payload"]["correlationId"], cid(1).to_string());
    c.ping_pong().await;
    assert_eq!(assist_stat(&sb, "executed_unique").await, 0);
}

#[tokio::test]
async fn malformed_frames_get_400_and_the_socket_stays_open() {
    let sb = sandbox(Faults::default()).await;
    let mut c = Client::demo(&sb).await;
    let frames = [
        Message::text("{not json"),
        Message::text(r#"{"type":"bogus"}"#),
        Message::text(r#"{"payload":{}}"#),
        Message::text(r#"[1,2,3]"#),
        Message::text(r#"{"type":"ack"}"#),
        Message::text(r#"{"type":"connect","token":"x"}"#),
        Message::text(r#"{"type":"subscribe","channels":["weather"]}"#),
        Message::text(r#"{"type":"subscribe"}"#),
        Message::text(r#"{"type":"reauth"}"#),
        Message::binary(vec![0u8; 10]),
    ];
    let n = frames.len() as u64;
    for frame in frames {
        c.raw(frame).await;
        c.expect_error(400).await;
    }
    c.ping_pong().await;
    assert_eq!(assist_stat(&sb, "rejected_invalid").await, n);
}

#[tokio::test]
async fn a_message_over_64_kib_gets_400_size_and_the_socket_stays_open() {
    let sb = sandbox(Faults::default()).await;
    let mut c = Client::demo(&sb).await;
    let mut payload = trigger(cid(9));
    payload["parameterMatrix"]["query"] = json!("q".repeat(70_000));
    c.send(&send_msg(&payload)).await;
    let e = c.expect_error(400).await;
    assert_eq!(
        e["payload"]["details"],
        json!([{"path": "", "code": "size", "message": e["payload"]["details"][0]["message"]}])
    );
    assert_eq!(e["payload"]["correlationId"], cid(9).to_string());
    c.ping_pong().await;
    assert_eq!(assist_stat(&sb, "sends").await, 1);
}

#[tokio::test]
async fn a_frame_over_1_mib_closes_1009() {
    let sb = sandbox(Faults::default()).await;
    let c = Client::demo(&sb).await;
    let (mut write, mut read) = futures_util::StreamExt::split(c.ws);
    use futures_util::{SinkExt, StreamExt};
    // Write in the background: the server stops reading after the frame header.
    let big = "x".repeat(1024 * 1024 + 1);
    tokio::spawn(async move {
        let _ = write.send(Message::text(big)).await;
    });
    let mut code = None;
    while let Ok(Some(frame)) = tokio::time::timeout(WAIT, read.next()).await {
        match frame {
            Ok(Message::Close(Some(f))) => {
                code = Some(u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("socket failed before the close frame: {e}"),
        }
    }
    assert_eq!(code, Some(1009));
    // The sandbox keeps serving.
    Client::demo(&sb).await.ping_pong().await;
}

// ---- concurrency (3.6) ----

#[tokio::test]
async fn the_concurrency_limit_holds_across_two_connections() {
    let sb = sandbox(Faults {
        max_concurrent_actions: 3,
        engine_latency_ms: LatencySpec::fixed(400),
        ..Faults::default()
    })
    .await;
    let mut a = Client::demo(&sb).await;
    let mut b = Client::demo(&sb).await;
    a.send_trigger(cid(1)).await;
    a.send_trigger(cid(2)).await;
    b.send_trigger(cid(3)).await;
    a.expect("ack").await;
    a.expect("ack").await;
    b.expect("ack").await;
    for (client, id) in [(&mut b, cid(4)), (&mut a, cid(5))] {
        client.send_trigger(id).await;
        let e = client.expect_error(429).await;
        let retry = e["payload"]["retryAfterMs"].as_u64().unwrap();
        assert!((1..=400).contains(&retry), "{retry}");
        assert_eq!(e["payload"]["correlationId"], id.to_string());
    }
    assert_eq!(assist_stat(&sb, "in_flight").await, 3);
    a.expect("result").await;
    a.expect("result").await;
    b.expect("result").await;
    // A refused id was not taken: it may be sent again.
    b.send_trigger(cid(4)).await;
    let ack = b.expect("ack").await;
    assert_eq!(ack["payload"]["duplicate"], false);
    b.expect("result").await;
    let s = stats(&sb).await["assist"].clone();
    assert_eq!(s["max_in_flight_observed"], 3);
    assert_eq!(s["rejected_429"], 2);
    assert_eq!(s["executed_unique"], 4);
    assert_eq!(s["in_flight"], 0);
}

#[tokio::test]
async fn a_lowered_limit_lets_running_actions_finish_and_refuses_new_ones() {
    let sb = sandbox(Faults {
        max_concurrent_actions: 2,
        engine_latency_ms: LatencySpec::fixed(300),
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    c.send_trigger(cid(1)).await;
    c.send_trigger(cid(2)).await;
    c.expect("ack").await;
    c.expect("ack").await;
    put_faults(&sb, json!({"max_concurrent_actions": 1})).await;
    c.send_trigger(cid(3)).await;
    c.expect_error(429).await;
    c.expect("result").await;
    c.expect("result").await;
    c.send_trigger(cid(3)).await;
    c.expect("ack").await;
}

#[tokio::test]
async fn sends_over_the_send_rate_get_429() {
    let sb = sandbox(Faults {
        sends_per_second: Some(2),
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    for n in 1..=2 {
        c.send_trigger(cid(n)).await;
        c.expect("ack").await;
        c.expect("result").await;
    }
    c.send_trigger(cid(3)).await;
    let e = c.expect_error(429).await;
    let retry = e["payload"]["retryAfterMs"].as_u64().unwrap();
    assert!((1..=500).contains(&retry), "{retry}");
}

// ---- idempotency and results (3.6) ----

#[tokio::test]
async fn a_duplicate_is_acked_again_executed_once_and_its_result_resent() {
    let sb = sandbox(Faults {
        engine_latency_ms: LatencySpec::fixed(200),
        max_concurrent_actions: 1,
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    c.send_trigger(cid(1)).await;
    // The duplicate takes no capacity: the limit is 1 and it still gets an ack.
    c.send_trigger(cid(1)).await;
    assert_eq!(c.expect("ack").await["payload"]["duplicate"], false);
    assert_eq!(c.expect("ack").await["payload"]["duplicate"], true);
    let result = c.expect("result").await;
    // One result per connection, however often it sent the id.
    c.ping_pong().await;
    c.send_trigger(cid(1)).await;
    assert_eq!(c.expect("ack").await["payload"]["duplicate"], true);
    assert_eq!(c.expect("result").await, result);
    let s = stats(&sb).await["assist"].clone();
    assert_eq!(s["executed_unique"], 1);
    assert_eq!(s["acks"], 1);
    assert_eq!(s["duplicates"], 2);
    assert_eq!(s["results_completed"], 1);
    assert_eq!(s["sends"], 3);
}

#[tokio::test]
async fn a_result_goes_to_every_connection_that_sent_the_id() {
    let sb = sandbox(Faults {
        engine_latency_ms: LatencySpec::fixed(300),
        ..Faults::default()
    })
    .await;
    let mut a = Client::demo(&sb).await;
    let mut b = Client::demo(&sb).await;
    let mut bystander = Client::demo(&sb).await;
    a.send_trigger(cid(1)).await;
    a.expect("ack").await;
    b.send_trigger(cid(1)).await;
    assert_eq!(b.expect("ack").await["payload"]["duplicate"], true);
    let ra = a.expect("result").await;
    let rb = b.expect("result").await;
    assert_eq!(ra, rb);
    bystander.ping_pong().await;
}

#[tokio::test]
async fn a_result_is_kept_for_a_resend_after_its_socket_closed() {
    let sb = sandbox(Faults {
        engine_latency_ms: LatencySpec::fixed(300),
        ..Faults::default()
    })
    .await;
    let mut a = Client::demo(&sb).await;
    a.send_trigger(cid(7)).await;
    a.expect("ack").await;
    a.ws.close(None).await.unwrap();
    drop(a);
    // The action keeps its slot although its socket is gone.
    assert_eq!(assist_stat(&sb, "in_flight").await, 1);
    wait_stat(&sb, "results_completed", 1).await;
    assert_eq!(assist_stat(&sb, "in_flight").await, 0);
    let mut b = Client::demo(&sb).await;
    b.send_trigger(cid(7)).await;
    assert_eq!(b.expect("ack").await["payload"]["duplicate"], true);
    let r = b.expect("result").await;
    assert_eq!(r["payload"]["correlationId"], cid(7).to_string());
    assert_eq!(r["payload"]["engineLatencyMs"], 300);
    assert_eq!(assist_stat(&sb, "executed_unique").await, 1);
}

#[tokio::test]
async fn the_idempotency_cap_evicts_the_oldest_id_first() {
    let sb = sandbox_with(SandboxOptions {
        idempotency_cap: 2,
        ..SandboxOptions::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    for n in 1..=3 {
        c.send_trigger(cid(n)).await;
        c.expect("ack").await;
        c.expect("result").await;
    }
    c.send_trigger(cid(3)).await;
    assert_eq!(c.expect("ack").await["payload"]["duplicate"], true);
    c.expect("result").await;
    c.send_trigger(cid(1)).await;
    assert_eq!(c.expect("ack").await["payload"]["duplicate"], false);
    c.expect("result").await;
    assert_eq!(assist_stat(&sb, "executed_unique").await, 4);
}

#[tokio::test]
async fn an_action_past_the_action_timeout_fails_with_timeout() {
    let sb = sandbox(Faults {
        engine_latency_ms: LatencySpec::fixed(400),
        action_timeout_ms: 100,
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    c.send_trigger(cid(1)).await;
    c.expect("ack").await;
    let r = c.expect("result").await;
    assert_eq!(r["payload"]["state"], "failed");
    assert_eq!(r["payload"]["error"]["code"], "timeout");
    assert!(r["payload"].get("output").is_none());
    assert_eq!(r["payload"]["engineLatencyMs"], 100);
    assert_eq!(assist_stat(&sb, "results_failed").await, 1);
}

// ---- tokens, heartbeats, pushes, maintenance ----

#[tokio::test]
async fn an_expiring_token_gets_401_then_close_4001() {
    let sb = sandbox(Faults {
        token_lifetime_secs: 1,
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    let (code, seen) = c.closed().await;
    assert_eq!(code, 4001);
    let last = seen.last().expect("an error before the close");
    assert_eq!(last["error"]["code"], 401);
}

#[tokio::test]
async fn reauth_with_good_bad_and_foreign_tokens() {
    let sb = sandbox(Faults {
        token_lifetime_secs: 1,
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    put_faults(&sb, json!({"token_lifetime_secs": 600})).await;
    c.send(&json!({"type": "reauth", "token": "sbx_forged"}))
        .await;
    c.expect_error(401).await;
    let foreign = token(&sb, OTHER).await;
    c.send(&json!({"type": "reauth", "token": foreign})).await;
    c.expect_error(403).await;
    let fresh = token(&sb, DEMO).await;
    c.send(&json!({"type": "reauth", "token": fresh})).await;
    let r = c.expect("reauthenticated").await;
    let left = r["payload"]["tokenExpiresIn"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "{left}");
    // Past the first token's expiry, the connection lives on the fresh one.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.ping_pong().await;
}

#[tokio::test]
async fn heartbeats_arrive_every_interval() {
    let sb = sandbox(Faults {
        heartbeat_interval_ms: 100,
        ..Faults::default()
    })
    .await;
    let token = token(&sb, DEMO).await;
    let (mut c, connected) = Client::connect(&sb, &token).await;
    assert_eq!(connected["payload"]["heartbeatIntervalMs"], 100);
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        let beat = c.next().await;
        assert_eq!(beat["type"], "heartbeat");
        let at = beat["payload"]["serverTime"].as_str().unwrap();
        assert!(gcx_protocol::time::parse(at).is_some(), "{at}");
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// An idle connection's loop wakes for its heartbeats and nothing else: over four
/// intervals of 250 ms it wakes four or five times, not once per millisecond.
#[tokio::test]
async fn an_idle_connection_wakes_for_heartbeats_only() {
    let sb = sandbox(Faults {
        heartbeat_interval_ms: 250,
        ..Faults::default()
    })
    .await;
    let token = token(&sb, DEMO).await;
    let (mut c, _) = Client::connect(&sb, &token).await;
    c.ping_pong().await;
    let before = sb.state.engine.connection_wakes();
    for _ in 0..4 {
        assert_eq!(c.next().await["type"], "heartbeat");
    }
    let woken = sb.state.engine.connection_wakes() - before;
    assert!(
        (4..=5).contains(&woken),
        "{woken} wake-ups for 4 heartbeats"
    );
}

#[tokio::test]
async fn capacity_is_pushed_to_subscribers_on_change_only() {
    let sb = sandbox(Faults::default()).await;
    let mut sub = Client::demo(&sb).await;
    let mut other = Client::demo(&sb).await;
    sub.send(&json!({"type": "subscribe", "channels": ["capacity"]}))
        .await;
    assert_eq!(
        sub.expect("subscribed").await["payload"],
        json!({"channels": ["capacity"]})
    );
    put_faults(&sb, json!({"max_concurrent_actions": 9})).await;
    assert_eq!(
        sub.expect("capacity").await["payload"],
        json!({"maxConcurrentActions": 9})
    );
    // A change of another setting, or the same limit again, pushes nothing.
    put_faults(&sb, json!({"max_concurrent_actions": 9, "seed": 3})).await;
    sub.ping_pong().await;
    other.ping_pong().await;
    // New connections are told the new limit.
    let token = token(&sb, DEMO).await;
    let (_, connected) = Client::connect(&sb, &token).await;
    assert_eq!(connected["payload"]["maxConcurrentActions"], 9);
}

#[tokio::test]
async fn closing_every_secs_sends_closing_then_1001() {
    let sb = sandbox(Faults {
        closing_every_secs: Some(1),
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    let (code, seen) = c.closed().await;
    assert_eq!(code, 1001);
    let closing = seen
        .iter()
        .find(|m| m["type"] == "closing")
        .expect("closing");
    assert!(closing["payload"]["reason"].is_string());
    assert!(closing["payload"]["reconnectWithinMs"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn drop_connection_every_drops_the_nth_message_without_a_close_frame() {
    let sb = sandbox(Faults {
        drop_connection_every: Some(3),
        ..Faults::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    c.ping_pong().await;
    c.ping_pong().await;
    c.send_trigger(cid(1)).await;
    let (ending, seen) = c.ending().await;
    assert_eq!(ending, Ending::Dropped);
    assert!(seen.is_empty(), "the third message was processed: {seen:?}");
    assert_eq!(assist_stat(&sb, "sends").await, 0);
    let mut d = Client::demo(&sb).await;
    d.ping_pong().await;
}

#[tokio::test]
async fn shutdown_closes_live_sockets_with_1001() {
    let sb = sandbox(Faults::default()).await;
    let mut c = Client::demo(&sb).await;
    c.ping_pong().await;
    let stopping = tokio::spawn(sb.shutdown());
    let (code, _) = c.closed().await;
    assert_eq!(code, 1001);
    stopping.await.unwrap().unwrap();
}

// ---- seeded faults (section 7) ----

/// Sends ids 0..n (re-sending refused ones, up to 5 tries each) and records every answer.
async fn outcomes(faults: &Faults, n: u128) -> Vec<String> {
    let sb = sandbox(faults.clone()).await;
    let mut c = Client::demo(&sb).await;
    let mut log = Vec::new();
    for i in 0..n {
        for _ in 0..5 {
            c.send_trigger(cid(i)).await;
            let m = c.next_msg().await;
            if m["type"] == "error" {
                log.push(format!("{i}:{}", m["error"]["code"]));
                continue;
            }
            let r = c.expect("result").await;
            let code = r["payload"]["error"]["code"].as_str().unwrap_or("ok");
            log.push(format!("{i}:{}:{code}", r["payload"]["state"]));
            break;
        }
    }
    log
}

#[tokio::test]
async fn fault_draws_repeat_with_the_same_seed() {
    let faults = Faults {
        send_429_rate: 0.3,
        send_503_rate: 0.2,
        result_failure_rate: 0.3,
        seed: 7,
        ..Faults::default()
    };
    let first = outcomes(&faults, 40).await;
    let second = outcomes(&faults, 40).await;
    assert_eq!(first, second);
    let other_seed = outcomes(
        &Faults {
            seed: 8,
            ..faults.clone()
        },
        40,
    )
    .await;
    assert_ne!(first, other_seed);
    let count = |s: &str| first.iter().filter(|l| l.ends_with(s)).count();
    assert!(count(":429") > 3, "{first:?}");
    assert!(count(":503") > 2, "{first:?}");
    assert!(count("engine_error") > 3, "{first:?}");
    assert!(count(":ok") > 10, "{first:?}");
    // A drawn refusal is not final: re-sends get fresh draws and most ids get through.
    let finished = first
        .iter()
        .filter(|l| l.contains("completed") || l.contains("failed"))
        .count();
    assert!(finished >= 36, "{first:?}");
}

// ---- bad input never breaks the server ----

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z:\\-]{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("send"),
                Just("ping"),
                Just("reauth"),
                Just("subscribe"),
                Just("connect"),
                Just("capacity")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_owned()),
                        Just("payload".to_owned()),
                        Just("token".to_owned()),
                        Just("channels".to_owned()),
                        Just("correlationId".to_owned()),
                        Just("actionType".to_owned()),
                        "[a-zA-Z]{1,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn frame() -> impl Strategy<Value = Message> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200).prop_map(Message::binary),
            ".{0,200}".prop_map(Message::text),
            json_value().prop_map(|v| Message::text(v.to_string())),
            (json_value(), json_value()).prop_map(|(t, p)| Message::text(
                json!({"type": "send", "payload": {"correlationId": t, "actionType": p}})
                    .to_string()
            )),
        ]
    }

    #[test]
    fn random_frames_never_break_the_server() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sb = rt.block_on(sandbox(Faults::default()));
        let watcher = tokio::sync::Mutex::new(rt.block_on(Client::demo(&sb)));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 48,
            ..ProptestConfig::default()
        });
        runner
            .run(&prop::collection::vec(frame(), 1..12), |frames| {
                rt.block_on(async {
                    let mut c = Client::demo(&sb).await;
                    for f in frames {
                        c.raw(f).await;
                    }
                    // Whatever came before, the socket still answers in order.
                    c.send(&json!({"type": "ping"})).await;
                    loop {
                        let m = c.next_msg().await;
                        if m["type"] == "pong" {
                            break;
                        }
                        assert!(
                            ["error", "ack", "result", "subscribed", "reauthenticated"]
                                .contains(&m["type"].as_str().unwrap_or("")),
                            "{m}"
                        );
                    }
                    watcher.lock().await.ping_pong().await;
                });
                Ok(())
            })
            .unwrap();
        rt.block_on(async {
            watcher.lock().await.ping_pong().await;
            let mut fresh = Client::demo(&sb).await;
            fresh.send_trigger(cid(u128::from(u32::MAX))).await;
            fresh.expect("ack").await;
            fresh.expect("result").await;
        });
    }
}

#[tokio::test]
async fn extreme_fault_values_do_not_break_the_stream() {
    let sb = sandbox(Faults::default()).await;
    let max = u64::MAX;
    put_faults(
        &sb,
        json!({
            "token_lifetime_secs": max, "closing_every_secs": max, "heartbeat_interval_ms": max,
            "handshake_timeout_ms": max, "action_timeout_ms": max,
            "engine_latency_ms": {"median": max, "p99": max}, "sends_per_second": u32::MAX,
            "max_concurrent_actions": u32::MAX, "drop_connection_every": max,
        }),
    )
    .await;
    let token = token(&sb, DEMO).await;
    let (mut c, connected) = Client::connect(&sb, &token).await;
    assert!(connected["payload"]["tokenExpiresIn"].as_u64().unwrap() > 1_000_000);
    c.send_trigger(cid(1)).await;
    c.expect("ack").await;
    c.ping_pong().await;
    assert_eq!(assist_stat(&sb, "in_flight").await, 1);
}
