//! The CRM (`POST /crm/webhook`) and QA (`POST /qa/results`) receivers (PROTOCOL.md
//! sections 5, 6, 7): they stand in for the platforms gcx delivers webhooks to.
//!
//! Each request goes through the same stages: count it, verify its Standard Webhooks
//! signature when a secret is configured (401 otherwise), take the next configured status
//! from the live faults, wait the configured latency, then record what a 2xx accepted.
//!
//! Memory stays bounded: the receivers remember at most [`MEMORY_CAP`] message ids and
//! as many `initiated` correlationIds, as 64-bit hashes, evicting the oldest first. A
//! message re-delivered after its id was evicted counts as unique again.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::AppState;

/// Most message ids (and, separately, `initiated` correlationIds) remembered.
pub const MEMORY_CAP: usize = 1_000_000;

/// How far `webhook-timestamp` may be from the receiver's clock, either way.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// A set of string hashes that forgets its oldest entries beyond a cap.
struct BoundedSet {
    members: HashSet<u64>,
    /// Insertion order, so the oldest member is evicted first.
    order: VecDeque<u64>,
    cap: usize,
}

impl BoundedSet {
    fn new(cap: usize) -> BoundedSet {
        BoundedSet {
            members: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Inserts; returns whether the value was new.
    fn insert(&mut self, value: &str) -> bool {
        let h = hash(value);
        if !self.members.insert(h) {
            return false;
        }
        self.order.push_back(h);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.members.remove(&old);
            }
        }
        true
    }

    fn contains(&self, value: &str) -> bool {
        self.members.contains(&hash(value))
    }
}

/// A stable 64-bit hash (SipHash with fixed keys): ids are random, so collisions among a
/// million of them are vanishingly unlikely, and a hash costs 8 bytes instead of a string.
fn hash(value: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What the CRM receiver remembers across requests.
struct CrmMemory {
    /// `webhook-id`s already answered 2xx: counts unique messages, and each once by state.
    seen_ids: BoundedSet,
    /// correlationIds whose `initiated` was answered 2xx: a later `completed`/`failed`
    /// without one is an order violation.
    initiated: BoundedSet,
}

/// What the receivers remember to count unique messages and order violations.
pub struct Receivers {
    crm: Mutex<CrmMemory>,
}

impl Default for Receivers {
    fn default() -> Self {
        Receivers::with_cap(MEMORY_CAP)
    }
}

impl Receivers {
    fn with_cap(cap: usize) -> Receivers {
        Receivers {
            crm: Mutex::new(CrmMemory {
                seen_ids: BoundedSet::new(cap),
                initiated: BoundedSet::new(cap),
            }),
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/crm/webhook", post(crm_webhook))
        .route("/qa/results", post(qa_results))
}

/// Which receiver a request is for: selects its secret, statuses and latency.
#[derive(Clone, Copy)]
enum Target {
    Crm,
    Qa,
}

async fn crm_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.stats.crm.deliveries.inc();
    if let Err(reason) = check_signature(&state, Target::Crm, &headers, &body) {
        state.stats.crm.bad_signatures.inc();
        return unauthorized(&reason);
    }
    let status = next_status(&state, Target::Crm).await;
    if status.is_success() {
        record_crm(&state, &headers, &body);
    }
    answer(status)
}

async fn qa_results(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = check_signature(&state, Target::Qa, &headers, &body) {
        return unauthorized(&reason);
    }
    let status = next_status(&state, Target::Qa).await;
    if status.is_success() {
        let last = serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        *state.stats.qa_last.lock() = Some(last);
        state.stats.qa_exports.inc();
    }
    answer(status)
}

/// Takes the next configured status (consuming it from the live faults), then waits the
/// configured latency. No configured status left: 200.
async fn next_status(state: &AppState, target: Target) -> StatusCode {
    let (code, latency_ms) = {
        let mut guard = state.faults.write();
        let faults = &mut *guard;
        let (statuses, latency) = match target {
            Target::Crm => (&mut faults.crm_statuses, faults.crm_latency_ms),
            Target::Qa => (&mut faults.qa_statuses, faults.qa_latency_ms),
        };
        let code = if statuses.is_empty() {
            200
        } else {
            statuses.remove(0)
        };
        (code, latency)
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn answer(status: StatusCode) -> Response {
    let mut response = (status, axum::Json(json!({"status": status.as_u16()}))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "message": format!("webhook signature rejected: {reason}"),
            "code": "authentication.required",
            "status": 401,
        })),
    )
        .into_response()
}

/// Counts a 2xx-answered CRM delivery: unique messages, by state and order violations,
/// each message once however often it is re-delivered.
fn record_crm(state: &AppState, headers: &HeaderMap, body: &[u8]) {
    let crm = &state.stats.crm;
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let execution_state = field("executionState");
    let correlation_id = field("correlationId");
    let mut memory = state.receivers.crm.lock();
    // Without a `webhook-id` (only possible with no secret) a message cannot be told
    // apart from a re-delivery, so each such request counts as a new message.
    let new = match header_str(headers, "webhook-id") {
        Some(id) => memory.seen_ids.insert(id),
        None => true,
    };
    if !new {
        return;
    }
    crm.unique_messages.inc();
    match execution_state.as_deref() {
        Some("initiated") => {
            crm.initiated.inc();
            if let Some(cid) = &correlation_id {
                memory.initiated.insert(cid);
            }
        }
        Some(end @ ("completed" | "failed")) => {
            if end == "completed" {
                crm.completed.inc();
            } else {
                crm.failed.inc();
            }
            let preceded = correlation_id
                .as_deref()
                .is_some_and(|cid| memory.initiated.contains(cid));
            if !preceded {
                crm.order_violations.inc();
            }
        }
        _ => {}
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the Standard Webhooks headers when the target has a secret; `Err` says why
/// the request is refused (never echoing the secret).
fn check_signature(
    state: &AppState,
    target: Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let (secret, setting) = match target {
        Target::Crm => (&state.options.crm_secret, "crm_secret"),
        Target::Qa => (&state.options.qa_secret, "qa_secret"),
    };
    let Some(secret) = secret else {
        return Ok(());
    };
    let key =
        decode_secret(secret).map_err(|e| format!("the sandbox's {setting} is unusable ({e})"))?;
    verify(
        &key,
        headers,
        body,
        chrono::Utc::now().timestamp(),
        TIMESTAMP_TOLERANCE_SECS,
    )
}

/// The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the
/// Standard Webhooks libraries).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64
        .decode(encoded)
        .map_err(|_| "expected whsec_ followed by standard base64".to_string())
}

/// Checks `webhook-id`, `webhook-timestamp` (within `tolerance_secs` of `now`) and
/// `webhook-signature` (space-separated `v1,<base64>` entries; any one matching is enough,
/// other versions are ignored).
pub fn verify(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), String> {
    let id = header_str(headers, "webhook-id").ok_or("missing webhook-id header")?;
    let timestamp =
        header_str(headers, "webhook-timestamp").ok_or("missing webhook-timestamp header")?;
    let signatures =
        header_str(headers, "webhook-signature").ok_or("missing webhook-signature header")?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "webhook-timestamp is not Unix seconds")?;
    // `abs_diff`: a timestamp near either end of i64 must not overflow the subtraction.
    if now.abs_diff(ts) > tolerance_secs.unsigned_abs() {
        return Err(format!(
            "webhook-timestamp {ts} is more than {tolerance_secs} s from the receiver's clock {now}"
        ));
    }
    for candidate in signatures.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(signature) = BASE64.decode(encoded) else {
            continue;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            // HMAC takes keys of any length; this branch cannot be reached.
            return Err("unusable key".into());
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err("no v1 signature in webhook-signature matches".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md's Standard Webhooks vector. The client's signer tests check the same
    /// vector on their own: the sandbox depends on no gcx code, so that one side's bug
    /// cannot hide in the peer that tests it.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    fn check(sig: &str, now: i64) -> Result<(), String> {
        let key = decode_secret(SECRET).unwrap();
        verify(
            &key,
            &headers(ID, &TS.to_string(), sig),
            BODY.as_bytes(),
            now,
            300,
        )
    }

    #[test]
    fn accepts_the_published_vector() {
        assert_eq!(check(SIG, TS), Ok(()));
    }

    #[test]
    fn accepts_any_of_several_signatures() {
        let other = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(check(&format!("v2,xyz {other} {SIG}"), TS), Ok(()));
    }

    #[test]
    fn refuses_a_wrong_signature_or_an_old_or_future_timestamp() {
        let tampered = SIG.replace("tZ1", "tZ2");
        assert!(check(&tampered, TS).is_err());
        assert!(check(SIG, TS + 301).is_err());
        assert!(check(SIG, TS - 301).is_err());
        assert!(check(SIG, TS + 300).is_ok());
    }

    #[test]
    fn refuses_timestamps_at_the_ends_of_i64() {
        let key = decode_secret(SECRET).unwrap();
        for ts in [i64::MIN, i64::MAX] {
            let err = verify(
                &key,
                &headers(ID, &ts.to_string(), SIG),
                BODY.as_bytes(),
                TS,
                300,
            )
            .unwrap_err();
            assert!(err.contains("from the receiver's clock"), "{err}");
        }
    }

    #[test]
    fn refuses_missing_headers() {
        let key = decode_secret(SECRET).unwrap();
        let err = verify(&key, &HeaderMap::new(), b"{}", TS, 300).unwrap_err();
        assert!(err.contains("webhook-id"), "{err}");
    }

    #[test]
    fn decodes_secrets_with_or_without_prefix() {
        assert_eq!(
            decode_secret(SECRET).unwrap(),
            decode_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap()
        );
        assert!(decode_secret("whsec_not base64!").is_err());
    }

    #[test]
    fn bounded_set_forgets_the_oldest() {
        let mut set = BoundedSet::new(2);
        assert!(set.insert("a"));
        assert!(!set.insert("a"));
        assert!(set.insert("b"));
        assert!(set.insert("c"));
        assert!(!set.contains("a"));
        assert!(set.contains("b") && set.contains("c"));
        assert_eq!(set.members.len(), 2);
    }
}
