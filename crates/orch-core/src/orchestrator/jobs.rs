//! The worker's events: a job ended, or jobs wait on a service that is out.

use tracing::debug;

use crate::domain::{
    Action, Agent, Job, JobKind, JobOutput, JobSpec, JobStatus, MergeOutcome, ReviewVerdict,
    Service, Stage, StateRole, Task, TaskStatus,
};
use crate::event::Origin;
use crate::ids::{CommitSha, JobId, TaskId};
use crate::orchestrator::plan::Plan;
use crate::orchestrator::{HandleError, Handled, Orchestrator};
use crate::pipeline::{check_artifact, evaluate_exit_gate, transition_of, QgCheck};
use crate::time::Timestamp;

impl Orchestrator {
    /// `job_finished`: agent jobs get their artifact check; action jobs record results.
    pub(super) async fn job_finished(&self, job_id: JobId) -> Result<Handled, HandleError> {
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
    pub(super) async fn service_degraded(
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
