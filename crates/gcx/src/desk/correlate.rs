//! Query-back (PROTOCOL.md section 4.1): every event whose outcome the send did not tell
//! (async batches, lost answers) is looked up by sequenceId, in rounds, until it is
//! `accepted` or `rejected`, or declared `missing` once its timeout passes. Nothing is
//! left unaccounted for.
//!
//! Rounds pace themselves: the first comes one `interval` after events arrive; each round
//! that resolves nothing doubles the wait (up to [`MAX_BACKOFF`] intervals), and one that
//! resolves something, or new events, bring it back to one interval. No round is later
//! than the oldest event's timeout, so `missing` is declared on time. With nothing
//! waiting there is no round and no wake-up at all.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The most a round's wait grows to while nothing changes, in `interval`s.
pub const MAX_BACKOFF: u32 = 16;

/// How often to ask and how long to wait for an event before it is missing.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The wait before the first round and after any round that resolved something.
    pub interval: Duration,
    /// How long after its arrival an event is declared missing.
    pub timeout: Duration,
}

/// Looks events up by sequenceId: the query-back endpoint, or a stand-in in tests.
pub trait Lookup: Send + Sync + 'static {
    /// One lookup of up to [`MAX_QUERY_EVENTS`] ids.
    fn lookup(
        &self,
        ids: Vec<Uuid>,
    ) -> impl Future<Output = Result<QueryResponse, QueryError>> + Send;
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

impl Lookup for QueryEndpoint {
    fn lookup(
        &self,
        ids: Vec<Uuid>,
    ) -> impl Future<Output = Result<QueryResponse, QueryError>> + Send {
        self.query(ids)
    }
}

impl QueryEndpoint {
    /// The pace its settings ask for.
    pub fn pace(&self) -> Pace {
        Pace {
            interval: self.interval,
            timeout: self.timeout,
        }
    }

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

/// When the next round is due.
struct Schedule {
    pace: Pace,
    /// The wait after a round that resolves nothing (doubles up to [`MAX_BACKOFF`]).
    wait: Duration,
    /// `None` while nothing waits.
    next: Option<Instant>,
}

impl Schedule {
    fn new(pace: Pace) -> Schedule {
        Schedule {
            pace,
            wait: pace.interval,
            next: None,
        }
    }

    /// New events arrived: ask about them one interval from now (or sooner if due).
    fn arrived(&mut self, now: Instant) {
        self.wait = self.pace.interval;
        let soon = later(now, self.pace.interval);
        self.next = Some(self.next.map_or(soon, |n| n.min(soon)));
    }

    /// A round ended; `changed` says whether it resolved anything. `oldest` is the
    /// earliest timeout among the events still waiting (`None`: nothing waits).
    fn after_round(&mut self, now: Instant, changed: bool, oldest: Option<Instant>) {
        self.wait = if changed {
            self.pace.interval
        } else {
            (self.wait.saturating_mul(2)).min(self.pace.interval.saturating_mul(MAX_BACKOFF))
        };
        self.next = oldest.map(|deadline| later(now, self.wait).min(deadline.max(now)));
    }
}

/// Runs until `incoming` is closed and every event it delivered is resolved. Resolved
/// events go to `out` in chunks; `waiting_gauge` tracks how many are still open. Returns
/// how many rounds it ran.
pub async fn run(
    lookup: impl Lookup,
    pace: Pace,
    mut incoming: mpsc::UnboundedReceiver<Vec<SentEvent>>,
    out: mpsc::UnboundedSender<Vec<Found>>,
    waiting_gauge: Arc<AtomicU64>,
) -> u64 {
    let mut waiting: HashMap<Uuid, Waiting> = HashMap::new();
    // Ids in arrival order, so the oldest are asked first (may hold resolved ids); with
    // one timeout for all, the front is also the earliest deadline.
    let mut order: VecDeque<Uuid> = VecDeque::new();
    let mut open = true;
    let mut schedule = Schedule::new(pace);
    let mut rounds = 0u64;
    loop {
        let due = schedule.next;
        tokio::select! {
            got = incoming.recv(), if open => match got {
                Some(events) => {
                    let now = Instant::now();
                    let deadline = later(now, pace.timeout);
                    for e in events {
                        order.push_back(e.sequence_id);
                        waiting.insert(e.sequence_id, Waiting { event: e, deadline });
                    }
                    if !waiting.is_empty() {
                        schedule.arrived(now);
                    }
                }
                None => open = false,
            },
            () = sleep_until_some(due) => {
                rounds += 1;
                let changed = round(&lookup, &mut waiting, &mut order, &out).await;
                let oldest = order.front().and_then(|id| waiting.get(id)).map(|w| w.deadline);
                schedule.after_round(Instant::now(), changed, oldest);
            }
        }
        waiting_gauge.store(waiting.len() as u64, Ordering::Relaxed);
        if !open && waiting.is_empty() {
            return rounds;
        }
    }
}

/// `after` from `now`; a setting too large for the clock means a century.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Sleeps until `due`; never resolves for `None`.
async fn sleep_until_some(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks about every waiting event once and declares the timed-out ones missing; true
/// when any event was resolved (found or missing).
async fn round(
    lookup: &impl Lookup,
    waiting: &mut HashMap<Uuid, Waiting>,
    order: &mut VecDeque<Uuid>,
    out: &mpsc::UnboundedSender<Vec<Found>>,
) -> bool {
    order.retain(|id| waiting.contains_key(id));
    let ids: Vec<Uuid> = order.iter().copied().collect();
    let mut found = Vec::new();
    for chunk in ids.chunks(MAX_QUERY_EVENTS) {
        match lookup.lookup(chunk.to_vec()).await {
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
    order.retain(|id| waiting.contains_key(id));
    if found.is_empty() {
        return false;
    }
    let _ = out.send(found);
    true
}

#[cfg(test)]
mod tests {
    use gcx_protocol::AgentState;
    use gcx_protocol::events::QueriedEvent;

    use super::*;
    use crate::desk::agents::PlannedEvent;

    /// A query-back that answers `pending` until `accepts_from` (paused time), then
    /// `accepted`; it counts the lookups it is asked for.
    #[derive(Clone)]
    struct Stand {
        start: Instant,
        accepts_from: Option<Duration>,
        lookups: Arc<AtomicU64>,
    }

    impl Stand {
        fn new(accepts_from: Option<Duration>) -> Stand {
            Stand {
                start: Instant::now(),
                accepts_from,
                lookups: Arc::new(AtomicU64::new(0)),
            }
        }
    }

    impl Lookup for Stand {
        fn lookup(
            &self,
            ids: Vec<Uuid>,
        ) -> impl Future<Output = Result<QueryResponse, QueryError>> + Send {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            let accepted = self.accepts_from.is_some_and(|t| self.start.elapsed() >= t);
            let status = if accepted {
                EventStatus::Accepted
            } else {
                EventStatus::Pending
            };
            let events = ids
                .into_iter()
                .map(|sequence_id| QueriedEvent {
                    sequence_id,
                    batch_id: Uuid::nil(),
                    agent_id: Uuid::nil(),
                    interaction_id: Uuid::nil(),
                    state: AgentState::Available,
                    status,
                    code: None,
                    received_at: gcx_protocol::time::now(),
                    processed_at: accepted.then(gcx_protocol::time::now),
                })
                .collect();
            std::future::ready(Ok(QueryResponse {
                events,
                ..QueryResponse::default()
            }))
        }
    }

    fn events(n: u64) -> Vec<SentEvent> {
        (0..n)
            .map(|i| SentEvent {
                planned: PlannedEvent {
                    n: i,
                    agent: 0,
                    from: None,
                    state: AgentState::Available,
                    invalid: false,
                    at: Duration::ZERO,
                    interaction: 0,
                },
                sequence_id: Uuid::new_v4(),
                intended: Duration::ZERO,
                latency: Duration::ZERO,
                answered_at: Duration::ZERO,
                genesys: None,
            })
            .collect()
    }

    const PACE: Pace = Pace {
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
    };

    type Channels = (
        mpsc::UnboundedSender<Vec<SentEvent>>,
        mpsc::UnboundedReceiver<Vec<Found>>,
        tokio::task::JoinHandle<u64>,
    );

    fn start(stand: &Stand) -> Channels {
        let (tx, rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            stand.clone(),
            PACE,
            rx,
            out_tx,
            Arc::new(AtomicU64::new(0)),
        ));
        (tx, out_rx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_waiting_there_is_no_round() {
        let stand = Stand::new(None);
        let (tx, _out, task) = start(&stand);
        // An hour of paused time passes in one step per timer the loop sets.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(tx);
        assert_eq!(task.await.unwrap(), 0, "rounds while nothing waited");
        assert_eq!(stand.lookups.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_back_off_while_nothing_changes_and_missing_comes_on_time() {
        let stand = Stand::new(None);
        let (tx, mut out, task) = start(&stand);
        let sent = Instant::now();
        tx.send(events(10)).unwrap();
        drop(tx);
        let found = out.recv().await.unwrap();
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|f| f.outcome == Outcome::Missing));
        assert_eq!(
            sent.elapsed(),
            PACE.timeout,
            "missing exactly at the timeout"
        );
        let rounds = task.await.unwrap();
        // 0.2, 0.4, 0.8, 1.6, 3.2, 3.2 s, then the timeout at 10 s: 7 rounds, where
        // one every interval would be 50.
        assert_eq!(rounds, 7);
        assert_eq!(stand.lookups.load(Ordering::Relaxed), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn it_stops_once_every_event_is_accounted_for() {
        let stand = Stand::new(Some(Duration::from_secs(2)));
        let (tx, mut out, task) = start(&stand);
        tx.send(events(3)).unwrap();
        drop(tx);
        let found = out.recv().await.unwrap();
        assert!(
            found
                .iter()
                .all(|f| f.outcome == Outcome::Accepted { duplicate: false })
        );
        // 0.2, 0.6, 1.4, then 3.0 s finds them; then nothing is left and it returns.
        assert_eq!(task.await.unwrap(), 4);
        assert!(out.recv().await.is_none());
    }
}
