//! Plane's events: an item moved (a task starts, a verdict, a person cancels or ends it).

use tracing::info;

use crate::config::ProjectConfig;
use crate::domain::{
    Action, JobSpec, JobStatus, NewTask, Stage, StateRole, Task, TaskStatus, Verdict,
};
use crate::event::Origin;
use crate::ids::{BranchName, UserId, WorkItemId};
use crate::orchestrator::plan::Plan;
use crate::orchestrator::{Canceller, HandleError, Handled, Orchestrator};
use crate::pipeline::{transition_of, ExitGate, OnPass};
use crate::ports::WorkItem;
use crate::time::Timestamp;

impl Orchestrator {
    pub(super) async fn work_item_moved(
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
}
