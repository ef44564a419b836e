//! The `AgentRunner` contract suite, run against `FakeAgentRunner` and orch-agent's runner
//! with real processes.

use std::future::Future;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::domain::{Agent, ProcessRecord, Stage};
use crate::fakes::contract::{case, run_suite, Case};
use crate::ids::{BranchName, JobId, RepoSlug, TaskId, WorkItemId};
use crate::ports::{AgentOutcome, AgentRequest, AgentRunner, RunningAgent};

/// What the analyst started by a fixture's request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentBehaviour {
    /// Writes `analysis.md` = `Analysis of {title}` into its output directory and exits 0.
    WritesItsAnalysis,
    /// Writes nothing and exits with code 1.
    ExitsWithOne,
    /// Runs until it is cancelled, in a process group with children (for real processes).
    Hangs,
}

/// A runner set up so that the analyst does what a request's `AgentBehaviour` says.
#[async_trait]
pub trait AgentFixture: Send + Sync {
    fn runner(&self) -> &dyn AgentRunner;

    /// A request for the analyst of a fresh work item (titled `title`) that behaves so.
    fn request(&self, behaviour: AgentBehaviour, title: &str) -> AgentRequest;

    /// The text of file `name` of the request's output directory, once the run ended.
    async fn output(&self, request: &AgentRequest, name: &str) -> Option<String>;

    /// Whether any process of the group `process` names still runs (for runners that report
    /// processes).
    fn group_runs(&self, process: &ProcessRecord) -> bool;
}

/// The analyst's request for `work_item` titled `title`, in `worktree` with `output_dir`: what
/// a fixture's `request` returns once it arranged the behaviour.
pub fn analyst_request(
    work_item: WorkItemId,
    title: &str,
    worktree: PathBuf,
    output_dir: PathBuf,
) -> AgentRequest {
    AgentRequest {
        agent: Agent::Analyst,
        task: TaskId(i64::from(work_item.sequence())),
        job: JobId(42),
        attempt: 1,
        stage: Stage::Analysis,
        repo: RepoSlug::new("acme/widgets").expect("valid repo"),
        branch: BranchName::for_work_item(&work_item, title),
        base_branch: BranchName::new("main").expect("valid branch"),
        work_item,
        title: title.to_owned(),
        description: format!("Do {title}."),
        analysis: None,
        feedback: None,
        worktree,
        output_dir,
        analysis_file: None,
        mounts: Vec::new(),
    }
}

/// Runs the `AgentRunner` contract on a fresh fixture per case from `make` (given the case's
/// name).
pub async fn agent_runner<F, Fut>(make: impl FnMut(&'static str) -> Fut)
where
    F: AgentFixture + 'static,
    Fut: Future<Output = F>,
{
    let cases: Vec<&Case<dyn AgentFixture>> = CASES.iter().collect();
    run_suite("AgentRunner", &cases, make, as_fixture::<F>).await;
}

fn as_fixture<F: AgentFixture + 'static>(fixture: &F) -> &(dyn AgentFixture + 'static) {
    fixture
}

async fn run(fixture: &dyn AgentFixture, request: AgentRequest) -> AgentOutcome {
    assert_eq!(request.agent, Agent::Analyst);
    fixture
        .runner()
        .start(request)
        .await
        .expect("the analyst starts")
        .wait()
        .await
}

/// Waits for `running`, cancelling it twice once the wait is under way (as the worker does
/// when the task moves on).
async fn wait_cancelling_once_waiting(running: Box<dyn RunningAgent>) -> AgentOutcome {
    let cancel = running.cancel_handle();
    let mut wait = running.wait();
    let mut cancelled = false;
    std::future::poll_fn(|cx| {
        let poll = wait.as_mut().poll(cx);
        if poll.is_pending() && !cancelled {
            cancelled = true;
            cancel.cancel();
            cancel.cancel();
            cx.waker().wake_by_ref();
        }
        poll
    })
    .await
}

pub(super) const CASES: &[Case<dyn AgentFixture>] = &[
    case!(
        an_agent_that_exits_zero_succeeds_and_its_output_is_there,
        |fixture| {
            let request = fixture.request(AgentBehaviour::WritesItsAnalysis, "Add a thing");
            assert_eq!(run(fixture, request.clone()).await, AgentOutcome::Succeeded);
            assert_eq!(
                fixture.output(&request, "analysis.md").await.as_deref(),
                Some("Analysis of Add a thing")
            );
        }
    ),
    case!(an_agents_exit_code_reaches_the_outcome, |fixture| {
        let request = fixture.request(AgentBehaviour::ExitsWithOne, "Fail at it");
        assert_eq!(
            run(fixture, request.clone()).await,
            AgentOutcome::Failed { code: Some(1) }
        );
        assert_eq!(fixture.output(&request, "analysis.md").await, None);
    }),
    // Cancelled twice while waiting, as the worker may when the task moves on.
    case!(cancel_ends_a_running_agent_and_its_whole_group, |fixture| {
        let request = fixture.request(AgentBehaviour::Hangs, "Take forever");
        let running = fixture
            .runner()
            .start(request.clone())
            .await
            .expect("the analyst starts");
        let process = running.process();
        if let Some(process) = &process {
            assert!(fixture.group_runs(process), "the agent runs: {process:?}");
        }
        assert_eq!(
            wait_cancelling_once_waiting(running).await,
            AgentOutcome::Cancelled
        );
        if let Some(process) = process {
            assert!(
                !fixture.group_runs(&process),
                "cancel ends the whole process group: {process:?}"
            );
        }
        assert_eq!(fixture.output(&request, "analysis.md").await, None);
    }),
    case!(
        an_agent_cancelled_before_the_wait_ends_cancelled,
        |fixture| {
            let request = fixture.request(AgentBehaviour::Hangs, "Never mind");
            let running = fixture
                .runner()
                .start(request)
                .await
                .expect("the analyst starts");
            running.cancel_handle().cancel();
            assert_eq!(running.wait().await, AgentOutcome::Cancelled);
        }
    ),
];
