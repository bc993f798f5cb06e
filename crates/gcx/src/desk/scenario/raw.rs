//! The scenario file as written: serde types with spans, so every later check can name
//! the line. Unknown keys are refused here (by `deny_unknown_fields`), with their span.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

/// A duration: an integer of milliseconds or a humantime string ("250ms", "10s", "2m").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration: milliseconds as an integer, or a string like \"250ms\", \"10s\", \"2m\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|ms| Dur(Duration::from_millis(ms)))
                    .map_err(|_| E::custom(format!("a duration must not be negative, got {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_millis(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "{v:?} is not a duration ({e}); write e.g. \"250ms\", \"10s\", \"2m\" or an integer of milliseconds"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<Spanned<String>>,
    pub seed: Option<Spanned<u64>>,
    pub duration: Option<Spanned<Dur>>,
    pub iterations: Option<Spanned<i64>>,
    #[serde(rename = "async")]
    pub async_mode: Option<Spanned<bool>>,
    pub batch_size: Option<Spanned<i64>>,
    pub time_slice: Option<Spanned<Dur>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub invalid_transitions: Option<Spanned<f64>>,
    pub request_timeout: Option<Spanned<Dur>>,
    pub retry_deadline: Option<Spanned<Dur>>,
    pub max_lag: Option<Spanned<Dur>>,
    pub base_url: Option<Spanned<String>>,
    pub thresholds: Option<Vec<Spanned<String>>>,
    pub agents: Option<RawAgents>,
    pub load: Option<Spanned<RawLoad>>,
    pub workflow: Option<RawWorkflow>,
    pub time_in_state: Option<PerState<Spanned<toml::Value>>>,
    pub query: Option<RawQuery>,
    pub target: Option<Spanned<String>>,
    pub genesys: Option<RawGenesys>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgents {
    pub count: Option<Spanned<i64>>,
    pub ids: Option<Spanned<Vec<Spanned<String>>>>,
    pub login_over: Option<Spanned<Dur>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    pub model: Option<Spanned<String>>,
    pub rate: Option<Spanned<f64>>,
    pub arrival: Option<Spanned<String>>,
    pub stages: Option<Vec<Spanned<RawStage>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub duration: Spanned<Dur>,
    pub target: Spanned<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub start: Option<Spanned<String>>,
    pub next: Option<PerState<Spanned<PerState<Spanned<f64>>>>>,
}

/// One value per desktop state, by short name; any other key is refused with its span.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerState<T> {
    pub available: Option<T>,
    pub busy: Option<T>,
    pub connected: Option<T>,
    pub disconnected: Option<T>,
    pub wrapping: Option<T>,
}

impl<T> PerState<T> {
    /// In [`gcx_protocol::AgentState::ALL`] order.
    pub fn into_array(self) -> [Option<T>; 5] {
        [
            self.available,
            self.busy,
            self.connected,
            self.disconnected,
            self.wrapping,
        ]
    }
}

/// `[genesys]`: how the `genesys-events` target maps and observes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGenesys {
    pub presence: Option<Spanned<bool>>,
    pub hold_share: Option<Spanned<f64>>,
    pub source_id: Option<Spanned<String>>,
    pub observe: Option<Spanned<bool>>,
    pub observe_grace: Option<Spanned<Dur>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub interval: Option<Spanned<Dur>>,
    pub timeout: Option<Spanned<Dur>>,
}
