//! `MemStore`: the `Store` port in memory, with the same rules as the SQLite store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{
    ClaimedJob, HistoryEntry, Job, JobKind, JobResult, JobSpec, JobStatus, Lease, NewTask,
    ProcessRecord, Stage, Task, TaskStatus, Waiting,
};
use crate::ids::{
    AttemptId, BootId, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, TaskId, WorkItemId,
};
use crate::ports::{
    ClaimKinds, ClaimRequest, Created, Delivery, InboxInsert, InboxOutcome, InboxStats,
    NewDelivery, PruneRequest, Pruned, QueueSnapshot, ReconcileRun, ReconcileStats, RunningJobInfo,
    ServiceWait, Store, StoreError, Transition, Unblocked,
};
use crate::time::Timestamp;

/// How long a body hash dedupes deliveries (SPEC §4).
pub const BODY_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How many unblocked tasks the reconcile statistics keep.
pub const RECENT_UNBLOCKED: usize = 20;

/// The `Store` port in memory: one mutex around all state, so every method is atomic.
///
/// It enforces the SQLite store's rules (unique task per issue, version compare-and-swap,
/// unique job keys, one active agent job per task, attempt fencing, inbox dedupe), and the
/// contract suite in `orch_core::fakes::contract` checks both stores against each other.
#[derive(Debug, Default)]
pub struct MemStore {
    state: Mutex<State>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Test hook: while `fail` is set, `inbox_insert` fails with `StoreError::Unavailable`
    /// and writes nothing (for the ingress's 503 path).
    pub fn fail_inbox_writes(&self, fail: bool) {
        self.lock().fail_inbox_writes = fail;
    }

    /// Test hook: the next `n` calls of `finish_job` fail with `StoreError::Unavailable` and
    /// write nothing (a result that could not be recorded).
    pub fn fail_next_job_finishes(&self, n: u32) {
        self.lock().failing_finishes = n;
    }

    /// Test probe: how many writes marked deliveries processed (one per call of
    /// `inbox_mark_processed` or `inbox_mark_processed_all`, however many marks it held).
    pub fn inbox_mark_writes(&self) -> u64 {
        self.lock().inbox_mark_writes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half-applied state: every method
        // validates before it mutates, so the data is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct State {
    tasks: BTreeMap<i64, Task>,
    jobs: BTreeMap<i64, JobRow>,
    history: Vec<HistoryEntry>,
    inbox: BTreeMap<i64, InboxRow>,
    watermarks: HashMap<ProjectId, Timestamp>,
    reconcile: ReconcileStats,
    last_clean_shutdown: Option<Timestamp>,
    next_task_id: i64,
    next_job_id: i64,
    next_inbox_id: i64,
    next_attempt: u64,
    fail_inbox_writes: bool,
    failing_finishes: u32,
    inbox_mark_writes: u64,
}

#[derive(Debug, Clone)]
struct JobRow {
    job: Job,
    /// When the running attempt was claimed.
    claimed_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct InboxRow {
    delivery: Delivery,
    body_sha256: String,
    processed_at: Option<Timestamp>,
}

impl State {
    fn key_exists(&self, key: &str) -> bool {
        self.jobs
            .values()
            .any(|row| row.job.key.as_deref() == Some(key))
    }

    fn has_active_agent_job(&self, task: TaskId) -> bool {
        self.jobs.values().any(|row| {
            row.job.task == task && row.job.kind().is_agent() && row.job.status.is_active()
        })
    }

    fn insert_job(&mut self, task: &Task, spec: JobSpec, now: Timestamp) -> JobId {
        self.next_job_id += 1;
        let id = JobId(self.next_job_id);
        let job = Job {
            id,
            task: task.id,
            repo: task.repo.clone(),
            action: spec.action,
            key: spec.key,
            stage: task.stage,
            status: JobStatus::Queued,
            attempts: 0,
            waits: 0,
            waiting: None,
            not_before: spec.not_before.unwrap_or(now),
            lease: None,
            process: None,
            last_error: None,
            output: None,
            handled: false,
            created_at: now,
            updated_at: now,
        };
        self.jobs.insert(
            id.0,
            JobRow {
                job,
                claimed_at: None,
            },
        );
        id
    }

    /// The job if it is running under `attempt`; `Conflict` otherwise.
    fn running_attempt(
        &mut self,
        job: JobId,
        attempt: &AttemptId,
    ) -> Result<&mut JobRow, StoreError> {
        let row = self
            .jobs
            .get_mut(&job.0)
            .ok_or_else(|| StoreError::NotFound(format!("job {job}")))?;
        let current = row.job.status == JobStatus::Running
            && row
                .job
                .lease
                .as_ref()
                .is_some_and(|lease| &lease.attempt == attempt);
        if !current {
            return Err(StoreError::Conflict(format!(
                "job {job} is not running under attempt {attempt}"
            )));
        }
        Ok(row)
    }

    fn running_agents_of_repo(&self, repo: &RepoSlug) -> u32 {
        let count = self
            .jobs
            .values()
            .filter(|row| {
                row.job.status == JobStatus::Running
                    && row.job.kind().is_agent()
                    && &row.job.repo == repo
            })
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

fn kinds_match(kinds: ClaimKinds, kind: JobKind) -> bool {
    match kinds {
        ClaimKinds::Agents { .. } => kind.is_agent(),
        ClaimKinds::Actions => !kind.is_agent(),
    }
}

/// The newest (highest id) of `tasks`, which come in id order.
fn newest<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<Task> {
    tasks.last().cloned()
}

#[async_trait]
impl Store for MemStore {
    async fn create_task(
        &self,
        new: NewTask,
        jobs: Vec<JobSpec>,
        now: Timestamp,
    ) -> Result<Created, StoreError> {
        let mut state = self.lock();
        if let Some(task) = state.tasks.values().find(|task| task.issue == new.issue) {
            return Ok(Created {
                task: task.clone(),
                created: false,
            });
        }
        state.next_task_id += 1;
        let task = Task {
            id: TaskId(state.next_task_id),
            version: 1,
            issue: new.issue,
            project: new.project,
            work_item: new.work_item,
            title: new.title,
            description: new.description,
            repo: new.repo,
            base_branch: new.base_branch,
            branch: new.branch,
            stage: new.stage,
            status: TaskStatus::Working,
            head_sha: None,
            pr: None,
            fix_rounds: 0,
            review_rounds: 0,
            last_fix_sha: None,
            sent_back_sha: None,
            gate_opened_at: None,
            tracker_state: new.tracker_state,
            tracker_seen_at: new.tracker_seen_at,
            verdicts_after: None,
            feedback_after: None,
            created_at: now,
            updated_at: now,
        };
        state.tasks.insert(task.id.0, task.clone());
        for job in jobs {
            let skip = job.key.as_deref().is_some_and(|key| state.key_exists(key));
            if !skip {
                state.insert_job(&task, job, now);
            }
        }
        state.history.push(HistoryEntry {
            task: task.id,
            at: now,
            stage: task.stage,
            status: task.status.to_string(),
            message: "created".to_owned(),
        });
        Ok(Created {
            task,
            created: true,
        })
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.lock().tasks.get(&id.0).cloned())
    }

    async fn task_by_issue(&self, issue: &IssueId) -> Result<Option<Task>, StoreError> {
        Ok(newest(
            self.lock()
                .tasks
                .values()
                .filter(|task| &task.issue == issue),
        ))
    }

    async fn task_by_work_item(&self, work_item: &WorkItemId) -> Result<Option<Task>, StoreError> {
        Ok(newest(
            self.lock()
                .tasks
                .values()
                .filter(|task| &task.work_item == work_item),
        ))
    }

    async fn task_by_head_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<Task>, StoreError> {
        Ok(newest(self.lock().tasks.values().filter(|task| {
            &task.repo == repo && task.head_sha.as_ref() == Some(sha)
        })))
    }

    async fn task_by_pr(&self, repo: &RepoSlug, pr: PrNumber) -> Result<Option<Task>, StoreError> {
        Ok(newest(
            self.lock()
                .tasks
                .values()
                .filter(|task| &task.repo == repo && task.pr == Some(pr)),
        ))
    }

    async fn tasks_in_stage(&self, repo: &RepoSlug, stage: Stage) -> Result<Vec<Task>, StoreError> {
        Ok(self
            .lock()
            .tasks
            .values()
            .filter(|task| &task.repo == repo && task.stage == stage)
            .cloned()
            .collect())
    }

    async fn list_tasks(&self, limit: u32) -> Result<Vec<Task>, StoreError> {
        Ok(self
            .lock()
            .tasks
            .values()
            .rev()
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn gate_candidates(
        &self,
        stage: Stage,
        updated_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let state = self.lock();
        let active: HashSet<TaskId> = state
            .jobs
            .values()
            .filter(|row| row.job.status.is_active() && row.job.kind().is_pipeline_work())
            .map(|row| row.job.task)
            .collect();
        let mut candidates: Vec<Task> = state
            .tasks
            .values()
            .filter(|task| {
                task.stage == stage
                    && task.updated_at <= updated_before
                    && !active.contains(&task.id)
            })
            .cloned()
            .collect();
        candidates.sort_by_key(|task| (task.updated_at, task.id));
        candidates.truncate(limit as usize);
        Ok(candidates)
    }

    async fn transition(&self, transition: Transition) -> Result<Task, StoreError> {
        let mut state = self.lock();
        let Transition {
            next,
            jobs,
            cancel_active_work,
            consumes_job,
            note,
            now,
        } = transition;
        let current = state
            .tasks
            .get(&next.id.0)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("task {}", next.id)))?;
        if current.version != next.version {
            return Err(StoreError::Conflict(format!(
                "task {} is at version {}, not {}",
                current.id, current.version, next.version
            )));
        }
        if let Some(job) = consumes_job {
            if !state.jobs.contains_key(&job.0) {
                return Err(StoreError::NotFound(format!("job {job}")));
            }
        }
        // Validate everything before writing anything.
        let to_cancel: Vec<i64> = if cancel_active_work {
            state
                .jobs
                .values()
                .filter(|row| {
                    row.job.task == current.id
                        && JobKind::is_pipeline_work(row.job.kind())
                        && (row.job.status == JobStatus::Queued
                            || row.job.status == JobStatus::Running && row.job.kind().is_agent())
                })
                .map(|row| row.job.id.0)
                .collect()
        } else {
            Vec::new()
        };
        let mut agent_active = !cancel_active_work && state.has_active_agent_job(current.id);
        let mut new_keys: HashSet<String> = HashSet::new();
        let mut to_insert = Vec::new();
        for spec in jobs {
            if let Some(key) = spec.key.as_deref() {
                if new_keys.contains(key) || state.key_exists(key) {
                    continue;
                }
                new_keys.insert(key.to_owned());
            }
            if spec.kind().is_agent() {
                if agent_active {
                    return Err(StoreError::Conflict(format!(
                        "task {} already has an active agent job",
                        current.id
                    )));
                }
                agent_active = true;
            }
            to_insert.push(spec);
        }

        for id in to_cancel {
            if let Some(row) = state.jobs.get_mut(&id) {
                row.job.status = JobStatus::Cancelled;
                row.job.lease = None;
                row.job.handled = true;
                row.job.updated_at = now;
                row.claimed_at = None;
            }
        }
        if let Some(job) = consumes_job {
            if let Some(row) = state.jobs.get_mut(&job.0) {
                row.job.handled = true;
            }
        }
        let task = Task {
            id: current.id,
            version: current.version + 1,
            issue: current.issue,
            created_at: current.created_at,
            updated_at: now,
            ..next
        };
        for spec in to_insert {
            state.insert_job(&task, spec, now);
        }
        state.history.push(HistoryEntry {
            task: task.id,
            at: now,
            stage: task.stage,
            status: task.status.to_string(),
            message: note,
        });
        state.tasks.insert(task.id.0, task.clone());
        Ok(task)
    }

    async fn history(&self, task: TaskId) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self
            .lock()
            .history
            .iter()
            .filter(|entry| entry.task == task)
            .cloned()
            .collect())
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(&id.0).map(|row| row.job.clone()))
    }

    async fn jobs_of_task(&self, task: TaskId) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|row| row.job.task == task)
            .map(|row| row.job.clone())
            .collect())
    }

    async fn has_active_job(&self, task: TaskId) -> Result<bool, StoreError> {
        Ok(self.lock().jobs.values().any(|row| {
            row.job.task == task && row.job.status.is_active() && row.job.kind().is_pipeline_work()
        }))
    }

    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<ClaimedJob>, StoreError> {
        let mut state = self.lock();
        let mut due: Vec<(Timestamp, i64)> = state
            .jobs
            .values()
            .filter(|row| {
                row.job.status == JobStatus::Queued
                    && row.job.not_before <= request.now
                    && kinds_match(request.kinds, row.job.kind())
            })
            .map(|row| (row.job.not_before, row.job.id.0))
            .collect();
        due.sort();
        let chosen = due
            .into_iter()
            .map(|(_, id)| id)
            .find(|id| match request.kinds {
                ClaimKinds::Agents { per_repo_limit } => {
                    let repo = &state.jobs[id].job.repo;
                    state.running_agents_of_repo(repo) < per_repo_limit
                }
                // A task's state moves run one at a time, so they land in order.
                ClaimKinds::Actions => {
                    let job = &state.jobs[id].job;
                    job.kind() != JobKind::TrackerState
                        || !state.jobs.values().any(|row| {
                            row.job.task == job.task
                                && row.job.kind() == JobKind::TrackerState
                                && row.job.status == JobStatus::Running
                        })
                }
            });
        let Some(id) = chosen else {
            return Ok(None);
        };
        state.next_attempt += 1;
        let attempt = AttemptId::new(format!("attempt-{}", state.next_attempt))
            .map_err(|err| StoreError::Other(Box::new(err)))?;
        let row = state
            .jobs
            .get_mut(&id)
            .expect("the chosen job was just read from the map");
        row.job.status = JobStatus::Running;
        row.job.attempts += 1;
        row.job.process = None;
        row.job.lease = Some(Lease {
            owner: request.owner.clone(),
            attempt: attempt.clone(),
            expires_at: request.now + request.lease,
            heartbeat_at: request.now,
        });
        row.job.updated_at = request.now;
        row.claimed_at = Some(request.now);
        Ok(Some(ClaimedJob {
            job: row.job.clone(),
            attempt,
        }))
    }

    async fn next_due(&self, kinds: ClaimKinds) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|row| row.job.status == JobStatus::Queued && kinds_match(kinds, row.job.kind()))
            .map(|row| row.job.not_before)
            .min())
    }

    async fn heartbeat(
        &self,
        job: JobId,
        attempt: &AttemptId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let row = state.running_attempt(job, attempt)?;
        if let Some(current) = row.job.lease.as_mut() {
            current.heartbeat_at = now;
            current.expires_at = now + lease;
        }
        Ok(())
    }

    async fn record_process(
        &self,
        job: JobId,
        attempt: &AttemptId,
        process: ProcessRecord,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let row = state.running_attempt(job, attempt)?;
        row.job.process = Some(process);
        Ok(())
    }

    async fn finish_job(
        &self,
        job: JobId,
        attempt: &AttemptId,
        result: JobResult,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.failing_finishes > 0 {
            state.failing_finishes -= 1;
            return Err(StoreError::Unavailable(
                "the job's result could not be written (fake)".to_owned(),
            ));
        }
        let row = state.running_attempt(job, attempt)?;
        match result {
            JobResult::Succeeded(output) => {
                row.job.status = JobStatus::Succeeded;
                row.job.output = Some(output);
                row.job.waiting = None;
            }
            JobResult::Retry { not_before, error } => {
                row.job.status = JobStatus::Queued;
                row.job.not_before = not_before;
                row.job.last_error = Some(error);
                row.job.waits = 0;
                row.job.waiting = None;
            }
            JobResult::Wait {
                not_before,
                error,
                service,
            } => {
                row.job.status = JobStatus::Queued;
                row.job.not_before = not_before;
                row.job.attempts = row.job.attempts.saturating_sub(1);
                row.job.waits += 1;
                row.job.last_error = Some(error);
                row.job.waiting = Some(match row.job.waiting {
                    Some(waiting) if waiting.service == service => waiting,
                    _ => Waiting {
                        service,
                        since: now,
                    },
                });
            }
            JobResult::Failed { error } => {
                row.job.status = JobStatus::Failed;
                row.job.last_error = Some(error);
                row.job.waiting = None;
            }
            JobResult::HandBack { error } => {
                row.job.status = JobStatus::Queued;
                row.job.not_before = now;
                row.job.attempts = row.job.attempts.saturating_sub(1);
                row.job.last_error = Some(error);
            }
            JobResult::Obsolete { reason } => {
                row.job.status = JobStatus::Cancelled;
                row.job.handled = true;
                row.job.last_error = Some(reason);
                row.job.waiting = None;
            }
        }
        row.job.lease = None;
        row.job.updated_at = now;
        row.claimed_at = None;
        Ok(())
    }

    async fn reclaim_leases(&self, owner: &BootId, now: Timestamp) -> Result<Vec<Job>, StoreError> {
        let mut state = self.lock();
        let mut reclaimed = Vec::new();
        for row in state.jobs.values_mut() {
            let stale = row.job.status == JobStatus::Running
                && row
                    .job
                    .lease
                    .as_ref()
                    .is_none_or(|lease| &lease.owner != owner || lease.expires_at < now);
            if stale {
                reclaimed.push(row.job.clone());
                row.job.status = JobStatus::Queued;
                row.job.lease = None;
                row.job.updated_at = now;
                row.claimed_at = None;
            }
        }
        Ok(reclaimed)
    }

    async fn unhandled_finished_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        let state = self.lock();
        let mut jobs: Vec<Job> = state
            .jobs
            .values()
            .filter(|row| {
                matches!(row.job.status, JobStatus::Succeeded | JobStatus::Failed)
                    && !row.job.handled
            })
            .map(|row| row.job.clone())
            .collect();
        jobs.sort_by_key(|job| (job.updated_at, job.id));
        jobs.truncate(limit as usize);
        Ok(jobs)
    }

    async fn mark_job_handled(&self, job: JobId) -> Result<(), StoreError> {
        let mut state = self.lock();
        let row = state
            .jobs
            .get_mut(&job.0)
            .ok_or_else(|| StoreError::NotFound(format!("job {job}")))?;
        row.job.handled = true;
        Ok(())
    }

    async fn inbox_insert(&self, delivery: NewDelivery) -> Result<InboxInsert, StoreError> {
        let mut state = self.lock();
        if state.fail_inbox_writes {
            return Err(StoreError::Unavailable(
                "inbox writes are failing (test hook)".to_owned(),
            ));
        }
        let window_start = delivery.received_at - BODY_DEDUPE_WINDOW;
        let duplicate = state.inbox.values().any(|row| {
            row.delivery.source == delivery.source
                && (row.delivery.delivery_id == delivery.delivery_id
                    || (row.body_sha256 == delivery.body_sha256
                        && row.delivery.received_at > window_start))
        });
        if duplicate {
            return Ok(InboxInsert::Duplicate);
        }
        state.next_inbox_id += 1;
        let id = state.next_inbox_id;
        let row = InboxRow {
            delivery: Delivery {
                id,
                source: delivery.source,
                delivery_id: delivery.delivery_id,
                event_type: delivery.event_type,
                body: delivery.body,
                received_at: delivery.received_at,
            },
            body_sha256: delivery.body_sha256,
            processed_at: None,
        };
        state.inbox.insert(id, row);
        Ok(InboxInsert::Queued(id))
    }

    async fn inbox_pending(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        Ok(self
            .lock()
            .inbox
            .values()
            .filter(|row| row.processed_at.is_none())
            .take(limit as usize)
            .map(|row| row.delivery.clone())
            .collect())
    }

    async fn inbox_mark_processed(
        &self,
        id: i64,
        _outcome: &InboxOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.inbox_mark_writes += 1;
        let row = state
            .inbox
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))?;
        row.processed_at = Some(now);
        Ok(())
    }

    async fn inbox_mark_processed_all(
        &self,
        marks: &[(i64, InboxOutcome)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.inbox_mark_writes += 1;
        let mut missing = Vec::new();
        for (id, _outcome) in marks {
            match state.inbox.get_mut(id) {
                Some(row) => row.processed_at = Some(now),
                None => missing.push(id.to_string()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "deliveries {}",
                missing.join(", ")
            )))
        }
    }

    async fn inbox_stats(&self, now: Timestamp) -> Result<InboxStats, StoreError> {
        let state = self.lock();
        let pending: Vec<&InboxRow> = state
            .inbox
            .values()
            .filter(|row| row.processed_at.is_none())
            .collect();
        let oldest = pending.iter().map(|row| row.delivery.received_at).min();
        Ok(InboxStats {
            pending: pending.len() as u64,
            oldest_pending_age: oldest.map(|at| now.since(at)),
        })
    }

    async fn tracker_watermark(
        &self,
        project: &ProjectId,
    ) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().watermarks.get(project).copied())
    }

    async fn set_tracker_watermark(
        &self,
        project: &ProjectId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.lock().watermarks.insert(project.clone(), at);
        Ok(())
    }

    async fn record_reconcile_run(&self, run: ReconcileRun) -> Result<(), StoreError> {
        let mut state = self.lock();
        let stats = &mut state.reconcile;
        stats.last_run_at = Some(run.started_at);
        stats.last_duration = Some(run.duration);
        stats.runs_total += 1;
        stats.unblocked_total += run.unblocked.len() as u64;
        stats.errors_total += run.errors.len() as u64;
        if let Some(error) = run.errors.last() {
            stats.last_error = Some(error.clone());
        }
        // Most recent first: later `at` first, and within one `at` the later-recorded first.
        let mut recent: Vec<Unblocked> = run.unblocked.into_iter().rev().collect();
        recent.append(&mut stats.recent_unblocked);
        recent.sort_by_key(|entry| std::cmp::Reverse(entry.at));
        recent.truncate(RECENT_UNBLOCKED);
        stats.recent_unblocked = recent;
        Ok(())
    }

    async fn reconcile_stats(&self) -> Result<ReconcileStats, StoreError> {
        Ok(self.lock().reconcile.clone())
    }

    async fn queue_snapshot(&self) -> Result<QueueSnapshot, StoreError> {
        let state = self.lock();
        let queued = state
            .jobs
            .values()
            .filter(|row| row.job.status == JobStatus::Queued)
            .count() as u64;
        let running = state
            .jobs
            .values()
            .filter(|row| row.job.status == JobStatus::Running)
            .filter_map(|row| {
                let task = state.tasks.get(&row.job.task.0)?;
                Some(RunningJobInfo {
                    id: row.job.id,
                    task: row.job.task,
                    work_item: task.work_item.clone(),
                    kind: row.job.kind(),
                    started_at: row.claimed_at.unwrap_or(row.job.updated_at),
                })
            })
            .collect();
        let by_stage = Stage::ALL
            .into_iter()
            .map(|stage| {
                (
                    stage,
                    state
                        .tasks
                        .values()
                        .filter(|task| task.stage == stage)
                        .count() as u64,
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        let open = || {
            state
                .tasks
                .values()
                .filter(|task| !task.stage.is_terminal())
        };
        let awaiting_verdict = open()
            .filter(|task| task.status == TaskStatus::AwaitingVerdict)
            .map(|task| task.work_item.clone())
            .collect();
        let blocked = open()
            .filter_map(|task| match &task.status {
                TaskStatus::Blocked { reason } => Some((task.work_item.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        let mut waiting: Vec<ServiceWait> = Vec::new();
        let mut waiting_jobs: Vec<&Job> = state
            .jobs
            .values()
            .map(|row| &row.job)
            .filter(|job| job.status.is_active() && job.waiting.is_some())
            .collect();
        waiting_jobs.sort_by_key(|job| (job.waiting.map(|waiting| waiting.since), job.id));
        for job in waiting_jobs {
            let Some(job_waiting) = job.waiting else {
                continue;
            };
            match waiting
                .iter_mut()
                .find(|entry| entry.service == job_waiting.service)
            {
                Some(entry) => entry.jobs += 1,
                None => waiting.push(ServiceWait {
                    service: job_waiting.service,
                    since: job_waiting.since,
                    jobs: 1,
                    oldest_task: job.task,
                    last_error: job.last_error.clone(),
                }),
            }
        }
        waiting.sort_by_key(|entry| entry.service);
        Ok(QueueSnapshot {
            queued,
            running,
            waiting,
            by_stage,
            awaiting_verdict,
            blocked,
        })
    }

    async fn last_clean_shutdown(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().last_clean_shutdown)
    }

    async fn set_last_clean_shutdown(&self, at: Timestamp) -> Result<(), StoreError> {
        self.lock().last_clean_shutdown = Some(at);
        Ok(())
    }

    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError> {
        let mut state = self.lock();
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let mut pruned = Pruned::default();
        if let Some(before) = request.deliveries_before {
            let mut processed: Vec<(Timestamp, i64)> = state
                .inbox
                .iter()
                .filter_map(|(id, row)| Some((row.processed_at?, *id)))
                .filter(|(at, _)| *at < before)
                .collect();
            processed.sort();
            let old: Vec<i64> = processed
                .into_iter()
                .map(|(_, id)| id)
                .take(limit)
                .collect();
            for id in &old {
                state.inbox.remove(id);
            }
            pruned.deliveries = old.len() as u64;
        }
        let ended: HashSet<TaskId> = state
            .tasks
            .values()
            .filter(|task| task.stage.is_terminal())
            .map(|task| task.id)
            .collect();
        if let Some(before) = request.jobs_before {
            let busy: HashSet<TaskId> = state
                .jobs
                .values()
                .filter(|row| row.job.status.is_active())
                .map(|row| row.job.task)
                .collect();
            let old: Vec<i64> = state
                .jobs
                .iter()
                .filter(|(_, row)| {
                    let job = &row.job;
                    !job.status.is_active()
                        && job.handled
                        && job.updated_at < before
                        && ended.contains(&job.task)
                        && !busy.contains(&job.task)
                })
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            for id in &old {
                state.jobs.remove(id);
            }
            pruned.jobs = old.len() as u64;
        }
        if let Some(before) = request.history_before {
            let mut left = limit;
            state.history.retain(|line| {
                let prune = left > 0 && line.at < before && ended.contains(&line.task);
                if prune {
                    left -= 1;
                }
                !prune
            });
            pruned.history = (limit - left) as u64;
        }
        Ok(pruned)
    }
}
