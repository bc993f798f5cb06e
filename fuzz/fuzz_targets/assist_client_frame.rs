//! The assist client's reader (`assist::frame::read_frame`, what `assist::stream` runs on
//! every text frame): the envelope as the protocol's `WsFrame`, the payload into its type.
//! Also the handshake's answer (`WsMessage`, then `connected`'s payload).
//! Asserts: a `closing` wait can be added to the clock; an `ack`, `result` or `capacity`
//! read from a frame reads back the same from the frame gcx would write for it.
#![no_main]

use std::time::Instant;

use gcx::assist::frame::{Incoming, MAX_RECONNECT_WITHIN, read_frame};
use gcx_protocol::assist::{
    CapacityPayload, ConnectedPayload, MessageType, ResultPayload, WsMessage,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn again(kind: MessageType, payload: &impl serde::Serialize) -> Incoming {
    read_frame(&WsMessage::with_payload(kind, payload).to_json()).expect("a frame gcx wrote reads")
}

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (tungstenite refuses others before gcx sees them).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = serde_json::from_str::<WsMessage>(text) {
        let _ = message.payload_as::<ConnectedPayload>();
    }
    let Ok(incoming) = read_frame(text) else {
        return;
    };
    match incoming {
        Incoming::Closing { within } => {
            assert!(within <= MAX_RECONNECT_WITHIN);
            assert!(Instant::now().checked_add(within).is_some());
        }
        Incoming::Ack(ack) => match again(MessageType::Ack, &ack) {
            Incoming::Ack(back) => assert_eq!(back, ack),
            other => panic!("an ack read back as {other:?}"),
        },
        Incoming::Result(result) => match again(MessageType::Result, &result) {
            // The output is kept as the text that came; gcx's frame writes it compact.
            Incoming::Result(back) => {
                let output = |r: &ResultPayload| {
                    r.output
                        .as_ref()
                        .map(|o| serde_json::from_str::<Value>(o.get()).expect("output is JSON"))
                };
                assert_eq!(output(&back), output(&result));
                assert_eq!(
                    ResultPayload {
                        output: None,
                        ..back
                    },
                    ResultPayload {
                        output: None,
                        ..result
                    }
                );
            }
            other => panic!("a result read back as {other:?}"),
        },
        Incoming::Capacity {
            max_concurrent_actions,
        } => {
            let payload = CapacityPayload {
                max_concurrent_actions,
            };
            assert!(matches!(
                again(MessageType::Capacity, &payload),
                Incoming::Capacity { max_concurrent_actions: n } if n == max_concurrent_actions
            ));
        }
        Incoming::Refused { payload, .. } => {
            let _ = serde_json::to_string(&payload).expect("an error payload serializes");
        }
        Incoming::Quiet | Incoming::Malformed(_) | Incoming::Unexpected(_) => {}
    }
});
