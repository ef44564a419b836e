//! Jobs at work: claims, leases, heartbeats, retries, waits and how jobs end.

use crate::domain::{
    Action, Agent, JobOutput, JobResult, JobSpec, JobStatus, MergeOutcome, ProcessRecord,
    ReviewVerdict, Service, StateRole, Waiting,
};
use crate::fakes::contract::store::{
    assert_conflict, at, boot, claim_request, create, notify, repo, sha, transition, AGENTS, LEASE,
};
use crate::fakes::contract::{case, Case};
use crate::ids::{AttemptId, JobId, PrNumber, StateId};
use crate::ports::{ClaimKinds, Store};
use crate::time::Timestamp;

pub(super) const CASES: &[Case<dyn Store>] = &[
    case!(
        claim_takes_the_oldest_due_job_and_honours_not_before,
        |store| {
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
    ),
    case!(claim_separates_agent_jobs_from_action_jobs, |store| {
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
    }),
    case!(claim_honours_the_per_repo_agent_limit, |store| {
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
    }),
    case!(
        next_due_reports_the_earliest_queued_job_of_the_kinds,
        |store| {
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
    ),
    case!(
        heartbeat_extends_the_lease_and_rejects_a_stale_attempt,
        |store| {
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
    ),
    case!(record_process_is_fenced_by_the_attempt, |store| {
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
    }),
    case!(
        retry_requeues_the_job_at_its_not_before_with_the_error,
        |store| {
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
    ),
    case!(ended_jobs_are_unhandled_until_marked, |store| {
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
    }),
    case!(job_payload_and_output_round_trip, |store| {
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
    }),
    case!(
        late_completion_of_a_reclaimed_attempt_is_rejected,
        |store| {
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
    ),
    case!(
        reclaim_takes_leases_of_other_boots_and_expired_leases_only,
        |store| {
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
    ),
    case!(
        handed_back_job_is_queued_at_once_without_counting_the_attempt,
        |store| {
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
    ),
    case!(state_moves_of_one_task_are_claimed_one_at_a_time, |store| {
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
    }),
    case!(
        waits_count_no_attempt_and_keep_the_start_of_the_outage,
        |store| {
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
    ),
    case!(obsolete_job_ends_cancelled_and_handled, |store| {
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
    }),
];
