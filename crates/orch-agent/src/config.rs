//! The runner's configuration, validated once at construction.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use orch_core::domain::Agent;

use crate::prompt::{PromptError, PromptTemplate};

/// SIGTERM to SIGKILL, as SPEC §5.4 says.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

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
}

/// A role's configuration with its template parsed.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) command: Vec<String>,
    pub(crate) template: PromptTemplate,
    pub(crate) timeout: Duration,
    pub(crate) env: BTreeMap<String, String>,
}

impl RunnerConfig {
    /// Checks every role; returns every problem, not only the first.
    pub(crate) fn validate(&self) -> Result<BTreeMap<Agent, Role>, Vec<ConfigError>> {
        let mut problems = Vec::new();
        if self.stall_timeout.is_zero() {
            problems.push(ConfigError::ZeroStallTimeout);
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
            match PromptTemplate::parse(&config.prompt_template) {
                Ok(template) => {
                    roles.insert(
                        role,
                        Role {
                            command: config.command.clone(),
                            template,
                            timeout: config.timeout,
                            env: config.env.clone(),
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
