//! The one error shape every route answers with: `{"error":{"code","message","details"?}}`,
//! where `code` is a stable snake_case word a client can branch on and `message` a sentence
//! for a person naming what is wrong and what would be accepted. The answers several
//! routes share (an unreadable or oversized body, a store that did not answer) are built
//! here.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_trigger`, `unauthorized`, `rate_limited`.
    pub code: String,
    /// A sentence naming the input, the place in it, and what would be accepted.
    pub message: String,
    /// Structured detail (violations per item, limits), when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// An error answer: status, body, and the `Retry-After` a 429 or 503 carries.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: handlers return `Result<_, ApiError>` and the happy path stays small.
    pub body: Box<ErrorBody>,
    /// Seconds a client should wait before trying again (429, 503).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.into(),
                    details: None,
                },
            }),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.body.error.details = Some(details);
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A fault of ours (store, pipeline). The message names the part, never a secret.
    pub fn internal(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }

    /// The service is stopping: intake is closed.
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is shutting down and takes no new triggers; retry against another instance or after the restart",
        )
        .with_retry_after(Duration::from_secs(5))
    }

    /// 413 for a body over `serve.max_body_bytes` (after inflating, for gzip).
    pub fn body_too_large(max: usize, gzip: bool) -> ApiError {
        let inflated = if gzip { " once inflated" } else { "" };
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is over {max} bytes{inflated} (serve.max_body_bytes); send \
                 fewer triggers per request"
            ),
        )
        .with_details(json!({"maxBodyBytes": max}))
    }

    pub fn code(&self) -> &str {
        &self.body.error.code
    }
}

/// A body that could not be read: over the limit (413) or broken off.
pub fn body_error(e: BytesRejection, max: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::body_too_large(max, false)
    } else {
        ApiError::bad_request(
            "unreadable_body",
            format!("the request body could not be read: {}", e.body_text()),
        )
    }
}

/// 503 for a store that did not answer a read (logged here, with its cause).
pub fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store read failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        format!("the store did not answer: {e}"),
    )
    .with_retry_after(Duration::from_secs(1))
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(after)),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gcx\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn details_are_omitted_when_absent() {
        let e = ApiError::not_found("no trigger 1");
        let json = serde_json::to_value(&e.body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "not_found", "message": "no trigger 1"}})
        );
    }
}
