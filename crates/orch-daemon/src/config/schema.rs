//! The description of every configuration key, generated from the doc comments of the config structs.

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

/// One key of one section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyDoc {
    pub(crate) key: &'static str,
    /// The type as people read it: "string", "integer (1 to 64)", "list of strings", ….
    pub(crate) ty: &'static str,
    pub(crate) fallback: Fallback,
    /// The environment variable that overrides the file, if any.
    pub(crate) env: Option<&'static str>,
    /// The key's doc comment, one line per line.
    pub(crate) doc: &'static str,
}

/// One table of the file: its path as people write it and its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// Each field carries `#[key = "name", ty = "type", default = Fallback, env = "VAR"]` (the
/// `env` part is optional) after its doc comment; the doc comments become `docs/config.md`.
/// The `keys CONST as "path" { … }` form declares only the description, for tables whose
/// struct lives in `orch_core`.
macro_rules! config_section {
    (@env) => { None };
    (@env $env:literal) => { Some($env) };
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident as $path:literal {
            $(
                $(#[doc = $field_doc:literal])*
                #[key = $key:literal, ty = $ty:literal, default = $fallback:expr $(, env = $env:literal)?]
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
                            ty: $ty,
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
                #[key = $key:literal, ty = $ty:literal, default = $fallback:expr $(, env = $env:literal)?]
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
                        ty: $ty,
                        fallback: $fallback,
                        env: config_section!(@env $($env)?),
                        doc: concat!($($field_doc, "\n"),*),
                    },
                )*],
            };
    };
}
