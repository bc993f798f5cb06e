//! Time-in-state distributions: how long an agent stays in a state before its next event.

use std::time::Duration;

use super::rng::SimRng;

/// z of the 95th percentile of the standard normal: lognormal sigma = ln(p95/median) / z95.
const Z95: f64 = 1.644_853_626_951_472_2;
/// Longest single dwell we draw: an exponential or lognormal tail must not stall an agent
/// for days (and no conversion to `Duration` can overflow). Scenario checks refuse longer
/// parameters.
pub const MAX_DWELL: Duration = Duration::from_secs(24 * 3600);

/// One state's dwell time.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeDist {
    Fixed(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    Exponential {
        mean: Duration,
    },
    /// Given by its median and 95th percentile, as people describe handle times.
    LogNormal {
        median: Duration,
        p95: Duration,
    },
}

/// Why a distribution's parameters do not describe one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistError {
    #[error("uniform needs min <= max, got min {min:?} > max {max:?}")]
    UniformOrder { min: Duration, max: Duration },
    #[error(
        "lognormal needs a median above zero and p95 >= median, got median {median:?}, p95 {p95:?}"
    )]
    LogNormalOrder { median: Duration, p95: Duration },
}

impl TimeDist {
    /// Checks the parameters.
    pub fn check(&self) -> Result<(), DistError> {
        match *self {
            TimeDist::Uniform { min, max } if min > max => {
                Err(DistError::UniformOrder { min, max })
            }
            TimeDist::LogNormal { median, p95 } if median.is_zero() || p95 < median => {
                Err(DistError::LogNormalOrder { median, p95 })
            }
            _ => Ok(()),
        }
    }

    /// Draws one dwell time.
    pub fn sample(&self, rng: &mut SimRng) -> Duration {
        let secs = match *self {
            TimeDist::Fixed(d) => return d,
            TimeDist::Uniform { min, max } => {
                min.as_secs_f64() + rng.unit() * (max - min).as_secs_f64()
            }
            TimeDist::Exponential { mean } => -mean.as_secs_f64() * rng.open_unit().ln(),
            TimeDist::LogNormal { median, p95 } => {
                let mu = median.as_secs_f64().ln();
                let sigma = (p95.as_secs_f64() / median.as_secs_f64()).ln() / Z95;
                (mu + sigma * rng.normal()).exp()
            }
        };
        // A NaN (which no valid parameters give) becomes the longest dwell, not a panic.
        Duration::try_from_secs_f64(secs.clamp(0.0, MAX_DWELL.as_secs_f64())).unwrap_or(MAX_DWELL)
    }

    /// The mean (for capacity hints in reports and defaults).
    pub fn mean(&self) -> Duration {
        match *self {
            TimeDist::Fixed(d) => d,
            TimeDist::Uniform { min, max } => min / 2 + max / 2,
            TimeDist::Exponential { mean } => mean,
            TimeDist::LogNormal { median, p95 } => {
                let sigma = (p95.as_secs_f64() / median.as_secs_f64()).ln() / Z95;
                Duration::try_from_secs_f64(
                    (median.as_secs_f64() * (sigma * sigma / 2.0).exp())
                        .min(MAX_DWELL.as_secs_f64()),
                )
                .unwrap_or(MAX_DWELL)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn quantile(d: &TimeDist, q: f64) -> f64 {
        let mut r = SimRng::new(42, 0);
        let mut v: Vec<f64> = (0..100_000)
            .map(|_| d.sample(&mut r).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v[(q * v.len() as f64) as usize]
    }

    #[test]
    fn lognormal_hits_its_median_and_p95() {
        let d = TimeDist::LogNormal {
            median: ms(1000),
            p95: ms(3000),
        };
        assert!((quantile(&d, 0.5) - 1.0).abs() < 0.03);
        assert!((quantile(&d, 0.95) - 3.0).abs() < 0.15);
    }

    #[test]
    fn exponential_and_uniform_have_their_means() {
        let mut r = SimRng::new(1, 0);
        for (d, want) in [
            (TimeDist::Exponential { mean: ms(200) }, 0.2),
            (
                TimeDist::Uniform {
                    min: ms(100),
                    max: ms(300),
                },
                0.2,
            ),
        ] {
            let n = 100_000;
            let mean: f64 = (0..n).map(|_| d.sample(&mut r).as_secs_f64()).sum::<f64>() / n as f64;
            assert!((mean - want).abs() < 0.005, "{d:?}: {mean}");
            assert!((d.mean().as_secs_f64() - want).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(
            TimeDist::Uniform {
                min: ms(2),
                max: ms(1)
            }
            .check()
            .is_err()
        );
        assert!(
            TimeDist::LogNormal {
                median: ms(2),
                p95: ms(1)
            }
            .check()
            .is_err()
        );
        assert!(
            TimeDist::LogNormal {
                median: ms(0),
                p95: ms(1)
            }
            .check()
            .is_err()
        );
        assert!(TimeDist::Fixed(ms(0)).check().is_ok());
    }
}
