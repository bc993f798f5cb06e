//! [`Observer`]: what injected events should cause ([`Observer::expect`]) matched with what
//! notifications showed ([`Observer::observe`]), first in first out per [`ObsKey`], the
//! latency of each match in an HDR histogram (microseconds, 3 significant figures).
//!
//! Pure: no clock is read, every instant is passed in. An observation may come before its
//! expectation is registered (the simulator registers an expectation when the injection
//! request is answered, with the time the request was sent, and the server may notify
//! before it answers): it waits in an `early` pool for its key and is matched when the
//! expectation comes, its latency `observed_at - expected_at` (zero if negative). What is
//! still in the pool at [`Observer::finish`] was never expected (`unexpected`); what is
//! still expected was never seen (`unobserved`). Every expectation ends matched or
//! unobserved, exactly once.
//!
//! An early observation can also be a notification no injection caused (another source
//! changed the user) that would then match a later expectation of the same key with a
//! latency of zero. [`Observer::with_early_window`] bounds that: an early observation
//! more than the window older than an expectation's send time is not its cause, and is
//! counted unexpected instead.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use super::keys::ObsKey;

/// Most keys listed in a report's samples.
pub const SAMPLE: usize = 20;

/// Matches expectations with observations.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Expectations not observed yet, oldest first per key.
    waiting: HashMap<ObsKey, VecDeque<Instant>>,
    /// Observations not expected yet, oldest first per key.
    early: HashMap<ObsKey, VecDeque<Instant>>,
    /// How much older than an expectation an early observation may be and still match.
    early_window: Option<Duration>,
    /// Latency of every match, in microseconds.
    histogram: Histogram<u64>,
    expected: u64,
    matched: u64,
    /// Early observations dropped as too old for the expectation that came (with the
    /// first [`SAMPLE`] of them).
    stale: u64,
    stale_sample: Vec<(Instant, ObsKey)>,
}

/// What became of the expectations and observations, for the simulator's summary.
#[derive(Debug, Clone, Serialize)]
pub struct ObservationReport {
    /// Expectations registered.
    pub expected: u64,
    /// Expectations matched by an observation.
    pub observed_matched: u64,
    pub unobserved: Unobserved,
    pub unexpected: Unexpected,
    /// The grace `finish` was given.
    pub grace_ms: u64,
    /// Latency percentiles of the matches, in milliseconds (none without a match).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Every match's latency in microseconds (3 significant figures, at most a day), to
    /// merge or plot.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Expectations no observation matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unobserved {
    pub count: u64,
    /// Of those, the ones expected less than the grace before `finish`: they may still
    /// be notified (the caller did not wait the whole grace for them).
    pub within_grace: u64,
    /// The oldest [`SAMPLE`] of them.
    pub sample: Vec<ObsKey>,
}

/// Observations no expectation matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unexpected {
    pub count: u64,
    /// The oldest [`SAMPLE`] of them.
    pub sample: Vec<ObsKey>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new()
    }
}

impl Observer {
    /// An observer that matches any early observation, however old.
    pub fn new() -> Observer {
        Observer {
            waiting: HashMap::new(),
            early: HashMap::new(),
            early_window: None,
            histogram: new_histogram(),
            expected: 0,
            matched: 0,
            stale: 0,
            stale_sample: Vec::new(),
        }
    }

    /// An observer that matches an early observation only if it came at most `window`
    /// before the expectation's time.
    pub fn with_early_window(window: Duration) -> Observer {
        Observer {
            early_window: Some(window),
            ..Observer::new()
        }
    }

    /// An injected event sent at `at` should cause a notification showing `key`.
    pub fn expect(&mut self, key: ObsKey, at: Instant) {
        self.expected += 1;
        if let Some(observed_at) = self.take_early(key, at) {
            self.record(observed_at.saturating_duration_since(at));
        } else {
            self.waiting.entry(key).or_default().push_back(at);
        }
    }

    /// A notification showing `key` was read at `at`.
    pub fn observe(&mut self, key: ObsKey, at: Instant) {
        match self.waiting.get_mut(&key).and_then(VecDeque::pop_front) {
            Some(expected_at) => {
                self.drop_if_empty(key);
                self.record(at.saturating_duration_since(expected_at));
            }
            None => self.early.entry(key).or_default().push_back(at),
        }
    }

    /// Expectations registered so far.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Expectations matched so far.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// Expectations still waiting for their observation.
    pub fn waiting(&self) -> u64 {
        self.waiting.values().map(|q| q.len() as u64).sum()
    }

    /// The report at `now`, after waiting `grace` for the last notifications: everything
    /// still expected is unobserved, everything still early is unexpected.
    pub fn finish(&self, now: Instant, grace: Duration) -> ObservationReport {
        let mut waiting: Vec<(Instant, ObsKey)> = self
            .waiting
            .iter()
            .flat_map(|(k, q)| q.iter().map(|at| (*at, *k)))
            .collect();
        waiting.sort_by_key(|(at, _)| *at);
        let within_grace = waiting
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < grace)
            .count() as u64;
        let mut early: Vec<(Instant, ObsKey)> = self
            .early
            .iter()
            .flat_map(|(k, q)| q.iter().map(|at| (*at, *k)))
            .chain(self.stale_sample.iter().copied())
            .collect();
        early.sort_by_key(|(at, _)| *at);
        let ms = |q: f64| {
            (!self.histogram.is_empty())
                .then(|| self.histogram.value_at_quantile(q) as f64 / 1000.0)
        };
        ObservationReport {
            expected: self.expected,
            observed_matched: self.matched,
            unobserved: Unobserved {
                count: waiting.len() as u64,
                within_grace,
                sample: waiting.iter().take(SAMPLE).map(|(_, k)| *k).collect(),
            },
            unexpected: Unexpected {
                count: self.early.values().map(|q| q.len() as u64).sum::<u64>() + self.stale,
                sample: early.iter().take(SAMPLE).map(|(_, k)| *k).collect(),
            },
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: (!self.histogram.is_empty()).then(|| self.histogram.max() as f64 / 1000.0),
            histogram: self.histogram.clone(),
        }
    }

    /// The oldest early observation of `key` that may be the effect of an expectation at
    /// `at`; older ones outside the window are dropped as unexpected.
    fn take_early(&mut self, key: ObsKey, at: Instant) -> Option<Instant> {
        let queue = self.early.get_mut(&key)?;
        let mut found = None;
        while let Some(observed_at) = queue.pop_front() {
            let stale = self.early_window.is_some_and(|w| observed_at + w < at);
            if !stale {
                found = Some(observed_at);
                break;
            }
            self.stale += 1;
            if self.stale_sample.len() < SAMPLE {
                self.stale_sample.push((observed_at, key));
            }
        }
        if queue.is_empty() {
            self.early.remove(&key);
        }
        found
    }

    fn drop_if_empty(&mut self, key: ObsKey) {
        if self.waiting.get(&key).is_some_and(VecDeque::is_empty) {
            self.waiting.remove(&key);
        }
    }

    fn record(&mut self, latency: Duration) {
        self.matched += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us);
    }
}

/// Highest latency recorded as itself (a day, in microseconds); longer ones are recorded
/// as this.
const HIGHEST_US: u64 = 86_400_000_000;

/// A histogram of microseconds from 1 to [`HIGHEST_US`] with 3 significant figures.
fn new_histogram() -> Histogram<u64> {
    // hdrhistogram refuses only a low bound of 0, a high bound under twice the low one, or
    // more than 5 significant figures: none of which these constants are.
    Histogram::new_with_bounds(1, HIGHEST_US, 3)
        .unwrap_or_else(|_| unreachable!("1..=HIGHEST_US at 3 significant figures is valid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_protocol::genesys_notifications::NotifiedRoutingStatus;
    use uuid::Uuid;

    fn key(n: u128) -> ObsKey {
        ObsKey::Routing {
            user: Uuid::from_u128(n),
            status: NotifiedRoutingStatus::Idle,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_observation_after_its_expectation_matches_with_its_latency() {
        let t0 = Instant::now();
        let mut o = Observer::new();
        o.expect(key(1), t0);
        o.observe(key(1), t0 + ms(40));
        let r = o.finish(t0 + ms(100), ms(50));
        assert_eq!((r.expected, r.observed_matched), (1, 1));
        assert_eq!(r.unobserved, Unobserved::default());
        assert_eq!(r.unexpected, Unexpected::default());
        let p50 = r.p50_ms.unwrap();
        assert!((39.9..=40.1).contains(&p50), "{p50}");
        assert_eq!(r.histogram.len(), 1);
    }

    #[test]
    fn matches_are_first_in_first_out_per_key() {
        let t0 = Instant::now();
        let mut o = Observer::new();
        o.expect(key(1), t0);
        o.expect(key(1), t0 + ms(10));
        o.expect(key(2), t0 + ms(5));
        o.observe(key(1), t0 + ms(30)); // the first key(1): 30 ms
        o.observe(key(1), t0 + ms(30)); // the second: 20 ms
        let r = o.finish(t0 + ms(1000), ms(100));
        assert_eq!(r.observed_matched, 2);
        assert_eq!(r.histogram.min(), r.histogram.lowest_equivalent(20_000));
        assert_eq!(r.histogram.max(), r.histogram.highest_equivalent(30_000));
        assert_eq!(r.unobserved.count, 1);
        assert_eq!(r.unobserved.sample, [key(2)]);
    }

    #[test]
    fn an_early_observation_waits_for_its_expectation() {
        let t0 = Instant::now();
        let mut o = Observer::new();
        // The server notified (at 8 ms) before the request sent at 0 ms was answered.
        o.observe(key(1), t0 + ms(8));
        assert_eq!(o.matched(), 0);
        o.expect(key(1), t0);
        assert_eq!(o.matched(), 1);
        let r = o.finish(t0 + ms(50), ms(10));
        assert_eq!(r.unexpected.count, 0);
        let p50 = r.p50_ms.unwrap();
        assert!((7.9..=8.1).contains(&p50), "{p50}");
        // An early observation stamped before the send time has a latency of zero.
        let mut o = Observer::new();
        o.observe(key(1), t0);
        o.expect(key(1), t0 + ms(5));
        assert_eq!(o.finish(t0 + ms(50), ms(10)).max_ms, Some(0.0));
    }

    #[test]
    fn what_is_left_is_unobserved_or_unexpected() {
        let t0 = Instant::now();
        let mut o = Observer::new();
        for i in 0..30 {
            o.expect(key(i), t0 + ms(i as u64));
        }
        o.observe(key(100), t0);
        o.observe(key(100), t0 + ms(1));
        let r = o.finish(t0 + ms(25), ms(10));
        assert_eq!(r.unobserved.count, 30);
        assert_eq!(r.unobserved.sample.len(), SAMPLE);
        assert_eq!(r.unobserved.sample[0], key(0), "oldest first");
        // Less than 10 ms before 25 ms (or after it): expected at 16 to 29 ms.
        assert_eq!(r.unobserved.within_grace, 14);
        assert_eq!(r.unexpected.count, 2);
        assert_eq!(r.unexpected.sample, [key(100), key(100)]);
        assert_eq!(r.p50_ms, None);
        assert_eq!(r.max_ms, None);
        assert_eq!(r.grace_ms, 10);
    }

    #[test]
    fn with_a_window_an_old_early_observation_is_not_the_cause() {
        let t0 = Instant::now();
        let mut o = Observer::with_early_window(ms(100));
        o.observe(key(1), t0); // caused by something else
        o.observe(key(1), t0 + ms(950)); // the server's early answer to the next send
        o.expect(key(1), t0 + ms(900));
        let r = o.finish(t0 + ms(2000), ms(100));
        assert_eq!(r.observed_matched, 1);
        assert_eq!(r.unexpected.count, 1);
        assert_eq!(r.unexpected.sample, [key(1)]);
        let p50 = r.p50_ms.unwrap();
        assert!((49.9..=50.1).contains(&p50), "{p50}");
        // Without a window the old one would have matched first.
        let mut o = Observer::new();
        o.observe(key(1), t0);
        o.observe(key(1), t0 + ms(950));
        o.expect(key(1), t0 + ms(900));
        assert_eq!(o.finish(t0 + ms(2000), ms(100)).max_ms, Some(0.0));
    }

    #[test]
    fn the_report_serializes_without_the_histogram() {
        let t0 = Instant::now();
        let mut o = Observer::new();
        o.expect(key(1), t0);
        o.observe(key(1), t0 + ms(2));
        let v = serde_json::to_value(o.finish(t0 + ms(5), ms(1))).unwrap();
        assert_eq!(v["expected"], 1);
        assert_eq!(v["observed_matched"], 1);
        assert_eq!(v["unobserved"]["count"], 0);
        assert!(v.get("histogram").is_none());
        assert!(v["p99_ms"].as_f64().is_some());
    }

    /// One step of an interleaving: expect or observe key `k` at `t` ms.
    #[derive(Debug, Clone)]
    enum Op {
        Expect(u8, u64),
        Observe(u8, u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..4, 0u64..1000).prop_map(|(k, t)| Op::Expect(k, t)),
            (0u8..4, 0u64..1000).prop_map(|(k, t)| Op::Observe(k, t)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn every_expectation_ends_matched_or_unobserved_exactly_once(
            ops in proptest::collection::vec(op(), 0..200),
            window in proptest::option::of(0u64..500),
        ) {
            let t0 = Instant::now();
            let mut o = match window {
                Some(w) => Observer::with_early_window(ms(w)),
                None => Observer::new(),
            };
            let mut expects = [0u64; 4];
            let mut observes = [0u64; 4];
            for op in &ops {
                match *op {
                    Op::Expect(k, t) => {
                        expects[k as usize] += 1;
                        o.expect(key(k.into()), t0 + ms(t));
                    }
                    Op::Observe(k, t) => {
                        observes[k as usize] += 1;
                        o.observe(key(k.into()), t0 + ms(t));
                    }
                }
            }
            let r = o.finish(t0 + ms(2000), ms(100));
            let total_expects: u64 = expects.iter().sum();
            let total_observes: u64 = observes.iter().sum();
            proptest::prop_assert_eq!(r.expected, total_expects);
            proptest::prop_assert_eq!(r.observed_matched + r.unobserved.count, total_expects);
            proptest::prop_assert_eq!(r.observed_matched + r.unexpected.count, total_observes);
            proptest::prop_assert_eq!(r.histogram.len(), r.observed_matched);
            if window.is_none() {
                // Without a window, a key's expectations and observations pair up fully.
                let pairs: u64 = (0..4).map(|k| expects[k].min(observes[k])).sum();
                proptest::prop_assert_eq!(r.observed_matched, pairs);
            }
        }
    }
}
