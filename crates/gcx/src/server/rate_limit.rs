//! Per-key rate limit: one token bucket per API key, refilled continuously at
//! `serve.rate_limit_per_key` requests per second, holding at most one second's worth
//! (so a key may burst to its rate, then is held to it).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::api_keys::KeyId;

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests the key may make right now (fractional: refill is continuous).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// The buckets of every configured key.
#[derive(Debug)]
pub struct RateLimiter {
    /// Requests per second per key; `0` turns the limit off.
    per_second: u32,
    /// Indexed by [`KeyId`]; one lock, held for a few arithmetic operations.
    buckets: Mutex<Vec<Bucket>>,
}

impl RateLimiter {
    pub fn new(keys: usize, per_second: u32) -> RateLimiter {
        let now = Instant::now();
        let full = Bucket {
            tokens: f64::from(per_second),
            updated: now,
        };
        RateLimiter {
            per_second,
            buckets: Mutex::new(vec![full; keys]),
        }
    }

    /// Takes one request from `key`'s bucket at `now`; when it is empty, says how long
    /// until the next request would be allowed.
    pub fn check_at(&self, key: KeyId, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_second);
        let mut buckets = self.buckets.lock();
        let Some(bucket) = buckets.get_mut(key.0) else {
            // Not a configured key: the auth layer never lets one through.
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    pub fn check(&self, key: KeyId) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_to_the_rate_then_refills_continuously() {
        let limiter = RateLimiter::new(2, 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check_at(KeyId(0), t0).is_ok());
        }
        let wait = limiter.check_at(KeyId(0), t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        // Another key has its own bucket.
        assert!(limiter.check_at(KeyId(1), t0).is_ok());
        // 100 ms later one more request fits, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.check_at(KeyId(0), t1).is_ok());
        assert!(limiter.check_at(KeyId(0), t1).is_err());
        // Long idle never banks more than one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..10 {
            assert!(limiter.check_at(KeyId(0), t2).is_ok());
        }
        assert!(limiter.check_at(KeyId(0), t2).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(1, 0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(limiter.check_at(KeyId(0), t0).is_ok());
        }
    }
}
