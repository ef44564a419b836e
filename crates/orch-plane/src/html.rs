//! Plain text to Plane's `comment_html` and back.

/// Escapes `text` and wraps it in paragraphs: blank lines separate paragraphs, single line
/// breaks become `<br />`. Empty text gives `<p></p>`, as Plane's editor does.
pub fn from_text(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(normalized.len() + 16);
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, out: &mut String| {
        if paragraph.is_empty() {
            return;
        }
        out.push_str("<p>");
        for (line_idx, line) in paragraph.iter().enumerate() {
            if line_idx > 0 {
                out.push_str("<br />");
            }
            escape_into(line, out);
        }
        out.push_str("</p>");
        paragraph.clear();
    };
    for line in normalized.split('\n') {
        if line.trim().is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut out);
    if out.is_empty() {
        out.push_str("<p></p>");
    }
    out
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

fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
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
