//! gcx's intake of a trigger file, stdin or HTTP body (`assist::intake::parse_triggers`):
//! bytes -> JSON array, single object or JSON Lines -> validated items with lines.
//! Asserts: items are numbered in order, each starts on a line of the input, each refusal
//! lists violations, each valid trigger round-trips; only blank input is `Empty`.
#![no_main]

use std::sync::LazyLock;

use gcx::assist::intake::{InputFormat, IntakeOptions, parse_triggers};
use gcx_fuzz::{assert_refusal, assert_round_trip};
use gcx_protocol::Catalogue;
use libfuzzer_sys::fuzz_target;

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::builtin);

fuzz_target!(|data: &[u8]| {
    // The last byte's low bit picks whether missing correlationIds are assigned.
    let options = IntakeOptions {
        assign_ids: data.last().is_some_and(|b| b & 1 == 1),
    };
    let (format, items) = parse_triggers(data, &CATALOGUE, options);
    let lines = 1 + data.iter().filter(|b| **b == b'\n').count();
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    assert_eq!(
        format == InputFormat::Empty,
        body.iter().all(u8::is_ascii_whitespace),
        "Empty is for blank input only"
    );
    if format == InputFormat::SingleObject {
        assert_eq!(items.len(), 1);
    }
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.index, i);
        assert!(
            (1..=lines).contains(&item.line),
            "line {} of {lines}",
            item.line
        );
        match &item.outcome {
            Ok(payload) => {
                assert_round_trip(payload, &CATALOGUE);
                if let Some(id) = item.assigned_id {
                    assert!(options.assign_ids);
                    assert_eq!(payload.correlation_id, id);
                }
            }
            Err(violations) => assert_refusal(violations),
        }
    }
});
