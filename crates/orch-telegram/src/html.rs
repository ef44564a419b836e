//! Plain text made safe for Telegram's HTML parse mode, and cut to its length limit.

use std::borrow::Cow;

use orch_core::ports::fit_text;

/// Telegram's limit on a message's text, in UTF-16 code units after entities are parsed.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Escapes the three characters Telegram's HTML mode requires: `&`, `<` and `>`.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Escapes a URL for an `href="…"` attribute in Telegram's HTML mode: `&`, `<`, `>` and `"`.
pub(crate) fn escape_href(url: &str) -> String {
    escape_html(url).replace('"', "&quot;")
}

/// Cuts plain `text` to `MAX_MESSAGE_LEN` UTF-16 units, ending it with `…` when cut.
pub fn fit_message(text: &str) -> Cow<'_, str> {
    fit_text(text, MAX_MESSAGE_LEN)
}

#[cfg(test)]
mod tests;
