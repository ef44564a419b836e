//! The simulated Plane workspace: users, projects, states, work items, comments, and how
//! Plane's serializers render them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use time::{OffsetDateTime, UtcOffset};

use serde_json::Value;

use crate::plane::pyjson::{empty_obj, float, obj, opt_text, text};

/// Plane's default states of a new project, plus the ones orch's default config names.
pub(crate) const DEFAULT_STATES: [(&str, &str, &str); 8] = [
    ("Backlog", "backlog", "#60646C"),
    ("Todo", "unstarted", "#60646C"),
    ("In Progress", "started", "#F59E0B"),
    ("In Review", "started", "#3B82F6"),
    ("Approved", "started", "#10B981"),
    ("Rejected", "started", "#EF4444"),
    ("Done", "completed", "#46A758"),
    ("Cancelled", "cancelled", "#9AA4BC"),
];

pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) first_name: String,
    pub(crate) last_name: String,
    pub(crate) display_name: String,
    pub(crate) token: String,
}

pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) identifier: String,
}

pub(crate) struct State {
    pub(crate) id: String,
    pub(crate) project: String,
    pub(crate) name: String,
    pub(crate) group: String,
    pub(crate) color: String,
    pub(crate) sequence: f64,
    pub(crate) default: bool,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) created_by: String,
}

pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) project: String,
    pub(crate) sequence_id: u32,
    pub(crate) name: String,
    pub(crate) description_html: String,
    pub(crate) state: String,
    pub(crate) sort_order: f64,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
    pub(crate) completed_at: Option<OffsetDateTime>,
    pub(crate) created_by: String,
    pub(crate) updated_by: Option<String>,
    pub(crate) assignees: Vec<String>,
}

pub(crate) struct CommentRow {
    pub(crate) id: String,
    pub(crate) description_id: String,
    pub(crate) project: String,
    pub(crate) issue: String,
    pub(crate) html: String,
    pub(crate) actor: String,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) external_source: Option<String>,
    pub(crate) external_id: Option<String>,
}

/// Where webhooks go.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) secret: String,
}

/// Plane's `ApiKeyRateThrottle`: at most `limit` requests per key in any `window`.
pub(crate) struct RateLimit {
    pub(crate) limit: usize,
    pub(crate) window: Duration,
    pub(crate) history: HashMap<String, VecDeque<Instant>>,
}

/// What the throttle decided for one request.
pub(crate) enum Throttle {
    Allowed {
        remaining: usize,
        reset_in: Duration,
    },
    Limited {
        retry_after_secs: u64,
    },
}

impl RateLimit {
    pub(crate) fn check(&mut self, key: &str, now: Instant) -> Throttle {
        let window = self.window;
        let history = self.history.entry(key.to_owned()).or_default();
        while history
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            history.pop_front();
        }
        if history.len() >= self.limit {
            let oldest = history.front().copied().unwrap_or(now);
            let wait = (oldest + window).saturating_duration_since(now);
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Throttle::Limited {
                retry_after_secs: retry_after_secs.max(1),
            };
        }
        history.push_back(now);
        let oldest = history.front().copied().unwrap_or(now);
        Throttle::Allowed {
            remaining: self.limit - history.len(),
            reset_in: (oldest + window).saturating_duration_since(now),
        }
    }
}

/// The whole simulated workspace.
pub(crate) struct World {
    pub(crate) slug: String,
    pub(crate) workspace_id: String,
    pub(crate) webhook_id: String,
    pub(crate) users: Vec<User>,
    pub(crate) projects: Vec<Project>,
    pub(crate) states: Vec<State>,
    pub(crate) items: Vec<Item>,
    pub(crate) comments: Vec<CommentRow>,
    /// REST datetimes are rendered in the API-key owner's timezone.
    pub(crate) render_offset: UtcOffset,
    pub(crate) target: Option<Target>,
    pub(crate) rate: RateLimit,
    /// What a state change's `activity.new_value`/`old_value` hold.
    pub(crate) activity_values: ActivityValues,
}

/// What Plane puts in `activity.new_value`/`old_value` for a state change. Versions differ:
/// the commit the contracts were read from sends state ids; others send state *names*, with
/// the ids in `new_identifier`/`old_identifier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivityValues {
    #[default]
    StateIds,
    StateNames,
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `text` has the shape Django's `<uuid:…>` path converter accepts.
pub(crate) fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(idx, c)| match idx {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// DRF's datetime form: `2026-05-19T10:15:30.482913Z`, or with an offset such as `+05:30`.
pub(crate) fn datetime(at: OffsetDateTime, offset: UtcOffset) -> String {
    let at = at.to_offset(offset);
    let zone = if offset.is_utc() {
        "Z".to_owned()
    } else {
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            offset.whole_hours().unsigned_abs(),
            offset.minutes_past_hour().unsigned_abs()
        )
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{zone}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

impl World {
    pub(crate) fn new(slug: &str) -> World {
        World {
            slug: slug.to_owned(),
            workspace_id: new_id(),
            webhook_id: new_id(),
            users: Vec::new(),
            projects: Vec::new(),
            states: Vec::new(),
            items: Vec::new(),
            comments: Vec::new(),
            render_offset: UtcOffset::UTC,
            target: None,
            rate: RateLimit {
                limit: 60,
                window: Duration::from_secs(60),
                history: HashMap::new(),
            },
            activity_values: ActivityValues::default(),
        }
    }

    pub(crate) fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|user| user.id == id)
    }

    pub(crate) fn user_by_token(&self, token: &str) -> Option<&User> {
        self.users.iter().find(|user| user.token == token)
    }

    pub(crate) fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|project| project.id == id)
    }

    pub(crate) fn state(&self, id: &str) -> Option<&State> {
        self.states.iter().find(|state| state.id == id)
    }

    pub(crate) fn state_named(&self, project: &str, name: &str) -> Option<&State> {
        self.states
            .iter()
            .find(|state| state.project == project && state.name == name)
    }

    pub(crate) fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.id == id)
    }

    pub(crate) fn item_mut(&mut self, id: &str) -> Option<&mut Item> {
        self.items.iter_mut().find(|item| item.id == id)
    }

    pub(crate) fn add_state(
        &mut self,
        project: &str,
        name: &str,
        group: &str,
        color: &str,
        created_by: &str,
    ) -> String {
        let sequence = 15000.0
            + 10000.0
                * self
                    .states
                    .iter()
                    .filter(|state| state.project == project)
                    .count() as f64;
        let id = new_id();
        self.states.push(State {
            id: id.clone(),
            project: project.to_owned(),
            name: name.to_owned(),
            group: group.to_owned(),
            color: color.to_owned(),
            sequence,
            default: group == "backlog"
                && !self
                    .states
                    .iter()
                    .any(|state| state.project == project && state.default),
            created_at: OffsetDateTime::now_utc(),
            created_by: created_by.to_owned(),
        });
        id
    }

    /// Moves `item` to `state`, keeping `completed_at` as Plane does; returns the old state.
    pub(crate) fn set_item_state(
        &mut self,
        item: &str,
        state: &str,
        actor: &str,
    ) -> Option<String> {
        let completed = self
            .state(state)
            .is_some_and(|state| state.group == "completed");
        let now = OffsetDateTime::now_utc();
        let item = self.item_mut(item)?;
        let old = std::mem::replace(&mut item.state, state.to_owned());
        item.updated_at = now;
        item.updated_by = Some(actor.to_owned());
        if completed && item.completed_at.is_none() {
            item.completed_at = Some(now);
        } else if !completed {
            item.completed_at = None;
        }
        Some(old)
    }

    /// `UserLiteSerializer`.
    pub(crate) fn user_lite(&self, id: &str) -> Value {
        match self.user(id) {
            Some(user) => obj(vec![
                ("id", text(&user.id)),
                ("first_name", text(&user.first_name)),
                ("last_name", text(&user.last_name)),
                ("email", text(format!("{}@example.com", user.display_name))),
                ("avatar", text("")),
                ("avatar_url", Value::Null),
                ("display_name", text(&user.display_name)),
            ]),
            None => Value::Null,
        }
    }

    /// `StateLiteSerializer`.
    pub(crate) fn state_lite(&self, id: &str) -> Value {
        match self.state(id) {
            Some(state) => obj(vec![
                ("id", text(&state.id)),
                ("name", text(&state.name)),
                ("color", text(&state.color)),
                ("group", text(&state.group)),
            ]),
            None => text(id),
        }
    }

    /// `StateSerializer`.
    pub(crate) fn state_json(&self, state: &State) -> Value {
        let at = datetime(state.created_at, self.render_offset);
        obj(vec![
            ("id", text(&state.id)),
            ("created_at", text(&at)),
            ("updated_at", text(&at)),
            ("deleted_at", Value::Null),
            ("name", text(&state.name)),
            ("description", text("")),
            ("color", text(&state.color)),
            ("slug", text("")),
            ("sequence", float(state.sequence)),
            ("group", text(&state.group)),
            ("is_triage", Value::Bool(false)),
            ("default", Value::Bool(state.default)),
            ("external_source", Value::Null),
            ("external_id", Value::Null),
            ("created_by", text(&state.created_by)),
            ("updated_by", Value::Null),
            ("project", text(&state.project)),
            ("workspace", text(&self.workspace_id)),
        ])
    }

    /// `IssueSerializer`, with `expand` applied to `state` and `assignees`.
    pub(crate) fn issue_json(&self, item: &Item, expand: &[&str]) -> Value {
        let offset = self.render_offset;
        let state = if expand.contains(&"state") {
            self.state_lite(&item.state)
        } else {
            text(&item.state)
        };
        let assignees = if expand.contains(&"assignees") {
            Value::Array(
                item.assignees
                    .iter()
                    .map(|user| self.user_lite(user))
                    .collect(),
            )
        } else {
            Value::Array(item.assignees.iter().map(text).collect())
        };
        obj(vec![
            ("id", text(&item.id)),
            ("type_id", Value::Null),
            ("created_at", text(datetime(item.created_at, offset))),
            ("updated_at", text(datetime(item.updated_at, offset))),
            ("deleted_at", Value::Null),
            ("point", Value::Null),
            ("name", text(&item.name)),
            ("description_html", text(&item.description_html)),
            ("description_binary", Value::Null),
            ("priority", text("none")),
            ("start_date", Value::Null),
            ("target_date", Value::Null),
            ("sequence_id", Value::from(i64::from(item.sequence_id))),
            ("sort_order", float(item.sort_order)),
            (
                "completed_at",
                opt_text(item.completed_at.map(|at| datetime(at, offset))),
            ),
            ("archived_at", Value::Null),
            ("is_draft", Value::Bool(false)),
            ("external_source", Value::Null),
            ("external_id", Value::Null),
            ("created_by", text(&item.created_by)),
            ("updated_by", opt_text(item.updated_by.as_deref())),
            ("project", text(&item.project)),
            ("workspace", text(&self.workspace_id)),
            ("parent", Value::Null),
            ("state", state),
            ("estimate_point", Value::Null),
            ("type", Value::Null),
            ("assignees", assignees),
            ("labels", Value::Array(Vec::new())),
        ])
    }

    /// `IssueExpandSerializer`, as webhooks carry it (always UTC).
    pub(crate) fn issue_webhook_data(&self, item: &Item) -> Value {
        let utc = UtcOffset::UTC;
        obj(vec![
            ("id", text(&item.id)),
            ("labels", Value::Array(Vec::new())),
            (
                "assignees",
                Value::Array(
                    item.assignees
                        .iter()
                        .map(|user| self.user_lite(user))
                        .collect(),
                ),
            ),
            ("state", self.state_lite(&item.state)),
            ("description", empty_obj()),
            ("created_at", text(datetime(item.created_at, utc))),
            ("updated_at", text(datetime(item.updated_at, utc))),
            ("deleted_at", Value::Null),
            ("point", Value::Null),
            ("name", text(&item.name)),
            ("description_json", empty_obj()),
            ("description_html", text(&item.description_html)),
            (
                "description_stripped",
                text(strip_tags(&item.description_html)),
            ),
            ("description_binary", Value::Null),
            ("priority", text("none")),
            ("start_date", Value::Null),
            ("target_date", Value::Null),
            ("sequence_id", Value::from(i64::from(item.sequence_id))),
            ("sort_order", float(item.sort_order)),
            (
                "completed_at",
                opt_text(item.completed_at.map(|at| datetime(at, utc))),
            ),
            ("archived_at", Value::Null),
            ("is_draft", Value::Bool(false)),
            ("external_source", Value::Null),
            ("external_id", Value::Null),
            ("created_by", text(&item.created_by)),
            ("updated_by", opt_text(item.updated_by.as_deref())),
            ("project", text(&item.project)),
            ("workspace", text(&self.workspace_id)),
            ("parent", Value::Null),
            ("estimate_point", Value::Null),
            ("type", Value::Null),
        ])
    }

    /// `IssueCommentSerializer`; the list endpoint adds `is_member`, create does not.
    pub(crate) fn comment_json(&self, comment: &CommentRow, offset: UtcOffset) -> Value {
        let at = datetime(comment.created_at, offset);
        obj(vec![
            ("id", text(&comment.id)),
            ("created_at", text(&at)),
            ("updated_at", text(&at)),
            ("deleted_at", Value::Null),
            ("comment_html", text(&comment.html)),
            ("attachments", Value::Array(Vec::new())),
            ("access", text("INTERNAL")),
            (
                "external_source",
                opt_text(comment.external_source.as_deref()),
            ),
            ("external_id", opt_text(comment.external_id.as_deref())),
            ("edited_at", Value::Null),
            ("created_by", text(&comment.actor)),
            ("updated_by", Value::Null),
            ("project", text(&comment.project)),
            ("workspace", text(&self.workspace_id)),
            ("description", text(&comment.description_id)),
            ("issue", text(&comment.issue)),
            ("actor", text(&comment.actor)),
            ("parent", Value::Null),
        ])
    }

    /// The v1 webhook envelope (`webhook_send_task`).
    pub(crate) fn envelope(
        &self,
        event: &str,
        action: &str,
        data: Value,
        activity: Activity<'_>,
    ) -> Value {
        obj(vec![
            ("event", text(event)),
            ("action", text(action)),
            ("webhook_id", text(&self.webhook_id)),
            ("workspace_id", text(&self.workspace_id)),
            ("data", data),
            (
                "activity",
                obj(vec![
                    ("field", opt_text(activity.field)),
                    ("new_value", opt_text(activity.new_value)),
                    ("old_value", opt_text(activity.old_value)),
                    ("actor", self.user_lite(activity.actor)),
                    ("old_identifier", opt_text(activity.old_identifier)),
                    ("new_identifier", opt_text(activity.new_identifier)),
                ]),
            ),
        ])
    }
}

/// The `activity` block of a webhook.
pub(crate) struct Activity<'a> {
    pub(crate) field: Option<&'a str>,
    pub(crate) new_value: Option<&'a str>,
    pub(crate) old_value: Option<&'a str>,
    pub(crate) actor: &'a str,
    pub(crate) old_identifier: Option<&'a str>,
    pub(crate) new_identifier: Option<&'a str>,
}

impl<'a> Activity<'a> {
    /// The activity of something that is not a field change (a creation, a comment).
    pub(crate) fn by(actor: &'a str) -> Activity<'a> {
        Activity {
            field: None,
            new_value: None,
            old_value: None,
            actor,
            old_identifier: None,
            new_identifier: None,
        }
    }
}

/// `description_stripped`: the HTML without tags (Plane uses `strip_tags`).
pub(crate) fn strip_tags(markup: &str) -> String {
    let mut out = String::with_capacity(markup.len());
    let mut in_tag = false;
    for c in markup.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Escapes text for `comment_html`.
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Plane's offset pagination envelope over `rows` (`BasePaginator.paginate`).
pub(crate) fn paginate(
    rows: Vec<Value>,
    per_page: usize,
    page: i64,
    cursor_per_page: usize,
) -> Value {
    let total = rows.len();
    let offset = usize::try_from(page)
        .unwrap_or(0)
        .saturating_mul(cursor_per_page);
    let results: Vec<Value> = rows.into_iter().skip(offset).take(per_page).collect();
    let count = results.len();
    let total_pages = total.div_ceil(per_page.max(1));
    let as_int = |value: usize| Value::from(i64::try_from(value).unwrap_or(i64::MAX));
    obj(vec![
        ("grouped_by", Value::Null),
        ("sub_grouped_by", Value::Null),
        ("total_count", as_int(total)),
        (
            "next_cursor",
            text(format!("{per_page}:{}:0", page.saturating_add(1))),
        ),
        (
            "prev_cursor",
            text(format!("{per_page}:{}:1", page.saturating_sub(1))),
        ),
        (
            "next_page_results",
            Value::Bool(offset.saturating_add(per_page) < total),
        ),
        ("prev_page_results", Value::Bool(page > 0)),
        ("count", as_int(count)),
        ("total_pages", as_int(total_pages)),
        ("total_results", as_int(total)),
        ("extra_stats", Value::Null),
        ("results", Value::Array(results)),
    ])
}
