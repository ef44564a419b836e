//! Tests of escaping and cutting.

use crate::html::{escape_html, fit_message, MAX_MESSAGE_LEN};

#[test]
fn html_special_characters_are_escaped_and_others_kept() {
    assert_eq!(
        escape_html("a < b && c > d \"q\" 'é'"),
        "a &lt; b &amp;&amp; c &gt; d \"q\" 'é'"
    );
}

#[test]
fn an_existing_entity_is_escaped_again_because_the_input_is_plain_text() {
    assert_eq!(escape_html("&lt;"), "&amp;lt;");
}

#[test]
fn a_short_text_is_kept_whole() {
    assert_eq!(
        fit_message("ET-001 needs a verdict"),
        "ET-001 needs a verdict"
    );
}

#[test]
fn a_long_text_is_cut_to_the_limit_in_utf16_units_with_an_ellipsis() {
    // '😀' is two UTF-16 units.
    let text = "😀".repeat(MAX_MESSAGE_LEN);
    let fitted = fit_message(&text);
    assert!(fitted.encode_utf16().count() <= MAX_MESSAGE_LEN);
    assert!(fitted.ends_with('…'));
    assert_eq!(fitted.encode_utf16().count(), MAX_MESSAGE_LEN - 1);
}
