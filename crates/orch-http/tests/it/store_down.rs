//! A store that is down: every route that needs it answers 503, the others keep working.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::domain::{
    ClaimedJob, HistoryEntry, Job, JobResult, JobSpec, NewTask, ProcessRecord, Stage, Task,
};
use orch_core::fakes::FakeClock;
use orch_core::ids::{
    AttemptId, BootId, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, TaskId, WorkItemId,
};
use orch_core::ports::{
    ClaimKinds, ClaimRequest, Created, Delivery, InboxInsert, InboxOutcome, InboxStats,
    NewDelivery, PruneRequest, Pruned, QueueSnapshot, ReconcileRun, ReconcileStats, Store,
    StoreError, Transition,
};
use orch_core::time::Timestamp;
use orch_http::{AdminSocket, AppState, Listeners, WebhookSecrets};
use tokio::net::TcpListener;

use crate::support::{over_socket, plane_headers, webhook_events, HttpClient, PLANE_SECRET};

/// Every call fails with `Unavailable`, as a database that cannot be reached does.
struct DownStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(
        "database is down (test)".to_owned(),
    ))
}

#[async_trait]
impl Store for DownStore {
    async fn create_task(
        &self,
        _: NewTask,
        _: Vec<JobSpec>,
        _: Timestamp,
    ) -> Result<Created, StoreError> {
        down()
    }
    async fn task(&self, _: TaskId) -> Result<Option<Task>, StoreError> {
        down()
    }
    async fn task_by_issue(&self, _: &IssueId) -> Result<Option<Task>, StoreError> {
        down()
    }
    async fn task_by_work_item(&self, _: &WorkItemId) -> Result<Option<Task>, StoreError> {
        down()
    }
    async fn task_by_head_sha(
        &self,
        _: &RepoSlug,
        _: &CommitSha,
    ) -> Result<Option<Task>, StoreError> {
        down()
    }
    async fn task_by_pr(&self, _: &RepoSlug, _: PrNumber) -> Result<Option<Task>, StoreError> {
        down()
    }
    async fn tasks_in_stage(&self, _: &RepoSlug, _: Stage) -> Result<Vec<Task>, StoreError> {
        down()
    }
    async fn list_tasks(&self, _: u32) -> Result<Vec<Task>, StoreError> {
        down()
    }
    async fn gate_candidates(
        &self,
        _: Stage,
        _: Timestamp,
        _: u32,
    ) -> Result<Vec<Task>, StoreError> {
        down()
    }
    async fn transition(&self, _: Transition) -> Result<Task, StoreError> {
        down()
    }
    async fn history(&self, _: TaskId) -> Result<Vec<HistoryEntry>, StoreError> {
        down()
    }
    async fn job(&self, _: JobId) -> Result<Option<Job>, StoreError> {
        down()
    }
    async fn jobs_of_task(&self, _: TaskId) -> Result<Vec<Job>, StoreError> {
        down()
    }
    async fn has_active_job(&self, _: TaskId) -> Result<bool, StoreError> {
        down()
    }
    async fn claim_next(&self, _: &ClaimRequest) -> Result<Option<ClaimedJob>, StoreError> {
        down()
    }
    async fn next_due(&self, _: ClaimKinds) -> Result<Option<Timestamp>, StoreError> {
        down()
    }
    async fn heartbeat(
        &self,
        _: JobId,
        _: &AttemptId,
        _: Timestamp,
        _: Duration,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn record_process(
        &self,
        _: JobId,
        _: &AttemptId,
        _: ProcessRecord,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn finish_job(
        &self,
        _: JobId,
        _: &AttemptId,
        _: JobResult,
        _: Timestamp,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn reclaim_leases(&self, _: &BootId, _: Timestamp) -> Result<Vec<Job>, StoreError> {
        down()
    }
    async fn unhandled_finished_jobs(&self, _: u32) -> Result<Vec<Job>, StoreError> {
        down()
    }
    async fn mark_job_handled(&self, _: JobId) -> Result<(), StoreError> {
        down()
    }
    async fn inbox_insert(&self, _: NewDelivery) -> Result<InboxInsert, StoreError> {
        down()
    }
    async fn inbox_pending(&self, _: u32) -> Result<Vec<Delivery>, StoreError> {
        down()
    }
    async fn inbox_mark_processed(
        &self,
        _: i64,
        _: &InboxOutcome,
        _: Timestamp,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn inbox_mark_processed_all(
        &self,
        _: &[(i64, InboxOutcome)],
        _: Timestamp,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn inbox_stats(&self, _: Timestamp) -> Result<InboxStats, StoreError> {
        down()
    }
    async fn tracker_watermark(&self, _: &ProjectId) -> Result<Option<Timestamp>, StoreError> {
        down()
    }
    async fn set_tracker_watermark(&self, _: &ProjectId, _: Timestamp) -> Result<(), StoreError> {
        down()
    }
    async fn record_reconcile_run(&self, _: ReconcileRun) -> Result<(), StoreError> {
        down()
    }
    async fn reconcile_stats(&self) -> Result<ReconcileStats, StoreError> {
        down()
    }
    async fn queue_snapshot(&self) -> Result<QueueSnapshot, StoreError> {
        down()
    }
    async fn last_clean_shutdown(&self) -> Result<Option<Timestamp>, StoreError> {
        down()
    }
    async fn set_last_clean_shutdown(&self, _: Timestamp) -> Result<(), StoreError> {
        down()
    }
    async fn prune(&self, _: PruneRequest) -> Result<Pruned, StoreError> {
        down()
    }
}

#[tokio::test]
async fn with_the_store_down_store_routes_answer_503_and_health_still_answers() {
    let mut state = AppState::new(
        Arc::new(DownStore),
        Arc::new(FakeClock::new()),
        webhook_events(),
    );
    state.plane_secrets = WebhookSecrets::from_strings(&[PLANE_SECRET]);
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("bound address"));
    let socket_dir = tempfile::tempdir().expect("temp dir");
    let socket_path = socket_dir.path().join("orch.db.sock");
    let listeners = Listeners {
        tcp: listener,
        admin_socket: Some(AdminSocket::bind(&socket_path).expect("admin socket")),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(orch_http::serve(listeners, state, async move {
        let _ = stopped.await;
    }));
    let client = HttpClient::new();

    for path in [
        "/queue",
        "/metrics",
        "/api/tasks",
        "/api/tasks/1",
        "/api/tasks/ET-001",
    ] {
        let reply = over_socket(&socket_path, "GET", path, &[]).await;
        assert_eq!(
            (reply.status, reply.json()),
            (503, serde_json::json!({"error": "store unavailable"})),
            "{path}"
        );
    }
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "down-1", &body);
    let reply = client
        .post(&format!("{base}/webhooks/plane"), &headers, body)
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (503, serde_json::json!({"error": "inbox unavailable"}))
    );
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("10"),
        "a delivery that was not stored asks its sender to come back"
    );
    assert_eq!(
        client.get(&format!("{base}/healthz"), &[]).await.status,
        200
    );

    let _ = stop.send(());
    server
        .await
        .expect("serve task")
        .expect("serve ends cleanly");
}
