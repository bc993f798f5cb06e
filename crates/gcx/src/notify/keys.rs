//! What a notification shows, as keys an injected event can be matched on: [`ObsKey`]
//! (a user's routing status, presence, or one call's state) and [`KeyReader`], which reads
//! an [`Observed`] into the keys it shows.
//!
//! A conversation notification repeats every call of the conversation, changed or not, so
//! the reader remembers the last (state, held) it saw per user and communication and
//! yields a key only for a call of the topic's user that is new or changed.

use std::collections::{HashMap, VecDeque};

use gcx_protocol::genesys_notifications::{
    CallState, ConversationBody, NotifiedRoutingStatus, PresenceBody, RoutingStatusBody, UserTopic,
    UserTopicKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::watcher::Observed;

/// Most (user, communication) pairs remembered; the oldest seen first is forgotten.
pub const DEFAULT_CALLS_KEPT: usize = 100_000;

/// One thing a notification shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ObsKey {
    /// `v2.users.{user}.routingStatus` with this status.
    Routing {
        user: Uuid,
        status: NotifiedRoutingStatus,
    },
    /// `v2.users.{user}.presence` with this presence definition.
    Presence { user: Uuid, definition: Uuid },
    /// A call (`communication` = the events' communicationId) of the user in this state.
    Call {
        user: Uuid,
        communication: Uuid,
        state: CallState,
        held: bool,
    },
}

impl ObsKey {
    pub fn user(&self) -> Uuid {
        match self {
            ObsKey::Routing { user, .. }
            | ObsKey::Presence { user, .. }
            | ObsKey::Call { user, .. } => *user,
        }
    }
}

/// Reads notifications into keys, remembering calls.
#[derive(Debug)]
pub struct KeyReader {
    /// Last (state, held) seen per (user, communication).
    calls: HashMap<(Uuid, Uuid), (CallState, bool)>,
    /// The pairs in `calls`, oldest first, to forget beyond `cap`.
    order: VecDeque<(Uuid, Uuid)>,
    cap: usize,
    /// Bodies that did not read as their topic's type.
    unreadable: u64,
}

impl Default for KeyReader {
    fn default() -> Self {
        KeyReader::new()
    }
}

impl KeyReader {
    pub fn new() -> KeyReader {
        KeyReader::with_cap(DEFAULT_CALLS_KEPT)
    }

    /// A reader remembering at most `cap` calls (at least one).
    pub fn with_cap(cap: usize) -> KeyReader {
        KeyReader {
            calls: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            unreadable: 0,
        }
    }

    /// The keys `observed` shows (none for a body that does not read as its topic's type).
    pub fn keys(&mut self, observed: &Observed) -> Vec<ObsKey> {
        self.read(observed.topic, &observed.body)
    }

    /// The keys a notification of `topic` with `body` shows.
    pub fn read(&mut self, topic: UserTopic, body: &Value) -> Vec<ObsKey> {
        let user = topic.user_id;
        match topic.kind {
            UserTopicKind::RoutingStatus => match RoutingStatusBody::deserialize(body) {
                Ok(b) => vec![ObsKey::Routing {
                    user,
                    status: b.routing_status.status,
                }],
                Err(_) => self.unreadable(),
            },
            UserTopicKind::Presence => match PresenceBody::deserialize(body) {
                Ok(b) => vec![ObsKey::Presence {
                    user,
                    definition: b.presence_definition.id,
                }],
                Err(_) => self.unreadable(),
            },
            UserTopicKind::Conversations => match ConversationBody::deserialize(body) {
                Ok(b) => self.calls_changed(user, &b),
                Err(_) => self.unreadable(),
            },
        }
    }

    /// Bodies that did not read as their topic's type so far.
    pub fn unreadable_bodies(&self) -> u64 {
        self.unreadable
    }

    fn unreadable(&mut self) -> Vec<ObsKey> {
        self.unreadable += 1;
        Vec::new()
    }

    fn calls_changed(&mut self, user: Uuid, body: &ConversationBody) -> Vec<ObsKey> {
        let mut keys = Vec::new();
        let calls = body
            .participants
            .iter()
            .filter(|p| p.user_id == Some(user))
            .flat_map(|p| &p.calls);
        for call in calls {
            let now = (call.state, call.held);
            let pair = (user, call.id);
            match self.calls.insert(pair, now) {
                Some(before) if before == now => continue,
                Some(_) => {}
                None => self.remember(pair),
            }
            keys.push(ObsKey::Call {
                user,
                communication: call.id,
                state: call.state,
                held: call.held,
            });
        }
        keys
    }

    /// Notes a new pair, forgetting the oldest beyond the cap.
    fn remember(&mut self, pair: (Uuid, Uuid)) {
        self.order.push_back(pair);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.calls.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const COMM: Uuid = Uuid::from_u128(10);
    const COMM2: Uuid = Uuid::from_u128(11);

    fn topic(kind: UserTopicKind) -> UserTopic {
        UserTopic {
            user_id: USER,
            kind,
        }
    }

    fn conversation(calls: &[(Uuid, Uuid, &str, bool)]) -> Value {
        let participants: Vec<Value> = calls
            .iter()
            .map(|(user, comm, state, held)| {
                json!({"id": Uuid::new_v4(), "userId": user, "purpose": "agent",
                       "calls": [{"id": comm, "state": state, "held": held}]})
            })
            .collect();
        json!({"id": Uuid::from_u128(99), "participants": participants})
    }

    fn call(state: CallState, held: bool) -> ObsKey {
        ObsKey::Call {
            user: USER,
            communication: COMM,
            state,
            held,
        }
    }

    #[test]
    fn routing_status_and_presence_give_one_key_each() {
        let mut r = KeyReader::new();
        let body = json!({"id": USER, "routingStatus": {"status": "NOT_RESPONDING",
                          "startTime": "2026-12-07T10:00:00.000Z"}});
        assert_eq!(
            r.read(topic(UserTopicKind::RoutingStatus), &body),
            [ObsKey::Routing {
                user: USER,
                status: NotifiedRoutingStatus::NotResponding
            }]
        );
        let definition = Uuid::from_u128(0xabc);
        let body = json!({"source": "x", "presenceDefinition": {"id": definition,
                          "systemPresence": "Busy"}, "primary": true});
        assert_eq!(
            r.read(topic(UserTopicKind::Presence), &body),
            [ObsKey::Presence {
                user: USER,
                definition
            }]
        );
        // The same again is shown again: routing and presence bodies are changes.
        assert_eq!(r.read(topic(UserTopicKind::Presence), &body).len(), 1);
    }

    #[test]
    fn a_conversation_yields_only_the_calls_of_its_user_that_changed() {
        let mut r = KeyReader::new();
        let t = topic(UserTopicKind::Conversations);
        let alerting = conversation(&[
            (USER, COMM, "alerting", false),
            (OTHER, COMM2, "connected", false),
        ]);
        assert_eq!(r.read(t, &alerting), [call(CallState::Alerting, false)]);
        // Repeated unchanged: nothing.
        assert_eq!(r.read(t, &alerting), []);
        let connected = conversation(&[(USER, COMM, "connected", false)]);
        assert_eq!(r.read(t, &connected), [call(CallState::Connected, false)]);
        let held = conversation(&[(USER, COMM, "connected", true)]);
        assert_eq!(r.read(t, &held), [call(CallState::Connected, true)]);
        let ended = conversation(&[(USER, COMM, "disconnected", true)]);
        assert_eq!(r.read(t, &ended), [call(CallState::Disconnected, true)]);
        assert_eq!(r.read(t, &ended), []);
    }

    #[test]
    fn the_same_communication_is_remembered_per_user() {
        let mut r = KeyReader::new();
        let body = conversation(&[
            (USER, COMM, "connected", false),
            (OTHER, COMM, "connected", false),
        ]);
        assert_eq!(r.read(topic(UserTopicKind::Conversations), &body).len(), 1);
        let other = UserTopic {
            user_id: OTHER,
            kind: UserTopicKind::Conversations,
        };
        assert_eq!(
            r.read(other, &body).len(),
            1,
            "OTHER's topic shows OTHER's call"
        );
    }

    #[test]
    fn forgotten_calls_show_again() {
        let mut r = KeyReader::with_cap(1);
        let t = topic(UserTopicKind::Conversations);
        let a = conversation(&[(USER, COMM, "connected", false)]);
        let b = conversation(&[(USER, COMM2, "connected", false)]);
        assert_eq!(r.read(t, &a).len(), 1);
        assert_eq!(r.read(t, &b).len(), 1);
        assert_eq!(r.read(t, &a).len(), 1, "COMM was forgotten when COMM2 came");
    }

    #[test]
    fn unreadable_bodies_give_no_key_and_are_counted() {
        let mut r = KeyReader::new();
        assert_eq!(
            r.read(topic(UserTopicKind::RoutingStatus), &json!({"id": 1})),
            []
        );
        assert_eq!(r.read(topic(UserTopicKind::Presence), &json!([])), []);
        assert_eq!(
            r.read(
                topic(UserTopicKind::Conversations),
                &json!({"id": USER, "participants": [{"id": USER, "userId": USER,
                        "calls": [{"id": COMM, "state": "ringing"}]}]})
            ),
            []
        );
        assert_eq!(r.unreadable_bodies(), 3);
    }

    #[test]
    fn keys_serialize_tagged_by_kind() {
        let k = ObsKey::Routing {
            user: USER,
            status: NotifiedRoutingStatus::Idle,
        };
        assert_eq!(
            serde_json::to_value(k).unwrap(),
            json!({"kind": "routing", "user": USER, "status": "IDLE"})
        );
        assert_eq!(call(CallState::Alerting, false).user(), USER);
    }
}
