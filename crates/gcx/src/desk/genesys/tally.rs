//! The Events API's own accounting: per event kind, how many were accepted, refused with a
//! message or failed, and each refusal message's count. A transition's outcome in the
//! simulator's tally is the worst of its events': refused if any was refused, failed if
//! any failed, accepted only when every one was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::map::Mapped;
use super::send::Fate;
use crate::desk::tally::Outcome;

/// One event kind's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCount {
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
}

/// Every injected event, by kind (`routingStatus`, `userEstablished`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesysTally {
    pub by_kind: BTreeMap<String, KindCount>,
    /// Each refusal's message and how many events got it.
    pub refused_messages: BTreeMap<String, u64>,
}

impl GenesysTally {
    fn kind(&mut self, m: &Mapped) -> &mut KindCount {
        let k = m.event.kind();
        if !self.by_kind.contains_key(k) {
            self.by_kind.insert(k.to_owned(), KindCount::default());
        }
        // Inserted just above when absent.
        self.by_kind.get_mut(k).unwrap_or_else(|| unreachable!())
    }

    /// Counts one transition's events and returns the transition's outcome.
    pub fn settle<'a>(
        &mut self,
        mapped: &[Mapped],
        fates: impl Iterator<Item = &'a Option<Fate>>,
    ) -> Outcome {
        let mut refused: Option<String> = None;
        let mut failed: Option<String> = None;
        for (m, fate) in mapped.iter().zip(fates.chain(std::iter::repeat(&None))) {
            match fate {
                Some(Fate::Accepted { .. }) => self.kind(m).accepted += 1,
                Some(Fate::Refused { message }) => {
                    self.kind(m).refused += 1;
                    *self.refused_messages.entry(message.clone()).or_default() += 1;
                    refused.get_or_insert_with(|| message.clone());
                }
                Some(Fate::Failed { reason }) => {
                    self.kind(m).failed += 1;
                    failed.get_or_insert_with(|| reason.clone());
                }
                None => {
                    self.kind(m).failed += 1;
                    failed.get_or_insert_with(|| "no answer for this event".into());
                }
            }
        }
        match (refused, failed) {
            (Some(message), _) => Outcome::Rejected {
                code: Some(message),
                duplicate: false,
            },
            (None, Some(reason)) => Outcome::Failed { reason },
            (None, None) => Outcome::Accepted { duplicate: false },
        }
    }

    /// Counts a transition whose events were never sent.
    pub fn unsent(&mut self, mapped: &[Mapped]) {
        for m in mapped {
            self.kind(m).failed += 1;
        }
    }

    /// Adds another shard's counts.
    pub fn add(&mut self, other: &GenesysTally) {
        for (k, c) in &other.by_kind {
            let e = self.by_kind.entry(k.clone()).or_default();
            e.accepted += c.accepted;
            e.refused += c.refused;
            e.failed += c.failed;
        }
        for (m, n) in &other.refused_messages {
            *self.refused_messages.entry(m.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> KindCount {
        self.by_kind
            .values()
            .fold(KindCount::default(), |a, k| KindCount {
                accepted: a.accepted + k.accepted,
                refused: a.refused + k.refused,
                failed: a.failed + k.failed,
            })
    }
}
