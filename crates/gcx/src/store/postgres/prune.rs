//! One chunk of [`crate::store::Store::prune`] on PostgreSQL: the oldest finished triggers
//! and delivered webhooks, found through the partial indexes of schema 2, so no cursor
//! is needed.

use sqlx::postgres::PgConnection;

use super::PgBackend;
use crate::store::committer::{Done, PruneChunk};
use crate::store::{Pruned, StoreError};

/// A chunk's deletes, finished triggers then delivered webhooks: older than `$1`, at most
/// `$2` of each.
const DELETES: [&str; 2] = [
    "DELETE FROM triggers WHERE correlation_id IN ( \
       SELECT correlation_id FROM triggers \
       WHERE state IN ('completed', 'failed', 'rejected') AND updated_at < $1 \
       ORDER BY updated_at LIMIT $2)",
    "DELETE FROM outbox WHERE id IN ( \
       SELECT id FROM outbox WHERE status = 'delivered' AND created_at < $1 \
       ORDER BY created_at LIMIT $2)",
];

impl PgBackend {
    pub(super) async fn prune(
        &self,
        conn: &mut PgConnection,
        chunk: &PruneChunk,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        let mut deleted = [0u64; 2];
        for (n, sql) in deleted.iter_mut().zip(DELETES) {
            *n = sqlx::query(sql)
                .bind(chunk.before)
                .bind(i64::from(chunk.limit))
                .execute(&mut *conn)
                .await
                .map_err(self.db())?
                .rows_affected();
        }
        let [triggers, webhooks] = deleted;
        Ok(Ok(Done::Pruned(Pruned { triggers, webhooks }, chunk.after)))
    }
}
