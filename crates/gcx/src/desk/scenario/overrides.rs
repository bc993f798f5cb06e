//! Command-line values that replace a scenario's (`--agents`, `--duration`, `--rate`, ...),
//! so a quick run needs no file.

use std::time::Duration;

use super::super::agents::{LoadModel, RunEnd};
use super::super::schedule::RateProfile;
use super::{Agents, MAX_AGENTS, Scenario, ScenarioError};

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
}

impl Overrides {
    pub(super) fn apply(&self, s: &mut Scenario) -> Result<(), ScenarioError> {
        if let Some(n) = self.agents {
            if n == 0 || n > MAX_AGENTS {
                return Err(ScenarioError::flag(
                    "--agents",
                    format!("must be 1 to {MAX_AGENTS}, got {n}"),
                ));
            }
            s.agents = Agents::Count(n);
        }
        if let Some(d) = self.duration {
            if d.is_zero() {
                return Err(ScenarioError::flag("--duration", "must be longer than 0"));
            }
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
            if n == 0 {
                return Err(ScenarioError::flag("--iterations", "must be at least 1"));
            }
            s.end = RunEnd::Iterations {
                count: n,
                max: self.duration,
            };
        }
        if let Some(r) = self.rate {
            if !r.is_finite() || r <= 0.0 {
                return Err(ScenarioError::flag(
                    "--rate",
                    format!("arrivals per second must be a number above 0, got {r}"),
                ));
            }
            match &mut s.load {
                LoadModel::Open { profile, .. } => *profile = RateProfile::constant(r),
                LoadModel::Closed => {
                    return Err(ScenarioError::flag(
                        "--rate",
                        "the scenario uses the closed model, whose pace is the agents' idle time; --rate applies to the open model",
                    ));
                }
            }
        }
        if let Some(seed) = self.seed {
            s.seed = Some(seed);
        }
        if let Some(b) = self.batch_size {
            if !(1..=500).contains(&b) {
                return Err(ScenarioError::flag(
                    "--batch-size",
                    format!("must be 1 to 500 (the events endpoint's limit), got {b}"),
                ));
            }
            s.injector.batch_size = b;
        }
        if let Some(a) = self.async_mode {
            s.injector.async_mode = a;
        }
        if let Some(x) = self.invalid_share {
            if !(0.0..=0.5).contains(&x) {
                return Err(ScenarioError::flag(
                    "--invalid-transitions",
                    format!("a share from 0 to 0.5, got {x}"),
                ));
            }
            s.invalid_share = x;
        }
        Ok(())
    }
}
