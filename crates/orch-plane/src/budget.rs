//! The call budget: at most N calls in any rolling window, as Plane's throttle counts them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket whose tokens come back one window after they were spent. Plane's
/// `ApiKeyRateThrottle` counts the calls of the last minute, so this never lets more than
/// `permits` calls start in any window of `window`; a classic refilling bucket could.
#[derive(Debug)]
pub(crate) struct Budget {
    permits: usize,
    window: Duration,
    spent: Mutex<VecDeque<Instant>>,
}

impl Budget {
    pub(crate) fn new(permits: usize, window: Duration) -> Budget {
        Budget {
            permits: permits.max(1),
            window,
            spent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until a call may start, then counts it.
    pub(crate) async fn acquire(&self) {
        loop {
            let wait = self.try_acquire(Instant::now());
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Counts a call at `now` if the budget allows; otherwise how long until it does.
    fn try_acquire(&self, now: Instant) -> Option<Duration> {
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while spent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            spent.pop_front();
        }
        if spent.len() < self.permits {
            spent.push_back(now);
            return None;
        }
        let oldest = *spent.front().expect("a full budget has a first entry");
        Some(
            (oldest + self.window)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        )
    }
}
