//! Plane's JSON in Python dict order, with `json.dumps`-style and Django REST-style `Formatter`s.
//!
//! Key order is kept by serde_json's `preserve_order` feature (the workspace enables it).

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Map, Number, Value};

/// A JSON string.
pub(crate) fn text(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// A JSON string, or `null`.
pub(crate) fn opt_text(text: Option<impl Into<String>>) -> Value {
    text.map_or(Value::Null, |text| Value::String(text.into()))
}

/// A JSON number that Python writes as a float (`65535.0`).
pub(crate) fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// An object with `fields` in this order, like a Python dict literal.
pub(crate) fn obj(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// An empty object.
pub(crate) fn empty_obj() -> Value {
    Value::Object(Map::new())
}

/// Inserts `key` into the object `value` right after `after` (or at the end when `after` is
/// absent).
pub(crate) fn insert_after(value: &mut Value, after: &str, key: &str, field: Value) {
    if let Value::Object(fields) = value {
        let at = fields
            .keys()
            .position(|name| name == after)
            .map_or(fields.len(), |idx| idx + 1);
        fields.shift_insert(at, key.to_owned(), field);
    }
}

/// `json.dumps(value)` with Python's defaults: `", "` and `": "` separators, every
/// non-ASCII character as `\uXXXX` (surrogate pairs above U+FFFF), no trailing newline.
pub(crate) fn to_python_json(value: &Value) -> String {
    write_with(value, PythonFormatter)
}

/// What Django REST framework's `JSONRenderer` sends: compact separators, UTF-8 text.
pub(crate) fn to_compact_json(value: &Value) -> String {
    write_with(value, DjangoFormatter)
}

fn write_with(value: &Value, formatter: impl Formatter) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .expect("a Value always serialises into memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Python's `json.dumps` defaults (`ensure_ascii=True`, `", "` and `": "`).
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        python_item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        python_item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float(value).as_bytes())
    }

    /// Only printable ASCII stays as it is; serde_json has already escaped `"`, `\` and
    /// control characters.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                writer.write_all(c.encode_utf8(&mut [0u8; 4]).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `", "` before every item but the first, of a list or of an object.
fn python_item_separator<W: ?Sized + io::Write>(writer: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

/// Django REST framework's compact JSON, with Python's float text.
struct DjangoFormatter;

/// The trait's defaults are the compact separators.
impl Formatter for DjangoFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float(value).as_bytes())
    }
}

/// Python's `float.__repr__` for the values Plane sends (`65535.0`): integral values keep a
/// `.0`; others use the shortest round-trip form. A `Value` holds no NaN or infinity.
fn python_float(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        format!("{value:?}")
    }
}
