//! orch's `Workspace` adapter over the real `git` command line: one bare mirror per repository
//! under `repos_dir` (fetched before use), a `git worktree` per work item on its task branch,
//! agent output directories beside the worktrees, leftover commits, and forced pushes of the
//! task branch.
//!
//! It deliberately is not a git library: every operation is a `git` process with a clean
//! environment, a private `HOME` (`{repos_dir}/.git-home`), no user or system git config, and a
//! deadline; credentials reach git only through its config environment
//! (`GIT_CONFIG_COUNT`/`http.extraHeader`), never argv, a URL or a log. Every path it touches
//! stays inside `repos_dir`. Main types: `GitWorkspace` and its `GitConfig`.
//!
//! Agents are untrusted. orch's git names a worktree's git directories in its environment, so
//! files an agent can rewrite never choose what orch's git reads; and `prepare` tells a sandbox
//! what to mount (`PreparedWorktree::mounts`): a private copy of the mirror's git directory in
//! which the agent can commit on its task branch and change nothing else of orch's, whose
//! commits orch then adopts (`agent_view`).
//!
//! Where things are:
//! - `config`: `GitConfig` and `DEFAULT_COMMAND_TIMEOUT`.
//! - `workspace`: `GitWorkspace`, its construction and the `Workspace` port, each operation
//!   handed to the module below that does it.
//! - `mirror`: the bare mirror per repository, its lock and freshness (warm mode), orch's
//!   config for it, fetches and ref lookups.
//! - `branch`: the task branch, its push lease, commits ahead, clean merges and pushes.
//! - `worktree`: `prepare`, and a work item's worktree made, repaired, committed and removed.
//! - `pool`: a few worktrees per repository made ahead of their task, so a new task's worktree
//!   is two renames and no git process.
//! - `outputs`: the agents' output directories and the copies of their files orch keeps.
//! - `agent_view`: the sandboxed agent's private copy of the mirror, and adopting its commits.
//! - `refs`: reading and writing the mirror's refs as files; `paths`: every path under `repos_dir`;
//!   `command`: running one `git` process; `error`: `GitError`, mapped to `WorkspaceError`.

#![forbid(unsafe_code)]

mod agent_view;
mod branch;
mod command;
mod config;
mod error;
mod mirror;
mod outputs;
mod paths;
mod pool;
mod refs;
mod workspace;
mod worktree;

pub use crate::config::{GitConfig, DEFAULT_COMMAND_TIMEOUT};
pub use crate::workspace::GitWorkspace;

#[cfg(test)]
mod tests;
