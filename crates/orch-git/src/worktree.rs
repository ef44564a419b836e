//! `prepare` and a work item's worktree: making, repairing and removing it, committing leftovers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::domain::Agent;
use orch_core::ids::CommitSha;
use orch_core::ports::{PreparedWorktree, SandboxMount, WorktreeSpec};

use crate::command::{git_args, Git, Network, Worktree};
use crate::error::GitError;
use crate::mirror::{parse_sha, MirrorState};
use crate::{paths, pool, refs, GitWorkspace};

impl GitWorkspace {
    async fn ensure_worktree(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<PathBuf, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let worktree = self.layout.worktree(&spec.repo, &spec.work_item)?;
        let admin = self.layout.worktree_admin(&spec.repo, &spec.work_item)?;
        self.layout.ensure_inside(&worktree).await?;
        let state = self.mirror_state(&spec.repo);
        let turn = state.worktrees.lock().await;
        let dirs = Worktree {
            work_tree: &worktree,
            git_dir: &admin,
            common_dir: mirror,
        };
        // Without an index the checkout never finished (a crash while making it): anew.
        let checked_out = tokio::fs::try_exists(admin.join("index"))
            .await
            .unwrap_or(false);
        if checked_out && is_registered(&dirs).await {
            let wanted = format!("refs/heads/{branch}");
            let head = match refs::head_is(&admin, &wanted).await {
                Some(true) => Ok(Some(wanted)),
                _ => self.current_branch(&dirs).await,
            };
            match head {
                Ok(Some(head)) if head == format!("refs/heads/{branch}") => {
                    repair_links(&dirs).await?;
                    // A pool entry whose adoption a crash cut short is still locked.
                    pool::unlock(&admin).await?;
                    return Ok(worktree);
                }
                Ok(_) => {
                    // An agent left it on another branch or detached: put it back.
                    self.git
                        .run_in(
                            &dirs,
                            &git_args!["switch", "--quiet", branch],
                            Network::Local,
                        )
                        .await?;
                    repair_links(&dirs).await?;
                    pool::unlock(&admin).await?;
                    return Ok(worktree);
                }
                // Not a working git checkout any more (its mirror was lost): make it anew.
                Err(err) => tracing::warn!(error = %err, "broken worktree replaced"),
            }
        }
        // What `git worktree add` writes, written here: `worktree add` reads every sibling's
        // admin directory (so adds of one repository would have to take turns) and costs a
        // process more. The registration is complete before the turn ends, so a `worktree
        // prune` never takes it for a broken one; the checkout then runs beside other
        // prepares. An admin directory that is there has its index only once the checkout
        // finished (above).
        self.clear_worktree_dirs(&worktree, &admin).await?;
        let base = paths::branch(spec.base_branch.as_str())?;
        // A new task branch at the base head: a pool entry checked out there is the worktree.
        if let Some(head) = self
            .resolve(mirror, &format!("refs/heads/{branch}"))
            .await?
        {
            if self
                .adopt_pooled(&dirs, &spec.repo, base, branch, &head)
                .await
            {
                drop(turn);
                self.refill_pool(&spec.repo, Some(base));
                return Ok(worktree);
            }
        }
        for dir in [&worktree, &admin] {
            tokio::fs::create_dir(dir)
                .await
                .map_err(GitError::io("create the worktree"))?;
        }
        tokio::fs::write(admin.join("HEAD"), format!("ref: refs/heads/{branch}\n"))
            .await
            .map_err(GitError::io("create the worktree"))?;
        repair_links(&dirs).await?;
        drop(turn);
        check_out(&self.git, &dirs).await?;
        if !is_registered(&dirs).await {
            return Err(GitError::Unexpected {
                command: "worktree",
                output: format!("no admin directory worktrees/{}", spec.work_item),
            });
        }
        tracing::info!(branch = %branch, "worktree added");
        self.refill_pool(&spec.repo, Some(base));
        Ok(worktree)
    }

    /// Removes what a broken or half-made worktree left, before it is made again.
    async fn clear_worktree_dirs(&self, worktree: &Path, admin: &Path) -> Result<(), GitError> {
        for (dir, what) in [
            (worktree, "remove a broken worktree"),
            // An admin directory left by a broken registration would make git name the new
            // one differently.
            (admin, "remove a stale worktree registration"),
        ] {
            if tokio::fs::try_exists(dir).await.unwrap_or(false) {
                tokio::fs::remove_dir_all(dir)
                    .await
                    .map_err(GitError::io(what))?;
            }
        }
        for parent in [worktree.parent(), admin.parent()].into_iter().flatten() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(GitError::io("create the worktrees directory"))?;
        }
        Ok(())
    }

    /// The ref the worktree's HEAD is attached to; `None` when detached.
    async fn current_branch(&self, dirs: &Worktree<'_>) -> Result<Option<String>, GitError> {
        let args = git_args!["symbolic-ref", "--quiet", "HEAD"];
        let output = self.git.output_in(dirs, &args, Network::Local).await?;
        match output.code {
            Some(0) => Ok(Some(output.stdout.trim().to_owned())),
            Some(1) => Ok(None),
            _ => Err(self.git.failure(&args, &output)),
        }
    }

    /// The worktree of `spec` and its admin directory, which must exist.
    async fn existing_worktree(&self, spec: &WorktreeSpec) -> Result<(PathBuf, PathBuf), GitError> {
        let worktree = self.layout.worktree(&spec.repo, &spec.work_item)?;
        let admin = self.layout.worktree_admin(&spec.repo, &spec.work_item)?;
        self.layout.ensure_inside(&worktree).await?;
        let registered = tokio::fs::try_exists(admin.join("HEAD"))
            .await
            .unwrap_or(false)
            && tokio::fs::metadata(&worktree)
                .await
                .is_ok_and(|metadata| metadata.is_dir());
        if !registered {
            return Err(GitError::NotFound(format!(
                "no worktree for {}",
                spec.work_item
            )));
        }
        Ok((worktree, admin))
    }

    pub(crate) async fn do_prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        paths::branch(spec.base_branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let turn = state.branch_turn(branch);
        let branch_turn = turn.lock().await;
        let (worktree, mounts) = match self.warm {
            None => {
                let _guard = state.lock.write().await;
                let mirror = self.ensure_mirror(&spec.repo).await?;
                self.adopt_agent_branch(&mirror, spec).await?;
                self.fetch(&state, &mirror, spec).await?;
                self.set_up_branch(&mirror, spec).await?
            }
            Some(max_age) => self.prepare_warm(&state, spec, max_age).await?,
        };
        drop(branch_turn);
        self.exclude_output_dir(&spec.repo, &spec.work_item).await?;
        let output_dir = self.fresh_output_dir(spec, &worktree, agent).await?;
        let kept = self
            .layout
            .kept_outputs(&spec.repo, &spec.work_item, agent)?;
        self.layout.ensure_inside(&kept).await?;
        if tokio::fs::try_exists(&kept).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&kept)
                .await
                .map_err(GitError::io("forget the earlier outputs"))?;
        }
        let analysis_file = match agent {
            Agent::Analyst => None,
            Agent::Developer | Agent::Reviewer => self
                .keep_output(spec, Agent::Analyst, "analysis.md")
                .await?
                .map(|(path, _)| path),
        };
        Ok(PreparedWorktree {
            path: worktree,
            output_dir,
            analysis_file,
            mounts,
        })
    }

    /// The task branch, its worktree (following commits someone pushed on it) and the
    /// agent's view of the mirror. Call with the mirror lock held, after fetching if needed.
    async fn set_up_branch(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(PathBuf, Vec<SandboxMount>), GitError> {
        self.ensure_branch(mirror, spec).await?;
        let worktree = self.ensure_worktree(mirror, spec).await?;
        self.follow_remote_branch(mirror, &worktree, spec).await?;
        let mounts = self.seed_agent_view(mirror, spec).await?;
        Ok((worktree, mounts))
    }

    /// `prepare` in warm mode, in the task branch's turn: from the mirror as it is, under
    /// the shared lock, unless a ref it needs may be missing (`Freshness`: the forge named the
    /// task branch, the mirror lacks the base or was not fetched since start); then after one
    /// fetch of every branch outside the lock, coalesced with the fetch in flight. An aged
    /// mirror is refreshed in the background; this prepare does not wait for it.
    async fn prepare_warm(
        &self,
        state: &MirrorState,
        spec: &WorktreeSpec,
        max_age: Duration,
    ) -> Result<(PathBuf, Vec<SandboxMount>), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let mut fetched = false;
        loop {
            let asked = Self::fetches_started(state);
            // Whether the task branch's news is what makes it fetch, so that a fetch started
            // after that news serves it; `false` (the mirror is missing, its config is not
            // orch's, it lacks the base) fetches regardless.
            let mut branch_news = false;
            {
                let _shared = state.lock.read().await;
                if let Some(mirror) = self.usable_mirror(&spec.repo).await? {
                    let base_known = self
                        .resolve(&mirror, &format!("refs/remotes/origin/{base}"))
                        .await?
                        .is_some();
                    if fetched || (base_known && !state.must_fetch_for(branch)) {
                        if !fetched && state.is_aged(max_age) {
                            self.refresh_in_background(&spec.repo);
                        }
                        self.adopt_agent_branch(&mirror, spec).await?;
                        return self.set_up_branch(&mirror, spec).await;
                    }
                    branch_news = base_known;
                }
            }
            let mirror = self.network_mirror(state, &spec.repo).await?;
            let news = branch_news.then_some(branch);
            self.fetch_all_since(state, &mirror, asked, news).await?;
            fetched = true;
        }
    }

    pub(crate) async fn do_commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        message: &str,
    ) -> Result<Option<CommitSha>, GitError> {
        let mirror = self.existing_mirror(spec).await?;
        let (worktree, admin) = self.existing_worktree(spec).await?;
        self.adopt_agent_branch_locked(&mirror, spec).await?;
        let dirs = Worktree {
            work_tree: &worktree,
            git_dir: &admin,
            common_dir: &mirror,
        };
        let expected = format!("refs/heads/{}", paths::branch(spec.branch.as_str())?);
        let head = self.current_branch(&dirs).await?;
        if head.as_deref() != Some(expected.as_str()) {
            return Err(GitError::WrongBranch {
                expected,
                found: head.unwrap_or_else(|| "a detached HEAD".to_owned()),
            });
        }
        self.git
            .run_in(&dirs, &git_args!["add", "--all"], Network::Local)
            .await?;
        let args = git_args!["diff", "--cached", "--quiet"];
        let diff = self.git.output_in(&dirs, &args, Network::Local).await?;
        match diff.code {
            Some(0) => return Ok(None),
            Some(1) => {}
            _ => return Err(self.git.failure(&args, &diff)),
        }
        self.git
            .run_in(
                &dirs,
                &git_args![
                    "commit",
                    "--quiet",
                    "--no-verify",
                    "--no-edit",
                    format!("--message={message}")
                ],
                Network::Local,
            )
            .await?;
        let head = self
            .git
            .run_in(&dirs, &git_args!["rev-parse", "HEAD"], Network::Local)
            .await?;
        let sha = parse_sha(&head, "rev-parse")?;
        tracing::info!(sha = %sha.short(), "leftovers committed");
        Ok(Some(sha))
    }

    pub(crate) async fn do_remove(&self, spec: &WorktreeSpec) -> Result<(), GitError> {
        let worktree = self.layout.worktree(&spec.repo, &spec.work_item)?;
        let outputs = self.layout.outputs(&spec.repo, &spec.work_item)?;
        self.layout.ensure_inside(&worktree).await?;
        self.layout.ensure_inside(&outputs).await?;
        let mirror = self.layout.mirror(&spec.repo)?;
        let state = self.mirror_state(&spec.repo);
        let _guard = state.lock.write().await;
        let has_mirror = tokio::fs::try_exists(mirror.join("HEAD"))
            .await
            .unwrap_or(false);
        let admin = self.layout.worktree_admin(&spec.repo, &spec.work_item)?;
        let dirs = Worktree {
            work_tree: &worktree,
            git_dir: &admin,
            common_dir: &mirror,
        };
        if has_mirror && is_registered(&dirs).await {
            // The links name the registration `worktree remove` looks for; an agent may have
            // changed them.
            repair_links(&dirs).await?;
            let args = git_args!["worktree", "remove", "--force", "--force", worktree];
            let output = self.git.output(&mirror, &args, Network::Local).await?;
            if !output.success() {
                // Not a registered worktree after all: the directory is removed below.
                tracing::debug!(code = ?output.code, "git worktree remove failed");
            }
        }
        for dir in [&worktree, &outputs] {
            match tokio::fs::remove_dir_all(dir).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(GitError::io(format!("remove {}", dir.display()))(err)),
            }
        }
        if has_mirror {
            self.git
                .run(&mirror, &git_args!["worktree", "prune"], Network::Local)
                .await?;
        }
        self.remove_agent_view(has_mirror.then_some(mirror.as_path()), spec)
            .await?;
        tracing::info!("worktree removed");
        Ok(())
    }
}

/// Checks out the commit a newly registered worktree's `HEAD` names, writing its index: the
/// one git process of making a worktree.
pub(crate) async fn check_out(git: &Git, dirs: &Worktree<'_>) -> Result<(), GitError> {
    git.run_in(
        dirs,
        &git_args!["reset", "--hard", "--quiet", "--no-recurse-submodules"],
        Network::Local,
    )
    .await
    .map(drop)
}

/// Whether the worktree is a registered checkout: its directory and its admin directory exist.
async fn is_registered(dirs: &Worktree<'_>) -> bool {
    tokio::fs::try_exists(dirs.git_dir.join("HEAD"))
        .await
        .unwrap_or(false)
        && tokio::fs::metadata(dirs.work_tree)
            .await
            .is_ok_and(|metadata| metadata.is_dir())
}

/// Rewrites the files that tie a worktree to its admin directory and the mirror (the
/// worktree's `.git`, the admin directory's `gitdir` and `commondir`), which an agent may have
/// changed: orch's own git never reads them (`Worktree` names the directories), but the
/// agent's git and `git worktree` do. A link or directory in their place is replaced, never
/// written through; each is replaced whole (a rename), never seen half-written.
pub(crate) async fn repair_links(dirs: &Worktree<'_>) -> Result<(), GitError> {
    let links = [
        (
            dirs.work_tree.join(".git"),
            format!("gitdir: {}\n", dirs.git_dir.display()),
        ),
        (
            dirs.git_dir.join("gitdir"),
            format!("{}\n", dirs.work_tree.join(".git").display()),
        ),
        (dirs.git_dir.join("commondir"), "../..\n".to_owned()),
    ];
    for (path, text) in links {
        let metadata = tokio::fs::symlink_metadata(&path).await;
        if metadata.as_ref().is_ok_and(std::fs::Metadata::is_file)
            && tokio::fs::read(&path).await.ok().as_deref() == Some(text.as_bytes())
        {
            continue;
        }
        if metadata.is_ok_and(|metadata| metadata.is_dir()) {
            tokio::fs::remove_dir_all(&path)
                .await
                .map_err(GitError::io("repair the worktree's links"))?;
        }
        // Written beside and renamed over the link (a rename replaces a symbolic link, never
        // writes through it), so a `git worktree list` or `prune` running meanwhile never
        // reads half a file.
        let mut staged = path.clone().into_os_string();
        staged.push(".orch-new");
        let staged = PathBuf::from(staged);
        match tokio::fs::symlink_metadata(&staged).await {
            Ok(metadata) if metadata.is_dir() => tokio::fs::remove_dir_all(&staged).await,
            Ok(_) => tokio::fs::remove_file(&staged).await,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
        .map_err(GitError::io("repair the worktree's links"))?;
        paths::write_new_file(&staged, text.as_bytes())
            .await
            .map_err(GitError::io("repair the worktree's links"))?;
        tokio::fs::rename(&staged, &path)
            .await
            .map_err(GitError::io("repair the worktree's links"))?;
    }
    Ok(())
}
