//! The parser of Plane's webhook deliveries into core events (pure, never panics).

use orch_core::event::{Event, Parsed};
use orch_core::ids::{IssueId, ProjectId, UserId};
use serde::Deserialize;
use serde_json::Value;

use crate::wire::IssueDto;

/// The envelope of a Plane webhook (v1, the only format of the Community Edition).
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    activity: Option<Activity>,
}

#[derive(Debug, Deserialize)]
struct Activity {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    actor: Option<Actor>,
}

#[derive(Debug, Deserialize)]
struct Actor {
    #[serde(default)]
    id: Option<String>,
}

/// The `X-Plane-Event`s [`parse`] turns into events; the ingress answers every other one
/// `ignored` without storing it.
pub const WEBHOOK_EVENTS: &[&str] = &[ISSUE, ISSUE_COMMENT];

const ISSUE: &str = "issue";
const ISSUE_COMMENT: &str = "issue_comment";

/// Turns one delivery (its `X-Plane-Event` header and raw body) into an event.
///
/// `issue` deliveries that are `created` or `updated` with `activity.field` = `state` (API v1)
/// or `state_id` (web UI) become `Event::WorkItemMoved` in the item's state as `data.state`
/// says (an object with `id`, or a bare uuid) — never `activity.new_value`, which holds state
/// names in some Plane versions — with the acting user so orch can ignore its own changes. The legacy
/// actions `create`/`update` are accepted. `issue_comment` `created` becomes
/// `Event::CommentAdded` with its author. Everything else is `Parsed::Ignored` with a reason,
/// including bodies that are not JSON or lack fields. The header wins over the body's `event`;
/// an empty header falls back to the body.
pub fn parse(event_header: &str, body: &[u8]) -> Parsed {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(err) => return ignored(format!("plane payload is not a webhook envelope: {err}")),
    };
    let event = match event_header.trim() {
        "" => envelope.event.as_deref().unwrap_or("").to_owned(),
        header => header.to_owned(),
    };
    if event == ISSUE_COMMENT {
        return comment(&envelope);
    }
    if event != ISSUE {
        return ignored(format!("plane event {event:?} is not used"));
    }
    let action = envelope.action.as_deref().unwrap_or("");
    let activity = envelope.activity.as_ref();
    match action {
        "created" | "create" => {}
        "updated" | "update" => {
            // The activity only says that the state changed, and who changed it: its values
            // hold state ids in some Plane versions and state names in others.
            let field = activity
                .and_then(|activity| activity.field.as_deref())
                .unwrap_or("");
            if field != "state" && field != "state_id" {
                return ignored(format!(
                    "plane issue update of field {field:?} is not a state change"
                ));
            }
        }
        other => return ignored(format!("plane issue action {other:?} is not used")),
    }
    let Some(data) = envelope.data.as_ref() else {
        return ignored("plane issue payload has no data".to_owned());
    };
    let item = match IssueDto::deserialize(data) {
        Ok(dto) => match dto.into_work_item() {
            Ok(item) => item,
            Err(err) => return ignored(format!("plane issue payload is invalid: {err}")),
        },
        Err(err) => return ignored(format!("plane issue payload is invalid: {err}")),
    };
    let actor = activity
        .and_then(|activity| activity.actor.as_ref())
        .and_then(|actor| actor.id.as_deref())
        .and_then(|id| UserId::new(id).ok());
    Parsed::Event(Event::WorkItemMoved { item, actor })
}

/// `issue_comment` `created` (or legacy `create`) → `Event::CommentAdded`.
fn comment(envelope: &Envelope) -> Parsed {
    let action = envelope.action.as_deref().unwrap_or("");
    if action != "created" && action != "create" {
        return ignored(format!("plane comment action {action:?} is not used"));
    }
    let Some(data) = envelope.data.as_ref() else {
        return ignored("plane comment payload has no data".to_owned());
    };
    let field = |name: &str| data.get(name).and_then(Value::as_str);
    let project = field("project").and_then(|id| ProjectId::new(id).ok());
    let issue = field("issue").and_then(|id| IssueId::new(id).ok());
    let (Some(project), Some(issue)) = (project, issue) else {
        return ignored("plane comment payload has no valid project and issue ids".to_owned());
    };
    let author = envelope
        .activity
        .as_ref()
        .and_then(|activity| activity.actor.as_ref())
        .and_then(|actor| actor.id.as_deref())
        .and_then(|id| UserId::new(id).ok());
    Parsed::Event(Event::CommentAdded {
        project,
        issue,
        author,
    })
}

fn ignored(reason: String) -> Parsed {
    Parsed::Ignored(reason)
}

#[cfg(test)]
mod tests;
