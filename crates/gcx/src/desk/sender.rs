//! One batch request, start to finish: POST, then the retry rules of PROTOCOL.md section
//! 4.2 (429 after `Retry-After`, 502/503/504 and connection faults with exponential
//! back-off and full jitter, a deadline, a 401 answered by one token refresh). A retry
//! re-sends the very same body, so the same sequenceIds: the server's idempotency makes
//! that safe, and an event never gets a second identity.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gcx_protocol::events::{AsyncBatchResponse, SyncBatchResponse};
use gcx_protocol::rest::ErrorBody;
use tokio::time::Instant;

use super::genesys::GenesysAnswer;
use super::transport::{Answer, Transport, TransportError};
use crate::auth::TokenProvider;
use crate::retry::{RetryPolicy, retry_after_header};

/// Where and how batches are sent.
#[derive(Debug, Clone)]
pub struct EventsEndpoint {
    /// To `{api_base}/api/v2/interactions/events?async=…`.
    pub transport: Transport,
    pub tokens: Arc<TokenProvider>,
    /// One attempt's timeout.
    pub request_timeout: Duration,
    /// No retry starts after this long from the first send.
    pub retry_deadline: Duration,
}

/// Whether the server may have processed a refused batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// It was answered before processing (4xx, 429, 503): nothing happened.
    No,
    /// The answer was lost (timeout, reset, 502/504): query-back must tell.
    Unknown,
}

/// What became of a batch.
#[derive(Debug)]
pub enum BatchResult {
    Sync(SyncBatchResponse),
    Async(AsyncBatchResponse),
    Refused {
        reason: String,
        processed: Processed,
    },
    /// The `genesys-events` target: a fate per Events API event.
    Genesys(GenesysAnswer),
}

/// A batch's result with its timing.
#[derive(Debug)]
pub struct Sent {
    pub first_sent: Instant,
    pub answered: Instant,
    pub attempts: u32,
    pub result: BatchResult,
}

/// The back-off of a batch: full jitter from 100 ms, capped at 5 s, until the deadline.
pub(super) fn policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(5)).with_deadline(deadline)
}

/// `Retry-After` (seconds or HTTP-date); a 429 without one waits at least a second.
pub(super) fn retry_after(h: &reqwest::header::HeaderMap) -> Duration {
    retry_after_header(h, chrono::Utc::now())
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1))
}

/// `status code: message` of a Genesys error body, or the status alone.
pub(super) fn describe(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!("{status} {}: {}", e.code, e.message),
        Err(_) => format!("{status}"),
    }
}

/// Sends one batch until it is answered, refused for good, or the deadline passes.
pub async fn send_batch(ep: &EventsEndpoint, body: Bytes, async_mode: bool) -> Sent {
    let first_sent = Instant::now();
    let mut backoff = policy(ep.retry_deadline).start();
    let mut attempts = 0u32;
    let mut refreshed = false;
    let done = |attempts: u32, result: BatchResult| Sent {
        first_sent,
        answered: Instant::now(),
        attempts,
        result,
    };
    let mut token = match ep.tokens.token().await {
        Ok(t) => t,
        Err(e) => {
            return done(
                1,
                BatchResult::Refused {
                    reason: e.to_string(),
                    processed: Processed::No,
                },
            );
        }
    };
    loop {
        attempts += 1;
        let sent = ep
            .transport
            .post(token.expose(), body.clone(), ep.request_timeout)
            .await;
        let (wait, reason, processed) = match sent {
            Ok(Answer {
                status,
                headers,
                body: bytes,
            }) => {
                let asked = (status == 429).then(|| retry_after(&headers));
                match status {
                    200 | 202 => {
                        let parsed = if status == 202 || async_mode {
                            serde_json::from_slice::<AsyncBatchResponse>(&bytes)
                                .map(BatchResult::Async)
                        } else {
                            serde_json::from_slice::<SyncBatchResponse>(&bytes)
                                .map(BatchResult::Sync)
                        };
                        return done(
                            attempts,
                            parsed.unwrap_or_else(|e| BatchResult::Refused {
                                reason: format!("{status} answer not understood: {e}"),
                                processed: Processed::Unknown,
                            }),
                        );
                    }
                    401 if !refreshed => {
                        refreshed = true;
                        match ep.tokens.invalidate_and_refresh(&token).await {
                            Ok(t) => {
                                token = t;
                                continue;
                            }
                            Err(e) => {
                                return done(
                                    attempts,
                                    BatchResult::Refused {
                                        reason: e.to_string(),
                                        processed: Processed::No,
                                    },
                                );
                            }
                        }
                    }
                    429 => (asked, describe(status, &bytes), Processed::No),
                    503 => (None, describe(status, &bytes), Processed::No),
                    502 | 504 => (None, describe(status, &bytes), Processed::Unknown),
                    _ => {
                        let mut reason = describe(status, &bytes);
                        if status == 401 {
                            reason.push_str(" (after one token refresh)");
                        }
                        return done(
                            attempts,
                            BatchResult::Refused {
                                reason,
                                processed: Processed::No,
                            },
                        );
                    }
                }
            }
            Err(TransportError { unsent, detail }) => {
                let processed = if unsent {
                    Processed::No
                } else {
                    Processed::Unknown
                };
                (None, format!("transport: {detail}"), processed)
            }
        };
        let Some(wait) = backoff.next(wait) else {
            return done(
                attempts,
                BatchResult::Refused {
                    reason: format!(
                        "{reason} (retry deadline of {:?} reached)",
                        ep.retry_deadline
                    ),
                    processed,
                },
            );
        };
        tracing::debug!(attempt = attempts, ?wait, %reason, "events batch will be retried");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::RETRY_AFTER;

    #[test]
    fn retry_after_is_at_least_a_second() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(3));
        h.insert(RETRY_AFTER, "0".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }

    #[test]
    fn the_deadline_ends_retries() {
        let mut b = policy(Duration::from_millis(300)).start();
        assert!(b.next(None).is_some());
        assert!(
            b.next(Some(Duration::from_secs(1))).is_none(),
            "a wait past the deadline is not taken"
        );
    }
}
