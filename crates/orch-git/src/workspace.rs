//! `GitWorkspace`: its construction and the `Workspace` port, each operation handed to its module.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_core::domain::Agent;
use orch_core::ids::{BranchName, CommitSha, RepoSlug};
use orch_core::ports::{PreparedWorktree, Workspace, WorkspaceError, WorktreeSpec};

use crate::command::Git;
use crate::config::GitConfig;
use crate::mirror::MirrorState;
use crate::paths::Layout;
use crate::pool::Pool;

/// The `Workspace` port implemented with the `git` command line.
pub struct GitWorkspace {
    pub(crate) layout: Layout,
    remote_base: String,
    pub(crate) git: Git,
    pub(crate) warm: Option<Duration>,
    /// One lock and freshness record per mirror (`MirrorState`), shared with the handles that
    /// run background work (`shared`) and with a successor over the same `repos_dir`
    /// (`GitWorkspace::succeeded_by`).
    pub(crate) mirrors: Arc<Mutex<HashMap<RepoSlug, Arc<MirrorState>>>>,
    /// The worktrees made ahead of their task, per repository (warm mode only); shared like
    /// `mirrors`.
    pub(crate) pools: Arc<Mutex<HashMap<RepoSlug, Arc<Pool>>>>,
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
            mirrors: Arc::default(),
            pools: Arc::default(),
        })
    }

    /// A workspace with new settings (a reloaded token, remote or timeout) that, over the same
    /// `repos_dir`, takes turns with this one: one lock, one freshness record and one pool per
    /// mirror, whichever of the two a job was given. Two independent workspaces over one
    /// directory would each sweep the other's pool entries as leftovers, and fetch, prepare
    /// and remove beside each other without a lock in common.
    pub fn succeeded_by(&self, config: GitConfig) -> Result<GitWorkspace, WorkspaceError> {
        let mut next = GitWorkspace::new(config)?;
        if next.layout.root() == self.layout.root() {
            next.mirrors = Arc::clone(&self.mirrors);
            next.pools = Arc::clone(&self.pools);
        }
        Ok(next)
    }

    /// Another handle on the same mirrors, pools and settings, for work spawned in the
    /// background (a refresh a prepare asked for).
    pub(crate) fn shared(&self) -> GitWorkspace {
        GitWorkspace {
            layout: self.layout.clone(),
            remote_base: self.remote_base.clone(),
            git: self.git.clone(),
            warm: self.warm,
            mirrors: self.mirrors.clone(),
            pools: self.pools.clone(),
        }
    }

    /// The canonical `repos_dir`.
    pub fn repos_dir(&self) -> &Path {
        self.layout.root()
    }

    pub(crate) fn remote_url(&self, repo: &RepoSlug) -> String {
        format!("{}/{}/{}.git", self.remote_base, repo.owner(), repo.name())
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

/// True for `scheme://user[:password]@host/…`.
fn remote_base_has_userinfo(remote_base: &str) -> bool {
    let Some((_, rest)) = remote_base.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority.contains('@')
}
