//! `World`: every fake wired to the core services, driven step by step like a tiny daemon.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Grace, PipelineConfig, ProjectConfig};
use crate::domain::{CiState, StateRole, Task};
use crate::event::{Event, Origin};
use crate::executor::Executor;
use crate::fakes::store::MemStore;
use crate::fakes::transcript::{self, Log, Snapshot};
use crate::fakes::{
    FakeAgentRunner, FakeClock, FakeForge, FakeTracker, FakeWorkspace, RecordingNotifier,
};
use crate::ids::{BootId, BranchName, IssueId, JobId, ProjectId, RepoSlug, UserId};
use crate::orchestrator::{HandleError, Handled, Orchestrator};
use crate::ports::{ClaimKinds, ClaimRequest, Clock, Ports, StateNames, Store, WorkItem};
use crate::reconciler::{PassReport, Reconciler};

/// The fakes, the orchestrator, the executor and a reconciler, for one project `ET` bound to
/// `acme/widgets`.
pub struct World {
    pub clock: Arc<FakeClock>,
    pub store: Arc<MemStore>,
    pub tracker: Arc<FakeTracker>,
    pub forge: Arc<FakeForge>,
    pub workspace: Arc<FakeWorkspace>,
    pub agents: Arc<FakeAgentRunner>,
    pub notifier: Arc<RecordingNotifier>,
    pub ports: Ports,
    pub config: PipelineConfig,
    pub orchestrator: Arc<Orchestrator>,
    pub executor: Executor,
    pub reconciler: Reconciler,
    pub person: UserId,
    boot: BootId,
    /// What happened so far, for `transcript`.
    log: Mutex<Log>,
}

/// The job lease a `World` takes.
const LEASE: Duration = Duration::from_secs(60);

impl World {
    /// A world with one project and the default pipeline config.
    pub fn new() -> World {
        World::with_config(|_| {})
    }

    /// A world with more projects (`ET`, `P2`, …, each with its own repo and states).
    pub fn with_projects(count: usize) -> World {
        World::with_config(|config| {
            for index in 1..count {
                let mut project = config.projects[0].clone();
                project.key = format!("project-{}", index + 1);
                project.plane_project_id =
                    ProjectId::new(format!("proj-{}", index + 1)).expect("valid id");
                project.repo =
                    RepoSlug::new(&format!("acme/repo{}", index + 1)).expect("valid repo");
                project.work_item_prefix = format!("P{}", index + 1);
                config.projects.push(project);
            }
        })
    }

    /// A world whose config `change` may edit (the first project exists already).
    pub fn with_config(change: impl FnOnce(&mut PipelineConfig)) -> World {
        let project = ProjectConfig {
            key: "widgets".to_owned(),
            plane_project_id: ProjectId::new("proj-1").expect("valid id"),
            repo: RepoSlug::new("acme/widgets").expect("valid repo"),
            work_item_prefix: "ET".to_owned(),
            base_branch: BranchName::new("main").expect("valid branch"),
            states: StateNames::default(),
        };
        let mut config = PipelineConfig {
            projects: vec![project],
            grace: Grace::uniform(Duration::from_secs(300)),
            ..PipelineConfig::default()
        };
        change(&mut config);
        let clock = Arc::new(FakeClock::new());
        let store = Arc::new(MemStore::new());
        let tracker = Arc::new(FakeTracker::new());
        tracker.set_clock(clock.clone());
        for project in &config.projects {
            tracker.add_project(&project.plane_project_id, &project.states);
        }
        let forge = Arc::new(FakeForge::new());
        let workspace = Arc::new(FakeWorkspace::new().with_forge(forge.clone()));
        let agents = Arc::new(FakeAgentRunner::new(workspace.clone()));
        let notifier = Arc::new(RecordingNotifier::new());
        let ports = Ports {
            store: store.clone(),
            tracker: tracker.clone(),
            forge: forge.clone(),
            workspace: workspace.clone(),
            agents: agents.clone(),
            notifier: notifier.clone(),
            clock: clock.clone(),
        };
        let orchestrator = Arc::new(
            Orchestrator::new(ports.clone(), config.clone()).with_own_user(tracker.own_user()),
        );
        let executor = Executor::new(ports.clone(), config.clone());
        let reconciler = Reconciler::new(ports.clone(), config.clone(), orchestrator.clone());
        World {
            clock,
            store,
            tracker,
            forge,
            workspace,
            agents,
            notifier,
            ports,
            config,
            orchestrator,
            executor,
            reconciler,
            person: UserId::new("ada").expect("valid id"),
            boot: BootId::new("boot-1").expect("valid id"),
            log: Mutex::new(Log::default()),
        }
    }

    /// The first project.
    pub fn project(&self) -> &ProjectConfig {
        &self.config.projects[0]
    }

    /// Creates work item `sequence` of the first project in state Backlog.
    pub fn add_item(&self, sequence: u32, title: &str) -> WorkItem {
        self.add_item_in(0, sequence, title)
    }

    /// Creates work item `sequence` of project number `project_index` in state Backlog.
    pub fn add_item_in(&self, project_index: usize, sequence: u32, title: &str) -> WorkItem {
        let project = &self.config.projects[project_index].plane_project_id;
        let item = WorkItem {
            id: IssueId::new(format!("{project}-issue-{sequence}")).expect("valid id"),
            project: project.clone(),
            sequence_id: sequence,
            title: title.to_owned(),
            description: format!("Description of {title}"),
            state: FakeTracker::state_id_for(project, "Backlog"),
            updated_at: self.tracker.plane_now(),
        };
        self.tracker.put_item(item.clone());
        item
    }

    /// The state id a role has in `item`'s project.
    pub fn state_of_role(&self, item: &WorkItem, role: StateRole) -> crate::ids::StateId {
        let project = self
            .config
            .project(&item.project)
            .expect("item of a configured project");
        let name = transcript::state_name_of_role(&project.states, role)
            .unwrap_or_else(|| panic!("no state configured for {role:?}"));
        FakeTracker::state_id_for(&item.project, name)
    }

    /// A person moves the item; the webhook is lost (nothing is handled).
    pub fn move_silently(&self, item: &WorkItem, role: StateRole) -> WorkItem {
        let state = self.state_of_role(item, role);
        self.tracker
            .move_item(&item.id, state, self.tracker.plane_now())
            .expect("item exists")
    }

    /// A person moves the item and its webhook is delivered.
    pub async fn move_item(
        &self,
        item: &WorkItem,
        role: StateRole,
    ) -> Result<Handled, HandleError> {
        self.record_outside().await;
        let moved = self.move_silently(item, role);
        let header = {
            let log = self.lock_log();
            format!(
                "{} moves {} to {}",
                self.person,
                log.item_name(&moved),
                log.state_name(&moved.state)
            )
        };
        let seen = Snapshot::of(self).await;
        self.lock_log().absorb(seen);
        let event = Event::WorkItemMoved {
            item: moved,
            actor: Some(self.person.clone()),
        };
        let handled = self.orchestrator.handle(&event, Origin::Webhook).await;
        self.record(header, vec![transcript::handled_text(&handled)], None)
            .await;
        handled
    }

    /// Hands an event to the orchestrator as a webhook.
    pub async fn deliver(&self, event: Event) -> Result<Handled, HandleError> {
        self.handle(event, Origin::Webhook).await
    }

    /// Hands an event to the orchestrator as if it came from `origin`.
    pub async fn handle(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        self.record_outside().await;
        let header = transcript::event_header(&self.lock_log(), &event, origin);
        let handled = self.orchestrator.handle(&event, origin).await;
        self.record(header, vec![transcript::handled_text(&handled)], None)
            .await;
        handled
    }

    /// One pass of the reconciler over the gates (F-1), recorded as a step.
    pub async fn reconcile_gates(&self) -> PassReport {
        self.record_pass("gates", self.reconciler.reconcile_gates_once())
            .await
    }

    /// One pass of the reconciler over Plane's items (F-2), recorded as a step.
    pub async fn reconcile_tracker(&self) -> PassReport {
        self.record_pass("tracker", self.reconciler.reconcile_tracker_once())
            .await
    }

    /// Runs the reconciler's `pass` (it starts when awaited) as a step.
    async fn record_pass(
        &self,
        name: &str,
        pass: impl std::future::Future<Output = PassReport>,
    ) -> PassReport {
        self.record_outside().await;
        let report = pass.await;
        let notes = transcript::pass_notes(&self.lock_log(), &report);
        self.record(format!("reconciler: {name} pass"), notes, None)
            .await;
        report
    }

    /// What happened since the last call (since the world was made, the first time): each
    /// step (a person's move, an event, a job's run) with what it changed in the fakes.
    pub async fn transcript(&self) -> String {
        self.record_outside().await;
        self.lock_log().take()
    }

    /// Forgets what happened so far: the next `transcript` starts here.
    pub async fn clear_transcript(&self) {
        self.transcript().await;
    }

    /// Records what the test changed in the fakes directly since the last step.
    async fn record_outside(&self) {
        let now = Snapshot::of(self).await;
        self.lock_log().outside(now);
    }

    /// Records a step that ends now.
    async fn record(&self, header: String, notes: Vec<String>, job: Option<JobId>) {
        let now = Snapshot::of(self).await;
        self.lock_log().step(header, notes, now, job);
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("transcript mutex")
    }

    /// The task of `item`.
    pub async fn task(&self, item: &WorkItem) -> Task {
        self.store
            .task_by_issue(&item.id)
            .await
            .expect("store works")
            .expect("task exists")
    }

    /// CI reports `state` at the task's head. With `deliver`, its webhook arrives too.
    pub async fn ci(&self, item: &WorkItem, state: CiState, deliver: bool) -> Option<Handled> {
        let task = self.task(item).await;
        let sha = task.head_sha.expect("task has a head");
        self.record_outside().await;
        self.forge.set_status(&task.repo, &sha, state);
        if !deliver {
            return None;
        }
        // The status is told by its webhook's step.
        let seen = Snapshot::of(self).await;
        self.lock_log().absorb(seen);
        Some(
            self.deliver(Event::CiStatusReported {
                repo: task.repo,
                sha,
                state,
            })
            .await
            .expect("handled"),
        )
    }

    /// Runs every due job to its end, feeding each end to the orchestrator, until none is due.
    /// Returns how many jobs ran.
    pub async fn run_jobs(&self) -> u32 {
        self.run_jobs_of(&[
            ClaimKinds::Actions,
            ClaimKinds::Agents { per_repo_limit: 1 },
        ])
        .await
    }

    /// `run_jobs` for the given kinds only.
    pub async fn run_jobs_of(&self, kinds_in_order: &[ClaimKinds]) -> u32 {
        self.record_outside().await;
        let mut ran = 0;
        for _ in 0..10_000 {
            let mut claimed = None;
            for &kinds in kinds_in_order {
                let request = ClaimRequest {
                    owner: self.boot.clone(),
                    kinds,
                    now: self.clock.now(),
                    lease: LEASE,
                };
                claimed = self.store.claim_next(&request).await.expect("claim works");
                if claimed.is_some() {
                    break;
                }
            }
            let Some(claimed) = claimed else { break };
            let task = self
                .store
                .task(claimed.job.task)
                .await
                .expect("store works")
                .expect("job of a task");
            let result = if claimed.job.kind().is_agent() {
                self.executor.run_agent_to_end(&claimed, &task).await
            } else {
                self.executor.run_action(&claimed, &task).await
            };
            let ended = result.is_end();
            let header = transcript::job_header(&self.lock_log(), &claimed.job, &result);
            self.store
                .finish_job(claimed.job.id, &claimed.attempt, result, self.clock.now())
                .await
                .expect("finish works");
            let mut notes = Vec::new();
            if ended {
                let handled = self
                    .orchestrator
                    .handle(
                        &Event::JobFinished {
                            job: claimed.job.id,
                        },
                        Origin::Worker,
                    )
                    .await
                    .expect("job end handled");
                if handled.changed {
                    notes.push(format!("handled: {}", handled.note));
                }
            }
            self.record(header, notes, Some(claimed.job.id)).await;
            ran += 1;
        }
        ran
    }

    /// Runs due jobs, then moves the clock on by the backoff cap (5 min) so waiting and
    /// retried jobs come due, `rounds` times.
    pub async fn run_jobs_over_time(&self, rounds: u32) {
        for _ in 0..rounds {
            self.run_jobs().await;
            self.clock.advance(Duration::from_secs(301));
        }
        self.run_jobs().await;
    }

    /// Telegram messages so far.
    pub fn messages(&self) -> Vec<String> {
        self.notifier.messages()
    }
}

impl Default for World {
    fn default() -> World {
        World::new()
    }
}

impl World {
    /// The current fake time.
    pub fn clock_now(&self) -> crate::time::Timestamp {
        self.clock.now()
    }

    /// The work item id of item `sequence` of the first project.
    pub fn task_work_item(&self, sequence: u32) -> crate::ids::WorkItemId {
        crate::ids::WorkItemId::new(&self.project().work_item_prefix, sequence)
            .expect("valid prefix")
    }
}

impl World {
    /// Starts `item` and runs the analyst: the task awaits the analysis verdict.
    pub async fn to_analysis_verdict(&self, item: &WorkItem) {
        self.move_item(item, StateRole::InProgress)
            .await
            .expect("handled");
        self.run_jobs().await;
    }

    /// Up to the first CI result: analysis approved, developer done, branch pushed, PR open.
    pub async fn to_ci_wait(&self, item: &WorkItem) {
        self.to_analysis_verdict(item).await;
        self.move_item(item, StateRole::Approved)
            .await
            .expect("handled");
        self.run_jobs().await;
    }

    /// Up to the final verdict: CI green, the reviewer approved.
    pub async fn to_final_verdict(&self, item: &WorkItem) {
        self.to_ci_wait(item).await;
        self.ci(item, CiState::Success, true).await;
        self.run_jobs().await;
    }
}
