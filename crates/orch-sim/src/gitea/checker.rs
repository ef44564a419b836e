//! Gitea's background mergeability checker (`services/pull/check.go`) in `GiteaSim`: after a
//! push to a pull request's head or base, and after its creation, the PR is "checking" until a
//! real `git merge-tree` of base and head says whether it conflicts.

use std::sync::Arc;

use crate::gitea::git;
use crate::gitea::Inner;

impl Inner {
    /// Starts a mergeability check of the open pull requests `numbers`: with no delay it runs
    /// before this returns, else the PRs are "checking" until it ends in the background. A
    /// newer check of a PR makes an older one stale (its result is dropped). Does nothing while
    /// the checker is turned off.
    pub(crate) async fn check_pulls(self: &Arc<Self>, full: &str, numbers: Vec<u64>) {
        let (enabled, delay) = {
            let state = self.lock();
            (state.checker.enabled, state.checker.delay)
        };
        if !enabled || numbers.is_empty() {
            return;
        }
        let started: Vec<(u64, u64)> = {
            let mut state = self.lock();
            let Some(repo) = state.repos.get_mut(full) else {
                return;
            };
            numbers
                .iter()
                .filter_map(|number| {
                    let pull = repo.pull_mut(*number).filter(|pull| pull.open)?;
                    pull.checking = true;
                    pull.check_generation += 1;
                    Some((*number, pull.check_generation))
                })
                .collect()
        };
        if delay.is_zero() {
            self.run_checks(full, &started).await;
            return;
        }
        let inner = self.clone();
        let full = full.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            inner.run_checks(&full, &started).await;
        });
    }

    /// Checks each (PR, generation) against the base's current tip and records the result
    /// unless a newer check started meanwhile.
    async fn run_checks(&self, full: &str, started: &[(u64, u64)]) {
        let repo_dir = self.repo_dir(full);
        for (number, generation) in started {
            let Some((base, head_sha)) = ({
                let state = self.lock();
                state
                    .repos
                    .get(full)
                    .and_then(|repo| repo.pull(*number))
                    .map(|pull| (pull.base.clone(), pull.head_sha.clone()))
            }) else {
                continue;
            };
            // A check that cannot run leaves the PR unknown-but-mergeable, as a sim must not
            // wedge a test on its own git trouble.
            let conflicted = match git::branch_tip(&repo_dir, &base).await {
                Ok(Some(base_sha)) => git::conflicts(&repo_dir, &base_sha, &head_sha)
                    .await
                    .unwrap_or(false),
                _ => false,
            };
            let mut state = self.lock();
            if let Some(pull) = state
                .repos
                .get_mut(full)
                .and_then(|repo| repo.pull_mut(*number))
                .filter(|pull| pull.check_generation == *generation)
            {
                pull.checking = false;
                pull.conflicted = conflicted;
            }
        }
    }
}
