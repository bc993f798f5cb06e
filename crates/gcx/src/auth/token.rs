//! [`AccessToken`]: one bearer token and when it must be refreshed. The value is a
//! [`Secret`]: Debug and Display show `<redacted>`.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Secret;

/// A bearer token the provider fetched.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token itself; only [`AccessToken::expose`] hands it out.
    value: Secret,
    /// When the server stops accepting it (measured from before the request was sent, so
    /// it errs early).
    pub expires_at: Instant,
    /// When the provider replaces it: `expires_in - min(60 s, 10 %)` after the request.
    pub refresh_at: Instant,
    /// The scopes the server granted (its `scope` field), to tell a missing scope early.
    pub scopes: Vec<String>,
    /// Increases with every fetch: lets `invalidate_and_refresh` tell whether the token a
    /// caller saw refused is still the current one or was already replaced.
    pub generation: u64,
}

impl AccessToken {
    pub(crate) fn new(
        value: String,
        fetched_at: Instant,
        expires_in: u64,
        scopes: Vec<String>,
        generation: u64,
    ) -> AccessToken {
        let refresh_after = gcx_protocol::oauth::refresh_after_secs(expires_in);
        AccessToken {
            value: Secret::new(value),
            expires_at: fetched_at + Duration::from_secs(expires_in),
            refresh_at: fetched_at + Duration::from_secs_f64(refresh_after.max(0.0)),
            scopes,
            generation,
        }
    }

    /// The token, for the one place that sends it (an `Authorization` header, `connect`).
    pub fn expose(&self) -> &str {
        self.value.expose()
    }

    /// Whether it is past its refresh time.
    pub fn needs_refresh(&self) -> bool {
        Instant::now() >= self.refresh_at
    }

    /// Time left until it expires (zero once expired).
    pub fn expires_in(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refresh_time_and_redaction() {
        let t = AccessToken::new("tok-secret".into(), Instant::now(), 100, vec![], 1);
        assert_eq!(t.refresh_at - Instant::now(), Duration::from_secs(90));
        assert_eq!(t.expires_in(), Duration::from_secs(100));
        assert!(!t.needs_refresh());
        assert!(!format!("{t:?}").contains("tok-secret"));
        tokio::time::advance(Duration::from_secs(91)).await;
        assert!(t.needs_refresh());
    }
}
