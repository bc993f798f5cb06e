//! Before the first event: the three endpoints' transports, and one authorized read of
//! `GET /api/v2/presence/definitions`, which shows the API is reachable with these
//! credentials and gives the org's `On Queue` definition id (ids differ per org).

use std::sync::Arc;
use std::time::Duration;

use gcx_protocol::genesys_events::PRESENCE_DEFINITIONS_PATH;
use serde::Deserialize;
use uuid::Uuid;

use super::map::Endpoint;
use super::send::GenesysEndpoints;
use crate::auth::{AuthorizedError, TokenProvider};
use crate::desk::transport::{SetupError, Transport};

/// Why the Events API cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{url} is not a usable URL: {detail}")]
    BadUrl { url: String, detail: String },
    #[error(transparent)]
    Transport(SetupError),
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered {status}: {detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Definition {
    id: Uuid,
    #[serde(default)]
    system_presence: Option<String>,
}

#[derive(Deserialize)]
struct Definitions {
    #[serde(default)]
    entities: Vec<Definition>,
}

/// Whether a system presence name is `On Queue` (the API writes `On Queue`; some
/// documents `OnQueue`).
fn is_on_queue(name: &str) -> bool {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .eq_ignore_ascii_case("onqueue")
}

/// The endpoints of `api_base`, and the org's `On Queue` presence definition id.
pub async fn connect(
    api_base: &str,
    http: reqwest::Client,
    tokens: Arc<TokenProvider>,
    request_timeout: Duration,
    retry_deadline: Duration,
) -> Result<(GenesysEndpoints, Option<Uuid>), ConnectError> {
    let api = api_base.trim_end_matches('/');
    let transport = |e: Endpoint| {
        let url = format!("{api}{}", e.path());
        Transport::new(&url, http.clone(), request_timeout).map_err(|err| match err {
            SetupError::Url(detail) => ConnectError::BadUrl { url, detail },
            other => ConnectError::Transport(other),
        })
    };
    let endpoints = GenesysEndpoints {
        routing_status: transport(Endpoint::RoutingStatus)?,
        presence: transport(Endpoint::Presence)?,
        conversations: transport(Endpoint::Conversations)?,
        tokens: tokens.clone(),
        request_timeout,
        retry_deadline,
    };
    let url = format!("{api}{PRESENCE_DEFINITIONS_PATH}?pageSize=100");
    let answer = tokens
        .send_authorized(|| http.get(&url))
        .await
        .map_err(|e| match e {
            AuthorizedError::Http(e) => {
                let mut detail = e.to_string();
                crate::http_client::push_sources(&mut detail, &e);
                ConnectError::Unreachable {
                    url: url.clone(),
                    detail,
                }
            }
            other => ConnectError::Refused {
                url: url.clone(),
                status: 401,
                detail: other.to_string(),
            },
        })?;
    let status = answer.status().as_u16();
    if status != 200 {
        let detail = answer.text().await.unwrap_or_default();
        return Err(ConnectError::Refused {
            url,
            status,
            detail: detail.chars().take(300).collect(),
        });
    }
    let defs: Definitions = answer.json().await.map_err(|e| ConnectError::Refused {
        url: url.clone(),
        status,
        detail: format!("answer not understood: {e}"),
    })?;
    let on_queue = defs
        .entities
        .iter()
        .find(|d| d.system_presence.as_deref().is_some_and(is_on_queue))
        .map(|d| d.id);
    Ok((endpoints, on_queue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_queue_is_read_however_it_is_spaced() {
        assert!(is_on_queue("On Queue"));
        assert!(is_on_queue("OnQueue"));
        assert!(!is_on_queue("Available"));
    }
}
