//! [`TokenProvider`]: fetches client-credentials tokens, caches the current one, refreshes
//! it at `expires_in - min(60 s, 10 %)` in the background, and publishes every fresh token
//! on a `watch` (the assist stream sends a `reauth` with it).
//!
//! **Invariant:** at most one token request is in flight per provider. Every path that
//! fetches (`token`, `invalidate_and_refresh`, the background refresher) does so holding
//! `refresh_lock`, and re-checks the cache once it has the lock, so a crowd of callers
//! that all find the token stale causes one request, not one each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use gcx_protocol::oauth::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, OAuthError, TokenResponse};
use reqwest::StatusCode;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::error::{AuthError, AuthorizedError};
use super::token::AccessToken;
use crate::config::{Endpoints, GenesysConfig, Secret};
use crate::retry::RetryPolicy;

/// Who logs in, where, and for which scopes.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `https://login.<domain>` (or a sandbox URL): the token endpoint is
    /// `{login_base}/oauth/token`.
    pub login_base: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes to ask for; empty asks for none and gets whatever the client has. Asking
    /// makes a missing scope fail at login, with its name, instead of at first use.
    pub scopes: Vec<String>,
}

impl Credentials {
    pub fn new(
        login_base: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Credentials {
        Credentials {
            login_base: login_base.into(),
            client_id: client_id.into(),
            client_secret,
            scopes: Vec::new(),
        }
    }

    /// The client of the configuration, logging in at `endpoints.login_base`. With no
    /// client configured and every endpoint on loopback (a sandbox), the sandbox's
    /// built-in demo client `gcx-demo` (PROTOCOL.md section 7).
    pub fn from_config(g: &GenesysConfig, endpoints: &Endpoints) -> Result<Credentials, AuthError> {
        match (&g.client_id, &g.client_secret) {
            (Some(id), Some(secret)) => {
                Ok(Credentials::new(&endpoints.login_base, id, secret.clone()))
            }
            (None, None) if endpoints.on_loopback() => {
                Ok(Credentials::sandbox_demo(&endpoints.login_base))
            }
            (None, _) => Err(AuthError::NoClient),
            (Some(id), None) => Err(AuthError::NoSecret {
                client_id: id.clone(),
            }),
        }
    }

    /// The sandbox's built-in demo client, logging in at `login_base`.
    pub fn sandbox_demo(login_base: &str) -> Credentials {
        Credentials::new(login_base, DEMO_CLIENT_ID, Secret::new(DEMO_CLIENT_SECRET))
    }

    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// The retry policy of token requests unless told otherwise: 429, 5xx and connection
/// faults are retried for up to 30 s.
pub const DEFAULT_RETRY: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(5))
        .with_deadline(Duration::from_secs(30));

/// A cached, self-refreshing source of access tokens. Cheap to clone; clones share the
/// cache, the single-flight lock and the watch.
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
}

struct Inner {
    credentials: Credentials,
    /// `{login_base}/oauth/token`, checked once.
    token_url: reqwest::Url,
    http: reqwest::Client,
    retry: RetryPolicy,
    /// Held for the whole of a fetch: the single-flight guarantee.
    refresh_lock: Mutex<()>,
    /// The current token (`None` before the first fetch); receivers see each new one.
    current: watch::Sender<Option<AccessToken>>,
    /// Source of [`AccessToken::generation`].
    generation: AtomicU64,
    /// Whether the background refresher runs (started on the first fetch).
    refresher_started: AtomicBool,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.inner.token_url.as_str())
            .field("client_id", &self.inner.credentials.client_id)
            .field("scopes", &self.inner.credentials.scopes)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider that fetches nothing until asked, retrying token requests with
    /// [`DEFAULT_RETRY`]. `http` should come from [`crate::http_client::build`].
    pub fn new(credentials: Credentials, http: reqwest::Client) -> Result<Self, AuthError> {
        Self::with_retry(credentials, http, DEFAULT_RETRY)
    }

    /// As [`TokenProvider::new`], with another retry policy for token requests.
    pub fn with_retry(
        credentials: Credentials,
        http: reqwest::Client,
        retry: RetryPolicy,
    ) -> Result<Self, AuthError> {
        let base = credentials.login_base.trim_end_matches('/');
        let token_url =
            reqwest::Url::parse(&format!("{base}/oauth/token")).map_err(|e| AuthError::BadUrl {
                url: credentials.login_base.clone(),
                reason: e.to_string(),
            })?;
        if !matches!(token_url.scheme(), "http" | "https") {
            return Err(AuthError::BadUrl {
                url: credentials.login_base.clone(),
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        let (current, _) = watch::channel(None);
        Ok(TokenProvider {
            inner: Arc::new(Inner {
                credentials,
                token_url,
                http,
                retry,
                refresh_lock: Mutex::new(()),
                current,
                generation: AtomicU64::new(0),
                refresher_started: AtomicBool::new(false),
            }),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.inner.credentials.client_id
    }

    /// A valid token: the cached one while it is before its refresh time, else a fresh
    /// one (fetched once however many tasks ask at the same moment).
    pub async fn token(&self) -> Result<AccessToken, AuthError> {
        if let Some(t) = self.cached_fresh() {
            return Ok(t);
        }
        let _flight = self.inner.refresh_lock.lock().await;
        if let Some(t) = self.cached_fresh() {
            return Ok(t);
        }
        self.fetch_and_publish().await
    }

    /// After a server refused `stale` (a 401): a new token, fetched unless another task
    /// already replaced `stale`. The caller retries its request once with the answer.
    pub async fn invalidate_and_refresh(
        &self,
        stale: &AccessToken,
    ) -> Result<AccessToken, AuthError> {
        let _flight = self.inner.refresh_lock.lock().await;
        if let Some(t) = self.cached_fresh()
            && t.generation != stale.generation
        {
            return Ok(t);
        }
        self.fetch_and_publish().await
    }

    /// Every token this provider fetches from now on (and the current one, if any).
    pub fn subscribe(&self) -> watch::Receiver<Option<AccessToken>> {
        self.inner.current.subscribe()
    }

    /// Tokens fetched so far (the first one included).
    pub fn fetches(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// Sends the request `build` makes with the current token; on a 401 refreshes once
    /// and sends it once more (PROTOCOL.md section 2). Other statuses are the caller's.
    pub async fn send_authorized<F>(&self, build: F) -> Result<reqwest::Response, AuthorizedError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let token = self.token().await?;
        let response = build().bearer_auth(token.expose()).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let token = self.invalidate_and_refresh(&token).await?;
        Ok(build().bearer_auth(token.expose()).send().await?)
    }

    fn cached_fresh(&self) -> Option<AccessToken> {
        self.inner
            .current
            .borrow()
            .as_ref()
            .filter(|t| !t.needs_refresh())
            .cloned()
    }

    /// Fetches (with retries) and publishes. Callers hold `refresh_lock`.
    async fn fetch_and_publish(&self) -> Result<AccessToken, AuthError> {
        let token = self.fetch_with_retries().await?;
        self.inner.current.send_replace(Some(token.clone()));
        metrics::counter!(super::TOKEN_REFRESHES).increment(1);
        tracing::debug!(
            client_id = %self.inner.credentials.client_id,
            generation = token.generation,
            expires_in_s = token.expires_in().as_secs(),
            "fetched an access token"
        );
        self.start_refresher();
        Ok(token)
    }

    async fn fetch_with_retries(&self) -> Result<AccessToken, AuthError> {
        let mut backoff = self.inner.retry.start();
        loop {
            let (retry_after, last) = match self.fetch_once().await {
                Attempt::Done(result) => return result,
                Attempt::Retry { retry_after, last } => (retry_after, last),
            };
            let Some(wait) = backoff.next(retry_after) else {
                return Err(AuthError::Unavailable {
                    url: self.inner.token_url.to_string(),
                    attempts: backoff.retries() + 1,
                    elapsed: backoff.elapsed(),
                    last,
                });
            };
            tracing::warn!(url = %self.inner.token_url, %last, ?wait, "token request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_once(&self) -> Attempt {
        let creds = &self.inner.credentials;
        let url = self.inner.token_url.to_string();
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if !creds.scopes.is_empty() {
            form.push(("scope", creds.scopes.join(" ")));
        }
        let fetched_at = Instant::now();
        let response = self
            .inner
            .http
            .post(self.inner.token_url.clone())
            .basic_auth(&creds.client_id, Some(creds.client_secret.expose()))
            .form(&form)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    retry_after: None,
                    last: format!("connection failed: {}", e.without_url()),
                };
            }
        };
        let status = response.status();
        let retry_after = crate::retry::retry_after_header(response.headers(), chrono::Utc::now());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    retry_after: None,
                    last: format!("reading the answer failed: {}", e.without_url()),
                };
            }
        };
        if status == StatusCode::OK {
            return Attempt::Done(self.accept(&body, fetched_at, url));
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Attempt::Retry {
                retry_after: if status == StatusCode::TOO_MANY_REQUESTS {
                    retry_after.or(Some(Duration::from_secs(1)))
                } else {
                    retry_after
                },
                last: format!("status {status}"),
            };
        }
        let error: OAuthError = serde_json::from_slice(&body).unwrap_or(OAuthError {
            error: String::new(),
            error_description: Some(String::from_utf8_lossy(&body).chars().take(200).collect()),
        });
        let description = error.error_description.clone().unwrap_or_default();
        let result = match (status, error.error.as_str()) {
            (StatusCode::UNAUTHORIZED, _) => AuthError::InvalidClient {
                url,
                client_id: creds.client_id.clone(),
                description,
            },
            (_, "invalid_scope") | (StatusCode::FORBIDDEN, _) => AuthError::MissingScope {
                client_id: creds.client_id.clone(),
                missing: self.missing_scopes_named_in(&description),
                description,
            },
            _ => AuthError::Refused {
                url,
                status: status.as_u16(),
                error: error.error,
                description,
            },
        };
        Attempt::Done(Err(result))
    }

    /// A 200 answer: the token, unless it lacks a scope that was asked for.
    fn accept(
        &self,
        body: &[u8],
        fetched_at: Instant,
        url: String,
    ) -> Result<AccessToken, AuthError> {
        let creds = &self.inner.credentials;
        let parsed: TokenResponse =
            serde_json::from_slice(body).map_err(|e| AuthError::BadResponse {
                url,
                reason: e.to_string(),
            })?;
        let scopes: Vec<String> = match &parsed.scope {
            Some(s) => s.split_whitespace().map(str::to_owned).collect(),
            // No `scope` field: the server granted what was asked.
            None => creds.scopes.clone(),
        };
        let missing: Vec<String> = creds
            .scopes
            .iter()
            .filter(|s| !scopes.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::MissingScope {
                client_id: creds.client_id.clone(),
                missing,
                description: "the token was granted without them".into(),
            });
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(AccessToken::new(
            parsed.access_token,
            fetched_at,
            parsed.expires_in,
            scopes,
            generation,
        ))
    }

    /// The requested scopes the server's description names; all requested ones when it
    /// names none of them.
    fn missing_scopes_named_in(&self, description: &str) -> Vec<String> {
        let requested = &self.inner.credentials.scopes;
        let named: Vec<String> = requested
            .iter()
            .filter(|s| description.contains(s.as_str()))
            .cloned()
            .collect();
        if named.is_empty() {
            requested.clone()
        } else {
            named
        }
    }

    /// Starts the background refresher once, if there is a runtime to run it on.
    fn start_refresher(&self) {
        if self.inner.refresher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.refresher_started.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(refresh_in_background(
            Arc::downgrade(&self.inner),
            self.inner.current.subscribe(),
        ));
    }
}

/// The outcome of one token request.
enum Attempt {
    Done(Result<AccessToken, AuthError>),
    Retry {
        retry_after: Option<Duration>,
        last: String,
    },
}

/// Replaces the token at its refresh time, for as long as any provider clone lives. It
/// holds only a weak reference, so it never keeps the provider alive by itself.
async fn refresh_in_background(
    provider: Weak<Inner>,
    current: watch::Receiver<Option<AccessToken>>,
) {
    refresh_on_time(current, || {
        let provider = provider.clone();
        async move {
            let inner = provider.upgrade()?;
            Some(TokenProvider { inner }.token().await.map(|_| ()))
        }
    })
    .await
}

/// The refresher's timing: at the refresh time of the token `current` shows, calls
/// `refresh` (`None`: the provider is gone, so stop); a token published in between moves
/// the time to its own. After a failed refresh it waits with back-off before the next
/// try (the fetch itself already retried up to its deadline); without that the loop
/// would spin on a token past its time.
async fn refresh_on_time<F, Fut>(mut current: watch::Receiver<Option<AccessToken>>, mut refresh: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Result<(), AuthError>>>,
{
    let mut failures =
        RetryPolicy::new(Duration::from_millis(250), Duration::from_secs(10)).start();
    loop {
        let refresh_at = current.borrow_and_update().as_ref().map(|t| t.refresh_at);
        let changed = async {
            match refresh_at {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => Ok(false),
                        r = current.changed() => r.map(|_| true),
                    }
                }
                None => current.changed().await.map(|_| true),
            }
        };
        match changed.await {
            // The provider is gone.
            Err(_) => return,
            // Someone fetched a new token: wait for its refresh time instead.
            Ok(true) => continue,
            Ok(false) => {}
        }
        match refresh().await {
            None => return,
            Some(Ok(())) => failures.reset(),
            Some(Err(e)) => {
                let wait = failures.next(None).unwrap_or(Duration::from_secs(10));
                tracing::warn!(error = %e, ?wait, "background token refresh failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoints;

    /// A token fetched now that lives `secs` (refresh at 90 % of that).
    fn fetched_now(secs: u64, generation: u64) -> AccessToken {
        AccessToken::new(
            format!("tok-{generation}"),
            Instant::now(),
            secs,
            vec![],
            generation,
        )
    }

    /// The refresher on a paused clock: a fake refresh records when it ran and whether it
    /// succeeded, and publishes a 100 s token (or fails while `fail` says so). Like the
    /// provider's, it holds the sender weakly: dropping `publish` is the provider going.
    struct Rig {
        publish: Arc<watch::Sender<Option<AccessToken>>>,
        calls: Arc<std::sync::Mutex<Vec<(Instant, bool)>>>,
        fail: Arc<AtomicBool>,
        t0: Instant,
        task: tokio::task::JoinHandle<()>,
    }

    impl Rig {
        fn start(first: AccessToken) -> Rig {
            let (tx, rx) = watch::channel(Some(first));
            let publish = Arc::new(tx);
            let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
            let fail = Arc::new(AtomicBool::new(false));
            let (p, c, f) = (Arc::downgrade(&publish), calls.clone(), fail.clone());
            let task = tokio::spawn(refresh_on_time(rx, move || {
                let (p, c, f) = (p.clone(), c.clone(), f.clone());
                async move {
                    let publish = p.upgrade()?;
                    let ok = !f.load(Ordering::Relaxed);
                    let mut calls = c.lock().unwrap_or_else(|e| e.into_inner());
                    calls.push((Instant::now(), ok));
                    if !ok {
                        return Some(Err(AuthError::Unavailable {
                            url: "http://token".into(),
                            attempts: 1,
                            elapsed: Duration::ZERO,
                            last: "down".into(),
                        }));
                    }
                    publish.send_replace(Some(fetched_now(100, calls.len() as u64 + 1)));
                    Some(Ok(()))
                }
            }));
            Rig {
                publish,
                calls,
                fail,
                t0: Instant::now(),
                task,
            }
        }

        /// When each refresh ran (seconds after the start, to the millisecond), and
        /// whether it succeeded.
        fn calls(&self) -> Vec<(f64, bool)> {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .iter()
                .map(|(t, ok)| {
                    (
                        ((*t - self.t0).as_secs_f64() * 1000.0).round() / 1000.0,
                        *ok,
                    )
                })
                .collect()
        }

        fn times(&self) -> Vec<f64> {
            self.calls().into_iter().map(|(t, _)| t).collect()
        }
    }

    /// Sleeps on the paused clock, which lets the refresher run everything due by then.
    async fn after(secs: f64) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_at_each_tokens_refresh_time_and_never_before() {
        let rig = Rig::start(fetched_now(100, 1));
        after(89.99).await;
        assert_eq!(rig.times(), Vec::<f64>::new());
        after(0.02).await;
        assert_eq!(rig.times(), [90.0]);
        // Each refresh published a 100 s token: the next is due 90 s after it.
        after(180.0).await;
        assert_eq!(rig.times(), [90.0, 180.0, 270.0]);
        rig.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_published_in_between_moves_the_refresh_to_its_time() {
        let rig = Rig::start(fetched_now(100, 1));
        after(50.0).await;
        // Someone else fetched (a 401 seen elsewhere): a 20 s token, refreshed at 18 s.
        rig.publish.send_replace(Some(fetched_now(20, 2)));
        after(17.99).await;
        assert_eq!(rig.times(), Vec::<f64>::new());
        after(0.02).await;
        assert_eq!(rig.times(), [68.0]);
        rig.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_is_retried_with_back_off_not_in_a_spin() {
        let rig = Rig::start(fetched_now(100, 1));
        rig.fail.store(true, Ordering::Relaxed);
        after(150.0).await;
        let tries = rig.times();
        // 250 ms doubling to 10 s, full jitter: far fewer tries than a spinning loop's,
        // at least those a 10 s cap allows, the first at the refresh time.
        assert_eq!(tries[0], 90.0);
        assert!((6..=400).contains(&tries.len()), "{tries:?}");
        assert!(tries.windows(2).all(|w| w[1] - w[0] <= 10.0), "{tries:?}");
        // Once the server answers, the next refresh waits for the new token's time.
        rig.fail.store(false, Ordering::Relaxed);
        after(110.0).await;
        let ok: Vec<f64> = rig
            .calls()
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(ok.len(), 2, "{:?}", rig.calls());
        assert!(ok[0] <= 160.0, "{ok:?}");
        assert_eq!(ok[1], ok[0] + 90.0, "{ok:?}");
        rig.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresher_ends_when_the_provider_is_gone() {
        let rig = Rig::start(fetched_now(100, 1));
        let Rig { publish, task, .. } = rig;
        after(1.0).await;
        assert!(!task.is_finished());
        drop(publish);
        after(1.0).await;
        assert!(task.is_finished());
    }

    fn at(base_url: &str, id: Option<&str>, secret: Option<&str>) -> GenesysConfig {
        GenesysConfig {
            base_url: Some(base_url.to_owned()),
            client_id: id.map(String::from),
            client_secret: secret.map(Secret::new),
            ..GenesysConfig::default()
        }
    }

    fn from(g: &GenesysConfig) -> Result<Credentials, AuthError> {
        let e = endpoints(g).expect("endpoints");
        Credentials::from_config(g, &e)
    }

    #[test]
    fn a_sandbox_without_a_client_gets_the_demo_client() {
        let c = from(&at("http://127.0.0.1:9000", None, None)).expect("demo client");
        assert_eq!(c.client_id, gcx_protocol::oauth::DEMO_CLIENT_ID);
        assert_eq!(c.login_base, "http://127.0.0.1:9000");
    }

    #[test]
    fn a_configured_client_wins_even_on_a_sandbox() {
        let c = from(&at("http://localhost:9000", Some("mine"), Some("s"))).expect("client");
        assert_eq!(c.client_id, "mine");
        assert_eq!(c.client_secret.expose(), "s");
    }

    #[test]
    fn a_remote_host_never_gets_the_demo_client() {
        let err = from(&at("https://api.example.com", None, None)).expect_err("no client");
        assert!(matches!(err, AuthError::NoClient));
        assert!(
            err.to_string().contains("GENESYSCLOUD_OAUTHCLIENT_ID"),
            "{err}"
        );
    }

    #[test]
    fn an_id_without_a_secret_names_the_secret_setting() {
        let err = from(&at("http://127.0.0.1:9000", Some("mine"), None)).expect_err("no secret");
        assert!(err.to_string().contains("genesys.client_secret"), "{err}");
        assert!(err.to_string().contains("\"mine\""), "{err}");
    }
}
