//! `gcx bench`: runs every benchmark (or `--only` some) `--runs` times and prints one
//! table of medians (see [`crate::bench`]). Exit code 0 when every benchmark ran (aims
//! are reported, not enforced: speed is measured, never asserted), 1 when one failed.
//! The soak runs only with `--only soak`, once; a failed check of its account fails it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use super::{GlobalArgs, OutputFormat};
use crate::bench::table::{self, Row};
use crate::bench::{BENCHES, BenchContext, Outcome};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs of each benchmark; the table shows every run and the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Only these benchmarks (repeat or separate with commas): dispatch, dispatch-grown,
    /// prune, slots, audit-sqlite, audit-postgres, outbox, events-500, events-1, stream,
    /// serve-1, serve-100, waiting; and soak, which runs only when named here.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Small sizes, for a smoke test (the figures mean little).
    #[arg(long)]
    pub quick: bool,
    /// Table format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// List the benchmarks and their sizes, and exit.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub soak: SoakArgs,
}

/// The soak's settings (`--only soak`; see docs/soak.md). On PostgreSQL with
/// `--database-url` (a fresh schema is made there and dropped), else on SQLite.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Soak (--only soak)")]
pub struct SoakArgs {
    /// How long triggers are posted under faults (default 30m; 40s with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak_duration: Option<Duration>,
    /// Triggers posted per second.
    #[arg(long, default_value_t = 50.0, value_parser = positive_rate)]
    pub soak_rate: f64,
    /// Triggers per POST.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub soak_batch: u16,
    /// Time between samples of the service.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub soak_sample_every: Duration,
    /// After the load, the longest wait for every trigger to end and every webhook to be
    /// delivered before the account.
    #[arg(long, default_value = "6m", value_parser = humantime::parse_duration)]
    pub soak_drain: Duration,
    /// Folder for samples.csv, soak.html, soak.json and serve.stderr.
    #[arg(long, default_value = "target/soak")]
    pub soak_out: PathBuf,
    /// The CRM answers 503 for this long ...
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub soak_crm_down: Duration,
    /// ... at the end of every period this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub soak_crm_period: Duration,
    /// A `closing` notice this often.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub soak_closing_every: Duration,
    /// The sandbox drops an assist connection after this many frames.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub soak_drop_every: u64,
    /// On PostgreSQL, do not restart the database midway (it is shared with others).
    #[arg(long)]
    pub soak_no_restart: bool,
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000.0 => Ok(r),
        _ => Err(format!(
            "{s:?}: expected triggers per second above 0, at most 10000"
        )),
    }
}

impl SoakArgs {
    /// The soak's settings; PostgreSQL at `postgres` when given.
    fn settings(&self, postgres: Option<String>) -> crate::bench::soak::Settings {
        use crate::bench::soak::{Settings, fault_mix::FaultMix};
        Settings {
            rate: self.soak_rate,
            batch: usize::from(self.soak_batch),
            sample_every: self.soak_sample_every.max(Duration::from_millis(100)),
            drain_within: self.soak_drain,
            out_dir: self.soak_out.clone(),
            postgres,
            restart_postgres: !self.soak_no_restart,
            faults: FaultMix {
                drop_every_messages: self.soak_drop_every,
                crm_down: self.soak_crm_down,
                crm_period: self.soak_crm_period,
                closing_every: self.soak_closing_every,
                ..FaultMix::default()
            },
            ..Settings::default()
        }
    }
}

/// `--output json`.
#[derive(Debug, Serialize)]
struct Report {
    date: String,
    cores: usize,
    runs: u32,
    quick: bool,
    rows: Vec<Row>,
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    if args.list {
        for b in BENCHES {
            println!(
                "{:<15} {:>7} {:<9} (quick {:>5})  {}",
                b.name, b.full_size, b.size_unit, b.quick_size, b.about
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for name in &args.only {
        if crate::bench::find(name).is_none() {
            let names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
            bail!(
                "--only {name:?}: no such benchmark; accepted: {}",
                names.join(", ")
            );
        }
    }
    let mut ctx = BenchContext::default();
    // PostgreSQL from --database-url / store.database_url, else the local test database;
    // the soak runs on PostgreSQL only when one was given.
    let given_url = global.database_url.clone().or_else(|| {
        config
            .store
            .database_url
            .as_ref()
            .map(|s| s.expose().to_owned())
    });
    ctx.soak = args.soak.settings(given_url.clone());
    if let Some(url) = given_url {
        ctx.database_url = url;
    }
    let selected: Vec<_> = BENCHES
        .iter()
        .filter(|b| {
            if args.only.is_empty() {
                !b.on_demand
            } else {
                args.only.iter().any(|n| n == b.name)
            }
        })
        .collect();
    let mut rows = Vec::new();
    let mut failures = 0;
    for bench in selected {
        let mut size = if args.quick {
            bench.quick_size
        } else {
            bench.full_size
        };
        if bench.name == "soak"
            && let Some(d) = args.soak.soak_duration
        {
            size = d.as_secs().max(1);
        }
        let runs_of_this = if bench.on_demand { 1 } else { args.runs };
        let mut runs = Vec::new();
        for i in 1..=runs_of_this {
            eprint!(
                "{} ({size} {}) run {i}/{runs_of_this}... ",
                bench.name, bench.size_unit
            );
            if bench.on_demand {
                // Its progress comes in lines of their own.
                eprintln!();
            }
            let _ = std::io::stderr().flush();
            let outcome = crate::bench::measure(bench, size, &ctx).await;
            match &outcome {
                Ok(Outcome::Measured(m)) => eprintln!(
                    "{}",
                    m.values
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Ok(Outcome::Skipped(why)) => eprintln!("skipped: {why}"),
                Err(e) => {
                    failures += 1;
                    eprintln!("FAILED: {e}");
                }
            }
            let skipped = matches!(outcome, Ok(Outcome::Skipped(_)));
            runs.push(outcome.map_err(|e| e.to_string()));
            // A benchmark that cannot run here will not run on the next attempt either.
            if skipped {
                break;
            }
        }
        rows.extend(table::rows(bench, &runs));
    }
    match args.output {
        OutputFormat::Json => {
            let report = Report {
                date: chrono::Utc::now().to_rfc3339(),
                cores: std::thread::available_parallelism().map_or(0, usize::from),
                runs: args.runs,
                quick: args.quick,
                rows,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Table => print!("{}", table::render(&rows)),
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
