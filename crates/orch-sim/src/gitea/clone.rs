//! `LocalClone`: a working clone of a `GiteaSim` repository, driven with the real git CLI, for tests.

use std::path::{Path, PathBuf};

use crate::gitea::{git, GiteaSim, SimError, TempDirGuard};

/// A non-bare clone in a temporary directory that pushes to the simulator with its token
/// (given to git through `GIT_CONFIG_COUNT`/`http.extraHeader`, never in a URL).
pub struct LocalClone {
    dir: PathBuf,
    header: String,
    _guard: TempDirGuard,
}

impl LocalClone {
    /// Clones `full_name` from `sim`.
    pub async fn new(sim: &GiteaSim, full_name: &str) -> Result<LocalClone, SimError> {
        let root = std::env::temp_dir().join(format!("orch-gitea-clone-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root)
            .map_err(|err| SimError(format!("create {}: {err}", root.display())))?;
        let guard = TempDirGuard(root.clone());
        let dir = root.join("work");
        let clone = LocalClone {
            dir: root.clone(),
            header: format!("Authorization: token {}", sim.token()),
            _guard: guard,
        };
        let url = sim.clone_url(full_name);
        let target = dir.to_string_lossy().into_owned();
        clone
            .run_in(&root, &["clone", "--quiet", &url, &target])
            .await?;
        Ok(LocalClone { dir, ..clone })
    }

    /// The working directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Runs `git args…` in the clone (authenticated) and returns its trimmed stdout.
    pub async fn git(&self, args: &[&str]) -> Result<String, SimError> {
        self.run_in(&self.dir, args).await
    }

    async fn run_in(&self, dir: &Path, args: &[&str]) -> Result<String, SimError> {
        let envs = [
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "http.extraHeader"),
            ("GIT_CONFIG_VALUE_0", self.header.as_str()),
        ];
        let out = git::run(dir, args, &envs, None)
            .await
            .map_err(|err| SimError(err.to_string()))?;
        if out.code != 0 {
            return Err(SimError(format!(
                "git {} exited {}: {}",
                args.join(" "),
                out.code,
                out.stderr.trim()
            )));
        }
        Ok(out.stdout.trim().to_owned())
    }

    /// Creates (or resets) `branch` at `start` and checks it out.
    pub async fn checkout_new(&self, branch: &str, start: &str) -> Result<(), SimError> {
        self.git(&["checkout", "--quiet", "-B", branch, start])
            .await
            .map(|_| ())
    }

    /// Writes `content` to `file`, commits it with `message`, and returns the new head sha.
    pub async fn commit_file(
        &self,
        file: &str,
        content: &str,
        message: &str,
    ) -> Result<String, SimError> {
        let path = self.dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| SimError(format!("create {}: {err}", parent.display())))?;
        }
        std::fs::write(&path, content)
            .map_err(|err| SimError(format!("write {}: {err}", path.display())))?;
        self.git(&["add", "--", file]).await?;
        self.git(&["commit", "--quiet", "-m", message]).await?;
        self.git(&["rev-parse", "HEAD"]).await
    }

    /// Pushes `refspec` to `origin`.
    pub async fn push(&self, refspec: &str) -> Result<(), SimError> {
        self.git(&["push", "--quiet", "origin", refspec])
            .await
            .map(|_| ())
    }
}
