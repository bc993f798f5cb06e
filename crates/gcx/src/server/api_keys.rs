//! API keys: loaded from `serve.api_keys`, kept only as SHA-256 digests, and checked in
//! constant time, so neither memory dumps nor timing tell an attacker a key.
//!
//! A configured entry is either a digest (64 hex digits, optionally prefixed `sha256:`;
//! `gcx serve hash-key` makes one) or a plain key, which is hashed at load and then
//! forgotten.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use thiserror::Error;

use crate::config::Secret;

/// Plain keys shorter than this are refused at load: they could be guessed.
pub const MIN_PLAIN_KEY_LEN: usize = 16;

/// Which configured key a request presented: its position in `serve.api_keys`.
/// Used for per-key rate limits and in logs (the key itself never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub usize);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key#{}", self.0)
    }
}

/// Why the configured keys were refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApiKeyError {
    #[error(
        "serve.api_keys is empty: every /v1 route needs `Authorization: Bearer <key>`; add a key (a plain key of at least {MIN_PLAIN_KEY_LEN} characters, or its SHA-256 hex digest from `gcx serve hash-key`)"
    )]
    NoKeys,
    #[error(
        "serve.api_keys[{index}] is a plain key of {len} characters; use at least {MIN_PLAIN_KEY_LEN}, or give its SHA-256 hex digest (64 hex digits)"
    )]
    TooShort { index: usize, len: usize },
    #[error("serve.api_keys[{index}] starts with `sha256:` but is not followed by 64 hex digits")]
    BadDigest { index: usize },
}

/// The configured keys, as digests.
#[derive(Clone)]
pub struct ApiKeys {
    /// SHA-256 of each key, in configuration order (the index is the [`KeyId`]).
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

/// SHA-256 of a key, as lowercase hex: what `serve.api_keys` may hold instead of the key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

impl ApiKeys {
    /// Loads `serve.api_keys`; refuses an empty list and short plain keys.
    pub fn load(entries: &[Secret]) -> Result<ApiKeys, ApiKeyError> {
        if entries.is_empty() {
            return Err(ApiKeyError::NoKeys);
        }
        let mut digests = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let text = entry.expose().trim();
            let digest = if let Some(hexed) = text.strip_prefix("sha256:") {
                parse_hex_digest(hexed).ok_or(ApiKeyError::BadDigest { index })?
            } else if let Some(d) = parse_hex_digest(text) {
                d
            } else {
                let len = text.chars().count();
                if len < MIN_PLAIN_KEY_LEN {
                    return Err(ApiKeyError::TooShort { index, len });
                }
                Sha256::digest(text.as_bytes()).into()
            };
            digests.push(digest);
        }
        Ok(ApiKeys { digests })
    }

    /// Which key `presented` is, if any. Every configured digest is compared, in constant
    /// time each, whatever matches, so the answer's timing says nothing about the keys.
    pub fn verify(&self, presented: &str) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = 0u64;
        let mut any = Choice::from(0);
        for (i, known) in self.digests.iter().enumerate() {
            let hit = known.ct_eq(&digest);
            // Branch-free select: keeps the first hit's index.
            found = u64::conditional_select(&found, &(i as u64), hit & !any);
            any |= hit;
        }
        bool::from(any).then_some(KeyId(found as usize))
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "test-key-0123456789abcdef";

    #[test]
    fn plain_and_hashed_entries_both_verify() {
        let keys = ApiKeys::load(&[
            Secret::new(PLAIN),
            Secret::new(hash_key("second-key-0123456789")),
            Secret::new(format!("sha256:{}", hash_key("third-key-0123456789"))),
        ])
        .unwrap();
        assert_eq!(keys.verify(PLAIN), Some(KeyId(0)));
        assert_eq!(keys.verify("second-key-0123456789"), Some(KeyId(1)));
        assert_eq!(keys.verify("third-key-0123456789"), Some(KeyId(2)));
        assert_eq!(keys.verify("wrong-key-0123456789"), None);
        assert_eq!(keys.verify(""), None);
        // The digest itself is not a key.
        assert_eq!(keys.verify(&hash_key("second-key-0123456789")), None);
    }

    #[test]
    fn refuses_empty_short_and_malformed() {
        assert_eq!(ApiKeys::load(&[]).unwrap_err(), ApiKeyError::NoKeys);
        assert_eq!(
            ApiKeys::load(&[Secret::new("short")]).unwrap_err(),
            ApiKeyError::TooShort { index: 0, len: 5 }
        );
        assert_eq!(
            ApiKeys::load(&[Secret::new(PLAIN), Secret::new("sha256:abc")]).unwrap_err(),
            ApiKeyError::BadDigest { index: 1 }
        );
    }

    #[test]
    fn errors_and_debug_never_show_keys() {
        let keys = ApiKeys::load(&[Secret::new(PLAIN)]).unwrap();
        assert!(!format!("{keys:?}").contains(PLAIN));
        let err = ApiKeys::load(&[Secret::new("tiny-secret")]).unwrap_err();
        assert!(!err.to_string().contains("tiny-secret"));
    }

    #[test]
    fn hash_matches_sha256_test_vector() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
