//! The token endpoint end to end (PROTOCOL.md section 2): Basic auth, form body, error
//! bodies, scopes of extra clients, and the `oauth` stats.

mod stream_client;

use gcx_sandbox::{Faults, Sandbox};
use serde_json::{Value, json};
use stream_client::*;

/// POSTs a token request: `auth` as Basic credentials (none: no header), `form` as body.
async fn request(sb: &Sandbox, auth: Option<(&str, &str)>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut req = http()
        .post(format!("{}/oauth/token", sb.base_url()))
        .form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.expect("token request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn client_credentials_with_basic_auth_and_a_form_body_issue_a_token() {
    let sb = sandbox(Faults::default()).await;
    let (status, body) = request(&sb, Some(DEMO), &[GRANT]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86_400);
    let scopes: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    for s in [
        "agentassist:read",
        "agentassist:trigger",
        "interactions:read",
        "analytics:query",
    ] {
        assert!(scopes.contains(&s), "{s} missing from {scopes:?}");
    }
    // Asking for fewer scopes grants just those.
    let (status, body) = request(
        &sb,
        Some(DEMO),
        &[GRANT, ("scope", "agentassist:read agentassist:trigger")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "agentassist:read agentassist:trigger");
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_invalid_client() {
    let sb = sandbox(Faults::default()).await;
    for auth in [Some(("gcx-demo", "wrong")), Some(("nobody", "x")), None] {
        let (status, body) = request(&sb, auth, &[GRANT]).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].is_string());
    }
}

#[tokio::test]
async fn bad_grants_and_scopes_are_400() {
    let sb = sandbox(Faults::default()).await;
    let (status, body) = request(&sb, Some(DEMO), &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = request(&sb, Some(DEMO), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A scope the client does not have.
    let (status, body) = request(
        &sb,
        Some(READER),
        &[GRANT, ("scope", "agentassist:trigger")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // A JSON body is not the form the endpoint takes.
    let res = http()
        .post(format!("{}/oauth/token", sb.base_url()))
        .basic_auth(DEMO.0, Some(DEMO.1))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn an_extra_clients_token_carries_its_own_scopes() {
    let sb = sandbox(Faults::default()).await;
    let (status, body) = request(&sb, Some(READER), &[GRANT]).await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "agentassist:read");
    // And the stream honours them: it may open the stream but not send.
    let token = body["access_token"].as_str().unwrap();
    let (mut c, _) = Client::connect(&sb, token).await;
    c.send(&send_msg(&trigger(uuid::Uuid::new_v4()))).await;
    c.expect_error(403).await;
}

#[tokio::test]
async fn the_token_lifetime_fault_sets_expires_in() {
    let sb = sandbox(Faults {
        token_lifetime_secs: 2,
        ..Faults::default()
    })
    .await;
    let (_, body) = request(&sb, Some(DEMO), &[GRANT]).await;
    assert_eq!(body["expires_in"], 2);
}

#[tokio::test]
async fn stats_count_issued_and_rejected_tokens() {
    let sb = sandbox(Faults::default()).await;
    request(&sb, Some(DEMO), &[GRANT]).await;
    request(&sb, Some(READER), &[GRANT]).await;
    request(&sb, Some(("gcx-demo", "wrong")), &[GRANT]).await;
    request(&sb, Some(DEMO), &[("grant_type", "password")]).await;
    request(&sb, None, &[GRANT]).await;
    let s = stats(&sb).await;
    assert_eq!(s["oauth"], json!({"tokens_issued": 2, "rejected": 3}));
}
