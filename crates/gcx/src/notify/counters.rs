//! What a watcher's channels count, and the gaps they had: the times a channel could not
//! receive (notifications are not kept for a disconnected socket, so whatever happened
//! in a gap was never seen).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

/// Most gaps kept for [`crate::notify::Watcher::gaps`]; older ones are dropped (still
/// counted in [`WatchStats`]).
pub const GAPS_KEPT: usize = 1000;

/// A time one channel could not receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The channel's index in the watcher (0-based, in topic order).
    pub channel: usize,
    /// When its socket was lost (for a dead socket: its last message).
    pub from: Instant,
    /// When a socket received again, subscribed.
    pub to: Instant,
    pub cause: GapCause,
}

/// Why a channel had a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// The socket closed or failed unexpectedly.
    Closed,
    /// Two quiet intervals without a message.
    Dead,
    /// `v2.system.no_longer_subscribed`: a new channel had to be made.
    NoLongerSubscribed,
    /// `v2.system.token_revoked`: a new token and a new channel.
    TokenRevoked,
}

/// A channel that stopped for good (the others go on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelFailure {
    pub channel: usize,
    pub error: String,
}

/// A snapshot of a watcher's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WatchStats {
    /// Channels the watcher holds.
    pub channels: usize,
    /// Topics asked for (after removing duplicates).
    pub topics: usize,
    /// Topics the server rejected at the start.
    pub rejected: usize,
    /// User-topic notifications received.
    pub notifications: u64,
    pub heartbeats: u64,
    pub pings: u64,
    pub pongs: u64,
    /// Messages that were neither a notification of a watched topic nor a system message.
    pub unknown_messages: u64,
    /// Channels created, the first ones included.
    pub channels_created: u64,
    /// Sockets opened, the first ones included.
    pub sockets_opened: u64,
    /// Sockets reopened on the same channel after a close or a dead socket.
    pub reconnects: u64,
    /// `socket_closing` messages answered by a switch to a new socket.
    pub socket_closing: u64,
    /// Sockets declared dead by the watchdog.
    pub dead_sockets: u64,
    /// New channels made and subscribed after `no_longer_subscribed`, `token_revoked` or
    /// a channel the server no longer knew.
    pub resubscribes: u64,
    /// Periodic re-subscriptions of the same topics (a channel expires 24 h after its last
    /// subscription change).
    pub renewals: u64,
    /// Times a channel could not receive, and their total and longest length.
    pub gaps: u64,
    #[serde(serialize_with = "as_millis")]
    pub gap_total: Duration,
    #[serde(serialize_with = "as_millis")]
    pub longest_gap: Duration,
    /// Channels that stopped for good.
    pub channels_failed: u64,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The counters every channel of one watcher adds to.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub notifications: AtomicU64,
    pub heartbeats: AtomicU64,
    pub pings: AtomicU64,
    pub pongs: AtomicU64,
    pub unknown_messages: AtomicU64,
    pub channels_created: AtomicU64,
    pub sockets_opened: AtomicU64,
    pub reconnects: AtomicU64,
    pub socket_closing: AtomicU64,
    pub dead_sockets: AtomicU64,
    pub resubscribes: AtomicU64,
    pub renewals: AtomicU64,
}

/// One watcher's counters, gaps and failures, shared by its channels.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    gaps: Mutex<GapLog>,
    failures: Mutex<Vec<ChannelFailure>>,
}

#[derive(Debug, Default)]
struct GapLog {
    recent: VecDeque<Gap>,
    count: u64,
    total: Duration,
    longest: Duration,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Shared {
    pub fn record_gap(&self, gap: Gap) {
        let length = gap.to.saturating_duration_since(gap.from);
        let mut log = self.gaps.lock();
        log.count += 1;
        log.total += length;
        log.longest = log.longest.max(length);
        if log.recent.len() == GAPS_KEPT {
            log.recent.pop_front();
        }
        log.recent.push_back(gap);
    }

    pub fn record_failure(&self, channel: usize, error: String) {
        self.failures.lock().push(ChannelFailure { channel, error });
    }

    pub fn gaps(&self) -> Vec<Gap> {
        self.gaps.lock().recent.iter().copied().collect()
    }

    pub fn failures(&self) -> Vec<ChannelFailure> {
        self.failures.lock().clone()
    }

    pub fn stats(&self, channels: usize, topics: usize, rejected: usize) -> WatchStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gaps = self.gaps.lock();
        WatchStats {
            channels,
            topics,
            rejected,
            notifications: get(&c.notifications),
            heartbeats: get(&c.heartbeats),
            pings: get(&c.pings),
            pongs: get(&c.pongs),
            unknown_messages: get(&c.unknown_messages),
            channels_created: get(&c.channels_created),
            sockets_opened: get(&c.sockets_opened),
            reconnects: get(&c.reconnects),
            socket_closing: get(&c.socket_closing),
            dead_sockets: get(&c.dead_sockets),
            resubscribes: get(&c.resubscribes),
            renewals: get(&c.renewals),
            gaps: gaps.count,
            gap_total: gaps.total,
            longest_gap: gaps.longest,
            channels_failed: self.failures.lock().len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_add_up_and_only_the_recent_ones_are_kept() {
        let shared = Shared::default();
        let t0 = Instant::now();
        for i in 0..(GAPS_KEPT as u64 + 5) {
            shared.record_gap(Gap {
                channel: 0,
                from: t0,
                to: t0 + Duration::from_millis(i % 10),
                cause: GapCause::Closed,
            });
        }
        let stats = shared.stats(1, 1, 0);
        assert_eq!(stats.gaps, GAPS_KEPT as u64 + 5);
        assert_eq!(stats.longest_gap, Duration::from_millis(9));
        // 1005 gaps of i % 10 ms: 100 full rounds of 45 ms, then 0+1+2+3+4.
        assert_eq!(stats.gap_total, Duration::from_millis(100 * 45 + 10));
        let kept = shared.gaps();
        assert_eq!(kept.len(), GAPS_KEPT);
        assert_eq!(kept[0].to - t0, Duration::from_millis(5));
    }
}
