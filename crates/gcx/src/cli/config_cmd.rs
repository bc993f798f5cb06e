//! `gcx config show [--format table|json]`: every effective key, its value (secrets
//! `<redacted>`) and the layer it came from, then the endpoints they resolve to.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::GlobalArgs;
use crate::config::{LoadedConfig, endpoints, show};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from.
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub async fn run(
    args: Args,
    global: &GlobalArgs,
    loaded: LoadedConfig,
) -> anyhow::Result<ExitCode> {
    let _ = global;
    let ConfigCommand::Show { format } = args.command;
    let rows = show::entries(&loaded);
    let resolved = endpoints(&loaded.config.genesys);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let endpoints_value = match &resolved {
                Ok(e) => serde_json::to_value(e)?,
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            let doc = serde_json::json!({
                "settings": rows.iter().map(|r| serde_json::json!({
                    "key": r.key,
                    "value": r.value,
                    "source": r.source.to_string(),
                })).collect::<Vec<_>>(),
                "endpoints": endpoints_value,
                "warnings": loaded.warnings,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)
                .context("writing to stdout")?;
        }
        Format::Table => {
            let key_w = rows.iter().map(|r| r.key.len()).max().unwrap_or(3).max(3);
            let values: Vec<String> = rows.iter().map(show::Entry::value_text).collect();
            let value_w = values
                .iter()
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(5)
                .clamp(5, 60);
            writeln!(out, "{:key_w$}  {:value_w$}  SOURCE", "KEY", "VALUE")?;
            for (r, v) in rows.iter().zip(&values) {
                writeln!(out, "{:key_w$}  {:value_w$}  {}", r.key, v, r.source)?;
            }
            writeln!(out)?;
            match &resolved {
                Ok(e) => {
                    writeln!(out, "endpoints:")?;
                    writeln!(out, "  login   {}", e.login_base)?;
                    writeln!(out, "  api     {}", e.api_base)?;
                    writeln!(out, "  stream  {}", e.assist_stream_url)?;
                }
                Err(e) => writeln!(out, "endpoints: not resolved: {e}")?,
            }
            for w in &loaded.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
