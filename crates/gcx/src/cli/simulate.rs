//! `gcx simulate [SCENARIO] [flags]`: runs a simulation, shows live progress on a
//! terminal, prints the summary table, and exits 0 (thresholds pass), 1 (one fails) or
//! 2 (error). With a QA endpoint it opens the store, commits the QA export to its outbox
//! at the end and waits up to `--drain-timeout` for its delivery; an export not
//! delivered by then stays in the outbox and is reported as pending.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::GlobalArgs;
use crate::auth::Credentials;
use crate::config::{Config, GenesysConfig, endpoints};
use crate::desk::live::LiveStats;
use crate::desk::report::qa_export::QaExport;
use crate::desk::report::table;
use crate::desk::scenario::{Agents, WireTarget, parse_agent_id};
use crate::desk::{Overrides, RunOptions, Scenario, Shard, Target, simulate};
use crate::store::{OutboxMessage, OutboxStatus, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A scenario file (TOML; see examples/scenarios/). Without one: 100 agents, 10
    /// interactions per second, 10 seconds, the seed's workflow.
    pub scenario: Option<PathBuf>,
    /// Number of agents (replaces the scenario's agents).
    #[arg(long)]
    pub agents: Option<u64>,
    /// How long the load runs after the agents log in ("30s", "5m").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Run this many interactions, then stop once each has finished.
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Interactions arriving per second, constant (open model).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Random seed: the same seed generates the same event sequence.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most events per request (1-500).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Post with ?async=true and find outcomes by query-back (`--async=false` to turn off).
    #[arg(long = "async", num_args = 0..=1, default_missing_value = "true")]
    pub async_mode: Option<bool>,
    /// Share of deliberately invalid transitions, 0 to 0.5 (negative tests).
    #[arg(long)]
    pub invalid_transitions: Option<f64>,
    /// Where the events go: interactions-events (this project's events endpoint, the
    /// sandbox's default) or genesys-events (the Genesys Cloud Events API of an EX org).
    #[arg(long, value_parser = clap::builder::TypedValueParser::map(
        clap::builder::PossibleValuesParser::new(WireTarget::NAMES),
        |s| s.parse::<WireTarget>().unwrap_or_default()))]
    pub target: Option<WireTarget>,
    /// Watch the agents over the Notifications API and correlate every injected change
    /// with its notification (genesys-events target; `--observe=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub observe: Option<bool>,
    /// Output folder (default: gcx-sim-<YYYYMMDD_HHMMSS>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// POST the results to this QA platform URL at the end (qa.url), through the
    /// store's outbox.
    #[arg(long, env = "QA_PLATFORM_ENDPOINT")]
    pub qa_endpoint: Option<String>,
    /// How long to wait for the QA export to be delivered before exiting; one not
    /// delivered by then stays in the outbox (`gcx outbox deliver` sends it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Run one slice of the agents: i/n (1-based), for n machines sharing a run.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// No live progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Where the events go: `--base-url`, else the scenario's `base_url`, else the
/// configuration (base URL, explicit endpoints or region); and with whose credentials.
fn target(global: &GlobalArgs, config: &Config, scenario: &Scenario) -> anyhow::Result<Target> {
    let g = &config.genesys;
    let (e, origin) = match (&global.base_url, &scenario.base_url) {
        (None, Some((b, origin))) => {
            let e = endpoints(&GenesysConfig {
                base_url: Some(b.clone()),
                ..g.clone()
            })
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
            (e, origin.clone())
        }
        _ => {
            let e = endpoints(g).map_err(|e| {
                anyhow::anyhow!(
                    "{e}\nno target: give --base-url (a sandbox prints its URL), --region, or `base_url` in the scenario"
                )
            })?;
            let origin = if global.base_url.is_some() {
                "--base-url"
            } else {
                "the configured endpoints (genesys.base_url, api_base or region)"
            };
            (e, origin.to_owned())
        }
    };
    let credentials = Credentials::from_config(g, &e)?;
    Ok(Target {
        api_base: e.api_base,
        login_base: e.login_base,
        origin,
        client_id: credentials.client_id,
        client_secret: credentials.client_secret,
    })
}

fn progress(live: Arc<LiveStats>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner:.green} [{elapsed_precise}] {bar:28.cyan/blue} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (mut last_sent, mut last_ms) = (0u64, 0u64);
        let mut rate = 0.0;
        loop {
            tick.tick().await;
            let s = live.snapshot();
            if s.elapsed_ms > last_ms {
                let now = (s.sent.saturating_sub(last_sent)) as f64 * 1000.0
                    / (s.elapsed_ms - last_ms) as f64;
                rate = 0.7 * rate + 0.3 * now;
                (last_sent, last_ms) = (s.sent, s.elapsed_ms);
            }
            if let Some(p) = (s.elapsed_ms * 1000).checked_div(s.planned_ms) {
                b.set_position(p.min(1000));
            }
            let mut msg = format!(
                "{rate:>7.0} ev/s · sent {} · ok {} · rejected {} · errors {} · p95 {:.1} ms · in flight {}",
                s.sent,
                s.accepted,
                s.rejected,
                s.errors,
                s.p95_us as f64 / 1000.0,
                s.in_flight
            );
            if s.retries > 0 || s.dropped > 0 {
                msg.push_str(&format!(" · retries {} · dropped {}", s.retries, s.dropped));
            }
            if s.awaiting_query > 0 {
                msg.push_str(&format!(" · querying {}", s.awaiting_query));
            }
            b.set_message(msg);
            b.tick();
        }
    });
    (bar, task)
}

pub async fn run(args: Args, global: &GlobalArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    // The seed's TEST_AGENT_ID, when neither the file nor --agents names the agents.
    let file_names_agents = scenario.agents != Scenario::default().agents;
    if args.agents.is_none()
        && !file_names_agents
        && let Some(id) = &config.simulate.agent_id
    {
        let id = parse_agent_id(id)
            .map_err(|m| anyhow::anyhow!("TEST_AGENT_ID / `simulate.agent_id`: {m}"))?;
        scenario.agents = Agents::Ids(vec![id]);
    }
    let scenario = scenario.with_overrides(&Overrides {
        agents: args.agents,
        duration: args.duration,
        iterations: args.iterations,
        rate: args.rate,
        seed: args.seed,
        batch_size: args.batch_size,
        async_mode: args.async_mode,
        invalid_share: args.invalid_transitions,
        target: args.target,
        observe: args.observe,
    })?;
    let target = target(global, &config, &scenario)?;
    if let Some(url) = &args.qa_endpoint {
        config.qa.url = Some(url.clone());
    }
    let store = match config.qa.url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            Some(Store::open(&config.store).await.with_context(|| {
                format!(
                    "cannot open the store in {} (the QA export goes through its outbox)",
                    config.store.data_dir.display()
                )
            })?)
        }
        _ => None,
    };
    let qa = match &store {
        Some(store) => Some(QaExport::new(store.clone(), &config, args.drain_timeout)?),
        None => None,
    };
    let live = Arc::new(LiveStats::default());
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ninterrupted: sending what was generated, then writing the report (Ctrl-C again to abort)"
            );
            on_ctrl_c.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(2);
            }
        }
    });
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let bar = show.then(|| progress(live.clone()));
    let result = simulate(
        &scenario,
        &target,
        RunOptions {
            out_dir: args.out.clone(),
            shard: args.shard.unwrap_or_default(),
            live,
            cancel,
            qa,
        },
    )
    .await;
    if let Some((bar, task)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    if let Some(store) = &store
        && let Err(e) = store.close().await
    {
        eprintln!("warning: closing the store failed: {e}");
    }
    let report = result?;
    print!("{}", table::render(&report.summary));
    println!("\n  outputs in {}/", report.out_dir.display());
    println!("    {}", report.files.html.display());
    println!("    {}", report.files.summary.display());
    println!("    {}", report.files.junit.display());
    println!(
        "    {} ({} records)",
        report.audit.json.display(),
        report.audit.records
    );
    println!("    {}", report.audit.jsonl.display());
    match &report.qa_export {
        Some(Ok(message)) => report_qa_export(message, args.drain_timeout),
        Some(Err(e)) => eprintln!("  QA export: {e}"),
        None => {}
    }
    Ok(if report.summary.metrics.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The QA export's line: delivered, or where it waits and what sends it.
fn report_qa_export(message: &OutboxMessage, waited: Duration) {
    let attempts = match message.attempts {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    let last = message
        .last_error
        .as_deref()
        .map(|e| format!(", last: {e}"))
        .unwrap_or_default();
    match message.status {
        OutboxStatus::Delivered => println!("  QA export: delivered"),
        OutboxStatus::Pending => eprintln!(
            "  QA export: not delivered after --drain-timeout {} ({attempts}{last}); it stays \
             in the outbox (`gcx outbox status`) and goes out with `gcx outbox deliver` or the \
             next `gcx serve`",
            humantime::format_duration(waited),
        ),
        OutboxStatus::Dead => eprintln!(
            "  QA export: dead-lettered after {attempts}{last}; `gcx outbox replay --id {}` \
             sends it again",
            message.id,
        ),
    }
}
