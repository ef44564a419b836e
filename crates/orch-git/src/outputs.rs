//! The agents' output directories in a worktree, and the copies of their files orch keeps.

use std::path::{Path, PathBuf};

use orch_core::domain::Agent;
use orch_core::ids::{RepoSlug, WorkItemId};
use orch_core::ports::WorktreeSpec;

use crate::error::GitError;
use crate::{paths, GitWorkspace};

impl GitWorkspace {
    pub(crate) async fn do_read_output(
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
    pub(crate) async fn keep_output(
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
    /// a real directory of this worktree. One blocking call.
    pub(crate) async fn fresh_output_dir(
        &self,
        spec: &WorktreeSpec,
        worktree: &Path,
        agent: Agent,
    ) -> Result<PathBuf, GitError> {
        let parent = worktree.join(paths::OUTPUT_DIR_NAME);
        let output_dir = self.layout.output_dir(&spec.repo, &spec.work_item, agent)?;
        let worktree = worktree.to_owned();
        let made = output_dir.clone();
        tokio::task::spawn_blocking(move || fresh_dir(&parent, &made, &worktree, agent))
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)))
            .map_err(GitError::io("create the output directory"))?;
        Ok(output_dir)
    }

    /// Lists the output directory in `info/exclude` of the mirror (orch's `git add --all`)
    /// and of the agent's copy of it (the agent's own `git add`), so it is never committed.
    /// One blocking call.
    pub(crate) async fn exclude_output_dir(
        &self,
        repo: &RepoSlug,
        work_item: &WorkItemId,
    ) -> Result<(), GitError> {
        let git_dirs = [
            self.layout.mirror(repo)?,
            self.layout.agent_git(repo, work_item)?,
        ];
        let layout = self.layout.clone();
        tokio::task::spawn_blocking(move || {
            git_dirs
                .iter()
                .try_for_each(|git_dir| exclude_in(&layout, git_dir))
        })
        .await
        .unwrap_or_else(|err| {
            Err(GitError::io("write info/exclude")(std::io::Error::other(
                err,
            )))
        })
    }
}

/// `fresh_output_dir`'s file work: `parent` made a directory if it is not one, `output_dir`
/// emptied and made, and both checked to resolve inside `worktree`.
fn fresh_dir(
    parent: &Path,
    output_dir: &Path,
    worktree: &Path,
    agent: Agent,
) -> std::io::Result<()> {
    for path in [parent, output_dir] {
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if metadata.is_dir() && path == parent => continue,
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(path)?,
            Ok(_) => std::fs::remove_file(path)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        std::fs::create_dir(path)?;
    }
    let resolved = std::fs::canonicalize(output_dir)?;
    let expected = std::fs::canonicalize(worktree)?
        .join(paths::OUTPUT_DIR_NAME)
        .join(agent.as_str());
    if resolved != expected {
        return Err(std::io::Error::other(
            "it is not a directory of the worktree",
        ));
    }
    Ok(())
}

/// `exclude_output_dir` for one git directory, if it exists.
fn exclude_in(layout: &paths::Layout, git_dir: &Path) -> Result<(), GitError> {
    let line = format!("/{}/", paths::OUTPUT_DIR_NAME);
    if !git_dir.exists() {
        return Ok(());
    }
    let info = git_dir.join("info");
    layout.ensure_inside_blocking(&info)?;
    std::fs::create_dir_all(&info).map_err(GitError::io("create info/"))?;
    let exclude = info.join("exclude");
    let text = match std::fs::read_to_string(&exclude) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(GitError::io("read info/exclude")(err)),
    };
    if text.lines().any(|existing| existing.trim() == line) {
        return Ok(());
    }
    let mut updated = text;
    if !updated.is_empty() && !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push_str(&line);
    updated.push('\n');
    std::fs::write(&exclude, updated).map_err(GitError::io("write info/exclude"))
}
