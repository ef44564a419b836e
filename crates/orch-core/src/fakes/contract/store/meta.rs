//! The reconciler's records, the queue snapshot, meta values and unknown ids.

use std::time::Duration;

use crate::domain::{Agent, JobResult, JobSpec, ProcessRecord, Service, Stage, Task, TaskStatus};
use crate::fakes::contract::store::{
    assert_not_found, at, claim_request, create, notify, transition, AGENTS, LEASE,
};
use crate::fakes::contract::{case, Case};
use crate::ids::{AttemptId, JobId, ProjectId, TaskId, WorkItemId};
use crate::ports::{ClaimKinds, ReconcileRun, ServiceWait, Store, Unblocked, Via};

pub(super) const CASES: &[Case<dyn Store>] = &[
    case!(watermarks_are_kept_per_project, |store| {
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
    }),
    case!(
        reconcile_stats_keep_totals_and_the_last_twenty_unblocked,
        |store| {
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
    ),
    case!(queue_snapshot_counts_jobs_and_open_tasks, |store| {
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
    }),
    case!(queue_snapshot_shows_each_service_jobs_wait_on, |store| {
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
    }),
    case!(last_clean_shutdown_round_trips, |store| {
        assert_eq!(store.last_clean_shutdown().await.expect("read"), None);
        store.set_last_clean_shutdown(at(3)).await.expect("write");
        store.set_last_clean_shutdown(at(4)).await.expect("write");
        assert_eq!(
            store.last_clean_shutdown().await.expect("read"),
            Some(at(4))
        );
    }),
    case!(unknown_ids_are_not_found, |store| {
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
    }),
];
