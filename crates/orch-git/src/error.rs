//! The adapter's private errors and their mapping to `WorkspaceError`.

use orch_core::ports::WorkspaceError;

/// What went wrong inside the adapter.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    #[error("could not run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("git {command} timed out after {seconds} s")]
    Timeout { command: String, seconds: u64 },
    #[error("git {command} failed ({}): {stderr}", exit_text(*.code))]
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
    /// A name or path orch refuses to hand to git or the filesystem.
    #[error("refused {what}: {reason}")]
    Refused { what: String, reason: &'static str },
    #[error("{0}")]
    NotFound(String),
    /// The worktree is not on the task branch: committing there would lose the work.
    #[error("the worktree is on {found}, not {expected}")]
    WrongBranch { expected: String, found: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git {command} printed something unexpected: {output:?}")]
    Unexpected {
        command: &'static str,
        output: String,
    },
}

impl GitError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
        let what = what.into();
        move |source| GitError::Io { what, source }
    }
}

/// Fragments of git's and curl's messages (with `LC_ALL=C`) that mean "the remote could not be
/// reached right now".
const UNAVAILABLE_PATTERNS: [&str; 13] = [
    "could not resolve host",
    "failed to connect",
    "connection refused",
    "connection reset",
    "connection timed out",
    "operation timed out",
    "timed out",
    "operation too slow",
    "the requested url returned error: 5",
    "the requested url returned error: 429",
    "remote end hung up unexpectedly",
    "early eof",
    "http/2 stream",
];

/// Fragments that mean the credentials were refused.
const UNAUTHORIZED_PATTERNS: [&str; 4] = [
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "authentication failed",
    "could not read username",
];

impl From<GitError> for WorkspaceError {
    fn from(err: GitError) -> WorkspaceError {
        match err {
            GitError::Timeout { .. } => WorkspaceError::unavailable(err.to_string()),
            GitError::Refused { .. } => WorkspaceError::Invalid(err.to_string()),
            GitError::NotFound(message) => WorkspaceError::NotFound(message),
            GitError::WrongBranch { .. } => WorkspaceError::Conflict(err.to_string()),
            GitError::Failed { ref stderr, .. } => {
                let lowered = stderr.to_ascii_lowercase();
                if lowered.contains("stale info") {
                    WorkspaceError::Conflict(format!(
                        "{err} (someone else pushed to the task branch; merge or drop their commits there, then reject to run the developer again)"
                    ))
                } else if lowered.contains("couldn't find remote ref") {
                    WorkspaceError::NotFound(format!("{err} (is the project's base_branch right?)"))
                } else if UNAUTHORIZED_PATTERNS
                    .iter()
                    .any(|pattern| lowered.contains(pattern))
                {
                    WorkspaceError::Unauthorized(format!("{err} (check gitea.token)"))
                } else if UNAVAILABLE_PATTERNS
                    .iter()
                    .any(|pattern| lowered.contains(pattern))
                {
                    WorkspaceError::unavailable(err.to_string())
                } else {
                    WorkspaceError::Other(Box::new(err))
                }
            }
            GitError::Spawn(_) | GitError::Io { .. } | GitError::Unexpected { .. } => {
                WorkspaceError::Other(Box::new(err))
            }
        }
    }
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "ended by a signal".to_owned(),
    }
}
