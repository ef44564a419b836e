//! The parser of Gitea webhook payloads into core events: pure, total, never panics.

use orch_core::event::{Event, Parsed};
use orch_core::ids::{BranchName, CommitSha, PrNumber, RepoSlug};
use serde::Deserialize;

use crate::forge::ci_state;

/// The `X-Gitea-Event-Type`s the ingress stores for [`parse`]: the three it turns into events.
/// The ingress answers every other type `ignored` without storing it (SPEC §5.3): reviews on
/// the pull request, for one, never decide anything (verdicts come from Plane), so storing them
/// would only spend the disk.
pub const WEBHOOK_EVENTS: &[&str] = &[STATUS, PULL_REQUEST, PUSH];

const STATUS: &str = "status";
const PULL_REQUEST: &str = "pull_request";
const PUSH: &str = "push";

/// Parses one stored delivery. `event_type` is the `X-Gitea-Event-Type` header (Gitea's
/// `X-Gitea-Event` was empty for `status` in 1.23.0–1.23.1, so it is not used); `body` is the
/// raw, already verified body. Anything orch does not act on, or cannot read, is `Ignored`
/// with the reason.
pub fn parse(event_type: &str, body: &[u8]) -> Parsed {
    match event_type.trim() {
        STATUS => parse_status(body),
        PULL_REQUEST => parse_pull_request(body),
        PUSH => parse_push(body),
        "" => ignored("no X-Gitea-Event-Type header"),
        "pull_request_review_approved"
        | "pull_request_review_rejected"
        | "pull_request_review_comment"
        | "pull_request_review_request"
        | "pull_request_comment" => ignored(format!(
            "{event_type}: verdicts come from Plane, not from reviews on the PR"
        )),
        "pull_request_sync" => {
            ignored("pull_request_sync: a pushed head is handled through push and status")
        }
        other => ignored(format!("event type {other:?} is not used")),
    }
}

fn ignored(reason: impl Into<String>) -> Parsed {
    Parsed::Ignored(reason.into())
}

#[derive(Deserialize)]
struct RepoDto {
    full_name: String,
}

#[derive(Deserialize)]
struct StatusPayload {
    sha: String,
    state: String,
    repository: RepoDto,
}

#[derive(Deserialize)]
struct PullPayload {
    action: String,
    number: u64,
    pull_request: PullDto,
    repository: RepoDto,
}

#[derive(Deserialize)]
struct PullDto {
    #[serde(default)]
    merged: bool,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    refname: String,
    after: String,
    repository: RepoDto,
}

fn parse_status(body: &[u8]) -> Parsed {
    let payload: StatusPayload = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(err) => return ignored(format!("malformed status payload: {err}")),
    };
    let Some(state) = ci_state(&payload.state) else {
        return ignored(format!(
            "status state {:?} carries no verdict",
            payload.state
        ));
    };
    let repo = match RepoSlug::new(&payload.repository.full_name) {
        Ok(repo) => repo,
        Err(err) => return ignored(format!("status payload: {err}")),
    };
    match CommitSha::new(payload.sha) {
        Ok(sha) => Parsed::Event(Event::CiStatusReported { repo, sha, state }),
        Err(err) => ignored(format!("status payload: {err}")),
    }
}

fn parse_pull_request(body: &[u8]) -> Parsed {
    let payload: PullPayload = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(err) => return ignored(format!("malformed pull_request payload: {err}")),
    };
    if payload.action != "closed" {
        return ignored(format!(
            "pull_request action {:?} is not used",
            payload.action
        ));
    }
    let repo = match RepoSlug::new(&payload.repository.full_name) {
        Ok(repo) => repo,
        Err(err) => return ignored(format!("pull_request payload: {err}")),
    };
    match PrNumber::new(payload.number) {
        Ok(number) => Parsed::Event(Event::PullRequestClosed {
            repo,
            number,
            merged: payload.pull_request.merged,
        }),
        Err(err) => ignored(format!("pull_request payload: {err}")),
    }
}

fn parse_push(body: &[u8]) -> Parsed {
    let payload: PushPayload = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(err) => return ignored(format!("malformed push payload: {err}")),
    };
    let Some(branch) = payload.refname.strip_prefix("refs/heads/") else {
        return ignored(format!("push of {:?} is not a branch", payload.refname));
    };
    if !payload.after.is_empty() && payload.after.bytes().all(|byte| byte == b'0') {
        return ignored(format!("push deleted branch {branch:?}"));
    }
    let repo = match RepoSlug::new(&payload.repository.full_name) {
        Ok(repo) => repo,
        Err(err) => return ignored(format!("push payload: {err}")),
    };
    let branch = match BranchName::new(branch) {
        Ok(branch) => branch,
        Err(err) => return ignored(format!("push payload: {err}")),
    };
    match CommitSha::new(payload.after) {
        Ok(head_sha) => Parsed::Event(Event::BranchPushed {
            repo,
            branch,
            head_sha,
        }),
        Err(err) => ignored(format!("push payload: {err}")),
    }
}

#[cfg(test)]
mod tests;
