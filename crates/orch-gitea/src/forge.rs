//! `GiteaForge`: the `Forge` port over Gitea's REST API v1.

use std::sync::Arc;

use async_trait::async_trait;
use orch_core::backoff::RetryPolicy;
use orch_core::domain::{CiState, MergeOutcome};
use orch_core::ids::{BranchName, CommitSha, PrNumber, RepoSlug};
use orch_core::ports::{
    CombinedStatus, Forge, ForgeError, NewPullRequest, PrState, PullRequest, StatusCheck,
};
use serde::Deserialize;
use serde_json::json;

use crate::client::{
    encode_branch_path, encode_segment, ApiError, Client, Counters, ForgeStats, Method,
};
use crate::config::{GiteaSettings, MergeStyle};

/// Gitea's largest page (`[api] MAX_RESPONSE_ITEMS`).
const PAGE_SIZE: usize = 50;
/// Listing stops after this many pages (10 000 PRs), so a misbehaving server cannot loop us.
const MAX_PAGES: usize = 200;

/// The `Forge` port over Gitea. Cheap to clone; clones share the HTTP agent and counters.
#[derive(Clone)]
pub struct GiteaForge {
    client: Arc<Client>,
    counters: Arc<Counters>,
    merge_style: MergeStyle,
    delete_branch_after_merge: bool,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GiteaForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GiteaForge")
            .field("merge_style", &self.merge_style)
            .finish_non_exhaustive()
    }
}

impl GiteaForge {
    /// Builds the adapter. Errors: `Invalid` if `base_url` is not an `http(s)://` URL.
    pub fn new(config: GiteaSettings) -> Result<GiteaForge, ForgeError> {
        let scheme_ok =
            config.base_url.starts_with("http://") || config.base_url.starts_with("https://");
        if !scheme_ok {
            return Err(ForgeError::Invalid(format!(
                "gitea.base_url must start with http:// or https://, got {:?}",
                config.base_url
            )));
        }
        let counters = Arc::new(Counters::default());
        Ok(GiteaForge {
            client: Arc::new(Client::new(&config, counters.clone())),
            counters,
            merge_style: config.merge_style,
            delete_branch_after_merge: config.delete_branch_after_merge,
            retry: config.retry,
        })
    }

    /// Calls, 429s and errors since start.
    pub fn stats(&self) -> ForgeStats {
        self.counters.snapshot()
    }

    /// Whether `repo` exists and the token can see it (`GET /repos/{owner}/{repo}`), for
    /// `orch check --online`. Gitea answers 404 for a private repository the token cannot
    /// read, so `false` means "missing or not visible to this token".
    /// Errors: like the port's methods (`Unauthorized` for a refused token, `Unavailable`
    /// after the bounded retries of 429, 5xx and timeouts).
    #[tracing::instrument(skip_all, fields(repo = %repo))]
    pub async fn repository_exists(&self, repo: &RepoSlug) -> Result<bool, ForgeError> {
        let repo = repo.clone();
        self.retrying("repository_exists", move |client| {
            let answer = client.get(&repo_path(&repo))?;
            match answer.status {
                200 => Ok(true),
                404 => Ok(false),
                _ => Err(answer.into_error()),
            }
        })
        .await
    }

    /// Runs the blocking operation `op` on tokio's blocking pool, again after a backoff while it
    /// fails in a retryable way. Each attempt runs the whole operation, so operations that
    /// write start by reading (look-up before create, re-read after an ambiguous merge).
    async fn retrying<T, F>(&self, operation: &'static str, op: F) -> Result<T, ForgeError>
    where
        T: Send + 'static,
        F: Fn(&Client) -> Result<T, ApiError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self.client.clone();
            let op = op.clone();
            let span = tracing::Span::current();
            let result = tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                op(&client)
            })
            .await
            .map_err(|err| ForgeError::other(format!("gitea {operation} did not finish: {err}")))?;
            match result {
                Ok(value) => return Ok(value),
                Err(err) if err.is_retryable() && attempt < self.retry.max_attempts => {
                    let delay = retry_delay(&self.retry, attempt, err.retry_after());
                    tracing::warn!(
                        operation,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "gitea call failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err.into_forge()),
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PullDto {
    number: u64,
    state: String,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    html_url: String,
    /// Absent or null: Gitea does not say.
    #[serde(default)]
    mergeable: Option<bool>,
    head: BranchDto,
    base: BranchDto,
}

#[derive(Deserialize)]
struct BranchDto {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
}

impl PullDto {
    pub(crate) fn into_domain(self) -> Result<PullRequest, ApiError> {
        let number = PrNumber::new(self.number).map_err(|err| ApiError::Decode(err.to_string()))?;
        let head_sha =
            CommitSha::new(self.head.sha).map_err(|err| ApiError::Decode(err.to_string()))?;
        Ok(PullRequest {
            number,
            state: if self.state == "open" {
                PrState::Open
            } else {
                PrState::Closed
            },
            merged: self.merged,
            head_branch: self.head.name,
            head_sha,
            base_branch: self.base.name,
            url: self.html_url,
            mergeable: self.mergeable,
        })
    }
}

#[derive(Deserialize)]
struct CombinedDto {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    statuses: Option<Vec<StatusDto>>,
}

#[derive(Deserialize)]
struct StatusDto {
    #[serde(default)]
    context: String,
    /// The REST API puts a status's state in `status`.
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    target_url: Option<String>,
}

#[derive(Deserialize)]
struct BodyDto {
    #[serde(default)]
    body: Option<String>,
}

/// A Gitea status word (a commit status's, or the combined state) as the core sees it; `None`
/// for a word that carries no verdict. Both the REST API and the `status` webhook use it.
pub(crate) fn ci_state(word: &str) -> Option<CiState> {
    match word {
        "pending" => Some(CiState::Pending),
        "success" => Some(CiState::Success),
        "error" | "failure" | "warning" => Some(CiState::Failure),
        _ => None,
    }
}

fn repo_path(repo: &RepoSlug) -> String {
    format!(
        "repos/{}/{}",
        encode_segment(repo.owner()),
        encode_segment(repo.name())
    )
}

/// Every page of a list endpoint (`page`/`limit`), until a short page or `X-Total-Count`.
fn list_all<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    query: &str,
) -> Result<Vec<T>, ApiError> {
    let mut all = Vec::new();
    for page in 1..=MAX_PAGES {
        let separator = if query.is_empty() { "" } else { "&" };
        let answer = client.get(&format!(
            "{path}?{query}{separator}limit={PAGE_SIZE}&page={page}"
        ))?;
        let total = answer.total_count;
        let items: Vec<T> = answer.json(&[200])?;
        let short = items.len() < PAGE_SIZE;
        all.extend(items);
        if short || total.is_some_and(|total| all.len() as u64 >= total) {
            break;
        }
    }
    Ok(all)
}

fn open_pulls(client: &Client, repo: &RepoSlug) -> Result<Vec<PullDto>, ApiError> {
    list_all(client, &format!("{}/pulls", repo_path(repo)), "state=open")
}

fn find_open_for_branch(
    client: &Client,
    repo: &RepoSlug,
    head: &str,
    base: &str,
) -> Result<Option<PullRequest>, ApiError> {
    open_pulls(client, repo)?
        .into_iter()
        .find(|pull| pull.head.name == head && pull.base.name == base)
        .map(PullDto::into_domain)
        .transpose()
}

fn get_pull(client: &Client, repo: &RepoSlug, number: PrNumber) -> Result<PullRequest, ApiError> {
    client
        .get(&format!("{}/pulls/{}", repo_path(repo), number.get()))?
        .json::<PullDto>(&[200])?
        .into_domain()
}

fn ensure_pull(client: &Client, new: &NewPullRequest) -> Result<PullRequest, ApiError> {
    let (head, base) = (new.head.as_str(), new.base.as_str());
    // Gitea can answer this with an old closed PR of the same branches: check its state.
    let lookup = client.get(&format!(
        "{}/pulls/{}/{}",
        repo_path(&new.repo),
        encode_segment(base),
        encode_branch_path(head)
    ))?;
    match lookup.status {
        200 => {
            let pull = lookup.json::<PullDto>(&[200])?.into_domain()?;
            if pull.state == PrState::Open {
                return Ok(pull);
            }
            // An old closed one: a newer open one may exist beside it.
            if let Some(pull) = find_open_for_branch(client, &new.repo, head, base)? {
                return Ok(pull);
            }
        }
        // No pull request of these branches in any state (`GetPullRequestByBaseHeadInfo`
        // filters on nothing else), so none open: create, and read a 409 below as a race.
        404 => {}
        _ => return Err(lookup.into_error()),
    }
    let body = json!({ "head": head, "base": base, "title": new.title, "body": new.body });
    let created = client.call(
        Method::Post,
        &format!("{}/pulls", repo_path(&new.repo)),
        Some(&body),
    )?;
    match created.status {
        201 => {
            let pull = created.json::<PullDto>(&[201])?.into_domain()?;
            tracing::info!(repo = %new.repo, pr = pull.number.get(), branch = head, "pull request opened");
            Ok(pull)
        }
        // "pull request already exists for these targets": someone opened it meanwhile.
        409 => find_open_for_branch(client, &new.repo, head, base)?.ok_or_else(|| {
            ApiError::Inconsistent(format!(
                "gitea says a pull request from {head} into {base} exists, but none is open"
            ))
        }),
        _ => Err(created.into_error()),
    }
}

/// What a merge call ended with (only transport-class failures are errors).
fn merge_once(
    client: &Client,
    repo: &RepoSlug,
    number: PrNumber,
    head_sha: &CommitSha,
    style: MergeStyle,
    delete_branch: bool,
) -> Result<MergeOutcome, ApiError> {
    let body = json!({
        "Do": style.as_str(),
        "head_commit_id": head_sha.as_str(),
        "delete_branch_after_merge": delete_branch,
        "merge_when_checks_succeed": false,
        "force_merge": false,
    });
    let path = format!("{}/pulls/{}/merge", repo_path(repo), number.get());
    let answer = match client.call(Method::Post, &path, Some(&body)) {
        Ok(answer) => answer,
        Err(err) => return reread_after_ambiguous(client, repo, number, head_sha, err),
    };
    let message = answer.message();
    match answer.status {
        200 => Ok(MergeOutcome::Merged),
        405 if message.to_ascii_lowercase().contains("try again later") => {
            Ok(MergeOutcome::TryLater { reason: message })
        }
        // Gitea answers an already merged PR with 405 and an empty message.
        405 => match get_pull(client, repo, number)? {
            pull if pull.merged => Ok(MergeOutcome::AlreadyMerged),
            _ => Ok(MergeOutcome::Refused {
                reason: format!("gitea refused the merge (405): {message}"),
            }),
        },
        409 => {
            let reason = if message.is_empty() {
                "merge conflict".to_owned()
            } else {
                message
            };
            Ok(MergeOutcome::NeedsRebase { reason })
        }
        // Gitea answers 404 for a closed PR too.
        404 => match get_pull(client, repo, number)? {
            pull if pull.merged => Ok(MergeOutcome::AlreadyMerged),
            pull if pull.state == PrState::Closed => Ok(MergeOutcome::Refused {
                reason: "the pull request is closed without being merged".to_owned(),
            }),
            _ => Ok(MergeOutcome::Refused {
                reason: format!("gitea answered 404: {message}"),
            }),
        },
        status if status == 429 || status >= 500 => {
            let err = answer.into_error();
            reread_after_ambiguous(client, repo, number, head_sha, err)
        }
        401 | 403 => Err(answer.into_error()),
        status => Ok(MergeOutcome::Refused {
            reason: format!("gitea answered {status}: {message}"),
        }),
    }
}

/// After a merge call without a clear answer, the PR tells whether it happened: merged at our
/// head sha is `AlreadyMerged`; otherwise the original error stands (and is retried).
fn reread_after_ambiguous(
    client: &Client,
    repo: &RepoSlug,
    number: PrNumber,
    head_sha: &CommitSha,
    original: ApiError,
) -> Result<MergeOutcome, ApiError> {
    match get_pull(client, repo, number) {
        Ok(pull) if pull.merged && &pull.head_sha == head_sha => {
            tracing::info!(repo = %repo, pr = number.get(), "merge found done after an ambiguous failure");
            Ok(MergeOutcome::AlreadyMerged)
        }
        _ => Err(original),
    }
}

/// Posts `fields` unless an existing body already holds the hidden `marker`.
fn post_once(
    client: &Client,
    path: &str,
    fields: serde_json::Value,
    marker: &str,
    existing: Vec<BodyDto>,
) -> Result<(), ApiError> {
    let needle = hidden(marker);
    if existing.iter().any(|item| {
        item.body
            .as_deref()
            .is_some_and(|body| body.contains(&needle))
    }) {
        return Ok(());
    }
    let answer = client.call(Method::Post, path, Some(&fields))?;
    match answer.status {
        200 | 201 => Ok(()),
        _ => Err(answer.into_error()),
    }
}

/// The marker as an HTML comment: invisible in Gitea's rendering, and a whole token, so
/// `orch:7:comment:1` never matches inside `orch:7:comment:10`.
/// The wait before attempt `attempt + 1`, after `attempt` failed attempts: full jitter, never
/// longer than the backoff's cap, `Retry-After` included.
pub(crate) fn retry_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<std::time::Duration>,
) -> std::time::Duration {
    policy
        .delay(attempt, retry_after, rand::random::<f64>())
        .min(policy.backoff.cap)
}

fn hidden(marker: &str) -> String {
    format!("<!-- {marker} -->")
}

fn with_marker(body: &str, marker: &str) -> String {
    let needle = hidden(marker);
    if body.contains(&needle) {
        body.to_owned()
    } else {
        format!("{body}\n\n{needle}")
    }
}

#[async_trait]
impl Forge for GiteaForge {
    #[tracing::instrument(skip_all, fields(repo = %new.repo, branch = %new.head))]
    async fn ensure_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let new = new.clone();
        self.retrying("ensure_pull_request", move |client| {
            ensure_pull(client, &new)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, pr = number.get()))]
    async fn pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<PullRequest, ForgeError> {
        let repo = repo.clone();
        self.retrying("pull_request", move |client| {
            get_pull(client, &repo, number)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, head = %head))]
    async fn open_pull_request_for_branch(
        &self,
        repo: &RepoSlug,
        head: &BranchName,
        base: &BranchName,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let (repo, head, base) = (repo.clone(), head.clone(), base.clone());
        self.retrying("open_pull_request_for_branch", move |client| {
            find_open_for_branch(client, &repo, head.as_str(), base.as_str())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, sha = %sha.short()))]
    async fn open_pull_request_for_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let (repo, sha) = (repo.clone(), sha.clone());
        self.retrying("open_pull_request_for_sha", move |client| {
            open_pulls(client, &repo)?
                .into_iter()
                .find(|pull| pull.head.sha.eq_ignore_ascii_case(sha.as_str()))
                .map(PullDto::into_domain)
                .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, sha = %sha.short()))]
    async fn combined_status(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<CombinedStatus, ForgeError> {
        let (repo, sha) = (repo.clone(), sha.clone());
        self.retrying("combined_status", move |client| {
            let path = format!("{}/commits/{}/status", repo_path(&repo), sha.as_str());
            let combined: CombinedDto = client.get(&path)?.json(&[200])?;
            let checks: Vec<StatusCheck> = combined
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(|status| StatusCheck {
                    context: status.context,
                    state: status.status,
                    description: status.description.unwrap_or_default(),
                    target_url: status.target_url.unwrap_or_default(),
                })
                .collect();
            let state = if checks.is_empty() {
                CiState::Pending
            } else {
                // An unknown combined word is read as "not decided yet" (SPEC §5.5).
                ci_state(combined.state.as_deref().unwrap_or_default()).unwrap_or(CiState::Pending)
            };
            Ok(CombinedStatus { state, checks })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, pr = number.get(), sha = %head_sha.short()))]
    async fn merge(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        head_sha: &CommitSha,
    ) -> Result<MergeOutcome, ForgeError> {
        let (repo, head_sha) = (repo.clone(), head_sha.clone());
        let (style, delete_branch) = (self.merge_style, self.delete_branch_after_merge);
        let outcome = self
            .retrying("merge", move |client| {
                merge_once(client, &repo, number, &head_sha, style, delete_branch)
            })
            .await?;
        tracing::info!(outcome = ?outcome, "merge answered");
        Ok(outcome)
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, pr = number.get()))]
    async fn review(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let (repo, marker, body) = (repo.clone(), marker.to_owned(), with_marker(body, marker));
        self.retrying("review", move |client| {
            let list_path = format!("{}/pulls/{}/reviews", repo_path(&repo), number.get());
            let existing = list_all::<BodyDto>(client, &list_path, "")?;
            let fields = json!({ "event": "COMMENT", "body": body });
            post_once(client, &list_path, fields, &marker, existing)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, pr = number.get()))]
    async fn comment(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let (repo, marker, body) = (repo.clone(), marker.to_owned(), with_marker(body, marker));
        self.retrying("comment", move |client| {
            let path = format!("{}/issues/{}/comments", repo_path(&repo), number.get());
            let existing: Vec<BodyDto> = client.get(&path)?.json(&[200])?;
            post_once(client, &path, json!({ "body": body }), &marker, existing)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(repo = %repo, pr = number.get()))]
    async fn close_pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<(), ForgeError> {
        let repo = repo.clone();
        self.retrying("close_pull_request", move |client| {
            if get_pull(client, &repo, number)?.state == PrState::Closed {
                return Ok(());
            }
            let path = format!("{}/pulls/{}", repo_path(&repo), number.get());
            let answer = client.call(Method::Patch, &path, Some(&json!({ "state": "closed" })))?;
            match answer.status {
                200 | 201 => Ok(()),
                _ => Err(answer.into_error()),
            }
        })
        .await
    }
}
