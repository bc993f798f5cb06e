//! [`Slots`]: the client's copy of the engine's concurrency limit. A FIFO semaphore whose
//! size can change at any time (`connected`, `capacity`, `--concurrency`).
//!
//! **Invariant:** `in_use <= limit` whenever a slot is granted. Lowering the limit below
//! `in_use` takes nothing back: holders finish, and no one is granted a slot until
//! `in_use` is below the new limit (the engine behaves the same way, PROTOCOL.md 3.6).

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// A resizable FIFO semaphore. Cheap to clone.
#[derive(Clone, Default)]
pub struct Slots {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    limit: u32,
    in_use: u32,
    /// Waiters in arrival order; a dropped waiter's sender fails and is skipped.
    waiters: VecDeque<oneshot::Sender<()>>,
}

impl State {
    /// Grants slots to waiters while there is room.
    fn grant(&mut self) {
        while self.in_use < self.limit {
            let Some(waiter) = self.waiters.pop_front() else {
                return;
            };
            if waiter.send(()).is_ok() {
                self.in_use += 1;
            }
        }
    }
}

/// One held slot; dropping it frees the slot.
pub struct Slot {
    slots: Slots,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Slots {
    /// No slots until [`Slots::set_limit`] gives some.
    pub fn new(limit: u32) -> Slots {
        Slots {
            state: Arc::new(Mutex::new(State {
                limit,
                ..State::default()
            })),
        }
    }

    /// Waits (first come, first served) for a slot. Cancel-safe: a slot granted to a
    /// waiter that was dropped at the same moment is given back.
    pub async fn acquire(&self) -> Slot {
        self.wait(false).await
    }

    /// As [`Slots::acquire`], but ahead of every waiter: for a trigger that had a slot,
    /// gave it back on a refusal, and must not queue behind new ones to retry.
    pub async fn acquire_first(&self) -> Slot {
        self.wait(true).await
    }

    /// Takes a place at the back of the queue now, to be waited on later with
    /// [`SlotRequest::granted`]: for work admitted in an order that its tasks, scheduled
    /// as the runtime pleases, would not keep.
    pub fn request(&self) -> SlotRequest {
        self.queue(false)
    }

    async fn wait(&self, first: bool) -> Slot {
        self.queue(first).granted().await
    }

    fn queue(&self, first: bool) -> SlotRequest {
        SlotRequest {
            slots: self.clone(),
            first,
            place: self.join(first),
        }
    }

    /// A slot now if there is room and no one ahead, else a place in the queue.
    fn join(&self, first: bool) -> Place {
        let mut state = self.state.lock();
        if state.in_use < state.limit && (first || state.waiters.is_empty()) {
            state.in_use += 1;
            return Place::Granted;
        }
        let (tx, rx) = oneshot::channel();
        if first {
            state.waiters.push_front(tx);
        } else {
            state.waiters.push_back(tx);
        }
        Place::Queued(Waiting {
            receiver: Some(rx),
            slots: self.clone(),
        })
    }

    /// Changes the limit; grants waiting slots if it rose.
    pub fn set_limit(&self, limit: u32) {
        let mut state = self.state.lock();
        state.limit = limit;
        state.grant();
    }

    pub fn limit(&self) -> u32 {
        self.state.lock().limit
    }

    pub fn in_use(&self) -> u32 {
        self.state.lock().in_use
    }

    /// Tasks waiting for a slot.
    pub fn waiting(&self) -> usize {
        let state = self.state.lock();
        state.waiters.iter().filter(|w| !w.is_closed()).count()
    }

    fn release(&self) {
        let mut state = self.state.lock();
        state.in_use = state.in_use.saturating_sub(1);
        state.grant();
    }
}

/// A place taken in the queue ([`Slots::request`]). Dropping it gives back whatever it
/// holds: a slot granted and not taken, or its place.
pub struct SlotRequest {
    slots: Slots,
    first: bool,
    place: Place,
}

enum Place {
    /// Granted (when it joined, or since); `in_use` counts it.
    Granted,
    Queued(Waiting),
    /// Handed out as a [`Slot`], which gives it back.
    Taken,
}

impl SlotRequest {
    /// Waits for the slot. Cancel-safe, as [`Slots::acquire`].
    pub async fn granted(mut self) -> Slot {
        while let Place::Queued(waiting) = &mut self.place {
            let granted = match waiting.receiver.as_mut() {
                Some(receiver) => receiver.await.is_ok(),
                None => false,
            };
            // Granted or not, the receiver is finished with: nothing to give back on drop.
            waiting.receiver = None;
            self.place = if granted {
                Place::Granted
            } else {
                // Err would mean the sender was dropped without granting, which `State`
                // never does while a clone of `Slots` (ours) lives; queue again to be safe.
                self.slots.join(self.first)
            };
        }
        // `Granted` here: `Taken` is set only below, and `self` is consumed by this call.
        self.place = Place::Taken;
        Slot {
            slots: self.slots.clone(),
        }
    }
}

impl Drop for SlotRequest {
    fn drop(&mut self) {
        if matches!(self.place, Place::Granted) {
            self.slots.release();
        }
    }
}

impl std::fmt::Debug for SlotRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotRequest")
    }
}

/// A waiter in the queue; if it is dropped after being granted, it gives the slot back.
struct Waiting {
    receiver: Option<oneshot::Receiver<()>>,
    slots: Slots,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn never_grants_more_than_the_limit() {
        let slots = Slots::new(2);
        let a = slots.acquire().await;
        let _b = slots.acquire().await;
        assert_eq!(slots.in_use(), 2);
        let third = tokio::time::timeout(Duration::from_millis(20), slots.acquire()).await;
        assert!(third.is_err());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_millis(20), slots.acquire())
            .await
            .unwrap();
        assert_eq!(slots.in_use(), 2);
    }

    #[tokio::test]
    async fn a_lowered_limit_waits_for_holders_to_finish() {
        let slots = Slots::new(3);
        let held: Vec<Slot> = vec![
            slots.acquire().await,
            slots.acquire().await,
            slots.acquire().await,
        ];
        slots.set_limit(1);
        let s2 = slots.clone();
        let waiter = tokio::spawn(async move { s2.acquire().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut held = held;
        held.pop();
        held.pop();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "1 of 1 still in use");
        held.pop();
        let _s = tokio::time::timeout(Duration::from_millis(100), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(slots.in_use(), 1);
    }

    #[tokio::test]
    async fn raising_the_limit_wakes_waiters_in_order() {
        let slots = Slots::new(0);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (s, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = s.acquire().await;
                order.lock().push(i);
                slot
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        slots.set_limit(5);
        let mut held = Vec::new();
        for t in tasks {
            held.push(t.await.unwrap());
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn acquire_first_goes_ahead_of_the_queue() {
        let slots = Slots::new(1);
        let held = slots.acquire().await;
        let s = slots.clone();
        let late = tokio::spawn(async move { s.acquire().await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = slots.clone();
        let retry = tokio::spawn(async move { s.acquire_first().await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        let _r = tokio::time::timeout(Duration::from_millis(100), retry)
            .await
            .unwrap()
            .unwrap();
        assert!(!late.is_finished());
    }

    #[tokio::test]
    async fn requests_are_granted_in_the_order_they_were_made_not_awaited() {
        let slots = Slots::new(0);
        let requests: Vec<SlotRequest> = (0..4).map(|_| slots.request()).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Awaited last-made first: the queue still holds them as they were made.
        for (i, request) in requests.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let slot = request.granted().await;
                order.lock().push(i);
                slot
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // A plain acquire made after them queues behind them.
        let s = slots.clone();
        let late = tokio::spawn(async move { s.acquire().await });
        tokio::time::sleep(Duration::from_millis(2)).await;
        let granted = || {
            let mut o = order.lock().clone();
            o.sort_unstable();
            o
        };
        slots.set_limit(2);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(granted(), vec![0, 1]);
        slots.set_limit(4);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(granted(), vec![0, 1, 2, 3]);
        assert!(!late.is_finished());
        for t in tasks {
            drop(t.await.unwrap());
        }
        let _late = tokio::time::timeout(Duration::from_millis(100), late)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_request_dropped_unawaited_gives_back_what_it_held() {
        let slots = Slots::new(1);
        let granted = slots.request();
        let queued = slots.request();
        assert_eq!((slots.in_use(), slots.waiting()), (1, 1));
        drop(granted);
        // The freed slot went to the queued request, which now holds it.
        assert_eq!((slots.in_use(), slots.waiting()), (1, 0));
        drop(queued);
        assert_eq!(slots.in_use(), 0);
        let _a = slots.acquire().await;
        assert_eq!(slots.in_use(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_takes_nothing() {
        let slots = Slots::new(1);
        let held = slots.acquire().await;
        for _ in 0..10 {
            let _ = tokio::time::timeout(Duration::from_millis(1), slots.acquire()).await;
        }
        drop(held);
        assert_eq!(slots.in_use(), 0);
        let _a = slots.acquire().await;
        assert_eq!(slots.in_use(), 1);
    }
}
