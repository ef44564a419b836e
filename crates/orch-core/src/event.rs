//! The closed set of facts the serial event loop reacts to.

use crate::domain::{CiState, Service};
use crate::ids::{
    BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, TaskId, UserId,
};
use crate::pipeline::GateReport;
use crate::ports::{Via, WorkItem};
use crate::time::Timestamp;

/// Something that happened. Webhook parsers, the worker, the reconciler and admin commands
/// all produce these; `Orchestrator::handle` is the one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A work item is now in `item.state` (Plane `issue` created/updated with a state change).
    WorkItemMoved {
        item: WorkItem,
        actor: Option<UserId>,
    },
    /// A comment was added to a work item (Plane `issue_comment` created). Comments are read
    /// when a verdict arrives (the feedback of a rejection), so this changes nothing by itself.
    CommentAdded {
        project: ProjectId,
        issue: IssueId,
        author: Option<UserId>,
    },
    /// A commit status (Gitea `status`); the sha is resolved to a task by F-3.
    CiStatusReported {
        repo: RepoSlug,
        sha: CommitSha,
        state: CiState,
    },
    /// A branch was pushed (Gitea `push`).
    BranchPushed {
        repo: RepoSlug,
        branch: BranchName,
        head_sha: CommitSha,
    },
    /// A pull request was closed (Gitea `pull_request` closed), merged or not.
    PullRequestClosed {
        repo: RepoSlug,
        number: PrNumber,
        merged: bool,
    },
    /// A job ended (succeeded or failed for good).
    JobFinished { job: JobId },
    /// The reconciler read the forge's facts of a task whose head was `head_sha`: its pull
    /// request and, for a stage with an automatic gate, the gate's checks. The orchestrator
    /// decides what they mean, by the same rules as the webhooks that carry them.
    ForgeObserved {
        task: TaskId,
        head_sha: Option<CommitSha>,
        report: GateReport,
    },
    /// Jobs have waited on `service` since `since` (an outage): people are told once.
    ServiceDegraded {
        service: Service,
        since: Timestamp,
        /// The task of the job waiting longest (the notification is written with it).
        task: TaskId,
        jobs: u64,
        error: Option<String>,
    },
    /// `orch task retry`: re-run the stage's agent.
    RetryRequested { task: TaskId },
    /// `orch task cancel`.
    CancelRequested { task: TaskId },
}

/// Who fed an event into the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Webhook,
    Worker,
    Reconciler(Via),
    Admin,
}

/// What a parser made of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(Event),
    /// Not something orch acts on; the reason is stored with the delivery.
    Ignored(String),
}
