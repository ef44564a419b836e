//! Validating newtypes for every identifier that comes from outside orch.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an outside identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason} (got {value:?})")]
pub struct IdError {
    pub kind: &'static str,
    pub reason: &'static str,
    pub value: String,
}

impl IdError {
    fn new(kind: &'static str, reason: &'static str, value: &str) -> IdError {
        let mut value = value.to_owned();
        value.truncate(80);
        IdError {
            kind,
            reason,
            value,
        }
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts 1..=128 characters of `[A-Za-z0-9_-]` (Plane uses UUIDs).
            pub fn new(value: impl Into<String>) -> Result<$name, IdError> {
                let value = value.into();
                if value.is_empty() || value.len() > 128 {
                    return Err(IdError::new($kind, "must be 1 to 128 characters", &value));
                }
                if !value.chars().all(is_token_char) {
                    return Err(IdError::new($kind, "may hold only letters, digits, '-' and '_'", &value));
                }
                Ok($name(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<$name, IdError> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

token_id!(
    /// A Plane work item's id (a UUID).
    IssueId,
    "plane issue id"
);
token_id!(
    /// A Plane project's id (a UUID).
    ProjectId,
    "plane project id"
);
token_id!(
    /// A Plane state's id (a UUID).
    StateId,
    "plane state id"
);
token_id!(
    /// A Plane user's id (a UUID).
    UserId,
    "plane user id"
);
token_id!(
    /// The id of one run of the daemon; job leases are owned by it.
    BootId,
    "boot id"
);
token_id!(
    /// The id of one claim of a job; completions are fenced by it.
    AttemptId,
    "attempt id"
);

/// orch's own id of a task (a store-assigned row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// orch's own id of a job (a store-assigned row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Gitea pull request number (≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct PrNumber(u64);

impl PrNumber {
    pub fn new(value: u64) -> Result<PrNumber, IdError> {
        if value == 0 {
            return Err(IdError::new(
                "pull request number",
                "must be at least 1",
                "0",
            ));
        }
        Ok(PrNumber(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for PrNumber {
    type Error = IdError;
    fn try_from(value: u64) -> Result<PrNumber, IdError> {
        PrNumber::new(value)
    }
}

impl From<PrNumber> for u64 {
    fn from(value: PrNumber) -> u64 {
        value.0
    }
}

impl fmt::Display for PrNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A git commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitSha(String);

impl CommitSha {
    /// Accepts upper-case hex too and stores it lower-cased.
    pub fn new(value: impl Into<String>) -> Result<CommitSha, IdError> {
        let value = value.into();
        if value.len() != 40 && value.len() != 64 {
            return Err(IdError::new(
                "commit sha",
                "must be 40 or 64 hex characters",
                &value,
            ));
        }
        if !value.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdError::new("commit sha", "must be hexadecimal", &value));
        }
        Ok(CommitSha(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 10 characters, for messages.
    pub fn short(&self) -> &str {
        &self.0[..10]
    }
}

impl TryFrom<String> for CommitSha {
    type Error = IdError;
    fn try_from(value: String) -> Result<CommitSha, IdError> {
        CommitSha::new(value)
    }
}

impl From<CommitSha> for String {
    fn from(value: CommitSha) -> String {
        value.0
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Gitea repository, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoSlug {
    owner: String,
    name: String,
}

impl RepoSlug {
    pub fn new(value: &str) -> Result<RepoSlug, IdError> {
        let Some((owner, name)) = value.split_once('/') else {
            return Err(IdError::new("repository", "expected \"owner/name\"", value));
        };
        let part_ok = |part: &str| {
            !part.is_empty()
                && part.len() <= 100
                && part != "."
                && part != ".."
                && !part.starts_with('-')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        if !part_ok(owner) || !part_ok(name) {
            return Err(IdError::new(
                "repository",
                "expected \"owner/name\" with letters, digits, '-', '_' or '.'",
                value,
            ));
        }
        Ok(RepoSlug {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl TryFrom<String> for RepoSlug {
    type Error = IdError;
    fn try_from(value: String) -> Result<RepoSlug, IdError> {
        RepoSlug::new(&value)
    }
}

impl From<RepoSlug> for String {
    fn from(value: RepoSlug) -> String {
        value.to_string()
    }
}

impl fmt::Display for RepoSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A Plane work item id as people see it: `{prefix}-{sequence:03}`, e.g. `ET-001`, `ET-1234`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkItemId {
    prefix: String,
    sequence: u32,
}

impl WorkItemId {
    /// The prefix is 1..=10 ASCII letters or digits, starting with a letter.
    pub fn new(prefix: &str, sequence: u32) -> Result<WorkItemId, IdError> {
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 10
            && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
            && prefix.chars().all(|c| c.is_ascii_alphanumeric());
        if !prefix_ok {
            return Err(IdError::new(
                "work item prefix",
                "must be 1 to 10 letters or digits, starting with a letter",
                prefix,
            ));
        }
        Ok(WorkItemId {
            prefix: prefix.to_owned(),
            sequence,
        })
    }

    /// Parses the display form, `ET-001`.
    pub fn parse(value: &str) -> Result<WorkItemId, IdError> {
        let Some((prefix, sequence)) = value.rsplit_once('-') else {
            return Err(IdError::new(
                "work item id",
                "expected \"PREFIX-NUMBER\"",
                value,
            ));
        };
        let sequence = sequence
            .parse::<u32>()
            .map_err(|_| IdError::new("work item id", "expected \"PREFIX-NUMBER\"", value))?;
        WorkItemId::new(prefix, sequence)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn sequence(&self) -> u32 {
        self.sequence
    }
}

impl fmt::Display for WorkItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:03}", self.prefix, self.sequence)
    }
}

impl TryFrom<String> for WorkItemId {
    type Error = IdError;
    fn try_from(value: String) -> Result<WorkItemId, IdError> {
        WorkItemId::parse(&value)
    }
}

impl From<WorkItemId> for String {
    fn from(value: WorkItemId) -> String {
        value.to_string()
    }
}

/// A git branch name orch creates or uses.
///
/// Refused: empty, starting with `-` (git would read an option), containing `..`, `//`, `@{`,
/// a backslash, whitespace, control characters or any of `~^:?*[`, ending in `/`, `.` or `.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BranchName(String);

impl BranchName {
    pub fn new(value: impl Into<String>) -> Result<BranchName, IdError> {
        let value = value.into();
        let reason = if value.is_empty() || value.len() > 200 {
            Some("must be 1 to 200 characters")
        } else if value.starts_with('-') || value.starts_with('/') {
            Some("must not start with '-' or '/'")
        } else if value.contains("..") || value.contains("//") || value.contains("@{") {
            Some("must not contain '..', '//' or '@{'")
        } else if value.ends_with('/') || value.ends_with('.') || value.ends_with(".lock") {
            Some("must not end with '/', '.' or '.lock'")
        } else if value
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
        {
            Some("must not contain spaces, control characters or any of ~^:?*[\\")
        } else if value.split('/').any(|part| part.starts_with('.')) {
            Some("no path component may start with '.'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(IdError::new("branch name", reason, &value)),
            None => Ok(BranchName(value)),
        }
    }

    /// The task branch of SPEC §1.3: `feature/{work item id}-{slug}`.
    pub fn for_work_item(work_item: &WorkItemId, title: &str) -> BranchName {
        BranchName(format!("feature/{work_item}-{}", slug(title)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BranchName {
    type Error = IdError;
    fn try_from(value: String) -> Result<BranchName, IdError> {
        BranchName::new(value)
    }
}

impl From<BranchName> for String {
    fn from(value: BranchName) -> String {
        value.0
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The slug of a title: lower-cased, every run of characters outside `[a-z0-9]` made one `-`,
/// trimmed of `-`, cut to 40 characters (and trimmed again), `task` if nothing is left.
pub fn slug(title: &str) -> String {
    let mut out = String::with_capacity(title.len().min(64));
    let mut pending_dash = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out.truncate(40);
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "task".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests;
