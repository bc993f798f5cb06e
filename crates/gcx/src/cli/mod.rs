//! The command line: `clap` derive, one file per subcommand. Parsing happens here; each
//! subcommand's `run` turns its arguments and the effective [`Config`] into work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LoadedConfig;

mod audit;
mod bench;
mod completions;
mod config_cmd;
mod demo;
mod man;
mod outbox;
mod prune;
mod report;
mod sandbox;
mod serve;
mod simulate;
mod trigger;
mod validate;
mod watch;

/// How a subcommand prints its summary (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// gcx: Genesys Cloud Agent Assist trigger service and agent desktop event simulator.
#[derive(Debug, Parser)]
#[command(name = "gcx", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes. They are the top layer of the configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// A TOML configuration file (see config/gcx.default.toml for every key).
    #[arg(long, global = true, env = "GCX_CONFIG")]
    pub config: Option<PathBuf>,
    /// A Genesys Cloud CLI profile from ~/.gc/config.toml (`DEFAULT` when the file exists).
    #[arg(long, global = true, env = "GCX_PROFILE")]
    pub profile: Option<String>,
    /// Point every endpoint (login, API, assist stream) at one base URL, e.g. a sandbox.
    #[arg(long, global = true)]
    pub base_url: Option<String>,
    /// Region name (us-east-1, us_east_1) or domain (mypurecloud.com).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Folder for the SQLite store, audit key and other local state.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…) instead of the embedded SQLite store.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
    /// Log filter (tracing syntax: info, gcx=debug).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

impl GlobalArgs {
    /// The flag values as the configuration loader takes them.
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            config_path: self.config.clone(),
            profile: self.profile.clone(),
            base_url: self.base_url.clone(),
            region: self.region.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the local emulator of everything gcx talks to.
    // Boxed: the sandbox's flags (every fault) make it far larger than the others.
    Sandbox(Box<sandbox::Args>),
    /// Show the effective configuration.
    Config(config_cmd::Args),
    /// Validate trigger files or scenario files offline.
    Validate(validate::Args),
    /// Dispatch triggers from a file or stdin.
    Trigger(trigger::Args),
    /// Run the trigger service over HTTP.
    Serve(serve::Args),
    /// Simulate agent desktops and inject their events.
    Simulate(simulate::Args),
    /// Watch users' routing status, presence and calls through the Notifications API.
    Watch(watch::Args),
    /// Verify, report on and export the audit log.
    Audit(audit::Args),
    /// Inspect and replay the webhook outbox.
    Outbox(outbox::Args),
    /// Delete finished triggers and delivered webhooks older than store.keep_finished.
    Prune(prune::Args),
    /// Work with simulation reports.
    Report(report::Args),
    /// Run the whole product against an embedded sandbox.
    Demo(demo::Args),
    /// Run every benchmark and print one table.
    Bench(bench::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the gcx(1) man page, or write one page per subcommand with --out-dir.
    Man(man::Args),
}

/// Parses the command line, runs the subcommand, and maps the outcome to an exit code
/// (2 for an error; subcommands choose 0/1 themselves).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Completions and man pages depend on the clap definitions only: a broken
    // configuration must not stop them.
    let command = match cli.command {
        Command::Completions(a) => return completions::run(a),
        Command::Man(a) => return man::run(a),
        other => other,
    };
    let global = cli.global;
    let mut loaded = crate::config::load(&global.overrides())?;
    // The demo and the benchmarks draw their own progress and summary: unless the user
    // chose a log level, only warnings interleave with them.
    if matches!(command, Command::Demo(_) | Command::Bench(_))
        && *loaded.source("log.level") == crate::config::Source::Default
    {
        loaded.config.log.level = "warn".into();
    }
    init_logging(&loaded)?;
    let config = loaded.config.clone();
    match command {
        Command::Sandbox(a) => sandbox::run(*a, &global, config).await,
        Command::Config(a) => config_cmd::run(a, &global, loaded).await,
        Command::Validate(a) => validate::run(a, &global, config).await,
        Command::Trigger(a) => trigger::run(a, &global, config).await,
        Command::Serve(a) => serve::run(a, &global, config).await,
        Command::Simulate(a) => simulate::run(a, &global, config).await,
        Command::Watch(a) => watch::run(a, &global, config).await,
        Command::Audit(a) => audit::run(a, &global, config).await,
        Command::Outbox(a) => outbox::run(a, &global, config).await,
        Command::Prune(a) => prune::run(a, &global, config).await,
        Command::Report(a) => report::run(a, &global, config).await,
        Command::Demo(a) => demo::run(a, &global, config).await,
        Command::Bench(a) => bench::run(a, &global, config).await,
        // Answered above, before the configuration is read.
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    }
}

/// Starts `tracing` on stderr: human-readable by default, one JSON object per line with
/// `log.format = "json"`, filtered by `log.level`. Then logs what loading noticed.
fn init_logging(loaded: &LoadedConfig) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;

    let log = &loaded.config.log;
    // `config::load` has already checked the filter, so this names the setting only if
    // that check and this one ever disagree.
    let filter = EnvFilter::try_new(&log.level).map_err(|e| {
        anyhow::anyhow!(
            "log.level {:?} (from {}): {e}",
            log.level,
            loaded.source("log.level")
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already set (tests running `run` twice);
    // the first one keeps working, so that is not an error.
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}
