//! The Agent Assist stream (PROTOCOL.md section 3): the `WsMessage` envelope every frame
//! carries, the payload of each message type, and the close codes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::violation::Violation;

/// Path of the assist stream on an API host.
pub const STREAM_PATH: &str = "/api/v2/agentassist/stream";
/// A message over this many bytes is refused with a `size` violation; the socket stays open.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// A frame over this many bytes closes the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Close codes the server uses (section 3.1).
pub mod close {
    /// A first message that is not `connect`.
    pub const BAD_FIRST_MESSAGE: u16 = 4000;
    /// Invalid or expired token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Token without `agentassist:read`.
    pub const FORBIDDEN: u16 = 4003;
    /// No `connect` within the handshake timeout.
    pub const HANDSHAKE_TIMEOUT: u16 = 4008;
    /// Going away (after `closing`).
    pub const GOING_AWAY: u16 = 1001;
    /// Frame too big.
    pub const TOO_BIG: u16 = 1009;
}

/// The `type` of a frame. Unknown strings parse as [`MessageType::Unknown`], which the
/// server answers with a 400 and keeps the socket open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Connect,
    Connected,
    Send,
    Ack,
    Result,
    Error,
    Heartbeat,
    Ping,
    Pong,
    Reauth,
    Reauthenticated,
    Subscribe,
    Subscribed,
    Capacity,
    Closing,
    #[serde(other)]
    Unknown,
}

/// The `error` member of a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsError {
    pub code: u16,
    pub message: String,
}

/// One frame: the seed's `WSMessage` shape. Absent fields are omitted on the wire.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WsError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

impl std::fmt::Debug for WsMessage {
    // `connect` and `reauth` carry a token: Debug shows that one is there, never what it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsMessage")
            .field("type", &self.kind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("payload", &self.payload)
            .field("error", &self.error)
            .field("channels", &self.channels)
            .finish()
    }
}

impl WsMessage {
    /// A frame of `kind` with nothing else set.
    pub fn bare(kind: MessageType) -> Self {
        WsMessage {
            kind,
            token: None,
            payload: None,
            error: None,
            channels: None,
        }
    }

    /// A frame of `kind` carrying `payload`.
    pub fn with_payload<P: Serialize>(kind: MessageType, payload: &P) -> Self {
        WsMessage {
            payload: Some(to_value(payload)),
            ..Self::bare(kind)
        }
    }

    /// `{"type":"connect","token":…}`.
    pub fn connect(token: &str) -> Self {
        WsMessage {
            token: Some(token.to_owned()),
            ..Self::bare(MessageType::Connect)
        }
    }

    /// `{"type":"reauth","token":…}`.
    pub fn reauth(token: &str) -> Self {
        WsMessage {
            token: Some(token.to_owned()),
            ..Self::bare(MessageType::Reauth)
        }
    }

    /// `{"type":"send","payload":…}`.
    pub fn send(payload: &ActionTriggerPayload) -> Self {
        Self::with_payload(MessageType::Send, payload)
    }

    /// `{"type":"subscribe","channels":[…]}`.
    pub fn subscribe(channels: &[&str]) -> Self {
        WsMessage {
            channels: Some(channels.iter().map(|c| (*c).to_owned()).collect()),
            ..Self::bare(MessageType::Subscribe)
        }
    }

    /// `{"type":"error","error":{code,message},"payload":…}` (payload omitted when empty).
    pub fn error(code: u16, message: impl Into<String>, payload: ErrorPayload) -> Self {
        let payload = if payload == ErrorPayload::default() {
            None
        } else {
            Some(to_value(&payload))
        };
        WsMessage {
            error: Some(WsError {
                code,
                message: message.into(),
            }),
            payload,
            ..Self::bare(MessageType::Error)
        }
    }

    /// The payload parsed as `P`, if there is one and it has that shape.
    pub fn payload_as<P: for<'de> Deserialize<'de>>(&self) -> Option<P> {
        self.payload
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings, numbers and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A received frame with its payload left as JSON text: the envelope is parsed once and
/// the payload straight into the type its `type` names ([`WsFrame::payload_as`]), with
/// no JSON tree built in between. What a client reads; [`WsMessage`] is what it sends.
#[derive(Debug, Deserialize)]
pub struct WsFrame<'a> {
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<WsError>,
}

impl WsFrame<'_> {
    /// The payload parsed as `P`, if there is one and it has that shape.
    pub fn payload_as<P: for<'de> Deserialize<'de>>(&self) -> Option<P> {
        serde_json::from_str(self.payload?.get()).ok()
    }
}

fn to_value<P: Serialize>(p: &P) -> Value {
    // Every payload type here is plain data with string keys: serialization cannot fail.
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// `connected` payload (section 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedPayload {
    pub protocol_version: u32,
    pub connection_id: Uuid,
    pub max_concurrent_actions: u32,
    pub heartbeat_interval_ms: u64,
    pub token_expires_in: u64,
}

/// The action a client triggers (section 3.4). Build one from JSON with
/// [`crate::validate::validate_trigger`] so it is known to be valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionTriggerPayload {
    pub action_type: String,
    pub parameter_matrix: Map<String, Value>,
    pub execution_context: BTreeMap<String, String>,
    pub correlation_id: Uuid,
    #[serde(default)]
    pub max_retries: u8,
}

impl ActionTriggerPayload {
    /// `executionContext.agentId` (present on every validated payload).
    pub fn agent_id(&self) -> &str {
        self.execution_context
            .get("agentId")
            .map(String::as_str)
            .unwrap_or("")
    }
    /// `executionContext.sessionId`.
    pub fn session_id(&self) -> &str {
        self.execution_context
            .get("sessionId")
            .map(String::as_str)
            .unwrap_or("")
    }
    /// `executionContext.interactionType`.
    pub fn interaction_type(&self) -> &str {
        self.execution_context
            .get("interactionType")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// `ack` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckPayload {
    pub correlation_id: Uuid,
    /// Always `"accepted"`.
    pub status: String,
    pub duplicate: bool,
}

/// Final state of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultState {
    Completed,
    Failed,
}

/// The `error` of a failed result: a string code (`timeout`, `engine_error`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultError {
    pub code: String,
    pub message: String,
}

/// `result` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultPayload {
    pub correlation_id: Uuid,
    pub action_type: String,
    pub state: ResultState,
    /// The action's output as JSON text: a client stores and forwards it as it came,
    /// so it is kept as text rather than parsed into a tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResultError>,
    pub engine_latency_ms: u64,
}

impl PartialEq for ResultPayload {
    /// Outputs compare as text (what was sent).
    fn eq(&self, other: &Self) -> bool {
        self.correlation_id == other.correlation_id
            && self.action_type == other.action_type
            && self.state == other.state
            && self.output.as_ref().map(|o| o.get()) == other.output.as_ref().map(|o| o.get())
            && self.error == other.error
            && self.engine_latency_ms == other.engine_latency_ms
    }
}

/// `error` payload; every member optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Violation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_scopes: Option<Vec<String>>,
}

/// `heartbeat` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatPayload {
    pub server_time: String,
}

/// `reauthenticated` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReauthenticatedPayload {
    pub token_expires_in: u64,
}

/// `subscribed` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribedPayload {
    pub channels: Vec<String>,
}

/// `capacity` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityPayload {
    pub max_concurrent_actions: u32,
}

/// `closing` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosingPayload {
    pub reason: String,
    pub reconnect_within_ms: u64,
}

/// The one channel a client may subscribe to.
pub const CHANNEL_CAPACITY: &str = "capacity";

/// The interaction types `executionContext.interactionType` may take.
pub const INTERACTION_TYPES: [&str; 6] = ["voice", "chat", "email", "message", "callback", "video"];

#[cfg(test)]
mod tests {
    use super::*;

    /// A 429 `error` frame with `retryAfterMs` 5.
    fn busy() -> WsMessage {
        WsMessage::error(
            429,
            "busy",
            ErrorPayload {
                retry_after_ms: Some(5),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_result_frame_reads_back_with_its_output_as_sent() {
        let result = ResultPayload {
            correlation_id: Uuid::nil(),
            action_type: "knowledge_search".into(),
            state: ResultState::Completed,
            output: serde_json::value::to_raw_value(&serde_json::json!({"b": [1, 2], "a": "x"}))
                .ok(),
            error: None,
            engine_latency_ms: 3,
        };
        let text = WsMessage::with_payload(MessageType::Result, &result).to_json();
        let frame: WsFrame<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(frame.kind, MessageType::Result);
        let back: ResultPayload = frame.payload_as().unwrap();
        assert_eq!(back, result);
        assert_eq!(back.output.unwrap().get(), r#"{"b":[1,2],"a":"x"}"#);
        // An error frame: payload and error both read.
        let text = busy().to_json();
        let frame: WsFrame<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(frame.error.as_ref().map(|e| e.code), Some(429));
        let payload: ErrorPayload = frame.payload_as().unwrap();
        assert_eq!(payload.retry_after_ms, Some(5));
    }

    #[test]
    fn unknown_type_parses_as_unknown() {
        let m: WsMessage = serde_json::from_str(r#"{"type":"bogus"}"#).unwrap();
        assert_eq!(m.kind, MessageType::Unknown);
    }

    #[test]
    fn absent_fields_are_omitted() {
        assert_eq!(
            WsMessage::bare(MessageType::Ping).to_json(),
            r#"{"type":"ping"}"#
        );
        assert_eq!(
            busy().to_json(),
            r#"{"type":"error","payload":{"retryAfterMs":5},"error":{"code":429,"message":"busy"}}"#
        );
    }

    #[test]
    fn debug_hides_tokens() {
        assert!(!format!("{:?}", WsMessage::connect("tok-123")).contains("tok-123"));
    }
}
