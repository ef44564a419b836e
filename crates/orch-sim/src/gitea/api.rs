//! The REST API of `GiteaSim` (`/api/v1`): routing, faults, and the handlers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::gitea::git::{self, MergeStyle, Merged};
use crate::gitea::hooks::RefChange;
use crate::gitea::json;
use crate::gitea::state::{CommentRec, Pull, RepoState, ReviewRec, StatusRec, UserRef};
use crate::gitea::{now, record, Inner, Mutation, API_USER, API_USER_ID};
use crate::server::{Reply, Request, Response};

/// Gitea's default page size, and its cap (`[api] MAX_RESPONSE_ITEMS`).
const DEFAULT_PAGE_SIZE: usize = 30;
const MAX_PAGE_SIZE: usize = 50;

/// Gitea's error body `{"message", "url"}`.
pub(crate) fn error(base: &str, status: u16, message: &str) -> Response {
    crate::server::json(
        status,
        &json!({ "message": message, "url": format!("{base}/api/swagger") }),
    )
}

fn not_found(base: &str) -> Response {
    crate::server::json(
        404,
        &json!({ "message": "The target couldn't be found.", "url": format!("{base}/api/swagger"), "errors": [] }),
    )
}

/// What a merge asks for, as Gitea's `MergePullRequestForm` carries it.
pub(crate) struct MergeForm {
    pub(crate) style: MergeStyle,
    /// The head the merge is pinned to, when the caller gave one.
    pub(crate) head_commit_id: Option<String>,
    pub(crate) delete_branch_after_merge: bool,
}

/// How a merge attempt ended inside the simulator.
#[derive(Debug)]
pub(crate) enum MergeResult {
    Merged(String),
    AlreadyMerged,
    Closed,
    NotFound,
    HeadMoved,
    Conflict {
        style: MergeStyle,
        stdout: String,
        stderr: String,
    },
    TryLater,
    Failed(String),
}

/// An API failure as (status, message).
pub(crate) type ApiError = (u16, String);

/// The latest status per context of `sha`, and Gitea's combined state of them.
pub(crate) fn combine<'a>(repo: &'a RepoState, sha: &str) -> (String, Vec<&'a StatusRec>) {
    let mut latest: Vec<&StatusRec> = Vec::new();
    for status in repo.statuses.iter().filter(|status| status.sha == sha) {
        match latest
            .iter_mut()
            .find(|seen| seen.context == status.context)
        {
            Some(seen) if seen.id < status.id => *seen = status,
            Some(_) => {}
            None => latest.push(status),
        }
    }
    let state = if latest.is_empty() {
        "pending"
    } else if latest
        .iter()
        .any(|status| matches!(status.state.as_str(), "error" | "failure" | "warning"))
    {
        "failure"
    } else if latest
        .iter()
        .all(|status| matches!(status.state.as_str(), "success" | "skipped"))
    {
        "success"
    } else {
        "pending"
    };
    (state.to_owned(), latest)
}

/// Splits a path into percent-decoded segments.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect()
}

fn percent_decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn query_param(request: &Request, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(&value.replace('+', " ")))
    })
}

/// One page of `items` with `X-Total-Count` and a `Link` header, as Gitea paginates.
fn paginate(base: &str, request: &Request, items: Vec<Value>) -> Response {
    let page = query_param(request, "page")
        .and_then(|page| page.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let limit = query_param(request, "limit")
        .and_then(|limit| limit.parse::<usize>().ok())
        .filter(|limit| *limit > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .min(MAX_PAGE_SIZE);
    let total = items.len();
    let pages = total.div_ceil(limit).max(1);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    let link_to = |target: usize| {
        let others: Vec<&str> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| {
                !pair.is_empty() && !pair.starts_with("page=") && !pair.starts_with("limit=")
            })
            .collect();
        let mut query = others.join("&");
        if !query.is_empty() {
            query.push('&');
        }
        format!(
            "<{base}{}?{query}limit={limit}&page={target}>",
            request.uri().path()
        )
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(pages)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    let body =
        serde_json::to_vec(&Value::Array(chunk)).expect("a serde_json::Value always serialises");
    let mut builder = hyper::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-total-count", total.to_string());
    if !links.is_empty() {
        builder = builder.header("link", links.join(","));
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("headers are valid")
}

fn api_user() -> UserRef {
    (API_USER_ID, API_USER.to_owned())
}

fn body_json(request: &Request) -> Result<Value, ApiError> {
    if request.body().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(request.body()).map_err(|err| (400, format!("invalid JSON body: {err}")))
}

fn str_field<'a>(body: &'a Value, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| body.get(*name).and_then(Value::as_str))
}

impl Inner {
    /// Serves one REST request: record, authenticate, inject faults, route.
    pub(crate) async fn api(self: Arc<Self>, request: Request) -> Reply {
        let base = self.base().to_owned();
        self.lock().api_requests.push(record(&request));
        if !self.authorized(&request) {
            return Reply::Respond(error(
                &base,
                401,
                "Only signed in user is allowed to call APIs.",
            ));
        }
        let mutating = request.method() != Method::GET && request.method() != Method::HEAD;
        let (fault, latency, drop_response) = {
            let mut state = self.lock();
            let faults = &mut state.api_faults;
            let fault = if let Some(status) = faults.scripted.pop_front() {
                Some((status, None))
            } else if faults.rate_limited > 0 {
                faults.rate_limited -= 1;
                Some((429, Some(faults.retry_after_s)))
            } else if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
                Some(([500, 502, 503][rand::random_range(0..3)], None))
            } else {
                None
            };
            let drop_response = fault.is_none() && mutating && faults.drop_responses > 0;
            if drop_response {
                faults.drop_responses -= 1;
            }
            (fault, faults.latency, drop_response)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some((status, retry_after)) = fault {
            let mut response = error(&base, status, "injected fault");
            if let Some(seconds) = retry_after {
                let value = hyper::header::HeaderValue::from_str(&seconds.to_string())
                    .expect("digits are a valid header");
                response.headers_mut().insert("retry-after", value);
            }
            return Reply::Respond(response);
        }
        let response = match self.route(&request).await {
            Ok(response) => response,
            Err((404, _)) => not_found(&base),
            Err((status, message)) => error(&base, status, &message),
        };
        if drop_response {
            return Reply::Drop;
        }
        Reply::Respond(response)
    }

    async fn route(self: &Arc<Self>, request: &Request) -> Result<Response, ApiError> {
        let parts = segments(request.uri().path().trim_start_matches("/api/v1"));
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let method = request.method().clone();
        if parts == ["user"] && method == Method::GET {
            return Ok(crate::server::json(
                200,
                &json::user(self.base(), API_USER_ID, API_USER),
            ));
        }
        let ["repos", owner, name, rest @ ..] = parts.as_slice() else {
            return Err((404, "not found".to_owned()));
        };
        let full = format!("{owner}/{name}");
        if !self.lock().repos.contains_key(&full) {
            return Err((404, "repository does not exist".to_owned()));
        }
        let number = |text: &str| text.parse::<u64>().ok();
        match (method, rest) {
            (Method::GET, []) => self.get_repo(&full),
            (Method::GET, ["branches"]) => self.list_branches(&full, request).await,
            (Method::GET, ["branches", branch @ ..]) if !branch.is_empty() => {
                self.get_branch(&full, &branch.join("/")).await
            }
            (Method::GET, ["pulls"]) => self.list_pulls(&full, request),
            (Method::POST, ["pulls"]) => self.create_pull(&full, &body_json(request)?).await,
            (Method::GET, ["pulls", index]) if number(index).is_some() => self
                .pull_json(&full, number(index).unwrap_or_default())
                .map(|pull| crate::server::json(200, &pull)),
            (Method::PATCH, ["pulls", index]) if number(index).is_some() => self.edit_pull(
                &full,
                number(index).unwrap_or_default(),
                &body_json(request)?,
            ),
            (Method::POST, ["pulls", index, "merge"]) if number(index).is_some() => {
                self.merge_endpoint(
                    &full,
                    number(index).unwrap_or_default(),
                    &body_json(request)?,
                )
                .await
            }
            (Method::GET, ["pulls", index, "merge"]) if number(index).is_some() => {
                let merged = self.pull_json(&full, number(index).unwrap_or_default())?["merged"]
                    == Value::Bool(true);
                Ok(if merged {
                    crate::server::empty(204)
                } else {
                    not_found(self.base())
                })
            }
            (Method::GET, ["pulls", index, "reviews"]) if number(index).is_some() => {
                self.list_reviews(&full, number(index).unwrap_or_default(), request)
            }
            (Method::POST, ["pulls", index, "reviews"]) if number(index).is_some() => self
                .create_review(
                    &full,
                    number(index).unwrap_or_default(),
                    &body_json(request)?,
                ),
            (Method::GET, ["pulls", base, head @ ..]) if !head.is_empty() => {
                self.pull_by_base_head(&full, base, &head.join("/"))
            }
            (Method::GET, ["commits", reference @ .., "status"]) if !reference.is_empty() => {
                self.combined_status(&full, &reference.join("/")).await
            }
            (Method::GET, ["statuses", sha]) => self.list_statuses(&full, sha, request),
            (Method::POST, ["statuses", sha]) => {
                let body = body_json(request)?;
                let state = str_field(&body, &["state"]).unwrap_or_default();
                let context = str_field(&body, &["context"])
                    .filter(|context| !context.is_empty())
                    .unwrap_or("default");
                let description = str_field(&body, &["description"]).unwrap_or_default();
                let target_url = str_field(&body, &["target_url"]).unwrap_or_default();
                let status = self
                    .create_status(
                        &full,
                        sha,
                        state,
                        context,
                        description,
                        target_url,
                        api_user(),
                    )
                    .await?;
                Ok(crate::server::json(201, &status))
            }
            (Method::GET, ["issues", index, "comments"]) if number(index).is_some() => {
                self.list_comments(&full, number(index).unwrap_or_default())
            }
            (Method::POST, ["issues", index, "comments"]) if number(index).is_some() => self
                .create_comment(
                    &full,
                    number(index).unwrap_or_default(),
                    &body_json(request)?,
                ),
            _ => Err((404, "not found".to_owned())),
        }
    }

    fn get_repo(&self, full: &str) -> Result<Response, ApiError> {
        let state = self.lock();
        let repo = state.repos.get(full).ok_or((404, String::new()))?;
        Ok(crate::server::json(200, &json::repo(self.base(), repo)))
    }

    async fn list_branches(&self, full: &str, request: &Request) -> Result<Response, ApiError> {
        let repo_dir = self.repo_dir(full);
        let refs = git::refs(&repo_dir)
            .await
            .map_err(|err| (500, err.to_string()))?;
        let mut items = Vec::new();
        for (refname, sha) in refs {
            let Some(name) = refname.strip_prefix("refs/heads/") else {
                continue;
            };
            let info = git::commit_info(&repo_dir, &sha)
                .await
                .map_err(|err| (500, err.to_string()))?;
            items.push(json::branch(self.base(), full, name, &info));
        }
        Ok(paginate(self.base(), request, items))
    }

    async fn get_branch(&self, full: &str, branch: &str) -> Result<Response, ApiError> {
        let repo_dir = self.repo_dir(full);
        let tip = git::branch_tip(&repo_dir, branch)
            .await
            .map_err(|err| (500, err.to_string()))?;
        let tip = tip.ok_or((404, format!("branch {branch} does not exist")))?;
        let info = git::commit_info(&repo_dir, &tip)
            .await
            .map_err(|err| (500, err.to_string()))?;
        Ok(crate::server::json(
            200,
            &json::branch(self.base(), full, branch, &info),
        ))
    }

    fn pull_json(&self, full: &str, number: u64) -> Result<Value, ApiError> {
        let state = self.lock();
        let repo = state.repos.get(full).ok_or((404, String::new()))?;
        let pull = repo.pull(number).ok_or((404, String::new()))?;
        Ok(json::pull(self.base(), repo, pull))
    }

    fn list_pulls(&self, full: &str, request: &Request) -> Result<Response, ApiError> {
        let wanted = query_param(request, "state").unwrap_or_else(|| "open".to_owned());
        let items = {
            let state = self.lock();
            let repo = state.repos.get(full).ok_or((404, String::new()))?;
            repo.pulls
                .iter()
                .rev()
                .filter(|pull| match wanted.as_str() {
                    "closed" => !pull.open,
                    "all" => true,
                    _ => pull.open,
                })
                .map(|pull| json::pull(self.base(), repo, pull))
                .collect()
        };
        Ok(paginate(self.base(), request, items))
    }

    /// Gitea's `GetPullRequestByBaseHeadInfo` has no ordering: it can answer with an old
    /// closed PR even when a newer one is open. The simulator always answers with the oldest.
    fn pull_by_base_head(&self, full: &str, base: &str, head: &str) -> Result<Response, ApiError> {
        let state = self.lock();
        let repo = state.repos.get(full).ok_or((404, String::new()))?;
        let pull = repo
            .pulls
            .iter()
            .find(|pull| pull.base == base && pull.head == head)
            .ok_or((404, String::new()))?;
        Ok(crate::server::json(
            200,
            &json::pull(self.base(), repo, pull),
        ))
    }

    async fn create_pull(self: &Arc<Self>, full: &str, body: &Value) -> Result<Response, ApiError> {
        let title = str_field(body, &["title"]).unwrap_or_default().to_owned();
        let text = str_field(body, &["body"]).unwrap_or_default().to_owned();
        let base = str_field(body, &["base"]).unwrap_or_default().to_owned();
        let head_field = str_field(body, &["head"]).unwrap_or_default();
        let head = head_field
            .split_once(':')
            .map_or(head_field, |(_, branch)| branch)
            .to_owned();
        if title.trim().is_empty() {
            return Err((422, "[Title]: Required".to_owned()));
        }
        let repo_dir = self.repo_dir(full);
        let gitfail = |err: git::GitError| (500, err.to_string());
        let head_sha = git::branch_tip(&repo_dir, &head)
            .await
            .map_err(gitfail)?
            .ok_or((404, String::new()))?;
        let base_sha = git::branch_tip(&repo_dir, &base)
            .await
            .map_err(gitfail)?
            .ok_or((404, String::new()))?;
        let no_changes = (
            422,
            "Invalid PullRequest: There are no changes between the head and the base".to_owned(),
        );
        if head == base
            || git::count_ahead(&repo_dir, &base_sha, &head_sha)
                .await
                .map_err(gitfail)?
                == 0
        {
            return Err(no_changes);
        }
        let merge_base = git::merge_base(&repo_dir, &base_sha, &head_sha)
            .await
            .map_err(gitfail)?
            .unwrap_or_default();
        let (number, response) = {
            let mut state = self.lock();
            let checker_enabled = state.checker.enabled;
            let id = state.fresh_id();
            let repo = state.repos.get_mut(full).ok_or((404, String::new()))?;
            if let Some(existing) = repo
                .pulls
                .iter()
                .find(|pull| pull.open && pull.head == head && pull.base == base)
            {
                return Err((
                    409,
                    format!(
                        "pull request already exists for these targets [id: {}, issue_id: {}, head_repo_id: {}, base_repo_id: {}, head_branch: {}, base_branch: {}]",
                        existing.id, existing.id, repo.id, repo.id, head, base
                    ),
                ));
            }
            let number = repo.pulls.len() as u64 + 1;
            let stamp = now();
            repo.pulls.push(Pull {
                id,
                number,
                poster: api_user(),
                title,
                body: text,
                head: head.clone(),
                head_sha,
                base: base.clone(),
                base_sha,
                merge_base,
                open: true,
                merged: false,
                merged_at: None,
                merged_by: None,
                merge_commit_sha: None,
                // Gitea checks a new PR in the background, like after a push.
                checking: checker_enabled,
                conflicted: false,
                check_generation: 0,
                created_at: stamp.clone(),
                updated_at: stamp,
                closed_at: None,
            });
            let response = json::pull(
                self.base(),
                repo,
                repo.pull(number).expect("the pull was just added"),
            );
            state.mutations.push(Mutation::PullCreated {
                repo: full.to_owned(),
                number,
                head,
                base,
            });
            (number, response)
        };
        self.send_pull_event(full, number, "opened", "pull_request", &api_user());
        self.check_pulls(full, vec![number]).await;
        Ok(crate::server::json(201, &response))
    }

    fn edit_pull(&self, full: &str, number: u64, body: &Value) -> Result<Response, ApiError> {
        {
            let mut state = self.lock();
            let repo = state.repos.get_mut(full).ok_or((404, String::new()))?;
            let pull = repo.pull_mut(number).ok_or((404, String::new()))?;
            if let Some(title) = str_field(body, &["title"]) {
                pull.title = title.to_owned();
            }
            if let Some(text) = str_field(body, &["body"]) {
                pull.body = text.to_owned();
            }
        }
        if str_field(body, &["state"]) == Some("closed") {
            self.close(full, number, api_user())?;
        }
        Ok(crate::server::json(201, &self.pull_json(full, number)?))
    }

    /// Closes a PR unmerged; closing a closed PR changes nothing and sends nothing.
    pub(crate) fn close(&self, full: &str, number: u64, doer: UserRef) -> Result<(), ApiError> {
        {
            let mut state = self.lock();
            let repo = state.repos.get_mut(full).ok_or((404, String::new()))?;
            let pull = repo.pull_mut(number).ok_or((404, String::new()))?;
            if !pull.open {
                return Ok(());
            }
            let stamp = now();
            pull.open = false;
            pull.closed_at = Some(stamp.clone());
            pull.updated_at = stamp;
            state.mutations.push(Mutation::PullClosed {
                repo: full.to_owned(),
                number,
                by: doer.1.clone(),
            });
        }
        self.send_pull_event(full, number, "closed", "pull_request", &doer);
        Ok(())
    }

    async fn merge_endpoint(
        self: &Arc<Self>,
        full: &str,
        number: u64,
        body: &Value,
    ) -> Result<Response, ApiError> {
        let style_word = str_field(body, &["Do", "do"]).unwrap_or_default();
        if style_word.is_empty() {
            return Err((422, "[Do]: Required".to_owned()));
        }
        let Some(style) = MergeStyle::parse(style_word) else {
            return Err((
                405,
                format!("{style_word} is not allowed an allowed merge style for this repository"),
            ));
        };
        let head_commit_id = str_field(body, &["head_commit_id"])
            .filter(|sha| !sha.is_empty())
            .map(str::to_owned);
        let form = MergeForm {
            style,
            head_commit_id,
            delete_branch_after_merge: body
                .get("delete_branch_after_merge")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let base = self.base().to_owned();
        Ok(match self.merge(full, number, form, api_user()).await {
            MergeResult::Merged(_) => crate::server::empty(200),
            // Gitea answers an already merged PR with an empty message.
            MergeResult::AlreadyMerged => error(&base, 405, ""),
            MergeResult::Closed | MergeResult::NotFound => not_found(&base),
            MergeResult::HeadMoved => error(&base, 409, "head out of date"),
            MergeResult::Conflict {
                style,
                stdout,
                stderr,
            } => crate::server::json(
                409,
                &json!({ "Style": style.as_str(), "StdOut": stdout, "StdErr": stderr, "Err": {} }),
            ),
            MergeResult::TryLater => error(&base, 405, "Please try again later"),
            MergeResult::Failed(message) => error(&base, 500, &message),
        })
    }

    /// Merges PR `number` with a real git merge in the bare repository.
    pub(crate) async fn merge(
        self: &Arc<Self>,
        full: &str,
        number: u64,
        form: MergeForm,
        doer: UserRef,
    ) -> MergeResult {
        let MergeForm {
            style,
            head_commit_id,
            delete_branch_after_merge: delete_branch,
        } = form;
        let guard = self.git_lock.lock().await;
        let pull = {
            let state = self.lock();
            match state.repos.get(full).and_then(|repo| repo.pull(number)) {
                Some(pull) => pull.clone(),
                None => return MergeResult::NotFound,
            }
        };
        if pull.merged {
            return MergeResult::AlreadyMerged;
        }
        if !pull.open {
            return MergeResult::Closed;
        }
        // `CheckPullMergeable`: a PR the checker has not marked mergeable (still checking, or
        // known to conflict) is refused before any merge is tried.
        if pull.checking || pull.conflicted {
            return MergeResult::TryLater;
        }
        if head_commit_id
            .as_deref()
            .is_some_and(|expected| expected != pull.head_sha)
        {
            return MergeResult::HeadMoved;
        }
        let repo_dir = self.repo_dir(full);
        let base_sha = match git::branch_tip(&repo_dir, &pull.base).await {
            Ok(Some(sha)) => sha,
            Ok(None) => {
                return MergeResult::Failed(format!("base branch {} does not exist", pull.base))
            }
            Err(err) => return MergeResult::Failed(err.to_string()),
        };
        let message = format!(
            "Merge pull request '{}' (#{number}) from {} into {}",
            pull.title, pull.head, pull.base
        );
        let merge_sha = match git::merge(
            &repo_dir,
            style,
            &pull.base,
            &base_sha,
            &pull.head_sha,
            &message,
        )
        .await
        {
            Ok(Merged::Done { sha }) => sha,
            Ok(Merged::Conflict { stdout, stderr }) => {
                return MergeResult::Conflict {
                    style,
                    stdout,
                    stderr,
                }
            }
            Err(err) => return MergeResult::Failed(err.to_string()),
        };
        {
            let mut state = self.lock();
            if let Some(pull) = state
                .repos
                .get_mut(full)
                .and_then(|repo| repo.pull_mut(number))
            {
                let stamp = now();
                pull.open = false;
                pull.merged = true;
                pull.merged_at = Some(stamp.clone());
                pull.closed_at = Some(stamp.clone());
                pull.updated_at = stamp;
                pull.merged_by = Some(doer.clone());
                pull.merge_commit_sha = Some(merge_sha.clone());
            }
            state.mutations.push(Mutation::PullMerged {
                repo: full.to_owned(),
                number,
                head_sha: pull.head_sha.clone(),
                merge_sha: merge_sha.clone(),
                style: style.as_str().to_owned(),
                by: doer.1.clone(),
            });
        }
        self.send_pull_event(full, number, "closed", "pull_request", &doer);
        let mut changes = vec![RefChange::new(
            format!("refs/heads/{}", pull.base),
            base_sha.clone(),
            merge_sha.clone(),
        )];
        if delete_branch {
            let still_used = {
                let state = self.lock();
                state.repos.get(full).is_some_and(|repo| {
                    repo.pulls
                        .iter()
                        .any(|other| other.open && other.head == pull.head)
                })
            };
            let refname = format!("refs/heads/{}", pull.head);
            if !still_used
                && git::ok(&repo_dir, &["update-ref", "-d", &refname])
                    .await
                    .is_ok()
            {
                changes.push(RefChange::new(
                    refname,
                    pull.head_sha.clone(),
                    git::ZERO_SHA.to_owned(),
                ));
            }
        }
        self.after_push(full, &changes).await;
        drop(guard);
        MergeResult::Merged(merge_sha)
    }

    fn list_reviews(
        &self,
        full: &str,
        number: u64,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let items = {
            let state = self.lock();
            let repo = state.repos.get(full).ok_or((404, String::new()))?;
            repo.pull(number).ok_or((404, String::new()))?;
            repo.reviews
                .iter()
                .filter(|review| review.number == number)
                .map(|review| json::review(self.base(), full, review))
                .collect()
        };
        Ok(paginate(self.base(), request, items))
    }

    fn create_review(&self, full: &str, number: u64, body: &Value) -> Result<Response, ApiError> {
        let event = str_field(body, &["event"])
            .unwrap_or("PENDING")
            .to_ascii_uppercase();
        let text = str_field(body, &["body"]).unwrap_or_default().to_owned();
        let state_word = match event.as_str() {
            "APPROVED" | "APPROVE" => "APPROVED",
            "REQUEST_CHANGES" => "REQUEST_CHANGES",
            "COMMENT" => "COMMENT",
            "PENDING" | "" => "PENDING",
            other => return Err((422, format!("unknown review event {other}"))),
        };
        if matches!(state_word, "COMMENT" | "REQUEST_CHANGES") && text.trim().is_empty() {
            return Err((
                422,
                format!("review event {state_word} requires a body or a comment"),
            ));
        }
        let response = {
            let mut state = self.lock();
            let id = state.fresh_id();
            let repo = state.repos.get_mut(full).ok_or((404, String::new()))?;
            let pull = repo.pull(number).ok_or((404, String::new()))?;
            let commit_id = str_field(body, &["commit_id"])
                .filter(|sha| !sha.is_empty())
                .unwrap_or(&pull.head_sha)
                .to_owned();
            repo.reviews.push(ReviewRec {
                id,
                number,
                user: api_user(),
                state: state_word.to_owned(),
                body: text.clone(),
                commit_id,
                submitted_at: now(),
            });
            let response = json::review(
                self.base(),
                full,
                repo.reviews.last().expect("the review was just added"),
            );
            state.mutations.push(Mutation::ReviewPosted {
                repo: full.to_owned(),
                number,
                event: state_word.to_owned(),
                body: text.clone(),
            });
            response
        };
        if state_word == "COMMENT" {
            self.send_review_event(full, number, &text);
        }
        Ok(crate::server::json(200, &response))
    }

    fn send_review_event(&self, full: &str, number: u64, text: &str) {
        let payload = {
            let state = self.lock();
            let Some(repo) = state.repos.get(full) else {
                return;
            };
            let Some(pull) = repo.pull(number) else {
                return;
            };
            let user = api_user();
            json!({
                "action": "reviewed",
                "number": number,
                "pull_request": json::pull(self.base(), repo, pull),
                "requested_reviewer": null,
                "repository": json::repo(self.base(), repo),
                "sender": json::user(self.base(), user.0, &user.1),
                "commit_id": "",
                "review": { "type": "pull_request_review_comment", "content": text },
            })
        };
        self.enqueue(
            "pull_request_comment",
            "pull_request_review_comment",
            &payload,
        );
    }

    fn list_comments(&self, full: &str, number: u64) -> Result<Response, ApiError> {
        let state = self.lock();
        let repo = state.repos.get(full).ok_or((404, String::new()))?;
        repo.pull(number).ok_or((404, String::new()))?;
        let items: Vec<Value> = repo
            .comments
            .iter()
            .filter(|comment| comment.number == number)
            .map(|comment| json::comment(self.base(), full, comment))
            .collect();
        Ok(crate::server::json(200, &Value::Array(items)))
    }

    fn create_comment(&self, full: &str, number: u64, body: &Value) -> Result<Response, ApiError> {
        let text = str_field(body, &["body"]).unwrap_or_default().to_owned();
        if text.trim().is_empty() {
            return Err((422, "[Body]: Required".to_owned()));
        }
        let (response, payload) = {
            let mut state = self.lock();
            let id = state.fresh_id();
            let repo = state.repos.get_mut(full).ok_or((404, String::new()))?;
            repo.pull(number).ok_or((404, String::new()))?;
            repo.comments.push(CommentRec {
                id,
                number,
                user: api_user(),
                body: text.clone(),
                created_at: now(),
            });
            let comment = json::comment(
                self.base(),
                full,
                repo.comments.last().expect("the comment was just added"),
            );
            let user = api_user();
            let pull = repo.pull(number).expect("checked above");
            let payload = json!({
                "action": "created",
                "issue": { "id": pull.id, "number": number, "title": pull.title, "state": if pull.open { "open" } else { "closed" } },
                "pull_request": json::pull(self.base(), repo, pull),
                "comment": comment,
                "repository": json::repo(self.base(), repo),
                "sender": json::user(self.base(), user.0, &user.1),
                "is_pull": true,
            });
            state.mutations.push(Mutation::CommentPosted {
                repo: full.to_owned(),
                number,
                body: text,
            });
            (comment, payload)
        };
        self.enqueue("issue_comment", "pull_request_comment", &payload);
        Ok(crate::server::json(201, &response))
    }

    async fn combined_status(&self, full: &str, reference: &str) -> Result<Response, ApiError> {
        let repo_dir = self.repo_dir(full);
        let sha = match git::branch_tip(&repo_dir, reference).await {
            Ok(Some(tip)) => tip,
            _ => reference.to_owned(),
        };
        let state = self.lock();
        let repo = state.repos.get(full).ok_or((404, String::new()))?;
        let (combined, latest) = combine(repo, &sha);
        let statuses = if latest.is_empty() {
            Value::Null
        } else {
            Value::Array(
                latest
                    .iter()
                    .map(|status| json::status(self.base(), full, status))
                    .collect(),
            )
        };
        let base = self.base();
        Ok(crate::server::json(
            200,
            &json!({
                "state": combined,
                "sha": sha,
                "total_count": latest.len(),
                "statuses": statuses,
                "repository": json::repo(base, repo),
                "commit_url": format!("{base}/api/v1/repos/{full}/commits/{sha}"),
                "url": format!("{base}/api/v1/repos/{full}/commits/{sha}/status"),
            }),
        ))
    }

    fn list_statuses(
        &self,
        full: &str,
        sha: &str,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let items = {
            let state = self.lock();
            let repo = state.repos.get(full).ok_or((404, String::new()))?;
            repo.statuses
                .iter()
                .rev()
                .filter(|status| status.sha == sha)
                .map(|status| json::status(self.base(), full, status))
                .collect()
        };
        Ok(paginate(self.base(), request, items))
    }

    /// Records a commit status and sends its `status` delivery. Returns the REST JSON.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create_status(
        &self,
        full: &str,
        sha: &str,
        state_word: &str,
        context: &str,
        description: &str,
        target_url: &str,
        creator: UserRef,
    ) -> Result<Value, ApiError> {
        if !matches!(
            state_word,
            "pending" | "success" | "error" | "failure" | "warning" | "skipped"
        ) {
            return Err((422, format!("invalid commit status state {state_word:?}")));
        }
        let repo_dir = self.repo_dir(full);
        let info = git::commit_info(&repo_dir, sha)
            .await
            .map_err(|_| (404, format!("commit {sha} does not exist")))?;
        let commit = json::payload_commit(self.base(), full, &info);
        let (status_id, response) = {
            let mut state = self.lock();
            let id = state.fresh_id();
            let repo = state.repos.get_mut(full).ok_or((404, String::new()))?;
            let index = repo
                .statuses
                .iter()
                .filter(|status| status.sha == info.sha)
                .count() as u64
                + 1;
            repo.statuses.push(StatusRec {
                id,
                index,
                sha: info.sha.clone(),
                state: state_word.to_owned(),
                context: context.to_owned(),
                description: description.to_owned(),
                target_url: target_url.to_owned(),
                creator: creator.clone(),
                created_at: now(),
            });
            let response = json::status(
                self.base(),
                full,
                repo.statuses.last().expect("the status was just added"),
            );
            state.mutations.push(Mutation::StatusCreated {
                repo: full.to_owned(),
                sha: info.sha.clone(),
                context: context.to_owned(),
                state: state_word.to_owned(),
                by: creator.1.clone(),
            });
            (id, response)
        };
        self.send_status_event(full, status_id, &commit, &creator);
        Ok(response)
    }
}
