//! The handlers of SPEC §2 and the rows of SPEC §1.1, against the fakes.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    Agent, CiState, JobKind, JobStatus, MergeOutcome, Stage, StateRole, TaskStatus,
};
use crate::event::{Event, Origin};
use crate::fakes::{FakeStep, World};
use crate::ids::{CommitSha, RepoSlug, UserId};
use crate::ports::{PrState, Store, WorkItem};

mod convergence;

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

/// Walks `item` to the final verdict, scripts Gitea's merge answer, and approves.
async fn approve_with_merge_answer(world: &World, item: &WorkItem, answer: MergeOutcome) {
    world.to_final_verdict(item).await;
    world.forge.script_merge(answer);
    world
        .move_item(item, StateRole::Approved)
        .await
        .expect("handled");
    world.run_jobs().await;
}

fn agent_runs(world: &World, agent: Agent) -> usize {
    world
        .agents
        .requests()
        .iter()
        .filter(|request| request.agent == agent)
        .count()
}

// --- status_start ---

#[tokio::test]
async fn status_start_creates_one_task_on_its_branch_with_one_analyst_job() {
    let world = World::new();
    let item = world.add_item(1, "Fix login redirect loop");
    let handled = world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    assert!(handled.changed);
    let task = world.task(&item).await;
    assert_eq!(task.work_item.to_string(), "ET-001");
    assert_eq!(
        task.branch.as_str(),
        "feature/ET-001-fix-login-redirect-loop"
    );
    assert_eq!(
        (task.stage, task.status.clone()),
        (Stage::Analysis, TaskStatus::Working)
    );
    assert_eq!(
        active_agent_jobs(&world, &item).await,
        vec![JobKind::Agent(Agent::Analyst)]
    );
}

#[tokio::test]
async fn status_start_for_an_item_with_a_task_does_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Once");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    let again = world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    assert!(!again.changed);
    assert_eq!(
        world.store.list_tasks(10).await.expect("store works").len(),
        1
    );
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
    assert!(!world.deliver(event).await.expect("handled").changed);
    assert!(world
        .store
        .task_by_issue(&item.id)
        .await
        .expect("store works")
        .is_none());
}

// --- analysis ---

#[tokio::test]
async fn analysis_done_posts_the_analysis_moves_the_item_to_awaiting_and_notifies() {
    let world = World::new();
    let item = world.add_item(1, "Analyse me");
    world.to_analysis_verdict(&item).await;
    let task = world.task(&item).await;
    assert_eq!(
        (task.stage, task.status),
        (Stage::Analysis, TaskStatus::AwaitingVerdict)
    );
    let comments = world.tracker.orch_comments(&item.id);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].text.contains("Analysis of Analyse me"));
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Awaiting)
    );
    assert_eq!(world.messages().len(), 1);
    assert!(world.messages()[0].contains("ET-001"));
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
    let task = world.task(&item).await;
    assert!(
        matches!(task.status, TaskStatus::Blocked { ref reason } if reason.contains("analysis.md"))
    );
    assert_eq!(world.messages().len(), 1);
}

#[tokio::test]
async fn analysis_approved_moves_to_development_runs_the_developer_and_moves_the_item_back() {
    let world = World::new();
    let item = world.add_item(1, "Approve me");
    world.to_analysis_verdict(&item).await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    let task = world.task(&item).await;
    assert_eq!(
        (task.stage, task.status),
        (Stage::Development, TaskStatus::Working)
    );
    assert_eq!(
        active_agent_jobs(&world, &item).await,
        vec![JobKind::Agent(Agent::Developer)]
    );
    world.run_jobs().await;
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::InProgress)
    );
}

#[tokio::test]
async fn analysis_rejected_runs_the_analyst_again_with_the_peoples_comments_as_feedback() {
    let world = World::new();
    let item = world.add_item(1, "Reject me");
    world.to_analysis_verdict(&item).await;
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
    let analyst_requests: Vec<_> = world
        .agents
        .requests()
        .into_iter()
        .filter(|request| request.agent == Agent::Analyst)
        .collect();
    assert_eq!(analyst_requests.len(), 2);
    assert_eq!(
        analyst_requests[1].feedback.as_deref(),
        Some("Consider the mobile app too.")
    );
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
}

#[tokio::test]
async fn approved_delivered_twice_advances_once() {
    let world = World::new();
    let item = world.add_item(1, "Twice");
    world.to_analysis_verdict(&item).await;
    let first = world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    let second = world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    assert!(first.changed);
    assert!(!second.changed);
    world.run_jobs().await;
    assert_eq!(agent_runs(&world, Agent::Developer), 1);
}

#[tokio::test]
async fn approved_while_not_awaiting_a_verdict_does_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Too early");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    let handled = world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    assert!(!handled.changed);
    assert_eq!(world.task(&item).await.stage, Stage::Analysis);
}

// --- development ---

#[tokio::test]
async fn development_done_pushes_the_branch_and_opens_exactly_one_pull_request() {
    let world = World::new();
    let item = world.add_item(1, "Build it");
    world.to_ci_wait(&item).await;
    let task = world.task(&item).await;
    assert_eq!(
        (task.stage, task.status.clone()),
        (Stage::Development, TaskStatus::Working)
    );
    assert!(task.pr.is_some() && task.head_sha.is_some());
    assert_eq!(world.forge.pulls().len(), 1);
    assert_eq!(world.workspace.pushes().len(), 1);
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
    world.to_ci_wait(&item).await;
    let task = world.task(&item).await;
    assert!(task.pr.is_some(), "{:?}", task.status);
    assert_eq!(world.workspace.pushes()[0].1, task.head_sha.expect("head"));
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
    world.to_ci_wait(&item).await;
    assert!(
        matches!(world.task(&item).await.status, TaskStatus::Blocked { ref reason } if reason.contains("no commits"))
    );
}

#[tokio::test]
async fn development_gate_green_moves_the_task_to_review() {
    let world = World::new();
    let item = world.add_item(1, "Green");
    world.to_ci_wait(&item).await;
    let handled = world
        .ci(&item, CiState::Success, true)
        .await
        .expect("delivered");
    assert!(handled.changed);
    assert_eq!(world.task(&item).await.stage, Stage::Review);
    assert_eq!(
        active_agent_jobs(&world, &item).await,
        vec![JobKind::Agent(Agent::Reviewer)]
    );
}

#[tokio::test]
async fn ci_pending_does_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Pending");
    world.to_ci_wait(&item).await;
    let handled = world
        .ci(&item, CiState::Pending, true)
        .await
        .expect("delivered");
    assert!(!handled.changed);
}

#[tokio::test]
async fn ci_failure_runs_one_fix_round_per_head_sha_with_the_ci_feedback() {
    let world = World::new();
    let item = world.add_item(1, "Red");
    world.to_ci_wait(&item).await;
    assert!(
        world
            .ci(&item, CiState::Failure, true)
            .await
            .expect("delivered")
            .changed
    );
    assert!(
        !world
            .ci(&item, CiState::Failure, true)
            .await
            .expect("delivered")
            .changed
    );
    let task = world.task(&item).await;
    assert_eq!(task.fix_rounds, 1);
    world.run_jobs().await;
    let developer_requests: Vec<_> = world
        .agents
        .requests()
        .into_iter()
        .filter(|request| request.agent == Agent::Developer)
        .collect();
    assert_eq!(developer_requests.len(), 2);
    assert!(developer_requests[1]
        .feedback
        .as_deref()
        .is_some_and(|feedback| feedback.contains("CI failed")));
    let after_fix = world.task(&item).await;
    assert_ne!(
        after_fix.head_sha, task.head_sha,
        "the fix round pushed a new head"
    );
}

#[tokio::test]
async fn fix_rounds_beyond_the_maximum_block_the_task() {
    let world = World::with_config(|config| config.max_fix_rounds = 1);
    let item = world.add_item(1, "Always red");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    world.ci(&item, CiState::Failure, true).await;
    let task = world.task(&item).await;
    assert!(
        matches!(task.status, TaskStatus::Blocked { ref reason } if reason.contains("CI failed 2 times"))
    );
}

#[tokio::test]
async fn ci_status_at_a_head_someone_pushed_follows_the_pull_request_and_reads_the_gate() {
    let world = World::new();
    let item = world.add_item(1, "Resolve by PR");
    let other = world.add_item(2, "Second task");
    world.to_ci_wait(&item).await;
    world.to_ci_wait(&other).await;
    let task = world.task(&item).await;
    // A person pushes to the task's branch; Gitea's push webhook is lost.
    let pushed = CommitSha::new("d".repeat(40)).expect("sha");
    world
        .forge
        .set_branch_head(&task.repo, task.branch.as_str(), &pushed);
    world
        .forge
        .set_status(&task.repo, &pushed, CiState::Success);
    let handled = world
        .deliver(Event::CiStatusReported {
            repo: task.repo.clone(),
            sha: pushed.clone(),
            state: CiState::Success,
        })
        .await
        .expect("handled");
    assert_eq!(handled.task, Some(task.id));
    let task = world.task(&item).await;
    assert_eq!(
        task.head_sha,
        Some(pushed),
        "the task follows its pull request's head"
    );
    assert_eq!(
        task.stage,
        Stage::Review,
        "and the green gate at that head is read"
    );
}

#[tokio::test]
async fn ci_status_of_an_unknown_sha_with_two_waiting_tasks_is_not_guessed() {
    let world = World::new();
    let first = world.add_item(1, "One");
    let second = world.add_item(2, "Two");
    world.to_ci_wait(&first).await;
    world.to_ci_wait(&second).await;
    let repo = world.project().repo.clone();
    let unknown = CommitSha::new("e".repeat(40)).expect("sha");
    let handled = world
        .deliver(Event::CiStatusReported {
            repo,
            sha: unknown,
            state: CiState::Failure,
        })
        .await
        .expect("handled");
    assert_eq!(handled.task, None);
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
    world.to_final_verdict(&item).await;
    let task = world.task(&item).await;
    assert_eq!(
        (task.stage, task.status),
        (Stage::Review, TaskStatus::AwaitingVerdict)
    );
    assert_eq!(world.forge.reviews().len(), 1);
    assert_eq!(world.tracker.orch_comments(&item.id).len(), 2);
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Awaiting)
    );
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
    world.to_final_verdict(&item).await;
    let task = world.task(&item).await;
    assert_eq!((task.stage, task.review_rounds), (Stage::Development, 1));
    let developer_requests: Vec<_> = world
        .agents
        .requests()
        .into_iter()
        .filter(|request| request.agent == Agent::Developer)
        .collect();
    assert_eq!(
        developer_requests
            .last()
            .and_then(|r| r.feedback.clone())
            .as_deref(),
        Some("Please handle the error case.")
    );
    world.ci(&item, CiState::Success, true).await;
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
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
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Done);
    assert_eq!(
        world.forge.merges(),
        vec![(
            task.repo.clone(),
            task.pr.expect("pr"),
            task.head_sha.clone().expect("head")
        )]
    );
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Done)
    );
    assert!(!world.workspace.exists(&task.work_item));
    assert!(world
        .messages()
        .last()
        .is_some_and(|message| message.contains("merged")));
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
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Development);
    world.run_jobs().await;
    let last = world.agents.requests().pop().expect("a request");
    assert_eq!(
        (last.agent, last.feedback.as_deref()),
        (Agent::Developer, Some("Rename the flag."))
    );
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
    assert_eq!(world.task(&item).await.stage, Stage::Done);
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
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Development);
    let last = world.agents.requests().pop().expect("a request");
    assert!(last
        .feedback
        .as_deref()
        .is_some_and(|feedback| feedback.contains("Rebase onto main")));
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
    assert_eq!(
        world.task(&item).await.stage,
        Stage::Review,
        "the retry waits for its backoff"
    );
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.stage, Stage::Done);
}

/// Walks `item` to the final verdict, lets `before` change the world, scripts Gitea's 405
/// "Please try again later", approves and runs the jobs.
async fn approve_into_try_later(world: &World, item: &WorkItem, before: impl FnOnce(&World)) {
    world.to_final_verdict(item).await;
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

fn merge_job_error(jobs: &[crate::domain::Job]) -> String {
    jobs.iter()
        .find(|job| job.kind() == JobKind::Merge)
        .and_then(|job| job.last_error.clone())
        .unwrap_or_default()
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
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Development, "not retried for an hour");
    let last = world.agents.requests().pop().expect("a request");
    let feedback = last.feedback.unwrap_or_default();
    assert!(
        last.agent == Agent::Developer
            && feedback.contains("conflicts with main")
            && feedback.contains("Rebase onto main"),
        "{feedback}"
    );
    assert!(world.forge.merges().is_empty());
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
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Review, "the retry waits for its backoff");
    let jobs = world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("store works");
    assert!(
        merge_job_error(&jobs).contains("has not caught up"),
        "{jobs:?}"
    );
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.stage, Stage::Done);
}

#[tokio::test]
async fn merge_try_later_whose_local_check_fails_is_retried() {
    let world = World::new();
    let item = world.add_item(1, "Git hiccup");
    approve_into_try_later(&world, &item, |world| world.workspace.fail_next(1)).await;
    let task = world.task(&item).await;
    assert_eq!(
        task.stage,
        Stage::Review,
        "an infrastructure error is retried"
    );
    let jobs = world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("store works");
    assert!(
        merge_job_error(&jobs).contains("local merge check failed"),
        "{jobs:?}"
    );
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.stage, Stage::Done);
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
    assert_eq!(world.task(&item).await.stage, Stage::Done);
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
    assert!(
        matches!(world.task(&item).await.status, TaskStatus::Blocked { ref reason } if reason.contains("protected"))
    );
}

// --- pull requests closed in Gitea ---

#[tokio::test]
async fn pull_request_merged_by_a_person_finishes_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Merged by hand");
    world.to_final_verdict(&item).await;
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
    assert_eq!(world.task(&item).await.stage, Stage::Done);
    assert!(
        world.forge.merges().is_empty(),
        "orch does not merge what a person merged"
    );
}

#[tokio::test]
async fn pull_request_closed_unmerged_by_a_person_blocks_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Closed by hand");
    world.to_ci_wait(&item).await;
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
    assert!(world.task(&item).await.status.is_blocked());
}

// --- cancel, failures, unblocking ---

#[tokio::test]
async fn cancelled_item_cancels_the_task_its_jobs_its_pr_and_its_worktree() {
    let world = World::new();
    let item = world.add_item(1, "Cancel me");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Failure, true).await;
    world
        .move_item(&item, StateRole::Cancelled)
        .await
        .expect("handled");
    world.run_jobs().await;
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Cancelled);
    let jobs = world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("store works");
    assert!(jobs
        .iter()
        .any(|job| job.kind() == JobKind::Agent(Agent::Developer)
            && job.status == JobStatus::Cancelled));
    assert_eq!(world.forge.pulls()[0].state, PrState::Closed);
    assert!(!world.workspace.exists(&task.work_item));
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
    let task = world.task(&item).await;
    assert!(
        matches!(task.status, TaskStatus::Blocked { ref reason } if reason.contains("after 3 attempts"))
    );
    assert_eq!(agent_runs(&world, Agent::Analyst), 3);
    assert_eq!(world.messages().len(), 1);
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
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
}

#[tokio::test]
async fn job_end_handled_twice_changes_the_task_once() {
    let world = World::new();
    let item = world.add_item(1, "Replay job end");
    world.to_analysis_verdict(&item).await;
    let task = world.task(&item).await;
    let analyst = world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("store works")
        .remove(0);
    let again = world
        .orchestrator
        .handle(&Event::JobFinished { job: analyst.id }, Origin::Worker)
        .await
        .expect("handled");
    assert!(!again.changed);
    assert_eq!(world.task(&item).await.version, task.version);
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
    let task = world.task(&item).await;
    world
        .orchestrator
        .handle(&Event::RetryRequested { task: task.id }, Origin::Admin)
        .await
        .expect("handled");
    world.run_jobs().await;
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
}

#[tokio::test]
async fn notifications_survive_a_telegram_outage() {
    let world = World::new();
    let item = world.add_item(1, "Quiet phone");
    world.notifier.set_down(true);
    world.to_analysis_verdict(&item).await;
    assert!(world.messages().is_empty());
    world.notifier.set_down(false);
    world.clock.advance(Duration::from_secs(301));
    world.run_jobs().await;
    assert_eq!(world.messages().len(), 1);
}

#[tokio::test]
async fn a_person_is_not_mistaken_for_orch() {
    let world = World::new();
    let item = world.add_item(1, "Person");
    let moved = world.move_silently(&item, StateRole::InProgress);
    let person = UserId::new("someone-else").expect("valid id");
    assert!(
        world
            .deliver(Event::WorkItemMoved {
                item: moved,
                actor: Some(person)
            })
            .await
            .expect("handled")
            .changed
    );
}

#[tokio::test]
async fn a_verdict_during_a_telegram_outage_is_applied_at_once() {
    let world = World::new();
    let item = world.add_item(1, "Phone is down");
    world.notifier.set_down(true);
    world.to_analysis_verdict(&item).await;
    let handled = world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    assert!(
        handled.changed,
        "a queued notification must not hold the verdict up: {}",
        handled.note
    );
    assert_eq!(world.task(&item).await.stage, Stage::Development);
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
    let handled = world
        .deliver(Event::WorkItemMoved {
            item: stale_approval,
            actor: Some(world.person.clone()),
        })
        .await
        .expect("handled");
    assert!(
        !handled.changed,
        "an approval of the analysis must not merge: {}",
        handled.note
    );
    assert!(world.forge.merges().is_empty());
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
    world.ci(&item, CiState::Success, true).await;
    for _ in 0..3 {
        world.run_jobs().await;
        world.clock.advance(Duration::from_secs(301));
    }
    assert!(world.task(&item).await.status.is_blocked());
    let handled = world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    assert!(!handled.changed);
    world.run_jobs().await;
    assert!(world.forge.merges().is_empty());
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
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    let task = world.task(&item).await;
    assert!(
        matches!(task.status, TaskStatus::Blocked { ref reason } if reason.contains("no new commits")),
        "{:?}",
        task.status
    );
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
    let report = world.reconciler.reconcile_gates_once().await;
    assert!(
        report.unblocked.is_empty(),
        "the old green head must not undo the block"
    );
    assert_eq!(world.task(&item).await.stage, Stage::Development);
}

#[tokio::test]
async fn feedback_includes_the_token_owners_own_comments_but_not_orchs() {
    let world = World::new();
    let item = world.add_item(1, "Solo developer");
    world.to_analysis_verdict(&item).await;
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
    let last = world.agents.requests().pop().expect("a request");
    assert_eq!(
        last.feedback.as_deref(),
        Some("Written by the token's owner.")
    );
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
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Cancelled),
        "the stale move to In Progress must not land after the cancel"
    );
    assert!(
        !world
            .tracker
            .state_changes()
            .iter()
            .any(|(_, state)| state == &world.state_of_role(&item, StateRole::InProgress)),
        "the overtaken move never ran"
    );
}
