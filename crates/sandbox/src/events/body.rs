//! Reading a REST request body under a byte limit, and the cheap checks that come before
//! parsing it: the content type and the number of events in a batch.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::http_error::ApiError;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    Read(String),
}

/// How far past the limit a body is still read (and discarded) before the answer: a client
/// that is still writing when the server answers and closes may see a reset instead of
/// the answer, so moderately oversized bodies are drained first.
const DRAIN_FACTOR: usize = 4;

/// Reads the whole body; one over `limit` bytes is refused (after being drained, up to
/// `DRAIN_FACTOR` times the limit, so the client reads the answer).
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_limit = limit.saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|n| n > drain_limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let capacity = declared.map_or(8 * 1024, |n| n as usize).min(limit);
    let mut buf = BytesMut::with_capacity(capacity);
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        total = total.saturating_add(chunk.len());
        if total > drain_limit {
            return Err(BodyError::TooLarge { limit });
        }
        if total <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(buf.freeze())
}

/// Refuses (415, naming what was sent) a request whose body is not declared JSON.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_json_content_type(headers) {
        return Ok(());
    }
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type must be application/json, got {}",
            given.as_deref().unwrap_or("none")
        ),
    ))
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`,
/// parameters such as `charset` allowed).
pub(crate) fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// Counts the elements of a top-level JSON array without parsing them, stopping once the
/// count passes `stop_after`. A body that does not start with `[` counts 0 (the parser
/// refuses it later). Exact for valid JSON; for broken JSON it counts the commas at the
/// array's top level, which is as good a guess as any.
pub(crate) fn count_array_elements(body: &[u8], stop_after: usize) -> usize {
    let mut bytes = body.iter();
    match bytes.by_ref().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {}
        _ => return 0,
    }
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut commas = 0usize;
    let mut any = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                any = true;
            }
            b'[' | b'{' => {
                depth += 1;
                any = true;
            }
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                commas += 1;
                if commas >= stop_after {
                    return commas + 1;
                }
            }
            b if b.is_ascii_whitespace() => {}
            _ => any = true,
        }
    }
    if any { commas + 1 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ct(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, value.parse().unwrap());
        h
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.gcx+json",
        ] {
            assert!(is_json_content_type(&ct(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "",
        ] {
            assert!(!is_json_content_type(&ct(bad)), "{bad}");
        }
        assert!(!is_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn counts_top_level_elements() {
        for (body, n) in [
            ("[]", 0),
            ("  [ ]", 0),
            ("[1]", 1),
            ("[1,2,3]", 3),
            (r#"[{"a":[1,2,{"b":","}]},"x,y\"]", [3,4]]"#, 3),
            ("{}", 0),
            ("not json", 0),
            ("[1,2", 2),
        ] {
            assert_eq!(count_array_elements(body.as_bytes(), 1000), n, "{body}");
        }
        assert_eq!(count_array_elements(b"[1,2,3,4,5]", 2), 3);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn count_matches_the_parser_on_valid_arrays(items in prop::collection::vec(json_value(), 0..20), pretty in any::<bool>()) {
            let value = serde_json::Value::from(items.clone());
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            prop_assert_eq!(count_array_elements(text.as_bytes(), 1000), items.len());
        }

        #[test]
        fn count_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = count_array_elements(&bytes, 500);
        }
    }
}
