//! The account at the end of a run of `gcx serve` against the sandbox (the soak, and the
//! kill -9 tests): every acknowledged trigger stored and ended exactly once as the engine
//! ended it, every webhook delivered once and in order or pending with a reason, no dead
//! letter. It compares three independent views: the store, the sandbox engine's counters
//! and the sandbox CRM receiver's counters (`/sandbox/stats`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::store::{OutboxMessage, OutboxStatus, Store, StoreError, TriggerState};

/// At most this many ids or rows are named in a check's detail (the count says the rest).
const NAMED: usize = 10;
/// Store lookups in flight at once while the acknowledged triggers are read back.
const LOOKUPS_IN_FLIGHT: usize = 16;
/// The endpoint name of CRM rows in the outbox.
const CRM: &str = "crm";

/// The sandbox's counters the account compares with the store (from `/sandbox/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SandboxCounts {
    /// Distinct correlationIds the engine executed (a re-send it recognised is not one).
    pub executed_unique: u64,
    pub results_completed: u64,
    pub results_failed: u64,
    /// Distinct CRM messages (by `webhook-id`) answered 2xx, by `executionState`.
    pub crm_initiated: u64,
    pub crm_completed: u64,
    pub crm_failed: u64,
    /// A trigger's state delivered after a later one of the same trigger.
    pub crm_order_violations: u64,
    pub crm_bad_signatures: u64,
}

impl SandboxCounts {
    /// Reads the counters from `/sandbox/stats`' JSON (a missing counter reads as 0).
    pub fn from_stats(stats: &Value) -> SandboxCounts {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let (assist, crm) = (&stats["assist"], &stats["crm"]);
        SandboxCounts {
            executed_unique: n(&assist["executed_unique"]),
            results_completed: n(&assist["results_completed"]),
            results_failed: n(&assist["results_failed"]),
            crm_initiated: n(&crm["by_state"]["initiated"]),
            crm_completed: n(&crm["by_state"]["completed"]),
            crm_failed: n(&crm["by_state"]["failed"]),
            crm_order_violations: n(&crm["order_violations"]),
            crm_bad_signatures: n(&crm["bad_signatures"]),
        }
    }
}

/// How the acknowledged triggers stand in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub completed: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Acknowledged but in no final state (id, state).
    pub unfinished: Vec<(Uuid, TriggerState)>,
    /// Acknowledged (a 202 said so) but not stored at all.
    pub missing: Vec<Uuid>,
}

/// A webhook still pending at the end, and why it may be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingWebhook {
    pub message_id: String,
    pub correlation_id: String,
    pub execution_state: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// Why it is not delivered yet; `None` when nothing explains it (a stuck row).
    pub reason: Option<String>,
}

/// A dead letter at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadWebhook {
    pub message_id: String,
    pub correlation_id: String,
    pub execution_state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// One line of the account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// The figures compared, or what broke it.
    pub detail: String,
}

/// The whole account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    /// Triggers a 202 acknowledged.
    pub acknowledged: u64,
    pub ended: Ended,
    pub sandbox: SandboxCounts,
    pub pending: Vec<PendingWebhook>,
    pub dead: Vec<DeadWebhook>,
    pub checks: Vec<Check>,
}

impl Account {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            writeln!(f, "{mark} {}: {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

/// Takes the account of the triggers in `acknowledged`, from `store` (opened read-only
/// after the service stopped) and the sandbox's `/sandbox/stats` JSON. A pending webhook
/// due before `due_before` (the service's stop, less the time a due row may wait for the
/// worker) that nothing holds back fails the account.
pub async fn take(
    store: &Store,
    acknowledged: &[Uuid],
    sandbox_stats: &Value,
    due_before: DateTime<Utc>,
) -> Result<Account, StoreError> {
    let ended = read_back(store, acknowledged).await?;
    let sandbox = SandboxCounts::from_stats(sandbox_stats);
    let counts = store.outbox_counts().await?;
    let pending_rows = store
        .outbox_list(Some(OutboxStatus::Pending), list_limit(counts.pending))
        .await?;
    let dead_rows = store
        .outbox_list(Some(OutboxStatus::Dead), list_limit(counts.dead))
        .await?;
    let pending = explain_pending(&pending_rows, due_before);
    let dead = dead_rows.iter().map(dead_webhook).collect::<Vec<_>>();
    let checks = checks(
        acknowledged.len() as u64,
        &ended,
        &sandbox,
        &pending,
        &dead,
        &undelivered_by_state(pending_rows.iter().chain(&dead_rows)),
    );
    Ok(Account {
        acknowledged: acknowledged.len() as u64,
        ended,
        sandbox,
        pending,
        dead,
        checks,
    })
}

fn list_limit(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

/// Looks every acknowledged trigger up in the store.
async fn read_back(store: &Store, acknowledged: &[Uuid]) -> Result<Ended, StoreError> {
    let mut rows = futures_util::stream::iter(acknowledged.iter().copied())
        .map(|id| async move { store.trigger(id).await.map(|row| (id, row)) })
        .buffered(LOOKUPS_IN_FLIGHT);
    let mut ended = Ended::default();
    while let Some(next) = rows.next().await {
        let (id, row) = next?;
        match row.map(|r| r.state) {
            None => ended.missing.push(id),
            Some(TriggerState::Completed) => ended.completed += 1,
            Some(TriggerState::Failed) => ended.failed += 1,
            Some(TriggerState::Rejected) => ended.rejected += 1,
            Some(other) => ended.unfinished.push((id, other)),
        }
    }
    Ok(ended)
}

fn body_field(body: &Value, name: &str) -> String {
    body[name].as_str().unwrap_or("?").to_owned()
}

/// Each pending row with its reason: its next attempt (or its first, for a row never
/// tried) is due after `due_before`, or it queues behind an older undelivered message of
/// its ordering key. A row due before `due_before` that nothing holds back has no reason:
/// the worker was not getting to it.
fn explain_pending(rows: &[OutboxMessage], due_before: DateTime<Utc>) -> Vec<PendingWebhook> {
    // Rows come oldest first, so the first row seen of a key is its head.
    let mut heads: HashSet<(&str, &str)> = HashSet::new();
    rows.iter()
        .map(|m| {
            let behind = !heads.insert((m.endpoint.as_str(), m.ordering_key.as_str()));
            let due = m.next_attempt_at.to_rfc3339();
            let reason = if behind {
                Some("queued behind an older message of its trigger".to_owned())
            } else if m.next_attempt_at <= due_before {
                None
            } else if m.attempts == 0 {
                Some(format!("not tried yet, first attempt due at {due}"))
            } else {
                let last = match (m.last_status, &m.last_error) {
                    (Some(status), _) => format!("answered {status}"),
                    (None, Some(error)) => error.clone(),
                    (None, None) => "failed".to_owned(),
                };
                Some(format!(
                    "attempt {} {last}; next attempt due at {due}",
                    m.attempts
                ))
            };
            PendingWebhook {
                message_id: m.message_id.clone(),
                correlation_id: body_field(&m.body, "correlationId"),
                execution_state: body_field(&m.body, "executionState"),
                attempts: m.attempts,
                next_attempt_at: m.next_attempt_at,
                reason,
            }
        })
        .collect()
}

fn dead_webhook(m: &OutboxMessage) -> DeadWebhook {
    DeadWebhook {
        message_id: m.message_id.clone(),
        correlation_id: body_field(&m.body, "correlationId"),
        execution_state: body_field(&m.body, "executionState"),
        attempts: m.attempts,
        last_error: m.last_error.clone(),
    }
}

/// Undelivered CRM rows (pending or dead) by `executionState`.
fn undelivered_by_state<'a>(
    rows: impl Iterator<Item = &'a OutboxMessage>,
) -> BTreeMap<String, u64> {
    let mut by_state = BTreeMap::new();
    for m in rows.filter(|m| m.endpoint == CRM) {
        *by_state
            .entry(body_field(&m.body, "executionState"))
            .or_default() += 1;
    }
    by_state
}

fn listed<T: fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let mut text = items
        .take(NAMED)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if total > NAMED {
        text.push_str(&format!(" and {} more", total - NAMED));
    }
    text
}

fn check(name: &'static str, passed: bool, detail: String) -> Check {
    Check {
        name,
        passed,
        detail,
    }
}

fn checks(
    acknowledged: u64,
    ended: &Ended,
    sandbox: &SandboxCounts,
    pending: &[PendingWebhook],
    dead: &[DeadWebhook],
    undelivered: &BTreeMap<String, u64>,
) -> Vec<Check> {
    let stored = acknowledged - ended.missing.len() as u64;
    let (c, f, r) = (ended.completed, ended.failed, ended.rejected);
    let waiting = |state: &str| undelivered.get(state).copied().unwrap_or(0);
    let mut checks = vec![
        check(
            "every acknowledged trigger is stored",
            ended.missing.is_empty(),
            if ended.missing.is_empty() {
                format!("{stored} of {acknowledged}")
            } else {
                format!(
                    "{} missing: {}",
                    ended.missing.len(),
                    listed(ended.missing.iter())
                )
            },
        ),
        check(
            "every stored trigger ended",
            ended.unfinished.is_empty(),
            if ended.unfinished.is_empty() {
                format!("{c} completed, {f} failed, {r} rejected")
            } else {
                format!(
                    "{} unfinished: {}",
                    ended.unfinished.len(),
                    listed(
                        ended
                            .unfinished
                            .iter()
                            .map(|(id, s)| format!("{id} ({})", s.as_str()))
                    )
                )
            },
        ),
    ];
    let engine_ok = sandbox.executed_unique == c + f
        && sandbox.results_completed == c
        && sandbox.results_failed == f;
    checks.push(check(
        "the engine ran each once, as the store ended it",
        engine_ok,
        format!(
            "engine executed {} (completed {}, failed {}); store completed {c}, failed {f}",
            sandbox.executed_unique, sandbox.results_completed, sandbox.results_failed
        ),
    ));
    let initiated = sandbox.crm_initiated + waiting("initiated");
    checks.push(check(
        "the CRM got each trigger's `initiated` once (or it waits)",
        initiated == stored,
        format!(
            "{} delivered + {} undelivered = {initiated}, for {stored} stored triggers",
            sandbox.crm_initiated,
            waiting("initiated")
        ),
    ));
    let completed = sandbox.crm_completed + waiting("completed");
    let failed = sandbox.crm_failed + waiting("failed");
    checks.push(check(
        "the CRM got each trigger's end once (or it waits)",
        completed == c && failed == f + r,
        format!(
            "completed {} delivered + {} undelivered (store {c}); failed {} delivered + {} undelivered (store {f} failed + {r} rejected)",
            sandbox.crm_completed,
            waiting("completed"),
            sandbox.crm_failed,
            waiting("failed")
        ),
    ));
    checks.push(check(
        "webhooks in order, every signature valid",
        sandbox.crm_order_violations == 0 && sandbox.crm_bad_signatures == 0,
        format!(
            "{} order violations, {} bad signatures",
            sandbox.crm_order_violations, sandbox.crm_bad_signatures
        ),
    ));
    let stuck: Vec<&PendingWebhook> = pending.iter().filter(|p| p.reason.is_none()).collect();
    checks.push(check(
        "every pending webhook has a reason",
        stuck.is_empty(),
        if stuck.is_empty() {
            format!("{} pending", pending.len())
        } else {
            format!(
                "{} of {} pending are due and held back by nothing: {}",
                stuck.len(),
                pending.len(),
                listed(stuck.iter().map(|p| format!(
                    "{} ({} of {}, due {})",
                    p.message_id,
                    p.execution_state,
                    p.correlation_id,
                    p.next_attempt_at.to_rfc3339()
                )))
            )
        },
    ));
    checks.push(check(
        "no dead letters",
        dead.is_empty(),
        if dead.is_empty() {
            "0".to_owned()
        } else {
            format!(
                "{}: {}",
                dead.len(),
                listed(dead.iter().map(|d| format!(
                    "{} ({} of {}, {} attempts: {})",
                    d.message_id,
                    d.execution_state,
                    d.correlation_id,
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("no error recorded")
                )))
            )
        },
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: u64, f: u64) -> SandboxCounts {
        SandboxCounts {
            executed_unique: c + f,
            results_completed: c,
            results_failed: f,
            crm_initiated: c + f,
            crm_completed: c,
            crm_failed: f,
            ..SandboxCounts::default()
        }
    }

    fn ended(c: u64, f: u64) -> Ended {
        Ended {
            completed: c,
            failed: f,
            ..Ended::default()
        }
    }

    fn failing(checks: &[Check]) -> Vec<&'static str> {
        checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let checks = checks(10, &ended(8, 2), &counts(8, 2), &[], &[], &BTreeMap::new());
        assert!(failing(&checks).is_empty(), "{checks:?}");
    }

    #[test]
    fn a_double_execution_or_a_lost_trigger_fails() {
        let mut twice = counts(8, 2);
        twice.executed_unique += 1;
        twice.results_completed += 1;
        let c = checks(10, &ended(8, 2), &twice, &[], &[], &BTreeMap::new());
        assert_eq!(
            failing(&c),
            ["the engine ran each once, as the store ended it"]
        );

        let mut lost = ended(7, 2);
        lost.missing.push(Uuid::nil());
        let c = checks(10, &lost, &counts(7, 2), &[], &[], &BTreeMap::new());
        assert!(failing(&c).contains(&"every acknowledged trigger is stored"));
    }

    #[test]
    fn undelivered_webhooks_count_toward_their_state() {
        let mut sandbox = counts(8, 2);
        sandbox.crm_completed -= 3;
        sandbox.crm_initiated -= 1;
        let waiting = BTreeMap::from([("completed".to_owned(), 3), ("initiated".to_owned(), 1)]);
        let c = checks(10, &ended(8, 2), &sandbox, &[], &[], &waiting);
        assert!(failing(&c).is_empty(), "{c:?}");
        let c = checks(10, &ended(8, 2), &sandbox, &[], &[], &BTreeMap::new());
        assert_eq!(failing(&c).len(), 2, "{c:?}");
    }

    fn message(key: &str, attempts: u32, next_in_secs: i64, now: DateTime<Utc>) -> OutboxMessage {
        OutboxMessage {
            id: 0,
            message_id: format!("msg_{key}_{attempts}"),
            endpoint: CRM.into(),
            ordering_key: key.into(),
            body: serde_json::json!({"correlationId": key, "executionState": "completed"}),
            created_at: now,
            attempts,
            next_attempt_at: now + chrono::Duration::seconds(next_in_secs),
            status: OutboxStatus::Pending,
            last_error: None,
            last_status: Some(503),
        }
    }

    #[test]
    fn a_pending_webhook_needs_a_later_attempt_or_an_older_one_ahead() {
        let now = Utc::now();
        let rows = [
            message("a", 2, 300, now),
            message("a", 0, -5, now),
            message("b", 0, -5, now),
            message("c", 3, -5, now),
            message("d", 0, 1, now),
        ];
        let p = explain_pending(&rows, now);
        assert!(p[0].reason.as_deref().unwrap().contains("answered 503"));
        assert!(p[1].reason.as_deref().unwrap().contains("behind"));
        assert_eq!(p[2].reason, None);
        assert_eq!(p[3].reason, None);
        assert!(p[4].reason.as_deref().unwrap().contains("not tried yet"));
        let c = checks(10, &ended(8, 2), &counts(8, 2), &p, &[], &BTreeMap::new());
        assert!(failing(&c).contains(&"every pending webhook has a reason"));
    }

    #[test]
    fn a_dead_letter_fails_and_is_named() {
        let dead = DeadWebhook {
            message_id: "msg_1".into(),
            correlation_id: "c1".into(),
            execution_state: "failed".into(),
            attempts: 8,
            last_error: Some("answered 410".into()),
        };
        let c = checks(
            10,
            &ended(8, 2),
            &counts(8, 2),
            &[],
            &[dead],
            &BTreeMap::new(),
        );
        let line = c.iter().find(|c| c.name == "no dead letters").unwrap();
        assert!(!line.passed && line.detail.contains("msg_1"), "{line:?}");
    }
}
