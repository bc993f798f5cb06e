//! Request authentication: `Authorization: Bearer <api key>` on every `/v1` route (and
//! `/metrics` when configured), the throttle of failed authentications per client
//! address ([`auth_failures`]), the per-key rate limit, and the refusal of credentials
//! in query strings (they end up in proxy logs and browser history).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth_failures;
use super::error::ApiError;
use super::state::AppState;

/// Query parameter names that carry a credential, compared case-insensitively after
/// percent-decoding.
const CREDENTIAL_PARAMS: [&str; 10] = [
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "bearer",
    "authorization",
    "auth",
    "x-api-key",
];

/// Refuses any request whose query string carries a credential, by name or by value (a
/// configured key under any name), whatever the route.
pub async fn refuse_key_in_query(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(query) = request.uri().query() {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name).to_ascii_lowercase();
            let value = percent_decode(value);
            let named = CREDENTIAL_PARAMS.contains(&name.as_str());
            if named || (!value.is_empty() && state.keys.verify(&value).is_some()) {
                tracing::warn!(
                    param = %name,
                    path = %request.uri().path(),
                    "refused a request carrying a credential in its query string"
                );
                return ApiError::unauthorized(
                    "api_key_in_query",
                    format!(
                        "query parameter `{name}` carries a credential; API keys are accepted only in the `Authorization: Bearer <key>` header (query strings end up in logs), so this request was refused; consider that key exposed and rotate it"
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Lets a request through only with a configured API key in the `Authorization` header,
/// then applies that key's rate limit.
///
/// A client address over its failed authentications (`serve.auth_failures_per_minute`)
/// is answered 429 before its key is checked; failures are logged as one line for the
/// first of a busy spell, then as a periodic summary ([`auth_failures::AuthFailures`]).
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer
        && let Err(after) = state.auth_failures.check(peer)
    {
        metrics::counter!("gcx_serve_auth_throttled_total").increment(1);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_auth_failures",
            format!(
                "this address sent more than {} requests with a missing or wrong API key in a \
                 minute (serve.auth_failures_per_minute); retry after the Retry-After header's \
                 seconds with a key from serve.api_keys",
                state.config.auth_failures_per_minute
            ),
        )
        .with_retry_after(after)
        .into_response();
    }
    let verified = bearer_key(&request).and_then(|key| {
        state.keys.verify(key).ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_api_key",
                "the API key in the Authorization header is not one of serve.api_keys",
            )
        })
    });
    let id = match verified {
        Ok(id) => id,
        Err(refusal) => {
            metrics::counter!("gcx_serve_auth_failures_total").increment(1);
            let first = peer.is_none_or(|p| state.auth_failures.record(p));
            if first {
                tracing::warn!(
                    peer = %peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                    path = %request.uri().path(),
                    code = refusal.code(),
                    "refused a request without a valid API key; more such refusals are summarized every {}s",
                    auth_failures::SUMMARY_EVERY.as_secs()
                );
            }
            return refusal.into_response();
        }
    };
    if let Err(after) = state.limiter.check(id) {
        metrics::counter!("gcx_serve_rate_limited_total").increment(1);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this API key is over its rate limit of {} requests per second (serve.rate_limit_per_key); retry after the Retry-After header's seconds",
                state.config.rate_limit_per_key
            ),
        )
        .with_retry_after(after)
        .into_response();
    }
    request.extensions_mut().insert(id);
    next.run(request).await
}

fn bearer_key(request: &Request) -> Result<&str, ApiError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing_api_key",
            "this route needs an API key: send `Authorization: Bearer <key>` with a key from serve.api_keys",
        ));
    };
    let text = value.to_str().map_err(|_| {
        ApiError::unauthorized(
            "invalid_authorization",
            "the Authorization header is not visible ASCII; send `Authorization: Bearer <key>`",
        )
    })?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "invalid_authorization",
            "the Authorization header must use the Bearer scheme: `Authorization: Bearer <key>`",
        ));
    }
    let key = rest.trim();
    if key.is_empty() {
        return Err(ApiError::unauthorized(
            "missing_api_key",
            "the Authorization header says Bearer but holds no key: send `Authorization: Bearer <key>`",
        ));
    }
    Ok(key)
}

/// Decodes `%XX` escapes and `+` (form encoding); malformed escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("api%5Fkey"), "api_key");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%41"), "A");
    }
}
