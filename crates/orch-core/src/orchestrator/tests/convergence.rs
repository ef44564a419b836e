//! Regression tests of SPEC §4.1 (convergence): outages, people acting at any time, clock
//! skew, and the pipeline table driving behaviour. Each names the defect it guards.

use std::time::Duration;

use expect_test::expect;

use crate::domain::{
    Action, Agent, CiState, JobKind, JobStatus, Service, Stage, StateRole, TaskStatus,
};
use crate::event::{Event, Origin};
use crate::executor::still_current;
use crate::fakes::{FakeStep, World};
use crate::orchestrator::tests::check;
use crate::pipeline::{transition_of, ExitGate, OnPass, STAGE_TRANSITIONS};
use crate::ports::{PrState, Store, WorkItem};

async fn jobs_of(world: &World, item: &WorkItem) -> Vec<crate::domain::Job> {
    let task = world.task(item).await;
    world.store.jobs_of_task(task.id).await.expect("jobs")
}

// --- 3. infrastructure failures never use up an agent's attempts ---

#[tokio::test]
async fn a_failed_fetch_while_preparing_an_agent_waits_without_using_up_its_attempts() {
    let world = World::new();
    let item = world.add_item(1, "Gitea restarts");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    // Gitea's git hosting is down for longer than the agent's three attempts would last.
    world.workspace.fail_next(6);
    world.run_jobs_over_time(8).await;
    let task = world.task(&item).await;
    assert_eq!(
        task.status,
        TaskStatus::AwaitingVerdict,
        "the outage delayed the analyst, it did not block the task"
    );
    let analyst = jobs_of(&world, &item)
        .await
        .into_iter()
        .find(|job| job.kind() == JobKind::Agent(Agent::Analyst))
        .expect("analyst job");
    assert_eq!(analyst.attempts, 1, "only the real run counted");
}

// --- 4. outward actions never give up silently; an outage is visible once ---

#[tokio::test]
async fn a_long_plane_outage_delays_the_analysis_comment_but_never_drops_it() {
    let world = World::new();
    let item = world.add_item(1, "Plane is down for hours");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    // Plane fails every call for longer than 30 attempts at the 5 min cap (2.5 h).
    world.tracker.fail_next(u32::MAX);
    world.run_jobs_over_time(40).await;
    let waiting: Vec<_> = jobs_of(&world, &item)
        .await
        .into_iter()
        .filter(|job| job.status.is_active())
        .collect();
    assert!(
        waiting
            .iter()
            .any(|job| job.kind() == JobKind::TrackerComment
                && job.waiting.map(|w| w.service) == Some(Service::Plane)),
        "the comment still waits on Plane: {waiting:?}"
    );
    // One message about the outage, however many passes see it.
    for _ in 0..3 {
        world.reconciler.watch_outages_once().await;
        world.run_jobs().await;
    }
    let outage: Vec<String> = world
        .messages()
        .into_iter()
        .filter(|message| message.contains("cannot reach plane"))
        .collect();
    assert_eq!(outage.len(), 1, "{outage:?}");
    world.tracker.fail_next(0);
    world.run_jobs_over_time(2).await;
    assert_eq!(world.tracker.orch_comments(&item.id).len(), 1);
    assert!(jobs_of(&world, &item)
        .await
        .iter()
        .all(|job| !job.status.is_active()));
}

// --- 5. Rejected unblocks the blocked stage's own agent ---

#[tokio::test]
async fn rejected_on_a_blocked_review_runs_the_reviewer_again_with_the_comment() {
    let world = World::new();
    let item = world.add_item(1, "Reviewer wrote nothing");
    world.agents.script(
        &world.task_work_item(1),
        Agent::Reviewer,
        &[FakeStep::WriteNothing],
    );
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Success, true).await;
    world.run_jobs().await;
    let task = world.task(&item).await;
    assert_eq!(task.stage, Stage::Review);
    assert!(task.status.is_blocked(), "{:?}", task.status);
    world.clock.advance(Duration::from_secs(1));
    world.tracker.add_human_comment(
        &item.id,
        &world.person,
        "Look at the error handling.",
        world.tracker.plane_now(),
    );
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    let task = world.task(&item).await;
    assert_eq!(
        (task.stage, task.status.clone()),
        (Stage::Review, TaskStatus::Working)
    );
    world.run_jobs().await;
    let last = world.agents.requests().pop().expect("a run");
    assert_eq!(last.agent, Agent::Reviewer);
    assert_eq!(
        last.feedback.as_deref(),
        Some("Look at the error handling.")
    );
}

// --- 6. the reconciler re-checks every stage's outside facts ---

#[tokio::test]
async fn a_pull_request_merged_by_a_person_during_review_with_the_webhook_lost_finishes_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Merged while waiting for the verdict");
    world.to_final_verdict(&item).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    world
        .forge
        .close_by_person(&task.repo, task.pr.expect("pr"), true);
    world.clock.advance(Duration::from_secs(301));
    world.reconcile_gates().await;
    world.run_jobs().await;
    check(
        &world,
        expect![[r#"
        outside orch:
          clock: 301 s later
          gitea: PR #1 is merged
        reconciler: gates pass
          replays: forge facts of ET-001 at @fee0001: not green
          task ET-001: review, awaiting_verdict → done, working
          job ET-001 remove the worktree: queued
          job ET-001 move to Done: queued
          job ET-001 notify: queued
          job ET-001 notify: queued
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 move to Done: succeeded
          plane: ET-001 is in Done
          handled: item moved to done
        run ET-001 notify: succeeded
          telegram: ET-001 is merged (#1): Merged while waiting for the verdict
        run ET-001 notify: succeeded
          telegram: reconcile unblocked ET-001 (done → pull request merged, via gate)
    "#]],
    )
    .await;
}

#[tokio::test]
async fn a_pull_request_closed_by_a_person_during_review_with_the_webhook_lost_blocks_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Closed while waiting for the verdict");
    world.to_final_verdict(&item).await;
    world.clear_transcript().await;
    let task = world.task(&item).await;
    world
        .forge
        .close_by_person(&task.repo, task.pr.expect("pr"), false);
    world.clock.advance(Duration::from_secs(301));
    world.reconcile_gates().await;
    check(&world, expect![[r#"
        outside orch:
          clock: 301 s later
          gitea: PR #1 is closed
        reconciler: gates pass
          replays: forge facts of ET-001 at @fee0001: not green
          task ET-001: review, awaiting_verdict → review, blocked (pull request #1 was closed without merge; reopen it in Gitea and reject to continue, or cancel the item)
          job ET-001 notify: queued
          job ET-001 notify: queued
    "#]]).await;
}

#[tokio::test]
async fn an_item_moved_to_done_by_a_person_with_the_webhook_lost_ends_the_task() {
    let world = World::new();
    let item = world.add_item(1, "Done by hand");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.move_silently(&item, StateRole::Done);
    world.clock.advance(Duration::from_secs(301));
    world.reconcile_tracker().await;
    world.run_jobs().await;
    // The person's pull request is left as it is.
    check(&world, expect![[r#"
        outside orch:
          clock: 301 s later
          plane: ET-001 is in Done
        reconciler: tracker pass
          replays: ET-001 moved to Done
          task ET-001: development, working → done, working
          job ET-001 remove the worktree: queued
          job ET-001 notify: queued
          job ET-001 notify: queued
        run ET-001 remove the worktree: succeeded
          git: worktree of ET-001 removed
        run ET-001 notify: succeeded
          telegram: ET-001 was moved to Done in Plane; orch stopped working on it; pull request #1 is left as it is
        run ET-001 notify: succeeded
          telegram: reconcile unblocked ET-001 (done → moved to Done by a person, via tracker)
    "#]]).await;
}

// --- 7. a person's newer state wins over orch's older plan ---

#[tokio::test]
async fn a_delayed_state_move_never_overwrites_a_persons_newer_cancelled() {
    let world = World::new();
    let item = world.add_item(1, "Cancelled while Plane was slow");
    world.to_analysis_verdict(&item).await;
    // The person rejects; Plane then fails orch's state moves for a while, and the analyst
    // runs again and opens the gate again meanwhile.
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    world.tracker.fail_next(4);
    world.run_jobs().await;
    // Meanwhile the person cancels in Plane; the webhook is lost.
    world.move_silently(&item, StateRole::Cancelled);
    world.run_jobs_over_time(3).await;
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Cancelled),
        "orch's older move must not overwrite the person's Cancelled"
    );
}

#[tokio::test]
async fn a_move_that_finds_the_item_where_orch_left_it_still_lands() {
    let world = World::new();
    let item = world.add_item(1, "Plane slow, nobody else");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world.tracker.fail_next(2);
    world.run_jobs_over_time(2).await;
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Awaiting)
    );
}

// --- 8. a person's merge ends the task's work ---

#[tokio::test]
async fn a_persons_merge_cancels_the_reviewers_queued_run() {
    let world = World::new();
    let item = world.add_item(1, "Merged while the reviewer runs");
    world
        .agents
        .script(&world.task_work_item(1), Agent::Reviewer, &[FakeStep::Hang]);
    world.to_ci_wait(&item).await;
    world.ci(&item, CiState::Success, true).await;
    let task = world.task(&item).await;
    world
        .deliver(Event::PullRequestClosed {
            repo: task.repo.clone(),
            number: task.pr.expect("pr"),
            merged: true,
        })
        .await
        .expect("handled");
    let reviewer = jobs_of(&world, &item)
        .await
        .into_iter()
        .find(|job| job.kind() == JobKind::Agent(Agent::Reviewer))
        .expect("reviewer job");
    assert_eq!(reviewer.status, JobStatus::Cancelled);
    assert_eq!(world.task(&item).await.stage, Stage::Done);
}

#[tokio::test]
async fn a_job_whose_task_moved_on_has_no_outward_effect() {
    let world = World::new();
    let item = world.add_item(1, "Moved on");
    world.to_ci_wait(&item).await;
    let task = world.task(&item).await;
    let developer = jobs_of(&world, &item)
        .await
        .into_iter()
        .find(|job| job.kind() == JobKind::Agent(Agent::Developer))
        .expect("developer job");
    let done = crate::domain::Task {
        stage: Stage::Done,
        ..task.clone()
    };
    assert!(still_current(&developer, &task).is_ok());
    assert!(
        still_current(&developer, &done).is_err(),
        "a developer run for a task that is done must not prepare a worktree"
    );
    let publish = crate::domain::Job {
        action: Action::PublishBranch,
        stage: Stage::Development,
        ..developer.clone()
    };
    assert!(still_current(&publish, &done).is_err());
    let cancelled = crate::domain::Task {
        stage: Stage::Cancelled,
        ..task
    };
    let comment = crate::domain::Job {
        action: Action::TrackerComment {
            external_id: "x".to_owned(),
            body: "y".to_owned(),
        },
        ..developer
    };
    assert!(still_current(&comment, &cancelled).is_err());
}

// --- 9. cancel or close while a publish is in flight ---

#[tokio::test]
async fn a_pull_request_opened_by_a_publish_that_raced_a_cancel_is_closed() {
    let world = World::new();
    let item = world.add_item(1, "Cancelled while publishing");
    world.to_analysis_verdict(&item).await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    // Run the move back to In Progress and the developer, then claim the publish and run
    // it to its end ...
    world
        .run_jobs_of(&[crate::ports::ClaimKinds::Actions])
        .await;
    world
        .run_jobs_of(&[crate::ports::ClaimKinds::Agents { per_repo_limit: 1 }])
        .await;
    let claimed = world
        .store
        .claim_next(&crate::ports::ClaimRequest {
            owner: crate::ids::BootId::new("boot-1").expect("boot"),
            kinds: crate::ports::ClaimKinds::Actions,
            now: world.clock_now(),
            lease: Duration::from_secs(60),
        })
        .await
        .expect("claim")
        .expect("publish job");
    assert_eq!(claimed.job.kind(), JobKind::PublishBranch);
    let task = world.task(&item).await;
    let result = world.executor.run_action(&claimed, &task).await;
    // ... but the cancel is handled before the publish's end is recorded.
    world
        .deliver(Event::CancelRequested { task: task.id })
        .await
        .expect("handled");
    world
        .store
        .finish_job(claimed.job.id, &claimed.attempt, result, world.clock_now())
        .await
        .expect("the running publish finishes");
    world
        .orchestrator
        .handle(
            &Event::JobFinished {
                job: claimed.job.id,
            },
            Origin::Worker,
        )
        .await
        .expect("handled");
    world.run_jobs().await;
    let pulls = world.forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        pulls[0].state,
        PrState::Closed,
        "the pull request the publish opened is closed"
    );
}

#[tokio::test]
async fn a_pull_request_a_person_closed_is_never_replaced_by_a_second_one() {
    let world = World::new();
    let item = world.add_item(1, "Closed by a person");
    world.to_ci_wait(&item).await;
    let task = world.task(&item).await;
    // The person closes the PR; the webhook is lost; CI then fails, so a fix round runs.
    world
        .forge
        .close_by_person(&task.repo, task.pr.expect("pr"), false);
    world.ci(&item, CiState::Failure, true).await;
    world.run_jobs().await;
    assert_eq!(world.forge.pulls().len(), 1, "no second pull request");
    let task = world.task(&item).await;
    assert!(
        matches!(&task.status, TaskStatus::Blocked { reason } if reason.contains("closed")),
        "{:?}",
        task.status
    );
}

// --- 10. Plane's time is compared with Plane's time ---

#[tokio::test]
async fn an_approve_from_a_plane_whose_clock_is_ten_minutes_behind_is_applied() {
    let world = World::new();
    world.tracker.set_skew_ms(-600_000);
    let item = world.add_item(1, "Plane behind");
    world.to_analysis_verdict(&item).await;
    world
        .move_item(&item, StateRole::Approved)
        .await
        .expect("handled");
    assert_eq!(world.task(&item).await.stage, Stage::Development);
}

#[tokio::test]
async fn a_rejection_comment_from_a_plane_whose_clock_is_behind_is_the_feedback() {
    let world = World::new();
    world.tracker.set_skew_ms(-600_000);
    let item = world.add_item(1, "Plane behind, rejected");
    world.to_analysis_verdict(&item).await;
    world.clock.advance(Duration::from_secs(1));
    world.tracker.add_human_comment(
        &item.id,
        &world.person,
        "Split it in two.",
        world.tracker.plane_now(),
    );
    world
        .move_item(&item, StateRole::Rejected)
        .await
        .expect("handled");
    world.run_jobs().await;
    let last = world.agents.requests().pop().expect("a run");
    assert_eq!(last.feedback.as_deref(), Some("Split it in two."));
}

#[tokio::test]
async fn an_approve_given_before_the_gate_opened_in_plane_does_not_pass_it() {
    let world = World::new();
    // Plane's clock is ahead: by orch's clock the early approve looks like it came late.
    world.tracker.set_skew_ms(600_000);
    let item = world.add_item(1, "Early approve");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    // The person approves while the analyst still runs; the delivery comes late.
    let early = world.move_silently(&item, StateRole::Approved);
    world.clock.advance(Duration::from_secs(60));
    world.run_jobs().await;
    assert_eq!(
        world.tracker.item(&item.id).expect("item").state,
        world.state_of_role(&item, StateRole::Awaiting),
        "orch opened the gate in Plane"
    );
    let handled = world
        .deliver(Event::WorkItemMoved {
            item: early,
            actor: Some(world.person.clone()),
        })
        .await
        .expect("handled");
    assert!(!handled.changed, "{}", handled.note);
    assert_eq!(world.task(&item).await.status, TaskStatus::AwaitingVerdict);
}

// --- 11. the reconciler forwards facts; the orchestrator alone decides ---

#[tokio::test]
async fn the_reconciler_forwards_forge_facts_and_one_failure_is_one_fix_round() {
    let world = World::new();
    let item = world.add_item(1, "Lost red");
    world.to_ci_wait(&item).await;
    world.clear_transcript().await;
    world.ci(&item, CiState::Failure, false).await;
    world.clock.advance(Duration::from_secs(301));
    let report = world.reconcile_gates().await;
    assert!(matches!(
        report.replays.as_slice(),
        [Event::ForgeObserved { report, .. }] if report.ci == Some(CiState::Failure)
    ));
    world.run_jobs().await;
    world.clock.advance(Duration::from_secs(301));
    world.reconcile_gates().await;
    world.run_jobs().await;
    check(&world, expect![[r#"
        outside orch:
          clock: 301 s later
          gitea: CI failure at @fee0001 in acme/widgets
        reconciler: gates pass
          replays: forge facts of ET-001 at @fee0001: not green
          task ET-001: fix round 1
          job ET-001 developer: queued
          job ET-001 notify: queued
        run ET-001 notify: succeeded
          telegram: reconcile unblocked ET-001 (development → CI failed; fix round 1, via gate)
        run ET-001 developer: succeeded
          agent: developer runs for ET-001, attempt 1, feedback: CI failed at 000000000000000000000000000000c0ffee0001: / - ci/build (failure): build failure http://ci.invalid/000000000000000000000000000000c0ffee0001
          handled: developer made 2 commit(s); publishing
          job ET-001 publish: queued
        run ET-001 publish: succeeded
          git: ET-001 pushed at @fee0002
          handled: branch pushed, pull request open
          task ET-001: head @fee0002
        outside orch:
          clock: 301 s later
        reconciler: gates pass
          replays: forge facts of ET-001 at @fee0002: not green
    "#]]).await;
}

// --- 12. the pipeline table drives behaviour ---

/// For every human-gated row: approving does the row's `on_pass`, rejecting runs the agent
/// of the row's `on_reject`; for every row with an agent and an artifact: an agent that
/// leaves nothing blocks the task. Expectations come from the table itself.
#[tokio::test]
async fn every_row_of_the_stage_table_is_what_the_orchestrator_does() {
    for row in STAGE_TRANSITIONS {
        if row.exit_gate != ExitGate::Human {
            continue;
        }
        for approve in [true, false] {
            let world = World::new();
            let item = world.add_item(1, "Table");
            match row.stage {
                Stage::Analysis => world.to_analysis_verdict(&item).await,
                Stage::Review => world.to_final_verdict(&item).await,
                other => panic!("no walk to a human gate of {other}"),
            }
            let role = if approve {
                StateRole::Approved
            } else {
                StateRole::Rejected
            };
            world.move_item(&item, role).await.expect("handled");
            world.run_jobs().await;
            let task = world.task(&item).await;
            if approve {
                let expected = match row.on_pass {
                    OnPass::Enter(next) | OnPass::MergeThen(next) => next,
                    OnPass::Nothing => row.stage,
                };
                assert_eq!(task.stage, expected, "{}: approve", row.stage);
                if let OnPass::MergeThen(next) = row.on_pass {
                    assert_eq!(task.stage, next);
                    assert_eq!(world.forge.merges().len(), 1);
                }
            } else {
                let target = row.on_reject.expect("a human gate can be rejected");
                let agent = transition_of(target)
                    .agent
                    .expect("the target runs an agent");
                assert_eq!(
                    world.agents.requests().pop().map(|request| request.agent),
                    Some(agent),
                    "{}: reject runs the {agent} of {target}",
                    row.stage
                );
            }
        }
    }
    for row in STAGE_TRANSITIONS {
        let (Some(agent), Some(check)) = (row.agent, row.artifact) else {
            continue;
        };
        let world = World::new();
        let item = world.add_item(1, "Nothing written");
        world
            .agents
            .script(&world.task_work_item(1), agent, &[FakeStep::WriteNothing]);
        match row.stage {
            Stage::Analysis => {
                world
                    .move_item(&item, StateRole::InProgress)
                    .await
                    .expect("handled");
                world.run_jobs().await;
            }
            Stage::Development => world.to_ci_wait(&item).await,
            Stage::Review => {
                world.to_ci_wait(&item).await;
                world.ci(&item, CiState::Success, true).await;
                world.run_jobs().await;
            }
            other => panic!("no walk to {other}"),
        }
        let task = world.task(&item).await;
        assert_eq!(task.stage, row.stage);
        assert!(
            task.status.is_blocked(),
            "{}: {} without its artifact ({}) blocks: {:?}",
            row.stage,
            agent,
            check.as_str(),
            task.status
        );
    }
}
