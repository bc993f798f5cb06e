//! A trigger as JSON bytes through the protocol's parse + validate with the default
//! catalogue: what the client checks before sending and the engine on receipt.
//! Asserts: a refusal lists violations as JSON Pointers; a valid trigger re-serializes
//! into one that validates again, unchanged; validating twice gives the same answer.
#![no_main]

use std::sync::LazyLock;

use gcx_fuzz::{assert_refusal, assert_round_trip};
use gcx_protocol::Catalogue;
use gcx_protocol::validate::validate_trigger_bytes;
use libfuzzer_sys::fuzz_target;

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::builtin);

fuzz_target!(|data: &[u8]| {
    let first = validate_trigger_bytes(data, &CATALOGUE);
    match &first {
        Ok(payload) => assert_round_trip(payload, &CATALOGUE),
        Err(violations) => assert_refusal(violations),
    }
    assert_eq!(first, validate_trigger_bytes(data, &CATALOGUE));
});
