//! The QA platform export (PROTOCOL.md section 6): the run's `SimulationMetrics`, POSTed
//! once at the end with Standard Webhooks headers.
//!
//! TEMPORARY: a direct POST with a short retry, until `crate::delivery` lands; then
//! [`export`] becomes one outbox message (endpoint "qa", ordering key = run id) plus a
//! worker drain, and nothing else in the simulator changes.

use std::time::Duration;

use base64::Engine as _;
use gcx_protocol::webhook::SimulationMetrics;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Where the QA platform is.
#[derive(Debug, Clone)]
pub struct QaTarget {
    pub url: String,
    /// `whsec_…`: signs the export when set.
    pub secret: Option<Secret>,
}

/// Why the export did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum QaExportError {
    #[error("QA export to {url} failed after {attempts} attempts: {last}")]
    Failed {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("the QA webhook secret is not `whsec_` followed by base64")]
    BadSecret,
}

fn sign(secret: &Secret, id: &str, ts: i64, body: &[u8]) -> Result<String, QaExportError> {
    let b64 = secret
        .expose()
        .strip_prefix("whsec_")
        .ok_or(QaExportError::BadSecret)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| QaExportError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| QaExportError::BadSecret)?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Sends the metrics (retrying 408/425/429/5xx and connection faults a few times).
pub async fn export(
    http: &reqwest::Client,
    target: &QaTarget,
    metrics: &SimulationMetrics,
) -> Result<(), QaExportError> {
    let body = serde_json::to_vec(metrics).unwrap_or_default();
    let id = format!("msg_{}", metrics.run_id.replace('-', ""));
    let mut last = String::new();
    const ATTEMPTS: u32 = 4;
    for attempt in 1..=ATTEMPTS {
        let ts = chrono::Utc::now().timestamp();
        let mut req = http
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .body(body.clone());
        if let Some(secret) = &target.secret {
            req = req.header("webhook-signature", sign(secret, &id, ts, &body)?);
        }
        let wait = match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status().as_u16();
                last = format!("HTTP {status}");
                if !matches!(status, 408 | 425 | 429 | 500..=599) {
                    break;
                }
                let ra = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                Duration::from_millis(ra.map_or(200 << attempt, |s| s * 1000))
            }
            Err(e) => {
                last = e.without_url().to_string();
                Duration::from_millis(200 << attempt)
            }
        };
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
    }
    Err(QaExportError::Failed {
        url: target.url.clone(),
        attempts: ATTEMPTS,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_vector() {
        let secret = Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let sig = sign(
            &secret,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }
}
