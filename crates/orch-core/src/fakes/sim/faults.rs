//! Seeded faults on every port call, and the ledger of what the simulated services saw.
//!
//! The fakes keep their behaviour; each is wrapped here (`FaultyTracker`, `FaultyForge`,
//! `FaultyWorkspace`, `FaultyNotifier`, `SimAgents`) by a port implementation that asks the
//! shared `Ledger` whether this call fails, and how: a 4xx (reads only), a 5xx, a 429 with
//! `Retry-After`, a timeout, an outage window, or an *ambiguous* failure (the call took
//! effect, its answer was lost). The wrappers also record what the core did to the outside
//! (pushes, merges, Plane moves, notifications, PRs opened) for the invariants and for the
//! simulated services' webhooks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Agent, MergeOutcome};
use crate::fakes::sim::rng::SimRng;
use crate::fakes::{FakeAgentRunner, FakeClock, FakeForge, FakeStep, FakeTracker, FakeWorkspace};
use crate::ids::{
    BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, StateId, UserId,
};
use crate::ports::{
    AgentError, AgentRequest, AgentRunner, Clock, CombinedStatus, Comment, Forge, ForgeError,
    NewPullRequest, Notifier, NotifyError, PrState, PreparedWorktree, ProjectStates, PullRequest,
    RunningAgent, StateNames, Tracker, TrackerError, WorkItem, WorkItemPage, Workspace,
    WorkspaceError, WorktreeSpec,
};
use crate::time::Timestamp;

/// An outside service whose calls can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    Plane,
    Gitea,
    Git,
    Telegram,
}

impl Port {
    pub const ALL: [Port; 4] = [Port::Plane, Port::Gitea, Port::Git, Port::Telegram];

    pub fn as_str(self) -> &'static str {
        match self {
            Port::Plane => "plane",
            Port::Gitea => "gitea",
            Port::Git => "git",
            Port::Telegram => "telegram",
        }
    }
}

/// How an injected failure looks to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// 404 on a read (a replica that lags).
    NotFound,
    /// 500/502/503.
    ServerError,
    /// 429 with `Retry-After`.
    RateLimited,
    /// No answer within the adapter's timeout; nothing happened.
    Timeout,
    /// The call took effect, but its answer was lost (a timeout or reset after the write).
    Ambiguous,
    /// Inside an outage window: every call fails.
    Outage,
    /// Gitea's merge answered 405 "Please try again later" (its checker is catching up).
    TryLater,
    /// The worker could not record a job's result (the store was busy): the lease expires.
    ResultLost,
    /// The daemon was killed and started again.
    Restart,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::NotFound => "4xx",
            FaultKind::ServerError => "5xx",
            FaultKind::RateLimited => "429",
            FaultKind::Timeout => "timeout",
            FaultKind::Ambiguous => "ambiguous",
            FaultKind::Outage => "outage",
            FaultKind::TryLater => "405-try-later",
            FaultKind::ResultLost => "result-lost",
            FaultKind::Restart => "restart",
        }
    }
}

/// The marker every injected error message carries: a block reason or a job error that
/// contains it was caused by an outage, not by the work.
pub const INJECTED: &str = "[injected]";

/// The marker of an injected 4xx (which does not contain `INJECTED`).
pub const INJECTED_4XX: &str = "[injected 4xx]";

/// How long a timed-out or ambiguous call took.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A window in which every call to `port` fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outage {
    pub(crate) port: Port,
    pub(crate) from: Timestamp,
    pub(crate) until: Timestamp,
    /// A 503 with `Retry-After` (else a refused connection).
    pub(crate) retry_after: Option<Duration>,
}

/// One seed's faults, decided up front.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    /// Per port: the chance that a call fails (outside outages).
    pub(crate) rates: BTreeMap<Port, f64>,
    pub(crate) outages: Vec<Outage>,
    /// The chance that a job's result cannot be recorded.
    pub(crate) result_lost_rate: f64,
    /// The chance that a merge answers 405 "try again later".
    pub(crate) try_later_rate: f64,
    /// The chance that an agent run misbehaves (fails, hangs, writes nothing).
    pub(crate) agent_bad_rate: f64,
}

/// Whether a call only reads or also changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Something the core did to the outside that a simulated service answers with a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    Pushed {
        repo: RepoSlug,
        branch: BranchName,
        sha: CommitSha,
    },
    PullClosed {
        repo: RepoSlug,
        number: PrNumber,
        merged: bool,
    },
    PlaneMoved {
        item: WorkItem,
    },
}

/// Who moved a work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    Person,
    /// orch, by the job written (decided) at that time.
    Orch {
        job: JobId,
        decided_at: Timestamp,
    },
}

/// A move of a work item's state, as Plane applied it, in the order Plane applied them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaneWrite {
    pub(crate) at: Timestamp,
    /// The item's `updated_at` after the write, by Plane's clock.
    pub(crate) plane_at: Timestamp,
    pub(crate) issue: IssueId,
    pub(crate) state: StateId,
    pub(crate) by: Writer,
}

/// A merge orch made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeDone {
    pub(crate) at: Timestamp,
    pub(crate) number: PrNumber,
    pub(crate) sha: CommitSha,
}

/// A pull request orch opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrOpened {
    pub(crate) at: Timestamp,
    pub(crate) branch: String,
    pub(crate) number: PrNumber,
}

/// Everything the wrappers share: the fault plan and its random stream, and the records.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) plan: FaultPlan,
    pub(crate) rng: SimRng,
    /// Faults are injected only while this is set (the chaos phase).
    pub(crate) faults_on: bool,
    /// Trace lines the scheduler moves into the trace.
    pub(crate) notes: Vec<String>,
    /// Outside effects the scheduler turns into webhooks and CI runs.
    pub(crate) effects: Vec<Effect>,
    /// Time the current job's calls took beyond the normal (timeouts).
    pub(crate) latency: Duration,
    /// The job whose action is running, and when it was written.
    pub(crate) job: Option<(JobId, Timestamp)>,
    pub(crate) plane_writes: Vec<PlaneWrite>,
    pub(crate) merges: Vec<MergeDone>,
    pub(crate) notifications: Vec<(Timestamp, String)>,
    pub(crate) prs_opened: Vec<PrOpened>,
    /// Calls per port and method (failed ones included).
    pub(crate) calls: BTreeMap<(Port, &'static str), u64>,
    pub(crate) injected: BTreeMap<FaultKind, u64>,
    /// The step the last started agent takes.
    pub(crate) last_step: Option<FakeStep>,
    /// Task branches that conflict with the base (until orch pushes them again, rebased).
    pub(crate) conflicting: BTreeSet<String>,
}

impl Ledger {
    pub(crate) fn new(plan: FaultPlan, rng: SimRng) -> Ledger {
        Ledger {
            plan,
            rng,
            faults_on: true,
            notes: Vec::new(),
            effects: Vec::new(),
            latency: Duration::ZERO,
            job: None,
            plane_writes: Vec::new(),
            merges: Vec::new(),
            notifications: Vec::new(),
            prs_opened: Vec::new(),
            calls: BTreeMap::new(),
            injected: BTreeMap::new(),
            last_step: None,
            conflicting: BTreeSet::new(),
        }
    }

    pub(crate) fn count(&mut self, kind: FaultKind) {
        *self.injected.entry(kind).or_default() += 1;
    }

    fn decide(
        &mut self,
        now: Timestamp,
        port: Port,
        access: Access,
    ) -> Option<(FaultKind, Option<Duration>)> {
        if !self.faults_on {
            return None;
        }
        if let Some(outage) = self
            .plan
            .outages
            .iter()
            .find(|outage| outage.port == port && outage.from <= now && now < outage.until)
        {
            return Some((FaultKind::Outage, outage.retry_after));
        }
        let rate = self.plan.rates.get(&port).copied().unwrap_or(0.0);
        if !self.rng.chance(rate) {
            return None;
        }
        let kind = match (access, port) {
            (Access::Read, Port::Plane | Port::Gitea) => self.rng.pick(&[
                (FaultKind::NotFound, 1),
                (FaultKind::ServerError, 4),
                (FaultKind::RateLimited, 3),
                (FaultKind::Timeout, 3),
            ]),
            (Access::Read, _) => self
                .rng
                .pick(&[(FaultKind::ServerError, 4), (FaultKind::Timeout, 3)]),
            (Access::Write, Port::Plane | Port::Gitea | Port::Telegram) => self.rng.pick(&[
                (FaultKind::ServerError, 4),
                (FaultKind::RateLimited, 3),
                (FaultKind::Timeout, 2),
                (FaultKind::Ambiguous, 3),
            ]),
            (Access::Write, Port::Git) => self.rng.pick(&[
                (FaultKind::ServerError, 4),
                (FaultKind::Timeout, 2),
                (FaultKind::Ambiguous, 2),
            ]),
        };
        let retry_after = (kind == FaultKind::RateLimited).then(|| {
            self.rng
                .between(Duration::from_secs(1), Duration::from_secs(120))
        });
        Some((kind, retry_after))
    }
}

/// An error a port can be made to return.
pub(crate) trait Injected: Sized {
    fn injected(kind: FaultKind, message: String, retry_after: Option<Duration>) -> Self;
}

macro_rules! injected {
    ($($error:ident),*) => {$(
        impl Injected for $error {
            fn injected(kind: FaultKind, message: String, retry_after: Option<Duration>) -> $error {
                match kind {
                    FaultKind::NotFound => $error::NotFound(message),
                    _ => $error::Unavailable { message, retry_after },
                }
            }
        }
    )*};
}

injected!(
    TrackerError,
    ForgeError,
    WorkspaceError,
    NotifyError,
    AgentError
);

/// What a call may do after the fault check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Clear,
    /// Perform the call, then answer as if it failed.
    Ambiguous,
}

/// The ledger and the clock, shared by every wrapper and the scheduler.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    ledger: Arc<Mutex<Ledger>>,
    clock: Arc<FakeClock>,
}

impl Shared {
    pub(crate) fn new(ledger: Ledger, clock: Arc<FakeClock>) -> Shared {
        Shared {
            ledger: Arc::new(Mutex::new(ledger)),
            clock,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .expect("the simulation is single-threaded")
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Counts the call and decides its fault: `Err` fails it before it does anything.
    pub(crate) fn gate<E: Injected>(
        &self,
        port: Port,
        call: &'static str,
        access: Access,
    ) -> Result<Gate, E> {
        let now = self.now();
        let mut ledger = self.lock();
        *ledger.calls.entry((port, call)).or_default() += 1;
        let Some((kind, retry_after)) = ledger.decide(now, port, access) else {
            return Ok(Gate::Clear);
        };
        let kind = if kind == FaultKind::Ambiguous && access == Access::Read {
            FaultKind::Timeout
        } else {
            kind
        };
        ledger.count(kind);
        if kind != FaultKind::Outage {
            ledger
                .notes
                .push(format!("fault {} {call}: {}", port.as_str(), kind.as_str()));
        }
        if matches!(kind, FaultKind::Timeout | FaultKind::Ambiguous) {
            ledger.latency += CALL_TIMEOUT;
        }
        if kind == FaultKind::Ambiguous {
            return Ok(Gate::Ambiguous);
        }
        // A 4xx is the service's final word by contract: the core may give up on it, so its
        // message does not carry the marker the outage invariants look for.
        let marker = if kind == FaultKind::NotFound {
            INJECTED_4XX
        } else {
            INJECTED
        };
        Err(E::injected(
            kind,
            format!("{} {call}: {} {marker}", port.as_str(), kind.as_str()),
            retry_after,
        ))
    }

    /// The call's answer: after an ambiguous fault, a success is reported as a failure.
    pub(crate) fn settle<T, E: Injected>(
        &self,
        gate: Gate,
        port: Port,
        call: &'static str,
        result: Result<T, E>,
    ) -> Result<T, E> {
        match (gate, result) {
            (Gate::Ambiguous, Ok(_)) => Err(E::injected(
                FaultKind::Ambiguous,
                format!(
                    "{} {call}: timed out after the write {INJECTED}",
                    port.as_str()
                ),
                None,
            )),
            (_, result) => result,
        }
    }
}

/// `FakeTracker` behind seeded faults.
pub(crate) struct FaultyTracker {
    pub(crate) inner: Arc<FakeTracker>,
    pub(crate) shared: Shared,
}

#[async_trait]
impl Tracker for FaultyTracker {
    async fn me(&self) -> Result<UserId, TrackerError> {
        self.shared.gate(Port::Plane, "me", Access::Read)?;
        self.inner.me().await
    }

    async fn project_states(
        &self,
        project: &ProjectId,
        names: &StateNames,
    ) -> Result<ProjectStates, TrackerError> {
        self.shared
            .gate(Port::Plane, "project_states", Access::Read)?;
        self.inner.project_states(project, names).await
    }

    async fn list_work_items(
        &self,
        project: &ProjectId,
        cursor: Option<&str>,
    ) -> Result<WorkItemPage, TrackerError> {
        self.shared
            .gate(Port::Plane, "list_work_items", Access::Read)?;
        self.inner.list_work_items(project, cursor).await
    }

    async fn work_item(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<WorkItem, TrackerError> {
        self.shared.gate(Port::Plane, "work_item", Access::Read)?;
        self.inner.work_item(project, issue).await
    }

    async fn set_state(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        state: &StateId,
    ) -> Result<Timestamp, TrackerError> {
        let gate = self.shared.gate(Port::Plane, "set_state", Access::Write)?;
        let result = self.inner.set_state(project, issue, state).await;
        if let Ok(plane_at) = result {
            let now = self.shared.now();
            let item = self.inner.item(issue);
            let mut ledger = self.shared.lock();
            ledger.notes.push(format!(
                "plane: orch moved {issue} to {}",
                state.as_str().trim_start_matches("proj-1-")
            ));
            if let Some((job, decided_at)) = ledger.job {
                ledger.plane_writes.push(PlaneWrite {
                    at: now,
                    plane_at,
                    issue: issue.clone(),
                    state: state.clone(),
                    by: Writer::Orch { job, decided_at },
                });
            }
            if let Some(item) = item {
                ledger.effects.push(Effect::PlaneMoved { item });
            }
        }
        self.shared.settle(gate, Port::Plane, "set_state", result)
    }

    async fn comments(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<Vec<Comment>, TrackerError> {
        self.shared.gate(Port::Plane, "comments", Access::Read)?;
        self.inner.comments(project, issue).await
    }

    async fn add_comment(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        external_id: &str,
        text: &str,
    ) -> Result<(), TrackerError> {
        let gate = self
            .shared
            .gate(Port::Plane, "add_comment", Access::Write)?;
        let result = self
            .inner
            .add_comment(project, issue, external_id, text)
            .await;
        self.shared.settle(gate, Port::Plane, "add_comment", result)
    }
}

/// `FakeForge` behind seeded faults (and 405 "try again later" on merges).
pub(crate) struct FaultyForge {
    pub(crate) inner: Arc<FakeForge>,
    pub(crate) shared: Shared,
}

impl FaultyForge {
    fn pull(&self, repo: &RepoSlug, number: PrNumber) -> Option<PullRequest> {
        let _ = repo;
        self.inner
            .pulls()
            .into_iter()
            .find(|pull| pull.number == number)
    }
}

#[async_trait]
impl Forge for FaultyForge {
    async fn ensure_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let gate = self
            .shared
            .gate(Port::Gitea, "ensure_pull_request", Access::Write)?;
        let before = self.inner.pulls().len();
        let result = self.inner.ensure_pull_request(new).await;
        if let Ok(pull) = &result {
            if self.inner.pulls().len() > before {
                let at = self.shared.now();
                self.shared.lock().prs_opened.push(PrOpened {
                    at,
                    branch: pull.head_branch.clone(),
                    number: pull.number,
                });
            }
        }
        self.shared
            .settle(gate, Port::Gitea, "ensure_pull_request", result)
    }

    async fn pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<PullRequest, ForgeError> {
        self.shared
            .gate(Port::Gitea, "pull_request", Access::Read)?;
        self.inner.pull_request(repo, number).await
    }

    async fn open_pull_request_for_branch(
        &self,
        repo: &RepoSlug,
        head: &BranchName,
        base: &BranchName,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.shared
            .gate(Port::Gitea, "open_pull_request_for_branch", Access::Read)?;
        self.inner
            .open_pull_request_for_branch(repo, head, base)
            .await
    }

    async fn open_pull_request_for_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.shared
            .gate(Port::Gitea, "open_pull_request_for_sha", Access::Read)?;
        self.inner.open_pull_request_for_sha(repo, sha).await
    }

    async fn combined_status(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<CombinedStatus, ForgeError> {
        self.shared
            .gate(Port::Gitea, "combined_status", Access::Read)?;
        self.inner.combined_status(repo, sha).await
    }

    async fn merge(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        head_sha: &CommitSha,
    ) -> Result<MergeOutcome, ForgeError> {
        let gate = self.shared.gate(Port::Gitea, "merge", Access::Write)?;
        {
            let mut ledger = self.shared.lock();
            let rate = if ledger.faults_on {
                ledger.plan.try_later_rate
            } else {
                0.0
            };
            if ledger.rng.chance(rate) {
                ledger.count(FaultKind::TryLater);
                ledger
                    .notes
                    .push("fault gitea merge: 405 try again later".to_owned());
                return Ok(MergeOutcome::TryLater {
                    reason: format!("Please try again later {INJECTED}"),
                });
            }
        }
        let pull = self.pull(repo, number);
        let conflicts = pull
            .as_ref()
            .is_some_and(|pull| self.shared.lock().conflicting.contains(&pull.head_branch));
        if conflicts {
            // Gitea answers 405 before merging when its checker knows the PR conflicts.
            return self.shared.settle(
                gate,
                Port::Gitea,
                "merge",
                Ok(MergeOutcome::TryLater {
                    reason: "Please try again later".to_owned(),
                }),
            );
        }
        let was_open = pull.is_some_and(|pull| pull.state == PrState::Open);
        let result = self.inner.merge(repo, number, head_sha).await;
        if was_open && matches!(result, Ok(MergeOutcome::Merged)) {
            let at = self.shared.now();
            let mut ledger = self.shared.lock();
            ledger.merges.push(MergeDone {
                at,
                number,
                sha: head_sha.clone(),
            });
            ledger.effects.push(Effect::PullClosed {
                repo: repo.clone(),
                number,
                merged: true,
            });
        }
        self.shared.settle(gate, Port::Gitea, "merge", result)
    }

    async fn review(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let gate = self.shared.gate(Port::Gitea, "review", Access::Write)?;
        let result = self.inner.review(repo, number, marker, body).await;
        self.shared.settle(gate, Port::Gitea, "review", result)
    }

    async fn comment(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let gate = self.shared.gate(Port::Gitea, "comment", Access::Write)?;
        let result = self.inner.comment(repo, number, marker, body).await;
        self.shared.settle(gate, Port::Gitea, "comment", result)
    }

    async fn close_pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<(), ForgeError> {
        let gate = self
            .shared
            .gate(Port::Gitea, "close_pull_request", Access::Write)?;
        let was_open = self
            .pull(repo, number)
            .is_some_and(|pull| pull.state == PrState::Open);
        let result = self.inner.close_pull_request(repo, number).await;
        if was_open && result.is_ok() {
            self.shared.lock().effects.push(Effect::PullClosed {
                repo: repo.clone(),
                number,
                merged: false,
            });
        }
        self.shared
            .settle(gate, Port::Gitea, "close_pull_request", result)
    }
}

/// `FakeWorkspace` behind seeded faults (git fetch, push).
pub(crate) struct FaultyWorkspace {
    pub(crate) inner: Arc<FakeWorkspace>,
    /// The forge a push moves (to mark a rebased PR mergeable again).
    pub(crate) forge: Option<Arc<FakeForge>>,
    pub(crate) shared: Shared,
}

#[async_trait]
impl Workspace for FaultyWorkspace {
    async fn prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, WorkspaceError> {
        let gate = self.shared.gate(Port::Git, "prepare", Access::Write)?;
        let result = self.inner.prepare(spec, agent).await;
        self.shared.settle(gate, Port::Git, "prepare", result)
    }

    async fn read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        self.inner.read_output(spec, agent, name).await
    }

    async fn commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        message: &str,
    ) -> Result<Option<CommitSha>, WorkspaceError> {
        self.inner.commit_leftovers(spec, message).await
    }

    async fn commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, WorkspaceError> {
        self.inner.commits_ahead(spec).await
    }

    async fn head_sha(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        self.inner.head_sha(spec).await
    }

    async fn merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, WorkspaceError> {
        self.shared
            .gate(Port::Git, "merges_cleanly", Access::Read)?;
        self.inner.merges_cleanly(spec, head).await
    }

    async fn push(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        let gate = self.shared.gate(Port::Git, "push", Access::Write)?;
        let result = self.inner.push(spec).await;
        if let Ok(sha) = &result {
            // A push after the base moved is the developer's rebase: the conflict is gone.
            if self.shared.lock().conflicting.remove(spec.branch.as_str()) {
                self.inner.set_conflicts_with_base(&spec.work_item, false);
                if let Some(forge) = &self.forge {
                    for pull in forge.pulls() {
                        if pull.head_branch == spec.branch.as_str() && pull.state == PrState::Open {
                            forge.set_mergeable(&spec.repo, pull.number, Some(true));
                        }
                    }
                }
            }
            self.shared.lock().effects.push(Effect::Pushed {
                repo: spec.repo.clone(),
                branch: spec.branch.clone(),
                sha: sha.clone(),
            });
        }
        self.shared.settle(gate, Port::Git, "push", result)
    }

    async fn remove(&self, spec: &WorktreeSpec) -> Result<(), WorkspaceError> {
        self.inner.remove(spec).await
    }
}

/// A notifier that records what reached people, and when, behind seeded faults.
pub(crate) struct FaultyNotifier {
    pub(crate) shared: Shared,
}

#[async_trait]
impl Notifier for FaultyNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        let gate = self.shared.gate(Port::Telegram, "notify", Access::Write)?;
        let now = self.shared.now();
        self.shared
            .lock()
            .notifications
            .push((now, text.to_owned()));
        self.shared.settle(gate, Port::Telegram, "notify", Ok(()))
    }
}

/// `FakeAgentRunner` whose every run takes a step the seed chooses.
pub(crate) struct SimAgents {
    pub(crate) inner: Arc<FakeAgentRunner>,
    pub(crate) shared: Shared,
}

#[async_trait]
impl AgentRunner for SimAgents {
    async fn start(&self, request: AgentRequest) -> Result<Box<dyn RunningAgent>, AgentError> {
        let step = {
            let mut ledger = self.shared.lock();
            let bad = ledger.plan.agent_bad_rate;
            let step = if ledger.rng.chance(bad) {
                ledger.rng.pick(&[
                    (FakeStep::Fail, 4),
                    (FakeStep::Hang, 2),
                    (FakeStep::WriteNothing, 3),
                ])
            } else {
                match request.agent {
                    Agent::Analyst => FakeStep::Succeed,
                    Agent::Developer => ledger
                        .rng
                        .pick(&[(FakeStep::Succeed, 4), (FakeStep::LeaveUncommitted, 1)]),
                    Agent::Reviewer => ledger
                        .rng
                        .pick(&[(FakeStep::Succeed, 4), (FakeStep::RequestChanges, 1)]),
                }
            };
            ledger.last_step = Some(step);
            step
        };
        self.inner
            .script(&request.work_item, request.agent, &[step]);
        self.inner.start(request).await
    }
}
