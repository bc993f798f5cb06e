//! `gcx report merge DIR...`: merges the summaries of a sharded run (histograms added
//! exactly) and writes one summary, JUnit file and HTML report; exits 0 or 1 by the
//! thresholds, 2 on error.

use std::path::PathBuf;
use std::process::ExitCode;

use super::GlobalArgs;
use crate::config::Config;
use crate::desk::merge::merge;
use crate::desk::report::{read_summary, table, write_all};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Merge the outputs of `gcx simulate --shard i/n` runs into one report.
    Merge {
        /// Output folders of the shards (or their summary.json files).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged report (default: gcx-sim-merged-<YYYYMMDD_HHMMSS>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = (global, config);
    let Command::Merge { dirs, out } = args.command;
    let mut parts = Vec::with_capacity(dirs.len());
    for d in &dirs {
        let path = if d.is_dir() {
            d.join("summary.json")
        } else {
            d.clone()
        };
        parts.push(read_summary(&path).map_err(anyhow::Error::msg)?);
    }
    let merged = merge(&parts)?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "gcx-sim-merged-{}",
            chrono::Local::now().format("%Y%m%d_%H%M%S")
        ))
    });
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let files = write_all(&out, &merged)?;
    print!("{}", table::render(&merged));
    println!(
        "\n  merged {} summaries into {}/",
        parts.len(),
        out.display()
    );
    println!("    {}", files.html.display());
    println!("    {}", files.summary.display());
    println!("    {}", files.junit.display());
    Ok(if merged.metrics.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
