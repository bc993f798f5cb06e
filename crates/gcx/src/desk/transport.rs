//! How the simulator's batches reach the events endpoint: straight through hyper's
//! pooled HTTP/1.1 client (TCP_NODELAY; rustls with the platform's verifier, as reqwest
//! does), unless the environment routes the endpoint through a proxy (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, less `NO_PROXY`, read as reqwest and curl read them): then
//! through reqwest, which speaks to proxies.
//!
//! Why not reqwest always: at batch 1 its layers (a redirect policy that parses the URL
//! again on every request even with redirects off, retry and timeout wrappers, URL to URI
//! conversion) cost about a third of the simulator's user CPU (BENCHMARKS.md), and the
//! simulator is measured against wrk on that path. Everything else gcx sends (tokens,
//! query-back, webhooks) stays on reqwest.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use rustls_platform_verifier::BuilderVerifierExt;

use crate::http_client::{self, push_sources};

type DirectClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The way to the events endpoint, chosen once per run.
#[derive(Clone)]
pub enum Transport {
    /// Boxed: hyper's client is a few hundred bytes, reqwest's a pointer.
    Direct {
        client: Box<DirectClient>,
        uri: http::Uri,
    },
    Proxied {
        client: reqwest::Client,
        url: reqwest::Url,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Direct { uri, .. } => write!(f, "Direct({uri})"),
            Transport::Proxied { url, .. } => write!(f, "Proxied({url})"),
        }
    }
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// No answer: the request was not sent, or its answer was lost.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct TransportError {
    /// The server cannot have seen the request (no connection, or it was never written).
    pub unsent: bool,
    /// What happened, without the URL or the token.
    pub detail: String,
}

/// Why the direct path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL does not parse (the text says why).
    #[error("not a usable URL: {0}")]
    Url(String),
    #[error("cannot set up TLS with the platform's certificate verifier: {0}")]
    Tls(#[from] rustls::Error),
}

impl Transport {
    /// The direct path to `url`, or `fallback` when the environment's proxy settings
    /// apply to it; `url` is parsed here, once. `timeout` bounds connecting (at most
    /// 10 s, as reqwest's clients).
    pub fn new(
        url: &str,
        fallback: reqwest::Client,
        timeout: Duration,
    ) -> Result<Transport, SetupError> {
        Transport::choose(url, fallback, timeout, &Matcher::from_env())
    }

    fn choose(
        url: &str,
        fallback: reqwest::Client,
        timeout: Duration,
        proxies: &Matcher,
    ) -> Result<Transport, SetupError> {
        let bad = |e: &dyn std::fmt::Display| SetupError::Url(e.to_string());
        let url = reqwest::Url::parse(url).map_err(|e| bad(&e))?;
        let uri: http::Uri = url.as_str().parse().map_err(|e| bad(&e))?;
        if proxies.intercept(&uri).is_some() {
            return Ok(Transport::Proxied {
                client: fallback,
                url,
            });
        }
        http_client::install_crypto_provider();
        let tls = rustls::ClientConfig::builder()
            .with_platform_verifier()?
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10).min(timeout)));
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Box::new(Client::builder(TokioExecutor::new()).build(connector));
        Ok(Transport::Direct { client, uri })
    }

    /// POSTs `body` (JSON) with `token`; the whole exchange, answer body included, ends
    /// within `timeout`.
    pub async fn post(
        &self,
        token: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, TransportError> {
        match self {
            Transport::Direct { client, uri } => {
                let exchange = direct(client, uri, token, body);
                match tokio::time::timeout(timeout, exchange).await {
                    Ok(answer) => answer,
                    Err(_) => Err(TransportError {
                        unsent: false,
                        detail: format!("no answer within {timeout:?}"),
                    }),
                }
            }
            Transport::Proxied { client, url } => {
                let sent = client
                    .post(url.clone())
                    .bearer_auth(token)
                    .header(CONTENT_TYPE, "application/json")
                    .timeout(timeout)
                    .body(body)
                    .send()
                    .await;
                let lost = |e: reqwest::Error| {
                    let mut detail = String::from(if e.is_connect() {
                        "connection failed"
                    } else {
                        "request failed"
                    });
                    let unsent = e.is_connect() || e.is_builder();
                    push_sources(&mut detail, &e.without_url());
                    TransportError { unsent, detail }
                };
                let response = sent.map_err(lost)?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(lost)?;
                Ok(Answer {
                    status,
                    headers,
                    body,
                })
            }
        }
    }
}

async fn direct(
    client: &DirectClient,
    uri: &http::Uri,
    token: &str,
    body: Bytes,
) -> Result<Answer, TransportError> {
    let unsent = |detail: String| TransportError {
        unsent: true,
        detail,
    };
    let mut bearer = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| unsent("the access token is not a valid header value".into()))?;
    bearer.set_sensitive(true);
    let request = http::Request::post(uri.clone())
        .header(AUTHORIZATION, bearer)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            USER_AGENT,
            HeaderValue::from_static(http_client::USER_AGENT),
        )
        .body(Full::new(body))
        .map_err(|e| unsent(format!("cannot build the request: {e}")))?;
    let response = client.request(request).await.map_err(|e| {
        let mut detail = String::from(if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        });
        push_sources(&mut detail, &e);
        TransportError {
            unsent: e.is_connect(),
            detail,
        }
    })?;
    let (parts, incoming) = response.into_parts();
    let body = incoming.collect().await.map_err(|e| {
        let mut detail = String::from("the answer was cut off");
        push_sources(&mut detail, &e);
        TransportError {
            unsent: false,
            detail,
        }
    })?;
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.to_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_sandbox::{Sandbox, SandboxOptions};

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    fn fallback() -> reqwest::Client {
        http_client::build(Duration::from_secs(5)).unwrap()
    }

    /// What `Transport::new` would pick for `to` under the proxy settings `proxies`.
    fn chosen(to: &str, proxies: &Matcher) -> Transport {
        Transport::choose(to, fallback(), Duration::from_secs(5), proxies).unwrap()
    }

    /// The direct path and the reqwest path to the same URL.
    fn both_paths(to: &str) -> [Transport; 2] {
        [
            chosen(to, &Matcher::builder().build()),
            Transport::Proxied {
                client: fallback(),
                url: url(to),
            },
        ]
    }

    #[test]
    fn a_proxy_that_applies_sends_through_reqwest() {
        let proxied = Matcher::builder().http("http://proxy.example:3128").build();
        let t = chosen("http://api.example/x", &proxied);
        assert!(matches!(t, Transport::Proxied { .. }), "{t:?}");
        let excluded = Matcher::builder()
            .http("http://proxy.example:3128")
            .no("api.example")
            .build();
        let t = chosen("http://api.example/x", &excluded);
        assert!(matches!(t, Transport::Direct { .. }), "{t:?}");
        let t = chosen("https://api.example/x", &Matcher::builder().build());
        assert!(matches!(t, Transport::Direct { .. }), "{t:?}");
    }

    #[test]
    fn a_url_that_does_not_parse_is_named_as_such() {
        for bad in ["not a url", "http://[::1/x"] {
            let e = Transport::new(bad, fallback(), Duration::from_secs(5)).unwrap_err();
            assert!(matches!(e, SetupError::Url(_)), "{bad}: {e}");
        }
    }

    /// Both paths against a real sandbox: the same answers to a good request, a bad
    /// token and an unreachable port.
    #[tokio::test]
    async fn both_paths_give_the_same_answers() {
        let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
        let base = sandbox.info().base_url;
        let client = gcx_sandbox::ClientSpec::demo();
        let tokens = crate::auth::TokenProvider::new(
            crate::auth::Credentials::new(
                &base,
                &client.id,
                crate::config::Secret::new(client.secret),
            ),
            fallback(),
        )
        .unwrap();
        let token = tokens.token().await.unwrap();
        let body = Bytes::from_static(b"[]");
        let timeout = Duration::from_secs(5);
        for t in both_paths(&format!("{base}/api/v2/interactions/events?async=true")) {
            let good = t.post(token.expose(), body.clone(), timeout).await.unwrap();
            let bad = t.post("not-a-token", body.clone(), timeout).await.unwrap();
            assert_eq!(bad.status, 401, "{t:?}");
            assert_ne!(
                good.status,
                401,
                "{t:?}: {}",
                String::from_utf8_lossy(&good.body)
            );
            assert!(!good.body.is_empty(), "{t:?}");
        }
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        for t in both_paths(&format!("http://127.0.0.1:{closed}/x")) {
            let e = t
                .post(token.expose(), body.clone(), timeout)
                .await
                .unwrap_err();
            assert!(e.unsent, "{t:?}: {e}");
            assert!(!e.detail.contains("127.0.0.1"), "no URL in {e}");
        }
        let _ = sandbox.shutdown().await;
    }
}
