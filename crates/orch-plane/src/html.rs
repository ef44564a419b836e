//! Markdown to Plane's `comment_html`, and `comment_html` back to plain text.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Renders Markdown (CommonMark with tables, strikethrough and task lists) to
/// `comment_html`. The Markdown comes from agents, which are untrusted: raw HTML in it is
/// shown as text, never passed through; a link or image whose URL has a scheme other than
/// `http`, `https` or `mailto` (`javascript:`, `data:`, …) keeps only its text; images
/// become links, so that reading a comment never fetches from an address an agent chose.
/// Empty text gives `<p></p>`, as Plane's editor does.
pub fn from_markdown(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    // For each open link or image: whether its start tag was kept (its end must match).
    let mut open_links: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::HtmlBlock) => Some(Event::Start(Tag::Paragraph)),
        Event::End(TagEnd::HtmlBlock) => Some(Event::End(TagEnd::Paragraph)),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let safe = is_safe_url(&dest_url);
            open_links.push(safe);
            safe.then_some(Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }))
        }
        Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
            let kept = open_links.pop().unwrap_or(false);
            kept.then_some(Event::End(TagEnd::Link))
        }
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2 + 16);
    pulldown_cmark::html::push_html(&mut out, events);
    let trimmed = out.trim_end();
    if trimmed.is_empty() {
        return "<p></p>".to_owned();
    }
    trimmed.to_owned()
}

/// The text of an HTML fragment: tags removed, block ends and `<br>` as line breaks,
/// character references decoded, surrounding whitespace trimmed.
pub fn to_text(markup: &str) -> String {
    let mut out = String::with_capacity(markup.len());
    let mut rest = markup;
    while let Some(start) = rest.find(['<', '&']) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.starts_with('<') {
            let Some(end) = rest.find('>') else {
                out.push_str(rest);
                rest = "";
                break;
            };
            let tag = rest[1..end].trim().to_ascii_lowercase();
            let name = tag
                .trim_start_matches('/')
                .split([' ', '/', '\t', '\n'])
                .next()
                .unwrap_or("");
            let closing = tag.starts_with('/');
            match name {
                "br" => out.push('\n'),
                "p" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "pre"
                | "blockquote" | "tr"
                    if closing =>
                {
                    out.push('\n')
                }
                _ => {}
            }
            rest = &rest[end + 1..];
        } else {
            let (decoded, used) = decode_entity(rest);
            out.push_str(&decoded);
            rest = &rest[used..];
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// Whether a link to `url` is harmless to click: a relative URL, or one with the scheme
/// `http`, `https` or `mailto`. Browsers ignore ASCII whitespace and control characters in
/// a scheme (`java\tscript:`), so they are ignored here too.
fn is_safe_url(url: &str) -> bool {
    let squeezed: String = url
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .collect();
    let scheme_end = squeezed.find([':', '/', '?', '#']);
    match scheme_end {
        Some(end) if squeezed[end..].starts_with(':') => {
            let scheme = squeezed[..end].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// Decodes the character reference at the start of `text` (which starts with `&`); returns
/// the text and how many bytes it used. An unknown reference is kept as it is.
fn decode_entity(text: &str) -> (String, usize) {
    let Some(end) = text
        .char_indices()
        .take(12)
        .find(|(_, c)| *c == ';')
        .map(|(idx, _)| idx)
    else {
        return ("&".to_owned(), 1);
    };
    let name = &text[1..end];
    let decoded = match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let code =
                if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(decimal) = name.strip_prefix('#') {
                    decimal.parse().ok()
                } else {
                    None
                };
            code.and_then(char::from_u32)
        }
    };
    match decoded {
        Some(c) => (c.to_string(), end + 1),
        None => ("&".to_owned(), 1),
    }
}

#[cfg(test)]
mod tests;
