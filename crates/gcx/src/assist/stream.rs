//! One WebSocket to the Agent Assist stream (PROTOCOL.md section 3), kept alive.
//!
//! [`AssistStream::connect`] starts a supervisor task that owns the connection's life:
//! it logs in (`connect` / `connected`, with a timeout), subscribes to `capacity`, runs a
//! reader and **one** writer task (frames are fed and flushed once per burst through a
//! bounded queue; nothing else writes to the socket), watches heartbeats (silence for two
//! intervals: the socket is dead), pings when the line is quiet for an interval and a half, sends `reauth` on the live
//! socket whenever the [`TokenProvider`] publishes a fresh token, and reconnects with
//! exponential back-off and full jitter. What the server says comes out as
//! [`StreamEvent`]s, handed to an [`EventSink`] by the reader as each frame is read
//! ([`AssistStream::connect_with`]: the dispatcher routes them there and then, one task
//! hop fewer per answer), or sent on an unbounded channel ([`AssistStream::connect`]).
//! Either way the reader never waits on its user while the user waits on the writer.
//!
//! **Invariant:** a connection's send link is cleared *before* its `Disconnected` event
//! is emitted, so a frame [`AssistStream::send_text`] accepted for epoch `e` is always
//! followed, in the events, by that frame's answer or by `Disconnected { epoch: e }`.
//!
//! One room, although long: the supervisor, the reader and the watchdog all act on the
//! same connection epoch and send link, and the invariant below holds only while one file
//! owns every change to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gcx_protocol::assist::{
    AckPayload, CHANNEL_CAPACITY, ConnectedPayload, ErrorPayload, MessageType, ResultPayload,
    WsMessage, close,
};
use parking_lot::RwLock;
use rand::Rng;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::frame::{Incoming, read_frame};
use crate::auth::{AccessToken, AuthError, TokenProvider};
use crate::retry::RetryPolicy;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the stream connects and reconnects.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `wss://api.<domain>/api/v2/agentassist/stream` or a sandbox's `ws://` URL.
    pub url: String,
    /// Limit on the TCP/TLS/upgrade and on the `connect` -> `connected` exchange each.
    pub handshake_timeout: Duration,
    /// Back-off between reconnects. Its deadline bounds one outage: when the stream has
    /// been unable to connect for that long it stops with [`StreamError::Unreachable`].
    pub reconnect: RetryPolicy,
    /// Frames waiting for the writer; senders wait when it is full (back-pressure).
    pub write_queue: usize,
    /// After `closing`, reconnects are spread over `U(0, min(reconnectWithinMs, this))`.
    pub closing_spread: Duration,
}

impl StreamConfig {
    pub fn new(url: impl Into<String>) -> StreamConfig {
        StreamConfig {
            url: url.into(),
            handshake_timeout: Duration::from_secs(10),
            reconnect: RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(5))
                .with_deadline(Duration::from_secs(60)),
            write_queue: 4096,
            closing_spread: Duration::from_millis(250),
        }
    }
}

/// What the stream tells its user.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A connection finished its handshake and can carry sends.
    Connected {
        /// Increases with every connection; sends and losses are tagged with it.
        epoch: u64,
        connection_id: Uuid,
        max_concurrent_actions: u32,
        heartbeat_interval: Duration,
    },
    Ack {
        epoch: u64,
        ack: AckPayload,
    },
    Result {
        epoch: u64,
        result: ResultPayload,
    },
    /// An `error` frame (a refused `send` when `payload.correlation_id` is set).
    Refused {
        epoch: u64,
        code: u16,
        message: String,
        payload: ErrorPayload,
    },
    /// The tenant's limit changed.
    Capacity {
        max_concurrent_actions: u32,
    },
    /// The server announced `closing`: no new sends on this connection; answers to
    /// earlier ones may still arrive until `Disconnected`.
    Draining {
        epoch: u64,
        reconnect_within: Duration,
    },
    /// The connection ended; every send on it without an answer is lost.
    Disconnected {
        epoch: u64,
        reason: String,
    },
    /// The stream stopped for good (the last event).
    Fatal {
        error: StreamError,
    },
}

/// Why the stream stopped for good.
#[derive(Debug, Clone, Error)]
pub enum StreamError {
    #[error(
        "the assist stream {url} refused the token: it lacks the scope(s) {scopes} ({message}); \
         grant them to the OAuth client",
        scopes = .missing.join(", ")
    )]
    MissingScope {
        url: String,
        missing: Vec<String>,
        message: String,
    },
    #[error("cannot log in for the assist stream: {0}")]
    Auth(String),
    #[error(
        "assist stream URL {url:?} is invalid: {reason}; set `genesys.assist_stream_url`, `genesys.region` or --base-url"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach the assist stream at {url} after {attempts} attempts over {elapsed:?}: {last}"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
}

/// The stream's send side is not connected right now (wait for the next `Connected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the assist stream is not connected")]
pub struct NotConnected;

/// A live connection's way in: its epoch and its writer's queue.
#[derive(Clone)]
struct Link {
    epoch: u64,
    frames: mpsc::Sender<Message>,
}

/// Handle to the supervised stream. Dropping it stops the stream.
pub struct AssistStream {
    link: Arc<RwLock<Option<Link>>>,
    /// How often a connection's timer woke (shared with the supervisor).
    timer_wakes: Arc<AtomicU64>,
    cancel: CancellationToken,
    /// Taken by the first `shutdown` to wait for the supervisor.
    supervisor: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for AssistStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Where the stream's events go. Called on the stream's own task, in order, once per
/// event: it must not block or wait (hand anything slow to another task).
pub type EventSink = Box<dyn Fn(StreamEvent) + Send + Sync>;

impl AssistStream {
    /// Starts connecting in the background; events arrive on the returned receiver.
    pub fn connect(
        config: StreamConfig,
        tokens: TokenProvider,
    ) -> (AssistStream, mpsc::UnboundedReceiver<StreamEvent>) {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let sink: EventSink = Box::new(move |event| {
            // The receiver may be gone (its user stopped): nothing left to tell.
            let _ = events_tx.send(event);
        });
        (AssistStream::connect_with(config, tokens, sink), events_rx)
    }

    /// Starts connecting in the background; every event is handed to `sink` as it is read.
    pub fn connect_with(
        config: StreamConfig,
        tokens: TokenProvider,
        sink: EventSink,
    ) -> AssistStream {
        let link = Arc::new(RwLock::new(None));
        let cancel = CancellationToken::new();
        let timer_wakes = Arc::new(AtomicU64::new(0));
        let supervisor = tokio::spawn(
            Supervisor {
                config,
                tokens,
                link: link.clone(),
                events: sink,
                cancel: cancel.clone(),
                timer_wakes: timer_wakes.clone(),
            }
            .run(),
        );
        AssistStream {
            link,
            timer_wakes,
            cancel,
            supervisor: parking_lot::Mutex::new(Some(supervisor)),
        }
    }

    /// Queues one text frame for the writer; returns the epoch of the connection it went
    /// to. Waits while the writer's queue is full.
    pub async fn send_text(&self, frame: Utf8Bytes) -> Result<u64, NotConnected> {
        let link = self.link.read().clone().ok_or(NotConnected)?;
        link.frames
            .send(Message::Text(frame))
            .await
            .map_err(|_| NotConnected)?;
        Ok(link.epoch)
    }

    /// How often the connections' heartbeat timer has woken: at most once per heartbeat
    /// interval while frames arrive, and never for anything but a due check.
    pub fn timer_wakes(&self) -> u64 {
        self.timer_wakes.load(Ordering::Relaxed)
    }

    /// The epoch of the connection that takes sends now, if any.
    pub fn connected_epoch(&self) -> Option<u64> {
        self.link.read().as_ref().map(|l| l.epoch)
    }

    /// Closes the socket (1000) and stops reconnecting; waits until it has.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let supervisor = self.supervisor.lock().take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
    }
}

/// How one connection ended.
enum End {
    Cancelled,
    /// The server sent `closing` and then closed, or we closed after its deadline.
    Closing {
        within: Duration,
    },
    /// Close 4001 or error 401: the token was refused.
    Unauthorized,
    /// Close 4003: a scope is missing; fatal.
    Forbidden {
        missing: Vec<String>,
        message: String,
    },
    Lost(String),
}

/// Why opening a connection failed.
enum OpenError {
    Unauthorized(String),
    Forbidden {
        missing: Vec<String>,
        message: String,
    },
    BadUrl(String),
    Other(String),
}

struct Supervisor {
    config: StreamConfig,
    tokens: TokenProvider,
    link: Arc<RwLock<Option<Link>>>,
    events: EventSink,
    cancel: CancellationToken,
    /// Counts [`run_connection`](Self::run_connection)'s timer wake-ups.
    timer_wakes: Arc<AtomicU64>,
}

impl Supervisor {
    fn emit(&self, event: StreamEvent) {
        (self.events)(event);
    }

    fn fatal(&self, error: StreamError) {
        tracing::error!(%error, "assist stream stopped");
        self.emit(StreamEvent::Fatal { error });
    }

    async fn run(self) {
        let mut backoff = self.config.reconnect.start();
        let mut epoch = 0u64;
        let mut delay = Duration::ZERO;
        // A refused token is refreshed and tried once at once; twice in a row backs off.
        let mut unauthorized_in_a_row = 0u32;
        loop {
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.cancel.cancelled() => return,
                }
            }
            let token = tokio::select! {
                t = self.tokens.token() => t,
                _ = self.cancel.cancelled() => return,
            };
            let mut token = match token {
                Ok(t) => t,
                Err(e) => return self.fatal(auth_error(e)),
            };
            let opened = tokio::select! {
                o = self.open(&token) => o,
                _ = self.cancel.cancelled() => return,
            };
            let failure = match opened {
                Ok((socket, connected)) => {
                    epoch += 1;
                    if epoch > 1 {
                        metrics::counter!(super::metrics::RECONNECTS).increment(1);
                    }
                    backoff.reset();
                    unauthorized_in_a_row = 0;
                    let (end, last_token) = self
                        .run_connection(socket, connected, epoch, token.clone())
                        .await;
                    token = last_token;
                    let reason = match &end {
                        End::Cancelled => "shut down".to_owned(),
                        End::Closing { .. } => "server closing (maintenance)".to_owned(),
                        End::Unauthorized => "token refused (4001)".to_owned(),
                        End::Forbidden { message, .. } => format!("forbidden (4003): {message}"),
                        End::Lost(why) => why.clone(),
                    };
                    tracing::info!(epoch, %reason, "assist stream disconnected");
                    self.emit(StreamEvent::Disconnected { epoch, reason });
                    match end {
                        End::Cancelled => return,
                        End::Closing { within } => {
                            delay = uniform(within.min(self.config.closing_spread));
                            continue;
                        }
                        End::Unauthorized => OpenError::Unauthorized("closed with 4001".into()),
                        End::Forbidden { missing, message } => {
                            OpenError::Forbidden { missing, message }
                        }
                        End::Lost(why) => OpenError::Other(why),
                    }
                }
                Err(e) => e,
            };
            match failure {
                OpenError::Forbidden { missing, message } => {
                    return self.fatal(StreamError::MissingScope {
                        url: self.config.url.clone(),
                        missing,
                        message,
                    });
                }
                OpenError::BadUrl(reason) => {
                    return self.fatal(StreamError::BadUrl {
                        url: self.config.url.clone(),
                        reason,
                    });
                }
                OpenError::Unauthorized(why) => {
                    tracing::info!(%why, "assist stream refused the token; refreshing it");
                    let refreshed = tokio::select! {
                        r = self.tokens.invalidate_and_refresh(&token) => r,
                        _ = self.cancel.cancelled() => return,
                    };
                    if let Err(e) = refreshed {
                        return self.fatal(auth_error(e));
                    }
                    unauthorized_in_a_row += 1;
                    if unauthorized_in_a_row == 1 {
                        delay = Duration::ZERO;
                        continue;
                    }
                    match backoff.next(None) {
                        Some(d) => delay = d,
                        None => return self.unreachable(&backoff, why),
                    }
                }
                OpenError::Other(why) => {
                    tracing::warn!(url = %self.config.url, %why, "assist stream connection failed");
                    match backoff.next(None) {
                        Some(d) => delay = d,
                        None => return self.unreachable(&backoff, why),
                    }
                }
            }
        }
    }

    fn unreachable(&self, backoff: &crate::retry::Backoff, last: String) {
        self.fatal(StreamError::Unreachable {
            url: self.config.url.clone(),
            attempts: backoff.retries() + 1,
            elapsed: backoff.elapsed(),
            last,
        });
    }

    /// Dials, upgrades and logs in: `connect` then `connected`, each within the timeout.
    async fn open(&self, token: &AccessToken) -> Result<(Socket, ConnectedPayload), OpenError> {
        let limit = self.config.handshake_timeout;
        let request = self
            .config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| OpenError::BadUrl(e.to_string()))?;
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(gcx_protocol::assist::MAX_FRAME_BYTES * 4))
            .max_frame_size(Some(gcx_protocol::assist::MAX_FRAME_BYTES * 4));
        let dial = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
        let (mut socket, _) = match tokio::time::timeout(limit, dial).await {
            Err(_) => return Err(OpenError::Other(format!("no upgrade within {limit:?}"))),
            Ok(Err(e)) => return Err(classify_dial_error(e)),
            Ok(Ok(s)) => s,
        };
        let connect = Message::text(WsMessage::connect(token.expose()).to_json());
        socket
            .send(connect)
            .await
            .map_err(|e| OpenError::Other(format!("sending connect failed: {e}")))?;
        let answer = tokio::time::timeout(limit, first_message(&mut socket)).await;
        let answer = match answer {
            Err(_) => return Err(OpenError::Other(format!("no `connected` within {limit:?}"))),
            Ok(a) => a?,
        };
        match answer.kind {
            MessageType::Connected => match answer.payload_as::<ConnectedPayload>() {
                Some(c) => Ok((socket, c)),
                None => Err(OpenError::Other(
                    "`connected` without a valid payload".into(),
                )),
            },
            MessageType::Error => {
                let payload = answer.payload_as::<ErrorPayload>().unwrap_or_default();
                let (code, message) = answer
                    .error
                    .map(|e| (e.code, e.message))
                    .unwrap_or((0, String::new()));
                Err(match code {
                    401 => OpenError::Unauthorized(message),
                    403 => OpenError::Forbidden {
                        missing: payload.missing_scopes.unwrap_or_default(),
                        message,
                    },
                    _ => OpenError::Other(format!("handshake refused with {code}: {message}")),
                })
            }
            other => Err(OpenError::Other(format!(
                "expected `connected`, got {other:?}"
            ))),
        }
    }

    /// Serves one connection until it ends.
    async fn run_connection(
        &self,
        socket: Socket,
        connected: ConnectedPayload,
        epoch: u64,
        mut token: AccessToken,
    ) -> (End, AccessToken) {
        let heartbeat = Duration::from_millis(connected.heartbeat_interval_ms.max(1));
        let (sink, mut reader) = socket.split();
        let (frames, queue) = mpsc::channel(self.config.write_queue.max(1));
        // The subscription goes first, through the one writer like every other frame.
        let _ = frames.try_send(Message::text(
            WsMessage::subscribe(&[CHANNEL_CAPACITY]).to_json(),
        ));
        let mut writer = tokio::spawn(write_frames(sink, queue));
        *self.link.write() = Some(Link {
            epoch,
            frames: frames.clone(),
        });
        tracing::info!(
            epoch,
            connection_id = %connected.connection_id,
            limit = connected.max_concurrent_actions,
            "assist stream connected"
        );
        self.emit(StreamEvent::Connected {
            epoch,
            connection_id: connected.connection_id,
            max_concurrent_actions: connected.max_concurrent_actions,
            heartbeat_interval: heartbeat,
        });

        let mut fresh_tokens = self.tokens.subscribe();
        fresh_tokens.borrow_and_update();
        let mut last_frame = Instant::now();
        let mut pinged = false;
        let mut closing: Option<(Instant, Duration)> = None;
        // What an `error` frame without a correlationId said, for the close that follows.
        let mut refused_scopes: Option<(Vec<String>, String)> = None;
        // One timer, set to the next check that can be due (see `next_check`). A frame
        // moves that check later without touching the timer: when it fires early, it
        // finds the line not quiet and is set again, so it wakes at most once per interval
        // while frames flow, and no frame pays for a timer.
        let watchdog = tokio::time::sleep_until(next_check(last_frame, heartbeat, pinged, closing));
        tokio::pin!(watchdog);

        let end = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    self.clear_link(epoch);
                    let _ = frames.try_send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "client shutting down".into(),
                    })));
                    drop(frames);
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
                    return (End::Cancelled, token);
                }
                frame = reader.next() => {
                    last_frame = Instant::now();
                    pinged = false;
                    let message = match frame {
                        None => break End::Lost("socket closed without a close frame".into()),
                        Some(Err(e)) => break End::Lost(format!("socket error: {e}")),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(frame))) => {
                            break close_end(frame, closing, refused_scopes.take());
                        }
                        // Pings are answered by tungstenite; binary frames are not ours.
                        Some(Ok(_)) => continue,
                    };
                    let message = match read_frame(message.as_str()) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "assist stream sent a frame that is not a message");
                            continue;
                        }
                    };
                    if let Some(end) = self.on_message(epoch, message, &mut closing, &mut refused_scopes) {
                        break end;
                    }
                    if let Some((deadline, _)) = closing
                        && deadline < watchdog.deadline()
                    {
                        watchdog.as_mut().reset(deadline);
                    }
                }
                _ = &mut watchdog => {
                    self.timer_wakes.fetch_add(1, Ordering::Relaxed);
                    let quiet = last_frame.elapsed();
                    if quiet >= heartbeat * 2 {
                        break End::Lost(format!("no frame for {quiet:?} (two heartbeat intervals)"));
                    }
                    if quiet >= ping_after(heartbeat) && !pinged {
                        pinged = true;
                        let _ = frames.try_send(Message::text(WsMessage::bare(MessageType::Ping).to_json()));
                    }
                    if let Some((deadline, within)) = closing
                        && Instant::now() >= deadline
                    {
                        break End::Closing { within };
                    }
                    watchdog.as_mut().reset(next_check(last_frame, heartbeat, pinged, closing));
                }
                changed = fresh_tokens.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let fresh = fresh_tokens.borrow_and_update().clone();
                    if let Some(fresh) = fresh.filter(|t| t.generation != token.generation) {
                        tracing::debug!(epoch, generation = fresh.generation, "sending reauth");
                        if frames.send(Message::text(WsMessage::reauth(fresh.expose()).to_json())).await.is_err() {
                            break End::Lost("writer stopped".into());
                        }
                        token = fresh;
                    }
                }
                result = &mut writer => {
                    break End::Lost(match result {
                        Ok(Ok(())) => "writer stopped".into(),
                        Ok(Err(e)) => format!("write failed: {e}"),
                        Err(e) => format!("writer task failed: {e}"),
                    });
                }
            }
        };
        self.clear_link(epoch);
        writer.abort();
        (end, token)
    }

    /// Handles one message; `Some` ends the connection.
    fn on_message(
        &self,
        epoch: u64,
        message: Incoming,
        closing: &mut Option<(Instant, Duration)>,
        refused_scopes: &mut Option<(Vec<String>, String)>,
    ) -> Option<End> {
        match message {
            Incoming::Ack(ack) => self.emit(StreamEvent::Ack { epoch, ack }),
            Incoming::Result(result) => self.emit(StreamEvent::Result { epoch, result }),
            Incoming::Refused {
                code,
                message: text,
                payload,
            } => {
                if payload.correlation_id.is_none() {
                    match code {
                        401 => tracing::warn!(%text, "assist stream: token refused"),
                        403 => {
                            *refused_scopes = Some((
                                payload.missing_scopes.clone().unwrap_or_default(),
                                text.clone(),
                            ))
                        }
                        _ => tracing::warn!(code, %text, "assist stream error"),
                    }
                }
                self.emit(StreamEvent::Refused {
                    epoch,
                    code,
                    message: text,
                    payload,
                });
            }
            Incoming::Capacity {
                max_concurrent_actions,
            } => self.emit(StreamEvent::Capacity {
                max_concurrent_actions,
            }),
            Incoming::Closing { within } => {
                tracing::info!(epoch, ?within, "assist stream: server closing");
                if closing.is_none() {
                    *closing = Some((Instant::now() + within, within));
                    self.clear_link(epoch);
                    self.emit(StreamEvent::Draining {
                        epoch,
                        reconnect_within: within,
                    });
                }
            }
            Incoming::Malformed(kind) => {
                tracing::warn!(?kind, "assist stream: a message without a valid payload")
            }
            Incoming::Quiet => {}
            Incoming::Unexpected(other) => {
                tracing::debug!(?other, "assist stream: unexpected message type")
            }
        }
        None
    }

    fn clear_link(&self, epoch: u64) {
        let mut link = self.link.write();
        if link.as_ref().is_some_and(|l| l.epoch == epoch) {
            *link = None;
        }
    }
}

/// How long a quiet line waits before it pings: half an interval past the engine's own
/// heartbeat, so a heartbeat on time never races the ping.
fn ping_after(heartbeat: Duration) -> Duration {
    heartbeat * 3 / 2
}

/// When a connection's timer must next look: when a quiet line pings (unless it did), at
/// two quiet intervals (the socket is dead), and at a `closing` deadline. Nothing else is
/// ever due on it.
fn next_check(
    last_frame: Instant,
    heartbeat: Duration,
    pinged: bool,
    closing: Option<(Instant, Duration)>,
) -> Instant {
    let quiet = last_frame
        + if pinged {
            heartbeat * 2
        } else {
            ping_after(heartbeat)
        };
    closing.map_or(quiet, |(deadline, _)| deadline.min(quiet))
}

/// The one writer: feeds every queued frame, flushes once per burst.
async fn write_frames(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut queue: mpsc::Receiver<Message>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    // Most frames fed before one flush: keeps a long burst from delaying the first frame.
    const BURST: usize = 256;
    while let Some(first) = queue.recv().await {
        let closing = matches!(first, Message::Close(_));
        sink.feed(first).await?;
        let mut fed = 1;
        while fed < BURST {
            match queue.try_recv() {
                Ok(next) => {
                    sink.feed(next).await?;
                    fed += 1;
                }
                Err(_) => break,
            }
        }
        sink.flush().await?;
        if closing {
            break;
        }
    }
    let _ = sink.close().await;
    Ok(())
}

/// The first text message after `connect`, or how the socket ended instead.
async fn first_message(socket: &mut Socket) -> Result<WsMessage, OpenError> {
    loop {
        match socket.next().await {
            None => {
                return Err(OpenError::Other(
                    "socket closed during the handshake".into(),
                ));
            }
            Some(Err(e)) => return Err(OpenError::Other(format!("handshake failed: {e}"))),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).map_err(|e| {
                    OpenError::Other(format!("handshake answer is not a message: {e}"))
                });
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(match close_end(frame, None, None) {
                    End::Unauthorized => OpenError::Unauthorized("closed with 4001".into()),
                    End::Forbidden { missing, message } => {
                        OpenError::Forbidden { missing, message }
                    }
                    End::Lost(why) => OpenError::Other(why),
                    End::Closing { .. } | End::Cancelled => {
                        OpenError::Other("closed during the handshake".into())
                    }
                });
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads a close frame.
fn close_end(
    frame: Option<CloseFrame>,
    closing: Option<(Instant, Duration)>,
    refused_scopes: Option<(Vec<String>, String)>,
) -> End {
    let (code, reason) = frame
        .map(|f| (u16::from(f.code), f.reason.to_string()))
        .unwrap_or((1005, String::new()));
    match code {
        close::UNAUTHORIZED => End::Unauthorized,
        close::FORBIDDEN => {
            let (missing, message) = refused_scopes.unwrap_or((Vec::new(), reason));
            End::Forbidden { missing, message }
        }
        _ => match closing {
            Some((_, within)) => End::Closing { within },
            None => End::Lost(format!("closed by the server ({code} {reason})")),
        },
    }
}

fn classify_dial_error(e: tokio_tungstenite::tungstenite::Error) -> OpenError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Url(u) => OpenError::BadUrl(u.to_string()),
        E::Http(response) if response.status() == 401 => {
            OpenError::Unauthorized("upgrade refused with 401".into())
        }
        other => OpenError::Other(other.to_string()),
    }
}

fn auth_error(e: AuthError) -> StreamError {
    StreamError::Auth(e.to_string())
}

fn uniform(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_secs(30);

    fn check(pinged: bool, closing_in: Option<u64>) -> Duration {
        let t0 = Instant::now();
        let closing = closing_in.map(|s| (t0 + Duration::from_secs(s), Duration::from_secs(s)));
        next_check(t0, HEARTBEAT, pinged, closing) - t0
    }

    #[test]
    fn a_quiet_line_is_looked_at_after_one_and_a_half_intervals_then_after_two() {
        assert_eq!(check(false, None), HEARTBEAT * 3 / 2);
        assert_eq!(check(true, None), 2 * HEARTBEAT);
    }

    #[test]
    fn a_closing_deadline_comes_first_when_it_is_sooner() {
        assert_eq!(check(false, Some(5)), Duration::from_secs(5));
        assert_eq!(check(true, Some(45)), Duration::from_secs(45));
        assert_eq!(check(false, Some(50)), HEARTBEAT * 3 / 2);
        assert_eq!(check(true, Some(90)), 2 * HEARTBEAT);
    }
}
