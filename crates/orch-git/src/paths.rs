//! Where things live under `repos_dir`, and the checks that keep every path inside it.

use std::path::{Component, Path, PathBuf};

use orch_core::domain::Agent;
use orch_core::ids::{RepoSlug, WorkItemId};

use crate::error::GitError;

/// The directory in a worktree where an agent writes its output files, one subdirectory per
/// role; listed in the repository's `info/exclude`, so it is never committed.
pub(crate) const OUTPUT_DIR_NAME: &str = ".orch-output";

/// The name of a pool entry's admin directory under `{mirror}/worktrees/`, before its number.
pub(crate) const POOL_ADMIN_PREFIX: &str = ".orch-pool-";

/// The directory layout under the canonical `repos_dir`:
/// `{owner}/{repo}/mirror.git`, `{owner}/{repo}/worktrees/{work item}` (with the agents' output
/// directories in it, `.orch-output/{agent}/`), `{owner}/{repo}/outputs/{work item}/{agent}/`
/// (the output files as orch first read them), `{owner}/{repo}/agent-git/{work item}` (what a
/// sandboxed agent sees in place of the mirror), and `.git-home`, the private `HOME` of
/// orch's git (no owner starts with `.`).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    /// `root` must already be canonical.
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The `HOME` of orch's git processes.
    pub(crate) fn git_home(&self) -> PathBuf {
        self.root.join(".git-home")
    }

    pub(crate) fn repo_dir(&self, repo: &RepoSlug) -> Result<PathBuf, GitError> {
        let mut path = self.root.clone();
        if repo.owner().starts_with('.') {
            // Names starting with '.' are orch's own (`.git-home`); Gitea has no such owner.
            return Err(refused("repository owner", "must not start with '.'"));
        }
        path.push(component("repository owner", repo.owner())?);
        path.push(component("repository name", repo.name())?);
        Ok(path)
    }

    pub(crate) fn mirror(&self, repo: &RepoSlug) -> Result<PathBuf, GitError> {
        Ok(self.repo_dir(repo)?.join("mirror.git"))
    }

    pub(crate) fn worktree(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
    ) -> Result<PathBuf, GitError> {
        let name = work_item.to_string();
        Ok(self
            .repo_dir(repo)?
            .join("worktrees")
            .join(component("work item", &name)?))
    }

    /// `{mirror}/worktrees/{work item}`: the worktree's admin directory (its HEAD and index).
    pub(crate) fn worktree_admin(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
    ) -> Result<PathBuf, GitError> {
        let name = work_item.to_string();
        Ok(self
            .mirror(repo)?
            .join("worktrees")
            .join(component("work item", &name)?))
    }

    /// `{owner}/{repo}/pool`: the worktrees made ahead of their task.
    pub(crate) fn pool(&self, repo: &RepoSlug) -> Result<PathBuf, GitError> {
        Ok(self.repo_dir(repo)?.join("pool"))
    }

    /// `{owner}/{repo}/pool/{n}`: one worktree made ahead of its task.
    pub(crate) fn pool_worktree(&self, repo: &RepoSlug, n: u64) -> Result<PathBuf, GitError> {
        Ok(self.pool(repo)?.join(n.to_string()))
    }

    /// `{mirror}/worktrees/.orch-pool-{n}`: the admin directory of pool entry `n` (no work item
    /// id starts with `.`).
    pub(crate) fn pool_admin(&self, repo: &RepoSlug, n: u64) -> Result<PathBuf, GitError> {
        Ok(self
            .mirror(repo)?
            .join("worktrees")
            .join(format!("{POOL_ADMIN_PREFIX}{n}")))
    }

    /// `{owner}/{repo}/agent-git/{work item}`: the private git directory a sandboxed agent sees
    /// in place of the mirror.
    pub(crate) fn agent_git(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
    ) -> Result<PathBuf, GitError> {
        let name = work_item.to_string();
        Ok(self
            .repo_dir(repo)?
            .join("agent-git")
            .join(component("work item", &name)?))
    }

    /// `{owner}/{repo}/outputs/{work item}`: the kept outputs of every agent of a work item.
    pub(crate) fn outputs(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
    ) -> Result<PathBuf, GitError> {
        let name = work_item.to_string();
        Ok(self
            .repo_dir(repo)?
            .join("outputs")
            .join(component("work item", &name)?))
    }

    /// `{owner}/{repo}/outputs/{work item}/{agent}`: each output file as orch first read it,
    /// out of every agent's reach, so a later agent cannot change what an earlier one wrote.
    pub(crate) fn kept_outputs(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
        agent: Agent,
    ) -> Result<PathBuf, GitError> {
        Ok(self
            .outputs(repo, work_item)?
            .join(component("agent", agent.as_str())?))
    }

    /// `{worktree}/.orch-output/{agent}`: where the agent writes (`ORCH_OUTPUT_DIR`), inside
    /// its working directory so CLIs that only write there can.
    pub(crate) fn output_dir(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
        agent: Agent,
    ) -> Result<PathBuf, GitError> {
        Ok(self
            .worktree(repo, work_item)?
            .join(OUTPUT_DIR_NAME)
            .join(component("agent", agent.as_str())?))
    }

    /// Resolves symbolic links in the longest existing prefix of `path` and refuses a path
    /// that then lies outside `repos_dir`: `ensure_inside_blocking` in one blocking call.
    pub(crate) async fn ensure_inside(&self, path: &Path) -> Result<(), GitError> {
        let (layout, path) = (self.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || layout.ensure_inside_blocking(&path))
            .await
            .unwrap_or_else(|err| Err(GitError::io("resolve a path")(std::io::Error::other(err))))
    }

    /// `ensure_inside`, for a caller already off the async threads.
    pub(crate) fn ensure_inside_blocking(&self, path: &Path) -> Result<(), GitError> {
        let mut existing = path;
        loop {
            match std::fs::canonicalize(existing) {
                Ok(resolved) => {
                    let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
                    if resolved.starts_with(&self.root) && is_plain_relative(rest) {
                        return Ok(());
                    }
                    return Err(refused("path", "must stay inside repos_dir"));
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => match existing.parent() {
                    Some(parent) => existing = parent,
                    None => return Err(refused("path", "must stay inside repos_dir")),
                },
                Err(err) => {
                    return Err(GitError::io(format!("resolve {}", existing.display()))(err))
                }
            }
        }
    }
}

/// One path component that is a plain name: not empty, `.`, `..`, absolute, option-like or
/// holding a separator.
pub(crate) fn component<'a>(what: &str, text: &'a str) -> Result<&'a str, GitError> {
    let mut components = Path::new(text).components();
    let plain = matches!(components.next(), Some(Component::Normal(name)) if name == text)
        && components.next().is_none();
    if !plain || text.starts_with('-') || text.contains(['/', '\\', '\0']) {
        return Err(refused(what, "must be a plain file name"));
    }
    Ok(text)
}

/// Re-checks a branch name before git sees it: never option-like, never a path escape.
pub(crate) fn branch(text: &str) -> Result<&str, GitError> {
    if text.is_empty() || text.starts_with('-') {
        return Err(refused(
            "branch name",
            "must not be empty or start with '-'",
        ));
    }
    if text.contains("..") || text.starts_with('/') || text.contains(['\\', '\0', ' ']) {
        return Err(refused(
            "branch name",
            "must not contain '..', '\\' or spaces, or start with '/'",
        ));
    }
    Ok(text)
}

/// Writes `text` to a file at `path` that must not exist yet (never through a link left in its
/// place), flushed: tokio writes in the background, and a git started next must not read it
/// half-written.
pub(crate) async fn write_new_file(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, text).await?;
    tokio::io::AsyncWriteExt::flush(&mut file).await
}

fn is_plain_relative(path: &Path) -> bool {
    path.components()
        .all(|component| matches!(component, Component::Normal(_)))
}

fn refused(what: &str, reason: &'static str) -> GitError {
    GitError::Refused {
        what: what.to_owned(),
        reason,
    }
}
