//! `Plan`: a transition a handler decided, before the store sees it.

use crate::domain::{Action, Agent, JobSpec, Stage, StateRole, Task, TaskStatus};
use crate::ids::JobId;
use crate::pipeline::transition_of;
use crate::ports::WorkItem;
use crate::time::Timestamp;

/// A decided transition, before the store sees it.
pub(super) struct Plan {
    pub(super) next: Task,
    /// Whether the task was blocked before this transition (a new block stamps its time).
    pub(super) was_blocked: bool,
    pub(super) jobs: Vec<JobSpec>,
    pub(super) cancel_active_work: bool,
    pub(super) consumes_job: Option<JobId>,
    pub(super) note: String,
}

impl Plan {
    pub(super) fn new(task: &Task, note: impl Into<String>) -> Plan {
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
    pub(super) fn job(&mut self, action: Action, what: &str) {
        let key = format!(
            "{}:{}:{what}:v{}",
            self.next.id,
            action.kind(),
            self.next.version
        );
        self.jobs.push(JobSpec::new(action, key));
    }

    pub(super) fn agent(&mut self, agent: Agent, feedback: Option<String>) {
        self.jobs.push(JobSpec::agent(agent, feedback));
    }

    pub(super) fn notify(&mut self, text: String) {
        self.job(Action::Notify { text }, "notify");
    }

    pub(super) fn tracker_state(&mut self, state: StateRole) {
        self.job(
            Action::TrackerState {
                state,
                gate_comment: None,
            },
            "state",
        );
    }

    /// The item's state as a person left it, now known to orch (Plane's clock).
    pub(super) fn saw_item(&mut self, item: &WorkItem) {
        self.next.tracker_state = Some(item.state.clone());
        self.next.tracker_seen_at = Some(item.updated_at);
    }

    /// Leaves the current gate: the task works again.
    pub(super) fn close_gate(&mut self) {
        self.next.status = TaskStatus::Working;
        self.next.gate_opened_at = None;
        self.next.verdicts_after = None;
        self.next.feedback_after = None;
    }

    /// Enters `stage` and runs its agent (`STAGE_TRANSITIONS`).
    pub(super) fn enter(&mut self, stage: Stage) {
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
    pub(super) fn send_back_to_development(&mut self) {
        self.next.stage = Stage::Development;
        self.close_gate();
        self.next.fix_rounds = 0;
        self.next.last_fix_sha = None;
        self.next.sent_back_sha = self.next.head_sha.clone();
    }

    /// Opens the stage's human gate. With an awaiting state, verdicts count once orch's
    /// move there has landed (its job end records Plane's time); without one, from what
    /// orch knows now.
    pub(super) fn open_gate(
        &mut self,
        awaiting_configured: bool,
        gate_comment: String,
        now: Timestamp,
    ) {
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
    pub(super) fn block(&mut self, reason: String) {
        self.notify(format!("{} is blocked: {reason}", self.next.work_item));
        self.next.status = TaskStatus::Blocked { reason };
    }

    /// Ends the task in `done`: its running and queued work stops, its worktree goes.
    pub(super) fn end_done(&mut self) {
        self.next.stage = Stage::Done;
        self.close_gate();
        self.cancel_active_work = true;
        self.job(Action::Cleanup, "cleanup");
    }
}
