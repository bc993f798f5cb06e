//! `gcx audit`: verify the hash chain and signed checkpoints, report metrics, export the
//! records, print the latest checkpoint. All open the store read-only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};

use super::GlobalArgs;
use crate::audit::keys::{PUBLIC_KEY_FILE, read_public_key};
use crate::audit::{
    self, ActionMetrics, AuditMetrics, Checkpoint, ExportOptions, TimeRange, VerifyOptions,
};
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the signed checkpoints. Exit 0 when intact, 1 naming the
    /// first bad record and why.
    Verify(VerifyArgs),
    /// The seed's metrics plus latency percentiles, overall and by action type.
    Report(ReportArgs),
    /// Stream the records, with their hashes, to stdout.
    Export(ExportArgs),
    /// Print the latest signed checkpoint as JSON; keep it elsewhere and pass it to
    /// `verify --checkpoint` to detect a truncation that also removed checkpoints.
    Checkpoint,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Public key file(s) trusted to sign checkpoints (PEM or 64 hex characters).
    /// Default: audit-signing.pub in the data folder.
    #[arg(long = "public-key", value_name = "FILE")]
    public_keys: Vec<PathBuf>,
    /// Fail unless the log holds at least this many records (detects a cut-off tail).
    #[arg(long, value_name = "SEQ")]
    expect_at_least: Option<u64>,
    /// A checkpoint saved with `gcx audit checkpoint`; the log must still contain it.
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TextOrJson {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    format: TableOrJson,
    /// Only triggers that ended at or after this time: RFC 3339, a date (2025-01-31), or
    /// a duration ago (90m, 24h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only triggers that ended before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TableOrJson {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Start at this seq.
    #[arg(long, value_name = "SEQ")]
    from_seq: Option<u64>,
    /// Only records written at or after this time (same forms as report --since).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records written before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = global;
    let store = Store::open_read_only(&config.store).await?;
    let outcome = match args.command {
        AuditCommand::Verify(a) => verify(&store, &config, a).await,
        AuditCommand::Report(a) => report(&store, a).await,
        AuditCommand::Export(a) => export(&store, a).await,
        AuditCommand::Checkpoint => checkpoint(&store).await,
    };
    store.close().await?;
    outcome
}

async fn verify(store: &Store, config: &Config, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key_files = if args.public_keys.is_empty() {
        let default = config.store.data_dir.join(PUBLIC_KEY_FILE);
        if !default.exists() {
            anyhow::bail!(
                "no public key to check checkpoints with: {} does not exist; pass \
                 --public-key FILE (the audit-signing.pub of the data folder that wrote the log)",
                default.display()
            );
        }
        vec![default]
    } else {
        args.public_keys
    };
    let mut options = VerifyOptions::default();
    for file in &key_files {
        options.public_keys.push(read_public_key(file)?);
    }
    for file in &args.checkpoints {
        options
            .external_checkpoints
            .push(Checkpoint::read_file(file)?);
    }
    options.expect_at_least = args.expect_at_least;
    let report = audit::verify(store, &options).await?;
    match args.format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        TextOrJson::Text => match &report.problem {
            None => {
                println!(
                    "audit log intact: {} records (last seq {}), {} checkpoints verified",
                    report.records, report.last_seq, report.checkpoints_verified
                );
                if report.unsigned_tail > 0 {
                    println!(
                        "note: the last {} records are chained but not yet covered by a signed \
                         checkpoint (one is written every store.audit_checkpoint_every records \
                         and at shutdown)",
                        report.unsigned_tail
                    );
                }
            }
            Some(problem) => {
                println!("audit log TAMPERED at {problem}");
                println!(
                    "({} records before it verified; {} checkpoints held)",
                    report.records, report.checkpoints_verified
                );
            }
        },
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn report(store: &Store, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let range = TimeRange {
        since: args
            .since
            .as_deref()
            .map(|t| parse_time(t, now).context("--since"))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| parse_time(t, now).context("--until"))
            .transpose()?,
    };
    let metrics = audit::report(store, range).await?;
    match args.format {
        TableOrJson::Json => println!("{}", serde_json::to_string_pretty(&metrics)?),
        TableOrJson::Table => print!("{}", table(&metrics)),
    }
    Ok(ExitCode::SUCCESS)
}

fn table(m: &AuditMetrics) -> String {
    let mut out = format!(
        "{:<28} {:>8} {:>10} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "action type",
        "total",
        "successful",
        "failed",
        "completion",
        "avg ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms"
    );
    let mut row = |name: &str, a: &ActionMetrics| {
        out.push_str(&format!(
            "{:<28} {:>8} {:>10} {:>7} {:>9.1}% {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            name,
            a.total_triggers,
            a.successful,
            a.failed,
            a.completion_rate * 100.0,
            a.average_latency_ms,
            a.p50_latency_ms,
            a.p95_latency_ms,
            a.p99_latency_ms,
            a.max_latency_ms
        ));
    };
    for (action, a) in &m.by_action_type {
        row(action, a);
    }
    row("(all)", &m.overall);
    out
}

async fn export(store: &Store, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportFormat::Jsonl = args.format;
    let now = Utc::now();
    let options = ExportOptions {
        from_seq: args.from_seq,
        range: TimeRange {
            since: args
                .since
                .as_deref()
                .map(|t| parse_time(t, now))
                .transpose()?,
            until: args
                .until
                .as_deref()
                .map(|t| parse_time(t, now))
                .transpose()?,
        },
        page_size: 0,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout());
    match audit::export(store, &options, &mut out).await {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`| head`) is a reader that has seen enough.
        Err(audit::AuditError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

async fn checkpoint(store: &Store) -> anyhow::Result<ExitCode> {
    match store.audit_checkpoints().await?.pop() {
        Some(cp) => {
            println!("{}", serde_json::to_string_pretty(&cp)?);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "{} holds no signed checkpoint yet (one is written every \
             store.audit_checkpoint_every records and when gcx shuts down)",
            store.location()
        ),
    }
}

/// RFC 3339 (`2025-01-31T12:00:00Z`), a date (`2025-01-31`, midnight UTC) or a duration
/// ago (`90m`, `24h`, `7d`).
fn parse_time(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let midnight = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0));
    if let Some(t) = midnight {
        return Ok(t.and_utc());
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = chrono::Duration::from_std(ago).context("duration too large")?;
        return Ok(now - ago);
    }
    anyhow::bail!(
        "{text:?} is not a time: use RFC 3339 (2025-01-31T12:00:00Z), a date (2025-01-31) or \
         a duration ago (90m, 24h, 7d)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms() {
        let now = DateTime::parse_from_rfc3339("2025-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("2025-01-31T12:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2025-01-31T11:00:00+00:00"
        );
        assert_eq!(
            parse_time("2025-01-31", now).unwrap().to_rfc3339(),
            "2025-01-31T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("1d", now).unwrap().to_rfc3339(),
            "2025-01-31T00:00:00+00:00"
        );
        let err = parse_time("yesterday", now).unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
