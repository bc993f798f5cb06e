//! One connection's outgoing frames: a queue any task may push to without waiting (the
//! reader, action tasks delivering results, the connection's timers) and the one writer
//! task that drains it, feeding a burst of frames and flushing once per burst.
//!
//! Backpressure: the reader stops reading while more than [`HIGH_WATER`] frames wait, so
//! a client that sends faster than it reads is slowed down by TCP, not buffered without
//! end. Results are never refused (their number is bounded by the tenant's in-flight
//! limit); a connection whose queue still reaches [`HARD_LIMIT`] is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use gcx_protocol::assist::{MessageType, WsMessage};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ws_burst::{Outgoing, write_burst};

/// Frames waiting above which the reader pauses.
pub(crate) const HIGH_WATER: usize = 4096;
/// Frames waiting at which the connection is given up as a consumer that does not read.
pub(crate) const HARD_LIMIT: usize = 262_144;

/// `{"type":…,"payload":…}` written straight from `payload`, without the intermediate
/// `serde_json::Value` of [`WsMessage::with_payload`]: acks and results are the hot path.
pub(crate) fn typed_frame<P: Serialize>(kind: MessageType, payload: &P) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Typed<'a, P> {
        #[serde(rename = "type")]
        kind: MessageType,
        payload: &'a P,
    }
    match serde_json::to_string(&Typed { kind, payload }) {
        Ok(text) => Utf8Bytes::from(text),
        // Plain data with string keys cannot fail to serialize; fall back to the
        // general path rather than lose the frame.
        Err(_) => Utf8Bytes::from(WsMessage::with_payload(kind, payload).to_json()),
    }
}

struct Shared {
    /// Frames pushed and not yet written.
    queued: AtomicUsize,
    /// Woken when `queued` falls below [`HIGH_WATER`].
    drained: Notify,
    /// Cancelled when the queue reaches [`HARD_LIMIT`]: the connection is dropped.
    overflow: CancellationToken,
}

/// The sending side of one connection's queue; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

/// The writer's side, handed to [`write_loop`].
pub(crate) struct Drain {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
}

impl Outbox {
    pub(crate) fn new() -> (Outbox, Drain) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            overflow: CancellationToken::new(),
        });
        (
            Outbox {
                tx,
                shared: shared.clone(),
            },
            Drain { rx, shared },
        )
    }

    /// Queues a text frame (ignored once the writer has stopped).
    pub(crate) fn push(&self, frame: Utf8Bytes) {
        self.enqueue(Outgoing::Text(frame));
    }

    /// Queues `message` as JSON text.
    pub(crate) fn push_msg(&self, message: &WsMessage) {
        self.push(Utf8Bytes::from(message.to_json()));
    }

    /// Queues a close frame; the writer stops after it.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        self.enqueue(Outgoing::Close(code, reason));
    }

    fn enqueue(&self, item: Outgoing) {
        let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if queued >= HARD_LIMIT {
            self.shared.overflow.cancel();
        }
        if self.tx.send(item).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether the reader may read another frame.
    pub(crate) fn has_room(&self) -> bool {
        self.shared.queued.load(Ordering::Acquire) < HIGH_WATER
    }

    /// Resolves once [`Outbox::has_room`] holds.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.shared.drained.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain between the two is not missed.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Cancelled when the client stopped reading for too long.
    pub(crate) fn overflow(&self) -> CancellationToken {
        self.shared.overflow.clone()
    }
}

/// The writer task: frames in queue order, one flush per burst; ends after a close frame,
/// on a write error, or when every [`Outbox`] is gone and the queue is empty.
pub(crate) async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut drain: Drain) {
    while let Some(first) = drain.rx.recv().await {
        let Ok(burst) = write_burst(&mut sink, first, || drain.rx.try_recv().ok()).await else {
            return;
        };
        let left = drain
            .shared
            .queued
            .fetch_sub(burst.written, Ordering::AcqRel)
            .saturating_sub(burst.written);
        if left < HIGH_WATER {
            drain.shared.drained.notify_waiters();
        }
        if burst.ends() {
            return;
        }
    }
}
