//! Tests of the text ↔ `comment_html` conversions.

use crate::html::{from_text, to_text};

#[test]
fn text_becomes_escaped_paragraphs_with_line_breaks() {
    let cases = [
        ("Deployed in build 1234.", "<p>Deployed in build 1234.</p>"),
        ("a < b & \"c\"", "<p>a &lt; b &amp; &quot;c&quot;</p>"),
        ("one\ntwo\n\nthree", "<p>one<br />two</p><p>three</p>"),
        ("\r\n\r\nx\r\n", "<p>x</p>"),
        (
            "<script>alert(1)</script>",
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
        ),
        ("", "<p></p>"),
    ];
    for (text, expected) in cases {
        assert_eq!(from_text(text), expected, "{text:?}");
    }
}

#[test]
fn html_becomes_text_with_line_breaks_and_decoded_references() {
    let cases = [
        ("<p>Deployed in build 1234.</p>", "Deployed in build 1234."),
        ("<p>one<br />two</p><p>three</p>", "one\ntwo\nthree"),
        (
            "<p>a &lt; b &amp; &quot;c&quot; &#39;d&#39; &#x263A; &bogus; & e</p>",
            "a < b & \"c\" 'd' \u{263a} &bogus; & e",
        ),
        ("<p>caf\u{e9} <strong>bold</strong></p>", "caf\u{e9} bold"),
        ("unclosed <b", "unclosed <b"),
        ("<p></p>", ""),
    ];
    for (markup, expected) in cases {
        assert_eq!(to_text(markup), expected, "{markup:?}");
    }
}

#[test]
fn text_survives_a_round_trip() {
    let text = "Analysis of ET-001:\n\n1. <a> & <b>\n2. done";
    assert_eq!(
        to_text(&from_text(text)),
        "Analysis of ET-001:\n1. <a> & <b>\n2. done"
    );
}

#[test]
fn arbitrary_markup_never_panics() {
    let alphabet: Vec<char> = "<>&;#x/p br ab\u{e9}\u{2014}\u{1f600}1".chars().collect();
    let mut state = 0x853c_49e6_748f_ea9bu64;
    for _ in 0..2000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let len = (state >> 58) as usize;
        let text: String = (0..len)
            .map(|idx| {
                let pick = (state >> (idx % 50)) as usize ^ idx.wrapping_mul(31);
                alphabet[pick % alphabet.len()]
            })
            .collect();
        let _ = to_text(&text);
        let _ = from_text(&text);
    }
}
