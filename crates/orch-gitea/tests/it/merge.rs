//! Merges pinned to the head sha, with SPEC §1.1's outcome mapping, against real git merges.

use orch_core::domain::MergeOutcome;
use orch_core::ids::{CommitSha, PrNumber};
use orch_core::ports::Forge;
use orch_gitea::MergeStyle;
use orch_sim::gitea::Mutation;

use crate::{Fixture, REPO};

fn merges(fixture: &Fixture) -> usize {
    fixture
        .sim
        .mutations()
        .iter()
        .filter(|mutation| matches!(mutation, Mutation::PullMerged { .. }))
        .count()
}

#[tokio::test]
async fn merge_of_the_current_head_merges_with_a_real_merge_commit() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-010-merge", "merge.txt", "m\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-010-merge"))
        .await
        .expect("opened");
    let outcome = fixture
        .forge
        .merge(&fixture.repo, pull.number, &sha)
        .await
        .expect("answered");
    assert_eq!(outcome, MergeOutcome::Merged);
    let tip = fixture
        .sim
        .branch_tip(REPO, "main")
        .await
        .expect("tip")
        .expect("main exists");
    fixture
        .clone
        .git(&["fetch", "--quiet", "origin"])
        .await
        .expect("fetch");
    let parents = fixture
        .clone
        .git(&["rev-list", "--parents", "-n", "1", &tip])
        .await
        .expect("parents");
    assert!(
        parents
            .split_whitespace()
            .skip(1)
            .any(|parent| parent == sha.as_str()),
        "{parents}"
    );
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "a merge commit has two parents"
    );
    let read = fixture
        .forge
        .pull_request(&fixture.repo, pull.number)
        .await
        .expect("get");
    assert!(read.merged);
    assert_eq!(merges(&fixture), 1);
}

#[tokio::test]
async fn merging_an_already_merged_pull_request_is_already_merged() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-011-twice", "twice.txt", "t\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-011-twice"))
        .await
        .expect("opened");
    assert_eq!(
        fixture
            .forge
            .merge(&fixture.repo, pull.number, &sha)
            .await
            .expect("answered"),
        MergeOutcome::Merged
    );
    let again = fixture
        .forge
        .merge(&fixture.repo, pull.number, &sha)
        .await
        .expect("answered");
    assert_eq!(again, MergeOutcome::AlreadyMerged);
    assert_eq!(merges(&fixture), 1);
}

#[tokio::test]
async fn merge_of_a_moved_head_is_mapped_to_needs_rebase() {
    let fixture = Fixture::start().await;
    let old = fixture
        .push_branch("feature/ET-012-moved", "moved.txt", "1\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-012-moved"))
        .await
        .expect("opened");
    fixture
        .push_more("feature/ET-012-moved", "moved.txt", "2\n")
        .await;
    let outcome = fixture
        .forge
        .merge(&fixture.repo, pull.number, &old)
        .await
        .expect("answered");
    assert!(
        matches!(&outcome, MergeOutcome::NeedsRebase { reason } if reason.contains("head out of date")),
        "{outcome:?}"
    );
    assert_eq!(merges(&fixture), 0);
}

/// Opens two PRs that both change README.md and merges the first: the second now conflicts.
/// Returns the second PR and its head.
async fn conflicting_second_pull(fixture: &Fixture) -> (PrNumber, CommitSha) {
    let first = fixture
        .push_branch("feature/ET-013-a", "README.md", "# widgets, said A\n")
        .await;
    let second = fixture
        .push_branch("feature/ET-013-b", "README.md", "# widgets, said B\n")
        .await;
    let pull_a = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-013-a"))
        .await
        .expect("opened");
    let pull_b = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-013-b"))
        .await
        .expect("opened");
    assert_eq!(
        fixture
            .forge
            .merge(&fixture.repo, pull_a.number, &first)
            .await
            .expect("answered"),
        MergeOutcome::Merged
    );
    (pull_b.number, second)
}

#[tokio::test]
async fn a_pull_request_gitea_knows_to_conflict_is_try_later_and_reads_not_mergeable() {
    let fixture = Fixture::start().await;
    let (number, head) = conflicting_second_pull(&fixture).await;
    let outcome = fixture
        .forge
        .merge(&fixture.repo, number, &head)
        .await
        .expect("answered");
    assert!(
        matches!(&outcome, MergeOutcome::TryLater { reason } if reason == "Please try again later"),
        "{outcome:?}"
    );
    let read = fixture
        .forge
        .pull_request(&fixture.repo, number)
        .await
        .expect("get");
    assert_eq!((read.merged, read.mergeable), (false, Some(false)));
    assert_eq!(merges(&fixture), 1);
}

#[tokio::test]
async fn a_conflict_found_while_merging_is_mapped_to_needs_rebase() {
    let fixture = Fixture::start().await;
    fixture.sim.set_mergeability_checker_enabled(false);
    let (number, head) = conflicting_second_pull(&fixture).await;
    let outcome = fixture
        .forge
        .merge(&fixture.repo, number, &head)
        .await
        .expect("answered");
    assert!(
        matches!(outcome, MergeOutcome::NeedsRebase { .. }),
        "{outcome:?}"
    );
    assert!(
        !fixture
            .forge
            .pull_request(&fixture.repo, number)
            .await
            .expect("get")
            .merged
    );
}

#[tokio::test]
async fn merge_while_gitea_checks_mergeability_is_try_later() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-014-later", "later.txt", "l\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-014-later"))
        .await
        .expect("opened");
    let read = fixture
        .forge
        .pull_request(&fixture.repo, pull.number)
        .await
        .expect("get");
    assert_eq!(read.mergeable, Some(true), "checked and clean");
    fixture.sim.set_pull_checking(REPO, pull.number.get(), true);
    let read = fixture
        .forge
        .pull_request(&fixture.repo, pull.number)
        .await
        .expect("get");
    assert_eq!(read.mergeable, Some(false), "still checking");
    let outcome = fixture
        .forge
        .merge(&fixture.repo, pull.number, &sha)
        .await
        .expect("answered");
    assert!(
        matches!(outcome, MergeOutcome::TryLater { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn merge_of_a_pull_request_closed_unmerged_is_refused() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-015-closed", "closed.txt", "c\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-015-closed"))
        .await
        .expect("opened");
    fixture
        .sim
        .close_as_person(REPO, pull.number.get())
        .await
        .expect("closed");
    let outcome = fixture
        .forge
        .merge(&fixture.repo, pull.number, &sha)
        .await
        .expect("answered");
    assert!(
        matches!(outcome, MergeOutcome::Refused { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn merge_whose_answer_is_lost_is_found_merged_at_our_sha() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-016-lost", "lost.txt", "l\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-016-lost"))
        .await
        .expect("opened");
    fixture.sim.drop_next_responses(1);
    let outcome = fixture
        .forge
        .merge(&fixture.repo, pull.number, &sha)
        .await
        .expect("answered");
    assert_eq!(outcome, MergeOutcome::AlreadyMerged);
    assert_eq!(merges(&fixture), 1);
}

#[tokio::test]
async fn merge_by_a_person_before_ours_is_already_merged() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-017-person", "person.txt", "p\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-017-person"))
        .await
        .expect("opened");
    fixture
        .sim
        .merge_as_person(REPO, pull.number.get())
        .await
        .expect("merged by alice");
    let outcome = fixture
        .forge
        .merge(&fixture.repo, pull.number, &sha)
        .await
        .expect("answered");
    assert_eq!(outcome, MergeOutcome::AlreadyMerged);
}

#[tokio::test]
async fn squash_merge_with_branch_deletion_leaves_one_parent_and_no_branch() {
    let fixture = Fixture::start_with(|config| orch_gitea::GiteaSettings {
        merge_style: MergeStyle::Squash,
        delete_branch_after_merge: true,
        ..config
    })
    .await;
    let sha = fixture
        .push_branch("feature/ET-018-squash", "squash.txt", "s\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-018-squash"))
        .await
        .expect("opened");
    assert_eq!(
        fixture
            .forge
            .merge(&fixture.repo, pull.number, &sha)
            .await
            .expect("answered"),
        MergeOutcome::Merged
    );
    let tip = fixture
        .sim
        .branch_tip(REPO, "main")
        .await
        .expect("tip")
        .expect("main exists");
    fixture
        .clone
        .git(&["fetch", "--quiet", "origin"])
        .await
        .expect("fetch");
    let parents = fixture
        .clone
        .git(&["rev-list", "--parents", "-n", "1", &tip])
        .await
        .expect("parents");
    assert_eq!(
        parents.split_whitespace().count(),
        2,
        "a squash commit has one parent: {parents}"
    );
    assert_eq!(
        fixture
            .sim
            .branch_tip(REPO, "feature/ET-018-squash")
            .await
            .expect("tip"),
        None
    );
    let styles: Vec<String> = fixture
        .sim
        .mutations()
        .into_iter()
        .filter_map(|mutation| match mutation {
            Mutation::PullMerged { style, .. } => Some(style),
            _ => None,
        })
        .collect();
    assert_eq!(styles, ["squash"]);
}

/// Merges two independent branches with `style` and returns (main's tip, its parent list).
async fn merge_two_with(style: MergeStyle) -> (Fixture, String, Vec<String>) {
    let fixture = Fixture::start_with(|config| orch_gitea::GiteaSettings {
        merge_style: style,
        ..config
    })
    .await;
    let first = fixture
        .push_branch("feature/ET-019-a", "a.txt", "a\n")
        .await;
    let second = fixture
        .push_branch("feature/ET-019-b", "b.txt", "b\n")
        .await;
    for (branch, sha) in [("feature/ET-019-a", &first), ("feature/ET-019-b", &second)] {
        let pull = fixture
            .forge
            .ensure_pull_request(&fixture.new_pull(branch))
            .await
            .expect("opened");
        let outcome = fixture
            .forge
            .merge(&fixture.repo, pull.number, sha)
            .await
            .expect("answered");
        assert_eq!(outcome, MergeOutcome::Merged, "{branch}");
    }
    let tip = fixture
        .sim
        .branch_tip(REPO, "main")
        .await
        .expect("tip")
        .expect("main exists");
    fixture
        .clone
        .git(&["fetch", "--quiet", "origin"])
        .await
        .expect("fetch");
    let files = fixture
        .clone
        .git(&["ls-tree", "--name-only", &tip])
        .await
        .expect("tree");
    assert!(
        files.contains("a.txt") && files.contains("b.txt"),
        "{files}"
    );
    let line = fixture
        .clone
        .git(&["rev-list", "--parents", "-n", "1", &tip])
        .await
        .expect("parents");
    let parents = line.split_whitespace().skip(1).map(str::to_owned).collect();
    (fixture, tip, parents)
}

#[tokio::test]
async fn rebase_merge_styles_replay_the_branch_onto_the_moved_base() {
    let (fixture, tip, parents) = merge_two_with(MergeStyle::Rebase).await;
    assert_eq!(parents.len(), 1, "rebase leaves a linear history");
    let subject = fixture
        .clone
        .git(&["log", "-1", "--format=%s", &tip])
        .await
        .expect("log");
    assert_eq!(subject, "Change b.txt");

    let (_fixture, _tip, parents) = merge_two_with(MergeStyle::RebaseMerge).await;
    assert_eq!(parents.len(), 2, "rebase-merge ends with a merge commit");
}
