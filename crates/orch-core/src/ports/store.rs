//! The `Store` port: tasks, jobs with leases, the webhook inbox, history and reconcile runs.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{
    ClaimedJob, HistoryEntry, Job, JobKind, JobResult, JobSpec, NewTask, ProcessRecord, Service,
    Stage, Task,
};
use crate::ids::{
    AttemptId, BootId, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, TaskId, WorkItemId,
};
use crate::time::Timestamp;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: not found: {0}")]
    NotFound(String),
    /// A compare-and-swap lost (task version, job attempt) or a uniqueness rule was hit.
    #[error("store: conflict: {0}")]
    Conflict(String),
    /// The database is busy or unreachable; retrying may help.
    #[error("store: unavailable: {0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where a webhook delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Plane,
    Gitea,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Plane => "plane",
            Source::Gitea => "gitea",
        }
    }

    pub fn parse(text: &str) -> Option<Source> {
        match text {
            "plane" => Some(Source::Plane),
            "gitea" => Some(Source::Gitea),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the reconciler unblocked through (F-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Gate,
    Tracker,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Gate => "gate",
            Via::Tracker => "tracker",
        }
    }
}

/// The result of `create_task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub task: Task,
    /// `true` for exactly one caller per Plane issue, ever.
    pub created: bool,
}

/// One compare-and-swap transition of a task, with everything it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The task as it should be afterwards. Its `id` names the task; its `version` MUST be
    /// the version read (the store writes `version + 1` and `updated_at = now`).
    pub next: Task,
    /// Jobs to write in the same transaction. A job whose `key` already exists is skipped.
    pub jobs: Vec<JobSpec>,
    /// Cancel the task's active pipeline work first: its agent jobs, queued or running (a
    /// running agent is killed when its heartbeat is refused), and its queued `publish_branch`
    /// and `merge` jobs. A running publish or merge finishes (it checks its task before each
    /// outward step), and its end is handled like any other.
    pub cancel_active_work: bool,
    /// The job whose end this transition handles (marked handled in the same transaction).
    pub consumes_job: Option<JobId>,
    /// The history line.
    pub note: String,
    pub now: Timestamp,
}

/// Which jobs a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKinds {
    /// Agent jobs whose repository has fewer than `per_repo_limit` running agent jobs.
    Agents { per_repo_limit: u32 },
    /// Every other kind.
    Actions,
}

/// A request to lease the next due job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub owner: BootId,
    pub kinds: ClaimKinds,
    pub now: Timestamp,
    pub lease: Duration,
}

/// A webhook delivery to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub source: Source,
    pub delivery_id: String,
    pub event_type: String,
    /// Lowercase hex SHA-256 of `body`, computed by the caller.
    pub body_sha256: String,
    pub body: Vec<u8>,
    pub received_at: Timestamp,
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub source: Source,
    pub delivery_id: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub received_at: Timestamp,
}

/// The result of `inbox_insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    Queued(i64),
    /// Same (source, delivery id), or same (source, body sha256) within 7 days.
    Duplicate,
}

/// What became of a processed delivery. Stores keep it as its text (`Display`):
/// `applied`, `no change: …`, `ignored: …` or `error: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Its event changed a task.
    Applied,
    /// Its event was handled and changed nothing; why.
    NoChange(String),
    /// Not acted on: an event orch does not use, or one that came too early for too long.
    Ignored(String),
    /// Handling it failed until orch gave up, or the stored row could not be read.
    Failed(String),
}

impl fmt::Display for InboxOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboxOutcome::Applied => f.write_str("applied"),
            InboxOutcome::NoChange(why) => write!(f, "no change: {why}"),
            InboxOutcome::Ignored(why) => write!(f, "ignored: {why}"),
            InboxOutcome::Failed(error) => write!(f, "error: {error}"),
        }
    }
}

/// Inbox lag figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxStats {
    pub pending: u64,
    pub oldest_pending_age: Option<Duration>,
}

/// One task the reconciler unblocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unblocked {
    pub task: TaskId,
    pub work_item: WorkItemId,
    pub stage: Stage,
    pub via: Via,
    pub at: Timestamp,
}

/// One finished reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRun {
    pub started_at: Timestamp,
    pub duration: Duration,
    pub unblocked: Vec<Unblocked>,
    pub errors: Vec<String>,
}

/// Totals over all recorded passes, for `/queue` and `orch status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconcileStats {
    pub last_run_at: Option<Timestamp>,
    pub last_duration: Option<Duration>,
    pub runs_total: u64,
    pub unblocked_total: u64,
    /// The most recent first, at most 20.
    pub recent_unblocked: Vec<Unblocked>,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

/// A running job, for `/queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJobInfo {
    pub id: JobId,
    pub task: TaskId,
    pub work_item: WorkItemId,
    pub kind: JobKind,
    pub started_at: Timestamp,
}

/// The jobs waiting for one outside service to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWait {
    pub service: Service,
    /// The oldest first failure among them.
    pub since: Timestamp,
    pub jobs: u64,
    /// The task of the job waiting longest.
    pub oldest_task: TaskId,
    /// That job's last error.
    pub last_error: Option<String>,
}

/// Jobs and tasks at a glance, for `/queue` and `orch status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueSnapshot {
    pub queued: u64,
    pub running: Vec<RunningJobInfo>,
    /// Per outside service with active jobs waiting on it, in `Service` order.
    pub waiting: Vec<ServiceWait>,
    /// Non-zero counts only, in `Stage` order.
    pub by_stage: Vec<(Stage, u64)>,
    pub awaiting_verdict: Vec<WorkItemId>,
    pub blocked: Vec<(WorkItemId, String)>,
}

/// What `Store::prune` may delete: rows older than each cutoff; `None` keeps every row of
/// that kind. Tasks themselves are never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRequest {
    /// Deliveries processed before this (an unprocessed one is never pruned).
    pub deliveries_before: Option<Timestamp>,
    /// Ended jobs (succeeded, failed or cancelled) whose end was handled and that last changed
    /// before this, of ended tasks (stage `done` or `cancelled`) with no queued or running job.
    pub jobs_before: Option<Timestamp>,
    /// History lines written before this, of ended tasks.
    pub history_before: Option<Timestamp>,
    /// At most this many rows of each kind go in one call, so one call is short.
    pub limit: u32,
}

/// What one `Store::prune` call deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub deliveries: u64,
    pub jobs: u64,
    pub history: u64,
}

impl Pruned {
    /// Whether some kind hit the call's limit, so more may be left to prune.
    pub fn hit_limit(&self, limit: u32) -> bool {
        let limit = u64::from(limit);
        self.deliveries >= limit || self.jobs >= limit || self.history >= limit
    }
}

/// Durable state. Implementations MUST make each method atomic, and MUST give every method
/// the same observable behaviour (the contract suite in `orch_core::fakes::contract` checks it).
/// Errors: `Unavailable` when the database is busy beyond its timeout; `Other` otherwise,
/// unless a method names another variant.
#[async_trait]
pub trait Store: Send + Sync {
    // --- tasks ---

    /// Creates the task for `new.issue` with its first jobs, or returns the existing one.
    /// Atomic: under any concurrency exactly one caller per issue gets `created = true`, and
    /// only that caller's jobs are written (a job whose key exists already is skipped).
    async fn create_task(
        &self,
        new: NewTask,
        jobs: Vec<JobSpec>,
        now: Timestamp,
    ) -> Result<Created, StoreError>;

    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError>;

    async fn task_by_issue(&self, issue: &IssueId) -> Result<Option<Task>, StoreError>;

    async fn task_by_work_item(&self, work_item: &WorkItemId) -> Result<Option<Task>, StoreError>;

    /// The task of `repo` whose recorded head is `sha` (F-3, first step).
    async fn task_by_head_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<Task>, StoreError>;

    async fn task_by_pr(&self, repo: &RepoSlug, pr: PrNumber) -> Result<Option<Task>, StoreError>;

    /// Tasks of `repo` in `stage`.
    async fn tasks_in_stage(&self, repo: &RepoSlug, stage: Stage) -> Result<Vec<Task>, StoreError>;

    /// All tasks, newest first, at most `limit`.
    async fn list_tasks(&self, limit: u32) -> Result<Vec<Task>, StoreError>;

    /// F-1 candidates: tasks in `stage` with `updated_at <= updated_before` and no active
    /// pipeline work (see `has_active_job`),
    /// oldest first, at most `limit`. MUST use an index (cost grows with matches, not tasks).
    async fn gate_candidates(
        &self,
        stage: Stage,
        updated_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Applies `transition` if the task's version still is `transition.next.version`.
    /// Errors: `Conflict` on a version mismatch, or when a new agent job would make a second
    /// active agent job of the task; nothing is written then. `NotFound` if there is no task.
    async fn transition(&self, transition: Transition) -> Result<Task, StoreError>;

    /// The task's history, oldest first.
    async fn history(&self, task: TaskId) -> Result<Vec<HistoryEntry>, StoreError>;

    // --- jobs ---

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// The task's jobs, oldest first.
    async fn jobs_of_task(&self, task: TaskId) -> Result<Vec<Job>, StoreError>;

    /// Whether the task has queued or running pipeline work: an agent, `publish_branch` or
    /// `merge` job (`JobKind::is_pipeline_work`). Notifications, comments and state moves do
    /// not count, so an outage of Telegram or Plane never holds the pipeline up.
    async fn has_active_job(&self, task: TaskId) -> Result<bool, StoreError>;

    /// Leases the oldest due (`not_before <= now`) queued job of the requested kinds (a
    /// `tracker_state` job waits while another of its task runs, so state moves land in order):
    /// status `running`, a fresh `attempt`, `attempts + 1`, lease until `now + lease`.
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<ClaimedJob>, StoreError>;

    /// The earliest `not_before` among queued jobs of `kinds` (ignoring the per-repo limit),
    /// so a worker can sleep until then.
    async fn next_due(&self, kinds: ClaimKinds) -> Result<Option<Timestamp>, StoreError>;

    /// Extends the lease. Errors: `Conflict` if the job is no longer running under `attempt`
    /// (reclaimed or cancelled): the worker MUST stop the job.
    async fn heartbeat(
        &self,
        job: JobId,
        attempt: &AttemptId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<(), StoreError>;

    /// Records the agent process of a running attempt. Errors: `Conflict` as for `heartbeat`.
    async fn record_process(
        &self,
        job: JobId,
        attempt: &AttemptId,
        process: ProcessRecord,
    ) -> Result<(), StoreError>;

    /// Ends an attempt. `Retry` queues the job again at `not_before`; `Wait` too, without
    /// counting the attempt, counting a wait and recording the service it waits on (since
    /// the first wait of a run of waits on that service); `HandBack` queues it at once without
    /// counting the attempt; `Succeeded` and `Failed` end it (unhandled, for the event loop);
    /// `Obsolete` ends it as cancelled and handled. Every result but `Wait` and `HandBack`
    /// clears the waiting. Errors: `Conflict` if `attempt` is not the job's current running
    /// attempt; nothing is written then.
    async fn finish_job(
        &self,
        job: JobId,
        attempt: &AttemptId,
        result: JobResult,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Re-queues every running job leased by another owner or whose lease expired before
    /// `now`, and returns them as they were (with their process records, for reaping).
    async fn reclaim_leases(&self, owner: &BootId, now: Timestamp) -> Result<Vec<Job>, StoreError>;

    /// Ended jobs whose end the event loop has not handled yet, oldest first.
    async fn unhandled_finished_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError>;

    /// Marks an ended job handled without a transition.
    async fn mark_job_handled(&self, job: JobId) -> Result<(), StoreError>;

    // --- inbox ---

    /// Stores a verified delivery; durable when this returns.
    async fn inbox_insert(&self, delivery: NewDelivery) -> Result<InboxInsert, StoreError>;

    /// Unprocessed deliveries, oldest first.
    async fn inbox_pending(&self, limit: u32) -> Result<Vec<Delivery>, StoreError>;

    /// Marks a delivery processed with its outcome.
    async fn inbox_mark_processed(
        &self,
        id: i64,
        outcome: &InboxOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Marks deliveries processed, each with its outcome, in one write: the marks MUST be
    /// committed together or not at all (one transaction), so a page of deliveries costs one
    /// commit. Errors: `NotFound` naming the ids that are in no row; the other marks are
    /// committed all the same.
    async fn inbox_mark_processed_all(
        &self,
        marks: &[(i64, InboxOutcome)],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn inbox_stats(&self, now: Timestamp) -> Result<InboxStats, StoreError>;

    // --- reconciler and meta ---

    /// The F-2 watermark of `project`: the start of its last complete pass.
    async fn tracker_watermark(&self, project: &ProjectId)
        -> Result<Option<Timestamp>, StoreError>;

    async fn set_tracker_watermark(
        &self,
        project: &ProjectId,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    async fn record_reconcile_run(&self, run: ReconcileRun) -> Result<(), StoreError>;

    async fn reconcile_stats(&self) -> Result<ReconcileStats, StoreError>;

    async fn queue_snapshot(&self) -> Result<QueueSnapshot, StoreError>;

    async fn last_clean_shutdown(&self) -> Result<Option<Timestamp>, StoreError>;

    async fn set_last_clean_shutdown(&self, at: Timestamp) -> Result<(), StoreError>;

    // --- retention ---

    /// Deletes what `request` allows, at most `request.limit` rows of each kind, the oldest
    /// first (deliveries by when they were processed, jobs and history lines by id), each kind
    /// atomically. Nothing an unprocessed delivery or an
    /// unfinished task needs is deleted: pending deliveries, active or unhandled jobs, and the
    /// jobs and history of tasks that have not ended are kept whatever their age.
    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError>;
}
