//! Integration tests of orch-gitea against `GiteaSim`: real git repositories, real pushes.

mod contract;
mod errors;
mod merge;
mod pulls;
mod repo;
mod status;
mod webhooks;

use std::time::{Duration, Instant};

use orch_core::backoff::{Backoff, RetryPolicy};
use orch_core::ids::{BranchName, CommitSha, RepoSlug};
use orch_core::ports::NewPullRequest;
use orch_gitea::{GiteaForge, GiteaSettings};
use orch_sim::gitea::{GiteaSim, LocalClone};

/// How long a test waits for something asynchronous (CI, deliveries) before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const REPO: &str = "acme/widgets";

/// A simulator with one repository, a clone of it, and a forge with ms-scale retries.
pub(crate) struct Fixture {
    pub(crate) sim: GiteaSim,
    pub(crate) forge: GiteaForge,
    pub(crate) clone: LocalClone,
    pub(crate) repo: RepoSlug,
}

pub(crate) fn fast_config(base_url: &str, token: &str) -> GiteaSettings {
    GiteaSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            backoff: Backoff {
                base: Duration::from_millis(5),
                cap: Duration::from_millis(20),
            },
        },
        ..GiteaSettings::new(base_url, token)
    }
}

impl Fixture {
    pub(crate) async fn start() -> Fixture {
        Fixture::start_with(|config| config).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(GiteaSettings) -> GiteaSettings) -> Fixture {
        let sim = GiteaSim::start().await.expect("sim starts");
        sim.create_repo("acme", "widgets")
            .await
            .expect("repo is created");
        sim.set_ci_enabled(false);
        let forge = GiteaForge::new(adjust(fast_config(&sim.base_url(), sim.token())))
            .expect("forge is built");
        let clone = LocalClone::new(&sim, REPO).await.expect("clone");
        Fixture {
            sim,
            forge,
            clone,
            repo: RepoSlug::new(REPO).expect("slug"),
        }
    }

    /// Commits `file` = `content` on `branch` (from `main`) and pushes it; returns the head sha.
    pub(crate) async fn push_branch(&self, branch: &str, file: &str, content: &str) -> CommitSha {
        self.push_from("origin/main", branch, file, content).await
    }

    /// Commits `file` = `content` on `branch` made from `start` and pushes it; returns the head
    /// sha.
    pub(crate) async fn push_from(
        &self,
        start: &str,
        branch: &str,
        file: &str,
        content: &str,
    ) -> CommitSha {
        self.clone
            .checkout_new(branch, start)
            .await
            .expect("checkout");
        let sha = self
            .clone
            .commit_file(file, content, &format!("Change {file}"))
            .await
            .expect("commit");
        self.clone
            .push(&format!("HEAD:refs/heads/{branch}"))
            .await
            .expect("push");
        CommitSha::new(sha).expect("git prints a sha")
    }

    /// Adds a commit on top of the current branch and pushes it.
    pub(crate) async fn push_more(&self, branch: &str, file: &str, content: &str) -> CommitSha {
        let sha = self
            .clone
            .commit_file(file, content, &format!("Change {file} again"))
            .await
            .expect("commit");
        self.clone
            .push(&format!("HEAD:refs/heads/{branch}"))
            .await
            .expect("push");
        CommitSha::new(sha).expect("git prints a sha")
    }

    pub(crate) fn new_pull(&self, branch: &str) -> NewPullRequest {
        NewPullRequest {
            repo: self.repo.clone(),
            head: BranchName::new(branch).expect("branch"),
            base: BranchName::new("main").expect("branch"),
            title: format!("Work on {branch}"),
            body: "Opened by orch.".to_owned(),
        }
    }
}

/// Polls `probe` until it yields a value, failing after `WAIT`.
pub(crate) async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
