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

#![forbid(unsafe_code)]

mod agent_view;
mod command;
mod error;
mod paths;
mod refs;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orch_core::domain::Agent;
use orch_core::ids::{BranchName, CommitSha, RepoSlug, WorkItemId};
use orch_core::ports::{PreparedWorktree, SandboxMount, Workspace, WorkspaceError, WorktreeSpec};

use crate::command::{git_args, Git, Network, Worktree};
use crate::error::GitError;
use crate::paths::Layout;

/// The default deadline of one git process.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Where `GitWorkspace` keeps its repositories and how it reaches the forge.
#[derive(Clone)]
pub struct GitConfig {
    /// Everything lives under this directory; created if missing.
    pub repos_dir: PathBuf,
    /// The repository URL is `{remote_base}/{owner}/{name}.git`: `http(s)://…`, a local path or
    /// a `file://` URL. It must not carry credentials.
    pub remote_base: String,
    /// Sent as `Authorization: token …` on fetch and push, through git's config environment.
    pub token: Option<String>,
    /// The deadline of every git process; it is killed when the deadline passes.
    pub command_timeout: Duration,
    /// A PEM file of the CAs that git trusts on HTTPS (`http.sslCAInfo`, which replaces git's
    /// default bundle); `None` keeps git's default, the system's bundle.
    pub ca_file: Option<PathBuf>,
    /// `None` (the default): `prepare` fetches the base and task branch every time. `Some(age)`:
    /// the mirror is kept warm off the dispatch path (`Workspace::refresh`, called when the
    /// forge names the repository) and `prepare` fetches only when the mirror is stale: never
    /// fetched, fetched longer than `age` ago, named by `Workspace::remote_changed` since its
    /// last fetch, or missing the base branch. Fresh prepares share the mirror.
    pub warm: Option<Duration>,
}

impl GitConfig {
    /// A configuration without a token and with the default deadline.
    pub fn new(repos_dir: impl Into<PathBuf>, remote_base: impl Into<String>) -> GitConfig {
        GitConfig {
            repos_dir: repos_dir.into(),
            remote_base: remote_base.into(),
            token: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            ca_file: None,
            warm: None,
        }
    }
}

impl fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitConfig")
            .field("repos_dir", &self.repos_dir)
            .field("remote_base", &self.remote_base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("command_timeout", &self.command_timeout)
            .field("ca_file", &self.ca_file)
            .field("warm", &self.warm)
            .finish()
    }
}

/// The `Workspace` port implemented with the `git` command line.
pub struct GitWorkspace {
    layout: Layout,
    remote_base: String,
    git: Git,
    warm: Option<Duration>,
    /// One lock and freshness record per mirror. Fetches, config rewrites, pushes and removals
    /// hold the lock exclusively; a `prepare` from a fresh mirror (warm mode) shares it, since
    /// it touches only its own task branch, worktree and agent view.
    mirrors: Mutex<HashMap<RepoSlug, Arc<MirrorState>>>,
}

/// What `GitWorkspace` knows about one mirror.
#[derive(Default)]
struct MirrorState {
    lock: tokio::sync::RwLock<()>,
    /// Writing a worktree's registration, switching a worktree's branch and `git worktree
    /// prune` (which would take a half-written registration for a broken one) take turns even
    /// under the shared lock; a new worktree's checkout runs after its turn.
    worktrees: tokio::sync::Mutex<()>,
    freshness: Mutex<Freshness>,
}

#[derive(Default)]
struct Freshness {
    /// How many times the forge named the repository (`remote_changed`).
    changes: u64,
    /// `changes` as it was when the last complete fetch of every branch started, and when.
    fetched: Option<(u64, Instant)>,
    /// The head orch itself pushed last, by task branch: a push webhook for it is no news.
    pushed: HashMap<String, CommitSha>,
}

impl MirrorState {
    fn freshness(&self) -> std::sync::MutexGuard<'_, Freshness> {
        self.freshness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the mirror holds everything the forge had `max_age` ago and since its last
    /// `remote_changed`.
    fn is_fresh(&self, max_age: Duration) -> bool {
        let freshness = self.freshness();
        freshness
            .fetched
            .is_some_and(|(changes, at)| changes == freshness.changes && at.elapsed() < max_age)
    }

    /// Records that the forge's `branch` is now `head`; whether that is news (not orch's own
    /// last push there).
    fn changed(&self, branch: &str, head: &CommitSha) -> bool {
        let mut freshness = self.freshness();
        if freshness.pushed.get(branch) == Some(head) {
            return false;
        }
        freshness.changes = freshness.changes.wrapping_add(1);
        true
    }
}

impl fmt::Debug for GitWorkspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitWorkspace")
            .field("repos_dir", &self.layout.root())
            .field("remote_base", &self.remote_base)
            .finish_non_exhaustive()
    }
}

impl GitWorkspace {
    /// Creates `repos_dir` if missing and resolves it. A `remote_base` with credentials in it
    /// (`https://user:secret@host`) is refused: the token has its own setting.
    pub fn new(config: GitConfig) -> Result<GitWorkspace, WorkspaceError> {
        if remote_base_has_userinfo(&config.remote_base) {
            return Err(WorkspaceError::Invalid(
                "gitea.base_url: the remote url must not carry credentials; use gitea.token"
                    .to_owned(),
            ));
        }
        if config.remote_base.trim().is_empty() || config.remote_base.starts_with('-') {
            return Err(WorkspaceError::Invalid(
                "the remote base url must be a url or a path".to_owned(),
            ));
        }
        let root = std::fs::create_dir_all(&config.repos_dir)
            .and_then(|()| std::fs::canonicalize(&config.repos_dir))
            .map_err(|err| {
                WorkspaceError::Other(
                    format!("create repos_dir {}: {err}", config.repos_dir.display()).into(),
                )
            })?;
        let layout = Layout::new(root.clone());
        let home = layout.git_home();
        ensure_private_dir(&home).map_err(|err| {
            WorkspaceError::Other(format!("create git's home {}: {err}", home.display()).into())
        })?;
        let mut git = Git::new(
            config.command_timeout,
            config.token,
            root,
            home,
            &config.remote_base,
        );
        git.set_ca_file(config.ca_file);
        Ok(GitWorkspace {
            git,
            layout,
            remote_base: config.remote_base.trim_end_matches('/').to_owned(),
            warm: config.warm,
            mirrors: Mutex::new(HashMap::new()),
        })
    }

    /// The canonical `repos_dir`.
    pub fn repos_dir(&self) -> &Path {
        self.layout.root()
    }

    fn remote_url(&self, repo: &RepoSlug) -> String {
        format!("{}/{}/{}.git", self.remote_base, repo.owner(), repo.name())
    }

    fn mirror_state(&self, repo: &RepoSlug) -> Arc<MirrorState> {
        let mut mirrors = self
            .mirrors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        mirrors.entry(repo.clone()).or_default().clone()
    }

    /// Fetches every branch of the forge into the mirror and records it fresh as of the
    /// moment the fetch started. Call with the mirror lock held exclusively.
    async fn fetch_all(&self, state: &MirrorState, mirror: &Path) -> Result<(), GitError> {
        let changes = state.freshness().changes;
        let started = Instant::now();
        self.fetch_refspecs(mirror, &["+refs/heads/*:refs/remotes/origin/*".to_owned()])
            .await?;
        state.freshness().fetched = Some((changes, started));
        Ok(())
    }

    /// The mirror of `spec.repo` when it can serve a prepare without the network: it exists,
    /// its config is orch's own and the base branch is in it. Shared lock suffices.
    async fn ready_mirror(&self, spec: &WorktreeSpec) -> Result<Option<PathBuf>, GitError> {
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
    async fn do_refresh(&self, repo: &RepoSlug) -> Result<(), GitError> {
        let state = self.mirror_state(repo);
        let _guard = state.lock.write().await;
        let mirror = self.ensure_mirror(repo).await?;
        self.fetch_all(&state, &mirror).await?;
        tracing::debug!(repo = %repo, "mirror refreshed");
        Ok(())
    }

    /// Creates the bare mirror if missing (atomically: built beside it, then renamed), keeps
    /// its remote URL current, and returns its path. Call with the mirror lock held.
    async fn ensure_mirror(&self, repo: &RepoSlug) -> Result<PathBuf, GitError> {
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
    async fn fetch(&self, mirror: &Path, spec: &WorktreeSpec) -> Result<(), GitError> {
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
    async fn resolve(&self, mirror: &Path, refname: &str) -> Result<Option<CommitSha>, GitError> {
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

    /// Creates the task branch if missing: from the remote task branch if orch pushed it before
    /// (a lost `repos_dir` must not lose pushed work), else from the remote base.
    async fn ensure_branch(&self, mirror: &Path, spec: &WorktreeSpec) -> Result<(), GitError> {
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
        // The empty old value makes update-ref refuse to overwrite a branch that appeared meanwhile.
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
    async fn follow_remote_branch(
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
        self.git
            .run_in(
                &dirs,
                &git_args!["reset", "--hard", "--quiet", "--no-recurse-submodules"],
                Network::Local,
            )
            .await?;
        if !is_registered(&dirs).await {
            return Err(GitError::Unexpected {
                command: "worktree",
                output: format!("no admin directory worktrees/{}", spec.work_item),
            });
        }
        tracing::info!(branch = %branch, "worktree added");
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

    /// The mirror of `spec.repo`, which must exist.
    async fn existing_mirror(&self, spec: &WorktreeSpec) -> Result<PathBuf, GitError> {
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

    /// `adopt_agent_branch` under the mirror lock.
    async fn adopt_agent_branch_locked(
        &self,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let state = self.mirror_state(&spec.repo);
        let _guard = state.lock.write().await;
        self.adopt_agent_branch(mirror, spec).await
    }

    async fn branch_head(&self, mirror: &Path, spec: &WorktreeSpec) -> Result<CommitSha, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        self.resolve(mirror, &format!("refs/heads/{branch}"))
            .await?
            .ok_or_else(|| GitError::NotFound(format!("branch {branch} does not exist")))
    }

    async fn do_prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, GitError> {
        paths::branch(spec.branch.as_str())?;
        paths::branch(spec.base_branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let (worktree, mounts) = match self.warm {
            None => {
                let _guard = state.lock.write().await;
                let mirror = self.ensure_mirror(&spec.repo).await?;
                self.adopt_agent_branch(&mirror, spec).await?;
                self.fetch(&mirror, spec).await?;
                self.set_up_branch(&mirror, spec).await?
            }
            Some(max_age) => self.prepare_warm(&state, spec, max_age).await?,
        };
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

    /// `prepare` in warm mode: from a fresh mirror under the shared lock, without the
    /// network; otherwise one full fetch under the exclusive lock first (prepares waiting
    /// behind it then share the mirror it made fresh).
    async fn prepare_warm(
        &self,
        state: &MirrorState,
        spec: &WorktreeSpec,
        max_age: Duration,
    ) -> Result<(PathBuf, Vec<SandboxMount>), GitError> {
        loop {
            if state.is_fresh(max_age) {
                let _guard = state.lock.read().await;
                if let Some(mirror) = self.ready_mirror(spec).await? {
                    self.adopt_agent_branch(&mirror, spec).await?;
                    return self.set_up_branch(&mirror, spec).await;
                }
            }
            let _guard = state.lock.write().await;
            if state.is_fresh(max_age) && self.ready_mirror(spec).await?.is_some() {
                // Another prepare fetched while this one waited: share its result.
                continue;
            }
            let mirror = self.ensure_mirror(&spec.repo).await?;
            self.adopt_agent_branch(&mirror, spec).await?;
            self.fetch_all(state, &mirror).await?;
            return self.set_up_branch(&mirror, spec).await;
        }
    }

    async fn do_read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, GitError> {
        Ok(self
            .keep_output(spec, agent, name)
            .await?
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// An output file and where its kept copy is: the copy kept when orch first read it since
    /// the agent's last `prepare`, else the file in the agent's output directory, of which a
    /// copy is then kept out of every agent's reach.
    async fn keep_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<(PathBuf, Vec<u8>)>, GitError> {
        let name = paths::component("output file name", name)?;
        let kept_dir = self
            .layout
            .kept_outputs(&spec.repo, &spec.work_item, agent)?;
        let kept = kept_dir.join(name);
        self.layout.ensure_inside(&kept).await?;
        match tokio::fs::read(&kept).await {
            Ok(bytes) => return Ok(Some((kept, bytes))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(GitError::io(format!("read kept output {name}"))(err)),
        }
        let file = self
            .layout
            .output_dir(&spec.repo, &spec.work_item, agent)?
            .join(name);
        // An agent may have left a symbolic link: follow it only inside repos_dir.
        self.layout.ensure_inside(&file).await?;
        let bytes = match tokio::fs::read(&file).await {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(GitError::io(format!("read output {name}"))(err)),
        };
        tokio::fs::create_dir_all(&kept_dir)
            .await
            .map_err(GitError::io("create the kept outputs directory"))?;
        tokio::fs::write(&kept, &bytes)
            .await
            .map_err(GitError::io(format!("keep output {name}")))?;
        Ok(Some((kept, bytes)))
    }

    /// Empties and creates `{worktree}/.orch-output/{agent}`, replacing whatever an agent left
    /// there (a file or a symbolic link in place of a directory), and checks that the result is
    /// a real directory of this worktree.
    async fn fresh_output_dir(
        &self,
        spec: &WorktreeSpec,
        worktree: &Path,
        agent: Agent,
    ) -> Result<PathBuf, GitError> {
        let parent = worktree.join(paths::OUTPUT_DIR_NAME);
        let output_dir = self.layout.output_dir(&spec.repo, &spec.work_item, agent)?;
        for path in [&parent, &output_dir] {
            match tokio::fs::symlink_metadata(path).await {
                Ok(metadata) if metadata.is_dir() && path == &parent => continue,
                Ok(metadata) if metadata.is_dir() => tokio::fs::remove_dir_all(path)
                    .await
                    .map_err(GitError::io("empty the output directory"))?,
                Ok(_) => tokio::fs::remove_file(path)
                    .await
                    .map_err(GitError::io("replace the output directory"))?,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(GitError::io("inspect the output directory")(err)),
            }
            tokio::fs::create_dir(path)
                .await
                .map_err(GitError::io("create the output directory"))?;
        }
        let resolved = tokio::fs::canonicalize(&output_dir)
            .await
            .map_err(GitError::io("resolve the output directory"))?;
        let expected = tokio::fs::canonicalize(worktree)
            .await
            .map_err(GitError::io("resolve the worktree"))?
            .join(paths::OUTPUT_DIR_NAME)
            .join(agent.as_str());
        if resolved != expected {
            return Err(GitError::io("create the output directory")(
                std::io::Error::other("it is not a directory of the worktree"),
            ));
        }
        Ok(output_dir)
    }

    /// Lists the output directory in `info/exclude` of the mirror (orch's `git add --all`)
    /// and of the agent's copy of it (the agent's own `git add`), so it is never committed.
    async fn exclude_output_dir(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
    ) -> Result<(), GitError> {
        let line = format!("/{}/", paths::OUTPUT_DIR_NAME);
        for git_dir in [
            self.layout.mirror(repo)?,
            self.layout.agent_git(repo, work_item)?,
        ] {
            if !tokio::fs::try_exists(&git_dir).await.unwrap_or(false) {
                continue;
            }
            let info = git_dir.join("info");
            self.layout.ensure_inside(&info).await?;
            tokio::fs::create_dir_all(&info)
                .await
                .map_err(GitError::io("create info/"))?;
            let exclude = info.join("exclude");
            let text = match tokio::fs::read_to_string(&exclude).await {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(err) => return Err(GitError::io("read info/exclude")(err)),
            };
            if text.lines().any(|existing| existing.trim() == line) {
                continue;
            }
            let mut updated = text;
            if !updated.is_empty() && !updated.ends_with('\n') {
                updated.push('\n');
            }
            updated.push_str(&line);
            updated.push('\n');
            tokio::fs::write(&exclude, updated)
                .await
                .map_err(GitError::io("write info/exclude"))?;
        }
        Ok(())
    }

    async fn do_commit_leftovers(
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

    async fn do_commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, GitError> {
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
    /// only objects, never a ref or a worktree.
    async fn do_merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, GitError> {
        paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let _guard = state.lock.write().await;
        let mirror = self.ensure_mirror(&spec.repo).await?;
        self.fetch(&mirror, spec).await?;
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

    async fn do_push(&self, spec: &WorktreeSpec) -> Result<CommitSha, GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let state = self.mirror_state(&spec.repo);
        let _guard = state.lock.write().await;
        let mirror = self.ensure_mirror(&spec.repo).await?;
        self.adopt_agent_branch(&mirror, spec).await?;
        // Push the sha read here, so the sha returned is exactly the one pushed even if an
        // agent commits meanwhile.
        let sha = self.branch_head(&mirror, spec).await?;
        let refspec = format!("{}:refs/heads/{branch}", sha.as_str());
        // Forced, but only over what orch pushed or accepted last: commits someone else
        // pushed meanwhile make the push fail instead of vanishing.
        let expected = self.resolve(&mirror, &lease_ref(branch)).await?;
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
        self.git
            .run(
                &mirror,
                &git_args!["push", "--quiet", "--no-verify", lease, "origin", refspec],
                Network::Remote,
            )
            .await?;
        self.set_lease(&mirror, branch, &sha).await?;
        tracing::info!(branch = %branch, sha = %sha.short(), "branch pushed");
        Ok(sha)
    }

    async fn do_remove(&self, spec: &WorktreeSpec) -> Result<(), GitError> {
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

#[async_trait]
impl Workspace for GitWorkspace {
    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item, agent = %agent))]
    async fn prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, WorkspaceError> {
        Ok(self.do_prepare(spec, agent).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item, agent = %agent))]
    async fn read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        Ok(self.do_read_output(spec, agent, name).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item))]
    async fn commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        message: &str,
    ) -> Result<Option<CommitSha>, WorkspaceError> {
        Ok(self.do_commit_leftovers(spec, message).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item))]
    async fn commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, WorkspaceError> {
        Ok(self.do_commits_ahead(spec).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item))]
    async fn head_sha(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        let mirror = self.existing_mirror(spec).await?;
        self.adopt_agent_branch_locked(&mirror, spec).await?;
        Ok(self.branch_head(&mirror, spec).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item))]
    async fn merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, WorkspaceError> {
        Ok(self.do_merges_cleanly(spec, head).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item))]
    async fn push(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        Ok(self.do_push(spec).await?)
    }

    #[tracing::instrument(skip_all, fields(repo = %spec.repo, work_item = %spec.work_item))]
    async fn remove(&self, spec: &WorktreeSpec) -> Result<(), WorkspaceError> {
        Ok(self.do_remove(spec).await?)
    }

    fn remote_changed(&self, repo: &RepoSlug, branch: &BranchName, head: &CommitSha) -> bool {
        self.warm.is_some() && self.mirror_state(repo).changed(branch.as_str(), head)
    }

    #[tracing::instrument(skip_all, fields(repo = %repo))]
    async fn refresh(&self, repo: &RepoSlug) -> Result<(), WorkspaceError> {
        Ok(self.do_refresh(repo).await?)
    }
}

fn parse_sha(text: &str, command: &'static str) -> Result<CommitSha, GitError> {
    CommitSha::new(text.trim()).map_err(|_| GitError::Unexpected {
        command,
        output: text.trim().to_owned(),
    })
}

/// Creates `dir` if missing and makes it a directory only its owner can enter (mode 0700); a
/// symbolic link or a file in its place is replaced.
fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::symlink_metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            std::fs::remove_file(dir)?;
            std::fs::create_dir(dir)?;
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(dir)?,
        Err(err) => return Err(err),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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
/// agent's git and `git worktree` do. A link or directory in their place is removed, never
/// written through.
async fn repair_links(dirs: &Worktree<'_>) -> Result<(), GitError> {
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
        match tokio::fs::symlink_metadata(&path).await {
            Ok(metadata) if metadata.is_file() => {
                if tokio::fs::read(&path).await.ok().as_deref() == Some(text.as_bytes()) {
                    continue;
                }
                tokio::fs::remove_file(&path).await
            }
            Ok(metadata) if metadata.is_dir() => tokio::fs::remove_dir_all(&path).await,
            Ok(_) => tokio::fs::remove_file(&path).await,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
        .map_err(GitError::io("repair the worktree's links"))?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(GitError::io("repair the worktree's links"))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, text.as_bytes())
            .await
            .map_err(GitError::io("repair the worktree's links"))?;
        // tokio writes in the background: without a flush, a git started next may read an
        // empty file.
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(GitError::io("repair the worktree's links"))?;
    }
    Ok(())
}

/// True for `scheme://user[:password]@host/…`.
fn remote_base_has_userinfo(remote_base: &str) -> bool {
    let Some((_, rest)) = remote_base.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority.contains('@')
}

/// orch's whole mirror config. Worktrees share it and agents can write it (a `url.insteadOf`,
/// a proxy, an `uploadpack` command, an include), so it is rewritten from this template
/// under the mirror lock before every fetch and push.
async fn write_mirror_config(mirror: &Path, url: &str) -> Result<(), GitError> {
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

/// The ref where orch keeps the last task-branch head it pushed or accepted: the lease a
/// push must find on the remote.
fn lease_ref(branch: &str) -> String {
    format!("refs/orch/pushed/{branch}")
}

#[cfg(test)]
mod tests;
