//! The states of unfinished triggers as this process's own commits left them, so the
//! SQLite committer need not read back, group after group, what it wrote itself.
//!
//! Trusted only while no other connection has committed to the file: SQLite's
//! `PRAGMA data_version`, read inside the write transaction (so nobody can commit until
//! it ends), changes exactly when another connection committed. A different version, a
//! failed write or a cap overflow forgets everything, and the group reads the states back
//! from the file. Finished triggers are forgotten at once: they never move again, and a
//! write naming one reads it back from the file and is refused.

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::TriggerState;

/// The most states kept (a few MiB); beyond it everything is forgotten.
const CAP: usize = 200_000;

#[derive(Debug, Default)]
pub(crate) struct KnownStates {
    /// The `data_version` the states are true for.
    version: Option<i64>,
    states: HashMap<Uuid, TriggerState>,
}

impl KnownStates {
    /// Starts a group: keeps the states only if `version` is the one they are true for.
    pub(crate) fn begin(&mut self, version: i64) {
        if self.version != Some(version) {
            self.forget();
            self.version = Some(version);
        }
    }

    /// Splits sorted `ids` into those whose state is known and those to read.
    pub(crate) fn split(&self, ids: &[Uuid]) -> (Vec<(Uuid, TriggerState)>, Vec<Uuid>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for id in ids {
            match self.states.get(id) {
                Some(state) => known.push((*id, *state)),
                None => unknown.push(*id),
            }
        }
        (known, unknown)
    }

    /// The group committed, leaving these triggers in these states.
    pub(crate) fn committed(&mut self, changes: impl IntoIterator<Item = (Uuid, TriggerState)>) {
        for (id, state) in changes {
            if state.is_unfinished() {
                self.states.insert(id, state);
            } else {
                self.states.remove(&id);
            }
        }
        if self.states.len() > CAP {
            self.forget();
        }
    }

    /// Trusts nothing until the next [`KnownStates::begin`].
    pub(crate) fn forget(&mut self) {
        self.version = None;
        self.states.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    #[test]
    fn states_hold_while_the_version_does() {
        let mut k = KnownStates::default();
        k.begin(7);
        k.committed([(id(1), TriggerState::Accepted), (id(2), TriggerState::Sent)]);
        k.begin(7);
        assert_eq!(
            k.split(&[id(1), id(2), id(3)]),
            (
                vec![(id(1), TriggerState::Accepted), (id(2), TriggerState::Sent)],
                vec![id(3)]
            )
        );
        // Another connection committed: nothing is trusted.
        k.begin(8);
        assert_eq!(k.split(&[id(1), id(2)]).1, vec![id(1), id(2)]);
    }

    #[test]
    fn finished_triggers_and_failures_are_forgotten() {
        let mut k = KnownStates::default();
        k.begin(1);
        k.committed([(id(1), TriggerState::Sent), (id(2), TriggerState::Sent)]);
        k.committed([(id(1), TriggerState::Completed)]);
        assert_eq!(k.split(&[id(1), id(2)]).1, vec![id(1)]);
        k.forget();
        k.begin(1);
        assert_eq!(k.split(&[id(2)]).1, vec![id(2)]);
    }
}
