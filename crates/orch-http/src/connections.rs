//! The connection table: a global and a per-peer cap, where a stalled connection loses.
//!
//! Every served connection has an `Activity`: whether a request of it is being handled, since
//! when it has been idle (waiting for a request head or reading a body), and since when its
//! answer has been blocked because the client does not read. When a cap is reached, the new
//! connection takes the place of the one that has done nothing useful the longest (blocked
//! writing, or idle); a connection that is handling a request is never closed for another. So clients
//! that connect and never read (or never finish a request) cannot keep a webhook sender out,
//! even when they share its address, as everything behind a reverse proxy does.
//! `DeadlineIo` wraps a connection's stream: it reports blocked writes to the `Activity` and
//! fails a write that stays blocked past the write deadline.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::Sleep;

/// A set of served connections with its caps.
#[derive(Debug)]
pub(crate) struct Connections {
    max_total: usize,
    max_per_peer: usize,
    table: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    /// Woken when a connection ends, finishes handling a request or blocks writing: a full
    /// table may have room or a victim now.
    changed: Notify,
    /// The number of connections in the table.
    count: watch::Sender<usize>,
}

/// What became of a new connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Serve it; `evicted` says whether another connection was closed to make room.
    Admitted {
        registration: Registration,
        evicted: bool,
    },
    /// Its peer is at its cap and every connection of that peer is handling a request.
    Refused,
    /// The table is full and every connection in it is handling a request: try again later.
    Full,
}

/// A connection's place in the table; leaving it (dropping) frees the place.
#[derive(Debug)]
pub(crate) struct Registration {
    connections: Arc<Connections>,
    activity: Arc<Activity>,
}

/// What one connection is doing, as far as choosing whom to close is concerned.
#[derive(Debug)]
pub(crate) struct Activity {
    id: u64,
    /// The peer's address; `None` on the admin socket, where every peer is orch's own user.
    peer: Option<IpAddr>,
    state: Mutex<ActivityState>,
    /// Notified once when the connection must close at once.
    close: Notify,
}

#[derive(Debug)]
struct ActivityState {
    /// A request of this connection is being handled (its body is read and its answer is
    /// being made).
    working: bool,
    /// The connection was chosen to close; it starts no more work.
    closing: bool,
    /// Since when nothing was handled: the accept, or the end of the last handling.
    idle_since: Instant,
    /// Since when an answer has been waiting for the client to read it.
    blocked_since: Option<Instant>,
    /// The last blocked write passed its deadline.
    write_timed_out: bool,
}

/// Marks a request as being handled until dropped.
#[derive(Debug)]
pub(crate) struct Work {
    activity: Arc<Activity>,
    connections: Arc<Connections>,
}

impl Connections {
    /// A table of at most `max_total` connections, `max_per_peer` of them from one address.
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Arc<Connections> {
        let max_total = max_total.max(1);
        Arc::new(Connections {
            max_total,
            max_per_peer: max_per_peer.clamp(1, max_total),
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            changed: Notify::new(),
            count: watch::Sender::new(0),
        })
    }

    /// Finds a place for a new connection from `peer`, closing a stalled or idle connection
    /// to make room if a cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Admission {
        let peer = peer.map(|ip| ip.to_canonical());
        let mut table = self.lock_table();
        let mut evicted = false;
        let from_peer = table
            .values()
            .filter(|activity| activity.peer == peer)
            .count();
        if from_peer >= self.max_per_peer {
            if !evict(&mut table, |activity| activity.peer == peer) {
                return Admission::Refused;
            }
            evicted = true;
        }
        if table.len() >= self.max_total {
            if !evict(&mut table, |_| true) {
                return Admission::Full;
            }
            evicted = true;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            id,
            peer,
            state: Mutex::new(ActivityState {
                working: false,
                closing: false,
                idle_since: Instant::now(),
                blocked_since: None,
                write_timed_out: false,
            }),
            close: Notify::new(),
        });
        table.insert(id, activity.clone());
        self.count.send_replace(table.len());
        Admission::Admitted {
            registration: Registration {
                connections: self.clone(),
                activity,
            },
            evicted,
        }
    }

    /// Waits until something changed that may let a full table admit a connection.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Connections in the table.
    pub(crate) fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until the table is empty.
    pub(crate) async fn emptied(&self) {
        let mut count = self.count.subscribe();
        let _ = count.wait_for(|count| *count == 0).await;
    }

    /// Tells every connection to close at once (after the shutdown grace).
    pub(crate) fn close_all(&self) {
        let table = self.lock_table();
        for activity in table.values() {
            activity.lock_state().closing = true;
            activity.close.notify_one();
        }
    }

    fn lock_table(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, id: u64) {
        let mut table = self.lock_table();
        if table.remove(&id).is_some() {
            self.count.send_replace(table.len());
        }
        drop(table);
        self.changed.notify_one();
    }
}

/// Closes the connection among those `eligible` that has been stalled or idle the longest and
/// is not handling a request; false when there is none.
fn evict(table: &mut HashMap<u64, Arc<Activity>>, eligible: impl Fn(&Activity) -> bool) -> bool {
    let victim = table
        .values()
        .filter(|activity| eligible(activity))
        .filter_map(|activity| Some((activity.stalled_since()?, activity.id)))
        .min();
    let Some((_, id)) = victim else {
        return false;
    };
    let Some(activity) = table.remove(&id) else {
        return false;
    };
    activity.lock_state().closing = true;
    activity.close.notify_one();
    true
}

impl Registration {
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// A handle that starts work for this connection from inside its service.
    pub(crate) fn worker(&self) -> Worker {
        Worker {
            activity: self.activity.clone(),
            connections: self.connections.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.remove(self.activity.id);
    }
}

/// Starts `Work` for one connection; cheap to clone into each request.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    activity: Arc<Activity>,
    connections: Arc<Connections>,
}

impl Worker {
    /// Marks a request of this connection as being handled until the `Work` is dropped;
    /// `None` when the connection was chosen to close (the request must not start).
    pub(crate) fn begin_work(&self) -> Option<Work> {
        {
            let mut state = self.activity.lock_state();
            if state.closing {
                return None;
            }
            state.working = true;
        }
        Some(Work {
            activity: self.activity.clone(),
            connections: self.connections.clone(),
        })
    }

    /// A request head has arrived: the connection is doing something useful again, so its
    /// idle time restarts (its body still has `body_read_timeout` to arrive).
    pub(crate) fn request_arrived(&self) {
        self.activity.lock_state().idle_since = Instant::now();
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        {
            let mut state = self.activity.lock_state();
            state.working = false;
            state.idle_since = Instant::now();
        }
        self.connections.changed.notify_one();
    }
}

impl Activity {
    /// Completes when the connection must close at once.
    pub(crate) async fn closed(&self) {
        self.close.notified().await;
    }

    /// Whether the connection ended because an answer passed its write deadline.
    pub(crate) fn write_timed_out(&self) -> bool {
        self.lock_state().write_timed_out
    }

    /// Since when the connection has done nothing useful: since its answer has been blocked
    /// (the client does not read), else since it has been idle. `None` while it handles a
    /// request or is already closing: such a connection is never a victim.
    fn stalled_since(&self) -> Option<Instant> {
        let state = self.lock_state();
        if state.working || state.closing {
            return None;
        }
        Some(state.blocked_since.unwrap_or(state.idle_since))
    }

    fn write_blocked(&self) {
        let mut state = self.lock_state();
        if state.blocked_since.is_none() {
            state.blocked_since = Some(Instant::now());
        }
    }

    fn write_drained(&self) {
        self.lock_state().blocked_since = None;
    }

    fn lock_state(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn is_closing(&self) -> bool {
        self.lock_state().closing
    }

    /// Sets when the connection went idle and blocked, so tests need not wait for time to pass.
    #[cfg(test)]
    fn stalled_at(&self, idle_since: Instant, blocked_since: Option<Instant>) {
        let mut state = self.lock_state();
        state.idle_since = idle_since;
        state.blocked_since = blocked_since;
    }
}

/// A connection's stream with a write deadline: once a write blocks (the client does not
/// read), everything hyper has to send must be written within `write_timeout`, or the write
/// fails with `TimedOut` and hyper closes the connection.
#[derive(Debug)]
pub(crate) struct DeadlineIo<S> {
    inner: S,
    activity: Arc<Activity>,
    connections: Arc<Connections>,
    write_timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> DeadlineIo<S> {
    pub(crate) fn new(
        inner: S,
        registration: &Registration,
        write_timeout: Duration,
    ) -> DeadlineIo<S> {
        DeadlineIo {
            inner,
            activity: registration.activity.clone(),
            connections: registration.connections.clone(),
            write_timeout,
            deadline: None,
        }
    }

    /// A write or flush is pending: arms the deadline on the first one and fails once it
    /// has passed.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = match &mut self.deadline {
            Some(deadline) => deadline,
            None => {
                self.activity.write_blocked();
                self.connections.changed.notify_one();
                self.deadline
                    .insert(Box::pin(tokio::time::sleep(self.write_timeout)))
            }
        };
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.activity.lock_state().write_timed_out = true;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read the answer within the write deadline",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper flushes after writing out everything it buffered: the answer is with the kernel,
    /// and the deadline is disarmed.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.blocked(cx),
            Poll::Ready(Ok(())) => {
                if this.deadline.take().is_some() {
                    this.activity.write_drained();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
