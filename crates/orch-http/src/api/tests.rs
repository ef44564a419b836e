//! Unit tests of the status API's documents.

use std::time::Duration;

use orch_core::domain::{Agent, JobKind, Service, Stage};
use orch_core::ids::{JobId, TaskId, WorkItemId};
use orch_core::ports::{
    InboxStats, QueueSnapshot, ReconcileStats, RunningJobInfo, ServiceWait, Unblocked, Via,
};
use orch_core::time::Timestamp;
use serde_json::json;

use crate::api::{is_work_item_path, parse_limit, queue_json};
use crate::state::ReconcileSettings;

const AT: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn work_item(text: &str) -> WorkItemId {
    WorkItemId::parse(text).expect("valid work item id")
}

#[test]
fn queue_document_of_an_empty_store_has_every_documented_key() {
    let document = queue_json(
        &QueueSnapshot::default(),
        &InboxStats::default(),
        &ReconcileStats::default(),
        ReconcileSettings {
            enabled: true,
            plane_enabled: false,
            interval: Duration::from_secs(60),
        },
        AT,
    );
    let idle =
        json!({ "degraded": false, "waiting_jobs": 0, "waiting_since": null, "last_error": null });
    let expected = json!({
        "jobs": { "queued": 0, "running": [] },
        "services": { "plane": idle, "gitea": idle, "telegram": idle, "git": idle },
        "tasks": {
            "by_stage": { "analysis": 0, "development": 0, "review": 0, "done": 0, "cancelled": 0 },
            "awaiting_verdict": [],
            "blocked": [],
        },
        "inbox": { "pending": 0, "oldest_pending_age_s": 0 },
        "reconcile": {
            "enabled": true,
            "plane_enabled": false,
            "interval_s": 60,
            "last_run_at": null,
            "last_duration_ms": null,
            "runs_total": 0,
            "unblocked_total": 0,
            "recent_unblocked": [],
            "errors_total": 0,
            "last_error": null,
        },
    });
    assert_eq!(document, expected);
}

#[test]
fn queue_document_names_tasks_by_work_item_and_agents_by_role() {
    let snapshot = QueueSnapshot {
        queued: 3,
        running: vec![
            RunningJobInfo {
                id: JobId(7),
                task: TaskId(1),
                work_item: work_item("ET-001"),
                kind: JobKind::Agent(Agent::Developer),
                started_at: AT,
            },
            RunningJobInfo {
                id: JobId(8),
                task: TaskId(2),
                work_item: work_item("ET-002"),
                kind: JobKind::Merge,
                started_at: AT,
            },
        ],
        waiting: vec![
            ServiceWait {
                service: Service::Plane,
                since: AT - Duration::from_secs(301),
                jobs: 2,
                oldest_task: TaskId(1),
                last_error: Some("plane: unavailable: 502".to_owned()),
            },
            ServiceWait {
                service: Service::Telegram,
                since: AT - Duration::from_secs(10),
                jobs: 1,
                oldest_task: TaskId(2),
                last_error: None,
            },
        ],
        by_stage: vec![(Stage::Development, 1), (Stage::Review, 2)],
        awaiting_verdict: vec![work_item("ET-003")],
        blocked: vec![(work_item("ET-004"), "agent failed 3 times".to_owned())],
    };
    let inbox = InboxStats {
        pending: 2,
        oldest_pending_age: Some(Duration::from_millis(4_900)),
    };
    let reconcile = ReconcileStats {
        last_run_at: Some(AT),
        last_duration: Some(Duration::from_millis(42)),
        runs_total: 5,
        unblocked_total: 1,
        recent_unblocked: vec![Unblocked {
            task: TaskId(3),
            work_item: work_item("ET-003"),
            stage: Stage::Analysis,
            via: Via::Tracker,
            at: AT,
        }],
        errors_total: 1,
        last_error: Some("plane: unavailable: 503".to_owned()),
    };
    let settings = ReconcileSettings {
        enabled: true,
        plane_enabled: true,
        interval: Duration::from_secs(30),
    };
    let document = queue_json(&snapshot, &inbox, &reconcile, settings, AT);
    let idle =
        json!({ "degraded": false, "waiting_jobs": 0, "waiting_since": null, "last_error": null });
    let expected = json!({
        "jobs": {
            "queued": 3,
            "running": [
                { "id": 7, "task": "ET-001", "kind": "agent", "agent": "developer", "started_at": "2026-01-01T00:00:00.000Z" },
                { "id": 8, "task": "ET-002", "kind": "merge", "agent": null, "started_at": "2026-01-01T00:00:00.000Z" },
            ],
        },
        "services": {
            "plane": { "degraded": true, "waiting_jobs": 2, "waiting_since": "2025-12-31T23:54:59.000Z", "last_error": "plane: unavailable: 502" },
            "gitea": idle,
            "telegram": { "degraded": false, "waiting_jobs": 1, "waiting_since": "2025-12-31T23:59:50.000Z", "last_error": null },
            "git": idle,
        },
        "tasks": {
            "by_stage": { "analysis": 0, "development": 1, "review": 2, "done": 0, "cancelled": 0 },
            "awaiting_verdict": ["ET-003"],
            "blocked": [{ "task": "ET-004", "reason": "agent failed 3 times" }],
        },
        "inbox": { "pending": 2, "oldest_pending_age_s": 4 },
        "reconcile": {
            "enabled": true,
            "plane_enabled": true,
            "interval_s": 30,
            "last_run_at": "2026-01-01T00:00:00.000Z",
            "last_duration_ms": 42,
            "runs_total": 5,
            "unblocked_total": 1,
            "recent_unblocked": [
                { "task": "ET-003", "stage": "analysis", "via": "tracker", "at": "2026-01-01T00:00:00.000Z" },
            ],
            "errors_total": 1,
            "last_error": "plane: unavailable: 503",
        },
    });
    assert_eq!(document, expected);
}

#[test]
fn work_item_paths_are_the_queue_and_task_api_but_not_metrics() {
    for path in ["/queue", "/api/tasks", "/api/tasks/1", "/api/tasks/ET-001"] {
        assert!(is_work_item_path(path), "{path}");
    }
    for path in [
        "/healthz",
        "/readyz",
        "/webhooks/plane",
        "/api",
        "/api/tasksx",
        "/queue/",
        "/metrics",
    ] {
        assert!(!is_work_item_path(path), "{path}");
    }
}

#[test]
fn task_list_limit_defaults_to_100_and_is_bounded() {
    assert_eq!(parse_limit(None), Ok(100));
    assert_eq!(parse_limit(Some("limit=5")), Ok(5));
    assert_eq!(parse_limit(Some("x=1&limit=1000")), Ok(1000));
    assert!(parse_limit(Some("limit=0")).is_err());
    assert!(parse_limit(Some("limit=1001")).is_err());
    assert!(parse_limit(Some("limit=many")).is_err());
}
