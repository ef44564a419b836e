//! `Setting`: how one key's value is decoded (serde, from the TOML value or the environment) and checked.
//!
//! A key's type is written once, in its section's declaration (`setting = Ranged<1, 64>`): the
//! type decodes the value, checks it (`TryFrom`, so a range lives in the type) and names itself
//! in `docs/config.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orch_core::ids::{BranchName, IdError, ProjectId, RepoSlug, WorkItemId};
use orch_gitea::MergeStyle;
use serde::de::DeserializeOwned;
use toml::Value;

use crate::config::values::BaseUrl;
use crate::config::SandboxMode;

/// The longest value shown back in an error message, in characters.
const MAX_SHOWN_CHARS: usize = 80;

/// The value of one key: decoded from the file through serde, or from its environment
/// variable's text, then checked.
pub(crate) trait Setting: Sized + 'static {
    /// What the file holds, decoded by serde before the check.
    type Raw: DeserializeOwned;

    /// The type as `docs/config.md` shows it: `integer (1 to 64)`, `boolean`, ….
    fn doc_type() -> String;

    /// The message for a value serde could not decode as `Raw`: `expected …, got {got}`.
    fn expected(got: &str) -> String;

    /// Checks a decoded value; the error is the whole message.
    fn check(raw: Self::Raw) -> Result<Self, String>;

    /// The environment variable's text as `Raw`, or `None` when it is not one.
    fn raw_from_env(text: &str) -> Option<Self::Raw>;

    /// Decodes and checks a value of the file.
    fn from_toml(value: &Value) -> Result<Self, String> {
        let raw = value
            .clone()
            .try_into::<Self::Raw>()
            .map_err(|_| Self::expected(&shown(value)))?;
        Self::check(raw)
    }

    /// Decodes and checks an environment variable's text.
    fn from_env(text: &str) -> Result<Self, String> {
        let raw = Self::raw_from_env(text).ok_or_else(|| Self::expected(&shown_str(text)))?;
        Self::check(raw)
    }
}

/// An integer from `MIN` to `MAX`; the range is the type's, so it is written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ranged<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Ranged<MIN, MAX> {
    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// As a `u32`, for a range that fits one.
    pub(crate) fn get_u32(self) -> u32 {
        const { assert!(MAX <= u32::MAX as u64, "the range fits a u32") };
        u32::try_from(self.0).expect("the range fits a u32")
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<i64> for Ranged<MIN, MAX> {
    type Error = String;

    fn try_from(number: i64) -> Result<Self, String> {
        match u64::try_from(number) {
            Ok(number) if (MIN..=MAX).contains(&number) => Ok(Ranged(number)),
            _ => Err(Self::expected(&number.to_string())),
        }
    }
}

impl<const MIN: u64, const MAX: u64> Setting for Ranged<MIN, MAX> {
    type Raw = i64;

    fn doc_type() -> String {
        format!("integer ({MIN} to {MAX})")
    }

    fn expected(got: &str) -> String {
        format!("expected an integer from {MIN} to {MAX}, got {got}")
    }

    fn check(raw: i64) -> Result<Self, String> {
        Self::try_from(raw)
    }

    fn raw_from_env(text: &str) -> Option<i64> {
        text.trim().parse().ok()
    }
}

impl Setting for bool {
    type Raw = bool;

    fn doc_type() -> String {
        "boolean".to_owned()
    }

    fn expected(got: &str) -> String {
        format!("expected true or false, got {got}")
    }

    fn check(raw: bool) -> Result<bool, String> {
        Ok(raw)
    }

    /// `true`, `1`, `yes`, `on` and their opposites, in any case.
    fn raw_from_env(text: &str) -> Option<bool> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

/// A `Setting` given as a string (in the file or the environment) and checked by `$check`.
macro_rules! text_setting {
    ($(#[$doc:meta])* $ty:ty, $doc_type:literal, $check:expr) => {
        $(#[$doc])*
        impl Setting for $ty {
            type Raw = String;

            fn doc_type() -> String {
                $doc_type.to_owned()
            }

            fn expected(got: &str) -> String {
                format!("expected a string, got {got}")
            }

            fn check(raw: String) -> Result<$ty, String> {
                let check: fn(String) -> Result<$ty, String> = $check;
                check(raw)
            }

            fn raw_from_env(text: &str) -> Option<String> {
                Some(text.to_owned())
            }
        }
    };
}

text_setting!(SocketAddr, "socket address", |raw| {
    raw.trim().parse().map_err(|_| {
        format!(
            "expected an IP address and port such as 127.0.0.1:8787, got {}",
            shown_str(&raw)
        )
    })
});

text_setting!(BaseUrl, "http(s) URL", |raw| {
    BaseUrl::parse(raw.trim()).map_err(|reason| {
        // A URL with credentials is not echoed back.
        if raw.contains('@') {
            reason.to_owned()
        } else {
            format!("{reason}, got {}", shown_str(&raw))
        }
    })
});

text_setting!(
    /// A path; an empty one is refused.
    PathBuf,
    "path",
    |raw| {
        if raw.trim().is_empty() {
            return Err("a path must not be empty".to_owned());
        }
        Ok(PathBuf::from(raw))
    }
);

text_setting!(MergeStyle, "string", |raw| {
    MergeStyle::parse(&raw).ok_or_else(|| {
        format!(
            "expected merge, squash, rebase or rebase-merge, got {}",
            shown_str(&raw)
        )
    })
});

text_setting!(SandboxMode, "string", |raw| match raw.trim() {
    "bwrap" => Ok(SandboxMode::Bwrap),
    "none" => Ok(SandboxMode::None),
    other => Err(format!(
        "expected \"bwrap\" or \"none\", got {}",
        shown_str(other)
    )),
});

/// `plane.workspace_slug`: letters, digits, `-` and `_`, at most 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkspaceSlug(pub(crate) String);

text_setting!(WorkspaceSlug, "string", |raw| {
    if !is_slug(&raw, 100) {
        return Err(format!(
            "expected letters, digits, '-' or '_', got {}",
            shown_str(&raw)
        ));
    }
    Ok(WorkspaceSlug(raw))
});

/// `projects[].key`: up to 64 letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectKey(pub(crate) String);

text_setting!(ProjectKey, "string", |raw| {
    if !is_slug(&raw, 64) {
        return Err(format!(
            "expected up to 64 letters, digits, '-' or '_', got {}",
            shown_str(&raw)
        ));
    }
    Ok(ProjectKey(raw))
});

/// `projects[].work_item_prefix`: what `WorkItemId` accepts before its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkItemPrefix(pub(crate) String);

text_setting!(WorkItemPrefix, "string", |raw| {
    WorkItemId::new(&raw, 1)
        .map(|_| WorkItemPrefix(raw))
        .map_err(|err| id_message(&err))
});

text_setting!(ProjectId, "string", |raw| ProjectId::new(raw)
    .map_err(|err| id_message(&err)));

text_setting!(RepoSlug, "string", |raw| RepoSlug::new(&raw)
    .map_err(|err| id_message(&err)));

text_setting!(BranchName, "string", |raw| BranchName::new(raw)
    .map_err(|err| id_message(&err)));

/// The name of a Plane state: not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateName(pub(crate) String);

text_setting!(StateName, "string", |raw| {
    if raw.trim().is_empty() {
        return Err("a state name must not be empty".to_owned());
    }
    Ok(StateName(raw))
});

/// An absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AbsolutePath(pub(crate) PathBuf);

text_setting!(AbsolutePath, "path", |raw| {
    if !Path::new(&raw).is_absolute() {
        return Err(format!(
            "expected an absolute path, got {}",
            shown_str(&raw)
        ));
    }
    Ok(AbsolutePath(PathBuf::from(raw)))
});

/// At most `max_len` bytes of letters, digits, `-` and `_`.
fn is_slug(text: &str, max_len: usize) -> bool {
    text.len() <= max_len
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `expected "owner/name", got "widgets"`: the SPEC's form of a refused identifier.
fn id_message(err: &IdError) -> String {
    format!("{}, got {}", err.reason, shown_str(&err.value))
}

/// A string as an error message shows it: quoted, cut after 80 characters.
pub(crate) fn shown_str(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// A TOML value as an error message shows it.
pub(crate) fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => shown_str(text),
        Value::Table(_) => "a table".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        other => {
            let text = other.to_string();
            let mut shown: String = text.chars().take(MAX_SHOWN_CHARS).collect();
            if shown.len() < text.len() {
                shown.push('…');
            }
            shown
        }
    }
}

#[cfg(test)]
mod tests;
