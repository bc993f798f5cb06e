//! Latency, honestly: HDR histograms of response time (from the *intended* send time, so a
//! stalled server cannot hide behind the requests it kept us from sending: coordinated
//! omission corrected), of service time (from the actual send), and of async end-to-end
//! processing (from the intended send to the server's `processedAt`); plus a per-second
//! series for the report's charts. Histograms travel base64-encoded (HdrHistogram V2 +
//! deflate, the format other HDR tools read) so shards merge exactly.

use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Largest latency recorded, in microseconds (one hour); larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds: 1 µs to an hour, `sigfig` significant digits.
pub fn new_histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig)
        .unwrap_or_else(|_| unreachable!("the bounds and 2-3 significant digits are valid"))
}

fn us(d: Duration) -> u64 {
    (d.as_micros().min(u128::from(MAX_US)) as u64).max(1)
}

/// Why a stored histogram cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistogramDecodeError {
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not an HdrHistogram V2 encoding: {0:?}")]
    Hdr(hdrhistogram::serialization::DeserializeError),
}

/// Base64 of the V2-deflate encoding.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail for I/O; the serializer only fails on I/O.
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// The inverse of [`encode`] (an empty string is an empty histogram).
pub fn decode(s: &str, sigfig: u8) -> Result<Histogram<u64>, HistogramDecodeError> {
    if s.is_empty() {
        return Ok(new_histogram(sigfig));
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(HistogramDecodeError::Hdr)
}

/// Adds the encoded histogram `b` (3 significant figures) to `a`, in place; an empty
/// result is written as the empty string, as [`encode`]'s callers store an empty one.
pub fn add_encoded(a: &mut String, b: &str) -> Result<(), HistogramDecodeError> {
    let mut h = decode(a, 3)?;
    let _ = h.add(decode(b, 3)?);
    *a = if h.is_empty() {
        String::new()
    } else {
        encode(&h)
    };
    Ok(())
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// The run's three histograms.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Answer time minus intended send time, per event.
    pub response: Histogram<u64>,
    /// Answer time minus first actual send, per event.
    pub service: Histogram<u64>,
    /// Async: `processedAt` minus intended send time, per event.
    pub e2e: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            response: new_histogram(3),
            service: new_histogram(3),
            e2e: new_histogram(3),
        }
    }
}

impl Latency {
    /// `n` events answered together: one response time each, one shared service time.
    pub fn record(&mut self, response: Duration, service: Duration) {
        self.response.saturating_record(us(response));
        self.service.saturating_record(us(service));
    }

    pub fn record_e2e(&mut self, d: Duration) {
        self.e2e.saturating_record(us(d));
    }
}

/// One second of the run, for the charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the run started.
    pub t: u64,
    /// Events put on the wire in this second (first attempts).
    pub sent: u64,
    /// Events whose request was answered in this second, by final outcome.
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
    pub retries: u64,
    /// Arrivals dropped in this second.
    pub dropped: u64,
    /// Response-time percentiles of the events answered in this second (ms).
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// That second's histogram (2 significant digits), so merged series are exact.
    pub hist: String,
}

/// The per-second series, filled as the run goes.
#[derive(Debug, Default)]
pub struct Series {
    points: Vec<SecondPoint>,
    /// The histogram of the newest second, not yet folded into its point.
    current: Option<(u64, Histogram<u64>)>,
}

impl Series {
    fn point(&mut self, t: u64) -> &mut SecondPoint {
        while self.points.len() as u64 <= t {
            let next = self.points.len() as u64;
            self.points.push(SecondPoint {
                t: next,
                ..SecondPoint::default()
            });
        }
        &mut self.points[t as usize]
    }

    fn close_current(&mut self) {
        if let Some((t, h)) = self.current.take() {
            let p = Percentiles::of(&h);
            let point = self.point(t);
            point.p50 = p.p50;
            point.p90 = p.p90;
            point.p95 = p.p95;
            point.p99 = p.p99;
            point.max = p.max;
            point.hist = encode(&h);
        }
    }

    /// Response times answered at second `t` (seconds only move forward here).
    pub fn record_response(&mut self, t: u64, response: Duration) {
        if self.current.as_ref().is_some_and(|(ct, _)| *ct != t) {
            self.close_current();
        }
        let (_, h) = self.current.get_or_insert_with(|| (t, new_histogram(2)));
        h.saturating_record(us(response));
    }

    /// The newest second's p95 (for the live progress line).
    pub fn current_p95_ms(&self) -> Option<f64> {
        self.current
            .as_ref()
            .filter(|(_, h)| !h.is_empty())
            .map(|(_, h)| h.value_at_quantile(0.95) as f64 / 1000.0)
    }

    pub fn at(&mut self, t: u64) -> &mut SecondPoint {
        self.point(t)
    }

    /// Every second, the newest folded in.
    pub fn finish(mut self) -> Vec<SecondPoint> {
        self.close_current();
        self.points
    }
}

/// Adds `b`'s second into `a` (same `t`), recomputing percentiles from the merged
/// histograms.
pub fn merge_point(a: &mut SecondPoint, b: &SecondPoint) -> Result<(), HistogramDecodeError> {
    a.sent += b.sent;
    a.accepted += b.accepted;
    a.rejected += b.rejected;
    a.failed += b.failed;
    a.retries += b.retries;
    a.dropped += b.dropped;
    let mut h = decode(&a.hist, 2)?;
    let other = decode(&b.hist, 2)?;
    // Same bounds on both sides, so `add` cannot fail.
    let _ = h.add(&other);
    let p = Percentiles::of(&h);
    a.p50 = p.p50;
    a.p90 = p.p90;
    a.p95 = p.p95;
    a.p99 = p.p99;
    a.max = p.max;
    a.hist = if h.is_empty() {
        String::new()
    } else {
        encode(&h)
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn encode_decode_round_trips_exactly() {
        let mut l = Latency::default();
        for v in 1..=1000 {
            l.record(ms(v), ms(v / 2));
        }
        let back = decode(&encode(&l.response), 3).unwrap();
        assert_eq!(back, l.response);
        assert_eq!(Percentiles::of(&back).p99, Percentiles::of(&l.response).p99);
        assert!((Percentiles::of(&back).p50 - 500.0).abs() < 1.0);
        assert!(decode("", 3).unwrap().is_empty());
        assert!(decode("!!", 3).is_err());
    }

    #[test]
    fn series_closes_seconds_and_merges_exactly() {
        let mut a = Series::default();
        let mut b = Series::default();
        for v in 1..=100 {
            a.record_response(0, ms(v));
            b.record_response(0, ms(100 + v));
        }
        a.record_response(2, ms(5));
        a.at(0).sent = 100;
        let mut pa = a.finish();
        let pb = b.finish();
        assert_eq!(pa.len(), 3);
        assert!((pa[0].p50 - 50.0).abs() < 1.0);
        assert_eq!(
            pa[1],
            SecondPoint {
                t: 1,
                ..SecondPoint::default()
            }
        );
        merge_point(&mut pa[0], &pb[0]).unwrap();
        assert!((pa[0].p50 - 100.0).abs() < 2.0, "{}", pa[0].p50);
        assert!((pa[0].max - 200.0).abs() < 2.0);
        assert_eq!(pa[0].sent, 100);
    }
}
