//! [`Watcher`]: many channels as one stream of [`Observed`] notifications.
//!
//! [`Watcher::start`] spreads the topics over channels ([`super::plan`]), establishes
//! every channel at once (create, open the socket, subscribe) and returns only when all
//! are connected and subscribed, so a caller may start causing notifications at once.
//! Heartbeats, pongs and system topics are handled inside ([`super::socket`]); only
//! notifications of user topics come out, stamped when they were read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use gcx_protocol::genesys_notifications::UserTopic;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{NotificationsApi, RejectedTopic};
use super::counters::{ChannelFailure, Gap, Shared, WatchStats};
use super::error::NotifyError;
use super::keepalive;
use super::plan;
use super::socket::ChannelTask;
use crate::retry::RetryPolicy;

/// Most rejected topics logged one by one at the start; the rest are counted.
const REJECTIONS_LOGGED: usize = 20;

/// One notification of a watched user topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub topic: UserTopic,
    /// When its message was read from the socket (tokio's clock, for latencies).
    pub received_at: Instant,
    /// The same moment on the wall clock (for output).
    pub received_wall: DateTime<Utc>,
    /// The `eventBody` as sent ([`super::keys::KeyReader`] reads the typed bodies).
    pub body: Value,
}

/// How a watcher keeps its channels.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The keep-alive's quiet interval: a ping after one, a dead socket after two
    /// ([`keepalive::DEFAULT_INTERVAL`]).
    pub keepalive: Duration,
    /// Limit on one socket's dial and upgrade.
    pub handshake_timeout: Duration,
    /// How long a channel's first socket may take to open, counting retries (at start,
    /// and for a new channel replacing one).
    pub start_deadline: Duration,
    /// Back-off between reconnects; its deadline bounds one outage, after which the
    /// channel stops (a [`ChannelFailure`]).
    pub reconnect: RetryPolicy,
    /// How often the same topics are subscribed again: a channel expires 24 h after its
    /// last subscription change.
    pub renew_every: Duration,
    /// After `socket_closing`, how long the old socket is still read (the server closes
    /// it once the new one is open).
    pub switch_grace: Duration,
    /// Notifications waiting for the caller; the sockets' readers wait when it is full.
    pub queue: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            keepalive: keepalive::DEFAULT_INTERVAL,
            handshake_timeout: Duration::from_secs(10),
            start_deadline: Duration::from_secs(30),
            reconnect: RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(30))
                .with_deadline(Duration::from_secs(600)),
            renew_every: Duration::from_secs(12 * 3600),
            switch_grace: Duration::from_secs(10),
            queue: 65_536,
        }
    }
}

/// Handle to running channels. Dropping it stops them (without waiting).
pub struct Watcher {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    channels: usize,
    topics: usize,
    rejected: Vec<RejectedTopic>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Watcher {
    /// Watches `topics`: returns once every channel is connected and subscribed. An error
    /// when there are more topics than 20 channels hold (before anything is sent), when a
    /// channel cannot be made, or when every topic was rejected (naming the permissions
    /// missing). Rejections of some topics only are in [`Watcher::rejected`].
    pub async fn start(
        api: NotificationsApi,
        topics: Vec<UserTopic>,
        options: WatchOptions,
    ) -> Result<(Watcher, mpsc::Receiver<Observed>), NotifyError> {
        let groups = plan::split(topics)?;
        let topic_count: usize = groups.iter().map(Vec::len).sum();
        let (out, observed) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(Shared::default());
        let cancel = CancellationToken::new();
        let channels: Vec<ChannelTask> = groups
            .into_iter()
            .enumerate()
            .map(|(index, group)| {
                ChannelTask::new(
                    index,
                    group.iter().map(ToString::to_string).collect(),
                    api.clone(),
                    options.clone(),
                    out.clone(),
                    shared.clone(),
                    cancel.clone(),
                )
            })
            .collect();
        drop(out);
        let results = join_all(channels.iter().map(|c| c.establish(options.start_deadline))).await;
        let mut established = Vec::with_capacity(results.len());
        let mut error = None;
        for result in results {
            match result {
                Ok(e) => established.push(e),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        let rejected: Vec<RejectedTopic> = established
            .iter()
            .flat_map(|e| e.subscription.rejected.iter().cloned())
            .collect();
        if error.is_none() && rejected.len() == topic_count {
            error = Some(all_rejected(&rejected));
        }
        if let Some(error) = error {
            join_all(established.into_iter().map(|e| e.close())).await;
            return Err(error);
        }
        for r in rejected.iter().take(REJECTIONS_LOGGED) {
            tracing::warn!(
                topic = %r.topic,
                reason = r.reason.as_deref().unwrap_or(""),
                missing_permissions = %r.missing_permissions.join(","),
                "topic rejected"
            );
        }
        if rejected.len() > REJECTIONS_LOGGED {
            tracing::warn!(
                more = rejected.len() - REJECTIONS_LOGGED,
                "more topics rejected (Watcher::rejected lists them all)"
            );
        }
        let channel_count = channels.len();
        let tasks = channels
            .into_iter()
            .zip(established)
            .map(|(channel, e)| tokio::spawn(channel.run(e)))
            .collect();
        Ok((
            Watcher {
                shared,
                cancel,
                tasks,
                channels: channel_count,
                topics: topic_count,
                rejected,
            },
            observed,
        ))
    }

    /// The counters so far.
    pub fn stats(&self) -> WatchStats {
        self.shared
            .stats(self.channels, self.topics, self.rejected.len())
    }

    /// Topics the server rejected at the start.
    pub fn rejected(&self) -> &[RejectedTopic] {
        &self.rejected
    }

    /// The most recent gaps (at most [`super::counters::GAPS_KEPT`]).
    pub fn gaps(&self) -> Vec<Gap> {
        self.shared.gaps()
    }

    /// Channels that stopped for good, and why.
    pub fn failures(&self) -> Vec<ChannelFailure> {
        self.shared.failures()
    }

    /// Closes every socket and waits until each channel has stopped; the counters at the
    /// end.
    pub async fn stop(mut self) -> WatchStats {
        self.cancel.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.stats()
    }
}

/// The error of a start where no topic was permitted.
fn all_rejected(rejected: &[RejectedTopic]) -> NotifyError {
    let permissions: BTreeSet<String> = rejected
        .iter()
        .flat_map(|r| r.missing_permissions.iter().cloned())
        .collect();
    let reasons: BTreeSet<String> = rejected.iter().filter_map(|r| r.reason.clone()).collect();
    NotifyError::AllRejected {
        topics: rejected.len(),
        permissions: permissions.into_iter().collect(),
        reasons: reasons.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(topic: &str, reason: Option<&str>, missing: &[&str]) -> RejectedTopic {
        RejectedTopic {
            topic: topic.into(),
            reason: reason.map(Into::into),
            missing_permissions: missing.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn all_rejected_gathers_every_missing_permission_once() {
        let e = all_rejected(&[
            rejected("a", Some("no"), &["p:b", "p:a"]),
            rejected("b", Some("no"), &["p:a"]),
            rejected("c", None, &[]),
        ]);
        match e {
            NotifyError::AllRejected {
                topics,
                permissions,
                reasons,
            } => {
                assert_eq!(topics, 3);
                assert_eq!(permissions, ["p:a", "p:b"]);
                assert_eq!(reasons, ["no"]);
            }
            other => panic!("{other}"),
        }
    }
}
