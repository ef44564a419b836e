//! What the store benchmarks share: their runtime, the tasks they create and the jobs they run to the end.

use std::future::Future;

use orch_core::domain::{JobOutput, JobResult, NewTask, Stage};
use orch_core::ids::{BranchName, IssueId, JobId, ProjectId, RepoSlug, WorkItemId};
use orch_core::ports::{ClaimRequest, Store};
use orch_core::time::Timestamp;
use orch_sqlite::SqliteStore;

pub(crate) type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Runs `bench` on a runtime of two workers, the daemon's on the 2-core target machine.
pub(crate) fn run_on_runtime(bench: impl Future<Output = BenchResult>) -> BenchResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench)
}

/// A task in analysis for work item `{prefix}-{number}`, issue `{name}-{number}` of project
/// `name`, on `acme/{name}`'s `main`.
pub(crate) fn new_task(
    prefix: &str,
    number: u32,
    name: &str,
    description: String,
) -> BenchResult<NewTask> {
    let work_item = WorkItemId::new(prefix, number)?;
    Ok(NewTask {
        issue: IssueId::new(format!("{name}-{number}"))?,
        project: ProjectId::new(name)?,
        branch: BranchName::for_work_item(&work_item, name),
        work_item,
        title: format!("{name} item {number}"),
        description,
        repo: RepoSlug::new(&format!("acme/{name}"))?,
        base_branch: BranchName::new("main")?,
        stage: Stage::Analysis,
        tracker_state: None,
        tracker_seen_at: None,
    })
}

/// Claims the next job `request` may take and finishes it as succeeded at `now`; `None` when
/// there was none to claim.
pub(crate) async fn finish_next_job(
    store: &SqliteStore,
    request: &ClaimRequest,
    now: Timestamp,
) -> BenchResult<Option<JobId>> {
    let Some(claimed) = store.claim_next(request).await? else {
        return Ok(None);
    };
    store
        .finish_job(
            claimed.job.id,
            &claimed.attempt,
            JobResult::Succeeded(JobOutput::default()),
            now,
        )
        .await?;
    Ok(Some(claimed.job.id))
}
