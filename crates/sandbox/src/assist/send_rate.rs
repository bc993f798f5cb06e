//! The per-tenant send rate (`sends_per_second`): a token bucket holding one second's
//! worth of sends, so a burst up to the rate passes and a steady stream above it gets 429s.
//! The same bucket bounds each connection's messages (`ws_messages_per_second`).

use std::time::{Duration, Instant};

pub(crate) struct SendRate {
    /// Sends that may still pass right now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// The rate the bucket was last filled at, to notice a changed setting.
    rate: Option<u32>,
}

impl SendRate {
    pub(crate) fn new(now: Instant) -> SendRate {
        SendRate {
            tokens: 0.0,
            updated: now,
            rate: None,
        }
    }

    /// Takes one send at `rate` per second (`None`: unlimited). `Err` holds how long until
    /// the next send would pass.
    pub(crate) fn take(&mut self, rate: Option<u32>, now: Instant) -> Result<(), Duration> {
        let Some(per_second) = rate else {
            self.rate = None;
            return Ok(());
        };
        if per_second == 0 {
            return Err(Duration::from_secs(1));
        }
        let capacity = f64::from(per_second);
        if self.rate != rate {
            // A new setting starts with a full bucket.
            self.rate = rate;
            self.tokens = capacity;
            self.updated = now;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / capacity))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_a_burst_up_to_the_rate_then_refills() {
        let t0 = Instant::now();
        let mut r = SendRate::new(t0);
        assert!(r.take(None, t0).is_ok());
        for _ in 0..4 {
            assert!(r.take(Some(4), t0).is_ok());
        }
        let wait = r.take(Some(4), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(r.take(Some(4), t0 + Duration::from_millis(260)).is_ok());
        assert!(r.take(Some(0), t0).is_err());
    }
}
