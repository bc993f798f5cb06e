//! The per-minute request window of one tenant (`events_requests_per_minute`), which also
//! supplies the figures of the `inin-ratelimit-*` headers.

use std::time::Duration;

use tokio::time::Instant;

use crate::http_error::RateInfo;

/// Length of a rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);
/// What `inin-ratelimit-allowed` says when no limit is configured.
const UNLIMITED: u64 = 1_000_000;

/// A fixed one-minute window that starts with the first request after the previous one
/// ended.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// When the current window started (`None` before the first request).
    started: Option<Instant>,
    /// Requests admitted in the current window.
    admitted: u64,
}

/// A request the window refused, with what to tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub rate: RateInfo,
    /// Whole seconds until the window starts over (at least 1).
    pub retry_after_secs: u64,
}

impl RateWindow {
    /// Counts one request against `limit` (`None`: no limit), or refuses it.
    pub fn admit(&mut self, now: Instant, limit: Option<u32>) -> Result<RateInfo, Refused> {
        let started = self.roll(now);
        let Some(limit) = limit.map(u64::from) else {
            self.admitted += 1;
            return Ok(RateInfo {
                count: self.admitted,
                allowed: UNLIMITED,
                reset_secs: WINDOW.as_secs(),
            });
        };
        let left = (started + WINDOW).saturating_duration_since(now);
        // Round up: a client that waits `reset` seconds finds a new window.
        let reset_secs = (left.as_millis().div_ceil(1000) as u64).max(1);
        if self.admitted >= limit {
            return Err(Refused {
                rate: RateInfo {
                    count: self.admitted,
                    allowed: limit,
                    reset_secs,
                },
                retry_after_secs: reset_secs,
            });
        }
        self.admitted += 1;
        Ok(RateInfo {
            count: self.admitted,
            allowed: limit,
            reset_secs,
        })
    }

    /// Counts one request with no limit (the figures other REST answers report).
    pub fn count(&mut self, now: Instant) -> RateInfo {
        match self.admit(now, None) {
            Ok(rate) | Err(Refused { rate, .. }) => rate,
        }
    }

    /// Starts a new window when the current one is over; returns its start.
    fn roll(&mut self, now: Instant) -> Instant {
        match self.started {
            Some(s) if now.saturating_duration_since(s) < WINDOW => s,
            _ => {
                self.started = Some(now);
                self.admitted = 0;
                now
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_counts_and_reports_the_defaults() {
        let mut w = RateWindow::default();
        let t = Instant::now();
        assert_eq!(
            w.admit(t, None),
            Ok(RateInfo {
                count: 1,
                allowed: 1_000_000,
                reset_secs: 60
            })
        );
        assert_eq!(w.admit(t, None).map(|r| r.count), Ok(2));
    }

    #[test]
    fn limit_refuses_until_the_window_ends() {
        let mut w = RateWindow::default();
        let t = Instant::now();
        assert!(w.admit(t, Some(2)).is_ok());
        let second = w.admit(t + Duration::from_secs(10), Some(2)).unwrap();
        assert_eq!(
            (second.count, second.allowed, second.reset_secs),
            (2, 2, 50)
        );
        let refused = w
            .admit(t + Duration::from_millis(20_200), Some(2))
            .unwrap_err();
        assert_eq!(refused.retry_after_secs, 40);
        assert_eq!(refused.rate.count, 2);
        let refused = w
            .admit(t + Duration::from_millis(59_500), Some(2))
            .unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        // A new window starts at 60 s.
        let again = w.admit(t + WINDOW, Some(2)).unwrap();
        assert_eq!((again.count, again.reset_secs), (1, 60));
    }

    #[test]
    fn zero_limit_refuses_everything() {
        let mut w = RateWindow::default();
        assert!(w.admit(Instant::now(), Some(0)).is_err());
    }
}
