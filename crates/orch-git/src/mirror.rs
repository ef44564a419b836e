//! A repository's bare mirror: its lock and freshness, orch's config, fetches and ref lookups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orch_core::ids::{CommitSha, RepoSlug};
use orch_core::ports::WorktreeSpec;

use crate::command::{git_args, Git, Network};
use crate::error::GitError;
use crate::{paths, refs, GitWorkspace};

/// What `GitWorkspace` knows about one mirror, and the turns its users take.
///
/// Lock order: a branch's turn (`branch_turn`), then `lock`, then `remote_refs`; never the
/// other way round. No lock but a branch's turn and `remote_refs` is held across the network
/// in warm mode, so a push or a fetch never holds up a prepare that needs neither.
#[derive(Default)]
pub(crate) struct MirrorState {
    /// Held exclusively to create the mirror or rewrite its config, to remove a worktree, and
    /// by a cold-mode prepare (which fetches under it); shared by the local work of prepares,
    /// pushes, merge checks and adoptions, which each write only their own task branch's refs
    /// (under its turn), its worktree and its agent view, and read the remote-tracking refs,
    /// which git replaces whole (a reader sees the old value or the new one).
    pub(crate) lock: tokio::sync::RwLock<()>,
    /// Adopting a pool entry and the pool's sweep of leftover entries take turns (the sweep
    /// would take an entry being renamed for a leftover), and so do repairs of an existing
    /// worktree (`git switch` reads every sibling's registration). A new worktree's
    /// registration needs no turn: `git worktree prune`, which would take a half-written one
    /// for a broken one, runs only under the exclusive lock (a removal).
    pub(crate) worktrees: tokio::sync::Mutex<()>,
    /// Fetches and pushes take turns, each for its whole network time: both write
    /// `refs/remotes/origin/*` (a push moves its branch's remote-tracking ref), and a fetch's
    /// ref transaction fails when a ref it updates moved after the fetch read it. A prepare
    /// that must fetch queues here, so fetches in a burst coalesce: the one in flight serves
    /// every prepare whose news it started after (`Freshness`).
    pub(crate) remote_refs: tokio::sync::Mutex<()>,
    /// One turn per task branch: a prepare, a push and an adoption of the agent's commits on
    /// the same branch take turns (each reads and moves the branch, its lease and its seed).
    branches: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    freshness: Mutex<Freshness>,
}

/// What the mirror holds of the forge, branch by branch (warm mode).
///
/// The rule: a prepare fetches first only when a ref it needs may be missing: the forge named
/// its task branch since the last complete fetch started (a person's push must be built on),
/// the mirror lacks the base, or it was not fetched since orch started (it may be as old as an
/// earlier run). A base that moved is no reason to fetch on dispatch, not even for a task
/// branch not made yet: the new branch starts from the base as the mirror has it, which the
/// background refresh started by every base move's webhook brings in within one fetch, and a
/// branch that started a little behind is caught by the merge check (which fetches) or the
/// forge's conflict answer. A mirror whose last complete fetch is older than the warm age is
/// refreshed in the background by the prepare that finds it so; that prepare does not wait.
#[derive(Default)]
pub(crate) struct Freshness {
    /// How many times the forge named a branch of the repository (`remote_changed`) with a
    /// head orch did not push itself.
    news: u64,
    /// By branch, `news` as it was right after the forge last named it.
    named: HashMap<String, u64>,
    /// `news` as it was when the last successful fetch of every branch started, and when.
    fetched: Option<(u64, Instant)>,
    /// How many fetches of every branch have started, and the number of the last one that
    /// succeeded: a refresh asked while one was in flight is served by the next one.
    started: u64,
    succeeded: u64,
    /// The head orch itself pushed last, by task branch: a push webhook for it is no news.
    pub(crate) pushed: HashMap<String, CommitSha>,
    /// A background refresh a prepare started is under way (`refresh_in_background`).
    pub(crate) refreshing: bool,
}

impl MirrorState {
    pub(crate) fn freshness(&self) -> std::sync::MutexGuard<'_, Freshness> {
        self.freshness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The turn of task branch `branch` (see the struct docs).
    pub(crate) fn branch_turn(&self, branch: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut branches = self
            .branches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A turn no one holds or waits for is only in the map: forgotten, so the map keeps the
        // branches in use, not every branch since start.
        branches.retain(|_, turn| Arc::strong_count(turn) > 1);
        branches.entry(branch.to_owned()).or_default().clone()
    }

    /// Whether a prepare of `branch` must fetch before it starts (`Freshness`): the mirror was
    /// not fetched since orch started, or the forge named `branch` since the last complete
    /// fetch started. The base's presence is the caller's to check.
    pub(crate) fn must_fetch_for(&self, branch: &str) -> bool {
        let freshness = self.freshness();
        let Some((news, _)) = freshness.fetched else {
            return true;
        };
        freshness
            .named
            .get(branch)
            .is_some_and(|named| *named > news)
    }

    /// Whether the last complete fetch started `max_age` ago or more (or there was none).
    pub(crate) fn is_aged(&self, max_age: Duration) -> bool {
        self.freshness()
            .fetched
            .is_none_or(|(_, at)| at.elapsed() >= max_age)
    }

    /// Records that the forge's `branch` is now `head`; whether that is news (not orch's own
    /// last push there).
    pub(crate) fn changed(&self, branch: &str, head: &CommitSha) -> bool {
        let mut freshness = self.freshness();
        if freshness.pushed.get(branch) == Some(head) {
            return false;
        }
        freshness.news = freshness.news.wrapping_add(1);
        let news = freshness.news;
        freshness.named.insert(branch.to_owned(), news);
        true
    }
}

/// Marks a mirror's background refresh as under way (`Freshness::refreshing`) until dropped.
struct Refreshing(Arc<MirrorState>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.freshness().refreshing = false;
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

    /// How many fetches of every branch have started: what a caller that finds the mirror
    /// wanting passes to `fetch_all_since`.
    pub(crate) fn fetches_started(state: &MirrorState) -> u64 {
        state.freshness().started
    }

    /// `fetch_all` in the `remote_refs` turn, for a caller that found the mirror wanting when
    /// `asked` fetches had started, unless it no longer is once its turn comes: a fetch started
    /// since then has succeeded, or one started after the forge last named `branch` did
    /// (`must_fetch_for`). So the fetches a burst asks for coalesce: the one in flight, then one.
    pub(crate) async fn fetch_all_since(
        &self,
        state: &MirrorState,
        mirror: &Path,
        asked: u64,
        branch: Option<&str>,
        git: &Git,
    ) -> Result<(), GitError> {
        let _turn = state.remote_refs.lock().await;
        let served = state.freshness().succeeded > asked
            || branch.is_some_and(|branch| !state.must_fetch_for(branch));
        if served {
            tracing::debug!("served by the fetch this one waited for");
            return Ok(());
        }
        self.fetch_all(state, mirror, git).await
    }

    /// Fetches every branch of the forge into the mirror and records it fresh as of the
    /// moment the fetch started. Call in the `remote_refs` turn.
    async fn fetch_all(
        &self,
        state: &MirrorState,
        mirror: &Path,
        git: &Git,
    ) -> Result<(), GitError> {
        let (news, number) = {
            let mut freshness = state.freshness();
            freshness.started = freshness.started.wrapping_add(1);
            (freshness.news, freshness.started)
        };
        let started = Instant::now();
        self.fetch_refspecs(
            git,
            mirror,
            &["+refs/heads/*:refs/remotes/origin/*".to_owned()],
        )
        .await?;
        let mut freshness = state.freshness();
        freshness.fetched = Some((news, started));
        freshness.succeeded = number;
        // News this fetch saw is no news any more.
        freshness.named.retain(|_, named| *named > news);
        Ok(())
    }

    /// The mirror of `repo` if it exists with orch's config: usable without the exclusive
    /// lock. Call with the mirror lock held.
    pub(crate) async fn usable_mirror(&self, repo: &RepoSlug) -> Result<Option<PathBuf>, GitError> {
        let mirror = self.layout.mirror(repo)?;
        self.layout.ensure_inside(&mirror).await?;
        if !tokio::fs::try_exists(mirror.join("HEAD"))
            .await
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let config = tokio::fs::read(mirror.join("config")).await.ok();
        if config.as_deref() != Some(mirror_config(&self.remote_url(repo)).as_bytes()) {
            return Ok(None);
        }
        Ok(Some(mirror))
    }

    /// The mirror of `repo` for a fetch or a push: made, or its config rewritten, under the
    /// exclusive lock if need be. No lock is held when it returns, so the network time that
    /// follows holds up no prepare (the mirror is never removed, and its config is replaced
    /// whole: `write_mirror_config`).
    pub(crate) async fn network_mirror(
        &self,
        state: &MirrorState,
        repo: &RepoSlug,
    ) -> Result<PathBuf, GitError> {
        {
            let _shared = state.lock.read().await;
            if let Some(mirror) = self.usable_mirror(repo).await? {
                return Ok(mirror);
            }
        }
        let _exclusive = state.lock.write().await;
        self.ensure_mirror(repo).await
    }

    /// `Workspace::refresh`: a fetch of every branch, without the mirror lock. A refresh
    /// asked while another was in flight waits for it and is served by the next fetch
    /// started after it was asked, so a burst of webhooks costs two fetches, not one each.
    pub(crate) async fn do_refresh(&self, repo: &RepoSlug) -> Result<(), GitError> {
        let state = self.mirror_state(repo);
        let asked = Self::fetches_started(&state);
        let mirror = self.network_mirror(&state, repo).await?;
        // Background work: no dispatch waits for it (`Freshness`).
        self.fetch_all_since(&state, &mirror, asked, None, &self.git.background())
            .await?;
        tracing::debug!(repo = %repo, "mirror refreshed");
        // The base head may have moved: the pool's entries are made again at the new one.
        self.refill_pool(repo, None);
        Ok(())
    }

    /// Starts `do_refresh` of `repo` in the background unless one a prepare started is still
    /// under way; nothing outside a tokio runtime. The caller goes on with the mirror as it is.
    pub(crate) fn refresh_in_background(&self, repo: &RepoSlug) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let state = self.mirror_state(repo);
        if std::mem::replace(&mut state.freshness().refreshing, true) {
            return;
        }
        let workspace = self.shared();
        let repo = repo.clone();
        runtime.spawn(async move {
            // Cleared however the task ends: a panic or a runtime shut down under it must not
            // stop every later aged-mirror refresh.
            let _refreshing = Refreshing(state);
            if let Err(err) = workspace.do_refresh(&repo).await {
                tracing::warn!(repo = %repo, error = %err, "background refresh of an aged mirror failed");
            }
        });
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
    /// pattern, so a branch not pushed yet is no error. Takes the `remote_refs` turn.
    pub(crate) async fn fetch(
        &self,
        state: &MirrorState,
        mirror: &Path,
        spec: &WorktreeSpec,
    ) -> Result<(), GitError> {
        let branch = paths::branch(spec.branch.as_str())?;
        let base = paths::branch(spec.base_branch.as_str())?;
        let base_refspec = format!("+refs/heads/{base}:refs/remotes/origin/{base}");
        let task_refspec = format!("+refs/heads/{branch}*:refs/remotes/origin/{branch}*");
        let _turn = state.remote_refs.lock().await;
        self.fetch_refspecs(&self.git, mirror, &[base_refspec, task_refspec])
            .await
    }

    async fn fetch_refspecs(
        &self,
        git: &Git,
        mirror: &Path,
        refspecs: &[String],
    ) -> Result<(), GitError> {
        let mut args = git_args!["fetch", "--prune", "--no-tags", "--quiet", "origin"].to_vec();
        args.extend(refspecs.iter().map(std::ffi::OsString::from));
        git.run(mirror, &args, Network::Remote).await.map(drop)
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
/// a proxy, an `uploadpack` command, an include), so before every fetch and push one that is
/// not this template is rewritten under the exclusive mirror lock (`network_mirror`). It is
/// replaced whole (written beside, then renamed): a git process of a push or fetch running
/// meanwhile, outside the lock, reads the old file or the new one, never half of one.
pub(crate) async fn write_mirror_config(mirror: &Path, url: &str) -> Result<(), GitError> {
    let staging = mirror.join("config.orch-new");
    match tokio::fs::remove_file(&staging).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(GitError::io("write the mirror's config")(err)),
    }
    paths::write_new_file(&staging, mirror_config(url).as_bytes())
        .await
        .map_err(GitError::io("write the mirror's config"))?;
    tokio::fs::rename(&staging, mirror.join("config"))
        .await
        .map_err(GitError::io("write the mirror's config"))
}

/// The text of orch's mirror config for the remote `url`.
pub(crate) fn mirror_config(url: &str) -> String {
    let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n\
         [remote \"origin\"]\n\turl = \"{quoted}\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
    )
}
