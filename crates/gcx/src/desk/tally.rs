//! Accounting: every generated event ends in exactly one outcome, and each outcome is
//! judged against what the event was generated as (valid or deliberately invalid). The
//! per-agent transition tracking of the seed, with its bug fixed: the tracker keys on the
//! agent, not on the (unique) sequenceId, so transitions really are checked.

use std::collections::BTreeMap;

use gcx_protocol::AgentState;
use serde::{Deserialize, Serialize};

use super::workflow::idx;

/// How one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted it; `duplicate` when an answer said it had seen it already
    /// (a retry of a processed request).
    Accepted { duplicate: bool },
    /// The server rejected the transition.
    Rejected {
        code: Option<String>,
        duplicate: bool,
    },
    /// Its request was refused for good (it was never processed): the reason.
    Failed { reason: String },
    /// Sent, but query-back never found it.
    Missing,
}

/// Counts for one (from, to) transition, split by how the event was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionCounts {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Other outcomes (failed, missing).
    pub unresolved: u64,
}

/// One row of the transition table in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionRow {
    /// Short state name, or `(first)` for an agent's first event.
    pub from: String,
    pub to: String,
    /// Generated as deliberately invalid.
    pub invalid: bool,
    #[serde(flatten)]
    pub counts: TransitionCounts,
    /// Valid but rejected, per sent (the seed's "state mismatch frequency").
    pub mismatch_rate: f64,
}

/// The run's accounting.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub total_events: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub expected_rejections: u64,
    pub state_mismatches: u64,
    pub unexpected_acceptances: u64,
    pub failed: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// `[from (5 = first event)][to][invalid as usize]`.
    transitions: [[[TransitionCounts; 2]; 5]; 6],
    /// Rejection codes seen, with counts.
    pub rejection_codes: BTreeMap<String, u64>,
    /// Why requests failed for good, with event counts.
    pub failure_reasons: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one event's final outcome. `from` is the state the simulator believed the
    /// server had for the agent.
    pub fn record(
        &mut self,
        from: Option<AgentState>,
        to: AgentState,
        invalid: bool,
        outcome: &Outcome,
    ) {
        self.total_events += 1;
        let row = &mut self.transitions[from.map_or(5, idx)][idx(to)][usize::from(invalid)];
        row.sent += 1;
        match outcome {
            Outcome::Accepted { duplicate } => {
                self.accepted += 1;
                row.accepted += 1;
                self.duplicates += u64::from(*duplicate);
                if invalid {
                    self.unexpected_acceptances += 1;
                }
            }
            Outcome::Rejected { code, duplicate } => {
                self.rejected += 1;
                row.rejected += 1;
                self.duplicates += u64::from(*duplicate);
                if invalid {
                    self.expected_rejections += 1;
                } else {
                    self.state_mismatches += 1;
                }
                *self
                    .rejection_codes
                    .entry(code.clone().unwrap_or_else(|| "(none)".into()))
                    .or_default() += 1;
            }
            Outcome::Failed { reason } => {
                self.failed += 1;
                row.unresolved += 1;
                *self.failure_reasons.entry(reason.clone()).or_default() += 1;
            }
            Outcome::Missing => {
                self.missing += 1;
                row.unresolved += 1;
            }
        }
    }

    /// Every transition that was sent at least once.
    pub fn transition_rows(&self) -> Vec<TransitionRow> {
        let mut out = Vec::new();
        for (f, per_to) in self.transitions.iter().enumerate() {
            for (t, per_kind) in per_to.iter().enumerate() {
                for (k, c) in per_kind.iter().enumerate() {
                    if c.sent == 0 {
                        continue;
                    }
                    let invalid = k == 1;
                    out.push(TransitionRow {
                        from: AgentState::ALL
                            .get(f)
                            .map_or("(first)", |s| s.short_name())
                            .to_owned(),
                        to: AgentState::ALL[t].short_name().to_owned(),
                        invalid,
                        counts: *c,
                        mismatch_rate: if invalid {
                            0.0
                        } else {
                            c.rejected as f64 / c.sent as f64
                        },
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentState::*;

    #[test]
    fn each_outcome_lands_in_one_place() {
        let mut t = Tally::default();
        let acc = Outcome::Accepted { duplicate: false };
        let rej = Outcome::Rejected {
            code: Some("invalid.transition".into()),
            duplicate: false,
        };
        t.record(None, Available, false, &acc);
        t.record(Some(Available), Busy, false, &acc);
        t.record(Some(Available), Wrapping, true, &rej); // expected rejection
        t.record(Some(Busy), Connected, false, &rej); // mismatch
        t.record(Some(Busy), Busy, true, &acc); // unexpected acceptance
        t.record(Some(Connected), Disconnected, false, &Outcome::Missing);
        t.record(
            Some(Disconnected),
            Wrapping,
            false,
            &Outcome::Failed {
                reason: "400".into(),
            },
        );
        assert_eq!(t.total_events, 7);
        assert_eq!(
            t.accepted + t.rejected + t.failed + t.missing,
            t.total_events
        );
        assert_eq!(
            (
                t.expected_rejections,
                t.state_mismatches,
                t.unexpected_acceptances
            ),
            (1, 1, 1)
        );
        assert_eq!(t.rejection_codes["invalid.transition"], 2);
        let rows = t.transition_rows();
        assert_eq!(rows.len(), 7);
        let busy_connected = rows
            .iter()
            .find(|r| r.from == "busy" && r.to == "connected")
            .unwrap();
        assert_eq!(busy_connected.mismatch_rate, 1.0);
        assert_eq!(rows[0].from, "available");
        assert!(rows.iter().any(|r| r.from == "(first)"));
    }
}
