//! The `Tracker` port: Plane work items, their states and comments.

use async_trait::async_trait;

use crate::domain::StateRole;
use crate::ids::{IssueId, ProjectId, StateId, UserId};
use crate::ports::error::port_error;
use crate::time::Timestamp;

port_error!(
    /// Why a tracker call failed.
    TrackerError,
    "tracker"
);

/// A work item as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: IssueId,
    pub project: ProjectId,
    /// Plane's `sequence_id`; with the project's prefix it makes the `WorkItemId`.
    pub sequence_id: u32,
    pub title: String,
    /// Plain text (Plane's `description_stripped`, or the HTML with tags removed).
    pub description: String,
    pub state: StateId,
    pub updated_at: Timestamp,
}

/// One page of work items, newest `updated_at` first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkItemPage {
    pub items: Vec<WorkItem>,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A comment on a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: String,
    pub author: Option<UserId>,
    /// Plain text.
    pub text: String,
    pub created_at: Timestamp,
    /// `Some("orch")` for comments orch posted.
    pub external_source: Option<String>,
    /// The external id orch posted it with (`{task}:{kind}:{round}`).
    pub external_id: Option<String>,
}

/// The configured state names of one project (`[projects.states]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateNames {
    pub in_progress: String,
    pub approved: String,
    pub rejected: String,
    pub awaiting: Option<String>,
    pub done: String,
    pub cancelled: Option<String>,
}

impl Default for StateNames {
    fn default() -> StateNames {
        StateNames {
            in_progress: "In Progress".to_owned(),
            approved: "Approved".to_owned(),
            rejected: "Rejected".to_owned(),
            awaiting: Some("In Review".to_owned()),
            done: "Done".to_owned(),
            cancelled: Some("Cancelled".to_owned()),
        }
    }
}

/// One project's state names resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectStates {
    pub in_progress: StateId,
    pub approved: StateId,
    pub rejected: StateId,
    pub awaiting: Option<StateId>,
    pub done: StateId,
    pub cancelled: Option<StateId>,
}

impl ProjectStates {
    /// Which role a state id plays in this project, if any.
    pub fn role_of(&self, state: &StateId) -> Option<StateRole> {
        [
            StateRole::InProgress,
            StateRole::Approved,
            StateRole::Rejected,
            StateRole::Awaiting,
            StateRole::Done,
            StateRole::Cancelled,
        ]
        .into_iter()
        .find(|role| self.id_of(*role) == Some(state))
    }

    pub fn id_of(&self, role: StateRole) -> Option<&StateId> {
        match role {
            StateRole::InProgress => Some(&self.in_progress),
            StateRole::Approved => Some(&self.approved),
            StateRole::Rejected => Some(&self.rejected),
            StateRole::Awaiting => self.awaiting.as_ref(),
            StateRole::Done => Some(&self.done),
            StateRole::Cancelled => self.cancelled.as_ref(),
        }
    }
}

/// Plane, seen through what orch needs of it.
///
/// Every method: MUST map 429, 5xx, resets and timeouts to `Unavailable` (with the server's
/// `Retry-After` when given) after the adapter's bounded retries; 401/403 to `Unauthorized`
/// naming the setting to fix; 404 to `NotFound`; other 4xx to `Invalid`.
#[async_trait]
pub trait Tracker: Send + Sync {
    /// The user the API token belongs to (orch's own user; its changes are ignored).
    async fn me(&self) -> Result<UserId, TrackerError>;

    /// Resolves the configured state names of `project` to ids (the adapter may cache).
    /// Errors: a name with no such state MUST be `NotFound` naming the state and project.
    async fn project_states(
        &self,
        project: &ProjectId,
        names: &StateNames,
    ) -> Result<ProjectStates, TrackerError>;

    /// One page of `project`'s work items, ordered by `-updated_at`, 100 per page.
    async fn list_work_items(
        &self,
        project: &ProjectId,
        cursor: Option<&str>,
    ) -> Result<WorkItemPage, TrackerError>;

    /// One work item with its current state.
    async fn work_item(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<WorkItem, TrackerError>;

    /// Moves the item to `state` and returns the item's `updated_at` afterwards, by Plane's
    /// clock. Idempotent: moving to the current state succeeds.
    async fn set_state(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        state: &StateId,
    ) -> Result<Timestamp, TrackerError>;

    /// The item's comments, newest first.
    async fn comments(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<Vec<Comment>, TrackerError>;

    /// Posts `text`, which is Markdown (CommonMark), as a comment with
    /// `external_source = "orch"` and `external_id`. The adapter renders it for its medium
    /// and MUST NOT pass raw HTML in it through: the text comes from agents.
    /// Idempotent: if a comment with this `external_id` exists (409), MUST return `Ok`.
    async fn add_comment(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        external_id: &str,
        text: &str,
    ) -> Result<(), TrackerError>;
}
