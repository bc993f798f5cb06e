//! The Genesys Cloud Notifications API (observation, PROTOCOL.md 9.2): channels, their
//! subscriptions, the envelope of every socket message, the user topics gcx reads and the
//! system topics that keep a socket alive.
//!
//! Field names follow the official platform SDK models (`Channel`, `ChannelTopic`,
//! `ChannelTopicEntityListing`, `ChannelMetadataNotification`, ...). The body of
//! `v2.users.{id}.conversations` is the subset of the SDK's conversation topic that gcx
//! reads (`docs/protocol-notes.md`, 9.2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `POST` (create) and `GET` (list) path of channels.
pub const CHANNELS_PATH: &str = "/api/v2/notifications/channels";
/// Most topics one channel may hold; a subscription past it is refused with a 400.
pub const MAX_TOPICS_PER_CHANNEL: usize = 1000;
/// Most channels per user and OAuth client; a 21st removes the one used least recently.
pub const MAX_CHANNELS: usize = 20;
/// A channel lives this long after its last subscription change.
pub const CHANNEL_LIFETIME_SECS: u64 = 24 * 3600;
/// Topic of heartbeats and pongs.
pub const METADATA_TOPIC: &str = "channel.metadata";
/// Body `message` of a heartbeat.
pub const HEARTBEAT_MESSAGE: &str = "WebSocket Heartbeat";
/// Body `message` of the answer to a client's ping.
pub const PONG_MESSAGE: &str = "pong";
/// A client's ping, as sent on the socket.
pub const PING_FRAME: &str = r#"{"message":"ping"}"#;
/// The server is about to close this socket: open a new one on the same channel now.
pub const SOCKET_CLOSING_TOPIC: &str = "v2.system.socket_closing";
/// Prefix of the topic that says a channel lost its subscriptions (`.<channel id>`).
pub const NO_LONGER_SUBSCRIBED_PREFIX: &str = "v2.system.no_longer_subscribed";
/// Prefix of the topic that says the token the channel was created with was revoked.
pub const TOKEN_REVOKED_PREFIX: &str = "v2.system.token_revoked";
/// Error code of a subscription past [`MAX_TOPICS_PER_CHANNEL`].
pub const CODE_TOO_MANY_TOPICS: &str = "notification.subscription.topic.limit";

/// `/api/v2/notifications/channels/{id}/subscriptions`.
pub fn subscriptions_path(channel_id: &str) -> String {
    format!("{CHANNELS_PATH}/{channel_id}/subscriptions")
}

/// A channel (SDK `Channel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: String,
    /// The socket's address (`wss://streaming.<domain>/channels/<id>`).
    pub connect_uri: String,
    /// When the channel expires unless its subscriptions change (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `GET /api/v2/notifications/channels` (SDK `ChannelEntityListing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEntityListing {
    #[serde(default)]
    pub entities: Vec<Channel>,
}

/// One topic of a subscription request: the body is an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRequest {
    pub id: String,
}

/// Whether a topic was subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TopicState {
    Permitted,
    Rejected,
}

/// One topic of a subscription answer (SDK `ChannelTopic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelTopic {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TopicState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_permissions: Option<Vec<String>>,
}

/// A subscription answer (SDK `ChannelTopicEntityListing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTopicEntityListing {
    #[serde(default)]
    pub entities: Vec<ChannelTopic>,
}

/// Correlation metadata of a notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationMetadata {
    #[serde(
        rename = "CorrelationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
}

/// Every socket message: `{topicName, version, eventBody, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification<B = Value> {
    pub topic_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub event_body: B,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<NotificationMetadata>,
}

/// Body of `channel.metadata` and of the system topics: `{"message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBody {
    #[serde(default)]
    pub message: String,
}

/// The three user topics gcx subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserTopicKind {
    RoutingStatus,
    Presence,
    Conversations,
}

impl UserTopicKind {
    pub const ALL: [UserTopicKind; 3] = [
        UserTopicKind::RoutingStatus,
        UserTopicKind::Presence,
        UserTopicKind::Conversations,
    ];

    /// The topic's last segment.
    pub fn suffix(self) -> &'static str {
        match self {
            UserTopicKind::RoutingStatus => "routingStatus",
            UserTopicKind::Presence => "presence",
            UserTopicKind::Conversations => "conversations",
        }
    }
}

/// `v2.users.{id}.{routingStatus|presence|conversations}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserTopic {
    pub user_id: Uuid,
    pub kind: UserTopicKind,
}

impl fmt::Display for UserTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v2.users.{}.{}", self.user_id, self.kind.suffix())
    }
}

/// A topic name that is not one of the user topics gcx reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a topic of the form v2.users.<uuid>.routingStatus|presence|conversations")]
pub struct NotUserTopic(pub String);

impl FromStr for UserTopic {
    type Err = NotUserTopic;

    fn from_str(s: &str) -> Result<UserTopic, NotUserTopic> {
        let bad = || NotUserTopic(s.to_owned());
        let rest = s.strip_prefix("v2.users.").ok_or_else(bad)?;
        let (id, suffix) = rest.split_once('.').ok_or_else(bad)?;
        let user_id = Uuid::parse_str(id).map_err(|_| bad())?;
        let kind = UserTopicKind::ALL
            .into_iter()
            .find(|k| k.suffix() == suffix)
            .ok_or_else(bad)?;
        Ok(UserTopic { user_id, kind })
    }
}

/// Routing status as notified (upper snake case, unlike the Events API's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotifiedRoutingStatus {
    OffQueue,
    Idle,
    Interacting,
    NotResponding,
    Communicating,
}

impl From<crate::genesys_events::RoutingStatus> for NotifiedRoutingStatus {
    fn from(s: crate::genesys_events::RoutingStatus) -> Self {
        use crate::genesys_events::RoutingStatus as R;
        match s {
            R::OffQueue => NotifiedRoutingStatus::OffQueue,
            R::Idle => NotifiedRoutingStatus::Idle,
            R::Interacting => NotifiedRoutingStatus::Interacting,
            R::NotResponding => NotifiedRoutingStatus::NotResponding,
            R::Communicating => NotifiedRoutingStatus::Communicating,
        }
    }
}

/// `routingStatus` of a routing-status notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingStatusValue {
    pub status: NotifiedRoutingStatus,
    /// When the status started (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

/// Body of `v2.users.{id}.routingStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingStatusBody {
    pub id: Uuid,
    pub routing_status: RoutingStatusValue,
}

/// `presenceDefinition` of a presence notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceDefinitionRef {
    pub id: Uuid,
    /// `Available`, `Away`, `Busy`, `Offline`, `Idle`, `On Queue`, `Meal`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_presence: Option<String>,
}

/// Body of `v2.users.{id}.presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub presence_definition: PresenceDefinitionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_date: Option<String>,
}

/// A call's state as notified (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    Alerting,
    Connected,
    Disconnected,
}

/// One communication of a participant (`calls[]`): the communicationId of the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRef {
    pub id: Uuid,
    pub state: CallState,
    #[serde(default)]
    pub held: bool,
    /// The event's `disconnectType`, lower case (`peer`, `self`, `system`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<String>,
}

/// A participant of a notified conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantRef {
    pub id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default)]
    pub calls: Vec<CallRef>,
}

/// Body of `v2.users.{id}.conversations` (the subset gcx reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationBody {
    pub id: Uuid,
    #[serde(default)]
    pub participants: Vec<ParticipantRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_topics_round_trip_and_others_are_refused() {
        let id = Uuid::from_u128(7);
        for kind in UserTopicKind::ALL {
            let t = UserTopic { user_id: id, kind };
            assert_eq!(t.to_string().parse::<UserTopic>(), Ok(t));
        }
        for bad in [
            "v2.users.x.presence",
            "v2.users.00000000-0000-0000-0000-000000000007.geolocation",
            "channel.metadata",
            "v2.users.00000000-0000-0000-0000-000000000007",
        ] {
            assert!(bad.parse::<UserTopic>().is_err(), "{bad}");
        }
    }

    #[test]
    fn envelopes_read_as_the_sdk_writes_them() {
        let raw = r#"{"topicName":"v2.users.00000000-0000-0000-0000-000000000007.routingStatus",
            "version":"2","eventBody":{"id":"00000000-0000-0000-0000-000000000007",
            "routingStatus":{"status":"INTERACTING","startTime":"2026-12-07T10:00:00.000Z"}},
            "metadata":{"CorrelationId":"c-1"}}"#;
        let n: Notification<RoutingStatusBody> = serde_json::from_str(raw).unwrap();
        assert_eq!(
            n.event_body.routing_status.status,
            NotifiedRoutingStatus::Interacting
        );
        assert_eq!(n.metadata.unwrap().correlation_id.as_deref(), Some("c-1"));
        let hb: Notification<MetadataBody> = serde_json::from_str(
            r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#,
        )
        .unwrap();
        assert_eq!(hb.event_body.message, HEARTBEAT_MESSAGE);
    }
}
