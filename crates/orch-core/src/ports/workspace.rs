//! The `Workspace` port: git mirrors, task worktrees and the agents' output files.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::domain::Agent;
use crate::ids::{BranchName, CommitSha, RepoSlug, WorkItemId};
use crate::ports::error::port_error;

port_error!(
    /// Why a workspace operation failed.
    WorkspaceError,
    "workspace"
);

/// Which worktree: everything needed to find or create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeSpec {
    pub repo: RepoSlug,
    pub base_branch: BranchName,
    pub branch: BranchName,
    pub work_item: WorkItemId,
}

/// A worktree ready for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWorktree {
    /// `{repos_dir}/{owner}/{repo}/worktrees/{work item}`.
    pub path: PathBuf,
    /// This agent's output directory (`ORCH_OUTPUT_DIR`), emptied by `prepare`.
    pub output_dir: PathBuf,
    /// The analyst's `analysis.md`, when it exists (`ORCH_ANALYSIS_FILE`).
    pub analysis_file: Option<PathBuf>,
    /// What an agent's sandbox must show besides the worktree and the output directory for
    /// the worktree to work (SPEC §5.4), in mount order: for a git worktree, the git
    /// directories it points into. Paths the agent may change only through these mounts.
    pub mounts: Vec<SandboxMount>,
}

/// One directory (or file) an agent's sandbox shows: `source` on the host appears at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub access: MountAccess,
}

/// Whether the agent may change what a `SandboxMount` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountAccess {
    ReadOnly,
    Writable,
}

/// Local git state. Every path MUST stay inside the configured `repos_dir`.
#[async_trait]
pub trait Workspace: Send + Sync {
    /// Fetches the mirror, creates the task branch from the base and its worktree if missing,
    /// and empties `agent`'s output directory. Idempotent.
    async fn prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, WorkspaceError>;

    /// The text of file `name` in `agent`'s output directory; `None` if it does not exist.
    async fn read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, WorkspaceError>;

    /// Commits every uncommitted change with `message`; `None` if there was nothing to commit.
    async fn commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        message: &str,
    ) -> Result<Option<CommitSha>, WorkspaceError>;

    /// Commits on the task branch that the base does not have.
    async fn commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, WorkspaceError>;

    /// The task branch's head commit.
    async fn head_sha(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError>;

    /// Whether `head` merges into the base branch without conflicts, tested locally: fetches
    /// the base (and the task branch, so `head` is there), then `git merge-tree --write-tree
    /// <base> <head>` in the mirror (git >= 2.38): exit 0 is clean, exit 1 conflicts, any other
    /// exit is an error. Read-only: it moves no ref and touches no worktree.
    async fn merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, WorkspaceError>;

    /// Pushes the task branch to the forge (forced: the branch is orch's own) and returns the
    /// pushed sha. Credentials MUST NOT appear in argv, a URL or a log.
    async fn push(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError>;

    /// Removes the worktree and its output directories. Idempotent.
    async fn remove(&self, spec: &WorktreeSpec) -> Result<(), WorkspaceError>;

    /// The forge says `branch` of `repo` now points at `head` (a push webhook): what the
    /// workspace keeps of that branch may be behind, and no later `prepare` that builds on it
    /// (the task branch itself, or the base a task branch not made yet starts from) may trust
    /// it before fetching again. Cheap and synchronous (it only marks). Returns whether the
    /// caller should `refresh` (off the dispatch path): false when nothing is kept, or when
    /// `head` is what orch itself pushed there last. Default: nothing kept.
    fn remote_changed(&self, _repo: &RepoSlug, _branch: &BranchName, _head: &CommitSha) -> bool {
        false
    }

    /// Brings the local copy of `repo` up to date, off the dispatch path, so that `prepare`
    /// needs no network. Default: nothing is kept, nothing to fetch.
    async fn refresh(&self, _repo: &RepoSlug) -> Result<(), WorkspaceError> {
        Ok(())
    }
}
