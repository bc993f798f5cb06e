//! One assist socket from upgrade to close: the handshake (3.1), then a reader loop that
//! answers each client message (3.2) and the connection's timers: heartbeats, token
//! expiry, maintenance `closing`, fault-driven drops, live fault changes. Every frame out
//! goes through the connection's [`Outbox`] and its one writer task.
//!
//! One room, although long: every timer and every client message acts on the one
//! connection's state inside one `select!` loop; admission, execution and the outbox are
//! their own files.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use gcx_protocol::assist::{
    CHANNEL_CAPACITY, CapacityPayload, ClosingPayload, ConnectedPayload, ErrorPayload,
    HeartbeatPayload, MAX_MESSAGE_BYTES, MessageType, ReauthenticatedPayload, SubscribedPayload,
    WsMessage, close,
};
use gcx_protocol::oauth::SCOPE_ASSIST_READ;
use gcx_protocol::{Violation, ViolationCode};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, Sleep, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

use super::admission::{self, Sender};
use super::execution;
use super::frame::{self, ClientFrame};
use super::idempotency::ConnId;
use super::outbox::{Outbox, write_loop};
use super::send_rate::SendRate;
use super::tenant::Tenant;
use crate::AppState;
use crate::faults::Faults;
use crate::oauth::TokenInfo;
use crate::options::MESSAGE_RATE_CLOSE;

/// How long a closing socket waits for the writer to flush and the client to answer the
/// close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How long a socket whose reader failed (a frame over 1 MiB) stays open after the close
/// frame, so the client reads it before the TCP connection goes.
const FAILED_LINGER: Duration = Duration::from_millis(250);
/// Time between the `closing` notice and the 1001 close; also `reconnectWithinMs`.
const CLOSING_GRACE: Duration = Duration::from_millis(200);
/// How soon a client told `closing` should reconnect.
const RECONNECT_WITHIN_MS: u64 = 1000;

/// How a connection ends.
enum End {
    /// The client closed or vanished: nothing more to say.
    PeerGone,
    /// Send a close frame with this code, then let the socket go.
    Close {
        code: u16,
        reason: &'static str,
        /// Whether the reader can still read the client's close reply (false after a
        /// read error: the stream is finished).
        readable: bool,
    },
    /// Drop the TCP connection without a close frame (`drop_connection_every`, a client
    /// that stopped reading).
    Drop,
}

impl End {
    fn close(code: u16, reason: &'static str) -> End {
        End::Close {
            code,
            reason,
            readable: true,
        }
    }

    /// The end a read error calls for.
    fn after_read_error(error: axum::Error) -> End {
        use tungstenite::error::{Error as WsErr, ProtocolError};
        let failed = |code, reason| End::Close {
            code,
            reason,
            readable: false,
        };
        match error.into_inner().downcast_ref::<WsErr>() {
            Some(WsErr::Capacity(_)) => failed(close::TOO_BIG, "frame or message over 1 MiB"),
            Some(WsErr::Utf8(_)) => failed(1007, "text frame is not valid UTF-8"),
            Some(WsErr::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => End::PeerGone,
            Some(WsErr::Protocol(_)) => failed(1002, "WebSocket protocol error"),
            _ => End::PeerGone,
        }
    }
}

/// Counts the socket in `connections_total` and `connections_open` while it lives.
struct OpenGauge(Arc<AppState>);

impl OpenGauge {
    fn new(state: &Arc<AppState>) -> OpenGauge {
        state.stats.assist.connections_total.inc();
        state.stats.assist.connections_open.inc();
        OpenGauge(state.clone())
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.stats.assist.connections_open.dec();
    }
}

/// Serves one upgraded socket to its end.
pub(crate) async fn run(state: Arc<AppState>, socket: WebSocket) {
    let _gauge = OpenGauge::new(&state);
    let (sink, mut stream) = socket.split();
    let (outbox, drain) = Outbox::new();
    let mut writer = tokio::spawn(write_loop(sink, drain));
    let end = match handshake(&state, &mut stream, &outbox).await {
        Ok(mut conn) => conn.serve(&mut stream).await,
        Err(end) => end,
    };
    match end {
        End::Drop => writer.abort(),
        End::PeerGone => {
            drop(outbox);
            if timeout(CLOSE_LINGER, &mut writer).await.is_err() {
                writer.abort();
            }
        }
        End::Close {
            code,
            reason,
            readable,
        } => {
            outbox.close(code, reason);
            drop(outbox);
            if timeout(CLOSE_LINGER, &mut writer).await.is_err() {
                writer.abort();
            }
            if readable {
                // Read until the client answers the close frame (or gives up).
                let _ = timeout(CLOSE_LINGER, async {
                    while let Some(Ok(_)) = stream.next().await {}
                })
                .await;
            } else {
                sleep(FAILED_LINGER).await;
            }
        }
    }
}

fn error_frame(code: u16, message: impl Into<String>, payload: ErrorPayload) -> WsMessage {
    WsMessage::error(code, message, payload)
}

/// Waits for `connect` and checks its token; on success the connection is registered with
/// its tenant and `connected` is queued.
async fn handshake(
    state: &Arc<AppState>,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
) -> Result<Connection, End> {
    let (timeout_ms, limit, heartbeat_ms) = {
        let f = state.faults.read();
        (
            f.handshake_timeout_ms,
            f.max_concurrent_actions,
            f.heartbeat_interval_ms,
        )
    };
    let deadline = later(Duration::from_millis(timeout_ms));
    let stopping = state.engine.stopping();
    let bad_first = |message: String, details: Option<Vec<Violation>>| {
        state.stats.assist.rejected_invalid.inc();
        outbox.push_msg(&error_frame(
            400,
            message,
            ErrorPayload {
                details,
                ..ErrorPayload::default()
            },
        ));
        Err(End::close(
            close::BAD_FIRST_MESSAGE,
            "first message must be connect",
        ))
    };
    let text = loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = sleep_until(deadline) => {
                return Err(End::close(close::HANDSHAKE_TIMEOUT, "no connect within the handshake timeout"));
            }
            _ = stopping.cancelled() => return Err(End::close(close::GOING_AWAY, "server shutting down")),
        };
        match frame {
            None => return Err(End::PeerGone),
            Some(Err(e)) => return Err(End::after_read_error(e)),
            // WebSocket-level pings are answered by the socket itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) => return Err(End::PeerGone),
            Some(Ok(Message::Binary(_))) => {
                return bad_first(
                    "binary frames are not accepted: send {\"type\":\"connect\",\"token\":…} as a text frame".into(),
                    None,
                );
            }
            Some(Ok(Message::Text(text))) => break text,
        }
    };
    if text.len() > MAX_MESSAGE_BYTES {
        return bad_first(
            "the first message must be connect".into(),
            Some(vec![size_violation(text.len())]),
        );
    }
    let value: Value = match serde_json::from_str(text.as_str()) {
        Ok(v) => v,
        Err(e) => {
            return bad_first(
                format!(
                    "the first message is not JSON ({e}); expected {{\"type\":\"connect\",\"token\":…}}"
                ),
                None,
            );
        }
    };
    match value.get("type").and_then(Value::as_str) {
        Some("connect") => {}
        other => {
            return bad_first(
                format!(
                    "the first message must be {{\"type\":\"connect\",\"token\":…}}, got type {}",
                    other.map_or("(none)".to_owned(), |t| format!("{t:?}"))
                ),
                None,
            );
        }
    }
    let unauthorized = |message: &str| {
        outbox.push_msg(&error_frame(401, message, ErrorPayload::default()));
        Err(End::close(close::UNAUTHORIZED, "invalid or expired token"))
    };
    let Some(token) = value.get("token").and_then(Value::as_str) else {
        return unauthorized("connect carries no \"token\": get one from POST /oauth/token");
    };
    let Some(token) = state.tokens.check(token) else {
        return unauthorized(
            "the token is invalid or expired: get a fresh one from POST /oauth/token",
        );
    };
    if !token.has_scope(SCOPE_ASSIST_READ) {
        outbox.push_msg(&error_frame(
            403,
            format!("the token lacks the scope {SCOPE_ASSIST_READ} needed to open the stream"),
            ErrorPayload {
                missing_scopes: Some(vec![SCOPE_ASSIST_READ.to_owned()]),
                ..ErrorPayload::default()
            },
        ));
        return Err(End::close(close::FORBIDDEN, "token lacks agentassist:read"));
    }
    let connected = ConnectedPayload {
        protocol_version: gcx_protocol::PROTOCOL_VERSION,
        connection_id: Uuid::new_v4(),
        max_concurrent_actions: limit,
        heartbeat_interval_ms: heartbeat_ms,
        token_expires_in: token.expires_in(),
    };
    outbox.push_msg(&WsMessage::with_payload(MessageType::Connected, &connected));
    Ok(Connection::register(state, token, outbox.clone(), limit))
}

fn size_violation(len: usize) -> Violation {
    Violation {
        path: String::new(),
        code: ViolationCode::Size,
        message: format!("the message is {len} bytes; at most {MAX_MESSAGE_BYTES} are accepted"),
    }
}

/// A connection after its handshake.
struct Connection {
    state: Arc<AppState>,
    /// Key of this connection in its tenant's live connections.
    id: ConnId,
    tenant: Arc<Tenant>,
    /// Who the connection acts as; a good `reauth` replaces it.
    token: TokenInfo,
    outbox: Outbox,
    /// Fault settings as they change (`PUT /sandbox/faults`).
    faults: watch::Receiver<Faults>,
    /// `capacity` pushes go to subscribers only.
    capacity_subscribed: bool,
    /// The limit as this connection last knew it: a push only on a real change.
    known_capacity: u32,
    heartbeat_ms: u64,
    closing_every_secs: Option<u64>,
    drop_every: Option<u64>,
    /// Client messages since `connect` (`drop_connection_every` counts these).
    messages: u64,
    /// Frames of any kind this connection may still send before it is over
    /// `ws_messages_per_second` (a token bucket of one second's worth).
    message_rate: SendRate,
    /// When to send the next `closing` notice.
    closing_at: Option<Instant>,
    /// When to close with 1001 after a `closing` notice.
    close_at: Option<Instant>,
    /// Set when a deadline above (or the token's expiry) changed and the timers must be
    /// re-armed.
    timers_changed: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.tenant.lock().connections.remove(&self.id);
    }
}

/// A deadline far enough away to mean "never".
fn never() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// `after` from now; a duration past what the clock can hold (a fault set to `u64::MAX`)
/// means never, not a panic.
fn later(after: Duration) -> Instant {
    Instant::now().checked_add(after).unwrap_or_else(never)
}

impl Connection {
    fn register(state: &Arc<AppState>, token: TokenInfo, outbox: Outbox, limit: u32) -> Self {
        let engine = &state.engine;
        let id = engine.next_connection_id();
        let tenant = engine.tenant(&token.tenant);
        tenant.lock().connections.insert(id, outbox.clone());
        let faults = state.faults_changed.subscribe();
        let (heartbeat_ms, closing_every_secs, drop_every) = {
            let f = faults.borrow();
            (
                f.heartbeat_interval_ms,
                f.closing_every_secs,
                f.drop_connection_every,
            )
        };
        Connection {
            state: state.clone(),
            id,
            tenant,
            token,
            outbox,
            faults,
            capacity_subscribed: false,
            known_capacity: limit,
            heartbeat_ms,
            closing_every_secs,
            drop_every,
            messages: 0,
            message_rate: SendRate::new(std::time::Instant::now()),
            closing_at: closing_every_secs.map(|s| later(Duration::from_secs(s))),
            close_at: None,
            timers_changed: false,
        }
    }

    fn push(&self, message: &WsMessage) {
        self.outbox.push_msg(message);
    }

    fn refuse(&self, code: u16, message: impl Into<String>, payload: ErrorPayload) {
        if code == 400 {
            self.state.stats.assist.rejected_invalid.inc();
        }
        self.push(&error_frame(code, message, payload));
    }

    fn heartbeat_timer(&self) -> tokio::time::Interval {
        let period = Duration::from_millis(self.heartbeat_ms.max(1));
        let mut timer = tokio::time::interval_at(later(period), period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    }

    fn rearm(
        &self,
        expiry: &mut std::pin::Pin<&mut Sleep>,
        closing: &mut std::pin::Pin<&mut Sleep>,
        close_at: &mut std::pin::Pin<&mut Sleep>,
    ) {
        expiry
            .as_mut()
            .reset(Instant::from_std(self.token.expires_at));
        closing
            .as_mut()
            .reset(self.closing_at.unwrap_or_else(never));
        close_at.as_mut().reset(self.close_at.unwrap_or_else(never));
    }

    /// The reader loop and the timers, until the connection ends.
    async fn serve(&mut self, stream: &mut SplitStream<WebSocket>) -> End {
        let stopping = self.state.engine.stopping();
        let overflow = self.outbox.overflow();
        let mut heartbeat = self.heartbeat_timer();
        let expiry = sleep_until(never());
        let closing = sleep_until(never());
        let close_at = sleep_until(never());
        tokio::pin!(expiry, closing, close_at);
        self.rearm(&mut expiry, &mut closing, &mut close_at);
        loop {
            if self.timers_changed {
                self.timers_changed = false;
                self.rearm(&mut expiry, &mut closing, &mut close_at);
            }
            let room = self.outbox.has_room();
            tokio::select! {
                biased;
                _ = stopping.cancelled() => return End::close(close::GOING_AWAY, "server shutting down"),
                _ = overflow.cancelled() => return End::Drop,
                _ = &mut expiry => {
                    self.push(&error_frame(401, "the token expired: reconnect with a fresh token, or reauth before expiry", ErrorPayload::default()));
                    return End::close(close::UNAUTHORIZED, "token expired");
                }
                _ = &mut close_at => return End::close(close::GOING_AWAY, "maintenance"),
                _ = &mut closing => {
                    let notice = ClosingPayload {
                        reason: "maintenance".into(),
                        reconnect_within_ms: RECONNECT_WITHIN_MS,
                    };
                    self.push(&WsMessage::with_payload(MessageType::Closing, &notice));
                    self.closing_at = None;
                    self.close_at = Some(later(CLOSING_GRACE));
                    self.timers_changed = true;
                }
                changed = self.faults.changed() => {
                    if changed.is_err() {
                        return End::close(close::GOING_AWAY, "server shutting down");
                    }
                    if self.on_faults_changed() {
                        heartbeat = self.heartbeat_timer();
                    }
                }
                _ = heartbeat.tick() => {
                    let beat = HeartbeatPayload { server_time: gcx_protocol::time::now() };
                    self.push(&WsMessage::with_payload(MessageType::Heartbeat, &beat));
                }
                frame = stream.next(), if room => match frame {
                    None => return End::PeerGone,
                    Some(Err(e)) => return End::after_read_error(e),
                    Some(Ok(message)) => {
                        if let Some(end) = self.on_message(message) {
                            return end;
                        }
                    }
                },
                _ = self.outbox.room(), if !room => {}
            }
            self.state.engine.count_connection_wake();
        }
    }

    /// Applies new fault settings; true when the heartbeat interval changed.
    fn on_faults_changed(&mut self) -> bool {
        let (limit, heartbeat_ms, closing_every_secs, drop_every) = {
            let f = self.faults.borrow_and_update();
            (
                f.max_concurrent_actions,
                f.heartbeat_interval_ms,
                f.closing_every_secs,
                f.drop_connection_every,
            )
        };
        if limit != self.known_capacity {
            self.known_capacity = limit;
            if self.capacity_subscribed {
                let capacity = CapacityPayload {
                    max_concurrent_actions: limit,
                };
                self.push(&WsMessage::with_payload(MessageType::Capacity, &capacity));
            }
        }
        self.drop_every = drop_every;
        if closing_every_secs != self.closing_every_secs {
            self.closing_every_secs = closing_every_secs;
            self.closing_at = closing_every_secs.map(|s| later(Duration::from_secs(s)));
            self.timers_changed = true;
        }
        let heartbeat_changed = heartbeat_ms != self.heartbeat_ms;
        self.heartbeat_ms = heartbeat_ms;
        heartbeat_changed
    }

    /// Answers one frame; `Some` when the connection must end.
    fn on_message(&mut self, message: Message) -> Option<End> {
        let rate = Some(self.state.options.ws_messages_per_second);
        if self
            .message_rate
            .take(rate, std::time::Instant::now())
            .is_err()
        {
            return Some(End::close(
                MESSAGE_RATE_CLOSE,
                "over the message rate (ws_messages_per_second)",
            ));
        }
        match message {
            // Answered by the socket itself / the end arrives as the stream's end.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return None,
            Message::Text(_) | Message::Binary(_) => {}
        }
        self.messages += 1;
        if let Some(n) = self.drop_every
            && n > 0
            && self.messages.is_multiple_of(n)
        {
            return Some(End::Drop);
        }
        match message {
            Message::Text(text) => self.on_text(text.as_str()),
            _ => self.refuse(
                400,
                "binary frames are not accepted: send JSON messages as text frames",
                ErrorPayload::default(),
            ),
        }
        None
    }

    fn on_text(&mut self, text: &str) {
        match frame::read(text) {
            ClientFrame::TooLarge {
                len,
                is_send,
                correlation_id,
            } => {
                if is_send {
                    self.state.stats.assist.sends.inc();
                }
                self.refuse(
                    400,
                    format!("message too large: at most {MAX_MESSAGE_BYTES} bytes"),
                    ErrorPayload {
                        correlation_id,
                        details: Some(vec![size_violation(len)]),
                        ..ErrorPayload::default()
                    },
                );
            }
            ClientFrame::NotJson(e) => self.refuse(
                400,
                format!(
                    "the frame is not JSON ({e}); every message is a JSON object with a \"type\""
                ),
                ErrorPayload::default(),
            ),
            ClientFrame::Send(payload) => {
                let sender = Sender {
                    id: self.id,
                    tenant: &self.tenant,
                    token: &self.token,
                    outbox: &self.outbox,
                };
                if let Some(action) = admission::admit(&self.state, &sender, payload.as_ref()) {
                    execution::start(&self.state, action);
                }
            }
            ClientFrame::Ping => self.push(&WsMessage::bare(MessageType::Pong)),
            ClientFrame::Reauth(token) => self.reauth(token.as_ref()),
            ClientFrame::Subscribe(channels) => self.subscribe(channels.as_ref()),
            ClientFrame::Connect => self.refuse(
                400,
                "already connected: connect is only the first message",
                ErrorPayload::default(),
            ),
            ClientFrame::Unknown(other) => self.refuse(
                400,
                format!("unknown message type {other:?}; expected send, reauth, subscribe or ping"),
                ErrorPayload::default(),
            ),
            ClientFrame::NoType => self.refuse(
                400,
                "the message has no string \"type\"; expected send, reauth, subscribe or ping",
                ErrorPayload::default(),
            ),
        }
    }

    fn reauth(&mut self, token: Option<&Value>) {
        let Some(token) = token.and_then(Value::as_str) else {
            self.refuse(
                400,
                "reauth needs a \"token\" string",
                ErrorPayload {
                    details: Some(vec![Violation {
                        path: "/token".into(),
                        code: ViolationCode::Required,
                        message: "a fresh access token is required".into(),
                    }]),
                    ..ErrorPayload::default()
                },
            );
            return;
        };
        let Some(info) = self.state.tokens.check(token) else {
            self.refuse(
                401,
                "the reauth token is invalid or expired; the previous token stays in force",
                ErrorPayload::default(),
            );
            return;
        };
        if info.tenant != self.token.tenant {
            self.refuse(
                403,
                "the reauth token belongs to another tenant; the previous token stays in force",
                ErrorPayload::default(),
            );
            return;
        }
        if !info.has_scope(SCOPE_ASSIST_READ) {
            self.refuse(
                403,
                format!("the reauth token lacks the scope {SCOPE_ASSIST_READ}; the previous token stays in force"),
                ErrorPayload {
                    missing_scopes: Some(vec![SCOPE_ASSIST_READ.to_owned()]),
                    ..ErrorPayload::default()
                },
            );
            return;
        }
        let answer = ReauthenticatedPayload {
            token_expires_in: info.expires_in(),
        };
        self.token = info;
        self.timers_changed = true;
        self.push(&WsMessage::with_payload(
            MessageType::Reauthenticated,
            &answer,
        ));
    }

    fn subscribe(&mut self, channels: Option<&Value>) {
        let Some(list) = channels.and_then(Value::as_array) else {
            let code = if channels.is_none() {
                ViolationCode::Required
            } else {
                ViolationCode::Type
            };
            self.refuse(
                400,
                "subscribe needs \"channels\": an array of channel names, e.g. [\"capacity\"]",
                ErrorPayload {
                    details: Some(vec![Violation {
                        path: "/channels".into(),
                        code,
                        message: "an array of channel names is required".into(),
                    }]),
                    ..ErrorPayload::default()
                },
            );
            return;
        };
        let unknown: Vec<Violation> = list
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_str() != Some(CHANNEL_CAPACITY))
            .map(|(i, c)| Violation {
                path: format!("/channels/{i}"),
                code: if c.is_string() {
                    ViolationCode::Enum
                } else {
                    ViolationCode::Type
                },
                message: format!("unknown channel {c}; the only channel is \"{CHANNEL_CAPACITY}\""),
            })
            .collect();
        if !unknown.is_empty() {
            self.refuse(
                400,
                format!("unknown channel in subscribe; the only channel is \"{CHANNEL_CAPACITY}\""),
                ErrorPayload {
                    details: Some(unknown),
                    ..ErrorPayload::default()
                },
            );
            return;
        }
        if !list.is_empty() {
            self.capacity_subscribed = true;
        }
        let channels = if self.capacity_subscribed {
            vec![CHANNEL_CAPACITY.to_owned()]
        } else {
            Vec::new()
        };
        self.push(&WsMessage::with_payload(
            MessageType::Subscribed,
            &SubscribedPayload { channels },
        ));
    }
}
