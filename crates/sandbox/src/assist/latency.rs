//! Engine latency: a lognormal between the configured median and 99th percentile, drawn
//! from the seed and the correlationId so the same run takes the same time per action.

use crate::faults::{LatencySpec, draw};

/// The z-score of the 99th percentile of a standard normal.
const Z_P99: f64 = 2.326_347_874;

/// Milliseconds the action with `correlation_id` takes. A median of 0 means immediate;
/// a p99 equal to the median means a fixed latency.
pub(crate) fn engine_latency_ms(spec: LatencySpec, seed: u64, correlation_id: &str) -> u64 {
    if spec.median == 0 {
        return 0;
    }
    if spec.p99 <= spec.median {
        return spec.median;
    }
    let median = spec.median as f64;
    let sigma = ((spec.p99 as f64) / median).ln() / Z_P99;
    // Box-Muller from two independent draws; `1 - u` keeps the logarithm finite.
    let u1 = 1.0 - draw(seed, "latency_u1", correlation_id);
    let u2 = draw(seed, "latency_u2", correlation_id);
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    // Clamp the tail at 4 sigma so one unlucky draw cannot stall a test for minutes.
    let z = z.clamp(-4.0, 4.0);
    (median * (sigma * z).exp()).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(median: u64, p99: u64) -> LatencySpec {
        LatencySpec { median, p99 }
    }

    #[test]
    fn zero_median_is_immediate_and_equal_bounds_are_fixed() {
        assert_eq!(engine_latency_ms(spec(0, 0), 1, "a"), 0);
        assert_eq!(engine_latency_ms(spec(20, 20), 1, "a"), 20);
    }

    #[test]
    fn draws_repeat_and_follow_median_and_p99() {
        let s = spec(20, 200);
        assert_eq!(engine_latency_ms(s, 3, "x"), engine_latency_ms(s, 3, "x"));
        let mut v: Vec<u64> = (0..20_000)
            .map(|i| engine_latency_ms(s, 3, &i.to_string()))
            .collect();
        v.sort_unstable();
        let median = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((18..=22).contains(&median), "median {median}");
        assert!((170..=235).contains(&p99), "p99 {p99}");
    }
}
