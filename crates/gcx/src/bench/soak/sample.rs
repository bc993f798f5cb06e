//! One sample of the service under soak: its process (`/proc`: resident memory, open
//! descriptors, CPU seconds), its store's size on disk, and what its `/metrics` says
//! (outbox backlog, triggers accepted and ended). A figure that cannot be read at that
//! moment (PostgreSQL restarting, a scrape timing out) is left empty, not guessed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use sqlx::Connection as _;

use crate::bench::proc;

/// What a scrape of `/metrics` may take before the sample goes without it.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which part of the run a sample was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Triggers are posted at the set rate, faults on.
    Load,
    /// Posting stopped, the CRM up: the pipeline finishes what it holds.
    Drain,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::Drain => "drain",
        }
    }
}

/// One row of `samples.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub elapsed_s: f64,
    pub phase: Phase,
    pub rss_kib: Option<u64>,
    pub open_fds: Option<u64>,
    /// CPU seconds the service used since it started (user + system).
    pub cpu_seconds: Option<f64>,
    /// SQLite: the database file, its WAL and shared-memory index; PostgreSQL: the soak
    /// schema's tables with their indexes and TOAST.
    pub store_bytes: Option<u64>,
    /// Webhooks not yet delivered (`gcx_outbox_messages{status="pending"}`).
    pub outbox_pending: Option<u64>,
    /// Triggers the service accepted over HTTP (`gcx_serve_triggers_received_total`).
    pub triggers_accepted: Option<u64>,
    /// Triggers that reached a final state (`gcx_triggers_total`, completed, failed,
    /// rejected).
    pub triggers_ended: Option<u64>,
    /// Whether the CRM was answering 503 at that moment.
    pub crm_down: bool,
}

/// The columns of `samples.csv`, in order.
pub const CSV_COLUMNS: [&str; 10] = [
    "elapsed_s",
    "phase",
    "rss_kib",
    "open_fds",
    "cpu_seconds",
    "store_bytes",
    "outbox_pending",
    "triggers_accepted",
    "triggers_ended",
    "crm_down",
];

impl Sample {
    /// The sample as a CSV line (no newline); a missing figure is an empty field.
    pub fn csv_line(&self) -> String {
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map(|v| v.to_string()).unwrap_or_default()
        }
        [
            format!("{:.1}", self.elapsed_s),
            self.phase.as_str().to_owned(),
            opt(self.rss_kib),
            opt(self.open_fds),
            opt(self.cpu_seconds.map(|s| format!("{s:.2}"))),
            opt(self.store_bytes),
            opt(self.outbox_pending),
            opt(self.triggers_accepted),
            opt(self.triggers_ended),
            u8::from(self.crm_down).to_string(),
        ]
        .join(",")
    }
}

/// `samples.csv` whole: the header, then one line per sample.
pub fn csv(samples: &[Sample]) -> String {
    let mut text = CSV_COLUMNS.join(",");
    text.push('\n');
    for s in samples {
        text.push_str(&s.csv_line());
        text.push('\n');
    }
    text
}

/// Where the store's size is read.
#[derive(Debug, Clone)]
pub enum StoreSize {
    /// The SQLite database file; its `-wal` and `-shm` files are counted with it.
    Sqlite(PathBuf),
    /// A PostgreSQL server (URL without the schema option) and the schema to measure.
    Postgres { url: String, schema: String },
}

/// Reads samples of one service process.
pub struct Sampler {
    pid: u32,
    metrics_url: String,
    http: reqwest::Client,
    store: StoreSize,
    /// Kept between samples; dropped after an error (PostgreSQL restarting) and opened
    /// again at the next sample.
    postgres: Option<sqlx::PgConnection>,
}

impl Sampler {
    pub fn new(pid: u32, serve_url: &str, http: reqwest::Client, store: StoreSize) -> Sampler {
        Sampler {
            pid,
            metrics_url: format!("{serve_url}/metrics"),
            http,
            store,
            postgres: None,
        }
    }

    /// Takes one sample now.
    pub async fn sample(&mut self, elapsed_s: f64, phase: Phase, crm_down: bool) -> Sample {
        let metrics = self.scrape().await;
        let figure = |name: &str, labels: &[(&str, &str)]| {
            metrics
                .as_deref()
                .and_then(|text| metric_sum(text, name, labels))
                .map(|v| v as u64)
        };
        let ended = ["completed", "failed", "rejected"]
            .iter()
            .map(|state| figure("gcx_triggers_total", &[("state", state)]).unwrap_or(0))
            .sum();
        Sample {
            elapsed_s,
            phase,
            rss_kib: proc::rss_kib(self.pid),
            open_fds: proc::open_fds(self.pid),
            cpu_seconds: proc::cpu_seconds(self.pid),
            store_bytes: self.store_bytes().await,
            outbox_pending: figure("gcx_outbox_messages", &[("status", "pending")]),
            triggers_accepted: figure(
                "gcx_serve_triggers_received_total",
                &[("outcome", "accepted")],
            ),
            triggers_ended: metrics.is_some().then_some(ended),
            crm_down,
        }
    }

    async fn scrape(&self) -> Option<String> {
        let answer = self
            .http
            .get(&self.metrics_url)
            .timeout(SCRAPE_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.text().await.ok()
    }

    async fn store_bytes(&mut self) -> Option<u64> {
        match &self.store {
            StoreSize::Sqlite(path) => {
                let size = |suffix: &str| {
                    let mut name = path.clone().into_os_string();
                    name.push(suffix);
                    std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len())
                };
                std::fs::metadata(path)
                    .ok()
                    .map(|m| m.len() + size("-wal") + size("-shm"))
            }
            StoreSize::Postgres { url, schema } => {
                if self.postgres.is_none() {
                    self.postgres = sqlx::PgConnection::connect(url).await.ok();
                }
                let conn = self.postgres.as_mut()?;
                let size = sqlx::query_scalar::<_, i64>(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relkind = 'r'",
                )
                .bind(schema.as_str())
                .fetch_one(conn)
                .await;
                match size {
                    Ok(bytes) => u64::try_from(bytes).ok(),
                    Err(_) => {
                        self.postgres = None;
                        None
                    }
                }
            }
        }
    }
}

/// The sum of every series of metric `name` in Prometheus text whose labels include all
/// of `labels`; `None` when there is no such series.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(inner) => match inner.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            // Another metric whose name starts with this one's.
            None if !rest.starts_with(' ') => continue,
            None => ("", rest),
        };
        let matches = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if !matches {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE gcx_triggers_total counter
gcx_triggers_total{state=\"completed\"} 120
gcx_triggers_total{state=\"failed\"} 3
gcx_triggers_total_other 99
gcx_outbox_messages{status=\"pending\"} 42
gcx_outbox_messages{status=\"dead\"} 0
gcx_serve_stream_connected 1
";

    #[test]
    fn series_are_picked_by_name_and_labels() {
        assert_eq!(
            metric_sum(TEXT, "gcx_triggers_total", &[("state", "completed")]),
            Some(120.0)
        );
        assert_eq!(metric_sum(TEXT, "gcx_triggers_total", &[]), Some(123.0));
        assert_eq!(
            metric_sum(TEXT, "gcx_outbox_messages", &[("status", "pending")]),
            Some(42.0)
        );
        assert_eq!(
            metric_sum(TEXT, "gcx_serve_stream_connected", &[]),
            Some(1.0)
        );
        assert_eq!(
            metric_sum(TEXT, "gcx_triggers_total", &[("state", "rejected")]),
            None
        );
    }

    #[test]
    fn csv_has_the_header_and_empty_fields_for_missing_figures() {
        let s = Sample {
            elapsed_s: 5.0,
            phase: Phase::Load,
            rss_kib: Some(20_000),
            open_fds: Some(31),
            cpu_seconds: Some(1.234),
            store_bytes: None,
            outbox_pending: Some(0),
            triggers_accepted: Some(250),
            triggers_ended: Some(240),
            crm_down: true,
        };
        let text = csv(&[s]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(CSV_COLUMNS.join(",").as_str()));
        assert_eq!(lines.next(), Some("5.0,load,20000,31,1.23,,0,250,240,1"));
    }
}
