//! The read-only and admin commands: `status`, `task show|retry|cancel` (in process, or sent
//! to the running daemon over its admin socket), `reconcile --once`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use orch_core::domain::{Job, Task};
use orch_core::event::{Event, Origin};
use orch_core::ids::{TaskId, WorkItemId};
use orch_core::ports::{InboxStats, QueueSnapshot, ReconcileStats, Store, StoreError};
use orch_core::reconciler::{PassReport, ReconcileMode, Reconciler, TrackerSide};
use orch_core::Orchestrator;

use crate::config::{Config, ReconcileConfig};
use crate::wiring::admin_socket_path;

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
/// `reconcile` is the reconciler's config, when a config file was read (with `--db` alone,
/// its settings are `null`).
pub fn status_json(view: &StatusView, reconcile: Option<&ReconcileConfig>) -> Value {
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
            "enabled": reconcile.map(|config| config.enabled),
            "plane_enabled": reconcile.map(|config| config.plane_enabled),
            "interval_s": reconcile.map(|config| config.interval.as_secs()),
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
    Ok(handled_text(handled.changed, &handled.note))
}

/// `done: …` or `nothing to do: …`, the words of `orch task retry|cancel`.
pub fn handled_text(changed: bool, note: &str) -> String {
    if changed {
        format!("done: {note}")
    } else {
        format!("nothing to do: {note}")
    }
}

/// `orch task retry` or `orch task cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommand {
    Retry,
    Cancel,
}

impl AdminCommand {
    /// The last segment of its route, `POST /api/tasks/{id}/retry|cancel`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminCommand::Retry => "retry",
            AdminCommand::Cancel => "cancel",
        }
    }

    /// The event the serial loop handles for this command.
    pub fn event(self, task: TaskId) -> Event {
        match self {
            AdminCommand::Retry => Event::RetryRequested { task },
            AdminCommand::Cancel => Event::CancelRequested { task },
        }
    }
}

/// How long `orch task retry|cancel` waits for the running daemon's answer.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from the daemon.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// A client of the running daemon's admin socket (`{db_path}.sock`), for admin commands
/// while the daemon holds the database lock: they must go through its serial event loop
/// (SPEC §2). The socket is mode 0600 and owned by the daemon's user, who alone may use it;
/// no token is needed or sent.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    socket: PathBuf,
    timeout: Duration,
}

/// What the daemon did with an admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAnswer {
    /// The task's work item id, `ET-001`.
    pub task: String,
    pub changed: bool,
    pub note: String,
}

/// Why the daemon did not carry out an admin command.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// 400 or 404: the id names no task.
    #[error("the daemon has no task {id:?} ({message}); give a work item id like ET-001 or a task number")]
    NoSuchTask { id: String, message: String },
    /// The socket belongs to another user (it is mode 0600).
    #[error("the admin socket {} belongs to the daemon's user: run orch as that user", socket.display())]
    NotPermitted { socket: PathBuf },
    /// 401 or 403: something that is not orch's daemon answers on the socket, or a proxy
    /// relays it.
    #[error("the daemon on {} refused the command ({status}: {message})", socket.display())]
    Refused {
        socket: PathBuf,
        status: u16,
        message: String,
    },
    /// No answer: no socket, nothing accepts on it, a timeout, a reset.
    #[error("no orch daemon answers on its admin socket {}: {message}", socket.display())]
    Unreachable { socket: PathBuf, message: String },
    /// Any other answer (503 while the loop is stopping, 500, an unexpected body).
    #[error("the daemon on {} answered {status}: {message}", socket.display())]
    Failed {
        socket: PathBuf,
        status: u16,
        message: String,
    },
}

impl RemoteError {
    /// Whether the user must fix the command or how it is run (exit 2) rather than retry
    /// (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RemoteError::NoSuchTask { .. }
                | RemoteError::NotPermitted { .. }
                | RemoteError::Refused { .. }
        )
    }
}

impl DaemonClient {
    /// A client of the daemon serving the admin socket `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> DaemonClient {
        DaemonClient {
            socket: socket.into(),
            timeout: REMOTE_TIMEOUT,
        }
    }

    /// A client of the daemon that holds the database at `db_path` (`{db_path}.sock`).
    pub fn for_database(db_path: &Path) -> DaemonClient {
        DaemonClient::new(admin_socket_path(db_path))
    }

    /// The same client with another answer deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> DaemonClient {
        self.timeout = timeout;
        self
    }

    /// Where the daemon is reached.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `command` for the task `id` (a work item id or a task number) and waits for
    /// the daemon's event loop to handle it.
    pub async fn send(&self, command: AdminCommand, id: &str) -> Result<RemoteAnswer, RemoteError> {
        let exchange = tokio::time::timeout(self.timeout, self.exchange(command, id)).await;
        let (status, body) = match exchange {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => return Err(err),
            Err(_elapsed) => {
                return Err(
                    self.unreachable(format!("no answer within {} s", self.timeout.as_secs_f64()))
                )
            }
        };
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let message = parsed
            .as_ref()
            .and_then(|value| value["error"].as_str())
            .map_or_else(|| body.chars().take(200).collect(), str::to_owned);
        let socket = self.socket.clone();
        match status {
            200 => {
                let answer = parsed.as_ref().and_then(|value| {
                    Some(RemoteAnswer {
                        task: value["task"].as_str()?.to_owned(),
                        changed: value["changed"].as_bool()?,
                        note: value["note"].as_str()?.to_owned(),
                    })
                });
                answer.ok_or(RemoteError::Failed {
                    socket,
                    status,
                    message: "an answer without task, changed and note".to_owned(),
                })
            }
            400 | 404 => Err(RemoteError::NoSuchTask {
                id: id.to_owned(),
                message,
            }),
            401 | 403 => Err(RemoteError::Refused {
                socket,
                status,
                message,
            }),
            _ => Err(RemoteError::Failed {
                socket,
                status,
                message,
            }),
        }
    }

    /// One HTTP/1.1 exchange over the socket: the status and body of the answer. The daemon
    /// answers with a `Content-Length` and closes the connection (`Connection: close`).
    async fn exchange(
        &self,
        command: AdminCommand,
        id: &str,
    ) -> Result<(u16, String), RemoteError> {
        let mut stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|err| connect_error(&self.socket, &err))?;
        let request = format!(
            "POST /api/tasks/{}/{} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            encode_segment(id),
            command.as_str()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|err| self.unreachable(format!("sending the command: {err}")))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut raw)
            .await
            .map_err(|err| self.unreachable(format!("reading the answer: {err}")))?;
        parse_answer(&raw)
            .ok_or_else(|| self.unreachable("the answer is not an HTTP/1.1 response".to_owned()))
    }

    fn unreachable(&self, message: String) -> RemoteError {
        RemoteError::Unreachable {
            socket: self.socket.clone(),
            message,
        }
    }
}

/// Why connecting to the admin socket failed: not permitted (another user's socket), or no
/// daemon there.
pub(crate) fn connect_error(socket: &Path, err: &std::io::Error) -> RemoteError {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => RemoteError::NotPermitted {
            socket: socket.to_path_buf(),
        },
        _ => RemoteError::Unreachable {
            socket: socket.to_path_buf(),
            message: err.to_string(),
        },
    }
}

/// The status and body of a whole HTTP/1.1 response, the body cut to its `Content-Length`.
pub(crate) fn parse_answer(raw: &[u8]) -> Option<(u16, String)> {
    let head_end = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next()?.split(' ');
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let body = &raw[head_end + 4..];
    let length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(length) => body.get(..length)?,
        None => body,
    };
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment: only unreserved characters stay as they are.
fn encode_segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
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
        Event::ForgeObserved {
            task,
            head_sha,
            report,
        } => {
            let head = head_sha.as_ref().map_or("no head", |sha| sha.short());
            let pull = report
                .pull
                .as_ref()
                .map_or("no pull request".to_owned(), |pull| {
                    let state = match (pull.state, pull.merged) {
                        (_, true) => "merged",
                        (orch_core::ports::PrState::Open, false) => "open",
                        (orch_core::ports::PrState::Closed, false) => "closed",
                    };
                    format!(
                        "pull request {} {state} at {}",
                        pull.number,
                        pull.head_sha.short()
                    )
                });
            let gate = match (report.green, report.ci) {
                (true, _) => "gate green".to_owned(),
                (false, Some(ci)) => format!("ci {ci:?}"),
                (false, None) => "no automatic gate".to_owned(),
            };
            format!("forge facts of task {task} at {head}: {pull}, {gate}")
        }
        Event::ServiceDegraded {
            service,
            since,
            jobs,
            ..
        } => {
            format!("{service} out since {since}: {jobs} job(s) wait")
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
