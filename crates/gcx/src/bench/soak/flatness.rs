//! The flatness verdict: after warm-up, a figure (resident memory, open descriptors) must
//! not grow beyond a tolerance. The samples of the load phase after warm-up are split in
//! tenths; the median of the last tenth is compared with the median of the first, so one
//! spike (a burst of reconnects, a checkpoint) moves neither end.

use serde::Serialize;

/// Share of the load phase that is warm-up and not judged (caches fill, pools open).
pub const WARM_UP_SHARE: f64 = 1.0 / 3.0;

/// How much a figure may grow after warm-up: the larger of a share of its first value
/// and an absolute slack (so that a handful of descriptors on a small count, or a few
/// pages of allocator slack, do not fail a run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    pub share: f64,
    pub slack: f64,
}

impl Tolerance {
    /// Resident memory: 10 % or 4 MiB (in KiB).
    pub const RSS_KIB: Tolerance = Tolerance {
        share: 0.10,
        slack: 4096.0,
    };
    /// Open file descriptors: 10 % or 8 (the CRM connection pool alone may hold a few
    /// more after a burst of retries; a descriptor lost per reconnect or per outage
    /// still shows within minutes).
    pub const FDS: Tolerance = Tolerance {
        share: 0.10,
        slack: 8.0,
    };

    /// The most `last` may be when the first tenth's median is `first`.
    pub fn limit(self, first: f64) -> f64 {
        first + (first * self.share).max(self.slack)
    }
}

/// The verdict on one figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flatness {
    pub figure: &'static str,
    pub unit: &'static str,
    /// Median of the first tenth after warm-up.
    pub first: f64,
    /// Median of the last tenth.
    pub last: f64,
    pub limit: f64,
    pub tolerance: Tolerance,
    /// Samples per tenth (at least 1).
    pub per_tenth: usize,
    pub flat: bool,
}

impl Flatness {
    /// How much the figure grew, in per cent of its first value.
    pub fn growth_percent(&self) -> f64 {
        if self.first > 0.0 {
            100.0 * (self.last - self.first) / self.first
        } else {
            0.0
        }
    }
}

/// Judges `values` (one per sample of the load phase, in time order). `None` when there
/// are too few samples after warm-up to tell (fewer than two).
pub fn judge(
    figure: &'static str,
    unit: &'static str,
    values: &[f64],
    tolerance: Tolerance,
) -> Option<Flatness> {
    let skip = (values.len() as f64 * WARM_UP_SHARE).ceil() as usize;
    let judged = values.get(skip..)?;
    if judged.len() < 2 {
        return None;
    }
    let per_tenth = (judged.len() / 10).max(1);
    let first = median(&judged[..per_tenth]);
    let last = median(&judged[judged.len() - per_tenth..]);
    let limit = tolerance.limit(first);
    Some(Flatness {
        figure,
        unit,
        first,
        last,
        limit,
        tolerance,
        per_tenth,
        flat: last <= limit,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss(values: &[f64]) -> Flatness {
        judge("rss", "KiB", values, Tolerance::RSS_KIB).unwrap()
    }

    #[test]
    fn warm_up_growth_is_not_judged() {
        // A third of climbing, then flat with noise.
        let mut v: Vec<f64> = (0..10).map(|i| 10_000.0 + 5_000.0 * f64::from(i)).collect();
        v.extend((0..20).map(|i| 60_000.0 + f64::from(i % 3) * 100.0));
        let f = rss(&v);
        assert!(f.flat, "{f:?}");
        assert_eq!(f.per_tenth, 2);
    }

    #[test]
    fn steady_growth_after_warm_up_fails() {
        let v: Vec<f64> = (0..60).map(|i| 50_000.0 + 500.0 * f64::from(i)).collect();
        let f = rss(&v);
        assert!(!f.flat, "{f:?}");
        assert!(f.growth_percent() > 10.0);
    }

    #[test]
    fn one_spike_at_the_end_does_not_fail() {
        let mut v = vec![50_000.0; 59];
        v.push(90_000.0);
        assert!(rss(&v).flat);
    }

    #[test]
    fn small_counts_get_the_absolute_slack() {
        let mut v = vec![20.0; 30];
        v.extend([27.0; 3]);
        let f = judge("fds", "", &v, Tolerance::FDS).unwrap();
        assert_eq!(f.limit, 28.0);
        assert!(f.flat, "{f:?}");
        v.extend([29.0; 10]);
        assert!(!judge("fds", "", &v, Tolerance::FDS).unwrap().flat);
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        assert_eq!(judge("rss", "KiB", &[1.0, 2.0], Tolerance::RSS_KIB), None);
        assert_eq!(judge("rss", "KiB", &[], Tolerance::RSS_KIB), None);
    }
}
