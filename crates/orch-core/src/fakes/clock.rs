//! `FakeClock`: time that moves only when a test says so.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::ports::Clock;
use crate::time::Timestamp;

/// A settable clock. Starts at 2026-01-01T00:00:00Z.
#[derive(Debug)]
pub struct FakeClock {
    millis: AtomicI64,
}

impl FakeClock {
    pub const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

    pub fn new() -> FakeClock {
        FakeClock {
            millis: AtomicI64::new(FakeClock::START.as_millis()),
        }
    }

    pub fn set(&self, at: Timestamp) {
        self.millis.store(at.as_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }
}

impl Default for FakeClock {
    fn default() -> FakeClock {
        FakeClock::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::SeqCst))
    }
}
