//! Outside calls are a cost: CI statuses for commits that are no task's cost no Gitea call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use orch_core::domain::{Stage, TaskStatus};
use orch_core::ports::Store;
use orch_core::time::Timestamp;
use orch_daemon::sandbox::{self, Approver, GITEA_SECRET, REPO};
use orch_sim::webhook::{hmac_sha256_hex, post};
use tokio::sync::Semaphore;

use crate::harness::{sandbox, wait_for, CONVERGE, POLL};

/// Statuses in the flood: half for the configured repository, half for one orch does not serve.
const FLOOD: usize = 10_000;
/// Deliveries in flight at once, like a busy Gitea's webhook workers.
const SENDERS: usize = 16;
/// How long the daemon may take to process the whole flood (a debug build, 2 shared cores).
const FLOOD_PROCESSED: Duration = Duration::from_secs(300);

/// A `status` body shaped like Gitea's `CommitStatusPayload` (contracts/gitea/status.success.json).
fn status_body(index: usize, repo: &str) -> Vec<u8> {
    let sha = format!("{:040x}", 0x000f_100d_0000_0000_u64 + index as u64);
    serde_json::to_vec(&serde_json::json!({
        "commit": {"id": sha, "message": "unrelated work\n", "url": ""},
        "context": "ci/build",
        "created_at": "2026-12-03T08:00:00Z",
        "description": "Build passed",
        "id": index,
        "repository": {"id": 42, "full_name": repo, "name": repo.split('/').nth(1)},
        "sender": {"id": 9, "login": "ci-bot"},
        "sha": sha,
        "state": if index.is_multiple_of(2) { "success" } else { "failure" },
        "target_url": "",
        "updated_at": "2026-12-03T08:00:00Z",
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_statuses_for_no_task_costs_no_gitea_call_and_the_real_head_still_advances() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let (sandbox, _dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let daemon = sandbox.start_daemon(None).await.expect("daemon starts");
    let store = daemon.store();
    let (item, _) = sandbox
        .create_item("Work while the organisation builds")
        .await
        .expect("item created");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    wait_for("the analysis to wait for a verdict", || {
        let (sandbox, store) = (&sandbox, store.clone());
        let item = item.clone();
        async move {
            let task = sandbox.task(store.as_ref(), &item).await.ok()??;
            (task.status == TaskStatus::AwaitingVerdict).then_some(())
        }
    })
    .await;

    let calls_before = sandbox.gitea.api_requests().len();
    let url = format!("http://{}/webhooks/gitea", daemon.addr());
    let senders = Arc::new(Semaphore::new(SENDERS));
    let mut sent = tokio::task::JoinSet::new();
    for index in 0..FLOOD {
        let repo = if index.is_multiple_of(2) {
            REPO
        } else {
            "acme/not-served-by-orch"
        };
        let body = status_body(index, repo);
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Gitea-Delivery".to_owned(), format!("flood-{index}")),
            ("X-Gitea-Event".to_owned(), "status".to_owned()),
            ("X-Gitea-Event-Type".to_owned(), "status".to_owned()),
            (
                "X-Gitea-Signature".to_owned(),
                hmac_sha256_hex(GITEA_SECRET.as_bytes(), &body),
            ),
        ];
        let permit = senders.clone().acquire_owned().await.expect("semaphore");
        let url = url.clone();
        sent.spawn(async move {
            let status = post(&url, &headers, Bytes::from(body)).await;
            drop(permit);
            status
        });
    }
    while let Some(status) = sent.join_next().await {
        assert_eq!(status.expect("sender").expect("answered"), 202);
    }
    let deadline = Instant::now() + FLOOD_PROCESSED;
    loop {
        let stats = store
            .inbox_stats(Timestamp::from_millis(0))
            .await
            .expect("stats");
        if stats.pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {FLOOD} deliveries still pending after {FLOOD_PROCESSED:?}; {} Gitea calls so far",
            stats.pending,
            sandbox.gitea.api_requests().len() - calls_before
        );
        tokio::time::sleep(POLL).await;
    }
    let calls = sandbox.gitea.api_requests().len() - calls_before;
    assert_eq!(
        calls, 0,
        "{FLOOD} statuses for commits of no task cost {calls} Gitea API calls"
    );

    // The task's own head is still resolved: the CI of its pull request moves it to review.
    let ended = sandbox::play_person(
        &sandbox,
        store.as_ref(),
        std::slice::from_ref(&item),
        &mut Approver,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    let task = ended[0].task.clone().expect("task");
    assert_eq!(task.stage, Stage::Done, "{task:?}");
    assert!(sandbox::merged(&sandbox, Some(&task)));
    daemon.shutdown().await;
}
