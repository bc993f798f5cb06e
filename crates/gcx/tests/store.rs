//! The store against real SQLite files and a real PostgreSQL: the same tests for both
//! backends (see `store_support`), plus bad-input cases per backend.

mod store_support;

use std::collections::HashSet;
use std::io::BufRead;
use std::time::Duration;

use chrono::{Duration as Age, Utc};
use gcx::audit::{self, VerifyOptions};
use gcx::store::{
    CommitReceipt, NewOutboxMessage, OutboxStatus, ReplayFilter, Store, StoreError, TriggerState,
    TriggerWrite, WriteBatch, json_text,
};
use serde_json::json;
use store_support::TestStore;
use uuid::Uuid;

both_backends!(
    accept_transition_and_receipts,
    another_writer_s_transitions_are_seen,
    many_concurrent_callers_share_transactions,
    a_bad_batch_does_not_fail_its_neighbours,
    outbox_rows_commit_with_their_trigger_or_not_at_all,
    due_outbox_keeps_per_key_order,
    concurrent_deliveries_share_statements_and_answer_each,
    dead_letters_cascade_and_replay_in_order,
    an_outbox_message_is_found_by_its_webhook_id,
    endpoints_disable_and_enable,
    unfinished_triggers_are_reloaded_sent_first_then_oldest_first,
    everything_survives_a_reopen,
    a_kill_9_loses_nothing_reported_durable,
    read_only_handles_refuse_writes,
    prune_deletes_only_what_ended_before_the_cutoff,
);

fn accept(id: Uuid) -> TriggerWrite {
    TriggerWrite::Accept {
        correlation_id: id,
        action_type: "knowledge_search".into(),
        payload: json_text(&json!({"correlationId": id, "parameterMatrix": {"q": "x"}})),
        at: Utc::now(),
    }
}

fn transition(id: Uuid, state: TriggerState, attempts: u32) -> TriggerWrite {
    TriggerWrite::Transition {
        correlation_id: id,
        state,
        attempts,
        at: Utc::now(),
        output: (state == TriggerState::Completed).then(|| json_text(&json!({"answer": 42}))),
        error: (state == TriggerState::Failed).then(|| json_text(&json!({"code": "boom"}))),
    }
}

fn message(key: &str, n: u32) -> NewOutboxMessage {
    NewOutboxMessage {
        message_id: format!("msg_{}", Uuid::new_v4().simple()),
        endpoint: "crm".into(),
        ordering_key: key.into(),
        body: json_text(&json!({"correlationId": key, "n": n, "z": 1, "a": 2})),
    }
}

/// `err` refuses a transition out of `from`.
fn assert_refused_from(err: &StoreError, from: TriggerState) {
    assert!(
        matches!(err, StoreError::InvalidTransition { from: f, .. } if *f == from),
        "{err}"
    );
}

async fn commit(store: &Store, batch: WriteBatch) -> CommitReceipt {
    store.commit(batch).await.unwrap()
}

async fn accept_transition_and_receipts(t: TestStore) {
    let store = t.open().await;
    let id = Uuid::new_v4();
    let batch = |w| WriteBatch {
        triggers: vec![w],
        ..WriteBatch::default()
    };
    assert_eq!(commit(&store, batch(accept(id))).await.existing, vec![None]);
    assert_eq!(
        commit(&store, batch(accept(id))).await.existing,
        vec![Some(TriggerState::Accepted)]
    );
    commit(&store, batch(transition(id, TriggerState::Sent, 1))).await;
    commit(&store, batch(transition(id, TriggerState::Completed, 1))).await;
    let row = store.trigger(id).await.unwrap().unwrap();
    assert_eq!(row.state, TriggerState::Completed);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.output, Some(json!({"answer": 42})));
    assert_eq!(row.payload["parameterMatrix"], json!({"q": "x"}));
    assert!(row.updated_at >= row.accepted_at);
    assert_eq!(
        commit(&store, batch(accept(id))).await.existing,
        vec![Some(TriggerState::Completed)]
    );
    // A finished trigger never moves again; an unknown one cannot move at all.
    let err = store
        .commit(batch(transition(id, TriggerState::Sent, 2)))
        .await
        .unwrap_err();
    assert_refused_from(&err, TriggerState::Completed);
    let unknown = Uuid::new_v4();
    let err = store
        .commit(batch(transition(unknown, TriggerState::Sent, 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownTrigger(u) if u == unknown),
        "{err}"
    );
    assert!(store.trigger(unknown).await.unwrap().is_none());
    // Several writes of one trigger in one batch apply in order.
    let id2 = Uuid::new_v4();
    let receipt = commit(
        &store,
        WriteBatch {
            triggers: vec![
                accept(id2),
                accept(id2),
                transition(id2, TriggerState::Rejected, 0),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(receipt.existing, vec![None, Some(TriggerState::Accepted)]);
    assert_eq!(
        store.trigger(id2).await.unwrap().unwrap().state,
        TriggerState::Rejected
    );
    store.close().await.unwrap();
    assert!(matches!(
        store.commit(batch(accept(Uuid::new_v4()))).await,
        Err(StoreError::Closed)
    ));
}

/// A second store on the same file or schema (another process) moves a trigger that
/// the first has just written: the first must see that, not what it wrote last.
async fn another_writer_s_transitions_are_seen(t: TestStore) {
    let a = t.open().await;
    let b = t.open().await;
    let batch = |w| WriteBatch {
        triggers: vec![w],
        ..WriteBatch::default()
    };
    let id = Uuid::new_v4();
    commit(&a, batch(accept(id))).await;
    commit(&a, batch(transition(id, TriggerState::Sent, 1))).await;
    commit(&b, batch(transition(id, TriggerState::Completed, 1))).await;
    let err = a
        .commit(batch(transition(id, TriggerState::Failed, 1)))
        .await
        .unwrap_err();
    assert_refused_from(&err, TriggerState::Completed);
    assert_eq!(
        commit(&a, batch(accept(id))).await.existing,
        vec![Some(TriggerState::Completed)]
    );
    b.close().await.unwrap();
    a.close().await.unwrap();
}

async fn many_concurrent_callers_share_transactions(t: TestStore) {
    let store = t.open().await;
    let callers = 400;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4();
                let receipt = store
                    .commit(WriteBatch {
                        triggers: vec![accept(id)],
                        outbox: vec![message(&id.to_string(), i)],
                        audit: vec![store_support::event(&id.to_string(), "accepted", 0.0)],
                        ..WriteBatch::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(receipt.existing, vec![None]);
                id
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    let stats = store.commit_stats();
    assert_eq!(stats.writes, callers as u64);
    assert!(
        stats.groups < callers as u64 / 4,
        "{} callers took {} transactions: no grouping",
        callers,
        stats.groups
    );
    let records = store.audit_records(None, 10_000).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=callers as u64).collect::<Vec<_>>());
    let recorded: HashSet<Uuid> = records
        .iter()
        .map(|r| r.event.correlation_id.parse().unwrap())
        .collect();
    assert_eq!(recorded, ids);
    assert_eq!(store.outbox_counts().await.unwrap().pending, callers as u64);
    store.close().await.unwrap();
    let report = verify(&t).await;
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.unsigned_tail, 0, "close() signs the final seq");
}

async fn a_bad_batch_does_not_fail_its_neighbours(t: TestStore) {
    let mut config = t.config.clone();
    // A long interval so the bad batch lands in a group with the others.
    config.group_commit_interval = Duration::from_millis(100);
    let store = Store::open(&config).await.unwrap();
    let taken = message("k", 0);
    commit(
        &store,
        WriteBatch {
            outbox: vec![taken.clone()],
            ..WriteBatch::default()
        },
    )
    .await;
    let bad_id = Uuid::new_v4();
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let store = store.clone();
        let (id, msg) = if i == 20 {
            // Same message id as a stored message: the database refuses the row.
            (bad_id, taken.clone())
        } else {
            let id = Uuid::new_v4();
            (id, message(&id.to_string(), i))
        };
        tasks.push(tokio::spawn(async move {
            let result = store
                .commit(WriteBatch {
                    triggers: vec![accept(id)],
                    outbox: vec![msg],
                    audit: vec![store_support::event(&id.to_string(), "accepted", 0.0)],
                    ..WriteBatch::default()
                })
                .await;
            (id, result)
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (id, result) = task.await.unwrap();
        if id == bad_id {
            let err = result.unwrap_err();
            assert!(matches!(err, StoreError::Constraint { .. }), "{err}");
        } else {
            result.unwrap();
            ok += 1;
        }
    }
    assert_eq!(ok, 39);
    assert!(store.commit_stats().split_groups >= 1);
    // Nothing of the bad batch was written.
    assert!(store.trigger(bad_id).await.unwrap().is_none());
    let records = store.audit_records(None, 1000).await.unwrap();
    assert_eq!(records.len(), 39);
    assert!(
        records
            .iter()
            .all(|r| r.event.correlation_id != bad_id.to_string())
    );
    assert_eq!(store.outbox_counts().await.unwrap().pending, 40);
    store.close().await.unwrap();
    assert!(verify(&t).await.is_intact());
}

async fn outbox_rows_commit_with_their_trigger_or_not_at_all(t: TestStore) {
    let store = t.open().await;
    let id = Uuid::new_v4();
    let key = id.to_string();
    // A forbidden transition sinks the whole batch: no outbox row, no audit record.
    let err = store
        .commit(WriteBatch {
            triggers: vec![
                accept(id),
                transition(id, TriggerState::Completed, 1),
                transition(id, TriggerState::Sent, 2),
            ],
            outbox: vec![message(&key, 1)],
            audit: vec![store_support::event(&key, "completed", 5.0)],
            ..WriteBatch::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
    assert!(store.trigger(id).await.unwrap().is_none());
    assert_eq!(store.outbox_counts().await.unwrap().pending, 0);
    assert!(store.audit_records(None, 10).await.unwrap().is_empty());
    // A sound batch writes all three.
    let sent = message(&key, 1);
    commit(
        &store,
        WriteBatch {
            triggers: vec![accept(id), transition(id, TriggerState::Sent, 1)],
            outbox: vec![sent.clone()],
            audit: vec![store_support::event(&key, "sent", 1.0)],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(
        store.trigger(id).await.unwrap().unwrap().state,
        TriggerState::Sent
    );
    let listed = store.outbox_list(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].message_id, sent.message_id);
    assert_eq!(listed[0].body.to_string(), sent.body.get());
    assert_eq!(
        listed[0].body.to_string(),
        sent.body.to_string(),
        "the body keeps its bytes (key order)"
    );
    assert_eq!(listed[0].status, OutboxStatus::Pending);
    assert_eq!(listed[0].attempts, 0);
    let records = store.audit_records(None, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].event.parameters, None,
        "raw parameters kept only when configured"
    );
    store.close().await.unwrap();
}

async fn due_outbox_keeps_per_key_order(t: TestStore) {
    let store = t.open().await;
    let (a1, a2, b1) = (message("a", 1), message("a", 2), message("b", 1));
    let mut qa = message("a", 3);
    qa.endpoint = "qa".into();
    commit(
        &store,
        WriteBatch {
            outbox: vec![a1.clone(), a2.clone(), b1.clone(), qa.clone()],
            ..WriteBatch::default()
        },
    )
    .await;
    let now = Utc::now();
    let ids = |v: Vec<gcx::store::OutboxMessage>| -> Vec<String> {
        v.into_iter().map(|m| m.message_id).collect()
    };
    let due = store.due_outbox("crm", now, 10).await.unwrap();
    assert!(due[0].id < due[1].id);
    assert_eq!(
        ids(due.clone()),
        vec![a1.message_id.clone(), b1.message_id.clone()]
    );
    assert_eq!(
        ids(store.due_outbox("crm", now, 1).await.unwrap()),
        vec![a1.message_id.clone()]
    );
    assert_eq!(
        ids(store.due_outbox("qa", now, 10).await.unwrap()),
        vec![qa.message_id.clone()]
    );
    let (a1_id, b1_id) = (due[0].id, due[1].id);
    // a1 retries later: a2 still waits behind it; b1 is unaffected.
    let later = now + Age::seconds(30);
    store
        .outbox_retry(a1_id, 1, later, "503 Service Unavailable", Some(503))
        .await
        .unwrap();
    assert_eq!(
        ids(store.due_outbox("crm", now, 10).await.unwrap()),
        vec![b1.message_id.clone()]
    );
    let next = store.next_outbox_due("crm").await.unwrap().unwrap();
    assert!(
        next <= now + Age::milliseconds(1),
        "b1 is due now, got {next}"
    );
    store.outbox_delivered(b1_id, 1, 200).await.unwrap();
    assert!(store.due_outbox("crm", now, 10).await.unwrap().is_empty());
    let next = store.next_outbox_due("crm").await.unwrap().unwrap();
    assert!(
        (next - later).num_milliseconds().abs() <= 1,
        "{next} vs {later}"
    );
    let at_later = store.due_outbox("crm", later, 10).await.unwrap();
    assert_eq!(ids(at_later.clone()), vec![a1.message_id.clone()]);
    assert_eq!(at_later[0].attempts, 1);
    assert_eq!(at_later[0].last_status, Some(503));
    assert_eq!(
        at_later[0].last_error.as_deref(),
        Some("503 Service Unavailable")
    );
    store.outbox_delivered(a1_id, 2, 204).await.unwrap();
    assert_eq!(
        ids(store.due_outbox("crm", now, 10).await.unwrap()),
        vec![a2.message_id.clone()]
    );
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (2, 2, 0));
    assert!(matches!(
        store.outbox_delivered(999_999, 1, 200).await,
        Err(StoreError::UnknownOutboxMessage(999_999))
    ));
    store.close().await.unwrap();
}

/// Outcomes recorded at once share groups, where a run of "delivered" is one statement:
/// each caller still gets its own answer (a missing row an error, a row already delivered
/// left alone), and a key's next row becomes due only after its predecessor.
async fn concurrent_deliveries_share_statements_and_answer_each(t: TestStore) {
    let store = t.open().await;
    let keys: Vec<String> = (0..40).map(|k| format!("key-{k}")).collect();
    let firsts: Vec<_> = keys.iter().map(|k| message(k, 1)).collect();
    let seconds: Vec<_> = keys.iter().map(|k| message(k, 2)).collect();
    commit(
        &store,
        WriteBatch {
            outbox: firsts.into_iter().chain(seconds).collect(),
            ..WriteBatch::default()
        },
    )
    .await;
    let now = Utc::now();
    let due = store.due_outbox("crm", now, 100).await.unwrap();
    assert_eq!(due.len(), keys.len(), "only each key's first row is due");
    let missing = due.iter().map(|m| m.id).max().unwrap() + 1_000_000;
    let mut calls: Vec<(i64, u32)> = due.iter().map(|m| (m.id, 1)).collect();
    calls.push((missing, 1));
    calls.push((due[0].id, 2)); // the same row again, in the same burst
    let answers = futures_util::future::join_all(
        calls
            .iter()
            .map(|&(id, attempts)| store.outbox_delivered(id, attempts, 200)),
    )
    .await;
    for (&(id, _), answer) in calls.iter().zip(&answers) {
        if id == missing {
            assert!(
                matches!(answer, Err(StoreError::UnknownOutboxMessage(m)) if *m == missing),
                "{answer:?}"
            );
        } else {
            assert!(answer.is_ok(), "row {id}: {answer:?}");
        }
    }
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.delivered, counts.dead),
        (keys.len() as u64, keys.len() as u64, 0)
    );
    let next = store.due_outbox("crm", now, 100).await.unwrap();
    assert_eq!(next.len(), keys.len(), "each key's second row is due now");
    assert!(next.iter().all(|m| m.body["n"] == 2), "{next:?}");
    store.close().await.unwrap();
}

async fn an_outbox_message_is_found_by_its_webhook_id(t: TestStore) {
    let store = t.open().await;
    let (a, b) = (message("k", 1), message("j", 1));
    commit(
        &store,
        WriteBatch {
            outbox: vec![a.clone(), b.clone()],
            ..WriteBatch::default()
        },
    )
    .await;
    let found = store.outbox_message(&b.message_id).await.unwrap().unwrap();
    assert_eq!(
        (found.message_id.as_str(), found.ordering_key.as_str()),
        (b.message_id.as_str(), "j")
    );
    assert_eq!(found.status, OutboxStatus::Pending);
    assert_eq!(
        found.body,
        json!({"correlationId": "j", "n": 1, "z": 1, "a": 2})
    );
    store.outbox_delivered(found.id, 1, 204).await.unwrap();
    let delivered = store.outbox_message(&b.message_id).await.unwrap().unwrap();
    assert_eq!(
        (delivered.status, delivered.attempts, delivered.last_status),
        (OutboxStatus::Delivered, 1, Some(204))
    );
    let other = store.outbox_message(&a.message_id).await.unwrap().unwrap();
    assert_eq!(other.status, OutboxStatus::Pending);
    assert!(store.outbox_message("msg_none").await.unwrap().is_none());
    store.close().await.unwrap();
}

async fn dead_letters_cascade_and_replay_in_order(t: TestStore) {
    let store = t.open().await;
    let (m1, m2, m3, other) = (
        message("k", 1),
        message("k", 2),
        message("k", 3),
        message("j", 1),
    );
    commit(
        &store,
        WriteBatch {
            outbox: vec![m1.clone(), m2.clone(), m3.clone(), other.clone()],
            ..WriteBatch::default()
        },
    )
    .await;
    let now = Utc::now();
    let first = store.due_outbox("crm", now, 10).await.unwrap();
    let m1_id = first
        .iter()
        .find(|m| m.message_id == m1.message_id)
        .unwrap()
        .id;
    store
        .outbox_dead(m1_id, 3, "HTTP 400: bad payload", Some(400))
        .await
        .unwrap();
    let dead = store
        .outbox_list(Some(OutboxStatus::Dead), 10)
        .await
        .unwrap();
    let dead_ids: Vec<&str> = dead.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        dead_ids,
        vec![&m1.message_id, &m2.message_id, &m3.message_id]
    );
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 400: bad payload"));
    assert_eq!(dead[0].last_status, Some(400));
    assert_eq!(
        dead[1].last_error.as_deref(),
        Some("predecessor dead-lettered")
    );
    // The other key goes on.
    let due = store.due_outbox("crm", now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].message_id, other.message_id);
    // A new message for the dead key is dead on arrival: it must not overtake m1. One for
    // a fresh key in the same write is not.
    let m4 = message("k", 4);
    let fresh = message("fresh", 1);
    commit(
        &store,
        WriteBatch {
            outbox: vec![m4.clone(), fresh.clone()],
            ..WriteBatch::default()
        },
    )
    .await;
    let due = store.due_outbox("crm", Utc::now(), 10).await.unwrap();
    assert!(due.iter().all(|m| m.ordering_key != "k"));
    assert!(due.iter().any(|m| m.message_id == fresh.message_id));
    assert_eq!(store.outbox_counts().await.unwrap().dead, 4);
    // Replaying m1 brings the whole key back, in order, attempts reset, due now.
    let replayed = store
        .outbox_replay(&ReplayFilter {
            id: Some(m1_id),
            since: None,
        })
        .await
        .unwrap();
    assert_eq!(replayed, 4);
    let due = store.due_outbox("crm", Utc::now(), 10).await.unwrap();
    let keyed: Vec<_> = due.iter().filter(|m| m.ordering_key == "k").collect();
    assert_eq!(keyed.len(), 1);
    assert_eq!(keyed[0].message_id, m1.message_id);
    assert_eq!(keyed[0].attempts, 0);
    // Replay by time: everything dead since an hour ago.
    store
        .outbox_dead(keyed[0].id, 1, "HTTP 422", Some(422))
        .await
        .unwrap();
    assert_eq!(store.outbox_counts().await.unwrap().dead, 4);
    let since = Utc::now() - Age::hours(1);
    assert_eq!(
        store
            .outbox_replay(&ReplayFilter {
                id: None,
                since: Some(since),
            })
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .outbox_replay(&ReplayFilter {
                id: None,
                since: Some(Utc::now() + Age::hours(1)),
            })
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.outbox_counts().await.unwrap().dead, 0);
    store.close().await.unwrap();
}

async fn endpoints_disable_and_enable(t: TestStore) {
    let store = t.open().await;
    let state = store.endpoint_state("crm").await.unwrap();
    assert!(!state.disabled && state.reason.is_none());
    store
        .set_endpoint_disabled("crm", true, Some("HTTP 410 Gone"))
        .await
        .unwrap();
    let state = store.endpoint_state("crm").await.unwrap();
    assert!(state.disabled);
    assert_eq!(state.reason.as_deref(), Some("HTTP 410 Gone"));
    assert!(!store.endpoint_state("qa").await.unwrap().disabled);
    store
        .set_endpoint_disabled("crm", false, None)
        .await
        .unwrap();
    let state = store.endpoint_state("crm").await.unwrap();
    assert!(!state.disabled && state.reason.is_none());
    store.close().await.unwrap();
}

async fn unfinished_triggers_are_reloaded_sent_first_then_oldest_first(t: TestStore) {
    let store = t.open().await;
    let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let base = Utc::now() - Age::minutes(10);
    for (i, id) in ids.iter().enumerate() {
        commit(
            &store,
            WriteBatch {
                triggers: vec![TriggerWrite::Accept {
                    correlation_id: *id,
                    action_type: "a".into(),
                    payload: json_text(&json!({"i": i})),
                    at: base + Age::seconds(i as i64),
                }],
                ..WriteBatch::default()
            },
        )
        .await;
    }
    commit(
        &store,
        WriteBatch {
            triggers: vec![
                transition(ids[0], TriggerState::Sent, 1),
                transition(ids[1], TriggerState::Sent, 1),
                transition(ids[1], TriggerState::Completed, 1),
                transition(ids[3], TriggerState::Rejected, 0),
                transition(ids[4], TriggerState::Sent, 1),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    let unfinished = store.unfinished_triggers().await.unwrap();
    let got: Vec<(Uuid, TriggerState)> = unfinished
        .iter()
        .map(|r| (r.correlation_id, r.state))
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0], TriggerState::Sent),
            (ids[4], TriggerState::Sent),
            (ids[2], TriggerState::Accepted),
            (ids[5], TriggerState::Accepted),
        ]
    );
    assert_eq!(unfinished[2].payload, json!({"i": 2}));
    store.close().await.unwrap();
}

async fn everything_survives_a_reopen(t: TestStore) {
    let store = t.open().await;
    let id = Uuid::new_v4();
    let key = id.to_string();
    commit(
        &store,
        WriteBatch {
            triggers: vec![accept(id), transition(id, TriggerState::Sent, 1)],
            outbox: vec![message(&key, 1)],
            audit: (0..25)
                .map(|_| store_support::event(&key, "sent", 3.5))
                .collect(),
            ..WriteBatch::default()
        },
    )
    .await;
    store
        .set_endpoint_disabled("qa", true, Some("410"))
        .await
        .unwrap();
    let before = store.audit_records(None, 100).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = t.open().await;
    assert_eq!(
        store.trigger(id).await.unwrap().unwrap().state,
        TriggerState::Sent
    );
    assert_eq!(store.outbox_counts().await.unwrap().pending, 1);
    assert!(store.endpoint_state("qa").await.unwrap().disabled);
    assert_eq!(store.audit_records(None, 100).await.unwrap(), before);
    let checkpoints = store.audit_checkpoints().await.unwrap();
    let seqs: Vec<u64> = checkpoints.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![10, 20, 25], "every 10 records and at close");
    // The chain continues where it stopped.
    commit(
        &store,
        WriteBatch {
            audit: vec![store_support::event(&key, "completed", 9.0)],
            ..WriteBatch::default()
        },
    )
    .await;
    let records = store.audit_records(Some(26), 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].prev_hash, before[24].hash);
    store.close().await.unwrap();
    let report = verify(&t).await;
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!((report.last_seq, report.checkpoints_verified), (26, 4));
}

async fn read_only_handles_refuse_writes(t: TestStore) {
    let store = t.open().await;
    commit(
        &store,
        WriteBatch {
            audit: vec![store_support::event("x", "completed", 1.0)],
            ..WriteBatch::default()
        },
    )
    .await;
    let reader = Store::open_read_only(&t.config).await.unwrap();
    assert_eq!(reader.audit_records(None, 10).await.unwrap().len(), 1);
    let err = reader.commit(WriteBatch::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::OpenedReadOnly { .. }), "{err}");
    assert!(err.to_string().contains(reader.location()), "{err}");
    reader.close().await.unwrap();
    store.close().await.unwrap();
}

/// More than one prune chunk of each kind ended before the cutoff.
const OLD: usize = 2_100;

async fn prune_deletes_only_what_ended_before_the_cutoff(t: TestStore) {
    let store = t.open().await;
    let completed: Vec<Uuid> = (0..OLD).map(|_| Uuid::new_v4()).collect();
    let [failed, rejected, sent, accepted] = [(); 4].map(|_| Uuid::new_v4());
    let accepts = completed
        .iter()
        .chain([&failed, &rejected, &sent, &accepted]);
    commit(
        &store,
        WriteBatch {
            triggers: accepts.map(|id| accept(*id)).collect(),
            outbox: (0..OLD as u32 + 2)
                .map(|n| message(&format!("k{n}"), n))
                .collect(),
            audit: vec![
                store_support::event(&failed.to_string(), "accepted", 1.0),
                store_support::event(&failed.to_string(), "failed", 2.0),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    let mut ends: Vec<TriggerWrite> = completed
        .iter()
        .map(|id| transition(*id, TriggerState::Completed, 1))
        .collect();
    ends.push(transition(failed, TriggerState::Failed, 1));
    ends.push(transition(rejected, TriggerState::Rejected, 0));
    ends.push(transition(sent, TriggerState::Sent, 1));
    commit(
        &store,
        WriteBatch {
            triggers: ends,
            ..WriteBatch::default()
        },
    )
    .await;
    // Every webhook but two delivered; of those two, one stays pending and one is dead.
    let due = store.due_outbox("crm", Utc::now(), OLD + 10).await.unwrap();
    assert_eq!(due.len(), OLD + 2);
    let delivered = due[..OLD]
        .iter()
        .map(|m| store.outbox_delivered(m.id, 1, 200));
    for done in futures_util::future::join_all(delivered).await {
        done.unwrap();
    }
    store
        .outbox_dead(due[OLD].id, 1, "HTTP 400", Some(400))
        .await
        .unwrap();
    let records = store.audit_records(None, 100).await.unwrap().len();

    // After the cutoff: a trigger and a webhook that end young.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let young = Uuid::new_v4();
    commit(
        &store,
        WriteBatch {
            triggers: vec![accept(young)],
            outbox: vec![message("young", 0)],
            ..WriteBatch::default()
        },
    )
    .await;
    commit(
        &store,
        WriteBatch {
            triggers: vec![transition(young, TriggerState::Completed, 1)],
            ..WriteBatch::default()
        },
    )
    .await;
    let young_message = store.due_outbox("crm", Utc::now(), 10).await.unwrap();
    let young_message = young_message
        .iter()
        .find(|m| m.ordering_key == "young")
        .unwrap();
    store
        .outbox_delivered(young_message.id, 1, 200)
        .await
        .unwrap();

    let pruned = store.prune(cutoff).await.unwrap();
    assert_eq!(
        (pruned.triggers, pruned.webhooks),
        (OLD as u64 + 2, OLD as u64)
    );
    for id in completed.iter().take(3).chain([&failed, &rejected]) {
        assert!(store.trigger(*id).await.unwrap().is_none(), "{id} kept");
    }
    for (id, state) in [
        (sent, TriggerState::Sent),
        (accepted, TriggerState::Accepted),
        (young, TriggerState::Completed),
    ] {
        let row = store.trigger(id).await.unwrap();
        assert_eq!(row.map(|r| r.state), Some(state), "{id}");
    }
    let unfinished = store.unfinished_triggers().await.unwrap();
    assert_eq!(unfinished.len(), 2);
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (1, 1, 1));
    assert_eq!(
        store.audit_records(None, 100).await.unwrap().len(),
        records,
        "the audit log keeps every record"
    );
    assert_eq!(store.prune(cutoff).await.unwrap(), Default::default());

    // A pruned correlationId is new to the store again.
    let again = commit(
        &store,
        WriteBatch {
            triggers: vec![accept(completed[0])],
            ..WriteBatch::default()
        },
    )
    .await;
    assert_eq!(again.existing, vec![None]);
    store.close().await.unwrap();
    assert!(verify(&t).await.is_intact());
}

async fn verify(t: &TestStore) -> audit::VerifyReport {
    let store = Store::open_read_only(&t.config).await.unwrap();
    let key = audit::keys::read_public_key(&t.config.data_dir.join(audit::keys::PUBLIC_KEY_FILE))
        .unwrap();
    let report = audit::verify(
        &store,
        &VerifyOptions {
            public_keys: vec![key],
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap();
    store.close().await.unwrap();
    report
}

// ---- kill -9 ---------------------------------------------------------------------------

const CHILD_ENV: &str = "GCX_STORE_CRASH_CHILD";

/// Run as a child process by `a_kill_9_loses_nothing_reported_durable`: commits forever
/// from several tasks and prints `durable <id>` after each commit returns. A no-op in a
/// normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (data_dir, url) = spec.split_once('|').unwrap();
    let mut config = gcx::config::StoreConfig {
        data_dir: data_dir.into(),
        group_commit_interval: Duration::from_millis(2),
        audit_checkpoint_every: 50,
        ..Default::default()
    };
    if !url.is_empty() {
        config.database_url = Some(gcx::config::Secret::new(url));
    }
    let store = Store::open(&config).await.unwrap();
    let printer = std::sync::Arc::new(std::sync::Mutex::new(()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let printer = printer.clone();
            tokio::spawn(async move {
                loop {
                    let id = Uuid::new_v4();
                    let key = id.to_string();
                    store
                        .commit(WriteBatch {
                            triggers: vec![accept(id)],
                            outbox: vec![message(&key, 1)],
                            audit: vec![store_support::event(&key, "accepted", 0.0)],
                            ..WriteBatch::default()
                        })
                        .await
                        .unwrap();
                    let _guard = printer.lock().unwrap();
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "durable {id}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    // The parent kills us long before this.
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(tasks);
}

async fn a_kill_9_loses_nothing_reported_durable(t: TestStore) {
    let url = t
        .config
        .database_url
        .as_ref()
        .map(|u| u.expose().to_string())
        .unwrap_or_default();
    let spec = format!("{}|{}", t.config.data_dir.display(), url);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut durable = Vec::new();
        let mut killer = Some(child);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("durable ") {
                durable.push(id.parse::<Uuid>().unwrap());
            }
            if let Some(mut child) = killer.take_if(|_| durable.len() == 400) {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
            }
        }
        if let Some(mut child) = killer {
            let _ = child.kill();
            let _ = child.wait();
        }
        durable
    });
    let durable = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert!(
        durable.len() >= 400,
        "the child reported only {} commits",
        durable.len()
    );

    let store = t.open().await;
    let records = store.audit_records(None, 1_000_000).await.unwrap();
    let audited: HashSet<String> = records
        .iter()
        .map(|r| r.event.correlation_id.clone())
        .collect();
    let outbox: HashSet<String> = store
        .outbox_list(None, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.ordering_key)
        .collect();
    for id in &durable {
        assert!(
            store.trigger(*id).await.unwrap().is_some(),
            "trigger {id} lost"
        );
        assert!(
            audited.contains(&id.to_string()),
            "audit record of {id} lost"
        );
        assert!(outbox.contains(&id.to_string()), "outbox row of {id} lost");
    }
    // Commits in flight at the kill are all or nothing: every stored trigger has its rows.
    assert_eq!(audited.len(), records.len());
    assert_eq!(outbox.len(), records.len());
    store.close().await.unwrap();
    let report = verify(&t).await;
    assert!(report.is_intact(), "{:?}", report.problem);
}

// ---- bad input -------------------------------------------------------------------------

#[tokio::test]
async fn a_text_file_is_refused_and_left_alone() {
    let t = store_support::sqlite().await;
    std::fs::create_dir_all(&t.config.data_dir).unwrap();
    let path = t.config.data_dir.join("gcx.db");
    std::fs::write(&path, "my shopping list\n").unwrap();
    let err = Store::open(&t.config).await.unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("not an SQLite database"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "my shopping list\n"
    );
    assert!(!t.config.data_dir.join("gcx.db-wal").exists());
}

#[tokio::test]
async fn a_foreign_sqlite_database_is_refused_and_left_alone() {
    let t = store_support::sqlite().await;
    std::fs::create_dir_all(&t.config.data_dir).unwrap();
    let path = t.config.data_dir.join("gcx.db");
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY); INSERT INTO invoices VALUES (7);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&t.config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{text}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("invoices"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let t = store_support::sqlite().await;
    t.open().await.close().await.unwrap();
    t.exec("UPDATE gcx_meta SET value = '99' WHERE key = 'schema_version'")
        .await;
    let err = Store::open(&t.config).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                known: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("gcx.db"), "{err}");
}

/// A store written by the first schema (its script run by sqlx's migrator, as gcx 0.1
/// ran it) opens, is upgraded, and keeps its rows and its outbox id high-water mark.
#[tokio::test]
async fn a_version_1_sqlite_store_is_upgraded_with_its_rows() {
    use sqlx::Connection;
    let t = store_support::sqlite().await;
    let scripts = tempfile::tempdir().unwrap();
    std::fs::write(
        scripts.path().join("0001_init.sql"),
        include_str!("../migrations/sqlite/0001_init.sql"),
    )
    .unwrap();
    std::fs::create_dir_all(&t.config.data_dir).unwrap();
    let path = t.config.data_dir.join("gcx.db");
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
    sqlx::migrate::Migrator::new(scripts.path())
        .await
        .unwrap()
        .run_direct(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let id = Uuid::new_v4();
    t.exec(&format!(
        "INSERT INTO triggers VALUES ('{id}', 'a', '{{}}', 'sent', 1, 1, 1, NULL, NULL); \
         INSERT INTO outbox (message_id, endpoint, ordering_key, body, created_at, \
           next_attempt_at, status) VALUES \
           ('msg_1', 'crm', '{id}', '{{}}', 1, 1, 'pending'), \
           ('msg_2', 'crm', '{id}', '{{}}', 1, 1, 'pending'); \
         DELETE FROM outbox WHERE message_id = 'msg_2';"
    ))
    .await;

    let store = t.open().await;
    let row = store
        .trigger(id)
        .await
        .unwrap()
        .expect("the trigger was kept");
    assert_eq!(row.state, TriggerState::Sent);
    commit(
        &store,
        WriteBatch {
            triggers: vec![transition(id, TriggerState::Completed, 1)],
            outbox: vec![message(&id.to_string(), 3)],
            ..WriteBatch::default()
        },
    )
    .await;
    let ids: Vec<i64> = store
        .outbox_list(Some(OutboxStatus::Pending), 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [1, 3], "id 2 is not handed out again");
    store.close().await.unwrap();
    // The rules still hold after the rebuild.
    let refused = t.try_exec("UPDATE triggers SET state = 'lost'").await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("CHECK")),
        "a state outside the five is refused"
    );
    let refused = t.try_exec("UPDATE outbox SET status = 'gone'").await;
    assert!(refused.is_err_and(|e| e.to_string().contains("CHECK")));
}

#[tokio::test]
async fn a_foreign_or_newer_postgres_schema_is_refused() {
    let Some(t) = store_support::postgres().await else {
        return;
    };
    t.exec("CREATE TABLE invoices (id INT PRIMARY KEY)").await;
    let err = Store::open(&t.config).await.unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("invoices"), "{err}");
    t.exec("DROP TABLE invoices").await;
    t.open().await.close().await.unwrap();
    t.exec("UPDATE gcx_meta SET value = '7' WHERE key = 'schema_version'")
        .await;
    let err = Store::open(&t.config).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 7, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn read_only_open_of_a_missing_store_says_so() {
    let t = store_support::sqlite().await;
    let err = Store::open_read_only(&t.config).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("gcx.db"), "{err}");
    assert!(
        !t.config.data_dir.exists(),
        "a read-only open created the folder"
    );
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_is_named() {
    let t = store_support::sqlite().await;
    std::fs::write(&t.config.data_dir, "x").unwrap();
    let err = Store::open(&t.config).await.unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("--data-dir"), "{err}");
}

#[tokio::test]
async fn database_urls_are_checked_and_never_leak_the_password() {
    let t = store_support::sqlite().await;
    let open = |url: &str| {
        let mut config = t.config.clone();
        config.database_url = Some(gcx::config::Secret::new(url));
        async move { Store::open(&config).await.unwrap_err() }
    };
    let err = open("mysql://root:hunter22@db/gcx").await;
    assert!(matches!(err, StoreError::BadDatabaseUrl { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("store.database_url") && !text.contains("hunter22"),
        "{text}"
    );
    let err = open("postgres://app:hunter22@localhost:notaport/gcx").await;
    assert!(matches!(err, StoreError::BadDatabaseUrl { .. }), "{err}");
    assert!(!err.to_string().contains("hunter22"), "{err}");
    // Nothing listens on port 1.
    let err = open("postgres://app:hunter22@127.0.0.1:1/gcx?connect_timeout=2").await;
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(
        text.contains("postgres://app:***@127.0.0.1:1/gcx") && !text.contains("hunter22"),
        "{text}"
    );
    assert!(!format!("{err:?}").contains("hunter22"));
}

/// A full and a read-only file system, on a small tmpfs (needs the right to mount: CI
/// runs as root). Without that right it skips with a note on a user's machine and fails
/// with `CI=true`.
#[tokio::test]
async fn full_and_read_only_file_systems_are_named() {
    let t = store_support::sqlite().await;
    let mnt = t.dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=320k", "tmpfs"])
        .arg(&mnt)
        .output();
    let refused = match &mounted {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = refused {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the full/read-only file system test needs to mount a tmpfs in CI: {why}"
        );
        eprintln!(
            "note: skipping the full/read-only file system test: cannot mount a tmpfs: {why}"
        );
        return;
    }
    let unmount = || {
        let _ = std::process::Command::new("umount").arg(&mnt).status();
    };
    let mut config = t.config.clone();
    config.data_dir = mnt.join("data");
    let mount_point = mnt.clone();
    let outcome = async move {
        let store = Store::open(&config).await.unwrap();
        let big = "x".repeat(4000);
        let mut full = None;
        for i in 0..200 {
            let id = Uuid::new_v4();
            let result = store
                .commit(WriteBatch {
                    triggers: vec![TriggerWrite::Accept {
                        correlation_id: id,
                        action_type: "a".into(),
                        payload: json_text(&json!({"big": big, "i": i})),
                        at: Utc::now(),
                    }],
                    ..WriteBatch::default()
                })
                .await;
            if let Err(e) = result {
                full = Some(e);
                break;
            }
        }
        let err = full.expect("320 KiB never filled up");
        assert!(matches!(err, StoreError::Full { .. }), "{err}");
        assert!(err.to_string().contains("gcx.db"), "{err}");
        store.close().await.unwrap();
        // Remount read-only: opening for writing names the file.
        let remounted = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&mount_point)
            .status()
            .unwrap();
        assert!(remounted.success());
        let err = Store::open(&config).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::ReadOnly { .. } | StoreError::CreateDir { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("data"), "{err}");
    };
    let result = tokio::spawn(outcome).await;
    unmount();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---- scale-out (PostgreSQL only) ---------------------------------------------------------

/// A gcx restarted on the data folder of one that died mid-delivery takes back its
/// leased outbox rows at once, instead of waiting out the lease; a second live gcx on
/// the same folder does not share the first one's leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_folder_takes_back_its_leases_at_once() {
    let Some(t) = store_support::postgres().await else {
        return;
    };
    let first = t.open().await;
    for i in 0..20u32 {
        let id = Uuid::new_v4();
        first
            .commit(WriteBatch {
                triggers: vec![accept(id)],
                outbox: vec![message(&id.to_string(), i)],
                audit: vec![],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
    }
    let leased = first.due_outbox("crm", Utc::now(), 20).await.unwrap();
    assert_eq!(leased.len(), 20);

    // While the first lives, a second on its folder sees none of its leased rows.
    let second = t.open().await;
    assert_eq!(
        second
            .due_outbox("crm", Utc::now(), 20)
            .await
            .unwrap()
            .len(),
        0
    );
    second.close().await.unwrap();
    drop(second);

    // The first goes away without ending its leases (a crash leaves them so); the next
    // on its folder has every row due now, not a lease later.
    first.close().await.unwrap();
    drop(first);
    let restarted = t.open().await;
    let due = restarted.next_outbox_due("crm").await.unwrap().unwrap();
    assert!(due <= Utc::now(), "due at {due}");
    let taken = restarted.due_outbox("crm", Utc::now(), 20).await.unwrap();
    assert_eq!(
        taken.iter().map(|m| m.id).collect::<Vec<_>>(),
        leased.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    restarted.close().await.unwrap();
}

/// Two instances (own data folders, own signing keys) share one schema: the audit chain
/// stays linear, and an outbox row leased by one is invisible to the other until the
/// lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_instances_share_one_chain_and_one_outbox() {
    let Some(t) = store_support::postgres().await else {
        return;
    };
    let other_dir = tempfile::tempdir().unwrap();
    let mut other_config = t.config.clone();
    other_config.data_dir = other_dir.path().to_path_buf();
    let a = t.open().await;
    let b = Store::open(&other_config).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            store
                .commit(WriteBatch {
                    triggers: vec![accept(id)],
                    outbox: vec![message(&id.to_string(), i)],
                    audit: vec![store_support::event(&id.to_string(), "accepted", 0.0)],
                    ..WriteBatch::default()
                })
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let now = Utc::now();
    let leased = a.due_outbox("crm", now, 50).await.unwrap();
    assert_eq!(leased.len(), 50);
    let seen_by_b = b.due_outbox("crm", now, 500).await.unwrap();
    assert_eq!(seen_by_b.len(), 150, "b must not see a's 50 leased rows");
    let leased_ids: HashSet<i64> = leased.iter().map(|m| m.id).collect();
    assert!(seen_by_b.iter().all(|m| !leased_ids.contains(&m.id)));
    // a sees its own lease again; after the lease, b may take over a's rows.
    assert_eq!(a.due_outbox("crm", now, 50).await.unwrap().len(), 50);
    let after_lease = now + Age::from_std(gcx::store::OUTBOX_LEASE).unwrap() + Age::seconds(1);
    assert_eq!(
        b.due_outbox("crm", after_lease, 500).await.unwrap().len(),
        200
    );
    // b holds every row now: for b they are due at once, for a only when b's lease ends.
    let for_b = b.next_outbox_due("crm").await.unwrap().unwrap();
    assert!(for_b <= Utc::now(), "b's own rows are due: {for_b}");
    let for_a = a.next_outbox_due("crm").await.unwrap().unwrap();
    let lease = Age::from_std(gcx::store::OUTBOX_LEASE).unwrap();
    assert!(
        (for_a - (after_lease + lease)).num_milliseconds().abs() <= 1,
        "a must wait for b's lease: {for_a} vs {}",
        after_lease + lease
    );
    a.close().await.unwrap();
    b.close().await.unwrap();

    let store = Store::open_read_only(&t.config).await.unwrap();
    let keys = [&t.config.data_dir, &other_config.data_dir]
        .map(|d| audit::keys::read_public_key(&d.join(audit::keys::PUBLIC_KEY_FILE)).unwrap());
    let report = audit::verify(
        &store,
        &VerifyOptions {
            public_keys: keys.to_vec(),
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.last_seq, 200);
    assert_eq!(report.unsigned_tail, 0);
    // Both keys signed something: every 10th record and a close each.
    let key_ids: HashSet<String> = store
        .audit_checkpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key_id)
        .collect();
    assert_eq!(key_ids.len(), 2);
    store.close().await.unwrap();
}

/// The cluster's statements (PostgreSQL): the dispatch queue hands each accepted trigger
/// out once, in order, and only to the current term; a takeover raises the term, after
/// which a write or a claim of the deposed term is refused and changes nothing.
#[tokio::test]
async fn postgres_a_deposed_terms_writes_and_claims_are_refused() {
    let Some(t) = store_support::postgres().await else {
        return;
    };
    let store = t.open().await;
    let db = store
        .cluster()
        .expect("PostgreSQL has the cluster's statements");
    let lease = std::time::Duration::from_secs(5);
    let first = db.acquire("a", lease).await.unwrap().expect("a free lease");
    assert_eq!(
        db.acquire("b", lease).await.unwrap(),
        None,
        "a live lease is held"
    );

    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let queued = |ids: &[Uuid]| WriteBatch {
        triggers: ids.iter().map(|id| accept(*id)).collect(),
        queue: true,
        ..WriteBatch::default()
    };
    store.commit(queued(&ids)).await.unwrap();
    // Not queued: a trigger accepted without `queue` stays out of the queue.
    store
        .commit(WriteBatch {
            triggers: vec![accept(Uuid::new_v4())],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(db.queued().await.unwrap(), 3);
    let claimed: Vec<Uuid> = db
        .claim(first, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.correlation_id)
        .collect();
    assert_eq!(claimed.len(), 3);
    assert!(ids.iter().all(|id| claimed.contains(id)), "{claimed:?}");
    assert!(
        db.claim(first, 10).await.unwrap().is_empty(),
        "each is handed out once"
    );

    let fenced = |id, term| WriteBatch {
        triggers: vec![transition(id, TriggerState::Sent, 1)],
        fence: Some(term),
        ..WriteBatch::default()
    };
    store.commit(fenced(ids[0], first)).await.unwrap();

    db.release("a", first).await.unwrap();
    let second = db
        .acquire("b", lease)
        .await
        .unwrap()
        .expect("a released lease");
    assert_eq!(second, first + 1);
    let late = store.commit(fenced(ids[1], first)).await.unwrap_err();
    assert!(
        matches!(late, StoreError::Fenced { term, current } if term == first && current == second),
        "{late:?}"
    );
    assert_eq!(
        store.trigger(ids[1]).await.unwrap().unwrap().state,
        TriggerState::Accepted,
        "the refused write changed nothing"
    );
    let more = Uuid::new_v4();
    store.commit(queued(&[more])).await.unwrap();
    assert!(matches!(
        db.claim(first, 10).await.unwrap_err(),
        StoreError::Fenced { .. }
    ));
    assert_eq!(
        db.queued().await.unwrap(),
        1,
        "the refused claim took nothing"
    );

    // The new term's takeover: every unfinished trigger, `sent` first, and an empty queue.
    let unfinished = db.take_over(second).await.unwrap();
    assert_eq!(unfinished.len(), 5);
    assert_eq!(unfinished[0].correlation_id, ids[0]);
    assert_eq!(unfinished[0].state, TriggerState::Sent);
    assert_eq!(db.queued().await.unwrap(), 0);
    assert!(matches!(
        db.take_over(first).await.unwrap_err(),
        StoreError::Fenced { .. }
    ));
    store.close().await.unwrap();
}
