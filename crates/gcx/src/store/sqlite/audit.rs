//! The audit chain on SQLite: records appended after the chain head and checkpoints
//! signed, inside the committing transaction (chain order = commit order).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::writer::{Answer, Writer};
use crate::audit_chain::hash::{ChainHead, Link};
use crate::audit_chain::{AuditEvent, Checkpoint};
use crate::store::StoreError;
use crate::store::committer::{Done, GroupContext};
use crate::store::convert::{self, micros};

impl Writer {
    /// Appends `events` after the current chain head and writes the checkpoints that fall
    /// due, all inside the open transaction (chain order = commit order).
    pub(super) fn append_audit(
        &self,
        events: Vec<&AuditEvent>,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut head = self.chain_head()?;
        let records = context.link(&mut head, events, now);
        let mut insert = self
            .conn
            .prepare_cached(&self.insert_audit)
            .map_err(self.err())?;
        for r in &records {
            insert_link(&mut insert, r).map_err(self.err())?;
        }
        drop(insert);
        for cp in context.due_checkpoints(&records, now) {
            self.insert_checkpoint(&cp)?;
        }
        Ok(())
    }

    fn chain_head(&self) -> Result<ChainHead, StoreError> {
        let head: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(self.err())?;
        match head {
            None => Ok(ChainHead::genesis()),
            Some((seq, hash)) => Ok(ChainHead {
                seq: convert::u64_of(&self.location, "audit_records.seq", seq)?,
                hash,
            }),
        }
    }

    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_checkpoints (seq, hash, signature, key_id, signed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    convert::i64_of(cp.seq),
                    cp.hash,
                    cp.signature,
                    cp.key_id,
                    micros(cp.signed_at),
                ])
            })
            .map_err(self.err())?;
        Ok(())
    }

    /// Signs the chain head unless a checkpoint already covers it.
    pub(super) fn checkpoint(
        &self,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<Answer, StoreError> {
        let head: Option<(i64, String, Option<i64>)> = self
            .conn
            .prepare_cached(
                "SELECT r.seq, r.hash, (SELECT MAX(seq) FROM audit_checkpoints) \
                 FROM audit_records r ORDER BY r.seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err())?;
        if let Some((seq, hash, signed)) = head
            && signed.is_none_or(|s| s < seq)
        {
            let seq = convert::u64_of(&self.location, "audit_records.seq", seq)?;
            self.insert_checkpoint(&Checkpoint::sign(&context.keys, seq, &hash, now))?;
        }
        Ok(Ok(Done::Unit))
    }
}

fn insert_link(insert: &mut rusqlite::CachedStatement<'_>, r: &Link<'_>) -> rusqlite::Result<()> {
    let e = &r.event;
    insert.execute(params![
        convert::i64_of(r.seq),
        micros(r.recorded_at),
        e.correlation_id,
        e.action_type,
        e.status,
        micros(r.started_at()),
        micros(r.ended_at()),
        e.latency_ms,
        e.queue_wait_ms,
        e.send_to_ack_ms,
        e.send_to_result_ms,
        e.agent_id,
        e.session_id,
        e.interaction_type,
        e.catalogue_version,
        e.parameters_sha256,
        r.parameters().map(convert::to_text),
        e.outcome,
        e.error,
        i64::from(e.retries),
        e.instance,
        r.prev_hash,
        r.hash,
    ])?;
    Ok(())
}
