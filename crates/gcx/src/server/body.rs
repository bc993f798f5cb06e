//! Request bodies of the `/v1` routes, read before a handler sees them, behind the API
//! key check (an unauthenticated client never makes the service read its body):
//!
//! 1. [`check_encoding`]: `Content-Encoding` may be absent, `identity` or `gzip`; anything
//!    else is 415 naming the encoding.
//! 2. tower-http's `RequestDecompressionLayer` inflates gzip as the body is read.
//! 3. [`read_whole`]: the (decompressed) body is read whole, at most
//!    `serve.max_body_bytes` of it (a gzip bomb stops there: 413) and within
//!    `serve.body_read_timeout` (a client trickling its body gets 408 and the connection
//!    closes). The handler then reads the buffered bytes.
//!
//! A body that is not empty needs a JSON `Content-Type` ([`check_content_type`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::error::ApiError;
use super::state::AppState;

/// The content codings a request body may use.
pub const ACCEPTED_ENCODINGS: &str = "gzip or identity";

/// Refuses a `Content-Encoding` other than `identity` or `gzip` (any case) with 415, and
/// writes an accepted one in the lower case tower-http's decompression matches.
pub async fn check_encoding(mut request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::CONTENT_ENCODING) else {
        return next.run(request).await;
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let canonical = match text.as_str() {
        "gzip" | "x-gzip" => "gzip",
        "identity" | "" => "identity",
        _ => {
            let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                format!(
                    "Content-Encoding `{shown}` is not supported; send the body as is or \
                     compressed with {ACCEPTED_ENCODINGS} (one coding)"
                ),
            )
            .with_details(json!({"contentEncoding": shown, "accepted": ["gzip", "identity"]}))
            .into_response();
        }
    };
    request.headers_mut().insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(canonical),
    );
    if canonical == "gzip" {
        // The decompression layer drops the header; messages still say "inflated".
        request.extensions_mut().insert(Gzip);
    }
    next.run(request).await
}

/// Marks a request whose body is being inflated from gzip.
#[derive(Debug, Clone, Copy)]
struct Gzip;

/// Reads the whole body under `serve.max_body_bytes` and `serve.body_read_timeout`, then
/// hands the handler the buffered bytes.
pub async fn read_whole(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let max = state.config.max_body_bytes;
    let limit = state.config.body_read_timeout;
    let (parts, body) = request.into_parts();
    let gzip = parts.extensions.get::<Gzip>().is_some();
    let read = tokio::time::timeout(limit, Limited::new(body, max).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::body_too_large(max, gzip).into_response();
        }
        Ok(Err(e)) => {
            let what = if gzip {
                "the gzip request body could not be read or inflated"
            } else {
                "the request body could not be read"
            };
            return ApiError::bad_request("unreadable_body", format!("{what}: {e}"))
                .into_response();
        }
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_read_timeout",
                format!(
                    "the request body did not arrive within serve.body_read_timeout ({}); \
                     send it at once",
                    humantime::format_duration(limit)
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A body that is not empty must say it is JSON: `application/json` or any `+json` type.
pub fn check_content_type(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        if body.is_empty() {
            return Ok(());
        }
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request has a body but no Content-Type; send Content-Type: application/json",
        ));
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type `{text}` is not JSON; send application/json"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn a_body_needs_a_json_content_type() {
        assert!(check_content_type(&headers(None), b"").is_ok());
        let e = check_content_type(&headers(None), b"{}").unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.body.error.message.contains("no Content-Type"));
        assert!(check_content_type(&headers(Some("application/json")), b"{}").is_ok());
        assert!(
            check_content_type(
                &headers(Some("Application/Problem+JSON; charset=utf-8")),
                b"{}"
            )
            .is_ok()
        );
        let e = check_content_type(&headers(Some("text/plain")), b"{}").unwrap_err();
        assert!(e.body.error.message.contains("text/plain"));
    }
}
