//! Gitea's events and the forge's facts: CI statuses (F-3), pushes, closed pull requests.

use tracing::info;

use crate::domain::{CiState, Stage, Task, TaskStatus};
use crate::event::Origin;
use crate::ids::{BranchName, CommitSha, PrNumber, RepoSlug, TaskId};
use crate::orchestrator::plan::Plan;
use crate::orchestrator::{HandleError, Handled, Orchestrator};
use crate::pipeline::{evaluate_exit_gate, transition_of, ExitGate, GateReport, OnPass};
use crate::ports::PrState;

impl Orchestrator {
    /// `ci_status`: resolve the sha to a task (F-3), then act on the state.
    pub(super) async fn ci_status(
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
    pub(super) async fn forge_observed(
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
    pub(super) fn gate_plan(&self, task: &Task, report: &GateReport) -> Option<Plan> {
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
    pub(super) async fn branch_pushed(
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
    pub(super) async fn pr_closed(
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
}

/// Whether the task's head is one that was sent back to development.
fn head_was_sent_back(task: &Task) -> bool {
    task.sent_back_sha.is_some() && task.sent_back_sha == task.head_sha
}
