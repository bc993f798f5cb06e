//! `gcx simulate --target genesys-events` against a real sandbox in this process
//! (PROTOCOL.md 9.1): every transition mapped onto the Events API and accounted for by
//! both sides, a storm of retryable errors that loses and duplicates nothing, and a
//! client without `routing:routingstatus:inject` stopped at its first answer.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use gcx::desk::genesys::map::routing_status;
use gcx::desk::{RunOptions, RunReport, Scenario, SimulateError, simulate};
use gcx_protocol::AgentState;
use gcx_sandbox::{Faults, Sandbox};
use serde_json::Value;
use uuid::Uuid;

mod sim_support;
use sim_support::{sandbox, small, target};

/// `agents` agents, interactions at `rate`/s for `secs`, short handle times, on the
/// Events API, half the interactions held once connected, presence sent.
fn scenario(agents: u64, rate: f64, secs: f64) -> Scenario {
    scenario_with(agents, rate, secs, "")
}

/// [`scenario`] with `genesys` lines added to its `[genesys]` table.
fn scenario_with(agents: u64, rate: f64, secs: f64, genesys: &str) -> Scenario {
    let text = format!(
        "{}\n[genesys]\npresence = true\nhold_share = 0.5\n{genesys}\n",
        small(agents, rate, secs, "target = \"genesys-events\"")
    );
    Scenario::from_toml(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

async fn run(sb: &Sandbox, s: &Scenario, dir: &Path) -> Result<RunReport, SimulateError> {
    let opts = RunOptions {
        out_dir: Some(dir.to_owned()),
        ..RunOptions::default()
    };
    simulate(s, &target(sb), opts).await
}

fn stats(sb: &Sandbox) -> Value {
    sb.state.stats.to_json()["genesys_events"].clone()
}

/// Each agent's last accepted state, from the audit file.
fn last_states(dir: &Path) -> HashMap<Uuid, AgentState> {
    let mut last = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["status"] != "accepted" {
            continue;
        }
        let agent: Uuid = v["agent_id"].as_str().unwrap().parse().unwrap();
        let state: AgentState = serde_json::from_value(v["state"].clone()).unwrap();
        let n = v["n"].as_u64().unwrap();
        let e = last.entry(agent).or_insert((n, state));
        if n >= e.0 {
            *e = (n, state);
        }
    }
    last.into_iter().map(|(a, (_, s))| (a, s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_events_api_and_both_sides_agree() {
    let sb = sandbox(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let report = run(&sb, &scenario(40, 20.0, 2.0), dir.path())
        .await
        .unwrap();
    let m = &report.summary.metrics;
    assert!(m.total_events > 100, "{m:?}");
    assert_eq!(m.successful_injections, m.total_events, "{m:?}");
    assert_eq!(m.missing + report.summary.extended.failed + m.rejected, 0);

    let g = report
        .summary
        .genesys
        .as_ref()
        .expect("the Events API figures");
    let total = g.events.total();
    let s = stats(&sb);
    assert_eq!(s["events_accepted"], total.accepted, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(total.refused + total.failed, 0);
    for kind in [
        "routingStatus",
        "presence",
        "userEstablished",
        "communicationAnswered",
        "holdUpdated",
        "communicationEnded",
    ] {
        assert!(
            g.events.by_kind.get(kind).is_some_and(|c| c.accepted > 0),
            "{kind} never sent: {:?}",
            g.events.by_kind
        );
    }
    assert_eq!(
        g.events.by_kind["routingStatus"].accepted, m.total_events,
        "one routing status per transition"
    );
    assert_eq!(
        g.events.by_kind["presence"].accepted, 40,
        "one presence per agent"
    );
    assert_eq!(report.summary.run.target, "genesys-events");

    // The platform's view of each agent is the simulator's last state, mapped.
    let users = sb.state.genesys.user_states("gcx-demo");
    for (agent, state) in last_states(dir.path()) {
        let snapshot = users.user(agent);
        let routing = snapshot.routing_status.expect("a routing status");
        assert_eq!(routing.status, routing_status(state), "{agent}");
        let open = snapshot
            .communications
            .iter()
            .filter(|c| c.disconnect_type.is_none())
            .count();
        let on_call = matches!(state, AgentState::Busy | AgentState::Connected);
        assert_eq!(open, usize::from(on_call), "{agent} in {state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_error_storm_loses_and_duplicates_nothing() {
    let sb = sandbox(Faults {
        genesys_event_error_rate: 0.4,
        genesys_event_retryable_share: 1.0,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let report = run(&sb, &scenario(30, 15.0, 2.0), dir.path())
        .await
        .unwrap();
    let m = &report.summary.metrics;
    assert_eq!(m.successful_injections, m.total_events, "{m:?}");
    assert!(m.retries > 0, "the storm was felt: {m:?}");
    let total = report.summary.genesys.as_ref().unwrap().events.total();
    let s = stats(&sb);
    assert_eq!(s["events_accepted"], total.accepted, "{s}");
    assert!(s["events_refused_retryable"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["duplicates"], 0, "an accepted event was sent again: {s}");
    assert_eq!(total.refused + total.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_refusals_are_counted_with_their_message_and_never_resent() {
    let sb = sandbox(Faults {
        genesys_event_error_rate: 0.2,
        genesys_event_retryable_share: 0.0,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let report = run(&sb, &scenario(30, 15.0, 1.5), dir.path())
        .await
        .unwrap();
    let g = &report.summary.genesys.as_ref().unwrap().events;
    let total = g.total();
    let s = stats(&sb);
    assert!(total.refused > 0);
    assert_eq!(s["events_refused"], total.refused, "{s}");
    assert_eq!(s["events_accepted"], total.accepted, "{s}");
    assert_eq!(g.refused_messages.values().sum::<u64>(), total.refused);
    let m = &report.summary.metrics;
    assert_eq!(
        m.successful_injections + m.rejected,
        m.total_events,
        "{m:?}"
    );
    assert_eq!(m.retries, 0, "nothing retryable, nothing re-sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_routing_status_inject_stops_at_its_first_answer() {
    let mut withheld = BTreeMap::new();
    withheld.insert(
        "gcx-demo".to_owned(),
        vec!["routing:routingstatus:inject".to_owned()],
    );
    let sb = sandbox(Faults {
        genesys_withheld_permissions: withheld,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let err = run(&sb, &scenario(200, 50.0, 30.0), dir.path())
        .await
        .expect_err("the run must stop");
    let text = err.to_string();
    assert!(text.contains("routing:routingstatus:inject"), "{text}");
    let s = stats(&sb);
    // Only the requests already on their way when the first 403 came back.
    assert!(s["forbidden"].as_u64().unwrap() <= 16, "{s}");
    let by = &s["by_endpoint"];
    assert_eq!(by["routingstatus"]["events_accepted"], 0, "{s}");
    assert_eq!(
        by["conversations"]["requests"], 0,
        "nothing after the 403 is sent: {s}"
    );
}

/// The observation of a run: every change observed, nothing unexpected.
fn check_observed(report: &RunReport) -> &gcx::desk::report::summary::ObservationSummary {
    let o = report
        .summary
        .genesys
        .as_ref()
        .and_then(|g| g.observation.as_ref())
        .expect("an observation");
    assert!(o.expected > 100, "{o:?}");
    assert_eq!(o.observed, o.expected, "{o:?}");
    assert_eq!(
        (o.unobserved, o.unexpected, o.unreadable),
        (0, 0, 0),
        "{o:?}"
    );
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observing_sees_every_accepted_change_after_the_processing_lag() {
    let sb = sandbox(Faults {
        genesys_processing_lag_ms: 40,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario_with(40, 20.0, 2.0, "observe = true\nobserve_grace = \"3s\"");
    let report = run(&sb, &s, dir.path()).await.unwrap();
    let m = &report.summary.metrics;
    assert_eq!(m.successful_injections, m.total_events, "{m:?}");
    let o = check_observed(&report);
    // The lag is felt: no change is notified before the sandbox applied it.
    assert!(o.p50_ms.unwrap() >= 40.0, "{o:?}");
    assert_eq!(o.watch["channels"], 1);
    let n = &sb.state.stats.to_json()["genesys_notifications"];
    assert_eq!(n["notifications_sent"], o.observed, "{n}");
    assert_eq!(n["notifications_dropped"], 0, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_storm_and_socket_closing_during_an_observed_run_lose_nothing() {
    let sb = sandbox(Faults {
        genesys_event_error_rate: 0.3,
        genesys_event_retryable_share: 1.0,
        genesys_socket_closing_every_ms: 400,
        genesys_socket_closing_grace_ms: 1000,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = scenario_with(30, 15.0, 2.5, "observe = true\nobserve_grace = \"3s\"");
    let report = run(&sb, &s, dir.path()).await.unwrap();
    let m = &report.summary.metrics;
    assert_eq!(m.successful_injections, m.total_events, "{m:?}");
    assert!(m.retries > 0, "{m:?}");
    let o = check_observed(&report);
    assert!(
        o.watch["socket_closing"].as_u64().unwrap() >= 2,
        "the sockets were moved: {}",
        o.watch
    );
    let n = &sb.state.stats.to_json()["genesys_notifications"];
    assert_eq!(n["notifications_dropped"], 0, "{n}");
    assert_eq!(stats(&sb)["duplicates"], 0);
}
