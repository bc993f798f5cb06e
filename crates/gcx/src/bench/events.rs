//! The interactions events endpoint under load, from two clients of the same sandbox:
//! `gcx simulate` itself (a full simulation: schedule, agents, audit files, query-back,
//! reports) and `wrk` (Debian package) as the external peer, with the script of
//! `benches/events_wrk.lua` (fresh sequenceIds on every request, every transition valid).
//! The sandbox is a `gcx sandbox` child process, so both clients stand to it alike: each
//! is its own process on loopback, sharing nothing with the server (in-process, the
//! simulator would share the server's runtime threads and wrk would not). The peer runs
//! only when `wrk` is installed; its figures are then absent. `benches/events_wrk.sh` is
//! the sandbox-only script (wrk alone, no simulator).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BenchError, Measurement, TempDir, child};
use crate::auth::{Credentials, TokenProvider};
use crate::desk::{RunOptions, RunReport, Scenario, Target, simulate};

/// The wrk script, embedded so `gcx bench` works from any folder.
const WRK_SCRIPT: &str = include_str!("../../../../benches/events_wrk.lua");

/// Events/s accepted at batch 500, async, by a simulation of up to 10,000 agents
/// (`accepted`), and events/s posted by wrk the same way (`wrk`).
pub async fn batch_500(binary: &Path, duration: Duration) -> Result<Measurement, BenchError> {
    let sandbox = ChildSandbox::start(binary).await?;
    let secs = duration.as_secs().max(1);
    // 10,000 agents at 30,000 interactions/s for a full run; fewer for a short one.
    let agents = (secs * 1_000).min(10_000);
    let scenario = scenario(&format!(
        r#"name = "bench-batch-500"
seed = 1
duration = "{secs}s"
async = true
batch_size = 500
time_slice = "20ms"
max_in_flight = 32

[load]
rate = {rate}
arrival = "uniform"

[agents]
count = {agents}
login_over = "1s"

[time_in_state]
busy = "20ms"
connected = {{ dist = "uniform", min = "30ms", max = "70ms" }}
disconnected = "10ms"
wrapping = "20ms"
available = "50ms"

[query]
interval = "250ms"
timeout = "20s"
"#,
        rate = agents * 3,
    ))?;
    let report = run_simulation(&scenario, &sandbox.base_url).await?;
    let x = &report.summary.extended;
    if report.summary.metrics.missing > 0 || x.failed > 0 {
        return Err(BenchError::Incomplete(format!(
            "{} events missing, {} failed",
            report.summary.metrics.missing, x.failed
        )));
    }
    let mut m = Measurement::default().with("accepted", x.events_per_second);
    match wrk(&sandbox, 500, true, 8, duration).await? {
        Some(requests_per_second) => m = m.with("wrk", requests_per_second * 500.0),
        None => m.note = Some(WRK_MISSING.into()),
    }
    sandbox.stop().await;
    Ok(m)
}

/// Requests/s at batch 1, sync (16 requests in flight), by a closed-model simulation with
/// no think time (`simulate`) and by wrk with 16 connections (`wrk`), and their ratio.
///
/// The simulation has 1,024 agents: an agent has at most one unanswered request and acts
/// again at the next time slice, so 64 agents at 5 ms would cap it at 12,800 requests/s
/// whatever the server does. wrk's requests carry fresh agents every time.
///
/// The two take turns, [`TURNS`] times each for an equal share of `duration`, so a drift
/// of the machine's speed during the run weighs on both alike: each figure is its total
/// requests over its total sending time.
pub async fn batch_1(binary: &Path, duration: Duration) -> Result<Measurement, BenchError> {
    let sandbox = ChildSandbox::start(binary).await?;
    let turn = Duration::from_secs((duration.as_secs() / TURNS).max(1));
    let (mut sim_requests, mut sim_secs) = (0.0, 0.0);
    // wrk's turns are all `turn` long: its figure is the mean of its rates.
    let mut peer_rates = Some(0.0);
    for _ in 0..TURNS {
        let (requests, secs) = batch_1_simulation(&sandbox, turn).await?;
        sim_requests += requests;
        sim_secs += secs;
        let rate = wrk(&sandbox, 1, false, 16, turn).await?;
        peer_rates = peer_rates.zip(rate).map(|(sum, r)| sum + r);
    }
    let rps = sim_requests / sim_secs.max(1e-9);
    let mut m = Measurement::default().with("simulate", rps);
    match peer_rates {
        Some(sum) => {
            let peer = sum / TURNS as f64;
            m = m
                .with("wrk", peer)
                .with("ratio", 100.0 * rps / peer.max(1e-9));
        }
        None => m.note = Some(WRK_MISSING.into()),
    }
    sandbox.stop().await;
    Ok(m)
}

/// Turns each client takes in [`batch_1`].
const TURNS: u64 = 2;

/// One batch-1 simulation of `duration`: its requests and its sending time in seconds.
async fn batch_1_simulation(
    sandbox: &ChildSandbox,
    duration: Duration,
) -> Result<(f64, f64), BenchError> {
    let secs = duration.as_secs().max(1);
    let scenario = scenario(&format!(
        r#"name = "bench-batch-1"
seed = 1
duration = "{secs}s"
async = false
batch_size = 1
time_slice = "5ms"
max_in_flight = 16

[load]
model = "closed"

[agents]
count = 1024
login_over = "100ms"

[time_in_state]
busy = 0
connected = 0
disconnected = 0
wrapping = 0
available = 0
"#
    ))?;
    let report = run_simulation(&scenario, &sandbox.base_url).await?;
    Ok((
        report.summary.extended.requests as f64,
        report.summary.run.send_phase_s,
    ))
}

const WRK_MISSING: &str = "wrk is not installed (apt-get install wrk): no peer figures";

/// `gcx sandbox --port 0` as a child process, killed when dropped.
pub(super) struct ChildSandbox {
    child: tokio::process::Child,
    pub(super) base_url: String,
    /// Holds the ready file and the child's stderr.
    _dir: TempDir,
}

impl ChildSandbox {
    pub(super) async fn start(binary: &Path) -> Result<ChildSandbox, BenchError> {
        let dir = TempDir::new()?;
        let args = ["--port", "0", "--log-level", "warn"].map(OsStr::new);
        match child::start(binary, "sandbox", &args, dir.path(), "base_url").await? {
            Ok(ready) => Ok(ChildSandbox {
                child: ready.child,
                base_url: ready.url,
                _dir: dir,
            }),
            Err(why) => Err(BenchError::Child(why)),
        }
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

pub(super) fn scenario(text: &str) -> Result<Scenario, BenchError> {
    Scenario::from_toml(text, "the benchmark's scenario")
        .map_err(|e| BenchError::Simulate(e.to_string()))
}

pub(super) async fn run_simulation(
    scenario: &Scenario,
    base_url: &str,
) -> Result<RunReport, BenchError> {
    let dir = TempDir::new()?;
    let client = gcx_sandbox::ClientSpec::demo();
    let target = Target {
        api_base: base_url.to_owned(),
        login_base: base_url.to_owned(),
        origin: "the benchmark's sandbox".into(),
        client_id: client.id,
        client_secret: crate::config::Secret::new(client.secret),
    };
    simulate(
        scenario,
        &target,
        RunOptions {
            out_dir: Some(dir.path().join("out")),
            ..RunOptions::default()
        },
    )
    .await
    .map_err(|e| BenchError::Simulate(e.to_string()))
}

/// Runs wrk against the sandbox's events endpoint; `None` when wrk is not installed.
/// Returns requests per second; fails if wrk saw errors or non-2xx answers.
async fn wrk(
    sandbox: &ChildSandbox,
    batch: u32,
    async_mode: bool,
    connections: u32,
    duration: Duration,
) -> Result<Option<f64>, BenchError> {
    let Some(wrk) = find_in_path("wrk") else {
        return Ok(None);
    };
    let dir = TempDir::new()?;
    let script = dir.path().join("events_wrk.lua");
    std::fs::write(&script, WRK_SCRIPT).map_err(BenchError::TempDir)?;
    let tokens = TokenProvider::new(
        Credentials::sandbox_demo(&sandbox.base_url)
            .with_scopes([gcx_protocol::oauth::SCOPE_INTERACTIONS_READ]),
        crate::http_client::build(Duration::from_secs(10))?,
    )?;
    let token = tokens.token().await?;
    let output = tokio::process::Command::new(&wrk)
        .arg("-t2")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(&sandbox.base_url)
        .env("TOKEN", token.expose())
        .env("BATCH", batch.to_string())
        .env("ASYNC", async_mode.to_string())
        .env("RUN", rand::random::<u16>().to_string())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| BenchError::Child(format!("cannot run {}: {e}", wrk.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::Child(format!(
            "wrk exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    parse_wrk(&stdout).map(Some)
}

/// Requests/s from wrk's report; an error when it counted socket errors or non-2xx.
fn parse_wrk(report: &str) -> Result<f64, BenchError> {
    if let Some(line) = report
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        return Err(BenchError::Incomplete(format!("wrk: {}", line.trim())));
    }
    report
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| BenchError::Child(format!("wrk printed no Requests/sec: {report}")))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_parse_and_errors_fail() {
        let ok = "Running 1s test @ http://127.0.0.1:1\n  2 threads and 16 connections\n  1000 requests in 1.00s, 1.2MB read\nRequests/sec:   9876.54\nTransfer/sec:      1.2MB\n";
        assert_eq!(parse_wrk(ok).unwrap(), 9876.54);
        let bad = format!("{ok}  Non-2xx or 3xx responses: 12\n");
        assert!(parse_wrk(&bad).is_err());
        assert!(parse_wrk("nothing").is_err());
    }
}
