//! The description of every configuration key, generated from the doc comments of the config structs.

use std::any::TypeId;
use std::fmt;

/// What happens when a key is absent.
#[derive(Clone, Copy)]
pub(crate) enum Fallback {
    /// The key must be given (in the file or, when it has one, its environment variable).
    Required,
    /// This value is used, written as a Rust expression in the declaration; `<role>` in a
    /// string stands for the agent's role.
    Value(fn() -> toml::Value),
    /// Absent means "not used"; the key's text says what that implies.
    Unset,
    /// A sub-table: absent is the same as empty, every key of it at its own default.
    Table,
}

impl Fallback {
    pub(crate) fn is_required(&self) -> bool {
        matches!(self, Fallback::Required)
    }
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Required => f.write_str("Required"),
            Fallback::Value(value) => write!(f, "Value({})", value()),
            Fallback::Unset => f.write_str("Unset"),
            Fallback::Table => f.write_str("Table"),
        }
    }
}

/// A default written in Rust as the TOML value it stands for.
pub(crate) fn toml_value(value: impl serde::Serialize) -> toml::Value {
    toml::Value::try_from(value).expect("a default is a TOML value")
}

/// The type of a key.
#[derive(Clone, Copy)]
pub(crate) enum KeyType {
    /// Read by hand (tables, secrets, lists): the type as people read it.
    Text(&'static str),
    /// Decoded and checked by a `Setting`, which also names itself in the reference.
    Setting {
        doc_type: fn() -> String,
        type_id: fn() -> TypeId,
        /// Decodes and checks a value the way a load does; the error is the message.
        /// For the test that checks every default.
        #[cfg(test)]
        check: fn(&toml::Value) -> Result<(), String>,
    },
}

impl KeyType {
    /// The type as people read it: "string", "integer (1 to 64)", "list of strings", ….
    pub(crate) fn text(&self) -> String {
        match self {
            KeyType::Text(text) => (*text).to_owned(),
            KeyType::Setting { doc_type, .. } => doc_type(),
        }
    }

    /// Whether the key is declared with the setting type `T`.
    pub(crate) fn is<T: 'static>(&self) -> bool {
        matches!(self, KeyType::Setting { type_id, .. } if type_id() == TypeId::of::<T>())
    }
}

impl fmt::Debug for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// One key of one section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyDoc {
    pub(crate) key: &'static str,
    pub(crate) ty: KeyType,
    pub(crate) fallback: Fallback,
    /// The environment variable that overrides the file, if any.
    pub(crate) env: Option<&'static str>,
    /// The key's doc comment, one line per line.
    pub(crate) doc: &'static str,
}

/// One table of the file: its path as people write it and its keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SectionDoc {
    /// `server`, `agents.<role>`, `projects[]`, …; empty for the top level.
    pub(crate) path: &'static str,
    pub(crate) doc: &'static str,
    pub(crate) keys: &'static [KeyDoc],
}

impl SectionDoc {
    pub(crate) fn key(&self, key: &str) -> Option<&'static KeyDoc> {
        self.keys.iter().find(|doc| doc.key == key)
    }
}

/// Declares a config struct whose fields are TOML keys, and its `SECTION` description.
///
/// Each field carries `#[key = "name", ty = TYPE, default = DEFAULT, env = "VAR"]` (the
/// `env` part is optional) after its doc comment; the doc comments become `docs/config.md`.
/// `TYPE` is a `Setting` in parentheses, `(Ranged<1, 64>)`, which decodes, checks and names
/// the value, or for a key read by hand a string naming its type, `"table"`.
/// `DEFAULT` is `Required`, `Unset`, `Table` or a Rust expression in parentheses, `(2)` or
/// `(["claude", "-p"])`, serialized to the TOML value it stands for.
/// The `keys CONST as "path" { … }` form declares only the description, for tables whose
/// struct lives in `orch_core`.
macro_rules! config_section {
    (@env) => { None };
    (@env $env:literal) => { Some($env) };
    (@ty $text:literal) => { $crate::config::schema::KeyType::Text($text) };
    (@ty ($setting:ty)) => {
        $crate::config::schema::KeyType::Setting {
            doc_type: <$setting as $crate::config::setting::Setting>::doc_type,
            type_id: ::std::any::TypeId::of::<$setting>,
            #[cfg(test)]
            check: |value| {
                <$setting as $crate::config::setting::Setting>::from_toml(value)
                    .map(|_| ())
                    .map_err(|refused| format!("{refused:?}"))
            },
        }
    };
    (@default Required) => { $crate::config::schema::Fallback::Required };
    (@default Unset) => { $crate::config::schema::Fallback::Unset };
    (@default Table) => { $crate::config::schema::Fallback::Table };
    (@default ($value:expr)) => {
        $crate::config::schema::Fallback::Value(|| $crate::config::schema::toml_value($value))
    };
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident as $path:literal {
            $(
                $(#[doc = $field_doc:literal])*
                #[key = $key:literal, ty = $ty:tt, default = $fallback:tt $(, env = $env:literal)?]
                pub $field:ident: $field_ty:ty,
            )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $(
                $(#[doc = $field_doc])*
                pub $field: $field_ty,
            )*
        }

        impl $name {
            pub(crate) const SECTION: $crate::config::schema::SectionDoc =
                $crate::config::schema::SectionDoc {
                    path: $path,
                    doc: concat!($($doc, "\n"),*),
                    keys: &[$(
                        $crate::config::schema::KeyDoc {
                            key: $key,
                            ty: config_section!(@ty $ty),
                            fallback: config_section!(@default $fallback),
                            env: config_section!(@env $($env)?),
                            doc: concat!($($field_doc, "\n"),*),
                        },
                    )*],
                };
        }
    };
    (
        $(#[doc = $doc:literal])*
        keys $name:ident as $path:literal {
            $(
                $(#[doc = $field_doc:literal])*
                #[key = $key:literal, ty = $ty:tt, default = $fallback:tt $(, env = $env:literal)?]
            )*
        }
    ) => {
        $(#[doc = $doc])*
        pub(crate) const $name: $crate::config::schema::SectionDoc =
            $crate::config::schema::SectionDoc {
                path: $path,
                doc: concat!($($doc, "\n"),*),
                keys: &[$(
                    $crate::config::schema::KeyDoc {
                        key: $key,
                        ty: config_section!(@ty $ty),
                        fallback: config_section!(@default $fallback),
                        env: config_section!(@env $($env)?),
                        doc: concat!($($field_doc, "\n"),*),
                    },
                )*],
            };
    };
}
