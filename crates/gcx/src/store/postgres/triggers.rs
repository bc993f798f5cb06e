//! The trigger rows a PostgreSQL group reads (locked) and writes, in bulk.

use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::{PgBackend, column};
use crate::store::plan::{Change, NewTrigger};
use crate::store::rows::{Columns, CommonColumns, TRIGGER_COLUMNS};
use crate::store::{StoreError, TriggerState, convert};

impl PgBackend {
    /// The stored state of each of `ids` that exists, locked for this transaction.
    pub(super) async fn load_states(
        &self,
        conn: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, TriggerState)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT correlation_id, state FROM triggers WHERE correlation_id = ANY($1) FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(self.db())?;
        let l = &self.location;
        rows.iter()
            .map(|row| {
                Ok((
                    row.uuid(0, l, "triggers.correlation_id")?,
                    convert::state(l, &row.text(1, l)?)?,
                ))
            })
            .collect()
    }

    pub(super) async fn insert_triggers(
        &self,
        conn: &mut PgConnection,
        rows: &[NewTrigger<'_>],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO triggers ({TRIGGER_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], \
             $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], \
             $7::timestamptz[], $8::text[], $9::text[])"
        ))
        .bind(column(rows, |t| t.correlation_id))
        .bind(column(rows, |t| t.action_type))
        .bind(column(rows, |t| t.payload.get()))
        .bind(column(rows, |t| t.now.state.as_str()))
        .bind(column(rows, |t| i64::from(t.now.attempts)))
        .bind(column(rows, |t| t.accepted_at))
        .bind(column(rows, |t| t.now.updated_at))
        .bind(column(rows, |t| t.now.output.map(|v| v.get())))
        .bind(column(rows, |t| t.now.error.map(|v| v.get())))
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(())
    }

    pub(super) async fn update_triggers(
        &self,
        conn: &mut PgConnection,
        rows: &[(Uuid, Change<'_>)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE triggers t SET state = v.state, attempts = v.attempts, \
             updated_at = v.updated_at, output = v.output, error = v.error \
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], \
             $6::text[]) AS v(id, state, attempts, updated_at, output, error) \
             WHERE t.correlation_id = v.id",
        )
        .bind(column(rows, |(id, _)| *id))
        .bind(column(rows, |(_, t)| t.state.as_str()))
        .bind(column(rows, |(_, t)| i64::from(t.attempts)))
        .bind(column(rows, |(_, t)| t.updated_at))
        .bind(column(rows, |(_, t)| t.output.map(|v| v.get())))
        .bind(column(rows, |(_, t)| t.error.map(|v| v.get())))
        .execute(conn)
        .await
        .map_err(self.db())?;
        Ok(())
    }
}
