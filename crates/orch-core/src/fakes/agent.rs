//! `FakeAgentRunner`: agents that act on a `FakeWorkspace` as a script says.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;

use crate::domain::{Agent, ProcessRecord};
use crate::fakes::workspace::FakeWorkspace;
use crate::ids::WorkItemId;
use crate::ports::{
    AgentError, AgentOutcome, AgentRequest, AgentRunner, CancelHandle, RunningAgent,
};

/// What one run of a fake agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeStep {
    /// The agent's normal work: analysis, a commit, or an approving review.
    Succeed,
    /// Exit code 1, nothing written.
    Fail,
    /// Runs until cancelled.
    Hang,
    /// Reviewer: a review asking for changes.
    RequestChanges,
    /// Exit 0 without writing its artifact or committing.
    WriteNothing,
    /// Developer: changes left uncommitted (orch must commit them).
    LeaveUncommitted,
    /// A bug: waiting for the run panics (the worker running it must cope).
    Panic,
}

/// Runs fake agents against a `FakeWorkspace`.
#[derive(Debug)]
pub struct FakeAgentRunner {
    workspace: Arc<FakeWorkspace>,
    state: Mutex<RunnerState>,
}

#[derive(Debug, Default)]
struct RunnerState {
    scripts: BTreeMap<(WorkItemId, Agent), VecDeque<FakeStep>>,
    requests: Vec<AgentRequest>,
}

impl FakeAgentRunner {
    pub fn new(workspace: Arc<FakeWorkspace>) -> FakeAgentRunner {
        FakeAgentRunner {
            workspace,
            state: Mutex::new(RunnerState::default()),
        }
    }

    /// The next runs of `agent` for `work_item` take these steps; then `Succeed`.
    pub fn script(&self, work_item: &WorkItemId, agent: Agent, steps: &[FakeStep]) {
        let mut state = self.state.lock().expect("runner mutex");
        state
            .scripts
            .entry((work_item.clone(), agent))
            .or_default()
            .extend(steps.iter().copied());
    }

    /// Every request, in start order.
    pub fn requests(&self) -> Vec<AgentRequest> {
        self.state.lock().expect("runner mutex").requests.clone()
    }
}

#[async_trait]
impl AgentRunner for FakeAgentRunner {
    async fn start(&self, request: AgentRequest) -> Result<Box<dyn RunningAgent>, AgentError> {
        let step = {
            let mut state = self.state.lock().expect("runner mutex");
            state.requests.push(request.clone());
            state
                .scripts
                .get_mut(&(request.work_item.clone(), request.agent))
                .and_then(VecDeque::pop_front)
                .unwrap_or(FakeStep::Succeed)
        };
        Ok(Box::new(FakeRun {
            workspace: self.workspace.clone(),
            request,
            step,
            cancel: Arc::default(),
        }))
    }
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    waker: Option<Waker>,
}

struct FakeRun {
    workspace: Arc<FakeWorkspace>,
    request: AgentRequest,
    step: FakeStep,
    cancel: Arc<Mutex<CancelState>>,
}

/// Resolves when the run is cancelled.
struct Cancelled(Arc<Mutex<CancelState>>);

impl Future for Cancelled {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock().expect("cancel mutex");
        if state.cancelled {
            Poll::Ready(())
        } else {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[async_trait]
impl RunningAgent for FakeRun {
    fn process(&self) -> Option<ProcessRecord> {
        None
    }

    fn cancel_handle(&self) -> CancelHandle {
        let cancel = self.cancel.clone();
        CancelHandle::new(move || {
            let mut state = cancel.lock().expect("cancel mutex");
            state.cancelled = true;
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        })
    }

    async fn wait(self: Box<Self>) -> AgentOutcome {
        if self.cancel.lock().expect("cancel mutex").cancelled {
            return AgentOutcome::Cancelled;
        }
        let work_item = &self.request.work_item;
        let workspace = &self.workspace;
        match (self.step, self.request.agent) {
            (FakeStep::Hang, _) => {
                Cancelled(self.cancel.clone()).await;
                return AgentOutcome::Cancelled;
            }
            (FakeStep::Fail, _) => return AgentOutcome::Failed { code: Some(1) },
            (FakeStep::Panic, _) => panic!("a fake agent run panicked (FakeStep::Panic)"),
            (FakeStep::WriteNothing, _) => {}
            (_, Agent::Analyst) => {
                workspace.write_output(
                    work_item,
                    Agent::Analyst,
                    "analysis.md",
                    &format!("Analysis of {}", self.request.title),
                );
            }
            (FakeStep::LeaveUncommitted, Agent::Developer) => {
                workspace.leave_uncommitted(work_item)
            }
            (_, Agent::Developer) => {
                workspace.add_commit(work_item);
            }
            (step, Agent::Reviewer) => {
                let (review, verdict) = if step == FakeStep::RequestChanges {
                    ("Please handle the error case.", "request_changes")
                } else {
                    ("Looks good.", "approve")
                };
                workspace.write_output(work_item, Agent::Reviewer, "review.md", review);
                workspace.write_output(work_item, Agent::Reviewer, "verdict", verdict);
            }
        }
        AgentOutcome::Succeeded
    }
}
