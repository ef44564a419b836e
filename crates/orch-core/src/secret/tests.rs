//! `Secret` never shows its text.

use crate::secret::Secret;

#[test]
fn debug_never_shows_the_secret() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(<redacted>))");
    assert_eq!(secret.expose(), "hunter2");
}

#[test]
fn debug_says_when_the_secret_is_empty() {
    assert_eq!(format!("{:?}", Secret::default()), "Secret(<empty>)");
    assert!(Secret::default().is_empty());
}
