//! `gcx outbox`: inspect the webhook outbox, replay dead letters, re-enable an endpoint
//! after a 410, and deliver what is pending.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::GlobalArgs;
use crate::config::Config;
use crate::delivery::{self, DeliveryWorker};
use crate::store::{OutboxMessage, OutboxStatus, ReplayFilter, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Pending,
    Delivered,
    Dead,
}

impl From<StatusArg> for OutboxStatus {
    fn from(s: StatusArg) -> OutboxStatus {
        match s {
            StatusArg::Pending => OutboxStatus::Pending,
            StatusArg::Delivered => OutboxStatus::Delivered,
            StatusArg::Dead => OutboxStatus::Dead,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Counts of pending, delivered and dead messages, and each endpoint's state.
    Status,
    /// Outbox messages.
    List {
        /// Only messages with this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Dead letters (a final 4xx, the retry schedule exhausted, or a dead predecessor).
    Dead {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put dead letters back to pending, to be delivered from the first attempt again
    /// (all of them unless --id or --since narrows it).
    Replay {
        /// The outbox id (the `ID` column of `gcx outbox dead`).
        #[arg(long, conflicts_with = "since")]
        id: Option<i64>,
        /// Dead letters since this time: RFC 3339 (2024-05-01T12:00:00Z) or an age (30m, 2h).
        #[arg(long, value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
    },
    /// Re-enable an endpoint that a 410 Gone disabled.
    EnableEndpoint {
        /// `crm` or `qa`.
        #[arg(value_parser = [delivery::CRM, delivery::QA])]
        name: String,
    },
    /// Deliver pending messages now, until none is left or the timeout passes
    /// (exit 1 if some are still pending).
    Deliver {
        /// How long to keep trying (e.g. 30s, 5m).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = global; // --data-dir and --database-url are already in `config`.
    let store = Store::open(&config.store)
        .await
        .context("cannot open the store")?;
    let out = args.output;
    let code = match args.command {
        Command::Status => status(&store, &config, out).await?,
        Command::List { status, limit } => list(&store, status.map(Into::into), limit, out).await?,
        Command::Dead { limit } => list(&store, Some(OutboxStatus::Dead), limit, out).await?,
        Command::Replay { id, since } => {
            let n = store.outbox_replay(&ReplayFilter { id, since }).await?;
            match out {
                Output::Json => println!("{}", json!({"replayed": n})),
                Output::Table => println!("replayed {n} dead letter(s); they are pending again"),
            }
            ExitCode::SUCCESS
        }
        Command::EnableEndpoint { name } => {
            store.set_endpoint_disabled(&name, false, None).await?;
            match out {
                Output::Json => println!("{}", json!({"endpoint": name, "disabled": false})),
                Output::Table => println!(
                    "endpoint {name} enabled; its pending messages go out with the next delivery round"
                ),
            }
            ExitCode::SUCCESS
        }
        Command::Deliver { timeout } => deliver(&store, &config, timeout, out).await?,
    };
    store.close().await.context("cannot close the store")?;
    Ok(code)
}

async fn status(store: &Store, config: &Config, out: Output) -> anyhow::Result<ExitCode> {
    let counts = store.outbox_counts().await?;
    let mut endpoints = Vec::new();
    for (name, target) in [(delivery::CRM, &config.crm), (delivery::QA, &config.qa)] {
        let state = store.endpoint_state(name).await?;
        endpoints.push((name, target.url.is_some(), state));
    }
    match out {
        Output::Json => {
            let endpoints: serde_json::Map<_, _> = endpoints
                .iter()
                .map(|(name, configured, state)| {
                    let v = json!({"configured": configured, "disabled": state.disabled, "reason": state.reason});
                    ((*name).to_string(), v)
                })
                .collect();
            println!("{}", json!({"counts": counts, "endpoints": endpoints}));
        }
        Output::Table => {
            println!(
                "{}",
                table(
                    &["PENDING", "DELIVERED", "DEAD"],
                    &[vec![
                        counts.pending.to_string(),
                        counts.delivered.to_string(),
                        counts.dead.to_string(),
                    ]],
                )
            );
            let rows: Vec<Vec<String>> = endpoints
                .iter()
                .map(|(name, configured, state)| {
                    vec![
                        (*name).to_string(),
                        if *configured { "yes" } else { "no" }.to_string(),
                        if state.disabled {
                            "disabled"
                        } else {
                            "enabled"
                        }
                        .to_string(),
                        state.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["ENDPOINT", "CONFIGURED", "STATE", "REASON"], &rows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(
    store: &Store,
    status: Option<OutboxStatus>,
    limit: usize,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let rows = store.outbox_list(status, limit).await?;
    match out {
        Output::Json => println!("{}", serde_json::to_string(&rows)?),
        Output::Table => println!("{}", message_table(&rows)),
    }
    Ok(ExitCode::SUCCESS)
}

fn message_table(rows: &[OutboxMessage]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.message_id.clone(),
                m.endpoint.clone(),
                m.ordering_key.clone(),
                format!("{:?}", m.status).to_lowercase(),
                m.attempts.to_string(),
                m.next_attempt_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.last_status.map(|s| s.to_string()).unwrap_or_default(),
                m.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "MESSAGE",
            "ENDPOINT",
            "KEY",
            "STATUS",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "LAST STATUS",
            "LAST ERROR",
        ],
        &cells,
    )
}

async fn deliver(
    store: &Store,
    config: &Config,
    timeout: Duration,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let handle = DeliveryWorker::spawn(store.clone(), config)?;
    if handle.endpoints().is_empty() {
        eprintln!(
            "note: no endpoint is configured (crm.url / CRM_WEBHOOK_URL, qa.url / QA_PLATFORM_ENDPOINT); nothing can be delivered"
        );
    }
    let report = handle.drain(timeout).await?;
    let counters = handle.counters();
    handle.shutdown().await;
    match out {
        Output::Json => println!("{}", json!({"report": report, "worker": counters})),
        Output::Table => println!(
            "{}",
            table(
                &[
                    "DELIVERED NOW",
                    "RETRIED",
                    "DEAD-LETTERED",
                    "PENDING",
                    "DEAD (ALL)"
                ],
                &[vec![
                    counters.delivered.to_string(),
                    counters.retried.to_string(),
                    counters.dead_lettered.to_string(),
                    report.pending.to_string(),
                    report.dead.to_string(),
                ]],
            )
        ),
    }
    Ok(if report.pending == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--since`: an RFC 3339 time, or an age such as `30m` meaning that long ago.
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(s).map_err(|_| {
        format!("{s:?} is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor an age (30m, 2h)")
    })?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| Utc::now().checked_sub_signed(age))
        .ok_or_else(|| format!("{s:?} reaches too far back"))
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut lines = vec![line(headers.to_vec())];
    for row in rows {
        lines.push(line(row.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_an_age() {
        assert_eq!(
            parse_since("2024-05-01T12:00:00Z").unwrap().to_rfc3339(),
            "2024-05-01T12:00:00+00:00"
        );
        let ago = Utc::now() - parse_since("30m").unwrap();
        assert!((29..=31).contains(&ago.num_minutes()), "{ago}");
        let err = parse_since("yesterday").unwrap_err();
        assert!(
            err.contains("RFC 3339") && err.contains("yesterday"),
            "{err}"
        );
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[vec!["xyz".into(), "1".into()], vec!["".into(), "".into()]],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}

#[cfg(test)]
mod parse_tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command as Top};

    fn parse(args: &[&str]) -> Result<super::Args, clap::Error> {
        let mut argv = vec!["gcx", "outbox"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Top::Outbox(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn subcommands_parse() {
        let a = parse(&["replay", "--id", "7", "--output", "json"]).unwrap();
        assert!(matches!(
            a.command,
            super::Command::Replay {
                id: Some(7),
                since: None
            }
        ));
        assert_eq!(a.output, super::Output::Json);
        let a = parse(&["list", "--status", "dead", "--limit", "3"]).unwrap();
        assert!(matches!(
            a.command,
            super::Command::List {
                status: Some(super::StatusArg::Dead),
                limit: 3
            }
        ));
        assert!(parse(&["enable-endpoint", "crm"]).is_ok());
        assert!(parse(&["deliver", "--timeout", "5s"]).is_ok());
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(parse(&["enable-endpoint", "erp"]).is_err());
        assert!(parse(&["replay", "--id", "1", "--since", "1h"]).is_err());
        assert!(parse(&["list", "--status", "lost"]).is_err());
    }
}
