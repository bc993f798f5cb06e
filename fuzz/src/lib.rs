//! What every trigger-reading fuzz target asserts beyond "no panic".

use gcx_protocol::validate::validate_trigger;
use gcx_protocol::{ActionTriggerPayload, Catalogue, Violation};

/// A refusal lists at least one violation, and each path is a JSON Pointer (`""` or
/// starting with `/`) with a message for a person.
pub fn assert_refusal(violations: &[Violation]) {
    assert!(!violations.is_empty(), "a refusal with no violation");
    for v in violations {
        assert!(
            v.path.is_empty() || v.path.starts_with('/'),
            "not a JSON Pointer: {:?}",
            v.path
        );
        assert!(
            !v.message.is_empty(),
            "a violation without a message: {v:?}"
        );
    }
}

/// A valid trigger re-serializes into a trigger that validates again, unchanged.
pub fn assert_round_trip(payload: &ActionTriggerPayload, catalogue: &Catalogue) {
    let value = serde_json::to_value(payload).expect("a payload serializes");
    match validate_trigger(&value, catalogue) {
        Ok(again) => assert_eq!(&again, payload, "a valid trigger changed on a round trip"),
        Err(v) => panic!("a valid trigger, re-serialized, is refused: {v:?}"),
    }
}

/// A file of this fuzzing process to hand a path-taking reader its input: the readers
/// under test take paths (config file, profile file), and a file on tmpfs costs little.
pub fn scratch_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = dir.join(format!("gcx-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("a scratch file");
    path
}
