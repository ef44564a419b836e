//! `orch-agent` runs coding agents as operating-system processes for orch: `ProcessAgentRunner`
//! implements the core's `AgentRunner` port exactly as the agent contract (SPEC §5.4) says.
//! An agent is an argv (never a shell line) started in the task's worktree, in a process group
//! of its own, with an environment built from nothing (`PATH`, `HOME`, `LANG`, the role's
//! configured `env` and `pass_env`, and the `ORCH_*` contract variables), so orch's tokens never
//! reach it. Its output is appended to `{logs}/{work item}/{job}-{agent}.log`; a total timeout,
//! a stall timeout and the `CancelHandle` end it (SIGTERM, then SIGKILL after a grace).
//!
//! Agents are untrusted: with `AgentSandbox::Bwrap` (the default) each run is a bubblewrap
//! sandbox with its own PID namespace that shows the system read-only and only the run's own
//! paths (worktree, output directory, a private home), never orch's database, config, logs or
//! other tasks; the sandbox is the unit orch ends, and nothing started inside outlives it.
//! Without a sandbox, an orch running as root starts agents without capabilities. Every agent
//! is started by one function (`launch`), for runs and for `orch check`'s probes alike.
//!
//! This crate deliberately knows nothing about stages, gates or artifacts: it starts, watches
//! and ends processes, and reports an `AgentOutcome`. The core decides what the outcome means.
//! Main types: `ProcessAgentRunner` with its `RunnerConfig`, `RoleConfig` and `AgentSandbox`,
//! `PromptTemplate`, `ProbeReport` with `check_sandbox`, and `reap_orphans`, which kills at boot
//! the process groups an earlier boot left behind (`ReapReport`).

#![forbid(unsafe_code)]

mod config;
mod launch;
mod probe;
mod procfs;
mod prompt;
mod reap;
mod runner;
mod sandbox;

pub use config::{
    AgentSandbox, ConfigError, RoleConfig, RunnerConfig, SandboxPath, DEFAULT_KILL_GRACE,
    DEFAULT_PROBE, MAX_NICE,
};
pub use probe::{check_sandbox, ProbeOutcome, ProbeReport};
pub use procfs::process_record;
pub use prompt::{PromptError, PromptTemplate, PromptValues, PLACEHOLDERS};
pub use reap::{
    reap_instance, reap_orphans, ReapEntry, ReapOutcome, ReapReport, INSTANCE_VARIABLE,
};
pub use runner::{log_file, ProcessAgentRunner};
