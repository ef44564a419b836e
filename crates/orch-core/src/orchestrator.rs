//! The `Orchestrator`: every handler of the serial event loop (SPEC §2).
//!
//! A handler reads what it needs, decides, and writes one `Transition` (a compare-and-swap on
//! the task's version carrying the jobs it causes). A handler that finds nothing to do does
//! nothing, which makes every event safe to replay. What a stage runs, what its agent must
//! leave, and what passing or rejecting its gate does come from `STAGE_TRANSITIONS`.

use async_trait::async_trait;
use tracing::{debug, info};

use crate::config::{PipelineConfig, ProjectConfig};
use crate::domain::{
    Action, Agent, CiState, Job, JobKind, JobOutput, JobSpec, JobStatus, MergeOutcome, NewTask,
    ReviewVerdict, Service, Stage, StateRole, Task, TaskStatus, Verdict,
};
use crate::event::{Event, Origin};
use crate::ids::{BranchName, CommitSha, JobId, PrNumber, RepoSlug, TaskId, UserId, WorkItemId};
use crate::pipeline::{
    check_artifact, evaluate_exit_gate, transition_of, ExitGate, GateReport, OnPass, QgCheck,
};
use crate::ports::{ForgeError, Ports, PrState, StoreError, TrackerError, Transition, WorkItem};
use crate::time::Timestamp;

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
}

impl HandleError {
    /// The store or an outside service is out (or refuses orch's credential): handling the
    /// event again later is all there is to do, however long it takes.
    pub fn is_outage(&self) -> bool {
        match self {
            HandleError::Store(StoreError::Unavailable(_)) => true,
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

/// A decided transition, before the store sees it.
struct Plan {
    next: Task,
    /// Whether the task was blocked before this transition (a new block stamps its time).
    was_blocked: bool,
    jobs: Vec<JobSpec>,
    cancel_active_work: bool,
    consumes_job: Option<JobId>,
    note: String,
}

impl Plan {
    fn new(task: &Task, note: impl Into<String>) -> Plan {
        Plan {
            next: task.clone(),
            was_blocked: task.status.is_blocked(),
            jobs: Vec::new(),
            cancel_active_work: false,
            consumes_job: None,
            note: note.into(),
        }
    }

    /// A job whose key is unique to this transition of this task.
    fn job(&mut self, action: Action, what: &str) {
        let key = format!(
            "{}:{}:{what}:v{}",
            self.next.id,
            action.kind(),
            self.next.version
        );
        self.jobs.push(JobSpec::new(action, key));
    }

    fn agent(&mut self, agent: Agent, feedback: Option<String>) {
        self.jobs.push(JobSpec::agent(agent, feedback));
    }

    fn notify(&mut self, text: String) {
        self.job(Action::Notify { text }, "notify");
    }

    fn tracker_state(&mut self, state: StateRole) {
        self.job(
            Action::TrackerState {
                state,
                gate_comment: None,
            },
            "state",
        );
    }

    /// The item's state as a person left it, now known to orch (Plane's clock).
    fn saw_item(&mut self, item: &WorkItem) {
        self.next.tracker_state = Some(item.state.clone());
        self.next.tracker_seen_at = Some(item.updated_at);
    }

    /// Leaves the current gate: the task works again.
    fn close_gate(&mut self) {
        self.next.status = TaskStatus::Working;
        self.next.gate_opened_at = None;
        self.next.verdicts_after = None;
        self.next.feedback_after = None;
    }

    /// Enters `stage` and runs its agent (`STAGE_TRANSITIONS`).
    fn enter(&mut self, stage: Stage) {
        self.next.stage = stage;
        self.close_gate();
        if stage == Stage::Development {
            self.next.fix_rounds = 0;
            self.next.last_fix_sha = None;
        }
        if let Some(agent) = transition_of(stage).agent {
            self.agent(agent, None);
        }
    }

    /// Back to development for another developer run: the current head was judged and sent
    /// back, so it can no longer pass the gate, and fix rounds start over.
    fn send_back_to_development(&mut self) {
        self.next.stage = Stage::Development;
        self.close_gate();
        self.next.fix_rounds = 0;
        self.next.last_fix_sha = None;
        self.next.sent_back_sha = self.next.head_sha.clone();
    }

    /// Opens the stage's human gate. With an awaiting state, verdicts count once orch's
    /// move there has landed (its job end records Plane's time); without one, from what
    /// orch knows now.
    fn open_gate(&mut self, awaiting_configured: bool, gate_comment: String, now: Timestamp) {
        self.next.status = TaskStatus::AwaitingVerdict;
        self.next.gate_opened_at = Some(now);
        self.next.feedback_after = self.next.tracker_seen_at;
        self.next.verdicts_after = if awaiting_configured {
            None
        } else {
            Some(self.next.tracker_seen_at.unwrap_or(Timestamp::EPOCH))
        };
        if awaiting_configured {
            self.job(
                Action::TrackerState {
                    state: StateRole::Awaiting,
                    gate_comment: Some(gate_comment),
                },
                "state",
            );
        }
    }

    /// Blocks the task and tells people, once (the key is unique to this transition).
    fn block(&mut self, reason: String) {
        self.notify(format!("{} is blocked: {reason}", self.next.work_item));
        self.next.status = TaskStatus::Blocked { reason };
    }

    /// Ends the task in `done`: its running and queued work stops, its worktree goes.
    fn end_done(&mut self) {
        self.next.stage = Stage::Done;
        self.close_gate();
        self.cancel_active_work = true;
        self.job(Action::Cleanup, "cleanup");
    }
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

    // --- Plane ---

    async fn work_item_moved(
        &self,
        item: &WorkItem,
        actor: Option<&UserId>,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        if actor.is_some() && actor == self.own_user.as_ref() {
            return Ok(Handled::nothing("orch's own change"));
        }
        let Some(project) = self.config.project(&item.project) else {
            return Ok(Handled::nothing(format!(
                "project {} is not configured",
                item.project
            )));
        };
        let states = self
            .ports
            .tracker
            .project_states(&project.plane_project_id, &project.states)
            .await?;
        let role = states.role_of(&item.state);
        let Some(task) = self.ports.store.task_by_issue(&item.id).await? else {
            return match role {
                Some(StateRole::InProgress) => self.status_start(project, item, origin).await,
                Some(StateRole::Cancelled) => Ok(Handled::nothing("cancelled item has no task")),
                _ => Ok(Handled::nothing("state is not a trigger")),
            };
        };
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(&task, "task has ended"));
        }
        // Orch's clock is never compared with Plane's; Plane's times are read to the
        // millisecond, so a move in the same millisecond as the one orch knows is newer only
        // if it is to another state.
        let older = task.tracker_seen_at.is_some_and(|seen| {
            item.updated_at < seen
                || item.updated_at == seen && task.tracker_state.as_ref() == Some(&item.state)
        });
        if older {
            // A duplicate, or a delivery that arrives after a newer one was handled.
            return Ok(Handled::unchanged(
                &task,
                "not newer than what orch knows of the item",
            ));
        }
        match role {
            Some(StateRole::InProgress) if task.tracker_state.as_ref() == Some(&item.state) => {
                Ok(Handled::unchanged(&task, "task exists"))
            }
            Some(StateRole::InProgress) => {
                // A person moved the item (back) to In Progress: orch's next moves start
                // from there.
                let mut plan = Plan::new(&task, "the item is in progress");
                plan.saw_item(item);
                self.apply(plan, origin).await
            }
            Some(StateRole::Approved) => self.verdict(&task, item, Verdict::Approved, origin).await,
            Some(StateRole::Rejected) => self.verdict(&task, item, Verdict::Rejected, origin).await,
            Some(StateRole::Cancelled) => {
                self.cancel(&task, origin, Canceller::Person, Some(item))
                    .await
            }
            Some(StateRole::Done) => self.done_by_person(&task, item, origin).await,
            Some(StateRole::Awaiting) | None => {
                Ok(Handled::unchanged(&task, "state is not a trigger"))
            }
        }
    }

    /// `status_start`: the item entered *in_progress*.
    async fn status_start(
        &self,
        project: &ProjectConfig,
        item: &WorkItem,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let work_item = match WorkItemId::new(&project.work_item_prefix, item.sequence_id) {
            Ok(work_item) => work_item,
            Err(err) => {
                return Ok(Handled::nothing(format!(
                    "cannot name the work item: {err}"
                )))
            }
        };
        let branch = BranchName::for_work_item(&work_item, &item.title);
        let new = NewTask {
            issue: item.id.clone(),
            project: project.plane_project_id.clone(),
            work_item: work_item.clone(),
            title: item.title.clone(),
            description: item.description.clone(),
            repo: project.repo.clone(),
            base_branch: project.base_branch.clone(),
            branch,
            stage: Stage::Analysis,
            tracker_state: Some(item.state.clone()),
            tracker_seen_at: Some(item.updated_at),
        };
        let mut jobs = Vec::new();
        if let Some(agent) = transition_of(Stage::Analysis).agent {
            jobs.push(JobSpec::agent(agent, None));
        }
        if let Origin::Reconciler(via) = origin {
            // F-4: an item the reconciler picked up is told about like any other unblock, in
            // the same transaction as the task itself.
            jobs.push(JobSpec::new(
                Action::Notify {
                    text: format!(
                        "reconcile unblocked {work_item} (analysis → picked up by the reconciler, via {})",
                        via.as_str()
                    ),
                },
                format!("{}:{work_item}:notify:reconcile-start", project.plane_project_id),
            ));
        }
        let now = self.ports.clock.now();
        let created = self.ports.store.create_task(new, jobs, now).await?;
        if !created.created {
            return Ok(Handled::unchanged(&created.task, "task exists"));
        }
        info!(task = %created.task.work_item, branch = %created.task.branch, "task created");
        if let Origin::Reconciler(via) = origin {
            info!(task = %created.task.work_item, stage = %created.task.stage, via = via.as_str(), "reconcile unblocked");
        }
        Ok(Handled::changed(&created.task, "task created"))
    }

    /// `verdict`: the item entered *approved* or *rejected*.
    async fn verdict(
        &self,
        task: &Task,
        item: &WorkItem,
        verdict: Verdict,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(task, "a job is active"));
        }
        let human_gated = transition_of(task.stage).exit_gate == ExitGate::Human;
        // A person unblocks with Rejected (or Cancelled), never with Approved.
        let applies = match (&task.status, verdict) {
            (TaskStatus::AwaitingVerdict, _) => human_gated,
            (TaskStatus::Blocked { .. }, Verdict::Rejected) => true,
            (TaskStatus::Blocked { .. }, Verdict::Approved) | (TaskStatus::Working, _) => false,
        };
        if !applies {
            return Ok(Handled::unchanged(task, "no open gate for this verdict"));
        }

        // Plane's time against Plane's time: a verdict counts only if Plane recorded it after
        // the gate opened in Plane.
        match self.verdicts_after(task).await? {
            None => {
                return Err(HandleError::TooEarly(format!(
                    "the gate of {} is not open in Plane yet",
                    task.work_item
                )))
            }
            Some(after) if item.updated_at < after => {
                return Ok(Handled::unchanged(
                    task,
                    "the verdict is older than the open gate",
                ))
            }
            Some(_) => {}
        }
        // A verdict decides for good (a merge cannot be undone): act on the item as it is now,
        // not as a delivery that may have been late says it was.
        let current = self
            .ports
            .tracker
            .work_item(&task.project, &item.id)
            .await?;
        if current.state != item.state && current.updated_at > item.updated_at {
            return Box::pin(self.work_item_moved(&current, None, origin)).await;
        }
        let mut plan = match verdict {
            Verdict::Approved => self.approve(task),
            Verdict::Rejected => {
                let feedback = self.human_feedback(task).await?;
                self.reject(task, feedback)
            }
        };
        plan.saw_item(item);
        plan.tracker_state(StateRole::InProgress);
        self.apply(plan, origin).await
    }

    /// Plane's time after which verdicts answer `task`'s open gate: recorded on the task, or
    /// read from orch's move to the awaiting state when that move has landed but its end is
    /// not handled yet (the person may be quicker than the event loop).
    async fn verdicts_after(&self, task: &Task) -> Result<Option<Timestamp>, HandleError> {
        if task.verdicts_after.is_some() || task.status != TaskStatus::AwaitingVerdict {
            return Ok(task.verdicts_after);
        }
        let opened = task.gate_opened_at.unwrap_or(task.updated_at);
        let jobs = self.ports.store.jobs_of_task(task.id).await?;
        Ok(jobs
            .iter()
            .rev()
            .filter(|job| {
                matches!(
                    job.action,
                    Action::TrackerState {
                        state: StateRole::Awaiting,
                        ..
                    }
                ) && job.status == JobStatus::Succeeded
                    && job.created_at >= opened
            })
            .find_map(|job| job.output.as_ref()?.tracker_at))
    }

    /// Approved: what passing the stage's gate does (`OnPass`).
    fn approve(&self, task: &Task) -> Plan {
        let mut plan = Plan::new(task, "approved");
        match transition_of(task.stage).on_pass {
            OnPass::Enter(next) => {
                plan.note = format!("approved; {next}");
                plan.enter(next);
            }
            OnPass::MergeThen(_) => {
                plan.close_gate();
                match (task.pr, task.head_sha.clone()) {
                    (Some(_), Some(head_sha)) => {
                        plan.note = format!("approved; merging at {}", head_sha.short());
                        plan.job(Action::Merge { head_sha }, "merge");
                    }
                    _ => plan.block("approved, but there is no pull request to merge".to_owned()),
                }
            }
            OnPass::Nothing => plan.note = "approved; nothing follows".to_owned(),
        }
        plan
    }

    /// Rejected: the stage's `on_reject` runs again with the feedback; a blocked task runs
    /// its own stage's agent again (a person unblocks it).
    fn reject(&self, task: &Task, feedback: String) -> Plan {
        let target = if task.status.is_blocked() {
            task.stage
        } else {
            transition_of(task.stage).on_reject.unwrap_or(task.stage)
        };
        let Some(agent) = transition_of(target).agent else {
            return Plan::new(task, "rejected; no agent to run");
        };
        let mut plan = Plan::new(task, format!("rejected; {agent} runs again with feedback"));
        if target == Stage::Development {
            plan.send_back_to_development();
        } else {
            plan.next.stage = target;
            plan.close_gate();
        }
        plan.agent(agent, Some(feedback));
        plan
    }

    /// The comments people (not orch) wrote since the gate opened (Plane's clock), oldest
    /// first.
    async fn human_feedback(&self, task: &Task) -> Result<String, HandleError> {
        let comments = self
            .ports
            .tracker
            .comments(&task.project, &task.issue)
            .await?;
        let since = task.feedback_after.unwrap_or(Timestamp::EPOCH);
        let mut texts: Vec<(Timestamp, String)> = comments
            .into_iter()
            .filter(|comment| comment.created_at >= since)
            .filter(|comment| comment.external_source.as_deref() != Some("orch"))
            .map(|comment| (comment.created_at, comment.text))
            .collect();
        texts.sort_by_key(|(at, _)| *at);
        if texts.is_empty() {
            return Ok("Rejected without a comment.".to_owned());
        }
        Ok(texts
            .into_iter()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join("\n\n"))
    }

    /// A person moved the item to Done: the task ends. Merged already → done as merged;
    /// otherwise orch stops its work and leaves the pull request as it is.
    async fn done_by_person(
        &self,
        task: &Task,
        item: &WorkItem,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let merged = match task.pr {
            Some(pr) => self.ports.forge.pull_request(&task.repo, pr).await?.merged,
            None => false,
        };
        let mut plan = if merged {
            self.finish(task, "merged; the item was moved to Done")
        } else {
            let mut plan = Plan::new(task, "moved to Done by a person");
            plan.end_done();
            let pr = task
                .pr
                .map(|pr| format!("; pull request {pr} is left as it is"))
                .unwrap_or_default();
            plan.notify(format!(
                "{} was moved to Done in Plane; orch stopped working on it{pr}",
                task.work_item
            ));
            plan
        };
        plan.saw_item(item);
        // The item is in Done already.
        plan.jobs
            .retain(|job| !matches!(job.action, Action::TrackerState { .. }));
        self.apply(plan, origin).await
    }

    // --- Gitea ---

    /// `ci_status`: resolve the sha to a task (F-3), then act on the state.
    async fn ci_status(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
        state: CiState,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        if state == CiState::Pending {
            return Ok(Handled::nothing("CI pending"));
        }
        let Some((mut task, via_pull)) = self.resolve_sha(repo, sha).await? else {
            info!(repo = %repo, sha = %sha, "ci status for an unknown sha; F-1 will look again");
            return Ok(Handled::nothing("sha not resolved to a task"));
        };
        let moved_by_someone = via_pull
            && task.pr.is_some()
            && task.head_sha.is_some()
            && task.head_sha.as_ref() != Some(sha);
        if moved_by_someone && task.stage == Stage::Development {
            // The task's own PR has this head now: someone pushed and the push webhook was
            // lost. Follow the head first, then read the gate at it.
            let followed = self.branch_pushed(repo, &task.branch, sha, origin).await?;
            if !followed.changed {
                return Ok(followed);
            }
            task = match self.ports.store.task(task.id).await? {
                Some(task) => task,
                None => return Ok(followed),
            };
        }
        if task.head_sha.as_ref() != Some(sha) {
            let note = match &task.head_sha {
                None => "status before the push was recorded; the gate is read again when it is",
                Some(_) => "status of an older head",
            };
            return Ok(Handled::unchanged(&task, note));
        }
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        if !matches!(transition_of(task.stage).exit_gate, ExitGate::Automatic(_)) {
            return Ok(Handled::unchanged(&task, "no automatic gate in this stage"));
        }
        let report =
            evaluate_exit_gate(&task, self.ports.forge.as_ref(), self.config.require_ci).await?;
        self.forge_facts(&task, &report, origin).await
    }

    /// F-3: the task whose recorded head is `sha`; else the task of the open PR whose head is
    /// `sha` (then `true`: the PR says so); else the single development task of the repo
    /// waiting on CI.
    ///
    /// An organisation-wide webhook sends the status of every commit of every repository, so
    /// resolving costs no outside call unless a task of this repository waits on CI at
    /// another head: a repository orch does not serve costs nothing at all.
    async fn resolve_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<(Task, bool)>, HandleError> {
        if self.config.project_of_repo(repo).is_none() {
            return Ok(None);
        }
        if let Some(task) = self.ports.store.task_by_head_sha(repo, sha).await? {
            return Ok(Some((task, false)));
        }
        // Only a development task without pipeline work in flight waits on CI.
        let mut waiting = Vec::new();
        for task in self
            .ports
            .store
            .tasks_in_stage(repo, Stage::Development)
            .await?
        {
            if !self.ports.store.has_active_job(task.id).await? {
                waiting.push(task);
            }
        }
        if waiting.iter().any(|task| task.pr.is_some()) {
            // Someone may have pushed to a task's pull request with the push webhook lost.
            if let Some(pull) = self
                .ports
                .forge
                .open_pull_request_for_sha(repo, sha)
                .await?
            {
                if let Some(task) = waiting.iter().find(|task| task.pr == Some(pull.number)) {
                    return Ok(Some((task.clone(), true)));
                }
            }
        }
        waiting.retain(|task| task.status == TaskStatus::Working);
        if waiting.len() == 1 {
            return Ok(waiting.pop().map(|task| (task, false)));
        }
        if waiting.len() > 1 {
            info!(repo = %repo, sha = %sha, candidates = waiting.len(), "several tasks wait on CI; not guessing");
        }
        Ok(None)
    }

    /// The reconciler read the forge's facts of a task.
    async fn forge_observed(
        &self,
        task: TaskId,
        head_sha: Option<&CommitSha>,
        report: &GateReport,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let Some(task) = self.ports.store.task(task).await? else {
            return Ok(Handled::nothing("no such task"));
        };
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(&task, "task has ended"));
        }
        if task.head_sha.as_ref() != head_sha {
            return Ok(Handled::unchanged(&task, "facts of an earlier head"));
        }
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        self.forge_facts(&task, report, origin).await
    }

    /// What the forge's facts mean for a task, whichever way they came (a webhook, or the
    /// reconciler reading them): the one place these rules are written.
    async fn forge_facts(
        &self,
        task: &Task,
        report: &GateReport,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        if let Some(pull) = report
            .pull
            .as_ref()
            .filter(|pull| task.pr == Some(pull.number))
        {
            if pull.state == PrState::Closed {
                return self.pr_closed(task, pull.number, pull.merged, origin).await;
            }
            if task.stage == Stage::Development && task.head_sha.as_ref() != Some(&pull.head_sha) {
                // Someone pushed to the task's branch and the push webhook was lost.
                return self
                    .branch_pushed(&task.repo, &task.branch, &pull.head_sha, origin)
                    .await;
            }
        }
        match self.gate_plan(task, report) {
            Some(plan) => self.apply(plan, origin).await,
            None => Ok(Handled::unchanged(task, "gate not green")),
        }
    }

    /// What a report of a stage's automatic gate means; `None` means wait.
    fn gate_plan(&self, task: &Task, report: &GateReport) -> Option<Plan> {
        let row = transition_of(task.stage);
        if !matches!(row.exit_gate, ExitGate::Automatic(_)) || report.pull.is_none() {
            return None;
        }
        if report.green && !head_was_sent_back(task) {
            let OnPass::Enter(next) = row.on_pass else {
                return None;
            };
            let mut plan = Plan::new(task, format!("gate green; {next}"));
            plan.enter(next);
            return Some(plan);
        }
        if report.ci != Some(CiState::Failure) || task.status.is_blocked() {
            return None;
        }
        let head_sha = task.head_sha.clone()?;
        if task.last_fix_sha.as_ref() == Some(&head_sha) {
            return None;
        }
        let feedback = report
            .ci_feedback
            .clone()
            .unwrap_or_else(|| format!("CI failed at {head_sha}"));
        let mut plan = Plan::new(task, format!("CI failed at {}", head_sha.short()));
        plan.next.last_fix_sha = Some(head_sha);
        plan.next.fix_rounds += 1;
        if plan.next.fix_rounds > self.config.max_fix_rounds {
            plan.block(format!("CI failed {} times", plan.next.fix_rounds));
        } else if let Some(agent) = row.agent {
            plan.note = format!("CI failed; fix round {}", plan.next.fix_rounds);
            plan.agent(agent, Some(feedback));
        }
        Some(plan)
    }

    /// A push to a task branch by someone else: follow the head, so its CI statuses resolve.
    async fn branch_pushed(
        &self,
        repo: &RepoSlug,
        branch: &BranchName,
        head_sha: &CommitSha,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let tasks = self
            .ports
            .store
            .tasks_in_stage(repo, Stage::Development)
            .await?;
        let Some(task) = tasks.into_iter().find(|task| &task.branch == branch) else {
            return Ok(Handled::nothing(
                "push to a branch without a development task",
            ));
        };
        if task.head_sha.as_ref() == Some(head_sha) || task.pr.is_none() {
            return Ok(Handled::unchanged(&task, "head already known"));
        }
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        let mut plan = Plan::new(
            &task,
            format!("branch pushed; head is now {}", head_sha.short()),
        );
        plan.next.head_sha = Some(head_sha.clone());
        self.apply(plan, origin).await
    }

    /// `pr_closed`: merged → done; closed unmerged (not by orch) → blocked. Either way the
    /// task's running and queued work stops.
    async fn pr_closed(
        &self,
        task: &Task,
        number: PrNumber,
        merged: bool,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(task, "task has ended"));
        }
        if !merged && task.status.is_blocked() {
            return Ok(Handled::unchanged(task, "already blocked"));
        }
        let plan = if merged {
            self.finish(task, "pull request merged")
        } else {
            let mut plan = Plan::new(task, "pull request closed without merge");
            plan.cancel_active_work = true;
            plan.block(format!(
                "pull request {number} was closed without merge; reopen it in Gitea and reject to continue, or cancel the item"
            ));
            plan
        };
        self.apply(plan, origin).await
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

    // --- jobs ---

    /// `job_finished`: agent jobs get their artifact check; action jobs record results.
    async fn job_finished(&self, job_id: JobId) -> Result<Handled, HandleError> {
        let store = &self.ports.store;
        let Some(job) = store.job(job_id).await? else {
            return Ok(Handled::nothing("no such job"));
        };
        if job.handled || job.status.is_active() {
            return Ok(Handled::nothing("job already handled or still active"));
        }
        let task = store.task(job.task).await?;
        let plan = match &task {
            Some(task) if job.status != JobStatus::Cancelled => self.job_plan(task, &job).await?,
            _ => None,
        };
        match (plan, task) {
            (Some(mut plan), Some(_)) => {
                plan.consumes_job = Some(job.id);
                self.apply(plan, Origin::Worker).await
            }
            (_, task) => {
                store.mark_job_handled(job.id).await?;
                if job.status == JobStatus::Failed && job.kind() == JobKind::Notify {
                    tracing::error!(job = %job.id, error = job.last_error.as_deref().unwrap_or(""), "a notification could not be delivered");
                }
                Ok(match task {
                    Some(task) => Handled::unchanged(&task, "job end recorded"),
                    None => Handled::nothing("job end recorded"),
                })
            }
        }
    }

    /// The transition a job's end causes, if any.
    async fn job_plan(&self, task: &Task, job: &Job) -> Result<Option<Plan>, HandleError> {
        let empty = JobOutput::default();
        let output = job.output.as_ref().unwrap_or(&empty);
        let failed = job.status == JobStatus::Failed;
        let error = job
            .last_error
            .clone()
            .unwrap_or_else(|| "unknown error".to_owned());
        match job.kind() {
            JobKind::Agent(agent) => Ok(self.agent_ended(task, job, agent, output, &error)),
            JobKind::PublishBranch => self.publish_ended(task, output, failed, &error).await,
            JobKind::Merge => Ok(self.merge_ended(task, output, failed, &error)),
            JobKind::TrackerState => {
                Ok(self.tracker_state_ended(task, job, output, failed, &error))
            }
            JobKind::TrackerComment
            | JobKind::ForgeReview
            | JobKind::ClosePr
            | JobKind::Cleanup => {
                if !failed {
                    return Ok(None);
                }
                // Outward actions never give up silently.
                let what = match job.kind() {
                    JobKind::TrackerComment => "post a comment in Plane",
                    JobKind::ForgeReview => "post the review on the pull request",
                    JobKind::ClosePr => "close the pull request",
                    _ => "remove the worktree",
                };
                let mut plan = Plan::new(task, format!("could not {what}"));
                plan.notify(format!(
                    "{}: orch could not {what}, and gave up: {error}",
                    task.work_item
                ));
                Ok(Some(plan))
            }
            JobKind::Notify => Ok(None),
        }
    }

    fn agent_ended(
        &self,
        task: &Task,
        job: &Job,
        agent: Agent,
        output: &JobOutput,
        error: &str,
    ) -> Option<Plan> {
        let row = transition_of(task.stage);
        if task.stage.is_terminal()
            || row.agent != Some(agent)
            || task.status != TaskStatus::Working
            || job.stage != task.stage
        {
            return None;
        }
        let mut plan = Plan::new(task, format!("{agent} finished"));
        if job.status == JobStatus::Failed {
            plan.block(format!(
                "{agent} failed after {} attempts: {error}",
                job.attempts
            ));
            return Some(plan);
        }
        if let Some(check) = row.artifact {
            if check_artifact(check, output).is_some() {
                plan.block(missing_artifact(check).to_owned());
                return Some(plan);
            }
        }
        match agent {
            Agent::Analyst => self.after_analyst(&mut plan, output),
            Agent::Developer => after_developer(&mut plan, output),
            Agent::Reviewer => self.after_reviewer(&mut plan, output, job),
        }
        Some(plan)
    }

    async fn publish_ended(
        &self,
        task: &Task,
        output: &JobOutput,
        failed: bool,
        error: &str,
    ) -> Result<Option<Plan>, HandleError> {
        if task.stage == Stage::Cancelled {
            // A publish that was in flight when the task was cancelled: its pull request, if
            // it opened one, is closed too.
            return Ok(match output.pr.filter(|pr| task.pr != Some(*pr)) {
                Some(pr) => {
                    let mut plan =
                        Plan::new(task, "closing the pull request opened while cancelling");
                    plan.next.pr = Some(pr);
                    plan.jobs.push(JobSpec::new(
                        Action::ClosePr {
                            comment: format!(
                                "{} was cancelled; orch closes this pull request.",
                                task.work_item
                            ),
                        },
                        format!("{}:close_pr:{pr}", task.id),
                    ));
                    Some(plan)
                }
                None => None,
            });
        }
        if task.stage != Stage::Development {
            return Ok(None);
        }
        let mut plan = Plan::new(task, "branch pushed, pull request open");
        if failed {
            plan.block(format!("could not push or open the pull request: {error}"));
            return Ok(Some(plan));
        }
        if output.merge.is_some() {
            return Ok(Some(self.finish(task, "pull request merged by a person")));
        }
        if output.pr_closed {
            if task.status.is_blocked() {
                return Ok(None);
            }
            let pr = task.pr.map(|pr| pr.to_string()).unwrap_or_default();
            plan.note = "the pull request is closed".to_owned();
            plan.block(format!(
                "pull request {pr} was closed without merge; reopen it in Gitea and reject to continue, or cancel the item"
            ));
            return Ok(Some(plan));
        }
        let (Some(head_sha), Some(pr)) = (output.head_sha.clone(), output.pr) else {
            plan.block("publishing reported no head sha or pull request".to_owned());
            return Ok(Some(plan));
        };
        plan.next.head_sha = Some(head_sha);
        plan.next.pr = Some(pr);
        plan.next.status = TaskStatus::Working;
        // CI may have finished before the push returned: read the gate now.
        match evaluate_exit_gate(
            &plan.next,
            self.ports.forge.as_ref(),
            self.config.require_ci,
        )
        .await
        {
            Ok(report) => {
                if let Some(mut gate) = self.gate_plan(&plan.next, &report) {
                    gate.note = format!("{}; {}", plan.note, gate.note);
                    return Ok(Some(gate));
                }
            }
            Err(err) => debug!(error = %err, "gate not readable after push; F-1 will read it"),
        }
        Ok(Some(plan))
    }

    fn merge_ended(
        &self,
        task: &Task,
        output: &JobOutput,
        failed: bool,
        error: &str,
    ) -> Option<Plan> {
        if task.stage.is_terminal() || task.stage != Stage::Review {
            return None;
        }
        if failed {
            let mut plan = Plan::new(task, "merge failed");
            plan.block(format!("merge failed: {error}"));
            return Some(plan);
        }
        Some(match output.merge.clone() {
            Some(MergeOutcome::Merged | MergeOutcome::AlreadyMerged) => self.finish(task, "merged"),
            Some(MergeOutcome::NeedsRebase { reason }) => {
                let mut plan = Plan::new(task, "merge needs a rebase; development");
                plan.send_back_to_development();
                plan.agent(
                    Agent::Developer,
                    Some(format!(
                        "The pull request cannot be merged ({reason}). Rebase onto {} and resolve the conflicts.",
                        task.base_branch
                    )),
                );
                plan
            }
            Some(MergeOutcome::TryLater { reason } | MergeOutcome::Refused { reason }) => {
                let mut plan = Plan::new(task, "merge refused");
                plan.block(format!("merge refused: {reason}"));
                plan
            }
            None => {
                let mut plan = Plan::new(task, "merge reported no outcome");
                plan.block("merge reported no outcome".to_owned());
                plan
            }
        })
    }

    /// A move of the item ended: what Plane confirmed becomes what orch knows; the move to
    /// the awaiting state opens the gate in Plane (verdicts count after its time).
    fn tracker_state_ended(
        &self,
        task: &Task,
        job: &Job,
        output: &JobOutput,
        failed: bool,
        error: &str,
    ) -> Option<Plan> {
        let Action::TrackerState { state: role, .. } = job.action else {
            return None;
        };
        let gate_waits = role == StateRole::Awaiting
            && task.status == TaskStatus::AwaitingVerdict
            && task.verdicts_after.is_none();
        if failed {
            let mut plan = Plan::new(task, "could not move the item in Plane");
            plan.notify(format!(
                "{}: orch could not move the item to {} in Plane, and gave up: {error}",
                task.work_item,
                role_name(role)
            ));
            if gate_waits {
                plan.next.verdicts_after = Some(task.tracker_seen_at.unwrap_or(Timestamp::EPOCH));
            }
            return Some(plan);
        }
        let mut plan = Plan::new(task, format!("item moved to {}", role_name(role)));
        let mut changed = false;
        if let (Some(state), Some(at)) = (&output.tracker_state, output.tracker_at) {
            if task.tracker_seen_at.is_none_or(|seen| at >= seen) {
                plan.next.tracker_state = Some(state.clone());
                plan.next.tracker_seen_at = Some(at);
                changed = true;
            }
        } else {
            plan.note = format!(
                "the item was left where a person put it, not moved to {}",
                role_name(role)
            );
        }
        if gate_waits {
            plan.next.verdicts_after = output.tracker_at.or(task.tracker_seen_at);
            changed = true;
        }
        changed.then_some(plan)
    }

    fn after_analyst(&self, plan: &mut Plan, output: &JobOutput) {
        let analysis = output.analysis.as_deref().unwrap_or("").trim().to_owned();
        let task = plan.next.clone();
        plan.note = "analysis ready; awaiting a verdict".to_owned();
        let comment = format!("{}:analysis:v{}", task.id, task.version);
        plan.job(
            Action::TrackerComment {
                external_id: comment.clone(),
                body: format!("**Analysis by orch**\n\n{analysis}"),
            },
            "analysis",
        );
        plan.open_gate(
            self.awaiting_configured(&task),
            comment,
            self.ports.clock.now(),
        );
        plan.notify(format!(
            "{}: the analysis is ready; approve or reject it in Plane ({})",
            task.work_item, task.title
        ));
    }

    fn after_reviewer(&self, plan: &mut Plan, output: &JobOutput, job: &Job) {
        let review = output.review.as_deref().unwrap_or("").trim().to_owned();
        let task = plan.next.clone();
        plan.job(
            Action::ForgeReview {
                marker: format!("orch:{}:review:{}", task.id, job.id),
                body: review.clone(),
            },
            "review",
        );
        let comment = format!("{}:review:v{}", task.id, task.version);
        plan.job(
            Action::TrackerComment {
                external_id: comment.clone(),
                body: format!("**Review by orch**\n\n{review}"),
            },
            "review",
        );
        let wants_changes = output.review_verdict == Some(ReviewVerdict::RequestChanges);
        if wants_changes && task.review_rounds < self.config.max_fix_rounds {
            plan.note = "the reviewer requests changes; development".to_owned();
            plan.send_back_to_development();
            plan.next.review_rounds += 1;
            plan.agent(Agent::Developer, Some(review));
            return;
        }
        plan.note = "review ready; awaiting the final verdict".to_owned();
        plan.open_gate(
            self.awaiting_configured(&task),
            comment,
            self.ports.clock.now(),
        );
        let remark = if wants_changes {
            " (the reviewer still requests changes)"
        } else {
            ""
        };
        plan.notify(format!(
            "{}: the review is ready{remark}; approve to merge or reject in Plane ({})",
            task.work_item, task.title
        ));
    }

    /// Whether `task`'s project has an awaiting state for open gates.
    fn awaiting_configured(&self, task: &Task) -> bool {
        self.config
            .project(&task.project)
            .is_some_and(|project| project.states.awaiting.is_some())
    }

    // --- outages ---

    /// Jobs have waited on a service for long: people are told once per outage (the key
    /// names the service and the start of the outage).
    async fn service_degraded(
        &self,
        service: Service,
        since: Timestamp,
        task: TaskId,
        jobs: u64,
        error: Option<&str>,
    ) -> Result<Handled, HandleError> {
        let Some(task) = self.ports.store.task(task).await? else {
            return Ok(Handled::nothing("no such task"));
        };
        let mut plan = Plan::new(&task, format!("{service} is out"));
        let error = error
            .map(|error| format!(" Last error: {error}"))
            .unwrap_or_default();
        plan.jobs.push(JobSpec::new(
            Action::Notify {
                text: format!(
                    "orch cannot reach {service} since {}: {jobs} job(s) wait, and orch keeps retrying.{error}",
                    since.to_rfc3339()
                ),
            },
            format!("outage:{service}:{}", since.as_millis()),
        ));
        self.apply(plan, Origin::Worker).await
    }

    // --- admin ---

    /// `orch task retry`: run the stage's agent again.
    async fn retry(&self, task: TaskId) -> Result<Handled, HandleError> {
        let Some(task) = self.ports.store.task(task).await? else {
            return Ok(Handled::nothing("no such task"));
        };
        let Some(agent) = transition_of(task.stage).agent else {
            return Ok(Handled::unchanged(&task, "task has ended"));
        };
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        let mut plan = Plan::new(&task, format!("retry requested; {agent} runs again"));
        if task.stage == Stage::Development {
            plan.send_back_to_development();
        } else {
            plan.close_gate();
        }
        plan.agent(agent, None);
        self.apply(plan, Origin::Admin).await
    }

    /// `cancelled`: the task ends; its work is stopped, its PR closed, its worktree removed.
    async fn cancel(
        &self,
        task: &Task,
        origin: Origin,
        canceller: Canceller,
        item: Option<&WorkItem>,
    ) -> Result<Handled, HandleError> {
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(task, "task has ended"));
        }
        let mut plan = Plan::new(task, "cancelled");
        plan.next.stage = Stage::Cancelled;
        plan.close_gate();
        plan.cancel_active_work = true;
        // Closes the recorded pull request, or the one a publish opened without recording it.
        plan.job(
            Action::ClosePr {
                comment: format!(
                    "{} was cancelled; orch closes this pull request.",
                    task.work_item
                ),
            },
            "close",
        );
        plan.job(Action::Cleanup, "cleanup");
        match canceller {
            Canceller::Admin => plan.tracker_state(StateRole::Cancelled),
            Canceller::Person => {}
        }
        if let Some(item) = item {
            plan.saw_item(item);
        }
        plan.notify(format!("{} was cancelled: {}", task.work_item, task.title));
        self.apply(plan, origin).await
    }

    // --- writing ---

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

fn after_developer(plan: &mut Plan, output: &JobOutput) {
    if output.head_sha.is_some() && output.head_sha == plan.next.head_sha {
        let head = plan
            .next
            .head_sha
            .as_ref()
            .map_or("", CommitSha::short)
            .to_owned();
        plan.block(format!(
            "the developer made no new commits (the head is still {head})"
        ));
        return;
    }
    let ahead = output.commits_ahead.unwrap_or(0);
    plan.note = format!("developer made {ahead} commit(s); publishing");
    plan.job(Action::PublishBranch, "publish");
}

/// The blocked reason when an agent's artifact check fails.
fn missing_artifact(check: QgCheck) -> &'static str {
    match check {
        QgCheck::AnalysisPresent => "the analyst wrote no analysis.md",
        QgCheck::ReviewPresent => "the reviewer wrote no review.md",
        QgCheck::BranchAhead => "the developer made no commits",
        QgCheck::PrOpen | QgCheck::CiGreen => "the agent's artifact is missing",
    }
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::InProgress => "in progress",
        StateRole::Approved => "approved",
        StateRole::Rejected => "rejected",
        StateRole::Awaiting => "awaiting",
        StateRole::Done => "done",
        StateRole::Cancelled => "cancelled",
    }
}

/// Whether the task's head is one that was sent back to development.
fn head_was_sent_back(task: &Task) -> bool {
    task.sent_back_sha.is_some() && task.sent_back_sha == task.head_sha
}

#[async_trait]
impl EventSink for Orchestrator {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        self.handle(&event, origin).await
    }
}

#[cfg(test)]
mod tests;
