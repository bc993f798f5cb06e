//! Signed checkpoints: an Ed25519 signature over `(seq, hash)` of one record. Through the
//! hash chain a valid checkpoint vouches for every record up to its `seq`. The store
//! writes one every `audit_checkpoint_every` records and one at `close()`; `gcx audit
//! checkpoint` prints the latest so it can be kept outside the store (then even a
//! truncation that also removes the stored checkpoints is detected).

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::keys::{self, AuditKeys, KeyError};

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The record vouched for.
    pub seq: u64,
    /// That record's hash.
    pub hash: String,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
    /// Which public key verifies it ([`keys::key_id`]).
    pub key_id: String,
    /// When it was signed (informational; not covered by the signature).
    #[serde(with = "super::hash::timestamp")]
    pub signed_at: DateTime<Utc>,
}

impl Checkpoint {
    /// The signed bytes: `gcx-audit-checkpoint:v1:<seq>:<hash>`.
    pub fn message(seq: u64, hash: &str) -> Vec<u8> {
        format!("gcx-audit-checkpoint:v1:{seq}:{hash}").into_bytes()
    }

    pub fn sign(keys: &AuditKeys, seq: u64, hash: &str, signed_at: DateTime<Utc>) -> Checkpoint {
        let signature = keys.sign(&Self::message(seq, hash));
        Checkpoint {
            seq,
            hash: hash.to_string(),
            signature: hex::encode(signature.to_bytes()),
            key_id: keys.key_id().to_string(),
            signed_at: super::hash::truncate_to_micros(signed_at),
        }
    }

    /// Whether `key` signed exactly this `(seq, hash)`.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(raw) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let signature = Signature::from_bytes(&raw);
        keys::verify_signature(key, &Self::message(self.seq, &self.hash), &signature)
    }

    /// Reads a checkpoint saved as JSON (what `gcx audit checkpoint` prints).
    pub fn read_file(path: &Path) -> Result<Checkpoint, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| KeyError::Malformed {
            path: path.to_path_buf(),
            expected: "checkpoint JSON ({\"seq\",\"hash\",\"signature\",\"key_id\",\"signed_at\"})",
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_seq_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let keys = AuditKeys::load_or_generate(dir.path()).unwrap();
        let cp = Checkpoint::sign(&keys, 42, &"ab".repeat(32), Utc::now());
        assert!(cp.verify(&keys.verifying_key()));
        let mut other_seq = cp.clone();
        other_seq.seq = 41;
        assert!(!other_seq.verify(&keys.verifying_key()));
        let mut other_hash = cp.clone();
        other_hash.hash = "cd".repeat(32);
        assert!(!other_hash.verify(&keys.verifying_key()));
        let other_dir = tempfile::tempdir().unwrap();
        let other_key = AuditKeys::load_or_generate(other_dir.path()).unwrap();
        assert!(!cp.verify(&other_key.verifying_key()));
        let file = dir.path().join("cp.json");
        std::fs::write(&file, serde_json::to_string(&cp).unwrap()).unwrap();
        assert_eq!(Checkpoint::read_file(&file).unwrap(), cp);
    }
}
