//! Dispatch throughput through the full durable pipeline: an in-process sandbox, a real
//! SQLite store in a temporary folder (trigger rows, CRM outbox rows and hash-chained audit
//! records, group-committed), the assist stream over a real socket, the dispatcher.
//! Prints completed triggers per second, send->result p50/p99 and slot utilisation
//! (throughput / (limit * 1000 / engine latency)) for each run and the medians.
//!
//!     cargo run --release -p gcx --example dispatch_bench -- --triggers 100000
//!     cargo run --release -p gcx --example dispatch_bench -- --triggers 20000 --latency-ms 20
//!
//! The CRM rows are written but not delivered (delivery drains the outbox on its own;
//! `outbox_bench` measures it).

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use gcx::assist::dispatcher::{Dispatcher, DispatcherConfig, Outcome};
use gcx::auth::{Credentials, TokenProvider};
use gcx::config::{Config, Secret};
use gcx::store::{Store, TriggerState};
use gcx_protocol::ActionTriggerPayload;
use gcx_sandbox::{Faults, LatencySpec, Sandbox, SandboxOptions};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Triggers per run.
    #[arg(long, default_value_t = 100_000)]
    triggers: u32,
    /// Engine latency (ms, fixed).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The engine's concurrency limit.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Runs (the medians are printed at the end).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Write CRM outbox rows as a run with a CRM URL does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    crm_rows: bool,
}

/// One run's figures.
struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    utilisation: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut all = Vec::new();
    for run in 1..=args.runs {
        let f = runtime.block_on(one_run(&args))?;
        println!(
            "run {run}: {:.0} triggers/s  p50 {:.2} ms  p99 {:.2} ms{}",
            f.per_second,
            f.p50_ms,
            f.p99_ms,
            f.utilisation
                .map(|u| format!("  utilisation {:.1} %", u * 100.0))
                .unwrap_or_default()
        );
        all.push(f);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {}: {:.0} triggers/s  p50 {:.2} ms  p99 {:.2} ms{}   ({} triggers, engine latency {} ms, limit {})",
        args.runs,
        median(all.iter().map(|f| f.per_second).collect()),
        median(all.iter().map(|f| f.p50_ms).collect()),
        median(all.iter().map(|f| f.p99_ms).collect()),
        if all.iter().all(|f| f.utilisation.is_some()) {
            format!(
                "  utilisation {:.1} %",
                100.0 * median(all.iter().filter_map(|f| f.utilisation).collect())
            )
        } else {
            String::new()
        },
        args.triggers,
        args.latency_ms,
        args.limit
    );
    Ok(())
}

async fn one_run(args: &Args) -> anyhow::Result<Figures> {
    let sandbox = Sandbox::start(SandboxOptions {
        faults: Faults {
            max_concurrent_actions: args.limit,
            engine_latency_ms: LatencySpec {
                median: args.latency_ms,
                p99: args.latency_ms,
            },
            ..Faults::default()
        },
        ..SandboxOptions::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.store.data_dir = dir.path().to_owned();
    if args.crm_rows {
        config.crm.url = Some(sandbox.info().crm_url);
    }
    let store = Store::open(&config.store).await?;
    let tokens = TokenProvider::new(
        Credentials::new(
            sandbox.base_url(),
            "gcx-demo",
            Secret::new("gcx-demo-secret"),
        ),
        gcx::http_client::build(Duration::from_secs(10))?,
    )?;
    tokens.token().await?;
    let dispatch = DispatcherConfig::from_config(&config, sandbox.info().stream_url, "1");
    let dispatcher = Dispatcher::start(dispatch, store.clone(), tokens).await?;
    // Connected before the clock starts.
    while dispatcher.connected_epoch().is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let triggers: Vec<ActionTriggerPayload> = (0..args.triggers).map(trigger).collect();
    let started = Instant::now();
    let (tickets_tx, mut tickets_rx) = tokio::sync::mpsc::channel(4096);
    let submitter = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            for t in triggers {
                let Ok(ticket) = dispatcher.submit(t).await else {
                    return;
                };
                if tickets_tx.send(ticket).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut waiting = FuturesUnordered::new();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(args.triggers as usize);
    let mut submitting = true;
    while submitting || !waiting.is_empty() {
        tokio::select! {
            t = tickets_rx.recv(), if submitting => match t {
                Some(mut ticket) => waiting.push(async move { ticket.outcome().await }),
                None => submitting = false,
            },
            Some(o) = waiting.next() => outcomes.push(o),
        }
    }
    let elapsed = started.elapsed();
    submitter.await?;
    dispatcher.shutdown().await;
    store.close().await?;
    sandbox.shutdown().await?;

    let completed = outcomes
        .iter()
        .filter(|o| o.state == TriggerState::Completed)
        .count();
    anyhow::ensure!(
        completed == args.triggers as usize,
        "only {completed} of {} completed",
        args.triggers
    );
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    for o in &outcomes {
        if let Some(l) = o.send_to_result {
            histogram.record(u64::try_from(l.as_micros()).unwrap_or(u64::MAX).max(1))?;
        }
    }
    let per_second = completed as f64 / elapsed.as_secs_f64();
    Ok(Figures {
        per_second,
        p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        utilisation: (args.latency_ms > 0)
            .then(|| per_second / (f64::from(args.limit) * 1000.0 / args.latency_ms as f64)),
    })
}

fn trigger(i: u32) -> ActionTriggerPayload {
    // Built from JSON like any input; the payload is valid by construction.
    serde_json::from_value(json!({
        "actionType": "knowledge_search",
        "parameterMatrix": {"query": format!("refund policy {i}"), "languageCode": "en-US"},
        "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                             "sessionId": format!("session-{i}"), "interactionType": "voice"},
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "maxRetries": 2
    }))
    .unwrap_or_else(|e| panic!("benchmark trigger {i} does not parse: {e}"))
}
