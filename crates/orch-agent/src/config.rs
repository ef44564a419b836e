//! The runner's configuration, validated once at construction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::domain::Agent;

use crate::prompt::{PromptError, PromptTemplate};

/// SIGTERM to SIGKILL, as SPEC §5.4 says.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// The arguments `orch check` starts a role's program with when none are configured.
pub const DEFAULT_PROBE: [&str; 1] = ["--version"];

/// The highest niceness Linux has (the lowest CPU priority).
pub const MAX_NICE: u8 = 19;

/// How one role (analyst, developer, reviewer) is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// The program and its arguments; run without a shell.
    pub command: Vec<String>,
    /// The prompt template's text (the daemon reads the file).
    pub prompt_template: String,
    /// The whole run may take at most this long.
    pub timeout: Duration,
    /// Extra environment for the agent, e.g. its own API key. Set after `PATH`, `HOME` and
    /// `LANG` (so it may override them) and before the `ORCH_*` variables (which it may not).
    pub env: BTreeMap<String, String>,
    /// With a sandbox: whether the agent reaches the network (its model's API needs it).
    pub network: bool,
    /// With a sandbox: more paths the agent may read (an agent's own installation, data).
    pub read_only_paths: Vec<SandboxPath>,
    /// With a sandbox: more paths the agent may change (a CLI's login and settings, a cache).
    pub writable_paths: Vec<SandboxPath>,
    /// Names of variables of orch's own environment the agent gets too (its model's API key).
    /// Names starting with `ORCH_` are refused: they are orch's secrets and its contract.
    pub pass_env: Vec<String>,
    /// The arguments `orch check` starts the program with, to see that it runs.
    pub probe: Vec<String>,
}

impl RoleConfig {
    /// A role running `command` with `prompt_template`, with every other setting at its default:
    /// network on, no extra paths or variables, probe `--version`.
    pub fn new(command: Vec<String>, prompt_template: String, timeout: Duration) -> RoleConfig {
        RoleConfig {
            command,
            prompt_template,
            timeout,
            env: BTreeMap::new(),
            network: true,
            read_only_paths: Vec::new(),
            writable_paths: Vec::new(),
            pass_env: Vec::new(),
            probe: DEFAULT_PROBE.iter().map(|arg| (*arg).to_owned()).collect(),
        }
    }
}

/// A path named in a role's `read_only_paths` or `writable_paths`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SandboxPath {
    /// Shown at the same place inside the sandbox.
    Absolute(PathBuf),
    /// `~/…`: taken from the home of the user orch runs as, shown at the same place in the
    /// agent's private home (so `~/.claude` is where the agent's CLI looks for it).
    InHome(PathBuf),
}

impl SandboxPath {
    /// Parses `/absolute/path` or `~/relative/path`; `..`, `.` and a bare `~` are refused.
    pub fn parse(text: &str) -> Result<SandboxPath, String> {
        if text == "~" || text == "~/" {
            return Err(
                "the whole home is not shown to agents; name what they need, such as ~/.claude"
                    .to_owned(),
            );
        }
        let (relative, make): (&str, fn(PathBuf) -> SandboxPath) = match text.strip_prefix("~/") {
            Some(rest) => (rest, SandboxPath::InHome),
            None => match text.strip_prefix('/') {
                Some(rest) => (rest, |path| {
                    SandboxPath::Absolute(Path::new("/").join(path))
                }),
                None => return Err(format!("expected an absolute path or ~/…, got {text:?}")),
            },
        };
        let relative = relative.trim_end_matches('/');
        let plain = !relative.contains('\0')
            && relative
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain {
            return Err(format!(
                "expected a path without '.', '..' or empty parts, got {text:?}"
            ));
        }
        Ok(make(PathBuf::from(relative)))
    }
}

/// How agents are isolated (SPEC §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSandbox {
    /// Each run in its own bubblewrap sandbox. `program` is the `bwrap` binary; `None` finds
    /// `bwrap` on `PATH` when an agent starts.
    Bwrap { program: Option<PathBuf> },
    /// No sandbox: the agent runs as orch's user (without capabilities when orch has any).
    None,
}

/// Everything `ProcessAgentRunner` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// One entry per configured role; starting a role without one is `AgentError::Invalid`.
    pub roles: BTreeMap<Agent, RoleConfig>,
    /// An agent silent on stdout and stderr for this long is ended as stalled.
    pub stall_timeout: Duration,
    /// Between SIGTERM and SIGKILL to the group.
    pub kill_grace: Duration,
    /// `{data}/logs`: output goes to `{logs_dir}/{work item}/{job}-{agent}.log`.
    pub logs_dir: PathBuf,
    /// Where the prompt, description, analysis and feedback files of a run are written.
    pub scratch_dir: PathBuf,
    /// With a sandbox, `{homes_dir}/{work item}` is the agents' private `HOME`: what a CLI
    /// keeps there survives retries, and no other task's home is shown.
    pub homes_dir: PathBuf,
    pub sandbox: AgentSandbox,
    /// Paths no sandbox may show, nor any directory holding them: orch's database, config,
    /// data and repositories. The runner adds its own logs, scratch and homes directories.
    pub protected_paths: Vec<PathBuf>,
    /// How much lower than orch's own the CPU priority of agents is: added to orch's niceness
    /// (`nice -n`, at most `MAX_NICE`), for the sandbox's set-up and everything the agent runs.
    /// 0 starts agents at orch's priority.
    pub nice: u8,
}

/// A configuration the runner refuses; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("agents.{role}.prompt: {source}")]
    Prompt {
        role: Agent,
        #[source]
        source: PromptError,
    },
    #[error("agents.{role}.command: must name a program")]
    EmptyCommand { role: Agent },
    #[error("agents.{role}.timeout_s: must be greater than zero")]
    ZeroTimeout { role: Agent },
    #[error("worker.stall_timeout_s: must be greater than zero")]
    ZeroStallTimeout,
    #[error("agents.nice: must be at most {MAX_NICE}, got {nice}")]
    Nice { nice: u8 },
    #[error("agents.{role}.pass_env: {name}: names starting with ORCH_ are orch's own (its secrets and the agent contract)")]
    ReservedPassEnv { role: Agent, name: String },
}

/// A role's configuration with its template parsed.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) command: Vec<String>,
    pub(crate) template: PromptTemplate,
    pub(crate) timeout: Duration,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) network: bool,
    pub(crate) read_only_paths: Vec<SandboxPath>,
    pub(crate) writable_paths: Vec<SandboxPath>,
    pub(crate) pass_env: Vec<String>,
    pub(crate) probe: Vec<String>,
}

impl RunnerConfig {
    /// Checks every role; returns every problem, not only the first.
    pub(crate) fn validate(&self) -> Result<BTreeMap<Agent, Role>, Vec<ConfigError>> {
        let mut problems = Vec::new();
        if self.stall_timeout.is_zero() {
            problems.push(ConfigError::ZeroStallTimeout);
        }
        if self.nice > MAX_NICE {
            problems.push(ConfigError::Nice { nice: self.nice });
        }
        let mut roles = BTreeMap::new();
        for (&role, config) in &self.roles {
            if config
                .command
                .first()
                .is_none_or(|program| program.is_empty())
            {
                problems.push(ConfigError::EmptyCommand { role });
            }
            if config.timeout.is_zero() {
                problems.push(ConfigError::ZeroTimeout { role });
            }
            for name in &config.pass_env {
                if name.starts_with("ORCH_") {
                    problems.push(ConfigError::ReservedPassEnv {
                        role,
                        name: name.clone(),
                    });
                }
            }
            match PromptTemplate::parse(&config.prompt_template) {
                Ok(template) => {
                    roles.insert(
                        role,
                        Role {
                            command: config.command.clone(),
                            template,
                            timeout: config.timeout,
                            env: config.env.clone(),
                            network: config.network,
                            read_only_paths: config.read_only_paths.clone(),
                            writable_paths: config.writable_paths.clone(),
                            pass_env: config.pass_env.clone(),
                            probe: config.probe.clone(),
                        },
                    );
                }
                Err(source) => problems.push(ConfigError::Prompt { role, source }),
            }
        }
        if problems.is_empty() {
            Ok(roles)
        } else {
            Err(problems)
        }
    }
}
