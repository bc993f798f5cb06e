//! The sandbox receivers' Standard Webhooks check (`receivers::verify`): the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers and the body.
//! Input: three header lines, then the body. The clock and the key are fixed.
//! Asserts: a request passes only with a v1 signature that is the HMAC of what it
//! carries; the same request signed correctly passes when its timestamp is on time.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gcx_sandbox::fuzzing::{TIMESTAMP_TOLERANCE_SECS, decode_secret, webhook_signature};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

/// The Standard Webhooks specification's example secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;

fn signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let key = decode_secret(SECRET).expect("the example secret decodes");
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (Some(id), Some(timestamp), Some(signatures)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signatures),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verdict = webhook_signature(&key, &headers, body, NOW);
    let (Some(id), Some(timestamp), Some(signatures)) = (
        text("webhook-id"),
        text("webhook-timestamp"),
        text("webhook-signature"),
    ) else {
        assert!(verdict.is_err(), "passed without all three headers");
        return;
    };
    let expected = signature(&key, id, timestamp, body);
    if verdict.is_ok() {
        let signed = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| BASE64.decode(s).ok())
            .any(|s| BASE64.encode(s) == expected);
        assert!(signed, "passed without a matching signature");
    }
    let on_time = timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|ts| NOW.abs_diff(ts) <= TIMESTAMP_TOLERANCE_SECS as u64);
    let mut signed = headers.clone();
    signed.insert(
        "webhook-signature",
        HeaderValue::from_str(&format!("v1,{expected}")).expect("base64 is a header value"),
    );
    assert_eq!(
        webhook_signature(&key, &signed, body, NOW).is_ok(),
        on_time,
        "a correctly signed request with timestamp {timestamp:?}"
    );
});
