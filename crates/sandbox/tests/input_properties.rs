//! Property tests of the sandbox's readers of untrusted bytes that no other property test
//! reaches directly: the webhook signature check, the query-back parameters and a
//! client's assist frame (the fuzz targets in `fuzz/` run the same entry points).

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gcx_protocol::assist::MAX_MESSAGE_BYTES;
use gcx_sandbox::fuzzing::{
    ClientFrame, QueryKind, TIMESTAMP_TOLERANCE_SECS, client_frame, decode_secret, query,
    webhook_signature,
};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;

fn sign(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = decode_secret(SECRET).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    h.insert(
        "webhook-timestamp",
        HeaderValue::from_str(timestamp).unwrap(),
    );
    h.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    h
}

fn check(h: &HeaderMap, body: &[u8]) -> Result<(), String> {
    webhook_signature(&decode_secret(SECRET).unwrap(), h, body, NOW)
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        NOW - 2 * TIMESTAMP_TOLERANCE_SECS..NOW + 2 * TIMESTAMP_TOLERANCE_SECS,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
}

fn query_json() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        Just(json!("6513270e-269e-4d37-b2a7-4de452e6b438")),
        Just(json!("x")),
        Just(json!(null)),
        any::<i64>().prop_map(Value::from),
    ];
    let ids = prop::collection::vec(id.clone(), 0..3).prop_map(Value::from);
    let cursor = prop_oneof![
        any::<u64>().prop_map(|n| json!(n.to_string())),
        ".{0,8}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ];
    (
        prop::option::of(ids.clone()),
        prop::option::of(id),
        prop::option::of(ids),
        prop::option::of(cursor),
    )
        .prop_map(|(s, b, a, c)| {
            let mut o = serde_json::Map::new();
            for (k, v) in [
                ("sequenceIds", s),
                ("batchId", b),
                ("agentIds", a),
                ("cursor", c),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
}

proptest! {
    /// A correctly signed request passes exactly when its timestamp is on time, whatever
    /// the timestamp (the far ends of i64 included); a changed body never passes.
    #[test]
    fn signatures_pass_when_signed_and_on_time(
        id in "[a-zA-Z0-9_]{1,32}",
        ts in timestamp(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        tamper in any::<u8>(),
    ) {
        let ts_text = ts.to_string();
        let signature = sign(&id, &ts_text, &body);
        let on_time = NOW.abs_diff(ts) <= TIMESTAMP_TOLERANCE_SECS as u64;
        prop_assert_eq!(check(&headers(&id, &ts_text, &signature), &body).is_ok(), on_time);
        let mut changed = body.clone();
        changed.push(tamper);
        prop_assert!(check(&headers(&id, &ts_text, &signature), &changed).is_err());
    }

    /// Arbitrary header text never passes and never panics.
    #[test]
    fn arbitrary_headers_are_refused(
        id in "[ -~]{0,20}",
        ts in "[ -~]{0,24}",
        signature in "[ -~]{0,60}",
        body in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        prop_assert!(check(&headers(&id, &ts, &signature), &body).is_err());
    }

    /// A query names at least one id or is a 400 with a message.
    #[test]
    fn queries_are_read_or_refused(body in query_json()) {
        match query(body.to_string().as_bytes()) {
            Ok((QueryKind::SequenceIds(n) | QueryKind::Agents(n), _)) => prop_assert!(n > 0),
            Ok((QueryKind::Batch, _)) => {}
            Err((status, message)) => {
                prop_assert_eq!(status, 400);
                prop_assert!(!message.is_empty());
            }
        }
    }

    /// Arbitrary bytes as a query never panic the reader.
    #[test]
    fn arbitrary_query_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = query(&bytes);
    }

    /// A client frame is `NotJson` exactly when it is not JSON.
    #[test]
    fn client_frames_are_classified(text in prop_oneof![
        ".{0,40}",
        r#"\{"type":"(send|ping|reauth|subscribe|connect|x)"(,"payload":\{\})?\}"#,
    ]) {
        prop_assume!(text.len() <= MAX_MESSAGE_BYTES);
        let frame = client_frame(&text);
        prop_assert_eq!(
            matches!(frame, ClientFrame::NotJson(_)),
            serde_json::from_str::<Value>(&text).is_err()
        );
    }
}
