//! The `Notifier` port: telling people on Telegram (or wherever) that they are needed.

use std::borrow::Cow;

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
    /// Delivers `text` (plain text; the adapter escapes it for its medium, so it arrives as
    /// written). A text longer than the medium allows is cut with `fit_text`, never refused.
    ///
    /// Errors: MUST return `Unavailable` (with `retry_after` when the service gave one) for
    /// rate limits, 5xx and timeouts; `Unauthorized` for a bad credential; `Invalid` for a
    /// permanent refusal (unknown chat), naming the setting to fix.
    async fn notify(&self, text: &str) -> Result<(), NotifyError>;

    /// Delivers `text` about `subject`, with the same errors as `notify`. An adapter whose
    /// medium has links SHOULD link to the work item and to the pull request when known;
    /// by default this is `notify(text)`. A text cut to fit is cut so that the links still fit.
    async fn notify_about(&self, text: &str, subject: &Subject) -> Result<(), NotifyError> {
        let _ = subject;
        self.notify(text).await
    }
}

/// What ends a text that was cut.
pub const CUT_MARK: char = '…';

/// Cuts plain `text` to at most `max` UTF-16 code units (the unit message limits count in),
/// ending it with `CUT_MARK` when it was cut; the one rule every `Notifier` cuts by.
pub fn fit_text(text: &str, max: usize) -> Cow<'_, str> {
    if text.encode_utf16().count() <= max {
        return Cow::Borrowed(text);
    }
    let budget = max.saturating_sub(CUT_MARK.len_utf16());
    let mut used = 0;
    let mut cut = String::new();
    for character in text.chars() {
        used += character.len_utf16();
        if used > budget {
            break;
        }
        cut.push(character);
    }
    cut.push(CUT_MARK);
    Cow::Owned(cut)
}
