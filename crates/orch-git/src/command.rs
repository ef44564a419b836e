//! Running one `git` process: a clean environment, a private HOME and no user or system git config,
//! credentials only in git's config environment, a deadline.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::error::GitError;

/// Builds a git argument list from anything path- or string-like.
macro_rules! git_args {
    ($($arg:expr),* $(,)?) => {
        [$(std::ffi::OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$arg))),*]
    };
}
pub(crate) use git_args;

/// The identity of every commit orch makes itself.
pub(crate) const ORCH_NAME: &str = "orch";
pub(crate) const ORCH_EMAIL: &str = "orch@localhost";

/// The only variables of orch's own environment a git process sees. `HOME` is not one of them:
/// git gets orch's private one, and `XDG_CONFIG_HOME` stays unset, so nothing of the user's
/// (`~/.gitconfig`, `~/.config/git/`, `~/.netrc`) applies to orch's git.
const INHERITED_VARS: [&str; 2] = ["PATH", "LANG"];

/// How much of git's stderr an error message keeps (its tail).
const MAX_STDERR_CHARS: usize = 2000;

/// Whether a git process talks to the remote and so needs the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    Local,
    Remote,
}

/// What a finished git process left behind.
#[derive(Debug)]
pub(crate) struct GitOutput {
    /// `None` when ended by a signal.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl GitOutput {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// One spawned command as the operating system got it: for tests that prove where the
/// credentials went.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Invocation {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// Every variable set on the command (the environment was cleared first, so this is all of it).
    pub(crate) envs: Vec<(String, String)>,
    pub(crate) cwd: Option<PathBuf>,
}

/// A worktree of the mirror as orch's own git sees it: its git directory and the mirror are
/// named in the environment (`GIT_DIR`, `GIT_COMMON_DIR`, `GIT_WORK_TREE`), so the files an
/// agent can change (the worktree's `.git` file, the `commondir` and `gitdir` files of its
/// admin directory) never decide which repository, config or hooks orch's git uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Worktree<'a> {
    pub(crate) work_tree: &'a Path,
    /// `{mirror}/worktrees/{name}`.
    pub(crate) git_dir: &'a Path,
    /// The mirror.
    pub(crate) common_dir: &'a Path,
}

/// Spawns git processes. A clone shares the recorder (tests) and spawns alike, but for its
/// priority (`background`).
#[derive(Clone)]
pub(crate) struct Git {
    timeout: Duration,
    /// git never looks for a repository at or above this directory (`repos_dir`), so a
    /// half-removed worktree can never make git act on an enclosing checkout.
    ceiling: PathBuf,
    /// The secret itself, kept only to put it in the config environment and scrub it from output.
    token: Option<String>,
    /// The config key carrying the token: `http.<remote base>/.extraHeader` for an HTTP
    /// remote, so a URL rewritten by repository config (which an agent can edit) never gets it.
    header_key: String,
    /// `HOME` of every git process: a directory only orch's git uses, never the user's
    /// nor the agents'.
    home: PathBuf,
    /// The `INHERITED_VARS` of orch's environment, read once.
    inherited: Vec<(&'static str, OsString)>,
    /// `protocol.file.allow`: `never` when the remote is http(s), so no config can reroute
    /// orch's fetch or push to a local repository, whose hooks would see the config
    /// environment (git drops `GIT_CONFIG_COUNT` for local transports, not the values).
    file_protocol: &'static str,
    /// `http.sslCAInfo` on fetch and push, when `tls.ca_file` is set.
    ca_file: Option<PathBuf>,
    /// Records every spawned command when set (tests only).
    recorder: Option<Arc<Mutex<Vec<Invocation>>>>,
    /// Runs git at a lower CPU priority (`nice`): work no dispatch waits for.
    background: bool,
}

impl Git {
    pub(crate) fn new(
        timeout: Duration,
        token: Option<String>,
        ceiling: PathBuf,
        home: PathBuf,
        remote_base: &str,
    ) -> Git {
        let http = remote_base.starts_with("http://") || remote_base.starts_with("https://");
        let header_key = if http {
            format!("http.{}/.extraHeader", remote_base.trim_end_matches('/'))
        } else {
            "http.extraHeader".to_owned()
        };
        Git {
            timeout,
            ceiling,
            token: token.filter(|token| !token.is_empty()),
            header_key,
            home,
            inherited: inherited_vars(|name| std::env::var_os(name)),
            file_protocol: if http { "never" } else { "always" },
            ca_file: None,
            recorder: None,
            background: false,
        }
    }

    /// This git, for background work (the refreshes of a mirror): its
    /// processes run at a lower CPU priority (`nice -n 10`), so on a busy machine they leave the
    /// cores to the dispatches, whose own git processes and agents run at orch's priority.
    pub(crate) fn background(&self) -> Git {
        Git {
            background: true,
            ..self.clone()
        }
    }

    /// Makes git trust the CAs of this PEM file (and only them) on HTTPS.
    pub(crate) fn set_ca_file(&mut self, ca_file: Option<PathBuf>) {
        self.ca_file = ca_file;
    }

    #[cfg(test)]
    pub(crate) fn record_into(&mut self, recorder: Arc<Mutex<Vec<Invocation>>>) {
        self.recorder = Some(recorder);
    }

    /// Replaces the environment orch was started with, as git processes would inherit it
    /// (tests only: the test process's own environment is shared by every test).
    #[cfg(test)]
    pub(crate) fn set_process_env(&mut self, vars: &[(&str, &str)]) {
        self.inherited = inherited_vars(|name| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| OsString::from(value))
        });
    }

    /// The command for `git {args}` in `cwd`: environment built from nothing, stdin closed,
    /// output captured, in its own process group, killed when dropped.
    pub(crate) fn command(&self, cwd: &Path, args: &[OsString], network: Network) -> Command {
        let mut command = if self.background {
            let mut nice = Command::new("nice");
            nice.args(["-n", "10", "git"]);
            nice
        } else {
            Command::new("git")
        };
        command.args(args).current_dir(cwd).env_clear();
        for (name, value) in &self.inherited {
            command.env(name, value);
        }
        // The user's and the system's git config could reroute orch's traffic (a URL-specific
        // `http.<url>.proxy` or `url.<base>.insteadOf` beats what the config environment pins)
        // or run code: git reads neither.
        command
            .env("HOME", &self.home)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env("GIT_CEILING_DIRECTORIES", &self.ceiling)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env("GIT_AUTHOR_NAME", ORCH_NAME)
            .env("GIT_AUTHOR_EMAIL", ORCH_EMAIL)
            .env("GIT_COMMITTER_NAME", ORCH_NAME)
            .env("GIT_COMMITTER_EMAIL", ORCH_EMAIL);
        // The worktrees share the mirror's config, which agents can edit: the settings that
        // could run code or reroute orch's authenticated traffic are pinned here, and the
        // config environment wins over every config file.
        let mut config: Vec<(&str, String)> = vec![
            ("commit.gpgsign", "false".to_owned()),
            ("init.defaultBranch", "main".to_owned()),
            ("advice.detachedHead", "false".to_owned()),
            ("core.hooksPath", "/dev/null".to_owned()),
            ("core.fsmonitor", "false".to_owned()),
            ("credential.helper", String::new()),
            ("http.proxy", String::new()),
            ("http.sslVerify", "true".to_owned()),
            ("protocol.allow", "never".to_owned()),
            ("protocol.http.allow", "always".to_owned()),
            ("protocol.https.allow", "always".to_owned()),
            ("protocol.file.allow", self.file_protocol.to_owned()),
        ];
        if network == Network::Remote {
            // Let curl give up on a silent server before our own deadline kills git.
            config.push(("http.lowSpeedLimit", "1".to_owned()));
            config.push((
                "http.lowSpeedTime",
                self.timeout.as_secs().max(1).to_string(),
            ));
            if let Some(ca_file) = &self.ca_file {
                config.push(("http.sslCAInfo", ca_file.display().to_string()));
            }
            if let Some(token) = &self.token {
                config.push((
                    self.header_key.as_str(),
                    format!("Authorization: token {token}"),
                ));
            }
        }
        command.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (index, (key, value)) in config.into_iter().enumerate() {
            command.env(format!("GIT_CONFIG_KEY_{index}"), key);
            command.env(format!("GIT_CONFIG_VALUE_{index}"), value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        command
    }

    /// Runs `git {args}` in `cwd` and returns its output whatever its exit code.
    /// A process still running at the deadline is killed.
    pub(crate) async fn output(
        &self,
        cwd: &Path,
        args: &[OsString],
        network: Network,
    ) -> Result<GitOutput, GitError> {
        self.execute(self.command(cwd, args, network), args).await
    }

    /// Runs `git {args}` in a worktree of the mirror, whose git directories are named in the
    /// environment; returns its output whatever its exit code.
    pub(crate) async fn output_in(
        &self,
        worktree: &Worktree<'_>,
        args: &[OsString],
        network: Network,
    ) -> Result<GitOutput, GitError> {
        let mut command = self.command(worktree.work_tree, args, network);
        command
            .env("GIT_DIR", worktree.git_dir)
            .env("GIT_COMMON_DIR", worktree.common_dir)
            .env("GIT_WORK_TREE", worktree.work_tree);
        self.execute(command, args).await
    }

    /// `output_in`, with a non-zero exit an error carrying git's stderr.
    pub(crate) async fn run_in(
        &self,
        worktree: &Worktree<'_>,
        args: &[OsString],
        network: Network,
    ) -> Result<String, GitError> {
        let output = self.output_in(worktree, args, network).await?;
        if output.success() {
            Ok(output.stdout)
        } else {
            Err(self.failure(args, &output))
        }
    }

    /// Spawns `command` (`git {args}`) and waits for it, killing it at the deadline.
    async fn execute(
        &self,
        mut command: Command,
        args: &[OsString],
    ) -> Result<GitOutput, GitError> {
        let subcommand = subcommand(args);
        self.record(&command);
        tracing::debug!(command = %subcommand, args = ?args, "running git");
        let child = command.spawn().map_err(GitError::Spawn)?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => output.map_err(GitError::Spawn)?,
            Err(_) => {
                // Dropping the future dropped the child and kill_on_drop killed git; its helpers
                // (remote-http, upload-pack, index-pack) share its process group. The group id
                // stays reserved while any member or the unreaped leader exists.
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                tracing::debug!(command = %subcommand, "git timed out");
                return Err(GitError::Timeout {
                    command: subcommand,
                    seconds: self.timeout.as_secs(),
                });
            }
        };
        let result = GitOutput {
            code: output.status.code(),
            stdout: self.scrub(&String::from_utf8_lossy(&output.stdout)),
            stderr: self.scrub(&String::from_utf8_lossy(&output.stderr)),
        };
        tracing::debug!(command = %subcommand, code = ?result.code, "git finished");
        Ok(result)
    }

    /// Runs `git {args}` in `cwd`; a non-zero exit is an error carrying git's stderr.
    pub(crate) async fn run(
        &self,
        cwd: &Path,
        args: &[OsString],
        network: Network,
    ) -> Result<String, GitError> {
        let output = self.output(cwd, args, network).await?;
        if output.success() {
            Ok(output.stdout)
        } else {
            Err(self.failure(args, &output))
        }
    }

    /// The error for a git process that exited unsuccessfully.
    pub(crate) fn failure(&self, args: &[OsString], output: &GitOutput) -> GitError {
        GitError::Failed {
            command: subcommand(args),
            code: output.code,
            stderr: tail(output.stderr.trim()),
        }
    }

    /// Removes the token from text that came out of git.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(token) => text.replace(token.as_str(), "***"),
            None => text.to_owned(),
        }
    }

    fn record(&self, command: &Command) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let std_command = command.as_std();
        // git's own invocation, without the `nice -n 10` of background work.
        let prefix = if self.background { 3 } else { 0 };
        let invocation = Invocation {
            program: "git".to_owned(),
            args: std_command
                .get_args()
                .skip(prefix)
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect(),
            envs: std_command
                .get_envs()
                .filter_map(|(name, value)| {
                    Some((
                        name.to_string_lossy().into_owned(),
                        value?.to_string_lossy().into_owned(),
                    ))
                })
                .collect(),
            cwd: std_command.get_current_dir().map(Path::to_path_buf),
        };
        if let Ok(mut invocations) = recorder.lock() {
            invocations.push(invocation);
        }
    }
}

/// The `INHERITED_VARS` that `lookup` finds.
fn inherited_vars(lookup: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, OsString)> {
    INHERITED_VARS
        .into_iter()
        .filter_map(|name| Some((name, lookup(name)?)))
        .collect()
}

/// The git subcommand of an argument list, for messages (never the arguments: they hold paths).
fn subcommand(args: &[OsString]) -> String {
    args.first()
        .map(|arg| arg.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn tail(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_STDERR_CHARS {
        return text.to_owned();
    }
    let skipped: String = text.chars().skip(count - MAX_STDERR_CHARS).collect();
    format!("…{skipped}")
}
