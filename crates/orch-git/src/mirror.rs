//! A repository's bare mirror: its lock and freshness, orch's config, fetches and ref lookups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orch_core::ids::{CommitSha, RepoSlug};
use orch_core::ports::WorktreeSpec;

use crate::command::{git_args, Network};
use crate::error::GitError;
use crate::{paths, refs, GitWorkspace};

/// What `GitWorkspace` knows about one mirror.
#[derive(Default)]
pub(crate) struct MirrorState {
    pub(crate) lock: tokio::sync::RwLock<()>,
    /// Writing a worktree's registration, switching a worktree's branch and `git worktree
    /// prune` (which would take a half-written registration for a broken one) take turns even
    /// under the shared lock; a new worktree's checkout runs after its turn.
    pub(crate) worktrees: tokio::sync::Mutex<()>,
    freshness: Mutex<Freshness>,
}

#[derive(Default)]
pub(crate) struct Freshness {
    /// How many times the forge named the repository (`remote_changed`).
    changes: u64,
    /// `changes` as it was when the last complete fetch of every branch started, and when.
    fetched: Option<(u64, Instant)>,
    /// The head orch itself pushed last, by task branch: a push webhook for it is no news.
    pub(crate) pushed: HashMap<String, CommitSha>,
}

impl MirrorState {
    pub(crate) fn freshness(&self) -> std::sync::MutexGuard<'_, Freshness> {
        self.freshness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the mirror holds everything the forge had `max_age` ago and since its last
    /// `remote_changed`.
    pub(crate) fn is_fresh(&self, max_age: Duration) -> bool {
        let freshness = self.freshness();
        freshness
            .fetched
            .is_some_and(|(changes, at)| changes == freshness.changes && at.elapsed() < max_age)
    }

    /// Records that the forge's `branch` is now `head`; whether that is news (not orch's own
    /// last push there).
    pub(crate) fn changed(&self, branch: &str, head: &CommitSha) -> bool {
        let mut freshness = self.freshness();
        if freshness.pushed.get(branch) == Some(head) {
            return false;
        }
        freshness.changes = freshness.changes.wrapping_add(1);
        true
    }
}

impl GitWorkspace {
    pub(crate) fn mirror_state(&self, repo: &RepoSlug) -> Arc<MirrorState> {
        let mut mirrors = self
            .mirrors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        mirrors.entry(repo.clone()).or_default().clone()
    }

    /// Fetches every branch of the forge into the mirror and records it fresh as of the
    /// moment the fetch started. Call with the mirror lock held exclusively.
    pub(crate) async fn fetch_all(
        &self,
        state: &MirrorState,
        mirror: &Path,
    ) -> Result<(), GitError> {
        let changes = state.freshness().changes;
        let started = Instant::now();
        self.fetch_refspecs(mirror, &["+refs/heads/*:refs/remotes/origin/*".to_owned()])
            .await?;
        state.freshness().fetched = Some((changes, started));
        Ok(())
    }

    /// The mirror of `spec.repo` when it can serve a prepare without the network: it exists,
    /// its config is orch's own and the base branch is in it. Shared lock suffices.
    pub(crate) async fn ready_mirror(
        &self,
        spec: &WorktreeSpec,
    ) -> Result<Option<PathBuf>, GitError> {
        let mirror = self.layout.mirror(&spec.repo)?;
        self.layout.ensure_inside(&mirror).await?;
        if !tokio::fs::try_exists(mirror.join("HEAD"))
            .await
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let config = tokio::fs::read(mirror.join("config")).await.ok();
        if config.as_deref() != Some(mirror_config(&self.remote_url(&spec.repo)).as_bytes()) {
            return Ok(None);
        }
        let base = paths::branch(spec.base_branch.as_str())?;
        Ok(self
            .resolve(&mirror, &format!("refs/remotes/origin/{base}"))
            .await?
            .map(|_| mirror))
    }

    /// `Workspace::refresh`: a full fetch under the exclusive lock.
    pub(crate) async fn do_refresh(&self, repo: &RepoSlug) -> Result<(), GitError> {
        let state = self.mirror_state(repo);
        let _guard = state.lock.write().await;
        let mirror = self.ensure_mirror(repo).await?;
        self.fetch_all(&state, &mirror).await?;
        tracing::debug!(repo = %repo, "mirror refreshed");
        // The base head may have moved: the pool's entries are made again at the new one.
        self.refill_pool(repo, None);
        Ok(())
    }

    /// Creates the bare mirror if missing (atomically: built beside it, then renamed), keeps
    /// its remote URL current, and returns its path. Call with the mirror lock held.
    pub(crate) async fn ensure_mirror(&self, repo: &RepoSlug) -> Result<PathBuf, GitError> {
        let repo_dir = self.layout.repo_dir(repo)?;
        let mirror = self.layout.mirror(repo)?;
        let url = self.remote_url(repo);
        tokio::fs::create_dir_all(&repo_dir)
            .await
            .map_err(GitError::io("create repository directory"))?;
        self.layout.ensure_inside(&mirror).await?;
        if tokio::fs::try_exists(mirror.join("HEAD"))
            .await
            .unwrap_or(false)
        {
            write_mirror_config(&mirror, &url).await?;
            return Ok(mirror);
        }
        let staging = repo_dir.join("mirror.git.new");
        if tokio::fs::try_exists(&staging).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&staging)
                .await
                .map_err(GitError::io("remove a half-made mirror"))?;
        }
        self.git
            .run(
                &repo_dir,
                &git_args!["init", "--bare", "--quiet", staging],
                Network::Local,
            )
            .await?;
        write_mirror_config(&staging, &url).await?;
        tokio::fs::rename(&staging, &mirror)
            .await
            .map_err(GitError::io("move the new mirror in place"))?;
        tracing::info!(repo = %repo, "mirror created");
        Ok(mirror)
    }

    /// Fetches the base branch and the task branch only: a repository with hundreds of task
    /// branches costs no more to prepare than one with a few. The task branch's refspec is a
    /// pattern, so a branch not pushed yet is no error.
    pub(crate) async fn fetch(&self, mirror: &Path, spec: &WorktreeSpec) -> Result<(), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let base_refspec = format!("+refs/heads/{base}:refs/remotes/origin/{base}");
        let task_refspec = format!("+refs/heads/{branch}*:refs/remotes/origin/{branch}*");
        self.fetch_refspecs(mirror, &[base_refspec, task_refspec])
            .await
    }

    async fn fetch_refspecs(&self, mirror: &Path, refspecs: &[String]) -> Result<(), GitError> {
        let mut args = git_args!["fetch", "--prune", "--no-tags", "--quiet", "origin"].to_vec();
        args.extend(refspecs.iter().map(std::ffi::OsString::from));
        self.git.run(mirror, &args, Network::Remote).await.map(drop)
    }

    /// The commit `refname` points at, or `None` if it does not exist. A plain ref of the
    /// mirror is read from its files (`refs`), without a git process.
    pub(crate) async fn resolve(
        &self,
        mirror: &Path,
        refname: &str,
    ) -> Result<Option<CommitSha>, GitError> {
        match refs::read(mirror, refname).await {
            refs::RefValue::Points(sha) => return Ok(Some(sha)),
            refs::RefValue::Missing => return Ok(None),
            refs::RefValue::AskGit => {}
        }
        let args = git_args![
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            format!("{refname}^{{commit}}")
        ];
        let output = self.git.output(mirror, &args, Network::Local).await?;
        match output.code {
            Some(0) => parse_sha(&output.stdout, "rev-parse").map(Some),
            Some(1) => Ok(None),
            _ => Err(self.git.failure(&args, &output)),
        }
    }

    /// The mirror of `spec.repo`, which must exist.
    pub(crate) async fn existing_mirror(&self, spec: &WorktreeSpec) -> Result<PathBuf, GitError> {
        let mirror = self.layout.mirror(&spec.repo)?;
        self.layout.ensure_inside(&mirror).await?;
        if !tokio::fs::try_exists(mirror.join("HEAD"))
            .await
            .unwrap_or(false)
        {
            return Err(GitError::NotFound(format!("no mirror of {}", spec.repo)));
        }
        Ok(mirror)
    }
}

pub(crate) fn parse_sha(text: &str, command: &'static str) -> Result<CommitSha, GitError> {
    CommitSha::new(text.trim()).map_err(|_| GitError::Unexpected {
        command,
        output: text.trim().to_owned(),
    })
}

/// orch's whole mirror config. Worktrees share it and agents can write it (a `url.insteadOf`,
/// a proxy, an `uploadpack` command, an include), so it is rewritten from this template
/// under the mirror lock before every fetch and push.
pub(crate) async fn write_mirror_config(mirror: &Path, url: &str) -> Result<(), GitError> {
    tokio::fs::write(mirror.join("config"), mirror_config(url))
        .await
        .map_err(GitError::io("write the mirror's config"))
}

/// The text of orch's mirror config for the remote `url`.
fn mirror_config(url: &str) -> String {
    let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n\
         [remote \"origin\"]\n\turl = \"{quoted}\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
    )
}
