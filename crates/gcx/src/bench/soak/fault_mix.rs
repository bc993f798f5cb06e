//! Every fault at once: the sandbox settings that stay on for the whole load (dropped
//! assist connections, short-lived tokens, engine 429s and failures), and the timed ones
//! a schedule drives through `PUT /sandbox/faults` (the CRM down for a while every
//! period, a `closing` notice every few minutes) plus, on PostgreSQL, one restart of the
//! database midway. The schedule is worked out in advance, so a sample can say whether
//! the CRM was down at its time and the page can mark every event.

use std::time::Duration;

use gcx_sandbox::{Faults, LatencySpec};
use serde::Serialize;
use serde_json::{Value, json};

/// The faults of one soak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultMix {
    /// Assist frames on one connection before the sandbox drops it.
    pub drop_every_messages: u64,
    /// How long an OAuth token lives (the stream re-authenticates before it ends).
    pub token_lifetime: Duration,
    /// Share of sends the engine refuses with 429.
    pub send_429_rate: f64,
    /// Share of executed actions whose result is a failure.
    pub result_failure_rate: f64,
    /// How often a `closing` notice is sent on the live connection.
    pub closing_every: Duration,
    /// How long each CRM outage lasts (every answer 503) ...
    pub crm_down: Duration,
    /// ... once per this period, at its end.
    pub crm_period: Duration,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            drop_every_messages: 3_000,
            token_lifetime: Duration::from_secs(5),
            send_429_rate: 0.015,
            result_failure_rate: 0.01,
            closing_every: Duration::from_secs(180),
            crm_down: Duration::from_secs(10),
            crm_period: Duration::from_secs(60),
        }
    }
}

/// More 503 answers than an outage can use: the delivery worker's breaker lets few
/// requests through while the CRM fails, and the list is cleared when the outage ends.
const OUTAGE_ANSWERS: usize = 20_000;
/// How long the `closing` setting stays at 1 s: long enough for the live connection's
/// notice, short enough that the reconnected one does not get another.
const CLOSING_HELD: Duration = Duration::from_millis(1_500);

impl FaultMix {
    /// The sandbox's settings for the whole run (the timed faults start off).
    pub fn sandbox_faults(&self) -> Faults {
        Faults {
            token_lifetime_secs: self.token_lifetime.as_secs().max(1),
            engine_latency_ms: LatencySpec {
                median: 20,
                p99: 200,
            },
            send_429_rate: self.send_429_rate,
            result_failure_rate: self.result_failure_rate,
            drop_connection_every: Some(self.drop_every_messages.max(1)),
            ..Faults::default()
        }
    }

    /// Whether the CRM is down `at` into the load (outages end each period).
    pub fn crm_down_at(&self, at: Duration) -> bool {
        let period = self.crm_period.as_secs_f64();
        if period <= 0.0 || self.crm_down.is_zero() {
            return false;
        }
        let into = at.as_secs_f64() % period;
        into >= period - self.crm_down.as_secs_f64().min(period)
    }

    /// Every timed fault within a load of `length`, in time order; with
    /// `restart_postgres`, one restart at the middle.
    pub fn schedule(&self, length: Duration, restart_postgres: bool) -> Vec<(Duration, Action)> {
        let mut plan = Vec::new();
        if !self.crm_down.is_zero() && self.crm_down < self.crm_period {
            let mut end = self.crm_period;
            while end - self.crm_down < length {
                plan.push((end - self.crm_down, Action::CrmDown));
                plan.push((end.min(length), Action::CrmUp));
                end += self.crm_period;
            }
        }
        if !self.closing_every.is_zero() {
            let mut at = self.closing_every;
            while at < length {
                plan.push((at, Action::ClosingOn));
                plan.push((at + CLOSING_HELD, Action::ClosingOff));
                at += self.closing_every;
            }
        }
        if restart_postgres {
            plan.push((length / 2, Action::RestartPostgres));
        }
        plan.sort_by_key(|(at, _)| *at);
        plan
    }
}

/// One timed fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    CrmDown,
    CrmUp,
    ClosingOn,
    ClosingOff,
    RestartPostgres,
}

impl Action {
    /// The `PUT /sandbox/faults` body of a sandbox action (`None` for the restart).
    pub fn faults_patch(self) -> Option<Value> {
        match self {
            Action::CrmDown => Some(json!({ "crm_statuses": vec![503; OUTAGE_ANSWERS] })),
            Action::CrmUp => Some(json!({ "crm_statuses": [] })),
            Action::ClosingOn => Some(json!({ "closing_every_secs": 1 })),
            Action::ClosingOff => Some(json!({ "closing_every_secs": null })),
            Action::RestartPostgres => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::CrmDown => "CRM down",
            Action::CrmUp => "CRM up",
            Action::ClosingOn => "closing",
            Action::ClosingOff => "closing off",
            Action::RestartPostgres => "PostgreSQL restart",
        }
    }
}

/// A timed fault as it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Seconds into the load.
    pub at_s: f64,
    pub action: Action,
    /// `None` when it took effect; else why not.
    pub error: Option<String>,
}

/// Restarts the local PostgreSQL cluster (`pg_ctlcluster VERSION main restart`, the
/// version from the one folder under `/etc/postgresql`). The error says why not.
pub async fn restart_postgres() -> Result<(), String> {
    let version = std::fs::read_dir("/etc/postgresql")
        .map_err(|e| format!("no PostgreSQL cluster to restart (/etc/postgresql: {e})"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or("no PostgreSQL cluster under /etc/postgresql")?;
    let output = tokio::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .output()
        .await
        .map_err(|e| format!("cannot run pg_ctlcluster: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctlcluster {version} main restart: {} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(down: u64, period: u64, closing: u64) -> FaultMix {
        FaultMix {
            crm_down: Duration::from_secs(down),
            crm_period: Duration::from_secs(period),
            closing_every: Duration::from_secs(closing),
            ..FaultMix::default()
        }
    }

    #[test]
    fn the_crm_is_down_at_the_end_of_each_period() {
        let m = mix(10, 60, 180);
        let down = |s| m.crm_down_at(Duration::from_secs(s));
        assert!(!down(0) && !down(49) && down(50) && down(59) && !down(60) && down(115));
    }

    #[test]
    fn the_schedule_pairs_every_outage_and_closing_and_restarts_once_midway() {
        let plan = mix(10, 60, 180).schedule(Duration::from_secs(600), true);
        let count = |a| plan.iter().filter(|(_, x)| *x == a).count();
        assert_eq!(count(Action::CrmDown), 10);
        assert_eq!(count(Action::CrmUp), 10);
        assert_eq!(count(Action::ClosingOn), 3);
        assert_eq!(count(Action::ClosingOff), 3);
        assert_eq!(count(Action::RestartPostgres), 1);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(plan[0], (Duration::from_secs(50), Action::CrmDown));
        let restart = plan.iter().find(|(_, a)| *a == Action::RestartPostgres);
        assert_eq!(restart.unwrap().0, Duration::from_secs(300));
    }

    #[test]
    fn an_outage_cut_by_the_end_of_the_load_still_ends() {
        let plan = mix(10, 60, 0).schedule(Duration::from_secs(55), false);
        assert_eq!(
            plan,
            [
                (Duration::from_secs(50), Action::CrmDown),
                (Duration::from_secs(55), Action::CrmUp)
            ]
        );
    }

    #[test]
    fn the_sandbox_accepts_the_settings_and_every_patch() {
        assert_eq!(FaultMix::default().sandbox_faults().check(), Ok(()));
        for a in [
            Action::CrmDown,
            Action::CrmUp,
            Action::ClosingOn,
            Action::ClosingOff,
        ] {
            assert!(a.faults_patch().is_some_and(|p| p.is_object()));
        }
    }
}
