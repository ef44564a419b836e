//! Jobs written by `create_task` and `transition`: keys, the one active agent job, cancelling.

use crate::domain::{
    Action, Agent, JobOutput, JobResult, JobSpec, JobStatus, Stage, StateRole, Task,
};
use crate::fakes::contract::store::{
    assert_conflict, at, claim_request, create, new_task, notify, sha, transition, AGENTS, LEASE,
};
use crate::fakes::contract::{case, join_all, Case};
use crate::ids::{PrNumber, StateId};
use crate::ports::{ClaimKinds, Store, StoreError};
use crate::time::Timestamp;

pub(super) const CASES: &[Case<dyn Store>] = &[
    case!(
        create_task_writes_every_first_job_and_jobs_remember_their_stage,
        |store| {
            let created = store
                .create_task(
                    new_task(1, "app"),
                    vec![
                        JobSpec::agent(Agent::Analyst, None),
                        notify("first"),
                        notify("first"),
                    ],
                    at(0),
                )
                .await
                .expect("create");
            let jobs = store.jobs_of_task(created.task.id).await.expect("jobs");
            assert_eq!(jobs.len(), 2, "a repeated key is written once");
            assert!(jobs.iter().all(|job| job.stage == Stage::Analysis));
            assert_eq!(
                (
                    created.task.tracker_state.clone(),
                    created.task.tracker_seen_at
                ),
                (
                    Some(StateId::new("state-in-progress").expect("valid state id")),
                    Some(Timestamp::from_millis(1_000))
                )
            );
            let next = Task {
                stage: Stage::Development,
                ..created.task.clone()
            };
            store
                .transition(transition(&next, vec![notify("later")], at(1)))
                .await
                .expect("transition");
            let later = store
                .jobs_of_task(created.task.id)
                .await
                .expect("jobs")
                .into_iter()
                .find(|job| job.key.as_deref() == Some("later"))
                .expect("written");
            assert_eq!(
                later.stage,
                Stage::Development,
                "the stage after the transition"
            );
        }
    ),
    case!(job_whose_key_exists_is_skipped_silently, |store| {
        let task = create(store, 1, "app", notify("k1"), at(0)).await;
        let other = create(store, 2, "app", notify("k1"), at(0)).await;
        assert!(
            store.jobs_of_task(other.id).await.expect("jobs").is_empty(),
            "keys are unique across tasks"
        );
        let after = store
            .transition(transition(
                &task,
                vec![notify("k1"), notify("k2"), notify("k2")],
                at(1),
            ))
            .await
            .expect("transition");
        assert_eq!(
            after.version, 2,
            "a skipped job does not fail the transition"
        );
        let keys: Vec<_> = store
            .jobs_of_task(task.id)
            .await
            .expect("jobs")
            .into_iter()
            .map(|job| job.key)
            .collect();
        assert_eq!(keys, vec![Some("k1".to_owned()), Some("k2".to_owned())]);
        // A key stays taken after its job ended.
        let claimed = store
            .claim_next(&claim_request("b1", ClaimKinds::Actions, at(2)))
            .await
            .expect("claim")
            .expect("a job");
        store
            .finish_job(
                claimed.job.id,
                &claimed.attempt,
                JobResult::Succeeded(JobOutput::default()),
                at(3),
            )
            .await
            .expect("finish");
        store
            .transition(transition(&after, vec![notify("k1")], at(4)))
            .await
            .expect("transition");
        assert_eq!(store.jobs_of_task(task.id).await.expect("jobs").len(), 2);
    }),
    case!(
        second_active_agent_job_conflicts_and_nothing_is_written,
        |store| {
            let task = create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
            let tr = transition(
                &task,
                vec![notify("n1"), JobSpec::agent(Agent::Developer, None)],
                at(1),
            );
            assert_conflict(
                store.transition(tr).await,
                "second agent job while one is queued",
            );
            assert_eq!(store.task(task.id).await.expect("task"), Some(task.clone()));
            assert_eq!(store.jobs_of_task(task.id).await.expect("jobs").len(), 1);
            assert_eq!(store.history(task.id).await.expect("history").len(), 1);
            let two = vec![
                JobSpec::agent(Agent::Developer, None),
                JobSpec::agent(Agent::Reviewer, None),
            ];
            let other = create(store, 2, "app", notify("n2"), at(0)).await;
            assert_conflict(
                store.transition(transition(&other, two, at(1))).await,
                "two agent jobs in one transition",
            );
            assert_eq!(store.jobs_of_task(other.id).await.expect("jobs").len(), 1);
            // Running counts as active too; an ended agent job makes room.
            let claimed = store
                .claim_next(&claim_request("b1", AGENTS, at(2)))
                .await
                .expect("claim")
                .expect("agent job");
            assert_eq!(claimed.job.task, task.id);
            let tr = transition(&task, vec![JobSpec::agent(Agent::Developer, None)], at(3));
            assert_conflict(
                store.transition(tr).await,
                "second agent job while one runs",
            );
            store
                .finish_job(
                    claimed.job.id,
                    &claimed.attempt,
                    JobResult::Failed {
                        error: "boom".to_owned(),
                    },
                    at(4),
                )
                .await
                .expect("finish");
            let tr = transition(&task, vec![JobSpec::agent(Agent::Developer, None)], at(5));
            store
                .transition(tr)
                .await
                .expect("agent job after the first ended");
        }
    ),
    case!(
        concurrent_agent_enqueues_for_one_task_leave_one_active_agent_job,
        |store| {
            let task_id = create(store, 1, "app", notify("first"), at(0)).await.id;
            let enqueue = |n: u32| async move {
                loop {
                    let current = store
                        .task(task_id)
                        .await
                        .expect("task")
                        .expect("task exists");
                    if store
                        .jobs_of_task(task_id)
                        .await
                        .expect("jobs")
                        .iter()
                        .any(|job| job.kind().is_agent())
                    {
                        return false;
                    }
                    let tr = transition(
                        &current,
                        vec![JobSpec::agent(Agent::Developer, Some(format!("{n}")))],
                        at(1),
                    );
                    match store.transition(tr).await {
                        Ok(_) => return true,
                        Err(StoreError::Conflict(_)) => continue,
                        Err(err) => panic!("transition failed: {err}"),
                    }
                }
            };
            let results = join_all((0..64).map(enqueue).collect()).await;
            assert_eq!(results.iter().filter(|won| **won).count(), 1);
            let jobs = store.jobs_of_task(task_id).await.expect("jobs");
            assert_eq!(
                jobs.iter()
                    .filter(|job| job.kind().is_agent() && job.status.is_active())
                    .count(),
                1
            );
        }
    ),
    case!(
        cancel_active_work_cancels_agent_publish_and_merge_jobs_only,
        |store| {
            let task = create(
                store,
                1,
                "app",
                JobSpec::agent(Agent::Developer, None),
                at(0),
            )
            .await;
            let jobs = vec![
                JobSpec::new(Action::PublishBranch, "publish"),
                JobSpec::new(Action::Merge { head_sha: sha('e') }, "merge"),
                notify("tell"),
                JobSpec::new(
                    Action::TrackerState {
                        state: StateRole::InProgress,
                        gate_comment: None,
                    },
                    "state",
                ),
            ];
            let task = store
                .transition(transition(&task, jobs, at(1)))
                .await
                .expect("transition");
            let claimed = store
                .claim_next(&claim_request("b1", AGENTS, at(2)))
                .await
                .expect("claim")
                .expect("agent job");
            let mut tr = transition(
                &task,
                vec![JobSpec::agent(Agent::Developer, Some("again".to_owned()))],
                at(3),
            );
            tr.cancel_active_work = true;
            store.transition(tr).await.expect("cancel and enqueue");
            let jobs = store.jobs_of_task(task.id).await.expect("jobs");
            let statuses: Vec<_> = jobs.iter().map(|job| (job.kind(), job.status)).collect();
            assert_eq!(
                statuses,
                vec![
                    (
                        crate::domain::JobKind::Agent(Agent::Developer),
                        JobStatus::Cancelled
                    ),
                    (crate::domain::JobKind::PublishBranch, JobStatus::Cancelled),
                    (crate::domain::JobKind::Merge, JobStatus::Cancelled),
                    (crate::domain::JobKind::Notify, JobStatus::Queued),
                    (crate::domain::JobKind::TrackerState, JobStatus::Queued),
                    (
                        crate::domain::JobKind::Agent(Agent::Developer),
                        JobStatus::Queued
                    ),
                ]
            );
            assert!(jobs[0].lease.is_none());
            assert_eq!(jobs[0].updated_at, at(3));
            assert!(
                store
                    .unhandled_finished_jobs(10)
                    .await
                    .expect("unhandled")
                    .is_empty(),
                "cancelled jobs need no handling"
            );
            assert_conflict(
                store
                    .heartbeat(claimed.job.id, &claimed.attempt, at(4), LEASE)
                    .await,
                "heartbeat of a cancelled job",
            );
            let finish = JobResult::Succeeded(JobOutput::default());
            assert_conflict(
                store
                    .finish_job(claimed.job.id, &claimed.attempt, finish, at(4))
                    .await,
                "finish of a cancelled job",
            );
        }
    ),
    case!(
        cancel_active_work_lets_a_running_publish_or_merge_finish,
        |store| {
            let task = create(
                store,
                1,
                "app",
                JobSpec::new(Action::PublishBranch, "publish"),
                at(0),
            )
            .await;
            let claimed = store
                .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
                .await
                .expect("claim")
                .expect("publish job");
            let mut tr = transition(&task, vec![], at(2));
            tr.cancel_active_work = true;
            store.transition(tr).await.expect("cancel");
            let job = store
                .job(claimed.job.id)
                .await
                .expect("job")
                .expect("exists");
            assert_eq!(
            job.status,
            JobStatus::Running,
            "a running publish finishes; its end is handled (a pull request it opened gets closed)"
        );
            let output = JobOutput {
                pr: Some(PrNumber::new(3).expect("pr")),
                ..JobOutput::default()
            };
            store
                .finish_job(
                    claimed.job.id,
                    &claimed.attempt,
                    JobResult::Succeeded(output),
                    at(3),
                )
                .await
                .expect("its result is recorded");
            assert_eq!(
                store
                    .unhandled_finished_jobs(10)
                    .await
                    .expect("unhandled")
                    .len(),
                1
            );
        }
    ),
    case!(consumed_job_is_marked_handled_in_the_transition, |store| {
        let task = create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
        let claimed = store
            .claim_next(&claim_request("b1", AGENTS, at(1)))
            .await
            .expect("claim")
            .expect("job");
        let output = JobOutput {
            analysis: Some("plan".to_owned()),
            ..JobOutput::default()
        };
        store
            .finish_job(
                claimed.job.id,
                &claimed.attempt,
                JobResult::Succeeded(output),
                at(2),
            )
            .await
            .expect("finish");
        assert_eq!(
            store
                .unhandled_finished_jobs(10)
                .await
                .expect("unhandled")
                .len(),
            1
        );
        let mut tr = transition(&task, vec![], at(3));
        tr.consumes_job = Some(claimed.job.id);
        store.transition(tr).await.expect("transition");
        assert!(store
            .unhandled_finished_jobs(10)
            .await
            .expect("unhandled")
            .is_empty());
        assert!(
            store
                .job(claimed.job.id)
                .await
                .expect("job")
                .expect("exists")
                .handled
        );
    }),
];
