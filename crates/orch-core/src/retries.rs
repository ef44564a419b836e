//! `HandlingRetries`: when the event loop handles a failed event again, and when it gives up.
//!
//! The daemon's event loop and the simulation use this one policy. An outage (the store, Plane
//! or Gitea unavailable, a credential refused) never gives an event up: it is tried again with
//! capped backoff until the service is back. A delivery that fails for another reason is given
//! up after `HANDLE_ATTEMPTS`, with the error as its outcome; one that keeps coming too early is
//! left to the reconciler. A job's end is never given up: the task's next step depends on it.

use std::collections::BTreeMap;

use crate::backoff::Backoff;
use crate::ids::JobId;
use crate::orchestrator::HandleError;
use crate::ports::InboxOutcome;
use crate::time::Timestamp;

/// The most failures (outages not counted) before a delivery is given up.
pub const HANDLE_ATTEMPTS: u32 = 20;

/// What the event loop handles: a stored delivery or a job's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKey {
    Delivery(i64),
    JobEnd(JobId),
}

impl EventKey {
    pub fn source(self) -> &'static str {
        match self {
            EventKey::Delivery(_) => "delivery",
            EventKey::JobEnd(_) => "job end",
        }
    }

    pub fn id(self) -> i64 {
        match self {
            EventKey::Delivery(id) => id,
            EventKey::JobEnd(job) => job.0,
        }
    }
}

/// What to do after a failed handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Handle it again at this time.
    RetryAt(Timestamp),
    /// Stop: mark the delivery processed with this outcome.
    GiveUp(GivenUp),
}

/// Why a delivery is given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GivenUp {
    /// It kept coming before orch could act on it; the reconciler reads the fact again.
    Ignored(String),
    /// It failed `HANDLE_ATTEMPTS` times for a reason that is not an outage.
    Failed(String),
}

impl GivenUp {
    /// The outcome stored with the delivery.
    pub fn outcome(&self) -> InboxOutcome {
        match self {
            GivenUp::Ignored(reason) => InboxOutcome::Ignored(reason.clone()),
            GivenUp::Failed(error) => InboxOutcome::Failed(error.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures so far: the backoff exponent.
    failures: u32,
    /// Failures that count towards giving up (outages do not).
    counted: u32,
    next: Timestamp,
}

/// Events whose handling failed, with when to try each again.
#[derive(Debug, Default)]
pub struct HandlingRetries {
    entries: BTreeMap<EventKey, Entry>,
    backoff: Backoff,
}

impl HandlingRetries {
    pub fn new() -> HandlingRetries {
        HandlingRetries::default()
    }

    /// Whether `key` may be handled now (it never failed, or its retry is due).
    pub fn is_due(&self, key: EventKey, now: Timestamp) -> bool {
        self.entries.get(&key).is_none_or(|entry| entry.next <= now)
    }

    /// `key` was handled (or given up): forget it.
    pub fn done(&mut self, key: EventKey) {
        self.entries.remove(&key);
    }

    /// Records a failed handling of `key` and says what to do next.
    pub fn failed(&mut self, key: EventKey, err: &HandleError, now: Timestamp) -> AfterFailure {
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            counted: 0,
            next: now,
        });
        entry.failures += 1;
        if !err.is_outage() {
            entry.counted += 1;
        }
        if matches!(key, EventKey::Delivery(_)) && entry.counted >= HANDLE_ATTEMPTS {
            let given_up = match err {
                HandleError::TooEarly(reason) => GivenUp::Ignored(reason.clone()),
                other => GivenUp::Failed(other.to_string()),
            };
            self.entries.remove(&key);
            return AfterFailure::GiveUp(given_up);
        }
        // The full backoff (no jitter): the loop is one process, nothing to spread.
        let next = now + self.backoff.delay(entry.failures, None, 1.0);
        entry.next = next;
        AfterFailure::RetryAt(next)
    }

    /// The earliest retry, if any is pending.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.entries.values().map(|entry| entry.next).min()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
