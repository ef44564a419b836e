//! An ordered JSON value with Python `json.dumps`-style and Django REST-style serialisers.

use std::fmt::Write;

/// A JSON value that keeps object keys in the order they were built, like a Python dict.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Py {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Obj(Vec<(String, Py)>),
}

impl Py {
    pub(crate) fn str(text: impl Into<String>) -> Py {
        Py::Str(text.into())
    }

    pub(crate) fn opt_str(text: Option<impl Into<String>>) -> Py {
        text.map_or(Py::Null, |text| Py::Str(text.into()))
    }

    pub(crate) fn obj(fields: Vec<(&str, Py)>) -> Py {
        Py::Obj(
            fields
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }

    /// Inserts `key` right after `after` (or at the end when `after` is absent).
    pub(crate) fn insert_after(&mut self, after: &str, key: &str, value: Py) {
        if let Py::Obj(fields) = self {
            let at = fields
                .iter()
                .position(|(name, _)| name == after)
                .map_or(fields.len(), |idx| idx + 1);
            fields.insert(at, (key.to_owned(), value));
        }
    }

    /// `json.dumps(value)` with Python's defaults: `", "` and `": "` separators, every
    /// non-ASCII character as `\uXXXX` (surrogate pairs above U+FFFF), no trailing newline.
    pub(crate) fn to_python_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, Style::Python);
        out
    }

    /// What Django REST framework's `JSONRenderer` sends: compact separators, UTF-8 text.
    pub(crate) fn to_compact_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, Style::Compact);
        out
    }

    fn write(&self, out: &mut String, style: Style) {
        let (item_sep, key_sep) = match style {
            Style::Python => (", ", ": "),
            Style::Compact => (",", ":"),
        };
        match self {
            Py::Null => out.push_str("null"),
            Py::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Py::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Py::Float(value) => write_float(*value, out),
            Py::Str(text) => write_str(text, out, style),
            Py::List(items) => {
                out.push('[');
                for (item_idx, item) in items.iter().enumerate() {
                    if item_idx > 0 {
                        out.push_str(item_sep);
                    }
                    item.write(out, style);
                }
                out.push(']');
            }
            Py::Obj(fields) => {
                out.push('{');
                for (field_idx, (key, value)) in fields.iter().enumerate() {
                    if field_idx > 0 {
                        out.push_str(item_sep);
                    }
                    write_str(key, out, style);
                    out.push_str(key_sep);
                    value.write(out, style);
                }
                out.push('}');
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Python,
    Compact,
}

/// Python's `float.__repr__` for the values Plane sends (`65535.0`): integral values keep a
/// `.0`; others use the shortest round-trip form.
fn write_float(value: f64, out: &mut String) {
    if !value.is_finite() {
        // json.dumps writes these (invalid JSON); Plane never sends them.
        out.push_str(if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        });
    } else if value.fract() == 0.0 && value.abs() < 1e16 {
        let _ = write!(out, "{value:.1}");
    } else {
        let _ = write!(out, "{value:?}");
    }
}

fn write_str(text: &str, out: &mut String, style: Style) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if style == Style::Python && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses JSON text into an ordered value (numbers with `.`/`e` become floats).
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Result<Py, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos != parser.bytes.len() {
        return Err(format!("trailing data at {}", parser.pos));
    }
    Ok(value)
}

#[cfg(test)]
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

#[cfg(test)]
impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", byte as char, self.pos))
        }
    }

    fn value(&mut self) -> Result<Py, String> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut fields = Vec::new();
                self.skip_ws();
                if self.bytes.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Py::Obj(fields));
                }
                loop {
                    self.skip_ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    fields.push((key, self.value()?));
                    self.skip_ws();
                    match self.bytes.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Py::Obj(fields));
                        }
                        _ => return Err(format!("bad object at {}", self.pos)),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.bytes.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Py::List(items));
                }
                loop {
                    items.push(self.value()?);
                    self.skip_ws();
                    match self.bytes.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Py::List(items));
                        }
                        _ => return Err(format!("bad array at {}", self.pos)),
                    }
                }
            }
            Some(b'"') => Ok(Py::Str(self.string()?)),
            Some(b't') => self.word("true", Py::Bool(true)),
            Some(b'f') => self.word("false", Py::Bool(false)),
            Some(b'n') => self.word("null", Py::Null),
            Some(_) => self.number(),
            None => Err("unexpected end".to_owned()),
        }
    }

    fn word(&mut self, word: &str, value: Py) -> Result<Py, String> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(format!("bad literal at {}", self.pos))
        }
    }

    fn number(&mut self) -> Result<Py, String> {
        let start = self.pos;
        while self.pos < self.bytes.len()
            && matches!(
                self.bytes[self.pos],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.pos += 1;
        }
        let text =
            std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|err| err.to_string())?;
        if text.contains(['.', 'e', 'E']) {
            text.parse()
                .map(Py::Float)
                .map_err(|err| format!("{err} at {start}"))
        } else {
            text.parse()
                .map(Py::Int)
                .map_err(|err| format!("{err} at {start}"))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(format!("expected string at {}", self.pos));
        }
        self.pos += 1;
        let mut units: Vec<u16> = Vec::new();
        let mut out = String::new();
        loop {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err("unterminated string".to_owned());
            };
            if byte == b'\\' && self.bytes.get(self.pos + 1) == Some(&b'u') {
                let hex = self
                    .bytes
                    .get(self.pos + 2..self.pos + 6)
                    .ok_or("short escape")?;
                let hex = std::str::from_utf8(hex).map_err(|err| err.to_string())?;
                units.push(u16::from_str_radix(hex, 16).map_err(|err| err.to_string())?);
                self.pos += 6;
                continue;
            }
            if !units.is_empty() {
                out.push_str(&String::from_utf16(&units).map_err(|err| err.to_string())?);
                units.clear();
            }
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let escaped = self.bytes.get(self.pos + 1).ok_or("short escape")?;
                    out.push(match escaped {
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        other => *other as char,
                    });
                    self.pos += 2;
                }
                _ => {
                    let rest = std::str::from_utf8(&self.bytes[self.pos..])
                        .map_err(|err| err.to_string())?;
                    let c = rest.chars().next().ok_or("unterminated string")?;
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}
