//! `GiteaSim`: Gitea API v1, git hosting, a CI and the webhook sender.
//!
//! The simulator serves, on one loopback port: the REST API under `/api/v1` (token auth), git
//! smart HTTP under `/{owner}/{repo}.git/…` (real bare repositories, `git http-backend` as CGI,
//! the same token), a CI that posts commit statuses after every push to a non-base branch, and
//! signed webhook deliveries (`push`, `pull_request`, `status`, reviews, comments) to one target.
//! Everything that changes state is recorded so tests can assert "exactly once"; faults can be
//! injected into REST answers and into deliveries.

mod api;
mod checker;
mod clone;
mod git;
mod hooks;
mod json;
mod smart_http;
mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::server::{Handler, Reply, SimServer};
use state::{RepoState, State, WebhookTarget};

pub use clone::LocalClone;

/// The token `GiteaSim::start` accepts.
pub const DEFAULT_TOKEN: &str = "gitea-sim-token";

/// The login of the token's user (what orch acts as).
pub const API_USER: &str = "orch-bot";
/// The login of the person the test API acts as (manual merges and closes).
pub const PERSON_USER: &str = "alice";
/// The login the CI posts statuses as.
pub const CI_USER: &str = "ci-bot";

const API_USER_ID: u64 = 1;
const PERSON_USER_ID: u64 = 2;
const CI_USER_ID: u64 = 3;

/// What the CI reports for a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiOutcome {
    Success,
    Failure,
}

/// A change the simulator made on behalf of a client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    PullCreated {
        repo: String,
        number: u64,
        head: String,
        base: String,
    },
    PullMerged {
        repo: String,
        number: u64,
        head_sha: String,
        merge_sha: String,
        style: String,
        by: String,
    },
    PullClosed {
        repo: String,
        number: u64,
        by: String,
    },
    ReviewPosted {
        repo: String,
        number: u64,
        event: String,
        body: String,
    },
    CommentPosted {
        repo: String,
        number: u64,
        body: String,
    },
    StatusCreated {
        repo: String,
        sha: String,
        context: String,
        state: String,
        by: String,
    },
}

/// One HTTP request as the simulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What became of one webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target answered with this status (Gitea counts only 2xx as success, and never retries).
    Answered(u16),
    /// No answer: connection refused, reset or timed out.
    Failed(String),
    /// Not sent, by fault injection.
    Dropped,
    /// Not sent: no webhook is configured.
    NoTarget,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    /// `X-Gitea-Event`.
    pub event: String,
    /// `X-Gitea-Event-Type`.
    pub event_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub outcome: DeliveryOutcome,
}

/// A pull request as the test API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSnapshot {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub head_sha: String,
    pub open: bool,
    pub merged: bool,
    pub merge_commit_sha: Option<String>,
    pub title: String,
    pub body: String,
    /// What the PR's `mergeable` says: false while the checker runs and when it conflicts.
    pub mergeable: bool,
}

/// Why a test-API call failed.
#[derive(Debug)]
pub struct SimError(pub String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gitea sim: {}", self.0)
    }
}

impl std::error::Error for SimError {}

/// A running Gitea simulator. Dropping it stops the server and deletes its repositories.
pub struct GiteaSim {
    server: SimServer,
    inner: Arc<Inner>,
    _dir: TempDirGuard,
}

impl GiteaSim {
    /// Starts a simulator that accepts `DEFAULT_TOKEN`.
    pub async fn start() -> std::io::Result<GiteaSim> {
        GiteaSim::start_with_token(DEFAULT_TOKEN).await
    }

    /// Starts a simulator that accepts `token` on the API and on git HTTP.
    pub async fn start_with_token(token: &str) -> std::io::Result<GiteaSim> {
        let dir = std::env::temp_dir().join(format!("orch-gitea-sim-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("repos"))?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            project_root: dir.join("repos"),
            base_url: OnceLock::new(),
            state: Mutex::new(State::default()),
            git_lock: tokio::sync::Mutex::new(()),
            hooks: sender,
        });
        let handler_inner = inner.clone();
        let handler: Handler = Arc::new(move |request| {
            let inner = handler_inner.clone();
            Box::pin(async move { inner.handle(request).await })
        });
        let server = SimServer::start(handler).await?;
        inner
            .base_url
            .set(server.base_url())
            .expect("the base url is set once, here");
        tokio::spawn(hooks::delivery_worker(Arc::downgrade(&inner), receiver));
        Ok(GiteaSim {
            server,
            inner,
            _dir: TempDirGuard(dir),
        })
    }

    /// `http://127.0.0.1:PORT`, what orch's `gitea.base_url` is set to.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Creates `owner/name` as a bare repository whose default branch `main` holds one commit.
    /// Returns the clone URL.
    pub async fn create_repo(&self, owner: &str, name: &str) -> Result<String, SimError> {
        self.inner.create_repo(owner, name, "main").await
    }

    /// `http://127.0.0.1:PORT/owner/name.git`.
    pub fn clone_url(&self, full_name: &str) -> String {
        format!("{}/{full_name}.git", self.base_url())
    }

    /// Where the bare repository lives on disk.
    pub fn repo_path(&self, full_name: &str) -> PathBuf {
        self.inner.project_root.join(format!("{full_name}.git"))
    }

    /// The commit a branch points at, if it exists.
    pub async fn branch_tip(
        &self,
        full_name: &str,
        branch: &str,
    ) -> Result<Option<String>, SimError> {
        git::branch_tip(&self.repo_path(full_name), branch)
            .await
            .map_err(|err| SimError(err.to_string()))
    }

    /// Sends every later delivery to `url`, signed with `secret`.
    pub fn set_webhook(&self, url: &str, secret: &str) {
        self.inner.lock().webhook = Some(WebhookTarget {
            url: url.to_owned(),
            secret: secret.to_owned(),
        });
    }

    pub fn clear_webhook(&self) {
        self.inner.lock().webhook = None;
    }

    /// Every delivery so far, in order (a duplicate appears twice).
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.lock().deliveries.clone()
    }

    /// Sends the body of an earlier delivery again under a new delivery id (Gitea's "replay"),
    /// and returns the new id.
    pub fn redeliver(&self, delivery_id: &str) -> Option<String> {
        let original = self
            .inner
            .lock()
            .deliveries
            .iter()
            .find(|record| record.delivery_id == delivery_id)
            .cloned()?;
        Some(
            self.inner
                .enqueue_raw(original.event, original.event_type, original.body),
        )
    }

    /// Drops (never sends) the next `n` deliveries.
    pub fn drop_next_deliveries(&self, n: u32) {
        self.inner.lock().hook_faults.drop_next += n;
    }

    /// Sends each of the next `n` deliveries twice, with the same delivery id.
    pub fn duplicate_next_deliveries(&self, n: u32) {
        self.inner.lock().hook_faults.duplicate_next += n;
    }

    /// Drops every later delivery whose `X-Gitea-Event-Type` is `event_type`.
    pub fn drop_deliveries_of_type(&self, event_type: &str) {
        self.inner
            .lock()
            .hook_faults
            .drop_types
            .push(event_type.to_owned());
    }

    /// Answers the next `n` REST requests with 500 and Gitea's error body.
    pub fn fail_next_requests(&self, n: u32) {
        self.fail_next_requests_with(500, n);
    }

    /// Drops every `status` delivery of the CI's runs on branches whose name starts with
    /// `prefix` (the statuses themselves are still created: only the webhook is lost).
    pub fn drop_status_deliveries_for_branch_prefix(&self, prefix: &str) {
        self.inner
            .lock()
            .hook_faults
            .drop_status_branch_prefixes
            .push(prefix.to_owned());
    }

    /// Answers the next `n` REST requests with `status` and Gitea's error body.
    pub fn fail_next_requests_with(&self, status: u16, n: u32) {
        let mut state = self.inner.lock();
        state
            .api_faults
            .scripted
            .extend(std::iter::repeat_n(status, n as usize));
    }

    /// Answers the next `n` REST requests with 429 and `Retry-After: retry_after_s`.
    pub fn rate_limit_next_requests(&self, n: u32, retry_after_s: u64) {
        let mut state = self.inner.lock();
        state.api_faults.rate_limited += n;
        state.api_faults.retry_after_s = retry_after_s;
    }

    /// Answers REST requests with a random 5xx with probability `rate`.
    pub fn set_error_rate(&self, rate: f64) {
        self.inner.lock().api_faults.error_rate = rate.clamp(0.0, 1.0);
    }

    /// Delays every REST answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().api_faults.latency = latency;
    }

    /// Applies the next `n` mutating REST requests (POST, PATCH, PUT, DELETE) and then drops
    /// the connection instead of answering.
    pub fn drop_next_responses(&self, n: u32) {
        self.inner.lock().api_faults.drop_responses += n;
    }

    /// Removes every REST fault.
    pub fn clear_faults(&self) {
        self.inner.lock().api_faults = state::ApiFaults::default();
    }

    /// How long the CI waits before posting `pending`, and again before the result.
    pub fn set_ci_delay(&self, delay: Duration) {
        self.inner.lock().ci.delay = delay;
    }

    /// Turns the CI on or off.
    pub fn set_ci_enabled(&self, enabled: bool) {
        self.inner.lock().ci.enabled = enabled;
    }

    /// Scripts the CI result for a sha or a branch name (a sha wins). Without a script the CI
    /// fails iff the head tree has a file `CI_FAIL`.
    pub fn script_ci(&self, sha_or_branch: &str, outcome: CiOutcome) {
        self.inner
            .lock()
            .ci
            .scripted
            .insert(sha_or_branch.to_owned(), outcome);
    }

    /// Every mutation so far, in order.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.inner.lock().mutations.clone()
    }

    /// Every REST request so far.
    pub fn api_requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().api_requests.clone()
    }

    /// Every git HTTP request so far, with its headers.
    pub fn git_requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().git_requests.clone()
    }

    /// The pull requests of a repository, oldest first.
    pub fn pulls(&self, full_name: &str) -> Vec<PullSnapshot> {
        let state = self.inner.lock();
        let Some(repo) = state.repos.get(full_name) else {
            return Vec::new();
        };
        repo.pulls
            .iter()
            .map(|pull| PullSnapshot {
                number: pull.number,
                head: pull.head.clone(),
                base: pull.base.clone(),
                head_sha: pull.head_sha.clone(),
                open: pull.open,
                merged: pull.merged,
                merge_commit_sha: pull.merge_commit_sha.clone(),
                title: pull.title.clone(),
                body: pull.body.clone(),
                mergeable: !pull.checking && !pull.conflicted,
            })
            .collect()
    }

    /// The combined state word of a commit, as `GET commits/{sha}/status` would answer.
    pub fn combined_state(&self, full_name: &str, sha: &str) -> String {
        let state = self.inner.lock();
        state
            .repos
            .get(full_name)
            .map(|repo| api::combine(repo, sha).0)
            .unwrap_or_else(|| "pending".to_owned())
    }

    /// Posts a commit status as the CI user (and sends the `status` webhook).
    pub async fn post_status(
        &self,
        full_name: &str,
        sha: &str,
        state: &str,
        context: &str,
    ) -> Result<(), SimError> {
        let creator = (CI_USER_ID, CI_USER.to_owned());
        self.inner
            .create_status(
                full_name,
                sha,
                state,
                context,
                "posted by the test",
                "",
                creator,
            )
            .await
            .map(|_| ())
            .map_err(|err| SimError(err.1))
    }

    /// Merges a pull request as a person would in Gitea's UI; returns the merge commit.
    pub async fn merge_as_person(&self, full_name: &str, number: u64) -> Result<String, SimError> {
        let doer = (PERSON_USER_ID, PERSON_USER.to_owned());
        let form = api::MergeForm {
            style: git::MergeStyle::Merge,
            head_commit_id: None,
            delete_branch_after_merge: false,
        };
        match self.inner.merge(full_name, number, form, doer).await {
            api::MergeResult::Merged(sha) => Ok(sha),
            other => Err(SimError(format!("merge refused: {other:?}"))),
        }
    }

    /// Closes a pull request unmerged, as a person would.
    pub async fn close_as_person(&self, full_name: &str, number: u64) -> Result<(), SimError> {
        let doer = (PERSON_USER_ID, PERSON_USER.to_owned());
        self.inner
            .close(full_name, number, doer)
            .map_err(|err| SimError(err.1))
    }

    /// How long Gitea's background mergeability checker takes after a push to a pull request's
    /// head or base, or its creation: meanwhile the PR is "checking" (`mergeable` false, merges
    /// answer 405 "Please try again later"). Zero, the default, checks before the push answers.
    pub fn set_mergeability_check_delay(&self, delay: Duration) {
        self.inner.lock().checker.delay = delay;
    }

    /// Turns the background mergeability checker on or off. Off, pull requests keep what it
    /// last concluded, so a conflict it has not seen is found while merging: 409.
    pub fn set_mergeability_checker_enabled(&self, enabled: bool) {
        self.inner.lock().checker.enabled = enabled;
    }

    /// Marks a pull request as "checking mergeability" until the checker next runs on it:
    /// merges answer 405 "Please try again later".
    pub fn set_pull_checking(&self, full_name: &str, number: u64, checking: bool) {
        if let Some(pull) = self
            .inner
            .lock()
            .repos
            .get_mut(full_name)
            .and_then(|repo| repo.pull_mut(number))
        {
            pull.checking = checking;
        }
    }
}

/// Deletes the simulator's directory when dropped.
struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shared core of the simulator: what handlers, the CI and the delivery worker use.
pub(crate) struct Inner {
    token: String,
    project_root: PathBuf,
    base_url: OnceLock<String>,
    state: Mutex<State>,
    /// Serialises every change of refs: receive-pack, merges, branch deletion.
    git_lock: tokio::sync::Mutex<()>,
    hooks: mpsc::UnboundedSender<hooks::Outgoing>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge every later call.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn base(&self) -> &str {
        self.base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1")
    }

    fn repo_dir(&self, full_name: &str) -> PathBuf {
        self.project_root.join(format!("{full_name}.git"))
    }

    async fn create_repo(
        &self,
        owner: &str,
        name: &str,
        default_branch: &str,
    ) -> Result<String, SimError> {
        let valid = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !valid(owner) || !valid(name) {
            return Err(SimError(format!("invalid repository name {owner}/{name}")));
        }
        let full = format!("{owner}/{name}");
        let path = self.repo_dir(&full);
        if self.lock().repos.contains_key(&full) {
            return Err(SimError(format!("repository {full} exists")));
        }
        git::init_bare(&path, default_branch, &format!("# {name}\n"))
            .await
            .map_err(|err| SimError(err.to_string()))?;
        let mut state = self.lock();
        let id = state.fresh_id();
        let owner_id = 1000 + id;
        state.repos.insert(
            full.clone(),
            RepoState {
                id,
                owner: owner.to_owned(),
                owner_id,
                name: name.to_owned(),
                path,
                default_branch: default_branch.to_owned(),
                created_at: now(),
                pulls: Vec::new(),
                statuses: Vec::new(),
                reviews: Vec::new(),
                comments: Vec::new(),
            },
        );
        Ok(format!("{}/{full}.git", self.base()))
    }

    async fn handle(self: Arc<Self>, request: crate::server::Request) -> Reply {
        let path = request.uri().path().to_owned();
        if path.starts_with("/api/v1/") {
            return self.api(request).await;
        }
        if path.contains(".git/") {
            return self.git_http(request).await;
        }
        Reply::Respond(api::error(self.base(), 404, "not found"))
    }

    /// Checks `Authorization: token …` (or `Bearer …`).
    fn authorized(&self, request: &crate::server::Request) -> bool {
        let Some(value) = request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, credential)) = value.split_once(' ') else {
            return false;
        };
        (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
            && credential.trim() == self.token
    }

    async fn git_http(self: Arc<Self>, request: crate::server::Request) -> Reply {
        let path = request.uri().path().to_owned();
        self.lock().git_requests.push(record(&request));
        if !self.authorized(&request) {
            let response = hyper::Response::builder()
                .status(401)
                .header("www-authenticate", "Basic realm=\"Gitea\"")
                .body(http_body_util::Full::new(Bytes::from_static(
                    b"Unauthorized\n",
                )))
                .expect("static response parts are valid");
            return Reply::Respond(response);
        }
        let Some((full, _)) = path.trim_start_matches('/').split_once(".git/") else {
            return Reply::Respond(api::error(self.base(), 404, "not found"));
        };
        let full = full.to_owned();
        if !self.lock().repos.contains_key(&full) {
            return Reply::Respond(api::error(self.base(), 404, "repository does not exist"));
        }
        let is_receive =
            request.method() == hyper::Method::POST && path.ends_with("/git-receive-pack");
        if !is_receive {
            return match smart_http::serve(&self.project_root, &path, &request, API_USER).await {
                Ok(response) => Reply::Respond(response),
                Err(message) => Reply::Respond(api::error(self.base(), 500, &message)),
            };
        }
        let repo_dir = self.repo_dir(&full);
        let guard = self.git_lock.lock().await;
        let before = git::refs(&repo_dir).await.unwrap_or_default();
        let served = smart_http::serve(&self.project_root, &path, &request, API_USER).await;
        let after = git::refs(&repo_dir).await.unwrap_or_default();
        let changes = hooks::ref_changes(&before, &after);
        self.after_push(&full, &changes).await;
        drop(guard);
        match served {
            Ok(response) => Reply::Respond(response),
            Err(message) => Reply::Respond(api::error(self.base(), 500, &message)),
        }
    }
}

/// Records a request's method, URI and headers.
fn record(request: &crate::server::Request) -> RecordedRequest {
    RecordedRequest {
        method: request.method().as_str().to_owned(),
        uri: request
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_default(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

/// Now, as Gitea writes timestamps (`2026-07-01T08:07:05Z`).
fn now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
