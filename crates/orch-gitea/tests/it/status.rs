//! Combined commit status with Gitea's aggregation.

use orch_core::domain::CiState;
use orch_core::ports::Forge;

use crate::{Fixture, REPO};

/// Posts `statuses` as (context, state) in order, then reads the combined state.
async fn check(statuses: &[(&str, &str)], expected: CiState) {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-020-ci", "ci.txt", "c\n")
        .await;
    for (context, state) in statuses {
        fixture
            .sim
            .post_status(REPO, sha.as_str(), state, context)
            .await
            .expect("status posted");
    }
    let combined = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect("read");
    assert_eq!(combined.state, expected, "{statuses:?}");
    let contexts: std::collections::BTreeSet<&str> =
        statuses.iter().map(|(context, _)| *context).collect();
    assert_eq!(
        combined.checks.len(),
        contexts.len(),
        "one check per context: {statuses:?}"
    );
}

#[tokio::test]
async fn no_statuses_is_pending_with_no_checks() {
    check(&[], CiState::Pending).await;
}

#[tokio::test]
async fn all_success_or_skipped_is_success() {
    check(
        &[("ci/build", "success"), ("ci/lint", "success")],
        CiState::Success,
    )
    .await;
    check(
        &[("ci/build", "success"), ("ci/docs", "skipped")],
        CiState::Success,
    )
    .await;
}

#[tokio::test]
async fn any_pending_without_failures_is_pending() {
    check(
        &[("ci/build", "success"), ("ci/lint", "pending")],
        CiState::Pending,
    )
    .await;
}

#[tokio::test]
async fn any_failure_error_or_warning_is_failure() {
    check(
        &[("ci/build", "success"), ("ci/lint", "failure")],
        CiState::Failure,
    )
    .await;
    check(
        &[("ci/build", "pending"), ("ci/lint", "error")],
        CiState::Failure,
    )
    .await;
    check(
        &[("ci/build", "success"), ("ci/lint", "warning")],
        CiState::Failure,
    )
    .await;
}

#[tokio::test]
async fn the_latest_status_of_a_context_wins() {
    check(
        &[
            ("ci/build", "pending"),
            ("ci/build", "failure"),
            ("ci/build", "success"),
        ],
        CiState::Success,
    )
    .await;
    check(
        &[("ci/build", "success"), ("ci/build", "failure")],
        CiState::Failure,
    )
    .await;
}
