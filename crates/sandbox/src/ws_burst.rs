//! What every WebSocket writer of the sandbox shares (the assist stream's and the
//! Notifications sockets'): the frames a writer is asked to write, and one burst of them
//! fed to the socket and flushed once.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;

/// Most frames fed before one flush.
pub(crate) const BURST: usize = 256;

/// What a writer is asked to do.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Text(Utf8Bytes),
    /// Send a close frame, then stop writing.
    Close(u16, &'static str),
}

/// How a burst went.
pub(crate) struct Burst {
    /// Frames written.
    pub(crate) written: usize,
    /// A close frame was written: the writer stops.
    pub(crate) closed: bool,
    /// The flush failed: the writer stops.
    pub(crate) flush_failed: bool,
}

impl Burst {
    /// Whether the writer stops after this burst.
    pub(crate) fn ends(&self) -> bool {
        self.closed || self.flush_failed
    }
}

/// Feeds `first` and then whatever `next` yields (at most [`BURST`] frames, none after a
/// close), then flushes once. `Err` when a frame could not be fed: the writer stops.
pub(crate) async fn write_burst(
    sink: &mut SplitSink<WebSocket, Message>,
    first: Outgoing,
    mut next: impl FnMut() -> Option<Outgoing>,
) -> Result<Burst, axum::Error> {
    let mut item = Some(first);
    let mut burst = Burst {
        written: 0,
        closed: false,
        flush_failed: false,
    };
    while let Some(frame) = item.take() {
        burst.written += 1;
        match frame {
            Outgoing::Text(text) => sink.feed(Message::Text(text)).await?,
            Outgoing::Close(code, reason) => {
                burst.closed = true;
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                sink.feed(Message::Close(Some(frame))).await?;
            }
        }
        if !burst.closed && burst.written < BURST {
            item = next();
        }
    }
    burst.flush_failed = sink.flush().await.is_err();
    Ok(burst)
}
