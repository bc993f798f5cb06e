//! What one commit group changes, worked out in memory before any SQL runs: the trigger
//! state machine applied batch by batch in arrival order (so the result is exactly that
//! of committing the batches one after another), each caller's receipt, and the rows to
//! write in bulk. A batch that breaks a rule (unknown trigger, forbidden transition,
//! non-finite latency) is answered with its error and left out; its neighbours go on.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::committer::{Done, Work};
use serde_json::value::RawValue;

use super::{CommitReceipt, NewOutboxMessage, StoreError, TriggerState, TriggerWrite, WriteBatch};
use crate::audit_chain::AuditEvent;
use crate::audit_chain::hash::truncate_to_micros;

/// The rows one group writes, and the answers known before writing.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    /// Per item: `Some` when already answered (a batch's receipt or a rule violation);
    /// `None` for items the SQL phase answers (outbox updates, replay, ...).
    pub results: Vec<Option<Result<Done, StoreError>>>,
    /// Triggers not stored before this group, with their values after the group.
    pub new_triggers: Vec<NewTrigger<'a>>,
    /// Stored triggers this group changes, with their values after the group.
    pub changed_triggers: Vec<(Uuid, Change<'a>)>,
    /// Outbox rows to insert, in order.
    pub outbox: Vec<&'a NewOutboxMessage>,
    /// Audit events to append, in order (chain order = this order).
    pub audit: Vec<&'a AuditEvent>,
    /// Indexes of the items the SQL phase applies one by one, in arrival order.
    pub updates: Vec<usize>,
}

/// A trigger first stored by this group. Borrows from the writes: nothing is copied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewTrigger<'a> {
    pub correlation_id: Uuid,
    pub action_type: &'a str,
    pub payload: &'a RawValue,
    pub accepted_at: DateTime<Utc>,
    /// Its batch asked for it to join the dispatch queue ([`WriteBatch::queue`]).
    pub queued: bool,
    /// Where the group leaves it.
    pub now: Change<'a>,
}

/// The columns a transition writes (all of them, every time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change<'a> {
    pub state: TriggerState,
    pub attempts: u32,
    pub updated_at: DateTime<Utc>,
    pub output: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
}

/// One `Work::Delivered`: item `index` marks outbox row `id` delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeliveredRow {
    pub index: usize,
    pub id: i64,
    pub attempts: u32,
    pub status: u16,
}

/// One step of a group's SQL phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpdateStep {
    /// A run of consecutive `Delivered` items: one statement for all of them.
    Delivered(Vec<DeliveredRow>),
    /// Any other item, applied on its own.
    One(usize),
}

/// The plan's updates in arrival order, each run of consecutive `Delivered` items gathered
/// into one step. Only neighbours are gathered, so no update overtakes another.
pub(crate) fn update_steps(items: &[&Work], updates: &[usize]) -> Vec<UpdateStep> {
    let mut steps = Vec::new();
    for &index in updates {
        let Some(Work::Delivered {
            id,
            attempts,
            status,
        }) = items.get(index)
        else {
            steps.push(UpdateStep::One(index));
            continue;
        };
        let row = DeliveredRow {
            index,
            id: *id,
            attempts: *attempts,
            status: *status,
        };
        match steps.last_mut() {
            Some(UpdateStep::Delivered(run)) => run.push(row),
            _ => steps.push(UpdateStep::Delivered(vec![row])),
        }
    }
    steps
}

/// Every correlationId the group's trigger writes touch (to load their stored state).
pub(crate) fn trigger_ids(items: &[&Work]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = items
        .iter()
        .filter_map(|w| match w {
            Work::Batch(b) => Some(b.triggers.iter().map(|t| match t {
                TriggerWrite::Accept { correlation_id, .. }
                | TriggerWrite::Transition { correlation_id, .. } => *correlation_id,
            })),
            _ => None,
        })
        .flatten()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One trigger as the plan sees it: small and `Copy`, so a batch's overlay costs nothing.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    /// `Some` when this group accepted it (then written with INSERT, else UPDATE): its
    /// action type, payload, acceptance time and whether it joins the dispatch queue.
    new: Option<(&'a str, &'a RawValue, DateTime<Utc>, bool)>,
    now: Change<'a>,
    changed: bool,
}

/// Applies the group's items to `stored` (the current states of [`trigger_ids`]).
pub(crate) fn plan<'a>(items: &[&'a Work], stored: Vec<(Uuid, TriggerState)>) -> Plan<'a> {
    plan_under(items, stored, None)
}

/// [`plan`], where `lead` is the cluster's current term: a batch fenced to another term
/// ([`WriteBatch::fence`]) is answered [`StoreError::Fenced`] and left out.
pub(crate) fn plan_under<'a>(
    items: &[&'a Work],
    stored: Vec<(Uuid, TriggerState)>,
    lead: Option<i64>,
) -> Plan<'a> {
    let mut triggers: HashMap<Uuid, Entry<'a>> = stored
        .into_iter()
        .map(|(id, state)| {
            (
                id,
                Entry {
                    new: None,
                    // Only `state` is read; a transition writes every field of `Change`.
                    now: Change {
                        state,
                        attempts: 0,
                        updated_at: DateTime::<Utc>::UNIX_EPOCH,
                        output: None,
                        error: None,
                    },
                    changed: false,
                },
            )
        })
        .collect();
    let mut plan = Plan {
        results: Vec::with_capacity(items.len()),
        ..Plan::default()
    };
    for (index, item) in items.iter().enumerate() {
        match item {
            Work::Batch(batch) => {
                let outcome = match batch.fence {
                    Some(term) if lead != Some(term) => Err(StoreError::Fenced {
                        term,
                        current: lead.unwrap_or(0),
                    }),
                    _ => apply_batch(batch, &mut triggers),
                };
                if outcome.is_ok() {
                    plan.outbox.extend(batch.outbox.iter());
                    plan.audit.extend(batch.audit.iter());
                }
                plan.results.push(Some(outcome.map(Done::Receipt)));
            }
            _ => {
                plan.results.push(None);
                plan.updates.push(index);
            }
        }
    }
    for (correlation_id, entry) in triggers {
        match entry.new {
            Some((action_type, payload, accepted_at, queued)) => {
                plan.new_triggers.push(NewTrigger {
                    correlation_id,
                    action_type,
                    payload,
                    accepted_at,
                    queued,
                    now: entry.now,
                })
            }
            None if entry.changed => plan.changed_triggers.push((correlation_id, entry.now)),
            None => {}
        }
    }
    plan
}

/// Applies one batch to `triggers` all or nothing; returns its receipt.
fn apply_batch<'a>(
    batch: &'a WriteBatch,
    triggers: &mut HashMap<Uuid, Entry<'a>>,
) -> Result<CommitReceipt, StoreError> {
    validate_audit(&batch.audit)?;
    // Changes go to an overlay first so a failing write leaves `triggers` untouched.
    let mut overlay: HashMap<Uuid, Entry<'a>> = HashMap::new();
    let mut receipt = CommitReceipt::default();
    for write in &batch.triggers {
        match write {
            TriggerWrite::Accept {
                correlation_id,
                action_type,
                payload,
                at,
            } => {
                let current = overlay.get(correlation_id).or(triggers.get(correlation_id));
                match current {
                    Some(entry) => receipt.existing.push(Some(entry.now.state)),
                    None => {
                        let at = truncate_to_micros(*at);
                        overlay.insert(
                            *correlation_id,
                            Entry {
                                new: Some((action_type, payload, at, batch.queue)),
                                now: Change {
                                    state: TriggerState::Accepted,
                                    attempts: 0,
                                    updated_at: at,
                                    output: None,
                                    error: None,
                                },
                                changed: true,
                            },
                        );
                        receipt.existing.push(None);
                    }
                }
            }
            TriggerWrite::Transition {
                correlation_id,
                state,
                attempts,
                at,
                output,
                error,
            } => {
                let mut entry = match overlay.get(correlation_id).or(triggers.get(correlation_id)) {
                    Some(entry) => *entry,
                    None => return Err(StoreError::UnknownTrigger(*correlation_id)),
                };
                if !entry.now.state.can_move_to(*state) {
                    return Err(StoreError::InvalidTransition {
                        id: *correlation_id,
                        from: entry.now.state,
                        to: *state,
                    });
                }
                entry.now = Change {
                    state: *state,
                    attempts: *attempts,
                    updated_at: truncate_to_micros(*at),
                    output: output.as_deref(),
                    error: error.as_deref(),
                };
                entry.changed = true;
                overlay.insert(*correlation_id, entry);
            }
        }
    }
    triggers.extend(overlay);
    Ok(receipt)
}

fn validate_audit(events: &[AuditEvent]) -> Result<(), StoreError> {
    for e in events {
        let floats = [
            ("latency_ms", Some(e.latency_ms)),
            ("queue_wait_ms", e.queue_wait_ms),
            ("send_to_ack_ms", e.send_to_ack_ms),
            ("send_to_result_ms", e.send_to_result_ms),
        ];
        for (name, value) in floats {
            if let Some(v) = value.filter(|v| !v.is_finite()) {
                return Err(StoreError::InvalidInput {
                    field: format!("audit event {} {name}", e.correlation_id),
                    detail: format!("{v} is not a finite number of milliseconds"),
                });
            }
        }
    }
    Ok(())
}

/// The current time as stored (microsecond precision).
pub(crate) fn now_micros() -> DateTime<Utc> {
    truncate_to_micros(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accept(id: Uuid) -> TriggerWrite {
        TriggerWrite::Accept {
            correlation_id: id,
            action_type: "a".into(),
            payload: crate::store::json_text(&json!({})),
            at: Utc::now(),
        }
    }

    fn transition(id: Uuid, state: TriggerState) -> TriggerWrite {
        TriggerWrite::Transition {
            correlation_id: id,
            state,
            attempts: 1,
            at: Utc::now(),
            output: None,
            error: None,
        }
    }

    fn batch(triggers: Vec<TriggerWrite>) -> Work {
        Work::Batch(WriteBatch {
            triggers,
            ..WriteBatch::default()
        })
    }

    fn receipt(r: &Option<Result<Done, StoreError>>) -> Result<Vec<Option<TriggerState>>, String> {
        match r {
            Some(Ok(Done::Receipt(r))) => Ok(r.existing.clone()),
            Some(Err(e)) => Err(e.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn consecutive_deliveries_are_gathered_and_nothing_overtakes() {
        let delivered = |id| Work::Delivered {
            id,
            attempts: 1,
            status: 200,
        };
        let work = [
            delivered(1),
            delivered(2),
            Work::Checkpoint,
            batch(Vec::new()),
            delivered(3),
        ];
        let items: Vec<&Work> = work.iter().collect();
        let plan = plan(&items, Vec::new());
        let row = |index, id| DeliveredRow {
            index,
            id,
            attempts: 1,
            status: 200,
        };
        assert_eq!(plan.updates, vec![0, 1, 2, 4]);
        assert_eq!(
            update_steps(&items, &plan.updates),
            vec![
                UpdateStep::Delivered(vec![row(0, 1), row(1, 2)]),
                UpdateStep::One(2),
                UpdateStep::Delivered(vec![row(4, 3)]),
            ]
        );
    }

    #[test]
    fn batches_apply_in_order_within_a_group() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let items = [
            batch(vec![accept(a)]),
            batch(vec![accept(a), transition(a, TriggerState::Sent)]),
            batch(vec![transition(b, TriggerState::Sent)]),
            batch(vec![transition(a, TriggerState::Completed)]),
            batch(vec![transition(a, TriggerState::Failed)]),
        ];
        let refs: Vec<&Work> = items.iter().collect();
        let plan = plan(&refs, vec![]);
        assert_eq!(receipt(&plan.results[0]), Ok(vec![None]));
        assert_eq!(
            receipt(&plan.results[1]),
            Ok(vec![Some(TriggerState::Accepted)])
        );
        assert!(
            receipt(&plan.results[2])
                .unwrap_err()
                .contains("not stored")
        );
        assert_eq!(receipt(&plan.results[3]), Ok(vec![]));
        assert!(
            receipt(&plan.results[4])
                .unwrap_err()
                .contains("cannot move")
        );
        assert_eq!(plan.new_triggers.len(), 1);
        assert_eq!(plan.new_triggers[0].now.state, TriggerState::Completed);
        assert!(plan.changed_triggers.is_empty());
    }

    #[test]
    fn a_failing_batch_leaves_no_trace() {
        let a = Uuid::new_v4();
        let items = [
            batch(vec![
                accept(a),
                transition(Uuid::new_v4(), TriggerState::Sent),
            ]),
            batch(vec![accept(a)]),
        ];
        let refs: Vec<&Work> = items.iter().collect();
        let plan = plan(&refs, vec![]);
        assert!(receipt(&plan.results[0]).is_err());
        assert_eq!(receipt(&plan.results[1]), Ok(vec![None]));
    }

    #[test]
    fn state_machine_table() {
        use TriggerState::*;
        let all = [Accepted, Sent, Completed, Failed, Rejected];
        for from in all {
            for to in all {
                let allowed = match from {
                    Accepted => true,
                    Sent => to != Accepted,
                    _ => false,
                };
                assert_eq!(from.can_move_to(to), allowed, "{from} -> {to}");
            }
        }
    }
}
