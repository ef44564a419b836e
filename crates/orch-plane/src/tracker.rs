//! `PlaneTracker`: the `Tracker` port over Plane's REST API v1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch_core::ids::{IssueId, ProjectId, StateId, UserId};
use orch_core::ports::{
    Comment, ProjectStates, StateNames, Tracker, TrackerError, WorkItem, WorkItemPage,
};
use orch_core::time::Timestamp;
use serde_json::json;
use tracing::instrument;

use crate::client::{Answer, Call, Client, Method, PlaneStats};
use crate::config::PlaneSettings;
use crate::html;
use crate::wire::{updated_at, CommentDto, IssueDto, Page, StateDto, UpdatedAt, UserDto};

/// Work items per page, as SPEC §3 asks.
const PER_PAGE: &str = "100";
/// At most this many pages of comments or states are read for one call.
const MAX_PAGES: usize = 50;
/// The `external_source` of every comment orch posts.
const EXTERNAL_SOURCE: &str = "orch";

/// The `Tracker` port over Plane's REST API v1 (`X-Api-Key`), with a call budget of 80 % of
/// `rate_limit_per_min`, bounded full-jitter retries, and per-project caches of state ids.
pub struct PlaneTracker {
    client: Client,
    workspace_path: String,
    /// State name → id, per project; filled on first use, refreshed when a name is missing.
    states: Arc<Mutex<StateCache>>,
}

type StateCache = HashMap<ProjectId, Vec<(String, StateId)>>;

impl std::fmt::Debug for PlaneTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaneTracker")
            .field("workspace_path", &self.workspace_path)
            .finish_non_exhaustive()
    }
}

impl PlaneTracker {
    pub fn new(config: &PlaneSettings) -> PlaneTracker {
        PlaneTracker {
            client: Client::new(config),
            workspace_path: format!("workspaces/{}/", config.workspace_slug),
            states: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A tracker for the reconciler: it shares this one's connections, call budget, counters
    /// and state cache, and uses at most half of the budget (SPEC §5.5), so the reconciler
    /// can never starve the pipeline's own calls.
    pub fn half_budget_share(&self) -> PlaneTracker {
        PlaneTracker {
            client: self.client.half_share(),
            workspace_path: self.workspace_path.clone(),
            states: self.states.clone(),
        }
    }

    /// Counters of API use since start-up (calls, 429s, retries, failed port calls).
    pub fn stats(&self) -> PlaneStats {
        self.client.counters().snapshot()
    }

    fn project_path(&self, project: &ProjectId) -> String {
        format!("{}projects/{project}/", self.workspace_path)
    }

    fn item_path(&self, project: &ProjectId, issue: &IssueId) -> String {
        format!("{}work-items/{issue}/", self.project_path(project))
    }

    /// Counts a failed port call on the way out.
    fn counted<T>(&self, result: Result<T, TrackerError>) -> Result<T, TrackerError> {
        if result.is_err() {
            self.client.counters().count_error();
        }
        result
    }

    /// Every page of a small list (states, comments).
    async fn all_pages(
        &self,
        path: String,
        what: &str,
    ) -> Result<Vec<serde_json::Value>, TrackerError> {
        let mut results = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut call = Call::get(path.clone()).query("per_page", PER_PAGE);
            if let Some(cursor) = &cursor {
                call = call.query("cursor", cursor.clone());
            }
            let answer = expect_success(self.client.send(&call).await?, what)?;
            let page: Page = answer.json(what)?;
            results.extend(page.results.iter().cloned());
            cursor = page.next();
            if cursor.is_none() {
                return Ok(results);
            }
        }
        tracing::warn!(path = %path, pages = MAX_PAGES, "plane list truncated");
        Ok(results)
    }

    async fn fetch_states(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<(String, StateId)>, TrackerError> {
        let what = "the states list";
        let states = self
            .all_pages(format!("{}states/", self.project_path(project)), what)
            .await?;
        let mut resolved = Vec::with_capacity(states.len());
        for state in states {
            let state: StateDto = serde_json::from_value(state).map_err(|err| {
                TrackerError::other(format!("plane answered {what} with unexpected JSON: {err}"))
            })?;
            let id = StateId::new(state.id).map_err(|err| TrackerError::other(err.to_string()))?;
            resolved.push((state.name, id));
        }
        Ok(resolved)
    }

    async fn resolve_states(
        &self,
        project: &ProjectId,
        names: &StateNames,
    ) -> Result<ProjectStates, TrackerError> {
        let cached = self.lock_states().get(project).cloned();
        let fresh = cached.is_none();
        let states = match cached {
            Some(states) => states,
            None => self.fetch_states(project).await?,
        };
        let states = match resolve(project, &states, names) {
            Ok(resolved) => {
                self.lock_states().insert(project.clone(), states);
                return Ok(resolved);
            }
            // A state may have been created since the cache was filled: look once more.
            Err(_) if !fresh => self.fetch_states(project).await?,
            Err(err) => return Err(err),
        };
        let resolved = resolve(project, &states, names)?;
        self.lock_states().insert(project.clone(), states);
        Ok(resolved)
    }

    fn lock_states(&self) -> std::sync::MutexGuard<'_, StateCache> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Tracker for PlaneTracker {
    #[instrument(skip_all)]
    async fn me(&self) -> Result<UserId, TrackerError> {
        let result = async {
            let answer = expect_success(
                self.client.send(&Call::get("users/me/".to_owned())).await?,
                "users/me",
            )?;
            let user: UserDto = answer.json("users/me")?;
            UserId::new(user.id).map_err(|err| TrackerError::other(err.to_string()))
        }
        .await;
        self.counted(result)
    }

    #[instrument(skip_all, fields(project = %project))]
    async fn project_states(
        &self,
        project: &ProjectId,
        names: &StateNames,
    ) -> Result<ProjectStates, TrackerError> {
        let result = self.resolve_states(project, names).await;
        self.counted(result)
    }

    #[instrument(skip_all, fields(project = %project, cursor = cursor.unwrap_or("")))]
    async fn list_work_items(
        &self,
        project: &ProjectId,
        cursor: Option<&str>,
    ) -> Result<WorkItemPage, TrackerError> {
        let result = async {
            let what = "the work items list";
            let mut call = Call::get(format!("{}work-items/", self.project_path(project)))
                .query("per_page", PER_PAGE)
                .query("order_by", "-updated_at");
            if let Some(cursor) = cursor {
                call = call.query("cursor", cursor);
            }
            let answer = expect_success(self.client.send(&call).await?, what)?;
            let page: Page = answer.json(what)?;
            let mut items = Vec::with_capacity(page.results.len());
            for value in &page.results {
                match serde_json::from_value::<IssueDto>(value.clone())
                    .map(IssueDto::into_work_item)
                {
                    Ok(Ok(item)) => items.push(item),
                    Ok(Err(err)) => {
                        tracing::warn!(project = %project, error = %err, "plane work item skipped")
                    }
                    Err(err) => {
                        tracing::warn!(project = %project, error = %err, "plane work item skipped")
                    }
                }
            }
            Ok(WorkItemPage {
                items,
                next_cursor: page.next(),
            })
        }
        .await;
        self.counted(result)
    }

    #[instrument(skip_all, fields(project = %project, issue = %issue))]
    async fn work_item(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<WorkItem, TrackerError> {
        let result = async {
            let what = "the work item";
            let call = Call::get(self.item_path(project, issue)).query("expand", "state");
            let answer = expect_success(self.client.send(&call).await?, what)?;
            let dto: IssueDto = answer.json(what)?;
            dto.into_work_item().map_err(|err| {
                TrackerError::other(format!("plane answered {what} with unexpected JSON: {err}"))
            })
        }
        .await;
        self.counted(result)
    }

    #[instrument(skip_all, fields(project = %project, issue = %issue, state = %state))]
    async fn set_state(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        state: &StateId,
    ) -> Result<Timestamp, TrackerError> {
        let result = async {
            let what = "the state change";
            let call = Call::with_body(
                Method::Patch,
                self.item_path(project, issue),
                json!({ "state": state.as_str() }),
            );
            let answer = expect_success(self.client.send(&call).await?, what)?;
            // Plane's own time of the move: orch compares Plane's times with Plane's times.
            let moved: UpdatedAt = answer.json(what)?;
            updated_at(&moved.updated_at).map_err(|err| {
                TrackerError::other(format!("plane answered {what} with unexpected JSON: {err}"))
            })
        }
        .await;
        self.counted(result)
    }

    #[instrument(skip_all, fields(project = %project, issue = %issue))]
    async fn comments(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<Vec<Comment>, TrackerError> {
        let result = async {
            let what = "the comments list";
            let values = self
                .all_pages(format!("{}comments/", self.item_path(project, issue)), what)
                .await?;
            let mut comments = Vec::with_capacity(values.len());
            for value in values {
                let dto: CommentDto = serde_json::from_value(value).map_err(|err| {
                    TrackerError::other(format!(
                        "plane answered {what} with unexpected JSON: {err}"
                    ))
                })?;
                comments.push(dto.into_comment().map_err(|err| {
                    TrackerError::other(format!(
                        "plane answered {what} with unexpected JSON: {err}"
                    ))
                })?);
            }
            Ok(comments)
        }
        .await;
        self.counted(result)
    }

    #[instrument(skip_all, fields(project = %project, issue = %issue, external_id = external_id))]
    async fn add_comment(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        external_id: &str,
        text: &str,
    ) -> Result<(), TrackerError> {
        let result = async {
            let body = json!({
                "comment_html": html::from_markdown(text),
                "external_source": EXTERNAL_SOURCE,
                "external_id": external_id,
            });
            let call = Call::with_body(
                Method::Post,
                format!("{}comments/", self.item_path(project, issue)),
                body,
            );
            let answer = self.client.send(&call).await?;
            if answer.status == 409 {
                // A comment with this external id exists: an earlier attempt already posted it.
                tracing::debug!("plane comment already posted");
                return Ok(());
            }
            expect_success(answer, "the new comment").map(drop)
        }
        .await;
        self.counted(result)
    }
}

/// Keeps a 2xx; maps 404 to `NotFound`, 409 to `Conflict` and any other 4xx to `Invalid`.
fn expect_success(answer: Answer, what: &str) -> Result<Answer, TrackerError> {
    if answer.is_success() {
        return Ok(answer);
    }
    let text = answer.error_text();
    Err(match answer.status {
        404 => TrackerError::NotFound(format!("plane has no such resource for {what}: {text}")),
        409 => TrackerError::Conflict(format!("plane refused {what}: {text}")),
        status => TrackerError::Invalid(format!("plane refused {what} (HTTP {status}): {text}")),
    })
}

/// Resolves the configured names against a project's states (exact name first, then
/// ignoring case, since Plane shows names as typed).
fn resolve(
    project: &ProjectId,
    states: &[(String, StateId)],
    names: &StateNames,
) -> Result<ProjectStates, TrackerError> {
    let find = |name: &str| -> Result<StateId, TrackerError> {
        states
            .iter()
            .find(|(state, _)| state == name)
            .or_else(|| states.iter().find(|(state, _)| state.eq_ignore_ascii_case(name)))
            .map(|(_, id)| id.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = states.iter().map(|(state, _)| state.as_str()).collect();
                TrackerError::NotFound(format!(
                    "plane project {project} has no state named {name:?} (it has: {}); fix [projects.states]",
                    known.join(", ")
                ))
            })
    };
    let optional = |name: &Option<String>| name.as_deref().map(find).transpose();
    Ok(ProjectStates {
        in_progress: find(&names.in_progress)?,
        approved: find(&names.approved)?,
        rejected: find(&names.rejected)?,
        awaiting: optional(&names.awaiting)?,
        done: find(&names.done)?,
        cancelled: optional(&names.cancelled)?,
    })
}
