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
        // The next stage's usual case: the worktree is whole, on its branch. Only this
        // item's prepares (in its branch's turn) write its directories, so checking needs no
        // turn: a burst's next stages do not queue behind one another's registrations.
        let wanted = format!("refs/heads/{branch}");
        if in_place(&worktree, &admin, &wanted).await {
            return Ok(worktree);
        }
        let state = self.mirror_state(&spec.repo);
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
            // A repair in the turn: `git switch` reads every sibling's registration.
            let _turn = state.worktrees.lock().await;
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
        // process more. Written without the turn, beside other prepares: the only `git
        // worktree prune` orch runs is a removal's, under the exclusive mirror lock, never
        // beside a prepare (which holds it shared), and git reads a sibling whose `gitdir`
        // link is not written yet as no worktree at all (`repair_links` writes it after
        // `HEAD`). Only an adoption takes the turn, against the pool's sweep. An admin
        // directory that is there has its index only once the checkout finished (above).
        // Each step's file work is one blocking call, not one hop per file.
        clear_worktree_dirs(&worktree, &admin).await?;
        let base = paths::branch(spec.base_branch.as_str())?;
        // A new task branch at the base head: a pool entry checked out there is the worktree.
        if let Some(head) = self
            .resolve(mirror, &format!("refs/heads/{branch}"))
            .await?
        {
            let adopted = self.pool(&spec.repo).has(base, &head) && {
                let _turn = state.worktrees.lock().await;
                self.adopt_pooled(&dirs, &spec.repo, base, branch, &head)
                    .await
            };
            if adopted {
                self.refill_pool(&spec.repo, Some(base));
                return Ok(worktree);
            }
        }
        let head = format!("ref: refs/heads/{branch}\n");
        let (work_tree, git_dir) = (worktree.clone(), admin.clone());
        blocking(move || {
            std::fs::create_dir(&work_tree)?;
            std::fs::create_dir(&git_dir)?;
            std::fs::write(git_dir.join("HEAD"), head)?;
            repair_links_blocking(&work_tree, &git_dir)
        })
        .await
        .map_err(GitError::io("create the worktree"))?;
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
            self.fetch_all_since(state, &mirror, asked, news, &self.git)
                .await?;
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
        // The item is over: what orch pushed on its branch is forgotten, so the record stays
        // the size of the items in flight over months of running (a late webhook of that
        // push then costs at most one fetch).
        state.freshness().pushed.remove(spec.branch.as_str());
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

/// Removes what a broken or half-made worktree left, before it is made again, and makes the
/// directories its place is in.
async fn clear_worktree_dirs(worktree: &Path, admin: &Path) -> Result<(), GitError> {
    let (worktree, admin) = (worktree.to_owned(), admin.to_owned());
    blocking(move || {
        // An admin directory left by a broken registration would make git name the new one
        // differently.
        for dir in [&worktree, &admin] {
            match std::fs::remove_dir_all(dir) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        for parent in [worktree.parent(), admin.parent()].into_iter().flatten() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(())
    })
    .await
    .map_err(GitError::io("clear the place of a broken worktree"))
}

/// Runs blocking file work on tokio's blocking pool: one hop for many files.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(std::io::Error::other(err)))
}

/// Whether the worktree is whole and ready as it is for the branch `wanted`: checked out (its
/// index), its `HEAD` attached to `wanted`, its links as `repair_links` writes them, not
/// locked. Reads only, in one blocking call.
async fn in_place(worktree: &Path, admin: &Path, wanted: &str) -> bool {
    let (worktree, admin) = (worktree.to_owned(), admin.to_owned());
    let head = format!("ref: {wanted}\n");
    blocking(move || {
        let is_file = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
        Ok(is_file(&admin.join("index"))
            && std::fs::symlink_metadata(&worktree).is_ok_and(|m| m.is_dir())
            && is_file(&admin.join("HEAD"))
            && std::fs::read(admin.join("HEAD")).is_ok_and(|text| text == head.as_bytes())
            && std::fs::symlink_metadata(admin.join("locked"))
                .is_err_and(|err| err.kind() == std::io::ErrorKind::NotFound)
            && links(&worktree, &admin).iter().all(|(path, text)| {
                is_file(path) && std::fs::read(path).is_ok_and(|read| read == text.as_bytes())
            }))
    })
    .await
    .unwrap_or(false)
}

/// The files that tie a worktree to its admin directory and the mirror, with their text: the
/// worktree's `.git`, the admin directory's `gitdir` and `commondir`.
fn links(work_tree: &Path, git_dir: &Path) -> [(PathBuf, String); 3] {
    [
        (
            work_tree.join(".git"),
            format!("gitdir: {}\n", git_dir.display()),
        ),
        (
            git_dir.join("gitdir"),
            format!("{}\n", work_tree.join(".git").display()),
        ),
        (git_dir.join("commondir"), "../..\n".to_owned()),
    ]
}

/// Rewrites the files that tie a worktree to its admin directory and the mirror (`links`),
/// which an agent may have changed: orch's own git never reads them (`Worktree` names the
/// directories), but the agent's git and `git worktree` do. A link or directory in their
/// place is replaced, never written through; each is replaced whole (a rename), never seen
/// half-written.
pub(crate) async fn repair_links(dirs: &Worktree<'_>) -> Result<(), GitError> {
    let (work_tree, git_dir) = (dirs.work_tree.to_owned(), dirs.git_dir.to_owned());
    blocking(move || repair_links_blocking(&work_tree, &git_dir))
        .await
        .map_err(GitError::io("repair the worktree's links"))
}

/// `repair_links`, in a blocking call.
pub(crate) fn repair_links_blocking(work_tree: &Path, git_dir: &Path) -> std::io::Result<()> {
    for (path, text) in links(work_tree, git_dir) {
        let metadata = std::fs::symlink_metadata(&path);
        if metadata.as_ref().is_ok_and(std::fs::Metadata::is_file)
            && std::fs::read(&path).ok().as_deref() == Some(text.as_bytes())
        {
            continue;
        }
        if metadata.is_ok_and(|metadata| metadata.is_dir()) {
            std::fs::remove_dir_all(&path)?;
        }
        // Written beside and renamed over the link (a rename replaces a symbolic link, never
        // writes through it), so a `git worktree list` or `prune` running meanwhile never
        // reads half a file.
        let mut staged = path.clone().into_os_string();
        staged.push(".orch-new");
        let staged = PathBuf::from(staged);
        match std::fs::symlink_metadata(&staged) {
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&staged)?,
            Ok(_) => std::fs::remove_file(&staged)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        std::fs::rename(&staged, &path)?;
    }
    Ok(())
}
