//! `orch-agent` runs coding agents as operating-system processes for orch: `ProcessAgentRunner`
//! implements the core's `AgentRunner` port exactly as the agent contract (SPEC §5.4) says.
//! An agent is an argv (never a shell line) started in the task's worktree, in a process group
//! of its own, with an environment built from nothing (`PATH`, `HOME`, `LANG`, the role's
//! configured `env` and the `ORCH_*` contract variables), so orch's tokens never reach it.
//! Its output is appended to `{logs}/{work item}/{job}-{agent}.log`; a total timeout, a stall
//! timeout and the `CancelHandle` end the whole group (SIGTERM, then SIGKILL after a grace).
//!
//! This crate deliberately knows nothing about stages, gates or artifacts: it starts, watches
//! and ends processes, and reports an `AgentOutcome`. The core decides what the outcome means.
//! Main types: `ProcessAgentRunner` with its `RunnerConfig` and `RoleConfig`, `PromptTemplate`,
//! and `reap_orphans`, which kills at boot the process groups an earlier boot left behind
//! (`ReapReport`).

#![forbid(unsafe_code)]

mod config;
mod procfs;
mod prompt;
mod reap;
mod runner;

pub use config::{ConfigError, RoleConfig, RunnerConfig, DEFAULT_KILL_GRACE};
pub use procfs::process_record;
pub use prompt::{PromptError, PromptTemplate, PromptValues, PLACEHOLDERS};
pub use reap::{reap_orphans, ReapEntry, ReapOutcome, ReapReport};
pub use runner::ProcessAgentRunner;
