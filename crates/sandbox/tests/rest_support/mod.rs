//! What the REST end-to-end tests share: a sandbox on port 0, a plain HTTP client, tokens,
//! and small builders for events and requests.
#![allow(dead_code)]

use gcx_sandbox::{ClientSpec, Sandbox, SandboxOptions};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use uuid::Uuid;

pub const EVENTS: &str = "/api/v2/interactions/events";
pub const QUERY: &str = "/api/v2/analytics/interactions/events/query";

/// A second tenant with both events scopes.
pub fn other_client() -> ClientSpec {
    "other:other-secret:interactions:read,analytics:query"
        .parse()
        .unwrap()
}

/// A client that may query but not post events, and one that may post but not query.
pub fn reader_only() -> ClientSpec {
    "reader:reader-secret:analytics:query".parse().unwrap()
}
pub fn poster_only() -> ClientSpec {
    "poster:poster-secret:interactions:read".parse().unwrap()
}

pub struct Rest {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    pub base: String,
}

/// An answer: status, headers, body as JSON (`Null` when not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the Genesys error body and returns its `code`.
    pub fn error_code(&self) -> &str {
        let b = &self.body;
        assert_eq!(b["status"], self.status.as_u16(), "{b}");
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
        assert!(
            Uuid::parse_str(b["contextId"].as_str().unwrap_or("")).is_ok(),
            "{b}"
        );
        assert!(b["details"].is_array(), "{b}");
        assert!(b["errors"].is_array(), "{b}");
        b["code"].as_str().unwrap()
    }

    /// Checks the headers every REST answer carries.
    pub fn assert_rest_headers(&self) {
        assert!(
            self.header("ININ-Correlation-Id")
                .is_some_and(|v| !v.is_empty()),
            "no correlation id: {:?}",
            self.headers
        );
        for name in [
            "inin-ratelimit-count",
            "inin-ratelimit-allowed",
            "inin-ratelimit-reset",
        ] {
            assert!(
                self.header(name).is_some_and(|v| v.parse::<u64>().is_ok()),
                "{name} missing: {:?}",
                self.headers
            );
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = self.header("Retry-After").unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
    }
}

pub async fn start(options: SandboxOptions) -> Rest {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(options).await.unwrap();
    let base = sandbox.base_url();
    Rest {
        sandbox,
        http: reqwest::Client::builder().build().unwrap(),
        base,
    }
}

pub async fn start_default() -> Rest {
    start(SandboxOptions {
        clients: vec![
            ClientSpec::demo(),
            other_client(),
            reader_only(),
            poster_only(),
        ],
        ..SandboxOptions::default()
    })
    .await
}

impl Rest {
    pub async fn token_for(&self, id: &str, secret: &str) -> String {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn token(&self) -> String {
        self.token_for("gcx-demo", "gcx-demo-secret").await
    }

    async fn answer(r: reqwest::Response) -> Answer {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// POST raw bytes with a content type and an optional token.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    /// POST a batch (`async=true|false`).
    pub async fn post_events(&self, token: &str, asynchronous: bool, body: &Value) -> Answer {
        self.post_raw(
            &format!("{EVENTS}?async={asynchronous}"),
            Some(token),
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    pub async fn query(&self, token: &str, body: &Value) -> Answer {
        self.post_raw(
            QUERY,
            Some(token),
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// Every event a query finds, following cursors; also the number of pages.
    pub async fn query_all(&self, token: &str, key: Value) -> (Vec<Value>, Vec<Value>, usize) {
        let mut events = Vec::new();
        let mut not_found = Vec::new();
        let mut pages = 0;
        let mut body = key;
        loop {
            let a = self.query(token, &body).await;
            assert_eq!(a.status, 200, "{}", a.body);
            pages += 1;
            events.extend(a.body["events"].as_array().unwrap().iter().cloned());
            if pages == 1 {
                not_found = a.body["notFound"].as_array().unwrap().clone();
            }
            match a.body.get("cursor").and_then(Value::as_str) {
                Some(c) => body["cursor"] = json!(c),
                None => break,
            }
            assert!(pages < 1000, "cursor never ends");
        }
        (events, not_found, pages)
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn put_faults(&self, patch: Value) -> Answer {
        Self::answer(
            self.http
                .put(format!("{}/sandbox/faults", self.base))
                .json(&patch)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn stats(&self) -> Value {
        self.get("/sandbox/stats").await.body
    }

    pub async fn events_stats(&self) -> Value {
        self.stats().await["events"].clone()
    }
}

/// One valid event.
pub fn event(sequence_id: Uuid, agent_id: Uuid, state: &str) -> Value {
    json!({
        "sequenceId": sequence_id.to_string(),
        "timestamp": "2026-11-21T10:00:00.123456789Z",
        "interactionId": Uuid::new_v4().to_string(),
        "agentId": agent_id.to_string(),
        "state": state,
        "eventType": "routing/agent/state",
    })
}

/// A fresh event for an agent.
pub fn ev(agent_id: Uuid, state: &str) -> Value {
    event(Uuid::new_v4(), agent_id, state)
}

pub const AVAILABLE: &str = "routing/agent/available";
pub const BUSY: &str = "routing/agent/busy";
pub const CONNECTED: &str = "interaction/media/connected";
pub const DISCONNECTED: &str = "interaction/media/disconnected";
pub const WRAPPING: &str = "routing/agent/wrapping";
pub const STATES: [&str; 5] = [AVAILABLE, BUSY, CONNECTED, DISCONNECTED, WRAPPING];

/// The transition table of PROTOCOL.md section 4, written out independently.
pub fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        (AVAILABLE, BUSY)
            | (BUSY, CONNECTED)
            | (BUSY, AVAILABLE)
            | (CONNECTED, DISCONNECTED)
            | (DISCONNECTED, WRAPPING)
            | (WRAPPING, AVAILABLE)
    )
}

/// The statuses of a sync answer, in order.
pub fn statuses(answer: &Answer) -> Vec<String> {
    answer.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {}", answer.body))
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}
