//! Hostile clients against a real sandbox: silent, trickling and idle connections are
//! closed while others are served, bodies must arrive in time, nonsense fault settings
//! are refused with every reason, and an assist connection flooding messages is closed
//! with 4029.

mod stream_client;

use std::time::Duration;

use futures_util::SinkExt;
use gcx_sandbox::options::MESSAGE_RATE_CLOSE;
use gcx_sandbox::{Faults, SandboxOptions};
use serde_json::{Value, json};
use stream_client::{Client, http, sandbox_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A bound on how long anything here may take before the test fails (never reached when
/// the sandbox behaves; no timing is asserted).
const HANG_GUARD: Duration = Duration::from_secs(20);

fn short_timeouts() -> SandboxOptions {
    SandboxOptions {
        max_connections: 16,
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..SandboxOptions::default()
    }
}

/// Reads until the server closes the connection; what it sent before.
async fn until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(HANG_GUARD, tcp.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open; it sent {seen:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn silent_and_trickling_connections_are_closed_while_others_are_served() {
    let sb = sandbox_with(short_timeouts()).await;
    // Twice the connection cap of clients that never send a request.
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(TcpStream::connect(sb.addr).await.unwrap());
    }
    let mut trickling = TcpStream::connect(sb.addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in b"GET /sandbox/stats HTTP/1.1\r\nHost: x\r\n" {
            if trickling.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until_closed(&mut trickling).await
    });
    // Others are still answered.
    let stats = tokio::time::timeout(
        HANG_GUARD,
        http()
            .get(format!("{}/sandbox/stats", sb.base_url()))
            .send(),
    )
    .await
    .expect("served while silent clients wait")
    .expect("stats answers");
    assert_eq!(stats.status(), 200);
    for tcp in &mut silent {
        until_closed(tcp).await;
    }
    tokio::time::timeout(HANG_GUARD, trickle)
        .await
        .expect("the trickling client is closed")
        .unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let sb = sandbox_with(short_timeouts()).await;
    let mut tcp = TcpStream::connect(sb.addr).await.unwrap();
    tcp.write_all(b"GET /sandbox/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = until_closed(&mut tcp).await;
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_ends_the_request() {
    let sb = sandbox_with(short_timeouts()).await;
    let mut tcp = TcpStream::connect(sb.addr).await.unwrap();
    tcp.write_all(
        b"POST /crm/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    let seen = until_closed(&mut tcp).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    // The receiver recorded nothing.
    let stats = stream_client::stats(&sb).await;
    assert_eq!(stats["crm"]["deliveries"], 0, "{stats}");
}

#[tokio::test]
async fn nonsense_fault_settings_are_refused_with_every_reason() {
    let sb = sandbox_with(SandboxOptions::default()).await;
    let res = http()
        .put(format!("{}/sandbox/faults", sb.base_url()))
        .json(&json!({
            "engine_latency_ms": {"median": 200, "p99": 20},
            "max_concurrent_actions": 0,
            "events_requests_per_minute": 0,
            "crm_statuses": [200, 42],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    for key in [
        "engine_latency_ms",
        "max_concurrent_actions",
        "events_requests_per_minute",
        "crm_statuses",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(key)),
            "{key}: {errors:?}"
        );
    }
    // Nothing changed.
    let now: Faults = http()
        .get(format!("{}/sandbox/faults", sb.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now, Faults::default());
}

#[tokio::test]
async fn an_assist_connection_flooding_messages_is_closed_4029() {
    let sb = sandbox_with(SandboxOptions {
        ws_messages_per_second: 20,
        ..SandboxOptions::default()
    })
    .await;
    let mut c = Client::demo(&sb).await;
    // Well within the rate: answered.
    c.ping_pong().await;
    for _ in 0..200 {
        if c.ws
            .send(Message::text(r#"{"type":"ping"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, _) = c.closed().await;
    assert_eq!(code, MESSAGE_RATE_CLOSE);
    assert_eq!(code, 4029);
    // Another connection is unaffected.
    let mut other = Client::demo(&sb).await;
    other.ping_pong().await;
}
