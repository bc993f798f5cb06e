//! The final summary table printed on the terminal.

use std::fmt::Write as _;

use super::summary::Summary;

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.2} ms")
    }
}

/// A plain-text table (no colours: it also goes to CI logs).
pub fn render(s: &Summary) -> String {
    let m = &s.metrics;
    let x = &s.extended;
    let mut out = String::new();
    let rows: Vec<(&str, String)> = vec![
        ("scenario", format!("{} (run {})", m.scenario, m.run_id)),
        (
            "agents / duration",
            format!(
                "{} / {:.1} s (seed {})",
                s.run.agents, s.run.duration_s, s.run.seed
            ),
        ),
        (
            "events",
            format!(
                "{} in {} requests ({} retries)",
                m.total_events, x.requests, m.retries
            ),
        ),
        (
            "accepted",
            format!("{} ({:.0}/s)", m.successful_injections, x.events_per_second),
        ),
        (
            "rejected",
            format!(
                "{} = {} expected + {} state mismatches",
                m.rejected, m.expected_rejections, m.state_mismatches
            ),
        ),
        (
            "unexpected acceptances",
            m.unexpected_acceptances.to_string(),
        ),
        ("missing / failed", format!("{} / {}", m.missing, x.failed)),
        (
            "dropped",
            format!(
                "{} ({} no idle agent, {} behind schedule)",
                m.dropped, x.dropped_no_agent, x.dropped_behind
            ),
        ),
        (
            "response time",
            format!(
                "p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}",
                ms(m.p50_latency_ms),
                ms(x.p90_latency_ms),
                ms(m.p95_latency_ms),
                ms(m.p99_latency_ms),
                ms(x.p999_latency_ms),
                ms(m.max_latency_ms)
            ),
        ),
        (
            "service time",
            format!(
                "p50 {}  p90 {}  p95 {}  p99 {}  max {}",
                ms(m.service_p50_ms),
                ms(x.service_p90_ms),
                ms(x.service_p95_ms),
                ms(m.service_p99_ms),
                ms(x.service_max_ms)
            ),
        ),
    ];
    let mut rows = rows;
    if let Some(g) = &s.genesys {
        // Refusals of the Events API are not state mismatches: it checks fields only.
        if let Some(row) = rows.iter_mut().find(|(k, _)| *k == "rejected") {
            row.1 = format!("{} (refused by the Events API)", m.rejected);
        }
        let total = g.events.total();
        rows.push((
            "Events API events",
            format!(
                "{} accepted, {} refused, {} failed",
                total.accepted, total.refused, total.failed
            ),
        ));
        for (kind, c) in &g.events.by_kind {
            rows.push((
                "",
                format!(
                    "  {kind}: {} accepted, {} refused, {} failed",
                    c.accepted, c.refused, c.failed
                ),
            ));
        }
        if let Some(o) = &g.observation {
            rows.push((
                "observed",
                format!(
                    "{} of {} changes ({} never, {} unexpected notifications)",
                    o.observed, o.expected, o.unobserved, o.unexpected
                ),
            ));
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), ms);
            rows.push((
                "injection -> notified",
                format!(
                    "p50 {}  p95 {}  p99 {}  max {}",
                    opt(o.p50_ms),
                    opt(o.p95_ms),
                    opt(o.p99_ms),
                    opt(o.max_ms)
                ),
            ));
        }
    }
    if s.latency.async_e2e.count > 0 {
        rows.push((
            "async end-to-end",
            format!(
                "p50 {}  p95 {}  p99 {}",
                ms(x.async_e2e_p50_ms),
                ms(x.async_e2e_p95_ms),
                ms(x.async_e2e_p99_ms)
            ),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &rows {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    if !m.thresholds.is_empty() {
        let _ = writeln!(out, "\n  thresholds");
        for t in &m.thresholds {
            let _ = writeln!(
                out,
                "    {}  {:<32} value {}",
                if t.passed { "PASS" } else { "FAIL" },
                t.expression,
                if t.value.fract() == 0.0 {
                    format!("{:.0}", t.value)
                } else {
                    format!("{:.3}", t.value)
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "\n  result: {}",
        if m.passed { "PASSED" } else { "FAILED" }
    );
    out
}
