//! What a user-state change looks like on a socket (pure): the user topic it concerns and
//! its notification, `{topicName, version: "2", eventBody, metadata: {CorrelationId}}`
//! with a fresh CorrelationId, and the frames of `channel.metadata` and the system topics.
//!
//! - A routing status becomes `v2.users.{id}.routingStatus`, `{id, routingStatus: {status,
//!   startTime}}` with the status in upper snake case.
//! - A presence becomes `v2.users.{id}.presence`; one without a presence definition is not
//!   notified (the body's `presenceDefinition` is required).
//! - A communication becomes `v2.users.{id}.conversations`, `{id: conversationId,
//!   participants: [{id, userId, purpose: "agent", calls: [{id: communicationId, state,
//!   held, disconnectType}]}]}`: one participant, the user's, with a stable id per
//!   conversation and user, carrying the call that changed.

use gcx_protocol::genesys_notifications::{
    CallRef, CallState, ConversationBody, MetadataBody, Notification, NotificationMetadata,
    ParticipantRef, PresenceBody, PresenceDefinitionRef, RoutingStatusBody, RoutingStatusValue,
    UserTopic, UserTopicKind,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::genesys::user_state::{CommunicationState, PresenceState, RoutingState, UserChange};
use crate::http_error::new_uuid;

/// Envelope `version` of user-topic notifications.
const VERSION: &str = "2";
/// `purpose` of the participant a user's conversation notification carries.
const AGENT_PURPOSE: &str = "agent";

/// The notification of `change` as JSON text; `None` when the change is not notified.
pub(crate) fn notification(change: &UserChange) -> Option<String> {
    let topic = topic_of(change);
    match change {
        UserChange::RoutingStatus { user_id, state } => {
            envelope(&topic, routing_body(*user_id, state))
        }
        UserChange::Presence { state, .. } => envelope(&topic, presence_body(state)?),
        UserChange::Communication { user_id, state } => {
            envelope(&topic, conversation_body(*user_id, state))
        }
    }
}

/// The topic `change` concerns.
pub(crate) fn topic_of(change: &UserChange) -> UserTopic {
    match change {
        UserChange::RoutingStatus { user_id, .. } => topic(*user_id, UserTopicKind::RoutingStatus),
        UserChange::Presence { user_id, .. } => topic(*user_id, UserTopicKind::Presence),
        UserChange::Communication { user_id, .. } => topic(*user_id, UserTopicKind::Conversations),
    }
}

fn topic(user_id: Uuid, kind: UserTopicKind) -> UserTopic {
    UserTopic { user_id, kind }
}

fn envelope<B: Serialize>(topic: &UserTopic, body: B) -> Option<String> {
    let notification = Notification {
        topic_name: topic.to_string(),
        version: Some(VERSION.to_owned()),
        event_body: body,
        metadata: Some(NotificationMetadata {
            correlation_id: Some(new_uuid().to_string()),
        }),
    };
    serde_json::to_string(&notification)
        .inspect_err(|e| tracing::error!(%topic, error = %e, "a notification did not serialize"))
        .ok()
}

/// A `{topicName, eventBody: {message}}` frame: heartbeats, pongs, system topics.
pub(crate) fn message_frame(topic_name: &str, message: &str) -> String {
    let notification = Notification {
        topic_name: topic_name.to_owned(),
        version: None,
        event_body: MetadataBody {
            message: message.to_owned(),
        },
        metadata: None,
    };
    // Two strings and a fixed shape: serializing cannot fail.
    serde_json::to_string(&notification).unwrap_or_default()
}

pub(crate) fn routing_body(user_id: Uuid, state: &RoutingState) -> RoutingStatusBody {
    RoutingStatusBody {
        id: user_id,
        routing_status: RoutingStatusValue {
            status: state.status.into(),
            start_time: Some(state.start_time.clone()),
        },
    }
}

pub(crate) fn presence_body(state: &PresenceState) -> Option<PresenceBody> {
    Some(PresenceBody {
        source: Some(state.source_id.to_string()),
        presence_definition: PresenceDefinitionRef {
            id: state.presence_definition_id?,
            system_presence: state.system_presence.map(str::to_owned),
        },
        primary: Some(true),
        message: state.message.clone(),
        modified_date: Some(state.modified_date.clone()),
    })
}

pub(crate) fn conversation_body(user_id: Uuid, c: &CommunicationState) -> ConversationBody {
    let disconnect_type = c.disconnect_type.and_then(|d| {
        serde_json::to_value(d)
            .ok()
            .and_then(|v| v.as_str().map(str::to_ascii_lowercase))
    });
    ConversationBody {
        id: c.conversation_id,
        participants: vec![ParticipantRef {
            id: participant_id(c.conversation_id, user_id),
            user_id: Some(user_id),
            purpose: Some(AGENT_PURPOSE.to_owned()),
            calls: vec![CallRef {
                id: c.communication_id,
                state: call_state(c),
                held: c.held,
                disconnect_type,
            }],
        }],
    }
}

/// `disconnected` once ended; `alerting` while alerting and not answered; `connected`
/// otherwise (answered, or established without alerting).
pub(crate) fn call_state(c: &CommunicationState) -> CallState {
    if c.disconnect_type.is_some() {
        CallState::Disconnected
    } else if c.alerting && !c.answered {
        CallState::Alerting
    } else {
        CallState::Connected
    }
}

/// The same id for the same conversation and user, every time (a hash of both, shaped as
/// a custom-version UUID).
pub(crate) fn participant_id(conversation_id: Uuid, user_id: Uuid) -> Uuid {
    let digest = Sha256::new()
        .chain_update(conversation_id.as_bytes())
        .chain_update(user_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use gcx_protocol::genesys_events::{DisconnectType, RoutingStatus};
    use gcx_protocol::genesys_notifications::{METADATA_TOPIC, NotifiedRoutingStatus};
    use serde_json::Value;

    use super::*;

    fn communication() -> CommunicationState {
        CommunicationState {
            conversation_id: Uuid::from_u128(1),
            communication_id: Uuid::from_u128(2),
            user_id: Some(Uuid::from_u128(3)),
            alerting: true,
            answered: false,
            held: false,
            disconnect_type: None,
            last_event_date_time: "2026-11-21T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_call_is_alerting_then_connected_then_disconnected() {
        let mut c = communication();
        assert_eq!(call_state(&c), CallState::Alerting);
        c.alerting = false;
        c.answered = true;
        assert_eq!(call_state(&c), CallState::Connected);
        let not_alerting = CommunicationState {
            alerting: false,
            answered: true,
            ..communication()
        };
        assert_eq!(call_state(&not_alerting), CallState::Connected);
        c.disconnect_type = Some(DisconnectType::TransferAcd);
        assert_eq!(call_state(&c), CallState::Disconnected);
        let body = conversation_body(Uuid::from_u128(3), &c);
        let call = &body.participants[0].calls[0];
        assert_eq!(call.disconnect_type.as_deref(), Some("transferacd"));
        assert_eq!(call.id, Uuid::from_u128(2));
        assert_eq!(body.id, Uuid::from_u128(1));
    }

    #[test]
    fn participant_ids_are_stable_per_conversation_and_user() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(participant_id(a, b), participant_id(a, b));
        assert_ne!(participant_id(a, b), participant_id(b, a));
        assert_eq!(
            participant_id(a, b).get_version(),
            Some(uuid::Version::Custom)
        );
    }

    #[test]
    fn envelopes_carry_version_2_and_a_fresh_correlation_id() {
        let user = Uuid::from_u128(7);
        let change = UserChange::RoutingStatus {
            user_id: user,
            state: RoutingState {
                status: RoutingStatus::NotResponding,
                start_time: "2026-11-21T10:00:00.000Z".into(),
                source_id: "ext".into(),
            },
        };
        let text = notification(&change).unwrap();
        assert_eq!(topic_of(&change).kind, UserTopicKind::RoutingStatus);
        let n: Notification<RoutingStatusBody> = serde_json::from_str(&text).unwrap();
        assert_eq!(n.topic_name, format!("v2.users.{user}.routingStatus"));
        assert_eq!(n.version.as_deref(), Some("2"));
        assert_eq!(
            n.event_body.routing_status.status,
            NotifiedRoutingStatus::NotResponding
        );
        let id = n.metadata.unwrap().correlation_id.unwrap();
        assert!(Uuid::parse_str(&id).is_ok());
        let again = notification(&change).unwrap();
        assert_ne!(text, again, "a fresh CorrelationId each time");

        let presence = |definition| UserChange::Presence {
            user_id: user,
            state: PresenceState {
                source_id: Uuid::from_u128(8),
                presence_definition_id: definition,
                system_presence: definition.map(|_| "Busy"),
                message: Some("lunch".into()),
                modified_date: "2026-11-21T10:00:00.000Z".into(),
            },
        };
        assert!(notification(&presence(None)).is_none());
        let text = notification(&presence(Some(Uuid::from_u128(9)))).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["eventBody"]["presenceDefinition"]["systemPresence"],
            "Busy"
        );
        assert_eq!(v["eventBody"]["message"], "lunch");

        let hb: Value = serde_json::from_str(&message_frame(METADATA_TOPIC, "x")).unwrap();
        assert_eq!(
            hb,
            serde_json::json!({"topicName": "channel.metadata", "eventBody": {"message": "x"}})
        );
    }
}
