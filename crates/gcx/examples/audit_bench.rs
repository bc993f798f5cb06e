//! Durable audit appends per second through group commit.
//!
//! `cargo run --release -p gcx --example audit_bench -- --backend sqlite --records 200000 --writers 1000`
//!
//! W writer tasks each commit one audit event per `Store::commit` (or `--per-commit`
//! events) and wait until it is durable (SQLite: WAL + synchronous=FULL; PostgreSQL:
//! synchronous_commit on). The store groups concurrent commits into transactions. After
//! the timed run the chain is verified (not timed). SQLite writes to a temporary folder
//! (`--data-dir` to choose, e.g. a real disk rather than tmpfs); PostgreSQL to a fresh
//! schema of `--database-url`, dropped afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use gcx::audit::{self, AuditEvent, VerifyOptions};
use gcx::config::{Secret, StoreConfig};
use gcx::store::{Store, WriteBatch};
use sqlx::Connection;

#[derive(Debug, Parser)]
struct Args {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Audit records to append in total.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 1000)]
    writers: usize,
    /// Events per commit.
    #[arg(long, default_value_t = 1)]
    per_commit: usize,
    /// group_commit_max_rows.
    #[arg(long, default_value_t = 1000)]
    max_rows: usize,
    /// group_commit_interval in milliseconds.
    #[arg(long, default_value_t = 2)]
    interval_ms: u64,
    /// Folder for the SQLite run (default: a temporary folder).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// Skip verifying the chain after the run.
    #[arg(long)]
    skip_verify: bool,
}

fn event(n: usize) -> AuditEvent {
    let now = chrono::Utc::now();
    AuditEvent {
        // Not random: the benchmark times the store, not the random number generator.
        correlation_id: format!("00000000-0000-4000-8000-{n:012}"),
        action_type: "knowledge_search".into(),
        status: ["sent", "completed"][n % 2].into(),
        started_at: now,
        ended_at: now,
        latency_ms: 12.5,
        queue_wait_ms: Some(0.2),
        send_to_ack_ms: Some(3.1),
        send_to_result_ms: Some(12.5),
        agent_id: "agent-0001".into(),
        session_id: "session-0001".into(),
        interaction_type: "voice".into(),
        catalogue_version: "2025.1".into(),
        parameters_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            .into(),
        parameters: None,
        outcome: "success".into(),
        error: None,
        retries: 0,
        instance: "bench:1".into(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("data"));
    let mut config = StoreConfig {
        data_dir,
        database_url: None,
        group_commit_max_rows: args.max_rows,
        group_commit_interval: Duration::from_millis(args.interval_ms),
        audit_store_parameters: false,
        audit_checkpoint_every: 1000,
    };
    let schema = format!("gcx_bench_{}", uuid::Uuid::new_v4().simple());
    match args.backend.as_str() {
        "sqlite" => {}
        "postgres" => {
            let mut conn = sqlx::PgConnection::connect(&args.database_url).await?;
            sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await?;
            let sep = if args.database_url.contains('?') {
                '&'
            } else {
                '?'
            };
            config.database_url = Some(Secret::new(format!(
                "{}{sep}options=-c%20search_path%3D{schema}",
                args.database_url
            )));
        }
        other => anyhow::bail!("--backend {other:?}: use sqlite or postgres"),
    }
    let store = Store::open(&config).await?;
    let commits = args.records / args.per_commit;
    let per_writer = commits / args.writers;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.writers)
        .map(|_| {
            let store = store.clone();
            let next = next.clone();
            let per_commit = args.per_commit;
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let batch = WriteBatch {
                        audit: (0..per_commit).map(|i| event(n * per_commit + i)).collect(),
                        ..WriteBatch::default()
                    };
                    store.commit(batch).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let appended = per_writer * args.writers * args.per_commit;
    let stats = store.commit_stats();
    store.close().await?;
    println!(
        "backend={} records={} writers={} per_commit={} elapsed={:.3}s appends/s={:.0} \
         transactions={} records/transaction={:.1}",
        args.backend,
        appended,
        args.writers,
        args.per_commit,
        elapsed.as_secs_f64(),
        appended as f64 / elapsed.as_secs_f64(),
        stats.groups,
        appended as f64 / stats.groups.max(1) as f64
    );
    if args.skip_verify {
        return Ok(());
    }
    let reader = Store::open_read_only(&config).await?;
    let key = audit::keys::read_public_key(&config.data_dir.join(audit::keys::PUBLIC_KEY_FILE))?;
    let verify_started = Instant::now();
    let report = audit::verify(
        &reader,
        &VerifyOptions {
            public_keys: vec![key],
            ..VerifyOptions::default()
        },
    )
    .await?;
    reader.close().await?;
    println!(
        "verify: intact={} records={} checkpoints={} in {:.3}s",
        report.is_intact(),
        report.records,
        report.checkpoints_verified,
        verify_started.elapsed().as_secs_f64()
    );
    if args.backend == "postgres" {
        let mut conn = sqlx::PgConnection::connect(&args.database_url).await?;
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
    }
    anyhow::ensure!(
        report.is_intact(),
        "the chain does not verify: {:?}",
        report.problem
    );
    Ok(())
}
