//! Entry points for the fuzz targets in `fuzz/` (not an API): the pure functions through
//! which the sandbox reads untrusted bytes, reachable from outside the crate. Each calls
//! the code the handlers call; nothing here has behaviour of its own.

use axum::http::HeaderMap;

pub use crate::assist::frame::{ClientFrame, read as client_frame};
pub use crate::events::batch::{BatchError, EventIn, fast as events_batch_fast, parse_batch};
pub use crate::receivers::{TIMESTAMP_TOLERANCE_SECS, decode_secret, verify};

/// Which key a query-back request asks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    SequenceIds(usize),
    Batch,
    Agents(usize),
}

/// A query-back body read as the handler reads it: its key and the position its cursor
/// names, or the refusal's status and message.
pub fn query(bytes: &[u8]) -> Result<(QueryKind, u64), (u16, String)> {
    use crate::events::query::{cursor_of, key_of, read_request};
    use crate::events::store::QueryKey;
    let refusal = |e: crate::http_error::ApiError| (e.status().as_u16(), e.message().to_owned());
    let request = read_request(bytes).map_err(refusal)?;
    let kind = match key_of(&request).map_err(refusal)? {
        QueryKey::SequenceIds(ids) => QueryKind::SequenceIds(ids.len()),
        QueryKey::Batch(_) => QueryKind::Batch,
        QueryKey::Agents(ids) => QueryKind::Agents(ids.len()),
    };
    let from = cursor_of(&request).map_err(refusal)?;
    Ok((kind, from))
}

/// The receivers' signature check with a key and a clock given.
pub fn webhook_signature(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    verify(key, headers, body, now, TIMESTAMP_TOLERANCE_SECS)
}
