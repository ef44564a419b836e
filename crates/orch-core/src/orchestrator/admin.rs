//! The admin socket's events: `orch task retry` and `orch task cancel`.

use crate::domain::{Action, Stage, StateRole, Task};
use crate::event::Origin;
use crate::ids::TaskId;
use crate::orchestrator::plan::Plan;
use crate::orchestrator::{Canceller, HandleError, Handled, Orchestrator};
use crate::pipeline::transition_of;
use crate::ports::WorkItem;

impl Orchestrator {
    /// `orch task retry`: run the stage's agent again.
    pub(super) async fn retry(&self, task: TaskId) -> Result<Handled, HandleError> {
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
    pub(super) async fn cancel(
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
}
