//! The description of every configuration key, generated from the doc comments of the config structs.

use std::any::TypeId;
use std::fmt;

/// What happens when a key is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// The key must be given (in the file or, when it has one, its environment variable).
    Required,
    /// This TOML value is used; `<role>` in a string stands for the agent's role.
    Value(&'static str),
    /// Absent means "not used"; the key's text says what that implies.
    Unset,
    /// A sub-table: absent is the same as empty, every key of it at its own default.
    Table,
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
/// Each field carries `#[key = "name", ty = TYPE, default = Fallback, env = "VAR"]` (the
/// `env` part is optional) after its doc comment; the doc comments become `docs/config.md`.
/// `TYPE` is a `Setting` in parentheses, `(Ranged<1, 64>)`, which decodes, checks and names
/// the value, or for a key read by hand a string naming its type, `"table"`.
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
        }
    };
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident as $path:literal {
            $(
                $(#[doc = $field_doc:literal])*
                #[key = $key:literal, ty = $ty:tt, default = $fallback:expr $(, env = $env:literal)?]
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
                            fallback: $fallback,
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
                #[key = $key:literal, ty = $ty:tt, default = $fallback:expr $(, env = $env:literal)?]
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
                        fallback: $fallback,
                        env: config_section!(@env $($env)?),
                        doc: concat!($($field_doc, "\n"),*),
                    },
                )*],
            };
    };
}
