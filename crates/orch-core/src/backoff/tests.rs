//! Full-jitter backoff bounds.

use std::time::Duration;

use crate::backoff::{jitter_from, Backoff, RetryPolicy};

#[test]
fn backoff_grows_exponentially_under_the_cap_and_honours_retry_after() {
    let backoff = Backoff::default();
    assert_eq!(
        backoff.delay(1, None, 0.999_999),
        Duration::from_secs(1).mul_f64(0.999_999)
    );
    assert!(backoff.delay(4, None, 0.999_999) <= Duration::from_secs(8));
    assert!(backoff.delay(30, None, 0.999_999) <= Duration::from_secs(300));
    assert_eq!(backoff.delay(3, None, 0.0), Duration::ZERO);
    assert_eq!(
        backoff.delay(1, Some(Duration::from_secs(42)), 0.5),
        Duration::from_secs(42)
    );
}

#[test]
fn jitter_is_in_the_unit_interval_and_spread() {
    let values: Vec<f64> = (0..1000).map(|seed| jitter_from(&[seed, 7])).collect();
    assert!(values.iter().all(|value| (0.0..1.0).contains(value)));
    let below_half = values.iter().filter(|value| **value < 0.5).count();
    assert!((400..600).contains(&below_half), "{below_half}");
}

#[test]
fn retry_policy_counts_attempts_with_the_first_included() {
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    assert!(!once.allows_another(1), "1 attempt means no retry");
    let policy = RetryPolicy::default();
    assert_eq!(policy.max_attempts, 3);
    assert!(policy.allows_another(1) && policy.allows_another(2));
    assert!(!policy.allows_another(3));
}

#[test]
fn retry_policy_ceiling_doubles_up_to_the_cap() {
    let policy = RetryPolicy::default();
    assert_eq!(
        [1, 2, 3, 9, 10, 31].map(|failed| policy.ceiling(failed).as_secs()),
        [1, 2, 4, 256, 300, 300]
    );
    assert!(policy.delay(4, None, 0.999) <= Duration::from_secs(8));
    assert!(policy.delay(4, None, 0.4) < Duration::from_secs(4));
    assert_eq!(
        policy.delay(1, Some(Duration::from_secs(42)), 0.5),
        Duration::from_secs(42)
    );
}
