//! The `Executor`: what one claimed job does through the ports, and how its end is reported.
//!
//! The executor decides nothing about the task: it performs the job's action and turns the
//! result into a `JobResult` (success with output, retry with backoff, or failure). The
//! worker that calls it owns leases, heartbeats and concurrency.

use std::time::Duration;

use crate::backoff::{jitter_from, Backoff};
use crate::config::PipelineConfig;
use crate::domain::{
    Action, Agent, ClaimedJob, JobKind, JobOutput, JobResult, JobStatus, MergeOutcome,
    ReviewVerdict, Stage, StateRole, Task,
};
use crate::ports::{
    AgentOutcome, AgentRequest, ErrorClass, NewPullRequest, Ports, RunningAgent, WorktreeSpec,
};

/// Attempts of an action job before it fails for good (about two hours at the 5 min cap):
/// outages delay actions, they do not lose them.
pub const ACTION_MAX_ATTEMPTS: u32 = 30;

/// Performs jobs.
pub struct Executor {
    ports: Ports,
    config: PipelineConfig,
    backoff: Backoff,
}

/// A failed step of a job, classified for the retry decision.
struct StepError {
    class: ErrorClass,
    message: String,
}

macro_rules! step {
    ($expr:expr) => {
        $expr.map_err(|err| StepError {
            class: err.class(),
            message: err.to_string(),
        })
    };
}

impl Executor {
    pub fn new(ports: Ports, config: PipelineConfig) -> Executor {
        Executor {
            ports,
            config,
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Executor {
        self.backoff = backoff;
        self
    }

    /// The worktree of `task`.
    pub fn worktree_spec(task: &Task) -> WorktreeSpec {
        WorktreeSpec {
            repo: task.repo.clone(),
            base_branch: task.base_branch.clone(),
            branch: task.branch.clone(),
            work_item: task.work_item.clone(),
        }
    }

    /// Prepares the worktree and starts the agent of an agent job. `Err` is the job's result
    /// when the agent could not be started.
    pub async fn start_agent(
        &self,
        claimed: &ClaimedJob,
        task: &Task,
    ) -> Result<Box<dyn RunningAgent>, JobResult> {
        let Action::RunAgent { agent, feedback } = &claimed.job.action else {
            return Err(JobResult::Failed {
                error: "not an agent job".to_owned(),
            });
        };
        let spec = Executor::worktree_spec(task);
        let started: Result<Box<dyn RunningAgent>, StepError> = async {
            let prepared = step!(self.ports.workspace.prepare(&spec, *agent).await)?;
            let analysis = match agent {
                Agent::Analyst => None,
                Agent::Developer | Agent::Reviewer => step!(
                    self.ports
                        .workspace
                        .read_output(&spec, Agent::Analyst, "analysis.md")
                        .await
                )?,
            };
            let request = AgentRequest {
                agent: *agent,
                task: task.id,
                job: claimed.job.id,
                attempt: claimed.job.attempts,
                work_item: task.work_item.clone(),
                stage: task.stage,
                repo: task.repo.clone(),
                branch: task.branch.clone(),
                base_branch: task.base_branch.clone(),
                title: task.title.clone(),
                description: task.description.clone(),
                analysis,
                feedback: feedback.clone(),
                worktree: prepared.path,
                output_dir: prepared.output_dir,
                analysis_file: prepared.analysis_file,
                mounts: prepared.mounts,
            };
            step!(self.ports.agents.start(request).await)
        }
        .await;
        started.map_err(|err| self.retry_or_fail(claimed, self.config.max_attempts, err))
    }

    /// Turns an agent's outcome into the job's result, reading its artifacts on success.
    pub async fn finish_agent(
        &self,
        claimed: &ClaimedJob,
        task: &Task,
        outcome: AgentOutcome,
    ) -> JobResult {
        let Action::RunAgent { agent, .. } = &claimed.job.action else {
            return JobResult::Failed {
                error: "not an agent job".to_owned(),
            };
        };
        if outcome != AgentOutcome::Succeeded {
            let error = StepError {
                class: ErrorClass::Other,
                message: format!("{agent} {outcome}"),
            };
            if outcome == AgentOutcome::Cancelled {
                return JobResult::Failed {
                    error: error.message,
                };
            }
            return self.retry_or_fail(claimed, self.config.max_attempts, error);
        }
        match self.artifacts(*agent, task).await {
            Ok(output) => JobResult::Succeeded(output),
            Err(err) => self.retry_or_fail(claimed, self.config.max_attempts, err),
        }
    }

    /// Starts an agent job and waits for it, without heartbeats (for embedders and tests).
    pub async fn run_agent_to_end(&self, claimed: &ClaimedJob, task: &Task) -> JobResult {
        match self.start_agent(claimed, task).await {
            Ok(running) => {
                let outcome = running.wait().await;
                self.finish_agent(claimed, task, outcome).await
            }
            Err(result) => result,
        }
    }

    async fn artifacts(&self, agent: Agent, task: &Task) -> Result<JobOutput, StepError> {
        let spec = Executor::worktree_spec(task);
        let workspace = &self.ports.workspace;
        let mut output = JobOutput::default();
        match agent {
            Agent::Analyst => {
                output.analysis = step!(
                    workspace
                        .read_output(&spec, Agent::Analyst, "analysis.md")
                        .await
                )?;
            }
            Agent::Developer => {
                let message = format!(
                    "{}: changes left uncommitted by the developer agent",
                    task.work_item
                );
                step!(workspace.commit_leftovers(&spec, &message).await)?;
                output.commits_ahead = Some(step!(workspace.commits_ahead(&spec).await)?);
                output.head_sha = Some(step!(workspace.head_sha(&spec).await)?);
            }
            Agent::Reviewer => {
                output.review = step!(
                    workspace
                        .read_output(&spec, Agent::Reviewer, "review.md")
                        .await
                )?;
                let verdict = step!(
                    workspace
                        .read_output(&spec, Agent::Reviewer, "verdict")
                        .await
                )?;
                output.review_verdict = verdict.as_deref().map(ReviewVerdict::from_file_text);
            }
        }
        Ok(output)
    }

    /// Runs an action job (every kind but agents) to its result.
    pub async fn run_action(&self, claimed: &ClaimedJob, task: &Task) -> JobResult {
        if let Action::TrackerState { state } = &claimed.job.action {
            match self.tracker_state_is_current(claimed, task, *state).await {
                Ok(true) => {}
                Ok(false) => return JobResult::Succeeded(JobOutput::default()),
                Err(err) => return self.retry_or_fail(claimed, ACTION_MAX_ATTEMPTS, err),
            }
        }
        // Notifications are delayed by an outage, never lost: they retry for as long as it lasts.
        let max_attempts = match claimed.job.action {
            Action::Notify { .. } => u32::MAX,
            _ => ACTION_MAX_ATTEMPTS,
        };
        match self.action(&claimed.job.action, task).await {
            Ok(output) => JobResult::Succeeded(output),
            Err(err) => self.retry_or_fail(claimed, max_attempts, err),
        }
    }

    /// Whether a `tracker_state` job still says where the item belongs. State moves of one
    /// task may run out of order (a retry, a slow call): a later move of the same task, or a
    /// task that ended, makes an earlier move stale, and it is skipped.
    async fn tracker_state_is_current(
        &self,
        claimed: &ClaimedJob,
        task: &Task,
        state: StateRole,
    ) -> Result<bool, StepError> {
        let ended_elsewhere = match task.stage {
            Stage::Done => state != StateRole::Done,
            Stage::Cancelled => state != StateRole::Cancelled,
            _ => false,
        };
        if ended_elsewhere {
            return Ok(false);
        }
        let jobs = self
            .ports
            .store
            .jobs_of_task(task.id)
            .await
            .map_err(|err| StepError {
                class: ErrorClass::Unavailable { retry_after: None },
                message: err.to_string(),
            })?;
        let superseded = jobs.iter().any(|job| {
            job.id > claimed.job.id
                && job.kind() == JobKind::TrackerState
                && job.status != JobStatus::Cancelled
        });
        Ok(!superseded)
    }

    async fn action(&self, action: &Action, task: &Task) -> Result<JobOutput, StepError> {
        let ports = &self.ports;
        let spec = Executor::worktree_spec(task);
        let mut output = JobOutput::default();
        match action {
            Action::RunAgent { .. } => {
                return Err(StepError {
                    class: ErrorClass::Invalid,
                    message: "agent jobs are not actions".to_owned(),
                })
            }
            Action::PublishBranch => {
                let message = format!(
                    "{}: changes left uncommitted by the developer agent",
                    task.work_item
                );
                step!(ports.workspace.commit_leftovers(&spec, &message).await)?;
                let head_sha = step!(ports.workspace.push(&spec).await)?;
                let new = NewPullRequest {
                    repo: task.repo.clone(),
                    head: task.branch.clone(),
                    base: task.base_branch.clone(),
                    title: format!("{}: {}", task.work_item, task.title),
                    body: format!(
                        "Work item {} — opened by orch.\n\n{}",
                        task.work_item, task.description
                    ),
                };
                let pull = step!(ports.forge.ensure_pull_request(&new).await)?;
                output.head_sha = Some(head_sha);
                output.pr = Some(pull.number);
            }
            Action::TrackerComment { external_id, body } => {
                step!(
                    ports
                        .tracker
                        .add_comment(&task.project, &task.issue, external_id, body)
                        .await
                )?;
            }
            Action::TrackerState { state } => {
                let Some(project) = self.config.project(&task.project) else {
                    return Err(invalid(format!(
                        "project {} is no longer configured",
                        task.project
                    )));
                };
                let states = step!(
                    ports
                        .tracker
                        .project_states(&project.plane_project_id, &project.states)
                        .await
                )?;
                if let Some(state_id) = states.id_of(*state) {
                    step!(
                        ports
                            .tracker
                            .set_state(&task.project, &task.issue, state_id)
                            .await
                    )?;
                }
            }
            Action::ForgeReview { marker, body } => {
                let pr = task
                    .pr
                    .ok_or_else(|| invalid("the task has no pull request".to_owned()))?;
                step!(ports.forge.review(&task.repo, pr, marker, body).await)?;
            }
            Action::Merge { head_sha } => {
                let pr = task
                    .pr
                    .ok_or_else(|| invalid("the task has no pull request".to_owned()))?;
                let outcome = step!(ports.forge.merge(&task.repo, pr, head_sha).await)?;
                if let MergeOutcome::TryLater { reason } = &outcome {
                    return Err(StepError {
                        class: ErrorClass::Unavailable { retry_after: None },
                        message: format!("merge: try again later: {reason}"),
                    });
                }
                output.merge = Some(outcome);
            }
            Action::ClosePr { comment } => {
                if let Some(pr) = task.pr {
                    let marker = format!("orch:{}:close", task.id);
                    step!(ports.forge.comment(&task.repo, pr, &marker, comment).await)?;
                    step!(ports.forge.close_pull_request(&task.repo, pr).await)?;
                }
            }
            Action::Notify { text } => {
                step!(ports.notifier.notify(text).await)?;
            }
            Action::Cleanup => {
                step!(ports.workspace.remove(&spec).await)?;
            }
        }
        Ok(output)
    }

    fn retry_or_fail(&self, claimed: &ClaimedJob, max_attempts: u32, err: StepError) -> JobResult {
        let attempts = claimed.job.attempts;
        let retryable = err.class.is_retryable()
            || claimed.job.kind().is_agent() && err.class == ErrorClass::Other;
        if !retryable || attempts >= max_attempts {
            return JobResult::Failed { error: err.message };
        }
        let retry_after = match err.class {
            ErrorClass::Unavailable { retry_after } => retry_after,
            _ => None,
        };
        let now = self.ports.clock.now();
        let jitter = jitter_from(&[claimed.job.id.0, i64::from(attempts), now.as_millis()]);
        let delay: Duration = self.backoff.delay(attempts, retry_after, jitter);
        JobResult::Retry {
            not_before: now + delay,
            error: err.message,
        }
    }
}

fn invalid(message: String) -> StepError {
    StepError {
        class: ErrorClass::Invalid,
        message,
    }
}
