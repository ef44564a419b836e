//! The `Orchestrator`: every handler of the serial event loop (SPEC §2).
//!
//! A handler reads what it needs, decides, and writes one `Transition` (a compare-and-swap on
//! the task's version carrying the jobs it causes). A handler that finds nothing to do does
//! nothing, which makes every event safe to replay. What a stage runs, what its agent must
//! leave, and what passing or rejecting its gate does come from `STAGE_TRANSITIONS`.
//!
//! The handlers are filed by where their events come from:
//! - `plane`: an item moved (`status_start`, verdicts, a person cancelling or ending a task);
//! - `gitea`: CI statuses and the sha-to-task resolution F-3, pushes, closed pull requests,
//!   and the forge's facts the reconciler reads (`forge_facts`, the one place their rules
//!   are written);
//! - `jobs`: a job ended (`job_finished`), or jobs wait on a service that is out;
//! - `admin`: `orch task retry` and `orch task cancel`.
//!
//! `plan` holds `Plan`, the transition a handler decides; this file keeps the dispatch
//! (`handle`), `finish` (shared by every way a task ends merged) and `apply`, which writes a
//! plan.

use async_trait::async_trait;
use tracing::{debug, info};

use crate::config::PipelineConfig;
use crate::domain::{Action, Stage, StateRole, Task};
use crate::event::{Event, Origin};
use crate::ids::{TaskId, UserId, WorkItemId};
use crate::ports::{ForgeError, Ports, StoreError, TrackerError, Transition};
use crate::time::Timestamp;

use plan::Plan;

mod admin;
mod gitea;
mod jobs;
mod plan;
mod plane;

/// Why an event could not be handled; the event is kept and handled again later.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
    /// The event came before orch can act on it (a verdict before orch's move that opens
    /// the gate in Plane has been recorded): it is kept and handled again shortly.
    #[error("too early: {0}")]
    TooEarly(String),
    /// Handling took longer than the caller allows (the daemon's deadline per event): what it
    /// had committed stays, and the event is handled again later.
    #[error("handling took longer than {} s", .0.as_secs())]
    DeadlineExceeded(std::time::Duration),
    /// The daemon's event loop has stopped: nothing submitted to it is handled any more.
    #[error("the event loop has stopped")]
    LoopStopped,
}

impl HandleError {
    /// The store or an outside service is out (or refuses orch's credential): handling the
    /// event again later is all there is to do, however long it takes.
    pub fn is_outage(&self) -> bool {
        match self {
            HandleError::Store(StoreError::Unavailable(_))
            | HandleError::DeadlineExceeded(_)
            | HandleError::LoopStopped => true,
            HandleError::Store(_) | HandleError::TooEarly(_) => false,
            HandleError::Tracker(err) => err.class().is_outage(),
            HandleError::Forge(err) => err.class().is_outage(),
        }
    }
}

/// What handling an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub task: Option<TaskId>,
    pub work_item: Option<WorkItemId>,
    /// The task's stage afterwards.
    pub stage: Option<Stage>,
    /// Whether a task was created or transitioned.
    pub changed: bool,
    pub note: String,
}

impl Handled {
    fn nothing(note: impl Into<String>) -> Handled {
        Handled {
            task: None,
            work_item: None,
            stage: None,
            changed: false,
            note: note.into(),
        }
    }

    fn unchanged(task: &Task, note: impl Into<String>) -> Handled {
        Handled {
            task: Some(task.id),
            work_item: Some(task.work_item.clone()),
            stage: Some(task.stage),
            changed: false,
            note: note.into(),
        }
    }

    fn changed(task: &Task, note: impl Into<String>) -> Handled {
        Handled {
            task: Some(task.id),
            work_item: Some(task.work_item.clone()),
            stage: Some(task.stage),
            changed: true,
            note: note.into(),
        }
    }
}

/// Where events go: the orchestrator itself, or a daemon's channel into its serial loop.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError>;
}

/// The handlers of SPEC §2 over the ports.
pub struct Orchestrator {
    ports: Ports,
    config: PipelineConfig,
    own_user: Option<UserId>,
}

/// How often a handler re-reads and retries after losing a compare-and-swap.
const CAS_ATTEMPTS: u32 = 3;

/// Who cancels a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Canceller {
    /// `orch task cancel`: orch moves the item to Cancelled too.
    Admin,
    /// A person moved the item to Cancelled: it is there already.
    Person,
}

impl Orchestrator {
    pub fn new(ports: Ports, config: PipelineConfig) -> Orchestrator {
        Orchestrator {
            ports,
            config,
            own_user: None,
        }
    }

    /// orch's own Plane user: state changes it made are ignored.
    pub fn with_own_user(mut self, user: UserId) -> Orchestrator {
        self.own_user = Some(user);
        self
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Handles one event. Retries by itself when it loses a compare-and-swap.
    pub async fn handle(&self, event: &Event, origin: Origin) -> Result<Handled, HandleError> {
        let mut attempt = 1;
        loop {
            match self.handle_once(event, origin).await {
                Err(HandleError::Store(StoreError::Conflict(reason))) if attempt < CAS_ATTEMPTS => {
                    debug!(attempt, reason = %reason, "lost a compare-and-swap, handling again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn handle_once(&self, event: &Event, origin: Origin) -> Result<Handled, HandleError> {
        match event {
            Event::WorkItemMoved { item, actor } => {
                self.work_item_moved(item, actor.as_ref(), origin).await
            }
            Event::CommentAdded { .. } => {
                Ok(Handled::nothing("comments are read when a verdict arrives"))
            }
            Event::CiStatusReported { repo, sha, state } => {
                self.ci_status(repo, sha, *state, origin).await
            }
            Event::BranchPushed {
                repo,
                branch,
                head_sha,
            } => self.branch_pushed(repo, branch, head_sha, origin).await,
            Event::PullRequestClosed {
                repo,
                number,
                merged,
            } => match self.ports.store.task_by_pr(repo, *number).await? {
                Some(task) => self.pr_closed(&task, *number, *merged, origin).await,
                None => Ok(Handled::nothing("pull request of no task")),
            },
            Event::JobFinished { job } => self.job_finished(*job).await,
            Event::ForgeObserved {
                task,
                head_sha,
                report,
            } => {
                self.forge_observed(*task, head_sha.as_ref(), report, origin)
                    .await
            }
            Event::ServiceDegraded {
                service,
                since,
                task,
                jobs,
                error,
            } => {
                self.service_degraded(*service, *since, *task, *jobs, error.as_deref())
                    .await
            }
            Event::RetryRequested { task } => self.retry(*task).await,
            Event::CancelRequested { task } => match self.ports.store.task(*task).await? {
                Some(task) => self.cancel(&task, origin, Canceller::Admin, None).await,
                None => Ok(Handled::nothing("no such task")),
            },
        }
    }

    /// Merged: the task is done, its item moves to Done, its worktree goes.
    fn finish(&self, task: &Task, note: &str) -> Plan {
        let mut plan = Plan::new(task, note);
        plan.end_done();
        plan.tracker_state(StateRole::Done);
        let pr = task.pr.map(|pr| format!(" ({pr})")).unwrap_or_default();
        plan.notify(format!("{} is merged{pr}: {}", task.work_item, task.title));
        plan
    }

    async fn apply(&self, mut plan: Plan, origin: Origin) -> Result<Handled, HandleError> {
        if let Origin::Reconciler(via) = origin {
            let text = format!(
                "reconcile unblocked {} ({} → {}, via {})",
                plan.next.work_item,
                plan.next.stage,
                plan.note,
                via.as_str()
            );
            plan.job(
                Action::Notify { text },
                &format!("reconcile-{}", via.as_str()),
            );
        }
        let now = self.ports.clock.now();
        if plan.next.status.is_blocked() && !plan.was_blocked {
            // A block is a gate a person answers: what orch knows of the item now bounds the
            // verdicts that apply and the comments that are feedback (Plane's clock).
            let seen = plan.next.tracker_seen_at.unwrap_or(Timestamp::EPOCH);
            plan.next.gate_opened_at = Some(now);
            plan.next.verdicts_after = Some(seen);
            plan.next.feedback_after = Some(seen);
        }
        let note = plan.note.clone();
        let transition = Transition {
            next: plan.next,
            jobs: plan.jobs,
            cancel_active_work: plan.cancel_active_work,
            consumes_job: plan.consumes_job,
            note: plan.note,
            now,
        };
        let task = self.ports.store.transition(transition).await?;
        info!(task = %task.work_item, stage = %task.stage, status = %task.status, note = %note, "task transition");
        if let Origin::Reconciler(via) = origin {
            info!(task = %task.work_item, stage = %task.stage, via = via.as_str(), "reconcile unblocked");
        }
        Ok(Handled::changed(&task, note))
    }
}

#[async_trait]
impl EventSink for Orchestrator {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        self.handle(&event, origin).await
    }
}

#[cfg(test)]
mod tests;
