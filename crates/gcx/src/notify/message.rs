//! One text frame of a notification socket read into what it says (pure): a heartbeat, a
//! pong, one of the system topics that keep the channel alive, a notification of a user
//! topic gcx watches, or something else.

use gcx_protocol::genesys_notifications::{
    HEARTBEAT_MESSAGE, METADATA_TOPIC, MetadataBody, NO_LONGER_SUBSCRIBED_PREFIX, Notification,
    PONG_MESSAGE, SOCKET_CLOSING_TOPIC, TOKEN_REVOKED_PREFIX, UserTopic,
};
use serde_json::Value;

/// What a socket message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `channel.metadata` "WebSocket Heartbeat".
    Heartbeat,
    /// `channel.metadata` "pong": the answer to our ping.
    Pong,
    /// Another `channel.metadata` message.
    Metadata(String),
    /// `v2.system.socket_closing`: open a new socket on the same channel now.
    SocketClosing,
    /// `v2.system.no_longer_subscribed.<channel>`: the channel lost its subscriptions.
    NoLongerSubscribed,
    /// `v2.system.token_revoked.<channel>`: the channel's token was revoked.
    TokenRevoked,
    /// A notification of a user topic.
    User { topic: UserTopic, body: Value },
    /// A topic that is none of the above.
    Other { topic: String },
}

impl Incoming {
    /// Whether this is one of the system topics the channel's owner must act on.
    pub fn is_system(&self) -> bool {
        matches!(
            self,
            Incoming::SocketClosing | Incoming::NoLongerSubscribed | Incoming::TokenRevoked
        )
    }
}

/// Reads one text frame; an error when it is not a notification envelope.
pub fn read(text: &str) -> Result<Incoming, serde_json::Error> {
    let n: Notification<Value> = serde_json::from_str(text)?;
    let topic = n.topic_name;
    if topic == METADATA_TOPIC {
        let message = metadata_message(&n.event_body);
        return Ok(match message.as_str() {
            HEARTBEAT_MESSAGE => Incoming::Heartbeat,
            PONG_MESSAGE => Incoming::Pong,
            _ => Incoming::Metadata(message),
        });
    }
    if topic == SOCKET_CLOSING_TOPIC {
        return Ok(Incoming::SocketClosing);
    }
    if has_prefix(&topic, NO_LONGER_SUBSCRIBED_PREFIX) {
        return Ok(Incoming::NoLongerSubscribed);
    }
    if has_prefix(&topic, TOKEN_REVOKED_PREFIX) {
        return Ok(Incoming::TokenRevoked);
    }
    Ok(match topic.parse::<UserTopic>() {
        Ok(topic) => Incoming::User {
            topic,
            body: n.event_body,
        },
        Err(_) => Incoming::Other { topic },
    })
}

/// `topic` is `prefix` or `prefix.<something>`.
fn has_prefix(topic: &str, prefix: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The `message` of a metadata body, empty when it has none.
fn metadata_message(body: &Value) -> String {
    <MetadataBody as serde::Deserialize>::deserialize(body)
        .map(|b| b.message)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_protocol::genesys_notifications::UserTopicKind;
    use serde_json::json;
    use uuid::Uuid;

    fn frame(topic: &str, body: Value) -> String {
        json!({"topicName": topic, "version": "2", "eventBody": body,
               "metadata": {"CorrelationId": "c"}})
        .to_string()
    }

    #[test]
    fn metadata_messages() {
        let read_meta = |m: &str| read(&frame("channel.metadata", json!({"message": m}))).unwrap();
        assert_eq!(read_meta("WebSocket Heartbeat"), Incoming::Heartbeat);
        assert_eq!(read_meta("pong"), Incoming::Pong);
        assert_eq!(read_meta("hello"), Incoming::Metadata("hello".into()));
        assert_eq!(
            read(&frame("channel.metadata", json!(null))).unwrap(),
            Incoming::Metadata(String::new())
        );
    }

    #[test]
    fn system_topics() {
        let id = "streaming-7f3a";
        let cases = [
            (
                "v2.system.socket_closing".to_owned(),
                Incoming::SocketClosing,
            ),
            (
                format!("v2.system.no_longer_subscribed.{id}"),
                Incoming::NoLongerSubscribed,
            ),
            (
                format!("v2.system.token_revoked.{id}"),
                Incoming::TokenRevoked,
            ),
        ];
        for (topic, want) in cases {
            let got = read(&frame(&topic, json!({"message": "x"}))).unwrap();
            assert!(got.is_system(), "{topic}");
            assert_eq!(got, want, "{topic}");
        }
        assert_eq!(
            read(&frame("v2.system.token_revokedX", json!({}))).unwrap(),
            Incoming::Other {
                topic: "v2.system.token_revokedX".into()
            }
        );
    }

    #[test]
    fn user_topics_carry_their_body() {
        let user = Uuid::from_u128(9);
        let body = json!({"id": user, "routingStatus": {"status": "IDLE"}});
        let got = read(&frame(
            &format!("v2.users.{user}.routingStatus"),
            body.clone(),
        ))
        .unwrap();
        assert_eq!(
            got,
            Incoming::User {
                topic: UserTopic {
                    user_id: user,
                    kind: UserTopicKind::RoutingStatus
                },
                body
            }
        );
        assert!(!got.is_system());
        assert_eq!(
            read(&frame("v2.users.x.geolocation", json!({}))).unwrap(),
            Incoming::Other {
                topic: "v2.users.x.geolocation".into()
            }
        );
    }

    #[test]
    fn a_frame_that_is_no_envelope_is_an_error() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"eventBody":{}}"#,
            r#"{"topicName":1,"eventBody":{}}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
