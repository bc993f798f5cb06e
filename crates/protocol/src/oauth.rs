//! OAuth 2.0 client credentials (PROTOCOL.md section 2).

use serde::{Deserialize, Serialize};

/// The scope that opens the assist stream.
pub const SCOPE_ASSIST_READ: &str = "agentassist:read";
/// The scope that allows `send` on the assist stream.
pub const SCOPE_ASSIST_TRIGGER: &str = "agentassist:trigger";
/// The scope that allows posting interaction events.
pub const SCOPE_INTERACTIONS_READ: &str = "interactions:read";
/// The scope that allows query-back.
pub const SCOPE_ANALYTICS_QUERY: &str = "analytics:query";
/// What dispatching triggers needs: open the assist stream and `send` on it.
pub const ASSIST_SCOPES: [&str; 2] = [SCOPE_ASSIST_READ, SCOPE_ASSIST_TRIGGER];
/// The sandbox's built-in client (PROTOCOL.md section 7), with every scope. Its secret is
/// public by design: it opens nothing but a local sandbox.
pub const DEMO_CLIENT_ID: &str = "gcx-demo";
pub const DEMO_CLIENT_SECRET: &str = "gcx-demo-secret";
/// Every scope gcx knows, in a stable order.
pub const ALL_SCOPES: [&str; 4] = [
    SCOPE_ASSIST_READ,
    SCOPE_ASSIST_TRIGGER,
    SCOPE_INTERACTIONS_READ,
    SCOPE_ANALYTICS_QUERY,
];

/// A 200 answer from `POST {login_base}/oauth/token`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    // The token is a secret: Debug never shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// An error answer from the token endpoint (`invalid_client`, `invalid_scope`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// When to refresh a token that lives `expires_in` seconds: `expires_in - min(60 s, 10 %)`.
pub fn refresh_after_secs(expires_in: u64) -> f64 {
    let e = expires_in as f64;
    e - (60.0f64).min(e * 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_the_smaller_of_60s_and_10_percent() {
        assert_eq!(refresh_after_secs(86_400), 86_340.0);
        assert_eq!(refresh_after_secs(100), 90.0);
        assert_eq!(refresh_after_secs(2), 1.8);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = TokenResponse {
            access_token: "s3cr3t".into(),
            token_type: "bearer".into(),
            expires_in: 1,
            scope: None,
        };
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
