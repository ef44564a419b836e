//! `GitConfig`, where `GitWorkspace` keeps its repositories and how it reaches the forge.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The default deadline of one git process.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Where `GitWorkspace` keeps its repositories and how it reaches the forge.
#[derive(Clone)]
pub struct GitConfig {
    /// Everything lives under this directory; created if missing.
    pub repos_dir: PathBuf,
    /// The repository URL is `{remote_base}/{owner}/{name}.git`: `http(s)://…`, a local path or
    /// a `file://` URL. It must not carry credentials.
    pub remote_base: String,
    /// Sent as `Authorization: token …` on fetch and push, through git's config environment.
    pub token: Option<String>,
    /// The deadline of every git process; it is killed when the deadline passes.
    pub command_timeout: Duration,
    /// A PEM file of the CAs that git trusts on HTTPS (`http.sslCAInfo`, which replaces git's
    /// default bundle); `None` keeps git's default, the system's bundle.
    pub ca_file: Option<PathBuf>,
    /// `None` (the default): `prepare` fetches the base and task branch every time. `Some(age)`:
    /// the mirror is kept warm off the dispatch path (`Workspace::refresh`, called when the
    /// forge names the repository) and `prepare` fetches only when the mirror is stale for it:
    /// never fetched, fetched longer than `age` ago, missing the base branch, or its task branch
    /// (or, for a task branch not made yet, the base) named by `Workspace::remote_changed`
    /// since the last fetch started. Fresh prepares share the mirror.
    pub warm: Option<Duration>,
}

impl GitConfig {
    /// A configuration without a token and with the default deadline.
    pub fn new(repos_dir: impl Into<PathBuf>, remote_base: impl Into<String>) -> GitConfig {
        GitConfig {
            repos_dir: repos_dir.into(),
            remote_base: remote_base.into(),
            token: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            ca_file: None,
            warm: None,
        }
    }
}

impl fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitConfig")
            .field("repos_dir", &self.repos_dir)
            .field("remote_base", &self.remote_base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("command_timeout", &self.command_timeout)
            .field("ca_file", &self.ca_file)
            .field("warm", &self.warm)
            .finish()
    }
}
