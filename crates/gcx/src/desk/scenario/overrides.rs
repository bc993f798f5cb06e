//! Command-line values that replace a scenario's (`--agents`, `--duration`, `--rate`, ...),
//! so a quick run needs no file.

use std::time::Duration;

use super::super::agents::{LoadModel, RunEnd};
use super::super::schedule::RateProfile;
use super::bounds::{self, MAX_AGENTS, MAX_ITERATIONS};
use super::{Agents, Scenario, ScenarioError, ScenarioViolation, WireTarget};

/// Values given on the command line; `None` keeps the scenario's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub agents: Option<u64>,
    pub duration: Option<Duration>,
    pub iterations: Option<u64>,
    /// Arrivals per second, constant (replaces any stages).
    pub rate: Option<f64>,
    pub seed: Option<u64>,
    pub batch_size: Option<usize>,
    pub async_mode: Option<bool>,
    pub invalid_share: Option<f64>,
    pub target: Option<WireTarget>,
    pub observe: Option<bool>,
}

impl Overrides {
    /// Applies every value that is in range; reports every one that is not.
    pub(super) fn apply(&self, s: &mut Scenario) -> Result<(), ScenarioError> {
        let mut found = Vec::new();
        let mut bad = |flag: &str, message: String| {
            found.push(ScenarioViolation::flag(flag, message));
        };
        if let Some(n) = self.agents {
            if n == 0 || n > MAX_AGENTS {
                bad("--agents", format!("must be 1 to {MAX_AGENTS}, got {n}"));
            } else {
                s.agents = Agents::Count(n);
            }
        }
        let duration = self.duration.filter(|d| {
            let problem = bounds::span_problem(*d, false, bounds::MAX_SPAN, bounds::MAX_SPAN_TEXT);
            if let Some(m) = &problem {
                bad("--duration", m.clone());
            }
            problem.is_none()
        });
        if let Some(d) = duration {
            s.end = match s.end {
                RunEnd::Iterations { count, .. } if self.iterations.is_none() => {
                    RunEnd::Iterations {
                        count,
                        max: Some(d),
                    }
                }
                _ => RunEnd::Duration(d),
            };
        }
        if let Some(n) = self.iterations {
            if n == 0 || n > MAX_ITERATIONS {
                bad(
                    "--iterations",
                    format!("must be 1 to {MAX_ITERATIONS}, got {n}"),
                );
            } else {
                s.end = RunEnd::Iterations {
                    count: n,
                    max: duration,
                };
            }
        }
        if let Some(r) = self.rate {
            match (&mut s.load, bounds::rate_problem(r, false)) {
                (_, Some(m)) => bad("--rate", m),
                (LoadModel::Open { profile, .. }, None) => *profile = RateProfile::constant(r),
                (LoadModel::Closed, None) => bad(
                    "--rate",
                    "the scenario uses the closed model, whose pace is the agents' idle time; --rate applies to the open model".into(),
                ),
            }
        }
        if let Some(seed) = self.seed {
            s.seed = Some(seed);
        }
        if let Some(b) = self.batch_size {
            if (1..=500).contains(&b) {
                s.injector.batch_size = b;
            } else {
                bad(
                    "--batch-size",
                    format!("must be 1 to 500 (the events endpoint's limit), got {b}"),
                );
            }
        }
        if let Some(a) = self.async_mode {
            s.injector.async_mode = a;
        }
        if let Some(x) = self.invalid_share {
            if (0.0..=0.5).contains(&x) {
                s.invalid_share = x;
            } else {
                bad(
                    "--invalid-transitions",
                    format!("a share from 0 to 0.5, got {x}"),
                );
            }
        }
        if let Some(t) = self.target {
            s.target = t;
        }
        if let Some(o) = self.observe {
            s.genesys.observe = o;
        }
        if self.target.is_some()
            || self.observe.is_some()
            || self.invalid_share.is_some()
            || self.async_mode.is_some()
        {
            let flag = if self.observe == Some(true) && self.target.is_none() {
                "--observe"
            } else {
                "--target"
            };
            for m in s.target_problems() {
                bad(flag, m);
            }
        }
        ScenarioError::check(found)
    }
}
