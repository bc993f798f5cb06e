//! The audit log against real stores (SQLite and PostgreSQL): every kind of tampering is
//! caught by `audit::verify` with only the public key, and named at the right record;
//! report and export over stored records.

mod store_support;

use gcx::audit::{
    self, AuditRecord, Checkpoint, ExportOptions, ProblemKind, TimeRange, VerifyOptions,
    VerifyReport,
};
use gcx::store::{Store, WriteBatch};
use store_support::TestStore;

both_backends!(
    an_intact_log_verifies,
    an_edited_field_is_caught,
    a_deleted_record_is_caught,
    swapped_records_are_caught,
    a_truncated_tail_is_caught_by_the_final_checkpoint,
    a_tail_cut_with_its_checkpoints_needs_outside_knowledge,
    a_forged_record_with_a_rehashed_chain_is_caught,
    forged_checkpoints_fail_without_the_private_key,
    the_log_is_append_only_for_the_application,
    report_and_export_read_the_stored_records,
);

/// 35 records, checkpoints every 10 and at close (10, 20, 30, 35).
async fn written_log(t: &TestStore) {
    let store = t.open().await;
    for chunk in 0..7 {
        let events = (0..5)
            .map(|i| {
                let n = chunk * 5 + i;
                let status = if n % 7 == 0 { "failed" } else { "completed" };
                store_support::event(&format!("trigger-{n}"), status, f64::from(n) + 0.5)
            })
            .collect();
        store
            .commit(WriteBatch {
                audit: events,
                ..WriteBatch::default()
            })
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}

async fn verify_with(t: &TestStore, options: VerifyOptions) -> VerifyReport {
    let store = Store::open_read_only(&t.config).await.unwrap();
    let mut options = options;
    if options.public_keys.is_empty() {
        options.public_keys.push(public_key(t));
    }
    let report = audit::verify(&store, &options).await.unwrap();
    store.close().await.unwrap();
    report
}

async fn verify(t: &TestStore) -> VerifyReport {
    verify_with(t, VerifyOptions::default()).await
}

fn public_key(t: &TestStore) -> ed25519_dalek::VerifyingKey {
    audit::keys::read_public_key(&t.config.data_dir.join(audit::keys::PUBLIC_KEY_FILE)).unwrap()
}

async fn records(t: &TestStore) -> Vec<AuditRecord> {
    let store = Store::open_read_only(&t.config).await.unwrap();
    let records = store.audit_records(None, 1000).await.unwrap();
    store.close().await.unwrap();
    records
}

fn problem(report: &VerifyReport) -> (u64, ProblemKind) {
    let p = report.problem.as_ref().expect("tampering went unnoticed");
    (p.seq, p.kind)
}

async fn an_intact_log_verifies(t: TestStore) {
    written_log(&t).await;
    let report = verify(&t).await;
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.records, 35);
    assert_eq!(report.last_seq, 35);
    assert_eq!(report.checkpoints_verified, 4);
    assert_eq!(report.last_signed_seq, Some(35));
    assert_eq!(report.unsigned_tail, 0);
    // Paging does not change the outcome.
    let paged = verify_with(
        &t,
        VerifyOptions {
            page_size: 3,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(paged, report);
}

async fn an_edited_field_is_caught(t: TestStore) {
    written_log(&t).await;
    t.drop_audit_guards().await;
    t.exec("UPDATE audit_records SET latency_ms = 1.0 WHERE seq = 17")
        .await;
    let report = verify(&t).await;
    assert_eq!(problem(&report), (17, ProblemKind::Edited));
    assert_eq!(report.records, 16);
    assert!(report.problem.unwrap().detail.contains("field was changed"));

    t.exec("UPDATE audit_records SET latency_ms = 16.5 WHERE seq = 17")
        .await;
    assert!(
        verify(&t).await.is_intact(),
        "restoring the value restores the chain"
    );
    t.exec("UPDATE audit_records SET status = 'completed' WHERE seq = 8")
        .await;
    assert_eq!(problem(&verify(&t).await), (8, ProblemKind::Edited));
}

async fn a_deleted_record_is_caught(t: TestStore) {
    written_log(&t).await;
    t.drop_audit_guards().await;
    t.exec("DELETE FROM audit_records WHERE seq = 12").await;
    let report = verify(&t).await;
    assert_eq!(problem(&report), (12, ProblemKind::Missing));
    assert!(report.problem.unwrap().detail.contains("from seq 11 to 13"));
    // Deleting the first record is a gap at 1.
    t.exec("DELETE FROM audit_records WHERE seq = 1").await;
    assert_eq!(problem(&verify(&t).await), (1, ProblemKind::Missing));
}

async fn swapped_records_are_caught(t: TestStore) {
    written_log(&t).await;
    t.drop_audit_guards().await;
    t.exec(
        "UPDATE audit_records SET seq = -1 WHERE seq = 5; \
         UPDATE audit_records SET seq = 5 WHERE seq = 6; \
         UPDATE audit_records SET seq = 6 WHERE seq = -1;",
    )
    .await;
    let report = verify(&t).await;
    assert_eq!(problem(&report), (5, ProblemKind::Unlinked));
    assert!(report.problem.unwrap().detail.contains("swapped"));
}

async fn a_truncated_tail_is_caught_by_the_final_checkpoint(t: TestStore) {
    written_log(&t).await;
    t.drop_audit_guards().await;
    t.exec("DELETE FROM audit_records WHERE seq > 31").await;
    let report = verify(&t).await;
    assert_eq!(problem(&report), (32, ProblemKind::Truncated));
    let detail = report.problem.unwrap().detail;
    assert!(
        detail.contains("ends at seq 31") && detail.contains("32..=35"),
        "{detail}"
    );
}

async fn a_tail_cut_with_its_checkpoints_needs_outside_knowledge(t: TestStore) {
    written_log(&t).await;
    // What `gcx audit checkpoint` prints, saved outside the store.
    let saved: Checkpoint = {
        let store = Store::open_read_only(&t.config).await.unwrap();
        let cp = store.audit_checkpoints().await.unwrap().pop().unwrap();
        store.close().await.unwrap();
        cp
    };
    assert_eq!(saved.seq, 35);
    t.drop_audit_guards().await;
    t.exec(
        "DELETE FROM audit_records WHERE seq > 25; DELETE FROM audit_checkpoints WHERE seq > 25;",
    )
    .await;
    // The documented limit: the rest of the chain is consistent on its own.
    let alone = verify(&t).await;
    assert!(alone.is_intact());
    assert_eq!((alone.last_seq, alone.unsigned_tail), (25, 5));
    let with_minimum = verify_with(
        &t,
        VerifyOptions {
            expect_at_least: Some(35),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(problem(&with_minimum), (26, ProblemKind::Truncated));
    let with_saved = verify_with(
        &t,
        VerifyOptions {
            external_checkpoints: vec![saved],
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(problem(&with_saved), (26, ProblemKind::Truncated));
    assert!(
        with_saved
            .problem
            .unwrap()
            .detail
            .contains("saved checkpoint")
    );
}

/// Changes record `seq` and re-hashes the chain from there, as someone without the
/// private key can; returns the new hashes by seq.
async fn forge_and_rehash(t: &TestStore, seq: u64) -> Vec<(u64, String)> {
    let mut all = records(t).await;
    let mut prev = all[seq as usize - 2].hash.clone();
    let mut rewritten = Vec::new();
    for r in all.iter_mut().skip(seq as usize - 1) {
        if r.seq == seq {
            r.event.latency_ms = 0.25;
        }
        r.prev_hash = prev;
        r.hash = r.compute_hash();
        prev = r.hash.clone();
        rewritten.push((r.seq, r.hash.clone()));
        t.exec(&format!(
            "UPDATE audit_records SET latency_ms = {}, prev_hash = '{}', hash = '{}' WHERE seq = {}",
            r.event.latency_ms, r.prev_hash, r.hash, r.seq
        ))
        .await;
    }
    rewritten
}

async fn a_forged_record_with_a_rehashed_chain_is_caught(t: TestStore) {
    written_log(&t).await;
    t.drop_audit_guards().await;
    forge_and_rehash(&t, 15).await;
    let report = verify(&t).await;
    // The chain links; the checkpoint at 20 no longer matches: 11..=20 is untrusted.
    assert_eq!(problem(&report), (11, ProblemKind::Checkpoint));
    assert_eq!(report.checkpoints_verified, 1);
    let detail = report.problem.unwrap().detail;
    assert!(
        detail.contains("11..=20") && detail.contains("re-hashed"),
        "{detail}"
    );
}

async fn forged_checkpoints_fail_without_the_private_key(t: TestStore) {
    written_log(&t).await;
    t.drop_audit_guards().await;
    let hashes = forge_and_rehash(&t, 15).await;
    // Move the stored checkpoints onto the forged hashes, keeping their signatures.
    for (seq, hash) in &hashes {
        t.exec(&format!(
            "UPDATE audit_checkpoints SET hash = '{hash}' WHERE seq = {seq}"
        ))
        .await;
    }
    let report = verify(&t).await;
    assert_eq!(problem(&report), (11, ProblemKind::Checkpoint));
    assert!(report.problem.unwrap().detail.contains("invalid signature"));

    // Re-sign them with a key of the forger's own: an untrusted key id.
    let forger_dir = tempfile::tempdir().unwrap();
    let forger = audit::AuditKeys::load_or_generate(forger_dir.path()).unwrap();
    for (seq, hash) in &hashes {
        let cp = Checkpoint::sign(&forger, *seq, hash, chrono::Utc::now());
        t.exec(&format!(
            "UPDATE audit_checkpoints SET signature = '{}', key_id = '{}' WHERE seq = {seq}",
            cp.signature, cp.key_id
        ))
        .await;
    }
    let report = verify(&t).await;
    assert_eq!(problem(&report), (11, ProblemKind::UnknownKey));
    // ...and trusting the forger's key instead of ours fails at the first genuine one.
    let report = verify_with(
        &t,
        VerifyOptions {
            public_keys: vec![forger.verifying_key()],
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(problem(&report), (1, ProblemKind::UnknownKey));
}

async fn the_log_is_append_only_for_the_application(t: TestStore) {
    written_log(&t).await;
    for sql in [
        "UPDATE audit_records SET latency_ms = 0 WHERE seq = 3",
        "DELETE FROM audit_records WHERE seq = 3",
        "DELETE FROM audit_checkpoints WHERE seq = 10",
    ] {
        let err = t.try_exec(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(verify(&t).await.is_intact());
}

async fn report_and_export_read_the_stored_records(t: TestStore) {
    written_log(&t).await;
    let store = Store::open_read_only(&t.config).await.unwrap();
    let metrics = audit::report(&store, TimeRange::default()).await.unwrap();
    // n = 0..35; failed when n % 7 == 0 (0, 7, 14, 21, 28).
    assert_eq!(metrics.overall.total_triggers, 35);
    assert_eq!(metrics.overall.successful, 30);
    assert_eq!(metrics.overall.failed, 5);
    assert!((metrics.overall.completion_rate - 30.0 / 35.0).abs() < 1e-12);
    assert_eq!(metrics.overall.max_latency_ms, 34.5);
    assert_eq!(metrics.by_action_type.len(), 1);
    let future = TimeRange {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        until: None,
    };
    assert_eq!(
        audit::report(&store, future)
            .await
            .unwrap()
            .overall
            .total_triggers,
        0
    );

    let mut out = Vec::new();
    let n = audit::export(&store, &ExportOptions::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(n, 35);
    let text = String::from_utf8(out).unwrap();
    let exported: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported, store.audit_records(None, 100).await.unwrap());
    for r in &exported {
        assert_eq!(r.compute_hash(), r.hash, "an exported record re-hashes");
    }
    let first_line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for key in [
        "seq",
        "correlation_id",
        "latency_ms",
        "prev_hash",
        "hash",
        "started_at",
    ] {
        assert!(first_line.get(key).is_some(), "{key} missing");
    }
    let mut tail = Vec::new();
    let n = audit::export(
        &store,
        &ExportOptions {
            from_seq: Some(31),
            page_size: 2,
            ..ExportOptions::default()
        },
        &mut tail,
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    store.close().await.unwrap();
}

/// `gcx audit` end to end, through the binary, on an SQLite store in `./.gcx` (the
/// default data folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_reports_exports_and_prints_checkpoints() {
    let t = store_support::sqlite().await;
    let mut config = t.config.clone();
    config.data_dir = t.dir.path().join(".gcx");
    let local = TestStore {
        config,
        dir: tempfile::tempdir().unwrap(),
        schema: None,
    };
    written_log(&local).await;
    let gcx = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gcx"))
            .args(args)
            .current_dir(t.dir.path())
            .env_remove("GCX_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = gcx(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("intact: 35 records"), "{out}");

    let (code, out, err) = gcx(&["audit", "report", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["total_triggers"], 35);
    assert_eq!(
        report["by_action_type"]["knowledge_search"]["successful"],
        30
    );
    let (code, out, _) = gcx(&["audit", "report", "--since", "1h"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("(all)") && out.contains("p99 ms"), "{out}");
    let (code, _, err) = gcx(&["audit", "report", "--since", "yesterday"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");

    let (code, out, _) = gcx(&["audit", "export", "--format", "jsonl"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 35);

    let (code, out, _) = gcx(&["audit", "checkpoint"]);
    assert_eq!(code, Some(0));
    let saved = t.dir.path().join("cp.json");
    std::fs::write(&saved, &out).unwrap();
    assert_eq!(serde_json::from_str::<Checkpoint>(&out).unwrap().seq, 35);

    local.drop_audit_guards().await;
    local
        .exec("UPDATE audit_records SET agent_id = 'someone-else' WHERE seq = 17")
        .await;
    let (code, out, _) = gcx(&["audit", "verify"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TAMPERED at record 17"), "{out}");
    local
        .exec("DELETE FROM audit_records WHERE seq > 16; DELETE FROM audit_checkpoints WHERE seq > 16;")
        .await;
    let (code, out, _) = gcx(&["audit", "verify"]);
    assert_eq!(code, Some(0), "the documented limit: {out}");
    let cp = saved.display().to_string();
    let (code, out, _) = gcx(&["audit", "verify", "--checkpoint", &cp, "--format", "json"]);
    assert_eq!(code, Some(1), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["problem"]["kind"], "truncated");
    let (code, _, err) = gcx(&["audit", "verify", "--public-key", "missing.pub"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.pub"), "{err}");
}
