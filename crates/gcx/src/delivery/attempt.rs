//! One delivery attempt: sign, POST, and reduce whatever happened to an
//! [`AttemptOutcome`] (status and `Retry-After`, or why there was no answer).

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;

use super::schedule::AttemptOutcome;
use super::target::Target;

/// Most bytes of a response body read (and thrown away) so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// POSTs `body` to `target`, signed for this very moment.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    message_id: &str,
    body: Vec<u8>,
) -> AttemptOutcome {
    let headers = target
        .signer
        .sign(message_id, Utc::now().timestamp(), &body);
    let mut request = client
        .post(target.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", headers.webhook_id)
        .header("webhook-timestamp", headers.webhook_timestamp);
    if let Some(signature) = headers.webhook_signature {
        request = request.header("webhook-signature", signature);
    }
    let mut response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return AttemptOutcome::NoAnswer {
                reason: describe(e),
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = crate::retry::retry_after_header(response.headers(), Utc::now());
    // The status is what counts; reading the rest only lets the connection be reused.
    let mut drained = 0;
    while drained < MAX_DRAINED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => drained += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
    AttemptOutcome::Answered {
        status,
        retry_after,
    }
}

/// Why there was no answer, without the URL (it may carry credentials).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    crate::http_client::push_sources(&mut text, &error.without_url());
    text
}
