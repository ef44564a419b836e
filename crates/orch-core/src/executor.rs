//! The `Executor`: what one claimed job does through the ports, and how its end is reported.
//!
//! The executor decides nothing about the task: it performs the job's action and turns the
//! result into a `JobResult` (success with output, a retry, a wait on a service that is out,
//! or failure). An outage never uses up a job's attempts and never fails an action: it waits
//! with capped backoff until the service is back. A job whose task has moved on has no
//! outward effect (`still_current`). The worker that calls it owns leases, heartbeats and
//! concurrency.

use std::time::Duration;

use crate::backoff::{jitter_from, Backoff};
use crate::config::PipelineConfig;
use crate::domain::{
    Action, Agent, ClaimedJob, Job, JobKind, JobOutput, JobResult, JobStatus, MergeOutcome,
    ReviewVerdict, Service, Stage, StateRole, Task, TaskStatus,
};
use crate::ids::{CommitSha, PrNumber};
use crate::ports::{
    AgentOutcome, AgentRequest, ErrorClass, NewPullRequest, Ports, RunningAgent, Subject,
    WorktreeSpec,
};

/// Attempts of an action job that fails for a reason other than an outage before it fails
/// for good (about two hours at the 5 min cap). Outages never count.
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
    /// The service the step talked to.
    service: Service,
    message: String,
}

macro_rules! step {
    ($service:expr, $expr:expr) => {
        $expr.map_err(|err| StepError {
            class: err.class(),
            service: $service,
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
    /// when the agent could not be started: an outage (git hosting, the local disk) waits
    /// without using up one of the agent's attempts.
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
        if let Err(reason) = still_current(&claimed.job, task) {
            return Err(obsolete(&reason));
        }
        let spec = Executor::worktree_spec(task);
        let started: Result<Box<dyn RunningAgent>, StepError> = async {
            let prepared = step!(
                Service::Gitea,
                self.ports.workspace.prepare(&spec, *agent).await
            )?;
            let analysis = match agent {
                Agent::Analyst => None,
                Agent::Developer | Agent::Reviewer => step!(
                    Service::Git,
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
            step!(Service::Git, self.ports.agents.start(request).await)
        }
        .await;
        started.map_err(|err| self.after_agent_error(claimed, err))
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
            let message = format!("{agent} {outcome}");
            if outcome == AgentOutcome::Cancelled {
                return JobResult::Failed { error: message };
            }
            // The agent's own failure: it uses up an attempt.
            let error = StepError {
                class: ErrorClass::Other,
                service: Service::Git,
                message,
            };
            return self.after_error(claimed, self.config.max_attempts, error);
        }
        match self.artifacts(*agent, task).await {
            Ok(output) => JobResult::Succeeded(output),
            Err(err) => self.after_agent_error(claimed, err),
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

    /// An infrastructure step of an agent job failed (the worktree, the artifacts, starting
    /// the process): anything but a refusal is an outage of git, so the agent's attempts are
    /// not used up and the task is never blocked by it.
    fn after_agent_error(&self, claimed: &ClaimedJob, err: StepError) -> JobResult {
        let err = match err.class {
            ErrorClass::Other => StepError {
                class: ErrorClass::Unavailable { retry_after: None },
                ..err
            },
            _ => err,
        };
        self.after_error(claimed, self.config.max_attempts, err)
    }

    async fn artifacts(&self, agent: Agent, task: &Task) -> Result<JobOutput, StepError> {
        let spec = Executor::worktree_spec(task);
        let workspace = &self.ports.workspace;
        let mut output = JobOutput::default();
        match agent {
            Agent::Analyst => {
                output.analysis = step!(
                    Service::Git,
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
                step!(
                    Service::Git,
                    workspace.commit_leftovers(&spec, &message).await
                )?;
                output.commits_ahead =
                    Some(step!(Service::Gitea, workspace.commits_ahead(&spec).await)?);
                output.head_sha = Some(step!(Service::Git, workspace.head_sha(&spec).await)?);
            }
            Agent::Reviewer => {
                output.review = step!(
                    Service::Git,
                    workspace
                        .read_output(&spec, Agent::Reviewer, "review.md")
                        .await
                )?;
                let verdict = step!(
                    Service::Git,
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
        if let Err(reason) = still_current(&claimed.job, task) {
            return obsolete(&reason);
        }
        if let Action::TrackerState { state, .. } = &claimed.job.action {
            match self.tracker_state_is_current(claimed, task, *state).await {
                Ok(true) => {}
                Ok(false) => return JobResult::Succeeded(JobOutput::default()),
                Err(err) => return self.after_error(claimed, ACTION_MAX_ATTEMPTS, err),
            }
        }
        // Notifications are delayed by an outage, never lost: they retry for as long as it lasts.
        let max_attempts = match claimed.job.action {
            Action::Notify { .. } => u32::MAX,
            _ => ACTION_MAX_ATTEMPTS,
        };
        match self.action(claimed, task).await {
            Ok(Some(output)) => JobResult::Succeeded(output),
            Ok(None) => obsolete("its task moved on while it ran"),
            Err(err) => self.after_error(claimed, max_attempts, err),
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
        let jobs = self.store_read(self.ports.store.jobs_of_task(task.id).await)?;
        let superseded = jobs.iter().any(|job| {
            job.id > claimed.job.id
                && job.kind() == JobKind::TrackerState
                && job.status != JobStatus::Cancelled
        });
        Ok(!superseded)
    }

    fn store_read<T>(&self, result: Result<T, crate::ports::StoreError>) -> Result<T, StepError> {
        result.map_err(|err| StepError {
            class: ErrorClass::Unavailable { retry_after: None },
            service: Service::Git,
            message: err.to_string(),
        })
    }

    /// `task` as it is now, for a job about to make an outward effect; `None` when the job
    /// is no longer current.
    async fn reread(&self, job: &Job) -> Result<Option<Task>, StepError> {
        let task = self.store_read(self.ports.store.task(job.task).await)?;
        Ok(task.filter(|task| still_current(job, task).is_ok()))
    }

    /// Performs the action; `Ok(None)` when the task moved on before its outward effect.
    async fn action(
        &self,
        claimed: &ClaimedJob,
        task: &Task,
    ) -> Result<Option<JobOutput>, StepError> {
        let ports = &self.ports;
        let action = &claimed.job.action;
        let service = service_of(claimed.job.kind());
        let spec = Executor::worktree_spec(task);
        let mut output = JobOutput::default();
        match action {
            Action::RunAgent { .. } => {
                return Err(invalid("agent jobs are not actions".to_owned()));
            }
            Action::PublishBranch => return self.publish(claimed, task).await,
            Action::TrackerComment { external_id, body } => {
                step!(
                    service,
                    ports
                        .tracker
                        .add_comment(&task.project, &task.issue, external_id, body)
                        .await
                )?;
            }
            Action::TrackerState {
                state,
                gate_comment,
            } => {
                return self
                    .move_item(claimed, task, *state, gate_comment.as_deref())
                    .await
                    .map(Some);
            }
            Action::ForgeReview { marker, body } => {
                let pr = task
                    .pr
                    .ok_or_else(|| invalid("the task has no pull request".to_owned()))?;
                step!(
                    service,
                    ports.forge.review(&task.repo, pr, marker, body).await
                )?;
            }
            Action::Merge { head_sha } => {
                let pr = task
                    .pr
                    .ok_or_else(|| invalid("the task has no pull request".to_owned()))?;
                if self.reread(&claimed.job).await?.is_none() {
                    return Ok(None);
                }
                let outcome = step!(service, ports.forge.merge(&task.repo, pr, head_sha).await)?;
                let outcome = match outcome {
                    MergeOutcome::TryLater { reason } => {
                        self.decide_try_later(task, &spec, pr, head_sha, &reason)
                            .await?
                    }
                    outcome => outcome,
                };
                output.merge = Some(outcome);
            }
            Action::ClosePr { comment } => {
                // The recorded pull request, or one a publish opened without recording it.
                let pr = match task.pr {
                    Some(pr) => Some(pr),
                    None => step!(
                        service,
                        ports
                            .forge
                            .open_pull_request_for_branch(
                                &task.repo,
                                &task.branch,
                                &task.base_branch
                            )
                            .await
                    )?
                    .map(|pull| pull.number),
                };
                if let Some(pr) = pr {
                    let marker = format!("orch:{}:close", task.id);
                    step!(
                        service,
                        ports.forge.comment(&task.repo, pr, &marker, comment).await
                    )?;
                    step!(
                        service,
                        ports.forge.close_pull_request(&task.repo, pr).await
                    )?;
                    output.pr = Some(pr);
                }
            }
            Action::Notify { text } => {
                // The task as it is now: a pull request opened since the job was written
                // is linked too.
                let subject = Subject::of(task);
                let text = notification_text(text, &claimed.job);
                step!(service, ports.notifier.notify_about(&text, &subject).await)?;
            }
            Action::Cleanup => {
                step!(service, ports.workspace.remove(&spec).await)?;
            }
        }
        Ok(Some(output))
    }

    /// Commits leftovers, pushes the branch and makes sure the task has one open PR. A PR a
    /// person closed is never replaced by a second one; the task moving on stops the job
    /// before each outward step.
    async fn publish(
        &self,
        claimed: &ClaimedJob,
        task: &Task,
    ) -> Result<Option<JobOutput>, StepError> {
        let ports = &self.ports;
        let spec = Executor::worktree_spec(task);
        let mut output = JobOutput::default();
        if let Some(pr) = task.pr {
            let pull = step!(
                Service::Gitea,
                ports.forge.pull_request(&task.repo, pr).await
            )?;
            if pull.state == crate::ports::PrState::Closed {
                output.pr = Some(pr);
                if pull.merged {
                    output.merge = Some(MergeOutcome::AlreadyMerged);
                } else {
                    output.pr_closed = true;
                }
                return Ok(Some(output));
            }
        }
        let message = format!(
            "{}: changes left uncommitted by the developer agent",
            task.work_item
        );
        step!(
            Service::Git,
            ports.workspace.commit_leftovers(&spec, &message).await
        )?;
        if self.reread(&claimed.job).await?.is_none() {
            return Ok(None);
        }
        let head_sha = step!(Service::Gitea, ports.workspace.push(&spec).await)?;
        let Some(current) = self.reread(&claimed.job).await? else {
            return Ok(None);
        };
        let pr = match current.pr {
            Some(pr) => pr,
            None => {
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
                step!(Service::Gitea, ports.forge.ensure_pull_request(&new).await)?.number
            }
        };
        output.head_sha = Some(head_sha);
        output.pr = Some(pr);
        Ok(Some(output))
    }

    /// Moves the item to `role`'s state, reading it first: orch moves it only from the state
    /// it last knew (a person's move it acted on, or one of its own), so a state a person set
    /// since wins and is left alone (ADR 0005). Two exceptions: after a merge the item goes to
    /// Done whatever state it is in (the merged pull request is the last word); and where the
    /// move opens a gate, a verdict Plane recorded before the gate's comment (the work to
    /// judge) was given before that work existed and is reset to the awaiting state.
    async fn move_item(
        &self,
        claimed: &ClaimedJob,
        task: &Task,
        role: StateRole,
        gate_comment: Option<&str>,
    ) -> Result<JobOutput, StepError> {
        let ports = &self.ports;
        let mut output = JobOutput::default();
        let Some(project) = self.config.project(&task.project) else {
            return Err(invalid(format!(
                "project {} is no longer configured",
                task.project
            )));
        };
        let states = step!(
            Service::Plane,
            ports
                .tracker
                .project_states(&project.plane_project_id, &project.states)
                .await
        )?;
        let Some(target) = states.id_of(role).cloned() else {
            return Ok(output);
        };
        let merged = role == StateRole::Done && task.stage == Stage::Done;
        if merged {
            // The merged pull request is the last word whatever the item's state: nothing to
            // read first (one Plane call per item saved; `set_state` is idempotent).
            return self.set_item_state(task, target, output).await;
        }
        let item = step!(
            Service::Plane,
            ports.tracker.work_item(&task.project, &task.issue).await
        )?;
        if item.state == target {
            // Already there (an earlier attempt's answer may have been lost).
            output.tracker_state = Some(target);
            output.tracker_at = Some(item.updated_at);
            return Ok(output);
        }
        let jobs = self.store_read(ports.store.jobs_of_task(task.id).await)?;
        // Whether the item is where orch itself left it: the state orch last knew; or where
        // one of its own earlier moves put it (no newer than that move, or, if the move's
        // answer was lost, by its state alone).
        let own = |state: &crate::ids::StateId, at: crate::time::Timestamp| {
            // The state orch knows, even if the item was edited since: a verdict orch acted
            // on that is still shown must not pass for a new one (an edit moves `updated_at`).
            let known = task.tracker_state.is_none() || task.tracker_state.as_ref() == Some(state);
            known || jobs.iter().any(|job| {
                let moved_there = matches!(job.action, Action::TrackerState { state: earlier, .. }
                        if states.id_of(earlier) == Some(state));
                let landed_at = job
                    .output
                    .as_ref()
                    .filter(|output| output.tracker_state.as_ref() == Some(state))
                    .and_then(|output| output.tracker_at);
                job.id < claimed.job.id
                    && moved_there
                    && job.attempts > 0
                    && match landed_at {
                        Some(landed_at) => at <= landed_at,
                        None => job.output.is_none(),
                    }
            })
        };
        let verdict_found = matches!(
            states.role_of(&item.state),
            Some(StateRole::Approved | StateRole::Rejected)
        );
        let leave = if own(&item.state, item.updated_at) {
            false
        } else if role == StateRole::Awaiting && verdict_found {
            // A verdict Plane recorded after the gate's comment was posted answers the gate:
            // leave it. One given before that work existed is early: reset it.
            match gate_comment {
                Some(comment) => self.posted_before(task, comment, item.updated_at).await?,
                None => false,
            }
        } else {
            true
        };
        if leave {
            tracing::info!(task = %task.work_item, to = ?role, "a person moved the item since orch last looked; their state stays");
            output.tracker_at = Some(item.updated_at);
            return Ok(output);
        }
        self.set_item_state(task, target, output).await
    }

    /// Moves the task's item to `target` and records where and when (by Plane's clock) it
    /// landed.
    async fn set_item_state(
        &self,
        task: &Task,
        target: crate::ids::StateId,
        mut output: JobOutput,
    ) -> Result<JobOutput, StepError> {
        let ports = &self.ports;
        let at = match ports
            .tracker
            .set_state(&task.project, &task.issue, &target)
            .await
        {
            Ok(at) => at,
            Err(err) => {
                // After an ambiguous failure the move may have landed with its answer lost:
                // look before retrying (SPEC §4).
                let landed = if err.class().is_outage() {
                    ports
                        .tracker
                        .work_item(&task.project, &task.issue)
                        .await
                        .ok()
                        .filter(|item| item.state == target)
                        .map(|item| item.updated_at)
                } else {
                    None
                };
                match landed {
                    Some(at) => at,
                    None => return step!(Service::Plane, Err::<JobOutput, _>(err)),
                }
            }
        };
        output.tracker_state = Some(target);
        output.tracker_at = Some(at);
        Ok(output)
    }

    /// Whether orch's comment `external_id` on the task's item was posted (by Plane's clock)
    /// before `at`; `false` when it is not there yet.
    async fn posted_before(
        &self,
        task: &Task,
        external_id: &str,
        at: crate::time::Timestamp,
    ) -> Result<bool, StepError> {
        let comments = step!(
            Service::Plane,
            self.ports
                .tracker
                .comments(&task.project, &task.issue)
                .await
        )?;
        Ok(comments.iter().any(|comment| {
            comment.external_source.as_deref() == Some("orch")
                && comment.external_id.as_deref() == Some(external_id)
                && comment.created_at <= at
        }))
    }

    /// Gitea answers 405 "Please try again later" whenever its background checker has not
    /// marked the PR mergeable: while it is still checking, and also when it knows the PR
    /// conflicts (SPEC §1.1). So orch decides: the PR found merged at our head is
    /// `AlreadyMerged`; a local merge of base and head that conflicts is `NeedsRebase` (whatever
    /// Gitea's `mergeable` says: the local merge is decisive); a clean one means the checker is
    /// catching up, and the merge is retried with backoff. A failed look is retried too.
    async fn decide_try_later(
        &self,
        task: &Task,
        spec: &WorktreeSpec,
        pr: PrNumber,
        head_sha: &CommitSha,
        reason: &str,
    ) -> Result<MergeOutcome, StepError> {
        let pull = self
            .ports
            .forge
            .pull_request(&task.repo, pr)
            .await
            .map_err(|err| StepError {
                class: err.class(),
                service: Service::Gitea,
                message: format!(
                    "merge: try again later ({reason}); re-reading the pull request failed: {err}"
                ),
            })?;
        if pull.merged && &pull.head_sha == head_sha {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        let clean = self
            .ports
            .workspace
            .merges_cleanly(spec, head_sha)
            .await
            .map_err(|err| StepError {
                // The local check failing is orch's infrastructure: it waits, never blocks.
                class: ErrorClass::Unavailable { retry_after: None },
                service: Service::Git,
                message: format!(
                    "merge: try again later ({reason}); the local merge check failed: {err}"
                ),
            })?;
        if !clean {
            tracing::info!(task = %task.id, pr = pr.get(), base = %task.base_branch, "gitea says try later and the head conflicts with the base");
            return Ok(MergeOutcome::NeedsRebase {
                reason: format!("conflicts with {}", task.base_branch),
            });
        }
        // The checker catches up within seconds: retries count, and a PR Gitea still refuses
        // after all of them blocks the task with the reason.
        let detail = match pull.mergeable {
            Some(false) => "it merges cleanly here; gitea's mergeability check has not caught up",
            _ => "it merges cleanly here",
        };
        Err(StepError {
            class: ErrorClass::Other,
            service: Service::Gitea,
            message: format!("merge: try again later ({reason}); {detail}"),
        })
    }

    /// The result of a failed step: an outage waits (no attempt used up, `waiting` shows
    /// it); anything else retryable retries up to `max_attempts`; the rest fails.
    fn after_error(&self, claimed: &ClaimedJob, max_attempts: u32, err: StepError) -> JobResult {
        let now = self.ports.clock.now();
        let retry_after = match err.class {
            ErrorClass::Unavailable { retry_after } => retry_after,
            _ => None,
        };
        if err.class.is_outage() {
            let waits = claimed.job.waits + 1;
            let jitter = jitter_from(&[claimed.job.id.0, i64::from(waits), now.as_millis()]);
            return JobResult::Wait {
                not_before: now + self.backoff.delay(waits, retry_after, jitter),
                error: err.message,
                service: err.service,
            };
        }
        let attempts = claimed.job.attempts;
        // A 404 may be a service's passing state (a deploy, a replica behind): it is retried
        // like any other failure before the job gives up and a person is told.
        let retryable = err.class.is_retryable() || err.class == ErrorClass::NotFound;
        if !retryable || attempts >= max_attempts {
            return JobResult::Failed { error: err.message };
        }
        let jitter = jitter_from(&[claimed.job.id.0, i64::from(attempts), now.as_millis()]);
        let delay: Duration = self.backoff.delay(attempts, retry_after, jitter);
        JobResult::Retry {
            not_before: now + delay,
            error: err.message,
        }
    }
}

/// What a notification sent again says, so a person who gets it twice knows why.
pub const MAY_REPEAT: &str = "(may be a repeat)";

/// The text a notification job sends on this attempt. A notifier has no idempotency key, so
/// a notification is delivered at least once, not exactly once: the job's claim records the
/// attempt before the message goes out, and its success after. A claim that counted before
/// this one (`Job::attempts` > 1) ended with neither a success nor an outage's wait: orch died
/// between sending and recording (the next boot reclaimed its lease), or the notifier failed
/// in a way that does not prove nothing went out. The message may then already be with the
/// person, and this one says it may be a repeat.
fn notification_text<'a>(text: &'a str, job: &Job) -> std::borrow::Cow<'a, str> {
    if job.attempts > 1 {
        std::borrow::Cow::Owned(format!("{text} {MAY_REPEAT}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn invalid(message: String) -> StepError {
    StepError {
        class: ErrorClass::Invalid,
        service: Service::Git,
        message,
    }
}

fn obsolete(reason: &str) -> JobResult {
    JobResult::Obsolete {
        reason: format!("not run: {reason}"),
    }
}

/// Whether `job` still has something to do for `task`: `Err(reason)` when the task has moved
/// on since the job was written (it ended, or left the job's stage), so the job must have no
/// outward effect. A person's merge or cancel ends the task's work this way too.
pub fn still_current(job: &Job, task: &Task) -> Result<(), String> {
    let moved_on = |what: &str| {
        Err(format!(
            "{} is {} now; the {what} was for {}",
            task.work_item, task.stage, job.stage
        ))
    };
    match job.kind() {
        JobKind::Agent(agent) => {
            if task.stage.is_terminal() || task.stage != job.stage {
                return moved_on(&format!("{agent} run"));
            }
            if task.status != TaskStatus::Working {
                return Err(format!("{} is {} now", task.work_item, task.status));
            }
            Ok(())
        }
        JobKind::PublishBranch | JobKind::Merge => {
            if task.stage.is_terminal() || task.stage != job.stage {
                return moved_on(job.kind().as_str());
            }
            Ok(())
        }
        JobKind::TrackerComment | JobKind::ForgeReview if task.stage == Stage::Cancelled => {
            moved_on(job.kind().as_str())
        }
        JobKind::TrackerComment
        | JobKind::ForgeReview
        | JobKind::TrackerState
        | JobKind::ClosePr
        | JobKind::Notify
        | JobKind::Cleanup => Ok(()),
    }
}

/// The outside service an action talks to, for outages.
fn service_of(kind: JobKind) -> Service {
    match kind {
        JobKind::TrackerComment | JobKind::TrackerState => Service::Plane,
        JobKind::PublishBranch | JobKind::ForgeReview | JobKind::Merge | JobKind::ClosePr => {
            Service::Gitea
        }
        JobKind::Notify => Service::Telegram,
        JobKind::Agent(_) | JobKind::Cleanup => Service::Git,
    }
}

#[cfg(test)]
mod tests;
