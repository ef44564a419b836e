//! The domain's values: tasks, stages, jobs and what jobs produce.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{
    AttemptId, BootId, BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug,
    StateId, TaskId, WorkItemId,
};
use crate::time::Timestamp;

/// A stage of the pipeline (SPEC §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Analysis,
    Development,
    Review,
    Done,
    Cancelled,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Analysis,
        Stage::Development,
        Stage::Review,
        Stage::Done,
        Stage::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Analysis => "analysis",
            Stage::Development => "development",
            Stage::Review => "review",
            Stage::Done => "done",
            Stage::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Done | Stage::Cancelled)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Stage, UnknownName> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| UnknownName::new("stage", text))
    }
}

/// An agent role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agent {
    Analyst,
    Developer,
    Reviewer,
}

impl Agent {
    pub const ALL: [Agent; 3] = [Agent::Analyst, Agent::Developer, Agent::Reviewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Agent::Analyst => "analyst",
            Agent::Developer => "developer",
            Agent::Reviewer => "reviewer",
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Agent {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Agent, UnknownName> {
        Agent::ALL
            .into_iter()
            .find(|agent| agent.as_str() == text)
            .ok_or_else(|| UnknownName::new("agent", text))
    }
}

/// A name that is not one of a closed set (stage, agent, job kind, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
}

impl UnknownName {
    fn new(kind: &'static str, value: &str) -> UnknownName {
        UnknownName {
            kind,
            value: value.to_owned(),
        }
    }
}

/// Where a task is inside its stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TaskStatus {
    /// A job is queued or running, or orch waits on CI.
    Working,
    /// A human gate is open.
    AwaitingVerdict,
    /// Needs a person.
    Blocked { reason: String },
}

impl TaskStatus {
    pub fn name(&self) -> &'static str {
        match self {
            TaskStatus::Working => "working",
            TaskStatus::AwaitingVerdict => "awaiting_verdict",
            TaskStatus::Blocked { .. } => "blocked",
        }
    }

    pub fn is_blocked(&self) -> bool {
        matches!(self, TaskStatus::Blocked { .. })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStatus::Blocked { reason } => write!(f, "blocked ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// A person's verdict at a human gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// The reviewer agent's recommendation, read from its `verdict` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    Approve,
    RequestChanges,
}

impl ReviewVerdict {
    /// Reads the `verdict` file's text; anything but `request_changes` counts as approve.
    pub fn from_file_text(text: &str) -> ReviewVerdict {
        if text.trim().eq_ignore_ascii_case("request_changes") {
            ReviewVerdict::RequestChanges
        } else {
            ReviewVerdict::Approve
        }
    }
}

/// The combined CI state of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiState {
    Pending,
    Success,
    /// Gitea's `failure`, `error` and `warning`.
    Failure,
}

/// orch's record of one work item's trip through the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    /// Bumped by every transition; transitions compare-and-swap on it.
    pub version: u64,
    pub issue: IssueId,
    pub project: ProjectId,
    pub work_item: WorkItemId,
    pub title: String,
    pub description: String,
    pub repo: RepoSlug,
    pub base_branch: BranchName,
    pub branch: BranchName,
    pub stage: Stage,
    pub status: TaskStatus,
    pub head_sha: Option<CommitSha>,
    pub pr: Option<PrNumber>,
    /// CI-failure rounds in the current development stint.
    pub fix_rounds: u32,
    /// Reviewer `request_changes` rounds.
    pub review_rounds: u32,
    /// The head sha the last fix round was started for (one fix round per sha).
    pub last_fix_sha: Option<CommitSha>,
    /// A head a reviewer, a person or a merge conflict sent back to development: it can no
    /// longer pass the development gate, and a developer run must move past it.
    pub sent_back_sha: Option<CommitSha>,
    /// When the current human gate (or block) opened, by orch's clock: for people to read.
    pub gate_opened_at: Option<Timestamp>,
    /// The work item's state as orch last knew it: a person's move orch acted on, or orch's
    /// own move once Plane confirmed it. A move orch plans is made only while the item is
    /// still there, so a person's later state is never overwritten (SPEC §4.1).
    pub tracker_state: Option<StateId>,
    /// Plane's `updated_at` of `tracker_state`, by Plane's clock: a person's move is newer
    /// than what orch knows only when Plane says so (orch's clock is never compared with it).
    pub tracker_seen_at: Option<Timestamp>,
    /// By Plane's clock, the time after which a verdict answers the open gate (or block):
    /// when orch's move to the awaiting state landed (an earlier Approved may have been
    /// given before the work it approves existed), or what orch knew when the gate opened if
    /// there is no awaiting state. `None` while the gate is not open in Plane yet.
    pub verdicts_after: Option<Timestamp>,
    /// By Plane's clock, `tracker_seen_at` when the gate (or block) opened: a rejection's
    /// feedback is the comments people wrote since then.
    pub feedback_after: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What `Store::create_task` needs; the store assigns id, version and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub issue: IssueId,
    pub project: ProjectId,
    pub work_item: WorkItemId,
    pub title: String,
    pub description: String,
    pub repo: RepoSlug,
    pub base_branch: BranchName,
    pub branch: BranchName,
    pub stage: Stage,
    /// The item's state that started the task, and its `updated_at` by Plane's clock.
    pub tracker_state: Option<StateId>,
    pub tracker_seen_at: Option<Timestamp>,
}

/// The closed set of job kinds (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Agent(Agent),
    PublishBranch,
    TrackerComment,
    TrackerState,
    ForgeReview,
    Merge,
    ClosePr,
    Notify,
    Cleanup,
}

impl JobKind {
    pub const ALL: [JobKind; 11] = [
        JobKind::Agent(Agent::Analyst),
        JobKind::Agent(Agent::Developer),
        JobKind::Agent(Agent::Reviewer),
        JobKind::PublishBranch,
        JobKind::TrackerComment,
        JobKind::TrackerState,
        JobKind::ForgeReview,
        JobKind::Merge,
        JobKind::ClosePr,
        JobKind::Notify,
        JobKind::Cleanup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Agent(agent) => agent.as_str(),
            JobKind::PublishBranch => "publish_branch",
            JobKind::TrackerComment => "tracker_comment",
            JobKind::TrackerState => "tracker_state",
            JobKind::ForgeReview => "forge_review",
            JobKind::Merge => "merge",
            JobKind::ClosePr => "close_pr",
            JobKind::Notify => "notify",
            JobKind::Cleanup => "cleanup",
        }
    }

    pub fn is_agent(self) -> bool {
        matches!(self, JobKind::Agent(_))
    }

    /// Work that moves the task along (agents, publishing, merging), as opposed to telling
    /// the outside about it (comments, state moves, reviews, notifications, cleanup). Only
    /// pipeline work makes a task "busy": a Telegram outage must not stall a verdict.
    pub fn is_pipeline_work(self) -> bool {
        matches!(
            self,
            JobKind::Agent(_) | JobKind::PublishBranch | JobKind::Merge
        )
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<JobKind, UnknownName> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownName::new("job kind", text))
    }
}

/// Which configured Plane state a `tracker_state` job moves the item to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateRole {
    InProgress,
    Approved,
    Rejected,
    Awaiting,
    Done,
    Cancelled,
}

/// What a job does, with everything it needs. This is the one core type with a persisted
/// serde form (the store keeps it as JSON): renaming a variant or field needs a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Prepare the worktree (idempotent) and run an agent.
    RunAgent {
        agent: Agent,
        feedback: Option<String>,
    },
    /// Commit leftovers, push the branch, ensure one open PR.
    PublishBranch,
    /// Post a Plane comment, idempotent by `external_id`; `body` is Markdown.
    TrackerComment { external_id: String, body: String },
    /// Move the work item to one of the project's states. When the move opens a gate,
    /// `gate_comment` is the external id of the comment that shows people the work to judge:
    /// a verdict Plane recorded after that comment answers this gate.
    TrackerState {
        state: StateRole,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate_comment: Option<String>,
    },
    /// Post a COMMENT review on the task's PR, idempotent by `marker`; `body` is Markdown.
    ForgeReview { marker: String, body: String },
    /// Merge the task's PR, pinned to `head_sha`.
    Merge { head_sha: CommitSha },
    /// Close the task's PR with a comment.
    ClosePr { comment: String },
    /// Tell people on Telegram.
    Notify { text: String },
    /// Remove the task's worktree.
    Cleanup,
}

impl Action {
    pub fn kind(&self) -> JobKind {
        match self {
            Action::RunAgent { agent, .. } => JobKind::Agent(*agent),
            Action::PublishBranch => JobKind::PublishBranch,
            Action::TrackerComment { .. } => JobKind::TrackerComment,
            Action::TrackerState { .. } => JobKind::TrackerState,
            Action::ForgeReview { .. } => JobKind::ForgeReview,
            Action::Merge { .. } => JobKind::Merge,
            Action::ClosePr { .. } => JobKind::ClosePr,
            Action::Notify { .. } => JobKind::Notify,
            Action::Cleanup => JobKind::Cleanup,
        }
    }
}

/// A job to be written together with a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub action: Action,
    /// Unique over all jobs ever written: a second job with the same key is not written.
    /// Agent jobs may leave it `None`; the one-active-agent-job rule guards them.
    pub key: Option<String>,
    pub not_before: Option<Timestamp>,
}

impl JobSpec {
    pub fn new(action: Action, key: impl Into<String>) -> JobSpec {
        JobSpec {
            action,
            key: Some(key.into()),
            not_before: None,
        }
    }

    pub fn agent(agent: Agent, feedback: Option<String>) -> JobSpec {
        JobSpec {
            action: Action::RunAgent { agent, feedback },
            key: None,
            not_before: None,
        }
    }

    pub fn kind(&self) -> JobKind {
        self.action.kind()
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl FromStr for JobStatus {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<JobStatus, UnknownName> {
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| UnknownName::new("job status", text))
    }
}

/// The lease of a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: BootId,
    pub attempt: AttemptId,
    pub expires_at: Timestamp,
    pub heartbeat_at: Timestamp,
}

/// An agent's process group, recorded so a later boot can reap it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub pgid: u32,
    /// The process start time as the OS reports it (clock ticks since boot on Linux); a
    /// reused pid has another start time.
    pub start_time: u64,
}

/// One durable unit of side-effecting work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub task: TaskId,
    pub repo: RepoSlug,
    pub action: Action,
    pub key: Option<String>,
    /// The task's stage when the job was written: a job whose task has moved on since (a
    /// person merged, cancelled, or the stage changed) has no outward effect any more.
    pub stage: Stage,
    pub status: JobStatus,
    /// Claims that counted (the running one included): an attempt cut short by an outage
    /// or a shutdown is handed back and does not count.
    pub attempts: u32,
    /// Attempts in a row that an outside service's outage cut short (the backoff exponent
    /// of `JobResult::Wait`).
    pub waits: u32,
    /// The service this job has been waiting on, and since when, while it is out.
    pub waiting: Option<Waiting>,
    pub not_before: Timestamp,
    pub lease: Option<Lease>,
    pub process: Option<ProcessRecord>,
    /// The last error, for retries and failures.
    pub last_error: Option<String>,
    pub output: Option<JobOutput>,
    /// The event loop has handled this job's end (`Event::JobFinished`).
    pub handled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        self.action.kind()
    }
}

/// An outside service a job depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// The tracker (Plane's REST API).
    Plane,
    /// The forge (Gitea's REST API and its git hosting).
    Gitea,
    /// The notifier (Telegram).
    Telegram,
    /// orch's local git (mirrors and worktrees).
    Git,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Plane,
        Service::Gitea,
        Service::Telegram,
        Service::Git,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Plane => "plane",
            Service::Gitea => "gitea",
            Service::Telegram => "telegram",
            Service::Git => "git",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Service, UnknownName> {
        Service::ALL
            .into_iter()
            .find(|service| service.as_str() == text)
            .ok_or_else(|| UnknownName::new("service", text))
    }
}

/// How long jobs wait on a service before it counts as out (degraded): `/queue`,
/// `/metrics` and one notification say so.
pub const DEGRADED_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// A job waiting for an outside service to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub service: Service,
    /// The first failure of this run of failures.
    pub since: Timestamp,
}

/// A claimed job: the job and the attempt that must fence its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub job: Job,
    pub attempt: AttemptId,
}

/// What a successful job found out; persisted with the job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobOutput {
    /// `analysis.md` (analyst) — empty or missing fails the artifact check.
    pub analysis: Option<String>,
    /// `review.md` (reviewer).
    pub review: Option<String>,
    pub review_verdict: Option<ReviewVerdict>,
    /// Commits ahead of base after the developer (leftovers committed).
    pub commits_ahead: Option<u32>,
    pub head_sha: Option<CommitSha>,
    pub pr: Option<PrNumber>,
    pub merge: Option<MergeOutcome>,
    /// `tracker_state`: the state Plane confirmed, with its `updated_at` by Plane's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker_state: Option<StateId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker_at: Option<Timestamp>,
    /// `publish_branch`: the task's pull request is closed and was not merged; nothing was
    /// pushed or opened (orch never opens a second one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pr_closed: bool,
}

/// How a merge attempt ended (SPEC §1.1), as the `Forge` classifies Gitea's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MergeOutcome {
    /// 200.
    Merged,
    /// 405 "already merged", or the PR was found merged at our head sha.
    AlreadyMerged,
    /// 409: a conflict or the head is out of date; the developer must rebase.
    NeedsRebase { reason: String },
    /// 405 "try again later".
    TryLater { reason: String },
    /// Anything else.
    Refused { reason: String },
}

/// How a job attempt ended, as the worker reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Succeeded(JobOutput),
    /// Run again at `not_before` (the store counts the attempt).
    Retry {
        not_before: Timestamp,
        error: String,
    },
    /// Give up; the event loop decides what that means for the task.
    Failed {
        error: String,
    },
    /// An outside service is out: run again at `not_before` without counting this attempt.
    /// Outages delay work; they never use up a job's attempts or block a task by themselves.
    Wait {
        not_before: Timestamp,
        error: String,
        service: Service,
    },
    /// Queue the job again at once without counting this attempt: it was cut short by a
    /// shutdown, not by its own failure.
    HandBack {
        error: String,
    },
    /// The job's task moved on (it ended, or left the stage the job was written for): the
    /// job did nothing outside and ends as cancelled.
    Obsolete {
        reason: String,
    },
}

impl JobResult {
    /// Whether the job ended (succeeded or failed for good), as opposed to going back to the
    /// queue.
    pub fn is_end(&self) -> bool {
        matches!(self, JobResult::Succeeded(_) | JobResult::Failed { .. })
    }

    /// The job's next attempt is queued (a retry, a wait or a hand-back).
    pub fn is_requeue(&self) -> bool {
        matches!(
            self,
            JobResult::Retry { .. } | JobResult::Wait { .. } | JobResult::HandBack { .. }
        )
    }
}

/// One line of a task's history (`orch task show`, `/api/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub task: TaskId,
    pub at: Timestamp,
    pub stage: Stage,
    pub status: String,
    pub message: String,
}
