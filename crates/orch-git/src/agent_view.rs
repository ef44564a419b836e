//! What a sandboxed agent sees of the mirror, and taking its commits back onto the task branch.
//!
//! An agent must be able to commit on its task branch, and must not change other tasks'
//! branches, orch's own refs (`refs/orch/…`), the mirror's config or its hooks. Git keeps a
//! worktree's HEAD and index in its admin directory (`{mirror}/worktrees/{item}`), new objects
//! in the mirror's object store, and every branch in the mirror's `refs/` and `packed-refs`,
//! beside the config. So at the mirror's path the sandbox shows a private directory,
//! `{repo}/agent-git/{item}`, written afresh by `prepare`: a copy of orch's mirror config, the
//! task branch alone under `refs/heads/`, the base and task branches as last fetched in
//! `packed-refs`, an empty `logs/`, and no hooks; the mirror's object store and the worktree's
//! admin directory are mounted inside it, writable. Branches, tags, config and hooks the agent
//! writes stay in its private copy.
//!
//! Before orch reads the task branch again, `adopt_agent_branch` moves it to where the agent
//! left its private copy: only when the agent moved it, only to a commit that is in the object
//! store, and only from the value orch gave the agent (kept in `refs/orch/agent/<branch>`).
//! Without a sandbox nothing mounts the copy, it never moves, and nothing is adopted.

use std::path::Path;

use orch_core::ids::CommitSha;
use orch_core::ports::{MountAccess, SandboxMount, WorktreeSpec};

use crate::command::{git_args, Network};
use crate::error::GitError;
use crate::mirror::mirror_config;
use crate::worktree::blocking;
use crate::{paths, refs, GitWorkspace};

/// The largest ref file read from an agent's copy.
const MAX_REF_BYTES: u64 = 4096;
/// The largest `packed-refs` read from an agent's copy.
const MAX_PACKED_REFS_BYTES: u64 = 16 * 1024 * 1024;

impl GitWorkspace {
    /// Writes the agent's copy of the mirror for `spec` afresh and returns what a sandbox must
    /// mount for the worktree to work. Call with the mirror lock held, after
    /// `adopt_agent_branch`, once the worktree exists.
    pub(crate) async fn seed_agent_view(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<Vec<SandboxMount>, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let view = self.layout.agent_git(&spec.repo, &spec.work_item)?;
        let admin = self.layout.worktree_admin(&spec.repo, &spec.work_item)?;
        self.layout.ensure_inside(&view).await?;
        let head = self.branch_head(mirror, spec).await?;
        let mut packed = String::new();
        for remote in [base, branch] {
            let refname = format!("refs/remotes/origin/{remote}");
            if let Some(sha) = self.resolve(mirror, &refname).await? {
                packed.push_str(&format!("{} {refname}\n", sha.as_str()));
            }
        }
        // Written afresh in one blocking call: the file work of a prepare is many small
        // operations, each a wait for a blocking thread on a busy machine when done one by one.
        let loose = view.join("refs").join("heads").join(branch);
        let dirs = [
            loose.parent().unwrap_or(&view).to_owned(),
            view.join("refs").join("tags"),
            view.join("logs"),
            view.join("objects"),
            view.join("worktrees").join(spec.work_item.to_string()),
        ];
        let files = [
            (
                view.join("config"),
                mirror_config(&self.remote_url(&spec.repo)),
            ),
            (view.join("HEAD"), format!("ref: refs/heads/{branch}\n")),
            (view.join("packed-refs"), packed),
            (loose, format!("{}\n", head.as_str())),
        ];
        let removed = view.clone();
        blocking(move || {
            match std::fs::remove_dir_all(&removed) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
            for dir in &dirs {
                std::fs::create_dir_all(dir)?;
            }
            for (path, text) in &files {
                std::fs::write(path, text)?;
            }
            Ok(())
        })
        .await
        .map_err(GitError::io("write the agent's git directory"))?;
        // Unchanged since the last prepare (the next stage of the same item): nothing to write;
        // else written in process, or by git when that cannot be.
        if self.resolve(mirror, &seed_ref(branch)).await?.as_ref() != Some(&head)
            && refs::write(mirror, &seed_ref(branch), &head, refs::Expect::Anything).await
                != refs::Written::Done
        {
            self.git
                .run(
                    mirror,
                    &git_args!["update-ref", seed_ref(branch), head.as_str()],
                    Network::Local,
                )
                .await?;
        }
        Ok(vec![
            SandboxMount {
                source: view,
                target: mirror.to_path_buf(),
                access: MountAccess::Writable,
            },
            SandboxMount {
                source: mirror.join("objects"),
                target: mirror.join("objects"),
                access: MountAccess::Writable,
            },
            SandboxMount {
                source: admin.clone(),
                target: admin,
                access: MountAccess::Writable,
            },
        ])
    }

    /// Moves the task branch to the commit the agent left on its private copy, when it moved
    /// that copy (see the module docs). Call with the mirror lock held.
    pub(crate) async fn adopt_agent_branch(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let view = self.layout.agent_git(&spec.repo, &spec.work_item)?;
        let Some(theirs) = agent_branch(&view, branch).await else {
            return Ok(());
        };
        let seeded = self.resolve(mirror, &seed_ref(branch)).await?;
        if seeded.as_ref() == Some(&theirs) {
            return Ok(());
        }
        if self.resolve(mirror, theirs.as_str()).await?.is_none() {
            tracing::warn!(branch = %branch, sha = %theirs.short(), "the agent's branch names no commit; keeping the task branch");
            return Ok(());
        }
        let expected = seeded.as_ref().map_or("", CommitSha::as_str);
        let moved = self
            .git
            .output(
                mirror,
                &git_args![
                    "update-ref",
                    "--no-deref",
                    format!("refs/heads/{branch}"),
                    theirs.as_str(),
                    expected
                ],
                Network::Local,
            )
            .await?;
        if moved.success() {
            tracing::info!(branch = %branch, sha = %theirs.short(), "agent's commits taken onto the task branch");
        } else {
            tracing::warn!(branch = %branch, "the task branch moved while the agent ran; keeping it");
        }
        self.git
            .run(
                mirror,
                &git_args!["update-ref", seed_ref(branch), theirs.as_str()],
                Network::Local,
            )
            .await
            .map(drop)
    }

    /// Removes the agent's copy of the mirror and orch's record of what it was given.
    pub(crate) async fn remove_agent_view(
        &self,
        mirror: Option<&Path>,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let view = self.layout.agent_git(&spec.repo, &spec.work_item)?;
        self.layout.ensure_inside(&view).await?;
        match tokio::fs::remove_dir_all(&view).await {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(GitError::io("remove the agent's git directory")(err)),
        }
        if let Some(mirror) = mirror {
            let branch = paths::branch(spec.branch.as_str())?;
            let args = git_args!["update-ref", "-d", seed_ref(branch)];
            let output = self.git.output(mirror, &args, Network::Local).await?;
            if !output.success() {
                tracing::debug!(code = ?output.code, "removing the agent's seed ref failed");
            }
        }
        Ok(())
    }
}

/// Where orch keeps the task-branch head it gave the agent's copy.
fn seed_ref(branch: &str) -> String {
    format!("refs/orch/agent/{branch}")
}

/// The commit the agent's copy says its task branch is at: the loose ref if there is one
/// (as git reads it), else the line in `packed-refs`. Everything in the copy was written by
/// the agent: symbolic links, oversized files and anything but a sha are ignored.
async fn agent_branch(view: &Path, branch: &str) -> Option<CommitSha> {
    let view = tokio::fs::canonicalize(view).await.ok()?;
    let loose = view.join("refs").join("heads").join(branch);
    if let Some(text) = read_plain_file(&view, &loose, MAX_REF_BYTES).await {
        return CommitSha::new(text.trim()).ok();
    }
    let packed = read_plain_file(&view, &view.join("packed-refs"), MAX_PACKED_REFS_BYTES).await?;
    let wanted = format!("refs/heads/{branch}");
    packed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .filter_map(|line| line.split_once(' '))
        .find(|(_, name)| name.trim() == wanted)
        .and_then(|(sha, _)| CommitSha::new(sha).ok())
}

/// The text of `path` when it is a regular file (not a link) inside `root`, no larger than `max`.
async fn read_plain_file(root: &Path, path: &Path, max: u64) -> Option<String> {
    let metadata = tokio::fs::symlink_metadata(path).await.ok()?;
    if !metadata.is_file() || metadata.len() > max {
        return None;
    }
    let resolved = tokio::fs::canonicalize(path).await.ok()?;
    if !resolved.starts_with(root) {
        return None;
    }
    let bytes = tokio::fs::read(&resolved).await.ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests;
