//! The `Forge` contract suite, run against `FakeForge` and `GiteaForge` on `GiteaSim`.

use std::future::Future;

use async_trait::async_trait;

use crate::domain::{CiState, MergeOutcome};
use crate::fakes::contract::{case, run_suite, Case};
use crate::ids::{BranchName, CommitSha, PrNumber, RepoSlug};
use crate::ports::{Forge, ForgeError, NewPullRequest, PrState, PullRequest};

/// A forge with one repository whose base branch is `main`, and what people and CI do to it.
#[async_trait]
pub trait ForgeFixture: Send + Sync {
    fn forge(&self) -> &dyn Forge;

    fn repo(&self) -> RepoSlug;

    /// Someone commits `content` into `file` on `branch` (made from `main`'s head if missing;
    /// `main` itself moves the base) and pushes it; returns the branch's new head.
    async fn push(&self, branch: &str, file: &str, content: &str) -> CommitSha;

    /// CI reports `state` for `sha` in the context `ci/build`.
    async fn report_ci(&self, sha: &CommitSha, state: CiState);

    /// How many reviews and how many comments pull request `number` has.
    async fn posted(&self, number: PrNumber) -> (usize, usize);
}

/// Runs the `Forge` contract on a fresh fixture per case from `make` (given the case's name).
pub async fn forge<F, Fut>(make: impl FnMut(&'static str) -> Fut)
where
    F: ForgeFixture + 'static,
    Fut: Future<Output = F>,
{
    let cases: Vec<&Case<dyn ForgeFixture>> = CASES.iter().collect();
    run_suite("Forge", &cases, make, as_fixture::<F>).await;
}

fn as_fixture<F: ForgeFixture + 'static>(fixture: &F) -> &(dyn ForgeFixture + 'static) {
    fixture
}

fn branch(name: &str) -> BranchName {
    BranchName::new(name).expect("valid branch")
}

fn new_pull(fixture: &dyn ForgeFixture, head: &str) -> NewPullRequest {
    NewPullRequest {
        repo: fixture.repo(),
        head: branch(head),
        base: branch("main"),
        title: format!("Work on {head}"),
        body: "Opened by orch.".to_owned(),
    }
}

/// Pushes `file` on `head` and opens its pull request.
async fn open(fixture: &dyn ForgeFixture, head: &str, file: &str) -> (PullRequest, CommitSha) {
    let sha = fixture
        .push(head, file, &format!("{file} of {head}\n"))
        .await;
    let pull = fixture
        .forge()
        .ensure_pull_request(&new_pull(fixture, head))
        .await
        .expect("the pull request opens");
    (pull, sha)
}

async fn read(fixture: &dyn ForgeFixture, number: PrNumber) -> PullRequest {
    fixture
        .forge()
        .pull_request(&fixture.repo(), number)
        .await
        .expect("the pull request reads")
}

async fn merge(fixture: &dyn ForgeFixture, number: PrNumber, head: &CommitSha) -> MergeOutcome {
    fixture
        .forge()
        .merge(&fixture.repo(), number, head)
        .await
        .expect("the merge is answered")
}

pub(super) const CASES: &[Case<dyn ForgeFixture>] = &[
    case!(
        ensuring_a_pull_request_twice_returns_the_one_open_pull_request,
        |fixture| {
            let (first, sha) = open(fixture, "feature/ET-1-one", "one.txt").await;
            let again = fixture
                .forge()
                .ensure_pull_request(&new_pull(fixture, "feature/ET-1-one"))
                .await
                .expect("ensured again");
            assert_eq!(again.number, first.number);
            assert_eq!(
                (first.state, first.merged, first.head_sha.clone()),
                (PrState::Open, false, sha.clone())
            );
            assert_eq!(
                (first.head_branch.as_str(), first.base_branch.as_str()),
                ("feature/ET-1-one", "main")
            );
            let (other, _) = open(fixture, "feature/ET-2-two", "two.txt").await;
            assert_ne!(other.number, first.number, "another branch, another PR");
        }
    ),
    case!(
        open_pull_requests_are_found_by_branch_and_by_head_sha_only,
        |fixture| {
            let (pull, sha) = open(fixture, "feature/ET-1-find", "find.txt").await;
            let repo = fixture.repo();
            let by_branch = fixture
                .forge()
                .open_pull_request_for_branch(&repo, &branch("feature/ET-1-find"), &branch("main"))
                .await
                .expect("looked up");
            assert_eq!(by_branch.map(|found| found.number), Some(pull.number));
            let by_sha = fixture
                .forge()
                .open_pull_request_for_sha(&repo, &sha)
                .await
                .expect("looked up");
            assert_eq!(by_sha.map(|found| found.number), Some(pull.number));
            let other_branch = fixture
                .forge()
                .open_pull_request_for_branch(&repo, &branch("feature/ET-9-none"), &branch("main"))
                .await
                .expect("looked up");
            assert_eq!(other_branch, None);
            let base_head = fixture.push("main", "base.txt", "base moves\n").await;
            let other_sha = fixture
                .forge()
                .open_pull_request_for_sha(&repo, &base_head)
                .await
                .expect("looked up");
            assert_eq!(other_sha, None);
            let missing = fixture
                .forge()
                .pull_request(&repo, PrNumber::new(4242).expect("valid"))
                .await;
            assert!(
                matches!(missing, Err(ForgeError::NotFound(_))),
                "{missing:?}"
            );
        }
    ),
    case!(
        merging_at_the_head_merges_and_merging_again_is_already_merged,
        |fixture| {
            let (pull, sha) = open(fixture, "feature/ET-1-merge", "merge.txt").await;
            assert_eq!(
                merge(fixture, pull.number, &sha).await,
                MergeOutcome::Merged
            );
            let merged = read(fixture, pull.number).await;
            assert_eq!((merged.state, merged.merged), (PrState::Closed, true));
            assert_eq!(
                merge(fixture, pull.number, &sha).await,
                MergeOutcome::AlreadyMerged
            );
            let open_again = fixture
                .forge()
                .open_pull_request_for_branch(
                    &fixture.repo(),
                    &branch("feature/ET-1-merge"),
                    &branch("main"),
                )
                .await
                .expect("looked up");
            assert_eq!(open_again, None, "a merged PR is not open");
        }
    ),
    case!(
        merging_a_head_that_moved_on_needs_a_rebase_and_merges_nothing,
        |fixture| {
            let (pull, old) = open(fixture, "feature/ET-1-moved", "moved.txt").await;
            let new = fixture
                .push("feature/ET-1-moved", "moved.txt", "moved again\n")
                .await;
            assert_eq!(read(fixture, pull.number).await.head_sha, new);
            let outcome = merge(fixture, pull.number, &old).await;
            assert!(
                matches!(outcome, MergeOutcome::NeedsRebase { .. }),
                "{outcome:?}"
            );
            assert!(!read(fixture, pull.number).await.merged);
        }
    ),
    case!(
        a_pull_request_conflicting_with_its_base_is_try_later_and_not_mergeable,
        |fixture| {
            let (pull, sha) = open(fixture, "feature/ET-1-clash", "README.md").await;
            assert_eq!(read(fixture, pull.number).await.mergeable, Some(true));
            fixture
                .push("main", "README.md", "the base says otherwise\n")
                .await;
            assert_eq!(
                read(fixture, pull.number).await.mergeable,
                Some(false),
                "the forge knows the PR conflicts"
            );
            let outcome = merge(fixture, pull.number, &sha).await;
            assert!(
                matches!(outcome, MergeOutcome::TryLater { .. }),
                "{outcome:?}"
            );
            assert!(!read(fixture, pull.number).await.merged);
        }
    ),
    case!(
        a_closed_pull_request_stays_closed_and_is_not_merged,
        |fixture| {
            let (pull, sha) = open(fixture, "feature/ET-1-close", "close.txt").await;
            for _ in 0..2 {
                fixture
                    .forge()
                    .close_pull_request(&fixture.repo(), pull.number)
                    .await
                    .expect("closing, also a closed PR, is Ok");
            }
            let closed = read(fixture, pull.number).await;
            assert_eq!((closed.state, closed.merged), (PrState::Closed, false));
            let outcome = merge(fixture, pull.number, &sha).await;
            assert!(
                matches!(outcome, MergeOutcome::Refused { .. }),
                "{outcome:?}"
            );
        }
    ),
    case!(
        combined_status_is_pending_without_statuses_and_then_follows_ci,
        |fixture| {
            let sha = fixture.push("feature/ET-1-ci", "ci.txt", "ci\n").await;
            let none = fixture
                .forge()
                .combined_status(&fixture.repo(), &sha)
                .await
                .expect("read");
            assert_eq!((none.state, none.checks.len()), (CiState::Pending, 0));
            for (state, word) in [(CiState::Success, "success"), (CiState::Failure, "failure")] {
                fixture.report_ci(&sha, state).await;
                let combined = fixture
                    .forge()
                    .combined_status(&fixture.repo(), &sha)
                    .await
                    .expect("read");
                assert_eq!(combined.state, state, "{combined:?}");
                assert_eq!(
                    combined.checks.len(),
                    1,
                    "the latest status of a context wins"
                );
                assert_eq!(combined.checks[0].context, "ci/build");
                assert_eq!(combined.checks[0].state, word);
            }
        }
    ),
    case!(
        a_review_and_a_comment_are_posted_once_per_marker,
        |fixture| {
            let (pull, _) = open(fixture, "feature/ET-1-talk", "talk.txt").await;
            let repo = fixture.repo();
            // A marker that extends another one is another marker: posted first, it must not make
            // the shorter one look posted.
            fixture
                .forge()
                .comment(&repo, pull.number, "orch:7:comment:10", "Round ten.")
                .await
                .expect("comment");
            for _ in 0..2 {
                fixture
                    .forge()
                    .review(&repo, pull.number, "orch:7:review:1", "Looks fine.")
                    .await
                    .expect("review");
                fixture
                    .forge()
                    .comment(&repo, pull.number, "orch:7:comment:1", "Closing soon.")
                    .await
                    .expect("comment");
            }
            assert_eq!(fixture.posted(pull.number).await, (1, 2));
            let missing = fixture
                .forge()
                .comment(
                    &repo,
                    PrNumber::new(4242).expect("valid"),
                    "orch:x",
                    "Lost.",
                )
                .await;
            assert!(
                matches!(missing, Err(ForgeError::NotFound(_))),
                "{missing:?}"
            );
        }
    ),
    // Not found, which the core retries (the push may not show yet), not refused for good.
    case!(
        a_pull_request_of_a_branch_the_forge_lacks_is_not_found,
        |fixture| {
            let result = fixture
                .forge()
                .ensure_pull_request(&new_pull(fixture, "feature/ET-1-nowhere"))
                .await;
            assert!(matches!(result, Err(ForgeError::NotFound(_))), "{result:?}");
        }
    ),
    case!(merging_a_missing_pull_request_is_not_found, |fixture| {
        let sha = fixture
            .push("feature/ET-1-lonely", "lonely.txt", "l\n")
            .await;
        let result = fixture
            .forge()
            .merge(&fixture.repo(), PrNumber::new(4242).expect("valid"), &sha)
            .await;
        assert!(matches!(result, Err(ForgeError::NotFound(_))), "{result:?}");
    }),
    case!(closing_a_merged_pull_request_leaves_it_merged, |fixture| {
        let (pull, sha) = open(fixture, "feature/ET-1-late", "late.txt").await;
        assert_eq!(
            merge(fixture, pull.number, &sha).await,
            MergeOutcome::Merged
        );
        let closed = fixture
            .forge()
            .close_pull_request(&fixture.repo(), pull.number)
            .await;
        assert!(closed.is_ok(), "{closed:?}");
        let read = read(fixture, pull.number).await;
        assert_eq!((read.state, read.merged), (PrState::Closed, true));
    }),
];
