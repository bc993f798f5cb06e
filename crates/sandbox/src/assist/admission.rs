//! One `send`, from receipt to `ack` or refusal, in the order of PROTOCOL.md section 3.6:
//! validate (400) → scope (403) → duplicate check → send rate and capacity (429) →
//! drawn faults (429/503) → `ack`. Only an acked correlationId counts as taken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use gcx_protocol::Violation;
use gcx_protocol::assist::{AckPayload, ErrorPayload, MessageType, WsMessage};
use gcx_protocol::oauth::SCOPE_ASSIST_TRIGGER;
use gcx_protocol::validate::validate_trigger;
use serde_json::Value;
use uuid::Uuid;

use super::execution::{Accepted, Plan};
use super::idempotency::{Acked, ConnId};
use super::outbox::{Outbox, typed_frame};
use super::tenant::Tenant;
use crate::AppState;
use crate::faults::draw;
use crate::oauth::TokenInfo;

/// `retryAfterMs` of a drawn 429 (`send_429_rate`).
const FAULT_429_RETRY: Duration = Duration::from_millis(250);
/// `retryAfterMs` of a drawn 503 (`send_503_rate`).
const FAULT_503_RETRY: Duration = Duration::from_millis(500);

/// The connection a `send` arrived on.
pub(crate) struct Sender<'a> {
    pub(crate) id: ConnId,
    pub(crate) tenant: &'a Arc<Tenant>,
    pub(crate) token: &'a TokenInfo,
    pub(crate) outbox: &'a Outbox,
}

/// The payload's correlationId if it has a parseable one (errors about a send carry it).
pub(crate) fn correlation_id(payload: Option<&Value>) -> Option<Uuid> {
    payload?
        .get("correlationId")?
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Answers one `send`; returns the action when it was acked and must now run.
pub(crate) fn admit(
    state: &AppState,
    sender: &Sender<'_>,
    payload: Option<&Value>,
) -> Option<Accepted> {
    let stats = &state.stats.assist;
    stats.sends.inc();
    let refuse = |code: u16, message: String, payload: ErrorPayload| {
        sender
            .outbox
            .push_msg(&WsMessage::error(code, message, payload));
    };
    let trigger = match validate_trigger(payload.unwrap_or(&Value::Null), state.engine.catalogue())
    {
        Ok(trigger) => trigger,
        Err(details) => {
            stats.rejected_invalid.inc();
            refuse(
                400,
                describe_violations(&details),
                ErrorPayload {
                    correlation_id: correlation_id(payload),
                    details: Some(details),
                    ..ErrorPayload::default()
                },
            );
            return None;
        }
    };
    let id = trigger.correlation_id;
    if !sender.token.has_scope(SCOPE_ASSIST_TRIGGER) {
        refuse(
            403,
            format!("the token lacks the scope {SCOPE_ASSIST_TRIGGER} needed to send"),
            ErrorPayload {
                correlation_id: Some(id),
                missing_scopes: Some(vec![SCOPE_ASSIST_TRIGGER.to_owned()]),
                ..ErrorPayload::default()
            },
        );
        return None;
    }
    let too_many = |message: String, wait: Duration| {
        let payload = ErrorPayload {
            correlation_id: Some(id),
            retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)),
            ..ErrorPayload::default()
        };
        (message, payload)
    };

    let now = Instant::now();
    let faults = state.faults.read().clone();
    let mut tenant = sender.tenant.lock();

    if let Some(acked) = tenant.store.get_mut(&id, now) {
        stats.duplicates.inc();
        sender.outbox.push(ack(id, true));
        match acked {
            Acked::Running { subscribers } => {
                if !subscribers.contains(&sender.id) {
                    subscribers.push(sender.id);
                }
            }
            Acked::Finished { result } => sender.outbox.push(result.clone()),
        }
        return None;
    }

    if let Err(wait) = tenant.rate.take(faults.sends_per_second, now) {
        stats.rejected_429.inc();
        let per_second = faults.sends_per_second.unwrap_or(0);
        let (m, p) = too_many(
            format!("over the send rate of {per_second} sends per second"),
            wait,
        );
        refuse(429, m, p);
        return None;
    }
    let limit = faults.max_concurrent_actions;
    if tenant.in_flight >= limit {
        stats.rejected_429.inc();
        let (m, p) = too_many(
            format!(
                "no capacity: {} of {limit} actions in flight for this tenant",
                tenant.in_flight
            ),
            tenant.room_in(limit, now),
        );
        refuse(429, m, p);
        return None;
    }
    let id_text = id.to_string();
    if faults.send_429_rate > 0.0 || faults.send_503_rate > 0.0 {
        let attempt = tenant.fault_attempts.next(id);
        let key = if attempt == 0 {
            id_text.clone()
        } else {
            format!("{id_text}/{attempt}")
        };
        if draw(faults.seed, "send_429", &key) < faults.send_429_rate {
            stats.rejected_429.inc();
            let (m, p) = too_many("engine busy (drawn 429)".into(), FAULT_429_RETRY);
            refuse(429, m, p);
            return None;
        }
        if draw(faults.seed, "send_503", &key) < faults.send_503_rate {
            stats.rejected_503.inc();
            let (m, p) = too_many("engine unavailable, retry".into(), FAULT_503_RETRY);
            refuse(503, m, p);
            return None;
        }
        tenant.fault_attempts.forget(&id);
    }

    let plan = Plan::draw(&faults, &id_text);
    // `run` is at most `action_timeout_ms`, which std's clock holds (u64 ms < i64 s);
    // saturate anyway rather than trust that.
    let due = now.checked_add(plan.run).unwrap_or(now);
    tenant.in_flight += 1;
    tenant.due.insert((due, id));
    tenant.store.insert_running(id, sender.id, now);
    stats.in_flight.inc();
    stats
        .max_in_flight_observed
        .max(u64::from(tenant.in_flight));
    stats.acks.inc();
    stats.executed_unique.inc();
    sender.outbox.push(ack(id, false));
    drop(tenant);
    Some(Accepted {
        tenant: sender.tenant.clone(),
        trigger,
        plan,
        due,
    })
}

fn ack(id: Uuid, duplicate: bool) -> Utf8Bytes {
    typed_frame(
        MessageType::Ack,
        &AckPayload {
            correlation_id: id,
            status: "accepted".into(),
            duplicate,
        },
    )
}

/// The `error.message` of a 400: how many violations, and the first in words.
pub(crate) fn describe_violations(details: &[Violation]) -> String {
    match details {
        [] => "invalid send payload".to_owned(),
        [one] => format!("invalid send payload: {one}"),
        [first, rest @ ..] => format!(
            "invalid send payload: {first} (and {} more, see details)",
            rest.len()
        ),
    }
}
