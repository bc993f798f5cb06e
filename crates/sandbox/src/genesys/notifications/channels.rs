//! One tenant's channels (PROTOCOL.md 9.2): at most [`MAX_CHANNELS`], each with at most
//! [`MAX_TOPICS_PER_CHANNEL`] user topics, an expiry 24 h after its last subscription
//! change, and the one socket that takes its notifications.
//!
//! A channel removed for a 21st closes its socket (1000) without a word; an expired one
//! first sends `v2.system.no_longer_subscribed.<id>`.
//!
//! Bookkeeping only: times come in as arguments, and a socket is its [`SocketHandle`],
//! whose pushes never wait, so the table can be changed and published from under one lock
//! (which is what makes a socket that takes over a channel miss nothing).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use gcx_protocol::genesys_notifications::{
    CHANNEL_LIFETIME_SECS, Channel, MAX_CHANNELS, MAX_TOPICS_PER_CHANNEL,
    NO_LONGER_SUBSCRIBED_PREFIX, UserTopic,
};
use tokio::time::Instant;

use super::bodies;
use super::outbox::SocketHandle;

/// Close frame of a socket whose channel was removed for a 21st channel.
pub(crate) const CLOSE_EVICTED: (u16, &str) = (1000, "channel removed: a 21st channel was created");
/// Close frame of a socket whose channel expired.
pub(crate) const CLOSE_EXPIRED: (u16, &str) = (1000, "channel expired");

const LIFETIME: Duration = Duration::from_secs(CHANNEL_LIFETIME_SECS);

/// A subscription change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// `POST`: these topics join the channel's.
    Add(Vec<UserTopic>),
    /// `PUT`: these topics become the channel's.
    Replace(Vec<UserTopic>),
    /// `DELETE`: the channel keeps no topic.
    Clear,
}

/// Why a subscription change was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChangeError {
    #[error("no such channel")]
    NotFound,
    #[error(
        "the channel would hold {count} topics; at most {MAX_TOPICS_PER_CHANNEL} are allowed per channel, so nothing was changed"
    )]
    TooManyTopics { count: usize },
}

/// What one notification came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Queued on a channel's socket.
    pub sent: u64,
    /// For a subscribed channel without a socket (or with one too far behind).
    pub dropped: u64,
}

/// One channel.
#[derive(Debug)]
struct Entry {
    connect_uri: String,
    /// Subscribed topics, in a stable order for the listings.
    topics: BTreeSet<UserTopic>,
    /// When the channel goes unless its subscriptions change.
    expires_at: Instant,
    /// The same instant on the wall clock, as the channel's `expires`.
    expires: String,
    /// The tenant's use clock at the last creation, subscription request or socket
    /// connect: the least recently used channel goes first.
    last_used: u64,
    /// Creation order, for the listing.
    created: u64,
    /// The socket that takes the notifications, if one is open.
    socket: Option<SocketHandle>,
}

impl Entry {
    fn view(&self, id: &str) -> Channel {
        Channel {
            id: id.to_owned(),
            connect_uri: self.connect_uri.clone(),
            expires: Some(self.expires.clone()),
        }
    }

    fn renew(&mut self, now: Instant, wall: DateTime<Utc>) {
        self.expires_at = now + LIFETIME;
        self.expires = expiry_text(wall);
    }
}

fn expiry_text(wall: DateTime<Utc>) -> String {
    let lifetime = chrono::Duration::seconds(CHANNEL_LIFETIME_SECS as i64);
    gcx_protocol::time::format(wall + lifetime)
}

/// One tenant's channels.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    entries: HashMap<String, Entry>,
    /// Ticks at every use of a channel.
    uses: u64,
    created: u64,
}

impl Channels {
    fn tick(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// Creates channel `id`; past [`MAX_CHANNELS`] one goes first: among the channels
    /// without a socket if there are any (as the SDK documents), the least recently used.
    /// Returns the new channel and the id of the removed one, whose socket (if any) is
    /// closed.
    pub(crate) fn create(
        &mut self,
        id: String,
        connect_uri: String,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> (Channel, Option<String>) {
        let mut evicted = None;
        while self.entries.len() >= MAX_CHANNELS {
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (e.socket.is_some(), e.last_used))
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else { break };
            self.remove(&victim, None, CLOSE_EVICTED);
            evicted = Some(victim);
        }
        self.created += 1;
        let entry = Entry {
            connect_uri,
            topics: BTreeSet::new(),
            expires_at: now + LIFETIME,
            expires: expiry_text(wall),
            last_used: self.tick(),
            created: self.created,
            socket: None,
        };
        let view = entry.view(&id);
        self.entries.insert(id, entry);
        (view, evicted)
    }

    /// Removes channel `id`; its socket gets `notice` (if any), then the close frame.
    fn remove(&mut self, id: &str, notice: Option<String>, close: (u16, &'static str)) {
        if let Some(entry) = self.entries.remove(id)
            && let Some(socket) = entry.socket
        {
            if let Some(notice) = notice {
                socket.push(Utf8Bytes::from(notice));
            }
            socket.close(close.0, close.1);
        }
    }

    /// Removes every channel expired at `now`; its socket is told
    /// `v2.system.no_longer_subscribed.<id>`, then closed. Returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            let notice = bodies::message_frame(
                &format!("{NO_LONGER_SUBSCRIBED_PREFIX}.{id}"),
                "the channel expired 24 h after its last subscription change: create a new channel and subscribe again",
            );
            self.remove(id, Some(notice), CLOSE_EXPIRED);
        }
        expired.len()
    }

    /// Every channel, oldest first.
    pub(crate) fn list(&self) -> Vec<Channel> {
        let mut entries: Vec<(&String, &Entry)> = self.entries.iter().collect();
        entries.sort_by_key(|(_, e)| e.created);
        entries.into_iter().map(|(id, e)| e.view(id)).collect()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// The channel's topics, marking it used; `None` for an unknown channel.
    pub(crate) fn topics(&mut self, id: &str) -> Option<Vec<UserTopic>> {
        let tick = self.tick();
        let entry = self.entries.get_mut(id)?;
        entry.last_used = tick;
        Some(entry.topics.iter().copied().collect())
    }

    /// Applies a subscription change and renews the channel's expiry; returns the topics
    /// it holds then. A change past [`MAX_TOPICS_PER_CHANNEL`] changes nothing.
    pub(crate) fn change(
        &mut self,
        id: &str,
        change: Change,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Result<Vec<UserTopic>, ChangeError> {
        let tick = self.tick();
        let entry = self.entries.get_mut(id).ok_or(ChangeError::NotFound)?;
        entry.last_used = tick;
        let topics: BTreeSet<UserTopic> = match change {
            Change::Add(added) => entry.topics.iter().copied().chain(added).collect(),
            Change::Replace(topics) => topics.into_iter().collect(),
            Change::Clear => BTreeSet::new(),
        };
        if topics.len() > MAX_TOPICS_PER_CHANNEL {
            return Err(ChangeError::TooManyTopics {
                count: topics.len(),
            });
        }
        entry.topics = topics;
        entry.renew(now, wall);
        Ok(entry.topics.iter().copied().collect())
    }

    /// Makes `socket` the channel's socket, marking the channel used; returns the socket
    /// it replaces (for the caller to close), or `Err` for an unknown channel.
    pub(crate) fn attach(
        &mut self,
        id: &str,
        socket: SocketHandle,
    ) -> Result<Option<SocketHandle>, ChangeError> {
        let tick = self.tick();
        let entry = self.entries.get_mut(id).ok_or(ChangeError::NotFound)?;
        entry.last_used = tick;
        Ok(entry.socket.replace(socket))
    }

    /// Forgets socket `socket_id` if it is still the channel's socket.
    pub(crate) fn detach(&mut self, id: &str, socket_id: u64) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.socket.as_ref().is_some_and(|s| s.id() == socket_id)
        {
            entry.socket = None;
        }
    }

    /// Queues one notification of `topic` on the socket of every channel subscribed to
    /// it; `frame` is built only if some channel is.
    pub(crate) fn deliver(
        &self,
        topic: &UserTopic,
        frame: impl FnOnce() -> Option<Utf8Bytes>,
    ) -> Delivery {
        let mut delivery = Delivery::default();
        let mut build = Some(frame);
        let mut built: Option<Utf8Bytes> = None;
        for entry in self.entries.values() {
            if !entry.topics.contains(topic) {
                continue;
            }
            if let Some(build) = build.take() {
                built = build();
            }
            let Some(frame) = &built else {
                return delivery;
            };
            match &entry.socket {
                Some(socket) if socket.push(frame.clone()) => delivery.sent += 1,
                _ => delivery.dropped += 1,
            }
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use gcx_protocol::genesys_notifications::UserTopicKind;
    use uuid::Uuid;

    use super::super::outbox::Outgoing;
    use super::*;

    fn topic(n: u128) -> UserTopic {
        UserTopic {
            user_id: Uuid::from_u128(n),
            kind: UserTopicKind::RoutingStatus,
        }
    }

    fn with_channels(n: usize, now: Instant) -> Channels {
        let mut c = Channels::default();
        for i in 0..n {
            c.create(
                format!("c{i}"),
                format!("ws://h/channels/c{i}"),
                now,
                Utc::now(),
            );
        }
        c
    }

    #[test]
    fn a_21st_channel_removes_the_least_recently_used_unconnected_one() {
        let now = Instant::now();
        let mut c = with_channels(MAX_CHANNELS, now);
        // c0 is used again, c1 has a socket: c2 is the oldest use without one.
        c.topics("c0").unwrap();
        let (socket, mut queue) = SocketHandle::new(1);
        c.attach("c1", socket).unwrap();
        let (_, evicted) = c.create("new".into(), "ws://h/channels/new".into(), now, Utc::now());
        assert_eq!(evicted.as_deref(), Some("c2"));
        assert_eq!(c.list().len(), MAX_CHANNELS);
        assert!(c.contains("c0") && c.contains("c1") && !c.contains("c2"));
        assert_eq!(c.list().last().unwrap().id, "new");

        // With a socket on every channel, the least recently used goes, socket and all.
        let mut c = with_channels(MAX_CHANNELS, now);
        let mut queues = Vec::new();
        for i in (0..MAX_CHANNELS).rev() {
            let (socket, q) = SocketHandle::new(i as u64);
            c.attach(&format!("c{i}"), socket).unwrap();
            queues.push(q);
        }
        let (_, evicted) = c.create("new".into(), "u".into(), now, Utc::now());
        assert_eq!(
            evicted.as_deref(),
            Some(format!("c{}", MAX_CHANNELS - 1).as_str())
        );
        let closed = queues[0].try_recv().unwrap();
        assert!(matches!(closed, Outgoing::Close(1000, _)), "{closed:?}");
        assert!(queue.try_recv().is_err());
    }

    #[test]
    fn too_many_topics_change_nothing_and_a_change_renews_the_expiry() {
        let now = Instant::now();
        let mut c = with_channels(1, now);
        let first = c.list()[0].expires.clone();
        let thousand: Vec<UserTopic> = (0..1000).map(topic).collect();
        assert_eq!(
            c.change("c0", Change::Replace(thousand.clone()), now, Utc::now())
                .unwrap()
                .len(),
            1000
        );
        // Already there: adding it again is no change in count.
        assert!(
            c.change("c0", Change::Add(vec![topic(5)]), now, Utc::now())
                .is_ok()
        );
        assert_eq!(
            c.change("c0", Change::Add(vec![topic(1000)]), now, Utc::now()),
            Err(ChangeError::TooManyTopics { count: 1001 })
        );
        assert_eq!(c.topics("c0").unwrap(), thousand);
        assert_eq!(
            c.change("nope", Change::Clear, now, Utc::now()),
            Err(ChangeError::NotFound)
        );

        let later = now + Duration::from_secs(3600);
        c.change(
            "c0",
            Change::Clear,
            later,
            Utc::now() + chrono::Duration::hours(1),
        )
        .unwrap();
        assert!(c.list()[0].expires > first);
        assert_eq!(c.expire(now + LIFETIME), 0, "renewed an hour later");
        let (socket, mut queue) = SocketHandle::new(1);
        c.attach("c0", socket).unwrap();
        assert_eq!(c.expire(later + LIFETIME), 1);
        assert!(c.list().is_empty());
        match queue.try_recv() {
            Ok(Outgoing::Text(t)) => {
                assert!(
                    t.as_str().contains("v2.system.no_longer_subscribed.c0"),
                    "{t}"
                )
            }
            other => panic!("expected the notice, got {other:?}"),
        }
        assert!(matches!(queue.try_recv(), Ok(Outgoing::Close(1000, _))));
    }

    #[test]
    fn notifications_reach_subscribed_sockets_and_the_rest_are_dropped() {
        let now = Instant::now();
        let mut c = with_channels(3, now);
        for id in ["c0", "c1"] {
            c.change(id, Change::Add(vec![topic(1)]), now, Utc::now())
                .unwrap();
        }
        let (socket, mut queue) = SocketHandle::new(1);
        c.attach("c0", socket).unwrap();
        let mut builds = 0;
        let d = c.deliver(&topic(1), || {
            builds += 1;
            Some(Utf8Bytes::from_static("n"))
        });
        assert_eq!(
            d,
            Delivery {
                sent: 1,
                dropped: 1
            }
        );
        assert_eq!(builds, 1);
        assert!(matches!(queue.try_recv(), Ok(Outgoing::Text(_))));
        let d = c.deliver(&topic(2), || panic!("nobody is subscribed"));
        assert_eq!(d, Delivery::default());

        // A newer socket takes over; the old one is no longer detached by its own end.
        let (newer, mut newer_queue) = SocketHandle::new(2);
        let old = c.attach("c0", newer).unwrap().unwrap();
        assert_eq!(old.id(), 1);
        c.detach("c0", 1);
        c.deliver(&topic(1), || Some(Utf8Bytes::from_static("n")));
        assert!(matches!(newer_queue.try_recv(), Ok(Outgoing::Text(_))));
        c.detach("c0", 2);
        assert_eq!(
            c.deliver(&topic(1), || Some(Utf8Bytes::from_static("n"))),
            Delivery {
                sent: 0,
                dropped: 2
            }
        );
    }
}
