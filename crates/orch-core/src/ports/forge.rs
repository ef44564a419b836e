//! The `Forge` port: Gitea pull requests, commit statuses and merges.

use async_trait::async_trait;

use crate::domain::{CiState, MergeOutcome};
use crate::ids::{BranchName, CommitSha, PrNumber, RepoSlug};
use crate::ports::error::port_error;

port_error!(
    /// Why a forge call failed.
    ForgeError,
    "forge"
);

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrState {
    Open,
    Closed,
}

/// A pull request as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: PrNumber,
    pub state: PrState,
    pub merged: bool,
    pub head_branch: String,
    pub head_sha: CommitSha,
    pub base_branch: String,
    pub url: String,
    /// Gitea's `mergeable`: false while its background checker runs and when the PR conflicts
    /// with its base; `None` when Gitea does not say.
    pub mergeable: Option<bool>,
}

/// What `ensure_pull_request` opens if none is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub repo: RepoSlug,
    pub head: BranchName,
    pub base: BranchName,
    pub title: String,
    pub body: String,
}

/// One commit status context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCheck {
    pub context: String,
    /// Gitea's state word (`pending`, `success`, `error`, `failure`, `warning`, `skipped`).
    pub state: String,
    pub description: String,
    pub target_url: String,
}

/// The combined status of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CombinedStatus {
    /// `Pending` when there are no statuses at all.
    pub state: CiState,
    pub checks: Vec<StatusCheck>,
}

/// Gitea, seen through what orch needs of it. Error classes as for `Tracker`.
#[async_trait]
pub trait Forge: Send + Sync {
    /// Returns the open PR from `head` into `base`, opening one if there is none.
    /// MUST look up before creating, and MUST treat a 409 on create as "exists" (look up again).
    async fn ensure_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest, ForgeError>;

    /// One PR. Errors: `NotFound` if there is no such PR.
    async fn pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<PullRequest, ForgeError>;

    /// The open PR from `head` into `base`, if any (without opening one).
    async fn open_pull_request_for_branch(
        &self,
        repo: &RepoSlug,
        head: &BranchName,
        base: &BranchName,
    ) -> Result<Option<PullRequest>, ForgeError>;

    /// The open PR whose head is `sha`, if any (F-3, second step).
    async fn open_pull_request_for_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<PullRequest>, ForgeError>;

    /// The combined status of `sha` with Gitea's aggregation.
    async fn combined_status(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<CombinedStatus, ForgeError>;

    /// Merges PR `number` only if its head is still `head_sha`, with the configured style.
    /// The answer is classified as SPEC §1.1 says; only transport failures are `Err`. After
    /// an ambiguous failure the adapter MUST re-read the PR: merged at `head_sha` is
    /// `AlreadyMerged`.
    async fn merge(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        head_sha: &CommitSha,
    ) -> Result<MergeOutcome, ForgeError>;

    /// Posts a COMMENT review. `body` is Markdown and is posted as it is: the forge renders
    /// it (Gitea sanitizes the HTML it renders). Idempotent: a review whose body holds
    /// `marker` already exists → `Ok` without posting.
    async fn review(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError>;

    /// Posts a PR comment, idempotent by `marker` like `review`.
    async fn comment(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError>;

    /// Closes the PR unmerged. Idempotent: an already closed PR is `Ok`.
    async fn close_pull_request(&self, repo: &RepoSlug, number: PrNumber)
        -> Result<(), ForgeError>;
}
