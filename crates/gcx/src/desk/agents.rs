//! The simulated agents: one state machine each, driven by dwell timers (and, in the open
//! model, by arriving interactions). [`Fleet::advance`] emits every event due up to a given
//! time, in time order; it never reads the clock, so the same seed gives the same events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use gcx_protocol::AgentState;

use super::dist::TimeDist;
use super::rng::SimRng;
use super::schedule::{ArrivalPattern, Arrivals, RateProfile};
use super::workflow::{Workflow, idx, invalid_targets};

/// One event the fleet wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Position in generation order (sorting the audit by it gives the generated sequence).
    pub n: u64,
    /// The agent's index in this fleet.
    pub agent: u32,
    /// The agent's state before this event as the simulator believes the server has it
    /// (`None` for its first event, which may be any state).
    pub from: Option<AgentState>,
    pub state: AgentState,
    /// Deliberately invalid: the server must reject it (a negative test).
    pub invalid: bool,
    /// When the event happens, from the start of the run (its `timestamp`).
    pub at: Duration,
    /// The agent's interaction counter (0 before its first), for the `interactionId`.
    pub interaction: u32,
}

/// The load model.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    /// Interactions arrive on their own schedule; each goes to the agent idle longest.
    Open {
        profile: RateProfile,
        pattern: ArrivalPattern,
    },
    /// Each agent starts its next interaction after its idle time, counted from the answer
    /// to its last event: a slow server slows the run (as a real desktop would).
    Closed,
}

/// When the fleet stops generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Stop everything this long after the logins (events due later are never generated).
    Duration(Duration),
    /// Start this many interactions, let each finish, then stop (or stop at `max`).
    Iterations { count: u64, max: Option<Duration> },
}

/// What a fleet is built from.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub seed: u64,
    /// Global index of each agent (its random stream), so a shard draws exactly what the
    /// whole run would have drawn for the same agents.
    pub global_index: Vec<u64>,
    /// Agents in the whole run (all shards): logins are spread by global index.
    pub total_agents: u64,
    /// The arrival stream's id (differs per shard: each shard has its own arrivals).
    pub arrival_stream: u64,
    pub workflow: Workflow,
    /// Dwell time per state (by [`idx`]); `available` is used by the closed model only.
    pub dwell: [TimeDist; 5],
    /// Share of all events that are deliberately invalid (0 to 0.5).
    pub invalid_share: f64,
    pub model: LoadModel,
    /// Agents' first events are spread evenly over this period; arrivals start after it.
    pub login_over: Duration,
    pub end: RunEnd,
}

/// Counters the fleet keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounts {
    pub events: u64,
    pub invalid: u64,
    pub interactions_started: u64,
    pub interactions_completed: u64,
    /// Arrivals that found no idle agent.
    pub dropped_no_agent: u64,
    /// Arrivals refused because the injector was behind schedule.
    pub dropped_behind: u64,
}

#[derive(Debug, Clone)]
struct AgentSlot {
    rng: SimRng,
    state: Option<AgentState>,
    interaction: u32,
    in_interaction: bool,
}

/// Every agent of one run (or shard).
#[derive(Debug)]
pub struct Fleet {
    agents: Vec<AgentSlot>,
    workflow: Workflow,
    dwell: [TimeDist; 5],
    /// Probability of an invalid event before a valid one: share / (1 - share).
    invalid_p: f64,
    closed: bool,
    /// Agents due to act, by time then index (a deterministic order for equal times).
    timers: BinaryHeap<Reverse<(Duration, u32)>>,
    /// Open model: idle agents, longest idle first.
    idle: VecDeque<u32>,
    arrivals: Option<Arrivals>,
    next_arrival: Option<Duration>,
    end_at: Option<Duration>,
    iterations: Option<u64>,
    logged_in: usize,
    in_interaction: usize,
    counts: FleetCounts,
}

impl Fleet {
    pub fn new(spec: FleetSpec) -> Fleet {
        let n = spec.global_index.len();
        let agents: Vec<AgentSlot> = spec
            .global_index
            .iter()
            .map(|g| AgentSlot {
                rng: SimRng::new(spec.seed, *g),
                state: None,
                interaction: 0,
                in_interaction: false,
            })
            .collect();
        let mut timers = BinaryHeap::with_capacity(n);
        let total = spec.total_agents.max(n as u64).max(1) as f64;
        for (k, g) in spec.global_index.iter().enumerate() {
            let at = spec.login_over.mul_f64(*g as f64 / total);
            timers.push(Reverse((at, k as u32)));
        }
        let (closed, mut arrivals) = match &spec.model {
            LoadModel::Open { profile, pattern } => (
                false,
                Some(Arrivals::new(
                    profile,
                    *pattern,
                    SimRng::new(spec.seed, spec.arrival_stream),
                    spec.login_over,
                )),
            ),
            LoadModel::Closed => (true, None),
        };
        let next_arrival = arrivals.as_mut().and_then(Arrivals::next_at);
        let (end_at, iterations) = match spec.end {
            RunEnd::Duration(d) => (Some(spec.login_over.saturating_add(d)), None),
            RunEnd::Iterations { count, max } => {
                (max.map(|m| spec.login_over.saturating_add(m)), Some(count))
            }
        };
        let share = spec.invalid_share.clamp(0.0, 0.5);
        Fleet {
            agents,
            workflow: spec.workflow,
            dwell: spec.dwell,
            invalid_p: share / (1.0 - share),
            closed,
            timers,
            idle: VecDeque::with_capacity(n),
            arrivals,
            next_arrival,
            end_at,
            iterations,
            logged_in: 0,
            in_interaction: 0,
            counts: FleetCounts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn counts(&self) -> FleetCounts {
        self.counts
    }

    /// When the run ends at the latest (`None`: when the iterations are done).
    pub fn end_at(&self) -> Option<Duration> {
        self.end_at
    }

    fn may_start(&self) -> bool {
        self.iterations
            .is_none_or(|n| self.counts.interactions_started < n)
    }

    /// Whether nothing more will be generated once `now` has been reached.
    pub fn is_finished(&self, now: Duration) -> bool {
        if self.end_at.is_some_and(|e| now >= e) {
            return true;
        }
        if self.iterations.is_none()
            || self.logged_in < self.agents.len()
            || self.in_interaction > 0
        {
            return false;
        }
        // Nothing in progress: done when no interaction may start any more.
        !self.may_start() || (!self.closed && self.next_arrival.is_none())
    }

    /// The earliest time something is due (timers or arrivals), within the run.
    pub fn next_due(&self) -> Option<Duration> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let arrival = self.next_arrival.filter(|_| self.may_start());
        let t = match (timer, arrival) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        self.end_at.is_none_or(|e| t < e).then_some(t)
    }

    /// Emits every event due at or before `now`, in time order. `behind` says the injector
    /// is late, and arrivals are dropped (counted) rather than piled up.
    pub fn advance(&mut self, now: Duration, behind: bool, out: &mut impl FnMut(PlannedEvent)) {
        while let Some(due) = self.next_due().filter(|t| *t <= now) {
            let timer_first = self.timers.peek().is_some_and(|Reverse((t, _))| *t == due);
            if timer_first {
                if let Some(Reverse((at, agent))) = self.timers.pop() {
                    self.fire(agent, at, out);
                }
            } else {
                self.arrive(due, behind, out);
                self.next_arrival = self.arrivals.as_mut().and_then(Arrivals::next_at);
            }
        }
    }

    /// Closed model: every event of `agent` has been answered at `at`; its dwell starts.
    pub fn answered(&mut self, agent: u32, at: Duration) {
        if !self.closed {
            return;
        }
        let may_start = self.may_start();
        let Some(slot) = self.agents.get_mut(agent as usize) else {
            return;
        };
        let Some(state) = slot.state else { return };
        if state == AgentState::Available && !may_start {
            return;
        }
        let dwell = self.dwell[idx(state)].sample(&mut slot.rng);
        self.timers.push(Reverse((at.saturating_add(dwell), agent)));
    }

    fn fire(&mut self, agent: u32, at: Duration, out: &mut impl FnMut(PlannedEvent)) {
        let Some(state) = self.agents[agent as usize].state else {
            self.logged_in += 1;
            let start = self.workflow.start;
            if start != AgentState::Available {
                // Logged in mid-interaction: it counts as one.
                self.counts.interactions_started += 1;
                self.begin_interaction(agent);
            }
            self.emit(agent, start, at, out);
            return;
        };
        if state == AgentState::Available {
            // Closed model: the idle time is over.
            if !self.may_start() {
                return;
            }
            self.counts.interactions_started += 1;
            self.begin_interaction(agent);
        }
        let slot = &mut self.agents[agent as usize];
        let next = self.workflow.choose(state, &mut slot.rng);
        self.emit(agent, next, at, out);
    }

    fn arrive(&mut self, at: Duration, behind: bool, out: &mut impl FnMut(PlannedEvent)) {
        if behind {
            self.counts.dropped_behind += 1;
            return;
        }
        let Some(agent) = self.idle.pop_front() else {
            self.counts.dropped_no_agent += 1;
            return;
        };
        self.counts.interactions_started += 1;
        self.begin_interaction(agent);
        let slot = &mut self.agents[agent as usize];
        let next = self.workflow.choose(AgentState::Available, &mut slot.rng);
        self.emit(agent, next, at, out);
    }

    fn begin_interaction(&mut self, agent: u32) {
        let slot = &mut self.agents[agent as usize];
        slot.interaction += 1;
        slot.in_interaction = true;
        self.in_interaction += 1;
    }

    /// Emits `agent`'s move to `next` (preceded, when drawn, by a deliberately invalid
    /// event) and arranges what the agent does after it.
    fn emit(
        &mut self,
        agent: u32,
        next: AgentState,
        at: Duration,
        out: &mut impl FnMut(PlannedEvent),
    ) {
        let slot = &mut self.agents[agent as usize];
        let from = slot.state;
        if let Some(s) = from
            && self.invalid_p > 0.0
            && slot.rng.unit() < self.invalid_p
        {
            let targets: Vec<AgentState> = invalid_targets(s).collect();
            let bad = targets[slot.rng.below(targets.len())];
            out(PlannedEvent {
                n: self.counts.events,
                agent,
                from,
                state: bad,
                invalid: true,
                at,
                interaction: slot.interaction,
            });
            self.counts.events += 1;
            self.counts.invalid += 1;
        }
        out(PlannedEvent {
            n: self.counts.events,
            agent,
            from,
            state: next,
            invalid: false,
            at,
            interaction: slot.interaction,
        });
        self.counts.events += 1;
        slot.state = Some(next);
        if next == AgentState::Available && slot.in_interaction {
            slot.in_interaction = false;
            self.in_interaction -= 1;
            self.counts.interactions_completed += 1;
        }
        if self.closed {
            return; // the dwell starts at the answer (`answered`)
        }
        if next == AgentState::Available {
            self.idle.push_back(agent);
        } else {
            let dwell = self.dwell[idx(next)].sample(&mut slot.rng);
            self.timers.push(Reverse((at.saturating_add(dwell), agent)));
        }
    }

    /// Runs the whole schedule without a server: every event answered the moment it is
    /// due. Used to show what a seed generates (and by tests).
    pub fn run_offline(mut self) -> (Vec<PlannedEvent>, FleetCounts) {
        let mut events = Vec::new();
        let mut batch = Vec::new();
        while let Some(t) = self.next_due() {
            self.advance(t, false, &mut |e| batch.push(e));
            for e in batch.drain(..) {
                self.answered(e.agent, e.at);
                events.push(e);
            }
            if self.is_finished(t) {
                break;
            }
        }
        (events, self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn spec(model: LoadModel, end: RunEnd, invalid_share: f64) -> FleetSpec {
        FleetSpec {
            seed: 11,
            global_index: (0..20).collect(),
            total_agents: 20,
            arrival_stream: u64::MAX,
            workflow: Workflow::seed_default(),
            dwell: [
                TimeDist::Exponential { mean: ms(300) },
                TimeDist::Uniform {
                    min: ms(50),
                    max: ms(150),
                },
                TimeDist::LogNormal {
                    median: ms(500),
                    p95: ms(1500),
                },
                TimeDist::Fixed(ms(20)),
                TimeDist::Exponential { mean: ms(200) },
            ],
            invalid_share,
            model,
            login_over: ms(500),
            end,
        }
    }

    fn open(rate: f64) -> LoadModel {
        LoadModel::Open {
            profile: RateProfile::constant(rate),
            pattern: ArrivalPattern::Poisson,
        }
    }

    /// Replays the events per agent through the protocol's table.
    fn check_sequences(events: &[PlannedEvent]) {
        let mut state: HashMap<u32, AgentState> = HashMap::new();
        let mut last_at: HashMap<u32, Duration> = HashMap::new();
        for e in events {
            let prev = state.get(&e.agent).copied();
            assert_eq!(prev, e.from, "{e:?}");
            let ok = gcx_protocol::desktop::is_allowed(prev, e.state);
            assert_eq!(ok, !e.invalid, "{e:?}");
            if !e.invalid {
                state.insert(e.agent, e.state);
            }
            assert!(last_at.get(&e.agent).is_none_or(|t| *t <= e.at));
            last_at.insert(e.agent, e.at);
        }
    }

    #[test]
    fn open_model_events_follow_the_table_in_time_order() {
        let (events, counts) =
            Fleet::new(spec(open(10.0), RunEnd::Duration(ms(10_000)), 0.0)).run_offline();
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(events.iter().enumerate().all(|(i, e)| e.n == i as u64));
        check_sequences(&events);
        assert_eq!(counts.invalid, 0);
        // 20 logins plus about 100 interactions of 2 or 5 events.
        assert!(counts.interactions_started > 60, "{counts:?}");
        assert_eq!(counts.events as usize, events.len());
    }

    #[test]
    fn invalid_events_come_at_the_requested_share() {
        let (events, counts) =
            Fleet::new(spec(open(20.0), RunEnd::Duration(ms(30_000)), 0.2)).run_offline();
        check_sequences(&events);
        let share = counts.invalid as f64 / counts.events as f64;
        assert!((share - 0.2).abs() < 0.03, "{share}");
        assert!(
            events
                .iter()
                .filter(|e| e.from.is_none())
                .all(|e| !e.invalid)
        );
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a = Fleet::new(spec(open(10.0), RunEnd::Duration(ms(5_000)), 0.1)).run_offline();
        let b = Fleet::new(spec(open(10.0), RunEnd::Duration(ms(5_000)), 0.1)).run_offline();
        assert_eq!(a, b);
        let mut other = spec(open(10.0), RunEnd::Duration(ms(5_000)), 0.1);
        other.seed = 12;
        assert_ne!(a.0, Fleet::new(other).run_offline().0);
    }

    #[test]
    fn a_shard_draws_what_the_whole_run_draws_for_its_agents() {
        // Closed model: agents are independent, so shard 1/2 equals the odd agents.
        let whole = Fleet::new(spec(LoadModel::Closed, RunEnd::Duration(ms(5_000)), 0.1))
            .run_offline()
            .0;
        let mut half = spec(LoadModel::Closed, RunEnd::Duration(ms(5_000)), 0.1);
        half.global_index = (0..20).filter(|g| g % 2 == 1).collect();
        let shard = Fleet::new(half).run_offline().0;
        let states = |evs: &[PlannedEvent], agent: u32| -> Vec<(AgentState, bool, Duration)> {
            evs.iter()
                .filter(|e| e.agent == agent)
                .map(|e| (e.state, e.invalid, e.at))
                .collect()
        };
        for k in 0..10u32 {
            let mine = states(&shard, k);
            let theirs = states(&whole, 2 * k + 1);
            assert!(mine.len() >= 4);
            assert_eq!(mine, theirs, "agent {k}");
        }
    }

    #[test]
    fn iterations_end_after_every_interaction_finished() {
        for model in [open(50.0), LoadModel::Closed] {
            let (events, counts) = Fleet::new(spec(
                model.clone(),
                RunEnd::Iterations {
                    count: 30,
                    max: None,
                },
                0.0,
            ))
            .run_offline();
            assert_eq!(counts.interactions_started, 30, "{model:?}");
            assert_eq!(counts.interactions_completed, 30, "{model:?}");
            // The last event of every agent that worked is `available`.
            let mut last: HashMap<u32, AgentState> = HashMap::new();
            for e in &events {
                last.insert(e.agent, e.state);
            }
            assert!(last.values().all(|s| *s == AgentState::Available));
        }
    }

    #[test]
    fn too_few_agents_drop_arrivals_and_behind_drops_too() {
        let mut s = spec(open(200.0), RunEnd::Duration(ms(3_000)), 0.0);
        s.global_index = vec![0, 1];
        let (_, counts) = Fleet::new(s.clone()).run_offline();
        assert!(counts.dropped_no_agent > 100, "{counts:?}");
        let mut fleet = Fleet::new(s);
        let mut n = 0;
        fleet.advance(ms(3_000), true, &mut |_| n += 1);
        assert_eq!(n, 2, "only the logins");
        assert!(fleet.counts().dropped_behind > 100);
    }

    #[test]
    fn nothing_is_generated_past_the_end() {
        let (events, _) =
            Fleet::new(spec(open(10.0), RunEnd::Duration(ms(2_000)), 0.0)).run_offline();
        assert!(events.iter().all(|e| e.at < ms(2_500)));
    }
}
