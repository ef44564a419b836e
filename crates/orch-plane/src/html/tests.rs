//! Tests of the text ↔ `comment_html` conversions.

use crate::html::{from_markdown, to_text};

fn check_markdown(markdown: &str, expected: &str) {
    assert_eq!(from_markdown(markdown), expected, "{markdown:?}");
}

#[test]
fn markdown_becomes_plane_html() {
    check_markdown("Deployed in build 1234.", "<p>Deployed in build 1234.</p>");
    check_markdown("a < b & \"c\"", "<p>a &lt; b &amp; \"c\"</p>");
    check_markdown("one\ntwo\n\nthree", "<p>one\ntwo</p>\n<p>three</p>");
    check_markdown(
        "## Plan\n\n1. **parse** the `config`\n2. ~~guess~~ test\n\n- [x] done",
        "<h2>Plan</h2>\n<ol>\n<li><strong>parse</strong> the <code>config</code></li>\n\
         <li><del>guess</del> test</li>\n</ol>\n\
         <ul>\n<li><input disabled=\"\" type=\"checkbox\" checked=\"\"/>\ndone</li>\n</ul>",
    );
    check_markdown(
        "```rust\nfn main() {}\n```",
        "<pre><code class=\"language-rust\">fn main() {}\n</code></pre>",
    );
    check_markdown(
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody>\n<tr><td>1</td><td>2</td></tr>\n</tbody></table>",
    );
    check_markdown(
        "see [the PR](https://gitea.example/o/r/pulls/3 \"PR 3\") or <mailto:a@b.example>",
        "<p>see <a href=\"https://gitea.example/o/r/pulls/3\" title=\"PR 3\">the PR</a> or \
         <a href=\"mailto:a@b.example\">mailto:a@b.example</a></p>",
    );
    check_markdown(
        "[relative](docs/a.md#x)",
        "<p><a href=\"docs/a.md#x\">relative</a></p>",
    );
    check_markdown("", "<p></p>");
    check_markdown("  \n\n ", "<p></p>");
}

#[test]
fn raw_html_in_markdown_is_shown_as_text() {
    check_markdown(
        "<script>alert(1)</script>",
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
    );
    check_markdown(
        "an image <img src=x onerror=\"alert(1)\"> inline",
        "<p>an image &lt;img src=x onerror=\"alert(1)\"&gt; inline</p>",
    );
    check_markdown(
        "<div onmouseover=\"steal()\">\n\n*hi*\n\n</div>",
        "<p>&lt;div onmouseover=\"steal()\"&gt;\n</p>\n<p><em>hi</em></p>\n<p>&lt;/div&gt;</p>",
    );
    check_markdown("x <!-- hidden --> y", "<p>x &lt;!-- hidden --&gt; y</p>");
}

#[test]
fn links_with_dangerous_schemes_keep_only_their_text() {
    check_markdown("[click](javascript:alert(1))", "<p>click</p>");
    check_markdown("[click](JavaScript:alert(1))", "<p>click</p>");
    check_markdown("[click](<java\tscript:alert(1)>)", "<p>click</p>");
    check_markdown("[click](jav&#x61;script:alert(1))", "<p>click</p>");
    check_markdown(
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        "<p>click</p>",
    );
    check_markdown("<javascript:alert(1)>", "<p>javascript:alert(1)</p>");
    check_markdown(
        "[**bold** [inner](vbscript:x)](https://ok.example)",
        "<p>[<strong>bold</strong> inner](https://ok.example)</p>",
    );
}

#[test]
fn images_become_links_and_dangerous_ones_their_alt_text() {
    check_markdown(
        "![a chart](https://img.example/c.png)",
        "<p><a href=\"https://img.example/c.png\">a chart</a></p>",
    );
    check_markdown("![pixel](javascript:alert(1))", "<p>pixel</p>");
    check_markdown(
        "[![logo](https://img.example/l.png)](javascript:x)",
        "<p><a href=\"https://img.example/l.png\">logo</a></p>",
    );
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
fn markdown_survives_a_round_trip_as_its_text() {
    let text = "Analysis of ET-001:\n\n1. <a> & <b>\n2. done";
    assert_eq!(
        to_text(&from_markdown(text)),
        "Analysis of ET-001:\n\n\n<a> & <b>\n\ndone"
    );
}

#[test]
fn arbitrary_markup_never_panics_nor_lets_a_tag_or_scheme_through() {
    let tokens = [
        "<",
        ">",
        "&",
        ";",
        "#x",
        "/",
        "p",
        "br",
        "a",
        "\u{e9}",
        "\u{1f600}",
        "1",
        " ",
        "\n",
        "*",
        "[",
        "]",
        "(",
        ")",
        "!",
        "`",
        "\"",
        "script",
        "img onerror=x",
        "javascript:",
        "https://x.example",
        "\t",
        "\u{0}",
        "    ",
        "- ",
        "| ",
        "---",
    ];
    let allowed_tags = [
        "p",
        "br",
        "a",
        "em",
        "strong",
        "code",
        "pre",
        "del",
        "ul",
        "ol",
        "li",
        "input",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "blockquote",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    ];
    let mut state = 0x853c_49e6_748f_ea9bu64;
    for _ in 0..3000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let len = (state >> 58) as usize;
        let text: String = (0..len)
            .map(|idx| {
                let pick = (state >> (idx % 50)) as usize ^ idx.wrapping_mul(31);
                tokens[pick % tokens.len()]
            })
            .collect();
        let _ = to_text(&text);
        let markup = from_markdown(&text);
        for tag in markup.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            assert!(
                allowed_tags.contains(&name.as_str()),
                "{text:?} gave the tag {name:?} in {markup:?}"
            );
        }
        assert!(
            !markup.contains("href=\"javascript"),
            "{text:?} gave {markup:?}"
        );
    }
}
