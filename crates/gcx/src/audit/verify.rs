//! Verification: walks the records in seq order and the signed checkpoints, and names the
//! first record where the log stops being trustworthy, and why.
//!
//! What is detected, with only the public key:
//! - an edited field (the record no longer matches its hash);
//! - a deleted record (a gap in seq) or removed/inserted/reordered records (`prev_hash`
//!   does not link to the previous record's hash);
//! - a forged record with the chain re-hashed after it (the next checkpoint's hash no
//!   longer matches, and a re-signed checkpoint fails without the private key);
//! - a truncated tail, when a checkpoint vouches for a seq beyond the last record (the
//!   store signs its final seq at `close()`).
//!
//! The limit: records after the last checkpoint are chained but not signed, so removing
//! them (after a crash, before the next checkpoint), or removing the tail *together with*
//! its checkpoints, is detectable only against something the verifier holds: a saved
//! checkpoint (`--checkpoint FILE`, from `gcx audit checkpoint`) or a known minimum
//! length (`--expect-at-least SEQ`). [`VerifyReport::unsigned_tail`] says how many
//! records are in that position.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::GENESIS_HASH;
use super::keys::key_id;
use super::{AuditError, Checkpoint};
use crate::store::Store;

/// What to check beyond the stored chain.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys trusted to sign checkpoints (several when instances with their own keys share
    /// a PostgreSQL store). A checkpoint signed by any other key is a problem.
    pub public_keys: Vec<VerifyingKey>,
    /// Fail unless the log reaches at least this seq.
    pub expect_at_least: Option<u64>,
    /// Checkpoints kept outside the store; each must match the stored log.
    pub external_checkpoints: Vec<Checkpoint>,
    /// Records read per query (0: a default).
    pub page_size: usize,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Records walked (up to the first problem).
    pub records: u64,
    /// Seq and hash of the last record walked (0 and the genesis hash when none).
    pub last_seq: u64,
    pub last_hash: String,
    /// Checkpoints whose signature and hash were checked and held.
    pub checkpoints_verified: u64,
    /// The highest seq a valid checkpoint vouches for.
    pub last_signed_seq: Option<u64>,
    /// Records after the last valid checkpoint: chained, not signed yet.
    pub unsigned_tail: u64,
    /// The first problem found; `None` when the log is intact.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first place where the log is not what was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first record that cannot be trusted.
    pub seq: u64,
    pub kind: ProblemKind,
    /// A sentence for people: what is wrong and what it implies.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {}: {}", self.seq, self.detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The record's content does not match its hash.
    Edited,
    /// Seq numbers are missing.
    Missing,
    /// `prev_hash` does not link to the previous record.
    Unlinked,
    /// A checkpoint's signature is invalid or its hash differs from the record's.
    Checkpoint,
    /// A checkpoint is signed by a key the verifier does not trust.
    UnknownKey,
    /// Records a checkpoint or `--expect-at-least` vouches for are gone.
    Truncated,
}

const DEFAULT_PAGE: usize = 10_000;

/// Verifies the audit log of `store`. A tampered log is a report with a
/// [`Problem`]; `Err` means the log could not be read.
pub async fn verify(store: &Store, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let keys: HashMap<String, &VerifyingKey> =
        options.public_keys.iter().map(|k| (key_id(k), k)).collect();
    // Read before the records: every stored checkpoint's record is then readable too.
    let mut checkpoints: BTreeMap<u64, Vec<(Checkpoint, &'static str)>> = BTreeMap::new();
    for cp in store.audit_checkpoints().await? {
        checkpoints.entry(cp.seq).or_default().push((cp, "stored"));
    }
    for cp in &options.external_checkpoints {
        checkpoints
            .entry(cp.seq)
            .or_default()
            .push((cp.clone(), "saved"));
    }
    let mut walk = Walk {
        keys,
        report: VerifyReport {
            records: 0,
            last_seq: 0,
            last_hash: GENESIS_HASH.to_string(),
            checkpoints_verified: 0,
            last_signed_seq: None,
            unsigned_tail: 0,
            problem: None,
        },
    };
    let page = if options.page_size == 0 {
        DEFAULT_PAGE
    } else {
        options.page_size
    };
    let mut next = 1;
    'pages: loop {
        let records = store.audit_records(Some(next), page).await?;
        let Some(last) = records.last() else { break };
        next = last.seq + 1;
        let full = records.len() == page;
        for record in records {
            let expected = walk.report.last_seq + 1;
            if record.seq != expected {
                walk.fail(
                    expected,
                    ProblemKind::Missing,
                    format!(
                        "missing: the log jumps from seq {} to {} (records deleted)",
                        walk.report.last_seq, record.seq
                    ),
                );
                break 'pages;
            }
            if record.prev_hash != walk.report.last_hash {
                walk.fail(
                    record.seq,
                    ProblemKind::Unlinked,
                    format!(
                        "its prev_hash does not match the hash of record {}: records were \
                         removed, inserted, swapped or reordered here",
                        walk.report.last_seq
                    ),
                );
                break 'pages;
            }
            if record.compute_hash() != record.hash {
                walk.fail(
                    record.seq,
                    ProblemKind::Edited,
                    "its content does not match its hash: a field was changed after it was \
                     written"
                        .to_string(),
                );
                break 'pages;
            }
            walk.report.records += 1;
            walk.report.last_seq = record.seq;
            walk.report.last_hash.clone_from(&record.hash);
            if let Some(cps) = checkpoints.remove(&record.seq) {
                for (cp, source) in cps {
                    if !walk.check_checkpoint(&cp, source, Some(&record.hash)) {
                        break 'pages;
                    }
                }
            }
        }
        if !full {
            break;
        }
    }
    if walk.report.problem.is_none() {
        // Checkpoints beyond the last record: a valid one proves the tail was cut off.
        for (_, cps) in checkpoints {
            for (cp, source) in cps {
                if !walk.check_checkpoint(&cp, source, None) {
                    break;
                }
            }
            if walk.report.problem.is_some() {
                break;
            }
        }
    }
    let short = |min: &u64| walk.report.problem.is_none() && walk.report.last_seq < *min;
    if let Some(min) = options.expect_at_least.filter(short) {
        let last = walk.report.last_seq;
        walk.fail(
            last + 1,
            ProblemKind::Truncated,
            format!(
                "truncated: the log ends at seq {last} but at least {min} records were \
                 expected (--expect-at-least)"
            ),
        );
    }
    let r = &mut walk.report;
    r.unsigned_tail = r.last_seq - r.last_signed_seq.unwrap_or(0).min(r.last_seq);
    Ok(walk.report)
}

struct Walk<'k> {
    keys: HashMap<String, &'k VerifyingKey>,
    report: VerifyReport,
}

impl Walk<'_> {
    fn fail(&mut self, seq: u64, kind: ProblemKind, detail: String) {
        self.report.problem = Some(Problem { seq, kind, detail });
    }

    /// Checks one checkpoint against the record hash at its seq (`None`: no such record).
    /// Returns false after recording a problem.
    fn check_checkpoint(
        &mut self,
        cp: &Checkpoint,
        source: &str,
        record_hash: Option<&str>,
    ) -> bool {
        let trusted_from = self.report.last_signed_seq.unwrap_or(0) + 1;
        let Some(key) = self.keys.get(&cp.key_id) else {
            let detail = format!(
                "the {source} checkpoint at seq {} is signed by key {}, which is not among the \
                 trusted public keys (--public-key)",
                cp.seq, cp.key_id
            );
            self.fail(cp.seq.min(trusted_from), ProblemKind::UnknownKey, detail);
            return false;
        };
        if !cp.verify(key) {
            let detail = format!(
                "the {source} checkpoint at seq {} has an invalid signature: records {}..={} \
                 were changed and re-hashed, or the checkpoint was forged",
                cp.seq, trusted_from, cp.seq
            );
            self.fail(trusted_from, ProblemKind::Checkpoint, detail);
            return false;
        }
        match record_hash {
            Some(hash) if hash == cp.hash => {
                self.report.checkpoints_verified += 1;
                self.report.last_signed_seq =
                    Some(cp.seq.max(self.report.last_signed_seq.unwrap_or(0)));
                true
            }
            Some(_) => {
                let detail = format!(
                    "record {} differs from what the {source} checkpoint signed: a record in \
                     {}..={} was changed and the chain re-hashed after it",
                    cp.seq, trusted_from, cp.seq
                );
                self.fail(trusted_from, ProblemKind::Checkpoint, detail);
                false
            }
            None => {
                let last = self.report.last_seq;
                let detail = format!(
                    "truncated: the log ends at seq {last} but the {source} checkpoint signed \
                     seq {}: records {}..={} were removed",
                    cp.seq,
                    last + 1,
                    cp.seq
                );
                self.fail(last + 1, ProblemKind::Truncated, detail);
                false
            }
        }
    }
}
