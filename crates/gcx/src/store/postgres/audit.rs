//! The audit chain on PostgreSQL: records appended after the chain head and checkpoints
//! signed, inside the committing transaction. The one `audit_head` row is locked first,
//! so the chain stays linear when several instances share the database.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;

use super::{PgBackend, column};
use crate::audit_chain::hash::ChainHead;
use crate::audit_chain::{AuditEvent, Checkpoint};
use crate::store::committer::{Done, GroupContext};
use crate::store::rows::{AUDIT_COLUMNS, CommonColumns};
use crate::store::{StoreError, convert};

impl PgBackend {
    /// Locks the chain head row, appends, moves the head, writes due checkpoints.
    pub(super) async fn append_audit(
        &self,
        conn: &mut PgConnection,
        events: Vec<&AuditEvent>,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut head = self.lock_chain_head(conn).await?;
        let records = context.link(&mut head, events, now);
        let r = records.as_slice();
        // The head moves in the same statement (one round trip fewer per group): a
        // data-modifying WITH runs to completion whatever the outer statement reads.
        sqlx::query(&format!(
            "WITH appended AS (INSERT INTO audit_records ({AUDIT_COLUMNS}) \
             SELECT * FROM UNNEST($1::bigint[], \
             $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
             $7::timestamptz[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
             $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
             $18::text[], $19::text[], $20::bigint[], $21::text[], $22::text[], $23::text[])) \
             UPDATE audit_head SET seq = $24, hash = $25"
        ))
        .bind(column(r, |r| convert::i64_of(r.seq)))
        .bind(column(r, |r| r.recorded_at))
        .bind(column(r, |r| r.event.correlation_id.as_str()))
        .bind(column(r, |r| r.event.action_type.as_str()))
        .bind(column(r, |r| r.event.status.as_str()))
        .bind(column(r, |r| r.started_at()))
        .bind(column(r, |r| r.ended_at()))
        .bind(column(r, |r| r.event.latency_ms))
        .bind(column(r, |r| r.event.queue_wait_ms))
        .bind(column(r, |r| r.event.send_to_ack_ms))
        .bind(column(r, |r| r.event.send_to_result_ms))
        .bind(column(r, |r| r.event.agent_id.as_str()))
        .bind(column(r, |r| r.event.session_id.as_str()))
        .bind(column(r, |r| r.event.interaction_type.as_str()))
        .bind(column(r, |r| r.event.catalogue_version.as_str()))
        .bind(column(r, |r| r.event.parameters_sha256.as_str()))
        .bind(column(r, |r| r.parameters().map(convert::to_text)))
        .bind(column(r, |r| r.event.outcome.as_str()))
        .bind(column(r, |r| r.event.error.as_deref()))
        .bind(column(r, |r| i64::from(r.event.retries)))
        .bind(column(r, |r| r.event.instance.as_str()))
        .bind(column(r, |r| r.prev_hash.as_str()))
        .bind(column(r, |r| r.hash.as_str()))
        .bind(convert::i64_of(head.seq))
        .bind(&head.hash)
        .execute(&mut *conn)
        .await
        .map_err(self.db())?;
        for cp in context.due_checkpoints(&records, now) {
            self.insert_checkpoint(conn, &cp).await?;
        }
        Ok(())
    }

    /// Signs the chain head unless a checkpoint already covers it.
    pub(super) async fn checkpoint(
        &self,
        conn: &mut PgConnection,
        context: &GroupContext,
        now: DateTime<Utc>,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        let head = self.lock_chain_head(conn).await?;
        let signed: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
            .fetch_one(&mut *conn)
            .await
            .map_err(self.db())?;
        if head.seq > 0 && signed.is_none_or(|s| s < convert::i64_of(head.seq)) {
            let cp = Checkpoint::sign(&context.keys, head.seq, &head.hash, now);
            self.insert_checkpoint(conn, &cp).await?;
        }
        Ok(Ok(Done::Unit))
    }

    async fn lock_chain_head(&self, conn: &mut PgConnection) -> Result<ChainHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.db())?;
        let l = &self.location;
        match row {
            None => Err(StoreError::Corrupt {
                location: l.clone(),
                detail: "the audit_head row is missing".to_string(),
            }),
            Some(row) => Ok(ChainHead {
                seq: convert::u64_of(l, "audit_head.seq", row.int(0, l)?)?,
                hash: row.text(1, l)?,
            }),
        }
    }

    async fn insert_checkpoint(
        &self,
        conn: &mut PgConnection,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, signature, key_id, signed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(convert::i64_of(cp.seq))
        .bind(&cp.hash)
        .bind(&cp.signature)
        .bind(&cp.key_id)
        .bind(cp.signed_at)
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(())
    }
}
