//! `FakeWorkspace`: worktrees, commits and agent outputs in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::domain::Agent;
use crate::fakes::forge::FakeForge;
use crate::ids::{CommitSha, WorkItemId};
use crate::ports::{PreparedWorktree, Workspace, WorkspaceError, WorktreeSpec};

/// Worktrees in memory. Commit shas are deterministic: `{counter:040x}`.
#[derive(Debug, Default)]
pub struct FakeWorkspace {
    state: Mutex<WorkspaceState>,
    forge: Option<Arc<FakeForge>>,
}

#[derive(Debug, Default)]
struct WorkspaceState {
    trees: BTreeMap<WorkItemId, Tree>,
    next_sha: u64,
    pushes: Vec<(WorkItemId, CommitSha)>,
    failures: u32,
}

#[derive(Debug, Clone, Default)]
struct Tree {
    exists: bool,
    commits_ahead: u32,
    head: Option<CommitSha>,
    uncommitted: bool,
    /// The task branch conflicts with the base (`merges_cleanly` says false).
    conflicts_with_base: bool,
    outputs: BTreeMap<(Agent, String), String>,
}

impl FakeWorkspace {
    pub fn new() -> FakeWorkspace {
        FakeWorkspace::default()
    }

    /// Pushes also move the branch head in `forge`, as a real push moves Gitea's.
    pub fn with_forge(mut self, forge: Arc<FakeForge>) -> FakeWorkspace {
        self.forge = Some(forge);
        self
    }

    /// What an agent writing `name` into its output directory does.
    pub fn write_output(&self, work_item: &WorkItemId, agent: Agent, name: &str, text: &str) {
        let mut state = self.lock();
        state
            .trees
            .entry(work_item.clone())
            .or_default()
            .outputs
            .insert((agent, name.to_owned()), text.to_owned());
    }

    /// What a developer committing does.
    pub fn add_commit(&self, work_item: &WorkItemId) -> CommitSha {
        let mut state = self.lock();
        let sha = next_sha(&mut state);
        let tree = state.trees.entry(work_item.clone()).or_default();
        tree.commits_ahead += 1;
        tree.head = Some(sha.clone());
        sha
    }

    /// What a developer leaving changes uncommitted does.
    pub fn leave_uncommitted(&self, work_item: &WorkItemId) {
        self.lock()
            .trees
            .entry(work_item.clone())
            .or_default()
            .uncommitted = true;
    }

    /// What the base moving under the task branch does: from now on the branch conflicts with
    /// it (`true`) or merges cleanly again (`false`, the default).
    pub fn set_conflicts_with_base(&self, work_item: &WorkItemId, conflicts: bool) {
        self.lock()
            .trees
            .entry(work_item.clone())
            .or_default()
            .conflicts_with_base = conflicts;
    }

    pub fn exists(&self, work_item: &WorkItemId) -> bool {
        self.lock()
            .trees
            .get(work_item)
            .is_some_and(|tree| tree.exists)
    }

    /// The work items whose worktree exists.
    pub fn worktrees(&self) -> Vec<WorkItemId> {
        self.lock()
            .trees
            .iter()
            .filter(|(_, tree)| tree.exists)
            .map(|(work_item, _)| work_item.clone())
            .collect()
    }

    pub fn pushes(&self) -> Vec<(WorkItemId, CommitSha)> {
        self.lock().pushes.clone()
    }

    /// The next `n` calls fail with `Unavailable`.
    pub fn fail_next(&self, n: u32) {
        self.lock().failures = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorkspaceState> {
        self.state.lock().expect("workspace mutex")
    }

    fn enter(&self) -> Result<std::sync::MutexGuard<'_, WorkspaceState>, WorkspaceError> {
        let mut state = self.lock();
        if state.failures > 0 {
            state.failures -= 1;
            return Err(WorkspaceError::unavailable("git is down (fake)"));
        }
        Ok(state)
    }
}

fn next_sha(state: &mut WorkspaceState) -> CommitSha {
    state.next_sha += 1;
    CommitSha::new(format!("{:040x}", 0x00c0_ffee_0000_u64 + state.next_sha))
        .expect("40 hex digits")
}

fn base_sha() -> CommitSha {
    CommitSha::new("b".repeat(40)).expect("40 hex digits")
}

fn path_of(spec: &WorktreeSpec) -> PathBuf {
    PathBuf::from(format!("/fake/{}/worktrees/{}", spec.repo, spec.work_item))
}

#[async_trait]
impl Workspace for FakeWorkspace {
    async fn prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, WorkspaceError> {
        let mut state = self.enter()?;
        let tree = state.trees.entry(spec.work_item.clone()).or_default();
        tree.exists = true;
        tree.outputs.retain(|(owner, _), _| *owner != agent);
        let analysis_file = tree
            .outputs
            .contains_key(&(Agent::Analyst, "analysis.md".to_owned()))
            .then(|| {
                PathBuf::from(format!(
                    "/fake/{}/outputs/{}/analyst/analysis.md",
                    spec.repo, spec.work_item
                ))
            });
        Ok(PreparedWorktree {
            path: path_of(spec),
            output_dir: PathBuf::from(format!(
                "/fake/{}/outputs/{}/{agent}",
                spec.repo, spec.work_item
            )),
            analysis_file,
            mounts: Vec::new(),
        })
    }

    async fn read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let state = self.enter()?;
        Ok(state
            .trees
            .get(&spec.work_item)
            .and_then(|tree| tree.outputs.get(&(agent, name.to_owned())).cloned()))
    }

    async fn commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        _message: &str,
    ) -> Result<Option<CommitSha>, WorkspaceError> {
        let mut state = self.enter()?;
        if !state
            .trees
            .get(&spec.work_item)
            .is_some_and(|tree| tree.uncommitted)
        {
            return Ok(None);
        }
        let sha = next_sha(&mut state);
        let tree = state.trees.entry(spec.work_item.clone()).or_default();
        tree.uncommitted = false;
        tree.commits_ahead += 1;
        tree.head = Some(sha.clone());
        Ok(Some(sha))
    }

    async fn commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, WorkspaceError> {
        let state = self.enter()?;
        Ok(state
            .trees
            .get(&spec.work_item)
            .map_or(0, |tree| tree.commits_ahead))
    }

    async fn head_sha(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        let state = self.enter()?;
        Ok(state
            .trees
            .get(&spec.work_item)
            .and_then(|tree| tree.head.clone())
            .unwrap_or_else(base_sha))
    }

    async fn merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        _head: &CommitSha,
    ) -> Result<bool, WorkspaceError> {
        let state = self.enter()?;
        Ok(!state
            .trees
            .get(&spec.work_item)
            .is_some_and(|tree| tree.conflicts_with_base))
    }

    async fn push(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        let mut state = self.enter()?;
        let head = state
            .trees
            .get(&spec.work_item)
            .and_then(|tree| tree.head.clone())
            .unwrap_or_else(base_sha);
        state.pushes.push((spec.work_item.clone(), head.clone()));
        drop(state);
        if let Some(forge) = &self.forge {
            forge.set_branch_head(&spec.repo, spec.branch.as_str(), &head);
        }
        Ok(head)
    }

    async fn remove(&self, spec: &WorktreeSpec) -> Result<(), WorkspaceError> {
        let mut state = self.enter()?;
        if let Some(tree) = state.trees.get_mut(&spec.work_item) {
            tree.exists = false;
        }
        Ok(())
    }
}
