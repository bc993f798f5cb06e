//! The retry rules of PROTOCOL.md section 5 in one place: what an attempt's outcome
//! means for its message (delivered, retry later, dead letter, endpoint gone) and when the
//! next attempt is due.
//!
//! - Success is any 2xx.
//! - Retried: no answer (connection fault, timeout), 408, 425, 429 and every 5xx.
//! - 410 disables the endpoint; the message stays pending for when it is re-enabled.
//! - Any other status (1xx, 3xx, 4xx): dead letter at once.
//! - The schedule lists the wait before each attempt, first to last; its length is the
//!   number of attempts. The first attempt is made as soon as the row is committed.
//!   Each later wait is jittered by ±20% so retries of many messages spread out.
//! - `Retry-After` (seconds or an HTTP-date) is a floor on the next wait: never retry
//!   sooner than the receiver asked. It is capped at [`RETRY_AFTER_CAP`], so a mistaken
//!   or hostile header (a date years ahead) cannot park a message for ever; the schedule
//!   still bounds the number of attempts. The header is parsed by
//!   [`crate::retry::retry_after_header`], like every other client's.
//!
//! Why not [`crate::retry::RetryPolicy`]: a webhook's back-off must survive restarts, so
//! it lives in the row (`attempts`, `next_attempt_at`), and its waits are a configured
//! list (Svix's default spans ten hours) rather than doublings of a base.

use std::time::Duration;

/// The longest wait a `Retry-After` header can impose on one message.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// The share by which each scheduled wait is stretched or shrunk at random.
pub const JITTER: f64 = 0.2;

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with a status.
    Answered {
        status: u16,
        /// The `Retry-After` header, already turned into a wait (uncapped).
        retry_after: Option<Duration>,
    },
    /// No answer: refused or reset connection, DNS or TLS failure, timeout.
    NoAnswer { reason: String },
}

impl AttemptOutcome {
    /// The status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Answered { status, .. } => Some(*status),
            AttemptOutcome::NoAnswer { .. } => None,
        }
    }

    /// A short description for `last_error` and logs.
    pub fn describe(&self) -> String {
        match self {
            AttemptOutcome::Answered { status, .. } => format!("HTTP {status}"),
            AttemptOutcome::NoAnswer { reason } => reason.clone(),
        }
    }

    /// Whether this says something about the endpoint's health: an answer other than a
    /// retryable failure proves the endpoint is up (a 400 is the message's fault).
    pub fn endpoint_healthy(&self) -> bool {
        match self {
            AttemptOutcome::Answered { status, .. } => !is_retryable_status(*status),
            AttemptOutcome::NoAnswer { .. } => false,
        }
    }
}

/// What happens to the message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again after `after`.
    Retry {
        after: Duration,
    },
    /// Move to dead letters, with the reason stored on the row.
    Dead {
        reason: String,
    },
    /// 410 Gone: disable the endpoint; the message stays pending, its attempt not counted.
    EndpointGone,
}

/// Statuses worth another attempt: 408, 425, 429 and every 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// The configured waits before each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// `delays[i]` is the wait before attempt `i + 1`; `delays[0]` is not waited (the first
    /// attempt goes out as soon as the row is committed).
    delays: Vec<Duration>,
}

impl RetrySchedule {
    /// An empty list means a single attempt.
    pub fn new(delays: Vec<Duration>) -> RetrySchedule {
        RetrySchedule { delays }
    }

    /// How many attempts a message gets before it is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX).max(1)
    }

    /// The wait before the next attempt once `attempts_made` attempts failed, stretched
    /// by `jitter` (a draw in `[0, 1)`: 0 is -20%, 1 is +20%); `None` when exhausted.
    pub fn delay_after(&self, attempts_made: u32, jitter: f64) -> Option<Duration> {
        if attempts_made >= self.max_attempts() {
            return None;
        }
        let base = self
            .delays
            .get(attempts_made as usize)
            .copied()
            .unwrap_or_default();
        let factor = 1.0 - JITTER + 2.0 * JITTER * jitter.clamp(0.0, 1.0);
        Some(base.mul_f64(factor))
    }

    /// The verdict on a message after its `attempts_made`-th attempt had `outcome`.
    pub fn judge(&self, outcome: &AttemptOutcome, attempts_made: u32, jitter: f64) -> Verdict {
        let retry_after = match outcome {
            AttemptOutcome::Answered { status, .. } if (200..300).contains(status) => {
                return Verdict::Delivered;
            }
            AttemptOutcome::Answered { status: 410, .. } => return Verdict::EndpointGone,
            AttemptOutcome::Answered {
                status,
                retry_after,
            } if is_retryable_status(*status) => *retry_after,
            AttemptOutcome::Answered { status, .. } => {
                return Verdict::Dead {
                    reason: format!("HTTP {status} is not retried"),
                };
            }
            AttemptOutcome::NoAnswer { .. } => None,
        };
        match self.delay_after(attempts_made, jitter) {
            Some(wait) => Verdict::Retry {
                after: wait.max(retry_after.unwrap_or_default().min(RETRY_AFTER_CAP)),
            },
            None => Verdict::Dead {
                reason: format!(
                    "schedule exhausted after {attempts_made} attempts; last: {}",
                    outcome.describe()
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(vec![ms(0), ms(100), ms(1000)])
    }

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered {
            status,
            retry_after: None,
        }
    }

    /// (status, attempts made) -> verdict, with jitter 0.5 (no stretch).
    #[test]
    fn verdicts_follow_section_5() {
        let s = schedule();
        let retry = |after| Verdict::Retry { after };
        for (status, attempts, want) in [
            (200, 1, Verdict::Delivered),
            (204, 3, Verdict::Delivered),
            (299, 1, Verdict::Delivered),
            (408, 1, retry(ms(100))),
            (425, 1, retry(ms(100))),
            (429, 2, retry(ms(1000))),
            (500, 1, retry(ms(100))),
            (503, 2, retry(ms(1000))),
            (599, 1, retry(ms(100))),
            (410, 1, Verdict::EndpointGone),
            (410, 3, Verdict::EndpointGone),
        ] {
            assert_eq!(s.judge(&answered(status), attempts, 0.5), want, "{status}");
        }
        for status in [100, 301, 400, 401, 403, 404, 409, 413, 422] {
            assert!(
                matches!(s.judge(&answered(status), 1, 0.5), Verdict::Dead { .. }),
                "{status}"
            );
        }
    }

    #[test]
    fn no_answer_is_retried_until_the_schedule_runs_out() {
        let s = schedule();
        let fault = AttemptOutcome::NoAnswer {
            reason: "connection refused".into(),
        };
        assert_eq!(s.judge(&fault, 1, 0.5), Verdict::Retry { after: ms(100) });
        assert_eq!(s.judge(&fault, 2, 0.5), Verdict::Retry { after: ms(1000) });
        let Verdict::Dead { reason } = s.judge(&fault, 3, 0.5) else {
            panic!("expected a dead letter");
        };
        assert!(
            reason.contains("3 attempts") && reason.contains("refused"),
            "{reason}"
        );
        assert_eq!(s.max_attempts(), 3);
    }

    #[test]
    fn an_empty_schedule_means_one_attempt() {
        let s = RetrySchedule::new(vec![]);
        assert_eq!(s.max_attempts(), 1);
        assert!(matches!(
            s.judge(&answered(503), 1, 0.5),
            Verdict::Dead { .. }
        ));
    }

    #[test]
    fn jitter_stretches_by_at_most_a_fifth() {
        let s = schedule();
        assert_eq!(s.delay_after(1, 0.0), Some(ms(80)));
        assert_eq!(s.delay_after(1, 1.0), Some(ms(120)));
        assert_eq!(s.delay_after(0, 0.7), Some(ms(0)));
        assert_eq!(s.delay_after(3, 0.5), None);
    }

    #[test]
    fn retry_after_is_a_capped_floor() {
        let s = schedule();
        let with = |secs| AttemptOutcome::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            s.judge(&with(2), 1, 0.5),
            Verdict::Retry {
                after: Duration::from_secs(2)
            }
        );
        // Shorter than the schedule: the schedule wins.
        let short = AttemptOutcome::Answered {
            status: 503,
            retry_after: Some(ms(10)),
        };
        assert_eq!(s.judge(&short, 2, 0.5), Verdict::Retry { after: ms(1000) });
        assert_eq!(
            s.judge(&with(86_400 * 365), 1, 0.5),
            Verdict::Retry {
                after: RETRY_AFTER_CAP
            }
        );
        // Exhausted stays exhausted whatever the header says.
        assert!(matches!(s.judge(&with(1), 3, 0.5), Verdict::Dead { .. }));
    }

    proptest! {
        #[test]
        fn waits_stay_within_jitter_of_the_schedule(
            base_ms in 0u64..100_000_000, jitter in 0.0f64..1.0
        ) {
            let s = RetrySchedule::new(vec![ms(0), ms(base_ms)]);
            let wait = s.delay_after(1, jitter).unwrap().as_secs_f64() * 1000.0;
            let base = base_ms as f64;
            prop_assert!(wait >= base * 0.8 - 0.001 && wait <= base * 1.2 + 0.001);
        }
    }
}
