//! The read-only and admin commands: `status`, `task show|retry|cancel`, `reconcile --once`.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};

use orch_core::domain::{Job, Task};
use orch_core::event::{Event, Origin};
use orch_core::ids::{TaskId, WorkItemId};
use orch_core::ports::{InboxStats, QueueSnapshot, ReconcileStats, Store, StoreError};
use orch_core::reconciler::{PassReport, ReconcileMode, Reconciler, TrackerSide};
use orch_core::Orchestrator;

use crate::config::Config;

/// Everything `orch status` shows.
pub struct StatusView {
    pub queue: QueueSnapshot,
    pub inbox: InboxStats,
    pub reconcile: ReconcileStats,
}

pub async fn status_view(
    store: &dyn Store,
    now: orch_core::time::Timestamp,
) -> Result<StatusView, StoreError> {
    Ok(StatusView {
        queue: store.queue_snapshot().await?,
        inbox: store.inbox_stats(now).await?,
        reconcile: store.reconcile_stats().await?,
    })
}

/// The JSON of `orch status --json`.
pub fn status_json(view: &StatusView, config: &Config) -> Value {
    let by_stage: serde_json::Map<String, Value> = view
        .queue
        .by_stage
        .iter()
        .map(|(stage, count)| (stage.to_string(), json!(count)))
        .collect();
    json!({
        "jobs": {
            "queued": view.queue.queued,
            "running": view.queue.running.iter().map(|job| json!({
                "id": job.id.0, "task": job.work_item.to_string(), "kind": job.kind.to_string(),
                "started_at": job.started_at.to_rfc3339(),
            })).collect::<Vec<_>>(),
        },
        "tasks": {
            "by_stage": by_stage,
            "awaiting_verdict": view.queue.awaiting_verdict.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "blocked": view.queue.blocked.iter().map(|(task, reason)| json!({"task": task.to_string(), "reason": reason})).collect::<Vec<_>>(),
        },
        "inbox": {
            "pending": view.inbox.pending,
            "oldest_pending_age_s": view.inbox.oldest_pending_age.map(|age| age.as_secs()),
        },
        "reconcile": {
            "enabled": config.reconcile.enabled,
            "plane_enabled": config.reconcile.plane_enabled,
            "interval_s": config.reconcile.interval.as_secs(),
            "last_run_at": view.reconcile.last_run_at.map(|at| at.to_rfc3339()),
            "last_duration_ms": view.reconcile.last_duration.map(|duration| duration.as_millis() as u64),
            "runs_total": view.reconcile.runs_total,
            "unblocked_total": view.reconcile.unblocked_total,
            "recent_unblocked": view.reconcile.recent_unblocked.iter().map(|unblocked| json!({
                "task": unblocked.work_item.to_string(), "stage": unblocked.stage.to_string(),
                "via": unblocked.via.as_str(), "at": unblocked.at.to_rfc3339(),
            })).collect::<Vec<_>>(),
            "errors_total": view.reconcile.errors_total,
            "last_error": view.reconcile.last_error,
        },
    })
}

/// The text of `orch status`.
pub fn status_text(view: &StatusView) -> String {
    let mut out = String::new();
    let stages: Vec<String> = view
        .queue
        .by_stage
        .iter()
        .map(|(stage, count)| format!("{stage} {count}"))
        .collect();
    let _ = writeln!(
        out,
        "tasks: {}",
        if stages.is_empty() {
            "none".to_owned()
        } else {
            stages.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "jobs: {} queued, {} running",
        view.queue.queued,
        view.queue.running.len()
    );
    for job in &view.queue.running {
        let _ = writeln!(
            out,
            "  running {} {} since {}",
            job.work_item, job.kind, job.started_at
        );
    }
    if !view.queue.awaiting_verdict.is_empty() {
        let waiting: Vec<String> = view
            .queue
            .awaiting_verdict
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "awaiting a verdict: {}", waiting.join(", "));
    }
    for (task, reason) in &view.queue.blocked {
        let _ = writeln!(out, "blocked {task}: {reason}");
    }
    let oldest = view
        .inbox
        .oldest_pending_age
        .map_or(String::new(), |age| format!(", oldest {} s", age.as_secs()));
    let _ = writeln!(out, "inbox: {} pending{oldest}", view.inbox.pending);
    let last = view
        .reconcile
        .last_run_at
        .map_or("never".to_owned(), |at| at.to_rfc3339());
    let _ = writeln!(
        out,
        "reconcile: {} runs, {} unblocked, {} errors, last run {last}",
        view.reconcile.runs_total, view.reconcile.unblocked_total, view.reconcile.errors_total
    );
    out
}

/// Finds a task by work item id (`ET-001`) or task number.
pub async fn find_task(store: &dyn Store, id: &str) -> Result<Option<Task>, StoreError> {
    if let Ok(work_item) = WorkItemId::parse(id) {
        if let Some(task) = store.task_by_work_item(&work_item).await? {
            return Ok(Some(task));
        }
    }
    match id.parse::<i64>() {
        Ok(number) => store.task(TaskId(number)).await,
        Err(_) => Ok(None),
    }
}

/// The text of `orch task show`.
pub async fn task_text(store: &dyn Store, task: &Task) -> Result<String, StoreError> {
    let mut out = String::new();
    let _ = writeln!(out, "{} {} ({})", task.work_item, task.title, task.repo);
    let _ = writeln!(
        out,
        "stage {} / {} · branch {} · version {}",
        task.stage, task.status, task.branch, task.version
    );
    let pr = task.pr.map_or("none".to_owned(), |pr| pr.to_string());
    let head = task.head_sha.as_ref().map_or("none", |sha| sha.as_str());
    let _ = writeln!(
        out,
        "pull request {pr} · head {head} · fix rounds {} · review rounds {}",
        task.fix_rounds, task.review_rounds
    );
    let _ = writeln!(out, "history:");
    for entry in store.history(task.id).await? {
        let _ = writeln!(
            out,
            "  {} {:<11} {:<16} {}",
            entry.at,
            entry.stage.to_string(),
            entry.status,
            entry.message
        );
    }
    let _ = writeln!(out, "jobs:");
    for job in store.jobs_of_task(task.id).await? {
        let _ = writeln!(out, "  {}", job_line(&job));
    }
    Ok(out)
}

fn job_line(job: &Job) -> String {
    let error = job
        .last_error
        .as_deref()
        .map_or(String::new(), |error| format!(" — {error}"));
    format!(
        "#{} {:<15} {:<9} attempts {}{error}",
        job.id,
        job.kind().to_string(),
        job.status.as_str(),
        job.attempts
    )
}

/// An admin command, handled by an in-process orchestrator (the caller holds the lock).
pub async fn admin(
    orchestrator: &Orchestrator,
    event: Event,
) -> Result<String, orch_core::HandleError> {
    let handled = orchestrator.handle(&event, Origin::Admin).await?;
    Ok(if handled.changed {
        format!("done: {}", handled.note)
    } else {
        format!("nothing to do: {}", handled.note)
    })
}

/// One reconcile pass through an in-process orchestrator.
pub async fn reconcile_once(
    ports: orch_core::ports::Ports,
    config: &Config,
    orchestrator: Arc<Orchestrator>,
    mode: ReconcileMode,
) -> PassReport {
    let side = if config.reconcile.plane_enabled {
        TrackerSide::Enabled
    } else {
        TrackerSide::Disabled
    };
    Reconciler::new(ports, config.pipeline(), orchestrator)
        .with_mode(mode)
        .run_once(side)
        .await
}

/// The text of a pass report.
pub fn pass_text(report: &PassReport, mode: ReconcileMode) -> String {
    let mut out = String::new();
    let verb = if mode == ReconcileMode::DryRun {
        "would replay"
    } else {
        "replayed"
    };
    for event in &report.replays {
        let _ = writeln!(out, "{verb} {}", describe(event));
    }
    for unblocked in &report.unblocked {
        let _ = writeln!(
            out,
            "unblocked {} at {} via {}",
            unblocked.work_item,
            unblocked.stage,
            unblocked.via.as_str()
        );
    }
    for error in &report.errors {
        let _ = writeln!(out, "error: {error}");
    }
    let _ = writeln!(
        out,
        "{} replay(s), {} unblocked, {} error(s), {} gate candidate(s)",
        report.replays.len(),
        report.unblocked.len(),
        report.errors.len(),
        report.candidates_checked
    );
    out
}

fn describe(event: &Event) -> String {
    match event {
        Event::WorkItemMoved { item, .. } => format!(
            "work item {} (sequence {}) moved to state {}",
            item.id, item.sequence_id, item.state
        ),
        Event::CiStatusReported { repo, sha, state } => {
            format!("ci status {state:?} of {repo}@{}", sha.short())
        }
        Event::GateGreen { task, head_sha } => {
            format!("gate green of task {task} at {}", head_sha.short())
        }
        other => format!("{other:?}"),
    }
}
