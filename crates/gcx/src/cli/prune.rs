//! `gcx prune`: delete finished triggers and delivered webhooks older than the retention
//! (`store.keep_finished`, or `--keep`), once; `gcx serve` does the same every hour.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::GlobalArgs;
use super::outbox::Output;
use crate::config::{Config, keep_finished_too_short};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep what ended less than this long ago (e.g. 30d; at least 24h). Default:
    /// store.keep_finished.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keep: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = global; // --data-dir and --database-url are already in `config`.
    let keep = args.keep.unwrap_or(config.store.keep_finished);
    if keep.is_zero() {
        bail!(
            "nothing to prune by: store.keep_finished is 0 (keep forever); set it, or pass \
             --keep (e.g. --keep 30d)"
        );
    }
    if let Some(why) = keep_finished_too_short(keep) {
        bail!("--keep {why}");
    }
    let store = Store::open(&config.store)
        .await
        .context("cannot open the store")?;
    let pruned = store.prune_older_than(keep).await;
    store.close().await.context("cannot close the store")?;
    let pruned = pruned.context("pruning failed")?;
    let keep = humantime::format_duration(keep);
    if args.output == Output::Json {
        println!(
            "{}",
            json!({"keep": keep.to_string(), "triggers": pruned.triggers, "webhooks": pruned.webhooks})
        );
    } else {
        println!(
            "pruned {} finished trigger(s) and {} delivered webhook(s) that ended more than \
             {keep} ago; unfinished triggers, pending webhooks, dead letters and the audit log \
             are kept",
            pruned.triggers, pruned.webhooks
        );
    }
    Ok(ExitCode::SUCCESS)
}
