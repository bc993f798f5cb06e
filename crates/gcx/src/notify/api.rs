//! The REST half of the Notifications API (PROTOCOL.md 9.2): create a channel, subscribe
//! its topics, and read the answer topic by topic.
//!
//! Every request carries a bearer token from the [`TokenProvider`] (a 401 refreshes it
//! once and sends again); 429 waits its `Retry-After` (at least a second), 408, 5xx and
//! connection faults back off with full jitter ([`crate::retry`]) until the policy's
//! deadline; any other 4xx is an [`ApiError::Refused`] at once, with the Genesys error
//! body's code and message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gcx_protocol::genesys_notifications::{
    CHANNELS_PATH, Channel, ChannelTopicEntityListing, TopicRequest, TopicState, subscriptions_path,
};
use gcx_protocol::rest::ErrorBody;
use reqwest::{Method, StatusCode, Url};

use super::error::ApiError;
use crate::auth::{AuthorizedError, TokenProvider};
use crate::retry::{RetryPolicy, retry_after_header};

/// One attempt's timeout unless the caller brings its own client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The back-off of a refused or unanswered call: full jitter from 200 ms, capped at 10 s,
/// for at most a minute.
pub const DEFAULT_RETRY: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(10))
        .with_deadline(Duration::from_secs(60));

const CREATE_CHANNEL: &str = "create a notification channel";
const SUBSCRIBE: &str = "subscribe the topics of a notification channel";

/// The Notifications REST API of one org (or sandbox), with its login. Cheap to clone.
#[derive(Clone)]
pub struct NotificationsApi {
    inner: Arc<Inner>,
}

struct Inner {
    /// `https://api.<domain>` (no trailing slash): every path is appended to it.
    api_base: String,
    http: reqwest::Client,
    tokens: TokenProvider,
    retry: RetryPolicy,
}

impl std::fmt::Debug for NotificationsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationsApi")
            .field("api_base", &self.inner.api_base)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// What a subscription request's answer says about the topics it asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Topics the channel now carries.
    pub permitted: Vec<String>,
    /// Topics refused, each with the server's reason.
    pub rejected: Vec<RejectedTopic>,
}

/// A topic the server refused to subscribe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedTopic {
    pub topic: String,
    /// The answer's `rejectionReason`.
    pub reason: Option<String>,
    /// The answer's `missingPermissions` (empty when it named none).
    pub missing_permissions: Vec<String>,
}

impl Subscription {
    /// Reads an answer against the topics that were asked for. A topic the answer lists
    /// without a state is taken as permitted (older answers carry none); a requested topic
    /// the answer leaves out is rejected, so nothing is silently believed subscribed.
    /// Topics are compared without regard to ASCII case; the answer's other topics (a
    /// `POST` answers with the whole channel) are not this request's.
    pub fn from_answer(requested: &[String], answer: &ChannelTopicEntityListing) -> Subscription {
        let mut out = Subscription::default();
        for topic in requested {
            let entity = answer
                .entities
                .iter()
                .find(|e| e.id.eq_ignore_ascii_case(topic));
            match entity {
                Some(e) if e.state != Some(TopicState::Rejected) => {
                    out.permitted.push(topic.clone())
                }
                Some(e) => out.rejected.push(RejectedTopic {
                    topic: topic.clone(),
                    reason: e.rejection_reason.clone(),
                    missing_permissions: e.missing_permissions.clone().unwrap_or_default(),
                }),
                None => out.rejected.push(RejectedTopic {
                    topic: topic.clone(),
                    reason: Some("not in the subscription answer".into()),
                    missing_permissions: Vec::new(),
                }),
            }
        }
        out
    }
}

impl NotificationsApi {
    /// The API at `api_base` (`https://api.<domain>` or a sandbox's URL) with its own
    /// client ([`crate::http_client`], [`REQUEST_TIMEOUT`] per attempt).
    pub fn new(api_base: &str, tokens: TokenProvider) -> Result<NotificationsApi, ApiError> {
        let http = crate::http_client::build(REQUEST_TIMEOUT).map_err(|e| ApiError::BadUrl {
            url: api_base.to_owned(),
            reason: format!("cannot build an HTTP client: {e}"),
        })?;
        NotificationsApi::with_http(api_base, tokens, http)
    }

    /// As [`NotificationsApi::new`] with a client the caller built.
    pub fn with_http(
        api_base: &str,
        tokens: TokenProvider,
        http: reqwest::Client,
    ) -> Result<NotificationsApi, ApiError> {
        let trimmed = api_base.trim().trim_end_matches('/');
        let url = Url::parse(trimmed).map_err(|e| ApiError::BadUrl {
            url: api_base.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ApiError::BadUrl {
                url: api_base.to_owned(),
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        Ok(NotificationsApi {
            inner: Arc::new(Inner {
                api_base: trimmed.to_owned(),
                http,
                tokens,
                retry: DEFAULT_RETRY,
            }),
        })
    }

    /// The same API with another back-off for refused and unanswered calls.
    pub fn with_retry(self, retry: RetryPolicy) -> NotificationsApi {
        NotificationsApi {
            inner: Arc::new(Inner {
                api_base: self.inner.api_base.clone(),
                http: self.inner.http.clone(),
                tokens: self.inner.tokens.clone(),
                retry,
            }),
        }
    }

    /// The login every call uses.
    pub fn tokens(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    /// `POST /api/v2/notifications/channels` (no body): a new channel.
    pub async fn create_channel(&self) -> Result<Channel, ApiError> {
        let (status, body) = self
            .call(CREATE_CHANNEL, Method::POST, CHANNELS_PATH.to_owned(), None)
            .await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::BadAnswer {
            what: CREATE_CHANNEL,
            status: status.as_u16(),
            reason: e.to_string(),
        })
    }

    /// `PUT .../subscriptions`: the channel carries exactly `topics` afterwards, so sending
    /// the same list again changes nothing but the channel's expiry.
    pub async fn replace_subscriptions(
        &self,
        channel_id: &str,
        topics: &[String],
    ) -> Result<Subscription, ApiError> {
        self.subscribe(Method::PUT, channel_id, topics).await
    }

    /// `POST .../subscriptions`: adds `topics` to what the channel carries.
    pub async fn add_subscriptions(
        &self,
        channel_id: &str,
        topics: &[String],
    ) -> Result<Subscription, ApiError> {
        self.subscribe(Method::POST, channel_id, topics).await
    }

    async fn subscribe(
        &self,
        method: Method,
        channel_id: &str,
        topics: &[String],
    ) -> Result<Subscription, ApiError> {
        let body: Vec<TopicRequest> = topics
            .iter()
            .map(|t| TopicRequest { id: t.clone() })
            .collect();
        let (status, answer) = self
            .call(
                SUBSCRIBE,
                method,
                // Without it a real org refuses the whole request when one topic fails
                // its permission check; with it, that topic comes back `Rejected`.
                format!("{}?ignoreErrors=true", subscriptions_path(channel_id)),
                Some(&body),
            )
            .await?;
        let listing: ChannelTopicEntityListing =
            serde_json::from_slice(&answer).map_err(|e| ApiError::BadAnswer {
                what: SUBSCRIBE,
                status: status.as_u16(),
                reason: e.to_string(),
            })?;
        Ok(Subscription::from_answer(topics, &listing))
    }

    /// One call with its retries: the 2xx status and body, or why there is none.
    async fn call(
        &self,
        what: &'static str,
        method: Method,
        path: String,
        body: Option<&[TopicRequest]>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let url = format!("{}{path}", self.inner.api_base);
        let mut backoff = self.inner.retry.start();
        loop {
            let sent = self
                .inner
                .tokens
                .send_authorized(|| {
                    let request = self.inner.http.request(method.clone(), &url);
                    match body {
                        Some(b) => request.json(b),
                        None => request.header(reqwest::header::CONTENT_LENGTH, 0),
                    }
                })
                .await;
            let (retry_after, last) = match sent {
                Err(AuthorizedError::Auth(source)) => return Err(ApiError::Auth { what, source }),
                Err(AuthorizedError::Http(e)) => {
                    (None, format!("connection failed: {}", source_text(&e)))
                }
                Ok(response) => {
                    let status = response.status();
                    let asked = retry_after_header(response.headers(), chrono::Utc::now());
                    match response.bytes().await {
                        Err(e) => (
                            None,
                            format!("reading the answer failed: {}", source_text(&e)),
                        ),
                        Ok(bytes) if status.is_success() => return Ok((status, bytes)),
                        Ok(bytes) => match retry_rule(status) {
                            Retry::No => return Err(refusal(what, status, &bytes)),
                            Retry::After => (
                                Some(asked.unwrap_or(Duration::ZERO).max(Duration::from_secs(1))),
                                describe(status, &bytes),
                            ),
                            Retry::Backoff => (asked, describe(status, &bytes)),
                        },
                    }
                }
            };
            let Some(wait) = backoff.next(retry_after) else {
                return Err(ApiError::Unavailable {
                    what,
                    attempts: backoff.retries() + 1,
                    elapsed: backoff.elapsed(),
                    last,
                });
            };
            tracing::warn!(%last, ?wait, "notifications API: cannot {what} yet; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// How a status other than 2xx is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Refused for good.
    No,
    /// 429: after the server's `Retry-After`.
    After,
    /// 408, 5xx: exponential back-off (a `Retry-After` wins when sent).
    Backoff,
}

fn retry_rule(status: StatusCode) -> Retry {
    if status == StatusCode::TOO_MANY_REQUESTS {
        Retry::After
    } else if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        Retry::Backoff
    } else {
        Retry::No
    }
}

/// A refusal read from its status and Genesys error body.
fn refusal(what: &'static str, status: StatusCode, body: &[u8]) -> ApiError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.code, e.message),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(body).chars().take(200).collect(),
        ),
    };
    let hint = match status {
        StatusCode::FORBIDDEN => "; grant the OAuth client's role the permission the message names",
        StatusCode::UNAUTHORIZED => "; the token was refused even after a refresh",
        StatusCode::NOT_FOUND => "; the channel no longer exists",
        _ => "",
    };
    ApiError::Refused {
        what,
        status: status.as_u16(),
        code,
        message,
        hint,
    }
}

fn describe(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!("{} {}: {}", status.as_u16(), e.code, e.message),
        Err(_) => format!("status {}", status.as_u16()),
    }
}

/// A client error's text with its sources and without its URL.
fn source_text(e: &reqwest::Error) -> String {
    let mut text = String::new();
    crate::http_client::push_sources(&mut text, e);
    let text = text.trim_start_matches(": ");
    if text.is_empty() {
        e.to_string()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_protocol::genesys_notifications::ChannelTopic;

    fn topic(id: &str, state: Option<TopicState>) -> ChannelTopic {
        ChannelTopic {
            id: id.into(),
            state,
            rejection_reason: None,
            missing_permissions: None,
        }
    }

    #[test]
    fn every_rejected_topic_is_kept_with_its_reason_and_permissions() {
        let requested: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let mut rejected = topic("b", Some(TopicState::Rejected));
        rejected.rejection_reason = Some("missing permission".into());
        rejected.missing_permissions = Some(vec!["routing:routingStatus:view".into()]);
        let answer = ChannelTopicEntityListing {
            entities: vec![
                topic("A", Some(TopicState::Permitted)),
                rejected,
                topic("c", None),
                topic("not-asked", Some(TopicState::Permitted)),
            ],
        };
        let s = Subscription::from_answer(&requested, &answer);
        assert_eq!(s.permitted, ["a", "c"]);
        assert_eq!(
            s.rejected,
            [
                RejectedTopic {
                    topic: "b".into(),
                    reason: Some("missing permission".into()),
                    missing_permissions: vec!["routing:routingStatus:view".into()],
                },
                RejectedTopic {
                    topic: "d".into(),
                    reason: Some("not in the subscription answer".into()),
                    missing_permissions: vec![],
                },
            ]
        );
    }

    #[test]
    fn only_429_408_and_5xx_are_retried() {
        assert_eq!(retry_rule(StatusCode::TOO_MANY_REQUESTS), Retry::After);
        for s in [408u16, 500, 502, 503, 504] {
            assert_eq!(
                retry_rule(StatusCode::from_u16(s).unwrap()),
                Retry::Backoff,
                "{s}"
            );
        }
        for s in [400u16, 401, 403, 404, 409, 415] {
            assert_eq!(
                retry_rule(StatusCode::from_u16(s).unwrap()),
                Retry::No,
                "{s}"
            );
        }
    }

    #[test]
    fn a_refusal_carries_the_genesys_code_and_a_hint() {
        let body = br#"{"message":"You are missing the following permission(s): [x:y:z]",
            "code":"missing.permissions","status":403,"contextId":"c"}"#;
        let e = refusal(SUBSCRIBE, StatusCode::FORBIDDEN, body);
        let text = e.to_string();
        assert!(text.contains("403 missing.permissions"), "{text}");
        assert!(text.contains("[x:y:z]"), "{text}");
        assert!(text.contains("grant the OAuth client's role"), "{text}");
        assert_eq!(e.status(), Some(403));
        let e = refusal(CREATE_CHANNEL, StatusCode::BAD_REQUEST, b"plain text");
        assert!(e.to_string().ends_with("400: plain text"), "{e}");
    }

    #[test]
    fn a_base_url_must_be_http() {
        let tokens = TokenProvider::new(
            crate::auth::Credentials::sandbox_demo("http://127.0.0.1:1"),
            crate::http_client::build(Duration::from_secs(1)).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            NotificationsApi::new("ws://127.0.0.1:1", tokens.clone()),
            Err(ApiError::BadUrl { .. })
        ));
        let api = NotificationsApi::new("http://127.0.0.1:1/", tokens).unwrap();
        assert_eq!(api.inner.api_base, "http://127.0.0.1:1");
    }
}
