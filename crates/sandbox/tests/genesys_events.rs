//! End-to-end tests of the Events API emulation (PROTOCOL.md 9.1) against a real sandbox on
//! port 0: the three injection endpoints, their 400/403/429 answers, the per-event
//! retryable fault, idempotent re-sends, and the user state after the processing lag.

mod rest_support;

use std::time::Duration;

use gcx_sandbox::faults::draw;
use gcx_sandbox::genesys::user_state::UserSnapshot;
use rest_support::*;
use serde_json::{Value, json};
use uuid::Uuid;

const ROUTING: &str = "/api/v2/events/users/routingstatus";
const PRESENCE: &str = "/api/v2/events/users/presence";
const CONVERSATIONS: &str = "/api/v2/events/conversations";
const AT: &str = "2026-11-21T10:00:00.123Z";

impl Rest {
    async fn inject(&self, token: &str, path: &str, body: &Value) -> Answer {
        self.post_raw(
            path,
            Some(token),
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    async fn genesys_stats(&self) -> Value {
        self.stats().await["genesys_events"].clone()
    }

    fn user(&self, tenant: &str, user: Uuid) -> UserSnapshot {
        self.sandbox.state.genesys.user_states(tenant).user(user)
    }

    /// Polls the user state until `done` holds (at most 5 s).
    async fn user_when(
        &self,
        tenant: &str,
        user: Uuid,
        done: impl Fn(&UserSnapshot) -> bool,
    ) -> UserSnapshot {
        for _ in 0..500 {
            let snapshot = self.user(tenant, user);
            if done(&snapshot) {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "user {user} never reached the expected state: {:?}",
            self.user(tenant, user)
        );
    }
}

fn routing(event_id: Uuid, agent: Uuid, status: &str) -> Value {
    json!({"eventId": event_id, "eventDateTime": AT, "agentId": agent, "status": status,
           "sourceId": "external-platform"})
}

fn presence(user: Uuid, definition: Option<&str>) -> Value {
    let mut v = json!({"eventId": Uuid::new_v4(), "eventDateTime": AT, "userId": user,
                       "sourceId": Uuid::new_v4()});
    if let Some(d) = definition {
        v["presenceDefinitionId"] = json!(d);
        v["message"] = json!("on a call");
    }
    v
}

fn communication(conversation: Uuid, communication: Uuid) -> Value {
    json!({"eventId": Uuid::new_v4(), "eventDateTime": AT, "conversationId": conversation,
           "communicationId": communication})
}

fn established(conversation: Uuid, comm: Uuid, user: Uuid) -> Value {
    let mut v = communication(conversation, comm);
    v["userId"] = json!(user);
    v["initialConfiguration"] = json!({"audioState": {"canHear": true, "canSpeak": true}, "alerting": true, "inbound": true});
    v["sourceConfiguration"] = json!({"sourceId": "ext", "interactionId": "ext-42"});
    v
}

fn routing_batch(events: Vec<Value>) -> Value {
    json!({ "userRoutingStatusEvents": events })
}

fn detail_paths(a: &Answer) -> Vec<String> {
    a.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_endpoint_accepts_a_valid_batch() {
    let s = start_default().await;
    let token = s.token().await;
    let (agent, conversation, comm) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

    let a = s
        .inject(
            &token,
            ROUTING,
            &routing_batch(vec![routing(Uuid::new_v4(), agent, "Idle")]),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"errors": []}));
    a.assert_rest_headers();

    let a = s
        .inject(
            &token,
            PRESENCE,
            &json!({"userPresenceEvents": [presence(agent, None)]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"errors": []}));

    let mut ended = communication(conversation, comm);
    ended["disconnectType"] = json!("TransferACD");
    let mut hold = communication(conversation, comm);
    hold["held"] = json!(true);
    let body = json!({
        "userEstablishedEvents": [established(conversation, comm, agent)],
        "communicationAnsweredEvents": [communication(conversation, comm)],
        "holdUpdatedEvents": [hold],
        "communicationEndedEvents": [ended],
    });
    let a = s.inject(&token, CONVERSATIONS, &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"errors": []}));

    let g = s.genesys_stats().await;
    assert_eq!(g["requests"], 3);
    assert_eq!(g["events_accepted"], 6);
    assert_eq!(g["by_endpoint"]["conversations"]["events_accepted"], 4);
    assert_eq!(g["by_endpoint"]["routingstatus"]["requests"], 1);
}

#[tokio::test]
async fn batch_size_is_checked_over_all_arrays() {
    let s = start_default().await;
    let token = s.token().await;
    let agent = Uuid::new_v4();

    let many: Vec<Value> = (0..101)
        .map(|_| routing(Uuid::new_v4(), agent, "Idle"))
        .collect();
    let a = s.inject(&token, ROUTING, &routing_batch(many)).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "max.batch.size.surpassed");

    let (c, m) = (Uuid::new_v4(), Uuid::new_v4());
    let answered: Vec<Value> = (0..60).map(|_| communication(c, m)).collect();
    let held: Vec<Value> = (0..41)
        .map(|_| {
            let mut h = communication(c, m);
            h["held"] = json!(false);
            h
        })
        .collect();
    let a = s
        .inject(
            &token,
            CONVERSATIONS,
            &json!({"communicationAnsweredEvents": answered, "holdUpdatedEvents": held}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "max.batch.size.surpassed");

    for (path, body) in [
        (PRESENCE, json!({"userPresenceEvents": []})),
        (CONVERSATIONS, json!({})),
        (ROUTING, json!({"userRoutingStatusEvents": null})),
    ] {
        let a = s.inject(&token, path, &body).await;
        assert_eq!(a.status, 400, "{path}");
        assert_eq!(a.error_code(), "zero.events.submitted", "{path}");
    }
    let g = s.genesys_stats().await;
    assert_eq!(g["invalid"], 5);
    assert_eq!(g["events_accepted"], 0);
}

#[tokio::test]
async fn a_broken_batch_lists_every_violation_and_processes_nothing() {
    let s = start_default().await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let good = routing(Uuid::new_v4(), agent, "Idle");
    let mut broken = routing(Uuid::new_v4(), agent, "OFF_QUEUE");
    broken["eventId"] = json!("not-a-uuid");
    broken["eventDateTime"] = json!("21/11/2026");
    broken.as_object_mut().unwrap().remove("sourceId");
    let a = s
        .inject(&token, ROUTING, &routing_batch(vec![good, broken]))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "bad.request");
    assert_eq!(
        detail_paths(&a),
        [
            "/userRoutingStatusEvents/1/eventId",
            "/userRoutingStatusEvents/1/eventDateTime",
            "/userRoutingStatusEvents/1/status",
            "/userRoutingStatusEvents/1/sourceId",
        ]
    );
    assert_eq!(a.body["details"][2]["code"], "enum");
    assert!(s.user("gcx-demo", agent).routing_status.is_none());

    let a = s
        .post_raw(ROUTING, Some(&token), Some("text/plain"), b"{}".to_vec())
        .await;
    assert_eq!(a.status, 415);
}

#[tokio::test]
async fn a_missing_permission_is_403_naming_it_while_other_endpoints_work() {
    let s = start_default().await;
    let a = s
        .put_faults(
            json!({"genesys_withheld_permissions": {"other": ["routing:routingstatus:inject"]}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = s.token_for("other", "other-secret").await;
    let agent = Uuid::new_v4();

    let a = s
        .inject(
            &token,
            ROUTING,
            &routing_batch(vec![routing(Uuid::new_v4(), agent, "Idle")]),
        )
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_code(), "missing.permissions");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("missing the following permission(s): [routing:routingstatus:inject]"),
        "{}",
        a.body
    );

    let a = s
        .inject(
            &token,
            PRESENCE,
            &json!({"userPresenceEvents": [presence(agent, None)]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The demo client keeps every permission; no token is 401.
    let demo = s.token().await;
    let body = routing_batch(vec![routing(Uuid::new_v4(), agent, "Idle")]);
    assert_eq!(s.inject(&demo, ROUTING, &body).await.status, 200);
    let a = s
        .post_raw(ROUTING, None, Some("application/json"), b"{}".to_vec())
        .await;
    assert_eq!(a.status, 401);

    let a = s
        .put_faults(json!({"genesys_withheld_permissions": {"other": ["routing:nonsense"]}}))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(s.genesys_stats().await["forbidden"], 1);
}

#[tokio::test]
async fn refused_events_are_listed_and_retryable_ones_are_taken_on_resend() {
    let s = start_default().await;
    let seed = 11;
    s.put_faults(
        json!({"genesys_event_error_rate": 1.0, "genesys_event_retryable_share": 0.5,
                        "seed": seed}),
    )
    .await;
    let token = s.token().await;
    let agent = Uuid::new_v4();
    let events: Vec<Value> = (0..40)
        .map(|_| routing(Uuid::new_v4(), agent, "Interacting"))
        .collect();
    let retryable: Vec<String> = events
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_owned())
        .filter(|id| draw(seed, "genesys_event_retryable", id) < 0.5)
        .collect();
    assert!(!retryable.is_empty() && retryable.len() < 40);

    let a = s
        .inject(&token, ROUTING, &routing_batch(events.clone()))
        .await;
    assert_eq!(a.status, 200);
    let errors = a.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 40);
    let listed: Vec<&str> = errors
        .iter()
        .filter(|e| e["retryable"] == true)
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, retryable);
    assert!(s.user("gcx-demo", agent).routing_status.is_none());

    // The same batch again, fault still on: retryable ones are accepted, the rest refused
    // again, still not retryable.
    let a = s
        .inject(&token, ROUTING, &routing_batch(events.clone()))
        .await;
    let errors = a.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 40 - retryable.len());
    assert!(errors.iter().all(|e| e["retryable"] == false));
    assert!(
        errors
            .iter()
            .all(|e| !retryable.contains(&e["eventId"].as_str().unwrap().to_owned()))
    );
    let state = s.user("gcx-demo", agent);
    assert_eq!(
        serde_json::to_value(state.routing_status.unwrap().status).unwrap(),
        "Interacting"
    );

    // Accepted ones sent a third time are accepted again, not counted twice.
    let again: Vec<Value> = events
        .iter()
        .filter(|e| retryable.contains(&e["eventId"].as_str().unwrap().to_owned()))
        .cloned()
        .collect();
    let a = s.inject(&token, ROUTING, &routing_batch(again)).await;
    assert_eq!(a.body, json!({"errors": []}));
    let g = s.genesys_stats().await;
    assert_eq!(g["events_accepted"], retryable.len());
    assert_eq!(g["duplicates"], retryable.len());
    assert_eq!(g["events_refused_retryable"], retryable.len());
    assert_eq!(g["events_refused"], 40 + 40 - retryable.len());
}

#[tokio::test]
async fn the_user_state_reflects_the_events_after_the_processing_lag() {
    let s = start_default().await;
    s.put_faults(json!({"genesys_processing_lag_ms": 300}))
        .await;
    let token = s.token().await;
    let (agent, conversation, comm) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

    let defs = s
        .http
        .get(format!("{}/api/v2/presence/definitions", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let busy = defs["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["systemPresence"] == "Busy")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(defs["total"], 10);

    let mut changes = s.sandbox.state.genesys.user_states("gcx-demo").subscribe();
    let batch = routing_batch(vec![
        routing(Uuid::new_v4(), agent, "Idle"),
        routing(Uuid::new_v4(), agent, "Communicating"),
    ]);
    assert_eq!(s.inject(&token, ROUTING, &batch).await.status, 200);
    let body = json!({"userPresenceEvents": [presence(agent, Some(&busy))]});
    assert_eq!(s.inject(&token, PRESENCE, &body).await.status, 200);
    let mut hold = communication(conversation, comm);
    hold["held"] = json!(true);
    let body = json!({"userEstablishedEvents": [established(conversation, comm, agent)],
                      "communicationAnsweredEvents": [communication(conversation, comm)],
                      "holdUpdatedEvents": [hold]});
    assert_eq!(s.inject(&token, CONVERSATIONS, &body).await.status, 200);

    // Within the lag nothing shows yet.
    assert_eq!(s.user("gcx-demo", agent), UserSnapshot::default());

    let state = s
        .user_when("gcx-demo", agent, |u| {
            u.routing_status.is_some() && u.presence.is_some() && !u.communications.is_empty()
        })
        .await;
    let routing = state.routing_status.unwrap();
    assert_eq!(
        serde_json::to_value(routing.status).unwrap(),
        "Communicating"
    );
    let presence = state.presence.unwrap();
    assert_eq!(presence.system_presence, Some("Busy"));
    assert_eq!(presence.message.as_deref(), Some("on a call"));
    let c = &state.communications[0];
    assert_eq!(
        (c.conversation_id, c.communication_id),
        (conversation, comm)
    );
    // Conversation arrays apply in the SDK model's order: answered and hold reach a
    // communication that established then names.
    assert!(c.answered && c.held && c.user_id == Some(agent));

    let first = changes.recv().await.unwrap();
    assert!(matches!(
        first,
        gcx_sandbox::genesys::user_state::UserChange::RoutingStatus { user_id, .. } if user_id == agent
    ));
}

#[tokio::test]
async fn the_per_minute_window_answers_429_with_retry_after() {
    let s = start_default().await;
    s.put_faults(json!({"genesys_requests_per_minute": 1}))
        .await;
    let token = s.token().await;
    let body = routing_batch(vec![routing(Uuid::new_v4(), Uuid::new_v4(), "OffQueue")]);
    assert_eq!(s.inject(&token, ROUTING, &body).await.status, 200);
    let a = s.inject(&token, ROUTING, &body).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.error_code(), "too.many.requests.retry.after");
    assert!(a.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Windows are per endpoint.
    let body = json!({"userPresenceEvents": [presence(Uuid::new_v4(), None)]});
    assert_eq!(s.inject(&token, PRESENCE, &body).await.status, 200);
    assert_eq!(s.genesys_stats().await["rate_limited"], 1);
}
