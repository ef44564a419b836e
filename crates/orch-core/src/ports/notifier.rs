//! The `Notifier` port: telling people on Telegram (or wherever) that they are needed.

use async_trait::async_trait;

use crate::domain::Task;
use crate::ids::{IssueId, PrNumber, ProjectId, RepoSlug, WorkItemId};
use crate::ports::error::port_error;

port_error!(
    /// Why a notification was not delivered.
    NotifyError,
    "notifier"
);

/// What a notification is about: the task's work item, and its pull request once there is
/// one, for an adapter that can link to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub project: ProjectId,
    pub issue: IssueId,
    pub work_item: WorkItemId,
    pub repo: RepoSlug,
    pub pr: Option<PrNumber>,
}

impl Subject {
    pub fn of(task: &Task) -> Subject {
        Subject {
            project: task.project.clone(),
            issue: task.issue.clone(),
            work_item: task.work_item.clone(),
            repo: task.repo.clone(),
            pr: task.pr,
        }
    }
}

/// Sends short texts to the people who run orch.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `text` (plain text; the adapter escapes it for its medium).
    ///
    /// Errors: MUST return `Unavailable` (with `retry_after` when the service gave one) for
    /// rate limits, 5xx and timeouts; `Unauthorized` for a bad credential; `Invalid` for a
    /// permanent refusal (unknown chat), naming the setting to fix.
    async fn notify(&self, text: &str) -> Result<(), NotifyError>;

    /// Delivers `text` about `subject`, with the same errors as `notify`. An adapter whose
    /// medium has links SHOULD link to the work item and to the pull request when known;
    /// by default this is `notify(text)`.
    async fn notify_about(&self, text: &str, subject: &Subject) -> Result<(), NotifyError> {
        let _ = subject;
        self.notify(text).await
    }
}
