//! `gcx demo`: the whole product against an embedded sandbox (see [`crate::demo`]), with a
//! progress display on a terminal and one summary at the end. Exit code 0 when every
//! check held, 1 when one did not, 2 when the demo could not run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{GlobalArgs, OutputFormat};
use crate::config::Config;
use crate::demo::{DemoOptions, DemoProgress, Phase};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A small run for smoke tests: 300 triggers, 40 agents for 3 s.
    #[arg(long)]
    pub quick: bool,
    /// Triggers to generate (a few of them invalid on purpose). Default 5000 (300 with
    /// --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub triggers: Option<u64>,
    /// Simulated agents. Default 300 (40 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub agents: Option<u64>,
    /// How long the simulation's interactions arrive ("20s"). Default 20s (3s with
    /// --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Seeds the triggers, the simulation and the sandbox's faults: same seed, same run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the simulation writes report.html and its other outputs (default: a
    /// `simulation` folder in the data folder). The data folder itself is --data-dir
    /// (default: a new temporary folder, kept so the report stays readable).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// No progress display, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    // The demo brings its own sandbox, store and CRM: only the data folder is taken from
    // outside (--data-dir), never the configured store, so it cannot touch real state.
    let _ = config;
    let data_dir = match &global.data_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "gcx-demo-{}-{}",
            chrono::Local::now().format("%Y%m%d-%H%M%S"),
            std::process::id()
        )),
    };
    let mut opts = if args.quick {
        DemoOptions::quick(data_dir)
    } else {
        DemoOptions::full(data_dir)
    };
    if let Some(n) = args.triggers {
        opts.triggers = usize::try_from(n)?;
    }
    if let Some(n) = args.agents {
        opts.agents = n;
    }
    if let Some(d) = args.duration {
        anyhow::ensure!(!d.is_zero(), "--duration must be longer than 0");
        opts.duration = d;
    }
    if let Some(seed) = args.seed {
        opts.seed = seed;
    }
    if let Some(out) = &args.out {
        opts.out_dir = out.clone();
    }

    let progress = Arc::new(DemoProgress::default());
    let display = if !args.no_progress && std::io::stderr().is_terminal() {
        Some(tokio::spawn(show_progress(progress.clone(), opts.duration)))
    } else {
        None
    };
    let result = crate::demo::run(&opts, &progress).await;
    if let Some(task) = display {
        task.abort();
        let _ = task.await;
    }
    let summary = result?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        OutputFormat::Table => print!("{}", summary.to_text()),
    }
    Ok(if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One bar that follows the demo's phases, redrawn ten times a second on stderr.
async fn show_progress(progress: Arc<DemoProgress>, sim_duration: Duration) {
    let bar = ProgressBar::new(0);
    let style = |template: &str| {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    };
    let bar_style = style("{prefix:<12} {bar:32} {pos}/{len} {msg}");
    let sim_style = style("{prefix:<12} {bar:32} {msg}");
    let spinner_style = style("{prefix:<12} {spinner} {msg}");
    bar.set_style(spinner_style.clone());
    let mut shown = None;
    let _clear = ClearOnDrop(bar.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let phase = progress.phase();
        let first = shown != Some(phase);
        shown = Some(phase);
        match phase {
            Phase::Starting => {
                bar.set_prefix("starting");
                bar.set_message("sandbox, store, delivery worker, dispatcher");
            }
            Phase::Dispatching => {
                if first {
                    bar.set_style(bar_style.clone());
                    bar.set_prefix("triggers");
                    bar.set_length(progress.triggers_total.load(Relaxed));
                }
                bar.set_position(progress.triggers_done.load(Relaxed));
                bar.set_message(format!("{:.0}/s", bar.per_sec()));
            }
            Phase::Simulating => {
                let total_ms = sim_duration.as_millis() as u64;
                if first {
                    bar.set_style(sim_style.clone());
                    bar.set_prefix("simulation");
                    bar.set_length(total_ms);
                }
                let s = progress.simulation.snapshot();
                bar.set_position(s.elapsed_ms.min(total_ms));
                bar.set_message(format!(
                    "{:.0}/{:.0} s · {} events sent, {} accepted, {} rejected, p95 {:.1} ms",
                    s.elapsed_ms as f64 / 1000.0,
                    total_ms as f64 / 1000.0,
                    s.sent,
                    s.accepted,
                    s.rejected,
                    s.p95_us as f64 / 1000.0
                ));
            }
            Phase::Draining | Phase::Verifying | Phase::Done => {
                if first {
                    bar.set_style(spinner_style.clone());
                    bar.set_prefix("finishing");
                }
                bar.set_message(if phase == Phase::Draining {
                    "waiting for the CRM outbox to drain"
                } else {
                    "verifying the audit log"
                });
                bar.tick();
            }
        }
    }
}

/// Clears the progress line when the display task is aborted, so the summary starts on a
/// clean line.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
