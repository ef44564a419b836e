//! The daemon in-process against the simulators: the pipeline and its recoveries.

use std::collections::{BTreeMap, BTreeSet};

use orch_core::domain::{Agent, JobKind, JobStatus, MergeOutcome, Stage, Task};
use orch_core::ports::Store;
use orch_daemon::sandbox::{self, Approver, Person, Sandbox, Verdict};
use orch_sim::gitea::Mutation as GiteaMutation;
use orch_sim::plane::MutationKind;

use crate::harness::{alive, sandbox, wait_for, CONVERGE};

const NO_SCRIPT: &str = r#"{"default": {}, "items": {}}"#;

/// Creates `n` items, moves them to In Progress, approves every gate, and returns the ended
/// tasks (by Plane item id, in creation order).
async fn run_items(sandbox: &Sandbox, n: usize, person: &mut dyn Person) -> Vec<(String, Task)> {
    let daemon = sandbox.start_daemon(None).await.expect("daemon starts");
    let mut items = Vec::new();
    for index in 0..n {
        let (item, _) = sandbox
            .create_item(&format!("Item number {}", index + 1))
            .await
            .expect("item created");
        items.push(item);
    }
    for item in &items {
        sandbox.move_item(item, "In Progress").await.expect("moved");
    }
    let store = daemon.store();
    let ended = sandbox::play_person(
        sandbox,
        store.as_ref(),
        &items,
        person,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    daemon.shutdown().await;
    ended
        .into_iter()
        .map(|end| (end.item, end.task.expect("every item has a task")))
        .collect()
}

fn assert_all_merged(sandbox: &Sandbox, tasks: &[(String, Task)]) {
    for (_, task) in tasks {
        assert!(
            sandbox::merged(sandbox, Some(task)),
            "{} ended at {} / {}",
            task.work_item,
            task.stage,
            task.status
        );
    }
}

async fn jobs_of(sandbox: &Sandbox, task: &Task) -> Vec<orch_core::domain::Job> {
    let store =
        orch_sqlite::SqliteStore::open(&sandbox.config.storage.db_path).expect("store opens");
    store.jobs_of_task(task.id).await.expect("jobs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_items_are_merged_and_every_outside_mutation_happens_exactly_once() {
    let (sandbox, _dir) = sandbox(NO_SCRIPT).await;
    let tasks = run_items(&sandbox, 5, &mut Approver).await;
    assert_all_merged(&sandbox, &tasks);

    let gitea = sandbox.gitea.mutations();
    let created: Vec<&GiteaMutation> = gitea
        .iter()
        .filter(|m| matches!(m, GiteaMutation::PullCreated { .. }))
        .collect();
    let merged: BTreeSet<u64> = gitea
        .iter()
        .filter_map(|m| {
            if let GiteaMutation::PullMerged { number, .. } = m {
                Some(*number)
            } else {
                None
            }
        })
        .collect();
    let reviews = gitea
        .iter()
        .filter(|m| matches!(m, GiteaMutation::ReviewPosted { .. }))
        .count();
    assert_eq!((created.len(), merged.len(), reviews), (5, 5, 5));
    assert!(!gitea
        .iter()
        .any(|m| matches!(m, GiteaMutation::PullClosed { .. })));

    let plane = sandbox.plane.mutations();
    let mut external_ids = BTreeSet::new();
    let state_name = |id: &str| {
        ["In Progress", "In Review", "Approved", "Done"]
            .into_iter()
            .find(|name| sandbox.plane.state_id(&sandbox.project, name).as_deref() == Some(id))
            .unwrap_or("another state")
    };
    let mut state_sets: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for mutation in &plane {
        match &mutation.kind {
            MutationKind::CommentCreated { external_id, .. } => {
                assert!(
                    external_ids.insert(external_id.clone()),
                    "comment {external_id:?} posted twice"
                );
            }
            MutationKind::StateSet { from, to } => {
                assert_ne!(from, to, "a state set that changed nothing");
                state_sets
                    .entry(mutation.item.clone())
                    .or_default()
                    .push(state_name(to));
            }
        }
    }
    assert_eq!(
        external_ids.len(),
        10,
        "an analysis and a review comment per item"
    );
    // After the final Approve orch moves the item back to In Progress while it merges; when
    // the merge finishes first, that move is obsolete and is not made (the task moved on).
    let full = [
        "In Review",
        "In Progress",
        "In Review",
        "In Progress",
        "Done",
    ];
    let merged_first = ["In Review", "In Progress", "In Review", "Done"];
    for (item, _) in &tasks {
        let sets = state_sets.get(item).cloned().unwrap_or_default();
        assert!(
            sets == full || sets == merged_first,
            "{item}: orch's moves were {sets:?}"
        );
    }

    let messages: Vec<String> = sandbox
        .telegram
        .messages()
        .into_iter()
        .map(|m| m.text)
        .collect();
    let distinct: BTreeSet<&String> = messages.iter().collect();
    assert_eq!(
        messages.len(),
        15,
        "analysis ready, review ready, merged per item: {messages:#?}"
    );
    assert_eq!(distinct.len(), messages.len(), "a message sent twice");
    assert!(
        messages
            .iter()
            .all(|text| text.contains("/projects/") && text.contains(" in Plane</a>")),
        "every message links to its work item: {messages:#?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|text| text.contains("/pulls/") && text.contains(" in Gitea</a>"))
            .count(),
        10,
        "review ready and merged link to the pull request: {messages:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_in_progress_webhook_is_recovered_by_the_tracker_reconciler() {
    let (sandbox, _dir) = sandbox(NO_SCRIPT).await;
    let daemon = sandbox.start_daemon(None).await.expect("daemon starts");
    let (item, _) = sandbox.create_item("Lost start").await.expect("item");
    sandbox.plane.drop_next_deliveries(1);
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    let store = daemon.store();
    let ended = sandbox::play_person(
        &sandbox,
        store.as_ref(),
        std::slice::from_ref(&item),
        &mut Approver,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    let stats = store.reconcile_stats().await.expect("stats");
    daemon.shutdown().await;
    assert!(sandbox::merged(&sandbox, ended[0].task.as_ref()));
    assert!(stats
        .recent_unblocked
        .iter()
        .any(|unblocked| unblocked.via.as_str() == "tracker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ci_status_webhook_is_recovered_by_the_gate_reconciler() {
    let (sandbox, _dir) = sandbox(NO_SCRIPT).await;
    sandbox
        .gitea
        .drop_status_deliveries_for_branch_prefix("feature/ET-001-");
    let tasks = run_items(&sandbox, 1, &mut Approver).await;
    assert_all_merged(&sandbox, &tasks);
    let store =
        orch_sqlite::SqliteStore::open(&sandbox.config.storage.db_path).expect("store opens");
    let stats = store.reconcile_stats().await.expect("stats");
    assert!(stats
        .recent_unblocked
        .iter()
        .any(|unblocked| unblocked.via.as_str() == "gate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_delivered_twice_advance_once() {
    let (sandbox, _dir) = sandbox(NO_SCRIPT).await;
    sandbox.plane.duplicate_next_deliveries(100);
    sandbox.gitea.duplicate_next_deliveries(100);
    let tasks = run_items(&sandbox, 1, &mut Approver).await;
    assert_all_merged(&sandbox, &tasks);
    let jobs = jobs_of(&sandbox, &tasks[0].1).await;
    let runs = |agent| {
        jobs.iter()
            .filter(|job| job.kind() == JobKind::Agent(agent))
            .count()
    };
    assert_eq!(
        (
            runs(Agent::Analyst),
            runs(Agent::Developer),
            runs(Agent::Reviewer)
        ),
        (1, 1, 1)
    );
    assert_eq!(sandbox.gitea.pulls(orch_daemon::sandbox::REPO).len(), 1);
}

/// Rejects the analysis twice and the final verdict once, then approves.
struct Demanding {
    analysis_rejections: u32,
    review_rejections: u32,
}

impl Person for Demanding {
    fn verdict(&mut self, _item: &str, task: &Task) -> Verdict {
        match task.stage {
            Stage::Analysis if self.analysis_rejections < 2 => {
                self.analysis_rejections += 1;
                Verdict::Reject {
                    comment: format!("Not yet ({}).", self.analysis_rejections),
                }
            }
            Stage::Review if self.review_rejections < 1 => {
                self.review_rejections += 1;
                Verdict::Reject {
                    comment: "Rename the flag.".to_owned(),
                }
            }
            _ => Verdict::Approve,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_loop_reruns_the_agents_with_the_comments_and_then_merges() {
    let (sandbox, _dir) = sandbox(NO_SCRIPT).await;
    let mut person = Demanding {
        analysis_rejections: 0,
        review_rejections: 0,
    };
    let tasks = run_items(&sandbox, 1, &mut person).await;
    assert_all_merged(&sandbox, &tasks);
    let jobs = jobs_of(&sandbox, &tasks[0].1).await;
    let runs = |agent| {
        jobs.iter()
            .filter(|job| job.kind() == JobKind::Agent(agent))
            .count()
    };
    assert_eq!(
        (
            runs(Agent::Analyst),
            runs(Agent::Developer),
            runs(Agent::Reviewer)
        ),
        (3, 2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_failure_runs_a_fix_round_and_then_merges() {
    let script = r#"{"default": {}, "items": {"ET-001": {"developer": {"ci_fail_times": 1}}}}"#;
    let (sandbox, _dir) = sandbox(script).await;
    let tasks = run_items(&sandbox, 1, &mut Approver).await;
    assert_all_merged(&sandbox, &tasks);
    assert_eq!(tasks[0].1.fix_rounds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_conflict_goes_back_to_development_and_then_merges() {
    let script = r#"{"default": {"developer": {"conflict_file": "shared.txt"}}, "items": {}}"#;
    let (sandbox, _dir) = sandbox(script).await;
    let tasks = run_items(&sandbox, 2, &mut Approver).await;
    assert_all_merged(&sandbox, &tasks);
    let developer_runs: usize = {
        let mut total = 0;
        for (_, task) in &tasks {
            total += jobs_of(&sandbox, task)
                .await
                .iter()
                .filter(|job| job.kind() == JobKind::Agent(Agent::Developer))
                .count();
        }
        total
    };
    assert!(
        developer_runs >= 3,
        "the second merge conflicted and the developer caught up ({developer_runs} runs)"
    );
    // Gitea refuses a PR its checker knows to conflict with 405 "Please try again later", not
    // 409: orch found the conflict with its own merge of base and head, not by retrying.
    let mut decided_locally = false;
    for (_, task) in &tasks {
        decided_locally |= jobs_of(&sandbox, task).await.iter().any(|job| {
            matches!(
                job.output.as_ref().and_then(|output| output.merge.as_ref()),
                Some(MergeOutcome::NeedsRebase { reason }) if reason == "conflicts with main"
            )
        });
    }
    assert!(
        decided_locally,
        "a merge answered 405 was sent back to development"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_item_while_its_agent_runs_kills_the_agents_process_group() {
    let script = r#"{"default": {"analyst": {"hang": true}}, "items": {}}"#;
    let (sandbox, _dir) = sandbox(script).await;
    let daemon = sandbox.start_daemon(None).await.expect("daemon starts");
    let (item, _) = sandbox.create_item("Cancel me").await.expect("item");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    let store = daemon.store();
    let pid = wait_for("the analyst to run", || async {
        let task = sandbox.task(store.as_ref(), &item).await.ok()??;
        let jobs = store.jobs_of_task(task.id).await.ok()?;
        jobs.iter()
            .find(|job| job.status == JobStatus::Running)
            .and_then(|job| job.process)
            .map(|process| process.pid)
    })
    .await;
    assert!(alive(pid));
    sandbox.move_item(&item, "Cancelled").await.expect("moved");
    wait_for("the task to be cancelled", || async {
        let task = sandbox.task(store.as_ref(), &item).await.ok()??;
        (task.stage == Stage::Cancelled).then_some(())
    })
    .await;
    wait_for("the agent's process to end", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    daemon.shutdown().await;
}

/// `GET /metrics` over a plain TCP connection (no admin token is set in the sandbox).
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// The value of the one sample of `series` whose line starts with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_build_the_process_agent_runs_and_the_last_good_reconcile_pass() {
    let (sandbox, _dir) = sandbox(NO_SCRIPT).await;
    let daemon = sandbox.start_daemon(None).await.expect("daemon starts");
    let (item, _) = sandbox.create_item("Measured").await.expect("item");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    let store = daemon.store();
    sandbox::play_person(
        &sandbox,
        store.as_ref(),
        std::slice::from_ref(&item),
        &mut Approver,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    let metrics = wait_for("a reconcile pass without errors", || async {
        let metrics = scrape(daemon.addr()).await;
        (sample(&metrics, "orch_reconcile_last_success_timestamp_seconds ")? > 0.0)
            .then_some(metrics)
    })
    .await;
    daemon.shutdown().await;

    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("orch_build_info{version=\"") && line.ends_with(" 1")),
        "{metrics}"
    );
    for role in ["analyst", "developer", "reviewer"] {
        let count = sample(
            &metrics,
            &format!("orch_agent_run_seconds_count{{role=\"{role}\",outcome=\"succeeded\"}}"),
        );
        assert_eq!(count, Some(1.0), "{role}: {metrics}");
    }
    assert!(
        sample(&metrics, "orch_process_resident_memory_bytes ").is_some_and(|bytes| bytes > 1e6)
    );
    assert!(sample(&metrics, "orch_process_open_fds ").is_some_and(|fds| fds >= 3.0));
    assert!(sample(&metrics, "orch_process_cpu_seconds_total ").is_some());
    for service in ["plane", "gitea"] {
        assert_eq!(
            sample(
                &metrics,
                &format!("orch_service_degraded{{service=\"{service}\"}}")
            ),
            Some(0.0),
            "{metrics}"
        );
    }
}
