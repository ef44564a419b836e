//! The event loop's retry policy.

use std::time::Duration;

use crate::ids::JobId;
use crate::orchestrator::HandleError;
use crate::ports::{InboxOutcome, StoreError, TrackerError};
use crate::retries::{AfterFailure, EventKey, GivenUp, HandlingRetries, HANDLE_ATTEMPTS};
use crate::time::Timestamp;

const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn outage() -> HandleError {
    HandleError::Tracker(TrackerError::unavailable("plane is down"))
}

fn bug() -> HandleError {
    HandleError::Store(StoreError::Other("corrupt row".into()))
}

/// Fails `key` with `err` until it is given up or `limit` failures, each at its retry time.
fn fail_until_given_up(
    retries: &mut HandlingRetries,
    key: EventKey,
    err: &HandleError,
    limit: u32,
) -> (u32, Option<GivenUp>) {
    let mut now = START;
    for failures in 1..=limit {
        assert!(retries.is_due(key, now));
        match retries.failed(key, err, now) {
            AfterFailure::RetryAt(next) => {
                assert!(next > now);
                assert!(!retries.is_due(key, now));
                assert!(
                    next.since(now) <= Duration::from_secs(300),
                    "capped backoff"
                );
                now = next;
            }
            AfterFailure::GiveUp(given_up) => return (failures, Some(given_up)),
        }
    }
    (limit, None)
}

#[test]
fn an_outage_never_gives_a_delivery_up() {
    let mut retries = HandlingRetries::new();
    let (failures, given_up) =
        fail_until_given_up(&mut retries, EventKey::Delivery(1), &outage(), 500);
    assert_eq!((failures, given_up), (500, None));
}

#[test]
fn a_missed_deadline_or_a_stopped_loop_waits_like_an_outage() {
    for err in [
        HandleError::DeadlineExceeded(Duration::from_secs(30)),
        HandleError::LoopStopped,
    ] {
        let mut retries = HandlingRetries::new();
        let (failures, given_up) =
            fail_until_given_up(&mut retries, EventKey::Delivery(1), &err, 500);
        assert_eq!((failures, given_up), (500, None), "{err}");
    }
    assert_eq!(
        HandleError::DeadlineExceeded(Duration::from_secs(30)).to_string(),
        "handling took longer than 30 s"
    );
}

#[test]
fn a_delivery_that_keeps_failing_for_another_reason_is_given_up_with_its_error() {
    let mut retries = HandlingRetries::new();
    let (failures, given_up) =
        fail_until_given_up(&mut retries, EventKey::Delivery(1), &bug(), 500);
    assert_eq!(failures, HANDLE_ATTEMPTS);
    assert!(matches!(given_up, Some(GivenUp::Failed(error)) if error.contains("corrupt row")));
    assert!(retries.is_empty(), "a given-up delivery is forgotten");
}

#[test]
fn a_delivery_that_stays_too_early_is_left_to_the_reconciler() {
    let mut retries = HandlingRetries::new();
    let early = HandleError::TooEarly("the gate is not open yet".to_owned());
    let (_, given_up) = fail_until_given_up(&mut retries, EventKey::Delivery(1), &early, 500);
    assert_eq!(
        given_up.map(|given_up| given_up.outcome()),
        Some(InboxOutcome::Ignored("the gate is not open yet".to_owned()))
    );
}

#[test]
fn a_job_end_is_never_given_up() {
    let mut retries = HandlingRetries::new();
    let (failures, given_up) =
        fail_until_given_up(&mut retries, EventKey::JobEnd(JobId(3)), &bug(), 500);
    assert_eq!((failures, given_up), (500, None));
    assert_eq!(retries.len(), 1);
    retries.done(EventKey::JobEnd(JobId(3)));
    assert!(retries.next_due().is_none());
}
