//! orch's configuration (SPEC §5.2): typed, loaded from a TOML file plus environment variables.
//!
//! `load` reads the file, `parse` checks a text; both take the environment as an explicit map
//! (`process_env` collects the real one), so tests are hermetic. Unknown keys are errors and
//! every error is reported at once, each with its key path. The doc comments of the structs
//! below are the source of `docs/config.md` (`reference_markdown`).

#[macro_use]
mod schema;
mod error;
mod reference;
mod values;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_agent::RoleConfig;
use orch_core::config::{Grace, PipelineConfig, ProjectConfig};
use orch_core::domain::Agent;

use crate::config::schema::Fallback;

pub use crate::config::error::{ConfigError, ConfigErrors};
pub use crate::config::reference::reference_markdown;
pub use crate::config::values::{BaseUrl, MergeStyle, Prompt, Secret};

/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "ORCH_CONFIG";

/// The config file used when neither `--config` nor `$ORCH_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "orch.toml";

/// Reads and checks the config file at `path`, with `env` overriding it.
///
/// Relative prompt paths are resolved against the file's directory. Errors: every problem at
/// once, each with its key path; an unreadable file or invalid TOML is a single error.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
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
    walk::parse(&text, &path.display().to_string(), &base_dir, env)
}

/// Checks `text` as a config file; `base_dir` resolves relative prompt paths and `origin`
/// names the text in TOML syntax errors.
pub fn parse(
    text: &str,
    origin: &str,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigErrors> {
    walk::parse(text, origin, base_dir, env)
}

/// The `ORCH_*` variables of this process (others are never read; non-UTF-8 values are skipped).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| name.starts_with("ORCH_"))
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
        #[key = "server", ty = "table", default = Fallback::Table]
        pub server: ServerConfig,
        /// Where the SQLite database lives.
        #[key = "storage", ty = "table", default = Fallback::Table]
        pub storage: StorageConfig,
        /// Where repositories and worktrees live.
        #[key = "workspace", ty = "table", default = Fallback::Table]
        pub workspace: WorkspaceConfig,
        /// The Plane tracker.
        #[key = "plane", ty = "table", default = Fallback::Table]
        pub plane: PlaneConfig,
        /// The Gitea forge.
        #[key = "gitea", ty = "table", default = Fallback::Table]
        pub gitea: GiteaConfig,
        /// Telegram notifications.
        /// When the section is absent (and neither `ORCH_TELEGRAM_BOT_TOKEN` nor `ORCH_TELEGRAM_CHAT_ID` is set), notifications are only logged.
        #[key = "telegram", ty = "table", default = Fallback::Unset]
        pub telegram: Option<TelegramConfig>,
        /// The job worker: concurrency, timeouts, attempts.
        #[key = "worker", ty = "table", default = Fallback::Table]
        pub worker: WorkerConfig,
        /// The reconciler, which makes the pipeline converge when webhooks are lost.
        #[key = "reconcile", ty = "table", default = Fallback::Table]
        pub reconcile: ReconcileConfig,
        /// The three agents: `analyst`, `developer`, `reviewer`.
        #[key = "agents", ty = "table", default = Fallback::Table]
        pub agents: AgentsConfig,
        /// The Plane projects orch works on, each bound to one Gitea repository.
        /// At least one is required.
        #[key = "projects", ty = "array of tables", default = Fallback::Required]
        pub projects: Vec<ProjectConfig>,
    }
}

config_section! {
    /// The HTTP server (hyper): `POST /webhooks/plane`, `POST /webhooks/gitea`, `/healthz`, `/readyz`, `/queue`, `/metrics` and `/api/*`.
    pub struct ServerConfig as "server" {
        /// The IP address and port to listen on, for example `0.0.0.0:8787`.
        /// Plane and Gitea must be able to reach it for webhooks.
        #[key = "listen", ty = "socket address", default = Fallback::Value("\"127.0.0.1:8787\""), env = "ORCH_LISTEN"]
        pub listen: SocketAddr,
        /// A bearer token for `/queue`, `/metrics` and `/api/*`: when set, they need `Authorization: Bearer <token>`.
        /// Unset or empty: they are open (the webhooks are always protected by their signatures).
        #[key = "admin_token", ty = "secret string", default = Fallback::Unset, env = "ORCH_ADMIN_TOKEN"]
        pub admin_token: Option<Secret>,
        /// The largest webhook body accepted, in bytes; a larger one is answered `413` and reading stops at the cap.
        #[key = "max_body_bytes", ty = "integer (1 to 1073741824)", default = Fallback::Value("1048576")]
        pub max_body_bytes: u64,
    }
}

config_section! {
    /// The SQLite database.
    pub struct StorageConfig as "storage" {
        /// The database file; relative paths are relative to the working directory.
        /// The daemon holds an exclusive lock on `{db_path}.lock`, so two daemons never share a database.
        #[key = "db_path", ty = "path", default = Fallback::Value("\"data/orch.db\""), env = "ORCH_DB_PATH"]
        pub db_path: PathBuf,
    }
}

config_section! {
    /// The local git clones and task worktrees.
    pub struct WorkspaceConfig as "workspace" {
        /// The directory of clones and worktrees (`{repos_dir}/{owner}/{repo}/worktrees/{work item id}`); relative paths are relative to the working directory.
        #[key = "repos_dir", ty = "path", default = Fallback::Value("\"data/repos\""), env = "ORCH_REPOS_DIR"]
        pub repos_dir: PathBuf,
    }
}

config_section! {
    /// The Plane tracker, through its REST API (`X-Api-Key`) and its webhooks.
    pub struct PlaneConfig as "plane" {
        /// The root URL of the Plane instance, for example `https://plane.example.com` (no `/api/v1`).
        #[key = "base_url", ty = "http(s) URL", default = Fallback::Required, env = "ORCH_PLANE_URL"]
        pub base_url: BaseUrl,
        /// The workspace slug, as in `https://plane.example.com/<slug>/projects/`.
        #[key = "workspace_slug", ty = "string", default = Fallback::Required]
        pub workspace_slug: String,
        /// An API token of the Plane user orch acts as (Profile settings, API tokens).
        /// Changes made with it are recognised as orch's own and ignored.
        #[key = "api_token", ty = "secret string", default = Fallback::Required, env = "ORCH_PLANE_API_TOKEN"]
        pub api_token: Secret,
        /// The secrets of orch's Plane webhook; a delivery is accepted when any of them signs it.
        /// Give two while rotating.
        /// The environment variable takes them comma-separated.
        #[key = "webhook_secrets", ty = "list of secret strings", default = Fallback::Required, env = "ORCH_PLANE_WEBHOOK_SECRET"]
        pub webhook_secrets: Vec<Secret>,
        /// The API rate limit of the Plane instance, in requests per minute.
        /// orch stays under 80 % of it, and the reconciler uses at most half of that.
        #[key = "rate_limit_per_min", ty = "integer (1 to 100000)", default = Fallback::Value("60")]
        pub rate_limit_per_min: u32,
    }
}

config_section! {
    /// The Gitea forge, through its REST API (`Authorization: token …`) and its webhooks.
    pub struct GiteaConfig as "gitea" {
        /// The root URL of the Gitea instance, for example `https://gitea.example.com` (no `/api/v1`).
        #[key = "base_url", ty = "http(s) URL", default = Fallback::Required, env = "ORCH_GITEA_URL"]
        pub base_url: BaseUrl,
        /// An access token of the Gitea user orch acts as, with read and write access to the repositories (scopes `repository` and `issue`).
        /// Git pushes use it too, through git's config environment, never in a URL.
        #[key = "token", ty = "secret string", default = Fallback::Required, env = "ORCH_GITEA_TOKEN"]
        pub token: Secret,
        /// The secrets of orch's Gitea webhooks; a delivery is accepted when any of them signs it.
        /// Give two while rotating.
        /// The environment variable takes them comma-separated.
        #[key = "webhook_secrets", ty = "list of secret strings", default = Fallback::Required, env = "ORCH_GITEA_WEBHOOK_SECRET"]
        pub webhook_secrets: Vec<Secret>,
        /// How pull requests are merged: `merge`, `squash`, `rebase` or `rebase-merge`.
        /// The repository must allow the style.
        #[key = "merge_style", ty = "string", default = Fallback::Value("\"merge\"")]
        pub merge_style: MergeStyle,
        /// With `true`, a commit must have a `success` combined status before review.
        /// With `false`, a commit with no statuses at all also counts as green (for repositories without CI).
        #[key = "require_ci", ty = "boolean", default = Fallback::Value("true")]
        pub require_ci: bool,
    }
}

config_section! {
    /// Telegram notifications through the Bot API: what needs a person, blocks, unblocks, merges.
    pub struct TelegramConfig as "telegram" {
        /// The bot's token from @BotFather.
        #[key = "bot_token", ty = "secret string", default = Fallback::Required, env = "ORCH_TELEGRAM_BOT_TOKEN"]
        pub bot_token: Secret,
        /// The chat to write to: a numeric id (negative for groups) or `@channelname`.
        #[key = "chat_id", ty = "string or integer", default = Fallback::Required, env = "ORCH_TELEGRAM_CHAT_ID"]
        pub chat_id: String,
        /// The Bot API root URL; change it only for a local Bot API server.
        #[key = "api_base", ty = "http(s) URL", default = Fallback::Value("\"https://api.telegram.org\"")]
        pub api_base: BaseUrl,
    }
}

config_section! {
    /// The job worker, which runs agents and the actions on Plane, Gitea and Telegram.
    pub struct WorkerConfig as "worker" {
        /// The most agent jobs running at once.
        #[key = "concurrency", ty = "integer (1 to 64)", default = Fallback::Value("2")]
        pub concurrency: u32,
        /// The most agent jobs running at once on one repository.
        #[key = "per_repo_concurrency", ty = "integer (1 to 64)", default = Fallback::Value("1")]
        pub per_repo_concurrency: u32,
        /// The longest one job may take, in seconds, before it is treated as lost and retried.
        /// No agent's `timeout_s` may exceed it.
        #[key = "job_timeout_s", ty = "integer (1 to 604800)", default = Fallback::Value("3600")]
        pub job_timeout: Duration,
        /// An agent that writes no output for this many seconds is stalled and killed.
        #[key = "stall_timeout_s", ty = "integer (1 to 86400)", default = Fallback::Value("600")]
        pub stall_timeout: Duration,
        /// Agent attempts before a task is blocked.
        #[key = "max_attempts", ty = "integer (1 to 100)", default = Fallback::Value("3")]
        pub max_attempts: u32,
        /// CI fix rounds, and review rounds, before a task is blocked.
        #[key = "max_fix_rounds", ty = "integer (0 to 100)", default = Fallback::Value("3")]
        pub max_fix_rounds: u32,
    }
}

config_section! {
    /// The reconciler: a background pass that replays what lost webhooks would have said.
    pub struct ReconcileConfig as "reconcile" {
        /// Whether the reconciler runs at all.
        #[key = "enabled", ty = "boolean", default = Fallback::Value("true"), env = "ORCH_RECONCILE_ENABLED"]
        pub enabled: bool,
        /// Whether its tracker side (F-2, listing Plane work items) runs; the gate side (F-1) does not depend on it.
        #[key = "plane_enabled", ty = "boolean", default = Fallback::Value("true"), env = "ORCH_RECONCILE_PLANE_ENABLED"]
        pub plane_enabled: bool,
        /// Seconds between passes.
        /// A pass also runs at start-up.
        #[key = "interval_s", ty = "integer (1 to 86400)", default = Fallback::Value("60")]
        pub interval: Duration,
        /// Per stage, how long a task must be unchanged before the reconciler touches it.
        #[key = "grace_s", ty = "table", default = Fallback::Table]
        pub grace: Grace,
    }
}

config_section! {
    /// Grace periods of the reconciler, per stage, in seconds (each an integer from 0 to 604800).
    keys GRACE_SECTION as "reconcile.grace_s" {
        /// For tasks in `analysis`.
        #[key = "analysis", ty = "integer (0 to 604800)", default = Fallback::Value("300")]
        /// For tasks in `development`.
        #[key = "development", ty = "integer (0 to 604800)", default = Fallback::Value("300")]
        /// For tasks in `review`.
        #[key = "review", ty = "integer (0 to 604800)", default = Fallback::Value("300")]
    }
}

config_section! {
    /// The agents, one table per role.
    pub struct AgentsConfig as "agents" {
        /// Writes `analysis.md` for a work item.
        #[key = "analyst", ty = "table", default = Fallback::Table]
        pub analyst: AgentConfig,
        /// Implements the work item and commits on the task's branch.
        #[key = "developer", ty = "table", default = Fallback::Table]
        pub developer: AgentConfig,
        /// Writes `review.md` and a `verdict` for the pull request.
        #[key = "reviewer", ty = "table", default = Fallback::Table]
        pub reviewer: AgentConfig,
    }
}

config_section! {
    /// One agent (`<role>` is `analyst`, `developer` or `reviewer`).
    /// orch runs its command in the task's worktree, in its own process group, with the rendered prompt on stdin and in `$ORCH_PROMPT_FILE`.
    /// orch's own tokens are never in the agent's environment.
    pub struct AgentConfig as "agents.<role>" {
        /// The program and its arguments, run directly (no shell).
        #[key = "command", ty = "list of strings", default = Fallback::Value("[\"claude\", \"-p\"]")]
        pub command: Vec<String>,
        /// The prompt template, relative to the config file's directory.
        /// It may use `{{task}}`, `{{title}}`, `{{description}}`, `{{feedback}}`, `{{analysis}}`, `{{branch}}`, `{{base_branch}}` and `{{repo}}`; any other placeholder is an error.
        #[key = "prompt", ty = "path", default = Fallback::Value("\"prompts/<role>.md\"")]
        pub prompt: Prompt,
        /// The longest one run may take, in seconds; then its process group gets SIGTERM, and SIGKILL 10 s later.
        #[key = "timeout_s", ty = "integer (1 to 604800)", default = Fallback::Value("1800")]
        pub timeout: Duration,
        /// Extra environment variables for the agent, for example its own API key.
        /// Names starting with `ORCH_` are reserved for orch.
        #[key = "env", ty = "table of strings", default = Fallback::Value("{}")]
        pub env: BTreeMap<String, Secret>,
    }
}

config_section! {
    /// One Plane project bound to one Gitea repository; repeat the table for more.
    keys PROJECT_SECTION as "projects[]" {
        /// A short unique name for logs and the CLI, of letters, digits, `-` and `_`.
        #[key = "key", ty = "string", default = Fallback::Required]
        /// The Plane project's id (a UUID, from the project's URL or settings); unique.
        #[key = "plane_project_id", ty = "string", default = Fallback::Required]
        /// The Gitea repository, `owner/name`; unique.
        #[key = "repo", ty = "string", default = Fallback::Required]
        /// The project's work item prefix in Plane (its identifier, `ET` in `ET-001`): 1 to 10 letters or digits, starting with a letter.
        #[key = "work_item_prefix", ty = "string", default = Fallback::Required]
        /// The branch pull requests target.
        #[key = "base_branch", ty = "string", default = Fallback::Value("\"main\"")]
        /// The names of the project's Plane states orch reads and sets.
        #[key = "states", ty = "table", default = Fallback::Table]
    }
}

config_section! {
    /// The names of a project's Plane states, resolved to ids through Plane's API at start-up.
    /// Each must exist in the project; two roles may not name the same state.
    keys STATES_SECTION as "projects[].states" {
        /// A person moves a work item here to start it; orch moves it back here after applying a verdict.
        #[key = "in_progress", ty = "string", default = Fallback::Value("\"In Progress\"")]
        /// A person's approval of the analysis or of the reviewed pull request.
        #[key = "approved", ty = "string", default = Fallback::Value("\"Approved\"")]
        /// A person's rejection, with comments as feedback for the agent.
        #[key = "rejected", ty = "string", default = Fallback::Value("\"Rejected\"")]
        /// Where orch puts a work item that waits for a person's verdict.
        /// Unset: orch leaves the state alone and only notifies.
        #[key = "awaiting", ty = "string", default = Fallback::Unset]
        /// Where orch puts a work item once its pull request is merged.
        #[key = "done", ty = "string", default = Fallback::Value("\"Done\"")]
        /// A person moves a work item here to cancel its task.
        /// Unset: tasks are cancelled only through `orch task cancel`.
        #[key = "cancelled", ty = "string", default = Fallback::Unset]
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
        }
    }
}

impl AgentsConfig {
    pub fn get(&self, agent: Agent) -> &AgentConfig {
        match agent {
            Agent::Analyst => &self.analyst,
            Agent::Developer => &self.developer,
            Agent::Reviewer => &self.reviewer,
        }
    }
}
