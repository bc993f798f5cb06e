//! The desktop workflow the simulated agents follow: which state comes after which, with
//! what probability. Only transitions the protocol allows may appear (PROTOCOL.md section
//! 4); deliberately invalid events are injected separately (see [`super::agents`]).

use gcx_protocol::AgentState;

use super::rng::SimRng;

/// Index of a state in [`AgentState::ALL`] (tables here are arrays of five).
pub fn idx(s: AgentState) -> usize {
    match s {
        AgentState::Available => 0,
        AgentState::Busy => 1,
        AgentState::Connected => 2,
        AgentState::Disconnected => 3,
        AgentState::Wrapping => 4,
    }
}

/// The workflow: a start state and, per state, weighted next states.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Every agent's first event (the protocol allows any state first).
    pub start: AgentState,
    /// Per state (by [`idx`]): next states with their probabilities (summing to 1).
    next: [Vec<(AgentState, f64)>; 5],
}

/// Why a workflow cannot be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    #[error(
        "{from} -> {to} is not an allowed transition (from {} the protocol allows: {})",
        from.short_name(),
        allowed(*from)
    )]
    NotAllowed { from: AgentState, to: AgentState },
    #[error("the weight of {} -> {} must be a finite number >= 0, got {weight}", from.short_name(), to.short_name())]
    BadWeight {
        from: AgentState,
        to: AgentState,
        weight: f64,
    },
    #[error(
        "state `{}` is reachable but has no way out (give it a next state with a weight above 0; allowed: {})",
        state.short_name(),
        allowed(*state)
    )]
    NoWayOut { state: AgentState },
}

fn allowed(s: AgentState) -> String {
    s.next_states()
        .iter()
        .map(|n| n.short_name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Workflow {
    /// The seed's workflow, available -> busy -> connected -> disconnected -> wrapping ->
    /// available, with the busy -> available branch (a reserved contact that never
    /// connects) taken one time in ten.
    pub fn seed_default() -> Workflow {
        use AgentState::*;
        Workflow::new(
            Available,
            &[
                (Available, Busy, 1.0),
                (Busy, Connected, 0.9),
                (Busy, Available, 0.1),
                (Connected, Disconnected, 1.0),
                (Disconnected, Wrapping, 1.0),
                (Wrapping, Available, 1.0),
            ],
        )
        .unwrap_or_else(|_| unreachable!("the seed workflow is valid"))
    }

    /// A workflow from weighted edges. Weights per state are normalised. Every state
    /// reachable from `start` must have a way out and lead back to `available`.
    pub fn new(
        start: AgentState,
        edges: &[(AgentState, AgentState, f64)],
    ) -> Result<Workflow, WorkflowError> {
        let mut next: [Vec<(AgentState, f64)>; 5] = Default::default();
        for &(from, to, weight) in edges {
            if !from.can_move_to(to) {
                return Err(WorkflowError::NotAllowed { from, to });
            }
            if !weight.is_finite() || weight < 0.0 {
                return Err(WorkflowError::BadWeight { from, to, weight });
            }
            if weight > 0.0 {
                next[idx(from)].push((to, weight));
            }
        }
        for list in &mut next {
            let total: f64 = list.iter().map(|(_, w)| w).sum();
            for (_, w) in list.iter_mut() {
                *w /= total;
            }
        }
        let wf = Workflow { start, next };
        wf.check()?;
        Ok(wf)
    }

    fn reachable_from(&self, from: AgentState) -> [bool; 5] {
        let mut seen = [false; 5];
        let mut stack = vec![from];
        seen[idx(from)] = true;
        while let Some(s) = stack.pop() {
            for (n, _) in &self.next[idx(s)] {
                if !seen[idx(*n)] {
                    seen[idx(*n)] = true;
                    stack.push(*n);
                }
            }
        }
        seen
    }

    /// Every reachable state needs a way out. (With the protocol's table every way out
    /// leads back to `available`, so an interaction always ends.)
    fn check(&self) -> Result<(), WorkflowError> {
        let reach = self.reachable_from(self.start);
        for s in AgentState::ALL {
            if reach[idx(s)] && self.next[idx(s)].is_empty() {
                return Err(WorkflowError::NoWayOut { state: s });
            }
        }
        Ok(())
    }

    /// Draws the state after `from`.
    pub fn choose(&self, from: AgentState, rng: &mut SimRng) -> AgentState {
        let list = &self.next[idx(from)];
        let mut u = rng.unit();
        for (s, p) in list {
            if u < *p {
                return *s;
            }
            u -= p;
        }
        // Rounding left a sliver: the last state takes it. `check` guarantees the list of a
        // reachable state is not empty; an unreachable one falls back to the protocol table.
        list.last()
            .map(|(s, _)| *s)
            .unwrap_or(from.next_states()[0])
    }

    /// Every edge with its probability, for reports.
    pub fn edges(&self) -> impl Iterator<Item = (AgentState, AgentState, f64)> + '_ {
        AgentState::ALL.into_iter().flat_map(move |from| {
            self.next[idx(from)]
                .iter()
                .map(move |(to, p)| (from, *to, *p))
        })
    }
}

/// States an event may deliberately (invalidly) move to from `from`: everything the
/// protocol does not allow, including staying put.
pub fn invalid_targets(from: AgentState) -> impl Iterator<Item = AgentState> {
    AgentState::ALL
        .into_iter()
        .filter(move |to| !from.can_move_to(*to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentState::*;

    #[test]
    fn the_seed_workflow_branches_one_in_ten() {
        let wf = Workflow::seed_default();
        let mut r = SimRng::new(3, 3);
        let n = 100_000;
        let back = (0..n)
            .filter(|_| wf.choose(Busy, &mut r) == Available)
            .count();
        assert!((back as f64 / n as f64 - 0.1).abs() < 0.01);
        assert_eq!(wf.choose(Connected, &mut r), Disconnected);
    }

    #[test]
    fn refusals_say_why() {
        type Edges = &'static [(AgentState, AgentState, f64)];
        let cases: &[(Edges, WorkflowError)] = &[
            (
                &[(Available, Connected, 1.0)],
                WorkflowError::NotAllowed {
                    from: Available,
                    to: Connected,
                },
            ),
            (
                &[(Available, Busy, 1.0), (Busy, Connected, 1.0)],
                WorkflowError::NoWayOut { state: Connected },
            ),
            (
                &[(Available, Busy, -1.0)],
                WorkflowError::BadWeight {
                    from: Available,
                    to: Busy,
                    weight: -1.0,
                },
            ),
            (
                &[(Available, Busy, 1.0), (Busy, Available, 0.0)],
                WorkflowError::NoWayOut { state: Busy },
            ),
        ];
        for (edges, want) in cases {
            assert_eq!(Workflow::new(Available, edges).unwrap_err(), *want);
        }
    }

    #[test]
    fn unreachable_states_need_no_way_out() {
        // Busy -> Available only: connected and the rest are never visited.
        let wf = Workflow::new(Available, &[(Available, Busy, 1.0), (Busy, Available, 1.0)]);
        assert!(wf.is_ok());
    }

    #[test]
    fn invalid_targets_are_exactly_the_forbidden_ones() {
        for from in AgentState::ALL {
            let bad: Vec<_> = invalid_targets(from).collect();
            assert_eq!(bad.len() + from.next_states().len(), 5);
            assert!(bad.iter().all(|t| !from.can_move_to(*t)));
        }
    }
}
