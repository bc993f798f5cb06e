//! Standard Webhooks signing (PROTOCOL.md section 5): the `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers of one attempt.
//!
//! Every attempt is re-timestamped and re-signed, so a late retry still verifies within
//! the receiver's 5-minute tolerance; the id stays the same on every retry.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a webhook secret cannot be used (never holds the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("is not base64 after `whsec_` (accepted: whsec_ followed by standard base64)")]
    NotBase64,
    #[error("decodes to an empty key (accepted: whsec_ followed by base64 of at least 1 byte)")]
    Empty,
}

/// The headers of one signed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub webhook_id: String,
    /// Unix seconds of this attempt, as sent.
    pub webhook_timestamp: String,
    /// `v1,<base64>`; `None` when the target has no secret.
    pub webhook_signature: Option<String>,
}

/// Signs attempts for one target; holds the decoded HMAC key, if any.
#[derive(Clone)]
pub struct Signer {
    /// `None`: the target has no secret, attempts carry no `webhook-signature`.
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        f.debug_struct("Signer").field("key", &key).finish()
    }
}

impl Signer {
    /// A signer that adds no signature (a target without a secret).
    pub fn unsigned() -> Signer {
        Signer { key: None }
    }

    /// A signer for a `whsec_<base64>` secret; as in the Standard Webhooks libraries the
    /// prefix may be left out.
    pub fn from_secret(secret: &str) -> Result<Signer, SecretError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = BASE64
            .decode(encoded.trim())
            .map_err(|_| SecretError::NotBase64)?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Signer { key: Some(key) })
    }

    pub fn is_signing(&self) -> bool {
        self.key.is_some()
    }

    /// `v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>`, or `None` unsigned.
    pub fn signature(&self, message_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        let key = self.key.as_ref()?;
        // HMAC-SHA256 accepts keys of any length, so `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
    }

    /// The headers of one attempt made at `timestamp` (Unix seconds).
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
        SignedHeaders {
            webhook_id: message_id.to_owned(),
            webhook_timestamp: timestamp.to_string(),
            webhook_signature: self.signature(message_id, timestamp, body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md's vector (the one the Standard Webhooks libraries publish).
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn signs_the_published_vector() {
        let signer = Signer::from_secret(SECRET).unwrap();
        assert_eq!(
            signer.signature(ID, TS, BODY.as_bytes()).as_deref(),
            Some(SIG)
        );
    }

    #[test]
    fn the_standardwebhooks_crate_verifies_what_we_sign() {
        let signer = Signer::from_secret(SECRET).unwrap();
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"correlationId":"c1","executionState":"initiated"}"#;
        let signed = signer.sign("msg_abc", now, body);
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", signed.webhook_id.parse().unwrap());
        headers.insert(
            "webhook-timestamp",
            signed.webhook_timestamp.parse().unwrap(),
        );
        headers.insert(
            "webhook-signature",
            signed.webhook_signature.unwrap().parse().unwrap(),
        );
        let verifier = standardwebhooks::Webhook::new(SECRET).unwrap();
        verifier.verify(body, &headers).unwrap();
        // A changed body no longer verifies.
        assert!(verifier.verify(b"{}", &headers).is_err());
    }

    #[test]
    fn the_prefix_is_optional_and_bad_secrets_are_refused() {
        let bare = Signer::from_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            bare.signature(ID, TS, BODY.as_bytes()).as_deref(),
            Some(SIG)
        );
        assert_eq!(
            Signer::from_secret("whsec_not base64!").unwrap_err(),
            SecretError::NotBase64
        );
        assert_eq!(
            Signer::from_secret("whsec_").unwrap_err(),
            SecretError::Empty
        );
    }

    #[test]
    fn unsigned_targets_get_id_and_timestamp_only() {
        let signed = Signer::unsigned().sign("msg_1", 42, b"{}");
        assert_eq!(signed.webhook_id, "msg_1");
        assert_eq!(signed.webhook_timestamp, "42");
        assert_eq!(signed.webhook_signature, None);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let signer = Signer::from_secret(SECRET).unwrap();
        let shown = format!("{signer:?}");
        assert!(
            !shown.contains("C2FV") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
