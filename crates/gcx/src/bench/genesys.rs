//! The `genesys-events` target at scale: `gcx simulate --target genesys-events --observe`
//! with up to 10,000 agents against a `gcx sandbox` child process, the same sandbox
//! serving the Events API and the Notifications API, twice:
//! - an open-model load most agents are busy with (a quarter of them start an interaction
//!   each second): events/s carried and the injection-to-notification latency;
//! - a closed loop with no think time (each agent acts again as soon as its last request
//!   is answered), not observed: the most events/s the Events API side takes. Observed,
//!   that load outruns the sandbox's Notifications emulation (its publisher falls behind
//!   the user-state changes and counts them lost), which is not what is measured here.

use std::path::Path;
use std::time::Duration;

use super::events::{ChildSandbox, run_simulation, scenario};
use super::{BenchError, Measurement};

/// What one observed run showed.
struct Observed {
    events_per_s: f64,
    transitions_per_s: f64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    unobserved: u64,
    dropped: u64,
}

/// Both runs of `agents` agents; the open one lasts `duration`, the closed one half.
pub async fn observed(
    binary: &Path,
    agents: u64,
    duration: Duration,
) -> Result<Measurement, BenchError> {
    let secs = duration.as_secs().max(2);
    // Each interaction is 5 transitions and 8 Events API events (3 of them conversation
    // events), handled for about 3 s.
    let open = run(
        binary,
        &format!(
            r#"duration = "{secs}s"
[load]
rate = {rate}
arrival = "poisson"
[time_in_state]
busy = {{ dist = "uniform", min = "100ms", max = "300ms" }}
connected = {{ dist = "lognormal", median = "2s", p95 = "4s" }}
disconnected = "50ms"
wrapping = {{ dist = "exponential", mean = "500ms" }}
"#,
            rate = (agents / 4).max(1)
        ),
        agents,
        true,
    )
    .await?;
    let closed = run(
        binary,
        &format!(
            r#"duration = "{half}s"
time_slice = "5ms"
[load]
model = "closed"
[time_in_state]
available = 0
busy = 0
connected = 0
disconnected = 0
wrapping = 0
"#,
            half = secs / 2
        ),
        agents,
        false,
    )
    .await?;
    let mut m = Measurement::default()
        .with("events", open.events_per_s)
        .with("transitions", open.transitions_per_s)
        .with("unobserved", open.unobserved as f64)
        .with("dropped", open.dropped as f64)
        .with("max_events", closed.events_per_s)
        .with("max_transitions", closed.transitions_per_s);
    for (id, v) in [("p50", open.p50), ("p95", open.p95), ("p99", open.p99)] {
        if let Some(v) = v {
            m = m.with(id, v);
        }
    }
    Ok(m)
}

/// One simulation of `agents` agents with `load` (top-level keys, then tables) on a fresh
/// sandbox child, observed or not.
async fn run(
    binary: &Path,
    load: &str,
    agents: u64,
    observe: bool,
) -> Result<Observed, BenchError> {
    let (top, tables) = load.split_once("[load]").unwrap_or((load, ""));
    let s = scenario(&format!(
        r#"name = "bench-genesys"
seed = 1
target = "genesys-events"
batch_size = 100
max_in_flight = 32
{top}
[genesys]
observe = {observe}
observe_grace = "10s"

[agents]
count = {agents}
login_over = "2s"

[load]{tables}"#
    ))?;
    let sandbox = ChildSandbox::start(binary).await?;
    let report = run_simulation(&s, &sandbox.base_url).await;
    sandbox.stop().await;
    let report = report?;
    let summary = &report.summary;
    let m = &summary.metrics;
    let x = &summary.extended;
    if m.missing > 0 || x.failed > 0 || m.rejected > 0 {
        return Err(BenchError::Incomplete(format!(
            "{} transitions missing, {} failed, {} refused",
            m.missing, x.failed, m.rejected
        )));
    }
    let Some(g) = &summary.genesys else {
        return Err(BenchError::Incomplete("no Events API figures".into()));
    };
    let o = g.observation.clone().unwrap_or_default();
    if observe && o.expected == 0 {
        return Err(BenchError::Incomplete("nothing was observed".into()));
    }
    let send = summary.run.send_phase_s.max(1e-9);
    Ok(Observed {
        events_per_s: g.events.total().accepted as f64 / send,
        transitions_per_s: m.successful_injections as f64 / send,
        p50: o.p50_ms,
        p95: o.p95_ms,
        p99: o.p99_ms,
        unobserved: o.unobserved,
        dropped: m.dropped,
    })
}
