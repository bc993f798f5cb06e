//! One batch's events to the Events API (PROTOCOL.md 9.1): grouped by endpoint (presence,
//! then routing status, then conversations, so a user's presence and status come before
//! its calls), at most 100 per request and at most one per user or call (see [`waves`]),
//! each request retried by the rules of the API:
//! - 200 `{"errors":[...]}`: an event not named was taken; a named one with
//!   `retryable: false` is refused with its message; only the `retryable` ones are sent
//!   again (same eventIds), after a back-off, until the retry deadline;
//! - 429 waits `Retry-After`; 502/503/504 and lost answers back off; a 401 is answered by
//!   one token refresh;
//! - 403 stops: the client lacks the endpoint's permission, so every later request would
//!   be refused too. The answer carries the message naming the permission, the run stops
//!   at once, and the events not sent are failed with that reason;
//! - any other status refuses the request's events with the status and message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gcx_protocol::genesys_events::{
    BatchConversationEventRequest, BatchEventResponse, BatchUserPresenceEventRequest,
    BatchUserRoutingStatusEventRequest, MAX_EVENTS_PER_REQUEST,
};
use tokio::time::Instant;
use uuid::Uuid;

use super::map::{Endpoint, GenesysEvent, Mapped};
use crate::auth::TokenProvider;
use crate::desk::sender::{describe, policy, retry_after};
use crate::desk::transport::{Answer, Transport, TransportError};

/// The three injection endpoints of one run.
#[derive(Debug, Clone)]
pub struct GenesysEndpoints {
    pub routing_status: Transport,
    pub presence: Transport,
    pub conversations: Transport,
    pub tokens: Arc<TokenProvider>,
    /// One attempt's timeout.
    pub request_timeout: Duration,
    /// No retry starts after this long from a request's first send.
    pub retry_deadline: Duration,
}

impl GenesysEndpoints {
    fn transport(&self, e: Endpoint) -> &Transport {
        match e {
            Endpoint::RoutingStatus => &self.routing_status,
            Endpoint::Presence => &self.presence,
            Endpoint::Conversations => &self.conversations,
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Taken; `sent_at` is when the request that it was taken in left.
    Accepted { sent_at: Instant },
    /// Refused for good, with the API's message.
    Refused { message: String },
    /// No answer that settles it (retries exhausted, run stopped).
    Failed { reason: String },
}

impl Fate {
    fn failed(reason: impl Into<String>) -> Fate {
        Fate::Failed {
            reason: reason.into(),
        }
    }
}

/// A batch's answer: one fate per event, in the order given.
#[derive(Debug, Default)]
pub struct GenesysAnswer {
    pub fates: Vec<Option<Fate>>,
    /// Requests sent, retries included.
    pub requests: u32,
    /// Requests sent again (a retryable error, a 429, a 5xx or a lost answer).
    pub retries: u32,
    /// The 403 that stops the run (its message names the permission).
    pub stop: Option<String>,
}

impl GenesysAnswer {
    /// Gives each of `events` (indexes into the batch) the same fate.
    fn settle(&mut self, events: &[usize], fate: Fate) {
        for &i in events {
            self.fates[i] = Some(fate.clone());
        }
    }
}

/// The request body of `events` (all for `endpoint`).
fn encode(endpoint: Endpoint, events: &[&GenesysEvent]) -> Bytes {
    let body = match endpoint {
        Endpoint::RoutingStatus => serde_json::to_vec(&BatchUserRoutingStatusEventRequest {
            user_routing_status_events: events
                .iter()
                .filter_map(|e| match e {
                    GenesysEvent::Routing(r) => Some(r.clone()),
                    _ => None,
                })
                .collect(),
        }),
        Endpoint::Presence => serde_json::to_vec(&BatchUserPresenceEventRequest {
            user_presence_events: events
                .iter()
                .filter_map(|e| match e {
                    GenesysEvent::Presence(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
        }),
        Endpoint::Conversations => {
            let mut b = BatchConversationEventRequest::default();
            for e in events {
                match e {
                    GenesysEvent::Established(x) => b.user_established_events.push((**x).clone()),
                    GenesysEvent::Answered(x) => b.communication_answered_events.push(x.clone()),
                    GenesysEvent::Hold(x) => b.hold_updated_events.push(x.clone()),
                    GenesysEvent::Ended(x) => b.communication_ended_events.push(x.clone()),
                    GenesysEvent::Routing(_) | GenesysEvent::Presence(_) => {}
                }
            }
            serde_json::to_vec(&b)
        }
    };
    // Serializing these plain structs (strings, UUIDs, bools, string maps) cannot fail.
    Bytes::from(body.unwrap_or_default())
}

/// Sends every event of `events` (flattened in this order: the fates come back so).
pub async fn send(ep: &GenesysEndpoints, events: &[&Mapped]) -> GenesysAnswer {
    let mut answer = GenesysAnswer {
        fates: vec![None; events.len()],
        ..GenesysAnswer::default()
    };
    for endpoint in Endpoint::ALL {
        let mine: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].event.endpoint() == endpoint)
            .collect();
        for wave in waves(events, &mine) {
            for chunk in wave.chunks(MAX_EVENTS_PER_REQUEST) {
                if let Some(why) = &answer.stop {
                    let fate = Fate::failed(format!("not sent: the run stopped ({why})"));
                    answer.settle(chunk, fate);
                    continue;
                }
                send_request(ep, endpoint, events, chunk, &mut answer).await;
            }
        }
    }
    answer
}

/// `mine` split so that no request holds two events of one user (routing status,
/// presence) or one communication (conversations): wave `k` holds the `k`-th event of
/// each. A wave is settled before the next is sent, so when the API takes one event of a
/// request and asks for another to be re-sent, a later event of the same user or call
/// never overtakes it.
fn waves(events: &[&Mapped], mine: &[usize]) -> Vec<Vec<usize>> {
    let mut rank: HashMap<Uuid, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in mine {
        let r = rank.entry(events[i].event.order_key()).or_insert(0);
        if out.len() <= *r {
            out.push(Vec::new());
        }
        out[*r].push(i);
        *r += 1;
    }
    out
}

/// One request's events until each is settled.
async fn send_request(
    ep: &GenesysEndpoints,
    endpoint: Endpoint,
    events: &[&Mapped],
    chunk: &[usize],
    answer: &mut GenesysAnswer,
) {
    let mut backoff = policy(ep.retry_deadline).start();
    let mut refreshed = false;
    let mut left: Vec<usize> = chunk.to_vec();
    let mut token = match ep.tokens.token().await {
        Ok(t) => t,
        Err(e) => {
            answer.settle(&left, Fate::failed(e.to_string()));
            return;
        }
    };
    loop {
        let list: Vec<&GenesysEvent> = left.iter().map(|&i| &events[i].event).collect();
        let body = encode(endpoint, &list);
        let sent_at = Instant::now();
        answer.requests += 1;
        let reply = ep
            .transport(endpoint)
            .post(token.expose(), body, ep.request_timeout)
            .await;
        let (wait, reason) = match reply {
            Ok(Answer {
                status: 200, body, ..
            }) => {
                let Ok(parsed) = serde_json::from_slice::<BatchEventResponse>(&body) else {
                    answer.settle(&left, Fate::failed("200 answer not understood"));
                    return;
                };
                let errors: HashMap<&str, (&str, bool)> = parsed
                    .errors
                    .iter()
                    .map(|e| (e.event_id.as_str(), (e.message.as_str(), e.retryable)))
                    .collect();
                let mut again = Vec::new();
                let mut last_retryable = String::new();
                for &i in &left {
                    let id = events[i].event.event_id();
                    match errors.get(id_text(id).as_str()) {
                        None => answer.fates[i] = Some(Fate::Accepted { sent_at }),
                        Some((message, false)) => {
                            answer.fates[i] = Some(Fate::Refused {
                                message: (*message).to_owned(),
                            });
                        }
                        Some((message, true)) => {
                            last_retryable = (*message).to_owned();
                            again.push(i);
                        }
                    }
                }
                if again.is_empty() {
                    return;
                }
                left = again;
                (None, format!("retryable: {last_retryable}"))
            }
            Ok(Answer { status: 401, .. }) if !refreshed => {
                refreshed = true;
                match ep.tokens.invalidate_and_refresh(&token).await {
                    Ok(t) => {
                        token = t;
                        continue;
                    }
                    Err(e) => {
                        answer.settle(&left, Fate::failed(e.to_string()));
                        return;
                    }
                }
            }
            Ok(Answer {
                status: 403, body, ..
            }) => {
                let why = describe(403, &body);
                answer.settle(&left, Fate::failed(why.clone()));
                answer.stop = Some(why);
                return;
            }
            Ok(Answer {
                status: 429,
                headers,
                body,
            }) => (Some(retry_after(&headers)), describe(429, &body)),
            Ok(Answer {
                status: status @ (502..=504),
                body,
                ..
            }) => (None, describe(status, &body)),
            Ok(Answer { status, body, .. }) => {
                let mut message = describe(status, &body);
                if status == 401 {
                    message.push_str(" (after one token refresh)");
                }
                answer.settle(&left, Fate::Refused { message });
                return;
            }
            Err(TransportError { detail, .. }) => (None, format!("transport: {detail}")),
        };
        let Some(wait) = backoff.next(wait) else {
            answer.settle(
                &left,
                Fate::failed(format!(
                    "{reason} (retry deadline of {:?} reached)",
                    ep.retry_deadline
                )),
            );
            return;
        };
        tracing::debug!(endpoint = endpoint.name(), ?wait, %reason, "Events API request will be retried");
        answer.retries += 1;
        tokio::time::sleep(wait).await;
    }
}

/// An eventId as the API writes it back (hyphenated, lower case).
fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_protocol::genesys_events::{RoutingStatus, UserRoutingStatusEvent};

    #[test]
    fn no_request_holds_two_events_of_one_user() {
        let at = |user: u128, id: u128| Mapped {
            event: GenesysEvent::Routing(UserRoutingStatusEvent {
                event_id: Uuid::from_u128(id),
                event_date_time: "2026-12-07T10:00:00.000Z".into(),
                agent_id: Uuid::from_u128(user),
                status: RoutingStatus::Idle,
                source_id: "s".into(),
            }),
            user: Uuid::from_u128(user),
            change: None,
        };
        let list = [at(1, 10), at(2, 11), at(1, 12), at(1, 13), at(3, 14)];
        let refs: Vec<&Mapped> = list.iter().collect();
        assert_eq!(
            waves(&refs, &[0, 1, 2, 3, 4]),
            vec![vec![0, 1, 4], vec![2], vec![3]]
        );
    }

    #[test]
    fn bodies_carry_only_their_endpoints_events() {
        let r = GenesysEvent::Routing(UserRoutingStatusEvent {
            event_id: Uuid::from_u128(1),
            event_date_time: "2026-12-07T10:00:00.000Z".into(),
            agent_id: Uuid::from_u128(2),
            status: RoutingStatus::Idle,
            source_id: "s".into(),
        });
        let body = encode(Endpoint::RoutingStatus, &[&r]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["userRoutingStatusEvents"][0]["status"], "Idle");
        let none = encode(Endpoint::Conversations, &[&r]);
        assert_eq!(&none[..], b"{}");
    }
}
