//! The simulated desktop states mapped onto Genesys Cloud Events API events (PROTOCOL.md
//! 9.1; the table is in `docs/genesys.md`): each planned transition becomes a routing
//! status event, the conversation events of the agent's interaction, and the agent's
//! first presence when the scenario asks for presence.
//!
//! [`Mapper`] keeps, per agent, what the events sent so far told the platform (routing
//! status, the open communication, presence), so each transition sends what changed and
//! names the notification that change should cause ([`Change`]). It never reads the
//! clock: an event's `eventDateTime` is the run's start plus the transition's offset, and
//! its `eventId` is derived from the transition's sequenceId, so a re-send is the same
//! event.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gcx_protocol::AgentState;
use gcx_protocol::genesys_events::{
    AudioState, CommunicationAnsweredEvent, CommunicationEndedEvent, DisconnectType,
    HoldUpdatedEvent, InitialConfiguration, RoutingStatus, SourceConfiguration,
    UserEstablishedEvent, UserPresenceEvent, UserRoutingStatusEvent,
};
use gcx_protocol::genesys_notifications::{CallState, NotifiedRoutingStatus};
use uuid::Uuid;

use super::super::agents::PlannedEvent;
use super::super::rng::SimRng;
use super::super::wire::Identities;

/// What the scenario asks of the mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSettings {
    /// Send each agent's presence (`On Queue`) with its first event.
    pub presence: bool,
    /// Share of interactions put on hold once connected (taken off hold before they end).
    pub hold_share: f64,
    /// `sourceId` of every event: the external platform these events come from.
    pub source_id: Uuid,
}

impl Default for MapSettings {
    fn default() -> Self {
        MapSettings {
            presence: false,
            hold_share: 0.0,
            source_id: Uuid::from_u128(0x6763_782d_7369_6d75_6c61_746f_7200_0001),
        }
    }
}

/// The three injection endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    RoutingStatus,
    Presence,
    Conversations,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [
        Endpoint::Presence,
        Endpoint::RoutingStatus,
        Endpoint::Conversations,
    ];

    pub fn path(self) -> &'static str {
        use gcx_protocol::genesys_events::{
            CONVERSATIONS_PATH, PRESENCE_PATH, ROUTING_STATUS_PATH,
        };
        match self {
            Endpoint::RoutingStatus => ROUTING_STATUS_PATH,
            Endpoint::Presence => PRESENCE_PATH,
            Endpoint::Conversations => CONVERSATIONS_PATH,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::RoutingStatus => "routingstatus",
            Endpoint::Presence => "presence",
            Endpoint::Conversations => "conversations",
        }
    }
}

/// One event for one injection endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum GenesysEvent {
    Routing(UserRoutingStatusEvent),
    Presence(UserPresenceEvent),
    Established(Box<UserEstablishedEvent>),
    Answered(CommunicationAnsweredEvent),
    Hold(HoldUpdatedEvent),
    Ended(CommunicationEndedEvent),
}

impl GenesysEvent {
    pub fn event_id(&self) -> Uuid {
        match self {
            GenesysEvent::Routing(e) => e.event_id,
            GenesysEvent::Presence(e) => e.event_id,
            GenesysEvent::Established(e) => e.event_id,
            GenesysEvent::Answered(e) => e.event_id,
            GenesysEvent::Hold(e) => e.event_id,
            GenesysEvent::Ended(e) => e.event_id,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        match self {
            GenesysEvent::Routing(_) => Endpoint::RoutingStatus,
            GenesysEvent::Presence(_) => Endpoint::Presence,
            _ => Endpoint::Conversations,
        }
    }

    /// What the API orders this event by: its user (routing status, presence) or its
    /// communication (conversation events).
    pub fn order_key(&self) -> Uuid {
        match self {
            GenesysEvent::Routing(e) => e.agent_id,
            GenesysEvent::Presence(e) => e.user_id,
            GenesysEvent::Established(e) => e.communication_id,
            GenesysEvent::Answered(e) => e.communication_id,
            GenesysEvent::Hold(e) => e.communication_id,
            GenesysEvent::Ended(e) => e.communication_id,
        }
    }

    /// The event's name in reports (`routingStatus`, `userEstablished`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            GenesysEvent::Routing(_) => "routingStatus",
            GenesysEvent::Presence(_) => "presence",
            GenesysEvent::Established(_) => "userEstablished",
            GenesysEvent::Answered(_) => "communicationAnswered",
            GenesysEvent::Hold(_) => "holdUpdated",
            GenesysEvent::Ended(_) => "communicationEnded",
        }
    }
}

/// The notification an accepted event should cause on the user's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    Routing(NotifiedRoutingStatus),
    Presence(Uuid),
    Call {
        communication: Uuid,
        state: CallState,
        held: bool,
    },
}

/// One mapped event, the user it concerns and the change it should show.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub event: GenesysEvent,
    pub user: Uuid,
    pub change: Option<Change>,
}

/// The communication an agent is on.
#[derive(Debug, Clone, Copy)]
struct OpenCall {
    conversation: Uuid,
    communication: Uuid,
    answered: bool,
    held: bool,
}

/// What the platform was told about one agent.
#[derive(Debug, Clone, Copy, Default)]
struct AgentBook {
    routing: Option<RoutingStatus>,
    presence_sent: bool,
    call: Option<OpenCall>,
}

/// The per-agent mapping state of one run.
pub struct Mapper {
    settings: MapSettings,
    /// `settings.source_id` as the events' string `sourceId`s carry it.
    source: String,
    /// The `On Queue` presence definition's id (read from the org when presence is sent).
    on_queue: Option<Uuid>,
    agents: Vec<AgentBook>,
}

/// The routing status an agent has in each desktop state.
pub fn routing_status(state: AgentState) -> RoutingStatus {
    match state {
        AgentState::Available => RoutingStatus::Idle,
        AgentState::Busy
        | AgentState::Connected
        | AgentState::Disconnected
        | AgentState::Wrapping => RoutingStatus::Interacting,
    }
}

/// Builds one transition's events, each with its own id and a millisecond after the last.
struct Emitter<'a> {
    seq: Uuid,
    at: DateTime<Utc>,
    user: Uuid,
    source: &'a str,
    out: Vec<Mapped>,
}

impl Emitter<'_> {
    fn next_id_and_time(&mut self) -> (Uuid, String) {
        let (hi, lo) = self.seq.as_u64_pair();
        let n = self.out.len() as u64;
        let id = SimRng::new(hi ^ lo, n).uuid();
        let at = self.at + chrono::Duration::milliseconds(n as i64);
        (id, gcx_protocol::time::format(at))
    }

    fn push(&mut self, event: GenesysEvent, change: Option<Change>) {
        self.out.push(Mapped {
            event,
            user: self.user,
            change,
        });
    }

    fn routing(&mut self, status: RoutingStatus, change: bool) {
        let (event_id, event_date_time) = self.next_id_and_time();
        let event = GenesysEvent::Routing(UserRoutingStatusEvent {
            event_id,
            event_date_time,
            agent_id: self.user,
            status,
            source_id: self.source.to_owned(),
        });
        let change = change.then_some(Change::Routing(status.into()));
        self.push(event, change);
    }

    fn established(&mut self, call: &OpenCall, alerting: bool) {
        let (event_id, event_date_time) = self.next_id_and_time();
        let event = GenesysEvent::Established(Box::new(UserEstablishedEvent {
            event_id,
            event_date_time,
            conversation_id: call.conversation,
            communication_id: call.communication,
            phone_number: None,
            user_id: self.user,
            station_id: None,
            ani: None,
            dnis: None,
            after_call_work_required: None,
            queue_id: None,
            initial_configuration: InitialConfiguration {
                audio_state: Some(AudioState {
                    can_hear: Some(true),
                    can_speak: Some(true),
                }),
                alerting: Some(alerting),
                inbound: Some(true),
                invited_by: None,
                recording_active: None,
                additional_info: None,
            },
            source_configuration: SourceConfiguration {
                source_id: self.source.to_owned(),
                interaction_id: call.conversation.to_string(),
                tag_id: None,
            },
        }));
        let state = if alerting {
            CallState::Alerting
        } else {
            CallState::Connected
        };
        self.push(event, Some(call_change(call, state)));
    }

    fn answered(&mut self, call: &OpenCall) {
        let (event_id, event_date_time) = self.next_id_and_time();
        let event = GenesysEvent::Answered(CommunicationAnsweredEvent {
            event_id,
            event_date_time,
            conversation_id: call.conversation,
            communication_id: call.communication,
        });
        self.push(event, Some(call_change(call, CallState::Connected)));
    }

    fn hold(&mut self, call: &OpenCall) {
        let (event_id, event_date_time) = self.next_id_and_time();
        let event = GenesysEvent::Hold(HoldUpdatedEvent {
            event_id,
            event_date_time,
            conversation_id: call.conversation,
            communication_id: call.communication,
            held: call.held,
        });
        self.push(event, Some(call_change(call, CallState::Connected)));
    }

    fn ended(&mut self, call: &OpenCall, disconnect_type: DisconnectType) {
        let (event_id, event_date_time) = self.next_id_and_time();
        let event = GenesysEvent::Ended(CommunicationEndedEvent {
            event_id,
            event_date_time,
            conversation_id: call.conversation,
            communication_id: call.communication,
            disconnect_type,
            destination_conversation_id: None,
        });
        self.push(event, Some(call_change(call, CallState::Disconnected)));
    }

    fn presence(&mut self, source_id: Uuid, definition: Uuid) {
        let (event_id, event_date_time) = self.next_id_and_time();
        let event = GenesysEvent::Presence(UserPresenceEvent {
            event_id,
            event_date_time,
            user_id: self.user,
            source_id,
            presence_definition_id: Some(definition),
            message: None,
        });
        self.push(event, Some(Change::Presence(definition)));
    }
}

fn call_change(call: &OpenCall, state: CallState) -> Change {
    Change::Call {
        communication: call.communication,
        state,
        held: call.held,
    }
}

impl Mapper {
    /// A mapper for `agents` agents. `on_queue` is the org's `On Queue` presence
    /// definition id; presence is sent only when the settings ask and it is known.
    pub fn new(agents: usize, settings: MapSettings, on_queue: Option<Uuid>) -> Mapper {
        Mapper {
            source: settings.source_id.to_string(),
            settings,
            on_queue,
            agents: vec![AgentBook::default(); agents],
        }
    }

    /// The events of one planned transition, in the order they must be applied.
    pub fn map(
        &mut self,
        p: &PlannedEvent,
        seq: Uuid,
        ids: &Identities,
        wall_start: DateTime<Utc>,
    ) -> Arc<[Mapped]> {
        let at = wall_start + chrono::Duration::from_std(p.at).unwrap_or_default();
        let mut e = Emitter {
            seq,
            at,
            user: ids.agent_id(p.agent),
            source: &self.source,
            out: Vec::with_capacity(3),
        };
        let hold_share = self.settings.hold_share;
        let presence = self.settings.presence.then_some(self.on_queue).flatten();
        let source_id = self.settings.source_id;
        let Some(book) = self.agents.get_mut(p.agent as usize) else {
            return Arc::from(e.out);
        };
        if let Some(on_queue) = presence.filter(|_| !book.presence_sent) {
            book.presence_sent = true;
            e.presence(source_id, on_queue);
        }
        let status = routing_status(p.state);
        let changed = book.routing != Some(status);
        book.routing = Some(status);
        e.routing(status, changed);

        match p.state {
            AgentState::Busy => {
                if let Some(old) = book.call.take() {
                    e.ended(&old, DisconnectType::System);
                }
                let call = new_call(ids, p);
                e.established(&call, true);
                book.call = Some(call);
            }
            AgentState::Connected => {
                let mut call = match book.call {
                    Some(call) => {
                        e.answered(&call);
                        call
                    }
                    None => {
                        let call = new_call(ids, p);
                        e.established(&call, false);
                        call
                    }
                };
                call.answered = true;
                if !call.held && draws_hold(call.conversation, hold_share) {
                    call.held = true;
                    e.hold(&call);
                }
                book.call = Some(call);
            }
            AgentState::Disconnected | AgentState::Available | AgentState::Wrapping => {
                if let Some(mut call) = book.call.take() {
                    if call.held {
                        call.held = false;
                        e.hold(&call);
                    }
                    let how = if call.answered {
                        DisconnectType::Peer
                    } else {
                        DisconnectType::System
                    };
                    e.ended(&call, how);
                }
            }
        }
        Arc::from(e.out)
    }
}

/// The agent's interaction as a conversation with one communication, both derived from
/// the interaction id (no storage, same ids on a re-send).
fn new_call(ids: &Identities, p: &PlannedEvent) -> OpenCall {
    let conversation = ids.interaction_id(p.agent, p.interaction);
    let (hi, lo) = conversation.as_u64_pair();
    OpenCall {
        conversation,
        communication: SimRng::new(hi ^ lo, 1).uuid(),
        answered: false,
        held: false,
    }
}

/// Whether this conversation is one of the `share` put on hold (drawn from its id).
fn draws_hold(conversation: Uuid, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    let (hi, lo) = conversation.as_u64_pair();
    SimRng::new(hi ^ lo, 2).unit() < share
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn planned(n: u64, state: AgentState, interaction: u32) -> PlannedEvent {
        PlannedEvent {
            n,
            agent: 0,
            from: None,
            state,
            invalid: false,
            at: Duration::from_millis(n * 1000),
            interaction,
        }
    }

    fn kinds(m: &[Mapped]) -> Vec<&'static str> {
        m.iter().map(|x| x.event.kind()).collect()
    }

    fn run(settings: MapSettings, states: &[(AgentState, u32)]) -> Vec<Arc<[Mapped]>> {
        let ids = Identities::new(vec![Uuid::from_u128(42)], 7);
        let mut m = Mapper::new(1, settings, Some(Uuid::from_u128(9)));
        let start = DateTime::<Utc>::UNIX_EPOCH;
        states
            .iter()
            .enumerate()
            .map(|(i, (s, n))| {
                m.map(
                    &planned(i as u64, *s, *n),
                    Uuid::from_u128(1000 + i as u128),
                    &ids,
                    start,
                )
            })
            .collect()
    }

    #[test]
    fn the_seed_workflow_maps_to_routing_status_and_one_call() {
        use AgentState::*;
        let out = run(
            MapSettings::default(),
            &[
                (Available, 0),
                (Busy, 1),
                (Connected, 1),
                (Disconnected, 1),
                (Wrapping, 1),
                (Available, 1),
            ],
        );
        let all: Vec<Vec<&str>> = out.iter().map(|m| kinds(m)).collect();
        assert_eq!(
            all,
            vec![
                vec!["routingStatus"],
                vec!["routingStatus", "userEstablished"],
                vec!["routingStatus", "communicationAnswered"],
                vec!["routingStatus", "communicationEnded"],
                vec!["routingStatus"],
                vec!["routingStatus"],
            ]
        );
        // Only changes of status are expected to be notified.
        let routing: Vec<Option<Change>> = out.iter().map(|m| m[0].change).collect();
        assert_eq!(
            routing,
            vec![
                Some(Change::Routing(NotifiedRoutingStatus::Idle)),
                Some(Change::Routing(NotifiedRoutingStatus::Interacting)),
                None,
                None,
                None,
                Some(Change::Routing(NotifiedRoutingStatus::Idle)),
            ]
        );
        let GenesysEvent::Ended(end) = &out[3][1].event else {
            panic!("ended expected")
        };
        assert_eq!(end.disconnect_type, DisconnectType::Peer);
        let GenesysEvent::Established(est) = &out[1][1].event else {
            panic!("established expected")
        };
        assert_eq!(end.communication_id, est.communication_id);
        assert_eq!(est.initial_configuration.alerting, Some(true));
    }

    #[test]
    fn an_unanswered_reservation_ends_by_the_system() {
        use AgentState::*;
        let out = run(
            MapSettings::default(),
            &[(Available, 0), (Busy, 1), (Available, 1)],
        );
        let GenesysEvent::Ended(end) = &out[2][1].event else {
            panic!("ended expected")
        };
        assert_eq!(end.disconnect_type, DisconnectType::System);
    }

    #[test]
    fn held_calls_are_taken_off_hold_before_they_end_and_presence_comes_first() {
        use AgentState::*;
        let settings = MapSettings {
            presence: true,
            hold_share: 1.0,
            ..MapSettings::default()
        };
        let out = run(
            settings,
            &[(Available, 0), (Busy, 1), (Connected, 1), (Disconnected, 1)],
        );
        assert_eq!(kinds(&out[0]), vec!["presence", "routingStatus"]);
        assert_eq!(
            kinds(&out[2]),
            vec!["routingStatus", "communicationAnswered", "holdUpdated"]
        );
        assert_eq!(
            kinds(&out[3]),
            vec!["routingStatus", "holdUpdated", "communicationEnded"]
        );
        let held: Vec<Option<Change>> = out[3].iter().map(|m| m.change).collect();
        assert!(matches!(
            held[1],
            Some(Change::Call {
                state: CallState::Connected,
                held: false,
                ..
            })
        ));
    }

    #[test]
    fn ids_are_stable_per_transition_and_distinct_within_one() {
        use AgentState::*;
        let a = run(MapSettings::default(), &[(Busy, 1), (Connected, 1)]);
        let b = run(MapSettings::default(), &[(Busy, 1), (Connected, 1)]);
        assert_eq!(a, b, "same sequenceIds, same events");
        let mut seen = std::collections::HashSet::new();
        for m in a.iter().flat_map(|m| m.iter()) {
            assert!(seen.insert(m.event.event_id()), "duplicate eventId");
        }
    }

    #[test]
    fn a_connect_without_a_reservation_establishes_the_call_connected() {
        let out = run(MapSettings::default(), &[(AgentState::Connected, 1)]);
        let GenesysEvent::Established(est) = &out[0][1].event else {
            panic!("established expected")
        };
        assert_eq!(est.initial_configuration.alerting, Some(false));
    }
}
