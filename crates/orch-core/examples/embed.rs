//! Embedding orch-core: one work item driven from In Progress to `done` with in-memory adapters.
//!
//! An embedder brings its own adapters (here the fakes of feature `fakes`), builds the
//! `Orchestrator` and `Executor` over them, and runs the loop a daemon would run: feed events,
//! claim jobs, execute them, report their ends. Run it with
//! `cargo run -p orch-core --features fakes --example embed`.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use orch_core::config::{PipelineConfig, ProjectConfig};
use orch_core::domain::{CiState, StateRole};
use orch_core::event::{Event, Origin};
use orch_core::fakes::store::MemStore;
use orch_core::fakes::{
    FakeAgentRunner, FakeClock, FakeForge, FakeTracker, FakeWorkspace, RecordingNotifier,
};
use orch_core::ids::{BootId, BranchName, IssueId, ProjectId, RepoSlug, UserId};
use orch_core::ports::{ClaimKinds, ClaimRequest, Clock, Ports, StateNames, Store, WorkItem};
use orch_core::{Executor, Orchestrator};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // 1. Adapters. A real embedder plugs in Plane, Gitea, git, its agent runner and SQLite here.
    let project = ProjectConfig {
        key: "widgets".to_owned(),
        plane_project_id: ProjectId::new("proj-1")?,
        repo: RepoSlug::new("acme/widgets")?,
        work_item_prefix: "ET".to_owned(),
        base_branch: BranchName::new("main")?,
        states: StateNames::default(),
    };
    let config = PipelineConfig {
        projects: vec![project.clone()],
        ..PipelineConfig::default()
    };
    let clock = Arc::new(FakeClock::new());
    let store = Arc::new(MemStore::new());
    let tracker = Arc::new(FakeTracker::new());
    tracker.add_project(&project.plane_project_id, &project.states);
    let forge = Arc::new(FakeForge::new());
    let workspace = Arc::new(FakeWorkspace::new().with_forge(forge.clone()));
    let ports = Ports {
        store: store.clone(),
        tracker: tracker.clone(),
        forge: forge.clone(),
        workspace: workspace.clone(),
        agents: Arc::new(FakeAgentRunner::new(workspace)),
        notifier: Arc::new(RecordingNotifier::new()),
        clock: clock.clone(),
    };

    // 2. The services.
    let orchestrator =
        Orchestrator::new(ports.clone(), config.clone()).with_own_user(tracker.own_user());
    let executor = Executor::new(ports, config);
    let person = UserId::new("ada")?;
    let boot = BootId::new("embed")?;

    // 3. A work item a person moves to In Progress.
    let item = WorkItem {
        id: IssueId::new("issue-1")?,
        project: project.plane_project_id.clone(),
        sequence_id: 1,
        title: "Fix login redirect loop".to_owned(),
        description: "Users bounce between /login and /.".to_owned(),
        state: FakeTracker::state_id_for(&project.plane_project_id, "Backlog"),
        updated_at: clock.now(),
    };
    tracker.put_item(item.clone());
    let step = |what: &str| println!("{what}");

    let moves = [
        StateRole::InProgress,
        StateRole::Approved,
        StateRole::Approved,
    ];
    for (index, role) in moves.into_iter().enumerate() {
        if index == 2 {
            // CI reports green for the pushed head: Gitea's status webhook.
            let task = store.task_by_issue(&item.id).await?.ok_or("no task")?;
            let sha = task.head_sha.ok_or("no head")?;
            forge.set_status(&task.repo, &sha, CiState::Success);
            let event = Event::CiStatusReported {
                repo: task.repo,
                sha,
                state: CiState::Success,
            };
            let handled = orchestrator.handle(&event, Origin::Webhook).await?;
            step(&format!(
                "ci success        -> {} ({})",
                handled.stage.map_or("-".into(), |s| s.to_string()),
                handled.note
            ));
            run_jobs(
                &store,
                &orchestrator,
                &executor,
                &boot,
                clock.as_ref(),
                &step,
            )
            .await?;
        }
        let state =
            FakeTracker::state_id_for(&project.plane_project_id, state_name(&project.states, role));
        let moved = tracker
            .move_item(&item.id, state, clock.now())
            .ok_or("no item")?;
        let handled = orchestrator
            .handle(
                &Event::WorkItemMoved {
                    item: moved,
                    actor: Some(person.clone()),
                },
                Origin::Webhook,
            )
            .await?;
        step(&format!(
            "plane {:<11} -> {} ({})",
            format!("{role:?}"),
            handled.stage.map_or("-".into(), |s| s.to_string()),
            handled.note
        ));
        run_jobs(
            &store,
            &orchestrator,
            &executor,
            &boot,
            clock.as_ref(),
            &step,
        )
        .await?;
        clock.advance(Duration::from_secs(60));
    }

    let task = store.task_by_issue(&item.id).await?.ok_or("no task")?;
    println!(
        "{} ended at stage {} with {}",
        task.work_item,
        task.stage,
        task.pr.map_or("no PR".into(), |pr| format!("PR {pr}"))
    );
    Ok(())
}

/// The worker loop: claim due jobs, execute them, report their ends to the orchestrator.
async fn run_jobs(
    store: &Arc<MemStore>,
    orchestrator: &Orchestrator,
    executor: &Executor,
    boot: &BootId,
    clock: &dyn Clock,
    step: &dyn Fn(&str),
) -> Result<(), Error> {
    loop {
        let mut claimed = None;
        for kinds in [
            ClaimKinds::Actions,
            ClaimKinds::Agents { per_repo_limit: 1 },
        ] {
            let request = ClaimRequest {
                owner: boot.clone(),
                kinds,
                now: clock.now(),
                lease: Duration::from_secs(60),
            };
            claimed = store.claim_next(&request).await?;
            if claimed.is_some() {
                break;
            }
        }
        let Some(claimed) = claimed else {
            return Ok(());
        };
        let task = store
            .task(claimed.job.task)
            .await?
            .ok_or("job without a task")?;
        let result = if claimed.job.kind().is_agent() {
            executor.run_agent_to_end(&claimed, &task).await
        } else {
            executor.run_action(&claimed, &task).await
        };
        let ended = result.is_end();
        store
            .finish_job(claimed.job.id, &claimed.attempt, result, clock.now())
            .await?;
        if ended {
            let handled = orchestrator
                .handle(
                    &Event::JobFinished {
                        job: claimed.job.id,
                    },
                    Origin::Worker,
                )
                .await?;
            if handled.changed {
                let stage = handled.stage.map_or("-".into(), |s| s.to_string());
                step(&format!(
                    "job {:<14} -> {stage} ({})",
                    claimed.job.kind().to_string(),
                    handled.note
                ));
            } else {
                step(&format!("job {:<14} done", claimed.job.kind().to_string()));
            }
        }
    }
}

fn state_name(names: &StateNames, role: StateRole) -> &str {
    match role {
        StateRole::InProgress => &names.in_progress,
        StateRole::Approved => &names.approved,
        StateRole::Rejected => &names.rejected,
        StateRole::Done => &names.done,
        StateRole::Awaiting => names.awaiting.as_deref().unwrap_or("In Review"),
        StateRole::Cancelled => names.cancelled.as_deref().unwrap_or("Cancelled"),
    }
}
