//! One tenant's injected eventIds and what became of each, so a re-sent event is answered
//! as before (accepted once, never applied twice) and a retryable refusal is taken on its
//! re-send. Bounded: the oldest eventIds are forgotten first.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

/// What the sandbox did with an eventId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    /// Refused, and the client may send it again (the re-send is accepted).
    RetryableRefused,
    /// Refused for good; a re-send gets the same answer.
    Refused,
}

/// The eventIds of one tenant, oldest first.
#[derive(Debug)]
pub(crate) struct Ledger {
    outcomes: HashMap<Uuid, Outcome>,
    /// Insertion order, for oldest-first eviction.
    order: VecDeque<Uuid>,
    cap: usize,
}

impl Ledger {
    pub fn new(cap: usize) -> Ledger {
        Ledger {
            outcomes: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn get(&self, id: &Uuid) -> Option<&Outcome> {
        self.outcomes.get(id)
    }

    /// Records `outcome` for `id` (replacing an earlier one in place, or evicting the
    /// oldest id when the ledger is full).
    pub fn record(&mut self, id: Uuid, outcome: Outcome) {
        if let Some(slot) = self.outcomes.get_mut(&id) {
            *slot = outcome;
            return;
        }
        while self.order.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.outcomes.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id);
        self.outcomes.insert(id, outcome);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_ids_are_forgotten_first_and_updates_keep_their_place() {
        let mut l = Ledger::new(2);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        l.record(a, Outcome::RetryableRefused);
        l.record(b, Outcome::Accepted);
        l.record(a, Outcome::Accepted);
        assert_eq!(l.len(), 2);
        l.record(c, Outcome::Refused);
        assert_eq!(l.get(&a), None);
        assert_eq!(l.get(&b), Some(&Outcome::Accepted));
        assert_eq!(l.get(&c), Some(&Outcome::Refused));
    }
}
