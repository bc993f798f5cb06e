//! What the dispatcher writes to the store at each step of a trigger: the state change,
//! the CRM outbox row (PROTOCOL.md section 5) and the audit event, as one [`WriteBatch`].
//! Pure functions of the trigger and its timings, so the batches can be read and tested
//! apart from the sockets.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gcx_protocol::ActionTriggerPayload;
use gcx_protocol::assist::{ResultError, ResultPayload, ResultState};
use gcx_protocol::webhook::{CrmWebhookPayload, ExecutionState};
use serde_json::Value;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::store::{NewOutboxMessage, TriggerState, TriggerWrite, WriteBatch, json_text};

/// The outbox endpoint name of the CRM webhook.
pub const CRM_ENDPOINT: &str = "crm";

/// What every record of one dispatcher shares.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Whether a CRM URL is configured: without one no outbox rows are written.
    pub crm: bool,
    /// The action catalogue version triggers were validated against (audit).
    pub catalogue_version: String,
    /// Keep raw parameters in the audit log (they may hold personal data).
    pub store_parameters: bool,
    /// Which gcx instance did the work (audit).
    pub instance: String,
}

/// The ordering key of a trigger's CRM rows: when it was accepted (UTC, to the
/// microsecond, as stored) and its correlationId, e.g.
/// `20261203T201804.123456Z/550e8400-e29b-41d4-a716-446655440000`.
///
/// The correlationId alone would order them just as well, but it is random, so every new
/// key went into the outbox's key index at a random page, and each such page was written
/// whole to the WAL at the next commit: the largest single cost of a trigger's writes. Led
/// by the acceptance time, new keys land at the index's right edge. Unique per trigger
/// (the correlationId is) and the same for all of its rows, which is all the ordering
/// needs (docs/protocol-notes.md, "Outbox ordering keys").
pub fn crm_ordering_key(accepted_at: DateTime<Utc>, correlation_id: Uuid) -> String {
    format!(
        "{}/{correlation_id}",
        accepted_at.format("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// Where one trigger stands, as the records need it.
#[derive(Debug, Clone)]
pub struct TriggerFacts<'a> {
    pub payload: &'a ActionTriggerPayload,
    /// SHA-256 of the canonical parameters, computed once.
    pub parameters_sha256: &'a str,
    /// Sends so far (the first send is 1).
    pub attempts: u32,
    /// Re-sends after a retryable refusal.
    pub retries: u32,
    /// When it was first sent (or accepted, if never sent).
    pub started_at: DateTime<Utc>,
    /// The ordering key of its CRM rows, the same for all of them ([`crm_ordering_key`]).
    pub crm_key: &'a str,
    pub queue_wait: Option<Duration>,
    pub send_to_ack: Option<Duration>,
    pub send_to_result: Option<Duration>,
}

/// Why a trigger was refused for good without an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A short code for the CRM and the audit log (`rejected`, `rate_limited`, ...).
    pub code: String,
    /// A sentence for a person.
    pub message: String,
}

impl Recorder {
    /// Acked: `Sent` + outbox `initiated` + audit `sent`.
    pub fn acked(&self, t: &TriggerFacts<'_>, at: DateTime<Utc>) -> WriteBatch {
        let mut batch = WriteBatch {
            triggers: vec![TriggerWrite::Transition {
                correlation_id: t.payload.correlation_id,
                state: TriggerState::Sent,
                attempts: t.attempts,
                at,
                output: None,
                error: None,
            }],
            ..WriteBatch::default()
        };
        self.crm_row(&mut batch, t, ExecutionState::Initiated, at, None);
        batch.audit.push(self.audit(t, "sent", "pending", None, at));
        batch
    }

    /// A result: `Completed`/`Failed` + outbox row + audit.
    pub fn finished(
        &self,
        t: &TriggerFacts<'_>,
        result: &ResultPayload,
        at: DateTime<Utc>,
    ) -> WriteBatch {
        let (state, crm_state, status, outcome) = match result.state {
            ResultState::Completed => (
                TriggerState::Completed,
                ExecutionState::Completed,
                "completed",
                "success",
            ),
            ResultState::Failed => (
                TriggerState::Failed,
                ExecutionState::Failed,
                "failed",
                "failure",
            ),
        };
        let error = result.error.clone();
        let mut batch = WriteBatch {
            triggers: vec![TriggerWrite::Transition {
                correlation_id: t.payload.correlation_id,
                state,
                attempts: t.attempts,
                at,
                output: result.output.clone(),
                error: error.as_ref().map(json_text),
            }],
            ..WriteBatch::default()
        };
        self.crm_row(&mut batch, t, crm_state, at, error.clone());
        let error_text = error.map(|e| format!("{}: {}", e.code, e.message));
        batch
            .audit
            .push(self.audit(t, status, outcome, error_text, at));
        batch
    }

    /// Refused for good without an ack: `Rejected` + outbox `initiated` and `failed` (the
    /// CRM sees the pair it sees for every trigger, in order) + audit `rejected`.
    pub fn rejected(
        &self,
        t: &TriggerFacts<'_>,
        refusal: &Refusal,
        at: DateTime<Utc>,
    ) -> WriteBatch {
        let error = ResultError {
            code: refusal.code.clone(),
            message: refusal.message.clone(),
        };
        let mut batch = WriteBatch {
            triggers: vec![TriggerWrite::Transition {
                correlation_id: t.payload.correlation_id,
                state: TriggerState::Rejected,
                attempts: t.attempts,
                at,
                output: None,
                error: Some(json_text(&error)),
            }],
            ..WriteBatch::default()
        };
        self.crm_row(
            &mut batch,
            t,
            ExecutionState::Initiated,
            t.started_at.min(at),
            None,
        );
        self.crm_row(&mut batch, t, ExecutionState::Failed, at, Some(error));
        batch.audit.push(self.audit(
            t,
            "rejected",
            "failure",
            Some(format!("{}: {}", refusal.code, refusal.message)),
            at,
        ));
        batch
    }

    fn crm_row(
        &self,
        batch: &mut WriteBatch,
        t: &TriggerFacts<'_>,
        state: ExecutionState,
        at: DateTime<Utc>,
        error: Option<ResultError>,
    ) {
        if !self.crm {
            return;
        }
        let payload = t.payload;
        let body = CrmWebhookPayload {
            correlation_id: payload.correlation_id.to_string(),
            action_type: payload.action_type.clone(),
            agent_id: payload.agent_id().to_owned(),
            session_id: payload.session_id().to_owned(),
            timestamp: gcx_protocol::time::format(at),
            execution_state: state,
            error,
        };
        batch.outbox.push(NewOutboxMessage {
            message_id: crate::delivery::new_message_id(),
            endpoint: CRM_ENDPOINT.to_owned(),
            ordering_key: t.crm_key.to_owned(),
            body: json_text(&body),
        });
    }

    fn audit(
        &self,
        t: &TriggerFacts<'_>,
        status: &str,
        outcome: &str,
        error: Option<String>,
        at: DateTime<Utc>,
    ) -> AuditEvent {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let latency = t
            .send_to_result
            .or(t.send_to_ack)
            .or_else(|| (at - t.started_at).to_std().ok())
            .unwrap_or_default();
        AuditEvent {
            correlation_id: t.payload.correlation_id.to_string(),
            action_type: t.payload.action_type.clone(),
            status: status.to_owned(),
            started_at: t.started_at,
            ended_at: at,
            latency_ms: latency.as_secs_f64() * 1000.0,
            queue_wait_ms: ms(t.queue_wait),
            send_to_ack_ms: ms(t.send_to_ack),
            send_to_result_ms: ms(t.send_to_result),
            agent_id: t.payload.agent_id().to_owned(),
            session_id: t.payload.session_id().to_owned(),
            interaction_type: t.payload.interaction_type().to_owned(),
            catalogue_version: self.catalogue_version.clone(),
            parameters_sha256: t.parameters_sha256.to_owned(),
            parameters: self
                .store_parameters
                .then(|| Value::Object(t.payload.parameter_matrix.clone())),
            outcome: outcome.to_owned(),
            error,
            retries: t.retries,
            instance: self.instance.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::parameters_sha256;
    use serde_json::json;

    const KEY: &str = "20261203T201804.123456Z/550e8400-e29b-41d4-a716-446655440000";

    fn payload() -> ActionTriggerPayload {
        serde_json::from_value(json!({
            "actionType": "knowledge_search",
            "parameterMatrix": {"query": "refund", "languageCode": "en-US"},
            "executionContext": {"agentId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                                 "sessionId": "s-1", "interactionType": "voice"},
            "correlationId": "550e8400-e29b-41d4-a716-446655440000",
            "maxRetries": 2
        }))
        .unwrap()
    }

    /// A row's body as the CRM will read it.
    fn body(m: &NewOutboxMessage) -> Value {
        serde_json::from_str(m.body.get()).unwrap()
    }

    fn recorder(crm: bool) -> Recorder {
        Recorder {
            crm,
            catalogue_version: "1".into(),
            store_parameters: false,
            instance: "test:1".into(),
        }
    }

    fn facts<'a>(p: &'a ActionTriggerPayload, sha: &'a str) -> TriggerFacts<'a> {
        TriggerFacts {
            payload: p,
            parameters_sha256: sha,
            attempts: 1,
            retries: 0,
            started_at: Utc::now(),
            crm_key: KEY,
            queue_wait: Some(Duration::from_millis(3)),
            send_to_ack: Some(Duration::from_millis(1)),
            send_to_result: None,
        }
    }

    #[test]
    fn parameter_hash_ignores_key_order() {
        let a = json!({"query": "q", "languageCode": "en"});
        let b = json!({"languageCode": "en", "query": "q"});
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            unreachable!()
        };
        assert_eq!(parameters_sha256(&a), parameters_sha256(&b));
        assert_eq!(parameters_sha256(&a).len(), 64);
    }

    #[test]
    fn crm_keys_are_led_by_the_acceptance_time_to_the_microsecond() {
        use chrono::TimeZone;
        let id: Uuid = "550e8400-e29b-41d4-a716-446655440000".parse().unwrap();
        let at = Utc.timestamp_opt(1_796_329_084, 123_456_789).unwrap();
        assert_eq!(crm_ordering_key(at, id), KEY);
        // What the store keeps (microseconds) gives the same key as the time it was given.
        let stored = Utc.timestamp_micros(at.timestamp_micros()).unwrap();
        assert_eq!(crm_ordering_key(stored, id), KEY);
        // Keys sort as their times do, whatever the correlationIds.
        let (low, high) = (Uuid::from_u128(u128::MAX), Uuid::from_u128(0));
        let times = [0, 1, 999_999, 1_000_000, 86_400_000_000]
            .map(|us| Utc.timestamp_micros(at.timestamp_micros() + us).unwrap());
        for pair in times.windows(2) {
            assert!(crm_ordering_key(pair[0], low) < crm_ordering_key(pair[1], high));
        }
    }

    #[test]
    fn acked_writes_sent_initiated_and_audit_together() {
        let p = payload();
        let sha = parameters_sha256(&p.parameter_matrix);
        let batch = recorder(true).acked(&facts(&p, &sha), Utc::now());
        assert!(matches!(
            batch.triggers[0],
            TriggerWrite::Transition {
                state: TriggerState::Sent,
                ..
            }
        ));
        assert_eq!(batch.outbox.len(), 1);
        let row = &batch.outbox[0];
        assert_eq!(row.endpoint, "crm");
        assert_eq!(row.ordering_key, KEY);
        assert!(row.message_id.starts_with("msg_") && row.message_id.len() == 36);
        assert_eq!(body(row)["executionState"], "initiated");
        assert_eq!(body(row)["agentId"], "a1b2c3d4-e5f6-7890-abcd-ef1234567890");
        assert_eq!(batch.audit[0].status, "sent");
        assert_eq!(batch.audit[0].parameters, None);
        assert_eq!(batch.audit[0].queue_wait_ms, Some(3.0));
    }

    #[test]
    fn no_crm_url_no_outbox_rows() {
        let p = payload();
        let sha = parameters_sha256(&p.parameter_matrix);
        let batch = recorder(false).acked(&facts(&p, &sha), Utc::now());
        assert!(batch.outbox.is_empty());
        assert_eq!(batch.audit.len(), 1);
    }

    #[test]
    fn a_refusal_reports_initiated_then_failed() {
        let p = payload();
        let sha = parameters_sha256(&p.parameter_matrix);
        let refusal = Refusal {
            code: "rate_limited".into(),
            message: "429 after 2 retries".into(),
        };
        let batch = recorder(true).rejected(&facts(&p, &sha), &refusal, Utc::now());
        let states: Vec<Value> = batch
            .outbox
            .iter()
            .map(|m| body(m)["executionState"].clone())
            .collect();
        assert_eq!(states, [json!("initiated"), json!("failed")]);
        assert_eq!(body(&batch.outbox[1])["error"]["code"], "rate_limited");
        assert_eq!(batch.audit[0].outcome, "failure");
    }

    #[test]
    fn a_failed_result_carries_its_error() {
        let p = payload();
        let sha = parameters_sha256(&p.parameter_matrix);
        let result = ResultPayload {
            correlation_id: p.correlation_id,
            action_type: p.action_type.clone(),
            state: ResultState::Failed,
            output: None,
            error: Some(ResultError {
                code: "timeout".into(),
                message: "took too long".into(),
            }),
            engine_latency_ms: 5,
        };
        let batch = recorder(true).finished(&facts(&p, &sha), &result, Utc::now());
        assert_eq!(body(&batch.outbox[0])["executionState"], "failed");
        assert_eq!(body(&batch.outbox[0])["error"]["code"], "timeout");
        assert_eq!(batch.audit[0].status, "failed");
        assert!(matches!(
            batch.triggers[0],
            TriggerWrite::Transition {
                state: TriggerState::Failed,
                ..
            }
        ));
        let TriggerWrite::Transition { error: Some(e), .. } = &batch.triggers[0] else {
            panic!("no stored error");
        };
        assert_eq!(e.get(), r#"{"code":"timeout","message":"took too long"}"#);
    }
}
