//! `gcx bench`: runs every benchmark (or `--only` some) `--runs` times and prints one
//! table of medians (see [`crate::bench`]). Exit code 0 when every benchmark ran (aims
//! are reported, not enforced: speed is measured, never asserted), 1 when one failed.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use serde::Serialize;

use super::GlobalArgs;
use crate::bench::table::{self, Row};
use crate::bench::{BENCHES, BenchContext, Outcome};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs of each benchmark; the table shows every run and the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Only these benchmarks (repeat or separate with commas): dispatch, slots,
    /// audit-sqlite, audit-postgres, outbox, events-500, events-1, stream, serve-1,
    /// serve-100, waiting.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
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
    // PostgreSQL from --database-url / store.database_url, else the local test database.
    if let Some(url) = global.database_url.clone().or_else(|| {
        config
            .store
            .database_url
            .as_ref()
            .map(|s| s.expose().to_owned())
    }) {
        ctx.database_url = url;
    }
    let selected: Vec<_> = BENCHES
        .iter()
        .filter(|b| args.only.is_empty() || args.only.iter().any(|n| n == b.name))
        .collect();
    let mut rows = Vec::new();
    let mut failures = 0;
    for bench in selected {
        let size = if args.quick {
            bench.quick_size
        } else {
            bench.full_size
        };
        let mut runs = Vec::new();
        for i in 1..=args.runs {
            eprint!(
                "{} ({size} {}) run {i}/{}... ",
                bench.name, bench.size_unit, args.runs
            );
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
