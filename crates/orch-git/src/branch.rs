//! The task branch: creating, following and pushing it, its head, lease and merge with the base.

use std::path::Path;

use orch_core::ids::CommitSha;
use orch_core::ports::WorktreeSpec;

use crate::command::{git_args, Network, Worktree};
use crate::error::GitError;
use crate::{paths, refs, GitWorkspace};

impl GitWorkspace {
    /// Creates the task branch if missing: from the remote task branch if orch pushed it before
    /// (a lost `repos_dir` must not lose pushed work), else from the remote base.
    pub(crate) async fn ensure_branch(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let local = format!("refs/heads/{branch}");
        if self.resolve(mirror, &local).await?.is_some() {
            return Ok(());
        }
        let remote_branch = self
            .resolve(mirror, &format!("refs/remotes/origin/{branch}"))
            .await?;
        if let Some(sha) = &remote_branch {
            // The branch exists remotely (a lost repos_dir, a reinstall): resume from it.
            self.set_lease(mirror, branch, sha).await?;
        }
        let start = match remote_branch {
            Some(sha) => sha,
            None => self
                .resolve(mirror, &format!("refs/remotes/origin/{base}"))
                .await?
                .ok_or_else(|| {
                    GitError::NotFound(format!("base branch {base} not found on the remote"))
                })?,
        };
        // Written in process, under git's lock-file protocol, only if the branch still does not
        // exist; anything unusual goes to update-ref, whose empty old value likewise refuses to
        // overwrite a branch that appeared meanwhile.
        if refs::write(mirror, &local, &start, refs::Expect::Missing).await == refs::Written::Done {
            tracing::info!(branch = %branch, start = %start.short(), "task branch created");
            return Ok(());
        }
        self.git
            .run(
                mirror,
                &git_args!["update-ref", "--no-deref", local, start.as_str(), ""],
                Network::Local,
            )
            .await?;
        tracing::info!(branch = %branch, start = %start.short(), "task branch created");
        Ok(())
    }

    /// Fast-forwards the task branch (and its worktree) to the remote branch when someone
    /// pushed commits on top of orch's, so the next agent builds on them and orch's forced
    /// push never drops them. A branch that diverged is left as it is, with a warning.
    pub(crate) async fn follow_remote_branch(
        &self,
        mirror: &Path,
        worktree: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let remote = format!("refs/remotes/origin/{branch}");
        let (Some(local), Some(theirs)) = (
            self.resolve(mirror, &format!("refs/heads/{branch}"))
                .await?,
            self.resolve(mirror, &remote).await?,
        ) else {
            return Ok(());
        };
        if local == theirs {
            return Ok(());
        }
        let ancestor = self
            .git
            .output(
                mirror,
                &git_args![
                    "merge-base",
                    "--is-ancestor",
                    local.as_str(),
                    theirs.as_str()
                ],
                Network::Local,
            )
            .await?;
        if !ancestor.success() {
            tracing::debug!(branch = %branch, "the task branch is ahead of or diverged from the remote; keeping it");
            return Ok(());
        }
        let admin = self.layout.worktree_admin(&spec.repo, &spec.work_item)?;
        let dirs = Worktree {
            work_tree: worktree,
            git_dir: &admin,
            common_dir: mirror,
        };
        let merged = self
            .git
            .output_in(
                &dirs,
                &git_args!["merge", "--ff-only", "--quiet", remote],
                Network::Local,
            )
            .await?;
        if merged.success() {
            self.set_lease(mirror, branch, &theirs).await?;
            tracing::info!(branch = %branch, from = %local.short(), to = %theirs.short(), "task branch fast-forwarded to commits pushed by someone else");
        } else {
            tracing::warn!(branch = %branch, "the task branch could not follow the remote (uncommitted changes?); keeping it");
        }
        Ok(())
    }

    async fn set_lease(
        &self,
        mirror: &Path,
        branch: &str,
        sha: &CommitSha,
    ) -> Result<(), GitError> {
        self.git
            .run(
                mirror,
                &git_args!["update-ref", lease_ref(branch), sha.as_str()],
                Network::Local,
            )
            .await
            .map(drop)
    }

    /// `adopt_agent_branch` in the task branch's turn, under the shared mirror lock: it moves
    /// only the task branch.
    pub(crate) async fn adopt_agent_branch_locked(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let turn = state.branch_turn(branch);
        let _turn = turn.lock().await;
        let _shared = state.lock.read().await;
        self.adopt_agent_branch(mirror, spec).await
    }

    pub(crate) async fn branch_head(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<CommitSha, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        self.resolve(mirror, &format!("refs/heads/{branch}"))
            .await?
            .ok_or_else(|| GitError::NotFound(format!("branch {branch} does not exist")))
    }

    pub(crate) async fn do_commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, GitError> {
        let mirror = self.existing_mirror(spec).await?;
        self.adopt_agent_branch_locked(&mirror, spec).await?;
        let branch = paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        self.branch_head(&mirror, spec).await?;
        if self
            .resolve(&mirror, &format!("refs/remotes/origin/{base}"))
            .await?
            .is_none()
        {
            return Err(GitError::NotFound(format!(
                "base branch {base} not found on the remote"
            )));
        }
        let range = format!("refs/remotes/origin/{base}..refs/heads/{branch}");
        let output = self
            .git
            .run(
                &mirror,
                &git_args!["rev-list", "--count", range],
                Network::Local,
            )
            .await?;
        output
            .trim()
            .parse::<u32>()
            .map_err(|_| GitError::Unexpected {
                command: "rev-list",
                output: output.trim().to_owned(),
            })
    }

    /// Fetches the base and the task branch, then asks `git merge-tree --write-tree` (git >=
    /// 2.38) whether `head` merges into the remote base: exit 0 clean, 1 conflicts. It writes
    /// only objects, never a ref or a worktree. The fetch holds no mirror lock; the check
    /// runs under the shared one.
    pub(crate) async fn do_merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, GitError> {
        paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let mirror = self.network_mirror(&state, &spec.repo).await?;
        self.fetch(&state, &mirror, spec).await?;
        let _shared = state.lock.read().await;
        let base_ref = format!("refs/remotes/origin/{base}");
        let base_sha = self.resolve(&mirror, &base_ref).await?.ok_or_else(|| {
            GitError::NotFound(format!("base branch {base} not found on the remote"))
        })?;
        if self.resolve(&mirror, head.as_str()).await?.is_none() {
            return Err(GitError::NotFound(format!(
                "commit {} is not in the mirror",
                head.short()
            )));
        }
        let args = git_args![
            "merge-tree",
            "--write-tree",
            "--no-messages",
            "--name-only",
            base_sha.as_str(),
            head.as_str()
        ];
        let output = self.git.output(&mirror, &args, Network::Local).await?;
        match output.code {
            Some(0) => Ok(true),
            Some(1) => {
                tracing::info!(base = %base, head = %head.short(), "the head conflicts with the base");
                Ok(false)
            }
            _ => Err(self.git.failure(&args, &output)),
        }
    }

    /// Pushes in the task branch's turn (its head, lease and seed stay put) and the
    /// `remote_refs` turn (the push moves the branch's remote-tracking ref), without the mirror
    /// lock: prepares of other branches go on during its network time.
    pub(crate) async fn do_push(&self, spec: &WorktreeSpec) -> Result<CommitSha, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let turn = state.branch_turn(branch);
        let _turn = turn.lock().await;
        let mirror = self.network_mirror(&state, &spec.repo).await?;
        let (sha, expected) = {
            let _shared = state.lock.read().await;
            self.adopt_agent_branch(&mirror, spec).await?;
            // Push the sha read here, so the sha returned is exactly the one pushed even if
            // an agent commits meanwhile.
            let sha = self.branch_head(&mirror, spec).await?;
            // Forced, but only over what orch pushed or accepted last: commits someone else
            // pushed meanwhile make the push fail instead of vanishing.
            (sha, self.resolve(&mirror, &lease_ref(branch)).await?)
        };
        let refspec = format!("{}:refs/heads/{branch}", sha.as_str());
        let lease = format!(
            "--force-with-lease=refs/heads/{branch}:{}",
            expected.as_ref().map_or("", CommitSha::as_str)
        );
        // Recorded before pushing: the forge's push webhook may arrive before git returns, and
        // a head orch pushed itself is no news for the mirror.
        state
            .freshness()
            .pushed
            .insert(branch.to_owned(), sha.clone());
        {
            let _remote_refs = state.remote_refs.lock().await;
            self.git
                .run(
                    &mirror,
                    &git_args!["push", "--quiet", "--no-verify", lease, "origin", refspec],
                    Network::Remote,
                )
                .await?;
        }
        let _shared = state.lock.read().await;
        self.set_lease(&mirror, branch, &sha).await?;
        tracing::info!(branch = %branch, sha = %sha.short(), "branch pushed");
        Ok(sha)
    }
}

/// The ref where orch keeps the last task-branch head it pushed or accepted: the lease a
/// push must find on the remote.
fn lease_ref(branch: &str) -> String {
    format!("refs/orch/pushed/{branch}")
}
