//! ARCHITECTURE.md: "Only `delivery/` sends webhooks." Scans `crates/gcx/src` for what a
//! second sender would need (an HMAC, the webhook signer, the Standard Webhooks header
//! names) and fails on any of it outside `delivery/`.

use std::path::{Path, PathBuf};

/// What only a webhook sender writes: an HMAC (the signature), the delivery signer built
/// or reached into, the Standard Webhooks crate.
const CODE: &[&str] = &[
    "Hmac::<",
    "Hmac<",
    "hmac::",
    "Signer::from_secret",
    "Signer::unsigned",
    "delivery::signer",
    "delivery::Signer",
    "standardwebhooks::",
];

/// The Standard Webhooks header names as string literals (matched in any case).
const HEADERS: &[&str] = &[
    "\"webhook-id\"",
    "\"webhook-timestamp\"",
    "\"webhook-signature\"",
];

/// Folders (under `src/`) allowed to hold them: the outbox worker, the one sender. The
/// audit chain signs with Ed25519 and hashes with SHA-256 (`audit_chain/keys.rs`,
/// `audit_chain/hash.rs`), which none of the patterns match: it needs no entry here.
const ALLOWED: &[&str] = &["delivery/"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `path:line: pattern` for every line of `text` holding a pattern.
fn offences(path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        let code = CODE.iter().filter(|p| line.contains(*p));
        let headers = HEADERS.iter().filter(|p| lower.contains(*p));
        for pattern in code.chain(headers) {
            found.push(format!("{path}:{}: {pattern}", n + 1));
        }
    }
    found
}

/// Every source file as (path relative to `src/`, text).
fn sources() -> Vec<(String, String)> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    files
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            (relative, text)
        })
        .collect()
}

#[test]
fn only_delivery_builds_or_signs_webhooks() {
    let outside: Vec<String> = sources()
        .iter()
        .filter(|(path, _)| !ALLOWED.iter().any(|a| path.starts_with(a)))
        .flat_map(|(path, text)| offences(path, text))
        .collect();
    assert!(
        outside.is_empty(),
        "a second webhook sender? only delivery/ may sign or send webhooks (queue an outbox \
         message with delivery::message instead):\n{}",
        outside.join("\n")
    );
}

#[test]
fn the_patterns_match_what_delivery_itself_writes() {
    // If delivery/ changes how it spells these, the scan above would look for nothing.
    let inside: String = sources()
        .iter()
        .filter(|(path, _)| path.starts_with("delivery/"))
        .flat_map(|(path, text)| offences(path, text))
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "delivery/signer.rs:",
        "Hmac::<",
        "delivery/target.rs:",
        "Signer::from_secret",
        "delivery/attempt.rs:",
        "\"webhook-signature\"",
        "\"webhook-id\"",
    ] {
        assert!(inside.contains(needle), "{needle} not found in:\n{inside}");
    }
    // And a sender written elsewhere is caught.
    let mut caught = offences(
        "desk/report/x.rs",
        "let mac = Hmac::<Sha256>::new_from_slice(&key)?;\n.header(\"Webhook-Signature\", s)",
    );
    caught.sort();
    assert_eq!(
        caught,
        [
            "desk/report/x.rs:1: Hmac::<",
            "desk/report/x.rs:2: \"webhook-signature\"",
        ]
    );
}
