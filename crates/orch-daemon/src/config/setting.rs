//! `Setting`: how one key's value is decoded (serde, from the TOML value or the environment) and checked.
//!
//! A key's type is written once, in its section's declaration (`setting = Ranged<1, 64>`): the
//! type decodes the value, checks it (`TryFrom`, so a range lives in the type) and names itself
//! in `docs/config.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orch_agent::SandboxPath;
use orch_core::ids::{BranchName, IdError, ProjectId, RepoSlug, WorkItemId};
use orch_core::secret::Secret;
use orch_gitea::MergeStyle;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

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

    /// Checks a decoded value.
    fn check(raw: Self::Raw) -> Result<Self, Refused>;

    /// The environment variable's text as `Raw`, or `None` when it is not one.
    fn raw_from_env(text: &str) -> Option<Self::Raw>;

    /// Decodes and checks a value of the file.
    fn from_toml(value: &Value) -> Result<Self, Refused> {
        let raw = value
            .clone()
            .try_into::<Self::Raw>()
            .map_err(|_| Self::expected(&shown(value)))?;
        Self::check(raw)
    }

    /// Decodes and checks an environment variable's text.
    fn from_env(text: &str) -> Result<Self, Refused> {
        let raw = Self::raw_from_env(text).ok_or_else(|| Self::expected(&shown_str(text)))?;
        Self::check(raw)
    }
}

/// Why a value was refused: each message with the part of the value it is about, `""` for
/// the value itself, `[1]` for an element of a list, `.NAME` for an entry of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(Vec<(String, String)>);

impl Refused {
    /// The refusal of the element `idx` of a list, as the list's.
    fn within(self, idx: usize) -> Refused {
        Refused(
            self.0
                .into_iter()
                .map(|(part, message)| (format!("[{idx}]{part}"), message))
                .collect(),
        )
    }

    /// Every message with its part, in the order found.
    pub(crate) fn into_parts(self) -> Vec<(String, String)> {
        self.0
    }
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused(vec![(String::new(), message)])
    }
}

impl From<&str> for Refused {
    fn from(message: &str) -> Refused {
        Refused::from(message.to_owned())
    }
}

/// An integer from `MIN` to `MAX`; the range is the type's, so it is written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ranged<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Ranged<MIN, MAX> {
    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// As a `u8`, for a range that fits one.
    pub(crate) fn get_u8(self) -> u8 {
        const { assert!(MAX <= u8::MAX as u64, "the range fits a u8") };
        u8::try_from(self.0).expect("the range fits a u8")
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

    fn check(raw: i64) -> Result<Self, Refused> {
        Ok(Self::try_from(raw)?)
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

    fn check(raw: bool) -> Result<bool, Refused> {
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

            fn check(raw: String) -> Result<$ty, Refused> {
                let check: fn(String) -> Result<$ty, String> = $check;
                Ok(check(raw)?)
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

/// A path where an empty string counts as not given (`tls.ca_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathOrEmpty(pub(crate) Option<PathBuf>);

text_setting!(PathOrEmpty, "path", |raw| Ok(PathOrEmpty(
    (!raw.trim().is_empty()).then(|| PathBuf::from(raw))
)));

/// The `{key}_file` of a secret: a path, empty counting as not given; a refusal does not
/// show the value, which may be the secret given under the wrong key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretFilePath(pub(crate) Option<PathBuf>);

impl Setting for SecretFilePath {
    type Raw = String;

    fn doc_type() -> String {
        PathOrEmpty::doc_type()
    }

    fn expected(_got: &str) -> String {
        "expected the path of a file".to_owned()
    }

    fn check(raw: String) -> Result<Self, Refused> {
        PathOrEmpty::check(raw).map(|path| SecretFilePath(path.0))
    }

    /// A secret's file has no environment variable of its own.
    fn raw_from_env(_text: &str) -> Option<String> {
        None
    }
}

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

text_setting!(String, "string", Ok);

/// An argument of an agent's command: not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Argument(pub(crate) String);

text_setting!(Argument, "string", |raw| {
    if raw.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(Argument(raw))
});

/// `agents.<role>.pass_env[]`: the name of a variable, never one of orch's own `ORCH_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassEnvName(pub(crate) String);

text_setting!(PassEnvName, "string", |raw| {
    if !is_variable_name(&raw) {
        return Err(format!(
            "expected a variable name of letters, digits and '_', got {}",
            shown_str(&raw)
        ));
    }
    if raw.starts_with("ORCH_") {
        return Err(format!("{raw}: names starting with ORCH_ are orch's own (its secrets and the agent contract) and never reach an agent"));
    }
    Ok(PassEnvName(raw))
});

text_setting!(
    /// `agents.<role>.read_only_paths[]` and `writable_paths[]`: absolute or `~/…`, as the
    /// agent runner's own parser accepts it.
    SandboxPath,
    "string",
    |raw| SandboxPath::parse(&raw)
);

/// A list whose refusals name the element, `pass_env[1]`: every element is decoded first
/// (the first that is not a `T::Raw` is the one error), then each is checked and every
/// refusal reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct List<T>(pub(crate) Vec<T>);

impl<T: Setting> Setting for List<T> {
    type Raw = Vec<Value>;

    fn doc_type() -> String {
        format!("list of {}s", T::doc_type())
    }

    fn expected(got: &str) -> String {
        format!("expected a list of {}s, got {got}", T::doc_type())
    }

    fn check(items: Vec<Value>) -> Result<Self, Refused> {
        let mut raws = Vec::with_capacity(items.len());
        for (idx, item) in items.iter().enumerate() {
            match item.clone().try_into::<T::Raw>() {
                Ok(raw) => raws.push(raw),
                Err(_) => return Err(Refused::from(T::expected(&shown(item))).within(idx)),
            }
        }
        let mut values = Vec::with_capacity(raws.len());
        let mut refused = Vec::new();
        for (idx, raw) in raws.into_iter().enumerate() {
            match T::check(raw) {
                Ok(value) => values.push(value),
                Err(parts) => refused.extend(parts.within(idx).0),
            }
        }
        if refused.is_empty() {
            Ok(List(values))
        } else {
            Err(Refused(refused))
        }
    }

    /// A list has no environment variable.
    fn raw_from_env(_text: &str) -> Option<Vec<Value>> {
        None
    }
}

/// An agent's command: a non-empty list of non-empty arguments, the program first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Argv(pub(crate) Vec<String>);

impl Setting for Argv {
    type Raw = Vec<Value>;

    fn doc_type() -> String {
        List::<Argument>::doc_type()
    }

    fn expected(got: &str) -> String {
        List::<Argument>::expected(got)
    }

    /// The first refused argument is the one error, as the loader has always reported it.
    fn check(items: Vec<Value>) -> Result<Self, Refused> {
        let mut arguments = Vec::with_capacity(items.len());
        for (idx, item) in items.iter().enumerate() {
            let argument = Argument::from_toml(item).map_err(|refused| refused.within(idx))?;
            arguments.push(argument.0);
        }
        if arguments.is_empty() {
            return Err("expected at least the program to run".into());
        }
        Ok(Argv(arguments))
    }

    /// A command has no environment variable.
    fn raw_from_env(_text: &str) -> Option<Vec<Value>> {
        None
    }
}

/// A secret string; no refusal shows it (the value may be a secret given under the wrong key).
impl Setting for Secret {
    type Raw = String;

    fn doc_type() -> String {
        "secret string".to_owned()
    }

    fn expected(_got: &str) -> String {
        "expected a string".to_owned()
    }

    fn check(raw: String) -> Result<Secret, Refused> {
        Ok(Secret::new(raw))
    }

    fn raw_from_env(text: &str) -> Option<String> {
        Some(text.to_owned())
    }
}

/// Several secrets, for example the webhook secrets during a rotation; empty ones are
/// dropped. The environment variable gives them comma-separated; no refusal shows one.
pub(crate) struct SecretList(pub(crate) Vec<Secret>);

impl Setting for SecretList {
    type Raw = Vec<String>;

    fn doc_type() -> String {
        "list of secret strings".to_owned()
    }

    fn expected(_got: &str) -> String {
        "expected a list of strings".to_owned()
    }

    fn check(raw: Vec<String>) -> Result<SecretList, Refused> {
        Ok(SecretList(
            raw.into_iter()
                .filter(|text| !text.is_empty())
                .map(Secret::new)
                .collect(),
        ))
    }

    fn raw_from_env(text: &str) -> Option<Vec<String>> {
        Some(text.split(',').map(|part| part.trim().to_owned()).collect())
    }
}

/// `agents.<role>.env`: variables for the agent, by name; a value may be a secret, so no
/// refusal shows it.
pub(crate) struct AgentEnv(pub(crate) BTreeMap<String, Secret>);

impl Setting for AgentEnv {
    type Raw = Table;

    fn doc_type() -> String {
        "table of strings".to_owned()
    }

    fn expected(got: &str) -> String {
        format!("expected a table of strings, got {got}")
    }

    /// Every entry is checked and every refusal reported, named `.NAME`.
    fn check(table: Table) -> Result<Self, Refused> {
        let mut env = BTreeMap::new();
        let mut refused = Vec::new();
        for (name, value) in table {
            let reason = if !is_variable_name(&name) {
                "expected a variable name of letters, digits and '_'"
            } else if name.starts_with("ORCH_") {
                "names starting with ORCH_ are reserved for orch"
            } else if let Value::String(text) = value {
                env.insert(name, Secret::new(text));
                continue;
            } else {
                "expected a string"
            };
            refused.push((format!(".{name}"), reason.to_owned()));
        }
        if refused.is_empty() {
            Ok(AgentEnv(env))
        } else {
            Err(Refused(refused))
        }
    }

    /// The table has no environment variable.
    fn raw_from_env(_text: &str) -> Option<Table> {
        None
    }
}

/// A letter or `_`, then letters, digits and `_`.
pub(crate) fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

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
