//! The one back-off policy (exponential, full jitter, `Retry-After` in seconds or as an
//! HTTP-date, a deadline) used by every outbound client: the token endpoint, the assist
//! stream's reconnects and refused sends, webhook delivery and the event injector.
//!
//! Two pieces:
//! - [`RetryPolicy`]: the numbers (base, cap, how many retries, how long in all) and the pure
//!   rule [`RetryPolicy::delay`] that turns "this is retry number n, the server said wait
//!   so long, we have spent so long already" into "wait this long" or "give up".
//! - [`Backoff`]: one retry sequence in progress (it counts retries and keeps the start
//!   time for the deadline); [`Backoff::next`] is what a retry loop calls.
//!
//! Why not `backon` underneath: its jitter adds `U(0, d)` to the exponential delay (so
//! delays stay between `d` and `2d`, not "full jitter" `U(0, d)`), its total-delay limit
//! counts only the sleeps and not the time the attempts themselves took, and most of our
//! retries are driven by messages (a 429 `error` frame on a socket, a webhook answer), not
//! by re-running one closure. A 60-line policy says all of it where it can be read.
//!
//! The rule, as in the AWS architecture blog's "full jitter": retry `n` (0 for the first
//! retry) waits `U(0, min(cap, base * 2^n))`. When the server said how long to wait
//! (`Retry-After`, `retryAfterMs`), that wins over the exponential schedule and is never
//! shortened: the wait is `retry_after + U(0, retry_after / 4)`, so many clients told the
//! same thing at the same moment do not all come back in the same millisecond.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use http::HeaderValue;
use rand::Rng;
use tokio::time::Instant;

/// How a client retries: an exponential schedule with full jitter, capped, with an
/// optional limit on the number of retries and on the total time spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the first retry's random wait; each retry doubles it.
    pub base: Duration,
    /// No exponential wait exceeds this (a server's `Retry-After` may).
    pub cap: Duration,
    /// Retries allowed after the first attempt (`None`: as many as the deadline allows).
    pub max_retries: Option<u32>,
    /// Time, from the first attempt, after which no retry starts (`None`: no limit).
    /// A wait that would end past it is not taken: the caller gives up at once instead.
    pub deadline: Option<Duration>,
}

impl RetryPolicy {
    /// A policy with no limit on retries or time; add them with the `with_*` methods.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        RetryPolicy {
            base,
            cap,
            max_retries: None,
            deadline: None,
        }
    }

    pub const fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The ceiling of retry `retry`'s random wait: `min(cap, base * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        // 2^31 * base overflows for any useful base; saturate instead.
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `retry` (0 for the first retry), or `None` to give up.
    ///
    /// `retry_after` is what the server asked for, if anything; `elapsed` is the time
    /// since the first attempt started (for the deadline). The random draw comes from
    /// `rng` so tests can fix it.
    pub fn delay<R: Rng + ?Sized>(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        rng: &mut R,
    ) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| retry >= max) {
            return None;
        }
        let wait = match retry_after {
            Some(asked) => asked + uniform(rng, asked / 4),
            None => uniform(rng, self.ceiling(retry)),
        };
        match self.deadline {
            Some(deadline) if elapsed.saturating_add(wait) > deadline => None,
            _ => Some(wait),
        }
    }

    /// [`RetryPolicy::delay`] with the thread's random generator.
    pub fn next_delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> Option<Duration> {
        self.delay(retry, retry_after, elapsed, &mut rand::thread_rng())
    }

    /// Starts one retry sequence now.
    pub fn start(&self) -> Backoff {
        Backoff {
            policy: *self,
            started: Instant::now(),
            retries: 0,
        }
    }
}

/// A uniform draw from `[0, max]`.
fn uniform<R: Rng + ?Sized>(rng: &mut R, max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.gen_range(0..=nanos))
}

/// One retry sequence in progress: counts the retries and measures the deadline from its
/// start. Uses tokio's clock, so tests with paused time see the deadline move.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    started: Instant,
    retries: u32,
}

impl Backoff {
    /// The wait before the next retry (and counts it), or `None` to give up.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let wait = self
            .policy
            .next_delay(self.retries, retry_after, self.started.elapsed())?;
        self.retries += 1;
        Some(wait)
    }

    /// Retries handed out so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Starts over (after a success): retry 0 again, deadline from now.
    pub fn reset(&mut self) {
        self.retries = 0;
        self.started = Instant::now();
    }

    /// Time since the sequence started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete forms RFC 9110 says to accept).
/// A date in the past means "now" (zero). `None` when the value is neither.
pub fn parse_retry_after(value: &HeaderValue, now: DateTime<Utc>) -> Option<Duration> {
    parse_retry_after_str(value.to_str().ok()?, now)
}

/// [`parse_retry_after`] on a string.
pub fn parse_retry_after_str(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Longer than u64 seconds is "a very long time", not an error.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// `Retry-After` from a header map, if present and well-formed.
pub fn retry_after_header(headers: &http::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    parse_retry_after(headers.get(http::header::RETRY_AFTER)?, now)
}

/// IMF-fixdate, RFC 850 and asctime (RFC 9110 section 5.6.7), all in GMT.
fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    if let Some(body) = s.strip_suffix(" GMT") {
        for format in ["%a, %d %b %Y %H:%M:%S", "%A, %d-%b-%y %H:%M:%S"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(body, format) {
                return Some(naive.and_utc());
            }
        }
        return None;
    }
    // asctime: `Sun Nov  6 08:49:37 1994`.
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&collapsed, "%a %b %e %H:%M:%S %Y")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RetryPolicy {
        RetryPolicy::new(100 * MS, 2_000 * MS)
    }

    #[test]
    fn ceilings_double_then_cap() {
        let p = policy();
        let got: Vec<u128> = (0..7).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(p.ceiling(u32::MAX), 2_000 * MS);
    }

    #[test]
    fn full_jitter_covers_zero_to_ceiling() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..2_000)
            .map(|_| p.delay(3, None, Duration::ZERO, &mut rng).unwrap())
            .collect();
        assert!(draws.iter().all(|d| *d <= 800 * MS));
        // Full jitter: the draws spread over the whole range, low end included.
        assert!(draws.iter().any(|d| *d < 80 * MS));
        assert!(draws.iter().any(|d| *d > 720 * MS));
    }

    #[test]
    fn retry_after_is_never_shortened_and_jittered_up_to_a_quarter() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            // Larger than the cap: the server's word wins.
            let d = p
                .delay(0, Some(4_000 * MS), Duration::ZERO, &mut rng)
                .unwrap();
            assert!(d >= 4_000 * MS && d <= 5_000 * MS, "{d:?}");
        }
        assert_eq!(
            p.delay(0, Some(Duration::ZERO), Duration::ZERO, &mut rng),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn max_retries_ends_the_sequence() {
        let p = policy().with_max_retries(2);
        let mut rng = StdRng::seed_from_u64(0);
        assert!(p.delay(0, None, Duration::ZERO, &mut rng).is_some());
        assert!(p.delay(1, None, Duration::ZERO, &mut rng).is_some());
        assert!(p.delay(2, None, Duration::ZERO, &mut rng).is_none());
        assert!(
            policy()
                .with_max_retries(0)
                .delay(0, None, Duration::ZERO, &mut rng)
                .is_none()
        );
    }

    #[test]
    fn a_wait_past_the_deadline_gives_up() {
        let p = policy().with_deadline(Duration::from_secs(10));
        let mut rng = StdRng::seed_from_u64(0);
        assert!(
            p.delay(
                0,
                Some(Duration::from_secs(3)),
                Duration::from_secs(5),
                &mut rng
            )
            .is_some()
        );
        assert!(
            p.delay(
                0,
                Some(Duration::from_secs(6)),
                Duration::from_secs(5),
                &mut rng
            )
            .is_none()
        );
        assert!(
            p.delay(0, None, Duration::from_secs(11), &mut rng)
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_counts_and_measures_the_deadline_on_tokio_time() {
        let mut b = policy().with_deadline(Duration::from_secs(1)).start();
        assert!(b.next(None).is_some());
        assert_eq!(b.retries(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.next(None), None);
        assert_eq!(b.retries(), 1);
        b.reset();
        assert!(b.next(None).is_some());
    }

    fn now() -> DateTime<Utc> {
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap()
    }

    #[test]
    fn retry_after_in_seconds() {
        let v = HeaderValue::from_static("120");
        assert_eq!(parse_retry_after(&v, now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after_str(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after_str("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_as_each_http_date_form() {
        for form in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(
                parse_retry_after_str(form, now()),
                Some(Duration::from_secs(30)),
                "{form}"
            );
        }
        // In the past: retry now.
        assert_eq!(
            parse_retry_after_str("Sun, 06 Nov 1994 08:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        for bad in ["", "soon", "-5", "1.5", "Sun, 06 Nov 1994 08:50:07 CET"] {
            assert_eq!(parse_retry_after_str(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_from_a_header_map() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after_header(&h, now()), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after_header(&h, now()), Some(Duration::from_secs(3)));
    }

    proptest::proptest! {
        #[test]
        fn delay_never_exceeds_its_bound(retry in 0u32..64, seed: u64, asked in proptest::option::of(0u64..100_000)) {
            let p = policy();
            let mut rng = StdRng::seed_from_u64(seed);
            let asked = asked.map(Duration::from_millis);
            let d = p.delay(retry, asked, Duration::ZERO, &mut rng).unwrap();
            match asked {
                Some(a) => proptest::prop_assert!(d >= a && d <= a + a / 4),
                None => proptest::prop_assert!(d <= p.ceiling(retry)),
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = parse_retry_after_str(&s, now());
        }
    }
}
