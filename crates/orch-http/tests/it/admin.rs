//! The admin commands: `POST /api/tasks/{id}/retry|cancel` into the event loop's `EventSink`,
//! over the admin socket or with the admin token, never on the strength of an address.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orch_core::domain::{Agent, JobSpec, NewTask, Stage, Task};
use orch_core::event::{Event, Origin};
use orch_core::fakes::FakeClock;
use orch_core::ids::{BranchName, IssueId, ProjectId, RepoSlug, WorkItemId};
use orch_core::orchestrator::{EventSink, HandleError, Handled};
use orch_core::ports::{Store, StoreError};
use orch_http::Secret;

use crate::support::{bearer, over_socket, HttpClient, TestServer};

const ADMIN_TOKEN: &str = "admin-token-for-command-tests";

type Answer = Box<dyn Fn(&Event) -> Result<Handled, HandleError> + Send + Sync>;

/// An event loop stand-in: records what it is given and answers with `answer`.
pub(crate) struct RecordingSink {
    events: Mutex<Vec<(Event, Origin)>>,
    answer: Answer,
}

impl RecordingSink {
    fn answering(answer: Answer) -> Arc<RecordingSink> {
        Arc::new(RecordingSink {
            events: Mutex::new(Vec::new()),
            answer,
        })
    }

    /// A loop that changes the task and says so.
    pub(crate) fn changing() -> Arc<RecordingSink> {
        RecordingSink::answering(Box::new(|event| {
            Ok(Handled {
                task: None,
                work_item: None,
                stage: None,
                changed: true,
                note: format!("handled {}", event_name(event)),
            })
        }))
    }

    pub(crate) fn events(&self) -> Vec<(Event, Origin)> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        let answer = (self.answer)(&event);
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((event, origin));
        answer
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::RetryRequested { .. } => "retry",
        Event::CancelRequested { .. } => "cancel",
        _ => "something else",
    }
}

pub(crate) async fn add_task(store: &dyn Store, sequence: u32) -> Task {
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
    store
        .create_task(
            new,
            vec![JobSpec::agent(Agent::Analyst, None)],
            FakeClock::START,
        )
        .await
        .expect("task")
        .task
}

async fn serve_with(sink: Option<Arc<RecordingSink>>, token: Option<&str>) -> TestServer {
    let token = token.map(Secret::new);
    TestServer::start(move |state| {
        state.admin = sink.map(|sink| sink as Arc<dyn EventSink>);
        state.admin_token = token;
    })
    .await
}

#[tokio::test]
async fn retry_and_cancel_go_to_the_event_loop_as_admin_events_and_answer_what_it_did() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), None).await;
    let task = add_task(server.served_store.as_ref(), 1).await;

    let reply = server.local_post("/api/tasks/ET-001/retry").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"task": "ET-001", "changed": true, "note": "handled retry"})
    );

    let by_number = format!("/api/tasks/{}/cancel", task.id.0);
    let reply = server.local_post(&by_number).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"task": "ET-001", "changed": true, "note": "handled cancel"})
    );

    assert_eq!(
        sink.events(),
        vec![
            (Event::RetryRequested { task: task.id }, Origin::Admin),
            (Event::CancelRequested { task: task.id }, Origin::Admin),
        ]
    );
}

#[tokio::test]
async fn a_command_the_loop_finds_nothing_to_do_for_answers_unchanged() {
    let sink = RecordingSink::answering(Box::new(|_| {
        Ok(Handled {
            task: None,
            work_item: None,
            stage: None,
            changed: false,
            note: "the task is already cancelled".to_owned(),
        })
    }));
    let server = serve_with(Some(sink.clone()), None).await;
    add_task(server.served_store.as_ref(), 3).await;
    let reply = server.local_post("/api/tasks/ET-003/cancel").await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            serde_json::json!({"task": "ET-003", "changed": false, "note": "the task is already cancelled"})
        )
    );
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test]
async fn an_unknown_or_malformed_task_is_refused_and_nothing_is_submitted() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), None).await;
    add_task(server.served_store.as_ref(), 1).await;

    for path in ["/api/tasks/ET-999/retry", "/api/tasks/12345/cancel"] {
        let reply = server.local_post(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error"], "no such task", "{path}");
    }
    let reply = server.local_post("/api/tasks/not%20an%20id/retry").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn without_an_event_loop_commands_answer_503_with_a_json_error() {
    let server = serve_with(None, None).await;
    add_task(server.served_store.as_ref(), 1).await;
    let reply = server.local_post("/api/tasks/ET-001/retry").await;
    assert_eq!(reply.status, 503);
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|message| message.contains("event loop")),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn commands_need_the_admin_token_when_one_is_set() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), Some(ADMIN_TOKEN)).await;
    add_task(server.served_store.as_ref(), 1).await;
    let client = HttpClient::new();
    let url = server.url("/api/tasks/ET-001/cancel");

    let reply = client.post(&url, &[], "").await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply
            .headers
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(client.post(&url, &bearer("wrong"), "").await.status, 401);
    assert!(sink.events().is_empty(), "refused commands reach nothing");

    let reply = client.post(&url, &bearer(ADMIN_TOKEN), "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test]
async fn commands_are_post_only_and_refused_from_browsers() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), None).await;
    add_task(server.served_store.as_ref(), 1).await;
    let path = "/api/tasks/ET-001/retry";

    let reply = server.local_get(path).await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        reply
            .headers
            .get("allow")
            .and_then(|value| value.to_str().ok()),
        Some("POST")
    );
    let from_a_page = vec![("Origin".to_owned(), "http://evil.example".to_owned())];
    let reply = over_socket(&server.socket_path, "POST", path, &from_a_page).await;
    assert_eq!(reply.status, 403);
    assert!(sink.events().is_empty());

    // The task route itself stays GET-only.
    assert_eq!(server.local_post("/api/tasks/ET-001").await.status, 405);
}

#[tokio::test]
async fn a_failing_event_loop_answers_503_when_retrying_may_help_and_500_otherwise() {
    // Each case: what the loop answers, and the error the caller reads with its 503.
    type MakeError = fn() -> HandleError;
    let unavailable: [(MakeError, &str); 3] = [
        (
            || HandleError::LoopStopped,
            "retry of ET-001 failed: the event loop has stopped",
        ),
        (
            || HandleError::DeadlineExceeded(Duration::from_secs(30)),
            "retry of ET-001 failed: handling took longer than 30 s",
        ),
        (
            || HandleError::Store(StoreError::Unavailable("database is locked".to_owned())),
            "retry of ET-001 failed: store: unavailable: database is locked",
        ),
    ];
    for (answer, expected) in unavailable {
        let sink = RecordingSink::answering(Box::new(move |_| Err(answer())));
        let server = serve_with(Some(sink), None).await;
        add_task(server.served_store.as_ref(), 1).await;
        let reply = server.local_post("/api/tasks/ET-001/retry").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json()["error"], expected);
    }

    let broken = RecordingSink::answering(Box::new(|_| {
        Err(HandleError::Store(StoreError::Conflict(
            "version moved".to_owned(),
        )))
    }));
    let server = serve_with(Some(broken), None).await;
    add_task(server.served_store.as_ref(), 1).await;
    let reply = server.local_post("/api/tasks/ET-001/cancel").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
}

/// What a same-host reverse proxy adds; none of it may stand in for a credential.
fn forwarding_variants() -> Vec<Vec<(String, String)>> {
    let header = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    vec![
        vec![],
        header("X-Forwarded-For", "127.0.0.1"),
        header("Forwarded", "for=127.0.0.1"),
        header("X-Real-IP", "127.0.0.1"),
    ]
}

#[tokio::test]
async fn without_an_admin_token_commands_over_tcp_are_refused_even_from_loopback() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), None).await;
    add_task(server.served_store.as_ref(), 1).await;
    let client = HttpClient::new();
    // The test client connects from 127.0.0.1, as a same-host proxy would.
    for headers in forwarding_variants() {
        for command in ["retry", "cancel"] {
            let url = server.url(&format!("/api/tasks/ET-001/{command}"));
            let reply = client.post(&url, &headers, "").await;
            assert_eq!(reply.status, 403, "{command} {headers:?}: {}", reply.text());
            let message = reply.json()["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                message.contains("server.admin_token") && message.contains("orch CLI"),
                "{message}"
            );
        }
    }
    assert!(
        sink.events().is_empty(),
        "no refused command reached the loop"
    );
}

#[tokio::test]
async fn with_an_admin_token_tcp_commands_need_it_whatever_forwarding_headers_say() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), Some(ADMIN_TOKEN)).await;
    add_task(server.served_store.as_ref(), 1).await;
    let client = HttpClient::new();
    let url = server.url("/api/tasks/ET-001/retry");
    for headers in forwarding_variants() {
        let reply = client.post(&url, &headers, "").await;
        assert_eq!(reply.status, 401, "{headers:?}");
    }
    assert!(sink.events().is_empty());
    let mut relayed_with_token = bearer(ADMIN_TOKEN);
    relayed_with_token.push(("X-Forwarded-For".to_owned(), "203.0.113.9".to_owned()));
    let reply = client.post(&url, &relayed_with_token, "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test]
async fn a_request_a_proxy_relays_into_the_admin_socket_is_not_trusted() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), None).await;
    add_task(server.served_store.as_ref(), 1).await;
    for headers in forwarding_variants().into_iter().skip(1) {
        let reply = over_socket(
            &server.socket_path,
            "POST",
            "/api/tasks/ET-001/cancel",
            &headers,
        )
        .await;
        assert_eq!(reply.status, 403, "{headers:?}");
        let reply = over_socket(&server.socket_path, "GET", "/queue", &headers).await;
        assert_eq!(reply.status, 403, "{headers:?}");
    }
    assert!(sink.events().is_empty());
    assert_eq!(
        server.local_post("/api/tasks/ET-001/cancel").await.status,
        200
    );
}

#[tokio::test]
async fn commands_over_the_admin_socket_need_no_token_even_when_one_is_set() {
    let sink = RecordingSink::changing();
    let server = serve_with(Some(sink.clone()), Some(ADMIN_TOKEN)).await;
    add_task(server.served_store.as_ref(), 1).await;
    let reply = server.local_post("/api/tasks/ET-001/retry").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(sink.events().len(), 1);
}
