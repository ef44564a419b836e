//! Full-jitter backoff bounds.

use std::time::Duration;

use crate::backoff::{jitter_from, Backoff};

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
