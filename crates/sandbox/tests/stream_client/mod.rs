//! A small assist-stream and REST client for the sandbox's end-to-end tests: a real
//! sandbox on port 0, real sockets, JSON in and out.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gcx_sandbox::{ClientSpec, Faults, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// How long any single expected frame may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub const DEMO: (&str, &str) = ("gcx-demo", "gcx-demo-secret");
/// Extra clients every test sandbox accepts, so 403 paths and other tenants can be shown.
pub const READER: (&str, &str) = ("reader", "reader-secret");
pub const WRITER: (&str, &str) = ("writer", "writer-secret");
pub const OTHER: (&str, &str) = ("other", "other-secret");

pub async fn sandbox(faults: Faults) -> Sandbox {
    sandbox_with(SandboxOptions {
        faults,
        ..SandboxOptions::default()
    })
    .await
}

/// Starts a sandbox with `options` plus the extra test clients.
pub async fn sandbox_with(mut options: SandboxOptions) -> Sandbox {
    options.clients.extend([
        spec("reader:reader-secret:agentassist:read"),
        spec("writer:writer-secret:agentassist:trigger"),
        spec("other:other-secret:agentassist:read,agentassist:trigger"),
    ]);
    Sandbox::start(options).await.expect("sandbox starts")
}

fn spec(s: &str) -> ClientSpec {
    s.parse().expect("client spec")
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("http client")
}

/// A token for `client`, with every scope it has.
pub async fn token(sb: &Sandbox, client: (&str, &str)) -> String {
    let res = http()
        .post(format!("{}/oauth/token", sb.base_url()))
        .basic_auth(client.0, Some(client.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(res.status(), 200, "token for {}", client.0);
    let body: Value = res.json().await.expect("token body");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub async fn stats(sb: &Sandbox) -> Value {
    http()
        .get(format!("{}/sandbox/stats", sb.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats body")
}

pub async fn assist_stat(sb: &Sandbox, name: &str) -> u64 {
    stats(sb).await["assist"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no assist stat {name}"))
}

/// Polls the stats until `assist.<name>` equals `want` (or fails after [`WAIT`]).
pub async fn wait_stat(sb: &Sandbox, name: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = assist_stat(sb, name).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "assist.{name} is {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn put_faults(sb: &Sandbox, patch: Value) {
    let res = http()
        .put(format!("{}/sandbox/faults", sb.base_url()))
        .json(&patch)
        .send()
        .await
        .expect("put faults");
    assert_eq!(res.status(), 200, "PUT /sandbox/faults {patch}");
}

/// A valid knowledge_search trigger for `id`.
pub fn trigger(id: Uuid) -> Value {
    json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": "refund policy for enterprise accounts", "languageCode": "en-US"},
        "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "sessionId": "session-987654321", "interactionType": "voice"},
        "correlationId": id.to_string(),
        "maxRetries": 2
    })
}

pub fn send_msg(payload: &Value) -> Value {
    json!({"type": "send", "payload": payload})
}

/// What a socket ended with.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// A close frame with this code.
    Closed(u16),
    /// The TCP connection went without a close frame.
    Dropped,
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Opens a socket without a handshake.
    pub async fn open(sb: &Sandbox) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(sb.info().stream_url)
            .await
            .expect("websocket upgrade");
        Client { ws }
    }

    /// Opens a socket and completes the handshake; returns the `connected` message too.
    pub async fn connect(sb: &Sandbox, token: &str) -> (Client, Value) {
        let mut c = Client::open(sb).await;
        c.send(&json!({"type": "connect", "token": token})).await;
        let connected = c.next().await;
        assert_eq!(connected["type"], "connected", "{connected}");
        (c, connected)
    }

    /// Connects as the demo client.
    pub async fn demo(sb: &Sandbox) -> Client {
        let token = token(sb, DEMO).await;
        Client::connect(sb, &token).await.0
    }

    pub async fn send(&mut self, message: &Value) {
        self.raw(Message::text(message.to_string())).await;
    }

    pub async fn send_trigger(&mut self, id: Uuid) {
        self.send(&send_msg(&trigger(id))).await;
    }

    pub async fn raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("websocket send");
    }

    /// The next message (heartbeats included); fails on close or after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("socket open")
                .expect("frame");
            match frame {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next message that is not a heartbeat.
    pub async fn next_msg(&mut self) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] != "heartbeat" {
                return m;
            }
        }
    }

    /// The next message, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let m = self.next_msg().await;
        assert_eq!(m["type"], kind, "expected {kind}, got {m}");
        m
    }

    /// The next message, which must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: u16) -> Value {
        let m = self.expect("error").await;
        assert_eq!(m["error"]["code"], code, "{m}");
        assert!(
            m["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{m}"
        );
        m
    }

    /// Sends `ping` and checks the very next message is `pong`: the socket still answers
    /// and nothing else was queued before it.
    pub async fn ping_pong(&mut self) {
        self.send(&json!({"type": "ping"})).await;
        self.expect("pong").await;
    }

    /// Reads until the socket ends; messages met on the way are returned with the ending.
    pub async fn ending(&mut self) -> (Ending, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the socket ends within the wait");
            match frame {
                Some(Ok(Message::Text(t))) => {
                    seen.push(serde_json::from_str(t.as_str()).expect("JSON frame"))
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f: CloseFrame| u16::from(f.code)).unwrap_or(1005);
                    return (Ending::Closed(code), seen);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (Ending::Dropped, seen),
            }
        }
    }

    /// Reads until a close frame; returns its code and the messages before it.
    pub async fn closed(&mut self) -> (u16, Vec<Value>) {
        match self.ending().await {
            (Ending::Closed(code), seen) => (code, seen),
            (Ending::Dropped, seen) => panic!("dropped without a close frame after {seen:?}"),
        }
    }
}
