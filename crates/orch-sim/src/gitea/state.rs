//! The in-memory records of `GiteaSim`: repositories, pull requests, statuses, reviews, comments.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::gitea::{CiOutcome, DeliveryRecord, Mutation, RecordedRequest};

/// A user as (id, login).
pub(crate) type UserRef = (u64, String);

/// Everything the simulator knows, behind one lock that is never held across an await.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) repos: BTreeMap<String, RepoState>,
    pub(crate) next_id: u64,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) api_requests: Vec<RecordedRequest>,
    pub(crate) git_requests: Vec<RecordedRequest>,
    pub(crate) deliveries: Vec<DeliveryRecord>,
    pub(crate) api_faults: ApiFaults,
    pub(crate) hook_faults: HookFaults,
    pub(crate) webhook: Option<WebhookTarget>,
    pub(crate) ci: CiConfig,
    pub(crate) checker: CheckerConfig,
}

impl State {
    /// A fresh id for any record (Gitea's ids are per table; one counter is enough here).
    pub(crate) fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Where webhooks go.
#[derive(Clone)]
pub(crate) struct WebhookTarget {
    pub(crate) url: String,
    pub(crate) secret: String,
}

/// Faults injected into REST answers (never into git or the test API).
#[derive(Default)]
pub(crate) struct ApiFaults {
    /// Answer the next requests with these statuses, one each.
    pub(crate) scripted: std::collections::VecDeque<u16>,
    /// Answer the next `n` requests with 429 and this `Retry-After` (seconds).
    pub(crate) rate_limited: u32,
    pub(crate) retry_after_s: u64,
    /// Probability in `[0, 1]` of a random 5xx.
    pub(crate) error_rate: f64,
    /// Delay before every answer.
    pub(crate) latency: Duration,
    /// Apply the next `n` mutating requests, then drop the connection instead of answering.
    pub(crate) drop_responses: u32,
}

/// Faults injected into webhook deliveries.
#[derive(Default)]
pub(crate) struct HookFaults {
    pub(crate) drop_next: u32,
    pub(crate) duplicate_next: u32,
    /// Event types (`X-Gitea-Event-Type`) whose deliveries are all dropped.
    pub(crate) drop_types: Vec<String>,
    /// Branch-name prefixes whose CI's `status` deliveries are all dropped.
    pub(crate) drop_status_branch_prefixes: Vec<String>,
    /// Commits whose `status` deliveries are dropped (filled by the CI from the prefixes).
    pub(crate) drop_status_shas: Vec<String>,
}

/// How the CI behaves.
pub(crate) struct CiConfig {
    pub(crate) enabled: bool,
    pub(crate) delay: Duration,
    /// Outcomes scripted per sha or per branch name; a sha wins over its branch.
    pub(crate) scripted: HashMap<String, CiOutcome>,
    pub(crate) context: String,
}

impl Default for CiConfig {
    fn default() -> CiConfig {
        CiConfig {
            enabled: true,
            delay: Duration::from_millis(20),
            scripted: HashMap::new(),
            context: "ci/build".to_owned(),
        }
    }
}

/// How Gitea's background mergeability checker behaves (`services/pull/check.go`).
pub(crate) struct CheckerConfig {
    /// Off: pull requests keep what it last concluded, so a new conflict is found only while
    /// merging (409).
    pub(crate) enabled: bool,
    /// How long a check takes; zero checks before the push (or the PR creation) answers.
    pub(crate) delay: Duration,
}

impl Default for CheckerConfig {
    fn default() -> CheckerConfig {
        CheckerConfig {
            enabled: true,
            delay: Duration::ZERO,
        }
    }
}

/// One hosted repository.
pub(crate) struct RepoState {
    pub(crate) id: u64,
    pub(crate) owner: String,
    pub(crate) owner_id: u64,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) default_branch: String,
    pub(crate) created_at: String,
    pub(crate) pulls: Vec<Pull>,
    pub(crate) statuses: Vec<StatusRec>,
    pub(crate) reviews: Vec<ReviewRec>,
    pub(crate) comments: Vec<CommentRec>,
}

impl RepoState {
    pub(crate) fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub(crate) fn pull(&self, number: u64) -> Option<&Pull> {
        self.pulls.iter().find(|pull| pull.number == number)
    }

    pub(crate) fn pull_mut(&mut self, number: u64) -> Option<&mut Pull> {
        self.pulls.iter_mut().find(|pull| pull.number == number)
    }
}

/// One pull request.
#[derive(Clone)]
pub(crate) struct Pull {
    pub(crate) id: u64,
    pub(crate) number: u64,
    pub(crate) poster: UserRef,
    pub(crate) title: String,
    pub(crate) body: String,
    pub(crate) head: String,
    pub(crate) head_sha: String,
    pub(crate) base: String,
    pub(crate) base_sha: String,
    pub(crate) merge_base: String,
    pub(crate) open: bool,
    pub(crate) merged: bool,
    pub(crate) merged_at: Option<String>,
    pub(crate) merged_by: Option<UserRef>,
    pub(crate) merge_commit_sha: Option<String>,
    /// Gitea's asynchronous mergeability check is still running: merges answer 405 "try again later".
    pub(crate) checking: bool,
    /// The checker found that the head conflicts with the base: merges answer 405 "try again
    /// later" too, before trying.
    pub(crate) conflicted: bool,
    /// Bumped whenever a check starts; a check whose generation is no longer current is stale
    /// and its result is dropped.
    pub(crate) check_generation: u64,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) closed_at: Option<String>,
}

/// One commit status.
pub(crate) struct StatusRec {
    /// The database id (what the `status` webhook carries as `id`).
    pub(crate) id: u64,
    /// The per-commit index (what the REST API returns as `id`).
    pub(crate) index: u64,
    pub(crate) sha: String,
    pub(crate) state: String,
    pub(crate) context: String,
    pub(crate) description: String,
    pub(crate) target_url: String,
    pub(crate) creator: UserRef,
    pub(crate) created_at: String,
}

/// One review.
pub(crate) struct ReviewRec {
    pub(crate) id: u64,
    pub(crate) number: u64,
    pub(crate) user: UserRef,
    pub(crate) state: String,
    pub(crate) body: String,
    pub(crate) commit_id: String,
    pub(crate) submitted_at: String,
}

/// One issue comment on a pull request.
pub(crate) struct CommentRec {
    pub(crate) id: u64,
    pub(crate) number: u64,
    pub(crate) user: UserRef,
    pub(crate) body: String,
    pub(crate) created_at: String,
}
