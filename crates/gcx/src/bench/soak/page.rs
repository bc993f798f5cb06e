//! `soak.html`: the soak on one self-contained page in the simulator report's frame
//! ([`PAGE_STYLE`]): the verdict, key figures, the account, then the samples drawn over
//! time as inline SVG (no script, no network) with the faults marked on every chart.

use std::fmt::Write as _;

use super::Report;
use super::chart::{Band, Chart, Guide, Line, Mark};
use super::fault_mix::Action;
use super::flatness::{Flatness, WARM_UP_SHARE};
use super::sample::{Phase, Sample};
use crate::desk::report::html::{PAGE_STYLE, escape_html};

/// Rows of the pending and dead tables shown (the count says the rest).
const LISTED: usize = 50;

const MIB: f64 = 1024.0 * 1024.0;

/// The page.
pub fn render(r: &Report) -> String {
    let mut body = String::new();
    header(&mut body, r);
    kpis(&mut body, r);
    checks(&mut body, r);
    charts(&mut body, r);
    undelivered(&mut body, r);
    run(&mut body, r);
    let _ = write!(
        body,
        "<footer>samples.csv (one row per sample) and soak.json (everything on this page) are beside this file.</footer>"
    );
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gcx soak: {backend}, {minutes}</title>
<style>
{PAGE_STYLE}
</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"#,
        backend = r.backend,
        minutes = minutes(r.load_s),
    )
}

fn minutes(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

fn header(out: &mut String, r: &Report) {
    let (class, word) = if r.passed() {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    let _ = write!(
        out,
        r#"<header><div><h1>gcx soak</h1><div class="sub">gcx serve on {backend}, {load} of load at {rate} triggers/s under every fault, then {drain} of drain &middot; started {started}</div></div><div class="verdict {class}">{word}</div></header>"#,
        backend = r.backend,
        load = minutes(r.load_s),
        rate = r.settings.rate,
        drain = minutes(r.drain_s),
        started = r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
}

fn kpi(out: &mut String, class: &str, value: &str, label: &str, detail: &str) {
    let _ = write!(
        out,
        r#"<div class="kpi {class}"><div class="l">{}</div><div class="v">{}</div><div class="d">{}</div></div>"#,
        escape_html(label),
        escape_html(value),
        escape_html(detail)
    );
}

fn ok_class(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "bad",
        None => "",
    }
}

fn flatness_of<'a>(r: &'a Report, unit: &str) -> Option<&'a Flatness> {
    r.flatness.iter().find(|f| f.unit == unit)
}

fn kpis(out: &mut String, r: &Report) {
    out.push_str(r#"<section class="kpis">"#);
    let acknowledged = r.load.acknowledged.len();
    kpi(
        out,
        ok_class(Some(r.load.unacknowledged == 0)),
        &acknowledged.to_string(),
        "triggers acknowledged",
        &format!(
            "{:.1}/s over the load",
            acknowledged as f64 / r.load_s.max(1e-9)
        ),
    );
    match &r.account {
        Some(a) => {
            let ok = a.ended.unfinished.is_empty() && a.ended.missing.is_empty();
            kpi(
                out,
                ok_class(Some(ok)),
                &(a.ended.completed + a.ended.failed + a.ended.rejected).to_string(),
                "ended",
                &format!(
                    "{} completed, {} failed, {} rejected",
                    a.ended.completed, a.ended.failed, a.ended.rejected
                ),
            );
        }
        None => kpi(out, "bad", "?", "ended", "the store could not be read"),
    }
    for (unit, label, scale, suffix) in [
        ("KiB", "resident memory", 1.0 / 1024.0, " MiB"),
        ("", "open file descriptors", 1.0, ""),
    ] {
        match flatness_of(r, unit) {
            Some(f) => kpi(
                out,
                ok_class(Some(f.flat)),
                &format!("{:.1}{suffix}", f.last * scale),
                label,
                &format!(
                    "{:+.1} % after warm-up (from {:.1}{suffix})",
                    f.growth_percent(),
                    f.first * scale
                ),
            ),
            None => kpi(out, "bad", "?", label, "too few samples to judge"),
        }
    }
    let cpu = r.cpu_per_minute_under_load();
    kpi(
        out,
        "",
        &cpu.map_or("?".into(), |c| format!("{c:.1} s/min")),
        "CPU under load",
        &cpu.map_or(String::new(), |c| {
            format!("{:.0} % of one core", 100.0 * c / 60.0)
        }),
    );
    let last = r.samples.last();
    kpi(
        out,
        "",
        &last
            .and_then(|s| s.store_bytes)
            .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / MIB)),
        "store at the end",
        r.backend,
    );
    match &r.account {
        Some(a) => kpi(
            out,
            ok_class(Some(a.dead.is_empty())),
            &a.pending.len().to_string(),
            "webhooks pending at the end",
            &format!("{} dead letters", a.dead.len()),
        ),
        None => kpi(out, "bad", "?", "webhooks pending at the end", ""),
    }
    let stats = &r.sandbox_stats;
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let outages = r
        .events
        .iter()
        .filter(|e| e.action == Action::CrmDown)
        .count();
    kpi(
        out,
        "",
        &n(&stats["assist"]["connections_total"]).to_string(),
        "assist connections opened",
        &format!(
            "{} tokens, {} 429s, {outages} CRM outages",
            n(&stats["oauth"]["tokens_issued"]),
            n(&stats["assist"]["rejected_429"])
        ),
    );
    out.push_str("</section>");
}

fn checks(out: &mut String, r: &Report) {
    out.push_str(r#"<section class="card"><h2>Account</h2><table><thead><tr><th>check</th><th></th><th>figures</th></tr></thead><tbody>"#);
    for c in &r.checks {
        let (class, word) = if c.passed {
            ("pass", "pass")
        } else {
            ("fail", "fail")
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td><span class="badge {class}">{word}</span></td><td>{}</td></tr>"#,
            escape_html(c.name),
            escape_html(&c.detail)
        );
    }
    out.push_str("</tbody></table></section>");
}

/// The samples of the run, their times, and each figure as points.
struct Series<'a> {
    samples: &'a [Sample],
}

impl Series<'_> {
    fn points(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, Option<f64>)> {
        self.samples.iter().map(|s| (s.elapsed_s, f(s))).collect()
    }

    /// Per second between consecutive samples of a growing figure.
    fn rate(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, Option<f64>)> {
        self.samples
            .windows(2)
            .map(|w| {
                let dt = w[1].elapsed_s - w[0].elapsed_s;
                let v = match (f(&w[0]), f(&w[1])) {
                    (Some(a), Some(b)) if dt > 0.0 => Some(((b - a) / dt).max(0.0)),
                    _ => None,
                };
                (w[1].elapsed_s, v)
            })
            .collect()
    }
}

fn charts(out: &mut String, r: &Report) {
    let series = Series {
        samples: &r.samples,
    };
    let x_max = r.samples.last().map_or(r.load_s, |s| s.elapsed_s).max(1.0);
    let loads: Vec<&Sample> = r
        .samples
        .iter()
        .filter(|s| s.phase == Phase::Load)
        .collect();
    let warm_up_end = loads
        .get((loads.len() as f64 * WARM_UP_SHARE).ceil() as usize)
        .map(|s| s.elapsed_s);
    let backdrop = || {
        let mut bands = Vec::new();
        if let Some(end) = warm_up_end {
            bands.push(Band {
                from: 0.0,
                to: end,
                colour: "var(--grey)",
                label: Some("warm-up".into()),
            });
        }
        let mut down = None;
        for e in &r.events {
            match e.action {
                Action::CrmDown => down = Some(e.at_s),
                Action::CrmUp => {
                    if let Some(from) = down.take() {
                        bands.push(Band {
                            from,
                            to: e.at_s,
                            colour: "var(--bad)",
                            label: None,
                        });
                    }
                }
                _ => {}
            }
        }
        bands.push(Band {
            from: r.load_s,
            to: x_max,
            colour: "var(--info)",
            label: Some("drain".into()),
        });
        let marks: Vec<Mark> = r
            .events
            .iter()
            .filter_map(|e| match e.action {
                Action::ClosingOn => Some(Mark {
                    at: e.at_s,
                    colour: "var(--warn)",
                    label: format!("closing at {:.0} s", e.at_s),
                }),
                Action::RestartPostgres => Some(Mark {
                    at: e.at_s,
                    colour: "var(--bad)",
                    label: format!("PostgreSQL restart at {:.0} s", e.at_s),
                }),
                _ => None,
            })
            .collect();
        (bands, marks)
    };
    let flat_guides = |unit: &str, scale: f64, suffix: &str| {
        flatness_of(r, unit).map_or_else(Vec::new, |f| {
            vec![
                Guide {
                    value: f.first * scale,
                    colour: "var(--ok)",
                    label: format!("first tenth {:.1}{suffix}", f.first * scale),
                },
                Guide {
                    value: f.limit * scale,
                    colour: "var(--bad)",
                    label: format!("limit {:.1}{suffix}", f.limit * scale),
                },
            ]
        })
    };
    let line = |label: &str, colour: &'static str, points| Line {
        label: label.to_owned(),
        colour,
        points,
    };
    let card = |out: &mut String, title: &str, chart: Chart, legend: &[(&str, &str)]| {
        let _ = write!(
            out,
            r#"<div class="card wide"><h2>{}</h2>{}<div class="legend">"#,
            escape_html(title),
            chart.svg()
        );
        for (colour, label) in legend {
            let _ = write!(
                out,
                r#"<span style="--c:{colour}">{}</span>"#,
                escape_html(label)
            );
        }
        out.push_str(
            r#"<span style="--c:var(--bad);opacity:.5">CRM down</span><span style="--c:var(--warn)">closing</span></div></div>"#,
        );
    };
    let chart = |unit: &'static str, lines: Vec<Line>, guides: Vec<Guide>| {
        let (bands, marks) = backdrop();
        Chart {
            unit,
            x_max,
            lines,
            bands,
            marks,
            guides,
        }
    };
    out.push_str(r#"<section class="grid">"#);
    card(
        out,
        "Resident memory of gcx serve",
        chart(
            "MiB",
            vec![line(
                "resident memory",
                "var(--info)",
                series.points(|s| s.rss_kib.map(|k| k as f64 / 1024.0)),
            )],
            flat_guides("KiB", 1.0 / 1024.0, " MiB"),
        ),
        &[
            ("var(--info)", "resident memory"),
            ("var(--ok)", "first tenth after warm-up"),
            ("var(--bad)", "limit"),
        ],
    );
    card(
        out,
        "Open file descriptors",
        chart(
            "descriptors",
            vec![line(
                "open file descriptors",
                "var(--p95)",
                series.points(|s| s.open_fds.map(|n| n as f64)),
            )],
            flat_guides("", 1.0, ""),
        ),
        &[
            ("var(--p95)", "open descriptors"),
            ("var(--ok)", "first tenth after warm-up"),
            ("var(--bad)", "limit"),
        ],
    );
    card(
        out,
        "CPU of gcx serve (% of one core)",
        chart(
            "%",
            vec![line(
                "CPU",
                "var(--p99)",
                series
                    .rate(|s| s.cpu_seconds)
                    .into_iter()
                    .map(|(t, v)| (t, v.map(|v| v * 100.0)))
                    .collect(),
            )],
            Vec::new(),
        ),
        &[("var(--p99)", "CPU")],
    );
    card(
        out,
        "Triggers per second",
        chart(
            "triggers/s",
            vec![
                line(
                    "accepted",
                    "var(--info)",
                    series.rate(|s| s.triggers_accepted.map(|n| n as f64)),
                ),
                line(
                    "ended",
                    "var(--ok)",
                    series.rate(|s| s.triggers_ended.map(|n| n as f64)),
                ),
            ],
            Vec::new(),
        ),
        &[("var(--info)", "accepted"), ("var(--ok)", "ended")],
    );
    card(
        out,
        "Webhook outbox backlog",
        chart(
            "pending",
            vec![line(
                "pending webhooks",
                "var(--warn)",
                series.points(|s| s.outbox_pending.map(|n| n as f64)),
            )],
            Vec::new(),
        ),
        &[("var(--warn)", "pending webhooks")],
    );
    card(
        out,
        "Store size",
        chart(
            "MiB",
            vec![line(
                "store",
                "var(--svc)",
                series.points(|s| s.store_bytes.map(|b| b as f64 / MIB)),
            )],
            Vec::new(),
        ),
        &[(
            "var(--svc)",
            if r.backend == "sqlite" {
                "database + WAL"
            } else {
                "schema tables + indexes"
            },
        )],
    );
    out.push_str("</section>");
}

fn undelivered(out: &mut String, r: &Report) {
    let Some(a) = &r.account else { return };
    if a.pending.is_empty() && a.dead.is_empty() {
        return;
    }
    out.push_str(r#"<section class="card"><h2>Webhooks not delivered at the end</h2><table><thead><tr><th>message</th><th>trigger</th><th>state</th><th class="num">attempts</th><th>status</th><th>why</th></tr></thead><tbody>"#);
    let pending = a.pending.iter().map(|p| {
        (
            &p.message_id,
            &p.correlation_id,
            &p.execution_state,
            p.attempts,
            "pending",
            p.reason.clone().unwrap_or_else(|| "none: stuck".into()),
        )
    });
    let dead = a.dead.iter().map(|d| {
        (
            &d.message_id,
            &d.correlation_id,
            &d.execution_state,
            d.attempts,
            "dead",
            d.last_error.clone().unwrap_or_default(),
        )
    });
    let total = a.pending.len() + a.dead.len();
    for (id, trigger, state, attempts, status, why) in dead.chain(pending).take(LISTED) {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{attempts}</td><td>{status}</td><td>{}</td></tr>"#,
            escape_html(id),
            escape_html(trigger),
            escape_html(state),
            escape_html(&why)
        );
    }
    out.push_str("</tbody></table>");
    if total > LISTED {
        let _ = write!(
            out,
            r#"<div class="sub">and {} more (soak.json lists them all)</div>"#,
            total - LISTED
        );
    }
    out.push_str("</section>");
}

fn run(out: &mut String, r: &Report) {
    let s = &r.settings;
    let f = &s.faults;
    let rows = [
        ("backend", r.backend.to_owned()),
        (
            "load",
            format!(
                "{} at {} triggers/s in batches of {}",
                minutes(r.load_s),
                s.rate,
                s.batch
            ),
        ),
        (
            "drain",
            format!(
                "{} (at most {})",
                minutes(r.drain_s),
                minutes(s.drain_within.as_secs_f64())
            ),
        ),
        (
            "samples",
            format!(
                "{} every {} s",
                r.samples.len(),
                s.sample_every.as_secs_f64()
            ),
        ),
        (
            "assist connections dropped",
            format!("every {} frames", f.drop_every_messages),
        ),
        ("tokens live", format!("{} s", f.token_lifetime.as_secs())),
        (
            "engine 429s",
            format!("{:.1} % of sends", f.send_429_rate * 100.0),
        ),
        (
            "engine failures",
            format!("{:.1} % of actions", f.result_failure_rate * 100.0),
        ),
        ("closing", format!("every {} s", f.closing_every.as_secs())),
        (
            "CRM down",
            format!(
                "{} s of every {} s",
                f.crm_down.as_secs(),
                f.crm_period.as_secs()
            ),
        ),
        (
            "PostgreSQL restart",
            if r.backend == "postgres" && s.restart_postgres {
                "midway".into()
            } else {
                "no".into()
            },
        ),
        (
            "refusals while posting",
            if r.load.refused.is_empty() {
                "none".into()
            } else {
                r.load
                    .refused
                    .iter()
                    .map(|(k, v)| format!("{k} x{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("late ticks", r.load.late_ticks.to_string()),
    ];
    out.push_str(r#"<section class="card"><h2>Run</h2><dl>"#);
    for (k, v) in rows {
        let _ = write!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            escape_html(k),
            escape_html(&v)
        );
    }
    out.push_str("</dl></section>");
}
