//! A circuit breaker per endpoint, so a dead endpoint is not hammered and its messages do
//! not burn their retry schedule while it is down.
//!
//! Closed: requests flow (up to the endpoint's parallelism). After `failures_to_open`
//! consecutive failures (no answer, or a retryable status) it opens: nothing is sent until
//! `cooldown` has passed. Then it is half-open: one trial request; its success closes the
//! breaker, its failure opens it for another cooldown. Time is passed in, so the logic is
//! pure and tested without waiting.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One trial is allowed; `trial_started` once it has gone out.
    HalfOpen {
        trial_started: bool,
    },
}

/// What the breaker lets the endpoint do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Up to this many new requests may start (0: wait for one in flight to finish).
    Send(usize),
    /// Open: nothing may start before this instant.
    WaitUntil(Instant),
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker; 0 never opens it.
    failures_to_open: u32,
    /// How long an open breaker waits before its trial request.
    cooldown: Duration,
    /// Failures since the last success.
    consecutive_failures: u32,
    state: State,
}

impl CircuitBreaker {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            failures_to_open,
            cooldown,
            consecutive_failures: 0,
            state: State::Closed,
        }
    }

    /// How many requests may start at `now`, with `in_flight` running and at most
    /// `max_parallel` at once.
    pub fn admit(&mut self, now: Instant, in_flight: usize, max_parallel: usize) -> Admission {
        if let State::Open { until } = self.state {
            if now < until {
                return Admission::WaitUntil(until);
            }
            self.state = State::HalfOpen {
                trial_started: false,
            };
        }
        match self.state {
            State::HalfOpen { trial_started } => {
                // The trial goes out alone, once earlier requests have settled.
                Admission::Send(usize::from(!trial_started && in_flight == 0))
            }
            _ => Admission::Send(max_parallel.saturating_sub(in_flight)),
        }
    }

    /// Requests were started after [`admit`](Self::admit).
    pub fn started(&mut self, n: usize) {
        if n > 0 && matches!(self.state, State::HalfOpen { .. }) {
            self.state = State::HalfOpen {
                trial_started: true,
            };
        }
    }

    /// The endpoint answered (anything but a retryable failure).
    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        self.state = State::Closed;
    }

    /// No answer or a retryable status.
    pub fn on_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            State::Closed => {
                self.failures_to_open > 0 && self.consecutive_failures >= self.failures_to_open
            }
            State::HalfOpen { .. } => true,
            // Late failures of requests started before it opened change nothing.
            State::Open { .. } => false,
        };
        if open {
            self.state = State::Open {
                until: now + self.cooldown,
            };
        }
    }

    /// Forgets every failure (the endpoint was re-enabled).
    pub fn reset(&mut self) {
        self.on_success();
    }

    pub fn is_open(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_millis(100);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(3, COOLDOWN);
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.admit(t0, 0, 4), Admission::Send(4));
        b.on_failure(t0);
        assert_eq!(b.admit(t0, 0, 4), Admission::WaitUntil(t0 + COOLDOWN));
        assert!(b.is_open(t0));
    }

    #[test]
    fn half_open_sends_one_trial_then_closes_or_reopens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(1, COOLDOWN);
        b.on_failure(t0);
        let t1 = t0 + COOLDOWN;
        // Earlier requests still in flight: wait for them.
        assert_eq!(b.admit(t1, 2, 4), Admission::Send(0));
        assert_eq!(b.admit(t1, 0, 4), Admission::Send(1));
        b.started(1);
        assert_eq!(b.admit(t1, 1, 4), Admission::Send(0));
        assert_eq!(b.admit(t1, 0, 4), Admission::Send(0));
        // The trial fails: open for another cooldown.
        b.on_failure(t1);
        assert_eq!(b.admit(t1, 0, 4), Admission::WaitUntil(t1 + COOLDOWN));
        // The next trial succeeds: closed, full parallelism.
        let t2 = t1 + COOLDOWN;
        assert_eq!(b.admit(t2, 0, 4), Admission::Send(1));
        b.started(1);
        b.on_success();
        assert_eq!(b.admit(t2, 1, 4), Admission::Send(3));
    }

    #[test]
    fn late_failures_do_not_extend_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(1, COOLDOWN);
        b.on_failure(t0);
        b.on_failure(t0 + Duration::from_millis(50));
        assert_eq!(b.admit(t0, 0, 1), Admission::WaitUntil(t0 + COOLDOWN));
    }

    #[test]
    fn zero_failures_to_open_never_opens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(0, COOLDOWN);
        for _ in 0..100 {
            b.on_failure(t0);
        }
        assert_eq!(b.admit(t0, 0, 2), Admission::Send(2));
    }
}
