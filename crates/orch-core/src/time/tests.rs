//! RFC 3339 round trips, with the offsets Plane sends.

use crate::time::Timestamp;

#[test]
fn rfc3339_with_offsets_and_fractions_parses_to_the_same_instant() {
    let utc = Timestamp::parse_rfc3339("2026-05-19T10:15:30.482913Z").expect("parses");
    let india = Timestamp::parse_rfc3339("2026-05-19T15:45:30.482913+05:30").expect("parses");
    assert_eq!(utc, india);
    assert_eq!(utc.to_rfc3339(), "2026-05-19T10:15:30.482Z");
    assert_eq!(
        Timestamp::parse_rfc3339("1970-01-01T00:00:00Z"),
        Some(Timestamp::EPOCH)
    );
    assert_eq!(Timestamp::parse_rfc3339(&utc.to_rfc3339()), Some(utc));
}

#[test]
fn malformed_times_are_refused_not_guessed() {
    for bad in [
        "",
        "2026-05-19",
        "2026-13-01T00:00:00Z",
        "2026-05-19T10:15:30",
        "2026-05-19T10:15:30.Z",
        "garbage-garbage-garbage",
    ] {
        assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad:?}");
    }
}
