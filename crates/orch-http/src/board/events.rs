//! `/events`: the board's live updates as server-sent events.
//!
//! Each stream reads the store every `POLL_INTERVAL` and sends the board's live part (the
//! banner and the columns, rendered and escaped like the page) whenever it changed, as one
//! `board` event; the page's script swaps it in. Reading the store rather than listening to
//! the event loop also shows changes made by another process (the CLI over the database).
//! A stream ends after `STREAM_LIFETIME` or when the server stops, and the browser's
//! `EventSource` reconnects after `retry`, so no stream outlives the connection limits.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::board::view;
use crate::state::AppState;

/// How often a stream looks for changes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(700);

/// How long one stream lasts before the browser reconnects (under `Limits::max_connection_age`).
pub(crate) const STREAM_LIFETIME: Duration = Duration::from_secs(60);

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the browser waits before reconnecting, in milliseconds.
const RETRY_MS: u32 = 1500;

/// The body of an `/events` answer: chunks a producer task sends until it ends.
#[derive(Debug)]
pub(crate) struct EventStream {
    chunks: mpsc::Receiver<Bytes>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Starts the stream's producer; it ends with the client, the lifetime or `stop`.
pub(crate) fn start(state: Arc<AppState>, mut stop: watch::Receiver<bool>) -> EventStream {
    let (sender, chunks) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        if sender
            .send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
            .await
            .is_err()
        {
            return;
        }
        let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
        let mut last_sent: Option<String> = None;
        let mut last_write = tokio::time::Instant::now();
        loop {
            match view::live_fragment(&state).await {
                Ok(fragment) if last_sent.as_ref() != Some(&fragment) => {
                    if sender
                        .send(Bytes::from(event("board", &fragment)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    last_sent = Some(fragment);
                    last_write = tokio::time::Instant::now();
                }
                Ok(_) => {}
                Err(err) => warn!(error = %err, "board events store read failed"),
            }
            if last_write.elapsed() >= KEEPALIVE {
                if sender
                    .send(Bytes::from_static(b": keepalive\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
                last_write = tokio::time::Instant::now();
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = tokio::time::sleep_until(ends) => break,
                () = sender.closed() => return,
                _ = stop.changed() => break,
            }
        }
        debug!("board events stream ended");
    });
    EventStream { chunks }
}

/// One server-sent event: each line of `data` becomes a `data:` line (a lone `\r` ends a
/// line too, for the browser).
pub(crate) fn event(name: &str, data: &str) -> String {
    let mut text = format!("event: {name}\n");
    for line in data.split(['\n', '\r']).filter(|line| !line.is_empty()) {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    text
}
