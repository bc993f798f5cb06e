//! Why watching could not start or a channel stopped, each case naming what to fix. No
//! variant holds a bearer token or a client secret; socket addresses are shown without
//! their channel id (whoever holds a `connectUri` can read the channel).

use std::time::Duration;

use thiserror::Error;

use crate::auth::AuthError;

/// A failed call of the Notifications REST API.
#[derive(Debug, Error)]
pub enum ApiError {
    /// No token could be had (the login was refused or unreachable).
    #[error("cannot {what}: {source}")]
    Auth {
        what: &'static str,
        #[source]
        source: AuthError,
    },
    /// A 4xx answer other than 429 (a 401 only after one token refresh).
    #[error(
        "cannot {what}: the API answered {status}{shown}: {message}{hint}",
        shown = if code.is_empty() { String::new() } else { format!(" {code}") }
    )]
    Refused {
        what: &'static str,
        status: u16,
        /// The Genesys error body's `code` (empty when the body is not one).
        code: String,
        message: String,
        /// What to do about it, when the status says (403, 401), with its leading "; ".
        hint: &'static str,
    },
    /// 429, 5xx or connection faults until the retry deadline passed.
    #[error("cannot {what}: still failing after {attempts} attempts over {elapsed:?}: {last}")]
    Unavailable {
        what: &'static str,
        attempts: u32,
        elapsed: Duration,
        /// The last failure (status and message, or the connection error).
        last: String,
    },
    /// A 2xx whose body is not what the API documents.
    #[error("cannot {what}: the answer ({status}) is not understood: {reason}")]
    BadAnswer {
        what: &'static str,
        status: u16,
        reason: String,
    },
    /// The API base URL cannot be used.
    #[error(
        "API base URL {url:?} is invalid: {reason}; set `genesys.api_base`, `genesys.region` or --base-url"
    )]
    BadUrl { url: String, reason: String },
}

impl ApiError {
    /// The HTTP status of a refusal, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (the server was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Unavailable { .. })
    }
}

/// Why a watcher could not start, or why one of its channels stopped.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// Nothing to watch.
    #[error("no topic to watch: name at least one user")]
    NoTopics,
    /// More topics than one OAuth client's channels can hold.
    #[error(
        "{topics} topics are more than one OAuth client can watch: at most {max_channels} \
         channels of {per_channel} topics ({max_topics} topics); with {per_user} topic(s) per \
         user that is at most {users_fit} users ({users} asked)"
    )]
    TooManyTopics {
        topics: usize,
        users: usize,
        per_user: usize,
        users_fit: usize,
        max_topics: usize,
        per_channel: usize,
        max_channels: usize,
    },
    /// Every topic was rejected: nothing would ever be notified.
    #[error(
        "every one of the {topics} topics was rejected{because}",
        because = all_rejected_because(permissions, reasons)
    )]
    AllRejected {
        topics: usize,
        /// Every permission some rejection named as missing.
        permissions: Vec<String>,
        /// The distinct rejection reasons (when no permission is named).
        reasons: Vec<String>,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A channel's socket could not be opened.
    #[error("cannot open the notification socket at {uri}: {reason}")]
    Socket {
        /// The socket's address without the channel id.
        uri: String,
        reason: String,
    },
}

fn all_rejected_because(permissions: &[String], reasons: &[String]) -> String {
    if !permissions.is_empty() {
        format!(
            ": the OAuth client lacks the permission(s) {}; grant them to its role in Genesys \
             Cloud (Admin > Roles / Permissions)",
            permissions.join(", ")
        )
    } else if !reasons.is_empty() {
        format!(" ({})", reasons.join("; "))
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_rejected_names_the_permissions_or_else_the_reasons() {
        let e = NotifyError::AllRejected {
            topics: 3,
            permissions: vec!["routing:routingStatus:view".into()],
            reasons: vec!["ignored when a permission is named".into()],
        };
        let text = e.to_string();
        assert!(
            text.contains("every one of the 3 topics was rejected"),
            "{text}"
        );
        assert!(
            text.contains("lacks the permission(s) routing:routingStatus:view"),
            "{text}"
        );
        assert!(!text.contains("ignored"), "{text}");
        let e = NotifyError::AllRejected {
            topics: 1,
            permissions: vec![],
            reasons: vec!["unknown topic".into()],
        };
        assert_eq!(
            e.to_string(),
            "every one of the 1 topics was rejected (unknown topic)"
        );
    }
}
