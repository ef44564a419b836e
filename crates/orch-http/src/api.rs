//! The status and admin API: `/readyz`, `/queue`, `/metrics`, `/api/tasks`, `/api/tasks/{id}`
//! and `POST /api/tasks/{id}/retry|cancel`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use orch_core::domain::{
    HistoryEntry, Job, JobKind, Service, Stage, Task, TaskStatus, DEGRADED_AFTER,
};
use orch_core::event::{Event, Origin};
use orch_core::ids::{TaskId, WorkItemId};
use orch_core::orchestrator::HandleError;
use orch_core::ports::{ErrorClass, InboxStats, QueueSnapshot, ReconcileStats, StoreError};
use orch_core::time::Timestamp;
use serde_json::{json as json_value, Map, Value};
use tracing::{info, warn};

use crate::metrics::METRICS_CONTENT_TYPE;
use crate::server::{error, json, text, Response};
use crate::state::{AppState, ReconcileSettings};

/// Tasks listed by `/api/tasks` when `limit` is not given.
const DEFAULT_TASK_LIMIT: u32 = 100;
/// The largest `limit` of `/api/tasks`.
const MAX_TASK_LIMIT: u32 = 1000;

/// Whether `path` shows work items or commands them: it needs admin access (SPEC §5.3).
pub(crate) fn is_work_item_path(path: &str) -> bool {
    matches!(path, "/queue" | "/api/tasks") || path.starts_with("/api/tasks/")
}

pub(crate) fn readyz(state: &AppState) -> Response {
    let readiness = &state.readiness;
    let loops: Map<String, Value> = readiness
        .loops()
        .into_iter()
        .map(|(name, state)| (name.to_owned(), state.as_str().into()))
        .collect();
    let ready = readiness.is_ready();
    let storage = readiness
        .storage_fault()
        .map_or_else(|| "ok".to_owned(), |fault| format!("fault: {fault}"));
    let body = json_value!({
        "ready": ready,
        "migrations_applied": readiness.migrations_applied(),
        "loops": loops,
        "storage": storage,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}

/// `/metrics` or a work item route; the caller checked the method and the access.
pub(crate) async fn handle(state: &AppState, request: &Request<Incoming>) -> Response {
    let path = request.uri().path();
    let result = match path {
        "/queue" => queue(state).await,
        "/metrics" => metrics(state).await,
        "/api/tasks" => tasks(state, request.uri().query()).await,
        _ => match path.strip_prefix("/api/tasks/") {
            Some(id) => task(state, id).await,
            None => Ok(error(StatusCode::NOT_FOUND, "no such route")),
        },
    };
    result.unwrap_or_else(|err| {
        warn!(route = path, error = %err, "status api store read failed");
        error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    })
}

async fn queue(state: &AppState) -> Result<Response, StoreError> {
    let snapshot = state.store.queue_snapshot().await?;
    let inbox = state.store.inbox_stats(state.clock.now()).await?;
    let reconcile = state.store.reconcile_stats().await?;
    let body = queue_json(
        &snapshot,
        &inbox,
        &reconcile,
        state.reconcile.get(),
        state.clock.now(),
    );
    Ok(json(StatusCode::OK, &body))
}

async fn metrics(state: &AppState) -> Result<Response, StoreError> {
    let snapshot = state.store.queue_snapshot().await?;
    let inbox = state.store.inbox_stats(state.clock.now()).await?;
    state
        .metrics
        .set_store_gauges(&snapshot, &inbox, state.clock.now());
    Ok(text(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        state.metrics.encode(),
    ))
}

async fn tasks(state: &AppState, query: Option<&str>) -> Result<Response, StoreError> {
    let limit = match parse_limit(query) {
        Ok(limit) => limit,
        Err(message) => return Ok(error(StatusCode::BAD_REQUEST, message)),
    };
    let tasks = state.store.list_tasks(limit).await?;
    let items: Vec<Value> = tasks.iter().map(task_summary_json).collect();
    Ok(json(StatusCode::OK, &json_value!({ "tasks": items })))
}

async fn task(state: &AppState, id: &str) -> Result<Response, StoreError> {
    let task = match lookup(state, id).await? {
        Ok(task) => task,
        Err(refusal) => return Ok(refusal),
    };
    let history = state.store.history(task.id).await?;
    let jobs = state.store.jobs_of_task(task.id).await?;
    let body = json_value!({
        "task": task_detail_json(&task),
        "history": history.iter().map(history_json).collect::<Vec<_>>(),
        "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
    });
    Ok(json(StatusCode::OK, &body))
}

/// An admin command of `POST /api/tasks/{id}/{command}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminCommand {
    /// Re-run the task's stage agent (`orch task retry`).
    Retry,
    /// Cancel the task (`orch task cancel`).
    Cancel,
}

impl AdminCommand {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AdminCommand::Retry => "retry",
            AdminCommand::Cancel => "cancel",
        }
    }
}

/// The task id and command of an admin command path, `/api/tasks/{id}/retry|cancel`.
pub(crate) fn admin_command(path: &str) -> Option<(&str, AdminCommand)> {
    let (id, verb) = path.strip_prefix("/api/tasks/")?.split_once('/')?;
    let command = match verb {
        "retry" => AdminCommand::Retry,
        "cancel" => AdminCommand::Cancel,
        _ => return None,
    };
    Some((id, command))
}

/// Submits `command` for the task `id` names to the daemon's serial event loop and answers
/// `{"task", "changed", "note"}` with what the loop did; the caller checked method and
/// access, and `via` says how the sender was admitted (for the log).
pub(crate) async fn command(
    state: &AppState,
    id: &str,
    command: AdminCommand,
    via: &'static str,
) -> Response {
    match submit_command(state, id, command, via).await {
        Ok(done) => {
            let body = json_value!({
                "task": done.work_item.to_string(),
                "changed": done.changed,
                "note": done.note,
            });
            json(StatusCode::OK, &body)
        }
        Err(refusal) => refusal.response(),
    }
}

/// What the event loop did with an admin command.
#[derive(Debug, Clone)]
pub(crate) struct CommandDone {
    pub(crate) work_item: WorkItemId,
    pub(crate) changed: bool,
    pub(crate) note: String,
}

/// Why an admin command was not carried out: the status and message to answer with.
#[derive(Debug, Clone)]
pub(crate) struct CommandRefused {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl CommandRefused {
    fn new(status: StatusCode, message: impl Into<String>) -> CommandRefused {
        CommandRefused {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn response(&self) -> Response {
        error(self.status, &self.message)
    }
}

/// Submits `command` for the task `id` names to the daemon's serial event loop (the JSON
/// API and the board both come here); the caller checked method and access.
pub(crate) async fn submit_command(
    state: &AppState,
    id: &str,
    command: AdminCommand,
    via: &'static str,
) -> Result<CommandDone, CommandRefused> {
    let Some(sink) = state.admin.clone() else {
        return Err(CommandRefused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin commands need the daemon's event loop, and this server has none",
        ));
    };
    let task = match find_task(state, id).await {
        Ok(Ok(task)) => task,
        Ok(Err(refused)) => return Err(refused),
        Err(err) => {
            warn!(command = command.as_str(), error = %err, "admin command store read failed");
            return Err(CommandRefused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable",
            ));
        }
    };
    let event = match command {
        AdminCommand::Retry => Event::RetryRequested { task: task.id },
        AdminCommand::Cancel => Event::CancelRequested { task: task.id },
    };
    match sink.submit(event, Origin::Admin).await {
        Ok(handled) => {
            info!(
                task = %task.work_item,
                command = command.as_str(),
                via,
                changed = handled.changed,
                "admin command handled"
            );
            Ok(CommandDone {
                work_item: task.work_item,
                changed: handled.changed,
                note: handled.note,
            })
        }
        Err(err) => {
            warn!(
                task = %task.work_item,
                command = command.as_str(),
                error = %err,
                "admin command failed"
            );
            let status = if is_unavailable(&err) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let message = format!("{} of {} failed: {err}", command.as_str(), task.work_item);
            Err(CommandRefused::new(status, message))
        }
    }
}

/// Whether trying again later may help (the loop or a system it needs is unavailable).
fn is_unavailable(err: &HandleError) -> bool {
    match err {
        HandleError::Store(store) => matches!(store, StoreError::Unavailable(_)),
        HandleError::Tracker(tracker) => {
            matches!(tracker.class(), ErrorClass::Unavailable { .. })
        }
        HandleError::Forge(forge) => matches!(forge.class(), ErrorClass::Unavailable { .. }),
        HandleError::TooEarly(_) | HandleError::DeadlineExceeded(_) | HandleError::LoopStopped => {
            true
        }
    }
}

/// The task `id` names (a task number or a work item id like ET-001), or the 400 or 404
/// answer to give instead.
async fn lookup(state: &AppState, id: &str) -> Result<Result<Task, Response>, StoreError> {
    Ok(find_task(state, id)
        .await?
        .map_err(|refused| refused.response()))
}

/// The task `id` names (a task number or a work item id like ET-001), or why there is none
/// (400 for an id of neither shape, 404 for no such task).
pub(crate) async fn find_task(
    state: &AppState,
    id: &str,
) -> Result<Result<Task, CommandRefused>, StoreError> {
    let found = if !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit()) {
        match id.parse::<i64>() {
            Ok(number) => state.store.task(TaskId(number)).await?,
            Err(_) => None,
        }
    } else {
        match WorkItemId::parse(id) {
            Ok(work_item) => state.store.task_by_work_item(&work_item).await?,
            Err(_) => {
                return Ok(Err(CommandRefused::new(
                    StatusCode::BAD_REQUEST,
                    "task id must be a number or a work item id like ET-001",
                )));
            }
        }
    };
    Ok(found.ok_or_else(|| CommandRefused::new(StatusCode::NOT_FOUND, "no such task")))
}

fn parse_limit(query: Option<&str>) -> Result<u32, &'static str> {
    let Some(query) = query else {
        return Ok(DEFAULT_TASK_LIMIT);
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("limit=") {
            return match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_TASK_LIMIT).contains(&limit) => Ok(limit),
                _ => Err("limit must be a number from 1 to 1000"),
            };
        }
    }
    Ok(DEFAULT_TASK_LIMIT)
}

/// The `/queue` document of SPEC §5.3.
pub(crate) fn queue_json(
    snapshot: &QueueSnapshot,
    inbox: &InboxStats,
    reconcile: &ReconcileStats,
    settings: ReconcileSettings,
    now: Timestamp,
) -> Value {
    let mut services = Map::new();
    for service in Service::ALL {
        let wait = snapshot.waiting.iter().find(|wait| wait.service == service);
        services.insert(
            service.as_str().to_owned(),
            json_value!({
                "degraded": wait.is_some_and(|wait| now.since(wait.since) >= DEGRADED_AFTER),
                "waiting_jobs": wait.map_or(0, |wait| wait.jobs),
                "waiting_since": wait.map(|wait| wait.since.to_rfc3339()),
                "last_error": wait.and_then(|wait| wait.last_error.clone()),
            }),
        );
    }
    let running: Vec<Value> = snapshot
        .running
        .iter()
        .map(|job| {
            let (kind, agent) = kind_and_agent(job.kind);
            json_value!({
                "id": job.id.0,
                "task": job.work_item.to_string(),
                "kind": kind,
                "agent": agent,
                "started_at": job.started_at.to_rfc3339(),
            })
        })
        .collect();
    let mut by_stage = Map::new();
    for stage in Stage::ALL {
        let count = snapshot
            .by_stage
            .iter()
            .find(|(each, _)| *each == stage)
            .map_or(0, |(_, count)| *count);
        by_stage.insert(stage.as_str().to_owned(), Value::from(count));
    }
    let awaiting: Vec<String> = snapshot
        .awaiting_verdict
        .iter()
        .map(ToString::to_string)
        .collect();
    let blocked: Vec<Value> = snapshot
        .blocked
        .iter()
        .map(|(task, reason)| json_value!({ "task": task.to_string(), "reason": reason }))
        .collect();
    let recent: Vec<Value> = reconcile
        .recent_unblocked
        .iter()
        .map(|unblocked| {
            json_value!({
                "task": unblocked.work_item.to_string(),
                "stage": unblocked.stage.as_str(),
                "via": unblocked.via.as_str(),
                "at": unblocked.at.to_rfc3339(),
            })
        })
        .collect();
    json_value!({
        "jobs": { "queued": snapshot.queued, "running": running },
        "services": services,
        "tasks": { "by_stage": by_stage, "awaiting_verdict": awaiting, "blocked": blocked },
        "inbox": {
            "pending": inbox.pending,
            "oldest_pending_age_s": inbox.oldest_pending_age.map_or(0, |age| age.as_secs()),
        },
        "reconcile": {
            "enabled": settings.enabled,
            "plane_enabled": settings.plane_enabled,
            "interval_s": settings.interval.as_secs(),
            "last_run_at": reconcile.last_run_at.map(Timestamp::to_rfc3339),
            "last_duration_ms": reconcile.last_duration.map(|duration| duration.as_millis() as u64),
            "runs_total": reconcile.runs_total,
            "unblocked_total": reconcile.unblocked_total,
            "recent_unblocked": recent,
            "errors_total": reconcile.errors_total,
            "last_error": reconcile.last_error,
        },
    })
}

/// `("agent", "developer")` for agent jobs, `("merge", null)` for the others.
fn kind_and_agent(kind: JobKind) -> (&'static str, Option<&'static str>) {
    match kind {
        JobKind::Agent(agent) => ("agent", Some(agent.as_str())),
        other => (other.as_str(), None),
    }
}

/// A task as `/api/tasks` lists it.
fn task_summary_json(task: &Task) -> Value {
    let blocked_reason = match &task.status {
        TaskStatus::Blocked { reason } => Some(reason.as_str()),
        TaskStatus::Working | TaskStatus::AwaitingVerdict => None,
    };
    json_value!({
        "id": task.id.0,
        "work_item": task.work_item.to_string(),
        "issue": task.issue.as_str(),
        "project": task.project.as_str(),
        "title": task.title,
        "repo": task.repo.to_string(),
        "branch": task.branch.as_str(),
        "base_branch": task.base_branch.as_str(),
        "stage": task.stage.as_str(),
        "status": task.status.name(),
        "blocked_reason": blocked_reason,
        "head_sha": task.head_sha.as_ref().map(|sha| sha.as_str()),
        "pr": task.pr.map(|pr| pr.get()),
        "fix_rounds": task.fix_rounds,
        "review_rounds": task.review_rounds,
        "version": task.version,
        "created_at": task.created_at.to_rfc3339(),
        "updated_at": task.updated_at.to_rfc3339(),
    })
}

/// A task as `/api/tasks/{id}` shows it: the summary, its description and when its gate opened.
fn task_detail_json(task: &Task) -> Value {
    let mut body = task_summary_json(task);
    body["description"] = Value::from(task.description.as_str());
    body["gate_opened_at"] = task.gate_opened_at.map(Timestamp::to_rfc3339).into();
    body
}

fn history_json(entry: &HistoryEntry) -> Value {
    json_value!({
        "at": entry.at.to_rfc3339(),
        "stage": entry.stage.as_str(),
        "status": entry.status,
        "message": entry.message,
    })
}

fn job_json(job: &Job) -> Value {
    let (kind, agent) = kind_and_agent(job.kind());
    json_value!({
        "id": job.id.0,
        "kind": kind,
        "agent": agent,
        "key": job.key,
        "status": job.status.as_str(),
        "attempts": job.attempts,
        "not_before": job.not_before.to_rfc3339(),
        "last_error": job.last_error,
        "handled": job.handled,
        "created_at": job.created_at.to_rfc3339(),
        "updated_at": job.updated_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests;
