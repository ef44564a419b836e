//! The handlers of SPEC §2 and the rows of SPEC §1.1, against the fakes.

use std::sync::Arc;
use std::time::Duration;

use expect_test::{expect, Expect};

use crate::domain::{Agent, CiState, JobKind, MergeOutcome, Stage, StateRole, TaskStatus};
use crate::event::{Event, Origin};
use crate::fakes::{FakeStep, World};
use crate::ids::{CommitSha, RepoSlug, UserId};
use crate::ports::{Store, WorkItem};

mod convergence;

/// Checks what happened in `world` since the last check (or since it was made) against
/// `expected`: `UPDATE_EXPECT=1 cargo test` rewrites `expected` to what happened.
async fn check(world: &World, expected: Expect) {
    expected.assert_eq(&world.transcript().await);
}

async fn active_agent_jobs(world: &World, item: &WorkItem) -> Vec<JobKind> {
    let task = world.task(item).await;
    world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("store works")
        .into_iter()
        .filter(|job| job.status.is_active() && job.kind().is_agent())
        .map(|job| job.kind())
        .collect()
}

/// Walks `item` to the final verdict, scripts Gitea's merge answer, and approves; the
/// transcript starts at the approval.
async fn approve_with_merge_answer(world: &World, item: &WorkItem, answer: MergeOutcome) {
    world.to_final_verdict(item).await;
    world.clear_transcript().await;
    world.forge.script_merge(answer);
    world
        .move_item(item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
}

// --- status_start ---

#[tokio::test]
async fn status_start_creates_one_task_on_its_branch_with_one_analyst_job() {
    let world = World::new();
    let item = world.add_item(1, "Fix login redirect loop");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to In Progress
          handled: task created
          task ET-001: new on feature/ET-001-fix-login-redirect-loop, analysis, working
          job ET-001 analyst: queued
    "#]],
    )
    .await;
}

#[tokio::test]
async fn status_start_for_an_item_with_a_task_does_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Once");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to In Progress
          no change: task exists
    "#]],
    )
    .await;
}

#[test]
fn tc15_64_concurrent_status_starts_give_one_task_and_one_analyst_job() {
    let world = Arc::new(World::new());
    let item = world.add_item(99, "Dup race");
    let moved = world.move_silently(&item, StateRole::InProgress);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(8)
        .build()
        .expect("runtime");
    let created: Vec<bool> = runtime.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let mut handles = Vec::new();
        for _ in 0..64 {
            let (world, moved, barrier) = (world.clone(), moved.clone(), barrier.clone());
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let event = Event::WorkItemMoved {
                    item: moved,
                    actor: None,
                };
                world
                    .orchestrator
                    .handle(&event, Origin::Webhook)
                    .await
                    .expect("handled")
                    .changed
            }));
        }
        let mut created = Vec::new();
        for handle in handles {
            created.push(handle.await.expect("task ran"));
        }
        created
    });
    assert_eq!(created.iter().filter(|created| **created).count(), 1);
    runtime.block_on(async {
        assert_eq!(
            world
                .store
                .list_tasks(100)
                .await
                .expect("store works")
                .len(),
            1
        );
        assert_eq!(active_agent_jobs(&world, &item).await.len(), 1);
    });
}

#[tokio::test]
async fn state_changes_made_by_orch_itself_are_ignored() {
    let world = World::new();
    let item = world.add_item(1, "Mine");
    let moved = world.move_silently(&item, StateRole::InProgress);
    let event = Event::WorkItemMoved {
        item: moved,
        actor: Some(world.tracker.own_user()),
    };
    world.deliver(event).await.expect("handled");
    check(
        &world,
        expect![[r#"
        webhook: ET-001 moved to In Progress by orch-user
          no change: orch's own change
    "#]],
    )
    .await;
}

// --- analysis ---

#[tokio::test]
async fn analysis_done_posts_the_analysis_moves_the_item_to_awaiting_and_notifies() {
    let world = World::new();
    let item = world.add_item(1, "Analyse me");
    world.to_analysis_verdict(&item).await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to In Progress
          handled: task created
          task ET-001: new on feature/ET-001-analyse-me, analysis, working
          job ET-001 analyst: queued
        run ET-001 analyst: succeeded
          git: worktree of ET-001 created
          agent: analyst runs for ET-001, attempt 1
          handled: analysis ready; awaiting a verdict
          task ET-001: analysis, working → analysis, awaiting_verdict
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Analysis by orch** / Analysis of Analyse me
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the analysis is ready; approve or reject it in Plane (Analyse me)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn analysis_without_analysis_md_blocks_the_task_and_notifies_once() {
    let world = World::new();
    let item = world.add_item(1, "Silent analyst");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Analyst,
        &[FakeStep::WriteNothing],
    );
    world.to_analysis_verdict(&item).await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to In Progress
          handled: task created
          task ET-001: new on feature/ET-001-silent-analyst, analysis, working
          job ET-001 analyst: queued
        run ET-001 analyst: succeeded
          git: worktree of ET-001 created
          agent: analyst runs for ET-001, attempt 1
          handled: analyst finished
          task ET-001: analysis, working → analysis, blocked (the analyst wrote no analysis.md)
          job ET-001 notify: queued
        run ET-001 notify: succeeded
          telegram: ET-001 is blocked: the analyst wrote no analysis.md
    "#]],
    )
    .await;
}

#[tokio::test]
async fn analysis_approved_moves_to_development_runs_the_developer_and_moves_the_item_back() {
    let world = World::new();
    let item = world.add_item(1, "Approve me");
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer made 1 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          gitea: PR #1 opened, feature/ET-001-approve-me into main
          git: ET-001 pushed at @fee0001
          handled: branch pushed, pull request open
          task ET-001: PR #1, head @fee0001
    "#]],
    )
    .await;
}

#[tokio::test]
async fn analysis_rejected_runs_the_analyst_again_with_the_peoples_comments_as_feedback() {
    let world = World::new();
    let item = world.add_item(1, "Reject me");
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world.clock.advance(Duration::from_secs(5));
    world.tracker.add_human_comment(
        &item.id,
        &world.person,
        "Consider the mobile app too.",
        world.clock_now(),
    );
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 5 s later
          plane: ada comments on ET-001: Consider the mobile app too.
        ada moves ET-001 to Rejected
          handled: rejected; analyst runs again with feedback
          task ET-001: analysis, awaiting_verdict → analysis, working
          job ET-001 analyst: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 analyst: succeeded
          agent: analyst runs for ET-001, attempt 1, feedback: Consider the mobile app too.
          handled: analysis ready; awaiting a verdict
          task ET-001: analysis, working → analysis, awaiting_verdict
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Analysis by orch** / Analysis of Reject me
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the analysis is ready; approve or reject it in Plane (Reject me)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn approved_delivered_twice_advances_once() {
    let world = World::new();
    let item = world.add_item(1, "Twice");
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        ada moves ET-001 to Approved
          no change: a job is active
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer made 1 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          gitea: PR #1 opened, feature/ET-001-twice into main
          git: ET-001 pushed at @fee0001
          handled: branch pushed, pull request open
          task ET-001: PR #1, head @fee0001
    "#]],
    )
    .await;
}

#[tokio::test]
async fn approved_while_not_awaiting_a_verdict_does_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Too early");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          no change: a job is active
    "#]],
    )
    .await;
}

// --- development ---

#[tokio::test]
async fn development_done_pushes_the_branch_and_opens_exactly_one_pull_request() {
    let world = World::new();
    let item = world.add_item(1, "Build it");
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer made 1 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          gitea: PR #1 opened, feature/ET-001-build-it into main
          git: ET-001 pushed at @fee0001
          handled: branch pushed, pull request open
          task ET-001: PR #1, head @fee0001
    "#]],
    )
    .await;
}

#[tokio::test]
async fn development_leftovers_are_committed_by_orch_before_the_push() {
    let world = World::new();
    let item = world.add_item(1, "Lazy developer");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Developer,
        &[FakeStep::LeaveUncommitted],
    );
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer made 1 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          gitea: PR #1 opened, feature/ET-001-lazy-developer into main
          git: ET-001 pushed at @fee0001
          handled: branch pushed, pull request open
          task ET-001: PR #1, head @fee0001
    "#]],
    )
    .await;
}

#[tokio::test]
async fn development_without_commits_blocks_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Nothing done");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Developer,
        &[FakeStep::WriteNothing],
    );
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer finished
          task ET-001: development, working → development, blocked (the developer made no commits)
          job ET-001 notify: queued
        run ET-001 notify: succeeded
          telegram: ET-001 is blocked: the developer made no commits
    "#]],
    )
    .await;
}

#[tokio::test]
async fn development_gate_green_moves_the_task_to_review() {
    let world = World::new();
    let item = world.add_item(1, "Green");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Success, true).await;
    check(
        &world,
        expect![[r#"
        webhook: CI success at @fee0001 in acme/widgets
          handled: gate green; review
          task ET-001: development, working → review, working
          job ET-001 reviewer: queued
    "#]],
    )
    .await;
}

#[tokio::test]
async fn ci_pending_does_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Pending");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Pending, true).await;
    check(
        &world,
        expect![[r#"
        webhook: CI pending at @fee0001 in acme/widgets
          no change: CI pending
    "#]],
    )
    .await;
}

#[tokio::test]
async fn ci_failure_runs_one_fix_round_per_head_sha_with_the_ci_feedback() {
    let world = World::new();
    let item = world.add_item(1, "Red");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Failure, true).await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    check(&world, expect![[r#"
        webhook: CI failure at @fee0001 in acme/widgets
          handled: CI failed; fix round 1
          task ET-001: fix round 1
          job ET-001 developer: queued
        webhook: CI failure at @fee0001 in acme/widgets
          no change: a job is active
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: CI failed at 000000000000000000000000000000c0ffee0001: / - ci/build (failure): build failure http://ci.invalid/000000000000000000000000000000c0ffee0001
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
    "#]]).await;
}

#[tokio::test]
async fn fix_rounds_beyond_the_maximum_block_the_task() {
    let world = World::with_config(|config| config.max_fix_rounds = 1);
    let item = world.add_item(1, "Always red");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    world.ci(&item, CiState::Failure, true).await;
    check(&world, expect![[r#"
        webhook: CI failure at @fee0001 in acme/widgets
          handled: CI failed; fix round 1
          task ET-001: fix round 1
          job ET-001 developer: queued
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: CI failed at 000000000000000000000000000000c0ffee0001: / - ci/build (failure): build failure http://ci.invalid/000000000000000000000000000000c0ffee0001
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
        webhook: CI failure at @fee0002 in acme/widgets
          handled: CI failed at 0000000000
          task ET-001: development, working → development, blocked (CI failed 2 times), fix round 2
          job ET-001 notify: queued
    "#]]).await;
}

#[tokio::test]
async fn ci_status_at_a_head_someone_pushed_follows_the_pull_request_and_reads_the_gate() {
    let world = World::new();
    let item = world.add_item(1, "Resolve by PR");
    let other = world.add_item(2, "Second task");
    world.to_ci_wait(&item).await;
    world.to_ci_wait(&other).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    // A person pushes to the task's branch; Gitea's push webhook is lost.
    let pushed = CommitSha::new("d".repeat(40)).expect("sha");
    world
        .forge
        .set_branch_head(&task.repo, task.branch.as_str(), &pushed);
    world
        .forge
        .set_status(&task.repo, &pushed, CiState::Success);
    world
        .deliver(Event::CiStatusReported {
            repo: task.repo.clone(),
            sha: pushed.clone(),
            state: CiState::Success,
        })
        .await
        .expect("handled");
    // The task follows its pull request's head, and the green gate at that head is read.
    check(
        &world,
        expect![[r#"
            outside orch:
              gitea: PR #1 head is @ddddddd
              gitea: CI success at @ddddddd in acme/widgets
            webhook: CI success at @ddddddd in acme/widgets
              handled: gate green; review
              task ET-001: development, working → review, working, head @ddddddd
              job ET-001 reviewer: queued
        "#]],
    )
    .await;
}

#[tokio::test]
async fn ci_status_of_an_unknown_sha_with_two_waiting_tasks_is_not_guessed() {
    let world = World::new();
    let first = world.add_item(1, "One");
    let second = world.add_item(2, "Two");
    world.to_ci_wait(&first).await;
    world.to_ci_wait(&second).await;
    world.clear_transcript().await;
    let repo = world.project().repo.clone();
    let unknown = CommitSha::new("e".repeat(40)).expect("sha");
    world
        .deliver(Event::CiStatusReported {
            repo,
            sha: unknown,
            state: CiState::Failure,
        })
        .await
        .expect("handled");
    check(
        &world,
        expect![[r#"
        webhook: CI failure at @eeeeeee in acme/widgets
          no change: sha not resolved to a task
    "#]],
    )
    .await;
}

#[tokio::test]
async fn ci_status_for_a_repository_orch_does_not_serve_costs_no_forge_call() {
    let world = World::new();
    let item = world.add_item(1, "Waiting on CI");
    world.to_ci_wait(&item).await;
    let calls = world.forge.calls();
    for index in 0..100u32 {
        let handled = world
            .deliver(Event::CiStatusReported {
                repo: RepoSlug::new("acme/not-served").expect("slug"),
                sha: CommitSha::new(format!("{index:040x}")).expect("sha"),
                state: CiState::Success,
            })
            .await
            .expect("handled");
        assert_eq!(handled.task, None);
    }
    assert_eq!(world.forge.calls(), calls);
}

#[tokio::test]
async fn ci_status_of_an_unknown_sha_costs_no_forge_call_while_no_task_waits_on_ci() {
    let world = World::new();
    let item = world.add_item(1, "Still in analysis");
    world.to_analysis_verdict(&item).await;
    let repo = world.project().repo.clone();
    let calls = world.forge.calls();
    for index in 0..100u32 {
        let handled = world
            .deliver(Event::CiStatusReported {
                repo: repo.clone(),
                sha: CommitSha::new(format!("{index:040x}")).expect("sha"),
                state: CiState::Failure,
            })
            .await
            .expect("handled");
        assert_eq!(handled.task, None);
    }
    assert_eq!(world.forge.calls(), calls);
}

// --- review ---

#[tokio::test]
async fn review_done_posts_a_review_on_the_pr_and_in_plane_and_awaits_the_final_verdict() {
    let world = World::new();
    let item = world.add_item(1, "Review me");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Success, true).await;
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        webhook: CI success at @fee0001 in acme/widgets
          handled: gate green; review
          task ET-001: development, working → review, working
          job ET-001 reviewer: queued
        run ET-001 reviewer: succeeded
          agent: reviewer runs for ET-001, attempt 1
          handled: review ready; awaiting the final verdict
          task ET-001: review, working → review, awaiting_verdict
          job ET-001 review on the PR: queued
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 review on the PR: succeeded
          gitea: review on PR #1: Looks good. / <!-- orch:1:review:8 -->
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Review by orch** / Looks good.
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the review is ready; approve to merge or reject in Plane (Review me)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn reviewer_requesting_changes_sends_the_task_back_to_development_while_rounds_remain() {
    let world = World::new();
    let item = world.add_item(1, "Needs changes");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Reviewer,
        &[FakeStep::RequestChanges],
    );
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Success, true).await;
    world.run_jobs().await;
    world.ci(&item, CiState::Success, true).await;
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        webhook: CI success at @fee0001 in acme/widgets
          handled: gate green; review
          task ET-001: development, working → review, working
          job ET-001 reviewer: queued
        run ET-001 reviewer: succeeded
          agent: reviewer runs for ET-001, attempt 1
          handled: the reviewer requests changes; development
          task ET-001: review, working → development, working, review round 1
          job ET-001 review on the PR: queued
          job ET-001 comment in Plane: queued
          job ET-001 developer: queued
        run ET-001 review on the PR: succeeded
          gitea: review on PR #1: Please handle the error case. / <!-- orch:1:review:8 -->
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Review by orch** / Please handle the error case.
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: Please handle the error case.
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
        webhook: CI success at @fee0002 in acme/widgets
          handled: gate green; review
          task ET-001: development, working → review, working
          job ET-001 reviewer: queued
        run ET-001 reviewer: succeeded
          agent: reviewer runs for ET-001, attempt 1
          handled: review ready; awaiting the final verdict
          task ET-001: review, working → review, awaiting_verdict
          job ET-001 review on the PR: queued
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 review on the PR: succeeded
          gitea: review on PR #1: Looks good. / <!-- orch:1:review:13 -->
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Review by orch** / Looks good.
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the review is ready; approve to merge or reject in Plane (Needs changes)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn review_approved_merges_pinned_to_the_head_and_finishes_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Ship it");
    world.to_final_verdict(&item).await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    // The whole trip of a work item, from In Progress to merged.
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to In Progress
          handled: task created
          task ET-001: new on feature/ET-001-ship-it, analysis, working
          job ET-001 analyst: queued
        run ET-001 analyst: succeeded
          git: worktree of ET-001 created
          agent: analyst runs for ET-001, attempt 1
          handled: analysis ready; awaiting a verdict
          task ET-001: analysis, working → analysis, awaiting_verdict
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Analysis by orch** / Analysis of Ship it
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the analysis is ready; approve or reject it in Plane (Ship it)
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer made 1 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          gitea: PR #1 opened, feature/ET-001-ship-it into main
          git: ET-001 pushed at @fee0001
          handled: branch pushed, pull request open
          task ET-001: PR #1, head @fee0001
        webhook: CI success at @fee0001 in acme/widgets
          handled: gate green; review
          task ET-001: development, working → review, working
          job ET-001 reviewer: queued
        run ET-001 reviewer: succeeded
          agent: reviewer runs for ET-001, attempt 1
          handled: review ready; awaiting the final verdict
          task ET-001: review, working → review, awaiting_verdict
          job ET-001 review on the PR: queued
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 review on the PR: succeeded
          gitea: review on PR #1: Looks good. / <!-- orch:1:review:8 -->
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Review by orch** / Looks good.
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the review is ready; approve to merge or reject in Plane (Ship it)
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: succeeded
          gitea: PR #1 is merged
          gitea: PR #1 merged at @fee0001
          handled: merged
          task ET-001: review, working → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
        run ET-001 move to In Progress: succeeded
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Ship it
    "#]],
    )
    .await;
    let task = world.task(&item).await;
    assert_eq!(
        world.notifier.subjects().last(),
        Some(&Some(crate::ports::Subject::of(&task))),
        "the message is about the work item and its pull request, for the notifier to link"
    );
}

#[tokio::test]
async fn review_rejected_sends_the_task_back_to_development_with_the_comments() {
    let world = World::new();
    let item = world.add_item(1, "Not yet");
    world.to_final_verdict(&item).await;
    world.clear_transcript().await;
    world.clock.advance(Duration::from_secs(1));
    world.tracker.add_human_comment(
        &item.id,
        &world.person,
        "Rename the flag.",
        world.clock_now(),
    );
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 1 s later
          plane: ada comments on ET-001: Rename the flag.
        ada moves ET-001 to Rejected
          handled: rejected; developer runs again with feedback
          task ET-001: review, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: Rename the flag.
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
    "#]],
    )
    .await;
}

#[tokio::test]
async fn the_move_to_done_after_a_merge_is_one_plane_call_without_a_read() {
    let world = World::new();
    let item = world.add_item(1, "Ship it cheaply");
    world.to_final_verdict(&item).await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.stage, Stage::Done);
    let calls = world.tracker.calls();
    let moves: Vec<usize> = (0..calls.len())
        .filter(|&at| calls[at].starts_with("set_state "))
        .collect();
    let [.., before_done, done] = moves[..] else {
        panic!("two moves at least: {calls:?}");
    };
    // Between the gate's move and Done: the verdict's own re-read, and nothing for Done.
    let reads = calls[before_done..done]
        .iter()
        .filter(|call| call.starts_with("work_item "))
        .count();
    assert_eq!(reads, 1, "the Done move reads nothing first: {calls:?}");
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Done)
    );
}

#[tokio::test]
async fn merge_of_an_already_merged_pull_request_finishes_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Merged twice");
    approve_with_merge_answer(&world, &item, MergeOutcome::AlreadyMerged).await;
    check(
        &world,
        expect![[r#"
            ada moves ET-001 to Approved
              handled: approved; merging at 0000000000
              task ET-001: review, awaiting_verdict → review, working
              job ET-001 merge at @fee0001: queued
              job ET-001 move to In Progress: queued
            run ET-001 merge at @fee0001: succeeded
              handled: merged
              task ET-001: review, working → done, working
              job ET-001 remove the worktree: queued
              job ET-001 move to Done: queued
              job ET-001 notify: queued
            run ET-001 move to In Progress: succeeded
            run ET-001 remove the worktree: succeeded
              git: worktree of ET-001 removed
            run ET-001 move to Done: succeeded
              plane: ET-001 is in Done
              handled: item moved to done
            run ET-001 notify: succeeded
              telegram: ET-001 is merged (#1): Merged twice
        "#]],
    )
    .await;
}

#[tokio::test]
async fn merge_conflict_sends_the_task_to_development_with_rebase_feedback() {
    let world = World::new();
    let item = world.add_item(1, "Conflicted");
    approve_with_merge_answer(
        &world,
        &item,
        MergeOutcome::NeedsRebase {
            reason: "merge conflict".to_owned(),
        },
    )
    .await;
    check(&world, expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: succeeded
          handled: merge needs a rebase; development
          task ET-001: review, working → development, working
          job ET-001 developer: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: The pull request cannot be merged (merge conflict). Rebase onto main and resolve the conflicts.
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
    "#]]).await;
}

#[tokio::test]
async fn merge_try_later_is_retried_with_backoff_and_then_merges() {
    let world = World::new();
    let item = world.add_item(1, "Busy forge");
    approve_with_merge_answer(
        &world,
        &item,
        MergeOutcome::TryLater {
            reason: "please try again later".to_owned(),
        },
    )
    .await;
    // The retry waits for its backoff.
    check(&world, expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: retries later: merge: try again later (please try again later); it merges cleanly here
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
    "#]]).await;
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 301 s later
        run ET-001 merge at @fee0001: succeeded
          gitea: PR #1 is merged
          gitea: PR #1 merged at @fee0001
          handled: merged
          task ET-001: review, working → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Busy forge
    "#]],
    )
    .await;
}

/// Walks `item` to the final verdict, lets `before` change the world, scripts Gitea's 405
/// "Please try again later", approves and runs the jobs; the transcript starts after the walk.
async fn approve_into_try_later(world: &World, item: &WorkItem, before: impl FnOnce(&World)) {
    world.to_final_verdict(item).await;
    world.clear_transcript().await;
    before(world);
    world.forge.script_merge(MergeOutcome::TryLater {
        reason: "Please try again later".to_owned(),
    });
    world
        .move_item(item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
}

#[tokio::test]
async fn merge_try_later_with_a_head_that_conflicts_locally_goes_to_development_to_rebase() {
    let world = World::new();
    let item = world.add_item(1, "Conflicts quietly");
    let work_item = world.task_work_item(1);
    approve_into_try_later(&world, &item, |world| {
        world.workspace.set_conflicts_with_base(&work_item, true);
    })
    .await;
    // Not retried for an hour: the developer rebases.
    check(&world, expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: succeeded
          handled: merge needs a rebase; development
          task ET-001: review, working → development, working
          job ET-001 developer: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: The pull request cannot be merged (conflicts with main). Rebase onto main and resolve the conflicts.
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
    "#]]).await;
}

#[tokio::test]
async fn merge_try_later_with_a_clean_local_merge_is_retried_while_gitea_catches_up() {
    let world = World::new();
    let item = world.add_item(1, "Checker lags");
    approve_into_try_later(&world, &item, |world| {
        for pull in world.forge.pulls() {
            let repo = world.project().repo.clone();
            world.forge.set_mergeable(&repo, pull.number, Some(false));
        }
    })
    .await;
    // The retry waits for its backoff.
    check(&world, expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: retries later: merge: try again later (Please try again later); it merges cleanly here; gitea's mergeability check has not caught up
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
    "#]]).await;
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 301 s later
        run ET-001 merge at @fee0001: succeeded
          gitea: PR #1 is merged
          gitea: PR #1 merged at @fee0001
          handled: merged
          task ET-001: review, working → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Checker lags
    "#]],
    )
    .await;
}

#[tokio::test]
async fn merge_try_later_whose_local_check_fails_is_retried() {
    let world = World::new();
    let item = world.add_item(1, "Git hiccup");
    approve_into_try_later(&world, &item, |world| world.workspace.fail_next(1)).await;
    // An infrastructure error is retried.
    check(&world, expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: waits on git: merge: try again later (Please try again later); the local merge check failed: workspace: unavailable: git is down (fake)
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
    "#]]).await;
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 301 s later
        run ET-001 merge at @fee0001: succeeded
          gitea: PR #1 is merged
          gitea: PR #1 merged at @fee0001
          handled: merged
          task ET-001: review, working → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Git hiccup
    "#]],
    )
    .await;
}

#[tokio::test]
async fn merge_try_later_of_a_pull_request_found_merged_at_our_head_finishes_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Merged meanwhile");
    approve_into_try_later(&world, &item, |world| {
        for pull in world.forge.pulls() {
            let repo = world.project().repo.clone();
            world.forge.close_by_person(&repo, pull.number, true);
        }
    })
    .await;
    check(
        &world,
        expect![[r#"
        outside orch:
          gitea: PR #1 is merged
        ada moves ET-001 to Approved
          handled: approved; merging at 0000000000
          task ET-001: review, awaiting_verdict → review, working
          job ET-001 merge at @fee0001: queued
          job ET-001 move to In Progress: queued
        run ET-001 merge at @fee0001: succeeded
          handled: merged
          task ET-001: review, working → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
        run ET-001 move to In Progress: succeeded
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Merged meanwhile
    "#]],
    )
    .await;
}

#[tokio::test]
async fn merge_refused_blocks_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Protected");
    approve_with_merge_answer(
        &world,
        &item,
        MergeOutcome::Refused {
            reason: "branch is protected".to_owned(),
        },
    )
    .await;
    check(
        &world,
        expect![[r#"
            ada moves ET-001 to Approved
              handled: approved; merging at 0000000000
              task ET-001: review, awaiting_verdict → review, working
              job ET-001 merge at @fee0001: queued
              job ET-001 move to In Progress: queued
            run ET-001 merge at @fee0001: succeeded
              handled: merge refused
              task ET-001: review, working → review, blocked (merge refused: branch is protected)
              job ET-001 notify: queued
            run ET-001 move to In Progress: succeeded
              plane: ET-001 is in In Progress
              handled: item moved to in progress
            run ET-001 notify: succeeded
              telegram: ET-001 is blocked: merge refused: branch is protected
        "#]],
    )
    .await;
}

// --- pull requests closed in Gitea ---

#[tokio::test]
async fn pull_request_merged_by_a_person_finishes_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Merged by hand");
    world.to_final_verdict(&item).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    let pr = task.pr.expect("pr");
    world.forge.close_by_person(&task.repo, pr, true);
    world
        .deliver(Event::PullRequestClosed {
            repo: task.repo.clone(),
            number: pr,
            merged: true,
        })
        .await
        .expect("handled");
    world.run_jobs().await;
    // orch does not merge what a person merged.
    check(
        &world,
        expect![[r#"
        outside orch:
          gitea: PR #1 is merged
        webhook: PR #1 merged
          handled: pull request merged
          task ET-001: review, awaiting_verdict → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Merged by hand
    "#]],
    )
    .await;
}

#[tokio::test]
async fn pull_request_closed_unmerged_by_a_person_blocks_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Closed by hand");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    let pr = task.pr.expect("pr");
    world
        .deliver(Event::PullRequestClosed {
            repo: task.repo.clone(),
            number: pr,
            merged: false,
        })
        .await
        .expect("handled");
    check(&world, expect![[r#"
        webhook: PR #1 closed without merge
          handled: pull request closed without merge
          task ET-001: development, working → development, blocked (pull request #1 was closed without merge; reopen it in Gitea and reject to continue, or cancel the item)
          job ET-001 notify: queued
    "#]]).await;
}

// --- cancel, failures, unblocking ---

#[tokio::test]
async fn cancelled_item_cancels_the_task_its_jobs_its_pr_and_its_worktree() {
    let world = World::new();
    let item = world.add_item(1, "Cancel me");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Failure, true).await;
    world
        .move_item(&item, StateRole::Cancelled)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(&world, expect![[r#"
        webhook: CI failure at @fee0001 in acme/widgets
          handled: CI failed; fix round 1
          task ET-001: fix round 1
          job ET-001 developer: queued
        ada moves ET-001 to Cancelled
          handled: cancelled
          task ET-001: development, working → cancelled, working
          job ET-001 developer: cancelled
          job ET-001 close the PR: queued
          job ET-001 remove the worktree: queued
          job ET-001 notify: queued
        run ET-001 close the PR: succeeded
          gitea: PR #1 is closed
          gitea: comment on PR #1: ET-001 was cancelled; orch closes this pull request. / <!-- orch:1:close -->
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 notify: succeeded
          telegram: ET-001 was cancelled: Cancel me
    "#]]).await;
}

#[tokio::test]
async fn agent_failing_max_attempts_times_blocks_the_task_and_notifies_once() {
    let world = World::new();
    let item = world.add_item(1, "Flaky");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Analyst,
        &[FakeStep::Fail, FakeStep::Fail, FakeStep::Fail],
    );
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    for _ in 0..3 {
        world.run_jobs().await;
        world.clock.advance(Duration::from_secs(301));
    }
    check(&world, expect![[r#"
        ada moves ET-001 to In Progress
          handled: task created
          task ET-001: new on feature/ET-001-flaky, analysis, working
          job ET-001 analyst: queued
        run ET-001 analyst: retries later: analyst exited with code 1
          git: worktree of ET-001 created
          agent: analyst runs for ET-001, attempt 1
        outside orch:
          clock: 301 s later
        run ET-001 analyst: retries later: analyst exited with code 1
          agent: analyst runs for ET-001, attempt 2
        outside orch:
          clock: 301 s later
        run ET-001 analyst: failed: analyst exited with code 1
          agent: analyst runs for ET-001, attempt 3
          handled: analyst finished
          task ET-001: analysis, working → analysis, blocked (analyst failed after 3 attempts: analyst exited with code 1)
          job ET-001 notify: queued
        run ET-001 notify: succeeded
          telegram: ET-001 is blocked: analyst failed after 3 attempts: analyst exited with code 1
        outside orch:
          clock: 301 s later
    "#]]).await;
}

#[tokio::test]
async fn a_blocked_task_rejected_by_a_person_runs_its_agent_again_with_the_comment() {
    let world = World::new();
    let item = world.add_item(1, "Unblock me");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Analyst,
        &[FakeStep::WriteNothing],
    );
    world.to_analysis_verdict(&item).await;
    assert!(world.task(&item).await.status.is_blocked());
    world.clear_transcript().await;
    // The comment is written after the block (Plane's clock has moved since the item did).
    world.clock.advance(Duration::from_secs(1));
    world.tracker.add_human_comment(
        &item.id,
        &world.person,
        "Try again, with tests.",
        world.clock_now(),
    );
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
            outside orch:
              clock: 1 s later
              plane: ada comments on ET-001: Try again, with tests.
            ada moves ET-001 to Rejected
              handled: rejected; analyst runs again with feedback
              task ET-001: analysis, blocked (the analyst wrote no analysis.md) → analysis, working
              job ET-001 analyst: queued
              job ET-001 move to In Progress: queued
            run ET-001 move to In Progress: succeeded
              plane: ET-001 is in In Progress
              handled: item moved to in progress
            run ET-001 analyst: succeeded
              agent: analyst runs for ET-001, attempt 1, feedback: Try again, with tests.
              handled: analysis ready; awaiting a verdict
              task ET-001: analysis, working → analysis, awaiting_verdict
              job ET-001 comment in Plane: queued
              job ET-001 move to In Review: queued
              job ET-001 notify: queued
            run ET-001 comment in Plane: succeeded
              plane: orch comments on ET-001: **Analysis by orch** / Analysis of Unblock me
            run ET-001 move to In Review: succeeded
              plane: ET-001 is in In Review
              handled: item moved to awaiting
            run ET-001 notify: succeeded
              telegram: ET-001: the analysis is ready; approve or reject it in Plane (Unblock me)
        "#]],
    )
    .await;
}

#[tokio::test]
async fn job_end_handled_twice_changes_the_task_once() {
    let world = World::new();
    let item = world.add_item(1, "Replay job end");
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    let analyst = world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("store works")
        .remove(0);
    world
        .handle(Event::JobFinished { job: analyst.id }, Origin::Worker)
        .await
        .expect("handled");
    check(
        &world,
        expect![[r#"
        worker: job 1 finished
          no change: job already handled or still active
    "#]],
    )
    .await;
}

#[tokio::test]
async fn retry_requested_runs_the_stage_agent_again() {
    let world = World::new();
    let item = world.add_item(1, "Retry me");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Analyst,
        &[FakeStep::WriteNothing],
    );
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    world
        .handle(Event::RetryRequested { task: task.id }, Origin::Admin)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        admin: retry ET-001
          handled: retry requested; analyst runs again
          task ET-001: analysis, blocked (the analyst wrote no analysis.md) → analysis, working
          job ET-001 analyst: queued
        run ET-001 analyst: succeeded
          agent: analyst runs for ET-001, attempt 1
          handled: analysis ready; awaiting a verdict
          task ET-001: analysis, working → analysis, awaiting_verdict
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Analysis by orch** / Analysis of Retry me
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the analysis is ready; approve or reject it in Plane (Retry me)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn notifications_survive_a_telegram_outage() {
    let world = World::new();
    let item = world.add_item(1, "Quiet phone");
    world.notifier.set_down(true);
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world.notifier.set_down(false);
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 301 s later
        run ET-001 notify: succeeded
          telegram: ET-001: the analysis is ready; approve or reject it in Plane (Quiet phone)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn a_person_is_not_mistaken_for_orch() {
    let world = World::new();
    let item = world.add_item(1, "Person");
    let moved = world.move_silently(&item, StateRole::InProgress);
    let person = UserId::new("someone-else").expect("valid id");
    world
        .deliver(Event::WorkItemMoved {
            item: moved,
            actor: Some(person),
        })
        .await
        .expect("handled");
    check(
        &world,
        expect![[r#"
        webhook: ET-001 moved to In Progress by someone-else
          handled: task created
          task ET-001: new on feature/ET-001-person, analysis, working
          job ET-001 analyst: queued
    "#]],
    )
    .await;
}

#[tokio::test]
async fn a_verdict_during_a_telegram_outage_is_applied_at_once() {
    let world = World::new();
    let item = world.add_item(1, "Phone is down");
    world.notifier.set_down(true);
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    // A queued notification must not hold the verdict up.
    check(
        &world,
        expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
    "#]],
    )
    .await;
}

#[tokio::test]
async fn a_verdict_older_than_the_open_gate_is_ignored() {
    let world = World::new();
    let item = world.add_item(1, "Stale approval");
    world.to_analysis_verdict(&item).await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    let stale_approval = world.tracker.item(&item.id).expect("item");
    world.clock.advance(Duration::from_secs(600));
    world.run_jobs().await;
    world.ci(&item, CiState::Success, true).await;
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
    world.clear_transcript().await;
    world
        .deliver(Event::WorkItemMoved {
            item: stale_approval,
            actor: Some(world.person.clone()),
        })
        .await
        .expect("handled");
    // An approval of the analysis must not merge.
    check(
        &world,
        expect![[r#"
        webhook: ET-001 moved to Approved by ada
          no change: not newer than what orch knows of the item
    "#]],
    )
    .await;
}

#[tokio::test]
async fn approved_on_a_blocked_review_does_not_merge() {
    let world = World::new();
    let item = world.add_item(1, "Unreviewed");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Reviewer,
        &[FakeStep::Fail, FakeStep::Fail, FakeStep::Fail],
    );
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Success, true).await;
    for _ in 0..3 {
        world.run_jobs().await;
        world.clock.advance(Duration::from_secs(301));
    }
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(&world, expect![[r#"
        webhook: CI success at @fee0001 in acme/widgets
          handled: gate green; review
          task ET-001: development, working → review, working
          job ET-001 reviewer: queued
        run ET-001 reviewer: retries later: reviewer exited with code 1
          agent: reviewer runs for ET-001, attempt 1
        outside orch:
          clock: 301 s later
        run ET-001 reviewer: retries later: reviewer exited with code 1
          agent: reviewer runs for ET-001, attempt 2
        outside orch:
          clock: 301 s later
        run ET-001 reviewer: failed: reviewer exited with code 1
          agent: reviewer runs for ET-001, attempt 3
          handled: reviewer finished
          task ET-001: review, working → review, blocked (reviewer failed after 3 attempts: reviewer exited with code 1)
          job ET-001 notify: queued
        run ET-001 notify: succeeded
          telegram: ET-001 is blocked: reviewer failed after 3 attempts: reviewer exited with code 1
        outside orch:
          clock: 301 s later
        ada moves ET-001 to Approved
          no change: no open gate for this verdict
    "#]]).await;
}

#[tokio::test]
async fn a_fix_round_without_new_commits_blocks_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Lazy fix");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Developer,
        &[FakeStep::Succeed, FakeStep::WriteNothing],
    );
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    check(&world, expect![[r#"
        webhook: CI failure at @fee0001 in acme/widgets
          handled: CI failed; fix round 1
          task ET-001: fix round 1
          job ET-001 developer: queued
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: CI failed at 000000000000000000000000000000c0ffee0001: / - ci/build (failure): build failure http://ci.invalid/000000000000000000000000000000c0ffee0001
          handled: developer finished
          task ET-001: development, working → development, blocked (the developer made no new commits (the head is still 0000000000))
          job ET-001 notify: queued
        run ET-001 notify: succeeded
          telegram: ET-001 is blocked: the developer made no new commits (the head is still 0000000000)
    "#]]).await;
}

#[tokio::test]
async fn a_head_the_reviewer_sent_back_cannot_pass_the_gate_again() {
    let world = World::new();
    let item = world.add_item(1, "Sent back");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Reviewer,
        &[FakeStep::RequestChanges],
    );
    world.agents.script(
        &world.task_work_item(1),
        Agent::Developer,
        &[
            FakeStep::Succeed,
            FakeStep::Fail,
            FakeStep::Fail,
            FakeStep::Fail,
        ],
    );
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Success, true).await;
    for _ in 0..4 {
        world.run_jobs().await;
        world.clock.advance(Duration::from_secs(301));
    }
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Development);
    assert!(task.status.is_blocked(), "{:?}", task.status);
    world.clear_transcript().await;
    world.reconcile_gates().await;
    // The old green head must not undo the block.
    check(
        &world,
        expect![[r#"
        reconciler: gates pass
          replays: forge facts of ET-001 at @fee0001: green
    "#]],
    )
    .await;
}

#[tokio::test]
async fn feedback_includes_the_token_owners_own_comments_but_not_orchs() {
    let world = World::new();
    let item = world.add_item(1, "Solo developer");
    world.to_analysis_verdict(&item).await;
    world.clear_transcript().await;
    world.clock.advance(Duration::from_secs(1));
    world.tracker.add_human_comment(
        &item.id,
        &world.tracker.own_user(),
        "Written by the token's owner.",
        world.clock_now(),
    );
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 1 s later
          plane: orch-user comments on ET-001: Written by the token's owner.
        ada moves ET-001 to Rejected
          handled: rejected; analyst runs again with feedback
          task ET-001: analysis, awaiting_verdict → analysis, working
          job ET-001 analyst: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: succeeded
          plane: ET-001 is in In Progress
          handled: item moved to in progress
        run ET-001 analyst: succeeded
          agent: analyst runs for ET-001, attempt 1, feedback: Written by the token's owner.
          handled: analysis ready; awaiting a verdict
          task ET-001: analysis, working → analysis, awaiting_verdict
          job ET-001 comment in Plane: queued
          job ET-001 move to In Review: queued
          job ET-001 notify: queued
        run ET-001 comment in Plane: succeeded
          plane: orch comments on ET-001: **Analysis by orch** / Analysis of Solo developer
        run ET-001 move to In Review: succeeded
          plane: ET-001 is in In Review
          handled: item moved to awaiting
        run ET-001 notify: succeeded
          telegram: ET-001: the analysis is ready; approve or reject it in Plane (Solo developer)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn a_state_move_overtaken_by_a_later_one_is_skipped() {
    let world = World::new();
    let item = world.add_item(1, "Out of order");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
    world.clear_transcript().await;
    // The person approves; Plane then fails orch's move back to In Progress once.
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    world.tracker.fail_next(1);
    world.run_jobs().await;
    // The developer runs; before the move back lands, a newer move is planned (cancel).
    let task = world.task(&item).await;
    world
        .deliver(Event::CancelRequested { task: task.id })
        .await
        .expect("handled");
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    // The stale move to In Progress never runs after the cancel.
    check(&world, expect![[r#"
        ada moves ET-001 to Approved
          handled: approved; development
          task ET-001: analysis, awaiting_verdict → development, working
          job ET-001 developer: queued
          job ET-001 move to In Progress: queued
        run ET-001 move to In Progress: waits on plane: tracker: unavailable: plane is down (fake)
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1
          handled: developer made 1 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          gitea: PR #1 opened, feature/ET-001-out-of-order into main
          git: ET-001 pushed at @fee0001
          handled: branch pushed, pull request open
          task ET-001: PR #1, head @fee0001
        webhook: cancel ET-001
          handled: cancelled
          task ET-001: development, working → cancelled, working
          job ET-001 close the PR: queued
          job ET-001 remove the worktree: queued
          job ET-001 move to Cancelled: queued
          job ET-001 notify: queued
        outside orch:
          clock: 301 s later
        run ET-001 close the PR: succeeded
          gitea: PR #1 is closed
          gitea: comment on PR #1: ET-001 was cancelled; orch closes this pull request. / <!-- orch:1:close -->
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Cancelled: succeeded
          plane: ET-001 is in Cancelled
          handled: item moved to cancelled
        run ET-001 notify: succeeded
          telegram: ET-001 was cancelled: Out of order
        run ET-001 move to In Progress: succeeded
    "#]]).await;
}
