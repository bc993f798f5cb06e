//! One tenant's engine state, shared by all of its connections: what is in flight, the
//! idempotency store, the open connections results go to, the send rate.
//!
//! Everything a `send` decides (duplicate, rate, capacity, ack) and everything a finishing
//! action changes happens under the one lock of [`Tenant`], so the limit holds across
//! connections and a duplicate's `ack` is always queued before the result it waits for.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use uuid::Uuid;

use super::idempotency::{ConnId, IdempotencyStore, WINDOW};
use super::outbox::Outbox;
use super::send_rate::SendRate;

/// Most not-yet-acked ids whose fault-draw attempts are remembered.
const ATTEMPTS_CAP: usize = 65_536;

pub(crate) struct Tenant {
    state: Mutex<TenantState>,
}

pub(crate) struct TenantState {
    /// Actions between `ack` and `result`: the number `maxConcurrentActions` limits.
    pub(crate) in_flight: u32,
    /// When each running action is due to finish, to tell a refused client when there
    /// will be room (`retryAfterMs`).
    pub(crate) due: BTreeSet<(Instant, Uuid)>,
    /// Acked ids: duplicates, who waits for a running action, finished results.
    pub(crate) store: IdempotencyStore,
    /// Open connections of this tenant, by id: where results are delivered.
    pub(crate) connections: HashMap<ConnId, Outbox>,
    /// `sends_per_second` is a limit per tenant.
    pub(crate) rate: SendRate,
    /// How often each id met the fault draws, so a re-send after a drawn 429/503 gets a
    /// fresh (and still repeatable) draw instead of the same refusal forever.
    pub(crate) fault_attempts: Attempts,
}

impl Tenant {
    pub(crate) fn new(idempotency_cap: usize) -> Tenant {
        Tenant {
            state: Mutex::new(TenantState {
                in_flight: 0,
                due: BTreeSet::new(),
                store: IdempotencyStore::new(idempotency_cap, WINDOW),
                connections: HashMap::new(),
                rate: SendRate::new(Instant::now()),
                fault_attempts: Attempts::default(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TenantState> {
        self.state.lock()
    }
}

impl TenantState {
    /// How long until an action could be admitted under `limit`: until enough running
    /// actions are due to finish (at least 1 ms).
    pub(crate) fn room_in(&self, limit: u32, now: Instant) -> Duration {
        let must_finish = (self.in_flight + 1).saturating_sub(limit).max(1) as usize;
        let wait = self
            .due
            .iter()
            .nth(must_finish - 1)
            .map(|(at, _)| at.saturating_duration_since(now))
            // No action is due (a limit of 0): ask again in a second.
            .unwrap_or(Duration::from_secs(1));
        wait.max(Duration::from_millis(1))
    }
}

/// Attempt counters for ids that met the fault draws and were not acked yet; bounded,
/// oldest forgotten first.
#[derive(Default)]
pub(crate) struct Attempts {
    counts: HashMap<Uuid, u32>,
    order: VecDeque<Uuid>,
}

impl Attempts {
    /// This attempt's number for `id` (0 for the first), counting it.
    pub(crate) fn next(&mut self, id: Uuid) -> u32 {
        let count = self.counts.entry(id).or_insert(0);
        let attempt = *count;
        *count += 1;
        if attempt == 0 {
            self.order.push_back(id);
            while self.counts.len() > ATTEMPTS_CAP {
                match self.order.pop_front() {
                    Some(old) => {
                        self.counts.remove(&old);
                    }
                    None => break,
                }
            }
        }
        attempt
    }

    /// The id was acked: its attempts no longer matter.
    pub(crate) fn forget(&mut self, id: &Uuid) {
        if self.counts.remove(id).is_some()
            && let Some(pos) = self.order.iter().rposition(|x| x == id)
        {
            self.order.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_in_waits_for_enough_actions_to_finish() {
        let t = Tenant::new(10);
        let now = Instant::now();
        let mut s = t.lock();
        for (i, ms) in [30u64, 10, 20].iter().enumerate() {
            s.due
                .insert((now + Duration::from_millis(*ms), Uuid::from_u128(i as u128)));
        }
        s.in_flight = 3;
        assert_eq!(s.room_in(3, now), Duration::from_millis(10));
        // Limit lowered to 2: two of the three must finish first; to 1: all three.
        assert_eq!(s.room_in(2, now), Duration::from_millis(20));
        assert_eq!(s.room_in(1, now), Duration::from_millis(30));
        s.due.clear();
        s.in_flight = 0;
        assert_eq!(s.room_in(0, now), Duration::from_secs(1));
    }

    #[test]
    fn attempts_count_per_id_and_forget() {
        let mut a = Attempts::default();
        let id = Uuid::from_u128(1);
        assert_eq!(a.next(id), 0);
        assert_eq!(a.next(id), 1);
        a.forget(&id);
        assert_eq!(a.next(id), 0);
    }
}
