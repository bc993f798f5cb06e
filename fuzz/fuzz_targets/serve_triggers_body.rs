//! The body of `POST /v1/triggers` as `gcx serve` reads it (`server::routes::triggers`:
//! `read_body`, then `validate_item` and `readable_id` per item), without the HTTP stack.
//! Asserts: an accepted body is one object (`single`) or 1 to max_batch items; a refusal
//! is a 400 or 413 with a message; each item's refusal lists violations, each valid item
//! round-trips, and its correlationId is what `readable_id` read.
#![no_main]

use std::sync::LazyLock;

use gcx::server::routes::triggers::{read_body, readable_id, validate_item};
use gcx_fuzz::{assert_refusal, assert_round_trip};
use gcx_protocol::Catalogue;
use libfuzzer_sys::fuzz_target;

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::builtin);
/// `serve.max_batch`'s default.
const MAX_BATCH: usize = 1000;

fuzz_target!(|data: &[u8]| {
    match read_body(data, MAX_BATCH) {
        Ok((items, single)) => {
            assert!((1..=MAX_BATCH).contains(&items.len()));
            if single {
                assert_eq!(items.len(), 1);
                assert!(items[0].is_object());
            }
            for item in &items {
                let id = readable_id(item);
                match validate_item(item, &CATALOGUE) {
                    Ok(payload) => {
                        assert_round_trip(&payload, &CATALOGUE);
                        assert_eq!(id, Some(payload.correlation_id.to_string()));
                    }
                    Err(violations) => assert_refusal(&violations),
                }
            }
        }
        Err(e) => {
            assert!(matches!(e.status.as_u16(), 400 | 413), "{}", e.status);
            assert!(!e.body.error.message.is_empty());
        }
    }
});
