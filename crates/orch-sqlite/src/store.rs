//! `impl Store for SqliteStore`: every method is one statement or one `BEGIN IMMEDIATE`
//! transaction, run on tokio's blocking pool.

use std::time::Duration;

use async_trait::async_trait;
use orch_core::domain::{
    ClaimedJob, HistoryEntry, Job, JobKind, JobResult, JobSpec, NewTask, ProcessRecord, Stage, Task,
};
use orch_core::ids::{
    AttemptId, BootId, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, StateId, TaskId,
    WorkItemId,
};
use orch_core::ports::{
    ClaimKinds, ClaimRequest, Created, Delivery, InboxInsert, InboxOutcome, InboxStats,
    NewDelivery, PruneRequest, Pruned, QueueSnapshot, ReconcileRun, ReconcileStats, RunningJobInfo,
    ServiceWait, Store, StoreError, Transition, Unblocked, Via,
};
use orch_core::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::Error;
use crate::rows::{self, ts, DELIVERY_COLUMNS, JOB_COLUMNS, TASK_COLUMNS};
use crate::SqliteStore;

const RECENT_UNBLOCKED: i64 = 20;
const ACTIVE: &str = "('queued', 'running')";

/// The F-1 candidate query; `tasks_stage_updated` serves it (checked by a unit test).
pub(crate) const GATE_CANDIDATES_SQL: &str = "SELECT {TASK} FROM tasks t \
     WHERE t.stage = ?1 AND t.updated_at <= ?2 \
     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.task_id = t.id AND j.status IN ('queued', 'running') \
     AND j.kind IN {PIPELINE}) \
     ORDER BY t.updated_at, t.id LIMIT ?3";

pub(crate) fn gate_candidates_sql() -> String {
    let columns: Vec<String> = TASK_COLUMNS
        .split(", ")
        .map(|column| format!("t.{}", column.trim()))
        .collect();
    GATE_CANDIDATES_SQL
        .replace("{TASK}", &columns.join(", "))
        .replace("{PIPELINE}", &pipeline_kinds())
}

impl SqliteStore {
    async fn read<T, F>(&self, op: &'static str, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let conn = pool.get()?;
            read(&conn)
        })
        .await
        .map_err(Error::from)
        .and_then(|result| result);
        self.health.observe_read(&result);
        finish(op, result)
    }

    async fn write<T, F>(&self, op: &'static str, write: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = pool.get()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = write(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(Error::from)
        .and_then(|result| result);
        self.health.observe_write(&result);
        finish(op, result)
    }
}

fn finish<T>(op: &'static str, result: Result<T, Error>) -> Result<T, StoreError> {
    result.map_err(|err| {
        let err = StoreError::from(err);
        if !matches!(err, StoreError::NotFound(_) | StoreError::Conflict(_)) {
            tracing::debug!(op, error = %err, "store call failed");
        }
        err
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn limit(value: u32) -> i64 {
    i64::from(value)
}

fn query_task(
    conn: &Connection,
    sql_where: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Task>, Error> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE {sql_where}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(rows::task(row)?)),
        None => Ok(None),
    }
}

fn query_tasks(
    conn: &Connection,
    sql_rest: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Task>, Error> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks {sql_rest}");
    let mut stmt = conn.prepare_cached(&sql)?;
    rows::collect(&mut stmt, params, rows::task)
}

fn query_jobs(
    conn: &Connection,
    sql_rest: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Job>, Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs {sql_rest}");
    let mut stmt = conn.prepare_cached(&sql)?;
    rows::collect(&mut stmt, params, rows::job)
}

fn load_job(conn: &Connection, id: i64) -> Result<Option<Job>, Error> {
    Ok(query_jobs(conn, "WHERE id = ?1", [id])?.into_iter().next())
}

fn load_task(conn: &Connection, id: i64) -> Result<Task, Error> {
    query_task(conn, "id = ?1", [id])?.ok_or_else(|| Error::NotFound(format!("task {id}")))
}

/// Writes `spec` for the task, unless its key exists. `Conflict` if it is an agent job and
/// the task already has an active one.
fn insert_job(
    tx: &Transaction<'_>,
    task: &Task,
    spec: &JobSpec,
    now: Timestamp,
) -> Result<(), Error> {
    let repo = task.repo.to_string();
    let stage = task.stage.as_str();
    let task = task.id.0;
    if let Some(key) = spec.key.as_deref() {
        let exists: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE idem_key = ?1)")?
            .query_row([key], |row| row.get(0))?;
        if exists {
            return Ok(());
        }
    }
    let kind = spec.kind();
    if kind.is_agent() {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM jobs WHERE task_id = ?1 AND is_agent = 1 AND status IN {ACTIVE})");
        let active: bool = tx
            .prepare_cached(&sql)?
            .query_row([task], |row| row.get(0))?;
        if active {
            return Err(Error::Conflict(format!(
                "task {task} already has an active agent job"
            )));
        }
    }
    let payload = serde_json::to_string(&spec.action)?;
    let not_before = spec.not_before.unwrap_or(now).as_millis();
    tx.prepare_cached(
        "INSERT INTO jobs (task_id, repo, kind, is_agent, payload, idem_key, status, attempts, not_before, \
         handled, created_at, updated_at, stage) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', 0, ?7, 0, ?8, ?8, ?9) \
         ON CONFLICT (idem_key) DO NOTHING",
    )?
    .execute(params![task, repo, kind.as_str(), kind.is_agent(), payload, spec.key, not_before, now.as_millis(), stage])?;
    Ok(())
}

fn insert_history(
    tx: &Transaction<'_>,
    task: &Task,
    message: &str,
    at: Timestamp,
) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO task_history (task_id, at, stage, status, message) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![task.id.0, at.as_millis(), task.stage.as_str(), task.status.to_string(), message])?;
    Ok(())
}

/// The job if it is running under `attempt`; `Conflict` otherwise.
fn check_attempt(tx: &Transaction<'_>, job: i64, attempt: &str) -> Result<(), Error> {
    let current: Option<(String, Option<String>)> = tx
        .prepare_cached("SELECT status, attempt_id FROM jobs WHERE id = ?1")?
        .query_row([job], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match current {
        None => Err(Error::NotFound(format!("job {job}"))),
        Some((status, Some(current))) if status == "running" && current == attempt => Ok(()),
        Some(_) => Err(Error::Conflict(format!(
            "job {job} is not running under attempt {attempt}"
        ))),
    }
}

fn is_agent_flag(kinds: ClaimKinds) -> bool {
    matches!(kinds, ClaimKinds::Agents { .. })
}

/// The SQL list of pipeline-work kinds (`JobKind::is_pipeline_work`).
fn pipeline_kinds() -> String {
    let kinds: Vec<String> = JobKind::ALL
        .into_iter()
        .filter(|kind| kind.is_pipeline_work())
        .map(|kind| format!("'{}'", kind.as_str()))
        .collect();
    format!("({})", kinds.join(", "))
}

/// The SQL list of the stages a task ends in (`Stage::is_terminal`).
fn ended_stages() -> String {
    let stages: Vec<String> = Stage::ALL
        .into_iter()
        .filter(|stage| stage.is_terminal())
        .map(|stage| format!("'{}'", stage.as_str()))
        .collect();
    format!("({})", stages.join(", "))
}

/// Processed deliveries to prune, the oldest first; `inbox_processed` serves it (checked by a
/// unit test), so no body is read.
pub(crate) const PRUNABLE_DELIVERIES_SQL: &str = "SELECT id FROM inbox \
     WHERE processed_at IS NOT NULL AND processed_at < ?1 ORDER BY processed_at, id LIMIT ?2";

/// Deletes processed deliveries processed before `before`, the oldest first (`inbox_processed`
/// serves it without reading a body).
fn prune_deliveries(tx: &Transaction<'_>, before: Timestamp, max: u32) -> Result<u64, Error> {
    let deleted = tx
        .prepare_cached(&format!(
            "DELETE FROM inbox WHERE id IN ({PRUNABLE_DELIVERIES_SQL})"
        ))?
        .execute(params![before.as_millis(), limit(max)])?;
    Ok(deleted as u64)
}

/// Deletes ended, handled jobs last changed before `before` of ended tasks with no active job.
fn prune_jobs(tx: &Transaction<'_>, before: Timestamp, max: u32) -> Result<u64, Error> {
    let sql = format!(
        "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j JOIN tasks t ON t.id = j.task_id \
         WHERE t.stage IN {} AND j.status IN ('succeeded', 'failed', 'cancelled') AND j.handled = 1 \
         AND j.updated_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM jobs a WHERE a.task_id = t.id AND a.status IN {ACTIVE}) \
         ORDER BY j.id LIMIT ?2)",
        ended_stages()
    );
    let deleted = tx
        .prepare_cached(&sql)?
        .execute(params![before.as_millis(), limit(max)])?;
    Ok(deleted as u64)
}

/// Deletes history lines written before `before` of ended tasks.
fn prune_history(tx: &Transaction<'_>, before: Timestamp, max: u32) -> Result<u64, Error> {
    let sql = format!(
        "DELETE FROM task_history WHERE id IN (SELECT h.id FROM task_history h \
         JOIN tasks t ON t.id = h.task_id WHERE t.stage IN {} AND h.at < ?1 ORDER BY h.id LIMIT ?2)",
        ended_stages()
    );
    let deleted = tx
        .prepare_cached(&sql)?
        .execute(params![before.as_millis(), limit(max)])?;
    Ok(deleted as u64)
}

fn via_name(via: Via) -> &'static str {
    via.as_str()
}

fn parse_via(text: &str) -> Result<Via, Error> {
    match text {
        "gate" => Ok(Via::Gate),
        "tracker" => Ok(Via::Tracker),
        other => Err(Error::corrupt("via", other)),
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_task(
        &self,
        new: NewTask,
        jobs: Vec<JobSpec>,
        now: Timestamp,
    ) -> Result<Created, StoreError> {
        self.write("create_task", move |tx| {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO tasks (version, issue_id, project_id, work_item, title, description, repo, \
                     base_branch, branch, stage, status, fix_rounds, review_rounds, created_at, updated_at, \
                     tracker_state, tracker_seen_at) \
                     VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'working', 0, 0, ?10, ?10, ?11, ?12) \
                     ON CONFLICT (issue_id) DO NOTHING",
                )?
                .execute(params![
                    new.issue.as_str(),
                    new.project.as_str(),
                    new.work_item.to_string(),
                    new.title,
                    new.description,
                    new.repo.to_string(),
                    new.base_branch.as_str(),
                    new.branch.as_str(),
                    new.stage.as_str(),
                    now.as_millis(),
                    new.tracker_state.as_ref().map(StateId::as_str),
                    new.tracker_seen_at.map(Timestamp::as_millis),
                ])?;
            if inserted == 0 {
                let task = query_task(tx, "issue_id = ?1", [new.issue.as_str()])?
                    .ok_or_else(|| Error::NotFound(format!("task of issue {}", new.issue)))?;
                return Ok(Created { task, created: false });
            }
            let task = load_task(tx, tx.last_insert_rowid())?;
            for job in &jobs {
                insert_job(tx, &task, job, now)?;
            }
            insert_history(tx, &task, "created", now)?;
            Ok(Created { task, created: true })
        })
        .await
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.read("task", move |conn| query_task(conn, "id = ?1", [id.0]))
            .await
    }

    async fn task_by_issue(&self, issue: &IssueId) -> Result<Option<Task>, StoreError> {
        let issue = issue.as_str().to_owned();
        self.read("task_by_issue", move |conn| {
            query_task(conn, "issue_id = ?1", [issue])
        })
        .await
    }

    async fn task_by_work_item(&self, work_item: &WorkItemId) -> Result<Option<Task>, StoreError> {
        let work_item = work_item.to_string();
        self.read("task_by_work_item", move |conn| {
            query_task(conn, "work_item = ?1 ORDER BY id DESC LIMIT 1", [work_item])
        })
        .await
    }

    async fn task_by_head_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<Task>, StoreError> {
        let (repo, sha) = (repo.to_string(), sha.as_str().to_owned());
        self.read("task_by_head_sha", move |conn| {
            query_task(
                conn,
                "repo = ?1 AND head_sha = ?2 ORDER BY id DESC LIMIT 1",
                [repo, sha],
            )
        })
        .await
    }

    async fn task_by_pr(&self, repo: &RepoSlug, pr: PrNumber) -> Result<Option<Task>, StoreError> {
        let repo = repo.to_string();
        let pr = to_i64(pr.get());
        self.read("task_by_pr", move |conn| {
            query_task(
                conn,
                "repo = ?1 AND pr_number = ?2 ORDER BY id DESC LIMIT 1",
                params![repo, pr],
            )
        })
        .await
    }

    async fn tasks_in_stage(&self, repo: &RepoSlug, stage: Stage) -> Result<Vec<Task>, StoreError> {
        let repo = repo.to_string();
        self.read("tasks_in_stage", move |conn| {
            query_tasks(
                conn,
                "WHERE repo = ?1 AND stage = ?2 ORDER BY id",
                params![repo, stage.as_str()],
            )
        })
        .await
    }

    async fn list_tasks(&self, max: u32) -> Result<Vec<Task>, StoreError> {
        self.read("list_tasks", move |conn| {
            query_tasks(conn, "ORDER BY id DESC LIMIT ?1", [limit(max)])
        })
        .await
    }

    async fn gate_candidates(
        &self,
        stage: Stage,
        updated_before: Timestamp,
        max: u32,
    ) -> Result<Vec<Task>, StoreError> {
        self.read("gate_candidates", move |conn| {
            let mut stmt = conn.prepare_cached(&gate_candidates_sql())?;
            rows::collect(
                &mut stmt,
                params![stage.as_str(), updated_before.as_millis(), limit(max)],
                rows::task,
            )
        })
        .await
    }

    async fn transition(&self, transition: Transition) -> Result<Task, StoreError> {
        self.write("transition", move |tx| {
            let Transition { next, jobs, cancel_active_work, consumes_job, note, now } = transition;
            let current: Option<i64> = tx
                .prepare_cached("SELECT version FROM tasks WHERE id = ?1")?
                .query_row([next.id.0], |row| row.get(0))
                .optional()?;
            let Some(version) = current else {
                return Err(Error::NotFound(format!("task {}", next.id)));
            };
            if version != to_i64(next.version) {
                return Err(Error::Conflict(format!(
                    "task {} is at version {version}, not {}",
                    next.id, next.version
                )));
            }
            if let Some(job) = consumes_job {
                let exists: bool = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)")?
                    .query_row([job.0], |row| row.get(0))?;
                if !exists {
                    return Err(Error::NotFound(format!("job {job}")));
                }
            }
            if cancel_active_work {
                let sql = format!(
                    "UPDATE jobs SET status = 'cancelled', attempt_id = NULL, lease_owner = NULL, \
                     lease_expires_at = NULL, heartbeat_at = NULL, claimed_at = NULL, handled = 1, updated_at = ?2 \
                     WHERE task_id = ?1 AND kind IN {} AND (status = 'queued' OR (status = 'running' AND is_agent = 1))",
                    pipeline_kinds()
                );
                tx.execute(&sql, params![next.id.0, now.as_millis()])?;
            }
            tx.prepare_cached(
                "UPDATE tasks SET version = version + 1, project_id = ?2, work_item = ?3, title = ?4, \
                 description = ?5, repo = ?6, base_branch = ?7, branch = ?8, stage = ?9, status = ?10, \
                 blocked_reason = ?11, head_sha = ?12, pr_number = ?13, fix_rounds = ?14, review_rounds = ?15, \
                 last_fix_sha = ?16, gate_opened_at = ?17, updated_at = ?18, sent_back_sha = ?19, \
                 tracker_state = ?20, tracker_seen_at = ?21, verdicts_after = ?22, feedback_after = ?23 WHERE id = ?1",
            )?
            .execute(params![
                next.id.0,
                next.project.as_str(),
                next.work_item.to_string(),
                next.title,
                next.description,
                next.repo.to_string(),
                next.base_branch.as_str(),
                next.branch.as_str(),
                next.stage.as_str(),
                rows::status_name(&next.status),
                rows::blocked_reason(&next.status),
                next.head_sha.as_ref().map(CommitSha::as_str),
                next.pr.map(|pr| to_i64(pr.get())),
                i64::from(next.fix_rounds),
                i64::from(next.review_rounds),
                next.last_fix_sha.as_ref().map(CommitSha::as_str),
                next.gate_opened_at.map(Timestamp::as_millis),
                now.as_millis(),
                next.sent_back_sha.as_ref().map(CommitSha::as_str),
                next.tracker_state.as_ref().map(StateId::as_str),
                next.tracker_seen_at.map(Timestamp::as_millis),
                next.verdicts_after.map(Timestamp::as_millis),
                next.feedback_after.map(Timestamp::as_millis),
            ])?;
            let task = load_task(tx, next.id.0)?;
            for spec in &jobs {
                insert_job(tx, &task, spec, now)?;
            }
            if let Some(job) = consumes_job {
                tx.prepare_cached("UPDATE jobs SET handled = 1 WHERE id = ?1")?.execute([job.0])?;
            }
            insert_history(tx, &task, &note, now)?;
            Ok(task)
        })
        .await
    }

    async fn history(&self, task: TaskId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.read("history", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT task_id, at, stage, status, message FROM task_history WHERE task_id = ?1 ORDER BY id",
            )?;
            rows::collect(&mut stmt, [task.0], |row| {
                Ok(HistoryEntry {
                    task: TaskId(row.get(0)?),
                    at: ts(row.get(1)?),
                    stage: row.get::<_, String>(2)?.parse().map_err(|err| Error::corrupt("stage", err))?,
                    status: row.get(3)?,
                    message: row.get(4)?,
                })
            })
        })
        .await
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.read("job", move |conn| load_job(conn, id.0)).await
    }

    async fn jobs_of_task(&self, task: TaskId) -> Result<Vec<Job>, StoreError> {
        self.read("jobs_of_task", move |conn| {
            query_jobs(conn, "WHERE task_id = ?1 ORDER BY id", [task.0])
        })
        .await
    }

    async fn has_active_job(&self, task: TaskId) -> Result<bool, StoreError> {
        self.read("has_active_job", move |conn| {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE task_id = ?1 AND status IN {ACTIVE} AND kind IN {})",
                pipeline_kinds()
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([task.0], |row| row.get(0))?)
        })
        .await
    }

    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<ClaimedJob>, StoreError> {
        let request = request.clone();
        self.write("claim_next", move |tx| {
            let now = request.now.as_millis();
            let chosen: Option<i64> = match request.kinds {
                ClaimKinds::Agents { per_repo_limit } => tx
                    .prepare_cached(
                        "SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.is_agent = 1 AND j.not_before <= ?1 \
                         AND (SELECT count(*) FROM jobs r WHERE r.status = 'running' AND r.is_agent = 1 \
                              AND r.repo = j.repo) < ?2 \
                         ORDER BY j.not_before, j.id LIMIT 1",
                    )?
                    .query_row(params![now, i64::from(per_repo_limit)], |row| row.get(0))
                    .optional()?,
                ClaimKinds::Actions => tx
                    .prepare_cached(
                        "SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.is_agent = 0 AND j.not_before <= ?1 \
                         AND NOT (j.kind = 'tracker_state' AND EXISTS (SELECT 1 FROM jobs r WHERE r.task_id = j.task_id \
                              AND r.kind = 'tracker_state' AND r.status = 'running')) \
                         ORDER BY j.not_before, j.id LIMIT 1",
                    )?
                    .query_row([now], |row| row.get(0))
                    .optional()?,
            };
            let Some(id) = chosen else {
                return Ok(None);
            };
            let attempt = AttemptId::new(uuid::Uuid::new_v4().to_string())
                .map_err(|err| Error::corrupt("attempt id", err))?;
            let expires_at = (request.now + request.lease).as_millis();
            tx.prepare_cached(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, attempt_id = ?2, lease_owner = ?3, \
                 lease_expires_at = ?4, heartbeat_at = ?5, claimed_at = ?5, process_pid = NULL, \
                 process_pgid = NULL, process_start_time = NULL, updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, attempt.as_str(), request.owner.as_str(), expires_at, now])?;
            let job = load_job(tx, id)?.ok_or_else(|| Error::NotFound(format!("job {id}")))?;
            Ok(Some(ClaimedJob { job, attempt }))
        })
        .await
    }

    async fn next_due(&self, kinds: ClaimKinds) -> Result<Option<Timestamp>, StoreError> {
        self.read("next_due", move |conn| {
            let next: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(not_before) FROM jobs WHERE status = 'queued' AND is_agent = ?1",
                )?
                .query_row([is_agent_flag(kinds)], |row| row.get(0))?;
            Ok(next.map(ts))
        })
        .await
    }

    async fn heartbeat(
        &self,
        job: JobId,
        attempt: &AttemptId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let attempt = attempt.as_str().to_owned();
        self.write("heartbeat", move |tx| {
            check_attempt(tx, job.0, &attempt)?;
            tx.prepare_cached(
                "UPDATE jobs SET heartbeat_at = ?2, lease_expires_at = ?3 WHERE id = ?1",
            )?
            .execute(params![job.0, now.as_millis(), (now + lease).as_millis()])?;
            Ok(())
        })
        .await
    }

    async fn record_process(
        &self,
        job: JobId,
        attempt: &AttemptId,
        process: ProcessRecord,
    ) -> Result<(), StoreError> {
        let attempt = attempt.as_str().to_owned();
        self.write("record_process", move |tx| {
            check_attempt(tx, job.0, &attempt)?;
            tx.prepare_cached(
                "UPDATE jobs SET process_pid = ?2, process_pgid = ?3, process_start_time = ?4 WHERE id = ?1",
            )?
            .execute(params![job.0, i64::from(process.pid), i64::from(process.pgid), to_i64(process.start_time)])?;
            Ok(())
        })
        .await
    }

    async fn finish_job(
        &self,
        job: JobId,
        attempt: &AttemptId,
        result: JobResult,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let attempt = attempt.as_str().to_owned();
        self.write("finish_job", move |tx| {
            check_attempt(tx, job.0, &attempt)?;
            let end_lease = "attempt_id = NULL, lease_owner = NULL, lease_expires_at = NULL, heartbeat_at = NULL, \
                             claimed_at = NULL";
            let end_waiting = "waits = 0, waiting_service = NULL, waiting_since = NULL";
            match result {
                JobResult::Succeeded(output) => {
                    let output = serde_json::to_string(&output)?;
                    let sql = format!("UPDATE jobs SET status = 'succeeded', output = ?2, {end_lease}, {end_waiting}, updated_at = ?3 WHERE id = ?1");
                    tx.prepare_cached(&sql)?.execute(params![job.0, output, now.as_millis()])?;
                }
                JobResult::Retry { not_before, error } => {
                    let sql = format!(
                        "UPDATE jobs SET status = 'queued', not_before = ?2, last_error = ?3, {end_lease}, {end_waiting}, updated_at = ?4 WHERE id = ?1"
                    );
                    tx.prepare_cached(&sql)?.execute(params![job.0, not_before.as_millis(), error, now.as_millis()])?;
                }
                JobResult::Wait { not_before, error, service } => {
                    // The first failure of a run of failures on one service is the outage's start.
                    let sql = format!(
                        "UPDATE jobs SET status = 'queued', not_before = ?2, last_error = ?3, \
                         attempts = max(attempts - 1, 0), waits = waits + 1, \
                         waiting_since = CASE WHEN waiting_service = ?5 THEN waiting_since ELSE ?4 END, \
                         waiting_service = ?5, {end_lease}, updated_at = ?4 WHERE id = ?1"
                    );
                    tx.prepare_cached(&sql)?.execute(params![
                        job.0,
                        not_before.as_millis(),
                        error,
                        now.as_millis(),
                        service.as_str()
                    ])?;
                }
                JobResult::Failed { error } => {
                    let sql = format!("UPDATE jobs SET status = 'failed', last_error = ?2, {end_lease}, {end_waiting}, updated_at = ?3 WHERE id = ?1");
                    tx.prepare_cached(&sql)?.execute(params![job.0, error, now.as_millis()])?;
                }
                JobResult::HandBack { error } => {
                    let sql = format!(
                        "UPDATE jobs SET status = 'queued', not_before = ?3, attempts = max(attempts - 1, 0), \
                         last_error = ?2, {end_lease}, updated_at = ?3 WHERE id = ?1"
                    );
                    tx.prepare_cached(&sql)?.execute(params![job.0, error, now.as_millis()])?;
                }
                JobResult::Obsolete { reason } => {
                    let sql = format!(
                        "UPDATE jobs SET status = 'cancelled', handled = 1, last_error = ?2, {end_lease}, {end_waiting}, updated_at = ?3 WHERE id = ?1"
                    );
                    tx.prepare_cached(&sql)?.execute(params![job.0, reason, now.as_millis()])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn reclaim_leases(&self, owner: &BootId, now: Timestamp) -> Result<Vec<Job>, StoreError> {
        let owner = owner.as_str().to_owned();
        self.write("reclaim_leases", move |tx| {
            let stale = query_jobs(
                tx,
                "WHERE status = 'running' AND (lease_owner IS NULL OR lease_owner != ?1 OR lease_expires_at IS NULL \
                 OR lease_expires_at < ?2) ORDER BY id",
                params![owner, now.as_millis()],
            )?;
            let mut requeue = tx.prepare_cached(
                "UPDATE jobs SET status = 'queued', attempt_id = NULL, lease_owner = NULL, lease_expires_at = NULL, \
                 heartbeat_at = NULL, claimed_at = NULL, updated_at = ?2 WHERE id = ?1",
            )?;
            for job in &stale {
                requeue.execute(params![job.id.0, now.as_millis()])?;
            }
            if !stale.is_empty() {
                tracing::info!(count = stale.len(), "store reclaimed leases");
            }
            Ok(stale)
        })
        .await
    }

    async fn unhandled_finished_jobs(&self, max: u32) -> Result<Vec<Job>, StoreError> {
        self.read("unhandled_finished_jobs", move |conn| {
            query_jobs(
                conn,
                "WHERE handled = 0 AND status IN ('succeeded', 'failed') ORDER BY updated_at, id LIMIT ?1",
                [limit(max)],
            )
        })
        .await
    }

    async fn mark_job_handled(&self, job: JobId) -> Result<(), StoreError> {
        self.write("mark_job_handled", move |tx| {
            let changed = tx
                .prepare_cached("UPDATE jobs SET handled = 1 WHERE id = ?1")?
                .execute([job.0])?;
            if changed == 0 {
                return Err(Error::NotFound(format!("job {job}")));
            }
            Ok(())
        })
        .await
    }

    async fn inbox_insert(&self, delivery: NewDelivery) -> Result<InboxInsert, StoreError> {
        self.inbox.insert(delivery).await
    }

    async fn inbox_pending(&self, max: u32) -> Result<Vec<Delivery>, StoreError> {
        let (deliveries, unreadable) = self
            .read("inbox_pending", move |conn| {
                let sql = format!("SELECT {DELIVERY_COLUMNS} FROM inbox WHERE processed_at IS NULL ORDER BY id LIMIT ?1");
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query([limit(max)])?;
                let mut deliveries = Vec::new();
                let mut unreadable = Vec::new();
                while let Some(row) = rows.next()? {
                    match rows::delivery(row) {
                        Ok(delivery) => deliveries.push(delivery),
                        Err(err) => unreadable.push((row.get::<_, i64>(0)?, err.to_string())),
                    }
                }
                Ok((deliveries, unreadable))
            })
            .await?;
        // A row orch did not write (edited by hand, or by something that could write the
        // file) must not stall every delivery behind it: it is set aside with the reason.
        if !unreadable.is_empty() {
            self.write("inbox_set_aside", move |tx| {
                let mut set_aside = tx.prepare_cached(
                    "UPDATE inbox SET processed_at = received_at, outcome = ?2 WHERE id = ?1",
                )?;
                for (id, reason) in &unreadable {
                    tracing::error!(delivery = id, error = %reason, "an inbox row is unreadable; it is set aside");
                    let outcome = InboxOutcome::Failed(format!("unreadable row: {reason}"));
                    set_aside.execute(params![id, outcome.to_string()])?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(deliveries)
    }

    async fn inbox_mark_processed(
        &self,
        id: i64,
        outcome: &InboxOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inbox
            .mark_processed(vec![(id, outcome.to_string())], now)
            .await
    }

    async fn inbox_mark_processed_all(
        &self,
        marks: &[(i64, InboxOutcome)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let marks = marks
            .iter()
            .map(|(id, outcome)| (*id, outcome.to_string()))
            .collect();
        self.inbox.mark_processed(marks, now).await
    }

    async fn inbox_stats(&self, now: Timestamp) -> Result<InboxStats, StoreError> {
        self.read("inbox_stats", move |conn| {
            let (pending, oldest): (i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT count(*), min(received_at) FROM inbox WHERE processed_at IS NULL",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(InboxStats {
                pending: u64::try_from(pending).unwrap_or(0),
                oldest_pending_age: oldest.map(|at| now.since(ts(at))),
            })
        })
        .await
    }

    async fn tracker_watermark(
        &self,
        project: &ProjectId,
    ) -> Result<Option<Timestamp>, StoreError> {
        let project = project.as_str().to_owned();
        self.read("tracker_watermark", move |conn| {
            let at: Option<i64> = conn
                .prepare_cached("SELECT at FROM tracker_watermarks WHERE project_id = ?1")?
                .query_row([project], |row| row.get(0))
                .optional()?;
            Ok(at.map(ts))
        })
        .await
    }

    async fn set_tracker_watermark(
        &self,
        project: &ProjectId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let project = project.as_str().to_owned();
        self.write("set_tracker_watermark", move |tx| {
            tx.prepare_cached(
                "INSERT INTO tracker_watermarks (project_id, at) VALUES (?1, ?2) \
                 ON CONFLICT (project_id) DO UPDATE SET at = excluded.at",
            )?
            .execute(params![project, at.as_millis()])?;
            Ok(())
        })
        .await
    }

    async fn record_reconcile_run(&self, run: ReconcileRun) -> Result<(), StoreError> {
        self.write("record_reconcile_run", move |tx| {
            let unblocked = i64::try_from(run.unblocked.len()).unwrap_or(i64::MAX);
            let errors = i64::try_from(run.errors.len()).unwrap_or(i64::MAX);
            tx.prepare_cached(
                "INSERT INTO reconcile_totals (id, runs_total, unblocked_total, errors_total, last_run_at, \
                 last_duration_ms, last_error) VALUES (1, 1, ?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET runs_total = runs_total + 1, \
                 unblocked_total = unblocked_total + excluded.unblocked_total, \
                 errors_total = errors_total + excluded.errors_total, last_run_at = excluded.last_run_at, \
                 last_duration_ms = excluded.last_duration_ms, \
                 last_error = coalesce(excluded.last_error, last_error)",
            )?
            .execute(params![unblocked, errors, run.started_at.as_millis(), duration_ms(run.duration), run.errors.last()])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO reconcile_unblocked (task_id, work_item, stage, via, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for entry in &run.unblocked {
                insert.execute(params![
                    entry.task.0,
                    entry.work_item.to_string(),
                    entry.stage.as_str(),
                    via_name(entry.via),
                    entry.at.as_millis(),
                ])?;
            }
            tx.prepare_cached(
                "DELETE FROM reconcile_unblocked WHERE id NOT IN \
                 (SELECT id FROM reconcile_unblocked ORDER BY at DESC, id DESC LIMIT ?1)",
            )?
            .execute([RECENT_UNBLOCKED])?;
            Ok(())
        })
        .await
    }

    async fn reconcile_stats(&self) -> Result<ReconcileStats, StoreError> {
        self.read("reconcile_stats", move |conn| {
            type Totals = (i64, i64, i64, Option<i64>, Option<i64>, Option<String>);
            let totals: Option<Totals> = conn
                .prepare_cached(
                    "SELECT runs_total, unblocked_total, errors_total, last_run_at, last_duration_ms, last_error \
                     FROM reconcile_totals WHERE id = 1",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)))
                .optional()?;
            let mut stmt = conn.prepare_cached(
                "SELECT task_id, work_item, stage, via, at FROM reconcile_unblocked ORDER BY at DESC, id DESC LIMIT ?1",
            )?;
            let recent_unblocked = rows::collect(&mut stmt, [RECENT_UNBLOCKED], |row| {
                Ok(Unblocked {
                    task: TaskId(row.get(0)?),
                    work_item: WorkItemId::parse(&row.get::<_, String>(1)?)
                        .map_err(|err| Error::corrupt("work item", err))?,
                    stage: row.get::<_, String>(2)?.parse().map_err(|err| Error::corrupt("stage", err))?,
                    via: parse_via(&row.get::<_, String>(3)?)?,
                    at: ts(row.get(4)?),
                })
            })?;
            let Some((runs, unblocked, errors, last_run_at, last_duration, last_error)) = totals else {
                return Ok(ReconcileStats { recent_unblocked, ..ReconcileStats::default() });
            };
            let count = |value: i64| u64::try_from(value).unwrap_or(0);
            Ok(ReconcileStats {
                last_run_at: last_run_at.map(ts),
                last_duration: last_duration.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                runs_total: count(runs),
                unblocked_total: count(unblocked),
                recent_unblocked,
                errors_total: count(errors),
                last_error,
            })
        })
        .await
    }

    async fn queue_snapshot(&self) -> Result<QueueSnapshot, StoreError> {
        self.read("queue_snapshot", move |conn| {
            let queued: i64 =
                conn.prepare_cached("SELECT count(*) FROM jobs WHERE status = 'queued'")?.query_row([], |row| row.get(0))?;
            let mut stmt = conn.prepare_cached(
                "SELECT j.id, j.task_id, t.work_item, j.kind, coalesce(j.claimed_at, j.updated_at) \
                 FROM jobs j JOIN tasks t ON t.id = j.task_id WHERE j.status = 'running' ORDER BY j.id",
            )?;
            let running = rows::collect(&mut stmt, [], |row| {
                Ok(RunningJobInfo {
                    id: JobId(row.get(0)?),
                    task: TaskId(row.get(1)?),
                    work_item: WorkItemId::parse(&row.get::<_, String>(2)?)
                        .map_err(|err| Error::corrupt("work item", err))?,
                    kind: row.get::<_, String>(3)?.parse().map_err(|err| Error::corrupt("job kind", err))?,
                    started_at: ts(row.get(4)?),
                })
            })?;
            let mut stmt = conn.prepare_cached("SELECT stage, count(*) FROM tasks GROUP BY stage")?;
            let counts = rows::collect(&mut stmt, [], |row| {
                let stage: Stage = row.get::<_, String>(0)?.parse().map_err(|err| Error::corrupt("stage", err))?;
                Ok((stage, u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0)))
            })?;
            let by_stage = Stage::ALL
                .into_iter()
                .filter_map(|stage| counts.iter().find(|(counted, _)| *counted == stage).copied())
                .filter(|(_, count)| *count > 0)
                .collect();
            let open = "stage NOT IN ('done', 'cancelled')";
            let sql = format!("SELECT work_item FROM tasks WHERE status = 'awaiting_verdict' AND {open} ORDER BY id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let awaiting_verdict = rows::collect(&mut stmt, [], |row| {
                WorkItemId::parse(&row.get::<_, String>(0)?).map_err(|err| Error::corrupt("work item", err))
            })?;
            let sql = format!(
                "SELECT work_item, coalesce(blocked_reason, '') FROM tasks WHERE status = 'blocked' AND {open} ORDER BY id"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let blocked = rows::collect(&mut stmt, [], |row| {
                let work_item =
                    WorkItemId::parse(&row.get::<_, String>(0)?).map_err(|err| Error::corrupt("work item", err))?;
                Ok((work_item, row.get::<_, String>(1)?))
            })?;
            let sql = format!(
                "SELECT j.waiting_service, j.waiting_since, j.task_id, j.last_error, \
                 (SELECT count(*) FROM jobs w WHERE w.waiting_service = j.waiting_service AND w.status IN {ACTIVE}) \
                 FROM jobs j WHERE j.waiting_service IS NOT NULL AND j.status IN {ACTIVE} \
                 AND j.id = (SELECT w.id FROM jobs w WHERE w.waiting_service = j.waiting_service \
                             AND w.status IN {ACTIVE} ORDER BY w.waiting_since, w.id LIMIT 1)"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut waiting = rows::collect(&mut stmt, [], |row| {
                Ok(ServiceWait {
                    service: row.get::<_, String>(0)?.parse().map_err(|err| Error::corrupt("waiting service", err))?,
                    since: ts(row.get(1)?),
                    oldest_task: TaskId(row.get(2)?),
                    last_error: row.get(3)?,
                    jobs: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                })
            })?;
            waiting.sort_by_key(|wait| wait.service);
            Ok(QueueSnapshot {
                queued: u64::try_from(queued).unwrap_or(0),
                running,
                waiting,
                by_stage,
                awaiting_verdict,
                blocked,
            })
        })
        .await
    }

    async fn last_clean_shutdown(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read("last_clean_shutdown", move |conn| {
            meta_get(conn, "last_clean_shutdown")?
                .map(|value| {
                    value
                        .parse::<i64>()
                        .map(ts)
                        .map_err(|err| Error::corrupt("last clean shutdown", err))
                })
                .transpose()
        })
        .await
    }

    async fn set_last_clean_shutdown(&self, at: Timestamp) -> Result<(), StoreError> {
        self.write("set_last_clean_shutdown", move |tx| {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('last_clean_shutdown', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([at.as_millis().to_string()])?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError> {
        // One short write transaction per kind, so the event loop and the inbox writer wait
        // at most one batch.
        let max = request.limit;
        let mut pruned = Pruned::default();
        if let Some(before) = request.deliveries_before {
            pruned.deliveries = self
                .write("prune_deliveries", move |tx| {
                    prune_deliveries(tx, before, max)
                })
                .await?;
        }
        if let Some(before) = request.jobs_before {
            pruned.jobs = self
                .write("prune_jobs", move |tx| prune_jobs(tx, before, max))
                .await?;
        }
        if let Some(before) = request.history_before {
            pruned.history = self
                .write("prune_history", move |tx| prune_history(tx, before, max))
                .await?;
        }
        Ok(pruned)
    }
}
