//! `TokenProvider`: OAuth 2.0 client credentials (PROTOCOL.md section 2), cached, refreshed
//! ahead of expiry with one refresh in flight however many tasks ask.
//!
//! - [`token`]: [`AccessToken`], a token with its lifetime; Debug never shows the value.
//! - [`provider`]: [`TokenProvider`] (fetch, cache, single-flight refresh, background
//!   refresh, a `watch` of fresh tokens, "401: refresh once and retry once").
//! - [`error`]: [`AuthError`], each variant naming the setting to fix.
//!
//! Its one metric, [`TOKEN_REFRESHES`], is named here (`gcx serve` describes it through
//! [`describe_metrics`]).

pub mod error;
pub mod provider;
pub mod token;

pub use error::{AuthError, AuthorizedError};
pub use provider::{Credentials, TokenProvider};
pub use token::AccessToken;

/// Counter: OAuth tokens fetched.
pub const TOKEN_REFRESHES: &str = "gcx_token_refreshes_total";

/// Registers the description of [`TOKEN_REFRESHES`].
pub fn describe_metrics() {
    metrics::describe_counter!(TOKEN_REFRESHES, "OAuth tokens fetched.");
}
