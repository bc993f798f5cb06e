//! The Genesys Cloud Events API (injection, PROTOCOL.md 9.1): the three request bodies,
//! the batch answer, and one validator per body that returns *every* [`Violation`].
//!
//! Field names are those of the official platform SDK models (`UserRoutingStatusEvent`,
//! `UserPresenceEvent`, `BatchConversationEventRequest`, `BatchEventResponse`,
//! `EventError`, ...). Where they differ from PROTOCOL.md the SDK wins; every such
//! difference and every choice made where both are silent is in `docs/protocol-notes.md`.
//!
//! Validation walks the JSON value against a table of fields ([`Field`]) so one answer can
//! name every problem by JSON Pointer; only a body with no violation is turned into the
//! typed request.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::violation::{Violation, ViolationCode};

/// `POST` path of routing-status injection.
pub const ROUTING_STATUS_PATH: &str = "/api/v2/events/users/routingstatus";
/// `POST` path of presence injection.
pub const PRESENCE_PATH: &str = "/api/v2/events/users/presence";
/// `POST` path of conversation injection.
pub const CONVERSATIONS_PATH: &str = "/api/v2/events/conversations";
/// `GET` path of the presence definitions.
pub const PRESENCE_DEFINITIONS_PATH: &str = "/api/v2/presence/definitions";

/// Permission each endpoint needs.
pub const PERMISSION_ROUTING_STATUS: &str = "routing:routingstatus:inject";
pub const PERMISSION_PRESENCE: &str = "presence:userPresence:inject";
pub const PERMISSION_CONVERSATION: &str = "conversation:conversation:inject";
/// Every injection permission, in endpoint order.
pub const ALL_PERMISSIONS: [&str; 3] = [
    PERMISSION_ROUTING_STATUS,
    PERMISSION_PRESENCE,
    PERMISSION_CONVERSATION,
];

/// Most events in one request, over all its arrays.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;
/// Error code of a request with more than [`MAX_EVENTS_PER_REQUEST`] events.
pub const CODE_MAX_BATCH_SIZE: &str = "max.batch.size.surpassed";
/// Error code of a request with no event.
pub const CODE_ZERO_EVENTS: &str = "zero.events.submitted";
/// Error code of any other invalid request.
pub const CODE_BAD_REQUEST: &str = "bad.request";

/// An agent's routing status (SDK `UserRoutingStatusEvent.StatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutingStatus {
    OffQueue,
    Idle,
    Interacting,
    Communicating,
    NotResponding,
}

impl RoutingStatus {
    pub const WIRE: [&'static str; 5] = [
        "OffQueue",
        "Idle",
        "Interacting",
        "Communicating",
        "NotResponding",
    ];
}

/// How a communication ended (SDK `CommunicationEndedEvent.DisconnectTypeEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisconnectType {
    Error,
    Peer,
    #[serde(rename = "Self")]
    SelfEnded,
    System,
    Transfer,
    #[serde(rename = "TransferACD")]
    TransferAcd,
    TransferConference,
    TransferConsult,
    TransferUser,
}

impl DisconnectType {
    pub const WIRE: [&'static str; 9] = [
        "Error",
        "Peer",
        "Self",
        "System",
        "Transfer",
        "TransferACD",
        "TransferConference",
        "TransferConsult",
        "TransferUser",
    ];
}

/// One routing-status change of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRoutingStatusEvent {
    pub event_id: Uuid,
    /// ISO-8601 in UTC, as sent (checked by [`validate_routing_status`]).
    pub event_date_time: String,
    pub agent_id: Uuid,
    pub status: RoutingStatus,
    /// The agent's source platform id (free text).
    pub source_id: String,
}

/// Body of `POST /api/v2/events/users/routingstatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUserRoutingStatusEventRequest {
    pub user_routing_status_events: Vec<UserRoutingStatusEvent>,
}

/// One presence change of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPresenceEvent {
    pub event_id: Uuid,
    pub event_date_time: String,
    pub user_id: Uuid,
    /// The presence source being updated.
    pub source_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_definition_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Body of `POST /api/v2/events/users/presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUserPresenceEventRequest {
    pub user_presence_events: Vec<UserPresenceEvent>,
}

/// A communication was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationAnsweredEvent {
    pub event_id: Uuid,
    pub event_date_time: String,
    pub conversation_id: Uuid,
    pub communication_id: Uuid,
}

/// Whether a communication's audio lets its participant hear and be heard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_hear: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_speak: Option<bool>,
}

/// Metadata about a communication at its start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_state: Option<AudioState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_info: Option<BTreeMap<String, String>>,
}

/// Where a communication's interaction comes from on the external platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceConfiguration {
    pub source_id: String,
    pub interaction_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<String>,
}

/// A user joined a conversation (a communication of that user was established).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEstablishedEvent {
    pub event_id: Uuid,
    pub event_date_time: String,
    pub conversation_id: Uuid,
    pub communication_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    pub user_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ani: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_call_work_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<Uuid>,
    pub initial_configuration: InitialConfiguration,
    pub source_configuration: SourceConfiguration,
}

/// A communication ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationEndedEvent {
    pub event_id: Uuid,
    pub event_date_time: String,
    pub conversation_id: Uuid,
    pub communication_id: Uuid,
    pub disconnect_type: DisconnectType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_conversation_id: Option<Uuid>,
}

/// A communication was put on hold or taken off it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldUpdatedEvent {
    pub event_id: Uuid,
    pub event_date_time: String,
    pub conversation_id: Uuid,
    pub communication_id: Uuid,
    pub held: bool,
}

/// Body of `POST /api/v2/events/conversations`: the four voice event types gcx sends
/// (the SDK model has more; see [`CONVERSATION_ARRAYS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchConversationEventRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communication_answered_events: Vec<CommunicationAnsweredEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hold_updated_events: Vec<HoldUpdatedEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_established_events: Vec<UserEstablishedEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communication_ended_events: Vec<CommunicationEndedEvent>,
}

impl BatchConversationEventRequest {
    /// Events over all arrays.
    pub fn len(&self) -> usize {
        self.communication_answered_events.len()
            + self.hold_updated_events.len()
            + self.user_established_events.len()
            + self.communication_ended_events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One event the server did not take, in a 200 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventError {
    pub event_id: String,
    pub message: String,
    /// Only an event marked retryable may be sent again (with the same eventId).
    #[serde(default)]
    pub retryable: bool,
}

/// The 200 answer of every injection endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEventResponse {
    #[serde(default)]
    pub errors: Vec<EventError>,
}

/// Why a whole request was refused: the error code of the 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    ZeroEventsSubmitted,
    MaxBatchSizeSurpassed,
    BadRequest,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::ZeroEventsSubmitted => CODE_ZERO_EVENTS,
            RefusalCode::MaxBatchSizeSurpassed => CODE_MAX_BATCH_SIZE,
            RefusalCode::BadRequest => CODE_BAD_REQUEST,
        }
    }
}

/// A refused request: its code (the batch-size codes win over `bad.request`) and every
/// violation, whole-body ones first, then each array's events in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({} violation(s))", code.as_str(), violations.len())]
pub struct Refusal {
    pub code: RefusalCode,
    pub violations: Vec<Violation>,
}

/// The kind of value a field holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A hyphenated UUID, any version, either case.
    Uuid,
    /// ISO-8601 in UTC (`crate::time::parse`).
    DateTime,
    /// A non-empty string.
    Text,
    /// Any string (may be empty).
    AnyText,
    Bool,
    Enum(&'static [&'static str]),
    Object(&'static [Field]),
    /// An object of string values.
    StringMap,
}

/// One field of an event or nested object.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

const ROUTING_STATUS_FIELDS: &[Field] = &[
    req("eventId", Kind::Uuid),
    req("eventDateTime", Kind::DateTime),
    req("agentId", Kind::Uuid),
    req("status", Kind::Enum(&RoutingStatus::WIRE)),
    req("sourceId", Kind::Text),
];

const PRESENCE_FIELDS: &[Field] = &[
    req("eventId", Kind::Uuid),
    req("eventDateTime", Kind::DateTime),
    req("userId", Kind::Uuid),
    req("sourceId", Kind::Uuid),
    opt("presenceDefinitionId", Kind::Uuid),
    opt("message", Kind::AnyText),
];

const AUDIO_STATE_FIELDS: &[Field] = &[opt("canHear", Kind::Bool), opt("canSpeak", Kind::Bool)];

const INITIAL_CONFIGURATION_FIELDS: &[Field] = &[
    opt("audioState", Kind::Object(AUDIO_STATE_FIELDS)),
    opt("alerting", Kind::Bool),
    opt("inbound", Kind::Bool),
    opt("invitedBy", Kind::AnyText),
    opt("recordingActive", Kind::Bool),
    opt("additionalInfo", Kind::StringMap),
];

const SOURCE_CONFIGURATION_FIELDS: &[Field] = &[
    req("sourceId", Kind::Text),
    req("interactionId", Kind::Text),
    opt("tagId", Kind::AnyText),
];

const ANSWERED_FIELDS: &[Field] = &[
    req("eventId", Kind::Uuid),
    req("eventDateTime", Kind::DateTime),
    req("conversationId", Kind::Uuid),
    req("communicationId", Kind::Uuid),
];

const HOLD_FIELDS: &[Field] = &[
    req("eventId", Kind::Uuid),
    req("eventDateTime", Kind::DateTime),
    req("conversationId", Kind::Uuid),
    req("communicationId", Kind::Uuid),
    req("held", Kind::Bool),
];

const USER_ESTABLISHED_FIELDS: &[Field] = &[
    req("eventId", Kind::Uuid),
    req("eventDateTime", Kind::DateTime),
    req("conversationId", Kind::Uuid),
    req("communicationId", Kind::Uuid),
    opt("phoneNumber", Kind::AnyText),
    req("userId", Kind::Uuid),
    opt("stationId", Kind::Uuid),
    opt("ani", Kind::AnyText),
    opt("dnis", Kind::AnyText),
    opt("afterCallWorkRequired", Kind::Bool),
    opt("queueId", Kind::Uuid),
    req(
        "initialConfiguration",
        Kind::Object(INITIAL_CONFIGURATION_FIELDS),
    ),
    req(
        "sourceConfiguration",
        Kind::Object(SOURCE_CONFIGURATION_FIELDS),
    ),
];

const ENDED_FIELDS: &[Field] = &[
    req("eventId", Kind::Uuid),
    req("eventDateTime", Kind::DateTime),
    req("conversationId", Kind::Uuid),
    req("communicationId", Kind::Uuid),
    req("disconnectType", Kind::Enum(&DisconnectType::WIRE)),
    opt("destinationConversationId", Kind::Uuid),
];

/// The arrays of a routing-status body.
const ROUTING_STATUS_ARRAYS: &[(&str, &[Field])] =
    &[("userRoutingStatusEvents", ROUTING_STATUS_FIELDS)];
/// The arrays of a presence body.
const PRESENCE_ARRAYS: &[(&str, &[Field])] = &[("userPresenceEvents", PRESENCE_FIELDS)];
/// The arrays of a conversations body that gcx sends and the sandbox emulates.
pub const CONVERSATION_ARRAYS: [&str; 4] = [
    "communicationAnsweredEvents",
    "holdUpdatedEvents",
    "userEstablishedEvents",
    "communicationEndedEvents",
];
const CONVERSATION_ARRAY_FIELDS: &[(&str, &[Field])] = &[
    ("communicationAnsweredEvents", ANSWERED_FIELDS),
    ("holdUpdatedEvents", HOLD_FIELDS),
    ("userEstablishedEvents", USER_ESTABLISHED_FIELDS),
    ("communicationEndedEvents", ENDED_FIELDS),
];

/// Checks a routing-status body; the typed request or every violation.
pub fn validate_routing_status(
    body: &Value,
) -> Result<BatchUserRoutingStatusEventRequest, Refusal> {
    validate_body(body, ROUTING_STATUS_ARRAYS)
}

/// Checks a presence body; the typed request or every violation.
pub fn validate_presence(body: &Value) -> Result<BatchUserPresenceEventRequest, Refusal> {
    validate_body(body, PRESENCE_ARRAYS)
}

/// Checks a conversations body; the typed request or every violation. A key that is not
/// one of [`CONVERSATION_ARRAYS`] is refused (the sandbox does not emulate it).
pub fn validate_conversations(body: &Value) -> Result<BatchConversationEventRequest, Refusal> {
    validate_body(body, CONVERSATION_ARRAY_FIELDS)
}

fn validate_body<T: DeserializeOwned>(
    body: &Value,
    arrays: &[(&str, &[Field])],
) -> Result<T, Refusal> {
    let names: Vec<&str> = arrays.iter().map(|(n, _)| *n).collect();
    let mut out = Vec::new();
    let Some(obj) = body.as_object() else {
        out.push(violation(
            "",
            ViolationCode::Type,
            format!(
                "expected a JSON object with {}, found {}",
                names.join(" / "),
                describe(body)
            ),
        ));
        return Err(Refusal {
            code: RefusalCode::BadRequest,
            violations: out,
        });
    };
    let mut events = 0usize;
    let mut per_event = Vec::new();
    for (name, fields) in arrays {
        let path = format!("/{name}");
        match obj.get(*name) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                events += items.len();
                for (i, item) in items.iter().enumerate() {
                    check_object(&format!("{path}/{i}"), item, fields, &mut per_event);
                }
            }
            Some(other) => per_event.push(violation(
                &path,
                ViolationCode::Type,
                format!("expected an array of events, found {}", describe(other)),
            )),
        }
    }
    for key in obj.keys() {
        if !names.contains(&key.as_str()) {
            per_event.push(violation(
                &format!("/{}", escape_pointer(key)),
                ViolationCode::Unknown,
                format!(
                    "unknown key {key:?}; the sandbox takes {}",
                    names.join(", ")
                ),
            ));
        }
    }
    let code = if events == 0 {
        out.push(violation(
            "",
            ViolationCode::Size,
            format!(
                "no event submitted; send 1 to {MAX_EVENTS_PER_REQUEST} events in {}",
                names.join(" / ")
            ),
        ));
        RefusalCode::ZeroEventsSubmitted
    } else if events > MAX_EVENTS_PER_REQUEST {
        out.push(violation(
            "",
            ViolationCode::Size,
            format!(
                "{events} events submitted; at most {MAX_EVENTS_PER_REQUEST} per request over all arrays"
            ),
        ));
        RefusalCode::MaxBatchSizeSurpassed
    } else {
        RefusalCode::BadRequest
    };
    out.extend(per_event);
    if !out.is_empty() {
        return Err(Refusal {
            code,
            violations: out,
        });
    }
    // Every field was checked above, so this only fails if the tables and the types
    // disagree; that is reported, not unwrapped.
    serde_json::from_value(body.clone()).map_err(|e| Refusal {
        code: RefusalCode::BadRequest,
        violations: vec![violation("", ViolationCode::Type, e.to_string())],
    })
}

fn check_object(path: &str, value: &Value, fields: &[Field], out: &mut Vec<Violation>) {
    let Some(obj) = value.as_object() else {
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        out.push(violation(
            path,
            ViolationCode::Type,
            format!(
                "expected an object with {}, found {}",
                names.join(", "),
                describe(value)
            ),
        ));
        return;
    };
    check_fields(path, obj, fields, out);
}

fn check_fields(path: &str, obj: &Map<String, Value>, fields: &[Field], out: &mut Vec<Violation>) {
    for field in fields {
        let here = format!("{path}/{}", field.name);
        match obj.get(field.name) {
            None if field.required => out.push(violation(
                &here,
                ViolationCode::Required,
                format!(
                    "{} is required; expected {}",
                    field.name,
                    expected(field.kind)
                ),
            )),
            None => {}
            Some(Value::Null) if field.required => out.push(violation(
                &here,
                ViolationCode::Null,
                format!(
                    "{} must not be null; expected {}",
                    field.name,
                    expected(field.kind)
                ),
            )),
            Some(Value::Null) => {}
            Some(v) => check_value(&here, v, field.kind, out),
        }
    }
}

fn check_value(path: &str, value: &Value, kind: Kind, out: &mut Vec<Violation>) {
    let wrong_type = |out: &mut Vec<Violation>| {
        out.push(violation(
            path,
            ViolationCode::Type,
            format!("expected {}, found {}", expected(kind), describe(value)),
        ))
    };
    match kind {
        Kind::Object(fields) => check_object(path, value, fields, out),
        Kind::Bool => {
            if !value.is_boolean() {
                wrong_type(out);
            }
        }
        Kind::StringMap => match value.as_object() {
            None => wrong_type(out),
            Some(map) => {
                for (k, v) in map {
                    if !v.is_string() {
                        out.push(violation(
                            &format!("{path}/{}", escape_pointer(k)),
                            ViolationCode::Type,
                            format!("expected a string, found {}", describe(v)),
                        ));
                    }
                }
            }
        },
        Kind::Uuid | Kind::DateTime | Kind::Text | Kind::AnyText | Kind::Enum(_) => {
            let Some(s) = value.as_str() else {
                wrong_type(out);
                return;
            };
            let (ok, code) = match kind {
                Kind::Uuid => (
                    crate::validate::parse_hyphenated_uuid(s).is_some(),
                    ViolationCode::Format,
                ),
                Kind::DateTime => (crate::time::parse(s).is_some(), ViolationCode::Format),
                Kind::Text => (!s.trim().is_empty(), ViolationCode::Format),
                Kind::Enum(values) => (values.contains(&s), ViolationCode::Enum),
                _ => (true, ViolationCode::Format),
            };
            if !ok {
                out.push(violation(
                    path,
                    code,
                    format!(
                        "found {}; expected {}",
                        describe(&Value::String(s.to_owned())),
                        expected(kind)
                    ),
                ));
            }
        }
    }
}

fn expected(kind: Kind) -> String {
    match kind {
        Kind::Uuid => "a hyphenated UUID, e.g. 550e8400-e29b-41d4-a716-446655440000".into(),
        Kind::DateTime => "an ISO-8601 UTC date-time, e.g. 2026-11-21T10:00:00.123Z".into(),
        Kind::Text => "a non-empty string".into(),
        Kind::AnyText => "a string".into(),
        Kind::Bool => "true or false".into(),
        Kind::Enum(values) => format!("one of {}", values.join(", ")),
        Kind::Object(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            format!("an object with {}", names.join(", "))
        }
        Kind::StringMap => "an object of string values".into(),
    }
}

fn violation(path: &str, code: ViolationCode, message: String) -> Violation {
    Violation {
        path: path.to_owned(),
        code,
        message,
    }
}

/// A key as one JSON Pointer token (RFC 6901: `~` -> `~0`, `/` -> `~1`).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(o) => format!("an object of {} keys", o.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";
    const AT: &str = "2026-11-21T10:00:00.123Z";

    fn paths(r: &Refusal) -> Vec<&str> {
        r.violations.iter().map(|v| v.path.as_str()).collect()
    }

    #[test]
    fn a_valid_routing_status_body_is_typed() {
        let body = json!({"userRoutingStatusEvents":[{"eventId":ID,"eventDateTime":AT,
            "agentId":ID,"status":"NotResponding","sourceId":"ext"}]});
        let typed = validate_routing_status(&body).unwrap();
        assert_eq!(
            typed.user_routing_status_events[0].status,
            RoutingStatus::NotResponding
        );
        assert_eq!(serde_json::to_value(&typed).unwrap(), body);
    }

    #[test]
    fn size_codes_win_and_every_violation_is_listed() {
        let empty = validate_presence(&json!({"userPresenceEvents":[]})).unwrap_err();
        assert_eq!(empty.code, RefusalCode::ZeroEventsSubmitted);
        let none = validate_conversations(&json!({})).unwrap_err();
        assert_eq!(none.code.as_str(), "zero.events.submitted");
        let ev = json!({"eventId":ID,"eventDateTime":AT,"conversationId":ID,"communicationId":ID});
        let many = json!({"communicationAnsweredEvents": vec![ev.clone(); 60],
            "holdUpdatedEvents": vec![json!({"eventId":"x"}); 41]});
        let r = validate_conversations(&many).unwrap_err();
        assert_eq!(r.code.as_str(), "max.batch.size.surpassed");
        assert_eq!(r.violations[0].path, "");
        assert!(paths(&r).contains(&"/holdUpdatedEvents/40/held"));
        assert!(paths(&r).contains(&"/holdUpdatedEvents/0/eventId"));
    }

    #[test]
    fn nested_objects_and_enums_are_checked_with_their_paths() {
        let body = json!({"userEstablishedEvents":[{"eventId":ID,"eventDateTime":"yesterday",
            "conversationId":ID,"communicationId":ID,"userId":ID,
            "initialConfiguration":{"audioState":{"canHear":"yes"},"additionalInfo":{"a/b":1}},
            "sourceConfiguration":{"sourceId":"","interactionId":"i"}}],
            "communicationEndedEvents":[{"eventId":ID,"eventDateTime":AT,"conversationId":ID,
            "communicationId":ID,"disconnectType":"self"}],
            "emailUserEstablishedEvents":[]});
        let r = validate_conversations(&body).unwrap_err();
        assert_eq!(r.code, RefusalCode::BadRequest);
        assert_eq!(
            paths(&r),
            vec![
                "/userEstablishedEvents/0/eventDateTime",
                "/userEstablishedEvents/0/initialConfiguration/audioState/canHear",
                "/userEstablishedEvents/0/initialConfiguration/additionalInfo/a~1b",
                "/userEstablishedEvents/0/sourceConfiguration/sourceId",
                "/communicationEndedEvents/0/disconnectType",
                "/emailUserEstablishedEvents",
            ]
        );
        assert_eq!(r.violations[4].code, ViolationCode::Enum);
    }

    #[test]
    fn disconnect_types_use_the_sdk_spelling() {
        assert_eq!(
            serde_json::to_value(DisconnectType::SelfEnded).unwrap(),
            "Self"
        );
        assert_eq!(
            serde_json::to_value(DisconnectType::TransferAcd).unwrap(),
            "TransferACD"
        );
        for w in DisconnectType::WIRE {
            assert!(serde_json::from_value::<DisconnectType>(json!(w)).is_ok());
        }
        for w in RoutingStatus::WIRE {
            assert!(serde_json::from_value::<RoutingStatus>(json!(w)).is_ok());
        }
    }
}
