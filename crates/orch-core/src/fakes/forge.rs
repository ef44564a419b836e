//! `FakeForge`: Gitea in memory — pull requests, commit statuses, merges, reviews.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::{CiState, MergeOutcome};
use crate::ids::{BranchName, CommitSha, PrNumber, RepoSlug};
use crate::ports::{
    CombinedStatus, Forge, ForgeError, NewPullRequest, PrState, PullRequest, StatusCheck,
};

/// Gitea in memory. A PR's head sha is whatever `set_branch_head` last said for its branch.
#[derive(Debug, Default)]
pub struct FakeForge {
    state: Mutex<ForgeState>,
}

#[derive(Debug, Default)]
struct ForgeState {
    pulls: BTreeMap<(RepoSlug, u64), PullRequest>,
    heads: BTreeMap<(RepoSlug, String), CommitSha>,
    statuses: BTreeMap<(RepoSlug, CommitSha), CiState>,
    merge_script: VecDeque<MergeOutcome>,
    reviews: Vec<(RepoSlug, PrNumber, String)>,
    comments: Vec<(RepoSlug, PrNumber, String)>,
    merges: Vec<(RepoSlug, PrNumber, CommitSha)>,
    /// PRs Gitea's mergeability checker found to conflict with their base.
    conflicting: BTreeSet<(RepoSlug, u64)>,
    failures: u32,
    calls: u64,
}

impl FakeForge {
    pub fn new() -> FakeForge {
        FakeForge::default()
    }

    /// What a push does: the branch (and its open PR) now points at `sha`.
    pub fn set_branch_head(&self, repo: &RepoSlug, branch: &str, sha: &CommitSha) {
        let mut state = self.lock();
        state
            .heads
            .insert((repo.clone(), branch.to_owned()), sha.clone());
        for pull in state.pulls.values_mut() {
            if pull.head_branch == branch && pull.state == PrState::Open {
                pull.head_sha = sha.clone();
            }
        }
    }

    /// CI reports `state` for `sha`.
    pub fn set_status(&self, repo: &RepoSlug, sha: &CommitSha, state: CiState) {
        self.lock()
            .statuses
            .insert((repo.clone(), sha.clone()), state);
    }

    /// The next merges answer these outcomes instead of merging.
    pub fn script_merge(&self, outcome: MergeOutcome) {
        self.lock().merge_script.push_back(outcome);
    }

    /// A person merges or closes the PR in Gitea.
    pub fn close_by_person(&self, repo: &RepoSlug, number: PrNumber, merged: bool) {
        if let Some(pull) = self.lock().pulls.get_mut(&(repo.clone(), number.get())) {
            pull.state = PrState::Closed;
            pull.merged = merged;
        }
    }

    /// What Gitea's mergeability checker says about the PR from now on; `Some(true)` also ends
    /// a conflict it found.
    pub fn set_mergeable(&self, repo: &RepoSlug, number: PrNumber, mergeable: Option<bool>) {
        let mut state = self.lock();
        let key = (repo.clone(), number.get());
        if mergeable == Some(true) {
            state.conflicting.remove(&key);
        }
        if let Some(pull) = state.pulls.get_mut(&key) {
            pull.mergeable = mergeable;
        }
    }

    /// Gitea's mergeability checker finds that the PR conflicts with its base: it reads
    /// `mergeable: false` and merges answer 405 "Please try again later" (contracts/gitea
    /// README, "Merging") until `set_mergeable(.., Some(true))`.
    pub fn checker_finds_conflict(&self, repo: &RepoSlug, number: PrNumber) {
        let mut state = self.lock();
        let key = (repo.clone(), number.get());
        if let Some(pull) = state.pulls.get_mut(&key) {
            pull.mergeable = Some(false);
            state.conflicting.insert(key);
        }
    }

    pub fn pulls(&self) -> Vec<PullRequest> {
        self.lock().pulls.values().cloned().collect()
    }

    /// Every commit status CI reported, by repository and commit.
    pub fn statuses(&self) -> BTreeMap<(RepoSlug, CommitSha), CiState> {
        self.lock().statuses.clone()
    }

    pub fn merges(&self) -> Vec<(RepoSlug, PrNumber, CommitSha)> {
        self.lock().merges.clone()
    }

    pub fn reviews(&self) -> Vec<(RepoSlug, PrNumber, String)> {
        self.lock().reviews.clone()
    }

    pub fn comments(&self) -> Vec<(RepoSlug, PrNumber, String)> {
        self.lock().comments.clone()
    }

    /// The next `n` calls fail with `Unavailable`.
    pub fn fail_next(&self, n: u32) {
        self.lock().failures = n;
    }

    /// How many port calls were made so far (failed ones included).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ForgeState> {
        self.state.lock().expect("forge mutex")
    }

    fn enter(&self) -> Result<std::sync::MutexGuard<'_, ForgeState>, ForgeError> {
        let mut state = self.lock();
        state.calls += 1;
        if state.failures > 0 {
            state.failures -= 1;
            return Err(ForgeError::unavailable("gitea is down (fake)"));
        }
        Ok(state)
    }
}

fn pull_of<'a>(
    state: &'a mut ForgeState,
    repo: &RepoSlug,
    number: PrNumber,
) -> Result<&'a mut PullRequest, ForgeError> {
    state
        .pulls
        .get_mut(&(repo.clone(), number.get()))
        .ok_or_else(|| ForgeError::NotFound(format!("pull request {number}")))
}

#[async_trait]
impl Forge for FakeForge {
    async fn ensure_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let mut state = self.enter()?;
        if let Some(open) = state.pulls.values().find(|pull| {
            pull.state == PrState::Open
                && pull.head_branch == new.head.as_str()
                && pull.base_branch == new.base.as_str()
        }) {
            return Ok(open.clone());
        }
        let Some(head_sha) = state
            .heads
            .get(&(new.repo.clone(), new.head.to_string()))
            .cloned()
        else {
            // Gitea answers 404 when the head branch does not exist (swagger:
            // repoCreatePullRequest), which the core retries: the push may not show yet.
            return Err(ForgeError::NotFound(format!(
                "branch {} does not exist",
                new.head
            )));
        };
        let number = state
            .pulls
            .keys()
            .filter(|(repo, _)| repo == &new.repo)
            .count() as u64
            + 1;
        let pull = PullRequest {
            number: PrNumber::new(number).expect("numbers start at 1"),
            state: PrState::Open,
            merged: false,
            head_branch: new.head.to_string(),
            head_sha,
            base_branch: new.base.to_string(),
            url: format!("http://forge.invalid/{}/pulls/{number}", new.repo),
            mergeable: Some(true),
        };
        state.pulls.insert((new.repo.clone(), number), pull.clone());
        Ok(pull)
    }

    async fn pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<PullRequest, ForgeError> {
        let mut state = self.enter()?;
        pull_of(&mut state, repo, number).cloned()
    }

    async fn open_pull_request_for_branch(
        &self,
        repo: &RepoSlug,
        head: &BranchName,
        base: &BranchName,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let state = self.enter()?;
        Ok(state
            .pulls
            .iter()
            .find(|((pull_repo, _), pull)| {
                pull_repo == repo
                    && pull.head_branch == head.as_str()
                    && pull.base_branch == base.as_str()
                    && pull.state == PrState::Open
            })
            .map(|(_, pull)| pull.clone()))
    }

    async fn open_pull_request_for_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let state = self.enter()?;
        Ok(state
            .pulls
            .iter()
            .find(|((pull_repo, _), pull)| {
                pull_repo == repo && pull.state == PrState::Open && &pull.head_sha == sha
            })
            .map(|(_, pull)| pull.clone()))
    }

    async fn combined_status(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<CombinedStatus, ForgeError> {
        let state = self.enter()?;
        Ok(match state.statuses.get(&(repo.clone(), sha.clone())) {
            None => CombinedStatus {
                state: CiState::Pending,
                checks: Vec::new(),
            },
            Some(ci) => {
                let word = match ci {
                    CiState::Pending => "pending",
                    CiState::Success => "success",
                    CiState::Failure => "failure",
                };
                CombinedStatus {
                    state: *ci,
                    checks: vec![StatusCheck {
                        context: "ci/build".to_owned(),
                        state: word.to_owned(),
                        description: format!("build {word}"),
                        target_url: format!("http://ci.invalid/{sha}"),
                    }],
                }
            }
        })
    }

    async fn merge(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        head_sha: &CommitSha,
    ) -> Result<MergeOutcome, ForgeError> {
        let mut state = self.enter()?;
        if let Some(outcome) = state.merge_script.pop_front() {
            return Ok(outcome);
        }
        // In the order Gitea checks (contracts/gitea README, "Merging").
        let conflicting = state.conflicting.contains(&(repo.clone(), number.get()));
        let pull = pull_of(&mut state, repo, number)?;
        if pull.merged {
            return Ok(if &pull.head_sha == head_sha {
                MergeOutcome::AlreadyMerged
            } else {
                MergeOutcome::Refused {
                    reason: "merged at another head".to_owned(),
                }
            });
        }
        if pull.state == PrState::Closed {
            return Ok(MergeOutcome::Refused {
                reason: "pull request is closed".to_owned(),
            });
        }
        if conflicting {
            return Ok(MergeOutcome::TryLater {
                reason: "Please try again later".to_owned(),
            });
        }
        if &pull.head_sha != head_sha {
            return Ok(MergeOutcome::NeedsRebase {
                reason: "head out of date".to_owned(),
            });
        }
        pull.state = PrState::Closed;
        pull.merged = true;
        state.merges.push((repo.clone(), number, head_sha.clone()));
        Ok(MergeOutcome::Merged)
    }

    async fn review(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let mut state = self.enter()?;
        pull_of(&mut state, repo, number)?;
        if state.reviews.iter().any(|(r, n, text)| {
            r == repo && *n == number && text.contains(&format!("<!-- {marker} -->"))
        }) {
            return Ok(());
        }
        state
            .reviews
            .push((repo.clone(), number, format!("{body}\n<!-- {marker} -->")));
        Ok(())
    }

    async fn comment(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let mut state = self.enter()?;
        pull_of(&mut state, repo, number)?;
        if state.comments.iter().any(|(r, n, text)| {
            r == repo && *n == number && text.contains(&format!("<!-- {marker} -->"))
        }) {
            return Ok(());
        }
        state
            .comments
            .push((repo.clone(), number, format!("{body}\n<!-- {marker} -->")));
        Ok(())
    }

    async fn close_pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<(), ForgeError> {
        let mut state = self.enter()?;
        pull_of(&mut state, repo, number)?.state = PrState::Closed;
        Ok(())
    }
}
