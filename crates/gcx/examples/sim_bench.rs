//! Benchmarks of `gcx simulate` (numbers for BENCHMARKS.md; run by `benches/sim_bench.sh`).
//!
//!     cargo run --release -p gcx --example sim_bench -- throughput [--runs 3] [--secs 10] [--rate 30000]
//!         events/s accepted at batch 500, async, 10,000 agents, sandbox in this process
//!     cargo run --release -p gcx --example sim_bench -- batch1 --base-url URL [--runs 3]
//!         requests/s at batch 1 (sync) against a sandbox running elsewhere
//!     cargo run --release -p gcx --example sim_bench -- rss --base-url URL
//!         peak resident memory (VmHWM) of a 10,000-agent run against a sandbox elsewhere
//!
//! Every run is a full simulation: audit files, query-back, reports, all of it.

use gcx::config::Secret;
use gcx::desk::{RunOptions, RunReport, Scenario, Target, simulate};
use gcx_sandbox::{Sandbox, SandboxOptions};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml(text, "bench.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn target(base: &str) -> Target {
    Target {
        api_base: base.to_owned(),
        login_base: base.to_owned(),
        origin: "bench".into(),
        client_id: "gcx-demo".into(),
        client_secret: Secret::new("gcx-demo-secret"),
    }
}

async fn run(s: &Scenario, base: &str) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: Some(dir.path().join("out")),
        ..RunOptions::default()
    };
    simulate(s, &target(base), opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Handle times short enough that 10,000 agents can carry the rate.
const FAST_AGENTS: &str = r#"
[agents]
count = 10000
login_over = "1s"

[time_in_state]
busy = "20ms"
connected = { dist = "uniform", min = "30ms", max = "70ms" }
disconnected = "10ms"
wrapping = "20ms"
available = "50ms"

[query]
interval = "250ms"
timeout = "20s"
"#;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let runs: usize = arg(&args, "--runs").map_or(3, |v| v.parse().unwrap());
    let secs: u64 = arg(&args, "--secs").map_or(10, |v| v.parse().unwrap());
    match mode.as_str() {
        "throughput" => {
            let rate: f64 = arg(&args, "--rate").map_or(30_000.0, |v| v.parse().unwrap());
            let s = scenario(&format!(
                "name = \"bench-throughput\"\nseed = 1\nduration = \"{secs}s\"\nasync = true\nbatch_size = 500\ntime_slice = \"20ms\"\nmax_in_flight = 32\n\n[load]\nrate = {rate}\narrival = \"uniform\"\n{FAST_AGENTS}"
            ));
            let mut rates = Vec::new();
            for i in 1..=runs {
                // A fresh sandbox per run, in this process: the number includes its work.
                let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
                let r = run(&s, &sb.base_url()).await;
                let (m, x) = (&r.summary.metrics, &r.summary.extended);
                let accepted_by_sandbox = sb.state.stats.events.events_accepted.get();
                println!(
                    "throughput run {i}: {:.0} events/s accepted ({} events, {} accepted by the sandbox, send phase {:.2} s), p50 {:.1} ms p99 {:.1} ms, dropped {}, missing {}, requests {}",
                    x.events_per_second,
                    m.total_events,
                    accepted_by_sandbox,
                    r.summary.run.send_phase_s,
                    m.p50_latency_ms,
                    m.p99_latency_ms,
                    m.dropped,
                    m.missing,
                    x.requests
                );
                rates.push(x.events_per_second);
                sb.shutdown().await.unwrap();
            }
            println!(
                "throughput MEDIAN: {:.0} events/s accepted (batch 500, async, 10000 agents, sandbox in-process)",
                median(rates)
            );
        }
        "batch1" => {
            let base = arg(&args, "--base-url").expect("--base-url of a running sandbox");
            let s = scenario(&format!(
                "name = \"bench-batch1\"\nseed = 1\nduration = \"{secs}s\"\nasync = false\nbatch_size = 1\ntime_slice = \"5ms\"\nmax_in_flight = 16\n\n[load]\nmodel = \"closed\"\n\n[agents]\ncount = 64\nlogin_over = \"100ms\"\n\n[time_in_state]\nbusy = 0\nconnected = 0\ndisconnected = 0\nwrapping = 0\navailable = 0\n"
            ));
            let mut rates = Vec::new();
            for i in 1..=runs {
                let r = run(&s, &base).await;
                let x = &r.summary.extended;
                let rps = x.requests as f64 / r.summary.run.send_phase_s;
                println!(
                    "batch1 run {i}: {rps:.0} requests/s ({} requests, p50 {:.2} ms, service p50 {:.2} ms)",
                    x.requests, r.summary.metrics.p50_latency_ms, r.summary.metrics.service_p50_ms
                );
                rates.push(rps);
            }
            println!(
                "batch1 MEDIAN: {:.0} requests/s (sync, 16 in flight)",
                median(rates)
            );
        }
        "rss" => {
            let base = arg(&args, "--base-url").expect("--base-url of a running sandbox");
            let s = scenario(&format!(
                "name = \"bench-rss\"\nseed = 1\nduration = \"{secs}s\"\nasync = true\nbatch_size = 500\nmax_in_flight = 16\n\n[load]\nrate = 2000\n{FAST_AGENTS}"
            ));
            let r = run(&s, &base).await;
            println!(
                "rss: VmHWM {:.1} MiB with 10000 agents ({} events, {:.0} events/s)",
                vm_hwm_kib() as f64 / 1024.0,
                r.summary.metrics.total_events,
                r.summary.extended.events_per_second
            );
        }
        _ => {
            eprintln!(
                "usage: sim_bench throughput|batch1|rss [--base-url URL] [--runs N] [--secs S] [--rate R]"
            );
            std::process::exit(2);
        }
    }
}
