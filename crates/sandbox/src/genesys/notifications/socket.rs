//! The socket at a channel's `connectUri` (`GET /channels/{id}`, a WebSocket upgrade; no
//! token: the channel id is the credential, as on a real org), from upgrade to close.
//!
//! - One socket per channel: a new one takes the channel's notifications at once and the
//!   previous one gets a close frame after what was already queued for it.
//! - Heartbeats: `channel.metadata` `{"message":"WebSocket Heartbeat"}` every
//!   `genesys_heartbeat_ms`; a client's `{"message":"ping"}` is answered `pong`. Other
//!   client frames are ignored.
//! - `genesys_socket_closing_every_ms` (0: never) after a socket opened it is sent
//!   `v2.system.socket_closing`, and closed (1001) `genesys_socket_closing_grace_ms`
//!   later; a socket opened on the channel meanwhile takes over and misses nothing.
//! - A removed channel (21st channel, expiry) closes its socket (1000); the sandbox
//!   stopping closes every socket (1001).
//!
//! An idle socket wakes for its heartbeats only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use gcx_protocol::genesys_notifications::{
    HEARTBEAT_MESSAGE, METADATA_TOPIC, MetadataBody, PONG_MESSAGE, SOCKET_CLOSING_TOPIC,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior, sleep_until, timeout};

use super::outbox::{SocketHandle, write_loop};
use super::{Hub, bodies};
use crate::AppState;
use crate::faults::Faults;
use crate::http_error::ApiError;
use crate::stats::GenesysNotificationStats;

/// Largest client message read (pings are 18 bytes).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// How long a socket that sent its close frame waits for the writer to flush and the
/// client to answer, before the TCP connection goes anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// The `message` of a client's ping.
const PING: &str = "ping";

const CLOSE_REPLACED: (u16, &str) = (1000, "replaced by a newer socket on this channel");
const CLOSE_GONE: (u16, &str) = (1000, "no such channel");
const CLOSE_SOCKET_CLOSING: (u16, &str) = (1001, "socket_closing");
const CLOSE_SHUTDOWN: (u16, &str) = (1001, "server shutting down");

/// `GET /channels/{id}`: 404 for an unknown channel, else the upgrade.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    Path(channel_id): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let stats = &state.stats.genesys_notifications;
    let Some(hub) = state.notifications.hub_of_channel(&channel_id, stats) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no channel {channel_id}: create one with POST {} and open its connectUri",
                gcx_protocol::genesys_notifications::CHANNELS_PATH
            ),
        )
        .into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                format!(
                    "{}: open the channel's connectUri as a WebSocket",
                    rejection.body_text()
                ),
            )
            .into_response();
        }
    };
    ws.max_frame_size(MAX_CLIENT_MESSAGE)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run(state, hub, channel_id, socket))
}

/// Counts the socket in `sockets_open` while it lives, and in `sockets_closed` at its end.
struct OpenGauge(Arc<AppState>);

impl OpenGauge {
    fn new(state: &Arc<AppState>) -> OpenGauge {
        let stats = &state.stats.genesys_notifications;
        stats.sockets_opened.inc();
        stats.sockets_open.inc();
        OpenGauge(state.clone())
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        let stats = &self.0.stats.genesys_notifications;
        stats.sockets_open.dec();
        stats.sockets_closed.inc();
    }
}

/// How the reader loop ended.
enum End {
    /// The client closed or vanished.
    PeerGone,
    /// The writer finished: a close frame went out (or writing failed).
    Closed,
    /// Give the connection up without more ado (queue full, or no close within the linger).
    Drop,
}

/// Serves one upgraded socket to its end.
async fn run(state: Arc<AppState>, hub: Arc<Hub>, channel_id: String, socket: WebSocket) {
    let stats = &state.stats.genesys_notifications;
    let (handle, queue) = SocketHandle::new(state.notifications.next_socket_id());
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(sink, queue));
    let attached = hub.lock(stats).attach(&channel_id, handle.clone());
    // Counted once it takes the channel's notifications.
    let _gauge = OpenGauge::new(&state);
    match attached {
        Ok(Some(previous)) => {
            previous.close(CLOSE_REPLACED.0, CLOSE_REPLACED.1);
            stats.sockets_replaced.inc();
        }
        Ok(None) => {}
        // Removed between the upgrade and now.
        Err(_) => handle.close(CLOSE_GONE.0, CLOSE_GONE.1),
    }
    let faults = state.faults_changed.subscribe();
    let mut socket = Socket {
        state: &state,
        hub: &hub,
        channel_id: &channel_id,
        handle: handle.clone(),
        faults,
    };
    let end = socket.serve(&mut stream, &mut writer).await;
    hub.lock(stats).detach(&channel_id, handle.id());
    drop(socket);
    drop(handle);
    match end {
        End::Drop => writer.abort(),
        End::PeerGone => {
            if timeout(CLOSE_LINGER, &mut writer).await.is_err() {
                writer.abort();
            }
        }
        End::Closed => {
            // Read until the client answers the close frame (or gives up).
            let _ = timeout(CLOSE_LINGER, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
    }
}

/// One socket after its upgrade.
struct Socket<'a> {
    state: &'a Arc<AppState>,
    hub: &'a Hub,
    channel_id: &'a str,
    handle: SocketHandle,
    /// Fault settings as they change (`PUT /sandbox/faults`).
    faults: watch::Receiver<Faults>,
}

/// A deadline far enough away to mean "never".
fn never() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// `ms` from now; 0, or a duration past what the clock holds, means never.
fn after_ms(ms: u64) -> Instant {
    if ms == 0 {
        return never();
    }
    Instant::now()
        .checked_add(Duration::from_millis(ms))
        .unwrap_or_else(never)
}

fn heartbeat_timer(ms: u64) -> Interval {
    let period = Duration::from_millis(ms.max(1));
    let start = Instant::now().checked_add(period).unwrap_or_else(never);
    let mut timer = tokio::time::interval_at(start, period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

/// Whether a client's text frame is `{"message":"ping"}`.
fn is_ping(text: &str) -> bool {
    serde_json::from_str::<MetadataBody>(text).is_ok_and(|m| m.message == PING)
}

impl Socket<'_> {
    fn stats(&self) -> &GenesysNotificationStats {
        &self.state.stats.genesys_notifications
    }

    fn push(&self, text: String) -> bool {
        self.handle.push(Utf8Bytes::from(text))
    }

    /// The reader loop and the socket's timers, until the socket ends.
    async fn serve(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        writer: &mut JoinHandle<()>,
    ) -> End {
        let stopping = self.state.engine.stopping();
        let overflow = self.handle.overflow();
        let (mut heartbeat_ms, mut closing_every_ms) = {
            let f = self.faults.borrow_and_update();
            (f.genesys_heartbeat_ms, f.genesys_socket_closing_every_ms)
        };
        let mut heartbeat = heartbeat_timer(heartbeat_ms);
        let closing = sleep_until(after_ms(closing_every_ms));
        let close_at = sleep_until(never());
        // Armed once a close frame is queued: the client has that long to take it.
        let give_up = sleep_until(never());
        tokio::pin!(closing, close_at, give_up);
        let mut noticed = false;
        let mut closing_down = false;
        let mut faults_live = true;
        loop {
            tokio::select! {
                biased;
                () = overflow.cancelled() => return End::Drop,
                _ = &mut *writer => return End::Closed,
                () = &mut give_up => return End::Drop,
                () = stopping.cancelled(), if !closing_down => {
                    self.handle.close(CLOSE_SHUTDOWN.0, CLOSE_SHUTDOWN.1);
                    closing_down = true;
                    give_up.as_mut().reset(Instant::now() + CLOSE_LINGER);
                }
                () = &mut close_at, if !closing_down => {
                    self.handle.close(CLOSE_SOCKET_CLOSING.0, CLOSE_SOCKET_CLOSING.1);
                    closing_down = true;
                    give_up.as_mut().reset(Instant::now() + CLOSE_LINGER);
                }
                () = &mut closing, if !noticed => {
                    let grace_ms = self.faults.borrow().genesys_socket_closing_grace_ms;
                    let notice = format!(
                        "this socket closes in {grace_ms} ms: open a new socket on the channel's connectUri now"
                    );
                    if self.push(bodies::message_frame(SOCKET_CLOSING_TOPIC, &notice)) {
                        self.stats().socket_closing_sent.inc();
                    }
                    noticed = true;
                    close_at.as_mut().reset(
                        Instant::now()
                            .checked_add(Duration::from_millis(grace_ms))
                            .unwrap_or_else(never),
                    );
                }
                changed = self.faults.changed(), if faults_live => {
                    if changed.is_err() {
                        faults_live = false;
                        continue;
                    }
                    let (beat, every) = {
                        let f = self.faults.borrow_and_update();
                        (f.genesys_heartbeat_ms, f.genesys_socket_closing_every_ms)
                    };
                    if beat != heartbeat_ms {
                        heartbeat_ms = beat;
                        heartbeat = heartbeat_timer(beat);
                    }
                    if every != closing_every_ms {
                        closing_every_ms = every;
                        closing.as_mut().reset(after_ms(every));
                    }
                }
                _ = heartbeat.tick() => {
                    // Expiry is checked here: a removed channel has closed this socket.
                    let open = self.hub.lock(self.stats()).contains(self.channel_id);
                    if open && self.push(bodies::message_frame(METADATA_TOPIC, HEARTBEAT_MESSAGE)) {
                        self.stats().heartbeats_sent.inc();
                    }
                }
                frame = stream.next() => match frame {
                    None | Some(Err(_)) => return End::PeerGone,
                    Some(Ok(Message::Text(text))) => {
                        if is_ping(text.as_str())
                            && self.push(bodies::message_frame(METADATA_TOPIC, PONG_MESSAGE))
                        {
                            self.stats().pongs_sent.inc();
                        }
                    }
                    // Pings are answered by the socket itself; a close arrives as the end.
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ping_message_is_a_ping() {
        assert!(is_ping(gcx_protocol::genesys_notifications::PING_FRAME));
        assert!(is_ping(r#"{"message":"ping","extra":1}"#));
        for other in [r#"{"message":"pong"}"#, "ping", "[]", "{}", ""] {
            assert!(!is_ping(other), "{other}");
        }
    }
}
