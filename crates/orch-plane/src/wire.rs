//! Plane's JSON shapes (adapter-private DTOs) and their conversion to core types.

use orch_core::ids::{IssueId, ProjectId, StateId, UserId};
use orch_core::ports::{Comment, WorkItem};
use orch_core::time::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::html;

/// Plane's pagination envelope (`plane/utils/paginator.py`).
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    pub(crate) results: Vec<Value>,
    #[serde(default)]
    pub(crate) next_cursor: Option<String>,
    #[serde(default)]
    pub(crate) next_page_results: bool,
}

impl Page {
    /// The cursor of the next page, `None` on the last page.
    pub(crate) fn next(&self) -> Option<String> {
        if self.next_page_results {
            self.next_cursor.clone()
        } else {
            None
        }
    }
}

/// A work item's `state`: a bare uuid (`IssueSerializer`) or `{id, name, color, group}`
/// (`expand=state`, and in webhooks).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum StateRef {
    Id(String),
    Object { id: String },
}

impl StateRef {
    pub(crate) fn id(&self) -> &str {
        match self {
            StateRef::Id(id) | StateRef::Object { id } => id,
        }
    }
}

/// The fields of a work item orch reads; REST and webhook shapes both fit.
#[derive(Debug, Deserialize)]
pub(crate) struct IssueDto {
    pub(crate) id: String,
    pub(crate) project: String,
    pub(crate) sequence_id: u32,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description_stripped: Option<String>,
    #[serde(default)]
    pub(crate) description_html: Option<String>,
    #[serde(default)]
    pub(crate) state: Option<StateRef>,
    pub(crate) updated_at: String,
}

/// A state of `GET …/states/`.
#[derive(Debug, Deserialize)]
pub(crate) struct StateDto {
    pub(crate) id: String,
    pub(crate) name: String,
}

/// A comment of `GET …/comments/`.
#[derive(Debug, Deserialize)]
pub(crate) struct CommentDto {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) comment_html: Option<String>,
    #[serde(default)]
    pub(crate) actor: Option<String>,
    #[serde(default)]
    pub(crate) created_by: Option<String>,
    pub(crate) created_at: String,
    #[serde(default)]
    pub(crate) external_source: Option<String>,
    #[serde(default)]
    pub(crate) external_id: Option<String>,
}

/// `GET /api/v1/users/me/`.
#[derive(Debug, Deserialize)]
pub(crate) struct UserDto {
    pub(crate) id: String,
}

/// Why a payload could not become a core value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("field {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl WireError {
    fn field(field: &'static str, reason: impl ToString) -> WireError {
        WireError::Field {
            field,
            reason: reason.to_string(),
        }
    }
}

impl IssueDto {
    /// The core work item, in the state `state` names.
    pub(crate) fn into_work_item(self) -> Result<WorkItem, WireError> {
        let state = match &self.state {
            Some(state) => state.id().to_owned(),
            None => return Err(WireError::field("state", "missing")),
        };
        let description = match (self.description_stripped, self.description_html) {
            (Some(text), _) => text,
            (None, Some(markup)) => html::to_text(&markup),
            (None, None) => String::new(),
        };
        Ok(WorkItem {
            id: IssueId::new(self.id).map_err(|err| WireError::field("id", err))?,
            project: ProjectId::new(self.project)
                .map_err(|err| WireError::field("project", err))?,
            sequence_id: self.sequence_id,
            title: self.name,
            description,
            state: StateId::new(state).map_err(|err| WireError::field("state", err))?,
            updated_at: timestamp("updated_at", &self.updated_at)?,
        })
    }
}

impl CommentDto {
    pub(crate) fn into_comment(self) -> Result<Comment, WireError> {
        let author = match self.actor.or(self.created_by) {
            Some(author) => {
                Some(UserId::new(author).map_err(|err| WireError::field("actor", err))?)
            }
            None => None,
        };
        Ok(Comment {
            id: self.id,
            author,
            text: html::to_text(self.comment_html.as_deref().unwrap_or("")),
            created_at: timestamp("created_at", &self.created_at)?,
            external_source: self.external_source,
            external_id: self.external_id,
        })
    }
}

/// The one field of an answer orch reads back after changing an item.
#[derive(Debug, Deserialize)]
pub(crate) struct UpdatedAt {
    pub(crate) updated_at: String,
}

/// An item's `updated_at` as Plane writes it.
pub(crate) fn updated_at(text: &str) -> Result<Timestamp, WireError> {
    timestamp("updated_at", text)
}

fn timestamp(field: &'static str, text: &str) -> Result<Timestamp, WireError> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| WireError::field(field, format!("not an RFC 3339 time: {text:?}")))
}
