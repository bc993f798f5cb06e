//! Conversions between stored column values and the store's types, shared by both
//! backends; each failure names the store and the column.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{OutboxStatus, StoreError, TriggerState};

pub(crate) fn decode_error(
    location: &str,
    what: &str,
    detail: impl std::fmt::Display,
) -> StoreError {
    StoreError::Decode {
        location: location.to_string(),
        detail: format!("{what}: {detail}"),
    }
}

pub(crate) fn json(location: &str, what: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| decode_error(location, what, e))
}

pub(crate) fn opt_json(
    location: &str,
    what: &str,
    text: Option<String>,
) -> Result<Option<Value>, StoreError> {
    text.map(|t| json(location, what, &t)).transpose()
}

pub(crate) fn to_text(value: &Value) -> String {
    value.to_string()
}

pub(crate) fn u32_of(location: &str, what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| decode_error(location, what, format!("{v} is out of range")))
}

pub(crate) fn u64_of(location: &str, what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| decode_error(location, what, format!("{v} is out of range")))
}

pub(crate) fn u16_of(
    location: &str,
    what: &str,
    v: Option<i64>,
) -> Result<Option<u16>, StoreError> {
    v.map(|v| {
        u16::try_from(v).map_err(|_| decode_error(location, what, format!("{v} is out of range")))
    })
    .transpose()
}

pub(crate) fn state(location: &str, text: &str) -> Result<TriggerState, StoreError> {
    TriggerState::parse(text).ok_or_else(|| {
        decode_error(
            location,
            "triggers.state",
            format!("unknown state {text:?}"),
        )
    })
}

pub(crate) fn outbox_status(location: &str, text: &str) -> Result<OutboxStatus, StoreError> {
    OutboxStatus::parse(text).ok_or_else(|| {
        decode_error(
            location,
            "outbox.status",
            format!("unknown status {text:?}"),
        )
    })
}

/// SQLite keeps timestamps as microseconds since the Unix epoch.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(location: &str, what: &str, v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| decode_error(location, what, format!("{v} is not a timestamp")))
}

/// An index into `u64` space stored as `i64` (seq numbers, limits).
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
