//! REST errors and rate-limit headers, as Genesys Cloud writes them (PROTOCOL.md 4.2).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::EventViolation;

/// Header carrying the request's correlation id.
pub const HEADER_CORRELATION_ID: &str = "ININ-Correlation-Id";
/// Rate-limit headers.
pub const HEADER_RATELIMIT_COUNT: &str = "inin-ratelimit-count";
pub const HEADER_RATELIMIT_ALLOWED: &str = "inin-ratelimit-allowed";
pub const HEADER_RATELIMIT_RESET: &str = "inin-ratelimit-reset";

/// The error body every REST endpoint returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: String,
    pub code: String,
    pub status: u16,
    pub context_id: String,
    #[serde(default)]
    pub details: Vec<Value>,
    #[serde(default)]
    pub errors: Vec<EventViolation>,
}

/// The error code for an HTTP status (section 4.2).
pub fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => "bad.request",
        401 => "authentication.required",
        403 => "missing.permissions",
        404 => "not.found",
        413 => "request.entity.too.large",
        415 => "unsupported.media.type",
        429 => "too.many.requests.retry.after",
        503 => "service.unavailable",
        _ => "internal.server.error",
    }
}
