//! The simulated Plane workspace: users, projects, states, work items, comments, and how
//! Plane's serializers render them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use time::{OffsetDateTime, UtcOffset};

use crate::plane::pyjson::Py;

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
    pub(crate) fn user_lite(&self, id: &str) -> Py {
        match self.user(id) {
            Some(user) => Py::obj(vec![
                ("id", Py::str(&user.id)),
                ("first_name", Py::str(&user.first_name)),
                ("last_name", Py::str(&user.last_name)),
                (
                    "email",
                    Py::str(format!("{}@example.com", user.display_name)),
                ),
                ("avatar", Py::str("")),
                ("avatar_url", Py::Null),
                ("display_name", Py::str(&user.display_name)),
            ]),
            None => Py::Null,
        }
    }

    /// `StateLiteSerializer`.
    pub(crate) fn state_lite(&self, id: &str) -> Py {
        match self.state(id) {
            Some(state) => Py::obj(vec![
                ("id", Py::str(&state.id)),
                ("name", Py::str(&state.name)),
                ("color", Py::str(&state.color)),
                ("group", Py::str(&state.group)),
            ]),
            None => Py::str(id),
        }
    }

    /// `StateSerializer`.
    pub(crate) fn state_json(&self, state: &State) -> Py {
        let at = datetime(state.created_at, self.render_offset);
        Py::obj(vec![
            ("id", Py::str(&state.id)),
            ("created_at", Py::str(&at)),
            ("updated_at", Py::str(&at)),
            ("deleted_at", Py::Null),
            ("name", Py::str(&state.name)),
            ("description", Py::str("")),
            ("color", Py::str(&state.color)),
            ("slug", Py::str("")),
            ("sequence", Py::Float(state.sequence)),
            ("group", Py::str(&state.group)),
            ("is_triage", Py::Bool(false)),
            ("default", Py::Bool(state.default)),
            ("external_source", Py::Null),
            ("external_id", Py::Null),
            ("created_by", Py::str(&state.created_by)),
            ("updated_by", Py::Null),
            ("project", Py::str(&state.project)),
            ("workspace", Py::str(&self.workspace_id)),
        ])
    }

    /// `IssueSerializer`, with `expand` applied to `state` and `assignees`.
    pub(crate) fn issue_json(&self, item: &Item, expand: &[&str]) -> Py {
        let offset = self.render_offset;
        let state = if expand.contains(&"state") {
            self.state_lite(&item.state)
        } else {
            Py::str(&item.state)
        };
        let assignees = if expand.contains(&"assignees") {
            Py::List(
                item.assignees
                    .iter()
                    .map(|user| self.user_lite(user))
                    .collect(),
            )
        } else {
            Py::List(item.assignees.iter().map(Py::str).collect())
        };
        Py::obj(vec![
            ("id", Py::str(&item.id)),
            ("type_id", Py::Null),
            ("created_at", Py::str(datetime(item.created_at, offset))),
            ("updated_at", Py::str(datetime(item.updated_at, offset))),
            ("deleted_at", Py::Null),
            ("point", Py::Null),
            ("name", Py::str(&item.name)),
            ("description_html", Py::str(&item.description_html)),
            ("description_binary", Py::Null),
            ("priority", Py::str("none")),
            ("start_date", Py::Null),
            ("target_date", Py::Null),
            ("sequence_id", Py::Int(i64::from(item.sequence_id))),
            ("sort_order", Py::Float(item.sort_order)),
            (
                "completed_at",
                Py::opt_str(item.completed_at.map(|at| datetime(at, offset))),
            ),
            ("archived_at", Py::Null),
            ("is_draft", Py::Bool(false)),
            ("external_source", Py::Null),
            ("external_id", Py::Null),
            ("created_by", Py::str(&item.created_by)),
            ("updated_by", Py::opt_str(item.updated_by.as_deref())),
            ("project", Py::str(&item.project)),
            ("workspace", Py::str(&self.workspace_id)),
            ("parent", Py::Null),
            ("state", state),
            ("estimate_point", Py::Null),
            ("type", Py::Null),
            ("assignees", assignees),
            ("labels", Py::List(Vec::new())),
        ])
    }

    /// `IssueExpandSerializer`, as webhooks carry it (always UTC).
    pub(crate) fn issue_webhook_data(&self, item: &Item) -> Py {
        let utc = UtcOffset::UTC;
        Py::obj(vec![
            ("id", Py::str(&item.id)),
            ("labels", Py::List(Vec::new())),
            (
                "assignees",
                Py::List(
                    item.assignees
                        .iter()
                        .map(|user| self.user_lite(user))
                        .collect(),
                ),
            ),
            ("state", self.state_lite(&item.state)),
            ("description", Py::Obj(Vec::new())),
            ("created_at", Py::str(datetime(item.created_at, utc))),
            ("updated_at", Py::str(datetime(item.updated_at, utc))),
            ("deleted_at", Py::Null),
            ("point", Py::Null),
            ("name", Py::str(&item.name)),
            ("description_json", Py::Obj(Vec::new())),
            ("description_html", Py::str(&item.description_html)),
            (
                "description_stripped",
                Py::str(strip_tags(&item.description_html)),
            ),
            ("description_binary", Py::Null),
            ("priority", Py::str("none")),
            ("start_date", Py::Null),
            ("target_date", Py::Null),
            ("sequence_id", Py::Int(i64::from(item.sequence_id))),
            ("sort_order", Py::Float(item.sort_order)),
            (
                "completed_at",
                Py::opt_str(item.completed_at.map(|at| datetime(at, utc))),
            ),
            ("archived_at", Py::Null),
            ("is_draft", Py::Bool(false)),
            ("external_source", Py::Null),
            ("external_id", Py::Null),
            ("created_by", Py::str(&item.created_by)),
            ("updated_by", Py::opt_str(item.updated_by.as_deref())),
            ("project", Py::str(&item.project)),
            ("workspace", Py::str(&self.workspace_id)),
            ("parent", Py::Null),
            ("estimate_point", Py::Null),
            ("type", Py::Null),
        ])
    }

    /// `IssueCommentSerializer`; the list endpoint adds `is_member`, create does not.
    pub(crate) fn comment_json(&self, comment: &CommentRow, offset: UtcOffset) -> Py {
        let at = datetime(comment.created_at, offset);
        Py::obj(vec![
            ("id", Py::str(&comment.id)),
            ("created_at", Py::str(&at)),
            ("updated_at", Py::str(&at)),
            ("deleted_at", Py::Null),
            ("comment_html", Py::str(&comment.html)),
            ("attachments", Py::List(Vec::new())),
            ("access", Py::str("INTERNAL")),
            (
                "external_source",
                Py::opt_str(comment.external_source.as_deref()),
            ),
            ("external_id", Py::opt_str(comment.external_id.as_deref())),
            ("edited_at", Py::Null),
            ("created_by", Py::str(&comment.actor)),
            ("updated_by", Py::Null),
            ("project", Py::str(&comment.project)),
            ("workspace", Py::str(&self.workspace_id)),
            ("description", Py::str(&comment.description_id)),
            ("issue", Py::str(&comment.issue)),
            ("actor", Py::str(&comment.actor)),
            ("parent", Py::Null),
        ])
    }

    /// The v1 webhook envelope (`webhook_send_task`).
    pub(crate) fn envelope(
        &self,
        event: &str,
        action: &str,
        data: Py,
        activity: Activity<'_>,
    ) -> Py {
        Py::obj(vec![
            ("event", Py::str(event)),
            ("action", Py::str(action)),
            ("webhook_id", Py::str(&self.webhook_id)),
            ("workspace_id", Py::str(&self.workspace_id)),
            ("data", data),
            (
                "activity",
                Py::obj(vec![
                    ("field", Py::opt_str(activity.field)),
                    ("new_value", Py::opt_str(activity.new_value)),
                    ("old_value", Py::opt_str(activity.old_value)),
                    ("actor", self.user_lite(activity.actor)),
                    ("old_identifier", Py::opt_str(activity.old_identifier)),
                    ("new_identifier", Py::opt_str(activity.new_identifier)),
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
pub(crate) fn paginate(rows: Vec<Py>, per_page: usize, page: i64, cursor_per_page: usize) -> Py {
    let total = rows.len();
    let offset = usize::try_from(page)
        .unwrap_or(0)
        .saturating_mul(cursor_per_page);
    let results: Vec<Py> = rows.into_iter().skip(offset).take(per_page).collect();
    let count = results.len();
    let total_pages = total.div_ceil(per_page.max(1));
    let as_int = |value: usize| Py::Int(i64::try_from(value).unwrap_or(i64::MAX));
    Py::obj(vec![
        ("grouped_by", Py::Null),
        ("sub_grouped_by", Py::Null),
        ("total_count", as_int(total)),
        (
            "next_cursor",
            Py::str(format!("{per_page}:{}:0", page.saturating_add(1))),
        ),
        (
            "prev_cursor",
            Py::str(format!("{per_page}:{}:1", page.saturating_sub(1))),
        ),
        (
            "next_page_results",
            Py::Bool(offset.saturating_add(per_page) < total),
        ),
        ("prev_page_results", Py::Bool(page > 0)),
        ("count", as_int(count)),
        ("total_pages", as_int(total_pages)),
        ("total_results", as_int(total)),
        ("extra_stats", Py::Null),
        ("results", Py::List(results)),
    ])
}
