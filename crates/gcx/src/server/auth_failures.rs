//! Failed authentication, per client address: a token bucket of failures per peer IP
//! (`serve.auth_failures_per_minute`, that many at once, refilled over a minute), so a
//! client guessing keys is answered 429 with `Retry-After` before its key is even
//! checked; and one WARN line per [`SUMMARY_EVERY`] that counts the failures and names
//! the addresses, instead of a line per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// How often failures after the first of a quiet spell are summarized.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Most addresses tracked at once; beyond it, addresses whose bucket has refilled are
/// forgotten first, then the least recently seen.
pub const MAX_TRACKED: usize = 10_000;
/// Most addresses named in one summary line (the busiest).
const NAMED_IN_SUMMARY: usize = 5;

/// One address's failures.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures it may still have before being throttled (refill is continuous).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// Failures since the last summary.
#[derive(Debug, Default)]
struct Window {
    /// Failures per address in this window.
    by_peer: HashMap<IpAddr, u64>,
    /// Requests refused with 429 by the throttle in this window.
    throttled: u64,
    /// Whether the window's first failure was logged on its own (a summary follows).
    open: bool,
}

/// What one summary line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Failed authentications in the window.
    pub failures: u64,
    /// Requests refused by the throttle in the window.
    pub throttled: u64,
    /// Distinct addresses.
    pub peers: usize,
    /// The busiest addresses with their counts, most first.
    pub top: Vec<(IpAddr, u64)>,
}

/// The throttle and the summary of one `gcx serve`.
#[derive(Debug)]
pub struct AuthFailures {
    /// Failures per minute per address; `0` turns the throttle off.
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    window: Mutex<Window>,
    /// Wakes the summarizer at a window's first failure; it sleeps otherwise.
    first_in_window: Notify,
}

impl AuthFailures {
    pub fn new(per_minute: u32) -> AuthFailures {
        AuthFailures {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
            window: Mutex::new(Window::default()),
            first_in_window: Notify::new(),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let per_second = self.capacity() / 60.0;
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(self.capacity());
        bucket.updated = now;
    }

    /// Whether `peer` may try a key at `now`; when it has used up its failures, how long
    /// until it may try again.
    pub fn check_at(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        let Some(bucket) = buckets.get_mut(&peer) else {
            return Ok(());
        };
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            return Ok(());
        }
        let per_second = self.capacity() / 60.0;
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / per_second);
        drop(buckets);
        self.window.lock().throttled += 1;
        Err(wait)
    }

    /// Counts a failed authentication of `peer` at `now`. True when it is the first of a
    /// quiet spell (the caller logs it on its own; the rest go into the summary).
    pub fn record_at(&self, peer: IpAddr, now: Instant) -> bool {
        if self.per_minute > 0 {
            let mut buckets = self.buckets.lock();
            if !buckets.contains_key(&peer) && buckets.len() >= MAX_TRACKED {
                self.forget_some(&mut buckets, now);
            }
            let full = Bucket {
                tokens: self.capacity(),
                updated: now,
            };
            let bucket = buckets.entry(peer).or_insert(full);
            self.refill(bucket, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
        let mut window = self.window.lock();
        let first = !window.open;
        window.open = true;
        if first {
            self.first_in_window.notify_one();
        } else {
            *window.by_peer.entry(peer).or_default() += 1;
        }
        first
    }

    /// Makes room: forgets refilled buckets, then the least recently updated.
    fn forget_some(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, b| {
            self.refill(b, now);
            b.tokens < self.capacity()
        });
        while buckets.len() >= MAX_TRACKED {
            let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(ip, _)| *ip)
            else {
                break;
            };
            buckets.remove(&oldest);
        }
    }

    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        self.check_at(peer, Instant::now())
    }

    pub fn record(&self, peer: IpAddr) -> bool {
        self.record_at(peer, Instant::now())
    }

    /// Closes the window: what happened in it after its first failure (`None` when
    /// nothing did, which ends the busy spell), and the next window begins.
    pub fn take_summary(&self) -> Option<Summary> {
        let mut current = self.window.lock();
        let window = std::mem::take(&mut *current);
        let failures: u64 = window.by_peer.values().sum();
        if failures == 0 && window.throttled == 0 {
            // Quiet: the next failure opens a window of its own.
            return None;
        }
        // Still busy: the next failures go into the next summary, not a line each.
        current.open = true;
        drop(current);
        let mut top: Vec<(IpAddr, u64)> = window.by_peer.into_iter().collect();
        let peers = top.len();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(NAMED_IN_SUMMARY);
        Some(Summary {
            failures,
            throttled: window.throttled,
            peers,
            top,
        })
    }

    /// Waits for a window's first failure.
    pub async fn first_failure(&self) {
        self.first_in_window.notified().await;
    }
}

/// Logs one summary per window; sleeps while no failure happens.
pub fn spawn_summarizer(failures: Arc<AuthFailures>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            failures.first_failure().await;
            loop {
                tokio::time::sleep(SUMMARY_EVERY).await;
                let Some(s) = failures.take_summary() else {
                    break;
                };
                let top: Vec<String> = s.top.iter().map(|(ip, n)| format!("{ip} ({n})")).collect();
                tracing::warn!(
                    failures = s.failures,
                    throttled = s.throttled,
                    addresses = s.peers,
                    busiest = %top.join(", "),
                    "refused more requests with a missing or wrong API key in the last {}s",
                    SUMMARY_EVERY.as_secs()
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_is_throttled_after_its_failures_then_refills() {
        let f = AuthFailures::new(60);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(f.check_at(ip(1), t0).is_ok());
            f.record_at(ip(1), t0);
        }
        let wait = f.check_at(ip(1), t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another address is not affected.
        assert!(f.check_at(ip(2), t0).is_ok());
        // One failure a second comes back.
        assert!(f.check_at(ip(1), t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_turns_the_throttle_off() {
        let f = AuthFailures::new(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            f.record_at(ip(1), t0);
        }
        assert!(f.check_at(ip(1), t0).is_ok());
    }

    #[test]
    fn failures_are_summarized_once_per_window() {
        let f = AuthFailures::new(60);
        let t0 = Instant::now();
        assert!(f.record_at(ip(1), t0), "the first is logged on its own");
        for i in 0..1000 {
            assert!(!f.record_at(ip((i % 3) as u8 + 1), t0));
        }
        let _ = f.check_at(ip(1), t0);
        let s = f.take_summary().unwrap();
        assert_eq!(s.failures, 1000);
        assert_eq!(s.throttled, 1);
        assert_eq!(s.peers, 3);
        assert_eq!(s.top[0].1, 334);
        // While busy, the next failures go to the next summary.
        assert!(!f.record_at(ip(1), t0));
        assert_eq!(f.take_summary().unwrap().failures, 1);
        // A quiet window says nothing and ends the spell; the next failure is logged.
        assert_eq!(f.take_summary(), None);
        assert!(f.record_at(ip(1), t0));
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let f = AuthFailures::new(60);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            f.record_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(f.buckets.lock().len() <= MAX_TRACKED);
    }
}
