//! F-1 and F-2 (SPEC §3) and the seed's TC-11 … TC-17, against the fakes.

use std::time::Duration;

use crate::domain::{Agent, CiState, Stage, StateRole, TaskStatus};
use crate::event::Event;
use crate::fakes::World;
use crate::ports::{Store, Via};
use crate::reconciler::{ReconcileMode, Reconciler, TrackerSide};

/// Past every grace of the default config (300 s).
const PAST_GRACE: Duration = Duration::from_secs(301);

// --- F-2, the seed's cases ---

#[tokio::test]
async fn tc11_in_progress_without_a_task_starts_the_pipeline() {
    let world = World::new();
    let item = world.add_item(1, "Lost start");
    world.move_silently(&item, StateRole::InProgress);
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_tracker_once().await;
    assert_eq!(report.unblocked.len(), 1);
    assert_eq!(report.unblocked[0].via, Via::Tracker);
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Analysis);
    assert!(world
        .store
        .has_active_job(task.id)
        .await
        .expect("store works"));
    world.run_jobs().await;
    assert!(
        world
            .messages()
            .iter()
            .any(|message| message.contains("reconcile unblocked ET-001")),
        "F-4: one Telegram message per unblock: {:?}",
        world.messages()
    );
}

#[tokio::test]
async fn tc12_approved_with_a_task_and_no_active_job_replays_the_verdict() {
    let world = World::new();
    let item = world.add_item(1, "Lost approve");
    world.to_analysis_verdict(&item).await;
    world.move_silently(&item, StateRole::Approved);
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_tracker_once().await;
    assert_eq!(report.unblocked.len(), 1);
    assert_eq!(world.task(&item).await.stage, Stage::Development);
}

#[tokio::test]
async fn tc13_rejected_with_a_task_replays_the_verdict() {
    let world = World::new();
    let item = world.add_item(1, "Lost reject");
    world.to_analysis_verdict(&item).await;
    world.move_silently(&item, StateRole::Rejected);
    world.clock.advance(PAST_GRACE);
    world.reconciler.reconcile_tracker_once().await;
    world.run_jobs().await;
    let analyst_runs = world
        .agents
        .requests()
        .iter()
        .filter(|request| request.agent == Agent::Analyst)
        .count();
    assert_eq!(analyst_runs, 2);
}

#[tokio::test]
async fn tc14_an_active_job_means_a_live_webhook_is_in_flight_and_is_skipped() {
    let world = World::new();
    let item = world.add_item(1, "Busy");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world.move_silently(&item, StateRole::Approved);
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_tracker_once().await;
    assert!(report.replays.is_empty());
    assert_eq!(world.task(&item).await.stage, Stage::Analysis);
}

#[tokio::test]
async fn tc14b_an_item_updated_within_grace_is_left_alone() {
    let world = World::new();
    let item = world.add_item(1, "Fresh");
    world.move_silently(&item, StateRole::InProgress);
    world.clock.advance(Duration::from_secs(10));
    let report = world.reconciler.reconcile_tracker_once().await;
    assert!(report.replays.is_empty());
    assert!(world
        .store
        .task_by_issue(&item.id)
        .await
        .expect("store works")
        .is_none());
}

#[tokio::test]
async fn tc16_a_listing_error_is_an_empty_listing_and_a_counted_error() {
    let world = World::new();
    let item = world.add_item(1, "Plane down");
    world.move_silently(&item, StateRole::InProgress);
    world.clock.advance(PAST_GRACE);
    world.tracker.fail_listing_next(1);
    let report = world.reconciler.reconcile_tracker_once().await;
    assert!(report.replays.is_empty());
    assert!(report.tracker_errors >= 1);
    assert!(!report.errors.is_empty());
    assert!(world
        .store
        .task_by_issue(&item.id)
        .await
        .expect("store works")
        .is_none());
    let again = world.reconciler.reconcile_tracker_once().await;
    assert_eq!(again.tracker_errors, 0);
    assert_eq!(again.unblocked.len(), 1, "the next pass recovers");
}

#[tokio::test]
async fn tc16_listing_paginates_and_filters_by_state_on_orchs_side() {
    let world = World::new();
    let started = world.add_item(1, "Started");
    world.add_item(2, "Backlog one");
    let other = world.add_item(3, "Started too");
    world.add_item(4, "Backlog two");
    world.add_item(5, "Backlog three");
    world.move_silently(&started, StateRole::InProgress);
    world.move_silently(&other, StateRole::InProgress);
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_tracker_once().await;
    assert_eq!(report.unblocked.len(), 2);
    let list_calls = world
        .tracker
        .calls()
        .iter()
        .filter(|call| call.starts_with("list_work_items"))
        .count();
    assert_eq!(list_calls, 3, "five items at two per page are three pages");
}

#[tokio::test]
async fn tc17_every_project_is_polled_with_its_own_state_ids() {
    let world = World::with_projects(2);
    let first = world.add_item_in(0, 1, "In the first project");
    let second = world.add_item_in(1, 1, "In the second project");
    world.move_silently(&first, StateRole::InProgress);
    world.move_silently(&second, StateRole::InProgress);
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_tracker_once().await;
    assert_eq!(report.unblocked.len(), 2);
    let calls = world.tracker.calls();
    for project in &world.config.projects {
        assert!(calls.contains(&format!("project_states {}", project.plane_project_id)));
        assert!(calls.contains(&format!("list_work_items {}", project.plane_project_id)));
    }
    assert_eq!(world.task(&second).await.work_item.to_string(), "P2-001");
    assert_ne!(first.project, second.project);
}

#[tokio::test]
async fn cancelled_in_plane_while_the_webhook_was_lost_cancels_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Lost cancel");
    world.to_analysis_verdict(&item).await;
    world.move_silently(&item, StateRole::Cancelled);
    world.clock.advance(PAST_GRACE);
    world.reconciler.reconcile_tracker_once().await;
    assert_eq!(world.task(&item).await.stage, Stage::Cancelled);
}

#[tokio::test]
async fn steady_state_tracker_pass_stops_at_the_watermark() {
    let world = World::new();
    for sequence in 1..=9 {
        world.add_item(sequence, "Old item");
    }
    world.clock.advance(PAST_GRACE);
    world.reconciler.reconcile_tracker_once().await;
    let first_pass = world
        .tracker
        .calls()
        .iter()
        .filter(|call| call.starts_with("list_work_items"))
        .count();
    assert_eq!(first_pass, 5, "the first pass is a full pass");
    world
        .clock
        .advance(Duration::from_secs(3600) - Duration::from_secs(1) - PAST_GRACE);
    world.reconciler.reconcile_tracker_once().await;
    let second_pass = world
        .tracker
        .calls()
        .iter()
        .filter(|call| call.starts_with("list_work_items"))
        .count()
        - first_pass;
    assert_eq!(second_pass, 1, "a steady-state pass reads one page");
}

// --- F-1 ---

#[tokio::test]
async fn f1_recovers_a_lost_ci_status_and_moves_the_task_to_review() {
    let world = World::new();
    let item = world.add_item(1, "Lost CI webhook");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Success, false).await;
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_gates_once().await;
    assert_eq!(report.unblocked.len(), 1);
    assert_eq!(report.unblocked[0].via, Via::Gate);
    assert_eq!(world.task(&item).await.stage, Stage::Review);
    world.run_jobs().await;
    assert!(world
        .messages()
        .iter()
        .any(|message| message.contains("reconcile unblocked ET-001")));
}

#[tokio::test]
async fn f1_leaves_a_task_within_grace_alone() {
    let world = World::new();
    let item = world.add_item(1, "Young");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Success, false).await;
    let report = world.reconciler.reconcile_gates_once().await;
    assert_eq!(report.candidates_checked, 0);
    assert_eq!(world.task(&item).await.stage, Stage::Development);
}

#[tokio::test]
async fn f1_red_gate_changes_nothing_and_sends_no_notification() {
    let world = World::new();
    let item = world.add_item(1, "Pending forever");
    world.to_ci_wait(&item).await;
    world.run_jobs().await;
    let before = world.messages().len();
    let task = world.task(&item).await;
    world.clock.advance(PAST_GRACE);
    for _ in 0..3 {
        let report = world.reconciler.reconcile_gates_once().await;
        assert!(report.unblocked.is_empty());
        assert_eq!(
            report.candidates_checked, 1,
            "the facts are read and forwarded"
        );
        world.run_jobs().await;
    }
    assert_eq!(world.messages().len(), before);
    assert_eq!(world.task(&item).await.version, task.version);
}

#[tokio::test]
async fn f1_replays_a_lost_ci_failure_once_per_head_sha() {
    let world = World::new();
    let item = world.add_item(1, "Lost red");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Failure, false).await;
    world.clock.advance(PAST_GRACE);
    let first = world.reconciler.reconcile_gates_once().await;
    assert_eq!(first.unblocked.len(), 1);
    assert_eq!(world.task(&item).await.fix_rounds, 1);
    let second = world.reconciler.reconcile_gates_once().await;
    assert!(
        second.replays.is_empty(),
        "an active fix round is not a candidate"
    );
}

#[tokio::test]
async fn f1_moves_a_blocked_development_task_on_when_ci_turns_green() {
    let world = World::with_config(|config| config.max_fix_rounds = 0);
    let item = world.add_item(1, "Blocked then green");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    assert!(world.task(&item).await.status.is_blocked());
    world.ci(&item, CiState::Success, false).await;
    world.clock.advance(PAST_GRACE);
    world.reconciler.reconcile_gates_once().await;
    let task = world.task(&item).await;
    assert_eq!(
        (task.stage, task.status),
        (Stage::Review, TaskStatus::Working)
    );
}

#[tokio::test]
async fn human_gated_stages_are_not_touched_by_f1() {
    let world = World::new();
    let item = world.add_item(1, "Awaiting a person");
    world.to_analysis_verdict(&item).await;
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_gates_once().await;
    assert_eq!(report.candidates_checked, 0);
}

// --- F-4 and the switches ---

#[tokio::test]
async fn a_whole_pass_is_recorded_with_its_unblocks_for_the_queue_view() {
    let world = World::new();
    let item = world.add_item(1, "Recorded");
    world.move_silently(&item, StateRole::InProgress);
    world.clock.advance(PAST_GRACE);
    world.reconciler.run_once(TrackerSide::Enabled).await;
    let stats = world.store.reconcile_stats().await.expect("store works");
    assert_eq!((stats.runs_total, stats.unblocked_total), (1, 1));
    assert_eq!(stats.recent_unblocked[0].work_item.to_string(), "ET-001");
}

#[tokio::test]
async fn with_the_tracker_side_disabled_a_pass_does_not_call_plane() {
    let world = World::new();
    world.clock.advance(PAST_GRACE);
    world.reconciler.run_once(TrackerSide::Disabled).await;
    assert!(world.tracker.calls().is_empty());
}

#[tokio::test]
async fn a_dry_run_lists_replays_and_changes_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Dry");
    world.move_silently(&item, StateRole::InProgress);
    world.clock.advance(PAST_GRACE);
    let dry = Reconciler::new(
        world.ports.clone(),
        world.config.clone(),
        world.orchestrator.clone(),
    )
    .with_mode(ReconcileMode::DryRun);
    let report = dry.run_once(TrackerSide::Enabled).await;
    assert!(matches!(
        report.replays.as_slice(),
        [Event::WorkItemMoved { .. }]
    ));
    assert!(world
        .store
        .task_by_issue(&item.id)
        .await
        .expect("store works")
        .is_none());
    assert_eq!(
        world
            .store
            .reconcile_stats()
            .await
            .expect("store works")
            .runs_total,
        0
    );
    assert_eq!(
        world
            .store
            .tracker_watermark(&item.project)
            .await
            .expect("store works"),
        None
    );
}

#[tokio::test]
async fn f1_finishes_a_task_whose_pull_request_a_person_merged_while_the_webhook_was_lost() {
    let world = World::new();
    let item = world.add_item(1, "Merged by hand");
    world.to_ci_wait(&item).await;
    let task = world.task(&item).await;
    world
        .forge
        .close_by_person(&task.repo, task.pr.expect("pr"), true);
    world.clock.advance(PAST_GRACE);
    let report = world.reconciler.reconcile_gates_once().await;
    assert!(matches!(
        report.replays.as_slice(),
        [Event::ForgeObserved { report, .. }] if report.pull.as_ref().is_some_and(|pull| pull.merged)
    ));
    assert_eq!(report.unblocked.len(), 1);
    assert_eq!(world.task(&item).await.stage, Stage::Done);
}

#[tokio::test]
async fn f1_follows_a_head_a_person_pushed_while_the_webhook_was_lost_and_moves_on_when_green() {
    let world = World::with_config(|config| config.max_fix_rounds = 0);
    let item = world.add_item(1, "Fixed by hand");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    assert!(world.task(&item).await.status.is_blocked());
    let task = world.task(&item).await;
    let pushed = orch_core_sha('f');
    world
        .forge
        .set_branch_head(&task.repo, task.branch.as_str(), &pushed);
    world
        .forge
        .set_status(&task.repo, &pushed, CiState::Success);
    world.clock.advance(PAST_GRACE);
    world.reconciler.reconcile_gates_once().await;
    assert_eq!(world.task(&item).await.head_sha, Some(pushed));
    world.clock.advance(PAST_GRACE);
    world.reconciler.reconcile_gates_once().await;
    assert_eq!(world.task(&item).await.stage, Stage::Review);
}

fn orch_core_sha(digit: char) -> crate::ids::CommitSha {
    crate::ids::CommitSha::new(std::iter::repeat_n(digit, 40).collect::<String>())
        .expect("valid sha")
}

#[tokio::test]
async fn f1_does_not_block_again_a_task_whose_pull_request_was_closed_unmerged() {
    let world = World::new();
    let item = world.add_item(1, "Closed by hand");
    world.to_ci_wait(&item).await;
    let task = world.task(&item).await;
    let pr = task.pr.expect("pr");
    world.forge.close_by_person(&task.repo, pr, false);
    world
        .deliver(Event::PullRequestClosed {
            repo: task.repo.clone(),
            number: pr,
            merged: false,
        })
        .await
        .expect("handled");
    world.run_jobs().await;
    let blocked = world.task(&item).await;
    assert!(blocked.status.is_blocked());
    let messages = world.messages().len();
    for _ in 0..3 {
        world.clock.advance(PAST_GRACE);
        world.reconciler.reconcile_gates_once().await;
        world.run_jobs().await;
    }
    assert_eq!(
        world.messages().len(),
        messages,
        "no notification spam: {:?}",
        world.messages()
    );
    assert_eq!(world.task(&item).await.version, blocked.version);
}

#[tokio::test]
async fn a_lost_rejection_of_a_blocked_task_still_applies_after_the_task_follows_a_push() {
    let world = World::with_config(|config| config.max_fix_rounds = 0);
    let item = world.add_item(1, "Rejected then pushed");
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    assert!(world.task(&item).await.status.is_blocked());
    world.clock.advance(Duration::from_secs(60));
    world.tracker.add_human_comment(
        &item.id,
        &world.person,
        "Try the other approach.",
        world.clock_now(),
    );
    world.move_silently(&item, StateRole::Rejected);
    // A person also pushes; both webhooks are lost.
    let task = world.task(&item).await;
    let pushed = orch_core_sha('a');
    world
        .forge
        .set_branch_head(&task.repo, task.branch.as_str(), &pushed);
    world.clock.advance(PAST_GRACE);
    world.reconciler.run_once(TrackerSide::Enabled).await;
    world.clock.advance(PAST_GRACE);
    world.reconciler.run_once(TrackerSide::Enabled).await;
    world.run_jobs().await;
    let last = world.agents.requests().pop().expect("a request");
    assert_eq!(
        (last.agent, last.feedback.as_deref()),
        (Agent::Developer, Some("Try the other approach."))
    );
}
