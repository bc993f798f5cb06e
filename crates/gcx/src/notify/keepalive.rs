//! The watchdog's rule for one socket (pure: instants are passed in). The server sends a
//! heartbeat about every 30 s; after one quiet interval the client pings
//! (`{"message":"ping"}`, answered by a pong); after two quiet intervals the socket is
//! dead. Any message counts as a sign of life, a notification as much as a heartbeat.

use std::time::Duration;

use tokio::time::Instant;

/// The quiet interval unless told otherwise: five seconds past the server's 30 s
/// heartbeat, so a heartbeat on time never races the ping.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(35);

/// What the watchdog does when it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing is due before this instant.
    Wait(Instant),
    /// Quiet for an interval and not pinged since the last message: ping now.
    Ping,
    /// Quiet for two intervals: the socket is dead.
    Dead { quiet: Duration },
}

/// Whether a ping went out after the last message (a message answers it).
fn pinged(last_message: Instant, pinged_at: Option<Instant>) -> bool {
    pinged_at.is_some_and(|p| p >= last_message)
}

/// The verdict at `now` for a socket whose last message came at `last_message`, pinged at
/// `pinged_at` (if ever), watched at `interval`.
pub fn verdict(
    now: Instant,
    last_message: Instant,
    pinged_at: Option<Instant>,
    interval: Duration,
) -> Verdict {
    let quiet = now.saturating_duration_since(last_message);
    if quiet >= interval * 2 {
        Verdict::Dead { quiet }
    } else if quiet >= interval && !pinged(last_message, pinged_at) {
        Verdict::Ping
    } else {
        Verdict::Wait(next_check(last_message, pinged_at, interval))
    }
}

/// When the watchdog must next look: at one quiet interval (to ping) unless it pinged
/// already, then at two (dead). A message moves both later.
pub fn next_check(
    last_message: Instant,
    pinged_at: Option<Instant>,
    interval: Duration,
) -> Instant {
    if pinged(last_message, pinged_at) {
        last_message + interval * 2
    } else {
        last_message + interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(35);

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn a_line_with_traffic_waits_one_interval_from_its_last_message() {
        let t0 = Instant::now();
        assert_eq!(verdict(at(t0, 10), t0, None, I), Verdict::Wait(at(t0, 35)));
        assert_eq!(
            verdict(at(t0, 40), at(t0, 30), None, I),
            Verdict::Wait(at(t0, 65))
        );
    }

    #[test]
    fn a_quiet_line_pings_once_then_waits_for_the_second_interval() {
        let t0 = Instant::now();
        assert_eq!(verdict(at(t0, 35), t0, None, I), Verdict::Ping);
        let pinged = Some(at(t0, 35));
        assert_eq!(
            verdict(at(t0, 36), t0, pinged, I),
            Verdict::Wait(at(t0, 70))
        );
        assert_eq!(
            verdict(at(t0, 70), t0, pinged, I),
            Verdict::Dead {
                quiet: Duration::from_secs(70)
            }
        );
    }

    #[test]
    fn a_message_after_the_ping_answers_it() {
        let t0 = Instant::now();
        // Pinged at 35, a pong at 36: the next ping is due an interval after the pong.
        let (pinged, pong) = (Some(at(t0, 35)), at(t0, 36));
        assert_eq!(
            verdict(at(t0, 50), pong, pinged, I),
            Verdict::Wait(at(t0, 71))
        );
        assert_eq!(verdict(at(t0, 71), pong, pinged, I), Verdict::Ping);
    }

    #[test]
    fn two_quiet_intervals_are_dead_even_without_a_ping() {
        // A watchdog that woke late (a busy machine) still judges by the clock.
        let t0 = Instant::now();
        assert!(matches!(
            verdict(at(t0, 80), t0, None, I),
            Verdict::Dead { .. }
        ));
    }
}
