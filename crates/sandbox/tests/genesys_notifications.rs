//! End-to-end tests of the Notifications API emulation (PROTOCOL.md 9.2) against a real
//! sandbox on port 0 with real sockets: channels and their caps, subscriptions, the socket
//! (heartbeats, ping/pong, one socket per channel, `socket_closing`), and the
//! notifications that events injected through the Events API (9.1) cause.

mod rest_support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gcx_protocol::genesys_notifications::{
    CODE_TOO_MANY_TOPICS, ConversationBody, MAX_CHANNELS, Notification, PING_FRAME, PresenceBody,
    RoutingStatusBody,
};
use gcx_sandbox::{Faults, SandboxOptions};
use reqwest::Method;
use rest_support::*;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

const CHANNELS: &str = "/api/v2/notifications/channels";
const ROUTING: &str = "/api/v2/events/users/routingstatus";
const PRESENCE: &str = "/api/v2/events/users/presence";
const CONVERSATIONS: &str = "/api/v2/events/conversations";
const AT: &str = "2026-11-21T10:00:00.123Z";
/// How long any single expected frame may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Rest {
    /// Any request with an optional bearer token and JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn create_channel(&self, token: &str) -> Value {
        let a = self.call(Method::POST, CHANNELS, Some(token), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    async fn subscribe(
        &self,
        token: &str,
        method: Method,
        channel: &Value,
        topics: &[String],
    ) -> Answer {
        let body: Vec<Value> = topics.iter().map(|t| json!({"id": t})).collect();
        self.call(
            method,
            &subscriptions(channel),
            Some(token),
            Some(&json!(body)),
        )
        .await
    }

    async fn inject(&self, token: &str, path: &str, body: Value) {
        let a = self
            .call(Method::POST, path, Some(token), Some(&body))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body, json!({"errors": []}));
    }

    async fn routing(&self, token: &str, changes: &[(Uuid, &str)]) {
        let events: Vec<Value> = changes
            .iter()
            .map(|(agent, status)| {
                json!({"eventId": Uuid::new_v4(), "eventDateTime": AT, "agentId": agent,
                       "status": status, "sourceId": "external-platform"})
            })
            .collect();
        self.inject(token, ROUTING, json!({ "userRoutingStatusEvents": events }))
            .await;
    }

    async fn notification_stats(&self) -> Value {
        self.stats().await["genesys_notifications"].clone()
    }

    /// Polls the stats until `done` holds (at most `WAIT`).
    async fn stats_when(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = self.notification_stats().await;
            if done(&stats) {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stats never got there: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn subscriptions(channel: &Value) -> String {
    format!(
        "{CHANNELS}/{}/subscriptions",
        channel["id"].as_str().unwrap()
    )
}

fn topic(user: Uuid, kind: &str) -> String {
    format!("v2.users.{user}.{kind}")
}

fn states(a: &Answer) -> Vec<(String, String)> {
    a.body["entities"]
        .as_array()
        .unwrap_or_else(|| panic!("no entities: {}", a.body))
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn connect(channel: &Value) -> Ws {
    let uri = channel["connectUri"].as_str().unwrap();
    tokio_tungstenite::connect_async(uri).await.unwrap().0
}

/// The next frame as JSON, or `Err` with the close frame when the socket closes.
async fn next_frame(ws: &mut Ws) -> Result<Value, Option<CloseFrame>> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait");
        match message {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return Err(frame),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return Err(None),
        }
    }
}

/// The next notification that is not `channel.metadata`.
async fn next_notification(ws: &mut Ws) -> Value {
    loop {
        match next_frame(ws).await {
            Ok(v) if v["topicName"] == "channel.metadata" => continue,
            Ok(v) => return v,
            Err(close) => panic!("the socket closed ({close:?}) before a notification"),
        }
    }
}

/// Every notification (not metadata) until the socket closes, and its close frame.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<CloseFrame>) {
    let mut seen = Vec::new();
    loop {
        match next_frame(ws).await {
            Ok(v) if v["topicName"] == "channel.metadata" => {}
            Ok(v) => seen.push(v),
            Err(close) => return (seen, close),
        }
    }
}

fn routing_status(n: &Value) -> (Uuid, String) {
    let n: Notification<RoutingStatusBody> = serde_json::from_value(n.clone()).unwrap();
    let status = serde_json::to_value(n.event_body.routing_status.status).unwrap();
    (n.event_body.id, status.as_str().unwrap().to_owned())
}

fn communication(conversation: Uuid, comm: Uuid) -> Value {
    json!({"eventId": Uuid::new_v4(), "eventDateTime": AT, "conversationId": conversation,
           "communicationId": comm})
}

async fn start_with(faults: Faults) -> Rest {
    start(SandboxOptions {
        faults,
        clients: vec![gcx_sandbox::ClientSpec::demo(), other_client()],
        ..SandboxOptions::default()
    })
    .await
}

#[tokio::test]
async fn channels_need_a_token_and_belong_to_their_client() {
    let s = start_default().await;
    let a = s.call(Method::POST, CHANNELS, None, None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_code(), "authentication.required");
    let a = s.call(Method::GET, CHANNELS, Some("nonsense"), None).await;
    assert_eq!(a.status, 401);

    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    assert!(Uuid::parse_str(id).is_ok());
    assert_eq!(
        channel["connectUri"],
        format!("ws://{}/channels/{id}", s.sandbox.addr)
    );
    let expires = gcx_protocol::time::parse(channel["expires"].as_str().unwrap()).unwrap();
    let left = expires - chrono::Utc::now();
    assert!(left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24));

    let a = s.call(Method::GET, CHANNELS, Some(&token), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["entities"], json!([channel]));
    let verify = format!("{CHANNELS}/{id}");
    assert_eq!(
        s.call(Method::HEAD, &verify, Some(&token), None)
            .await
            .status,
        200
    );

    // Another client sees none of it.
    let other = s.token_for("other", "other-secret").await;
    let a = s.call(Method::GET, CHANNELS, Some(&other), None).await;
    assert_eq!(a.body["entities"], json!([]));
    let a = s
        .subscribe(
            &other,
            Method::PUT,
            &channel,
            &[topic(Uuid::new_v4(), "presence")],
        )
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "not.found");
    assert_eq!(
        s.call(Method::HEAD, &verify, Some(&other), None)
            .await
            .status,
        404
    );
    let a = s.call(Method::PATCH, CHANNELS, Some(&token), None).await;
    assert_eq!(a.status, 405);

    let stats = s.notification_stats().await;
    assert_eq!(stats["channels_created"], 1);
}

#[tokio::test]
async fn subscriptions_permit_user_topics_and_reject_the_rest() {
    let s = start_default().await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let known: Vec<String> = [u1, u2]
        .iter()
        .flat_map(|u| ["routingStatus", "presence", "conversations"].map(|k| topic(*u, k)))
        .collect();
    let mut requested = known.clone();
    requested.push("v2.users.not-a-uuid.presence".into());
    requested.push(topic(u1, "geolocation"));
    let a = s
        .subscribe(&token, Method::POST, &channel, &requested)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let answered = states(&a);
    assert_eq!(answered.len(), 8);
    let permitted: Vec<&String> = answered
        .iter()
        .filter(|(_, state)| state == "Permitted")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(permitted.len(), 6);
    assert!(known.iter().all(|t| permitted.contains(&t)));
    for rejected in &a.body["entities"].as_array().unwrap()[6..] {
        assert_eq!(rejected["state"], "Rejected");
        assert!(
            rejected["rejectionReason"]
                .as_str()
                .unwrap()
                .contains("unknown topic"),
            "{rejected}"
        );
        assert!(rejected.get("missingPermissions").is_none());
    }

    let a = s
        .call(Method::GET, &subscriptions(&channel), Some(&token), None)
        .await;
    assert_eq!(states(&a).len(), 6);

    // PUT replaces, POST adds, DELETE removes everything.
    let a = s
        .subscribe(&token, Method::PUT, &channel, &[topic(u1, "presence")])
        .await;
    assert_eq!(
        states(&a),
        [(topic(u1, "presence"), "Permitted".to_owned())]
    );
    let a = s
        .subscribe(&token, Method::POST, &channel, &[topic(u2, "presence")])
        .await;
    assert_eq!(states(&a).len(), 2);
    let a = s
        .call(Method::DELETE, &subscriptions(&channel), Some(&token), None)
        .await;
    assert_eq!(a.status, 204);
    let a = s
        .call(Method::GET, &subscriptions(&channel), Some(&token), None)
        .await;
    assert_eq!(a.body, json!({"entities": []}));

    // An unknown channel, a broken body.
    let nowhere = json!({"id": Uuid::new_v4().to_string()});
    let a = s.subscribe(&token, Method::POST, &nowhere, &known).await;
    assert_eq!(a.status, 404);
    let a = s
        .call(
            Method::POST,
            &subscriptions(&channel),
            Some(&token),
            Some(&json!([{"id": 1}, {}, "v2.users.x.presence", {"id": topic(u1, "presence")}])),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "bad.request");
    let paths: Vec<&str> = a.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/0/id", "/1/id", "/2"]);
    let a = s
        .call(Method::GET, &subscriptions(&channel), Some(&token), None)
        .await;
    assert_eq!(
        a.body,
        json!({"entities": []}),
        "a refused body changes nothing"
    );

    let stats = s.notification_stats().await;
    assert_eq!(stats["topics_permitted"], 8);
    assert_eq!(stats["topics_rejected"], 2);
}

#[tokio::test]
async fn more_than_1000_topics_are_refused_and_change_nothing() {
    let s = start_default().await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let users: Vec<Uuid> = (0..1001).map(|_| Uuid::new_v4()).collect();
    let topics: Vec<String> = users.iter().map(|u| topic(*u, "routingStatus")).collect();

    let a = s.subscribe(&token, Method::PUT, &channel, &topics).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), CODE_TOO_MANY_TOPICS);
    let message = a.body["message"].as_str().unwrap();
    assert!(
        message.contains("1001") && message.contains("1000"),
        "{message}"
    );
    let a = s
        .call(Method::GET, &subscriptions(&channel), Some(&token), None)
        .await;
    assert_eq!(a.body, json!({"entities": []}));

    let a = s
        .subscribe(&token, Method::PUT, &channel, &topics[..1000])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(states(&a).len(), 1000);
    let a = s
        .subscribe(&token, Method::POST, &channel, &topics[1000..])
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), CODE_TOO_MANY_TOPICS);
    let a = s
        .call(Method::GET, &subscriptions(&channel), Some(&token), None)
        .await;
    let held = states(&a);
    assert_eq!(held.len(), 1000);
    assert!(!held.iter().any(|(id, _)| *id == topics[1000]));
}

#[tokio::test]
async fn a_21st_channel_removes_the_least_recently_used_one_without_a_socket() {
    let s = start_default().await;
    let token = s.token().await;
    let mut channels = Vec::new();
    for _ in 0..MAX_CHANNELS {
        channels.push(s.create_channel(&token).await);
    }
    // The oldest is used again; the second has a socket: the third goes.
    let a = s
        .call(
            Method::GET,
            &subscriptions(&channels[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    let mut ws = connect(&channels[1]).await;
    s.stats_when(|st| st["sockets_open"] == 1).await;
    let newest = s.create_channel(&token).await;

    let a = s.call(Method::GET, CHANNELS, Some(&token), None).await;
    let ids: Vec<&str> = a.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), MAX_CHANNELS);
    assert!(!ids.contains(&channels[2]["id"].as_str().unwrap()));
    assert!(ids.contains(&channels[0]["id"].as_str().unwrap()));
    assert!(ids.contains(&channels[1]["id"].as_str().unwrap()));
    assert_eq!(ids.last(), Some(&newest["id"].as_str().unwrap()));
    let a = s
        .subscribe(
            &token,
            Method::POST,
            &channels[2],
            &[topic(Uuid::new_v4(), "presence")],
        )
        .await;
    assert_eq!(a.status, 404);
    let stats = s.notification_stats().await;
    assert_eq!(stats["channels_created"], MAX_CHANNELS + 1);
    assert_eq!(stats["channels_evicted"], 1);

    // A removed channel's socket address answers 404.
    let refused =
        tokio_tungstenite::connect_async(channels[2]["connectUri"].as_str().unwrap()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn routing_status_notifications_arrive_in_order_and_only_on_change() {
    let s = start_default().await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let (u1, u2, unwatched) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let a = s
        .subscribe(
            &token,
            Method::PUT,
            &channel,
            &[topic(u1, "routingStatus"), topic(u2, "routingStatus")],
        )
        .await;
    assert_eq!(a.status, 200);
    let mut ws = connect(&channel).await;
    s.stats_when(|st| st["sockets_open"] == 1).await;

    s.routing(
        &token,
        &[
            (u1, "Idle"),
            (u2, "Interacting"),
            (unwatched, "Idle"),
            (u1, "Interacting"),
            (u1, "Interacting"),
            (u2, "Interacting"),
            (u1, "OffQueue"),
        ],
    )
    .await;
    // A same-status request gives nothing either; the marker after it comes next.
    s.routing(&token, &[(u2, "Interacting")]).await;
    s.routing(&token, &[(u2, "NotResponding")]).await;

    let mut seen = Vec::new();
    for _ in 0..5 {
        let n = next_notification(&mut ws).await;
        assert_eq!(n["version"], "2");
        assert!(Uuid::parse_str(n["metadata"]["CorrelationId"].as_str().unwrap()).is_ok());
        let (user, status) = routing_status(&n);
        assert_eq!(n["topicName"], topic(user, "routingStatus"));
        assert_eq!(n["eventBody"]["routingStatus"]["startTime"], AT);
        seen.push((user, status));
    }
    assert_eq!(
        seen,
        [
            (u1, "IDLE".to_owned()),
            (u2, "INTERACTING".to_owned()),
            (u1, "INTERACTING".to_owned()),
            (u1, "OFF_QUEUE".to_owned()),
            (u2, "NOT_RESPONDING".to_owned()),
        ]
    );
    let stats = s.notification_stats().await;
    assert_eq!(stats["notifications_sent"], 5);
    assert_eq!(stats["notifications_dropped"], 0);
}

#[tokio::test]
async fn presence_and_conversation_notifications_carry_their_bodies() {
    let s = start_default().await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let user = Uuid::new_v4();
    let a = s
        .subscribe(
            &token,
            Method::PUT,
            &channel,
            &[topic(user, "presence"), topic(user, "conversations")],
        )
        .await;
    assert_eq!(a.status, 200);
    let mut ws = connect(&channel).await;
    s.stats_when(|st| st["sockets_open"] == 1).await;

    let definitions = s
        .call(
            Method::GET,
            "/api/v2/presence/definitions",
            Some(&token),
            None,
        )
        .await;
    let definition = |name: &str| {
        definitions.body["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["systemPresence"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (busy, available) = (definition("Busy"), definition("Available"));
    let presence = |definition: &str, message: &str| {
        json!({"userPresenceEvents": [{"eventId": Uuid::new_v4(), "eventDateTime": AT,
               "userId": user, "sourceId": Uuid::nil(), "presenceDefinitionId": definition,
               "message": message}]})
    };
    s.inject(&token, PRESENCE, presence(&busy, "on a call"))
        .await;
    s.inject(&token, PRESENCE, presence(&busy, "on a call"))
        .await;
    s.inject(&token, PRESENCE, presence(&available, "on a call"))
        .await;
    let n = next_notification(&mut ws).await;
    assert_eq!(n["topicName"], topic(user, "presence"));
    let body: PresenceBody = serde_json::from_value(n["eventBody"].clone()).unwrap();
    assert_eq!(body.presence_definition.id.to_string(), busy);
    assert_eq!(
        body.presence_definition.system_presence.as_deref(),
        Some("Busy")
    );
    assert_eq!(body.message.as_deref(), Some("on a call"));
    assert_eq!(body.modified_date.as_deref(), Some(AT));
    assert_eq!(
        body.source.as_deref(),
        Some(Uuid::nil().to_string().as_str())
    );
    // The same definition and message again is no change: the next one is Available.
    let n = next_notification(&mut ws).await;
    let body: PresenceBody = serde_json::from_value(n["eventBody"].clone()).unwrap();
    assert_eq!(
        body.presence_definition.system_presence.as_deref(),
        Some("Available")
    );

    let (conversation, comm) = (Uuid::new_v4(), Uuid::new_v4());
    let mut established = communication(conversation, comm);
    established["userId"] = json!(user);
    established["initialConfiguration"] = json!({"alerting": true, "inbound": true});
    established["sourceConfiguration"] = json!({"sourceId": "ext", "interactionId": "ext-1"});
    let mut hold = communication(conversation, comm);
    hold["held"] = json!(true);
    let mut ended = communication(conversation, comm);
    ended["disconnectType"] = json!("Peer");
    for body in [
        json!({"userEstablishedEvents": [established]}),
        json!({"communicationAnsweredEvents": [communication(conversation, comm)]}),
        json!({"holdUpdatedEvents": [hold]}),
        json!({"communicationEndedEvents": [ended]}),
    ] {
        s.inject(&token, CONVERSATIONS, body).await;
    }
    let mut calls = Vec::new();
    let mut participant_ids = Vec::new();
    for _ in 0..4 {
        let n = next_notification(&mut ws).await;
        assert_eq!(n["topicName"], topic(user, "conversations"));
        let body: ConversationBody = serde_json::from_value(n["eventBody"].clone()).unwrap();
        assert_eq!(body.id, conversation);
        assert_eq!(body.participants.len(), 1);
        let p = &body.participants[0];
        assert_eq!(
            (p.user_id, p.purpose.as_deref()),
            (Some(user), Some("agent"))
        );
        participant_ids.push(p.id);
        assert_eq!(p.calls.len(), 1);
        let call = &p.calls[0];
        assert_eq!(call.id, comm);
        calls.push((
            serde_json::to_value(call.state).unwrap(),
            call.held,
            call.disconnect_type.clone(),
        ));
    }
    assert_eq!(
        calls,
        [
            (json!("alerting"), false, None),
            (json!("connected"), false, None),
            (json!("connected"), true, None),
            (json!("disconnected"), false, Some("peer".to_owned())),
        ]
    );
    assert!(participant_ids.iter().all(|id| *id == participant_ids[0]));
}

#[tokio::test]
async fn a_ping_is_answered_and_heartbeats_come_at_the_set_interval() {
    let s = start_with(Faults {
        genesys_heartbeat_ms: 50,
        ..Faults::default()
    })
    .await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let mut ws = connect(&channel).await;
    let mut heartbeats = 0;
    while heartbeats < 3 {
        let frame = next_frame(&mut ws).await.expect("open");
        assert_eq!(
            frame,
            json!({"topicName": "channel.metadata",
                                 "eventBody": {"message": "WebSocket Heartbeat"}})
        );
        heartbeats += 1;
    }
    ws.send(Message::text(PING_FRAME)).await.unwrap();
    ws.send(Message::text(r#"{"message":"hello"}"#))
        .await
        .unwrap();
    loop {
        let frame = next_frame(&mut ws).await.expect("open");
        if frame["eventBody"]["message"] == "pong" {
            assert_eq!(frame["topicName"], "channel.metadata");
            break;
        }
        assert_eq!(frame["eventBody"]["message"], "WebSocket Heartbeat");
    }
    let stats = s.notification_stats().await;
    assert!(stats["heartbeats_sent"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["pongs_sent"], 1);

    // A live change of the interval applies to open sockets. The socket reads the change
    // before the next client frame, so after the pong no heartbeat comes at 1 h.
    let a = s
        .put_faults(json!({"genesys_heartbeat_ms": 3_600_000}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    ws.send(Message::text(PING_FRAME)).await.unwrap();
    loop {
        let frame = next_frame(&mut ws).await.expect("open");
        if frame["eventBody"]["message"] == "pong" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(Message::text(PING_FRAME)).await.unwrap();
    let frame = next_frame(&mut ws).await.expect("open");
    assert_eq!(frame["eventBody"]["message"], "pong", "{frame}");

    let a = s.put_faults(json!({"genesys_heartbeat_ms": 0})).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn a_second_socket_disconnects_the_first_and_takes_the_notifications() {
    let s = start_default().await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let user = Uuid::new_v4();
    s.subscribe(
        &token,
        Method::PUT,
        &channel,
        &[topic(user, "routingStatus")],
    )
    .await;
    let mut first = connect(&channel).await;
    s.stats_when(|st| st["sockets_open"] == 1).await;
    s.routing(&token, &[(user, "Idle")]).await;
    assert_eq!(
        routing_status(&next_notification(&mut first).await).1,
        "IDLE"
    );

    let mut second = connect(&channel).await;
    let (missed, close) = until_closed(&mut first).await;
    assert!(missed.is_empty(), "{missed:?}");
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1000);
    assert!(close.reason.contains("replaced"), "{close:?}");

    s.routing(&token, &[(user, "Interacting")]).await;
    assert_eq!(
        routing_status(&next_notification(&mut second).await).1,
        "INTERACTING"
    );
    let stats = s.stats_when(|st| st["sockets_closed"] == 1).await;
    assert_eq!(stats["sockets_opened"], 2);
    assert_eq!(stats["sockets_replaced"], 1);
    assert_eq!(stats["sockets_open"], 1);
}

#[tokio::test]
async fn socket_closing_then_a_new_socket_within_the_grace_misses_nothing() {
    let s = start_with(Faults {
        genesys_socket_closing_every_ms: 200,
        genesys_socket_closing_grace_ms: 30_000,
        ..Faults::default()
    })
    .await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let user = Uuid::new_v4();
    s.subscribe(
        &token,
        Method::PUT,
        &channel,
        &[topic(user, "routingStatus")],
    )
    .await;
    let mut old = connect(&channel).await;
    let notice = next_notification(&mut old).await;
    assert_eq!(notice["topicName"], "v2.system.socket_closing");
    assert!(
        notice["eventBody"]["message"]
            .as_str()
            .unwrap()
            .contains("30000 ms")
    );
    // The replacement gets no notice of its own.
    let a = s
        .put_faults(json!({"genesys_socket_closing_every_ms": 0}))
        .await;
    assert_eq!(a.status, 200);

    // Within the grace the old socket still takes notifications, then the new one does.
    let statuses = [
        "Idle",
        "Interacting",
        "OffQueue",
        "Communicating",
        "NotResponding",
        "Idle",
    ];
    s.routing(&token, &[(user, statuses[0]), (user, statuses[1])])
        .await;
    let mut new = connect(&channel).await;
    s.routing(&token, &[(user, statuses[2])]).await;
    s.routing(
        &token,
        &[
            (user, statuses[3]),
            (user, statuses[4]),
            (user, statuses[5]),
        ],
    )
    .await;

    let (on_old, close) = until_closed(&mut old).await;
    assert!(close.is_some());
    let mut received: Vec<String> = on_old.iter().map(|n| routing_status(n).1).collect();
    while received.len() < statuses.len() {
        received.push(routing_status(&next_notification(&mut new).await).1);
    }
    assert_eq!(
        received,
        [
            "IDLE",
            "INTERACTING",
            "OFF_QUEUE",
            "COMMUNICATING",
            "NOT_RESPONDING",
            "IDLE"
        ]
    );
    let stats = s.notification_stats().await;
    assert_eq!(stats["socket_closing_sent"], 1);
    assert_eq!(stats["notifications_sent"], 6);
    assert_eq!(stats["notifications_dropped"], 0);
}

#[tokio::test]
async fn socket_closing_without_a_new_socket_ends_in_a_1001() {
    let s = start_with(Faults {
        genesys_socket_closing_every_ms: 100,
        genesys_socket_closing_grace_ms: 100,
        ..Faults::default()
    })
    .await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let mut ws = connect(&channel).await;
    let notice = next_notification(&mut ws).await;
    assert_eq!(notice["topicName"], "v2.system.socket_closing");
    let (after, close) = until_closed(&mut ws).await;
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(u16::from(close.expect("a close frame").code), 1001);
    s.stats_when(|st| st["sockets_closed"] == 1 && st["sockets_open"] == 0)
        .await;
}

#[tokio::test]
async fn a_withheld_view_permission_rejects_its_topics() {
    let s = start_default().await;
    let a = s
        .put_faults(
            json!({"genesys_withheld_permissions": {"gcx-demo": ["presence:userPresence:view"]}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let user = Uuid::new_v4();
    let a = s
        .subscribe(
            &token,
            Method::PUT,
            &channel,
            &[topic(user, "presence"), topic(user, "routingStatus")],
        )
        .await;
    assert_eq!(a.status, 200);
    let entities = a.body["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 2);
    assert_eq!(entities[0]["id"], topic(user, "routingStatus"));
    assert_eq!(entities[0]["state"], "Permitted");
    assert_eq!(entities[1]["id"], topic(user, "presence"));
    assert_eq!(entities[1]["state"], "Rejected");
    assert_eq!(
        entities[1]["missingPermissions"],
        json!(["presence:userPresence:view"])
    );
    assert!(entities[1]["rejectionReason"].is_string());

    // The other client keeps the permission; a permission the sandbox does not know is
    // refused.
    let other = s.token_for("other", "other-secret").await;
    let theirs = s.create_channel(&other).await;
    let a = s
        .subscribe(&other, Method::PUT, &theirs, &[topic(user, "presence")])
        .await;
    assert_eq!(
        states(&a),
        [(topic(user, "presence"), "Permitted".to_owned())]
    );
    let a = s
        .put_faults(
            json!({"genesys_withheld_permissions": {"gcx-demo": ["presence:nonsense:view"]}}),
        )
        .await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn nothing_is_kept_for_a_channel_without_a_socket() {
    let s = start_default().await;
    let token = s.token().await;
    let channel = s.create_channel(&token).await;
    let user = Uuid::new_v4();
    s.subscribe(
        &token,
        Method::PUT,
        &channel,
        &[topic(user, "routingStatus")],
    )
    .await;
    s.routing(
        &token,
        &[(user, "Idle"), (user, "Interacting"), (user, "OffQueue")],
    )
    .await;
    s.stats_when(|st| st["notifications_dropped"] == 3).await;

    let mut ws = connect(&channel).await;
    s.stats_when(|st| st["sockets_open"] == 1).await;
    s.routing(&token, &[(user, "Communicating")]).await;
    assert_eq!(
        routing_status(&next_notification(&mut ws).await).1,
        "COMMUNICATING"
    );
    ws.close(None).await.unwrap();
    s.stats_when(|st| st["sockets_open"] == 0).await;
    s.routing(&token, &[(user, "Idle")]).await;
    let stats = s.stats_when(|st| st["notifications_dropped"] == 4).await;
    assert_eq!(stats["notifications_sent"], 1);

    // A reset zeroes the counters.
    let reset = s
        .call(Method::POST, "/sandbox/stats/reset", None, None)
        .await;
    assert_eq!(
        reset.body["genesys_notifications"]["notifications_dropped"],
        0
    );
    assert_eq!(reset.body["genesys_notifications"]["channels_created"], 0);
}
