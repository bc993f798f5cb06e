//! Genesys-style REST error bodies and the headers every REST answer carries
//! (PROTOCOL.md 4.2).
//!
//! [`ApiError`] is the one way a REST handler refuses a request: it writes
//! `{"message","code","status","contextId","details","errors"}` with a fresh contextId and,
//! for a 429, `Retry-After`. [`rest_headers`] is the middleware that gives every answer an
//! `ININ-Correlation-Id` (the request's own, or a new one) and the `inin-ratelimit-*`
//! headers (a handler that knows better, the events endpoint, sets its own first).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gcx_protocol::events::EventViolation;
use gcx_protocol::rest::{
    ErrorBody, HEADER_CORRELATION_ID, HEADER_RATELIMIT_ALLOWED, HEADER_RATELIMIT_COUNT,
    HEADER_RATELIMIT_RESET, code_for_status,
};
use tokio::time::Instant;

use crate::AppState;

/// The rate-limit figures an answer reports in its `inin-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateInfo {
    /// Requests counted in the current window, this one included.
    pub count: u64,
    /// Requests the window allows (1 000 000 when no limit is configured).
    pub allowed: u64,
    /// Seconds until the window starts over (60 when no limit is configured).
    pub reset_secs: u64,
}

impl RateInfo {
    /// Writes the three `inin-ratelimit-*` headers.
    pub fn apply(self, headers: &mut HeaderMap) {
        for (name, value) in [
            (HEADER_RATELIMIT_COUNT, self.count),
            (HEADER_RATELIMIT_ALLOWED, self.allowed),
            (HEADER_RATELIMIT_RESET, self.reset_secs),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// A refused REST request, written as Genesys Cloud writes errors.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// One entry per bad event of a refused batch (400 only).
    errors: Vec<EventViolation>,
    /// Seconds for `Retry-After` (429 only; at least 1).
    retry_after_secs: Option<u64>,
    /// Rate-limit figures to report instead of the middleware's defaults.
    rate: Option<RateInfo>,
    /// A code of its own and `details` (the Events API's 400s); boxed so the common
    /// error stays small.
    extra: Option<Box<Extra>>,
}

/// What only some errors carry.
#[derive(Debug, Clone, Default)]
struct Extra {
    /// A code that says more than the status's own (`max.batch.size.surpassed`, ...).
    code: Option<&'static str>,
    /// Entries of the body's `details` (the Events API's violations, PROTOCOL.md 9.1).
    details: Vec<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            rate: None,
            extra: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 429 that tells the client when to come back.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    pub fn with_errors(mut self, errors: Vec<EventViolation>) -> ApiError {
        self.errors = errors;
        self
    }

    /// Writes `code` instead of the status's own code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.extra.get_or_insert_default().code = Some(code);
        self
    }

    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> ApiError {
        self.extra.get_or_insert_default().details = details;
        self
    }

    pub fn with_rate(mut self, rate: RateInfo) -> ApiError {
        self.rate = Some(rate);
        self
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> &'static str {
        if let Some(code) = self.extra.as_ref().and_then(|e| e.code) {
            return code;
        }
        match self.status {
            StatusCode::METHOD_NOT_ALLOWED => "method.not.allowed",
            s => code_for_status(s.as_u16()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code().to_owned(),
            message: self.message,
            status: self.status.as_u16(),
            context_id: new_uuid().to_string(),
            details: self.extra.map(|e| e.details).unwrap_or_default(),
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(rate) = self.rate {
            rate.apply(headers);
        }
        response
    }
}

/// A random (version 4) UUID from the thread-local generator: no system call per id.
pub(crate) fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// A correlation id worth echoing: short, visible ASCII.
fn usable_correlation_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Middleware: every answer carries `ININ-Correlation-Id` (echoed when the request has a
/// usable one) and the `inin-ratelimit-*` headers; handlers that track a real window set
/// those themselves and are left alone.
pub(crate) async fn rest_headers(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let correlation = request
        .headers()
        .get(HEADER_CORRELATION_ID)
        .filter(|v| usable_correlation_id(v))
        .cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let correlation = match correlation {
        Some(v) => v,
        None => HeaderValue::from_str(&new_uuid().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000")),
    };
    headers.insert(HeaderName::from_static("inin-correlation-id"), correlation);
    if !headers.contains_key(HEADER_RATELIMIT_ALLOWED) {
        let rate = state.events.rest_window.lock().count(Instant::now());
        rate.apply(headers);
    }
    response
}

/// Fallback for paths nobody serves: a Genesys 404.
pub(crate) async fn not_found(uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no resource at {}", uri.path()),
    )
    .into_response()
}

/// Answer for a known path asked with a method it does not take.
pub(crate) async fn method_not_allowed(uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} takes POST only", uri.path()),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_body_has_every_field_and_retry_after() {
        let response = ApiError::too_many_requests("slow down", 0).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.code, "too.many.requests.retry.after");
        assert_eq!(body.status, 429);
        assert!(uuid::Uuid::parse_str(&body.context_id).is_ok());
    }

    #[test]
    fn only_plain_correlation_ids_are_echoed() {
        assert!(usable_correlation_id(&HeaderValue::from_static("abc-123")));
        assert!(!usable_correlation_id(&HeaderValue::from_static("")));
        assert!(!usable_correlation_id(&HeaderValue::from_static("a b")));
        let long = "x".repeat(129);
        assert!(!usable_correlation_id(
            &HeaderValue::from_str(&long).unwrap()
        ));
    }
}
