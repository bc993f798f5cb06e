//! One channel's life: its socket, the keep-alive, and every way the server can take it
//! away (PROTOCOL.md 9.2).
//!
//! [`ChannelTask::establish`] creates the channel, opens its socket and subscribes its
//! topics (in that order: a notification is sent only to a connected socket, so once the
//! subscription is answered nothing is missed). [`ChannelTask::run`] then keeps it:
//! - each open socket has a reader task that stamps every message as it is read, hands
//!   user notifications straight to the watcher's queue, counts heartbeats and pongs, and
//!   tells the channel's task about system topics and its own end;
//! - the channel's task owns the socket's write half (pings only) and wakes for the
//!   watchdog ([`super::keepalive`]), a system topic, a socket's end, the periodic
//!   re-subscription, or a stop;
//! - `socket_closing`: a new socket on the same `connectUri` at once; the old one keeps
//!   being read until the server closes it (bounded by `switch_grace`), so a notification
//!   sent on either is seen;
//! - an unexpected close or a dead socket: reconnect with back-off ([`crate::retry`]) and
//!   subscribe the same topics again (the channel may have expired meanwhile), the time
//!   without a socket recorded as a [`Gap`]; an upgrade refused with a 4xx, or a 404 to
//!   that subscription, means the channel is gone: a new one is made;
//! - `no_longer_subscribed` / `token_revoked` (the token refreshed first): a new channel,
//!   its socket and the same topics, then the old socket is closed;
//! - the same topics `PUT` again every `renew_every`, before the 24 h expiry.
//!
//! Sockets are numbered; a message from a socket that is no longer the current one is
//! ignored unless it still concerns the current channel, so a late close or a stale
//! `socket_closing` never undoes a switch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use gcx_protocol::genesys_notifications::{Channel, PING_FRAME};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::api::{NotificationsApi, Subscription};
use super::counters::{Gap, GapCause, Shared, bump};
use super::error::NotifyError;
use super::keepalive::{self, Verdict};
use super::message::{self, Incoming};
use super::watcher::{Observed, WatchOptions};
use crate::retry::RetryPolicy;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest message read from a socket (a conversation body with many participants stays
/// far below it).
const MAX_MESSAGE: usize = 16 << 20;
/// How long a write (a ping, a close) may take before it is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed re-subscription, the next try.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// What a socket's reader tells its channel's task.
#[derive(Debug)]
enum Control {
    /// A system topic arrived on socket `seq`.
    System { seq: u64, what: Incoming },
    /// Socket `seq` ended (closed, failed).
    Ended { seq: u64, reason: String },
}

/// One open socket.
struct Live {
    /// This socket's number (increasing within a channel task).
    seq: u64,
    /// The write half: only the channel's task writes (pings, the close).
    sink: SplitSink<Socket, Message>,
    /// When the reader last read anything.
    last_seen: Arc<Mutex<Instant>>,
    reader: JoinHandle<()>,
    /// When the watchdog last pinged on this socket.
    pinged_at: Option<Instant>,
}

impl Live {
    fn last_seen(&self) -> Instant {
        *self.last_seen.lock()
    }

    /// Sends a close (1000), waits a little for it, stops reading.
    async fn close(mut self) {
        let frame = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "client done".into(),
        }));
        let _ = timeout(WRITE_TIMEOUT, self.sink.send(frame)).await;
        self.reader.abort();
    }
}

/// A channel, its socket connected and its topics subscribed.
pub(crate) struct Established {
    channel: Channel,
    live: Live,
    pub subscription: Subscription,
}

impl Established {
    /// Closes the socket (a watcher that could not start gives its channels up).
    pub async fn close(self) {
        self.live.close().await;
    }
}

/// Why a socket could not be opened.
enum OpenError {
    /// The upgrade was refused with a 4xx: the server no longer knows the channel.
    Gone(String),
    /// The address cannot be dialled at all.
    Invalid(String),
    /// Anything else (no answer, refused connection, 5xx): worth another try.
    Failed(String),
}

impl OpenError {
    fn text(&self) -> &str {
        match self {
            OpenError::Gone(t) | OpenError::Invalid(t) | OpenError::Failed(t) => t,
        }
    }
}

/// The task stopped (cancelled, or the channel failed and said so).
struct Halt;

/// What the running channel holds.
struct State {
    channel: Channel,
    live: Live,
    /// Sockets numbered from here on belong to `channel` (those before, to a replaced one).
    channel_first_seq: u64,
    /// When the topics are `PUT` again.
    renew_at: Instant,
}

/// One channel of a watcher.
pub(crate) struct ChannelTask {
    /// The channel's index in the watcher, in logs, gaps and failures.
    index: usize,
    topics: Vec<String>,
    api: NotificationsApi,
    options: WatchOptions,
    out: mpsc::Sender<Observed>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    control_tx: mpsc::UnboundedSender<Control>,
    control_rx: Option<mpsc::UnboundedReceiver<Control>>,
    /// Source of [`Live::seq`].
    next_seq: AtomicU64,
}

impl ChannelTask {
    pub fn new(
        index: usize,
        topics: Vec<String>,
        api: NotificationsApi,
        options: WatchOptions,
        out: mpsc::Sender<Observed>,
        shared: Arc<Shared>,
        cancel: CancellationToken,
    ) -> ChannelTask {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        ChannelTask {
            index,
            topics,
            api,
            options,
            out,
            shared,
            cancel,
            control_tx,
            control_rx: Some(control_rx),
            next_seq: AtomicU64::new(0),
        }
    }

    /// Creates the channel, opens its socket (retrying within `deadline`), subscribes.
    pub async fn establish(&self, deadline: Duration) -> Result<Established, NotifyError> {
        let channel = self.api.create_channel().await?;
        bump(&self.shared.counters.channels_created);
        let policy = self.options.reconnect.with_deadline(deadline);
        let live = self.open_with_retries(&channel.connect_uri, policy).await?;
        match self
            .api
            .replace_subscriptions(&channel.id, &self.topics)
            .await
        {
            Ok(subscription) => Ok(Established {
                channel,
                live,
                subscription,
            }),
            Err(e) => {
                live.close().await;
                Err(e.into())
            }
        }
    }

    /// Keeps the channel until cancelled or failed for good.
    pub async fn run(mut self, established: Established) {
        let Some(mut control) = self.control_rx.take() else {
            return;
        };
        let mut state = State {
            channel_first_seq: established.live.seq,
            channel: established.channel,
            live: established.live,
            renew_at: Instant::now() + self.options.renew_every,
        };
        let interval = self.options.keepalive;
        loop {
            let check =
                keepalive::next_check(state.live.last_seen(), state.live.pinged_at, interval);
            let step = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Err(Halt),
                Some(c) = control.recv() => self.on_control(&mut state, c).await,
                _ = sleep_until(check) => self.on_watchdog(&mut state).await,
                _ = sleep_until(state.renew_at) => self.renew(&mut state).await,
            };
            if step.is_err() {
                state.live.close().await;
                return;
            }
        }
    }

    async fn on_control(&self, state: &mut State, control: Control) -> Result<(), Halt> {
        match control {
            Control::Ended { seq, reason } if seq == state.live.seq => {
                tracing::warn!(channel = self.index, %reason, "notification socket lost; reconnecting");
                self.reconnect(state, GapCause::Closed, Instant::now())
                    .await
            }
            Control::Ended { seq, reason } => {
                tracing::debug!(channel = self.index, seq, %reason, "a replaced notification socket ended");
                Ok(())
            }
            Control::System {
                seq,
                what: Incoming::SocketClosing,
            } if seq == state.live.seq => self.switch_socket(state).await,
            Control::System { seq, what } if seq >= state.channel_first_seq => {
                let cause = match what {
                    Incoming::NoLongerSubscribed => GapCause::NoLongerSubscribed,
                    Incoming::TokenRevoked => GapCause::TokenRevoked,
                    _ => return Ok(()),
                };
                tracing::warn!(
                    channel = self.index,
                    ?cause,
                    "the server dropped the channel; making a new one"
                );
                let from = Instant::now();
                if cause == GapCause::TokenRevoked {
                    self.cancellable(self.refresh_token()).await?;
                }
                self.replace_channel(state, cause, from).await
            }
            Control::System { seq, what } => {
                tracing::debug!(
                    channel = self.index,
                    seq,
                    ?what,
                    "a system message of a replaced socket"
                );
                Ok(())
            }
        }
    }

    /// `socket_closing`: a new socket on the same channel now; the old one is read until
    /// the server closes it.
    async fn switch_socket(&self, state: &mut State) -> Result<(), Halt> {
        bump(&self.shared.counters.socket_closing);
        let opened = self
            .cancellable(self.open(&state.channel.connect_uri))
            .await?;
        match opened {
            Ok(new) => {
                tracing::info!(
                    channel = self.index,
                    "socket_closing: switched to a new socket"
                );
                let old = std::mem::replace(&mut state.live, new);
                self.retire(old);
            }
            Err(e) => tracing::warn!(
                channel = self.index,
                reason = e.text(),
                "socket_closing: no new socket; the old one serves until it closes"
            ),
        }
        Ok(())
    }

    /// Reads a replaced socket until the server closes it or `switch_grace` passes.
    fn retire(&self, old: Live) {
        let grace = self.options.switch_grace;
        tokio::spawn(async move {
            let Live {
                mut sink, reader, ..
            } = old;
            let abort = reader.abort_handle();
            if timeout(grace, reader).await.is_err() {
                abort.abort();
            }
            let _ = timeout(WRITE_TIMEOUT, sink.close()).await;
        });
    }

    async fn on_watchdog(&self, state: &mut State) -> Result<(), Halt> {
        let now = Instant::now();
        let live = &mut state.live;
        match keepalive::verdict(
            now,
            live.last_seen(),
            live.pinged_at,
            self.options.keepalive,
        ) {
            Verdict::Wait(_) => Ok(()),
            Verdict::Ping => {
                live.pinged_at = Some(now);
                bump(&self.shared.counters.pings);
                let sent = timeout(WRITE_TIMEOUT, live.sink.send(Message::text(PING_FRAME))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    // The watchdog declares it dead in due course; the reader may end first.
                    tracing::debug!(channel = self.index, "a ping could not be written");
                }
                Ok(())
            }
            Verdict::Dead { quiet } => {
                bump(&self.shared.counters.dead_sockets);
                tracing::warn!(
                    channel = self.index,
                    ?quiet,
                    "notification socket silent for two intervals; reconnecting"
                );
                let from = live.last_seen();
                self.reconnect(state, GapCause::Dead, from).await
            }
        }
    }

    /// `PUT` the same topics again (the channel's expiry starts over).
    async fn renew(&self, state: &mut State) -> Result<(), Halt> {
        let answer = self
            .cancellable(
                self.api
                    .replace_subscriptions(&state.channel.id, &self.topics),
            )
            .await?;
        match answer {
            Ok(s) => {
                bump(&self.shared.counters.renewals);
                state.renew_at = Instant::now() + self.options.renew_every;
                if !s.rejected.is_empty() {
                    tracing::warn!(
                        channel = self.index,
                        rejected = s.rejected.len(),
                        "re-subscription rejected some topics"
                    );
                }
                Ok(())
            }
            Err(e) if e.status() == Some(404) => {
                tracing::warn!(
                    channel = self.index,
                    "the channel expired; making a new one"
                );
                self.replace_channel(state, GapCause::NoLongerSubscribed, Instant::now())
                    .await
            }
            Err(e) => {
                tracing::warn!(channel = self.index, error = %e, "re-subscription failed; trying again in a minute");
                state.renew_at = Instant::now() + RENEW_RETRY;
                Ok(())
            }
        }
    }

    /// A new socket on the same channel, with back-off; a new channel when the server no
    /// longer knows this one.
    async fn reconnect(
        &self,
        state: &mut State,
        cause: GapCause,
        from: Instant,
    ) -> Result<(), Halt> {
        state.live.reader.abort();
        let mut backoff = self.options.reconnect.start();
        loop {
            let opened = self
                .cancellable(self.open(&state.channel.connect_uri))
                .await?;
            let why = match opened {
                Ok(new) => {
                    // The channel may have expired or lost its topics while no socket was
                    // open: subscribing again (idempotent) says so, and restarts its expiry.
                    let answer = self
                        .cancellable(
                            self.api
                                .replace_subscriptions(&state.channel.id, &self.topics),
                        )
                        .await?;
                    match answer {
                        Err(e) if e.status() == Some(404) => {
                            tokio::spawn(new.close());
                            tracing::warn!(
                                channel = self.index,
                                "the channel is gone; making a new one"
                            );
                            return self.replace_channel(state, cause, from).await;
                        }
                        Err(e) => {
                            tracing::warn!(channel = self.index, error = %e, "cannot subscribe again after reconnecting; keeping the channel's topics as they were")
                        }
                        Ok(_) => state.renew_at = Instant::now() + self.options.renew_every,
                    }
                    let old = std::mem::replace(&mut state.live, new);
                    drop(old);
                    bump(&self.shared.counters.reconnects);
                    self.gap(from, cause);
                    tracing::info!(channel = self.index, "notification socket reconnected");
                    return Ok(());
                }
                Err(OpenError::Gone(why)) => {
                    tracing::warn!(channel = self.index, %why, "the channel is gone; making a new one");
                    return self.replace_channel(state, cause, from).await;
                }
                Err(OpenError::Invalid(why)) => return Err(self.fail(why)),
                Err(OpenError::Failed(why)) => why,
            };
            match backoff.next(None) {
                Some(wait) => {
                    tracing::debug!(channel = self.index, %why, ?wait, "reconnect failed");
                    self.cancellable(tokio::time::sleep(wait)).await?;
                }
                None => {
                    return Err(self.fail(format!(
                        "no socket after {} attempts over {:?}: {why}",
                        backoff.retries() + 1,
                        backoff.elapsed()
                    )));
                }
            }
        }
    }

    /// A new channel, its socket and the same topics; then the old socket is closed.
    async fn replace_channel(
        &self,
        state: &mut State,
        cause: GapCause,
        from: Instant,
    ) -> Result<(), Halt> {
        let mut backoff = self.options.reconnect.start();
        loop {
            let made = self
                .cancellable(self.establish(self.options.start_deadline))
                .await?;
            let error = match made {
                Ok(new) => {
                    let old = std::mem::replace(&mut state.live, new.live);
                    tokio::spawn(old.close());
                    state.channel = new.channel;
                    state.channel_first_seq = state.live.seq;
                    state.renew_at = Instant::now() + self.options.renew_every;
                    bump(&self.shared.counters.resubscribes);
                    self.gap(from, cause);
                    let rejected = new.subscription.rejected.len();
                    tracing::info!(channel = self.index, rejected, "new channel subscribed");
                    return Ok(());
                }
                Err(e) => e,
            };
            let transient = match &error {
                NotifyError::Api(e) => e.is_transient(),
                NotifyError::Socket { .. } => true,
                _ => false,
            };
            match backoff.next(None).filter(|_| transient) {
                Some(wait) => {
                    tracing::warn!(channel = self.index, %error, ?wait, "cannot make a new channel yet");
                    self.cancellable(tokio::time::sleep(wait)).await?;
                }
                None => return Err(self.fail(error.to_string())),
            }
        }
    }

    async fn refresh_token(&self) {
        let tokens = self.api.tokens();
        if let Ok(stale) = tokens.token().await
            && let Err(e) = tokens.invalidate_and_refresh(&stale).await
        {
            tracing::warn!(channel = self.index, error = %e, "cannot refresh the revoked token");
        }
    }

    fn gap(&self, from: Instant, cause: GapCause) {
        self.shared.record_gap(Gap {
            channel: self.index,
            from,
            to: Instant::now(),
            cause,
        });
    }

    fn fail(&self, error: String) -> Halt {
        tracing::error!(channel = self.index, %error, "notification channel stopped");
        self.shared.record_failure(self.index, error);
        Halt
    }

    /// `f`, unless the watcher stops first.
    async fn cancellable<F: Future>(&self, f: F) -> Result<F::Output, Halt> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Halt),
            out = f => Ok(out),
        }
    }

    async fn open_with_retries(&self, uri: &str, policy: RetryPolicy) -> Result<Live, NotifyError> {
        let mut backoff = policy.start();
        loop {
            let why = match self.open(uri).await {
                Ok(live) => return Ok(live),
                Err(OpenError::Failed(why)) => why,
                Err(OpenError::Gone(why) | OpenError::Invalid(why)) => {
                    return Err(NotifyError::Socket {
                        uri: shown_uri(uri),
                        reason: why,
                    });
                }
            };
            let Some(wait) = backoff.next(None) else {
                return Err(NotifyError::Socket {
                    uri: shown_uri(uri),
                    reason: format!(
                        "{why} (after {} attempts over {:?})",
                        backoff.retries() + 1,
                        backoff.elapsed()
                    ),
                });
            };
            tracing::debug!(channel = self.index, %why, ?wait, "cannot open the notification socket yet");
            tokio::time::sleep(wait).await;
        }
    }

    /// Dials and upgrades one socket and starts its reader.
    async fn open(&self, uri: &str) -> Result<Live, OpenError> {
        crate::http_client::install_crypto_provider();
        let request = uri
            .into_client_request()
            .map_err(|e| OpenError::Invalid(format!("the connectUri is not usable: {e}")))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let dial = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let limit = self.options.handshake_timeout;
        let socket = match timeout(limit, dial).await {
            Err(_) => return Err(OpenError::Failed(format!("no upgrade within {limit:?}"))),
            Ok(Err(WsError::Http(response))) if response.status().is_client_error() => {
                return Err(OpenError::Gone(format!(
                    "the upgrade was refused with {}",
                    response.status()
                )));
            }
            Ok(Err(WsError::Url(e))) => return Err(OpenError::Invalid(e.to_string())),
            Ok(Err(e)) => return Err(OpenError::Failed(e.to_string())),
            Ok(Ok((socket, _))) => socket,
        };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (sink, stream) = socket.split();
        let last_seen = Arc::new(Mutex::new(Instant::now()));
        let reader = tokio::spawn(
            Reader {
                seq,
                channel: self.index,
                last_seen: last_seen.clone(),
                out: self.out.clone(),
                control: self.control_tx.clone(),
                shared: self.shared.clone(),
            }
            .run(stream),
        );
        bump(&self.shared.counters.sockets_opened);
        Ok(Live {
            seq,
            sink,
            last_seen,
            reader,
            pinged_at: None,
        })
    }
}

/// A socket's read half and where what it reads goes.
struct Reader {
    seq: u64,
    channel: usize,
    last_seen: Arc<Mutex<Instant>>,
    out: mpsc::Sender<Observed>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
}

impl Reader {
    async fn run(self, mut stream: SplitStream<Socket>) {
        let counters = &self.shared.counters;
        let reason = loop {
            let frame = stream.next().await;
            let received_at = Instant::now();
            *self.last_seen.lock() = received_at;
            let text = match frame {
                None => break "closed without a close frame".to_owned(),
                Some(Err(e)) => break format!("socket error: {e}"),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(f) => {
                            format!("closed by the server ({} {})", u16::from(f.code), f.reason)
                        }
                        None => "closed by the server".to_owned(),
                    };
                }
                // Protocol pings are answered by tungstenite; any frame is a sign of life.
                Some(Ok(_)) => continue,
            };
            match message::read(text.as_str()) {
                Ok(Incoming::User { topic, body }) => {
                    bump(&counters.notifications);
                    let observed = Observed {
                        topic,
                        received_at,
                        received_wall: chrono::Utc::now(),
                        body,
                    };
                    // A closed queue: the watcher's user stopped reading; keep the socket
                    // read (and so alive) until the watcher stops it.
                    let _ = self.out.send(observed).await;
                }
                Ok(Incoming::Heartbeat) => bump(&counters.heartbeats),
                Ok(Incoming::Pong) => bump(&counters.pongs),
                Ok(what) if what.is_system() => {
                    let _ = self.control.send(Control::System {
                        seq: self.seq,
                        what,
                    });
                }
                Ok(other) => {
                    bump(&counters.unknown_messages);
                    tracing::debug!(
                        channel = self.channel,
                        ?other,
                        "an unexpected notification message"
                    );
                }
                Err(e) => {
                    bump(&counters.unknown_messages);
                    tracing::debug!(channel = self.channel, error = %e, "a socket message that is not a notification");
                }
            }
        };
        let _ = self.control.send(Control::Ended {
            seq: self.seq,
            reason,
        });
    }
}

/// A socket address without its channel id: scheme, host and port.
pub fn shown_uri(uri: &str) -> String {
    match reqwest::Url::parse(uri) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/…", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "an unreadable connectUri".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_address_is_shown_without_its_channel() {
        assert_eq!(
            shown_uri("wss://streaming.mypurecloud.com/channels/streaming-abc"),
            "wss://streaming.mypurecloud.com/…"
        );
        assert_eq!(
            shown_uri("ws://127.0.0.1:4010/channels/x"),
            "ws://127.0.0.1:4010/…"
        );
        assert_eq!(shown_uri("not a url"), "an unreadable connectUri");
    }
}
