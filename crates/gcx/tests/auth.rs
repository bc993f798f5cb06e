//! TokenProvider against a real sandbox (PROTOCOL.md section 2): caching, single-flight,
//! proactive refresh, 401 handling, scope and credential errors, redaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use gcx::auth::{AuthError, Credentials, TokenProvider};
use gcx::config::Secret;
use gcx::retry::RetryPolicy;
use gcx_sandbox::{ClientSpec, Sandbox, SandboxOptions};

fn http() -> reqwest::Client {
    gcx::http_client::build(Duration::from_secs(5)).unwrap()
}

async fn sandbox(lifetime: u64) -> Sandbox {
    let mut options = SandboxOptions::default();
    options.faults.token_lifetime_secs = lifetime;
    options.clients.push(ClientSpec {
        id: "reader".into(),
        secret: "reader-secret".into(),
        scopes: vec!["agentassist:read".into()],
    });
    Sandbox::start(options).await.unwrap()
}

fn demo(sb: &Sandbox) -> TokenProvider {
    TokenProvider::new(
        Credentials::new(sb.base_url(), "gcx-demo", Secret::new("gcx-demo-secret")),
        http(),
    )
    .unwrap()
}

async fn tokens_issued(sb: &Sandbox) -> u64 {
    sb.state.stats.oauth.tokens_issued.get()
}

#[tokio::test]
async fn token_is_fetched_once_and_cached() {
    let sb = sandbox(86_400).await;
    let p = demo(&sb);
    let a = p.token().await.unwrap();
    let b = p.token().await.unwrap();
    assert_eq!(a.expose(), b.expose());
    assert!(a.expose().starts_with("sbx_"));
    assert!(a.has_scope("agentassist:trigger"));
    assert_eq!(tokens_issued(&sb).await, 1);
    assert_eq!(p.fetches(), 1);
}

#[tokio::test]
async fn a_crowd_of_callers_causes_one_request() {
    let sb = sandbox(86_400).await;
    let p = demo(&sb);
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.token().await.unwrap().expose().to_owned() })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for c in calls {
        seen.insert(c.await.unwrap());
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(tokens_issued(&sb).await, 1);
}

#[tokio::test]
async fn a_short_lived_token_is_replaced_before_it_expires_and_published() {
    let sb = sandbox(2).await;
    let p = demo(&sb);
    let mut fresh = p.subscribe();
    let first = p.token().await.unwrap();
    fresh.borrow_and_update();
    // Refresh time is 2 s - min(60 s, 10 %) = 1.8 s; the watch shows the new token.
    tokio::time::timeout(Duration::from_secs(3), fresh.changed())
        .await
        .expect("no refresh within 3 s")
        .unwrap();
    let second = fresh.borrow().clone().unwrap();
    assert_ne!(first.expose(), second.expose());
    assert_eq!(second.generation, first.generation + 1);
    // The old token was still alive when it was replaced.
    assert!(sb.state.tokens.check(first.expose()).is_some());
    assert_eq!(p.token().await.unwrap().expose(), second.expose());
    assert_eq!(tokens_issued(&sb).await, 2);
}

#[tokio::test]
async fn invalidate_refreshes_once_for_many_holders_of_the_same_stale_token() {
    let sb = sandbox(86_400).await;
    let p = demo(&sb);
    let stale = p.token().await.unwrap();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (p, stale) = (p.clone(), stale.clone());
            tokio::spawn(async move { p.invalidate_and_refresh(&stale).await.unwrap() })
        })
        .collect();
    for c in calls {
        let t = c.await.unwrap();
        assert_ne!(t.expose(), stale.expose());
        assert_eq!(t.generation, stale.generation + 1);
    }
    assert_eq!(tokens_issued(&sb).await, 2);
}

#[tokio::test]
async fn wrong_secret_names_the_client_id_setting_and_never_the_secret() {
    let sb = sandbox(86_400).await;
    let p = TokenProvider::new(
        Credentials::new(sb.base_url(), "gcx-demo", Secret::new("wrong-secret-xyz")),
        http(),
    )
    .unwrap();
    let err = p.token().await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidClient { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("\"gcx-demo\""), "{text}");
    assert!(text.contains("genesys.client_id"), "{text}");
    assert!(!text.contains("wrong-secret-xyz"), "{text}");
    assert!(!format!("{err:?} {p:?}").contains("wrong-secret-xyz"));
}

#[tokio::test]
async fn a_missing_scope_is_named() {
    let sb = sandbox(86_400).await;
    let p = TokenProvider::new(
        Credentials::new(sb.base_url(), "reader", Secret::new("reader-secret"))
            .with_scopes(["agentassist:read", "agentassist:trigger"]),
        http(),
    )
    .unwrap();
    let err = p.token().await.unwrap_err();
    match &err {
        AuthError::MissingScope { missing, .. } => {
            assert_eq!(missing, &vec!["agentassist:trigger".to_owned()])
        }
        other => panic!("expected MissingScope, got {other:?}"),
    }
    assert!(err.to_string().contains("agentassist:trigger"));
    // Asking for what it has works.
    let ok = TokenProvider::new(
        Credentials::new(sb.base_url(), "reader", Secret::new("reader-secret"))
            .with_scopes(["agentassist:read"]),
        http(),
    )
    .unwrap();
    assert!(ok.token().await.unwrap().has_scope("agentassist:read"));
}

#[tokio::test]
async fn tokens_never_show_in_debug() {
    let sb = sandbox(86_400).await;
    let p = demo(&sb);
    let t = p.token().await.unwrap();
    let shown = format!("{t:?} {p:?}");
    assert!(!shown.contains(t.expose()), "{shown}");
    assert!(!shown.contains("gcx-demo-secret"), "{shown}");
}

#[tokio::test]
async fn a_login_url_that_refuses_gives_up_at_the_deadline() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let p = TokenProvider::with_retry(
        Credentials::new(url.clone(), "gcx-demo", Secret::new("s")),
        http(),
        RetryPolicy::new(Duration::from_millis(10), Duration::from_millis(50))
            .with_deadline(Duration::from_millis(300)),
    )
    .unwrap();
    let err = p.token().await.unwrap_err();
    assert!(
        matches!(err, AuthError::Unavailable { attempts, .. } if attempts > 1),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url));
}

/// A stand-in login host (the sandbox never answers its token endpoint with 429): the
/// first request gets 429 with `Retry-After: 1`, later ones a token.
async fn throttling_login() -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/oauth/token",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        "slow down",
                    )
                        .into_response()
                } else {
                    axum::Json(serde_json::json!({
                        "access_token": "t1", "token_type": "bearer", "expires_in": 3600
                    }))
                    .into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let (url, hits) = throttling_login().await;
    let p = demo_at(&url);
    let started = std::time::Instant::now();
    let t = p.token().await.unwrap();
    assert_eq!(t.expose(), "t1");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

fn demo_at(url: &str) -> TokenProvider {
    TokenProvider::new(
        Credentials::new(url, "gcx-demo", Secret::new("gcx-demo-secret")),
        http(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_401_from_an_api_refreshes_once_and_retries_once() {
    let sb = sandbox(86_400).await;
    let p = demo(&sb);
    let first = p.token().await.unwrap().expose().to_owned();
    // An API that refuses the first token it sees and accepts any other.
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let refused = first.clone();
    let app = axum::Router::new().route(
        "/api",
        axum::routing::get(move |headers: HeaderMap| {
            let (record, refused) = (record.clone(), refused.clone());
            async move {
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                record.lock().push(auth.clone());
                if auth == format!("Bearer {refused}") {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = http();
    let response = p.send_authorized(|| client.get(&api)).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1]);
    assert_eq!(tokens_issued(&sb).await, 2);
}
