//! Hostile clients against a real `gcx serve` (sandbox on port 0, SQLite in a temporary
//! folder): silent, trickling and idle connections are closed while `/healthz` answers;
//! bodies must arrive in time, say they are JSON, and use gzip or no coding (a gzip bomb
//! stops at `serve.max_body_bytes`); a client guessing keys is throttled; the data folder
//! and the store are private to their owner.

mod serve_support;

use std::io::Write;
use std::time::Duration;

use gcx::config::Config;
use gcx::server::service::Service;
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use serve_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on how long anything here may take before the test fails (never reached when
/// the service behaves; no timing is asserted).
const HANG_GUARD: Duration = Duration::from_secs(20);

struct Served {
    service: Service,
    _sandbox: gcx_sandbox::Sandbox,
    _dir: tempfile::TempDir,
}

async fn serve(tune: impl FnOnce(&mut Config)) -> Served {
    let sandbox = sandbox(gcx_sandbox::Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sandbox, &dir.path().join("data"));
    tune(&mut config);
    let service = start_service(&sandbox, &config).await;
    Served {
        service,
        _sandbox: sandbox,
        _dir: dir,
    }
}

fn short_timeouts(c: &mut Config) {
    c.serve.max_connections = 16;
    c.serve.header_read_timeout = Duration::from_millis(300);
    c.serve.body_read_timeout = Duration::from_millis(300);
}

/// Reads until the server closes the connection; what it sent before.
async fn until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(HANG_GUARD, tcp.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn silent_and_trickling_connections_are_closed_while_healthz_answers() {
    let s = serve(short_timeouts).await;
    let addr = s.service.local_addr();
    // Twice the connection cap of clients that never send a request.
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut trickling = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
            if trickling.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until_closed(&mut trickling).await
    });
    let health = tokio::time::timeout(
        HANG_GUARD,
        client().get(format!("{}/healthz", s.service.url())).send(),
    )
    .await
    .expect("/healthz is served while silent clients wait")
    .expect("/healthz answers");
    assert_eq!(health.status(), StatusCode::OK);
    for tcp in &mut silent {
        until_closed(tcp).await;
    }
    tokio::time::timeout(HANG_GUARD, trickle)
        .await
        .expect("the trickling client is closed")
        .unwrap();
}

#[tokio::test]
async fn a_silent_client_after_the_tls_handshake_is_closed() {
    let sandbox = sandbox(gcx_sandbox::Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sandbox, dir.path());
    short_timeouts(&mut config);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let cert = std::path::Path::new(fixtures).join("tls-test.crt");
    let key = std::path::Path::new(fixtures).join("tls-test.key");
    let tls = gcx::server::tls::load_server_config(&cert, &key).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = gcx::server::tls::TlsListener::new(tcp, tls).unwrap();
    let credentials = gcx::auth::Credentials::new(
        sandbox.base_url(),
        "gcx-demo",
        gcx::config::Secret::new("gcx-demo-secret"),
    );
    let http = gcx::http_client::build(Duration::from_secs(5)).unwrap();
    let upstream = gcx::pipeline::Upstream {
        tokens: gcx::auth::TokenProvider::new(credentials, http).unwrap(),
        stream_url: sandbox.info().stream_url,
        catalogue: gcx_protocol::Catalogue::builtin(),
    };
    let service = Service::start(&config, upstream, listener, true)
        .await
        .unwrap();

    gcx::http_client::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config));
    let tcp = TcpStream::connect(service.local_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    // HTTP/1.1 is all that is offered: its header-read timer covers every connection.
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANG_GUARD, tls.read(&mut buf))
        .await
        .expect("the silent TLS client is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    service.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = serve(short_timeouts).await;
    let mut tcp = TcpStream::connect(s.service.local_addr()).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = until_closed(&mut tcp).await;
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let s = serve(short_timeouts).await;
    let mut tcp = TcpStream::connect(s.service.local_addr()).await.unwrap();
    let head = format!(
        "POST /v1/triggers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"a\":"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let seen = String::from_utf8_lossy(&until_closed(&mut tcp).await).into_owned();
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    assert!(seen.contains("body_read_timeout"), "{seen}");
}

#[tokio::test]
async fn a_million_item_batch_is_refused_naming_the_limit_and_the_count() {
    let s = serve(|_| {}).await;
    let body = format!("[{}{{}}]", "{},".repeat(999_999));
    let response = client()
        .post(format!("{}/v1/triggers", s.service.url()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "batch_too_large");
    assert_eq!(
        body["error"]["details"],
        json!({"items": 1_000_000, "maxBatch": 500})
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1000000") && message.contains("500"),
        "{message}"
    );
}

#[tokio::test]
async fn deeply_nested_bodies_are_refused_cheaply() {
    let s = serve(|_| {}).await;
    for body in [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("[{}1{}]", "[".repeat(50_000), "]".repeat(50_000)),
        format!("[{{}}, {}{}]", "[".repeat(100_000), "]".repeat(100_000)),
    ] {
        let response = client()
            .post(format!("{}/v1/triggers", s.service.url()))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, _, body) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_json");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("recursion limit"),
            "{body}"
        );
    }
    let health = client()
        .get(format!("{}/healthz", s.service.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_without_content_type_gets_415() {
    let s = serve(|_| {}).await;
    let response = client()
        .post(format!("{}/v1/triggers", s.service.url()))
        .bearer_auth(KEY)
        .body(trigger().to_string())
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    // An empty body needs none (replay of every dead letter).
    let response = client()
        .post(format!("{}/v1/outbox/replay", s.service.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_inflated_within_the_body_limit_and_other_codings_get_415() {
    let s = serve(|_| {}).await;
    let post = |encoding: &'static str, body: Vec<u8>| {
        client()
            .post(format!("{}/v1/triggers", s.service.url()))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let t = trigger();
    let (status, _, body) =
        answer(post("gzip", gzip(t.to_string().as_bytes())).await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["correlationId"], t["correlationId"]);
    let (status, _, _) = answer(
        post("Identity", trigger().to_string().into_bytes())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (status, _, body) = answer(
        post("br", trigger().to_string().into_bytes())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_content_encoding");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`br`"),
        "{body}"
    );

    // 64 MiB of JSON whitespace in 64 KiB: refused once 4 MiB are inflated.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _, body) = answer(post("gzip", bomb).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("once inflated"),
        "{body}"
    );

    let (status, _, body) = answer(post("gzip", b"not gzip".to_vec()).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "unreadable_body");
}

#[tokio::test]
async fn an_address_guessing_keys_is_throttled_before_the_key_check() {
    let s = serve(|c| c.serve.auth_failures_per_minute = 5).await;
    let url = format!("{}/v1/triggers/{}", s.service.url(), uuid::Uuid::new_v4());
    for _ in 0..5 {
        let r = client()
            .get(&url)
            .bearer_auth("wrong-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = answer(
        client()
            .get(&url)
            .bearer_auth("wrong-key")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_auth_failures");
    assert!(headers.contains_key("retry-after"));
    // Before the key check: even a good key from this address waits.
    let r = client().get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Routes without a key are not affected.
    let r = client()
        .get(format!("{}/healthz", s.service.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_store_and_key_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let sandbox = sandbox(gcx_sandbox::Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(&sandbox, &data);
    let files = ["gcx.db", "gcx.db-wal", "gcx.db-shm", "audit-signing.key"];

    let service = start_service(&sandbox, &config).await;
    assert_eq!(mode(&data), 0o700);
    for f in files {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    service.shutdown().await;

    // Files left open to others (a careless copy, a restored backup) are tightened.
    for f in files {
        let path = data.join(f);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let service = start_service(&sandbox, &config).await;
    for f in files {
        assert_eq!(mode(&data.join(f)), 0o600, "{f} after a restart");
    }
    service.shutdown().await;
}
