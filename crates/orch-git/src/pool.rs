//! Worktrees made ahead of their task (warm mode), so the first stage of a work item starts no
//! git process between its job's claim and its agent's spawn (SPEC §7).
//!
//! A new task's branch starts at the base branch's head, and its worktree is a checkout of that
//! commit. So per repository a few worktrees (`POOL_SIZE`) are checked out in the background at
//! the mirror's base head, detached, each with its index: `{repo}/pool/{n}`, registered as
//! `{mirror}/worktrees/.orch-pool-{n}`. A prepare whose new task branch points at an entry's
//! commit adopts it (`GitWorkspace::adopt_pooled`, under the registration turn): the admin
//! directory, then the worktree, renamed to the work item's paths (same filesystem; the
//! index's stat data survives a rename), its `HEAD` attached to the task branch, its links
//! rewritten. Otherwise (the branch came from the remote, the base moved, the pool is empty)
//! the worktree is made as before.
//!
//! `git worktree prune`, by anyone, never removes an entry or a half-adopted worktree: an
//! entry's admin directory holds a `locked` file from before it has any other file until its
//! adoption has rewritten its links. A crash during an adoption leaves either an admin
//! directory without its worktree (made anew, `ensure_worktree`) or a registered worktree
//! still detached or locked (attached with `git switch`, unlocked); an entry a crash left
//! half-made, or one taken and not adopted, is swept before the next entry is made. The pool
//! is refilled after an entry is taken or a worktree made without one, and after a refresh
//! (whose new base head makes the entries stale: they are removed then). Entries live outside
//! every agent's sandbox, which mounts only its own worktree, admin directory and view.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use orch_core::ids::{CommitSha, RepoSlug};

use crate::command::{Git, Worktree};
use crate::error::GitError;
use crate::mirror::MirrorState;
use crate::paths::{Layout, POOL_ADMIN_PREFIX};
use crate::worktree::{blocking, check_out, repair_links_blocking};
use crate::{paths, refs, GitWorkspace};

/// How many worktrees each repository keeps made ahead.
pub(crate) const POOL_SIZE: usize = 2;

/// The reason in an entry's `locked` file, which keeps `git worktree prune` off it.
const LOCK_REASON: &str = "orch: made ahead of its task\n";

/// One repository's pool.
#[derive(Default)]
pub(crate) struct Pool {
    ready: Mutex<Ready>,
    /// One refill at a time; the others wait and find nothing to do.
    pub(crate) filling: tokio::sync::Mutex<()>,
    /// Set when a refill is asked for; a refill clears it before it fills.
    wanted: AtomicBool,
}

#[derive(Default)]
struct Ready {
    /// The base branch the entries are made for: the one the last prepare named.
    base: Option<String>,
    /// Checked-out entries, by number, and the commit each is at.
    entries: HashMap<u64, CommitSha>,
    next: u64,
}

impl Pool {
    fn ready(&self) -> MutexGuard<'_, Ready> {
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether there is an entry at `commit` made for `base` (it may be gone when taken).
    pub(crate) fn has(&self, base: &str, commit: &CommitSha) -> bool {
        let ready = self.ready();
        ready.base.as_deref() == Some(base) && ready.entries.values().any(|at| at == commit)
    }

    /// Takes an entry at `commit` made for `base`, if there is one.
    fn take(&self, base: &str, commit: &CommitSha) -> Option<u64> {
        let mut ready = self.ready();
        if ready.base.as_deref() != Some(base) {
            return None;
        }
        let n = ready
            .entries
            .iter()
            .find_map(|(n, at)| (at == commit).then_some(*n))?;
        ready.entries.remove(&n);
        Some(n)
    }
}

impl GitWorkspace {
    pub(crate) fn pool(&self, repo: &RepoSlug) -> Arc<Pool> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pools.entry(repo.clone()).or_default().clone()
    }

    /// Asks for `repo`'s pool to be filled in the background, for `base` (or for the base it
    /// was last filled for). Warm mode only; nothing outside a tokio runtime.
    pub(crate) fn refill_pool(&self, repo: &RepoSlug, base: Option<&str>) {
        if self.warm.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool(repo);
        {
            let mut ready = pool.ready();
            if let Some(base) = base {
                ready.base = Some(base.to_owned());
            } else if ready.base.is_none() {
                return;
            }
        }
        pool.wanted.store(true, Ordering::SeqCst);
        // At orch's own priority, unlike a refresh: a lone dispatch finds an entry only when
        // the refill after the previous one was quick (measured: niced refills left the
        // idle daemon's pool empty now and then, and that dispatch made its own checkout).
        let filler = Filler {
            git: self.git.clone(),
            layout: self.layout.clone(),
            state: self.mirror_state(repo),
            pool,
            repo: repo.clone(),
        };
        runtime.spawn(filler.run());
    }

    /// Makes the worktree of `dirs` from a pool entry at `head` made for `base`, when there is
    /// one; whether it did. Call with the registration turn held, after
    /// `clear_worktree_dirs`. A failed adoption leaves nothing behind (`false`).
    pub(crate) async fn adopt_pooled(
        &self,
        dirs: &Worktree<'_>,
        repo: &RepoSlug,
        base: &str,
        branch: &str,
        head: &CommitSha,
    ) -> bool {
        if self.warm.is_none() {
            return false;
        }
        let Some(n) = self.pool(repo).take(base, head) else {
            return false;
        };
        let (Ok(pooled_tree), Ok(pooled_admin)) = (
            self.layout.pool_worktree(repo, n),
            self.layout.pool_admin(repo, n),
        ) else {
            return false;
        };
        let adoption = {
            let (work_tree, git_dir) = (dirs.work_tree.to_owned(), dirs.git_dir.to_owned());
            let (pooled_tree, pooled_admin) = (pooled_tree.clone(), pooled_admin.clone());
            let head = format!("ref: refs/heads/{branch}\n");
            blocking(move || adopt(&work_tree, &git_dir, &pooled_tree, &pooled_admin, &head))
                .await
                .map_err(GitError::io("adopt a pool entry"))
        };
        match adoption {
            Ok(()) => {
                tracing::info!(branch = %branch, entry = n, "worktree taken from the pool");
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, entry = n, "adopting a pool entry failed; making the worktree");
                for dir in [&pooled_tree, &pooled_admin, dirs.work_tree, dirs.git_dir] {
                    remove_dir(dir).await;
                }
                false
            }
        }
    }

    /// Waits until no refill is asked for or running (tests).
    #[cfg(test)]
    pub(crate) async fn pool_settled(&self, repo: &RepoSlug) {
        let pool = self.pool(repo);
        loop {
            {
                let _filling = pool.filling.lock().await;
                if !pool.wanted.load(Ordering::SeqCst) {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The numbers of the checked-out entries (tests).
    #[cfg(test)]
    pub(crate) fn pool_entries(&self, repo: &RepoSlug) -> Vec<u64> {
        let mut entries: Vec<u64> = self.pool(repo).ready().entries.keys().copied().collect();
        entries.sort_unstable();
        entries
    }
}

/// The steps of an adoption, in the order that keeps every crash repairable (module docs), in
/// one blocking call: the admin directory, then the worktree, renamed to the item's paths;
/// `HEAD` attached (`head`, written beside and renamed); links rewritten; unlocked.
fn adopt(
    work_tree: &Path,
    git_dir: &Path,
    pooled_tree: &Path,
    pooled_admin: &Path,
    head: &str,
) -> std::io::Result<()> {
    std::fs::rename(pooled_admin, git_dir)?;
    std::fs::rename(pooled_tree, work_tree)?;
    let lock = git_dir.join("HEAD.lock");
    std::fs::write(&lock, head)?;
    std::fs::rename(&lock, git_dir.join("HEAD"))?;
    repair_links_blocking(work_tree, git_dir)?;
    match std::fs::remove_file(git_dir.join("locked")) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Removes the `locked` file of an admin directory, if any: orch locks only pool entries.
pub(crate) async fn unlock(admin: &Path) -> Result<(), GitError> {
    match tokio::fs::remove_file(admin.join("locked")).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(GitError::io("unlock an adopted worktree")(err)),
    }
}

async fn remove_dir(dir: &Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(error = %err, dir = %dir.display(), "removing a pool directory failed")
        }
    }
}

/// What a background refill of one repository's pool needs.
struct Filler {
    git: Git,
    layout: Layout,
    state: Arc<MirrorState>,
    pool: Arc<Pool>,
    repo: RepoSlug,
}

impl Filler {
    async fn run(self) {
        let _filling = self.pool.filling.lock().await;
        while self.pool.wanted.swap(false, Ordering::SeqCst) {
            if let Err(err) = self.fill().await {
                tracing::warn!(repo = %self.repo, error = %err, "refilling the worktree pool failed");
            }
        }
    }

    /// Removes stale and unknown entries, then makes entries at the base head until there are
    /// `POOL_SIZE`, each under the shared mirror lock (a fetch or removal waits for one
    /// checkout at most).
    async fn fill(&self) -> Result<(), GitError> {
        let Some(base) = self.pool.ready().base.clone() else {
            return Ok(());
        };
        let base = paths::branch(&base)?.to_owned();
        let mirror = self.layout.mirror(&self.repo)?;
        let mut swept = false;
        loop {
            let _shared = self.state.lock.read().await;
            if !tokio::fs::try_exists(mirror.join("HEAD"))
                .await
                .unwrap_or(false)
            {
                return Ok(());
            }
            let refs::RefValue::Points(head) =
                refs::read(&mirror, &format!("refs/remotes/origin/{base}")).await
            else {
                return Ok(());
            };
            let stale: Vec<u64> = {
                let mut ready = self.pool.ready();
                if ready.base.as_deref() != Some(base.as_str()) {
                    // Another base was asked for meanwhile: its own refill follows.
                    return Ok(());
                }
                let stale = ready
                    .entries
                    .iter()
                    .filter_map(|(n, at)| (*at != head).then_some(*n))
                    .collect();
                ready.entries.retain(|_, at| *at == head);
                stale
            };
            for n in stale {
                self.remove_entry(n).await?;
            }
            // Once a fill: what a crash or an earlier run left (entries taken and not adopted
            // are removed by their taker).
            if !swept {
                self.sweep(&mirror).await?;
                swept = true;
            }
            let n = {
                let mut ready = self.pool.ready();
                if ready.entries.len() >= POOL_SIZE {
                    return Ok(());
                }
                ready.next += 1;
                ready.next
            };
            if let Err(err) = self.make(&mirror, n, &head).await {
                self.remove_entry(n).await?;
                return Err(err);
            }
            let mut ready = self.pool.ready();
            if ready.base.as_deref() == Some(base.as_str()) {
                ready.entries.insert(n, head);
            }
            // Otherwise the next sweep removes it.
        }
    }

    /// Checks out a new entry `n` at `head`: registered (locked first), then checked out beside
    /// the prepares. No turn: no one adopts it before it is ready, and the sweep is this
    /// filler's own.
    async fn make(&self, mirror: &Path, n: u64, head: &CommitSha) -> Result<(), GitError> {
        let worktree = self.layout.pool_worktree(&self.repo, n)?;
        let admin = self.layout.pool_admin(&self.repo, n)?;
        self.layout.ensure_inside(&worktree).await?;
        let dirs = Worktree {
            work_tree: &worktree,
            git_dir: &admin,
            common_dir: mirror,
        };
        {
            let (work_tree, git_dir) = (worktree.clone(), admin.clone());
            let head = format!("{}\n", head.as_str());
            blocking(move || {
                for parent in [work_tree.parent(), git_dir.parent()].into_iter().flatten() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::create_dir(&work_tree)?;
                std::fs::create_dir(&git_dir)?;
                // Locked first: a `git worktree prune` never takes it for a broken one.
                std::fs::write(git_dir.join("locked"), LOCK_REASON)?;
                std::fs::write(git_dir.join("HEAD"), head)?;
                repair_links_blocking(&work_tree, &git_dir)
            })
            .await
            .map_err(GitError::io("register a pool entry"))?;
        }
        check_out(&self.git, &dirs).await?;
        if !tokio::fs::try_exists(admin.join("index"))
            .await
            .unwrap_or(false)
        {
            return Err(GitError::Unexpected {
                command: "reset",
                output: format!("no index for pool entry {n}"),
            });
        }
        tracing::debug!(repo = %self.repo, entry = n, head = %head.short(), "pool entry made");
        Ok(())
    }

    async fn remove_entry(&self, n: u64) -> Result<(), GitError> {
        remove_dir(&self.layout.pool_admin(&self.repo, n)?).await;
        remove_dir(&self.layout.pool_worktree(&self.repo, n)?).await;
        Ok(())
    }

    /// Removes every entry on disk that is not a ready one: left by a crash or an earlier run,
    /// half-made, or taken and not adopted. Under the turn, so an adoption under way is done
    /// (its entry renamed away) before the listing.
    async fn sweep(&self, mirror: &Path) -> Result<(), GitError> {
        let _turn = self.state.worktrees.lock().await;
        let known: Vec<u64> = self.pool.ready().entries.keys().copied().collect();
        let mut unknown: Vec<PathBuf> = Vec::new();
        let listings = [
            (self.layout.pool(&self.repo)?, ""),
            (mirror.join("worktrees"), POOL_ADMIN_PREFIX),
        ];
        for (dir, prefix) in listings {
            let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
                continue;
            };
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name();
                let Some(number) = name.to_str().and_then(|name| name.strip_prefix(prefix)) else {
                    continue;
                };
                let number = number.parse::<u64>();
                if prefix.is_empty() || number.is_ok() {
                    if number.is_ok_and(|n| known.contains(&n)) {
                        continue;
                    }
                    unknown.push(entry.path());
                }
            }
        }
        for dir in unknown {
            tracing::debug!(dir = %dir.display(), "leftover pool entry removed");
            remove_dir(&dir).await;
        }
        Ok(())
    }
}
