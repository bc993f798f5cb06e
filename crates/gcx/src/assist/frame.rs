//! One text frame from the assist engine, read into what it says: the envelope as the
//! protocol's [`WsFrame`] (payload left as text), the payload straight into the type its
//! `type` names. Pure, so the stream's reader and the fuzz targets read frames alike.

use std::time::Duration;

use gcx_protocol::assist::{
    AckPayload, CapacityPayload, ClosingPayload, ErrorPayload, MessageType, ResultPayload, WsFrame,
};

/// The longest a `closing` notice may hold a connection open before the client
/// reconnects. `reconnectWithinMs` is an upper bound, so reconnecting sooner than a larger
/// value asks is within the protocol; unbounded, a hostile value would overflow the clock.
pub const MAX_RECONNECT_WITHIN: Duration = Duration::from_secs(60);

/// What one frame says after the handshake.
#[derive(Debug)]
pub enum Incoming {
    Ack(AckPayload),
    Result(ResultPayload),
    /// An `error` frame: the envelope's code and message (0 and empty when absent) and
    /// its payload (every member optional).
    Refused {
        code: u16,
        message: String,
        payload: ErrorPayload,
    },
    Capacity {
        max_concurrent_actions: u32,
    },
    /// `closing`: reconnect within this (1 s when the payload is unreadable; at most
    /// [`MAX_RECONNECT_WITHIN`]).
    Closing {
        within: Duration,
    },
    /// `heartbeat`, `pong`, `subscribed`, `reauthenticated`: the frame's arrival is the news.
    Quiet,
    /// An `ack`, `result` or `capacity` whose payload lacks the shape it needs.
    Malformed(MessageType),
    /// A type a server does not send after the handshake (`connected`, `send`, an unknown
    /// one, ...).
    Unexpected(MessageType),
}

/// Reads one text frame; `Err` when it is not a message at all (not JSON, or no string
/// `type`).
pub fn read_frame(text: &str) -> Result<Incoming, serde_json::Error> {
    let frame: WsFrame<'_> = serde_json::from_str(text)?;
    Ok(match frame.kind {
        MessageType::Ack => frame
            .payload_as::<AckPayload>()
            .map_or(Incoming::Malformed(frame.kind), Incoming::Ack),
        MessageType::Result => frame
            .payload_as::<ResultPayload>()
            .map_or(Incoming::Malformed(frame.kind), Incoming::Result),
        MessageType::Error => {
            let (code, message) = frame
                .error
                .as_ref()
                .map(|e| (e.code, e.message.clone()))
                .unwrap_or((0, String::new()));
            Incoming::Refused {
                code,
                message,
                payload: frame.payload_as::<ErrorPayload>().unwrap_or_default(),
            }
        }
        MessageType::Capacity => {
            frame
                .payload_as::<CapacityPayload>()
                .map_or(Incoming::Malformed(frame.kind), |c| Incoming::Capacity {
                    max_concurrent_actions: c.max_concurrent_actions,
                })
        }
        MessageType::Closing => Incoming::Closing {
            within: frame
                .payload_as::<ClosingPayload>()
                .map(|c| Duration::from_millis(c.reconnect_within_ms))
                .unwrap_or(Duration::from_secs(1))
                .min(MAX_RECONNECT_WITHIN),
        },
        MessageType::Heartbeat
        | MessageType::Pong
        | MessageType::Subscribed
        | MessageType::Reauthenticated => Incoming::Quiet,
        other => Incoming::Unexpected(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind() {
        let id = "00000000-0000-4000-8000-000000000001";
        let ack = format!(
            r#"{{"type":"ack","payload":{{"correlationId":"{id}","status":"accepted","duplicate":false}}}}"#
        );
        assert!(
            matches!(read_frame(&ack).unwrap(), Incoming::Ack(a) if a.correlation_id.to_string() == id)
        );
        assert!(matches!(
            read_frame(r#"{"type":"ack","payload":{}}"#).unwrap(),
            Incoming::Malformed(MessageType::Ack)
        ));
        assert!(matches!(
            read_frame(r#"{"type":"error","error":{"code":429,"message":"busy"},"payload":{"retryAfterMs":5}}"#).unwrap(),
            Incoming::Refused { code: 429, payload, .. } if payload.retry_after_ms == Some(5)
        ));
        assert!(matches!(
            read_frame(r#"{"type":"capacity","payload":{"maxConcurrentActions":3}}"#).unwrap(),
            Incoming::Capacity {
                max_concurrent_actions: 3
            }
        ));
        assert!(matches!(
            read_frame(r#"{"type":"heartbeat"}"#).unwrap(),
            Incoming::Quiet
        ));
        assert!(matches!(
            read_frame(r#"{"type":"connected"}"#).unwrap(),
            Incoming::Unexpected(MessageType::Connected)
        ));
        assert!(matches!(
            read_frame(r#"{"type":"nonsense"}"#).unwrap(),
            Incoming::Unexpected(MessageType::Unknown)
        ));
        assert!(read_frame(r#"{"payload":{}}"#).is_err());
        assert!(read_frame("not json").is_err());
    }

    #[test]
    fn closing_waits_as_asked_within_the_bound() {
        let within = |text: &str| match read_frame(text).unwrap() {
            Incoming::Closing { within } => within,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            within(r#"{"type":"closing","payload":{"reason":"m","reconnectWithinMs":1500}}"#),
            Duration::from_millis(1500)
        );
        assert_eq!(within(r#"{"type":"closing"}"#), Duration::from_secs(1));
        // A hostile value is bounded: the reader adds it to the clock, which panics on
        // overflow.
        let huge = within(&format!(
            r#"{{"type":"closing","payload":{{"reason":"m","reconnectWithinMs":{}}}}}"#,
            u64::MAX
        ));
        assert_eq!(huge, MAX_RECONNECT_WITHIN);
        assert!(std::time::Instant::now().checked_add(huge).is_some());
    }
}
