//! The audit signing key: an Ed25519 key generated into the data folder on first use
//! (`audit-signing.key`, PKCS#8 PEM, mode 0600) and its public half exported beside it
//! (`audit-signing.pub`, SubjectPublicKeyInfo PEM) for offline verification.
//!
//! A verifier accepts a public key file in that PEM form or as 64 hex characters (the
//! raw 32-byte key). A key is named by its id: the first 16 hex characters of the
//! SHA-256 of the raw public key.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// File name of the private key inside the data folder.
pub const SIGNING_KEY_FILE: &str = "audit-signing.key";
/// File name of the exported public key inside the data folder.
pub const PUBLIC_KEY_FILE: &str = "audit-signing.pub";

/// A problem with a key file; names the file and what would be accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read audit key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write audit key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit key file {path} is not a valid {expected}: {detail}")]
    Malformed {
        path: PathBuf,
        expected: &'static str,
        detail: String,
    },
}

/// The id of a public key: 16 hex characters of SHA-256 over its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The signing key of this data folder.
pub struct AuditKeys {
    signing: SigningKey,
    /// Cached [`key_id`] of the public half.
    id: String,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("key_id", &self.id)
            .finish()
    }
}

impl AuditKeys {
    /// Loads `<data_dir>/audit-signing.key`, generating it (and exporting the public key)
    /// when it does not exist yet. Safe against another process doing the same at once.
    pub fn load_or_generate(data_dir: &Path) -> Result<AuditKeys, KeyError> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        let signing = match std::fs::read_to_string(&path) {
            Ok(pem) => parse_signing_key(&path, &pem)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(data_dir, &path)?,
            Err(source) => return Err(KeyError::Read { path, source }),
        };
        crate::private_files::tighten(&path).map_err(|source| KeyError::Write {
            path: path.clone(),
            source,
        })?;
        let keys = AuditKeys {
            id: key_id(&signing.verifying_key()),
            signing,
        };
        let public = data_dir.join(PUBLIC_KEY_FILE);
        if !public.exists() {
            keys.export_public_key(&public)?;
        }
        Ok(keys)
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// Writes the public key as PEM to `path`.
    pub fn export_public_key(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Malformed {
                path: path.to_path_buf(),
                expected: "Ed25519 public key",
                detail: e.to_string(),
            })?;
        write_new_file(path, pem.as_bytes(), 0o644, true)
    }
}

fn parse_signing_key(path: &Path, pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Malformed {
        path: path.to_path_buf(),
        expected: "PKCS#8 PEM Ed25519 private key (\"-----BEGIN PRIVATE KEY-----\")",
        detail: e.to_string(),
    })
}

fn generate(data_dir: &Path, path: &Path) -> Result<SigningKey, KeyError> {
    crate::private_files::create_dir(data_dir).map_err(|source| KeyError::Write {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Malformed {
            path: path.to_path_buf(),
            expected: "Ed25519 private key",
            detail: e.to_string(),
        })?;
    // Written to a private temporary file, then linked into place: a reader never sees a
    // half-written key, and when another process won the race we use its key instead.
    let tmp = path.with_extension(format!("key.tmp-{}", std::process::id()));
    write_new_file(&tmp, pem.as_bytes(), 0o600, true)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(file = %path.display(), "generated the audit signing key");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            parse_signing_key(path, &pem)
        }
        Err(source) => Err(KeyError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    if sync {
        file.sync_all().map_err(err)?;
    }
    Ok(())
}

/// Reads a public key file: SubjectPublicKeyInfo PEM or 64 hex characters.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_public_key(path, &text)
}

fn parse_public_key(path: &Path, text: &str) -> Result<VerifyingKey, KeyError> {
    let malformed = |detail: String| KeyError::Malformed {
        path: path.to_path_buf(),
        expected: "Ed25519 public key (PEM \"-----BEGIN PUBLIC KEY-----\" or 64 hex characters)",
        detail,
    };
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(trimmed).map_err(|e| malformed(e.to_string()));
    }
    let bytes = hex::decode(trimmed).map_err(|e| malformed(e.to_string()))?;
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| malformed(format!("{} bytes, expected 32", b.len())))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| malformed(e.to_string()))
}

/// Checks an Ed25519 signature (strict: rejects malleable and small-order forms).
pub fn verify_signature(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    key.verify_strict(message, signature).is_ok() && key.verify(message, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditKeys::load_or_generate(dir.path()).unwrap();
        let b = AuditKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let public = read_public_key(&dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(public, a.verifying_key());
        let sig = a.sign(b"message");
        assert!(verify_signature(&public, b"message", &sig));
        assert!(!verify_signature(&public, b"massage", &sig));
    }

    #[cfg(unix)]
    #[test]
    fn a_signing_key_others_can_read_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = AuditKeys::load_or_generate(dir.path()).unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = AuditKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.key_id(), first.key_id());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn public_key_accepts_hex_and_rejects_junk_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let keys = AuditKeys::load_or_generate(dir.path()).unwrap();
        let hex_file = dir.path().join("key.hex");
        std::fs::write(&hex_file, hex::encode(keys.verifying_key().as_bytes())).unwrap();
        assert_eq!(read_public_key(&hex_file).unwrap(), keys.verifying_key());
        std::fs::write(&hex_file, "not a key").unwrap();
        let err = read_public_key(&hex_file).unwrap_err().to_string();
        assert!(err.contains("key.hex") && err.contains("64 hex"), "{err}");
    }

    #[test]
    fn a_corrupt_private_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNING_KEY_FILE), "garbage").unwrap();
        let err = AuditKeys::load_or_generate(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(SIGNING_KEY_FILE) && err.contains("PKCS#8"),
            "{err}"
        );
    }
}
