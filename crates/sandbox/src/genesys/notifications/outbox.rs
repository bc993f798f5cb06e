//! One notification socket's outgoing frames: a bounded queue that anyone may push to
//! without waiting (the publisher, the socket's own timers, whoever replaces or removes
//! its channel) and the one writer task that drains it, feeding a burst of frames and
//! flushing once per burst.
//!
//! A client that stops reading fills the queue ([`QUEUE_FRAMES`]); the next push fails,
//! the frame counts as dropped and the socket is given up ([`SocketHandle::overflow`]):
//! nothing waits on a slow consumer and nothing grows without bound.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::ws_burst::Outgoing;
use crate::ws_burst::write_burst;

/// Frames a socket may have waiting before it is given up as a consumer that does not read.
pub(crate) const QUEUE_FRAMES: usize = 4096;

/// The sending side of one socket's queue; cheap to clone. The channel table holds one
/// (so the publisher reaches the socket), the socket's own task another.
#[derive(Debug, Clone)]
pub(crate) struct SocketHandle {
    /// Tells this socket from a newer one on the same channel.
    id: u64,
    tx: mpsc::Sender<Outgoing>,
    /// Cancelled when the queue was full: the socket is dropped without a close frame.
    overflow: CancellationToken,
}

impl SocketHandle {
    /// A handle and the receiving end its writer drains.
    pub(crate) fn new(id: u64) -> (SocketHandle, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let handle = SocketHandle {
            id,
            tx,
            overflow: CancellationToken::new(),
        };
        (handle, rx)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Queues a text frame; false when it was not queued: the socket has ended, or its
    /// queue is full, and then the socket is given up.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> bool {
        self.send(Outgoing::Text(frame))
    }

    /// Queues a close frame; the writer stops after it. Frames queued before it are
    /// written first.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        self.send(Outgoing::Close(code, reason));
    }

    fn send(&self, item: Outgoing) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.overflow.cancel();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Cancelled once a push found the queue full.
    pub(crate) fn overflow(&self) -> CancellationToken {
        self.overflow.clone()
    }
}

/// The writer task: frames in queue order, one flush per burst; ends after a close frame,
/// on a write error, or when every [`SocketHandle`] is gone and the queue is empty.
pub(crate) async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    while let Some(first) = queue.recv().await {
        match write_burst(&mut sink, first, || queue.try_recv().ok()).await {
            Ok(burst) if !burst.ends() => {}
            _ => return,
        }
    }
}
