//! The call budget: at most N calls in any rolling window, as Plane's throttle counts them.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A token bucket whose tokens come back one window after the call that spent them ended.
///
/// Plane's `ApiKeyRateThrottle` counts the requests that reached it in the last minute. A
/// call reaches Plane somewhere between the moment it takes a token and the moment it ends,
/// so counting a token from the end of its call (and a call in flight as "now") guarantees
/// that Plane never sees more than `permits` calls in any window, however slow the network
/// or the blocking pool. A classic refilling bucket could let `2 × permits` through.
#[derive(Debug)]
pub(crate) struct Budget {
    permits: usize,
    window: Duration,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    /// When each finished call of the last window ended, oldest first.
    ended: VecDeque<Instant>,
}

/// A taken token; dropping it (when the call ended) starts its window.
pub(crate) struct Permit<'a> {
    budget: &'a Budget,
}

impl Budget {
    pub(crate) fn new(permits: usize, window: Duration) -> Budget {
        Budget {
            permits: permits.max(1),
            window,
            state: Mutex::new(State::default()),
            released: Notify::new(),
        }
    }

    /// Waits until a call may start and takes a token for it.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the wait wakes us.
            notified.as_mut().enable();
            match self.try_acquire(Instant::now()) {
                Ok(()) => return Permit { budget: self },
                Err(Some(wait)) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = notified => {}
                    }
                }
                Err(None) => notified.await,
            }
        }
    }

    /// Takes a token at `now`, or says how long until one comes back (`None`: when a call in
    /// flight ends).
    fn try_acquire(&self, now: Instant) -> Result<(), Option<Duration>> {
        let mut state = self.lock();
        while state
            .ended
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            state.ended.pop_front();
        }
        if state.in_flight + state.ended.len() < self.permits {
            state.in_flight += 1;
            return Ok(());
        }
        Err(state.ended.front().map(|oldest| {
            (*oldest + self.window)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1))
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.budget.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.ended.push_back(Instant::now());
        }
        self.budget.released.notify_waiters();
    }
}
