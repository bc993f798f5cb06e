//! `gcx report merge`: the summaries of the shards of one run, merged exactly. Counts add;
//! histograms (whole-run and per-second) are decoded and added, and every percentile is
//! recomputed from them, never averaged.

use std::collections::BTreeMap;

use super::latency::{self, HistogramDecodeError, merge_point};
use super::report::summary::Summary;
use super::tally::TransitionRow;

/// Why summaries cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("a stored histogram is damaged: {0}")]
    Histogram(#[from] HistogramDecodeError),
}

/// Merges `parts` (the shards of one run) into one summary, thresholds re-evaluated.
pub fn merge(parts: &[Summary]) -> Result<Summary, MergeError> {
    let (first, rest) = parts.split_first().ok_or(MergeError::Empty)?;
    let mut out = first.clone();
    for p in rest {
        let (m, x) = (&mut out.metrics, &mut out.extended);
        m.total_events += p.metrics.total_events;
        m.successful_injections += p.metrics.successful_injections;
        m.state_mismatches += p.metrics.state_mismatches;
        m.rejected += p.metrics.rejected;
        m.expected_rejections += p.metrics.expected_rejections;
        m.unexpected_acceptances += p.metrics.unexpected_acceptances;
        m.missing += p.metrics.missing;
        m.retries += p.metrics.retries;
        x.failed += p.extended.failed;
        x.duplicates += p.extended.duplicates;
        x.requests += p.extended.requests;
        x.dropped_no_agent += p.extended.dropped_no_agent;
        x.dropped_behind += p.extended.dropped_behind;
        x.interactions_started += p.extended.interactions_started;
        x.interactions_completed += p.extended.interactions_completed;
        x.invalid_generated += p.extended.invalid_generated;
        let r = &mut out.run;
        r.started_at = r.started_at.clone().min(p.run.started_at.clone());
        r.finished_at = r.finished_at.clone().max(p.run.finished_at.clone());
        r.duration_s = r.duration_s.max(p.run.duration_s);
        r.send_phase_s = r.send_phase_s.max(p.run.send_phase_s);
        r.agents += p.run.agents;
        r.shards.extend(p.run.shards.iter().cloned());
        r.interrupted |= p.run.interrupted;
        latency::add_encoded(&mut out.histograms.response_us, &p.histograms.response_us)?;
        latency::add_encoded(&mut out.histograms.service_us, &p.histograms.service_us)?;
        latency::add_encoded(&mut out.histograms.async_e2e_us, &p.histograms.async_e2e_us)?;
        for (k, v) in &p.rejection_codes {
            *out.rejection_codes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &p.failure_reasons {
            *out.failure_reasons.entry(k.clone()).or_default() += v;
        }
        match (&mut out.genesys, &p.genesys) {
            (Some(a), Some(b)) => a.add(b)?,
            (None, Some(b)) => out.genesys = Some(b.clone()),
            _ => {}
        }
        // Transitions, keyed by (from, to, invalid).
        let mut rows: BTreeMap<(String, String, bool), TransitionRow> = out
            .transitions
            .drain(..)
            .map(|r| ((r.from.clone(), r.to.clone(), r.invalid), r))
            .collect();
        for row in &p.transitions {
            let e = rows
                .entry((row.from.clone(), row.to.clone(), row.invalid))
                .or_insert_with(|| TransitionRow {
                    counts: Default::default(),
                    mismatch_rate: 0.0,
                    ..row.clone()
                });
            e.counts.sent += row.counts.sent;
            e.counts.accepted += row.counts.accepted;
            e.counts.rejected += row.counts.rejected;
            e.counts.unresolved += row.counts.unresolved;
        }
        out.transitions = rows.into_values().collect();
        // Series, aligned by seconds since each shard's start.
        for point in &p.series {
            while out.series.len() as u64 <= point.t {
                let t = out.series.len() as u64;
                out.series.push(latency::SecondPoint {
                    t,
                    ..Default::default()
                });
            }
            merge_point(&mut out.series[point.t as usize], point)?;
        }
    }
    for r in &mut out.transitions {
        r.mismatch_rate = if r.invalid || r.counts.sent == 0 {
            0.0
        } else {
            r.counts.rejected as f64 / r.counts.sent as f64
        };
    }
    if parts.len() > 1 {
        out.metrics.scenario = first.metrics.scenario.clone();
        out.metrics.timestamp = gcx_protocol::time::now();
    }
    let thresholds = first.threshold_specs();
    out.derive(&thresholds)?;
    Ok(out)
}
