//! `FakeTracker`: Plane in memory — projects, states, work items, comments, and failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::ids::{IssueId, ProjectId, StateId, UserId};
use crate::ports::{
    Clock, Comment, ProjectStates, StateNames, Tracker, TrackerError, WorkItem, WorkItemPage,
};
use crate::time::Timestamp;

/// A page size small enough that tests exercise pagination.
pub const FAKE_PAGE_SIZE: usize = 2;

/// Plane in memory. State names resolve to ids `"{project}-{slug of name}"`.
#[derive(Debug)]
pub struct FakeTracker {
    state: Mutex<TrackerState>,
    own_user: UserId,
}

#[derive(Debug, Default)]
struct TrackerState {
    /// Per project: state name → id.
    states: BTreeMap<ProjectId, BTreeMap<String, StateId>>,
    items: BTreeMap<IssueId, WorkItem>,
    comments: BTreeMap<IssueId, Vec<Comment>>,
    next_comment: u64,
    /// Calls that fail with `Unavailable` before calls succeed again.
    failures: u32,
    /// `list_work_items` calls that fail with `Unavailable`.
    listing_failures: u32,
    calls: Vec<String>,
    state_changes: Vec<(IssueId, StateId)>,
    /// Plane's clock: orch's clock plus a skew (Plane's server may be ahead or behind).
    clock: Option<PlaneClock>,
    skew_ms: i64,
}

/// The clock Plane's timestamps come from.
struct PlaneClock(Arc<dyn Clock>);

impl std::fmt::Debug for PlaneClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaneClock")
    }
}

impl FakeTracker {
    /// A tracker where orch's own user is `orch-user`.
    pub fn new() -> FakeTracker {
        FakeTracker {
            state: Mutex::new(TrackerState::default()),
            own_user: UserId::new("orch-user").expect("valid id"),
        }
    }

    pub fn own_user(&self) -> UserId {
        self.own_user.clone()
    }

    /// Plane's timestamps (orch's moves, comments) come from `clock`; without one they are
    /// the epoch.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        self.lock().clock = Some(PlaneClock(clock));
    }

    /// Plane's clock runs `skew_ms` milliseconds ahead of orch's (negative: behind).
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.lock().skew_ms = skew_ms;
    }

    /// The time by Plane's clock.
    pub fn plane_now(&self) -> Timestamp {
        let state = self.lock();
        plane_time(&state)
    }

    /// Adds `project` with a state for every name in `names`.
    pub fn add_project(&self, project: &ProjectId, names: &StateNames) {
        let mut state = self.lock();
        let map = state.states.entry(project.clone()).or_default();
        for name in FakeTracker::state_names(names) {
            map.insert(name.clone(), FakeTracker::state_id_for(project, &name));
        }
    }

    /// The states a project added with `names` has: the configured ones and Backlog.
    pub fn state_names(names: &StateNames) -> Vec<String> {
        [
            Some(&names.in_progress),
            Some(&names.approved),
            Some(&names.rejected),
            names.awaiting.as_ref(),
            Some(&names.done),
            names.cancelled.as_ref(),
            Some(&"Backlog".to_owned()),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The id a state name gets in `project`.
    pub fn state_id_for(project: &ProjectId, name: &str) -> StateId {
        let slug = crate::ids::slug(name);
        StateId::new(format!("{project}-{slug}")).expect("slugs are valid ids")
    }

    /// Adds or replaces a work item.
    pub fn put_item(&self, item: WorkItem) {
        self.lock().items.insert(item.id.clone(), item);
    }

    pub fn item(&self, issue: &IssueId) -> Option<WorkItem> {
        self.lock().items.get(issue).cloned()
    }

    /// Moves an item as a person would (no webhook: tests feed events themselves). Plane's
    /// `updated_at` of an item only moves forward: a later change is at least 1 ms later.
    pub fn move_item(&self, issue: &IssueId, state: StateId, at: Timestamp) -> Option<WorkItem> {
        let mut guard = self.lock();
        let item = guard.items.get_mut(issue)?;
        item.state = state;
        item.updated_at = later_than(item.updated_at, at);
        Some(item.clone())
    }

    /// A comment by a person.
    pub fn add_human_comment(&self, issue: &IssueId, author: &UserId, text: &str, at: Timestamp) {
        let mut state = self.lock();
        state.next_comment += 1;
        let id = format!("c{}", state.next_comment);
        state
            .comments
            .entry(issue.clone())
            .or_default()
            .push(Comment {
                id,
                author: Some(author.clone()),
                text: text.to_owned(),
                created_at: at,
                external_source: None,
                external_id: None,
            });
    }

    /// Comments orch posted on `issue`, in posting order.
    pub fn orch_comments(&self, issue: &IssueId) -> Vec<Comment> {
        self.lock()
            .comments
            .get(issue)
            .map(|comments| {
                comments
                    .iter()
                    .filter(|c| c.external_source.as_deref() == Some("orch"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every work item, by id.
    pub fn items(&self) -> Vec<WorkItem> {
        self.lock().items.values().cloned().collect()
    }

    /// Every comment (orch's and people's), by item, in posting order.
    pub fn all_comments(&self) -> BTreeMap<IssueId, Vec<Comment>> {
        self.lock().comments.clone()
    }

    /// Every `set_state` call orch made, in order.
    pub fn state_changes(&self) -> Vec<(IssueId, StateId)> {
        self.lock().state_changes.clone()
    }

    /// The next `n` calls fail with `Unavailable`.
    pub fn fail_next(&self, n: u32) {
        self.lock().failures = n;
    }

    /// The next `n` listings fail with `Unavailable` (other calls work).
    pub fn fail_listing_next(&self, n: u32) {
        self.lock().listing_failures = n;
    }

    /// Every call, as `method project`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().expect("tracker mutex")
    }

    fn enter(&self, call: String) -> Result<std::sync::MutexGuard<'_, TrackerState>, TrackerError> {
        let mut state = self.lock();
        state.calls.push(call);
        if state.failures > 0 {
            state.failures -= 1;
            return Err(TrackerError::unavailable("plane is down (fake)"));
        }
        Ok(state)
    }
}

/// `at`, or 1 ms after `previous` if that is later: one item's changes are ordered in time.
fn later_than(previous: Timestamp, at: Timestamp) -> Timestamp {
    at.max(Timestamp::from_millis(previous.as_millis() + 1))
}

/// Plane checks project membership before anything else: a project orch's user is not a
/// member of, or that does not exist, is 403 "You do not have permission to perform this
/// action." (contracts/plane `error_responses.json`), which the adapter maps to `Unauthorized`.
fn member_of(state: &TrackerState, project: &ProjectId) -> Result<(), TrackerError> {
    if state.states.contains_key(project) {
        Ok(())
    } else {
        Err(TrackerError::Unauthorized(format!(
            "orch's user is not a member of project {project}"
        )))
    }
}

/// Plane answers 404 for the comments of an item that does not exist.
fn item_exists(state: &TrackerState, issue: &IssueId) -> Result<(), TrackerError> {
    if state.items.contains_key(issue) {
        Ok(())
    } else {
        Err(TrackerError::NotFound(format!("work item {issue}")))
    }
}

fn plane_time(state: &TrackerState) -> Timestamp {
    match &state.clock {
        Some(PlaneClock(clock)) => Timestamp::from_millis(clock.now().as_millis() + state.skew_ms),
        None => Timestamp::EPOCH,
    }
}

impl Default for FakeTracker {
    fn default() -> FakeTracker {
        FakeTracker::new()
    }
}

#[async_trait]
impl Tracker for FakeTracker {
    async fn me(&self) -> Result<UserId, TrackerError> {
        let _state = self.enter("me".to_owned())?;
        Ok(self.own_user.clone())
    }

    async fn project_states(
        &self,
        project: &ProjectId,
        names: &StateNames,
    ) -> Result<ProjectStates, TrackerError> {
        let state = self.enter(format!("project_states {project}"))?;
        member_of(&state, project)?;
        let Some(map) = state.states.get(project) else {
            return Err(TrackerError::NotFound(format!("project {project}")));
        };
        let find = |name: &String| {
            map.get(name).cloned().ok_or_else(|| {
                TrackerError::NotFound(format!("state {name:?} in project {project}"))
            })
        };
        let optional = |name: &Option<String>| name.as_ref().map(find).transpose();
        Ok(ProjectStates {
            in_progress: find(&names.in_progress)?,
            approved: find(&names.approved)?,
            rejected: find(&names.rejected)?,
            awaiting: optional(&names.awaiting)?,
            done: find(&names.done)?,
            cancelled: optional(&names.cancelled)?,
        })
    }

    async fn list_work_items(
        &self,
        project: &ProjectId,
        cursor: Option<&str>,
    ) -> Result<WorkItemPage, TrackerError> {
        let mut state = self.enter(format!("list_work_items {project}"))?;
        member_of(&state, project)?;
        if state.listing_failures > 0 {
            state.listing_failures -= 1;
            return Err(TrackerError::unavailable("plane listing is down (fake)"));
        }
        let mut items: Vec<WorkItem> = state
            .items
            .values()
            .filter(|item| &item.project == project)
            .cloned()
            .collect();
        items.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        let start: usize = match cursor {
            Some(cursor) => cursor
                .parse()
                .map_err(|_| TrackerError::Invalid(format!("bad cursor {cursor:?}")))?,
            None => 0,
        };
        let end = (start + FAKE_PAGE_SIZE).min(items.len());
        let next_cursor = (end < items.len()).then(|| end.to_string());
        Ok(WorkItemPage {
            items: items
                .get(start..end)
                .map(<[WorkItem]>::to_vec)
                .unwrap_or_default(),
            next_cursor,
        })
    }

    async fn work_item(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<WorkItem, TrackerError> {
        let state = self.enter(format!("work_item {project}"))?;
        member_of(&state, project)?;
        state
            .items
            .get(issue)
            .cloned()
            .ok_or_else(|| TrackerError::NotFound(format!("work item {issue}")))
    }

    async fn set_state(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        state_id: &StateId,
    ) -> Result<Timestamp, TrackerError> {
        let mut state = self.enter(format!("set_state {project}"))?;
        member_of(&state, project)?;
        let now = plane_time(&state);
        let Some(item) = state.items.get_mut(issue) else {
            return Err(TrackerError::NotFound(format!("work item {issue}")));
        };
        item.state = state_id.clone();
        item.updated_at = later_than(item.updated_at, now);
        let updated_at = item.updated_at;
        state.state_changes.push((issue.clone(), state_id.clone()));
        Ok(updated_at)
    }

    async fn comments(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<Vec<Comment>, TrackerError> {
        let state = self.enter(format!("comments {project}"))?;
        member_of(&state, project)?;
        item_exists(&state, issue)?;
        let mut comments = state.comments.get(issue).cloned().unwrap_or_default();
        comments.reverse();
        Ok(comments)
    }

    async fn add_comment(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        external_id: &str,
        text: &str,
    ) -> Result<(), TrackerError> {
        let mut state = self.enter(format!("add_comment {project}"))?;
        member_of(&state, project)?;
        item_exists(&state, issue)?;
        let comments = state.comments.entry(issue.clone()).or_default();
        if comments
            .iter()
            .any(|c| c.external_source.as_deref() == Some("orch") && c.id == external_id)
        {
            return Ok(());
        }
        let created_at = plane_time(&state);
        let comments = state.comments.entry(issue.clone()).or_default();
        comments.push(Comment {
            id: external_id.to_owned(),
            author: Some(self.own_user.clone()),
            text: text.to_owned(),
            created_at,
            external_source: Some("orch".to_owned()),
            external_id: Some(external_id.to_owned()),
        });
        Ok(())
    }
}
