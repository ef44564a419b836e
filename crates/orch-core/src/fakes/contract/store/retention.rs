//! Retention: what `prune` deletes, and what it never deletes.

use crate::domain::{JobOutput, JobResult, JobSpec, Stage, Task};
use crate::fakes::contract::store::{at, claim_request, create, delivery, notify, transition};
use crate::fakes::contract::{case, Case};
use crate::ids::JobId;
use crate::ports::{ClaimKinds, InboxInsert, InboxOutcome, PruneRequest, Pruned, Source, Store};
use crate::time::Timestamp;

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

pub(super) const CASES: &[Case<dyn Store>] = &[
    case!(
        prune_deletes_processed_deliveries_before_the_cutoff_and_never_pending_ones,
        |store| {
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
            // A pruned delivery is gone (its id and body no longer dedupe); a kept one still
            // dedupes.
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
    ),
    case!(
        prune_deletes_ended_jobs_and_history_of_ended_tasks_only,
        |store| {
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
    ),
    case!(
        prune_takes_at_most_the_limit_of_each_kind_oldest_first,
        |store| {
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
    ),
];
