//! One tenant's acked correlationIds (PROTOCOL.md section 3.6): which are still running
//! and who waits for them, and the result of each finished one, kept for re-sends.
//!
//! Bounded: an id counts for the idempotency window (24 h) or until it is one of more than
//! `cap` ids, whichever comes first; the oldest finished id is evicted first. A running
//! action is never evicted (its result still has to reach its connections), so the store
//! may exceed `cap` by at most the tenant's in-flight count.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use uuid::Uuid;

/// The idempotency window of PROTOCOL.md section 3.6.
pub(crate) const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Identifies a live connection within the sandbox.
pub(crate) type ConnId = u64;

/// What the store knows about one acked correlationId.
pub(crate) enum Acked {
    /// Still executing; the result goes to these connections (each sent this id).
    Running { subscribers: Vec<ConnId> },
    /// Finished: the `result` frame, sent again in answer to a duplicate.
    Finished { result: Utf8Bytes },
}

struct Slot {
    /// When the id was acked: the window runs from here.
    acked_at: Instant,
    acked: Acked,
}

pub(crate) struct IdempotencyStore {
    slots: HashMap<Uuid, Slot>,
    /// Ids oldest first, with the ack time that identifies the slot they were pushed for
    /// (a stale pair, whose id was re-acked after its window, is skipped on eviction).
    order: VecDeque<(Uuid, Instant)>,
    /// Most ids remembered (`--idempotency-cap`).
    cap: usize,
    window: Duration,
}

impl IdempotencyStore {
    pub(crate) fn new(cap: usize, window: Duration) -> IdempotencyStore {
        IdempotencyStore {
            slots: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            window,
        }
    }

    /// The id's state if it was acked within the window.
    pub(crate) fn get_mut(&mut self, id: &Uuid, now: Instant) -> Option<&mut Acked> {
        let window = self.window;
        self.slots
            .get_mut(id)
            .filter(|s| now.saturating_duration_since(s.acked_at) < window)
            .map(|s| &mut s.acked)
    }

    /// Records a freshly acked id as running for `subscriber`, then evicts what is over
    /// the cap or out of the window.
    pub(crate) fn insert_running(&mut self, id: Uuid, subscriber: ConnId, now: Instant) {
        let slot = Slot {
            acked_at: now,
            acked: Acked::Running {
                subscribers: vec![subscriber],
            },
        };
        self.slots.insert(id, slot);
        self.order.push_back((id, now));
        self.evict(now);
    }

    /// Marks `id` finished with `result`; returns the connections waiting for it.
    pub(crate) fn finish(&mut self, id: &Uuid, result: Utf8Bytes) -> Vec<ConnId> {
        match self.slots.get_mut(id) {
            Some(slot) => match std::mem::replace(&mut slot.acked, Acked::Finished { result }) {
                Acked::Running { subscribers } => subscribers,
                Acked::Finished { .. } => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn evict(&mut self, now: Instant) {
        let mut rotations = 0usize;
        while let Some(&(id, at)) = self.order.front() {
            let over_cap = self.slots.len() > self.cap;
            let expired = now.saturating_duration_since(at) >= self.window;
            if !over_cap && !expired {
                break;
            }
            self.order.pop_front();
            match self.slots.entry(id) {
                MapEntry::Occupied(e) if e.get().acked_at == at => {
                    if matches!(e.get().acked, Acked::Running { .. }) {
                        // Never drop a running action: rotate it to the back, and give up
                        // once every remaining id has been seen running.
                        self.order.push_back((id, at));
                        rotations += 1;
                        if rotations > self.slots.len() {
                            break;
                        }
                    } else {
                        e.remove();
                    }
                }
                // A stale pair: the id was re-acked later and has a newer pair.
                _ => {}
            }
        }
        // Stale pairs only arise from re-acks after the window; compact if they pile up.
        if self.order.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.order
                .retain(|(id, at)| slots.get(id).is_some_and(|s| s.acked_at == *at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn finished(store: &mut IdempotencyStore, n: u128, now: Instant) {
        store.insert_running(id(n), 1, now);
        store.finish(&id(n), Utf8Bytes::from_static("r"));
    }

    #[test]
    fn keeps_the_newest_cap_ids_and_evicts_oldest_first() {
        let now = Instant::now();
        let mut s = IdempotencyStore::new(2, WINDOW);
        for n in 1..=3 {
            finished(&mut s, n, now);
        }
        assert_eq!(s.len(), 2);
        assert!(s.get_mut(&id(1), now).is_none());
        assert!(s.get_mut(&id(2), now).is_some());
        assert!(s.get_mut(&id(3), now).is_some());
    }

    #[test]
    fn running_ids_are_never_evicted() {
        let now = Instant::now();
        let mut s = IdempotencyStore::new(1, WINDOW);
        s.insert_running(id(1), 7, now);
        finished(&mut s, 2, now);
        finished(&mut s, 3, now);
        assert!(matches!(
            s.get_mut(&id(1), now),
            Some(Acked::Running { .. })
        ));
        assert_eq!(s.finish(&id(1), Utf8Bytes::from_static("r")), vec![7]);
        assert!(s.len() <= 2);
    }

    #[test]
    fn ids_older_than_the_window_do_not_count() {
        let start = Instant::now();
        let mut s = IdempotencyStore::new(10, Duration::from_millis(50));
        finished(&mut s, 1, start);
        let later = start + Duration::from_millis(60);
        assert!(s.get_mut(&id(1), later).is_none());
        finished(&mut s, 2, later);
        assert_eq!(s.len(), 1, "the expired id is evicted on the next insert");
        // Re-acking the expired id makes it count again.
        finished(&mut s, 1, later);
        assert!(s.get_mut(&id(1), later).is_some());
    }

    #[test]
    fn order_stays_bounded_under_churn() {
        let start = Instant::now();
        let mut s = IdempotencyStore::new(100, Duration::from_millis(1));
        for round in 0..50u64 {
            let now = start + Duration::from_millis(round * 2);
            for n in 0..20 {
                finished(&mut s, n, now);
            }
        }
        assert!(s.order.len() <= 2 * s.len() + 64);
    }
}
