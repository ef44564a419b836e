//! The `AgentRunner` port: start an agent process, then wait for it or cancel it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Agent, ProcessRecord, Stage};
use crate::ids::{BranchName, JobId, RepoSlug, TaskId, WorkItemId};
use crate::ports::error::port_error;
use crate::ports::SandboxMount;

port_error!(
    /// Why an agent could not be started (a bad prompt template is `Invalid`).
    AgentError,
    "agent runner"
);

/// Everything the agent contract (SPEC §5.4) needs for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    pub agent: Agent,
    pub task: TaskId,
    pub job: JobId,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub work_item: WorkItemId,
    pub stage: Stage,
    pub repo: RepoSlug,
    pub branch: BranchName,
    pub base_branch: BranchName,
    pub title: String,
    pub description: String,
    pub analysis: Option<String>,
    pub feedback: Option<String>,
    pub worktree: PathBuf,
    pub output_dir: PathBuf,
    pub analysis_file: Option<PathBuf>,
    /// The worktree's own mounts (`PreparedWorktree::mounts`), for a runner with a sandbox.
    pub mounts: Vec<SandboxMount>,
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOutcome {
    Succeeded,
    /// Non-zero exit (`None` when ended by a signal).
    Failed {
        code: Option<i32>,
    },
    TimedOut,
    Stalled,
    Cancelled,
    CouldNotStart {
        reason: String,
    },
}

impl fmt::Display for AgentOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentOutcome::Succeeded => f.write_str("succeeded"),
            AgentOutcome::Failed { code: Some(code) } => write!(f, "exited with code {code}"),
            AgentOutcome::Failed { code: None } => f.write_str("ended by a signal"),
            AgentOutcome::TimedOut => f.write_str("timed out"),
            AgentOutcome::Stalled => f.write_str("stalled (no output)"),
            AgentOutcome::Cancelled => f.write_str("cancelled"),
            AgentOutcome::CouldNotStart { reason } => write!(f, "could not start: {reason}"),
        }
    }
}

/// Ends a running agent's whole process group. Cheap to clone; calling it twice is harmless.
#[derive(Clone)]
pub struct CancelHandle(Arc<dyn Fn() + Send + Sync>);

impl CancelHandle {
    pub fn new(cancel: impl Fn() + Send + Sync + 'static) -> CancelHandle {
        CancelHandle(Arc::new(cancel))
    }

    pub fn cancel(&self) {
        (self.0)();
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CancelHandle")
    }
}

/// A started agent.
#[async_trait]
pub trait RunningAgent: Send {
    /// The process group to record for orphan reaping; `None` for runners without processes.
    fn process(&self) -> Option<ProcessRecord>;

    fn cancel_handle(&self) -> CancelHandle;

    /// Waits for the end. MUST return within the configured timeout plus the kill grace.
    async fn wait(self: Box<Self>) -> AgentOutcome;
}

/// Starts agents. Start-then-wait: `start` returns at once with a handle.
#[async_trait]
pub trait AgentRunner: Send + Sync {
    /// Starts `request.agent`. Errors: `Invalid` for a configuration error (unknown prompt
    /// placeholder, missing role); a program that cannot be spawned is an `Ok` handle whose
    /// `wait` yields `CouldNotStart`.
    async fn start(&self, request: AgentRequest) -> Result<Box<dyn RunningAgent>, AgentError>;
}
