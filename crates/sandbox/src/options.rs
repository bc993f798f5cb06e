//! What a sandbox is started with; [`SandboxArgs`] is the same as `gcx sandbox` flags.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::connections::ConnectionLimits;
use crate::faults::{Faults, LatencySpec};
use crate::oauth::ClientSpec;

/// Everything a sandbox needs to start.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Address to listen on; loopback unless the user wants the sandbox reachable.
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// The fault settings it starts with (`PUT /sandbox/faults` changes them live).
    pub faults: Faults,
    /// Accepted OAuth clients; the demo client is always first.
    pub clients: Vec<ClientSpec>,
    /// `whsec_…` secrets the receivers verify signatures with (none: no check).
    pub crm_secret: Option<String>,
    pub qa_secret: Option<String>,
    /// Most correlationIds remembered per tenant for idempotency (oldest evicted first).
    pub idempotency_cap: usize,
    /// Most events kept per tenant for query-back and sequenceId idempotency (oldest
    /// evicted first), so memory stays bounded on long runs.
    pub query_cap: usize,
    /// Most events per query-back answer: 10 000 as PROTOCOL.md 4.1 says; smaller values
    /// exist so tests can exercise paging with few events.
    pub query_page_size: usize,
    /// Most injected eventIds remembered per tenant for Events API idempotency (oldest
    /// forgotten first).
    pub genesys_event_cap: usize,
    /// Most users and most communications kept per tenant in the injected user state
    /// (oldest evicted first).
    pub genesys_state_cap: usize,
    /// Connections in HTTP at once, so idle clients cannot use up file descriptors.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also the idle keep-alive timeout),
    /// so silent or trickling connections are closed.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body.
    pub body_read_timeout: Duration,
    /// Most messages (frames of any kind) per second one assist connection may send; a
    /// connection over it is closed with [`MESSAGE_RATE_CLOSE`].
    pub ws_messages_per_second: u32,
}

/// Close code of an assist connection that sent messages faster than
/// `ws_messages_per_second` (4029, after HTTP's 429; PROTOCOL.md leaves 4xxx codes to the
/// server).
pub const MESSAGE_RATE_CLOSE: u16 = 4029;

impl SandboxOptions {
    pub(crate) fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
        }
    }
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            faults: Faults::default(),
            clients: vec![ClientSpec::demo()],
            crm_secret: None,
            qa_secret: None,
            idempotency_cap: 1_000_000,
            query_cap: 2_000_000,
            query_page_size: gcx_protocol::events::MAX_QUERY_EVENTS,
            genesys_event_cap: 1_000_000,
            genesys_state_cap: 100_000,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            ws_messages_per_second: 100_000,
        }
    }
}

/// `gcx sandbox` flags. Every fault of PROTOCOL.md section 7 is a flag in kebab-case; the
/// faults can also be changed while running with `PUT /sandbox/faults`.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on. Loopback by default; 0.0.0.0 makes the sandbox reachable from
    /// other machines (it has no real security: do that on trusted networks only).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// TCP port to listen on; 0 picks a free one (the ready line says which).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Once listening, also write {"base_url","stream_url","crm_url","qa_url"} as JSON to
    /// this file (written whole, then renamed into place, so readers never see half).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Another accepted OAuth client, as ID:SECRET:scope,scope (repeatable). ID and SECRET
    /// hold no colon. The demo client gcx-demo / gcx-demo-secret with every scope is
    /// always accepted.
    #[arg(long = "client", value_name = "ID:SECRET:SCOPES")]
    pub clients: Vec<ClientSpec>,
    /// Verify the Standard Webhooks signature of every CRM delivery with this whsec_
    /// secret and answer 401 to a bad one (default: no check).
    #[arg(long, value_name = "WHSEC")]
    pub crm_secret: Option<String>,
    /// Verify the Standard Webhooks signature of every QA export with this whsec_ secret
    /// and answer 401 to a bad one (default: no check).
    #[arg(long, value_name = "WHSEC")]
    pub qa_secret: Option<String>,
    /// Most assist correlationIds remembered per client for idempotency; the oldest are
    /// forgotten first.
    #[arg(long, default_value_t = 1_000_000)]
    pub idempotency_cap: usize,
    /// Most events kept per client for query-back and sequenceId idempotency; the oldest
    /// are evicted first (an evicted sequenceId sent again is processed as new).
    #[arg(long, default_value_t = 2_000_000)]
    pub query_cap: usize,
    /// Most events per query-back answer (testing aid; the protocol's 10 000 by default).
    #[arg(long, default_value_t = gcx_protocol::events::MAX_QUERY_EVENTS, hide = true)]
    pub query_page_size: usize,
    /// Lifetime of issued OAuth tokens, in seconds (the assist stream closes with 4001
    /// when its token expires without a reauth).
    #[arg(long, default_value_t = 86_400)]
    pub token_lifetime_secs: u64,
    /// Actions one client may have in flight at once, across all its connections; a send
    /// beyond it is refused with 429 and retryAfterMs.
    #[arg(long, default_value_t = 50)]
    pub max_concurrent_actions: u32,
    /// Time the engine takes to run an action, in ms: `20` (fixed) or `20,200` (median,p99
    /// of a lognormal).
    #[arg(long, default_value = "0", value_name = "MS[,P99]")]
    pub engine_latency_ms: LatencySpec,
    /// An action not finished after this many ms ends as `failed` with error code
    /// `timeout`.
    #[arg(long, default_value_t = 30_000)]
    pub action_timeout_ms: u64,
    /// Share (0 to 1) of actions whose result is `failed` instead of `completed`.
    #[arg(long, default_value_t = 0.0)]
    pub result_failure_rate: f64,
    /// Share (0 to 1) of assist sends refused with 429 (drawn per correlationId).
    #[arg(long, default_value_t = 0.0)]
    pub send_429_rate: f64,
    /// Share (0 to 1) of assist sends refused with 503 (drawn per correlationId).
    #[arg(long, default_value_t = 0.0)]
    pub send_503_rate: f64,
    /// Most assist sends per second per client; more are refused with 429 (default: no
    /// limit).
    #[arg(long)]
    pub sends_per_second: Option<u32>,
    /// Drop each assist connection abruptly at its N-th client message after `connect`
    /// (the message is discarded unprocessed; default: never).
    #[arg(long, value_name = "N")]
    pub drop_connection_every: Option<u64>,
    /// Send a `closing` notice on each assist connection every N seconds, then close it
    /// with 1001 (default: never).
    #[arg(long, value_name = "SECS")]
    pub closing_every_secs: Option<u64>,
    /// Interval of the assist stream's heartbeats, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub heartbeat_interval_ms: u64,
    /// An assist connection that has not sent `connect` within this many ms is closed.
    #[arg(long, default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,
    /// Most events requests per client per one-minute window; more are refused with 429
    /// and Retry-After (default: no limit).
    #[arg(long)]
    pub events_requests_per_minute: Option<u32>,
    /// Share (0 to 1) of events requests refused with 429 (drawn per request number).
    #[arg(long, default_value_t = 0.0)]
    pub events_429_rate: f64,
    /// Share (0 to 1) of events requests answered 503 before any processing (drawn per
    /// request number).
    #[arg(long, default_value_t = 0.0)]
    pub events_5xx_rate: f64,
    /// Async events batches (`async=true`) are processed this many ms after receipt; later
    /// batches wait behind them, so per-agent order holds.
    #[arg(long, default_value_t = 0)]
    pub events_async_delay_ms: u64,
    /// Statuses the CRM receiver answers its next requests with, in order, before it goes
    /// back to 200, e.g. 503,503,429 (a 429 carries Retry-After: 1).
    #[arg(long, value_delimiter = ',', value_name = "STATUS,...")]
    pub crm_statuses: Vec<u16>,
    /// Time the CRM receiver takes to answer, in ms.
    #[arg(long, default_value_t = 0)]
    pub crm_latency_ms: u64,
    /// Statuses the QA receiver answers its next requests with, in order, before it goes
    /// back to 200, e.g. 503,429.
    #[arg(long, value_delimiter = ',', value_name = "STATUS,...")]
    pub qa_statuses: Vec<u16>,
    /// Time the QA receiver takes to answer, in ms.
    #[arg(long, default_value_t = 0)]
    pub qa_latency_ms: u64,
    /// Most Events API requests (routing status, presence, conversations) per client,
    /// endpoint and one-minute window; more are refused with 429 (default: no limit).
    #[arg(long)]
    pub genesys_requests_per_minute: Option<u32>,
    /// Share (0 to 1) of injected Events API events refused in the answer's `errors`
    /// (drawn once per eventId).
    #[arg(long, default_value_t = 0.0)]
    pub genesys_event_error_rate: f64,
    /// Share (0 to 1) of those refused events marked retryable; a re-send is accepted.
    #[arg(long, default_value_t = 0.0)]
    pub genesys_event_retryable_share: f64,
    /// Time between an injected event's acceptance and its effect on the user state, in ms.
    #[arg(long, default_value_t = 0)]
    pub genesys_processing_lag_ms: u64,
    /// A permission a client lacks, as CLIENT:PERMISSION (repeatable), e.g.
    /// qa:routing:routingstatus:inject: one of the three Events API injection permissions
    /// or the three Notifications API view permissions (routing:routingStatus:view,
    /// presence:userPresence:view, conversation:communication:view). Every client holds
    /// all six otherwise.
    #[arg(long = "genesys-withhold-permission", value_name = "CLIENT:PERMISSION")]
    pub genesys_withhold_permissions: Vec<String>,
    /// Time between two heartbeats on a Notifications API socket, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub genesys_heartbeat_ms: u64,
    /// Send `v2.system.socket_closing` on each Notifications API socket after this many ms
    /// of its life, then close it (0: never).
    #[arg(long, default_value_t = 0)]
    pub genesys_socket_closing_every_ms: u64,
    /// Time between a socket's `v2.system.socket_closing` and its close, in ms: a new
    /// socket opened on the channel within it takes over without a gap.
    #[arg(long, default_value_t = 2_000)]
    pub genesys_socket_closing_grace_ms: u64,
    /// Most injected eventIds remembered per client for idempotency; the oldest are
    /// forgotten first.
    #[arg(long, default_value_t = 1_000_000)]
    pub genesys_event_cap: usize,
    /// Most users and most communications kept per client in the injected user state; the
    /// oldest are evicted first.
    #[arg(long, default_value_t = 100_000)]
    pub genesys_state_cap: usize,
    /// Seed of every random fault draw: the same seed gives the same faults for the same
    /// ids, whatever the interleaving.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Connections served at once (an upgraded assist stream leaves the count); more wait
    /// until one closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers, in ms; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a whole request body, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,
    /// Most WebSocket messages per second one assist connection may send; over it the
    /// connection is closed with 4029.
    #[arg(long, default_value_t = 100_000)]
    pub ws_messages_per_second: u32,
}

impl SandboxArgs {
    /// The options these flags describe, or every reason they are invalid.
    pub fn into_options(self) -> Result<SandboxOptions, Vec<String>> {
        let mut faults = Faults {
            token_lifetime_secs: self.token_lifetime_secs,
            max_concurrent_actions: self.max_concurrent_actions,
            engine_latency_ms: self.engine_latency_ms,
            action_timeout_ms: self.action_timeout_ms,
            result_failure_rate: self.result_failure_rate,
            send_429_rate: self.send_429_rate,
            send_503_rate: self.send_503_rate,
            sends_per_second: self.sends_per_second,
            drop_connection_every: self.drop_connection_every,
            closing_every_secs: self.closing_every_secs,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            handshake_timeout_ms: self.handshake_timeout_ms,
            events_requests_per_minute: self.events_requests_per_minute,
            events_429_rate: self.events_429_rate,
            events_5xx_rate: self.events_5xx_rate,
            events_async_delay_ms: self.events_async_delay_ms,
            crm_statuses: self.crm_statuses,
            crm_latency_ms: self.crm_latency_ms,
            qa_statuses: self.qa_statuses,
            qa_latency_ms: self.qa_latency_ms,
            genesys_requests_per_minute: self.genesys_requests_per_minute,
            genesys_event_error_rate: self.genesys_event_error_rate,
            genesys_event_retryable_share: self.genesys_event_retryable_share,
            genesys_processing_lag_ms: self.genesys_processing_lag_ms,
            genesys_withheld_permissions: BTreeMap::new(),
            genesys_heartbeat_ms: self.genesys_heartbeat_ms,
            genesys_socket_closing_every_ms: self.genesys_socket_closing_every_ms,
            genesys_socket_closing_grace_ms: self.genesys_socket_closing_grace_ms,
            seed: self.seed,
        };
        let mut errors = Vec::new();
        for spec in &self.genesys_withhold_permissions {
            match spec.split_once(':') {
                Some((client, permission)) if !client.is_empty() && !permission.is_empty() => {
                    faults
                        .genesys_withheld_permissions
                        .entry(client.to_owned())
                        .or_default()
                        .push(permission.to_owned());
                }
                _ => errors.push(format!(
                    "--genesys-withhold-permission {spec:?}: expected CLIENT:PERMISSION"
                )),
            }
        }
        errors.extend(faults.check().err().unwrap_or_default());
        let mut positive = |flag: &str, value: usize| {
            if value == 0 {
                errors.push(format!("--{flag}: must be at least 1, got 0"));
            }
        };
        positive("idempotency-cap", self.idempotency_cap);
        positive("query-cap", self.query_cap);
        positive("query-page-size", self.query_page_size);
        positive("genesys-event-cap", self.genesys_event_cap);
        positive("genesys-state-cap", self.genesys_state_cap);
        positive("max-connections", self.max_connections);
        let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        positive(
            "header-read-timeout-ms",
            as_usize(self.header_read_timeout_ms),
        );
        positive("body-read-timeout-ms", as_usize(self.body_read_timeout_ms));
        positive(
            "ws-messages-per-second",
            as_usize(u64::from(self.ws_messages_per_second)),
        );
        let max_page = gcx_protocol::events::MAX_QUERY_EVENTS;
        if self.query_page_size > max_page {
            errors.push(format!(
                "--query-page-size: at most {max_page} (PROTOCOL.md 4.1), got {}",
                self.query_page_size
            ));
        }
        let mut clients = vec![ClientSpec::demo()];
        for c in self.clients {
            if clients.iter().any(|k| k.id == c.id) {
                errors.push(format!(
                    "--client {}: a client with this ID is already accepted",
                    c.id
                ));
            } else {
                clients.push(c);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SandboxOptions {
            bind: self.bind,
            port: self.port,
            faults,
            clients,
            crm_secret: self.crm_secret,
            qa_secret: self.qa_secret,
            idempotency_cap: self.idempotency_cap,
            query_cap: self.query_cap,
            query_page_size: self.query_page_size,
            genesys_event_cap: self.genesys_event_cap,
            genesys_state_cap: self.genesys_state_cap,
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            ws_messages_per_second: self.ws_messages_per_second,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    fn options(flags: &[&str]) -> Result<SandboxOptions, Vec<String>> {
        let argv = std::iter::once("sandbox").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args.into_options()
    }

    #[test]
    fn defaults_match_the_spec() {
        let o = options(&[]).unwrap();
        assert_eq!(o.faults, Faults::default());
        assert_eq!(o.clients, vec![ClientSpec::demo()]);
        assert_eq!(o.query_page_size, 10_000);
    }

    #[test]
    fn faults_are_flags_in_kebab_case() {
        let o = options(&[
            "--engine-latency-ms",
            "20,200",
            "--crm-statuses",
            "503,503,429",
            "--events-requests-per-minute",
            "5",
            "--client",
            "qa:qa-secret:interactions:read,analytics:query",
        ])
        .unwrap();
        assert_eq!(o.faults.engine_latency_ms.p99, 200);
        assert_eq!(o.faults.crm_statuses, vec![503, 503, 429]);
        assert_eq!(o.faults.events_requests_per_minute, Some(5));
        assert_eq!(o.clients.len(), 2);
    }

    #[test]
    fn genesys_flags_fill_the_faults_and_bad_permissions_are_refused() {
        let o = options(&[
            "--genesys-withhold-permission",
            "qa:routing:routingstatus:inject",
            "--genesys-withhold-permission",
            "qa:presence:userPresence:inject",
            "--genesys-event-error-rate",
            "0.25",
            "--genesys-processing-lag-ms",
            "50",
            "--genesys-withhold-permission",
            "qa:presence:userPresence:view",
            "--genesys-heartbeat-ms",
            "250",
            "--genesys-socket-closing-every-ms",
            "1000",
            "--genesys-socket-closing-grace-ms",
            "100",
        ])
        .unwrap();
        assert_eq!(
            o.faults.genesys_withheld_permissions["qa"],
            [
                "routing:routingstatus:inject",
                "presence:userPresence:inject",
                "presence:userPresence:view"
            ]
        );
        assert_eq!(o.faults.genesys_heartbeat_ms, 250);
        assert_eq!(o.faults.genesys_socket_closing_every_ms, 1000);
        assert_eq!(o.faults.genesys_socket_closing_grace_ms, 100);
        assert_eq!(o.faults.genesys_event_error_rate, 0.25);
        assert_eq!(o.faults.genesys_processing_lag_ms, 50);
        let errors = options(&[
            "--genesys-withhold-permission",
            "qa",
            "--genesys-withhold-permission",
            "qa:routing:nonsense",
            "--genesys-event-cap",
            "0",
            "--genesys-heartbeat-ms",
            "0",
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn every_reason_is_reported() {
        let errors = options(&[
            "--send-429-rate",
            "2",
            "--query-cap",
            "0",
            "--query-page-size",
            "20000",
            "--client",
            "gcx-demo:x:analytics:query",
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn nonsense_faults_and_zero_limits_are_refused_together() {
        let errors = options(&[
            "--max-concurrent-actions",
            "0",
            "--sends-per-second",
            "0",
            "--header-read-timeout-ms",
            "0",
            "--max-connections",
            "0",
            "--ws-messages-per-second",
            "0",
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("max_concurrent_actions")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("--header-read-timeout-ms")),
            "{errors:?}"
        );
    }
}
