//! The `genesys-events` target at scale: `gcx simulate --target genesys-events --observe`
//! with up to 10,000 agents against a `gcx sandbox` child process, the same sandbox
//! serving the Events API and the Notifications API. Events API events accepted per
//! second, and the injection-to-notification latency the watch measured.

use std::path::Path;
use std::time::Duration;

use super::events::{ChildSandbox, run_simulation, scenario};
use super::{BenchError, Measurement};

/// One observed run of `agents` agents for `duration`.
pub async fn observed(
    binary: &Path,
    agents: u64,
    duration: Duration,
) -> Result<Measurement, BenchError> {
    let sandbox = ChildSandbox::start(binary).await?;
    let secs = duration.as_secs().max(1);
    // Each interaction is 5 transitions and 8 Events API events (3 of them conversation
    // events); a quarter of the agents start one each second and handle it for about
    // 3 s, so most agents are busy at once.
    let rate = (agents / 4).max(1);
    let s = scenario(&format!(
        r#"name = "bench-genesys"
seed = 1
target = "genesys-events"
duration = "{secs}s"
batch_size = 100
time_slice = "50ms"
max_in_flight = 32

[genesys]
observe = true
observe_grace = "10s"

[load]
rate = {rate}
arrival = "poisson"

[agents]
count = {agents}
login_over = "2s"

[time_in_state]
busy = {{ dist = "uniform", min = "100ms", max = "300ms" }}
connected = {{ dist = "lognormal", median = "2s", p95 = "4s" }}
disconnected = "50ms"
wrapping = {{ dist = "exponential", mean = "500ms" }}
"#
    ))?;
    let report = run_simulation(&s, &sandbox.base_url).await?;
    sandbox.stop().await;
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
    let Some(o) = &g.observation else {
        return Err(BenchError::Incomplete("no observation".into()));
    };
    let send = summary.run.send_phase_s.max(1e-9);
    let mut out = Measurement::default()
        .with("events", g.events.total().accepted as f64 / send)
        .with("transitions", m.successful_injections as f64 / send)
        .with("unobserved", o.unobserved as f64)
        .with("dropped", m.dropped as f64);
    for (id, v) in [("p50", o.p50_ms), ("p95", o.p95_ms), ("p99", o.p99_ms)] {
        if let Some(v) = v {
            out = out.with(id, v);
        }
    }
    Ok(out)
}
