//! The `Store` contract suite, run against `MemStore` and every real store.
//!
//! Each case is a `pub async fn` taking `&dyn Store` (a fresh, empty store) and panicking on a
//! broken rule. `store_contract_tests!(make_expr)` expands to one `#[tokio::test]` per case in
//! the calling crate; `make_expr` is evaluated once per test and must be a future whose output
//! derefs to a `Store` (e.g. `async { Box::new(MemStore::new()) }`), so a real store can keep
//! its temporary directory alive in a guard.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::domain::{
    Action, Agent, JobOutput, JobResult, JobSpec, JobStatus, MergeOutcome, NewTask, ProcessRecord,
    ReviewVerdict, Service, Stage, StateRole, Task, TaskStatus, Waiting,
};
use crate::ids::{
    AttemptId, BootId, BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug,
    StateId, TaskId, WorkItemId,
};
use crate::ports::{
    ClaimKinds, ClaimRequest, InboxInsert, InboxOutcome, NewDelivery, PruneRequest, Pruned,
    ReconcileRun, ServiceWait, Source, Store, StoreError, Transition, Unblocked, Via,
};
use crate::time::Timestamp;

/// Expands to one `#[tokio::test]` per contract case, each on a fresh store from `$make`.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            first_create_of_an_issue_is_the_only_one_created,
            created_task_starts_at_version_one_with_its_job_and_a_history_line,
            concurrent_creates_of_one_issue_give_exactly_one_created,
            tasks_are_found_by_issue_work_item_head_sha_and_pr,
            list_tasks_is_newest_first_and_tasks_in_stage_filter_by_repo,
            transition_bumps_version_writes_jobs_and_one_history_line,
            transition_with_a_stale_version_conflicts_and_writes_nothing,
            transition_of_an_unknown_task_is_not_found,
            task_fields_round_trip_through_a_transition,
            job_whose_key_exists_is_skipped_silently,
            second_active_agent_job_conflicts_and_nothing_is_written,
            concurrent_agent_enqueues_for_one_task_leave_one_active_agent_job,
            cancel_active_work_cancels_agent_publish_and_merge_jobs_only,
            cancel_active_work_lets_a_running_publish_or_merge_finish,
            consumed_job_is_marked_handled_in_the_transition,
            claim_takes_the_oldest_due_job_and_honours_not_before,
            claim_separates_agent_jobs_from_action_jobs,
            claim_honours_the_per_repo_agent_limit,
            next_due_reports_the_earliest_queued_job_of_the_kinds,
            heartbeat_extends_the_lease_and_rejects_a_stale_attempt,
            record_process_is_fenced_by_the_attempt,
            retry_requeues_the_job_at_its_not_before_with_the_error,
            ended_jobs_are_unhandled_until_marked,
            job_payload_and_output_round_trip,
            late_completion_of_a_reclaimed_attempt_is_rejected,
            reclaim_takes_leases_of_other_boots_and_expired_leases_only,
            gate_candidates_are_old_idle_tasks_of_the_stage_oldest_first,
            only_pipeline_work_makes_a_task_busy,
            handed_back_job_is_queued_at_once_without_counting_the_attempt,
            create_task_writes_every_first_job_and_jobs_remember_their_stage,
            waits_count_no_attempt_and_keep_the_start_of_the_outage,
            queue_snapshot_shows_each_service_jobs_wait_on,
            obsolete_job_ends_cancelled_and_handled,
            state_moves_of_one_task_are_claimed_one_at_a_time,
            inbox_dedupes_by_source_and_delivery_id,
            inbox_dedupes_the_same_body_within_seven_days_only,
            inbox_pending_is_oldest_first_until_processed_and_stats_show_lag,
            watermarks_are_kept_per_project,
            reconcile_stats_keep_totals_and_the_last_twenty_unblocked,
            queue_snapshot_counts_jobs_and_open_tasks,
            last_clean_shutdown_round_trips,
            unknown_ids_are_not_found,
            prune_deletes_processed_deliveries_before_the_cutoff_and_never_pending_ones,
            prune_deletes_ended_jobs_and_history_of_ended_tasks_only,
            prune_takes_at_most_the_limit_of_each_kind_oldest_first
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture = $make.await;
                $crate::fakes::contract::$case(&*fixture).await;
            }
        )*
    };
}

const LEASE: Duration = Duration::from_secs(60);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + seconds * 1000)
}

fn repo(name: &str) -> RepoSlug {
    RepoSlug::new(&format!("acme/{name}")).expect("valid repo")
}

fn boot(name: &str) -> BootId {
    BootId::new(name).expect("valid boot id")
}

fn sha(digit: char) -> CommitSha {
    CommitSha::new(std::iter::repeat_n(digit, 40).collect::<String>()).expect("valid sha")
}

fn new_task(number: u32, repo_name: &str) -> NewTask {
    let work_item = WorkItemId::new("ET", number).expect("valid work item");
    NewTask {
        issue: IssueId::new(format!("issue-{number}")).expect("valid issue id"),
        project: ProjectId::new("project-1").expect("valid project id"),
        branch: BranchName::for_work_item(&work_item, "Add a thing"),
        work_item,
        title: format!("Task {number}"),
        description: "Do it.".to_owned(),
        repo: repo(repo_name),
        base_branch: BranchName::new("main").expect("valid branch"),
        stage: Stage::Analysis,
        tracker_state: Some(StateId::new("state-in-progress").expect("valid state id")),
        tracker_seen_at: Some(Timestamp::from_millis(1_000)),
    }
}

fn notify(key: &str) -> JobSpec {
    JobSpec::new(
        Action::Notify {
            text: format!("note {key}"),
        },
        key,
    )
}

async fn create(
    store: &dyn Store,
    number: u32,
    repo_name: &str,
    first: JobSpec,
    now: Timestamp,
) -> Task {
    let created = store
        .create_task(new_task(number, repo_name), vec![first], now)
        .await
        .expect("create_task");
    assert!(created.created, "task {number} should be new");
    created.task
}

fn transition(task: &Task, jobs: Vec<JobSpec>, now: Timestamp) -> Transition {
    Transition {
        next: task.clone(),
        jobs,
        cancel_active_work: false,
        consumes_job: None,
        note: "step".to_owned(),
        now,
    }
}

fn claim_request(owner: &str, kinds: ClaimKinds, now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        owner: boot(owner),
        kinds,
        now,
        lease: LEASE,
    }
}

const AGENTS: ClaimKinds = ClaimKinds::Agents { per_repo_limit: 10 };

fn delivery(source: Source, delivery_id: &str, body: &str, received_at: Timestamp) -> NewDelivery {
    NewDelivery {
        source,
        delivery_id: delivery_id.to_owned(),
        event_type: "issue".to_owned(),
        body_sha256: format!("sha-of-{body}"),
        body: body.as_bytes().to_vec(),
        received_at,
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected not found, got {other:?}"),
    }
}

/// Polls every future until all are done, so store calls overlap (no runtime needed).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures
        .into_iter()
        .map(|future| Some(Box::pin(future)))
        .collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future finished"))
        .collect()
}

// --- tasks ---

pub async fn first_create_of_an_issue_is_the_only_one_created(store: &dyn Store) {
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
}

pub async fn created_task_starts_at_version_one_with_its_job_and_a_history_line(store: &dyn Store) {
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

pub async fn concurrent_creates_of_one_issue_give_exactly_one_created(store: &dyn Store) {
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

pub async fn tasks_are_found_by_issue_work_item_head_sha_and_pr(store: &dyn Store) {
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
    let found =
        |result: Result<Option<Task>, StoreError>| result.expect("lookup").map(|task| task.id);
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

pub async fn list_tasks_is_newest_first_and_tasks_in_stage_filter_by_repo(store: &dyn Store) {
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

pub async fn transition_bumps_version_writes_jobs_and_one_history_line(store: &dyn Store) {
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

pub async fn transition_with_a_stale_version_conflicts_and_writes_nothing(store: &dyn Store) {
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

pub async fn transition_of_an_unknown_task_is_not_found(store: &dyn Store) {
    let task = create(store, 1, "app", notify("first"), at(0)).await;
    let ghost = Task {
        id: TaskId(task.id.0 + 1000),
        ..task
    };
    assert_not_found(
        store.transition(transition(&ghost, vec![], at(1))).await,
        "unknown task",
    );
}

pub async fn task_fields_round_trip_through_a_transition(store: &dyn Store) {
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
}

// --- jobs written by transitions ---

pub async fn job_whose_key_exists_is_skipped_silently(store: &dyn Store) {
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
}

pub async fn second_active_agent_job_conflicts_and_nothing_is_written(store: &dyn Store) {
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

pub async fn concurrent_agent_enqueues_for_one_task_leave_one_active_agent_job(store: &dyn Store) {
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

pub async fn cancel_active_work_cancels_agent_publish_and_merge_jobs_only(store: &dyn Store) {
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

pub async fn cancel_active_work_lets_a_running_publish_or_merge_finish(store: &dyn Store) {
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

pub async fn consumed_job_is_marked_handled_in_the_transition(store: &dyn Store) {
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
}

// --- claims and leases ---

pub async fn claim_takes_the_oldest_due_job_and_honours_not_before(store: &dyn Store) {
    let mut later = notify("later");
    later.not_before = Some(at(50));
    let task = create(store, 1, "app", later, at(0)).await;
    store
        .transition(transition(
            &task,
            vec![notify("soon"), notify("also")],
            at(10),
        ))
        .await
        .expect("transition");
    let take = |now| async move {
        store
            .claim_next(&claim_request("b1", ClaimKinds::Actions, now))
            .await
            .expect("claim")
    };
    let first = take(at(20)).await.expect("a due job");
    assert_eq!(first.job.key.as_deref(), Some("soon"));
    assert_eq!(first.job.status, JobStatus::Running);
    assert_eq!(first.job.attempts, 1);
    let lease = first.job.lease.clone().expect("a lease");
    assert_eq!(
        (
            lease.owner,
            lease.attempt.clone(),
            lease.expires_at,
            lease.heartbeat_at
        ),
        (boot("b1"), first.attempt.clone(), at(80), at(20))
    );
    assert_eq!(
        store.job(first.job.id).await.expect("job"),
        Some(first.job.clone())
    );
    let second = take(at(20)).await.expect("another due job");
    assert_eq!(second.job.key.as_deref(), Some("also"));
    assert_ne!(second.attempt, first.attempt);
    assert!(take(at(49)).await.is_none(), "not before its time");
    let third = take(at(50)).await.expect("due now");
    assert_eq!(third.job.key.as_deref(), Some("later"));
    assert!(take(at(100)).await.is_none());
}

pub async fn claim_separates_agent_jobs_from_action_jobs(store: &dyn Store) {
    create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
    create(store, 2, "app", notify("n"), at(0)).await;
    let action = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .expect("action");
    assert_eq!(action.job.kind(), crate::domain::JobKind::Notify);
    assert!(store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .is_none());
    let agent = store
        .claim_next(&claim_request("b1", AGENTS, at(1)))
        .await
        .expect("claim")
        .expect("agent");
    assert_eq!(
        agent.job.kind(),
        crate::domain::JobKind::Agent(Agent::Analyst)
    );
    assert!(store
        .claim_next(&claim_request("b1", AGENTS, at(1)))
        .await
        .expect("claim")
        .is_none());
}

pub async fn claim_honours_the_per_repo_agent_limit(store: &dyn Store) {
    create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
    create(store, 2, "app", JobSpec::agent(Agent::Analyst, None), at(1)).await;
    create(store, 3, "lib", JobSpec::agent(Agent::Analyst, None), at(2)).await;
    let limit_one = ClaimKinds::Agents { per_repo_limit: 1 };
    let first = store
        .claim_next(&claim_request("b1", limit_one, at(5)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(first.job.repo, repo("app"));
    let second = store
        .claim_next(&claim_request("b1", limit_one, at(5)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(
        second.job.repo,
        repo("lib"),
        "app is at its limit, so lib's younger job goes first"
    );
    assert!(store
        .claim_next(&claim_request("b1", limit_one, at(5)))
        .await
        .expect("claim")
        .is_none());
    let limit_two = ClaimKinds::Agents { per_repo_limit: 2 };
    let third = store
        .claim_next(&claim_request("b1", limit_two, at(5)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(third.job.repo, repo("app"));
    store
        .finish_job(
            first.job.id,
            &first.attempt,
            JobResult::Failed {
                error: "x".to_owned(),
            },
            at(6),
        )
        .await
        .expect("finish");
    assert!(
        store
            .claim_next(&claim_request("b1", limit_one, at(7)))
            .await
            .expect("claim")
            .is_none(),
        "nothing left"
    );
}

pub async fn next_due_reports_the_earliest_queued_job_of_the_kinds(store: &dyn Store) {
    assert_eq!(
        store.next_due(ClaimKinds::Actions).await.expect("next_due"),
        None
    );
    let mut later = notify("later");
    later.not_before = Some(at(30));
    let task = create(store, 1, "app", later, at(0)).await;
    let mut sooner = notify("sooner");
    sooner.not_before = Some(at(20));
    let mut agent = JobSpec::agent(Agent::Developer, None);
    agent.not_before = Some(at(5));
    store
        .transition(transition(&task, vec![sooner, agent], at(1)))
        .await
        .expect("transition");
    assert_eq!(
        store.next_due(ClaimKinds::Actions).await.expect("next_due"),
        Some(at(20))
    );
    let zero = ClaimKinds::Agents { per_repo_limit: 0 };
    assert_eq!(
        store.next_due(zero).await.expect("next_due"),
        Some(at(5)),
        "the limit is ignored"
    );
    store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(25)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(
        store.next_due(ClaimKinds::Actions).await.expect("next_due"),
        Some(at(30)),
        "running jobs are not due"
    );
}

pub async fn heartbeat_extends_the_lease_and_rejects_a_stale_attempt(store: &dyn Store) {
    create(store, 1, "app", notify("n"), at(0)).await;
    let claimed = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .expect("job");
    store
        .heartbeat(claimed.job.id, &claimed.attempt, at(30), LEASE)
        .await
        .expect("heartbeat");
    let lease = store
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists")
        .lease
        .expect("lease");
    assert_eq!((lease.heartbeat_at, lease.expires_at), (at(30), at(90)));
    let stranger = AttemptId::new("someone-else").expect("attempt");
    assert_conflict(
        store
            .heartbeat(claimed.job.id, &stranger, at(31), LEASE)
            .await,
        "heartbeat of another attempt",
    );
    store
        .finish_job(
            claimed.job.id,
            &claimed.attempt,
            JobResult::Succeeded(JobOutput::default()),
            at(32),
        )
        .await
        .expect("finish");
    assert_conflict(
        store
            .heartbeat(claimed.job.id, &claimed.attempt, at(33), LEASE)
            .await,
        "heartbeat of an ended job",
    );
}

pub async fn record_process_is_fenced_by_the_attempt(store: &dyn Store) {
    create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
    let claimed = store
        .claim_next(&claim_request("b1", AGENTS, at(1)))
        .await
        .expect("claim")
        .expect("job");
    let process = ProcessRecord {
        pid: 4242,
        pgid: 4242,
        start_time: 987_654_321,
    };
    store
        .record_process(claimed.job.id, &claimed.attempt, process)
        .await
        .expect("record");
    assert_eq!(
        store
            .job(claimed.job.id)
            .await
            .expect("job")
            .expect("exists")
            .process,
        Some(process)
    );
    let stranger = AttemptId::new("someone-else").expect("attempt");
    let other = ProcessRecord {
        pid: 1,
        pgid: 1,
        start_time: 1,
    };
    assert_conflict(
        store.record_process(claimed.job.id, &stranger, other).await,
        "record of another attempt",
    );
    assert_eq!(
        store
            .job(claimed.job.id)
            .await
            .expect("job")
            .expect("exists")
            .process,
        Some(process)
    );
}

pub async fn retry_requeues_the_job_at_its_not_before_with_the_error(store: &dyn Store) {
    create(store, 1, "app", notify("n"), at(0)).await;
    let claimed = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .expect("job");
    let retry = JobResult::Retry {
        not_before: at(40),
        error: "telegram 502".to_owned(),
    };
    store
        .finish_job(claimed.job.id, &claimed.attempt, retry, at(2))
        .await
        .expect("retry");
    let job = store
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(
        (job.status, job.not_before, job.attempts),
        (JobStatus::Queued, at(40), 1)
    );
    assert_eq!(
        (job.last_error.as_deref(), job.lease.clone(), job.updated_at),
        (Some("telegram 502"), None, at(2))
    );
    assert!(
        store
            .unhandled_finished_jobs(10)
            .await
            .expect("unhandled")
            .is_empty(),
        "a retry is not an end"
    );
    assert!(store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(39)))
        .await
        .expect("claim")
        .is_none());
    let again = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(40)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(again.job.attempts, 2);
    assert_ne!(again.attempt, claimed.attempt);
    let late = JobResult::Succeeded(JobOutput::default());
    assert_conflict(
        store
            .finish_job(claimed.job.id, &claimed.attempt, late, at(41))
            .await,
        "finish of the first attempt",
    );
}

pub async fn ended_jobs_are_unhandled_until_marked(store: &dyn Store) {
    create(store, 1, "app", notify("a"), at(0)).await;
    create(store, 2, "app", notify("b"), at(0)).await;
    let first = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .expect("job");
    let second = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .expect("job");
    store
        .finish_job(
            second.job.id,
            &second.attempt,
            JobResult::Failed {
                error: "gone".to_owned(),
            },
            at(2),
        )
        .await
        .expect("finish");
    store
        .finish_job(
            first.job.id,
            &first.attempt,
            JobResult::Succeeded(JobOutput::default()),
            at(3),
        )
        .await
        .expect("finish");
    let unhandled = store.unhandled_finished_jobs(10).await.expect("unhandled");
    let ids: Vec<JobId> = unhandled.iter().map(|job| job.id).collect();
    assert_eq!(ids, vec![second.job.id, first.job.id], "oldest end first");
    assert_eq!(
        (unhandled[0].status, unhandled[0].last_error.as_deref()),
        (JobStatus::Failed, Some("gone"))
    );
    assert_eq!(
        (unhandled[1].status, unhandled[1].lease.clone()),
        (JobStatus::Succeeded, None)
    );
    assert_eq!(
        store
            .unhandled_finished_jobs(1)
            .await
            .expect("unhandled")
            .len(),
        1
    );
    store.mark_job_handled(second.job.id).await.expect("mark");
    let ids: Vec<JobId> = store
        .unhandled_finished_jobs(10)
        .await
        .expect("unhandled")
        .iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(ids, vec![first.job.id]);
}

pub async fn job_payload_and_output_round_trip(store: &dyn Store) {
    let actions = vec![
        Action::RunAgent {
            agent: Agent::Reviewer,
            feedback: Some("fix the \"tests\"\nplease".to_owned()),
        },
        Action::TrackerComment {
            external_id: "1:analyst:0".to_owned(),
            body: "Analysis done ✓".to_owned(),
        },
        Action::TrackerState {
            state: StateRole::Awaiting,
            gate_comment: None,
        },
        Action::ForgeReview {
            marker: "orch-review-1".to_owned(),
            body: "LGTM".to_owned(),
        },
        Action::ClosePr {
            comment: "closing".to_owned(),
        },
        Action::Cleanup,
    ];
    let first = JobSpec::agent(
        Agent::Reviewer,
        Some("fix the \"tests\"\nplease".to_owned()),
    );
    let task = create(store, 1, "app", first, at(0)).await;
    let rest = actions[1..]
        .iter()
        .enumerate()
        .map(|(n, action)| JobSpec::new(action.clone(), format!("k{n}")))
        .collect();
    store
        .transition(transition(&task, rest, at(1)))
        .await
        .expect("transition");
    let stored: Vec<Action> = store
        .jobs_of_task(task.id)
        .await
        .expect("jobs")
        .into_iter()
        .map(|job| job.action)
        .collect();
    assert_eq!(stored, actions);
    let claimed = store
        .claim_next(&claim_request("b1", AGENTS, at(2)))
        .await
        .expect("claim")
        .expect("job");
    let output = JobOutput {
        analysis: None,
        review: Some("# Review\nok".to_owned()),
        review_verdict: Some(ReviewVerdict::RequestChanges),
        commits_ahead: Some(3),
        head_sha: Some(sha('f')),
        pr: Some(PrNumber::new(5).expect("pr")),
        merge: Some(MergeOutcome::NeedsRebase {
            reason: "head out of date".to_owned(),
        }),
        tracker_state: Some(StateId::new("state-awaiting").expect("valid state id")),
        tracker_at: Some(Timestamp::from_millis(7_000)),
        pr_closed: true,
    };
    store
        .finish_job(
            claimed.job.id,
            &claimed.attempt,
            JobResult::Succeeded(output.clone()),
            at(3),
        )
        .await
        .expect("finish");
    let job = store
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(job.output, Some(output));
}

pub async fn late_completion_of_a_reclaimed_attempt_is_rejected(store: &dyn Store) {
    create(
        store,
        1,
        "app",
        JobSpec::agent(Agent::Developer, None),
        at(0),
    )
    .await;
    let stale = store
        .claim_next(&claim_request("old-boot", AGENTS, at(1)))
        .await
        .expect("claim")
        .expect("job");
    let reclaimed = store
        .reclaim_leases(&boot("new-boot"), at(2))
        .await
        .expect("reclaim");
    assert_eq!(reclaimed.len(), 1);
    let fresh = store
        .claim_next(&claim_request("new-boot", AGENTS, at(3)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(fresh.job.id, stale.job.id);
    let late = JobResult::Succeeded(JobOutput::default());
    assert_conflict(
        store
            .finish_job(stale.job.id, &stale.attempt, late, at(4))
            .await,
        "late completion",
    );
    let job = store.job(stale.job.id).await.expect("job").expect("exists");
    assert_eq!((job.status, job.attempts), (JobStatus::Running, 2));
    store
        .finish_job(
            fresh.job.id,
            &fresh.attempt,
            JobResult::Succeeded(JobOutput::default()),
            at(5),
        )
        .await
        .expect("the current attempt finishes");
}

pub async fn reclaim_takes_leases_of_other_boots_and_expired_leases_only(store: &dyn Store) {
    for number in 1..=3 {
        create(store, number, "app", notify(&format!("n{number}")), at(0)).await;
    }
    let mine = store
        .claim_next(&claim_request("me", ClaimKinds::Actions, at(100)))
        .await
        .expect("claim")
        .expect("job");
    let old = store
        .claim_next(&claim_request("before", ClaimKinds::Actions, at(100)))
        .await
        .expect("claim")
        .expect("job");
    let expiring = store
        .claim_next(&claim_request("me", ClaimKinds::Actions, at(10)))
        .await
        .expect("claim")
        .expect("job");
    let process = ProcessRecord {
        pid: 10,
        pgid: 10,
        start_time: 5,
    };
    store
        .record_process(old.job.id, &old.attempt, process)
        .await
        .expect("record");
    // `expiring`'s lease ran out at 70; `mine` runs until 160.
    let reclaimed = store
        .reclaim_leases(&boot("me"), at(120))
        .await
        .expect("reclaim");
    let ids: Vec<JobId> = reclaimed.iter().map(|job| job.id).collect();
    assert_eq!(ids, vec![old.job.id, expiring.job.id]);
    assert_eq!(
        reclaimed[0].status,
        JobStatus::Running,
        "returned as they were"
    );
    assert_eq!(reclaimed[0].process, Some(process));
    assert_eq!(
        reclaimed[0].lease.as_ref().map(|lease| lease.owner.clone()),
        Some(boot("before"))
    );
    for id in ids {
        let job = store.job(id).await.expect("job").expect("exists");
        assert_eq!((job.status, job.lease), (JobStatus::Queued, None));
    }
    let kept = store.job(mine.job.id).await.expect("job").expect("exists");
    assert_eq!(kept.status, JobStatus::Running);
    assert!(store
        .reclaim_leases(&boot("me"), at(121))
        .await
        .expect("reclaim")
        .is_empty());
}

// --- F-1 ---

pub async fn gate_candidates_are_old_idle_tasks_of_the_stage_oldest_first(store: &dyn Store) {
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

// --- inbox ---

pub async fn inbox_dedupes_by_source_and_delivery_id(store: &dyn Store) {
    let first = store
        .inbox_insert(delivery(Source::Plane, "d1", "one", at(0)))
        .await
        .expect("insert");
    let InboxInsert::Queued(id) = first else {
        panic!("first delivery should be queued, got {first:?}")
    };
    let again = store
        .inbox_insert(delivery(Source::Plane, "d1", "two", at(1)))
        .await
        .expect("insert");
    assert_eq!(again, InboxInsert::Duplicate);
    let gitea = store
        .inbox_insert(delivery(Source::Gitea, "d1", "three", at(2)))
        .await
        .expect("insert");
    assert!(
        matches!(gitea, InboxInsert::Queued(other) if other != id),
        "another source is another delivery"
    );
    let much_later = at(30 * 24 * 3600);
    let old_id = store
        .inbox_insert(delivery(Source::Plane, "d1", "four", much_later))
        .await
        .expect("insert");
    assert_eq!(old_id, InboxInsert::Duplicate, "delivery ids never expire");
    assert_eq!(store.inbox_pending(10).await.expect("pending").len(), 2);
}

pub async fn inbox_dedupes_the_same_body_within_seven_days_only(store: &dyn Store) {
    let week_ms = 7 * 24 * 3600 * 1000;
    let start = at(0);
    let later = |millis: i64| Timestamp::from_millis(start.as_millis() + millis);
    assert!(matches!(
        store
            .inbox_insert(delivery(Source::Plane, "d1", "body", start))
            .await
            .expect("insert"),
        InboxInsert::Queued(_)
    ));
    let retry = store
        .inbox_insert(delivery(Source::Plane, "d2", "body", later(week_ms - 1)))
        .await
        .expect("insert");
    assert_eq!(
        retry,
        InboxInsert::Duplicate,
        "same body under a new delivery id within 7 days"
    );
    let gitea = store
        .inbox_insert(delivery(Source::Gitea, "d3", "body", later(1)))
        .await
        .expect("insert");
    assert!(
        matches!(gitea, InboxInsert::Queued(_)),
        "another source does not dedupe by body"
    );
    let week_on = store
        .inbox_insert(delivery(Source::Plane, "d4", "body", later(week_ms)))
        .await
        .expect("insert");
    assert!(
        matches!(week_on, InboxInsert::Queued(_)),
        "7 days later the body is new again"
    );
}

pub async fn inbox_pending_is_oldest_first_until_processed_and_stats_show_lag(store: &dyn Store) {
    assert_eq!(store.inbox_stats(at(0)).await.expect("stats").pending, 0);
    assert_eq!(
        store
            .inbox_stats(at(0))
            .await
            .expect("stats")
            .oldest_pending_age,
        None
    );
    let mut ids = Vec::new();
    for n in 0..3 {
        let inserted = store
            .inbox_insert(delivery(
                Source::Gitea,
                &format!("d{n}"),
                &format!("b{n}"),
                at(n),
            ))
            .await
            .expect("insert");
        let InboxInsert::Queued(id) = inserted else {
            panic!("expected queued, got {inserted:?}")
        };
        ids.push(id);
    }
    let pending = store.inbox_pending(10).await.expect("pending");
    assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    let first = &pending[0];
    assert_eq!(
        (
            first.source,
            first.delivery_id.as_str(),
            first.event_type.as_str()
        ),
        (Source::Gitea, "d0", "issue")
    );
    assert_eq!(
        (first.body.as_slice(), first.received_at),
        (b"b0".as_slice(), at(0))
    );
    assert_eq!(store.inbox_pending(2).await.expect("pending").len(), 2);
    let stats = store.inbox_stats(at(10)).await.expect("stats");
    assert_eq!(
        (stats.pending, stats.oldest_pending_age),
        (3, Some(Duration::from_secs(10)))
    );
    store
        .inbox_mark_processed(ids[0], &InboxOutcome::Applied, at(11))
        .await
        .expect("mark");
    store
        .inbox_mark_processed(
            ids[2],
            &InboxOutcome::Ignored("not ours".to_owned()),
            at(11),
        )
        .await
        .expect("mark");
    let pending = store.inbox_pending(10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let stats = store.inbox_stats(at(10)).await.expect("stats");
    assert_eq!(
        (stats.pending, stats.oldest_pending_age),
        (1, Some(Duration::from_secs(9)))
    );
    let duplicate = store
        .inbox_insert(delivery(Source::Gitea, "d0", "b0", at(12)))
        .await
        .expect("insert");
    assert_eq!(
        duplicate,
        InboxInsert::Duplicate,
        "a processed delivery still dedupes"
    );
    assert_not_found(
        store
            .inbox_mark_processed(ids[2] + 1000, &InboxOutcome::Applied, at(12))
            .await,
        "unknown delivery",
    );
}

// --- reconciler and meta ---

pub async fn watermarks_are_kept_per_project(store: &dyn Store) {
    let one = ProjectId::new("p1").expect("project");
    let two = ProjectId::new("p2").expect("project");
    assert_eq!(
        store.tracker_watermark(&one).await.expect("watermark"),
        None
    );
    store.set_tracker_watermark(&one, at(5)).await.expect("set");
    store.set_tracker_watermark(&two, at(7)).await.expect("set");
    store.set_tracker_watermark(&one, at(9)).await.expect("set");
    assert_eq!(
        store.tracker_watermark(&one).await.expect("watermark"),
        Some(at(9))
    );
    assert_eq!(
        store.tracker_watermark(&two).await.expect("watermark"),
        Some(at(7))
    );
}

pub async fn reconcile_stats_keep_totals_and_the_last_twenty_unblocked(store: &dyn Store) {
    let empty = store.reconcile_stats().await.expect("stats");
    assert_eq!(
        (
            empty.runs_total,
            empty.last_run_at,
            empty.recent_unblocked.len()
        ),
        (0, None, 0)
    );
    let unblocked = |n: u32, when: i64| Unblocked {
        task: TaskId(i64::from(n)),
        work_item: WorkItemId::new("ET", n).expect("work item"),
        stage: Stage::Development,
        via: if n.is_multiple_of(2) {
            Via::Gate
        } else {
            Via::Tracker
        },
        at: at(when),
    };
    let first = ReconcileRun {
        started_at: at(0),
        duration: Duration::from_millis(120),
        unblocked: (1..=15).map(|n| unblocked(n, i64::from(n))).collect(),
        errors: vec!["plane 502".to_owned()],
    };
    store.record_reconcile_run(first).await.expect("record");
    let second = ReconcileRun {
        started_at: at(100),
        duration: Duration::from_millis(80),
        unblocked: (16..=25)
            .map(|n| unblocked(n, 100 + i64::from(n)))
            .collect(),
        errors: vec![],
    };
    store.record_reconcile_run(second).await.expect("record");
    let stats = store.reconcile_stats().await.expect("stats");
    assert_eq!(
        (stats.runs_total, stats.unblocked_total, stats.errors_total),
        (2, 25, 1)
    );
    assert_eq!(
        (stats.last_run_at, stats.last_duration),
        (Some(at(100)), Some(Duration::from_millis(80)))
    );
    assert_eq!(stats.last_error.as_deref(), Some("plane 502"));
    let recent: Vec<i64> = stats
        .recent_unblocked
        .iter()
        .map(|entry| entry.task.0)
        .collect();
    assert_eq!(recent, (6..=25).rev().collect::<Vec<i64>>());
    assert_eq!(stats.recent_unblocked[0], unblocked(25, 125));
}

pub async fn queue_snapshot_counts_jobs_and_open_tasks(store: &dyn Store) {
    let empty = store.queue_snapshot().await.expect("snapshot");
    assert_eq!(
        (empty.queued, empty.running.len(), empty.by_stage.len()),
        (0, 0, 0)
    );
    let one = create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
    let two = create(store, 2, "app", notify("n2"), at(0)).await;
    let three = create(store, 3, "app", notify("n3"), at(0)).await;
    let four = create(store, 4, "app", notify("n4"), at(0)).await;
    let claimed = store
        .claim_next(&claim_request("b1", AGENTS, at(7)))
        .await
        .expect("claim")
        .expect("job");
    let next = Task {
        stage: Stage::Development,
        status: TaskStatus::AwaitingVerdict,
        ..two.clone()
    };
    store
        .transition(transition(&next, vec![], at(8)))
        .await
        .expect("transition");
    let next = Task {
        stage: Stage::Review,
        status: TaskStatus::Blocked {
            reason: "ci red".to_owned(),
        },
        ..three.clone()
    };
    store
        .transition(transition(&next, vec![], at(8)))
        .await
        .expect("transition");
    let next = Task {
        stage: Stage::Cancelled,
        status: TaskStatus::Blocked {
            reason: "old".to_owned(),
        },
        ..four.clone()
    };
    store
        .transition(transition(&next, vec![], at(8)))
        .await
        .expect("transition");
    let snapshot = store.queue_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.queued, 3);
    assert_eq!(snapshot.running.len(), 1);
    let running = &snapshot.running[0];
    assert_eq!(
        (running.id, running.task, running.started_at),
        (claimed.job.id, one.id, at(7))
    );
    assert_eq!(
        (running.work_item.clone(), running.kind),
        (
            one.work_item.clone(),
            crate::domain::JobKind::Agent(Agent::Analyst)
        )
    );
    assert_eq!(
        snapshot.by_stage,
        vec![
            (Stage::Analysis, 1),
            (Stage::Development, 1),
            (Stage::Review, 1),
            (Stage::Cancelled, 1)
        ]
    );
    assert_eq!(snapshot.awaiting_verdict, vec![two.work_item.clone()]);
    assert_eq!(
        snapshot.blocked,
        vec![(three.work_item.clone(), "ci red".to_owned())],
        "terminal tasks need nobody"
    );
}

pub async fn last_clean_shutdown_round_trips(store: &dyn Store) {
    assert_eq!(store.last_clean_shutdown().await.expect("read"), None);
    store.set_last_clean_shutdown(at(3)).await.expect("write");
    store.set_last_clean_shutdown(at(4)).await.expect("write");
    assert_eq!(
        store.last_clean_shutdown().await.expect("read"),
        Some(at(4))
    );
}

pub async fn unknown_ids_are_not_found(store: &dyn Store) {
    let attempt = AttemptId::new("a").expect("attempt");
    let ghost = JobId(424_242);
    assert_eq!(store.job(ghost).await.expect("job"), None);
    assert_not_found(
        store.heartbeat(ghost, &attempt, at(0), LEASE).await,
        "heartbeat",
    );
    let process = ProcessRecord {
        pid: 1,
        pgid: 1,
        start_time: 1,
    };
    assert_not_found(
        store.record_process(ghost, &attempt, process).await,
        "record_process",
    );
    let result = JobResult::Failed {
        error: "x".to_owned(),
    };
    assert_not_found(
        store.finish_job(ghost, &attempt, result, at(0)).await,
        "finish_job",
    );
    assert_not_found(store.mark_job_handled(ghost).await, "mark_job_handled");
    assert!(store
        .jobs_of_task(TaskId(424_242))
        .await
        .expect("jobs")
        .is_empty());
    assert!(store
        .history(TaskId(424_242))
        .await
        .expect("history")
        .is_empty());
    assert!(!store.has_active_job(TaskId(424_242)).await.expect("active"));
    let task = create(store, 1, "app", notify("n"), at(0)).await;
    let mut tr = transition(&task, vec![], at(1));
    tr.consumes_job = Some(ghost);
    assert_not_found(store.transition(tr).await, "consuming an unknown job");
    assert_eq!(store.task(task.id).await.expect("task"), Some(task));
}

pub async fn only_pipeline_work_makes_a_task_busy(store: &dyn Store) {
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
}

pub async fn handed_back_job_is_queued_at_once_without_counting_the_attempt(store: &dyn Store) {
    create(store, 1, "app", notify("n"), at(0)).await;
    let claimed = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(1)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(claimed.job.attempts, 1);
    let back = JobResult::HandBack {
        error: "interrupted by shutdown".to_owned(),
    };
    store
        .finish_job(claimed.job.id, &claimed.attempt, back, at(2))
        .await
        .expect("hand back");
    let job = store
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(
        (job.status, job.not_before, job.attempts, job.lease.clone()),
        (JobStatus::Queued, at(2), 0, None)
    );
    let again = store
        .claim_next(&claim_request("b2", ClaimKinds::Actions, at(2)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(
        again.job.attempts, 1,
        "the interrupted attempt did not count"
    );
}

pub async fn state_moves_of_one_task_are_claimed_one_at_a_time(store: &dyn Store) {
    let state = |key: &str| {
        JobSpec::new(
            Action::TrackerState {
                state: StateRole::Awaiting,
                gate_comment: None,
            },
            key,
        )
    };
    let task = create(store, 1, "app", state("s1"), at(0)).await;
    let other = create(store, 2, "app", state("o1"), at(0)).await;
    store
        .transition(transition(&task, vec![state("s2")], at(1)))
        .await
        .expect("transition");
    let first = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(2)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(first.job.task, task.id);
    let second = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(2)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(
        second.job.task, other.id,
        "the task's second state move waits for its first"
    );
    assert!(store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(2)))
        .await
        .expect("claim")
        .is_none());
    store
        .finish_job(
            first.job.id,
            &first.attempt,
            JobResult::Succeeded(JobOutput::default()),
            at(3),
        )
        .await
        .expect("finish");
    let third = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(3)))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(third.job.task, task.id);
}

// --- outages, stages and obsolete jobs ---

pub async fn create_task_writes_every_first_job_and_jobs_remember_their_stage(store: &dyn Store) {
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

pub async fn waits_count_no_attempt_and_keep_the_start_of_the_outage(store: &dyn Store) {
    create(store, 1, "app", notify("n"), at(0)).await;
    let wait = |seconds: i64, service: Service| JobResult::Wait {
        not_before: at(seconds + 5),
        error: format!("{service} is down"),
        service,
    };
    let claim = |seconds: i64| async move {
        store
            .claim_next(&claim_request("b1", ClaimKinds::Actions, at(seconds)))
            .await
            .expect("claim")
            .expect("job")
    };
    let first = claim(1).await;
    store
        .finish_job(
            first.job.id,
            &first.attempt,
            wait(1, Service::Telegram),
            at(1),
        )
        .await
        .expect("wait");
    let second = claim(6).await;
    assert_eq!(
        second.job.attempts, 1,
        "a wait does not count as an attempt"
    );
    store
        .finish_job(
            second.job.id,
            &second.attempt,
            wait(6, Service::Telegram),
            at(6),
        )
        .await
        .expect("wait");
    let job = store.job(first.job.id).await.expect("job").expect("exists");
    assert_eq!(
        (
            job.status,
            job.attempts,
            job.waits,
            job.waiting,
            job.not_before
        ),
        (
            JobStatus::Queued,
            0,
            2,
            Some(Waiting {
                service: Service::Telegram,
                since: at(1)
            }),
            at(11)
        )
    );
    assert_eq!(job.last_error.as_deref(), Some("telegram is down"));
    let third = claim(11).await;
    store
        .finish_job(
            third.job.id,
            &third.attempt,
            wait(11, Service::Plane),
            at(11),
        )
        .await
        .expect("wait");
    let job = store.job(first.job.id).await.expect("job").expect("exists");
    assert_eq!(
        job.waiting,
        Some(Waiting {
            service: Service::Plane,
            since: at(11)
        }),
        "another service starts another outage"
    );
    let fourth = claim(16).await;
    let retry = JobResult::Retry {
        not_before: at(20),
        error: "bad answer".to_owned(),
    };
    store
        .finish_job(fourth.job.id, &fourth.attempt, retry, at(16))
        .await
        .expect("retry");
    let job = store.job(first.job.id).await.expect("job").expect("exists");
    assert_eq!(
        (job.attempts, job.waits, job.waiting),
        (1, 0, None),
        "a retry counts and ends the waiting"
    );
}

pub async fn queue_snapshot_shows_each_service_jobs_wait_on(store: &dyn Store) {
    let first = create(store, 1, "app", notify("a"), at(0)).await;
    create(store, 2, "app", notify("b"), at(0)).await;
    create(store, 3, "app", notify("c"), at(0)).await;
    for (seconds, service) in [
        (1, Service::Plane),
        (2, Service::Plane),
        (3, Service::Gitea),
    ] {
        let claimed = store
            .claim_next(&claim_request("b1", ClaimKinds::Actions, at(seconds)))
            .await
            .expect("claim")
            .expect("job");
        let wait = JobResult::Wait {
            not_before: at(100),
            error: format!("{service} {seconds}"),
            service,
        };
        store
            .finish_job(claimed.job.id, &claimed.attempt, wait, at(seconds))
            .await
            .expect("wait");
    }
    let snapshot = store.queue_snapshot().await.expect("snapshot");
    assert_eq!(
        snapshot.waiting,
        vec![
            ServiceWait {
                service: Service::Plane,
                since: at(1),
                jobs: 2,
                oldest_task: first.id,
                last_error: Some("plane 1".to_owned()),
            },
            ServiceWait {
                service: Service::Gitea,
                since: at(3),
                jobs: 1,
                oldest_task: TaskId(first.id.0 + 2),
                last_error: Some("gitea 3".to_owned()),
            },
        ]
    );
}

pub async fn obsolete_job_ends_cancelled_and_handled(store: &dyn Store) {
    create(store, 1, "app", JobSpec::agent(Agent::Analyst, None), at(0)).await;
    let claimed = store
        .claim_next(&claim_request("b1", AGENTS, at(1)))
        .await
        .expect("claim")
        .expect("job");
    let obsolete = JobResult::Obsolete {
        reason: "task moved on".to_owned(),
    };
    store
        .finish_job(claimed.job.id, &claimed.attempt, obsolete, at(2))
        .await
        .expect("finish");
    let job = store
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(
        (job.status, job.handled, job.last_error.as_deref()),
        (JobStatus::Cancelled, true, Some("task moved on"))
    );
    assert!(store
        .unhandled_finished_jobs(10)
        .await
        .expect("jobs")
        .is_empty());
    assert!(!store.has_active_job(job.task).await.expect("busy"));
}

// --- retention ---

/// Claims every due action job and ends it `Succeeded` at `now`, its end handled.
async fn run_actions(store: &dyn Store, now: Timestamp) -> Vec<JobId> {
    let mut ended = Vec::new();
    while let Some(claimed) = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, now))
        .await
        .expect("claim")
    {
        store
            .finish_job(
                claimed.job.id,
                &claimed.attempt,
                JobResult::Succeeded(JobOutput::default()),
                now,
            )
            .await
            .expect("finish");
        store
            .mark_job_handled(claimed.job.id)
            .await
            .expect("handled");
        ended.push(claimed.job.id);
    }
    ended
}

/// Moves the task to `done` with `jobs`.
async fn end_task(store: &dyn Store, task: &Task, jobs: Vec<JobSpec>, now: Timestamp) -> Task {
    let mut next = task.clone();
    next.stage = Stage::Done;
    store
        .transition(transition(&next, jobs, now))
        .await
        .expect("end the task")
}

fn prune_all_before(cutoff: Timestamp, limit: u32) -> PruneRequest {
    PruneRequest {
        deliveries_before: Some(cutoff),
        jobs_before: Some(cutoff),
        history_before: Some(cutoff),
        limit,
    }
}

async fn insert_again(store: &dyn Store, delivery_id: &str, now: Timestamp) -> InboxInsert {
    store
        .inbox_insert(delivery(Source::Plane, delivery_id, delivery_id, now))
        .await
        .expect("insert")
}

pub async fn prune_deletes_processed_deliveries_before_the_cutoff_and_never_pending_ones(
    store: &dyn Store,
) {
    let mut ids = Vec::new();
    for n in 0..4 {
        let name = format!("d{n}");
        let InboxInsert::Queued(id) = insert_again(store, &name, at(n)).await else {
            panic!("{name} should be queued");
        };
        ids.push(id);
    }
    for (id, processed) in ids.iter().zip([at(10), at(20), at(30)]) {
        store
            .inbox_mark_processed(*id, &InboxOutcome::Applied, processed)
            .await
            .expect("mark processed");
    }
    let only_deliveries = |cutoff| PruneRequest {
        deliveries_before: Some(cutoff),
        jobs_before: None,
        history_before: None,
        limit: 100,
    };
    let pruned = store.prune(only_deliveries(at(25))).await.expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 2,
            jobs: 0,
            history: 0
        }
    );
    // A pruned delivery is gone (its id and body no longer dedupe); a kept one still dedupes.
    assert!(matches!(
        insert_again(store, "d0", at(40)).await,
        InboxInsert::Queued(_)
    ));
    assert_eq!(
        insert_again(store, "d2", at(40)).await,
        InboxInsert::Duplicate
    );
    // However old, a delivery not processed yet is kept.
    let pruned = store
        .prune(only_deliveries(at(100_000)))
        .await
        .expect("prune");
    assert_eq!(pruned.deliveries, 1, "d2 only");
    let pending: Vec<String> = store
        .inbox_pending(10)
        .await
        .expect("pending")
        .into_iter()
        .map(|delivery| delivery.delivery_id)
        .collect();
    assert_eq!(pending, ["d3", "d0"]);
}

pub async fn prune_deletes_ended_jobs_and_history_of_ended_tasks_only(store: &dyn Store) {
    // A: ended, its job ended and handled. B: not ended. C: ended with a job still queued.
    // D: ended with a job whose end the event loop has not handled yet.
    let a = create(store, 1, "app", notify("a1"), at(0)).await;
    let b = create(store, 2, "app", notify("b1"), at(0)).await;
    let c = create(store, 3, "app", notify("c1"), at(0)).await;
    assert_eq!(run_actions(store, at(2)).await.len(), 3);
    let d = create(store, 4, "app", notify("d1"), at(2)).await;
    let claimed = store
        .claim_next(&claim_request("b1", ClaimKinds::Actions, at(3)))
        .await
        .expect("claim")
        .expect("d1");
    store
        .finish_job(
            claimed.job.id,
            &claimed.attempt,
            JobResult::Succeeded(JobOutput::default()),
            at(3),
        )
        .await
        .expect("finish");
    let a = end_task(store, &a, vec![], at(3)).await;
    end_task(store, &c, vec![notify("c2")], at(3)).await;
    end_task(store, &d, vec![], at(3)).await;

    // Only what is older than the cutoff: the "created" lines of A and C, at 0.
    let pruned = store
        .prune(prune_all_before(at(1), 100))
        .await
        .expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 0,
            jobs: 0,
            history: 2
        }
    );
    let pruned = store
        .prune(prune_all_before(at(1_000), 100))
        .await
        .expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 0,
            jobs: 1,
            history: 4
        },
        "A's job; the other lines of A, C and D"
    );
    assert!(store.jobs_of_task(a.id).await.expect("jobs").is_empty());
    assert!(store.history(a.id).await.expect("history").is_empty());
    assert_eq!(
        store.task(a.id).await.expect("task"),
        Some(a.clone()),
        "tasks are kept"
    );
    assert_eq!(store.jobs_of_task(b.id).await.expect("jobs").len(), 1);
    assert_eq!(store.history(b.id).await.expect("history").len(), 1);
    assert_eq!(store.jobs_of_task(c.id).await.expect("jobs").len(), 2);
    assert_eq!(store.jobs_of_task(d.id).await.expect("jobs").len(), 1);
    // Once C's and D's work is over, theirs go too.
    run_actions(store, at(5)).await;
    for job in store.unhandled_finished_jobs(10).await.expect("unhandled") {
        store.mark_job_handled(job.id).await.expect("handled");
    }
    let pruned = store
        .prune(prune_all_before(at(1_000), 100))
        .await
        .expect("prune");
    assert_eq!(pruned.jobs, 3);
    assert_eq!(store.jobs_of_task(b.id).await.expect("jobs").len(), 1);
}

pub async fn prune_takes_at_most_the_limit_of_each_kind_oldest_first(store: &dyn Store) {
    for n in 0..3 {
        let name = format!("d{n}");
        let InboxInsert::Queued(id) = insert_again(store, &name, at(n)).await else {
            panic!("{name} should be queued");
        };
        store
            .inbox_mark_processed(id, &InboxOutcome::Applied, at(n))
            .await
            .expect("processed");
    }
    let task = create(store, 1, "app", notify("a1"), at(0)).await;
    let next = transition(&task, vec![notify("a2"), notify("a3")], at(1));
    let task = store.transition(next).await.expect("step");
    run_actions(store, at(2)).await;
    end_task(store, &task, vec![], at(3)).await;
    let jobs: Vec<JobId> = store
        .jobs_of_task(task.id)
        .await
        .expect("jobs")
        .iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(jobs.len(), 3);

    let none = PruneRequest {
        deliveries_before: None,
        jobs_before: None,
        history_before: None,
        limit: 100,
    };
    assert_eq!(store.prune(none).await.expect("prune"), Pruned::default());

    let pruned = store
        .prune(prune_all_before(at(1_000), 2))
        .await
        .expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 2,
            jobs: 2,
            history: 2
        }
    );
    assert!(pruned.hit_limit(2));
    assert!(matches!(
        insert_again(store, "d0", at(40)).await,
        InboxInsert::Queued(_)
    ));
    assert!(matches!(
        insert_again(store, "d1", at(40)).await,
        InboxInsert::Queued(_)
    ));
    assert_eq!(
        insert_again(store, "d2", at(40)).await,
        InboxInsert::Duplicate
    );
    let left: Vec<JobId> = store
        .jobs_of_task(task.id)
        .await
        .expect("jobs")
        .iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(left, jobs[2..], "the oldest jobs went first");
    let history = store.history(task.id).await.expect("history");
    assert_eq!(history.len(), 1, "three lines, two pruned");
    assert_eq!(history[0].stage, Stage::Done, "the newest line is kept");

    let pruned = store
        .prune(prune_all_before(at(1_000), 2))
        .await
        .expect("prune");
    assert_eq!(
        (pruned.deliveries, pruned.jobs, pruned.history),
        (1, 1, 1),
        "d2, the last job and the last line"
    );
    assert!(!pruned.hit_limit(2));
}
