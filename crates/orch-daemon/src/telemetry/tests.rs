//! The colour decision of log lines.

use std::ffi::OsStr;

use crate::telemetry::Colour;

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let cases = [
        (None, true, Colour::Ansi),
        (None, false, Colour::Plain),
        (Some("1"), true, Colour::Plain),
        (Some("1"), false, Colour::Plain),
        (Some(""), true, Colour::Ansi),
    ];
    for (no_color, terminal, expected) in cases {
        assert_eq!(
            Colour::decide(no_color.map(OsStr::new), terminal),
            expected,
            "NO_COLOR={no_color:?} terminal={terminal}"
        );
    }
}
