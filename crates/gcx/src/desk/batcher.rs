//! Turns due events into requests: per time slice, batches of up to `batch_size`, with at
//! most one unanswered request per agent (PROTOCOL.md section 4: that is what keeps an
//! agent's events in order). An agent whose request is still out waits for the next slice.

use std::collections::VecDeque;
use std::time::Duration;

use super::wire::SentEvent;

/// One request's worth of events.
#[derive(Debug)]
pub struct Batch {
    /// Identifies the batch while its agents are bound to it (never 0).
    pub serial: u32,
    pub events: Vec<SentEvent>,
}

/// Events waiting to be sent and which agents have a request out.
#[derive(Debug)]
pub struct Batcher {
    batch_size: usize,
    /// Per agent: the serial of the batch it is bound to (0: free).
    bound: Vec<u32>,
    /// Per agent: events generated and not yet answered (closed model: the agent's idle
    /// time starts when this reaches zero).
    outstanding: Vec<u32>,
    next_serial: u32,
    pending: VecDeque<SentEvent>,
}

impl Batcher {
    pub fn new(agents: usize, batch_size: usize) -> Batcher {
        Batcher {
            batch_size: batch_size.max(1),
            bound: vec![0; agents],
            outstanding: vec![0; agents],
            next_serial: 1,
            pending: VecDeque::new(),
        }
    }

    pub fn push(&mut self, e: SentEvent) {
        if let Some(o) = self.outstanding.get_mut(e.planned.agent as usize) {
            *o += 1;
        }
        self.pending.push_back(e);
    }

    /// Events not yet in a batch.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The intended send time of the oldest event not yet in a batch.
    pub fn oldest_intended(&self) -> Option<Duration> {
        self.pending.front().map(|e| e.intended)
    }

    fn serial(&mut self) -> u32 {
        let s = self.next_serial;
        self.next_serial = self.next_serial.checked_add(1).unwrap_or(1);
        s
    }

    /// Moves every event whose agent is free into batches (appended to `out`), keeping
    /// each agent's events in order and in one batch.
    pub fn take_batches(&mut self, out: &mut VecDeque<Batch>) {
        let mut current: Option<Batch> = None;
        let mut deferred = VecDeque::new();
        while let Some(e) = self.pending.pop_front() {
            let agent = e.planned.agent as usize;
            let bound = self.bound.get(agent).copied().unwrap_or(0);
            let room = current
                .as_ref()
                .is_some_and(|b| b.events.len() < self.batch_size);
            if bound == 0 {
                if !room {
                    if let Some(full) = current.take() {
                        out.push_back(full);
                    }
                    current = Some(Batch {
                        serial: self.serial(),
                        events: Vec::with_capacity(self.batch_size.min(64)),
                    });
                }
                if let Some(b) = current.as_mut() {
                    if let Some(slot) = self.bound.get_mut(agent) {
                        *slot = b.serial;
                    }
                    b.events.push(e);
                }
            } else if room && current.as_ref().is_some_and(|b| b.serial == bound) {
                if let Some(b) = current.as_mut() {
                    b.events.push(e);
                }
            } else {
                deferred.push_back(e);
            }
        }
        if let Some(b) = current.filter(|b| !b.events.is_empty()) {
            out.push_back(b);
        }
        self.pending = deferred;
    }

    /// A batch was answered: its agents are free again. Calls `idle` for each agent with
    /// nothing left unanswered.
    pub fn release(&mut self, serial: u32, events: &[SentEvent], mut idle: impl FnMut(u32)) {
        for e in events {
            let agent = e.planned.agent as usize;
            if let Some(b) = self.bound.get_mut(agent)
                && *b == serial
            {
                *b = 0;
            }
            if let Some(o) = self.outstanding.get_mut(agent) {
                *o = o.saturating_sub(1);
                if *o == 0 {
                    idle(e.planned.agent);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::agents::PlannedEvent;
    use gcx_protocol::AgentState;
    use uuid::Uuid;

    fn ev(n: u64, agent: u32) -> SentEvent {
        SentEvent {
            planned: PlannedEvent {
                n,
                agent,
                from: None,
                state: AgentState::Available,
                invalid: false,
                at: Duration::from_millis(n),
                interaction: 0,
            },
            sequence_id: Uuid::new_v4(),
            intended: Duration::from_millis(n),
            latency: Duration::ZERO,
            answered_at: Duration::ZERO,
            genesys: None,
        }
    }

    fn agents_of(b: &Batch) -> Vec<u32> {
        b.events.iter().map(|e| e.planned.agent).collect()
    }

    #[test]
    fn fills_batches_up_to_the_size() {
        let mut b = Batcher::new(10, 3);
        for a in 0..7 {
            b.push(ev(u64::from(a), a));
        }
        let mut out = VecDeque::new();
        b.take_batches(&mut out);
        assert_eq!(
            out.iter().map(|x| x.events.len()).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        assert_eq!(b.pending_len(), 0);
    }

    #[test]
    fn one_unanswered_request_per_agent() {
        let mut b = Batcher::new(4, 2);
        b.push(ev(0, 0));
        b.push(ev(1, 0)); // same agent, fits in the same batch
        b.push(ev(2, 0)); // batch full: must wait, not go in a second batch
        b.push(ev(3, 1));
        let mut out = VecDeque::new();
        b.take_batches(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(agents_of(&out[0]), vec![0, 0]);
        assert_eq!(agents_of(&out[1]), vec![1]);
        assert_eq!(b.pending_len(), 1);
        // Still bound: nothing moves.
        let mut more = VecDeque::new();
        b.take_batches(&mut more);
        assert!(more.is_empty());
        // Answered: agent 0 is free, and it still has one event outstanding.
        let first = out.pop_front().unwrap();
        let mut idle = Vec::new();
        b.release(first.serial, &first.events, |a| idle.push(a));
        assert!(idle.is_empty());
        b.take_batches(&mut more);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].events[0].planned.n, 2);
        let last = more.pop_front().unwrap();
        b.release(last.serial, &last.events, |a| idle.push(a));
        assert_eq!(idle, vec![0]);
    }

    #[test]
    fn order_per_agent_is_kept_across_slices() {
        let mut b = Batcher::new(3, 1);
        let mut out = VecDeque::new();
        let mut seen: Vec<u64> = Vec::new();
        for n in 0..30u64 {
            b.push(ev(n, (n % 3) as u32));
        }
        while b.pending_len() > 0 || !out.is_empty() {
            b.take_batches(&mut out);
            while let Some(batch) = out.pop_front() {
                seen.extend(batch.events.iter().map(|e| e.planned.n));
                b.release(batch.serial, &batch.events, |_| {});
            }
        }
        for agent in 0..3 {
            let mine: Vec<u64> = seen.iter().copied().filter(|n| n % 3 == agent).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(mine.len(), 10);
        }
    }
}
