//! The decisions of a trigger's life in one place, pure: from where the trigger stands
//! ([`LifeState`]) and what just happened ([`LifeEvent`]) to what its task does next
//! ([`Step`]). The task (`life.rs`) only carries the steps out.
//!
//! - The first `ack` is written (`Sent` + CRM `initiated` + audit), unless a `result`
//!   is already waiting behind it: then it is only noted, and the result's batch writes
//!   it. A later `ack` (of a re-send) changes nothing.
//! - A `result` is written, after the `Sent` step in the same batch when that is not
//!   stored yet; it ends the trigger ([`ended`] says how).
//! - 429 and 5xx: the engine did not take it. The trigger gives its slot back, waits
//!   (`retryAfterMs`, else the back-off) and sends again, spending one of the payload's
//!   `maxRetries`; once they are spent it is `Rejected`. A 429 while the engine may still
//!   be running a previous process's actions (`orphans_possible`, see `resume.rs`)
//!   spends none: the limit it hit may be held by those.
//! - 403: `Rejected`, naming the scopes the OAuth client lacks. Any other code:
//!   `Rejected`, with the engine's details.
//! - The connection of the last send is lost: before the `ack`, the trigger is sent
//!   again on one of its retries (`Rejected` once they are spent); after it, again for
//!   free (the engine deduplicates). The loss of an earlier connection concerns an
//!   earlier send: nothing to do.
//! - No answer within `result_timeout` of a send: sent again, for free (a duplicate send
//!   is safe).
//! - No slot within `slot_timeout`: `Rejected`.
//!
//! The refusal texts are what `gcx trigger` prints, `GET /v1/triggers/{id}` returns and
//! the audit log keeps.

use std::time::Duration;

use gcx_protocol::assist::{ErrorPayload, ResultPayload, ResultState};

use crate::store::TriggerState;

/// Where a trigger's `ack` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckState {
    /// Not acknowledged yet.
    Awaited,
    /// Acknowledged; its `Sent` step goes into the batch of the result waiting behind it.
    Noted,
    /// Acknowledged and written (by this task, or stored `sent` by an earlier process).
    Stored,
}

/// Where a trigger stands, as far as its next step depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LifeState {
    pub(super) ack: AckState,
    /// The epoch of the connection the last send went out on; `None` before the first.
    pub(super) sent_on: Option<u64>,
    /// Re-sends spent from the payload's `maxRetries`...
    pub(super) retries: u32,
    /// ...and that budget.
    pub(super) max_retries: u32,
    /// Whether the engine may still be running actions of the previous gcx process that
    /// this one has not re-sent yet.
    pub(super) orphans_possible: bool,
}

impl LifeState {
    fn retries_left(&self) -> bool {
        self.retries < self.max_retries
    }
}

/// What happened to a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LifeEvent<'a> {
    /// The engine acknowledged a send; `result_waiting`: its result has already arrived
    /// too (a fast action).
    Ack { result_waiting: bool },
    /// The engine's result.
    Result,
    /// The engine refused a send.
    Refused {
        code: u16,
        message: &'a str,
        payload: &'a ErrorPayload,
    },
    /// The connection of that epoch is gone.
    Lost { epoch: u64 },
    /// No answer within `result_timeout` of the last send.
    NoAnswer,
    /// No slot within `slot_timeout` (`waited`), under the limit `limit`.
    NoSlot { waited: Duration, limit: u32 },
}

/// What the trigger's task does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing: wait for the next event.
    Wait,
    /// Note the ack and write the `Sent` step (`Sent` + CRM `initiated` + audit); then
    /// wait for the result.
    CommitAck,
    /// Note the ack without writing it: the result waiting behind it comes next, and its
    /// batch writes the `Sent` step.
    NoteAck,
    /// Write the result (after the `Sent` step, in the same batch, when `with_ack`); the
    /// trigger is done.
    Finish { with_ack: bool },
    /// Count a retry (on the trigger's `maxRetries` when `on_budget`), give the slot back,
    /// wait `retry_after` (the engine's `retryAfterMs`, else the back-off), queue first
    /// for a slot and send again.
    BackOff {
        on_budget: bool,
        retry_after: Option<Duration>,
    },
    /// Send again now, keeping the slot; a retry on the trigger's `maxRetries` when
    /// `counted`.
    Resend { counted: bool },
    /// Refused for good: `Rejected` with this code and text.
    Reject { code: &'static str, text: String },
}

/// The step that `event` calls for in `state`.
pub(super) fn next(state: &LifeState, event: &LifeEvent<'_>) -> Step {
    match *event {
        LifeEvent::Ack { result_waiting } => match state.ack {
            AckState::Awaited if result_waiting => Step::NoteAck,
            AckState::Awaited => Step::CommitAck,
            AckState::Noted | AckState::Stored => Step::Wait,
        },
        LifeEvent::Result => Step::Finish {
            with_ack: state.ack != AckState::Stored,
        },
        LifeEvent::Refused {
            code,
            message,
            payload,
        } => refused(state, code, message, payload),
        LifeEvent::Lost { epoch } => lost(state, epoch),
        LifeEvent::NoAnswer => Step::Resend { counted: false },
        LifeEvent::NoSlot { waited, limit } => Step::Reject {
            code: "slot_timeout",
            text: format!(
                "concurrency slot timeout: no slot free within {waited:?} (limit {limit}, dispatch.slot_timeout)"
            ),
        },
    }
}

/// A refusal: retried (429, 5xx) while retries are left, else final.
fn refused(state: &LifeState, code: u16, message: &str, payload: &ErrorPayload) -> Step {
    match code {
        429 | 500..=599 => {
            // The 429 may be for capacity held by a previous process's actions: retried,
            // but not on the trigger's budget.
            let on_budget = code != 429 || !state.orphans_possible;
            if on_budget && !state.retries_left() {
                return Step::Reject {
                    code: if code == 429 {
                        "rate_limited"
                    } else {
                        "unavailable"
                    },
                    text: format!(
                        "the engine refused it with {code} ({message}) and its maxRetries ({}) are spent",
                        state.max_retries
                    ),
                };
            }
            Step::BackOff {
                on_budget,
                retry_after: payload.retry_after_ms.map(Duration::from_millis),
            }
        }
        403 => {
            let scopes = payload
                .missing_scopes
                .as_deref()
                .unwrap_or_default()
                .join(", ");
            Step::Reject {
                code: "forbidden",
                text: format!(
                    "the engine refused it (403 {message}); the OAuth client lacks the scope(s) {scopes}"
                ),
            }
        }
        _ => {
            let details = payload
                .details
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let text = if details.is_empty() {
                format!("the engine rejected it ({code} {message})")
            } else {
                format!("the engine rejected it ({code} {message}): {details}")
            };
            Step::Reject {
                code: "rejected",
                text,
            }
        }
    }
}

/// A lost connection: the last send's, before or after its ack, or an earlier one's.
fn lost(state: &LifeState, epoch: u64) -> Step {
    if state.sent_on != Some(epoch) {
        return Step::Wait;
    }
    match state.ack {
        AckState::Awaited if !state.retries_left() => Step::Reject {
            code: "connection_lost",
            text: format!(
                "the connection was lost before the engine acknowledged it and its maxRetries ({}) are spent",
                state.max_retries
            ),
        },
        AckState::Awaited => Step::Resend { counted: true },
        AckState::Noted | AckState::Stored => Step::Resend { counted: false },
    }
}

/// How a trigger ends with `result`: its final state, and why when it failed.
pub(super) fn ended(result: &ResultPayload) -> (TriggerState, Option<String>) {
    match result.state {
        ResultState::Completed => (TriggerState::Completed, None),
        ResultState::Failed => (
            TriggerState::Failed,
            Some(result.error.as_ref().map_or_else(
                || "the engine reported failure".to_owned(),
                |e| format!("{}: {}", e.code, e.message),
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use gcx_protocol::assist::ResultError;
    use gcx_protocol::{Violation, ViolationCode};

    use super::*;

    /// Sent on connection 3, not acked, one of two retries spent, no orphans.
    fn state() -> LifeState {
        LifeState {
            ack: AckState::Awaited,
            sent_on: Some(3),
            retries: 1,
            max_retries: 2,
            orphans_possible: false,
        }
    }

    fn spent() -> LifeState {
        LifeState {
            retries: 2,
            ..state()
        }
    }

    fn acked(ack: AckState) -> LifeState {
        LifeState { ack, ..state() }
    }

    fn refusal(code: u16, payload: &ErrorPayload) -> LifeEvent<'_> {
        LifeEvent::Refused {
            code,
            message: "busy",
            payload,
        }
    }

    fn back_off(on_budget: bool, retry_after: Option<Duration>) -> Step {
        Step::BackOff {
            on_budget,
            retry_after,
        }
    }

    fn reject(code: &'static str, text: &str) -> Step {
        Step::Reject {
            code,
            text: text.to_owned(),
        }
    }

    #[test]
    fn the_first_ack_is_written_unless_a_result_waits_behind_it() {
        for (ack, result_waiting, want) in [
            (AckState::Awaited, false, Step::CommitAck),
            (AckState::Awaited, true, Step::NoteAck),
            (AckState::Noted, false, Step::Wait),
            (AckState::Stored, false, Step::Wait),
            (AckState::Stored, true, Step::Wait),
        ] {
            assert_eq!(
                next(&acked(ack), &LifeEvent::Ack { result_waiting }),
                want,
                "{ack:?}, result waiting {result_waiting}"
            );
        }
    }

    #[test]
    fn a_result_carries_the_sent_step_unless_it_is_stored() {
        for (ack, with_ack) in [
            (AckState::Awaited, true),
            (AckState::Noted, true),
            (AckState::Stored, false),
        ] {
            assert_eq!(
                next(&acked(ack), &LifeEvent::Result),
                Step::Finish { with_ack },
                "{ack:?}"
            );
        }
    }

    #[test]
    fn a_429_or_5xx_backs_off_on_the_budget_while_retries_are_left() {
        let asked = ErrorPayload {
            retry_after_ms: Some(250),
            ..ErrorPayload::default()
        };
        let silent = ErrorPayload::default();
        for code in [429, 500, 503, 599] {
            assert_eq!(
                next(&state(), &refusal(code, &asked)),
                back_off(true, Some(Duration::from_millis(250))),
                "{code}"
            );
            assert_eq!(
                next(&state(), &refusal(code, &silent)),
                back_off(true, None),
                "{code}"
            );
            // Acked or not: the engine did not take this send.
            assert_eq!(
                next(&acked(AckState::Stored), &refusal(code, &silent)),
                back_off(true, None),
                "{code}"
            );
        }
    }

    #[test]
    fn a_429_or_5xx_with_the_retries_spent_is_final() {
        let p = ErrorPayload::default();
        assert_eq!(
            next(&spent(), &refusal(429, &p)),
            reject(
                "rate_limited",
                "the engine refused it with 429 (busy) and its maxRetries (2) are spent"
            )
        );
        for code in [500, 503] {
            assert_eq!(
                next(&spent(), &refusal(code, &p)),
                reject(
                    "unavailable",
                    &format!(
                        "the engine refused it with {code} (busy) and its maxRetries (2) are spent"
                    )
                )
            );
        }
        let none = LifeState {
            retries: 0,
            max_retries: 0,
            ..state()
        };
        assert!(matches!(
            next(&none, &refusal(503, &p)),
            Step::Reject {
                code: "unavailable",
                ..
            }
        ));
    }

    #[test]
    fn a_429_while_orphans_may_run_is_off_the_budget() {
        let p = ErrorPayload::default();
        let orphans = LifeState {
            orphans_possible: true,
            ..spent()
        };
        assert_eq!(next(&orphans, &refusal(429, &p)), back_off(false, None));
        // A 5xx is not about capacity: it spends the budget whatever the orphans.
        assert!(matches!(
            next(&orphans, &refusal(503, &p)),
            Step::Reject {
                code: "unavailable",
                ..
            }
        ));
        let left = LifeState {
            orphans_possible: true,
            ..state()
        };
        assert_eq!(next(&left, &refusal(429, &p)), back_off(false, None));
        assert_eq!(next(&left, &refusal(503, &p)), back_off(true, None));
    }

    #[test]
    fn a_403_names_the_missing_scopes() {
        let p = ErrorPayload {
            missing_scopes: Some(vec!["assist:trigger".into(), "assist:read".into()]),
            ..ErrorPayload::default()
        };
        let want = reject(
            "forbidden",
            "the engine refused it (403 busy); the OAuth client lacks the scope(s) assist:trigger, assist:read",
        );
        // Retries left or not, acked or not: final.
        assert_eq!(next(&state(), &refusal(403, &p)), want);
        assert_eq!(next(&spent(), &refusal(403, &p)), want);
        assert_eq!(
            next(&state(), &refusal(403, &ErrorPayload::default())),
            reject(
                "forbidden",
                "the engine refused it (403 busy); the OAuth client lacks the scope(s) "
            )
        );
    }

    #[test]
    fn other_codes_are_final_with_the_engines_details() {
        let violation = |path: &str, code, message: &str| Violation {
            path: path.into(),
            code,
            message: message.into(),
        };
        let p = ErrorPayload {
            details: Some(vec![
                violation("/parameterMatrix/query", ViolationCode::Required, "missing"),
                violation("", ViolationCode::Size, "too big"),
            ]),
            ..ErrorPayload::default()
        };
        assert_eq!(
            next(&state(), &refusal(400, &p)),
            reject(
                "rejected",
                "the engine rejected it (400 busy): /parameterMatrix/query: missing (required); (whole message): too big (size)"
            )
        );
        // Retries left or not, acked or not: final.
        assert_eq!(
            next(&acked(AckState::Stored), &refusal(400, &p)),
            next(&spent(), &refusal(400, &p))
        );
        for code in [400, 401, 404, 409, 413, 422, 499, 600] {
            assert_eq!(
                next(&state(), &refusal(code, &ErrorPayload::default())),
                reject("rejected", &format!("the engine rejected it ({code} busy)")),
                "{code}"
            );
        }
        let empty = ErrorPayload {
            details: Some(Vec::new()),
            ..ErrorPayload::default()
        };
        assert_eq!(
            next(&state(), &refusal(400, &empty)),
            reject("rejected", "the engine rejected it (400 busy)")
        );
    }

    #[test]
    fn losing_the_last_sends_connection_before_the_ack_costs_a_retry() {
        assert_eq!(
            next(&state(), &LifeEvent::Lost { epoch: 3 }),
            Step::Resend { counted: true }
        );
        assert_eq!(
            next(&spent(), &LifeEvent::Lost { epoch: 3 }),
            reject(
                "connection_lost",
                "the connection was lost before the engine acknowledged it and its maxRetries (2) are spent"
            )
        );
    }

    #[test]
    fn losing_it_after_the_ack_resends_for_free() {
        for ack in [AckState::Noted, AckState::Stored] {
            let s = LifeState { ack, ..spent() };
            assert_eq!(
                next(&s, &LifeEvent::Lost { epoch: 3 }),
                Step::Resend { counted: false },
                "{ack:?}"
            );
        }
    }

    #[test]
    fn losing_another_connection_changes_nothing() {
        for s in [state(), spent(), acked(AckState::Stored)] {
            assert_eq!(next(&s, &LifeEvent::Lost { epoch: 2 }), Step::Wait);
            assert_eq!(next(&s, &LifeEvent::Lost { epoch: 4 }), Step::Wait);
        }
        let unsent = LifeState {
            sent_on: None,
            ..state()
        };
        assert_eq!(next(&unsent, &LifeEvent::Lost { epoch: 3 }), Step::Wait);
    }

    #[test]
    fn no_answer_in_time_resends_for_free() {
        for s in [state(), spent(), acked(AckState::Stored)] {
            assert_eq!(
                next(&s, &LifeEvent::NoAnswer),
                Step::Resend { counted: false }
            );
        }
    }

    #[test]
    fn no_slot_in_time_is_final() {
        let event = LifeEvent::NoSlot {
            waited: Duration::from_secs(30),
            limit: 50,
        };
        assert_eq!(
            next(&state(), &event),
            reject(
                "slot_timeout",
                "concurrency slot timeout: no slot free within 30s (limit 50, dispatch.slot_timeout)"
            )
        );
    }

    #[test]
    fn a_result_ends_the_trigger_in_its_state() {
        let result = |state, error| ResultPayload {
            correlation_id: uuid::Uuid::nil(),
            action_type: "knowledge_search".into(),
            state,
            output: None,
            error,
            engine_latency_ms: 20,
        };
        assert_eq!(
            ended(&result(ResultState::Completed, None)),
            (TriggerState::Completed, None)
        );
        assert_eq!(
            ended(&result(ResultState::Failed, None)),
            (
                TriggerState::Failed,
                Some("the engine reported failure".into())
            )
        );
        let error = ResultError {
            code: "ACTION_TIMEOUT".into(),
            message: "no answer in 30 s".into(),
        };
        assert_eq!(
            ended(&result(ResultState::Failed, Some(error))),
            (
                TriggerState::Failed,
                Some("ACTION_TIMEOUT: no answer in 30 s".into())
            )
        );
    }
}
