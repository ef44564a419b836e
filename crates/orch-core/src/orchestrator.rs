//! The `Orchestrator`: every handler of the serial event loop (SPEC §2).
//!
//! A handler reads what it needs, decides, and writes one `Transition` (a compare-and-swap on
//! the task's version carrying the jobs it causes). A handler that finds nothing to do does
//! nothing, which makes every event safe to replay.

use async_trait::async_trait;
use tracing::{debug, info};

use crate::config::{PipelineConfig, ProjectConfig};
use crate::domain::{
    Action, Agent, CiState, Job, JobKind, JobOutput, JobSpec, JobStatus, MergeOutcome, NewTask,
    ReviewVerdict, Stage, StateRole, Task, TaskStatus, Verdict,
};
use crate::event::{Event, Origin};
use crate::ids::{BranchName, CommitSha, PrNumber, RepoSlug, TaskId, UserId, WorkItemId};
use crate::pipeline::{evaluate_development_gate, transition_of, ExitGate, GateReport};
use crate::ports::{ForgeError, Ports, StoreError, TrackerError, Transition, WorkItem};

/// Why an event could not be handled; the event is kept and handled again later.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
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

/// How much older than a gate a verdict may look: Plane's clock and orch's may differ.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a handler re-reads and retries after losing a compare-and-swap.
const CAS_ATTEMPTS: u32 = 3;

/// A decided transition, before the store sees it.
struct Plan {
    next: Task,
    /// Whether the task was blocked before this transition (a new block stamps its time).
    was_blocked: bool,
    jobs: Vec<JobSpec>,
    cancel_active_work: bool,
    consumes_job: Option<crate::ids::JobId>,
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
        self.job(Action::TrackerState { state }, "state");
    }

    /// Back to development for another developer run: the current head was judged and sent
    /// back, so it can no longer pass the gate, and fix rounds start over.
    fn send_back_to_development(&mut self) {
        self.next.stage = Stage::Development;
        self.next.status = TaskStatus::Working;
        self.next.gate_opened_at = None;
        self.next.fix_rounds = 0;
        self.next.last_fix_sha = None;
        self.next.sent_back_sha = self.next.head_sha.clone();
    }

    /// Blocks the task and tells people, once (the key is unique to this transition).
    fn block(&mut self, reason: String) {
        self.notify(format!("{} is blocked: {reason}", self.next.work_item));
        self.next.status = TaskStatus::Blocked { reason };
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
            } => self.pr_closed(repo, *number, *merged, origin).await,
            Event::JobFinished { job } => self.job_finished(*job).await,
            Event::GateGreen { task, head_sha } => self.gate_green(*task, head_sha, origin).await,
            Event::RetryRequested { task } => self.retry(*task).await,
            Event::CancelRequested { task } => match self.ports.store.task(*task).await? {
                Some(task) => self.cancel(&task, origin, true).await,
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
        match states.role_of(&item.state) {
            Some(StateRole::InProgress) => self.status_start(project, item, origin).await,
            Some(StateRole::Approved) => self.verdict(item, Verdict::Approved, origin).await,
            Some(StateRole::Rejected) => self.verdict(item, Verdict::Rejected, origin).await,
            Some(StateRole::Cancelled) => match self.ports.store.task_by_issue(&item.id).await? {
                Some(task) => self.cancel(&task, origin, false).await,
                None => Ok(Handled::nothing("cancelled item has no task")),
            },
            Some(StateRole::Awaiting | StateRole::Done) | None => {
                Ok(Handled::nothing("state is not a trigger"))
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
        if let Some(task) = self.ports.store.task_by_issue(&item.id).await? {
            return Ok(Handled::unchanged(&task, "task exists"));
        }
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
            work_item,
            title: item.title.clone(),
            description: item.description.clone(),
            repo: project.repo.clone(),
            base_branch: project.base_branch.clone(),
            branch,
            stage: Stage::Analysis,
        };
        let now = self.ports.clock.now();
        let created = self
            .ports
            .store
            .create_task(new, JobSpec::agent(Agent::Analyst, None), now)
            .await?;
        if created.created {
            info!(task = %created.task.work_item, branch = %created.task.branch, "task created");
            if let Origin::Reconciler(_) = origin {
                // F-4: an item the reconciler picked up is logged and told about like any
                // other unblock; `apply` adds the notification.
                let plan = Plan::new(&created.task, "picked up by the reconciler");
                return self.apply(plan, origin).await;
            }
            Ok(Handled::changed(&created.task, "task created"))
        } else {
            Ok(Handled::unchanged(&created.task, "task exists"))
        }
    }

    /// `verdict`: the item entered *approved* or *rejected*.
    async fn verdict(
        &self,
        item: &WorkItem,
        verdict: Verdict,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let Some(task) = self.ports.store.task_by_issue(&item.id).await? else {
            return Ok(Handled::nothing("verdict for an item without a task"));
        };
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(&task, "task has ended"));
        }
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        let human_gated = transition_of(task.stage).exit_gate == ExitGate::Human;
        // A person unblocks with Rejected (or Cancelled), never with Approved.
        let applies = match (&task.status, verdict) {
            (TaskStatus::AwaitingVerdict, _) => human_gated,
            (TaskStatus::Blocked { .. }, Verdict::Rejected) => true,
            (TaskStatus::Blocked { .. }, Verdict::Approved) | (TaskStatus::Working, _) => false,
        };
        if !applies {
            return Ok(Handled::unchanged(&task, "no open gate for this verdict"));
        }
        // A verdict given before this gate opened (a state orch could not move back, or an
        // old delivery) belongs to an earlier gate.
        let gate_since = task.gate_opened_at.unwrap_or(task.updated_at);
        if item.updated_at + CLOCK_SKEW < gate_since {
            return Ok(Handled::unchanged(
                &task,
                "the verdict is older than the open gate",
            ));
        }
        let mut plan = match verdict {
            Verdict::Approved => self.approve(&task),
            Verdict::Rejected => {
                let feedback = self.human_feedback(&task).await?;
                self.reject(&task, feedback)
            }
        };
        plan.tracker_state(StateRole::InProgress);
        self.apply(plan, origin).await
    }

    fn approve(&self, task: &Task) -> Plan {
        let mut plan = Plan::new(task, "approved");
        plan.next.gate_opened_at = None;
        plan.next.status = TaskStatus::Working;
        match task.stage {
            Stage::Analysis => {
                plan.next.stage = Stage::Development;
                plan.next.fix_rounds = 0;
                plan.agent(Agent::Developer, None);
            }
            _ => match (task.pr, task.head_sha.clone()) {
                (Some(_), Some(head_sha)) => {
                    plan.note = format!("approved; merging at {}", head_sha.short());
                    plan.job(Action::Merge { head_sha }, "merge");
                }
                _ => plan.block("approved, but there is no pull request to merge".to_owned()),
            },
        }
        plan
    }

    fn reject(&self, task: &Task, feedback: String) -> Plan {
        let target = transition_of(task.stage).on_reject.unwrap_or(task.stage);
        let agent = transition_of(target).agent.unwrap_or(Agent::Developer);
        let mut plan = Plan::new(task, format!("rejected; {agent} runs again with feedback"));
        if target == Stage::Development {
            plan.send_back_to_development();
        } else {
            plan.next.stage = target;
            plan.next.status = TaskStatus::Working;
            plan.next.gate_opened_at = None;
        }
        plan.agent(agent, Some(feedback));
        plan
    }

    /// The comments people (not orch) wrote since the gate opened, oldest first.
    async fn human_feedback(&self, task: &Task) -> Result<String, HandleError> {
        let comments = self
            .ports
            .tracker
            .comments(&task.project, &task.issue)
            .await?;
        let since = task.gate_opened_at.unwrap_or(task.updated_at);
        let mut texts: Vec<(crate::time::Timestamp, String)> = comments
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
        self.development_gate(task, origin).await
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

    /// Reads the development gate and acts: green → review; CI failed → a fix round (once
    /// per head sha); otherwise nothing.
    async fn development_gate(&self, task: Task, origin: Origin) -> Result<Handled, HandleError> {
        if task.stage != Stage::Development {
            return Ok(Handled::unchanged(&task, "not in development"));
        }
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        let report =
            evaluate_development_gate(&task, self.ports.forge.as_ref(), self.config.require_ci)
                .await?;
        match self.gate_plan(&task, &report) {
            Some(plan) => self.apply(plan, origin).await,
            None => Ok(Handled::unchanged(&task, "gate not green")),
        }
    }

    /// What a gate report means for a development task; `None` means wait.
    fn gate_plan(&self, task: &Task, report: &GateReport) -> Option<Plan> {
        if report.green && !head_was_sent_back(task) {
            return Some(self.advance_to_review(task));
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
        } else {
            plan.note = format!("CI failed; fix round {}", plan.next.fix_rounds);
            plan.agent(Agent::Developer, Some(feedback));
        }
        Some(plan)
    }

    fn advance_to_review(&self, task: &Task) -> Plan {
        let mut plan = Plan::new(task, "gate green; review");
        plan.next.stage = Stage::Review;
        plan.next.status = TaskStatus::Working;
        plan.agent(Agent::Reviewer, None);
        plan
    }

    /// F-1 found the gate green at `head_sha`.
    async fn gate_green(
        &self,
        task: TaskId,
        head_sha: &CommitSha,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let Some(task) = self.ports.store.task(task).await? else {
            return Ok(Handled::nothing("no such task"));
        };
        if task.stage != Stage::Development || task.head_sha.as_ref() != Some(head_sha) {
            return Ok(Handled::unchanged(&task, "task moved on"));
        }
        if head_was_sent_back(&task) {
            return Ok(Handled::unchanged(
                &task,
                "this head was sent back; a new one is needed",
            ));
        }
        if self.ports.store.has_active_job(task.id).await? {
            return Ok(Handled::unchanged(&task, "a job is active"));
        }
        let plan = self.advance_to_review(&task);
        self.apply(plan, origin).await
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

    /// `pr_closed`: merged → done; closed unmerged (not by orch) → blocked.
    async fn pr_closed(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        merged: bool,
        origin: Origin,
    ) -> Result<Handled, HandleError> {
        let Some(task) = self.ports.store.task_by_pr(repo, number).await? else {
            return Ok(Handled::nothing("pull request of no task"));
        };
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(&task, "task has ended"));
        }
        if !merged && task.status.is_blocked() {
            return Ok(Handled::unchanged(&task, "already blocked"));
        }
        let plan = if merged {
            self.finish(&task, "pull request merged")
        } else {
            let mut plan = Plan::new(&task, "pull request closed without merge");
            plan.cancel_active_work = true;
            plan.block(format!("pull request {number} was closed without merge"));
            plan
        };
        self.apply(plan, origin).await
    }

    fn finish(&self, task: &Task, note: &str) -> Plan {
        let mut plan = Plan::new(task, note);
        plan.next.stage = Stage::Done;
        plan.next.status = TaskStatus::Working;
        plan.next.gate_opened_at = None;
        plan.tracker_state(StateRole::Done);
        plan.job(Action::Cleanup, "cleanup");
        let pr = task.pr.map(|pr| format!(" ({pr})")).unwrap_or_default();
        plan.notify(format!("{} is merged{pr}: {}", task.work_item, task.title));
        plan
    }

    // --- jobs ---

    /// `job_finished`: agent jobs get their artifact check; action jobs record results.
    async fn job_finished(&self, job_id: crate::ids::JobId) -> Result<Handled, HandleError> {
        let store = &self.ports.store;
        let Some(job) = store.job(job_id).await? else {
            return Ok(Handled::nothing("no such job"));
        };
        if job.handled || job.status.is_active() {
            return Ok(Handled::nothing("job already handled or still active"));
        }
        let task = store.task(job.task).await?;
        let plan = match &task {
            Some(task) if !task.stage.is_terminal() && job.status != JobStatus::Cancelled => {
                self.job_plan(task, &job).await?
            }
            _ => None,
        };
        match (plan, task) {
            (Some(mut plan), Some(_)) => {
                plan.consumes_job = Some(job.id);
                self.apply(plan, Origin::Worker).await
            }
            (_, task) => {
                store.mark_job_handled(job.id).await?;
                if job.status == JobStatus::Failed && !job.kind().is_agent() {
                    tracing::warn!(job = %job.id, kind = %job.kind(), error = job.last_error.as_deref().unwrap_or(""), "action job failed for good");
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
            JobKind::Agent(agent) => {
                if transition_of(task.stage).agent != Some(agent)
                    || task.status != TaskStatus::Working
                {
                    return Ok(None);
                }
                let mut plan = Plan::new(task, format!("{agent} finished"));
                if failed {
                    plan.block(format!(
                        "{agent} failed after {} attempts: {error}",
                        job.attempts
                    ));
                    return Ok(Some(plan));
                }
                match agent {
                    Agent::Analyst => self.after_analyst(&mut plan, output),
                    Agent::Developer => after_developer(&mut plan, output),
                    Agent::Reviewer => self.after_reviewer(&mut plan, output, job),
                }
                Ok(Some(plan))
            }
            JobKind::PublishBranch => {
                if task.stage != Stage::Development {
                    return Ok(None);
                }
                let mut plan = Plan::new(task, "branch pushed, pull request open");
                match (failed, output.head_sha.clone(), output.pr) {
                    (false, Some(head_sha), Some(pr)) => {
                        plan.next.head_sha = Some(head_sha);
                        plan.next.pr = Some(pr);
                        plan.next.status = TaskStatus::Working;
                        // CI may have finished before the push returned: read the gate now.
                        match evaluate_development_gate(
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
                            Err(err) => {
                                debug!(error = %err, "gate not readable after push; F-1 will read it")
                            }
                        }
                    }
                    (false, _, _) => {
                        plan.block("publishing reported no head sha or pull request".to_owned())
                    }
                    (true, _, _) => {
                        plan.block(format!("could not push or open the pull request: {error}"))
                    }
                }
                Ok(Some(plan))
            }
            JobKind::Merge => {
                if task.stage != Stage::Review {
                    return Ok(None);
                }
                if failed {
                    let mut plan = Plan::new(task, "merge failed");
                    plan.block(format!("merge failed: {error}"));
                    return Ok(Some(plan));
                }
                Ok(Some(match output.merge.clone() {
                    Some(MergeOutcome::Merged | MergeOutcome::AlreadyMerged) => {
                        self.finish(task, "merged")
                    }
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
                }))
            }
            JobKind::TrackerComment
            | JobKind::TrackerState
            | JobKind::ForgeReview
            | JobKind::ClosePr
            | JobKind::Notify
            | JobKind::Cleanup => Ok(None),
        }
    }

    fn after_analyst(&self, plan: &mut Plan, output: &JobOutput) {
        let Some(analysis) = non_empty(output.analysis.as_deref()) else {
            plan.block("the analyst wrote no analysis.md".to_owned());
            return;
        };
        let task = plan.next.clone();
        plan.note = "analysis ready; awaiting a verdict".to_owned();
        plan.next.status = TaskStatus::AwaitingVerdict;
        plan.next.gate_opened_at = Some(self.ports.clock.now());
        plan.job(
            Action::TrackerComment {
                external_id: format!("{}:analysis:v{}", task.id, task.version),
                body: format!("Analysis by orch\n\n{analysis}"),
            },
            "analysis",
        );
        plan.tracker_state(StateRole::Awaiting);
        plan.notify(format!(
            "{}: the analysis is ready; approve or reject it in Plane ({})",
            task.work_item, task.title
        ));
    }

    fn after_reviewer(&self, plan: &mut Plan, output: &JobOutput, job: &Job) {
        let Some(review) = non_empty(output.review.as_deref()) else {
            plan.block("the reviewer wrote no review.md".to_owned());
            return;
        };
        let task = plan.next.clone();
        plan.job(
            Action::ForgeReview {
                marker: format!("orch:{}:review:{}", task.id, job.id),
                body: review.to_owned(),
            },
            "review",
        );
        plan.job(
            Action::TrackerComment {
                external_id: format!("{}:review:v{}", task.id, task.version),
                body: format!("Review by orch\n\n{review}"),
            },
            "review",
        );
        let wants_changes = output.review_verdict == Some(ReviewVerdict::RequestChanges);
        if wants_changes && task.review_rounds < self.config.max_fix_rounds {
            plan.note = "the reviewer requests changes; development".to_owned();
            plan.send_back_to_development();
            plan.next.review_rounds += 1;
            plan.agent(Agent::Developer, Some(review.to_owned()));
            return;
        }
        plan.note = "review ready; awaiting the final verdict".to_owned();
        plan.next.status = TaskStatus::AwaitingVerdict;
        plan.next.gate_opened_at = Some(self.ports.clock.now());
        plan.tracker_state(StateRole::Awaiting);
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
            plan.next.status = TaskStatus::Working;
            plan.next.gate_opened_at = None;
        }
        plan.agent(agent, None);
        self.apply(plan, Origin::Admin).await
    }

    /// `cancelled`: the task ends; its work is stopped, its PR closed, its worktree removed.
    async fn cancel(
        &self,
        task: &Task,
        origin: Origin,
        move_item: bool,
    ) -> Result<Handled, HandleError> {
        if task.stage.is_terminal() {
            return Ok(Handled::unchanged(task, "task has ended"));
        }
        let mut plan = Plan::new(task, "cancelled");
        plan.next.stage = Stage::Cancelled;
        plan.next.status = TaskStatus::Working;
        plan.cancel_active_work = true;
        if task.pr.is_some() {
            plan.job(
                Action::ClosePr {
                    comment: format!(
                        "{} was cancelled; orch closes this pull request.",
                        task.work_item
                    ),
                },
                "close",
            );
        }
        plan.job(Action::Cleanup, "cleanup");
        if move_item {
            plan.tracker_state(StateRole::Cancelled);
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
            // A block is a gate a person answers: its time bounds the verdicts that apply
            // and the comments that are feedback, whatever else changes on the task later.
            plan.next.gate_opened_at = Some(now);
        }
        let note = plan.note.clone();
        let transition = Transition {
            next: plan.next,
            jobs: plan.jobs,
            cancel_active_work: plan.cancel_active_work,
            consumes_job: plan.consumes_job,
            note: plan.note,
            now: self.ports.clock.now(),
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
    match output.commits_ahead {
        Some(ahead) if ahead > 0 => {
            plan.note = format!("developer made {ahead} commit(s); publishing");
            plan.job(Action::PublishBranch, "publish");
        }
        _ => plan.block("the developer made no commits".to_owned()),
    }
}

/// Whether the task's head is one that was sent back to development.
fn head_was_sent_back(task: &Task) -> bool {
    task.sent_back_sha.is_some() && task.sent_back_sha == task.head_sha
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|text| !text.is_empty())
}

#[async_trait]
impl EventSink for Orchestrator {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        self.handle(&event, origin).await
    }
}

#[cfg(test)]
mod tests;
