//! What the board shows: view models built from the store, and their askama templates.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use askama::Template;
use orch_core::domain::DEGRADED_AFTER;
use orch_core::domain::{HistoryEntry, Job, JobKind, JobStatus, Stage, Task, TaskStatus};
use orch_core::ports::{QueueSnapshot, StoreError};
use orch_core::time::Timestamp;

use crate::state::{AppState, BoardSettings};

/// Tasks the board reads (newest first).
const BOARD_TASK_LIMIT: u32 = 500;

/// Finished (done or cancelled) tasks the last column shows.
const RECENT_FINISHED: usize = 20;

/// The bytes of an agent log the task page shows, from its end.
pub(crate) const LOG_TAIL_BYTES: u64 = 4096;

/// The board page.
#[derive(Template)]
#[template(path = "board.html")]
pub(crate) struct BoardPage {
    /// `LivePart`, rendered (and so escaped) already.
    pub(crate) live: String,
}

/// The part of the board `/events` replaces: the banner and the columns.
#[derive(Template, Debug, Clone, PartialEq, Eq)]
#[template(path = "live.html")]
pub(crate) struct LivePart {
    pub(crate) degraded: Vec<String>,
    pub(crate) columns: Vec<Column>,
}

/// One column of the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// `analysis`, `development`, `review` or `finished`.
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) cards: Vec<Card>,
}

/// One task's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Card {
    pub(crate) id: i64,
    pub(crate) work_item: String,
    pub(crate) title: String,
    pub(crate) stage: &'static str,
    pub(crate) plane_url: Option<String>,
    pub(crate) pr: Option<u64>,
    pub(crate) pr_url: Option<String>,
    pub(crate) ci: Ci,
    pub(crate) fix_rounds: u32,
    pub(crate) review_rounds: u32,
    /// `working`, `awaiting_verdict`, `blocked`, `done` or `cancelled`.
    pub(crate) status: &'static str,
    pub(crate) status_label: String,
    pub(crate) blocked_reason: Option<String>,
    /// The agent running for this task and for how long.
    pub(crate) agent: Option<(String, String)>,
}

/// A task's CI as orch knows it from its stage and its fix rounds (orch keeps no CI
/// state of its own: a status decides a gate, and the gate moves the task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ci {
    /// No pull request yet.
    None,
    /// Development with a pull request: the gate waits on CI.
    Waiting,
    /// CI failed at the current head (a fix round was started for it).
    Failed,
    /// The development gate passed (the task is in review or done).
    Passed,
}

impl Ci {
    pub(crate) fn of(task: &Task) -> Ci {
        if task.pr.is_none() {
            return Ci::None;
        }
        match task.stage {
            Stage::Analysis | Stage::Cancelled => Ci::None,
            Stage::Development => {
                if task.head_sha.is_some() && task.last_fix_sha == task.head_sha {
                    Ci::Failed
                } else {
                    Ci::Waiting
                }
            }
            Stage::Review | Stage::Done => Ci::Passed,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ci::None => "none",
            Ci::Waiting => "pending",
            Ci::Failed => "failed",
            Ci::Passed => "passed",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Ci::None => "no CI yet",
            Ci::Waiting => "CI pending",
            Ci::Failed => "CI failed",
            Ci::Passed => "CI passed",
        }
    }
}

/// The login page.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    /// Why the last attempt failed, or why logging in cannot work.
    pub(crate) message: Option<String>,
    /// No admin token is configured: the form cannot succeed.
    pub(crate) disabled: bool,
}

/// The task page.
#[derive(Template)]
#[template(path = "task.html")]
pub(crate) struct TaskPage {
    pub(crate) card: Card,
    pub(crate) description: String,
    pub(crate) repo: String,
    pub(crate) branch: String,
    pub(crate) head_sha: Option<String>,
    /// What the last command did (after Retry or Cancel).
    pub(crate) said: Option<String>,
    pub(crate) timeline: Vec<TimelineEntry>,
    pub(crate) runs: Vec<AgentRun>,
}

/// One line of the task's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimelineEntry {
    pub(crate) at: String,
    pub(crate) stage: &'static str,
    pub(crate) status: String,
    pub(crate) message: String,
}

/// One agent job of the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentRun {
    pub(crate) job: i64,
    pub(crate) agent: &'static str,
    pub(crate) outcome: &'static str,
    pub(crate) attempts: u32,
    pub(crate) started: String,
    pub(crate) duration: String,
    pub(crate) error: Option<String>,
    /// The end of its log, if there is one.
    pub(crate) log_tail: Option<String>,
}

/// The live part of the board, rendered.
pub(crate) async fn live_fragment(state: &AppState) -> Result<String, StoreError> {
    let live = live_part(state).await?;
    Ok(live
        .render()
        .expect("the board's templates render any value"))
}

/// The banner and the columns from the store.
pub(crate) async fn live_part(state: &AppState) -> Result<LivePart, StoreError> {
    let tasks = state.store.list_tasks(BOARD_TASK_LIMIT).await?;
    let snapshot = state.store.queue_snapshot().await?;
    Ok(build_live(
        &tasks,
        &snapshot,
        &state.board,
        state.clock.now(),
    ))
}

/// Sorts tasks into columns (newest first in each; the finished column keeps the most
/// recently updated) and says which outside services are degraded.
pub(crate) fn build_live(
    tasks: &[Task],
    snapshot: &QueueSnapshot,
    board: &BoardSettings,
    now: Timestamp,
) -> LivePart {
    let running: HashMap<i64, (JobKind, Timestamp)> = snapshot
        .running
        .iter()
        .map(|job| (job.task.0, (job.kind, job.started_at)))
        .collect();
    let card_of = |task: &Task| card(task, running.get(&task.id.0).copied(), board, now);
    let in_stage = |stage: Stage| -> Vec<Card> {
        tasks
            .iter()
            .filter(|task| task.stage == stage)
            .map(card_of)
            .collect()
    };
    let mut finished: Vec<&Task> = tasks
        .iter()
        .filter(|task| task.stage.is_terminal())
        .collect();
    finished.sort_by_key(|task| std::cmp::Reverse(task.updated_at));
    let finished = finished
        .into_iter()
        .take(RECENT_FINISHED)
        .map(card_of)
        .collect();
    let degraded = snapshot
        .waiting
        .iter()
        .filter(|wait| now.since(wait.since) >= DEGRADED_AFTER)
        .map(|wait| {
            let mut text = format!(
                "{} is failing: {} job(s) waiting for {}",
                wait.service,
                wait.jobs,
                duration_text(now.since(wait.since))
            );
            if let Some(error) = &wait.last_error {
                let _ = write!(text, " (last error: {error})");
            }
            text
        })
        .collect();
    LivePart {
        degraded,
        columns: vec![
            column("analysis", "Analysis", in_stage(Stage::Analysis)),
            column("development", "Development", in_stage(Stage::Development)),
            column("review", "Review", in_stage(Stage::Review)),
            column("finished", "Done / cancelled", finished),
        ],
    }
}

fn column(key: &'static str, title: &'static str, cards: Vec<Card>) -> Column {
    Column { key, title, cards }
}

/// One task's card; `running` is its running job's kind and start.
pub(crate) fn card(
    task: &Task,
    running: Option<(JobKind, Timestamp)>,
    board: &BoardSettings,
    now: Timestamp,
) -> Card {
    let (status, status_label, blocked_reason) = match (&task.status, task.stage) {
        (_, Stage::Done) => ("done", "merged".to_owned(), None),
        (_, Stage::Cancelled) => ("cancelled", "cancelled".to_owned(), None),
        (TaskStatus::Working, _) => ("working", "working".to_owned(), None),
        (TaskStatus::AwaitingVerdict, _) => {
            ("awaiting_verdict", "awaiting verdict".to_owned(), None)
        }
        (TaskStatus::Blocked { reason }, _) => {
            ("blocked", "blocked".to_owned(), Some(reason.clone()))
        }
    };
    let agent = running.map(|(kind, started_at)| {
        (
            kind.as_str().to_owned(),
            duration_text(now.since(started_at)),
        )
    });
    let plane_url = board
        .links
        .as_ref()
        .map(|links| links.work_item(&task.project, &task.issue));
    let pr_url = board
        .links
        .as_ref()
        .zip(task.pr)
        .map(|(links, number)| links.pull_request(&task.repo, number));
    let pr = task.pr.map(|pr| pr.get());
    Card {
        id: task.id.0,
        work_item: task.work_item.to_string(),
        title: task.title.clone(),
        stage: task.stage.as_str(),
        plane_url,
        pr,
        pr_url,
        ci: Ci::of(task),
        fix_rounds: task.fix_rounds,
        review_rounds: task.review_rounds,
        status,
        status_label,
        blocked_reason,
        agent,
    }
}

/// The task page's content; `said` is what the last command did.
pub(crate) async fn task_page(
    state: &AppState,
    task: &Task,
    said: Option<String>,
) -> Result<TaskPage, StoreError> {
    let history = state.store.history(task.id).await?;
    let jobs = state.store.jobs_of_task(task.id).await?;
    let snapshot = state.store.queue_snapshot().await?;
    let now = state.clock.now();
    let running = snapshot
        .running
        .iter()
        .find(|job| job.task == task.id)
        .map(|job| (job.kind, job.started_at));
    let mut runs = Vec::new();
    for job in jobs.iter().filter(|job| job.kind().is_agent()) {
        let log_tail = match &state.board.logs_dir {
            Some(dir) => read_log_tail(dir, task, job).await,
            None => None,
        };
        runs.push(agent_run(job, now, log_tail));
    }
    Ok(TaskPage {
        card: card(task, running, &state.board, now),
        description: task.description.clone(),
        repo: task.repo.to_string(),
        branch: task.branch.as_str().to_owned(),
        head_sha: task.head_sha.as_ref().map(|sha| sha.as_str().to_owned()),
        said,
        timeline: history.iter().map(timeline_entry).collect(),
        runs,
    })
}

pub(crate) fn timeline_entry(entry: &HistoryEntry) -> TimelineEntry {
    TimelineEntry {
        at: clock_text(entry.at),
        stage: entry.stage.as_str(),
        status: entry.status.clone(),
        message: entry.message.clone(),
    }
}

/// An agent job as the task page shows it; a job still active has run until `now`.
pub(crate) fn agent_run(job: &Job, now: Timestamp, log_tail: Option<String>) -> AgentRun {
    let ended = if job.status.is_active() {
        now
    } else {
        job.updated_at
    };
    AgentRun {
        job: job.id.0,
        agent: job.kind().as_str(),
        outcome: match job.status {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Running => "running",
            JobStatus::Queued => "queued",
        },
        attempts: job.attempts,
        started: clock_text(job.created_at),
        duration: duration_text(ended.since(job.created_at)),
        error: job.last_error.clone(),
        log_tail,
    }
}

/// The last `LOG_TAIL_BYTES` of the job's log (from a whole line on), if it can be read.
async fn read_log_tail(dir: &Path, task: &Task, job: &Job) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let path = dir.join(task.work_item.to_string()).join(format!(
        "{}-{}.log",
        job.id,
        job.kind().as_str()
    ));
    let mut file = tokio::fs::File::open(&path).await.ok()?;
    let length = file.metadata().await.ok()?.len();
    let start = length.saturating_sub(LOG_TAIL_BYTES);
    file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await.ok()?;
    Some(tail_text(&bytes, start > 0))
}

/// Log bytes as text; `cut` says the first line is partial and is dropped.
pub(crate) fn tail_text(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = match (cut, text.find('\n')) {
        (true, Some(newline)) => &text[newline + 1..],
        _ => &text[..],
    };
    text.to_owned()
}

/// `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub(crate) fn duration_text(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// `2026-05-19 10:15:30 UTC`.
fn clock_text(at: Timestamp) -> String {
    let text = at.to_rfc3339();
    format!("{} {} UTC", &text[..10], &text[11..19])
}
