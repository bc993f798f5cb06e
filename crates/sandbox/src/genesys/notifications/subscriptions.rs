//! A subscription request (`[{"id":"<topic>"}, ...]`) read into topic names, every
//! violation at once, and each topic decided `Permitted` or `Rejected` (pure).
//!
//! The sandbox serves the three user topics gcx reads, `v2.users.{uuid}.routingStatus`,
//! `.presence` and `.conversations`; any other topic is `Rejected` with a reason. Each of
//! the three needs one view permission ([`required_permission`]); every client holds all
//! three unless the `genesys_withheld_permissions` fault withholds some, and a topic
//! whose permission is withheld is `Rejected` with `missingPermissions`.

use std::collections::HashSet;

use gcx_protocol::genesys_notifications::{ChannelTopic, TopicState, UserTopic, UserTopicKind};
use gcx_protocol::{Violation, ViolationCode};
use serde_json::Value;

/// Needed for `v2.users.{id}.routingStatus`.
pub const PERMISSION_VIEW_ROUTING_STATUS: &str = "routing:routingStatus:view";
/// Needed for `v2.users.{id}.presence`.
pub const PERMISSION_VIEW_PRESENCE: &str = "presence:userPresence:view";
/// Needed for `v2.users.{id}.conversations`.
pub const PERMISSION_VIEW_CONVERSATIONS: &str = "conversation:communication:view";
/// The three view permissions, for the fault's check.
pub const VIEW_PERMISSIONS: [&str; 3] = [
    PERMISSION_VIEW_ROUTING_STATUS,
    PERMISSION_VIEW_PRESENCE,
    PERMISSION_VIEW_CONVERSATIONS,
];

/// The `rejectionReason` of a topic whose permission is withheld.
const MISSING_PERMISSION_REASON: &str = "missing permission";

/// The permission a user topic needs.
pub(crate) fn required_permission(kind: UserTopicKind) -> &'static str {
    match kind {
        UserTopicKind::RoutingStatus => PERMISSION_VIEW_ROUTING_STATUS,
        UserTopicKind::Presence => PERMISSION_VIEW_PRESENCE,
        UserTopicKind::Conversations => PERMISSION_VIEW_CONVERSATIONS,
    }
}

/// Why a body is not a subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadBody {
    NotJson(String),
    /// Every violation, by JSON Pointer.
    Violations(Vec<Violation>),
}

/// The topic names of a request, in body order.
pub(crate) fn read(body: &[u8]) -> Result<Vec<String>, BadBody> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BadBody::NotJson(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(BadBody::Violations(vec![Violation {
            path: String::new(),
            code: ViolationCode::Type,
            message: "the body must be an array of {\"id\": \"<topic>\"}".into(),
        }]));
    };
    let mut topics = Vec::with_capacity(items.len());
    let mut violations = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let violation = |path: String, code, message: &str| Violation {
            path,
            code,
            message: message.to_owned(),
        };
        let Value::Object(mut fields) = item else {
            violations.push(violation(
                format!("/{i}"),
                ViolationCode::Type,
                "each entry must be an object {\"id\": \"<topic>\"}",
            ));
            continue;
        };
        let path = format!("/{i}/id");
        match fields.remove("id") {
            None => violations.push(violation(
                path,
                ViolationCode::Required,
                "the topic name is required",
            )),
            Some(Value::Null) => violations.push(violation(
                path,
                ViolationCode::Null,
                "the topic name must not be null",
            )),
            Some(Value::String(s)) if s.is_empty() => violations.push(violation(
                path,
                ViolationCode::Format,
                "the topic name must not be empty",
            )),
            Some(Value::String(s)) => topics.push(s),
            Some(_) => violations.push(violation(
                path,
                ViolationCode::Type,
                "the topic name must be a string",
            )),
        }
    }
    if violations.is_empty() {
        Ok(topics)
    } else {
        Err(BadBody::Violations(violations))
    }
}

/// A request's topics decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decided {
    /// The topics to subscribe, each once, in request order.
    pub permitted: Vec<UserTopic>,
    /// The answer's entries for the others, each once, in request order.
    pub rejected: Vec<ChannelTopic>,
}

/// Decides each requested topic under the permissions `withheld` from the client.
pub(crate) fn decide(requested: Vec<String>, withheld: &[String]) -> Decided {
    let mut decided = Decided::default();
    let mut seen = HashSet::new();
    for name in requested {
        if !seen.insert(name.clone()) {
            continue;
        }
        let rejected = |reason: String, missing: Option<Vec<String>>| ChannelTopic {
            id: name.clone(),
            state: Some(TopicState::Rejected),
            rejection_reason: Some(reason),
            missing_permissions: missing,
        };
        match name.parse::<UserTopic>() {
            Ok(topic) => {
                let permission = required_permission(topic.kind);
                if withheld.iter().any(|p| p == permission) {
                    decided.rejected.push(rejected(
                        MISSING_PERMISSION_REASON.to_owned(),
                        Some(vec![permission.to_owned()]),
                    ));
                } else {
                    decided.permitted.push(topic);
                }
            }
            Err(e) => decided.rejected.push(rejected(
                format!("unknown topic: {e}; the sandbox serves no other"),
                None,
            )),
        }
    }
    decided
}

/// The answer's entry of a subscribed topic.
pub(crate) fn permitted(topic: &UserTopic) -> ChannelTopic {
    ChannelTopic {
        id: topic.to_string(),
        state: Some(TopicState::Permitted),
        rejection_reason: None,
        missing_permissions: None,
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn paths(r: Result<Vec<String>, BadBody>) -> Vec<(String, ViolationCode)> {
        match r {
            Err(BadBody::Violations(v)) => v.into_iter().map(|v| (v.path, v.code)).collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn every_violation_is_named_by_its_pointer() {
        for (body, expected) in [
            (r#"{"id":"x"}"#, vec![("", ViolationCode::Type)]),
            (
                r#"[{"id":"ok"}, 3, {}, {"id":null}, {"id":7}, {"id":""}]"#,
                vec![
                    ("/1", ViolationCode::Type),
                    ("/2/id", ViolationCode::Required),
                    ("/3/id", ViolationCode::Null),
                    ("/4/id", ViolationCode::Type),
                    ("/5/id", ViolationCode::Format),
                ],
            ),
        ] {
            let expected: Vec<(String, ViolationCode)> = expected
                .into_iter()
                .map(|(p, c)| (p.to_owned(), c))
                .collect();
            assert_eq!(paths(read(body.as_bytes())), expected, "{body}");
        }
        assert!(matches!(read(b"[{"), Err(BadBody::NotJson(_))));
        assert_eq!(
            read(br#"[{"id":"a","selfUri":"/x"},{"id":"b"}]"#).unwrap(),
            ["a", "b"]
        );
        assert_eq!(read(b"[]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn known_topics_are_permitted_unless_their_permission_is_withheld() {
        let user = Uuid::from_u128(9);
        let routing = format!("v2.users.{user}.routingStatus");
        let presence = format!("v2.users.{user}.presence");
        let conversations = format!("v2.users.{user}.conversations");
        let requested = vec![
            routing.clone(),
            presence.clone(),
            conversations.clone(),
            routing.clone(),
            "v2.users.nobody.presence".to_owned(),
            "v2.routing.queues.q.conversations".to_owned(),
        ];
        let d = decide(requested.clone(), &[]);
        assert_eq!(d.permitted.len(), 3);
        assert_eq!(d.permitted[0].to_string(), routing);
        assert_eq!(d.rejected.len(), 2);
        assert!(d.rejected.iter().all(|t| {
            t.state == Some(TopicState::Rejected)
                && t.rejection_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("unknown topic"))
                && t.missing_permissions.is_none()
        }));

        let d = decide(requested, &[PERMISSION_VIEW_PRESENCE.to_owned()]);
        assert_eq!(d.permitted.len(), 2);
        let refused = d.rejected.iter().find(|t| t.id == presence).unwrap();
        assert_eq!(
            refused.missing_permissions.as_deref(),
            Some(&[PERMISSION_VIEW_PRESENCE.to_owned()][..])
        );
        assert_eq!(permitted(&d.permitted[1]).id, conversations);
    }
}
