//! Tasks: creation, lookups, transitions and the F-1 gate candidates.

use crate::domain::{
    Action, Agent, JobOutput, JobResult, JobSpec, JobStatus, Stage, Task, TaskStatus,
};
use crate::fakes::contract::store::{
    assert_conflict, assert_not_found, at, claim_request, create, new_task, notify, repo, sha,
    transition,
};
use crate::fakes::contract::{case, join_all, Case};
use crate::ids::{IssueId, PrNumber, StateId, TaskId, WorkItemId};
use crate::ports::{ClaimKinds, Store, StoreError};

pub(super) const CASES: &[Case<dyn Store>] = &[
    case!(first_create_of_an_issue_is_the_only_one_created, |store| {
        let first = store
            .create_task(new_task(1, "app"), vec![notify("first")], at(0))
            .await
            .expect("create");
        let second = store
            .create_task(new_task(1, "app"), vec![notify("second")], at(1))
            .await
            .expect("create again");
        assert!(first.created);
        assert!(!second.created);
        assert_eq!(first.task, second.task);
        let jobs = store.jobs_of_task(first.task.id).await.expect("jobs");
        assert_eq!(jobs.len(), 1, "only the creator's job is written");
        assert_eq!(jobs[0].key.as_deref(), Some("first"));
        let other = store
            .create_task(new_task(2, "app"), vec![notify("other")], at(2))
            .await
            .expect("create other");
        assert!(other.created);
        assert_ne!(other.task.id, first.task.id);
    }),
    case!(
        created_task_starts_at_version_one_with_its_job_and_a_history_line,
        |store| {
            let task = create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(5)).await;
            assert_eq!(task.version, 1);
            assert_eq!(task.status, TaskStatus::Working);
            assert_eq!(task.stage, Stage::Analysis);
            assert_eq!((task.created_at, task.updated_at), (at(5), at(5)));
            assert_eq!(
                (
                    task.head_sha.clone(),
                    task.pr,
                    task.fix_rounds,
                    task.review_rounds
                ),
                (None, None, 0, 0)
            );
            assert_eq!(store.task(task.id).await.expect("task"), Some(task.clone()));
            let jobs = store.jobs_of_task(task.id).await.expect("jobs");
            assert_eq!(jobs.len(), 1);
            let job = &jobs[0];
            assert_eq!(
                job.action,
                Action::RunAgent {
                    agent: Agent::Analyst,
                    feedback: None
                }
            );
            assert_eq!(
                (job.status, job.attempts, job.not_before, job.handled),
                (JobStatus::Queued, 0, at(5), false)
            );
            assert_eq!(
                (job.task, job.repo.clone(), job.lease.clone()),
                (task.id, repo("app"), None)
            );
            assert!(store.has_active_job(task.id).await.expect("active"));
            let history = store.history(task.id).await.expect("history");
            assert_eq!(history.len(), 1);
            assert_eq!(
                (history[0].task, history[0].at, history[0].stage),
                (task.id, at(5), Stage::Analysis)
            );
        }
    ),
    case!(
        concurrent_creates_of_one_issue_give_exactly_one_created,
        |store| {
            let attempts = (0..8)
                .map(|n| {
                    store.create_task(
                        new_task(7, "app"),
                        vec![JobSpec::agent(Agent::Analyst, Some(format!("{n}")))],
                        at(0),
                    )
                })
                .collect();
            let results = join_all(attempts).await;
            let results: Vec<_> = results
                .into_iter()
                .map(|result| result.expect("create_task"))
                .collect();
            assert_eq!(results.iter().filter(|created| created.created).count(), 1);
            let id = results[0].task.id;
            assert!(results.iter().all(|created| created.task.id == id));
            assert_eq!(store.list_tasks(100).await.expect("list").len(), 1);
            assert_eq!(store.jobs_of_task(id).await.expect("jobs").len(), 1);
        }
    ),
    case!(
        tasks_are_found_by_issue_work_item_head_sha_and_pr,
        |store| {
            let task = create(store, 3, "app", notify("a"), at(0)).await;
            let _other = create(store, 4, "app", notify("b"), at(0)).await;
            let pr = PrNumber::new(12).expect("pr");
            let next = Task {
                head_sha: Some(sha('a')),
                pr: Some(pr),
                ..task.clone()
            };
            let task = store
                .transition(transition(&next, vec![], at(1)))
                .await
                .expect("transition");
            let found = |result: Result<Option<Task>, StoreError>| {
                result.expect("lookup").map(|task| task.id)
            };
            assert_eq!(found(store.task_by_issue(&task.issue).await), Some(task.id));
            assert_eq!(
                found(store.task_by_work_item(&task.work_item).await),
                Some(task.id)
            );
            assert_eq!(
                found(store.task_by_head_sha(&repo("app"), &sha('a')).await),
                Some(task.id)
            );
            assert_eq!(
                found(store.task_by_head_sha(&repo("lib"), &sha('a')).await),
                None
            );
            assert_eq!(
                found(store.task_by_head_sha(&repo("app"), &sha('b')).await),
                None
            );
            assert_eq!(
                found(store.task_by_pr(&repo("app"), pr).await),
                Some(task.id)
            );
            assert_eq!(found(store.task_by_pr(&repo("lib"), pr).await), None);
            let missing = IssueId::new("nope").expect("issue");
            assert_eq!(found(store.task_by_issue(&missing).await), None);
            let missing = WorkItemId::new("ET", 999).expect("work item");
            assert_eq!(found(store.task_by_work_item(&missing).await), None);
            assert_eq!(found(store.task(TaskId(9999)).await), None);
        }
    ),
    case!(
        list_tasks_is_newest_first_and_tasks_in_stage_filter_by_repo,
        |store| {
            let first = create(store, 1, "app", notify("1"), at(0)).await;
            let second = create(store, 2, "lib", notify("2"), at(1)).await;
            let third = create(store, 3, "app", notify("3"), at(2)).await;
            let ids = |tasks: Vec<Task>| tasks.into_iter().map(|task| task.id).collect::<Vec<_>>();
            assert_eq!(
                ids(store.list_tasks(10).await.expect("list")),
                vec![third.id, second.id, first.id]
            );
            assert_eq!(
                ids(store.list_tasks(2).await.expect("list")),
                vec![third.id, second.id]
            );
            let next = Task {
                stage: Stage::Development,
                ..third.clone()
            };
            store
                .transition(transition(&next, vec![], at(3)))
                .await
                .expect("transition");
            assert_eq!(
                ids(store
                    .tasks_in_stage(&repo("app"), Stage::Analysis)
                    .await
                    .expect("stage")),
                vec![first.id]
            );
            assert_eq!(
                ids(store
                    .tasks_in_stage(&repo("app"), Stage::Development)
                    .await
                    .expect("stage")),
                vec![third.id]
            );
            assert_eq!(
                ids(store
                    .tasks_in_stage(&repo("lib"), Stage::Analysis)
                    .await
                    .expect("stage")),
                vec![second.id]
            );
            assert!(store
                .tasks_in_stage(&repo("lib"), Stage::Review)
                .await
                .expect("stage")
                .is_empty());
        }
    ),
    case!(
        transition_bumps_version_writes_jobs_and_one_history_line,
        |store| {
            let task = create(store, 1, "app", notify("first"), at(0)).await;
            let next = Task {
                stage: Stage::Development,
                status: TaskStatus::AwaitingVerdict,
                ..task.clone()
            };
            let mut spec = notify("later");
            spec.not_before = Some(at(100));
            let mut tr = transition(&next, vec![notify("now"), spec], at(10));
            tr.note = "moved to development".to_owned();
            let after = store.transition(tr).await.expect("transition");
            assert_eq!(after.version, 2);
            assert_eq!(after.updated_at, at(10));
            assert_eq!(after.created_at, at(0));
            assert_eq!(after.stage, Stage::Development);
            assert_eq!(
                store.task(task.id).await.expect("task"),
                Some(after.clone())
            );
            let jobs = store.jobs_of_task(task.id).await.expect("jobs");
            let keys: Vec<_> = jobs
                .iter()
                .map(|job| job.key.clone().unwrap_or_default())
                .collect();
            assert_eq!(keys, vec!["first", "now", "later"]);
            assert_eq!(jobs[1].not_before, at(10));
            assert_eq!(jobs[2].not_before, at(100));
            assert_eq!(jobs[1].created_at, at(10));
            let history = store.history(task.id).await.expect("history");
            assert_eq!(history.len(), 2);
            assert_eq!(history[1].message, "moved to development");
            assert_eq!(history[1].stage, Stage::Development);
            assert_eq!(history[1].at, at(10));
            assert_eq!(history[1].status, TaskStatus::AwaitingVerdict.to_string());
            let again = store
                .transition(transition(&after, vec![], at(11)))
                .await
                .expect("second transition");
            assert_eq!(again.version, 3);
            assert_eq!(store.history(task.id).await.expect("history").len(), 3);
        }
    ),
    case!(
        transition_with_a_stale_version_conflicts_and_writes_nothing,
        |store| {
            let task = create(store, 1, "app", notify("first"), at(0)).await;
            let current = store
                .transition(transition(&task, vec![], at(1)))
                .await
                .expect("transition");
            let stale = Task {
                stage: Stage::Review,
                ..task.clone()
            };
            let mut tr = transition(&stale, vec![notify("lost")], at(2));
            tr.cancel_active_work = true;
            assert_conflict(store.transition(tr).await, "stale version");
            assert_eq!(store.task(task.id).await.expect("task"), Some(current));
            assert_eq!(store.jobs_of_task(task.id).await.expect("jobs").len(), 1);
            assert_eq!(store.history(task.id).await.expect("history").len(), 2);
            let ahead = Task {
                version: 99,
                ..task
            };
            assert_conflict(
                store.transition(transition(&ahead, vec![], at(3))).await,
                "future version",
            );
        }
    ),
    case!(transition_of_an_unknown_task_is_not_found, |store| {
        let task = create(store, 1, "app", notify("first"), at(0)).await;
        let ghost = Task {
            id: TaskId(task.id.0 + 1000),
            ..task
        };
        assert_not_found(
            store.transition(transition(&ghost, vec![], at(1))).await,
            "unknown task",
        );
    }),
    case!(task_fields_round_trip_through_a_transition, |store| {
        let task = create(store, 1, "app", notify("first"), at(0)).await;
        let next = Task {
            title: "New title".to_owned(),
            description: "New words".to_owned(),
            stage: Stage::Review,
            status: TaskStatus::Blocked {
                reason: "ci failed 3 times".to_owned(),
            },
            head_sha: Some(sha('c')),
            pr: Some(PrNumber::new(77).expect("pr")),
            fix_rounds: 2,
            review_rounds: 1,
            last_fix_sha: Some(sha('d')),
            sent_back_sha: Some(sha('e')),
            gate_opened_at: Some(at(9)),
            tracker_state: Some(StateId::new("state-approved").expect("valid state id")),
            tracker_seen_at: Some(at(8)),
            verdicts_after: Some(at(7)),
            feedback_after: Some(at(6)),
            ..task.clone()
        };
        let after = store
            .transition(transition(&next, vec![], at(10)))
            .await
            .expect("transition");
        let expected = Task {
            version: 2,
            updated_at: at(10),
            ..next
        };
        assert_eq!(after, expected);
        assert_eq!(
            store.task(task.id).await.expect("task"),
            Some(expected.clone())
        );
        let history = store.history(task.id).await.expect("history");
        assert_eq!(history[1].status, expected.status.to_string());
    }),
    case!(only_pipeline_work_makes_a_task_busy, |store| {
        let task = create(store, 1, "app", notify("hello"), at(0)).await;
        assert!(
            !store.has_active_job(task.id).await.expect("read"),
            "a queued notification does not make the task busy"
        );
        let next = Task {
            stage: Stage::Development,
            ..task.clone()
        };
        let comment = JobSpec::new(
            Action::TrackerComment {
                external_id: "c1".to_owned(),
                body: "hi".to_owned(),
            },
            "comment",
        );
        let moved = store
            .transition(transition(&next, vec![comment], at(1)))
            .await
            .expect("transition");
        assert!(!store.has_active_job(task.id).await.expect("read"));
        let found = store
            .gate_candidates(Stage::Development, at(10), 10)
            .await
            .expect("candidates");
        assert_eq!(
            found.len(),
            1,
            "outside-world jobs do not hide a task from F-1"
        );
        store
            .transition(transition(
                &moved,
                vec![JobSpec::new(Action::PublishBranch, "publish")],
                at(2),
            ))
            .await
            .expect("transition");
        assert!(store.has_active_job(task.id).await.expect("read"));
        let found = store
            .gate_candidates(Stage::Development, at(10), 10)
            .await
            .expect("candidates");
        assert!(found.is_empty(), "publishing makes the task busy");
    }),
    case!(
        gate_candidates_are_old_idle_tasks_of_the_stage_oldest_first,
        |store| {
            let mut tasks = Vec::new();
            for number in 1..=5 {
                let task = create(store, number, "app", notify(&format!("n{number}")), at(0)).await;
                let claimed = store
                    .claim_next(&claim_request("b1", ClaimKinds::Actions, at(0)))
                    .await
                    .expect("claim")
                    .expect("job");
                store
                    .finish_job(
                        claimed.job.id,
                        &claimed.attempt,
                        JobResult::Succeeded(JobOutput::default()),
                        at(0),
                    )
                    .await
                    .expect("finish");
                tasks.push(task);
            }
            // Updated at 50, 40, 30 (development, idle), 20 (development, with a job), 10 (review).
            let mut moved = Vec::new();
            for (task, when) in tasks.iter().zip([50, 40, 30]) {
                let next = Task {
                    stage: Stage::Development,
                    ..task.clone()
                };
                moved.push(
                    store
                        .transition(transition(&next, vec![], at(when)))
                        .await
                        .expect("transition"),
                );
            }
            let busy = Task {
                stage: Stage::Development,
                ..tasks[3].clone()
            };
            store
                .transition(transition(
                    &busy,
                    vec![
                        notify("chatty"),
                        JobSpec::new(Action::PublishBranch, "busy"),
                    ],
                    at(20),
                ))
                .await
                .expect("transition");
            let review = Task {
                stage: Stage::Review,
                ..tasks[4].clone()
            };
            store
                .transition(transition(&review, vec![], at(10)))
                .await
                .expect("transition");
            let ids = |tasks: Vec<Task>| tasks.into_iter().map(|task| task.id).collect::<Vec<_>>();
            let found = store
                .gate_candidates(Stage::Development, at(45), 10)
                .await
                .expect("candidates");
            assert_eq!(ids(found), vec![moved[2].id, moved[1].id]);
            let found = store
                .gate_candidates(Stage::Development, at(50), 1)
                .await
                .expect("candidates");
            assert_eq!(ids(found), vec![moved[2].id]);
            let found = store
                .gate_candidates(Stage::Development, at(50), 10)
                .await
                .expect("candidates");
            assert_eq!(
                ids(found),
                vec![moved[2].id, moved[1].id, moved[0].id],
                "updated_at equal to the bound counts"
            );
            let found = store
                .gate_candidates(Stage::Review, at(100), 10)
                .await
                .expect("candidates");
            assert_eq!(ids(found), vec![tasks[4].id]);
            assert!(store
                .gate_candidates(Stage::Analysis, at(100), 10)
                .await
                .expect("candidates")
                .is_empty());
        }
    ),
];
