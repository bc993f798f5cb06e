//! The body of `POST /v1/outbox/replay` as `gcx serve` reads it
//! (`server::routes::outbox::read_replay`), without the HTTP stack.
//! Asserts: a refusal is a 400 with a message; an accepted `since` is a time the
//! protocol writes and reads back unchanged.
#![no_main]

use gcx::server::routes::outbox::read_replay;
use gcx_protocol::time;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match read_replay(data) {
        Ok(filter) => {
            if let Some(since) = filter.since {
                assert_eq!(time::parse(&time::format_event(since)), Some(since));
            }
        }
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400);
            assert!(!e.body.error.message.is_empty());
        }
    }
});
