//! `gcx trigger [FILE|-]`: validate triggers from a file or stdin, dispatch every valid one
//! through the durable pipeline, wait for the CRM outbox to drain, print a summary.
//!
//! Exit code: 0 when every valid trigger completed, 1 otherwise (some failed, some are
//! invalid with `--dry-run`, or the input holds no valid trigger at all), 2 for an error
//! that stopped the run (unreadable input, a trigger text over 256 KiB, login refused,
//! missing scope...). The violations of the first [`LISTED`] invalid triggers are printed
//! as they are read; the rest are counted.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use gcx_protocol::{ActionTriggerPayload, Violation};
use serde::Serialize;
use tokio::time::Instant;

use super::{GlobalArgs, OutputFormat};
use crate::assist::batch::{BatchOutcomes, dispatch_batch};
use crate::assist::dispatch::Outcome;
use crate::assist::intake::{self, IntakeOptions};
use crate::config::Config;
use crate::delivery::DrainReport;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::store::TriggerState;

/// How many invalid triggers have their violations printed; the rest are counted.
pub const LISTED: u64 = 100;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every valid trigger completed; 1 some did not, or the \
input holds no valid trigger (or, with --dry-run, an invalid one); 2 an error stopped the run \
(unreadable input, a trigger text over 256 KiB, login refused...)."
)]
pub struct Args {
    /// Triggers as JSON Lines, a JSON array or one JSON object; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// Only validate: report every invalid trigger, send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Lower the engine's concurrency limit (never raises it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Give a trigger without `correlationId` a new UUID v4 instead of refusing it.
    #[arg(long)]
    pub assign_ids: bool,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// How long to wait for the CRM outbox to drain before exiting.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// How long a trigger may wait for a concurrency slot (dispatch.slot_timeout).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub slot_timeout: Option<Duration>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

pub async fn run(args: Args, global: &GlobalArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    let _ = global;
    apply_flags(&args, &mut config);
    let catalogue = intake::load_catalogue(config.dispatch.catalogue_path.as_deref())?;
    let source = args
        .file
        .as_ref()
        .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    let mut valid: Vec<ActionTriggerPayload> = Vec::new();
    let mut invalid = 0u64;
    let input = intake::read_triggers(
        &source,
        &catalogue,
        IntakeOptions {
            assign_ids: args.assign_ids,
        },
        &mut |item| match item.outcome {
            Ok(payload) => valid.push(payload),
            Err(violations) => {
                invalid += 1;
                if invalid <= LISTED {
                    report_invalid(&source, item.line, &violations);
                }
            }
        },
    )?;
    let shown = if source == "-" { "stdin" } else { &source };
    if invalid > LISTED {
        eprintln!(
            "{} more invalid triggers in {shown} not listed (the violations of the first {LISTED} are)",
            invalid - LISTED
        );
    }
    if let Some(line) = input.stopped_at {
        bail!(
            "{shown}:{line}: a trigger's text runs past {} bytes (256 KiB) without ending; reading stopped there and nothing was sent ({} valid and {} invalid before it)",
            intake::MAX_TRIGGER_TEXT,
            valid.len(),
            invalid.saturating_sub(1),
        );
    }
    if valid.is_empty() {
        eprintln!("no valid trigger in {shown} ({invalid} invalid); nothing sent");
        if !args.dry_run {
            let summary = Summary::new(&[], 0, invalid, 0, 0, None, Duration::ZERO);
            print_summary(&summary, args.output)?;
        }
        return Ok(ExitCode::from(1));
    }
    if args.dry_run {
        eprintln!(
            "{} valid, {invalid} invalid (dry run: nothing sent)",
            valid.len()
        );
        return Ok(if invalid == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let started = Instant::now();
    let options = PipelineOptions {
        delivery: config.crm.url.is_some(),
    };
    let Pipeline {
        store,
        dispatcher,
        delivery,
    } = Pipeline::from_config(&config, catalogue, options).await?;

    let progress = progress_bar(valid.len() as u64, &args);
    let total = valid.len() as u64;
    // On a worker thread: on the command's `block_on` thread every outcome would unpark
    // that thread.
    let BatchOutcomes { outcomes, halted } = {
        let (d, p) = (dispatcher.clone(), progress.clone());
        tokio::spawn(async move { dispatch_batch(&d, valid, |_| p.inc(1)).await })
            .await
            .context("the dispatch loop ended")?
    };
    progress.finish_and_clear();
    // Triggers resumed from an earlier run but absent from this input finish too.
    let _ = dispatcher.drain(Duration::from_secs(5)).await;
    let stats = dispatcher.stats();
    dispatcher.shutdown().await;

    let crm = delivery
        .finish(args.drain_timeout)
        .await?
        .map(|(report, _)| report);
    if let Some(report) = crm.filter(|r| r.pending > 0 || r.dead > 0) {
        eprintln!(
            "CRM webhooks: {} undelivered after --drain-timeout {:?} and {} dead-lettered; they \
             stay in the store (`gcx outbox status`), pending ones go out with the next run that delivers",
            report.pending, args.drain_timeout, report.dead
        );
    }
    if let Err(e) = store.close().await {
        eprintln!("warning: closing the store failed: {e}");
    }

    let summary = Summary::new(
        &outcomes,
        total,
        invalid,
        stats.triggers_retried,
        stats.reconnects,
        crm,
        started.elapsed(),
    );
    for o in outcomes
        .iter()
        .filter(|o| o.state != TriggerState::Completed)
    {
        if let Some(error) = &o.error {
            eprintln!("trigger {}: {:?}: {error}", o.correlation_id, o.state);
        }
    }
    print_summary(&summary, args.output)?;
    if let Some(reason) = halted {
        bail!("{reason}");
    }
    Ok(if summary.successful == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The command's own flags as the top configuration layer (the loader has applied the
/// global ones and the environment).
fn apply_flags(args: &Args, config: &mut Config) {
    if let Some(c) = args.concurrency {
        config.dispatch.concurrency = Some(c);
    }
    if let Some(t) = args.slot_timeout {
        config.dispatch.slot_timeout = t;
    }
}

fn print_summary(summary: &Summary, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(summary)?),
        OutputFormat::Table => print!("{}", summary.table()),
    }
    Ok(())
}

fn report_invalid(source: &str, line: usize, violations: &[Violation]) {
    let source = if source == "-" { "stdin" } else { source };
    eprintln!(
        "invalid trigger at line {line} of {source} ({} violation{}), not sent:",
        violations.len(),
        if violations.len() == 1 { "" } else { "s" }
    );
    for v in violations {
        eprintln!("  {v}");
    }
}

fn progress_bar(len: u64, args: &Args) -> indicatif::ProgressBar {
    if args.no_progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} triggers  {per_sec}  eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The run's figures: the seed's metrics plus percentiles and counts.
#[derive(Debug, Serialize)]
struct Summary {
    /// Valid triggers in the input.
    total_triggers: u64,
    successful: u64,
    /// Failed by the engine or refused for good.
    failed: u64,
    /// Not finished when the run stopped (they resume next time).
    unfinished: u64,
    completion_rate: f64,
    average_latency_ms: f64,
    p50_latency_ms: f64,
    p95_latency_ms: f64,
    p99_latency_ms: f64,
    invalid: u64,
    /// Triggers re-sent at least once after a retryable refusal.
    retried: u64,
    reconnects: u64,
    /// Finished in an earlier run, so not sent again.
    already_done: u64,
    elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    crm: Option<DrainReport>,
}

impl Summary {
    fn new(
        outcomes: &[Outcome],
        total: u64,
        invalid: u64,
        retried: u64,
        reconnects: u64,
        crm: Option<DrainReport>,
        elapsed: Duration,
    ) -> Summary {
        let mut histogram =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        let mut sum_ms = 0.0;
        let mut timed = 0u64;
        let (mut successful, mut failed, mut already_done) = (0, 0, 0);
        for o in outcomes {
            match o.state {
                TriggerState::Completed => successful += 1,
                TriggerState::Failed | TriggerState::Rejected => failed += 1,
                _ => {}
            }
            if o.already_final {
                already_done += 1;
            }
            if let Some(latency) = o.send_to_result {
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                if let Some(h) = histogram.as_mut() {
                    let _ = h.record(micros.min(3_600_000_000));
                }
                sum_ms += latency.as_secs_f64() * 1000.0;
                timed += 1;
            }
        }
        let pct = |q: f64| {
            histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        Summary {
            total_triggers: total,
            successful,
            failed,
            unfinished: total.saturating_sub(successful + failed),
            completion_rate: if total == 0 {
                0.0
            } else {
                successful as f64 / total as f64
            },
            average_latency_ms: if timed == 0 {
                0.0
            } else {
                sum_ms / timed as f64
            },
            p50_latency_ms: pct(0.50),
            p95_latency_ms: pct(0.95),
            p99_latency_ms: pct(0.99),
            invalid,
            retried,
            reconnects,
            already_done,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            crm,
        }
    }

    fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("total_triggers", self.total_triggers.to_string()),
            ("successful", self.successful.to_string()),
            ("failed", self.failed.to_string()),
            ("unfinished", self.unfinished.to_string()),
            (
                "completion_rate",
                format!("{:.2} %", self.completion_rate * 100.0),
            ),
            (
                "average_latency_ms",
                format!("{:.2}", self.average_latency_ms),
            ),
            ("p50_latency_ms", format!("{:.2}", self.p50_latency_ms)),
            ("p95_latency_ms", format!("{:.2}", self.p95_latency_ms)),
            ("p99_latency_ms", format!("{:.2}", self.p99_latency_ms)),
            ("invalid", self.invalid.to_string()),
            ("retried", self.retried.to_string()),
            ("reconnects", self.reconnects.to_string()),
            ("already_done", self.already_done.to_string()),
            ("elapsed_ms", format!("{:.0}", self.elapsed_ms)),
        ];
        if let Some(crm) = &self.crm {
            rows.push(("crm_delivered", crm.delivered.to_string()));
            rows.push(("crm_pending", crm.pending.to_string()));
            rows.push(("crm_dead", crm.dead.to_string()));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v:>12}\n"))
            .collect()
    }
}
