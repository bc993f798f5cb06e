//! The engine's clock: ends each running action when its latency is up, to within the
//! operating system's timer slack (tens of microseconds), not tokio's timer tick.
//!
//! tokio rounds every deadline up to its next millisecond tick and parks with a
//! millisecond timeout, so an action of "20 ms" answered 21 to 22 ms after its ack: the
//! sandbox ran an engine 5-10 % slower than the one it was asked for, and a client's slot
//! utilisation measured against it could not reach the engine's true rate. One thread
//! holds every pending deadline in a heap, sleeps exactly until the earliest, and runs
//! its job there: handing a result over from this thread, rather than waking a task to do
//! it, takes one thread wake-up (100-400 µs on a busy VM) out of every action.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

/// What runs at an alarm's deadline, on the clock's thread. It must be short: every later
/// alarm waits for it.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// One pending job. Ordered by deadline, then by arrival.
struct Alarm {
    due: Instant,
    order: u64,
    job: Job,
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

/// The handle the engine keeps; the clock's thread ends when it is dropped, and the jobs
/// still pending are dropped without running.
pub(crate) struct Clock {
    alarms: mpsc::Sender<(Instant, Job)>,
    /// The thread's wake-ups, so a test sees it sleeps while no alarm is due.
    #[cfg(test)]
    wakes: Arc<AtomicU64>,
}

impl Clock {
    /// Starts the clock's thread.
    pub(crate) fn start() -> std::io::Result<Clock> {
        let (alarms, incoming) = mpsc::channel();
        let wakes = Arc::new(AtomicU64::new(0));
        let counted = wakes.clone();
        std::thread::Builder::new()
            .name("sandbox-engine-clock".into())
            .spawn(move || run(&incoming, &counted))?;
        #[cfg(not(test))]
        drop(wakes);
        Ok(Clock {
            alarms,
            #[cfg(test)]
            wakes,
        })
    }

    /// Runs `job` on the clock's thread at `due` (at once when it has passed). `false`
    /// when the clock has stopped (the job is dropped).
    pub(crate) fn run_at(&self, due: Instant, job: Job) -> bool {
        self.alarms.send((due, job)).is_ok()
    }
}

/// The thread: runs what is due, then sleeps until the earliest alarm or a new one (with
/// none pending, until a new one). Each pass counts one wake-up in `wakes`.
fn run(incoming: &mpsc::Receiver<(Instant, Job)>, wakes: &AtomicU64) {
    let mut heap: BinaryHeap<Reverse<Alarm>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        wakes.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(a)| a.due <= now) {
            if let Some(Reverse(alarm)) = heap.pop() {
                (alarm.job)();
            }
        }
        let next = match heap.peek() {
            Some(Reverse(a)) => incoming.recv_timeout(a.due.saturating_duration_since(now)),
            None => incoming
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((due, job)) => {
                order += 1;
                heap.push(Reverse(Alarm { due, order, job }));
                // Take whatever else is queued without sleeping in between.
                while let Ok((due, job)) = incoming.try_recv() {
                    order += 1;
                    heap.push(Reverse(Alarm { due, order, job }));
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

    #[test]
    fn runs_jobs_in_deadline_order_and_not_early() {
        let clock = Clock::start().unwrap();
        let start = Instant::now();
        let (tx, rx) = mpsc::channel();
        for ms in [30u64, 10, 20, 0] {
            let tx = tx.clone();
            let due = start + Duration::from_millis(ms);
            assert!(clock.run_at(
                due,
                Box::new(move || tx.send((ms, Instant::now() >= due)).unwrap())
            ));
        }
        drop(tx);
        let ran: Vec<(u64, bool)> = rx.iter().take(4).collect();
        assert_eq!(ran, [(0, true), (10, true), (20, true), (30, true)]);
    }

    #[test]
    fn it_sleeps_until_the_earliest_alarm() {
        let clock = Clock::start().unwrap();
        let (tx, rx) = mpsc::channel();
        let hour = Instant::now() + Duration::from_secs(3600);
        assert!(clock.run_at(hour, Box::new(|| {})));
        let soon = Instant::now() + Duration::from_millis(300);
        assert!(clock.run_at(soon, Box::new(move || tx.send(()).unwrap())));
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let woken = clock.wakes.load(Ordering::Relaxed);
        // Its first pass, one per alarm received (at most), and the 300 ms deadline.
        assert!(woken <= 4, "{woken} wake-ups for two alarms");
        // Then nothing is due for an hour: half a second of waiting costs nothing.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(clock.wakes.load(Ordering::Relaxed), woken);
    }

    #[test]
    fn a_dropped_clock_drops_its_pending_jobs() {
        let clock = Clock::start().unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        assert!(clock.run_at(
            Instant::now() + Duration::from_secs(3600),
            Box::new(move || drop(tx))
        ));
        drop(clock);
        // The job's sender goes with the job: the channel ends without a message.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected),
            "an hour's job is dropped with its clock"
        );
    }
}
