//! One tenant's users as the injected events left them: routing status, presence and
//! communications. This is what a Notifications emulation (PROTOCOL.md 9.2) reads.
//!
//! API: [`UserStates::apply`] takes accepted events and applies them after the
//! processing lag (`genesys_processing_lag_ms`), in the order they were accepted;
//! [`UserStates::user`] is a snapshot of one user; [`UserStates::subscribe`] is a broadcast
//! of every change ([`UserChange`], filter by `user_id`). An event that changes nothing a
//! notification carries is applied but not broadcast: a routing status equal to the
//! user's current one, a presence with the same definition and message. Every
//! communication event is a change. A lag of 0 applies the events before the injection
//! request is answered. Bounded: at most `cap` users and `cap` communications, the oldest
//! evicted first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use gcx_protocol::genesys_events::{
    CommunicationAnsweredEvent, CommunicationEndedEvent, DisconnectType, HoldUpdatedEvent,
    RoutingStatus, UserEstablishedEvent, UserPresenceEvent, UserRoutingStatusEvent,
};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use uuid::Uuid;

use super::presence::system_presence;

/// Changes kept for a slow subscriber before it starts missing some.
pub(crate) const CHANGES_BUFFERED: usize = 4096;

/// An accepted event waiting to take effect.
#[derive(Debug, Clone)]
pub enum Accepted {
    RoutingStatus(UserRoutingStatusEvent),
    Presence(UserPresenceEvent),
    Answered(CommunicationAnsweredEvent),
    Established(Box<UserEstablishedEvent>),
    Ended(CommunicationEndedEvent),
    Hold(HoldUpdatedEvent),
}

/// A user's routing status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingState {
    pub status: RoutingStatus,
    /// The event's `eventDateTime`: when the status started.
    pub start_time: String,
    pub source_id: String,
}

/// A user's presence, from the last presence event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceState {
    pub source_id: Uuid,
    pub presence_definition_id: Option<Uuid>,
    /// The system presence the definition id names (`None` for an unknown id).
    pub system_presence: Option<&'static str>,
    pub message: Option<String>,
    pub modified_date: String,
}

/// Where a communication stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationState {
    pub conversation_id: Uuid,
    pub communication_id: Uuid,
    /// Known once a user-established event named it.
    pub user_id: Option<Uuid>,
    pub alerting: bool,
    pub answered: bool,
    pub held: bool,
    pub disconnect_type: Option<DisconnectType>,
    pub last_event_date_time: String,
}

/// Everything known about one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSnapshot {
    pub routing_status: Option<RoutingState>,
    pub presence: Option<PresenceState>,
    /// The user's communications, oldest first (ended ones included).
    pub communications: Vec<CommunicationState>,
}

/// One change to one user, as broadcast to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    RoutingStatus {
        user_id: Uuid,
        state: RoutingState,
    },
    Presence {
        user_id: Uuid,
        state: PresenceState,
    },
    Communication {
        user_id: Uuid,
        state: CommunicationState,
    },
}

/// A map that evicts its oldest key past its cap.
#[derive(Debug)]
struct Capped<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V: Default> Capped<K, V> {
    fn new(cap: usize) -> Self {
        Capped {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn entry(&mut self, key: K) -> &mut V {
        if !self.map.contains_key(&key) {
            while self.order.len() >= self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key);
        }
        self.map.entry(key).or_default()
    }
}

#[derive(Debug, Default)]
struct UserEntry {
    routing: Option<RoutingState>,
    presence: Option<PresenceState>,
}

#[derive(Debug)]
struct Tables {
    users: Capped<Uuid, UserEntry>,
    communications: Capped<Uuid, Option<CommunicationState>>,
}

/// One tenant's user state, its change broadcast and its lag queue.
pub struct UserStates {
    tables: Mutex<Tables>,
    changes: broadcast::Sender<UserChange>,
    /// Batches waiting for their lag to pass, applied in order by one worker task.
    queue: mpsc::UnboundedSender<(Instant, Vec<Accepted>)>,
}

impl UserStates {
    /// A tenant's state; spawns its lag worker on the current tokio runtime, if any.
    pub(crate) fn new(cap: usize) -> std::sync::Arc<UserStates> {
        let (changes, _) = broadcast::channel(CHANGES_BUFFERED);
        let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<Accepted>)>();
        let states = std::sync::Arc::new(UserStates {
            tables: Mutex::new(Tables {
                users: Capped::new(cap),
                communications: Capped::new(cap),
            }),
            changes,
            queue,
        });
        // The worker holds a weak reference, so dropping the tenant ends it. Without a
        // runtime (a caller outside tokio) there is no worker: `apply` then finds the queue
        // closed and applies at once.
        let weak = std::sync::Arc::downgrade(&states);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return states;
        };
        runtime.spawn(async move {
            while let Some((at, events)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                let Some(states) = weak.upgrade() else { break };
                states.apply_now(&events);
            }
        });
        states
    }

    /// Applies `events` in order after `lag` (at once when `lag` is zero). Lowering the lag
    /// to zero while batches still wait lets new events overtake them; raising it never does.
    pub(crate) fn apply(&self, events: Vec<Accepted>, lag: Duration) {
        if events.is_empty() {
            return;
        }
        if lag.is_zero() {
            self.apply_now(&events);
        } else if let Err(unsent) = self.queue.send((Instant::now() + lag, events)) {
            // No worker (no runtime at creation, or it is shutting down): apply now rather
            // than lose the events.
            self.apply_now(&unsent.0.1);
        }
    }

    /// Every change from now on, for every user of the tenant.
    pub fn subscribe(&self) -> broadcast::Receiver<UserChange> {
        self.changes.subscribe()
    }

    /// What is known about `user_id` (an empty snapshot for a user never mentioned).
    pub fn user(&self, user_id: Uuid) -> UserSnapshot {
        let t = self.tables.lock();
        let entry = t.users.map.get(&user_id);
        let communications = t
            .communications
            .order
            .iter()
            .filter_map(|id| t.communications.map.get(id).and_then(Option::as_ref))
            .filter(|c| c.user_id == Some(user_id))
            .cloned()
            .collect();
        UserSnapshot {
            routing_status: entry.and_then(|e| e.routing.clone()),
            presence: entry.and_then(|e| e.presence.clone()),
            communications,
        }
    }

    fn apply_now(&self, events: &[Accepted]) {
        let mut changes = Vec::new();
        {
            let mut t = self.tables.lock();
            for event in events {
                if let Some(change) = apply_one(&mut t, event) {
                    changes.push(change);
                }
            }
        }
        for change in changes {
            // No subscriber is not an error.
            let _ = self.changes.send(change);
        }
    }
}

fn apply_one(t: &mut Tables, event: &Accepted) -> Option<UserChange> {
    match event {
        Accepted::RoutingStatus(e) => {
            let state = RoutingState {
                status: e.status,
                start_time: e.event_date_time.clone(),
                source_id: e.source_id.clone(),
            };
            let entry = t.users.entry(e.agent_id);
            let changed = entry.routing.as_ref().is_none_or(|r| r.status != e.status);
            entry.routing = Some(state.clone());
            changed.then_some(UserChange::RoutingStatus {
                user_id: e.agent_id,
                state,
            })
        }
        Accepted::Presence(e) => {
            let state = PresenceState {
                source_id: e.source_id,
                presence_definition_id: e.presence_definition_id,
                system_presence: e.presence_definition_id.and_then(system_presence),
                message: e.message.clone(),
                modified_date: e.event_date_time.clone(),
            };
            let entry = t.users.entry(e.user_id);
            let changed = entry.presence.as_ref().is_none_or(|p| {
                p.presence_definition_id != state.presence_definition_id
                    || p.message != state.message
            });
            entry.presence = Some(state.clone());
            changed.then_some(UserChange::Presence {
                user_id: e.user_id,
                state,
            })
        }
        Accepted::Established(e) => {
            let slot = t.communications.entry(e.communication_id);
            let alerting = e.initial_configuration.alerting.unwrap_or(false);
            let c = slot.get_or_insert_with(|| CommunicationState {
                conversation_id: e.conversation_id,
                communication_id: e.communication_id,
                user_id: None,
                alerting,
                answered: !alerting,
                held: false,
                disconnect_type: None,
                last_event_date_time: e.event_date_time.clone(),
            });
            c.user_id = Some(e.user_id);
            c.last_event_date_time = e.event_date_time.clone();
            Some(UserChange::Communication {
                user_id: e.user_id,
                state: c.clone(),
            })
        }
        Accepted::Answered(e) => update_communication(
            t,
            e.conversation_id,
            e.communication_id,
            &e.event_date_time,
            |c| {
                c.alerting = false;
                c.answered = true;
            },
        ),
        Accepted::Hold(e) => update_communication(
            t,
            e.conversation_id,
            e.communication_id,
            &e.event_date_time,
            |c| c.held = e.held,
        ),
        Accepted::Ended(e) => update_communication(
            t,
            e.conversation_id,
            e.communication_id,
            &e.event_date_time,
            |c| {
                c.alerting = false;
                c.held = false;
                c.disconnect_type = Some(e.disconnect_type);
            },
        ),
    }
}

/// Updates a communication (created without a user if no user-established event named it
/// yet); a change is broadcast only when the communication has a user.
fn update_communication(
    t: &mut Tables,
    conversation_id: Uuid,
    communication_id: Uuid,
    at: &str,
    update: impl FnOnce(&mut CommunicationState),
) -> Option<UserChange> {
    let c = t
        .communications
        .entry(communication_id)
        .get_or_insert_with(|| CommunicationState {
            conversation_id,
            communication_id,
            user_id: None,
            alerting: false,
            answered: false,
            held: false,
            disconnect_type: None,
            last_event_date_time: at.to_owned(),
        });
    update(c);
    c.last_event_date_time = at.to_owned();
    c.user_id.map(|user_id| UserChange::Communication {
        user_id,
        state: c.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_evicts_the_oldest_key() {
        let mut c: Capped<u8, u8> = Capped::new(2);
        *c.entry(1) = 10;
        *c.entry(2) = 20;
        *c.entry(1) = 11;
        *c.entry(3) = 30;
        assert_eq!(c.map.get(&1), None);
        assert_eq!(c.map.get(&2), Some(&20));
        assert_eq!(c.map.len(), 2);
    }

    #[test]
    fn only_changes_are_broadcast() {
        let states = UserStates::new(10);
        let mut changes = states.subscribe();
        let user = Uuid::from_u128(1);
        let routing = |status| {
            Accepted::RoutingStatus(UserRoutingStatusEvent {
                event_id: Uuid::new_v4(),
                event_date_time: "2026-11-21T10:00:00.000Z".into(),
                agent_id: user,
                status,
                source_id: "ext".into(),
            })
        };
        let presence = |message: &str| {
            Accepted::Presence(UserPresenceEvent {
                event_id: Uuid::new_v4(),
                event_date_time: "2026-11-21T10:00:00.000Z".into(),
                user_id: user,
                source_id: Uuid::from_u128(2),
                presence_definition_id: Some(Uuid::from_u128(3)),
                message: Some(message.into()),
            })
        };
        states.apply(
            vec![
                routing(RoutingStatus::Idle),
                routing(RoutingStatus::Idle),
                routing(RoutingStatus::Interacting),
                presence("a"),
                presence("a"),
                presence("b"),
            ],
            Duration::ZERO,
        );
        let mut seen = Vec::new();
        while let Ok(change) = changes.try_recv() {
            seen.push(match change {
                UserChange::RoutingStatus { state, .. } => format!("{:?}", state.status),
                UserChange::Presence { state, .. } => state.message.unwrap_or_default(),
                UserChange::Communication { .. } => "call".into(),
            });
        }
        assert_eq!(seen, ["Idle", "Interacting", "a", "b"]);
        let snapshot = states.user(user);
        assert_eq!(
            snapshot.routing_status.unwrap().status,
            RoutingStatus::Interacting
        );
    }
}
