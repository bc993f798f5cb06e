//! Configuration: the effective settings of one gcx run, and where each came from.
//!
//! Layers, lowest first: built-in defaults (documented in `config/gcx.default.toml` at the
//! repository root), a TOML file (`--config`), the `gc` CLI profile (`--profile`),
//! environment variables (the Terraform provider's, the seeds', `GCX_*`), then flags.
//!
//! - [`keys`]: the keys as a table (kind, environment variables, synonym precedence).
//! - [`load`](mod@load): the layers merged, each key's [`Source`] recorded.
//! - `limits`: the keys whose zero would make the service refuse everything.
//! - [`profile`]: the Genesys Cloud CLI's `~/.gc/config.toml` profiles.
//! - [`endpoints`](mod@endpoints): login, API and stream URLs from region / base URL.
//! - [`show`]: the effective configuration as rows for `gcx config show`.

mod endpoints;
pub mod keys;
mod limits;
mod load;
pub mod profile;
mod secret;
pub mod show;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use endpoints::{Endpoints, endpoints};
pub use load::{ConfigError, LoadedConfig, Overrides, Source, load, load_from};
pub use secret::Secret;

/// Everything a gcx run needs to know. Each part is read by the module named after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub genesys: GenesysConfig,
    pub crm: WebhookTarget,
    pub qa: WebhookTarget,
    pub store: StoreConfig,
    pub dispatch: DispatchConfig,
    pub delivery: DeliveryConfig,
    pub serve: ServeConfig,
    pub simulate: SimulateDefaults,
    pub log: LogConfig,
}

/// Where gcx finds Genesys Cloud (or a sandbox) and how it logs in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenesysConfig {
    /// A region name (`us-east-1`) or domain (`mypurecloud.com`); PROTOCOL.md section 1.
    pub region: Option<String>,
    /// One base URL for every endpoint (a sandbox); overrides everything below.
    pub base_url: Option<String>,
    /// Explicit endpoints; each overrides what `region` implies.
    pub api_base: Option<String>,
    pub login_base: Option<String>,
    pub assist_stream_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// Allow plain `http://`/`ws://` to non-loopback hosts.
    pub allow_insecure: bool,
}

/// An outbound webhook target (CRM or QA platform).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: Option<String>,
    /// `whsec_` + base64 of the key.
    pub secret: Option<Secret>,
}

/// Where durable state lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Folder of the SQLite file, the audit signing key and other local state.
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL instead of SQLite.
    pub database_url: Option<Secret>,
    /// Group commit: flush when this many rows wait...
    pub group_commit_max_rows: usize,
    /// ...or this long after the first one arrived.
    #[serde(with = "humantime_serde_ms")]
    pub group_commit_interval: Duration,
    /// Keep raw trigger parameters in the audit log (they may hold personal data).
    pub audit_store_parameters: bool,
    /// Write a signed audit checkpoint every this many records.
    pub audit_checkpoint_every: u64,
    /// Delete finished triggers and delivered webhooks this long after they ended
    /// (`gcx serve` every hour, `gcx prune` when run); [`DEFAULT_KEEP_FINISHED`] unless
    /// set, 0 keeps them forever. At least [`MIN_KEEP_FINISHED`]. Audit records, pending
    /// webhooks and dead letters are always kept.
    #[serde(with = "humantime_serde_ms")]
    pub keep_finished: Duration,
}

/// `store.keep_finished` unless set: a service that runs for months stays bounded, and a
/// month of finished triggers answers every question an operator asks of recent work.
pub const DEFAULT_KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The shortest `store.keep_finished`: the engine's deduplication window (PROTOCOL.md
/// 3.6), so that gcx answers a repeated correlationId from its own store at least as
/// long as the engine would.
pub const MIN_KEEP_FINISHED: Duration = Duration::from_secs(24 * 60 * 60);

/// Why `keep` cannot be a retention (shorter than [`MIN_KEEP_FINISHED`]); `None` when it
/// can. Zero (keep forever) is the caller's to judge.
pub fn keep_finished_too_short(keep: Duration) -> Option<String> {
    (!keep.is_zero() && keep < MIN_KEEP_FINISHED).then(|| {
        format!(
            "{} is shorter than the engine's 24-hour deduplication window; expected at \
             least 24h",
            humantime::format_duration(keep)
        )
    })
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from(".gcx"),
            database_url: None,
            group_commit_max_rows: 4000,
            group_commit_interval: Duration::from_millis(2),
            audit_store_parameters: false,
            audit_checkpoint_every: 1000,
            keep_finished: DEFAULT_KEEP_FINISHED,
        }
    }
}

/// The trigger dispatcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Lower the engine's concurrency limit (never raise it).
    pub concurrency: Option<u32>,
    /// How long a trigger may wait for a concurrency slot.
    #[serde(with = "humantime_serde_ms")]
    pub slot_timeout: Duration,
    /// An action catalogue TOML file instead of the built-in one.
    pub catalogue_path: Option<PathBuf>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            concurrency: None,
            slot_timeout: Duration::from_secs(30),
            catalogue_path: None,
        }
    }
}

/// The outbox worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Delay before each attempt, first to last (PROTOCOL.md section 5's default).
    #[serde(with = "humantime_serde_ms_vec")]
    pub schedule: Vec<Duration>,
    /// Requests in flight per endpoint at once.
    pub max_parallel_per_endpoint: usize,
    /// Timeout of one attempt.
    #[serde(with = "humantime_serde_ms")]
    pub request_timeout: Duration,
    /// Consecutive failures that open an endpoint's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before one trial request.
    #[serde(with = "humantime_serde_ms")]
    pub breaker_cooldown: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let s = |secs: u64| Duration::from_secs(secs);
        DeliveryConfig {
            schedule: vec![
                s(0),
                s(5),
                s(300),
                s(1800),
                s(7200),
                s(18000),
                s(36000),
                s(36000),
            ],
            max_parallel_per_endpoint: 16,
            request_timeout: s(10),
            breaker_failures: 5,
            breaker_cooldown: s(5),
        }
    }
}

/// `gcx serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    pub bind: String,
    /// API keys, as SHA-256 hex digests (`gcx serve hash-key` makes one) or plain secrets.
    pub api_keys: Vec<Secret>,
    pub max_batch: usize,
    /// The largest request body, after inflating a gzip one.
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde_ms")]
    pub request_timeout: Duration,
    /// Requests per second per key; 0 turns the limit off.
    pub rate_limit_per_key: u32,
    /// Connections served at once (more wait in the kernel's backlog), so idle clients
    /// cannot use up the process's file descriptors.
    pub max_connections: usize,
    /// Time a client has to send a request's headers once its connection is ready for
    /// one; also how long an idle keep-alive connection stays open (slowloris).
    #[serde(with = "humantime_serde_ms")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body.
    #[serde(with = "humantime_serde_ms")]
    pub body_read_timeout: Duration,
    /// Failed authentications per client address per minute before its requests are
    /// answered 429 without a key check (key guessing); 0 turns the throttle off.
    pub auth_failures_per_minute: u32,
    /// Whether `/metrics` needs an API key.
    pub metrics_require_key: bool,
    #[serde(with = "humantime_serde_ms")]
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            max_batch: 500,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            rate_limit_per_key: 1000,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            auth_failures_per_minute: 60,
            metrics_require_key: false,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Simulator defaults from the seed's environment (`TEST_AGENT_ID`, `TEST_INTERACTION_ID`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulateDefaults {
    pub agent_id: Option<String>,
    pub interaction_id: Option<String>,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: String,
    /// A `tracing` filter (`info`, `gcx=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "human".into(),
            level: "info".into(),
        }
    }
}

/// Durations in config files as milliseconds (integers) or humantime strings ("5s").
mod humantime_serde_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => humantime::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A list of durations, each as in [`humantime_serde_ms`].
mod humantime_serde_ms_vec {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct One(#[serde(with = "super::humantime_serde_ms")] Duration);

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|d| One(*d)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<One>::deserialize(d)?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }
}
