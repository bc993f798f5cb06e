//! The engine's clock: wakes each running action when its latency is up, to within the
//! operating system's timer slack (tens of microseconds), not tokio's timer tick.
//!
//! tokio rounds every deadline up to its next millisecond tick and parks with a
//! millisecond timeout, so an action of "20 ms" answered 21 to 22 ms after its ack: the
//! sandbox ran an engine 5-10 % slower than the one it was asked for, and a client's slot
//! utilisation measured against it could not reach the engine's true rate. One thread
//! holds every pending deadline in a heap and sleeps exactly until the earliest.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

/// One pending wake-up. Ordered by deadline, then by arrival.
struct Alarm {
    due: Instant,
    order: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// The handle the engine keeps; the clock's thread ends when it is dropped.
pub(crate) struct Clock {
    alarms: mpsc::Sender<(Instant, oneshot::Sender<()>)>,
}

impl Clock {
    /// Starts the clock's thread.
    pub(crate) fn start() -> std::io::Result<Clock> {
        let (alarms, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name("sandbox-engine-clock".into())
            .spawn(move || run(&incoming))?;
        Ok(Clock { alarms })
    }

    /// Completes at `due` (at once when it has passed). `false` when the clock stopped
    /// first (the engine is going away). The alarm is set now, not when first polled.
    pub(crate) fn sleep_until(&self, due: Instant) -> impl Future<Output = bool> + use<> {
        let (wake, woken) = oneshot::channel();
        let set = self.alarms.send((due, wake)).is_ok();
        async move { set && woken.await.is_ok() }
    }
}

fn run(incoming: &mpsc::Receiver<(Instant, oneshot::Sender<()>)>) {
    let mut heap: BinaryHeap<Reverse<Alarm>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(a)| a.due <= now) {
            if let Some(Reverse(alarm)) = heap.pop() {
                // A sleeper that gave up (its sandbox stopping) is fine.
                let _ = alarm.wake.send(());
            }
        }
        let next = match heap.peek() {
            Some(Reverse(a)) => incoming.recv_timeout(a.due.saturating_duration_since(now)),
            None => incoming
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((due, wake)) => {
                order += 1;
                heap.push(Reverse(Alarm { due, order, wake }));
                // Take whatever else is queued without sleeping in between.
                while let Ok((due, wake)) = incoming.try_recv() {
                    order += 1;
                    heap.push(Reverse(Alarm { due, order, wake }));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wakes_in_deadline_order_and_not_early() {
        let clock = std::sync::Arc::new(Clock::start().unwrap());
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for ms in [30u64, 10, 20, 0] {
            let clock = clock.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let due = start + Duration::from_millis(ms);
                assert!(clock.sleep_until(due).await);
                assert!(Instant::now() >= due, "woke before its deadline");
                tx.send(ms).unwrap();
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(ms) = rx.recv().await {
            order.push(ms);
        }
        assert_eq!(order, [0, 10, 20, 30]);
    }

    #[tokio::test]
    async fn a_dropped_clock_ends_its_sleepers() {
        let clock = Clock::start().unwrap();
        let sleeping = clock.sleep_until(Instant::now() + Duration::from_secs(3600));
        drop(clock);
        let woken = tokio::time::timeout(Duration::from_secs(5), sleeping).await;
        assert_eq!(woken, Ok(false), "an hour's alarm ends with its clock");
    }
}
