//! `report.html`: one self-contained page (inline CSS, inline script drawing SVG charts from
//! an embedded JSON blob; no network), so it opens anywhere, from a CI artifact too. Its
//! style sheet, [`PAGE_STYLE`], is the frame of every gcx HTML page (the soak's too).

use serde::Serialize;

use super::summary::{Extended, LatencyReport, RunInfo, Summary};
use crate::desk::tally::TransitionRow;
use gcx_protocol::webhook::SimulationMetrics;

const TEMPLATE: &str = include_str!("report.html");

/// The CSS of gcx's HTML pages (cards, KPIs, verdict, tables, badges, charts, light and
/// dark), inlined into each page's `<style>`.
pub const PAGE_STYLE: &str = include_str!("page.css");

#[derive(Serialize)]
struct Point {
    t: u64,
    sent: u64,
    accepted: u64,
    rejected: u64,
    failed: u64,
    retries: u64,
    dropped: u64,
    p50: f64,
    p90: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct Data<'a> {
    meta: &'a RunInfo,
    metrics: &'a SimulationMetrics,
    extended: &'a Extended,
    latency: &'a LatencyReport,
    series: Vec<Point>,
    transitions: &'a [TransitionRow],
    rejection_codes: &'a std::collections::BTreeMap<String, u64>,
    failure_reasons: &'a std::collections::BTreeMap<String, u64>,
}

/// `s` as HTML text or attribute value.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for a summary.
pub fn render(s: &Summary) -> Result<String, serde_json::Error> {
    let data = Data {
        meta: &s.run,
        metrics: &s.metrics,
        extended: &s.extended,
        latency: &s.latency,
        series: s
            .series
            .iter()
            .map(|p| Point {
                t: p.t,
                sent: p.sent,
                accepted: p.accepted,
                rejected: p.rejected,
                failed: p.failed,
                retries: p.retries,
                dropped: p.dropped,
                p50: p.p50,
                p90: p.p90,
                p95: p.p95,
                p99: p.p99,
                max: p.max,
            })
            .collect(),
        transitions: &s.transitions,
        rejection_codes: &s.rejection_codes,
        failure_reasons: &s.failure_reasons,
    };
    // Inside <script>, "</" could end the element and "<!--" open a comment: escape both.
    let json = serde_json::to_string(&data)?
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--");
    Ok(TEMPLATE
        .replace("__GCX_STYLE__", PAGE_STYLE)
        .replace("__GCX_TITLE__", &escape_html(&s.metrics.scenario))
        .replace("__GCX_DATA__", &json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_data_safely() {
        let mut s = Summary::default();
        s.metrics.scenario = "</script><b>x".into();
        let page = render(&s).unwrap();
        assert!(!page.contains("</script><b>"));
        assert!(page.contains("&lt;/script&gt;&lt;b&gt;x"));
        assert!(!page.contains("__GCX_DATA__"));
        assert!(!page.contains("__GCX_STYLE__"));
        assert!(page.contains("--bg: #f4f6fa"), "the style sheet is inlined");
        assert!(
            !page.contains("http://") || !page.contains("src=\"http"),
            "no network resources"
        );
        assert!(!page.contains("<link "));
    }
}
