//! Open-model arrivals: when interactions arrive, as a pure function of the rate profile
//! and the seed. Nothing here looks at the clock or the server, so a slow server cannot
//! slow the schedule (it can only make the injector late, which the latency shows).
//!
//! No input makes it panic or loop: rates outside [`MIN_RATE`, `MAX_RATE`] are refused by
//! the scenario's checks, and here rates are clamped to `0..=MAX_RATE` and a time too far
//! off for a `Duration` ends the arrivals.

use std::time::Duration;

use super::rng::SimRng;

/// The highest arrival rate (per second) a scenario may ask for: above anything one
/// simulator sends, low enough that a run's arrivals stay countable.
pub const MAX_RATE: f64 = 100_000.0;
/// The lowest non-zero arrival rate (per second): one arrival in about 17 minutes. Below
/// it the next arrival would be further off than any run lasts.
pub const MIN_RATE: f64 = 0.001;

/// A rate as the schedule uses it: a finite number from 0 to [`MAX_RATE`].
fn usable(rate: f64) -> f64 {
    if rate.is_finite() {
        rate.clamp(0.0, MAX_RATE)
    } else {
        0.0
    }
}

/// One ramp stage: the rate moves linearly to `target` over `duration` (k6's stages).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    /// Arrivals per second at the end of the stage.
    pub target: f64,
}

/// The arrival rate over time: `start_rate`, then each stage in turn; after the last stage
/// the rate holds at its target.
#[derive(Debug, Clone, PartialEq)]
pub struct RateProfile {
    pub start_rate: f64,
    pub stages: Vec<Stage>,
}

impl RateProfile {
    pub fn constant(rate: f64) -> RateProfile {
        RateProfile {
            start_rate: rate,
            stages: Vec::new(),
        }
    }

    /// The same profile at `factor` times the rate (a shard's share).
    pub fn scaled(&self, factor: f64) -> RateProfile {
        RateProfile {
            start_rate: self.start_rate * factor,
            stages: self
                .stages
                .iter()
                .map(|s| Stage {
                    duration: s.duration,
                    target: s.target * factor,
                })
                .collect(),
        }
    }

    /// How long the stages last together (zero for a constant rate; `Duration::MAX` at
    /// most).
    pub fn stages_duration(&self) -> Duration {
        self.stages
            .iter()
            .fold(Duration::ZERO, |sum, s| sum.saturating_add(s.duration))
    }

    /// The rate at `t` (arrivals per second).
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        for seg in self.segments() {
            if t < seg.t1 {
                return seg.r0 + (seg.r1 - seg.r0) * ((t - seg.t0) / (seg.t1 - seg.t0));
            }
        }
        self.final_rate()
    }

    fn final_rate(&self) -> f64 {
        self.stages.last().map_or(self.start_rate, |s| s.target)
    }

    /// Linear pieces, then a constant tail to infinity (rates made [`usable`]).
    fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::with_capacity(self.stages.len() + 1);
        let (mut t0, mut r0, mut l0) = (0.0, usable(self.start_rate), 0.0);
        for s in &self.stages {
            let target = usable(s.target);
            let t1 = t0 + s.duration.as_secs_f64();
            if t1 > t0 {
                out.push(Segment {
                    t0,
                    t1,
                    r0,
                    r1: target,
                    l0,
                });
                l0 += (r0 + target) / 2.0 * (t1 - t0);
            }
            t0 = t1;
            r0 = target;
        }
        out.push(Segment {
            t0,
            t1: f64::INFINITY,
            r0,
            r1: r0,
            l0,
        });
        out
    }
}

/// A piece of the cumulative intensity Λ(t): rate linear from `r0` at `t0` to `r1` at `t1`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    t0: f64,
    t1: f64,
    r0: f64,
    r1: f64,
    /// Λ(t0): arrivals expected before this segment.
    l0: f64,
}

impl Segment {
    fn area(&self) -> f64 {
        if self.t1.is_infinite() {
            if self.r0 > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            (self.r0 + self.r1) / 2.0 * (self.t1 - self.t0)
        }
    }

    /// The time at which Λ reaches `l0 + l` (`0 <= l <= area`).
    fn solve(&self, l: f64) -> f64 {
        if self.t1.is_infinite() || (self.r1 - self.r0).abs() < 1e-12 {
            let x = if self.r0 > 0.0 { l / self.r0 } else { 0.0 };
            return (self.t0 + x).min(self.t1);
        }
        // r0 x + a x^2 = l with a = (r1 - r0) / (2 T); the root in the form that stays
        // stable as a -> 0.
        let a = (self.r1 - self.r0) / (2.0 * (self.t1 - self.t0));
        let denom = self.r0 + (self.r0 * self.r0 + 4.0 * a * l).max(0.0).sqrt();
        let x = if denom > 0.0 { 2.0 * l / denom } else { 0.0 };
        (self.t0 + x).min(self.t1)
    }
}

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalPattern {
    /// Evenly spaced (k6's arrival-rate executors).
    Uniform,
    /// A Poisson process: independent arrivals, as calls reach a contact centre.
    Poisson,
}

/// The arrival times of one run (or one shard), in order.
#[derive(Debug, Clone)]
pub struct Arrivals {
    segments: Vec<Segment>,
    /// Index of the segment the last arrival fell in (arrivals only move forward).
    seg: usize,
    /// Λ of the last arrival.
    lambda: f64,
    pattern: ArrivalPattern,
    rng: SimRng,
    /// Added to every time: arrivals begin after the agents have logged in.
    offset: Duration,
    /// The last arrival handed out: times never go back, whatever the rounding.
    last: Duration,
}

impl Arrivals {
    pub fn new(
        profile: &RateProfile,
        pattern: ArrivalPattern,
        rng: SimRng,
        offset: Duration,
    ) -> Arrivals {
        Arrivals {
            segments: profile.segments(),
            seg: 0,
            lambda: 0.0,
            pattern,
            rng,
            offset,
            last: offset,
        }
    }

    /// The next arrival time, or `None` once the rate stays at zero for good (or the next
    /// arrival is too far off to be a `Duration`).
    pub fn next_at(&mut self) -> Option<Duration> {
        self.lambda += match self.pattern {
            ArrivalPattern::Uniform => 1.0,
            ArrivalPattern::Poisson => -self.rng.open_unit().ln(),
        };
        loop {
            let seg = self.segments.get(self.seg)?;
            let within = self.lambda - seg.l0;
            if within <= seg.area() {
                let t = seg.solve(within);
                let at = Duration::try_from_secs_f64(t.max(0.0))
                    .ok()
                    .and_then(|d| self.offset.checked_add(d))?
                    .max(self.last);
                self.last = at;
                return Some(at);
            }
            self.seg += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn count_until(a: &mut Arrivals, end: Duration) -> usize {
        let mut n = 0;
        while let Some(t) = a.next_at() {
            if t >= end {
                break;
            }
            n += 1;
        }
        n
    }

    #[test]
    fn uniform_constant_rate_is_evenly_spaced() {
        let mut a = Arrivals::new(
            &RateProfile::constant(100.0),
            ArrivalPattern::Uniform,
            SimRng::new(1, 1),
            Duration::ZERO,
        );
        let t: Vec<f64> = (0..3).map(|_| a.next_at().unwrap().as_secs_f64()).collect();
        for (i, v) in t.iter().enumerate() {
            assert!((v - 0.01 * (i + 1) as f64).abs() < 1e-9, "{t:?}");
        }
    }

    #[test]
    fn a_ramp_delivers_its_area() {
        // 0 -> 100/s over 10 s: 500 arrivals; then 100/s for 5 s: 500 more.
        let p = RateProfile {
            start_rate: 0.0,
            stages: vec![Stage {
                duration: secs(10.0),
                target: 100.0,
            }],
        };
        let mut a = Arrivals::new(
            &p,
            ArrivalPattern::Uniform,
            SimRng::new(1, 1),
            Duration::ZERO,
        );
        assert_eq!(count_until(&mut a, secs(10.0)), 499);
        let mut a = Arrivals::new(
            &p,
            ArrivalPattern::Uniform,
            SimRng::new(1, 1),
            Duration::ZERO,
        );
        assert_eq!(count_until(&mut a, secs(15.0)), 999);
        assert!((p.rate_at(secs(5.0)) - 50.0).abs() < 1e-9);
        assert!((p.rate_at(secs(50.0)) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn poisson_matches_the_rate_on_average() {
        let mut a = Arrivals::new(
            &RateProfile::constant(1000.0),
            ArrivalPattern::Poisson,
            SimRng::new(9, 9),
            Duration::ZERO,
        );
        let n = count_until(&mut a, secs(100.0));
        assert!((n as f64 - 100_000.0).abs() < 1500.0, "{n}");
    }

    #[test]
    fn a_rate_that_falls_to_zero_ends_the_arrivals() {
        let p = RateProfile {
            start_rate: 10.0,
            stages: vec![Stage {
                duration: secs(1.0),
                target: 0.0,
            }],
        };
        let mut a = Arrivals::new(&p, ArrivalPattern::Uniform, SimRng::new(1, 1), secs(2.0));
        let mut n = 0;
        while let Some(t) = a.next_at() {
            assert!(t >= secs(2.0) && t <= secs(3.0));
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn rates_too_low_or_too_high_neither_panic_nor_flood() {
        // 1e-20/s: the first arrival would be 1e20 s away, past any Duration.
        let mut a = Arrivals::new(
            &RateProfile::constant(1e-20),
            ArrivalPattern::Uniform,
            SimRng::new(1, 1),
            Duration::ZERO,
        );
        assert_eq!(a.next_at(), None);
        // 1e308/s is taken as MAX_RATE: arrivals 10 µs apart, not all at once.
        let mut a = Arrivals::new(
            &RateProfile::constant(1e308),
            ArrivalPattern::Uniform,
            SimRng::new(1, 1),
            Duration::ZERO,
        );
        assert_eq!(count_until(&mut a, secs(1.0)), MAX_RATE as usize - 1);
    }

    #[test]
    fn scaling_scales_every_stage() {
        let p = RateProfile {
            start_rate: 10.0,
            stages: vec![Stage {
                duration: secs(1.0),
                target: 20.0,
            }],
        };
        let s = p.scaled(0.5);
        assert_eq!(s.start_rate, 5.0);
        assert_eq!(s.stages[0].target, 10.0);
        assert_eq!(s.stages_duration(), secs(1.0));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn any_rate() -> impl Strategy<Value = f64> {
            prop_oneof![
                proptest::num::f64::NORMAL
                    | proptest::num::f64::SUBNORMAL
                    | proptest::num::f64::ZERO,
                0.0..2.0 * MAX_RATE,
                Just(MIN_RATE),
                Just(MAX_RATE),
            ]
        }

        fn any_duration() -> impl Strategy<Value = Duration> {
            prop_oneof![
                (0u64..100_000).prop_map(Duration::from_millis),
                any::<u64>().prop_map(Duration::from_secs),
                Just(Duration::ZERO),
            ]
        }

        proptest! {
            /// Whatever finite rates and stages: no panic, times never go back and never
            /// come before the offset.
            #[test]
            fn arrivals_never_panic_and_never_go_back(
                start in any_rate(),
                stages in proptest::collection::vec((any_duration(), any_rate()), 0..4),
                uniform in any::<bool>(),
                offset in any_duration(),
                seed in any::<u64>(),
            ) {
                let profile = RateProfile {
                    start_rate: start,
                    stages: stages
                        .into_iter()
                        .map(|(duration, target)| Stage { duration, target })
                        .collect(),
                };
                let pattern = if uniform { ArrivalPattern::Uniform } else { ArrivalPattern::Poisson };
                let mut a = Arrivals::new(&profile, pattern, SimRng::new(seed, 1), offset);
                let mut last = offset;
                for _ in 0..500 {
                    let Some(t) = a.next_at() else { break };
                    prop_assert!(t >= last, "{t:?} before {last:?}");
                    last = t;
                }
                let _ = profile.rate_at(last);
                let _ = profile.scaled(0.5).stages_duration();
            }
        }
    }
}
