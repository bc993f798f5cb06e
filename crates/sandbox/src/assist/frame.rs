//! One text frame from a client after the handshake, read into what it asks for without
//! touching the connection: the connection answers the [`ClientFrame`], and the fuzz
//! targets read frames through the same function.

use gcx_protocol::assist::MAX_MESSAGE_BYTES;
use serde_json::Value;
use uuid::Uuid;

use super::admission::correlation_id;

/// What a client's text frame asks for.
#[derive(Debug)]
pub enum ClientFrame {
    /// Over [`MAX_MESSAGE_BYTES`]; still read for its type and correlationId, so the
    /// refusal of a `send` says which send it refuses.
    TooLarge {
        len: usize,
        is_send: bool,
        correlation_id: Option<Uuid>,
    },
    /// Not JSON: serde_json's reason.
    NotJson(String),
    /// `send` with its `payload` (absent: `None`).
    Send(Option<Value>),
    Ping,
    /// `reauth` with its `token` (absent: `None`).
    Reauth(Option<Value>),
    /// `subscribe` with its `channels` (absent: `None`).
    Subscribe(Option<Value>),
    /// `connect` after the handshake.
    Connect,
    /// A string `type` that is none of the above.
    Unknown(String),
    /// No string `type` at all.
    NoType,
}

/// Reads one text frame (pure).
pub fn read(text: &str) -> ClientFrame {
    if text.len() > MAX_MESSAGE_BYTES {
        let value: Option<Value> = serde_json::from_str(text).ok();
        let is_send = value
            .as_ref()
            .and_then(|v| v.get("type"))
            .and_then(Value::as_str)
            == Some("send");
        let correlation_id = value
            .as_ref()
            .and_then(|v| correlation_id(v.get("payload")));
        return ClientFrame::TooLarge {
            len: text.len(),
            is_send,
            correlation_id,
        };
    }
    let mut value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return ClientFrame::NotJson(e.to_string()),
    };
    let kind = match value.get("type").and_then(Value::as_str) {
        Some(kind) => kind.to_owned(),
        None => return ClientFrame::NoType,
    };
    let mut take = |key: &str| value.as_object_mut().and_then(|o| o.remove(key));
    match kind.as_str() {
        "send" => ClientFrame::Send(take("payload")),
        "ping" => ClientFrame::Ping,
        "reauth" => ClientFrame::Reauth(take("token")),
        "subscribe" => ClientFrame::Subscribe(take("channels")),
        "connect" => ClientFrame::Connect,
        _ => ClientFrame::Unknown(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_type() {
        assert!(matches!(
            read(r#"{"type":"send","payload":{"a":1}}"#),
            ClientFrame::Send(Some(_))
        ));
        assert!(matches!(
            read(r#"{"type":"send"}"#),
            ClientFrame::Send(None)
        ));
        assert!(matches!(read(r#"{"type":"ping"}"#), ClientFrame::Ping));
        assert!(matches!(
            read(r#"{"type":"reauth","token":"t"}"#),
            ClientFrame::Reauth(Some(Value::String(_)))
        ));
        assert!(matches!(
            read(r#"{"type":"subscribe","channels":[]}"#),
            ClientFrame::Subscribe(Some(Value::Array(_)))
        ));
        assert!(matches!(
            read(r#"{"type":"connect"}"#),
            ClientFrame::Connect
        ));
        assert!(matches!(read(r#"{"type":"x"}"#), ClientFrame::Unknown(k) if k == "x"));
        assert!(matches!(read(r#"{"type":7}"#), ClientFrame::NoType));
        assert!(matches!(read("[1]"), ClientFrame::NoType));
        assert!(matches!(read("{"), ClientFrame::NotJson(_)));
    }

    #[test]
    fn a_large_send_keeps_its_correlation_id() {
        let id = "00000000-0000-4000-8000-000000000001";
        let text = format!(
            r#"{{"type":"send","payload":{{"correlationId":"{id}","pad":"{}"}}}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        match read(&text) {
            ClientFrame::TooLarge {
                len,
                is_send,
                correlation_id,
            } => {
                assert_eq!(len, text.len());
                assert!(is_send);
                assert_eq!(correlation_id, Some(id.parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
    }
}
