//! Fault settings (PROTOCOL.md section 7): what `GET/PUT /sandbox/faults` show and take,
//! and the same settings as command-line flags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Engine latency as a median and a 99th percentile (a lognormal between them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySpec {
    pub median: u64,
    pub p99: u64,
}

impl LatencySpec {
    /// Always `ms` milliseconds (median and p99 alike).
    pub const fn fixed(ms: u64) -> LatencySpec {
        LatencySpec {
            median: ms,
            p99: ms,
        }
    }
}

impl std::str::FromStr for LatencySpec {
    type Err = String;

    /// `20` (fixed) or `20,200` (median,p99), in milliseconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |t: &str| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| format!("expected milliseconds as an integer, got {t:?}"))
        };
        match s.split_once(',') {
            None => Ok(LatencySpec::fixed(parse(s)?)),
            Some((m, p)) => {
                let (median, p99) = (parse(m)?, parse(p)?);
                if p99 < median {
                    return Err(format!("p99 ({p99}) is below the median ({median})"));
                }
                Ok(LatencySpec { median, p99 })
            }
        }
    }
}

/// Every fault and limit the sandbox applies. `None` means no limit or never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub token_lifetime_secs: u64,
    pub max_concurrent_actions: u32,
    pub engine_latency_ms: LatencySpec,
    pub action_timeout_ms: u64,
    pub result_failure_rate: f64,
    pub send_429_rate: f64,
    pub send_503_rate: f64,
    pub sends_per_second: Option<u32>,
    pub drop_connection_every: Option<u64>,
    pub closing_every_secs: Option<u64>,
    pub heartbeat_interval_ms: u64,
    pub handshake_timeout_ms: u64,
    pub events_requests_per_minute: Option<u32>,
    pub events_429_rate: f64,
    pub events_5xx_rate: f64,
    pub events_async_delay_ms: u64,
    pub crm_statuses: Vec<u16>,
    pub crm_latency_ms: u64,
    pub qa_statuses: Vec<u16>,
    pub qa_latency_ms: u64,
    /// Most Events API requests (PROTOCOL.md 9.1) per client, endpoint and minute.
    pub genesys_requests_per_minute: Option<u32>,
    /// Share (0 to 1) of injected events refused in the 200 answer's `errors` (drawn per
    /// eventId, once: a re-send of a retryable refusal is accepted).
    pub genesys_event_error_rate: f64,
    /// Share (0 to 1) of those refusals marked `retryable` (drawn per eventId).
    pub genesys_event_retryable_share: f64,
    /// Time between an event's acceptance and its effect on the user state.
    pub genesys_processing_lag_ms: u64,
    /// Permissions a client lacks (client id -> permissions): the three injection
    /// permissions of the Events API and the three view permissions of the Notifications
    /// API's user topics; every client holds all six unless listed here.
    pub genesys_withheld_permissions: BTreeMap<String, Vec<String>>,
    /// Time between two heartbeats on a Notifications API socket (PROTOCOL.md 9.2).
    pub genesys_heartbeat_ms: u64,
    /// Life of a Notifications API socket before it is sent `v2.system.socket_closing`
    /// (0: never).
    pub genesys_socket_closing_every_ms: u64,
    /// Time between a socket's `v2.system.socket_closing` and its close.
    pub genesys_socket_closing_grace_ms: u64,
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            token_lifetime_secs: 86_400,
            max_concurrent_actions: 50,
            engine_latency_ms: LatencySpec::default(),
            action_timeout_ms: 30_000,
            result_failure_rate: 0.0,
            send_429_rate: 0.0,
            send_503_rate: 0.0,
            sends_per_second: None,
            drop_connection_every: None,
            closing_every_secs: None,
            heartbeat_interval_ms: 30_000,
            handshake_timeout_ms: 10_000,
            events_requests_per_minute: None,
            events_429_rate: 0.0,
            events_5xx_rate: 0.0,
            events_async_delay_ms: 0,
            crm_statuses: Vec::new(),
            crm_latency_ms: 0,
            qa_statuses: Vec::new(),
            qa_latency_ms: 0,
            genesys_requests_per_minute: None,
            genesys_event_error_rate: 0.0,
            genesys_event_retryable_share: 0.0,
            genesys_processing_lag_ms: 0,
            genesys_withheld_permissions: BTreeMap::new(),
            genesys_heartbeat_ms: 30_000,
            genesys_socket_closing_every_ms: 0,
            genesys_socket_closing_grace_ms: 2_000,
            seed: 0,
        }
    }
}

impl Faults {
    /// Every reason these settings cannot be applied (rates outside 0..=1, zero limits,
    /// a latency median above its p99, statuses that are not HTTP statuses).
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (name, rate) in [
            ("result_failure_rate", self.result_failure_rate),
            ("send_429_rate", self.send_429_rate),
            ("send_503_rate", self.send_503_rate),
            ("events_429_rate", self.events_429_rate),
            ("events_5xx_rate", self.events_5xx_rate),
            ("genesys_event_error_rate", self.genesys_event_error_rate),
            (
                "genesys_event_retryable_share",
                self.genesys_event_retryable_share,
            ),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                errors.push(format!("{name}: {rate} is not a share between 0 and 1"));
            }
        }
        for (name, v) in [
            ("token_lifetime_secs", self.token_lifetime_secs),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("action_timeout_ms", self.action_timeout_ms),
            ("genesys_heartbeat_ms", self.genesys_heartbeat_ms),
        ] {
            if v == 0 {
                errors.push(format!("{name}: must be at least 1"));
            }
        }
        if self.max_concurrent_actions == 0 {
            errors.push(
                "max_concurrent_actions: must be at least 1 (0 would refuse every send)".into(),
            );
        }
        let latency = self.engine_latency_ms;
        if latency.median > latency.p99 {
            errors.push(format!(
                "engine_latency_ms: the median ({}) is above the p99 ({}); expected median <= p99",
                latency.median, latency.p99
            ));
        }
        for (name, v) in [
            ("drop_connection_every", self.drop_connection_every),
            ("closing_every_secs", self.closing_every_secs),
            ("sends_per_second", self.sends_per_second.map(u64::from)),
            (
                "events_requests_per_minute",
                self.events_requests_per_minute.map(u64::from),
            ),
            (
                "genesys_requests_per_minute",
                self.genesys_requests_per_minute.map(u64::from),
            ),
        ] {
            if v == Some(0) {
                errors.push(format!("{name}: must be at least 1 (or null for no limit)"));
            }
        }
        for (name, statuses) in [
            ("crm_statuses", &self.crm_statuses),
            ("qa_statuses", &self.qa_statuses),
        ] {
            let bad: Vec<String> = statuses
                .iter()
                .filter(|s| !(200..=599).contains(*s))
                .map(u16::to_string)
                .collect();
            if !bad.is_empty() {
                errors.push(format!(
                    "{name}: {} not an HTTP status a receiver can answer; expected 200 to 599",
                    bad.join(", ")
                ));
            }
        }
        let known: Vec<&str> = gcx_protocol::genesys_events::ALL_PERMISSIONS
            .into_iter()
            .chain(crate::genesys::notifications::VIEW_PERMISSIONS)
            .collect();
        for (client, permissions) in &self.genesys_withheld_permissions {
            for p in permissions.iter().filter(|p| !known.contains(&p.as_str())) {
                errors.push(format!(
                    "genesys_withheld_permissions: {client}: {p:?} is not a permission the sandbox checks; expected one of {}",
                    known.join(", ")
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A deterministic draw in `[0, 1)` from the seed and the id it concerns, so a faulty run
/// repeats exactly whatever the interleaving (FNV-1a then a SplitMix64 finalizer).
pub fn draw(seed: u64, salt: &str, id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in salt.bytes().chain([0xff]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serialize_as_the_spec_writes_them() {
        let v = serde_json::to_value(Faults::default()).unwrap();
        assert_eq!(v["token_lifetime_secs"], 86_400);
        assert_eq!(
            v["engine_latency_ms"],
            serde_json::json!({"median":0,"p99":0})
        );
        assert!(v["sends_per_second"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 29);
        assert_eq!(v["genesys_heartbeat_ms"], 30_000);
        assert_eq!(v["genesys_socket_closing_every_ms"], 0);
    }

    #[test]
    fn latency_spec_parses_one_or_two_numbers() {
        assert_eq!(
            "20".parse::<LatencySpec>().unwrap(),
            LatencySpec {
                median: 20,
                p99: 20
            }
        );
        assert_eq!(
            "20,200".parse::<LatencySpec>().unwrap(),
            LatencySpec {
                median: 20,
                p99: 200
            }
        );
        assert!("200,20".parse::<LatencySpec>().is_err());
        assert!("x".parse::<LatencySpec>().is_err());
    }

    #[test]
    fn draws_are_repeatable_and_spread() {
        assert_eq!(draw(7, "send_429", "abc"), draw(7, "send_429", "abc"));
        assert_ne!(draw(7, "send_429", "abc"), draw(8, "send_429", "abc"));
        let hits = (0..10_000)
            .filter(|i| draw(1, "x", &i.to_string()) < 0.1)
            .count();
        assert!((800..1200).contains(&hits), "{hits}");
    }

    #[test]
    fn check_names_every_bad_setting() {
        let f = Faults {
            send_429_rate: 2.0,
            events_5xx_rate: -1.0,
            heartbeat_interval_ms: 0,
            ..Faults::default()
        };
        assert_eq!(f.check().unwrap_err().len(), 3);
        let nonsense = Faults {
            engine_latency_ms: LatencySpec {
                median: 200,
                p99: 20,
            },
            max_concurrent_actions: 0,
            sends_per_second: Some(0),
            closing_every_secs: Some(0),
            crm_statuses: vec![503, 0, 1000],
            ..Faults::default()
        };
        let errors = nonsense.check().unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("median (200) is above the p99 (20)"))
        );
        assert!(errors.iter().any(|e| e.contains("crm_statuses: 0, 1000")));
    }
}
