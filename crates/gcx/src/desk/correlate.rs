//! Query-back (PROTOCOL.md section 4.1): every event whose outcome the send did not tell
//! (async batches, lost answers) is looked up by sequenceId, in rounds, until it is
//! `accepted` or `rejected`, or declared `missing` once its timeout passes. Nothing is
//! left unaccounted for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gcx_protocol::events::{EventStatus, MAX_QUERY_EVENTS, QueryRequest, QueryResponse};
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::tally::Outcome;
use super::wire::SentEvent;
use crate::auth::{AuthError, TokenProvider};

/// Where and how often to ask.
#[derive(Debug, Clone)]
pub struct QueryEndpoint {
    pub http: reqwest::Client,
    /// `{api_base}/api/v2/analytics/interactions/events/query`.
    pub url: String,
    pub tokens: Arc<TokenProvider>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// An event's outcome as query-back found it.
#[derive(Debug)]
pub struct Found {
    pub event: SentEvent,
    pub outcome: Outcome,
    /// The server's `processedAt`, for async end-to-end latency.
    pub processed_at: Option<DateTime<Utc>>,
}

/// Why one query failed (the round is retried; events only go missing by timeout).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("query-back request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("query-back answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("query-back answer not understood: {0}")]
    Body(#[from] serde_json::Error),
    #[error(transparent)]
    Token(#[from] AuthError),
}

impl QueryEndpoint {
    /// One lookup of up to [`MAX_QUERY_EVENTS`] ids, following the cursor to the end.
    pub async fn query(&self, ids: Vec<Uuid>) -> Result<QueryResponse, QueryError> {
        let mut all = QueryResponse::default();
        let mut req = QueryRequest {
            sequence_ids: Some(ids),
            ..QueryRequest::default()
        };
        let mut refreshed = false;
        let mut token = self.tokens.token().await?;
        loop {
            let resp = self
                .http
                .post(&self.url)
                .bearer_auth(token.expose())
                .header(CONTENT_TYPE, "application/json")
                .json(&req)
                .send()
                .await
                .map_err(reqwest::Error::without_url)?;
            let status = resp.status().as_u16();
            if status == 401 && !refreshed {
                refreshed = true;
                token = self.tokens.invalidate_and_refresh(&token).await?;
                continue;
            }
            let bytes = resp.bytes().await.map_err(reqwest::Error::without_url)?;
            if status != 200 {
                return Err(QueryError::Status {
                    status,
                    body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                });
            }
            let page: QueryResponse = serde_json::from_slice(&bytes)?;
            all.events.extend(page.events);
            all.not_found.extend(page.not_found);
            match page.cursor {
                Some(c) => req.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }
}

struct Waiting {
    event: SentEvent,
    /// After this it is declared missing.
    deadline: Instant,
}

/// Runs until `incoming` is closed and every event it delivered is resolved. Resolved
/// events go to `out` in chunks; `waiting_gauge` tracks how many are still open.
pub async fn run(
    ep: QueryEndpoint,
    mut incoming: mpsc::UnboundedReceiver<Vec<SentEvent>>,
    out: mpsc::UnboundedSender<Vec<Found>>,
    waiting_gauge: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut waiting: HashMap<Uuid, Waiting> = HashMap::new();
    // Ids in arrival order, so the oldest are asked first (may hold resolved ids).
    let mut order: std::collections::VecDeque<Uuid> = std::collections::VecDeque::new();
    let mut open = true;
    let mut next_round = Instant::now() + ep.interval;
    loop {
        tokio::select! {
            got = incoming.recv(), if open => match got {
                Some(events) => {
                    let deadline = Instant::now() + ep.timeout;
                    for e in events {
                        order.push_back(e.sequence_id);
                        waiting.insert(e.sequence_id, Waiting { event: e, deadline });
                    }
                }
                None => open = false,
            },
            _ = tokio::time::sleep_until(next_round) => {
                next_round = Instant::now() + ep.interval;
                round(&ep, &mut waiting, &mut order, &out).await;
            }
        }
        waiting_gauge.store(waiting.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if !open && waiting.is_empty() {
            return;
        }
    }
}

async fn round(
    ep: &QueryEndpoint,
    waiting: &mut HashMap<Uuid, Waiting>,
    order: &mut std::collections::VecDeque<Uuid>,
    out: &mpsc::UnboundedSender<Vec<Found>>,
) {
    order.retain(|id| waiting.contains_key(id));
    let ids: Vec<Uuid> = order.iter().copied().collect();
    let mut found = Vec::new();
    for chunk in ids.chunks(MAX_QUERY_EVENTS) {
        match ep.query(chunk.to_vec()).await {
            Ok(answer) => {
                for q in answer.events {
                    let outcome = match q.status {
                        EventStatus::Pending => continue,
                        EventStatus::Accepted => Outcome::Accepted { duplicate: false },
                        EventStatus::Rejected => Outcome::Rejected {
                            code: q.code,
                            duplicate: false,
                        },
                    };
                    if let Some(w) = waiting.remove(&q.sequence_id) {
                        found.push(Found {
                            event: w.event,
                            outcome,
                            processed_at: q
                                .processed_at
                                .as_deref()
                                .and_then(gcx_protocol::time::parse),
                        });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "query-back round failed; will ask again"),
        }
    }
    let now = Instant::now();
    let expired: Vec<Uuid> = waiting
        .iter()
        .filter(|(_, w)| w.deadline <= now)
        .map(|(id, _)| *id)
        .collect();
    for id in expired {
        if let Some(w) = waiting.remove(&id) {
            found.push(Found {
                event: w.event,
                outcome: Outcome::Missing,
                processed_at: None,
            });
        }
    }
    if !found.is_empty() {
        let _ = out.send(found);
    }
}
