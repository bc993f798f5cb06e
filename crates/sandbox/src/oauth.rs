//! `POST /oauth/token` (PROTOCOL.md section 2) and the tokens it issues. Other parts of
//! the sandbox ask [`Tokens::check`] who a bearer token belongs to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gcx_protocol::oauth::{
    ALL_SCOPES, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, OAuthError, TokenResponse,
};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::AppState;

/// An OAuth client the sandbox accepts: `--client ID:SECRET:scope,scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub id: String,
    pub secret: String,
    pub scopes: Vec<String>,
}

impl ClientSpec {
    /// The default client: `gcx-demo` / `gcx-demo-secret` with every scope.
    pub fn demo() -> ClientSpec {
        ClientSpec {
            id: DEMO_CLIENT_ID.into(),
            secret: DEMO_CLIENT_SECRET.into(),
            scopes: ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl std::str::FromStr for ClientSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        let (Some(id), Some(secret), Some(scopes)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "expected ID:SECRET:scope,scope, got {:?}",
                s.split(':').next().unwrap_or("")
            ));
        };
        if id.is_empty() || secret.is_empty() {
            return Err("client ID and SECRET must not be empty".into());
        }
        let scopes = scopes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(ClientSpec {
            id: id.into(),
            secret: secret.into(),
            scopes,
        })
    }
}

/// Who a live token belongs to.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The tenant: on the sandbox, the OAuth client id.
    pub tenant: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

impl TokenInfo {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
    /// Seconds left, rounded down.
    pub fn expires_in(&self) -> u64 {
        self.expires_at
            .saturating_duration_since(Instant::now())
            .as_secs()
    }
}

/// Issued tokens. Expired ones are dropped on each issue, so the map stays bounded by
/// the tokens alive at once.
#[derive(Default)]
pub struct Tokens {
    live: Mutex<HashMap<String, TokenInfo>>,
}

impl Tokens {
    pub fn issue(&self, tenant: &str, scopes: Vec<String>, lifetime: Duration) -> String {
        let token = format!("sbx_{}", uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|_, info| info.expires_at > now);
        live.insert(
            token.clone(),
            TokenInfo {
                tenant: tenant.into(),
                scopes,
                // A lifetime past what the clock holds (`u64::MAX` s) means ~forever.
                expires_at: now
                    .checked_add(lifetime)
                    .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600)),
            },
        );
        token
    }

    /// The token's owner, if it exists and has not expired.
    pub fn check(&self, token: &str) -> Option<TokenInfo> {
        let info = self.live.lock().get(token).cloned()?;
        (info.expires_at > Instant::now()).then_some(info)
    }

    /// The owner of `Authorization: Bearer <token>`, if valid.
    pub fn check_bearer(&self, headers: &HeaderMap) -> Option<TokenInfo> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        self.check(token.trim())
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = OAuthError {
        error: error.into(),
        error_description: Some(description.into()),
    };
    (status, axum::Json(body)).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `POST /oauth/token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let reject = |status, error: &str, description: &str| {
        state.stats.oauth.rejected.inc();
        oauth_error(status, error, description)
    };
    let Some((id, secret)) = basic_credentials(&headers) else {
        return reject(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "missing or malformed Basic authorization header",
        );
    };
    let Some(client) = state
        .options
        .clients
        .iter()
        .find(|c| c.id == id && c.secret == secret)
    else {
        return reject(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    };
    let Ok(Form(form)) = form else {
        return reject(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be application/x-www-form-urlencoded",
        );
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => {
            return reject(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some(_) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
    }
    let scopes: Vec<String> = match form
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => client.scopes.clone(),
        Some(requested) => {
            let requested: Vec<String> = requested.split_whitespace().map(str::to_owned).collect();
            if let Some(missing) = requested.iter().find(|s| !client.scopes.contains(s)) {
                return reject(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("client has no scope {missing:?}"),
                );
            }
            requested
        }
    };
    let lifetime = state.faults.read().token_lifetime_secs;
    let access_token =
        state
            .tokens
            .issue(&client.id, scopes.clone(), Duration::from_secs(lifetime));
    state.stats.oauth.tokens_issued.inc();
    let body = TokenResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in: lifetime,
        scope: Some(scopes.join(" ")),
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_spec_parses_scopes_with_colons() {
        let c: ClientSpec = "qa:qa-secret:interactions:read,analytics:query"
            .parse()
            .unwrap();
        assert_eq!(c.id, "qa");
        assert_eq!(c.secret, "qa-secret");
        assert_eq!(c.scopes, vec!["interactions:read", "analytics:query"]);
        assert!("nocolon".parse::<ClientSpec>().is_err());
        assert!(":s:x".parse::<ClientSpec>().is_err());
    }
}
