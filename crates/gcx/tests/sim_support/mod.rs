//! What the simulator's end-to-end tests share: an in-process sandbox with faults, the
//! target that points a simulation at it with the sandbox's demo client, and a small,
//! fast scenario.

use gcx::config::Secret;
use gcx::desk::Target;
use gcx_sandbox::{Faults, Sandbox, SandboxOptions};

pub async fn sandbox(faults: Faults) -> Sandbox {
    Sandbox::start(SandboxOptions {
        faults,
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

pub fn target(sb: &Sandbox) -> Target {
    Target {
        api_base: sb.base_url(),
        login_base: sb.base_url(),
        origin: "test".into(),
        client_id: "gcx-demo".into(),
        client_secret: Secret::new("gcx-demo-secret"),
    }
}

/// A small, fast scenario: `agents` agents, interactions at `rate`/s for `secs`, short
/// handle times, plus `extra` lines at the top level.
pub fn small(agents: u64, rate: f64, secs: f64, extra: &str) -> String {
    format!(
        r#"
name = "small"
duration = "{ms}ms"
time_slice = "20ms"
{extra}

[agents]
count = {agents}
login_over = "200ms"

[load]
rate = {rate}

[time_in_state]
available = {{ dist = "exponential", mean = "100ms" }}
busy = {{ dist = "uniform", min = "20ms", max = "60ms" }}
connected = {{ dist = "lognormal", median = "100ms", p95 = "300ms" }}
disconnected = "10ms"
wrapping = {{ dist = "exponential", mean = "50ms" }}

[query]
interval = "50ms"
timeout = "3s"
"#,
        ms = (secs * 1000.0) as u64
    )
}
