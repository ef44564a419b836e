//! `PlaneSim`: Plane API v1 and the webhook sender.
//!
//! The REST side answers with the shapes of `shared/contracts/plane/` (a test compares them):
//! `users/me/`, project states, work items (list with Plane's cursor pagination, get with
//! `expand`, `PATCH {"state": …}`), and comments (list newest first, create with an external
//! id, `409` on reuse). Requests need `X-Api-Key` and are throttled per key like Plane's
//! `ApiKeyRateThrottle`. Every change made through the API or the test API sends Plane's
//! webhook, serialised byte for byte like Python's `json.dumps` and signed like Plane.
//! Faults can be injected on both sides.

mod api;
mod hooks;
mod model;
mod pyjson;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use time::{OffsetDateTime, UtcOffset};

pub use crate::plane::model::ActivityValues;
use crate::plane::model::{
    Activity, CommentRow, Item, Project, Target, User, World, DEFAULT_STATES,
};
use crate::server::SimServer;

/// The workspace slug every `PlaneSim` serves.
pub const WORKSPACE_SLUG: &str = "acme";

/// A running Plane simulator; stops when dropped.
pub struct PlaneSim {
    server: SimServer,
    inner: Arc<Inner>,
    bot: SimUser,
    human: SimUser,
}

/// A user of the simulated workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    pub id: String,
    pub display_name: String,
    /// Its API key (`X-Api-Key`).
    pub token: String,
}

/// A work item as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimItem {
    pub id: String,
    pub project: String,
    pub sequence_id: u32,
    pub name: String,
    pub state_id: String,
    pub state_name: String,
    /// RFC 3339 in UTC, as Plane renders it.
    pub updated_at: String,
}

/// A comment as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimComment {
    pub id: String,
    pub issue: String,
    pub html: String,
    pub actor: String,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
}

/// A change the API applied (test-API changes are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The API key owner.
    pub actor: String,
    pub item: String,
    pub kind: MutationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationKind {
    /// `PATCH {"state": to}`; `from == to` when it changed nothing.
    StateSet { from: String, to: String },
    CommentCreated {
        comment: String,
        html: String,
        external_source: Option<String>,
        external_id: Option<String>,
    },
}

/// One API request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// `None` when the response was dropped by fault injection.
    pub status: Option<u16>,
    pub at: Instant,
}

/// One webhook delivery attempt (retries and duplicates are separate records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub event: String,
    pub action: String,
    pub body: Vec<u8>,
    pub signature: String,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered with this status (Plane never retries on a status).
    Answered(u16),
    /// No answer; Plane retries these.
    NetworkError(String),
    /// Not sent: `drop_next_deliveries`.
    DroppedByFault,
}

/// A test-API call named something the simulator does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    UnknownProject(String),
    UnknownItem(String),
    UnknownUser(String),
    UnknownState { project: String, name: String },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::UnknownProject(id) => write!(f, "plane sim: no project {id}"),
            SimError::UnknownItem(id) => write!(f, "plane sim: no work item {id}"),
            SimError::UnknownUser(id) => write!(f, "plane sim: no user {id}"),
            SimError::UnknownState { project, name } => {
                write!(f, "plane sim: project {project} has no state {name:?}")
            }
        }
    }
}

impl std::error::Error for SimError {}

/// Shared by the server, the webhook sender and the test API.
pub(crate) struct Inner {
    world: Mutex<World>,
    faults: Mutex<Faults>,
    records: Mutex<Records>,
}

/// Injected faults; counters count down as they fire.
pub(crate) struct Faults {
    pub(crate) latency: Duration,
    pub(crate) fail_requests: u32,
    pub(crate) error_rate: f64,
    pub(crate) rng: u64,
    pub(crate) rate_limit_burst: u32,
    pub(crate) burst_retry_after_secs: u64,
    pub(crate) drop_responses: u32,
    pub(crate) drop_deliveries: u32,
    pub(crate) duplicate_deliveries: u32,
    pub(crate) delivery_retries: u32,
    pub(crate) delivery_retry_delay: Duration,
}

impl Faults {
    /// Whether the next request should fail with a 5xx.
    pub(crate) fn take_server_error(&mut self) -> bool {
        if self.fail_requests > 0 {
            self.fail_requests -= 1;
            return true;
        }
        if self.error_rate <= 0.0 {
            return false;
        }
        // xorshift64: deterministic, so a failing run can be replayed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64 <= self.error_rate
    }
}

#[derive(Default)]
pub(crate) struct Records {
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) deliveries: Vec<DeliveryRecord>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub(crate) fn records(&self) -> MutexGuard<'_, Records> {
        lock(&self.records)
    }
}

impl PlaneSim {
    /// Starts a simulator with workspace `acme`, two users (the API user `orch-bot`, whose
    /// token is `api_token()`, and the person `ada`) and no projects.
    pub async fn start() -> std::io::Result<PlaneSim> {
        let mut world = World::new(WORKSPACE_SLUG);
        let bot = add_user(&mut world, "Orch", "Bot", "orch-bot");
        let human = add_user(&mut world, "Ada", "Lovelace", "ada");
        let inner = Arc::new(Inner {
            world: Mutex::new(world),
            faults: Mutex::new(Faults {
                latency: Duration::ZERO,
                fail_requests: 0,
                error_rate: 0.0,
                rng: 0x2545_f491_4f6c_dd1d,
                rate_limit_burst: 0,
                burst_retry_after_secs: 1,
                drop_responses: 0,
                drop_deliveries: 0,
                duplicate_deliveries: 0,
                delivery_retries: 5,
                delivery_retry_delay: Duration::from_millis(50),
            }),
            records: Mutex::new(Records::default()),
        });
        let handler_inner = inner.clone();
        let handler: crate::server::Handler = Arc::new(move |request| {
            let inner = handler_inner.clone();
            Box::pin(async move { api::handle(inner, request).await })
        });
        let server = SimServer::start(handler).await?;
        Ok(PlaneSim {
            server,
            inner,
            bot,
            human,
        })
    }

    /// `http://127.0.0.1:PORT`: Plane's base URL (the API is under `/api/v1/`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn workspace_slug(&self) -> &'static str {
        WORKSPACE_SLUG
    }

    /// The API token of the `orch-bot` user.
    pub fn api_token(&self) -> &str {
        &self.bot.token
    }

    /// The user the API token belongs to (`GET users/me/`).
    pub fn bot_user(&self) -> &SimUser {
        &self.bot
    }

    /// The person who moves items and comments in the test API by default.
    pub fn human_user(&self) -> &SimUser {
        &self.human
    }

    /// Adds a workspace member with its own API token.
    pub fn add_user(&self, first_name: &str, last_name: &str, display_name: &str) -> SimUser {
        add_user(&mut self.inner.world(), first_name, last_name, display_name)
    }

    /// Adds a project with Plane's default states plus `In Review`, `Approved` and
    /// `Rejected` (see `DEFAULT_STATES`); returns its id.
    pub fn add_project(&self, identifier: &str) -> String {
        let mut world = self.inner.world();
        let id = model::new_id();
        world.projects.push(Project {
            id: id.clone(),
            identifier: identifier.to_owned(),
        });
        for (name, group, color) in DEFAULT_STATES {
            world.add_state(&id, name, group, color, &self.human.id);
        }
        id
    }

    /// Adds a state to a project; returns its id.
    pub fn add_state(&self, project: &str, name: &str, group: &str) -> Result<String, SimError> {
        let mut world = self.inner.world();
        if world.project(project).is_none() {
            return Err(SimError::UnknownProject(project.to_owned()));
        }
        Ok(world.add_state(project, name, group, "#60646C", &self.human.id))
    }

    /// The id of a project's state by name.
    pub fn state_id(&self, project: &str, name: &str) -> Option<String> {
        self.inner
            .world()
            .state_named(project, name)
            .map(|state| state.id.clone())
    }

    /// The project's identifier (`ET`).
    pub fn project_identifier(&self, project: &str) -> Option<String> {
        self.inner
            .world()
            .project(project)
            .map(|project| project.identifier.clone())
    }

    /// Creates a work item as the person, in state `state_name`, and sends the `issue`
    /// `created` webhook (awaited, retries included).
    pub async fn create_item(
        &self,
        project: &str,
        title: &str,
        state_name: &str,
    ) -> Result<SimItem, SimError> {
        let (view, hook) = {
            let mut world = self.inner.world();
            if world.project(project).is_none() {
                return Err(SimError::UnknownProject(project.to_owned()));
            }
            let state = world
                .state_named(project, state_name)
                .ok_or_else(|| SimError::UnknownState {
                    project: project.to_owned(),
                    name: state_name.to_owned(),
                })?
                .id
                .clone();
            let sequence_id = world
                .items
                .iter()
                .filter(|item| item.project == project)
                .map(|item| item.sequence_id)
                .max()
                .unwrap_or(0)
                + 1;
            let now = OffsetDateTime::now_utc();
            let completed = world
                .state(&state)
                .is_some_and(|state| state.group == "completed");
            let item = Item {
                id: model::new_id(),
                project: project.to_owned(),
                sequence_id,
                name: title.to_owned(),
                description_html: format!("<p>{}</p>", model::escape_html(title)),
                state,
                sort_order: 65535.0 + 10000.0 * f64::from(sequence_id - 1),
                created_at: now,
                updated_at: now,
                completed_at: completed.then_some(now),
                created_by: self.human.id.clone(),
                updated_by: None,
                assignees: vec![self.human.id.clone()],
            };
            let body = world.envelope(
                "issue",
                "created",
                world.issue_webhook_data(&item),
                Activity::by(&self.human.id),
            );
            let id = item.id.clone();
            world.items.push(item);
            (
                view(&world, &id).ok_or_else(|| SimError::UnknownItem(id.clone()))?,
                hooks::Pending::new("issue", "created", &body),
            )
        };
        hooks::deliver(&self.inner, hook).await;
        Ok(view)
    }

    /// What state-change webhooks carry in `activity.new_value`/`old_value` from now on.
    pub fn set_activity_values(&self, values: ActivityValues) {
        self.inner.world().activity_values = values;
    }

    /// Moves an item to `state_name` as the person would in the web UI and sends the `issue`
    /// `updated` webhook with `activity.field = "state_id"` (awaited). Moving an item to the
    /// state it is in changes nothing and sends nothing, as in Plane.
    pub async fn move_item(&self, item: &str, state_name: &str) -> Result<(), SimError> {
        let actor = self.human.id.clone();
        self.move_item_as(item, state_name, &actor).await
    }

    /// `move_item` by another user.
    pub async fn move_item_as(
        &self,
        item: &str,
        state_name: &str,
        actor: &str,
    ) -> Result<(), SimError> {
        let hook = {
            let mut world = self.inner.world();
            if world.user(actor).is_none() {
                return Err(SimError::UnknownUser(actor.to_owned()));
            }
            let project = world
                .item(item)
                .ok_or_else(|| SimError::UnknownItem(item.to_owned()))?
                .project
                .clone();
            let state = world
                .state_named(&project, state_name)
                .ok_or_else(|| SimError::UnknownState {
                    project: project.clone(),
                    name: state_name.to_owned(),
                })?
                .id
                .clone();
            if world
                .item(item)
                .is_some_and(|current| current.state == state)
            {
                return Ok(());
            }
            let old = world
                .set_item_state(item, &state, actor)
                .ok_or_else(|| SimError::UnknownItem(item.to_owned()))?;
            state_change_hook(&world, item, "state_id", &old, &state, actor)
        };
        if let Some(hook) = hook {
            hooks::deliver(&self.inner, hook).await;
        }
        Ok(())
    }

    /// Adds a comment as the person (`<p>text</p>`, escaped) and sends the `issue_comment`
    /// `created` webhook (awaited); returns the comment's id.
    pub async fn add_comment(&self, item: &str, text: &str) -> Result<String, SimError> {
        let actor = self.human.id.clone();
        self.add_comment_as(item, text, &actor).await
    }

    /// `add_comment` by another user.
    pub async fn add_comment_as(
        &self,
        item: &str,
        text: &str,
        actor: &str,
    ) -> Result<String, SimError> {
        let (id, hook) = {
            let mut world = self.inner.world();
            if world.user(actor).is_none() {
                return Err(SimError::UnknownUser(actor.to_owned()));
            }
            let project = world
                .item(item)
                .ok_or_else(|| SimError::UnknownItem(item.to_owned()))?
                .project
                .clone();
            let html = format!("<p>{}</p>", model::escape_html(text));
            let (id, body) = create_comment(&mut world, &project, item, &html, actor, None, None);
            (id, hooks::Pending::new("issue_comment", "created", &body))
        };
        hooks::deliver(&self.inner, hook).await;
        Ok(id)
    }

    /// One work item, as it is now.
    pub fn item(&self, item: &str) -> Option<SimItem> {
        view(&self.inner.world(), item)
    }

    /// Waits until `item` is in the state named `state_name`, polling every 10 ms until
    /// `deadline` has passed; returns whether it got there.
    pub async fn wait_for_state(&self, item: &str, state_name: &str, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if self
                .item(item)
                .is_some_and(|found| found.state_name == state_name)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every work item of a project, in creation order.
    pub fn items(&self, project: &str) -> Vec<SimItem> {
        let world = self.inner.world();
        world
            .items
            .iter()
            .filter(|item| item.project == project)
            .filter_map(|item| view(&world, &item.id))
            .collect()
    }

    /// An item's comments, oldest first.
    pub fn comments(&self, item: &str) -> Vec<SimComment> {
        let world = self.inner.world();
        world
            .comments
            .iter()
            .filter(|comment| comment.issue == item)
            .map(|comment| SimComment {
                id: comment.id.clone(),
                issue: comment.issue.clone(),
                html: comment.html.clone(),
                actor: comment.actor.clone(),
                external_source: comment.external_source.clone(),
                external_id: comment.external_id.clone(),
            })
            .collect()
    }

    /// Every change applied through the API, in order.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.inner.records().mutations.clone()
    }

    /// Every API request received, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.records().requests.clone()
    }

    /// Every webhook delivery attempt, in order.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.records().deliveries.clone()
    }

    /// Sends webhooks to `url`, signed with `secret` (the daemon's port is known only after
    /// it starts).
    pub fn set_webhook(&self, url: &str, secret: &str) {
        self.inner.world().target = Some(Target {
            url: url.to_owned(),
            secret: secret.to_owned(),
        });
    }

    /// Stops sending webhooks.
    pub fn clear_webhook(&self) {
        self.inner.world().target = None;
    }

    /// Plane's throttle: `limit` requests per key in any `window` (default 60 per minute).
    pub fn set_rate_limit(&self, limit: usize, window: Duration) {
        let mut world = self.inner.world();
        world.rate.limit = limit;
        world.rate.window = window;
        world.rate.history.clear();
    }

    /// Renders REST datetimes with this UTC offset (the API user's timezone), e.g. `+05:30`.
    pub fn set_user_timezone(&self, hours: i8, minutes: i8) {
        if let Ok(offset) = UtcOffset::from_hms(hours, minutes, 0) {
            self.inner.world().render_offset = offset;
        }
    }

    /// Delays every API answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.faults().latency = latency;
    }

    /// The next `count` authenticated requests fail with `500`.
    pub fn fail_next_requests(&self, count: u32) {
        self.inner.faults().fail_requests = count;
    }

    /// Each authenticated request fails with `500` with probability `rate` (deterministic).
    pub fn set_error_rate(&self, rate: f64) {
        self.inner.faults().error_rate = rate;
    }

    /// The next `count` authenticated requests get `429` with `Retry-After: retry_after_secs`.
    pub fn rate_limit_next_requests(&self, count: u32, retry_after_secs: u64) {
        let mut faults = self.inner.faults();
        faults.rate_limit_burst = count;
        faults.burst_retry_after_secs = retry_after_secs;
    }

    /// The next `count` requests are applied, then their connection is closed unanswered.
    pub fn drop_next_responses(&self, count: u32) {
        self.inner.faults().drop_responses = count;
    }

    /// The next `count` webhooks are lost (never sent).
    pub fn drop_next_deliveries(&self, count: u32) {
        self.inner.faults().drop_deliveries = count;
    }

    /// The next `count` webhooks are sent twice: same body and signature, new delivery ids.
    pub fn duplicate_next_deliveries(&self, count: u32) {
        self.inner.faults().duplicate_deliveries = count;
    }

    /// Retries of a delivery after network errors: `retries` at most, waiting `delay · 2ⁿ`.
    pub fn set_delivery_retries(&self, retries: u32, delay: Duration) {
        let mut faults = self.inner.faults();
        faults.delivery_retries = retries;
        faults.delivery_retry_delay = delay;
    }
}

fn add_user(world: &mut World, first_name: &str, last_name: &str, display_name: &str) -> SimUser {
    let user = User {
        id: model::new_id(),
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        display_name: display_name.to_owned(),
        token: format!("plane_api_{}", uuid::Uuid::new_v4().simple()),
    };
    let sim_user = SimUser {
        id: user.id.clone(),
        display_name: user.display_name.clone(),
        token: user.token.clone(),
    };
    world.users.push(user);
    sim_user
}

fn view(world: &World, item: &str) -> Option<SimItem> {
    let item = world.item(item)?;
    Some(SimItem {
        id: item.id.clone(),
        project: item.project.clone(),
        sequence_id: item.sequence_id,
        name: item.name.clone(),
        state_id: item.state.clone(),
        state_name: world
            .state(&item.state)
            .map(|state| state.name.clone())
            .unwrap_or_default(),
        updated_at: model::datetime(item.updated_at, UtcOffset::UTC),
    })
}

/// The `issue` `updated` webhook of a state change (`field` = `state_id` from the web UI,
/// `state` from API v1).
pub(crate) fn state_change_hook(
    world: &World,
    item: &str,
    field: &str,
    old: &str,
    new: &str,
    actor: &str,
) -> Option<hooks::Pending> {
    let data = world.issue_webhook_data(world.item(item)?);
    let activity = match world.activity_values {
        ActivityValues::StateIds => Activity {
            field: Some(field),
            new_value: Some(new),
            old_value: Some(old),
            ..Activity::by(actor)
        },
        ActivityValues::StateNames => Activity {
            field: Some(field),
            new_value: world.state(new).map(|state| state.name.as_str()),
            old_value: world.state(old).map(|state| state.name.as_str()),
            old_identifier: Some(old),
            new_identifier: Some(new),
            ..Activity::by(actor)
        },
    };
    Some(hooks::Pending::new(
        "issue",
        "updated",
        &world.envelope("issue", "updated", data, activity),
    ))
}

/// Stores a comment; returns its id and the `issue_comment` `created` webhook body.
pub(crate) fn create_comment(
    world: &mut World,
    project: &str,
    issue: &str,
    html: &str,
    actor: &str,
    external_source: Option<String>,
    external_id: Option<String>,
) -> (String, serde_json::Value) {
    let comment = CommentRow {
        id: model::new_id(),
        description_id: model::new_id(),
        project: project.to_owned(),
        issue: issue.to_owned(),
        html: html.to_owned(),
        actor: actor.to_owned(),
        created_at: OffsetDateTime::now_utc(),
        external_source,
        external_id,
    };
    let data = world.comment_json(&comment, UtcOffset::UTC);
    let body = world.envelope("issue_comment", "created", data, Activity::by(actor));
    let id = comment.id.clone();
    world.comments.push(comment);
    (id, body)
}

#[cfg(test)]
mod tests;
