//! The hash chain: canonical JSON, the record hash, and appending events to a chain head.
//!
//! `hash = hex(SHA-256(prev_hash_hex || canonical JSON of the record without "hash"))`.
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings and
//! numbers as `serde_json` writes them, timestamps as `YYYY-MM-DDTHH:MM:SS.ffffffZ`
//! (always six fractional digits), absent optional fields as `null`.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AuditEvent, AuditRecord};

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last record of a chain: where the next record attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// 0 for an empty chain.
    pub seq: u64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

/// An event placed in the chain, borrowed from the caller's batch: what the store writes.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub event: &'a AuditEvent,
    /// Whether `event.parameters` is kept; when not, it is stored and hashed as `null`.
    pub keep_parameters: bool,
    pub prev_hash: String,
    pub hash: String,
}

impl Link<'_> {
    /// The parameters as stored.
    pub fn parameters(&self) -> Option<&Value> {
        self.event
            .parameters
            .as_ref()
            .filter(|_| self.keep_parameters)
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        truncate_to_micros(self.event.started_at)
    }

    pub fn ended_at(&self) -> DateTime<Utc> {
        truncate_to_micros(self.event.ended_at)
    }
}

/// Places `events` after `head`, all recorded at `recorded_at`, and moves `head` to the
/// last one. Timestamps count with microsecond precision (what both backends store).
pub fn link<'a>(
    head: &mut ChainHead,
    recorded_at: DateTime<Utc>,
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keep_parameters: bool,
) -> Vec<Link<'a>> {
    let recorded_at = truncate_to_micros(recorded_at);
    events
        .into_iter()
        .map(|event| {
            let seq = head.seq + 1;
            let prev_hash = std::mem::take(&mut head.hash);
            let hash = hash_parts(seq, recorded_at, event, &prev_hash, keep_parameters);
            head.seq = seq;
            head.hash.clone_from(&hash);
            Link {
                seq,
                recorded_at,
                event,
                keep_parameters,
                prev_hash,
                hash,
            }
        })
        .collect()
}

/// [`link`], returning owned records (as they read back from the store).
pub fn append(
    head: &mut ChainHead,
    recorded_at: DateTime<Utc>,
    events: impl IntoIterator<Item = AuditEvent>,
) -> Vec<AuditRecord> {
    let events: Vec<AuditEvent> = events.into_iter().collect();
    link(head, recorded_at, &events, true)
        .into_iter()
        .map(|l| AuditRecord {
            seq: l.seq,
            recorded_at: l.recorded_at,
            event: AuditEvent {
                started_at: l.started_at(),
                ended_at: l.ended_at(),
                ..l.event.clone()
            },
            prev_hash: l.prev_hash,
            hash: l.hash,
        })
        .collect()
}

/// The hash `record`'s content implies.
pub fn record_hash(record: &AuditRecord) -> String {
    hash_parts(
        record.seq,
        record.recorded_at,
        &record.event,
        &record.prev_hash,
        true,
    )
}

fn hash_parts(
    seq: u64,
    recorded_at: DateTime<Utc>,
    event: &AuditEvent,
    prev_hash: &str,
    keep_parameters: bool,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical_parts(
        seq,
        recorded_at,
        event,
        prev_hash,
        keep_parameters,
    ));
    hex::encode(hasher.finalize())
}

/// SHA-256 (hex) of the canonical JSON of a trigger's `parameterMatrix` (an object).
pub fn parameters_sha256(parameters: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical_map(&mut out, parameters);
    hex::encode(Sha256::digest(out))
}

/// The canonical JSON text of any value (keys sorted, no whitespace).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => write_canonical_map(out, map),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, v);
            }
            out.push(b']');
        }
        scalar => write_json(out, scalar),
    }
}

fn write_canonical_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, key);
        out.push(b':');
        write_canonical(out, v);
    }
    out.push(b'}');
}

/// Writes one scalar as JSON. Serializing a string, number, bool or null into a Vec
/// cannot fail (serde_json fails only on I/O errors and non-string map keys).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The canonical JSON of a record without its `hash`, written field by field in sorted
/// key order (the unit tests prove it equals [`canonical_json`] of the serialized record).
pub fn canonical_record(r: &AuditRecord) -> Vec<u8> {
    canonical_parts(r.seq, r.recorded_at, &r.event, &r.prev_hash, true)
}

fn canonical_parts(
    seq: u64,
    recorded_at: DateTime<Utc>,
    e: &AuditEvent,
    prev_hash: &str,
    keep_parameters: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(640);
    fn field(out: &mut Vec<u8>, name: &str, first: bool) {
        if !first {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    }
    out.push(b'{');
    field(&mut out, "action_type", true);
    write_json(&mut out, &e.action_type);
    field(&mut out, "agent_id", false);
    write_json(&mut out, &e.agent_id);
    field(&mut out, "catalogue_version", false);
    write_json(&mut out, &e.catalogue_version);
    field(&mut out, "correlation_id", false);
    write_json(&mut out, &e.correlation_id);
    field(&mut out, "ended_at", false);
    write_timestamp(&mut out, &truncate_to_micros(e.ended_at));
    field(&mut out, "error", false);
    write_json(&mut out, &e.error);
    field(&mut out, "instance", false);
    write_json(&mut out, &e.instance);
    field(&mut out, "interaction_type", false);
    write_json(&mut out, &e.interaction_type);
    field(&mut out, "latency_ms", false);
    write_json(&mut out, &e.latency_ms);
    field(&mut out, "outcome", false);
    write_json(&mut out, &e.outcome);
    field(&mut out, "parameters", false);
    match e.parameters.as_ref().filter(|_| keep_parameters) {
        Some(p) => write_canonical(&mut out, p),
        None => out.extend_from_slice(b"null"),
    }
    field(&mut out, "parameters_sha256", false);
    write_json(&mut out, &e.parameters_sha256);
    field(&mut out, "prev_hash", false);
    write_json(&mut out, prev_hash);
    field(&mut out, "queue_wait_ms", false);
    write_json(&mut out, &e.queue_wait_ms);
    field(&mut out, "recorded_at", false);
    write_timestamp(&mut out, &truncate_to_micros(recorded_at));
    field(&mut out, "retries", false);
    write_json(&mut out, &e.retries);
    field(&mut out, "send_to_ack_ms", false);
    write_json(&mut out, &e.send_to_ack_ms);
    field(&mut out, "send_to_result_ms", false);
    write_json(&mut out, &e.send_to_result_ms);
    field(&mut out, "seq", false);
    write_json(&mut out, &seq);
    field(&mut out, "session_id", false);
    write_json(&mut out, &e.session_id);
    field(&mut out, "started_at", false);
    write_timestamp(&mut out, &truncate_to_micros(e.started_at));
    field(&mut out, "status", false);
    write_json(&mut out, &e.status);
    out.push(b'}');
    out
}

/// Writes `"YYYY-MM-DDTHH:MM:SS.ffffffZ"`: what [`timestamp::FORMAT`] gives, without
/// chrono's format parser (this runs for every timestamp of every record).
fn write_timestamp(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    out.push(b'"');
    let year = t.year();
    // Leap seconds (nanosecond >= 1e9) and years beyond four digits take chrono's path.
    if (0..=9999).contains(&year) && t.nanosecond() < 1_000_000_000 {
        push_digits(out, year.unsigned_abs(), 4);
        let fields = [
            (b'-', t.month(), 2),
            (b'-', t.day(), 2),
            (b'T', t.hour(), 2),
            (b':', t.minute(), 2),
            (b':', t.second(), 2),
            (b'.', t.nanosecond() / 1000, 6),
        ];
        for (separator, value, width) in fields {
            out.push(separator);
            push_digits(out, value, width);
        }
        out.push(b'Z');
    } else {
        let _ = write!(out, "{}", t.format(timestamp::FORMAT));
    }
    out.push(b'"');
}

/// Writes the last `width` (at most 6) decimal digits of `value`, zero-padded.
fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buf = [b'0'; 6];
    let mut v = value;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Drops sub-microsecond precision (PostgreSQL keeps microseconds; so do we everywhere).
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Serde for audit timestamps: written with exactly six fractional digits and `Z`, so
/// an exported record re-hashes to the same value; read as any RFC 3339 timestamp.
pub mod timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.format(FORMAT))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("timestamp {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    pub(crate) fn event(n: u32) -> AuditEvent {
        AuditEvent {
            correlation_id: format!("00000000-0000-4000-8000-{n:012}"),
            action_type: "knowledge_search".into(),
            status: "completed".into(),
            started_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            ended_at: DateTime::from_timestamp_micros(1_700_000_000_223_456).unwrap(),
            latency_ms: 100.25,
            queue_wait_ms: Some(1.5),
            send_to_ack_ms: None,
            send_to_result_ms: Some(99.0),
            agent_id: "agent-1".into(),
            session_id: "session-\"1\"".into(),
            interaction_type: "voice".into(),
            catalogue_version: "2024.1".into(),
            parameters_sha256: parameters_sha256(&object(json!({"b": 1, "a": [1, 2]}))),
            parameters: Some(json!({"zeta": {"y": 1, "x": null}, "alpha": "é\n"})),
            outcome: "success".into(),
            error: None,
            retries: n,
            instance: "host:1".into(),
        }
    }

    fn generic_canonical(r: &AuditRecord) -> Vec<u8> {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        canonical_json(&v)
    }

    #[test]
    fn field_by_field_writer_equals_generic_canonical_json() {
        let mut head = ChainHead::genesis();
        let mut events = vec![event(1), event(2)];
        events[1].parameters = None;
        events[1].error = Some("boom".into());
        events[1].queue_wait_ms = None;
        for r in append(&mut head, Utc::now(), events) {
            assert_eq!(
                String::from_utf8(canonical_record(&r)).unwrap(),
                String::from_utf8(generic_canonical(&r)).unwrap()
            );
        }
    }

    #[test]
    fn fast_timestamps_equal_chrono_format() {
        for micros in [
            0i64,
            1,
            999_999,
            1_700_000_000_123_456,
            253_402_300_799_999_999,
            -1,
        ] {
            let t = DateTime::from_timestamp_micros(micros).unwrap();
            let mut fast = Vec::new();
            write_timestamp(&mut fast, &t);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                format!("\"{}\"", t.format(timestamp::FORMAT))
            );
        }
    }

    #[test]
    fn append_links_records() {
        let mut head = ChainHead::genesis();
        let records = append(&mut head, Utc::now(), (1..=3).map(event));
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[0].seq, 1);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[2].prev_hash, records[1].hash);
        assert_eq!(head.seq, 3);
        assert_eq!(head.hash, records[2].hash);
        for r in &records {
            assert_eq!(r.compute_hash(), r.hash);
        }
        let mut edited = records[1].clone();
        edited.event.latency_ms += 1.0;
        assert_ne!(edited.compute_hash(), edited.hash);
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [3, {"d": 1, "c": 2}], "a": "x" }"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":"x","b":[3,{"c":2,"d":1}]}"#
        );
        let (a, b) = (
            json!({"a": 1, "b": [2, {"d": 1, "c": 2}]}),
            json!({"b": [2, {"c": 2, "d": 1}], "a": 1}),
        );
        assert_eq!(
            parameters_sha256(&object(a.clone())),
            parameters_sha256(&object(b))
        );
        assert_eq!(
            parameters_sha256(&object(a.clone())),
            hex::encode(Sha256::digest(canonical_json(&a)))
        );
    }

    #[test]
    fn exported_record_rehashes_after_a_json_round_trip() {
        let mut head = ChainHead::genesis();
        let r = append(&mut head, Utc::now(), [event(7)]).remove(0);
        let line = serde_json::to_string(&r).unwrap();
        let back: AuditRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.compute_hash(), r.hash);
    }

    proptest! {
        #[test]
        fn canonical_json_is_independent_of_key_order(
            pairs in proptest::collection::vec(("[a-z]{1,6}", any::<i64>()), 0..12)
        ) {
            let forward: serde_json::Map<String, Value> =
                pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let backward: serde_json::Map<String, Value> =
                pairs.iter().rev().map(|(k, v)| (k.clone(), json!(v))).collect();
            // Later duplicates win in both maps alike only when keys are unique.
            let unique: std::collections::HashSet<_> = pairs.iter().map(|p| &p.0).collect();
            prop_assume!(unique.len() == pairs.len());
            prop_assert_eq!(
                canonical_json(&Value::Object(forward)),
                canonical_json(&Value::Object(backward))
            );
        }
    }
}
