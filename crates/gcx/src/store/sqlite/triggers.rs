//! The trigger rows the SQLite committer reads and writes inside a group's transaction.

use rusqlite::{OptionalExtension, params};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::writer::Writer;
use crate::store::convert::{self, micros};
use crate::store::plan::{Change, NewTrigger};
use crate::store::{StoreError, TriggerState};

impl Writer {
    /// The stored state of each of `ids` that exists (all the plan needs of them).
    pub(super) fn load_states(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, TriggerState)>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(found);
        }
        let mut select = self
            .conn
            .prepare_cached("SELECT state FROM triggers WHERE correlation_id = ?1")
            .map_err(self.err())?;
        for id in ids {
            let state: Option<String> = select
                .query_row([id.to_string()], |r| r.get(0))
                .optional()
                .map_err(self.err())?;
            if let Some(state) = state {
                found.push((*id, convert::state(&self.location, &state)?));
            }
        }
        Ok(found)
    }

    pub(super) fn insert_triggers(&self, rows: &[NewTrigger<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .conn
            .prepare_cached(&self.insert_trigger)
            .map_err(self.err())?;
        for t in rows {
            insert
                .execute(params![
                    t.correlation_id.to_string(),
                    t.action_type,
                    t.payload.get(),
                    t.now.state.as_str(),
                    i64::from(t.now.attempts),
                    micros(t.accepted_at),
                    micros(t.now.updated_at),
                    t.now.output.map(RawValue::get),
                    t.now.error.map(RawValue::get),
                ])
                .map_err(self.err())?;
        }
        Ok(())
    }

    pub(super) fn update_triggers(&self, rows: &[(Uuid, Change<'_>)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut update = self
            .conn
            .prepare_cached(
                "UPDATE triggers SET state = ?2, attempts = ?3, updated_at = ?4, output = ?5, \
                 error = ?6 WHERE correlation_id = ?1",
            )
            .map_err(self.err())?;
        for (id, t) in rows {
            update
                .execute(params![
                    id.to_string(),
                    t.state.as_str(),
                    i64::from(t.attempts),
                    micros(t.updated_at),
                    t.output.map(RawValue::get),
                    t.error.map(RawValue::get),
                ])
                .map_err(self.err())?;
        }
        Ok(())
    }
}
