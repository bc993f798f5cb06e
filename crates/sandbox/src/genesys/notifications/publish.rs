//! One publisher per tenant that has created a channel: it reads the tenant's user-state
//! changes ([`UserStates::subscribe`](crate::genesys::user_state::UserStates::subscribe))
//! and queues each change's notification on the socket of every channel subscribed to its
//! topic. A subscribed channel without a socket gets nothing, counted as dropped.
//!
//! The task starts with the tenant's first channel and sleeps on the broadcast: a tenant
//! without channels costs nothing, an idle one no wake-up. It ends when the sandbox
//! stops. A publisher that falls behind the broadcast misses changes: counted in
//! `broadcast_lagged` and logged, never fatal.

use std::sync::{Arc, Weak};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Hub;
use super::bodies;
use crate::AppState;
use crate::genesys::user_state::UserChange;

/// Starts the publisher of `hub`'s tenant. It subscribes before returning, so a change
/// applied after the caller answers is never missed.
pub(super) fn start(state: &Arc<AppState>, hub: Arc<Hub>) {
    let changes = state.genesys.user_states(&hub.tenant).subscribe();
    let stopping = state.engine.stopping();
    tokio::spawn(run(Arc::downgrade(state), hub, changes, stopping));
}

async fn run(
    state: Weak<AppState>,
    hub: Arc<Hub>,
    mut changes: Receiver<UserChange>,
    stopping: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            () = stopping.cancelled() => return,
            received = changes.recv() => received,
        };
        // The sandbox is gone once its state is.
        let Some(state) = state.upgrade() else { return };
        let stats = &state.stats.genesys_notifications;
        match received {
            Ok(change) => publish(&state, &hub, &change),
            Err(RecvError::Lagged(missed)) => {
                stats.broadcast_lagged.add(missed);
                tracing::warn!(
                    tenant = %hub.tenant,
                    missed,
                    "the notifications publisher fell behind the user-state changes; their notifications are lost"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn publish(state: &AppState, hub: &Hub, change: &UserChange) {
    let stats = &state.stats.genesys_notifications;
    let topic = bodies::topic_of(change);
    let delivery = hub
        .lock(stats)
        .deliver(&topic, || bodies::notification(change).map(Utf8Bytes::from));
    stats.notifications_sent.add(delivery.sent);
    stats.notifications_dropped.add(delivery.dropped);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use gcx_protocol::genesys_events::{RoutingStatus, UserRoutingStatusEvent};
    use gcx_protocol::genesys_notifications::{UserTopic, UserTopicKind};
    use tokio::time::Instant;
    use uuid::Uuid;

    use super::super::channels::Change;
    use crate::SandboxOptions;
    use crate::genesys::user_state::{Accepted, CHANGES_BUFFERED};

    use super::*;

    /// More changes at once than the broadcast keeps: on a current-thread runtime the
    /// publisher cannot run while they are applied, so it misses exactly the surplus,
    /// counts it, and goes on with the rest.
    #[tokio::test]
    async fn a_publisher_that_falls_behind_counts_what_it_missed_and_goes_on() {
        let state = AppState::new(SandboxOptions::default());
        let stats = &state.stats.genesys_notifications;
        let hub = state.notifications.hub_or_start(&state, "t");
        let user = Uuid::from_u128(1);
        let topic = UserTopic {
            user_id: user,
            kind: UserTopicKind::RoutingStatus,
        };
        {
            let mut channels = hub.lock(stats);
            channels.create(
                "c".into(),
                "ws://h/channels/c".into(),
                Instant::now(),
                Utc::now(),
            );
            channels
                .change("c", Change::Add(vec![topic]), Instant::now(), Utc::now())
                .unwrap();
        }
        let changes = 5000;
        let events = (0..changes)
            .map(|i| {
                Accepted::RoutingStatus(UserRoutingStatusEvent {
                    event_id: Uuid::new_v4(),
                    event_date_time: "2026-11-21T10:00:00.000Z".into(),
                    agent_id: user,
                    status: if i % 2 == 0 {
                        RoutingStatus::Idle
                    } else {
                        RoutingStatus::Interacting
                    },
                    source_id: "ext".into(),
                })
            })
            .collect();
        state.genesys.user_states("t").apply(events, Duration::ZERO);
        for _ in 0..1000 {
            if stats.broadcast_lagged.get() + stats.notifications_dropped.get() == changes {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let kept = CHANGES_BUFFERED as u64;
        assert_eq!(stats.broadcast_lagged.get(), changes - kept);
        // No socket on the channel: every change it heard is dropped, none kept.
        assert_eq!(stats.notifications_dropped.get(), kept);
        assert_eq!(stats.notifications_sent.get(), 0);
    }
}
