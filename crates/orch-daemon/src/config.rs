//! orch's configuration (SPEC §5.2): typed, loaded from a TOML file plus environment variables.
//!
//! `load` reads the file, `parse` checks a text; both take the environment as an explicit map
//! (`process_env` collects the real one), so tests are hermetic. Unknown keys are errors and
//! every error is reported at once, each with its key path. The doc comments of the structs
//! below are the source of `docs/config.md` (`reference_markdown`).
//!
//! Every secret can also come from a file: its `*_file` key, or a systemd credential named
//! after its key path in `$CREDENTIALS_DIRECTORY`. The order is: the environment variable,
//! then the `*_file` or the value in the file (giving both is an error), then the credential.

#[macro_use]
mod schema;
mod error;
mod reference;
mod secrets;
mod setting;
mod values;
mod walk;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_agent::{AgentSandbox, RoleConfig, SandboxPath};
use orch_core::config::{Grace, PipelineConfig, ProjectConfig};
use orch_core::domain::Agent;
use orch_core::ids::{BranchName, ProjectId, RepoSlug};
use orch_core::secret::Secret;
use orch_gitea::MergeStyle;

use crate::config::setting::{
    AbsolutePath, AgentEnv, Argv, List, PassEnvName, PathOrEmpty, ProjectKey, Ranged,
    SecretFilePath, SecretList, StateName, WorkItemPrefix, WorkspaceSlug,
};

pub use crate::config::error::{ConfigError, ConfigErrors};
pub use crate::config::reference::reference_markdown;
pub use crate::config::secrets::{permission_warnings, SecretFile, CREDENTIALS_ENV};
pub use crate::config::values::{BaseUrl, CaFile, Prompt};

/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "ORCH_CONFIG";

/// The config file used when neither `--config` nor `$ORCH_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "orch.toml";

/// A week in seconds, the longest timeout and grace period.
const WEEK_S: u64 = 7 * 24 * 3600;
/// A day in seconds, the longest interval between passes.
const DAY_S: u64 = 24 * 3600;
/// The longest retention, in days (100 years).
const MAX_DAYS: u64 = 36_500;

/// Reads and checks the config file at `path`, with `env` overriding it.
///
/// Relative prompt paths are resolved against the file's directory. Errors: every problem at
/// once, each with its key path; an unreadable file or invalid TOML is a single error.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
    load_with_secret_files(path, env).map(|(config, _)| config)
}

/// `load`, also returning every file a secret came from (for `orch check`'s
/// `permission_warnings`): the `*_file`s and credentials read, and `path` itself when it holds
/// a secret.
pub fn load_with_secret_files(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(Config, Vec<SecretFile>), ConfigErrors> {
    read_and_parse(path, env, walk::Secrets::Read)
}

/// What the commands that only read the database (`orch status`, `orch task show`,
/// `orch task logs`) need from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingConfig {
    pub db_path: PathBuf,
    pub reconcile: ReconcileConfig,
}

/// Reads and checks the config file at `path` like `load`, but reads none of its secrets:
/// their files, credentials and variables may be missing or unreadable (a person reading
/// the state need not be able to read orch's tokens). The rest is checked as usual.
pub fn load_for_reading(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<ReadingConfig, ConfigErrors> {
    // The placeholders of the withheld secrets stay inside: only the settings the readers
    // need leave this function.
    let (config, _) = read_and_parse(path, env, walk::Secrets::Withheld)?;
    Ok(ReadingConfig {
        db_path: config.storage.db_path,
        reconcile: config.reconcile,
    })
}

fn read_and_parse(
    path: &Path,
    env: &BTreeMap<String, String>,
    secrets: walk::Secrets,
) -> Result<(Config, Vec<SecretFile>), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors::single(
            path.display().to_string(),
            format!("cannot read the file: {err}"),
        )
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    walk::parse(
        &text,
        &path.display().to_string(),
        Some(path),
        &base_dir,
        env,
        secrets,
    )
}

/// Checks `text` as a config file; `base_dir` resolves relative prompt and secret file paths
/// and `origin` names the text in TOML syntax errors.
pub fn parse(
    text: &str,
    origin: &str,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigErrors> {
    walk::parse(text, origin, None, base_dir, env, walk::Secrets::Read).map(|(config, _)| config)
}

/// The `ORCH_*` variables of this process and `$CREDENTIALS_DIRECTORY` (others are never
/// read; non-UTF-8 values are skipped).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| name.starts_with("ORCH_") || name == CREDENTIALS_ENV)
        .collect()
}

/// The config file to read: `--config`, else `$ORCH_CONFIG`, else `./orch.toml`.
pub fn resolve_path(flag: Option<&Path>, env: &BTreeMap<String, String>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    match env.get(CONFIG_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

config_section! {
    /// orch's whole configuration: the top level of the file.
    /// A section may be left out when all its keys have defaults.
    pub struct Config as "" {
        /// The HTTP server: webhooks, health, queue, metrics and the admin API.
        #[key = "server", ty = "table", default = Table]
        pub server: ServerConfig,
        /// Where the SQLite database lives.
        #[key = "storage", ty = "table", default = Table]
        pub storage: StorageConfig,
        /// Where repositories and worktrees live.
        #[key = "workspace", ty = "table", default = Table]
        pub workspace: WorkspaceConfig,
        /// The Plane tracker.
        #[key = "plane", ty = "table", default = Table]
        pub plane: PlaneConfig,
        /// The Gitea forge.
        #[key = "gitea", ty = "table", default = Table]
        pub gitea: GiteaConfig,
        /// Which certificates orch trusts on HTTPS: the system's store, plus a private CA.
        #[key = "tls", ty = "table", default = Table]
        pub tls: TlsConfig,
        /// Telegram notifications.
        /// When the section is absent (and neither `ORCH_TELEGRAM_BOT_TOKEN` nor `ORCH_TELEGRAM_CHAT_ID` is set, nor the credential `telegram.bot_token` given), notifications are only logged.
        #[key = "telegram", ty = "table", default = Unset]
        pub telegram: Option<TelegramConfig>,
        /// The job worker: concurrency, timeouts, attempts.
        #[key = "worker", ty = "table", default = Table]
        pub worker: WorkerConfig,
        /// The reconciler, which makes the pipeline converge when webhooks are lost.
        #[key = "reconcile", ty = "table", default = Table]
        pub reconcile: ReconcileConfig,
        /// What orch deletes after a while, so the database and the logs stop growing.
        #[key = "retention", ty = "table", default = Table]
        pub retention: RetentionConfig,
        /// The three agents: `analyst`, `developer`, `reviewer`.
        #[key = "agents", ty = "table", default = Table]
        pub agents: AgentsConfig,
        /// The Plane projects orch works on, each bound to one Gitea repository.
        /// At least one is required.
        #[key = "projects", ty = "array of tables", default = Required]
        pub projects: Vec<ProjectConfig>,
    }
}

config_section! {
    /// The HTTP server (hyper): `POST /webhooks/plane`, `POST /webhooks/gitea`, `/healthz`, `/readyz`, `/queue`, `/metrics` and `/api/*`.
    pub struct ServerConfig as "server" {
        /// The IP address and port to listen on, for example `0.0.0.0:8787`.
        /// Plane and Gitea must be able to reach it for webhooks.
        #[key = "listen", ty = (SocketAddr), default = ("127.0.0.1:8787"), env = "ORCH_LISTEN"]
        pub listen: SocketAddr,
        /// The bearer token that admits a request over TCP to what shows work items (`/queue`, `/api/tasks`, `/api/tasks/{id}`) and to the commands (`POST /api/tasks/{id}/retry|cancel`): they need `Authorization: Bearer <token>`.
        /// Unset or empty: over TCP those routes answer `403`, and only the admin socket `{db_path}.sock` (mode 0600, used by the `orch` CLI) reaches them; a source address is never a credential (behind a reverse proxy every request comes from 127.0.0.1).
        /// `/metrics` (counts, no work items) needs the token when one is set and is open otherwise; `/healthz`, `/readyz` and the webhooks (checked by their signatures) never need it.
        /// Also read from `admin_token_file`, or from the credential `server.admin_token`.
        #[key = "admin_token", ty = (Secret), default = Unset, env = "ORCH_ADMIN_TOKEN"]
        pub admin_token: Option<Secret>,
        /// A file holding `admin_token` (one line; a trailing newline is dropped), relative to the config file's directory.
        /// Not together with `admin_token`.
        #[key = "admin_token_file", ty = (SecretFilePath), default = Unset]
        pub admin_token_file: Option<PathBuf>,
        /// The largest webhook body accepted, in bytes; a larger one is answered `413` and reading stops at the cap.
        #[key = "max_body_bytes", ty = (Ranged<1, 1_073_741_824>), default = (1_048_576)]
        pub max_body_bytes: u64,
    }
}

config_section! {
    /// The SQLite database.
    pub struct StorageConfig as "storage" {
        /// The database file; relative paths are relative to the working directory.
        /// The daemon holds an exclusive lock on `{db_path}.lock`, so two daemons never share a database, and serves its API to its own user on the Unix socket `{db_path}.sock` (mode 0600), where the `orch` CLI sends `task retry|cancel`.
        #[key = "db_path", ty = (PathBuf), default = ("data/orch.db"), env = "ORCH_DB_PATH"]
        pub db_path: PathBuf,
    }
}

config_section! {
    /// The local git clones and task worktrees.
    pub struct WorkspaceConfig as "workspace" {
        /// The directory of clones and worktrees (`{repos_dir}/{owner}/{repo}/worktrees/{work item id}`); relative paths are relative to the working directory.
        #[key = "repos_dir", ty = (PathBuf), default = ("data/repos"), env = "ORCH_REPOS_DIR"]
        pub repos_dir: PathBuf,
    }
}

config_section! {
    /// The Plane tracker, through its REST API (`X-Api-Key`) and its webhooks.
    pub struct PlaneConfig as "plane" {
        /// The root URL of the Plane instance, for example `https://plane.example.com` (no `/api/v1`).
        #[key = "base_url", ty = (BaseUrl), default = Required, env = "ORCH_PLANE_URL"]
        pub base_url: BaseUrl,
        /// The workspace slug, as in `https://plane.example.com/<slug>/projects/`.
        #[key = "workspace_slug", ty = (WorkspaceSlug), default = Required]
        pub workspace_slug: String,
        /// An API token of the Plane user orch acts as (Profile settings, API tokens).
        /// Changes made with it are recognised as orch's own and ignored.
        /// Also read from `api_token_file`, or from the credential `plane.api_token`.
        #[key = "api_token", ty = (Secret), default = Required, env = "ORCH_PLANE_API_TOKEN"]
        pub api_token: Secret,
        /// A file holding `api_token` (one line; a trailing newline is dropped), relative to the config file's directory.
        /// Not together with `api_token`.
        #[key = "api_token_file", ty = (SecretFilePath), default = Unset]
        pub api_token_file: Option<PathBuf>,
        /// The secrets of orch's Plane webhook; a delivery is accepted when any of them signs it.
        /// Give two while rotating.
        /// The environment variable takes them comma-separated.
        /// Also read from `webhook_secrets_file`, or from the credential `plane.webhook_secrets`, one secret per line.
        #[key = "webhook_secrets", ty = (SecretList), default = Required, env = "ORCH_PLANE_WEBHOOK_SECRET"]
        pub webhook_secrets: Vec<Secret>,
        /// A file holding `webhook_secrets`, one per line (blank lines are skipped), relative to the config file's directory.
        /// Not together with `webhook_secrets`.
        #[key = "webhook_secrets_file", ty = (SecretFilePath), default = Unset]
        pub webhook_secrets_file: Option<PathBuf>,
        /// The API rate limit of the Plane instance, in requests per minute.
        /// orch stays under 80 % of it, and the reconciler uses at most half of that.
        #[key = "rate_limit_per_min", ty = (Ranged<1, 100_000>), default = (60)]
        pub rate_limit_per_min: u32,
    }
}

config_section! {
    /// The Gitea forge, through its REST API (`Authorization: token …`) and its webhooks.
    pub struct GiteaConfig as "gitea" {
        /// The root URL of the Gitea instance, for example `https://gitea.example.com` (no `/api/v1`).
        #[key = "base_url", ty = (BaseUrl), default = Required, env = "ORCH_GITEA_URL"]
        pub base_url: BaseUrl,
        /// An access token of the Gitea user orch acts as, with read and write access to the repositories (scopes `repository` and `issue`).
        /// Git pushes use it too, through git's config environment, never in a URL.
        /// Also read from `token_file`, or from the credential `gitea.token`.
        #[key = "token", ty = (Secret), default = Required, env = "ORCH_GITEA_TOKEN"]
        pub token: Secret,
        /// A file holding `token` (one line; a trailing newline is dropped), relative to the config file's directory.
        /// Not together with `token`.
        #[key = "token_file", ty = (SecretFilePath), default = Unset]
        pub token_file: Option<PathBuf>,
        /// The secrets of orch's Gitea webhooks; a delivery is accepted when any of them signs it.
        /// Give two while rotating.
        /// The environment variable takes them comma-separated.
        /// Also read from `webhook_secrets_file`, or from the credential `gitea.webhook_secrets`, one secret per line.
        #[key = "webhook_secrets", ty = (SecretList), default = Required, env = "ORCH_GITEA_WEBHOOK_SECRET"]
        pub webhook_secrets: Vec<Secret>,
        /// A file holding `webhook_secrets`, one per line (blank lines are skipped), relative to the config file's directory.
        /// Not together with `webhook_secrets`.
        #[key = "webhook_secrets_file", ty = (SecretFilePath), default = Unset]
        pub webhook_secrets_file: Option<PathBuf>,
        /// How pull requests are merged: `merge`, `squash`, `rebase` or `rebase-merge`.
        /// The repository must allow the style.
        #[key = "merge_style", ty = (MergeStyle), default = ("merge")]
        pub merge_style: MergeStyle,
        /// With `true`, a commit must have a `success` combined status before review.
        /// With `false`, a commit with no statuses at all also counts as green (for repositories without CI).
        #[key = "require_ci", ty = (bool), default = (true)]
        pub require_ci: bool,
    }
}

config_section! {
    /// How orch checks the certificates of Plane, Gitea and Telegram, and git's over HTTPS.
    /// orch trusts the system's certificate store (on Debian, `/etc/ssl/certs`, as `SSL_CERT_FILE` and `SSL_CERT_DIR` may override) and, when it holds none, the Mozilla roots built into orch.
    pub struct TlsConfig as "tls" {
        /// A PEM file of one or more CA certificates, for servers whose certificates a private (company) CA signed; relative to the config file's directory.
        /// Trusted in addition to the system's store by orch's own HTTPS calls; git is given it as `http.sslCAInfo`, which replaces git's default bundle, so the file must also hold the CA of Gitea's certificate when that is a public one.
        /// The file is read at start-up and on `SIGHUP`; one that cannot be read or holds no certificate is a config error.
        #[key = "ca_file", ty = (PathOrEmpty), default = Unset]
        pub ca_file: Option<CaFile>,
    }
}

config_section! {
    /// Telegram notifications through the Bot API: what needs a person, blocks, unblocks, merges.
    pub struct TelegramConfig as "telegram" {
        /// The bot's token from @BotFather.
        /// Also read from `bot_token_file`, or from the credential `telegram.bot_token`.
        #[key = "bot_token", ty = (Secret), default = Required, env = "ORCH_TELEGRAM_BOT_TOKEN"]
        pub bot_token: Secret,
        /// A file holding `bot_token` (one line; a trailing newline is dropped), relative to the config file's directory.
        /// Not together with `bot_token`.
        #[key = "bot_token_file", ty = (SecretFilePath), default = Unset]
        pub bot_token_file: Option<PathBuf>,
        /// The chat to write to: a numeric id (negative for groups) or `@channelname`.
        #[key = "chat_id", ty = "string or integer", default = Required, env = "ORCH_TELEGRAM_CHAT_ID"]
        pub chat_id: String,
        /// The Bot API root URL; change it only for a local Bot API server.
        #[key = "api_base", ty = (BaseUrl), default = ("https://api.telegram.org")]
        pub api_base: BaseUrl,
    }
}

config_section! {
    /// The job worker, which runs agents and the actions on Plane, Gitea and Telegram.
    pub struct WorkerConfig as "worker" {
        /// The most agent jobs running at once.
        #[key = "concurrency", ty = (Ranged<1, 64>), default = (2)]
        pub concurrency: u32,
        /// The most agent jobs running at once on one repository.
        #[key = "per_repo_concurrency", ty = (Ranged<1, 64>), default = (1)]
        pub per_repo_concurrency: u32,
        /// The longest one job may take, in seconds, before it is treated as lost and retried.
        /// No agent's `timeout_s` may exceed it.
        #[key = "job_timeout_s", ty = (Ranged<1, WEEK_S>), default = (3600)]
        pub job_timeout: Duration,
        /// An agent that writes no output for this many seconds is stalled and killed.
        #[key = "stall_timeout_s", ty = (Ranged<1, DAY_S>), default = (600)]
        pub stall_timeout: Duration,
        /// Agent attempts before a task is blocked.
        #[key = "max_attempts", ty = (Ranged<1, 100>), default = (3)]
        pub max_attempts: u32,
        /// CI fix rounds, and review rounds, before a task is blocked.
        #[key = "max_fix_rounds", ty = (Ranged<0, 100>), default = (3)]
        pub max_fix_rounds: u32,
    }
}

config_section! {
    /// The reconciler: a background pass that replays what lost webhooks would have said.
    pub struct ReconcileConfig as "reconcile" {
        /// Whether the reconciler runs at all.
        #[key = "enabled", ty = (bool), default = (true), env = "ORCH_RECONCILE_ENABLED"]
        pub enabled: bool,
        /// Whether its tracker side (F-2, listing Plane work items) runs; the gate side (F-1) does not depend on it.
        #[key = "plane_enabled", ty = (bool), default = (true), env = "ORCH_RECONCILE_PLANE_ENABLED"]
        pub plane_enabled: bool,
        /// Seconds between passes.
        /// A pass also runs at start-up.
        #[key = "interval_s", ty = (Ranged<1, DAY_S>), default = (60)]
        pub interval: Duration,
        /// Per stage, how long a task must be unchanged before the reconciler touches it.
        #[key = "grace_s", ty = "table", default = Table]
        pub grace: Grace,
    }
}

config_section! {
    /// Grace periods of the reconciler, per stage, in seconds (each an integer from 0 to 604800).
    keys GRACE_SECTION as "reconcile.grace_s" {
        /// For tasks in `analysis`.
        #[key = "analysis", ty = (Ranged<0, WEEK_S>), default = (300)]
        /// For tasks in `development`.
        #[key = "development", ty = (Ranged<0, WEEK_S>), default = (300)]
        /// For tasks in `review`.
        #[key = "review", ty = (Ranged<0, WEEK_S>), default = (300)]
    }
}

config_section! {
    /// Retention: a pass at start-up and then every `interval_s` deletes what is older than its age, in batches of 500 rows so the database is never held for long.
    /// Tasks themselves are kept (with their state, branch and pull request), and nothing a delivery not processed yet or a task not ended needs is deleted, whatever its age.
    /// The database file does not shrink: SQLite reuses the freed pages, so it stops growing.
    pub struct RetentionConfig as "retention" {
        /// Whether the retention pass runs at all; with `false` nothing is ever deleted.
        #[key = "enabled", ty = (bool), default = (true), env = "ORCH_RETENTION_ENABLED"]
        pub enabled: bool,
        /// Seconds between passes.
        #[key = "interval_s", ty = (Ranged<60, DAY_S>), default = (3600)]
        pub interval: Duration,
        /// Days a processed webhook delivery (with its body, up to `server.max_body_bytes`) is kept after it was handled.
        /// At least 7: a delivery with the same body is recognised as a duplicate for 7 days.
        #[key = "deliveries_days", ty = (Ranged<7, MAX_DAYS>), default = (30)]
        pub deliveries: Duration,
        /// Days an ended job (its payload, output and last error) of an ended task (done or cancelled, with no job left to run) is kept after it last changed.
        #[key = "jobs_days", ty = (Ranged<1, MAX_DAYS>), default = (30)]
        pub jobs: Duration,
        /// Days a history line of an ended task (what `orch task show` lists) is kept.
        #[key = "history_days", ty = (Ranged<1, MAX_DAYS>), default = (30)]
        pub history: Duration,
        /// Days an agent's log file (`{data}/logs/{work item}/{job}-{agent}.log`, data being the directory of `storage.db_path`) is kept after it was last written; the logs of a task that has not ended are kept.
        #[key = "agent_logs_days", ty = (Ranged<1, MAX_DAYS>), default = (30)]
        pub agent_logs: Duration,
    }
}

config_section! {
    /// The agents: how they are isolated, and one table per role.
    /// Agents are untrusted (they follow instructions found in work items, comments and repositories), so by default each run is a bubblewrap sandbox (SPEC §5.4).
    pub struct AgentsConfig as "agents" {
        /// `"bwrap"`: each run in a bubblewrap sandbox with its own PID namespace, the system read-only, write access only to its worktree, its output directory and a private home (`{data}/homes/{work item}`) and tmp; orch's config, database, logs, mirrors and other tasks are not visible, and everything the agent starts ends with it.
        /// `"none"`: agents run as orch's user and see what it sees (`orch check` warns); an orch running as root still starts them without capabilities.
        #[key = "sandbox", ty = (SandboxMode), default = ("bwrap")]
        pub sandbox: SandboxMode,
        /// The bubblewrap program, an absolute path.
        /// Unset: `bwrap` is looked up on `PATH` (Debian: `apt-get install bubblewrap`).
        #[key = "bwrap_path", ty = (AbsolutePath), default = Unset]
        pub bwrap_path: Option<PathBuf>,
        /// How much lower than orch's own the CPU priority of every agent is: added to orch's niceness (`nice -n`), for the sandbox's set-up and everything the agent runs (builds, tests).
        /// So on a busy machine orch's own work (dispatching, answering webhooks, its git commands) goes first and agents take the CPU that is left; 0 starts agents at orch's priority.
        /// It changes no permission: the sandbox is the same at any value.
        #[key = "nice", ty = (Ranged<0, 19>), default = (10)]
        pub nice: u8,
        /// Writes `analysis.md` for a work item.
        #[key = "analyst", ty = "table", default = Table]
        pub analyst: AgentConfig,
        /// Implements the work item and commits on the task's branch.
        #[key = "developer", ty = "table", default = Table]
        pub developer: AgentConfig,
        /// Writes `review.md` and a `verdict` for the pull request.
        #[key = "reviewer", ty = "table", default = Table]
        pub reviewer: AgentConfig,
    }
}

config_section! {
    /// One agent (`<role>` is `analyst`, `developer` or `reviewer`).
    /// orch runs its command in the task's worktree, in its own process group, with the rendered prompt on stdin and in `$ORCH_PROMPT_FILE`.
    /// orch's own tokens are never in the agent's environment.
    pub struct AgentConfig as "agents.<role>" {
        /// The program and its arguments, run directly (no shell).
        #[key = "command", ty = (Argv), default = (["claude", "-p"])]
        pub command: Vec<String>,
        /// The prompt template, relative to the config file's directory.
        /// It may use `{{task}}`, `{{title}}`, `{{description}}`, `{{feedback}}`, `{{analysis}}`, `{{branch}}`, `{{base_branch}}` and `{{repo}}`; any other placeholder is an error.
        #[key = "prompt", ty = (PathBuf), default = ("prompts/<role>.md")]
        pub prompt: Prompt,
        /// The longest one run may take, in seconds; then its process group gets SIGTERM, and SIGKILL 10 s later.
        #[key = "timeout_s", ty = (Ranged<1, WEEK_S>), default = (1800)]
        pub timeout: Duration,
        /// Extra environment variables for the agent, for example its own API key.
        /// Names starting with `ORCH_` are reserved for orch.
        #[key = "env", ty = (AgentEnv), default = (toml::Table::new())]
        pub env: BTreeMap<String, Secret>,
        /// Names of variables of orch's own environment the agent gets too, for example `["ANTHROPIC_API_KEY"]` (so the key stays out of this file).
        /// Names starting with `ORCH_` are refused: they are orch's own secrets and the agent contract, never an agent's.
        #[key = "pass_env", ty = (List<PassEnvName>), default = (Vec::<String>::new())]
        pub pass_env: Vec<String>,
        /// With the sandbox: whether the agent reaches the network (its model's API needs it).
        /// `false` gives it no network at all.
        #[key = "network", ty = (bool), default = (true)]
        pub network: bool,
        /// With the sandbox: more paths the agent may read, absolute or `~/…`.
        /// The program, its installation (the directory holding its `bin/`), the interpreter of a script and every absolute path in `command` are shown without being listed.
        /// `~/x` is taken from the home of the user orch runs as and shown at `~/x` of the agent's private home.
        /// A path that holds orch's data, database or repositories is refused.
        #[key = "read_only_paths", ty = (List<SandboxPath>), default = (Vec::<String>::new())]
        pub read_only_paths: Vec<SandboxPath>,
        /// With the sandbox: more paths the agent may change, absolute or `~/…`, for example a CLI's login and settings (`["~/.claude", "~/.claude.json"]` for Claude Code) or a package cache.
        /// Paths that do not exist are left out (`orch check` says so).
        #[key = "writable_paths", ty = (List<SandboxPath>), default = (Vec::<String>::new())]
        pub writable_paths: Vec<SandboxPath>,
        /// The arguments `orch check` starts the program with, in the sandbox, to see that it runs and what it lacks.
        #[key = "probe", ty = (List<String>), default = (["--version"])]
        pub probe: Vec<String>,
    }
}

/// `agents.sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    Bwrap,
    None,
}

config_section! {
    /// One Plane project bound to one Gitea repository; repeat the table for more.
    keys PROJECT_SECTION as "projects[]" {
        /// A short unique name for logs and the CLI, of letters, digits, `-` and `_`.
        #[key = "key", ty = (ProjectKey), default = Required]
        /// The Plane project's id (a UUID, from the project's URL or settings); unique.
        #[key = "plane_project_id", ty = (ProjectId), default = Required]
        /// The Gitea repository, `owner/name`; unique.
        #[key = "repo", ty = (RepoSlug), default = Required]
        /// The project's work item prefix in Plane (its identifier, `ET` in `ET-001`): 1 to 10 letters or digits, starting with a letter.
        #[key = "work_item_prefix", ty = (WorkItemPrefix), default = Required]
        /// The branch pull requests target.
        #[key = "base_branch", ty = (BranchName), default = ("main")]
        /// The names of the project's Plane states orch reads and sets.
        #[key = "states", ty = "table", default = Table]
    }
}

config_section! {
    /// The names of a project's Plane states, resolved to ids through Plane's API at start-up.
    /// Each must exist in the project; two roles may not name the same state.
    keys STATES_SECTION as "projects[].states" {
        /// A person moves a work item here to start it; orch moves it back here after applying a verdict.
        #[key = "in_progress", ty = (StateName), default = ("In Progress")]
        /// A person's approval of the analysis or of the reviewed pull request.
        #[key = "approved", ty = (StateName), default = ("Approved")]
        /// A person's rejection, with comments as feedback for the agent.
        #[key = "rejected", ty = (StateName), default = ("Rejected")]
        /// Where orch puts a work item that waits for a person's verdict.
        /// Unset: orch leaves the state alone and only notifies.
        #[key = "awaiting", ty = (StateName), default = Unset]
        /// Where orch puts a work item once its pull request is merged.
        #[key = "done", ty = (StateName), default = ("Done")]
        /// A person moves a work item here to cancel its task.
        /// Unset: tasks are cancelled only through `orch task cancel`.
        #[key = "cancelled", ty = (StateName), default = Unset]
    }
}

impl Config {
    /// What the core's `Orchestrator` and `Reconciler` decide with.
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            projects: self.projects.clone(),
            max_attempts: self.worker.max_attempts,
            max_fix_rounds: self.worker.max_fix_rounds,
            require_ci: self.gitea.require_ci,
            grace: self.reconcile.grace,
            ..PipelineConfig::default()
        }
    }

    /// The configuration of one agent role.
    pub fn agent(&self, agent: Agent) -> &AgentConfig {
        self.agents.get(agent)
    }
}

impl AgentConfig {
    /// This agent as the runner of `orch_agent` takes it; the `env` values are exposed here.
    pub fn role_config(&self) -> RoleConfig {
        RoleConfig {
            command: self.command.clone(),
            prompt_template: self.prompt.text.clone(),
            timeout: self.timeout,
            env: self
                .env
                .iter()
                .map(|(name, value)| (name.clone(), value.expose().to_owned()))
                .collect(),
            network: self.network,
            read_only_paths: self.read_only_paths.clone(),
            writable_paths: self.writable_paths.clone(),
            pass_env: self.pass_env.clone(),
            probe: self.probe.clone(),
        }
    }
}

impl AgentsConfig {
    /// `sandbox` and `bwrap_path` as the runner of `orch_agent` takes them.
    pub fn sandbox(&self) -> AgentSandbox {
        match self.sandbox {
            SandboxMode::Bwrap => AgentSandbox::Bwrap {
                program: self.bwrap_path.clone(),
            },
            SandboxMode::None => AgentSandbox::None,
        }
    }

    pub fn get(&self, agent: Agent) -> &AgentConfig {
        match agent {
            Agent::Analyst => &self.analyst,
            Agent::Developer => &self.developer,
            Agent::Reviewer => &self.reviewer,
        }
    }
}
