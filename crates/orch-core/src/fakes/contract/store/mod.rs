//! The `Store` contract suite, run against `MemStore` and every real store: one file per part
//! of the contract, and the helpers the parts share.

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use crate::domain::{Action, JobSpec, NewTask, Stage, Task};
use crate::fakes::contract::{run_suite, Case};
use crate::ids::{
    BootId, BranchName, CommitSha, IssueId, ProjectId, RepoSlug, StateId, WorkItemId,
};
use crate::ports::{ClaimKinds, ClaimRequest, NewDelivery, Source, Store, StoreError, Transition};
use crate::time::Timestamp;

mod inbox;
mod jobs;
mod meta;
mod retention;
mod tasks;
mod transitions;

/// Every case of the `Store` contract.
pub fn cases() -> Vec<&'static Case<dyn Store>> {
    [
        tasks::CASES,
        transitions::CASES,
        jobs::CASES,
        inbox::CASES,
        meta::CASES,
        retention::CASES,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs the `Store` contract on a fresh, empty store per case from `make` (given the case's
/// name), e.g. `store(|_| async { Box::new(MemStore::new()) })`; a real store can keep its
/// temporary directory alive in the guard `make` returns.
pub async fn store<T, Fut>(make: impl FnMut(&'static str) -> Fut)
where
    T: Deref,
    T::Target: Store + Sized + 'static,
    Fut: Future<Output = T>,
{
    run_suite("Store", &cases(), make, as_store::<T>).await;
}

fn as_store<T>(owner: &T) -> &(dyn Store + 'static)
where
    T: Deref,
    T::Target: Store + Sized + 'static,
{
    &**owner
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
