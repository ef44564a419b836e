//! Every port contract suite run against its fake, with the fixtures that act on the fakes as
//! people, CI and agents act on the real services.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Agent, CiState, ProcessRecord};
use crate::fakes::contract::{self, AgentBehaviour, AgentFixture};
use crate::fakes::contract::{Delivered, NotifierFixture};
use crate::fakes::contract::{ForgeFixture, TrackerFixture, WorkspaceFixture};
use crate::fakes::notifier::NotifierFault;
use crate::fakes::store::MemStore;
use crate::fakes::RecordingNotifier;
use crate::fakes::{FakeAgentRunner, FakeClock, FakeForge, FakeStep, FakeTracker, FakeWorkspace};
use crate::ids::{CommitSha, IssueId, PrNumber, ProjectId, RepoSlug, UserId, WorkItemId};
use crate::ports::{
    AgentRequest, AgentRunner, Forge, Notifier, PrState, PreparedWorktree, StateNames, Tracker,
    WorkItem, Workspace, WorktreeSpec,
};

#[tokio::test]
async fn mem_store_keeps_the_store_contract() {
    contract::store(|_case| async { Box::new(MemStore::new()) }).await;
}

#[tokio::test]
async fn fake_tracker_keeps_the_tracker_contract() {
    contract::tracker(|_case| async { FakeTrackerFixture::new() }).await;
}

#[tokio::test]
async fn fake_forge_keeps_the_forge_contract() {
    contract::forge(|_case| async { FakeForgeFixture::default() }).await;
}

#[tokio::test]
async fn recording_notifier_keeps_the_notifier_contract() {
    contract::notifier(|_case| async {
        RecordingNotifier::new().with_links(contract::notifier::links())
    })
    .await;
}

#[tokio::test]
async fn fake_workspace_keeps_the_workspace_contract() {
    contract::workspace(|_case| async { FakeWorkspace::new() }).await;
}

#[tokio::test]
async fn fake_agent_runner_keeps_the_agent_runner_contract() {
    contract::agent_runner(|_case| async { FakeAgentFixture::new() }).await;
}

/// Plane in memory, on a clock that moves a second per change so changes are ordered.
struct FakeTrackerFixture {
    tracker: FakeTracker,
    clock: Arc<FakeClock>,
    project: ProjectId,
    items: Mutex<u32>,
}

impl FakeTrackerFixture {
    fn new() -> FakeTrackerFixture {
        let tracker = FakeTracker::new();
        let clock = Arc::new(FakeClock::new());
        tracker.set_clock(clock.clone());
        let project = ProjectId::new("project-1").expect("valid id");
        tracker.add_project(&project, &StateNames::default());
        FakeTrackerFixture {
            tracker,
            clock,
            project,
            items: Mutex::new(0),
        }
    }
}

#[async_trait]
impl TrackerFixture for FakeTrackerFixture {
    fn tracker(&self) -> &dyn Tracker {
        &self.tracker
    }

    fn project(&self) -> ProjectId {
        self.project.clone()
    }

    fn unknown_issue(&self) -> IssueId {
        IssueId::new("issue-nobody-made").expect("valid id")
    }

    async fn create_item(&self, title: &str, state_name: &str) -> IssueId {
        let sequence_id = {
            let mut items = self.items.lock().expect("items mutex");
            *items += 1;
            *items
        };
        let id = IssueId::new(format!("issue-{sequence_id}")).expect("valid id");
        self.clock.advance(Duration::from_secs(1));
        self.tracker.put_item(WorkItem {
            id: id.clone(),
            project: self.project.clone(),
            sequence_id,
            title: title.to_owned(),
            description: String::new(),
            state: FakeTracker::state_id_for(&self.project, state_name),
            updated_at: self.tracker.plane_now(),
        });
        id
    }

    async fn person_comments(&self, issue: &IssueId, text: &str) {
        self.clock.advance(Duration::from_secs(1));
        let person = UserId::new("a-person").expect("valid id");
        self.tracker
            .add_human_comment(issue, &person, text, self.tracker.plane_now());
        self.clock.advance(Duration::from_secs(1));
    }
}

/// Gitea in memory, with the file changes of each branch so that a base push can make an
/// open pull request conflict, as Gitea's mergeability checker would find.
#[derive(Default)]
struct FakeForgeFixture {
    forge: FakeForge,
    pushes: Mutex<Pushes>,
}

#[derive(Default)]
struct Pushes {
    count: u64,
    /// Branch → file → content written on it.
    changes: BTreeMap<String, BTreeMap<String, String>>,
}

fn widgets() -> RepoSlug {
    RepoSlug::new("acme/widgets").expect("valid repo")
}

#[async_trait]
impl ForgeFixture for FakeForgeFixture {
    fn forge(&self) -> &dyn Forge {
        &self.forge
    }

    fn repo(&self) -> RepoSlug {
        widgets()
    }

    async fn push(&self, branch: &str, file: &str, content: &str) -> CommitSha {
        let (sha, conflicting) = {
            let mut pushes = self.pushes.lock().expect("pushes mutex");
            pushes.count += 1;
            let sha = CommitSha::new(format!("{:040x}", 0xf0_0000 + pushes.count))
                .expect("40 hex digits");
            pushes
                .changes
                .entry(branch.to_owned())
                .or_default()
                .insert(file.to_owned(), content.to_owned());
            let conflicting: Vec<String> = pushes
                .changes
                .iter()
                .filter(|(other, files)| {
                    other.as_str() != branch
                        && files.get(file).is_some_and(|theirs| theirs != content)
                })
                .map(|(other, _)| other.clone())
                .collect();
            (sha, conflicting)
        };
        self.forge.set_branch_head(&widgets(), branch, &sha);
        for pull in self.forge.pulls() {
            if pull.state == PrState::Open
                && (conflicting.contains(&pull.head_branch) && branch == pull.base_branch)
            {
                self.forge.checker_finds_conflict(&widgets(), pull.number);
            }
        }
        sha
    }

    async fn report_ci(&self, sha: &CommitSha, state: CiState) {
        self.forge.set_status(&widgets(), sha, state);
    }

    async fn posted(&self, number: PrNumber) -> (usize, usize) {
        let on_it = |posts: Vec<(RepoSlug, PrNumber, String)>| {
            posts
                .iter()
                .filter(|(_, posted_on, _)| *posted_on == number)
                .count()
        };
        (on_it(self.forge.reviews()), on_it(self.forge.comments()))
    }
}

#[async_trait]
impl WorkspaceFixture for FakeWorkspace {
    fn workspace(&self) -> &dyn Workspace {
        self
    }

    async fn agent_writes_output(
        &self,
        spec: &WorktreeSpec,
        _prepared: &PreparedWorktree,
        agent: Agent,
        name: &str,
        text: &str,
    ) {
        self.write_output(&spec.work_item, agent, name, text);
    }

    async fn agent_commits(&self, spec: &WorktreeSpec, _prepared: &PreparedWorktree) -> CommitSha {
        self.add_commit(&spec.work_item)
    }

    async fn agent_leaves_uncommitted(&self, spec: &WorktreeSpec, _prepared: &PreparedWorktree) {
        self.leave_uncommitted(&spec.work_item);
    }

    async fn base_conflicts_with_the_agents_commit(&self, spec: &WorktreeSpec) {
        self.set_conflicts_with_base(&spec.work_item, true);
    }

    async fn remote_head(&self, spec: &WorktreeSpec) -> Option<CommitSha> {
        self.pushes()
            .into_iter()
            .rev()
            .find(|(work_item, _)| work_item == &spec.work_item)
            .map(|(_, head)| head)
    }
}

/// Fake agents acting on a `FakeWorkspace`, scripted per work item.
struct FakeAgentFixture {
    workspace: Arc<FakeWorkspace>,
    runner: FakeAgentRunner,
    requests: Mutex<u32>,
}

impl FakeAgentFixture {
    fn new() -> FakeAgentFixture {
        let workspace = Arc::new(FakeWorkspace::new());
        FakeAgentFixture {
            runner: FakeAgentRunner::new(workspace.clone()),
            workspace,
            requests: Mutex::new(0),
        }
    }
}

#[async_trait]
impl AgentFixture for FakeAgentFixture {
    fn runner(&self) -> &dyn AgentRunner {
        &self.runner
    }

    fn request(&self, behaviour: AgentBehaviour, title: &str) -> AgentRequest {
        let number = {
            let mut requests = self.requests.lock().expect("requests mutex");
            *requests += 1;
            *requests
        };
        let work_item = WorkItemId::new("ET", number).expect("valid work item");
        let step = match behaviour {
            AgentBehaviour::WritesItsAnalysis => FakeStep::Succeed,
            AgentBehaviour::ExitsWithOne => FakeStep::Fail,
            AgentBehaviour::Hangs => FakeStep::Hang,
        };
        self.runner.script(&work_item, Agent::Analyst, &[step]);
        let root = PathBuf::from(format!("/fake/acme/widgets/worktrees/{work_item}"));
        contract::agent::analyst_request(work_item, title, root.clone(), root.join("out"))
    }

    async fn output(&self, request: &AgentRequest, name: &str) -> Option<String> {
        let spec = WorktreeSpec {
            repo: request.repo.clone(),
            base_branch: request.base_branch.clone(),
            branch: request.branch.clone(),
            work_item: request.work_item.clone(),
        };
        self.workspace
            .read_output(&spec, request.agent, name)
            .await
            .expect("the fake reads")
    }

    fn group_runs(&self, process: &ProcessRecord) -> bool {
        panic!("fake runs report no process, yet {process:?} was reported")
    }
}

/// The fake's service is the fake itself: its faults are Telegram's answers, by class.
#[async_trait]
impl NotifierFixture for RecordingNotifier {
    fn notifier(&self) -> &dyn Notifier {
        self
    }

    async fn delivered(&self) -> Vec<Delivered> {
        self.messages()
            .into_iter()
            .zip(self.links())
            .map(|(text, links)| Delivered { text, links })
            .collect()
    }

    fn max_message_len(&self) -> usize {
        crate::fakes::notifier::MAX_MESSAGE_LEN
    }

    async fn delivered_lengths(&self) -> Vec<usize> {
        self.message_lengths()
    }

    async fn service_rate_limits_the_next_call(&self, retry_after: Duration) {
        self.fail_next(NotifierFault::RateLimited { retry_after });
    }

    async fn service_fails_the_next_call(&self) {
        self.fail_next(NotifierFault::Down);
    }

    async fn chat_is_unknown_for_the_next_call(&self) {
        self.fail_next(NotifierFault::UnknownChat);
    }

    async fn credential_is_revoked(&self) {
        self.fail_from_now(Some(NotifierFault::CredentialRefused));
    }
}
