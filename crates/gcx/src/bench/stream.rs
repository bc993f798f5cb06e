//! A bare load client on the sandbox's assist stream: engine latency 0 and a limit that
//! never refuses, N sockets, each with a window of unanswered sends (written in bursts,
//! flushed when the window is full), every `ack` and `result` awaited. Measures the
//! sandbox, not gcx's dispatcher (the `dispatch` benchmark does that).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gcx_sandbox::{Faults, Sandbox, SandboxOptions};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::BenchError;
use crate::auth::{Credentials, TokenProvider};
use crate::desk::latency::{Percentiles, new_histogram};

/// Sockets the sends are spread over.
pub const CONNECTIONS: u64 = 4;
/// Unanswered sends per socket.
pub const IN_FLIGHT: usize = 256;

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamMeasurement {
    /// Sends per second, each answered by an `ack` and a `result`.
    pub per_second: f64,
    pub ack_p50_ms: f64,
    pub result_p50_ms: f64,
    pub result_p99_ms: f64,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<FramePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FramePayload {
    correlation_id: Option<Uuid>,
}

/// Pushes `messages` sends over `connections` sockets with `in_flight` unanswered sends
/// each.
pub async fn load(
    messages: u64,
    connections: u64,
    in_flight: usize,
) -> Result<StreamMeasurement, BenchError> {
    let connections = connections.max(1);
    let sandbox = Sandbox::start(SandboxOptions {
        faults: Faults {
            max_concurrent_actions: u32::MAX,
            ..Faults::default()
        },
        ..SandboxOptions::default()
    })
    .await
    .map_err(BenchError::Sandbox)?;
    let tokens = TokenProvider::new(
        Credentials::sandbox_demo(&sandbox.base_url())
            .with_scopes(gcx_protocol::oauth::ASSIST_SCOPES),
        crate::http_client::build(Duration::from_secs(10))?,
    )?;
    let token = tokens.token().await?.expose().to_owned();
    let url = sandbox.info().stream_url;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|conn| {
            let count = messages / connections + u64::from(conn < messages % connections);
            tokio::spawn(connection(
                url.clone(),
                token.clone(),
                conn,
                count as usize,
                in_flight.max(1),
            ))
        })
        .collect();
    let mut ack = new_histogram(3);
    let mut result = new_histogram(3);
    for task in tasks {
        let lat = task
            .await
            .map_err(|e| BenchError::Incomplete(format!("a connection task failed: {e}")))??;
        for us in lat.ack_us {
            ack.saturating_record(us.max(1));
        }
        for us in lat.result_us {
            result.saturating_record(us.max(1));
        }
    }
    let elapsed = started.elapsed();
    let executed = sandbox.state.stats.assist.executed_unique.get();
    let _ = tokio::time::timeout(Duration::from_secs(5), sandbox.shutdown()).await;
    if executed != messages {
        return Err(BenchError::Incomplete(format!(
            "the engine executed {executed} of {messages} sends"
        )));
    }
    let (a, r) = (Percentiles::of(&ack), Percentiles::of(&result));
    Ok(StreamMeasurement {
        per_second: messages as f64 / elapsed.as_secs_f64().max(1e-9),
        ack_p50_ms: a.p50,
        result_p50_ms: r.p50,
        result_p99_ms: r.p99,
    })
}

/// Send -> ack and send -> result times of one socket, in microseconds.
struct Latencies {
    ack_us: Vec<u64>,
    result_us: Vec<u64>,
}

/// A v4 UUID naming send `seq` of connection `conn`, so an answer says which send it is.
fn correlation_id(conn: u64, seq: u64) -> Uuid {
    let bits =
        0x0000_0000_0000_4000_8000_0000_0000_0000u128 | (u128::from(conn) << 80) | u128::from(seq);
    Uuid::from_u128(bits)
}

fn seq_of(id: &Uuid) -> usize {
    (id.as_u128() & 0xffff_ffff_ffff) as usize
}

fn failed(conn: u64, what: impl std::fmt::Display) -> BenchError {
    BenchError::Incomplete(format!("connection {conn}: {what}"))
}

async fn connection(
    url: String,
    token: String,
    conn: u64,
    count: usize,
    in_flight: usize,
) -> Result<Latencies, BenchError> {
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| failed(conn, format!("upgrade: {e}")))?;
    let (mut write, mut read) = ws.split();
    let connect = serde_json::json!({"type": "connect", "token": token}).to_string();
    write
        .send(Message::text(connect))
        .await
        .map_err(|e| failed(conn, e))?;
    loop {
        match read.next().await {
            Some(Ok(Message::Text(t))) => {
                let f: Frame = serde_json::from_str(t.as_str()).map_err(|e| failed(conn, e))?;
                if f.kind != "connected" {
                    return Err(failed(conn, format!("handshake refused: {t}")));
                }
                break;
            }
            Some(Ok(_)) => {}
            other => return Err(failed(conn, format!("handshake: {other:?}"))),
        }
    }
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let window = Arc::new(Semaphore::new(in_flight));

    let writer = {
        let (sent_at, window) = (sent_at.clone(), window.clone());
        tokio::spawn(async move {
            for seq in 0..count {
                let permit = match window.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        // Nothing more may go out until a result arrives: flush the burst.
                        write.flush().await?;
                        match window.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => break,
                        }
                    }
                };
                permit.forget();
                let id = correlation_id(conn, seq as u64);
                let frame = format!(
                    r#"{{"type":"send","payload":{{"actionType":"knowledge_search","parameterMatrix":{{"query":"refund policy for enterprise accounts","languageCode":"en-US"}},"executionContext":{{"agentId":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","sessionId":"session-{conn}","interactionType":"voice"}},"correlationId":"{id}","maxRetries":2}}}}"#
                );
                sent_at[seq].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
                write.feed(Message::text(frame)).await?;
            }
            write.flush().await?;
            Ok::<_, tokio_tungstenite::tungstenite::Error>(write)
        })
    };

    let mut lat = Latencies {
        ack_us: Vec::with_capacity(count),
        result_us: Vec::with_capacity(count),
    };
    let mut results = 0usize;
    while results < count {
        let Some(Ok(msg)) = read.next().await else {
            return Err(failed(
                conn,
                format!("the socket ended after {results} results"),
            ));
        };
        let Message::Text(t) = msg else { continue };
        let f: Frame = serde_json::from_str(t.as_str()).map_err(|e| failed(conn, e))?;
        let id = f.payload.and_then(|p| p.correlation_id);
        let elapsed_us = |id: &Uuid| {
            let sent = sent_at
                .get(seq_of(id))
                .map_or(0, |s| s.load(Ordering::Relaxed));
            (epoch.elapsed().as_nanos() as u64).saturating_sub(sent) / 1000
        };
        match (f.kind.as_str(), id) {
            ("ack", Some(id)) => lat.ack_us.push(elapsed_us(&id)),
            ("result", Some(id)) => {
                lat.result_us.push(elapsed_us(&id));
                results += 1;
                window.add_permits(1);
            }
            ("heartbeat", _) => {}
            _ => return Err(failed(conn, format!("unexpected answer: {t}"))),
        }
    }
    // The writer hands its half back so the socket stays open until every result is in.
    let write = writer
        .await
        .map_err(|e| failed(conn, e))?
        .map_err(|e| failed(conn, e))?;
    drop(write);
    Ok(lat)
}
