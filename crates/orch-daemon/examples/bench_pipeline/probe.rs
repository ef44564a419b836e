//! Timing probes: an `AgentRunner` and a `Workspace` around the real ones, and an `Observer`,
//! that note on the wall clock when each agent job's steps happen and when each item is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use orch_core::domain::{Agent, Stage};
use orch_core::ids::{BranchName, CommitSha, JobId, RepoSlug};
use orch_core::orchestrator::Handled;
use orch_core::ports::{
    AgentError, AgentRequest, AgentRunner, Ports, PreparedWorktree, RunningAgent, Workspace,
    WorkspaceError, WorktreeSpec,
};
use orch_daemon::runtime::Observer;

/// Milliseconds since the Unix epoch, with sub-millisecond precision.
pub(crate) fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64() * 1000.0)
}

/// One agent start, on the wall clock (ms since the epoch).
#[derive(Debug, Clone)]
pub(crate) struct AgentStart {
    pub(crate) job: JobId,
    /// When the worker began preparing the worktree (it had claimed the job just before).
    pub(crate) prepare_started: Option<f64>,
    /// When the runner was asked to start the agent (worktree ready, request built).
    pub(crate) start_called: f64,
    /// When the runner returned: the agent's process group was spawned.
    pub(crate) spawned: f64,
}

#[derive(Default)]
struct State {
    /// The latest `Workspace::prepare` call per work item (agent jobs of one item never overlap).
    prepare_started: HashMap<String, f64>,
    starts: Vec<AgentStart>,
    /// The first time each work item's task reached `done`.
    done: HashMap<String, Instant>,
}

/// What the probes saw.
#[derive(Default)]
pub(crate) struct Probe {
    state: Mutex<State>,
}

impl Probe {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn starts(&self) -> Vec<AgentStart> {
        self.state().starts.clone()
    }

    /// When each work item's task reached `done`.
    pub(crate) fn done(&self) -> HashMap<String, Instant> {
        self.state().done.clone()
    }

    /// Swaps the probes in around the daemon's real agent runner and workspace.
    pub(crate) fn wrap(self: &Arc<Self>, mut ports: Ports) -> Ports {
        ports.agents = Arc::new(TimedAgents {
            inner: ports.agents.clone(),
            probe: self.clone(),
        });
        ports.workspace = Arc::new(TimedWorkspace {
            inner: ports.workspace.clone(),
            probe: self.clone(),
        });
        ports
    }
}

impl Observer for Probe {
    fn transition(&self, handled: &Handled) {
        if let (Some(work_item), Some(Stage::Done)) = (&handled.work_item, handled.stage) {
            self.state()
                .done
                .entry(work_item.to_string())
                .or_insert_with(Instant::now);
        }
    }
}

/// The real runner, timed.
struct TimedAgents {
    inner: Arc<dyn AgentRunner>,
    probe: Arc<Probe>,
}

#[async_trait]
impl AgentRunner for TimedAgents {
    async fn start(&self, request: AgentRequest) -> Result<Box<dyn RunningAgent>, AgentError> {
        let start_called = wall_ms();
        let (job, work_item) = (request.job, request.work_item.to_string());
        let started = self.inner.start(request).await;
        let spawned = wall_ms();
        if started.is_ok() {
            let mut state = self.probe.state();
            let prepare_started = state.prepare_started.get(&work_item).copied();
            state.starts.push(AgentStart {
                job,
                prepare_started,
                start_called,
                spawned,
            });
        }
        started
    }
}

/// The real workspace; `prepare` is timed.
struct TimedWorkspace {
    inner: Arc<dyn Workspace>,
    probe: Arc<Probe>,
}

#[async_trait]
impl Workspace for TimedWorkspace {
    async fn prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, WorkspaceError> {
        self.probe
            .state()
            .prepare_started
            .insert(spec.work_item.to_string(), wall_ms());
        self.inner.prepare(spec, agent).await
    }

    async fn read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        self.inner.read_output(spec, agent, name).await
    }

    async fn commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        message: &str,
    ) -> Result<Option<CommitSha>, WorkspaceError> {
        self.inner.commit_leftovers(spec, message).await
    }

    async fn commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, WorkspaceError> {
        self.inner.commits_ahead(spec).await
    }

    async fn merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, WorkspaceError> {
        self.inner.merges_cleanly(spec, head).await
    }

    async fn head_sha(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        self.inner.head_sha(spec).await
    }

    async fn push(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        self.inner.push(spec).await
    }

    async fn remove(&self, spec: &WorktreeSpec) -> Result<(), WorkspaceError> {
        self.inner.remove(spec).await
    }

    fn remote_changed(&self, repo: &RepoSlug, branch: &BranchName, head: &CommitSha) -> bool {
        self.inner.remote_changed(repo, branch, head)
    }

    async fn refresh(&self, repo: &RepoSlug) -> Result<(), WorkspaceError> {
        self.inner.refresh(repo).await
    }
}
