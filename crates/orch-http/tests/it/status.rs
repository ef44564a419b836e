//! The status API: health, readiness, `/queue`, `/metrics`, `/api/tasks`, the admin token.

use std::time::Duration;

use orch_core::domain::{Agent, JobSpec, NewTask, Stage};
use orch_core::fakes::FakeClock;
use orch_core::ids::{BranchName, IssueId, ProjectId, RepoSlug, WorkItemId};
use orch_core::ports::{ReconcileRun, Store};
use orch_core::secret::Secret;
use orch_http::{LoopState, ReconcileSettings, ReconcileSwitches};

use crate::support::{bearer, plane_headers, HttpClient, TestServer, PLANE_SECRET};

const ADMIN_TOKEN: &str = "admin-token-for-tests";

async fn add_task(store: &dyn Store, sequence: u32) {
    let work_item = WorkItemId::new("ET", sequence).expect("work item id");
    let new = NewTask {
        issue: IssueId::new(format!("issue-{sequence}")).expect("issue id"),
        project: ProjectId::new("project-1").expect("project id"),
        work_item: work_item.clone(),
        title: format!("Task {sequence}"),
        description: "Make it work".to_owned(),
        repo: RepoSlug::new("acme/widgets").expect("repo"),
        base_branch: BranchName::new("main").expect("branch"),
        branch: BranchName::for_work_item(&work_item, "Task"),
        stage: Stage::Analysis,
        tracker_state: None,
        tracker_seen_at: None,
    };
    let created = store
        .create_task(
            new,
            vec![JobSpec::agent(Agent::Analyst, None)],
            FakeClock::START,
        )
        .await
        .expect("task");
    assert!(created.created);
}

#[tokio::test]
async fn healthz_is_always_200_and_readyz_waits_for_every_loop() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    assert_eq!(client.get(&server.url("/healthz"), &[]).await.status, 200);

    let readiness = server.state.readiness.clone();
    let reply = client.get(&server.url("/readyz"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json(),
        serde_json::json!({"ready": false, "migrations_applied": false, "loops": {}, "storage": "ok"})
    );
    readiness.set_migrations_applied(true);
    assert_eq!(
        client.get(&server.url("/readyz"), &[]).await.status,
        503,
        "no loop has started yet"
    );
    readiness.set_loop("event_loop", LoopState::Running);
    readiness.set_loop("reconciler", LoopState::Stopped);
    assert_eq!(client.get(&server.url("/readyz"), &[]).await.status, 503);
    readiness.set_loop("reconciler", LoopState::Running);
    let reply = client.get(&server.url("/readyz"), &[]).await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            serde_json::json!({"ready": true, "migrations_applied": true, "loops": {"event_loop": "running", "reconciler": "running"}, "storage": "ok"})
        )
    );
    readiness.set_loop("event_loop", LoopState::Stopped);
    assert_eq!(client.get(&server.url("/readyz"), &[]).await.status, 503);
    readiness.set_loop("event_loop", LoopState::Running);
    readiness.set_stopping();
    assert_eq!(client.get(&server.url("/readyz"), &[]).await.status, 503);
}

#[tokio::test]
async fn a_storage_fault_makes_readyz_503_and_its_end_makes_it_200_again() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    let readiness = server.state.readiness.clone();
    readiness.set_migrations_applied(true);
    readiness.set_loop("event_loop", LoopState::Running);
    let fault: std::sync::Arc<std::sync::Mutex<Option<String>>> = std::sync::Arc::default();
    let seen = fault.clone();
    readiness.set_storage_check(move || seen.lock().expect("lock").clone());
    assert_eq!(client.get(&server.url("/readyz"), &[]).await.status, 200);

    *fault.lock().expect("lock") = Some("disk full: database or disk is full".to_owned());
    let reply = client.get(&server.url("/readyz"), &[]).await;
    assert_eq!(
        (reply.status, reply.json()["storage"].clone()),
        (
            503,
            serde_json::json!("fault: disk full: database or disk is full")
        )
    );
    *fault.lock().expect("lock") = None;
    let reply = client.get(&server.url("/readyz"), &[]).await;
    assert_eq!(
        (reply.status, reply.json()["storage"].clone()),
        (200, serde_json::json!("ok"))
    );
}

#[tokio::test]
async fn a_disabled_loop_never_makes_readyz_unready() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    let readiness = server.state.readiness.clone();
    readiness.set_migrations_applied(true);
    readiness.set_loop("event_loop", LoopState::Running);
    readiness.set_loop("reconciler", LoopState::Disabled);
    let reply = client.get(&server.url("/readyz"), &[]).await;
    assert_eq!(
        (reply.status, reply.json()["loops"]["reconciler"].clone()),
        (200, serde_json::json!("disabled"))
    );
}

#[tokio::test]
async fn queue_has_the_documented_shape_built_from_the_store() {
    let server = TestServer::start(|state| {
        state.reconcile = ReconcileSwitches::new(ReconcileSettings {
            enabled: true,
            plane_enabled: false,
            interval: Duration::from_secs(90),
        });
    })
    .await;
    add_task(server.store.as_ref(), 1).await;
    add_task(server.store.as_ref(), 2).await;
    server
        .store
        .record_reconcile_run(ReconcileRun {
            started_at: FakeClock::START,
            duration: Duration::from_millis(12),
            unblocked: Vec::new(),
            errors: vec!["plane: unavailable: 502".to_owned()],
        })
        .await
        .expect("record run");
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "q-1", &body);
    let client = HttpClient::new();
    assert_eq!(
        client
            .post(&server.url("/webhooks/plane"), &headers, body)
            .await
            .status,
        202
    );

    let reply = server.local_get("/queue").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .map(|value| value.as_bytes()),
        Some(&b"application/json"[..])
    );
    let idle = serde_json::json!({ "degraded": false, "waiting_jobs": 0, "waiting_since": null, "last_error": null });
    let expected = serde_json::json!({
        "jobs": { "queued": 2, "running": [] },
        "services": { "plane": idle, "gitea": idle, "telegram": idle, "git": idle },
        "tasks": {
            "by_stage": { "analysis": 2, "development": 0, "review": 0, "done": 0, "cancelled": 0 },
            "awaiting_verdict": [],
            "blocked": [],
        },
        "inbox": { "pending": 1, "oldest_pending_age_s": 0 },
        "reconcile": {
            "enabled": true,
            "plane_enabled": false,
            "interval_s": 90,
            "last_run_at": "2026-01-01T00:00:00.000Z",
            "last_duration_ms": 12,
            "runs_total": 1,
            "unblocked_total": 0,
            "recent_unblocked": [],
            "errors_total": 1,
            "last_error": "plane: unavailable: 502",
        },
    });
    assert_eq!(reply.json(), expected);
}

#[tokio::test]
async fn tasks_are_listed_and_shown_by_number_or_work_item_with_history_and_jobs() {
    let server = TestServer::start(|_| {}).await;
    add_task(server.store.as_ref(), 1).await;
    add_task(server.store.as_ref(), 7).await;

    let list = server.local_get("/api/tasks").await;
    assert_eq!(list.status, 200);
    let work_items: Vec<String> = list.json()["tasks"]
        .as_array()
        .expect("a task array")
        .iter()
        .map(|task| task["work_item"].as_str().expect("work item").to_owned())
        .collect();
    let mut sorted = work_items.clone();
    sorted.sort();
    assert_eq!(sorted, ["ET-001", "ET-007"]);
    let limited = server.local_get("/api/tasks?limit=1").await;
    assert_eq!(limited.json()["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(server.local_get("/api/tasks?limit=0").await.status, 400);

    let by_work_item = server.local_get("/api/tasks/ET-007").await;
    assert_eq!(by_work_item.status, 200);
    let document = by_work_item.json();
    assert_eq!(document["task"]["work_item"], "ET-007");
    assert_eq!(document["task"]["stage"], "analysis");
    assert_eq!(document["task"]["description"], "Make it work");
    assert_eq!(document["jobs"][0]["kind"], "agent");
    assert_eq!(document["jobs"][0]["agent"], "analyst");
    assert_eq!(document["jobs"][0]["status"], "queued");
    assert!(document["history"].is_array());

    let id = document["task"]["id"].as_i64().expect("numeric id");
    let by_number = server.local_get(&format!("/api/tasks/{id}")).await;
    assert_eq!((by_number.status, by_number.json()), (200, document));

    assert_eq!(server.local_get("/api/tasks/ET-404").await.status, 404);
    assert_eq!(server.local_get("/api/tasks/999999").await.status, 404);
    assert_eq!(
        server.local_get("/api/tasks/not%20an%20id").await.status,
        400
    );
}

#[tokio::test]
async fn the_admin_token_guards_queue_metrics_and_api_but_not_health_or_webhooks() {
    let server =
        TestServer::start(|state| state.admin_token = Some(Secret::new(ADMIN_TOKEN))).await;
    add_task(server.store.as_ref(), 1).await;
    let client = HttpClient::new();
    for path in ["/queue", "/metrics", "/api/tasks", "/api/tasks/ET-001"] {
        let missing = client.get(&server.url(path), &[]).await;
        assert_eq!(missing.status, 401, "{path} without a token");
        assert_eq!(
            missing
                .headers
                .get("www-authenticate")
                .map(|value| value.as_bytes()),
            Some(&b"Bearer"[..])
        );
        assert_eq!(
            client
                .get(&server.url(path), &bearer("wrong-token"))
                .await
                .status,
            401,
            "{path} wrong token"
        );
        let basic = vec![("Authorization".to_owned(), format!("Basic {ADMIN_TOKEN}"))];
        assert_eq!(
            client.get(&server.url(path), &basic).await.status,
            401,
            "{path} other scheme"
        );
        assert_eq!(
            client
                .get(&server.url(path), &bearer(ADMIN_TOKEN))
                .await
                .status,
            200,
            "{path} right token"
        );
    }
    assert_eq!(client.get(&server.url("/healthz"), &[]).await.status, 200);
    assert_eq!(client.get(&server.url("/readyz"), &[]).await.status, 503);
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "admin-1", &body);
    assert_eq!(
        client
            .post(&server.url("/webhooks/plane"), &headers, body)
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn without_an_admin_token_work_items_are_refused_over_tcp_and_shown_over_the_socket() {
    let server = TestServer::start(|_| {}).await;
    add_task(server.store.as_ref(), 1).await;
    let client = HttpClient::new();
    let forwarded = [
        vec![],
        vec![("X-Forwarded-For".to_owned(), "127.0.0.1".to_owned())],
        vec![("Forwarded".to_owned(), "for=127.0.0.1".to_owned())],
        vec![("X-Real-IP".to_owned(), "127.0.0.1".to_owned())],
        bearer("a-token-nobody-configured"),
    ];
    for path in ["/queue", "/api/tasks", "/api/tasks/ET-001", "/api/tasks/1"] {
        for headers in &forwarded {
            let reply = client.get(&server.url(path), headers).await;
            assert_eq!(reply.status, 403, "{path} {headers:?}");
            assert!(
                !reply.text().contains("Task 1") && !reply.text().contains("ET-001"),
                "{path}: a refusal shows no work item: {}",
                reply.text()
            );
        }
        assert_eq!(
            server.local_get(path).await.status,
            200,
            "{path} over the socket"
        );
    }
    // Counts only: open over TCP while no token is set.
    assert_eq!(client.get(&server.url("/metrics"), &[]).await.status, 200);
    assert_eq!(server.local_get("/metrics").await.status, 200);
}

#[tokio::test]
async fn the_admin_socket_needs_no_token_when_one_is_set() {
    let server =
        TestServer::start(|state| state.admin_token = Some(Secret::new(ADMIN_TOKEN))).await;
    add_task(server.store.as_ref(), 1).await;
    for path in ["/queue", "/metrics", "/api/tasks", "/api/tasks/ET-001"] {
        assert_eq!(server.local_get(path).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn the_admin_socket_is_owner_only_and_removed_on_shutdown() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let server = TestServer::start(|_| {}).await;
    let path = server.socket_path.clone();
    let metadata = std::fs::symlink_metadata(&path).expect("the socket exists");
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    server.stop().await.expect("serve ends cleanly");
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_anything_else_in_the_way_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orch.db.sock");
    // A socket whose process is gone: bound, then its listener dropped without removal.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let socket = orch_http::AdminSocket::bind(&path).expect("a stale socket is replaced");
    assert!(matches!(
        orch_http::AdminSocket::bind(&path),
        Err(orch_http::AdminSocketError::InUse { .. })
    ));
    drop(socket);
    assert!(!path.exists());

    std::fs::write(&path, "not a socket").expect("write");
    assert!(matches!(
        orch_http::AdminSocket::bind(&path),
        Err(orch_http::AdminSocketError::NotASocket { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "not a socket",
        "a file that is not a socket is left alone"
    );
}

#[tokio::test]
async fn metrics_expose_deliveries_store_gauges_and_daemon_counters() {
    let server = TestServer::start(|_| {}).await;
    add_task(server.store.as_ref(), 1).await;
    let client = HttpClient::new();
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "m-1", &body);
    assert_eq!(
        client
            .post(&server.url("/webhooks/plane"), &headers, body.clone())
            .await
            .status,
        202
    );
    assert_eq!(
        client
            .post(&server.url("/webhooks/plane"), &headers, body)
            .await
            .status,
        202
    );

    let metrics = &server.state.metrics;
    metrics.count_job(
        orch_core::domain::JobKind::Merge,
        orch_http::JobOutcome::Succeeded,
    );
    metrics.count_reconcile_run(2, 1);
    metrics.count_api_call("plane.example.com");
    metrics.count_api_rate_limited("plane.example.com");

    let reply = client.get(&server.url("/metrics"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some(orch_http::METRICS_CONTENT_TYPE)
    );
    let text = reply.text();
    for line in [
        r#"orch_webhook_deliveries_total{source="plane",outcome="queued"} 1"#,
        r#"orch_webhook_deliveries_total{source="plane",outcome="duplicate"} 1"#,
        r#"orch_jobs_finished_total{kind="merge",outcome="succeeded"} 1"#,
        "orch_reconcile_runs_total 1",
        "orch_reconcile_unblocked_total 2",
        "orch_reconcile_errors_total 1",
        r#"orch_api_calls_total{host="plane.example.com"} 1"#,
        r#"orch_api_rate_limited_total{host="plane.example.com"} 1"#,
        "orch_jobs_queued 1",
        "orch_jobs_running 0",
        r#"orch_tasks{stage="analysis"} 1"#,
        "orch_inbox_pending 1",
        "orch_inbox_lag_seconds 0.0",
        r#"orch_webhook_ingest_seconds_count{source="plane"} 2"#,
        "# EOF",
    ] {
        assert!(text.contains(line), "metrics lack `{line}`:\n{text}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_status_routes_accept_only_get() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    assert_eq!(client.get(&server.url("/nope"), &[]).await.status, 404);
    let reply = server.local_post("/queue").await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        client.post(&server.url("/healthz"), &[], "").await.status,
        405
    );
}

#[tokio::test]
async fn serve_returns_after_shutdown_and_stops_accepting() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    assert_eq!(
        HttpClient::new()
            .get(&server.url("/healthz"), &[])
            .await
            .status,
        200
    );
    server.stop().await.expect("serve ends cleanly");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
