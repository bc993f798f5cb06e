//! Durable audit appends per second through group commit. W writer tasks each commit one
//! audit event per `Store::commit` and wait until it is durable (SQLite: WAL +
//! synchronous=FULL; PostgreSQL: synchronous_commit on); the store groups concurrent
//! commits into transactions. After the timed part the chain is verified (not timed), so
//! a fast but broken chain cannot pass. SQLite writes to a temporary folder, PostgreSQL to
//! a fresh schema that is dropped afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection as _;

use super::{BenchError, TempDir};
use crate::audit::keys::{PUBLIC_KEY_FILE, read_public_key};
use crate::audit::{AuditEvent, VerifyOptions};
use crate::config::{Secret, StoreConfig};
use crate::store::{Store, WriteBatch};

/// Concurrent writers: as many triggers as a busy service has in its pipeline at once.
pub const WRITERS: usize = 1000;

/// Which database.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A PostgreSQL URL; the benchmark makes its own schema there and drops it.
    Postgres(String),
}

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditMeasurement {
    pub per_second: f64,
    pub records: u64,
    /// How well group commit grouped.
    pub records_per_transaction: f64,
}

/// Whether PostgreSQL at `url` answers; the error says why not (without the URL, which
/// may hold a password).
pub async fn reachable(url: &str) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("PostgreSQL unreachable: {e}")),
        Err(_) => Err("PostgreSQL unreachable: no answer within 3 s".into()),
    }
}

/// Appends `records` audit records from `writers` concurrent writers, then verifies the
/// chain.
pub async fn appends(
    backend: Backend,
    records: usize,
    writers: usize,
) -> Result<AuditMeasurement, BenchError> {
    let dir = TempDir::new()?;
    let mut config = StoreConfig {
        data_dir: dir.path().join("data"),
        ..StoreConfig::default()
    };
    let schema = match &backend {
        Backend::Sqlite => None,
        Backend::Postgres(url) => {
            let schema = format!("gcx_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await?;
            config.database_url = Some(Secret::new(with_search_path(url, &schema)));
            Some((url.clone(), schema))
        }
    };
    let result = append_and_verify(&config, records, writers.max(1)).await;
    if let Some((url, schema)) = schema {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
    }
    result
}

/// `url` with `search_path` set to `schema` for every connection of the pool.
pub(crate) fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

async fn append_and_verify(
    config: &StoreConfig,
    records: usize,
    writers: usize,
) -> Result<AuditMeasurement, BenchError> {
    let store = Store::open(config).await?;
    let per_writer = records.div_ceil(writers);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            let next = next.clone();
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= records {
                        break;
                    }
                    let batch = WriteBatch {
                        audit: vec![event(n)],
                        ..WriteBatch::default()
                    };
                    store.commit(batch).await?;
                }
                Ok::<(), crate::store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Incomplete(format!("a writer task failed: {e}")))??;
    }
    let elapsed = started.elapsed();
    let groups = store.commit_stats().groups;
    let key = read_public_key(&config.data_dir.join(PUBLIC_KEY_FILE))?;
    let report = crate::audit::verify(
        &store,
        &VerifyOptions {
            public_keys: vec![key],
            ..VerifyOptions::default()
        },
    )
    .await?;
    store.close().await?;
    if !report.is_intact() || report.records != records as u64 {
        return Err(BenchError::Incomplete(format!(
            "the chain holds {} of {records} records{}",
            report.records,
            report
                .problem
                .map(|p| format!(" and does not verify: {p}"))
                .unwrap_or_default()
        )));
    }
    Ok(AuditMeasurement {
        per_second: records as f64 / elapsed.as_secs_f64().max(1e-9),
        records: records as u64,
        records_per_transaction: records as f64 / groups.max(1) as f64,
    })
}

fn event(n: usize) -> AuditEvent {
    let now = chrono::Utc::now();
    AuditEvent {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        action_type: "knowledge_search".into(),
        status: if n.is_multiple_of(2) {
            "sent"
        } else {
            "completed"
        }
        .into(),
        started_at: now,
        ended_at: now,
        latency_ms: 12.5,
        queue_wait_ms: Some(0.2),
        send_to_ack_ms: Some(3.1),
        send_to_result_ms: Some(12.5),
        agent_id: "a1b2c3d4-e5f6-7890-abcd-ef1234567890".into(),
        session_id: "session-0001".into(),
        interaction_type: "voice".into(),
        catalogue_version: "bench".into(),
        parameters_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            .into(),
        parameters: None,
        outcome: if n.is_multiple_of(2) {
            "pending"
        } else {
            "success"
        }
        .into(),
        error: None,
        retries: 0,
        instance: "bench:1".into(),
    }
}
