//! The sandbox's query-back parameters (`events::query`): body -> the one key asked by
//! and the cursor's position, or a 400.
//! Asserts: an accepted query names at least one id; a refusal is a 400 with a message;
//! a position the sandbox would hand out as a cursor reads back as itself.
#![no_main]

use gcx_sandbox::fuzzing::{QueryKind, query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match query(data) {
        Ok((kind, from)) => {
            match kind {
                QueryKind::SequenceIds(n) | QueryKind::Agents(n) => assert!(n > 0),
                QueryKind::Batch => {}
            }
            // The reader skips unknown keys without reading their values (a string of
            // bytes that are not UTF-8 there passes), and serde also reads a struct from
            // an array: the cursor check needs an object that parses as a whole.
            let mut request = serde_json::from_slice::<serde_json::Value>(data).ok();
            if let Some(fields) = request.as_mut().and_then(|r| r.as_object_mut()) {
                fields.insert("cursor".into(), from.to_string().into());
                let again = serde_json::to_vec(&request).expect("serializes");
                assert_eq!(query(&again), Ok((kind, from)));
            }
        }
        Err((status, message)) => {
            assert_eq!(status, 400);
            assert!(!message.is_empty());
        }
    }
});
