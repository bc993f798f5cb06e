//! Counters behind `GET /sandbox/stats` (PROTOCOL.md section 7), exactly as named there.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{Value, json};

/// A counter that can be bumped from any task.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }
    /// Raises the value to `n` if `n` is larger (a high-water mark).
    pub fn max(&self, n: u64) {
        self.0.fetch_max(n, Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct OauthStats {
    pub tokens_issued: Counter,
    pub rejected: Counter,
}

#[derive(Debug, Default)]
pub struct AssistStats {
    pub connections_total: Counter,
    pub connections_open: Counter,
    pub sends: Counter,
    pub acks: Counter,
    pub duplicates: Counter,
    pub results_completed: Counter,
    pub results_failed: Counter,
    pub rejected_invalid: Counter,
    pub rejected_429: Counter,
    pub rejected_503: Counter,
    pub in_flight: Counter,
    pub max_in_flight_observed: Counter,
    pub executed_unique: Counter,
}

#[derive(Debug, Default)]
pub struct EventsStats {
    pub requests: Counter,
    pub events_received: Counter,
    pub events_accepted: Counter,
    pub events_rejected_transition: Counter,
    pub events_rejected_schema: Counter,
    pub duplicates: Counter,
    pub rate_limited: Counter,
}

#[derive(Debug, Default)]
pub struct CrmStats {
    pub deliveries: Counter,
    pub unique_messages: Counter,
    pub bad_signatures: Counter,
    pub initiated: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub order_violations: Counter,
}

/// Counters of one Events API injection endpoint.
#[derive(Debug, Default)]
pub struct GenesysEndpointStats {
    pub requests: Counter,
    pub events_accepted: Counter,
    pub events_refused: Counter,
}

/// Counters of the Events API (PROTOCOL.md 9.1), under `genesys_events`.
#[derive(Debug, Default)]
pub struct GenesysStats {
    /// Every POST to an injection endpoint, refused ones included.
    pub requests: Counter,
    /// Events accepted for the first time (a re-sent accepted eventId is a duplicate).
    pub events_accepted: Counter,
    /// Events listed in a 200 answer's `errors` (re-sends of refused ones included).
    pub events_refused: Counter,
    /// Of those, the ones marked `retryable`.
    pub events_refused_retryable: Counter,
    /// Re-sent eventIds that had been accepted already (answered as accepted, not applied).
    pub duplicates: Counter,
    /// 403 answers (a missing permission).
    pub forbidden: Counter,
    /// 429 answers.
    pub rate_limited: Counter,
    /// 400 answers (schema, zero events, more than 100).
    pub invalid: Counter,
    /// Per endpoint, in the order routingstatus, presence, conversations.
    pub by_endpoint: [GenesysEndpointStats; 3],
}

/// Names of `genesys_events.by_endpoint`, in the order of [`GenesysStats::by_endpoint`].
pub const GENESYS_ENDPOINTS: [&str; 3] = ["routingstatus", "presence", "conversations"];

impl GenesysStats {
    fn to_json(&self) -> Value {
        let by_endpoint: serde_json::Map<String, Value> = GENESYS_ENDPOINTS
            .iter()
            .zip(&self.by_endpoint)
            .map(|(name, e)| {
                (
                    (*name).to_owned(),
                    json!({"requests": e.requests.get(), "events_accepted": e.events_accepted.get(),
                           "events_refused": e.events_refused.get()}),
                )
            })
            .collect();
        json!({
            "requests": self.requests.get(), "events_accepted": self.events_accepted.get(),
            "events_refused": self.events_refused.get(),
            "events_refused_retryable": self.events_refused_retryable.get(),
            "duplicates": self.duplicates.get(), "forbidden": self.forbidden.get(),
            "rate_limited": self.rate_limited.get(), "invalid": self.invalid.get(),
            "by_endpoint": by_endpoint,
        })
    }

    fn counters(&self) -> Vec<&Counter> {
        let mut all = vec![
            &self.requests,
            &self.events_accepted,
            &self.events_refused,
            &self.events_refused_retryable,
            &self.duplicates,
            &self.forbidden,
            &self.rate_limited,
            &self.invalid,
        ];
        for e in &self.by_endpoint {
            all.extend([&e.requests, &e.events_accepted, &e.events_refused]);
        }
        all
    }
}

/// Counters of the Notifications API (PROTOCOL.md 9.2), under `genesys_notifications`.
#[derive(Debug, Default)]
pub struct GenesysNotificationStats {
    /// Channels created (`POST /api/v2/notifications/channels`).
    pub channels_created: Counter,
    /// Channels removed because their tenant created a 21st.
    pub channels_evicted: Counter,
    /// Channels removed 24 h after their last subscription change.
    pub channels_expired: Counter,
    /// Topics answered `Permitted` by a subscription change.
    pub topics_permitted: Counter,
    /// Topics answered `Rejected` (unknown topic or missing permission).
    pub topics_rejected: Counter,
    /// Sockets opened on a channel.
    pub sockets_opened: Counter,
    /// Sockets closed because a newer socket opened on their channel.
    pub sockets_replaced: Counter,
    /// Sockets ended, for any reason.
    pub sockets_closed: Counter,
    /// Sockets open now (a gauge: a reset keeps it).
    pub sockets_open: Counter,
    /// User-topic notifications queued on a socket.
    pub notifications_sent: Counter,
    /// User-topic notifications for a subscribed channel that had no socket to take them
    /// (or one too far behind): nothing is kept for later.
    pub notifications_dropped: Counter,
    pub heartbeats_sent: Counter,
    pub pongs_sent: Counter,
    /// `v2.system.socket_closing` notices sent.
    pub socket_closing_sent: Counter,
    /// User-state changes a publisher missed because it fell behind the broadcast.
    pub broadcast_lagged: Counter,
}

impl GenesysNotificationStats {
    fn to_json(&self) -> Value {
        json!({
            "channels_created": self.channels_created.get(),
            "channels_evicted": self.channels_evicted.get(),
            "channels_expired": self.channels_expired.get(),
            "topics_permitted": self.topics_permitted.get(),
            "topics_rejected": self.topics_rejected.get(),
            "sockets_opened": self.sockets_opened.get(),
            "sockets_replaced": self.sockets_replaced.get(),
            "sockets_closed": self.sockets_closed.get(),
            "sockets_open": self.sockets_open.get(),
            "notifications_sent": self.notifications_sent.get(),
            "notifications_dropped": self.notifications_dropped.get(),
            "heartbeats_sent": self.heartbeats_sent.get(),
            "pongs_sent": self.pongs_sent.get(),
            "socket_closing_sent": self.socket_closing_sent.get(),
            "broadcast_lagged": self.broadcast_lagged.get(),
        })
    }

    /// Every counter but the `sockets_open` gauge.
    fn counters(&self) -> [&Counter; 14] {
        [
            &self.channels_created,
            &self.channels_evicted,
            &self.channels_expired,
            &self.topics_permitted,
            &self.topics_rejected,
            &self.sockets_opened,
            &self.sockets_replaced,
            &self.sockets_closed,
            &self.notifications_sent,
            &self.notifications_dropped,
            &self.heartbeats_sent,
            &self.pongs_sent,
            &self.socket_closing_sent,
            &self.broadcast_lagged,
        ]
    }
}

/// All counters. `in_flight`, `connections_open` and `sockets_open` are gauges that a
/// reset keeps.
#[derive(Debug, Default)]
pub struct Stats {
    pub oauth: OauthStats,
    pub assist: AssistStats,
    pub events: EventsStats,
    pub crm: CrmStats,
    pub genesys_events: GenesysStats,
    pub genesys_notifications: GenesysNotificationStats,
    pub qa_exports: Counter,
    /// The last QA export body (`qa.last`).
    pub qa_last: parking_lot::Mutex<Option<Value>>,
}

impl Stats {
    /// The JSON of `GET /sandbox/stats`.
    pub fn to_json(&self) -> Value {
        let (o, a, e, c) = (&self.oauth, &self.assist, &self.events, &self.crm);
        json!({
            "oauth": {"tokens_issued": o.tokens_issued.get(), "rejected": o.rejected.get()},
            "assist": {
                "connections_total": a.connections_total.get(), "connections_open": a.connections_open.get(),
                "sends": a.sends.get(), "acks": a.acks.get(), "duplicates": a.duplicates.get(),
                "results_completed": a.results_completed.get(), "results_failed": a.results_failed.get(),
                "rejected_invalid": a.rejected_invalid.get(), "rejected_429": a.rejected_429.get(),
                "rejected_503": a.rejected_503.get(), "in_flight": a.in_flight.get(),
                "max_in_flight_observed": a.max_in_flight_observed.get(), "executed_unique": a.executed_unique.get(),
            },
            "events": {
                "requests": e.requests.get(), "events_received": e.events_received.get(),
                "events_accepted": e.events_accepted.get(), "events_rejected_transition": e.events_rejected_transition.get(),
                "events_rejected_schema": e.events_rejected_schema.get(), "duplicates": e.duplicates.get(),
                "rate_limited": e.rate_limited.get(),
            },
            "crm": {
                "deliveries": c.deliveries.get(), "unique_messages": c.unique_messages.get(),
                "bad_signatures": c.bad_signatures.get(),
                "by_state": {"initiated": c.initiated.get(), "completed": c.completed.get(), "failed": c.failed.get()},
                "order_violations": c.order_violations.get(),
            },
            "qa": {"exports": self.qa_exports.get(), "last": self.qa_last.lock().clone()},
            "genesys_events": self.genesys_events.to_json(),
            "genesys_notifications": self.genesys_notifications.to_json(),
        })
    }

    /// `POST /sandbox/stats/reset`: zero every counter; gauges keep their live value and
    /// `max_in_flight_observed` restarts from the current in-flight count.
    pub fn reset(&self) {
        let (o, a, e, c) = (&self.oauth, &self.assist, &self.events, &self.crm);
        for counter in [
            &o.tokens_issued,
            &o.rejected,
            &a.connections_total,
            &a.sends,
            &a.acks,
            &a.duplicates,
            &a.results_completed,
            &a.results_failed,
            &a.rejected_invalid,
            &a.rejected_429,
            &a.rejected_503,
            &a.executed_unique,
            &e.requests,
            &e.events_received,
            &e.events_accepted,
            &e.events_rejected_transition,
            &e.events_rejected_schema,
            &e.duplicates,
            &e.rate_limited,
            &c.deliveries,
            &c.unique_messages,
            &c.bad_signatures,
            &c.initiated,
            &c.completed,
            &c.failed,
            &c.order_violations,
            &self.qa_exports,
        ] {
            counter.set(0);
        }
        for counter in self
            .genesys_events
            .counters()
            .into_iter()
            .chain(self.genesys_notifications.counters())
        {
            counter.set(0);
        }
        a.max_in_flight_observed.set(a.in_flight.get());
        *self.qa_last.lock() = None;
    }
}
