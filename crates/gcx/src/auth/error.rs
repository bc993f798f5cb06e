//! Why a token could not be had, each case naming what to fix. No variant carries the
//! client secret or a token.

use std::time::Duration;

use thiserror::Error;

/// The settings a user fixes when the login is refused.
pub const CLIENT_ID_SETTING: &str = "`genesys.client_id` (GENESYSCLOUD_OAUTHCLIENT_ID) and `genesys.client_secret` (GENESYSCLOUD_OAUTHCLIENT_SECRET)";

/// A failed token request.
#[derive(Debug, Error)]
pub enum AuthError {
    /// Neither a client id nor a sandbox to fall back on.
    #[error("no OAuth client id: set {CLIENT_ID_SETTING}")]
    NoClient,
    /// A client id without its secret.
    #[error(
        "no client secret for OAuth client {client_id:?}: set `genesys.client_secret` \
         (GENESYSCLOUD_OAUTHCLIENT_SECRET)"
    )]
    NoSecret { client_id: String },
    /// 401 `invalid_client`: wrong id or secret, or no Basic header.
    #[error(
        "login at {url} refused client id {client_id:?} (invalid_client: {description}); \
         check the settings {CLIENT_ID_SETTING}"
    )]
    InvalidClient {
        url: String,
        client_id: String,
        description: String,
    },
    /// 400 `invalid_scope`, or a granted token without a scope gcx needs.
    #[error(
        "OAuth client {client_id:?} lacks the scope(s) {scopes}: {description}; grant {scopes} \
         to the client in Genesys Cloud (Admin > Integrations > OAuth) or use another client",
        scopes = .missing.join(", ")
    )]
    MissingScope {
        client_id: String,
        /// Every scope that is missing.
        missing: Vec<String>,
        description: String,
    },
    /// Any other 4xx answer (the server's `error` code and description).
    #[error("login at {url} failed with {status} {error}: {description}")]
    Refused {
        url: String,
        status: u16,
        error: String,
        description: String,
    },
    /// 429/5xx/connection faults until the retry deadline passed.
    #[error("login at {url} still failing after {attempts} attempts over {elapsed:?}: {last}")]
    Unavailable {
        url: String,
        attempts: u32,
        elapsed: Duration,
        /// The last failure (status or connection error).
        last: String,
    },
    /// A 200 whose body is not a token response.
    #[error("login at {url} answered 200 with a body that is not a token response: {reason}")]
    BadResponse { url: String, reason: String },
    /// The login URL is not usable.
    #[error(
        "login URL {url:?} is invalid: {reason}; set `genesys.login_base`, `genesys.region` or --base-url"
    )]
    BadUrl { url: String, reason: String },
}

/// A REST call made through [`crate::auth::TokenProvider::send_authorized`].
#[derive(Debug, Error)]
pub enum AuthorizedError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
}
