//! The sandbox engine's reader of a client's text frame after the handshake
//! (`assist::frame::read`, what each connection runs), and for a `send` the protocol
//! validator it then applies to the payload (admission's first step).
//! Asserts: only an oversized frame is `TooLarge`; `NotJson` exactly when serde_json
//! refuses the text; a send's refusal lists violations, a valid send round-trips.
#![no_main]

use std::sync::LazyLock;

use gcx_fuzz::{assert_refusal, assert_round_trip};
use gcx_protocol::Catalogue;
use gcx_protocol::assist::MAX_MESSAGE_BYTES;
use gcx_protocol::validate::validate_trigger;
use gcx_sandbox::fuzzing::{ClientFrame, client_frame};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::builtin);

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (axum refuses others before the sandbox sees them).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frame = client_frame(text);
    let parses = serde_json::from_str::<Value>(text).is_ok();
    match &frame {
        ClientFrame::TooLarge { len, .. } => {
            assert!(*len > MAX_MESSAGE_BYTES);
            return;
        }
        _ => assert!(text.len() <= MAX_MESSAGE_BYTES),
    }
    assert_eq!(matches!(frame, ClientFrame::NotJson(_)), !parses);
    if let ClientFrame::Send(payload) = frame {
        match validate_trigger(payload.as_ref().unwrap_or(&Value::Null), &CATALOGUE) {
            Ok(trigger) => assert_round_trip(&trigger, &CATALOGUE),
            Err(violations) => assert_refusal(&violations),
        }
    }
});
