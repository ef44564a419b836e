//! Webhook deliveries of `GiteaSim` (one ordered worker, faults, signatures), what a push
//! causes (`push`, `pull_request` synchronized, the CI), and the CI itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::gitea::git::{self, ZERO_SHA};
use crate::gitea::json;
use crate::gitea::state::UserRef;
use crate::gitea::{
    now, CiOutcome, DeliveryOutcome, DeliveryRecord, Inner, API_USER, API_USER_ID, CI_USER,
    CI_USER_ID,
};
use crate::webhook::{hmac_sha1_hex, hmac_sha256_hex, post};

/// One delivery waiting for the worker.
pub(crate) struct Outgoing {
    delivery_id: String,
    event: String,
    event_type: String,
    body: Bytes,
}

/// One ref that a push changed; a missing side is `ZERO_SHA`.
pub(crate) struct RefChange {
    refname: String,
    old: String,
    new: String,
}

impl RefChange {
    pub(crate) fn new(refname: String, old: String, new: String) -> RefChange {
        RefChange { refname, old, new }
    }
}

/// The refs that differ between two snapshots.
pub(crate) fn ref_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<RefChange> {
    let mut changes = Vec::new();
    for (refname, new) in after {
        match before.get(refname) {
            Some(old) if old == new => {}
            old => changes.push(RefChange {
                refname: refname.clone(),
                old: old.cloned().unwrap_or_else(|| ZERO_SHA.to_owned()),
                new: new.clone(),
            }),
        }
    }
    for (refname, old) in before {
        if !after.contains_key(refname) {
            changes.push(RefChange {
                refname: refname.clone(),
                old: old.clone(),
                new: ZERO_SHA.to_owned(),
            });
        }
    }
    changes
}

/// Sends queued deliveries one at a time, in order, until the simulator is gone.
pub(crate) async fn delivery_worker(
    inner: Weak<Inner>,
    mut receiver: mpsc::UnboundedReceiver<Outgoing>,
) {
    while let Some(outgoing) = receiver.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        inner.deliver(outgoing).await;
    }
}

/// The headers Gitea 1.26 sends with a delivery (`services/webhook/deliver.go`).
fn headers(outgoing: &Outgoing, secret: &str) -> Vec<(String, String)> {
    let sha256 = hmac_sha256_hex(secret.as_bytes(), &outgoing.body);
    let sha1 = hmac_sha1_hex(secret.as_bytes(), &outgoing.body);
    let id = outgoing.delivery_id.as_str();
    let event = outgoing.event.as_str();
    let event_type = outgoing.event_type.as_str();
    [
        ("Content-Type", "application/json"),
        ("User-Agent", "Go-http-client/1.1"),
        ("X-Gitea-Delivery", id),
        ("X-Gitea-Event", event),
        ("X-Gitea-Event-Type", event_type),
        ("X-Gitea-Signature", sha256.as_str()),
        ("X-Gitea-Hook-Installation-Target-Type", "repository"),
        ("X-Gogs-Delivery", id),
        ("X-Gogs-Event", event),
        ("X-Gogs-Event-Type", event_type),
        ("X-Gogs-Signature", sha256.as_str()),
        ("X-Hub-Signature", &format!("sha1={sha1}")),
        ("X-Hub-Signature-256", &format!("sha256={sha256}")),
        ("X-GitHub-Delivery", id),
        ("X-GitHub-Event", event),
        ("X-GitHub-Event-Type", event_type),
        ("X-GitHub-Hook-Installation-Target-Type", "repository"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

impl Inner {
    /// Queues a delivery of `payload`, laid out like Go's `json.MarshalIndent(p, "", "  ")`
    /// (no trailing newline), and returns its delivery id.
    pub(crate) fn enqueue(&self, event: &str, event_type: &str, payload: &Value) -> String {
        let body =
            serde_json::to_vec_pretty(payload).expect("a serde_json::Value always serialises");
        self.enqueue_raw(event.to_owned(), event_type.to_owned(), Bytes::from(body))
    }

    /// Queues `body` under a new delivery id.
    pub(crate) fn enqueue_raw(&self, event: String, event_type: String, body: Bytes) -> String {
        let delivery_id = uuid::Uuid::new_v4().to_string();
        let outgoing = Outgoing {
            delivery_id: delivery_id.clone(),
            event,
            event_type,
            body,
        };
        // The worker lives as long as the simulator; a send can fail only while it shuts down.
        let _ = self.hooks.send(outgoing);
        delivery_id
    }

    async fn deliver(&self, outgoing: Outgoing) {
        let (target, dropped, copies) = {
            let mut state = self.lock();
            let faults = &mut state.hook_faults;
            let dropped = if faults.drop_types.contains(&outgoing.event_type) {
                true
            } else if outgoing.event_type == "status" && !faults.drop_status_shas.is_empty() {
                let sha = serde_json::from_slice::<Value>(&outgoing.body)
                    .ok()
                    .and_then(|body| body.get("sha").and_then(Value::as_str).map(str::to_owned));
                sha.is_some_and(|sha| faults.drop_status_shas.contains(&sha))
            } else if faults.drop_next > 0 {
                faults.drop_next -= 1;
                true
            } else {
                false
            };
            let copies = if !dropped && faults.duplicate_next > 0 {
                faults.duplicate_next -= 1;
                2
            } else {
                1
            };
            (state.webhook.clone(), dropped, copies)
        };
        let secret = target
            .as_ref()
            .map(|target| target.secret.as_str())
            .unwrap_or_default();
        let headers = headers(&outgoing, secret);
        let record = |outcome| DeliveryRecord {
            delivery_id: outgoing.delivery_id.clone(),
            event: outgoing.event.clone(),
            event_type: outgoing.event_type.clone(),
            headers: headers.clone(),
            body: outgoing.body.clone(),
            outcome,
        };
        let Some(target) = target.filter(|_| !dropped) else {
            let outcome = if dropped {
                DeliveryOutcome::Dropped
            } else {
                DeliveryOutcome::NoTarget
            };
            self.lock().deliveries.push(record(outcome));
            return;
        };
        for _ in 0..copies {
            let outcome = match post(&target.url, &headers, outgoing.body.clone()).await {
                Ok(status) => DeliveryOutcome::Answered(status),
                Err(err) => DeliveryOutcome::Failed(err.to_string()),
            };
            self.lock().deliveries.push(record(outcome));
        }
    }

    /// Sends a `pull_request` delivery.
    pub(crate) fn send_pull_event(
        &self,
        full: &str,
        number: u64,
        action: &str,
        event_type: &str,
        sender: &UserRef,
    ) {
        let payload = {
            let state = self.lock();
            let Some(repo) = state.repos.get(full) else {
                return;
            };
            let Some(pull) = repo.pull(number) else {
                return;
            };
            let mut pull_json = json::pull(self.base(), repo, pull);
            if action == "opened" {
                // Gitea checks mergeability asynchronously: it is still "checking" when this is sent.
                pull_json["mergeable"] = Value::Bool(false);
            }
            json!({
                "action": action,
                "number": number,
                "pull_request": pull_json,
                "requested_reviewer": null,
                "repository": json::repo(self.base(), repo),
                "sender": json::user(self.base(), sender.0, &sender.1),
                "commit_id": "",
                "review": null,
            })
        };
        self.enqueue("pull_request", event_type, &payload);
    }

    /// Handles the ref changes of one receive-pack (or a merge): `push`/`delete` deliveries,
    /// PR heads and `synchronized` deliveries, and the CI for non-base branches.
    pub(crate) async fn after_push(self: &Arc<Self>, full: &str, changes: &[RefChange]) {
        let Some((repo_dir, default_branch)) = ({
            let state = self.lock();
            state
                .repos
                .get(full)
                .map(|repo| (repo.path.clone(), repo.default_branch.clone()))
        }) else {
            return;
        };
        let pusher = (API_USER_ID, API_USER.to_owned());
        for change in changes {
            let (is_branch, short) =
                if let Some(branch) = change.refname.strip_prefix("refs/heads/") {
                    (true, branch)
                } else if let Some(tag) = change.refname.strip_prefix("refs/tags/") {
                    (false, tag)
                } else {
                    continue;
                };
            if change.new == ZERO_SHA {
                self.send_delete_event(full, short, is_branch, &pusher);
                continue;
            }
            self.send_push_event(full, &repo_dir, &default_branch, change, &pusher)
                .await;
            if !is_branch {
                continue;
            }
            let (synchronized, to_check) = {
                let mut state = self.lock();
                let Some(repo) = state.repos.get_mut(full) else {
                    return;
                };
                let stamp = now();
                let mut moved = Vec::new();
                let mut touched = Vec::new();
                for pull in repo.pulls.iter_mut().filter(|pull| pull.open) {
                    if pull.head == short && pull.head_sha != change.new {
                        pull.head_sha = change.new.clone();
                        pull.updated_at = stamp.clone();
                        moved.push(pull.number);
                    }
                    if pull.base == short {
                        pull.base_sha = change.new.clone();
                    }
                    if pull.head == short || pull.base == short {
                        touched.push(pull.number);
                    }
                }
                (moved, touched)
            };
            for number in synchronized {
                self.send_pull_event(full, number, "synchronized", "pull_request_sync", &pusher);
            }
            // Gitea re-checks the mergeability of every open PR whose head or base moved.
            self.check_pulls(full, to_check).await;
            if short != default_branch {
                self.start_ci(full, short, &change.new);
            }
        }
    }

    async fn send_push_event(
        &self,
        full: &str,
        repo_dir: &std::path::Path,
        default_branch: &str,
        change: &RefChange,
        pusher: &UserRef,
    ) {
        let default_ref = format!("refs/heads/{default_branch}");
        let range = format!("{}..{}", change.old, change.new);
        let not_default = format!("^{default_ref}");
        let args: Vec<&str> = if change.old != ZERO_SHA {
            vec![range.as_str()]
        } else if change.refname != default_ref {
            vec![change.new.as_str(), not_default.as_str()]
        } else {
            vec![change.new.as_str()]
        };
        let shas = git::rev_list(repo_dir, &args).await.unwrap_or_default();
        let mut commits = Vec::new();
        for sha in shas.iter().take(5) {
            if let Ok(info) = git::commit_info(repo_dir, sha).await {
                commits.push(json::payload_commit(self.base(), full, &info));
            }
        }
        let head_commit = match git::commit_info(repo_dir, &change.new).await {
            Ok(info) => json::payload_commit(self.base(), full, &info),
            Err(_) => Value::Null,
        };
        let payload = {
            let state = self.lock();
            let Some(repo) = state.repos.get(full) else {
                return;
            };
            json!({
                "ref": change.refname,
                "before": change.old,
                "after": change.new,
                "compare_url": format!("{}/{full}/compare/{}...{}", self.base(), change.old, change.new),
                "commits": commits,
                "total_commits": shas.len(),
                "head_commit": head_commit,
                "repository": json::repo(self.base(), repo),
                "pusher": json::user(self.base(), pusher.0, &pusher.1),
                "sender": json::user(self.base(), pusher.0, &pusher.1),
            })
        };
        self.enqueue("push", "push", &payload);
    }

    fn send_delete_event(&self, full: &str, short: &str, is_branch: bool, pusher: &UserRef) {
        let payload = {
            let state = self.lock();
            let Some(repo) = state.repos.get(full) else {
                return;
            };
            json!({
                "ref": short,
                "ref_type": if is_branch { "branch" } else { "tag" },
                "pusher_type": "user",
                "repository": json::repo(self.base(), repo),
                "sender": json::user(self.base(), pusher.0, &pusher.1),
            })
        };
        self.enqueue("delete", "delete", &payload);
    }

    /// Runs the CI for `sha` of `branch` in the background: after the delay `pending`, after
    /// it again the result, each as a commit status with its `status` delivery.
    pub(crate) fn start_ci(self: &Arc<Self>, full: &str, branch: &str, sha: &str) {
        let (enabled, delay, context) = {
            let state = self.lock();
            (state.ci.enabled, state.ci.delay, state.ci.context.clone())
        };
        if !enabled {
            return;
        }
        let inner = self.clone();
        let (full, branch, sha) = (full.to_owned(), branch.to_owned(), sha.to_owned());
        tokio::spawn(async move {
            let ci_user = (CI_USER_ID, CI_USER.to_owned());
            let target_url = format!(
                "{}/{full}/actions/runs/{}",
                inner.base(),
                &sha[..sha.len().min(12)]
            );
            {
                let mut state = inner.lock();
                let faults = &mut state.hook_faults;
                if faults
                    .drop_status_branch_prefixes
                    .iter()
                    .any(|prefix| branch.starts_with(prefix.as_str()))
                {
                    faults.drop_status_shas.push(sha.clone());
                }
            }
            tokio::time::sleep(delay).await;
            let _ = inner
                .create_status(
                    &full,
                    &sha,
                    "pending",
                    &context,
                    "CI is running",
                    &target_url,
                    ci_user.clone(),
                )
                .await;
            tokio::time::sleep(delay).await;
            let scripted = {
                let state = inner.lock();
                state
                    .ci
                    .scripted
                    .get(&sha)
                    .or_else(|| state.ci.scripted.get(&branch))
                    .copied()
            };
            let outcome = match scripted {
                Some(outcome) => outcome,
                None => {
                    let repo_dir = inner.repo_dir(&full);
                    match git::has_file(&repo_dir, &sha, "CI_FAIL").await {
                        Ok(true) => CiOutcome::Failure,
                        _ => CiOutcome::Success,
                    }
                }
            };
            let (state_word, description) = match outcome {
                CiOutcome::Success => ("success", "CI passed"),
                CiOutcome::Failure => ("failure", "CI failed"),
            };
            let _ = inner
                .create_status(
                    &full,
                    &sha,
                    state_word,
                    &context,
                    description,
                    &target_url,
                    ci_user,
                )
                .await;
        });
    }

    /// Sends the `status` delivery for a status just created: no `branches` field, exactly
    /// like Gitea's `CommitStatusPayload`.
    pub(crate) fn send_status_event(
        &self,
        full: &str,
        status_id: u64,
        commit: &Value,
        creator: &UserRef,
    ) {
        let payload = {
            let state = self.lock();
            let Some(repo) = state.repos.get(full) else {
                return;
            };
            let Some(status) = repo.statuses.iter().find(|status| status.id == status_id) else {
                return;
            };
            json!({
                "commit": commit,
                "context": status.context,
                "created_at": status.created_at,
                "description": status.description,
                "id": status.id,
                "repository": json::repo(self.base(), repo),
                "sender": json::user(self.base(), creator.0, &creator.1),
                "sha": status.sha,
                "state": status.state,
                "target_url": status.target_url,
                "updated_at": status.created_at,
            })
        };
        self.enqueue("status", "status", &payload);
    }
}
